import type { StoredVmSpec, VmRecord } from '../ports/vm-repo.js';

/**
 * The VM's spec with each file given by image id at its path on the VM's host, as placement
 * recorded it (a row placed before that record existed carries the path in the spec already).
 */
export function placedSpec(vm: Pick<VmRecord, 'spec' | 'status'>): StoredVmSpec {
  const { spec } = vm;
  const paths = vm.status.placedPaths;
  const pathOf = (id: string | null | undefined, path: string | null): string | null => (id ? (paths[id] ?? path) : path);
  return {
    ...spec,
    kernel_path: pathOf(spec.kernel_image_id, spec.kernel_path),
    initrd_path: pathOf(spec.initrd_image_id, spec.initrd_path),
    rootfs_path: pathOf(spec.rootfs_image_id, spec.rootfs_path),
    extra_drives: spec.extra_drives.map((drive) => ({ ...drive, path: pathOf(drive.image_id, drive.path) })),
  };
}

/** The image ids a VM's files come from. */
export function imageIdsOf(spec: StoredVmSpec): string[] {
  const ids = [spec.kernel_image_id, spec.initrd_image_id, spec.rootfs_image_id, ...spec.extra_drives.map((drive) => drive.image_id)];
  return [...new Set(ids.filter((id): id is string => typeof id === 'string'))];
}
