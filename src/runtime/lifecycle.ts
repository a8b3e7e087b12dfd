import { LifecycleError } from '../errors.js';
import type { SandboxState } from '../spec/sandboxes.js';

/** The operations on a sandbox and the states (spec/sandboxes.ts) each is allowed from. */

export type LifecycleOp = 'exec' | 'stop' | 'start' | 'restart' | 'remove' | 'stats' | 'pause' | 'resume' | 'fork';

/** The states each operation is allowed from (`remove` of a running one needs force). */
const allowed: Record<LifecycleOp, readonly SandboxState[]> = {
  exec: ['running'],
  stats: ['running'],
  stop: ['running', 'paused'],
  start: ['stopped', 'failed'],
  restart: ['running', 'stopped', 'failed'],
  remove: ['stopped', 'failed', 'paused'],
  pause: ['running'],
  resume: ['paused'],
  fork: ['running'],
};

const hint: Partial<Record<LifecycleOp, string>> = {
  exec: 'start it first',
  stats: 'start it first',
  pause: 'only a running sandbox pauses',
  resume: 'only a paused sandbox resumes',
  fork: 'only a running sandbox forks: snapshot a stopped one and create from it',
  start: 'it is already up',
  remove: 'stop it first, or remove it with force',
};

/** Throws a LifecycleError naming the current state when `op` is not allowed in it. */
export function checkTransition(name: string, state: SandboxState, op: LifecycleOp): void {
  if (allowed[op].includes(state)) return;
  const why = state === 'creating' || state === 'starting' || state === 'stopping' ? 'wait until it settles' : hint[op];
  throw new LifecycleError(state, `cannot ${op} sandbox ${name}: it is ${state}${why ? ` (${why})` : ''}`);
}
