import type { FormattedExecutionResult } from 'graphql';
import { print } from 'graphql';
import type { Client } from 'graphql-ws';
import type { RunningApp } from '../../src/app';
import {
  CouponIssuedDocument,
  CreatePromotionDocument,
  EndPromotionDocument,
  IssueCouponDocument,
  PromotionStockDocument,
  type PromotionStockSubscription,
} from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';

/**
 * promotionStock over real WebSockets: anonymous watchers, the current state at once, changes coalesced to
 * STOCK_UPDATES_PER_SECOND per watcher, the final state and completion, NOT_FOUND, and one feed per promotion.
 */

const RATE = 4;

let env: TestEnvironment;
let app: RunningApp;
let admin: string;
const clients: Client[] = [];

beforeAll(async () => {
  env = await createTestEnvironment('promotion_stock');
  // The crowd comes from one loopback address here: the per-address limit on anonymous upgrades is off.
  app = await startTestApp(env, { RATE_LIMIT_ANON_PER_SECOND: '0', STOCK_UPDATES_PER_SECOND: String(RATE) });
  admin = await tokenFor('admin', { admin: true });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await app.stop();
  await env.cleanup();
});

function anonymous(): Client {
  const client = wsClient(app.url, null);
  clients.push(client);
  return client;
}

async function createPromotion(totalStock: number, startsAt?: Date): Promise<string> {
  const input = { name: 'stock test', totalStock, startsAt: startsAt?.toISOString(), endsAt: new Date(Date.now() + 3600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, admin);
  const id = created.body.data?.createPromotion.id;
  if (!id) throw new Error(`createPromotion failed: ${JSON.stringify(created.body.errors)}`);
  return id;
}

type Update = PromotionStockSubscription['promotionStock'];

/** Every message of one watcher with the time it arrived (performance.now()), and how the subscription ended. */
function watch(client: Client, promotionId: string) {
  const messages: { at: number; result: FormattedExecutionResult<PromotionStockSubscription, unknown> }[] = [];
  const done = new Promise<'complete' | { error: unknown }>((resolve) => {
    client.subscribe<PromotionStockSubscription>(
      { query: print(PromotionStockDocument), variables: { promotionId } },
      {
        next: (result) => messages.push({ at: performance.now(), result }),
        error: (error) => resolve({ error }),
        complete: () => resolve('complete'),
      },
    );
  });
  const updates = (): Update[] => messages.map((m) => m.result.data?.promotionStock as Update);
  return { messages, updates, done };
}

async function issueAs(users: string[], promotionId: string): Promise<void> {
  const tokens = await Promise.all(users.map((u) => tokenFor(u)));
  const answers = await Promise.all(tokens.map((t) => httpGraphQL(app.url, IssueCouponDocument, { promotionId }, t)));
  for (const a of answers) expect(a.body.errors).toBeUndefined();
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : Number.NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('When an anonymous client watches an open sale, then it gets the current state at once, while couponIssued answers UNAUTHENTICATED on the same connection', async () => {
  const promotionId = await createPromotion(7);
  const client = anonymous();
  const stock = watch(client, promotionId);
  const issued = record(client, CouponIssuedDocument, { promotionId });

  await eventually(async () => (stock.messages.length >= 1 ? true : undefined), 5000, 'the first message');
  const [first] = stock.updates();
  expect(first).toMatchObject({ promotionId, remainingStock: 7, status: 'ACTIVE' });
  expect(Math.abs(Date.parse(first?.at ?? '') - Date.now())).toBeLessThan(60_000); // a real instant, not a placeholder
  // graphql-ws sends an error raised when a subscription starts as its one result, then completes it.
  expect(await issued.done).toBe('complete');
  expect(issued.results.map((r) => r.errors?.[0]?.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  expect(stock.messages).toHaveLength(1); // nothing changed, nothing more sent; the stock subscription runs on
});

test('When stock changes continuously, then each watcher gets at most STOCK_UPDATES_PER_SECOND updates a second, the latest values, then SOLD_OUT and completion', async () => {
  const total = 60;
  const promotionId = await createPromotion(total);
  const watchers = Array.from({ length: 5 }, () => watch(anonymous(), promotionId));
  await eventually(async () => (watchers.every((w) => w.messages.length >= 1) ? true : undefined), 5000, 'every first message');

  // A coupon every ~25 ms for about 1.5 s: the stock changes far more often than the watchers may hear of it.
  const started = performance.now();
  for (let i = 0; i < total; i++) {
    await issueAs([`rush-${i}`], promotionId);
    const due = started + (i + 1) * 25;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const finished = performance.now();

  for (const w of watchers) {
    expect(await w.done).toBe('complete');
    const updates = w.updates();
    const last = updates[updates.length - 1];
    expect(last).toMatchObject({ promotionId, remainingStock: 0, status: 'SOLD_OUT' });
    // Values only go down (coalesced: never an older value after a newer one) and none repeats.
    for (let i = 1; i < updates.length; i++) {
      expect(updates[i]?.remainingStock).toBeLessThan(updates[i - 1]?.remainingStock as number);
    }
    // The middle messages (not the first, not the final) over the rush: at most RATE a second, counted over
    // every one-second window; one more is allowed for a message delayed on its way and the next on time.
    const middle = w.messages.slice(1, -1).map((m) => m.at);
    for (const start of middle) {
      expect(middle.filter((t) => t >= start && t < start + 1000).length).toBeLessThanOrEqual(RATE + 1);
    }
    // Over the whole rush too: at most RATE per second plus that one.
    expect(middle.length).toBeLessThanOrEqual(Math.ceil(((finished - started) / 1000) * RATE) + 1);
    // And it did change while watched: the coalescing is what kept the count down, not a silent feed.
    expect(middle.length).toBeGreaterThanOrEqual(2);
  }
});

test('When an admin ends a watched promotion, then every watcher gets ENDED and the subscription completes', async () => {
  const promotionId = await createPromotion(10);
  const watchers = [watch(anonymous(), promotionId), watch(anonymous(), promotionId)];
  await eventually(async () => (watchers.every((w) => w.messages.length >= 1) ? true : undefined), 5000, 'every first message');

  const ended = await httpGraphQL(app.url, EndPromotionDocument, { promotionId }, admin);
  expect(ended.body.errors).toBeUndefined();

  for (const w of watchers) {
    expect(await w.done).toBe('complete');
    const updates = w.updates();
    expect(updates[updates.length - 1]).toMatchObject({ promotionId, status: 'ENDED', remainingStock: 10 });
  }
});

test('When a promotion is already sold out or ended, then a watcher gets its state and the subscription completes at once', async () => {
  const soldOut = await createPromotion(2);
  await issueAs(['early-1', 'early-2'], soldOut);
  const ended = await createPromotion(3);
  await httpGraphQL(app.url, EndPromotionDocument, { promotionId: ended }, admin);

  const a = watch(anonymous(), soldOut);
  const b = watch(anonymous(), ended);
  expect(await a.done).toBe('complete');
  expect(await b.done).toBe('complete');
  expect(a.updates()).toEqual([expect.objectContaining({ promotionId: soldOut, remainingStock: 0, status: 'SOLD_OUT' })]);
  expect(b.updates()).toEqual([expect.objectContaining({ promotionId: ended, remainingStock: 3, status: 'ENDED' })]);
});

test('When two watchers send one document of two operations and pick different ones, then each gets the fields of its own', async () => {
  const promotionId = await createPromotion(4);
  const query = `subscription Counter($promotionId: ID!) { promotionStock(promotionId: $promotionId) { remainingStock } }
subscription Status($promotionId: ID!) { promotionStock(promotionId: $promotionId) { status } }`;
  const client = anonymous();
  const first = (operationName: string) =>
    new Promise<unknown>((resolve, reject) => {
      const stop = client.subscribe({ query, operationName, variables: { promotionId } }, {
        next: (result) => {
          resolve(result);
          stop();
        },
        error: reject,
        complete: () => undefined,
      });
    });
  // Subscribed together: both take the feed's same first value.
  const [counter, status] = await Promise.all([first('Counter'), first('Status')]);
  expect(counter).toEqual({ data: { promotionStock: { remainingStock: 4 } } });
  expect(status).toEqual({ data: { promotionStock: { status: 'ACTIVE' } } });
});

test('When the promotion is unknown or its id malformed, then the subscription fails with NOT_FOUND', async () => {
  for (const promotionId of ['00000000-0000-4000-8000-000000000000', 'not-a-promotion-id']) {
    const w = watch(anonymous(), promotionId);
    expect(await w.done).toBe('complete');
    expect(w.messages.map((m) => [m.result.data ?? null, m.result.errors?.map((e) => e.extensions?.code)])).toEqual([[null, ['NOT_FOUND']]]);
  }
});

test('When 200 sockets watch one promotion, then the process runs one feed for it, reads Redis at the configured rate, and counts 200 subscriptions', async () => {
  const promotionId = await createPromotion(50);
  const [subscriptionsBefore, feedsBefore, watchersBefore] = [await metric('ws_subscriptions'), await metric('coupon_stock_feeds'), await metric('coupon_stock_watchers')];
  const watchers = Array.from({ length: 200 }, () => watch(anonymous(), promotionId));
  await eventually(async () => (watchers.every((w) => w.messages.length >= 1) ? true : undefined), 20_000, 'every first message');
  expect(await metric('ws_subscriptions')).toBe(subscriptionsBefore + 200);
  expect(await metric('coupon_stock_feeds')).toBe(feedsBefore + 1);
  expect(await metric('coupon_stock_watchers')).toBe(watchersBefore + 200);

  // Reads over two seconds: each feed reads at most RATE times a second, whatever the number of its watchers
  // (a read per watcher would be 200 times that).
  const readsBefore = await metric('coupon_stock_feed_reads_total');
  const from = performance.now();
  await sleep(2000);
  const reads = (await metric('coupon_stock_feed_reads_total')) - readsBefore;
  const seconds = (performance.now() - from) / 1000;
  expect(reads).toBeGreaterThanOrEqual(1);
  const feeds = feedsBefore + 1; // the other tests' feeds still running read too
  expect(reads).toBeLessThanOrEqual(feeds * (Math.ceil(seconds * RATE) + 1));

  // Once the last watcher leaves, the feed stops (the other tests' watchers leave too).
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await eventually(async () => ((await metric('coupon_stock_feeds')) === 0 ? true : undefined), 10_000, 'the feed stopped');
  expect(await metric('coupon_stock_watchers')).toBe(0);
});
