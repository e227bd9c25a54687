import { clusterClient, startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';

/**
 * The cluster harness itself, against real redis-server processes: keys spread over three masters, a master
 * SIGKILLed, its replica promoted with the acknowledged write intact, and the dead node back as a replica.
 */

jest.setTimeout(30_000);

let cluster: RedisClusterHandle | undefined;

afterAll(() => cluster?.stop());

/** A key (with a hash tag, as the service's keys have) for each of `count` different masters. */
async function keysOnDistinctMasters(handle: RedisClusterHandle, count: number): Promise<Map<number, string>> {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < count && i < 1000; i++) {
    const key = `{p:${i}}:stock`;
    const master = await handle.masterForKey(key);
    if (!byMaster.has(master)) byMaster.set(master, key);
  }
  return byMaster;
}

test('When a master is SIGKILLed, then its replica takes over with the replicated write, and the old master rejoins as a replica', async () => {
  const startedAt = Date.now();
  cluster = await startRedisCluster({ label: 'harness' });
  const startMs = Date.now() - startedAt;

  const masters = await cluster.masters();
  expect(masters).toHaveLength(3);
  for (const master of masters) expect(await cluster.replicaOf(master)).toEqual(expect.any(Number));

  // Arrange: one key on each master, each write acknowledged by its replica.
  const byMaster = await keysOnDistinctMasters(cluster, 3);
  expect([...byMaster.keys()].sort((a, b) => a - b)).toEqual(masters);
  const client = clusterClient(cluster);
  for (const [master, key] of byMaster) {
    await client.set(key, `written-on-${master}`);
    // WAIT counts the replicas that acknowledged this connection's writes: ioredis keeps one connection per
    // node, so this is the very connection the SET went through.
    const node = client.nodes('master').find((n) => n.options.port === master);
    const acked = await node?.call('WAIT', '1', '1000');
    expect(acked).toBe(1);
  }

  // Act: kill one master outright.
  const [victim, victimKey] = [...byMaster][0]!;
  const replica = await cluster.replicaOf(victim);
  const killedAt = Date.now();
  await cluster.kill(victim);
  const promoted = await cluster.waitForFailover(victim, 15_000);
  const failoverMs = Date.now() - killedAt;

  // Assert: the replica is the new master of that key, and the write survived.
  expect(promoted).not.toBe(victim);
  expect(promoted).toBe(replica);
  expect(await cluster.masterForKey(victimKey)).toBe(promoted);
  expect(await client.get(victimKey)).toBe(`written-on-${victim}`);
  for (const [master, key] of byMaster) if (master !== victim) expect(await client.get(key)).toBe(`written-on-${master}`);

  // The old master comes back from its nodes.conf as a replica of the promoted node.
  const restartedAt = Date.now();
  await cluster.restart(victim);
  expect(await cluster.waitForReplica(promoted, 10_000)).toBe(victim);
  const rejoinMs = Date.now() - restartedAt;
  expect(await cluster.replicaOf(promoted)).toBe(victim);
  expect((await cluster.masters()).sort((a, b) => a - b)).toEqual(masters.map((m) => (m === victim ? promoted : m)).sort((a, b) => a - b));

  console.log(`redis cluster: started in ${startMs} ms, failover after SIGKILL of a master in ${failoverMs} ms, old master back as a replica in ${rejoinMs} ms`);
});
