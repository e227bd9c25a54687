/** The benchmark's outcome as markdown: printed at the end and written to bench/results/latest.md. */
import type { CpuUsage } from './cpu';
import type { LoadResult } from './load';

export interface PhaseReport {
  label: string;
  load: LoadResult;
  cpu: CpuUsage;
  /** Requests/s of this phase over the bare server's, when this is a service phase. */
  vsBare: number | null;
}

export interface InvariantRow {
  promotion: string;
  stock: number;
  /** QUEUED answers the load generator received. */
  queuedAnswers: number;
  /** Requests sent to this promotion whose answer the load generator never saw. */
  unanswered: number;
  /** QUEUED answers the service gave (the promotion's reservation sequence in Redis). */
  reservations: number;
  rows: number;
}

/** Every QUEUED answer became exactly one coupon, never beyond the stock, and the client saw all it could. */
export const invariantHolds = (r: InvariantRow): boolean =>
  r.rows === r.reservations &&
  r.rows <= r.stock &&
  r.queuedAnswers <= r.reservations &&
  r.reservations <= r.queuedAnswers + r.unanswered;

export interface ConsumerReport {
  rows: number;
  /** From the first QUEUED answer to the last coupon row, seconds. */
  spanSeconds: number | null;
  backlogAtQueuedPhaseEnd: number;
  /** From the end of the QUEUED phase to the last coupon row, seconds. */
  drainedAfterSeconds: number | null;
  metricsPersisted: number;
  metricsQueued: number;
  meanConfirmationMs: number | null;
}

export interface Report {
  heading: string;
  phases: PhaseReport[];
  invariants: InvariantRow[];
  consumer: ConsumerReport | null;
  notes: string[];
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const pct = (n: number | undefined) => (n === undefined ? 'n/a' : `${fmt(n)} %`);

function outcomes(load: LoadResult): string {
  return [...load.outcomes.entries()].map(([k, v]) => `${k} ${fmt(v)}`).join(', ') || '-';
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function renderReport(report: Report): string {
  const out: string[] = [report.heading, ''];
  out.push(
    table(
      ['phase', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors / timeouts', 'answers', 'service / bare'],
      report.phases.map((p) => [
        p.label,
        fmt(p.load.requestsPerSecond),
        fmt(p.load.p50Ms),
        fmt(p.load.p99Ms),
        fmt(p.load.non2xx),
        `${fmt(p.load.errors)} / ${fmt(p.load.timeouts)}`,
        outcomes(p.load),
        p.vsBare === null ? '-' : `${fmt(p.vsBare, 2)}`,
      ]),
    ),
    '',
    'CPU during each phase, in % of one core (machine: % of all cores together; others: whatever else ran meanwhile):',
    '',
    table(
      ['phase', 'server process', 'redis', 'postgres (all)', 'load generator', 'bench process', 'others', 'machine'],
      report.phases.map((p) => [
        p.label,
        pct(p.cpu.percent.get('server')),
        pct(p.cpu.percent.get('redis')),
        pct(p.cpu.percent.get('postgres')),
        pct(p.cpu.percent.get('generator')),
        pct(p.cpu.percent.get('loadgen')),
        pct(p.cpu.othersPercent ?? undefined),
        pct(p.cpu.machinePercent ?? undefined),
      ]),
    ),
  );

  if (report.invariants.length) {
    out.push(
      '',
      'Invariant once the queue drained: QUEUED answers given (reservations) == coupon rows <= stock. The load generator',
      'drops the requests still in flight when a phase ends, so the answers it received are checked within that margin.',
      '',
      table(
        ['promotion', 'stock', 'QUEUED answers received', 'unanswered at phase end', 'QUEUED answers given', 'coupon rows', 'check'],
        report.invariants.map((r) => [
          r.promotion,
          fmt(r.stock),
          fmt(r.queuedAnswers),
          fmt(r.unanswered),
          fmt(r.reservations),
          fmt(r.rows),
          invariantHolds(r) ? 'ok' : '**FAILED**',
        ]),
      ),
    );
  }

  const c = report.consumer;
  if (c) {
    const rate = c.spanSeconds ? `${fmt(c.rows / c.spanSeconds)} coupons/s` : 'n/a';
    out.push(
      '',
      table(
        ['consumer', 'value'],
        [
          ['coupons stored (all promotions)', fmt(c.rows)],
          ['first QUEUED answer → last coupon row', c.spanSeconds === null ? 'n/a' : `${fmt(c.spanSeconds, 2)} s`],
          ['throughput over that span', rate],
          ['backlog when the QUEUED phase ended', fmt(c.backlogAtQueuedPhaseEnd)],
          ['its last row stored after the QUEUED phase ended', c.drainedAfterSeconds === null ? 'n/a' : `${fmt(c.drainedAfterSeconds, 2)} s`],
          ['mean QUEUED → ISSUED (from /metrics)', c.meanConfirmationMs === null ? 'n/a' : `${fmt(c.meanConfirmationMs)} ms`],
          ['/metrics coupon_persisted_total · QUEUED outcomes', `${fmt(c.metricsPersisted)} · ${fmt(c.metricsQueued)}`],
        ],
      ),
    );
  }
  if (report.notes.length) out.push('', ...report.notes.map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}
