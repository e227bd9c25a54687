import { clientIp } from '../../src/api/rate-limits';

const request = (remoteAddress: string | undefined, xff?: string | string[]) => ({
  socket: { remoteAddress } as never,
  headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
});

describe('clientIp', () => {
  test('When no proxy is trusted, then the socket address is the client, whatever X-Forwarded-For says', () => {
    expect(clientIp(request('198.51.100.1', '203.0.113.9'), 0)).toBe('198.51.100.1');
    expect(clientIp(request('::ffff:198.51.100.1'), 0)).toBe('198.51.100.1');
    expect(clientIp(request('2001:db8::1'), 0)).toBe('2001:db8::1');
  });

  test('When N proxies are trusted, then the N-th address from the right of X-Forwarded-For is the client', () => {
    const chain = 'spoofed, 203.0.113.9, 10.0.0.2';
    expect(clientIp(request('10.0.0.1', chain), 1)).toBe('10.0.0.2');
    expect(clientIp(request('10.0.0.1', chain), 2)).toBe('203.0.113.9');
    expect(clientIp(request('10.0.0.1', ['spoofed, 203.0.113.9', '10.0.0.2']), 2)).toBe('203.0.113.9');
  });

  test('When the header is shorter than the proxy chain, then its leftmost entry; when absent or not an address, the socket', () => {
    expect(clientIp(request('10.0.0.1', '203.0.113.9'), 3)).toBe('203.0.113.9');
    expect(clientIp(request('10.0.0.1'), 1)).toBe('10.0.0.1');
    expect(clientIp(request('10.0.0.1', 'not-an-ip'), 1)).toBe('10.0.0.1');
    expect(clientIp(request('10.0.0.1', ' , '), 1)).toBe('10.0.0.1');
  });
});
