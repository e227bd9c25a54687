import fc from 'fast-check';
import type { RunningApp } from '../../src/app';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { openRaw, type RawMessage, type RawSocket } from '../helpers/raw-ws';

/**
 * Whatever a client sends as arguments, the answer is a valid payload or an error with a documented code:
 * never INTERNAL_SERVER_ERROR, never a 5xx. Inputs mix the plausible, the malformed and the hostile.
 */

let env: TestEnvironment;
let app: RunningApp;
let admin: string;
let promotionId: string;

beforeAll(async () => {
  env = await createTestEnvironment('input_properties');
  // No consumer: nothing here needs coupons stored. The rate limits have tests of their own (rate-limits.e2e):
  // here the properties run hundreds of operations a second from one user and one address.
  app = await startTestApp(env, { ROLE: 'api', RATE_LIMIT_USER_PER_SECOND: '0', RATE_LIMIT_ANON_PER_SECOND: '0' });
  admin = await tokenFor('admin', { admin: true });
  const created = await httpGraphQL(app.url, CREATE, { input: { name: 'props', totalStock: 1_000_000, perUserLimit: 100, endsAt: '2099-01-01T00:00:00Z' } }, admin);
  promotionId = (created.body.data as { createPromotion: { id: string } }).createPromotion.id;
});

afterAll(async () => {
  await app.stop();
  await env.cleanup();
});

const CREATE = 'mutation ($input: CreatePromotionInput!) { createPromotion(input: $input) { id name totalStock perUserLimit startsAt endsAt status } }';
const ISSUE = 'mutation ($p: ID!, $k: String) { issueCoupon(promotionId: $p, idempotencyKey: $k) { outcome requestId position remainingStock } }';
const FEED = 'subscription ($r: ID, $p: ID) { couponIssued(requestId: $r, promotionId: $p) { requestId status } }';

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** Date-times: real ones (mostly), ones with impossible fields, and anything at all. */
const realDate = (min: string) => fc.date({ min: new Date(min), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString());
const dateTime = (min: string) =>
  fc.oneof(
    { arbitrary: realDate(min), weight: 3 },
    {
      arbitrary: fc
        .tuple(fc.integer({ min: 2030, max: 2040 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 }), fc.constantFrom('Z', '+09:00', '-0130', '+24:00', ''))
        .map(([y, mo, d, h, mi, zone]) => `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:00${zone}`),
      weight: 2,
    },
    { arbitrary: fc.oneof(fc.string(), fc.jsonValue()), weight: 1 },
  );

/** Free text: mostly ordinary, else any code unit (lone surrogates, NUL, escapes), too long, or not a string. */
const text = fc.oneof(
  { arbitrary: fc.string({ minLength: 1, maxLength: 40 }), weight: 3 },
  { arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0x9f }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 5 }).map((s) => `x${s}y`), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 1 },
  { arbitrary: fc.string({ minLength: 190, maxLength: 260 }), weight: 1 },
  { arbitrary: fc.jsonValue(), weight: 1 },
);

/** Mostly within [min, max], else any number or JSON value. */
const integer = (min: number, max: number) =>
  fc.oneof({ arbitrary: fc.integer({ min, max }), weight: 4 }, { arbitrary: fc.oneof(fc.integer(), fc.double(), fc.integer({ min: min - 3, max: max + 3 }), fc.jsonValue()), weight: 1 });

const codesOf = (errors: { extensions?: Record<string, unknown> }[] | undefined) => (errors ?? []).map((e) => e.extensions?.code);

test('When createPromotion gets any input, then a promotion that matches it or BAD_USER_INPUT', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record(
        {
          name: text,
          totalStock: integer(1, 10_000_000),
          perUserLimit: fc.option(integer(1, 100), { nil: undefined }),
          startsAt: fc.option(dateTime('2000-01-01T00:00:00Z'), { nil: undefined, freq: 2 }),
          endsAt: dateTime('2030-01-01T00:00:00Z'),
        },
        { requiredKeys: ['name', 'totalStock', 'endsAt'] },
      ),
      async (input) => {
        const r = await httpGraphQL(app.url, CREATE, { input } as never, admin);
        const body = r.body as { data?: { createPromotion: { name: string; totalStock: number; startsAt: string; endsAt: string } } | null; errors?: { extensions?: Record<string, unknown> }[] };

        expect(r.status).toBeLessThan(500);
        if (body.errors) {
          expect(codesOf(body.errors)).toEqual(body.errors.map(() => 'BAD_USER_INPUT'));
          return;
        }
        const created = body.data?.createPromotion;
        expect(created?.name).toBe(typeof input.name === 'string' ? input.name.trim() : undefined);
        expect(created?.totalStock).toBe(input.totalStock);
        expect(Date.parse(created?.endsAt ?? '')).toBeGreaterThan(Date.parse(created?.startsAt ?? ''));
        expect(Date.parse(created?.endsAt ?? '')).toBe(Date.parse(String(input.endsAt)));
      },
    ),
    { numRuns: 250 },
  );
});

test('When issueCoupon gets any arguments, then an outcome or a documented error, and the stock accounts for every QUEUED', async () => {
  let queued = 0;
  let user = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.constant(promotionId), fc.uuid(), fc.string(), fc.jsonValue()), fc.option(text, { nil: undefined }), async (p, k) => {
      const r = await httpGraphQL(app.url, ISSUE, { p, k } as never, await tokenFor(`prop-${user++}`));
      const body = r.body as { data?: { issueCoupon: { outcome: string } } | null; errors?: { extensions?: Record<string, unknown> }[] };

      expect(r.status).toBeLessThan(500);
      if (body.errors) {
        for (const code of codesOf(body.errors)) expect(['BAD_USER_INPUT', 'RATE_LIMITED']).toContain(code);
        return;
      }
      const outcome = body.data?.issueCoupon.outcome;
      expect(['QUEUED', 'NOT_FOUND']).toContain(outcome);
      if (outcome === 'QUEUED') queued++;
    }),
    { numRuns: 150 },
  );
  const after = await httpGraphQL(app.url, `{ promotion(id: "${promotionId}") { remainingStock } }`);
  expect((after.body.data as { promotion: { remainingStock: number } }).promotion.remainingStock).toBe(1_000_000 - queued);
});

describe('couponIssued arguments', () => {
  let socket: RawSocket;
  let anonymous: RawSocket;
  let n = 0;

  beforeAll(async () => {
    [socket, anonymous] = await Promise.all([openRaw(app.url), openRaw(app.url)]);
    await Promise.all([socket.init(`Bearer ${await tokenFor('watcher')}`), anonymous.init()]);
  });

  afterAll(() => {
    socket.ws.close();
    anonymous.ws.close();
  });

  /** What a subscription said by the time a later query on the same socket was answered; [] when it is a live feed. */
  async function firstWords(on: RawSocket, variables: Record<string, unknown>): Promise<RawMessage[]> {
    const id = `sub-${n++}`;
    on.subscribe(id, FEED, variables);
    on.subscribe(`${id}-probe`, '{ __typename }');
    await on.waitFor((m) => m.id === `${id}-probe` && m.type === 'complete');
    await new Promise((r) => setTimeout(r, 20)); // a subscribe that awaits Redis may answer just after the probe
    const said = on.messages.filter((m) => m.id === id);
    if (said.length === 0) on.ws.send(JSON.stringify({ id, type: 'complete' })); // a live feed: free its slot
    return said;
  }

  const requestId = fc.oneof(
    fc.tuple(fc.uuid(), fc.stringMatching(/^[0-9a-f]{32}$/)).map(([p, r]) => `${p}.${r}`),
    fc.constant(null),
    fc.string(),
    fc.jsonValue(),
  );
  const promotion = fc.oneof(fc.constant(null), fc.uuid(), fc.string(), fc.jsonValue());

  test('When a signed-in or anonymous client subscribes with any arguments, then an open feed or a documented error code, and the connection stays', async () => {
    await fc.assert(
      fc.asyncProperty(requestId, promotion, fc.boolean(), async (r, p, signedIn) => {
        const on = signedIn ? socket : anonymous;
        const said = await firstWords(on, { r, p });

        for (const message of said) {
          const errors = message.type === 'error' ? (message.payload as { extensions?: Record<string, unknown> }[]) : ((message.payload as { errors?: { extensions?: Record<string, unknown> }[] } | undefined)?.errors ?? []);
          for (const code of codesOf(errors)) expect(['BAD_USER_INPUT', 'NOT_FOUND', 'UNAUTHENTICATED']).toContain(code);
          if (message.type === 'next') expect(errors.length).toBeGreaterThan(0); // nothing here is anyone's issuance
        }
        expect(on.ws.readyState).toBe(on.ws.OPEN);
      }),
      { numRuns: 150 },
    );
  });
});
