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
      shutdownTimeoutMs: 8000,
      reconcileIntervalMs: 5000,
      jwt: { jwksUrl: undefined, issuer: undefined, audience: undefined, rolesClaim: 'roles' },
      rateLimits: { issuePerSecond: 5, issueBurst: 10, issuePerIpPerSecond: 0, userPerSecond: 20, anonPerSecond: 50 },
      trustProxy: 0,
    });
    expect(c.consumer).toMatchObject({ heartbeatMs: 1000, deadAfterMs: 3000, maxDeliveries: 5 });
  });

  test('When a consumer read may block just under the stop budget, then it starts', () => {
    const c = loadConfig({ CONSUMER_BLOCK_MS: '19999', SHUTDOWN_TIMEOUT_MS: '20000', RECONCILE_INTERVAL_MS: '500' });

    expect(c.consumer.blockMs).toBe(19_999);
    expect(c.shutdownTimeoutMs).toBe(20_000);
    expect(c.reconcileIntervalMs).toBe(500);
  });

  test('When the limits and identity variables are set, then they are read as given (fractions and 0 for rates)', () => {
    const c = loadConfig({
      RATE_LIMIT_ISSUE_PER_SECOND: '0.5',
      RATE_LIMIT_ISSUE_BURST: '3',
      RATE_LIMIT_ISSUE_PER_IP_PER_SECOND: '30',
      RATE_LIMIT_USER_PER_SECOND: '0',
      RATE_LIMIT_ANON_PER_SECOND: '100',
      TRUST_PROXY: '2',
      JWT_JWKS_URL: 'https://id.example/.well-known/jwks.json',
      JWT_ISSUER: 'https://id.example/',
      JWT_AUDIENCE: 'coupons',
      JWT_ROLES_CLAIM: 'https://shop.example/roles',
    });

    expect(c.rateLimits).toEqual({ issuePerSecond: 0.5, issueBurst: 3, issuePerIpPerSecond: 30, userPerSecond: 0, anonPerSecond: 100 });
    expect(c.trustProxy).toBe(2);
    expect(c.jwt).toEqual({ jwksUrl: 'https://id.example/.well-known/jwks.json', issuer: 'https://id.example/', audience: 'coupons', rolesClaim: 'https://shop.example/roles' });
  });

  test('When NODE_ENV=production uses an identity provider\'s JWKS, then JWT_SECRET is not needed', () => {
    expect(loadConfig({ NODE_ENV: 'production', JWT_JWKS_URL: 'https://id.example/jwks' }).jwt.jwksUrl).toBe('https://id.example/jwks');
  });

  test('When REDIS_CLUSTER_NODES is set, then its seed nodes are read; unset, the single node of REDIS_URL is used', () => {
    const clustered = loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:6379,10.0.0.2:7000', REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '250' });
    expect(clustered.redisClusterNodes).toEqual([
      { host: 'redis-1', port: 6379 },
      { host: '10.0.0.2', port: 7000 },
    ]);
    expect([clustered.redisWaitReplicas, clustered.redisWaitTimeoutMs]).toEqual([1, 250]);
    const single = loadConfig({});
    expect([single.redisClusterNodes, single.redisWaitReplicas, single.redisWaitTimeoutMs]).toEqual([null, 0, 100]);
  });

  test.each([
    [{ REDIS_CLUSTER_NODES: 'redis-1' }, 'REDIS_CLUSTER_NODES'],
    [{ REDIS_CLUSTER_NODES: 'redis-1:6379,' }, 'REDIS_CLUSTER_NODES'],
    [{ REDIS_WAIT_REPLICAS: '-1' }, 'REDIS_WAIT_REPLICAS'],
    [{ REDIS_WAIT_TIMEOUT_MS: '0' }, 'REDIS_WAIT_TIMEOUT_MS'],
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
    [{ CONSUMER_HEARTBEAT_MS: '2000', CONSUMER_DEAD_AFTER_MS: '3000' }, 'CONSUMER_DEAD_AFTER_MS'],
    [{ CONSUMER_NAME: 'has space' }, 'CONSUMER_NAME'],
    [{ CONSUMER_MAX_DELIVERIES: '1' }, 'CONSUMER_MAX_DELIVERIES'],
    [{ RECONCILE_INTERVAL_MS: '100' }, 'RECONCILE_INTERVAL_MS'],
    [{ RECONCILE_INTERVAL_MS: 'often' }, 'RECONCILE_INTERVAL_MS'],
    [{ RATE_LIMIT_ISSUE_PER_SECOND: '-1' }, 'RATE_LIMIT_ISSUE_PER_SECOND'],
    [{ RATE_LIMIT_ISSUE_BURST: '0' }, 'RATE_LIMIT_ISSUE_BURST'],
    [{ RATE_LIMIT_ISSUE_PER_IP_PER_SECOND: 'lots' }, 'RATE_LIMIT_ISSUE_PER_IP_PER_SECOND'],
    [{ RATE_LIMIT_USER_PER_SECOND: '-5' }, 'RATE_LIMIT_USER_PER_SECOND'],
    [{ RATE_LIMIT_ANON_PER_SECOND: 'x' }, 'RATE_LIMIT_ANON_PER_SECOND'],
    [{ TRUST_PROXY: 'yes' }, 'TRUST_PROXY'],
    [{ JWT_JWKS_URL: 'id.example/jwks' }, 'JWT_JWKS_URL'],
    [{ JWT_ROLES_CLAIM: '' }, 'JWT_ROLES_CLAIM'],
    [{ JWT_ISSUER: '' }, 'JWT_ISSUER'],
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
