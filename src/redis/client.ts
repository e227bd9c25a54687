import { Redis } from 'ioredis';
import { defineScripts, type ScriptedRedis } from './scripts';

/**
 * Builds an ioredis client with the project's scripts defined. Nothing connects at import time.
 * Commands queue while connecting; a request then fails fast rather than waiting forever. A command already
 * sent when the connection drops is never sent again: it may have run, and running a reservation or a
 * stock addition twice is exactly what must not happen (the caller sees an error instead).
 */
const COMMAND_TIMEOUT_MS = 5000;

export function createRedis(url: string, connectionName: string): ScriptedRedis {
  const redis = new Redis(url, {
    connectionName,
    maxRetriesPerRequest: 3,
    enableAutoPipelining: false,
    autoResendUnfulfilledCommands: false,
    // Without resending, ioredis 5 never settles a command that was in flight when the connection dropped if
    // the reconnect then succeeds (redis/ioredis#2193): the caller would wait forever. A bound turns that into
    // the error promised above. No command on this connection blocks, and Redis answers in microseconds.
    commandTimeout: COMMAND_TIMEOUT_MS,
    lazyConnect: true,
  });
  return defineScripts(redis);
}

/** For blocking reads and SUBSCRIBE: they need a connection of their own and must never time out a command. */
export function createDedicatedRedis(url: string, connectionName: string): ScriptedRedis {
  const redis = new Redis(url, { connectionName, maxRetriesPerRequest: null, lazyConnect: true });
  return defineScripts(redis);
}

export async function connectRedis(redis: Redis): Promise<void> {
  if (redis.status === 'wait') await redis.connect();
  if (redis.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      redis.once('ready', () => resolve());
      redis.once('end', () => reject(new Error('Redis connection ended before it was ready')));
    });
  }
}
