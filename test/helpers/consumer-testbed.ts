import { createDb, type Db } from '../../src/db/client';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import type { PromotionRecord } from '../../src/domain/types';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { createTestEnvironment, type TestEnvironment } from './environment';
import { promotionRecord } from './fixtures';

/** What the consumer's integration tests share: a database and key prefix of their own, and live clients. */
export interface ConsumerTestbed {
  env: TestEnvironment;
  db: Db;
  redis: ScriptedRedis;
  keys: RedisKeys;
  store: RedisReservationStore;
  /** A promotion in PostgreSQL and set up in Redis, open now. */
  newPromotion(totalStock: number, name: string): Promise<PromotionRecord>;
  close(): Promise<void>;
}

export async function openConsumerTestbed(name: string): Promise<ConsumerTestbed> {
  const env = await createTestEnvironment(name);
  const db = createDb(env.databaseUrl);
  const redis = createRedis(env.redisUrl, 'test-commands');
  await connectRedis(redis);
  const keys = new RedisKeys(env.prefix);
  const store = new RedisReservationStore(redis, keys);
  return {
    env,
    db,
    redis,
    keys,
    store,
    async newPromotion(totalStock, promotionName) {
      const p = promotionRecord({ name: promotionName, totalStock });
      await new PrismaPromotionRepository(db).create(p);
      await store.setupPromotion(p, 0);
      return p;
    },
    async close() {
      redis.disconnect();
      await db.$disconnect();
      await env.cleanup();
    },
  };
}
