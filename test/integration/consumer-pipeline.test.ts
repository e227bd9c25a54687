import { Client } from 'pg';
import type { BatchStage, StreamConsumer } from '../../src/consumer/stream-consumer';
import type { Db } from '../../src/db/client';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import { newCouponCode, newCouponId, newRequestId } from '../../src/domain/identifiers';
import type { CouponRepository, FeedEvent, FeedListener } from '../../src/domain/ports';
import type { Coupon, PromotionRecord, QueuedRequest } from '../../src/domain/types';
import { connectRedis, createDedicatedRedis } from '../../src/redis/client';
import { RedisIssuanceEvents } from '../../src/redis/event-bus';
import { encodeIssuance } from '../../src/redis/issuance-codec';
import { CONSUMER_GROUP, RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { openConsumerTestbed, type ConsumerTestbed } from '../helpers/consumer-testbed';
import { createConsumer } from '../helpers/consumers';
import { eventually, type TestEnvironment } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';

/**
 * The consumer's pipeline (batches in hand at once, each acknowledged after its own commit), the one-round-trip
 * store (store_coupons), and the stage observations behind /metrics.
 */

let bed: ConsumerTestbed;
let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let keys: RedisKeys;
let store: RedisReservationStore;
const running: StreamConsumer[] = [];

beforeAll(async () => {
  bed = await openConsumerTestbed('consumer_pipeline');
  ({ env, db, redis, keys, store } = bed);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await redis.del(keys.activePromotions());
});

afterAll(async () => {
  await bed.close();
});

const newPromotion = (totalStock: number) => bed.newPromotion(totalStock, 'pipeline test');

async function queue(p: PromotionRecord, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await store.reserve({ promotionId: p.id, userId: `user-${i}`, requestId: newRequestId(p.id), idempotencyKey: null });
    ids.push(r.requestId as string);
  }
  return ids;
}

const queued = (p: PromotionRecord, requestId: string, userId: string): QueuedRequest => ({
  entryId: '1-1',
  requestId,
  promotionId: p.id,
  userId,
  requestedAt: new Date(Date.now() - 1000),
  position: 1,
});

/** A coupon repository whose writes wait for the test to open the gate, counting how many wait at once. */
class GatedCoupons implements CouponRepository {
  waiting = 0;
  mostAtOnce = 0;
  calls = 0;
  private open!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));

  constructor(private readonly inner: PrismaCouponRepository) {}

  release(): void {
    this.open();
  }

  async persistBatch(requests: QueuedRequest[]): Promise<Coupon[]> {
    this.calls++;
    this.waiting++;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.waiting);
    try {
      await this.gate;
      return await this.inner.persistBatch(requests);
    } finally {
      this.waiting--;
    }
  }

  findByRequestId(requestId: string) {
    return this.inner.findByRequestId(requestId);
  }

  listByUser(userId: string, promotionId: string | null, limit: number, after: string | null) {
    return this.inner.listByUser(userId, promotionId, limit, after);
  }
}

test('When entries keep coming, then batches are stored pipelineDepth at a time, and none is acknowledged before its commit', async () => {
  const p = await newPromotion(60);
  const ids = await queue(p, 60);
  const coupons = new GatedCoupons(new PrismaCouponRepository(db));
  const stages: { stage: BatchStage; entries: number }[] = [];
  const waits: number[] = [];
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    coupons,
    options: { consumerName: 'pipelined', batchSize: 10, pipelineDepth: 2 },
    observer: { stage: (stage, _ms, entries) => stages.push({ stage, entries }), queueWait: (w) => waits.push(...w) },
  });
  consumer.start();
  running.push(consumer);

  await eventually(async () => (coupons.waiting === 2 ? true : undefined), 10_000, 'two batches in hand');
  // Several turns of the loop (blockMs 100, heartbeat 150): no third batch is read while two are in hand.
  await new Promise((r) => setTimeout(r, 500));
  expect(coupons.calls).toBe(2);
  const stream = keys.promotion(p.id).stream;
  expect(await redis.xlen(stream)).toBe(60); // nothing confirmed: confirm deletes the entries it acknowledges
  expect(Number(((await redis.xpending(stream, CONSUMER_GROUP)) as [number])[0])).toBe(20);

  coupons.release();
  await eventually(async () => ((await redis.xlen(stream)) === 0 ? true : undefined), 10_000, 'the queue drained');
  expect(coupons.mostAtOnce).toBe(2);
  expect(await db.coupon.count({ where: { promotionId: p.id } })).toBe(60);
  for (const id of ids) expect(await redis.hget(keys.status(p.id, id), 's')).toBe('ISSUED');
  const total = (stage: BatchStage) => stages.filter((s) => s.stage === stage).reduce((sum, s) => sum + s.entries, 0);
  expect(total('insert')).toBe(60);
  expect(total('confirm')).toBe(60);
  expect(waits).toHaveLength(60);
  expect(Math.min(...waits)).toBeGreaterThanOrEqual(0);
});

describe('store_coupons', () => {
  test('When a batch mixes new, already stored and failed requests, then each stored one gets its coupon as committed, the failed one none', async () => {
    const p = await newPromotion(10);
    const repository = new PrismaCouponRepository(db);
    const [before] = await repository.persistBatch([queued(p, newRequestId(p.id), 'earlier')]);
    const failedId = newRequestId(p.id);
    expect(await new PrismaFailureRepository(db).record({ ...queued(p, failedId, 'failed'), reason: 'test', deliveries: 7 })).toBe('failed');
    const fresh = [queued(p, newRequestId(p.id), 'a'), queued(p, newRequestId(p.id), 'b')];

    const coupons = await repository.persistBatch([queued(p, before?.requestId as string, 'earlier'), queued(p, failedId, 'failed'), ...fresh]);

    expect(coupons.map((c) => c.requestId).sort()).toEqual([before?.requestId, ...fresh.map((r) => r.requestId)].sort());
    const rows = await db.coupon.findMany({ where: { promotionId: p.id } });
    expect(rows).toHaveLength(3);
    for (const coupon of coupons) {
      const row = rows.find((r) => r.requestId === coupon.requestId);
      expect({ id: coupon.id, code: coupon.code, issuedAt: coupon.issuedAt.getTime(), userId: coupon.userId }).toEqual({
        id: row?.id,
        code: row?.code,
        issuedAt: row?.issuedAt.getTime(),
        userId: row?.userId,
      });
    }
    expect(coupons.find((c) => c.requestId === before?.requestId)?.code).toBe(before?.code);
  });

  test('When every request is new, then the coupons it answers with are the rows committed, issuedAt included', async () => {
    const p = await newPromotion(10);
    const requests = Array.from({ length: 5 }, (_, i) => queued(p, newRequestId(p.id), `new-${i}`));
    const coupons = await new PrismaCouponRepository(db).persistBatch(requests);
    const rows = await db.coupon.findMany({ where: { promotionId: p.id } });
    expect(new Map(coupons.map((c) => [c.requestId, [c.id, c.code, c.issuedAt.getTime()]]))).toEqual(
      new Map(rows.map((r) => [r.requestId, [r.id, r.code, r.issuedAt.getTime()]])),
    );
  });

  test('When another consumer commits one of the requests while the batch waits on it, then the batch answers with that coupon', async () => {
    const p = await newPromotion(10);
    const contested = newRequestId(p.id);
    const other = newRequestId(p.id);
    const holder = new Client({ connectionString: env.databaseUrl });
    await holder.connect();
    try {
      const code = newCouponCode();
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO coupons (id, code, promotion_id, user_id, request_id, requested_at, position) VALUES ($1, $2, $3, 'first', $4, now(), 1)`,
        [newCouponId(), code, p.id, contested],
      );
      let settled = false;
      const storing = new PrismaCouponRepository(db)
        .persistBatch([queued(p, contested, 'first'), queued(p, other, 'second')])
        .finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(settled).toBe(false); // waits on the uncommitted row with the same request id
      await holder.query('COMMIT');
      const coupons = await storing;
      expect(coupons.map((c) => c.requestId).sort()).toEqual([contested, other].sort());
      expect(coupons.find((c) => c.requestId === contested)?.code).toBe(code);
    } finally {
      await holder.end();
    }
    expect(await db.coupon.count({ where: { promotionId: p.id } })).toBe(2);
  });

  test('When a failure is being recorded (its lock held), then storing waits, and stores nothing for that request', async () => {
    const p = await newPromotion(10);
    const requestId = newRequestId(p.id);
    const recorder = new Client({ connectionString: env.databaseUrl });
    await recorder.connect();
    try {
      await recorder.query('BEGIN');
      await recorder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [p.id]);
      await recorder.query(
        `INSERT INTO failed_requests (request_id, promotion_id, user_id, position, reason, deliveries, requested_at) VALUES ($1, $2, 'x', 1, 'test', 7, now())`,
        [requestId, p.id],
      );
      let settled = false;
      const storing = new PrismaCouponRepository(db).persistBatch([queued(p, requestId, 'x')]).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(settled).toBe(false);
      await recorder.query('COMMIT');
      expect(await storing).toEqual([]);
    } finally {
      await recorder.end();
    }
    expect(await db.coupon.count({ where: { requestId } })).toBe(0);
  });
});

test('When a confirmation reaches a subscribed feed, then the time it was sent is reported; a message without it reports nothing', async () => {
  const subscriber = createDedicatedRedis(env.redisUrl, 'test-events');
  await connectRedis(subscriber);
  const delivered: number[] = [];
  const events = new RedisIssuanceEvents(subscriber, keys, async () => [], (sentAt) => delivered.push(sentAt));
  try {
    const received: FeedEvent[] = [];
    const listener: FeedListener = { onFeedEvent: (event) => received.push(event) };
    const p = promotionRecord();
    await events.watchUser('alice', p.id, listener);
    const issuance = {
      requestId: newRequestId(p.id),
      promotionId: p.id,
      userId: 'alice',
      status: 'FAILED' as const,
      requestedAt: new Date(),
      coupon: null,
      failureReason: 'test',
    };
    const sentAt = Date.now() - 5;
    await redis.spublish(keys.userChannel(p.id, 'alice'), encodeIssuance(issuance));
    await redis.spublish(keys.userChannel(p.id, 'alice'), encodeIssuance(issuance, sentAt));
    // Published on one connection, in order: once the second is here, the first is too.
    await eventually(async () => (received.length >= 2 ? true : undefined), 5000, 'both messages');
    expect(received).toEqual([
      { kind: 'final', issuance },
      { kind: 'final', issuance },
    ]);
    expect(delivered).toEqual([sentAt]);
    events.unwatchUser('alice', p.id, listener);
  } finally {
    subscriber.disconnect();
  }
});

/** Gives each request's status key the wrong type: confirm.lua then fails on the batch holding it. */
async function breakStatuses(promotionId: string, requestIds: string[]): Promise<void> {
  for (const id of requestIds) {
    await redis.del(keys.status(promotionId, id));
    await redis.set(keys.status(promotionId, id), 'not a hash');
  }
}

test('When two batches in hand fail at once, then each failure is reported, not only the first', async () => {
  const p = await newPromotion(2);
  const ids = await queue(p, 2);
  // A status key of the wrong type makes confirm.lua fail for the batch holding that request.
  await breakStatuses(p.id, ids);
  const coupons = new GatedCoupons(new PrismaCouponRepository(db));
  const errors: unknown[] = [];
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    coupons,
    // One entry a batch, two in hand and room for a third, so the loop waits in a blocking read while both fail;
    // no recovery pass during the test (the first one runs at start).
    options: { consumerName: 'two-failures', batchSize: 1, pipelineDepth: 3, blockMs: 2000, heartbeatMs: 60_000, deadAfterMs: 120_000 },
    observer: { error: (e) => errors.push(e) },
  });
  consumer.start();
  running.push(consumer);
  await eventually(async () => (coupons.waiting === 2 ? true : undefined), 10_000, 'two batches in hand');

  coupons.release();
  await eventually(async () => (errors.length >= 2 ? true : undefined), 5000, 'both failures reported');
  expect(errors.every((e) => String(e).includes('WRONGTYPE'))).toBe(true);
  expect(await db.coupon.count({ where: { promotionId: p.id } })).toBe(2); // committed, not acknowledged: pending
  expect(Number(((await redis.xpending(keys.promotion(p.id).stream, CONSUMER_GROUP)) as [number])[0])).toBe(2);
});

test('When batches in hand fail and leave more than one batch of entries pending, then the next recovery pass stores them all', async () => {
  const p = await newPromotion(15);
  const ids = await queue(p, 15);
  // A status key of the wrong type makes confirm.lua fail: three batches of five are stored, then left pending.
  await breakStatuses(p.id, ids);
  const errors: unknown[] = [];
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    options: { consumerName: 'leftovers', batchSize: 5, pipelineDepth: 3, heartbeatMs: 6000, deadAfterMs: 15_000 },
    observer: { error: (e) => errors.push(e) },
  });
  consumer.start();
  running.push(consumer);
  // At least two batches stored and failed their confirm (the third may not have been started when the loop
  // stopped on the first error, and a pass stops at the first page that fails while Redis is still broken).
  await eventually(async () => ((await db.coupon.count({ where: { promotionId: p.id } })) >= 10 ? true : undefined), 10_000, 'two batches stored');
  await eventually(async () => (errors.length >= 2 ? true : undefined), 10_000, 'their confirms failing');
  const stream = keys.promotion(p.id).stream;
  expect(await redis.xlen(stream)).toBe(15); // none confirmed: all pending with this consumer
  for (const id of ids) await redis.del(keys.status(p.id, id)); // Redis is well again

  await eventually(async () => ((await redis.xlen(stream)) < 15 ? true : undefined), 15_000, 'a recovery pass');
  // The pass that took some of them back takes them all, well before the next one (6 s after it began).
  await eventually(async () => ((await redis.xlen(stream)) === 0 ? true : undefined), 4000, 'that pass to take every page back');
  expect(await db.coupon.count({ where: { promotionId: p.id } })).toBe(15);
  for (const id of ids) expect(await redis.hget(keys.status(p.id, id), 's')).toBe('ISSUED');
});

test('When a recovery pass comes while a batch is in hand, then new entries are still read meanwhile', async () => {
  const p = await newPromotion(20);
  await queue(p, 10);
  const coupons = new GatedCoupons(new PrismaCouponRepository(db));
  const consumer = await createConsumer({
    redisUrl: env.redisUrl,
    redis,
    keys,
    db,
    coupons,
    options: { consumerName: 'passing', batchSize: 10, pipelineDepth: 3 },
  });
  consumer.start();
  running.push(consumer);

  await eventually(async () => (coupons.waiting === 1 ? true : undefined), 10_000, 'the first batch in hand');
  // Past a few heartbeats (150 ms), so recovery passes come while that batch is still held at the gate.
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < 10; i++) {
    const r = await store.reserve({ promotionId: p.id, userId: `later-${i}`, requestId: newRequestId(p.id), idempotencyKey: null });
    expect(r.outcome).toBe('QUEUED');
  }
  try {
    await eventually(async () => (coupons.waiting >= 2 ? true : undefined), 10_000, 'a batch read while the first is in hand');
  } finally {
    coupons.release(); // else stopping would wait for the held batch
  }

  const stream = keys.promotion(p.id).stream;
  await eventually(async () => ((await redis.xlen(stream)) === 0 ? true : undefined), 10_000, 'the queue drained');
  expect(await db.coupon.count({ where: { promotionId: p.id } })).toBe(20);
});
