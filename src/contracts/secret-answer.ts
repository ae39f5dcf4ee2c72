import { Type, type Static, type TObject, type TOptional, type TProperties, type TString } from 'typebox';

/** The schema keyword that marks a field as a secret a call mints (an OpenAPI extension). */
export const SECRET_FIELD = 'x-nexus-secret';
/** The schema keyword that marks an answer declared with {@link SecretAnswer}: which fields, and how to get new ones. */
export const SECRET_ANSWER = 'x-nexus-secret-answer';

/** A secret the answer mints: shown in the first answer only; the server keeps no copy it could show again. */
export function Secret(description: string): TString {
  return Type.String({ description: `${description}. In the first answer only: a replay has \`secret_withheld\` instead`, [SECRET_FIELD]: true });
}

export const SecretWithheld = Type.Object(
  {
    fields: Type.Array(Type.String(), { description: 'The fields left out of this answer' }),
    fault_message: Type.String({ description: 'Why they are left out' }),
    suggestion: Type.String({ description: 'How to get a new secret' }),
  },
  {
    additionalProperties: false,
    description: 'Present on a replayed answer (same Idempotency-Key): its secrets were shown once, in the first answer, and are not kept',
  },
);
export type SecretWithheld = Static<typeof SecretWithheld>;

/** What {@link SecretAnswer} records on the schema for the idempotency hook. */
export interface SecretAnswerMark {
  fields: string[];
  renew: string;
}

type WithheldProperties<T extends TProperties, K extends keyof T> = Omit<T, K> & { [P in K]: TOptional<T[P]> } & {
  secret_withheld: TOptional<typeof SecretWithheld>;
};

/**
 * The answer of a call that mints secrets (`fields`, each declared with {@link Secret}), as the
 * route declares it: the first answer carries them; a replay of the call (same Idempotency-Key)
 * answers the same resource without them and with `secret_withheld`, whose suggestion is `renew`.
 * Declared once, on the route's response schema: the idempotency hook reads it from there, and
 * refuses to start a route that answers a {@link Secret} without it.
 */
export function SecretAnswer<T extends TProperties, K extends keyof T & string>(
  schema: TObject<T>,
  fields: readonly K[],
  renew: string,
): TObject<WithheldProperties<T, K>> {
  const properties: TProperties = { ...schema.properties };
  for (const field of fields) {
    const property = schema.properties[field];
    if (!property || (property as Record<string, unknown>)[SECRET_FIELD] !== true)
      throw new Error(`SecretAnswer: ${field} is not a Secret() field of the schema`);
    properties[field] = Type.Optional(property);
  }
  properties.secret_withheld = Type.Optional(SecretWithheld);
  const mark: SecretAnswerMark = { fields: [...fields], renew };
  return Type.Object(properties, { additionalProperties: false, [SECRET_ANSWER]: mark }) as unknown as TObject<WithheldProperties<T, K>>;
}
