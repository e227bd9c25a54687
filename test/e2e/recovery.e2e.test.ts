import { spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { RunningApp } from '../../src/app';
import { createDb, type Db } from '../../src/db/client';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import { connectRedis, createRedis } from '../../src/redis/client';
import { RedisKeys } from '../../src/redis/keys';
import type { ScriptedRedis } from '../../src/redis/scripts';
import {
  CouponIssuedDocument,
  CreatePromotionDocument,
  DeadLettersDocument,
  IssuanceDocument,
  IssueCouponDocument,
  PromotionAuditDocument,
} from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, record, tokenFor, wsClient } from '../helpers/clients';
import { createConsumer } from '../helpers/consumers';
import { createTestEnvironment, deleteKeys, eventually, type TestEnvironment } from '../helpers/environment';
import { ROOT, serviceEnv, spawnService } from '../helpers/service-process';

/** Recovery as clients and operators see it: Redis losing its data, a killed service, the audit and dead letters. */

let env: TestEnvironment;
let db: Db;
let redis: ScriptedRedis;
let keys: RedisKeys;
let app: RunningApp | null = null;
let child: ChildProcess | null = null;

beforeAll(async () => {
  env = await createTestEnvironment('recovery_e2e');
  db = createDb(env.databaseUrl);
  redis = createRedis(env.redisUrl, 'test-commands');
  await connectRedis(redis);
  keys = new RedisKeys(env.prefix);
});

afterEach(async () => {
  await app?.stop();
  app = null;
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = null;
});

afterAll(async () => {
  redis.disconnect();
  await db.$disconnect();
  await env.cleanup();
});

async function createPromotion(url: string, totalStock: number): Promise<string> {
  const admin = await tokenFor('admin', { admin: true });
  const input = { name: 'recovery', totalStock, endsAt: new Date(Date.now() + 3600_000).toISOString() };
  const created = await httpGraphQL(url, CreatePromotionDocument, { input }, admin);
  return created.body.data?.createPromotion.id as string;
}

async function issue(url: string, promotionId: string, user: string) {
  return (await httpGraphQL(url, IssueCouponDocument, { promotionId }, await tokenFor(user))).body.data?.issueCoupon;
}

const ready = async (url: string) => (await fetch(`${url}/readyz`)).status;

function runAudit(...args: string[]): { code: number | null; out: string } {
  const result = spawnSync(process.execPath, ['-r', '@swc-node/register', join(ROOT, 'src', 'ops', 'audit-cli.ts'), ...args], {
    env: { ...process.env, DATABASE_URL: env.databaseUrl, REDIS_URL: env.redisUrl, REDIS_KEY_PREFIX: env.prefix },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

test('When Redis loses its data under a running service, then readyz says so, the state is rebuilt, a waiting subscription ends NOT_FOUND, and no coupon is oversold', async () => {
  // No periodic pass: the first /readyz after the loss is what notices it, so the test sees the 503.
  app = await startTestApp(env, { ROLE: 'api', RECONCILE_INTERVAL_MS: '3600000' });
  const promotionId = await createPromotion(app.url, 5);
  // Two coupons stored by a consumer, then the consumer is gone: the third request stays QUEUED.
  for (const user of ['u1', 'u2']) expect((await issue(app.url, promotionId, user))?.outcome).toBe('QUEUED');
  const consumer = await createConsumer({ redisUrl: env.redisUrl, redis, keys, db, options: { consumerName: 'before-the-loss' } });
  consumer.start();
  await eventually(async () => ((await db.coupon.count({ where: { promotionId } })) === 2 ? true : undefined), 15_000, 'two stored');
  await consumer.stop();
  const waiting = await issue(app.url, promotionId, 'u3');
  expect(waiting?.outcome).toBe('QUEUED');
  const socket = wsClient(app.url, await tokenFor('u3'));
  const feed = record(socket, CouponIssuedDocument, { requestId: waiting?.requestId as string });
  await new Promise((r) => setTimeout(r, 300));
  expect(await ready(app.url)).toBe(200);

  await deleteKeys(env.redisUrl, env.prefix); // what a Redis restart without persistence does to this deployment

  const body = await eventually(async () => {
    const res = await fetch(`${app?.url}/readyz`);
    return res.status === 503 ? ((await res.json()) as Record<string, string>) : undefined;
  }, 10_000, 'readyz 503');
  expect(body.redisState).toContain('lost');
  await eventually(async () => ((await ready(app?.url as string)) === 200 ? true : undefined), 15_000, 'readyz 200 again');
  const ended = (await feed.done) as { error: unknown };
  expect(JSON.stringify(ended.error)).toContain('NOT_FOUND');
  await socket.dispose();

  // Rebuilt from PostgreSQL: 5 − 2 stored = 3 left; the lost request's unit is free again. Ten try: three get one.
  const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => issue(app?.url as string, promotionId, `after-${i}`)));
  expect(outcomes.filter((o) => o?.outcome === 'QUEUED')).toHaveLength(3);
  expect(outcomes.filter((o) => o?.outcome === 'SOLD_OUT')).toHaveLength(7);
  const admin = await tokenFor('admin', { admin: true });
  const auditReply = await httpGraphQL(app.url, PromotionAuditDocument, { id: promotionId }, admin);
  expect(auditReply.body.data?.promotionAudit).toMatchObject({ holds: true, totalStock: 5, remainingStock: 0, persisted: 2, inFlight: 3 });
});

test('When requests ended FAILED, then deadLetters pages them for admins only, and issuance remembers them from PostgreSQL', async () => {
  app = await startTestApp(env, { ROLE: 'api' });
  const promotionId = await createPromotion(app.url, 5);
  const failures = new PrismaFailureRepository(db);
  const ids = ['a', 'b', 'c'].map((s) => `${promotionId}.${s.repeat(32)}`);
  for (const [i, requestId] of ids.entries()) {
    await failures.record({ requestId, promotionId, userId: `user-${i}`, position: i + 1, reason: `reason ${i}`, deliveries: 5, requestedAt: new Date() });
    await new Promise((r) => setTimeout(r, 5)); // distinct failedAt, newest last
  }
  const admin = await tokenFor('admin', { admin: true });
  const first = await httpGraphQL(app.url, DeadLettersDocument, { promotionId, first: 2 }, admin);
  expect(first.body.data?.deadLetters.map((d) => d.requestId)).toEqual([ids[2], ids[1]]);
  const next = await httpGraphQL(app.url, DeadLettersDocument, { promotionId, first: 2, after: ids[1] }, admin);
  expect(next.body.data?.deadLetters).toEqual([expect.objectContaining({ requestId: ids[0], userId: 'user-0', reason: 'reason 0', deliveries: 5 })]);

  const asUser = await httpGraphQL(app.url, DeadLettersDocument, { promotionId }, await tokenFor('user-0'));
  expect(asUser.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  const anonymous = await httpGraphQL(app.url, PromotionAuditDocument, { id: promotionId });
  expect(anonymous.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  const unknown = await httpGraphQL(app.url, PromotionAuditDocument, { id: '00000000-0000-4000-8000-000000000000' }, admin);
  expect(unknown.body.data?.promotionAudit).toBeNull();

  // No status in Redis (it expired, or Redis lost it): the failure is still known.
  const own = await httpGraphQL(app.url, IssuanceDocument, { requestId: ids[0] as string }, await tokenFor('user-0'));
  expect(own.body.data?.issuance).toMatchObject({ requestId: ids[0], status: 'FAILED', failureReason: 'reason 0' });
});

async function startService(): Promise<{ url: string; exit: Promise<unknown> }> {
  const service = spawnService(serviceEnv(env, { NODE_ENV: '' }));
  child = service.child;
  return { url: await service.started, exit: service.exit };
}

test('When the whole service is SIGKILLed mid-rush and restarted at once, then every QUEUED reads ISSUED within seconds, and npm run audit agrees', async () => {
  const first = await startService();
  const promotionId = await createPromotion(first.url, 400);
  const answers = await Promise.all(Array.from({ length: 400 }, (_, i) => issue(first.url, promotionId, `crowd-${i}`)));
  child?.kill('SIGKILL');
  await first.exit;
  const queued = answers.filter((a) => a?.outcome === 'QUEUED').map((a) => a?.requestId as string);
  expect(queued).toHaveLength(400);

  const restartedAt = Date.now();
  const second = await startService();
  const tokens = new Map<string, string>();
  for (let i = 0; i < 400; i++) tokens.set(queued[i] as string, await tokenFor(`crowd-${i}`));
  await eventually(
    async () => {
      const statuses = await Promise.all(queued.map(async (requestId) => (await httpGraphQL(second.url, IssuanceDocument, { requestId }, tokens.get(requestId))).body.data?.issuance?.status));
      return statuses.every((s) => s === 'ISSUED') ? true : undefined;
    },
    20_000,
    'every QUEUED ISSUED after the restart',
  );
  console.log(`whole service SIGKILLed and restarted: every QUEUED read ISSUED ${Date.now() - restartedAt} ms after the restart began`);
  expect(await db.coupon.count({ where: { promotionId } })).toBe(400);

  const ok = runAudit('--promotion', promotionId);
  expect(ok).toMatchObject({ code: 0 });
  expect(ok.out).toMatch(new RegExp(`HOLDS ${promotionId} total=400 remaining=0 persisted=400 inFlight=0`));
  await redis.incr(keys.promotion(promotionId).stock); // a unit appears from nowhere
  const broken = runAudit();
  expect(broken.code).toBe(1);
  expect(broken.out).toContain(`BROKEN ${promotionId}`);
  await redis.decr(keys.promotion(promotionId).stock);
  expect(runAudit('--promotion', 'no-such-promotion').code).toBe(2);

  // Redis loses its data while no service runs to rebuild it: the audit lists the promotions from
  // PostgreSQL, so it cannot answer "nothing to check" and exit 0.
  child?.kill('SIGKILL');
  await second.exit;
  await deleteKeys(env.redisUrl, env.prefix);
  const wiped = runAudit();
  expect(wiped.code).toBe(2);
  expect(wiped.out).toContain(`UNCHECKED ${promotionId}`);
  expect(wiped.out).not.toContain('no promotion to check');
});
