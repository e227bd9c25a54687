import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Kind, type GraphQLFormattedError, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import type { Logger } from '../logger';
import type { HttpRoute, Metrics } from '../metrics';

/** A client's id is kept when it is 1 to 128 printable ASCII characters (API.md "Request ids and logs"). */
const CLIENT_ID = /^[\x20-\x7e]{1,128}$/;

export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && CLIENT_ID.test(given) ? given : randomUUID();
}

/** The upgrade request's id, kept on the request until the WebSocket connection takes it. */
const UPGRADE_ID = Symbol('requestId');
type Upgrade = IncomingMessage & { [UPGRADE_ID]?: string };

export function upgradeRequestId(req: IncomingMessage): string {
  return ((req as Upgrade)[UPGRADE_ID] ??= requestIdOf(req.headers['x-request-id']));
}

/** An operation that reserves stock: its successes are logged at debug (a sale's hot path would flood the log). */
export function issuesCoupon(operation: OperationDefinitionNode): boolean {
  return operation.operation === 'mutation' && operation.selectionSet.selections.some((s) => s.kind === Kind.FIELD && s.name.value === 'issueCoupon');
}

/** The first error's code, as the client sees it; null when there is none. */
export function firstErrorCode(errors: readonly GraphQLFormattedError[] | undefined): string | null {
  const code = errors?.[0]?.extensions?.code;
  return errors?.length ? (typeof code === 'string' ? code : 'INTERNAL_SERVER_ERROR') : null;
}

/**
 * Operation names the metrics count by name: each root field's name, capitalized or not (IssueCoupon, issueCoupon),
 * as clients conventionally name their operations. Any other name is counted as `other`, so a client cannot grow
 * the label set.
 */
export function knownOperations(schema: GraphQLSchema): Set<string> {
  const names = new Set<string>();
  for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    for (const field of Object.keys(root?.getFields() ?? {})) {
      names.add(field);
      names.add(field[0]?.toUpperCase() + field.slice(1));
    }
  }
  return names;
}

const ROUTES = new Set<string>(['/graphql', '/healthz', '/readyz', '/metrics']);

/** One HTTP request as it is handled: filled in by the handler, logged and counted once it is answered. */
export class HttpExchange {
  readonly startedAt = performance.now();
  readonly route: HttpRoute;
  user: string | null = null;
  /** Set once a GraphQL answer (the fast path's or Apollo's) is written. */
  answered = false;
  operation: string | null = null;
  issue = false;
  code: string | null = null;

  constructor(
    readonly id: string,
    readonly path: string,
  ) {
    this.route = ROUTES.has(path) ? (path as HttpRoute) : 'other';
  }
}

/** Access log lines and request metrics, for HTTP and WebSocket alike. */
export class AccessLog {
  private known = new Set<string>();

  constructor(
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Called once the schema exists: the operation names counted by name. */
  knowOperations(names: Set<string>): void {
    this.known = names;
  }

  /** Starts an exchange: its id is the client's or a new one, and the response carries it from now on. */
  begin(req: IncomingMessage, res: ServerResponse, path: string): HttpExchange {
    const exchange = new HttpExchange(requestIdOf(req.headers['x-request-id']), path);
    res.setHeader('x-request-id', exchange.id);
    return exchange;
  }

  /** The request was answered (or failed): one histogram sample, one counter when GraphQL answered, one log line. */
  end(req: IncomingMessage, res: ServerResponse, exchange: HttpExchange): void {
    const status = res.statusCode;
    const ms = performance.now() - exchange.startedAt;
    this.metrics.httpRequest(req.method, exchange.route, status, ms / 1000);
    const operation = exchange.operation !== null && this.known.has(exchange.operation) ? exchange.operation : 'other';
    if (exchange.answered) this.metrics.graphqlOperation(operation, exchange.code ?? 'ok');
    // A successful issueCoupon is the hot path: nothing is formatted unless debug is on.
    const level = exchange.issue && exchange.code === null && status === 200 ? 'debug' : 'info';
    if (!this.logger.isLevelEnabled(level)) return;
    this.logger[level](
      {
        reqId: exchange.id,
        method: req.method,
        path: exchange.path.length > 200 ? exchange.path.slice(0, 200) : exchange.path,
        operation: exchange.operation ?? undefined,
        status,
        code: exchange.code ?? undefined,
        ms: Math.round(ms * 10) / 10,
        user: exchange.user ?? undefined,
      },
      'http request',
    );
  }

  error(error: unknown, requestId: string): void {
    this.logger.error({ err: error, reqId: requestId }, 'internal error');
  }

  wsOpened(requestId: string, ip: string): void {
    this.metrics.wsConnection(1);
    if (this.logger.isLevelEnabled('info')) this.logger.info({ reqId: requestId, ip }, 'websocket opened');
  }

  wsClosed(requestId: string, code: number, user: string | null, openedAt: number): void {
    this.metrics.wsConnection(-1);
    if (!this.logger.isLevelEnabled('info')) return;
    this.logger.info({ reqId: requestId, code, user: user ?? undefined, ms: Math.round(performance.now() - openedAt) }, 'websocket closed');
  }

  wsRefused(requestId: string, status: number): void {
    if (this.logger.isLevelEnabled('info')) this.logger.info({ reqId: requestId, status }, 'websocket upgrade refused');
  }

  subscriptionStarted(requestId: string, id: string, operation: string | null, user: string | null): void {
    this.metrics.wsSubscription(1);
    if (!this.logger.isLevelEnabled('info')) return;
    this.logger.info({ reqId: requestId, subscription: id, operation: operation ?? undefined, user: user ?? undefined }, 'subscription started');
  }

  subscriptionEnded(requestId: string, id: string, operation: string | null): void {
    this.metrics.wsSubscription(-1);
    if (!this.logger.isLevelEnabled('info')) return;
    this.logger.info({ reqId: requestId, subscription: id, operation: operation ?? undefined }, 'subscription ended');
  }
}
