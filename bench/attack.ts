/**
 * `npm run bench:attack`: what an anonymous client sending big queries costs another user's issueCoupon.
 * The victim (BENCH_ATTACK_VICTIMS connections, signed-in users rotating) runs alone, then beside an attacker
 * (2 connections, no token, its own process) sending either ~830 KB aliased queries or ~60 KB ones of ~20,000
 * tokens, each one different so that no parsed-document cache helps.
 * The service runs twice: with its limits (defaults), then with the body and token limits loosened to what it
 * accepted before they existed (the depth and field limits still apply, as they did), so both sit side by side.
 * Writes bench/results/attack.md. Loopback only; every phase stops by itself.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { signToken } from '../src/api/auth';
import { ATTACK_KINDS, attackBody } from './attacker';
import { freePort, startService, stopChild } from './children';
import { runLoad, type LoadResult, type LoadSpec } from './load';
import { ISSUE_COUPON, benchDatabaseName, createPromotion, deleteKeysWithPrefix, truncateBenchTables } from './service';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench';
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const VICTIMS = Number(process.env.BENCH_ATTACK_VICTIMS ?? 10);
const ATTACKERS = 2;
const USERS = 2000;

const log = (message: string) => process.stderr.write(`bench:attack: ${message}\n`);

const ATTACKS: { label: string; kind: keyof typeof ATTACK_KINDS }[] = [
  { label: '~830 KB aliased queries', kind: 'huge' },
  { label: '~60 KB queries of ~20,000 tokens', kind: 'tokens' },
];

/** The attacker's load, from its own process (bench/attacker.ts). */
function attackOf(url: string, kind: keyof typeof ATTACK_KINDS): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', '@swc-node/register', 'bench/attacker.ts', url, kind, String(DURATION + 3), String(ATTACKERS)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`attacker exited with ${code}`));
      const parsed = JSON.parse(out) as LoadResult & { outcomes: Record<string, number> };
      resolve({ ...parsed, outcomes: new Map(Object.entries(parsed.outcomes)) });
    });
  });
}

const CONFIGURATIONS: { label: string; env: Record<string, string> }[] = [
  { label: 'limits at their defaults', env: {} },
  { label: 'body and token limits loosened (as before)', env: { MAX_BODY_BYTES: String(16 * 1024 * 1024), MAX_QUERY_TOKENS: '1000000' } },
];

interface Row {
  configuration: string;
  attack: string;
  victim: LoadResult;
  attacker: LoadResult | null;
  /** One attack request alone, sent and answered on an idle service: median and worst of 20, ms. */
  alone: { p50: number; max: number; status: number } | null;
}

/** The time to answer one attack request, alone: what a single request costs the service. */
async function answerTime(url: string, kind: keyof typeof ATTACK_KINDS): Promise<Row['alone']> {
  const times: number[] = [];
  let status = 0;
  for (let n = 0; n < 20; n++) {
    const started = performance.now();
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: attackBody(kind, n) });
    await response.text();
    times.push(performance.now() - started);
    status = response.status;
  }
  times.sort((a, b) => a - b);
  return { p50: times[10] as number, max: times[19] as number, status };
}

async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    await deleteKeysWithPrefix(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

async function measureConfiguration(configuration: (typeof CONFIGURATIONS)[number], secret: string, authorization: string[]): Promise<Row[]> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const prefix = `bench:${randomBytes(4).toString('hex')}:attack:`;
  const env = { NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX: prefix, JWT_SECRET: secret, LOG_LEVEL: 'warn', ROLE: 'all', ...configuration.env };
  log(`${configuration.label}: starting the service on port ${port}`);
  const service = await startService(['node', '-r', 'reflect-metadata', '-r', '@swc-node/register', 'src/main.ts'], env, baseUrl, ROOT, () => undefined);
  try {
    const admin = await signToken(secret, 'bench-admin', { admin: true, ttlSeconds: 3600 });
    const promotionId = await createPromotion(baseUrl, admin, { name: 'bench attack', totalStock: 10_000_000, perUserLimit: 100, endsAt: new Date(Date.now() + 3600_000) });
    const victimBody = JSON.stringify({ query: ISSUE_COUPON, variables: { p: promotionId } });
    const victim: LoadSpec = {
      title: 'victim',
      url: `${baseUrl}/graphql`,
      durationSeconds: DURATION,
      connections: VICTIMS,
      pipelining: 1,
      request: (n) => ({ headers: { authorization: authorization[n % USERS] as string }, body: victimBody }),
    };
    await runLoad({ ...victim, durationSeconds: 2 }); // warm-up: JIT, token cache, connections
    const rows: Row[] = [{ configuration: configuration.label, attack: 'none', victim: await runLoad(victim), attacker: null, alone: null }];
    for (const { label, kind } of ATTACKS) {
      log(`${configuration.label}: victim beside ${label}`);
      const alone = await answerTime(`${baseUrl}/graphql`, kind);
      const attacker = attackOf(`${baseUrl}/graphql`, kind);
      await new Promise((r) => setTimeout(r, 1500)); // the attacker's process starts (swc) before the victim measures
      const v = await runLoad(victim);
      rows.push({ configuration: configuration.label, attack: label, victim: v, attacker: await attacker, alone });
    }
    return rows;
  } finally {
    await stopChild(service);
    await deleteKeys(prefix);
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const answers = (r: LoadResult) => [...r.outcomes].map(([k, v]) => `${k} ${fmt(v)}`).join(', ');

function render(rows: Row[]): string {
  const lines = [
    `## Victim's issueCoupon beside an anonymous attacker, ${new Date().toISOString().slice(0, 16)}Z`,
    '',
    `node ${process.version} · ${cpus().length} cores · victim ${VICTIMS} connections (${fmt(USERS)} users) · attacker ${ATTACKERS} connections, no token · ${DURATION} s per phase · service from the sources (swc), ROLE=all`,
    '',
    '| service | attacker sends | victim req/s | victim p50 ms | victim p99 ms | attacker req/s | attacker answers | one attack request alone: p50 / max ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) =>
      [r.configuration, r.attack, fmt(r.victim.requestsPerSecond), r.victim.p50Ms, r.victim.p99Ms, r.attacker ? fmt(r.attacker.requestsPerSecond) : '-', r.attacker ? answers(r.attacker) : '-', r.alone ? `${r.alone.p50.toFixed(1)} / ${r.alone.max.toFixed(1)} (HTTP ${r.alone.status})` : '-'].join(' | '),
    ).map((line) => `| ${line} |`),
    '',
    'Attacker answers: HTTP status when not 200. Victim and attacker load generators (autocannon, one process each) share the cores with the service, Redis and PostgreSQL. The attacker runs a little longer than the victim (it starts first), so the victim is measured under attack throughout.',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<number> {
  benchDatabaseName(DATABASE_URL); // its tables are emptied: refuse any database not named for the benchmark
  const secret = randomBytes(32).toString('hex');
  const authorization = await Promise.all(Array.from({ length: USERS }, async (_, i) => `Bearer ${await signToken(secret, `bench-user-${i}`, { ttlSeconds: 3600 })}`));
  await truncateBenchTables(DATABASE_URL);
  try {
    const rows: Row[] = [];
    for (const configuration of CONFIGURATIONS) rows.push(...(await measureConfiguration(configuration, secret, authorization)));
    const markdown = render(rows);
    process.stdout.write(`\n${markdown}`);
    mkdirSync(join(__dirname, 'results'), { recursive: true });
    writeFileSync(join(__dirname, 'results', 'attack.md'), markdown);
    return 0;
  } finally {
    await truncateBenchTables(DATABASE_URL);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
