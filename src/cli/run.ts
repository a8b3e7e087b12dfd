import { Command, Option } from 'commander';
import { VmboxError } from '../errors.js';
import type { PullPolicy } from '../sdk/images.js';
import { Sandbox } from '../sdk/sandbox.js';
import { validateSpec } from '../spec/sandbox.js';
import { mark, printTrace } from '../util/trace.js';
import { composeArgv } from './argv.js';
import { connectOptions } from './client.js';
import { addMountFlags, collectFlag, diskFromFlags, type MountFlags, mountsFromFlags } from './mounts.js';
import { addNetworkFlags, type NetworkFlags, networkFromFlags, secretsFromFlags } from './network.js';
import { pullFor } from './pull.js';
import { imageOptions, int, parsePairs } from './sandboxes.js';
import { checkTimeout, streamProcess } from './stream.js';

interface RunOptions extends NetworkFlags, MountFlags {
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
  cold?: boolean;
  entrypoint?: string;
}

/** `vmbox run`: a fresh ephemeral sandbox on the server, one command streamed, then removed. */
export function runCommand(): Command {
  const cmd = new Command('run')
    .description('run a command in a new, throw-away sandbox')
    .option('--image <name>', 'image to start from', 'base')
    .option('--cpus <n>', 'virtual CPUs', int('--cpus'))
    .option('--memory <mib>', 'memory in MiB', int('--memory'))
    .option(
      '--disk <SIZE|FILE:DST[:OPTS]>',
      "root disk size, e.g. 10G (default: the image's, 2G for base); or a host disk image (qcow2, raw, vmdk) mounted at DST (repeatable)",
      collectFlag,
      [],
    )
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('-w, --workdir <dir>', 'working directory in the guest')
    .option('-u, --user <user>', 'user name, uid, or uid:gid')
    .option('-i, --interactive', 'pass stdin to the command')
    .option('--entrypoint <program>', "run this instead of the image’s entrypoint (and its default command); '' runs the command alone")
    .addOption(new Option('--timeout <seconds>', 'kill the command after this long').argParser(Number))
    .addOption(new Option('--pull <policy>', 'when to pull the image').choices(['if-missing', 'always', 'never']).default('if-missing'))
    .option('--platform <os/arch>', 'platform to pull from a multi-platform image')
    .option('--insecure', 'talk to the image’s registry over plain HTTP (loopback registries)')
    .option('--cold', 'boot, even when the image has a warm-start template')
    .argument('[command...]', 'the command and its arguments, after --')
    .passThroughOptions();
  return addNetworkFlags(addMountFlags(cmd), { ports: false, secrets: true }).action(async (command: string[], opts: RunOptions) => {
    process.exitCode = await run(command, opts);
  });
}

async function run(command: string[], opts: RunOptions): Promise<number> {
  const network = networkFromFlags(opts);
  const secrets = secretsFromFlags(opts);
  const spec = {
    ...(secrets ? { secrets } : {}),
    ...(network ? { network } : {}),
    image: opts.image,
    cpus: opts.cpus,
    memoryMib: opts.memory,
    ...diskFromFlags(opts.disk ?? []),
    env: parsePairs('-e', opts.env),
    workdir: opts.workdir,
    user: opts.user,
    ...mountsFromFlags(opts),
  };
  validateSpec(spec); // bad input fails before any pull or boot
  // The server pulls (progress shown here) and says what the image runs; the
  // argv is composed as docker run does (entrypoint, then the command or cmd).
  const image = await pullFor(opts.image, opts);
  const argv = composeArgv(image, opts.entrypoint, command);
  if (argv.length === 0) throw new VmboxError('invalidArgument', 'empty command: give one after --, e.g. vmbox run -- echo hello');
  checkTimeout(opts.timeout);

  // The server makes a sandbox for this one command, owned by this
  // connection: it is removed when the command ends or this process goes
  // away, however it goes (Ctrl-C or kill -9, mid-boot too).
  try {
    return await streamProcess(
      ({ onStdout, onStderr, signal, ...exec }) =>
        Sandbox.runOnce(argv, {
          ...spec,
          ...imageOptions(opts),
          ...(opts.cold ? { warm: false } : {}),
          ...connectOptions,
          exec,
          onStdout,
          onStderr,
          signal,
          onCreated: () => mark('sandbox created'),
        }),
      { ...opts, env: {} },
    );
  } finally {
    printTrace();
  }
}
