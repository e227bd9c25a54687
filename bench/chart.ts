/**
 * The chart next to the report: a self-contained SVG (no script, no fonts or files fetched) with
 *   1. throughput per target, as bars, with its ratio to the ceiling;
 *   2. throughput over time, one line per phase (from the progress samples);
 *   3. latency distribution, one percentile curve per target on a "nines" axis (p50 … p99.99, max).
 */
import type { Timeline } from './progress';

export interface ChartInput {
  title: string;
  bars?: { label: string; value: number; note: string }[];
  timelines: Timeline[];
  latencies: { label: string; percentiles: [number, number][] }[];
}

const W = 960;
const PANEL_H = 260;
const M = { left: 70, right: 240, top: 40, bottom: 40 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

export const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] as string);
const n = (v: number) => (Number.isFinite(v) ? Math.round(v * 10) / 10 : 0);

/** Round axis steps: 1, 2, 5 × 10^k, about `count` of them, from 0 to the first at or above max. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * pow >= raw) ?? 10) * pow;
  // The last tick is at or above max, so that the axis holds every point.
  const count_ = Math.ceil(max / step - 1e-9);
  return Array.from({ length: count_ + 1 }, (_, i) => Math.round(i * step * 1e6) / 1e6);
}

/** x position of a percentile on the nines axis: p50 → 0.3, p90 → 1, p99 → 2, p99.9 → 3; max (p100) at 4.5. */
export const ninesOf = (p: number) => (p >= 100 ? 4.5 : Math.min(4, -Math.log10(1 - p / 100)));

const label = (x: number, y: number, text: string, extra = '') => `<text x="${n(x)}" y="${n(y)}" ${extra}>${escapeXml(text)}</text>`;

function frame(top: number, title: string): { parts: string[]; x0: number; x1: number; y0: number; y1: number } {
  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = top + PANEL_H - M.bottom;
  const y1 = top + M.top;
  return { parts: [label(x0, top + 24, title, 'class="h"'), `<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" class="plot"/>`], x0, x1, y0, y1 };
}

function legend(items: string[], x: number, y: number): string[] {
  return items.flatMap((text, i) => [
    `<rect x="${x}" y="${y + i * 20 - 9}" width="14" height="10" fill="${COLORS[i % COLORS.length]}"/>`,
    label(x + 20, y + i * 20, text),
  ]);
}

function barsPanel(top: number, bars: NonNullable<ChartInput['bars']>): string[] {
  const f = frame(top, 'Throughput (requests a second, higher is better)');
  const max = Math.max(...bars.map((b) => b.value), 1);
  const ticks = niceTicks(max);
  const scale = (v: number) => f.x0 + ((f.x1 - f.x0) * v) / (ticks[ticks.length - 1] ?? max);
  const rowH = (f.y0 - f.y1) / bars.length;
  const parts = [...f.parts];
  for (const t of ticks) parts.push(`<line x1="${n(scale(t))}" x2="${n(scale(t))}" y1="${f.y1}" y2="${f.y0}" class="grid"/>`, label(scale(t), f.y0 + 16, t.toLocaleString('en-US'), 'text-anchor="middle"'));
  bars.forEach((b, i) => {
    const y = f.y1 + i * rowH + rowH * 0.15;
    const end = scale(b.value);
    const text = `${b.label}: ${Math.round(b.value).toLocaleString('en-US')} req/s${b.note ? ` · ${b.note}` : ''}`;
    // The label goes after a short bar, inside a long one (white on the bar's colour).
    const inside = end - f.x0 > (f.x1 - f.x0) * 0.55;
    parts.push(
      `<rect x="${f.x0}" y="${n(y)}" width="${n(end - f.x0)}" height="${n(rowH * 0.7)}" fill="${COLORS[i % COLORS.length]}"/>`,
      inside ? label(end - 6, y + rowH * 0.45, text, 'text-anchor="end" fill="#fff"') : label(end + 6, y + rowH * 0.45, text),
    );
  });
  return parts;
}

function timePanel(top: number, timelines: Timeline[]): string[] {
  const f = frame(top, 'Throughput over time (answers a second, 1 s samples)');
  const lines = timelines.filter((t) => t.points.length > 0);
  const maxX = Math.max(1, ...lines.flatMap((t) => t.points.map(([x]) => x)));
  const maxY = Math.max(1, ...lines.flatMap((t) => t.points.map(([, y]) => y)));
  const xt = niceTicks(maxX);
  const yt = niceTicks(maxY);
  const sx = (v: number) => f.x0 + ((f.x1 - f.x0) * v) / (xt[xt.length - 1] ?? maxX);
  const sy = (v: number) => f.y0 - ((f.y0 - f.y1) * v) / (yt[yt.length - 1] ?? maxY);
  const parts = [...f.parts];
  for (const t of yt) parts.push(`<line x1="${f.x0}" x2="${f.x1}" y1="${n(sy(t))}" y2="${n(sy(t))}" class="grid"/>`, label(f.x0 - 6, sy(t) + 4, t.toLocaleString('en-US'), 'text-anchor="end"'));
  for (const t of xt) parts.push(label(sx(t), f.y0 + 16, `${t} s`, 'text-anchor="middle"'));
  lines.forEach((t, i) => {
    const d = t.points.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${n(sx(x))},${n(sy(y))}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`);
  });
  parts.push(...legend(lines.map((t) => t.label), f.x1 + 16, f.y1 + 10));
  return parts;
}

function latencyPanel(top: number, curves: ChartInput['latencies']): string[] {
  const f = frame(top, 'Latency distribution (ms, log scale; lower is better)');
  const shown = curves.filter((c) => c.percentiles.some(([, v]) => v > 0));
  const values = shown.flatMap((c) => c.percentiles.map(([, v]) => v)).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...values, 1))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, lo * 10)));
  const sx = (p: number) => f.x0 + ((f.x1 - f.x0) * ninesOf(p)) / 4.5;
  const sy = (v: number) => f.y0 - ((f.y0 - f.y1) * Math.log10(Math.max(v, lo) / lo)) / Math.log10(hi / lo);
  const parts = [...f.parts];
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    parts.push(`<line x1="${f.x0}" x2="${f.x1}" y1="${n(sy(v))}" y2="${n(sy(v))}" class="grid"/>`, label(f.x0 - 6, sy(v) + 4, `${v.toLocaleString('en-US')}`, 'text-anchor="end"'));
  }
  for (const [p, text] of [[50, 'p50'], [90, 'p90'], [99, 'p99'], [99.9, 'p99.9'], [99.99, 'p99.99'], [100, 'max']] as const) {
    parts.push(`<line x1="${n(sx(p))}" x2="${n(sx(p))}" y1="${f.y1}" y2="${f.y0}" class="grid"/>`, label(sx(p), f.y0 + 16, text, 'text-anchor="middle"'));
  }
  shown.forEach((c, i) => {
    const points = c.percentiles.filter(([p]) => p >= 50).sort(([a], [b]) => a - b);
    const d = points.map(([p, v], k) => `${k === 0 ? 'M' : 'L'}${n(sx(p))},${n(sy(v))}`).join(' ');
    const color = COLORS[i % COLORS.length];
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [p, v] of points) parts.push(`<circle cx="${n(sx(p))}" cy="${n(sy(v))}" r="3" fill="${color}"/>`);
  });
  parts.push(...legend(shown.map((c) => c.label), f.x1 + 16, f.y1 + 10));
  return parts;
}

export function renderChart(input: ChartInput): string {
  const panels: ((top: number) => string[])[] = [];
  if (input.bars?.length) panels.push((top) => barsPanel(top, input.bars ?? []));
  panels.push((top) => timePanel(top, input.timelines), (top) => latencyPanel(top, input.latencies));
  const height = 40 + panels.length * PANEL_H;
  const body = panels.flatMap((panel, i) => panel(40 + i * PANEL_H));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="12">`,
    '<style>.h{font-size:15px;font-weight:bold}.t{font-size:18px;font-weight:bold}.plot{fill:#fafafa;stroke:#999}.grid{stroke:#ddd}</style>',
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    label(M.left, 28, input.title, 'class="t"'),
    ...body,
    '</svg>',
  ].join('\n');
}
