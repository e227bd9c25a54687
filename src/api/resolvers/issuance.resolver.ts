import { Arg, Args, ArgsType, Ctx, Field, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { IssuanceService } from '../../domain/issuance-service';
import type { Issuance } from '../../domain/types';
import type { GraphQLContext } from '../context';
import { CouponType } from '../types/coupon.type';
import { IssuanceType, IssueCouponPayloadType } from '../types/issuance.type';

@ArgsType()
class CouponIssuedArgs {
  @Field(() => ID, { nullable: true })
  requestId?: string | null;

  @Field(() => ID, { nullable: true })
  promotionId?: string | null;
}

@Resolver()
export class IssuanceResolver {
  constructor(private readonly issuanceService: IssuanceService) {}

  @Mutation(() => IssueCouponPayloadType)
  issueCoupon(
    @Arg('promotionId', () => ID) promotionId: string,
    @Arg('idempotencyKey', () => String, { nullable: true }) idempotencyKey: string | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<IssueCouponPayloadType> {
    return this.issuanceService.issue(ctx.caller, promotionId, idempotencyKey, ctx.clientIp) as Promise<IssueCouponPayloadType>;
  }

  @Query(() => IssuanceType, { nullable: true, description: "the caller's own (admins: any); null otherwise" })
  issuance(@Arg('requestId', () => ID) requestId: string, @Ctx() ctx: GraphQLContext): Promise<IssuanceType | null> {
    return this.issuanceService.issuance(ctx.caller, requestId) as Promise<IssuanceType | null>;
  }

  @Query(() => [CouponType], { description: "the caller's coupons, newest first, first <= 500" })
  myCoupons(
    @Arg('promotionId', () => ID, { nullable: true }) promotionId: string | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number | null,
    @Arg('after', () => ID, { nullable: true }) after: string | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<CouponType[]> {
    return this.issuanceService.myCoupons(ctx.caller, promotionId ?? null, first ?? 50, after ?? null);
  }

  @Subscription(() => IssuanceType, {
    description: 'final states of the caller\'s requests; with requestId: replays a final state, then completes',
    subscribe: ({ args, context }) => {
      const { issuance, caller } = context as GraphQLContext;
      return issuance.watch(caller, args as CouponIssuedArgs);
    },
  })
  couponIssued(@Root() issuance: Issuance, @Args() _args: CouponIssuedArgs): IssuanceType {
    return issuance as IssuanceType;
  }
}
