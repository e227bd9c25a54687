import { requireAdmin } from './access';
import { InputError, NotFoundError } from './errors';
import { isPromotionId, newPromotionId } from './identifiers';
import type { Clock, PromotionCursor, PromotionLiveState, PromotionRepository, PromotionWindowFilter, ReservationStore } from './ports';
import {
  promotionStatus,
  validateAdminIdempotencyKey,
  validateListSize,
  validateNewPromotion,
  validateStockAmount,
  type CreatePromotionInput,
} from './promotion-rules';
import type { Caller, PromotionRecord, PromotionStatus, PromotionView } from './types';

export type { CreatePromotionInput } from './promotion-rules';

/**
 * Promotions over (ended early, or past endsAt) for longer than this are left out of reconciliation: by then
 * both stores agree they are over, and the consumers retire their Redis keys (an hour after the end).
 */
export const RECONCILE_OVER_WINDOW_MS = 3600_000;

export type ReconcileFix =
  | 'rebuilt in Redis'
  | 'end written to PostgreSQL'
  | 'end written to Redis'
  | 'total stock raised in Redis'
  | 'registered for the consumers'
  | 'issued counter set from PostgreSQL'
  | 'issued counter settled from PostgreSQL';

export interface ReconcileReport {
  checked: number;
  fixed: { promotionId: string; fix: ReconcileFix }[];
  /** Promotions whose repair failed this time; the next pass tries them again. */
  failed: { promotionId: string; error: unknown }[];
}

/** Open promotions read per round when filtering ACTIVE or SOLD_OUT by their live stock. */
const READ_AHEAD = 100;

const WINDOW_OF_STATUS: Record<PromotionStatus, PromotionWindowFilter> = {
  SCHEDULED: 'SCHEDULED',
  ACTIVE: 'OPEN',
  SOLD_OUT: 'OPEN',
  ENDED: 'ENDED',
};

/**
 * Promotions: PostgreSQL holds them; Redis holds their live counters and decides issuance. Every admin write
 * touches both, in the order that is safe if the second write fails (a promotion or stock that PostgreSQL has
 * and Redis lacks issues nothing; an end that Redis has stops issuance), and reconcile() repairs whatever a
 * failure between the two writes left behind.
 */
export class PromotionService {
  constructor(
    private readonly promotions: PromotionRepository,
    private readonly reservations: ReservationStore,
    private readonly clock: Clock,
  ) {}

  async create(caller: Caller | null, input: CreatePromotionInput): Promise<PromotionView> {
    requireAdmin(caller);
    const now = this.clock.now();
    const fields = validateNewPromotion(input, now);
    const record: PromotionRecord = { id: newPromotionId(), ...fields, endedAt: null, createdAt: now };
    await this.promotions.create(record);
    // Registers, then sets up (see ReservationStore): a failure after the insert leaves a promotion that
    // issues nothing yet and that reconcile() sets up.
    await this.reservations.setupPromotion(record, 0);
    return this.viewOf(record, { remainingStock: record.totalStock, issuedCount: 0 });
  }

  async get(id: string): Promise<PromotionView | null> {
    if (!isPromotionId(id)) return null; // ids are opaque: a malformed one names no promotion
    const record = await this.promotions.findById(id);
    return record ? (await this.views([record]))[0] ?? null : null;
  }

  /**
   * Newest first, (createdAt, id) descending; `after` is the last id of the previous page and the page starts
   * strictly after it, whatever that promotion's status is now. An id that names no promotion gives an empty
   * page, as deadLetters does.
   */
  async list(status: PromotionStatus | null, first: number, after: string | null = null): Promise<PromotionView[]> {
    const limit = validateListSize(first);
    const now = this.clock.now();
    let cursor: PromotionCursor | undefined;
    if (after !== null) {
      const found = isPromotionId(after) ? await this.promotions.findById(after) : null;
      if (!found) return [];
      cursor = { createdAt: found.createdAt, id: found.id };
    }
    if (status === null) return this.views(await this.promotions.list({ now, limit, after: cursor }));
    const window = WINDOW_OF_STATUS[status];
    if (window !== 'OPEN') return this.views(await this.promotions.list({ now, limit, window, after: cursor }));
    // ACTIVE and SOLD_OUT differ only by live stock in Redis: read ahead through open promotions and filter.
    // The page ends at the last promotion it returns, so the next page resumes right after it: the ones read
    // ahead but not returned are read again then, none is skipped or repeated.
    const found: PromotionView[] = [];
    for (;;) {
      const page = await this.promotions.list({ now, limit: READ_AHEAD, window, after: cursor });
      const views = await this.views(page);
      found.push(...views.filter((v) => v.status === status));
      const last = page[page.length - 1];
      if (found.length >= limit || page.length < READ_AHEAD || !last) return found.slice(0, limit);
      cursor = last;
    }
  }

  /**
   * PostgreSQL first: the new total and the key commit together, so a repeated key adds nothing more. Redis is
   * then told the ABSOLUTE total, which is harmless to apply twice, late or out of order; a repeat of the key
   * pushes the total again, which finishes a call that failed between the two stores.
   */
  async addStock(caller: Caller | null, promotionId: string, amount: number, idempotencyKey?: string | null): Promise<PromotionView> {
    requireAdmin(caller);
    validateStockAmount(amount);
    const key = validateAdminIdempotencyKey(idempotencyKey);
    const addition = isPromotionId(promotionId) ? await this.promotions.addStock(promotionId, amount, key) : null;
    if (!addition) throw new NotFoundError('Promotion');
    if (!addition.added && addition.amount !== amount) {
      throw new InputError('idempotencyKey', `was already used for an addition of ${addition.amount}`);
    }
    await this.raiseTotalInRedis(addition.promotion);
    return (await this.views([addition.promotion]))[0] as PromotionView;
  }

  /** Redis first: once it has the end, no issuance goes on, whatever happens to the PostgreSQL write. */
  async end(caller: Caller | null, promotionId: string): Promise<PromotionView> {
    requireAdmin(caller);
    const found = isPromotionId(promotionId) ? await this.promotions.findById(promotionId) : null;
    if (!found) throw new NotFoundError('Promotion');
    const endedAt = await this.endInRedis(found, found.endedAt ?? this.clock.now());
    const record = (await this.promotions.end(found.id, endedAt)) ?? found;
    return (await this.views([record]))[0] as PromotionView;
  }

  /**
   * Makes PostgreSQL and Redis agree on every promotion Redis still serves (not over, or over within the last
   * hour), whatever failed between the two writes of an admin call, or whatever Redis lost. One query, one
   * pipelined read, and a write only where they disagree; safe to run from every process at once.
   */
  async reconcile(): Promise<ReconcileReport> {
    const now = this.clock.now();
    const records = await this.promotions.listRecent(new Date(now.getTime() - RECONCILE_OVER_WINDOW_MS));
    const ids = records.map((r) => r.id);
    const [live, registered] = await Promise.all([this.reservations.liveStates(ids), this.reservations.registered(ids)]);
    const report: ReconcileReport = { checked: records.length, fixed: [], failed: [] };
    for (const record of records) {
      // One promotion whose repair fails (say, a rebuild that times out) must not keep the others unrepaired.
      try {
        const fixes = await this.reconcileOne(record, live.get(record.id), registered.has(record.id), now);
        report.fixed.push(...fixes.map((fix) => ({ promotionId: record.id, fix })));
      } catch (error) {
        report.failed.push({ promotionId: record.id, error });
      }
    }
    return report;
  }

  private async reconcileOne(
    record: PromotionRecord,
    state: PromotionLiveState | undefined,
    registered: boolean,
    now: Date,
  ): Promise<ReconcileFix[]> {
    // Never set up (a create that failed after its insert), or lost by Redis: rebuild from PostgreSQL.
    if (!state?.exists) return (await this.rebuild(record)) ? ['rebuilt in Redis'] : [];
    const fixes: ReconcileFix[] = [];
    if (state.endedAt && !record.endedAt) {
      await this.promotions.end(record.id, state.endedAt); // an end whose PostgreSQL write failed
      fixes.push('end written to PostgreSQL');
    } else if (record.endedAt && !state.endedAt) {
      await this.reservations.endPromotion(record.id, record.endedAt);
      fixes.push('end written to Redis');
    }
    if (state.issuedCount === null) {
      // State built before Redis kept the counter: set it from PostgreSQL's count (everything else is left as is).
      await this.rebuild(record);
      fixes.push('issued counter set from PostgreSQL');
    }
    if (state.recountIssued) {
      // Rebuilt earlier: once nothing is in flight, PostgreSQL's count (read after the counter) settles it.
      const counted = (await this.promotions.issuedCounts([record.id])).get(record.id) ?? 0;
      if ((await this.reservations.settleIssuedCount(record.id, state.issuedCount, counted)) === 'settled') {
        fixes.push('issued counter settled from PostgreSQL');
      }
    }
    if (record.totalStock > state.totalStock) {
      await this.reservations.raiseTotalStock(record.id, record.totalStock); // an addition whose Redis write failed
      fixes.push('total stock raised in Redis');
    }
    const over = record.endedAt !== null || state.endedAt !== null || now.getTime() >= record.endsAt.getTime();
    // An ended promotion leaves the registry when the consumers retire it: never put it back.
    if (!registered && !over) {
      await this.reservations.register(record.id);
      fixes.push('registered for the consumers');
    }
    return fixes;
  }

  private async raiseTotalInRedis(record: PromotionRecord): Promise<void> {
    if (!(await this.reservations.raiseTotalStock(record.id, record.totalStock))) await this.rebuild(record);
  }

  /** Ends the promotion in Redis, rebuilding it already ended if Redis lacks it; returns the end time Redis holds. */
  private async endInRedis(record: PromotionRecord, at: Date): Promise<Date> {
    const ended = await this.reservations.endPromotion(record.id, at);
    if (ended) return ended;
    await this.rebuild({ ...record, endedAt: at });
    return (await this.reservations.endPromotion(record.id, at)) ?? at;
  }

  private async rebuild(record: PromotionRecord): Promise<boolean> {
    const issued = (await this.promotions.issuedCounts([record.id])).get(record.id) ?? 0;
    const perUser = await this.promotions.couponsPerUser(record.id);
    // New positions start past every one used, so the audit never mistakes a new reservation for an old one.
    const lastPosition = await this.promotions.lastPosition(record.id);
    return this.reservations.setupPromotion(record, issued, perUser, Math.max(issued, lastPosition), true);
  }

  private async views(records: PromotionRecord[]): Promise<PromotionView[]> {
    const live = await this.reservations.liveStates(records.map((r) => r.id));
    // Redis counts issued coupons with the live state; PostgreSQL counts only those it holds no counter for.
    const uncounted = records.filter((r) => (live.get(r.id)?.issuedCount ?? null) === null).map((r) => r.id);
    const counted = uncounted.length > 0 ? await this.promotions.issuedCounts(uncounted) : new Map<string, number>();
    return records.map((r) => {
      const state = live.get(r.id);
      const issuedCount = state?.issuedCount ?? counted.get(r.id) ?? 0;
      // Redis decides issuance: an end it holds shows at once, even before PostgreSQL has it.
      const record = r.endedAt === null && state?.endedAt ? { ...r, endedAt: state.endedAt } : r;
      return this.viewOf(record, { remainingStock: state?.remainingStock ?? 0, issuedCount });
    });
  }

  private viewOf(record: PromotionRecord, live: { remainingStock: number; issuedCount: number }): PromotionView {
    return { ...record, ...live, status: promotionStatus(record, live.remainingStock, this.clock.now()) };
  }
}
