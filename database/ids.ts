import { randomBytes } from 'node:crypto';
import { CmkError } from '../common/errors';
import { isValidId } from '../domain/ids';

/** Both engines name files or databases after the IDs: anything outside the grammar is refused before any I/O. */
export function assertEnvironmentIds(tenant: string, env: string): void {
  if (!isValidId(tenant) || !isValidId(env)) throw new CmkError('INVALID_ARGUMENT', 'Tenant and environment IDs are lowercase letters, digits and dashes.');
}

/** `b-<YYYYMMDDhhmmssSSS>-<4 hex>`: a backup's ID, sortable by time, inside the ID grammar. */
export function newBackupId(now = new Date()): string {
  return `b-${now.toISOString().replace(/\D/g, '').slice(0, 17)}-${randomBytes(2).toString('hex')}`;
}

/** A backup ID given by a caller: anything outside the grammar is refused before it names a file or a row. */
export function assertBackupId(id: string): void {
  if (!isValidId(id)) throw new CmkError('INVALID_ARGUMENT', `"${id}" is not a backup ID.`);
}

/** An offline mark as both engines accept it: two timestamps, nothing else. */
export function assertOfflineMark(mark: { lockedAt?: unknown; deleteAt?: unknown } | undefined): void {
  const isTimestamp = (value: unknown): boolean => typeof value === 'string' && value.length <= 40 && !Number.isNaN(Date.parse(value));
  if (!isTimestamp(mark?.lockedAt) || !isTimestamp(mark?.deleteAt)) throw new CmkError('INVALID_ARGUMENT', 'An offline mark needs lockedAt and deleteAt timestamps.');
}
