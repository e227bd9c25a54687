import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import type { RunningApp } from '../../src/app';
import { createDb, type Db } from '../../src/db/client';
import { PrismaCouponLifecycleRepository } from '../../src/db/coupon-lifecycle-repository';
import { CouponService } from '../../src/domain/coupon-service';
import { newCouponCode } from '../../src/domain/identifiers';
import type { Caller } from '../../src/domain/types';
import { CancelRedemptionDocument, RedeemCouponDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';

/**
 * Defects of the coupon lifecycle, each shown against the real PostgreSQL (and, for the API, the real
 * service over HTTP). Coupons are written as rows directly: what is under test starts after issuance.
 */

let env: TestEnvironment;
let pg: Client;
let db: Db;
let app: RunningApp;
let promotionId: string;

const shop: Caller = { userId: 'shop', isAdmin: false, isMerchant: true };

/** Stores `count` ACTIVE coupons of one user in one INSERT (pages filled as a batch insert fills them). */
async function storeCoupons(userId: string, count = 1): Promise<string[]> {
  const codes = Array.from({ length: count }, () => newCouponCode());
  await pg.query(
    `INSERT INTO coupons (id, code, promotion_id, user_id, request_id, requested_at)
     SELECT gen_random_uuid(), code, $1::uuid, $2, $4 || '.' || md5(code), now() FROM unnest($3::text[]) AS code`,
    [promotionId, userId, codes, promotionId],
  );
  return codes;
}

beforeAll(async () => {
  env = await createTestEnvironment('lifecycle_defects');
  pg = new Client({ connectionString: env.databaseUrl });
  await pg.connect();
  db = createDb(env.databaseUrl, 4);
  app = await startTestApp(env);
  promotionId = randomUUID();
  await pg.query(
    `INSERT INTO promotions (id, name, total_stock, per_user_limit, starts_at, ends_at)
     VALUES ($1, 'lifecycle defects', 100000, 100000, now() - interval '1 hour', now() - interval '1 minute')`,
    [promotionId],
  );
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await db?.$disconnect();
  await pg?.end();
  await env?.cleanup();
});

test('DEFECT: an orderId with an unpaired UTF-16 surrogate is stored as U+FFFD: its retry answers ALREADY_REDEEMED, and another order may cancel it', async () => {
  const [code] = await storeCoupons('surrogate-user');
  const merchant = await tokenFor('shop', { merchant: true });
  // JSON allows "\ud800" escapes: a checkout that builds order ids from broken text sends them as they are.
  const order = 'order-\ud800';
  const otherOrder = 'order-\udc00';
  const redeem = async (orderId: string) => {
    const answer = await httpGraphQL(app.url, RedeemCouponDocument, { code: code as string, orderId, userId: 'surrogate-user' }, merchant);
    return answer.body.data?.redeemCoupon.outcome ?? answer.body.errors?.[0]?.extensions?.code;
  };
  const cancel = async (orderId: string) => {
    const answer = await httpGraphQL(app.url, CancelRedemptionDocument, { code: code as string, orderId }, merchant);
    return answer.body.data?.cancelRedemption.status ?? answer.body.errors?.[0]?.extensions?.code;
  };

  const first = await redeem(order);
  const repeat = await redeem(order);
  const cancelledByAnother = await cancel(otherOrder);

  // Either such ids are refused (BAD_USER_INPUT each time), or the order is kept as given: a repeat of the
  // same order is REDEEMED (never ALREADY_REDEEMED), and another order cannot cancel it.
  expect({ first, repeat, cancelledByAnother }).toEqual({
    first: first === 'BAD_USER_INPUT' ? 'BAD_USER_INPUT' : 'REDEEMED',
    repeat: first === 'BAD_USER_INPUT' ? 'BAD_USER_INPUT' : 'REDEEMED',
    cancelledByAnother: 'BAD_USER_INPUT',
  });
});

test("DEFECT: a retried cancellation is refused when the process that redeemed runs 2 s ahead of the one that cancelled (lastEvent orders the trail by the app's clock)", async () => {
  const [code] = await storeCoupons('skew-user');
  const repository = new PrismaCouponLifecycleRepository(db);
  // Two service processes whose clocks differ by 2 s (within what hosts drift apart without NTP for a while).
  const ahead = new CouponService(repository, { now: () => new Date(Date.now() + 2000) });
  const onTime = new CouponService(repository, { now: () => new Date() });

  expect((await ahead.redeem(shop, code as string, 'order-1', 'skew-user')).outcome).toBe('REDEEMED');
  const cancelled = await onTime.cancel(shop, code as string, 'order-1');
  expect(cancelled.state?.status).toBe('ACTIVE');

  // The checkout's retry of the same cancellation (its first answer was lost): documented as safe to retry.
  const retried = await onTime.cancel(shop, code as string, 'order-1').then(
    (coupon) => coupon.state?.status,
    (error: Error) => error.message,
  );

  expect(retried).toBe('ACTIVE');
});

test('DEFECT: a status change is not a heap-only (HOT) update once the page is full, as the README and the repository claim', async () => {
  const codes = await storeCoupons('hot-user', 500);
  // The first row of the batch's second page: a page holding only these live rows, nothing to prune.
  const first = (
    await pg.query<{ code: string; block: string }>(
      `WITH batch AS (SELECT code, ctid, (ctid::text::point)[0] AS block FROM coupons WHERE code = ANY($1::bpchar[]))
       SELECT code, block::text AS block FROM batch WHERE block > (SELECT min(block) FROM batch) ORDER BY ctid LIMIT 1`,
      [codes],
    )
  ).rows[0] as { code: string; block: string };
  const repository = new PrismaCouponLifecycleRepository(db);

  expect(await repository.redeem({ code: first.code, orderId: 'order-hot', userId: 'hot-user', actor: { userId: 'shop', role: 'merchant' }, now: new Date() })).not.toBeNull();

  // A heap-only update keeps the new row version on the same page (and adds no index entries); a full page
  // sends it elsewhere, and every index on coupons (five) gets a new entry.
  const after = await pg.query<{ block: string }>(`SELECT (ctid::text::point)[0]::text AS block FROM coupons WHERE code = $1`, [first.code]);
  expect(after.rows[0]?.block).toBe(first.block);
});
