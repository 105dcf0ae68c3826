/** The tenant state carried across continue-as-new: packed environments come back exactly, and 10,000 fit a payload. */
import { packEnvironments, unpackEnvironments } from '../domain/carried';
import type { EnvironmentRecord } from '../domain/model';

const thumbprints = ['a', 'b', 'c'].map((c) => c.repeat(64));
const lock = { lockedAt: '2026-11-29T00:00:00.000Z', lockedBy: 'alice@example.com', sealed: true, deleteAt: '2026-12-27T00:00:00.000Z', warnAt: ['2026-12-20T00:00:00.000Z', '2026-12-26T00:00:00.000Z'], warningsSent: 1 };

function environment(i: number): EnvironmentRecord {
  const record: EnvironmentRecord = {
    id: `env-${i}`,
    region: i % 3 === 0 ? 'emea' : 'default',
    state: i % 7 === 0 ? 'Locked' : i % 11 === 0 ? 'Deleted' : 'Online',
    protection: i % 2 === 0 ? 'tenant' : 'provider',
    keyThumbprint: thumbprints[i % 3]!,
    systemAdmin: i % 5 === 0 ? null : `admin-${i % 4}@example.com`,
    createdAt: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString(),
  };
  if (i % 4 === 1) record.operationSeq = i % 9 + 1;
  if (i % 13 === 0 && record.state === 'Online') record.runningOperation = 'rekey';
  if (record.state === 'Locked') record.lock = { ...lock, sealed: record.protection === 'tenant' };
  if (record.state === 'Deleted') record.deletedAt = '2026-11-28T12:00:00.000Z';
  return record;
}

test('packed environments unpack to exactly the records, through JSON', () => {
  const records = Array.from({ length: 500 }, (_, i) => environment(i));
  const packed = JSON.parse(JSON.stringify(packEnvironments(records))) as ReturnType<typeof packEnvironments>;
  expect(unpackEnvironments(packed)).toEqual(records);
  expect(unpackEnvironments(packEnvironments([]))).toEqual([]);
});

test('10,000 environments carry (and answer the compact snapshot query) in well under the 2 MB payload limit', () => {
  const records = Array.from({ length: 10_000 }, (_, i) => environment(i));
  const unpackedBytes = Buffer.byteLength(JSON.stringify(records));
  const packedBytes = Buffer.byteLength(JSON.stringify(packEnvironments(records)));
  expect(unpackedBytes).toBeGreaterThan(2 * 1024 * 1024);
  expect(packedBytes).toBeLessThan(1024 * 1024);
});
