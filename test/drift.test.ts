import { describeDrift, driftSignature, findDrift, type BelievedProtector, type ObservedProtector } from '../domain/drift';
import { ConfigError, loadConfig } from '../config';

const believed: BelievedProtector = { id: 'prod', state: 'Online', protection: 'tenant', keyThumbprint: 'aa' };
const clean: ObservedProtector = { protector: { kind: 'tenant', name: 'tenant-t-eu', version: 'v1', thumbprint: 'aa' }, vaultKey: { thumbprint: 'aa', enabled: true } };

describe('drift: what the database and the vault say against what the tenant workflow believes', () => {
  it('finds nothing when they agree', () => {
    expect(findDrift(believed, clean)).toEqual([]);
  });

  it('finds a key record re-wrapped with another key, naming both thumbprints', () => {
    const drift = findDrift(believed, { protector: { kind: 'provider', name: 'provider-eu', version: 'v9', thumbprint: 'bb' }, vaultKey: { thumbprint: 'bb', enabled: true } });
    expect(drift.map((d) => d.kind)).toEqual(['protection', 'thumbprint']);
    expect(describeDrift(drift)).toBe("the database is protected by the provider key, not the tenant key; the database's protector has thumbprint bb, not aa");
  });

  it('finds the protector key gone from the vault, disabled, or replaced', () => {
    expect(findDrift(believed, { protector: clean.protector }).map((d) => d.kind)).toEqual(['vault-key-missing']);
    expect(describeDrift(findDrift(believed, { protector: clean.protector }))).toBe('the vault no longer holds tenant-t-eu version v1');
    expect(findDrift(believed, { ...clean, vaultKey: { thumbprint: 'aa', enabled: false } }).map((d) => d.kind)).toEqual(['vault-key-disabled']);
    expect(findDrift(believed, { ...clean, vaultKey: { thumbprint: 'cc', enabled: true } }).map((d) => d.kind)).toEqual(['vault-key-replaced']);
  });

  it('finds a database gone or a key record that cannot be read', () => {
    expect(findDrift(believed, {}).map((d) => d.kind)).toEqual(['database-missing']);
    expect(findDrift(believed, { unreadable: 'the encryptor disagrees' })).toEqual([{ kind: 'key-record-unreadable', expected: 'a readable key record', found: 'the encryptor disagrees' }]);
  });

  it('gives no verdict while an environment moves between protectors, or once deleted', () => {
    for (const state of ['Applying', 'Reverting', 'Reprotecting', 'Deleted'] as const) expect(findDrift({ ...believed, state }, {})).toEqual([]);
  });

  it('compares only the key record of a locked environment: its key is withdrawn on purpose', () => {
    expect(findDrift({ ...believed, state: 'Locked' }, { protector: clean.protector })).toEqual([]);
    expect(findDrift({ ...believed, state: 'Locked' }, { protector: { ...clean.protector!, thumbprint: 'bb' } }).map((d) => d.kind)).toEqual(['thumbprint']);
  });

  it('gives the same drift the same signature, and another drift another', () => {
    const a = findDrift(believed, { protector: clean.protector });
    expect(driftSignature(a)).toBe(driftSignature(findDrift(believed, { protector: clean.protector })));
    expect(driftSignature(a)).not.toBe(driftSignature(findDrift(believed, {})));
  });
});

describe('drift configuration', () => {
  it('checks hourly and mails no operator by default; CMK_DRIFT_CHECK_INTERVAL and CMK_OPERATOR_EMAIL change that', () => {
    expect(loadConfig({})).toMatchObject({ driftCheckIntervalMs: 3_600_000, operatorEmails: [] });
    expect(loadConfig({ CMK_DRIFT_CHECK_INTERVAL: '15m', CMK_OPERATOR_EMAIL: 'ops@provider.example, Night@Provider.example' })).toMatchObject({
      driftCheckIntervalMs: 900_000,
      operatorEmails: ['ops@provider.example', 'night@provider.example'],
    });
  });

  it('refuses an operator address that is not one, naming the variable', () => {
    expect(() => loadConfig({ CMK_OPERATOR_EMAIL: 'ops@provider.example,not-an-address' })).toThrow(ConfigError);
    expect(() => loadConfig({ CMK_OPERATOR_EMAIL: 'ops@provider.example,not-an-address' })).toThrow(/CMK_OPERATOR_EMAIL names "not-an-address"/);
  });
});
