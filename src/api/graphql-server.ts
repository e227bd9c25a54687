import type { Server } from 'node:http';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, getOperationAST, parse, validate, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { UnavailableError } from '../domain/errors';
import type { Caller } from '../domain/types';
import type { Authenticator } from './auth';
import { assertOperationComplexity } from './complexity';
import type { GraphQLContext } from './context';
import { createErrorFormatter } from './errors';
import { retryAfterSeconds, type EdgeLimits } from './limits';

/** Closes the socket when the token it was opened with expires, with the same code as a bad token. */
const CLOSE_UNAUTHORIZED = 4403;
/** The identity provider's keys could not be fetched: the token may be fine, so not 4403; reconnect later. */
const CLOSE_SERVICE_UNAVAILABLE = 4503;
/** setTimeout's ceiling (about 24.8 days): a later expiry is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The same bound as an HTTP body: no subscribe message needs more. */
const MAX_MESSAGE_BYTES = 1024 * 1024;

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
  limits: EdgeLimits;
}

export interface GraphQLServer {
  apollo: ApolloServer<GraphQLContext>;
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

function once(fn: () => Promise<void> | void): () => Promise<void> {
  let result: Promise<void> | null = null;
  return () => (result ??= Promise.resolve(fn()));
}

export async function createGraphQLServer(options: GraphQLServerOptions): Promise<GraphQLServer> {
  const formatError = createErrorFormatter({ development: options.development, onInternal: options.onInternalError });
  const { limits } = options;
  const wsServer = new WebSocketServer({
    server: options.httpServer,
    path: '/graphql',
    maxPayload: MAX_MESSAGE_BYTES,
    // Every upgrade is anonymous until its connection_init: the address's anonymous rate applies, as to HTTP.
    verifyClient: (info, done) => {
      limits.anonymous(limits.clientIp(info.req)).then(
        (wait) => (wait === 0 ? done(true) : done(false, 429, 'Too Many Requests', { 'retry-after': retryAfterSeconds(wait) })),
        () => done(false, 503, 'Service Unavailable'),
      );
    },
  });

  const ws = useServer<Record<string, unknown> | undefined, { caller: Caller | null; clientIp: string }>(
    {
      schema: options.schema,
      context: (ctx) => options.context(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null),
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const raw = params.authorization ?? params.Authorization;
        if (raw !== undefined && typeof raw !== 'string') return false;
        let caller: Caller | null;
        try {
          caller = await options.authenticator.fromAuthorization(raw);
        } catch (error) {
          if (error instanceof UnavailableError) ctx.extra.socket.close(CLOSE_SERVICE_UNAVAILABLE, 'Service unavailable');
          return false; // graphql-ws closes with 4403 Forbidden (a socket already closed stays as it was)
        }
        ctx.extra.caller = caller;
        ctx.extra.clientIp = limits.clientIp(ctx.extra.request);
        const token = raw?.replace(/^Bearer\s+/i, '');
        const expiresAt = token ? options.authenticator.expiresAt(token) : null;
        if (expiresAt !== null) closeAt(ctx.extra.socket, expiresAt);
        return true;
      },
      onSubscribe: async (ctx, _id, payload): Promise<ExecutionArgs | readonly GraphQLError[]> => {
        let document;
        try {
          document = parse(payload.query);
        } catch (error) {
          return [new GraphQLError((error as Error).message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
        }
        const errors = validate(options.schema, document);
        if (errors.length > 0) {
          return errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
        }
        const operation = getOperationAST(document, payload.operationName);
        if (!operation) {
          return [new GraphQLError('Operation not found in the document', { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })];
        }
        try {
          assertOperationComplexity(document, operation);
          await limits.operation(ctx.extra.caller ?? null, operation, 'ws');
        } catch (error) {
          return [error as GraphQLError];
        }
        return {
          schema: options.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: options.context(ctx.extra.caller ?? null, ctx.extra.clientIp ?? null),
        };
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatError(e.toJSON(), e)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatError(e.toJSON(), e)),
    },
    wsServer,
  );

  const apollo = new ApolloServer<GraphQLContext>({
    schema: options.schema,
    introspection: true,
    stopOnTerminationSignals: false, // main.ts owns shutdown: WebSockets, HTTP, consumer, connections, in order
    includeStacktraceInErrorResponses: options.development,
    formatError,
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: options.httpServer }),
      ApolloServerPluginLandingPageDisabled(),
      // No HTTP caching of GraphQL responses here; the default plugin would wrap every resolver for nothing.
      ApolloServerPluginCacheControlDisabled(),
      complexityPlugin,
      limits.plugin(),
    ],
  });
  await apollo.start();

  return {
    apollo,
    // graphql-ws closes every socket (1001 Going away) and then the WebSocket server itself.
    closeWebSockets: once(() => ws.dispose()),
  };
}
