import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { defineScripts, type ScriptCommands, type ScriptedRedis } from './scripts';

/**
 * Builds ioredis clients with the project's scripts defined, against one Redis node (REDIS_URL) or a Redis
 * Cluster (REDIS_CLUSTER_NODES). Nothing connects at import time.
 * Commands queue while connecting; a request then fails fast rather than waiting forever. A command already
 * sent when the connection drops is never sent again: it may have run, and running a reservation or a
 * stock addition twice is exactly what must not happen (the caller sees an error instead).
 * In a cluster, ioredis follows MOVED and ASK by itself (a redirected command has not run anywhere), and a
 * script unknown to a node (a promoted replica, a new master) is sent in full once (EVALSHA, then EVAL on
 * NOSCRIPT), so scripts are loaded on every master as soon as it is asked to run one.
 */
const COMMAND_TIMEOUT_MS = 5000;

/** Where Redis is: one node (its URL), or a cluster's seed nodes. */
export type RedisTarget = string | { clusterNodes: { host: string; port: number }[] };

/** The configured Redis: the cluster when REDIS_CLUSTER_NODES is set, else REDIS_URL. */
export function redisTarget(config: { redisUrl: string; redisClusterNodes: { host: string; port: number }[] | null }): RedisTarget {
  return config.redisClusterNodes ? { clusterNodes: config.redisClusterNodes } : config.redisUrl;
}

export function isCluster(redis: Redis | Cluster): redis is Cluster {
  return redis instanceof Cluster;
}

const commandOptions: RedisOptions = {
  maxRetriesPerRequest: 3,
  enableAutoPipelining: false,
  autoResendUnfulfilledCommands: false,
  // Without resending, ioredis 5 never settles a command that was in flight when the connection dropped if
  // the reconnect then succeeds (redis/ioredis#2193): the caller would wait forever. A bound turns that into
  // the error promised above. No command on this connection blocks for long: Redis answers in microseconds,
  // and WAIT (REDIS_WAIT_REPLICAS) for at most REDIS_WAIT_TIMEOUT_MS.
  commandTimeout: COMMAND_TIMEOUT_MS,
};

function clusterOptions(connectionName: string, redisOptions: RedisOptions, extra: Partial<ClusterOptions> = {}): ClusterOptions {
  return {
    lazyConnect: true,
    redisOptions: { ...redisOptions, connectionName },
    // After a failover the old master is gone: the topology is read again quickly, and commands wait for it
    // (bounded by the retries below) rather than failing at once.
    slotsRefreshTimeout: 1000,
    slotsRefreshInterval: 2000,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    // A node connection that drops is not reconnected (the ioredis default): commands for its slots go to
    // another node, whose MOVED (or a refresh) leads to the promoted replica. Reconnecting instead would hold
    // them in the dead node's queue until the command timeout.
    ...extra,
  };
}

export function createRedis(url: string, connectionName: string): Redis & ScriptCommands;
export function createRedis(target: RedisTarget, connectionName: string): ScriptedRedis;
export function createRedis(target: RedisTarget, connectionName: string): ScriptedRedis {
  if (typeof target !== 'string') {
    const cluster = new Cluster(target.clusterNodes, clusterOptions(connectionName, commandOptions));
    // Each node connection coalesces its own writes (see coalesceWrites): commands reach nodes through them.
    cluster.on('+node', (node: Redis) => coalesceWrites(node));
    watchAskRedirects(cluster);
    return defineScripts(cluster);
  }
  const redis = new Redis(target, { ...commandOptions, connectionName, lazyConnect: true });
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

const askRedirects = new WeakMap<Cluster, Map<number, number>>();

/**
 * Commands redirected by ASK so far, per slot (a slot being migrated: the command ran on the importing node,
 * though the client's slot map still names the other one). Whoever must know which node ran a write (a WAIT
 * after it, see replica-wait.ts) compares the count before and after.
 */
export function askRedirectsOf(cluster: Cluster, slot: number): number {
  return askRedirects.get(cluster)?.get(slot) ?? 0;
}

/** Starts counting a cluster client's ASK redirections (see askRedirectsOf); calling it again does nothing. */
export function watchAskRedirects(cluster: Cluster): void {
  if (askRedirects.has(cluster)) return;
  const counts = new Map<number, number>();
  askRedirects.set(cluster, counts);
  for (const node of cluster.nodes('all')) countAskRedirects(counts, node);
  cluster.on('+node', (node: Redis) => countAskRedirects(counts, node));
}

/** ioredis sends ASKING on the target node, then the redirected command: counted per slot. */
function countAskRedirects(counts: Map<number, number>, node: Redis): void {
  let asking = false;
  const send = node.sendCommand.bind(node);
  node.sendCommand = (...args: Parameters<Redis['sendCommand']>) => {
    const [command] = args;
    if (command.name === 'asking') asking = true;
    else if (asking) {
      asking = false;
      const slot = command.getSlot();
      if (typeof slot === 'number') counts.set(slot, (counts.get(slot) ?? 0) + 1);
    }
    return send(...args);
  };
}

/**
 * For blocking reads and (S)SUBSCRIBE: they need a connection of their own and must never time out a command.
 * In a cluster, sharded subscriptions (SSUBSCRIBE) go to the master that owns each channel's slot, over one
 * subscriber connection per master, and move with the slot after a failover.
 */
export function createDedicatedRedis(url: string, connectionName: string): Redis & ScriptCommands;
export function createDedicatedRedis(target: RedisTarget, connectionName: string): ScriptedRedis;
export function createDedicatedRedis(target: RedisTarget, connectionName: string): ScriptedRedis {
  const options: RedisOptions = { maxRetriesPerRequest: null };
  if (typeof target !== 'string') {
    return defineScripts(new Cluster(target.clusterNodes, clusterOptions(connectionName, options, { shardedSubscribers: true })));
  }
  return defineScripts(new Redis(target, { ...options, connectionName, lazyConnect: true }));
}

export async function connectRedis(redis: Redis | Cluster): Promise<void> {
  if (redis.status === 'wait') await redis.connect();
  if (redis.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      redis.once('ready', () => resolve());
      redis.once('end', () => reject(new Error('Redis connection ended before it was ready')));
    });
  }
}
