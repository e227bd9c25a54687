import { SignJWT } from 'jose';
import { Authenticator, signToken } from '../../src/api/auth';
import { UnauthenticatedError } from '../../src/domain/errors';

const SECRET = 'unit-secret-unit-secret-unit-secret-00';
const KEY = new TextEncoder().encode(SECRET);
const auth = new Authenticator({ secret: SECRET });
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A token with exactly the claims given (signToken always adds exp and iat). */
const raw = (claims: Record<string, unknown>, secret = KEY) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(secret);

describe('authentication', () => {
  test('When a valid token is presented, then its sub is the user and roles decide admin and merchant', async () => {
    expect(await auth.fromAuthorization(`Bearer ${await signToken(SECRET, 'alice')}`)).toEqual({ userId: 'alice', isAdmin: false, isMerchant: false });
    expect(await auth.fromAuthorization(`bearer ${await signToken(SECRET, 'root', { admin: true })}`)).toEqual({ userId: 'root', isAdmin: true, isMerchant: false });
    expect(await auth.verify(await signToken(SECRET, 'shop', { merchant: true }))).toEqual({ userId: 'shop', isAdmin: false, isMerchant: true });
  });

  test('When no credentials are given, then the caller is anonymous', async () => {
    expect(await auth.fromAuthorization(undefined)).toBeNull();
    expect(await auth.fromAuthorization('')).toBeNull();
  });

  test('When a token is made without a lifetime, then it still carries exp, one hour ahead', async () => {
    const token = await signToken(SECRET, 'alice');
    const payload = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { exp: number; iat: number };

    expect(payload.exp - payload.iat).toBe(3600);
  });

  test.each([
    ['a token signed with another secret', async () => `Bearer ${await signToken('x'.repeat(40), 'alice')}`],
    ['an expired token (past the clock skew)', async () => `Bearer ${await signToken(SECRET, 'alice', { ttlSeconds: -10 })}`],
    ['a token without exp', async () => `Bearer ${await raw({ sub: 'alice', iat: nowSeconds() })}`],
    ['a token with a non-numeric exp', async () => `Bearer ${await raw({ sub: 'alice', exp: 'never' })}`],
    ['a token issued in the future', async () => `Bearer ${await raw({ sub: 'alice', iat: nowSeconds() + 60, exp: nowSeconds() + 3600 })}`],
    ['a sub outside the allowed characters', async () => `Bearer ${await signToken(SECRET, 'bad user')}`],
    ['a sub longer than 128', async () => `Bearer ${await signToken(SECRET, 'x'.repeat(129))}`],
    ['another scheme', async () => `Basic ${Buffer.from('a:b').toString('base64')}`],
    ['a token that is not a JWT', async () => 'Bearer nonsense'],
  ])('When the request carries %s, then UNAUTHENTICATED', async (_, header) => {
    await expect(auth.fromAuthorization(await header())).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  test('When clocks disagree by a few seconds, then a token just expired or just issued still passes', async () => {
    expect(await auth.verify(await raw({ sub: 'skew-1', iat: nowSeconds() + 3, exp: nowSeconds() + 3600 }))).toMatchObject({ userId: 'skew-1' });
    expect(await auth.verify(await raw({ sub: 'skew-2', exp: nowSeconds() - 3 }))).toMatchObject({ userId: 'skew-2' });
  });

  test('When subs are identity-provider subjects up to 128 characters, then they are the user id as they are', async () => {
    expect(await auth.verify(await signToken(SECRET, 'auth0|abc'))).toMatchObject({ userId: 'auth0|abc' });
    const long = `${'a'.repeat(60)}|${'b'.repeat(67)}`;
    expect(await auth.verify(await signToken(SECRET, long))).toMatchObject({ userId: long });
  });

  test('When JWT_ISSUER and JWT_AUDIENCE are set, then only tokens naming both pass', async () => {
    const strict = new Authenticator({ secret: SECRET, issuer: 'https://id.example', audience: 'coupons' });
    const good = await signToken(SECRET, 'alice', { issuer: 'https://id.example', audience: 'coupons' });

    expect(await strict.verify(good)).toMatchObject({ userId: 'alice' });
    for (const bad of [
      await signToken(SECRET, 'alice', { issuer: 'https://evil.example', audience: 'coupons' }),
      await signToken(SECRET, 'alice', { issuer: 'https://id.example', audience: 'other' }),
      await signToken(SECRET, 'alice'),
    ]) {
      await expect(strict.verify(bad)).rejects.toBeInstanceOf(UnauthenticatedError);
    }
  });

  test('When JWT_ROLES_CLAIM names another claim, then roles are read from it and the default claim is ignored', async () => {
    const claim = 'https://shop.example/roles';
    const custom = new Authenticator({ secret: SECRET, rolesClaim: claim });

    expect(await custom.verify(await signToken(SECRET, 'root', { admin: true, rolesClaim: claim }))).toMatchObject({ isAdmin: true });
    expect(await custom.verify(await signToken(SECRET, 'root2', { admin: true }))).toMatchObject({ isAdmin: false });
    expect(await custom.verify(await raw({ sub: 'odd', exp: nowSeconds() + 60, [claim]: 'admin' }))).toMatchObject({ isAdmin: false });
  });

  test('When a cached token expires, then it is refused from then on', async () => {
    // exp 3 s ago: still valid for up to 2 s thanks to the clock skew allowance, then never again.
    const token = await signToken(SECRET, 'alice', { ttlSeconds: -3 });
    expect(await auth.verify(token)).toEqual({ userId: 'alice', isAdmin: false, isMerchant: false });
    expect((await auth.authorize(`Bearer ${token}`))?.expiresAtMs).toBeGreaterThan(Date.now());

    await new Promise((r) => setTimeout(r, 2100));

    await expect(auth.verify(token)).rejects.toBeInstanceOf(UnauthenticatedError);
  });
});
