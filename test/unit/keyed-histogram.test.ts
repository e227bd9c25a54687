import { Histogram, Registry } from 'prom-client';
import { KeyedHistogram } from '../../src/metrics';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LABELS = [
  { method: 'POST', route: '/graphql', status: '200' },
  { method: 'GET', route: 'other', status: '404' },
  { method: 'OPTIONS', route: '/graphql', status: '204' },
];
// On a bound, between bounds, under the first and over the last.
const SAMPLES = [0, 0.0005, 0.0007, 0.001, 0.003, 0.0249, 0.025, 0.7, 2.5, 9.99, 10, 10.01, 42];

describe('KeyedHistogram', () => {
  test("When it and prom-client's Histogram observe the same samples, then both scrape to the same text", async () => {
    const reference = new Registry();
    const histogram = new Histogram({ name: 'h_seconds', help: 'help', labelNames: ['method', 'route', 'status'], buckets: BUCKETS, registers: [reference] });
    const registry = new Registry();
    const keyed = new KeyedHistogram('h_seconds', 'help', BUCKETS, registry);
    SAMPLES.forEach((value, i) => {
      const labels = LABELS[i % LABELS.length] as (typeof LABELS)[number];
      histogram.observe(labels, value);
      const key = `${labels.method} ${labels.route} ${labels.status}`;
      if (!keyed.observe(key, value)) keyed.add(key, labels, value);
    });

    const text = await registry.metrics();
    expect(text).toBe(await reference.metrics());
    expect(text).toContain('h_seconds_bucket{le="0.0025",method="POST",route="/graphql",status="200"} 2');
    expect(text).toContain('h_seconds_count{method="GET",route="other",status="404"} 4');
  });

  test('When a key was never added, then observe counts nothing and says so', async () => {
    const registry = new Registry();
    const keyed = new KeyedHistogram('h_seconds', 'help', BUCKETS, registry);
    expect(keyed.observe('POST /graphql 200', 0.001)).toBe(false);
    expect(await registry.metrics()).not.toContain('h_seconds_count');
  });
});
