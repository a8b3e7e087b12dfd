import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { VmboxError } from '../errors.js';
import { importImage } from '../images/import.js';
import { imageConfig } from '../images/pull.js';
import { formatReference, parseReference } from '../images/reference.js';
import { rootfsPath } from '../images/rootfs.js';
import { ContentStore } from '../images/store.js';
import { Sandbox } from '../sdk/sandbox.js';
import { connectOptions } from './client.js';
import { humanAge, humanBytes, table } from './format.js';

const normal = (ref: string) => formatReference(parseReference(ref));

function find(store: ContentStore, ref: string) {
  const image = store.get(normal(ref));
  if (!image) throw new VmboxError('imageNotFound', `no image ${normal(ref)} here: vmbox pull ${ref}`);
  return image;
}

/** `vmbox images`: the table of pulled images. */
export function imagesCommand(): Command {
  return new Command('images')
    .description('list pulled images')
    .option('--json', 'print JSON')
    .action((flags: { json?: boolean }) => {
      const images = new ContentStore().list();
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
        return;
      }
      const rows = images.map((i) => [i.reference, i.manifestDigest.slice(0, 19), humanBytes(i.size), humanAge(i.created)]);
      process.stdout.write(`${table(['REFERENCE', 'DIGEST', 'SIZE', 'CREATED'], rows)}\n`);
    });
}

/** `vmbox rmi REF`: forget an image; refuses while a sandbox uses it unless --force. */
export function rmiCommand(): Command {
  return new Command('rmi')
    .description('remove an image (its blobs go with `vmbox image prune`)')
    .argument('<reference>')
    .option('-f, --force', 'remove even while a sandbox uses it')
    .action(async (ref: string, flags: { force?: boolean }) => {
      const store = new ContentStore();
      const image = find(store, ref);
      const users = flags.force ? [] : (await Sandbox.list(connectOptions)).filter((s) => s.image === image.reference);
      if (users.length) {
        const names = users.map((s) => s.name).join(', ');
        throw new VmboxError('alreadyExists', `${image.reference} is used by ${names}: remove them first, or pass --force`);
      }
      store.remove(image.reference);
      process.stdout.write(`removed ${image.reference}\n`);
    });
}

/** `vmbox image inspect|prune`. */
export function imageCommand(): Command {
  const image = new Command('image').description('inspect and manage images');
  image
    .command('inspect')
    .description('show an image’s config: env, entrypoint, cmd, workdir, user, layers')
    .argument('<reference>')
    .action((ref: string) => {
      const found = find(new ContentStore(), ref);
      const c = imageConfig(found);
      const out = {
        reference: found.reference,
        digest: found.manifestDigest,
        created: c.created,
        platform: `${c.os ?? '?'}/${c.architecture ?? '?'}`,
        env: c.config?.Env ?? [],
        entrypoint: c.config?.Entrypoint ?? [],
        cmd: c.config?.Cmd ?? [],
        workingDir: c.config?.WorkingDir ?? '',
        user: c.config?.User ?? '',
        layers: found.layers,
      };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    });
  image
    .command('import')
    .description('import a rootfs tarball, an OCI image layout directory, or a docker save archive')
    .argument('<path>')
    .option('--name <reference>', 'name for the image (required for a plain rootfs tarball)')
    .action(async (path: string, flags: { name?: string }) => {
      const imported = await importImage(path, flags.name);
      process.stdout.write(`${imported.reference}\ndigest: ${imported.manifestDigest}\n`);
    });
  image
    .command('prune')
    .description('delete blobs and disks no image references')
    .action(() => {
      const store = new ContentStore();
      const images = store.list();
      const keep = new Set(images.flatMap((i) => [i.manifestDigest, i.configDigest, ...i.layers.map((l) => l.digest)]));
      // Indexes of multi-platform images are kept only as long as one of their images is: they are not recorded, so they go.
      const keepDisks = new Set(images.map((i) => rootfsPath(i)));
      let freed = 0;
      let count = 0;
      const blobDir = join(store.root, 'blobs', 'sha256');
      for (const hex of safeList(blobDir)) {
        if (keep.has(`sha256:${hex}`)) continue;
        freed += statSync(join(blobDir, hex)).size;
        rmSync(join(blobDir, hex), { force: true });
        count++;
      }
      const diskDir = join(store.root, 'rootfs');
      for (const f of safeList(diskDir)) {
        const p = join(diskDir, f);
        if (keepDisks.has(p)) continue;
        rmSync(p, { force: true });
        count++;
      }
      process.stdout.write(`deleted ${count} files, ${humanBytes(freed)} of blobs\n`);
    });
  return image;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
