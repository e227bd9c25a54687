import { Field, ID, ObjectType } from 'type-graphql';
import { DateTimeScalar } from './date-time.scalar';

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
}
