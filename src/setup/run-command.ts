import { spawn } from 'node:child_process';
import { VmboxError } from '../errors.js';

/**
 * Runs a build step. Its output is streamed line by line through `onLine`, and
 * the last lines are kept for the error message when it fails.
 */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let partial = '';
    const onChunk = (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        tail.push(l);
        if (tail.length > 30) tail.shift();
        opts.onLine?.(l);
      }
    };
    child.stdout.on('data', onChunk);
    child.stderr.on('data', onChunk);
    child.once('error', (err) =>
      reject(new VmboxError('hostSetup', `cannot run ${cmd}: ${err.message}: run ./vmbox once as root to install it`)),
    );
    child.once('exit', (code) => {
      if (partial) tail.push(partial);
      if (code === 0) resolve();
      else reject(new VmboxError('hostSetup', `${cmd} ${args.join(' ')} failed (exit ${code}):\n${tail.join('\n')}`));
    });
  });
}
