/**
 * How the Azure Key Vault adapter (vault/azure.ts) names the Azure key of a cmk key version, apart from the adapter so
 * that the SQL Server engine (EKM opens keys by this name) does not load the Azure SDK.
 */
import { createHash } from 'node:crypto';
import type { KeyRef } from './types';

/**
 * SQL Server's EKM connector opens a Key Vault key by a name of at most 26 letters, digits and dashes
 * (docs/SQLSERVER.md), and TDE under a tenant key is the product's point: every Azure key name fits that.
 */
const AZURE_NAME_PREFIX = 'cmk-';
const AZURE_NAME_HASH_CHARS = 22;

/**
 * The Azure key name of a cmk key version: `cmk-` and 22 hex digits (88 bits) of SHA-256 over `<name>/<version>`,
 * 26 characters in all, as SQL Server's EKM connector requires. The cmk name and version are in the key's tags;
 * the adapter checks that the tags and the name agree.
 */
export function azureKeyName({ name, version }: KeyRef): string {
  return `${AZURE_NAME_PREFIX}${createHash('sha256').update(`${name}/${version}`).digest('hex').slice(0, AZURE_NAME_HASH_CHARS)}`;
}
