/**
 * `npm run bench:takeover`: how fast the queue recovers, at the default consumer settings, on loopback.
 *   1. SIGKILL one of two ROLE=consumer processes mid-rush;
 *   2. SIGSTOP one of two (a hung process: it never answers again until the run ends);
 *   3. SIGKILL a whole ROLE=all process mid-rush and start it again at once.
 * For 1 and 2 it reports the time from the signal until every request the signalled consumer held is ISSUED
 * (the takeover); for 3, from the restart until every QUEUED request is ISSUED. The target is 5 s. Each
 * scenario ends with the audit. Prints a markdown table and writes it to bench/results/takeover.md.
 * The rush is bounded (REQUESTS reservations); every process started is stopped by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrismaAuditRepository } from '../src/db/audit-repository';
import { createDb, type Db } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { PrismaPromotionRepository } from '../src/db/promotion-repository';
import { AuditService } from '../src/domain/audit-service';
import { newPromotionId, newRequestId } from '../src/domain/identifiers';
import type { PromotionRecord } from '../src/domain/types';
import { connectRedis, createRedis } from '../src/redis/client';
import { CONSUMER_GROUP, RedisKeys } from '../src/redis/keys';
import { RedisReservationStore } from '../src/redis/reservation-store';
import type { ScriptedRedis } from '../src/redis/scripts';
import { freePort } from './children';
import { deleteKeysWithPrefix } from './service';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_takeover';
const REQUESTS = 20_000;
const RUSH_MS = 4000;
const TARGET_MS = 5000;
const GIVE_UP_MS = 60_000;

const log = (message: string) => process.stderr.write(`bench:takeover: ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Context {
  redis: ScriptedRedis;
  keys: RedisKeys;
  db: Db;
  store: RedisReservationStore;
  audit: AuditService;
  prefix: string;
  children: ChildProcess[];
}

async function startProcess(ctx: Context, env: Record<string, string>): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-r', '@swc-node/register', join(ROOT, 'src', 'main.ts')], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX: ctx.prefix, PORT: String(port), LOG_LEVEL: 'warn', MIGRATE: 'false', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  ctx.children.push(child);
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(100)) {
    if (child.exitCode !== null) throw new Error(`a service process exited (${child.exitCode}) before it was ready`);
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)) return child;
  }
  throw new Error('a service process was not ready within 60 s');
}

async function newPromotion(ctx: Context): Promise<PromotionRecord> {
  const now = Date.now();
  const p: PromotionRecord = {
    id: newPromotionId(),
    name: 'takeover bench',
    totalStock: REQUESTS,
    perUserLimit: 1,
    startsAt: new Date(now - 60_000),
    endsAt: new Date(now + 3600_000),
    endedAt: null,
    createdAt: new Date(now),
  };
  await new PrismaPromotionRepository(ctx.db).create(p);
  await ctx.store.setupPromotion(p, 0);
  return p;
}

/** Reserves REQUESTS over about RUSH_MS, calling `at` once after `atMs`; returns the request ids. */
async function rush(ctx: Context, p: PromotionRecord, atMs: number, at: () => Promise<void>): Promise<string[]> {
  const ids: string[] = [];
  const startedAt = Date.now();
  const perTick = Math.ceil(REQUESTS / (RUSH_MS / 50));
  let fired = false;
  while (ids.length < REQUESTS) {
    if (!fired && Date.now() - startedAt >= atMs) {
      fired = true;
      await at();
    }
    const offset = ids.length;
    const batch = Array.from({ length: Math.min(perTick, REQUESTS - offset) }, (_, i) =>
      ctx.store.reserve({ promotionId: p.id, userId: `u${offset + i}`, requestId: newRequestId(p.id), idempotencyKey: null }),
    );
    for (const r of await Promise.all(batch)) ids.push(r.requestId as string);
    await sleep(50);
  }
  return ids;
}

/** Resolves with the time, from `since`, when every one of the requests reads ISSUED. */
async function issuedAt(ctx: Context, p: PromotionRecord, requestIds: string[], since: number): Promise<number> {
  let waiting = requestIds;
  while (waiting.length > 0) {
    if (Date.now() - since > GIVE_UP_MS) throw new Error(`${waiting.length} requests still not ISSUED after ${GIVE_UP_MS} ms`);
    const pipeline = ctx.redis.pipeline();
    for (const id of waiting) pipeline.hget(ctx.keys.status(p.id, id), 's');
    const replies = (await pipeline.exec()) ?? [];
    waiting = waiting.filter((_, i) => replies[i]?.[1] !== 'ISSUED');
    if (waiting.length > 0) await sleep(20);
  }
  return Date.now() - since;
}

/** The requests of the entries a consumer holds (pending with it). */
async function heldBy(ctx: Context, p: PromotionRecord, consumer: string): Promise<string[]> {
  const stream = ctx.keys.promotion(p.id).stream;
  const pending = (await ctx.redis.xpending(stream, CONSUMER_GROUP, '-', '+', 100_000, consumer)) as [string][];
  const ids: string[] = [];
  for (const [entryId] of pending) {
    const [entry] = (await ctx.redis.xrange(stream, entryId, entryId)) as [string, string[]][];
    const fields = entry?.[1] ?? [];
    const at = fields.indexOf('r');
    if (at >= 0) ids.push(fields[at + 1] as string);
  }
  return ids;
}

async function oneOfTwo(ctx: Context, signal: 'SIGKILL' | 'SIGSTOP'): Promise<string> {
  const p = await newPromotion(ctx);
  const name = `bench-${signal.toLowerCase()}`;
  const victim = await startProcess(ctx, { ROLE: 'consumer', CONSUMER_NAME: `${name}-a` });
  await startProcess(ctx, { ROLE: 'consumer', CONSUMER_NAME: `${name}-b` });
  const stream = ctx.keys.promotion(p.id).stream;
  let signalledAt = 0;
  // A healthy consumer holds a batch for milliseconds: while the crowd arrives, signal it at a moment it is
  // seen holding one (or after 2 s of trying).
  const takeover = (async () => {
    await sleep(1000);
    for (const deadline = Date.now() + 2000; Date.now() < deadline; ) {
      const seen = (await ctx.redis.xpending(stream, CONSUMER_GROUP, '-', '+', 1, `${name}-a`)) as unknown[];
      if (seen.length > 0) break;
    }
    victim.kill(signal);
    signalledAt = Date.now();
    const held = await heldBy(ctx, p, `${name}-a`);
    return { held: held.length, ms: await issuedAt(ctx, p, held, signalledAt) };
  })();
  const ids = await rush(ctx, p, RUSH_MS + 1, async () => undefined);
  const { held, ms } = await takeover;
  const all = await issuedAt(ctx, p, ids, signalledAt);
  const audit = await ctx.audit.check(p.id);
  return row(`${signal} one of two consumers mid-rush`, `${held} entries held`, ms, `all ${ids.length} ISSUED ${all} ms after the signal`, audit?.holds);
}

async function wholeService(ctx: Context): Promise<string> {
  const p = await newPromotion(ctx);
  const first = await startProcess(ctx, { ROLE: 'all' });
  const ids = await rush(ctx, p, RUSH_MS + 1, async () => undefined);
  first.kill('SIGKILL');
  const restartedAt = Date.now();
  await startProcess(ctx, { ROLE: 'all' });
  const all = await issuedAt(ctx, p, ids, restartedAt);
  const audit = await ctx.audit.check(p.id);
  return row('SIGKILL the whole service, restart at once', `${ids.length} QUEUED`, all, 'from the restart (start-up included)', audit?.holds);
}

function row(what: string, load: string, ms: number, note: string, holds: boolean | undefined): string {
  const verdict = ms <= TARGET_MS ? 'within' : 'OVER';
  return `| ${what} | ${load} | ${ms.toLocaleString('en-US')} ms (${verdict} ${TARGET_MS / 1000} s) | ${note} | ${holds ? 'holds' : 'DOES NOT HOLD'} |`;
}

async function main(): Promise<void> {
  await migrate(DATABASE_URL);
  const prefix = `bench-takeover:${randomBytes(4).toString('hex')}:`;
  const redis = createRedis(REDIS_URL, 'bench-takeover');
  await connectRedis(redis);
  const db = createDb(DATABASE_URL);
  const keys = new RedisKeys(prefix);
  const store = new RedisReservationStore(redis, keys);
  const audit = new AuditService(store, new PrismaAuditRepository(db), new PrismaPromotionRepository(db), { now: () => new Date() });
  const ctx: Context = { redis, keys, db, store, audit, prefix, children: [] };
  const rows: string[] = [];
  try {
    for (const scenario of [() => oneOfTwo(ctx, 'SIGKILL'), () => oneOfTwo(ctx, 'SIGSTOP'), () => wholeService(ctx)]) {
      rows.push(await scenario());
      log(rows[rows.length - 1] as string);
      for (const child of ctx.children.splice(0)) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      }
    }
  } finally {
    for (const child of ctx.children) child.kill('SIGKILL');
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await db.$disconnect();
  }
  const report = [
    `# Takeover (npm run bench:takeover), ${new Date().toISOString()}`,
    '',
    `Default consumer settings (heartbeat 1 s, lease 3 s), ${REQUESTS.toLocaleString('en-US')} reservations over ${RUSH_MS / 1000} s per scenario.`,
    '',
    '| fault | load | time to ISSUED | note | audit |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  process.stdout.write(`${report}\n`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'takeover.md'), report);
}

main().catch((error: unknown) => {
  log(String(error instanceof Error ? error.stack : error));
  process.exit(1);
});
