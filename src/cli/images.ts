import { Command } from 'commander';
import { Images } from '../sdk/images.js';
import { connectOptions } from './client.js';
import { humanAge, humanBytes, table } from './format.js';

/** `vmbox images`: the table of the server's images, built-in ones first. */
export function imagesCommand(): Command {
  return new Command('images')
    .description('list images')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }) => {
      const images = await Images.list(connectOptions);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
        return;
      }
      const rows = images.map((i) => [
        i.reference,
        i.builtin ? '(built-in)' : i.digest.slice(0, 19),
        i.size ? humanBytes(i.size) : '-',
        i.created ? humanAge(i.created) : '-',
      ]);
      process.stdout.write(`${table(['REFERENCE', 'DIGEST', 'SIZE', 'CREATED'], rows)}\n`);
    });
}

/** `vmbox rmi REF`: forget an image; refuses while a sandbox uses it unless --force. */
export function rmiCommand(): Command {
  return new Command('rmi')
    .description('remove an image (its blobs go with `vmbox image prune`)')
    .argument('<reference>')
    .option('-f, --force', 'untag it even while sandboxes use it (their disk stays until they are removed)')
    .action(async (ref: string, flags: { force?: boolean }) => {
      const r = await Images.remove(ref, { force: flags.force, ...connectOptions });
      process.stdout.write(`removed ${r.reference}\n`);
      if (r.keptFor.length > 0)
        process.stderr.write(`its disk stays until ${r.keptFor.join(', ')} ${r.keptFor.length > 1 ? 'are' : 'is'} removed\n`);
    });
}

/** `vmbox image inspect|import|prune`. */
export function imageCommand(): Command {
  const image = new Command('image').description('inspect and manage images');
  image
    .command('inspect')
    .description('show an image’s config: env, entrypoint, cmd, workdir, user, layers')
    .argument('<reference>')
    .action(async (ref: string) => {
      process.stdout.write(`${JSON.stringify(await Images.inspect(ref, connectOptions), null, 2)}\n`);
    });
  image
    .command('import')
    .description('import a rootfs tarball, an OCI image layout directory, or a docker save archive')
    .argument('<path>')
    .option('--name <reference>', 'name for the image (required for a plain rootfs tarball)')
    .action(async (path: string, flags: { name?: string }) => {
      const imported = await Images.import(path, { name: flags.name, ...connectOptions });
      process.stdout.write(`${imported.reference}\ndigest: ${imported.digest}\n`);
    });
  image
    .command('prune')
    .description('delete blobs and disks that no image and no sandbox refers to')
    .action(async () => {
      const r = await Images.prune(connectOptions);
      process.stdout.write(`deleted ${r.deleted} files, ${humanBytes(r.freedBytes)}\n`);
    });
  return image;
}
