import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import semver from 'semver';

/** What the image and a fresh machine rely on: declared Node, runtime dependencies, the test setup. */

const ROOT = join(__dirname, '..', '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; dependencies: Record<string, string> };
const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string; engines?: { node?: unknown } }> };
const dockerfile = read('Dockerfile');
const nvmrcMajor = Number(read('.nvmrc').trim().split('.')[0]);

describe('The Node the project declares', () => {
  it('When every locked package is installed on the lowest Node of each line engines allows, then none refuses it (no EBADENGINE)', () => {
    const lowest = pkg.engines.node.split('||').map((alternative) => semver.minVersion(alternative.trim())?.version ?? alternative);
    const refusals: string[] = [];
    for (const [path, meta] of Object.entries(lock.packages)) {
      const wanted = meta.engines?.node;
      if (!path || typeof wanted !== 'string') continue;
      for (const version of lowest) {
        if (!semver.satisfies(version, wanted)) refusals.push(`${path.replace(/^.*node_modules\//, '')}@${meta.version ?? '?'} wants node ${wanted}, engines allows ${version}`);
      }
    }

    expect(lowest.length).toBeGreaterThan(0);
    expect(refusals).toEqual([]);
  });

  it('When .nvmrc, the Dockerfile and .ci/run name a Node, then it is one line, and one engines allows', () => {
    const images = [...dockerfile.matchAll(/^FROM node:([^\s]+)/gm)].map((m) => m[1]);
    const ciVersion = /^NODE_VERSION=(\S+)$/m.exec(read('.ci/run'))?.[1];

    expect(images.length).toBeGreaterThan(0);
    for (const image of images) expect(image).toMatch(new RegExp(`^${nvmrcMajor}-`));
    expect(ciVersion && semver.major(ciVersion)).toBe(nvmrcMajor);
    expect(semver.satisfies(ciVersion ?? '', pkg.engines.node)).toBe(true);
    expect(semver.satisfies(`${nvmrcMajor}.99.0`, pkg.engines.node)).toBe(true);
  });
});

describe('Runtime dependencies', () => {
  /** Packages a compiled file loads when it runs: value imports, side-effect imports, require() and import(). */
  function packagesLoadedBy(source: string): string[] {
    const specifiers: string[] = [];
    for (const m of source.matchAll(/^\s*(?:import|export)\s+(?!type\b)([^'";]*?)\s*from\s+['"]([^'"]+)['"]/gm)) {
      const clause = m[1]?.trim() ?? '';
      const names = /^\{([^}]*)\}$/.exec(clause)?.[1]?.split(',').map((s) => s.trim()).filter(Boolean);
      if (names && names.length > 0 && names.every((name) => name.startsWith('type '))) continue; // erased by the compiler
      specifiers.push(m[2] as string);
    }
    for (const m of source.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) specifiers.push(m[1] as string);
    for (const m of source.matchAll(/(?<!typeof\s)\b(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g)) specifiers.push(m[1] as string);
    return specifiers
      .filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtinModules.includes(s))
      .map((s) => s.split('/').slice(0, s.startsWith('@') ? 2 : 1).join('/'));
  }

  function tsFiles(dir: string): string[] {
    return readdirSync(dir).flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return tsFiles(path);
      return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
    });
  }

  it('When the service runs from an install without devDependencies, then every package src/ loads is in dependencies', () => {
    const loaded = new Map<string, string>();
    for (const file of tsFiles(join(ROOT, 'src'))) {
      for (const name of packagesLoadedBy(readFileSync(file, 'utf8'))) loaded.set(name, file.slice(ROOT.length + 1));
    }
    const missing = [...loaded].filter(([name]) => !(name in pkg.dependencies)).map(([name, file]) => `${name} (${file})`);

    expect(loaded.has('@prisma/client')).toBe(true); // the generated client is scanned too (npm run generate first)
    expect(loaded.has('graphql')).toBe(true);
    expect(missing).toEqual([]);
    expect(Object.keys(pkg.dependencies)).not.toEqual(expect.arrayContaining(['prisma']));
    expect(Object.keys(pkg.dependencies)).not.toEqual(expect.arrayContaining(['typescript']));
  });

  it("When the image drops the other databases' query compilers, then the ones the generated client loads stay", () => {
    const prune = /find node_modules\/@prisma\/client\/runtime -name '([^']+)' ! -name '([^']+)' -delete/.exec(dockerfile);
    const glob = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    const client = readFileSync(join(ROOT, 'src', 'generated', 'prisma', 'internal', 'class.ts'), 'utf8');
    const loaded = [...client.matchAll(/@prisma\/client\/runtime\/([\w.-]+)/g)].map((m) => m[1] as string).filter((f) => f !== 'client');

    expect(prune).not.toBeNull();
    expect(loaded.length).toBeGreaterThan(0);
    const [, deleted = '', kept = ''] = prune ?? [];
    const removed = loaded.filter((file) => glob(deleted).test(file) && !glob(kept).test(file));
    expect(removed).toEqual([]);
  });
});

describe('The test stage of the Dockerfile', () => {
  /** Programs the suite starts that the node:*-slim image lacks, and the Debian package that brings each. */
  const PACKAGE_OF: Record<string, string> = { chromium: 'chromium', 'redis-server': 'redis-server', 'redis-cli': 'redis-server', curl: 'curl' };
  const IN_THE_IMAGE = new Set(['bash', 'sh', 'node', 'npm']);

  function testSources(dir: string): string[] {
    return readdirSync(dir).flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return testSources(path);
      return path.endsWith('.ts') ? [readFileSync(path, 'utf8')] : [];
    });
  }

  it('When `docker compose run --rm test` runs the suite, then every program the tests start is installed there', () => {
    const stage = /^FROM \S+ AS test\n([\s\S]*?)(?=^FROM )/m.exec(dockerfile)?.[1] ?? '';
    const installed = (/apt-get install ([^&]*)/.exec(stage)?.[1] ?? '').split(/\s+/).filter((word) => word && !word.startsWith('-'));
    const needed = new Set(['chromium']); // the browser tests
    for (const source of testSources(join(ROOT, 'test'))) for (const m of source.matchAll(/\bspawn(?:Sync)?\('([\w-]+)'/g)) needed.add(m[1] as string);
    // The quick tour test pastes the README's steps into bash as they are: their requests are curl commands.
    const readme = read('README.md');
    const tour = readme.slice(readme.indexOf('\n## Quick tour\n'), readme.indexOf('\n## ', readme.indexOf('\n## Quick tour\n') + 1));
    if (/^curl |\$\(curl /m.test(tour)) needed.add('curl');

    expect(installed).toContain('chromium');
    expect([...needed]).toEqual(expect.arrayContaining(['bash', 'redis-server', 'curl']));
    const missing = [...needed].filter((program) => !IN_THE_IMAGE.has(program) && !installed.includes(PACKAGE_OF[program] ?? program));
    expect(missing).toEqual([]);
  });
});

describe('npm test setup (scripts/test-setup.js)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'test-setup-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const setup = (env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [join(ROOT, 'scripts', 'test-setup.js')], { env, encoding: 'utf8', timeout: 30_000 });
  const script = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };

  it('When CHROMIUM_PATH names a missing file, then it stops with how to get Chromium and installs nothing', () => {
    script('apt-get', `echo "$@" >> "${dir}/apt.log"`);

    const result = setup({ PATH: dir, CHROMIUM_PATH: join(dir, 'no-such-chromium') });

    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`CHROMIUM_PATH=${join(dir, 'no-such-chromium')} is not an executable file`);
    expect(result.stderr).toContain('apt-get install chromium');
    expect(() => readFileSync(join(dir, 'apt.log'))).toThrow();
  });

  it('When no Chromium is on PATH and apt-get is not there to install one, then it stops with how to get it', () => {
    const result = setup({ PATH: dir });

    expect(result.status).toBe(1);
    expect(result.stderr).toContain('no chromium or chromium-browser on PATH');
  });

  it('When chromium is on PATH, then it reports its version and path', () => {
    script('chromium', 'echo "Chromium 1.2.3 stand-in"');

    const result = setup({ PATH: dir });

    expect(result.status).toBe(0);
    expect(result.stderr).toContain(`Chromium 1.2.3 stand-in at ${join(dir, 'chromium')}`);
  });

  if (process.getuid?.() === 0) {
    it("When no Chromium is on PATH, as root with apt-get, then it installs Debian's chromium and finds it", () => {
      // A stand-in apt-get: the real one would install a browser on this machine for the length of one test.
      script('apt-get', [`echo "$@" >> "${dir}/apt.log"`, `[ "$1" = install ] && printf '#!/bin/sh\\necho Chromium 9.9 stand-in\\n' > "${dir}/chromium" && /bin/chmod +x "${dir}/chromium"`, 'exit 0'].join('\n'));

      const result = setup({ PATH: dir });

      expect(result.stderr).toContain("installing Debian's chromium with apt-get");
      expect(readFileSync(join(dir, 'apt.log'), 'utf8').trim().split('\n')).toEqual(['update -qq', 'install -y -qq chromium']);
      expect(result.stderr).toContain(`Chromium 9.9 stand-in at ${join(dir, 'chromium')}`);
      expect(result.status).toBe(0);
    });
  }
});
