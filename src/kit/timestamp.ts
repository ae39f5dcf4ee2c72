import { NexusError } from './nexus-error.js';

/** RFC 3339's date-time, in every spelling JSON Schema's `date-time` format accepts. */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
/** The years a `timestamptz` is read back in as written: Postgres has no year 0, and prints past 9999 in a form it does not read. */
const FIRST_YEAR = 1;
const LAST_YEAR = 9999;

/**
 * The instant an RFC 3339 date-time names, or undefined when it names none the database can
 * store and give back. Stricter than the format check (ajv-formats) and than `Date`, each of which
 * lets through what the other refuses: a leap second (`23:59:60`, valid RFC 3339, an invalid
 * Date that a driver throws on), a day past its month's end (`Date` rolls Feb 30 over to March),
 * and years outside 0001-9999 once the offset is applied (year 0000 is a Date, but Postgres
 * refuses it). A date-time is accepted only if its fields come back unchanged from the Date made
 * of them.
 */
export function instantOf(text: string): Date | undefined {
  const match = DATE_TIME.exec(text);
  if (!match) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const milliseconds = Number(`0.${match[7] ?? '0'}`) * 1000;
  const local = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, Math.floor(milliseconds));
  const roundTrips =
    local.getUTCFullYear() === year &&
    local.getUTCMonth() === month - 1 &&
    local.getUTCDate() === day &&
    local.getUTCHours() === hour &&
    local.getUTCMinutes() === minute &&
    local.getUTCSeconds() === second;
  if (!roundTrips) return undefined;
  let offsetMinutes = 0;
  if (match[8] === undefined) {
    const offsetHours = Number(match[10]);
    const offsetRest = Number(match[11]);
    if (offsetHours > 23 || offsetRest > 59) return undefined;
    offsetMinutes = (match[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetRest);
  }
  const instant = new Date(local.getTime() - offsetMinutes * 60_000);
  const utcYear = instant.getUTCFullYear();
  return utcYear >= FIRST_YEAR && utcYear <= LAST_YEAR ? instant : undefined;
}

/** Whether `text` is a date-time {@link instantOf} accepts: the `date-time` format of every request schema. */
export function isStorableTimestamp(text: string): boolean {
  return instantOf(text) !== undefined;
}

/**
 * The instant a request's date-time field names; 400 `validation_failed` naming the field when it
 * names none (see {@link instantOf}). Every date-time a request carries is read through here.
 */
export function parseTimestamp(text: string, field: string): Date {
  const instant = instantOf(text);
  if (!instant) {
    throw new NexusError(
      'validation_failed',
      `${field} must be an RFC 3339 date-time between years 0001 and 9999 whose fields exist (got ${JSON.stringify(text.slice(0, 64))})`,
      {
        suggestion: 'Give a time like 2026-01-31T12:00:00Z: no leap second (:60), no day past the end of its month.',
      },
    );
  }
  return instant;
}
