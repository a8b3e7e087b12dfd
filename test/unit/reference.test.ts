import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatReference, parseReference, registryHost } from '../../src/images/reference.js';

describe('image references', () => {
  const cases: Array<[string, string]> = [
    ['alpine', 'docker.io/library/alpine:latest'],
    ['alpine:3.20', 'docker.io/library/alpine:3.20'],
    ['python:3.12-slim', 'docker.io/library/python:3.12-slim'],
    ['user/app', 'docker.io/user/app:latest'],
    ['docker.io/library/node:22', 'docker.io/library/node:22'],
    ['index.docker.io/library/node', 'docker.io/library/node:latest'],
    ['ghcr.io/org/app:v1', 'ghcr.io/org/app:v1'],
    ['localhost/app', 'localhost/app:latest'],
    ['127.0.0.1:5000/team/app:dev', '127.0.0.1:5000/team/app:dev'],
    ['localhost:5000/app', 'localhost:5000/app:latest'],
    [`ghcr.io/org/app@sha256:${'a'.repeat(64)}`, `ghcr.io/org/app@sha256:${'a'.repeat(64)}`],
    [`alpine:3.20@sha256:${'b'.repeat(64)}`, `docker.io/library/alpine:3.20@sha256:${'b'.repeat(64)}`],
  ];
  for (const [input, normal] of cases) {
    it(`normalises ${input}`, () => assert.equal(formatReference(parseReference(input)), normal));
  }

  it('rejects malformed references with a clear message', () => {
    for (const bad of ['', 'Alpine', 'a b', 'alpine:', 'alpine@sha256:xyz', 'foo//bar', 'alpine:-bad']) {
      assert.throws(() => parseReference(bad), { code: 'invalidArgument', message: /invalid image reference/ }, bad);
    }
  });

  it('maps Docker Hub to its API host', () => {
    assert.equal(registryHost('docker.io'), 'registry-1.docker.io');
    assert.equal(registryHost('127.0.0.1:5000'), '127.0.0.1:5000');
  });
});
