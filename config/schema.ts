/**
 * How each section of the configuration reads its environment variables: a zod schema per section, one per variable
 * inside it, built for the variable's name so that a refusal can say which variable and what was wrong with it.
 * The first refusal stops the process as a ConfigError, worded as before. Secrets are never quoted: a variable that
 * holds one refuses without its value.
 */
import { z } from 'zod';
import { parseDuration } from '../domain/policy';
import { ConfigError } from './error';

export type Env = Record<string, string | undefined>;

/** One variable's schema, made for its name (the messages name it). */
export type Variable<T> = (name: string) => z.ZodType<T, string | undefined>;

type Values<V> = { [K in keyof V]: V[K] extends Variable<infer T> ? T : never };

/** A section of the configuration: its variables, each read by its own schema; other variables are left alone. */
export function section<V extends Record<string, Variable<unknown>>>(variables: V): z.ZodType<Values<V>, Env> {
  const shape = Object.fromEntries(Object.entries(variables).map(([name, read]) => [name, read(name)]));
  // z.object's inferred type is keyed by string; the mapped type above is the same object, keyed by the variable names.
  return z.object(shape) as unknown as z.ZodType<Values<V>, Env>;
}

/** Reads one section from the environment, or throws the first refusal as a ConfigError. */
export function readSection<T>(schema: z.ZodType<T, Env>, env: Env): T {
  // A plain copy: process.env is an exotic object that zod's record schema would not take for one.
  const result = schema.safeParse({ ...env });
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  // Our own refusals (custom issues) are whole sentences; zod's own would not name the variable, so it is added.
  if (issue?.code === 'custom') throw new ConfigError(issue.message);
  throw new ConfigError(`${issue?.path.join('.') || 'The configuration'}: ${issue?.message ?? 'not valid'}.`);
}

/** A refusal inside a schema's transform: the sentence the ConfigError will carry. */
export function refuse(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

/** What a variable's reader answers for text it refuses: the whole sentence of the ConfigError. */
export class Refused {
  constructor(readonly message: string) {}
}

/**
 * A variable whose text `convert` turns into a value, or a Refused naming the variable; unset (or empty, or only
 * spaces when `trim`) is `fallback`.
 */
export function parsed<T, F = T>(fallback: F, convert: (text: string, name: string) => T | Refused, options: { trim?: boolean } = {}): Variable<T | F> {
  return (name) =>
    z
      .string()
      .optional()
      .transform((raw, ctx): T | F => {
        const text = options.trim ? raw?.trim() : raw;
        if (text === undefined || text === '') return fallback;
        const value = convert(text, name);
        return value instanceof Refused ? refuse(ctx, value.message) : value;
      });
}

/** Free text; unset or empty is `fallback`. */
export const text = <F extends string | undefined>(fallback: F): Variable<string | F> => parsed<string, F>(fallback, (value) => value);

/** One of a few words (`allowed`); `what` names the kind in the refusal: `X="y" is not a mailer; use outbox or smtp.` */
export function oneOf<T extends string>(allowed: readonly T[], fallback: T, what: string): Variable<T> {
  return parsed(fallback, (value, name) =>
    (allowed as readonly string[]).includes(value) ? (value as T) : new Refused(`${name}="${value}" is not ${what}; use ${allowed.join(' or ')}.`),
  );
}

/** `true` or `false`, as a boolean. */
export const trueOrFalse = (fallback: boolean): Variable<boolean> =>
  parsed(fallback, (value, name) => (value === 'true' ? true : value === 'false' ? false : new Refused(`${name}="${value}" is not true or false; use true or false.`)));

/** A duration such as 24h, 72h, 28d, 1h or 30s (domain/policy.ts), in milliseconds. */
export const duration = (fallback: number): Variable<number> =>
  parsed(fallback, (value, name) => parseDuration(value) ?? new Refused(`${name}="${value}" is not a duration such as 24h, 72h, 28d, 1h or 30s.`));

/** A TCP port, 0 to 65535. */
export const port = (fallback: number): Variable<number> =>
  parsed(fallback, (value, name) => {
    const number = Number(value);
    return Number.isInteger(number) && number >= 0 && number <= 65535 ? number : new Refused(`${name}="${value}" is not a TCP port.`);
  });

/** A whole number of at least `least`; absent when unset. */
export const wholeNumber = (least: number): Variable<number | undefined> =>
  parsed(
    undefined,
    (value, name) => {
      const number = Number(value);
      return Number.isInteger(number) && number >= least ? number : new Refused(`${name}="${value}" is not a whole number of at least ${least}.`);
    },
    { trim: true },
  );
