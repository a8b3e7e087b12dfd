import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** Names that only the server's side has (the bundle keeps identifiers). */
const FORBIDDEN = [
  /\bQemuProvider\b/,
  /\bQmpClient\b/,
  /\bbuildQemuArgs\b/,
  /\bSandboxManager\b/,
  /\bAgentClient\b/,
  /(from|require\()\s*["']better-sqlite3["']/,
  /(from|require\()\s*["']fastify["']/,
];

describe('layers', () => {
  it('follow the architecture: dependency-cruiser finds no forbidden edge or cycle', () => {
    const r = spawnSync('npx', ['depcruise', 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  describe('the packed SDK', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmbox-pack-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('carries no VMM, runtime or server code in what index.mjs loads', () => {
      const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root, encoding: 'utf8' });
      const tarball = join(dir, out.trim().split('\n').pop() as string);
      execFileSync('tar', ['-xzf', tarball, '-C', dir]);
      const loaded = moduleGraph(join(dir, 'package', 'dist', 'index.mjs'));
      assert.ok(loaded.size >= 1);
      for (const [file, text] of loaded) {
        const found = FORBIDDEN.filter((marker) => marker.test(text));
        assert.deepEqual(found, [], `${file.slice(dir.length)} holds code the SDK must not carry`);
      }
      // The check can fail: the CLI's bundle in the same tarball does hold the driver.
      const all = moduleGraph(join(dir, 'package', 'dist', 'vmbox.mjs'));
      assert.ok([...all.values()].some((t) => /\bQemuProvider\b/.test(t)));
    });

    it('installs with its install scripts on and builds nothing native: the server’s SQLite is an optional peer', () => {
      const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
      assert.ok(tarball, 'packed by the test before');
      const project = join(dir, 'consumer');
      mkdirSync(project);
      writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', join(dir, tarball)], {
        cwd: project,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      const installed = readdirSync(join(project, 'node_modules'));
      assert.ok(installed.includes('vmbox'));
      assert.ok(!installed.includes('better-sqlite3'), `installed: ${installed.join(' ')}`);
      assert.deepEqual(
        installed.filter((p) => existsSync(join(project, 'node_modules', p, 'binding.gyp'))),
        [],
        'no package with a native build',
      );
    });
  });
});

/** Every file an ES module loads, statically or dynamically, by relative path: file → text. */
function moduleGraph(entry: string): Map<string, string> {
  const seen = new Map<string, string>();
  const queue = [entry];
  while (queue.length) {
    const file = queue.pop() as string;
    if (seen.has(file) || !existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    seen.set(file, text);
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) queue.push(resolve(dirname(file), m[1] as string));
  }
  return seen;
}
