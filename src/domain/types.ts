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
