import type { Server } from 'node:http';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, getOperationAST, validate, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { WebSocketServer } from 'ws';
import type { EdgeLimits } from '../config';
import { UnavailableError } from '../domain/errors';
import type { Caller } from '../domain/types';
import type { Authenticator } from './auth';
import { assertOperationComplexity } from './complexity';
import type { GraphQLContext } from './context';
import { createErrorFormatter } from './errors';
import { FastPath } from './fast-path';
import {
  CLOSE_BACKLOG_OVERFLOW,
  CLOSE_TOO_MANY_CONNECTIONS,
  WebSocketConnections,
  boundedBacklog,
  declaredVariables,
  isSubscription,
  parseDocument,
  parseOptions,
  tooManySubscriptions,
  validationRules,
  variableErrors,
} from './limits';
import { serveWebSocket, takeSetAside } from './ws-transport';
import { retryAfterSeconds, type RateLimits } from './rate-limits';

/** Closes the socket when the token it was opened with expires, with the same code as a bad token. */
const CLOSE_UNAUTHORIZED = 4403;
/** The identity provider's keys could not be fetched: the token may be fine, so not 4403; reconnect later. */
const CLOSE_SERVICE_UNAVAILABLE = 4503;
/** setTimeout's ceiling (about 24.8 days): a later expiry is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function closeAt(socket: { close(code: number, reason: string): void; once(event: 'close', fn: () => void): unknown }, expiresAt: number): void {
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = expiresAt - Date.now();
    timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(() => socket.close(CLOSE_UNAUTHORIZED, 'Token expired'), Math.max(0, left));
    timer.unref();
  };
  arm();
  socket.once('close', () => clearTimeout(timer));
}

export interface GraphQLServerOptions {
  schema: GraphQLSchema;
  httpServer: Server;
  authenticator: Authenticator;
  context: (caller: Caller | null, clientIp: string | null) => GraphQLContext;
  development: boolean;
  onInternalError: (error: unknown) => void;
  /** Size, time and connection bounds (limits.ts). */
  limits: EdgeLimits;
  /** Rate limits kept in Redis (rate-limits.ts). */
  rateLimits: RateLimits;
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

function isAsyncIterable(value: unknown): value is AsyncIterable<ExecutionResult> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

function once(fn: () => Promise<void> | void): () => Promise<void> {
  let result: Promise<void> | null = null;
  return () => (result ??= Promise.resolve(fn()));
}

export async function createGraphQLServer(options: GraphQLServerOptions): Promise<GraphQLServer> {
  const formatError = createErrorFormatter({ development: options.development, onInternal: options.onInternalError });
  const { limits, rateLimits } = options;
  // Frames get the bound of an HTTP body: no subscribe message needs more. Bigger ones close with 1009.
  const wsServer = new WebSocketServer({
    server: options.httpServer,
    path: '/graphql',
    maxPayload: limits.maxBodyBytes,
    // Every upgrade is anonymous until its connection_init: the address's anonymous rate applies, as to HTTP.
    verifyClient: (info, done) => {
      rateLimits.anonymous(rateLimits.clientIp(info.req)).then(
        (wait) => (wait === 0 ? done(true) : done(false, 429, 'Too Many Requests', { 'retry-after': retryAfterSeconds(wait) })),
        () => done(false, 503, 'Service Unavailable'),
      );
    },
  });
  const connections = new WebSocketConnections(limits);
  const rules = validationRules(limits);

  // Per connection: who it is, from where, and the ids of its running subscriptions (queries and mutations do not count).
  const ws = serveWebSocket<Record<string, unknown> | undefined, { caller: Caller | null; clientIp: string; subscriptions: Set<string> }>(
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
        const socket = ctx.extra.socket;
        // The client may have left while its token was checked: its 'close' has been, so a slot taken now
        // (or a token-expiry timer armed) would never be given back.
        if (socket.readyState !== socket.OPEN) return false;
        const caller = identity?.caller ?? null;
        const ip = rateLimits.clientIp(ctx.extra.request);
        const release = connections.admit(caller, ip);
        if (!release) {
          // Closing first makes this the code the client sees; graphql-ws's own 4403 then finds it closing.
          socket.close(CLOSE_TOO_MANY_CONNECTIONS, caller ? 'Too many connections for this user' : 'Too many connections from this address');
          return false;
        }
        socket.once('close', release);
        ctx.extra.caller = caller;
        ctx.extra.clientIp = ip;
        if (identity && Number.isFinite(identity.expiresAtMs)) closeAt(socket, identity.expiresAtMs);
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
        const document = parseDocument(held ? held.query : payload.query, limits);
        if (Array.isArray(document)) return refuse(document);
        const errors = validate(options.schema, document, rules);
        if (errors.length > 0) {
          return refuse(errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })));
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
          // graphql-ws forgets an operation as soon as it ends or the client completes it: so do we.
          const running = (ctx.extra.subscriptions ??= new Set());
          for (const other of running) if (!(other in ctx.subscriptions)) running.delete(other);
          if (running.size >= limits.wsMaxSubscriptions) return [tooManySubscriptions(limits.wsMaxSubscriptions)];
          running.add(id);
        }
        return {
          schema: options.schema,
          document,
          operationName: payload.operationName,
          variableValues: variables,
          contextValue: options.context(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null),
        };
      },
      onOperation: (ctx, _id, _payload, _args, result) => {
        if (!isAsyncIterable(result)) return undefined;
        return boundedBacklog(result, limits.wsMaxBacklog, () => ctx.extra.socket.close(CLOSE_BACKLOG_OVERFLOW, 'Subscriber too slow'));
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatError(e.toJSON(), e)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatError(e.toJSON(), e)),
    },
    wsServer,
    limits.wsPingIntervalMs,
    options.onInternalError,
  );

  const fastPath = new FastPath({ schema: options.schema, limits, rateLimits, formatError, context: options.context, development: options.development });
  const apollo = new ApolloServer<GraphQLContext>({
    schema: options.schema,
    introspection: limits.introspection,
    parseOptions: parseOptions(limits),
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
