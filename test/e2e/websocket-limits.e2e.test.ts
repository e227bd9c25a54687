import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Redis } from 'ioredis';
import pino from 'pino';
import { startApp, type RunningApp } from '../../src/app';
import { RedisKeys } from '../../src/redis/keys';
import { encodeIssuance } from '../../src/redis/issuance-codec';
import { CreatePromotionDocument } from '../generated/graphql';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { endOf, openRaw, type RawSocket } from '../helpers/raw-ws';

/**
 * WebSocket clients that misbehave, against the real server: each bound of API.md "Limits" holds, the
 * connection survives where the contract says it does, and nothing of it shows up as an internal error.
 */

let env: TestEnvironment;
let app: RunningApp;
let alice: string;
let promotionId: string;
const logLines: string[] = [];
const sockets: RawSocket[] = [];

const FEED = 'subscription ($p: ID) { couponIssued(promotionId: $p) { requestId status failureReason } }';
const ANON_PER_IP = 3;
const PING_MS = 1000; // short enough to see a dead peer dropped quickly, long enough for a busy test process to answer
const BACKLOG = 20;

async function open(authorization?: string | null, options: Parameters<typeof openRaw>[1] = {}): Promise<RawSocket> {
  const socket = await openRaw(app.url, options);
  sockets.push(socket);
  if (authorization !== null) await socket.init(authorization);
  return socket;
}

let consoleErrors: jest.SpyInstance;
/** Error lines of the service's log, and anything a library printed to the console as an error. */
const errorLines = () => [
  ...logLines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50),
  ...consoleErrors.mock.calls.map((args: unknown[]) => args.map(String).join(' ')),
];

beforeAll(async () => {
  consoleErrors = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  env = await createTestEnvironment('ws_limits');
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) }));
  // The rate limits have tests of their own (rate-limits.e2e): here one user opens more subscriptions, and more
  // anonymous sockets come from one address, than a second's worth, to reach the bounds under test.
  app = await startApp(
    env.config({
      WS_MAX_ANON_CONNECTIONS_PER_IP: String(ANON_PER_IP),
      WS_PING_INTERVAL_MS: String(PING_MS),
      RATE_LIMIT_USER_PER_SECOND: '0',
      RATE_LIMIT_ANON_PER_SECOND: '0',
    }),
    logger,
  );
  alice = await tokenFor('alice');
  const admin = await tokenFor('admin', { admin: true });
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: 'ws', totalStock: 10, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, admin);
  promotionId = created.body.data?.createPromotion.id as string;
});

afterEach(() => {
  for (const s of sockets.splice(0)) s.ws.terminate();
});

afterAll(async () => {
  consoleErrors.mockRestore();
  await app.stop();
  await env.cleanup();
});

test('When a frame is over 64 KiB, then the connection is closed with 1009, and that is no error of the service', async () => {
  const socket = await open(`Bearer ${alice}`);
  const before = errorLines().length;

  socket.subscribe('big', FEED, { p: promotionId, padding: 'x'.repeat(70 * 1024) });

  expect((await socket.closed).code).toBe(1009);
  expect(errorLines().slice(before)).toEqual([]);
});

test('When a connection opens a 21st subscription, then that one gets RATE_LIMITED with retryAfterMs and the others live on', async () => {
  const socket = await open(`Bearer ${alice}`);
  for (let i = 0; i < 20; i++) socket.subscribe(`s${i}`, FEED, { p: promotionId });

  socket.subscribe('s20', FEED, { p: promotionId });
  const refused = await socket.waitFor(endOf('s20'));

  expect(refused).toMatchObject({ type: 'error', payload: [{ extensions: { code: 'RATE_LIMITED', retryAfterMs: expect.any(Number) } }] });
  expect(socket.messages.filter((m) => m.id !== 's20' && m.type !== 'connection_ack')).toEqual([]);
  // A query still runs beside the 20 (only subscriptions count), and once one of them ends a new one is admitted.
  socket.subscribe('query', '{ promotion(id: "x") { id } }');
  expect(await socket.waitFor(endOf('query'))).toMatchObject({ type: 'next', payload: { data: { promotion: null } } });
  socket.ws.send(JSON.stringify({ id: 's0', type: 'complete' }));
  socket.subscribe('s21', FEED, { p: promotionId });
  socket.subscribe('probe', '{ promotion(id: "x") { id } }');
  await socket.waitFor((m) => m.id === 'probe' && m.type === 'complete');
  await new Promise((r) => setTimeout(r, 100)); // a refusal would be immediate
  expect(socket.messages.filter((m) => m.id === 's21')).toEqual([]);
  expect(socket.ws.readyState).toBe(socket.ws.OPEN);
});

test('When a user opens an 11th connection, then it is closed with 4429 after connection_init and the ten others stay', async () => {
  const bob = await tokenFor('bob');
  const ten = await Promise.all(Array.from({ length: 10 }, () => open(`Bearer ${bob}`)));

  const eleventh = await open(null);
  eleventh.ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${bob}` } }));

  expect((await eleventh.closed).code).toBe(4429);
  for (const s of ten) expect(s.ws.readyState).toBe(s.ws.OPEN);
  ten[0]?.ws.close();
  await ten[0]?.closed;
  await eventually(async () => {
    const again = await openRaw(app.url);
    sockets.push(again);
    return again.init(`Bearer ${bob}`).then(() => true, () => undefined);
  }, 5000, 'a connection once one closed');
});

test('When a socket closes while its token is being verified, then its per-user slot is not kept: the user\'s next connection is accepted', async () => {
  // An identity provider whose key set takes 500 ms: the first socket leaves while the service waits for it.
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'slow', alg: 'RS256', use: 'sig' };
  const keyServer = createServer((_req, res) =>
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    }, 500),
  );
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
  const one = await startApp(
    env.config({
      JWT_JWKS_URL: `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}/jwks`,
      WS_MAX_CONNECTIONS_PER_USER: '1',
      RATE_LIMIT_USER_PER_SECOND: '0',
      RATE_LIMIT_ANON_PER_SECOND: '0',
    }),
    pino({ level: 'silent' }),
  );
  const sign = (ttlSeconds: number) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'slow' })
      .setSubject('frank')
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
      .sign(privateKey);
  try {
    const dropped = await openRaw(one.url);
    sockets.push(dropped);
    dropped.ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${await sign(600)}` } }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    dropped.ws.terminate();
    await dropped.closed;
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the key set arrives; the first socket is long gone

    const next = await openRaw(one.url);
    sockets.push(next);
    await expect(next.init(`Bearer ${await sign(700)}`)).resolves.toBeUndefined();
  } finally {
    for (const s of sockets.splice(0)) s.ws.terminate();
    await one.stop();
    keyServer.close();
  }
});

test('When the authorization has whitespace after the token, then the connection is still closed with 4403 when the token expires', async () => {
  // exp 4 s ago: within the 5 s clock-skew allowance for about one more second.
  const token = await tokenFor('trailing', { ttlSeconds: -4 });
  const socket = await open(`Bearer ${token}  `);

  expect(await Promise.race([socket.closed, new Promise((resolve) => setTimeout(() => resolve('still open'), 4000))])).toEqual({
    code: 4403,
    reason: 'Token expired',
  });
});

test('When one address opens more anonymous connections than WS_MAX_ANON_CONNECTIONS_PER_IP, then the extra one is closed with 4429', async () => {
  const allowed = await Promise.all(Array.from({ length: ANON_PER_IP }, () => open()));

  const extra = await open(null);
  extra.ws.send(JSON.stringify({ type: 'connection_init', payload: {} }));

  expect((await extra.closed).code).toBe(4429);
  for (const s of allowed) expect(s.ws.readyState).toBe(s.ws.OPEN);
});

test('When an anonymous connection subscribes to couponIssued, then UNAUTHENTICATED and the connection stays', async () => {
  const socket = await open();

  socket.subscribe('mine', FEED, { p: promotionId });
  const answer = await socket.waitFor(endOf('mine'));
  socket.subscribe('public', '{ promotion(id: "x") { id } }');
  const publicAnswer = await socket.waitFor(endOf('public'));

  expect(answer).toMatchObject({ payload: { errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] } });
  expect(publicAnswer).toMatchObject({ type: 'next', payload: { data: { promotion: null } } });
  expect(socket.ws.readyState).toBe(socket.ws.OPEN);
});

test('When a peer stops answering pings, then it is dropped within two ping intervals', async () => {
  const silent = await open(`Bearer ${alice}`, { autoPong: false });
  const started = Date.now();

  const { code } = await Promise.race([
    silent.closed,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('dead peer still connected after 5 s')), 5000)),
  ]);

  expect(code).toBe(1006); // terminated: no close frame for a peer that is gone
  expect(Date.now() - started).toBeGreaterThanOrEqual(PING_MS);
});

test('When a subscriber stops reading, then its backlog stays bounded and the connection is closed with 4503', async () => {
  // Its own server, pinging at the default interval: a client that does not read does not answer pings
  // either, and this is about the backlog bound, not the heartbeat.
  const server = await startApp(env.config({ WS_MAX_BACKLOG: String(BACKLOG), ROLE: 'api' }), pino({ level: 'silent' }));
  const carol = await tokenFor('carol');
  const socket = await openRaw(server.url);
  sockets.push(socket);
  await socket.init(`Bearer ${carol}`);
  socket.subscribe('feed', FEED, {});
  const keys = new RedisKeys(env.prefix);
  const redis = new Redis(env.redisUrl);
  try {
    await eventually(async () => ((await redis.call('PUBSUB', 'SHARDNUMSUB', keys.userChannel(promotionId, 'carol'))) as [string, number])[1] === 1 || undefined, 5000, 'the feed to subscribe');
    socket.ws.pause(); // the client reads nothing more: the server's sends queue up behind the kernel buffers
    const pipeline = redis.pipeline();
    for (let i = 0; i < 20_000; i++) {
      const requestId = `${promotionId}.${i.toString(16).padStart(32, '0')}`;
      pipeline.spublish(keys.userChannel(promotionId, 'carol'), encodeIssuance({ requestId, promotionId, userId: 'carol', status: 'FAILED', requestedAt: new Date(), coupon: null, failureReason: 'x'.repeat(2000) }));
    }
    await pipeline.exec();

    // Over the bound the server stops the feed (the channel loses its subscriber) and closes the connection.
    await eventually(async () => ((await redis.call('PUBSUB', 'SHARDNUMSUB', keys.userChannel(promotionId, 'carol'))) as [string, number])[1] === 0 || undefined, 20_000, 'the feed to stop');
    socket.ws.resume();

    expect((await socket.closed).code).toBe(4503);
    expect(socket.messages.filter((m) => m.type === 'next').length).toBeLessThan(20_000);
  } finally {
    redis.disconnect();
    socket.ws.terminate();
    await server.stop();
  }
});

describe('error codes over WebSocket', () => {
  test('When a variable has the wrong type, then BAD_USER_INPUT as over HTTP, for a subscription and a mutation, and nothing is logged as an error', async () => {
    const socket = await open(`Bearer ${alice}`);
    const before = errorLines().length;

    socket.subscribe('sub', 'subscription ($p: ID) { couponIssued(promotionId: $p) { requestId } }', { p: { not: 'an id' } });
    socket.subscribe('mut', 'mutation ($p: ID!) { issueCoupon(promotionId: $p) { outcome } }', { p: ['x'] });
    const answers = [await socket.waitFor(endOf('sub')), await socket.waitFor(endOf('mut'))];
    const http = await httpGraphQL(app.url, 'mutation ($p: ID!) { issueCoupon(promotionId: $p) { outcome } }', { p: ['x'] } as never, alice);

    expect(http.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    for (const answer of answers) expect(answer).toMatchObject({ type: 'error', payload: [{ extensions: { code: 'BAD_USER_INPUT' } }] });
    expect(errorLines().slice(before)).toEqual([]);
  });

  test('When a client reuses a long subscription id, then it is closed with 4409 and nothing is logged as an error', async () => {
    const socket = await open(`Bearer ${alice}`);
    const before = errorLines().length;
    const id = 'x'.repeat(200); // graphql-ws puts the id in its close reason, which a close frame holds at most 123 bytes of

    socket.subscribe(id, FEED, { p: promotionId });
    socket.subscribe(id, FEED, { p: promotionId });

    expect((await socket.closed).code).toBe(4409);
    expect(errorLines().slice(before)).toEqual([]);
  });

  test('When a client disconnects with subscriptions open, then nothing is logged as an error', async () => {
    const socket = await open(`Bearer ${alice}`);
    for (let i = 0; i < 5; i++) socket.subscribe(`s${i}`, FEED, { p: promotionId });
    socket.subscribe('probe', '{ promotion(id: "x") { id } }');
    await socket.waitFor(endOf('probe'));
    const before = errorLines().length;

    socket.ws.terminate();
    await socket.closed;
    await new Promise((r) => setTimeout(r, 500)); // the server handles the close and ends the subscriptions

    expect(errorLines().slice(before)).toEqual([]);
  });
});
