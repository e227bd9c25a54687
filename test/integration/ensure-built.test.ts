import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/service-process';

/**
 * scripts/ensure-built.js, which `npm start`, `npm run token` and `npm run audit` run first, in a scratch project
 * whose `build` script only records that it ran: the quick tour's `ADMIN=$(npm run -s token ...)` must capture
 * the token alone, and two commands started together on a stale checkout must not build twice at once.
 */

let project: string;

/** A project with ensure-built.js, one source file newer than any build, and a build that takes a while. */
function scratchProject(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ensure-built-'));
  mkdirSync(join(dir, 'scripts'));
  mkdirSync(join(dir, 'src'));
  cpSync(join(ROOT, 'scripts', 'ensure-built.js'), join(dir, 'scripts', 'ensure-built.js'));
  writeFileSync(join(dir, 'src', 'main.ts'), '');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, scripts: { build: 'node build.js' } }));
  writeFileSync(
    join(dir, 'build.js'),
    `const fs = require('node:fs');
     fs.appendFileSync('builds.log', 'start\\n');
     console.log('what a build prints');
     setTimeout(() => {
       fs.mkdirSync('dist', { recursive: true });
       fs.writeFileSync('dist/.built', '');
       fs.appendFileSync('builds.log', 'end\\n');
     }, 1500);`,
  );
  return dir;
}

function ensureBuilt(): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(project, 'scripts', 'ensure-built.js')], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.resume();
    // One that waits for ever (a lock never given up) is stopped, and shows as code null.
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
}

beforeEach(() => {
  project = scratchProject();
});

afterEach(() => rmSync(project, { recursive: true, force: true }));

test('When the build runs, then its output goes to stderr, so a command substitution captures nothing of it', async () => {
  const result = await ensureBuilt();
  expect(result).toEqual({ code: 0, stdout: '' });
  expect(readFileSync(join(project, 'builds.log'), 'utf8')).toBe('start\nend\n');
});

test('When two commands start together on a stale checkout, then one builds and the other waits for it', async () => {
  const results = await Promise.all([ensureBuilt(), ensureBuilt()]);
  expect(results.map((r) => r.code)).toEqual([0, 0]);
  expect(readFileSync(join(project, 'builds.log'), 'utf8')).toBe('start\nend\n');
  expect(existsSync(join(project, 'dist', '.build-lock'))).toBe(false);
});

test('When a build was interrupted and left its lock behind, then the next command takes the lock over and builds', async () => {
  mkdirSync(join(project, 'dist'));
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => gone.once('exit', resolve));
  writeFileSync(join(project, 'dist', '.build-lock'), String(gone.pid)); // the pid of a process that has exited
  expect(await ensureBuilt()).toEqual({ code: 0, stdout: '' });
  expect(readFileSync(join(project, 'builds.log'), 'utf8')).toBe('start\nend\n');
});

test('When the left-behind lock holds the pid this command now runs under (a restarted container), then it is taken over, not waited on', async () => {
  mkdirSync(join(project, 'dist'));
  // Containers number their processes the same way at every start: the interrupted builder's pid comes back as ours.
  const script = `require('node:fs').writeFileSync('dist/.build-lock', String(process.pid)); require('./scripts/ensure-built.js');`;
  const result = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: project, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  expect(result).toBe(0);
  expect(readFileSync(join(project, 'builds.log'), 'utf8')).toBe('start\nend\n');
  expect(existsSync(join(project, 'dist', '.build-lock'))).toBe(false);
});

test('When many commands start together on a left-behind lock, then exactly one of them builds', async () => {
  mkdirSync(join(project, 'dist'));
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => gone.once('exit', resolve));
  writeFileSync(join(project, 'dist', '.build-lock'), String(gone.pid));
  // Each finds the stale lock at about the same moment: only one may remove it, or one removes the lock the
  // other has just taken and both build into dist/.
  const results = await Promise.all(Array.from({ length: 8 }, () => ensureBuilt()));
  expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
  expect(readFileSync(join(project, 'builds.log'), 'utf8')).toBe('start\nend\n');
  expect(existsSync(join(project, 'dist', '.build-lock'))).toBe(false);
});
