import { CmkError } from '../common/errors';
import { isValidId } from '../workflows/rules';

/** Both engines name files or databases after the IDs: anything outside the grammar is refused before any I/O. */
export function assertEnvironmentIds(tenant: string, env: string): void {
  if (!isValidId(tenant) || !isValidId(env)) throw new CmkError('INVALID_ARGUMENT', 'Tenant and environment IDs are lowercase letters, digits and dashes.');
}
