import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ConsumerOptions, StreamConsumer } from '../../src/consumer/stream-consumer';
import { createDb, type Db } from '../../src/db/client';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { newRequestId } from '../../src/domain/identifiers';
import type { PromotionRecord } from '../../src/domain/types';
import { connectRedis, createDedicatedRedis } from '../../src/redis/client';
import { CONSUMER_GROUP, RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { auditFor, expectAuditHolds } from '../helpers/audit';
import { openConsumerTestbed, type ConsumerTestbed } from '../helpers/consumer-testbed';
import { createConsumer } from '../helpers/consumers';
import { promotionRecord } from '../helpers/fixtures';
import { eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/** The stream consumer against real Redis and PostgreSQL: batches, redelivery, crashes, outages, refusals. */

const HOUR = 3600_000;
let bed: ConsumerTestbed;
let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let keys: RedisKeys;
let store: RedisReservationStore;
const running: StreamConsumer[] = [];
const openClients: ScriptedRedis[] = [];

interface ObservedConsumer {
  consumer: StreamConsumer;
  batches: number[];
  retries: number;
  failed: number;
}

async function startConsumer(options: Partial<ConsumerOptions> = {}, couponsDb: Db = db): Promise<ObservedConsumer> {
  const observed = { batches: [] as number[], retries: 0, failed: 0 } as Omit<ObservedConsumer, 'consumer'>;
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db: couponsDb,
    options: { consumerName: `test-${running.length}`, ...options },
    observer: {
      persisted: (n) => observed.batches.push(n),
      failed: (n) => (observed.failed += n),
      retrying: () => observed.retries++,
    },
  });
  consumer.start();
  running.push(consumer);
  return Object.assign(observed, { consumer });
}

async function newPromotion(totalStock: number, perUserLimit = 1, inPostgres = true): Promise<PromotionRecord> {
  const p = promotionRecord({ name: 'consumer test', totalStock, perUserLimit });
  if (inPostgres) await new PrismaPromotionRepository(db).create(p);
  await store.setupPromotion(p, 0);
  return p;
}

async function queue(p: PromotionRecord, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await store.reserve({ promotionId: p.id, userId: `user-${i}`, requestId: newRequestId(p.id), idempotencyKey: null });
    expect(r.outcome).toBe('QUEUED');
    ids.push(r.requestId as string);
  }
  return ids;
}

const rowsOf = (p: PromotionRecord) => db.coupon.findMany({ where: { promotionId: p.id } });
const pendingCount = async (p: PromotionRecord) =>
  Number(((await redis.xpending(keys.promotion(p.id).stream, CONSUMER_GROUP)) as [number])[0]);

/** Resolves when every request is ISSUED, stored once, acknowledged and trimmed from the stream. */
async function allIssued(p: PromotionRecord, requestIds: string[]): Promise<void> {
  await eventually(async () => ((await rowsOf(p)).length === requestIds.length ? true : undefined), 30_000, 'rows');
  await eventually(async () => ((await redis.xlen(keys.promotion(p.id).stream)) === 0 && (await pendingCount(p)) === 0 ? true : undefined), 30_000, 'ack');
  const rows = await rowsOf(p);
  expect(new Set(rows.map((r) => r.requestId))).toEqual(new Set(requestIds));
  for (const id of requestIds) {
    const status = await redis.hgetall(keys.status(p.id, id));
    const row = rows.find((r) => r.requestId === id);
    expect(status).toMatchObject({
      s: 'ISSUED',
      k: row?.code,
      c: row?.id,
      u: row?.userId,
      t: String(row?.requestedAt.getTime()),
      i: String(row?.issuedAt.getTime()),
    });
  }
  await expectAuditHolds(auditFor(redis, keys, db), p.id);
}

beforeAll(async () => {
  bed = await openConsumerTestbed('consumer');
  ({ env, db, redis, keys, store } = bed);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  // Each test's promotion leaves the registry, so the next test's consumer reads only its own.
  await redis.del(keys.activePromotions());
});

afterAll(async () => {
  for (const c of openClients) c.disconnect();
  await bed.close();
});

test('When requests are queued, then they are stored in batches, ISSUED, published once, acked and trimmed', async () => {
  const p = await newPromotion(250);
  const ids = await queue(p, 250);
  const listener = createDedicatedRedis(env.redisUrl, 'test-listener');
  await connectRedis(listener);
  const published: string[] = [];
  listener.on('smessage', (_channel: string, message: string) => published.push((JSON.parse(message) as { r: string }).r));
  await listener.ssubscribe(...ids.map((_, i) => keys.userChannel(p.id, `user-${i}`)));

  const observed = await startConsumer({ batchSize: 100 });
  await allIssued(p, ids);
  await eventually(async () => (published.length >= ids.length ? true : undefined), 5000, 'events');
  listener.disconnect();

  expect(observed.batches.length).toBeGreaterThanOrEqual(3);
  expect(Math.max(...observed.batches)).toBeLessThanOrEqual(100);
  expect(observed.batches.reduce((a, b) => a + b, 0)).toBe(250);
  expect(published.sort()).toEqual([...ids].sort());
});

test('When a batch was committed but never acked, then its redelivery adds no second row and keeps the codes', async () => {
  const p = await newPromotion(20);
  const ids = await queue(p, 20);
  // A consumer reads the batch and commits it, then "crashes" before confirming: its entries stay pending.
  const stream = keys.promotion(p.id).stream;
  const reply = (await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'crashed', 'COUNT', 100, 'STREAMS', stream, '>')) as [string, [string, string[]][]][];
  const entries = reply[0]?.[1] ?? [];
  expect(entries).toHaveLength(20);
  const committed = await new PrismaCouponRepository(db).persistBatch(
    entries.map(([entryId, f]) => ({ entryId, requestId: f[1] as string, userId: f[3] as string, promotionId: f[5] as string, requestedAt: new Date(Number(f[7])), position: Number(f[9]) })),
  );
  expect(await pendingCount(p)).toBe(20);

  await startConsumer();
  await allIssued(p, ids);

  const rows = await rowsOf(p);
  expect(rows).toHaveLength(20);
  expect(new Map(rows.map((r) => [r.requestId, r.code]))).toEqual(new Map(committed.map((c) => [c.requestId, c.code])));
});

describe('When a consumer process is SIGKILLed mid-batch', () => {
  const children: ChildProcess[] = [];
  afterAll(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

  function spawnChild(crashPoint: 'before-commit' | 'after-commit'): { child: ChildProcess; line: Promise<string> } {
    const child = spawn(process.execPath, ['-r', '@swc-node/register', join(__dirname, 'fixtures', 'consumer-child.ts')], {
      env: { ...process.env, CRASH_POINT: crashPoint, CONSUMER_NAME: 'doomed-child', DATABASE_URL: env.databaseUrl, REDIS_URL: env.redisUrl, REDIS_KEY_PREFIX: env.prefix },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const line = new Promise<string>((resolve, reject) => {
      let buffer = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const match = /^(HOLDING|COMMITTED) .*$/m.exec(buffer);
        if (match) resolve(match[0]);
      });
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    return { child, line };
  }

  test.each(['before-commit', 'after-commit'] as const)('at %s, then another consumer reclaims and every request is stored once', async (point) => {
    const p = await newPromotion(60);
    const ids = await queue(p, 60);
    const { child, line } = spawnChild(point);

    const said = await line;
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await pendingCount(p)).toBe(60);
    expect((await rowsOf(p)).length).toBe(point === 'after-commit' ? 60 : 0);

    await startConsumer();
    await allIssued(p, ids);

    if (point === 'after-commit') {
      const committed = new Map(JSON.parse(said.slice('COMMITTED '.length)) as [string, string][]);
      expect(new Map((await rowsOf(p)).map((r) => [r.requestId, r.code]))).toEqual(committed);
    }
  });
});

test('When PostgreSQL is unreachable for a while, then nothing is lost and everything is stored once it is back', async () => {
  const proxy = new TcpProxy(new URL(env.databaseUrl).hostname, Number(new URL(env.databaseUrl).port || 5432));
  await proxy.start();
  const proxiedDb = createDb(proxy.via(env.databaseUrl));
  try {
    const p = await newPromotion(40);
    await proxy.cut();
    const ids = await queue(p, 40);

    const observed = await startConsumer({ maxBackoffMs: 100 }, proxiedDb);
    await eventually(async () => (observed.retries >= 3 ? true : undefined), 10_000, 'retries');
    expect((await rowsOf(p)).length).toBe(0);
    expect(await pendingCount(p)).toBe(40); // held, not dropped
    // Waiting out an outage counts no delivery: the cap is for crashes, never for a database that is away.
    const held = (await redis.xpending(keys.promotion(p.id).stream, CONSUMER_GROUP, '-', '+', 100)) as [string, string, number, number][];
    expect(held.map(([, , , deliveries]) => Number(deliveries))).toEqual(Array.from({ length: 40 }, () => 1));
    for (const id of ids) expect(await redis.hget(keys.status(p.id, id), 's')).toBe('QUEUED');

    await proxy.restore();
    await allIssued(p, ids);
    expect(observed.failed).toBe(0);
  } finally {
    await Promise.all(running.splice(0).map((c) => c.stop()));
    await proxiedDb.$disconnect();
    await proxy.stop();
  }
});

test('When PostgreSQL refuses a request outright, then it ends FAILED with its stock and user count given back', async () => {
  // The promotion exists in Redis only: PostgreSQL refuses its coupons (foreign key), now and forever.
  const orphan = await newPromotion(5, 1, false);
  const [orphanRequest] = await queue(orphan, 1);
  const listener = createDedicatedRedis(env.redisUrl, 'test-listener');
  await connectRedis(listener);
  const events: { r: string; s: string; f?: string }[] = [];
  listener.on('smessage', (_c: string, m: string) => events.push(JSON.parse(m) as { r: string; s: string; f?: string }));
  await listener.ssubscribe(keys.userChannel(orphan.id, 'user-0'));
  expect(await redis.get(keys.promotion(orphan.id).stock)).toBe('4');

  const observed = await startConsumer();
  await eventually(async () => ((await redis.hget(keys.status(orphan.id, orphanRequest as string), 's')) === 'FAILED' ? true : undefined), 15_000, 'FAILED');
  await eventually(async () => (events.length > 0 ? true : undefined), 5000, 'FAILED event');
  listener.disconnect();

  expect(observed.failed).toBe(1);
  expect(await redis.get(keys.promotion(orphan.id).stock)).toBe('5');
  expect(await redis.hget(keys.user(orphan.id, 'user-0'), 'n')).toBe('0');
  expect(await redis.xlen(keys.promotion(orphan.id).deadLetter)).toBe(1);
  expect(await redis.xlen(keys.promotion(orphan.id).stream)).toBe(0);
  expect(await pendingCount(orphan)).toBe(0);
  expect(events).toEqual([expect.objectContaining({ r: orphanRequest, s: 'FAILED', f: expect.stringContaining('23503') })]);
  // The stock given back is really there: the same user can try again.
  const retry = await store.reserve({ promotionId: orphan.id, userId: 'user-0', requestId: newRequestId(orphan.id), idempotencyKey: null });
  expect(retry.outcome).toBe('QUEUED');
});

test('When a promotion ended over an hour ago, then its keys expire once its queue is drained, and consumers stop reading it', async () => {
  const p = await newPromotion(5);
  const ids = await queue(p, 2);
  const k = keys.promotion(p.id);
  await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'crashed', 'COUNT', 10, 'STREAMS', k.stream, '>'); // in flight
  await redis.hset(k.meta, 'endsAt', Date.now() - 2 * HOUR); // as if two hours had passed

  const whileInFlight = await redis.couponRetire(k.meta, k.stock, k.seq, k.stream, k.deadLetter, CONSUMER_GROUP, HOUR, HOUR);
  expect(whileInFlight).toBe(0);
  expect(await redis.pttl(k.meta)).toBe(-1);

  await startConsumer();
  await allIssued(p, ids);
  await eventually(async () => ((await redis.sismember(keys.activePromotions(), p.id)) === 0 ? true : undefined), 10_000, 'retired');

  for (const key of [k.stock, k.seq, k.stream]) {
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(HOUR);
  }
  // The meta hash stays as a tombstone: the promotion keeps answering ENDED, never NOT_FOUND.
  expect(await redis.pttl(k.meta)).toBe(-1);
  const late = await store.reserve({ promotionId: p.id, userId: 'late', requestId: newRequestId(p.id), idempotencyKey: null });
  expect(late.outcome).toBe('ENDED');
});

test('When several consumers read one group, then they share the work and store each request once', async () => {
  const p = await newPromotion(400);
  const a = await startConsumer({ batchSize: 20 });
  const b = await startConsumer({ batchSize: 20 });

  const ids = await queue(p, 400);
  await allIssued(p, ids);

  const storedBy = [a, b].map((c) => c.batches.reduce((sum, n) => sum + n, 0));
  expect(storedBy[0]).toBeGreaterThan(0);
  expect(storedBy[1]).toBeGreaterThan(0);
  expect((storedBy[0] ?? 0) + (storedBy[1] ?? 0)).toBe(400);
});
