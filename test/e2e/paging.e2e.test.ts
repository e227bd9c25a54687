import type { RunningApp } from '../../src/app';
import {
  CreatePromotionDocument,
  IssuanceDocument,
  IssueCouponDocument,
  MyCouponsDocument,
  PromotionsDocument,
  type PromotionStatus,
} from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';

/**
 * Keyset paging of promotions and myCoupons over HTTP: `after` is the last id of the previous page. Each test
 * file has its own database, so the promotions listed here are only this file's.
 */

let env: TestEnvironment;
let app: RunningApp;
let admin: string;
let alice: string;
let bob: string;

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();
const codeOf = (body: { errors?: { extensions?: Record<string, unknown> }[] }) => body.errors?.[0]?.extensions;

async function createPromotion(name: string, totalStock = 10, perUserLimit = 1): Promise<string> {
  const r = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name, totalStock, perUserLimit, endsAt: inAnHour() } }, admin);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.createPromotion.id as string;
}

/** Issues a coupon and waits until it is stored, so it is in myCoupons. */
async function issueStored(promotionId: string, token: string): Promise<string> {
  const r = await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, token);
  expect(r.body.data?.issueCoupon.outcome).toBe('QUEUED');
  const requestId = r.body.data?.issueCoupon.requestId as string;
  const issuance = await eventually(async () => {
    const s = await httpGraphQL(app.url, IssuanceDocument, { requestId }, token);
    return s.body.data?.issuance?.status === 'ISSUED' ? s.body.data.issuance : undefined;
  }, 15_000, 'ISSUED');
  return issuance.coupon?.id as string;
}

async function promotionsPage(first: number, after?: string, status?: PromotionStatus): Promise<string[]> {
  const r = await httpGraphQL(app.url, PromotionsDocument, { first, after, status });
  expect(r.body.errors).toBeUndefined();
  return (r.body.data?.promotions ?? []).map((p) => p.id);
}

async function couponsPage(token: string, first: number, after?: string, promotionId?: string): Promise<string[]> {
  const r = await httpGraphQL(app.url, MyCouponsDocument, { first, after, promotionId }, token);
  expect(r.body.errors).toBeUndefined();
  return (r.body.data?.myCoupons ?? []).map((c) => c.id);
}

/** Every page of `size`, each one read with the previous page's last id, until an empty or short page. */
async function walk(read: (after?: string) => Promise<string[]>, size: number): Promise<string[][]> {
  const pages: string[][] = [];
  let after: string | undefined;
  for (let i = 0; i < 200; i++) {
    const page = await read(after);
    if (page.length > 0) pages.push(page);
    if (page.length < size) return pages;
    after = page[page.length - 1];
  }
  throw new Error('paging did not end');
}

beforeAll(async () => {
  env = await createTestEnvironment('paging');
  app = await startTestApp(env, {
    RATE_LIMIT_USER_PER_SECOND: '100000',
    RATE_LIMIT_ANON_PER_SECOND: '100000',
    RATE_LIMIT_ISSUE_PER_SECOND: '100000',
    RATE_LIMIT_ISSUE_BURST: '100000',
  });
  [admin, alice, bob] = await Promise.all([tokenFor('admin-1', { admin: true }), tokenFor('alice'), tokenFor('bob')]);
});

afterAll(async () => {
  await app.stop();
  await env.cleanup();
});

describe('promotions', () => {
  // Created one after another: the newest first is the reverse of creation order.
  const created: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 7; i++) created.push(await createPromotion(`Paged ${i}`));
  });

  test('When a client reads every page with the last id of the previous one, then it sees every promotion once, newest first', async () => {
    const pages = await walk((after) => promotionsPage(3, after), 3);

    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    expect(pages.flat()).toEqual([...created].reverse());
  });

  test('When a promotion is created between two pages, then the next page is the one it would have been', async () => {
    const first = await promotionsPage(3);
    const before = await promotionsPage(3, first[2]);
    const newer = await createPromotion('Created between pages');

    const second = await promotionsPage(3, first[2]);

    expect(second).toEqual(before);
    expect(second).not.toContain(newer);
    expect((await promotionsPage(1))[0]).toBe(newer);
    created.push(newer);
  });

  test('When after is the last promotion, then the page is empty', async () => {
    const all = await promotionsPage(100);

    expect(await promotionsPage(100, all[all.length - 1])).toEqual([]);
  });

  test('When after names no promotion (unknown or malformed), then the page is empty', async () => {
    expect(await promotionsPage(5, '00000000-0000-4000-8000-000000000000')).toEqual([]);
    expect(await promotionsPage(5, 'not-an-id')).toEqual([]);
  });

  test.each([0, 101, -1])('When first is %i, then BAD_USER_INPUT names the field first', async (first) => {
    const r = await httpGraphQL(app.url, PromotionsDocument, { first });

    expect(codeOf(r.body)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
  });

  test('When first is 100, then up to 100 promotions are returned', async () => {
    expect((await promotionsPage(100)).length).toBe(created.length);
  });
});

describe('promotions(status) pages by live stock', () => {
  test('When most open promotions are sold out, then ACTIVE and SOLD_OUT pages read ahead and neither skips nor repeats one', async () => {
    // Newest first: 3 active ones are older than 103 sold-out ones, more than one read-ahead round (100).
    const active: string[] = [];
    for (let i = 0; i < 3; i++) active.unshift(await createPromotion(`Active ${i}`));
    const soldOut: string[] = [];
    for (let i = 0; i < 103; i++) {
      const id = await createPromotion(`Sold out ${i}`, 1);
      const r = await httpGraphQL(app.url, IssueCouponDocument, { promotionId: id }, bob);
      expect(r.body.data?.issueCoupon.outcome).toBe('QUEUED');
      soldOut.unshift(id);
    }
    const activeBefore = (await promotionsPage(100, undefined, 'ACTIVE')).filter((id) => !active.includes(id));

    const activePages = await walk((after) => promotionsPage(2, after, 'ACTIVE'), 2);
    const soldOutPages = await walk((after) => promotionsPage(100, after, 'SOLD_OUT'), 100);

    // The file's other promotions are active too and older than these: they come after them.
    expect(activePages.flat()).toEqual([...active, ...activeBefore]);
    expect(activePages[0]).toEqual(active.slice(0, 2));
    expect(soldOutPages.map((p) => p.length)).toEqual([100, 3]);
    expect(soldOutPages.flat()).toEqual(soldOut);
  });
});

describe('myCoupons', () => {
  let promotionA: string;
  let promotionB: string;
  // alice's coupons, newest first (stored one after another).
  const aliceCoupons: string[] = [];
  const aliceInA: string[] = [];

  beforeAll(async () => {
    promotionA = await createPromotion('Coupons A', 100, 10);
    promotionB = await createPromotion('Coupons B', 100, 10);
    for (let i = 0; i < 4; i++) {
      const a = await issueStored(promotionA, alice);
      aliceCoupons.unshift(a);
      aliceInA.unshift(a);
      aliceCoupons.unshift(await issueStored(promotionB, alice));
    }
    await issueStored(promotionA, bob);
  });

  test('When alice reads every page, then she sees each of her coupons once, newest first, and none of bob\'s', async () => {
    const pages = await walk((after) => couponsPage(alice, 3, after), 3);

    expect(pages.map((p) => p.length)).toEqual([3, 3, 2]);
    expect(pages.flat()).toEqual(aliceCoupons);
  });

  test('When the pages are of one promotion, then they hold only its coupons, in order', async () => {
    const pages = await walk((after) => couponsPage(alice, 3, after, promotionA), 3);

    expect(pages.flat()).toEqual(aliceInA);
  });

  test('When a coupon is stored between two pages, then the next page is the one it would have been', async () => {
    const first = await couponsPage(alice, 2);
    const before = await couponsPage(alice, 2, first[1]);
    const newer = await issueStored(promotionA, alice);

    const second = await couponsPage(alice, 2, first[1]);

    expect(second).toEqual(before);
    expect((await couponsPage(alice, 1))[0]).toBe(newer);
    aliceCoupons.unshift(newer);
    aliceInA.unshift(newer);
  });

  test('When after is her last coupon, then the page is empty', async () => {
    expect(await couponsPage(alice, 500, aliceCoupons[aliceCoupons.length - 1])).toEqual([]);
  });

  test('When after is not one of the list\'s coupons (another user\'s, another promotion\'s, unknown, malformed), then the page is empty', async () => {
    const bobs = await couponsPage(bob, 500, undefined, promotionA);
    const inB = aliceCoupons.find((id) => !aliceInA.includes(id)) as string;

    expect(bobs).toHaveLength(1);
    expect(await couponsPage(alice, 50, bobs[0])).toEqual([]);
    expect(await couponsPage(alice, 50, inB, promotionA)).toEqual([]);
    expect(await couponsPage(alice, 50, '00000000-0000-4000-8000-000000000000')).toEqual([]);
    expect(await couponsPage(alice, 50, 'not-an-id')).toEqual([]);
  });

  test('When no first is given, then up to 50 are returned; 500 is allowed', async () => {
    const r = await httpGraphQL(app.url, MyCouponsDocument, {}, alice);

    expect(r.body.data?.myCoupons.map((c) => c.id)).toEqual(aliceCoupons);
    expect(await couponsPage(alice, 500)).toEqual(aliceCoupons);
  });

  test.each([0, 501])('When first is %i, then BAD_USER_INPUT names the field first', async (first) => {
    const r = await httpGraphQL(app.url, MyCouponsDocument, { first }, alice);

    expect(codeOf(r.body)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
  });
});
