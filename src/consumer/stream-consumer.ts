import type { CouponRepository } from '../domain/ports';
import type { Coupon, QueuedRequest } from '../domain/types';
import { encodeIssuance } from '../redis/issuance-codec';
import { CONSUMER_GROUP, type RedisKeys } from '../redis/keys';
import type { ScriptedRedis } from '../redis/scripts';
import { describeDbError, isPermanentDbError } from './db-errors';

export interface ConsumerOptions {
  consumerName: string;
  batchSize: number;
  blockMs: number;
  /** Entries pending this long with any consumer are taken over (that consumer is presumed dead). */
  claimIdleMs: number;
  maxBackoffMs: number;
  statusTtlMs: number;
}

export interface ConsumerObserver {
  persisted(count: number): void;
  confirmed(latenciesMs: number[]): void;
  failed(count: number): void;
  retrying(error: unknown, delayMs: number): void;
  error(error: unknown): void;
}

type StreamEntry = [id: string, fields: string[]];
type XReadReply = [stream: string, entries: StreamEntry[]][] | null;

/** An ended promotion's keys are let go this long after its end, once its queue is empty. */
const RETIRE_GRACE_MS = 3600_000;

/** A request that was never stored, after this many fresh attempts of its own on a permanent error. */
const PERMANENT_ATTEMPTS = 3;
const MIN_BACKOFF_MS = 50;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Reads queued requests from every active promotion's stream through one consumer group, stores them in
 * PostgreSQL one batch per statement, then confirms (status ISSUED, publish, XACK, XDEL) atomically per
 * promotion. An entry is acknowledged only after its coupon is committed, so a crash at any point leaves it
 * pending, and another consumer takes it over after claimIdleMs (XAUTOCLAIM). A database outage is retried
 * with capped backoff for as long as it lasts; only a request PostgreSQL refuses outright ends FAILED.
 */
export class StreamConsumer {
  private running = false;
  private loop: Promise<void> | null = null;
  private nextClaimAt = 0;

  constructor(
    private readonly reader: ScriptedRedis,
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly coupons: CouponRepository,
    private readonly options: ConsumerOptions,
    private readonly observer: ConsumerObserver,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Finishes the batch in hand (unless the database is down), then returns. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.loop = null;
  }

  private async run(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (this.running) {
      try {
        await this.pollOnce();
        backoff = MIN_BACKOFF_MS;
      } catch (error) {
        this.observer.error(error);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
      }
    }
  }

  /** One turn: reclaim stalled entries when due, then read new ones (blocking up to blockMs). */
  async pollOnce(): Promise<number> {
    const streams = await this.activeStreams();
    if (streams.length === 0) {
      await sleep(Math.min(this.options.blockMs, 250));
      return 0;
    }
    let handled = 0;
    if (Date.now() >= this.nextClaimAt) {
      handled += await this.reclaim(streams);
      await this.retireFinished(streams);
      this.nextClaimAt = Date.now() + Math.max(1000, this.options.claimIdleMs / 2);
    }
    const reply = (await this.readNew(streams)) as XReadReply;
    for (const [stream, entries] of reply ?? []) handled += await this.handle(stream, entries);
    return handled;
  }

  private async activeStreams(): Promise<string[]> {
    const ids = await this.redis.smembers(this.keys.activePromotions());
    return ids.map((id) => this.keys.promotion(id).stream);
  }

  private async readNew(streams: string[]): Promise<unknown> {
    const args = ['GROUP', CONSUMER_GROUP, this.options.consumerName, 'COUNT', this.options.batchSize] as const;
    try {
      return await this.reader.xreadgroup(...args, 'BLOCK', this.options.blockMs, 'STREAMS', ...streams, ...streams.map(() => '>'));
    } catch (error) {
      if (!String(error).includes('NOGROUP')) throw error;
      // Redis lost a stream or its group (a restart without persistence): recreate, read on the next turn.
      for (const stream of streams) {
        await this.redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
      }
      return null;
    }
  }

  /** Takes over entries left pending by a consumer that stopped answering. */
  private async reclaim(streams: string[]): Promise<number> {
    let handled = 0;
    for (const stream of streams) {
      let cursor = '0-0';
      for (let page = 0; page < 100; page++) {
        const [next, entries] = (await this.redis.xautoclaim(
          stream,
          CONSUMER_GROUP,
          this.options.consumerName,
          this.options.claimIdleMs,
          cursor,
          'COUNT',
          this.options.batchSize,
        )) as [string, StreamEntry[]];
        handled += await this.handle(stream, entries.filter((e) => e !== null));
        if (next === '0-0') break;
        cursor = next;
      }
    }
    return handled;
  }

  /** Lets ended, drained promotions expire and stops reading their streams. */
  private async retireFinished(streams: string[]): Promise<void> {
    for (const stream of streams) {
      const promotionId = this.keys.promotionIdOfStream(stream);
      const k = this.keys.promotion(promotionId);
      const retired = await this.redis.couponRetire(k.meta, k.stock, k.seq, k.stream, k.deadLetter, CONSUMER_GROUP, RETIRE_GRACE_MS, this.options.statusTtlMs);
      if (retired === 1) await this.redis.srem(this.keys.activePromotions(), promotionId);
    }
  }

  private async handle(stream: string, entries: StreamEntry[]): Promise<number> {
    if (entries.length === 0) return 0;
    const requests: QueuedRequest[] = [];
    for (const [entryId, fields] of entries) {
      const request = parseEntry(entryId, fields);
      if (request) requests.push(request);
      else await this.ackMalformed(stream, entryId);
    }
    const stored = await this.persist(stream, requests);
    if (stored === null) return 0; // stopping while the database is away: the entries stay pending
    await this.confirm(stream, requests, stored);
    return requests.length;
  }

  /** Stores the batch; null when asked to stop before the database came back. */
  private async persist(stream: string, requests: QueuedRequest[]): Promise<Coupon[] | null> {
    if (requests.length === 0) return [];
    const stored = await this.withRetry(stream, requests, () => this.coupons.persistBatch(requests));
    if (stored !== 'permanent') return stored;
    // PostgreSQL refused the batch: store the requests one by one so one bad request cannot block the rest.
    const coupons: Coupon[] = [];
    for (const request of requests) {
      let outcome: Coupon[] | null | 'permanent' = 'permanent';
      let lastError: unknown;
      for (let attempt = 0; attempt < PERMANENT_ATTEMPTS && outcome === 'permanent'; attempt++) {
        outcome = await this.withRetry(stream, [request], () => this.coupons.persistBatch([request]), (e) => (lastError = e));
      }
      if (outcome === null) return null;
      if (outcome === 'permanent') await this.fail(stream, request, describeDbError(lastError));
      else coupons.push(...outcome);
    }
    return coupons;
  }

  /** Retries transient errors with capped backoff, keeping the entries claimed meanwhile. */
  private async withRetry(
    stream: string,
    requests: QueuedRequest[],
    attempt: () => Promise<Coupon[]>,
    onPermanent: (error: unknown) => void = () => undefined,
  ): Promise<Coupon[] | null | 'permanent'> {
    let backoff = MIN_BACKOFF_MS;
    for (;;) {
      try {
        return await attempt();
      } catch (error) {
        if (isPermanentDbError(error)) {
          onPermanent(error);
          return 'permanent';
        }
        if (!this.running) return null;
        this.observer.retrying(error, backoff);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
        await this.keepClaimed(stream, requests);
      }
    }
  }

  /** Resets the entries' idle time, so no other consumer takes them over while this one is still retrying. */
  private async keepClaimed(stream: string, requests: QueuedRequest[]): Promise<void> {
    const ids = requests.map((r) => r.entryId);
    await this.redis
      .xclaim(stream, CONSUMER_GROUP, this.options.consumerName, 0, ...ids, 'JUSTID')
      .catch((error: unknown) => this.observer.error(error));
  }

  private async confirm(stream: string, requests: QueuedRequest[], stored: Coupon[]): Promise<void> {
    const byRequest = new Map(stored.map((c) => [c.requestId, c]));
    const statusKeys: string[] = [];
    const args: (string | number)[] = [];
    const latencies: number[] = [];
    const now = Date.now();
    for (const request of requests) {
      const coupon = byRequest.get(request.requestId);
      if (!coupon) continue; // failed on its own above
      statusKeys.push(this.keys.status(request.promotionId, request.requestId));
      const message = encodeIssuance({ ...request, status: 'ISSUED', coupon, failureReason: null });
      args.push(
        request.entryId,
        this.keys.userChannel(request.userId),
        message,
        request.userId,
        request.requestedAt.getTime(),
        coupon.id,
        coupon.code,
        coupon.issuedAt.getTime(),
      );
      latencies.push(now - request.requestedAt.getTime());
    }
    if (statusKeys.length === 0) return;
    await this.redis.couponConfirm(1 + statusKeys.length, stream, ...statusKeys, CONSUMER_GROUP, this.options.statusTtlMs, ...args);
    this.observer.persisted(statusKeys.length);
    this.observer.confirmed(latencies);
  }

  private async fail(stream: string, request: QueuedRequest, reason: string): Promise<void> {
    const k = this.keys.promotion(request.promotionId);
    const message = encodeIssuance({ ...request, status: 'FAILED', coupon: null, failureReason: reason });
    await this.redis.couponFail(
      stream,
      k.deadLetter,
      k.stock,
      this.keys.status(request.promotionId, request.requestId),
      this.keys.user(request.promotionId, request.userId),
      CONSUMER_GROUP,
      this.options.statusTtlMs,
      request.entryId,
      this.keys.userChannel(request.userId),
      message,
      request.requestId,
      request.userId,
      request.requestedAt.getTime(),
      reason,
    );
    this.observer.failed(1);
  }

  /** An entry this service did not write: move it to the dead-letter stream as it is, and ack it. */
  private async ackMalformed(stream: string, entryId: string): Promise<void> {
    const promotionId = this.keys.promotionIdOfStream(stream);
    await this.redis
      .multi()
      .xadd(this.keys.promotion(promotionId).deadLetter, '*', 'entry', entryId, 'reason', 'malformed entry')
      .xack(stream, CONSUMER_GROUP, entryId)
      .xdel(stream, entryId)
      .exec();
    this.observer.failed(1);
  }
}

function parseEntry(entryId: string, fields: string[]): QueuedRequest | null {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  const requestedAt = Number(f.t);
  if (!f.r || !f.u || !f.p || !Number.isFinite(requestedAt)) return null;
  return { entryId, requestId: f.r, userId: f.u, promotionId: f.p, requestedAt: new Date(requestedAt) };
}
