import { Field, InputType, Int } from 'type-graphql';
import { DateTimeScalar } from './date-time.scalar';

@InputType('CreatePromotionInput')
export class CreatePromotionInput {
  @Field({ description: '1 to 200 characters' })
  name: string;

  @Field(() => Int, { description: '1 to 10,000,000' })
  totalStock: number;

  @Field(() => Int, { nullable: true, defaultValue: 1, description: '1 to 100' })
  perUserLimit?: number;

  @Field(() => DateTimeScalar, { nullable: true, description: 'default: now' })
  startsAt?: Date | null;

  @Field(() => DateTimeScalar, { description: 'after startsAt' })
  endsAt: Date;

  @Field(() => DateTimeScalar, { nullable: true, description: 'optional: coupons of this promotion expire then (after endsAt)' })
  couponValidUntil?: Date | null;
}
