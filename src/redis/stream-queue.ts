import type { Coupon, QueuedRequest } from '../domain/types';
import { encodeIssuance } from './issuance-codec';
import { CONSUMER_GROUP, type RedisKeys } from './keys';
import type { ReplicaWaiter } from './replica-wait';
import { ConsumerScripts, type ConfirmedEntry, type ScriptedRedis } from './scripts';

/**
 * The consumers' side of Redis: the promotions' streams read through one consumer group, the scripts that
 * end a request (confirm, fail, retire), and the consumer-name leases. Keys are built here and the scripts
 * called through their typed methods (ConsumerScripts), so the consumer deals in requests and coupons only.
 * A batch costs a constant number of round trips, whatever its size: one read, one confirm.
 *
 * Reading: on one node, one blocking XREADGROUP over every promotion's stream, on a connection of its own. In a
 * cluster a command may not span slots, so each stream is read on its own (all at once, one write per master),
 * without blocking; a round that finds nothing waits a little longer each time, up to IDLE_POLL_MAX_MS.
 */

/** Cluster reads: the wait after an empty round starts here and doubles up to the max (or CONSUMER_BLOCK_MS). */
const IDLE_POLL_MIN_MS = 2;
const IDLE_POLL_MAX_MS = 50;

export interface QueueEntry {
  entryId: string;
  /** null when the entry was not written by this service (it is discarded). */
  request: QueuedRequest | null;
  /** How many times the entry was delivered to a consumer, this delivery included. */
  deliveries: number;
}

export interface GroupConsumer {
  name: string;
  pending: number;
  idleMs: number;
}

type StreamEntry = [id: string, fields: string[]];
type XReadReply = [stream: string, entries: StreamEntry[]][] | null;

export class RedisStreamQueue {
  private readonly scripts: ConsumerScripts;
  private idlePollMs = IDLE_POLL_MIN_MS;
  private idleWait: { timer: NodeJS.Timeout; done: () => void } | null = null;

  constructor(
    private readonly redis: ScriptedRedis,
    /** A connection of the queue's own, for blocking reads: abortRead() closes it. Null in a cluster (polled reads). */
    private readonly reader: ScriptedRedis | null,
    private readonly keys: RedisKeys,
    private readonly statusTtlMs: number,
    /** Entries are stored only once replicas hold them (awaitReplicas); null: never waits. */
    private readonly replicas: ReplicaWaiter | null = null,
  ) {
    this.scripts = new ConsumerScripts(redis);
  }

  activePromotions(): Promise<string[]> {
    return this.redis.smembers(this.keys.activePromotions());
  }

  /** New entries of any of the promotions, blocking (or, in a cluster, polling) up to blockMs. */
  async readNew(consumer: string, promotionIds: string[], count: number, blockMs: number): Promise<Map<string, QueueEntry[]>> {
    const streams = promotionIds.map((id) => this.keys.promotion(id).stream);
    const batches = new Map<string, QueueEntry[]>();
    const replies = this.reader ? [await this.readBlocking(this.reader, consumer, streams, count, blockMs)] : await this.readEach(consumer, streams, count);
    for (const reply of replies) {
      for (const [stream, entries] of reply ?? []) {
        if (entries.length === 0) continue;
        batches.set(this.keys.promotionIdOfStream(stream), entries.map(([id, fields]) => ({ entryId: id, request: parseEntry(id, fields), deliveries: 1 })));
      }
    }
    if (!this.reader) {
      if (batches.size > 0) this.idlePollMs = IDLE_POLL_MIN_MS;
      else {
        await this.waitIdle(this.idlePollMs);
        this.idlePollMs = Math.min(this.idlePollMs * 2, IDLE_POLL_MAX_MS, blockMs);
      }
    }
    return batches;
  }

  private async readBlocking(reader: ScriptedRedis, consumer: string, streams: string[], count: number, blockMs: number): Promise<XReadReply> {
    return this.withGroup(streams, async () =>
      (await reader.xreadgroup('GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', ...streams, ...streams.map(() => '>'))) as XReadReply,
    );
  }

  /** One read per stream (each in its own slot), sent together. */
  private readEach(consumer: string, streams: string[], count: number): Promise<XReadReply[]> {
    return Promise.all(
      streams.map((stream) =>
        this.withGroup([stream], async () => (await this.redis.xreadgroup('GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as XReadReply),
      ),
    );
  }

  /** Redis lost a stream or its group (a restart without persistence): recreate, read on the next turn. */
  private async withGroup(streams: string[], read: () => Promise<XReadReply>): Promise<XReadReply> {
    try {
      return await read();
    } catch (error) {
      if (!String(error).includes('NOGROUP')) throw error;
      for (const stream of streams) await this.redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
      return null;
    }
  }

  private waitIdle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWait = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.idleWait = { timer, done };
    });
  }

  /** Ends a blocking read (or a polling wait) at once, by closing the reader connection: for stopping. */
  abortRead(): void {
    this.reader?.disconnect();
    this.idleWait?.done();
  }

  /** Reopens the reader connection after abortRead (a consumer started again). */
  resumeRead(): void {
    if (this.reader?.status === 'end') this.reader.connect().catch(() => undefined); // errors surface on the next read
  }

  /**
   * Resolves once a replica holds these entries (and everything written before them on their master), so
   * PostgreSQL never stores a coupon that a promoted replica would not know was reserved, and sell again:
   * REDIS_WAIT_REPLICAS replicas, or with 0, one when the master has one in sync (replica-wait.ts).
   * A write to the slot (the entries' idle time reset, XCLAIM JUSTID), then WAIT, on a connection of the waiter's
   * own: a WAIT holds up the commands behind it, and the consumer's other commands must not queue there.
   * Throws UnavailableError when they do not confirm in time: the entries stay pending, tried again later.
   */
  async awaitReplicas(promotionId: string, consumer: string, entryIds: string[]): Promise<void> {
    if (!this.replicas?.enabled || entryIds.length === 0) return;
    const stream = this.keys.promotion(promotionId).stream;
    const route = this.replicas.route(stream);
    const replicas = await this.replicas.needed(route);
    if (replicas === 0) return;
    // On the waiter's own connection: the WAIT that follows covers the writes of the connection it is sent on.
    await this.replicas.redis.xclaim(stream, CONSUMER_GROUP, consumer, 0, ...entryIds, 'JUSTID');
    await this.replicas.confirm(route, replicas);
  }

  /** The group's consumers on one promotion's stream; empty when the stream or group is missing. */
  async consumers(promotionId: string): Promise<GroupConsumer[]> {
    let reply: unknown[];
    try {
      reply = (await this.redis.xinfo('CONSUMERS', this.keys.promotion(promotionId).stream, CONSUMER_GROUP)) as unknown[];
    } catch (error) {
      if (String(error).includes('NOGROUP') || String(error).includes('no such key')) return [];
      throw error;
    }
    return reply.map((raw) => {
      const fields = raw as (string | number)[];
      const f = new Map<string, string | number>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set(String(fields[i]), fields[i + 1] as string | number);
      return { name: String(f.get('name')), pending: Number(f.get('pending') ?? 0), idleMs: Number(f.get('idle') ?? 0) };
    });
  }

  /**
   * Moves up to `count` of `from`'s pending entries, idle at least minIdleMs, to `to`. The move counts as a
   * delivery: a takeover follows a crash or a hang. Entries deleted meanwhile are not returned.
   */
  async claim(promotionId: string, from: string, to: string, minIdleMs: number, count: number): Promise<QueueEntry[]> {
    const stream = this.keys.promotion(promotionId).stream;
    const pending = (await this.redis.xpending(stream, CONSUMER_GROUP, 'IDLE', minIdleMs, '-', '+', count, from)) as [string, string, number, number][];
    if (pending.length === 0) return [];
    const deliveries = new Map(pending.map(([id, , , times]) => [id, Number(times) + 1]));
    const claimed = (await this.redis.xclaim(stream, CONSUMER_GROUP, to, minIdleMs, ...deliveries.keys())) as (StreamEntry | null)[];
    return claimed
      .filter((e): e is StreamEntry => e !== null)
      .map(([id, fields]) => ({ entryId: id, request: parseEntry(id, fields), deliveries: deliveries.get(id) ?? 1 }));
  }

  /** Counts one more delivery of an entry this consumer holds (it is about to be tried alone). */
  async countDelivery(promotionId: string, consumer: string, entryId: string): Promise<void> {
    await this.redis.xclaim(this.keys.promotion(promotionId).stream, CONSUMER_GROUP, consumer, 0, entryId);
  }

  /** Resets the entries' idle time without counting a delivery: the holder is alive and still at work. */
  async keepClaimed(promotionId: string, consumer: string, entryIds: string[]): Promise<void> {
    await this.redis.xclaim(this.keys.promotion(promotionId).stream, CONSUMER_GROUP, consumer, 0, ...entryIds, 'JUSTID');
  }

  /** Removes a dead consumer's name, unless it holds entries (delete-consumer.lua). */
  async deleteConsumer(promotionId: string, consumer: string): Promise<void> {
    await this.scripts.deleteConsumer({ stream: this.keys.promotion(promotionId).stream }, { group: CONSUMER_GROUP, consumer });
  }

  /**
   * Up to `count` of this consumer's own pending entries, left over from a turn that failed (a Redis error,
   * a database outage it was told to stop waiting for): read again without counting a delivery, since no
   * process died. `after`: only entries after this id (the next page).
   */
  async ownPending(promotionId: string, consumer: string, count: number, after?: string): Promise<QueueEntry[]> {
    const stream = this.keys.promotion(promotionId).stream;
    const start = after ? `(${after}` : '-';
    const pending = (await this.redis.xpending(stream, CONSUMER_GROUP, start, '+', count, consumer)) as [string, string, number, number][];
    if (pending.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const [id] of pending) pipeline.xrange(stream, id, id);
    const replies = (await pipeline.exec()) ?? [];
    const entries: QueueEntry[] = [];
    pending.forEach(([id, , , times], i) => {
      const [entry] = (replies[i]?.[1] ?? []) as StreamEntry[];
      if (entry) entries.push({ entryId: id, request: parseEntry(id, entry[1]), deliveries: Number(times) });
    });
    return entries;
  }

  /**
   * After the coupons are committed: ISSUED, published, acknowledged and trimmed, atomically (confirm.lua).
   * Each message carries the time it was sent, for the publish → socket latency.
   */
  async confirm(promotionId: string, stored: { request: QueuedRequest; coupon: Coupon }[]): Promise<void> {
    if (stored.length === 0) return;
    const sentAt = Date.now();
    const entries: ConfirmedEntry[] = stored.map(({ request, coupon }) => ({
      statusKey: this.keys.status(promotionId, request.requestId),
      entryId: request.entryId,
      channel: this.keys.userChannel(promotionId, request.userId),
      message: encodeIssuance(
        {
          requestId: request.requestId,
          promotionId,
          userId: request.userId,
          status: 'ISSUED',
          requestedAt: request.requestedAt,
          coupon,
          failureReason: null,
        },
        sentAt,
      ),
    }));
    const { stream, issued, meta } = this.keys.promotion(promotionId);
    await this.scripts.confirm({ stream, issued, meta }, { group: CONSUMER_GROUP, statusTtlMs: this.statusTtlMs, entries });
  }

  /**
   * FAILED, stock and the user's count given back, published, acknowledged (fail.lua). Repeat-safe: true
   * only when this call made it FAILED.
   */
  async fail(request: QueuedRequest, reason: string): Promise<boolean> {
    const k = this.keys.promotion(request.promotionId);
    const message = encodeIssuance({ ...request, status: 'FAILED', coupon: null, failureReason: reason }, Date.now());
    const changed = await this.scripts.fail(
      {
        stream: k.stream,
        deadLetter: k.deadLetter,
        stock: k.stock,
        status: this.keys.status(request.promotionId, request.requestId),
        user: this.keys.user(request.promotionId, request.userId),
      },
      {
        group: CONSUMER_GROUP,
        statusTtlMs: this.statusTtlMs,
        entryId: request.entryId,
        channel: this.keys.userChannel(request.promotionId, request.userId),
        message,
        requestId: request.requestId,
        userId: request.userId,
        requestedAtMs: request.requestedAt.getTime(),
        reason,
      },
    );
    return changed === 1;
  }

  /** Entries this service did not write: copied to the dead-letter stream as they are, and acknowledged. */
  async discardMalformed(promotionId: string, entryIds: string[]): Promise<void> {
    if (entryIds.length === 0) return;
    const k = this.keys.promotion(promotionId);
    const multi = this.redis.multi();
    for (const entryId of entryIds) multi.xadd(k.deadLetter, '*', 'entry', entryId, 'reason', 'malformed entry');
    await multi.xack(k.stream, CONSUMER_GROUP, ...entryIds).xdel(k.stream, ...entryIds).exec();
  }

  /** Lets an ended, drained promotion expire and leave the registry; true when it did. */
  async retire(promotionId: string, graceMs: number): Promise<boolean> {
    const k = this.keys.promotion(promotionId);
    const retired = await this.scripts.retire(
      { meta: k.meta, stock: k.stock, seq: k.seq, stream: k.stream, deadLetter: k.deadLetter },
      { group: CONSUMER_GROUP, graceMs, ttlMs: this.statusTtlMs },
    );
    if (retired !== 1) return false;
    await this.redis.srem(this.keys.activePromotions(), promotionId);
    return true;
  }

  /** Takes or renews the lease on a consumer name; true when held. See consumer-lease.lua. */
  async lease(name: string, owner: string, leaseMs: number, replaceable = ''): Promise<boolean> {
    return (await this.scripts.consumerLease({ heartbeat: this.keys.consumerHeartbeat(name) }, { owner, leaseMs, replaceable })) === 1;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.scripts.consumerLease({ heartbeat: this.keys.consumerHeartbeat(name) }, { owner, leaseMs: 0, replaceable: '' });
  }

  leaseOwner(name: string): Promise<string | null> {
    return this.redis.get(this.keys.consumerHeartbeat(name));
  }

  /** The names, among these, whose lease is held (their consumer is alive). */
  async leased(names: string[]): Promise<Set<string>> {
    if (names.length === 0) return new Set();
    // One command per name, sent together: the names' keys lie in different cluster slots (no pipeline).
    const held = await Promise.all(names.map((name) => this.redis.exists(this.keys.consumerHeartbeat(name))));
    return new Set(names.filter((_, i) => held[i] === 1));
  }

}

function parseEntry(entryId: string, fields: string[]): QueuedRequest | null {
  // issue.lua writes r, u, p, t, n in this order: read them in place, without a map per entry.
  const inOrder = fields.length === 10 && fields[0] === 'r' && fields[2] === 'u' && fields[4] === 'p' && fields[6] === 't' && fields[8] === 'n';
  let f: Record<string, string | undefined>;
  if (inOrder) f = { r: fields[1], u: fields[3], p: fields[5], t: fields[7], n: fields[9] };
  else {
    f = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  }
  const requestedAt = Number(f.t);
  if (!f.r || !f.u || !f.p || !Number.isFinite(requestedAt)) return null;
  return { entryId, requestId: f.r, userId: f.u, promotionId: f.p, requestedAt: new Date(requestedAt), position: Number(f.n ?? 0) || 0 };
}
