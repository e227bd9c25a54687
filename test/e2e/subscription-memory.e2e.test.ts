import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { endOf, openRaw } from '../helpers/raw-ws';
import { ROOT, serviceEnv, spawnService } from '../helpers/service-process';

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
  const service = spawnService(serviceEnv(env, { ROLE: 'api', MIGRATE: 'false', ...extraEnv }), {
    file: process.execPath,
    args: [`--max-old-space-size=${HEAP_MB}`, '-r', '@swc-node/register', join(ROOT, 'src', 'main.ts')],
  });
  child = service.child;
  const exited = service.exit.then(({ code, signal }) => `exited (${code ?? signal}): ${service.output().slice(-300)}`);
  return service.started.then((url) => ({ url, exited }));
}

const FEED = 'subscription ($p: ID) { couponIssued(promotionId: $p) { requestId } }';

test.each([
  // A distinct string each time, so nothing is shared between the messages.
  ['~1 MB of undeclared variables', (i: number) => ({ query: FEED, variables: { p: 'x', padding: `${i}`.padEnd(1_000_000, 'x') } })],
  // Comments are not tokens: MAX_QUERY_TOKENS lets them through, so the text must not be kept.
  ['a query with a ~1 MB comment', (i: number) => ({ query: `# ${`${i}`.padEnd(1_000_000, 'x')}\n${FEED}`, variables: { p: 'x' } })],
])(`When one socket opens ${SUBSCRIPTIONS} subscriptions each carrying %s, then a ${HEAP_MB} MB heap holds and the service still answers`, async (_case, message) => {
  // Frames, subscriptions and the per-user rate allowed large enough that only what a subscription keeps is
  // tested here: every one of the subscriptions must be live, holding whatever it keeps.
  const { url, exited } = await startService({
    MAX_BODY_BYTES: String(2 * 1024 * 1024),
    WS_MAX_SUBSCRIPTIONS: String(SUBSCRIPTIONS * 2),
    RATE_LIMIT_USER_PER_SECOND: '0',
  });
  const socket = await openRaw(url);
  await socket.init(`Bearer ${await tokenFor('mallory')}`);

  for (let i = 0; i < SUBSCRIPTIONS; i++) {
    const { query, variables } = message(i);
    socket.subscribe(`s${i}`, query, variables);
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
  // Every subscription was accepted and is still open: none ended, none was refused.
  expect(socket.messages.filter((m) => m.id?.startsWith('s') && m.type !== 'next')).toEqual([]);
  expect(socket.ws.readyState).toBe(socket.ws.OPEN);
  socket.ws.close();
  await socket.closed;
  child?.kill('SIGKILL');
  await exited;
});
