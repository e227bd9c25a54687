/**
 * `npm run bench`: in one run, on loopback, with bounded load that stops by itself,
 *   1. bare    — node:http + the service's reservation script (the ceiling), in a child process;
 *   2. service — the real service (dist/main.js) in a child process: issueCoupon answered QUEUED,
 *                then a promotion that sells out;
 * then waits for the consumer to store every queued request, checks QUEUED answers == coupon rows <= stock,
 * prints a markdown report and writes it to bench/results/latest.md. What it created is removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { Cleanup } from './cleanup';
import { LARGE_STOCK, PER_USER_LIMIT, freePort, serviceCommand, startBare, startService, stopChild, type Child } from './children';
import { runCompare } from './compare';
import { cpuBetween, snapshotCpu } from './cpu';
import { pickGenerator, runRotation, wrkInstalled, type RotationSpec } from './generator';
import type { LoadResult } from './load';
import { USAGE, parseOptions, type BenchOptions } from './options';
import { invariantHolds, renderReport, type PhaseReport } from './report';
import { ISSUE_COUPON, benchDatabaseName, couponRows, createPromotion, openBenchStores, reservations, signBenchTokens } from './service';
import { drainAndVerify } from './verify';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench';
/** The service exits by itself this long after SIGTERM at the latest (its SHUTDOWN_TIMEOUT_MS; default 8 s). */
const SERVICE_SHUTDOWN_MS = 3000;
/** CPU taken by processes outside the benchmark (% of one core) from which a phase's figures are flagged. */
const BUSY_MACHINE_PERCENT = 25;

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
const fmtInt = (n: number) => n.toLocaleString('en-US');

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (error) {
    const message = (error as Error).message;
    process.stderr.write(`${message}\n`);
    return message === USAGE ? 0 : 2; // --help, or a bad option
  }
  const cleanup = new Cleanup(log);
  const interrupted = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    return await (options.compare ? runCompare(options, cleanup) : bench(options, cleanup));
  } finally {
    await cleanup.run();
  }
}

async function bench(options: BenchOptions, cleanup: Cleanup): Promise<number> {
  const notes: string[] = [];
  const dbName = benchDatabaseName(DATABASE_URL);
  const prefix = `bench:${randomBytes(4).toString('hex')}:`;
  const servicePrefix = `${prefix}svc:`;
  const profileDir = options.profileDir === null ? null : resolve(options.profileDir);
  const nodeFlags = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const command = serviceCommand(options.service, nodeFlags, notes);
  const generator = pickGenerator(options.generator);

  // --- Setup: clients, a clean database, tokens, the service and its two promotions.
  const redis = await openBenchStores(REDIS_URL, DATABASE_URL, prefix, cleanup, log);

  // Signed up front: the load generator must not spend its CPU on HMACs.
  const secret = randomBytes(32).toString('hex');
  const users = Array.from({ length: options.users }, (_, i) => `bench-user-${i}`);
  const { admin: adminToken, authorization } = await signBenchTokens(secret, users.length);

  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  log(`starting the service: ${command.join(' ')} (port ${port}, database ${dbName}, keys ${servicePrefix}*)`);
  const service = await startService(
    command,
    {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL,
      REDIS_URL,
      REDIS_KEY_PREFIX: servicePrefix,
      JWT_SECRET: secret,
      LOG_LEVEL: 'info', // the default; its info lines are kept out of the bench's output (children.ts)
      ROLE: 'all',
      MIGRATE: 'true',
      SHUTDOWN_TIMEOUT_MS: String(SERVICE_SHUTDOWN_MS),
    },
    baseUrl,
    ROOT,
    // Registered as soon as it exists, so an interrupt while it starts still stops it.
    (child) => cleanup.add('stopping the service', () => stopChild(child)),
  );

  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  cleanup.add('closing the PostgreSQL client', () => db.end());

  const endsAt = new Date(Date.now() + 3600_000);
  const promotion = (name: string, totalStock: number) => createPromotion(baseUrl, adminToken, { name, totalStock, perUserLimit: PER_USER_LIMIT, endsAt });
  const queuedPromotion = await promotion('bench queued', LARGE_STOCK);
  const soldOutPromotion = await promotion('bench sold out', options.soldOutStock);

  // --- Load.
  const spec = (title: string, url: string, request: RotationSpec['request']): RotationSpec => ({
    title,
    url,
    durationSeconds: options.duration,
    connections: options.connections,
    threads: options.threads,
    distinct: users.length,
    request,
  });
  const measure = async (label: string, server: Child, load: RotationSpec): Promise<PhaseReport> => {
    log(`${label}: ${load.durationSeconds} s, ${load.connections} connections`);
    const pids = new Map([['server', server.pid]]);
    const before = await snapshotCpu(pids, redis);
    const result = await runRotation(load, generator);
    const cpu = cpuBetween(before, await snapshotCpu(pids, redis));
    cpu.percent.set('generator', result.cpuPercent);
    if (result.saturated) notes.push(`**${label}: the load generator used ${result.cpuPercent.toFixed(0)} % of its ${result.cpuCapacity} core(s): this figure may be its limit.**`);
    return { label, load: result, cpu, vsBare: null };
  };
  const warmUp = async (load: RotationSpec): Promise<LoadResult | null> => {
    if (options.warmup <= 0) return null;
    log(`warm-up of ${load.title}: ${options.warmup} s`);
    return runRotation({ ...load, durationSeconds: Math.max(1, Math.round(options.warmup)) }, generator);
  };

  // 1. bare: started only now and stopped right after its phase, so it never competes with the service's.
  const bare = await startBare(
    REDIS_URL,
    `${prefix}bare:`,
    nodeFlags,
    (child) => cleanup.add('stopping the bare server', () => stopChild(child, 5000)),
  );
  const bareBodies = users.map((userId) => JSON.stringify({ userId }));
  const bareLoad = spec('bare', `http://127.0.0.1:${bare.port}/`, (n) => ({ body: bareBodies[n % users.length] as string }));
  await warmUp(bareLoad);
  const barePhase = await measure('bare: node:http + issue.lua', bare.child, bareLoad);
  await stopChild(bare.child, 5000);

  // 2. service: QUEUED, then sold out. Every QUEUED answer, warm-up included, must end as one coupon row.
  const issue = (promotionId: string): RotationSpec['request'] => {
    const body = JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } });
    return (n) => ({ authorization: authorization[n % users.length] as string, body });
  };
  const queuedLoad = spec('the service', `${baseUrl}/graphql`, issue(queuedPromotion));
  const warm = await warmUp(queuedLoad);
  const queuedPhase = await measure('service: issueCoupon → QUEUED', service, queuedLoad);
  const queuedPhaseEnd = {
    atMs: Date.now(),
    backlog: (await reservations(redis, servicePrefix, queuedPromotion)) - (await couponRows(db, queuedPromotion)).rows,
    promotionId: queuedPromotion,
  };
  const soldOutPhase = await measure(
    `service: issueCoupon → SOLD_OUT (stock ${fmtInt(options.soldOutStock)})`,
    service,
    spec('the service', `${baseUrl}/graphql`, issue(soldOutPromotion)),
  );
  for (const phase of [queuedPhase, soldOutPhase]) phase.vsBare = phase.load.requestsPerSecond / barePhase.load.requestsPerSecond;

  // --- The queue drains; the invariant is checked.
  log('waiting for the consumer to store every queued request');
  const verification = await drainAndVerify({
    redis,
    db,
    baseUrl,
    keyPrefix: servicePrefix,
    timeoutSeconds: options.drainTimeout,
    queuedPhaseEnd,
    promotions: [
      { label: 'QUEUED phase (+ its warm-up)', id: queuedPromotion, stock: LARGE_STOCK, runs: [warm, queuedPhase.load] },
      { label: 'sold-out phase', id: soldOutPromotion, stock: options.soldOutStock, runs: [soldOutPhase.load] },
    ],
  });
  notes.push(...verification.problems);

  // Stopped here rather than in the cleanup, so that how it stops is part of the report.
  const stopStart = Date.now();
  const ended = await stopChild(service);
  if (ended !== 'code 0') {
    const seconds = ((Date.now() - stopStart) / 1000).toFixed(1);
    notes.push(`The service did not stop cleanly on SIGTERM: ${ended} after ${seconds} s (SHUTDOWN_TIMEOUT_MS=${SERVICE_SHUTDOWN_MS}).`);
  }

  // --- Report.
  const phases = [barePhase, queuedPhase, soldOutPhase];
  notes.push(...contextNotes(phases, warm, users.length, queuedPhaseEnd.backlog));
  const cores = cpus();
  notes.push(
    `Service: \`${command.join(' ')}\` with ROLE=all: its stream consumer stores the coupons in PostgreSQL from the same process, during the service phases.`,
    `Load generator: ${generator === 'wrk' ? `wrk, ${options.threads} thread(s)` : `autocannon in a child process (${wrkInstalled() ? '--generator autocannon' : 'wrk not installed'})`}, out of the bench process, ` +
      `on the same machine: it shares the ${cores.length} cores with the server, Redis and PostgreSQL.`,
  );
  if (profileDir !== null) notes.push(`CPU profiles of both servers: ${profileDir}`);
  const heading = [
    `## Coupon issuance benchmark, ${new Date().toISOString().slice(0, 16)}Z`,
    '',
    `node ${process.version} · ${cores.length} cores (${cores[0]?.model.trim() ?? 'unknown CPU'}) · ${options.connections} connections · ` +
      `generator ${generator} · ${options.duration} s per phase (+${options.warmup} s warm-up per target) · ` +
      `${fmtInt(options.users)} users, per-user limit ${PER_USER_LIMIT}`,
  ].join('\n');
  const markdown = renderReport({ heading, phases, invariants: verification.invariants, consumer: verification.consumer, notes });

  process.stdout.write(`\n${markdown}`);
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(join(__dirname, 'results', 'latest.md'), markdown);
  log('written to bench/results/latest.md');
  return verification.invariants.every(invariantHolds) && verification.problems.length === 0 ? 0 : 1;
}

/** What a reader needs to interpret the figures: token caching, whether the consumer was pushed, contention. */
function contextNotes(phases: PhaseReport[], warm: LoadResult | null, users: number, backlog: number): string[] {
  const notes: string[] = [];
  const [, queued, soldOut] = phases;
  if (queued && soldOut) {
    // Every run rotates users from the first one; the service verifies a token once, then caches it.
    const covered = (run: LoadResult | null) => Math.min(run?.sent ?? 0, users);
    const fresh = (run: LoadResult | null, before: number) => Math.max(0, covered(run) - before);
    notes.push(
      `Tokens verified for the first time (then cached by the service): ${fmtInt(covered(warm))} in the warm-up, ` +
        `${fmtInt(fresh(queued.load, covered(warm)))} in the QUEUED phase, ` +
        `${fmtInt(fresh(soldOut.load, Math.max(covered(warm), covered(queued.load))))} in the sold-out phase.`,
    );
    if (backlog < queued.load.requestsPerSecond) {
      notes.push(
        `The consumer kept up with the load (backlog ${fmtInt(backlog)} when the QUEUED phase ended): ` +
          'its throughput above is the rate of QUEUED answers, not its ceiling.',
      );
    }
  }
  for (const phase of phases) {
    const others = phase.cpu.othersPercent ?? 0;
    if (others >= BUSY_MACHINE_PERCENT) {
      notes.push(`**Other processes took ${others.toFixed(0)} % of a core during "${phase.label}": its figures understate this code; run again on an idle machine.**`);
    }
  }
  return notes;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
