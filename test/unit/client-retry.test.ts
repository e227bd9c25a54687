import { backoffDelay, retryAfter } from '../../clients/node/coupon-client';

/** The client kit's waits: never sooner than the server asked, spread at random so a crowd does not return at once. */

describe('client retry waits', () => {
  test.each([0, 0.5, 0.999])('When the server says retryAfterMs 400 (random %p), then the wait is 400 to 600 ms', (random) => {
    const wait = retryAfter(400, '1', random);
    expect(wait).toBeGreaterThanOrEqual(400);
    expect(wait).toBeLessThan(600);
  });

  test('When only Retry-After (seconds) is given, then it is the wait, in milliseconds', () => {
    expect(retryAfter(undefined, '2', 0)).toBe(2000);
  });

  test('When neither is usable, then the wait is one second', () => {
    expect(retryAfter(undefined, null, 0)).toBe(1000);
    expect(retryAfter(undefined, 'soon', 0)).toBe(1000);
  });

  test('When reconnecting again and again, then the delay doubles up to its cap, and jitter keeps it within [half, whole]', () => {
    expect([0, 1, 2, 3].map((attempt) => backoffDelay(attempt, 100, 1000, 1))).toEqual([100, 200, 400, 800]);
    expect(backoffDelay(10, 100, 1000, 1)).toBe(1000);
    expect(backoffDelay(10, 100, 1000, 0)).toBe(500);
  });
});
