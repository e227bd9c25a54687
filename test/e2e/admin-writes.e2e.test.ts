import { expectAuditHolds } from '../helpers/audit';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import type { RunningApp } from '../../src/app';
import { RedisKeys } from '../../src/redis/keys';
import { AddPromotionStockDocument, CreatePromotionDocument, EndPromotionDocument, IssueCouponDocument, PromotionDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/**
 * Admin writes touch PostgreSQL and Redis. A real failure is injected between the two writes of one call
 * (a TCP cut at the moment Redis receives the script), and the two stores must converge: issuance never goes
 * on after an end, a stock addition counts once however often it is retried, a created promotion becomes
 * issuable. The service runs with RECONCILE_INTERVAL_MS=500; the bound asserted is a loose 20 s.
 */

let env: TestEnvironment;
let app: RunningApp;
let redisProxy: TcpProxy;
let pgProxy: TcpProxy;
let pg: Client;
let redis: Redis;
let keys: RedisKeys;
let admin: string;
const HOUR = 3600_000;

const script = (file: string) => {
  const lua = readFileSync(join(__dirname, '..', '..', 'src', 'redis', 'lua', file), 'utf8');
  return { sha: createHash('sha1').update(lua).digest('hex'), name: lua.split('\n')[1]?.trim().split(':')[0] ?? file };
};
/** A chunk that runs the script (EVALSHA, or EVAL after NOSCRIPT) on this promotion's keys. */
const runs = (file: string, promotionId: string | null) => {
  const { sha, name } = script(file);
  return (chunk: string) => (chunk.includes(sha) || chunk.includes(`${name}:`)) && (promotionId === null || chunk.includes(`{p:${promotionId}}`));
};

/** Waits for the interception, failing (not hanging) when the call never reached that script. */
const fires = (fired: Promise<void>) =>
  Promise.race([fired, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the call never ran the intercepted script')), 10_000).unref())]);

const codeOf = (body: { errors?: { extensions?: Record<string, unknown> }[] }) => body.errors?.[0]?.extensions?.code;

async function createPromotion(name: string, totalStock = 10) {
  const r = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name, totalStock, endsAt: new Date(Date.now() + HOUR).toISOString() } }, admin);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.createPromotion.id as string;
}

async function issueOutcome(promotionId: string, user: string) {
  const r = await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, await tokenFor(user));
  if (r.body.errors) throw new Error(JSON.stringify(r.body.errors));
  return r.body.data?.issueCoupon.outcome;
}

async function stores(promotionId: string) {
  const { rows } = await pg.query<{ total_stock: number; ended_at: Date | null }>('SELECT total_stock, ended_at FROM promotions WHERE id = $1', [promotionId]);
  const k = keys.promotion(promotionId);
  const [total, endedAt] = await redis.hmget(k.meta, 'totalStock', 'endedAt');
  return {
    pg: { totalStock: rows[0]?.total_stock, endedAt: rows[0]?.ended_at?.getTime() ?? null },
    redis: { totalStock: total === null ? null : Number(total), stock: Number(await redis.get(k.stock)), endedAt: endedAt === null ? null : Number(endedAt) },
  };
}

beforeAll(async () => {
  env = await createTestEnvironment('admin_writes');
  const redisUrl = new URL(env.redisUrl);
  const pgUrl = new URL(env.databaseUrl);
  redisProxy = new TcpProxy(redisUrl.hostname, Number(redisUrl.port || 6379));
  pgProxy = new TcpProxy(pgUrl.hostname, Number(pgUrl.port || 5432));
  await Promise.all([redisProxy.start(), pgProxy.start()]);
  app = await startTestApp(env, { REDIS_URL: redisProxy.via(env.redisUrl), DATABASE_URL: pgProxy.via(env.databaseUrl), RECONCILE_INTERVAL_MS: '500' });
  pg = new Client({ connectionString: env.databaseUrl });
  await pg.connect();
  redis = new Redis(env.redisUrl);
  keys = new RedisKeys(env.prefix);
  admin = await tokenFor('admin-1', { admin: true });
});

afterEach(async () => {
  await Promise.all([redisProxy.restore(), pgProxy.restore()]);
});

afterAll(async () => {
  await app?.stop();
  await Promise.all([redisProxy?.stop(), pgProxy?.stop()]);
  await pg?.end();
  redis?.disconnect();
  await env.cleanup();
});

test('When PostgreSQL fails after Redis took the end, then the call errors, issuance stays ENDED, and the stores converge', async () => {
  const id = await createPromotion('end split');
  expect(await issueOutcome(id, 'before-end')).toBe('QUEUED');
  const fired = redisProxy.interceptOnce(runs('end-promotion.lua', id), async () => {
    await pgProxy.cut(); // PostgreSQL goes away just as Redis receives the end
    return 'forward';
  });

  const answer = await httpGraphQL(app.url, EndPromotionDocument, { promotionId: id }, admin);
  await fires(fired);

  expect(codeOf(answer.body)).toBe('INTERNAL_SERVER_ERROR');
  const split = await stores(id);
  expect(split.pg.endedAt).toBeNull(); // the failure did fall between the two writes
  expect(split.redis.endedAt).not.toBeNull();
  for (let i = 0; i < 5; i++) expect(await issueOutcome(id, `during-outage-${i}`)).toBe('ENDED');

  await pgProxy.restore();
  const restoredAt = Date.now();
  const convergedMs = await eventually(async () => ((await stores(id)).pg.endedAt !== null ? Date.now() - restoredAt : undefined), 20_000, 'ended_at in PostgreSQL');
  console.log(`endPromotion split: PostgreSQL holds the end ${convergedMs} ms after it came back`);

  const after = await stores(id);
  expect(after.pg.endedAt).toBe(split.redis.endedAt); // one end time in both stores
  expect(after.redis.endedAt).toBe(split.redis.endedAt);
  expect((await httpGraphQL(app.url, PromotionDocument, { id })).body.data?.promotion?.status).toBe('ENDED');
  expect(await issueOutcome(id, 'after-outage')).toBe('ENDED');
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When Redis is down, then endPromotion errors and changes nothing: the promotion stays ACTIVE in both stores', async () => {
  const id = await createPromotion('end redis down');
  await redisProxy.cut();

  const answer = await httpGraphQL(app.url, EndPromotionDocument, { promotionId: id }, admin);

  expect(codeOf(answer.body)).toBe('SERVICE_UNAVAILABLE') // Redis unreachable: come back later;
  expect((await stores(id)).pg.endedAt).toBeNull();
  await redisProxy.restore();
  expect(await eventually(() => issueOutcome(id, 'after-redis').catch(() => undefined), 20_000, 'issueCoupon after Redis is back')).toBe('QUEUED');
  expect((await httpGraphQL(app.url, PromotionDocument, { id })).body.data?.promotion?.status).toBe('ACTIVE');
  expect(await stores(id)).toMatchObject({ pg: { endedAt: null }, redis: { endedAt: null } });
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When the Redis write of a keyed addPromotionStock fails, then the reconciler and a retry with the key add it exactly once', async () => {
  const id = await createPromotion('restock split', 5);
  expect(await issueOutcome(id, 'buyer')).toBe('QUEUED');
  const fired = redisProxy.interceptOnce(runs('add-stock.lua', id), async () => {
    await redisProxy.cut(); // the script never reaches Redis
    return 'drop';
  });

  const failed = await httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: id, amount: 7, idempotencyKey: 'restock-1' }, admin);
  await fires(fired);

  expect(codeOf(failed.body)).toBe('SERVICE_UNAVAILABLE') // Redis unreachable: come back later;
  expect(await stores(id)).toMatchObject({ pg: { totalStock: 12 }, redis: { totalStock: 5, stock: 4 } });

  await redisProxy.restore();
  const restoredAt = Date.now();
  const convergedMs = await eventually(async () => ((await stores(id)).redis.totalStock === 12 ? Date.now() - restoredAt : undefined), 20_000, 'total in Redis');
  console.log(`addPromotionStock split: Redis holds the new total ${convergedMs} ms after it came back`);

  const retries = [];
  for (let i = 0; i < 3; i++) retries.push(await httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: id, amount: 7, idempotencyKey: 'restock-1' }, admin));

  for (const retry of retries) expect(retry.body.data?.addPromotionStock).toMatchObject({ totalStock: 12, remainingStock: 11 });
  expect(await stores(id)).toMatchObject({ pg: { totalStock: 12 }, redis: { totalStock: 12, stock: 11 } });
  const { rows } = await pg.query('SELECT amount FROM stock_additions WHERE promotion_id = $1', [id]);
  expect(rows).toEqual([{ amount: 7 }]);
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When the same key is sent again at once, or without one, then only distinct calls add', async () => {
  const id = await createPromotion('restock keys', 1);
  const add = (amount: number, idempotencyKey?: string) => httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: id, amount, idempotencyKey }, admin);

  const concurrent = await Promise.all(Array.from({ length: 5 }, () => add(3, 'same')));
  await add(2);
  await add(2);

  expect(concurrent.map((r) => r.body.errors)).toEqual([undefined, undefined, undefined, undefined, undefined]);
  expect(await stores(id)).toMatchObject({ pg: { totalStock: 8 }, redis: { totalStock: 8, stock: 8 } });
  expect((await add(4, 'same')).body.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'idempotencyKey' });
  for (const key of ['', 'k'.repeat(65), 'line\nbreak', 'nul\u0000']) {
    expect((await add(1, key)).body.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'idempotencyKey' });
  }
  expect((await add(1, 'k'.repeat(64))).body.data?.addPromotionStock.totalStock).toBe(9);
  expect((await stores(id)).pg.totalStock).toBe(9);
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When the Redis set-up of a created promotion fails, then the call errors and the reconciler makes it issuable', async () => {
  const fired = redisProxy.interceptOnce(runs('setup-promotion.lua', null), async () => {
    await redisProxy.cut();
    return 'drop';
  });

  const answer = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'create split', totalStock: 3, endsAt: new Date(Date.now() + HOUR).toISOString() } }, admin);
  await fires(fired);

  expect(codeOf(answer.body)).toBe('SERVICE_UNAVAILABLE') // Redis unreachable: come back later;
  const { rows } = await pg.query<{ id: string }>(`SELECT id FROM promotions WHERE name = 'create split'`);
  const id = rows[0]?.id as string;
  expect(id).toBeDefined();
  expect((await stores(id)).redis.totalStock).toBeNull();

  await redisProxy.restore();
  const restoredAt = Date.now();
  expect(await eventually(() => issueOutcome(id, 'first-buyer').catch(() => undefined).then((o) => (o === 'QUEUED' ? o : undefined)), 20_000, 'QUEUED')).toBe('QUEUED');
  console.log(`createPromotion split: issuable ${Date.now() - restoredAt} ms after Redis came back`);
  expect(await redis.sismember(keys.activePromotions(), id)).toBe(1);
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When PostgreSQL says ended but Redis does not, or the registry lost a promotion, then the reconciler repairs Redis', async () => {
  const ended = await createPromotion('ended in PostgreSQL only');
  const unregistered = await createPromotion('unregistered');
  // What the former write order (PostgreSQL first) left behind when Redis failed, and a lost registry entry.
  await pg.query('UPDATE promotions SET ended_at = now() WHERE id = $1', [ended]);
  await redis.srem(keys.activePromotions(), unregistered);

  const startedAt = Date.now();
  await eventually(async () => {
    const done = (await issueOutcome(ended, 'late-buyer')) === 'ENDED' && (await redis.sismember(keys.activePromotions(), unregistered)) === 1;
    return done ? true : undefined;
  }, 20_000, 'repaired');
  console.log(`leftovers repaired by the reconciler within ${Date.now() - startedAt} ms`);

  const s = await stores(ended);
  expect(s.redis.endedAt).toBe(s.pg.endedAt);
  for (const id of [ended, unregistered]) await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});

test('When a rebuild of lost Redis state is cut short, then no user gets past perUserLimit once it completes', async () => {
  const id = await createPromotion('rebuild cut', 5);
  expect(await issueOutcome(id, 'alice')).toBe('QUEUED');
  await eventually(async () => ((await pg.query('SELECT 1 FROM coupons WHERE promotion_id = $1', [id])).rowCount === 1 ? true : undefined), 20_000, 'alice stored');
  // The rebuild's per-user counts are the moment to fail at: the sale must not open before they are in.
  const fired = redisProxy.interceptOnce(
    (chunk) => chunk.toLowerCase().includes('hsetnx') && chunk.includes(`{p:${id}}:user:alice`),
    async () => {
      await redisProxy.cut();
      return 'drop';
    },
  );
  const lost = await redis.keys(`${env.prefix}{p:${id}}*`); // Redis lost the promotion (a flush, no persistence)
  await redis.del(...lost);

  await fires(fired); // the reconciler started rebuilding, and Redis went away half way
  await redisProxy.restore();
  const restoredAt = Date.now();
  const outcome = await eventually(() => issueOutcome(id, 'alice').then((o) => (o === 'NOT_FOUND' ? undefined : o)).catch(() => undefined), 20_000, 'rebuilt');

  console.log(`rebuild cut short: issuable again ${Date.now() - restoredAt} ms after Redis came back`);

  expect(outcome).toBe('ALREADY_REQUESTED');
  expect(await issueOutcome(id, 'bob')).toBe('QUEUED');
  await expectAuditHolds((promotionId) => app.audit.check(promotionId), id);
});
