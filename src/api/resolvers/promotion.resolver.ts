import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { PromotionService } from '../../domain/promotion-service';
import type { PromotionStatus } from '../../domain/types';
import type { GraphQLContext } from '../context';
import { CreatePromotionInput } from '../types/create-promotion.input';
import { PromotionStatusEnum } from '../types/enums';
import { PromotionType } from '../types/promotion.type';

@Resolver(() => PromotionType)
export class PromotionResolver {
  constructor(private readonly promotionService: PromotionService) {}

  @Query(() => PromotionType, { nullable: true, description: 'public' })
  promotion(@Arg('id', () => ID) id: string): Promise<PromotionType | null> {
    return this.promotionService.get(id) as Promise<PromotionType | null>;
  }

  @Query(() => [PromotionType], {
    description: 'public, newest first, first <= 100; after = the last id of the previous page',
  })
  promotions(
    @Arg('status', () => PromotionStatusEnum, { nullable: true }) status: PromotionStatusEnum | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 20 }) first: number | null,
    @Arg('after', () => ID, { nullable: true }) after: string | null,
  ): Promise<PromotionType[]> {
    const list = this.promotionService.list((status ?? null) as PromotionStatus | null, first ?? 20, after ?? null);
    return list as Promise<PromotionType[]>;
  }

  @Mutation(() => PromotionType, { description: 'admin' })
  createPromotion(@Arg('input') input: CreatePromotionInput, @Ctx() ctx: GraphQLContext): Promise<PromotionType> {
    return this.promotionService.create(ctx.caller, input) as Promise<PromotionType>;
  }

  @Mutation(() => PromotionType, { description: 'admin; amount 1 to 1,000,000; a repeated key adds nothing more' })
  addPromotionStock(
    @Arg('promotionId', () => ID) promotionId: string,
    @Arg('amount', () => Int) amount: number,
    @Arg('idempotencyKey', () => String, { nullable: true, description: '1 to 64 characters, no control characters' })
    idempotencyKey: string | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<PromotionType> {
    return this.promotionService.addStock(ctx.caller, promotionId, amount, idempotencyKey) as Promise<PromotionType>;
  }

  @Mutation(() => PromotionType, { description: 'admin; no issuance after this returns' })
  endPromotion(@Arg('promotionId', () => ID) promotionId: string, @Ctx() ctx: GraphQLContext): Promise<PromotionType> {
    return this.promotionService.end(ctx.caller, promotionId) as Promise<PromotionType>;
  }
}
