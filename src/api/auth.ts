import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { UnauthenticatedError } from '../domain/errors';
import { isUserId } from '../domain/identifiers';
import type { Caller } from '../domain/types';

const CACHE_LIMIT = 50_000;

/**
 * HS256 bearer tokens. A verified token is cached until its exp (bounded, oldest dropped first), so a
 * crowd retrying with the same token costs one HMAC per token rather than one per request.
 */
export class Authenticator {
  private readonly key: Uint8Array;
  private readonly cache = new Map<string, { caller: Caller; expiresAtMs: number }>();

  constructor(secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  /** null for no credentials; throws UnauthenticatedError for bad ones. */
  async fromAuthorization(value: string | undefined | null): Promise<Caller | null> {
    if (value === undefined || value === null || value === '') return null;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
    if (!match) throw new UnauthenticatedError('Authorization must be "Bearer <token>"');
    return this.verify(match[1] as string);
  }

  async verify(token: string): Promise<Caller> {
    const cached = this.cache.get(token);
    if (cached && cached.expiresAtMs > Date.now()) return cached.caller;
    if (cached) this.cache.delete(token);

    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'] }));
    } catch (error) {
      const expired = error instanceof joseErrors.JWTExpired;
      throw new UnauthenticatedError(expired ? 'Token expired' : 'Invalid token');
    }
    if (typeof payload.sub !== 'string' || !isUserId(payload.sub)) {
      throw new UnauthenticatedError('Invalid token: sub must be 1 to 64 characters of A-Z a-z 0-9 _ - . : @');
    }
    const roles = Array.isArray(payload.roles) ? payload.roles : [];
    const caller: Caller = { userId: payload.sub, isAdmin: roles.includes('admin') };
    const expiresAtMs = typeof payload.exp === 'number' ? payload.exp * 1000 : Number.POSITIVE_INFINITY;
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, { caller, expiresAtMs });
    return caller;
  }

  /** When the token stops being valid (ms since epoch), for closing long-lived connections on time. */
  expiresAt(token: string): number | null {
    const exp = this.cache.get(token)?.expiresAtMs;
    return exp !== undefined && Number.isFinite(exp) ? exp : null;
  }
}

export async function signToken(secret: string, sub: string, options: { admin?: boolean; ttlSeconds?: number } = {}): Promise<string> {
  const jwt = new SignJWT({ roles: options.admin ? ['admin'] : [] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt();
  if (options.ttlSeconds !== undefined) jwt.setExpirationTime(`${options.ttlSeconds}s`);
  return jwt.sign(new TextEncoder().encode(secret));
}
