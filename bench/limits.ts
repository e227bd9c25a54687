/**
 * `npm run bench:limits`: what the rate limits cost and what they protect, in one run, on loopback, bounded.
 *   1. hot path — the same service twice: issueCoupon's bucket off (RATE_LIMIT_ISSUE_PER_SECOND=0) and on but never
 *      refusing (a rate of 1,000,000/s), in alternating phases (off, on, off, on), the same load each time;
 *   2. victim   — a crowd of users calling issueCoupon (each far under its limit) alone, then while one token
 *      hammers issueCoupon on as many connections as it likes, against the default limits.
 * Prints a markdown report and writes it to bench/results/limits-latest.md. What it created is removed at the end.
 * Options through the environment: BENCH_DURATION (5 s a phase), BENCH_CONNECTIONS (50), BENCH_HAMMER_CONNECTIONS (50),
 * BENCH_REDIS_URL, BENCH_DATABASE_URL (default coupons_bench_limits; the name must contain "bench": it is emptied).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { signToken } from '../src/api/auth';
import { freePort, startService, stopChild, type Child } from './children';
import { runLoad, type LoadResult, type LoadSpec } from './load';
import { ISSUE_COUPON, createPromotion, deleteKeysWithPrefix, truncateBenchTables } from './service';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
// A database of its own by default: `npm run bench` empties coupons_bench, and the two may run at the same time.
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_limits';
const positive = (name: string, fallback: number, max: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`${name} must be an integer from 1 to ${max}`);
  return n;
};
const DURATION = positive('BENCH_DURATION', 5, 120);
const CONNECTIONS = positive('BENCH_CONNECTIONS', 50, 1000);
const HAMMER_CONNECTIONS = positive('BENCH_HAMMER_CONNECTIONS', 50, 1000);
const USERS = 20_000;
const STOCK = 10_000_000;

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const outcomes = (r: LoadResult) => [...r.outcomes].map(([k, v]) => `${k} ${fmt(v)}`).join(', ');

async function main(): Promise<void> {
  const prefix = `bench:limits:${randomBytes(4).toString('hex')}:`;
  const secret = randomBytes(32).toString('hex');
  const children: Child[] = [];
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  try {
    execFileSync(process.execPath, ['scripts/ensure-built.js'], { cwd: ROOT, stdio: 'inherit' });
    await truncateBenchTables(DATABASE_URL);
    const admin = await signToken(secret, 'bench-admin', { admin: true });
    const crowd = await Promise.all(Array.from({ length: USERS }, async (_, i) => `Bearer ${await signToken(secret, `crowd-${i}`)}`));
    const hammer = `Bearer ${await signToken(secret, 'hammer')}`;

    const start = async (name: string, limits: Record<string, string>) => {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const env = {
        NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, REDIS_URL, JWT_SECRET: secret,
        REDIS_KEY_PREFIX: `${prefix}${name}:`, LOG_LEVEL: 'warn', ROLE: 'all', MIGRATE: 'true', SHUTDOWN_TIMEOUT_MS: '3000', ...limits,
      };
      log(`starting ${name}`);
      await startService(['node', 'dist/main.js'], env, url, ROOT, (child) => children.push(child));
      const promotionId = await createPromotion(url, admin, { name, totalStock: STOCK, perUserLimit: 100, endsAt: new Date(Date.now() + 3600_000) });
      return { url, promotionId };
    };
    const load = (title: string, target: { url: string; promotionId: string }, connections: number, tokens: string[]): LoadSpec => {
      const body = JSON.stringify({ query: ISSUE_COUPON, variables: { p: target.promotionId } });
      return { title, url: `${target.url}/graphql`, durationSeconds: DURATION, connections, pipelining: 1, request: (n) => ({ headers: { authorization: tokens[n % tokens.length] as string }, body }) };
    };

    // 1. The hot path with the bucket off and on, alternating, each warmed up first.
    const off = await start('bucket-off', { RATE_LIMIT_ISSUE_PER_SECOND: '0' });
    const on = await start('bucket-on', { RATE_LIMIT_ISSUE_PER_SECOND: '1000000', RATE_LIMIT_ISSUE_BURST: '1000000' });
    for (const t of [off, on]) await runLoad({ ...load('warm-up', t, CONNECTIONS, crowd), durationSeconds: 2 });
    const hot: { label: string; r: LoadResult }[] = [];
    for (const round of [1, 2]) {
      for (const [label, t] of [['bucket off', off], ['bucket on (never refusing)', on]] as const) {
        log(`hot path: ${label}, round ${round}`);
        hot.push({ label: `${label}, round ${round}`, r: await runLoad(load(label, t, CONNECTIONS, crowd)) });
      }
    }

    // 2. The victim crowd alone, then beside one hammering token, on the default limits; and, for comparison,
    // beside the same hammer on the service whose issueCoupon bucket is off.
    log('victim beside a hammering token, bucket off');
    const [victimUnlimited, attackerUnlimited] = await Promise.all([
      runLoad(load('victim', off, CONNECTIONS, crowd)),
      runLoad(load('hammer', off, HAMMER_CONNECTIONS, [hammer])),
    ]);
    await Promise.all(children.splice(0).map((c) => stopChild(c)));
    const defaults = await start('defaults', {});
    await runLoad({ ...load('warm-up', defaults, CONNECTIONS, crowd), durationSeconds: 2 });
    log('victim alone');
    const alone = await runLoad(load('victim alone', defaults, CONNECTIONS, crowd));
    log('victim beside a hammering token');
    const [victim, attacker] = await Promise.all([
      runLoad(load('victim', defaults, CONNECTIONS, crowd)),
      runLoad(load('hammer', defaults, HAMMER_CONNECTIONS, [hammer])),
    ]);
    await Promise.all(children.splice(0).map((c) => stopChild(c)));

    const row = (label: string, r: LoadResult) => `| ${label} | ${fmt(r.requestsPerSecond)} | ${r.p50Ms} | ${r.p99Ms} | ${outcomes(r)} |`;
    const markdown = [
      `## Rate-limit benchmark, ${new Date().toISOString().slice(0, 16)}Z`,
      '',
      `node ${process.version} · ${cpus().length} cores · ${DURATION} s a phase · ${CONNECTIONS} connections (${HAMMER_CONNECTIONS} for the hammer) · ${fmt(USERS)} users · autocannon in this process, on the same cores`,
      '',
      '### issueCoupon hot path: the bucket in the reservation script, off and on',
      '',
      '| phase | req/s | p50 ms | p99 ms | answers |',
      '| --- | --- | --- | --- | --- |',
      ...hot.map(({ label, r }) => row(label, r)),
      '',
      '### A crowd\'s issueCoupon, alone and beside one token hammering it (default limits: 5/s, bursts of 10)',
      '',
      '| phase | req/s | p50 ms | p99 ms | answers |',
      '| --- | --- | --- | --- | --- |',
      row('crowd alone', alone),
      row('crowd, during the hammer', victim),
      row('the hammering token', attacker),
      row('crowd, during the hammer, issueCoupon bucket off', victimUnlimited),
      row('the hammering token, issueCoupon bucket off', attackerUnlimited),
      '',
      `The hammering token got ${fmt(attacker.outcomes.get('QUEUED') ?? 0)} QUEUED in ${DURATION} s (the bucket allows at most 10 + 5 × ${DURATION} = ${10 + 5 * DURATION}); ` +
        'the rest were HTTP 429. With the bucket off it gets its per-user limit (100) at once, then ALREADY_REQUESTED. ' +
        'Either way each of its requests costs the service its HTTP, token and GraphQL work: the limit bounds what a ' +
        'token obtains, not the CPU its requests take (that is bounded by connection and parse limits, and upstream).',
      '',
    ].join('\n');
    process.stdout.write(`\n${markdown}`);
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'limits-latest.md'), markdown);
    log('written to bench/results/limits-latest.md');
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
    await deleteKeysWithPrefix(redis, prefix);
    await truncateBenchTables(DATABASE_URL).catch((error: unknown) => log(`could not empty the bench database: ${String(error)}`));
    await redis.quit();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
