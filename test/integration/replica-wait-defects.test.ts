import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { newRequestId } from '../../src/domain/identifiers';
import type { PromotionRecord } from '../../src/domain/types';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { ReplicaWaiter } from '../../src/redis/replica-wait';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { promotionRecord } from '../helpers/fixtures';
import { command, HOST, text } from '../helpers/redis-cluster-probe';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * DEFECT (REDIS_WAIT_REPLICAS with a cluster being resharded): while a promotion's slot migrates, a write whose
 * keys have all moved (an admin write: raiseTotalStock, endPromotion) is redirected with ASK and runs on the
 * importing node (a reservation always touches keys that do not exist yet, so it gets TRYAGAIN instead).
 * ioredis does not change its slot map for an ASK, so ReplicaWaiter still routes the key to the migrating node
 * and sends WAIT there, to a node that did not carry the write. That WAIT answers at once (the migrating node's
 * replica is in sync with it), and the write is acknowledged although the only replica of the node holding it is stopped
 * (SIGSTOP) and holds nothing: a failover of that node would lose an acknowledged stock change.
 */

jest.setTimeout(60_000);

const keys = new RedisKeys('test:replica-wait-ask:');
let cluster: RedisClusterHandle | undefined;
let writer: ScriptedRedis | undefined;
let stopped: number | null = null;

afterAll(async () => {
  if (stopped) process.kill(stopped, 'SIGCONT');
  writer?.disconnect();
  await cluster?.stop();
});

const reserve = (store: RedisReservationStore, promotion: PromotionRecord, userId: string) =>
  store.reserve({ promotionId: promotion.id, userId, requestId: newRequestId(promotion.id), idempotencyKey: `${userId}-key` });

test('DEFECT: a write redirected by ASK during a slot migration is confirmed by a WAIT on the migrating node, not on the node that holds it', async () => {
  cluster = await startRedisCluster({ label: 'replica-wait-ask' });
  writer = createRedis({ clusterNodes: cluster.ports.map((port) => ({ host: HOST, port })) }, 'coupon-writes');
  writer.on('error', () => undefined);
  await connectRedis(writer);
  const store = new RedisReservationStore(writer, keys, undefined, new ReplicaWaiter(writer, { required: 1, timeoutMs: 100 }));

  const promotion = promotionRecord({ totalStock: 5 });
  await store.setupPromotion(promotion, 0);
  expect((await reserve(store, promotion, 'warm-up')).outcome).toBe('QUEUED');

  // Migrate the promotion's slot from its master to another one, keys first (as redis-cli --cluster reshard does).
  const stock = keys.promotion(promotion.id).stock;
  const slot = calculateSlot(stock);
  const source = await cluster.masterForKey(stock);
  const target = (await cluster.masters()).find((port) => port !== source) as number;
  const targetReplica = (await cluster.replicaOf(target)) as number;
  const sourceId = await text(source, 'CLUSTER', 'MYID');
  const targetId = await text(target, 'CLUSTER', 'MYID');
  await command(target, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId);
  await command(source, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId);
  const inSlot = (await command(source, 'CLUSTER', 'GETKEYSINSLOT', slot, 1000)) as string[];
  expect(inSlot).toContain(stock);
  await command(source, 'MIGRATE', HOST, target, '', 0, 5000, 'KEYS', ...inSlot);

  // The node that now holds the promotion's keys loses the means to replicate a write.
  stopped = cluster.nodes.find((n) => n.port === targetReplica)?.pid ?? null;
  expect(stopped).toEqual(expect.any(Number));
  process.kill(stopped as number, 'SIGSTOP');

  // An admin write whose keys all moved: redirected with ASK, it runs on the importing node.
  const outcome = await store.raiseTotalStock(promotion.id, 8).then(
    (counters) => `answered ${JSON.stringify(counters)}`,
    (error: Error) => error.name,
  );

  // The write was made on the importing node (its stock grew by 3), whose only replica is stopped.
  const direct = new Redis({ host: HOST, port: target, lazyConnect: true });
  try {
    await direct.connect();
    await direct.asking(); // the slot is still the source's: ASKING lets this one read reach it
    expect(await direct.get(stock)).toBe('7');
  } finally {
    direct.disconnect();
  }
  // No replica of that node holds it: the answer must be SERVICE_UNAVAILABLE (REDIS_WAIT_REPLICAS=1).
  expect(outcome).toBe('UnavailableError');
});
