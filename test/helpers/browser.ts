import { chromium, type Browser, type LaunchOptions } from 'playwright-core';

// One lookup for `npm test`'s setup and the tests: CHROMIUM_PATH, else chromium or chromium-browser on PATH.
const { findChromium } = require('../../scripts/test-setup.js') as { findChromium(env?: NodeJS.ProcessEnv): string | undefined };

/** No GPU, no QUIC, no background traffic: the browser fetches only what a test's page asks for. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The Chromium binary the browser tests launch; throws how to get one when there is none. */
export function chromiumPath(): string {
  const path = findChromium();
  if (!path) {
    const where = process.env.CHROMIUM_PATH ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} is not executable` : 'none on PATH';
    throw new Error(`Chromium not found (${where}): npm test installs Debian's chromium when run as root; otherwise apt-get install chromium or set CHROMIUM_PATH`);
  }
  return path;
}

/** A headless Chromium with CHROMIUM_ARGS; `options.args` are added to them. Close it in afterAll. */
export function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  return chromium.launch({ ...options, headless: true, executablePath: chromiumPath(), args: [...CHROMIUM_ARGS, ...(options.args ?? [])] });
}
