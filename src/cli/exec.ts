import { Command, Option } from 'commander';
import { sandboxHandle } from './client.js';
import { parsePairs } from './sandboxes.js';
import { checkTimeout, streamCommand } from './stream.js';

/** `vmbox exec NAME -- CMD`: runs a command in an existing sandbox. */
export function execCommand(): Command {
  return new Command('exec')
    .description('run a command in a running sandbox')
    .argument('<sandbox>', 'name or id')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('-w, --workdir <dir>', 'working directory in the guest')
    .option('-u, --user <user>', 'user name, uid, or uid:gid')
    .option('-i, --interactive', 'pass stdin to the command')
    .addOption(new Option('--timeout <seconds>', 'kill the command after this long').argParser(Number))
    .passThroughOptions()
    .action(
      async (
        ref: string,
        command: string[],
        f: { env: string[]; workdir?: string; user?: string; interactive?: boolean; timeout?: number },
      ) => {
        checkTimeout(f.timeout);
        const sbx = await sandboxHandle(ref);
        try {
          process.exitCode = await streamCommand(sbx.commands, command[0] === '--' ? command.slice(1) : command, {
            ...f,
            env: parsePairs('-e', f.env),
          });
        } finally {
          sbx.close();
        }
      },
    );
}
