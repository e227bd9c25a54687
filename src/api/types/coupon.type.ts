import { Field, ID, ObjectType } from 'type-graphql';
import type { CouponState } from '../../domain/types';
import { DateTimeScalar } from './date-time.scalar';
import { RedeemOutcomeEnum } from './enums';

/**
 * status, validUntil, redeemedAt and orderId are field resolvers (coupon.resolver.ts): a coupon that comes
 * from Redis (an issuance) carries no state, and reads it from PostgreSQL only when a client asks for it.
 */
@ObjectType('Coupon')
export class CouponType {
  @Field(() => ID)
  id: string;

  @Field({ description: 'unique, 16 characters, safe to read aloud (no 0/O, 1/I)' })
  code: string;

  @Field(() => ID)
  promotionId: string;

  @Field(() => ID)
  userId: string;

  @Field(() => ID)
  requestId: string;

  @Field(() => DateTimeScalar)
  issuedAt: Date;

  state?: CouponState;
}

@ObjectType('RedeemCouponPayload')
export class RedeemCouponPayloadType {
  @Field(() => RedeemOutcomeEnum)
  outcome: RedeemOutcomeEnum;

  @Field(() => CouponType, { nullable: true, description: 'when found and the caller may see it' })
  coupon: CouponType | null;
}
