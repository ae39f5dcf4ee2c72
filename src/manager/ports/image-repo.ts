import type { HostImage, ImageKind } from '../../contracts/image-api.js';

export interface ImageRecord {
  id: string;
  name: string;
  kind: ImageKind;
  format: string;
  sizeBytes: number;
  sha256: string;
  bootArgs: string | null;
  /** The hosts holding it now, in id order. */
  hostIds: string[];
  createdAt: Date;
  updatedAt: Date;
}

export interface ImageFilter {
  kind?: ImageKind;
  name?: string;
}

/** The image registry: images by content, and where each host keeps its copy. */
export interface ImageRepo {
  /**
   * Makes the host's holdings exactly `images`, in one transaction: new content is registered,
   * paths are updated, and what the host no longer reports stops being placed there.
   */
  syncHost(hostId: string, images: HostImage[], now: Date): Promise<void>;
  list(filter: ImageFilter): Promise<ImageRecord[]>;
  get(id: string): Promise<ImageRecord | undefined>;
  getMany(ids: readonly string[]): Promise<ImageRecord[]>;
  /** Where each host keeps the given images: host id -> image id -> path on that host. */
  locate(ids: readonly string[]): Promise<Map<string, Map<string, string>>>;
}
