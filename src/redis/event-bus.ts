import type { Redis } from 'ioredis';
import type { FeedEvent, FeedListener, IssuanceEvents } from '../domain/ports';
import { decodeMessage } from './issuance-codec';
import type { RedisKeys } from './keys';

/**
 * Final issuance states over Redis pub/sub, one channel per user: an instance subscribes only to the
 * channels of users it serves, so any instance can serve any client, and no event is filtered per subscriber.
 * One subscriber connection per process, with channels reference-counted across local listeners.
 * A channel's listeners are kept as the one listener most users have, or a Set past one: with a subscribed
 * socket per user, a Set each would be a good part of what a socket costs.
 * Pub/sub keeps nothing for a disconnected subscriber: after a reconnect (ioredis subscribes again by itself),
 * every listener is told of the gap, so a feed waiting for one request reads its state again.
 */
export class RedisIssuanceEvents implements IssuanceEvents {
  private readonly listeners = new Map<string, FeedListener | Set<FeedListener>>();
  private readonly pending = new Map<string, Promise<unknown>>();

  constructor(
    private readonly subscriber: Redis,
    private readonly keys: RedisKeys,
    /** Told when a confirmation reaches a subscribed feed, with when it was sent (publish → socket latency). */
    private readonly onDelivered: (publishedAtMs: number) => void = () => undefined,
  ) {
    subscriber.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    let connected = subscriber.status === 'ready';
    subscriber.on('ready', () => {
      if (!connected) {
        connected = true;
        return;
      }
      // PING is answered after the SUBSCRIBEs sent on reconnect: from then on nothing more is missed.
      subscriber.ping().then(
        () => this.signalGap(),
        () => undefined, // the connection dropped again: the next 'ready' signals the gap
      );
    });
  }

  /** Tells every listener that events may have been missed, so a feed waiting for one request reads it again. */
  signalGap(): void {
    const gap: FeedEvent = { kind: 'gap' };
    for (const listeners of this.listeners.values()) notify(listeners, gap);
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

  async watchUser(userId: string, listener: FeedListener): Promise<void> {
    const channel = this.keys.userChannel(userId);
    const listeners = this.listeners.get(channel);
    if (listeners === undefined) {
      this.listeners.set(channel, listener);
      const subscribing = this.subscriber.subscribe(channel);
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

  unwatchUser(userId: string, listener: FeedListener): void {
    this.release(this.keys.userChannel(userId), listener);
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
    this.subscriber.unsubscribe(channel).catch(() => undefined);
  }
}

function notify(listeners: FeedListener | Set<FeedListener>, event: FeedEvent): void {
  if (listeners instanceof Set) for (const listener of listeners) listener.onFeedEvent(event);
  else listeners.onFeedEvent(event);
}
