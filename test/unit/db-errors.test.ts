import { describeDbError, isPermanentDbError } from '../../src/consumer/db-errors';

/** Shapes as Prisma 7 with the pg adapter throws them (P2010 wrapping the driver's SQLSTATE). */
const prismaError = (cause: Record<string, unknown>) =>
  Object.assign(new Error('Raw query failed.'), { code: 'P2010', meta: { driverAdapterError: Object.assign(new Error('x'), { cause }) } });

describe('database error classification', () => {
  test('When PostgreSQL refuses the data (class 22 or 23), then the error is permanent', () => {
    expect(isPermanentDbError(prismaError({ originalCode: '23503', kind: 'postgres' }))).toBe(true);
    expect(isPermanentDbError(prismaError({ originalCode: '22001', kind: 'postgres' }))).toBe(true);
    expect(describeDbError(prismaError({ originalCode: '23503' }))).toContain('23503');
  });

  test('When the database is unreachable, restarting or the error is unknown, then it is transient', () => {
    expect(isPermanentDbError(prismaError({ kind: 'DatabaseNotReachable', host: '127.0.0.1', port: 5432 }))).toBe(false);
    expect(isPermanentDbError(prismaError({ originalCode: '57P01', kind: 'postgres' }))).toBe(false); // admin shutdown
    expect(isPermanentDbError(prismaError({ originalCode: '42P01', kind: 'postgres' }))).toBe(false); // table missing: a deploy mistake, not the request's fault
    expect(isPermanentDbError(Object.assign(new Error('P2010'), { code: 'P2010' }))).toBe(false);
    expect(isPermanentDbError(new Error('connect ECONNREFUSED'))).toBe(false);
  });
});
