import { VmboxError } from '../errors.js';

/** An image reference normalised as Docker does: `alpine` → `docker.io/library/alpine:latest`. */
export interface ImageReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const DEFAULT_REGISTRY = 'docker.io';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
/** Docker's registry part: a host name of domain components, or an IPv6 address in brackets, and an optional port. */
const REGISTRY =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;

const bad = (input: string, why: string) =>
  new VmboxError('invalidArgument', `invalid image reference '${input}': ${why} (e.g. alpine:3.20, ghcr.io/org/app@sha256:…)`);

export function parseReference(input: string): ImageReference {
  if (!input || /\s/.test(input)) throw bad(input, 'empty or contains spaces');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(input, `'${digest}' is not a digest`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(input, `'${tag}' is not a valid tag`);
  }
  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  // Docker's rule: the first component is a registry if it has a dot or a port, or is localhost.
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    repository = rest.slice(slash + 1);
    // Checked, as Docker does: it becomes the host of every URL the pull asks (`:/app` or `a?b.io/app` would not be one).
    if (!REGISTRY.test(registry)) throw bad(input, `'${registry}' is not a registry host[:port]`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (!repository || !repository.split('/').every((c) => COMPONENT.test(c))) {
    throw bad(input, 'repository names are lowercase letters, digits and separators');
  }
  if (!tag && !digest) tag = 'latest';
  return { registry, repository, tag, digest };
}

export function formatReference(r: ImageReference): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** The host that serves a registry's API (Docker Hub's differs from its name). */
export function registryHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? 'registry-1.docker.io' : registry;
}
