import type { ScriptedRedis } from './scripts';

/** Past this many buckets the local fallback drops its oldest: an outage must not grow memory without bound. */
const FALLBACK_MAX_BUCKETS = 50_000;

export interface RateLimiterObserver {
  /** Redis could not answer: from now on the local fallback decides (called once per outage). */
  onFallback(error: unknown): void;
  /** Redis answers again. */
  onRecovered(): void;
}

/**
 * Takes tokens from rate buckets kept in Redis (rate-limit.lua), so every process shares one bucket per key.
 *
 * When Redis cannot answer within `timeoutMs`, the limiter fails open to a bounded in-process bucket of the
 * same rate and burst: each process then limits on its own (N processes let through up to N times the rate),
 * rather than refusing everyone, or waiting on Redis, while it is away. The next call tries Redis again.
 */
export class RedisRateLimiter {
  private readonly local = new Map<string, number>();
  private degraded = false;

  constructor(
    private readonly redis: ScriptedRedis,
    private readonly observer: RateLimiterObserver,
    private readonly timeoutMs = 250,
  ) {}

  /** 0 when the call passes (a token taken), else the milliseconds until a token is back. */
  async take(key: string, ratePerSecond: number, burst: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const wait = await Promise.race([
        this.redis.couponRateLimit(key, ratePerSecond, burst),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`rate limiter: no answer from Redis within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
      if (this.degraded) {
        this.degraded = false;
        this.local.clear();
        this.observer.onRecovered();
      }
      return wait;
    } catch (error) {
      if (!this.degraded) {
        this.degraded = true;
        this.observer.onFallback(error);
      }
      return this.takeLocally(key, ratePerSecond, burst);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The same GCRA as rate-limit.lua, on this process's clock. */
  private takeLocally(key: string, ratePerSecond: number, burst: number): number {
    const now = performance.now() * 1000;
    const interval = 1_000_000 / ratePerSecond;
    const next = Math.max(this.local.get(key) ?? 0, now) + interval;
    const allowAt = next - burst * interval;
    if (allowAt > now) return Math.max(1, Math.ceil((allowAt - now) / 1000));
    this.local.delete(key); // re-inserted last: the Map's order is then oldest-used first
    if (this.local.size >= FALLBACK_MAX_BUCKETS) this.local.delete(this.local.keys().next().value as string);
    this.local.set(key, next);
    return 0;
  }
}
