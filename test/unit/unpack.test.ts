import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { applyLayer } from '../../src/images/unpack.js';
import { type LayerEntry, tarball } from '../fixtures/image-writer.js';

const tarOf = async (entries: LayerEntry[]) => Readable.from([await tarball(entries)]);

describe('applyLayer', () => {
  const work = mkdtempSync(join(tmpdir(), 'vmbox-unpack-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('applies files, modes, owners, links, whiteouts and opaque directories across layers', async () => {
    const root = join(work, 'r1');
    await applyLayer(
      root,
      await tarOf([
        { name: 'etc/', type: 'directory', mode: 0o755 },
        { name: 'etc/passwd', body: 'root:x:0:0\n', mode: 0o600, uid: 1000 },
        { name: 'a/keep', body: 'k' },
        { name: 'a/gone', body: 'g' },
        { name: 'd/old', body: 'old' },
        { name: 'bin/sh', body: '#!', mode: 0o755 },
        { name: 'bin/ash', type: 'symlink', linkname: 'sh' },
        { name: 'run/fifo', type: 'fifo' },
      ]),
    );
    await applyLayer(
      root,
      await tarOf([
        { name: 'a/.wh.gone' },
        { name: 'd/new', body: 'new' },
        { name: 'd/.wh..wh..opq' },
        { name: 'etc/hard', type: 'link', linkname: 'etc/passwd' },
      ]),
    );
    assert.equal(readFileSync(join(root, 'etc/passwd'), 'utf8'), 'root:x:0:0\n');
    assert.equal(statSync(join(root, 'etc/passwd')).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, 'etc/passwd')).uid, 1000);
    assert.equal(statSync(join(root, 'etc/hard')).ino, statSync(join(root, 'etc/passwd')).ino);
    assert.equal(readlinkSync(join(root, 'bin/ash')), 'sh');
    assert.ok(lstatSync(join(root, 'run/fifo')).isFIFO());
    assert.deepEqual(readdirSync(join(root, 'a')), ['keep']);
    assert.deepEqual(readdirSync(join(root, 'd')), ['new'], 'the opaque marker hid the lower layer only');
  });

  it('keeps hostile entries inside the root: ../ paths, absolute paths, escaping symlinks', async () => {
    const root = join(work, 'r2');
    const host = mkdtempSync(join(tmpdir(), 'vmbox-host-'));
    try {
      await applyLayer(
        root,
        await tarOf([
          { name: '../../../../escape-dotdot', body: 'x' },
          { name: '/abs-escape', body: 'x' },
          { name: 'evil', type: 'symlink', linkname: host },
          { name: 'evil/pwned', body: 'x' },
          { name: 'up', type: 'symlink', linkname: '../../../../../..' },
          { name: `up${host}/pwned2`, body: 'x' },
          { name: 'hl', type: 'link', linkname: '../../../../etc/hostname-not-in-root' },
        ]).catch((e) => {
          throw e;
        }),
      ).catch((err: Error) => {
        // The hardlink to a target outside the root is refused outright.
        assert.match(err.message, /hardlink/);
      });
      assert.deepEqual(readdirSync(host), [], 'nothing was written through the symlinks');
      assert.ok(existsSync(join(root, 'escape-dotdot')));
      assert.ok(existsSync(join(root, 'abs-escape')));
      assert.ok(existsSync(join(root, host, 'pwned')), 'the symlink resolved inside the root');
      assert.ok(existsSync(join(root, host, 'pwned2')));
      assert.equal(existsSync('/escape-dotdot'), false);
      assert.equal(existsSync('/abs-escape'), false);
    } finally {
      rmSync(host, { recursive: true, force: true });
    }
  });
});
