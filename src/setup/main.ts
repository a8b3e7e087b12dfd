/** `npm run setup`: builds the kernel, the agent and the base image if needed. */
import { VmboxError } from '../errors.js';
import { ensureAll } from './assets.js';

try {
  const a = await ensureAll();
  if (process.env.VMBOX_DEBUG) process.stderr.write(`vmbox: assets ready (${a.accel.accel}: ${a.accel.reason})\n`);
} catch (err) {
  process.stderr.write(`vmbox: ${err instanceof VmboxError ? err.message : String(err)}\n`);
  process.exit(1);
}
