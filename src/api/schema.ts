import type { GraphQLSchema } from 'graphql';
import { buildSchema, type PubSub } from 'type-graphql';
import type { AuditService } from '../domain/audit-service';
import type { CouponService } from '../domain/coupon-service';
import type { IssuanceService } from '../domain/issuance-service';
import type { PromotionService } from '../domain/promotion-service';
import { AuditResolver } from './resolvers/audit.resolver';
import { CouponResolver } from './resolvers/coupon.resolver';
import { IssuanceResolver } from './resolvers/issuance.resolver';
import { PromotionResolver } from './resolvers/promotion.resolver';
import { StockResolver } from './resolvers/stock.resolver';
import { DateTimeScalar } from './types/date-time.scalar';

export interface SchemaServices {
  promotions: PromotionService;
  issuance: IssuanceService;
  audit: AuditService;
  coupons: CouponService;
}

/**
 * type-graphql insists on a PubSub once any subscription exists, though ours brings its own `subscribe`
 * (redis/event-bus.ts, with the replay rule). Reaching this one would be a wiring mistake: it says so.
 */
const UNUSED_PUBSUB: PubSub = {
  publish: () => {
    throw new Error('type-graphql PubSub is not used: subscriptions have their own subscribe function');
  },
  subscribe: () => {
    throw new Error('type-graphql PubSub is not used: subscriptions have their own subscribe function');
  },
};

/** A hand-built container: each resolver gets its service through its constructor. */
export async function createSchema(services: SchemaServices): Promise<GraphQLSchema> {
  const instances = new Map<unknown, unknown>([
    [PromotionResolver, new PromotionResolver(services.promotions)],
    [IssuanceResolver, new IssuanceResolver(services.issuance)],
    [AuditResolver, new AuditResolver(services.audit, services.issuance)],
    [CouponResolver, new CouponResolver(services.coupons)],
    [StockResolver, new StockResolver()],
  ]);
  return buildSchema({
    resolvers: [PromotionResolver, IssuanceResolver, AuditResolver, CouponResolver, StockResolver],
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
    container: { get: (someClass) => instances.get(someClass) },
    validate: false,
    pubSub: UNUSED_PUBSUB,
  });
}
