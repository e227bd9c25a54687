import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { printedSchema, SCHEMA_FILE } from '../../src/api/emit-schema';

/** The committed schema and typed documents are what the code produces: run `npm run codegen` when this fails. */

const ROOT = join(__dirname, '..', '..');

describe('schema and codegen', () => {
  test('When the schema is emitted from the code, then it equals the committed schema.graphql', async () => {
    expect(await printedSchema()).toBe(readFileSync(SCHEMA_FILE, 'utf8'));
  });

  test('When codegen runs on the committed schema, then it produces the committed typed documents', () => {
    // The codegen CLI is ESM-only: run it as users do, in a scratch copy, and compare what it writes.
    const scratch = mkdtempSync(join(tmpdir(), 'codegen-'));
    try {
      for (const path of ['schema.graphql', 'codegen.ts', 'test/graphql']) cpSync(join(ROOT, path), join(scratch, path), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules'), join(scratch, 'node_modules'));
      execFileSync(process.execPath, [join(ROOT, 'node_modules', '@graphql-codegen', 'cli', 'esm', 'bin.js'), '--config', 'codegen.ts', '--silent'], { cwd: scratch, stdio: 'pipe' });

      const files = readdirSync(join(ROOT, 'test', 'generated')).sort();
      expect(readdirSync(join(scratch, 'test', 'generated')).sort()).toEqual(files);
      for (const file of files) {
        expect(readFileSync(join(scratch, 'test', 'generated', file), 'utf8')).toBe(readFileSync(join(ROOT, 'test', 'generated', file), 'utf8'));
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
