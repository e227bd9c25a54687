import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { FeedEvent, FeedListener } from '../../src/domain/ports';
import { createDedicatedRedis, connectRedis } from '../../src/redis/client';
import { RedisIssuanceEvents } from '../../src/redis/event-bus';
import { encodeIssuance } from '../../src/redis/issuance-codec';
import { RedisKeys } from '../../src/redis/keys';
import { deleteKeys, eventually, TEST_REDIS_URL } from '../helpers/environment';

/**
 * The event bus pushes a user's events to that user's listeners, and keeps one Redis subscription per user
 * and promotion channel (sharded pub/sub) however many listeners come and go: subscribed while one listens,
 * unsubscribed when the last leaves, subscribed again for the next. A feed of every promotion listens on each
 * registered promotion's channel, and on new ones once refreshed.
 */

const keys = new RedisKeys(`test:event_bus_listeners_${randomBytes(4).toString('hex')}:`);
const P = randomUUID();
/** The promotions the consumers read, as the bus is told of them. */
let active: string[] = [P];
let subscriber: Redis;
let probe: Redis;
let bus: RedisIssuanceEvents;

beforeAll(async () => {
  subscriber = createDedicatedRedis(TEST_REDIS_URL, 'test-listeners');
  probe = new Redis(TEST_REDIS_URL);
  await connectRedis(subscriber);
  bus = new RedisIssuanceEvents(subscriber, keys, async () => active);
});

afterAll(async () => {
  subscriber.disconnect();
  probe.disconnect();
  await deleteKeys(TEST_REDIS_URL, keys.prefix);
});

class Recorder implements FeedListener {
  readonly events: FeedEvent[] = [];
  onFeedEvent(event: FeedEvent): void {
    this.events.push(event);
  }
  finals(): string[] {
    return this.events.flatMap((e) => (e.kind === 'final' ? [e.issuance.requestId] : []));
  }
}

const subscribers = async (user: string, promotionId = P) =>
  Number(((await probe.call('PUBSUB', 'SHARDNUMSUB', keys.userChannel(promotionId, user))) as [string, number])[1]);

async function publish(user: string, promotionId = P): Promise<string> {
  const requestId = `${promotionId}.${randomUUID().replace(/-/g, '')}`;
  const message = encodeIssuance({ requestId, promotionId, userId: user, status: 'FAILED', requestedAt: new Date(), coupon: null, failureReason: 'x' });
  await probe.spublish(keys.userChannel(promotionId, user), message);
  return requestId;
}

const heard = (listener: Recorder, requestId: string) =>
  eventually(async () => (listener.finals().includes(requestId) ? true : undefined), 5000, `event ${requestId}`);

test('When listeners of one user come and go, then each present one hears every event, and the channel is subscribed exactly while one listens', async () => {
  const [a, b, c] = [new Recorder(), new Recorder(), new Recorder()];
  await Promise.all([bus.watchUser('erin', P, a), bus.watchUser('erin', P, b), bus.watchUser('erin', P, c)]);
  expect(await subscribers('erin')).toBe(1);

  const first = await publish('erin');
  await Promise.all([heard(a, first), heard(b, first), heard(c, first)]);

  bus.unwatchUser('erin', P, b);
  const second = await publish('erin');
  await Promise.all([heard(a, second), heard(c, second)]);
  bus.unwatchUser('erin', P, a);
  bus.unwatchUser('erin', P, a); // twice: ignored
  const third = await publish('erin');
  await heard(c, third);
  expect(await subscribers('erin')).toBe(1);
  expect(b.finals()).toEqual([first]);
  expect(a.finals()).toEqual([first, second]);

  bus.unwatchUser('erin', P, c);
  await eventually(async () => ((await subscribers('erin')) === 0 ? true : undefined), 5000, 'the channel to be unsubscribed');

  const again = new Recorder();
  await bus.watchUser('erin', P, again);
  expect(await subscribers('erin')).toBe(1);
  const fourth = await publish('erin');
  await heard(again, fourth);
  expect(c.finals()).toEqual([first, second, third]);
  bus.unwatchUser('erin', P, again);
});

test('When a gap is signalled, then every listener of every user hears it, one alone on its channel or several', async () => {
  const [alone, one, two] = [new Recorder(), new Recorder(), new Recorder()];
  await Promise.all([bus.watchUser('gina', P, alone), bus.watchUser('hank', P, one), bus.watchUser('hank', P, two)]);

  bus.signalGap();

  for (const listener of [alone, one, two]) expect(listener.events).toEqual([{ kind: 'gap' }]);
  for (const [user, listener] of [['gina', alone], ['hank', one], ['hank', two]] as const) bus.unwatchUser(user, P, listener);
});

test('When a feed watches every promotion, then it hears each registered one, a new one once refreshed, lets a retired one go, and every channel at the end', async () => {
  const Q = randomUUID();
  const later = randomUUID();
  active = [P, Q];
  const feed = new Recorder();
  await bus.watchUser('ivy', null, feed);
  expect([await subscribers('ivy', P), await subscribers('ivy', Q), await subscribers('ivy', later)]).toEqual([1, 1, 0]);
  const inP = await publish('ivy', P);
  const inQ = await publish('ivy', Q);
  await Promise.all([heard(feed, inP), heard(feed, inQ)]);

  active = [P, Q, later];
  await bus.refreshPromotions();
  expect(await subscribers('ivy', later)).toBe(1);
  const inLater = await publish('ivy', later);
  await heard(feed, inLater);

  // Q no longer sold (retired): its channel is let go at the next refresh.
  active = [P, later];
  await bus.refreshPromotions();
  await eventually(async () => ((await subscribers('ivy', Q)) === 0 ? true : undefined), 5000, 'the retired channel let go');
  expect(await subscribers('ivy', P)).toBe(1);

  bus.unwatchUser('ivy', null, feed);
  for (const id of [P, Q, later]) {
    await eventually(async () => ((await subscribers('ivy', id)) === 0 ? true : undefined), 5000, `the channel of ${id} to be unsubscribed`);
  }
  expect(feed.finals()).toEqual([inP, inQ, inLater]);
  active = [P];
});
