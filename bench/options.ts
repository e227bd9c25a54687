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
  pipelining: number;
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
}

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
  --pipelining N      BENCH_PIPELINING      requests in flight per conn.    (1)
  --users N           BENCH_USERS           distinct users / tokens         (20000)
  --sold-out-stock N  BENCH_SOLD_OUT_STOCK  stock of the sold-out promotion (1000)
  --service dist|src  BENCH_SERVICE         run the build or the sources    (dist)
  --drain-timeout N   BENCH_DRAIN_TIMEOUT   seconds to wait for the queue   (120)
  --profile DIR       BENCH_PROFILE         write CPU profiles of both servers to DIR (none)`;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new Error(USAGE);
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${USAGE}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(0, eq), arg.slice(eq + 1));
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
    pipelining: read('--pipelining', 'BENCH_PIPELINING', 1, int(1, 100)),
    users: read('--users', 'BENCH_USERS', 20_000, int(1, 1_000_000)),
    soldOutStock: read('--sold-out-stock', 'BENCH_SOLD_OUT_STOCK', 1000, int(1, 10_000_000)),
    service: read<'dist' | 'src'>('--service', 'BENCH_SERVICE', 'dist', serviceSource),
    drainTimeout: read('--drain-timeout', 'BENCH_DRAIN_TIMEOUT', 120, int(1, 3600)),
    profileDir: read<string | null>('--profile', 'BENCH_PROFILE', null, (raw) => raw),
  };
  for (const flag of flags.keys()) if (!used.has(flag)) throw new Error(`unknown option ${flag}\n${USAGE}`);
  return options;
}
