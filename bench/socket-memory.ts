/**
 * Memory per subscribed WebSocket: the service (dist/main.js, ROLE=api) in a child process, and from another
 * child process N sockets, each a distinct signed-in user with one `couponIssued` subscription. At each N the
 * service's RSS (/proc/<pid>/status) and heap are read after forced garbage collections, through the
 * inspector the service is started with here (nothing is exposed by the service itself). Optionally a second
 * service run takes heap snapshots with 0 and S sockets and diffs them by constructor.
 *
 *   node -r @swc-node/register bench/socket-memory.ts [--sockets 1000,5000,15000] [--snapshot-at 1000]
 *        [--service dist/main.js] [--out bench/results/socket-memory.md]
 *
 * The client processes hold at most CLIENT_SOCKETS each (the per-process file limit is 20,000 here), from
 * a few loopback source addresses so the ephemeral ports of one address are not all taken.
 * BENCH_REDIS_URL, BENCH_DATABASE_URL (default coupons_bench_sockets; its name must contain "bench").
 * Also callable from another benchmark: measureSocketMemory().
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { signToken } from '../src/api/auth';
import { RedisKeys } from '../src/redis/keys';
import { freePort, startService, stopChild, type Child } from './children';
import { deleteKeysWithPrefix } from './service';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_sockets';
/** Sockets one client process opens at most: below the per-process file limit, with room to spare. */
const CLIENT_SOCKETS = 10_000;
/** Sockets being opened at once by one client process. */
const IN_FLIGHT = 100;
/** Sockets already counted in a measurement are warmed up with: code paths loaded, pools grown. */
const WARM_UP_SOCKETS = 200;
/** After the warm-up sockets close, this long for all they held to go (the 3 s connection_init wait holds a socket). */
const WARM_UP_DRAIN_MS = 4000;
const SUBSCRIPTION = 'subscription Feed($p: ID) { couponIssued(promotionId: $p) { requestId status coupon { code } } }';

const log = (message: string) => process.stderr.write(`socket-memory: ${message}\n`);
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const kib = (bytes: number) => fmt(bytes / 1024, 1);

// ---------------------------------------------------------------------------------------------------------
// Client process: opens sockets on request and keeps them open until told to close or killed.

interface OpenRequest {
  kind: 'open';
  url: string;
  secret: string;
  userPrefix: string;
  from: number;
  to: number;
  sourceAddresses: string[];
}
type ToClient = OpenRequest | { kind: 'close' };
interface OpenReport {
  kind: 'opened';
  open: number;
  failures: string[];
}

function runClient(): void {
  const sockets: WebSocket[] = [];
  const unexpected: string[] = [];

  const openOne = async (request: OpenRequest, i: number): Promise<void> => {
    const authorization = `Bearer ${await signToken(request.secret, `${request.userPrefix}${i}`, { ttlSeconds: 3600 })}`;
    const ws = new WebSocket(`${request.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', {
      perMessageDeflate: false,
      localAddress: request.sourceAddresses[i % request.sourceAddresses.length],
    });
    await new Promise<void>((resolvePromise, reject) => {
      ws.on('error', reject);
      ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${reason.toString()} before the subscription`)));
      ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization } })));
      ws.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { type: string };
        if (message.type === 'connection_ack') {
          ws.send(JSON.stringify({ type: 'subscribe', id: '1', payload: { query: SUBSCRIPTION, variables: { p: 'P-bench' } } }));
          resolvePromise();
        } else if (message.type !== 'pong') {
          unexpected.push(`socket ${i}: ${data.toString().slice(0, 200)}`);
        }
      });
    });
    ws.removeAllListeners('close');
    ws.on('error', () => undefined);
    ws.once('close', (code) => unexpected.push(`socket ${i} closed ${code}`));
    sockets.push(ws);
  };

  process.on('message', (message: ToClient) => {
    if (message.kind === 'close') {
      for (const ws of sockets) {
        ws.removeAllListeners('close');
        ws.terminate();
      }
      sockets.length = 0;
      process.send?.({ kind: 'closed' });
      return;
    }
    void (async () => {
      const failures: string[] = [];
      let next = message.from;
      const worker = async () => {
        while (next < message.to) {
          const i = next++;
          await openOne(message, i).catch((error: unknown) => failures.push(`socket ${i}: ${String(error)}`));
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const report: OpenReport = { kind: 'opened', open: sockets.length, failures: [...failures, ...unexpected.splice(0)].slice(0, 20) };
      process.send?.(report);
    })();
  });
}

// ---------------------------------------------------------------------------------------------------------
// The inspector of the service: garbage collection, process.memoryUsage() and heap snapshots.

class Inspector {
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  private chunks: string[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: { chunk: string } };
      if (message.method === 'HeapProfiler.addHeapSnapshotChunk') this.chunks.push(message.params?.chunk ?? '');
      if (message.id === undefined) return;
      const call = this.calls.get(message.id);
      this.calls.delete(message.id);
      if (message.error) call?.reject(new Error(message.error.message));
      else call?.resolve(message.result);
    });
  }

  static async connect(port: number): Promise<Inspector> {
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (!url) throw new Error('the service has no inspector target');
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 30 });
    await new Promise((resolvePromise, reject) => ws.once('open', resolvePromise).once('error', reject));
    return new Inspector(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolvePromise, reject) => {
      this.calls.set(id, { resolve: resolvePromise, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full collections until the heap stops shrinking (weak references and finalizers take more than one). */
  async settle(): Promise<void> {
    let last = Infinity;
    for (let i = 0; i < 6; i++) {
      await this.call('HeapProfiler.collectGarbage');
      await new Promise((r) => setTimeout(r, 200));
      const used = (await this.memoryUsage()).heapUsed;
      if (used >= last - 64 * 1024 && i >= 2) return;
      last = used;
    }
  }

  async memoryUsage(): Promise<NodeJS.MemoryUsage> {
    const { result } = (await this.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })) as {
      result: { value: string };
    };
    return JSON.parse(result.value) as NodeJS.MemoryUsage;
  }

  async snapshot(): Promise<string> {
    this.chunks = [];
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    const text = this.chunks.join('');
    this.chunks = [];
    return text;
  }

  close(): void {
    this.ws.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Heap snapshots by constructor, as DevTools' summary groups them (self sizes; retained sizes are not computed).

interface Group {
  count: number;
  selfSize: number;
}

function groupsOf(text: string): Map<string, Group> {
  const snapshot = JSON.parse(text) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const stride = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const groups = new Map<string, Group>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += stride) {
    const type = types[nodes[i + typeAt] as number] as string;
    const name = strings[nodes[i + nameAt] as number] as string;
    let key: string;
    if (type === 'object' || type === 'closure' || type === 'native' || type === 'regexp') key = `${name}${type === 'closure' ? '()' : ''}`;
    else if (type === 'string' || type === 'concatenated string' || type === 'sliced string') key = '(string)';
    else if (type === 'number' || type === 'bigint' || type === 'symbol') key = `(${type})`;
    else key = `(${type}) ${name.slice(0, 60)}`;
    const group = groups.get(key) ?? { count: 0, selfSize: 0 };
    group.count++;
    group.selfSize += nodes[i + sizeAt] as number;
    groups.set(key, group);
  }
  return groups;
}

interface DiffRow {
  key: string;
  count: number;
  selfSize: number;
}

function diffGroups(before: Map<string, Group>, after: Map<string, Group>): DiffRow[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  const rows: DiffRow[] = [];
  for (const key of keys) {
    const a = before.get(key) ?? { count: 0, selfSize: 0 };
    const b = after.get(key) ?? { count: 0, selfSize: 0 };
    rows.push({ key, count: b.count - a.count, selfSize: b.selfSize - a.selfSize });
  }
  return rows.sort((x, y) => y.selfSize - x.selfSize);
}

// ---------------------------------------------------------------------------------------------------------
// The measurement.

export interface SocketMemoryOptions {
  /** Socket counts, ascending, measured one after the other on the same service. */
  sockets: number[];
  /** Heap snapshots with 0 and this many sockets, on a second service run; 0: none. */
  snapshotAt: number;
  /** The service's entry point, relative to the repository (dist/main.js; an older build to compare). */
  service: string;
}

export interface SocketMemoryPoint {
  sockets: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
}

export interface SocketMemoryResult {
  baseline: SocketMemoryPoint;
  points: SocketMemoryPoint[];
  snapshotDiff: DiffRow[] | null;
  snapshotFiles: string[];
}

interface Running {
  service: Child;
  inspector: Inspector;
  clients: ChildProcess[];
  url: string;
  pid: number;
  opened: number;
}

async function vmRss(pid: number): Promise<number> {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

function startClient(): ChildProcess {
  return fork(__filename, [], {
    cwd: ROOT,
    execArgv: ['-r', '@swc-node/register'],
    env: { ...process.env, SOCKET_MEMORY_CLIENT: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function ask<T>(client: ChildProcess, message: ToClient, reply: string): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const onMessage = (answer: { kind: string }) => {
      if (answer.kind !== reply) return;
      client.off('message', onMessage);
      client.off('exit', onExit);
      resolvePromise(answer as T);
    };
    const onExit = (code: number | null) => reject(new Error(`a client process exited (${code}) while opening sockets`));
    client.on('message', onMessage);
    client.once('exit', onExit);
    client.send(message);
  });
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const result = await measureSocketMemory(options);
  const markdown = render(options, result);
  if (result.snapshotFiles.length > 0) log(`heap snapshots (open in DevTools, Memory tab): ${result.snapshotFiles.join(', ')}`);
  process.stdout.write(`\n${markdown}\n`);
  const out = resolve(ROOT, argValue(process.argv.slice(2), '--out') ?? 'bench/results/socket-memory.md');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${markdown}\n`);
  log(`report written to ${out}`);
  return 0;
}

export async function measureSocketMemory(options: SocketMemoryOptions): Promise<SocketMemoryResult> {
  const prefix = `bench:sockets:${randomBytes(4).toString('hex')}:`;
  const secret = randomBytes(32).toString('hex');
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  const children: Child[] = [];
  const clients: ChildProcess[] = [];
  try {
    if (options.service === 'dist/main.js') execFileSync(process.execPath, ['scripts/ensure-built.js'], { cwd: ROOT, stdio: 'inherit' });
    const keys = new RedisKeys(`${prefix}svc:`);

    const start = async (): Promise<Running> => {
      const [port, inspectPort] = [await freePort(), await freePort()];
      const url = `http://127.0.0.1:${port}`;
      const env = {
        NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, REDIS_URL, JWT_SECRET: secret,
        REDIS_KEY_PREFIX: `${prefix}svc:`, LOG_LEVEL: 'warn', ROLE: 'api', MIGRATE: 'true', SHUTDOWN_TIMEOUT_MS: '3000',
        // Sockets open as fast as the clients can: the upgrade and per-user rates are not what is measured.
        RATE_LIMIT_ANON_PER_SECOND: '0', RATE_LIMIT_USER_PER_SECOND: '0', MAX_CONNECTIONS: '1000000',
      };
      const service = await startService(['node', `--inspect=127.0.0.1:${inspectPort}`, options.service], env, url, ROOT, (child) => children.push(child));
      const inspector = await Inspector.connect(inspectPort);
      return { service, inspector, clients: [], url, pid: service.pid, opened: 0 };
    };

    /** Opens sockets up to `total`, each with its subscription live (its user's channel subscribed in Redis). */
    const openUpTo = async (run: Running, total: number, userPrefix: string): Promise<void> => {
      const started = Date.now();
      const jobs: Promise<OpenReport>[] = [];
      for (let from = run.opened; from < total; ) {
        const index = Math.floor(from / CLIENT_SOCKETS);
        const to = Math.min(total, (index + 1) * CLIENT_SOCKETS);
        let client = run.clients[index];
        if (!client) {
          client = startClient();
          run.clients.push(client);
          clients.push(client);
        }
        const sourceAddresses = [2, 3, 4, 5].map((n) => `127.0.${index + 1}.${n}`);
        jobs.push(ask<OpenReport>(client, { kind: 'open', url: run.url, secret, userPrefix, from, to, sourceAddresses }, 'opened'));
        from = to;
      }
      const reports = await Promise.all(jobs);
      const failures = reports.flatMap((r) => r.failures);
      if (failures.length > 0) throw new Error(`sockets failed:\n${failures.join('\n')}`);
      run.opened = total;
      // graphql-ws answers nothing to a subscription until an event: its user's channel in Redis says it is live.
      const pattern = `${keys.userChannel('P-bench', userPrefix)}*`;
      for (let tries = 0; ; tries++) {
        const channels = ((await redis.call('PUBSUB', 'SHARDCHANNELS', pattern)) as string[]).length;
        if (channels === total) break;
        if (tries > 300) throw new Error(`only ${channels} of ${total} subscriptions live`);
        await new Promise((r) => setTimeout(r, 100));
      }
      log(`${fmt(total)} sockets subscribed (${fmt(Date.now() - started)} ms)`);
    };

    const measure = async (run: Running): Promise<SocketMemoryPoint> => {
      await run.inspector.settle();
      const usage = await run.inspector.memoryUsage();
      return { sockets: run.opened, rssBytes: await vmRss(run.pid), heapUsedBytes: usage.heapUsed, externalBytes: usage.external, arrayBuffersBytes: usage.arrayBuffers };
    };

    const stop = async (run: Running) => {
      run.inspector.close();
      for (const client of run.clients) client.kill('SIGKILL');
      await stopChild(run.service);
    };

    // 1. RSS and heap at each N, on one service.
    const run = await start();
    await openUpTo(run, WARM_UP_SOCKETS, 'warm-');
    await ask(run.clients[0] as ChildProcess, { kind: 'close' }, 'closed');
    run.opened = 0;
    await new Promise((r) => setTimeout(r, WARM_UP_DRAIN_MS));
    const baseline = await measure(run);
    log(`baseline: rss ${kib(baseline.rssBytes)} KiB, heap ${kib(baseline.heapUsedBytes)} KiB`);
    const points: SocketMemoryPoint[] = [];
    for (const n of options.sockets) {
      await openUpTo(run, n, 'user-');
      const point = await measure(run);
      points.push(point);
      log(`${fmt(n)} sockets: ${kib((point.rssBytes - baseline.rssBytes) / n)} KiB RSS and ${kib((point.heapUsedBytes - baseline.heapUsedBytes) / n)} KiB heap a socket`);
    }
    await stop(run);

    // 2. Heap snapshots with 0 and S sockets, on a fresh service (a snapshot grows the RSS it would measure).
    let snapshotDiff: DiffRow[] | null = null;
    const snapshotFiles: string[] = [];
    if (options.snapshotAt > 0) {
      const snap = await start();
      await openUpTo(snap, WARM_UP_SOCKETS, 'warm-');
      await ask(snap.clients[0] as ChildProcess, { kind: 'close' }, 'closed');
      snap.opened = 0;
      await new Promise((r) => setTimeout(r, WARM_UP_DRAIN_MS));
      await snap.inspector.settle();
      const before = await snap.inspector.snapshot();
      await openUpTo(snap, options.snapshotAt, 'snap-');
      await snap.inspector.settle();
      const after = await snap.inspector.snapshot();
      await stop(snap);
      for (const [name, text] of [['0', before], [String(options.snapshotAt), after]] as const) {
        const file = join(tmpdir(), `socket-memory-${process.pid}-${name}.heapsnapshot`);
        writeFileSync(file, text);
        snapshotFiles.push(file);
      }
      snapshotDiff = diffGroups(groupsOf(before), groupsOf(after));
    }
    return { baseline, points, snapshotDiff, snapshotFiles };
  } finally {
    for (const client of clients) if (client.exitCode === null && client.signalCode === null) client.kill('SIGKILL');
    await Promise.all(children.map((c) => stopChild(c)));
    log(`deleted ${fmt(await deleteKeysWithPrefix(redis, prefix))} Redis keys ${prefix}*`);
    await redis.quit();
  }
}

function render(options: SocketMemoryOptions, result: SocketMemoryResult): string {
  const { baseline } = result;
  const lines = [
    `## Memory per subscribed WebSocket, ${new Date().toISOString().slice(0, 16)}Z`,
    '',
    `node ${process.version} · ${cpus().length} cores · service ${options.service} (ROLE=api) · one \`couponIssued\` subscription a socket, one user a socket · after forced GC`,
    '',
    `Baseline (after ${WARM_UP_SOCKETS} sockets opened and closed): RSS ${kib(baseline.rssBytes)} KiB, heap used ${kib(baseline.heapUsedBytes)} KiB.`,
    '',
    '| sockets | RSS KiB/socket | heap KiB/socket | external KiB/socket | RSS MiB | heap MiB | RSS for 100,000 (extrapolated) GiB |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...result.points.map((p) => {
      const rss = (p.rssBytes - baseline.rssBytes) / p.sockets;
      return `| ${fmt(p.sockets)} | ${kib(rss)} | ${kib((p.heapUsedBytes - baseline.heapUsedBytes) / p.sockets)} | ${kib((p.externalBytes - baseline.externalBytes) / p.sockets)} | ${fmt(p.rssBytes / 2 ** 20)} | ${fmt(p.heapUsedBytes / 2 ** 20)} | ${fmt((baseline.rssBytes + rss * 100_000) / 2 ** 30, 2)} |`;
    }),
  ];
  if (result.snapshotDiff) {
    const n = options.snapshotAt;
    lines.push(
      '',
      `### Heap snapshot diff, 0 → ${fmt(n)} sockets, by constructor (self sizes), per socket`,
      '',
      '| constructor | count/socket | bytes/socket |',
      '| --- | --- | --- |',
      ...result.snapshotDiff.slice(0, 30).map((r) => `| ${r.key.replace(/\|/g, '\\|')} | ${fmt(r.count / n, 2)} | ${fmt(r.selfSize / n)} |`),
      '',
      `Total: ${fmt(result.snapshotDiff.reduce((sum, r) => sum + r.selfSize, 0) / n)} bytes a socket (self sizes of everything the sockets added).`,
    );
  }
  return lines.join('\n');
}

function argValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

function parseArgs(argv: string[]): SocketMemoryOptions {
  const sockets = (argValue(argv, '--sockets') ?? '1000,5000,15000').split(',').map(Number);
  if (sockets.some((n) => !Number.isInteger(n) || n <= 0) || sockets.some((n, i) => i > 0 && n <= (sockets[i - 1] as number))) {
    throw new Error('--sockets: ascending positive integers, comma-separated');
  }
  const snapshotAt = Number(argValue(argv, '--snapshot-at') ?? 1000);
  if (!Number.isInteger(snapshotAt) || snapshotAt < 0) throw new Error('--snapshot-at: a count of sockets, 0 for none');
  return { sockets, snapshotAt, service: argValue(argv, '--service') ?? 'dist/main.js' };
}

if (require.main === module) {
  if (process.env.SOCKET_MEMORY_CLIENT === '1') runClient();
  else
    main().then(
      (code) => process.exit(code),
      (error: unknown) => {
        log(error instanceof Error ? (error.stack ?? error.message) : String(error));
        process.exit(1);
      },
    );
}
