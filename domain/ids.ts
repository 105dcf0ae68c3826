/**
 * The grammar of what callers name: tenant, environment and region IDs, e-mail addresses, display and key names.
 * Pure: no Node APIs, no I/O.
 */

/** `^[a-z0-9][a-z0-9-]{0,62}$` for tenant, environment and region IDs (DESIGN.md §4). */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const isValidId = (id: unknown): id is string => typeof id === 'string' && ID_PATTERN.test(id);

/**
 * Printable ASCII only (no space, "@", ":" or ","): outside ASCII, lowercasing and compatibility folds make two
 * strings one (the Kelvin sign U+212A lowercases to "k"), so `\u212Aalice@x` could act as, or be registered beside,
 * `kalice@x`.
 */
const EMAIL_PATTERN = /^[!-+\--9;-?A-~]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
export const isValidEmail = (email: unknown): email is string =>
  typeof email === 'string' && email.length <= 254 && EMAIL_PATTERN.test(email);
export const normaliseEmail = (email: string): string => email.toLowerCase();

export const DISPLAY_NAME_MAX = 200;
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;
