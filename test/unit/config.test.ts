import { ConfigError, loadConfig } from '../../src/config';

describe('config', () => {
  test('When nothing is set, then the documented defaults apply', () => {
    const c = loadConfig({});

    expect(c).toMatchObject({
      port: 4000,
      host: '127.0.0.1',
      databaseUrl: 'postgresql://postgres:postgres@127.0.0.1:5432/coupons',
      redisUrl: 'redis://127.0.0.1:6379',
      redisKeyPrefix: 'coupon:',
      role: 'all',
      logLevel: 'info',
      migrate: true,
      development: false,
      jwtSecretIsDefault: true,
    });
  });

  test.each([
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ ROLE: 'worker' }, 'ROLE'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ JWT_SECRET: 'short' }, 'JWT_SECRET'],
    [{ NODE_ENV: 'production' }, 'JWT_SECRET'],
    [{ NODE_ENV: 'production', JWT_SECRET: 'dev-only-secret-change-me-0123456789abcdef' }, 'JWT_SECRET'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ CORS_ORIGINS: 'shop.example' }, 'CORS_ORIGINS'],
    [{ MAX_BODY_BYTES: '10' }, 'MAX_BODY_BYTES'],
    [{ MAX_QUERY_TOKENS: 'many' }, 'MAX_QUERY_TOKENS'],
    [{ WS_MAX_SUBSCRIPTIONS: '0' }, 'WS_MAX_SUBSCRIPTIONS'],
    [{ HTTP_HEADERS_TIMEOUT_MS: '40000' }, 'HTTP_HEADERS_TIMEOUT_MS'],
    [{ INTROSPECTION: 'no' }, 'INTROSPECTION'],
  ])('When %j, then start-up stops with one line naming %s', (env, variable) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain(variable);
  });

  test('When nothing is set, then the limits are those of the contract', () => {
    expect(loadConfig({}).limits).toEqual({
      maxBodyBytes: 64 * 1024,
      maxQueryTokens: 2000,
      maxConnections: 50_000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      wsMaxSubscriptions: 20,
      wsMaxConnectionsPerUser: 10,
      wsMaxAnonConnectionsPerIp: 1000,
      wsMaxBacklog: 100,
      wsPingIntervalMs: 30_000,
      introspection: true,
      playground: true,
    });
  });

  test('When NODE_ENV=production has a secret, then it starts, without development error details', () => {
    const c = loadConfig({ NODE_ENV: 'production', JWT_SECRET: 's'.repeat(32) });

    expect(c.development).toBe(false);
    expect(c.jwtSecretIsDefault).toBe(false);
  });
});
