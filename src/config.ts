import { z } from 'zod';

const DEV_JWT_SECRET = 'dev-only-secret-change-me-0123456789abcdef';

const intFrom = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

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
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    ROLE: z.enum(['api', 'consumer', 'all']).default('all'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    MIGRATE: z.enum(['true', 'false']).default('true'),
    CONSUMER_BATCH_SIZE: intFrom(1, 5000, 500),
    CONSUMER_BLOCK_MS: intFrom(10, 60_000, 1000),
    CONSUMER_CLAIM_IDLE_MS: intFrom(1000, 3_600_000, 30_000),
    CONSUMER_MAX_BACKOFF_MS: intFrom(10, 600_000, 5000),
    STATUS_TTL_SECONDS: intFrom(3600, 90 * 86400, 7 * 86400),
    SHUTDOWN_TIMEOUT_MS: intFrom(100, 60_000, 8000),
    CORS_ORIGINS: z
      .string()
      .regex(/^(\*|https?:\/\/[^\s,]+(,https?:\/\/[^\s,]+)*)$/, 'must be * or a comma-separated list of http(s) origins')
      .default('*'),
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
    if (env.NODE_ENV === 'production' && (!env.JWT_SECRET || env.JWT_SECRET === DEV_JWT_SECRET)) {
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
  jwtSecret: string;
  jwtSecretIsDefault: boolean;
  role: 'api' | 'consumer' | 'all';
  logLevel: string;
  migrate: boolean;
  consumer: { batchSize: number; blockMs: number; claimIdleMs: number; maxBackoffMs: number };
  statusTtlSeconds: number;
  shutdownTimeoutMs: number;
  /** Browser origins allowed to call /graphql: '*' (tokens travel in a header, never in cookies) or a list. */
  corsOrigins: '*' | string[];
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
    jwtSecret: e.JWT_SECRET ?? DEV_JWT_SECRET,
    jwtSecretIsDefault: e.JWT_SECRET === undefined,
    role: e.ROLE,
    logLevel: e.LOG_LEVEL,
    migrate: e.MIGRATE === 'true',
    consumer: {
      batchSize: e.CONSUMER_BATCH_SIZE,
      blockMs: e.CONSUMER_BLOCK_MS,
      claimIdleMs: e.CONSUMER_CLAIM_IDLE_MS,
      maxBackoffMs: e.CONSUMER_MAX_BACKOFF_MS,
    },
    statusTtlSeconds: e.STATUS_TTL_SECONDS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    corsOrigins: e.CORS_ORIGINS === '*' ? '*' : e.CORS_ORIGINS.split(','),
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
