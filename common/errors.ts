import type { ErrorCode } from '../domain/codes';

/**
 * A refusal a tenant administrator can act on: a stable code (DESIGN.md §4) and one plain sentence.
 * Thrown by adapters, key-file parsers and the API service. Never carries key material in its message.
 */
export class CmkError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CmkError';
  }
}

export function isCmkError(err: unknown): err is CmkError {
  return err instanceof CmkError;
}
