import type { RunningApp } from '../../src/app';
import { startTestApp } from '../helpers/app';
import { createTestEnvironment, deleteKeys, eventually, type TestEnvironment } from '../helpers/environment';

/** When Redis loses a promotion's keys, a restart rebuilds them from PostgreSQL. */

let env: TestEnvironment;
let app: RunningApp | null = null;

beforeAll(async () => {
  env = await createTestEnvironment('rebuild');
});

afterAll(async () => {
  await app?.stop();
  await env.cleanup();
});

test('When Redis lost everything, then a restart restores stock and per-user counts from stored coupons', async () => {
  app = await startTestApp(env);
  const admin = { userId: 'admin', isAdmin: true, isMerchant: false };
  const p = await app.promotions.create(admin, { name: 'rebuild', totalStock: 10, perUserLimit: 2, endsAt: new Date(Date.now() + 3600_000) });
  const ids: string[] = [];
  for (const user of ['alice', 'alice', 'bob']) {
    const r = await app.issuance.issue({ userId: user, isAdmin: false, isMerchant: false }, p.id);
    ids.push(r.requestId as string);
    await new Promise((resolve) => setTimeout(resolve, 5)); // distinct requestedAt: "latest" is well defined
  }
  await eventually(async () => ((await app?.promotions.get(p.id))?.issuedCount === 3 ? true : undefined), 15_000, 'stored');
  await app.stop();

  await deleteKeys(env.redisUrl, env.prefix); // Redis restarted without persistence

  app = await startTestApp(env);
  const restored = await app.promotions.get(p.id);
  expect(restored).toMatchObject({ totalStock: 10, remainingStock: 7, issuedCount: 3, status: 'ACTIVE' });
  // alice holds 2 of 2, bob 1 of 2: the limits survive the loss.
  const alice = await app.issuance.issue({ userId: 'alice', isAdmin: false, isMerchant: false }, p.id);
  expect(alice).toMatchObject({ outcome: 'ALREADY_REQUESTED', requestId: ids[1] });
  const bob = await app.issuance.issue({ userId: 'bob', isAdmin: false, isMerchant: false }, p.id);
  expect(bob).toMatchObject({ outcome: 'QUEUED', position: 4, remainingStock: 6 });
  // Issued requests whose Redis status is gone are still answered from PostgreSQL.
  expect(await app.issuance.issuance({ userId: 'alice', isAdmin: false, isMerchant: false }, ids[0] as string)).toMatchObject({ status: 'ISSUED', userId: 'alice' });
  // And the consumer group was recreated: the new request is stored.
  await eventually(async () => ((await app?.promotions.get(p.id))?.issuedCount === 4 ? true : undefined), 15_000, 'stored after rebuild');
});
