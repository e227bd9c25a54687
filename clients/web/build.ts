import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { build } from 'esbuild';

/**
 * Bundles the browser example into one offline file: `outdir/app.js` (Apollo Client, graphql-ws, the typed
 * documents) beside `outdir/index.html`. `--serve [PORT]` then serves both on 127.0.0.1 (default 5173).
 */

const HERE = __dirname;

export async function buildWebExample(outdir: string): Promise<void> {
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [join(HERE, 'src', 'main.ts')],
    outfile: join(outdir, 'app.js'),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    conditions: ['production'], // Apollo Client's production builds: no dev-only checks and messages
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  copyFileSync(join(HERE, 'index.html'), join(outdir, 'index.html'));
}

const TYPES: Record<string, string> = { '/': 'text/html', '/index.html': 'text/html', '/app.js': 'text/javascript' };

/** Serves the built page and nothing else: a static file server for trying the example. */
export function serveWebExample(outdir: string, port: number, host = '127.0.0.1'): Promise<Server> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const type = TYPES[path];
    if (!type) return void response.writeHead(404).end();
    const file = path === '/' ? 'index.html' : path.slice(1);
    response.writeHead(200, { 'content-type': `${type}; charset=utf-8` }).end(readFileSync(join(outdir, file)));
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

if (require.main === module) {
  const outdir = join(HERE, 'dist');
  const serveAt = process.argv.indexOf('--serve');
  void buildWebExample(outdir).then(async () => {
    console.log(`built ${join(outdir, 'app.js')}`);
    if (serveAt < 0) return;
    const port = Number(process.argv[serveAt + 1] ?? 5173);
    await serveWebExample(outdir, port);
    console.log(`serving http://127.0.0.1:${port}/ (the API must allow this origin: CORS_ORIGINS)`);
  });
}
