import { Redis } from 'ioredis';
import { RateLimitedError } from '../../src/domain/errors';
import { newPromotionId, newRequestId } from '../../src/domain/identifiers';
import type { IssueResult, PromotionRecord } from '../../src/domain/types';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { RedisRateLimiter } from '../../src/redis/rate-limiter';
import { RedisReservationStore, type IssueRateLimits } from '../../src/redis/reservation-store';
import { defineScripts, type ScriptedRedis } from '../../src/redis/scripts';
import { deleteKeys, TEST_REDIS_URL } from '../helpers/environment';

/**
 * The rate buckets against the real Redis: issueCoupon's inside the reservation script, and rate-limit.lua.
 * Exact counts come from a rate so slow (one token per 1,000 s) that no token can come back during a test:
 * only the burst can pass, however long the machine takes.
 */

const prefix = `test:rate-limit:${process.pid}:`;
const keys = new RedisKeys(prefix);
const HOUR = 3600_000;
const SLOW = 0.001;
const clients: ScriptedRedis[] = [];
let redis: ScriptedRedis;

async function connection(name: string): Promise<ScriptedRedis> {
  const c = createRedis(TEST_REDIS_URL, name);
  await connectRedis(c);
  clients.push(c);
  return c;
}

async function promotion(totalStock = 100, perUserLimit = 100): Promise<PromotionRecord> {
  const now = Date.now();
  const p = { id: newPromotionId(), name: 't', totalStock, perUserLimit, startsAt: new Date(now - HOUR), endsAt: new Date(now + HOUR), endedAt: null, createdAt: new Date(now) };
  await new RedisReservationStore(redis, keys).setupPromotion(p, 0);
  return p;
}

type Attempt = IssueResult | RateLimitedError;
const attempt = (store: RedisReservationStore, p: PromotionRecord, userId: string, extra: { idempotencyKey?: string; clientIp?: string; requestId?: string } = {}) =>
  store
    .reserve({ promotionId: p.id, userId, requestId: extra.requestId ?? newRequestId(p.id), idempotencyKey: extra.idempotencyKey ?? null, clientIp: extra.clientIp ?? null })
    .catch((error: unknown): Attempt => {
      if (error instanceof RateLimitedError) return error;
      throw error;
    });
const passed = (results: Attempt[]) => results.filter((r): r is IssueResult => !(r instanceof RateLimitedError));
const refused = (results: Attempt[]) => results.filter((r): r is RateLimitedError => r instanceof RateLimitedError);

async function stores(limits: IssueRateLimits, count = 6): Promise<RedisReservationStore[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => new RedisReservationStore(await connection(`rl-${i}`), keys, limits)));
}

beforeAll(async () => {
  redis = await connection('rl-main');
});

afterAll(async () => {
  await deleteKeys(TEST_REDIS_URL, prefix);
  for (const c of clients) if (c.status !== 'end') c.disconnect(); // disconnect() on an ended client leaves a 2 s timer behind
});

describe('issue.lua rate bucket', () => {
  test('When one user fires 30 calls at once from several connections, then exactly the burst is queued and the rest reserve nothing', async () => {
    const p = await promotion();
    const pool = await stores({ perUserPerSecond: SLOW, perUserBurst: 10, perIpPerSecond: 0 });

    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => attempt(pool[i % pool.length] as RedisReservationStore, p, 'hammer')));

    expect(passed(results).map((r) => r.outcome)).toEqual(Array(10).fill('QUEUED'));
    expect(refused(results)).toHaveLength(20);
    for (const r of refused(results)) expect(r.retryAfterMs).toBeGreaterThan(900_000); // one token per 1,000 s
    expect(await redis.get(keys.promotion(p.id).stock)).toBe('90');
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(10);
    expect(await redis.hget(keys.user(p.id, 'hammer'), 'n')).toBe('10');
  });

  test('When calls are refused, then they take no token: the bucket is exactly as the last call that passed left it', async () => {
    const p = await promotion();
    const [store] = await stores({ perUserPerSecond: SLOW, perUserBurst: 2, perIpPerSecond: 0 }, 1);
    await attempt(store as RedisReservationStore, p, 'u');
    await attempt(store as RedisReservationStore, p, 'u');
    const before = await redis.get(keys.issueBucket(p.id, 'u'));

    const more = await Promise.all(Array.from({ length: 10 }, () => attempt(store as RedisReservationStore, p, 'u')));

    expect(refused(more)).toHaveLength(10);
    expect(await redis.get(keys.issueBucket(p.id, 'u'))).toBe(before);
    const ttl = await redis.pttl(keys.issueBucket(p.id, 'u'));
    expect(ttl).toBeGreaterThan(0); // an idle bucket goes away once full again
  });

  test('When an idempotency key is replayed, then the replay takes a token; a resent command (same requestId) does not need one', async () => {
    const p = await promotion();
    const [store] = (await stores({ perUserPerSecond: SLOW, perUserBurst: 2, perIpPerSecond: 0 }, 1)) as [RedisReservationStore];
    const requestId = newRequestId(p.id);

    const first = await attempt(store, p, 'v', { idempotencyKey: 'k1', requestId });
    const replay = await attempt(store, p, 'v', { idempotencyKey: 'k1' });
    const third = await attempt(store, p, 'v');
    const resent = await attempt(store, p, 'v', { idempotencyKey: 'k1', requestId });

    expect(first).toMatchObject({ outcome: 'QUEUED', requestId });
    expect(replay).toEqual(first);
    expect(third).toBeInstanceOf(RateLimitedError);
    expect(resent).toMatchObject({ outcome: 'QUEUED', requestId });
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(1);
  });

  test('When the user buckets of two promotions are used, then each has its own, in its promotion\'s slot', async () => {
    const [a, b] = [await promotion(), await promotion()];
    const [store] = (await stores({ perUserPerSecond: SLOW, perUserBurst: 1, perIpPerSecond: 0 }, 1)) as [RedisReservationStore];

    expect(await attempt(store, a, 'w')).toMatchObject({ outcome: 'QUEUED' });
    expect(await attempt(store, b, 'w')).toMatchObject({ outcome: 'QUEUED' });
    expect(await attempt(store, a, 'w')).toBeInstanceOf(RateLimitedError);
    expect(keys.issueBucket(a.id, 'w')).toContain(`{p:${a.id}}`);
  });

  test('When a user hammers at 20 a second with bursts of 5 for about a second, then at most burst + rate x t pass', async () => {
    const p = await promotion(1000, 100);
    const pool = await stores({ perUserPerSecond: 20, perUserBurst: 5, perIpPerSecond: 0 }, 4);
    const results: Attempt[] = [];
    const started = process.hrtime.bigint();
    // 4 connections in a loop for ~1 s: the elapsed time measured outside the calls bounds Redis's own.
    await Promise.all(
      pool.map(async (store) => {
        while (Number(process.hrtime.bigint() - started) / 1e9 < 1) results.push(await attempt(store, p, 'steady'));
      }),
    );
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;

    const count = passed(results).length;
    expect(count).toBeGreaterThanOrEqual(5);
    expect(count).toBeLessThanOrEqual(5 + Math.floor(20 * elapsed));
    expect(refused(results).length).toBeGreaterThan(0);
    expect(Number(await redis.xlen(keys.promotion(p.id).stream))).toBe(count);
  });

  test('When the per-IP limit is on, then accounts behind one address share it, and its refusals cost the user nothing', async () => {
    const p = await promotion();
    const [store] = (await stores({ perUserPerSecond: SLOW, perUserBurst: 1, perIpPerSecond: SLOW }, 1)) as [RedisReservationStore];

    const first = await attempt(store, p, 'ip-user-1', { clientIp: '203.0.113.7' });
    const sameIp = await Promise.all(Array.from({ length: 5 }, (_, i) => attempt(store, p, `ip-user-${i + 2}`, { clientIp: '203.0.113.7' })));
    const elsewhere = await attempt(store, p, 'ip-user-2', { clientIp: '198.51.100.1' });
    const noIp = await attempt(store, p, 'ip-user-3');

    expect(first).toMatchObject({ outcome: 'QUEUED' });
    expect(refused(sameIp)).toHaveLength(5);
    expect(elsewhere).toMatchObject({ outcome: 'QUEUED' }); // ip-user-2's refusal behind 203.0.113.7 took no user token
    expect(noIp).toMatchObject({ outcome: 'QUEUED' });
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(3);
  });
});

describe('rate-limit.lua', () => {
  const noticed = () => ({ fallbacks: 0, recoveries: 0 });

  test('When 40 takes race from 4 connections on one bucket, then exactly the burst pass', async () => {
    const seen = noticed();
    const limiters = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => new RedisRateLimiter(await connection(`take-${i}`), { onFallback: () => seen.fallbacks++, onRecovered: () => seen.recoveries++ })),
    );
    const key = keys.userBucket('racer');

    const waits = await Promise.all(Array.from({ length: 40 }, (_, i) => (limiters[i % 4] as RedisRateLimiter).take(key, SLOW, 7)));

    expect(waits.filter((w) => w === 0)).toHaveLength(7);
    expect(waits.filter((w) => w > 900_000)).toHaveLength(33);
    expect(seen).toEqual({ fallbacks: 0, recoveries: 0 });
  });

  test('When Redis cannot be reached, then the limiter says so once and limits in process with the same burst', async () => {
    const seen = noticed();
    // Nothing listens there. Commands fail at once (no retries, no command timeout left running after the test).
    const dead = defineScripts(new Redis('redis://127.0.0.1:1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null }));
    dead.on('error', () => undefined);
    clients.push(dead);
    const limiter = new RedisRateLimiter(dead, { onFallback: () => seen.fallbacks++, onRecovered: () => seen.recoveries++ }, 100);

    const waits = await Promise.all(Array.from({ length: 12 }, () => limiter.take(keys.anonBucket('198.51.100.9'), SLOW, 3)));

    expect(waits.filter((w) => w === 0)).toHaveLength(3);
    expect(seen).toEqual({ fallbacks: 1, recoveries: 0 });
  });
});
