import { Field, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar } from './date-time.scalar';

@ObjectType('PromotionAudit')
export class PromotionAuditType {
  @Field(() => ID)
  promotionId: string;

  @Field(() => Int)
  totalStock: number;

  @Field(() => Int, { description: 'Redis' })
  remainingStock: number;

  @Field(() => Int, { description: 'coupon rows in PostgreSQL' })
  persisted: number;

  @Field(() => Int, { description: 'reserved, not yet persisted nor failed' })
  inFlight: number;

  @Field(() => Int, { description: 'ended FAILED (their stock was given back)' })
  failed: number;

  @Field({ description: 'remainingStock + persisted + inFlight == totalStock, and no user over perUserLimit' })
  holds: boolean;

  @Field(() => DateTimeScalar)
  checkedAt: Date;
}

@ObjectType('DeadLetter')
export class DeadLetterType {
  @Field(() => ID)
  requestId: string;

  @Field(() => ID)
  userId: string;

  @Field()
  reason: string;

  @Field(() => Int, { description: 'how many times it was tried' })
  deliveries: number;

  @Field(() => DateTimeScalar)
  failedAt: Date;
}
