import { after, before } from 'node:test';
import type { SandboxSpecInput } from '../../src/spec/sandbox.js';
import { type TestRuntime, type TestSandbox, testRuntime } from '../fixtures/runtime.js';

/**
 * One runtime (its own home and state) per test file, and one real microVM
 * shared by the file's tests: booted before them, removed after.
 */
export function sharedSandbox(spec: SandboxSpecInput = {}): () => TestSandbox {
  const rt = sharedRuntime();
  let sandbox: TestSandbox | undefined;
  before(async () => {
    sandbox = await rt().create(spec);
  });
  return () => {
    if (!sandbox) throw new Error('the shared sandbox did not boot');
    return sandbox;
  };
}

/** The test file's runtime, made before its tests and closed (every sandbox removed, the home deleted) after. */
export function sharedRuntime(): () => TestRuntime {
  let rt: TestRuntime | undefined;
  before(async () => {
    rt = await testRuntime();
  });
  after(async () => {
    await rt?.close();
  });
  return () => {
    if (!rt) throw new Error('the test runtime did not start');
    return rt;
  };
}

/** A sandbox of its own for one test, removed in finally; its id printed when the test fails. */
export async function withSandbox<T>(rt: TestRuntime, spec: SandboxSpecInput, fn: (s: TestSandbox) => Promise<T>): Promise<T> {
  const s = await rt.create(spec);
  try {
    return await fn(s);
  } catch (err) {
    process.stderr.write(`sandbox ${s.id} (dir ${s.dir}) failed a test\n`);
    throw err;
  } finally {
    await s.remove().catch(() => {});
  }
}
