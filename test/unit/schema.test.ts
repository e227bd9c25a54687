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

  test('When codegen runs on the committed schema, then it produces the committed typed documents, for client apps and for the tests', () => {
    // The codegen CLI is ESM-only: run it as users do, in a scratch copy, and compare what it writes.
    const scratch = mkdtempSync(join(tmpdir(), 'codegen-'));
    try {
      for (const path of ['schema.graphql', 'codegen.ts', 'test/graphql', 'clients/operations']) cpSync(join(ROOT, path), join(scratch, path), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules'), join(scratch, 'node_modules'));
      execFileSync(process.execPath, [join(ROOT, 'node_modules', '@graphql-codegen', 'cli', 'esm', 'bin.js'), '--config', 'codegen.ts', '--silent'], { cwd: scratch, stdio: 'pipe' });

      for (const output of ['clients/generated', 'test/generated']) {
        const files = readdirSync(join(ROOT, output)).sort();
        expect(readdirSync(join(scratch, output)).sort()).toEqual(files);
        for (const file of files) {
          const generated = (root: string) => `${output}/${file}\n${readFileSync(join(root, output, file), 'utf8')}`;
          expect(generated(scratch)).toBe(generated(ROOT));
        }
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
