import { Field, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar } from './date-time.scalar';
import { PromotionStatusEnum } from './enums';

@ObjectType('Promotion')
export class PromotionType {
  @Field(() => ID)
  id: string;

  @Field()
  name: string;

  @Field(() => Int, { description: 'all stock ever made available, additions included' })
  totalStock: number;

  @Field(() => Int, { description: 'live: not yet reserved (read from Redis)' })
  remainingStock: number;

  @Field(() => Int, { description: 'coupons persisted in PostgreSQL' })
  issuedCount: number;

  @Field(() => Int)
  perUserLimit: number;

  @Field(() => DateTimeScalar)
  startsAt: Date;

  @Field(() => DateTimeScalar)
  endsAt: Date;

  @Field(() => PromotionStatusEnum)
  status: PromotionStatusEnum;

  @Field(() => DateTimeScalar)
  createdAt: Date;
}
