import { Cluster, type Redis } from 'ioredis';
import type { FeedEvent, FeedListener, IssuanceEvents } from '../domain/ports';
import { decodeMessage } from './issuance-codec';
import type { RedisKeys } from './keys';

/**
 * Final issuance states over sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7): one channel per user and
 * promotion, carrying the promotion's hash tag, so the script that confirms a batch publishes in its own slot
 * (atomically with the status it writes) and, in a cluster, only the master owning the promotion carries its
 * confirmations. An instance subscribes only to the channels of users it serves, so any instance can serve any
 * client, and no event is filtered per subscriber.
 *
 * A feed of one promotion (or one request) listens on one channel; a feed of every promotion listens on the
 * channel of each promotion the consumers read, and is added to a new promotion's channel when
 * refreshPromotions() sees it (every reconcile pass).
 * One subscriber connection per process (per master in a cluster), with channels reference-counted across
 * local listeners. A channel's listeners are kept as the one listener most users have, or a Set past one.
 * Pub/sub keeps nothing for a disconnected subscriber: after a reconnect, a failover or a slot move (ioredis
 * subscribes again by itself), every listener is told of the gap, so a feed reads its request (or the user's
 * latest one) again.
 */
/** Cluster topology changes: gaps at most this often while they come, then these after the last one. */
const GAP_SPACING_MS = 250;
const TRAILING_GAPS_MS = [250, 1000];

export class RedisIssuanceEvents implements IssuanceEvents {
  private readonly listeners = new Map<string, FeedListener | Set<FeedListener>>();
  private readonly pending = new Map<string, Promise<unknown>>();
  /** Feeds of every promotion: the user, and the promotions whose channels they were added to. */
  private readonly everyPromotion = new Map<FeedListener, { userId: string; promotionIds: Set<string> }>();
  private readonly gapTimers = new Set<NodeJS.Timeout>();
  private lastGapAt = 0;

  constructor(
    private readonly subscriber: Redis | Cluster,
    private readonly keys: RedisKeys,
    /** The promotions whose queues the consumers read: the ones a feed of every promotion listens to. */
    private readonly activePromotions: () => Promise<string[]>,
    /** Told when a confirmation reaches a subscribed feed, with when it was sent (publish → socket latency). */
    private readonly onDelivered: (publishedAtMs: number) => void = () => undefined,
  ) {
    subscriber.on('smessage', (channel: string, message: string) => this.dispatch(channel, message));
    if (subscriber instanceof Cluster) {
      // When a slot moves away, Redis 7 unsubscribes its shard channels by itself: a SUNSUBSCRIBE reply nobody
      // asked for, which ioredis only reports as a queue error. Its channels are still on ioredis's list, but
      // it would subscribe them on the new owner only at the next periodic slot refresh, and everything
      // published there meanwhile is lost: read the topology now instead.
      subscriber.on('nodeError', (error: Error) => {
        if (/Last reply: sunsubscribe/.test(error.message)) subscriber.refreshSlotsCache();
      });
      // Emitted once the subscribers of a new topology (a failover, a slot move, a reconnected master) have sent
      // their SSUBSCRIBEs; also after each failed attempt while a master is down, dozens of times a second.
      // Their replies are not awaited there: the gap is signalled again a little later, so a feed that read its
      // state before its channel was back reads it once more after. Coalesced: at most one gap per
      // GAP_SPACING_MS while they come, and one trailing pair after the last.
      subscriber.on('subscribersReady', () => this.topologyChanged());
      return;
    }
    let connected = subscriber.status === 'ready';
    subscriber.on('ready', () => {
      if (!connected) {
        connected = true;
        return;
      }
      // PING is answered after the SSUBSCRIBEs sent on reconnect: from then on nothing more is missed.
      subscriber.ping().then(
        () => this.signalGap(),
        () => undefined, // the connection dropped again: the next 'ready' signals the gap
      );
    });
  }

  private topologyChanged(): void {
    const now = Date.now();
    if (now - this.lastGapAt >= GAP_SPACING_MS) this.signalGap();
    for (const timer of this.gapTimers) clearTimeout(timer);
    this.gapTimers.clear();
    for (const delay of TRAILING_GAPS_MS) {
      const timer = setTimeout(() => {
        this.gapTimers.delete(timer);
        this.signalGap();
      }, delay);
      timer.unref();
      this.gapTimers.add(timer);
    }
  }

  /** Tells every listener that events may have been missed, so a feed waiting for one request reads it again. */
  signalGap(): void {
    this.lastGapAt = Date.now();
    const gap: FeedEvent = { kind: 'gap' };
    for (const listeners of this.listeners.values()) notify(listeners, gap);
  }

  /** Stops the delayed gap signals (a process stopping). */
  close(): void {
    for (const timer of this.gapTimers) clearTimeout(timer);
    this.gapTimers.clear();
  }

  private dispatch(channel: string, message: string): void {
    const listeners = this.listeners.get(channel);
    if (!listeners) return;
    const decoded = decodeMessage(message);
    if (!decoded) return; // not ours
    const { issuance, publishedAtMs } = decoded;
    notify(listeners, { kind: 'final', issuance });
    if (publishedAtMs !== null) this.onDelivered(publishedAtMs);
  }

  async watchUser(userId: string, promotionId: string | null, listener: FeedListener): Promise<void> {
    if (promotionId !== null) return this.listen(this.keys.userChannel(promotionId, userId), listener);
    const watched = { userId, promotionIds: new Set<string>() };
    this.everyPromotion.set(listener, watched);
    try {
      const ids = await this.activePromotions();
      await Promise.all(ids.map((id) => this.addPromotion(watched, id, listener)));
    } catch (error) {
      this.unwatchUser(userId, null, listener);
      throw error;
    }
  }

  unwatchUser(userId: string, promotionId: string | null, listener: FeedListener): void {
    if (promotionId !== null) return this.release(this.keys.userChannel(promotionId, userId), listener);
    const watched = this.everyPromotion.get(listener);
    if (!watched) return;
    this.everyPromotion.delete(listener);
    for (const id of watched.promotionIds) this.release(this.keys.userChannel(id, userId), listener);
  }

  /**
   * Follows the promotions being sold for the feeds of every promotion: adds the channels of new ones (and
   * of ones whose subscribe failed before), lets go of those of promotions no longer sold.
   */
  async refreshPromotions(): Promise<void> {
    if (this.everyPromotion.size === 0) return;
    const ids = await this.activePromotions();
    const active = new Set(ids);
    const adding: Promise<void>[] = [];
    for (const [listener, watched] of this.everyPromotion) {
      for (const id of watched.promotionIds) {
        if (active.has(id)) continue;
        watched.promotionIds.delete(id);
        this.release(this.keys.userChannel(id, watched.userId), listener);
      }
      for (const id of ids) if (!watched.promotionIds.has(id)) adding.push(this.addPromotion(watched, id, listener).catch(() => undefined));
    }
    await Promise.all(adding);
  }

  private async addPromotion(watched: { userId: string; promotionIds: Set<string> }, promotionId: string, listener: FeedListener): Promise<void> {
    watched.promotionIds.add(promotionId);
    try {
      await this.listen(this.keys.userChannel(promotionId, watched.userId), listener);
    } catch (error) {
      watched.promotionIds.delete(promotionId); // tried again at the next refresh
      throw error;
    }
  }

  private async listen(channel: string, listener: FeedListener): Promise<void> {
    const listeners = this.listeners.get(channel);
    if (listeners === undefined) {
      this.listeners.set(channel, listener);
      const subscribing = this.subscriber.ssubscribe(channel);
      this.pending.set(channel, subscribing);
      // Only this call's entry: after an unsubscribe and a new subscribe, the newer one must stay awaited.
      subscribing.finally(() => this.pending.get(channel) === subscribing && this.pending.delete(channel)).catch(() => undefined);
    } else if (listeners instanceof Set) {
      listeners.add(listener);
    } else if (listeners !== listener) {
      this.listeners.set(channel, new Set([listeners, listener]));
    }
    try {
      await this.pending.get(channel);
    } catch (error) {
      this.release(channel, listener);
      throw error;
    }
  }

  private release(channel: string, listener: FeedListener): void {
    const listeners = this.listeners.get(channel);
    if (listeners instanceof Set) {
      listeners.delete(listener);
      if (listeners.size > 1) return;
      const [last] = listeners;
      if (last) return void this.listeners.set(channel, last);
    } else if (listeners !== listener) {
      return;
    }
    this.listeners.delete(channel);
    this.subscriber.sunsubscribe(channel).catch(() => undefined);
  }
}

function notify(listeners: FeedListener | Set<FeedListener>, event: FeedEvent): void {
  if (listeners instanceof Set) for (const listener of listeners) listener.onFeedEvent(event);
  else listeners.onFeedEvent(event);
}
