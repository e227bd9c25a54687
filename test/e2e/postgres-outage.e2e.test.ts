import type { RunningApp } from '../../src/app';
import { CouponIssuedDocument, CreatePromotionDocument, IssueCouponDocument, PromotionDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { expectAuditHolds } from '../helpers/audit';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/**
 * PostgreSQL goes away mid-sale (a real network cut in front of it): the service stops being ready,
 * keeps answering issueCoupon from Redis, and stores and confirms every queued coupon once it is back.
 */

let env: TestEnvironment;
let app: RunningApp;
let proxy: TcpProxy;

beforeAll(async () => {
  env = await createTestEnvironment('pg_outage');
  proxy = new TcpProxy(new URL(env.databaseUrl).hostname, Number(new URL(env.databaseUrl).port || 5432));
  await proxy.start();
  app = await startTestApp(env, { DATABASE_URL: proxy.via(env.databaseUrl), CONSUMER_MAX_BACKOFF_MS: '200' });
});

afterAll(async () => {
  await proxy.restore();
  await app.stop();
  await proxy.stop();
  await env.cleanup();
});

test('When PostgreSQL is unreachable, then /readyz is 503, issueCoupon still answers, and every QUEUED is issued once it is back', async () => {
  const admin = await tokenFor('admin', { admin: true });
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'outage', totalStock: 30, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, admin);
  const promotionId = created.body.data?.createPromotion.id as string;
  const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => tokenFor(`buyer-${i}`)));
  const socket = wsClient(app.url, tokens[0]);
  const feed = record(socket, CouponIssuedDocument, { promotionId });

  await proxy.cut();

  const ready = await fetch(`${app.url}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ status: 'not ready', redis: 'ok', postgres: expect.not.stringMatching(/^ok$/) });
  // buyer-0, who is watching, goes first; then everyone else at once.
  const first = await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, tokens[0]);
  const answers = [first, ...(await Promise.all(tokens.slice(1).map((t) => httpGraphQL(app.url, IssueCouponDocument, { promotionId }, t))))];
  const outcomes = answers.map((a) => a.body.data?.issueCoupon.outcome);
  expect(outcomes.filter((o) => o === 'QUEUED')).toHaveLength(30);
  expect(outcomes.filter((o) => o === 'SOLD_OUT')).toHaveLength(10);
  expect(feed.results).toEqual([]); // nothing confirmed while nothing can be stored

  await proxy.restore();

  const promotion = await eventually(async () => {
    const r = await httpGraphQL(app.url, PromotionDocument, { id: promotionId });
    return r.body.data?.promotion?.issuedCount === 30 ? r.body.data.promotion : undefined;
  }, 30_000, '30 coupons stored');
  expect(promotion).toMatchObject({ totalStock: 30, remainingStock: 0, issuedCount: 30 });
  const buyer0 = first.body.data?.issueCoupon;
  expect(buyer0?.outcome).toBe('QUEUED');
  await eventually(async () => (feed.results.length > 0 ? true : undefined), 10_000, "buyer-0's confirmation");
  expect(feed.results).toEqual([{ data: { couponIssued: expect.objectContaining({ requestId: buyer0?.requestId, status: 'ISSUED' }) } }]);
  expect((await fetch(`${app.url}/readyz`)).status).toBe(200);
  await socket.dispose();
  await expectAuditHolds((id) => app.audit.check(id), promotionId);
});
