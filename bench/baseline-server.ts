/**
 * The two designs the service is compared with, as child processes serving the same `issueCoupon` mutation
 * (same name, arguments and answer shape) on the same stack as the service: node:http + Apollo Server's
 * executeHTTPGraphQLRequest, graphql-js, and the service's own Authenticator (HS256, cached per token).
 *
 *   BASELINE_MODE=sync-db  one PostgreSQL transaction per request:
 *                          UPDATE … SET remaining = remaining - 1 WHERE remaining > 0, then INSERT the coupon.
 *   BASELINE_MODE=seed     the original design: DECR the stock in Redis, RPUSH the request on a list; a
 *                          consumer pops 100 a second and stores them row by row.
 *
 * Tables of its own (schema bench_baseline of the bench database), keys under BASELINE_KEY_PREFIX.
 * GET /count answers {"answered":n,"stored":n,"backlog":n} for the bench's progress line and drain figures.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap } from '@apollo/server';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { Authenticator } from '../src/api/auth';

export interface BaselineReady {
  port: number;
}

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`baseline-server: ${name} is required`);
  return value;
};

const mode = env('BASELINE_MODE');
const promotionId = env('BASELINE_PROMOTION_ID');
const stock = Number(env('BASELINE_STOCK'));
const prefix = env('BASELINE_KEY_PREFIX');
/** The seed consumer's pace: it popped 100 requests a second and stored them one by one. */
const SEED_BATCH = 100;
const SEED_INTERVAL_MS = 1000;

const typeDefs = `#graphql
  enum IssueOutcome { QUEUED SOLD_OUT ALREADY_REQUESTED NOT_FOUND NOT_STARTED ENDED }
  type IssueCouponPayload { outcome: IssueOutcome! requestId: ID position: Int remainingStock: Int! }
  type Query { ok: Boolean! }
  type Mutation { issueCoupon(promotionId: ID!, idempotencyKey: String): IssueCouponPayload! }
`;

interface Payload {
  outcome: 'QUEUED' | 'SOLD_OUT' | 'NOT_FOUND';
  requestId: string | null;
  position: number | null;
  remainingStock: number;
}
interface Context {
  userId: string | null;
}

let answered = 0;
let stored = 0;
let stopping = false;

async function main(): Promise<void> {
  const pool = new Pool({ connectionString: env('BASELINE_DATABASE_URL'), max: 10 });
  await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_baseline;
    CREATE TABLE IF NOT EXISTS bench_baseline.promotions (id text PRIMARY KEY, remaining int NOT NULL);
    CREATE TABLE IF NOT EXISTS bench_baseline.coupons (
      id bigserial PRIMARY KEY, promotion_id text NOT NULL, user_id text NOT NULL, request_id text NOT NULL UNIQUE,
      issued_at timestamptz NOT NULL DEFAULT now());`);
  await pool.query('DELETE FROM bench_baseline.coupons WHERE promotion_id = $1', [promotionId]);
  await pool.query('INSERT INTO bench_baseline.promotions (id, remaining) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET remaining = $2', [promotionId, stock]);

  const redis = new Redis(env('BASELINE_REDIS_URL'), { maxRetriesPerRequest: 3 });
  const stockKey = `${prefix}stock`;
  const queueKey = `${prefix}queue`;
  await redis.set(stockKey, stock);
  await redis.del(queueKey);

  const syncDb = async (userId: string): Promise<Payload> => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const updated = await client.query<{ remaining: number }>(
        'UPDATE bench_baseline.promotions SET remaining = remaining - 1 WHERE id = $1 AND remaining > 0 RETURNING remaining',
        [promotionId],
      );
      const remaining = updated.rows[0]?.remaining;
      if (remaining === undefined) {
        await client.query('ROLLBACK');
        return { outcome: 'SOLD_OUT', requestId: null, position: null, remainingStock: 0 };
      }
      const requestId = randomUUID();
      await client.query('INSERT INTO bench_baseline.coupons (promotion_id, user_id, request_id) VALUES ($1, $2, $3)', [promotionId, userId, requestId]);
      await client.query('COMMIT');
      return { outcome: 'QUEUED', requestId, position: stock - remaining, remainingStock: remaining };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  };

  const seed = async (userId: string): Promise<Payload> => {
    const remaining = await redis.decr(stockKey);
    if (remaining < 0) return { outcome: 'SOLD_OUT', requestId: null, position: null, remainingStock: 0 };
    const requestId = randomUUID();
    await redis.rpush(queueKey, JSON.stringify({ requestId, userId }));
    return { outcome: 'QUEUED', requestId, position: stock - remaining, remainingStock: remaining };
  };

  if (mode === 'seed') {
    // One batch a second at most, each row its own INSERT; a slow batch delays the next rather than overlapping.
    const consume = async (): Promise<void> => {
      if (stopping) return;
      const batch = (await redis.lpop(queueKey, SEED_BATCH)) ?? [];
      for (const item of batch) {
        const { requestId, userId } = JSON.parse(item) as { requestId: string; userId: string };
        await pool.query('INSERT INTO bench_baseline.coupons (promotion_id, user_id, request_id) VALUES ($1, $2, $3)', [promotionId, userId, requestId]);
        stored++;
      }
      schedule();
    };
    // An error while stopping (the pool already ended) is not worth reporting.
    const schedule = () => setTimeout(() => void consume().catch((e: unknown) => stopping || console.error(e)), SEED_INTERVAL_MS);
    schedule();
  } else if (mode !== 'sync-db') {
    throw new Error(`baseline-server: unknown BASELINE_MODE ${mode}`);
  }
  const issue = mode === 'seed' ? seed : syncDb;

  const auth = new Authenticator({ secret: env('BASELINE_JWT_SECRET') });
  const apollo = new ApolloServer<Context>({
    typeDefs,
    resolvers: {
      Query: { ok: () => true },
      Mutation: {
        issueCoupon: async (_: unknown, args: { promotionId: string }, ctx: Context) => {
          if (ctx.userId === null) throw new Error('UNAUTHENTICATED');
          if (args.promotionId !== promotionId) return { outcome: 'NOT_FOUND', requestId: null, position: null, remainingStock: 0 };
          const payload = await issue(ctx.userId);
          answered++;
          return payload;
        },
      },
    },
  });
  await apollo.start();

  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  const send = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/count') {
      void redis.llen(queueKey).then(
        (backlog) => send(res, 200, JSON.stringify({ answered, stored, backlog: mode === 'seed' ? backlog : 0 })),
        (e: unknown) => send(res, 500, JSON.stringify({ error: String(e) })),
      );
      return;
    }
    if (path === '/healthz') return send(res, 200, '{"status":"ok"}');
    if (path !== '/graphql' || req.method !== 'POST') return send(res, 404, '{"error":"POST /graphql"}');
    (async () => {
      const body = JSON.parse(await readBody(req)) as unknown;
      const caller = await auth.fromAuthorization(req.headers.authorization);
      const headers = new HeaderMap();
      for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(name, value);
      const response = await apollo.executeHTTPGraphQLRequest({
        httpGraphQLRequest: { method: 'POST', headers, search: '', body },
        context: async () => ({ userId: caller?.userId ?? null }),
      });
      for (const [name, value] of response.headers) res.setHeader(name, value);
      res.writeHead(response.status ?? 200);
      res.end(response.body.kind === 'complete' ? response.body.string : '');
    })().catch((error: unknown) => send(res, 500, JSON.stringify({ errors: [{ message: String(error) }] })));
  });
  server.listen(0, '127.0.0.1', () => {
    const ready: BaselineReady = { port: (server.address() as AddressInfo).port };
    process.send?.(ready);
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    void Promise.allSettled([redis.quit(), pool.end()]).finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
