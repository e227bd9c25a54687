import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { HeaderMap, type ApolloServerPlugin } from '@apollo/server';
import { unwrapResolverError } from '@apollo/server/errors';
import { GraphQLError, Kind, type GraphQLFormattedError, type OperationDefinitionNode } from 'graphql';
import { RateLimitedError } from '../domain/errors';
import type { Caller } from '../domain/types';
import type { RedisKeys } from '../redis/keys';
import type { RedisRateLimiter } from '../redis/rate-limiter';
import type { GraphQLContext } from './context';

/**
 * Rate limits at the edge, in one place, called by every transport (HTTP requests, WebSocket upgrades and
 * subscribe messages), beside the size, time and connection bounds of limits.ts. The buckets live in Redis (redis/rate-limiter.ts), so every process shares them;
 * issueCoupon's own bucket is inside the reservation script (redis/lua/issue.lua), on the promotion's slot.
 */

export interface RateLimitsConfig {
  /** Operations other than issueCoupon, per signed-in user; 0 turns it off. */
  userPerSecond: number;
  /** Anonymous requests and WebSocket upgrades, per client IP, bursts of one second's worth; 0 turns it off. */
  anonPerSecond: number;
  /** How many proxies in front of the service append to X-Forwarded-For (0: the socket's address is the client). */
  trustProxy: number;
}

export type LimitKind = 'anonymous' | 'user' | 'issue';

/** Paths that must answer whoever asks: probes and scrapers poll them from few addresses. */
const UNLIMITED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The client's address: the socket's, or with `trustProxy` = N the N-th address from the right of
 * X-Forwarded-For (each trusted proxy appends the address it received the request from, so the rightmost N
 * entries are written by them and the one they name last is the client). A header with fewer entries than
 * proxies can only have been shortened on the way: its leftmost entry is the best there is.
 */
export function clientIp(req: Pick<IncomingMessage, 'headers' | 'socket'>, trustProxy: number): string {
  const socketIp = normalizeIp(req.socket.remoteAddress ?? '');
  if (trustProxy <= 0) return socketIp;
  const header = req.headers['x-forwarded-for'];
  const raw = Array.isArray(header) ? header.join(',') : (header ?? '');
  const hops = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (hops.length === 0) return socketIp;
  const picked = normalizeIp(hops[Math.max(0, hops.length - trustProxy)] as string);
  return isIP(picked) ? picked : socketIp;
}

/** IPv4 clients on a dual-stack socket appear as ::ffff:a.b.c.d: one client, one key. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * RATE_LIMITED for an operation refused before it ran. Over HTTP, Apollo answers an error thrown before
 * execution with the status and headers of `http` (and strips it); a WebSocket has no status to set.
 */
export function rateLimitedError(retryAfterMs: number, transport: 'http' | 'ws'): GraphQLError {
  const http = { status: 429, headers: new HeaderMap([['retry-after', retryAfterSeconds(retryAfterMs)]]) };
  return new GraphQLError('Rate limit exceeded: try again later', {
    extensions: { code: 'RATE_LIMITED', retryAfterMs, ...(transport === 'http' ? { http } : {}) },
  });
}

/** Codes that refuse a whole response, and its HTTP status (the first found wins). */
const REFUSALS: [code: string, status: 429 | 503][] = [
  ['SERVICE_UNAVAILABLE', 503],
  ['RATE_LIMITED', 429],
];

/** Bursts of one second's worth, and at least one call (a rate under 1 a second still lets one through). */
const oneSecondsWorth = (rate: number): number => Math.max(1, rate);

export const retryAfterSeconds = (ms: number): string => String(Math.max(1, Math.ceil(ms / 1000)));

/** A request refused whole, before any GraphQL ran: 429 (rate) or 503 (a dependency), with Retry-After (exposed to browsers by the CORS headers set before). */
export function refuseWhole(res: ServerResponse, status: 429 | 503, code: 'RATE_LIMITED' | 'SERVICE_UNAVAILABLE', message: string, retryAfterMs: number): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'retry-after': retryAfterSeconds(retryAfterMs),
  });
  res.end(JSON.stringify({ errors: [{ message, extensions: { code, retryAfterMs } }] }));
}

/** True when every root field is issueCoupon: that operation has its own bucket, in the reservation script. */
function onlyIssueCoupon(operation: OperationDefinitionNode): boolean {
  return (
    operation.operation === 'mutation' &&
    operation.selectionSet.selections.every(
      (s) => s.kind === Kind.FIELD && (s.name.value === 'issueCoupon' || s.name.value === '__typename'),
    )
  );
}

export class RateLimits {
  constructor(
    private readonly limiter: RedisRateLimiter,
    private readonly keys: RedisKeys,
    private readonly config: RateLimitsConfig,
    private readonly onRefused: (kind: LimitKind) => void = () => undefined,
  ) {}

  clientIp(req: Pick<IncomingMessage, 'headers' | 'socket'>): string {
    return clientIp(req, this.config.trustProxy);
  }

  /** Whether this path is rate-limited at all (probes and metrics never are). */
  appliesTo(path: string): boolean {
    return !UNLIMITED_PATHS.has(path);
  }

  /** An anonymous request or WebSocket upgrade from `ip`: 0 when it may go on, else ms to wait. */
  async anonymous(ip: string): Promise<number> {
    const rate = this.config.anonPerSecond;
    if (rate <= 0) return 0;
    const wait = await this.limiter.take(this.keys.anonBucket(ip), rate, oneSecondsWorth(rate));
    if (wait > 0) this.onRefused('anonymous');
    return wait;
  }

  /**
   * One operation (over HTTP, or a WebSocket subscribe): throws RATE_LIMITED when its bucket is empty. A
   * signed-in caller's is the user's: admins and merchants (back-end service accounts) are exempt, and so is an
   * operation made only of issueCoupon, which has a bucket of its own. An anonymous caller's is the address's
   * anonymous bucket: `anonymousIp` is given over WebSocket only, since an anonymous HTTP request was already
   * charged to it once at the edge (http-server.ts), and one socket may carry any number of operations.
   */
  async operation(caller: Caller | null, operation: OperationDefinitionNode, transport: 'http' | 'ws', anonymousIp: string | null = null): Promise<void> {
    if (onlyIssueCoupon(operation)) return;
    const wait = await this.takeToken(caller, anonymousIp);
    if (wait > 0) throw rateLimitedError(wait, transport);
  }

  /**
   * A document that never became an operation (it did not parse or validate) still costs the server its parse:
   * it takes a token too (the same one `operation` would), so a stream of broken documents is bounded like the rest.
   */
  async invalidDocument(caller: Caller | null, anonymousIp: string | null = null): Promise<void> {
    await this.takeToken(caller, anonymousIp);
  }

  /** 0 when the call may go on, else ms to wait; a refusal is counted. */
  private async takeToken(caller: Caller | null, anonymousIp: string | null): Promise<number> {
    if (!caller) return anonymousIp === null ? 0 : this.anonymous(anonymousIp);
    const rate = this.config.userPerSecond;
    if (rate <= 0 || caller.isAdmin || caller.isMerchant) return 0;
    const wait = await this.limiter.take(this.keys.userBucket(caller.userId), rate, oneSecondsWorth(rate));
    if (wait > 0) this.onRefused('user');
    return wait;
  }

  /** issueCoupon's refusals come from its bucket in the reservation script: counted as they leave, by any path. */
  countRefusals(errors: readonly unknown[]): void {
    for (const error of errors) if (unwrapResolverError(error) instanceof RateLimitedError) this.onRefused('issue');
  }

  /**
   * A response whose root fields produced no data because of a rate limit (issueCoupon refused by its bucket)
   * gets the status 429 with Retry-After; one refused because a dependency could not confirm in time
   * (SERVICE_UNAVAILABLE, such as a Redis replica not confirming a reservation) gets 503 with Retry-After. Any
   * data at all keeps it 200. Null when it is not such a response.
   */
  httpRefusal(
    data: Record<string, unknown> | null | undefined,
    errors: readonly GraphQLFormattedError[] | undefined,
  ): { status: 429 | 503; retryAfter: string } | null {
    if (!errors || (data && Object.values(data).some((v) => v !== null))) return null;
    for (const [code, status] of REFUSALS) {
      const waits = errors
        .filter((e) => e.extensions?.code === code)
        .map((e) => e.extensions?.retryAfterMs)
        .filter((ms): ms is number => typeof ms === 'number');
      if (waits.length > 0) return { status, retryAfter: retryAfterSeconds(Math.max(...waits)) };
    }
    return null;
  }

  /** The same checks as Apollo plugin hooks: each operation, broken documents, refusals, and the status. */
  plugin(): ApolloServerPlugin<GraphQLContext> {
    return {
      requestDidStart: async () => ({
        didResolveOperation: async ({ operation, contextValue }) => {
          if (operation) await this.operation(contextValue.caller, operation, 'http');
        },
        didEncounterErrors: async ({ operation, contextValue, errors }) => {
          if (!operation) await this.invalidDocument(contextValue.caller);
          this.countRefusals(errors);
        },
        willSendResponse: async ({ response }) => {
          if (response.body.kind !== 'single') return;
          const refusal = this.httpRefusal(response.body.singleResult.data, response.body.singleResult.errors);
          if (!refusal) return;
          response.http.status = refusal.status;
          response.http.headers.set('retry-after', refusal.retryAfter);
        },
      }),
    };
  }
}
