import 'reflect-metadata';
import type { RunningApp } from './app';
import { ConfigError, loadConfig, type Config } from './config';
import { createLogger, type Logger } from './logger';

/**
 * The process entry point. The signal handlers are installed before anything else runs (before the heavy
 * modules load, before anything connects, consumes or listens): a SIGTERM or SIGINT at any moment of start-up
 * is then a request to stop, honoured as soon as start-up has finished, instead of the default action killing
 * the process halfway (a consumer holding a batch, a port already open).
 */
async function main(): Promise<void> {
  let requested = false;
  let app: RunningApp | null = null;
  // Assigned synchronously below, before any signal can be delivered (handlers run on a later turn).
  let config: Config;
  let logger: Logger;

  const stopAndExit = (running: RunningApp) =>
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'error while shutting down');
        process.exit(1);
      },
    );

  const onSignal = (signal: NodeJS.Signals) => {
    if (requested) return;
    requested = true;
    logger.info({ signal, starting: app === null }, 'shutting down');
    // The budget counts from the signal, start-up included: an orchestrator's grace period does too.
    const deadline = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    if (app) void stopAndExit(app);
    // Otherwise start-up is still running: it stops as soon as it has finished (below).
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  logger = createLogger(config.logLevel);

  try {
    // Loaded only now, so the handlers above are in place while the heavy modules load.
    const { startApp } = require('./app') as typeof import('./app');
    app = await startApp(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, 'could not start');
    process.exit(1);
  }
  if (requested) await stopAndExit(app);
}

void main();
