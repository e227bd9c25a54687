import { createServer } from 'node:net';
import WebSocket from 'ws';
import { CouponClient, CouponClientError, type TokenProvider } from '../../clients/node/coupon-client';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process';

/**
 * The kit's Node / React-Native-style client (clients/node) against the real service as a child process:
 * a restart between issueCoupon and its confirmation, and tokens that expire on an open socket or before a
 * reconnect. The API process runs without a consumer (ROLE=api), so a confirmation cannot arrive before the
 * test has cut the socket; a consumer is started when the test is ready for it.
 */

let env: TestEnvironment;
let port: number;
let service: ServiceProcess | undefined;
let consumer: RunningApp | undefined;
let client: CouponClient | undefined;

beforeAll(async () => {
  env = await createTestEnvironment('node_client');
  port = await freePort();
});

afterEach(async () => {
  await client?.close();
  await consumer?.stop();
  await stopService();
  client = consumer = undefined;
});

afterAll(async () => {
  await env?.cleanup();
});

/** A port the OS reports free, so the service can be restarted where the client reconnects. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
}

async function startService(role: 'api' | 'all'): Promise<string> {
  service = spawnService(serviceEnv(env, { PORT: String(port), ROLE: role, RATE_LIMIT_ANON_PER_SECOND: '0' }));
  return `${await service.started}/graphql`;
}

async function stopService(): Promise<void> {
  if (!service) return;
  const { exit } = service;
  service.child.kill('SIGKILL');
  await exit;
  service = undefined;
}

/** The n-th "subscription started" line of the running service: its client has (re)subscribed. */
function subscriptionsStarted(): number {
  return (service?.output().match(/"subscription started"/g) ?? []).length;
}

async function createPromotion(baseUrl: string): Promise<string> {
  const input = { name: 'Client kit sale', totalStock: 10, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
  const created = await httpGraphQL(baseUrl, CreatePromotionDocument, { input }, await tokenFor('admin', { admin: true }));
  const id = created.body.data?.createPromotion.id;
  if (!id) throw new Error(`createPromotion failed: ${JSON.stringify(created.body)}`);
  return id;
}

/** Tokens as an app's sign-in layer hands them out: `next` decides the lifetime of the next one signed. */
function tokenSource(sub: string, ttls: { first: number; refreshed: number }) {
  const calls: boolean[] = [];
  let current: string | undefined;
  return {
    calls,
    /** What time does to the cached token while the app is away: the next non-forced read gets it as is. */
    replace: (token: string) => (current = token),
    getToken: async ({ forceRefresh }: { forceRefresh: boolean }) => {
      calls.push(forceRefresh);
      if (!current || forceRefresh) current = await tokenFor(sub, { ttlSeconds: current ? ttls.refreshed : ttls.first });
      return current;
    },
  };
}

function newClient(url: string, getToken: TokenProvider, closes: number[]): CouponClient {
  return new CouponClient({ url, getToken, webSocketImpl: WebSocket, baseDelayMs: 100, maxDelayMs: 1000, retryAttempts: 40, onClose: (code) => closes.push(code) });
}

test('When the server restarts between issueCoupon and its confirmation, then the client reconnects, subscribes again and gets ISSUED', async () => {
  const url = await startService('api');
  const promotionId = await createPromotion(url.replace(/\/graphql$/, ''));
  const tokens = tokenSource('alice', { first: 3600, refreshed: 3600 });
  const closes: number[] = [];
  client = newClient(url, tokens.getToken, closes);

  const issued = await client.issueCoupon(promotionId);
  expect(issued).toMatchObject({ outcome: 'QUEUED', position: 1 });
  const confirmation = client.waitForIssuance(issued.requestId as string);
  await eventually(async () => subscriptionsStarted() === 1 || undefined, 20_000, 'the subscription on the first process');

  await stopService(); // the confirmation has not happened: no consumer ran
  await startService('all'); // same port; its consumer stores the coupon
  const final = await confirmation;

  expect(final).toMatchObject({ requestId: issued.requestId, promotionId, status: 'ISSUED', failureReason: null });
  expect(final.coupon?.code).toMatch(/^[A-Z0-9]{16}$/);
  expect(subscriptionsStarted()).toBe(1); // the second process got the re-subscription
  expect(closes).toContain(1006); // the first socket was cut, not closed politely
  expect(closes).not.toContain(4403);
  expect(await client.issuance(issued.requestId as string)).toMatchObject({ status: 'ISSUED', coupon: { code: final.coupon?.code } });
});

test('When the token expires on an open socket, then the client refreshes it once, subscribes again and gets ISSUED', async () => {
  const url = await startService('api');
  const promotionId = await createPromotion(url.replace(/\/graphql$/, ''));
  const tokens = tokenSource('bob', { first: 1, refreshed: 3600 }); // the server closes the socket 1 s + 5 s of skew later
  const closes: number[] = [];
  client = newClient(url, tokens.getToken, closes);

  const issued = await client.issueCoupon(promotionId);
  const confirmation = client.waitForIssuance(issued.requestId as string);
  await eventually(async () => subscriptionsStarted() === 2 || undefined, 30_000, 'a second subscription, after the 4403 close');
  consumer = await startTestApp(env, { ROLE: 'consumer' });
  const final = await confirmation;

  expect(final).toMatchObject({ requestId: issued.requestId, status: 'ISSUED' });
  expect(closes).toEqual([4403]);
  expect(tokens.calls.filter((forced) => forced)).toHaveLength(1);
});

test('When the cached token has expired by the time the client reconnects, then one 4403 makes it refresh, and ISSUED still arrives', async () => {
  const url = await startService('api');
  const promotionId = await createPromotion(url.replace(/\/graphql$/, ''));
  const tokens = tokenSource('carol', { first: 3600, refreshed: 3600 });
  const closes: number[] = [];
  client = newClient(url, tokens.getToken, closes);

  const issued = await client.issueCoupon(promotionId);
  const confirmation = client.waitForIssuance(issued.requestId as string);
  await eventually(async () => subscriptionsStarted() === 1 || undefined, 20_000, 'the subscription on the first process');
  await stopService();
  tokens.replace(await tokenFor('carol', { ttlSeconds: -60 })); // the app was away past the token's lifetime
  await startService('all');
  const final = await confirmation;

  expect(final).toMatchObject({ requestId: issued.requestId, status: 'ISSUED' });
  expect(closes.filter((code) => code === 4403)).toHaveLength(1);
  expect(tokens.calls.filter((forced) => forced)).toHaveLength(1);
});

test('When no fresh token can be had (signed out), then the client stops after two 4403 closes instead of looping, and says why', async () => {
  const url = await startService('api');
  const promotionId = await createPromotion(url.replace(/\/graphql$/, ''));
  const valid = await tokenFor('dave');
  const issued = await new CouponClient({ url, getToken: async () => valid, webSocketImpl: WebSocket }).issueCoupon(promotionId);
  const expired = async () => tokenFor('dave', { ttlSeconds: -60 });
  const closes: number[] = [];
  client = newClient(url, expired, closes);

  const outcome = await client.waitForIssuance(issued.requestId as string).catch((error: unknown) => error);

  expect(outcome).toBeInstanceOf(CouponClientError);
  expect((outcome as CouponClientError).code).toBe('CLOSE_4403');
  expect(closes).toEqual([4403, 4403]);
  await new Promise((resolve) => setTimeout(resolve, 1500)); // a looping client would have reconnected by now
  expect(closes).toEqual([4403, 4403]);
});
