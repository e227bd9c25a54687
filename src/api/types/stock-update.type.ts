import { Field, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar } from './date-time.scalar';
import { PromotionStatusEnum } from './enums';

@ObjectType('StockUpdate')
export class StockUpdateType {
  @Field(() => ID)
  promotionId: string;

  @Field(() => Int)
  remainingStock: number;

  @Field(() => PromotionStatusEnum)
  status: PromotionStatusEnum;

  @Field(() => DateTimeScalar, { description: 'when the value was read' })
  at: Date;
}
