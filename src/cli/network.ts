import { Command, InvalidArgumentError } from 'commander';
import { VmboxError } from '../errors.js';
import type { NetworkPolicyInput, PortOptions } from '../sdk/network.js';
import type { Secret } from '../spec/network.js';
import { sandboxHandle } from './client.js';
import { table } from './format.js';

const collect = (v: string, acc: string[]) => [...acc, v];

/** The network flags `run`, `create` and `network update` share. */
export interface NetworkFlags {
  net?: boolean;
  allow: string[];
  deny: string[];
  dns: string[];
  publish?: string[];
  secret?: string[];
}

export function addNetworkFlags(cmd: Command, opts: { ports: boolean; secrets: boolean }): Command {
  cmd
    .option('--net', 'open the public internet (host-private ranges still need --allow)')
    .option('--allow <rule>', 'allow a destination: domain, *.domain, CIDR or host.vmbox.internal, with :port (repeatable)', collect, [])
    .option('--deny <rule>', 'refuse a destination; wins over --allow and --net (repeatable)', collect, [])
    .option('--dns <server>', 'upstream DNS server for the sandbox, IP[:port] (repeatable; default the host’s)', collect, []);
  if (opts.secrets)
    cmd.option(
      '--secret <NAME=host,...>',
      'give commands NAME as a placeholder; the host puts the value of $NAME (from this environment) into requests to those hosts only (repeatable)',
      collect,
      [],
    );
  if (opts.ports) cmd.option('-p, --publish <[hostIP:]hostPort:guestPort>', 'publish a guest port on the host (repeatable)', collect, []);
  return cmd;
}

/** The spec's `network` from the flags; none when no flag asks for a network. */
export function networkFromFlags(f: NetworkFlags): NetworkPolicyInput | undefined {
  if (!f.net && !f.allow.length && !f.deny.length && !f.dns.length) return undefined;
  return {
    defaultAction: f.net ? 'allow' : 'deny',
    allow: f.allow,
    deny: f.deny,
    ...(f.dns.length ? { dnsServers: f.dns } : {}),
  };
}

/** `--secret NAME=host1,host2`: the value is $NAME of the caller's environment, so it is never on a command line. */
export function secretsFromFlags(f: NetworkFlags): Secret[] | undefined {
  if (!f.secret?.length) return undefined;
  return f.secret.map((s) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(s);
    if (!m)
      throw new VmboxError('invalidArgument', `--secret ${s}: expected NAME=host[,host...], e.g. --secret OPENAI_API_KEY=api.openai.com`);
    const [, name, hosts] = m as unknown as [string, string, string];
    const value = process.env[name];
    if (!value) throw new VmboxError('invalidArgument', `--secret ${name}: set ${name} in the environment to the secret's value`);
    return { name, value, hosts: hosts.split(',').filter(Boolean) };
  });
}

/** `-p [hostIP:]hostPort:guestPort[/tcp]`, as docker writes it. */
export function parsePublish(v: string): PortOptions {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/tcp)?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`-p ${v}: expected [hostIP:]hostPort:guestPort, e.g. 8080:80 or 0.0.0.0:8080:80`);
  return { ...(m[1] ? { hostIp: m[1] } : {}), hostPort: Number(m[2]), guestPort: Number(m[3]) };
}

/** `vmbox network show|update NAME`. */
export function networkCommand(): Command {
  const cmd = new Command('network').description("show or change a sandbox's network policy");
  cmd
    .command('show')
    .description('print the policy as JSON')
    .argument('<sandbox>')
    .action(async (ref: string) => {
      const sbx = await sandboxHandle(ref);
      process.stdout.write(`${JSON.stringify(await sbx.network.get(), null, 2)}\n`);
      sbx.close();
    });
  addNetworkFlags(
    cmd
      .command('update')
      .description('replace the policy; open connections it now refuses are closed')
      .argument('<sandbox>')
      .option('--off', 'turn the network off (keeps nothing open)'),
    { ports: false, secrets: false },
  ).action(async (ref: string, f: NetworkFlags & { off?: boolean }) => {
    const sbx = await sandboxHandle(ref);
    const policy = networkFromFlags(f) ?? { defaultAction: 'deny' as const, allow: [], deny: [] };
    const applied = await sbx.network.update(f.off ? { ...policy, enabled: false } : policy);
    process.stdout.write(`${JSON.stringify(applied)}\n`);
    sbx.close();
  });
  return cmd;
}

/** `vmbox port add|rm|ls NAME`. */
export function portCommand(): Command {
  const cmd = new Command('port').description("a running sandbox's published ports");
  cmd
    .command('ls')
    .description('list them')
    .argument('<sandbox>')
    .action(async (ref: string) => {
      const sbx = await sandboxHandle(ref);
      const ports = await sbx.ports.list();
      process.stdout.write(
        `${table(
          ['HOST', 'GUEST PORT'],
          ports.map((p) => [`${p.hostIp}:${p.hostPort}`, String(p.guestPort)]),
        )}\n`,
      );
      sbx.close();
    });
  cmd
    .command('add')
    .description('publish a guest port: [hostIP:]hostPort:guestPort (hostPort 0 picks a free one)')
    .argument('<sandbox>')
    .argument('<mapping>', '[hostIP:]hostPort:guestPort', parsePublish)
    .action(async (ref: string, mapping: PortOptions) => {
      const sbx = await sandboxHandle(ref);
      const p = await sbx.ports.add(mapping);
      process.stdout.write(`${p.hostIp}:${p.hostPort} -> ${p.guestPort}\n`);
      sbx.close();
    });
  cmd
    .command('rm')
    .description('stop publishing a host port')
    .argument('<sandbox>')
    .argument('<hostPort>', 'the host port, or hostIP:hostPort')
    .action(async (ref: string, where: string) => {
      const i = where.lastIndexOf(':');
      const hostIp = i > 0 ? where.slice(0, i) : undefined;
      const sbx = await sandboxHandle(ref);
      await sbx.ports.remove(Number(where.slice(i + 1)), { hostIp });
      sbx.close();
    });
  return cmd;
}
