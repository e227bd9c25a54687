import { hostname } from 'node:os';
import { Authenticator } from './api/auth';
import { RateLimits } from './api/rate-limits';
import type { GraphQLContext } from './api/context';
import { createGraphQLServer, type GraphQLServer } from './api/graphql-server';
import { createServer, type Server } from 'node:http';
import { createMetricsHandler, createRequestHandler, listeningPort, type Readiness } from './api/http-server';
import { createLimitedHttpServer } from './api/limits';
import { createSchema } from './api/schema';
import type { Config } from './config';
import { StreamConsumer } from './consumer/stream-consumer';
import { createDb, type Db } from './db/client';
import { PrismaAuditRepository } from './db/audit-repository';
import { PrismaCouponLifecycleRepository } from './db/coupon-lifecycle-repository';
import { PrismaCouponRepository } from './db/coupon-repository';
import { PrismaFailureRepository } from './db/failure-repository';
import { migrate, pendingMigrations } from './db/migrate';
import { PrismaPromotionRepository } from './db/promotion-repository';
import { AuditService } from './domain/audit-service';
import { CouponService } from './domain/coupon-service';
import { IssuanceService } from './domain/issuance-service';
import { PromotionService } from './domain/promotion-service';
import { StockFeeds } from './domain/stock-feeds';
import type { Caller } from './domain/types';
import type { Logger } from './logger';
import { Metrics } from './metrics';
import { AccessLog, knownOperations } from './ops/access-log';
import { RedisStateGuard } from './ops/state-guard';
import { runEvery } from './periodic';
import { connectRedis, createDedicatedRedis, createRedis, isCluster, redisTarget } from './redis/client';
import { RedisIssuanceEvents } from './redis/event-bus';
import { RedisKeys } from './redis/keys';
import { readQueueDepth } from './redis/queue-stats';
import { RedisRateLimiter } from './redis/rate-limiter';
import { ReplicaWaiter } from './redis/replica-wait';
import { RedisReservationStore } from './redis/reservation-store';
import { RedisStreamQueue } from './redis/stream-queue';
import { unavailableWhenRedisDown } from './redis/unavailable';
import type { ScriptedRedis } from './redis/scripts';

export interface RunningApp {
  port: number;
  url: string;
  /** METRICS_PORT's server, when set. */
  metricsUrl: string | null;
  metrics: Metrics;
  promotions: PromotionService;
  issuance: IssuanceService;
  /** promotionStock's feeds in this process. */
  stock: StockFeeds;
  consumer: StreamConsumer | null;
  audit: AuditService;
  /** GraphQL requests answered by the fast path (api/fast-path.ts) rather than Apollo, so far. */
  fastPathAnswers(): number;
  /** Stops accepting, finishes in-flight requests and batches, closes subscriptions and connections. */
  stop(): Promise<void>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Redis answers, and a cluster serves every slot: cluster_state is ok on the node asked (a node that has lost
 * contact with a majority of masters, or sees a slot without a master, says fail).
 */
async function redisUsable(redis: ScriptedRedis): Promise<void> {
  if (!isCluster(redis)) {
    await redis.ping();
    return;
  }
  const info = (await redis.cluster('INFO')) as string;
  const state = /cluster_state:(\w+)/.exec(info)?.[1];
  if (state !== 'ok') throw new Error(`Redis Cluster state is ${state ?? 'unknown'}`);
}

/** The composition root: builds clients and services for the configured role, then serves. */
export async function startApp(config: Config, logger: Logger): Promise<RunningApp> {
  const servesApi = config.role !== 'consumer';
  const runsConsumer = config.role !== 'api';
  const development = config.development;
  if (config.jwtSecretIsDefault && !config.jwt.jwksUrl) logger.warn('JWT_SECRET is not set: using the development secret. Never do this in production.');

  if (config.migrate) {
    const applied = await migrate(config.databaseUrl);
    if (applied.length) logger.info({ applied }, 'migrations applied');
  }

  const keys = new RedisKeys(config.redisKeyPrefix);
  const db: Db = createDb(config.databaseUrl);
  const target = redisTarget(config);
  const cluster = typeof target !== 'string';
  const redis = createRedis(target, 'coupon-commands');
  // WAIT holds up the commands behind it on its connection: reservations and admin writes get their own.
  const waitsForReplicas = config.redisWaitReplicas > 0;
  const writer = waitsForReplicas ? createRedis(target, 'coupon-writes') : redis;
  const subscriber = servesApi ? createDedicatedRedis(target, 'coupon-events') : null;
  // A cluster refuses a read across slots: its consumer reads each stream on the command connection instead.
  const reader = runsConsumer && !cluster ? createDedicatedRedis(target, 'coupon-consumer') : null;
  // The consumer's WAIT before storing (replica-wait.ts) goes on a connection of its own, for the same reason.
  const consumerWaits = runsConsumer ? createRedis(target, 'coupon-consumer-waits') : null;
  const redisClients = [...new Set([redis, writer, subscriber, reader, consumerWaits])].filter((c): c is ScriptedRedis => c !== null);
  for (const client of redisClients) client.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
  await Promise.all(redisClients.map((c) => connectRedis(c)));

  const metrics = new Metrics(() => readQueueDepth(redis, keys));
  const accessLog = new AccessLog(logger, metrics);
  const statusTtlMs = config.statusTtlSeconds * 1000;
  const rates = config.rateLimits;
  const writes = new ReplicaWaiter(writer, { required: config.redisWaitReplicas, timeoutMs: config.redisWaitTimeoutMs });
  const reservations = new RedisReservationStore(
    writer,
    keys,
    { perUserPerSecond: rates.issuePerSecond, perUserBurst: rates.issueBurst, perIpPerSecond: rates.issuePerIpPerSecond },
    writes,
    redis,
  );
  const promotionRepository = new PrismaPromotionRepository(db);
  const couponRepository = new PrismaCouponRepository(db);
  const failureRepository = new PrismaFailureRepository(db);
  const clock = { now: () => new Date() };
  const promotions = new PromotionService(promotionRepository, reservations, clock);
  const audit = new AuditService(reservations, new PrismaAuditRepository(db), promotionRepository, clock);
  // The events feed needs the subscriber connection; a consumer-only process never subscribes.
  const eventBus = subscriber
    ? new RedisIssuanceEvents(subscriber, keys, () => redis.smembers(keys.activePromotions()), (sentAt) => metrics.deliveredToFeed(sentAt))
    : null;
  const events = eventBus ?? { watchUser: () => Promise.reject(new Error('no subscriptions in ROLE=consumer')), unwatchUser: () => undefined };
  const issuance = new IssuanceService(reservations, couponRepository, failureRepository, events, (outcome) => metrics.issueOutcome(outcome));
  const stock = new StockFeeds(
    async (promotionId) => (await reservations.liveStates([promotionId])).get(promotionId),
    clock,
    Math.ceil(1000 / config.stockUpdatesPerSecond),
    {
      read: () => metrics.stockFeedRead(),
      readFailed: (promotionId, error) => logger.warn({ err: error, promotionId }, 'promotionStock feed cannot read Redis; reading again at its next tick'),
    },
  );
  if (servesApi) metrics.watchStockFeeds(stock);
  const coupons = new CouponService(new PrismaCouponLifecycleRepository(db), clock, (outcome) => metrics.redeemOutcome(outcome));
  const limiter = new RedisRateLimiter(redis, {
    onFallback: (error) => {
      metrics.rateLimiterFallback();
      logger.warn({ err: error }, 'rate limiter cannot reach Redis: limiting per process until it answers again');
    },
    onRecovered: () => logger.info('rate limiter reaches Redis again'),
  });
  const rateLimits = new RateLimits(
    limiter,
    keys,
    { userPerSecond: rates.userPerSecond, anonPerSecond: rates.anonPerSecond, trustProxy: config.trustProxy },
    (kind) => metrics.rateLimited(kind),
  );

  // Every process repairs what a failure between an admin call's two writes left behind (or what Redis lost):
  // once before it serves, then every RECONCILE_INTERVAL_MS. Runs are idempotent, so processes need no turns.
  const reconcile = async () => {
    const { fixed, failed } = await promotions.reconcile();
    if (fixed.length) logger.warn({ fixed }, 'PostgreSQL and Redis disagreed on promotions: repaired');
    for (const { promotionId, error } of failed) logger.warn({ err: error, promotionId }, 'could not reconcile a promotion; retrying at the next interval');
  };
  const reconcileAndFollow = async () => {
    await reconcile();
    await eventBus?.refreshPromotions(); // feeds of every promotion start listening to new ones
  };
  const stateGuard = new RedisStateGuard(reservations, reconcileAndFollow, () => eventBus?.signalGap(), logger);
  await stateGuard.pass();

  let migrated = false;
  const readiness = async (): Promise<Readiness> => {
    const checks: Record<string, string> = {};
    await Promise.all([
      withTimeout(redisUsable(redis), 1000, 'redis').then(
        () => (checks.redis = 'ok'),
        (e: Error) => (checks.redis = e.message),
      ),
      withTimeout(db.$queryRawUnsafe('SELECT 1'), 1000, 'postgres').then(
        () => (checks.postgres = 'ok'),
        (e: Error) => (checks.postgres = e.message.split('\n').filter(Boolean).pop() ?? 'unreachable'),
      ),
    ]);
    if (checks.postgres === 'ok') {
      // Once migrated, always migrated: the check reads the folder and the table only until then.
      const pending = migrated ? [] : await pendingMigrations((sql) => db.$queryRawUnsafe(sql));
      migrated = pending.length === 0;
      checks.migrations = migrated ? 'ok' : `pending: ${pending.join(', ')}`;
    }
    if (checks.redis === 'ok' && checks.postgres === 'ok') {
      checks.redisState = (await stateGuard.check().catch((e: Error) => e.message)) ?? 'ok';
    }
    const ok = checks.redis === 'ok' && checks.postgres === 'ok' && checks.migrations === 'ok' && checks.redisState === 'ok';
    return { ok, checks };
  };

  const authenticator = new Authenticator({ secret: config.jwtSecret, ...config.jwt });
  const context = (caller: Caller | null, clientIp: string | null): GraphQLContext => ({ caller, clientIp, issuance, stock });
  const onInternalError = (error: unknown) => logger.error({ err: error }, 'internal error');

  const metricsText = { contentType: metrics.registry.contentType, text: () => metrics.registry.metrics() };
  // The server exists before its handler: Apollo's drain plugin and the WebSocket server attach to it.
  const httpServer = createLimitedHttpServer(config.limits);
  let graphqlServer: GraphQLServer | null = null;
  if (servesApi) {
    const schema = await createSchema({ promotions, issuance, audit, coupons });
    accessLog.knowOperations(knownOperations(schema));
    graphqlServer = await createGraphQLServer({
      schema,
      httpServer,
      authenticator,
      context,
      development,
      onInternalError,
      // Redis unreachable or failing over, whatever the operation: SERVICE_UNAVAILABLE with a retry delay.
      translateError: unavailableWhenRedisDown,
      limits: config.limits,
      rateLimits,
      accessLog,
    });
  }
  httpServer.on(
    'request',
    createRequestHandler({
      graphql: graphqlServer ? { apollo: graphqlServer.apollo, fastPath: graphqlServer.fastPath, authenticator, context } : null,
      rateLimits,
      readiness,
      metrics: config.metricsPort === null ? metricsText : null,
      accessLog,
      corsOrigins: config.corsOrigins,
      corsAllowHeaders: config.corsAllowHeaders,
      limits: config.limits,
    }),
  );

  let consumer: StreamConsumer | null = null;
  if (runsConsumer) {
    const queue = new RedisStreamQueue(redis, reader, keys, statusTtlMs, new ReplicaWaiter(consumerWaits ?? redis, {
      required: config.redisWaitReplicas,
      timeoutMs: config.redisWaitTimeoutMs,
      oneIfAny: true, // even with REDIS_WAIT_REPLICAS=0: no failover may leave PostgreSQL ahead of Redis
    }));
    consumer = new StreamConsumer(
      queue,
      couponRepository,
      failureRepository,
      { ...config.consumer, host: hostname() },
      metrics.consumerObserver(logger),
    );
    consumer.start();
  }

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    // A flash sale opens thousands of connections at once: a deep accept queue, and idle keep-alive
    // connections kept longer than clients and load balancers keep theirs (so the server never closes first).
    // The header and request timeouts are limits (api/limits.ts): they count from a request's first byte.
    httpServer.keepAliveTimeout = 65_000;
    httpServer.listen({ port: config.port, host: config.host, backlog: 4096 }, () => resolve());
  });
  const port = listeningPort(httpServer);
  const hostInUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${hostInUrl}:${port}`;
  let metricsServer: Server | null = null;
  if (config.metricsPort !== null) {
    const server = createServer(createMetricsHandler(metricsText, onInternalError));
    metricsServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: config.metricsPort ?? 0, host: config.host }, () => resolve());
    });
  }
  const metricsUrl = metricsServer ? `http://${hostInUrl}:${listeningPort(metricsServer)}/metrics` : null;
  logger.info({ url, role: config.role, metricsUrl: metricsUrl ?? undefined }, 'coupon issuance service started');
  // A failed run is reported and retried at the next interval: the repair is the same whenever it happens.
  const reconciler = runEvery(config.reconcileIntervalMs, () =>
    stateGuard.pass().catch((error: unknown) => {
      // A pass cut short by our own stop (its connections closed) is expected, not worth a warning.
      if (!reconciler.stopped) logger.warn({ err: error }, 'reconciliation failed; retrying at the next interval');
    }),
  );

  let stopping: Promise<void> | null = null;
  // Each step of a stop gets what is left of most of SHUTDOWN_TIMEOUT_MS: a database query stuck on a cut
  // network (up to 20 s) must not turn a graceful stop into a timeout. What a step abandons is safe to
  // abandon: a consumer's batch stays pending (another consumer takes it over), storing is idempotent.
  const stop = () =>
    (stopping ??= (async () => {
      const deadline = Date.now() + Math.floor(config.shutdownTimeoutMs * 0.8);
      const step = async (what: string, work: () => Promise<unknown>) => {
        try {
          await withTimeout(work(), Math.max(0, deadline - Date.now()), what);
          logger.debug(`${what}: done`);
        } catch (error) {
          logger.warn({ err: error }, `${what}: abandoned, to stop in time`);
        }
      };
      reconciler.stop(); // each repair is one atomic write: a pass cut short leaves nothing half done
      if (graphqlServer) {
        const server = graphqlServer;
        await step('closing websockets', () => server.closeWebSockets());
        stock.close(); // the sockets are gone: no feed has a watcher left, this only makes sure none reads on
        await step('draining http', () => server.apollo.stop()); // stops accepting, finishes in-flight requests
      } else {
        await step('closing http', () => new Promise<void>((resolve) => httpServer.close(() => resolve())));
      }
      await step('stopping the consumer', async () => consumer?.stop());
      if (metricsServer) {
        const server = metricsServer;
        server.closeIdleConnections();
        await step('closing metrics', () => new Promise<void>((resolve) => server.close(() => resolve())));
      }
      await step('finishing a rebuild', () => stateGuard.settle());
      eventBus?.close();
      // The consumer's reader is already closed by its stop (that is how a blocking read is cut short).
      const open = redisClients.filter((c) => c.status !== 'end');
      await step('closing redis', () => Promise.all(open.map((c) => c.quit().catch(() => c.disconnect()))));
      await step('closing postgres', () => db.$disconnect());
      logger.info('coupon issuance service stopped');
    })());

  const fastPathAnswers = () => graphqlServer?.fastPath.answered ?? 0;
  return { port, url, metricsUrl, metrics, promotions, issuance, stock, consumer, audit, fastPathAnswers, stop };
}
