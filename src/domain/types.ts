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
}

export interface Caller {
  userId: string;
  isAdmin: boolean;
  /** The shop's checkout backend: a service account, exempt from per-user rate limits like an admin. */
  isMerchant: boolean;
}
