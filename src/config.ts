import { z } from 'zod';
import type { ConsumerOptions } from './consumer/stream-consumer';

const DEV_JWT_SECRET = 'dev-only-secret-change-me-0123456789abcdef';

const intFrom = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);
/** Calls a second: fractions allowed (0.5 = one every 2 s); 0 turns the limit off. */
const rate = (fallback: number) => z.coerce.number().min(0).max(1_000_000).default(fallback);
const optionalText = z.string().min(1).optional();

const schema = z
  .object({
    NODE_ENV: z.string().optional(),
    PORT: intFrom(0, 65535, 4000),
    HOST: z.string().min(1).default('127.0.0.1'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
      .default('postgresql://postgres:postgres@127.0.0.1:5432/coupons'),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').default('redis://127.0.0.1:6379'),
    REDIS_KEY_PREFIX: z.string().max(100).default('coupon:'),
    REDIS_CLUSTER_NODES: z
      .string()
      .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, 'must be host:port[,host:port...]')
      .optional(),
    REDIS_WAIT_REPLICAS: intFrom(0, 10, 0),
    // Below the 5 s bound of every Redis command (redis/client.ts), which would otherwise cut a WAIT short.
    REDIS_WAIT_TIMEOUT_MS: intFrom(1, 4000, 100),
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    ROLE: z.enum(['api', 'consumer', 'all']).default('all'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    MIGRATE: z.enum(['true', 'false']).default('true'),
    CONSUMER_BATCH_SIZE: intFrom(1, 5000, 500),
    CONSUMER_BLOCK_MS: intFrom(10, 60_000, 1000),
    CONSUMER_NAME: z
      .string()
      .regex(/^[A-Za-z0-9_.:@-]{1,100}$/, 'must be 1 to 100 characters of A-Z a-z 0-9 _ . : @ -')
      .optional(),
    CONSUMER_HEARTBEAT_MS: intFrom(100, 60_000, 1000),
    CONSUMER_DEAD_AFTER_MS: intFrom(300, 600_000, 3000),
    CONSUMER_MAX_DELIVERIES: intFrom(2, 1000, 5),
    CONSUMER_MAX_BACKOFF_MS: intFrom(10, 600_000, 5000),
    STATUS_TTL_SECONDS: intFrom(3600, 90 * 86400, 7 * 86400),
    SHUTDOWN_TIMEOUT_MS: intFrom(100, 60_000, 8000),
    RECONCILE_INTERVAL_MS: intFrom(500, 3_600_000, 5000),
    // promotionStock: values a second per watcher, and the reads a second of each watched promotion's feed.
    STOCK_UPDATES_PER_SECOND: intFrom(1, 100, 4),
    CORS_ORIGINS: z
      .string()
      .regex(/^(\*|https?:\/\/[^\s,]+(,https?:\/\/[^\s,]+)*)$/, 'must be * or a comma-separated list of http(s) origins')
      .default('*'),
    // Request headers a browser may send besides those always allowed (http-server.ts): tracing, client ids.
    CORS_ALLOW_HEADERS: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/, 'must be a comma-separated list of header names')
      .optional(),
    // A second port for /metrics alone, so scrapes stay off the public port.
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
    // Identity (API.md "Identity"): an identity provider's keys instead of the shared secret, and claim checks.
    JWT_JWKS_URL: z.string().regex(/^https?:\/\/\S+$/, 'must be an http(s):// URL').optional(),
    JWT_ISSUER: optionalText,
    JWT_AUDIENCE: optionalText,
    JWT_ROLES_CLAIM: z.string().min(1).default('roles'),
    // Rate limits (API.md "Limits").
    RATE_LIMIT_ISSUE_PER_SECOND: rate(5),
    RATE_LIMIT_ISSUE_BURST: intFrom(1, 1_000_000, 10),
    RATE_LIMIT_ISSUE_PER_IP_PER_SECOND: rate(0),
    RATE_LIMIT_USER_PER_SECOND: rate(20),
    RATE_LIMIT_ANON_PER_SECOND: rate(50),
    TRUST_PROXY: intFrom(0, 100, 0),
    // Limits at the edge (src/api/limits.ts); README "Security" says what a client sees at each.
    MAX_BODY_BYTES: intFrom(1024, 16 * 1024 * 1024, 64 * 1024),
    MAX_QUERY_TOKENS: intFrom(100, 1_000_000, 2000),
    MAX_CONNECTIONS: intFrom(1, 10_000_000, 50_000),
    HTTP_HEADERS_TIMEOUT_MS: intFrom(100, 600_000, 10_000),
    HTTP_REQUEST_TIMEOUT_MS: intFrom(100, 3_600_000, 30_000),
    WS_MAX_SUBSCRIPTIONS: intFrom(1, 10_000, 20),
    WS_MAX_CONNECTIONS_PER_USER: intFrom(1, 100_000, 10),
    WS_MAX_ANON_CONNECTIONS_PER_IP: intFrom(1, 10_000_000, 1000),
    WS_MAX_BACKLOG: intFrom(1, 100_000, 100),
    WS_PING_INTERVAL_MS: intFrom(100, 3_600_000, 30_000),
    INTROSPECTION: z.enum(['true', 'false']).default('true'),
    PLAYGROUND: z.enum(['true', 'false']).default('true'),
  })
  .superRefine((env, ctx) => {
    if (env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS' });
    }
    if (env.CONSUMER_DEAD_AFTER_MS < 2 * env.CONSUMER_HEARTBEAT_MS) {
      // One late heartbeat must not make a live consumer look dead.
      ctx.addIssue({ code: 'custom', path: ['CONSUMER_DEAD_AFTER_MS'], message: 'must be at least twice CONSUMER_HEARTBEAT_MS' });
    }
    if (env.NODE_ENV === 'production' && !env.JWT_JWKS_URL && (!env.JWT_SECRET || env.JWT_SECRET === DEV_JWT_SECRET)) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'is required when NODE_ENV=production (and not the development secret)' });
    }
  });

/** Every variable the service reads, for the test that keeps README and .env.example in step with it. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

export interface Config {
  /** Only NODE_ENV=development shows stack traces and internal messages to clients. */
  development: boolean;
  port: number;
  host: string;
  databaseUrl: string;
  redisUrl: string;
  redisKeyPrefix: string;
  /** Seed nodes of a Redis Cluster; when set, the service runs against the cluster and redisUrl is not used. */
  redisClusterNodes: { host: string; port: number }[] | null;
  /** Replicas that must hold a reservation (or an admin write) before it is acknowledged (Redis WAIT). */
  redisWaitReplicas: number;
  redisWaitTimeoutMs: number;
  jwtSecret: string;
  jwtSecretIsDefault: boolean;
  role: 'api' | 'consumer' | 'all';
  logLevel: string;
  migrate: boolean;
  /** The consumer's settings, as it takes them (the host is the process's own). */
  consumer: Omit<ConsumerOptions, 'host'>;
  statusTtlSeconds: number;
  shutdownTimeoutMs: number;
  /** How often every process checks that PostgreSQL and Redis agree on the promotions, and repairs them. */
  reconcileIntervalMs: number;
  /** promotionStock: at most this many updates a second per watcher (one feed read per tick of 1/rate s). */
  stockUpdatesPerSecond: number;
  /** Browser origins allowed to call /graphql: '*' (tokens travel in a header, never in cookies) or a list. */
  corsOrigins: '*' | string[];
  /** Extra request headers allowed by CORS, lower case (CORS_ALLOW_HEADERS). */
  corsAllowHeaders: string[];
  /** When set, /metrics is served on this port only, and the public port answers 404 for it. */
  metricsPort: number | null;
  jwt: { jwksUrl?: string; issuer?: string; audience?: string; rolesClaim: string };
  /** Calls a second (0: off). issue*: inside the reservation script; user/anon: at the edge (api/rate-limits.ts). */
  rateLimits: { issuePerSecond: number; issueBurst: number; issuePerIpPerSecond: number; userPerSecond: number; anonPerSecond: number };
  /** Proxies in front of the service that append to X-Forwarded-For. */
  trustProxy: number;
  limits: EdgeLimits;
}

/** What one client may ask of this process; each bound is enforced at the edge (src/api/limits.ts). */
export interface EdgeLimits {
  maxBodyBytes: number;
  maxQueryTokens: number;
  maxConnections: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  wsMaxSubscriptions: number;
  wsMaxConnectionsPerUser: number;
  wsMaxAnonConnectionsPerIp: number;
  /** Results of one subscription waiting for a slow socket; past it the connection is closed (4503). */
  wsMaxBacklog: number;
  wsPingIntervalMs: number;
  introspection: boolean;
  playground: boolean;
}

export class ConfigError extends Error {}

/** The only reader of process.env. Throws a ConfigError whose message is one line naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = issue?.path.join('.') ?? 'environment';
    throw new ConfigError(`Invalid configuration: ${name} ${issue?.message ?? 'is invalid'}`);
  }
  const e = parsed.data;
  return {
    development: e.NODE_ENV === 'development',
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    redisClusterNodes: e.REDIS_CLUSTER_NODES
      ? e.REDIS_CLUSTER_NODES.split(',').map((node) => {
          const at = node.lastIndexOf(':');
          return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
        })
      : null,
    redisWaitReplicas: e.REDIS_WAIT_REPLICAS,
    redisWaitTimeoutMs: e.REDIS_WAIT_TIMEOUT_MS,
    jwtSecret: e.JWT_SECRET ?? DEV_JWT_SECRET,
    jwtSecretIsDefault: e.JWT_SECRET === undefined,
    role: e.ROLE,
    logLevel: e.LOG_LEVEL,
    migrate: e.MIGRATE === 'true',
    consumer: {
      consumerName: e.CONSUMER_NAME,
      batchSize: e.CONSUMER_BATCH_SIZE,
      blockMs: e.CONSUMER_BLOCK_MS,
      heartbeatMs: e.CONSUMER_HEARTBEAT_MS,
      deadAfterMs: e.CONSUMER_DEAD_AFTER_MS,
      maxDeliveries: e.CONSUMER_MAX_DELIVERIES,
      maxBackoffMs: e.CONSUMER_MAX_BACKOFF_MS,
    },
    statusTtlSeconds: e.STATUS_TTL_SECONDS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    stockUpdatesPerSecond: e.STOCK_UPDATES_PER_SECOND,
    corsOrigins: e.CORS_ORIGINS === '*' ? '*' : e.CORS_ORIGINS.split(','),
    corsAllowHeaders: e.CORS_ALLOW_HEADERS ? e.CORS_ALLOW_HEADERS.split(',').map((h) => h.trim().toLowerCase()) : [],
    metricsPort: e.METRICS_PORT ?? null,
    jwt: { jwksUrl: e.JWT_JWKS_URL, issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE, rolesClaim: e.JWT_ROLES_CLAIM },
    rateLimits: {
      issuePerSecond: e.RATE_LIMIT_ISSUE_PER_SECOND,
      issueBurst: e.RATE_LIMIT_ISSUE_BURST,
      issuePerIpPerSecond: e.RATE_LIMIT_ISSUE_PER_IP_PER_SECOND,
      userPerSecond: e.RATE_LIMIT_USER_PER_SECOND,
      anonPerSecond: e.RATE_LIMIT_ANON_PER_SECOND,
    },
    trustProxy: e.TRUST_PROXY,
    limits: {
      maxBodyBytes: e.MAX_BODY_BYTES,
      maxQueryTokens: e.MAX_QUERY_TOKENS,
      maxConnections: e.MAX_CONNECTIONS,
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      wsMaxSubscriptions: e.WS_MAX_SUBSCRIPTIONS,
      wsMaxConnectionsPerUser: e.WS_MAX_CONNECTIONS_PER_USER,
      wsMaxAnonConnectionsPerIp: e.WS_MAX_ANON_CONNECTIONS_PER_IP,
      wsMaxBacklog: e.WS_MAX_BACKLOG,
      wsPingIntervalMs: e.WS_PING_INTERVAL_MS,
      introspection: e.INTROSPECTION === 'true',
      playground: e.PLAYGROUND === 'true',
    },
  };
}
