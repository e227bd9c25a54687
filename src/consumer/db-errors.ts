/**
 * Tells a database error that retrying can cure (connection lost, timeout, server restarting) from one
 * that will fail again whatever we do (the data itself is refused). Unknown errors count as transient:
 * a queued request is only given up on when PostgreSQL itself refuses it.
 */

// SQLSTATE classes: 22 data exception, 23 integrity constraint violation.
const PERMANENT_CLASSES = new Set(['22', '23']);

/** The PostgreSQL SQLSTATE inside a Prisma error (meta.driverAdapterError.cause.originalCode) or a pg error. */
function sqlState(error: unknown, depth = 0): string | null {
  if (!error || typeof error !== 'object' || depth > 4) return null;
  const e = error as Record<string, unknown>;
  if (typeof e.originalCode === 'string') return e.originalCode;
  if (typeof e.severity === 'string' && typeof e.code === 'string') return e.code; // a pg DatabaseError
  const meta = e.meta as Record<string, unknown> | undefined;
  for (const nested of [meta?.driverAdapterError, e.cause]) {
    const found = sqlState(nested, depth + 1);
    if (found) return found;
  }
  return null;
}

export function isPermanentDbError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== null && PERMANENT_CLASSES.has(state.slice(0, 2));
}

export function describeDbError(error: unknown): string {
  const state = sqlState(error);
  const message = error instanceof Error ? error.message.split('\n').filter(Boolean).pop() ?? error.name : String(error);
  return state ? `${state}: ${message}` : message;
}
