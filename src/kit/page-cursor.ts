import { NexusError } from './nexus-error.js';

/** Says whether one field of a cursor has the shape the listing gives out. */
export type CursorField = (text: string) => boolean;

const SEPARATOR = '|';

/**
 * An opaque page cursor: the fields that place a page's last row in its listing's order (a
 * name; a time and an id), joined and base64url-encoded. No field may hold the separator `|`.
 */
export function encodeCursor(fields: readonly string[]): string {
  return Buffer.from(fields.join(SEPARATOR), 'utf8').toString('base64url');
}

/**
 * The fields of a cursor {@link encodeCursor} made, each checked by its rule: a cursor that does
 * not decode to as many fields of those shapes was not given out by the API (or was altered), and
 * is a 400 before any of it reaches a query. A time field must be checked for what the database
 * can read back (isStorableTimestamp), not for what `Date` parses: `Date` takes Feb 30 and year 0000.
 */
export function decodeCursor(cursor: string, fields: readonly CursorField[]): string[] {
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split(SEPARATOR);
  if (parts.length !== fields.length || !parts.every((part, index) => fields[index]?.(part) === true)) {
    throw new NexusError('validation_failed', 'cursor is not one this API gave out', {
      suggestion: 'Pass next_cursor from the previous page as it came, or leave cursor out to start from the first page.',
    });
  }
  return parts;
}
