import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { acceptsGzip, sendJson, varyOnEncoding } from '../api/http-responses';

/**
 * GET /dashboard: a live page of the sales, served from the app with everything it runs (no CDN, no outside
 * request). The page is static: it reads the public API like any client (promotions over HTTP, promotionStock
 * over graphql-ws) and, with an admin token typed in, the admin queries. Nothing here runs on POST /graphql.
 */

interface Asset {
  type: string;
  body: Buffer;
  gzipped: Buffer;
  etag: string;
  cacheControl: string;
}

const SOURCES = join(__dirname, 'dashboard');

/**
 * graphql-ws's own browser build, the library the server speaks: its client brings the protocol, keep-alive,
 * retries with backoff and re-subscription after a reconnect, in step with the server's version.
 */
const GRAPHQL_WS_UMD = join(dirname(require.resolve('graphql-ws')), '..', 'umd', 'graphql-ws.min.js');

/** Scripts and styles, under names carrying their content hash: cached for good, and a deploy never mixes versions. */
const FILES: Record<string, { path: string; type: string }> = {
  'graphql-ws.js': { path: GRAPHQL_WS_UMD, type: 'text/javascript; charset=utf-8' },
  'charts.js': { path: join(SOURCES, 'charts.js'), type: 'text/javascript; charset=utf-8' },
  'dashboard.js': { path: join(SOURCES, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  'dashboard.css': { path: join(SOURCES, 'dashboard.css'), type: 'text/css; charset=utf-8' },
};

function asset(body: Buffer, type: string, cacheControl: string): Asset {
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { type, body, gzipped: gzipSync(body), etag, cacheControl };
}

interface Dashboard {
  page: Asset;
  assets: Map<string, Asset>;
}

function load(): Dashboard {
  const assets = new Map<string, Asset>();
  let html = readFileSync(join(SOURCES, 'index.html'), 'utf8');
  for (const [name, file] of Object.entries(FILES)) {
    const built = asset(readFileSync(file.path), file.type, 'public, max-age=31536000, immutable');
    const dot = name.lastIndexOf('.');
    const hashed = `${name.slice(0, dot)}.${built.etag.slice(1, 11)}${name.slice(dot)}`;
    assets.set(`/dashboard/${hashed}`, built);
    html = html.replaceAll(`{{${name}}}`, `/dashboard/${hashed}`);
  }
  return { page: asset(Buffer.from(html), 'text/html; charset=utf-8', 'no-cache'), assets };
}

let dashboard: Dashboard | null = null;

/** A Host header fit to name in the policy (a name or address, and a port); anything else gets 'self' only. */
const PLAIN_HOST = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * No inline script or style, nothing from another origin. The WebSocket is named with the page's own host:
 * 'self' covers ws: and wss: in CSP 3 only, and older browsers would refuse the socket.
 */
export function contentSecurityPolicy(host: string | undefined): string {
  const sockets = host && PLAIN_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self'${sockets}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Answers /dashboard and its assets; false when the path is not one of them. Files are read once per process. */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
  dashboard ??= load();
  const found = path === '/dashboard' ? dashboard.page : dashboard.assets.get(path);
  if (!found) {
    sendJson(res, 404, { error: 'not found' });
    return true;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
    return true;
  }
  const headers: Record<string, string> = {
    'content-type': found.type,
    'cache-control': found.cacheControl,
    etag: found.etag,
    vary: varyOnEncoding(res),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  if (found === dashboard.page) headers['content-security-policy'] = contentSecurityPolicy(req.headers.host);
  if (req.headers['if-none-match'] === found.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const gzip = acceptsGzip(req.headers['accept-encoding']);
  const body = gzip ? found.gzipped : found.body;
  if (gzip) headers['content-encoding'] = 'gzip';
  headers['content-length'] = String(body.length);
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
