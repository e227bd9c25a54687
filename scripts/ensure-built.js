#!/usr/bin/env node
// Builds dist/ when it is missing or older than any source file (src/, prisma/schema.prisma, configs).
'use strict';
const { execSync } = require('node:child_process');
const { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const stamp = join(root, 'dist', '.built');

function newestMtime(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(path)) {
    if (entry === 'generated') continue;
    newest = Math.max(newest, newestMtime(join(path, entry)));
  }
  return newest;
}

const sources = ['src', 'prisma/schema.prisma', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json'].map((p) => join(root, p));
const stale = () => {
  const builtAt = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  return sources.some((p) => existsSync(p) && newestMtime(p) > builtAt);
};

/**
 * One build at a time: `npm start` in one terminal and `npm run token` in another both land here on a fresh
 * checkout (so do tests run in parallel), and two builds writing dist/ at once leave it broken. The lock file
 * holds its builder's pid, so a build interrupted by Ctrl-C does not hold it for ever.
 */
function withBuildLock(build) {
  const lock = join(root, 'dist', '.build-lock');
  mkdirSync(dirname(lock), { recursive: true });
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    if (builderAlive(lock) || !removeStaleLock(lock)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // a synchronous sleep
  }
  try {
    build();
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * Removes a dead builder's lock, one command at a time: two that both read the dead pid could otherwise each
 * remove it, the second removing the lock the first has just taken, and both would build. Only the command
 * holding the takeover marker removes, after reading the lock again. A marker lives for microseconds; one older
 * than 10 s was left by a command killed in the middle of a takeover and is cleared.
 */
function removeStaleLock(lock) {
  const marker = `${lock}.takeover`;
  try {
    writeFileSync(marker, String(process.pid), { flag: 'wx' });
  } catch (error) {
    if (error.code !== 'EEXIST') throw error;
    try {
      if (Date.now() - statSync(marker).mtimeMs > 10_000) rmSync(marker, { force: true });
    } catch {
      // gone meanwhile: its holder finished
    }
    return false;
  }
  try {
    if (builderAlive(lock)) return false;
    rmSync(lock, { force: true });
    return true;
  } finally {
    rmSync(marker, { force: true });
  }
}

function builderAlive(lock) {
  try {
    const pid = Number(readFileSync(lock, 'utf8'));
    // Our own pid is a dead builder's come back (a restarted container numbers its processes alike): not a holder.
    if (pid === process.pid) return false;
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM'; // alive, another user's; a missing file or process (ENOENT, ESRCH) is not
  }
}

if (stale()) {
  withBuildLock(() => {
    if (!stale()) return; // built meanwhile by the holder of the lock
    console.error('building…');
    // The build's output goes to stderr: `TOKEN=$(npm run -s token ...)` must capture the token alone.
    execSync('npm run --silent build', { cwd: root, stdio: ['ignore', process.stderr, process.stderr] });
  });
}
