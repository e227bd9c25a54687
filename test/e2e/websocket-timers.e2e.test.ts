import pino from 'pino';
import { CLOCK_SKEW_SECONDS } from '../../src/api/auth';
import { startApp, type RunningApp } from '../../src/app';
import { tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { openRaw, type RawSocket } from '../helpers/raw-ws';

/**
 * The WebSocket deadlines run on timers shared by all sockets (token expiry, connection_init wait, heartbeat):
 * each socket still gets its own deadline, never before it is due, and one socket's end does not disturb the others'.
 */

let env: TestEnvironment;
let app: RunningApp;
const sockets: RawSocket[] = [];
const PING_MS = 300;

beforeAll(async () => {
  env = await createTestEnvironment('ws_timers');
  app = await startApp(
    env.config({ WS_PING_INTERVAL_MS: String(PING_MS), RATE_LIMIT_USER_PER_SECOND: '0', RATE_LIMIT_ANON_PER_SECOND: '0' }),
    pino({ level: 'silent' }),
  );
});

afterEach(() => {
  for (const s of sockets.splice(0)) s.ws.terminate();
});

afterAll(async () => {
  await app.stop();
  await env.cleanup();
});

async function open(): Promise<RawSocket> {
  const socket = await openRaw(app.url);
  sockets.push(socket);
  return socket;
}

/** When the service takes a token to expire: its exp plus the clock-skew allowance, in epoch ms. */
function expiryOf(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { exp: number };
  return (payload.exp + CLOCK_SKEW_SECONDS) * 1000;
}

const closedAt = (socket: RawSocket) => socket.closed.then((how) => ({ ...how, at: Date.now() }));

test('When tokens expire at different times, then each socket is closed with 4403 at its own expiry, never before, and one already gone changes nothing', async () => {
  // Within the clock-skew allowance for about one and two more seconds.
  const [sooner, later, gone] = await Promise.all([tokenFor('t1', { ttlSeconds: -4 }), tokenFor('t2', { ttlSeconds: -3 }), tokenFor('t3', { ttlSeconds: -4 })]);
  const [a, b, c] = await Promise.all([open(), open(), open()]);
  await Promise.all([a.init(`Bearer ${sooner}`), b.init(`Bearer ${later}`), c.init(`Bearer ${gone}`)]);
  c.ws.close(); // leaves before its expiry: its deadline must not close anything else

  const [first, second] = await Promise.all([closedAt(a), closedAt(b)]);

  expect(first).toMatchObject({ code: 4403, reason: 'Token expired' });
  expect(second).toMatchObject({ code: 4403, reason: 'Token expired' });
  expect(first.at).toBeGreaterThanOrEqual(expiryOf(sooner));
  expect(second.at).toBeGreaterThanOrEqual(expiryOf(later));
  // Generous: what matters is that each has its own time, not the shared timer's next round after the other.
  expect(first.at).toBeLessThan(expiryOf(sooner) + 1500);
  expect(second.at).toBeLessThan(expiryOf(later) + 1500);
});

test('When a client sends no connection_init, then it is closed with 4408 once the 3 s wait is over, and a client that sent it stays', async () => {
  const silent = await open();
  const started = Date.now();
  const polite = await open();
  await polite.init(`Bearer ${await tokenFor('polite')}`);

  const { code, at } = await closedAt(silent);

  expect(code).toBe(4408);
  expect(at - started).toBeGreaterThanOrEqual(2900); // the service counts from the upgrade, just before `started`
  expect(polite.ws.readyState).toBe(polite.ws.OPEN);
});

test('When peers answer pings, then they stay connected interval after interval while a silent one is dropped', async () => {
  const token = await tokenFor('pinged');
  const live = await Promise.all([open(), open()]);
  await Promise.all(live.map((s) => s.init(`Bearer ${token}`)));
  const silent = await openRaw(app.url, { autoPong: false });
  sockets.push(silent);
  await silent.init(`Bearer ${token}`);

  const dropped = await closedAt(silent);
  await new Promise((resolve) => setTimeout(resolve, 5 * PING_MS));

  expect(dropped.code).toBe(1006);
  for (const s of live) expect(s.ws.readyState).toBe(s.ws.OPEN);
});

test('When the wall clock steps back while a client sends no connection_init, then it is still closed with 4408 after 3 s', async () => {
  const silent = await open();
  const started = Date.now();
  const realNow = Date.now.bind(Date);
  // An NTP step or a resumed VM: the wall clock goes an hour back. The 3 s wait is a duration, not a date.
  const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 3_600_000);
  try {
    const closed = await Promise.race([
      closedAt(silent),
      new Promise<'still open'>((resolve) => setTimeout(() => resolve('still open'), 6000)),
    ]);

    expect(closed).not.toBe('still open');
    expect((closed as { code: number }).code).toBe(4408);
    expect(realNow() - started).toBeGreaterThanOrEqual(2900);
  } finally {
    clock.mockRestore();
  }
});
