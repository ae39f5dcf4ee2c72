import { type Kysely, type Selectable, sql } from 'kysely';
import type { HostImage } from '../../../contracts/image-api.js';
import type { ImageFilter, ImageRecord, ImageRepo } from '../../ports/image-repo.js';
import type { ImageTable, Schema } from './schema.js';

type ImageRow = Selectable<ImageTable> & { host_ids: string[] | null };

/** Images live in the default project until projects arrive with access control. */
const PROJECT = 'default';

export class SqlImageRepo implements ImageRepo {
  constructor(private readonly db: Kysely<Schema>) {}

  async syncHost(hostId: string, images: HostImage[], now: Date): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const project = await trx.selectFrom('project').select('id').where('name', '=', PROJECT).executeTakeFirstOrThrow();
      const held: Array<{ image_id: string; path: string }> = [];
      for (const image of images) {
        // Content is the identity: a second sighting only refreshes updated_at.
        const { id } = await trx
          .insertInto('image')
          .values({
            project_id: project.id,
            name: image.name,
            kind: image.kind,
            format: image.format,
            size_bytes: image.size_bytes,
            sha256: image.sha256,
            boot_args: image.boot_args ?? null,
          })
          .onConflict((conflict) => conflict.columns(['project_id', 'kind', 'sha256']).doUpdateSet({ updated_at: now }))
          .returning('id')
          .executeTakeFirstOrThrow();
        held.push({ image_id: id, path: image.path });
      }
      await trx.deleteFrom('host_image').where('host_id', '=', hostId).execute();
      if (held.length > 0) {
        await trx
          .insertInto('host_image')
          .values(held.map((row) => ({ host_id: hostId, image_id: row.image_id, path: row.path, updated_at: now })))
          // Two files of one content in one report: either path serves.
          .onConflict((conflict) => conflict.columns(['host_id', 'image_id']).doNothing())
          .execute();
      }
    });
  }

  async list(filter: ImageFilter): Promise<ImageRecord[]> {
    let query = this.selectImages().orderBy('image.name').orderBy('image.kind').orderBy('image.created_at', 'desc');
    if (filter.kind) query = query.where('image.kind', '=', filter.kind);
    if (filter.name) query = query.where('image.name', '=', filter.name);
    return (await query.execute()).map(toRecord);
  }

  async get(id: string): Promise<ImageRecord | undefined> {
    const row = await this.selectImages().where('image.id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async getMany(ids: readonly string[]): Promise<ImageRecord[]> {
    if (ids.length === 0) return [];
    return (
      await this.selectImages()
        .where('image.id', 'in', [...ids])
        .execute()
    ).map(toRecord);
  }

  async locate(ids: readonly string[]): Promise<Map<string, Map<string, string>>> {
    const located = new Map<string, Map<string, string>>();
    if (ids.length === 0) return located;
    const rows = await this.db
      .selectFrom('host_image')
      .select(['host_id', 'image_id', 'path'])
      .where('image_id', 'in', [...ids])
      .execute();
    for (const row of rows) {
      const paths = located.get(row.host_id) ?? new Map<string, string>();
      paths.set(row.image_id, row.path);
      located.set(row.host_id, paths);
    }
    return located;
  }

  private selectImages() {
    return this.db
      .selectFrom('image')
      .innerJoin('project', 'project.id', 'image.project_id')
      .where('project.name', '=', PROJECT)
      .selectAll('image')
      .select(
        sql<string[] | null>`(SELECT array_agg(host_image.host_id::text ORDER BY host_image.host_id) FROM host_image WHERE host_image.image_id = image.id)`.as(
          'host_ids',
        ),
      );
  }
}

function toRecord(row: ImageRow): ImageRecord {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    format: row.format,
    sizeBytes: Number(row.size_bytes),
    sha256: row.sha256,
    bootArgs: row.boot_args,
    hostIds: row.host_ids ?? [],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
