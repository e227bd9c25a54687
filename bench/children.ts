/**
 * The two servers under test run as child processes, so each has its own event loop and can take a core.
 * Only these children are ever signalled, by their own pid.
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface Child {
  name: string;
  pid: number;
  /** Resolves when the process has exited, with its code or signal. */
  exited: Promise<string>;
  /** Its last lines of output, to explain a failure. */
  tail(): string;
  process: ChildProcess;
}

const TAIL_LINES = 30;

function track(name: string, child: ChildProcess): Child {
  if (child.pid === undefined) throw new Error(`${name}: could not start`);
  const lines: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      lines.push(line);
      if (lines.length > TAIL_LINES) lines.shift();
      // Shown when worth seeing: anything but the service's own info/debug lines (pino JSON, level < 40).
      if (quietLevel(line) < 40) continue;
      process.stderr.write(`[${name}] ${line}\n`);
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? `code ${code}`)));
  return { name, pid: child.pid, exited, tail: () => lines.join('\n'), process: child };
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** The pino level of a JSON log line (a label, or a number from other loggers), or Infinity for anything else (always shown). */
function quietLevel(line: string): number {
  const match = /^\{"level":(?:"(\w+)"|(\d+))/.exec(line);
  if (!match) return Infinity;
  const level = match[1] !== undefined ? LEVELS[match[1]] : Number(match[2]);
  return level !== undefined && Number.isFinite(level) ? level : Infinity;
}

const hasExited = (child: Child) => child.process.exitCode !== null || child.process.signalCode !== null;

/** Fails as soon as the child exits, so a crash at start is reported at once rather than as a timeout. */
function failOnExit(child: Child): Promise<never> {
  const crashed = child.exited.then((how): never => {
    throw new Error(`${child.name} exited (${how}) before it was ready:\n${child.tail()}`);
  });
  // Once the child is ready nobody awaits this any more; its later exit must not be an unhandled rejection.
  crashed.catch(() => undefined);
  return crashed;
}

function timeout(ms: number, what: string): { promise: Promise<never>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not ready within ${ms} ms`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** A port free right now on loopback (the service takes PORT from its environment and does not report it back). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The largest stock the service accepts: a throughput phase never runs out. */
export const LARGE_STOCK = 10_000_000;
/** The largest per-user limit the service accepts: 20,000 users can hold 2,000,000 reservations. */
export const PER_USER_LIMIT = 100;

/**
 * Forks bench/bare-server.ts through swc, like `npm run bench` itself, and waits for the port it reports. Its one
 * promotion has the throughput phases' stock and per-user limit, under keys starting with keyPrefix.
 */
export function startBare(redisUrl: string, keyPrefix: string, nodeFlags: string[], onSpawn: (child: Child) => void): Promise<{ child: Child; port: number }> {
  const env = {
    BARE_REDIS_URL: redisUrl,
    BARE_KEY_PREFIX: keyPrefix,
    BARE_PROMOTION_ID: '00000000-0000-4000-8000-000000000000',
    BARE_STOCK: String(LARGE_STOCK),
    BARE_PER_USER_LIMIT: String(PER_USER_LIMIT),
  };
  return startForked('bare', 'bare-server.ts', env, nodeFlags, onSpawn);
}

/** Forks bench/baseline-server.ts (BASELINE_MODE sync-db or seed) and waits for the port it reports. */
export function startBaseline(
  mode: 'sync-db' | 'seed',
  env: Record<string, string>,
  nodeFlags: string[],
  onSpawn: (child: Child) => void,
): Promise<{ child: Child; port: number }> {
  return startForked(mode, 'baseline-server.ts', { ...env, BASELINE_MODE: mode }, nodeFlags, onSpawn);
}

async function startForked(
  name: string,
  file: string,
  env: Record<string, string>,
  nodeFlags: string[],
  onSpawn: (child: Child) => void,
): Promise<{ child: Child; port: number }> {
  const child = track(
    name,
    fork(join(__dirname, file), [], {
      cwd: join(__dirname, '..'),
      execArgv: [...nodeFlags, '-r', '@swc-node/register'],
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    }),
  );
  onSpawn(child);
  const ready = new Promise<number>((resolve) => {
    child.process.once('message', (message: unknown) => {
      const port = (message as { port?: unknown } | null)?.port;
      if (typeof port === 'number') resolve(port);
    });
  });
  const limit = timeout(30_000, name);
  try {
    const port = await Promise.race([ready, failOnExit(child), limit.promise]);
    return { child, port };
  } catch (error) {
    await stopChild(child);
    throw error;
  } finally {
    limit.cancel();
  }
}

/**
 * Spawns the service (`node` meaning this very node binary) and waits for GET /readyz to answer 200:
 * Redis, PostgreSQL and the migrations are then checked, so the load can start.
 */
export async function startService(
  command: string[],
  env: Record<string, string>,
  baseUrl: string,
  cwd: string,
  onSpawn: (child: Child) => void,
  name = 'service',
): Promise<Child> {
  const [bin, ...args] = command as [string, ...string[]];
  const executable = bin === 'node' ? process.execPath : bin;
  const child = track(name, spawn(executable, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  onSpawn(child);
  let waiting = true;
  const poll = (async () => {
    while (waiting) {
      const ok = await fetch(`${baseUrl}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  const limit = timeout(90_000, name);
  try {
    await Promise.race([poll, failOnExit(child), limit.promise]);
    return child;
  } catch (error) {
    await stopChild(child);
    throw error;
  } finally {
    waiting = false;
    limit.cancel();
  }
}

/** SIGTERM, then SIGKILL if it has not exited within graceMs. Returns how it ended. */
export async function stopChild(child: Child, graceMs = 10_000): Promise<string> {
  if (hasExited(child)) return child.exited;
  child.process.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      if (!hasExited(child)) child.process.kill('SIGKILL');
      resolve(child.exited.then((how) => `${how} (after SIGKILL: no exit within ${graceMs} ms of SIGTERM)`));
    }, graceMs);
  });
  try {
    return await Promise.race([child.exited, killed]);
  } finally {
    clearTimeout(timer);
  }
}

/** The service as it runs in production (the build); from the sources only when asked to or when the build fails. */
export function serviceCommand(source: 'dist' | 'src', nodeFlags: string[], notes: string[]): string[] {
  const fromSources = ['node', ...nodeFlags, '-r', 'reflect-metadata', '-r', '@swc-node/register', 'src/main.ts'];
  if (source === 'src') {
    notes.push('The service ran from the TypeScript sources through swc (--service src), not from the build.');
    return fromSources;
  }
  try {
    execFileSync(process.execPath, ['scripts/ensure-built.js'], { cwd: join(__dirname, '..'), stdio: 'inherit' });
    return ['node', ...nodeFlags, 'dist/main.js'];
  } catch {
    notes.push('**The build failed: the service ran from the sources through swc, so these are not the figures of dist/.**');
    return fromSources;
  }
}

