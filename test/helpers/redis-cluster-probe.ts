import { createServer } from 'node:net';
import { Redis } from 'ioredis';

/**
 * The low-level side of the Redis Cluster test helper: free ports, one-shot commands to a node, parsing of
 * INFO and CLUSTER NODES, and a bounded poll. No state: redis-cluster.ts owns the processes.
 */

export const HOST = '127.0.0.1';
const BUS_PORT_OFFSET = 10_000; // Redis's default cluster bus port is the client port + 10000
const POLL_MS = 50;

/** One CLUSTER NODES line. */
export interface ClusterNode {
  id: string;
  port: number;
  flags: string[];
  masterId: string | null;
  slots: [number, number][];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether the promise settles within ms (its timer cleared either way, so no handle is left open). */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Thrown inside a waitFor check: no point in polling any longer. */
export class GaveUp extends Error {}

/** Polls `check` until it returns a value (not undefined); rejects after timeoutMs with `describe()`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, describe: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof GaveUp) throw error;
      lastError = error; // a node still starting or just killed: keep polling until the deadline
    }
    if (Date.now() >= deadline) break;
    await sleep(POLL_MS);
  }
  const detail = await describe().catch((error: unknown) => `(no diagnostic: ${String(error)})`);
  const cause = lastError ? `\nlast error: ${String(lastError)}` : '';
  throw new Error(`Redis Cluster: timed out after ${timeoutMs} ms waiting for ${what}${cause}\n${detail}`);
}

function listenOnce(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen(port, HOST, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

/** A port the OS reports free whose bus port (+10000) is free too. Another process may still take it: start retries. */
export async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await listenOnce(0);
    if (port === null || taken.has(port) || port + BUS_PORT_OFFSET > 65_535) continue;
    taken.add(port); // before the next await: parallel calls must not pick it too
    if ((await listenOnce(port + BUS_PORT_OFFSET)) !== null) return port;
  }
  throw new Error('Redis Cluster: found no free port pair (port and port+10000) on 127.0.0.1');
}

/** One command on a short-lived connection: never retried, never queued, so a dead node fails fast. */
export async function command(port: number, ...args: (string | number)[]): Promise<unknown> {
  const redis = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined); // the awaited command reports it
  try {
    await redis.connect();
    return await redis.call(String(args[0]), ...args.slice(1));
  } finally {
    redis.disconnect();
  }
}

export async function text(port: number, ...args: (string | number)[]): Promise<string> {
  return String(await command(port, ...args));
}

/** "key:value" lines of INFO or CLUSTER INFO. */
export function fields(info: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of info.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) map.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return map;
}

export function parseClusterNodes(raw: string): ClusterNode[] {
  return raw
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-', , , , , ...slots] = line.trim().split(' ');
      return {
        id,
        // ip:port@busport[,hostname]
        port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
        flags: flags.split(','),
        masterId: master === '-' ? null : master,
        slots: slots
          .filter((s) => !s.startsWith('[')) // [slot->-id] importing/migrating markers
          .map((s): [number, number] => {
            const [from, to = from] = s.split('-').map(Number) as [number, number?];
            return [from, to];
          }),
      };
    });
}

export function failed(node: ClusterNode): boolean {
  return node.flags.includes('fail') || node.flags.includes('fail?');
}
