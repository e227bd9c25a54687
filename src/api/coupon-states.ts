import type { Coupon, CouponState } from '../domain/types';

/** What a coupon was when issued: the answer for one whose row is not found (it was just confirmed stored). */
const AS_ISSUED: CouponState = { status: 'ACTIVE', validUntil: null, redeemedAt: null, orderId: null };

const MAX_BATCH = 500;

interface Waiter {
  resolve: (state: CouponState) => void;
  reject: (error: unknown) => void;
}

/**
 * The state of coupons that came from Redis without one (issuance, couponIssued): their confirmation path
 * stays as cheap as before, and a client that asks for status, validUntil, redeemedAt or orderId pays one
 * query by primary key for all the coupons asked in the same turn of the event loop (a burst of confirmations
 * fanned out to many subscribers, a list). Nothing is cached beyond the coupon object itself (its four fields
 * share one load): a state read later is read again, so it is never stale.
 */
export class CouponStateLoader {
  private pending = new Map<string, Waiter[]>();
  private scheduled = false;
  private readonly loads = new WeakMap<Coupon, Promise<CouponState>>();

  constructor(private readonly read: (couponIds: string[]) => Promise<Map<string, CouponState>>) {}

  stateOf(coupon: Coupon): Promise<CouponState> {
    if (coupon.state) return Promise.resolve(coupon.state);
    let load = this.loads.get(coupon);
    if (!load) {
      load = this.enqueue(coupon.id);
      this.loads.set(coupon, load);
    }
    return load;
  }

  private enqueue(couponId: string): Promise<CouponState> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(couponId);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(couponId, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = new Map();
    this.scheduled = false;
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += MAX_BATCH) {
      const chunk = ids.slice(i, i + MAX_BATCH);
      this.read(chunk).then(
        (states) => {
          for (const id of chunk) for (const w of batch.get(id) ?? []) w.resolve(states.get(id) ?? AS_ISSUED);
        },
        (error: unknown) => {
          for (const id of chunk) for (const w of batch.get(id) ?? []) w.reject(error);
        },
      );
    }
  }
}
