import { createHash } from 'node:crypto';

/** Everything an image's bytes depend on. Two builds with equal inputs make interchangeable images. */
export interface ImageBuildInputs {
  /** Bumped when the builder assembles files differently in a way the texts below do not show. */
  builderRevision: number;
  /** `name=version` of the kernel package. */
  kernelPackage: string;
  /** `name=version` of the busybox package. */
  busyboxPackage: string;
  modules: readonly string[];
  initramfsInit: string;
  rootfsInit: string;
  powerButtonHandler: string;
  rootfsSizeMib: number;
  bootArgs: string;
}

/** The SHA256 (hex) that names an image's content: equal inputs, equal key, whatever the field order. */
export function imageCacheKey(inputs: ImageBuildInputs): string {
  const canonical = Object.fromEntries(Object.entries(inputs).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}
