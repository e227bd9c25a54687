import { Field, ID, Int, ObjectType } from 'type-graphql';
import { CouponType } from './coupon.type';
import { DateTimeScalar } from './date-time.scalar';
import { IssuanceStatusEnum, IssueOutcomeEnum } from './enums';

@ObjectType('IssueCouponPayload')
export class IssueCouponPayloadType {
  @Field(() => IssueOutcomeEnum)
  outcome: IssueOutcomeEnum;

  @Field(() => ID, { nullable: true, description: "QUEUED: the new request; ALREADY_REQUESTED: the user's latest request" })
  requestId: string | null;

  @Field(() => Int, { nullable: true, description: 'QUEUED: this was the n-th reservation of the promotion (1-based)' })
  position: number | null;

  @Field(() => Int, { description: 'right after this attempt' })
  remainingStock: number;
}

@ObjectType('Issuance')
export class IssuanceType {
  @Field(() => ID)
  requestId: string;

  @Field(() => ID)
  promotionId: string;

  @Field(() => ID)
  userId: string;

  @Field(() => IssuanceStatusEnum)
  status: IssuanceStatusEnum;

  @Field(() => DateTimeScalar)
  requestedAt: Date;

  @Field(() => CouponType, { nullable: true, description: 'when ISSUED' })
  coupon: CouponType | null;

  @Field(() => String, { nullable: true, description: 'when FAILED' })
  failureReason: string | null;
}
