import { Authenticator, signToken } from '../../src/api/auth';
import { UnauthenticatedError } from '../../src/domain/errors';

const SECRET = 'unit-secret-unit-secret-unit-secret-00';
const auth = new Authenticator(SECRET);

describe('authentication', () => {
  test('When a valid token is presented, then its sub is the user and roles decide admin', async () => {
    expect(await auth.fromAuthorization(`Bearer ${await signToken(SECRET, 'alice')}`)).toEqual({ userId: 'alice', isAdmin: false });
    expect(await auth.fromAuthorization(`bearer ${await signToken(SECRET, 'root', { admin: true })}`)).toEqual({ userId: 'root', isAdmin: true });
  });

  test('When no credentials are given, then the caller is anonymous', async () => {
    expect(await auth.fromAuthorization(undefined)).toBeNull();
    expect(await auth.fromAuthorization('')).toBeNull();
  });

  test.each([
    ['a token signed with another secret', async () => `Bearer ${await signToken('x'.repeat(40), 'alice')}`],
    ['an expired token', async () => `Bearer ${await signToken(SECRET, 'alice', { ttlSeconds: -1 })}`],
    ['a sub outside the allowed characters', async () => `Bearer ${await signToken(SECRET, 'bad user')}`],
    ['a sub longer than 64', async () => `Bearer ${await signToken(SECRET, 'x'.repeat(65))}`],
    ['another scheme', async () => `Basic ${Buffer.from('a:b').toString('base64')}`],
    ['a token that is not a JWT', async () => 'Bearer nonsense'],
  ])('When the request carries %s, then UNAUTHENTICATED', async (_, header) => {
    await expect(auth.fromAuthorization(await header())).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  test('When a cached token expires, then it is refused from then on', async () => {
    const token = await signToken(SECRET, 'alice', { ttlSeconds: 1 });
    expect(await auth.verify(token)).toEqual({ userId: 'alice', isAdmin: false });
    expect(auth.expiresAt(token)).toBeGreaterThan(Date.now());

    await new Promise((r) => setTimeout(r, 1100));

    await expect(auth.verify(token)).rejects.toBeInstanceOf(UnauthenticatedError);
  });
});
