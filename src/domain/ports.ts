import type { Actor, Coupon, CouponEvent, CouponState, DeadLetter, Issuance, IssueResult, PromotionRecord, QueuedRequest } from './types';

/** What the use cases need from storage. Implemented in db/ (PostgreSQL) and redis/. */

export type PromotionWindowFilter = 'SCHEDULED' | 'OPEN' | 'ENDED';

/** A position in the newest-first order (createdAt desc, id desc): the last promotion of a page. */
export interface PromotionCursor {
  createdAt: Date;
  id: string;
}

export interface PromotionRepository {
  create(promotion: PromotionRecord): Promise<void>;
  findById(id: string): Promise<PromotionRecord | null>;
  /** Newest first; `window` narrows by time window and early end. */
  list(options: { window?: PromotionWindowFilter; now: Date; limit: number; after?: PromotionCursor }): Promise<PromotionRecord[]>;
  /** Promotions not over, plus those over since `overSince` (ended early or past endsAt): what Redis still serves. */
  listRecent(overSince: Date): Promise<PromotionRecord[]>;
  /**
   * Adds to total_stock. With a key, the key is recorded in the same transaction: a repeated key adds nothing
   * and answers the promotion as it is now. Null when the promotion does not exist.
   */
  addStock(id: string, amount: number, idempotencyKey: string | null): Promise<StockAddition | null>;
  /** Sets ended_at unless already set (the first end time is kept); null when the promotion does not exist. */
  end(id: string, at: Date): Promise<PromotionRecord | null>;
  issuedCounts(ids: string[]): Promise<Map<string, number>>;
  /** The highest position any stored or failed request of the promotion had (0 when none). */
  lastPosition(promotionId: string): Promise<number>;
  /** Coupons held per user in one promotion, and each user's latest request, for rebuilding Redis. */
  couponsPerUser(promotionId: string): Promise<Map<string, UserHoldings>>;
}

export interface StockAddition {
  promotion: PromotionRecord;
  /** false when the idempotency key had been used before: nothing was added by this call */
  added: boolean;
  /** the amount the key's first call added (this call's amount when added) */
  amount: number;
}

export interface UserHoldings {
  count: number;
  lastRequestId: string;
}

export interface CouponRepository {
  findByRequestId(requestId: string): Promise<Coupon | null>;
  /** Newest first, (issuedAt, id) descending; `after`: a coupon id, the page starts strictly after it. */
  listByUser(userId: string, promotionId: string | null, limit: number, after: string | null): Promise<Coupon[]>;
  /**
   * Stores one coupon per request, in one statement; harmless when repeated (unique requestId).
   * Returns the stored coupon of every request, the ones stored earlier included; a request recorded as
   * failed gets none.
   */
  persistBatch(requests: QueuedRequest[]): Promise<Coupon[]>;
}

/**
 * The coupon lifecycle in PostgreSQL. Each change is one conditional write that decides alone (the row lock
 * settles concurrent calls) and writes its trail row in the same statement; it returns the changed coupon, or
 * null when its condition did not hold and nothing changed (read the coupon to learn why). Coupons returned
 * here carry their state.
 */
export interface CouponLifecycleRepository {
  findByCode(code: string): Promise<Coupon | null>;
  /** The state of each of these coupons that exists. */
  states(couponIds: string[]): Promise<Map<string, CouponState>>;
  /** ACTIVE, owned by userId and valid at `now` → REDEEMED by orderId. */
  redeem(args: { code: string; orderId: string; userId: string; actor: Actor; now: Date }): Promise<Coupon | null>;
  /** REDEEMED by orderId → ACTIVE. */
  cancel(args: { code: string; orderId: string; actor: Actor; now: Date }): Promise<Coupon | null>;
  /** Anything but REVOKED → REVOKED. */
  revoke(args: { code: string; reason: string; actor: Actor; now: Date }): Promise<Coupon | null>;
  /** The coupon's latest trail row; null when its status never changed. */
  lastEvent(couponId: string): Promise<CouponEvent | null>;
}

/** Requests that ended FAILED, kept in PostgreSQL past the status TTL and a Redis loss. */
export interface FailureRepository {
  /**
   * Records a failure, unless the request was stored after all ('stored': confirm it instead). Harmless when
   * repeated (the first record stays). A request never ends both stored and failed.
   */
  record(failure: Omit<DeadLetter, 'failedAt'>): Promise<'failed' | 'stored'>;
  find(requestId: string): Promise<DeadLetter | null>;
  /** The failure reason of each of the given requests that was recorded as failed. */
  reasonsOf(requestIds: string[]): Promise<Map<string, string>>;
  /** Newest first; `after` is the last requestId of the previous page. */
  list(promotionId: string, limit: number, after: string | null): Promise<DeadLetter[]>;
}

/** Redis's side of the audit, read atomically: the counters and the requests still in the stream. */
export interface AuditSnapshot {
  totalStock: number;
  remainingStock: number;
  perUserLimit: number;
  /** Reservations made so far: every request with a position up to this one was reserved before the read. */
  reservations: number;
  inFlight: { requestId: string; userId: string }[];
}

/** PostgreSQL's side of the audit, counted for the reservations made up to `reservations`. */
export interface AuditRepository {
  termsAt(args: {
    promotionId: string;
    reservations: number;
    perUserLimit: number;
    inFlight: { requestId: string; userId: string }[];
  }): Promise<{ persisted: number; failed: number; storedInFlight: number; usersOverLimit: number }>;
}

export interface ReserveArgs {
  promotionId: string;
  userId: string;
  requestId: string;
  idempotencyKey: string | null;
  /** The client's address, for the optional per-IP issueCoupon limit; null when unknown. */
  clientIp?: string | null;
}

export interface PromotionCounters {
  remainingStock: number;
  totalStock: number;
}

/** What Redis holds of one promotion, read in one round trip for many. */
export interface PromotionLiveState {
  /** false when Redis holds no state for the promotion (never set up, or lost) */
  exists: boolean;
  totalStock: number;
  remainingStock: number;
  /** set when issuance was stopped early (endPromotion) */
  endedAt: Date | null;
  /** the sale's window as Redis holds it (null when the state does not exist) */
  startsAt: Date | null;
  endsAt: Date | null;
  /**
   * Coupons issued, as Redis counts them (confirm.lua, after each commit): it may trail PostgreSQL by the
   * moments between a batch's commit and its confirmation. null when Redis holds no counter: count the rows.
   */
  issuedCount: number | null;
  /** Rebuilt from PostgreSQL: the counter is to be checked against it once nothing is in flight. */
  recountIssued: boolean;
}

export interface ReservationStore {
  /** The one atomic step that decides an issueCoupon outcome. Throws RateLimitedError when a rate bucket refuses. */
  reserve(args: ReserveArgs): Promise<IssueResult>;
  /**
   * Registers the promotion for the consumers, writes the given per-user holdings, then creates its Redis state
   * where missing; true when it had to be (re)built. In that order, a failure part way leaves nothing unsafe: no
   * queue that nobody reads, no open sale without its per-user counts; the next call finishes the work.
   * `reservationsMade` (default: issuedCount) restarts the position sequence past every position already used.
   */
  setupPromotion(
    promotion: PromotionRecord,
    issuedCount: number,
    holdings?: Map<string, UserHoldings>,
    reservationsMade?: number,
    /** Rebuilt from PostgreSQL: the issued counter is checked against it later (settleIssuedCount). */
    rebuild?: boolean,
  ): Promise<boolean>;
  /**
   * After a rebuild: sets the issued counter to `counted` (PostgreSQL's count, read after the counter was read as
   * `seen`) if nothing is in flight and the counter has not moved since; 'later' when it could not yet.
   */
  settleIssuedCount(promotionId: string, seen: number | null, counted: number): Promise<'settled' | 'nothing' | 'later'>;
  hasPromotion(promotionId: string): Promise<boolean>;
  /** Adds the promotion to the set of queues the consumers read. */
  register(promotionId: string): Promise<void>;
  /** Raises the total (and the remaining stock by the difference) to `totalStock`; never lowers it. Null when missing. */
  raiseTotalStock(promotionId: string, totalStock: number): Promise<PromotionCounters | null>;
  /** Stops issuance; returns the end time Redis holds (the first one when ended before), null when missing. */
  endPromotion(promotionId: string, at: Date): Promise<Date | null>;
  liveStates(promotionIds: string[]): Promise<Map<string, PromotionLiveState>>;
  /** Which of these promotions the consumers read. */
  registered(promotionIds: string[]): Promise<Set<string>>;
  issuance(requestId: string): Promise<Issuance | null>;
  /** The user's latest request in the promotion, as issuance() reads it; null when Redis knows none. */
  latestIssuance(promotionId: string, userId: string): Promise<Issuance | null>;
  /** null when Redis holds no counters for the promotion (unknown, retired, or lost). */
  auditSnapshot(promotionId: string): Promise<AuditSnapshot | null>;
  /** False once Redis has lost the state built from PostgreSQL (a restart without persistence, a flush). */
  stateIntact(): Promise<boolean>;
  markStateBuilt(): Promise<void>;
}

/**
 * What a live feed carries: a final issuance state, or a gap, when the feed's listener lost its connection
 * for a while and events published meanwhile may be missing (read the state again to catch up).
 */
export type FeedEvent = { kind: 'final'; issuance: Issuance } | { kind: 'gap' };

/** Takes a user's feed events as they come, synchronously: it only queues them for its reader. */
export interface FeedListener {
  onFeedEvent(event: FeedEvent): void;
}

/** Live feeds of one user's final issuance states: the events are pushed to listeners, nothing is kept per listener. */
export interface IssuanceEvents {
  /**
   * Resolves once the listener is listening to the user's requests in that promotion (null: every promotion),
   * so nothing published afterwards is missed.
   */
  watchUser(userId: string, promotionId: string | null, listener: FeedListener): Promise<void>;
  /** The listener hears nothing more; one that is not listening is ignored. Same arguments as watchUser. */
  unwatchUser(userId: string, promotionId: string | null, listener: FeedListener): void;
}

export interface Clock {
  now(): Date;
}
