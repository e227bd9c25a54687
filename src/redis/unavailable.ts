import { UnavailableError } from '../domain/errors';

/** How long a client is told to wait after Redis could not answer: about one failover's worth of topology refresh. */
const RETRY_AFTER_MS = 1000;

/** Replies of a node that cannot take the command now: a cluster between topologies, a node loading, demoted or busy. */
const TRANSIENT_REPLY = /^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK|LOADING|READONLY|MASTERDOWN|NOREPLICAS|BUSY)\b/;
/** The client's own errors when a node is unreachable (ioredis messages). */
const UNREACHABLE = /Connection is closed|Too many Cluster redirections|Command timed out|Stream isn't writeable|Reached the max retries|Failed to refresh slots cache|Cluster isn't ready|Cluster is ended|None of startup nodes is available|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE/;

/**
 * A write that failed because Redis was unreachable or failing over becomes SERVICE_UNAVAILABLE with a retry
 * delay (the write may or may not have run: a retry with the same idempotency key answers what it became).
 * Anything else (a script error, a bug) is returned as it is.
 */
export function unavailableWhenRedisDown(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof UnavailableError) return error;
  const transient = error.name === 'ReplyError' ? TRANSIENT_REPLY.test(error.message) : UNREACHABLE.test(error.message) || error.name === 'MaxRetriesPerRequestError' || error.name === 'ClusterAllFailedError';
  return transient ? new UnavailableError('Redis could not take the request now (unreachable or failing over)', RETRY_AFTER_MS) : error;
}
