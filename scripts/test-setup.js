#!/usr/bin/env node
// npm test runs this first: the browser tests drive a real headless Chromium, Debian's package.
// It finds one (CHROMIUM_PATH, else `chromium` or `chromium-browser` on PATH); when there is none and it can
// (root, apt-get present, no CHROMIUM_PATH chosen), it installs Debian's `chromium`; otherwise it stops with how
// to install it. Never a browser downloaded from anywhere else. test/helpers/browser.ts uses the same lookup.
'use strict';
const { accessSync, constants, statSync } = require('node:fs');
const { delimiter, join } = require('node:path');
const { spawnSync } = require('node:child_process');

const NAMES = ['chromium', 'chromium-browser'];

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name, env) {
  return (env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name)).find(isExecutable);
}

/** The Chromium binary the browser tests launch, or undefined. An explicit CHROMIUM_PATH is never second-guessed. */
function findChromium(env = process.env) {
  if (env.CHROMIUM_PATH) return isExecutable(env.CHROMIUM_PATH) ? env.CHROMIUM_PATH : undefined;
  for (const name of NAMES) {
    const path = onPath(name, env);
    if (path) return path;
  }
  return undefined;
}

function main() {
  const log = (message) => console.error(`[test-setup] ${message}`);
  let chromium = findChromium();
  const canInstall = !process.env.CHROMIUM_PATH && process.getuid?.() === 0 && onPath('apt-get', process.env);
  if (!chromium && canInstall) {
    log("Chromium not found: installing Debian's chromium with apt-get (the browser tests drive it)");
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'chromium']]) {
      const result = spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
      if (result.status !== 0) {
        log(`apt-get ${args.join(' ')} failed (exit ${result.status ?? result.signal})`);
        process.exit(1);
      }
    }
    chromium = findChromium();
  }
  if (!chromium) {
    const where = process.env.CHROMIUM_PATH
      ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} is not an executable file`
      : 'no chromium or chromium-browser on PATH';
    log(`Chromium not found (${where}). The browser tests need it: as root, apt-get install chromium (Debian), or set CHROMIUM_PATH to a Chromium binary.`);
    process.exit(1);
  }
  const version = spawnSync(chromium, ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) {
    log(`${chromium} --version failed (exit ${version.status ?? version.signal}): ${(version.stderr || '').trim()}`);
    process.exit(1);
  }
  log(`${version.stdout.trim()} at ${chromium}`);
}

module.exports = { findChromium };
if (require.main === module) main();
