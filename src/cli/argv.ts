/** What an image says to run: OCI config's Entrypoint and Cmd. */
export interface ImageCommand {
  entrypoint: string[];
  cmd: string[];
}

/**
 * The argv of a sandbox's command, as docker composes it: the image's
 * entrypoint unless `--entrypoint` replaces it (`''` clears it), then the
 * given command, else the image's cmd. A replaced entrypoint drops the
 * image's cmd too, since that cmd was written for the old entrypoint.
 */
export function composeArgv(image: ImageCommand, entrypoint: string | undefined, command: string[]): string[] {
  const entry = entrypoint === undefined ? image.entrypoint : entrypoint === '' ? [] : [entrypoint];
  const args = command.length > 0 ? command : entrypoint === undefined ? image.cmd : [];
  return [...entry, ...args];
}
