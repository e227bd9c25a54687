import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import { UnavailableError } from '../domain/errors';

/**
 * REDIS_WAIT_REPLICAS: a write is acknowledged only once that many replicas hold it (Redis WAIT), so a failover
 * cannot lose what a client was told. WAIT cannot run inside a script, and it covers the writes made on the
 * connection it is sent on: it must follow the write on the very connection (the node's, in a cluster) that
 * carried it. The writes answered in one turn of the event loop share one WAIT per connection.
 *
 * Use: take a route before sending the write (route(key)), then confirm(route) once it answered. A route whose
 * connection changed meanwhile (a reconnect, a failover, a MOVED to another node) cannot be confirmed: WAIT on
 * a connection that did not carry the write would prove nothing, so the write is reported unconfirmed.
 *
 * A node whose last WAIT fell short (a master without a replica, such as a promoted one) is looked at with
 * INFO replication before each write until a replica is back: reservations are refused without being made.
 */

const INFO_FRESH_MS = 200;

export interface Route {
  key: string;
  connection: Redis;
  generation: number;
}

interface NodeState {
  generation: number;
  /** The WAIT every confirmation of this turn joins, sent once the turn's replies are in. */
  batch: Promise<number> | null;
  /** Set when a WAIT fell short: the replicas the node says it has, and when it said so. */
  shortSince: number | null;
  replicasSeen: { at: number; count: Promise<number> } | null;
}

export class ReplicaWaiter {
  private readonly nodes = new WeakMap<Redis, NodeState>();

  constructor(
    private readonly redis: Redis | Cluster,
    readonly replicas: number,
    private readonly timeoutMs: number,
  ) {}

  get enabled(): boolean {
    return this.replicas > 0;
  }

  /** The connection a write to `key` is about to go through; null when none is connected yet. */
  route(key: string): Route | null {
    const connection = this.connectionFor(key);
    if (!connection) return null;
    return { key, connection, generation: this.state(connection).generation };
  }

  /**
   * Throws UnavailableError, without anything written, when the node's last WAIT fell short and it still has
   * fewer replicas than required (a master promoted by a failover, whose own replica is gone).
   */
  async ensureReplicas(route: Route | null): Promise<void> {
    if (!route) return;
    const state = this.state(route.connection);
    if (state.shortSince === null) return;
    const now = Date.now();
    if (!state.replicasSeen || now - state.replicasSeen.at > INFO_FRESH_MS) {
      state.replicasSeen = { at: now, count: connectedReplicas(route.connection).catch(() => 0) };
    }
    if ((await state.replicasSeen.count) < this.replicas) throw this.unavailable('the Redis master holding this promotion has no replica to confirm writes');
  }

  /** Resolves once `replicas` replicas hold every write the route's connection carried; else UnavailableError. */
  async confirm(route: Route | null): Promise<void> {
    if (!route) throw this.unavailable('no Redis connection to confirm the write on');
    const state = this.state(route.connection);
    // A reconnect, or a MOVED that sent the write to another node (the slot map changed): not provable here.
    if (state.generation !== route.generation || this.connectionFor(route.key) !== route.connection) {
      throw this.unavailable('the Redis connection changed before the write was confirmed');
    }
    state.batch ??= new Promise<number>((resolve, reject) => {
      // Every reply read in this turn joins: their writes precede this WAIT on the connection.
      setImmediate(() => {
        state.batch = null;
        (route.connection.call('WAIT', this.replicas, this.timeoutMs) as Promise<number>).then(resolve, reject);
      });
    });
    const acknowledged = await state.batch.catch(() => -1);
    if (acknowledged >= this.replicas) {
      state.shortSince = null;
      return;
    }
    state.shortSince ??= Date.now();
    throw this.unavailable(`${Math.max(0, acknowledged)} of ${this.replicas} Redis replicas confirmed the write in ${this.timeoutMs} ms`);
  }

  private unavailable(message: string): UnavailableError {
    return new UnavailableError(message, Math.max(100, this.timeoutMs * 5));
  }

  private state(connection: Redis): NodeState {
    let state = this.nodes.get(connection);
    if (!state) {
      state = { generation: 0, batch: null, shortSince: null, replicasSeen: null };
      const counted = state;
      // A new socket carries none of the writes of the old one.
      connection.on('close', () => counted.generation++);
      this.nodes.set(connection, state);
    }
    return state;
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
async function connectedReplicas(connection: Redis): Promise<number> {
  const info = await connection.info('replication');
  return info.split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length;
}
