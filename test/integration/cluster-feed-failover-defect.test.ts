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
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';
import { HOST } from '../helpers/redis-cluster-probe';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * DEFECT (cluster): a couponIssued(requestId) feed waiting on a promotion whose master dies does not survive
 * the failover. While the dead master is unreachable, ioredis keeps rebuilding its sharded subscribers and
 * emits 'subscribersReady' after every attempt, including failed ones; each one makes the event bus signal a
 * gap to every listener (three times: at once, 250 ms and 1 s later): hundreds of gaps per listener in one
 * failover (gapsSignalled in the failure), each a read per waiting feed. A feed handles a gap by reading its
 * request's state again, from the master that is down: the read fails and the error ends the subscription,
 * although the request is still QUEUED and its confirmation will come once the replica is promoted.
 * The contract wants the confirmation delivered across a failover (the replay rule), and a Redis outage
 * answered as SERVICE_UNAVAILABLE rather than an internal error.
 */

jest.setTimeout(60_000);

let cluster: RedisClusterHandle | undefined;
let env: TestEnvironment | undefined;
let db: Db | undefined;
const clients: ScriptedRedis[] = [];

afterAll(async () => {
  await cluster?.stop(); // closes the clients first (onStop)
  await db?.$disconnect();
  await env?.cleanup();
});

test('DEFECT: a couponIssued(requestId) feed on a promotion whose master fails over ends with an error instead of waiting for its confirmation', async () => {
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

  // The request is still QUEUED on the promoted master: a feed waiting for it must still be waiting.
  expect({ promoted, settled, gapsSignalled: gaps }).toEqual({ promoted, settled: null, gapsSignalled: gaps });
  void next;
});
