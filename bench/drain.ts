/**
 * `npm run bench:drain`: how fast ONE consumer process drains a full queue, beside PostgreSQL's own speed.
 *
 *   1. Fills a promotion's stream with REQUESTS reservations through the real issue path (issue.lua through the
 *      reservation store: stock, per-user counts and statuses consistent).
 *   2. Starts the service as `node dist/main.js` with ROLE=consumer and times the drain: from the first entry
 *      gone to the stream empty (start-up excluded). With a baseline directory (another checkout, built), its
 *      consumer drains a queue of its own first, in the same run.
 *   3. Inserts the same rows into a scratch table made LIKE coupons INCLUDING ALL (same indexes), dropped after:
 *      by the consumer's method (its INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING RETURNING, its batch
 *      size, one connection), then by faster ones (more connections, bigger batches, COPY through psql).
 *
 * Prints a markdown table (rows/s, ratios) and writes it to bench/results/drain.md. `runDrainBench` is exported
 * for the main benchmark; its result is plain JSON. Uses a bench database and a Redis prefix of its own; every
 * process it starts is stopped by its pid.
 *
 *   npm run bench:drain -- [--requests N] [--batch N] [--rounds N] [--baseline DIR] [--cpu-prof DIR]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { createDb } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { PrismaPromotionRepository } from '../src/db/promotion-repository';
import { newPromotionId, newRequestId } from '../src/domain/identifiers';
import type { PromotionRecord } from '../src/domain/types';
import { connectRedis, createRedis } from '../src/redis/client';
import { RedisKeys } from '../src/redis/keys';
import { RedisReservationStore } from '../src/redis/reservation-store';
import { freePort, startService, stopChild, type Child } from './children';
import { cpuBetween, snapshotCpu, type CpuSnapshot } from './cpu';
import { benchDatabaseName, deleteKeysWithPrefix } from './service';

const ROOT = join(__dirname, '..');

export interface DrainOptions {
  /** Reservations queued before the consumer starts (default 200,000). */
  requests?: number;
  /** CONSUMER_BATCH_SIZE, and the batch of the raw insert by the same method (default 500). */
  batchSize?: number;
  redisUrl?: string;
  /** A database whose name contains "bench" (it is emptied). */
  databaseUrl?: string;
  /** Rounds of every measurement, one after the other; each figure is the best of its rounds (default 1). */
  rounds?: number;
  /** A built checkout (dist/main.js) whose consumer drains first, as the "before" of the same run. */
  baselineDir?: string;
  /** Where the consumer processes write their CPU profiles (node --cpu-prof); none when unset. */
  cpuProfileDir?: string;
  log?: (message: string) => void;
}

export interface DrainConsumerResult {
  label: string;
  rows: number;
  drainMs: number;
  rowsPerSecond: number;
  /** rowsPerSecond over the raw insert by the consumer's own method. */
  ratioToSameMethod: number;
  /**
   * CPU time per row during the drain, µs: the consumer process, Redis, PostgreSQL (every backend, so other
   * clients of the same server count too), and what the rest of the machine used (% of one core).
   */
  cpu: { consumerUsPerRow: number | null; redisUsPerRow: number | null; postgresUsPerRow: number | null; othersPercent: number | null };
  /** From the consumer's /metrics (absent in a build without them): mean ms per batch of each stage, mean batch size. */
  stages: { insertMs: number; confirmMs: number; batchSize: number } | null;
}

export interface RawInsertResult {
  method: string;
  rows: number;
  ms: number;
  rowsPerSecond: number;
}

export interface DrainResult {
  requests: number;
  batchSize: number;
  rounds: number;
  consumers: DrainConsumerResult[];
  /** The first is the consumer's method (same statement, batch size, one connection). */
  raw: RawInsertResult[];
  sameMethodRowsPerSecond: number;
  bestRaw: RawInsertResult;
  markdown: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const perSecond = (rows: number, ms: number) => Math.round((rows * 1000) / Math.max(1, ms));
const DRAIN_GIVE_UP_MS = 600_000;

export async function runDrainBench(options: DrainOptions = {}): Promise<DrainResult> {
  const requests = options.requests ?? 200_000;
  const batchSize = options.batchSize ?? 500;
  const rounds = Math.max(1, options.rounds ?? 1);
  const sameMethod = `unnest INSERT, batch ${batchSize}, 1 connection (the consumer's method)`;
  const redisUrl = options.redisUrl ?? process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const databaseUrl = options.databaseUrl ?? process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_drain';
  const log = options.log ?? ((m: string) => process.stderr.write(`bench:drain: ${m}\n`));
  benchDatabaseName(databaseUrl);
  await migrate(databaseUrl);
  await emptyTables(databaseUrl);

  const prefix = `bench-drain:${randomBytes(4).toString('hex')}:`;
  const keys = new RedisKeys(prefix);
  const redis = createRedis(redisUrl, 'bench-drain');
  await connectRedis(redis);
  const db = createDb(databaseUrl, 2);
  const store = new RedisReservationStore(redis, keys);
  const pg = new Client({ connectionString: databaseUrl });
  await pg.connect();
  const scratch = `drain_scratch_${randomBytes(4).toString('hex')}`;
  const children: Child[] = [];

  const services: { label: string; dir: string }[] = [];
  if (options.baselineDir) services.push({ label: 'before (the --baseline build)', dir: resolve(options.baselineDir) });
  services.push({ label: 'this build', dir: ROOT });

  try {
    await store.markStateBuilt(); // the promotions below are set up by hand: nothing to rebuild
    for (const service of services) {
      if (!existsSync(join(service.dir, 'dist', 'main.js'))) throw new Error(`${service.dir}: no dist/main.js (npm run build)`);
    }
    await pg.query(`CREATE TABLE ${scratch} (LIKE coupons INCLUDING ALL)`);
    const drains: { label: string; rows: number; drainMs: number; cpu: DrainConsumerResult['cpu']; stages: DrainConsumerResult['stages'] }[] = [];
    const raw: RawInsertResult[] = [];
    for (let round = 1; round <= rounds; round++) {
      let rows: RawRow[] = [];
      for (const service of services) {
        // Every drain, like every raw insert, starts from an empty table: its indexes as small each time.
        await pg.query('TRUNCATE coupons CASCADE');
        const promotion = await newPromotion(db, store, requests);
        log(`round ${round}, ${service.label}: queuing ${requests} reservations`);
        await fill(store, promotion, requests);
        log(`round ${round}, ${service.label}: draining with one consumer`);
        const { ms: drainMs, cpu, stages } = await drain(service.dir, promotion.id);
        const { rows: count } = await pg.query<{ n: string }>('SELECT count(*) AS n FROM coupons WHERE promotion_id = $1', [promotion.id]);
        const stored = Number(count[0]?.n ?? 0);
        if (stored !== requests) throw new Error(`${service.label}: ${stored} coupons stored for ${requests} reservations`);
        drains.push({ label: service.label, rows: requests, drainMs, cpu, stages });
        log(`round ${round}, ${service.label}: ${perSecond(requests, drainMs)} rows/s`);
        // The same rows the consumer stored, inserted again below into a scratch table with the same indexes.
        ({ rows } = await pg.query<RawRow>(
          `SELECT id::text, code, promotion_id::text, user_id, request_id, to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS requested_at, position
           FROM coupons WHERE promotion_id = $1 ORDER BY position`,
          [promotion.id],
        ));
      }
      const measure = async (method: string, insert: () => Promise<void>) => {
        await pg.query(`TRUNCATE ${scratch}`);
        await pg.query('CHECKPOINT').catch(() => undefined); // each method starts from the same clean state
        const started = performance.now();
        await insert();
        const ms = performance.now() - started;
        const { rows: count } = await pg.query<{ n: string }>(`SELECT count(*) AS n FROM ${scratch}`);
        const stored = Number(count[0]?.n ?? 0);
        if (stored !== rows.length) throw new Error(`${method}: ${stored} rows stored of ${rows.length}`);
        raw.push({ method, rows: stored, ms: Math.round(ms), rowsPerSecond: perSecond(stored, ms) });
        log(`round ${round}, raw ${method}: ${perSecond(stored, ms)} rows/s`);
      };
      await measure(sameMethod, () => unnestInsert(databaseUrl, scratch, rows, batchSize, 1));
      await measure(`unnest INSERT, batch ${batchSize}, 2 connections`, () => unnestInsert(databaseUrl, scratch, rows, batchSize, 2));
      await measure('unnest INSERT, batch 5000, 2 connections', () => unnestInsert(databaseUrl, scratch, rows, 5000, 2));
      if (await hasPsql()) await measure('COPY (psql), 1 connection', () => copyInsert(databaseUrl, scratch, rows));
      else log('psql not found: COPY not measured');
    }

    // On a shared machine a round can be slowed by others: each figure is the best of its rounds.
    const bestOf = <T extends { rowsPerSecond: number }>(samples: T[]): T => samples.reduce((a, b) => (b.rowsPerSecond > a.rowsPerSecond ? b : a));
    const bestRawByMethod = [...new Set(raw.map((r) => r.method))].map((m) => bestOf(raw.filter((r) => r.method === m)));
    const same = bestRawByMethod[0] as RawInsertResult;
    const bestRaw = bestOf(bestRawByMethod);
    const consumers = services.map(({ label }) => {
      const d = bestOf(drains.filter((x) => x.label === label).map((x) => ({ ...x, rowsPerSecond: perSecond(x.rows, x.drainMs) })));
      return { label, rows: d.rows, drainMs: Math.round(d.drainMs), rowsPerSecond: d.rowsPerSecond, ratioToSameMethod: round2(d.rowsPerSecond / same.rowsPerSecond), cpu: d.cpu, stages: d.stages };
    });
    const markdown = report(requests, batchSize, rounds, consumers, bestRawByMethod, same, bestRaw);
    return { requests, batchSize, rounds, consumers, raw: bestRawByMethod, sameMethodRowsPerSecond: same.rowsPerSecond, bestRaw, markdown };
  } finally {
    for (const child of children) await stopChild(child);
    await pg.query(`DROP TABLE IF EXISTS ${scratch}`).catch(() => undefined);
    await pg.end();
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await db.$disconnect();
    await emptyTables(databaseUrl);
  }

  /** Starts one consumer process from `dir`, returns the drain time once the stream is empty, stops it. */
  async function drain(dir: string, promotionId: string): Promise<{ ms: number; cpu: DrainConsumerResult['cpu']; stages: DrainConsumerResult['stages'] }> {
    const port = await freePort();
    const profile = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(options.cpuProfileDir)}`] : [];
    const env = {
      ROLE: 'consumer',
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: prefix,
      CONSUMER_BATCH_SIZE: String(batchSize),
      CONSUMER_NAME: `drain-${randomBytes(3).toString('hex')}`,
      LOG_LEVEL: 'warn',
      MIGRATE: 'false',
    };
    const stream = keys.promotion(promotionId).stream;
    // Watched from before the spawn: the consumer may start draining before /readyz answers.
    let startedAt = 0;
    let watching = true;
    const pids = new Map<string, number>();
    let cpuAtStart: CpuSnapshot | null = null;
    const emptied = (async () => {
      for (const giveUpAt = Date.now() + DRAIN_GIVE_UP_MS; watching && Date.now() < giveUpAt; await sleep(5)) {
        const length = await redis.xlen(stream);
        if (startedAt === 0 && length < requests) {
          startedAt = performance.now();
          cpuAtStart = await snapshotCpu(pids, redis);
        }
        if (length === 0) {
          const ms = performance.now() - startedAt;
          return { ms, cpu: cpuAtStart ? cpuPerRow(cpuAtStart, await snapshotCpu(pids, redis), requests) : null };
        }
      }
      throw new Error(`the stream was not drained within ${DRAIN_GIVE_UP_MS} ms`);
    })();
    emptied.catch(() => undefined);
    try {
      const child = await startService(['node', ...profile, 'dist/main.js'], env, `http://127.0.0.1:${port}`, dir, (c) => {
        children.push(c);
        pids.set('consumer', c.pid);
      });
      const { ms, cpu } = await Promise.race([emptied, child.exited.then((how) => Promise.reject(new Error(`the consumer exited (${how}):\n${child.tail()}`)))]);
      const stages = await stagesOf(`http://127.0.0.1:${port}/metrics`);
      await stopChild(child);
      children.splice(children.indexOf(child), 1);
      const none = { consumerUsPerRow: null, redisUsPerRow: null, postgresUsPerRow: null, othersPercent: null };
      return { ms, cpu: cpu ?? none, stages };
    } finally {
      watching = false;
    }
  }
}

/** Empties the bench database (its name was checked): a service rebuilds the Redis state of promotions it finds. */
async function emptyTables(databaseUrl: string): Promise<void> {
  benchDatabaseName(databaseUrl);
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('TRUNCATE coupons, failed_requests, stock_additions, promotions CASCADE'); // CASCADE: the coupons' trail references them
  } finally {
    await client.end();
  }
}

/** The batch stages the consumer timed (coupon_consumer_batch_stage_seconds); null when it has no such metric. */
async function stagesOf(metricsUrl: string): Promise<DrainConsumerResult['stages']> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  const mean = (stage: string) =>
    (1000 * value(`coupon_consumer_batch_stage_seconds_sum\\{stage="${stage}"\\}`)) / value(`coupon_consumer_batch_stage_seconds_count\\{stage="${stage}"\\}`);
  const stages = { insertMs: round2(mean('insert')), confirmMs: round2(mean('confirm')), batchSize: Math.round(value('coupon_consumer_batch_size_sum') / value('coupon_consumer_batch_size_count')) };
  return Object.values(stages).every(Number.isFinite) ? stages : null;
}

function cpuPerRow(before: CpuSnapshot, after: CpuSnapshot, rows: number): DrainConsumerResult['cpu'] {
  const usage = cpuBetween(before, after);
  const seconds = (after.atMs - before.atMs) / 1000;
  const perRow = (name: string) => {
    const percent = usage.percent.get(name);
    return percent === undefined ? null : Math.round((percent / 100) * seconds * 1e6 / rows * 10) / 10;
  };
  const others = usage.othersPercent;
  return { consumerUsPerRow: perRow('consumer'), redisUsPerRow: perRow('redis'), postgresUsPerRow: perRow('postgres'), othersPercent: others === null ? null : Math.round(others) };
}

interface RawRow {
  id: string;
  code: string;
  promotion_id: string;
  user_id: string;
  request_id: string;
  requested_at: string;
  position: number;
}

async function newPromotion(db: ReturnType<typeof createDb>, store: RedisReservationStore, stock: number): Promise<PromotionRecord> {
  const now = Date.now();
  const p: PromotionRecord = {
    id: newPromotionId(),
    name: 'drain bench',
    totalStock: stock,
    perUserLimit: 1,
    startsAt: new Date(now - 60_000),
    endsAt: new Date(now + 3600_000),
    endedAt: null,
    createdAt: new Date(now),
  };
  await new PrismaPromotionRepository(db).create(p);
  await store.setupPromotion(p, 0);
  return p;
}

/** Reserves `count` coupons, one per user, through issue.lua; a few thousand calls in flight at a time. */
async function fill(store: RedisReservationStore, p: PromotionRecord, count: number): Promise<void> {
  const chunk = 2000;
  for (let offset = 0; offset < count; offset += chunk) {
    const calls = Array.from({ length: Math.min(chunk, count - offset) }, (_, i) =>
      store.reserve({ promotionId: p.id, userId: `u${offset + i}`, requestId: newRequestId(p.id), idempotencyKey: null }),
    );
    for (const r of await Promise.all(calls)) if (r.outcome !== 'QUEUED') throw new Error(`reservation refused: ${r.outcome}`);
  }
}

/** The consumer's INSERT (store_coupons' statement), by `connections` connections taking batches in turn. */
async function unnestInsert(databaseUrl: string, table: string, rows: RawRow[], batchSize: number, connections: number): Promise<void> {
  const sql = `
    INSERT INTO ${table} AS c (id, code, promotion_id, user_id, request_id, requested_at, position)
    SELECT t.id::uuid, t.code, t.promotion_id::uuid, t.user_id, t.request_id, t.requested_at::timestamptz, t.position
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[])
         AS t(id, code, promotion_id, user_id, request_id, requested_at, position)
    WHERE NOT EXISTS (SELECT 1 FROM failed_requests f WHERE f.request_id = t.request_id)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING c.id, c.code, c.promotion_id, c.user_id, c.request_id, c.requested_at, c.issued_at`;
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new Client({ connectionString: databaseUrl });
      await c.connect();
      return c;
    }),
  );
  let next = 0;
  try {
    await Promise.all(
      clients.map(async (client) => {
        for (let from = next; from < rows.length; from = next) {
          next += batchSize;
          const batch = rows.slice(from, from + batchSize);
          await client.query(sql, [
            batch.map((r) => r.id),
            batch.map((r) => r.code),
            batch.map((r) => r.promotion_id),
            batch.map((r) => r.user_id),
            batch.map((r) => r.request_id),
            batch.map((r) => r.requested_at),
            batch.map((r) => r.position),
          ]);
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

function psqlArgs(databaseUrl: string, command: string): string[] {
  return ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', databaseUrl, '-c', command];
}

function hasPsql(): Promise<boolean> {
  return new Promise((done) => {
    const child = spawn('psql', ['--version'], { stdio: 'ignore' });
    child.once('error', () => done(false));
    child.once('exit', (code) => done(code === 0));
  });
}

/** COPY … FROM STDIN, CSV, through psql (no driver dependency for it). */
function copyInsert(databaseUrl: string, table: string, rows: RawRow[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn('psql', psqlArgs(databaseUrl, `\\copy ${table} (id, code, promotion_id, user_id, request_id, requested_at, position) FROM STDIN WITH (FORMAT csv)`), {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', fail);
    child.once('exit', (code) => (code === 0 ? done() : fail(new Error(`psql COPY failed (${code}): ${stderr}`))));
    const csv = (v: string) => `"${v.replace(/"/g, '""')}"`;
    const lines = rows.map((r) => [r.id, r.code, r.promotion_id, csv(r.user_id), csv(r.request_id), r.requested_at, r.position].join(','));
    child.stdin.end(`${lines.join('\n')}\n`);
  });
}

const round2 = (n: number) => Math.round(n * 100) / 100;

function report(requests: number, batchSize: number, rounds: number, consumers: DrainConsumerResult[], raw: RawInsertResult[], same: RawInsertResult, best: RawInsertResult): string {
  const n = (v: number) => v.toLocaleString('en-US');
  return [
    `# Drain (npm run bench:drain), ${new Date().toISOString()}`,
    '',
    `${n(requests)} queued requests, one consumer process, batch ${batchSize}; best of ${rounds} round(s). Raw inserts: the same rows into a table LIKE coupons INCLUDING ALL.`,
    '',
    '| what | rows/s | x the consumer\'s method, raw | x the best raw |',
    '| --- | ---: | ---: | ---: |',
    ...consumers.map((c) => `| consumer: ${c.label} | ${n(c.rowsPerSecond)} | ${c.ratioToSameMethod.toFixed(2)} | ${round2(c.rowsPerSecond / best.rowsPerSecond).toFixed(2)} |`),
    ...raw.map((r) => `| raw: ${r.method} | ${n(r.rowsPerSecond)} | ${round2(r.rowsPerSecond / same.rowsPerSecond).toFixed(2)} | ${round2(r.rowsPerSecond / best.rowsPerSecond).toFixed(2)} |`),
    '',
    'CPU per row during the drain (µs; PostgreSQL counts every backend of the server, so other clients too):',
    '',
    '| consumer | consumer process | Redis | PostgreSQL | rest of the machine, % of a core |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...consumers.map((c) => `| ${c.label} | ${c.cpu.consumerUsPerRow ?? '-'} | ${c.cpu.redisUsPerRow ?? '-'} | ${c.cpu.postgresUsPerRow ?? '-'} | ${c.cpu.othersPercent ?? '-'} |`),
    '',
    'Batch stages, from the consumer\'s /metrics (mean per batch):',
    '',
    '| consumer | insert ms | confirm ms | entries per batch |',
    '| --- | ---: | ---: | ---: |',
    ...consumers.map((c) => (c.stages ? `| ${c.label} | ${c.stages.insertMs} | ${c.stages.confirmMs} | ${c.stages.batchSize} |` : `| ${c.label} | - | - | - |`)),
    '',
  ].join('\n');
}

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

if (require.main === module) {
  const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  runDrainBench({
    requests: number(argument('--requests')),
    batchSize: number(argument('--batch')),
    baselineDir: argument('--baseline'),
    rounds: number(argument('--rounds')),
    cpuProfileDir: argument('--cpu-prof'),
  })
    .then((result) => {
      process.stdout.write(`${result.markdown}\n`);
      mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
      writeFileSync(join(ROOT, 'bench', 'results', 'drain.md'), result.markdown);
    })
    .catch((error: unknown) => {
      process.stderr.write(`bench:drain: ${String(error instanceof Error ? error.stack : error)}\n`);
      process.exit(1);
    });
}
