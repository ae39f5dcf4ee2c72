import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type HostImage, MAX_HOST_IMAGES } from '../../contracts/image-api.js';
import { type ImageFileRole, findImageFileProblem, imageFilePath, readImageManifest } from '../../images/image-manifest.js';

const FORMAT: Record<ImageFileRole, string> = { kernel: 'vmlinux', initrd: 'cpio.gz', rootfs: 'ext4' };

/**
 * The images this host can boot: every complete build under `<run-dir>/images/` (a folder with a
 * manifest whose files are all there at their recorded sizes), one entry per file. Folders without
 * a manifest (raw files for dev mode) are not images and are skipped; a broken build is skipped and
 * logged once per problem.
 */
export class ImageStore {
  private readonly reported = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  async list(): Promise<HostImage[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    } catch {
      return [];
    }
    const images: HostImage[] = [];
    for (const name of names.sort()) {
      const dir = join(this.dir, name);
      const manifest = await readImageManifest(dir);
      if (!manifest) continue;
      const problem = await findImageFileProblem(dir, manifest);
      if (problem) {
        this.warnOnce(`${name}: ${problem}`);
        continue;
      }
      for (const role of ['kernel', 'initrd', 'rootfs'] as const) {
        const file = manifest.files[role];
        images.push({
          name,
          kind: role,
          format: FORMAT[role],
          path: imageFilePath(dir, file),
          size_bytes: file.size_bytes,
          sha256: file.sha256,
          ...(role === 'kernel' ? { boot_args: manifest.boot_args } : {}),
        });
      }
    }
    if (images.length > MAX_HOST_IMAGES) {
      this.warnOnce(`${images.length} image files: only the first ${MAX_HOST_IMAGES} are reported`);
      return images.slice(0, MAX_HOST_IMAGES);
    }
    return images;
  }

  private warnOnce(problem: string): void {
    if (this.reported.has(problem)) return;
    this.reported.add(problem);
    this.log.warn({ images_dir: this.dir, problem }, 'an image in the store is not usable');
  }
}
