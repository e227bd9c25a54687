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
 * Edges of the coupon lifecycle, each against the real PostgreSQL (and, for the API, the real service over
 * HTTP): text PostgreSQL would store altered, and processes whose clocks disagree. Coupons are written as rows directly: what is under test starts after issuance.
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

test('When an orderId holds an unpaired UTF-16 surrogate, then it is refused before it can be stored as another order id', async () => {
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

  // Refused each time: stored, both would read back as U+FFFD, one order id.
  expect({ first, repeat, cancelledByAnother }).toEqual({ first: 'BAD_USER_INPUT', repeat: 'BAD_USER_INPUT', cancelledByAnother: 'BAD_USER_INPUT' });
  expect(await redeem('order-\ud83d\ude00')).toBe('REDEEMED'); // a well-formed pair (an emoji) is fine
});

test('When the process that redeemed runs 2 s ahead of the one that cancels, then a retried cancellation is still answered', async () => {
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
