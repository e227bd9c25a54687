import { escapeXml, niceTicks, ninesOf, renderChart } from '../../bench/chart';
import { cpuPerAnswer, targetChecks, type CompareResult, type TargetResult } from '../../bench/compare-report';
import { parseResponse } from '../../bench/open-loop';
import { COMPARE_PHASES, USAGE, parseOptions } from '../../bench/options';
import { distribution, logHistogram, pAt, percentileOfSorted } from '../../bench/stats';

/** Tags open and close in order, attributes are quoted, and no bare & or < is left in text: well-formed enough. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const withoutTags = xml.replace(/<(\/?)([a-zA-Z]+)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<]*")*)\s*(\/?)>/g, (_, close: string, name: string, _attrs: string, selfClose: string) => {
    if (close) expect(stack.pop()).toBe(name);
    else if (!selfClose) stack.push(name);
    return '';
  });
  expect(stack).toEqual([]);
  expect(withoutTags).not.toMatch(/<|>|&(?!(lt|gt|amp|apos|quot);)/);
}

describe('bench options', () => {
  test('When --compare is given without a value, then the next flag is still read as a flag', () => {
    const options = parseOptions(['--compare', '--duration', '3', '--phases', 'bare,sale'], {});
    expect(options.compare).toBe(true);
    expect(options.duration).toBe(3);
    expect([...options.phases]).toEqual(['bare', 'sale']);
  });

  test('When nothing is given, then the quick run with every compare phase listed is the default', () => {
    const options = parseOptions([], {});
    expect(options.compare).toBe(false);
    expect(options.generator).toBe('auto');
    expect([...options.phases]).toEqual([...COMPARE_PHASES]);
    expect(options.saleUsers).toBe(100_000);
    expect(options.rssSockets).toBe(15_000);
  });

  test('When the environment sets an option and a flag too, then the flag wins', () => {
    expect(parseOptions(['--sale-users', '500', '--sale-sample', '50'], { BENCH_SALE_USERS: '900', BENCH_COMPARE: '1' })).toMatchObject({ saleUsers: 500, saleSample: 50, compare: true });
  });

  test('When an option is unknown or out of range, then parsing fails naming it', () => {
    expect(() => parseOptions(['--phases', 'bare,nope'], {})).toThrow(/invalid --phases/);
    expect(() => parseOptions(['--generator', 'ab'], {})).toThrow(/invalid --generator/);
    expect(() => parseOptions(['--sockets', '20000'], {})).toThrow(/invalid --sockets/);
    expect(() => parseOptions(['--sale-sample', '10', '--sale-users', '5'], {})).toThrow(/--sale-sample/);
    expect(() => parseOptions(['--sale-sample', '5', '--sale-users', '5'], {})).toThrow(/--sale-sample/); // no crowd left
    expect(() => parseOptions(['--pipelining', '2'], {})).toThrow(/unknown option --pipelining/);
    expect(() => parseOptions(['--help'], {})).toThrow(USAGE);
  });
});

describe('bench statistics', () => {
  test('When percentiles are taken by nearest rank, then they are values of the sample', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentileOfSorted(sorted, 50)).toBe(50);
    expect(percentileOfSorted(sorted, 99)).toBe(99);
    expect(percentileOfSorted(sorted, 99.9)).toBe(100);
    expect(percentileOfSorted(sorted, 0)).toBe(1);
    expect(percentileOfSorted([7], 99)).toBe(7);
    expect(percentileOfSorted([], 50)).toBeNull();
  });

  test('When a distribution is summarised, then the order of the samples does not matter', () => {
    const d = distribution([30, 10, 20, 40]);
    expect(d).toMatchObject({ count: 4, min: 10, max: 40, mean: 25 });
    expect(pAt(d, 50)).toBe(20);
    expect(pAt(d, 100)).toBe(40);
    expect(distribution([])).toBeNull();
  });

  test('When samples span decades, then the log histogram counts each once, the maximum in the last bucket', () => {
    const samples = [1, 2, 5, 10, 50, 100, 1000];
    const { edges, counts } = logHistogram(samples, 3);
    expect(edges).toHaveLength(4);
    expect(edges[0]).toBeCloseTo(1);
    expect(edges[3]).toBeCloseTo(1000);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(samples.length);
    expect(counts).toEqual([3, 2, 2]);
  });
});

describe('bench chart', () => {
  test('When axis ticks are chosen, then they are round and the last one holds the maximum', () => {
    expect(niceTicks(28)).toEqual([0, 10, 20, 30]);
    expect(niceTicks(3994)).toEqual([0, 1000, 2000, 3000, 4000]);
    expect(niceTicks(0)).toEqual([0]);
    expect(ninesOf(50)).toBeCloseTo(0.301);
    expect(ninesOf(99)).toBeCloseTo(2);
    expect(ninesOf(100)).toBeGreaterThan(ninesOf(99.99));
  });

  test('When labels hold XML characters, then the SVG stays well-formed with one curve per series', () => {
    expect(escapeXml(`a<b & "c"`)).toBe('a&lt;b &amp; &quot;c&quot;');
    const svg = renderChart({
      title: 'bench <run> & co',
      bars: [{ label: 'bare', value: 12000, note: '1.00× ceiling' }, { label: 'sync-db', value: 250, note: '' }],
      timelines: [{ label: 'service', points: [[1, 3000], [2, 3200]] }, { label: 'empty', points: [] }],
      latencies: [{ label: 'service (HTTP)', percentiles: [[50, 20], [99, 60], [100, 90]] }, { label: 'answer→ISSUED', percentiles: [[50, 3], [99, 40]] }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    assertWellFormed(svg);
    expect(svg).toContain('bench &lt;run&gt; &amp; co');
    expect(svg.match(/<path /g)).toHaveLength(3); // one timeline with points, two latency curves
  });
});

describe('bench open-loop client', () => {
  test('When an answer comes with Content-Length or chunked, in pieces, then it is complete only once whole', () => {
    const fixed = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404');
    expect(parseResponse(fixed)).toEqual({ status: 200, body: 'hello', consumed: fixed.length - 'HTTP/1.1 404'.length });
    expect(parseResponse(fixed.subarray(0, 40))).toBeNull();
    const chunked = Buffer.from('HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    expect(parseResponse(chunked)).toEqual({ status: 429, body: 'abcde', consumed: chunked.length });
    expect(parseResponse(chunked.subarray(0, chunked.length - 2))).toBeNull();
  });
});

describe('bench targets', () => {
  const target = (role: TargetResult['role'], requestsPerSecond: number, p99Ms: number) => ({ role, requestsPerSecond, p99Ms }) as TargetResult;
  const result = (targets: TargetResult[]): CompareResult => ({ targets, halfLoad: null, rss: null }) as unknown as CompareResult;

  test('When the figures are judged, then each target is met, not met or not measured from the same run', () => {
    const checks = targetChecks(result([target('ceiling', 10_000, 20), target('service', 6500, 70), target('sync-db', 600, 500)]));
    expect(checks.map(([what, ok]) => [what, ok])).toEqual([
      ['service QUEUED ≥ 0.6 × bare', true],
      ['service p99 ≤ 3 × bare p99', false],
      ['service ≥ 10 × sync-db', true],
      [expect.stringContaining('answer→ISSUED p99 ≤ 50 ms'), null],
      ['RSS per subscribed socket ≤ 10 KiB', null],
      ['consumer ≥ 0.7 × a raw insert by its own method', null],
    ]);
    expect(targetChecks(result([target('ceiling', 10_000, 20), target('service', 5000, 20)]))[0]?.[1]).toBe(false);
    // The consumer is judged by the build under test: the last consumer drained, not the --baseline one before it.
    const drained = (...ratios: number[]) =>
      ({ ...result([]), drain: { consumers: ratios.map((ratioToSameMethod) => ({ ratioToSameMethod })) } }) as unknown as CompareResult;
    expect(targetChecks(drained(0.31, 0.79)).at(-1)?.slice(1)).toEqual([true, '0.79×']);
    expect(targetChecks(drained(0.79, 0.5)).at(-1)?.[1]).toBe(false);
  });
});

describe('bench CPU per answer', () => {
  test('When a run used some % of a core per part at some req/s, then each part costs % × 10,000 ÷ req/s µs an answer', () => {
    const run = {
      requestsPerSecond: 5000,
      cpu: { percent: { server: 80, 'server 2': 20, consumer: 10, redis: 30, postgres: 15, loadgen: 2 }, machinePercent: 90, othersPercent: 5 },
      generator: { kind: 'wrk', cpuPercent: 10, cpuCapacity: 200, saturated: false },
    } as unknown as TargetResult;
    expect(cpuPerAnswer(run)).toEqual({ servers: 220, redis: 60, postgres: 30, generator: 20, total: 330 });
  });
});
