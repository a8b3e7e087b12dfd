import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pack } from 'tar-stream';

/**
 * A directory (an OCI image layout) as a tar stream, read file by file as the
 * stream is consumed: what `Images.import` uploads for a directory.
 */
export async function* tarDirectory(root: string): AsyncGenerator<Uint8Array> {
  const p = pack();
  const filling = (async () => {
    const walk = async (dir: string): Promise<void> => {
      for (const name of readdirSync(dir).sort()) {
        const path = join(dir, name);
        const st = lstatSync(path);
        const header = { name: relative(root, path), mode: st.mode & 0o7777, mtime: st.mtime };
        if (st.isDirectory()) {
          p.entry({ ...header, type: 'directory' });
          await walk(path);
        } else if (st.isSymbolicLink()) {
          p.entry({ ...header, type: 'symlink', linkname: readlinkSync(path) });
        } else if (st.isFile()) {
          await new Promise<void>((resolve, reject) => {
            const entry = p.entry({ ...header, size: st.size }, (err) => (err ? reject(err) : resolve()));
            createReadStream(path).on('error', reject).pipe(entry);
          });
        }
      }
    };
    await walk(root);
    p.finalize();
  })();
  filling.catch((err) => p.destroy(err));
  for await (const chunk of p) yield chunk as Uint8Array;
  await filling;
}
