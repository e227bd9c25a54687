import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnavailableError } from '../../src/domain/errors';
import { newRequestId } from '../../src/domain/identifiers';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { ReplicaWaiter } from '../../src/redis/replica-wait';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { eventually } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';
import { command, freePort, HOST, text } from '../helpers/redis-cluster-probe';

/**
 * REDIS_WAIT_REPLICAS on one Redis node with a replica (the single-node form of a failover-safe setup): QUEUED
 * only once the replica holds the reservation; a master that lost its replica refuses without reserving; the
 * replica back, reservations resume, and a retry with the idempotency key answers what the first call became.
 */

interface Server {
  port: number;
  child: ChildProcess;
  exited: Promise<void>;
}

const dirs: string[] = [];
let master: Server;
let replica: Server | null = null;
let replicaPort: number;
let redis: ScriptedRedis;
const keys = new RedisKeys('test:replica_wait:');
/** Long enough for a replica on a machine busy running the rest of the suite; it costs only the refused call. */
const WAIT_MS = 1000;

function startServer(port: number, ...extra: string[]): Server {
  const dir = mkdtempSync(join(tmpdir(), 'replica-wait-'));
  dirs.push(dir);
  const child = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, '--repl-diskless-sync-delay', '0', ...extra], {
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { port, child, exited };
}

async function onlineReplicas(): Promise<number> {
  const info = await text(master.port, 'INFO', 'replication');
  return info.split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length;
}

async function startReplica(): Promise<void> {
  replica = startServer(replicaPort, '--replicaof', HOST, String(master.port));
  await eventually(async () => ((await onlineReplicas()) === 1 ? true : undefined), 10_000, 'the replica in sync');
}

async function stopReplica(): Promise<void> {
  replica?.child.kill('SIGKILL');
  await replica?.exited;
  replica = null;
  await eventually(async () => ((await onlineReplicas()) === 0 ? true : undefined), 10_000, 'the master to see its replica gone');
}

beforeAll(async () => {
  const taken = new Set<number>();
  master = startServer(await freePort(taken));
  taken.add(master.port);
  replicaPort = await freePort(taken);
  await eventually(async () => ((await command(master.port, 'PING').catch(() => null)) === 'PONG' ? true : undefined), 10_000, 'the master up');
  await startReplica();
  redis = createRedis(`redis://${HOST}:${master.port}`, 'test-replica-wait');
  await connectRedis(redis);
});

afterAll(async () => {
  redis?.disconnect();
  for (const server of [master, replica]) server?.child.kill('SIGKILL');
  await Promise.all([master?.exited, replica?.exited]);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test('When the master loses its replica, then reservations are refused until it is back, and a retried key answers what it became', async () => {
  const store = new RedisReservationStore(redis, keys, undefined, new ReplicaWaiter(redis, { required: 1, timeoutMs: WAIT_MS }));
  const promotion = promotionRecord({ totalStock: 10 });
  await store.setupPromotion(promotion, 0); // an admin write: waits for the replica too
  const reserve = (userId: string, idempotencyKey?: string) =>
    store.reserve({ promotionId: promotion.id, userId, requestId: newRequestId(promotion.id), idempotencyKey: idempotencyKey ?? null, clientIp: null });
  const stock = async () => Number(await command(master.port, 'GET', keys.promotion(promotion.id).stock));

  // With its replica: QUEUED, and the replica holds it.
  const first = await reserve('ann');
  expect(first.outcome).toBe('QUEUED');
  expect(await command(replicaPort, 'GET', keys.promotion(promotion.id).stock)).toBe('9');

  // The replica gone: the first call reserves but cannot be promised (the WAIT falls short)...
  await stopReplica();
  const unconfirmed = await reserve('bob', 'bob-key').catch((error: unknown) => error);
  expect(unconfirmed).toBeInstanceOf(UnavailableError);
  expect((unconfirmed as UnavailableError).retryAfterMs).toBe(5 * WAIT_MS);
  expect(await stock()).toBe(8);
  // ...and from then on the master is known to be alone: refused before anything is reserved.
  for (const user of ['cat', 'dan', 'eve']) {
    const refused = await reserve(user).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(UnavailableError);
  }
  expect(await stock()).toBe(8);

  // The replica back: reservations resume, and bob's retry with his key answers what his first call became.
  await startReplica();
  const retried = await eventually(async () => reserve('bob', 'bob-key').catch(() => undefined), 10_000, "bob's retry to be answered");
  expect(retried.outcome).toBe('QUEUED');
  expect(retried.position).toBe(2);
  expect(await stock()).toBe(8);
  expect((await reserve('cat')).outcome).toBe('QUEUED');
  expect(await command(replicaPort, 'GET', keys.promotion(promotion.id).stock)).toBe('7');
});

test('When no replica is required but one is in sync, then the consumer still waits for it; a master alone is not waited for', async () => {
  const waiter = new ReplicaWaiter(redis, { required: 0, timeoutMs: WAIT_MS, oneIfAny: true });
  const route = waiter.route(keys.promotion('any').stream);
  expect(await waiter.needed(route)).toBe(1);
  await stopReplica();
  await eventually(async () => ((await waiter.needed(route)) === 0 ? true : undefined), 2000, 'the alone master to need no replica');
  await waiter.confirm(route, await waiter.needed(route)); // nothing to wait for: returns at once
  await startReplica();
});
