import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import {
  CouponIssuedDocument,
  IssuanceDocument,
  IssueCouponDocument,
  type IssuanceStateFragment,
  type IssueCouponMutation,
} from '../generated/graphql';

/**
 * A coupon client for Node 20, React Native and browsers: queries and mutations over HTTP (`fetch`), the
 * confirmation over the WebSocket (`graphql-ws`). What it adds to a bare `createClient`:
 * - the token is read for every connection (`connectionParams` is a function), and after a 4403 close
 *   (expired or refused token) a fresh one is asked for before reconnecting; a fresh token refused again
 *   stops the client (the user must sign in), so it never loops on 4403;
 * - reconnects on any dropped or refused connection (a restarting server, a lost network, 4503), with
 *   exponential backoff and jitter; subscriptions still open are sent again on the new socket, and
 *   `couponIssued(requestId)` replays a final state that happened while the client was away;
 * - `issueCoupon` retried only with one idempotency key per intent, honouring `retryAfterMs` (429, 503).
 */

export type TokenProvider = (options: { forceRefresh: boolean }) => Promise<string>;

export interface CouponClientOptions {
  /** The GraphQL endpoint, e.g. `https://coupons.example.com/graphql`; the WebSocket uses the same path. */
  url: string;
  /** A valid access token; with `forceRefresh`, a new one (the server refused the last one). */
  getToken: TokenProvider;
  /** Node: `WebSocket` from the `ws` package. React Native and browsers: leave unset (the global one). */
  webSocketImpl?: unknown;
  /** Reconnections in a row before giving up (the count starts again after each successful connection). */
  retryAttempts?: number;
  /** Backoff before reconnect n (from 0): a random delay in [½, 1] × min(maxDelayMs, baseDelayMs × 2ⁿ). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** HTTP attempts of one `issueCoupon` (network errors, 429, 503) before giving up. */
  httpAttempts?: number;
  /** Called on every socket close (observability: count 4403s, log reconnects). */
  onClose?: (code: number, reason: string) => void;
  fetch?: typeof fetch;
  random?: () => number;
}

export type IssueResult = IssueCouponMutation['issueCoupon'];
export type FinalIssuance = IssuanceStateFragment;

/** A GraphQL error the client does not retry, with the service's `extensions.code`. */
export class CouponClientError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'CouponClientError';
  }
}

const FORBIDDEN = 4403;
/** Worth asking again after a wait: the service's own codes, and a proxy's answers while the service restarts. */
const RETRYABLE_CODES = new Set(['RATE_LIMITED', 'SERVICE_UNAVAILABLE', 'HTTP_502', 'HTTP_503', 'HTTP_504']);

interface GraphQLBody<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; retryAfterMs?: number } }[];
}

export class CouponClient {
  private ws: Client | undefined;
  private readonly options: Required<Omit<CouponClientOptions, 'webSocketImpl' | 'onClose'>> & Pick<CouponClientOptions, 'webSocketImpl' | 'onClose'>;
  private refreshOnConnect = false;
  private forbiddenInARow = 0;

  constructor(options: CouponClientOptions) {
    this.options = { retryAttempts: 10, baseDelayMs: 500, maxDelayMs: 30_000, httpAttempts: 5, fetch: globalThis.fetch, random: Math.random, ...options };
  }

  /**
   * Asks for a coupon. Retries network errors, 429 and 503 with the same idempotency key, so a lost answer
   * is asked again without reserving twice: a repeat returns the first call's `QUEUED` payload.
   */
  async issueCoupon(promotionId: string, idempotencyKey: string = newIdempotencyKey()): Promise<IssueResult> {
    const data = await this.request(IssueCouponDocument, { promotionId, idempotencyKey }, true);
    return data.issueCoupon;
  }

  /** The request's state over HTTP (`null`: not the caller's, or unknown). */
  async issuance(requestId: string): Promise<FinalIssuance | null> {
    return (await this.request(IssuanceDocument, { requestId }, false)).issuance;
  }

  /**
   * Resolves with the request's final state (`ISSUED` or `FAILED`) from `couponIssued(requestId)`, across
   * reconnects. If the socket cannot be kept (attempts exhausted), asks `issuance` once over HTTP.
   */
  waitForIssuance(requestId: string): Promise<FinalIssuance> {
    return new Promise<FinalIssuance>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        fn();
      };
      this.socket().subscribe<{ couponIssued: FinalIssuance }>(
        { query: print(CouponIssuedDocument), variables: { requestId } },
        {
          next: (result) => {
            const error = result.errors?.[0];
            if (error) return settle(() => reject(new CouponClientError(error.message, String(error.extensions?.code ?? 'UNKNOWN'))));
            const data = result.data;
            if (data) settle(() => resolve(data.couponIssued));
          },
          error: (cause) => {
            if (settled) return;
            void this.issuance(requestId).then(
              (state) => settle(() => (state && state.status !== 'QUEUED' ? resolve(state) : reject(asError(cause)))),
              () => settle(() => reject(asError(cause))),
            );
          },
          complete: () => settle(() => reject(new CouponClientError(`couponIssued(${requestId}) completed without a final state`, 'INCOMPLETE'))),
        },
      );
    });
  }

  /** The socket client, made on first use: an app that only sends HTTP requests needs no WebSocket. */
  private socket(): Client {
    return (this.ws ??= createClient({
      url: this.options.url.replace(/^http/, 'ws'),
      webSocketImpl: this.options.webSocketImpl,
      lazy: true,
      retryAttempts: this.options.retryAttempts,
      // Read on every (re)connection: a refreshed token reaches the next socket.
      connectionParams: async () => {
        const forceRefresh = this.refreshOnConnect;
        this.refreshOnConnect = false;
        return { authorization: `Bearer ${await this.options.getToken({ forceRefresh })}` };
      },
      // graphql-ws retries only close events by default: a refused connection (a restarting server) would end
      // every subscription. Retry those too; after a 4403, only once with a fresh token.
      shouldRetry: (errOrClose) => !(isClose(errOrClose) && errOrClose.code === FORBIDDEN && this.forbiddenInARow > 1),
      retryWait: (retries) => this.sleep(this.backoff(retries)),
      on: {
        connected: () => (this.forbiddenInARow = 0),
        closed: (event) => {
          if (!isClose(event)) return;
          if (event.code === FORBIDDEN) {
            this.forbiddenInARow += 1;
            this.refreshOnConnect = true;
          }
          this.options.onClose?.(event.code, event.reason);
        },
      },
    }));
  }

  /** Closes the socket and ends every subscription. */
  async close(): Promise<void> {
    await this.ws?.dispose();
  }

  private async request<T, V>(document: TypedDocumentNode<T, V>, variables: V, retry: boolean): Promise<T> {
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const last = !retry || attempt >= this.options.httpAttempts;
      const token = await this.options.getToken({ forceRefresh: refreshed });
      let response: Response;
      try {
        response = await this.options.fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: print(document), variables }),
        });
      } catch (error) {
        if (last) throw error;
        await this.sleep(this.backoff(attempt - 1)); // the answer may be lost, not the call: same key next time
        continue;
      }
      const body = (await response.json().catch(() => ({}))) as GraphQLBody<T>;
      const error = body.errors?.[0];
      if (!error && body.data) return body.data;
      const code = String(error?.extensions?.code ?? `HTTP_${response.status}`);
      if (code === 'UNAUTHENTICATED' && !refreshed) {
        refreshed = true; // one fresh token, then the error stands
        continue;
      }
      if (!RETRYABLE_CODES.has(code) || last) throw new CouponClientError(error?.message ?? response.statusText, code);
      await this.sleep(retryAfter(error?.extensions?.retryAfterMs, response.headers.get('retry-after'), this.options.random()));
    }
  }

  private backoff(attempt: number): number {
    return backoffDelay(attempt, this.options.baseDelayMs, this.options.maxDelayMs, this.options.random());
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** Exponential backoff with jitter: a random delay in [½, 1] × min(maxMs, baseMs × 2^attempt). */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + (random * ceiling) / 2;
}

/**
 * The wait the server asked for, never less, plus up to half of it again at random: a crowd refused at one
 * instant does not come back at one instant.
 */
export function retryAfter(retryAfterMs: number | undefined, header: string | null, random: number): number {
  const asked = retryAfterMs ?? (header ? Number(header) * 1000 : NaN);
  const wait = Number.isFinite(asked) && asked > 0 ? asked : 1000;
  return wait + (random * wait) / 2;
}

/** One key per intent (a tap on "Get coupon"), reused by every retry of it. */
export function newIdempotencyKey(): string {
  const uuid = globalThis.crypto?.randomUUID?.();
  return uuid ?? Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
}

function isClose(value: unknown): value is { code: number; reason: string } {
  return typeof value === 'object' && value !== null && 'code' in value && 'reason' in value;
}

/** What ended a subscription: a closed socket, an `error` message (GraphQL errors, e.g. RATE_LIMITED), or a throw. */
function asError(cause: unknown): Error {
  if (cause instanceof Error) return cause;
  if (Array.isArray(cause) && cause.length > 0) {
    const first = cause[0] as { message?: string; extensions?: { code?: string } };
    return new CouponClientError(first.message ?? 'subscription refused', String(first.extensions?.code ?? 'UNKNOWN'));
  }
  if (isClose(cause)) return new CouponClientError(`socket closed: ${cause.code} ${cause.reason}`, `CLOSE_${cause.code}`);
  return new Error(String(cause));
}
