/**
 * One bounded load phase with autocannon, in this process: fixed duration, fixed connections, no retries.
 * Requests rotate over many users through a counter shared by all connections, so consecutive requests
 * come from different users (as in a crowd) instead of every connection replaying the same sequence.
 */
import type { IncomingHttpHeaders } from 'node:http';
import autocannon from 'autocannon';

export interface LoadSpec {
  title: string;
  url: string;
  durationSeconds: number;
  connections: number;
  pipelining: number;
  /** Headers and body of the n-th request of the phase. */
  request(n: number): { headers?: IncomingHttpHeaders; body: string };
}

export interface LoadResult {
  title: string;
  /** Requests sent, and answered. */
  sent: number;
  requests: number;
  /**
   * Requests sent but never answered: those still in flight when the duration ended (autocannon drops
   * their connections) plus errors and timeouts. The server may have served them: the invariant allows for it.
   */
  unanswered: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  /** Connection errors and timeouts: their requests may or may not have been served. */
  errors: number;
  timeouts: number;
  /** How many answers of each `outcome` ("other" when the body had none, e.g. a GraphQL error). */
  outcomes: Map<string, number>;
  /** Date.now() of the first QUEUED answer, null when none. */
  firstQueuedAtMs: number | null;
}

const OUTCOME = '"outcome":"';

/** The outcome field of a JSON answer, found without parsing it: the load generator shares the CPU. */
function outcomeOf(body: string): string {
  const start = body.indexOf(OUTCOME);
  if (start < 0) return 'other';
  const from = start + OUTCOME.length;
  return body.slice(from, body.indexOf('"', from));
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const outcomes = new Map<string, number>();
  let firstQueuedAtMs: number | null = null;
  let built = 0; // requests built so far, across all connections: picks the next user

  const result = await autocannon({
    url: spec.url,
    method: 'POST',
    connections: spec.connections,
    pipelining: spec.pipelining,
    duration: spec.durationSeconds,
    timeout: 10,
    headers: { 'content-type': 'application/json' },
    requests: [
      {
        setupRequest: (request) => {
          const next = spec.request(built++);
          request.headers = { ...request.headers, ...next.headers };
          request.body = next.body;
          return request;
        },
        onResponse: (status, body) => {
          const outcome = status === 200 ? outcomeOf(body) : `HTTP ${status}`;
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          if (outcome === 'QUEUED' && firstQueuedAtMs === null) firstQueuedAtMs = Date.now();
        },
      },
    ],
  });

  return {
    title: spec.title,
    sent: result.requests.sent,
    requests: result.requests.total,
    unanswered: Math.max(0, result.requests.sent - result.requests.total),
    requestsPerSecond: result.requests.total / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    outcomes,
    firstQueuedAtMs,
  };
}
