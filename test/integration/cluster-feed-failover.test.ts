import type { Cluster } from 'ioredis';
import { createDb, type Db } from '../../src/db/client';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import type { FeedEvent } from '../../src/domain/ports';
import { IssuanceService } from '../../src/domain/issuance-service';
import { connectRedis, createDedicatedRedis, createRedis } from '../../src/redis/client';
import { RedisIssuanceEvents } from '../../src/redis/event-bus';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { StreamConsumer } from '../../src/consumer/stream-consumer';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { RedisStreamQueue } from '../../src/redis/stream-queue';
import { SILENT_OBSERVER, STATUS_TTL_MS, TEST_CONSUMER_OPTIONS } from '../helpers/consumers';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';
import { HOST } from '../helpers/redis-cluster-probe';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * A couponIssued(requestId) feed waiting on a promotion whose master dies (cluster): it keeps waiting through
 * the failover and delivers the confirmation made on the promoted replica. While the dead master is unreachable,
 * ioredis rebuilds its sharded subscribers again and again ('subscribersReady' after each attempt): the gaps
 * they cause are coalesced, and a feed whose re-read fails (the master is down) reads again later instead of
 * ending with the error.
 */

jest.setTimeout(60_000);

let cluster: RedisClusterHandle | undefined;
let env: TestEnvironment | undefined;
let db: Db | undefined;
const clients: ScriptedRedis[] = [];
let consumer: StreamConsumer | undefined;

afterAll(async () => {
  await consumer?.stop();
  await cluster?.stop(); // closes the clients first (onStop)
  await db?.$disconnect();
  await env?.cleanup();
});

test('When the master of a watched request fails over, then the feed keeps waiting, with few gaps, and delivers the confirmation made on the promoted replica', async () => {
  cluster = await startRedisCluster({ label: 'feed-failover', nodeTimeoutMs: 3000 });
  env = await createTestEnvironment('feed_failover');
  db = createDb(env.databaseUrl);
  const target = { clusterNodes: cluster.ports.map((port) => ({ host: HOST, port })) };
  const redis = createRedis(target, 'test-commands');
  const subscriber = createDedicatedRedis(target, 'test-events');
  for (const client of [redis, subscriber]) {
    client.on('error', () => undefined); // the dead master's sockets; the assertions say what matters
    clients.push(client);
  }
  let bus: RedisIssuanceEvents | null = null;
  cluster.onStop(() => {
    bus?.close();
    for (const client of clients) client.disconnect();
  });
  await Promise.all([connectRedis(redis), connectRedis(subscriber)]);

  const keys = new RedisKeys(env.prefix);
  const reservations = new RedisReservationStore(redis, keys);
  bus = new RedisIssuanceEvents(subscriber, keys, () => redis.smembers(keys.activePromotions()));
  let gaps = 0;
  const service = new IssuanceService(reservations, new PrismaCouponRepository(db), new PrismaFailureRepository(db), bus);

  const promotion = promotionRecord({ totalStock: 3 });
  await reservations.setupPromotion(promotion, 0);
  // Another user's feed on the promotion, counting the gaps signalled to every listener.
  await bus.watchUser('bob', promotion.id, { onFeedEvent: (event: FeedEvent) => void (event.kind === 'gap' && gaps++) });
  const alice = { userId: 'alice', isAdmin: false, isMerchant: false };
  const { requestId } = await service.issue(alice, promotion.id);
  expect(requestId).toEqual(expect.any(String));
  // The reservation is on the replica too, so the promoted one still holds it QUEUED.
  const victim = await cluster.masterForKey(keys.promotion(promotion.id).stock);
  const node = (redis as Cluster).nodes('master').find((n) => n.options.port === victim);
  expect(await node?.call('WAIT', 1, 2000)).toBe(1);

  const feed = (await service.watch(alice, { requestId: requestId as string }))[Symbol.asyncIterator]();
  let settled: string | null = null;
  const next = feed.next().then(
    (result) => (settled = `yielded ${JSON.stringify(result.value)}`),
    (error: Error) => (settled = `${error.name}: ${error.message}`),
  );

  // A failover slower than a command's retries (16 redirections, 100 ms apart), as in production (the compose
  // file uses cluster-node-timeout 5000): a read of the dead master's slot fails before the promotion.
  await cluster.kill(victim);
  const promoted = await cluster.waitForFailover(victim, 20_000);
  // Past the last delayed gap signal of the topology change, with the promoted master serving the slot.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(await redis.hget(keys.status(promotion.id, requestId as string), 's')).toBe('QUEUED');

  // The request is still QUEUED on the promoted master: a feed waiting for it must still be waiting, after a
  // bounded number of gaps (at most one per 250 ms while the topology changes, then two).
  expect({ promoted, settled }).toEqual({ promoted, settled: null });
  expect(gaps).toBeGreaterThan(0);
  expect(gaps).toBeLessThan(40);

  // A consumer on the promoted master confirms it: the feed delivers ISSUED.
  const queue = new RedisStreamQueue(redis, null, keys, STATUS_TTL_MS);
  consumer = new StreamConsumer(queue, new PrismaCouponRepository(db), new PrismaFailureRepository(db), TEST_CONSUMER_OPTIONS, SILENT_OBSERVER);
  await new PrismaPromotionRepository(db).create(promotion);
  consumer.start();
  await eventually(async () => (settled ? true : undefined), 20_000, 'the confirmation on the feed');
  expect(settled).toMatch(/^yielded .*"status":"ISSUED"/);
  await next;
});
