import { Command } from 'commander';
import { VmboxError } from '../errors.js';

/** `vmbox serve`: the server in the foreground (the CLI starts it in the background when needed). */
export function serveCommand(): Command {
  return new Command('serve')
    .description('run the vmbox server (started automatically by other commands when absent)')
    .option('--listen <host:port>', 'also listen on TCP; clients need the bearer token')
    .option('--token-file <file>', 'where the TCP token is kept (default $VMBOX_HOME/token)')
    .action(async (f: { listen?: string; tokenFile?: string }) => {
      // Loaded only here: the other verbs never pay for the server's modules.
      const { serve } = await import('../server/main.js').catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ERR_MODULE_NOT_FOUND' || !/better-sqlite3/.test(err.message)) throw err;
        // The package's SDK installs without the server's native SQLite (an optional peer dependency).
        throw new VmboxError('hostSetup', 'the vmbox server needs better-sqlite3 beside this package: npm install better-sqlite3@12');
      });
      const server = await serve({ listen: f.listen, tokenFile: f.tokenFile });
      process.stderr.write(
        `vmbox: server ${process.pid} listening on ${server.socketPath}${server.tcpAddress ? ` and ${server.tcpAddress} (token required)` : ''}\n`,
      );
      const stop = async () => {
        await server.close();
        process.exit(0);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
