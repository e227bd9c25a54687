import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { command, failed, fields, freePort, GaveUp, HOST, parseClusterNodes, settlesWithin, text, waitFor, type ClusterNode } from './redis-cluster-probe';

/**
 * A real 6-node Redis Cluster (3 masters, 3 replicas) on loopback for one test file: separate `redis-server`
 * child processes on ports the OS hands out, so jest workers never collide. The test can SIGKILL a node, wait
 * for the failover, restart it and watch it rejoin. Every wait is bounded and fails with the cluster's own view.
 */

const NODE_COUNT = 6;
const START_TIMEOUT_MS = 15_000;
const OUTPUT_LIMIT = 16 * 1024; // enough of each node's log to explain a failure

export interface RedisClusterOptions {
  /** Shown in the temp dir names and in error messages. */
  label?: string;
  /** cluster-node-timeout: how long a node must be unreachable before failover starts. Short, so tests are quick. */
  nodeTimeoutMs?: number;
}

export interface RedisClusterHandle {
  nodes: { port: number; pid: number }[];
  /** "127.0.0.1:P1,127.0.0.1:P2,..." for REDIS_CLUSTER_NODES. */
  seedNodes: string;
  ports: number[];
  /** Port of the master that serves the key's slot, in the view of a live node. */
  masterForKey(key: string): Promise<number>;
  /** Ports of the masters that own slots, sorted. */
  masters(): Promise<number[]>;
  /** Port of a healthy replica of that master, or null. */
  replicaOf(masterPort: number): Promise<number | null>;
  /** Sends the signal to that node's process; resolves once it has exited. */
  kill(port: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts the node again on its port and data dir (so its nodes.conf); resolves once it answers PING. */
  restart(port: number): Promise<void>;
  /** Resolves with the port now serving the dead master's slots, once the cluster is ok again. */
  waitForFailover(deadMasterPort: number, timeoutMs: number): Promise<number>;
  /** Resolves with the port of a replica in sync with that master, once every node knows it as its replica. */
  waitForReplica(masterPort: number, timeoutMs: number): Promise<number>;
  /**
   * Migrates one hash slot from its master to the master on `toPort`, as `redis-cli --cluster reshard` does:
   * IMPORTING on the target, MIGRATING on the source, the keys moved with MIGRATE (one at a time, `pauseMsPerKey`
   * apart, when set: traffic meanwhile meets ASK and TRYAGAIN), then SETSLOT NODE on the target, the source and
   * every other master. Resolves once every live node sees the target as the slot's owner.
   * `midHandOver` runs once every key is on the target and the target owns the slot, before the source is told
   * (the moment between those two SETSLOT NODE calls, longer): the source still serves the slot's shard channels
   * and sends commands on with ASK.
   */
  moveSlot(slot: number, toPort: number, options?: MoveOptions): Promise<MoveReport>;
  /** Runs at stop(), before the nodes are killed (clients to close). */
  onStop(cleanup: () => void | Promise<void>): void;
  /** SIGKILLs every node (by PID) and removes the temp dirs. Idempotent. */
  stop(): Promise<void>;
}

export interface MoveOptions {
  pauseMsPerKey?: number;
  timeoutMs?: number;
  midHandOver?: () => Promise<void>;
}

export interface MoveReport {
  fromPort: number;
  keysMoved: number;
}

interface Node {
  port: number;
  dir: string;
  child: ChildProcess | null;
  exited: Promise<void>;
  output: string;
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const label = (options.label ?? 'cluster').replace(/[^a-z0-9_-]/gi, '_');
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const nodes = new Map<number, Node>();
  const cleanups: (() => void | Promise<void>)[] = [];
  let stopped = false;

  const serverArgs = (node: Node): string[] => [
    '--port', String(node.port),
    '--bind', HOST,
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf', // inside --dir: a restart finds its identity and epoch again
    '--cluster-node-timeout', String(nodeTimeoutMs),
    '--cluster-replica-validity-factor', '0', // a replica may always be promoted, however long it was cut off
    '--cluster-allow-reads-when-down', 'no',
    // The masters that live keep serving their slots while a dead one's are failed over (the default stops all).
    '--cluster-require-full-coverage', 'no',
    '--appendonly', 'no',
    '--save', '',
    '--dir', node.dir,
    '--daemonize', 'no', // our child: we own its PID
    '--protected-mode', 'no',
    '--loglevel', 'warning',
    '--repl-diskless-sync-delay', '0', // the default waits 5 s for more replicas before a full sync
  ];

  const spawnNode = (node: Node): ChildProcess => {
    const child = spawn('redis-server', serverArgs(node), { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => (node.output = (node.output + chunk.toString()).slice(-OUTPUT_LIMIT));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    node.child = child;
    node.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        node.output += `\n[exited: ${signal ?? code}]`;
        if (node.child === child) node.child = null;
        resolve();
      });
      child.once('error', (error) => {
        node.output += `\n[spawn error: ${error.message}]`;
        if (node.child === child) node.child = null;
        resolve();
      });
    });
    return child;
  };

  const output = (): string =>
    [...nodes.values()].map((n) => `--- node ${n.port} (${n.child ? `pid ${n.child.pid}` : 'not running'}):\n${n.output.trim()}`).join('\n');

  const live = (): Node[] => [...nodes.values()].filter((n) => n.child);

  /** A command on the first live node that answers (one may be stopped, or just killed). */
  const askAny = async (...args: (string | number)[]): Promise<string> => {
    let lastError: unknown = new Error('Redis Cluster: no live node');
    for (const node of live()) {
      try {
        return await text(node.port, ...args);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };

  const clusterView = async (): Promise<ClusterNode[]> => parseClusterNodes(await askAny('CLUSTER', 'NODES'));

  const diagnostic = async (): Promise<string> => {
    const views = await Promise.all(
      live().map(async (n) => {
        const nodesView = await text(n.port, 'CLUSTER', 'NODES').catch((e: unknown) => String(e));
        const state = await text(n.port, 'CLUSTER', 'INFO').then(
          (i) => `${fields(i).get('cluster_state')} slots_ok=${fields(i).get('cluster_slots_ok')}`,
          (e: unknown) => String(e),
        );
        return `=== CLUSTER NODES seen by ${n.port} (${state}):\n${nodesView.trim()}`;
      }),
    );
    return `${views.join('\n')}\n${output()}`;
  };

  const pingable = (node: Node, timeoutMs: number): Promise<true> =>
    waitFor(
      `node ${node.port} to answer PING`,
      timeoutMs,
      async () => {
        if (!node.child) throw new GaveUp(`node ${node.port} exited:\n${node.output.trim()}`);
        if ((await text(node.port, 'PING')) !== 'PONG') return undefined;
        // Ours, not another process's server that took the port first (our child then fails to bind, and exits).
        const pid = Number(fields(await text(node.port, 'INFO', 'server')).get('process_id'));
        if (pid !== node.child.pid) throw new GaveUp(`port ${node.port} is served by another process (pid ${pid})`);
        return true;
      },
      async () => output(),
    );

  /**
   * The cluster is formed: every live node says ok with all slots, and knows every node as either a master with
   * slots or a replica of one (gossip lags INFO: a replica may sync before the others learn whose it is); and
   * each master has a replica online.
   */
  const healthy = async (): Promise<true | undefined> => {
    for (const node of live()) {
      const info = fields(await text(node.port, 'CLUSTER', 'INFO'));
      if (info.get('cluster_state') !== 'ok' || info.get('cluster_slots_ok') !== '16384') return undefined;
      const view = parseClusterNodes(await text(node.port, 'CLUSTER', 'NODES'));
      const placed = (n: ClusterNode) => !failed(n) && (n.slots.length > 0 ? n.flags.includes('master') : n.masterId !== null);
      if (view.length !== nodes.size || !view.every(placed)) return undefined;
    }
    for (const port of await mastersNow()) {
      if ((await syncedReplica(port)) === undefined) return undefined;
    }
    return true;
  };

  const mastersNow = async (): Promise<number[]> =>
    (await clusterView())
      .filter((n) => n.flags.includes('master') && !failed(n) && n.slots.length > 0)
      .map((n) => n.port)
      .sort((a, b) => a - b);

  /**
   * INFO replication on the master: the port of its first replica in state online (full sync done, streaming).
   * Not also a nonzero offset: a fresh master's offset stays 0 until its first replica ping (10 s by default).
   */
  const syncedReplica = async (masterPort: number): Promise<number | undefined> => {
    const info = fields(await text(masterPort, 'INFO', 'replication'));
    if (info.get('role') !== 'master' || Number(info.get('connected_slaves') ?? 0) < 1) return undefined;
    // slave0:ip=127.0.0.1,port=P,state=online,offset=N,lag=0
    const replica = new Map((info.get('slave0') ?? '').split(',').map((kv) => kv.split('=') as [string, string]));
    if (replica.get('state') !== 'online') return undefined;
    return Number(replica.get('port'));
  };

  // The slots each killed master owned, so waitForFailover knows whom to look for once they have moved.
  const slotsAtKill = new Map<number, [number, number][]>();

  const handle: RedisClusterHandle = {
    nodes: [],
    seedNodes: '',
    ports: [],

    async masterForKey(key) {
      const slot = Number(await askAny('CLUSTER', 'KEYSLOT', key));
      const owner = (await clusterView()).find((n) => n.flags.includes('master') && n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!owner) throw new Error(`Redis Cluster: no master owns slot ${slot} (key ${key})\n${await diagnostic()}`);
      return owner.port;
    },

    masters: mastersNow,

    async replicaOf(masterPort) {
      const view = await clusterView();
      const master = view.find((n) => n.port === masterPort);
      const replica = master && view.find((n) => n.masterId === master.id && n.flags.includes('slave') && !failed(n));
      return replica ? replica.port : null;
    },

    async kill(port, signal = 'SIGKILL') {
      const node = nodes.get(port);
      if (!node) throw new Error(`Redis Cluster: ${port} is not one of this cluster's nodes`);
      const child = node.child;
      if (!child) return;
      const self = (await clusterView().catch(() => [])).find((n) => n.port === port);
      if (self?.flags.includes('master') && self.slots.length) slotsAtKill.set(port, self.slots);
      child.kill(signal);
      // Bounded: a signal that does not end the process (SIGSTOP, SIGHUP) must not hang the test.
      if (!(await settlesWithin(node.exited, 5000))) {
        throw new Error(`Redis Cluster: node ${port} (pid ${child.pid}) did not exit within 5 s of ${signal}`);
      }
    },

    async restart(port) {
      const node = nodes.get(port);
      if (!node) throw new Error(`Redis Cluster: ${port} is not one of this cluster's nodes`);
      if (node.child) throw new Error(`Redis Cluster: node ${port} is still running (pid ${node.child.pid})`);
      const child = spawnNode(node);
      const entry = handle.nodes.find((n) => n.port === port);
      if (entry) entry.pid = child.pid ?? 0;
      await pingable(node, 5000);
    },

    async waitForFailover(deadMasterPort, timeoutMs) {
      const [first] = slotsAtKill.get(deadMasterPort) ?? [];
      if (!first) throw new Error(`Redis Cluster: ${deadMasterPort} was not killed as a master with slots (use kill())`);
      const slot = first[0];
      return waitFor(
        `a replica to take over slot ${slot} of dead master ${deadMasterPort}`,
        timeoutMs,
        async () => {
          let promoted: number | undefined;
          // Every answering node must be ok and agree on the new owner, not just the one that won the election.
          // A node that does not answer (the dead master itself, if it was only stopped) has no say.
          for (const node of live()) {
            const info = await text(node.port, 'CLUSTER', 'INFO').then(fields, () => null);
            if (!info) continue;
            if (info.get('cluster_state') !== 'ok') return undefined;
            const owner = parseClusterNodes(await text(node.port, 'CLUSTER', 'NODES')).find(
              (n) => n.flags.includes('master') && !failed(n) && n.slots.some(([a, b]) => slot >= a && slot <= b),
            );
            if (!owner || owner.port === deadMasterPort || (promoted !== undefined && owner.port !== promoted)) return undefined;
            promoted = owner.port;
          }
          if (promoted === undefined) return undefined;
          return fields(await text(promoted, 'INFO', 'replication')).get('role') === 'master' ? promoted : undefined;
        },
        diagnostic,
      );
    },

    waitForReplica(masterPort, timeoutMs) {
      return waitFor(
        `a replica in sync with master ${masterPort}, known as such by every node`,
        timeoutMs,
        async () => {
          const replica = await syncedReplica(masterPort);
          if (replica === undefined) return undefined;
          // A restarted node first claims its old role from nodes.conf; wait until gossip has told everyone.
          for (const node of live()) {
            const view = parseClusterNodes(await text(node.port, 'CLUSTER', 'NODES'));
            const master = view.find((n) => n.port === masterPort);
            const known = view.find((n) => n.port === replica);
            if (!master || known?.masterId !== master.id || failed(known)) return undefined;
          }
          return replica;
        },
        diagnostic,
      );
    },

    async moveSlot(slot, toPort, moveOptions = {}) {
      const pauseMs = moveOptions.pauseMsPerKey ?? 0;
      const deadline = Date.now() + (moveOptions.timeoutMs ?? 60_000);
      const view = await clusterView();
      const source = view.find((n) => n.flags.includes('master') && !failed(n) && n.slots.some(([a, b]) => slot >= a && slot <= b));
      const target = view.find((n) => n.port === toPort);
      if (!source) throw new Error(`Redis Cluster: no master owns slot ${slot}\n${await diagnostic()}`);
      if (!target?.flags.includes('master') || failed(target)) throw new Error(`Redis Cluster: ${toPort} is not a live master\n${await diagnostic()}`);
      if (source.port === toPort) throw new Error(`Redis Cluster: slot ${slot} is already on ${toPort}`);
      // One connection per side for the whole move: the source answers GETKEYSINSLOT and runs every MIGRATE.
      const connect = async (port: number) => {
        const redis = new Redis({ host: HOST, port, lazyConnect: true, connectTimeout: 1000, commandTimeout: 10_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
        redis.on('error', () => undefined);
        await redis.connect();
        return redis;
      };
      const [from, to] = await Promise.all([connect(source.port), connect(toPort)]);
      let keysMoved = 0;
      try {
        // Target first: it must accept ASKING before the source starts redirecting.
        await to.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', source.id);
        await from.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', target.id);
        const batch = pauseMs > 0 ? 1 : 100;
        for (;;) {
          if (Date.now() > deadline) throw new Error(`Redis Cluster: slot ${slot} still had keys on ${source.port} after ${keysMoved} moved`);
          const keys = (await from.call('CLUSTER', 'GETKEYSINSLOT', slot, batch)) as string[];
          if (keys.length === 0) break;
          await from.call('MIGRATE', HOST, toPort, '', 0, 5000, 'KEYS', ...keys);
          keysMoved += keys.length;
          if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
        }
        // Target first again (it stops importing and owns the slot), then the source, then the other masters,
        // so no node keeps redirecting to the old owner until gossip reaches it.
        await to.call('CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
        await moveOptions.midHandOver?.();
        await from.call('CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
        for (const port of await mastersNow()) {
          if (port !== source.port && port !== toPort) await text(port, 'CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
        }
      } finally {
        from.disconnect();
        to.disconnect();
      }
      await waitFor(
        `every node to see slot ${slot} on ${toPort}`,
        Math.max(1000, deadline - Date.now()),
        async () => {
          for (const node of live()) {
            const owner = parseClusterNodes(await text(node.port, 'CLUSTER', 'NODES')).find((n) => n.flags.includes('master') && n.slots.some(([a, b]) => slot >= a && slot <= b));
            if (owner?.port !== toPort) return undefined;
          }
          return true;
        },
        diagnostic,
      );
      return { fromPort: source.port, keysMoved };
    },

    onStop(cleanup) {
      cleanups.push(cleanup);
    },

    async stop() {
      if (stopped) return;
      stopped = true;
      process.off('exit', onExit);
      for (const cleanup of cleanups.splice(0)) await Promise.resolve(cleanup()).catch(() => undefined);
      killAllNow();
      await Promise.all([...nodes.values()].map((n) => n.exited));
      for (const node of nodes.values()) rmSync(node.dir, { recursive: true, force: true });
    },
  };

  // Synchronous, by PID, so it can also run as the test process exits without stop(): no node outlives it.
  function killAllNow(): void {
    for (const node of nodes.values()) node.child?.kill('SIGKILL');
  }
  const onExit = (): void => {
    killAllNow();
    for (const node of nodes.values()) rmSync(node.dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  try {
    const taken = new Set<number>();
    const startNode = async (): Promise<Node> => {
      // The port may be taken between our check and redis-server's bind (another jest worker): try another.
      for (let attempt = 1; ; attempt++) {
        const port = await freePort(taken);
        const node: Node = { port, dir: mkdtempSync(join(tmpdir(), `redis-${label}-${port}-`)), child: null, exited: Promise.resolve(), output: '' };
        nodes.set(port, node);
        spawnNode(node);
        try {
          await pingable(node, 5000);
          return node;
        } catch (error) {
          if (node.child || attempt >= 3) throw error;
          nodes.delete(port);
          rmSync(node.dir, { recursive: true, force: true });
        }
      }
    };
    // allSettled: on a failure, stop() must not run while another node is still being started.
    const results = await Promise.allSettled(Array.from({ length: NODE_COUNT }, startNode));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    const started = results.map((r) => (r as PromiseFulfilledResult<Node>).value);

    handle.ports = started.map((n) => n.port);
    handle.nodes = started.map((n) => ({ port: n.port, pid: n.child?.pid ?? 0 }));
    handle.seedNodes = handle.ports.map((p) => `${HOST}:${p}`).join(',');

    await createCluster(handle.ports, output);
    await waitFor('cluster_state:ok on every node with a replica per master', START_TIMEOUT_MS, healthy, diagnostic);
    return handle;
  } catch (error) {
    await handle.stop();
    throw error;
  }
}

/** redis-cli --cluster create: slots split over the first 3 nodes, one replica each. */
function createCluster(ports: number[], output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = ['--cluster', 'create', ...ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', '1', '--cluster-yes'];
    const cli = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    cli.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
    cli.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const timer = setTimeout(() => cli.kill('SIGKILL'), START_TIMEOUT_MS);
    cli.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`Redis Cluster: could not run redis-cli: ${error.message}`));
    });
    cli.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && log.includes('[OK] All 16384 slots covered')) resolve();
      else reject(new Error(`Redis Cluster: redis-cli --cluster create failed (${signal ?? code}):\n${log}\n${output()}`));
    });
  });
}

/**
 * An ioredis Cluster client on the handle's seed nodes, closed by handle.stop(). Connection errors while a
 * node is down are expected during a failover test; ioredis retries and follows MOVED on its own.
 */
export function clusterClient(handle: RedisClusterHandle, options: ClusterOptions = {}): Cluster {
  const seeds = handle.ports.map((port) => ({ host: HOST, port }));
  const client = new Cluster(seeds, {
    slotsRefreshTimeout: 2000,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    ...options,
    redisOptions: { connectTimeout: 1000, ...options.redisOptions },
  });
  client.on('error', () => undefined); // a killed node's socket errors; commands report what matters
  handle.onStop(() => client.disconnect());
  return client;
}

/** Subscribers of a sharded channel, asked of the master that owns its slot (PUBSUB is per node). */
export async function shardSubscribers(cluster: RedisClusterHandle, channel: string): Promise<number> {
  const reply = (await command(await cluster.masterForKey(channel), 'PUBSUB', 'SHARDNUMSUB', channel)) as [string, number];
  return Number(reply[1]);
}
