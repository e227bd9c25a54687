import { parseArgs } from 'node:util';
import { DEFAULT_TOKEN_TTL_SECONDS, signToken } from './api/auth';
import { loadConfig } from './config';
import { isUserId } from './domain/identifiers';

const USAGE = 'usage: npm run token -- --sub NAME [--admin] [--merchant] [--ttl SECONDS]  (NAME: 1-128 of A-Z a-z 0-9 _ - . : @ |)';

/** npm run token -- --sub alice [--admin] [--merchant] [--ttl 3600]: a token always carries exp (default one hour). */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      admin: { type: 'boolean', default: false },
      merchant: { type: 'boolean', default: false },
      ttl: { type: 'string', default: String(DEFAULT_TOKEN_TTL_SECONDS) },
    },
  });
  if (!values.sub || !isUserId(values.sub)) throw new Error(USAGE);
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error('--ttl must be a positive number of seconds');
  const config = loadConfig();
  if (config.jwt.jwksUrl) console.error('JWT_JWKS_URL is set: the service verifies tokens from the identity provider, not this one.');
  console.log(await signToken(config.jwtSecret, values.sub, {
      admin: values.admin,
      merchant: values.merchant,
      ttlSeconds: ttl,
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
      rolesClaim: config.jwt.rolesClaim,
    }));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
