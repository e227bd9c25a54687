/**
 * The load generator, out of the bench process so that it does not share an event loop with the bench's
 * own work, and light: wrk (C, with bench/wrk/rotate.lua replaying pre-built requests) when it is installed,
 * else autocannon in a child process (bench/autocannon-worker.ts). Its CPU is measured from /proc, so a
 * phase where the generator itself was the limit is flagged instead of reported as the server's figure.
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processSeconds } from './cpu';
import type { LoadResult } from './load';

export type GeneratorKind = 'wrk' | 'autocannon';

export interface GenRequest {
  /** The Authorization header, or undefined for none. */
  authorization?: string;
  body: string;
}

export interface GenSpec {
  title: string;
  /** One URL, or several (API processes): connections are spread evenly over them, one generator each. */
  urls: string[];
  requests: GenRequest[];
  /** Upper bound of the run, seconds; a `once` run usually ends earlier. */
  durationSeconds: number;
  connections: number;
  /** wrk threads, shared by the URLs (at least one each); autocannon runs one single-threaded process per URL. */
  threads: number;
  /** Send each request once, then stop: a crowd of distinct users rather than a rotation. */
  once?: boolean;
}

export interface GenResult extends LoadResult {
  generator: GeneratorKind;
  /** CPU of the generator process(es), % of one core. */
  cpuPercent: number;
  /** Cores the generator could use at most (wrk threads, or 1 for autocannon), all processes together. */
  cpuCapacity: number;
  /** The generator used >= 90 % of what it could: the figure may be the generator's limit, not the server's. */
  saturated: boolean;
  /** Latency percentiles [p, ms], p from 1 to 100. */
  percentiles: [number, number][];
  meanMs: number;
  wallSeconds: number;
}

const SATURATED = 0.9;

/** wrk threads of one process: the threads asked for are shared by the target processes, at least one each. */
const threadsPerUrl = (spec: GenSpec, connections: number) => Math.max(1, Math.min(Math.floor(spec.threads / spec.urls.length), connections));

let detected: boolean | null = null;
export function wrkInstalled(): boolean {
  if (detected === null) {
    try {
      execFileSync('wrk', ['-v'], { stdio: 'ignore' });
      detected = true;
    } catch (error) {
      // wrk -v exits non-zero after printing its version: only a missing binary means absent.
      detected = (error as { code?: string }).code !== 'ENOENT';
    }
  }
  return detected;
}

export function pickGenerator(wanted: 'auto' | GeneratorKind): GeneratorKind {
  if (wanted === 'wrk' && !wrkInstalled()) throw new Error('--generator wrk: wrk is not installed (apt-get install -y wrk)');
  if (wanted !== 'auto') return wanted;
  return wrkInstalled() ? 'wrk' : 'autocannon';
}

interface RawResult {
  durationUs: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { mean: number; max: number; percentiles: Record<string, number> };
  outcomes: Record<string, number>;
}

function writeRequests(file: string, requests: GenRequest[]): void {
  writeFileSync(file, requests.map((r) => `${r.authorization ?? ''}\t${r.body}`).join('\n') + '\n');
}

function exited(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** One generator process against one URL; resolves with its raw figures and its CPU seconds. */
async function runOne(kind: GeneratorKind, spec: GenSpec, url: string, requests: GenRequest[], connections: number, dir: string, n: number) {
  const file = join(dir, `requests-${n}.txt`);
  const out = join(dir, `result-${n}.json`);
  writeRequests(file, requests);
  let child: ChildProcess;
  let raw: Promise<RawResult>;
  if (kind === 'wrk') {
    const threads = threadsPerUrl(spec, connections);
    child = spawn(
      'wrk',
      ['-t', String(threads), '-c', String(connections), '-d', `${spec.durationSeconds}s`, '--timeout', '10s', '-s', join(__dirname, 'wrk', 'rotate.lua'), url],
      {
        env: { ...process.env, BENCH_WRK_FILE: file, BENCH_WRK_THREADS: String(threads), BENCH_WRK_ONCE: spec.once ? '1' : '0', BENCH_WRK_OUT: out },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    if (spec.once) {
      // Every thread answered all its requests: end wrk now rather than at -d (SIGINT makes it report).
      // wrk may leave a request unanswered without counting an error (one in some 20,000 here): 5 s after the
      // last was sent, it stops anyway, and the requests never answered are reported as such.
      const marker = (kind: string) => Array.from({ length: threads }, (_, t) => `${out}.${kind}.${t}`);
      const [sent, done] = [marker('sent'), marker('done')];
      let allSentAt: number | null = null;
      const poll = setInterval(() => {
        if (allSentAt === null && sent.every((m) => existsSync(m))) allSentAt = Date.now();
        if (done.every((m) => existsSync(m)) || (allSentAt !== null && Date.now() - allSentAt > 5000)) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 20);
      child.once('exit', () => clearInterval(poll));
    }
    raw = exited(child).then((code) => {
      if (code !== 0) throw new Error(`wrk exited with ${code}: ${stderr.trim()}`);
      return JSON.parse(readFileSync(out, 'utf8')) as RawResult;
    });
  } else {
    child = fork(join(__dirname, 'autocannon-worker.ts'), [], {
      execArgv: ['-r', '@swc-node/register'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const message = new Promise<RawResult>((resolve, reject) => {
      child.once('message', (m) => resolve(m as RawResult));
      child.once('exit', (code) => reject(new Error(`autocannon worker exited with ${code} before reporting`)));
    });
    child.send({ url, file, connections, durationSeconds: spec.durationSeconds, once: spec.once === true });
    raw = message;
  }
  const pid = child.pid as number;
  // CPU read while the process lives (its /proc entry goes with it): sampled until it reports.
  let cpuSeconds = 0;
  const sampler = setInterval(() => (cpuSeconds = processSeconds(pid) ?? cpuSeconds), 100);
  try {
    const result = await raw;
    cpuSeconds = processSeconds(pid) ?? cpuSeconds;
    return { result, cpuSeconds };
  } finally {
    clearInterval(sampler);
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

export async function runGenerator(kind: GeneratorKind, spec: GenSpec): Promise<GenResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-gen-'));
  const started = performance.now();
  const startedAtMs = Date.now();
  try {
    const parts = spec.urls.map((url, i) => {
      const mine = spec.requests.filter((_, n) => n % spec.urls.length === i); // distinct users per target
      const connections = Math.max(1, Math.round(spec.connections / spec.urls.length));
      return runOne(kind, spec, url, mine, connections, dir, i);
    });
    const done = await Promise.all(parts);
    const wallSeconds = (performance.now() - started) / 1000;
    const outcomes = new Map<string, number>();
    let requests = 0;
    let errors = 0;
    let timeouts = 0;
    let non2xx = 0;
    let cpuSeconds = 0;
    let meanUs = 0;
    let durationUs = 0;
    for (const { result, cpuSeconds: cpu } of done) {
      for (const [k, v] of Object.entries(result.outcomes)) outcomes.set(k, (outcomes.get(k) ?? 0) + v);
      requests += Object.values(result.outcomes).reduce((a, b) => a + b, 0);
      errors += result.errors.connect + result.errors.read + result.errors.write;
      timeouts += result.errors.timeout;
      cpuSeconds += cpu;
      meanUs += result.latencyUs.mean * result.requests;
      durationUs = Math.max(durationUs, result.durationUs);
    }
    for (const [k, v] of outcomes) if (k.startsWith('HTTP ')) non2xx += v;
    // Percentiles of several processes cannot be merged exactly: the worst process's are reported.
    const percentiles = Object.keys(done[0]?.result.latencyUs.percentiles ?? {})
      .map(Number)
      .sort((a, b) => a - b)
      // wrk's percentile(100) reads 0: the maximum is its own field.
      .map((p): [number, number] => [p, Math.max(...done.map((d) => (p >= 100 ? d.result.latencyUs.max : (d.result.latencyUs.percentiles[String(p)] ?? 0)) / 1000))]);
    const at = (p: number) => percentiles.find(([q]) => q === p)?.[1] ?? 0;
    const perUrl = Math.max(1, Math.round(spec.connections / spec.urls.length));
    const capacity = kind === 'wrk' ? spec.urls.length * threadsPerUrl(spec, perUrl) : spec.urls.length;
    const cpuPercent = (100 * cpuSeconds) / wallSeconds;
    const seconds = durationUs / 1e6 || wallSeconds;
    return {
      title: spec.title,
      generator: kind,
      sent: requests + spec.connections,
      requests,
      // In flight when the duration ended (at most one per connection), or never answered in a `once` run.
      unanswered: spec.once ? Math.max(0, spec.requests.length - requests) : spec.connections,
      requestsPerSecond: requests / seconds,
      p50Ms: at(50),
      p99Ms: at(99),
      non2xx,
      errors,
      timeouts,
      outcomes,
      firstQueuedAtMs: (outcomes.get('QUEUED') ?? 0) > 0 ? startedAtMs : null,
      cpuPercent,
      cpuCapacity: capacity,
      saturated: cpuPercent >= SATURATED * 100 * capacity,
      percentiles,
      meanMs: requests > 0 ? meanUs / requests / 1000 : 0,
      wallSeconds,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A rotation of `distinct` requests, built by request(n): `npm run bench`'s phases. */
export interface RotationSpec {
  title: string;
  url: string;
  durationSeconds: number;
  connections: number;
  threads: number;
  distinct: number;
  request(n: number): { authorization?: string; body: string };
}

export function runRotation(spec: RotationSpec, kind: GeneratorKind): Promise<GenResult> {
  const requests = Array.from({ length: spec.distinct }, (_, n) => spec.request(n));
  return runGenerator(kind, { title: spec.title, urls: [spec.url], requests, durationSeconds: spec.durationSeconds, connections: spec.connections, threads: spec.threads });
}
