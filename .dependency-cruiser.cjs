/**
 * vmbox's layers (DESIGN.md): cli → sdk → (spec, errors); server → runtime →
 * (images, network, vmm, guest, state). Checked by `npm test` (test:layers).
 */
const layer = (name) => `^src/${name}/`;
module.exports = {
  forbidden: [
    {
      name: 'sdk-is-a-client',
      comment: 'The SDK talks to a server over the API: it never carries the runtime, the VMM, the agent protocol or the image store.',
      severity: 'error',
      from: { path: layer('sdk') },
      to: { path: ['^src/(runtime|guest|vmm|images|server|setup|cli|network)/'] },
    },
    {
      name: 'cli-uses-the-sdk',
      comment: 'The CLI is an SDK client; `doctor` may read the host, `serve` starts the server in this process.',
      severity: 'error',
      from: { path: layer('cli'), pathNot: '^src/cli/(doctor|serve)\\.ts$' },
      to: { path: ['^src/(runtime|guest|vmm|images|server|setup|network)/'] },
    },
    {
      name: 'server-routes-go-through-the-runtime',
      comment: 'A route only parses, calls the runtime and maps errors.',
      severity: 'error',
      from: { path: layer('server') },
      to: { path: ['^src/(guest|images|sdk|cli)/', '^src/vmm/(?!qemu/provider\\.ts$)'] },
    },
    {
      name: 'e2b-is-another-api',
      comment: "E2B's API is served as vmbox's own is: it maps onto the runtime, with no lifecycle or exec path of its own.",
      severity: 'error',
      from: { path: layer('e2b') },
      to: { path: ['^src/(guest|images|vmm|sdk|cli|network)/'] },
    },
    {
      name: 'runtime-below-the-api',
      comment: 'The runtime knows nothing of HTTP, the SDK or the CLI; it drives VMs only through the VMM contract.',
      severity: 'error',
      from: { path: layer('runtime') },
      to: { path: ['^src/(server|sdk|cli|e2b)/', '^src/vmm/qemu/'] },
    },
    {
      name: 'tools-below-the-runtime',
      comment: 'images, vmm, guest and spec are tools the runtime drives; they do not call back up.',
      severity: 'error',
      from: { path: '^src/(images|vmm|guest|spec|network)/' },
      to: { path: ['^src/(runtime|server|sdk|cli)/'] },
    },
    {
      name: 'spec-is-a-leaf',
      comment: 'Wire types and validation: shared by every layer, so they depend on none.',
      severity: 'error',
      from: { path: layer('spec') },
      to: { path: ['^src/(?!spec/|errors\\.ts$)'] },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: { path: '^src/' },
      comment: 'Type-only cycles (a helper typed by the manager that owns it) vanish at run time; real ones do not.',
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
