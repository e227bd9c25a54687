/** The side-by-side run's result (also written as JSON) and its markdown, bench/results/compare.md. */
import type { StageReport } from './stages';
import type { DrainResult } from './drain';
import { pAt, type Distribution } from './stats';

export interface TargetResult {
  label: string;
  role: 'ceiling' | 'service' | 'sync-db' | 'seed' | 'two-api';
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  percentiles: [number, number][];
  requests: number;
  non2xx: number;
  errors: number;
  outcomes: Record<string, number>;
  generator: { kind: string; cpuPercent: number; cpuCapacity: number; saturated: boolean };
  /** % of one core by process name (server, server 2, consumer, redis, postgres, loadgen = the bench process). */
  cpu: { percent: Record<string, number>; machinePercent: number | null; othersPercent: number | null };
  vsCeiling: number | null;
  vsSyncDb: number | null;
  invariant: { given: number; rows: number; usersOver: number; holds: boolean } | null;
}

export type HalfLoadResult = NonNullable<CompareResult['halfLoad']>;

export interface CompareResult {
  startedAt: string;
  machine: { node: string; cores: number; cpu: string };
  settings: { generator: string; threads: number; connections: number; durationSeconds: number; warmupSeconds: number; users: number; phases: string[] };
  targets: TargetResult[];
  seed: { backlog: number; storedPerSecond: number; secondsToStore: number | null; measuredSeconds: number } | null;
  sale: {
    users: number;
    stock: number;
    sample: number;
    socketsOpen: number;
    socketsFailed: number;
    crowd: { requests: number; unanswered: number; requestsPerSecond: number; p50Ms: number; p99Ms: number; outcomes: Record<string, number>; errors: number; generatorCpuPercent: number; saturated: boolean };
    crowdSeconds: number;
    sampleOutcomes: Record<string, number>;
    soldOutSeconds: number | null;
    allStoredSeconds: number | null;
    confirmations: Distribution | null;
    unconfirmed: number;
    closedMeanwhile: number;
    invariant: { given: number; rows: number; usersOver: number; holds: boolean; exactlyStock: boolean };
  } | null;
  halfLoad: {
    ratePerSecond: number;
    maxPerSecond: number;
    durationSeconds: number;
    socketsOpen: number;
    socketsFailed: number;
    sent: number;
    answered: number;
    failed: number;
    outcomes: Record<string, number>;
    http: Distribution | null;
    confirmations: Distribution | null;
    unconfirmed: number;
    closedMeanwhile: number;
    serverCpuPercent: number | null;
    /** The child process holding the sockets and sending the mutations: the generator of this phase. */
    clientCpuPercent: number | null;
    /** The service's own stage histograms over the phase (bench/stages.ts), all its processes added up. */
    stages?: StageReport;
    /** % of one core of each server process, when there are several. */
    serverCpuByProcess?: Record<string, number>;
  } | null;
  /** The same phase in the split layout: two ROLE=api processes holding the sockets, one ROLE=consumer. */
  halfLoadSplit?: CompareResult['halfLoad'];
  rss: {
    sockets: number;
    failed: number;
    subscriptions: number | null;
    rssBeforeBytes: number | null;
    rssAfterBytes: number | null;
    bytesPerSocket: number | null;
    openSeconds: number;
    /** Sockets where the server accepted the permessage-deflate the client offered. */
    compressed: number;
  } | null;
  /** The consumer on a 200,000-request backlog beside raw inserts of the same rows (bench/drain.ts). */
  drain: DrainResult | null;
  notes: string[];
  /** The chart's file name, next to the report. */
  chart: string;
}

const fmt = (n: number | null | undefined, digits = 0) =>
  n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ratio = (n: number | null) => (n === null ? '-' : `${fmt(n, 2)}×`);
const pct = (n: number | undefined | null) => (n === undefined || n === null ? '-' : `${fmt(n)} %`);
const ms = (n: number | null | undefined) => (n === null || n === undefined ? 'n/a' : `${fmt(n, n < 10 ? 1 : 0)} ms`);
const outcomes = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') || '-';
const met = (ok: boolean | null) => (ok === null ? 'not measured' : ok ? 'met' : '**not met**');

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const LABELS: Record<TargetResult['role'], string> = {
  ceiling: 'bare ceiling: node:http + issue.lua',
  service: 'service, one process (ROLE=all)',
  'sync-db': 'sync-db: UPDATE + INSERT per request',
  seed: 'seed: DECR + RPUSH',
  'two-api': 'service, 2 × ROLE=api + 1 × ROLE=consumer',
};

/** CPU µs spent per answer by each part of a run: % of one core is 10,000 µs of CPU a second. */
export function cpuPerAnswer(t: TargetResult): { servers: number; redis: number; postgres: number; generator: number; total: number } {
  const per = (percent: number | undefined) => (t.requestsPerSecond > 0 && percent !== undefined ? (percent * 10_000) / t.requestsPerSecond : Number.NaN);
  const servers = Object.entries(t.cpu.percent)
    .filter(([name]) => name.startsWith('server') || name === 'consumer')
    .reduce((sum, [, v]) => sum + v, 0);
  const parts = { servers: per(servers), redis: per(t.cpu.percent.redis ?? 0), postgres: per(t.cpu.percent.postgres ?? 0), generator: per(t.generator.cpuPercent) };
  return { ...parts, total: parts.servers + parts.redis + parts.postgres + parts.generator };
}

export function targetChecks(r: CompareResult): [string, boolean | null, string][] {
  const by = (role: TargetResult['role']) => r.targets.find((t) => t.role === role);
  const bare = by('ceiling');
  const service = by('service');
  const sync = by('sync-db');
  const checks: [string, boolean | null, string][] = [];
  const vsBare = service && bare ? service.requestsPerSecond / bare.requestsPerSecond : null;
  checks.push(['service QUEUED ≥ 0.6 × bare', vsBare === null ? null : vsBare >= 0.6, vsBare === null ? '' : `${fmt(vsBare, 2)}×`]);
  const p99 = service && bare && bare.p99Ms > 0 ? service.p99Ms / bare.p99Ms : null;
  checks.push(['service p99 ≤ 3 × bare p99', p99 === null ? null : p99 <= 3, p99 === null ? '' : `${fmt(p99, 2)}× (${ms(service?.p99Ms)} vs ${ms(bare?.p99Ms)})`]);
  const vsSync = service && sync ? service.requestsPerSecond / sync.requestsPerSecond : null;
  checks.push(['service ≥ 10 × sync-db', vsSync === null ? null : vsSync >= 10, vsSync === null ? '' : `${fmt(vsSync, 1)}×`]);
  // Judged only at half the maximum: a run at another share (--half-load-share) does not measure the target.
  for (const [h, layout] of [[r.halfLoad, ''], [r.halfLoadSplit, ', split layout']] as const) {
    if (h === undefined || (h === null && layout !== '')) continue;
    const atHalf = h ? Math.abs(h.ratePerSecond * 2 - h.maxPerSecond) <= 1 : false;
    const confirm = atHalf ? pAt(h?.confirmations ?? null, 99) : null;
    checks.push([
      `answer→ISSUED p99 ≤ 50 ms at half load with ${fmt(h?.socketsOpen ?? null)} sockets${layout}`,
      confirm === null ? null : confirm <= 50,
      confirm === null ? '' : ms(confirm),
    ]);
  }
  const perSocket = r.rss?.bytesPerSocket ?? null;
  checks.push(['RSS per subscribed socket ≤ 10 KiB', perSocket === null ? null : perSocket <= 10 * 1024, perSocket === null ? '' : `${fmt(perSocket / 1024, 1)} KiB`]);
  const drainRatio = r.drain?.consumers.at(-1)?.ratioToSameMethod ?? null;
  checks.push(['consumer ≥ 0.7 × a raw insert by its own method', drainRatio === null ? null : drainRatio >= 0.7, drainRatio === null ? '' : `${fmt(drainRatio, 2)}×`]);
  return checks;
}

export function renderCompare(r: CompareResult): string {
  const s = r.settings;
  const out: string[] = [
    `## Coupon issuance, side by side: ${r.startedAt.slice(0, 16)}Z`,
    '',
    `node ${r.machine.node} · ${r.machine.cores} cores (${r.machine.cpu}) · generator ${s.generator} · ${s.connections} connections · ` +
      `${s.durationSeconds} s per target (+${s.warmupSeconds} s warm-up) · ${fmt(s.users)} users rotated`,
    '',
    `![throughput over time and latency distribution](${r.chart})`,
    '',
  ];
  if (r.targets.length) {
    out.push(
      table(
        ['target', 'req/s', '× ceiling', '× sync-db', 'p50', 'p99', 'answers', 'errors / non-2xx', 'generator CPU'],
        r.targets.map((t) => [
          LABELS[t.role],
          fmt(t.requestsPerSecond),
          ratio(t.vsCeiling),
          ratio(t.vsSyncDb),
          ms(t.p50Ms),
          ms(t.p99Ms),
          outcomes(t.outcomes),
          `${fmt(t.errors)} / ${fmt(t.non2xx)}`,
          `${pct(t.generator.cpuPercent)} of ${t.generator.cpuCapacity * 100} %${t.generator.saturated ? ' **saturated**' : ''}`,
        ]),
      ),
      '',
      'CPU during each measured run, % of one core (bench: the bench process itself; others: everything else on the machine):',
      '',
      table(
        ['target', 'server(s)', 'redis', 'postgres', 'load generator', 'bench', 'others', 'machine'],
        r.targets.map((t) => {
          const servers = Object.entries(t.cpu.percent)
            .filter(([k]) => k.startsWith('server') || k === 'consumer')
            .map(([k, v]) => `${k} ${pct(v)}`)
            .join(', ');
          return [t.label, servers || '-', pct(t.cpu.percent.redis), pct(t.cpu.percent.postgres), pct(t.generator.cpuPercent), pct(t.cpu.percent.loadgen), pct(t.cpu.othersPercent), pct(t.cpu.machinePercent)];
        }),
      ),
    );
    out.push(
      '',
      'CPU per answer, µs (% of a core × 10,000 ÷ req/s): on 2 cores the machine, not one process, is the limit, so ' +
        'what each design spends per answer, wherever it spends it, is what its throughput can be:',
      '',
      table(
        ['target', 'server(s)', 'redis', 'postgres', 'load generator', 'all of these'],
        r.targets.map((t) => {
          const c = cpuPerAnswer(t);
          return [t.label, fmt(c.servers), fmt(c.redis), fmt(c.postgres), fmt(c.generator), fmt(c.total)];
        }),
      ),
    );
    const one = r.targets.find((t) => t.role === 'service');
    const two = r.targets.find((t) => t.role === 'two-api');
    if (one && two) {
      out.push('', `Two ROLE=api processes + one ROLE=consumer against one ROLE=all process, on this machine: **${fmt(two.requestsPerSecond / one.requestsPerSecond, 2)}×**.`);
    }
    const checked = r.targets.filter((t) => t.invariant);
    if (checked.length) {
      out.push(
        '',
        'Once stored: QUEUED answers given == coupon rows, nobody over the per-user limit: ' +
          checked.map((t) => `${t.label} ${fmt(t.invariant?.rows)} rows ${t.invariant?.holds ? 'ok' : '**FAILED**'}`).join(' · '),
      );
    }
  }
  if (r.seed) {
    out.push(
      '',
      `Seed design's backlog: ${fmt(r.seed.backlog)} requests queued in Redis when its run ended; its consumer stored ${fmt(r.seed.storedPerSecond, 1)} a second ` +
        `(measured over ${r.seed.measuredSeconds} s), so storing them all takes **${r.seed.secondsToStore === null ? 'n/a' : `${fmt(r.seed.secondsToStore / 60, 1)} minutes`}** (extrapolated, not waited for).`,
    );
  }
  const sale = r.sale;
  if (sale) {
    const c = sale.confirmations;
    out.push(
      '',
      `### Sale: ${fmt(sale.stock)} coupons, ${fmt(sale.users)} distinct users at once, ${fmt(sale.socketsOpen)} of them subscribed`,
      '',
      table(
        ['figure', 'value'],
        [
          ['time to sold out (first request → stock reserved)', sale.soldOutSeconds === null ? 'not sold out' : `${fmt(sale.soldOutSeconds, 2)} s`],
          ['time until every coupon is stored', sale.allStoredSeconds === null ? 'not within the bound' : `${fmt(sale.allStoredSeconds, 2)} s`],
          ['all users answered after', `${fmt(sale.crowdSeconds, 2)} s (${fmt(sale.crowd.requestsPerSecond)} req/s, p50 ${ms(sale.crowd.p50Ms)}, p99 ${ms(sale.crowd.p99Ms)})`],
          ['crowd answers', `${outcomes(sale.crowd.outcomes)}${sale.crowd.unanswered ? `, never answered ${fmt(sale.crowd.unanswered)}` : ''}`],
          ['subscribed sample answers', outcomes(sale.sampleOutcomes)],
          [
            'confirmation latency (answer→ISSUED on the socket)',
            c ? `p50 ${ms(pAt(c, 50))} · p90 ${ms(pAt(c, 90))} · p99 ${ms(pAt(c, 99))} · max ${ms(c.max)} (${fmt(c.count)} confirmations)` : 'none',
          ],
          ['QUEUED answers with no ISSUED event (30 s bound) · sockets closed meanwhile', `${fmt(sale.unconfirmed)} · ${fmt(sale.closedMeanwhile)}`],
          [
            'invariant: exactly the stock stored, nobody over the limit',
            `${fmt(sale.invariant.rows)} rows, ${fmt(sale.invariant.usersOver)} users over: ${sale.invariant.holds && sale.invariant.exactlyStock ? 'ok' : '**FAILED**'}`,
          ],
        ],
      ),
    );
  }
  if (r.halfLoad) out.push(...halfLoadLines(r.halfLoad, 'one process (ROLE=all)'));
  if (r.halfLoadSplit) out.push(...halfLoadLines(r.halfLoadSplit, 'split layout: 2 × ROLE=api holding the sockets + 1 × ROLE=consumer'));
  const rss = r.rss;
  if (rss) {
    const per = rss.bytesPerSocket;
    out.push(
      '',
      `### RSS per subscribed socket (one ROLE=api process, ${fmt(rss.sockets)} sockets, one couponIssued each)`,
      '',
      `RSS ${fmt((rss.rssBeforeBytes ?? NaN) / 2 ** 20, 1)} MiB before, ${fmt((rss.rssAfterBytes ?? NaN) / 2 ** 20, 1)} MiB after: ` +
        `**${per === null ? 'n/a' : `${fmt(per / 1024, 1)} KiB`} per socket**; extrapolated, 100,000 sockets take ${per === null ? 'n/a' : `${fmt((per * 100_000) / 2 ** 20)} MiB`} ` +
        `(ws_subscriptions gauge: ${fmt(rss.subscriptions)}; ${fmt(rss.failed)} sockets failed to open; opened in ${fmt(rss.openSeconds, 1)} s; ` +
        `permessage-deflate offered, as browsers do, and accepted on ${fmt(rss.compressed)}).`,
    );
  }
  // drain.md's own tables, one heading level down.
  out.push('', '### Consumer drain', '', r.drain === null ? 'Not measured in this run.' : r.drain.markdown.replace(/^# .*\n+/, ''));
  out.push('', '### Targets', '', table(['target', 'measured', 'verdict'], targetChecks(r).map(([what, ok, value]) => [what, value || '-', met(ok)])));
  if (r.notes.length) out.push('', ...r.notes.map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}

/** The service's stages over the half-load phase, from its /metrics (bucket bounds, so "≤"). */
function stageLines(report: StageReport): string[] {
  const value = (label: string, v: number | null) => (v === null ? '-' : label.startsWith('batch size') ? `≤ ${fmt(v)}` : `≤ ${ms(v * 1000)}`);
  const mean = (label: string, v: number | null) => (v === null ? '-' : label.startsWith('batch size') ? fmt(v) : ms(v * 1000));
  return [
    'The path by stage, from the service\'s /metrics over the phase (p50/p99: upper bound of the histogram bucket):',
    '',
    table(
      ['stage', 'p50', 'p99', 'mean', 'observations'],
      report.stages.map((s) => [s.label, value(s.label, s.p50), value(s.label, s.p99), mean(s.label, s.mean), fmt(s.count)]),
    ),
    '',
    `Event-loop delay of the service, worst one-second scrape of the phase: p99 ${report.eventLoopLagP99 === null ? '-' : ms(report.eventLoopLagP99 * 1000)}, ` +
      `max ${report.eventLoopLagMax === null ? '-' : ms(report.eventLoopLagMax * 1000)}.`,
  ];
}

/** The half-load section of one layout. */
function halfLoadLines(h: HalfLoadResult, layout: string): string[] {
  const out: string[] = [
    '',
    `### Half load: ${fmt(h.ratePerSecond)} req/s constant arrival rate (${Math.abs(h.ratePerSecond * 2 - h.maxPerSecond) <= 1 ? 'half' : `${fmt((100 * h.ratePerSecond) / h.maxPerSecond)} %`} of ${fmt(h.maxPerSecond)}), ${fmt(h.socketsOpen)} subscribed sockets, ${layout}`,
    '',
    table(
      ['figure', 'p50', 'p90', 'p99', 'max', 'count'],
      [
        ['answer→ISSUED on the socket', ms(pAt(h.confirmations, 50)), ms(pAt(h.confirmations, 90)), ms(pAt(h.confirmations, 99)), ms(h.confirmations?.max), fmt(h.confirmations?.count ?? 0)],
        ['HTTP latency from the due time', ms(pAt(h.http, 50)), ms(pAt(h.http, 90)), ms(pAt(h.http, 99)), ms(h.http?.max), fmt(h.http?.count ?? 0)],
      ],
    ),
    '',
    `Sent ${fmt(h.sent)}, answered ${fmt(h.answered)}, failed ${fmt(h.failed)} (${outcomes(h.outcomes)}); no ISSUED event within 30 s: ${fmt(h.unconfirmed)}; ` +
      `sockets closed by the server meanwhile: ${fmt(h.closedMeanwhile)}; sockets that failed to open: ${fmt(h.socketsFailed)}; CPU: service ${pct(h.serverCpuPercent)}${h.serverCpuByProcess ? ` (${Object.entries(h.serverCpuByProcess).map(([name, p]) => `${name} ${pct(p)}`).join(', ')})` : ''}, ` +
      `the client (sockets and mutations) ${pct(h.clientCpuPercent)}${(h.clientCpuPercent ?? 0) >= 90 ? ' **saturated: the rate may not have been held**' : ''}.`,
  ];
  if (h.stages) out.push('', ...stageLines(h.stages));
  return out;
}
