// Line charts drawn as SVG by hand: a few dozen lines instead of a charting library to bundle and serve.
// Each chart carries what it shows in data attributes (data-points, data-last, data-max), for people and tests.
(function () {
  'use strict';

  const NS = 'http://www.w3.org/2000/svg';
  const WIDTH = 480;
  const HEIGHT = 150;
  const PAD = { left: 46, right: 12, top: 10, bottom: 22 };
  const PLOT_W = WIDTH - PAD.left - PAD.right;
  const PLOT_H = HEIGHT - PAD.top - PAD.bottom;

  function node(name, attrs, text) {
    const element = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  /** A gridline step for values up to `max`: 1, 2 or 5 times a power of ten, about four steps in all. */
  function niceStep(max) {
    const rough = Math.max(max, 1) / 4;
    const power = 10 ** Math.floor(Math.log10(rough));
    for (const step of [1, 2, 5]) if (step * power >= rough) return step * power;
    return 10 * power;
  }

  function short(value) {
    if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
    if (value >= 1e4) return `${+(value / 1e3).toFixed(1)}k`;
    return String(+value.toFixed(1));
  }

  const clock = (t) => new Date(t).toTimeString().slice(0, 8);

  /** The points drawn in [from, to]: the line enters at `from` with the value it had then. */
  function visible(points, from) {
    const start = points.findIndex((p) => p.t >= from);
    if (start < 0) return points.length ? [{ t: from, v: points[points.length - 1].v }] : [];
    if (start === 0) return points;
    const before = points[start - 1];
    const after = points[start];
    const v = before.v + ((after.v - before.v) * (from - before.t)) / (after.t - before.t);
    return [{ t: from, v }, ...points.slice(start)];
  }

  /**
   * Draws `points` ({t: epoch ms, v: number}, oldest first) over the time span [from, to] into `svg`, replacing
   * what it held. The vertical axis runs from 0 to at least `floor` (a promotion's total stock, say).
   */
  function draw(svg, points, { from, to, floor = 0 }) {
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
    svg.replaceChildren();
    const shown = visible(points, from);
    const highest = shown.reduce((max, p) => Math.max(max, p.v), 0);
    const step = niceStep(Math.max(highest, floor));
    const top = Math.max(step, Math.ceil(Math.max(highest, floor) / step) * step);
    const x = (t) => PAD.left + (PLOT_W * (t - from)) / (to - from);
    const y = (v) => PAD.top + PLOT_H * (1 - v / top);

    for (let v = 0; v <= top + step / 2; v += step) {
      svg.append(node('line', { class: 'grid', x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v) }));
      svg.append(node('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, short(v)));
    }
    for (const [t, anchor] of [[from, 'start'], [(from + to) / 2, 'middle'], [to, 'end']]) {
      svg.append(node('text', { class: 'axis', x: x(t), y: HEIGHT - 6, 'text-anchor': anchor }, clock(t)));
    }
    if (shown.length) {
      const line = shown.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
      const first = shown[0];
      const last = shown[shown.length - 1];
      const base = `${x(last.t).toFixed(1)},${y(0)} ${x(first.t).toFixed(1)},${y(0)}`;
      svg.append(node('polygon', { class: 'area', points: `${line} ${base}` }));
      svg.append(node('polyline', { class: 'line', points: line }));
      svg.append(node('circle', { class: 'dot', cx: x(last.t), cy: y(last.v), r: 3 }));
    }
    const last = points[points.length - 1];
    svg.dataset.points = String(points.length);
    svg.dataset.last = last ? String(last.v) : '';
    svg.dataset.max = String(points.reduce((max, p) => Math.max(max, p.v), 0));
  }

  window.Charts = { draw, short };
})();
