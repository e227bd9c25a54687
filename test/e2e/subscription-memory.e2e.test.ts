import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { tokenFor } from '../helpers/clients';
import { createTestEnvironment, TEST_JWT_SECRET, type TestEnvironment } from '../helpers/environment';
import { endOf, openRaw } from '../helpers/raw-ws';

/**
 * A signed-in user who opens many subscriptions, each carrying a megabyte of variables the operation
 * never declares, must not be able to fill the heap: a subscription keeps only the variables it reads.
 * The service runs as a child with a small heap, so running out shows in seconds (it dies), not minutes.
 */

const HEAP_MB = 96;
const SUBSCRIPTIONS = 100;
let env: TestEnvironment;
let child: ChildProcess | null = null;

beforeAll(async () => {
  env = await createTestEnvironment('sub_memory');
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await env.cleanup();
});

function startService(extraEnv: Record<string, string>): Promise<{ url: string; exited: Promise<string> }> {
  child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, '-r', '@swc-node/register', join(__dirname, '..', '..', 'src', 'main.ts')], {
    env: {
      ...process.env,
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      REDIS_KEY_PREFIX: env.prefix,
      PORT: '0',
      HOST: '127.0.0.1',
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: 'info', // the start line carries the URL
      ROLE: 'api',
      MIGRATE: 'false',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = child;
  let out = '';
  proc.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  proc.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<string>((resolve) => proc.once('exit', (code, signal) => resolve(`exited (${code ?? signal}): ${out.slice(-300)}`)));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) {
        clearInterval(timer);
        resolve(match[1] as string);
      }
    }, 50);
    void exited.then((why) => {
      clearInterval(timer);
      reject(new Error(`service ${why}`));
    });
  });
  return url.then((u) => ({ url: u, exited }));
}

test(`When one socket opens ${SUBSCRIPTIONS} subscriptions each carrying ~1 MB of undeclared variables, then a ${HEAP_MB} MB heap holds and the service still answers`, async () => {
  // Frames and subscriptions allowed large enough that only the retention of variables is tested here.
  const { url, exited } = await startService({ MAX_BODY_BYTES: String(2 * 1024 * 1024), WS_MAX_SUBSCRIPTIONS: String(SUBSCRIPTIONS * 2) });
  const socket = await openRaw(url);
  await socket.init(`Bearer ${await tokenFor('mallory')}`);

  for (let i = 0; i < SUBSCRIPTIONS; i++) {
    // A distinct string each time, so nothing is shared between the messages.
    socket.subscribe(`s${i}`, 'subscription ($p: ID) { couponIssued(promotionId: $p) { requestId } }', { p: 'x', padding: `${i}`.padEnd(1_000_000, 'x') });
    if (i % 10 === 9) {
      socket.subscribe(`probe${i}`, '{ promotion(id: "x") { id } }');
      // A socket closed under the test most likely means the process died: then say so, with its last output.
      const probe = socket.waitFor(endOf(`probe${i}`), 30_000).catch((error: unknown) =>
        Promise.race([exited, new Promise<never>((_, reject) => setTimeout(() => reject(error), 2000))]),
      );
      const answered = await Promise.race([probe, exited]);
      if (typeof answered === 'string') throw new Error(`the service died after ${i + 1} subscriptions: ${answered}`);
    }
  }
  const health = await fetch(`${url}/healthz`);

  expect(health.status).toBe(200);
  expect(socket.ws.readyState).toBe(socket.ws.OPEN);
  socket.ws.close();
});
