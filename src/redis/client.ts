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
  coalesceWrites(redis);
  return defineScripts(redis);
}

/**
 * Every command sent during one turn of the event loop leaves in one socket write: the socket is corked at the
 * turn's first command and uncorked once the turn's I/O callbacks have run (setImmediate). Under a rush, the
 * reservations of every request read in that turn share one system call instead of one each, which is the
 * largest single cost of the hot path here (a write per request); with one request in flight nothing waits.
 */
function coalesceWrites(redis: Redis): void {
  let corked: { uncork(): void } | null = null;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (...args: Parameters<Redis['sendCommand']>) => {
    const socket = (redis as unknown as { stream?: { cork(): void; uncork(): void; writable: boolean } }).stream;
    if (corked === null && socket?.writable && redis.status === 'ready') {
      socket.cork();
      corked = socket;
      setImmediate(() => {
        const held = corked;
        corked = null;
        held?.uncork();
      });
    }
    return send(...args);
  };
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
