import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';
import { ROOT, serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process';

/**
 * The README's quick tour, run as a reader pastes it: every `sh` block of the section, in order, in one bash
 * process started from the repository's root, against a started service (its own database and key prefix).
 *
 * The README addresses the service as http://localhost:4000, a reader's default; the test rewrites that text to
 * the test service's URL (a free port) before running the blocks, and nothing else. Blocks marked
 * `<!-- quick-tour: docker only ... -->` need docker compose and are skipped. After each block the output it
 * printed is compared with the README's output block right below it (a `json` block or a plain one): same keys,
 * same enum values and numbers, strings of the same length (ids, codes and times differ per run). A block without
 * an output block below it must print nothing.
 */

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const README_URL = 'http://localhost:4000';
const DOCKER_MARKER = '<!-- quick-tour: docker only';
const BLOCK_END = '@@quick-tour block end@@';
const RUN_TIMEOUT_MS = 120_000;

interface Block {
  info: string;
  body: string;
  skipped: boolean;
}

/** The fenced blocks of the "## Quick tour" section, in order. */
function quickTourBlocks(): Block[] {
  const start = README.indexOf('\n## Quick tour\n');
  if (start < 0) throw new Error('README.md has no "## Quick tour" section');
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  const blocks: Block[] = [];
  for (const match of section.matchAll(/(^.*\n)?```(\w*)\n([\s\S]*?)^```$/gm)) {
    blocks.push({ info: match[2] as string, body: match[3] as string, skipped: (match[1] ?? '').startsWith(DOCKER_MARKER) });
  }
  return blocks;
}

interface Step {
  script: string;
  /** The README's output block below the script, or null when it shows none. */
  expected: Block | null;
}

function steps(blocks: Block[]): Step[] {
  const found: Step[] = [];
  blocks.forEach((block, i) => {
    if (block.info !== 'sh' || block.skipped) return;
    const next = blocks[i + 1];
    found.push({ script: block.body, expected: next && (next.info === 'json' || next.info === '') ? next : null });
  });
  return found;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** What an answer looks like, without what changes from run to run. */
function shape(value: unknown): unknown {
  if (typeof value === 'string') return /^[A-Z][A-Z_]*$/.test(value) ? value : `<string of ${value.length}>`;
  if (Array.isArray(value)) return value.map(shape);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shape(v)]));
  return value;
}

function expectOutput(step: Step, output: string): void {
  const printed = output.trim();
  if (!step.expected) {
    expect({ script: step.script, printed }).toEqual({ script: step.script, printed: '' });
  } else if (step.expected.info === 'json') {
    expect(shape(JSON.parse(printed))).toEqual(shape(JSON.parse(step.expected.body)));
  } else {
    expect(printed.replace(UUID, '<uuid>')).toBe(step.expected.body.trim().replace(UUID, '<uuid>'));
  }
}

/** Runs bash in its own process group, so a hung step (and the node or curl it started) is killed whole. */
function runBash(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => process.kill(-(child.pid as number), 'SIGKILL'), RUN_TIMEOUT_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let env: TestEnvironment;
let service: ServiceProcess;
let url: string;

beforeAll(async () => {
  env = await createTestEnvironment('readme_tour');
  // `npm run token` and `npm run audit` build dist/ when it is stale: build it now, outside the tour's steps.
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'ensure-built.js')], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (built.status !== 0) throw new Error(`building dist/ failed:\n${built.stdout}\n${built.stderr}`);
  service = spawnService(serviceEnv(env, { MIGRATE: 'false' }));
  url = await service.started;
}, 360_000);

afterAll(async () => {
  if (service && service.child.exitCode === null) {
    service.child.kill('SIGTERM');
    await service.exit;
  }
  await env?.cleanup();
});

test('When the quick tour is read, then it has the steps a reader pastes, with the docker-only ones marked', () => {
  const blocks = quickTourBlocks();
  const run = steps(blocks);
  const scripts = run.map((step) => step.script).join('\n');
  expect(run.length).toBeGreaterThanOrEqual(6);
  for (const needed of ['npm run -s token', 'createPromotion', 'issueCoupon', 'node examples/watch-confirmation.mjs', 'redeemCoupon', 'npm run -s audit']) {
    expect(scripts).toContain(needed);
  }
  expect(scripts).not.toContain('docker');
  expect(blocks.filter((b) => b.skipped).every((b) => b.body.includes('docker compose'))).toBe(true);
  // Every request goes to the README's address, which the tour test rewrites; none is hard-coded elsewhere.
  expect(scripts.match(/https?:\/\/[^\s/'"]+/g)?.every((address) => address === README_URL)).toBe(true);
});

test('When the quick tour is pasted into bash against a started service, then every step prints what the README shows', async () => {
  const run = steps(quickTourBlocks());
  // One shell for all steps, as a reader's terminal: the variables of a step are there for the next. A failing
  // command stops it (set -e), and each step's output is cut at the marker printed after it.
  const script = ['set -euo pipefail', ...run.map((step) => `${step.script.replaceAll(README_URL, url)}\necho '${BLOCK_END}'`)].join('\n');
  expect(script).toContain(`${url}/graphql`);

  // The tour's shell sees the service's own settings (secret, database, key prefix), as a reader's would.
  const result = await runBash(script, serviceEnv(env));
  // A step that failed: show what the shell printed (each step's output ends with the marker).
  if (result.code !== 0) throw new Error(`bash exited ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);

  const outputs = result.stdout.split(`${BLOCK_END}\n`);
  expect(outputs).toHaveLength(run.length + 1);
  run.forEach((step, i) => expectOutput(step, outputs[i] as string));

  // What the README's outputs stand for: the coupon was issued, redeemed, and the books hold.
  expect(result.stdout).toMatch(/"outcome":"QUEUED"/);
  expect(result.stdout).toMatch(/"status":"ISSUED","coupon":\{"code":"[A-HJ-NP-Z2-9]{16}"/);
  expect(result.stdout).toMatch(/"outcome":"REDEEMED"/);
  expect(result.stdout).toMatch(/^HOLDS [0-9a-f-]{36} total=10000 remaining=9999 persisted=1 /m);
}, 180_000);
