import { defineConfig } from 'prisma/config';

// `prisma generate` needs no database; the default keeps it working where DATABASE_URL is unset (CI, Docker build).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:5432/coupons' },
});
