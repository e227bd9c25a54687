import { newRequestId } from '../../src/domain/identifiers';
import { StockFeeds } from '../../src/domain/stock-feeds';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { readQueueDepth } from '../../src/redis/queue-stats';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { RedisStreamQueue } from '../../src/redis/stream-queue';
import { promotionRecord } from '../helpers/fixtures';
import { HOST } from '../helpers/redis-cluster-probe';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * Against a real Redis Cluster (three masters): promotionStock's feed reads, the issued counter (set up, raised by
 * confirm.lua) and the queue metrics each stay in the promotion's slot, for promotions spread over the masters.
 */

let cluster: RedisClusterHandle;
let redis: ScriptedRedis;
let feeds: StockFeeds;

beforeAll(async () => {
  cluster = await startRedisCluster({ label: 'stock-feeds' });
  redis = createRedis({ clusterNodes: cluster.ports.map((port) => ({ host: HOST, port })) }, 'test-commands');
  redis.on('error', () => undefined);
  cluster.onStop(() => redis.disconnect());
  await connectRedis(redis);
}, 60_000);

afterAll(async () => {
  feeds?.close();
  await cluster?.stop();
});

test('When promotions on different masters are watched, sold and confirmed, then the feeds, the issued counter and the lag read each from its own slot', async () => {
  const keys = new RedisKeys(`test:stock_cluster_${process.pid}:`);
  const store = new RedisReservationStore(redis, keys);
  const queue = new RedisStreamQueue(redis, null, keys, 3600_000);
  feeds = new StockFeeds(async (id) => (await store.liveStates([id])).get(id), { now: () => new Date() }, 50);

  // Promotions until three masters hold at least one.
  const promotions = [];
  const masters = new Set<number>();
  while (masters.size < 3 && promotions.length < 50) {
    const p = promotionRecord({ totalStock: 2 });
    await store.setupPromotion(p, 0);
    promotions.push(p);
    masters.add(await cluster.masterForKey(keys.promotion(p.id).meta));
  }
  expect(masters.size).toBe(3);

  for (const p of promotions) {
    const watcher = await feeds.watch(p.id);
    expect((await watcher.next()).value).toMatchObject({ promotionId: p.id, remainingStock: 2, status: 'ACTIVE' });
    const requests = [];
    for (const userId of ['a', 'b']) {
      const requestId = newRequestId(p.id);
      expect((await store.reserve({ promotionId: p.id, userId, requestId, idempotencyKey: null })).outcome).toBe('QUEUED');
      const [entry] = (await redis.xrange(keys.promotion(p.id).stream, '-', '+')).filter(([, fields]) => fields.includes(requestId));
      requests.push({ entryId: entry?.[0] as string, requestId, promotionId: p.id, userId, requestedAt: new Date(), position: 0 });
    }
    // Sold out: the watcher's last value is the final one, and it completes.
    let last = null;
    for (let r = await watcher.next(); !r.done; r = await watcher.next()) last = r.value;
    expect(last).toMatchObject({ remainingStock: 0, status: 'SOLD_OUT' });

    expect((await readQueueDepth(redis, keys)).entries).toBeGreaterThanOrEqual(2);
    await queue.confirm(
      p.id,
      requests.map((request, i) => ({
        request,
        coupon: { id: `00000000-0000-4000-8000-00000000000${i}`, code: 'ABCDEFGHJKLMNPQR', promotionId: p.id, userId: request.userId, requestId: request.requestId, requestedAt: request.requestedAt, issuedAt: new Date() },
      })),
    );
    expect((await store.liveStates([p.id])).get(p.id)).toMatchObject({ issuedCount: 2, remainingStock: 0 });
  }
  expect(await readQueueDepth(redis, keys)).toMatchObject({ entries: 0, lagSeconds: 0 });
}, 60_000);
