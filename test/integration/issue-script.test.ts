import { newPromotionId, newRequestId } from '../../src/domain/identifiers';
import type { IssueResult, PromotionRecord } from '../../src/domain/types';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { deleteKeys, TEST_REDIS_URL } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';

/** The reservation script against the real Redis: every outcome, and exact counts under concurrency. */

const prefix = `test:issue-script:${process.pid}:`;
const keys = new RedisKeys(prefix);
const HOUR = 3600_000;
let redis: ScriptedRedis;
let store: RedisReservationStore;

const promotion = (overrides: Partial<PromotionRecord> = {}) => promotionRecord({ name: 'test', ...overrides });

async function created(overrides: Partial<PromotionRecord> = {}): Promise<PromotionRecord> {
  const p = promotion(overrides);
  await store.setupPromotion(p, 0);
  return p;
}

const reserve = (p: PromotionRecord, userId: string, idempotencyKey: string | null = null, via = store) =>
  via.reserve({ promotionId: p.id, userId, requestId: newRequestId(p.id), idempotencyKey });

beforeAll(async () => {
  redis = createRedis(TEST_REDIS_URL, 'test');
  await connectRedis(redis);
  store = new RedisReservationStore(redis, keys);
});

afterAll(async () => {
  await deleteKeys(TEST_REDIS_URL, prefix);
  redis.disconnect();
});

describe('issue.lua', () => {
  test('When stock remains, then the request is QUEUED with its position, status and stream entry', async () => {
    const p = await created({ totalStock: 3 });

    const first = await reserve(p, 'u1');
    const second = await reserve(p, 'u2');

    expect(first).toMatchObject({ outcome: 'QUEUED', position: 1, remainingStock: 2 });
    expect(second).toMatchObject({ outcome: 'QUEUED', position: 2, remainingStock: 1 });
    expect(first.requestId?.startsWith(`${p.id}.`)).toBe(true);
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(2);
    const status = await redis.hgetall(keys.status(p.id, first.requestId as string));
    expect(status).toMatchObject({ s: 'QUEUED', u: 'u1', n: '1' });
    // No TTL while queued: however long PostgreSQL is away, the request keeps its status.
    expect(await redis.pttl(keys.status(p.id, first.requestId as string))).toBe(-1);
  });

  test('When the stock is gone, then SOLD_OUT, and nothing more is queued', async () => {
    const p = await created({ totalStock: 1 });

    await reserve(p, 'u1');
    const late = await reserve(p, 'u2');

    expect(late).toEqual({ outcome: 'SOLD_OUT', requestId: null, position: null, remainingStock: 0 });
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(1);
  });

  test('When a user has reached a limit of 1, then ALREADY_REQUESTED names their request', async () => {
    const p = await created({ perUserLimit: 1 });

    const first = await reserve(p, 'alice');
    const again = await reserve(p, 'alice');

    expect(again).toEqual({ outcome: 'ALREADY_REQUESTED', requestId: first.requestId, position: null, remainingStock: 9 });
  });

  test('When the limit is 3, then a user gets exactly 3 and the latest requestId is reported', async () => {
    const p = await created({ perUserLimit: 3 });

    const results: IssueResult[] = [];
    for (let i = 0; i < 5; i++) results.push(await reserve(p, 'bob'));

    expect(results.map((r) => r.outcome)).toEqual(['QUEUED', 'QUEUED', 'QUEUED', 'ALREADY_REQUESTED', 'ALREADY_REQUESTED']);
    expect(results[3]?.requestId).toBe(results[2]?.requestId);
    expect(results[4]?.remainingStock).toBe(7);
  });

  test('When the promotion has not started, then NOT_STARTED and the stock is untouched', async () => {
    const p = await created({ startsAt: new Date(Date.now() + HOUR), endsAt: new Date(Date.now() + 2 * HOUR) });

    expect(await reserve(p, 'u1')).toEqual({ outcome: 'NOT_STARTED', requestId: null, position: null, remainingStock: 10 });
  });

  test('When the window has passed, then ENDED', async () => {
    const p = await created({ startsAt: new Date(Date.now() - 2 * HOUR), endsAt: new Date(Date.now() - 1) });

    expect((await reserve(p, 'u1')).outcome).toBe('ENDED');
  });

  test('When the promotion was ended early, then the very next call is ENDED', async () => {
    const p = await created();
    expect((await reserve(p, 'u1')).outcome).toBe('QUEUED');

    await store.endPromotion(p.id, new Date());

    expect((await reserve(p, 'u2')).outcome).toBe('ENDED');
  });

  test('When stock is added to a sold-out promotion, then the very next call is QUEUED', async () => {
    const p = await created({ totalStock: 1 });
    await reserve(p, 'u1');
    expect((await reserve(p, 'u2')).outcome).toBe('SOLD_OUT');

    const counters = await store.raiseTotalStock(p.id, 3);

    expect(counters).toEqual({ remainingStock: 2, totalStock: 3 });
    expect(await reserve(p, 'u2')).toMatchObject({ outcome: 'QUEUED', position: 2, remainingStock: 1 });
  });

  test('When a total is pushed twice, late or out of order, then the stock is raised once, to the largest total', async () => {
    const p = await created({ totalStock: 10 });
    await reserve(p, 'u1');

    const raised = await store.raiseTotalStock(p.id, 15);
    const again = await store.raiseTotalStock(p.id, 15);
    const late = await store.raiseTotalStock(p.id, 12);

    expect(raised).toEqual({ remainingStock: 14, totalStock: 15 });
    expect(again).toEqual(raised);
    expect(late).toEqual(raised);
    expect(await store.raiseTotalStock(newPromotionId(), 5)).toBeNull();
  });

  test('When a promotion is ended twice, then Redis keeps and returns the first end time', async () => {
    const p = await created();
    const first = new Date(Date.now() - 1000);

    expect(await store.endPromotion(p.id, first)).toEqual(first);
    expect(await store.endPromotion(p.id, new Date())).toEqual(first);
    expect((await store.liveStates([p.id])).get(p.id)).toMatchObject({ exists: true, totalStock: 10, endedAt: first });
    expect(await store.endPromotion(newPromotionId(), new Date())).toBeNull();
  });

  test('When the same call reaches Redis twice (a resent command), then it reserves once and answers the same', async () => {
    const p = await created({ totalStock: 5, perUserLimit: 3 });
    const requestId = newRequestId(p.id);
    const call = () => store.reserve({ promotionId: p.id, userId: 'erin', requestId, idempotencyKey: null });

    const first = await call();
    const again = await call();

    expect(again).toEqual(first);
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(1);
    expect(await redis.hget(keys.user(p.id, 'erin'), 'n')).toBe('1');
    expect(await redis.get(keys.promotion(p.id).stock)).toBe('4');
  });

  test('When user ids and keys contain separators, then no user can replay another user\'s key', async () => {
    const p = await created({ perUserLimit: 2 });

    const bob = await reserve(p, 'bob', 'x:y');
    const bobX = await reserve(p, 'bob:x', 'y');

    expect(bobX.outcome).toBe('QUEUED');
    expect(bobX.requestId).not.toBe(bob.requestId);
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(2);
  });

  test('When the promotion is unknown, then NOT_FOUND and no key is created', async () => {
    const p = promotion();

    expect(await reserve(p, 'u1')).toEqual({ outcome: 'NOT_FOUND', requestId: null, position: null, remainingStock: 0 });
    expect(await redis.exists(keys.promotion(p.id).stream, keys.user(p.id, 'u1'))).toBe(0);
  });

  test('When an idempotency key is repeated, then the first payload comes back and nothing more is reserved', async () => {
    const p = await created({ perUserLimit: 2 });

    const first = await reserve(p, 'carol', 'key-1');
    const otherKey = await reserve(p, 'carol', 'key-2');
    const otherUserSameKey = await reserve(p, 'dave', 'key-1');
    const repeat = await reserve(p, 'carol', 'key-1');

    expect(first.outcome).toBe('QUEUED');
    expect(repeat).toEqual(first); // the first payload as it was, remainingStock included
    expect(otherKey.requestId).not.toBe(first.requestId);
    expect(otherUserSameKey.requestId).not.toBe(first.requestId);
    expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(3);
    const ttl = await redis.pttl(keys.idempotency(p.id, 'carol', 'key-1'));
    expect(ttl).toBeGreaterThan(23 * HOUR);
    expect(ttl).toBeLessThanOrEqual(24 * HOUR);
  });

  test('When 2,000 calls race from several connections, then exactly the stock is queued and no user exceeds the limit', async () => {
    const stock = 300;
    const limit = 2;
    const p = await created({ totalStock: stock, perUserLimit: limit });
    const connections = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const c = createRedis(TEST_REDIS_URL, `race-${i}`);
        await connectRedis(c);
        return { client: c, store: new RedisReservationStore(c, keys) };
      }),
    );
    try {
      // 2,000 calls from 400 users (5 each), spread over 8 connections.
      const results = await Promise.all(
        Array.from({ length: 2000 }, (_, i) => {
          const conn = connections[i % connections.length] as (typeof connections)[number];
          return reserve(p, `user-${i % 400}`, null, conn.store).then((r) => ({ r, user: `user-${i % 400}` }));
        }),
      );

      const queued = results.filter(({ r }) => r.outcome === 'QUEUED');
      expect(queued).toHaveLength(stock);
      expect(new Set(queued.map(({ r }) => r.position))).toEqual(new Set(Array.from({ length: stock }, (_, i) => i + 1)));
      const perUser = new Map<string, number>();
      for (const { user } of queued) perUser.set(user, (perUser.get(user) ?? 0) + 1);
      expect(Math.max(...perUser.values())).toBeLessThanOrEqual(limit);
      expect(results.every(({ r }) => ['QUEUED', 'SOLD_OUT', 'ALREADY_REQUESTED'].includes(r.outcome))).toBe(true);
      expect(await redis.get(keys.promotion(p.id).stock)).toBe('0');
      expect(await redis.xlen(keys.promotion(p.id).stream)).toBe(stock);
    } finally {
      for (const { client } of connections) client.disconnect();
    }
  });

  test('When setup runs again on a live promotion, then it changes none of its counters', async () => {
    const p = await created({ totalStock: 5 });
    await reserve(p, 'u1');

    const rebuilt = await store.setupPromotion(p, 0);

    expect(rebuilt).toBe(false);
    expect(await redis.get(keys.promotion(p.id).stock)).toBe('4');
    expect((await reserve(p, 'u2')).position).toBe(2);
  });
});

