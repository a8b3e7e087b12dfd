/** 128 + SIGPIPE: the status a shell shows for a program its reader hung up on. */
const CLOSED_PIPE_EXIT = 141;

/**
 * A reader that goes away (`vmbox exec dev -- seq 100000 | head -1`) closes
 * our stdout or stderr. Node ignores SIGPIPE, so the next write fails with
 * EPIPE, which unhandled is a stack trace; end quietly instead, as `cat`
 * killed by SIGPIPE does. Leaving is enough to end the rest: the server
 * ends a command, and removes a `vmbox run` sandbox, whose client is gone.
 */
export function exitQuietlyOnClosedPipes(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(CLOSED_PIPE_EXIT);
      throw err;
    });
  }
}
