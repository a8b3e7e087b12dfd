import { Command, InvalidArgumentError, Option } from 'commander';
import { VmboxError } from '../errors.js';
import { sandboxPath } from '../sdk/paths.js';
import type { SandboxInfo, SandboxState } from '../sdk/sandbox.js';
import { Sandbox } from '../sdk/sandbox.js';
import { validateSpec } from '../spec/sandbox.js';
import { composeArgv } from './argv.js';
import { connectOptions, openConnection, sandboxHandle } from './client.js';
import { humanDuration, parseDuration, parseSizeMib, table } from './format.js';
import { addMountFlags, collectFlag, diskFromFlags, type MountFlags, mountsFromFlags } from './mounts.js';
import { addNetworkFlags, type NetworkFlags, networkFromFlags, parsePublish, secretsFromFlags } from './network.js';
import { type PullFlags, pullFor } from './pull.js';

const collect = (v: string, acc: string[]) => [...acc, v];
export const int = (name: string) => (v: string) => {
  if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return Number(v);
};
const duration = (v: string) => {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};
/** Docker's spelling: `no`, `on-failure` or `on-failure:N`. */
const restartFlag = (v: string): { restart: 'no' | 'on-failure'; maxRestarts?: number } => {
  const m = /^(no|on-failure)(?::(\d+))?$/.exec(v);
  if (!m || (m[1] === 'no' && m[2])) throw new InvalidArgumentError('expected no, on-failure or on-failure:N');
  return { restart: m[1] as 'no' | 'on-failure', ...(m[2] ? { maxRestarts: Number(m[2]) } : {}) };
};
export const size = (v: string) => {
  try {
    return parseSizeMib(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

export function parsePairs(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of pairs) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new VmboxError('invalidArgument', `${flag} ${kv}: expected KEY=VALUE`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/**
 * The create's image options once `pullFor` has pulled: the image is on the
 * server now, so only a `never` stays strict (no second pull for `always`).
 */
export function imageOptions(f: PullFlags): { pull: 'if-missing' | 'never'; platform?: string; insecure?: boolean } {
  return { pull: f.pull === 'never' ? 'never' : 'if-missing', platform: f.platform, insecure: f.insecure };
}

interface CreateOnlyFlags extends NetworkFlags {
  name?: string;
  image: string;
  cpus?: number;
  memory?: number;
  env: string[];
  label: string[];
  workdir?: string;
  user?: string;
  maxDuration?: number;
  idleTimeout?: number;
  ephemeral?: boolean;
  metricsInterval?: number;
  pull?: 'if-missing' | 'always' | 'never';
  platform?: string;
  insecure?: boolean;
  entrypoint?: string;
  fromSnapshot?: string;
  onIdle?: 'stop' | 'pause';
  onTimeout?: 'stop' | 'pause';
  restart?: { restart: 'no' | 'on-failure'; maxRestarts?: number };
  cold?: boolean;
}

type CreateFlags = CreateOnlyFlags & MountFlags;

/** `vmbox create`: a named sandbox that keeps running. */
export function createCommand(): Command {
  const cmd = new Command('create')
    .description('create and start a sandbox that keeps running')
    .option('--name <name>', 'unique name (default: derived from the id)')
    .option('--image <name>', 'image to start from', 'base')
    .option('--cpus <n>', 'virtual CPUs', int('--cpus'))
    .option('--memory <mib>', 'memory in MiB', int('--memory'))
    .option(
      '--disk <SIZE|FILE:DST[:OPTS]>',
      "root disk size, e.g. 10G (default: the image's, 2G for base); or a host disk image (qcow2, raw, vmdk) mounted at DST (repeatable)",
      collectFlag,
      [],
    )
    .option('-e, --env <KEY=VALUE>', 'environment of every command (repeatable)', collect, [])
    .option('-l, --label <KEY=VALUE>', 'label (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory of commands')
    .option('-u, --user <user>', 'user of commands')
    .option('--max-duration <time>', 'stop after this long, e.g. 1h', duration)
    .option('--idle-timeout <time>', 'stop after this long without activity, e.g. 10m', duration)
    .addOption(
      new Option('--on-idle <action>', 'what the idle timeout does (pause: resumed by the next connect)').choices(['stop', 'pause']),
    )
    .addOption(
      new Option('--on-timeout <action>', 'what reaching --max-duration does (pause: resumed by the next connect)').choices([
        'stop',
        'pause',
      ]),
    )
    .option('--restart <policy>', 'on-failure[:N]: start a failed sandbox again, at most N times in 10 minutes (default 3)', restartFlag)
    .option(
      '--from-snapshot <snapshot>',
      'restore a snapshot: its processes, memory and files (name, labels, policies, env and network may change)',
    )
    .option('--cold', 'boot, even when the image has a warm-start template')
    .option('--ephemeral', 'remove the sandbox entirely when it stops')
    .option('--metrics-interval <time>', 'metrics sampling interval (0 turns it off)', (v) => (v === '0' ? 0 : duration(v)))
    .addOption(new Option('--pull <policy>', 'when to pull the image').choices(['if-missing', 'always', 'never']).default('if-missing'))
    .option('--platform <os/arch>', 'platform to pull from a multi-platform image')
    .option('--insecure', 'talk to the image’s registry over plain HTTP (loopback registries)')
    .option(
      '--entrypoint <program>',
      'with a command after --: the sandbox’s default command, run by `vmbox exec NAME` (as docker composes it)',
    )
    .argument('[command...]', 'the default command and its arguments, after --')
    .passThroughOptions();
  return addNetworkFlags(addMountFlags(cmd), { ports: true, secrets: true }).action(async (command: string[], f: CreateFlags) => {
    if (f.fromSnapshot) return createFromSnapshot(cmd, f);
    const spec = specFromFlags(f);
    validateSpec(spec);
    const image = await pullFor(f.image, f);
    // A sandbox has no main process: what docker would run as one becomes its
    // default command, which `vmbox exec NAME` runs when given none.
    const argv = f.entrypoint !== undefined || command.length > 0 ? composeArgv(image, f.entrypoint, command) : [];
    const sbx = await Sandbox.create({
      ...spec,
      ...(argv.length ? { command: argv } : {}),
      ...imageOptions(f),
      ...(f.cold ? { warm: false } : {}),
      ...connectOptions,
    });
    announce(sbx, spec.ports);
  });
}

/** The spec `create`'s flags say. */
function specFromFlags(f: CreateFlags) {
  const network = networkFromFlags(f);
  const secrets = secretsFromFlags(f);
  return {
    ...(secrets ? { secrets } : {}),
    ...(network ? { network } : {}),
    ...(f.publish?.length ? { ports: f.publish.map((p) => ({ hostPort: 0, ...parsePublish(p) })) } : {}),
    name: f.name,
    image: f.image,
    cpus: f.cpus,
    memoryMib: f.memory,
    ...diskFromFlags(f.disk ?? []),
    env: parsePairs('-e', f.env),
    labels: parsePairs('--label', f.label),
    workdir: f.workdir,
    user: f.user,
    maxDurationMs: f.maxDuration,
    idleTimeoutMs: f.idleTimeout,
    onIdle: f.onIdle,
    onTimeout: f.onTimeout,
    ...f.restart,
    ephemeral: f.ephemeral,
    metricsIntervalMs: f.metricsInterval,
    ...mountsFromFlags(f),
  };
}

/**
 * `vmbox create --from-snapshot`: only what the user gave goes with the restore
 * (the rest is the snapshot's; the server refuses what a restore cannot change).
 */
async function createFromSnapshot(cmd: Command, f: CreateFlags): Promise<void> {
  const { image, env, labels, ...rest } = specFromFlags(f);
  const spec = {
    ...rest,
    snapshot: f.fromSnapshot,
    ...(cmd.getOptionValueSource('image') === 'cli' ? { image } : {}),
    ...(f.env.length ? { env } : {}),
    ...(f.label.length ? { labels } : {}),
  };
  announce(await Sandbox.create({ ...spec, ...connectOptions }), spec.ports);
}

/** The new sandbox's name on stdout; ports asked as 0 were picked by the server: which, on stderr. */
function announce(sbx: Sandbox, ports: { guestPort: number }[] | undefined): void {
  process.stdout.write(`${sbx.name}\n`);
  for (const p of ports ?? []) process.stderr.write(`published ${sbx.getHost(p.guestPort)} -> guest port ${p.guestPort}\n`);
  sbx.close();
}

function row(s: SandboxInfo, now: number): string[] {
  const labels = Object.entries(s.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const up = s.state === 'running' && s.startedAt ? humanDuration(now - s.startedAt) : '-';
  const state = s.reason && s.state !== 'running' ? `${s.state} (${s.reason})` : s.state;
  return [s.name, s.id.slice(0, 12), s.image, state, String(s.cpus), `${s.memoryMib} MiB`, up, labels || '-'];
}

/** `vmbox ls`: the sandboxes, as a table or JSON. */
export function lsCommand(): Command {
  return new Command('ls')
    .alias('ps')
    .description('list sandboxes')
    .option('-l, --label <KEY=VALUE>', 'only those with this label (repeatable)', collect, [])
    .option('-s, --state <state>', 'only those in this state (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (f: { label: string[]; state: string[]; json?: boolean }) => {
      const list = await Sandbox.list({
        ...connectOptions,
        query: { metadata: parsePairs('--label', f.label), state: f.state as SandboxState[] },
      });
      if (f.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      const now = Date.now();
      process.stdout.write(
        `${table(
          ['NAME', 'ID', 'IMAGE', 'STATE', 'CPUS', 'MEMORY', 'UPTIME', 'LABELS'],
          list.map((s) => row(s, now)),
        )}\n`,
      );
    });
}

/** `vmbox inspect`: everything the server knows of a sandbox, as JSON. */
export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show a sandbox’s spec, state, timestamps, paths and pid')
    .argument('<sandbox>', 'name or id')
    .action(async (ref: string) => {
      const sbx = await sandboxHandle(ref);
      process.stdout.write(`${JSON.stringify(await sbx.getInfo(), null, 2)}\n`);
      sbx.close();
    });
}

/** stop / start / restart: one verb each, same shape. */
export function lifecycleCommand(verb: 'stop' | 'start' | 'restart' | 'pause' | 'resume'): Command {
  const what = {
    stop: 'stop sandboxes (their disks are kept)',
    start: 'start stopped sandboxes',
    restart: 'stop, then start',
    pause: 'save running sandboxes (memory, processes, disk) and end their VMs',
    resume: 'bring paused sandboxes back where they were',
  };
  const cmd = new Command(verb).description(what[verb]).argument('<sandbox...>', 'names or ids');
  if (verb === 'stop') cmd.option('-t, --time <seconds>', 'time the guest gets to power off', int('--time'));
  return cmd.action(async (refs: string[], f: { time?: number }) => {
    const conn = await openConnection();
    try {
      for (const ref of refs) {
        const path = sandboxPath(ref, `/${verb}`);
        const info = await conn.request<SandboxInfo>(
          'POST',
          path,
          verb === 'stop' && f.time !== undefined ? { timeoutMs: f.time * 1000 } : {},
        );
        process.stdout.write(`${info.name}\n`);
      }
    } finally {
      conn.close();
    }
  });
}

/** `vmbox rm`: remove sandboxes and their disks. */
export function rmCommand(): Command {
  return new Command('rm')
    .description('remove sandboxes and their disks')
    .argument('<sandbox...>', 'names or ids')
    .option('-f, --force', 'stop running ones first')
    .action(async (refs: string[], f: { force?: boolean }) => {
      const conn = await openConnection();
      try {
        for (const ref of refs) {
          await conn.request('DELETE', sandboxPath(ref, f.force ? '?force=true' : ''));
          process.stdout.write(`${ref}\n`);
        }
      } finally {
        conn.close();
      }
    });
}
