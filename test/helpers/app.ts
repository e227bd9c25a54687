import { startApp, type RunningApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import type { TestEnvironment } from './environment';

/** The real service, on port 0, against the test file's own database and key prefix. */
export function startTestApp(env: TestEnvironment, overrides: Record<string, string> = {}): Promise<RunningApp> {
  return startApp(env.config(overrides), createLogger('silent'));
}
