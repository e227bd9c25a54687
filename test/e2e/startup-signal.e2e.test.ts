import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { serviceEnv, spawnService, type Exit } from '../helpers/service-process';

/**
 * An orchestrator may stop a process at any moment, start-up included. A SIGTERM that arrives while the
 * service connects, builds its schema, starts its consumer or has just logged "started" must stop it
 * cleanly (exit 0), never kill it with the default action.
 */

let env: TestEnvironment;

beforeAll(async () => {
  env = await createTestEnvironment('startup_signal');
});

afterAll(async () => {
  await env.cleanup();
});

/**
 * A loopback proxy in front of Redis that accepts connections but forwards nothing until opened: the
 * service is then provably inside its start-up (connecting to Redis) for as long as the test wants.
 */
class GateProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private open = false;
  private readonly waiting: (() => void)[] = [];
  private firstConnection: () => void = () => undefined;
  readonly connected = new Promise<void>((resolve) => (this.firstConnection = resolve));

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => {
      this.firstConnection();
      const forward = () => {
        const upstream = connect(this.target.port, this.target.host);
        for (const s of [client, upstream]) {
          this.sockets.add(s);
          s.on('error', () => s.destroy());
          s.on('close', () => this.sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      };
      client.pause(); // whatever the client sends waits in the socket until the gate opens
      if (this.open) forward();
      else this.waiting.push(forward);
      client.on('error', () => client.destroy());
      this.sockets.add(client);
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    return `redis://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  release(): void {
    this.open = true;
    for (const forward of this.waiting.splice(0)) forward();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const redisTarget = () => {
  const url = new URL(env.redisUrl);
  return { host: url.hostname, port: Number(url.port || 6379) };
};

test('When SIGTERM arrives while the service is still connecting, then it finishes starting, stops and exits 0 (12 runs)', async () => {
  const exits: Exit[] = [];
  const stopMs: number[] = [];
  for (let run = 0; run < 12; run++) {
    const gate = new GateProxy(redisTarget());
    const redisUrl = await gate.start();
    const service = spawnService(serviceEnv(env, { REDIS_URL: redisUrl }));
    try {
      await gate.connected; // start-up has reached Redis: modules loaded, database migrated
      await sleep((run % 4) * 15); // and a little later, while it still waits for Redis
      const signalledAt = Date.now();
      service.child.kill('SIGTERM');
      await sleep((run % 3) * 100); // Redis answers before, at or after the signal is handled
      gate.release();
      exits.push(await service.exit);
      stopMs.push(Date.now() - signalledAt);
    } finally {
      if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
      await gate.stop();
    }
    if (exits[run]?.code !== 0) throw new Error(`run ${run}: ${JSON.stringify(exits[run])}\n${service.output()}`);
  }
  console.log(`signal during start-up: 12 runs, signal→exit ms ${stopMs.join(' ')}`);
  expect(exits).toEqual(Array.from({ length: 12 }, () => ({ code: 0, signal: null })));
}, 240_000);

test('When SIGTERM arrives as "started" is logged or just after, then it exits 0 (8 runs)', async () => {
  const exits: Exit[] = [];
  for (let run = 0; run < 8; run++) {
    const service = spawnService(serviceEnv(env));
    try {
      await service.started;
      if (run % 2 === 1) await sleep(run); // 0 to 7 ms after the line was read
      service.child.kill('SIGTERM');
      exits.push(await service.exit);
    } finally {
      if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
    }
    if (exits[run]?.code !== 0) throw new Error(`run ${run}: ${JSON.stringify(exits[run])}\n${service.output()}`);
  }
  expect(exits).toEqual(Array.from({ length: 8 }, () => ({ code: 0, signal: null })));
}, 240_000);
