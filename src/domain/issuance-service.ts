import { canSee, requireAdmin, requireUser } from './access';
import { NotFoundError } from './errors';
import { isPromotionId, newRequestId, promotionIdOfRequest } from './identifiers';
import type { CouponRepository, FailureRepository, IssuanceEvents, IssuanceFeed, ReservationStore } from './ports';
import { validateIdempotencyKey, validatePageSize } from './promotion-rules';
import type { Caller, Coupon, DeadLetter, Issuance, IssueOutcome, IssueResult } from './types';

export const MY_COUPONS_LIMIT = 1000;
export const DEAD_LETTERS_LIMIT = 500;

const isFinal = (issuance: Issuance): boolean => issuance.status !== 'QUEUED';

const issuedFrom = (coupon: Coupon): Issuance => ({
  requestId: coupon.requestId,
  promotionId: coupon.promotionId,
  userId: coupon.userId,
  status: 'ISSUED',
  requestedAt: coupon.requestedAt,
  coupon,
  failureReason: null,
});

const failedFrom = (failure: DeadLetter): Issuance => ({
  requestId: failure.requestId,
  promotionId: failure.promotionId,
  userId: failure.userId,
  status: 'FAILED',
  requestedAt: failure.requestedAt,
  coupon: null,
  failureReason: failure.reason,
});

/** The issuance story: reserve in Redis, answer at once; the consumer confirms; the client watches. */
export class IssuanceService {
  constructor(
    private readonly reservations: ReservationStore,
    private readonly coupons: CouponRepository,
    private readonly failures: FailureRepository,
    private readonly events: IssuanceEvents,
    private readonly onOutcome: (outcome: IssueOutcome) => void = () => undefined,
  ) {}

  /** The hot path of a flash sale: one Redis round trip, no database. */
  async issue(caller: Caller | null, promotionId: string, idempotencyKey?: string | null, clientIp?: string | null): Promise<IssueResult> {
    const user = requireUser(caller);
    const key = validateIdempotencyKey(idempotencyKey);
    const result = isPromotionId(promotionId)
      ? await this.reservations.reserve({
          promotionId,
          userId: user.userId,
          requestId: newRequestId(promotionId),
          idempotencyKey: key,
          clientIp: clientIp ?? null,
        })
      : ({ outcome: 'NOT_FOUND', requestId: null, position: null, remainingStock: 0 } as const);
    this.onOutcome(result.outcome);
    return result;
  }

  /** The caller's own request (admins: any); null when unknown or not theirs. */
  async issuance(caller: Caller | null, requestId: string): Promise<Issuance | null> {
    const user = requireUser(caller);
    const found = await this.lookup(requestId);
    return found && canSee(user, found.userId) ? found : null;
  }

  async myCoupons(caller: Caller | null, promotionId?: string | null): Promise<Coupon[]> {
    const user = requireUser(caller);
    if (promotionId != null && !isPromotionId(promotionId)) return [];
    return this.coupons.listByUser(user.userId, promotionId ?? null, MY_COUPONS_LIMIT);
  }

  /** Admin: the promotion's requests that ended FAILED, newest first, kept in PostgreSQL. */
  async deadLetters(caller: Caller | null, promotionId: string, first: number, after: string | null): Promise<DeadLetter[]> {
    requireAdmin(caller);
    const limit = validatePageSize(first, DEAD_LETTERS_LIMIT);
    if (!isPromotionId(promotionId)) return [];
    return this.failures.list(promotionId, limit, after);
  }

  /**
   * Final states of the caller's requests as they happen. With a requestId: the one request, replayed at once
   * if already final, then the stream completes. The feed listens before the status is read, so a
   * confirmation that lands in between is never missed.
   */
  async watch(caller: Caller | null, filter: { requestId?: string | null; promotionId?: string | null }): Promise<AsyncIterable<Issuance>> {
    const user = requireUser(caller);
    const { requestId, promotionId } = filter;
    if (requestId == null) {
      const feed = await this.events.watchUser(user.userId);
      return closing(feed, finals(feed, (i) => promotionId == null || i.promotionId === promotionId));
    }

    const requestPromotion = promotionIdOfRequest(requestId);
    if (!requestPromotion || (promotionId != null && promotionId !== requestPromotion)) {
      throw new NotFoundError('Request');
    }
    // Admins may watch anyone's request: find the owner first to listen on the right channel.
    const ownerId = user.isAdmin ? (await this.lookup(requestId))?.userId : user.userId;
    if (!ownerId) throw new NotFoundError('Request');
    const feed = await this.events.watchUser(ownerId);
    let current: Issuance | null;
    try {
      current = await this.lookup(requestId);
    } catch (error) {
      feed.close();
      throw error;
    }
    if (!current || !canSee(user, current.userId)) {
      feed.close();
      throw new NotFoundError('Request');
    }
    return closing(feed, untilFinal(feed, current, () => this.lookup(requestId)));
  }

  /** Redis holds the live status; PostgreSQL answers once that status has expired (or Redis lost it). */
  private async lookup(requestId: string): Promise<Issuance | null> {
    if (!promotionIdOfRequest(requestId)) return null;
    const live = await this.reservations.issuance(requestId);
    if (live) return live;
    const coupon = await this.coupons.findByRequestId(requestId);
    if (coupon) return issuedFrom(coupon);
    const failure = await this.failures.find(requestId);
    return failure ? failedFrom(failure) : null;
  }
}

/** The live final states that pass `keep`. A gap cannot be replayed here: this feed is live only (README). */
async function* finals(feed: IssuanceFeed, keep: (issuance: Issuance) => boolean): AsyncGenerator<Issuance> {
  try {
    for await (const event of feed) if (event.kind === 'final' && keep(event.issuance)) yield event.issuance;
  } finally {
    feed.close();
  }
}

/**
 * One request's final state: at once if already final, else when it arrives. After a gap, read it again:
 * a status that vanished (Redis lost it, and PostgreSQL never stored the request) ends the wait with NOT_FOUND.
 */
async function* untilFinal(feed: IssuanceFeed, current: Issuance, reread: () => Promise<Issuance | null>): AsyncGenerator<Issuance> {
  try {
    if (isFinal(current)) {
      yield current;
      return;
    }
    for await (const event of feed) {
      const latest = event.kind === 'gap' ? await reread() : event.issuance;
      if (!latest) throw new NotFoundError('Request');
      if (latest && latest.requestId === current.requestId && isFinal(latest)) {
        yield latest;
        return;
      }
    }
  } finally {
    feed.close();
  }
}

/**
 * A generator that was never started ignores return(), and one parked on the feed only sees it once the feed
 * yields: closing the feed first makes an unsubscribe release the channel at once, whatever the state.
 */
function closing<T>(feed: IssuanceFeed, generator: AsyncGenerator<T>): AsyncIterableIterator<T> {
  return {
    next: () => generator.next(),
    return: async (value?: unknown) => {
      feed.close();
      return generator.return(value as T);
    },
    throw: async (error?: unknown) => {
      feed.close();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
