import { Client } from 'pg';
import type { Client as WsClient } from 'graphql-ws';
import {
  CancelRedemptionDocument,
  CouponByCodeDocument,
  CouponIssuedStateDocument,
  CreatePromotionDocument,
  IssuanceCouponStateDocument,
  IssueCouponDocument,
  MyCouponStatesDocument,
  RedeemCouponDocument,
  RevokeCouponDocument,
  type CouponStateFieldsFragment,
} from '../generated/graphql';
import { httpGraphQL, record, tokenFor, wsClient, type GraphQLResponse } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process';

/**
 * The coupon's life after issuance, end to end over HTTP against three service processes sharing one
 * PostgreSQL and one Redis: a checkout (merchant token) redeems a coupon for one order, cancels it, an admin
 * revokes one; validity, ownership, roles, visibility, bad input, and the trail row each change leaves.
 */

const PROCESSES = 3;

let env: TestEnvironment;
let pg: Client;
const services: ServiceProcess[] = [];
let urls: string[] = [];
let admin: string;
let merchant: string;
let promotionId: string;
const sockets: WsClient[] = [];

interface TrailRow {
  from_status: string;
  to_status: string;
  actor_user_id: string;
  actor_role: string;
  order_id: string | null;
  reason: string | null;
  at: Date;
}

const trail = async (code: string): Promise<TrailRow[]> =>
  (
    await pg.query<TrailRow>(
      `SELECT e.from_status, e.to_status, e.actor_user_id, e.actor_role, e.order_id, e.reason, e.at
       FROM coupon_events e JOIN coupons c ON c.id = e.coupon_id WHERE c.code = $1 ORDER BY e.id`,
      [code],
    )
  ).rows;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Any of the processes: every call may land on another one, as behind a load balancer. */
let turn = 0;
const someUrl = (): string => urls[turn++ % urls.length] as string;

const redeem = (code: string, orderId: string, userId: string, token: string = merchant, url = someUrl()) =>
  httpGraphQL(url, RedeemCouponDocument, { code, orderId, userId }, token);
const cancel = (code: string, orderId: string, token: string = merchant) => httpGraphQL(someUrl(), CancelRedemptionDocument, { code, orderId }, token);
const revoke = (code: string, reason: string, token: string = admin) => httpGraphQL(someUrl(), RevokeCouponDocument, { code, reason }, token);
const lookup = async (code: string, token: string = admin) => (await httpGraphQL(someUrl(), CouponByCodeDocument, { code }, token)).body.data?.coupon ?? null;

function codeOf(response: GraphQLResponse<unknown>): string | undefined {
  return response.body.errors?.[0]?.extensions?.code as string | undefined;
}

/** Creates a promotion open for an hour, one coupon per user. */
async function createPromotion(couponValidUntil?: Date): Promise<string> {
  const endsAt = new Date(Date.now() + 3600_000);
  const created = await httpGraphQL(
    someUrl(),
    CreatePromotionDocument,
    { input: { name: 'checkout test', totalStock: 200, endsAt: endsAt.toISOString(), couponValidUntil: couponValidUntil?.toISOString() } },
    admin,
  );
  expect(created.body.errors).toBeUndefined();
  return created.body.data?.createPromotion.id as string;
}

/** Issues one coupon to the user and waits (bounded) until it is stored: its code and requestId. */
async function couponFor(user: string, promotion = promotionId): Promise<{ code: string; requestId: string; token: string }> {
  const token = await tokenFor(user);
  const issued = await httpGraphQL(someUrl(), IssueCouponDocument, { promotionId: promotion }, token);
  expect(issued.body.data?.issueCoupon.outcome).toBe('QUEUED');
  const requestId = issued.body.data?.issueCoupon.requestId as string;
  for (let i = 0; i < 200; i++) {
    const read = await httpGraphQL(someUrl(), IssuanceCouponStateDocument, { requestId }, token);
    const code = read.body.data?.issuance?.coupon?.code;
    if (code) return { code, requestId, token };
    await sleep(100); // under the per-user rate limit
  }
  throw new Error(`the coupon of ${user} was never stored`);
}

beforeAll(async () => {
  env = await createTestEnvironment('coupon_lifecycle');
  for (let i = 0; i < PROCESSES; i++) services.push(spawnService(serviceEnv(env)));
  urls = await Promise.all(services.map((s) => s.started));
  pg = new Client({ connectionString: env.databaseUrl });
  await pg.connect();
  admin = await tokenFor('admin', { admin: true });
  merchant = await tokenFor('shop', { merchant: true });
  promotionId = await createPromotion();
}, 120_000);

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.dispose()));
  for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  await Promise.all(services.map((s) => s.exit));
  await pg?.end();
  await env?.cleanup();
});

describe('redeemCoupon', () => {
  test('When 50 orders redeem one coupon at once through three processes, then exactly one gets it and the trail holds one redemption', async () => {
    const { code } = await couponFor('racer');
    const orders = Array.from({ length: 50 }, (_, i) => `race-order-${i}`);

    const answers = await Promise.all(orders.map((orderId, i) => redeem(code, orderId, 'racer', merchant, urls[i % urls.length])));

    for (const a of answers) expect(a.body.errors).toBeUndefined();
    const outcomes = answers.map((a) => a.body.data?.redeemCoupon.outcome);
    expect(outcomes.filter((o) => o === 'REDEEMED')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'ALREADY_REDEEMED')).toHaveLength(49);
    const winner = orders[outcomes.indexOf('REDEEMED')];
    expect(await lookup(code)).toMatchObject({ status: 'REDEEMED', orderId: winner, userId: 'racer' });
    const rows = await trail(code);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ from_status: 'ACTIVE', to_status: 'REDEEMED', actor_user_id: 'shop', actor_role: 'merchant', order_id: winner });
    // A losing order was told who holds it only as far as a merchant may see: the coupon and its order.
    const loser = answers.find((a) => a.body.data?.redeemCoupon.outcome === 'ALREADY_REDEEMED');
    expect(loser?.body.data?.redeemCoupon.coupon).toMatchObject({ code, status: 'REDEEMED', orderId: winner });
  });

  test('When a checkout retries the same order, then it is told REDEEMED again and nothing changes', async () => {
    const { code } = await couponFor('retrier');
    const before = Date.now();
    const first = await redeem(code, 'order-1', 'retrier');
    const after = Date.now();
    const firstCoupon = first.body.data?.redeemCoupon.coupon as CouponStateFieldsFragment;
    expect(first.body.data?.redeemCoupon.outcome).toBe('REDEEMED');
    expect(firstCoupon).toMatchObject({ status: 'REDEEMED', orderId: 'order-1' });
    expect(Date.parse(firstCoupon.redeemedAt as string)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(firstCoupon.redeemedAt as string)).toBeLessThanOrEqual(after);

    const repeats = await Promise.all([1, 2, 3].map(() => redeem(code, 'order-1', 'retrier')));

    for (const r of repeats) {
      expect(r.body.data?.redeemCoupon.outcome).toBe('REDEEMED');
      expect(r.body.data?.redeemCoupon.coupon).toEqual(firstCoupon);
    }
    expect(await trail(code)).toHaveLength(1);
    expect((await redeem(code, 'order-2', 'retrier')).body.data?.redeemCoupon.outcome).toBe('ALREADY_REDEEMED');
    expect(await lookup(code)).toEqual(firstCoupon);
  });

  test('When the coupon belongs to another user, then the outcome is NOT_OWNER and nothing changes', async () => {
    const { code } = await couponFor('owner-1');

    const answer = await redeem(code, 'order-x', 'someone-else');

    expect(answer.body.data?.redeemCoupon).toMatchObject({ outcome: 'NOT_OWNER', coupon: { code, userId: 'owner-1', status: 'ACTIVE', orderId: null } });
    expect(await trail(code)).toEqual([]);
    expect((await redeem(code, 'order-x', 'owner-1')).body.data?.redeemCoupon.outcome).toBe('REDEEMED');
  });

  test('When the caller is a plain user or anonymous, then redeeming fails FORBIDDEN or UNAUTHENTICATED; an admin may redeem', async () => {
    const { code, token } = await couponFor('self-service');

    expect(codeOf(await redeem(code, 'order-u', 'self-service', token))).toBe('FORBIDDEN');
    expect(codeOf(await httpGraphQL(someUrl(), RedeemCouponDocument, { code, orderId: 'order-a', userId: 'self-service' }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await cancel(code, 'order-u', token))).toBe('FORBIDDEN');
    expect(await trail(code)).toEqual([]);

    expect((await redeem(code, 'order-admin', 'self-service', admin)).body.data?.redeemCoupon.outcome).toBe('REDEEMED');
    expect((await trail(code))[0]).toMatchObject({ actor_user_id: 'admin', actor_role: 'admin', order_id: 'order-admin' });
  });

  test.each([
    ['empty', ''],
    ['129 characters', 'o'.repeat(129)],
    ['a NUL', 'order\u0000'],
    ['a newline', 'order\n1'],
  ])('When the orderId is %s, then it fails BAD_USER_INPUT naming orderId and nothing changes', async (_, orderId) => {
    const { code } = await couponFor(`bad-order-${orderId.length}-${orderId.charCodeAt(orderId.length - 1) || 0}`);

    const answer = await redeem(code, orderId, 'unused');

    expect(codeOf(answer)).toBe('BAD_USER_INPUT');
    expect(answer.body.errors?.[0]?.extensions?.field).toBe('orderId');
    expect(await trail(code)).toEqual([]);
  });

  test('When the code is malformed or unknown, then the outcome is NOT_FOUND, as data', async () => {
    for (const code of ['nope', "' OR 1=1 --", 'ABCDEFGHJKLMNPQR', 'abcdefghjkmnpqrs', 'x'.repeat(500)]) {
      const answer = await redeem(code, 'order-1', 'anyone');
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data?.redeemCoupon).toEqual({ outcome: 'NOT_FOUND', coupon: null });
    }
  });
});

describe('cancelRedemption', () => {
  test('When the redeeming order is cancelled, then the coupon is ACTIVE again and another order may redeem it; each step is in the trail', async () => {
    const { code } = await couponFor('canceller');
    await redeem(code, 'order-1', 'canceller');

    const wrong = await cancel(code, 'order-2');
    expect(codeOf(wrong)).toBe('BAD_USER_INPUT');
    expect(wrong.body.errors?.[0]?.extensions?.field).toBe('orderId');

    const cancelled = await cancel(code, 'order-1');
    expect(cancelled.body.data?.cancelRedemption).toMatchObject({ code, status: 'ACTIVE', orderId: null, redeemedAt: null });
    // A repeat (a retry after a timeout) answers the coupon as it is, and writes nothing.
    expect((await cancel(code, 'order-1')).body.data?.cancelRedemption).toEqual(cancelled.body.data?.cancelRedemption);
    expect(codeOf(await cancel(code, 'order-never'))).toBe('BAD_USER_INPUT');

    expect((await redeem(code, 'order-2', 'canceller')).body.data?.redeemCoupon.outcome).toBe('REDEEMED');
    expect((await redeem(code, 'order-1', 'canceller')).body.data?.redeemCoupon.outcome).toBe('ALREADY_REDEEMED');
    const rows = await trail(code);
    expect(rows.map((r) => [r.from_status, r.to_status, r.order_id, r.actor_role])).toEqual([
      ['ACTIVE', 'REDEEMED', 'order-1', 'merchant'],
      ['REDEEMED', 'ACTIVE', 'order-1', 'merchant'],
      ['ACTIVE', 'REDEEMED', 'order-2', 'merchant'],
    ]);
    for (let i = 1; i < rows.length; i++) expect((rows[i] as TrailRow).at.getTime()).toBeGreaterThanOrEqual((rows[i - 1] as TrailRow).at.getTime());
  });

  test('When the code is unknown or malformed, then cancelling fails NOT_FOUND', async () => {
    expect(codeOf(await cancel('ABCDEFGHJKLMNPQR', 'order-1'))).toBe('NOT_FOUND');
    expect(codeOf(await cancel('bad code', 'order-1'))).toBe('NOT_FOUND');
  });
});

describe('revokeCoupon', () => {
  test('When an admin revokes a coupon, then it never redeems, a repeat changes nothing, and the trail keeps who and why', async () => {
    const { code, token } = await couponFor('revoked-user');
    expect(codeOf(await revoke(code, 'given by mistake', merchant))).toBe('FORBIDDEN');
    expect(codeOf(await revoke(code, 'given by mistake', token))).toBe('FORBIDDEN');
    expect(codeOf(await revoke(code, '   '))).toBe('BAD_USER_INPUT');
    expect(codeOf(await revoke(code, 'bad\u0000reason'))).toBe('BAD_USER_INPUT');
    expect(codeOf(await revoke(code, 'r'.repeat(501)))).toBe('BAD_USER_INPUT');

    const revoked = await revoke(code, ' given by mistake ');

    expect(revoked.body.data?.revokeCoupon).toMatchObject({ code, status: 'REVOKED' });
    expect((await revoke(code, 'again')).body.data?.revokeCoupon).toEqual(revoked.body.data?.revokeCoupon);
    expect((await redeem(code, 'order-1', 'revoked-user')).body.data?.redeemCoupon).toMatchObject({ outcome: 'REVOKED', coupon: { status: 'REVOKED' } });
    expect(codeOf(await cancel(code, 'order-1'))).toBe('BAD_USER_INPUT');
    const rows = await trail(code);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ from_status: 'ACTIVE', to_status: 'REVOKED', actor_user_id: 'admin', actor_role: 'admin', reason: 'given by mistake', order_id: null });
  });

  test('When a redeemed coupon is revoked, then it keeps its order, and cancelling that order cannot make it usable again', async () => {
    const { code } = await couponFor('redeemed-then-revoked');
    await redeem(code, 'order-r', 'redeemed-then-revoked');

    const revoked = await revoke(code, 'fraud');

    expect(revoked.body.data?.revokeCoupon).toMatchObject({ status: 'REVOKED', orderId: 'order-r' });
    expect(codeOf(await cancel(code, 'order-r'))).toBe('BAD_USER_INPUT');
    expect((await trail(code)).map((r) => [r.from_status, r.to_status, r.order_id, r.reason])).toEqual([
      ['ACTIVE', 'REDEEMED', 'order-r', null],
      ['REDEEMED', 'REVOKED', 'order-r', 'fraud'],
    ]);
  });

  test('When the code is unknown or malformed, then revoking fails NOT_FOUND', async () => {
    expect(codeOf(await revoke('ABCDEFGHJKLMNPQR', 'why'))).toBe('NOT_FOUND');
    expect(codeOf(await revoke('??', 'why'))).toBe('NOT_FOUND');
  });
});

describe('validity', () => {
  test('When couponValidUntil is not after endsAt, then createPromotion fails BAD_USER_INPUT naming it', async () => {
    const endsAt = new Date(Date.now() + 3600_000);
    const answer = await httpGraphQL(
      someUrl(),
      CreatePromotionDocument,
      { input: { name: 'short', totalStock: 1, endsAt: endsAt.toISOString(), couponValidUntil: endsAt.toISOString() } },
      admin,
    );
    expect(codeOf(answer)).toBe('BAD_USER_INPUT');
    expect(answer.body.errors?.[0]?.extensions?.field).toBe('input.couponValidUntil');
  });

  test('When a coupon is past its validUntil, then it reads EXPIRED, redeems EXPIRED, and a cancelled redemption leaves it EXPIRED', async () => {
    const validUntil = new Date(Date.now() + 7200_000);
    const expiring = await createPromotion(validUntil);
    const kept = await couponFor('expiry-user', expiring);
    const used = await couponFor('expiry-user-2', expiring);
    expect(await lookup(kept.code)).toMatchObject({ status: 'ACTIVE', validUntil: validUntil.toISOString() });
    expect((await redeem(used.code, 'order-before', 'expiry-user-2')).body.data?.redeemCoupon.outcome).toBe('REDEEMED');

    // Setup by hand: the sale and the coupons' validity moved into the past (the API refuses a past window,
    // and waiting for a real one to pass would make the test slow). Redis still serves the sale: no issuance follows.
    const past = await pg.query<{ coupon_valid_until: Date }>(
      `UPDATE promotions SET ends_at = now() - interval '2 seconds', coupon_valid_until = now() - interval '1 second'
       WHERE id = $1 RETURNING coupon_valid_until`,
      [expiring],
    );
    const expiredAt = (past.rows[0] as { coupon_valid_until: Date }).coupon_valid_until.toISOString();

    expect(await lookup(kept.code)).toMatchObject({ status: 'EXPIRED', validUntil: expiredAt });
    const mine = await httpGraphQL(someUrl(), MyCouponStatesDocument, { promotionId: expiring }, kept.token);
    expect(mine.body.data?.myCoupons).toEqual([expect.objectContaining({ code: kept.code, status: 'EXPIRED', validUntil: expiredAt })]);
    expect((await redeem(kept.code, 'order-late', 'expiry-user')).body.data?.redeemCoupon).toMatchObject({ outcome: 'EXPIRED', coupon: { status: 'EXPIRED' } });
    // Redeemed while valid, it stays with its order; cancelled, it is not usable any more.
    expect(await lookup(used.code)).toMatchObject({ status: 'REDEEMED', orderId: 'order-before' });
    expect((await redeem(used.code, 'order-before', 'expiry-user-2')).body.data?.redeemCoupon.outcome).toBe('REDEEMED');
    expect((await cancel(used.code, 'order-before')).body.data?.cancelRedemption).toMatchObject({ status: 'EXPIRED', orderId: null });
    expect((await redeem(used.code, 'order-after', 'expiry-user-2')).body.data?.redeemCoupon.outcome).toBe('EXPIRED');
    expect(await trail(kept.code)).toEqual([]);
    expect((await trail(used.code)).map((r) => r.to_status)).toEqual(['REDEEMED', 'ACTIVE']);
  });
});

describe('reading coupons', () => {
  test('When a coupon is looked up by code, then its owner, merchants and admins see it; another user, and unknown or malformed codes, get null', async () => {
    const { code, token } = await couponFor('looker');
    const other = await tokenFor('not-the-owner');

    for (const t of [token, merchant, admin]) expect(await lookup(code, t)).toMatchObject({ code, userId: 'looker', status: 'ACTIVE', validUntil: null });
    expect(await lookup(code, other)).toBeNull();
    expect(await lookup('ABCDEFGHJKLMNPQR', admin)).toBeNull();
    expect(await lookup('not a code', admin)).toBeNull();
    expect(codeOf(await httpGraphQL(someUrl(), CouponByCodeDocument, { code }))).toBe('UNAUTHENTICATED');
  });

  test("When a user's coupons are listed, or read through their issuance and couponIssued, then each carries its current state", async () => {
    const validUntil = new Date(Date.now() + 86_400_000);
    const promotion = await createPromotion(validUntil);
    const { code, requestId, token } = await couponFor('reader', promotion);
    const client = wsClient(someUrl(), token);
    sockets.push(client);
    const confirmation = record(client, CouponIssuedStateDocument, { requestId });
    await confirmation.done;
    expect(confirmation.results.map((r) => r.data?.couponIssued.coupon)).toEqual([
      expect.objectContaining({ code, status: 'ACTIVE', validUntil: validUntil.toISOString(), orderId: null }),
    ]);

    await redeem(code, 'order-read', 'reader');

    const mine = await httpGraphQL(someUrl(), MyCouponStatesDocument, { promotionId: promotion }, token);
    expect(mine.body.data?.myCoupons).toEqual([expect.objectContaining({ code, status: 'REDEEMED', orderId: 'order-read', validUntil: validUntil.toISOString() })]);
    const issuance = await httpGraphQL(someUrl(), IssuanceCouponStateDocument, { requestId }, token);
    expect(issuance.body.data?.issuance?.coupon).toMatchObject({ code, status: 'REDEEMED', orderId: 'order-read', validUntil: validUntil.toISOString() });
  });
});
