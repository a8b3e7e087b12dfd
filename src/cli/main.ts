#!/usr/bin/env node
import { Command } from 'commander';
import { VmboxError } from '../errors.js';
import { mark } from '../util/trace.js';
import { VERSION } from '../version.js';
import { apiKeyCommand } from './api-keys.js';
import { cpCommand } from './cp.js';
import { doctorCommand } from './doctor.js';
import { execCommand, shellCommand } from './exec.js';
import { imageCommand, imagesCommand, rmiCommand } from './images.js';
import { logsCommand } from './logs.js';
import { networkCommand, portCommand } from './network.js';
import { exitQuietlyOnClosedPipes } from './pipes.js';
import { pullCommand } from './pull.js';
import { runCommand } from './run.js';
import { createCommand, inspectCommand, lifecycleCommand, lsCommand, rmCommand } from './sandboxes.js';
import { serveCommand } from './serve.js';
import { forkCommand, snapshotCommand, templateCommand } from './snapshots.js';
import { statsCommand } from './stats.js';
import { volumeCommand } from './volumes.js';

const program = new Command('vmbox')
  .description('Hardware-isolated microVM sandboxes')
  .version(VERSION)
  .option('--debug', 'print error details')
  .enablePositionalOptions();

program.addCommand(runCommand());
program.addCommand(createCommand());
program.addCommand(lsCommand());
program.addCommand(execCommand());
program.addCommand(shellCommand());
program.addCommand(cpCommand());
program.addCommand(logsCommand());
program.addCommand(statsCommand());
program.addCommand(networkCommand());
program.addCommand(portCommand());
program.addCommand(lifecycleCommand('stop'));
program.addCommand(lifecycleCommand('start'));
program.addCommand(lifecycleCommand('restart'));
program.addCommand(lifecycleCommand('pause'));
program.addCommand(lifecycleCommand('resume'));
program.addCommand(snapshotCommand());
program.addCommand(forkCommand());
program.addCommand(templateCommand());
program.addCommand(inspectCommand());
program.addCommand(rmCommand());
program.addCommand(serveCommand());
program.addCommand(pullCommand());
program.addCommand(imagesCommand());
program.addCommand(imageCommand());
program.addCommand(rmiCommand());
program.addCommand(apiKeyCommand());
program.addCommand(volumeCommand());
program.addCommand(doctorCommand());

exitQuietlyOnClosedPipes();
mark('cli loaded');
try {
  await program.parseAsync(process.argv);
} catch (err) {
  reportError(err, program.opts<{ debug?: boolean }>().debug ?? false);
  process.exit(1);
}

/** One clear line; the stack only with --debug. */
export function reportError(err: unknown, debug: boolean): void {
  const message = err instanceof VmboxError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`vmbox: ${message}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
}
