import { canSeeCoupon, requireAdmin, requireCheckout, requireUser } from './access';
import { couponStatus, redeemOutcome, validateOrderId, validateRevokeReason } from './coupon-rules';
import { InputError, NotFoundError, UnavailableError } from './errors';
import { isCouponCode } from './identifiers';
import type { Clock, CouponLifecycleRepository } from './ports';
import type { Actor, Caller, Coupon, CouponState, CouponStatus, RedeemOutcome, RedeemResult } from './types';

/**
 * A conditional write that changed nothing, then a read that finds the coupon changeable after all, means
 * another call changed it back in between: so few rounds settle it that running out is a fault, not load.
 */
const ATTEMPTS = 3;

const raced = (): UnavailableError => new UnavailableError('The coupon changed during the call: try again', 50);

/**
 * The coupon's life after issuance: a shop's checkout redeems it for one order, cancels that when the order
 * is cancelled, an admin revokes it. PostgreSQL decides each change with one conditional write and keeps the
 * trail; every read derives EXPIRED from the promotion's couponValidUntil with this service's clock.
 */
export class CouponService {
  constructor(
    private readonly coupons: CouponLifecycleRepository,
    private readonly clock: Clock,
    private readonly onRedeem: (outcome: RedeemOutcome) => void = () => undefined,
  ) {}

  /** Its owner, merchants and admins see it; anyone else gets null, as for a code that does not exist. */
  async coupon(caller: Caller | null, code: string): Promise<Coupon | null> {
    const user = requireUser(caller);
    if (!isCouponCode(code)) return null;
    const found = await this.coupons.findByCode(code);
    return found && canSeeCoupon(user, found.userId) ? found : null;
  }

  async redeem(caller: Caller | null, code: string, orderId: string, userId: string): Promise<RedeemResult> {
    const actor = requireCheckout(caller);
    const order = validateOrderId(orderId);
    const result = await this.tryRedeem(actor, code, order, userId);
    this.onRedeem(result.outcome);
    return result;
  }

  /** The order was cancelled: the coupon it redeemed is ACTIVE again (EXPIRED past its validUntil). */
  async cancel(caller: Caller | null, code: string, orderId: string): Promise<Coupon> {
    const actor = requireCheckout(caller);
    const order = validateOrderId(orderId);
    if (!isCouponCode(code)) throw new NotFoundError('Coupon');
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const cancelled = await this.coupons.cancel({ code, orderId: order, actor, now: this.clock.now() });
      if (cancelled) return cancelled;
      const found = await this.coupons.findByCode(code);
      if (!found?.state) throw new NotFoundError('Coupon');
      const { state } = found;
      if (state.status === 'REVOKED') throw new InputError('code', 'the coupon was revoked: no order holds it any more');
      if (state.status === 'REDEEMED' && state.orderId !== order) throw new InputError('orderId', 'another order holds this coupon');
      if (state.status === 'ACTIVE') {
        // A repeat of this order's cancellation (a retry after a timeout) answers the coupon as it is.
        const last = await this.coupons.lastEvent(found.id);
        if (last?.fromStatus === 'REDEEMED' && last.toStatus === 'ACTIVE' && last.orderId === order) return found;
        throw new InputError('orderId', 'this order does not hold the coupon');
      }
      // REDEEMED by this very order again: it was redeemed anew between the write and the read.
    }
    throw raced();
  }

  /** Admin: the coupon can never be redeemed again. A repeat answers the coupon revoked the first time. */
  async revoke(caller: Caller | null, code: string, reason: string): Promise<Coupon> {
    const user = requireAdmin(caller);
    const why = validateRevokeReason(reason);
    if (!isCouponCode(code)) throw new NotFoundError('Coupon');
    const revoked = await this.coupons.revoke({ code, reason: why, actor: { userId: user.userId, role: 'admin' }, now: this.clock.now() });
    if (revoked) return revoked;
    // Only a REVOKED coupon or none at all leaves the write without a row.
    const found = await this.coupons.findByCode(code);
    if (!found) throw new NotFoundError('Coupon');
    return found;
  }

  /** The states of coupons that came without one (from Redis), read from PostgreSQL. */
  states(couponIds: string[]): Promise<Map<string, CouponState>> {
    return this.coupons.states(couponIds);
  }

  /** What a client sees now. */
  statusOf(state: CouponState): CouponStatus {
    return couponStatus(state, this.clock.now());
  }

  private async tryRedeem(actor: Actor, code: string, orderId: string, userId: string): Promise<RedeemResult> {
    if (!isCouponCode(code)) return { outcome: 'NOT_FOUND', coupon: null };
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const now = this.clock.now();
      // The one write that decides: of concurrent calls for one code, exactly one finds the row ACTIVE.
      const redeemed = await this.coupons.redeem({ code, orderId, userId, actor, now });
      if (redeemed) return { outcome: 'REDEEMED', coupon: redeemed };
      // Nothing changed: a read that started after the write tells why.
      const found = await this.coupons.findByCode(code);
      const outcome = redeemOutcome(found, { orderId, userId, now });
      if (outcome) return { outcome, coupon: found };
    }
    throw raced();
  }
}
