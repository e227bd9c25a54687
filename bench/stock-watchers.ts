/**
 * promotionStock under a crowd: W anonymous WebSocket watchers of one promotion on ONE service process
 * (dist/main.js, ROLE=all), while a rush of issueCoupon calls sells the promotion out. Reports the first
 * message's latency, the updates a second each watcher saw, the service's RSS per watcher and CPU, and whether
 * every watcher got the final state (SOLD_OUT) and the completion.
 *
 *   npm run bench:stock -- [--watchers 10000] [--stock 2000] [--rate 1000] [--out bench/results/stock-watchers.md]
 *
 * The watchers live in a child process of their own (so neither their memory nor their event loop counts with
 * the service's), from four loopback source addresses. Loopback only; every phase is bounded.
 * BENCH_REDIS_URL, BENCH_DATABASE_URL (default coupons_bench_stock; its name must contain "bench").
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import WebSocket from 'ws';
import { freePort, startService, stopChild, type Child } from './children';
import { processSeconds } from './cpu';
import { buildRequest, runOpenLoop, type OpenLoopRequest } from './open-loop';
import { benchDatabaseName, createPromotion, ISSUE_COUPON, openBenchStores, signBenchTokens } from './service';
import { Cleanup } from './cleanup';
import { percentileOfSorted } from './stats';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench_stock';
const RATE = 4; // STOCK_UPDATES_PER_SECOND, the default
const SUBSCRIPTION = 'subscription Stock($p: ID!) { promotionStock(promotionId: $p) { remainingStock status at } }';
/** Handshakes in flight at once from the watcher process. */
const IN_FLIGHT = 200;
/** Every phase ends by then, whatever happens. */
const PHASE_TIMEOUT_MS = 120_000;

const log = (message: string) => process.stderr.write(`stock-watchers: ${message}\n`);
const fmt = (n: number | null, digits = 0) =>
  n === null ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

// ---------------------------------------------------------------------------------------------------------
// Watcher process: opens the sockets, subscribes each, and records when each message came.

type ToWatchers = { kind: 'open'; url: string; promotionId: string; count: number } | { kind: 'rush' } | { kind: 'report' };

interface WatcherReport {
  kind: 'report';
  opened: number;
  failures: string[];
  /** Subscribe → first message, ms, per watcher that got one. */
  firstMs: number[];
  /** Per watcher: messages between the first and the final one, a second, over the rush (rush start → final). */
  updatesPerSecond: number[];
  /** The most middle messages any watcher got within one second (a sliding window). */
  maxInOneSecond: number;
  finals: number;
  completed: number;
  /** Watchers whose last message was not SOLD_OUT or ENDED. */
  notFinal: number;
}

interface Watcher {
  ws: WebSocket;
  subscribedAt: number;
  times: number[];
  final: boolean;
  completed: boolean;
}

function runWatchers(): void {
  const watchers: Watcher[] = [];
  const failures: string[] = [];
  let rushAt = 0;

  const openOne = (url: string, promotionId: string, i: number) =>
    new Promise<void>((done) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', {
        perMessageDeflate: false,
        localAddress: `127.0.1.${2 + (i % 4)}`,
      });
      const w: Watcher = { ws, subscribedAt: 0, times: [], final: false, completed: false };
      ws.on('error', (error) => {
        if (failures.length < 20) failures.push(`watcher ${i}: ${String(error)}`);
        done();
      });
      ws.once('open', () => ws.send('{"type":"connection_init","payload":{}}'));
      ws.on('message', (data: Buffer) => {
        const text = data.toString();
        if (text.includes('"connection_ack"')) {
          w.subscribedAt = performance.now();
          ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: SUBSCRIPTION, variables: { p: promotionId } } }));
          watchers.push(w);
          done();
        } else if (text.includes('"type":"next"')) {
          w.times.push(performance.now());
          w.final = text.includes('"SOLD_OUT"') || text.includes('"ENDED"');
        } else if (text.includes('"type":"complete"')) {
          w.completed = true;
        }
      });
    });

  process.on('message', (message: ToWatchers) => {
    if (message.kind === 'open') {
      void (async () => {
        const started = performance.now();
        let next = 0;
        const lane = async () => {
          while (next < message.count) await openOne(message.url, message.promotionId, next++);
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
        // Every watcher's first message (the current state) before the rush starts.
        const until = performance.now() + PHASE_TIMEOUT_MS;
        while (watchers.some((w) => w.times.length === 0) && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
        process.send?.({ kind: 'opened', opened: watchers.length, seconds: (performance.now() - started) / 1000 });
      })();
    } else if (message.kind === 'rush') {
      rushAt = performance.now();
    } else {
      const firstMs = watchers.filter((w) => w.times.length > 0).map((w) => (w.times[0] as number) - w.subscribedAt);
      const updatesPerSecond: number[] = [];
      let maxInOneSecond = 0;
      for (const w of watchers) {
        const middle = w.final ? w.times.slice(1, -1) : w.times.slice(1);
        const end = w.times[w.times.length - 1] ?? rushAt;
        updatesPerSecond.push(end > rushAt ? middle.length / ((end - rushAt) / 1000) : 0);
        for (let i = 0, j = 0; i < middle.length; i++) {
          while ((middle[i] as number) - (middle[j] as number) >= 1000) j++;
          maxInOneSecond = Math.max(maxInOneSecond, i - j + 1);
        }
      }
      const report: WatcherReport = {
        kind: 'report',
        opened: watchers.length,
        failures,
        firstMs,
        updatesPerSecond,
        maxInOneSecond,
        finals: watchers.filter((w) => w.final).length,
        completed: watchers.filter((w) => w.completed).length,
        notFinal: watchers.filter((w) => !w.final).length,
      };
      process.send?.(report);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------------
// Bench process.

function ask<T>(child: ChildProcess, message: ToWatchers, kind: string): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`watchers: no ${kind} within ${PHASE_TIMEOUT_MS} ms`)), PHASE_TIMEOUT_MS);
    const onMessage = (reply: { kind: string }) => {
      if (reply.kind !== kind) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolvePromise(reply as T);
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

const vmRss = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);

async function endPromotion(url: string, adminToken: string, promotionId: string): Promise<void> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query: 'mutation End($p: ID!) { endPromotion(promotionId: $p) { status } }', variables: { p: promotionId } }),
  });
  if (!response.ok) throw new Error(`endPromotion failed: HTTP ${response.status}`);
}

async function main(): Promise<void> {
  const watcherCount = option('watchers', 10_000);
  const stock = option('stock', 2000);
  const rate = option('rate', 1000);
  const outIndex = process.argv.indexOf('--out');
  const out = resolve(ROOT, outIndex >= 0 ? (process.argv[outIndex + 1] as string) : 'bench/results/stock-watchers.md');
  benchDatabaseName(DATABASE_URL);
  const prefix = `bench:stock:${randomBytes(4).toString('hex')}:`;
  const secret = randomBytes(32).toString('hex');
  const cleanup = new Cleanup(log);
  const children: Child[] = [];
  let watchers: ChildProcess | null = null;
  try {
    execFileSync(process.execPath, ['scripts/ensure-built.js'], { cwd: ROOT, stdio: 'inherit' });
    await openBenchStores(REDIS_URL, DATABASE_URL, prefix, cleanup, log);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env = {
      NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, REDIS_URL, JWT_SECRET: secret,
      REDIS_KEY_PREFIX: prefix, LOG_LEVEL: 'warn', ROLE: 'all', MIGRATE: 'true', SHUTDOWN_TIMEOUT_MS: '5000',
      STOCK_UPDATES_PER_SECOND: String(RATE),
      // One loopback crowd: the per-address and per-user limits are not what is measured.
      RATE_LIMIT_ANON_PER_SECOND: '0', RATE_LIMIT_USER_PER_SECOND: '0', RATE_LIMIT_ISSUE_PER_SECOND: '0',
      WS_MAX_ANON_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS: '1000000',
    };
    const service = await startService(['node', 'dist/main.js'], env, url, ROOT, (child) => children.push(child));
    cleanup.add('stopping the service', async () => log(`service: ${await stopChild(service)}`));
    const tokens = await signBenchTokens(secret, Math.ceil(stock * 1.1));
    const promotionId = await createPromotion(url, tokens.admin, { name: 'stock bench', totalStock: stock, perUserLimit: 1, endsAt: new Date(Date.now() + 3600_000) });
    await new Promise((r) => setTimeout(r, 1000));
    const rssBefore = vmRss(service.pid);

    // 1. The crowd arrives: every watcher subscribed and holding its first message.
    watchers = fork(__filename, ['--watchers-process'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const child = watchers;
    cleanup.add('stopping the watchers', async () => child.kill('SIGKILL'));
    const cpuOpen0 = processSeconds(service.pid);
    const opened = await ask<{ opened: number; seconds: number }>(child, { kind: 'open', url, promotionId, count: watcherCount }, 'opened');
    const openSeconds = opened.seconds; // from the watcher process's start of work: not its own start-up
    const cpuOpen1 = processSeconds(service.pid);
    log(`${fmt(opened.opened)} watchers subscribed in ${fmt(openSeconds, 1)} s`);
    await new Promise((r) => setTimeout(r, 2000));
    const rssWatching = vmRss(service.pid);

    // 2. Idle watching: the stock does not change, so nothing is sent; the one feed still reads Redis.
    const cpuIdle0 = processSeconds(service.pid);
    await new Promise((r) => setTimeout(r, 5000));
    const cpuIdle1 = processSeconds(service.pid);

    // 3. The rush: issueCoupon calls at a constant rate until the stock is sold out (10% more calls than stock).
    child.send({ kind: 'rush' });
    const target = new URL('/graphql', url);
    const body = JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } });
    const outcomes: Record<string, number> = {};
    const requests: OpenLoopRequest[] = tokens.authorization.map((authorization) => ({
      target: 0,
      bytes: buildRequest(target, body, authorization),
      onAnswer: (status, text) => {
        const outcome = status === 200 ? (/"outcome":"([A-Z_]+)"/.exec(text)?.[1] ?? 'other') : `HTTP ${status}`;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      },
    }));
    const cpuRush0 = processSeconds(service.pid);
    const benchRush0 = processSeconds(process.pid);
    const watchersRush0 = processSeconds(child.pid as number);
    const rushStarted = performance.now();
    const load = await runOpenLoop({ urls: [target], requests, ratePerSecond: rate, maxSockets: 64, graceMs: 60_000 });
    const rushSeconds = (performance.now() - rushStarted) / 1000;
    const cpuRush1 = processSeconds(service.pid);
    const benchRush1 = processSeconds(process.pid);
    const watchersRush1 = processSeconds(child.pid as number);
    const rssRush = vmRss(service.pid);
    log(`rush: ${fmt(load.answered)} answers, ${fmt(load.failed)} failed, in ${fmt(rushSeconds, 1)} s: ${JSON.stringify(outcomes)}`);

    // 4. Every watcher should now hold SOLD_OUT and its completion; a few seconds for the last ones to arrive. A
    // rush that did not sell out (a machine too busy) ends the promotion instead: the final state is then ENDED.
    const soldOut = (outcomes.QUEUED ?? 0) >= stock;
    if (!soldOut) await endPromotion(url, tokens.admin, promotionId);
    await new Promise((r) => setTimeout(r, 3000));
    const report = await ask<WatcherReport>(child, { kind: 'report' }, 'report');

    const percent = (a: number | null, b: number | null, seconds: number) => (a === null || b === null ? null : ((b - a) / seconds) * 100);
    const first = sorted(report.firstMs);
    const ups = sorted(report.updatesPerSecond);
    const lines = [
      '# promotionStock: many watchers of one promotion on one service process',
      '',
      `Run ${new Date().toISOString()} on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}: ` +
        `\`npm run bench:stock -- --watchers ${watcherCount} --stock ${stock} --rate ${rate}\`. The service (\`dist/main.js\`, \`ROLE=all\`, ` +
        `\`STOCK_UPDATES_PER_SECOND=${RATE}\`) and the watchers' process and this bench share the machine and its Redis and PostgreSQL ` +
        `(load average ${loadavg().map((l) => l.toFixed(1)).join(' / ')} at the end: other work ran on the machine too).`,
      '',
      '| measure | value |',
      '| --- | --- |',
      `| watchers subscribed (anonymous, one socket each) | ${fmt(report.opened)} of ${fmt(watcherCount)}${report.failures.length ? ` (${report.failures.length} failures, e.g. ${report.failures[0]})` : ''} |`,
      `| time to open and subscribe them all (${IN_FLIGHT} handshakes in flight) | ${fmt(openSeconds, 1)} s; service CPU meanwhile ${fmt(percent(cpuOpen0, cpuOpen1, openSeconds))} % of a core |`,
      `| first message (the current state), from subscribe: p50 / p99 / max | ${fmt(percentileOfSorted(first, 50))} / ${fmt(percentileOfSorted(first, 99))} / ${fmt(first[first.length - 1] ?? null)} ms |`,
      `| service RSS: before the watchers / with them / after the rush | ${fmt(rssBefore / 2 ** 20, 1)} / ${fmt(rssWatching / 2 ** 20, 1)} / ${fmt(rssRush / 2 ** 20, 1)} MiB |`,
      `| RSS per watcher | ${fmt((rssWatching - rssBefore) / Math.max(1, report.opened) / 1024, 1)} KiB |`,
      `| service CPU while they watch a stock that does not change (5 s) | ${fmt(percent(cpuIdle0, cpuIdle1, 5))} % of a core |`,
      `| the rush: issueCoupon calls, offered rate, duration | ${fmt(load.answered)} answered, ${fmt(load.failed)} failed (${Object.entries(outcomes).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}), ${fmt(rate)}/s offered, ${fmt(rushSeconds, 1)} s |`,
      `| service CPU during the rush (HTTP, the reservations, the consumer, the feed and ${fmt(report.opened)} sockets) | ${fmt(percent(cpuRush0, cpuRush1, rushSeconds))} % of a core (the load generator: ${fmt(percent(benchRush0, benchRush1, rushSeconds))} %, the watchers' process: ${fmt(percent(watchersRush0, watchersRush1, rushSeconds))} %) |`,
      `| updates a second each watcher saw over the rush, min / median / max | ${fmt(ups[0] ?? null, 2)} / ${fmt(percentileOfSorted(ups, 50), 2)} / ${fmt(ups[ups.length - 1] ?? null, 2)} (the configured bound: ${RATE}) |`,
      `| most updates any watcher got within one second (first and final message not counted) | ${fmt(report.maxInOneSecond)} |`,
      `| watchers whose last message was the final state (${soldOut ? 'SOLD_OUT' : 'ENDED: the rush did not sell out, the promotion was ended'}) | ${fmt(report.finals)} of ${fmt(report.opened)} |`,
      `| watchers whose subscription completed | ${fmt(report.completed)} of ${fmt(report.opened)} |`,
      '',
    ];
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, lines.join('\n'));
    process.stdout.write(`${lines.join('\n')}\n`);
    log(`written to ${out}`);
  } finally {
    await cleanup.run();
  }
}

if (process.argv.includes('--watchers-process')) {
  runWatchers();
} else {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      log(String(error instanceof Error ? error.stack : error));
      process.exit(1);
    },
  );
}
