/**
 * Benchmark options, from flags (`npm run bench -- --duration 5`) or the environment (BENCH_DURATION=5).
 * A flag wins over the environment. The defaults keep one run under about a minute on a 2-core machine.
 */

export interface BenchOptions {
  /** Seconds of measured load per phase. */
  duration: number;
  /** Seconds of unmeasured load before each target's first phase, so the JIT and caches are warm. */
  warmup: number;
  connections: number;
  /** Distinct users (pre-signed tokens) rotated across all requests. */
  users: number;
  /** Stock of the promotion of the sold-out phase: its first answers are QUEUED, all the others SOLD_OUT. */
  soldOutStock: number;
  /** Where the service runs from: the build (realistic numbers) or the TypeScript sources through swc. */
  service: 'dist' | 'src';
  /** Seconds to wait for the consumer to store every queued request once the load stops. */
  drainTimeout: number;
  /** A folder for V8 CPU profiles of both servers (node --cpu-prof), or null for none. */
  profileDir: string | null;
  /** The side-by-side run (bench/compare.ts) instead of the quick one. */
  compare: boolean;
  /** wrk when installed (auto), or the one named. */
  generator: 'auto' | 'wrk' | 'autocannon';
  /** wrk threads per target process. */
  threads: number;
  /** --compare: the phases to run (all by default). */
  phases: Set<ComparePhase>;
  saleUsers: number;
  saleStock: number;
  /** Users of the sale who hold a couponIssued subscription and whose confirmations are timed. */
  saleSample: number;
  saleConnections: number;
  /** Subscribed sockets held open during the half-load phase. */
  sockets: number;
  /** Sockets opened to measure RSS per subscribed socket. */
  rssSockets: number;
  /** The half-load phase's rate as a share of the service's maximum: 0.5 is the target's; lower finds where it holds. */
  halfLoadShare: number;
}

export const COMPARE_PHASES = ['bare', 'service', 'sync-db', 'seed', 'two-api', 'sale', 'half-load', 'half-load-split', 'rss', 'drain'] as const;
export type ComparePhase = (typeof COMPARE_PHASES)[number];

const phaseList = (raw: string): Set<ComparePhase> | null => {
  const names = raw.split(',').map((n) => n.trim()).filter(Boolean);
  return names.length > 0 && names.every((n) => (COMPARE_PHASES as readonly string[]).includes(n)) ? new Set(names as ComparePhase[]) : null;
};
const generatorKind = (raw: string) => (raw === 'auto' || raw === 'wrk' || raw === 'autocannon' ? raw : null);
const BOOLEAN_FLAGS = new Set(['--compare']);

const int = (min: number, max: number) => (raw: string) => {
  const n = Number(raw);
  return Number.isInteger(n) && n >= min && n <= max ? n : null;
};
const seconds = (max: number) => (raw: string) => {
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 && n <= max ? n : null;
};
const serviceSource = (raw: string) => (raw === 'dist' || raw === 'src' ? raw : null);

export const USAGE = `usage: npm run bench [-- --flag value ...]   (or the environment variable)
  --duration N        BENCH_DURATION        seconds per measured phase      (10)
  --warmup N          BENCH_WARMUP          seconds of warm-up per target   (2)
  --connections N     BENCH_CONNECTIONS     concurrent connections          (100)
  --users N           BENCH_USERS           distinct users / tokens         (20000)
  --sold-out-stock N  BENCH_SOLD_OUT_STOCK  stock of the sold-out promotion (1000)
  --service dist|src  BENCH_SERVICE         run the build or the sources    (dist)
  --drain-timeout N   BENCH_DRAIN_TIMEOUT   seconds to wait for the queue   (120)
  --profile DIR       BENCH_PROFILE         write CPU profiles of both servers to DIR (none)
  --generator G       BENCH_GENERATOR       auto | wrk | autocannon (auto: wrk if installed)
  --threads N         BENCH_THREADS         wrk threads per target process  (2)
  --compare           BENCH_COMPARE=1       side by side: bare, service, sync-db, seed, two API
                                            processes, sale, half load with sockets, RSS per socket
 with --compare:
  --phases LIST       BENCH_PHASES          comma-separated subset of
                                            ${COMPARE_PHASES.join(',')}
  --sale-users N      BENCH_SALE_USERS      distinct users arriving in the sale (100000)
  --sale-stock N      BENCH_SALE_STOCK      coupons in the sale             (10000)
  --sale-sample N     BENCH_SALE_SAMPLE     sale users holding a subscription (5000)
  --sale-connections N BENCH_SALE_CONNECTIONS connections of the sale crowd  (400)
  --sockets N         BENCH_SOCKETS         subscribed sockets at half load (10000)
  --rss-sockets N     BENCH_RSS_SOCKETS     sockets for RSS per socket      (15000)
  --half-load-share X BENCH_HALF_LOAD_SHARE the half-load rate as a share of the maximum (0.5)`;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new Error(USAGE);
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${USAGE}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(0, eq), arg.slice(eq + 1));
    else if (BOOLEAN_FLAGS.has(arg)) flags.set(arg, '1');
    else flags.set(arg, argv[++i] ?? '');
  }
  const used = new Set<string>();

  function read<T>(flag: string, envName: string, fallback: T, check: (raw: string) => T | null): T {
    used.add(flag);
    const raw = flags.get(flag) ?? env[envName];
    if (raw === undefined || raw === '') return fallback;
    const value = check(raw);
    if (value === null) throw new Error(`invalid ${flag} / ${envName}: ${raw}\n${USAGE}`);
    return value;
  }

  const options: BenchOptions = {
    duration: read('--duration', 'BENCH_DURATION', 10, int(1, 600)),
    warmup: read('--warmup', 'BENCH_WARMUP', 2, seconds(60)),
    connections: read('--connections', 'BENCH_CONNECTIONS', 100, int(1, 10_000)),
    users: read('--users', 'BENCH_USERS', 20_000, int(1, 1_000_000)),
    soldOutStock: read('--sold-out-stock', 'BENCH_SOLD_OUT_STOCK', 1000, int(1, 10_000_000)),
    service: read<'dist' | 'src'>('--service', 'BENCH_SERVICE', 'dist', serviceSource),
    drainTimeout: read('--drain-timeout', 'BENCH_DRAIN_TIMEOUT', 120, int(1, 3600)),
    profileDir: read<string | null>('--profile', 'BENCH_PROFILE', null, (raw) => raw),
    compare: read('--compare', 'BENCH_COMPARE', false, (raw) => (raw === '1' || raw === 'true' ? true : raw === '0' || raw === 'false' ? false : null)),
    generator: read<'auto' | 'wrk' | 'autocannon'>('--generator', 'BENCH_GENERATOR', 'auto', generatorKind),
    threads: read('--threads', 'BENCH_THREADS', 2, int(1, 64)),
    phases: read('--phases', 'BENCH_PHASES', new Set(COMPARE_PHASES), phaseList),
    saleUsers: read('--sale-users', 'BENCH_SALE_USERS', 100_000, int(1, 1_000_000)),
    saleStock: read('--sale-stock', 'BENCH_SALE_STOCK', 10_000, int(1, 10_000_000)),
    saleSample: read('--sale-sample', 'BENCH_SALE_SAMPLE', 5000, int(0, 1_000_000)),
    saleConnections: read('--sale-connections', 'BENCH_SALE_CONNECTIONS', 400, int(1, 10_000)),
    sockets: read('--sockets', 'BENCH_SOCKETS', 10_000, int(0, 19_000)),
    rssSockets: read('--rss-sockets', 'BENCH_RSS_SOCKETS', 15_000, int(0, 19_000)),
    halfLoadShare: read('--half-load-share', 'BENCH_HALF_LOAD_SHARE', 0.5, (raw) => {
      const n = Number(raw);
      return Number.isFinite(n) && n > 0 && n <= 1 ? n : null;
    }),
  };
  if (options.saleSample >= options.saleUsers) throw new Error(`--sale-sample must be smaller than --sale-users (the sample is part of the crowd)\n${USAGE}`);
  for (const flag of flags.keys()) if (!used.has(flag)) throw new Error(`unknown option ${flag}\n${USAGE}`);
  return options;
}
