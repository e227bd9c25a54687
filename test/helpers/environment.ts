import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { loadConfig, type Config } from '../../src/config';
import { migrate } from '../../src/db/migrate';

/**
 * Each test file gets its own PostgreSQL database and its own Redis key prefix, so files run in
 * parallel against the one local PostgreSQL and Redis. Tests talk to them for real: no mocks.
 */

const BASE_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestEnvironment {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  config(overrides?: Record<string, string>): Config;
  /** Drops the database and deletes every Redis key under the prefix. */
  cleanup(): Promise<void>;
}

function databaseUrl(name: string): string {
  const url = new URL(BASE_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function createTestEnvironment(label: string): Promise<TestEnvironment> {
  const id = `${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const name = `coupons_test_${id}`;
  const url = databaseUrl(name);
  await migrate(url); // creates the database, then applies prisma/migrations
  const prefix = `test:${id}:`;
  return {
    databaseUrl: url,
    redisUrl: TEST_REDIS_URL,
    prefix,
    config: (overrides = {}) =>
      loadConfig({
        DATABASE_URL: url,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_KEY_PREFIX: prefix,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'silent',
        JWT_SECRET: TEST_JWT_SECRET,
        CONSUMER_BLOCK_MS: '100',
        ...overrides,
      }),
    cleanup: async () => {
      await deleteKeys(TEST_REDIS_URL, prefix);
      await dropDatabase(name);
    },
  };
}

export const TEST_JWT_SECRET = 'test-secret-test-secret-test-secret-0123';

export async function deleteKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new Client({ connectionString: BASE_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** Polls until check() returns a value other than undefined, or fails after timeoutMs. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
