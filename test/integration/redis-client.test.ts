import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { connectRedis, createRedis } from '../../src/redis/client';
import { deleteKeys, TEST_REDIS_URL } from '../helpers/environment';

/**
 * The command connection sends every command of one event-loop turn in one socket write (a rush's reservations
 * share a system call), and each command still gets its own answer, in order.
 */

const prefix = `test:redis_client_${randomBytes(4).toString('hex')}:`;
const redis = createRedis(TEST_REDIS_URL, 'test-client');

beforeAll(() => connectRedis(redis));
afterAll(async () => {
  redis.disconnect();
  await deleteKeys(TEST_REDIS_URL, prefix);
});

/** Counts the writes that reach the real socket (one per system call: write or writev). */
function countWrites(socket: Socket): () => number {
  let writes = 0;
  const target = socket as unknown as { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void };
  const write = target._write.bind(socket);
  const writev = target._writev?.bind(socket);
  target._write = (...a) => (writes++, write(...a));
  if (writev) target._writev = (...a) => (writes++, writev(...a));
  return () => writes;
}

test('When 200 commands are sent in one turn, then they leave in one write and each gets its own answer', async () => {
  const writes = countWrites((redis as unknown as { stream: Socket }).stream);
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => redis.incrby(`${prefix}n`, i + 1)));
  expect(writes()).toBe(1);
  // Each INCRBY answered with the running total at its own turn: sent and answered in order.
  let total = 0;
  expect(answers).toEqual(Array.from({ length: 200 }, (_, i) => (total += i + 1)));
});

test('When commands are sent in separate turns, then each turn leaves in its own write', async () => {
  const writes = countWrites((redis as unknown as { stream: Socket }).stream);
  for (let i = 0; i < 3; i++) {
    await Promise.all([redis.set(`${prefix}a`, String(i)), redis.get(`${prefix}a`)]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(writes()).toBe(3);
  expect(await redis.get(`${prefix}a`)).toBe('2');
});
