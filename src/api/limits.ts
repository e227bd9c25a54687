import { createServer, type Server } from 'node:http';
import {
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  getVariableValues,
  parse,
  specifiedRules,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type ValidationRule,
} from 'graphql';
import type { EdgeLimits } from '../config';
import type { Caller } from '../domain/types';

/**
 * The limits every transport applies at the edge, before any work is done for a client: how much it may
 * send (body, frame, tokens), how long it may take (headers, request), how many connections and
 * subscriptions it may hold, and how far behind it may fall. HTTP (http-server.ts, Apollo) and WebSocket
 * (graphql-server.ts) both call this module, so a bound is never enforced on one path only; the rate limits,
 * kept in Redis, are beside it in rate-limits.ts.
 */

/** WebSocket close codes of the limits (4xxx: application codes, as graphql-ws uses 4403 and 4429). */
export const CLOSE_TOO_MANY_CONNECTIONS = 4429;
export const CLOSE_BACKLOG_OVERFLOW = 4503;
/** An extra subscription can be retried once one of the connection's others completes: no better hint. */
export const SUBSCRIPTION_RETRY_AFTER_MS = 1000;

/** graphql-js counts tokens while it parses and aborts past the bound: a huge document costs microseconds. */
export const parseOptions = (limits: EdgeLimits) => ({ maxTokens: limits.maxQueryTokens });

/**
 * Parses a WebSocket operation with the same bound as Apollo's HTTP path, or says why not. Without locations:
 * a subscription holds its document for its whole life, and a node's location would hold the whole text.
 */
export function parseDocument(source: unknown, limits: EdgeLimits): DocumentNode | GraphQLError[] {
  if (typeof source !== 'string') return [parseFailed('query must be a string')];
  try {
    return parse(source, { ...parseOptions(limits), noLocation: true });
  } catch (error) {
    return [parseFailed(error instanceof Error ? error.message : 'Syntax error')];
  }
}

const parseFailed = (message: string) => new GraphQLError(message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } });

/**
 * Over HTTP a subscription would be executed once, its field resolved without the event it waits for: refused at
 * validation instead (GRAPHQL_VALIDATION_FAILED, 400), as the GraphQL-over-HTTP spec leaves subscriptions out of
 * POST. For Apollo's HTTP path only; the WebSocket validates with validationRules() and runs them.
 */
export const subscriptionsOverWebSocketOnly: ValidationRule = (context) => ({
  OperationDefinition(node) {
    if (node.operation !== 'subscription') return;
    context.reportError(
      new GraphQLError('Subscriptions are served over the WebSocket at /graphql (protocol graphql-transport-ws), not over HTTP', { nodes: [node] }),
    );
  },
});

/** With INTROSPECTION=false, __schema and __type fail validation, as Apollo's `introspection: false` does. */
export function validationRules(limits: EdgeLimits): readonly ValidationRule[] {
  return limits.introspection ? specifiedRules : [...specifiedRules, NoSchemaIntrospectionCustomRule];
}

/**
 * Only the variables the operation declares, so a subscription keeps nothing else a client sent for its
 * whole life (graphql-ws holds the subscribe message until the subscription ends). Undeclared names are
 * never read by GraphQL, and a declared one is always used (validation refuses unused variables).
 */
export function declaredVariables(operation: OperationDefinitionNode, variables: unknown): Record<string, unknown> | undefined {
  if (variables === null || typeof variables !== 'object') return undefined;
  const sent = variables as Record<string, unknown>;
  const kept: Record<string, unknown> = {};
  for (const definition of operation.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    if (Object.prototype.hasOwnProperty.call(sent, name)) kept[name] = sent[name];
  }
  return kept;
}

/** Variables that do not fit their declared types: BAD_USER_INPUT, as Apollo answers over HTTP. */
export function variableErrors(schema: GraphQLSchema, operation: OperationDefinitionNode, variables: Record<string, unknown> | undefined): GraphQLError[] {
  const { errors } = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 10 });
  return (errors ?? []).map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'BAD_USER_INPUT' } }));
}

/** The operation is a mutation or a query, not a subscription: it needs no slot among the subscriptions. */
export const isSubscription = (operation: OperationDefinitionNode) => operation.operation === 'subscription';

export function tooManySubscriptions(limit: number): GraphQLError {
  return new GraphQLError(`At most ${limit} active subscriptions per connection`, {
    extensions: { code: 'RATE_LIMITED', retryAfterMs: SUBSCRIPTION_RETRY_AFTER_MS },
  });
}

/**
 * The HTTP server with its connection bounds. Node checks the header and request timeouts on a timer
 * (30 s by default), so the timer runs often enough for a slow client to be cut within half a header
 * timeout of the bound: within 15 s of its first byte with the default 10 s.
 */
export function createLimitedHttpServer(limits: EdgeLimits): Server {
  const server = createServer({
    connectionsCheckingInterval: Math.max(50, Math.min(5000, Math.floor(limits.headersTimeoutMs / 2))),
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
  });
  server.maxConnections = limits.maxConnections;
  return server;
}

/**
 * Open WebSocket connections per user and, for anonymous ones, per client IP, in this process.
 * `admit` says whether one more may open (and counts it); `release` gives its slot back when it closes.
 */
export class WebSocketConnections {
  private readonly perUser = new Map<string, number>();
  private readonly anonPerIp = new Map<string, number>();

  constructor(private readonly limits: EdgeLimits) {}

  admit(caller: Caller | null, ip: string): boolean {
    const [counts, key, max] = this.slot(caller, ip);
    const open = counts.get(key) ?? 0;
    if (open >= max) return false;
    counts.set(key, open + 1);
    return true;
  }

  /** Once per admitted connection, with the caller and address it was admitted with. */
  release(caller: Caller | null, ip: string): void {
    const [counts, key] = this.slot(caller, ip);
    const left = (counts.get(key) ?? 1) - 1;
    if (left > 0) counts.set(key, left);
    else counts.delete(key);
  }

  private slot(caller: Caller | null, ip: string): [Map<string, number>, string, number] {
    return caller ? [this.perUser, caller.userId, this.limits.wsMaxConnectionsPerUser] : [this.anonPerIp, ip, this.limits.wsMaxAnonConnectionsPerIp];
  }
}

/**
 * Parsed and validated WebSocket documents by their text. A subscription holds its document for its whole
 * life, and a crowd subscribes with one or a few texts: they share one document instead of a copy each (and
 * skip parse and validation). Only documents that passed validation are kept, so a refused one is parsed, and
 * takes its rate token, every time. Bounded in entries and in the length of a text; the least recently used
 * entry makes room.
 */
export class DocumentCache {
  private readonly documents = new Map<string, DocumentNode>();

  constructor(
    private readonly maxEntries = 500,
    private readonly maxTextLength = 8192,
  ) {}

  get(text: string): DocumentNode | undefined {
    const document = this.documents.get(text);
    if (document) {
      // Map keeps insertion order: moving it last keeps the least recently used first.
      this.documents.delete(text);
      this.documents.set(text, document);
    }
    return document;
  }

  set(text: string, document: DocumentNode): void {
    if (text.length > this.maxTextLength) return;
    if (this.documents.size >= this.maxEntries) this.documents.delete(this.documents.keys().next().value as string);
    this.documents.set(text, document);
  }
}

/**
 * Reads a subscription's results as they come and holds at most `max` of them for a socket that is slow
 * to take them. graphql-ws sends one result at a time and waits for the socket; without this bound the
 * results of a client that never reads would pile up in memory. Past the bound `onOverflow` runs once
 * (the caller closes the connection with 4503) and the source is stopped: a final state is never dropped
 * silently, the client re-subscribes by requestId and gets it replayed. With `map`, each source value is
 * mapped as it is read (a subscription's event executed into its result), so that needs no layer of its own.
 */
export function boundedBacklog<S, T = S>(
  source: AsyncIterable<S>,
  max: number,
  onOverflow: () => void,
  map?: (value: S) => T | Promise<T>,
): AsyncIterableIterator<T, void, undefined> {
  return new BoundedBacklog(source[Symbol.asyncIterator](), max, onOverflow, map);
}

const FINISHED: IteratorResult<never, void> = { value: undefined, done: true };

interface Reader<T> {
  resolve: (result: IteratorResult<T, void>) => void;
  reject: (error: unknown) => void;
}

/**
 * One object per subscription, its queue and readers made only when there is something in them: a
 * subscription waiting for its event holds this, its source's pending read and graphql-ws's pending read.
 */
class BoundedBacklog<S, T> implements AsyncIterableIterator<T, void, undefined> {
  private queue: IteratorResult<T, void>[] | null = null;
  private readers: Reader<T>[] | null = null;
  private failure: { error: unknown } | null = null;
  private stopped = false;

  constructor(
    private readonly iterator: AsyncIterator<S>,
    private readonly max: number,
    private readonly onOverflow: () => void,
    private readonly map: ((value: S) => T | Promise<T>) | undefined,
  ) {
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const result = await this.iterator.next();
        if (this.stopped) return;
        if (result.done) {
          this.stopped = true; // finished: later reads answer done at once
          this.deliver(FINISHED);
          return;
        }
        const value = this.map ? await this.map(result.value) : (result.value as unknown as T);
        if (this.stopped) return;
        this.deliver({ value, done: false });
        if ((this.queue?.length ?? 0) > this.max) {
          this.onOverflow();
          await this.stop();
          return;
        }
      }
    } catch (error) {
      if (this.stopped) return;
      this.failure = { error };
      const readers = this.readers ?? [];
      this.readers = null;
      for (const reader of readers) reader.reject(error);
      if (this.map) await this.iterator.return?.().catch(() => undefined); // a result that failed stops its source, as graphql-js does
    }
  }

  private deliver(result: IteratorResult<T, void>): void {
    const reader = this.readers?.shift();
    if (this.readers?.length === 0) this.readers = null;
    if (reader) reader.resolve(result);
    else if (this.queue) this.queue.push(result);
    else this.queue = [result];
  }

  private async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.queue = null;
    this.deliver(FINISHED);
    await this.iterator.return?.();
  }

  next(): Promise<IteratorResult<T, void>> {
    const ready = this.queue?.shift();
    if (this.queue?.length === 0) this.queue = null;
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.stopped) return Promise.resolve(FINISHED);
    return new Promise((resolve, reject) => {
      if (this.readers) this.readers.push({ resolve, reject });
      else this.readers = [{ resolve, reject }];
    });
  }

  async return(): Promise<IteratorResult<T, void>> {
    await this.stop();
    return FINISHED;
  }

  async throw(error: unknown): Promise<IteratorResult<T, void>> {
    await this.stop();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/**
 * Results of values shared by many subscribers (promotionStock hands every watcher of a promotion the same
 * value object): executed once per value, document, operation and variables, not once per subscriber. Only for
 * sources whose results depend on nothing else (not on the caller): latest-only ones. The operation is part of
 * the key: one document may hold several, each selecting other fields.
 */
export class SharedResults {
  private readonly byValue = new WeakMap<object, WeakMap<object, Map<string, unknown>>>();

  get<T>(value: unknown, document: object, operationName: string | null | undefined, variables: unknown, run: () => T): T {
    if (typeof value !== 'object' || value === null) return run();
    let byDocument = this.byValue.get(value);
    if (!byDocument) this.byValue.set(value, (byDocument = new WeakMap()));
    let byVariables = byDocument.get(document);
    if (!byVariables) byDocument.set(document, (byVariables = new Map()));
    const key = JSON.stringify([operationName ?? null, variables ?? null]);
    if (!byVariables.has(key)) byVariables.set(key, run());
    return byVariables.get(key) as T;
  }
}

/**
 * A source that keeps only its latest value (promotionStock), mapped as it is read and read only when the
 * client has taken the previous result: graphql-ws asks for the next one once its send is done, so a slow
 * client holds one value, the latest, and never a backlog.
 */
export function latestOnly<S, T>(source: AsyncIterable<S>, map: (value: S) => T | Promise<T>): AsyncIterableIterator<T, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  return {
    next: async () => {
      const result = await iterator.next();
      return result.done ? FINISHED : { value: await map(result.value), done: false };
    },
    return: async () => {
      await iterator.return?.();
      return FINISHED;
    },
    throw: async (error: unknown) => {
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
