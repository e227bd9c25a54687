/**
 * `npm run bench:attack`: what an anonymous client sending big queries costs another user's issueCoupon.
 * The victim (BENCH_ATTACK_VICTIMS connections, signed-in users rotating) runs alone, then beside an attacker
 * (2 connections, no token) sending either the ~830 KB aliased query or a ~60 KB one of ~20,000 tokens.
 * The service runs twice: with its limits (defaults), then with the body and token limits loosened to what it
 * accepted before they existed (the depth and field limits still apply, as they did), so both sit side by side.
 * Writes bench/results/attack.md. Loopback only; every phase stops by itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { signToken } from '../src/api/auth';
import { freePort, startService, stopChild } from './children';
import { runLoad, type LoadResult, type LoadSpec } from './load';
import { ISSUE_COUPON, benchDatabaseName, createPromotion, truncateBenchTables } from './service';

const ROOT = join(__dirname, '..');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/coupons_bench';
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const VICTIMS = Number(process.env.BENCH_ATTACK_VICTIMS ?? 10);
const ATTACKERS = 2;
const USERS = 2000;

const log = (message: string) => process.stderr.write(`bench:attack: ${message}\n`);
const aliased = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: promotion(id: "x") { id name }`).join(' ')} }`;

const ATTACKS = [
  { label: '~830 KB aliased query', body: JSON.stringify({ query: aliased(22_000) }) },
  { label: '~60 KB query of ~20,000 tokens', body: JSON.stringify({ query: aliased(1_600) }) },
];

const CONFIGURATIONS: { label: string; env: Record<string, string> }[] = [
  { label: 'limits at their defaults', env: {} },
  { label: 'body and token limits loosened (as before)', env: { MAX_BODY_BYTES: String(16 * 1024 * 1024), MAX_QUERY_TOKENS: '1000000' } },
];

interface Row {
  configuration: string;
  attack: string;
  victim: LoadResult;
  attacker: LoadResult | null;
}

async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
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
    const rows: Row[] = [{ configuration: configuration.label, attack: 'none', victim: await runLoad(victim), attacker: null }];
    for (const attack of ATTACKS) {
      log(`${configuration.label}: victim beside the ${attack.label}`);
      const attacker: LoadSpec = { title: 'attacker', url: `${baseUrl}/graphql`, durationSeconds: DURATION, connections: ATTACKERS, pipelining: 1, request: () => ({ body: attack.body }) };
      const [v, a] = await Promise.all([runLoad(victim), runLoad(attacker)]);
      rows.push({ configuration: configuration.label, attack: attack.label, victim: v, attacker: a });
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
    '| service | attacker sends | victim req/s | victim p50 ms | victim p99 ms | attacker req/s | attacker p50 ms | attacker answers |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) =>
      [r.configuration, r.attack, fmt(r.victim.requestsPerSecond), r.victim.p50Ms, r.victim.p99Ms, r.attacker ? fmt(r.attacker.requestsPerSecond) : '-', r.attacker ? r.attacker.p50Ms : '-', r.attacker ? answers(r.attacker) : '-'].join(' | '),
    ).map((line) => `| ${line} |`),
    '',
    'Attacker answers: HTTP status when not 200. The load generator (autocannon, this process) shares the cores with the service, Redis and PostgreSQL.',
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
