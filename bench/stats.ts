/** Percentiles and histograms of latency samples (pure, for the report and the chart). */

/** The p-th percentile (0..100) by nearest rank of an ascending array; null for no samples. */
export function percentileOfSorted(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  if (p <= 0) return sorted[0] as number;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

export interface Distribution {
  count: number;
  min: number;
  mean: number;
  max: number;
  /** [p, value] at the standard points. */
  percentiles: [number, number][];
}

export const PERCENTILE_POINTS = [1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100];

export function distribution(samples: readonly number[]): Distribution | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    min: sorted[0] as number,
    mean: sum / sorted.length,
    max: sorted[sorted.length - 1] as number,
    percentiles: PERCENTILE_POINTS.map((p) => [p, percentileOfSorted(sorted, p) as number]),
  };
}

export const pAt = (d: Distribution | null, p: number): number | null => d?.percentiles.find(([q]) => q === p)?.[1] ?? null;

/**
 * Counts per bucket with edges growing by a constant factor (log scale, as latencies spread over decades):
 * bucket i holds [edges[i], edges[i+1]); the last bucket also holds the maximum.
 */
export function logHistogram(samples: readonly number[], buckets: number): { edges: number[]; counts: number[] } {
  if (samples.length === 0 || buckets < 1) return { edges: [], counts: [] };
  const lo = Math.max(0.1, Math.min(...samples));
  const hi = Math.max(lo * 1.0001, Math.max(...samples));
  const factor = (hi / lo) ** (1 / buckets);
  const edges = Array.from({ length: buckets + 1 }, (_, i) => lo * factor ** i);
  const counts: number[] = new Array<number>(buckets).fill(0);
  for (const s of samples) {
    const i = s <= lo ? 0 : Math.min(buckets - 1, Math.floor(Math.log(s / lo) / Math.log(factor)));
    counts[i] = (counts[i] as number) + 1;
  }
  return { edges, counts };
}
