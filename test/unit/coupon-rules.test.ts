import { requireCheckout, canSeeCoupon } from '../../src/domain/access';
import { couponStatus, redeemOutcome, validateOrderId, validateRevokeReason } from '../../src/domain/coupon-rules';
import { ForbiddenError, UnauthenticatedError } from '../../src/domain/errors';
import { isCouponCode, newCouponCode } from '../../src/domain/identifiers';
import type { Caller, Coupon, CouponState } from '../../src/domain/types';
import { at, fieldOf, now } from '../helpers/rules';


const active: CouponState = { status: 'ACTIVE', validUntil: null, redeemedAt: null, orderId: null };

function coupon(state: Partial<CouponState> = {}, userId = 'alice'): Coupon {
  return {
    id: 'c',
    code: 'ABCDEFGHJKLMNPQR',
    promotionId: 'p',
    userId,
    requestId: 'r',
    requestedAt: at(-2000),
    issuedAt: at(-1000),
    state: { ...active, ...state },
  };
}

const caller = (userId: string, roles: { isAdmin?: boolean; isMerchant?: boolean } = {}): Caller => ({
  userId,
  isAdmin: roles.isAdmin ?? false,
  isMerchant: roles.isMerchant ?? false,
});

describe('coupon rules', () => {
  test('When an orderId is 1 to 128 characters of printable text, then it is kept as given', () => {
    expect(validateOrderId('o')).toBe('o');
    expect(validateOrderId('x'.repeat(128))).toHaveLength(128);
    expect(validateOrderId(' order #42 ü ')).toBe(' order #42 ü ');
    // 128 characters that are 256 UTF-16 units: PostgreSQL's varchar(128) counts characters too.
    expect(validateOrderId('🎟'.repeat(128))).toBe('🎟'.repeat(128));
  });

  test.each([[''], ['x'.repeat(129)], ['🎟'.repeat(129)], ['a\u0000b'], ['line\n'], ['tab\t'], ['del\u007f'], ['c1\u0085']])(
    'When an orderId is %j, then the error names orderId',
    (orderId) => {
      expect(fieldOf(() => validateOrderId(orderId))).toBe('orderId');
    },
  );

  test('When a revocation reason is given, then it is trimmed and must hold 1 to 500 characters without control characters', () => {
    expect(validateRevokeReason('  given by mistake ')).toBe('given by mistake');
    expect(validateRevokeReason('r'.repeat(500))).toHaveLength(500);
    for (const reason of ['', '   ', 'r'.repeat(501), 'a\u0000', 'two\nlines']) {
      expect(fieldOf(() => validateRevokeReason(reason))).toBe('reason');
    }
  });

  test('When a status is read, then an ACTIVE coupon past its validUntil reads EXPIRED, and nothing else changes with time', () => {
    expect(couponStatus(active, now)).toBe('ACTIVE');
    expect(couponStatus({ ...active, validUntil: at(1) }, now)).toBe('ACTIVE');
    expect(couponStatus({ ...active, validUntil: now }, now)).toBe('EXPIRED');
    expect(couponStatus({ ...active, validUntil: at(-1) }, now)).toBe('EXPIRED');
    expect(couponStatus({ status: 'REDEEMED', validUntil: at(-1), redeemedAt: at(-5), orderId: 'o' }, now)).toBe('REDEEMED');
    expect(couponStatus({ status: 'REVOKED', validUntil: at(-1), redeemedAt: null, orderId: null }, now)).toBe('REVOKED');
  });

  test('When a redemption changed nothing, then the coupon as read tells the outcome, the owner checked first', () => {
    const args = { orderId: 'o1', userId: 'alice', now };

    expect(redeemOutcome(null, args)).toBe('NOT_FOUND');
    expect(redeemOutcome(coupon({ status: 'REVOKED' }, 'bob'), args)).toBe('NOT_OWNER');
    expect(redeemOutcome(coupon({ status: 'REVOKED' }), args)).toBe('REVOKED');
    expect(redeemOutcome(coupon({ status: 'REDEEMED', orderId: 'o1' }), args)).toBe('REDEEMED');
    expect(redeemOutcome(coupon({ status: 'REDEEMED', orderId: 'o2' }), args)).toBe('ALREADY_REDEEMED');
    // Held by this order and past validity since: the order still holds it.
    expect(redeemOutcome(coupon({ status: 'REDEEMED', orderId: 'o1', validUntil: at(-1) }), args)).toBe('REDEEMED');
    expect(redeemOutcome(coupon({ validUntil: at(-1) }), args)).toBe('EXPIRED');
    // Redeemable after all (cancelled in between): the caller tries the write again.
    expect(redeemOutcome(coupon(), args)).toBeNull();
  });

  test('When roles are checked, then merchants and admins may check out, named for the trail; others may not', () => {
    expect(requireCheckout(caller('shop', { isMerchant: true }))).toEqual({ userId: 'shop', role: 'merchant' });
    expect(requireCheckout(caller('root', { isAdmin: true, isMerchant: true }))).toEqual({ userId: 'root', role: 'admin' });
    expect(() => requireCheckout(caller('alice'))).toThrow(ForbiddenError);
    expect(() => requireCheckout(null)).toThrow(UnauthenticatedError);
  });

  test('When a coupon is looked at, then its owner, merchants and admins see it, and no other user', () => {
    expect(canSeeCoupon(caller('alice'), 'alice')).toBe(true);
    expect(canSeeCoupon(caller('shop', { isMerchant: true }), 'alice')).toBe(true);
    expect(canSeeCoupon(caller('root', { isAdmin: true }), 'alice')).toBe(true);
    expect(canSeeCoupon(caller('bob'), 'alice')).toBe(false);
  });

  test('When a code is checked, then only 16 symbols of the code alphabet can name a coupon', () => {
    expect(isCouponCode(newCouponCode())).toBe(true);
    for (const code of ['', 'ABCDEFGHJKLMNPQ', 'ABCDEFGHJKLMNPQRS', 'ABCDEFGHJKLMNPQ0', 'ABCDEFGHJKLMNPQI', 'abcdefghjkmnpqrs', "ABCDEFGH' OR 1=1"]) {
      expect(isCouponCode(code)).toBe(false);
    }
  });
});
