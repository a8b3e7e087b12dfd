import { type Static, Type } from '@sinclair/typebox';
import { NetworkStatsSchema } from './network.js';
import { SandboxSpecSchema } from './sandbox.js';

/**
 * What the API says about sandboxes: one schema per type, serving the
 * runtime's and the SDK's TypeScript types and the OpenAPI document.
 */

/**
 * A sandbox's lifecycle. `creating` and `starting` boot a VM, `stopping` ends
 * one; `failed` is a VM that died or did not boot (the reason says which);
 * `paused` has no VM: its memory and devices wait on disk to be resumed.
 */
export const SANDBOX_STATES = ['creating', 'starting', 'running', 'stopping', 'stopped', 'failed', 'paused'] as const;
export const SandboxStateSchema = Type.Union(SANDBOX_STATES.map((s) => Type.Literal(s)));
export type SandboxState = (typeof SANDBOX_STATES)[number];

/**
 * How a sandbox's VM first started. `cold`: booted; `warm`: restored from the
 * image's template (booted once to "agent ready" and kept); `snapshot`: restored
 * from a snapshot; `fork`: restored from a running sandbox's copy. Its disk (and
 * for `warm`, its memory) is layered on the template or snapshot named here.
 */
export const SandboxOriginSchema = Type.Object({
  start: Type.Union([Type.Literal('cold'), Type.Literal('warm'), Type.Literal('snapshot'), Type.Literal('fork')]),
  template: Type.Optional(Type.String({ description: 'The template a warm sandbox was restored from' })),
  snapshot: Type.Optional(Type.String({ description: 'The snapshot id a restored or forked sandbox is layered on' })),
  parent: Type.Optional(Type.String({ description: 'The sandbox a fork was copied from' })),
  coldReason: Type.Optional(Type.String({ description: 'Why a sandbox that could have started warm booted cold' })),
});
export type SandboxOrigin = Static<typeof SandboxOriginSchema>;

export const SandboxInfoSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  image: Type.String({ description: 'The image reference the sandbox was made from' }),
  state: SandboxStateSchema,
  reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it is in its state (stopped by request, a policy, a crash)' }),
  cpus: Type.Integer(),
  memoryMib: Type.Integer(),
  labels: Type.Record(Type.String(), Type.String()),
  metadata: Type.Record(Type.String(), Type.String(), { description: 'The labels again, under the name E2B’s SDK gives them' }),
  ephemeral: Type.Boolean(),
  createdAt: Type.Integer({ description: 'ms since the epoch' }),
  startedAt: Type.Union([Type.Integer(), Type.Null()]),
  stoppedAt: Type.Union([Type.Integer(), Type.Null()]),
  pid: Type.Union([Type.Integer(), Type.Null()], { description: "The VMM's pid while the VM runs" }),
  dir: Type.String({ description: "The sandbox's directory on the server's host" }),
  origin: SandboxOriginSchema,
  spec: SandboxSpecSchema,
});
export type SandboxInfo = Static<typeof SandboxInfoSchema>;

export const SandboxEventSchema = Type.Object({ at: Type.Integer(), kind: Type.String(), message: Type.String() });
export type SandboxEvent = Static<typeof SandboxEventSchema>;

export const SandboxDetailsSchema = Type.Intersect([SandboxInfoSchema, Type.Object({ events: Type.Array(SandboxEventSchema) })]);
export type SandboxDetails = Static<typeof SandboxDetailsSchema>;

/** One reading: the VMM process seen from the host, the guest seen by its agent. */
export const MetricsSampleSchema = Type.Object({
  t: Type.Integer(),
  cpuPercent: Type.Number({ description: 'CPU of the VMM process since the previous sample, in % of one host CPU' }),
  hostRssBytes: Type.Integer({ description: 'Resident memory of the VMM process' }),
  memTotalBytes: Type.Integer(),
  memUsedBytes: Type.Integer(),
  diskTotalBytes: Type.Integer(),
  diskUsedBytes: Type.Integer(),
  processes: Type.Integer(),
  network: Type.Optional(NetworkStatsSchema),
});
export type MetricsSample = Static<typeof MetricsSampleSchema>;

export const MetricsSchema = Type.Object({ latest: MetricsSampleSchema, history: Type.Array(MetricsSampleSchema) });
export type Metrics = Static<typeof MetricsSchema>;

/** Where a log line came from: a command's streams, a terminal's output, vmbox itself, or its network decisions. */
export const LOG_SOURCES = ['stdout', 'stderr', 'output', 'system', 'network'] as const;
export type LogSource = (typeof LOG_SOURCES)[number];

export const LogEntrySchema = Type.Object({
  t: Type.Integer({ description: 'ms since the epoch' }),
  source: Type.Union(LOG_SOURCES.map((s) => Type.Literal(s))),
  text: Type.String(),
});
export type LogEntry = Static<typeof LogEntrySchema>;
