/** Errors the use cases raise; the API layer maps each to one GraphQL error code. */

export class InputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InputError';
  }
}

export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what} not found`);
    this.name = 'NotFoundError';
  }
}

export class UnauthenticatedError extends Error {
  constructor(message = 'Authentication required') {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

export class ForbiddenError extends Error {
  constructor(message = 'Not allowed') {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** A dependency could not answer or confirm in time; the client may retry after retryAfterMs. */
export class UnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'UnavailableError';
  }
}

/** A rate limit refused the call: nothing was done; the client may try again after retryAfterMs. */
export class RateLimitedError extends Error {
  constructor(readonly retryAfterMs: number) {
    super('Rate limit exceeded: try again later');
    this.name = 'RateLimitedError';
    // Refusals are what a hammering client gets, by the thousand: a fixed stack spares formatting one per call
    // (graphql-js copies the original error's stack, which makes V8 format it), and it would say nothing anyway.
    this.stack = `${this.name}: ${this.message}`;
  }
}
