/**
 * The fallback load generator when wrk is absent: autocannon in a child process of its own (so the bench
 * process's event loop is not what limits), replaying the same request file as bench/wrk/rotate.lua and
 * answering with the same JSON shape. Driven over IPC by bench/generator.ts.
 */
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

interface Job {
  url: string;
  file: string;
  connections: number;
  durationSeconds: number;
  once: boolean;
}

process.once('message', (job: Job) => {
  const lines = readFileSync(job.file, 'utf8').split('\n').filter(Boolean);
  const requests = lines.map((line) => {
    const tab = line.indexOf('\t');
    const authorization = line.slice(0, tab);
    return { headers: authorization ? { authorization } : {}, body: line.slice(tab + 1) };
  });
  const outcomes: Record<string, number> = {};
  let next = 0;
  const instance = autocannon(
    {
      url: job.url,
      method: 'POST',
      connections: job.connections,
      duration: job.durationSeconds,
      ...(job.once ? { amount: requests.length } : {}),
      timeout: 10,
      headers: { 'content-type': 'application/json' },
      requests: [
        {
          setupRequest: (request) => {
            const r = requests[next++ % requests.length] as (typeof requests)[number];
            request.headers = { ...request.headers, ...r.headers };
            request.body = r.body;
            return request;
          },
          onResponse: (status, body) => {
            const match = status === 200 ? /"outcome":"([A-Z_]+)"/.exec(body) : null;
            const outcome = status === 200 ? (match?.[1] ?? 'other') : `HTTP ${status}`;
            outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          },
        },
      ],
    },
    (error, result) => {
      if (error) throw error;
      const percentiles: Record<string, number> = {};
      const l = result.latency as unknown as Record<string, number>;
      for (const [p, key] of [[1, 'p1'], [2.5, 'p2_5'], [10, 'p10'], [25, 'p25'], [50, 'p50'], [75, 'p75'], [90, 'p90'], [97.5, 'p97_5'], [99, 'p99'], [99.9, 'p99_9'], [99.99, 'p99_99'], [100, 'max']] as const) {
        percentiles[String(p)] = (l[key] ?? 0) * 1000;
      }
      process.send?.(
        {
          durationUs: result.duration * 1e6,
          requests: result.requests.total,
          errors: { connect: result.errors, read: 0, write: 0, status: result.non2xx, timeout: result.timeouts },
          latencyUs: { mean: result.latency.mean * 1000, max: result.latency.max * 1000, percentiles },
          outcomes,
        },
        () => process.exit(0),
      );
    },
  );
  process.once('SIGTERM', () => instance.stop());
});
