import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { TEST_JWT_SECRET, type TestEnvironment } from './environment';

export const ROOT = join(__dirname, '..', '..');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The service as a real child process, with its JSON log lines collected from stdout. */
export interface ServiceProcess {
  child: ChildProcess;
  /** Resolves with the URL of the "started" line; rejects if the process exits first. */
  started: Promise<string>;
  exit: Promise<Exit>;
  output(): string;
}

/** The environment a test service runs with: the test file's database and key prefix, port 0, JSON logs. */
export function serviceEnv(env: TestEnvironment, overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: env.databaseUrl,
    REDIS_URL: env.redisUrl,
    REDIS_KEY_PREFIX: env.prefix,
    PORT: '0',
    HOST: '127.0.0.1',
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    CONSUMER_BLOCK_MS: '100',
    ...overrides,
  };
}

/**
 * A service process of a Redis Cluster test: its role and consumer name, the cluster's seed nodes, replicas
 * waited for, quick reconciliation, and no per-client limits (a few loopback users stand for a crowd).
 */
export function clusterServiceEnv(env: TestEnvironment, seedNodes: string, role: 'api' | 'consumer', name: string, overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  return serviceEnv(env, {
    ROLE: role,
    MIGRATE: 'false',
    REDIS_CLUSTER_NODES: seedNodes,
    REDIS_WAIT_REPLICAS: '1',
    REDIS_WAIT_TIMEOUT_MS: '200',
    CONSUMER_NAME: name,
    RECONCILE_INTERVAL_MS: '1000',
    RATE_LIMIT_ANON_PER_SECOND: '0',
    RATE_LIMIT_USER_PER_SECOND: '0',
    RATE_LIMIT_ISSUE_PER_SECOND: '0',
    ...overrides,
  });
}

/** Runs src/main.ts from source (as the e2e tests do), or any other command such as `npm start`. */
export function spawnService(
  env: NodeJS.ProcessEnv,
  command: { file: string; args: string[] } = { file: process.execPath, args: ['-r', '@swc-node/register', join(ROOT, 'src', 'main.ts')] },
): ServiceProcess {
  const child = spawn(command.file, command.args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exit = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const started = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) resolve(match[1] as string);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    void exit.then(({ code, signal }) => reject(new Error(`service exited (${code ?? signal}) before it started:\n${out}`)));
  });
  started.catch(() => undefined); // a test that never waits for it must not see an unhandled rejection
  return { child, started, exit, output: () => out };
}

/** Whether a process id still names a live process (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
