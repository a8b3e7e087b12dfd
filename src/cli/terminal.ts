import type { Commands } from '../sdk/commands.js';
import type { StreamFlags } from './stream.js';

export { LOGIN_SHELL } from '../sdk/pty.js';

/**
 * Runs a command on a terminal in the guest, wired to ours: our terminal in
 * raw mode (so Ctrl-C, Ctrl-D and arrows go to the guest as bytes), the
 * guest's window resized with ours. Returns the command's exit code.
 * Closing this CLI ends the command, as closing a terminal window would.
 */
export async function runOnTerminal(commands: Commands, argv: string[], f: StreamFlags): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  const h = commands.exec(argv, {
    env: f.env,
    cwd: f.workdir,
    user: f.user,
    timeoutMs: f.timeout ? Math.round(f.timeout * 1000) : undefined,
    pty: size(),
    background: false,
    onStdout: (d) => {
      if (!stdout.write(d)) return new Promise<void>((resolve) => stdout.once('drain', () => resolve()));
    },
  });
  const onResize = () => {
    const s = size();
    h.resize(s.cols, s.rows);
  };
  const raw = stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  stdout.on('resize', onResize);
  process.on('SIGWINCH', onResize);
  const onInput = (chunk: Buffer) => {
    h.write(chunk).catch(() => {});
  };
  stdin.on('data', onInput);
  stdin.resume();
  try {
    const exit = await h.exit;
    if (exit.timedOut) {
      process.stderr.write(`\r\nvmbox: command timed out after ${f.timeout} s and was killed\r\n`);
      return 124;
    }
    return exit.exitCode;
  } finally {
    stdin.off('data', onInput);
    if (raw) stdin.setRawMode(false);
    stdin.pause();
    stdout.off('resize', onResize);
    process.off('SIGWINCH', onResize);
  }
}
