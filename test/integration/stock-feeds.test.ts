import { newRequestId } from '../../src/domain/identifiers';
import { StockFeeds, type StockUpdate } from '../../src/domain/stock-feeds';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { RedisReservationStore } from '../../src/redis/reservation-store';
import type { ScriptedRedis } from '../../src/redis/scripts';
import { deleteKeys, eventually, TEST_REDIS_URL } from '../helpers/environment';
import { promotionRecord } from '../helpers/fixtures';

/**
 * The promotionStock feeds on real Redis: one feed per promotion whatever the number of watchers, a slow
 * watcher holding the latest value only, and the feed stopping with its last watcher.
 */

const TICK_MS = 100;
const prefix = `test:stock_feeds_${process.pid}_${Date.now()}:`;
let redis: ScriptedRedis;
let store: RedisReservationStore;
let feeds: StockFeeds;
let reads = 0;

beforeAll(async () => {
  redis = createRedis(TEST_REDIS_URL, 'test-commands');
  await connectRedis(redis);
  store = new RedisReservationStore(redis, new RedisKeys(prefix));
  const clock = { now: () => new Date() };
  feeds = new StockFeeds(async (id) => (await store.liveStates([id])).get(id), clock, TICK_MS, { read: () => reads++, readFailed: () => undefined });
});

afterAll(async () => {
  feeds.close();
  redis.disconnect();
  await deleteKeys(TEST_REDIS_URL, prefix);
});

async function openPromotion(totalStock: number): Promise<string> {
  const p = promotionRecord({ totalStock, perUserLimit: 1 });
  await store.setupPromotion(p, 0);
  return p.id;
}

const reserve = (promotionId: string, userId: string) =>
  store.reserve({ promotionId, userId, requestId: newRequestId(promotionId), idempotencyKey: null });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('When 1,000 watchers subscribe to one promotion at once, then they share one feed and one first read, and the feed reads once a tick', async () => {
  const promotionId = await openPromotion(100);
  const before = reads;
  const watchers = await Promise.all(Array.from({ length: 1000 }, () => feeds.watch(promotionId)));
  expect(reads - before).toBe(1);
  expect(feeds.feedCount).toBe(1);
  expect(feeds.watcherCount).toBe(1000);
  const firsts = await Promise.all(watchers.map((w) => w.next()));
  for (const first of firsts) expect(first.value).toMatchObject({ promotionId, remainingStock: 100, status: 'ACTIVE' });

  const from = reads;
  const started = performance.now();
  await sleep(10 * TICK_MS);
  const elapsed = performance.now() - started;
  expect(reads - from).toBeLessThanOrEqual(Math.ceil(elapsed / TICK_MS) + 1);
  expect(reads - from).toBeGreaterThanOrEqual(1);

  await Promise.all(watchers.map((w) => w.return?.()));
  expect(feeds.feedCount).toBe(0);
  const stopped = reads;
  await sleep(3 * TICK_MS);
  expect(reads).toBe(stopped); // no watcher, no reads
});

test('When a watcher does not read while the stock changes many times, then it gets only the latest value, then waits', async () => {
  const promotionId = await openPromotion(20);
  const watcher = await feeds.watch(promotionId);
  expect((await watcher.next()).value).toMatchObject({ remainingStock: 20 });

  // Five changes over several ticks while the watcher reads nothing.
  for (let i = 0; i < 5; i++) {
    await reserve(promotionId, `slow-${i}`);
    await sleep(TICK_MS * 1.5);
  }
  await eventually(async () => ((await store.liveStates([promotionId])).get(promotionId)?.remainingStock === 15 ? true : undefined), 2000);
  await sleep(TICK_MS * 2); // the feed has read the last value

  const latest = await watcher.next();
  expect(latest.value).toMatchObject({ remainingStock: 15, status: 'ACTIVE' });
  // Nothing older was kept for it: the next read waits for a change that does not come.
  const next = watcher.next();
  const outcome = await Promise.race([next.then(() => 'value'), sleep(4 * TICK_MS).then(() => 'waiting')]);
  expect(outcome).toBe('waiting');

  await reserve(promotionId, 'late');
  expect((await next).value).toMatchObject({ remainingStock: 14 });
  await watcher.return?.();
});

test('When the last units go while a watcher is behind, then it still gets the final SOLD_OUT and completes', async () => {
  const promotionId = await openPromotion(2);
  const watcher = await feeds.watch(promotionId);
  expect((await watcher.next()).value).toMatchObject({ remainingStock: 2 });
  await reserve(promotionId, 'a');
  await reserve(promotionId, 'b');
  await eventually(async () => (feeds.feedCount === 0 ? true : undefined), 5000, 'the feed finished');
  const final = await watcher.next();
  expect(final.value).toMatchObject({ remainingStock: 0, status: 'SOLD_OUT' } satisfies Partial<StockUpdate>);
  expect((await watcher.next()).done).toBe(true);
});

test('When a watcher takes a value late, just before the next tick, then the value after it still comes a tick later, not at that tick', async () => {
  const promotionId = await openPromotion(20);
  // A feed of its own, whose next read this test can act on just before it reads Redis.
  let beforeRead: (() => Promise<void>) | null = null;
  const own = new StockFeeds(
    async (id) => {
      const act = beforeRead;
      beforeRead = null;
      await act?.();
      return (await store.liveStates([id])).get(id);
    },
    { now: () => new Date() },
    TICK_MS,
  );
  try {
    const watcher = await own.watch(promotionId);
    expect((await watcher.next()).value).toMatchObject({ remainingStock: 20 });
    await reserve(promotionId, 'late-1');
    await sleep(TICK_MS * 3); // the feed has read 19; the watcher, busy, has not taken it
    // At the start of the next read the watcher takes 19, then the stock changes, and that read finds 18.
    const late = await new Promise<{ value: unknown; at: number }>((resolve) => {
      beforeRead = async () => {
        const taken = await watcher.next();
        resolve({ value: taken.value, at: performance.now() });
        await reserve(promotionId, 'late-2');
      };
    });
    expect(late.value).toMatchObject({ remainingStock: 19 });
    const after = await watcher.next();
    const gap = performance.now() - late.at;
    expect(after.value).toMatchObject({ remainingStock: 18 });
    expect(gap).toBeGreaterThanOrEqual(TICK_MS - 5); // a tick, less the few ms of slack timers are given
    await watcher.return?.();
  } finally {
    own.close();
  }
});
