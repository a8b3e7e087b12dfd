import { Command, InvalidArgumentError, Option } from 'commander';
import { Sandbox } from '../runtime/sandbox.js';
import { mark, printTrace } from '../util/trace.js';

interface RunOptions {
  image: string;
  cpus?: number;
  memory?: number;
  env: string[];
  workdir?: string;
  user?: string;
  interactive?: boolean;
  timeout?: number;
}

const int = (name: string) => (v: string) => {
  if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return Number(v);
};

/** `vmbox run`: boot a fresh sandbox, run one command, stream its output, remove everything. */
export function runCommand(): Command {
  return new Command('run')
    .description('run a command in a new, throw-away sandbox')
    .option('--image <name>', 'image to start from', 'base')
    .option('--cpus <n>', 'virtual CPUs', int('--cpus'))
    .option('--memory <mib>', 'memory in MiB', int('--memory'))
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('-w, --workdir <dir>', 'working directory in the guest')
    .option('-u, --user <user>', 'user name, uid, or uid:gid')
    .option('-i, --interactive', 'pass stdin to the command')
    .addOption(new Option('--timeout <seconds>', 'kill the command after this long').argParser(Number))
    .argument('[command...]', 'the command and its arguments, after --')
    .passThroughOptions()
    .action(async (command: string[], opts: RunOptions) => {
      process.exitCode = await run(command, opts);
    });
}

async function run(command: string[], opts: RunOptions): Promise<number> {
  if (command.length === 0) throw new Error('empty command: give one after --, e.g. vmbox run -- echo hello');
  const env: Record<string, string> = {};
  for (const kv of opts.env) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`-e ${kv}: expected KEY=VALUE`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  if (opts.timeout !== undefined && !(opts.timeout > 0)) throw new Error('--timeout must be a positive number of seconds');

  // Ctrl-C (or a TERM) mid-boot or mid-command: tear down, leave nothing behind.
  const abort = new AbortController();
  let sandbox: Sandbox | undefined;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = sig;
    abort.abort();
    sandbox?.vm.stop({ timeoutMs: 0 });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    sandbox = await Sandbox.create(
      { image: opts.image, cpus: opts.cpus, memoryMib: opts.memory, env, workdir: opts.workdir, user: opts.user },
      { signal: abort.signal },
    );
    if (interrupted) return exitForSignal(interrupted);
    const proc = sandbox.exec(command, {
      stdin: opts.interactive ?? false,
      timeoutMs: opts.timeout ? Math.round(opts.timeout * 1000) : undefined,
      onStdout: (d) => writeWithBackpressure(process.stdout, d),
      onStderr: (d) => writeWithBackpressure(process.stderr, d),
    });
    if (opts.interactive) pumpStdin(proc);
    const exit = await proc.exit.catch((err) => {
      if (interrupted) return undefined;
      throw err;
    });
    mark('command done');
    if (!exit) return exitForSignal(interrupted ?? 'SIGINT');
    if (exit.timedOut) {
      process.stderr.write(`vmbox: command timed out after ${opts.timeout} s and was killed\n`);
      return 124;
    }
    return exit.exitCode;
  } catch (err) {
    if (interrupted) return exitForSignal(interrupted);
    throw err;
  } finally {
    await sandbox?.destroy();
    printTrace();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
function exitForSignal(sig: NodeJS.Signals): number {
  return 128 + (signalNumbers[sig] ?? 2);
}

function writeWithBackpressure(stream: NodeJS.WriteStream, data: Buffer): Promise<void> | undefined {
  if (stream.write(data)) return undefined;
  return new Promise((resolve) => stream.once('drain', () => resolve()));
}

function pumpStdin(proc: { write(d: Uint8Array): Promise<void>; closeStdin(): void }): void {
  (async () => {
    for await (const chunk of process.stdin) await proc.write(chunk as Buffer);
    proc.closeStdin();
  })().catch(() => {});
}
