import { createDb, type Db } from '../../src/db/client';
import { PrismaCouponRepository } from '../../src/db/coupon-repository';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import { PrismaPromotionRepository } from '../../src/db/promotion-repository';
import { IssuanceService } from '../../src/domain/issuance-service';
import type { Issuance } from '../../src/domain/types';
import { connectRedis, createDedicatedRedis, createRedis } from '../../src/redis/client';
import { RedisIssuanceEvents } from '../../src/redis/event-bus';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { createConsumer } from '../helpers/consumers';
import { promotionRecord } from '../helpers/fixtures';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/** The server's own pub/sub connection drops while a confirmation is published: the watcher still gets it. */

let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let subscriber: ScriptedRedis;
let proxy: TcpProxy;

beforeAll(async () => {
  env = await createTestEnvironment('event_bus');
  db = createDb(env.databaseUrl);
  redis = createRedis(env.redisUrl, 'test-commands');
  proxy = new TcpProxy(new URL(env.redisUrl).hostname, Number(new URL(env.redisUrl).port || 6379));
  await proxy.start();
  subscriber = createDedicatedRedis(proxy.via(env.redisUrl), 'test-events');
  await Promise.all([connectRedis(redis), connectRedis(subscriber)]);
});

afterAll(async () => {
  await proxy.restore();
  subscriber.disconnect();
  redis.disconnect();
  await proxy.stop();
  await db.$disconnect();
  await env.cleanup();
});

test('When the subscriber connection is down while a request is confirmed, then couponIssued(requestId) still delivers it', async () => {
  const keys = new RedisKeys(env.prefix);
  const reservations = new RedisReservationStore(redis, keys);
  const coupons = new PrismaCouponRepository(db);
  const service = new IssuanceService(reservations, coupons, new PrismaFailureRepository(db), new RedisIssuanceEvents(subscriber, keys, () => redis.smembers(keys.activePromotions())));
  const promotion = promotionRecord({ name: 'gap', totalStock: 3 });
  await new PrismaPromotionRepository(db).create(promotion);
  await reservations.setupPromotion(promotion, 0);
  const alice = { userId: 'alice', isAdmin: false, isMerchant: false };
  const { requestId } = await service.issue(alice, promotion.id);
  const watch = (await service.watch(alice, { requestId }))[Symbol.asyncIterator]();
  const first = watch.next();

  await proxy.cut(); // the service's pub/sub connection is gone; ioredis keeps trying to reconnect
  const consumer = await createConsumer({ redisUrl: env.redisUrl, redis, keys, db, coupons });
  consumer.start();
  // Stored, ISSUED, published to nobody.
  await eventually(async () => ((await reservations.issuance(requestId as string))?.status === 'ISSUED' ? true : undefined), 15_000, 'ISSUED');
  await consumer.stop();
  await proxy.restore();

  const timeout = new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 15_000).unref());
  const delivered = await Promise.race([first, timeout]);
  expect(delivered).not.toBe('timed out');
  expect((delivered as IteratorResult<Issuance>).value).toMatchObject({ requestId, status: 'ISSUED', userId: 'alice' });
  expect(await watch.next()).toEqual({ value: undefined, done: true });
});

test('When the subscriber connection is down while a request is confirmed, then couponIssued(promotionId) reads it again and delivers it once', async () => {
  const keys = new RedisKeys(env.prefix);
  const reservations = new RedisReservationStore(redis, keys);
  const coupons = new PrismaCouponRepository(db);
  const events = new RedisIssuanceEvents(subscriber, keys, () => redis.smembers(keys.activePromotions()));
  const service = new IssuanceService(reservations, coupons, new PrismaFailureRepository(db), events);
  const promotion = promotionRecord({ name: 'live gap', totalStock: 3, perUserLimit: 2 });
  await new PrismaPromotionRepository(db).create(promotion);
  await reservations.setupPromotion(promotion, 0);
  const bob = { userId: 'bob', isAdmin: false, isMerchant: false };
  const feed = (await service.watch(bob, { promotionId: promotion.id }))[Symbol.asyncIterator]();
  const first = feed.next();

  await proxy.cut();
  const { requestId } = await service.issue(bob, promotion.id);
  const consumer = await createConsumer({ redisUrl: env.redisUrl, redis, keys, db, coupons });
  consumer.start();
  await eventually(async () => ((await reservations.issuance(requestId as string))?.status === 'ISSUED' ? true : undefined), 15_000, 'ISSUED');
  await proxy.restore();

  expect((await first).value).toMatchObject({ requestId, status: 'ISSUED', userId: 'bob' });
  // Another gap reads the same request again: not sent twice, the next one is the next request.
  events.signalGap();
  const { requestId: second } = await service.issue(bob, promotion.id);
  expect((await feed.next()).value).toMatchObject({ requestId: second, status: 'ISSUED' });
  await consumer.stop();
  await feed.return?.();
});
