import type { Coupon, Issuance, IssueResult, PromotionRecord, QueuedRequest } from './types';

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
  /** All promotions that have not ended, for rebuilding Redis. */
  listUnended(now: Date): Promise<PromotionRecord[]>;
  addStock(id: string, amount: number): Promise<PromotionRecord | null>;
  end(id: string, at: Date): Promise<PromotionRecord | null>;
  issuedCounts(ids: string[]): Promise<Map<string, number>>;
  /** Coupons held per user in one promotion, and each user's latest request, for rebuilding Redis. */
  couponsPerUser(promotionId: string): Promise<Map<string, UserHoldings>>;
}

export interface UserHoldings {
  count: number;
  lastRequestId: string;
}

export interface CouponRepository {
  findByRequestId(requestId: string): Promise<Coupon | null>;
  listByUser(userId: string, promotionId: string | null, limit: number): Promise<Coupon[]>;
  /**
   * Stores one coupon per request, in one statement; harmless when repeated (unique requestId).
   * Returns the stored coupon of every request, the ones stored earlier included.
   */
  persistBatch(requests: QueuedRequest[]): Promise<Coupon[]>;
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

export interface ReservationStore {
  /** The one atomic step that decides an issueCoupon outcome. Throws RateLimitedError when a rate bucket refuses. */
  reserve(args: ReserveArgs): Promise<IssueResult>;
  /** Creates the promotion's Redis state where missing; true when it had to be (re)built. */
  setupPromotion(promotion: PromotionRecord, issuedCount: number, holdings?: Map<string, UserHoldings>): Promise<boolean>;
  hasPromotion(promotionId: string): Promise<boolean>;
  addStock(promotionId: string, amount: number): Promise<PromotionCounters | null>;
  endPromotion(promotionId: string, at: Date): Promise<boolean>;
  remainingStock(promotionIds: string[]): Promise<Map<string, number>>;
  issuance(requestId: string): Promise<Issuance | null>;
}

/**
 * What a live feed carries: a final issuance state, or a gap, when the feed's listener lost its connection
 * for a while and events published meanwhile may be missing (read the state again to catch up).
 */
export type FeedEvent = { kind: 'final'; issuance: Issuance } | { kind: 'gap' };

/** A live feed of one user's final issuance states. */
export interface IssuanceFeed extends AsyncIterable<FeedEvent> {
  close(): void;
}

export interface IssuanceEvents {
  /** Resolves once the feed is listening, so nothing published afterwards is missed. */
  watchUser(userId: string): Promise<IssuanceFeed>;
}

export interface Clock {
  now(): Date;
}
