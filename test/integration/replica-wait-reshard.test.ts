import calculateSlot from 'cluster-key-slot';
import { UnavailableError } from '../../src/domain/errors';
import { ReplicaWaiter } from '../../src/redis/replica-wait';
import { clusterClient, startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * WAIT after a write on a slot that is moving (real redis-server processes): a write that ASK sent on to the
 * new owner ran on another connection than the one its route names, so WAIT there would prove nothing.
 */

jest.setTimeout(30_000);

let cluster: RedisClusterHandle | undefined;

afterAll(() => cluster?.stop());

test('When a write is redirected by ASK while its slot changes hands, then it is reported unconfirmed; after the move it confirms again, and the key moved with its value', async () => {
  cluster = await startRedisCluster({ label: 'wait-reshard' });
  const client = clusterClient(cluster);
  const waiter = new ReplicaWaiter(client, { required: 1, timeoutMs: 500 });
  const key = '{p:moving}:stock';
  const source = await cluster.masterForKey(key);
  const target = (await cluster.masters()).find((port) => port !== source) as number;

  // Arrange: a confirmed write on the slot's owner.
  const before = waiter.route(key);
  await client.set(key, 'before');
  await waiter.confirm(before);

  // Act: the key is on the target, which owns the slot; the source, not told yet, answers ASK.
  let redirected: Promise<void> | undefined;
  await cluster.moveSlot(calculateSlot(key), target, {
    midHandOver: async () => {
      const route = waiter.route(key);
      await client.set(key, 'during');
      redirected = waiter.confirm(route);
      await redirected.catch(() => undefined);
    },
  });

  // Assert
  await expect(redirected).rejects.toBeInstanceOf(UnavailableError);
  expect(await cluster.masterForKey(key)).toBe(target);
  expect(await client.get(key)).toBe('during');
  const after = waiter.route(key);
  await client.set(key, 'after');
  await waiter.confirm(after);
});
