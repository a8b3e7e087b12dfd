/**
 * What this process's environment says about a registry, sent along with a
 * pull so that a remote server honours it too: `VMBOX_INSECURE_REGISTRIES`
 * (comma-separated hosts) and `VMBOX_REGISTRY_AUTH` (`host=user:password`, comma-separated).
 */

/** The registry a reference names, by Docker's rule: a first component with a dot or a port, or localhost. */
export function registryOf(reference: string): string {
  const slash = reference.indexOf('/');
  const first = slash >= 0 ? reference.slice(0, slash) : '';
  return slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'docker.io';
}

export function insecureFromEnv(reference: string): boolean {
  const listed = (process.env.VMBOX_INSECURE_REGISTRIES ?? '').split(',').filter(Boolean);
  return listed.includes(registryOf(reference));
}

export function authFromEnv(reference: string): { username: string; password: string } | undefined {
  const registry = registryOf(reference);
  for (const entry of (process.env.VMBOX_REGISTRY_AUTH ?? '').split(',').filter(Boolean)) {
    const eq = entry.indexOf('=');
    const colon = entry.indexOf(':', eq);
    if (eq > 0 && colon > eq && entry.slice(0, eq) === registry) {
      return { username: entry.slice(eq + 1, colon), password: entry.slice(colon + 1) };
    }
  }
  return undefined;
}
