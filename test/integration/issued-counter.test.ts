import type { RunningApp } from '../../src/app';
import { createDb, type Db } from '../../src/db/client';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { newRequestId } from '../../src/domain/identifiers';
import { PromotionService } from '../../src/domain/promotion-service';
import type { Coupon, PromotionRecord, QueuedRequest } from '../../src/domain/types';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { RedisStreamQueue } from '../../src/redis/stream-queue';
import { startTestApp } from '../helpers/app';
import { createTestEnvironment, deleteKeys, eventually, type TestEnvironment } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';

/**
 * issuedCount comes from a counter in Redis (the promotion's slot), raised by confirm.lua once per transition to
 * ISSUED and set from PostgreSQL whenever the state is built, so reading a promotion counts no rows.
 */

let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let keys: RedisKeys;
let store: RedisReservationStore;
let repository: PrismaPromotionRepository;

/** The real repository, with a tally of the row counts asked of PostgreSQL. */
class CountingRepository extends PrismaPromotionRepository {
  counted = 0;
  override async issuedCounts(ids: string[]): Promise<Map<string, number>> {
    this.counted++;
    return super.issuedCounts(ids);
  }
}

const admin = { userId: 'admin', isAdmin: true, isMerchant: false };
const user = (userId: string) => ({ userId, isAdmin: false, isMerchant: false });
const clock = { now: () => new Date() };

beforeAll(async () => {
  env = await createTestEnvironment('issued_counter');
  db = createDb(env.databaseUrl);
  redis = createRedis(env.redisUrl, 'test-commands');
  await connectRedis(redis);
  keys = new RedisKeys(env.prefix);
  store = new RedisReservationStore(redis, keys);
  repository = new PrismaPromotionRepository(db);
});

afterAll(async () => {
  redis.disconnect();
  await db.$disconnect();
  await env.cleanup();
});

const counter = async (promotionId: string) => redis.get(keys.promotion(promotionId).issued);

describe('the issued counter and the confirm script', () => {
  let promotion: PromotionRecord;
  let queue: RedisStreamQueue;

  beforeAll(async () => {
    promotion = promotionRecord({ totalStock: 5 });
    await repository.create(promotion);
    await store.setupPromotion(promotion, 0);
    queue = new RedisStreamQueue(redis, null, keys, 3600_000);
  });

  /** A real reservation, as the consumer would read it from the stream. */
  async function reserve(userId: string): Promise<QueuedRequest> {
    const { requestId } = await store.reserve({ promotionId: promotion.id, userId, requestId: newRequestId(promotion.id), idempotencyKey: null });
    const entries = await redis.xrange(keys.promotion(promotion.id).stream, '-', '+');
    const entry = entries.find(([, fields]) => fields.includes(requestId as string));
    if (!entry) throw new Error('no stream entry');
    return { entryId: entry[0], requestId: requestId as string, promotionId: promotion.id, userId, requestedAt: new Date(), position: 0 };
  }

  const couponOf = (request: QueuedRequest): Coupon => ({
    id: '00000000-0000-4000-8000-000000000001',
    code: 'ABCDEFGHJKLMNPQR',
    promotionId: request.promotionId,
    userId: request.userId,
    requestId: request.requestId,
    requestedAt: request.requestedAt,
    issuedAt: new Date(),
  });

  test('When a promotion is set up, then its counter starts at the count given (PostgreSQL\'s)', async () => {
    expect(await counter(promotion.id)).toBe('0');
  });

  test('When a request is confirmed twice (a redelivered batch), then it is counted once', async () => {
    const request = await reserve('alice');
    await queue.confirm(promotion.id, [{ request, coupon: couponOf(request) }]);
    expect(await counter(promotion.id)).toBe('1');
    await queue.confirm(promotion.id, [{ request, coupon: couponOf(request) }]);
    expect(await counter(promotion.id)).toBe('1');
  });

  test('When a request ends FAILED, then it is not counted, not even by a late confirm', async () => {
    const request = await reserve('bob');
    expect(await queue.fail(request, 'test failure')).toBe(true);
    expect(await counter(promotion.id)).toBe('1');
    await queue.confirm(promotion.id, [{ request, coupon: couponOf(request) }]);
    expect(await counter(promotion.id)).toBe('1');
  });

  test('When one batch confirms several requests, then each is counted', async () => {
    const requests = [await reserve('carol'), await reserve('dave')];
    await queue.confirm(promotion.id, requests.map((request) => ({ request, coupon: couponOf(request) })));
    expect(await counter(promotion.id)).toBe('3');
  });

  test('When requests are in flight or the counter moved since it was read, then settling waits; with neither, it sets PostgreSQL\'s count', async () => {
    const p = promotionRecord({ totalStock: 5 });
    await repository.create(p);
    await store.setupPromotion(p, 0, undefined, 0, true); // a rebuild: the counter awaits its check
    const k = keys.promotion(p.id);
    expect(await redis.hget(k.meta, 'recount')).toBe('1');
    await store.reserve({ promotionId: p.id, userId: 'inflight', requestId: newRequestId(p.id), idempotencyKey: null });
    expect(await store.settleIssuedCount(p.id, 0, 7)).toBe('later'); // one request in the stream
    await redis.del(k.stream);
    expect(await store.settleIssuedCount(p.id, 3, 7)).toBe('later'); // the counter is 0, not the 3 read
    expect(await store.settleIssuedCount(p.id, 0, 7)).toBe('settled');
    expect(await redis.get(k.issued)).toBe('7');
    expect(await store.settleIssuedCount(p.id, 7, 9)).toBe('nothing'); // settled once: later counts change nothing
    expect(await redis.get(k.issued)).toBe('7');
  });

  test('When a batch Redis lost is confirmed after the counter was settled, then the counter is flagged and the next settle brings it back to PostgreSQL\'s count', async () => {
    // Rebuilt after a loss: PostgreSQL holds 1 coupon, committed by a consumer from a batch read before the loss.
    const p = promotionRecord({ totalStock: 5 });
    await repository.create(p);
    await store.setupPromotion(p, 1, undefined, 1, true);
    expect(await store.settleIssuedCount(p.id, 1, 1)).toBe('settled');
    // That consumer now confirms its batch: the request's status hash went with the loss.
    const lost: QueuedRequest = { entryId: '1-1', requestId: newRequestId(p.id), promotionId: p.id, userId: 'lost', requestedAt: new Date(), position: 1 };
    await queue.confirm(p.id, [{ request: lost, coupon: couponOf(lost) }]);
    const state = (await store.liveStates([p.id])).get(p.id);
    expect(state?.recountIssued).toBe(true);
    expect(await store.settleIssuedCount(p.id, state?.issuedCount ?? null, 1)).toBe('settled');
    expect(await counter(p.id)).toBe('1');
  });

  test('When the counter is missing, then a confirm does not start it from 0 (readers count the rows until it is set)', async () => {
    await redis.del(keys.promotion(promotion.id).issued);
    const request = await reserve('erin');
    await queue.confirm(promotion.id, [{ request, coupon: couponOf(request) }]);
    expect(await counter(promotion.id)).toBeNull();
  });
});

describe('issuedCount through the service', () => {
  let app: RunningApp;

  beforeAll(async () => {
    // Reconciliation runs when the test says so (and once at start), not on its own in between.
    app = await startTestApp(env, { RECONCILE_INTERVAL_MS: '3600000' });
  });

  afterAll(async () => {
    await app.stop();
  });

  test('When coupons are issued, then promotion(id) shows them from the counter and counts no rows in PostgreSQL; after Redis loses it, the rebuild sets it from PostgreSQL', async () => {
    const p = await app.promotions.create(admin, { name: 'counted', totalStock: 10, endsAt: new Date(Date.now() + 3600_000) });
    for (const name of ['u1', 'u2', 'u3', 'u4']) expect((await app.issuance.issue(user(name), p.id)).outcome).toBe('QUEUED');
    await eventually(async () => ((await repository.issuedCounts([p.id])).get(p.id) === 4 ? true : undefined), 15_000, 'four rows stored');
    await eventually(async () => ((await counter(p.id)) === '4' ? true : undefined), 15_000, 'four counted');

    // Reading: the real repository and Redis, and a tally of row counts.
    const counting = new CountingRepository(db);
    const service = new PromotionService(counting, store, clock);
    expect(await service.get(p.id)).toMatchObject({ issuedCount: 4, remainingStock: 6 });
    expect((await service.list(null, 20)).find((v) => v.id === p.id)).toMatchObject({ issuedCount: 4 });
    expect(counting.counted).toBe(0);

    // The counter alone lost (state built before it existed): PostgreSQL answers, and reconciliation sets it.
    await redis.del(keys.promotion(p.id).issued);
    expect(await service.get(p.id)).toMatchObject({ issuedCount: 4 });
    expect(counting.counted).toBe(1);
    const report = await app.promotions.reconcile();
    expect(report.fixed).toContainEqual({ promotionId: p.id, fix: 'issued counter set from PostgreSQL' });
    expect(await counter(p.id)).toBe('4');

    // Redis loses everything: the rebuild sets the counter from PostgreSQL, and it counts on from there.
    await deleteKeys(env.redisUrl, env.prefix);
    await app.promotions.reconcile();
    expect(await counter(p.id)).toBe('4');

    // A batch confirmed again after the rebuild (its status lost with Redis, its row counted by the rebuild)
    // counts twice: the next pass, with nothing in flight, settles the counter on PostgreSQL's count, once.
    await redis.incr(keys.promotion(p.id).issued);
    expect((await store.liveStates([p.id])).get(p.id)).toMatchObject({ issuedCount: 5, recountIssued: true });
    const settled = await app.promotions.reconcile();
    expect(settled.fixed).toContainEqual({ promotionId: p.id, fix: 'issued counter settled from PostgreSQL' });
    expect(await counter(p.id)).toBe('4');
    expect((await store.liveStates([p.id])).get(p.id)).toMatchObject({ issuedCount: 4, recountIssued: false });
    expect((await app.promotions.reconcile()).fixed.filter((f) => f.promotionId === p.id)).toEqual([]);
    expect((await app.issuance.issue(user('u5'), p.id)).outcome).toBe('QUEUED');
    await eventually(async () => ((await counter(p.id)) === '5' ? true : undefined), 15_000, 'the new coupon counted');
    expect(await service.get(p.id)).toMatchObject({ issuedCount: 5, remainingStock: 5 });
    expect(counting.counted).toBe(1);
  });
});
