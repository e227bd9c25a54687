import type { Server } from 'node:http';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, createSourceEventStream, execute, getOperationAST, validate, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { WebSocketServer } from 'ws';
import type { EdgeLimits } from '../config';
import { UnavailableError } from '../domain/errors';
import { isLatestOnly } from '../domain/stock-feeds';
import type { Caller } from '../domain/types';
import type { Authenticator } from './auth';
import { assertOperationComplexity } from './complexity';
import type { GraphQLContext } from './context';
import { createErrorFormatter } from './errors';
import { FastPath } from './fast-path';
import {
  CLOSE_BACKLOG_OVERFLOW,
  CLOSE_TOO_MANY_CONNECTIONS,
  DocumentCache,
  WebSocketConnections,
  boundedBacklog,
  declaredVariables,
  isSubscription,
  latestOnly,
  SharedResults,
  parseDocument,
  parseOptions,
  tooManySubscriptions,
  subscriptionsOverWebSocketOnly,
  validationRules,
  variableErrors,
} from './limits';
import { firstErrorCode, issuesCoupon, upgradeRequestId, type AccessLog } from '../ops/access-log';
import { closeAtExpiry, serveWebSocket, takeSetAside } from './ws-transport';
import { retryAfterSeconds, type RateLimits } from './rate-limits';

/** The identity provider's keys could not be fetched: the token may be fine, so not 4403; reconnect later. */
const CLOSE_SERVICE_UNAVAILABLE = 4503;

export interface GraphQLServerOptions {
  schema: GraphQLSchema;
  httpServer: Server;
  authenticator: Authenticator;
  context: (caller: Caller | null, clientIp: string | null) => GraphQLContext;
  development: boolean;
  onInternalError: (error: unknown) => void;
  /** Turns an infrastructure failure (a store unreachable) into a domain error, or returns it as it is. */
  translateError?: (error: unknown) => unknown;
  /** Size, time and connection bounds (limits.ts). */
  limits: EdgeLimits;
  /** Rate limits kept in Redis (rate-limits.ts). */
  rateLimits: RateLimits;
  /** Connections and subscriptions are logged and counted there (ops/access-log.ts). */
  accessLog: AccessLog;
}

export interface GraphQLServer {
  apollo: ApolloServer<GraphQLContext>;
  /** Answers the POSTs of documents already seen as Apollo would (fast-path.ts); Apollo answers the rest. */
  fastPath: FastPath;
  /** Stops accepting WebSocket connections and closes the open ones (subscriptions complete). */
  closeWebSockets(): Promise<void>;
}

const complexityPlugin: ApolloServerPlugin<GraphQLContext> = {
  async requestDidStart() {
    return {
      async didResolveOperation({ document, operation }) {
        if (operation) assertOperationComplexity(document, operation);
      },
    };
  },
};

/** Notes, for the access log, the operation Apollo ran and the first error code it answered. */
const accessPlugin: ApolloServerPlugin<GraphQLContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ contextValue, operationName, operation, response }) {
        const exchange = contextValue.exchange;
        if (!exchange) return;
        exchange.operation = operationName ?? null;
        exchange.issue = operation ? issuesCoupon(operation) : false;
        exchange.code = response.body.kind === 'single' ? firstErrorCode(response.body.singleResult.errors) : null;
      },
    };
  },
};

function isAsyncIterable(value: unknown): value is AsyncIterable<ExecutionResult> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

function once(fn: () => Promise<void> | void): () => Promise<void> {
  let result: Promise<void> | null = null;
  return () => (result ??= Promise.resolve(fn()));
}

export async function createGraphQLServer(options: GraphQLServerOptions): Promise<GraphQLServer> {
  const formatError = createErrorFormatter({ development: options.development, onInternal: options.onInternalError, translate: options.translateError });
  const { limits, rateLimits, accessLog } = options;
  // Frames get the bound of an HTTP body: no subscribe message needs more. Bigger ones close with 1009.
  const wsServer = new WebSocketServer({
    server: options.httpServer,
    path: '/graphql',
    maxPayload: limits.maxBodyBytes,
    // Every upgrade is anonymous until its connection_init: the address's anonymous rate applies, as to HTTP.
    verifyClient: (info, done) => {
      const requestId = upgradeRequestId(info.req);
      const refuse = (status: number, message: string, headers: Record<string, string>) => {
        accessLog.wsRefused(requestId, status);
        done(false, status, message, { ...headers, 'x-request-id': requestId });
      };
      rateLimits.anonymous(rateLimits.clientIp(info.req)).then(
        (wait) => (wait === 0 ? done(true) : refuse(429, 'Too Many Requests', { 'retry-after': retryAfterSeconds(wait) })),
        () => refuse(503, 'Service Unavailable', {}),
      );
    },
  });
  // The upgrade's answer (101) carries the request id too; the connection keeps it for its log lines.
  wsServer.on('headers', (headers, request) => headers.push(`x-request-id: ${upgradeRequestId(request)}`));
  // The operation each running subscription was logged with, by the payload graphql-ws holds for its life.
  const subscriptionNames = new WeakMap<object, string | null>();
  const connections = new WebSocketConnections(limits);
  const rules = validationRules(limits);
  const documents = new DocumentCache();
  const sharedResults = new SharedResults();

  // Per connection: who it is, from where, whether it holds a connection slot, and the ids of its running
  // subscriptions (queries and mutations do not count).
  type Extra = { caller: Caller | null; clientIp: string; admitted: boolean; subscriptions: string[]; requestId: string; openedAt: number };
  const ws = serveWebSocket<Record<string, unknown> | undefined, Extra>(
    {
      schema: options.schema,
      context: (ctx) => options.context(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null),
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const raw = params.authorization ?? params.Authorization;
        if (raw !== undefined && typeof raw !== 'string') return false;
        let identity: { caller: Caller; expiresAtMs: number } | null;
        try {
          identity = await options.authenticator.authorize(raw);
        } catch (error) {
          if (error instanceof UnavailableError) ctx.extra.socket.close(CLOSE_SERVICE_UNAVAILABLE, 'Service unavailable');
          return false; // graphql-ws closes with 4403 Forbidden (a socket already closed stays as it was)
        }
        const { socket, request } = ctx.extra;
        // The client may have left while its token was checked: its 'close' has been, so a slot taken now
        // (or a token expiry scheduled) would never be given back.
        if (socket.readyState !== socket.OPEN || !request) return false;
        const caller = identity?.caller ?? null;
        const ip = rateLimits.clientIp(request);
        if (!connections.admit(caller, ip)) {
          // Closing first makes this the code the client sees; graphql-ws's own 4403 then finds it closing.
          socket.close(CLOSE_TOO_MANY_CONNECTIONS, caller ? 'Too many connections for this user' : 'Too many connections from this address');
          return false;
        }
        ctx.extra.admitted = true; // given back when the socket closes (onSocketClosed below)
        ctx.extra.caller = caller;
        ctx.extra.clientIp = ip;
        if (identity && Number.isFinite(identity.expiresAtMs)) closeAtExpiry(ctx.extra, identity.expiresAtMs);
        return true;
      },
      onSubscribe: async (ctx, id, payload): Promise<ExecutionArgs | readonly GraphQLError[]> => {
        // The text and variables were kept out of the message graphql-ws holds (ws-transport.ts), and after this
        // hook nothing holds them: the subscription keeps the parsed document and the variables it declares.
        const held = takeSetAside(ctx.extra, id);
        const sent = held ? held.variables : payload.variables;
        // A document that never becomes an operation cost its parse: it takes a token, as over HTTP.
        const refuse = async (errors: readonly GraphQLError[]) => {
          await rateLimits.invalidDocument(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null);
          return errors;
        };
        // Subscriptions that send the same text share one parsed, validated document (a crowd sends one or a few).
        const text = held ? held.query : payload.query;
        let document = typeof text === 'string' ? documents.get(text) : undefined;
        if (!document) {
          const parsed = parseDocument(text, limits);
          if (Array.isArray(parsed)) return refuse(parsed);
          const errors = validate(options.schema, parsed, rules);
          if (errors.length > 0) {
            return refuse(errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })));
          }
          document = parsed;
          documents.set(text as string, document);
        }
        const operation = getOperationAST(document, payload.operationName);
        if (!operation) {
          return refuse([new GraphQLError('Operation not found in the document', { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })]);
        }
        // graphql-ws holds this payload for the subscription's life: keep only what the operation reads.
        const variables = declaredVariables(operation, sent);
        (payload as { variables?: Record<string, unknown> }).variables = variables;
        try {
          assertOperationComplexity(document, operation);
          await rateLimits.operation(ctx.extra.caller ?? null, operation, 'ws', ctx.extra.clientIp ?? null);
        } catch (error) {
          return [error as GraphQLError];
        }
        const badVariables = variableErrors(options.schema, operation, variables);
        if (badVariables.length > 0) return badVariables;
        if (isSubscription(operation)) {
          // graphql-ws forgets an operation as soon as it ends or the client completes it: so do we. (An array:
          // a connection has one or a few, and a Set would cost more than the rest of what it keeps here.)
          const running = (ctx.extra.subscriptions ?? []).filter((other) => other in ctx.subscriptions);
          if (running.length >= limits.wsMaxSubscriptions) return [tooManySubscriptions(limits.wsMaxSubscriptions)];
          ctx.extra.subscriptions = running.concat(id); // concat makes it no longer than it is, push would not
        }
        return {
          schema: options.schema,
          document,
          operationName: payload.operationName,
          variableValues: variables,
          contextValue: options.context(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null),
          rootValue: undefined, // present, so graphql-ws does not add it later and grow the object it keeps
        };
      },
      // graphql-js's subscribe() is createSourceEventStream() and a map of each event through execute(); here the
      // map is done by the backlog (onOperation), so a subscription holds one layer less for its whole life.
      // (The stream holds events, not yet results, until onOperation maps it.)
      subscribe: (args) => createSourceEventStream(args) as Promise<AsyncIterable<ExecutionResult> | ExecutionResult>,
      onOperation: (ctx, id, payload, args, result) => {
        if (!isAsyncIterable(result)) return undefined;
        const name = getOperationAST(args.document, args.operationName)?.name?.value ?? null;
        subscriptionNames.set(payload, name);
        accessLog.subscriptionStarted(ctx.extra.requestId ?? '', id, name, ctx.extra.caller?.userId ?? null);
        const run = (event: unknown) => execute({ ...args, rootValue: event });
        // A source that keeps only its latest value (promotionStock) coalesces for a slow client: read lazily.
        if (isLatestOnly(result)) {
          return latestOnly(result as AsyncIterable<unknown>, (event) => sharedResults.get(event, args.document, args.operationName, args.variableValues, () => run(event)));
        }
        return boundedBacklog(
          result as AsyncIterable<unknown>,
          limits.wsMaxBacklog,
          () => ctx.extra.socket.close(CLOSE_BACKLOG_OVERFLOW, 'Subscriber too slow'),
          run,
        );
      },
      // Once per operation that ran, whatever ended it (the client, the server, the socket closing).
      onComplete: (ctx, id, payload) => {
        if (!subscriptionNames.has(payload)) return;
        const name = subscriptionNames.get(payload) ?? null;
        subscriptionNames.delete(payload);
        accessLog.subscriptionEnded(ctx.extra.requestId ?? '', id, name);
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatError(e.toJSON(), e)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatError(e.toJSON(), e)),
    },
    wsServer,
    limits.wsPingIntervalMs,
    options.onInternalError,
    (extra, request) => {
      extra.requestId = upgradeRequestId(request);
      extra.openedAt = performance.now();
      accessLog.wsOpened(extra.requestId, rateLimits.clientIp(request));
    },
    (extra, code) => {
      accessLog.wsClosed(extra.requestId ?? '', code, extra.caller?.userId ?? null, extra.openedAt ?? performance.now());
      if (!extra.admitted) return;
      extra.admitted = false;
      connections.release(extra.caller ?? null, extra.clientIp ?? '');
    },
  );

  const fastPath = new FastPath({ schema: options.schema, limits, rateLimits, formatError, context: options.context, development: options.development });
  const apollo = new ApolloServer<GraphQLContext>({
    schema: options.schema,
    introspection: limits.introspection,
    parseOptions: parseOptions(limits),
    validationRules: [subscriptionsOverWebSocketOnly],
    stopOnTerminationSignals: false, // main.ts owns shutdown: WebSockets, HTTP, consumer, connections, in order
    includeStacktraceInErrorResponses: options.development,
    formatError,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: options.httpServer }),
      ApolloServerPluginLandingPageDisabled(),
      // No HTTP caching of GraphQL responses here; the default plugin would wrap every resolver for nothing.
      ApolloServerPluginCacheControlDisabled(),
      complexityPlugin,
      rateLimits.plugin(),
      accessPlugin,
      // Once Apollo stops it refuses operations: so must the fast path, by leaving them to it.
      { serverWillStart: async () => ({ serverWillStop: async () => fastPath.stop() }) },
    ],
  });
  await apollo.start();

  return {
    apollo,
    fastPath,
    // graphql-ws closes every socket (1001 Going away) and then the WebSocket server itself.
    closeWebSockets: once(() => ws.dispose()),
  };
}
