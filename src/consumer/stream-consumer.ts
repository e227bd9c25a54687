import type { CouponRepository, FailureRepository } from '../domain/ports';
import type { Coupon, QueuedRequest } from '../domain/types';
import type { QueueEntry, RedisStreamQueue } from '../redis/stream-queue';
import { ConsumerIdentity } from './consumer-identity';
import { describeDbError, isPermanentDbError } from './db-errors';

export interface ConsumerOptions {
  /** A fixed name in the group; without it, a stable `<host>-<n>` (see ConsumerIdentity). */
  consumerName?: string;
  host: string;
  batchSize: number;
  blockMs: number;
  /** How often the lease is renewed and other consumers' leases are checked. */
  heartbeatMs: number;
  /** A consumer whose lease was not renewed for this long is dead: its entries are taken over. */
  deadAfterMs: number;
  /**
   * Deliveries after which an entry is tried alone (the consumers holding it crashed or hung that often);
   * an entry that comes back after a try alone is dead-lettered.
   */
  maxDeliveries: number;
  maxBackoffMs: number;
  /** Batches stored and confirmed at once (default 3): inserts overlap the confirm of the batch before. */
  pipelineDepth?: number;
}

/** The stages of a batch, timed for /metrics so the tail of QUEUED → ISSUED can be explained. */
export type BatchStage = 'insert' | 'confirm';

export interface ConsumerObserver {
  persisted(count: number): void;
  confirmed(latenciesMs: number[]): void;
  failed(count: number): void;
  retrying(error: unknown, delayMs: number): void;
  /** Entries taken over from a consumer that died or hung (or from this one's earlier incarnation). */
  tookOver(count: number, from: string): void;
  error(error: unknown): void;
  /** How long each entry read waited in its stream, from its reservation (QUEUED) to the read. */
  queueWait?(waitsMs: number[]): void;
  /** How long one stage of one batch took. */
  stage?(stage: BatchStage, ms: number, entries: number): void;
}

/** An ended promotion's keys are let go this long after its end, once its queue is empty. */
const RETIRE_GRACE_MS = 3600_000;
/** A request that was never stored, after this many fresh attempts of its own on a permanent error. */
const PERMANENT_ATTEMPTS = 3;
const MIN_BACKOFF_MS = 50;
/** Another consumer's entry is taken only once idle this long, so two takers never take turns on it. */
const TAKEOVER_MIN_IDLE_MS = 1000;
const CLAIM_PAGES = 100;
const DEFAULT_PIPELINE_DEPTH = 3;

/**
 * Reads queued requests from every active promotion's stream through one consumer group, stores them in
 * PostgreSQL one batch per statement, then confirms them (ISSUED, publish, XACK, XDEL) atomically.
 *
 * Recovery: each consumer holds a lease on its name, renewed every heartbeat. Every heartbeat it also looks at
 * the group: entries of a consumer whose lease is gone (killed, frozen, cut off) are taken over at once, so a
 * takeover takes deadAfterMs plus one heartbeat; its own leftovers are taken back (counted as a delivery only
 * when an earlier incarnation left them); dead names with nothing pending are removed. A takeover counts as a
 * delivery. An entry delivered maxDeliveries times is tried alone; if it comes back even from that, it is
 * dead-lettered: FAILED, kept in PostgreSQL, stock given back. Waiting out a database outage counts nothing:
 * the entries stay with their live holder. Storing is idempotent (unique requestId), so an entry handled twice
 * is still one coupon, and PostgreSQL decides between stored and failed under a lock (db/outcome-lock.ts).
 *
 * Pipeline: a batch read is started at once (no waiting for it to fill), and the next read is made while it
 * is stored and confirmed; up to pipelineDepth batches are in hand, so one batch's insert overlaps the
 * confirm of the one before and the read of the next. Each batch is acknowledged only after its own commit.
 * A recovery pass takes over other consumers' entries while the batches in hand go on; only after a failed
 * turn (or at start) does it finish them first and read this consumer's own pending entries.
 */
export class StreamConsumer {
  private running = false;
  private loop: Promise<void> | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private stopping = new AbortController();
  private nextRecoveryAt = 0;
  /** Until the first recovery pass is done, this name's pending entries are a dead process's: they count. */
  private fromEarlierIncarnation = true;
  /**
   * A turn failed since the last recovery pass, so this name may hold entries that are in no batch in hand.
   * Only then does a pass stop the pipeline to read them: otherwise its own pending entries are the batches in
   * hand, and waiting for those every heartbeat held new entries back (a bigger, later batch after each pass).
   */
  private leftoversPossible = false;
  private readonly identity: ConsumerIdentity;
  /** Batches being stored and confirmed, and an error one of them threw, not yet rethrown by the loop. */
  private readonly inHand = new Set<Promise<unknown>>();
  private inHandError: { error: unknown } | null = null;

  constructor(
    private readonly queue: RedisStreamQueue,
    private readonly coupons: CouponRepository,
    private readonly failures: FailureRepository,
    private readonly options: ConsumerOptions,
    private readonly observer: ConsumerObserver,
  ) {
    this.identity = new ConsumerIdentity(queue, { host: options.host, leaseMs: options.deadAfterMs, fixedName: options.consumerName });
  }

  /** The name this consumer holds in the group (once started). */
  get name(): string {
    return this.identity.name;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = new AbortController();
    this.fromEarlierIncarnation = true;
    this.queue.resumeRead();
    this.loop = this.run();
  }

  /** Finishes the batch in hand (unless the database is down), aborts a blocking read or a sleep, then returns. */
  async stop(): Promise<void> {
    if (!this.running) return this.loop ?? undefined;
    this.running = false;
    this.stopping.abort();
    this.queue.abortRead();
    await this.loop;
    this.loop = null;
  }

  private async run(): Promise<void> {
    try {
      await this.acquireName();
      this.heartbeat = setInterval(() => void this.renewLease(), this.options.heartbeatMs);
      let backoff = MIN_BACKOFF_MS;
      while (this.running) {
        try {
          await this.pollOnce();
          backoff = MIN_BACKOFF_MS;
        } catch (error) {
          if (!this.running) break; // the aborted read
          this.leftoversPossible = true;
          this.observer.error(error);
          await this.sleep(backoff);
          backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
        }
      }
    } finally {
      await this.settle().catch((error: unknown) => this.observer.error(error));
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.heartbeat = null;
      await this.identity.release().catch((error: unknown) => this.observer.error(error));
    }
  }

  private async acquireName(): Promise<void> {
    let said = false;
    while (this.running) {
      try {
        if (await this.identity.acquire()) return;
        // Said once: two live processes configured with one CONSUMER_NAME, or every slot of this host taken.
        if (!said) this.observer.error(new Error(`no consumer name free (${this.options.consumerName ?? 'every <host>-<n>'} is held by a live process): waiting`));
        said = true;
      } catch (error) {
        this.observer.error(error);
      }
      await this.sleep(this.options.heartbeatMs);
    }
  }

  private async renewLease(): Promise<void> {
    try {
      // Lost while frozen or cut off: others may have taken the entries. Take a name again; the batch in
      // hand may still finish (storing twice is harmless, confirming twice changes nothing).
      if (!(await this.identity.renew())) await this.identity.acquire();
    } catch (error) {
      this.observer.error(error);
    }
  }

  /**
   * One turn: every heartbeat, finish the batches in hand, recover and retire; then read new entries
   * (blocking up to one heartbeat) and start storing them without waiting for them.
   */
  private async pollOnce(): Promise<void> {
    this.rethrowInHandError();
    const promotionIds = await this.queue.activePromotions();
    if (promotionIds.length === 0) {
      await this.settle();
      await this.sleep(Math.min(this.options.blockMs, 250));
      return;
    }
    if (Date.now() >= this.nextRecoveryAt) {
      const ownToo = this.fromEarlierIncarnation || this.leftoversPossible;
      if (ownToo) await this.settle();
      this.leftoversPossible = false;
      for (const id of promotionIds) {
        await this.recover(id, ownToo);
        await this.queue.retire(id, RETIRE_GRACE_MS);
      }
      this.nextRecoveryAt = Date.now() + this.options.heartbeatMs;
      this.fromEarlierIncarnation = false;
    }
    if (!this.running) return;
    await this.freeSlot();
    const blockMs = Math.min(this.options.blockMs, this.options.heartbeatMs);
    const batches = await this.queue.readNew(this.name, promotionIds, this.options.batchSize, blockMs);
    const readAt = Date.now();
    for (const [promotionId, entries] of batches) {
      this.observer.queueWait?.(entries.map((e) => (e.request ? readAt - e.request.requestedAt.getTime() : 0)));
      await this.freeSlot();
      this.startBatch(this.handle(promotionId, entries));
    }
  }

  private startBatch(batch: Promise<unknown>): void {
    const tracked: Promise<unknown> = batch
      .catch((error: unknown) => {
        // The loop rethrows one error at a time: one that comes while another waits is reported here.
        if (this.inHandError) this.observer.error(error);
        else this.inHandError = { error };
      })
      .finally(() => this.inHand.delete(tracked));
    this.inHand.add(tracked);
  }

  /** Waits until fewer than pipelineDepth batches are in hand; rethrows what a finished one threw. */
  private async freeSlot(): Promise<void> {
    const depth = Math.max(1, this.options.pipelineDepth ?? DEFAULT_PIPELINE_DEPTH);
    while (this.inHand.size >= depth) await Promise.race(this.inHand);
    this.rethrowInHandError();
  }

  /** Waits for every batch in hand; rethrows what one of them threw. */
  private async settle(): Promise<void> {
    while (this.inHand.size > 0) await Promise.all(this.inHand);
    this.rethrowInHandError();
  }

  /** A failed batch stays pending with this consumer: the next recovery pass reads it again. */
  private rethrowInHandError(): void {
    const failed = this.inHandError;
    this.inHandError = null;
    if (failed) throw failed.error;
  }

  /** Takes over the entries of dead consumers, and (ownToo) this one's leftovers; removes dead names. */
  private async recover(promotionId: string, ownToo: boolean): Promise<number> {
    const consumers = await this.queue.consumers(promotionId);
    const others = consumers.filter((c) => c.name !== this.name);
    const alive = await this.queue.leased(others.map((c) => c.name));
    let handled = 0;
    for (const c of consumers) {
      const own = c.name === this.name;
      if (!own && alive.has(c.name)) continue;
      if (own && !ownToo) continue; // its pending entries are the batches in hand
      if (c.pending === 0) {
        if (!own && c.idleMs > this.options.deadAfterMs) await this.queue.deleteConsumer(promotionId, c.name);
        continue;
      }
      if (own && !this.fromEarlierIncarnation) {
        // Between turns this consumer holds nothing in hand: what it still has pending was left by a turn that
        // failed. No process died, so reading it again counts no delivery. Up to pipelineDepth batches (and a
        // read's batches not yet started) may be left at once: all are taken back now, page after page.
        let after: string | undefined;
        let page = 0;
        for (; page < CLAIM_PAGES && this.running; page++) {
          const entries = await this.queue.ownPending(promotionId, this.name, this.options.batchSize, after);
          if (entries.length === 0) break;
          handled += await this.handle(promotionId, entries);
          after = entries[entries.length - 1]?.entryId;
        }
        if (page === CLAIM_PAGES) this.leftoversPossible = true; // more than this pass reads: the next pass too
        continue;
      }
      // A dead holder's entries, or this name's from a process that died before this one took the name over.
      const minIdle = own ? 0 : TAKEOVER_MIN_IDLE_MS;
      for (let page = 0; page < CLAIM_PAGES && this.running; page++) {
        const entries = await this.queue.claim(promotionId, c.name, this.name, minIdle, this.options.batchSize);
        if (entries.length === 0) break;
        this.observer.tookOver(entries.length, c.name);
        handled += await this.handle(promotionId, entries);
      }
    }
    return handled;
  }

  private async handle(promotionId: string, entries: QueueEntry[]): Promise<number> {
    if (entries.length === 0) return 0;
    const batch: QueuedRequest[] = [];
    const alone: QueuedRequest[] = [];
    const overCap: { request: QueuedRequest; deliveries: number }[] = [];
    const malformed: string[] = [];
    for (const { entryId, request, deliveries } of entries) {
      if (!request) malformed.push(entryId);
      else if (deliveries >= this.options.maxDeliveries + 2) overCap.push({ request, deliveries });
      else if (deliveries >= this.options.maxDeliveries) alone.push(request);
      else batch.push(request);
    }
    if (malformed.length > 0) {
      await this.queue.discardMalformed(promotionId, malformed);
      this.observer.failed(malformed.length);
    }
    let done = await this.store(promotionId, batch, entries);
    // Tried alone, so a neighbour that keeps crashing the process cannot take a whole batch down with it.
    // Each try counts a delivery first: only the entry being tried when the process dies comes back over
    // the cap; the ones not yet reached come back as they were, and are tried alone again.
    for (const request of alone) {
      if (!this.running) break;
      await this.queue.countDelivery(promotionId, this.name, request.entryId);
      done += await this.store(promotionId, [request], entries);
    }
    for (const { request, deliveries } of overCap) {
      if (!this.running) break;
      const reason = `delivered ${deliveries} times without being stored: the consumer crashed or hung each time`;
      if (await this.fail(request, reason, deliveries, entries)) done++;
    }
    return done;
  }

  /**
   * Stores and confirms. A request that gets no coupon was dead-lettered (here, or by another consumer that
   * took it over while this one was frozen): Redis is told so, which is harmless when repeated. Returns how
   * many were settled; 0 when stopping while the database is away (the entries stay pending).
   */
  private async store(promotionId: string, requests: QueuedRequest[], entries: QueueEntry[]): Promise<number> {
    if (requests.length === 0) return 0;
    // With REDIS_WAIT_REPLICAS: stored only once the replicas hold the reservations, so a failover cannot
    // leave PostgreSQL with a coupon the promoted replica would sell again. Throws while they do not confirm.
    await this.queue.awaitReplicas(promotionId, this.name, requests.map((r) => r.entryId));
    const insertStart = performance.now();
    const stored = await this.persist(promotionId, requests, entries);
    if (stored === null) return 0;
    this.observer.stage?.('insert', performance.now() - insertStart, requests.length);
    const confirmStart = performance.now();
    await this.confirm(promotionId, requests, stored);
    this.observer.stage?.('confirm', performance.now() - confirmStart, requests.length);
    const have = new Set(stored.map((c) => c.requestId));
    const missing = requests.filter((r) => !have.has(r.requestId));
    if (missing.length > 0) {
      const reasons = await this.withRetry(promotionId, missing, () => this.failures.reasonsOf(missing.map((r) => r.requestId)));
      if (reasons === null) return 0;
      if (reasons !== 'permanent') {
        // Sent together: one round trip for all of them, whatever their number.
        await Promise.all(
          missing.map((request) => {
            const reason = reasons.get(request.requestId);
            return reason ? this.finishFailure(request, reason) : undefined;
          }),
        );
      }
    }
    return requests.length;
  }

  /** Stores the requests; null when asked to stop before the database came back. */
  private async persist(promotionId: string, requests: QueuedRequest[], entries: QueueEntry[]): Promise<Coupon[] | null> {
    const stored = await this.withRetry(promotionId, requests, () => this.coupons.persistBatch(requests));
    if (stored !== 'permanent') return stored;
    // PostgreSQL refused the batch: store the requests one by one so one bad request cannot block the rest.
    const coupons: Coupon[] = [];
    for (const request of requests) {
      let outcome: Coupon[] | null | 'permanent' = 'permanent';
      let lastError: unknown;
      for (let attempt = 0; attempt < PERMANENT_ATTEMPTS && outcome === 'permanent'; attempt++) {
        outcome = await this.withRetry(promotionId, [request], () => this.coupons.persistBatch([request]), (e) => (lastError = e));
      }
      if (outcome === null) return null;
      if (outcome !== 'permanent') coupons.push(...outcome);
      else if (!(await this.fail(request, describeDbError(lastError), deliveriesOf(entries, request), entries))) return null;
    }
    return coupons;
  }

  /** Retries transient errors with capped backoff, keeping the entries claimed (and uncounted) meanwhile. */
  private async withRetry<T>(
    promotionId: string,
    requests: QueuedRequest[],
    attempt: () => Promise<T>,
    onPermanent: (error: unknown) => void = () => undefined,
  ): Promise<T | null | 'permanent'> {
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
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.options.maxBackoffMs);
        await this.queue
          .keepClaimed(promotionId, this.name, requests.map((r) => r.entryId))
          .catch((e: unknown) => this.observer.error(e));
      }
    }
  }

  private async confirm(promotionId: string, requests: QueuedRequest[], stored: Coupon[]): Promise<void> {
    const byRequest = new Map(stored.map((c) => [c.requestId, c]));
    const confirmed: { request: QueuedRequest; coupon: Coupon }[] = [];
    for (const request of requests) {
      const coupon = byRequest.get(request.requestId);
      if (coupon) confirmed.push({ request, coupon }); // else: failed on its own above
    }
    if (confirmed.length === 0) return;
    await this.queue.confirm(promotionId, confirmed);
    const now = Date.now();
    this.observer.persisted(confirmed.length);
    this.observer.confirmed(confirmed.map(({ request }) => now - request.requestedAt.getTime()));
  }

  /**
   * Dead-letters a request: recorded in PostgreSQL first (so it is remembered), then FAILED in Redis. If it
   * turns out stored after all (a holder that froze, then woke and committed), it is confirmed instead: a
   * request never ends both. False when stopping while the database is away (the entry stays pending).
   */
  private async fail(request: QueuedRequest, reason: string, deliveries: number, entries: QueueEntry[]): Promise<boolean> {
    const { entryId: _entryId, ...fields } = request;
    const outcome = await this.withRetry(request.promotionId, [request], () => this.failures.record({ ...fields, reason, deliveries }));
    if (outcome === null) return false;
    if (outcome === 'stored') return (await this.store(request.promotionId, [request], entries)) > 0;
    if (outcome === 'permanent') this.observer.error(new Error(`could not record the failure of ${request.requestId}`));
    await this.finishFailure(request, reason);
    return true;
  }

  private async finishFailure(request: QueuedRequest, reason: string): Promise<void> {
    if (await this.queue.fail(request, reason)) this.observer.failed(1);
  }

  /** A sleep that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    const signal = this.stopping.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

const deliveriesOf = (entries: QueueEntry[], request: QueuedRequest): number =>
  entries.find((e) => e.entryId === request.entryId)?.deliveries ?? 1;
