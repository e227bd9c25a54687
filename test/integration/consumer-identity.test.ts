import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConsumerIdentity } from '../../src/consumer/consumer-identity';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { RedisStreamQueue } from '../../src/redis/stream-queue';
import { STATUS_TTL_MS } from '../helpers/consumers';
import { deleteKeys, TEST_REDIS_URL } from '../helpers/environment';

/**
 * Taking over a consumer name before its lease expires: only from a dead earlier incarnation that this
 * process can see, never from a live consumer in another PID namespace that shares the hostname.
 */

const HOST = hostname();
const LEASE_MS = 60_000;

let redis: ScriptedRedis;
let keys: RedisKeys;
let queue: RedisStreamQueue;
const prefix = `test:consumer_identity_${process.pid}_${Date.now()}:`;

function ours(): { bootId: string; pidNs: string } | null {
  try {
    return { bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), pidNs: readlinkSync('/proc/self/ns/pid') };
  } catch {
    return null;
  }
}

function deadPid(): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid;
  expect(() => process.kill(pid, 0)).toThrow(); // gone: no such process here
  return pid;
}

beforeAll(async () => {
  redis = createRedis(TEST_REDIS_URL, 'test-commands');
  await connectRedis(redis);
  keys = new RedisKeys(prefix);
  queue = new RedisStreamQueue(redis, redis, keys, STATUS_TTL_MS);
});

afterAll(async () => {
  redis.disconnect();
  await deleteKeys(TEST_REDIS_URL, prefix);
});

async function tryTake(name: string, holder: string): Promise<{ taken: boolean; owner: string | null }> {
  await redis.set(keys.consumerHeartbeat(name), holder, 'PX', LEASE_MS);
  const identity = new ConsumerIdentity(queue, { host: HOST, leaseMs: LEASE_MS, fixedName: name });
  const got = await identity.acquire();
  const owner = await queue.leaseOwner(name);
  await identity.release();
  return { taken: got === name, owner };
}

const me = ours();
const linuxOnly = me ? test : test.skip;

describe('a live consumer in another PID namespace on the same host keeps its name', () => {
  const bootId = me?.bootId ?? '00000000-0000-0000-0000-000000000000';
  const otherNs = 'pid:[4026999999]';

  test('its pid does not exist here', async () => {
    const holder = `${HOST} ${deadPid()} aaaaaaaaaaaa ${bootId} ${otherNs}`;
    expect(await tryTake('other-ns-dead-pid', holder)).toEqual({ taken: false, owner: holder });
  });

  test('its pid is ours (every container is pid 1 in its own namespace)', async () => {
    const holder = `${HOST} ${process.pid} bbbbbbbbbbbb ${bootId} ${otherNs}`;
    expect(await tryTake('other-ns-same-pid', holder)).toEqual({ taken: false, owner: holder });
  });

  test('it is pid 1', async () => {
    const holder = `${HOST} 1 cccccccccccc ${bootId} ${otherNs}`;
    expect(await tryTake('other-ns-pid-1', holder)).toEqual({ taken: false, owner: holder });
  });

  test('an owner of the old format "<host> <pid> <instance>" is never replaced early', async () => {
    const holder = `${HOST} ${deadPid()} dddddddddddd`;
    expect(await tryTake('old-format', holder)).toEqual({ taken: false, owner: holder });
  });
});

describe('a dead earlier incarnation in our namespace is replaced at once', () => {
  linuxOnly('same host, boot and PID namespace, pid gone', async () => {
    const holder = `${HOST} ${deadPid()} eeeeeeeeeeee ${me?.bootId} ${me?.pidNs}`;
    expect(await tryTake('same-ns-dead-pid', holder)).toMatchObject({ taken: true });
  });

  linuxOnly('same host, boot and PID namespace, our pid with another instance (a restarted container)', async () => {
    const holder = `${HOST} ${process.pid} ffffffffffff ${me?.bootId} ${me?.pidNs}`;
    expect(await tryTake('same-ns-same-pid', holder)).toMatchObject({ taken: true });
  });

  linuxOnly('but not after a reboot (another boot id): it waits for the lease', async () => {
    const holder = `${HOST} ${deadPid()} 111111111111 00000000-0000-0000-0000-000000000000 ${me?.pidNs}`;
    expect(await tryTake('other-boot', holder)).toEqual({ taken: false, owner: holder });
  });
});
