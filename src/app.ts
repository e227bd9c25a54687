import { hostname } from 'node:os';
import { Authenticator } from './api/auth';
import type { GraphQLContext } from './api/context';
import { createGraphQLServer, type GraphQLServer } from './api/graphql-server';
import { createRequestHandler, listeningPort, type Readiness } from './api/http-server';
import { createLimitedHttpServer } from './api/limits';
import { createSchema } from './api/schema';
import type { Config } from './config';
import { StreamConsumer } from './consumer/stream-consumer';
import { createDb, type Db } from './db/client';
import { PrismaCouponRepository } from './db/coupon-repository';
import { migrate, pendingMigrations } from './db/migrate';
import { PrismaPromotionRepository } from './db/promotion-repository';
import { IssuanceService } from './domain/issuance-service';
import { PromotionService } from './domain/promotion-service';
import type { Caller } from './domain/types';
import type { Logger } from './logger';
import { Metrics } from './metrics';
import { connectRedis, createDedicatedRedis, createRedis } from './redis/client';
import { RedisIssuanceEvents } from './redis/event-bus';
import { RedisKeys } from './redis/keys';
import { readQueueDepth } from './redis/queue-stats';
import { RedisReservationStore } from './redis/reservation-store';
import type { ScriptedRedis } from './redis/scripts';

export interface RunningApp {
  port: number;
  url: string;
  metrics: Metrics;
  promotions: PromotionService;
  issuance: IssuanceService;
  consumer: StreamConsumer | null;
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

/** The composition root: builds clients and services for the configured role, then serves. */
export async function startApp(config: Config, logger: Logger): Promise<RunningApp> {
  const servesApi = config.role !== 'consumer';
  const runsConsumer = config.role !== 'api';
  const development = config.development;
  if (config.jwtSecretIsDefault) logger.warn('JWT_SECRET is not set: using the development secret. Never do this in production.');

  if (config.migrate) {
    const applied = await migrate(config.databaseUrl);
    if (applied.length) logger.info({ applied }, 'migrations applied');
  }

  const keys = new RedisKeys(config.redisKeyPrefix);
  const db: Db = createDb(config.databaseUrl);
  const redis = createRedis(config.redisUrl, 'coupon-commands');
  const subscriber = servesApi ? createDedicatedRedis(config.redisUrl, 'coupon-events') : null;
  const reader = runsConsumer ? createDedicatedRedis(config.redisUrl, 'coupon-consumer') : null;
  const redisClients = [redis, subscriber, reader].filter((c): c is ScriptedRedis => c !== null);
  for (const client of redisClients) client.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
  await Promise.all(redisClients.map((c) => connectRedis(c)));

  const metrics = new Metrics(() => readQueueDepth(redis, keys));
  const statusTtlMs = config.statusTtlSeconds * 1000;
  const reservations = new RedisReservationStore(redis, keys);
  const promotionRepository = new PrismaPromotionRepository(db);
  const couponRepository = new PrismaCouponRepository(db);
  const clock = { now: () => new Date() };
  const promotions = new PromotionService(promotionRepository, reservations, clock);
  // The events feed needs the subscriber connection; a consumer-only process never subscribes.
  const events = subscriber ? new RedisIssuanceEvents(subscriber, keys) : { watchUser: () => Promise.reject(new Error('no subscriptions in ROLE=consumer')) };
  const issuance = new IssuanceService(reservations, couponRepository, events, (outcome) => metrics.issueOutcome(outcome));

  const rebuilt = await promotions.restoreRedisState();
  if (rebuilt.length) logger.warn({ promotions: rebuilt }, 'rebuilt promotions missing from Redis from PostgreSQL');

  let migrated = false;
  const readiness = async (): Promise<Readiness> => {
    const checks: Record<string, string> = {};
    await Promise.all([
      withTimeout(redis.ping(), 1000, 'redis').then(
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
    const ok = checks.redis === 'ok' && checks.postgres === 'ok' && checks.migrations === 'ok';
    return { ok, checks };
  };

  const authenticator = new Authenticator(config.jwtSecret);
  const context = (caller: Caller | null): GraphQLContext => ({ caller, issuance });
  const onInternalError = (error: unknown) => logger.error({ err: error }, 'internal error');

  // The server exists before its handler: Apollo's drain plugin and the WebSocket server attach to it.
  const httpServer = createLimitedHttpServer(config.limits);
  let graphqlServer: GraphQLServer | null = null;
  if (servesApi) {
    const schema = await createSchema({ promotions, issuance });
    graphqlServer = await createGraphQLServer({ schema, httpServer, authenticator, context, development, onInternalError, limits: config.limits });
  }
  httpServer.on(
    'request',
    createRequestHandler({
      graphql: graphqlServer ? { apollo: graphqlServer.apollo, authenticator, context } : null,
      readiness,
      metrics: { contentType: metrics.registry.contentType, text: () => metrics.registry.metrics() },
      onError: onInternalError,
      corsOrigins: config.corsOrigins,
      limits: config.limits,
    }),
  );

  let consumer: StreamConsumer | null = null;
  if (reader) {
    consumer = new StreamConsumer(
      reader,
      redis,
      keys,
      couponRepository,
      {
        consumerName: `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
        ...config.consumer,
        statusTtlMs,
      },
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
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url, role: config.role }, 'coupon issuance service started');

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      if (graphqlServer) {
        await graphqlServer.closeWebSockets();
        logger.debug('websockets closed');
        await graphqlServer.apollo.stop(); // drains HTTP: stops accepting, finishes in-flight requests
      } else {
        await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      }
      logger.debug('http closed');
      await consumer?.stop();
      logger.debug('consumer stopped');
      await Promise.all(redisClients.map((c) => c.quit().catch(() => c.disconnect())));
      await db.$disconnect();
      logger.info('coupon issuance service stopped');
    })());

  return { port, url, metrics, promotions, issuance, consumer, stop };
}
