import { Type, type TProperties, type TObject } from 'typebox';

/**
 * An object schema that rejects unknown fields. Every request body and query is declared with it:
 * a misspelt field must fail loudly, not be silently dropped.
 */
export function StrictObject<T extends TProperties>(properties: T, options: Record<string, unknown> = {}): TObject<T> {
  return Type.Object(properties, { ...options, additionalProperties: false });
}

export const Uuid = Type.String({ format: 'uuid' });
export const Timestamp = Type.String({ format: 'date-time' });
