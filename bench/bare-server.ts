/**
 * The ceiling: a minimal node:http server that answers each POST with the service's own reservation
 * (RedisReservationStore.reserve → the issue.lua script), and nothing else: no GraphQL, no JWT, no consumer.
 * Started by run.ts as a child process so it has a core of its own; reports its port over IPC.
 *
 * Request body: {"userId":"..."}. Answer: the IssueResult as JSON (same `outcome` field as the service).
 * GET /count answers {"answered":n}, for the bench's progress line.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { newRequestId } from '../src/domain/identifiers';
import { connectRedis, createRedis } from '../src/redis/client';
import { RedisKeys } from '../src/redis/keys';
import { RedisReservationStore } from '../src/redis/reservation-store';

/** Sent to the parent once listening. */
export interface BareReady {
  port: number;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`bare-server: ${name} is required`);
  return value;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body);
}

async function main(): Promise<void> {
  const promotionId = required('BARE_PROMOTION_ID');
  const stock = Number(required('BARE_STOCK'));
  const perUserLimit = Number(required('BARE_PER_USER_LIMIT'));
  // Same client options, key layout and status TTL (the service's default STATUS_TTL_SECONDS) as the service.
  const redis = createRedis(required('BARE_REDIS_URL'), 'bench-bare');
  await connectRedis(redis);
  const store = new RedisReservationStore(redis, new RedisKeys(required('BARE_KEY_PREFIX')));

  const now = new Date();
  await store.setupPromotion(
    {
      id: promotionId,
      name: 'bench bare',
      totalStock: stock,
      perUserLimit,
      startsAt: new Date(now.getTime() - 1000),
      endsAt: new Date(now.getTime() + 3600_000),
      endedAt: null,
      createdAt: now,
    },
    0,
  );

  let answered = 0; // for the bench's progress line: GET /count
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/count') return send(res, 200, JSON.stringify({ answered }));
    if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, '{"status":"ok"}');
    if (req.method !== 'POST') return send(res, 405, '{"error":"POST only"}');
    readBody(req)
      .then(async (raw) => {
        const { userId } = JSON.parse(raw) as { userId?: unknown };
        if (typeof userId !== 'string') return send(res, 400, '{"error":"userId required"}');
        const result = await store.reserve({ promotionId, userId, requestId: newRequestId(promotionId), idempotencyKey: null });
        answered++;
        send(res, 200, JSON.stringify(result));
      })
      .catch((error: unknown) => send(res, 500, JSON.stringify({ error: String(error) })));
  });
  server.listen(0, '127.0.0.1', () => {
    const ready: BareReady = { port: (server.address() as AddressInfo).port };
    process.send?.(ready);
  });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    redis.quit().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent went away without stopping us: do not linger.
  process.on('disconnect', stop);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
