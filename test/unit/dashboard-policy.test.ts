import { contentSecurityPolicy } from '../../src/web/dashboard';

const connectSrc = (host: string | undefined) => contentSecurityPolicy(host).split('; ').find((d) => d.startsWith('connect-src'));

describe('the dashboard page policy', () => {
  it.each(['127.0.0.1:4000', 'sales.example.com', 'shop-1.example.com:8443', '[::1]:4000'])('When the Host is %s, then its socket is allowed, ws and wss', (host) => {
    expect(connectSrc(host)).toBe(`connect-src 'self' ws://${host} wss://${host}`);
  });

  it.each([undefined, '', 'evil.example; script-src *', "a.example 'unsafe-inline'", 'a.example\nb', 'a.example:99999999', 'user@a.example'])(
    'When the Host is %j, then only the page origin is allowed: nothing from the header reaches the policy',
    (host) => {
      expect(connectSrc(host)).toBe("connect-src 'self'");
      expect(contentSecurityPolicy(host)).not.toContain('*');
    },
  );

  it('When the page is served, then no inline script or style and no other origin is allowed', () => {
    const policy = contentSecurityPolicy('127.0.0.1:4000');
    expect(policy).toContain("default-src 'self'");
    expect(policy).toContain("script-src 'self';");
    expect(policy).toContain("style-src 'self';");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).not.toMatch(/unsafe|https?:/);
  });
});
