import { Arg, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { CouponService } from '../../domain/coupon-service';
import type { Coupon } from '../../domain/types';
import type { GraphQLContext } from '../context';
import { CouponStateLoader } from '../coupon-states';
import { CouponType, RedeemCouponPayloadType } from '../types/coupon.type';
import { DateTimeScalar } from '../types/date-time.scalar';
import { CouponStatusEnum, RedeemOutcomeEnum } from '../types/enums';

@Resolver(() => CouponType)
export class CouponResolver {
  private readonly states: CouponStateLoader;

  constructor(private readonly couponService: CouponService) {
    this.states = new CouponStateLoader((ids) => couponService.states(ids));
  }

  @Query(() => CouponType, { nullable: true, description: 'its owner, merchants and admins; null otherwise' })
  coupon(@Arg('code') code: string, @Ctx() ctx: GraphQLContext): Promise<Coupon | null> {
    return this.couponService.coupon(ctx.caller, code);
  }

  @Mutation(() => RedeemCouponPayloadType, { description: "merchant or admin: at checkout, for that user's order" })
  async redeemCoupon(
    @Arg('code') code: string,
    @Arg('orderId', { description: '1 to 128 characters, no control characters' }) orderId: string,
    @Arg('userId', () => ID) userId: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<RedeemCouponPayloadType> {
    const result = await this.couponService.redeem(ctx.caller, code, orderId, userId);
    return { outcome: RedeemOutcomeEnum[result.outcome], coupon: result.coupon };
  }

  @Mutation(() => CouponType, { description: 'merchant or admin: the order was cancelled; the coupon is ACTIVE again (if not expired)' })
  cancelRedemption(@Arg('code') code: string, @Arg('orderId') orderId: string, @Ctx() ctx: GraphQLContext): Promise<Coupon> {
    return this.couponService.cancel(ctx.caller, code, orderId);
  }

  @Mutation(() => CouponType, { description: 'admin' })
  revokeCoupon(
    @Arg('code') code: string,
    @Arg('reason', { description: '1 to 500 characters, no control characters' }) reason: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Coupon> {
    return this.couponService.revoke(ctx.caller, code, reason);
  }

  @FieldResolver(() => CouponStatusEnum)
  async status(@Root() coupon: Coupon): Promise<CouponStatusEnum> {
    return CouponStatusEnum[this.couponService.statusOf(await this.states.stateOf(coupon))];
  }

  @FieldResolver(() => DateTimeScalar, { nullable: true, description: "from the promotion's couponValidUntil; null: no expiry" })
  async validUntil(@Root() coupon: Coupon): Promise<Date | null> {
    return (await this.states.stateOf(coupon)).validUntil;
  }

  @FieldResolver(() => DateTimeScalar, { nullable: true })
  async redeemedAt(@Root() coupon: Coupon): Promise<Date | null> {
    return (await this.states.stateOf(coupon)).redeemedAt;
  }

  @FieldResolver(() => String, { nullable: true, description: 'the order that redeemed it' })
  async orderId(@Root() coupon: Coupon): Promise<string | null> {
    return (await this.states.stateOf(coupon)).orderId;
  }
}
