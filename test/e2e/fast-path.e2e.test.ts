import { Redis } from 'ioredis';
import pino from 'pino';
import { startApp, type RunningApp } from '../../src/app';
import { RedisKeys } from '../../src/redis/keys';
import { tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';

/**
 * The fast path (src/api/fast-path.ts) must answer exactly as Apollo does. Each request below is sent twice, each
 * time against fresh state (its own user, its own promotion): the first time its document is new, so Apollo
 * answers it; the second time the document is known, so the fast path answers it when it can. Status, headers,
 * body and side effects (rate-limit refusals counted, issue outcomes, internal errors logged) must be the same.
 */

let env: TestEnvironment;
let app: RunningApp;
let redis: Redis;
let admin: string;
const logged: { level: number; msg: string }[] = [];

// Tiny rates so one call empties a bucket: every request below gets a user of its own.
const OVERRIDES = {
  RATE_LIMIT_USER_PER_SECOND: '0.001',
  RATE_LIMIT_ISSUE_PER_SECOND: '0.001',
  RATE_LIMIT_ISSUE_BURST: '1',
  RATE_LIMIT_ANON_PER_SECOND: '1000',
  CORS_ORIGINS: 'https://shop.example',
};

beforeAll(async () => {
  env = await createTestEnvironment('fast_path');
  const logger = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }) });
  app = await startApp(env.config(OVERRIDES), logger);
  redis = new Redis(env.redisUrl);
  admin = await tokenFor('fast-admin', { admin: true });
});

afterAll(async () => {
  await app.stop();
  await redis.quit();
  await env.cleanup();
});

interface Sent {
  status: number;
  headers: Record<string, string>;
  body: string;
}

let users = 0;
const newUser = () => tokenFor(`fast-user-${++users}`);
const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();

/** Whether the fast path answered the last request sent. */
let lastWasFast = false;

async function post(body: unknown, headers: Record<string, string> = {}, token?: string): Promise<Sent> {
  const answered = app.fastPathAnswers();
  const response = await fetch(`${app.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const sent: Sent = { status: response.status, headers: {}, body: await response.text() };
  response.headers.forEach((value, name) => {
    if (name !== 'date') sent.headers[name] = value;
  });
  lastWasFast = app.fastPathAnswers() > answered;
  return sent;
}

async function createPromotion(totalStock = 100): Promise<string> {
  const r = await post(
    { query: 'mutation ($input: CreatePromotionInput!) { createPromotion(input: $input) { id } }', variables: { input: { name: 'fast', totalStock, endsAt: inAnHour() } } },
    {},
    admin,
  );
  return (JSON.parse(r.body) as { data: { createPromotion: { id: string } } }).data.createPromotion.id;
}

/** The counters a request may move, as /metrics shows them. */
async function counters(): Promise<Record<string, number>> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^((?:rate_limited_total|coupon_issue_outcomes_total)\{[^}]*\}) (\S+)$/.exec(line);
    if (match) values[match[1] as string] = Number(match[2]);
  }
  return values;
}

const delta = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]).filter(([, d]) => d !== 0));

/** What differs by nature between two runs: ids (promotions, requests), and the wait of a bucket emptied a moment apart. */
function normalized(sent: Sent): Sent {
  const body = sent.body
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.[0-9a-f]{32})?/g, '<id>')
    .replace(/"retryAfterMs":(\d+)/g, (_, ms: string) => `"retryAfterMs":${Number(ms) > 0 ? '<positive>' : ms}`);
  const headers = { ...sent.headers };
  // The length follows the body it was sent with (a retry wait of 999 or 1000 ms changes it): checked, then set aside.
  if (headers['content-length'] !== undefined) {
    headers['content-length'] = Number(headers['content-length']) === Buffer.byteLength(sent.body) ? '<the body>' : `wrong: ${headers['content-length']}`;
  }
  if (headers['retry-after'] !== undefined) headers['retry-after'] = /^[1-9]\d*$/.test(headers['retry-after']) ? '<seconds>' : headers['retry-after'];
  // Each request gets an id of its own (no x-request-id sent): both paths must give one.
  const id = headers['x-request-id'];
  headers['x-request-id'] = id && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id) ? '<generated>' : `wrong: ${id}`;
  return { ...sent, headers, body };
}

interface Case {
  name: string;
  /** Whether the second sending is answered by the fast path (else both go to Apollo). */
  fast: boolean;
  /** One sending, against state of its own; `query` carries a comment unique to the case, so it starts unseen. */
  send: (tag: string) => Promise<Sent>;
  /** What the case is about, checked on Apollo's answer, so a case cannot drift into testing nothing. */
  shows?: (sent: Sent, moved: Record<string, number>, logs: string[]) => void;
}

const codes = (sent: Sent) => ((JSON.parse(sent.body) as { errors?: { extensions: { code: string } }[] }).errors ?? []).map((e) => e.extensions.code);

const ISSUE = 'mutation Issue($p: ID!, $k: String) { issueCoupon(promotionId: $p, idempotencyKey: $k) { outcome requestId position remainingStock } }';
const PROMOTION = 'query P($id: ID!) { promotion(id: $id) { id name totalStock remainingStock status } }';

const cases: Case[] = [
  {
    name: 'issueCoupon answered QUEUED',
    fast: true,
    send: async (tag) => post({ query: ISSUE + tag, variables: { p: await createPromotion() } }, {}, await newUser()),
    shows: (sent, moved) => {
      expect(sent.body).toContain('"outcome":"QUEUED"');
      expect(moved).toEqual({ 'coupon_issue_outcomes_total{outcome="QUEUED"}': 1 });
    },
  },
  {
    name: 'issueCoupon with an Accept header, from an allowed origin',
    fast: true,
    send: async (tag) =>
      post({ query: ISSUE + tag, variables: { p: await createPromotion() } }, { accept: 'application/graphql-response+json', origin: 'https://shop.example' }, await newUser()),
  },
  {
    name: 'issueCoupon sold out, accept */*',
    fast: true,
    send: async (tag) => {
      const p = await createPromotion(1);
      await post({ query: ISSUE, variables: { p } }, {}, await newUser());
      return post({ query: ISSUE + tag, variables: { p } }, { accept: '*/*' }, await newUser());
    },
  },
  {
    name: 'issueCoupon without a token: UNAUTHENTICATED',
    fast: true,
    send: async (tag) => post({ query: ISSUE + tag, variables: { p: await createPromotion() } }),
  },
  {
    name: 'issueCoupon with a control character in the key: BAD_USER_INPUT with its field',
    fast: true,
    send: async (tag) => post({ query: ISSUE + tag, variables: { p: await createPromotion(), k: 'a\u0001b' } }, {}, await newUser()),
  },
  {
    name: "issueCoupon refused by its own bucket: 429, Retry-After, counted as 'issue'",
    fast: true,
    send: async (tag) => {
      const [p, user] = [await createPromotion(), await newUser()];
      await post({ query: ISSUE, variables: { p } }, {}, user);
      return post({ query: ISSUE + tag, variables: { p } }, {}, user);
    },
    shows: (sent, moved) => {
      expect([sent.status, sent.headers['retry-after'] !== undefined, codes(sent)]).toEqual([429, true, ['RATE_LIMITED']]);
      expect(moved['rate_limited_total{limit="issue"}']).toBe(1);
    },
  },
  {
    name: "another operation refused by the user's bucket: 429 before it runs",
    fast: true,
    send: async (tag) => {
      const [p, user] = [await createPromotion(), await newUser()];
      await post({ query: PROMOTION, variables: { id: p } }, {}, user);
      return post({ query: PROMOTION + tag, variables: { id: p } }, {}, user);
    },
    shows: (sent, moved) => {
      expect([sent.status, codes(sent)]).toEqual([429, ['RATE_LIMITED']]);
      expect(moved['rate_limited_total{limit="user"}']).toBe(1);
    },
  },
  {
    name: "a broken document takes the user's token, then a known one is refused",
    fast: true,
    send: async (tag) => {
      const [p, user] = [await createPromotion(), await newUser()];
      await post({ query: '{ promotion(id: ' }, {}, user);
      return post({ query: PROMOTION + tag, variables: { id: p } }, {}, user);
    },
    shows: (sent) => expect([sent.status, codes(sent)]).toEqual([429, ['RATE_LIMITED']]),
  },
  {
    name: 'a public query, anonymous, with fragments and aliases',
    fast: true,
    send: async (tag) =>
      post({
        query: `query Q($id: ID!) { a: promotion(id: $id) { ...F } b: promotion(id: "nope") { id } } fragment F on Promotion { id name perUserLimit }${tag}`,
        variables: { id: await createPromotion() },
      }),
  },
  {
    name: 'a field kept or dropped by @include and @skip on variables',
    fast: true,
    send: async (tag) =>
      post({
        query: `query S($id: ID!, $x: Boolean!) { promotion(id: $id) { id name @include(if: $x) totalStock @skip(if: $x) } }${tag}`,
        variables: { id: await createPromotion(), x: true },
      }),
  },
  {
    name: 'one operation of two, chosen by operationName',
    fast: true,
    send: async (tag) =>
      post({ query: `query A { __typename } query B($id: ID!) { promotion(id: $id) { id } }${tag}`, operationName: 'B', variables: { id: await createPromotion() } }, {}, await newUser()),
  },
  {
    name: 'an admin query a user may not run: FORBIDDEN, data null',
    fast: true,
    send: async (tag) => post({ query: `query D($p: ID!) { deadLetters(promotionId: $p) { requestId } }${tag}`, variables: { p: await createPromotion() } }, {}, await newUser()),
  },
  {
    name: 'a domain refusal inside a mutation: BAD_USER_INPUT naming the field',
    fast: true,
    send: async (tag) =>
      post({ query: `mutation C($input: CreatePromotionInput!) { createPromotion(input: $input) { id } }${tag}`, variables: { input: { name: 'x', totalStock: 0, endsAt: inAnHour() } } }, {}, admin),
  },
  {
    name: 'an unexpected failure in a resolver: masked as INTERNAL_SERVER_ERROR, and logged',
    fast: true,
    send: async (tag) => {
      const p = await createPromotion();
      const requestId = `${p}.${'ab'.repeat(16)}`;
      await redis.set(new RedisKeys(env.prefix).status(p, requestId), 'not a hash'); // HGETALL fails: WRONGTYPE
      return post({ query: `query I($r: ID!) { issuance(requestId: $r) { status } }${tag}`, variables: { r: requestId } }, {}, admin);
    },
    shows: (sent, _moved, logs) => {
      expect(codes(sent)).toEqual(['INTERNAL_SERVER_ERROR']);
      expect(sent.body).not.toContain('WRONGTYPE');
      expect(logs).toEqual(['50 internal error']);
    },
  },
  {
    name: 'variables that do not coerce: BAD_USER_INPUT, 400',
    fast: false,
    send: async (tag) => post({ query: ISSUE + tag, variables: { p: null } }, {}, await newUser()),
    shows: (sent) => expect([sent.status, codes(sent)]).toEqual([400, ['BAD_USER_INPUT']]),
  },
  {
    name: 'a missing required variable',
    fast: false,
    send: async (tag) => post({ query: ISSUE + tag }, {}, await newUser()),
  },
  {
    name: 'an unknown field: GRAPHQL_VALIDATION_FAILED',
    fast: false,
    send: async (tag) => post({ query: `{ promotion(id: "x") { nope } }${tag}` }, {}, await newUser()),
  },
  {
    name: 'an operationName that names no operation',
    fast: false,
    send: async (tag) => post({ query: `query A { __typename }${tag}`, operationName: 'B' }, {}, await newUser()),
  },
  {
    name: 'two operations and no operationName',
    fast: false,
    send: async (tag) => post({ query: `query A { __typename } query B { __typename }${tag}` }, {}, await newUser()),
  },
  {
    name: 'variables sent as a string',
    fast: false,
    send: async (tag) => post({ query: PROMOTION + tag, variables: '{"id":"x"}' }, {}, await newUser()),
  },
  {
    name: 'a persisted-query extension',
    fast: false,
    send: async (tag) => post({ query: PROMOTION + tag, variables: { id: 'x' }, extensions: { persistedQuery: { version: 1, sha256Hash: 'ab' } } }, {}, await newUser()),
  },
  {
    name: 'a text/plain body: refused by CSRF prevention',
    fast: false,
    send: async (tag) => post({ query: PROMOTION + tag, variables: { id: 'x' } }, { 'content-type': 'text/plain' }, await newUser()),
  },
  {
    name: 'an Accept header nothing satisfies: 406',
    fast: false,
    send: async (tag) => post({ query: PROMOTION + tag, variables: { id: 'x' } }, { accept: 'application/xml' }, await newUser()),
  },
  {
    name: 'a body over the limit: 413',
    fast: false,
    send: async (tag) => post({ query: `${PROMOTION}${tag} # ${'x'.repeat(70 * 1024)}`, variables: { id: 'x' } }, {}, await newUser()),
  },
  {
    name: 'a bad token: 401',
    fast: false,
    send: async (tag) => post({ query: PROMOTION + tag, variables: { id: 'x' } }, {}, 'not-a-token'),
  },
  {
    name: 'introspection',
    fast: false,
    send: async (tag) => post({ query: `{ __schema { queryType { name } } }${tag}` }, {}, await newUser()),
  },
  {
    name: 'an operationName that spells a known (operationName, query) pair across the two fields: not that known document',
    fast: false,
    send: async (tag) => {
      // A comment may hold a NUL: (A, `query A {…} #\0X`) is a valid request, and (`A\0query A {…} #`, `X`) a broken one.
      const head = 'query A { __typename } #';
      await post({ query: `${head}\u0000X${tag}`, operationName: 'A' });
      return post({ query: `X${tag}`, operationName: `A\u0000${head}` });
    },
    shows: (sent) => expect([sent.status, codes(sent)]).toEqual([400, ['GRAPHQL_PARSE_FAILED']]),
  },
  {
    name: 'multi-byte characters in the answer: content-length counts bytes',
    fast: true,
    send: async (tag) => {
      const r = await post(
        { query: 'mutation ($input: CreatePromotionInput!) { createPromotion(input: $input) { id } }', variables: { input: { name: 'café 🎉 ß', totalStock: 5, endsAt: inAnHour() } } },
        {},
        admin,
      );
      const id = (JSON.parse(r.body) as { data: { createPromotion: { id: string } } }).data.createPromotion.id;
      return post({ query: PROMOTION + tag, variables: { id } });
    },
    shows: (sent) => {
      expect(sent.body).toContain('café 🎉 ß');
      expect(Number(sent.headers['content-length'])).toBe(Buffer.byteLength(sent.body));
    },
  },
  {
    name: 'null variables, operationName and extensions, and a charset in the content type',
    fast: true,
    send: async (tag) =>
      post({ query: `{ promotions(first: 1) { id } }${tag}`, variables: null, operationName: null, extensions: null }, { 'content-type': 'application/json; charset=UTF-8' }, await newUser()),
  },
  {
    name: 'HEAD: refused by Apollo (CSRF prevention: 400), no body',
    fast: false,
    send: async () => {
      const response = await fetch(`${app.url}/graphql`, { method: 'HEAD' });
      lastWasFast = false;
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => {
        if (name !== 'date') headers[name] = value;
      });
      return { status: response.status, headers, body: await response.text() };
    },
    shows: (sent) => expect([sent.status, sent.body]).toEqual([400, '']),
  },
];

describe('what the fast path keeps', () => {
  test('When many broken documents arrive, then a known document stays known (they are not remembered)', async () => {
    const p = await createPromotion();
    const known = { query: `${PROMOTION}\n# kept`, variables: { id: p } };
    await post(known);
    await post(known);
    expect(lastWasFast).toBe(true);
    for (let i = 0; i < 1001; i++) await post({ query: `{ promotion(id: "${i}") { nope } }` });
    await post(known);
    expect(lastWasFast).toBe(true);
  });
});

describe('the fast path answers as Apollo does', () => {
  test.each(cases.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const tag = `\n# case ${i}`;
    const sendings = [];
    for (let n = 0; n < 2; n++) {
      const [before, logs] = [await counters(), logged.length];
      const sent = await c.send(tag);
      sendings.push({ sent, fast: lastWasFast, moved: delta(before, await counters()), logs: logged.slice(logs).map((l) => `${l.level} ${l.msg}`) });
    }
    const [first, second] = sendings as [(typeof sendings)[0], (typeof sendings)[0]];

    c.shows?.(first.sent, first.moved, first.logs);
    expect(first.fast).toBe(false);
    expect(second.fast).toBe(c.fast);
    expect(normalized(second.sent)).toEqual(normalized(first.sent));
    expect(second.moved).toEqual(first.moved);
    expect(second.logs).toEqual(first.logs);
  });
});
