import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { composeArgv } from '../../src/cli/argv.js';

describe('a command composed from an image and --entrypoint (as docker does)', () => {
  const image = { entrypoint: ['/bin/echo', 'from-entrypoint'], cmd: ['from-cmd'] };
  it('keeps the image’s entrypoint and replaces its cmd with a given command', () => {
    assert.deepEqual(composeArgv(image, undefined, []), ['/bin/echo', 'from-entrypoint', 'from-cmd']);
    assert.deepEqual(composeArgv(image, undefined, ['x']), ['/bin/echo', 'from-entrypoint', 'x']);
  });
  it('replaces the entrypoint and drops the cmd with --entrypoint; an empty one leaves the command alone', () => {
    assert.deepEqual(composeArgv(image, '/bin/sh', []), ['/bin/sh']);
    assert.deepEqual(composeArgv(image, '/bin/sh', ['-c', 'true']), ['/bin/sh', '-c', 'true']);
    assert.deepEqual(composeArgv(image, '', ['ls', '/']), ['ls', '/']);
    assert.deepEqual(composeArgv(image, '', []), []);
  });
});
