import { InputError } from './errors';
import { freeText } from './promotion-rules';
import type { Coupon, CouponState, CouponStatus, RedeemOutcome } from './types';

export const COUPON_LIMITS = {
  orderIdMaxLength: 128,
  revokeReasonMaxLength: 500,
} as const;

/** Length in characters (code points), as PostgreSQL's varchar counts them, not UTF-16 units. */
const lengthOf = (value: string): number => {
  let n = 0;
  for (const _ of value) n++;
  return n;
};

/** A shop's order id: 1 to 128 characters, no control characters. Kept as given (no trimming): it is an id. */
export function validateOrderId(orderId: string): string {
  const length = lengthOf(orderId);
  if (length < 1 || length > COUPON_LIMITS.orderIdMaxLength) {
    throw new InputError('orderId', `must be 1 to ${COUPON_LIMITS.orderIdMaxLength} characters`);
  }
  return freeText('orderId', orderId);
}

/** Why an admin revoked a coupon: 1 to 500 characters once trimmed, no control characters (it is kept in the trail). */
export function validateRevokeReason(reason: string): string {
  const trimmed = freeText('reason', reason).trim();
  const length = lengthOf(trimmed);
  if (length < 1 || length > COUPON_LIMITS.revokeReasonMaxLength) {
    throw new InputError('reason', `must be 1 to ${COUPON_LIMITS.revokeReasonMaxLength} characters`);
  }
  return trimmed;
}

export function isExpired(state: CouponState, now: Date): boolean {
  return state.validUntil !== null && state.validUntil.getTime() <= now.getTime();
}

/** What a client sees: an ACTIVE coupon past its validUntil reads EXPIRED; REDEEMED and REVOKED stay as they are. */
export function couponStatus(state: CouponState, now: Date): CouponStatus {
  return state.status === 'ACTIVE' && isExpired(state, now) ? 'EXPIRED' : state.status;
}

/**
 * Why a redemption changed nothing, from the coupon read after the conditional write. Null when the coupon
 * is redeemable after all (a cancellation landed between the write and the read): the caller tries again.
 * The owner is checked first, so a wrong user learns nothing more about the coupon.
 */
export function redeemOutcome(coupon: Coupon | null, args: { orderId: string; userId: string; now: Date }): RedeemOutcome | null {
  if (!coupon?.state) return 'NOT_FOUND';
  const { state } = coupon;
  if (coupon.userId !== args.userId) return 'NOT_OWNER';
  if (state.status === 'REVOKED') return 'REVOKED';
  // A repeat of the redeeming order: it holds the coupon, nothing more to do (a retry after a timeout).
  if (state.status === 'REDEEMED') return state.orderId === args.orderId ? 'REDEEMED' : 'ALREADY_REDEEMED';
  if (isExpired(state, args.now)) return 'EXPIRED';
  return null;
}
