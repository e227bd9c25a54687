/**
 * `npm run bench -- --compare`: the designs side by side in one run, on loopback, each phase bounded.
 *   bare      node:http + the service's reservation script (the ceiling)
 *   service   dist/main.js, one process (ROLE=all), default configuration
 *   sync-db   the same mutation as one PostgreSQL transaction per request (bench/baseline-server.ts)
 *   seed      DECR + RPUSH, a consumer storing 100 a second row by row (bench/baseline-server.ts)
 *   two-api   two ROLE=api processes (the generator spreads connections over both) + one ROLE=consumer
 *   sale      a promotion of 10,000, 100,000 distinct users at once, a sample holding subscriptions
 *   half-load answer→ISSUED at a constant rate of half the service's maximum, 10,000 subscribed sockets open
 *   rss       RSS of a ROLE=api process per subscribed socket (about 15,000 sockets)
 *   drain     the consumer on a 200,000-request backlog, beside raw inserts of the same rows (bench/drain.ts)
 * Every throughput is printed as a ratio to the ceiling and to sync-db. Results: bench/results/compare.{md,json,svg}.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { renderChart } from './chart';
import { LARGE_STOCK, PER_USER_LIMIT, freePort, serviceCommand, startBare, startBaseline, startService, stopChild, type Child } from './children';
import type { Cleanup } from './cleanup';
import { renderCompare, type CompareResult, type HalfLoadResult, type TargetResult } from './compare-report';
import { cpuBetween, snapshotCpu } from './cpu';
import { pickGenerator, runGenerator, wrkInstalled, type GenRequest, type GenResult } from './generator';
import type { BenchOptions } from './options';
import { runDrainBench } from './drain';
import { Progress, countProbe, metricsProbe, type Probe, type Timeline } from './progress';
import { ISSUE_COUPON, couponRows, createPromotion, openBenchStores, reservations, signBenchTokens, truncateBenchTables } from './service';
import { SocketHolder } from './sockets';
import { distribution } from './stats';
import { scrapeMetrics, stagesBetween, type StageReport } from './stages';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench';
/** Raised only where sockets are opened, and said so in the report: at 50 a second 15,000 upgrades take 5 minutes. */
const SOCKET_PHASE_ENV = { RATE_LIMIT_ANON_PER_SECOND: '1000000', WS_MAX_ANON_CONNECTIONS_PER_IP: '100000' };
const STORE_TIMEOUT_MS = 120_000;

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

function rssBytes(pid: number): number | null {
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

async function gauge(baseUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

export async function runCompare(options: BenchOptions, cleanup: Cleanup): Promise<number> {
  const notes: string[] = [];
  const on = (phase: Parameters<typeof options.phases.has>[0]) => options.phases.has(phase);
  const generator = pickGenerator(options.generator);
  const runId = randomBytes(4).toString('hex');
  const prefix = `bench:${runId}:`;
  const profileDir = options.profileDir === null ? null : resolve(options.profileDir);
  const nodeFlags = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  if (profileDir !== null) notes.push(`CPU profiles of every server process: ${profileDir}`);
  const command = serviceCommand(options.service, nodeFlags, notes);
  const timelines: Timeline[] = [];
  const result: CompareResult = {
    startedAt: new Date().toISOString(),
    machine: { node: process.version, cores: cpus().length, cpu: cpus()[0]?.model.trim() ?? 'unknown' },
    settings: {
      generator,
      threads: options.threads,
      connections: options.connections,
      durationSeconds: options.duration,
      warmupSeconds: options.warmup,
      users: options.users,
      phases: [...options.phases],
    },
    targets: [],
    seed: null,
    sale: null,
    halfLoad: null,
    rss: null,
    drain: null,
    notes,
    chart: 'compare.svg',
  };

  const redis = await openBenchStores(REDIS_URL, DATABASE_URL, prefix, cleanup, log);

  // Signed up front, once: neither the generator nor the sockets spend CPU on HMACs.
  const userCount = Math.max(options.users, on('sale') ? options.saleUsers : 0, on('half-load') || on('half-load-split') ? options.sockets : 0, on('rss') ? options.rssSockets : 0);
  log(`signing ${fmtInt(userCount)} tokens`);
  const secret = randomBytes(32).toString('hex');
  const { admin: adminToken, authorization } = await signBenchTokens(secret, userCount);

  let db: Client | null = null;
  const database = async () => {
    if (db) return db;
    const client = new Client({ connectionString: DATABASE_URL });
    await client.connect();
    cleanup.add('closing the PostgreSQL client', () => client.end());
    return (db = client);
  };

  // --- Helpers shared by the phases.
  const serviceEnv = (port: number, keyPrefix: string, extra: Record<string, string> = {}): Record<string, string> => ({
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL,
    REDIS_URL,
    REDIS_KEY_PREFIX: keyPrefix,
    JWT_SECRET: secret,
    LOG_LEVEL: 'info', // the default: the targets hold at the default configuration
    ROLE: 'all',
    MIGRATE: 'true',
    SHUTDOWN_TIMEOUT_MS: '3000',
    ...extra,
  });
  const started: Child[] = [];
  const launch = async (name: string, env: Record<string, string>): Promise<{ child: Child; baseUrl: string }> => {
    // A fresh start empties the tables of the phases before (checked already): a service rebuilds every promotion it finds.
    if (env.MIGRATE !== 'false') await truncateBenchTables(DATABASE_URL);
    const baseUrl = `http://127.0.0.1:${env.PORT}`;
    const child = await startService(command, env, baseUrl, join(__dirname, '..'), (c) => cleanup.add(`stopping ${name}`, () => stopChild(c)), name);
    started.push(child);
    return { child, baseUrl };
  };
  /**
   * Subscribed sockets spread over the API processes, then mutations for their users at a constant rate of
   * halfLoadShare × max; answer→ISSUED timed on the sockets, the path by stage read off every process's /metrics.
   */
  const halfLoad = async (
    phase: string,
    layout: { apiBaseUrls: string[]; otherBaseUrls?: string[]; pids: Map<string, number>; keyPrefix: string; max: number },
  ): Promise<HalfLoadResult> => {
    const { apiBaseUrls, keyPrefix, max } = layout;
    const allBaseUrls = [...apiBaseUrls, ...(layout.otherBaseUrls ?? [])];
    const endsAt = new Date(Date.now() + 3600_000);
    const promotionId = await createPromotion(apiBaseUrls[0] as string, adminToken, { name: `bench ${phase}`, totalStock: LARGE_STOCK, perUserLimit: PER_USER_LIMIT, endsAt });
    const holder = new SocketHolder();
    cleanup.add(`closing the ${phase} sockets`, () => holder.close());
    log(`${phase}: opening ${fmtInt(options.sockets)} subscribed sockets`);
    const opened = await holder.open({
      wsUrls: apiBaseUrls.map((u) => `${u.replace(/^http/, 'ws')}/graphql`),
      authorizations: authorization.slice(0, options.sockets),
      promotionId,
      concurrency: 100,
      timeoutMs: 120_000,
    });
    await sleep(1000); // subscribe messages still being processed
    if (opened.open === 0) throw new Error(`${phase}: none of ${fmtInt(options.sockets)} sockets opened`);
    const rate = Math.max(1, max * options.halfLoadShare);
    const count = Math.round(rate * options.duration);
    log(`${phase}: ${fmtInt(rate)} req/s (${options.halfLoadShare} of ${fmtInt(max)}) for ${options.duration} s, ${fmtInt(opened.open)} sockets open`);
    // The progress probe scrapes /metrics once a second; each scrape also reads the event-loop delay of that
    // second (prom-client resets its histogram at every scrape), so the worst second of the phase is kept.
    const lag = { p99: 0, max: 0 };
    const probe = async () => {
      let sum = 0;
      for (const base of allBaseUrls) {
        const text = await scrapeMetrics(base);
        const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
        lag.p99 = Math.max(lag.p99, read('nodejs_eventloop_lag_p99_seconds'));
        lag.max = Math.max(lag.max, read('nodejs_eventloop_lag_max_seconds'));
        for (const m of text.matchAll(/^coupon_issue_outcomes_total\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
      }
      return sum;
    };
    const metricsBefore = await scrapeMetrics(...allBaseUrls);
    const progress = new Progress(phase, probe, options.duration).start();
    const pids = new Map([...layout.pids, ['sockets', holder.pid]]);
    const before = await snapshotCpu(pids, redis);
    const fired = await holder.fire({
      httpUrls: apiBaseUrls.map((u) => `${u}/graphql`),
      users: Array.from({ length: count }, (_, k) => k % opened.open),
      body: JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } }),
      ratePerSecond: rate,
      maxSockets: 512,
      confirmTimeoutMs: 30_000,
    });
    const cpu = cpuBetween(before, await snapshotCpu(pids, redis));
    timelines.push(progress.stop());
    const stages: StageReport = { ...stagesBetween(metricsBefore, await scrapeMetrics(...allBaseUrls)), eventLoopLagP99: lag.p99, eventLoopLagMax: lag.max };
    const serverCpu = [...layout.pids.keys()].map((name) => cpu.percent.get(name) ?? 0);
    await holder.close();
    await waitStored(keyPrefix, promotionId, LARGE_STOCK, PER_USER_LIMIT);
    return {
      ratePerSecond: rate,
      maxPerSecond: max,
      durationSeconds: options.duration,
      socketsOpen: opened.open,
      socketsFailed: opened.failed,
      sent: fired.due,
      answered: fired.answered,
      failed: fired.failed,
      outcomes: fired.outcomes,
      http: distribution(fired.httpLatenciesMs),
      confirmations: distribution(fired.confirmationsMs),
      unconfirmed: fired.unconfirmed,
      closedMeanwhile: fired.closedMeanwhile,
      serverCpuPercent: serverCpu.reduce((a, b) => a + b, 0),
      serverCpuByProcess: Object.fromEntries([...layout.pids.keys()].map((name, i) => [name, serverCpu[i] as number])),
      clientCpuPercent: cpu.percent.get('sockets') ?? null,
      stages,
    };
  };
  const issueRequests = (promotionId: string, users: number, from = 0): GenRequest[] => {
    const body = JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } });
    return Array.from({ length: users }, (_, i) => ({ authorization: authorization[from + i] as string, body }));
  };

  /** Warm-up (unmeasured), then the measured run, with the servers' CPU and a progress line. */
  const measure = async (label: string, urls: string[], requests: GenRequest[], pids: Map<string, number>, probe: Probe | null): Promise<TargetResult> => {
    const spec = { title: label, urls, requests, durationSeconds: options.duration, connections: options.connections, threads: options.threads };
    if (options.warmup > 0) {
      log(`${label}: warm-up ${options.warmup} s`);
      await runGenerator(generator, { ...spec, durationSeconds: Math.max(1, Math.round(options.warmup)) });
    }
    log(`${label}: ${options.duration} s, ${options.connections} connections, ${generator}`);
    const progress = new Progress(label, probe, options.duration).start();
    const before = await snapshotCpu(pids, redis);
    const load = await runGenerator(generator, spec);
    const cpu = cpuBetween(before, await snapshotCpu(pids, redis));
    timelines.push(progress.stop());
    return targetResult(label, load, cpu);
  };

  /** Waits until every QUEUED answer of a promotion is a coupon row (bounded), and checks nobody is over the limit. */
  const waitStored = async (keyPrefix: string, promotionId: string, stock: number, perUserLimit: number) => {
    const client = await database();
    const deadline = Date.now() + STORE_TIMEOUT_MS;
    // Requests still in flight when the generator stopped may reserve after it returned: both counts are
    // read again until they agree twice in a row.
    let given = -1;
    let rows = -2;
    for (let agreed = 0; agreed < 2 && Date.now() < deadline; ) {
      given = await reservations(redis, keyPrefix, promotionId);
      rows = (await couponRows(client, promotionId)).rows;
      agreed = rows === given ? agreed + 1 : 0;
      await sleep(agreed ? 300 : 100);
    }
    const over = await client.query<{ n: string }>(
      'SELECT count(*) AS n FROM (SELECT user_id FROM coupons WHERE promotion_id = $1 GROUP BY user_id HAVING count(*) > $2) o',
      [promotionId, perUserLimit],
    );
    const usersOver = Number(over.rows[0]?.n ?? 0);
    const holds = rows === given && rows <= stock && usersOver === 0;
    if (!holds) notes.push(`**Invariant failed for promotion ${promotionId}: ${given} QUEUED answers given, ${rows} coupon rows, stock ${stock}, ${usersOver} users over the limit.**`);
    return { given, rows, usersOver, holds };
  };

  // --- bare: the ceiling.
  if (on('bare')) {
    const bare = await startBare(
      REDIS_URL,
      `${prefix}bare:`,
      nodeFlags,
      (child) => cleanup.add('stopping the bare server', () => stopChild(child, 5000)),
    );
    const requests = Array.from({ length: options.users }, (_, i) => ({ body: JSON.stringify({ userId: `bench-user-${i}` }) }));
    const url = `http://127.0.0.1:${bare.port}`;
    result.targets.push({
      ...(await measure('bare', [`${url}/`], requests, new Map([['server', bare.child.pid]]), countProbe([`${url}/count`]))),
      role: 'ceiling',
    });
    await stopChild(bare.child, 5000);
  }

  // --- service: one process, default configuration.
  let serviceMax: number | null = null;
  let saleCrowdPercentiles: [number, number][] = [];
  if (on('service')) {
    const keyPrefix = `${prefix}svc:`;
    const { child, baseUrl } = await launch('service', serviceEnv(await freePort(), keyPrefix));
    const endsAt = new Date(Date.now() + 3600_000);
    const promotionId = await createPromotion(baseUrl, adminToken, { name: 'bench service', totalStock: LARGE_STOCK, perUserLimit: PER_USER_LIMIT, endsAt });
    const target = await measure('service', [`${baseUrl}/graphql`], issueRequests(promotionId, options.users), new Map([['server', child.pid]]), metricsProbe([baseUrl]));
    serviceMax = target.requestsPerSecond;
    // The maximum is the answer rate; the consumer in the same process may lag behind it. The backlog left
    // when the load stopped says whether the half-load phase's "half the maximum" is half of a sustainable rate.
    const backlog = (await reservations(redis, keyPrefix, promotionId)) - (await couponRows(await database(), promotionId)).rows;
    notes.push(
      `Service phase: ${fmtInt(backlog)} QUEUED requests not yet stored when the load stopped ` +
        `(${(backlog / Math.max(1, serviceMax)).toFixed(1)} s of the maximum): ${backlog > serviceMax ? 'the consumer lagged, the maximum is above what is stored as fast' : 'the consumer kept up'}.`,
    );
    log('service: waiting for the consumer to store every queued request');
    target.invariant = await waitStored(keyPrefix, promotionId, LARGE_STOCK, PER_USER_LIMIT);
    result.targets.push({ ...target, role: 'service' });
    await stopChild(child);
  }

  // --- sync-db and seed: the same mutation, other designs.
  const baselineEnv = (stock: number, keyPrefix: string) => ({
    BASELINE_DATABASE_URL: DATABASE_URL,
    BASELINE_REDIS_URL: REDIS_URL,
    BASELINE_KEY_PREFIX: keyPrefix,
    BASELINE_JWT_SECRET: secret,
    BASELINE_PROMOTION_ID: `bench-${runId}`,
    BASELINE_STOCK: String(stock),
  });
  if (on('sync-db') || on('seed')) {
    cleanup.add('dropping the baselines\' tables', async () => {
      const client = new Client({ connectionString: DATABASE_URL });
      await client.connect();
      await client.query('DROP SCHEMA IF EXISTS bench_baseline CASCADE').finally(() => client.end());
    });
  }
  for (const mode of ['sync-db', 'seed'] as const) {
    if (!on(mode)) continue;
    const server = await startBaseline(mode, baselineEnv(LARGE_STOCK, `${prefix}${mode}:`), nodeFlags, (child) =>
      cleanup.add(`stopping ${mode}`, () => stopChild(child, 5000)),
    );
    const url = `http://127.0.0.1:${server.port}`;
    const target = await measure(mode, [`${url}/graphql`], issueRequests(`bench-${runId}`, options.users), new Map([['server', server.child.pid]]), countProbe([`${url}/count`]));
    result.targets.push({ ...target, role: mode });
    if (mode === 'seed') {
      // Its consumer stores 100 a second: the backlog is measured for a few seconds, then extrapolated.
      const count = async () => (await (await fetch(`${url}/count`)).json()) as { stored: number; backlog: number };
      const first = await count();
      const t0 = performance.now();
      await sleep(3000);
      const second = await count();
      const rate = ((second.stored - first.stored) * 1000) / (performance.now() - t0);
      result.seed = {
        backlog: first.backlog,
        storedPerSecond: rate,
        secondsToStore: rate > 0 ? first.backlog / rate : null,
        measuredSeconds: 3,
      };
    }
    await stopChild(server.child, 5000);
  }

  let twoApiMax: number | null = null;
  // --- two ROLE=api processes + one ROLE=consumer, against the one process above.
  if (on('two-api')) {
    const keyPrefix = `${prefix}two:`;
    const api1 = await launch('api-1', serviceEnv(await freePort(), keyPrefix, { ROLE: 'api' }));
    const api2 = await launch('api-2', serviceEnv(await freePort(), keyPrefix, { ROLE: 'api', MIGRATE: 'false' }));
    const consumer = await launch('consumer', serviceEnv(await freePort(), keyPrefix, { ROLE: 'consumer', MIGRATE: 'false' }));
    const endsAt = new Date(Date.now() + 3600_000);
    const promotionId = await createPromotion(api1.baseUrl, adminToken, { name: 'bench two api', totalStock: LARGE_STOCK, perUserLimit: PER_USER_LIMIT, endsAt });
    const pids = new Map([
      ['server', api1.child.pid],
      ['server 2', api2.child.pid],
      ['consumer', consumer.child.pid],
    ]);
    const target = await measure(
      'two-api',
      [`${api1.baseUrl}/graphql`, `${api2.baseUrl}/graphql`],
      issueRequests(promotionId, options.users),
      pids,
      metricsProbe([api1.baseUrl, api2.baseUrl]),
    );
    twoApiMax = target.requestsPerSecond;
    log('two-api: waiting for the consumer to store every queued request');
    target.invariant = await waitStored(keyPrefix, promotionId, LARGE_STOCK, PER_USER_LIMIT);
    result.targets.push({ ...target, role: 'two-api' });
    for (const c of [api1, api2, consumer]) await stopChild(c.child);
  }

  // --- sale, half load and RSS: sockets, so the anonymous upgrade rate is raised (said in the report).
  if (on('sale') || on('half-load')) {
    notes.push(
      `Sale and half-load phases: the service ran with RATE_LIMIT_ANON_PER_SECOND=${SOCKET_PHASE_ENV.RATE_LIMIT_ANON_PER_SECOND} and ` +
        `WS_MAX_ANON_CONNECTIONS_PER_IP=${SOCKET_PHASE_ENV.WS_MAX_ANON_CONNECTIONS_PER_IP} so that the bench can open its sockets quickly ` +
        '(every upgrade comes from 127.0.0.1 before its connection_init); everything else at the default.',
    );
    const keyPrefix = `${prefix}sale:`;
    const { child, baseUrl } = await launch('service (sockets)', serviceEnv(await freePort(), keyPrefix, SOCKET_PHASE_ENV));
    const wsUrl = `${baseUrl.replace('http', 'ws')}/graphql`;
    const endsAt = new Date(Date.now() + 3600_000);
    const estimatedMax = serviceMax ?? 3000;
    if (serviceMax === null) notes.push('The service phase did not run: the sale and half-load rates assume 3,000 req/s.');

    if (on('sale')) {
      const stock = options.saleStock;
      const promotionId = await createPromotion(baseUrl, adminToken, { name: 'bench sale', totalStock: stock, perUserLimit: 1, endsAt });
      const holder = new SocketHolder();
      cleanup.add('closing the sale sockets', () => holder.close());
      // The sample is spread through the crowd (every k-th user), so its answers sample the whole sale.
      const step = options.saleSample > 0 ? Math.floor(options.saleUsers / options.saleSample) : Infinity;
      const sampleUsers = Array.from({ length: options.saleSample }, (_, i) => i * step);
      const inSample = new Set(sampleUsers);
      log(`sale: opening ${fmtInt(sampleUsers.length)} subscribed sockets`);
      const opened = await holder.open({
        wsUrls: [wsUrl],
        authorizations: sampleUsers.map((u) => authorization[u] as string),
        promotionId,
        concurrency: 100,
        timeoutMs: 60_000,
      });
      const crowd = issueRequests(promotionId, options.saleUsers).filter((_, i) => !inSample.has(i));
      // The crowd arrives as fast as the service takes it; the sample at the rate that spreads it over the same time.
      const windowSeconds = Math.max(1, options.saleUsers / estimatedMax);
      log(`sale: ${fmtInt(options.saleUsers)} users, stock ${fmtInt(stock)}, ${options.saleConnections} connections`);
      const client = await database();
      const t0 = performance.now();
      let soldOutAtMs: number | null = null;
      let storedAtMs: number | null = null;
      let watching = true;
      const watch = (async () => {
        while (watching && storedAtMs === null && performance.now() - t0 < STORE_TIMEOUT_MS) {
          if (soldOutAtMs === null && (await reservations(redis, keyPrefix, promotionId)) >= stock) soldOutAtMs = performance.now() - t0;
          if (soldOutAtMs !== null && (await couponRows(client, promotionId)).rows >= stock) storedAtMs = performance.now() - t0;
          await sleep(20);
        }
      })();
      const progress = new Progress('sale', metricsProbe([baseUrl]), null).start();
      const [crowdLoad, sample] = await Promise.all([
        runGenerator(generator, {
          title: 'sale crowd',
          urls: [`${baseUrl}/graphql`],
          requests: crowd,
          durationSeconds: 120,
          connections: options.saleConnections,
          threads: options.threads,
          once: true,
        }),
        holder.fire({
          httpUrls: [`${baseUrl}/graphql`],
          users: sampleUsers.map((_, i) => i),
          body: JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } }),
          ratePerSecond: Math.max(1, sampleUsers.length / windowSeconds),
          maxSockets: 200,
          confirmTimeoutMs: 30_000,
        }),
      ]);
      timelines.push(progress.stop());
      saleCrowdPercentiles = crowdLoad.percentiles;
      const crowdEndMs = performance.now() - t0;
      // Every coupon stored, or the bound reached: the watch loop ends by itself.
      while (storedAtMs === null && performance.now() - t0 < STORE_TIMEOUT_MS && soldOutAtMs !== null) await sleep(50);
      watching = false;
      await watch;
      const check = await waitStored(keyPrefix, promotionId, stock, 1);
      result.sale = {
        users: options.saleUsers,
        stock,
        sample: sampleUsers.length,
        socketsOpen: opened.open,
        socketsFailed: opened.failed,
        crowd: summarize(crowdLoad),
        crowdSeconds: crowdEndMs / 1000,
        sampleOutcomes: sample.outcomes,
        soldOutSeconds: soldOutAtMs === null ? null : soldOutAtMs / 1000,
        allStoredSeconds: storedAtMs === null ? null : storedAtMs / 1000,
        confirmations: distribution(sample.confirmationsMs),
        unconfirmed: sample.unconfirmed,
        closedMeanwhile: sample.closedMeanwhile,
        invariant: { ...check, exactlyStock: check.rows === stock },
      };
      if (check.rows !== stock) notes.push(`**Sale: ${fmtInt(check.rows)} coupon rows, not exactly the stock of ${fmtInt(stock)}.**`);
      await holder.close();
    }

    if (on('half-load') && options.sockets > 0) {
      result.halfLoad = await halfLoad('half-load', { apiBaseUrls: [baseUrl], pids: new Map([['server', child.pid]]), keyPrefix, max: estimatedMax });
    }
    await stopChild(child);
  }

  // --- half load in the split layout: the sockets spread over two ROLE=api processes, one ROLE=consumer; the
  // rate is half of that layout's own maximum (two-api phase), else of the one process's.
  if (on('half-load-split') && options.sockets > 0) {
    const keyPrefix = `${prefix}split:`;
    const api1 = await launch('api-1 (sockets)', serviceEnv(await freePort(), keyPrefix, { ...SOCKET_PHASE_ENV, ROLE: 'api' }));
    const api2 = await launch('api-2 (sockets)', serviceEnv(await freePort(), keyPrefix, { ...SOCKET_PHASE_ENV, ROLE: 'api', MIGRATE: 'false' }));
    const consumer = await launch('consumer', serviceEnv(await freePort(), keyPrefix, { ROLE: 'consumer', MIGRATE: 'false' }));
    const max = twoApiMax ?? serviceMax ?? 3000;
    notes.push(`Half load, split layout: the two ROLE=api processes ran with the sockets' raised limits (${Object.entries(SOCKET_PHASE_ENV).map(([k, v]) => `${k}=${v}`).join(', ')}).`);
    if (twoApiMax === null) notes.push(`Half load, split layout: the two-api phase did not run, so its rate is a share of ${serviceMax === null ? 'an assumed 3,000 req/s' : 'the one process\'s maximum'}.`);
    result.halfLoadSplit = await halfLoad('half-load-split', {
      apiBaseUrls: [api1.baseUrl, api2.baseUrl],
      otherBaseUrls: [consumer.baseUrl],
      pids: new Map([
        ['server', api1.child.pid],
        ['server 2', api2.child.pid],
        ['consumer', consumer.child.pid],
      ]),
      keyPrefix,
      max,
    });
    for (const c of [api1, api2, consumer]) await stopChild(c.child);
  }

  if (on('rss') && options.rssSockets > 0) {
    const keyPrefix = `${prefix}rss:`;
    const api = await launch('api (rss)', serviceEnv(await freePort(), keyPrefix, { ...SOCKET_PHASE_ENV, ROLE: 'api' }));
    const endsAt = new Date(Date.now() + 3600_000);
    const promotionId = await createPromotion(api.baseUrl, adminToken, { name: 'bench rss', totalStock: LARGE_STOCK, perUserLimit: PER_USER_LIMIT, endsAt });
    await sleep(2000); // past start-up allocations
    const before = rssBytes(api.child.pid);
    const holder = new SocketHolder();
    cleanup.add('closing the RSS sockets', () => holder.close());
    log(`rss: opening ${fmtInt(options.rssSockets)} subscribed sockets`);
    const opened = await holder.open({
      wsUrls: [`${api.baseUrl.replace('http', 'ws')}/graphql`],
      authorizations: authorization.slice(0, options.rssSockets),
      promotionId,
      concurrency: 100,
      timeoutMs: 120_000,
    });
    // Counted once the service holds every subscription (its ws_subscriptions gauge), bounded.
    const until = Date.now() + 20_000;
    let subscriptions = await gauge(api.baseUrl, 'ws_subscriptions').catch(() => NaN);
    // No such gauge (older service): a fixed pause instead.
    while (Number.isFinite(subscriptions) && subscriptions < opened.open && Date.now() < until) {
      await sleep(250);
      subscriptions = await gauge(api.baseUrl, 'ws_subscriptions').catch(() => NaN);
    }
    await sleep(2000);
    const after = rssBytes(api.child.pid);
    result.rss = {
      sockets: opened.open,
      failed: opened.failed,
      subscriptions: Number.isFinite(subscriptions) ? subscriptions : null,
      rssBeforeBytes: before,
      rssAfterBytes: after,
      bytesPerSocket: before !== null && after !== null && opened.open > 0 ? (after - before) / opened.open : null,
      openSeconds: opened.seconds,
      compressed: opened.compressed,
    };
    await holder.close();
    await stopChild(api.child);
    notes.push(
      `RSS phase: one ROLE=api process with RATE_LIMIT_ANON_PER_SECOND and WS_MAX_ANON_CONNECTIONS_PER_IP raised as above; ` +
        'sockets opened from a child process of the bench, so their client side is not counted.',
    );
  }

  if (on('drain')) {
    // One consumer process on a 200,000-request backlog, beside raw inserts of the same rows (bench/drain.ts).
    result.drain = await runDrainBench({ redisUrl: REDIS_URL, log: (m) => log(`drain: ${m}`) });
  }

  // --- Ratios, report, JSON, chart.
  const ceiling = result.targets.find((t) => t.role === 'ceiling');
  const syncDb = result.targets.find((t) => t.role === 'sync-db');
  for (const t of result.targets) {
    t.vsCeiling = ceiling ? t.requestsPerSecond / ceiling.requestsPerSecond : null;
    t.vsSyncDb = syncDb ? t.requestsPerSecond / syncDb.requestsPerSecond : null;
    if (t.generator.saturated) notes.push(`**${t.label}: the load generator used ${fmtInt(t.generator.cpuPercent)} % of its ${t.generator.cpuCapacity} core(s): this figure may be the generator's limit.**`);
    const others = t.cpu.othersPercent;
    if (others !== null && others >= 25) notes.push(`Other processes took ${fmtInt(others)} % of a core during "${t.label}": its figures understate it; run again on an idle machine.`);
  }
  notes.push(
    `Load generator: ${generator === 'wrk' ? `wrk (${options.threads} thread(s), shared by the target processes, at least one each; bench/wrk/rotate.lua replaying pre-signed requests)` : `autocannon in a child process (${wrkInstalled() ? '--generator autocannon' : 'wrk not installed'})`}; ` +
      'the half-load and sale-sample mutations come from a Node child process at a constant arrival rate (bench/open-loop.ts). All on the same machine as the servers.',
    'sync-db and seed run on the same stack as the service (node:http + Apollo Server executeHTTPGraphQLRequest, graphql-js, the service\'s Authenticator), with a pg Pool of 10.',
  );

  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const svg = renderChart({
    title: `Coupon issuance, side by side (${result.startedAt.slice(0, 16)}Z)`,
    bars: result.targets.map((t) => ({
      label: t.label,
      value: t.requestsPerSecond,
      note: [t.vsCeiling === null ? '' : `${t.vsCeiling.toFixed(2)}× ceiling`, t.vsSyncDb === null ? '' : `${t.vsSyncDb.toFixed(1)}× sync-db`].filter(Boolean).join(', '),
    })),
    timelines,
    latencies: [
      ...result.targets.map((t) => ({ label: `${t.label} (HTTP)`, percentiles: t.percentiles })),
      ...(result.sale ? [{ label: 'sale crowd (HTTP)', percentiles: saleCrowdPercentiles }] : []),
      ...(result.halfLoad?.http ? [{ label: 'half load (HTTP, from due time)', percentiles: result.halfLoad.http.percentiles }] : []),
      ...(result.halfLoad?.confirmations ? [{ label: 'answer→ISSUED, half load', percentiles: result.halfLoad.confirmations.percentiles }] : []),
      ...(result.sale?.confirmations ? [{ label: 'answer→ISSUED, sale', percentiles: result.sale.confirmations.percentiles }] : []),
    ],
  });
  writeFileSync(join(dir, 'compare.svg'), svg);
  const markdown = renderCompare(result);
  writeFileSync(join(dir, 'compare.md'), markdown);
  writeFileSync(join(dir, 'compare.json'), `${JSON.stringify({ ...result, timelines }, null, 2)}\n`);
  process.stdout.write(`\n${markdown}`);
  log('written to bench/results/compare.md, compare.json and compare.svg');
  const failed = result.targets.some((t) => t.invariant && !t.invariant.holds) || (result.sale !== null && !result.sale.invariant.holds);
  for (const c of started) await stopChild(c);
  return failed ? 1 : 0;
}

function summarize(load: GenResult) {
  return {
    requests: load.requests,
    unanswered: load.unanswered,
    requestsPerSecond: load.requestsPerSecond,
    p50Ms: load.p50Ms,
    p99Ms: load.p99Ms,
    outcomes: Object.fromEntries(load.outcomes),
    errors: load.errors + load.timeouts,
    generatorCpuPercent: load.cpuPercent,
    saturated: load.saturated,
  };
}

function targetResult(label: string, load: GenResult, cpu: ReturnType<typeof cpuBetween>): TargetResult {
  return {
    label,
    role: 'service',
    requestsPerSecond: load.requestsPerSecond,
    p50Ms: load.p50Ms,
    p99Ms: load.p99Ms,
    meanMs: load.meanMs,
    percentiles: load.percentiles,
    requests: load.requests,
    non2xx: load.non2xx,
    errors: load.errors + load.timeouts,
    outcomes: Object.fromEntries(load.outcomes),
    generator: { kind: load.generator, cpuPercent: load.cpuPercent, cpuCapacity: load.cpuCapacity, saturated: load.saturated },
    cpu: { percent: Object.fromEntries(cpu.percent), machinePercent: cpu.machinePercent, othersPercent: cpu.othersPercent },
    vsCeiling: null,
    vsSyncDb: null,
    invariant: null,
  };
}
