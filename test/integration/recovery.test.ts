import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { createDb, type Db } from '../../src/db/client';
import { PrismaAuditRepository } from '../../src/db/audit-repository';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { AuditService } from '../../src/domain/audit-service';
import { newCouponCode, newCouponId, newRequestId } from '../../src/domain/identifiers';
import type { PromotionRecord, QueuedRequest } from '../../src/domain/types';
import { CONSUMER_GROUP, RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { RedisStreamQueue } from '../../src/redis/stream-queue';
import { startTestApp } from '../helpers/app';
import { expectAuditHolds } from '../helpers/audit';
import { openConsumerTestbed, type ConsumerTestbed } from '../helpers/consumer-testbed';
import { createConsumer } from '../helpers/consumers';
import { eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/**
 * Recovery in seconds: consumers killed or frozen mid-rush, a poison entry, two consumers storing one entry,
 * a stop that must not wait for a long blocking read. Every test ends with the audit holding.
 */

let bed: ConsumerTestbed;
let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let keys: RedisKeys;
let store: RedisReservationStore;
let audit: AuditService;
const children: ChildProcess[] = [];

beforeAll(async () => {
  bed = await openConsumerTestbed('recovery');
  ({ env, db, redis, keys, store } = bed);
  audit = new AuditService(store, new PrismaAuditRepository(db), new PrismaPromotionRepository(db), { now: () => new Date() });
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  }
  await redis.del(keys.activePromotions());
});

afterAll(async () => {
  await bed.close();
});

const newPromotion = (totalStock: number) => bed.newPromotion(totalStock, 'recovery test');

async function reserve(p: PromotionRecord, userId: string): Promise<string> {
  const r = await store.reserve({ promotionId: p.id, userId, requestId: newRequestId(p.id), idempotencyKey: null });
  expect(r.outcome).toBe('QUEUED');
  return r.requestId as string;
}

function spawnConsumer(
  name: string,
  crashPoint: 'none' | 'slow' | 'poison',
  extraEnv: Record<string, string> = {},
): { child: ChildProcess; stored: () => number; holding: () => boolean; ready: Promise<void> } {
  const child = spawn(process.execPath, ['-r', '@swc-node/register', join(__dirname, 'fixtures', 'consumer-child.ts')], {
    env: { ...process.env, CRASH_POINT: crashPoint, CONSUMER_NAME: name, DATABASE_URL: env.databaseUrl, REDIS_URL: env.redisUrl, REDIS_KEY_PREFIX: env.prefix, ...extraEnv },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  children.push(child);
  let stored = 0;
  let holding = false;
  let buffer = '';
  const ready = new Promise<void>((resolve) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (line === 'READY') resolve();
        if (line.startsWith('HOLDING ')) holding = true;
        const match = /^STORED (\d+)$/.exec(line);
        if (match) stored += Number(match[1]);
      }
    });
  });
  return { child, stored: () => stored, holding: () => holding, ready };
}

/** Resolves when every request is ISSUED; returns the milliseconds it took from `since`. */
async function allIssued(p: PromotionRecord, requestIds: string[], since: number): Promise<number> {
  await eventually(
    async () => {
      const statuses = await Promise.all(requestIds.map((id) => redis.hget(keys.status(p.id, id), 's')));
      return statuses.every((s) => s === 'ISSUED') ? true : undefined;
    },
    20_000,
    'every QUEUED request ISSUED',
  );
  return Date.now() - since;
}

const auditHolds = (p: PromotionRecord) => expectAuditHolds((id) => audit.check(id), p.id);

/** Reserves `count` requests over about `durationMs`, as a crowd arriving, and returns their ids. */
async function rush(p: PromotionRecord, count: number, durationMs: number, onTick?: (sent: number) => void): Promise<string[]> {
  const ids: string[] = [];
  const perTick = Math.ceil(count / (durationMs / 50));
  while (ids.length < count) {
    const n = Math.min(perTick, count - ids.length);
    const offset = ids.length;
    ids.push(...(await Promise.all(Array.from({ length: n }, (_, i) => reserve(p, `rusher-${offset + i}`)))));
    onTick?.(ids.length);
    await new Promise((r) => setTimeout(r, 50));
  }
  return ids;
}

describe.each(['SIGKILL', 'SIGSTOP'] as const)('When one of two consumers gets %s mid-rush', (signal) => {
  test('then the other finishes its entries within seconds, each stored once, and the audit holds', async () => {
    const p = await newPromotion(3000);
    // The default lease (3 s, renewed every second): the figure printed is the one a deployment gets.
    const timing = { HEARTBEAT_MS: '1000', DEAD_AFTER_MS: '3000', BATCH_SIZE: '50' };
    // A holds each batch for 500 ms and says so first: the signal lands while it holds entries.
    const a = spawnConsumer(`rush-a-${signal}`, 'slow', timing);
    const b = spawnConsumer(`rush-b-${signal}`, 'none', timing);
    await Promise.all([a.ready, b.ready]);

    let signalledAt = 0;
    let heldAtSignal = 0;
    const ids = await rush(p, 3000, 2000, () => {
      if (!signalledAt && a.holding()) {
        a.child.kill(signal);
        signalledAt = Date.now();
        void redis
          .xpending(keys.promotion(p.id).stream, CONSUMER_GROUP, '-', '+', 1000, `rush-a-${signal}`)
          .then((held) => (heldAtSignal = (held as unknown[]).length));
      }
    });
    expect(signalledAt).toBeGreaterThan(0);
    const rushEndedAt = Date.now();
    await eventually(async () => (heldAtSignal > 0 ? true : undefined), 5000, 'entries held by the signalled consumer');
    const sinceSignal = await allIssued(p, ids, signalledAt);
    console.log(
      `${signal} of one of two consumers: every QUEUED read ISSUED ${sinceSignal} ms after the signal, ` +
        `${Date.now() - rushEndedAt} ms after the rush ended (${heldAtSignal} entries were held by it)`,
    );

    const rows = await db.coupon.findMany({ where: { promotionId: p.id }, select: { requestId: true } });
    expect(rows).toHaveLength(3000);
    expect(new Set(rows.map((r) => r.requestId))).toEqual(new Set(ids));
    await auditHolds(p);
    // The dead name leaves the group once nothing is pending with it.
    await eventually(async () => {
      const names = ((await redis.xinfo('CONSUMERS', keys.promotion(p.id).stream, CONSUMER_GROUP)) as string[][]).map((c) => c[1]);
      return names.includes(`rush-a-${signal}`) ? undefined : names;
    }, 15_000, 'the dead consumer removed from the group');
  });
});

test('When an entry crashes every consumer that reads it, then it is dead-lettered after the cap, FAILED, and its batch neighbours are stored', async () => {
  const p = await newPromotion(40);
  const neighbours = await Promise.all(Array.from({ length: 30 }, (_, i) => reserve(p, `neighbour-${i}`)));
  const poison = await reserve(p, 'poison');
  neighbours.push(...(await Promise.all(Array.from({ length: 5 }, (_, i) => reserve(p, `late-${i}`)))));

  // A supervisor restarts the crashed consumer under the same name, as systemd or Kubernetes would.
  const crashes: number[] = [];
  for (let start = 0; start < 10; start++) {
    const c = spawnConsumer('poisoned', 'poison', { MAX_DELIVERIES: '3' });
    const exit = await Promise.race([
      new Promise<number | null>((resolve) => c.child.once('exit', (code) => resolve(code))),
      eventually(async () => ((await redis.hget(keys.status(p.id, poison), 's')) === 'FAILED' ? 'done' : undefined), 20_000, 'FAILED'),
    ]);
    if (exit === 'done') break;
    crashes.push(exit as number);
  }
  // Two crashes in a batch (deliveries 1 and 2), one while tried alone (3): the fourth start dead-letters it.
  expect(crashes).toHaveLength(3);
  await allIssued(p, neighbours, Date.now());

  const letters = await new PrismaFailureRepository(db).list(p.id, 10, null);
  expect(letters).toEqual([expect.objectContaining({ requestId: poison, userId: 'poison', deliveries: 5 })]);
  expect(letters[0]?.reason).toContain('delivered 5 times');
  expect(await redis.get(keys.promotion(p.id).stock)).toBe(String(40 - neighbours.length)); // the poison's unit came back
  expect(await redis.hget(keys.user(p.id, 'poison'), 'n')).toBe('0');
  const pending = (await redis.xpending(keys.promotion(p.id).stream, CONSUMER_GROUP)) as [number];
  expect(Number(pending[0])).toBe(0);
  await auditHolds(p);
  expect(await audit.check(p.id)).toMatchObject({ failed: 1, persisted: neighbours.length, inFlight: 0 });
});

test('When two consumers store the same entry at once, then both get its one coupon (no entry left unconfirmed)', async () => {
  const p = await newPromotion(5);
  const requestId = newRequestId(p.id);
  const request: QueuedRequest = { entryId: '1-1', requestId, promotionId: p.id, userId: 'both', requestedAt: new Date(), position: 1 };
  // The first consumer's INSERT is open, not committed; the second's waits on it, then finds it conflicting.
  const first = new Client({ connectionString: env.databaseUrl });
  await first.connect();
  try {
    await first.query('BEGIN');
    await first.query(
      `INSERT INTO coupons (id, code, promotion_id, user_id, request_id, requested_at, position) VALUES ($1, $2, $3, 'both', $4, now(), 1)`,
      [newCouponId(), newCouponCode(), p.id, requestId],
    );
    const second = new PrismaCouponRepository(db).persistBatch([request]);
    await new Promise((r) => setTimeout(r, 300)); // the second statement is now waiting on the row lock
    await first.query('COMMIT');
    const coupons = await second;
    expect(coupons.map((c) => c.requestId)).toEqual([requestId]);
  } finally {
    await first.end();
  }
});

test('When a consumer is stopped during a long blocking read and a long backoff, then stop returns at once', async () => {
  const p = await newPromotion(5);
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    options: { consumerName: 'slow-reader', blockMs: 60_000, heartbeatMs: 30_000, deadAfterMs: 60_000, maxBackoffMs: 600_000 },
  });
  consumer.start();
  await reserve(p, 'someone');
  await eventually(async () => ((await redis.xlen(keys.promotion(p.id).stream)) === 0 ? true : undefined), 10_000, 'drained');
  await new Promise((r) => setTimeout(r, 200)); // now parked in XREADGROUP BLOCK 30000
  const stoppedAt = Date.now();
  await consumer.stop();
  const took = Date.now() - stoppedAt;
  console.log(`stop during a blocking read took ${took} ms`);
  expect(took).toBeLessThan(5000);
  await auditHolds(p);
});

test('When Redis and PostgreSQL disagree, then the audit says so', async () => {
  const p = await newPromotion(10);
  await reserve(p, 'honest');
  expect(await audit.check(p.id)).toMatchObject({ holds: true, remainingStock: 9, inFlight: 1, persisted: 0 });
  await redis.decr(keys.promotion(p.id).stock); // a unit vanished from Redis
  expect(await audit.check(p.id)).toMatchObject({ holds: false, remainingStock: 8 });
  await redis.incr(keys.promotion(p.id).stock);
  // A user holding two coupons of a one-per-user promotion.
  await db.coupon.create({ data: { id: newCouponId(), code: newCouponCode(), promotionId: p.id, userId: 'greedy', requestId: newRequestId(p.id), requestedAt: new Date() } });
  await db.coupon.create({ data: { id: newCouponId(), code: newCouponCode(), promotionId: p.id, userId: 'greedy', requestId: newRequestId(p.id), requestedAt: new Date() } });
  await redis.decrby(keys.promotion(p.id).stock, 2);
  expect(await audit.check(p.id)).toMatchObject({ holds: false, usersOverLimit: 1, persisted: 2 });
});

test('When two consumers are given one name, then the second waits (and says so) until the first lets it go', async () => {
  const p = await newPromotion(10);
  const errors: string[] = [];
  const first = await createConsumer({ redisUrl: env.redisUrl, redis, keys, db, options: { consumerName: 'twin' } });
  first.start();
  await eventually(async () => ((await redis.exists(keys.consumerHeartbeat('twin'))) === 1 ? true : undefined), 5000, 'the first holds the name');
  const second = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    options: { consumerName: 'twin' },
    observer: { error: (e: unknown) => errors.push(String(e)) },
  });
  second.start();
  await eventually(async () => (errors.some((e) => e.includes('no consumer name free')) ? true : undefined), 5000, 'the second says it waits');
  await first.stop();

  const ids = [await reserve(p, 'after-the-handover')];
  await allIssued(p, ids, Date.now());
  expect(second.name).toBe('twin');
  await second.stop();
  await auditHolds(p);
});

describe('When a request is stored and dead-lettered at the same time (a frozen holder wakes up)', () => {
  const failure = (p: PromotionRecord, requestId: string) => ({
    requestId,
    promotionId: p.id,
    userId: 'sleeper',
    position: 1,
    reason: 'delivered 7 times',
    deliveries: 7,
    requestedAt: new Date(),
  });
  const queued = (p: PromotionRecord, requestId: string): QueuedRequest => ({ entryId: '1-1', requestId, promotionId: p.id, userId: 'sleeper', requestedAt: new Date(), position: 1 });

  test('then a failure recorded while the coupon is being stored waits for it and answers "stored", and no failure is kept', async () => {
    const p = await newPromotion(1);
    const requestId = newRequestId(p.id);
    const holder = new Client({ connectionString: env.databaseUrl });
    await holder.connect();
    try {
      // The woken holder: its batch transaction holds the promotion's storing lock and has inserted the coupon.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))', [p.id]);
      await holder.query(
        `INSERT INTO coupons (id, code, promotion_id, user_id, request_id, requested_at, position) VALUES ($1, $2, $3, 'sleeper', $4, now(), 1)`,
        [newCouponId(), newCouponCode(), p.id, requestId],
      );
      let settled = false;
      const recording = new PrismaFailureRepository(db).record(failure(p, requestId)).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(settled).toBe(false); // waits for the storing transaction
      await holder.query('COMMIT');
      expect(await recording).toBe('stored');
    } finally {
      await holder.end();
    }
    expect(await db.failedRequest.count({ where: { requestId } })).toBe(0);
  });

  test('then a coupon stored after the failure was recorded is refused: the request ends failed only', async () => {
    const p = await newPromotion(1);
    const requestId = newRequestId(p.id);
    expect(await new PrismaFailureRepository(db).record(failure(p, requestId))).toBe('failed');
    expect(await new PrismaCouponRepository(db).persistBatch([queued(p, requestId)])).toEqual([]);
    expect(await db.coupon.count({ where: { requestId } })).toBe(0);
  });
});

test('When a dead name is removed while it holds entries again (taken by a restarted process), then it is kept with them', async () => {
  const p = await newPromotion(5);
  await reserve(p, 'someone');
  const stream = keys.promotion(p.id).stream;
  await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'reborn', 'COUNT', 10, 'STREAMS', stream, '>');
  const queue = new RedisStreamQueue(redis, redis, keys, 3600_000);
  await queue.deleteConsumer(p.id, 'reborn');
  const held = (await redis.xpending(stream, CONSUMER_GROUP, '-', '+', 10, 'reborn')) as unknown[];
  expect(held).toHaveLength(1);
});

test('When PostgreSQL is away while a consumer takes over a dead holder\'s entries, then waiting counts no delivery and nothing is dead-lettered', async () => {
  const p = await newPromotion(5);
  const ids = [await reserve(p, 'a'), await reserve(p, 'b')];
  await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'crashed', 'COUNT', 10, 'STREAMS', keys.promotion(p.id).stream, '>');
  const proxy = new TcpProxy(new URL(env.databaseUrl).hostname, Number(new URL(env.databaseUrl).port || 5432));
  await proxy.start();
  const proxiedDb = createDb(proxy.via(env.databaseUrl));
  try {
    await proxy.cut();
    const consumer = await createConsumer({ redisUrl: env.redisUrl, redis, keys, db: proxiedDb, options: { consumerName: 'patient', maxDeliveries: 3, maxBackoffMs: 100 } });
    consumer.start();
    await new Promise((r) => setTimeout(r, 4000)); // many heartbeats and retries with PostgreSQL away
    const held = (await redis.xpending(keys.promotion(p.id).stream, CONSUMER_GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(held.map(([, , , deliveries]) => Number(deliveries))).toEqual([2, 2]); // the takeover, and nothing since
    await proxy.restore();
    await allIssued(p, ids, Date.now());
    await consumer.stop();
  } finally {
    await proxiedDb.$disconnect();
    await proxy.stop();
  }
  expect(await db.failedRequest.count({ where: { promotionId: p.id } })).toBe(0);
  await auditHolds(p);
});

test('When the database stops answering mid-batch, then a graceful stop still ends within SHUTDOWN_TIMEOUT_MS', async () => {
  const proxy = new TcpProxy(new URL(env.databaseUrl).hostname, Number(new URL(env.databaseUrl).port || 5432));
  await proxy.start();
  const app = await startTestApp(env, { DATABASE_URL: proxy.via(env.databaseUrl), SHUTDOWN_TIMEOUT_MS: '2000', REDIS_KEY_PREFIX: `${env.prefix}stuck:` });
  try {
    const admin = { userId: 'admin', isAdmin: true, isMerchant: false };
    const p = await app.promotions.create(admin, { name: 'stuck', totalStock: 5, endsAt: new Date(Date.now() + 3600_000) });
    let stuck = false;
    // The batch's write (store_coupons) reaches a database that never answers (not a refused connection: a silent network).
    void proxy.interceptOnce((chunk) => chunk.includes('store_coupons('), () => {
      stuck = true;
      return new Promise<never>(() => undefined);
    });
    await app.issuance.issue({ userId: 'waiting', isAdmin: false, isMerchant: false }, p.id);
    await eventually(async () => (stuck ? true : undefined), 10_000, 'the batch stuck in the database');
    const stoppingAt = Date.now();
    await app.stop();
    const took = Date.now() - stoppingAt;
    console.log(`stop with a batch stuck in the database took ${took} ms (SHUTDOWN_TIMEOUT_MS 2000)`);
    expect(took).toBeLessThan(2000);
  } finally {
    await proxy.stop();
  }
});
