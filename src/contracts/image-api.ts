import { Type, type Static } from 'typebox';
import { Int64, StrictObject, Text, Timestamp, Uuid } from './schema.js';

/** What an image file is for: a kernel to boot, an initramfs, or a disk (root or extra drive). */
export const ImageKind = Type.Union([Type.Literal('kernel'), Type.Literal('initrd'), Type.Literal('rootfs')]);
export type ImageKind = Static<typeof ImageKind>;

const Sha256 = Text(64, { pattern: '^[0-9a-f]{64}$', example: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });

/**
 * One image file an agent holds in its image store, as it reports it with every heartbeat. The
 * manager registers it by content (kind + sha256), so the same file on many hosts is one image.
 */
export const HostImage = StrictObject({
  name: Text(63, { minLength: 1, pattern: '^[A-Za-z0-9._-]+$', example: 'default', description: 'The build it belongs to, e.g. `default`' }),
  kind: ImageKind,
  format: Text(32, { minLength: 1, description: 'e.g. `vmlinux`, `cpio.gz`, `ext4`' }),
  path: Text(4096, { minLength: 1, description: 'Absolute, under the agent image store' }),
  size_bytes: Int64({ description: 'A `bigint` column' }),
  sha256: Sha256,
  boot_args: Type.Optional(Text(4096, { description: 'kernel images: the command line the image boots with' })),
});
export type HostImage = Static<typeof HostImage>;

/** At most this many image files per host report; an image store holds a handful of builds. */
export const MAX_HOST_IMAGES = 300;

/** An image in the registry: content-addressed, held by zero or more hosts. */
export const Image = Type.Object(
  {
    id: Uuid,
    name: Type.String({ description: 'The build it came from; versions of a build share it' }),
    kind: ImageKind,
    format: Type.String(),
    size_bytes: Type.Integer(),
    sha256: Type.String(),
    boot_args: Type.Union([Type.String(), Type.Null()], { description: 'kernel images: the default boot_args of VMs made from them' }),
    host_ids: Type.Array(Uuid, { description: 'The hosts that hold it now; a VM made from it is placed on one of them' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Image = Static<typeof Image>;

export const ImageListQuery = StrictObject({
  kind: Type.Optional(ImageKind),
  name: Type.Optional(Text(63)),
});
export type ImageListQuery = Static<typeof ImageListQuery>;

export const ImageList = Type.Object({ items: Type.Array(Image) }, { additionalProperties: false });

export const ImageIdParams = StrictObject({ id: Uuid });
