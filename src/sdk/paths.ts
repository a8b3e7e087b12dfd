/** The API's paths, built in one place: `/v1/sandboxes/<ref>` and what hangs off it. */
export const sandboxesPath = '/v1/sandboxes';

/** A sandbox's path (`rest` starts with `/` or `?`, or is empty). */
export function sandboxPath(ref: string, rest = ''): string {
  return `${sandboxesPath}/${encodeURIComponent(ref)}${rest}`;
}

/** The socket of `vmbox run`: a sandbox made for one command, owned by the connection. */
export const runPath = '/v1/run';
