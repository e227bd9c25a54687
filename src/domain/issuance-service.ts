import { canSee, requireAdmin, requireUser } from './access';
import { NotFoundError } from './errors';
import { isCouponId, isPromotionId, newRequestId, promotionIdOfRequest } from './identifiers';
import type { CouponRepository, FailureRepository, FeedEvent, FeedListener, IssuanceEvents, ReservationStore } from './ports';
import { validateIdempotencyKey, validatePageSize } from './promotion-rules';
import type { Caller, Coupon, DeadLetter, Issuance, IssueOutcome, IssueResult } from './types';

export const MY_COUPONS_LIMIT = 500;
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

  async myCoupons(caller: Caller | null, promotionId: string | null, first: number, after: string | null): Promise<Coupon[]> {
    const user = requireUser(caller);
    const limit = validatePageSize(first, MY_COUPONS_LIMIT);
    if (promotionId != null && !isPromotionId(promotionId)) return [];
    if (after != null && !isCouponId(after)) return [];
    return this.coupons.listByUser(user.userId, promotionId ?? null, limit, after ?? null);
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
      const latest = promotionId == null ? null : () => this.reservations.latestIssuance(promotionId, user.userId);
      const feed = new LiveFinals(this.events, user.userId, promotionId ?? null, latest);
      await feed.listen();
      return feed;
    }

    const requestPromotion = promotionIdOfRequest(requestId);
    if (!requestPromotion || (promotionId != null && promotionId !== requestPromotion)) {
      throw new NotFoundError('Request');
    }
    // Admins may watch anyone's request: find the owner first to listen on the right channel.
    const ownerId = user.isAdmin ? (await this.lookup(requestId))?.userId : user.userId;
    if (!ownerId) throw new NotFoundError('Request');
    const feed = new Feed<FeedEvent>(this.events, ownerId, requestPromotion);
    await feed.listen();
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

const DONE: IteratorResult<never, undefined> = { value: undefined, done: true };

/**
 * A user's live events as an async iterator: the event bus pushes them in (onFeedEvent), they wait in a queue
 * until read. One object per subscription, with no generator, closures or pending promise chain behind it: a
 * subscription that waits hours for its event costs this object and the one read waiting on it.
 */
/** A state read again after a gap that failed (Redis failing over) is tried again after this, doubling. */
const REREAD_FIRST_MS = 250;
const REREAD_MAX_MS = 5000;

class Feed<T> implements FeedListener, AsyncIterableIterator<T, undefined> {
  private queue: T[] | null = null;
  private reader: ((result: IteratorResult<T, undefined>) => void) | null = null;
  private closed = false;
  /** A gap to come again, after a read that failed: nothing else may ever signal one. */
  private retry: { timer: NodeJS.Timeout; nextMs: number } | null = null;

  constructor(
    private readonly events: IssuanceEvents,
    private readonly userId: string,
    /** The promotion listened to; null: every promotion. */
    protected readonly promotionId: string | null,
  ) {}

  /** Resolves once listening: nothing published afterwards is missed. */
  listen(): Promise<void> {
    return this.events.watchUser(this.userId, this.promotionId, this);
  }

  /** What of an event this feed hands on; undefined: nothing. */
  protected accept(event: FeedEvent): T | undefined {
    return event as T;
  }

  onFeedEvent(event: FeedEvent): void {
    if (this.closed) return;
    const value = this.accept(event);
    if (value === undefined) return;
    const reader = this.reader;
    this.reader = null;
    if (reader) reader({ value, done: false });
    else (this.queue ??= []).push(value);
  }

  next(): Promise<IteratorResult<T, undefined>> {
    const queue = this.queue;
    if (queue && queue.length > 0) return Promise.resolve({ value: queue.shift() as T, done: false });
    if (this.closed) return Promise.resolve(DONE);
    return new Promise((resolve) => (this.reader = resolve));
  }

  /**
   * After a gap, the state could not be read (Redis unreachable, a master failing over): the gap comes back
   * later, with a growing delay, until a read succeeds (then call readSucceeded).
   */
  gapAgainLater(): void {
    if (this.closed) return;
    const delayMs = this.retry?.nextMs ?? REREAD_FIRST_MS;
    if (this.retry) clearTimeout(this.retry.timer);
    const timer = setTimeout(() => this.onFeedEvent({ kind: 'gap' }), delayMs);
    timer.unref();
    this.retry = { timer, nextMs: Math.min(delayMs * 2, REREAD_MAX_MS) };
  }

  readSucceeded(): void {
    if (this.retry) clearTimeout(this.retry.timer);
    this.retry = null;
  }

  /** Stops listening at once, whatever the reader is doing; a read waiting ends. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.readSucceeded();
    this.queue = null;
    this.events.unwatchUser(this.userId, this.promotionId, this);
    const reader = this.reader;
    this.reader = null;
    reader?.(DONE);
  }

  return(): Promise<IteratorResult<T, undefined>> {
    this.close();
    return Promise.resolve(DONE);
  }

  throw(error?: unknown): Promise<IteratorResult<T, undefined>> {
    this.close();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * The live final states of a user's requests, of one promotion or all; nothing from before it started.
 * A gap (the server's own subscription was cut: a reconnect, a failover, a slot move) cannot be replayed in
 * full, but a feed of one promotion reads the user's latest request of it again and sends its final state if
 * that was missed: with one request per user (perUserLimit 1, the flash-sale case), nothing is lost.
 */
class LiveFinals extends Feed<Issuance> {
  private readonly startedAt = Date.now();
  /** Sent so far (a promotion's feed only): a state read again after a gap is not sent twice. */
  private readonly sent = new Set<string>();

  constructor(events: IssuanceEvents, userId: string, promotionId: string | null, private readonly latest: (() => Promise<Issuance | null>) | null) {
    super(events, userId, promotionId);
  }

  override onFeedEvent(event: FeedEvent): void {
    if (event.kind === 'gap' && this.latest) {
      this.latest().then(
        (issuance) => {
          this.readSucceeded();
          if (issuance && isFinal(issuance) && (issuance.coupon?.issuedAt ?? issuance.requestedAt).getTime() >= this.startedAt) {
            super.onFeedEvent({ kind: 'final', issuance });
          }
        },
        () => this.gapAgainLater(), // Redis away (a failover): read it again later
      );
      return;
    }
    super.onFeedEvent(event);
  }

  protected override accept(event: FeedEvent): Issuance | undefined {
    if (event.kind !== 'final') return undefined;
    const { issuance } = event;
    if (this.promotionId === null) return issuance;
    if (issuance.promotionId !== this.promotionId || this.sent.has(issuance.requestId)) return undefined;
    this.sent.add(issuance.requestId);
    return issuance;
  }
}

/**
 * One request's final state: at once if already final, else when it arrives. After a gap, read it again:
 * a status that vanished (Redis lost it, and PostgreSQL never stored the request) ends the wait with NOT_FOUND.
 */
async function* untilFinal(feed: Feed<FeedEvent>, current: Issuance, reread: () => Promise<Issuance | null>): AsyncGenerator<Issuance> {
  try {
    if (isFinal(current)) {
      yield current;
      return;
    }
    for await (const event of feed) {
      let latest: Issuance | null;
      if (event.kind === 'gap') {
        try {
          latest = await reread();
          feed.readSucceeded();
        } catch {
          feed.gapAgainLater(); // the request may have become final meanwhile: read it again later
          continue;
        }
      } else {
        latest = event.issuance;
      }
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
function closing<T>(feed: Feed<FeedEvent>, generator: AsyncGenerator<T>): AsyncIterableIterator<T> {
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
