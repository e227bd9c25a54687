import { get, type IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';

/** A response as a client sees it, headers included (Retry-After, CORS), for requests refused early. */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

/** POST /graphql with any headers (a token, X-Forwarded-For, Origin). */
export async function postGraphQL(baseUrl: string, query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<RawResponse> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as RawResponse['body'] };
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** A WebSocket upgrade to /graphql: 'open', or the HTTP status and headers of a refused upgrade. */
export function upgrade(baseUrl: string, headers: Record<string, string> = {}): Promise<{ status: number; retryAfter: string | undefined } | 'open'> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { headers });
    socket.once('open', () => {
      socket.close();
      resolve('open');
    });
    socket.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
      res.resume();
      socket.terminate();
    });
    socket.once('error', (error) => reject(error));
  });
}

/** Connects with connection_init carrying the token, and reports how the server closed the socket. */
export function closeCodeAfterInit(baseUrl: string, token: string): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    socket.once('error', reject);
  });
}

/** A GET as sent, without fetch's own Accept-Encoding and decoding: the body as the bytes arrived. */
export function httpGet(url: string, headers: Record<string, string>): Promise<{ headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    }).on('error', reject);
  });
}
