import { CouponClient } from '../../clients/node/coupon-client';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument, PromotionDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';

/**
 * The kit's client retrying `issueCoupon` over HTTP as the client guide says: one idempotency key per intent,
 * a lost answer asked again, a 429 honoured. The service is real; only the network's loss is played, by a
 * fetch that delivers the request and then drops its answer.
 */

let env: TestEnvironment;
let app: RunningApp;

beforeAll(async () => {
  env = await createTestEnvironment('node_client_retries');
  app = await startTestApp(env, { RATE_LIMIT_ISSUE_PER_SECOND: '0.5', RATE_LIMIT_ISSUE_BURST: '1' });
});

afterAll(async () => {
  await app?.stop();
  await env?.cleanup();
});

async function createPromotion(perUserLimit: number): Promise<string> {
  const input = { name: 'Retry sale', totalStock: 10, perUserLimit, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, await tokenFor('admin', { admin: true }));
  return created.body.data?.createPromotion.id as string;
}

const remainingStock = async (id: string) => (await httpGraphQL(app.url, PromotionDocument, { id })).body.data?.promotion?.remainingStock;

/** A fetch that records each answer's status, and loses the answers of the first `lose` calls after the server handled them. */
function recordingFetch(lose: number) {
  const statuses: (number | 'lost')[] = [];
  const fetchFn: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (statuses.length < lose) {
      statuses.push('lost');
      await response.arrayBuffer();
      throw new TypeError('fetch failed'); // what a dropped connection looks like to the app
    }
    statuses.push(response.status);
    return response;
  };
  return { statuses, fetchFn };
}

test('When the answer to issueCoupon is lost, then the retry with the same key gets the same request and reserves nothing more', async () => {
  const promotionId = await createPromotion(3); // a retry without its key would take a second coupon here
  const token = await tokenFor('erin');
  const network = recordingFetch(1);
  // The lost call took the bucket's one token: the first backoff (2.5 s) outlasts its refill (one call per 2 s).
  const client = new CouponClient({ url: `${app.url}/graphql`, getToken: async () => token, fetch: network.fetchFn, baseDelayMs: 5000, random: () => 0 });

  const answer = await client.issueCoupon(promotionId, 'tap-1');

  expect(network.statuses).toEqual(['lost', 200]);
  expect(answer).toMatchObject({ outcome: 'QUEUED', position: 1, remainingStock: 9 });
  expect(await remainingStock(promotionId)).toBe(9);
  await client.close();
});

test('When issueCoupon is refused with 429, then the client waits as told and the retry with the same key answers', async () => {
  const promotionId = await createPromotion(3);
  const token = await tokenFor('frank');
  const network = recordingFetch(0);
  const client = new CouponClient({ url: `${app.url}/graphql`, getToken: async () => token, fetch: network.fetchFn });

  const first = await client.issueCoupon(promotionId, 'tap-1');
  const again = await client.issueCoupon(promotionId, 'tap-1'); // the bucket (burst 1) is empty: 429, then the wait

  expect(network.statuses).toEqual([200, 429, 200]);
  expect(again).toEqual(first);
  expect(await remainingStock(promotionId)).toBe(9);
  await client.close();
});
