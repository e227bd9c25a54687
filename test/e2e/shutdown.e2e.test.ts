import type { ChildProcess } from 'node:child_process';
import { CouponIssuedDocument, CreatePromotionDocument, IssueCouponDocument } from '../generated/graphql';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { serviceEnv, spawnService } from '../helpers/service-process';
import { createDb } from '../../src/db/client';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import { auditFor, expectAuditHolds } from '../helpers/audit';

/** The real process, stopped as an orchestrator stops it: SIGTERM, and exit 0 within 10 s. */

let env: TestEnvironment;
let child: ChildProcess | null = null;

beforeAll(async () => {
  env = await createTestEnvironment('shutdown');
});

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await env.cleanup();
});

async function startService(): Promise<{ url: string; exit: Promise<{ code: number | null; signal: string | null }> }> {
  const service = spawnService(serviceEnv(env));
  child = service.child;
  return { url: await service.started, exit: service.exit };
}

test('When the service gets SIGTERM mid-sale, then it closes subscriptions, stores what it queued and exits 0 within 10 s', async () => {
  const { url, exit } = await startService();
  const admin = await tokenFor('admin', { admin: true });
  const created = await httpGraphQL(url, CreatePromotionDocument, { input: { name: 'shutdown', totalStock: 200, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, admin);
  const promotionId = created.body.data?.createPromotion.id as string;
  const socket = wsClient(url, await tokenFor('user-0'));
  const feed = record(socket, CouponIssuedDocument, { promotionId });
  const results = await Promise.all(
    Array.from({ length: 100 }, async (_, i) => (await httpGraphQL(url, IssueCouponDocument, { promotionId }, await tokenFor(`user-${i}`))).body.data?.issueCoupon.outcome),
  );
  expect(results.every((o) => o === 'QUEUED')).toBe(true);

  const signalledAt = Date.now();
  child?.kill('SIGTERM');
  const { code, signal } = await exit;

  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(Date.now() - signalledAt).toBeLessThan(10_000);
  expect(await feed.done).not.toBe('complete'); // the socket was closed by the server (1001 Going away)
  expect(((await feed.done) as { error: { code?: number } }).error.code).toBe(1001);
  await socket.dispose();

  // Whatever the consumer had not finished waits in the stream for the next process: nothing is lost.
  const db = createDb(env.databaseUrl);
  try {
    const stored = await db.coupon.count({ where: { promotionId } });
    expect(stored).toBeLessThanOrEqual(100);
    const restarted = await startService();
    await eventually(async () => ((await db.coupon.count({ where: { promotionId } })) === 100 ? true : undefined), 20_000, 'all 100 stored');
    child?.kill('SIGTERM');
    expect((await restarted.exit).code).toBe(0);
    // Once drained, the books balance: the 100 stored plus 100 left make the 200 of stock.
    const redis = createRedis(env.redisUrl, 'test-audit');
    await connectRedis(redis);
    try {
      const terms = await expectAuditHolds(auditFor(redis, new RedisKeys(env.prefix), db), promotionId);
      expect(terms).toMatchObject({ persisted: 100, inFlight: 0, remainingStock: 100 });
    } finally {
      redis.disconnect();
    }
  } finally {
    await db.$disconnect();
  }
});
