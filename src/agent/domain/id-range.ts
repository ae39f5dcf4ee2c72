/** An inclusive range of numeric user (and group) ids: `100000-165535`. */
export interface IdRange {
  first: number;
  last: number;
}

/** The highest id a range may hold: 2^32 - 1 is `(uid_t) -1`, which the kernel's calls read as "no id". */
export const MAX_ID = 4_294_967_294;

/** `first-last` (both inclusive, never 0: root) or undefined. */
export function parseIdRange(text: string): IdRange | undefined {
  const match = /^([1-9][0-9]{0,9})-([1-9][0-9]{0,9})$/.exec(text);
  if (!match) return undefined;
  const [first, last] = [Number(match[1]), Number(match[2])];
  if (last > MAX_ID || first > last) return undefined;
  return { first, last };
}

export function idInRange(range: IdRange, id: number): boolean {
  return Number.isInteger(id) && id >= range.first && id <= range.last;
}

/** How many ids the range holds. */
export function idRangeSize(range: IdRange): number {
  return range.last - range.first + 1;
}

/**
 * The lowest id of the range that is not in use, or undefined when every one is. The walk stops
 * at the first free id, so it visits at most `inUse.size + 1` ids whatever the range's size.
 */
export function lowestFreeId(range: IdRange, inUse: ReadonlySet<number>): number | undefined {
  for (let id = range.first; id <= range.last; id++) if (!inUse.has(id)) return id;
  return undefined;
}
