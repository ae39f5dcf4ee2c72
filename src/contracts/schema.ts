import { Type, type TInteger, type TObject, type TProperties, type TSchema, type TString, type TStringOptions } from 'typebox';

/**
 * An object schema that rejects unknown fields. Every request body and query is declared with it:
 * a misspelt field must fail loudly, not be silently dropped.
 */
export function StrictObject<T extends TProperties>(properties: T, options: Record<string, unknown> = {}): TObject<T> {
  return Type.Object(properties, { ...options, additionalProperties: false });
}

export const Uuid = Type.String({ format: 'uuid' });

/** The pattern of names of VMs, networks and projects: one DNS label, lower case. */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$';

/** A UUID as Nexus spells its ids (lower-case hex): for ids read from places no schema checks. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const Timestamp = Type.String({ format: 'date-time' });

/**
 * The characters no request string may hold, as the body of a regex character class: NUL, which
 * Postgres refuses in text and jsonb alike, and unpaired UTF-16 surrogates, which jsonb refuses
 * (and text would silently turn into U+FFFD). Either would reach the database as a 500.
 */
export const UNSTORABLE_CHARACTERS = '\\u0000\\ud800-\\udfff';

/** The pattern of free text: anything storable. */
export const STORABLE_TEXT_PATTERN = `^[^${UNSTORABLE_CHARACTERS}]*$`;

type TextOptions = Omit<TStringOptions, 'maxLength' | 'pattern' | 'format' | 'examples'> &
  (
    | { pattern?: undefined; example?: string }
    /** A pattern of its own must refuse the unstorable characters too, and comes with a valid example (tests build requests from it). */
    | { pattern: string; example: string }
  );

/**
 * A request string: at most `maxLength` characters, and nothing the database cannot store (free
 * text) or only what `pattern` allows. Every string a request carries is one of these, a `Uuid` or
 * a `Timestamp`; a unit test walks the published schemas to keep it so.
 */
export function Text(maxLength: number, options: TextOptions = {}): TString {
  const { pattern, example, ...rest } = options;
  return Type.String({
    ...rest,
    maxLength,
    pattern: pattern ?? STORABLE_TEXT_PATTERN,
    ...(example === undefined ? {} : { examples: [example] }),
  });
}

/** The range of a Postgres `integer` column. */
export const INT32_MAX = 2_147_483_647;
/**
 * The largest integer a request may carry for a `bigint` column: JSON numbers are doubles, exact
 * only up to 2^53 - 1, well inside int64.
 */
export const INT64_SAFE_MAX = Number.MAX_SAFE_INTEGER;

type IntegerOptions = { minimum?: number; maximum?: number; default?: number; description?: string };

/** A request integer that fits an `integer` column: 0 to 2^31 - 1 unless narrowed. */
export function Int32(options: IntegerOptions = {}): TInteger {
  return boundedInteger(options, -INT32_MAX - 1, INT32_MAX);
}

/** A request integer that fits a `bigint` column and a JSON number exactly: 0 to 2^53 - 1 unless narrowed. */
export function Int64(options: IntegerOptions = {}): TInteger {
  return boundedInteger(options, -INT64_SAFE_MAX, INT64_SAFE_MAX);
}

function boundedInteger(options: IntegerOptions, lowest: number, highest: number): TInteger {
  const minimum = options.minimum ?? 0;
  const maximum = options.maximum ?? highest;
  if (minimum < lowest || maximum > highest || minimum > maximum) throw new Error(`integer bounds ${minimum}..${maximum} are outside ${lowest}..${highest}`);
  return Type.Integer({ ...options, minimum, maximum });
}

/**
 * A bounded map of names to values (tags, labels). TypeBox's Record would put the key rule in
 * `patternProperties`, which lets every other key through and does not survive into an OpenAPI
 * 3.0 document; here keys are checked by `propertyNames`, which Ajv enforces and the published
 * document shows, and their number by `maxProperties`.
 */
export function TextMap<V extends TSchema>(key: TString, value: V, options: { maxEntries: number; description: string; default?: Record<string, never> }) {
  const { maxEntries, ...rest } = options;
  return Type.Record(Type.String(), value, { ...rest, maxProperties: maxEntries, propertyNames: key });
}

/** The project a new resource goes to, when a request names one. */
export const ProjectField = Text(63, {
  minLength: 1,
  pattern: DNS_LABEL_PATTERN,
  example: 'default',
  description: "Default: the token's project (admin tokens: default)",
});
