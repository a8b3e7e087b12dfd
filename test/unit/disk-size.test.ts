import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSizeMib } from '../../src/cli/format.js';
import { SpecError } from '../../src/errors.js';
import { validateSpec } from '../../src/spec/sandbox.js';

const limits = { cpus: 4, memoryMib: 8192 };

describe('disk size', () => {
  it('reads --disk sizes in binary units, as MiB', () => {
    assert.equal(parseSizeMib('10G'), 10240);
    assert.equal(parseSizeMib('512M'), 512);
    assert.equal(parseSizeMib('1.5GiB'), 1536);
    assert.equal(parseSizeMib('1t'), 1024 * 1024);
    assert.equal(parseSizeMib('2GB'), 2048);
  });

  it('refuses a size without a unit or a bad one, saying what it expects', () => {
    for (const bad of ['10', '10K', 'G', '-1G', '0G', 'ten']) {
      assert.throws(() => parseSizeMib(bad), /expected a size such as 512M or 10G|more than zero/, bad);
    }
  });

  it('leaves diskMib out by default (the image decides) and bounds it', () => {
    assert.equal(validateSpec({}, limits).diskMib, undefined);
    assert.equal(validateSpec({ diskMib: 10240 }, limits).diskMib, 10240);
    assert.throws(
      () => validateSpec({ diskMib: 2 * 1024 * 1024 }, limits),
      (err: unknown) => err instanceof SpecError && err.field === 'diskMib' && /between 64 and 1048576, got 2097152/.test(err.message),
    );
    assert.throws(
      () => validateSpec({ diskMib: 1.5 }, limits),
      (err: unknown) => err instanceof SpecError && err.field === 'diskMib',
    );
  });
});
