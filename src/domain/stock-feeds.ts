import { NotFoundError } from './errors';
import { isPromotionId } from './identifiers';
import type { Clock, PromotionLiveState } from './ports';
import { promotionStatus } from './promotion-rules';
import type { PromotionStatus } from './types';

/** What a promotionStock watcher receives: the live stock and status, and when they were read. */
export interface StockUpdate {
  readonly promotionId: string;
  readonly remainingStock: number;
  readonly status: PromotionStatus;
  readonly at: Date;
}

/** Reads one promotion's live state (Redis); undefined or !exists: Redis holds none. */
export type LiveStateReader = (promotionId: string) => Promise<PromotionLiveState | undefined>;

export interface StockFeedObserver {
  /** One read of a promotion's live state, whatever its result. */
  read(): void;
  /** A feed's read failed; the feed reads again at its next tick. Called on the first failure of a run only. */
  readFailed(promotionId: string, error: unknown): void;
}

/**
 * Marks a source that keeps only its latest value and is read lazily: the transport pulls from it when the
 * client can take a message, instead of buffering ahead (a slow watcher skips values, never queues them).
 */
export interface LatestOnly {
  readonly latestOnly: true;
}

export function isLatestOnly(source: unknown): source is LatestOnly {
  return typeof source === 'object' && source !== null && (source as Partial<LatestOnly>).latestOnly === true;
}

const isFinal = (status: PromotionStatus): boolean => status === 'SOLD_OUT' || status === 'ENDED';
/**
 * Watchers handed a value per turn of the event loop: handing one to tens of thousands at once would hold the
 * process (HTTP requests included) for the whole fan-out; in slices, other work runs in between.
 */
const FAN_OUT_SLICE = 500;

async function fanOut(watchers: StockWatcher[]): Promise<void> {
  for (let i = 0; i < watchers.length; i += FAN_OUT_SLICE) {
    if (i > 0) await new Promise((resolve) => setImmediate(resolve));
    for (let j = i; j < Math.min(i + FAN_OUT_SLICE, watchers.length); j++) (watchers[j] as StockWatcher).offer();
  }
}
const DONE: IteratorResult<never, undefined> = { value: undefined, done: true };
/** A value due this close to a tick after the last one goes at once (see StockWatcher.holdMs). */
const HOLD_SLACK_MS = 2;

/**
 * Live stock for every watcher of a sale, at a cost that does not grow with the watchers: one feed per
 * promotion in this process reads Redis once per tick (1 / STOCK_UPDATES_PER_SECOND) while it has watchers,
 * and hands a changed value to each watcher waiting for one. A watcher gets the current state at once, then at
 * most one value per tick (the latest; a slow one skips values, it queues none), then the final state (SOLD_OUT
 * or ENDED), after which the feed stops and a later subscriber starts a new one (stock added reopens a sale).
 */
export class StockFeeds {
  private readonly feeds = new Map<string, StockFeed>();

  constructor(
    private readonly readState: LiveStateReader,
    private readonly clock: Clock,
    readonly tickMs: number,
    readonly observer: StockFeedObserver = { read: () => undefined, readFailed: () => undefined },
  ) {}

  /** The promotion's stock as it changes; NOT_FOUND for an unknown or malformed id. */
  async watch(promotionId: string): Promise<AsyncIterableIterator<StockUpdate, undefined> & LatestOnly> {
    if (!isPromotionId(promotionId)) throw new NotFoundError('Promotion');
    let feed = this.feeds.get(promotionId);
    if (!feed) {
      feed = new StockFeed(promotionId, this);
      this.feeds.set(promotionId, feed);
    }
    return feed.join();
  }

  /** Feeds running in this process: one per watched promotion, whatever the number of watchers. */
  get feedCount(): number {
    return this.feeds.size;
  }

  /** Watchers of every feed of this process. */
  get watcherCount(): number {
    let count = 0;
    for (const feed of this.feeds.values()) count += feed.watcherCount;
    return count;
  }

  /** Stops every feed; their watchers complete. */
  close(): void {
    for (const feed of [...this.feeds.values()]) void feed.finish(null);
  }

  /** @internal a feed that stopped leaves the registry (only if it is still the registered one). */
  forget(feed: StockFeed): void {
    if (this.feeds.get(feed.promotionId) === feed) this.feeds.delete(feed.promotionId);
  }

  /** @internal one read, as an update; null when Redis holds no state for the promotion. */
  async read(promotionId: string): Promise<StockUpdate | null> {
    this.observer.read();
    const state = await this.readState(promotionId);
    if (!state?.exists || !state.startsAt || !state.endsAt) return null;
    const at = this.clock.now();
    const window = { startsAt: state.startsAt, endsAt: state.endsAt, endedAt: state.endedAt };
    // Shared by every watcher of the feed: frozen, so none can change what the others get.
    return Object.freeze({ promotionId, remainingStock: state.remainingStock, status: promotionStatus(window, state.remainingStock, at), at });
  }
}

class StockFeed {
  private readonly watchers = new Set<StockWatcher>();
  /** Watchers waiting for a value newer than the one they saw. */
  private readonly waiting = new Set<StockWatcher>();
  /** The latest value, and its version (bumped when it changes). */
  current: StockUpdate | null = null;
  version = 0;
  /** Set once the feed has stopped; watchers drain the final value they have not seen, then complete. */
  finished = false;
  /** Stopped without a final value (the service stopping, or the last watcher gone): watchers just complete. */
  abandoned = false;
  private first: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** A read and its fan-out are under way: the next is scheduled when they end, never alongside. */
  private ticking = false;
  private failing = false;

  constructor(
    readonly promotionId: string,
    private readonly owner: StockFeeds,
  ) {}

  get watcherCount(): number {
    return this.watchers.size;
  }

  get tickMs(): number {
    return this.owner.tickMs;
  }

  async join(): Promise<AsyncIterableIterator<StockUpdate, undefined> & LatestOnly> {
    // Everyone arriving before the first read shares it: a crowd subscribing at once costs one read. A first
    // read that fails (or finds nothing) has already removed this feed: the next subscriber starts a new one.
    if (!this.current) await (this.first ??= this.readFirst());
    // Abandoned while this joiner waited for the first read: start over on the feed that replaced it.
    if (this.abandoned) return this.owner.watch(this.promotionId);
    const watcher = new StockWatcher(this);
    if (this.finished) return watcher; // final already: it drains the one value and completes
    this.watchers.add(watcher);
    this.schedule();
    return watcher;
  }

  private async readFirst(): Promise<void> {
    let update: StockUpdate | null;
    try {
      update = await this.owner.read(this.promotionId);
    } catch (error) {
      this.owner.forget(this);
      throw error;
    }
    if (!update) {
      this.owner.forget(this);
      throw new NotFoundError('Promotion');
    }
    this.current = update;
    this.version = 1;
    if (isFinal(update.status)) void this.finish(update); // nobody waits yet: no fan-out
  }

  private schedule(): void {
    if (this.timer || this.ticking || this.finished || this.watchers.size === 0) return;
    // The next read is a whole tick after the previous one ended: values reach a watcher at most once a tick.
    this.timer = setTimeout(() => void this.tick(), this.owner.tickMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (this.finished || this.watchers.size === 0) return;
    this.ticking = true;
    try {
      const update = await this.owner.read(this.promotionId);
      this.failing = false;
      // A state Redis lost for a moment (rebuilt from PostgreSQL by the reconciler) changes nothing here. The
      // next read waits for the whole fan-out: a watcher's values stay a tick apart however long it takes.
      if (update && !this.finished) await this.apply(update);
    } catch (error) {
      if (!this.failing) this.owner.observer.readFailed(this.promotionId, error);
      this.failing = true; // read again at the next tick
    }
    this.ticking = false;
    this.schedule();
  }

  private async apply(update: StockUpdate): Promise<void> {
    const before = this.current;
    this.current = update; // a value read again keeps its version: only new watchers get it, with this read's time
    if (before && before.remainingStock === update.remainingStock && before.status === update.status) return;
    this.version++;
    if (isFinal(update.status)) {
      await this.finish(update);
      return;
    }
    const waiting = [...this.waiting];
    this.waiting.clear();
    await fanOut(waiting);
  }

  /** Stops the feed: waiting watchers get the final value (or, with null, complete). */
  finish(final: StockUpdate | null): Promise<void> {
    if (this.finished) return Promise.resolve();
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (final) this.current = final;
    else this.abandoned = true;
    this.owner.forget(this);
    const waiting = [...this.waiting];
    this.waiting.clear();
    this.watchers.clear();
    return fanOut(waiting);
  }

  wait(watcher: StockWatcher): void {
    this.waiting.add(watcher);
  }

  leave(watcher: StockWatcher): void {
    this.waiting.delete(watcher);
    this.watchers.delete(watcher);
    if (this.watchers.size === 0 && !this.finished) {
      // The last watcher left: stop reading. A later subscriber starts a new feed with a fresh read.
      void this.finish(null); // nobody left to hand anything to
    }
  }
}

/** One subscriber: the version it saw last, and its pending read. No queue: the feed holds the value. */
class StockWatcher implements AsyncIterableIterator<StockUpdate, undefined>, LatestOnly {
  readonly latestOnly = true;
  private seen = 0;
  private reader: ((result: IteratorResult<StockUpdate, undefined>) => void) | null = null;
  private done = false;
  /** When it took its last value (performance.now()), and the timer holding back a value due a tick after. */
  private takenAt = Number.NEGATIVE_INFINITY;
  private due: NodeJS.Timeout | null = null;

  constructor(private readonly feed: StockFeed) {}

  next(): Promise<IteratorResult<StockUpdate, undefined>> {
    const feed = this.feed;
    if (this.done || feed.abandoned) return this.return();
    // A value it has not seen goes at once (the first one, or one that changed while this watcher was busy),
    // unless it took its previous one less than a tick ago: a busy watcher may take a value just before a tick.
    if (this.seen < feed.version && this.holdMs() === 0) return Promise.resolve(this.take());
    if (this.seen >= feed.version && feed.finished) return this.return();
    return new Promise((resolve) => {
      this.reader = resolve;
      if (this.seen < feed.version) this.holdBack();
      else feed.wait(this);
    });
  }

  /** How long a newer value must still wait: 0 once a tick has passed since the last, or for the final one. */
  private holdMs(): number {
    if (this.feed.finished) return 0; // the final value does not count against the rate
    const wait = Math.ceil(this.takenAt + this.feed.tickMs - performance.now());
    // The feed's own timer may fire a millisecond or two early: not worth a timer per watcher at each tick.
    return wait > HOLD_SLACK_MS ? wait : 0;
  }

  private holdBack(): void {
    if (this.due) return; // already held until its tick
    this.due = setTimeout(() => {
      this.due = null;
      this.offer();
    }, this.holdMs());
    this.due.unref();
  }

  /** The feed has a newer value, or has stopped. */
  offer(): void {
    const reader = this.reader;
    if (!reader) return;
    const feed = this.feed;
    const unseen = this.seen < feed.version;
    if (feed.abandoned || (!unseen && feed.finished)) {
      this.reader = null;
      this.done = true;
      reader(DONE);
    } else if (!unseen) {
      feed.wait(this); // nothing new for this one yet: it waits for the next change
    } else if (this.holdMs() > 0) {
      this.holdBack();
    } else {
      this.reader = null;
      reader(this.take());
    }
  }

  private take(): IteratorResult<StockUpdate, undefined> {
    this.seen = this.feed.version;
    this.takenAt = performance.now();
    // The same object for every watcher of this version: the transport executes it once for all of them.
    return { value: this.feed.current as StockUpdate, done: false };
  }

  return(): Promise<IteratorResult<StockUpdate, undefined>> {
    if (!this.done) {
      this.done = true;
      if (this.due) clearTimeout(this.due);
      this.due = null;
      this.feed.leave(this);
      const reader = this.reader;
      this.reader = null;
      reader?.(DONE);
    }
    return Promise.resolve(DONE);
  }

  throw(error?: unknown): Promise<IteratorResult<StockUpdate, undefined>> {
    void this.return();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
