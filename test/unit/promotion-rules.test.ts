import { promotionStatus, validateAdminIdempotencyKey, validateIdempotencyKey, validateListSize, validateNewPromotion, validateStockAmount } from '../../src/domain/promotion-rules';
import type { PromotionRecord } from '../../src/domain/types';
import { at, fieldOf, now } from '../helpers/rules';


describe('promotion rules', () => {
  test('When a new promotion omits perUserLimit and startsAt, then they default to 1 and now', () => {
    const p = validateNewPromotion({ name: '  Noon sale ', totalStock: 10_000, endsAt: at(3600_000) }, now);

    expect(p).toEqual({ name: 'Noon sale', totalStock: 10_000, perUserLimit: 1, startsAt: now, endsAt: at(3600_000), couponValidUntil: null });
  });

  test('When couponValidUntil is after endsAt, then it is kept; at or before endsAt, then the error names it', () => {
    const base = { name: 'ok', totalStock: 1, endsAt: at(1000) };

    expect(validateNewPromotion({ ...base, couponValidUntil: at(1001) }, now).couponValidUntil).toEqual(at(1001));
    expect(fieldOf(() => validateNewPromotion({ ...base, couponValidUntil: at(1000) }, now))).toBe('input.couponValidUntil');
    expect(fieldOf(() => validateNewPromotion({ ...base, couponValidUntil: at(-1) }, now))).toBe('input.couponValidUntil');
  });

  test.each([
    [{ name: '' }, 'input.name'],
    [{ name: 'x'.repeat(201) }, 'input.name'],
    [{ totalStock: 0 }, 'input.totalStock'],
    [{ totalStock: 10_000_001 }, 'input.totalStock'],
    [{ totalStock: 1.5 }, 'input.totalStock'],
    [{ perUserLimit: 0 }, 'input.perUserLimit'],
    [{ perUserLimit: 101 }, 'input.perUserLimit'],
    [{ endsAt: now }, 'input.endsAt'],
    [{ startsAt: at(10), endsAt: at(5) }, 'input.endsAt'],
  ])('When a new promotion has %j, then the error names %s', (override, field) => {
    expect(fieldOf(() => validateNewPromotion({ name: 'ok', totalStock: 1, endsAt: at(1000), ...override }, now))).toBe(field);
  });

  test('When the bounds are exactly met, then they are accepted', () => {
    expect(fieldOf(() => validateNewPromotion({ name: 'x'.repeat(200), totalStock: 10_000_000, perUserLimit: 100, endsAt: at(1) }, now))).toBeNull();
    expect(validateStockAmount(1_000_000)).toBe(1_000_000);
    expect(validateListSize(100)).toBe(100);
    expect(validateIdempotencyKey('k'.repeat(64))).toHaveLength(64);
    expect(validateIdempotencyKey(null)).toBeNull();
  });

  test('When other inputs are out of range, then the error names their field', () => {
    expect(fieldOf(() => validateStockAmount(0))).toBe('amount');
    expect(fieldOf(() => validateStockAmount(1_000_001))).toBe('amount');
    expect(fieldOf(() => validateListSize(101))).toBe('first');
    expect(fieldOf(() => validateIdempotencyKey(''))).toBe('idempotencyKey');
    expect(fieldOf(() => validateIdempotencyKey('key\u0000'))).toBe('idempotencyKey');
    expect(fieldOf(() => validateNewPromotion({ name: 'Sale\u0007', totalStock: 1, endsAt: new Date(Date.now() + 1000) }, new Date()))).toBe('input.name');
    expect(fieldOf(() => validateNewPromotion({ name: 'Sale\u0085', totalStock: 1, endsAt: new Date(Date.now() + 1000) }, new Date()))).toBe('input.name');
    expect(fieldOf(() => validateIdempotencyKey('k'.repeat(65)))).toBe('idempotencyKey');
  });

  test('When an admin idempotency key has control characters or the wrong length, then it is refused; printable text passes', () => {
    for (const key of ['', 'k'.repeat(65), 'tab\there', 'nul\u0000', 'del\u007f', 'c1\u0085']) {
      expect(fieldOf(() => validateAdminIdempotencyKey(key))).toBe('idempotencyKey');
    }
    expect(validateAdminIdempotencyKey('restock 2026-12-01 #1 ü 🎟')).toBe('restock 2026-12-01 #1 ü 🎟');
    expect(validateAdminIdempotencyKey(undefined)).toBeNull();
  });

  test('When the status is computed, then time window, early end and live stock decide it', () => {
    const p: PromotionRecord = { id: 'p', name: 'n', totalStock: 5, perUserLimit: 1, startsAt: at(-1000), endsAt: at(1000), endedAt: null, createdAt: at(-2000) };

    expect(promotionStatus(p, 3, now)).toBe('ACTIVE');
    expect(promotionStatus(p, 0, now)).toBe('SOLD_OUT');
    expect(promotionStatus({ ...p, startsAt: at(1) }, 5, now)).toBe('SCHEDULED');
    expect(promotionStatus(p, 3, at(1000))).toBe('ENDED');
    expect(promotionStatus({ ...p, endedAt: at(-1) }, 3, now)).toBe('ENDED');
  });
});
