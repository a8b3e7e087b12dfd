import { after, before } from 'node:test';
import { Sandbox } from '../../src/runtime/sandbox.js';
import type { SandboxSpecInput } from '../../src/spec/sandbox.js';

/**
 * One real microVM shared by the tests of a file: booted before them,
 * destroyed after, its id printed when a test fails so its logs can be found.
 */
export function sharedSandbox(spec: SandboxSpecInput = {}): () => Sandbox {
  let sandbox: Sandbox | undefined;
  before(async () => {
    sandbox = await Sandbox.create(spec);
  });
  after(async () => {
    await sandbox?.destroy();
  });
  return () => {
    if (!sandbox) throw new Error('the shared sandbox did not boot');
    return sandbox;
  };
}

/** A sandbox of its own for one test, destroyed in finally. */
export async function withSandbox<T>(spec: SandboxSpecInput, fn: (s: Sandbox) => Promise<T>): Promise<T> {
  const s = await Sandbox.create(spec);
  try {
    return await fn(s);
  } catch (err) {
    process.stderr.write(`sandbox ${s.id} (dir ${s.dir}) failed a test\n`);
    throw err;
  } finally {
    await s.destroy();
  }
}
