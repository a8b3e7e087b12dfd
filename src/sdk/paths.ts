/** The API's paths, built in one place: `/v1/sandboxes/<ref>` and what hangs off it. */
export const sandboxesPath = '/v1/sandboxes';

/** A sandbox's path (`rest` starts with `/` or `?`, or is empty). */
export function sandboxPath(ref: string, rest = ''): string {
  return `${sandboxesPath}/${encodeURIComponent(ref)}${rest}`;
}
