import type { ServerResponse } from 'node:http';

/** Small answers written by hand (health, refusals, the pages' errors): the GraphQL answers go through their own path. */

const JSON_TYPE = 'application/json; charset=utf-8';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': JSON_TYPE, ...headers });
  res.end(JSON.stringify(body));
}

/** Whether Accept-Encoding takes gzip: named (or, if not named, `*`) with a weight above 0; `gzip;q=0` refuses it (RFC 9110). */
export function acceptsGzip(header: string | undefined): boolean {
  const weights = new Map<string, number>();
  for (const entry of (header ?? '').split(',')) {
    const [coding = '', ...params] = entry.split(';').map((part) => part.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    weights.set(coding === 'x-gzip' ? 'gzip' : coding, q === undefined ? 1 : Number(q.slice(2)));
  }
  return (weights.get('gzip') ?? weights.get('*') ?? 0) > 0;
}

/** The Vary header of a response whose encoding depends on Accept-Encoding, beside what it varies on already (Origin). */
export function varyOnEncoding(res: ServerResponse): string {
  return [res.getHeader('vary'), 'accept-encoding'].filter(Boolean).join(', ');
}
