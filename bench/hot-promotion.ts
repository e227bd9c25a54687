/**
 * `npm run bench:hot`: how many reservations a second ONE promotion can take on ONE Redis node.
 *
 * Every key of a promotion shares its hash tag, so all its reservations run issue.lua on one Redis thread: that
 * thread's speed is the ceiling of a single sale, however many API processes stand in front of it. The bench
 * drives issue.lua through the service's own path (createRedis, RedisReservationStore.reserve, the service's
 * default in-script rate limits) from N forked driver processes, each with its own connection and many
 * reservations in flight, every one from a distinct user so every call reserves. It reports reservations/s,
 * the Redis main thread's CPU (INFO cpu) and µs of it per reservation, the drivers' CPU, and the latency a
 * driver sees. Then the same for refusals (SOLD_OUT: what the crowd costs once the stock is gone) and,
 * with --wait, reservations acknowledged after WAIT 1 (a replica the bench starts).
 *
 * By default it starts its own redis-server (--save "" --appendonly no) on a free loopback port, so the figure
 * is that thread's own, and stops it by its pid at the end; with --redis-url it uses that node and deletes
 * only the keys under its own prefix. Each phase is bounded (warm-up + duration).
 *
 *   npm run bench:hot -- [--drivers 1,2,4] [--duration S] [--warmup S] [--in-flight N] [--wait]
 *                        [--no-rate-limits] [--redis-url URL] [--redis-server PATH] [--write]
 *
 * Prints a markdown table; --write also writes it to bench/results/hot-promotion-latest.md.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { newPromotionId, newRequestId } from '../src/domain/identifiers';
import type { IssueOutcome, PromotionRecord } from '../src/domain/types';
import { connectRedis, createRedis } from '../src/redis/client';
import { RedisKeys } from '../src/redis/keys';
import { ReplicaWaiter } from '../src/redis/replica-wait';
import { RedisReservationStore, type IssueRateLimits } from '../src/redis/reservation-store';
import type { ScriptCommands } from '../src/redis/scripts';
import { freePort } from './children';
import { cpuBetween, processSeconds, snapshotCpu } from './cpu';
import { deleteKeysWithPrefix } from './service';

/** The service's defaults (config.ts): the per-user bucket runs inside issue.lua on every call. */
const RATE_LIMITS: IssueRateLimits = { perUserPerSecond: 5, perUserBurst: 10, perIpPerSecond: 0 };
const NO_RATE_LIMITS: IssueRateLimits = { perUserPerSecond: 0, perUserBurst: 1, perIpPerSecond: 0 };
const HUGE_STOCK = 1_000_000_000;
/** Latency histogram: 10 µs buckets up to 1 s (the last one holds everything slower). */
const BUCKET_US = 10;
const BUCKETS = 100_000;
const WAIT_TIMEOUT_MS = 100;

type NodeRedis = Redis & ScriptCommands;

const log = (message: string) => process.stderr.write(`bench:hot: ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Options {
  drivers: number[];
  duration: number;
  warmup: number;
  inFlight: number;
  wait: boolean;
  redisUrl: string | null;
  redisServer: string;
  write: boolean;
  rateLimits: boolean;
}

const USAGE = `usage: npm run bench:hot -- [flags]
  --drivers LIST     driver processes of each reservation phase      (1,2,4)
  --duration S       measured seconds per phase                      (5)
  --warmup S         unmeasured seconds before each phase            (1)
  --in-flight N      reservations each driver keeps in flight        (100)
  --wait             also a phase acknowledged after WAIT 1 (starts a replica; own server only)
  --redis-url URL    use this Redis node instead of starting one (only keys under the bench's prefix are touched)
  --redis-server P   the redis-server binary to start                (redis-server)
  --no-rate-limits   without the in-script per-user bucket (what it costs)
  --write            also write the report to bench/results/hot-promotion-latest.md`;

/** A wrong flag: its message (with the usage) is all there is to show. */
class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new UsageError(USAGE);
    if (arg === '--wait' || arg === '--write' || arg === '--no-rate-limits') flags.set(arg, '1');
    else if (arg.startsWith('--')) flags.set(arg, argv[++i] ?? '');
    else throw new UsageError(`unexpected argument ${arg}\n${USAGE}`);
  }
  const known = ['--drivers', '--duration', '--warmup', '--in-flight', '--wait', '--redis-url', '--redis-server', '--write', '--no-rate-limits'];
  for (const flag of flags.keys()) if (!known.includes(flag)) throw new UsageError(`unknown option ${flag}\n${USAGE}`);
  const number = (flag: string, fallback: number, min: number, max: number, integer: boolean) => {
    const raw = flags.get(flag);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) throw new UsageError(`invalid ${flag}: ${raw}\n${USAGE}`);
    return n;
  };
  const drivers = (flags.get('--drivers') ?? '1,2,4').split(',').map(Number);
  if (drivers.some((n) => !Number.isInteger(n) || n < 1 || n > 32)) throw new UsageError(`invalid --drivers\n${USAGE}`);
  const options: Options = {
    drivers,
    duration: number('--duration', 5, 1, 60, false),
    warmup: number('--warmup', 1, 0, 30, false),
    inFlight: number('--in-flight', 100, 1, 10_000, true),
    wait: flags.has('--wait'),
    redisUrl: flags.get('--redis-url') ?? null,
    redisServer: flags.get('--redis-server') ?? 'redis-server',
    write: flags.has('--write'),
    rateLimits: !flags.has('--no-rate-limits'),
  };
  if (options.wait && options.redisUrl) throw new UsageError(`--wait starts a replica of the bench's own server: not with --redis-url\n${USAGE}`);
  return options;
}

// ---------------------------------------------------------------------------------------------- driver process

interface DriverConfig {
  redisUrl: string;
  prefix: string;
  promotionId: string;
  inFlight: number;
  index: number;
  waitReplicas: boolean;
  rateLimits: boolean;
}

interface DriverResult {
  calls: number;
  errors: number;
  outcomes: Partial<Record<IssueOutcome, number>>;
  /** [bucket, count] of the latency histogram, non-empty buckets only. */
  histogram: [number, number][];
}

type ToDriver = { type: 'start' } | { type: 'measure' } | { type: 'stop' };

/** Keeps `inFlight` reservations going until told to stop; counts only those answered while measuring. */
async function driver(config: DriverConfig): Promise<void> {
  const redis = createRedis(config.redisUrl, `bench-hot-${config.index}`);
  await connectRedis(redis);
  const replicas = config.waitReplicas ? new ReplicaWaiter(redis, { required: 1, timeoutMs: WAIT_TIMEOUT_MS }) : null;
  const store = new RedisReservationStore(redis, new RedisKeys(config.prefix), config.rateLimits ? RATE_LIMITS : NO_RATE_LIMITS, replicas);
  const histogram = new Uint32Array(BUCKETS);
  const outcomes: Partial<Record<IssueOutcome, number>> = {};
  let measuring = false;
  let stopping = false;
  let calls = 0;
  let errors = 0;
  let next = 0;

  const loop = async () => {
    while (!stopping) {
      const userId = `d${config.index}-${next++}`;
      const started = performance.now();
      try {
        const { outcome } = await store.reserve({ promotionId: config.promotionId, userId, requestId: newRequestId(config.promotionId), idempotencyKey: null });
        if (!measuring) continue;
        calls++;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        const bucket = Math.min(BUCKETS - 1, Math.floor(((performance.now() - started) * 1000) / BUCKET_US));
        histogram[bucket] = (histogram[bucket] ?? 0) + 1;
      } catch {
        if (measuring) errors++;
      }
    }
  };

  let loops: Promise<void>[] = [];
  process.on('message', (message: ToDriver) => {
    if (message.type === 'start') loops = Array.from({ length: config.inFlight }, loop);
    else if (message.type === 'measure') measuring = true;
    else if (message.type === 'stop') {
      // Whatever answers after the stop is not counted: the window is the parent's.
      measuring = false;
      stopping = true;
      void Promise.all(loops).then(() => {
        const sparse: [number, number][] = [];
        histogram.forEach((n, i) => n > 0 && sparse.push([i, n]));
        const result: DriverResult = { calls, errors, outcomes, histogram: sparse };
        redis.disconnect();
        process.send?.({ type: 'result', result }, () => process.disconnect());
      });
    }
  });
  process.send?.({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------- parent

interface Phase {
  name: string;
  drivers: number;
  /** Stock of the phase's promotion: huge (every call reserves) or none (every call is refused SOLD_OUT). */
  stock: number;
  waitReplicas: boolean;
}

interface PhaseResult {
  phase: Phase;
  calls: number;
  errors: number;
  outcomes: Partial<Record<IssueOutcome, number>>;
  seconds: number;
  redisMainPercent: number;
  redisUsPerCall: number;
  /**
   * Time inside the script as Redis times it (INFO commandstats): wall clock, so on a busy machine it also counts
   * moments the thread was preempted, and can exceed the CPU figure. Near it, the script is the thread's work.
   */
  scriptUsPerCall: number;
  driversPercent: number;
  /** % of one core used by everything else on the machine: high means the phase ran on a contended machine. */
  othersPercent: number | null;
  p50Us: number;
  p99Us: number;
}

/** CPU seconds of the Redis main thread (the one that runs scripts), or of all its threads on an older Redis. */
async function redisMainSeconds(redis: NodeRedis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
  const main = field('used_cpu_sys_main_thread') + field('used_cpu_user_main_thread');
  return Number.isFinite(main) ? main : field('used_cpu_sys') + field('used_cpu_user');
}

/** Microseconds Redis spent running scripts (EVALSHA, and EVAL the first time a script is sent), from INFO commandstats. */
async function scriptUs(redis: NodeRedis): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const match of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=\d+,usec=(\d+)/gm)) usec += Number(match[1]);
  return usec;
}

/**
 * A redis-server without persistence. Its files (the RDB a replica's full sync writes even so) go to `dir`,
 * a scratch folder the caller removes.
 */
async function startRedisServer(binary: string, dir: string, args: string[], children: ChildProcess[]): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const options = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `${port}.rdb`];
  const child = spawn(binary, [...options, ...args], { stdio: 'ignore' });
  children.push(child);
  const url = `redis://127.0.0.1:${port}`;
  const probe = createRedis(url, 'bench-hot-probe');
  probe.on('error', () => undefined);
  try {
    for (const giveUpAt = Date.now() + 10_000; ; await sleep(50)) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}) at start`);
      if (await connectRedis(probe).then(() => probe.ping(), () => null)) return { url, child };
      if (Date.now() > giveUpAt) throw new Error('redis-server did not answer within 10 s');
    }
  } finally {
    probe.disconnect();
  }
}

function percentile(histogram: Uint32Array, total: number, share: number): number {
  const rank = Math.ceil(total * share);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i] ?? 0;
    if (seen >= rank) return (i + 1) * BUCKET_US;
  }
  return BUCKETS * BUCKET_US;
}

async function runPhase(phase: Phase, options: Options, redisUrl: string, redis: NodeRedis, store: RedisReservationStore, prefix: string, children: ChildProcess[]): Promise<PhaseResult> {
  const now = Date.now();
  const promotion: PromotionRecord = {
    id: newPromotionId(),
    name: `hot bench: ${phase.name}`,
    totalStock: phase.stock,
    perUserLimit: 1,
    startsAt: new Date(now - 60_000),
    endsAt: new Date(now + 3600_000),
    endedAt: null,
    createdAt: new Date(now),
  };
  await store.setupPromotion(promotion, 0);

  const drivers = await Promise.all(
    Array.from({ length: phase.drivers }, (_, index) => {
      const config: DriverConfig = { redisUrl, prefix, promotionId: promotion.id, inFlight: options.inFlight, index, waitReplicas: phase.waitReplicas, rateLimits: options.rateLimits };
      const child = fork(__filename, [], {
        execArgv: ['-r', '@swc-node/register'],
        env: { ...process.env, HOT_DRIVER: JSON.stringify(config) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      return new Promise<ChildProcess>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`a driver exited (${code}) before it was ready`)));
        child.once('message', () => resolve(child));
      });
    }),
  );
  const results = drivers.map(
    (child) =>
      new Promise<DriverResult>((resolve, reject) => {
        child.on('message', (message: { type: string; result?: DriverResult }) => message.result && resolve(message.result));
        child.once('exit', (code) => reject(new Error(`a driver exited (${code}) without its result`)));
      }),
  );
  for (const child of drivers) child.send({ type: 'start' });
  await sleep(options.warmup * 1000);

  const pids = new Map(drivers.map((child, i) => [`driver${i}`, child.pid as number]));
  const cpuBefore = await snapshotCpu(pids, redis);
  const redisBefore = await redisMainSeconds(redis);
  const scriptBefore = await scriptUs(redis);
  const startedAt = performance.now();
  for (const child of drivers) child.send({ type: 'measure' });
  await sleep(options.duration * 1000);
  for (const child of drivers) child.send({ type: 'stop' });
  const seconds = (performance.now() - startedAt) / 1000;
  const redisAfter = await redisMainSeconds(redis);
  const scriptAfter = await scriptUs(redis);
  const cpuAfter = await snapshotCpu(pids, redis);
  const driverSeconds = [...pids.values()].reduce((sum, pid) => sum + (processSeconds(pid) ?? 0), 0);
  const driverSecondsBefore = [...pids.keys()].reduce((sum, name) => sum + (cpuBefore.seconds.get(name) ?? 0), 0);

  const all = await Promise.all(results);
  const histogram = new Uint32Array(BUCKETS);
  const outcomes: Partial<Record<IssueOutcome, number>> = {};
  let calls = 0;
  let errors = 0;
  for (const r of all) {
    calls += r.calls;
    errors += r.errors;
    for (const [bucket, n] of r.histogram) histogram[bucket] = (histogram[bucket] ?? 0) + n;
    for (const [outcome, n] of Object.entries(r.outcomes)) outcomes[outcome as IssueOutcome] = (outcomes[outcome as IssueOutcome] ?? 0) + n;
  }
  const redisCpu = redisAfter - redisBefore;
  return {
    phase,
    calls,
    errors,
    outcomes,
    seconds,
    redisMainPercent: (100 * redisCpu) / seconds,
    redisUsPerCall: calls > 0 ? (redisCpu * 1e6) / calls : NaN,
    scriptUsPerCall: calls > 0 ? (scriptAfter - scriptBefore) / calls : NaN,
    driversPercent: (100 * (driverSeconds - driverSecondsBefore)) / seconds,
    othersPercent: cpuBetween(cpuBefore, cpuAfter).othersPercent,
    p50Us: percentile(histogram, calls, 0.5),
    p99Us: percentile(histogram, calls, 0.99),
  };
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');

function report(results: PhaseResult[], options: Options, ownServer: boolean, redisVersion: string): string {
  const rows = results.map((r) => {
    const outcomes = Object.entries(r.outcomes).map(([o, n]) => `${o} ${fmt(n)}`).join(', ') + (r.errors ? `, errors ${fmt(r.errors)}` : '');
    return `| ${r.phase.name} | ${r.phase.drivers} | ${fmt(r.calls / r.seconds)} | ${fmt(r.redisMainPercent)} % | ${fmt(r.redisUsPerCall, 1)} | ${fmt(r.scriptUsPerCall, 1)} | ${fmt(1e6 / r.redisUsPerCall)} | ${fmt(r.driversPercent)} % | ${r.othersPercent === null ? '-' : `${fmt(r.othersPercent)} %`} | ${fmt(r.p50Us / 1000, 2)} | ${fmt(r.p99Us / 1000, 2)} | ${outcomes} |`;
  });
  return [
    `# One hot promotion on one Redis node (npm run bench:hot), ${new Date().toISOString()}`,
    '',
    `Redis ${redisVersion}, ${ownServer ? 'a server of its own (--save "" --appendonly no)' : 'the node given by --redis-url'}; ${cpus().length} cores, shared by Redis and the driver processes` +
      ` (they compete for CPU: with more drivers than free cores, the rate is bounded by the drivers, not Redis). One promotion per phase, every call from a distinct user,` +
      ` issue.lua through RedisReservationStore.reserve ${options.rateLimits ? "with the service's default in-script rate limit (per-user bucket)" : 'WITHOUT the in-script rate limit (--no-rate-limits)'}; ${options.inFlight} reservations in flight per driver; ${options.warmup} s warm-up, ${options.duration} s measured.`,
    '',
    '| phase | drivers | calls/s | Redis main thread, % of a core | Redis CPU µs per call | script µs per call, Redis-timed | calls/s at 100 % of that thread (derived) | drivers, % of a core | rest of the machine, % of a core | p50 ms | p99 ms | outcomes |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const children: ChildProcess[] = [];
  const prefix = `bench-hot:${randomBytes(4).toString('hex')}:`;
  const dir = mkdtempSync(join(tmpdir(), 'bench-hot-'));
  let redis: NodeRedis | null = null;
  try {
    let redisUrl = options.redisUrl;
    let replicaUrl: string | null = null;
    if (!redisUrl) {
      redisUrl = (await startRedisServer(options.redisServer, dir, [], children)).url;
      log(`started redis-server at ${redisUrl}`);
    }
    const master = new URL(redisUrl);
    if (options.wait) {
      replicaUrl = (await startRedisServer(options.redisServer, dir, ['--replicaof', master.hostname, master.port], children)).url;
      log(`started a replica at ${replicaUrl}`);
    }
    redis = createRedis(redisUrl, 'bench-hot');
    await connectRedis(redis);
    if (options.wait) {
      for (const giveUpAt = Date.now() + 10_000; !/^connected_slaves:[1-9]/m.test(await redis.info('replication')); await sleep(100)) {
        if (Date.now() > giveUpAt) throw new Error('the replica did not connect within 10 s');
      }
    }
    const redisVersion = /^redis_version:(\S+)/m.exec(await redis.info('server'))?.[1] ?? '?';
    const store = new RedisReservationStore(redis, new RedisKeys(prefix));

    const phases: Phase[] = [
      ...options.drivers.map((drivers) => ({ name: 'reserve (QUEUED)', drivers, stock: HUGE_STOCK, waitReplicas: false })),
      { name: 'refuse (SOLD_OUT)', drivers: 2, stock: 0, waitReplicas: false },
      ...(options.wait ? [{ name: 'reserve, then WAIT 1', drivers: 2, stock: HUGE_STOCK, waitReplicas: true }] : []),
    ];
    const results: PhaseResult[] = [];
    for (const phase of phases) {
      log(`${phase.name}, ${phase.drivers} driver(s)`);
      const result = await runPhase(phase, options, redisUrl, redis, store, prefix, children);
      log(`  ${fmt(result.calls / result.seconds)} calls/s, Redis main thread ${fmt(result.redisMainPercent)} %, ${fmt(result.redisUsPerCall, 1)} µs per call, rest of the machine ${fmt(result.othersPercent ?? NaN)} %`);
      results.push(result);
      // Each phase starts from an empty node, its memory as small each time.
      if (options.redisUrl) await deleteKeysWithPrefix(redis, prefix);
      else await redis.flushall();
    }
    const markdown = report(results, options, !options.redisUrl, redisVersion);
    process.stdout.write(`${markdown}\n`);
    if (options.write) {
      mkdirSync(join(__dirname, 'results'), { recursive: true });
      writeFileSync(join(__dirname, 'results', 'hot-promotion-latest.md'), markdown);
      log('written to bench/results/hot-promotion-latest.md');
    }
  } finally {
    if (redis) {
      if (options.redisUrl) await deleteKeysWithPrefix(redis, prefix).catch((error: unknown) => log(`cleanup: ${String(error)}`));
      redis.disconnect();
    }
    // Drivers, then the replica, then the server: only what this run started, by pid.
    for (const child of children.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

const driverConfig = process.env.HOT_DRIVER;
if (driverConfig) {
  driver(JSON.parse(driverConfig) as DriverConfig).catch((error: unknown) => {
    process.stderr.write(`bench:hot driver: ${String(error instanceof Error ? error.stack : error)}\n`);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    log(String(error instanceof UsageError ? error.message : error instanceof Error ? error.stack : error));
    process.exit(1);
  });
}
