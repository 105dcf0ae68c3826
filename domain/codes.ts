/**
 * The stable refusal codes of DESIGN.md §4, in the order the checks run (the first failing check answers).
 * Pure data: read by workflows (as ApplicationFailure types), the API service, the CLI and the tests.
 */
export const ERROR_CODES = [
  // Extends §4: no verified bearer token (authentication precedes every other check; HTTP 401).
  'UNAUTHENTICATED',
  // Too many requests from this caller or on this tenant (HTTP 429 with Retry-After; api/ratelimit.ts).
  'RATE_LIMITED',
  'FORBIDDEN',
  'NOT_FOUND',
  // Extends §4: the tenant exists but its workflow is closed (terminated or failed); an operator repairs it
  // (docs/RUNBOOK.md). HTTP 503. Nothing was changed.
  'TENANT_UNAVAILABLE',
  'INVALID_ARGUMENT',
  'INVALID_KEY_FILE',
  'UNSUPPORTED_KEY',
  'PASSWORD_REQUIRED',
  'WRONG_PASSWORD',
  'WEAK_PASSWORD',
  'ALREADY_EXISTS',
  'ENVIRONMENT_LOCKED',
  'LOCKED_ENVIRONMENTS_EXIST',
  'KEY_NOT_ACTIVE',
  'TENANT_NAME_MISMATCH',
  'KEY_MISMATCH',
  // Extends §4 (issue 19): the first tenant key applied to an environment of the tenant needs the opt-in
  // (`env apply --accept-risk`), once per tenant. The last of the state codes.
  'RISK_NOT_ACCEPTED',
  'KEY_CHANGE_TOO_SOON',
  'LOCK_EMBARGO',
  'UNLOCK_TOO_SOON',
  // R6: no global or service administrator removed while a key change can still be rolled back.
  'ROLLBACK_WINDOW_OPEN',
  'OPERATION_IN_PROGRESS',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** HTTP status the API answers a refusal with. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'UNAUTHENTICATED':
      return 401;
    case 'RATE_LIMITED':
      return 429;
    case 'FORBIDDEN':
      return 403;
    case 'NOT_FOUND':
      return 404;
    case 'TENANT_UNAVAILABLE':
      return 503;
    case 'ALREADY_EXISTS':
    case 'ENVIRONMENT_LOCKED':
    case 'LOCKED_ENVIRONMENTS_EXIST':
    case 'KEY_NOT_ACTIVE':
    case 'TENANT_NAME_MISMATCH':
    case 'KEY_MISMATCH':
    case 'RISK_NOT_ACCEPTED':
    case 'KEY_CHANGE_TOO_SOON':
    case 'LOCK_EMBARGO':
    case 'UNLOCK_TOO_SOON':
    case 'ROLLBACK_WINDOW_OPEN':
    case 'OPERATION_IN_PROGRESS':
      return 409;
    default:
      return 400;
  }
}
