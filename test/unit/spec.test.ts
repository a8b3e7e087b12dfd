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

describe('validateSpec: mounts, hostname, rlimits', () => {
  const refused = (input: object, field: string, why: RegExp) => {
    assert.throws(
      () => validateSpec(input),
      (e: unknown) => e instanceof SpecError && e.field === field && why.test(e.message),
      `${JSON.stringify(input)} → ${field}`,
    );
  };
  const bind = (target: string) => ({ type: 'bind', source: '/srv', target });

  it('keeps good mounts, a hostname and limits', () => {
    const spec = validateSpec({
      mounts: [
        bind('/work'),
        { type: 'volume', source: 'cache', target: '/c', readOnly: true },
        { type: 'tmpfs', target: '/t', sizeMib: 64 },
      ],
      hostname: 'dev1',
      rlimits: { nofile: { soft: 1024, hard: 4096 }, core: { soft: 0, hard: -1 } },
    });
    assert.equal(spec.mounts?.length, 3);
  });

  it('names the field of a bad mount, not the union', () => {
    refused({ mounts: [bind('relative')] }, 'mounts.0.target', /absolute path/);
    refused({ mounts: [{ type: 'tmpfs', target: '/t' }] }, 'mounts.0.sizeMib', /./);
    refused({ mounts: [{ type: 'nfs', target: '/t' }] }, 'mounts.0.type', /bind, volume, disk or tmpfs/);
    refused({ mounts: [{ type: 'volume', source: 'bad name', target: '/t' }] }, 'mounts.0.source', /must match/);
  });

  it('refuses reserved, duplicate and oversized targets, and soft above hard', () => {
    for (const t of ['/', '/proc', '/sys/kernel', '/dev']) refused({ mounts: [bind(t)] }, 'mounts.0.target', /guest's own system/);
    refused({ mounts: [bind('/a'), bind('/a/../a/')] }, 'mounts.1.target', /mounts\.0's target too/);
    refused({ memoryMib: 256, mounts: [{ type: 'tmpfs', target: '/t', sizeMib: 512 }] }, 'mounts.0.sizeMib', /at most memoryMib \(256\)/);
    refused({ rlimits: { nofile: { soft: 10, hard: 5 } } }, 'rlimits.nofile', /soft \(10\) is above hard \(5\)/);
    refused({ rlimits: { nofile: { soft: -1, hard: 5 } } }, 'rlimits.nofile', /above hard/);
    refused({ rlimits: { nofiles: { soft: 1, hard: 1 } } }, 'rlimits.nofiles', /not a known field/);
    refused({ hostname: 'bad_host' }, 'hostname', /must match/);
  });
});
