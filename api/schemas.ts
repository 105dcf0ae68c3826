/**
 * The API's contract as TypeBox schemas: request bodies and responses of every route. The route table
 * (api/server.ts) hands them to fastify and so to /openapi.json, and tsc checks each handler's answer against its
 * response schema (api/route.ts `route`); the CLI (client/http.ts, client/commands/*.ts)
 * reads the same shapes as `Static<>` types, with `import type` only, so the client carries no schema at run time.
 *
 * Response objects admit properties not listed (TypeBox's default): the schemas say what a caller may rely on, and
 * the server serializes with JSON.stringify, never dropping a property the schema does not name.
 */
import { Type, type Static, type TObject, type TProperties, type TSchema } from '@sinclair/typebox';
import { ERROR_CODES, httpStatusOf } from '../domain/codes';

const Str = (description?: string) => Type.String(description ? { description } : {});
const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);
const Stamp = Type.String({ description: 'ISO 8601 instant' });
const Any = Type.Unknown();

/** `{error:{code,message}}`: every refusal, with its stable code (domain/codes.ts). */
export const ErrorDocument = Type.Object(
  {
    error: Type.Object({
      code: Type.Union([...ERROR_CODES, 'INTERNAL'].map((c) => Type.Literal(c)), { description: ERROR_CODES.map((c) => `${c}: HTTP ${httpStatusOf(c)}`).join('; ') }),
      message: Type.String(),
    }),
  },
  { description: 'Refused: {error:{code,message}}' },
);

/** A request body: field → description; optional fields listed in `optional`. */
export function bodyOf(fields: Record<string, string>, optional: readonly string[] = []): TObject {
  const properties: TProperties = {};
  for (const [name, description] of Object.entries(fields)) properties[name] = optional.includes(name) ? Type.Optional(Type.Unknown({ description })) : Type.Unknown({ description });
  return Type.Object(properties);
}

// ------------------------------------------------------------------------------------------ tenants

export const Admin = Type.Object({ email: Type.String(), role: Type.String() });

export const TenantCreated = Type.Object({ tenant: Type.Object({ id: Type.String(), name: Type.String(), homeRegion: Type.String(), createdAt: Stamp, admins: Type.Array(Admin) }) });

export const TenantView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  homeRegion: Type.String(),
  createdAt: Stamp,
  admins: Type.Array(Admin),
  riskAcceptance: Type.Object(
    { accepted: Type.Boolean(), by: Nullable(Type.String()), at: Nullable(Stamp) },
    { description: 'the opt-in of a first apply (env apply --accept-risk): who accepted it and when; both null for a tenant that applied a key before the opt-in existed' },
  ),
  regions: Type.Array(Type.Object({ region: Type.String(), environments: Type.Number(), byState: Type.Record(Type.String(), Type.Number()), onTenantKey: Type.Number(), deleted: Type.Number() })),
  lockApproval: Type.Union([Type.Literal(1), Type.Literal(2)], { description: 'how many global or service administrators a lock takes now (`tenant policy`)' }),
  pendingLock: Type.Union([Type.Object({}, { description: 'a lock waiting for approval (PendingLockView)' }), Type.Null()]),
});
export const TenantShown = Type.Object({ tenant: TenantView });

export const AdminsChanged = Type.Object({ tenant: Type.String(), admins: Type.Array(Admin) });

export const AccessAllowed = Type.Object({ allowed: Type.Boolean() });

// ------------------------------------------------------------------------------------------ environments

/** A drift the drift check found (domain/drift.ts): shown until a check finds the environment as cmk set it again. */
const DriftView = Type.Object({
  foundAt: Stamp,
  checkedAt: Stamp,
  summary: Type.String(),
  differences: Type.Array(Type.Object({ kind: Type.String(), expected: Type.String(), found: Type.String() })),
});

export const EnvView = Type.Object({
  id: Type.String(),
  region: Type.String(),
  state: Type.String(),
  protection: Type.String(),
  keyThumbprint: Type.String(),
  systemAdmin: Nullable(Type.String()),
  coverage: Type.Object({ covered: Type.Array(Type.String()), notCovered: Type.Array(Type.String()) }),
  lock: Type.Optional(Type.Object({ lockedAt: Stamp, sealed: Type.Boolean(), deleteAt: Stamp })),
  /** Set once R9 or `env delete` destroyed it (state Deleted). */
  deletedAt: Type.Optional(Stamp),
  /** What background work could not do to it (docs/RELIABILITY.md). */
  fault: Type.Optional(Type.Object({ operation: Type.Union([Type.Literal('delete'), Type.Literal('reprotect')]), code: Type.String(), reason: Type.String(), repair: Type.String(), at: Type.Optional(Stamp) })),
  /** Its database or vault differs from what cmk believes (the drift check; docs/RUNBOOK.md, "Drift"). */
  drift: Type.Optional(DriftView),
});
export const EnvironmentShown = Type.Object({ environment: EnvView });
export const EnvironmentList = Type.Object({ tenant: Type.String(), region: Type.String(), environments: Type.Array(EnvView) });

export const EnvironmentsCreated = Type.Object({
  tenant: Type.String(),
  operation: Type.String(),
  region: Type.String(),
  requested: Type.Number(),
  created: Type.Number(),
  protection: Type.String(),
  keyThumbprint: Type.String(),
  environments: Type.Array(Type.String(), { description: 'the IDs created, in the order of the list' }),
  refused: Type.Array(Type.Object({ env: Type.String(), line: Type.Number(), code: Type.String(), message: Type.String() }), { description: 'refused by the database engine after the checks passed (none expected); the others were created' }),
});
export const EnvironmentCreation = Type.Object({
  tenant: Type.String(),
  operation: Type.String(),
  known: Type.Boolean({ description: 'false until the tenant workflow has accepted the operation' }),
  region: Type.Optional(Type.String()),
  total: Type.Optional(Type.Number()),
  created: Type.Optional(Type.Number()),
  startedAt: Type.Optional(Stamp),
  finishedAt: Type.Optional(Nullable(Stamp)),
});

export const Row = Type.Object({ id: Type.Number(), text: Type.String(), createdAt: Stamp });
export const EnvironmentRows = Type.Object({ tenant: Type.String(), env: Type.String(), rows: Type.Array(Row) });

export const BackupView = Type.Object({ id: Type.String(), createdAt: Stamp, sizeBytes: Type.Number() });
export const BackupReport = Type.Object({ environment: EnvView, backup: BackupView, backups: Type.Array(BackupView) });

// ------------------------------------------------------------------------------------------ keys

const Fault = Type.Object({ env: Type.String(), operation: Type.String(), code: Type.String(), reason: Type.String(), repair: Type.String() });

export const KeyReport = Type.Object({
  tenant: Type.String(),
  region: Type.String(),
  activeKey: Type.Union([
    Type.Object({ name: Type.String(), thumbprint: Type.String(), state: Type.String(), activatedAt: Nullable(Stamp), activatedBy: Nullable(Type.String()), lockedAt: Type.Optional(Stamp) }),
    Type.Null(),
  ]),
  /** Keys uploaded with --no-activate, waiting for `key activate`. */
  availableKeys: Type.Optional(Type.Array(Type.Object({ name: Type.String(), thumbprint: Type.String(), createdAt: Stamp, createdBy: Type.String() }))),
  nextKeyChangeAllowedAt: Nullable(Stamp),
  lockAllowedAt: Nullable(Stamp),
  rollbackAvailableUntil: Type.Optional(Nullable(Stamp)),
  reprotection: Type.Optional(
    Type.Object({ total: Type.Number(), done: Type.Number(), remaining: Type.Number(), behind: Type.Number(), refused: Type.Optional(Type.Array(Type.Object({ env: Type.String(), code: Type.String(), message: Type.String() }))) }),
  ),
  faults: Type.Optional(Type.Object({ environments: Type.Array(Fault), keysNotRemoved: Type.Array(Type.Object({ name: Type.String(), code: Type.String(), reason: Type.String() })) })),
});
const KeyView = Type.Object({ name: Type.String(), thumbprint: Type.String(), state: Type.String(), activatedAt: Nullable(Stamp), activatedBy: Nullable(Type.String()) });
/** `key upload`: with --no-activate, the key stored Available as `key` (the active key is unchanged). */
export const UploadedKeyReport = Type.Composite([KeyReport, Type.Object({ key: Type.Optional(KeyView) })]);
export const GeneratedKeyReport = Type.Composite([KeyReport, Type.Object({ pfx: Str('the .pfx, base64: shown once (R3)') })]);
export const RolledBackKeyReport = Type.Composite([KeyReport, Type.Object({ rolledBack: Type.Object({ name: Type.String(), thumbprint: Type.String() }) })]);
/** `key history`: newest first; `setBy` is who activated it (who stored it, for a key never activated). */
export const KeyHistory = Type.Object({
  tenant: Type.String(),
  region: Type.String(),
  keys: Type.Array(
    Type.Object({
      name: Type.String(),
      thumbprint: Type.String(),
      state: Type.String(),
      source: Type.String(),
      setBy: Type.String(),
      createdAt: Stamp,
      createdBy: Type.String(),
      activatedAt: Nullable(Stamp),
      activatedBy: Nullable(Type.String()),
      replacedAt: Nullable(Stamp),
      lockedAt: Type.Optional(Stamp),
      reactivatedAt: Type.Optional(Stamp),
      inVault: Type.Boolean(),
    }),
  ),
});
export const Kek = Type.Object({ tenant: Type.String(), region: Type.String(), kid: Type.String(), thumbprint: Type.String(), publicKeyPem: Type.String() });

// ------------------------------------------------------------------------------------------ audit, mail

export const AuditRecordView = Type.Object({
  seq: Type.Number(),
  tenant: Type.Optional(Nullable(Type.String())),
  at: Stamp,
  actor: Type.String(),
  action: Type.String(),
  outcome: Type.String(),
  environment: Type.Optional(Nullable(Type.String())),
  region: Type.Optional(Nullable(Type.String())),
  code: Type.Optional(Nullable(Type.String())),
  thumbprints: Type.Optional(Type.Array(Type.String())),
});
export const AuditList = Type.Object({ tenant: Nullable(Type.String()), records: Type.Array(AuditRecordView) });
export const AuditVerification = Type.Object({
  ok: Type.Boolean(),
  records: Type.Number(),
  headSeq: Type.Union([Type.Number(), Type.Null()]),
  placeholders: Type.Optional(Type.Number()),
  problems: Type.Array(Type.Object({ seq: Type.Union([Type.Number(), Type.Null()]), problem: Type.String() })),
});

export const MailView = Type.Object({
  to: Type.String(),
  subject: Type.String(),
  event: Type.String(),
  sentAt: Type.Optional(Stamp),
  delivery: Type.Union([Type.Literal('delivered'), Type.Literal('pending'), Type.Literal('rejected')]),
  reason: Type.Optional(Nullable(Type.String())),
  attempts: Type.Optional(Type.Number()),
});
export const MailList = Type.Object({ tenant: Type.String(), mails: Type.Array(MailView) });
/** `cmk drift check`: the tenant's drifting environments (none: clean), and which of them this check found first. */
export const DriftChecked = Type.Object({
  tenant: Type.String(),
  checkedAt: Stamp,
  clean: Type.Boolean(),
  drifting: Type.Array(Type.Intersect([Type.Object({ env: Type.String() }), DriftView])),
  newlyFound: Type.Array(Type.String()),
});

export const MailRetried = Type.Object({ tenant: Type.String(), tried: Type.Array(MailView), mails: Type.Array(MailView) });

// ------------------------------------------------------------------------------------------ lock (R8–R11, R15)

export const Challenge = Type.Object({ tenant: Type.String(), region: Type.String(), operation: Type.String(), challenge: Type.String(), expiresAt: Stamp });
/** The tenant workflow's LockResult (workflows/messages.ts), as it is. */
export const LockReport = Type.Object({}, { description: "The tenant workflow's lock result (LockResult)" });
export const LockAllRegionsReport = Type.Object({ tenant: Type.String(), regions: Type.Array(LockReport) }, { description: 'One lock result per region (LockAllRegionsResult)' });
/** A lock waiting for a second administrator (the two-administrator policy, issue 19). */
export const PendingLockView = Type.Object(
  {
    id: Type.String(),
    requestedBy: Type.String(),
    requestedAt: Stamp,
    expiresAt: Stamp,
    allRegions: Type.Boolean(),
    regions: Type.Array(Type.Object({ region: Type.String(), thumbprint: Type.String() })),
  },
  { description: 'A lock asked for, waiting for a second global or service administrator until expiresAt' },
);
export const PendingLockReport = Type.Object({ tenant: Type.String(), pendingLock: PendingLockView }, { description: "The tenant's policy wants a second administrator: the lock waits for `/lock/approve`" });
/** `tenant policy`: how many administrators a lock takes now, a lowering not holding yet, and the lock waiting. */
export const LockPolicyReport = Type.Object({
  tenant: Type.String(),
  lockApproval: Type.Union([Type.Literal(1), Type.Literal(2)]),
  setBy: Type.Optional(Type.String()),
  setAt: Type.Optional(Stamp),
  lockApprovalFrom: Type.Optional(Type.Object({ value: Type.Union([Type.Literal(1), Type.Literal(2)]), at: Stamp }, { description: 'a lowering asked for, holding from `at` (the approval window)' })),
  pendingLock: Type.Union([PendingLockView, Type.Null()]),
});
export const LockApprovedReport = Type.Object({ tenant: Type.String(), regions: Type.Array(LockReport), requestedBy: Type.String(), approvedBy: Type.String() }, { description: 'The approved lock: one lock result per region' });
export const LockCancelledReport = Type.Object({ tenant: Type.String(), cancelled: PendingLockView });

/** The reactivated key's report. */
export const ReactivationReport = KeyReport;

// ------------------------------------------------------------------------------------------ the console's sign-in

// ------------------------------------------------------------------------------------------ dry runs (issue 19)

const PlannedProtection = Type.Object({ state: Type.String(), protection: Type.String(), keyThumbprint: Type.Union([Type.String(), Type.Null()], { description: 'null: a key not made yet (generate), not known before the vault opens it (.byok), or the provider key' }) });

/** `"dryRun": true` on a key change, rollback, apply, revert or lock: what it would do, nothing done (domain/dry-run.ts). */
export const DryRunReport = Type.Object(
  {
    dryRun: Type.Literal(true),
    operation: Type.String({ description: 'key.generate | key.upload | key.rollback | env.apply | env.revert | tenant.lock' }),
    tenant: Type.String(),
    region: Type.String(),
    wouldSucceed: Type.Boolean(),
    refusal: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()], { description: 'the refusal the real request would meet (its code and sentence), or null' }),
    environments: Type.Array(Type.Object({ id: Type.String(), from: PlannedProtection, to: PlannedProtection, goesOffline: Type.Boolean() })),
    mails: Type.Array(Type.Object({ event: Type.String(), to: Type.Array(Type.String()) })),
    key: Type.Optional(Type.Object({ name: Type.String(), source: Type.String(), thumbprint: Type.Union([Type.String(), Type.Null()]), activate: Type.Boolean() })),
    proof: Type.Optional(Type.Object({ given: Type.Boolean(), verified: Type.Union([Type.Boolean(), Type.Null()]), needs: Type.Union([Type.String(), Type.Null()]) })),
    approval: Type.Optional(
      Type.Object(
        { required: Type.Union([Type.Literal(1), Type.Literal(2)]), waitsUntil: Type.Union([Stamp, Type.Null()]) },
        { description: 'a lock: how many administrators it takes; with 2 it would wait for approval until waitsUntil' },
      ),
    ),
  },
  { description: 'Dry run: nothing was changed' },
);
/** A route that takes `"dryRun": true` answers its own document, or the dry run's report. */
export const OrDryRun = <T extends TSchema>(schema: T) => Type.Union([schema, DryRunReport], { description: `${schema.description ?? 'Done'}; with "dryRun": true, a DryRunReport` });

export const ConsoleLink = Type.Object({ path: Str('the sign-in link, relative to this service (one use, 5 minutes)'), expiresAt: Stamp });
export const ConsoleSession = Type.Object({ user: Type.String(), csrf: Str('send as the X-CMK-CSRF header on every POST'), expiresAt: Stamp, idleTimeoutSeconds: Type.Number() });
export const SignedOut = Type.Object({ signedOut: Type.Boolean() });
export const SignInOptions = Type.Object({
  links: Type.Boolean({ description: 'sign-in links from `cmk console` are accepted (always true)' }),
  issuer: Type.Union([Type.Object({ name: Str("the issuer's host, for the console's button"), start: Str('where the browser goes to sign in there') }), Type.Null()]),
});
/** A browser navigation's answer (HTTP 303 See Other): where to go next. */
export const SeeOther = Type.Object({ location: Type.String() }, { description: 'HTTP 303 See Other: the browser goes to Location' });

// ------------------------------------------------------------------------------------------ health, codec, this document

const Worker = Type.Object({ taskQueue: Type.String(), pollers: Type.Number() });
export const Status = Type.Object({
  ready: Type.Boolean(),
  api: Type.String(),
  temporal: Type.Object({ ok: Type.Boolean(), namespace: Type.String() }),
  worker: Type.Composite([Worker, Type.Object({ regions: Type.Optional(Type.Record(Type.String(), Worker)) })]),
  mail: Type.Optional(Type.Object({ pending: Type.Number(), rejected: Type.Number(), oldestPendingSince: Type.Optional(Nullable(Stamp)) })),
  warnings: Type.Optional(Type.Array(Type.String())),
});

export const Payloads = Type.Object({ payloads: Type.Array(Type.Object({ metadata: Type.Record(Type.String(), Type.String()), data: Type.String() })) }, { description: 'Temporal codec protocol: base64' });

export const OpenApi = Type.Object({ openapi: Type.String({ description: '3.1.0' }), paths: Type.Optional(Type.Record(Type.String(), Any)) }, { description: 'This document' });

export type StatusView = Static<typeof Status>;
