import { createServer, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { UnavailableError } from '../../src/domain/errors';
import { unavailableWhenRedisDown } from '../../src/redis/unavailable';

/** Which failures become SERVICE_UNAVAILABLE: Redis unreachable or between topologies, never a bug. */

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A ReplyError as ioredis makes it from a Redis error reply. */
function reply(message: string): Error {
  const error = new Error(message);
  error.name = 'ReplyError';
  return error;
}

test('When Redis cannot be reached, then the error ioredis raises becomes SERVICE_UNAVAILABLE with a retry delay', async () => {
  const redis = new Redis(await closedPort(), '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  const error = await redis.connect().then(
    () => redis.get('k'),
    () => redis.get('k'),
  ).catch((e: unknown) => e);
  redis.disconnect();
  const translated = unavailableWhenRedisDown(error);
  expect(translated).toBeInstanceOf(UnavailableError);
  expect((translated as UnavailableError).retryAfterMs).toBe(1000);
});

test.each(['CLUSTERDOWN The cluster is down', 'TRYAGAIN Multiple keys request during rehashing of slot', 'LOADING Redis is loading the dataset in memory', 'BUSY Redis is busy running a script'])(
  'When a node answers %s, then it is SERVICE_UNAVAILABLE',
  (message) => {
    expect(unavailableWhenRedisDown(reply(message))).toBeInstanceOf(UnavailableError);
  },
);

test('When the failure is a script error or a bug, then it is returned as it is (an internal error)', () => {
  const scriptError = reply('ERR user_script:1: Script attempted to access nonexistent global variable');
  const bug = new TypeError("Cannot read properties of undefined (reading 'id')");
  expect(unavailableWhenRedisDown(scriptError)).toBe(scriptError);
  expect(unavailableWhenRedisDown(bug)).toBe(bug);
  expect(unavailableWhenRedisDown('not an error')).toBe('not an error');
});
