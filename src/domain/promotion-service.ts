import { requireAdmin } from './access';
import { NotFoundError } from './errors';
import { isPromotionId, newPromotionId } from './identifiers';
import type { Clock, PromotionRepository, PromotionWindowFilter, ReservationStore } from './ports';
import {
  promotionStatus,
  validateListSize,
  validateNewPromotion,
  validateStockAmount,
} from './promotion-rules';
import type { Caller, PromotionRecord, PromotionStatus, PromotionView } from './types';

export interface CreatePromotionInput {
  name: string;
  totalStock: number;
  perUserLimit?: number | null;
  startsAt?: Date | null;
  endsAt: Date;
}

const WINDOW_OF_STATUS: Record<PromotionStatus, PromotionWindowFilter> = {
  SCHEDULED: 'SCHEDULED',
  ACTIVE: 'OPEN',
  SOLD_OUT: 'OPEN',
  ENDED: 'ENDED',
};

/** Promotions: PostgreSQL holds them; Redis holds their live counters. PostgreSQL is written first. */
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
    await this.reservations.setupPromotion(record, 0);
    return this.viewOf(record, { remainingStock: record.totalStock, issuedCount: 0 });
  }

  async get(id: string): Promise<PromotionView | null> {
    if (!isPromotionId(id)) return null; // ids are opaque: a malformed one names no promotion
    const record = await this.promotions.findById(id);
    return record ? (await this.views([record]))[0] ?? null : null;
  }

  async list(status: PromotionStatus | null, first: number): Promise<PromotionView[]> {
    const limit = validateListSize(first);
    const now = this.clock.now();
    if (status === null) return this.views(await this.promotions.list({ now, limit }));
    const window = WINDOW_OF_STATUS[status];
    if (window !== 'OPEN') return this.views(await this.promotions.list({ now, limit, window }));
    // ACTIVE and SOLD_OUT differ only by live stock in Redis: page through open promotions and filter.
    const found: PromotionView[] = [];
    let after: PromotionRecord | undefined;
    for (;;) {
      const page = await this.promotions.list({ now, limit: 100, window, after });
      const views = await this.views(page);
      found.push(...views.filter((v) => v.status === status));
      after = page[page.length - 1];
      if (found.length >= limit || page.length < 100 || !after) return found.slice(0, limit);
    }
  }

  async addStock(caller: Caller | null, promotionId: string, amount: number): Promise<PromotionView> {
    requireAdmin(caller);
    validateStockAmount(amount);
    const record = isPromotionId(promotionId) ? await this.promotions.addStock(promotionId, amount) : null;
    if (!record) throw new NotFoundError('Promotion');
    if (!(await this.reservations.addStock(promotionId, amount))) await this.rebuild(record);
    return (await this.views([record]))[0] as PromotionView;
  }

  async end(caller: Caller | null, promotionId: string): Promise<PromotionView> {
    requireAdmin(caller);
    const now = this.clock.now();
    const record = isPromotionId(promotionId) ? await this.promotions.end(promotionId, now) : null;
    if (!record) throw new NotFoundError('Promotion');
    if (!(await this.reservations.endPromotion(promotionId, record.endedAt ?? now))) await this.rebuild(record);
    return (await this.views([record]))[0] as PromotionView;
  }

  /**
   * Makes sure every promotion still running has its Redis state and consumer group; rebuilds what Redis
   * lost from PostgreSQL (stock = total − coupons stored, per-user counts from coupons). Returns the ids rebuilt.
   */
  async restoreRedisState(): Promise<string[]> {
    const rebuilt: string[] = [];
    for (const record of await this.promotions.listUnended(this.clock.now())) {
      if (await this.reservations.hasPromotion(record.id)) {
        await this.reservations.setupPromotion(record, 0); // writes nothing live; ensures group and registry
      } else if (await this.rebuild(record)) {
        rebuilt.push(record.id);
      }
    }
    return rebuilt;
  }

  private async rebuild(record: PromotionRecord): Promise<boolean> {
    const issued = (await this.promotions.issuedCounts([record.id])).get(record.id) ?? 0;
    const perUser = await this.promotions.couponsPerUser(record.id);
    // New positions start past every one used, so the audit never mistakes a new reservation for an old one.
    const lastPosition = await this.promotions.lastPosition(record.id);
    return this.reservations.setupPromotion(record, issued, perUser, Math.max(issued, lastPosition));
  }

  private async views(records: PromotionRecord[]): Promise<PromotionView[]> {
    const ids = records.map((r) => r.id);
    const [remaining, issued] = await Promise.all([
      this.reservations.remainingStock(ids),
      this.promotions.issuedCounts(ids),
    ]);
    return records.map((r) =>
      this.viewOf(r, { remainingStock: remaining.get(r.id) ?? 0, issuedCount: issued.get(r.id) ?? 0 }),
    );
  }

  private viewOf(record: PromotionRecord, live: { remainingStock: number; issuedCount: number }): PromotionView {
    return { ...record, ...live, status: promotionStatus(record, live.remainingStock, this.clock.now()) };
  }
}
