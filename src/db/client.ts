import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client';

export type Db = PrismaClient;

/**
 * Prisma 7 through the pg driver adapter: no engine binary at run time.
 * Every wait is bounded, so a silent network partition becomes an error the consumer retries, rather than
 * a batch insert hanging for the minutes TCP takes to give up.
 */
export function createDb(databaseUrl: string, poolSize = 10): Db {
  const adapter = new PrismaPg({
    connectionString: databaseUrl,
    max: poolSize,
    connectionTimeoutMillis: 5000,
    statement_timeout: 15_000, // server side
    query_timeout: 20_000, // client side: also covers a server that stopped answering
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  return new PrismaClient({ adapter });
}
