import type { NetworkPolicyInput } from '../spec/network.js';
import type { SandboxInfo } from '../spec/sandboxes.js';

/**
 * The envd version vmbox reports. E2B's SDKs refuse below 0.1.0 and switch
 * features on by version: this is the highest whose features vmbox's envd
 * (src/e2b/envd/) serves — recursive watches (0.1.4), stdin on or off (0.3.0),
 * the sandbox's default user (0.4.0), closing stdin (0.5.2), octet-stream
 * uploads (0.5.7), file metadata in user.e2b.* attributes (0.6.2), entries in
 * watch events (0.6.3), and the network-mount flag on watches (0.6.4: vmbox
 * watches whatever its guest kernel can).
 */
export const ENVD_VERSION = '0.6.4';

/** E2B's default template, `base`, is vmbox's built-in `e2b-base` (Debian with bash, python3, git, user `user`). */
const E2B_TEMPLATES: Record<string, string> = { base: 'e2b-base' };
export const imageOf = (templateID: string | undefined) => E2B_TEMPLATES[templateID ?? 'base'] ?? (templateID as string);
export const templateOf = (image: string) => Object.entries(E2B_TEMPLATES).find(([, i]) => i === image)?.[0] ?? image;

/** E2B's states: a sandbox kept stopped paused at its timeout without its memory. */
export function e2bState(s: SandboxInfo): 'running' | 'paused' {
  return s.state === 'paused' || s.state === 'stopped' ? 'paused' : 'running';
}

export const startOf = (s: SandboxInfo) => s.startedAt ?? s.createdAt;

/** A sandbox as E2B's create, connect and fork answer it. */
export function createdShape(s: SandboxInfo, envdAccessToken: string) {
  return {
    sandboxID: s.id,
    templateID: templateOf(s.image),
    clientID: 'vmbox',
    envdVersion: ENVD_VERSION,
    envdAccessToken,
    domain: null,
  };
}

/** A sandbox as E2B's list and get describe it. */
export function listedShape(s: SandboxInfo) {
  return {
    sandboxID: s.id,
    templateID: templateOf(s.image),
    alias: s.name,
    clientID: 'vmbox',
    startedAt: new Date(startOf(s)).toISOString(),
    endAt: new Date(startOf(s) + (s.spec.maxDurationMs ?? 0)).toISOString(),
    cpuCount: s.cpus,
    memoryMB: s.memoryMib,
    diskSizeMB: s.spec.diskMib ?? 0,
    metadata: s.labels,
    state: e2bState(s),
    envdVersion: ENVD_VERSION,
    lifecycle: { onTimeout: s.spec.onTimeout ? 'pause' : 'kill', autoResume: false },
    volumeMounts: (s.spec.mounts ?? []).flatMap((m) => (m.type === 'volume' ? [{ name: m.source, path: m.target }] : [])),
  };
}

/** E2B's outbound network settings, at create and in a network update. */
export interface E2bNetwork {
  allow_internet_access?: boolean;
  network?: { allowOut?: string[]; denyOut?: string[] };
}

/**
 * E2B's sandboxes reach the internet unless told not to; vmbox's are closed
 * unless given a policy. `allow_internet_access: false` closes it; `allowOut`
 * and `denyOut` are outbound rules (vmbox's rule syntax: domains, CIDRs, ports).
 */
export function networkOf(b: E2bNetwork): NetworkPolicyInput | undefined {
  if (b.allow_internet_access === false && !b.network?.allowOut?.length) return undefined;
  return {
    defaultAction: b.allow_internet_access === false ? 'deny' : 'allow',
    allow: b.network?.allowOut ?? [],
    deny: b.network?.denyOut ?? [],
  };
}
