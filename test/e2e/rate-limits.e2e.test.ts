import { print } from 'graphql';
import { Redis } from 'ioredis';
import type { RunningApp } from '../../src/app';
import { RedisKeys } from '../../src/redis/keys';
import { CouponIssuedDocument, CreatePromotionDocument, IssueCouponDocument, MyCouponsDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { bearer, postGraphQL, upgrade, type RawResponse } from '../helpers/raw-http';
import { endOf, openRaw } from '../helpers/raw-ws';

/**
 * The rate limits of API.md "Limits", attacked over real HTTP and WebSocket.
 * `app` runs the defaults (issueCoupon 5/s bursts of 10, 20/s per user, 50/s per anonymous address): counts
 * are checked against burst + rate x t with t measured around the whole attack, which Redis's own interval
 * cannot exceed. `strict` runs rates so slow (one per 1,000 s) that only the burst can pass: exact counts.
 */

const SLOW = '0.001';
let env: TestEnvironment;
let app: RunningApp;
let strict: RunningApp;
let redis: Redis;
let keys: RedisKeys;
let admin: string;

const ISSUE = print(IssueCouponDocument);
const MY_COUPONS = print(MyCouponsDocument);
const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;
const codeOf = (r: RawResponse) => r.body.errors?.[0]?.extensions?.code;

async function createPromotion(on: RunningApp, totalStock: number, perUserLimit: number): Promise<string> {
  const r = await httpGraphQL(on.url, CreatePromotionDocument, { input: { name: 'Rush', totalStock, perUserLimit, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, admin);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.createPromotion.id as string;
}

/** Reservations made so far (the sequence), and the stock left, as Redis holds them. */
async function reserved(promotionId: string, on: RedisKeys = keys): Promise<{ made: number; stock: number }> {
  const k = on.promotion(promotionId);
  return { made: Number(await redis.get(k.seq)), stock: Number(await redis.get(k.stock)) };
}

function expectRefusedWhole(r: RawResponse): void {
  expect(r.status).toBe(429);
  expect(codeOf(r)).toBe('RATE_LIMITED');
  expect(r.body.errors?.[0]?.extensions?.retryAfterMs).toBeGreaterThan(0);
  expect(r.body.errors?.[0]?.extensions).not.toHaveProperty('http');
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
}

beforeAll(async () => {
  env = await createTestEnvironment('rate_limits');
  app = await startTestApp(env);
  strict = await startTestApp(env, {
    REDIS_KEY_PREFIX: `${env.prefix}strict:`, // buckets of its own, apart from the other app's
    TRUST_PROXY: '1',
    RATE_LIMIT_ANON_PER_SECOND: '2',
    RATE_LIMIT_USER_PER_SECOND: SLOW,
    RATE_LIMIT_ISSUE_PER_SECOND: SLOW,
    RATE_LIMIT_ISSUE_PER_IP_PER_SECOND: SLOW,
  });
  redis = new Redis(env.redisUrl);
  keys = new RedisKeys(env.prefix);
  admin = await tokenFor('rl-admin', { admin: true });
});

afterAll(async () => {
  redis.disconnect();
  await strict.stop();
  await app.stop();
  await env.cleanup();
});

describe('issueCoupon per user and promotion', () => {
  test('When one token fires 30 issueCoupon at once, then at most burst + rate x t pass, the rest get 429 RATE_LIMITED and reserve nothing, and another user is served', async () => {
    const promotionId = await createPromotion(app, 100, 100);
    const [hammer, victim] = await Promise.all([tokenFor('hammer'), tokenFor('victim')]);

    const started = process.hrtime.bigint();
    const results = await Promise.all(Array.from({ length: 30 }, () => postGraphQL(app.url, ISSUE, { promotionId }, bearer(hammer))));
    const elapsed = seconds(started);
    const served = await postGraphQL(app.url, ISSUE, { promotionId }, bearer(victim));

    const queued = results.filter((r) => r.status === 200 && (r.body.data?.issueCoupon as { outcome: string } | undefined)?.outcome === 'QUEUED');
    const refused = results.filter((r) => r.status === 429);
    expect(queued.length + refused.length).toBe(30);
    expect(queued.length).toBeGreaterThanOrEqual(10);
    expect(queued.length).toBeLessThanOrEqual(10 + Math.floor(5 * elapsed));
    for (const r of refused) {
      expectRefusedWhole(r);
      expect(r.body.data).toBeNull();
    }
    expect(served.body.data?.issueCoupon).toMatchObject({ outcome: 'QUEUED' });
    expect(await reserved(promotionId)).toEqual({ made: queued.length + 1, stock: 100 - queued.length - 1 });
  });

  test('When one POST carries 140 aliased issueCoupon, then no more than the burst is reserved', async () => {
    const promotionId = await createPromotion(app, 200, 100);
    const token = await tokenFor('aliaser');
    const fields = Array.from({ length: 140 }, (_, i) => `a${i}: issueCoupon(promotionId: $p) { outcome }`).join('\n');

    const started = process.hrtime.bigint();
    await postGraphQL(app.url, `mutation ($p: ID!) {\n${fields}\n}`, { p: promotionId }, bearer(token));
    const elapsed = seconds(started);

    const { made, stock } = await reserved(promotionId);
    expect(made).toBeLessThanOrEqual(10 + Math.floor(5 * elapsed));
    expect(stock).toBe(200 - made);
  });

  test('When every call of one token comes from a different address, then exactly RATE_LIMIT_ISSUE_BURST pass', async () => {
    const promotionId = await createPromotion(strict, 50, 20);
    const [one, two] = await Promise.all([tokenFor('strict-1'), tokenFor('strict-2')]);
    // A fresh address per call: the per-IP bucket (1 per address here) never decides, the user's (10) does.
    const from = (i: number) => ({ 'x-forwarded-for': `192.0.2.${i}` });

    const burst = await Promise.all(Array.from({ length: 16 }, (_, i) => postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(one), ...from(i + 1) })));
    const other = await postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(two), ...from(100) });

    expect(burst.filter((r) => r.status === 200)).toHaveLength(10);
    for (const r of burst.filter((x) => x.status !== 200)) expectRefusedWhole(r);
    expect(other.status).toBe(200);
    expect(await reserved(promotionId, new RedisKeys(`${env.prefix}strict:`))).toEqual({ made: 11, stock: 39 });
  });

  test('When RATE_LIMIT_ISSUE_PER_IP_PER_SECOND is set, then accounts behind one address share one bucket, and other addresses are served', async () => {
    const promotionId = await createPromotion(strict, 50, 10);
    const tokens = await Promise.all(['ip-a', 'ip-b', 'ip-c'].map((u) => tokenFor(u)));
    const from = (ip: string) => ({ 'x-forwarded-for': ip });

    const first = await postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(tokens[0] as string), ...from('203.0.113.50') });
    const sameAddress = await postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(tokens[1] as string), ...from('203.0.113.50') });
    const otherAddress = await postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(tokens[2] as string), ...from('203.0.113.51') });

    expect(first.body.data?.issueCoupon).toMatchObject({ outcome: 'QUEUED' });
    expectRefusedWhole(sameAddress);
    expect(otherAddress.body.data?.issueCoupon).toMatchObject({ outcome: 'QUEUED' });
  });
});

describe('other operations per user', () => {
  test('When one user sends 60 queries at once, then at most 20 + 20 x t pass and the rest are refused whole with 429', async () => {
    const token = await tokenFor('busy-reader');

    const started = process.hrtime.bigint();
    const results = await Promise.all(Array.from({ length: 60 }, () => postGraphQL(app.url, MY_COUPONS, {}, bearer(token))));
    const elapsed = seconds(started);

    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThanOrEqual(20);
    expect(ok.length).toBeLessThanOrEqual(20 + Math.floor(20 * elapsed));
    for (const r of results.filter((x) => x.status !== 200)) expectRefusedWhole(r);
    expect(ok.length).toBeLessThan(60);
  });

  test('When a user\'s bucket is empty, then queries and subscriptions are refused, issueCoupon is not, and admins and merchants are exempt', async () => {
    const promotionId = await createPromotion(strict, 10, 1);
    const [user, merchant] = await Promise.all([tokenFor('limited'), tokenFor('checkout', { merchant: true })]);
    const from = { 'x-forwarded-for': '192.0.2.99' };

    const first = await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(user), ...from });
    const second = await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(user), ...from });
    const issue = await postGraphQL(strict.url, ISSUE, { promotionId }, { ...bearer(user), ...from });
    const socket = wsClient(strict.url, user);
    const sub = record(socket, CouponIssuedDocument, { promotionId });
    const exempt = await Promise.all(
      [admin, merchant].flatMap((t) => Array.from({ length: 5 }, () => postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(t), ...from }))),
    );

    expect(first.status).toBe(200);
    expectRefusedWhole(second);
    expect(issue.body.data?.issueCoupon).toMatchObject({ outcome: 'QUEUED' });
    const ended = await sub.done;
    expect(ended).not.toBe('complete');
    expect(JSON.stringify(ended)).toContain('"code":"RATE_LIMITED"');
    await socket.dispose();
    expect(exempt.map((r) => r.status)).toEqual(Array(10).fill(200));
  });
  test('When a user sends documents that do not parse, then they take tokens too', async () => {
    const token = await tokenFor('scribbler');
    const from = { 'x-forwarded-for': '192.0.2.98' };

    const broken = await postGraphQL(strict.url, '{ myCoupons { id ', {}, { ...bearer(token), ...from });
    const next = await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(token), ...from });

    expect(codeOf(broken)).toBe('GRAPHQL_PARSE_FAILED');
    expectRefusedWhole(next);
  });
});

describe('broken documents over WebSocket', () => {
  test.each([
    ['does not parse', '{ myCoupons { id '],
    ['does not validate', '{ noSuchField }'],
  ])('When a user sends a document over WebSocket that %s, then it takes a token as over HTTP', async (_case, broken) => {
    const token = await tokenFor(`ws-scribbler-${broken.length}`);
    const from = { 'x-forwarded-for': `192.0.2.${80 + broken.length}` };
    const socket = await openRaw(strict.url, { headers: from });
    try {
      await socket.init(`Bearer ${token}`);
      socket.subscribe('broken', broken);
      expect((await socket.waitFor(endOf('broken'))).type).toBe('error');

      expectRefusedWhole(await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(token), ...from }));
    } finally {
      socket.ws.terminate();
    }
  });

  test('When an anonymous socket sends broken documents, then they take its address\'s anonymous tokens', async () => {
    const from = { 'x-forwarded-for': '192.0.2.90' };
    const socket = await openRaw(strict.url, { headers: from }); // the upgrade takes 1 of 2
    try {
      await socket.init();
      socket.subscribe('broken', '{ noSuchField }');
      await socket.waitFor(endOf('broken'));
      socket.subscribe('next', '{ promotions(first: 1) { id } }');

      expect(await socket.waitFor(endOf('next'))).toMatchObject({ type: 'error', payload: [{ extensions: { code: 'RATE_LIMITED' } }] });
    } finally {
      socket.ws.terminate();
    }
  });
});

describe('anonymous requests per client IP', () => {
  test('When one address sends anonymous requests past its rate, then 429 with Retry-After and CORS, whatever it puts left of the trusted hop', async () => {
    const spoofed = (i: number) => ({ 'x-forwarded-for': `10.9.9.${i}, 198.51.100.20`, origin: 'https://shop.example' });
    const query = '{ promotions(first: 1) { id } }';

    const started = process.hrtime.bigint();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => postGraphQL(strict.url, query, {}, spoofed(i))));
    const elapsed = seconds(started);
    const another = await postGraphQL(strict.url, query, {}, { 'x-forwarded-for': '198.51.100.21' });
    const health = await Promise.all(['/healthz', '/readyz', '/metrics'].map((p) => fetch(`${strict.url}${p}`, { headers: spoofed(0) })));

    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThanOrEqual(2);
    expect(ok.length).toBeLessThanOrEqual(2 + Math.floor(2 * elapsed));
    const refused = results.filter((r) => r.status !== 200);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expectRefusedWhole(r);
      expect(r.headers.get('access-control-allow-origin')).toBe('*');
      expect(r.headers.get('access-control-expose-headers')).toContain('retry-after');
    }
    expect(another.status).toBe(200);
    expect(health.map((r) => r.status)).toEqual([200, 200, 200]);
  });

  test('When an address has used its rate, then its WebSocket upgrades get an HTTP 429 with Retry-After', async () => {
    const from = { 'x-forwarded-for': '198.51.100.30' };
    const upgrades = await Promise.all(Array.from({ length: 6 }, () => upgrade(strict.url, from)));

    const refused = upgrades.filter((u) => u !== 'open');
    expect(refused.length).toBeGreaterThan(0);
    for (const u of refused) expect(u).toEqual({ status: 429, retryAfter: expect.stringMatching(/^[1-9]\d*$/) });
    expect(await upgrade(strict.url, { 'x-forwarded-for': '198.51.100.31' })).toBe('open');
  });

  test('When an anonymous WebSocket sends operations past its address\'s rate, then each extra one gets an error message RATE_LIMITED with retryAfterMs and the connection stays', async () => {
    const socket = await openRaw(strict.url, { headers: { 'x-forwarded-for': '198.51.100.40' } }); // the upgrade takes 1 of 2
    try {
      await socket.init();
      const started = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) socket.subscribe(`q${i}`, '{ promotions(first: 1) { id } }');
      const ends = await Promise.all(Array.from({ length: 10 }, (_, i) => socket.waitFor(endOf(`q${i}`))));
      const elapsed = seconds(started);

      const refused = ends.filter((m) => m.type === 'error');
      expect(10 - refused.length).toBeGreaterThanOrEqual(1);
      expect(10 - refused.length).toBeLessThanOrEqual(1 + Math.floor(2 * elapsed));
      for (const m of refused) expect(m.payload).toEqual([expect.objectContaining({ extensions: { code: 'RATE_LIMITED', retryAfterMs: expect.any(Number) } })]);
      expect(socket.ws.readyState).toBe(socket.ws.OPEN);
    } finally {
      socket.ws.terminate();
    }
  });

  test('When TRUST_PROXY is 0, then X-Forwarded-For is ignored and the socket address is the client', async () => {
    const query = '{ promotions(first: 1) { id } }';
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => postGraphQL(app.url, query, {}, { 'x-forwarded-for': `198.51.100.${i}` })),
    );

    // 120 different forwarded addresses, one socket address: the defaults (50/s, bursts of 50) refuse some.
    expect(results.filter((r) => r.status === 429).length).toBeGreaterThan(0);
  });
});

describe('CORS on early refusals', () => {
  test('When a browser request is refused early (429 of a user\'s rate, 401, 413), then Retry-After and x-request-id are exposed', async () => {
    const origin = { origin: 'https://shop.example' };
    const token = await tokenFor('cors-reader');
    const first = await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(token), ...origin, 'x-forwarded-for': '192.0.2.70' });
    const limited = await postGraphQL(strict.url, MY_COUPONS, {}, { ...bearer(token), ...origin, 'x-forwarded-for': '192.0.2.70' });
    const unauthenticated = await postGraphQL(strict.url, MY_COUPONS, {}, { authorization: 'Bearer x.y.z', ...origin, 'x-forwarded-for': '192.0.2.71' });
    const tooLarge = await postGraphQL(strict.url, MY_COUPONS, { pad: 'x'.repeat(70 * 1024) }, { ...origin, 'x-forwarded-for': '192.0.2.72' });

    expect([first.status, limited.status, unauthenticated.status, tooLarge.status]).toEqual([200, 429, 401, 413]);
    for (const r of [first, limited, unauthenticated, tooLarge]) {
      expect(r.headers.get('access-control-allow-origin')).toBe('*');
      expect(r.headers.get('access-control-expose-headers')).toBe('retry-after, x-request-id');
    }
  });
});

describe('metrics', () => {
  test('When limits have refused calls, then /metrics counts them by limit', async () => {
    const text = await (await fetch(`${app.url}/metrics`)).text();

    for (const limit of ['issue', 'user', 'anonymous']) {
      const line = text.split('\n').find((l) => l.startsWith(`rate_limited_total{limit="${limit}"}`));
      expect(Number(line?.split(' ')[1])).toBeGreaterThan(0);
    }
  });
});
