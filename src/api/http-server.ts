import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeaderMap, type ApolloServer } from '@apollo/server';
import type { EdgeLimits } from '../config';
import { UnavailableError, UnauthenticatedError } from '../domain/errors';
import type { Caller } from '../domain/types';
import type { Authenticator } from './auth';
import type { GraphQLContext } from './context';
import type { FastPath, GraphQLAnswer } from './fast-path';
import type { AccessLog, HttpExchange } from '../ops/access-log';
import { graphiqlPage } from './graphiql';
import { acceptsGzip, sendJson, varyOnEncoding } from './http-responses';
import { serveDashboard } from '../web/dashboard';
import { refuseWhole, type RateLimits } from './rate-limits';

export interface Readiness {
  ok: boolean;
  checks: Record<string, string>;
}

export interface HttpDeps {
  /** null when this process runs the consumer only: then /graphql is not served. */
  graphql: {
    apollo: ApolloServer<GraphQLContext>;
    fastPath: FastPath;
    authenticator: Authenticator;
    context: (caller: Caller | null, clientIp: string | null) => GraphQLContext;
  } | null;
  /** Rate limits kept in Redis (rate-limits.ts). */
  rateLimits: RateLimits;
  readiness: () => Promise<Readiness>;
  /** null when /metrics is served on a port of its own (METRICS_PORT): then the public port answers 404. */
  metrics: MetricsText | null;
  /** Logs and counts every request (ops/access-log.ts); internal errors go to it too. */
  accessLog: AccessLog;
  corsOrigins: '*' | string[];
  /** Request headers allowed besides the default ones (CORS_ALLOW_HEADERS). */
  corsAllowHeaders: string[];
  /** Size bounds and the playground switch (limits.ts). */
  limits: Pick<EdgeLimits, 'maxBodyBytes' | 'playground'>;
}

export interface MetricsText {
  contentType: string;
  text: () => Promise<string>;
}

/**
 * Where every GraphQL answer (Apollo's or the fast path's) is written. With its length known the head and body
 * leave in one write; without it node would send the body chunked, in a vectored write of three buffers.
 */
function finish(res: ServerResponse, answer: GraphQLAnswer, exchange: HttpExchange): void {
  exchange.answered = true;
  exchange.code = answer.code ?? null;
  if (answer.operationName !== undefined) exchange.operation = answer.operationName;
  if (answer.issue) exchange.issue = true;
  for (const [name, value] of answer.headers) res.setHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(answer.body));
  res.writeHead(answer.status);
  res.end(answer.body);
}

class BodyTooLarge extends Error {}

/** The body as text. Past maxBytes it fails at once and the rest is read and dropped. */
function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (tooLarge) return;
      if (size > maxBytes) {
        tooLarge = true;
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!tooLarge) resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

/** What browsers send to a GraphQL API: Apollo Client's client name and version, request ids, tracing (W3C, Sentry). */
const CORS_ALLOW_HEADERS = [
  'authorization',
  'content-type',
  'apollo-require-preflight',
  'x-apollo-operation-name',
  'apollographql-client-name',
  'apollographql-client-version',
  'x-request-id',
  'baggage',
  'sentry-trace',
];

const corsPreflight = (extra: string[]) => ({
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': [...new Set([...CORS_ALLOW_HEADERS, ...extra])].join(', '),
  'access-control-max-age': '86400',
});

/** Headers a browser script may read: when to retry a refusal (429, 503), and the request's id for support. */
const CORS_EXPOSE = 'retry-after, x-request-id';

/**
 * Web apps on other origins call /graphql with a bearer token (no cookies), so CORS needs no credentials.
 * Set before any answer is written, so every response of /graphql carries it: Apollo's, and the early refusals.
 */
function allowOrigin(req: IncomingMessage, res: ServerResponse, origins: '*' | string[]): void {
  const origin = req.headers.origin;
  if (!origin) return;
  if (origins === '*') res.setHeader('access-control-allow-origin', '*');
  else if (origins.includes(origin)) {
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'origin');
  } else return;
  res.setHeader('access-control-expose-headers', CORS_EXPOSE);
}

function wantsHtml(req: IncomingMessage): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

/**
 * A plain node:http handler around Apollo's executeHTTPGraphQLRequest: the per-request work on the hot
 * path is reading the body, one cached token check and Apollo itself (express would halve the throughput).
 */
export function createRequestHandler(deps: HttpDeps): RequestListener {
  const preflight = corsPreflight(deps.corsAllowHeaders);
  /** Anonymous traffic from one address over its rate: refused whole, before any other work. */
  async function anonymousRefused(res: ServerResponse, ip: string, exchange: HttpExchange): Promise<boolean> {
    const wait = await deps.rateLimits.anonymous(ip);
    if (wait === 0) return false;
    exchange.code = 'RATE_LIMITED';
    refuseWhole(res, 429, 'RATE_LIMITED', 'Too many requests from this address: try again later', wait);
    return true;
  }

  async function handleGraphQL(req: IncomingMessage, res: ServerResponse, search: string, ip: string, exchange: HttpExchange): Promise<void> {
    const graphql = deps.graphql;
    if (!graphql) return sendJson(res, 404, { error: 'this process runs with ROLE=consumer: no GraphQL here' });
    if (req.method === 'OPTIONS') {
      res.writeHead(204, preflight);
      res.end();
      return;
    }
    if (wantsHtml(req) && !new URLSearchParams(search).has('query')) {
      if (!deps.limits.playground) return sendJson(res, 404, { error: 'not found' });
      const page = graphiqlPage();
      const gzip = acceptsGzip(req.headers['accept-encoding']);
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-cache',
        vary: varyOnEncoding(res),
        ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      });
      res.end(gzip ? page.gzipped : page.html);
      return;
    }

    let caller: Caller | null;
    try {
      caller = await graphql.authenticator.fromAuthorization(req.headers.authorization);
    } catch (error) {
      if (error instanceof UnavailableError) {
        exchange.code = 'SERVICE_UNAVAILABLE';
        return refuseWhole(res, 503, 'SERVICE_UNAVAILABLE', error.message, error.retryAfterMs);
      }
      if (!(error instanceof UnauthenticatedError)) throw error;
      exchange.code = 'UNAUTHENTICATED';
      // A bad token earns no more than no token: it counts against the address's anonymous rate.
      if (await anonymousRefused(res, ip, exchange)) return;
      return sendJson(res, 401, { errors: [{ message: error.message, extensions: { code: 'UNAUTHENTICATED' } }] });
    }
    exchange.user = caller?.userId ?? null;

    let body: unknown;
    if (req.method === 'POST') {
      let raw: string;
      try {
        raw = await readBody(req, deps.limits.maxBodyBytes);
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error;
        exchange.code = 'BAD_USER_INPUT';
        const message = `Request body is larger than ${deps.limits.maxBodyBytes} bytes`;
        return sendJson(res, 413, { errors: [{ message, extensions: { code: 'BAD_USER_INPUT', field: 'body' } }] }, { connection: 'close' });
      }
      try {
        body = raw === '' ? {} : JSON.parse(raw);
      } catch {
        exchange.code = 'GRAPHQL_PARSE_FAILED';
        return sendJson(res, 400, { errors: [{ message: 'Request body is not valid JSON', extensions: { code: 'GRAPHQL_PARSE_FAILED' } }] });
      }
    }

    // A document already seen, POSTed as JSON, is answered by the fast path exactly as Apollo would answer it.
    if (body !== undefined) {
      const answer = await graphql.fastPath.answer(req.headers, body, caller, ip);
      if (answer) return finish(res, answer, exchange);
    }
    const headers = new HeaderMap();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const response = await graphql.apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: req.method ?? 'GET', headers, search, body },
      // The exchange rides in the context: the access plugin (graphql-server.ts) notes the operation and its code.
      context: async () => ({ ...graphql.context(caller, ip), exchange }),
    });
    if (response.body.kind === 'complete') {
      finish(res, { status: response.status ?? 200, headers: [...response.headers], body: response.body.string, code: exchange.code }, exchange);
    } else {
      exchange.answered = true;
      for (const [name, value] of response.headers) res.setHeader(name, value);
      res.writeHead(response.status ?? 200);
      for await (const chunk of response.body.asyncIterator) res.write(chunk);
      res.end();
    }
    // Only a document Apollo ran (200, or 429/503 from a refusal) may be one the fast path takes: a broken one is
    // neither parsed a second time nor kept, so a stream of them cannot push the known documents out.
    const status = response.status ?? 200;
    if (body !== undefined && (status === 200 || status === 429 || status === 503)) graphql.fastPath.learn(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, search: string, exchange: HttpExchange): Promise<void> {
    // Before anything is written, so every answer carries them: GraphQL's, the early refusals, the probes.
    allowOrigin(req, res, deps.corsOrigins);
    const ip = deps.rateLimits.clientIp(req);
    if (!req.headers.authorization && deps.rateLimits.appliesTo(path) && (await anonymousRefused(res, ip, exchange))) return;
    switch (path) {
      case '/graphql':
        return handleGraphQL(req, res, search, ip, exchange);
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz': {
        const readiness = await deps.readiness();
        return sendJson(res, readiness.ok ? 200 : 503, { status: readiness.ok ? 'ready' : 'not ready', ...readiness.checks });
      }
      case '/metrics':
        if (!deps.metrics) return sendJson(res, 404, { error: 'not found' });
        return sendMetrics(res, deps.metrics);
      case '/':
        if (deps.graphql && deps.limits.playground && wantsHtml(req)) {
          res.writeHead(302, { location: '/graphql' });
          res.end();
          return;
        }
        return sendJson(res, 404, { error: 'not found' });
      default:
        // The dashboard reads the GraphQL API, so it is served where /graphql is (not by ROLE=consumer).
        if (deps.graphql && serveDashboard(req, res, path)) return;
        return sendJson(res, 404, { error: 'not found' });
    }
  }

  const { accessLog } = deps;
  const failed = (req: IncomingMessage, res: ServerResponse, exchange: HttpExchange, error: unknown) => {
    accessLog.error(error, exchange.id);
    if (res.headersSent) res.destroy();
    else sendJson(res, 500, { errors: [{ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
    accessLog.end(req, res, exchange);
  };
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const exchange = accessLog.begin(req, res, path);
    // One reaction for both outcomes: a .catch().then() chain costs a second promise and microtask per request.
    handle(req, res, path, q < 0 ? '' : url.slice(q), exchange).then(
      () => accessLog.end(req, res, exchange),
      (error: unknown) => failed(req, res, exchange, error),
    );
  };
}

async function sendMetrics(res: ServerResponse, metrics: MetricsText): Promise<void> {
  const text = await metrics.text();
  res.writeHead(200, { 'content-type': metrics.contentType });
  res.end(text);
}

/** The handler of METRICS_PORT's server: /metrics only. */
export function createMetricsHandler(metrics: MetricsText, onError: (error: unknown) => void): RequestListener {
  return (req, res) => {
    if (req.url !== '/metrics' && !req.url?.startsWith('/metrics?')) return sendJson(res, 404, { error: 'not found' });
    sendMetrics(res, metrics).catch((error: unknown) => {
      onError(error);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'internal error' });
    });
  };
}

export function listeningPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
