/**
 * The tenant's state as it crosses continue-as-new, and as the `compactSnapshot` query answers it: environment
 * records packed into rows whose repeated strings
 * (regions, states, thumbprints, administrators, lock details) are kept once in a dictionary. 10,000 environments
 * then take about 0.6 MB instead of 2.4 MB — under the 2 MB a Temporal payload (a query result too) may have. Pure
 * and deterministic.
 */
import type { EnvironmentRecord } from './model';

/**
 * [id, createdAt, region, state, protection, keyThumbprint, systemAdmin, operationSeq, lock, deletedAt,
 * runningOperation]; strings as dictionary indexes, -1 for none.
 */
type PackedRow = [string, string, number, number, number, number, number, number, number, number, number];

export interface PackedEnvironments {
  version: 1;
  dictionary: string[];
  rows: PackedRow[];
}

export function packEnvironments(environments: readonly EnvironmentRecord[]): PackedEnvironments {
  const dictionary: string[] = [];
  const index = new Map<string, number>();
  const code = (value: string | null | undefined): number => {
    if (value === null || value === undefined) return -1;
    let at = index.get(value);
    if (at === undefined) {
      at = dictionary.push(value) - 1;
      index.set(value, at);
    }
    return at;
  };
  const rows = environments.map((e): PackedRow => [
    e.id,
    e.createdAt,
    code(e.region),
    code(e.state),
    code(e.protection),
    code(e.keyThumbprint),
    code(e.systemAdmin),
    e.operationSeq ?? 0,
    code(e.lock ? JSON.stringify(e.lock) : null),
    code(e.deletedAt),
    code(e.runningOperation),
  ]);
  return { version: 1, dictionary, rows };
}

export function unpackEnvironments(packed: PackedEnvironments): EnvironmentRecord[] {
  const word = (at: number): string | null => (at < 0 ? null : (packed.dictionary[at] ?? null));
  return packed.rows.map(([id, createdAt, region, state, protection, keyThumbprint, systemAdmin, operationSeq, lock, deletedAt, runningOperation]) => {
    const record: EnvironmentRecord = {
      id,
      createdAt,
      region: word(region) ?? '',
      state: word(state) as EnvironmentRecord['state'],
      protection: word(protection) as EnvironmentRecord['protection'],
      keyThumbprint: word(keyThumbprint) ?? '',
      systemAdmin: word(systemAdmin),
    };
    if (operationSeq) record.operationSeq = operationSeq;
    const lockText = word(lock);
    if (lockText) record.lock = JSON.parse(lockText) as EnvironmentRecord['lock'];
    const deleted = word(deletedAt);
    if (deleted) record.deletedAt = deleted;
    const running = word(runningOperation ?? -1);
    if (running) record.runningOperation = running as EnvironmentRecord['runningOperation'];
    return record;
  });
}
