import { parseArgs } from 'node:util';
import { signToken } from './api/auth';
import { loadConfig } from './config';
import { isUserId } from './domain/identifiers';

/** npm run token -- --sub alice [--admin] [--ttl 3600] */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { sub: { type: 'string' }, admin: { type: 'boolean', default: false }, ttl: { type: 'string', default: '3600' } },
  });
  if (!values.sub || !isUserId(values.sub)) {
    throw new Error('usage: npm run token -- --sub NAME [--admin] [--ttl SECONDS]  (NAME: 1-64 of A-Z a-z 0-9 _ - . : @)');
  }
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error('--ttl must be a positive number of seconds');
  const config = loadConfig();
  console.log(await signToken(config.jwtSecret, values.sub, { admin: values.admin, ttlSeconds: ttl }));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
