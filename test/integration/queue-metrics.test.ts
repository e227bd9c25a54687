import { newRequestId } from '../../src/domain/identifiers';
import { Metrics } from '../../src/metrics';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { MAX_PROMOTION_SERIES, readQueueDepth } from '../../src/redis/queue-stats';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { deleteKeys, TEST_REDIS_URL } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';

/**
 * Consumer lag and the per-promotion gauges, read from real Redis: the lag is the age of the oldest request in
 * flight; only promotions being sold get series, at most MAX_PROMOTION_SERIES of them.
 */

const prefix = `test:queue_metrics_${process.pid}_${Date.now()}:`;
let redis: ScriptedRedis;
let keys: RedisKeys;
let store: RedisReservationStore;

beforeAll(async () => {
  redis = createRedis(TEST_REDIS_URL, 'test-commands');
  await connectRedis(redis);
  keys = new RedisKeys(prefix);
  store = new RedisReservationStore(redis, keys);
});

afterAll(async () => {
  redis.disconnect();
  await deleteKeys(TEST_REDIS_URL, prefix);
});

beforeEach(async () => {
  await deleteKeys(TEST_REDIS_URL, prefix);
});

const reserve = (promotionId: string, userId: string) =>
  store.reserve({ promotionId, userId, requestId: newRequestId(promotionId), idempotencyKey: null });

/** One sample of a metric from the Prometheus text, by its exact label set ('' for none). */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('When requests wait in a promotion\'s stream, then the lag is the age of the oldest one, and the promotion\'s gauges show its stock, backlog and issued count', async () => {
  const selling = promotionRecord({ totalStock: 10 });
  const ended = promotionRecord({ totalStock: 10, endedAt: new Date() });
  await store.setupPromotion(selling, 0);
  await store.setupPromotion(ended, 0);
  for (const user of ['a', 'b', 'c']) expect((await reserve(selling.id, user)).outcome).toBe('QUEUED');
  const [oldest] = await redis.xrange(keys.promotion(selling.id).stream, '-', '+', 'COUNT', 1);
  const queuedAt = Number((oldest?.[0] ?? '').split('-')[0]);

  const depth = await readQueueDepth(redis, keys, queuedAt + 12_500);
  expect(depth).toMatchObject({ entries: 3, lagSeconds: 12.5, promotionsLeftOut: 0 });
  // The ended promotion has no series: only promotions being sold do.
  expect(depth.promotions).toEqual([{ promotionId: selling.id, remainingStock: 7, backlog: 3, issued: 0, lagSeconds: 12.5 }]);

  const text = await new Metrics(() => readQueueDepth(redis, keys)).registry.metrics();
  expect(sample(text, 'coupon_consumer_lag_seconds')).toBeGreaterThanOrEqual(0);
  expect(sample(text, 'coupon_promotion_remaining_stock', `promotion="${selling.id}"`)).toBe(7);
  expect(sample(text, 'coupon_promotion_backlog', `promotion="${selling.id}"`)).toBe(3);
  expect(sample(text, 'coupon_promotion_issued', `promotion="${selling.id}"`)).toBe(0);
  expect(sample(text, 'coupon_promotion_remaining_stock', `promotion="${ended.id}"`)).toBeUndefined();
});

test('When nothing waits, then the lag is 0', async () => {
  const selling = promotionRecord();
  await store.setupPromotion(selling, 0);
  expect(await readQueueDepth(redis, keys)).toMatchObject({ entries: 0, lagSeconds: 0 });
});

test('When more promotions are being sold than the cap, then only the cap gets series and the rest are counted as left out', async () => {
  const count = MAX_PROMOTION_SERIES + 3;
  for (let i = 0; i < count; i++) await store.setupPromotion(promotionRecord(), 0);
  const metrics = new Metrics(() => readQueueDepth(redis, keys));
  const text = await metrics.registry.metrics();
  const series = text.split('\n').filter((l) => l.startsWith('coupon_promotion_remaining_stock{'));
  expect(series).toHaveLength(MAX_PROMOTION_SERIES);
  expect(sample(text, 'coupon_promotion_series_left_out')).toBe(3);
});
