import type { Client } from 'graphql-ws';
import type { RunningApp } from '../../src/app';
import {
  AddPromotionStockDocument,
  CouponIssuedDocument,
  CreatePromotionDocument,
  EndPromotionDocument,
  IssuanceDocument,
  IssueCouponDocument,
  MyCouponsDocument,
  PromotionDocument,
  PromotionsDocument,
} from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { httpGet } from '../helpers/raw-http';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';

/** The contract of API.md over real HTTP and WebSocket: operations, replay, auth and error codes. */

let env: TestEnvironment;
let app: RunningApp;
let admin: string;
let alice: string;
let bob: string;
const sockets: Client[] = [];
const HOUR = 3600_000;

const inAnHour = () => new Date(Date.now() + HOUR).toISOString();

async function createPromotion(input: { name?: string; totalStock?: number; perUserLimit?: number; startsAt?: string; endsAt?: string } = {}) {
  const r = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'Promo', totalStock: 10, endsAt: inAnHour(), ...input } }, admin);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.createPromotion as NonNullable<typeof r.body.data>['createPromotion'];
}

async function issue(promotionId: string, token: string, idempotencyKey?: string) {
  const r = await httpGraphQL(app.url, IssueCouponDocument, { promotionId, idempotencyKey }, token);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.issueCoupon as NonNullable<typeof r.body.data>['issueCoupon'];
}

async function issuedState(requestId: string, token: string) {
  return eventually(async () => {
    const r = await httpGraphQL(app.url, IssuanceDocument, { requestId }, token);
    return r.body.data?.issuance?.status === 'ISSUED' ? r.body.data.issuance : undefined;
  }, 15_000, 'ISSUED');
}

function socket(token?: string | null, params?: Record<string, unknown>): Client {
  const client = wsClient(app.url, token, params);
  sockets.push(client);
  return client;
}

const codeOf = (body: { errors?: { extensions?: Record<string, unknown> }[] }) => body.errors?.[0]?.extensions?.code;

beforeAll(async () => {
  env = await createTestEnvironment('api_contract');
  app = await startTestApp(env);
  [admin, alice, bob] = await Promise.all([tokenFor('admin-1', { admin: true }), tokenFor('alice'), tokenFor('bob')]);
});

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.dispose()));
  await app.stop();
  await env.cleanup();
});

describe('couponIssued', () => {
  test('When a client subscribes after its request was issued, then the final state is replayed and the subscription completes', async () => {
    const p = await createPromotion();
    const { requestId } = await issue(p.id, alice);
    const issued = await issuedState(requestId as string, alice);

    const sub = record(socket(alice), CouponIssuedDocument, { requestId });

    expect(await sub.done).toBe('complete');
    expect(sub.results).toEqual([{ data: { couponIssued: issued } }]);
  });

  test('When a client subscribes while its request is still queued, then it receives ISSUED live, then completes', async () => {
    const p = await createPromotion();
    await app.consumer?.stop(); // hold the queue, so the subscription is open before the confirmation
    try {
      const { requestId } = await issue(p.id, alice);
      const sub = record(socket(alice), CouponIssuedDocument, { requestId });
      const queued = await httpGraphQL(app.url, IssuanceDocument, { requestId: requestId as string }, alice);
      expect(queued.body.data?.issuance).toMatchObject({ status: 'QUEUED', coupon: null });
      expect(sub.results).toEqual([]);

      app.consumer?.start();

      expect(await sub.done).toBe('complete');
      expect(sub.results).toHaveLength(1);
      expect(sub.results[0]?.data?.couponIssued).toMatchObject({ requestId, status: 'ISSUED', userId: 'alice' });
    } finally {
      app.consumer?.start();
    }
  });

  test("When a client asks for someone else's request, then NOT_FOUND, as for an unknown one", async () => {
    const p = await createPromotion();
    const { requestId } = await issue(p.id, alice);
    await issuedState(requestId as string, alice);

    const theirs = record(socket(bob), CouponIssuedDocument, { requestId });
    const unknown = record(socket(bob), CouponIssuedDocument, { requestId: `${p.id}.${'0'.repeat(32)}` });
    const malformed = record(socket(bob), CouponIssuedDocument, { requestId: 'nope' });

    // graphql-ws delivers a failed subscribe as one result with errors, then completes.
    for (const sub of [theirs, unknown, malformed]) {
      expect(await sub.done).toBe('complete');
      expect(sub.results).toEqual([{ errors: [expect.objectContaining({ extensions: { code: 'NOT_FOUND' } })] }]);
    }
  });

  test('When an admin watches anyone\'s request, then it is replayed', async () => {
    const p = await createPromotion();
    const { requestId } = await issue(p.id, bob);
    await issuedState(requestId as string, bob);

    const sub = record(socket(admin), CouponIssuedDocument, { requestId });

    expect(await sub.done).toBe('complete');
    expect(sub.results[0]?.data?.couponIssued).toMatchObject({ requestId, userId: 'bob', status: 'ISSUED' });
  });
});

describe('identity', () => {
  test('When no token is given, then public queries work and everything else is UNAUTHENTICATED', async () => {
    const p = await createPromotion();

    const publicQuery = await httpGraphQL(app.url, PromotionDocument, { id: p.id });
    const mutation = await httpGraphQL(app.url, IssueCouponDocument, { promotionId: p.id });
    const mine = await httpGraphQL(app.url, MyCouponsDocument, {});
    const sub = record(socket(null), CouponIssuedDocument, { promotionId: p.id });

    expect(publicQuery.body.data?.promotion?.id).toBe(p.id);
    expect(codeOf(mutation.body)).toBe('UNAUTHENTICATED');
    expect(codeOf(mine.body)).toBe('UNAUTHENTICATED');
    expect(await sub.done).toBe('complete');
    expect(sub.results).toEqual([{ errors: [expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } })] }]);
  });

  test('When the token is invalid or expired, then HTTP answers 401 UNAUTHENTICATED and the WebSocket closes with 4403', async () => {
    const expired = await tokenFor('alice', { ttlSeconds: -10 });
    const forged = `${alice.slice(0, -4)}AAAA`;
    const badSub = await tokenFor('not allowed!');

    for (const token of [expired, forged, badSub, 'garbage']) {
      const r = await httpGraphQL(app.url, PromotionsDocument, {}, token);
      expect(r.status).toBe(401);
      expect(codeOf(r.body)).toBe('UNAUTHENTICATED');
    }
    const sub = record(socket(forged), CouponIssuedDocument, {});
    const end = await sub.done;
    expect(end).not.toBe('complete');
    expect((end as { error: { code?: number } }).error.code).toBe(4403);
  });

  test('When a user calls an admin mutation, then FORBIDDEN', async () => {
    const p = await createPromotion();
    const responses = await Promise.all([
      httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'x', totalStock: 1, endsAt: inAnHour() } }, alice),
      httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: p.id, amount: 1 }, alice),
      httpGraphQL(app.url, EndPromotionDocument, { promotionId: p.id }, alice),
    ]);
    expect(responses.map((r) => codeOf(r.body))).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);
  });

  test("When a user reads someone else's issuance, then null; an admin sees it", async () => {
    const p = await createPromotion();
    const { requestId } = await issue(p.id, alice);

    const asBob = await httpGraphQL(app.url, IssuanceDocument, { requestId: requestId as string }, bob);
    const asAdmin = await httpGraphQL(app.url, IssuanceDocument, { requestId: requestId as string }, admin);

    expect(asBob.body).toEqual({ data: { issuance: null } });
    expect(asAdmin.body.data?.issuance?.userId).toBe('alice');
  });
});

describe('errors', () => {
  test.each([
    [{ totalStock: 0 }, 'input.totalStock'],
    [{ totalStock: 10_000_001 }, 'input.totalStock'],
    [{ perUserLimit: 0 }, 'input.perUserLimit'],
    [{ perUserLimit: 101 }, 'input.perUserLimit'],
    [{ name: '' }, 'input.name'],
    [{ name: 'x'.repeat(201) }, 'input.name'],
    [{ startsAt: inAnHour(), endsAt: new Date().toISOString() }, 'input.endsAt'],
  ])('When createPromotion gets %j, then BAD_USER_INPUT names %s', async (input, field) => {
    const r = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'ok', totalStock: 5, endsAt: inAnHour(), ...input } }, admin);
    expect(r.body.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', field });
  });

  test('When other arguments are out of range, then BAD_USER_INPUT names the field', async () => {
    const p = await createPromotion();
    const cases = await Promise.all([
      httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: p.id, amount: 0 }, admin),
      httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: p.id, amount: 1_000_001 }, admin),
      httpGraphQL(app.url, PromotionsDocument, { first: 101 }),
      httpGraphQL(app.url, PromotionsDocument, { first: 0 }),
      httpGraphQL(app.url, IssueCouponDocument, { promotionId: p.id, idempotencyKey: 'k'.repeat(65) }, alice),
      httpGraphQL(app.url, IssueCouponDocument, { promotionId: p.id, idempotencyKey: '' }, alice),
    ]);
    expect(cases.map((r) => r.body.errors?.[0]?.extensions)).toEqual([
      { code: 'BAD_USER_INPUT', field: 'amount' },
      { code: 'BAD_USER_INPUT', field: 'amount' },
      { code: 'BAD_USER_INPUT', field: 'first' },
      { code: 'BAD_USER_INPUT', field: 'first' },
      { code: 'BAD_USER_INPUT', field: 'idempotencyKey' },
      { code: 'BAD_USER_INPUT', field: 'idempotencyKey' },
    ]);
  });

  test('When a document is malformed, invalid or too complex, then its code says which, with no stack trace', async () => {
    // 320 fields in under 1,000 tokens: over the field limit, within the token limit.
    const deep = `{ ${Array.from({ length: 160 }, (_, i) => `a${i}: promotions { id }`).join(' ')} }`;
    const [parse, validation, complex, badDate] = await Promise.all([
      httpGraphQL(app.url, '{ promotions( { id } }'),
      httpGraphQL(app.url, '{ nope }'),
      httpGraphQL(app.url, deep),
      httpGraphQL(app.url, 'mutation { createPromotion(input: {name: "x", totalStock: 1, endsAt: "tomorrow"}) { id } }', undefined, admin),
    ]);
    expect(codeOf(parse.body)).toBe('GRAPHQL_PARSE_FAILED');
    expect(codeOf(validation.body)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(codeOf(complex.body)).toBe('QUERY_TOO_COMPLEX');
    expect(codeOf(badDate.body)).toBe('GRAPHQL_VALIDATION_FAILED');
    for (const r of [parse, validation, complex, badDate]) expect(JSON.stringify(r.body)).not.toContain('stacktrace');
  });

  test('When an admin acts on an unknown promotion, then NOT_FOUND', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const [add, end] = await Promise.all([
      httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: unknown, amount: 1 }, admin),
      httpGraphQL(app.url, EndPromotionDocument, { promotionId: 'not-an-id' }, admin),
    ]);
    expect([codeOf(add.body), codeOf(end.body)]).toEqual(['NOT_FOUND', 'NOT_FOUND']);
  });
});

describe('promotions and issueCoupon', () => {
  test('When stock is added and the promotion is ended, then the very next issueCoupon sees it', async () => {
    const p = await createPromotion({ totalStock: 1 });
    expect((await issue(p.id, alice)).outcome).toBe('QUEUED');
    expect((await issue(p.id, bob)).outcome).toBe('SOLD_OUT');

    const added = await httpGraphQL(app.url, AddPromotionStockDocument, { promotionId: p.id, amount: 2 }, admin);
    expect(added.body.data?.addPromotionStock).toMatchObject({ totalStock: 3, remainingStock: 2, status: 'ACTIVE' });
    expect(await issue(p.id, bob)).toMatchObject({ outcome: 'QUEUED', position: 2, remainingStock: 1 });

    const ended = await httpGraphQL(app.url, EndPromotionDocument, { promotionId: p.id }, admin);
    expect(ended.body.data?.endPromotion.status).toBe('ENDED');
    expect((await issue(p.id, await tokenFor('carol'))).outcome).toBe('ENDED');
  });

  test('When the promotion is scheduled or unknown, then NOT_STARTED or NOT_FOUND', async () => {
    const later = await createPromotion({ startsAt: inAnHour(), endsAt: new Date(Date.now() + 2 * HOUR).toISOString() });

    expect(later.status).toBe('SCHEDULED');
    expect(await issue(later.id, alice)).toEqual({ outcome: 'NOT_STARTED', requestId: null, position: null, remainingStock: 10 });
    expect((await issue('00000000-0000-4000-8000-000000000000', alice)).outcome).toBe('NOT_FOUND');
    expect((await issue('no-such-promotion', alice)).outcome).toBe('NOT_FOUND');
  });

  test('When the same idempotency key is sent twice, then the first payload comes back and one coupon is issued', async () => {
    const p = await createPromotion({ perUserLimit: 3 });

    const first = await issue(p.id, alice, 'checkout-42');
    const again = await issue(p.id, alice, 'checkout-42');

    expect(again).toEqual(first);
    await issuedState(first.requestId as string, alice);
    const mine = await httpGraphQL(app.url, MyCouponsDocument, { promotionId: p.id }, alice);
    expect(mine.body.data?.myCoupons).toHaveLength(1);
  });

  test('When promotions are listed by status, then each list holds only that status, newest first', async () => {
    const scheduled = await createPromotion({ startsAt: inAnHour(), endsAt: new Date(Date.now() + 2 * HOUR).toISOString() });
    const soldOut = await createPromotion({ totalStock: 1 });
    await issue(soldOut.id, alice);
    const ended = await createPromotion();
    await httpGraphQL(app.url, EndPromotionDocument, { promotionId: ended.id }, admin);
    const active = await createPromotion();

    const list = async (status: 'SCHEDULED' | 'ACTIVE' | 'SOLD_OUT' | 'ENDED') =>
      (await httpGraphQL(app.url, PromotionsDocument, { status, first: 100 })).body.data?.promotions ?? [];
    const all = (await httpGraphQL(app.url, PromotionsDocument, { first: 100 })).body.data?.promotions ?? [];

    for (const [status, p] of [['SCHEDULED', scheduled], ['SOLD_OUT', soldOut], ['ENDED', ended], ['ACTIVE', active]] as const) {
      const found = await list(status);
      expect(found.map((x) => x.id)).toContain(p.id);
      expect(found.every((x) => x.status === status)).toBe(true);
    }
    expect(all[0]?.id).toBe(active.id);
    const created = all.map((x) => Date.parse(x.createdAt));
    expect(created).toEqual([...created].sort((a, b) => b - a));
  });
});

describe('operations endpoints', () => {
  test('When probed, then /healthz and /readyz answer 200 and /metrics exposes the issuance metrics', async () => {
    const [health, ready, metrics] = await Promise.all(['/healthz', '/readyz', '/metrics'].map((path) => fetch(`${app.url}${path}`)));

    expect(health?.status).toBe(200);
    expect(ready?.status).toBe(200);
    expect(await ready?.json()).toMatchObject({ redis: 'ok', postgres: 'ok', migrations: 'ok' });
    const text = await (metrics as Response).text();
    for (const name of ['coupon_issue_outcomes_total', 'coupon_queue_length', 'coupon_queue_pending', 'coupon_persisted_total', 'coupon_issue_to_confirmation_seconds_bucket']) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/coupon_issue_outcomes_total\{outcome="QUEUED"\} [1-9]/);
  });

  test('When a browser opens /graphql, then it gets the playground page with no external resource', async () => {
    const page = await fetch(`${app.url}/graphql`, { headers: { accept: 'text/html' } });
    const html = await page.text();

    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(html).toContain('renderYogaGraphiQL');
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)="https?:/);
  });

  test('When a client refuses gzip (q=0), then the playground page comes uncompressed; one that takes it gets gzip', async () => {
    const plain = await httpGet(`${app.url}/graphql`, { accept: 'text/html', 'accept-encoding': 'gzip;q=0' });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body).toContain('renderYogaGraphiQL');
    const zipped = await httpGet(`${app.url}/graphql`, { accept: 'text/html', 'accept-encoding': 'gzip' });
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.headers.vary).toMatch(/accept-encoding/i);
  });
});

describe('web clients', () => {
  test('When a browser app on another origin calls /graphql, then CORS lets it send the Authorization header', async () => {
    const preflight = await fetch(`${app.url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    const call = await fetch(`${app.url}/graphql`, {
      method: 'POST',
      headers: { origin: 'https://shop.example', 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ promotions(first: 1) { id } }' }),
    });

    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(call.status).toBe(200);
    expect(call.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('malformed HTTP requests', () => {
  type ErrorBody = { errors: { extensions?: Record<string, unknown> }[] };
  const post = async (body: string) => {
    const response = await fetch(`${app.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return { status: response.status, body: (await response.json()) as ErrorBody };
  };

  test('When the body is not JSON, has no query or names no operation, then the code is one of the contract', async () => {
    const [notJson, noQuery, noOperation] = await Promise.all([
      post('{"query": '),
      post('{"variables": {}}'),
      post(JSON.stringify({ query: 'query A { promotions { id } }', operationName: 'B' })),
    ]);

    expect(notJson.status).toBe(400);
    expect(codeOf(notJson.body)).toBe('GRAPHQL_PARSE_FAILED');
    expect(codeOf(noQuery.body)).toBe('GRAPHQL_PARSE_FAILED');
    expect(codeOf(noOperation.body)).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  test('When a subscription is sent over HTTP, then 400 GRAPHQL_VALIDATION_FAILED pointing at the WebSocket, not an internal error', async () => {
    // Executed once over HTTP, a subscription field would run without its event: refused before it runs.
    const [stock, issued] = await Promise.all([
      post(JSON.stringify({ query: 'subscription { promotionStock(promotionId: "p") { remainingStock } }' })),
      post(JSON.stringify({ query: 'subscription { couponIssued { status } }' })),
    ]);
    for (const answer of [stock, issued]) {
      expect(answer.status).toBe(400);
      expect(codeOf(answer.body)).toBe('GRAPHQL_VALIDATION_FAILED');
      expect((answer.body.errors[0] as { message?: string }).message).toMatch(/WebSocket/);
    }
  });

  test('When the body is over MAX_BODY_BYTES, then 413 and BAD_USER_INPUT naming the body', async () => {
    const response = await post(JSON.stringify({ query: `{ promotions { id } } # ${'x'.repeat(1024 * 1024)}` }));

    expect(response.status).toBe(413);
    expect(response.body.errors[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'body' });
  });
});
