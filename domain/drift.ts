/**
 * Drift: an environment whose database or vault no longer says what its tenant workflow believes — a key record
 * re-wrapped or replaced behind cmk's back, a protector key deleted or disabled in the vault. Detection only reads;
 * it never repairs (docs/RUNBOOK.md says what the operator does). Pure: the drift check's activities gather what the
 * database and the vault say, and this module alone decides what differs.
 */
import type { EnvironmentRecord, Protection } from './model';

/** What the tenant workflow believes of one environment. */
export type BelievedProtector = Pick<EnvironmentRecord, 'id' | 'state' | 'protection' | 'keyThumbprint'>;

/** What the database and the vault say of one environment, as the drift check read them. */
export interface ObservedProtector {
  /** The protector in the database's own key record; undefined when the database has none (or does not exist). */
  protector?: { kind: Protection; name: string; version: string; thumbprint: string };
  /** The key record could not be read (the database disagrees with itself, or refused): the reason, for the operator. */
  unreadable?: string;
  /** The vault's key version the key record names: undefined when the vault does not hold it. */
  vaultKey?: { thumbprint: string; enabled: boolean };
}

export type DriftKind = 'database-missing' | 'key-record-unreadable' | 'protection' | 'thumbprint' | 'vault-key-missing' | 'vault-key-disabled' | 'vault-key-replaced';

export interface DriftDifference {
  kind: DriftKind;
  /** What cmk believes, and what was found: thumbprints, provider/tenant, or a short phrase. */
  expected: string;
  found: string;
}

/** States in which the database legitimately moves between protectors: no verdict until they settle. */
const SETTLING: ReadonlySet<EnvironmentRecord['state']> = new Set(['Applying', 'Reverting', 'Reprotecting', 'Deleted']);

/** No verdict (and nothing to read) while an environment moves between protectors, or once it is deleted. */
export const isSettling = (state: EnvironmentRecord['state']): boolean => SETTLING.has(state);

/**
 * The differences between belief and observation, in a stable order; empty when the environment is as cmk believes
 * (or is between protectors, or deleted). A locked environment's key is withdrawn on purpose: only its key record is
 * compared, not the vault.
 */
export function findDrift(believed: BelievedProtector, observed: ObservedProtector): DriftDifference[] {
  if (isSettling(believed.state)) return [];
  if (observed.unreadable !== undefined) return [{ kind: 'key-record-unreadable', expected: 'a readable key record', found: observed.unreadable }];
  const actual = observed.protector;
  if (!actual) return [{ kind: 'database-missing', expected: 'a database with its key record', found: 'none' }];
  const differences: DriftDifference[] = [];
  if (actual.kind !== believed.protection) differences.push({ kind: 'protection', expected: believed.protection, found: actual.kind });
  if (actual.thumbprint !== believed.keyThumbprint) differences.push({ kind: 'thumbprint', expected: believed.keyThumbprint, found: actual.thumbprint });
  if (believed.state === 'Locked') return differences;
  const key = observed.vaultKey;
  if (!key) differences.push({ kind: 'vault-key-missing', expected: `${actual.name} version ${actual.version} in the vault`, found: 'none' });
  else if (key.thumbprint !== actual.thumbprint) differences.push({ kind: 'vault-key-replaced', expected: actual.thumbprint, found: key.thumbprint });
  else if (!key.enabled) differences.push({ kind: 'vault-key-disabled', expected: 'enabled', found: 'disabled' });
  return differences;
}

/** One sentence an administrator understands, for mail, `env list` and `drift check`. */
export function describeDrift(differences: readonly DriftDifference[]): string {
  return differences
    .map((d) => {
      switch (d.kind) {
        case 'database-missing':
          return 'the database or its key record is gone';
        case 'key-record-unreadable':
          return `the key record cannot be read (${d.found})`;
        case 'protection':
          return `the database is protected by the ${d.found} key, not the ${d.expected} key`;
        case 'thumbprint':
          return `the database's protector has thumbprint ${d.found}, not ${d.expected}`;
        case 'vault-key-missing':
          return `the vault no longer holds ${d.expected.replace(/ in the vault$/, '')}`;
        case 'vault-key-disabled':
          return 'the vault has disabled the protector key';
        case 'vault-key-replaced':
          return `the vault's key has thumbprint ${d.found}, not ${d.expected}`;
      }
    })
    .join('; ');
}

/** Identifies one drift, so that the same drift found again an hour later is not reported twice. */
export const driftSignature = (differences: readonly DriftDifference[]): string => differences.map((d) => `${d.kind}:${d.expected}>${d.found}`).join('|');
