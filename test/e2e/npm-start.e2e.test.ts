import { readdirSync, readFileSync } from 'node:fs';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { isAlive, serviceEnv, spawnService } from '../helpers/service-process';

/**
 * Supervisors (systemd, pm2, a Procfile runner) stop `npm start` by sending SIGTERM to the npm process.
 * The service behind it must stop too, not live on re-parented with its port open.
 */

let env: TestEnvironment;
const leftovers: number[] = [];

beforeAll(async () => {
  env = await createTestEnvironment('npm_start');
});

afterAll(async () => {
  for (const pid of leftovers) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  await env.cleanup();
});

/** Every process below pid, read from /proc (Linux). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid ...": comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // the process ended while we looked
    }
  }
  const found: number[] = [];
  const visit = (p: number) => {
    for (const child of children.get(p) ?? []) {
      found.push(child);
      visit(child);
    }
  };
  visit(pid);
  return found;
}

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/healthz`)).ok;
  } catch {
    return false;
  }
}

test('When the npm start process gets SIGTERM, then the service stops with it and nothing is left running', async () => {
  const npm = spawnService(serviceEnv(env, { MIGRATE: 'false' }), { file: 'npm', args: ['start'] });
  const url = await npm.started; // npm start builds dist/ first when it is stale
  expect(await answers(url)).toBe(true);
  const below = descendants(npm.child.pid as number);
  leftovers.push(...below);
  expect(below.length).toBeGreaterThan(0);

  const signalledAt = Date.now();
  npm.child.kill('SIGTERM');
  const exit = await npm.exit;
  const gone = await eventually(async () => (below.every((pid) => !isAlive(pid)) ? Date.now() - signalledAt : undefined), 15_000, 'the service process gone').catch(
    (error: Error) => error,
  );
  console.log(`npm start SIGTERM: npm exit ${JSON.stringify(exit)}, service processes gone after ${String(gone instanceof Error ? gone.message : `${gone} ms`)}`);

  expect(gone).not.toBeInstanceOf(Error);
  expect(await answers(url)).toBe(false);
  expect(exit).toEqual({ code: 0, signal: null });
  expect(npm.output()).toContain('coupon issuance service stopped'); // a graceful stop, not a kill
}, 240_000);
