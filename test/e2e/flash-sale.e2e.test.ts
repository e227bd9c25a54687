import type { RunningApp } from '../../src/app';
import {
  CouponIssuedDocument,
  CreatePromotionDocument,
  IssueCouponDocument,
  MyCouponsDocument,
  PromotionDocument,
  type IssueCouponMutation,
} from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, record, tokenFor, wsClient, type Recorded } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import type { Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import { RedisKeys } from '../../src/redis/keys';

/**
 * The flash sale, end to end over real HTTP and WebSocket: 2,000 concurrent issueCoupon calls from
 * 1,500 users (500 of them twice) for 500 coupons. Exactly 500 QUEUED, exactly 500 rows, and every
 * QUEUED confirmed exactly once on a subscription opened before the sale.
 */

const STOCK = Number(process.env.FS_STOCK ?? 500);
const USERS = Number(process.env.FS_USERS ?? 1500);
const REPEATERS = Number(process.env.FS_REPEATERS ?? 500);

let env: TestEnvironment;
let app: RunningApp;
const sockets: Client[] = [];

beforeAll(async () => {
  env = await createTestEnvironment('flash_sale');
  // Here the whole crowd connects from one loopback address; in a sale it comes from many, so the
  // per-address limit on anonymous traffic (WebSocket upgrades included) is off for this test only.
  app = await startTestApp(env, { RATE_LIMIT_ANON_PER_SECOND: '0' });
});

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.dispose()));
  await app.stop();
  await env.cleanup();
});

test('When 2,000 requests race for 500 coupons, then exactly 500 are queued, stored and confirmed once each', async () => {
  // Arrange: the promotion, and every user listening for their confirmations before the sale opens.
  const admin = await tokenFor('admin', { admin: true });
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'Noon flash sale', totalStock: STOCK, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, admin);
  const promotionId = created.body.data?.createPromotion.id as string;
  expect(promotionId).toBeDefined();

  const users = Array.from({ length: USERS }, (_, i) => `shopper-${i}`);
  const tokens = new Map(await Promise.all(users.map(async (u) => [u, await tokenFor(u)] as const)));
  const feeds = new Map<string, Recorded<unknown>>();
  for (const user of users) {
    const client = wsClient(app.url, tokens.get(user));
    sockets.push(client);
    feeds.set(user, record(client, CouponIssuedDocument, { promotionId }));
  }
  // A feed is live once the server has subscribed its user's Redis channel: wait for all of them.
  const keys = new RedisKeys(env.prefix);
  const probe = new Redis(env.redisUrl);
  await eventually(async () => {
    const counts = (await probe.call('PUBSUB', 'SHARDNUMSUB', ...users.map((u) => keys.userChannel(promotionId, u)))) as (string | number)[];
    return counts.filter((_, i) => i % 2 === 1).every((n) => Number(n) >= 1) ? true : undefined;
  }, 30_000, 'every subscription live');
  probe.disconnect();

  // Act: 2,000 concurrent calls; the first 500 users call twice.
  const calls = [...users, ...users.slice(0, REPEATERS)].map((user) =>
    httpGraphQL(app.url, IssueCouponDocument, { promotionId }, tokens.get(user)).then((r) => ({ user, r })),
  );
  const results = await Promise.all(calls);

  // Assert: the answers.
  for (const { r } of results) expect(r.body.errors).toBeUndefined();
  const payloads = results.map(({ user, r }) => ({ user, p: r.body.data?.issueCoupon as IssueCouponMutation['issueCoupon'] }));
  const queued = payloads.filter(({ p }) => p.outcome === 'QUEUED');
  expect(queued).toHaveLength(STOCK);
  expect(new Set(queued.map(({ user }) => user)).size).toBe(STOCK); // nobody got two
  expect(new Set(queued.map(({ p }) => p.position))).toEqual(new Set(Array.from({ length: STOCK }, (_, i) => i + 1)));
  const others = payloads.filter(({ p }) => p.outcome !== 'QUEUED').map(({ p }) => p.outcome);
  expect(new Set(others)).toEqual(new Set(['SOLD_OUT', 'ALREADY_REQUESTED']));

  // Assert: the rows, and the invariant remaining + stored = total once the queue has drained.
  const promotion = await eventually(async () => {
    const r = await httpGraphQL(app.url, PromotionDocument, { id: promotionId });
    return r.body.data?.promotion?.issuedCount === STOCK ? r.body.data.promotion : undefined;
  }, 30_000, '500 coupons stored');
  expect(promotion).toMatchObject({ totalStock: STOCK, remainingStock: 0, issuedCount: STOCK, status: 'SOLD_OUT' });

  // Assert: each QUEUED request confirmed exactly once, to its own user, and nothing else confirmed.
  const queuedIds = new Set(queued.map(({ p }) => p.requestId as string));
  await eventually(async () => {
    const seen = [...feeds.values()].reduce((n, f) => n + f.results.length, 0);
    return seen >= STOCK ? true : undefined;
  }, 30_000, '500 confirmations');
  const confirmations = [...feeds.entries()].flatMap(([user, feed]) =>
    feed.results.map((result) => ({ user, issuance: (result.data as { couponIssued: { requestId: string; userId: string; status: string; coupon: { code: string } | null } }).couponIssued })),
  );
  expect(confirmations).toHaveLength(STOCK);
  expect(new Set(confirmations.map((c) => c.issuance.requestId))).toEqual(queuedIds);
  for (const { user, issuance } of confirmations) {
    expect(issuance.userId).toBe(user);
    expect(issuance.status).toBe('ISSUED');
    expect(issuance.coupon?.code).toMatch(/^[A-HJ-NP-Z2-9]{16}$/);
  }

  // And a winner sees the same coupon in myCoupons.
  const winner = queued[0] as (typeof queued)[number];
  const mine = await httpGraphQL(app.url, MyCouponsDocument, { promotionId }, tokens.get(winner.user));
  const confirmation = confirmations.find((c) => c.user === winner.user);
  expect(mine.body.data?.myCoupons).toEqual([expect.objectContaining({ requestId: winner.p.requestId, code: confirmation?.issuance.coupon?.code })]);
});
