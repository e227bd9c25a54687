import { createLogger } from '../../src/logger';
import { EXPENSIVE_DEFAULT_METRICS, Metrics } from '../../src/metrics';

/** The stages of QUEUED → ISSUED → socket, as /metrics exposes them. */

const sample = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);

test('When the consumer reports its stages, then /metrics has a histogram per stage with those observations', async () => {
  const metrics = new Metrics();
  const observer = metrics.consumerObserver(createLogger('silent'));
  observer.queueWait?.([3, 40, 2000]);
  observer.stage?.('insert', 12, 500);
  observer.stage?.('confirm', 4, 500);
  observer.stage?.('insert', 8, 20);
  const text = await metrics.registry.metrics();

  expect(sample(text, 'coupon_consumer_queue_wait_seconds_count')).toBe(3);
  expect(sample(text, 'coupon_consumer_queue_wait_seconds_sum')).toBeCloseTo(2.043, 6);
  expect(sample(text, 'coupon_consumer_batch_stage_seconds_count\\{stage="insert"\\}')).toBe(2);
  expect(sample(text, 'coupon_consumer_batch_stage_seconds_sum\\{stage="insert"\\}')).toBeCloseTo(0.02, 6);
  expect(sample(text, 'coupon_consumer_batch_stage_seconds_count\\{stage="confirm"\\}')).toBe(1);
  expect(sample(text, 'coupon_consumer_batch_size_sum')).toBe(520);
});

test('When a confirmation reaches a feed, then publish → socket is observed from the time it was sent', async () => {
  const metrics = new Metrics();
  metrics.deliveredToFeed(Date.now() - 30);
  const text = await metrics.registry.metrics();
  expect(sample(text, 'coupon_publish_to_socket_seconds_count')).toBe(1);
  const seconds = sample(text, 'coupon_publish_to_socket_seconds_sum');
  expect(seconds).toBeGreaterThanOrEqual(0.03);
  expect(seconds).toBeLessThan(10);
});

test('When /metrics is scraped, then no default metric walks every open socket, and the others are still there', async () => {
  const text = await new Metrics().registry.metrics();
  for (const name of EXPENSIVE_DEFAULT_METRICS) expect(text).not.toMatch(new RegExp(`^${name} `, 'm'));
  expect(text).toMatch(/^process_cpu_user_seconds_total /m); // a fresh registry's first delta may round to 0
  expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
});
