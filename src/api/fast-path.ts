import type { IncomingHttpHeaders } from 'node:http';
import {
  GraphQLError,
  Kind,
  execute,
  getOperationAST,
  getVariableValues,
  parse,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import type { EdgeLimits } from '../config';
import type { Caller } from '../domain/types';
import { assertOperationComplexity } from './complexity';
import type { GraphQLContext } from './context';
import { firstErrorCode, issuesCoupon } from '../ops/access-log';
import { parseOptions, validationRules } from './limits';
import type { RateLimits } from './rate-limits';

/**
 * Why this exists: in a flash sale nearly every request is the same few documents (issueCoupon above all), and
 * Apollo spends several times the cost of the reservation itself on each of them (hashing the text, content
 * negotiation, a dozen plugin hooks and their promises, header copies). This path answers a POST whose
 * (query, operationName) it has already seen valid, with the document parsed, validated and checked for
 * complexity once, and per request only what Apollo does per request: the rate limit, graphql-js's execute (the
 * executor Apollo calls, so results and errors are the same objects), formatError and the status rules.
 * graphql-jit was tried: no measurable gain on these one-field operations (the time goes to HTTP, Redis and GC),
 * and compiling costs milliseconds to tens of milliseconds per document, which unique documents would turn into
 * a way to stall the event loop.
 *
 * What it guarantees: the same answer as Apollo's, byte for byte (status, headers, body), with the same side
 * effects (rate-limit tokens, refusal counts, internal errors logged through formatError). It does so by
 * taking only the requests whose handling it reproduces and sending every other one to Apollo, which stays the
 * reference: a document seen for the first time, an invalid one, GET, batches, extensions (persisted
 * queries), other content types or Accept headers, variables that do not coerce, subscriptions, introspection,
 * development mode (stack traces), and any request once Apollo is stopping. test/e2e/fast-path.e2e.test.ts
 * sends each kind of request twice and compares the answers.
 */

export interface FastPathOptions {
  schema: GraphQLSchema;
  limits: EdgeLimits;
  rateLimits: RateLimits;
  /** Apollo's formatError (errors.ts), applied to every error exactly as Apollo applies it. */
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
  context: (caller: Caller | null, clientIp: string | null) => GraphQLContext;
  /** In development Apollo adds stack traces, which no second path can reproduce: everything goes to Apollo. */
  development: boolean;
}

/** A GraphQL answer over HTTP, as the request handler writes it (http-server.ts). */
export interface GraphQLAnswer {
  status: number;
  headers: [string, string][];
  body: string;
  /** For the access log and metrics (ops/access-log.ts): the first error's code, or null. */
  code?: string | null;
  /** The operation's name (undefined: not known here); whether it is an issueCoupon. */
  operationName?: string | null;
  issue?: boolean;
}

interface Known {
  document: DocumentNode;
  operation: OperationDefinitionNode;
  operationName: string | undefined;
  /** What the access log notes of each answer, computed once. */
  name: string | null;
  issue: boolean;
}

/** What Apollo answers for each Accept value it may receive here (its chooseContentTypeForSingleResultResponse). */
const JSON_UTF8 = 'application/json; charset=utf-8';
const CONTENT_TYPE_FOR_ACCEPT = new Map<string | undefined, string>([
  [undefined, JSON_UTF8],
  ['*/*', JSON_UTF8],
  ['application/json', JSON_UTF8],
  ['application/graphql-response+json', 'application/graphql-response+json; charset=utf-8'],
]);

/** Request bodies Apollo's CSRF prevention and body reading accept without a second look. */
const JSON_REQUEST_TYPES = new Set(['application/json', 'application/json; charset=utf-8', 'application/json;charset=utf-8']);

/**
 * Documents held: at most this many, and about this many bytes of heap in all. A parsed document keeps its nodes
 * and, through their locations, every token of its text: a few hundred bytes a token (measured 265 to 350 with
 * graphql 16), so a short text of many tokens weighs a hundred times its characters. Each entry is charged its
 * key (two bytes a character, at worst) and BYTES_PER_TOKEN a token; one that would take more than a sixteenth
 * of the whole is not kept, so no single document empties the cache.
 */
const MAX_DOCUMENTS = 1000;
const MAX_HELD_BYTES = 32 * 1024 * 1024;
const BYTES_PER_TOKEN = 400;
const MAX_ENTRY_BYTES = MAX_HELD_BYTES / 16;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export class FastPath {
  /** By request key: a compiled operation, or null for a document that only Apollo answers. Oldest first (LRU). */
  private readonly known = new Map<string, { known: Known | null; bytes: number }>();
  private heldBytes = 0;
  private stopped: boolean;
  /** Requests this path answered (Apollo answered the others). */
  answered = 0;
  private readonly rules;
  private readonly parseOptions;

  constructor(private readonly options: FastPathOptions) {
    this.stopped = options.development;
    this.rules = validationRules(options.limits);
    this.parseOptions = parseOptions(options.limits);
  }

  /** Apollo is stopping: from now on it refuses operations, so it answers them all. */
  stop(): void {
    this.stopped = true;
  }

  /**
   * The answer to a POST with this parsed JSON body, or null when Apollo must answer it (then call `learn`).
   * Runs in Apollo's order: context, didResolveOperation (complexity, rate limit), execution, didEncounterErrors,
   * formatting, willSendResponse.
   */
  async answer(headers: IncomingHttpHeaders, body: unknown, caller: Caller | null, clientIp: string): Promise<GraphQLAnswer | null> {
    if (this.stopped || !isRecord(body)) return null;
    const contentType = CONTENT_TYPE_FOR_ACCEPT.get(headers.accept);
    const requestType = headers['content-type'];
    if (contentType === undefined || requestType === undefined || !JSON_REQUEST_TYPES.has(requestType.toLowerCase())) return null;
    const key = requestKey(body);
    if (key === null) return null;
    const entry = this.known.get(key);
    if (!entry?.known) return null;
    const { known } = entry;
    this.known.delete(key); // most recently used last
    this.known.set(key, entry);

    const variables = body.variables ?? undefined;
    if (variables !== undefined && !isRecord(variables)) return null;
    // Coercion is pure: a request whose variables do not fit goes to Apollo, which reports it its own way.
    if (getVariableValues(this.options.schema, known.operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 50 }).errors) {
      return null;
    }

    const context = this.options.context(caller, clientIp);
    const { rateLimits } = this.options;
    try {
      await rateLimits.operation(caller, known.operation, 'http');
    } catch (error) {
      this.answered++;
      return this.describe(this.respond(contentType, { errors: [ensureGraphQLError(error)] }, true), known);
    }
    // What Apollo runs (executeIncrementally is graphql-js's execute under graphql 16), with the same arguments.
    const { schema } = this.options;
    const result = await execute({ schema, document: known.document, contextValue: context, variableValues: variables, operationName: known.operationName });
    this.answered++;
    return this.describe(this.respond(contentType, result, false), known);
  }

  private describe(answer: GraphQLAnswer, known: Known): GraphQLAnswer {
    answer.operationName = known.name;
    answer.issue = known.issue;
    return answer;
  }

  /** After Apollo ran a POST body's operation: remember its document, fit for this path or not, if not known yet. */
  learn(body: unknown): void {
    if (this.stopped || !isRecord(body)) return;
    const key = requestKey(body);
    if (key === null || this.known.has(key)) return;
    this.remember(key, this.compile(body.query as string, (body.operationName as string | null | undefined) ?? undefined));
  }

  private compile(query: string, operationName: string | undefined): Known | null {
    let document: DocumentNode;
    try {
      document = parse(query, this.parseOptions);
    } catch {
      return null;
    }
    if (validate(this.options.schema, document, this.rules).length > 0) return null;
    const operation = getOperationAST(document, operationName);
    if (!operation || operation.operation === 'subscription' || operation.selectionSet.selections.some(mayIntrospect)) return null;
    try {
      assertOperationComplexity(document, operation);
    } catch {
      return null;
    }
    return { document, operation, operationName, name: operation.name?.value ?? null, issue: issuesCoupon(operation) };
  }

  private remember(key: string, compiled: Known | null): void {
    let known = compiled;
    let bytes = 2 * key.length + (known ? BYTES_PER_TOKEN * tokenCount(known.document) : 0);
    if (bytes > MAX_ENTRY_BYTES) [known, bytes] = [null, 2 * key.length];
    if (bytes > MAX_ENTRY_BYTES) return;
    this.known.set(key, { known, bytes });
    this.heldBytes += bytes;
    while (this.known.size > MAX_DOCUMENTS || this.heldBytes > MAX_HELD_BYTES) {
      const [oldest, entry] = this.known.entries().next().value as [string, { bytes: number }];
      this.known.delete(oldest);
      this.heldBytes -= entry.bytes;
    }
  }

  /**
   * Apollo's tail of the pipeline (requestPipeline.js, errorNormalize.js): didEncounterErrors (refusals counted),
   * each error normalized and given to formatError, the status and headers of their `http` extension (else 400
   * for errors without data, or 500 for a refusal before execution), the rate-limit plugin's willSendResponse,
   * then the content type and the body ({errors, data, extensions}, then a newline).
   */
  private respond(contentType: string, result: ExecutionResult, beforeExecution: boolean): GraphQLAnswer {
    const headers = new Map<string, string>();
    let status: number | undefined;
    let errors: GraphQLFormattedError[] | undefined;
    if (result.errors?.length) {
      this.options.rateLimits.countRefusals(result.errors);
      errors = result.errors.map((error) => {
        try {
          const extensions: Record<string, unknown> = { ...error.extensions, code: error.extensions.code ?? 'INTERNAL_SERVER_ERROR' };
          const http = extensions.http as { status?: unknown; headers?: unknown } | undefined;
          if (isHttpHead(http)) {
            if (http.status) status = http.status;
            for (const [name, value] of http.headers ?? []) headers.set(name.toLowerCase(), value);
            delete extensions.http;
          }
          return this.options.formatError({ ...error.toJSON(), extensions }, error);
        } catch {
          return { message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } };
        }
      });
      if (status === undefined) status = beforeExecution ? 500 : result.data === undefined ? 400 : undefined;
    }
    const refusal = this.options.rateLimits.httpRefusal(result.data, errors);
    if (refusal) {
      status = refusal.status;
      headers.set('retry-after', refusal.retryAfter);
    }
    headers.set('content-type', contentType);
    const body = JSON.stringify({ errors, data: result.data, extensions: result.extensions }) + '\n';
    return { status: status ?? 200, headers: [...headers], body, code: firstErrorCode(errors), operationName: undefined, issue: false };
  }
}

/** Apollo's isPartialHTTPGraphQLHead: only an extension of this shape sets the status and headers. */
function isHttpHead(x: unknown): x is { status?: number; headers?: Map<string, string> } {
  return (
    typeof x === 'object' &&
    x !== null &&
    (!('status' in x) || typeof x.status === 'number') &&
    (!('headers' in x) || x.headers instanceof Map)
  );
}

/** Apollo's ensureGraphQLError, for what a plugin hook throws. */
function ensureGraphQLError(error: unknown): GraphQLError {
  if (error instanceof GraphQLError) return error;
  if (error instanceof Error) return new GraphQLError(error.message, { originalError: error });
  return new GraphQLError(`Unexpected error value: ${String(error)}`);
}

/** The tokens a parsed document keeps alive (its locations point into their chain). */
function tokenCount(document: DocumentNode): number {
  let count = 0;
  for (let token = document.loc?.startToken ?? null; token !== null; token = token.next) count++;
  return count;
}

/**
 * One key per (query, operationName): null when the body is not one this path could take. The name's length
 * leads, so no pair spells another's key: a separator alone would not do, since a comment may hold any
 * character (a NUL too), and names are not checked here.
 */
function requestKey(body: Record<string, unknown>): string | null {
  const { query, operationName, extensions } = body;
  if (typeof query !== 'string' || query === '') return null;
  if (extensions !== undefined && extensions !== null) return null;
  if (operationName === undefined || operationName === null) return `\u0000${query}`;
  if (typeof operationName !== 'string') return null;
  return `${operationName.length}:${operationName}\u0000${query}`;
}

/** A root __schema or __type, or a fragment that could hide one: left to Apollo, as introspection is rare. */
const mayIntrospect = (selection: OperationDefinitionNode['selectionSet']['selections'][number]) =>
  selection.kind !== Kind.FIELD || selection.name.value === '__schema' || selection.name.value === '__type';
