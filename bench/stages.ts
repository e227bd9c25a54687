/**
 * The path from commit to socket by stage, from the service's own /metrics: two scrapes around a phase, the
 * difference of each histogram's buckets, and its percentiles read off those buckets (the upper bound of the
 * bucket the rank falls in, as Prometheus' histogram_quantile does without interpolation). Explains an
 * answer→ISSUED tail: which stage holds it, and whether the event loop stalled meanwhile.
 */

/** The histograms of the path, in path order, with a label for the report. */
export const STAGE_HISTOGRAMS = [
  { label: 'queue wait (QUEUED → read by the consumer)', name: 'coupon_consumer_queue_wait_seconds', labels: '' },
  { label: 'batch size (entries)', name: 'coupon_consumer_batch_size', labels: '' },
  { label: 'insert (one batch)', name: 'coupon_consumer_batch_stage_seconds', labels: 'stage="insert"' },
  { label: 'confirm (one batch: ISSUED, publish, XACK)', name: 'coupon_consumer_batch_stage_seconds', labels: 'stage="confirm"' },
  { label: 'publish → feed (pub/sub, this process)', name: 'coupon_publish_to_socket_seconds', labels: '' },
  { label: 'QUEUED → confirmed (consumer side)', name: 'coupon_issue_to_confirmation_seconds', labels: '' },
] as const;

export interface StageFigure {
  label: string;
  /** Seconds, except for the batch size (entries); null when nothing was observed. */
  p50: number | null;
  p99: number | null;
  count: number;
  /** Mean, from _sum / _count. */
  mean: number | null;
}

export interface StageReport {
  stages: StageFigure[];
  /** prom-client's event-loop delay over the phase (its histogram is reset at every scrape): seconds. */
  eventLoopLagP99: number | null;
  eventLoopLagMax: number | null;
}

type Buckets = Map<number, number>;

/**
 * le → cumulative count of one histogram series (its labels include `labels`, in any order), its _sum and _count.
 * Several processes' scrapes joined into one text add up.
 */
function series(text: string, name: string, labels: string): { buckets: Buckets; sum: number; count: number } {
  const buckets: Buckets = new Map();
  let sum = 0;
  let count = 0;
  for (const m of text.matchAll(new RegExp(`^${name}_(bucket|sum|count)(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    const [, kind, labelText = '', value] = m;
    const pairs = labelText.split(',').filter((p) => !p.startsWith('le='));
    if (labels && !pairs.includes(labels)) continue;
    if (kind === 'sum') sum += Number(value);
    else if (kind === 'count') count += Number(value);
    else {
      const le = /le="([^"]+)"/.exec(labelText)?.[1] ?? '+Inf';
      const bound = le === '+Inf' ? Infinity : Number(le);
      buckets.set(bound, (buckets.get(bound) ?? 0) + Number(value));
    }
  }
  return { buckets, sum, count };
}

/** The q-quantile (0..1) of cumulative bucket counts: the upper bound of the bucket holding that rank. */
export function bucketQuantile(cumulative: [le: number, count: number][], q: number): number | null {
  const total = cumulative.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (const [le, count] of cumulative) if (count >= rank) return le;
  return null;
}

/** The stages between two scrapes of one process's /metrics. */
export function stagesBetween(before: string, after: string): StageReport {
  const stages = STAGE_HISTOGRAMS.map(({ label, name, labels }) => {
    const a = series(before, name, labels);
    const b = series(after, name, labels);
    const cumulative = [...b.buckets].sort(([x], [y]) => x - y).map(([le, n]): [number, number] => [le, n - (a.buckets.get(le) ?? 0)]);
    const count = b.count - a.count;
    return {
      label,
      p50: bucketQuantile(cumulative, 0.5),
      p99: bucketQuantile(cumulative, 0.99),
      count,
      mean: count > 0 ? (b.sum - a.sum) / count : null,
    };
  });
  const gauge = (name: string) => {
    const v = new RegExp(`^${name} (\\S+)$`, 'm').exec(after)?.[1];
    return v === undefined ? null : Number(v);
  };
  return { stages, eventLoopLagP99: gauge('nodejs_eventloop_lag_p99_seconds'), eventLoopLagMax: gauge('nodejs_eventloop_lag_max_seconds') };
}

/** One or several processes' /metrics, joined (their histograms then add up in stagesBetween). */
export async function scrapeMetrics(...baseUrls: string[]): Promise<string> {
  return (await Promise.all(baseUrls.map(async (url) => (await fetch(`${url}/metrics`)).text()))).join('\n');
}
