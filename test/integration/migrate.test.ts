import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, cpSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { migrate, MIGRATIONS_DIR, readMigrations } from '../../src/db/migrate';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';

/** The migration runner records migrations exactly as `prisma migrate deploy` does. */

let env: TestEnvironment;

async function query<T>(url: string, sql: string): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  env = await createTestEnvironment('migrate'); // creates the database and migrates it
});

afterAll(() => env.cleanup());

test('When migrations are applied, then _prisma_migrations holds each with its SHA-256 checksum, finished', async () => {
  const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number; rolled_back_at: Date | null }>(
    env.databaseUrl,
    'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name',
  );
  const migrations = await readMigrations();

  expect(rows.map((r) => r.migration_name)).toEqual(migrations.map((m) => m.name));
  for (const [i, row] of rows.entries()) {
    const m = migrations[i] as (typeof migrations)[number];
    expect(row.checksum).toBe(createHash('sha256').update(m.sql).digest('hex'));
    expect(row.finished_at).toBeInstanceOf(Date);
    expect(row.applied_steps_count).toBe(1);
    expect(row.rolled_back_at).toBeNull();
  }
  const tables = await query<{ table_name: string }>(env.databaseUrl, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
  expect(tables.map((t) => t.table_name)).toEqual(['_prisma_migrations', 'coupon_events', 'coupons', 'failed_requests', 'promotions', 'stock_additions']);
});

test('When migrate runs again, or twice at once, then nothing is applied twice', async () => {
  const results = await Promise.all([migrate(env.databaseUrl), migrate(env.databaseUrl)]);

  expect(results).toEqual([[], []]);
  const [{ count }] = (await query<{ count: string }>(env.databaseUrl, 'SELECT count(*) FROM "_prisma_migrations"')) as [{ count: string }];
  expect(Number(count)).toBe((await readMigrations()).length);
});

test('When a migration fails, then it is recorded unfinished and later runs stop until it is resolved', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  try {
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    mkdirSync(join(dir, '29991231000000_broken'));
    writeFileSync(join(dir, '29991231000000_broken', 'migration.sql'), 'ALTER TABLE "no_such_table" ADD COLUMN "x" INTEGER;');

    await expect(migrate(env.databaseUrl, dir)).rejects.toThrow(/no_such_table/);
    await expect(migrate(env.databaseUrl, dir)).rejects.toThrow(/29991231000000_broken failed earlier/);

    const [row] = await query<{ finished_at: Date | null; logs: string | null }>(env.databaseUrl, `SELECT finished_at, logs FROM "_prisma_migrations" WHERE migration_name = '29991231000000_broken'`);
    expect(row?.finished_at).toBeNull();
    expect(row?.logs).toContain('no_such_table');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await query(env.databaseUrl, `DELETE FROM "_prisma_migrations" WHERE migration_name = '29991231000000_broken'`);
  }
});
