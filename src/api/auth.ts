import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { UnavailableError, UnauthenticatedError } from '../domain/errors';
import { isUserId, USER_ID_MAX_LENGTH } from '../domain/identifiers';
import type { Caller } from '../domain/types';

const CACHE_LIMIT = 50_000;
/** Clocks of the identity provider and of this service may disagree by this much, no more. */
export const CLOCK_SKEW_SECONDS = 5;
/** A client told the identity provider's keys are unreachable waits this long before trying again. */
const JWKS_RETRY_AFTER_MS = 5000;
/** The default lifetime of a token made by signToken (and `npm run token`). */
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;

export interface AuthOptions {
  /** HS256 secret; not used when jwksUrl is set. */
  secret: string;
  /** An identity provider's JWKS: tokens are then RS256/ES256, verified against its keys (fetched, cached). */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** The top-level claim holding the roles array, taken literally (it may be a URL). */
  rolesClaim?: string;
}

/**
 * Bearer tokens: HS256 with a shared secret, or RS256/ES256 against an identity provider's JWKS. `exp` is
 * required and `iat` may not be in the future (CLOCK_SKEW_SECONDS either way). A verified token is cached
 * until its exp (bounded, oldest dropped first), so a crowd retrying with the same token costs one signature
 * check per token rather than one per request, and tokens already seen keep working while the JWKS is away.
 */
export class Authenticator {
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly algorithms: string[];
  private readonly remote: boolean;
  private readonly cache = new Map<string, { caller: Caller; expiresAtMs: number }>();

  constructor(private readonly options: AuthOptions) {
    this.remote = options.jwksUrl !== undefined;
    // jose keeps the key set for cacheMaxAge and fetches it again at most once per cooldown for an unknown kid.
    this.key = options.jwksUrl
      ? createRemoteJWKSet(new URL(options.jwksUrl), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000, timeoutDuration: 3000 })
      : new TextEncoder().encode(options.secret);
    this.algorithms = this.remote ? ['RS256', 'ES256'] : ['HS256'];
  }

  /** null for no credentials; throws UnauthenticatedError for bad ones, UnavailableError when the keys cannot be fetched. */
  async fromAuthorization(value: string | undefined | null): Promise<Caller | null> {
    return (await this.authorize(value))?.caller ?? null;
  }

  /**
   * As fromAuthorization, with when the token stops being valid (ms since epoch), for closing long-lived
   * connections on time: the header is parsed here only, so the token checked is the one whose expiry is kept.
   */
  async authorize(value: string | undefined | null): Promise<{ caller: Caller; expiresAtMs: number } | null> {
    if (value === undefined || value === null || value === '') return null;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
    if (!match) throw new UnauthenticatedError('Authorization must be "Bearer <token>"');
    return this.verified(match[1] as string);
  }

  async verify(token: string): Promise<Caller> {
    return (await this.verified(token)).caller;
  }

  private async verified(token: string): Promise<{ caller: Caller; expiresAtMs: number }> {
    const cached = this.cache.get(token);
    if (cached && cached.expiresAtMs > Date.now()) return cached;
    if (cached) this.cache.delete(token);

    const payload = await this.verifiedPayload(token);
    if (typeof payload.sub !== 'string' || !isUserId(payload.sub)) {
      throw new UnauthenticatedError(`Invalid token: sub must be 1 to ${USER_ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ - . : @ |`);
    }
    const claim = payload[this.options.rolesClaim ?? 'roles'];
    const roles = Array.isArray(claim) ? claim.filter((r): r is string => typeof r === 'string') : [];
    const caller: Caller = { userId: payload.sub, isAdmin: roles.includes('admin'), isMerchant: roles.includes('merchant') };
    const entry = { caller, expiresAtMs: (payload.exp as number) * 1000 + CLOCK_SKEW_SECONDS * 1000 };
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, entry);
    return entry;
  }

  private async verifiedPayload(token: string): Promise<JWTPayload> {
    let payload: JWTPayload;
    try {
      const options = {
        algorithms: this.algorithms,
        issuer: this.options.issuer,
        audience: this.options.audience,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp'],
      };
      ({ payload } =
        typeof this.key === 'function' ? await jwtVerify(token, this.key, options) : await jwtVerify(token, this.key, options));
    } catch (error) {
      if (this.remote && keysUnavailable(error)) {
        throw new UnavailableError('The identity provider could not be reached: try again shortly', JWKS_RETRY_AFTER_MS);
      }
      throw new UnauthenticatedError(error instanceof joseErrors.JWTExpired ? 'Token expired' : 'Invalid token');
    }
    if (typeof payload.exp !== 'number') throw new UnauthenticatedError('Invalid token: exp is required');
    // jose reads iat but does not refuse one from the future: a token minted ahead of time is not valid yet.
    if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) {
      throw new UnauthenticatedError('Invalid token: issued in the future');
    }
    return payload;
  }
}

/**
 * True when verification failed because the key set could not be had (network, timeout, not a 200, not a key
 * set), not because of the token: that is the service's trouble, and a 401 would log every user out.
 */
function keysUnavailable(error: unknown): boolean {
  if (!(error instanceof joseErrors.JOSEError)) return true;
  return (
    error instanceof joseErrors.JWKSTimeout ||
    error instanceof joseErrors.JWKSInvalid ||
    error.code === joseErrors.JOSEError.code // jose's generic error: the JWKS response was not a 200 or not JSON
  );
}

export interface SignOptions {
  admin?: boolean;
  merchant?: boolean;
  /** Lifetime; DEFAULT_TOKEN_TTL_SECONDS when not given (exp is always set: a token without it is refused). */
  ttlSeconds?: number;
  /** Set when the service checks JWT_ISSUER / JWT_AUDIENCE. */
  issuer?: string;
  audience?: string;
  /** The claim the roles go in (JWT_ROLES_CLAIM). */
  rolesClaim?: string;
}

export async function signToken(secret: string, sub: string, options: SignOptions = {}): Promise<string> {
  const roles = [...(options.admin ? ['admin'] : []), ...(options.merchant ? ['merchant'] : [])];
  const jwt = new SignJWT({ [options.rolesClaim ?? 'roles']: roles })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS));
  if (options.issuer) jwt.setIssuer(options.issuer);
  if (options.audience) jwt.setAudience(options.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}
