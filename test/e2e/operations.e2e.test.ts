import { print } from 'graphql';
import WebSocket from 'ws';
import { CouponIssuedDocument, CreatePromotionDocument, IssueCouponDocument, PromotionDocument } from '../generated/graphql';
import { record, tokenFor, wsClient } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process';

/**
 * What an operator relies on, against the service as a real child process: request ids on every answer and log
 * line, an access log at info (ISO times, level labels), the request and WebSocket metrics on METRICS_PORT only,
 * and CORS headers a browser app needs, early refusals included.
 */

let env: TestEnvironment;
let service: ServiceProcess;
let url: string;
let metricsUrl: string;
let admin: string;
let alice: string;

const ORIGIN = 'https://shop.example';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// Anonymous calls are limited per address (here one a second): each anonymous call gets an address of its own.
let addresses = 0;
const freshAddress = () => ({ 'x-forwarded-for': `10.9.${Math.floor(++addresses / 250)}.${addresses % 250}` });

beforeAll(async () => {
  env = await createTestEnvironment('operations');
  service = spawnService(
    serviceEnv(env, {
      METRICS_PORT: '0',
      CORS_ORIGINS: ORIGIN,
      CORS_ALLOW_HEADERS: 'x-shop-id, X-Tenant',
      TRUST_PROXY: '1',
      RATE_LIMIT_ANON_PER_SECOND: '1',
    }),
  );
  url = await service.started;
  metricsUrl = /"metricsUrl":"([^"]+)"/.exec(service.output())?.[1] as string;
  [admin, alice] = await Promise.all([tokenFor('admin', { admin: true }), tokenFor('alice')]);
}, 60_000);

afterAll(async () => {
  if (service.child.exitCode === null && service.child.signalCode === null) {
    service.child.kill('SIGTERM');
    await service.exit;
  }
  await env.cleanup();
});

interface LogLine {
  level: string;
  time: string;
  msg: string;
  reqId?: string;
  [field: string]: unknown;
}

const logLines = (): LogLine[] =>
  service
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);

/** The log lines of one request id, once `msg` has been logged for it. */
const linesOf = (reqId: string, msg: string) =>
  eventually(async () => {
    const lines = logLines().filter((l) => l.reqId === reqId);
    return lines.some((l) => l.msg === msg) ? lines : undefined;
  }, 10_000, `a "${msg}" line for ${reqId}`);

async function post(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

const signedIn = (token: string) => ({ authorization: `Bearer ${token}` });

async function createPromotion(totalStock = 100): Promise<string> {
  const r = await post(
    { query: print(CreatePromotionDocument), variables: { input: { name: 'ops', totalStock, endsAt: new Date(Date.now() + 3600_000).toISOString() } } },
    signedIn(admin),
  );
  return ((await r.json()) as { data: { createPromotion: { id: string } } }).data.createPromotion.id;
}

async function scrape(): Promise<string> {
  const r = await fetch(metricsUrl);
  expect(r.status).toBe(200);
  return r.text();
}

/** A WebSocket whose upgrade comes from an address of its own (upgrades are anonymous until connection_init). */
class FromOwnAddress extends WebSocket {
  constructor(address: string, protocols?: string | string[]) {
    super(address, protocols, { headers: freshAddress() });
  }
}

/** The value of one sample of the scrape (0 when absent). */
function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('x-request-id', () => {
  test('When a client sends an id of up to 128 printable characters, then every answer echoes it, the fast path included', async () => {
    const id = `shop-${'x'.repeat(123)}`;
    expect(id).toHaveLength(128);
    const promotionId = await createPromotion();
    const query = { query: print(PromotionDocument), variables: { id: promotionId } };
    // The first is answered by Apollo, the second by the fast path (the document is known by then).
    for (let i = 0; i < 2; i++) {
      const r = await post(query, { ...signedIn(alice), 'x-request-id': id });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-request-id')).toBe(id);
    }
  });

  test.each([
    ['129 characters', 'y'.repeat(129)],
    ['a tab', 'abc\tdef'],
    ['non-ASCII', 'caf\u00e9'],
  ])('When the id sent has %s, then a new one is generated and echoed', async (_what, given) => {
    const r = await fetch(`${url}/healthz`, { headers: { 'x-request-id': given } });
    const echoed = r.headers.get('x-request-id');
    expect(echoed).toMatch(UUID);
    expect(echoed).not.toBe(given);
  });

  test('When no id is sent, then each response gets a new one: probes, unknown paths, GraphQL', async () => {
    const answers = await Promise.all([
      fetch(`${url}/healthz`),
      fetch(`${url}/readyz`),
      fetch(`${url}/nowhere`, { headers: freshAddress() }),
      post({ query: '{ __typename }' }, signedIn(alice)),
    ]);
    const ids = answers.map((r) => r.headers.get('x-request-id'));
    for (const id of ids) expect(id).toMatch(UUID);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('CORS', () => {
  test('When a browser app sends a preflight for Apollo Client, tracing and configured headers, then all are allowed', async () => {
    const wanted = ['apollographql-client-name', 'apollographql-client-version', 'x-request-id', 'baggage', 'sentry-trace', 'x-shop-id', 'x-tenant'];
    const r = await fetch(`${url}/graphql`, {
      method: 'OPTIONS',
      headers: { ...freshAddress(), origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': wanted.join(',') },
    });

    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const allowed = (r.headers.get('access-control-allow-headers') ?? '').split(',').map((h) => h.trim());
    expect(allowed).toEqual(expect.arrayContaining([...wanted, 'authorization', 'content-type']));
  });

  test('When a request is refused with 401 (bad token), then it carries CORS headers and exposes Retry-After and x-request-id', async () => {
    const r = await post({ query: '{ __typename }' }, { origin: ORIGIN, authorization: 'Bearer not-a-token', 'x-request-id': 'refused-401', ...freshAddress() });

    expect(r.status).toBe(401);
    expect(r.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(r.headers.get('access-control-expose-headers')?.split(/,\s*/)).toEqual(expect.arrayContaining(['retry-after', 'x-request-id']));
    expect(r.headers.get('x-request-id')).toBe('refused-401');
  });

  test('When an anonymous address goes over its rate (429), then the refusal carries CORS headers, Retry-After and the id', async () => {
    const address = freshAddress();
    const statuses: number[] = [];
    let refused: Response | null = null;
    for (let i = 0; i < 5 && !refused; i++) {
      const r = await post({ query: '{ __typename }' }, { origin: ORIGIN, 'x-request-id': `anon-${i}`, ...address });
      statuses.push(r.status);
      if (r.status === 429) refused = r;
    }

    expect(refused).not.toBeNull();
    const r = refused as Response;
    expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(r.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(r.headers.get('access-control-expose-headers')?.split(/,\s*/)).toEqual(expect.arrayContaining(['retry-after', 'x-request-id']));
    expect(r.headers.get('x-request-id')).toBe(`anon-${statuses.length - 1}`);
    const [line] = await linesOf(`anon-${statuses.length - 1}`, 'http request');
    expect(line).toMatchObject({ level: 'info', status: 429, code: 'RATE_LIMITED' });
  });

  test('When the body is too large (413), then the refusal carries CORS headers and the id', async () => {
    const r = await post({ query: `{ __typename } # ${'x'.repeat(70 * 1024)}` }, { ...signedIn(alice), origin: ORIGIN, 'x-request-id': 'too-big' });

    expect(r.status).toBe(413);
    expect(r.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(r.headers.get('x-request-id')).toBe('too-big');
  });

  test('When the origin is not listed, then no CORS header is given', async () => {
    const r = await post({ query: '{ __typename }' }, { ...signedIn(alice), origin: 'https://elsewhere.example' });

    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('access log', () => {
  test('When a signed-in request is answered, then one info line gives method, path, operation, status, duration, user and id, with an ISO time and a level label', async () => {
    const promotionId = await createPromotion();
    await post({ query: print(PromotionDocument), variables: { id: promotionId } }, { ...signedIn(alice), 'x-request-id': 'log-promotion' });

    const [line, ...more] = await linesOf('log-promotion', 'http request');
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 'info', method: 'POST', path: '/graphql', operation: 'Promotion', status: 200, user: 'alice' });
    expect(typeof line?.ms).toBe('number');
    expect(line?.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  test('When a request is refused early (401), then it is logged at info with its status and id', async () => {
    await post({ query: '{ __typename }' }, { authorization: 'Bearer nope', 'x-request-id': 'log-401', ...freshAddress() });
    const [line] = await linesOf('log-401', 'http request');
    expect(line).toMatchObject({ level: 'info', status: 401, code: 'UNAUTHENTICATED' });
  });

  test('When issueCoupon succeeds, then it is not logged at info (debug only), while a failed one is', async () => {
    const promotionId = await createPromotion();
    const issue = { query: print(IssueCouponDocument), variables: { promotionId } };
    for (let i = 0; i < 3; i++) {
      const r = await post(issue, { ...signedIn(await tokenFor(`buyer-${i}`)), 'x-request-id': `issue-ok-${i}` });
      expect(((await r.json()) as { data: { issueCoupon: { outcome: string } } }).data.issueCoupon.outcome).toBe('QUEUED');
    }
    // An outcome such as SOLD_OUT or NOT_FOUND is data, not an error: a sold-out rush is the hot path too.
    const soldOut = await createPromotion(3);
    for (let i = 0; i < 5; i++) {
      await post({ query: print(IssueCouponDocument), variables: { promotionId: soldOut } }, { ...signedIn(await tokenFor(`rush-${i}`)), 'x-request-id': `issue-ok-rush-${i}` });
    }
    await post({ query: print(IssueCouponDocument), variables: { promotionId: 'no-such' } }, { ...signedIn(alice), 'x-request-id': 'issue-ok-not-found' });
    const bad = await post({ query: print(IssueCouponDocument), variables: { promotionId, idempotencyKey: 'bad\u0001key' } }, { ...signedIn(alice), 'x-request-id': 'issue-bad' });
    expect(bad.status).toBe(200);
    // A later request's line shows the log has caught up with the issues before it.
    const [line] = await linesOf('issue-bad', 'http request');
    expect(line).toMatchObject({ level: 'info', operation: 'IssueCoupon', code: 'BAD_USER_INPUT' });

    expect(logLines().filter((l) => l.reqId?.startsWith('issue-ok-'))).toEqual([]);
  });

  test('When a WebSocket connects and subscribes, then its upgrade id is echoed and names its open, subscription and close lines', async () => {
    const promotionId = await createPromotion();
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { headers: { 'x-request-id': 'ws-conn-1', ...freshAddress() } });
    const upgradeId = new Promise<string | undefined>((resolve) => socket.once('upgrade', (res) => resolve(res.headers['x-request-id'] as string | undefined)));
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    expect(await upgradeId).toBe('ws-conn-1');
    const received: { type: string }[] = [];
    socket.on('message', (data: Buffer) => received.push(JSON.parse(data.toString()) as { type: string }));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${alice}` } }));
    await eventually(async () => (received.some((m) => m.type === 'connection_ack') ? true : undefined), 5000, 'connection_ack');
    socket.send(JSON.stringify({ id: 's1', type: 'subscribe', payload: { query: print(CouponIssuedDocument), variables: { promotionId } } }));
    await linesOf('ws-conn-1', 'subscription started');
    socket.send(JSON.stringify({ id: 's1', type: 'complete' }));
    await linesOf('ws-conn-1', 'subscription ended');
    socket.close(1000);

    const lines = await linesOf('ws-conn-1', 'websocket closed');
    expect(lines.map((l) => l.msg)).toEqual(['websocket opened', 'subscription started', 'subscription ended', 'websocket closed']);
    expect(lines[1]).toMatchObject({ level: 'info', subscription: 's1', operation: 'CouponIssued', user: 'alice' });
    expect(lines[3]).toMatchObject({ level: 'info', code: 1000, user: 'alice' });
  });
});

describe('metrics', () => {
  test('When METRICS_PORT is set, then /metrics is served there only: the public port answers 404', async () => {
    expect((await fetch(`${url}/metrics`, { headers: signedIn(alice) })).status).toBe(404);
    expect(new URL(metricsUrl).port).not.toBe(new URL(url).port);
    expect((await fetch(metricsUrl.replace('/metrics', '/healthz'))).status).toBe(404);
    const text = await scrape();
    for (const name of ['http_request_duration_seconds', 'graphql_operations_total', 'ws_connections', 'ws_subscriptions']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  test('When requests are answered, then the request histogram and the operation counter move, with bounded labels', async () => {
    const promotionId = await createPromotion();
    const before = await scrape();
    const query = { query: print(PromotionDocument), variables: { id: promotionId } };
    for (let i = 0; i < 3; i++) await post(query, signedIn(alice));
    await post({ query: 'query MadeUpName123 { __typename }', operationName: 'MadeUpName123' }, signedIn(alice));
    await post({ query: '{ promotion(id: 1, nope: 2) { id } }' }, signedIn(alice));
    await fetch(`${url}/some/random/path`, { headers: freshAddress() });
    const after = await scrape();

    const delta = (name: string, labels: string) => sample(after, name, labels) - sample(before, name, labels);
    expect(delta('graphql_operations_total', 'operation="Promotion",code="ok"')).toBe(3);
    expect(delta('graphql_operations_total', 'operation="other",code="ok"')).toBe(1);
    expect(delta('graphql_operations_total', 'operation="other",code="GRAPHQL_VALIDATION_FAILED"')).toBe(1);
    expect(delta('http_request_duration_seconds_count', 'method="POST",route="/graphql",status="200"')).toBe(4);
    expect(delta('http_request_duration_seconds_count', 'method="GET",route="other",status="404"')).toBe(1);
    expect(after).not.toContain('MadeUpName123');
    expect(after).not.toContain('/some/random/path');
  });

  test('When WebSockets open and subscribe, then ws_connections and ws_subscriptions go up, and back down when they close', async () => {
    const promotionId = await createPromotion();
    const gauges = async () => {
      const text = await scrape();
      return [sample(text, 'ws_connections'), sample(text, 'ws_subscriptions')];
    };
    const [connections0, subscriptions0] = await gauges();
    const clients = [wsClient(url, alice, undefined, FromOwnAddress), wsClient(url, admin, undefined, FromOwnAddress)];
    const subscriptions = clients.flatMap((client) => [
      record(client, CouponIssuedDocument, { promotionId }),
      record(client, CouponIssuedDocument, { promotionId, requestId: null }),
    ]);

    await eventually(async () => {
      const [c, s] = await gauges();
      return c === (connections0 ?? 0) + 2 && s === (subscriptions0 ?? 0) + 4 ? true : undefined;
    }, 10_000, 'two connections and four subscriptions counted');
    subscriptions[0]?.dispose();
    await eventually(async () => ((await gauges())[1] === (subscriptions0 ?? 0) + 3 ? true : undefined), 10_000, 'one subscription fewer');
    await Promise.all(clients.map((c) => c.dispose()));
    await eventually(async () => {
      const [c, s] = await gauges();
      return c === connections0 && s === subscriptions0 ? true : undefined;
    }, 10_000, 'the gauges back where they were');
  });
});
