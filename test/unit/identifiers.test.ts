import fc from 'fast-check';
import {
  COUPON_CODE_LENGTH,
  isUserId,
  newCouponCode,
  newPromotionId,
  newRequestId,
  promotionIdOfRequest,
} from '../../src/domain/identifiers';

describe('identifiers', () => {
  test('When a requestId is made for a promotion, then the promotion can be read back from it', () => {
    const promotionId = newPromotionId();
    const requestId = newRequestId(promotionId);

    expect(promotionIdOfRequest(requestId)).toBe(promotionId);
    expect(newRequestId(promotionId)).not.toBe(requestId);
  });

  test('When a string is not a requestId this service made, then no promotion is read from it', () => {
    const promotionId = newPromotionId();
    for (const bad of ['', 'nope', promotionId, `${promotionId}.`, `${promotionId}.xyz`, `not-a-uuid.${'a'.repeat(32)}`, `${promotionId}.${'A'.repeat(32)}`]) {
      expect(promotionIdOfRequest(bad)).toBeNull();
    }
    fc.assert(fc.property(fc.string(), (s) => promotionIdOfRequest(s) === null || s.startsWith(s.slice(0, 36))));
  });

  test('When coupon codes are made, then they are 16 symbols with no 0, O, 1 or I, and do not repeat', () => {
    const codes = Array.from({ length: 20_000 }, () => newCouponCode());

    for (const code of codes) expect(code).toMatch(/^[A-HJ-NP-Z2-9]{16}$/);
    expect(COUPON_CODE_LENGTH).toBe(16);
    expect(new Set(codes).size).toBe(codes.length);
    // Every symbol of the 32-symbol alphabet is used.
    expect(new Set(codes.join('')).size).toBe(32);
  });

  test('When a user id is checked, then only 1 to 128 of A-Z a-z 0-9 _ - . : @ | pass', () => {
    expect(['a', 'alice@example.com', 'user:42', 'A_b-c.d', 'auth0|abc', 'x'.repeat(128)].every(isUserId)).toBe(true);
    expect(['', 'x'.repeat(129), 'has space', 'ünïcode', 'a/b', 'a{b}', 'a\nb'].some(isUserId)).toBe(false);
    fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 128 }), (s) => isUserId(s) === /^[A-Za-z0-9_\-.:@|]+$/.test(s)));
  });
});
