import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CloseCode } from 'graphql-ws';
import { API_REFERENCE_FILE, schemaBlock } from '../../src/api/api-reference';
import { printedSchema, SCHEMA_FILE } from '../../src/api/emit-schema';
import { ERROR_CODES } from '../../src/api/errors';
import { CONFIG_VARIABLES } from '../../src/config';

/**
 * docs/API.md is the contract clients read: it must say what the code does. Its schema block is the schema the
 * code builds, and its tables name every error code, WebSocket close code and configuration variable in use.
 */

const ROOT = join(__dirname, '..', '..');
const reference = readFileSync(API_REFERENCE_FILE, 'utf8');

/** The text of the section under `## title`, up to the next `## ` heading. */
function section(title: string): string {
  const start = reference.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`docs/API.md has no "## ${title}" section`);
  const end = reference.indexOf('\n## ', start + 1);
  return reference.slice(start, end < 0 ? undefined : end);
}

/** The first cells of a section's table rows: `| \`X\` |` gives X, `| 4403 |` gives 4403. */
function firstCells(text: string): string[] {
  return [...text.matchAll(/^\| `?([^`|\s]+)`? \|/gm)].map((m) => m[1] as string);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const SOURCES = sourceFiles(join(ROOT, 'src')).map((path) => readFileSync(path, 'utf8'));
const closeCodeOf = (name: string): number => {
  const code = (CloseCode as unknown as Record<string, number>)[name];
  if (typeof code !== 'number') throw new Error(`graphql-ws has no CloseCode.${name}`);
  return code;
};

/**
 * Every close code the server can send: those written in src/ (constants, literals, graphql-ws's CloseCode
 * members), those graphql-ws's server core (makeServer, which src/api/ws-transport.ts runs) sends, and those the
 * `ws` library sends by itself: 1002 for a malformed frame, 1009 past `maxPayload`.
 */
function serverCloseCodes(): number[] {
  const codes = new Set<number>([1002, 1009]);
  for (const text of SOURCES) {
    for (const m of text.matchAll(/\bCLOSE_[A-Z_]+ = (\d{4})\b/g)) codes.add(Number(m[1]));
    for (const m of text.matchAll(/\.close\((\d{4})\b/g)) codes.add(Number(m[1]));
    for (const m of text.matchAll(/\bCloseCode\.(\w+)/g)) codes.add(closeCodeOf(m[1] as string));
  }
  const dist = dirname(require.resolve('graphql-ws'));
  for (const file of readdirSync(dist).filter((name) => /^server-.*\.c?js$/.test(name))) {
    for (const m of readFileSync(join(dist, file), 'utf8').matchAll(/\bCloseCode\.(\w+)/g)) codes.add(closeCodeOf(m[1] as string));
  }
  return [...codes].sort();
}

/** Every extensions.code written in src/ (`code: 'X'`), besides the list the error formatter maps into. */
function emittedErrorCodes(): string[] {
  const codes = new Set<string>(ERROR_CODES);
  for (const text of SOURCES) for (const m of text.matchAll(/\bcode: '([A-Z_]+)'/g)) codes.add(m[1] as string);
  return [...codes].sort();
}

const FIX_SCHEMA = 'run `npm run schema`: it writes schema.graphql and the schema block of docs/API.md from the code; then commit both';

describe('API reference (docs/API.md)', () => {
  test('When the schema is built from the code, then the schema block of docs/API.md is that schema, as schema.graphql is', async () => {
    const block = schemaBlock(reference);
    if (block === null) throw new Error(`docs/API.md lost its schema block markers: ${FIX_SCHEMA}`);
    const built = await printedSchema();
    if (block !== built) throw new Error(`the schema block of docs/API.md differs from the schema the code builds: ${FIX_SCHEMA}`);
    if (readFileSync(SCHEMA_FILE, 'utf8') !== built) throw new Error(`schema.graphql differs from the schema the code builds: ${FIX_SCHEMA}`);
  });

  test('When an error code can leave the server, then the error table names it', () => {
    const documented = firstCells(section('Errors'));
    const codes = emittedErrorCodes();
    expect(codes).toEqual(expect.arrayContaining([...ERROR_CODES])); // the scan sees the formatter's list
    expect(codes.filter((code) => !documented.includes(code))).toEqual([]);
    expect(codes.filter((code) => !(ERROR_CODES as readonly string[]).includes(code))).toEqual([]); // no code outside the contract
  });

  test('When the server can close a WebSocket with a code, then the close-code table names it', () => {
    const documented = firstCells(section('WebSocket protocol')).map(Number);
    const codes = serverCloseCodes();
    expect(codes).toEqual(expect.arrayContaining([1001, 1009, 4403, 4429, 4503])); // the scan finds what it must
    expect(codes.filter((code) => !documented.includes(code))).toEqual([]);
  });

  test('When the service reads a configuration variable, then the configuration table names it', () => {
    const documented = firstCells(section('Configuration'));
    expect(CONFIG_VARIABLES.filter((name) => !documented.includes(name))).toEqual([]);
  });

  test('When the reference links a file of the repository, then the file exists', () => {
    const links = [...reference.matchAll(/\]\((\.\.\/[^)#\s]+|[^):#\s]+\.[a-z]+)(#[^)]*)?\)/g)].map((m) => m[1] as string);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(() => readFileSync(join(dirname(API_REFERENCE_FILE), link))).not.toThrow();
  });
});
