/** Plain domain types: what every layer passes around. No infrastructure here. */

export type PromotionStatus = 'SCHEDULED' | 'ACTIVE' | 'SOLD_OUT' | 'ENDED';
export type IssueOutcome = 'QUEUED' | 'ALREADY_REQUESTED' | 'SOLD_OUT' | 'NOT_STARTED' | 'ENDED' | 'NOT_FOUND';
export type IssuanceStatus = 'QUEUED' | 'ISSUED' | 'FAILED';

export interface PromotionRecord {
  id: string;
  name: string;
  totalStock: number;
  perUserLimit: number;
  startsAt: Date;
  endsAt: Date;
  endedAt: Date | null;
  /** Every coupon of the promotion expires then; null or absent: never. */
  couponValidUntil?: Date | null;
  createdAt: Date;
}

export interface PromotionView extends PromotionRecord {
  remainingStock: number;
  issuedCount: number;
  status: PromotionStatus;
}

export interface Coupon {
  id: string;
  code: string;
  promotionId: string;
  userId: string;
  requestId: string;
  /** When the request was queued (kept with the coupon; not part of the public Coupon type). */
  requestedAt: Date;
  issuedAt: Date;
  /**
   * Its lifecycle as PostgreSQL holds it. Absent on a coupon carried by Redis (a request's status, a
   * confirmation message): issuance does not pay for it, and a reader that needs it asks PostgreSQL.
   */
  state?: CouponState;
}

/** What a client sees. EXPIRED is never stored: it is an ACTIVE coupon read past its validUntil. */
export type CouponStatus = 'ACTIVE' | 'REDEEMED' | 'REVOKED' | 'EXPIRED';
export type StoredCouponStatus = Exclude<CouponStatus, 'EXPIRED'>;
export type RedeemOutcome = 'REDEEMED' | 'ALREADY_REDEEMED' | 'EXPIRED' | 'REVOKED' | 'NOT_OWNER' | 'NOT_FOUND';

export interface CouponState {
  status: StoredCouponStatus;
  /** The promotion's couponValidUntil. */
  validUntil: Date | null;
  redeemedAt: Date | null;
  /** The order that redeemed it (kept when a redeemed coupon is revoked). */
  orderId: string | null;
}

export interface RedeemResult {
  outcome: RedeemOutcome;
  /** The coupon when found (the caller, a merchant or an admin, may see any). */
  coupon: Coupon | null;
}

/** Who changed a coupon's status, for the trail. */
export interface Actor {
  userId: string;
  role: 'admin' | 'merchant';
}

/** One row of the trail: a change of a coupon's status. */
export interface CouponEvent {
  couponId: string;
  fromStatus: StoredCouponStatus;
  toStatus: StoredCouponStatus;
  actorUserId: string;
  actorRole: Actor['role'];
  orderId: string | null;
  reason: string | null;
  at: Date;
}

export interface Issuance {
  requestId: string;
  promotionId: string;
  userId: string;
  status: IssuanceStatus;
  requestedAt: Date;
  coupon: Coupon | null;
  failureReason: string | null;
}

export interface IssueResult {
  outcome: IssueOutcome;
  requestId: string | null;
  position: number | null;
  remainingStock: number;
}

/** A queued request as the consumer reads it from the stream. */
export interface QueuedRequest {
  entryId: string;
  requestId: string;
  promotionId: string;
  userId: string;
  requestedAt: Date;
  /** The n-th reservation of its promotion (0 for entries queued before positions were recorded). */
  position: number;
}

/** A request that ended FAILED: never stored, its stock and the user's count given back. */
export interface DeadLetter {
  requestId: string;
  promotionId: string;
  userId: string;
  position: number;
  reason: string;
  /** How many times it was delivered to a consumer. */
  deliveries: number;
  requestedAt: Date;
  failedAt: Date;
}

/** The invariant's terms for one promotion, read at one consistent point. */
export interface PromotionAudit {
  promotionId: string;
  totalStock: number;
  remainingStock: number;
  persisted: number;
  inFlight: number;
  failed: number;
  /** Users holding more than perUserLimit, counting stored and in-flight requests. */
  usersOverLimit: number;
  holds: boolean;
  checkedAt: Date;
}

export interface Caller {
  userId: string;
  isAdmin: boolean;
  /** The shop's checkout backend: a service account, exempt from per-user rate limits like an admin. */
  isMerchant: boolean;
}
