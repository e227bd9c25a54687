import calculateSlot from 'cluster-key-slot';
import type { Client as WsClient } from 'graphql-ws';
import { Client } from 'pg';
import { RedisKeys } from '../../src/redis/keys';
import { CouponIssuedDocument, CreatePromotionDocument, IssuanceDocument, IssueCouponDocument, PromotionAuditDocument, type CouponIssuedSubscription } from '../generated/graphql';
import { httpGraphQL, record, tokenFor, wsClient, type Recorded } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { shardSubscribers, startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster';
import { clusterServiceEnv, spawnService, type ServiceProcess } from '../helpers/service-process';

/**
 * A promotion's hash slot moves to another master, key by key, in the middle of its flash sale (live
 * resharding): 2 API processes and 1 consumer on a real 6-node cluster with REDIS_WAIT_REPLICAS=1. While the
 * slot is half moved, scripts meet ASK (keys already on the target) and TRYAGAIN (keys split between the two);
 * once it has moved, the old owner unsubscribes the shard channels of the slot, and the API process holding the
 * sockets must subscribe them again on the new owner. Confirmations published on the new owner before that
 * (the consumer is held until the moment the slot changes hands) are read again after the gap. Nothing may be
 * sold twice or lost, and every listener still hears its confirmation, once.
 */

const STOCK = 150;
const USERS = 250;
const LISTEN_EVERY = 5; // every 5th user listens on process B before the sale
const FINAL = ['QUEUED', 'SOLD_OUT', 'ALREADY_REQUESTED'];

let cluster: RedisClusterHandle;
let env: TestEnvironment;
let pg: Client;
const services: ServiceProcess[] = [];
let apiA: string;
let apiB: string;
const sockets: WsClient[] = [];

const settings = (role: 'api' | 'consumer', name: string) => clusterServiceEnv(env, cluster.seedNodes, role, name);

beforeAll(async () => {
  cluster = await startRedisCluster({ label: 'reshard' });
  env = await createTestEnvironment('redis_reshard');
  pg = new Client({ connectionString: env.databaseUrl });
  await pg.connect();
  services.push(spawnService(settings('api', 'api-a')), spawnService(settings('api', 'api-b')), spawnService(settings('consumer', 'consumer')));
  [apiA, apiB] = (await Promise.all(services.map((p) => p.started))) as [string, string];
}, 90_000);

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.dispose()));
  for (const p of services) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(services.map((p) => p.exit));
  await pg?.end();
  await cluster?.stop();
  await env?.cleanup();
});


test('When a promotion’s slot moves to another master mid-rush, then stock is exact, every QUEUED ends ISSUED, and every listener hears its confirmation from the new owner', async () => {
  const admin = await tokenFor('admin', { admin: true });
  const input = { name: 'reshard', totalStock: STOCK, perUserLimit: 1, endsAt: new Date(Date.now() + 3600_000).toISOString() };
  const created = await httpGraphQL(apiA, CreatePromotionDocument, { input }, admin);
  const promotionId = created.body.data?.createPromotion.id as string;
  expect(promotionId).toBeDefined();
  const slot = calculateSlot(`{p:${promotionId}}`);
  const source = await cluster.masterForKey(`{p:${promotionId}}`);
  const target = (await cluster.masters()).find((port) => port !== source) as number;
  const tokens = await Promise.all(Array.from({ length: USERS }, (_, u) => tokenFor(`rs-${u}`)));

  // Listeners on process B, live before the sale (their process subscribed on the slot's master).
  const keys = new RedisKeys(env.prefix);
  const listeners = Array.from({ length: USERS }, (_, u) => u).filter((u) => u % LISTEN_EVERY === 0);
  const feeds = new Map<number, Recorded<CouponIssuedSubscription>>();
  for (const u of listeners) {
    const socket = wsClient(apiB, tokens[u]);
    sockets.push(socket);
    feeds.set(u, record(socket, CouponIssuedDocument, { promotionId }));
  }
  for (const u of listeners) {
    const channel = keys.userChannel(promotionId, `rs-${u}`);
    await eventually(async () => ((await shardSubscribers(cluster, channel)) === 1 ? true : undefined), 10_000, `user ${u}'s feed to be live`);
  }

  // Buyers on process A, as the guide describes a client: SERVICE_UNAVAILABLE is retried after retryAfterMs
  // with the same idempotencyKey.
  const attempts: { at: number; outcome: string }[] = [];
  const finals = new Map<number, { outcome: string; requestId: string | null }>();
  async function buyer(u: number): Promise<void> {
    for (let attempt = 0; attempt < 200; attempt++) {
      const { body } = await httpGraphQL(apiA, IssueCouponDocument, { promotionId, idempotencyKey: `rs-${u}` }, tokens[u]);
      const outcome = body.data?.issueCoupon.outcome ?? String(body.errors?.[0]?.extensions?.code ?? 'NO_DATA');
      attempts.push({ at: Date.now(), outcome });
      if (FINAL.includes(outcome)) {
        finals.set(u, { outcome, requestId: body.data?.issueCoupon.requestId ?? null });
        return;
      }
      const wait = body.errors?.[0]?.extensions?.retryAfterMs;
      await new Promise((resolve) => setTimeout(resolve, (typeof wait === 'number' ? wait : 100) + Math.random() * 50));
    }
    throw new Error(`user ${u} never got an answer`);
  }
  let next = 0;
  const rush = Promise.all(
    Array.from({ length: 10 }, async () => {
      while (next < USERS) {
        await buyer(next++);
        await new Promise((resolve) => setTimeout(resolve, 10)); // paced: the sale outlasts the move's start
      }
    }),
  );

  // The consumer pauses once the sale is under way, so requests queued before the move wait for it. It goes on
  // once the target owns the slot but before the source knows: it then confirms them on the target (through
  // ASK) while the source still serves the slot's shard channels, where the API processes listen.
  await eventually(async () => (finals.size >= 30 ? true : undefined), 20_000, 'the rush to be under way');
  const consumer = services[2] as ServiceProcess;
  consumer.child.kill('SIGSTOP');
  await eventually(async () => (finals.size >= 60 ? true : undefined), 20_000, 'requests queued for the paused consumer');
  const waiting = [...finals.values()].filter((f) => f.outcome === 'QUEUED').map((f) => f.requestId as string);
  const movingAt = Date.now();
  let handOverAt = 0;
  const moved = await cluster.moveSlot(slot, target, {
    pauseMsPerKey: 20,
    midHandOver: async () => {
      handOverAt = Date.now();
      consumer.child.kill('SIGCONT');
      for (const requestId of waiting) {
        await eventually(async () => {
          const { body } = await httpGraphQL(apiB, IssuanceDocument, { requestId }, admin);
          return body.data?.issuance?.status === 'ISSUED' ? true : undefined;
        }, 20_000, `${requestId} to be confirmed while the slot changes hands`);
      }
    },
  });
  const movedAt = Date.now();
  await rush;

  expect(moved.fromPort).toBe(source);
  expect(await cluster.masterForKey(`{p:${promotionId}}`)).toBe(target);

  // Exactly the stock, once per user, and every QUEUED stored in PostgreSQL.
  const queued = [...finals.entries()].filter(([, f]) => f.outcome === 'QUEUED');
  expect(queued).toHaveLength(STOCK);
  const requestIds = queued.map(([, f]) => f.requestId as string);
  expect(new Set(requestIds).size).toBe(STOCK);
  const stored = async () => new Set((await pg.query<{ request_id: string }>('SELECT request_id FROM coupons WHERE promotion_id = $1', [promotionId])).rows.map((r) => r.request_id));
  await eventually(async () => ((await stored()).size >= STOCK ? true : undefined), 30_000, 'the coupons to be stored');
  expect([...(await stored())].sort()).toEqual([...requestIds].sort());
  const { rows: over } = await pg.query('SELECT user_id FROM coupons WHERE promotion_id = $1 GROUP BY user_id HAVING count(*) > 1', [promotionId]);
  expect(over).toEqual([]);

  // Every listener that got QUEUED heard ISSUED on its socket, whichever master published it.
  const heard = (u: number) => feeds.get(u)?.results.find((r) => r.data?.couponIssued.requestId === finals.get(u)?.requestId)?.data?.couponIssued;
  const queuedListeners = listeners.filter((u) => finals.get(u)?.outcome === 'QUEUED');
  await eventually(async () => (queuedListeners.every(heard) ? true : undefined), 10_000, 'every listener to hear its confirmation').catch(() => undefined);
  const missed = queuedListeners.filter((u) => !heard(u));
  expect(missed).toEqual([]);
  for (const u of queuedListeners) {
    expect(heard(u)?.status).toBe('ISSUED');
    // Once: a state read again after the gap is not sent a second time.
    expect(feeds.get(u)?.results.filter((r) => r.data?.couponIssued.requestId === finals.get(u)?.requestId)).toHaveLength(1);
  }

  // After the move: a late subscription by requestId on B replays the final state.
  const [lateUser, late] = queued[queued.length - 1] as [number, { requestId: string | null }];
  const lateSocket = wsClient(apiB, tokens[lateUser]);
  sockets.push(lateSocket);
  const replay = record(lateSocket, CouponIssuedDocument, { requestId: late.requestId as string });
  expect(await replay.done).toBe('complete');
  expect(replay.results.map((r) => r.data?.couponIssued.status)).toEqual(['ISSUED']);

  await eventually(async () => {
    const { body } = await httpGraphQL(apiB, PromotionAuditDocument, { id: promotionId }, admin);
    const audit = body.data?.promotionAudit;
    return audit?.holds && audit.inFlight === 0 ? audit : undefined;
  }, 30_000, 'the audit to hold with nothing in flight');

  // While the slot moves, a client may be told to come back later, never that the server broke.
  const refused = attempts.filter((a) => !FINAL.includes(a.outcome));
  expect(refused.filter((a) => a.outcome !== 'SERVICE_UNAVAILABLE')).toEqual([]);
  const between = (from: number, to: number) => refused.filter((a) => a.at >= from && a.at < to).length;
  const window = refused.length ? `${(refused[0]?.at ?? movingAt) - movingAt} to ${(refused[refused.length - 1]?.at ?? movingAt) - movingAt} ms after the move began` : 'none';
  console.log(
    `reshard: slot ${slot} ${source} -> ${target}: ${moved.keysMoved} keys migrated in ${handOverAt - movingAt} ms, handed over in ${movedAt - handOverAt} ms; ` +
      `${refused.length} of ${attempts.length} issueCoupon attempts refused with SERVICE_UNAVAILABLE (${between(movingAt, handOverAt)} while keys migrated, ` +
      `${between(handOverAt, movedAt + 1000)} at the hand-over), from ${window}; ${waiting.length} requests confirmed by the paused consumer at the hand-over; ` +
      `service errors logged: ${services.map((p, i) => `${['api-a', 'api-b', 'consumer'][i]} ${errorsLogged(p)}`).join('; ')}`,
  );
}, 120_000);

/** The service's warnings and errors (but the first start's), counted by message (the first words of the error). */
function errorsLogged(service: ServiceProcess): string {
  const counts = new Map<string, number>();
  for (const line of service.output().split('\n')) {
    if (!/"level":"(warn|error)"/.test(line) || line.includes('no state marker')) continue;
    const entry = JSON.parse(line) as { msg?: string; err?: { message?: string }; fixed?: { fix: string }[] };
    const message = entry.err?.message ?? '';
    const last = /Last error: ReplyError: (\w+)/.exec(message)?.[1];
    const detail = entry.fixed ? entry.fixed.map((f) => f.fix).join(', ') : message.split('. Last error')[0]?.slice(0, 80);
    const what = `${entry.msg}: ${detail}${last ? ` (last: ${last})` : ''}`;
    counts.set(what, (counts.get(what) ?? 0) + 1);
  }
  return counts.size ? [...counts].map(([what, n]) => `${n}× ${what}`).join(', ') : 'none';
}
