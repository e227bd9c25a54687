/**
 * What the benchmark needs to know from the service and its database: GraphQL calls made as an admin,
 * its /metrics counters, and the coupon rows it wrote (PostgreSQL is the source of truth once stored).
 */
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { signToken } from '../src/api/auth';
import { RedisKeys } from '../src/redis/keys';
import type { Cleanup } from './cleanup';

export const ISSUE_COUPON = 'mutation Issue($p: ID!) { issueCoupon(promotionId: $p) { outcome requestId position remainingStock } }';

const CREATE_PROMOTION = `mutation Create($input: CreatePromotionInput!) {
  createPromotion(input: $input) { id totalStock perUserLimit }
}`;

export async function createPromotion(
  baseUrl: string,
  adminToken: string,
  input: { name: string; totalStock: number; perUserLimit: number; endsAt: Date },
): Promise<string> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query: CREATE_PROMOTION, variables: { input: { ...input, endsAt: input.endsAt.toISOString() } } }),
  });
  const text = await response.text();
  const body = JSON.parse(text) as { data?: { createPromotion?: { id?: unknown } } | null };
  const id = body.data?.createPromotion?.id;
  if (!response.ok || typeof id !== 'string') throw new Error(`createPromotion failed (HTTP ${response.status}): ${text}`);
  return id;
}

export interface ServiceCounters {
  /** coupon_persisted_total: coupons this process stored and confirmed. */
  persisted: number;
  /** coupon_issue_outcomes_total{outcome="QUEUED"}: the QUEUED answers the service gave, all promotions. */
  queued: number;
  /** Mean of coupon_issue_to_confirmation_seconds (QUEUED → ISSUED), ms; null before any confirmation. */
  meanConfirmationMs: number | null;
}

export async function readCounters(baseUrl: string): Promise<ServiceCounters> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
  const confirmations = value(/^coupon_issue_to_confirmation_seconds_count (\S+)$/m);
  return {
    persisted: value(/^coupon_persisted_total (\S+)$/m),
    queued: value(/^coupon_issue_outcomes_total\{outcome="QUEUED"\} (\S+)$/m),
    meanConfirmationMs: confirmations > 0 ? (1000 * value(/^coupon_issue_to_confirmation_seconds_sum (\S+)$/m)) / confirmations : null,
  };
}

/**
 * Reservations made in a promotion: issue.lua increments its seq key once per QUEUED answer, so this is
 * the service's own count of them, including answers the load generator dropped at the end of a phase.
 */
export async function reservations(redis: Redis, keyPrefix: string, promotionId: string): Promise<number> {
  return Number((await redis.get(new RedisKeys(keyPrefix).promotion(promotionId).seq)) ?? 0);
}

export interface CouponRows {
  rows: number;
  /** Epoch ms of the last coupon row written (issued_at is the inserting transaction's time). */
  lastIssuedAtMs: number | null;
}

export async function couponRows(db: Client, promotionId: string): Promise<CouponRows> {
  const { rows } = await db.query<{ n: string; last: Date | null }>(
    'SELECT count(*) AS n, max(issued_at) AS last FROM coupons WHERE promotion_id = $1',
    [promotionId],
  );
  const row = rows[0];
  return { rows: Number(row?.n ?? 0), lastIssuedAtMs: row?.last ? row.last.getTime() : null };
}

/** The bench database name, checked so a mistyped URL can never empty someone else's database. */
export function benchDatabaseName(databaseUrl: string): string {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  if (!/bench/.test(name)) throw new Error(`refusing to use database "${name}": its name must contain "bench"`);
  return name;
}

/**
 * Empties the bench database's tables, when it exists. Done before the service starts, because the service
 * rebuilds the Redis state of every promotion it finds still running, and after, to leave nothing behind.
 */
export async function truncateBenchTables(databaseUrl: string): Promise<void> {
  benchDatabaseName(databaseUrl);
  const db = new Client({ connectionString: databaseUrl });
  try {
    await db.connect();
  } catch (error) {
    if ((error as { code?: string }).code === '3D000') return; // no database yet: the service creates it
    throw error;
  }
  try {
    await db.query('TRUNCATE coupons, promotions CASCADE'); // CASCADE: other tables reference promotions
  } catch (error) {
    if ((error as { code?: string }).code !== '42P01') throw error; // tables not migrated yet
  } finally {
    await db.end();
  }
}

/** Deletes every key of a run (SCAN, not KEYS, so that Redis keeps serving others meanwhile). */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length) deleted += await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  return deleted;
}

/**
 * The bench's Redis client and a clean bench database, both undone by cleanup: the keys under prefix deleted,
 * the tables emptied.
 */
export async function openBenchStores(redisUrl: string, databaseUrl: string, prefix: string, cleanup: Cleanup, log: (message: string) => void): Promise<Redis> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  cleanup.add('closing the Redis client', () => redis.quit());
  cleanup.add(`deleting Redis keys ${prefix}*`, async () => log(`deleted ${(await deleteKeysWithPrefix(redis, prefix)).toLocaleString('en-US')} Redis keys ${prefix}*`));
  await truncateBenchTables(databaseUrl);
  cleanup.add(`emptying database ${benchDatabaseName(databaseUrl)}`, () => truncateBenchTables(databaseUrl));
  return redis;
}

/**
 * An admin token and `Bearer` tokens of bench-user-0 … bench-user-(count - 1), signed up front (in batches, so a
 * large crowd does not hold them all in flight) so that neither the generator nor the sockets spend CPU on HMACs.
 */
export async function signBenchTokens(secret: string, count: number): Promise<{ admin: string; authorization: string[] }> {
  const admin = await signToken(secret, 'bench-admin', { admin: true, ttlSeconds: 3600 });
  const authorization: string[] = [];
  for (let i = 0; i < count; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, count - i) }, (_, k) => signToken(secret, `bench-user-${i + k}`, { ttlSeconds: 3600 }));
    authorization.push(...(await Promise.all(batch)).map((t) => `Bearer ${t}`));
  }
  return { admin, authorization };
}
