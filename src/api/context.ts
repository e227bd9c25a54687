import type { IssuanceService } from '../domain/issuance-service';
import type { StockFeeds } from '../domain/stock-feeds';
import type { Caller } from '../domain/types';
import type { HttpExchange } from '../ops/access-log';

/**
 * What every operation receives: who is calling, and the services the subscriptions' subscribe functions
 * need (type-graphql calls it without a resolver instance, so it cannot reach the container).
 */
export interface GraphQLContext {
  caller: Caller | null;
  /** The client's address (api/limits.ts clientIp), for the optional per-IP issueCoupon limit. */
  clientIp: string | null;
  issuance: IssuanceService;
  /** promotionStock's feeds, one per watched promotion in this process. */
  stock: StockFeeds;
  /** Over HTTP through Apollo: the request's access-log record, which the access plugin fills in. */
  exchange?: HttpExchange;
}
