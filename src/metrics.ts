import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { ConsumerObserver } from './consumer/stream-consumer';
import type { IssueOutcome, RedeemOutcome } from './domain/types';
import type { Logger } from './logger';

export interface QueueDepth {
  entries: number;
  pending: number;
  deadLetter: number;
  /** Age of the oldest request not yet ISSUED or FAILED, over every promotion (0: none waiting). */
  lagSeconds?: number;
  /** The promotions being sold, at most MAX_PROMOTION_SERIES (redis/queue-stats.ts). */
  promotions?: PromotionQueueStats[];
  /** Promotions being sold past that cap, left out of the per-promotion series. */
  promotionsLeftOut?: number;
}

export interface PromotionQueueStats {
  promotionId: string;
  remainingStock: number;
  /** Requests queued and not yet ISSUED or FAILED (in flight). */
  backlog: number;
  /** Redis's issued counter (NaN when missing). */
  issued: number;
  lagSeconds: number;
}

/** The routes HTTP requests are counted by: every other path is `other`, so a client cannot grow the label set. */
export type HttpRoute = '/graphql' | '/healthz' | '/readyz' | '/metrics' | 'other';

const METHODS = new Set(['GET', 'POST', 'OPTIONS', 'HEAD']);

/** Default metrics whose cost grows with the number of open sockets (see the constructor). */
export const EXPENSIVE_DEFAULT_METRICS = [
  'process_open_fds',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const;

/** Prometheus metrics of one process, on a registry of its own (tests run several apps in one process). */
export class Metrics {
  readonly registry = new Registry();

  private readonly outcomes = new Counter({
    name: 'coupon_issue_outcomes_total',
    help: 'issueCoupon outcomes, by kind',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly redeemOutcomes = new Counter({
    name: 'coupon_redeem_outcomes_total',
    help: 'redeemCoupon outcomes, by kind',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly persistedTotal = new Counter({
    name: 'coupon_persisted_total',
    help: 'coupons stored in PostgreSQL and confirmed by this process',
    registers: [this.registry],
  });

  private readonly failedTotal = new Counter({
    name: 'coupon_failed_total',
    help: 'queued requests that could never be stored (FAILED, stock given back)',
    registers: [this.registry],
  });

  private readonly dbRetries = new Counter({
    name: 'coupon_consumer_db_retries_total',
    help: 'batch writes retried after a transient database error',
    registers: [this.registry],
  });

  private readonly takenOver = new Counter({
    name: 'coupon_consumer_takeovers_total',
    help: 'entries taken over from a consumer that died or hung (or from an earlier incarnation of this one)',
    registers: [this.registry],
  });

  private readonly consumerErrors = new Counter({
    name: 'coupon_consumer_errors_total',
    help: 'consumer loop errors (Redis unreachable and the like)',
    registers: [this.registry],
  });

  private readonly confirmationLatency = new Histogram({
    name: 'coupon_issue_to_confirmation_seconds',
    help: 'time from the reservation (QUEUED) to its confirmation (ISSUED)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  // The stages of QUEUED → ISSUED → the client's socket, so the tail of the total can be explained.
  private readonly queueWait = new Histogram({
    name: 'coupon_consumer_queue_wait_seconds',
    help: 'time a request waited in its stream, from its reservation (QUEUED) until a consumer read it',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  private readonly batchStage = new Histogram({
    name: 'coupon_consumer_batch_stage_seconds',
    help: 'time one batch spent in a stage: insert (PostgreSQL commit) or confirm (ISSUED, publish, ack in Redis)',
    labelNames: ['stage'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  private readonly batchSize = new Histogram({
    name: 'coupon_consumer_batch_size',
    help: 'entries per batch the consumer stored',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
    registers: [this.registry],
  });

  private readonly publishToSocket = new Histogram({
    name: 'coupon_publish_to_socket_seconds',
    help: 'time from a confirmation sent for publishing (consumer) until it reached a subscribed feed (this API process)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  private readonly rateLimitedTotal = new Counter({
    name: 'rate_limited_total',
    help: 'calls refused by a rate limit, by limit (issue, user, anonymous)',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });

  private readonly rateLimiterFallbacks = new Counter({
    name: 'rate_limiter_fallback_total',
    help: 'times the edge rate limiter lost Redis and fell back to in-process buckets',
    registers: [this.registry],
  });

  private readonly httpDuration = new KeyedHistogram(
    'http_request_duration_seconds',
    'HTTP requests, from their headers until the answer was written, by method, route and status',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    this.registry,
  );

  // Counted in plain numbers by label key, added to the counter when it is scraped (its collect): prom-client
  // validates and hashes the labels on every inc, even through a child from labels().
  private readonly operationCounts = new Map<string, { labels: { operation: string; code: string }; pending: number }>();

  private readonly graphqlOperations = new Counter({
    name: 'graphql_operations_total',
    help: 'GraphQL operations answered over HTTP, by operation name (root field names, else other) and code (ok or the first error code)',
    labelNames: ['operation', 'code'] as const,
    registers: [this.registry],
    collect: () => {
      for (const count of this.operationCounts.values()) {
        if (count.pending === 0) continue;
        this.graphqlOperations.inc(count.labels, count.pending);
        count.pending = 0;
      }
    },
  });

  private readonly wsConnections = new Gauge({
    name: 'ws_connections',
    help: 'open WebSocket connections',
    registers: [this.registry],
  });

  private readonly wsSubscriptions = new Gauge({
    name: 'ws_subscriptions',
    help: 'running WebSocket subscriptions',
    registers: [this.registry],
  });

  private stockFeeds: { readonly feedCount: number; readonly watcherCount: number } | null = null;

  private readonly stockFeedCount: Gauge = new Gauge({
    name: 'coupon_stock_feeds',
    help: 'promotionStock feeds running in this process: one per watched promotion, whatever the number of watchers',
    registers: [this.registry],
    collect: (): void => this.stockFeedCount.set(this.stockFeeds?.feedCount ?? 0),
  });

  private readonly stockWatchers: Gauge = new Gauge({
    name: 'coupon_stock_watchers',
    help: 'promotionStock subscriptions of this process waiting on a feed',
    registers: [this.registry],
    collect: (): void => this.stockWatchers.set(this.stockFeeds?.watcherCount ?? 0),
  });

  private readonly stockFeedReads = new Counter({
    name: 'coupon_stock_feed_reads_total',
    help: 'reads of a promotion\'s live state by the promotionStock feeds of this process (one feed per watched promotion)',
    registers: [this.registry],
  });

  constructor(queueDepth?: () => Promise<QueueDepth>) {
    collectDefaultMetrics({ register: this.registry });
    // These walk every open socket on each scrape, synchronously (a readdir of /proc/self/fd, an array of
    // every handle): with 10,000 sockets a scrape blocked the event loop for ~25 ms, in every confirmation's
    // path. The rest of the default metrics cost the same whatever the number of sockets.
    for (const name of EXPENSIVE_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    if (queueDepth) {
      let last: Promise<QueueDepth> | null = null;
      const unknown: QueueDepth = { entries: Number.NaN, pending: Number.NaN, deadLetter: Number.NaN };
      // One Redis read per scrape, shared by the three gauges. With Redis away the gauges read NaN, and
      // the rest of /metrics is still served: that is when it is needed most.
      const read = () =>
        (last ??= queueDepth()
          .catch(() => unknown)
          .finally(() => setTimeout(() => (last = null), 100)));
      const gauge = (name: string, help: string, pick: (d: QueueDepth) => number) =>
        new Gauge({
          name,
          help,
          registers: [this.registry],
          async collect() {
            this.set(pick(await read()));
          },
        });
      gauge('coupon_queue_length', 'queued requests not yet confirmed, all promotions (stream length)', (d) => d.entries);
      gauge('coupon_queue_pending', 'requests delivered to a consumer and not yet acknowledged', (d) => d.pending);
      gauge('coupon_dead_letter_length', 'requests in the dead-letter streams', (d) => d.deadLetter);
      gauge(
        'coupon_consumer_lag_seconds',
        'age of the oldest queued request not yet ISSUED or FAILED, over all promotions (0 when none waits)',
        (d) => d.lagSeconds ?? Number.NaN,
      );
      gauge('coupon_promotion_series_left_out', 'promotions being sold beyond the cap of per-promotion series', (d) => d.promotionsLeftOut ?? 0);
      // Per promotion, only those being sold and at most MAX_PROMOTION_SERIES of them: the series of a promotion
      // that ended go at the next scrape (reset), so the label set stays bounded.
      const perPromotion = (name: string, help: string, pick: (p: PromotionQueueStats) => number) =>
        new Gauge({
          name,
          help,
          labelNames: ['promotion'] as const,
          registers: [this.registry],
          async collect() {
            const depth = await read();
            this.reset();
            for (const p of depth.promotions ?? []) this.set({ promotion: p.promotionId }, pick(p));
          },
        });
      perPromotion('coupon_promotion_remaining_stock', 'stock not yet reserved, per promotion being sold', (p) => p.remainingStock);
      perPromotion('coupon_promotion_backlog', 'requests queued and not yet ISSUED or FAILED (in flight), per promotion being sold', (p) => p.backlog);
      perPromotion('coupon_promotion_issued', 'coupons issued (Redis\'s counter), per promotion being sold', (p) => p.issued);
      perPromotion('coupon_promotion_lag_seconds', 'age of the oldest request in flight, per promotion being sold', (p) => p.lagSeconds);
    }
  }

  issueOutcome(outcome: IssueOutcome): void {
    this.outcomes.inc({ outcome });
  }

  redeemOutcome(outcome: RedeemOutcome): void {
    this.redeemOutcomes.inc({ outcome });
  }

  rateLimited(limit: 'issue' | 'user' | 'anonymous'): void {
    this.rateLimitedTotal.inc({ limit });
  }

  httpRequest(method: string | undefined, route: HttpRoute, status: number, seconds: number): void {
    const m = method !== undefined && METHODS.has(method) ? method : 'other';
    const key = `${m} ${route} ${status}`;
    if (!this.httpDuration.observe(key, seconds)) this.httpDuration.add(key, { method: m, route, status: String(status) }, seconds);
  }

  /** `operation` is already bounded by the caller (ops/access-log.ts); codes are the API's error codes. */
  graphqlOperation(operation: string, code: string): void {
    const key = `${operation} ${code}`;
    const count = this.operationCounts.get(key);
    if (count) count.pending++;
    else this.operationCounts.set(key, { labels: { operation, code }, pending: 1 });
  }

  wsConnection(delta: 1 | -1): void {
    this.wsConnections.inc(delta);
  }

  wsSubscription(delta: 1 | -1): void {
    this.wsSubscriptions.inc(delta);
  }

  /** promotionStock's feeds and watchers in this process, read at each scrape. */
  watchStockFeeds(feeds: { readonly feedCount: number; readonly watcherCount: number }): void {
    this.stockFeeds = feeds;
  }

  stockFeedRead(): void {
    this.stockFeedReads.inc();
  }

  rateLimiterFallback(): void {
    this.rateLimiterFallbacks.inc();
  }

  /** A confirmation reached a subscribed feed; the clocks of two processes of one host (or NTP-synced). */
  deliveredToFeed(publishedAtMs: number): void {
    this.publishToSocket.observe(Math.max(0, Date.now() - publishedAtMs) / 1000);
  }

  consumerObserver(logger: Logger): ConsumerObserver {
    return {
      persisted: (count) => this.persistedTotal.inc(count),
      confirmed: (latencies) => {
        for (const ms of latencies) this.confirmationLatency.observe(ms / 1000);
      },
      failed: (count) => this.failedTotal.inc(count),
      retrying: (error, delayMs) => {
        this.dbRetries.inc();
        logger.warn({ err: error, delayMs }, 'database write failed; retrying');
      },
      tookOver: (count, from) => {
        this.takenOver.inc(count);
        logger.warn({ count, from }, 'took over entries of a consumer that stopped');
      },
      error: (error) => {
        this.consumerErrors.inc();
        logger.error({ err: error }, 'consumer error');
      },
      queueWait: (waits) => {
        for (const ms of waits) this.queueWait.observe(Math.max(0, ms) / 1000);
      },
      stage: (stage, ms, entries) => {
        this.batchStage.observe({ stage }, ms / 1000);
        if (stage === 'insert') this.batchSize.observe(entries);
      },
    };
  }
}

/** One label set's samples: a count per bucket (not cumulative), their sum and their number. */
interface Series {
  labels: Record<string, string>;
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * A histogram for the per-request path, exported exactly as prom-client's Histogram is (same lines, same order).
 * prom-client's observe, even through a child from labels(), builds and validates a label object, hashes it into a
 * string and looks the bucket up by a number turned into a string key, on every call; here a caller's key finds
 * its series in one Map lookup and the bucket is found by index.
 */
export class KeyedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upperBounds: number[],
    registry: Registry,
  ) {
    // The registry needs only name, get() and reset(), which prom-client's own metrics provide the same way.
    registry.registerMetric(this as unknown as Metric);
  }

  /** A sample of the label set named `key`: false, and nothing counted, when that key was never added. */
  observe(key: string, value: number): boolean {
    const series = this.series.get(key);
    if (!series) return false;
    const bounds = this.upperBounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    if (i < bounds.length) (series.buckets[i] as number)++;
    series.sum += value;
    series.count++;
    return true;
  }

  /** The first sample of a label set: `key` stands for `labels` from now on. */
  add(key: string, labels: Record<string, string>, value: number): void {
    this.series.set(key, { labels, buckets: this.upperBounds.map(() => 0), sum: 0, count: 0 });
    this.observe(key, value);
  }

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const { labels, buckets, sum, count } of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += buckets[i] as number;
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...labels }, value: count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...labels }, value: sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series = new Map();
  }
}
