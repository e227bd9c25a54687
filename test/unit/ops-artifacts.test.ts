import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metrics } from '../../src/metrics';

/** The Grafana dashboard and the alert rules name only metrics the service really exports. */

const ROOT = join(__dirname, '..', '..');
const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'coupon-issuance.json'), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};
const alerts = readFileSync(join(ROOT, 'deploy', 'prometheus', 'alerts.yml'), 'utf8');

const KEYWORDS = new Set(['by', 'without', 'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);
/** Series Prometheus makes itself, not the service. */
const PROMETHEUS_OWN = new Set(['up']);

/** The metric names a PromQL expression reads: identifiers that are not functions, keywords, labels or durations. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)]
    .filter((m) => m[2] === undefined && !KEYWORDS.has(m[1] as string))
    .map((m) => m[1] as string);
}

/** Every series name the service exports: histograms as their _bucket, _sum and _count. */
function exported(): Set<string> {
  const metrics = new Metrics(async () => ({ entries: 0, pending: 0, deadLetter: 0 }));
  const names = new Set<string>();
  for (const metric of metrics.registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    else names.add(name);
  }
  return names;
}

const dashboardExprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
const alertExprs = [...alerts.matchAll(/^\s*expr:\s*(.+)$/gm)].map((m) => m[1] as string);

test('The expressions are read: the dashboard and the rules name the request, WebSocket and queue metrics', () => {
  const named = new Set([...dashboardExprs, ...alertExprs].flatMap(metricNames));
  expect(alertExprs.length).toBeGreaterThanOrEqual(5);
  for (const name of ['http_request_duration_seconds_bucket', 'graphql_operations_total', 'ws_connections', 'ws_subscriptions', 'coupon_queue_length']) {
    expect(named).toContain(name);
  }
});

test.each([...dashboardExprs.map((e) => ['dashboard', e]), ...alertExprs.map((e) => ['alert rule', e])])(
  'When the %s reads `%s`, then every metric it names is exported',
  (_where, expr) => {
    const names = metricNames(expr as string);
    expect(names.length).toBeGreaterThan(0);
    const known = exported();
    expect(names.filter((n) => !known.has(n) && !PROMETHEUS_OWN.has(n))).toEqual([]);
  },
);

test('The metric-name reader catches a name the service does not export', () => {
  const known = exported();
  expect(metricNames('sum(rate(http_requests_total{route="/graphql"}[5m])) by (route)').filter((n) => !known.has(n))).toEqual(['http_requests_total']);
});
