import { unwrapResolverError } from '@apollo/server/errors';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { ForbiddenError, InputError, NotFoundError, RateLimitedError, UnauthenticatedError, UnavailableError } from '../domain/errors';

export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'BAD_USER_INPUT',
  'NOT_FOUND',
  'RATE_LIMITED',
  'SERVICE_UNAVAILABLE',
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'QUERY_TOO_COMPLEX',
  'INTERNAL_SERVER_ERROR',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

const KNOWN_CODES = new Set<string>(ERROR_CODES);

/** Apollo's own codes for requests it cannot run, mapped into the contract's list. */
const APOLLO_CODES: Record<string, ErrorCode> = {
  BAD_REQUEST: 'GRAPHQL_PARSE_FAILED', // no query, or a request Apollo cannot read
  OPERATION_RESOLUTION_FAILURE: 'GRAPHQL_VALIDATION_FAILED', // operationName names no operation
  PERSISTED_QUERY_NOT_FOUND: 'GRAPHQL_VALIDATION_FAILED',
  PERSISTED_QUERY_NOT_SUPPORTED: 'GRAPHQL_VALIDATION_FAILED',
};

/** The code and safe extensions of a domain error, or null when it is not one. */
function domainError(error: unknown): { code: ErrorCode; message: string; extra?: Record<string, unknown> } | null {
  if (error instanceof InputError) return { code: 'BAD_USER_INPUT', message: error.message, extra: { field: error.field } };
  if (error instanceof NotFoundError) return { code: 'NOT_FOUND', message: error.message };
  if (error instanceof UnauthenticatedError) return { code: 'UNAUTHENTICATED', message: error.message };
  if (error instanceof ForbiddenError) return { code: 'FORBIDDEN', message: error.message };
  if (error instanceof RateLimitedError) return { code: 'RATE_LIMITED', message: error.message, extra: { retryAfterMs: error.retryAfterMs } };
  if (error instanceof UnavailableError) {
    return { code: 'SERVICE_UNAVAILABLE', message: error.message, extra: { retryAfterMs: error.retryAfterMs } };
  }
  return null;
}

/**
 * Every error leaves with extensions.code from the contract. Anything unexpected becomes
 * INTERNAL_SERVER_ERROR with a generic message; stack traces only when NODE_ENV=development.
 */
export function createErrorFormatter(options: {
  development: boolean;
  onInternal: (error: unknown) => void;
  /** An infrastructure failure (Redis unreachable) as a domain error (UnavailableError), else unchanged. */
  translate?: (error: unknown) => unknown;
}) {
  const translate = options.translate ?? ((error: unknown) => error);
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    let original = unwrapResolverError(error);
    // graphql-ws wraps an error thrown by a subscription's stream (after its first event) without a path.
    if (original instanceof GraphQLError && original.originalError) original = original.originalError;
    original = translate(original);
    const known = domainError(original);
    if (known) {
      return { ...formatted, message: known.message, extensions: { code: known.code, ...known.extra } };
    }
    const raw = formatted.extensions?.code;
    const code = typeof raw === 'string' ? (APOLLO_CODES[raw] ?? raw) : undefined;
    if (code !== undefined && KNOWN_CODES.has(code) && code !== 'INTERNAL_SERVER_ERROR') {
      const { stacktrace, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions: { ...extensions, code, ...(options.development ? { stacktrace } : {}) } };
    }
    options.onInternal(original);
    if (options.development) return { ...formatted, extensions: { ...formatted.extensions, code: 'INTERNAL_SERVER_ERROR' } };
    return { message: 'Internal server error', locations: formatted.locations, path: formatted.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
  };
}
