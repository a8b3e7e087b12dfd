import { Command, Option } from 'commander';
import { VmboxError } from '../errors.js';
import type { Sandbox } from '../sdk/sandbox.js';
import { sandboxHandle } from './client.js';
import { parsePairs } from './sandboxes.js';
import { checkTimeout, streamCommand, streamProcess } from './stream.js';
import { LOGIN_SHELL, runOnTerminal } from './terminal.js';

/** `vmbox exec NAME -- CMD`: runs a command in an existing sandbox. */
export function execCommand(): Command {
  return new Command('exec')
    .description('run a command in a running sandbox')
    .argument('<sandbox>', 'name or id')
    .argument('[command...]', 'the command and its arguments, after -- (default: the sandbox’s default command, see create --entrypoint)')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('-w, --workdir <dir>', 'working directory in the guest')
    .option('-u, --user <user>', 'user name, uid, or uid:gid')
    .option('-i, --interactive', 'pass stdin to the command')
    .option('-t, --tty', 'run it on a terminal wired to this one (with -i: an interactive program, e.g. a shell)')
    .addOption(new Option('--timeout <seconds>', 'kill the command after this long').argParser(Number))
    .option('--script <name>', "run one of the sandbox's named scripts (create --script NAME=BODY); the command's words become its $1…")
    .passThroughOptions()
    .action(
      async (
        ref: string,
        command: string[],
        f: { env: string[]; workdir?: string; user?: string; interactive?: boolean; tty?: boolean; timeout?: number; script?: string },
      ) => {
        checkTimeout(f.timeout);
        const sbx = await sandboxHandle(ref);
        try {
          let given = command[0] === '--' ? command.slice(1) : command;
          // `vmbox exec NAME --script test`: after the sandbox's name, options pass through as words.
          if (!f.script && given[0] === '--script' && given[1]) {
            f.script = given[1];
            given = given.slice(given[2] === '--' ? 3 : 2);
          }
          if (f.script) {
            const flags = { ...f, env: parsePairs('-e', f.env) };
            process.exitCode = await streamProcess((o) => sbx.commands.exec(given, { ...o, script: f.script }), flags);
            return;
          }
          const argv = given.length ? given : await defaultCommand(sbx);
          const flags = { ...f, env: parsePairs('-e', f.env) };
          process.exitCode = f.tty ? await runOnTerminal(sbx.commands, argv, flags) : await streamCommand(sbx.commands, argv, flags);
        } finally {
          sbx.close();
        }
      },
    );
}

/** `vmbox shell NAME`: a login shell on a terminal in the sandbox. */
export function shellCommand(): Command {
  return new Command('shell')
    .description(
      'open a shell in a running sandbox (a real terminal: resizes with the window, Ctrl-C goes to the guest); without a terminal on stdin, the shell reads commands from it',
    )
    .argument('<sandbox>', 'name or id')
    .option('-u, --user <user>', 'user name, uid, or uid:gid')
    .option('-w, --workdir <dir>', 'working directory in the guest')
    .action(async (ref: string, f: { user?: string; workdir?: string }) => {
      const sbx = await sandboxHandle(ref);
      try {
        // No terminal here (CI, `ssh host vmbox shell dev`): a terminal in the guest
        // would wait for keys that never come; the shell reads our stdin instead, as `docker exec -i` does.
        process.exitCode = process.stdin.isTTY
          ? await runOnTerminal(sbx.commands, LOGIN_SHELL, { ...f, env: {} })
          : await streamCommand(sbx.commands, LOGIN_SHELL, { ...f, env: {}, interactive: true });
      } finally {
        sbx.close();
      }
    });
}

/** What `vmbox create --entrypoint` (or a command after its --) recorded for the sandbox. */
async function defaultCommand(sbx: Sandbox): Promise<string[]> {
  const argv = (await sbx.getInfo()).spec.command;
  if (argv?.length) return argv;
  throw new VmboxError(
    'invalidArgument',
    `give a command after --, e.g. vmbox exec ${sbx.name} -- sh (this sandbox has no default command; vmbox create --entrypoint sets one)`,
  );
}
