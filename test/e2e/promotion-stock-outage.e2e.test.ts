import { print, type FormattedExecutionResult } from 'graphql';
import type { Client } from 'graphql-ws';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument, IssueCouponDocument, PromotionStockDocument, type PromotionStockSubscription } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { TcpProxy } from '../helpers/tcp-proxy';

/** promotionStock while Redis is unreachable: a new watcher is told SERVICE_UNAVAILABLE; a running one waits. */

let env: TestEnvironment;
let app: RunningApp;
let redisProxy: TcpProxy;
let admin: string;
const clients: Client[] = [];

beforeAll(async () => {
  env = await createTestEnvironment('promotion_stock_outage');
  const redisUrl = new URL(env.redisUrl);
  redisProxy = new TcpProxy(redisUrl.hostname, Number(redisUrl.port || 6379));
  await redisProxy.start();
  app = await startTestApp(env, { REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`, RATE_LIMIT_ANON_PER_SECOND: '0' });
  admin = await tokenFor('admin', { admin: true });
});

afterAll(async () => {
  await redisProxy.restore();
  await Promise.all(clients.map((c) => c.dispose()));
  await app?.stop();
  await redisProxy?.stop();
  await env.cleanup();
});

async function createPromotion(): Promise<string> {
  const input = { name: 'outage', totalStock: 5, endsAt: new Date(Date.now() + 3600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, admin);
  return created.body.data?.createPromotion.id as string;
}

function watch(promotionId: string) {
  const client = wsClient(app.url, null);
  clients.push(client);
  const results: FormattedExecutionResult<PromotionStockSubscription, unknown>[] = [];
  let ended = false;
  client.subscribe<PromotionStockSubscription>(
    { query: print(PromotionStockDocument), variables: { promotionId } },
    { next: (r) => results.push(r), error: () => (ended = true), complete: () => (ended = true) },
  );
  return { results, ended: () => ended };
}

test('When Redis is unreachable, then a new watcher gets SERVICE_UNAVAILABLE, a running one keeps waiting and gets the next change once Redis is back', async () => {
  const watched = await createPromotion();
  const other = await createPromotion();
  const running = watch(watched);
  await eventually(async () => (running.results.length === 1 ? true : undefined), 5000, 'the first message');

  await redisProxy.cut();
  const late = watch(other);
  await eventually(async () => (late.ended() ? true : undefined), 15_000, 'the late watcher answered');
  expect(late.results.map((r) => r.errors?.[0]?.extensions?.code)).toEqual(['SERVICE_UNAVAILABLE']);
  await new Promise((r) => setTimeout(r, 1000)); // several failed ticks of the running feed
  expect(running.ended()).toBe(false);
  expect(running.results).toHaveLength(1);

  await redisProxy.restore();
  const shopper = await tokenFor('shopper');
  await eventually(async () => {
    const answer = await httpGraphQL(app.url, IssueCouponDocument, { promotionId: watched }, shopper);
    return answer.body.data?.issueCoupon.outcome === 'QUEUED' ? true : undefined;
  }, 20_000, 'issueCoupon once Redis is back');
  await eventually(async () => (running.results.length === 2 ? true : undefined), 10_000, 'the change after the outage');
  expect(running.results[1]?.data?.promotionStock).toMatchObject({ remainingStock: 4, status: 'ACTIVE' });
  expect(running.ended()).toBe(false);
});
