import pino, { type Logger } from 'pino';

export type { Logger };

/** JSON lines with ISO times and level labels ("level":"info"), which people and log pipelines read as they are. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'coupon-issuance' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
