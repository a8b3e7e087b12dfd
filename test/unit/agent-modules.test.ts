import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kernelHeaders } from '../../src/setup/agent.js';

const dir = fileURLToPath(new URL('../../agent/', import.meta.url));
const files = readdirSync(dir);
const sources = files.filter((f) => f.endsWith('.c') && f !== 'bare-init.c');
const moduleOf = (file: string) => file.replace(/\.[ch]$/, '');

/**
 * Which module uses which, from the compiled objects' symbols: a module
 * depends on the one that defines a symbol it leaves undefined.
 */
function symbolGraph(out: string): Map<string, Set<string>> {
  const defined = new Map<string, string>();
  const undefinedIn = new Map<string, string[]>();
  for (const c of sources) {
    const obj = join(out, `${moduleOf(c)}.o`);
    execFileSync('musl-gcc', ['-std=gnu11', '-D_GNU_SOURCE', '-isystem', kernelHeaders(out), '-c', '-o', obj, join(dir, c)]);
    const undef: string[] = [];
    for (const line of execFileSync('nm', [obj], { encoding: 'utf8' }).split('\n')) {
      const m = /^\s*(?:[0-9a-f]+)?\s+([A-Za-z])\s+(\S+)$/.exec(line);
      if (!m) continue;
      if (m[1] === 'U') undef.push(m[2] as string);
      else if (m[1] === m[1]?.toUpperCase()) defined.set(m[2] as string, moduleOf(c));
    }
    undefinedIn.set(moduleOf(c), undef);
  }
  const graph = new Map<string, Set<string>>();
  for (const [m, undef] of undefinedIn) {
    graph.set(m, new Set(undef.map((s) => defined.get(s)).filter((d): d is string => d !== undefined && d !== m)));
  }
  return graph;
}

describe('the agent’s modules', () => {
  const out = mkdtempSync(join(tmpdir(), 'vmbox-agent-objs-'));
  after(() => rmSync(out, { recursive: true, force: true }));

  it('use each other without a circle, and none uses main.c', () => {
    const graph = symbolGraph(out);
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (m: string, path: string[]) => {
      if (state.get(m) === 'done') return;
      assert.notEqual(state.get(m), 'visiting', `a circle: ${[...path, m].join(' → ')}`);
      state.set(m, 'visiting');
      for (const d of graph.get(m) ?? []) visit(d, [...path, m]);
      state.set(m, 'done');
    };
    for (const m of graph.keys()) visit(m, []);
    for (const [m, deps] of graph) assert.ok(!deps.has('main'), `${m} uses main.c`);
    assert.ok(graph.get('exec')?.has('chan'), 'exec keeps its state in the channel table');
  });

  it('give every module a header of its own', () => {
    for (const c of sources.filter((f) => f !== 'main.c')) {
      assert.ok(files.includes(`${moduleOf(c)}.h`), `${c} has no ${moduleOf(c)}.h`);
    }
  });
});
