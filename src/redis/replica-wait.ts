import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import { UnavailableError } from '../domain/errors';
import { askRedirectsOf, watchAskRedirects } from './client';

/**
 * Redis WAIT: a write counts only once replicas hold it, so a failover cannot take it back. WAIT cannot run
 * inside a script, and it covers the writes made on the connection it is sent on: it must follow the write on
 * the very connection (the node's, in a cluster) that carried it. The writes answered in one turn of the event
 * loop share one WAIT per connection.
 *
 * Use: take a route before sending the write (route(key)), then confirm(route) once it answered. A route whose
 * connection changed meanwhile (a reconnect, a failover, a MOVED to another node, an ASK while its slot moves)
 * cannot be confirmed: WAIT on a connection that did not carry the write would prove nothing, so the write is
 * reported unconfirmed.
 *
 * How many replicas: `required` (REDIS_WAIT_REPLICAS) when above 0. Else, with `oneIfAny`, one replica when the
 * node has one in sync and none when it has none: what the consumer needs before storing, so PostgreSQL never
 * holds a coupon whose reservation a promoted replica does not know (a node without a replica cannot be
 * replaced by a stale one). Else none: nothing waits.
 *
 * A node whose last WAIT fell short (a master left without a replica, such as a promoted one) is looked at with
 * INFO replication before each write until a replica is back: reservations are refused without being made.
 */

/** How long a node's count of replicas in sync is trusted. */
const INFO_FRESH_MS = 200;

export interface Route {
  key: string;
  connection: Redis;
  generation: number;
  /** ASK redirections of the key's slot so far (cluster): one more by confirm time, and the write ran elsewhere. */
  asks: number;
}

interface NodeState {
  /** Counts the connection's reconnects: a new socket carries none of the writes of the old one. */
  generation: number;
  /** The WAIT every confirmation of this turn joins (per replica count), sent once the turn's replies are in. */
  batches: Map<number, Promise<number>>;
  /** Set when a WAIT fell short, cleared by one that did not. */
  short: boolean;
  replicasSeen: { at: number; count: Promise<number> } | null;
}

export interface ReplicaWaitOptions {
  /** REDIS_WAIT_REPLICAS. */
  required: number;
  timeoutMs: number;
  /** With required 0: still wait for one replica when the node has one in sync (see above). */
  oneIfAny?: boolean;
}

export class ReplicaWaiter {
  private readonly nodes = new WeakMap<Redis, NodeState>();

  constructor(
    /** The client whose writes are confirmed: WAIT goes to its node connections. */
    readonly redis: Redis | Cluster,
    private readonly options: ReplicaWaitOptions,
  ) {
    if (redis instanceof Cluster) watchAskRedirects(redis);
  }

  /** Whether confirm() may wait at all. */
  get enabled(): boolean {
    return this.options.required > 0 || this.options.oneIfAny === true;
  }

  /** The connection a write to `key` is about to go through; null when none is connected yet. */
  route(key: string): Route | null {
    const connection = this.connectionFor(key);
    if (!connection) return null;
    return { key, connection, generation: this.state(connection).generation, asks: this.asks(key) };
  }

  /** How many replicas a write on this route must reach: see the options. */
  async needed(route: Route | null): Promise<number> {
    const { required, oneIfAny } = this.options;
    if (required > 0) return required;
    if (!oneIfAny || !route) return 0;
    return Math.min(1, await this.replicasInSync(route.connection));
  }

  /**
   * Throws UnavailableError, without anything written, when the node's last WAIT fell short and it still has
   * fewer replicas in sync than required (a master promoted by a failover, whose own replica is gone).
   */
  async ensureReplicas(route: Route | null): Promise<void> {
    if (!route || !this.state(route.connection).short) return;
    if ((await this.replicasInSync(route.connection)) < this.options.required) {
      throw this.unavailable('the Redis master holding this promotion has no replica in sync to confirm writes');
    }
  }

  /** Resolves once `replicas` replicas hold every write the route's connection carried; else UnavailableError. */
  async confirm(route: Route | null, replicas = this.options.required): Promise<void> {
    if (replicas <= 0) return;
    if (!route) throw this.unavailable('no Redis connection to confirm the write on');
    const state = this.state(route.connection);
    // A reconnect, a MOVED (the slot map changed) or an ASK (a slot being migrated) sent the write elsewhere:
    // not provable here.
    if (state.generation !== route.generation || this.connectionFor(route.key) !== route.connection || this.asks(route.key) !== route.asks) {
      throw this.unavailable('the Redis connection changed before the write was confirmed');
    }
    let batch = state.batches.get(replicas);
    if (!batch) {
      batch = new Promise<number>((resolve, reject) => {
        // Every reply read in this turn joins: their writes precede this WAIT on the connection.
        setImmediate(() => {
          state.batches.delete(replicas);
          (route.connection.call('WAIT', replicas, this.options.timeoutMs) as Promise<number>).then(resolve, reject);
        });
      });
      state.batches.set(replicas, batch);
    }
    const acknowledged = await batch.catch(() => -1);
    state.short = acknowledged < replicas;
    if (!state.short) return;
    state.replicasSeen = null; // look again before the next write
    throw this.unavailable(`${Math.max(0, acknowledged)} of ${replicas} Redis replicas confirmed the write in ${this.options.timeoutMs} ms`);
  }

  private unavailable(message: string): UnavailableError {
    return new UnavailableError(message, Math.max(100, this.options.timeoutMs * 5));
  }

  private replicasInSync(connection: Redis): Promise<number> {
    const state = this.state(connection);
    const now = Date.now();
    if (!state.replicasSeen || now - state.replicasSeen.at > INFO_FRESH_MS) {
      state.replicasSeen = { at: now, count: onlineReplicas(connection).catch(() => 0) };
    }
    return state.replicasSeen.count;
  }

  private state(connection: Redis): NodeState {
    let state = this.nodes.get(connection);
    if (!state) {
      const created: NodeState = { generation: 0, batches: new Map(), short: false, replicasSeen: null };
      connection.on('close', () => created.generation++);
      this.nodes.set(connection, created);
      state = created;
    }
    return state;
  }

  private asks(key: string): number {
    return this.redis instanceof Cluster ? askRedirectsOf(this.redis, calculateSlot(key)) : 0;
  }

  /** The connection to the master serving `key`'s slot, as the client routes commands now. Single node: the one. */
  private connectionFor(key: string): Redis | null {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) return redis;
    // ioredis's slot map (slot → node keys, master first): the one its command routing reads.
    const nodeKey = (redis as unknown as { slots: string[][] }).slots[calculateSlot(key)]?.[0];
    if (!nodeKey) return null;
    return redis.nodes('master').find((node) => `${node.options.host}:${node.options.port}` === nodeKey) ?? null;
  }
}

/** Replicas in sync with the node (INFO replication: `slaveN:...,state=online,...`); one still loading is not. */
async function onlineReplicas(connection: Redis): Promise<number> {
  const info = await connection.info('replication');
  return info.split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length;
}
