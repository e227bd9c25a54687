import type { Redis } from 'ioredis';
import type { FeedEvent, IssuanceEvents, IssuanceFeed } from '../domain/ports';
import { decodeMessage } from './issuance-codec';
import type { RedisKeys } from './keys';

type Listener = (event: FeedEvent) => void;

/**
 * Final issuance states over Redis pub/sub, one channel per user: an instance subscribes only to the
 * channels of users it serves, so any instance can serve any client, and no event is filtered per subscriber.
 * One subscriber connection per process, with channels reference-counted across local feeds.
 * Pub/sub keeps nothing for a disconnected subscriber: after a reconnect (ioredis subscribes again by itself),
 * every feed is told of the gap, so a feed waiting for one request reads its state again.
 */
export class RedisIssuanceEvents implements IssuanceEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
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

  /** Tells every feed that events may have been missed, so a feed waiting for one request reads it again. */
  signalGap(): void {
    for (const listeners of this.listeners.values()) for (const listener of listeners) listener({ kind: 'gap' });
  }

  private dispatch(channel: string, message: string): void {
    const listeners = this.listeners.get(channel);
    if (!listeners) return;
    const decoded = decodeMessage(message);
    if (!decoded) return; // not ours
    const { issuance, publishedAtMs } = decoded;
    for (const listener of listeners) listener({ kind: 'final', issuance });
    if (publishedAtMs !== null) this.onDelivered(publishedAtMs);
  }

  async watchUser(userId: string): Promise<IssuanceFeed> {
    const channel = this.keys.userChannel(userId);
    const queue: FeedEvent[] = [];
    let wake: (() => void) | null = null;
    let closed = false;
    const listener: Listener = (event) => {
      queue.push(event);
      wake?.();
    };

    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    if (set.size === 1) {
      const subscribing = this.subscriber.subscribe(channel);
      this.pending.set(channel, subscribing);
      subscribing.finally(() => this.pending.delete(channel)).catch(() => undefined);
    }
    try {
      await this.pending.get(channel);
    } catch (error) {
      this.release(channel, listener);
      throw error;
    }

    const close = () => {
      if (closed) return;
      closed = true;
      this.release(channel, listener);
      wake?.();
    };

    return {
      close,
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<FeedEvent>> => {
          while (!closed && queue.length === 0) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = null;
          }
          const value = queue.shift();
          return value ? { value, done: false } : { value: undefined, done: true };
        },
        return: async (): Promise<IteratorResult<FeedEvent>> => {
          close();
          return { value: undefined, done: true };
        },
      }),
    };
  }

  private release(channel: string, listener: Listener): void {
    const set = this.listeners.get(channel);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) {
      this.listeners.delete(channel);
      this.subscriber.unsubscribe(channel).catch(() => undefined);
    }
  }
}
