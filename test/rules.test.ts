/**
 * The rules R1–R15 as pure functions (domain/rules.ts), table by table: each row is one request against one
 * tenant state, and the code the first failing check answers (DESIGN.md §4's order), or null when it is accepted.
 * No server: milliseconds each. The workflows' validators and the API's pre-checks call exactly these functions.
 */
import { isAllowed, notificationRecipients, systemAdminsOf, type Action, type Actor } from '../domain/access';
import { forSystemAdministrator, reprotectionIncompleteMail } from '../domain/notifications';
import { isValidEmail, isValidId } from '../domain/ids';
import { emptyRegion, type EnvironmentRecord, type TenantKey, type TenantSnapshot } from '../domain/model';
import { DEFAULT_POLICY, formatDuration, parseDuration } from '../domain/policy';
import {
  checkAdminChange,
  checkBackup,
  checkEnvironmentCreate,
  checkEnvironmentDelete,
  checkEnvironmentOperation,
  checkGeneratedPassword,
  checkKeyActivate,
  checkKeyAdd,
  checkKeyChange,
  checkLock,
  checkPurge,
  checkDriftRecord,
  checkReactivate,
  checkRollback,
  checkTenantCreate,
  checkUnlock,
  deletionWarningTimes,
  type PossessionProof,
} from '../domain/rules';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-06-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

const ALICE: Actor = { kind: 'user', email: 'alice@contoso.example' }; // global
const BOB: Actor = { kind: 'user', email: 'bob@contoso.example' }; // service
const SAM: Actor = { kind: 'user', email: 'sam@contoso.example' }; // system admin of prod
const EVE: Actor = { kind: 'user', email: 'eve@elsewhere.example' }; // nobody
const OPERATOR: Actor = { kind: 'operator' };

function key(name: string, thumbprint: string, overrides: Partial<TenantKey> = {}): TenantKey {
  return {
    name,
    thumbprint,
    vaultKey: { name: 'tenant-contoso-default', version: thumbprint.slice(0, 8) },
    state: 'Active',
    source: 'generated',
    createdAt: iso(T0),
    createdBy: ALICE.kind === 'user' ? ALICE.email : '',
    activatedAt: iso(T0),
    activatedBy: 'alice@contoso.example',
    retiredAt: null,
    inVault: true,
    ...overrides,
  };
}

function env(id: string, overrides: Partial<EnvironmentRecord> = {}): EnvironmentRecord {
  return { id, region: 'default', state: 'Online', protection: 'provider', keyThumbprint: 'provider', systemAdmin: null, createdAt: iso(T0), ...overrides };
}

const K1 = 'a'.repeat(64);
const K2 = 'b'.repeat(64);

/** Contoso: alice (global), bob (service); prod (sam) on the tenant key K2, test on the provider key. */
function contoso(changes: (t: TenantSnapshot) => void = () => {}): TenantSnapshot {
  const tenant: TenantSnapshot = {
    tenant: 'contoso',
    displayName: 'Contoso Ltd',
    homeRegion: 'default',
    createdAt: iso(T0),
    admins: [
      { email: 'alice@contoso.example', role: 'global' },
      { email: 'bob@contoso.example', role: 'service' },
    ],
    environments: [env('prod', { protection: 'tenant', keyThumbprint: K2, systemAdmin: 'sam@contoso.example' }), env('test')],
    regions: {
      default: {
        ...emptyRegion('default'),
        keys: [key('first', K1, { state: 'Retired' }), key('second', K2)],
        activeThumbprint: K2,
        lastKeyChangeAt: iso(T0),
        embargoStartedAt: iso(T0),
      },
    },
    operations: {},
  };
  changes(tenant);
  return tenant;
}

const region = (t: TenantSnapshot) => t.regions.default!;
const prod = (t: TenantSnapshot) => t.environments.find((e) => e.id === 'prod')!;
const lockAll = (t: TenantSnapshot, lockedAt = T0 + 100 * HOUR) => {
  for (const e of t.environments) {
    e.state = 'Locked';
    e.lock = { lockedAt: iso(lockedAt), lockedBy: 'alice@contoso.example', sealed: e.protection === 'tenant', deleteAt: iso(lockedAt + 28 * 24 * HOUR), warnAt: [], warningsSent: 0 };
  }
  const active = region(t).keys.find((k) => k.thumbprint === K2)!;
  active.state = 'Locked';
  active.inVault = false;
};
const codeOf = (refusal: { code: string } | null) => refusal?.code ?? null;

describe('durations (R14)', () => {
  test.each([
    ['24h', 24 * HOUR],
    ['72h', 72 * HOUR],
    ['28d', 28 * 24 * HOUR],
    ['1h30m', 90 * 60_000],
    ['30s', 30_000],
    ['500ms', 500],
    [' 1h ', HOUR],
    ['0s', 0],
  ])('parseDuration(%j) is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each(['', '24', 'h', '1.5h', '-1h', '1 h', '1w', '1h-', 'abc', '1e3s'])('parseDuration(%j) is undefined', (text) => expect(parseDuration(text)).toBeUndefined());

  test.each([
    [24 * HOUR, '1d'],
    [72 * HOUR, '3d'],
    [HOUR, '1h'],
    [90 * 60_000, '90m'],
    [30_000, '30s'],
    [1500, '1500ms'],
  ])('formatDuration(%d) is %j', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('identities', () => {
  test.each([
    ['contoso', true],
    ['a', true],
    ['a-b-9', true],
    ['a'.repeat(63), true],
    ['a'.repeat(64), false],
    ['-a', false],
    ['A', false],
    ['a_b', false],
    ['a b', false],
    ['', false],
  ])('isValidId(%j) is %s', (id, valid) => expect(isValidId(id)).toBe(valid));

  test.each([
    ['alice@contoso.example', true],
    ['a@b', true],
    ['no-at-sign', false],
    ['two@@example.com', false],
    ['spa ce@example.com', false],
    ['colon:x@example.com', false],
    [`${'a'.repeat(65)}@example.com`, false],
    ['a@-example.com', false],
  ])('isValidEmail(%j) is %s', (email, valid) => expect(isValidEmail(email)).toBe(valid));
});

describe('privileges (R12)', () => {
  const rows: Array<[string, Actor, Action, string | undefined, boolean]> = [
    ['the operator creates tenants', OPERATOR, 'tenant.create', undefined, true],
    ['the operator lists environments', OPERATOR, 'env.list', undefined, true],
    ['the operator reads data', OPERATOR, 'env.data', 'prod', true],
    ['the operator changes no key', OPERATOR, 'key.change', undefined, false],
    ['the operator does not lock', OPERATOR, 'tenant.lock', undefined, false],
    ['the operator sees no key', OPERATOR, 'key.show', undefined, false],
    ['a global administrator changes keys', ALICE, 'key.change', undefined, true],
    ['a service administrator locks', BOB, 'tenant.lock', undefined, true],
    ['an administrator creates no tenant', ALICE, 'tenant.create', undefined, false],
    ['a system administrator applies to their environment', SAM, 'env.apply', 'prod', true],
    ['a system administrator applies to no other environment', SAM, 'env.apply', 'test', false],
    ['a system administrator unlocks their environment', SAM, 'env.unlock', 'prod', true],
    ['a system administrator sees the key', SAM, 'key.show', undefined, true],
    ['a system administrator changes no key', SAM, 'key.change', undefined, false],
    ['a system administrator does not lock', SAM, 'tenant.lock', undefined, false],
    ['a system administrator reads no mail', SAM, 'mail.list', undefined, false],
    ['the operator checks a tenant for drift (it only reads)', OPERATOR, 'drift.check', undefined, true],
    ['a service administrator checks for drift', BOB, 'drift.check', undefined, true],
    ['a system administrator does not check for drift', SAM, 'drift.check', undefined, false],
    ['a stranger does not check for drift', EVE, 'drift.check', undefined, false],
    ['a stranger does nothing', EVE, 'env.list', undefined, false],
    ['e-mail case does not matter', { kind: 'user', email: 'ALICE@contoso.example' }, 'key.change', undefined, true],
  ];
  test.each(rows)('%s', (_name, actor, action, envId, allowed) => expect(isAllowed(contoso(), actor, action, envId)).toBe(allowed));

  test('without a tenant only the operator goes on (to NOT_FOUND)', () => {
    expect(isAllowed(undefined, OPERATOR, 'env.list')).toBe(true);
    expect(isAllowed(undefined, ALICE, 'key.show')).toBe(false);
  });

  test('R4 recipients: every global and service administrator, plus the environments concerned', () => {
    expect(notificationRecipients(contoso())).toEqual(['alice@contoso.example', 'bob@contoso.example']);
    expect(notificationRecipients(contoso(), 'prod')).toEqual(['alice@contoso.example', 'bob@contoso.example', 'sam@contoso.example']);
    expect(notificationRecipients(contoso(), ['test'])).toEqual(['alice@contoso.example', 'bob@contoso.example']);
  });

  test('system administrators each with their own environments only; a tenant administrator is not one of them (issue 19)', () => {
    const t = contoso((t) => {
      t.environments.push(env('dev', { systemAdmin: 'sam@contoso.example' }), env('hr', { systemAdmin: 'kim@contoso.example' }), env('ops', { systemAdmin: 'bob@contoso.example' }));
    });
    expect(systemAdminsOf(t, ['prod', 'test', 'dev', 'hr', 'ops'])).toEqual([
      { email: 'kim@contoso.example', envs: ['hr'] },
      { email: 'sam@contoso.example', envs: ['prod', 'dev'] },
    ]);
    expect(systemAdminsOf(t, ['hr'])).toEqual([{ email: 'kim@contoso.example', envs: ['hr'] }]);
    expect(systemAdminsOf(t, [])).toEqual([]);
    // Their mail: the tenant's text, then only their environments.
    const mail = forSystemAdministrator({ event: 'key-changed', subject: 'S', body: 'Key changed.\n\n— cmk, the encryption key control plane. You receive this because you administer this tenant.' }, ['hr'], 'Being re-protected.');
    expect(mail.body).toBe('Key changed.\n\nYour environment(s) concerned: hr. Being re-protected.\n\n— cmk, the encryption key control plane. You receive this because you are the system administrator of the environments named here.');
  });

  test('the mail of a re-protection that left environments behind names at most 50 one by one, counts the rest, and says what to do', () => {
    const refused = Array.from({ length: 60 }, (_, i) => ({ env: `app-${i}`, code: 'NOT_FOUND', message: 'gone' }));
    const mail = reprotectionIncompleteMail({ tenantName: 'Contoso Ltd', tenant: 'contoso', region: 'eu', keyName: 'k2', refused, at: iso(T0) });
    expect(mail.event).toBe('reprotection-incomplete');
    expect(mail.body.match(/^- app-\d+: NOT_FOUND: gone$/gm)).toHaveLength(50);
    expect(mail.body).toMatch(/- and 10 more \(`cmk key show --tenant contoso --region eu` lists them all\)/);
    expect(mail.body).toMatch(/`cmk env rekey --tenant contoso --env app-0`/);
    expect(mail.body).toMatch(/can never be unlocked/);
  });
});

describe('key change (R5, R11, R12)', () => {
  const K3 = 'c'.repeat(64);
  const rows: Array<[string, (t: TenantSnapshot) => void, Actor, string, number, string | null]> = [
    ['accepted after R5', () => {}, ALICE, K3, T0 + 25 * HOUR, null],
    ['FORBIDDEN for a system administrator', () => {}, SAM, K3, T0 + 25 * HOUR, 'FORBIDDEN'],
    ['FORBIDDEN before KEY_CHANGE_TOO_SOON', () => {}, EVE, K3, T0, 'FORBIDDEN'],
    ['ALREADY_EXISTS for a key used before', () => {}, ALICE, K1, T0 + 25 * HOUR, 'ALREADY_EXISTS'],
    ['LOCKED_ENVIRONMENTS_EXIST (R11)', (t) => lockAll(t), ALICE, K3, T0 + 500 * HOUR, 'LOCKED_ENVIRONMENTS_EXIST'],
    ['LOCKED_ENVIRONMENTS_EXIST before KEY_CHANGE_TOO_SOON', (t) => lockAll(t), ALICE, K3, T0, 'LOCKED_ENVIRONMENTS_EXIST'],
    ['KEY_CHANGE_TOO_SOON within 24 h (R5)', () => {}, ALICE, K3, T0 + 23 * HOUR, 'KEY_CHANGE_TOO_SOON'],
    ['KEY_CHANGE_TOO_SOON before OPERATION_IN_PROGRESS', (t) => (t.operations.default = 'a lock'), ALICE, K3, T0 + HOUR, 'KEY_CHANGE_TOO_SOON'],
    ['OPERATION_IN_PROGRESS last', (t) => (t.operations.default = 'a lock'), ALICE, K3, T0 + 25 * HOUR, 'OPERATION_IN_PROGRESS'],
  ];
  test.each(rows)('%s', (_name, change, actor, thumbprint, now, code) =>
    expect(codeOf(checkKeyChange(contoso(change), { actor, region: 'default', thumbprint }, now, DEFAULT_POLICY))).toBe(code),
  );

  test('a region outside the grammar, or one the deployment does not serve, is INVALID_ARGUMENT', () => {
    expect(codeOf(checkKeyChange(contoso(), { actor: ALICE, region: 'EU', thumbprint: K1 }, T0, DEFAULT_POLICY))).toBe('INVALID_ARGUMENT');
    expect(codeOf(checkKeyChange(contoso(), { actor: ALICE, region: 'apac', thumbprint: K1 }, T0, { ...DEFAULT_POLICY, regions: ['eu', 'us'] }))).toBe('INVALID_ARGUMENT');
  });

  test('R5 follows the deployment duration (R14)', () => {
    expect(codeOf(checkKeyChange(contoso(), { actor: ALICE, region: 'default', thumbprint: 'c'.repeat(64) }, T0 + 2 * HOUR, { ...DEFAULT_POLICY, keyChangeIntervalMs: HOUR }))).toBeNull();
  });
});

describe('rollback (R6)', () => {
  const windowOpen = (t: TenantSnapshot) => {
    region(t).rollbackThumbprint = K1;
    region(t).rollbackUntil = iso(T0 + 72 * HOUR);
    region(t).keys[0]!.inVault = true;
  };
  const rows: Array<[string, (t: TenantSnapshot) => void, Actor, number, string | null]> = [
    ['another administrator rolls back inside the window', windowOpen, BOB, T0 + HOUR, null],
    ['the one who changed the key cannot', windowOpen, ALICE, T0 + HOUR, 'FORBIDDEN'],
    ['a system administrator cannot', windowOpen, SAM, T0 + HOUR, 'FORBIDDEN'],
    ['NOT_FOUND once the window is over', windowOpen, BOB, T0 + 73 * HOUR, 'NOT_FOUND'],
    ['NOT_FOUND without a change to undo', () => {}, BOB, T0 + HOUR, 'NOT_FOUND'],
    [
      'OPERATION_IN_PROGRESS while something else runs',
      (t) => {
        windowOpen(t);
        t.operations.default = 'a lock';
      },
      BOB,
      T0 + HOUR,
      'OPERATION_IN_PROGRESS',
    ],
    [
      "accepted while the change's own re-protection runs (it supersedes it)",
      (t) => {
        windowOpen(t);
        t.operations.default = 're-protecting 3 environment(s)';
        t.reprotections = { default: { region: 'default', keyName: 'second', keyThumbprint: K2, startedAt: iso(T0), finishedAt: null, total: 3, done: 1, refused: [], remaining: 2 } };
      },
      BOB,
      T0 + HOUR,
      null,
    ],
  ];
  test.each(rows)('%s', (_name, change, actor, now, code) => expect(codeOf(checkRollback(contoso(change), { actor, region: 'default' }, now))).toBe(code));
});

describe('administrators', () => {
  const rows: Array<[string, Actor, 'add' | 'remove', string, 'global' | 'service' | null, string | null]> = [
    ['add a new global administrator', ALICE, 'add', 'carol@contoso.example', 'global', null],
    ['a system administrator may not', SAM, 'add', 'carol@contoso.example', 'global', 'FORBIDDEN'],
    ['the operator may not', OPERATOR, 'add', 'carol@contoso.example', 'global', 'FORBIDDEN'],
    ['an address outside the grammar', ALICE, 'add', 'not an address', 'global', 'INVALID_ARGUMENT'],
    ['the same administrator twice', ALICE, 'add', 'BOB@contoso.example', 'service', 'ALREADY_EXISTS'],
    ['a role change is an add', ALICE, 'add', 'bob@contoso.example', 'global', null],
    ['remove one who is not there', ALICE, 'remove', 'carol@contoso.example', null, 'NOT_FOUND'],
    ['remove with the wrong role', ALICE, 'remove', 'bob@contoso.example', 'global', 'NOT_FOUND'],
    ['remove another administrator', ALICE, 'remove', 'bob@contoso.example', null, null],
  ];
  test.each(rows)('%s', (_name, actor, change, email, role, code) => expect(codeOf(checkAdminChange(contoso(), { actor, change, email, role }))).toBe(code));

  test('the last administrator stays', () => {
    const alone = contoso((t) => (t.admins = [t.admins[0]!]));
    expect(codeOf(checkAdminChange(alone, { actor: ALICE, change: 'remove', email: 'alice@contoso.example', role: null }))).toBe('INVALID_ARGUMENT');
  });
});

describe('tenant and environment creation', () => {
  const create = { actor: OPERATOR, tenant: 'fabrikam', displayName: 'Fabrikam', homeRegion: 'default', admins: [{ email: 'f@fabrikam.example', role: 'global' as const }] };
  test.each([
    ['accepted', {}, null],
    ['only the operator', { actor: ALICE }, 'FORBIDDEN'],
    ['an ID outside the grammar', { tenant: 'Fabrikam' }, 'INVALID_ARGUMENT'],
    ['a blank name', { displayName: ' ' }, 'INVALID_ARGUMENT'],
    ['a name with a control character', { displayName: 'Fab\u0007rikam' }, 'INVALID_ARGUMENT'],
    ['a name of 201 characters', { displayName: 'x'.repeat(201) }, 'INVALID_ARGUMENT'],
    ['no administrator', { admins: [] }, 'INVALID_ARGUMENT'],
    ['an administrator twice', { admins: [{ email: 'f@fabrikam.example', role: 'global' as const }, { email: 'F@fabrikam.example', role: 'service' as const }] }, 'INVALID_ARGUMENT'],
    ['an unserved home region', { homeRegion: 'apac', regions: ['eu'] }, 'INVALID_ARGUMENT'],
  ])('tenant create: %s', (_name, change, code) => expect(codeOf(checkTenantCreate({ ...create, ...change }))).toBe(code));

  test.each([
    ['accepted', ALICE, 'staging', null, null],
    ['by the operator', OPERATOR, 'staging', null, null],
    ['not by a system administrator', SAM, 'staging', null, 'FORBIDDEN'],
    ['an ID outside the grammar', ALICE, 'Staging', null, 'INVALID_ARGUMENT'],
    ['a system administrator address outside the grammar', ALICE, 'staging', 'nope', 'INVALID_ARGUMENT'],
    ['an environment that exists', ALICE, 'prod', null, 'ALREADY_EXISTS'],
  ])('env create: %s', (_name, actor, id, admin, code) =>
    expect(codeOf(checkEnvironmentCreate(contoso(), { actor, env: id, region: 'default', systemAdmin: admin }))).toBe(code),
  );
});

describe('apply, revert, rekey (R7)', () => {
  const rows: Array<[string, (t: TenantSnapshot) => void, Actor, string, 'apply' | 'revert' | 'rekey', string | null]> = [
    ['apply to a provider-key environment', () => {}, ALICE, 'test', 'apply', null],
    ['revert a tenant-key environment, as its system administrator', () => {}, SAM, 'prod', 'revert', null],
    ['rekey', () => {}, SAM, 'prod', 'rekey', null],
    ['not on another environment', () => {}, SAM, 'test', 'apply', 'FORBIDDEN'],
    ['NOT_FOUND for an unknown environment', () => {}, ALICE, 'nope', 'apply', 'NOT_FOUND'],
    ['NOT_FOUND for a deleted environment', (t) => (t.environments[1]!.state = 'Deleted'), ALICE, 'test', 'apply', 'NOT_FOUND'],
    ['ALREADY_EXISTS: applied already', () => {}, ALICE, 'prod', 'apply', 'ALREADY_EXISTS'],
    ['ALREADY_EXISTS: on the provider key already', () => {}, ALICE, 'test', 'revert', 'ALREADY_EXISTS'],
    // DESIGN.md §4: every operation on a Locked environment answers ENVIRONMENT_LOCKED, before ALREADY_EXISTS.
    ['ENVIRONMENT_LOCKED before ALREADY_EXISTS (revert of a locked provider-key environment)', (t) => lockAll(t), ALICE, 'test', 'revert', 'ENVIRONMENT_LOCKED'],
    ['ENVIRONMENT_LOCKED before ALREADY_EXISTS (apply to a locked tenant-key environment)', (t) => lockAll(t), ALICE, 'prod', 'apply', 'ENVIRONMENT_LOCKED'],
    ['ENVIRONMENT_LOCKED for a rekey', (t) => lockAll(t), SAM, 'prod', 'rekey', 'ENVIRONMENT_LOCKED'],
    [
      'KEY_NOT_ACTIVE without an active key',
      (t) => {
        region(t).activeThumbprint = null;
      },
      ALICE,
      'test',
      'apply',
      'KEY_NOT_ACTIVE',
    ],
    ['OPERATION_IN_PROGRESS while the environment is busy', (t) => (prod(t).runningOperation = 'backup'), SAM, 'prod', 'rekey', 'OPERATION_IN_PROGRESS'],
    ['OPERATION_IN_PROGRESS while its region changes key', (t) => (t.operations.default = 'a key change'), ALICE, 'test', 'apply', 'OPERATION_IN_PROGRESS'],
  ];
  test.each(rows)('%s', (_name, change, actor, envId, operation, code) => expect(codeOf(checkEnvironmentOperation(contoso(change), { actor, env: envId, operation }))).toBe(code));
});

describe('the opt-in of a first apply (issue 19)', () => {
  // No environment on the tenant key yet, nothing recorded: the tenant has not accepted the risk.
  const fresh = (changes: (t: TenantSnapshot) => void = () => {}) =>
    contoso((t) => {
      prod(t).protection = 'provider';
      changes(t);
    });
  const check = (t: TenantSnapshot, acceptRisk?: boolean, operation: 'apply' | 'revert' | 'rekey' = 'apply') =>
    checkEnvironmentOperation(t, { actor: ALICE, env: 'test', operation, ...(acceptRisk === undefined ? {} : { acceptRisk }) });
  test('a first apply without --accept-risk is refused with the warning, in plain words', () => {
    const refusal = check(fresh());
    expect(refusal?.code).toBe('RISK_NOT_ACCEPTED');
    expect(refusal?.message).toMatch(/cannot be recovered by anyone/);
    expect(refusal?.message).toMatch(/offline/);
    expect(refusal?.message).toMatch(/--accept-risk/);
    expect(check(fresh(), false)?.code).toBe('RISK_NOT_ACCEPTED');
  });
  test('accepted with the request, recorded, or implied by an environment already on the tenant key: not asked', () => {
    expect(check(fresh(), true)).toBeNull();
    expect(check(fresh((t) => (t.riskAcceptance = { by: 'bob@example.com', at: '2026-01-01T00:00:00.000Z' })))).toBeNull();
    expect(check(contoso())).toBeNull();
  });
  test('only apply asks; the codes before it in the order answer first; OPERATION_IN_PROGRESS after it', () => {
    expect(check(fresh(), undefined, 'rekey')).toBeNull();
    expect(codeOf(check(fresh((t) => (region(t).activeThumbprint = null))))).toBe('KEY_NOT_ACTIVE');
    expect(codeOf(check(fresh((t) => lockAll(t))))).toBe('ENVIRONMENT_LOCKED');
    expect(codeOf(check(fresh((t) => (t.operations.default = 'a key change'))))).toBe('RISK_NOT_ACCEPTED');
    expect(codeOf(check(fresh((t) => (t.operations.default = 'a key change')), true))).toBe('OPERATION_IN_PROGRESS');
  });
});

describe('lock (R6, R8, R11)', () => {
  const proof = (overrides: Partial<PossessionProof> = {}): PossessionProof => ({
    challengeId: 'c1',
    tenant: 'contoso',
    region: 'default',
    user: 'alice@contoso.example',
    operation: 'lock',
    expiresAt: iso(T0 + 200 * HOUR),
    verifiedThumbprint: K2,
    ...overrides,
  });
  const after = T0 + 73 * HOUR;
  const rows: Array<[string, (t: TenantSnapshot) => void, Actor, string, PossessionProof | null, number, string[], string | null]> = [
    ['accepted after the embargo', () => {}, ALICE, 'Contoso Ltd', proof(), after, [], null],
    ['not by a system administrator', () => {}, SAM, 'Contoso Ltd', proof(), after, [], 'FORBIDDEN'],
    ['not by the operator', () => {}, OPERATOR, 'Contoso Ltd', proof(), after, [], 'FORBIDDEN'],
    ['LOCKED_ENVIRONMENTS_EXIST while any is locked', (t) => lockAll(t), ALICE, 'Contoso Ltd', proof(), after, [], 'LOCKED_ENVIRONMENTS_EXIST'],
    ['KEY_NOT_ACTIVE without a key', (t) => (region(t).activeThumbprint = null), ALICE, 'Contoso Ltd', proof(), after, [], 'KEY_NOT_ACTIVE'],
    ['TENANT_NAME_MISMATCH: case matters', () => {}, ALICE, 'contoso ltd', proof(), after, [], 'TENANT_NAME_MISMATCH'],
    ['TENANT_NAME_MISMATCH before KEY_MISMATCH', () => {}, ALICE, 'Contoso', null, after, [], 'TENANT_NAME_MISMATCH'],
    ['KEY_MISMATCH without a proof', () => {}, ALICE, 'Contoso Ltd', null, after, [], 'KEY_MISMATCH'],
    ['KEY_MISMATCH for a signature that did not verify', () => {}, ALICE, 'Contoso Ltd', proof({ verifiedThumbprint: null }), after, [], 'KEY_MISMATCH'],
    ['KEY_MISMATCH for another key', () => {}, ALICE, 'Contoso Ltd', proof({ verifiedThumbprint: K1 }), after, [], 'KEY_MISMATCH'],
    ['KEY_MISMATCH for a challenge of another user', () => {}, ALICE, 'Contoso Ltd', proof({ user: 'bob@contoso.example' }), after, [], 'KEY_MISMATCH'],
    ['KEY_MISMATCH for an expired challenge', () => {}, ALICE, 'Contoso Ltd', proof({ expiresAt: iso(after - 1) }), after, [], 'KEY_MISMATCH'],
    ['KEY_MISMATCH for a spent challenge', () => {}, ALICE, 'Contoso Ltd', proof(), after, ['c1'], 'KEY_MISMATCH'],
    ['KEY_MISMATCH before LOCK_EMBARGO', () => {}, ALICE, 'Contoso Ltd', null, T0 + HOUR, [], 'KEY_MISMATCH'],
    ['LOCK_EMBARGO within 72 h of the key change (R6)', () => {}, ALICE, 'Contoso Ltd', proof(), T0 + 71 * HOUR, [], 'LOCK_EMBARGO'],
    ['OPERATION_IN_PROGRESS while an environment is busy', (t) => (prod(t).runningOperation = 'rekey'), ALICE, 'Contoso Ltd', proof(), after, [], 'OPERATION_IN_PROGRESS'],
  ];
  test.each(rows)('%s', (_name, change, actor, confirm, p, now, used, code) =>
    expect(codeOf(checkLock(contoso(change), { actor, region: 'default', confirm, proof: p }, now, DEFAULT_POLICY, new Set(used)))).toBe(code),
  );

  test('R9 warnings fall 7 days and 1 day before the deletion, scaled with the retention', () => {
    expect(deletionWarningTimes(T0, 28 * 24 * HOUR)).toEqual([T0 + 21 * 24 * HOUR, T0 + 27 * 24 * HOUR]);
    expect(deletionWarningTimes(T0, 28 * 60_000)).toEqual([T0 + 21 * 60_000, T0 + 27 * 60_000]);
  });
});

describe('re-activation and unlock (R10, R15)', () => {
  const lockedAt = T0 + 100 * HOUR;
  const reactivated = (t: TenantSnapshot) => {
    lockAll(t, lockedAt);
    const k = region(t).keys.find((x) => x.thumbprint === K2)!;
    k.state = 'Active';
    k.inVault = true;
  };
  test.each([
    ['the withdrawn key, again', (t: TenantSnapshot) => lockAll(t), ALICE, K2, null],
    ['another key', (t: TenantSnapshot) => lockAll(t), ALICE, K1, 'KEY_MISMATCH'],
    ['nothing withdrawn', () => {}, ALICE, K2, 'ALREADY_EXISTS'],
    ['no key at all', (t: TenantSnapshot) => (region(t).activeThumbprint = null), ALICE, K2, 'KEY_NOT_ACTIVE'],
    ['not by a system administrator', (t: TenantSnapshot) => lockAll(t), SAM, K2, 'FORBIDDEN'],
  ])('reactivate: %s', (_name, change, actor, thumbprint, code) => expect(codeOf(checkReactivate(contoso(change), { actor, region: 'default', thumbprint }))).toBe(code));

  test.each([
    ['accepted after re-activation and R15', reactivated, SAM, 'prod', lockedAt + HOUR, null],
    ['KEY_NOT_ACTIVE before re-activation', (t: TenantSnapshot) => lockAll(t, lockedAt), SAM, 'prod', lockedAt + 2 * HOUR, 'KEY_NOT_ACTIVE'],
    ['KEY_NOT_ACTIVE for a provider-key environment too', (t: TenantSnapshot) => lockAll(t, lockedAt), ALICE, 'test', lockedAt + 2 * HOUR, 'KEY_NOT_ACTIVE'],
    ['UNLOCK_TOO_SOON within an hour of the lock', reactivated, SAM, 'prod', lockedAt + HOUR - 1, 'UNLOCK_TOO_SOON'],
    ['ALREADY_EXISTS when not locked', () => {}, SAM, 'prod', lockedAt, 'ALREADY_EXISTS'],
    ['FORBIDDEN on another environment', reactivated, SAM, 'test', lockedAt + 2 * HOUR, 'FORBIDDEN'],
    ['NOT_FOUND for an unknown environment', reactivated, ALICE, 'nope', lockedAt + 2 * HOUR, 'NOT_FOUND'],
  ])('unlock: %s', (_name, change, actor, envId, now, code) => expect(codeOf(checkUnlock(contoso(change), { actor, env: envId }, now, DEFAULT_POLICY))).toBe(code));
});

describe('issue 19: env delete, key upload --no-activate, key activate', () => {
  const K3 = 'c'.repeat(64);
  test.each([
    ['accepted for a locked environment', (t: TenantSnapshot) => lockAll(t), BOB, 'prod', 'prod', null],
    ['FORBIDDEN for its system administrator', (t: TenantSnapshot) => lockAll(t), SAM, 'prod', 'prod', 'FORBIDDEN'],
    ['FORBIDDEN for the operator', (t: TenantSnapshot) => lockAll(t), OPERATOR, 'prod', 'prod', 'FORBIDDEN'],
    ['INVALID_ARGUMENT for an ID outside the grammar', (t: TenantSnapshot) => lockAll(t), ALICE, 'Prod', 'Prod', 'INVALID_ARGUMENT'],
    ['NOT_FOUND before the confirmation', (t: TenantSnapshot) => lockAll(t), ALICE, 'nope', 'prod', 'NOT_FOUND'],
    ['NOT_FOUND once deleted', (t: TenantSnapshot) => (prod(t).state = 'Deleted'), ALICE, 'prod', 'prod', 'NOT_FOUND'],
    ['INVALID_ARGUMENT when --confirm is not the ID', (t: TenantSnapshot) => lockAll(t), ALICE, 'prod', 'Prod', 'INVALID_ARGUMENT'],
    ['INVALID_ARGUMENT before the state', () => {}, ALICE, 'prod', 'test', 'INVALID_ARGUMENT'],
    ['ALREADY_EXISTS when not locked', () => {}, ALICE, 'prod', 'prod', 'ALREADY_EXISTS'],
    ['OPERATION_IN_PROGRESS while it unlocks', (t: TenantSnapshot) => (lockAll(t), (prod(t).runningOperation = 'unlock')), ALICE, 'prod', 'prod', 'OPERATION_IN_PROGRESS'],
  ])('env delete: %s', (_name, change, actor, envId, confirm, code) => expect(codeOf(checkEnvironmentDelete(contoso(change), { actor, env: envId, confirm }))).toBe(code));

  const available = (t: TenantSnapshot) => region(t).keys.push(key('third', K3, { state: 'Available', activatedAt: null, activatedBy: null }));
  test.each([
    ['accepted within R5, while locked, while busy', (t: TenantSnapshot) => (lockAll(t), (t.operations.default = 'a lock')), ALICE, K3, null],
    ['FORBIDDEN for a system administrator', () => {}, SAM, K3, 'FORBIDDEN'],
    ['ALREADY_EXISTS for a key used before', () => {}, ALICE, K1, 'ALREADY_EXISTS'],
    ['ALREADY_EXISTS for one already Available', available, ALICE, K3, 'ALREADY_EXISTS'],
  ])('key upload --no-activate: %s', (_name, change, actor, thumbprint, code) => expect(codeOf(checkKeyAdd(contoso(change), { actor, region: 'default', thumbprint }, DEFAULT_POLICY))).toBe(code));

  test.each([
    ['accepted after R5', available, BOB, K3, T0 + 25 * HOUR, null],
    ['FORBIDDEN for a system administrator', available, SAM, K3, T0 + 25 * HOUR, 'FORBIDDEN'],
    ['INVALID_ARGUMENT for a thumbprint outside the grammar', available, BOB, K3.toUpperCase(), T0 + 25 * HOUR, 'INVALID_ARGUMENT'],
    ['NOT_FOUND for a key never uploaded', available, BOB, 'd'.repeat(64), T0 + 25 * HOUR, 'NOT_FOUND'],
    ['ALREADY_EXISTS for the active key', available, BOB, K2, T0 + 25 * HOUR, 'ALREADY_EXISTS'],
    ['ALREADY_EXISTS for a retired key', available, BOB, K1, T0 + 25 * HOUR, 'ALREADY_EXISTS'],
    ['LOCKED_ENVIRONMENTS_EXIST (R11) at activation', (t: TenantSnapshot) => (available(t), lockAll(t)), BOB, K3, T0 + 500 * HOUR, 'LOCKED_ENVIRONMENTS_EXIST'],
    ['KEY_CHANGE_TOO_SOON (R5) at activation', available, BOB, K3, T0 + 23 * HOUR, 'KEY_CHANGE_TOO_SOON'],
    ['OPERATION_IN_PROGRESS last', (t: TenantSnapshot) => (available(t), (t.operations.default = 'a rollback')), BOB, K3, T0 + 25 * HOUR, 'OPERATION_IN_PROGRESS'],
  ])('key activate: %s', (_name, change, actor, thumbprint, now, code) => expect(codeOf(checkKeyActivate(contoso(change), { actor, region: 'default', thumbprint }, now, DEFAULT_POLICY))).toBe(code));

  test('an upload that activates a key already Available is told to activate it', () => {
    expect(checkKeyChange(contoso(available), { actor: ALICE, region: 'default', thumbprint: K3 }, T0 + 25 * HOUR, DEFAULT_POLICY)?.message).toMatch(/cmk key activate --thumbprint c{64}/);
  });
});

describe('backups, the purge, passwords', () => {
  const rows: Array<[string, (t: TenantSnapshot) => void, Actor, 'backup' | 'restore', string | null, string | null]> = [
    ['backup', () => {}, SAM, 'backup', null, null],
    ['restore a given backup', () => {}, SAM, 'restore', 'b-1', null],
    ['a backup ID on a backup', () => {}, SAM, 'backup', 'b-1', 'INVALID_ARGUMENT'],
    ['a backup ID outside the grammar', () => {}, SAM, 'restore', '../x', 'INVALID_ARGUMENT'],
    ['ENVIRONMENT_LOCKED', (t) => lockAll(t), SAM, 'restore', null, 'ENVIRONMENT_LOCKED'],
    ['OPERATION_IN_PROGRESS', (t) => (prod(t).runningOperation = 'rekey'), SAM, 'backup', null, 'OPERATION_IN_PROGRESS'],
    ['not by a stranger', () => {}, EVE, 'backup', null, 'FORBIDDEN'],
  ];
  test.each(rows)('%s', (_name, change, actor, operation, backupId, code) =>
    expect(codeOf(checkBackup(contoso(change), { actor, env: 'prod', operation, backupId }))).toBe(code),
  );

  test('only the operator purges', () => {
    expect(checkPurge(OPERATOR)).toBeNull();
    expect(codeOf(checkPurge(ALICE))).toBe('FORBIDDEN');
  });

  test('only cmk’s own worker, as the operator, records what a drift check found', () => {
    expect(checkDriftRecord(OPERATOR)).toBeNull();
    expect(codeOf(checkDriftRecord(ALICE))).toBe('FORBIDDEN');
  });

  test.each([
    ['elevenchars', 'WEAK_PASSWORD'],
    ['twelve chars', null],
    ['ééééééééééé', 'WEAK_PASSWORD'],
    ['🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑', null],
  ])('generated key password %j', (password, code) => expect(codeOf(checkGeneratedPassword(password))).toBe(code));
});
