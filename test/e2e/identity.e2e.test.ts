import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { print } from 'graphql';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from 'jose';
import { Client as Pg } from 'pg';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument, IssuanceDocument, IssueCouponDocument, MyCouponsDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, TEST_JWT_SECRET, type TestEnvironment } from '../helpers/environment';
import { bearer, closeCodeAfterInit, postGraphQL } from '../helpers/raw-http';

/**
 * API.md "Identity" over real HTTP and WebSocket: exp required, iat not in the future, subjects such as
 * `auth0|abc` end to end (into PostgreSQL), and an identity provider's JWKS served on loopback by the test,
 * RS256 and ES256, with issuer, audience and a roles claim of its own, and the key server going down.
 */

const ISSUER = 'https://id.example/';
const AUDIENCE = 'coupons-api';
const ROLES_CLAIM = 'https://shop.example/roles';
const MY_COUPONS = print(MyCouponsDocument);
const ISSUE = print(IssueCouponDocument);
const now = () => Math.floor(Date.now() / 1000);

let env: TestEnvironment;
let hs: RunningApp;
let idp: RunningApp;
let keyServer: Server;
let rsa: { privateKey: KeyLike; jwk: JWK };
let ec: { privateKey: KeyLike; jwk: JWK };

async function keyPair(alg: 'RS256' | 'ES256', kid: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function serveJwks(keys: JWK[], port = 0): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys }));
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;
const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

/** A token as an identity provider makes it. */
function idpToken(key: { privateKey: KeyLike; jwk: JWK }, sub: string, claims: Record<string, unknown> = {}, iss = ISSUER, aud = AUDIENCE): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.jwk.alg as string, kid: key.jwk.kid as string })
    .setSubject(sub)
    .setIssuer(iss)
    .setAudience(aud)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key.privateKey);
}

/** A token with exactly these claims, signed with the service's shared secret. */
const hsToken = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TEST_JWT_SECRET));

async function createPromotion(on: RunningApp, token: string): Promise<string> {
  const r = await httpGraphQL(on.url, CreatePromotionDocument, { input: { name: 'Ids', totalStock: 10, perUserLimit: 2, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, token);
  expect(r.body.errors).toBeUndefined();
  return r.body.data?.createPromotion.id as string;
}

beforeAll(async () => {
  env = await createTestEnvironment('identity');
  [rsa, ec] = await Promise.all([keyPair('RS256', 'rsa-1'), keyPair('ES256', 'ec-1')]);
  keyServer = await serveJwks([rsa.jwk, ec.jwk]);
  hs = await startTestApp(env);
  idp = await startTestApp(env, {
    REDIS_KEY_PREFIX: `${env.prefix}idp:`,
    JWT_JWKS_URL: `http://127.0.0.1:${portOf(keyServer)}/.well-known/jwks.json`,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    JWT_ROLES_CLAIM: ROLES_CLAIM,
  });
});

afterAll(async () => {
  await Promise.all([hs.stop(), idp.stop()]);
  await close(keyServer);
  await env.cleanup();
});

describe('shared-secret tokens', () => {
  test.each([
    ['no exp', () => hsToken({ sub: 'alice', iat: now() })],
    ['an iat a minute in the future', () => hsToken({ sub: 'alice', iat: now() + 60, exp: now() + 3600 })],
    ['an exp past the clock skew', () => hsToken({ sub: 'alice', iat: now() - 60, exp: now() - 10 })],
  ])('When a token has %s, then 401 UNAUTHENTICATED over HTTP and 4403 over WebSocket', async (_, make) => {
    const token = await make();

    const r = await postGraphQL(hs.url, MY_COUPONS, {}, bearer(token));
    const closed = await closeCodeAfterInit(hs.url, token);

    expect(r.status).toBe(401);
    expect(r.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(closed.code).toBe(4403);
  });

  test.each([
    ['an identity-provider subject', 'auth0|abc'],
    ['a subject of 128 characters', `${'google-oauth2|'}${'7'.repeat(114)}`],
  ])('When %s calls issueCoupon, then its coupon is stored under exactly that user id', async (_, sub) => {
    const admin = await tokenFor('id-admin', { admin: true });
    const promotionId = await createPromotion(hs, admin);
    const token = await tokenFor(sub);

    const issued = await httpGraphQL(hs.url, IssueCouponDocument, { promotionId }, token);
    const requestId = issued.body.data?.issueCoupon.requestId as string;
    await eventually(async () => {
      const r = await httpGraphQL(hs.url, IssuanceDocument, { requestId }, token);
      return r.body.data?.issuance?.status === 'ISSUED' ? true : undefined;
    }, 15_000, 'ISSUED');

    expect(issued.body.data?.issueCoupon.outcome).toBe('QUEUED');
    const pg = new Pg({ connectionString: env.databaseUrl });
    await pg.connect();
    try {
      const rows = await pg.query<{ user_id: string }>('SELECT user_id FROM coupons WHERE request_id = $1', [requestId]);
      expect(rows.rows).toEqual([{ user_id: sub }]);
    } finally {
      await pg.end();
    }
    const mine = await httpGraphQL(hs.url, MyCouponsDocument, { promotionId }, token);
    expect(mine.body.data?.myCoupons).toHaveLength(1);
  });

  test('When user ids contain |, then no user and idempotency key can spell another user\'s key', async () => {
    const admin = await tokenFor('id-admin', { admin: true });
    const promotionId = await createPromotion(hs, admin);

    const first = await postGraphQL(hs.url, ISSUE, { promotionId, idempotencyKey: 'c' }, bearer(await tokenFor('a|b')));
    const second = await postGraphQL(hs.url, ISSUE, { promotionId, idempotencyKey: 'b|c' }, bearer(await tokenFor('a')));

    const [one, two] = [first, second].map((r) => r.body.data?.issueCoupon as { outcome: string; requestId: string });
    expect(one?.outcome).toBe('QUEUED');
    expect(two?.outcome).toBe('QUEUED');
    expect(two?.requestId).not.toBe(one?.requestId);
  });
});

describe('an identity provider\'s JWKS', () => {
  test('When RS256 and ES256 tokens of the provider arrive, then both are verified, and roles come from JWT_ROLES_CLAIM', async () => {
    const admin = await idpToken(rsa, 'auth0|root', { [ROLES_CLAIM]: ['admin'] });
    const shopper = await idpToken(ec, 'auth0|shopper');

    const promotionId = await createPromotion(idp, admin);
    const issued = await postGraphQL(idp.url, ISSUE, { promotionId }, bearer(shopper));

    expect(issued.status).toBe(200);
    expect((issued.body.data?.issueCoupon as { outcome: string }).outcome).toBe('QUEUED');
  });

  test.each([
    ['another issuer', () => idpToken(rsa, 'u1', {}, 'https://evil.example/')],
    ['another audience', () => idpToken(ec, 'u1', {}, ISSUER, 'someone-else')],
    ['a key the provider does not publish', async () => idpToken(await keyPair('RS256', 'rogue'), 'u1')],
    ['an HS256 token signed with JWT_SECRET', () => tokenFor('u1', { issuer: ISSUER, audience: AUDIENCE })],
  ])('When a token has %s, then 401 UNAUTHENTICATED', async (_, make) => {
    const r = await postGraphQL(idp.url, MY_COUPONS, {}, bearer(await make()));

    expect(r.status).toBe(401);
    expect(r.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  test('When roles are in the default claim but JWT_ROLES_CLAIM names another, then the caller is not an admin', async () => {
    const r = await httpGraphQL(idp.url, CreatePromotionDocument, { input: { name: 'x', totalStock: 1, endsAt: new Date(Date.now() + 3600_000).toISOString() } }, await idpToken(rsa, 'auth0|pretender', { roles: ['admin'] }));

    expect(r.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  test('When the key server goes down after its keys were fetched, then tokens signed with those keys still pass (keys cached)', async () => {
    await close(keyServer);
    const fresh = await idpToken(ec, 'auth0|after-outage'); // never seen before: not in the verified-token cache

    const r = await postGraphQL(idp.url, MY_COUPONS, {}, bearer(fresh));

    expect(r.status).toBe(200);
    expect(r.body.data?.myCoupons).toEqual([]);
  });

  test('When the key server is down, then 503 SERVICE_UNAVAILABLE with Retry-After (4503 over WebSocket), never 401; once it is back, tokens pass', async () => {
    const spare = await serveJwks([rsa.jwk, ec.jwk]);
    const port = portOf(spare);
    await close(spare); // the provider is down before the service ever fetched its keys
    const down = await startTestApp(env, {
      REDIS_KEY_PREFIX: `${env.prefix}down:`,
      JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks`,
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
    });
    try {
      const token = await idpToken(ec, 'auth0|patient');

      const r = await postGraphQL(down.url, MY_COUPONS, {}, bearer(token));
      const closed = await closeCodeAfterInit(down.url, token);

      expect(r.status).toBe(503);
      expect(r.body.errors?.[0]?.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryAfterMs: expect.any(Number) });
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(closed.code).toBe(4503);

      const back = await serveJwks([rsa.jwk, ec.jwk], port);
      try {
        const again = await postGraphQL(down.url, MY_COUPONS, {}, bearer(token));
        expect(again.status).toBe(200);
        expect(again.body.data?.myCoupons).toEqual([]);
      } finally {
        await close(back);
      }
    } finally {
      await down.stop();
    }
  });
});
