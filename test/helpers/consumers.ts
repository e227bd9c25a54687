import { hostname } from 'node:os';
import { StreamConsumer, type ConsumerObserver, type ConsumerOptions } from '../../src/consumer/stream-consumer';
import type { Db } from '../../src/db/client';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import type { CouponRepository } from '../../src/domain/ports';
import { connectRedis, createDedicatedRedis } from '../../src/redis/client';
import type { RedisKeys } from '../../src/redis/keys';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { RedisStreamQueue } from '../../src/redis/stream-queue';

/** Fast settings, so takeovers happen within a test's patience: a lease of 600 ms renewed every 150 ms. */
export const TEST_CONSUMER_OPTIONS: ConsumerOptions = {
  host: hostname(),
  batchSize: 100,
  blockMs: 100,
  heartbeatMs: 150,
  deadAfterMs: 600,
  maxDeliveries: 3,
  maxBackoffMs: 200,
};

export const STATUS_TTL_MS = 3600_000;

const noop = () => undefined;
export const SILENT_OBSERVER: ConsumerObserver = {
  persisted: noop,
  confirmed: noop,
  failed: noop,
  retrying: noop,
  tookOver: noop,
  error: noop,
};

/** A StreamConsumer over real Redis and PostgreSQL, with a reader connection of its own. Not started. */
export async function createConsumer(args: {
  redisUrl: string;
  redis: ScriptedRedis;
  keys: RedisKeys;
  db: Db;
  coupons?: CouponRepository;
  options?: Partial<ConsumerOptions>;
  observer?: Partial<ConsumerObserver>;
}): Promise<StreamConsumer> {
  const reader = createDedicatedRedis(args.redisUrl, 'test-reader');
  await connectRedis(reader);
  const queue = new RedisStreamQueue(args.redis, reader, args.keys, STATUS_TTL_MS);
  return new StreamConsumer(
    queue,
    args.coupons ?? new PrismaCouponRepository(args.db),
    new PrismaFailureRepository(args.db),
    { ...TEST_CONSUMER_OPTIONS, ...args.options },
    { ...SILENT_OBSERVER, ...args.observer },
  );
}
