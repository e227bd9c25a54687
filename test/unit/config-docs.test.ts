import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VARIABLES } from '../../src/config';

/** The configuration is documented in README's table and in .env.example: neither may fall behind the schema. */

const ROOT = join(__dirname, '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const configurationTable = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Security'));
const envExample = readFileSync(join(ROOT, '.env.example'), 'utf8');

describe('configuration documentation', () => {
  test.each(CONFIG_VARIABLES)('When %s is read by the service, then README and .env.example document it', (name) => {
    expect(configurationTable).toContain(`| \`${name}\` |`);
    expect(envExample).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
  });
});
