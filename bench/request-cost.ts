/**
 * `node -r @swc-node/register bench/request-cost.ts DIR [DIR…]`: the service's CPU time per issueCoupon request,
 * for one or more checkouts of it (each with its dist/ built), measured alternately, round after round.
 *
 * Requests per second depend on everything else the machine runs; CPU seconds the server process spent per
 * request (utime + stime from /proc, GC and background timers included) much less so: this compares builds on a
 * busy machine, where `npm run bench` cannot. Each service runs with ROLE=api (no consumer: its stream just grows)
 * and LOG_LEVEL=info, on its own key prefix; each round sends a fixed number of requests to each, keep-alive, from
 * this process, first to a promotion answering QUEUED, then to one sold out. Linux only (/proc).
 *
 * Options (env): COST_REQUESTS (per phase and round, 20000), COST_ROUNDS (5), COST_WARMUP (10000 per service),
 * COST_CONNECTIONS (32), COST_DATABASE_URL (the databases' base name, which must contain "bench"), BENCH_REDIS_URL.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { PER_USER_LIMIT, freePort, startService, stopChild, type Child } from './children';
import { processSeconds } from './cpu';
import { ISSUE_COUPON, benchDatabaseName, createPromotion, deleteKeysWithPrefix, signBenchTokens } from './service';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Each service gets a database of its own (this name plus its index), dropped at the end: no state guard repairs another's promotions. */
const DATABASE_URL = process.env.COST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_cost';
const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const REQUESTS = num('COST_REQUESTS', 20_000);
const ROUNDS = num('COST_ROUNDS', 5);
const WARMUP = num('COST_WARMUP', 10_000);
const CONNECTIONS = num('COST_CONNECTIONS', 32);
const USERS = 20_000;

const log = (message: string) => process.stderr.write(`cost: ${message}\n`);

interface Target {
  dir: string;
  child: Child;
  port: number;
  queued: string;
  soldOut: string;
  /** µs of server CPU per request, one value a round, by phase. */
  samples: { queued: number[]; soldOut: number[] };
}

/** Sends `count` issueCoupon requests over `connections` keep-alive sockets; fails on any non-200 answer. */
async function send(port: number, promotionId: string, authorization: string[], count: number, expect: string): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const body = JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } });
  let next = 0;
  const one = (n: number) =>
    new Promise<void>((done, fail) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/graphql',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', authorization: authorization[n % authorization.length], 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            if (res.statusCode !== 200 || !text.includes(`"outcome":"${expect}"`)) fail(new Error(`HTTP ${res.statusCode}: ${text}`));
            else done();
          });
        },
      );
      req.on('error', fail);
      req.end(body);
    });
  const worker = async () => {
    while (next < count) await one(next++);
  };
  try {
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  } finally {
    agent.destroy();
  }
}

async function cpuPerRequest(target: Target, promotionId: string, authorization: string[], expect: string): Promise<number> {
  const before = processSeconds(target.child.pid);
  await send(target.port, promotionId, authorization, REQUESTS, expect);
  const after = processSeconds(target.child.pid);
  if (before === null || after === null) throw new Error(`${target.dir}: the service is gone`);
  return ((after - before) * 1e6) / REQUESTS;
}

function databaseUrl(i: number): string {
  const url = new URL(DATABASE_URL);
  url.pathname = `/${benchDatabaseName(DATABASE_URL)}_${i}`;
  return url.toString();
}

async function dropDatabases(count: number): Promise<void> {
  const url = new URL(DATABASE_URL);
  url.pathname = '/postgres';
  const db = new Client({ connectionString: url.toString() });
  await db.connect();
  try {
    for (let i = 0; i < count; i++) await db.query(`DROP DATABASE IF EXISTS "${new URL(databaseUrl(i)).pathname.slice(1)}" WITH (FORCE)`);
  } finally {
    await db.end();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const dirs = process.argv.slice(2).map((d) => resolve(d));
  if (dirs.length === 0) throw new Error('usage: request-cost.ts DIR [DIR…] (checkouts with dist/ built)');
  const secret = randomBytes(32).toString('hex');
  const { admin, authorization } = await signBenchTokens(secret, USERS);
  const run = randomBytes(4).toString('hex');
  const redis = new Redis(REDIS_URL);
  const targets: Target[] = [];
  await dropDatabases(dirs.length); // left over by an interrupted run: the service creates them anew
  try {
    for (const [i, dir] of dirs.entries()) {
      const port = await freePort();
      const baseUrl = `http://127.0.0.1:${port}`;
      const env = {
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: databaseUrl(i),
        REDIS_URL,
        REDIS_KEY_PREFIX: `bench:cost:${run}:${i}:`,
        JWT_SECRET: secret,
        LOG_LEVEL: 'info',
        ROLE: 'api',
        MIGRATE: 'true',
        SHUTDOWN_TIMEOUT_MS: '3000',
      };
      const child = await startService(['node', 'dist/main.js'], env, baseUrl, dir, () => undefined, `service ${i}`);
      const endsAt = new Date(Date.now() + 3600_000);
      const promotion = (name: string, totalStock: number) => createPromotion(baseUrl, admin, { name, totalStock, perUserLimit: PER_USER_LIMIT, endsAt });
      const target: Target = { dir, child, port, queued: await promotion('cost queued', 10_000_000), soldOut: await promotion('cost sold out', 1), samples: { queued: [], soldOut: [] } };
      targets.push(target);
      // The one unit goes, so every later answer is SOLD_OUT; then the JIT settles on both paths.
      await send(port, target.soldOut, authorization, 1, 'QUEUED');
      await send(port, target.queued, authorization, WARMUP, 'QUEUED');
      await send(port, target.soldOut, authorization, WARMUP, 'SOLD_OUT');
      log(`${dir}: ready (pid ${child.pid})`);
    }
    for (let round = 0; round < ROUNDS; round++) {
      // The order turns each round, so no build always runs right after the same neighbour.
      for (let k = 0; k < targets.length; k++) {
        const target = targets[(round + k) % targets.length] as Target;
        target.samples.queued.push(await cpuPerRequest(target, target.queued, authorization, 'QUEUED'));
        target.samples.soldOut.push(await cpuPerRequest(target, target.soldOut, authorization, 'SOLD_OUT'));
      }
      log(`round ${round + 1}/${ROUNDS} done`);
    }
    const fmt = (xs: number[]) => `${median(xs).toFixed(1)} (${xs.map((x) => x.toFixed(0)).join(' ')})`;
    process.stdout.write('| build | QUEUED µs CPU/request, median (rounds) | SOLD_OUT µs CPU/request, median (rounds) |\n| --- | --- | --- |\n');
    for (const t of targets) process.stdout.write(`| ${t.dir} | ${fmt(t.samples.queued)} | ${fmt(t.samples.soldOut)} |\n`);
  } finally {
    for (const t of targets) await stopChild(t.child);
    for (const i of dirs.keys()) await deleteKeysWithPrefix(redis, `bench:cost:${run}:${i}:`);
    redis.disconnect();
    await dropDatabases(dirs.length);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
