import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostImage, Image, ImageKind, ImageListQuery } from '../../contracts/image-api.js';
import type { Clock } from '../../kit/clock.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { ImageRecord, ImageRepo } from '../ports/image-repo.js';

/**
 * Use cases of the image registry: hosts report their image stores with their heartbeats, and
 * callers list images and name them by id when creating VMs.
 */
export class ImageRegistry {
  /** The digest of each host's last stored report, so an unchanged store costs no write. */
  private readonly synced = new Map<string, string>();

  constructor(
    private readonly images: ImageRepo,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Records what a host holds now (from its heartbeat). */
  async syncHost(hostId: string, images: HostImage[]): Promise<void> {
    const digest = createHash('sha256').update(JSON.stringify(images)).digest('hex');
    if (this.synced.get(hostId) === digest) return;
    this.synced.delete(hostId);
    await this.images.syncHost(hostId, images, this.clock.now());
    this.synced.set(hostId, digest);
    this.log.info({ host_id: hostId, images: images.length }, 'host image store recorded');
  }

  async list(query: ImageListQuery): Promise<Image[]> {
    return (await this.images.list({ kind: query.kind, name: query.name })).map(toImage);
  }

  async get(id: string): Promise<Image> {
    const image = await this.images.get(id);
    if (!image) throw notFound(id);
    return toImage(image);
  }

  /**
   * The images a new VM names, checked: each must exist (404) and be of the kind its field asks
   * for (400). Answers them by id.
   */
  async resolve(wanted: ReadonlyArray<{ id: string; kind: ImageKind; field: string }>): Promise<Map<string, ImageRecord>> {
    const found = new Map((await this.images.getMany([...new Set(wanted.map((want) => want.id))])).map((image) => [image.id, image]));
    for (const want of wanted) {
      const image = found.get(want.id);
      if (!image) throw notFound(want.id, want.field);
      if (image.kind !== want.kind) {
        throw new NexusError('validation_failed', `${want.field}: image ${want.id} (${image.name}) is a ${image.kind} image, not a ${want.kind} image`, {
          suggestion: `GET /v1/images?kind=${want.kind} lists the ${want.kind} images.`,
        });
      }
    }
    return found;
  }
}

function notFound(id: string, field?: string): NexusError {
  return new NexusError('not_found', `${field ? `${field}: ` : ''}no image ${id}`, {
    suggestion: 'GET /v1/images lists the images the hosts hold; build one on a host with `nexus image build`.',
  });
}

function toImage(record: ImageRecord): Image {
  return {
    id: record.id,
    name: record.name,
    kind: record.kind,
    format: record.format,
    size_bytes: record.sizeBytes,
    sha256: record.sha256,
    boot_args: record.bootArgs,
    host_ids: record.hostIds,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  };
}
