import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpecError } from '../../src/errors.js';
import { validateSpec } from '../../src/spec/sandbox.js';

const limits = { cpus: 4, memoryMib: 8192 };
const fails = (input: unknown, field: string, pattern: RegExp) => {
  assert.throws(
    () => validateSpec(input, limits),
    (err: unknown) => err instanceof SpecError && err.field === field && pattern.test(err.message),
  );
};

describe('validateSpec', () => {
  it('applies the defaults: base image, 1 vCPU, 512 MiB', () => {
    assert.deepEqual(validateSpec({}, limits), { image: 'base', cpus: 1, memoryMib: 512, env: {} });
  });

  it('keeps valid fields', () => {
    const s = validateSpec({ cpus: 4, memoryMib: 64, env: { A_1: 'x' }, workdir: '/tmp', user: '1000:1000', command: ['ls'] }, limits);
    assert.equal(s.cpus, 4);
    assert.equal(s.user, '1000:1000');
  });

  it('names the field and the range for cpus', () => {
    fails({ cpus: 0 }, 'cpus', /at least 1, got 0/);
    fails({ cpus: 5 }, 'cpus', /between 1 and 4 .*got 5/);
    fails({ cpus: 1.5 }, 'cpus', /integer/);
  });

  it('names the field and the range for memory', () => {
    fails({ memoryMib: 63 }, 'memoryMib', /at least 64, got 63/);
    fails({ memoryMib: 9000 }, 'memoryMib', /between 64 and 8192 MiB/);
  });

  it('rejects unknown fields, empty commands, relative workdirs and bad env names', () => {
    fails({ cpu: 1 }, 'cpu', /not a known field/);
    fails({ command: [] }, 'command', /not be empty/);
    fails({ workdir: 'tmp' }, 'workdir', /absolute path/);
    fails({ env: { 'A-B': '1' } }, 'env.A-B', /./);
    fails('nope', 'spec', /object/);
  });
});
