/** Set-up progress goes to stderr, so stdout stays the guest command's own. */
export function progress(message: string): void {
  process.stderr.write(`vmbox: ${message}\n`);
}
