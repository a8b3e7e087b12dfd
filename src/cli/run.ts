import { Command, InvalidArgumentError, Option } from 'commander';
import { resolveImage } from '../images/catalog.js';
import type { PullPolicy } from '../images/pull.js';
import { Sandbox } from '../runtime/sandbox.js';
import { validateSpec } from '../spec/sandbox.js';
import { mark, printTrace } from '../util/trace.js';
import { insecureFor, pullProgress } from './pull.js';

interface RunOptions {
  image: string;
  cpus?: number;
  memory?: number;
  env: string[];
  workdir?: string;
  user?: string;
  interactive?: boolean;
  timeout?: number;
  pull?: PullPolicy;
  platform?: string;
  insecure?: boolean;
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
    .addOption(new Option('--pull <policy>', 'when to pull the image').choices(['if-missing', 'always', 'never']).default('if-missing'))
    .option('--platform <os/arch>', 'platform to pull from a multi-platform image')
    .option('--insecure', 'talk to the image’s registry over plain HTTP (loopback registries)')
    .argument('[command...]', 'the command and its arguments, after --')
    .passThroughOptions()
    .action(async (command: string[], opts: RunOptions) => {
      process.exitCode = await run(command, opts);
    });
}

async function run(command: string[], opts: RunOptions): Promise<number> {
  const spec = {
    image: opts.image,
    cpus: opts.cpus,
    memoryMib: opts.memory,
    env: parseEnv(opts.env),
    workdir: opts.workdir,
    user: opts.user,
  };
  validateSpec(spec); // bad input fails before any pull or boot
  // As docker run: the image's entrypoint, then the given command or else the image's cmd.
  const pull = { policy: opts.pull, platform: opts.platform, insecure: insecureFor(opts.image, opts.insecure), ...pullProgress() };
  const image = await resolveImage(opts.image, pull);
  const argv = [...image.config.entrypoint, ...(command.length > 0 ? command : image.config.cmd)];
  if (argv.length === 0) throw new Error('empty command: give one after --, e.g. vmbox run -- echo hello');
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
    sandbox = await Sandbox.create(spec, { signal: abort.signal, image });
    if (interrupted) return exitForSignal(interrupted);
    const proc = sandbox.exec(argv, {
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

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of pairs) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`-e ${kv}: expected KEY=VALUE`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
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
