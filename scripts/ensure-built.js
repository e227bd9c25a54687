#!/usr/bin/env node
// Builds dist/ when it is missing or older than any source file (src/, prisma/schema.prisma, configs).
'use strict';
const { execSync } = require('node:child_process');
const { existsSync, readdirSync, statSync } = require('node:fs');
const { join } = require('node:path');

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
const builtAt = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
if (sources.some((p) => existsSync(p) && newestMtime(p) > builtAt)) {
  console.error('building…');
  // The build's output goes to stderr: `TOKEN=$(npm run -s token ...)` must capture the token alone.
  execSync('npm run --silent build', { cwd: root, stdio: ['ignore', process.stderr, process.stderr] });
}
