import { Arg, ID, Resolver, Root, Subscription } from 'type-graphql';
import type { StockUpdate } from '../../domain/stock-feeds';
import type { GraphQLContext } from '../context';
import { StockUpdateType } from '../types/stock-update.type';

@Resolver()
export class StockResolver {
  @Subscription(() => StockUpdateType, {
    description: 'public, anonymous allowed: the current state at once, then coalesced changes, then the final state',
    subscribe: ({ args, context }) => (context as GraphQLContext).stock.watch((args as { promotionId: string }).promotionId),
  })
  promotionStock(@Root() update: StockUpdate, @Arg('promotionId', () => ID) _promotionId: string): StockUpdateType {
    return update as StockUpdateType;
  }
}
