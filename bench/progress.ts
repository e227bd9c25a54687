/**
 * A progress line on stderr during long phases (phase, elapsed, answers a second so far), from a probe the
 * phase supplies (a server-side count of answers: the generator reports only at its end). The same samples
 * make the throughput-over-time curves of the chart.
 */
export type Probe = () => Promise<number>;

export interface Timeline {
  label: string;
  /** [seconds since the phase started, answers a second over the last interval]. */
  points: [number, number][];
}

export class Progress {
  private timer: NodeJS.Timeout | null = null;
  private readonly started = performance.now();
  private last: { atMs: number; count: number } | null = null;
  private first: { atMs: number; count: number } | null = null;
  readonly timeline: Timeline;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly phase: string,
    private readonly probe: Probe | null,
    private readonly expectedSeconds: number | null,
  ) {
    this.timeline = { label: phase, points: [] };
  }

  start(): this {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), 1000);
    return this;
  }

  private async sample(): Promise<void> {
    const atMs = performance.now();
    const count = this.probe ? await this.probe().catch(() => null) : null;
    const elapsed = (atMs - this.started) / 1000;
    let rate = '';
    if (count !== null) {
      if (this.last && atMs > this.last.atMs) {
        const perSecond = ((count - this.last.count) * 1000) / (atMs - this.last.atMs);
        this.timeline.points.push([Math.round(elapsed * 10) / 10, perSecond]);
        const mean = this.first ? ((count - this.first.count) * 1000) / (atMs - this.first.atMs) : perSecond;
        rate = `, ${Math.round(perSecond).toLocaleString('en-US')} req/s now, ${Math.round(mean).toLocaleString('en-US')} req/s so far`;
      }
      this.first ??= { atMs, count };
      this.last = { atMs, count };
    }
    if (this.timer === null && this.timeline.points.length > 0) return; // stopped meanwhile
    const of = this.expectedSeconds === null ? '' : ` / ${this.expectedSeconds} s`;
    const line = `bench: [${this.phase}] ${elapsed.toFixed(0)} s${of}${rate}`;
    // On a terminal the line is rewritten in place; in a log, one line every 5 s is enough.
    if (this.tty) process.stderr.write(`\r\x1b[K${line}`);
    else if (Math.round(elapsed) % 5 === 0) process.stderr.write(`${line}\n`);
  }

  stop(): Timeline {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.tty) process.stderr.write('\r\x1b[K');
    return this.timeline;
  }
}

/** A probe reading a JSON count a server exposes (bench servers' GET /count). */
export const countProbe =
  (urls: string[], field = 'answered'): Probe =>
  async () => {
    let sum = 0;
    for (const url of urls) sum += Number(((await (await fetch(url)).json()) as Record<string, unknown>)[field] ?? 0);
    return sum;
  };

/** A probe summing coupon_issue_outcomes_total over every outcome, from the services' /metrics. */
export const metricsProbe =
  (baseUrls: string[]): Probe =>
  async () => {
    let sum = 0;
    for (const base of baseUrls) {
      const text = await (await fetch(`${base}/metrics`)).text();
      for (const m of text.matchAll(/^coupon_issue_outcomes_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
    }
    return sum;
  };
