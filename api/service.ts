// Over 400 lines: ApiService is one method per request, each running DESIGN.md §4's pre-checks in order; the views it answers with are its own.
/**
 * What the API service does for each request, apart from HTTP: the pre-checks in DESIGN.md §4's order
 * (FORBIDDEN → NOT_FOUND → input → state → time → in progress), key material staged in the vault and passed on
 * as a reference, and environment data straight from the database engine. The workflows re-check every rule in
 * their update validators; these pre-checks only make refusals cheap and correctly ordered.
 */
import { kekVaultKeyName, legacyKekVaultKeyName, tenantVaultKeyName } from '../vault/names';
import { CmkError } from '../common/errors';
import type { ControlPlane } from '../client/library';
import type { EnvironmentDatabases } from '../database/types';
import type { Outbox, OutboxEntry } from '../mail/outbox';
import type { Delivery } from '../mail/types';
import type { Vault, VaultKeyInfo } from '../vault/types';
import type { Config } from '../config';
import { detectKeyFileKind, generateKeyPfx, MAX_KEY_FILE_BYTES, parseByok, parsePfx, type GeneratedKey, type GenerateKeyOptions, type OpenedPfx } from '../keyfiles';
import { describeActor, isAllowed, notificationRecipients, tenantAdminRole, type Action, type Actor } from '../domain/access';
import { isValidId, KEY_NAME_PATTERN, normaliseEmail } from '../domain/ids';
import {
  activeKeyOf,
  riskAcceptanceOf,
  usableKeyOf,
  type AdminRole,
  type EnvironmentOperation,
  type EnvironmentRecord,
  type EnvironmentState,
  type BackupOperation,
  type KeySource,
  type PendingLock,
  type TenantKey,
  type TenantSnapshot,
} from '../domain/model';
import {
  checkAdminChange,
  checkBackup,
  checkEnvironmentDelete,
  checkEnvironmentOperation,
  checkRegionServed,
  checkGeneratedPassword,
  checkKeyActivate,
  checkKeyAdd,
  checkKeyChange,
  checkLock,
  checkLockAllRegions,
  checkReactivate,
  checkRollback,
  checkUnlock,
  COVERAGE,
  forbidden,
  lockAllowedAt,
  nextKeyChangeAllowedAt,
  type PossessionProof,
  type Refusal,
} from '../domain/rules';
import type { LockAskRequest, StagedKey } from '../workflows/messages';
import { checkLockApproval, checkLockApprovalChange, checkLockCancel, checkLockRequest, lockApprovalReport, lockApprovalsRequired, approvalWindowEndsAt, pendingLockOf } from '../domain/lock-approval';
import type { ChallengeIssuer } from './challenges';
import type { AuditEntry } from '../audit/trail';
import { quotable, redactAuditEntry } from '../domain/audit-redaction';
import { MAX_AUDIT_PAGE } from '../activities/audit';
import { randomUUID } from 'node:crypto';
import { BULK_MAX_BYTES, checkEnvironmentsCreate, parseEnvironmentList } from '../domain/bulk';
import { dryRunReport, planEnvironmentOperation, planKeyChange, planLock, rollbackThumbprint, type DryRunOperation, type DryRunReport, type Plan } from '../domain/dry-run';
import { isCmkError } from '../common/errors';

export interface ApiDependencies {
  config: Config;
  controlPlane: ControlPlane;
  vault: Vault;
  databases: EnvironmentDatabases;
  /** R1: a region's own vault and database servers; without, `vault` and `databases` serve every region. */
  inRegion?: (region: string) => { vault: Vault; databases: EnvironmentDatabases };
  outbox: Outbox;
  challenges: ChallengeIssuer;
  /** Opens a .pfx (in a worker thread in the service: keyfiles/isolated.ts). */
  openPfx?: (bytes: Buffer, password: string | undefined) => Promise<OpenedPfx>;
  /** Makes a key and its .pfx (in a worker thread in the service, off the event loop: keyfiles/isolated.ts). */
  generatePfx?: (options: GenerateKeyOptions) => Promise<GeneratedKey>;
  /** Hands records to the audit trail's single writer (the worker's audit workflow). */
  audit: (entries: AuditEntry[]) => Promise<void>;
}

const refuse = (code: ConstructorParameters<typeof CmkError>[0], message: string): never => {
  throw new CmkError(code, message);
};
const refuseIf = (refusal: Refusal | null): void => {
  if (refusal) refuse(refusal.code, refusal.message);
};
/** An ID the caller typed, as a refusal may quote it: short and plain, or not at all (refusals are audited). */
const shown = (text: string): string => {
  const q = quotable(text);
  return q === null ? 'That' : `"${q}"`;
};

/**
 * The key-exchange key a .byok of (tenant, region) must name: the one made under today's name, or else one made
 * before names were unambiguous (an administrator may hold a .byok wrapped with it).
 */
export async function kekNameInVault(vault: Pick<Vault, 'listVersions'>, tenant: string, region: string): Promise<string> {
  const name = kekVaultKeyName(tenant, region);
  if ((await vault.listVersions(name)).length > 0) return name;
  const legacy = legacyKekVaultKeyName(tenant, region);
  return (await vault.listVersions(legacy)).length > 0 ? legacy : name;
}

export function keyView(key: TenantKey | null) {
  return (
    key && {
      name: key.name,
      thumbprint: key.thumbprint,
      state: key.state,
      activatedAt: key.activatedAt,
      activatedBy: key.activatedBy,
      ...(key.lockedAt ? { lockedAt: key.lockedAt } : {}),
      ...(key.reactivatedAt ? { reactivatedAt: key.reactivatedAt } : {}),
    }
  );
}

export function environmentView(env: EnvironmentRecord) {
  return {
    id: env.id,
    region: env.region,
    state: env.state,
    protection: env.protection,
    keyThumbprint: env.keyThumbprint,
    systemAdmin: env.systemAdmin,
    createdAt: env.createdAt,
    ...(env.lock ? { lock: { lockedAt: env.lock.lockedAt, lockedBy: env.lock.lockedBy, sealed: env.lock.sealed, deleteAt: env.lock.deleteAt } } : {}),
    ...(env.deletedAt ? { deletedAt: env.deletedAt } : {}),
    coverage: { covered: [...COVERAGE.covered], notCovered: [...COVERAGE.notCovered] },
  };
}

export class ApiService {
  constructor(private readonly deps: ApiDependencies) {}

  private openPfx(bytes: Buffer, password: string | undefined): Promise<OpenedPfx> {
    return this.deps.openPfx ? this.deps.openPfx(bytes, password) : Promise.resolve().then(() => parsePfx(bytes, password));
  }

  /** The vault and databases of a region (R1). */
  private region(region: string): { vault: Vault; databases: EnvironmentDatabases } {
    return this.deps.inRegion ? this.deps.inRegion(region) : this.deps;
  }

  private get policy() {
    return this.deps.config.policy;
  }

  /**
   * FORBIDDEN, then INVALID_ARGUMENT for a malformed tenant ID (it cannot name a tenant), then NOT_FOUND.
   * Returns the tenant's state for the later checks.
   */
  async authorize(actor: Actor, tenantId: string, action: Action, envId?: string): Promise<TenantSnapshot> {
    // A request about one environment reads that environment and the caller's own, not the whole tenant.
    const scope = envId !== undefined ? { env: envId, caller: actor.kind === 'user' ? normaliseEmail(actor.email) : null } : undefined;
    const tenant = isValidId(tenantId) ? await this.deps.controlPlane.snapshot(tenantId, scope) : undefined;
    if (!isAllowed(tenant, actor, action, envId)) {
      const refusal = forbidden(actor, describeAction(action));
      refuse(refusal.code, refusal.message);
    }
    if (!isValidId(tenantId)) refuse('INVALID_ARGUMENT', `${shown(tenantId)} is not a valid tenant ID.`);
    if (!tenant) return refuse('NOT_FOUND', `Tenant ${tenantId} does not exist.`);
    return tenant;
  }

  /** FORBIDDEN / NOT_FOUND for a request the CLI could not even build (e.g. an unreadable local file): they come first. */
  async checkAccess(actor: Actor, tenantId: string, action: Action, envId?: string) {
    const tenant = await this.authorize(actor, tenantId, action, envId);
    if (envId !== undefined) this.environmentOf(tenant, envId);
    return { allowed: true };
  }

  private environmentOf(tenant: TenantSnapshot, envId: string): EnvironmentRecord {
    if (!isValidId(envId)) refuse('INVALID_ARGUMENT', `${shown(envId)} is not a valid environment ID.`);
    const env = tenant.environments.find((e) => e.id === envId);
    if (!env || env.state === 'Deleted') return refuse('NOT_FOUND', `Environment ${envId} does not exist in tenant ${tenant.tenant}.`);
    return env;
  }

  private regionOf(tenant: TenantSnapshot, region: string | undefined): string {
    const chosen = region ?? tenant.homeRegion;
    if (!isValidId(chosen)) refuse('INVALID_ARGUMENT', `${shown(chosen)} is not a valid region ID.`);
    refuseIf(checkRegionServed(chosen, this.policy.regions));
    return chosen;
  }

  /** Something served here rather than by a workflow, recorded here before its answer leaves (no record, no answer). */
  private async record(actor: Actor, action: string, tenant: string | null, facts: Pick<AuditEntry, 'region' | 'environment' | 'thumbprints' | 'details'> = {}): Promise<void> {
    await this.deps.audit([redactAuditEntry({ id: `${action}/${randomUUID()}`, at: new Date().toISOString(), actor: describeActor(actor), action, outcome: 'completed', tenant, ...facts })]);
  }

  /** The provider operator reading a tenant's data crosses the tenant's trust boundary: recorded. The tenant's own
   *  administrators' reads are not (their own data, and `audit list` would record itself). */
  private async recordOperatorRead(actor: Actor, action: string, tenant: string | null, facts: Pick<AuditEntry, 'region' | 'details'> = {}): Promise<void> {
    if (actor.kind === 'operator') await this.record(actor, action, tenant, facts);
  }

  // ------------------------------------------------------------------------------------------ tenants

  async createTenant(actor: Actor, p: { tenant: string; name: string; region?: string; admins: Array<{ email: string; role: AdminRole }> }) {
    const snapshot = await this.deps.controlPlane.createTenant({ actor, tenant: p.tenant, displayName: p.name, homeRegion: p.region ?? 'default', admins: p.admins, ...(this.policy.regions ? { regions: this.policy.regions } : {}) });
    return { tenant: tenantView(snapshot) };
  }

  /**
   * `tenant show` (an extension of §4): who administers the tenant, and its environments per region by state and
   * protection. For the tenant's global and service administrators and the operator; a system administrator sees
   * only their own environments (`env list`), so not the tenant's counts. No key: that is `key show`, which the
   * operator may not see.
   */
  async showTenant(actor: Actor, tenantId: string) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.show');
    await this.recordOperatorRead(actor, 'tenant.show', tenantId);
    return { tenant: { ...tenantView(tenant), regions: regionSummaries(tenant) } };
  }

  async changeAdmin(actor: Actor, tenantId: string, p: { change: 'add' | 'remove'; email: string; role: AdminRole | null }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.admin');
    // The workflow's validator checks again; here the refusal (R6: ROLLBACK_WINDOW_OPEN included) costs nothing.
    refuseIf(checkAdminChange(tenant, { actor, ...p }, Date.now()));
    const result = await this.deps.controlPlane.changeAdmin(tenantId, { actor, policy: this.policy, ...p });
    return { tenant: tenantId, admins: result.admins };
  }

  // ------------------------------------------------------------------------------------------ environments

  async createEnvironment(actor: Actor, tenantId: string, p: { env: string; region?: string; admin?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'env.create');
    const env = await this.deps.controlPlane.createEnvironment(tenantId, {
      actor,
      policy: this.policy,
      env: p.env,
      region: this.regionOf(tenant, p.region),
      systemAdmin: p.admin ?? null,
    });
    return { environment: environmentView(env) };
  }

  /**
   * `env create --from-file`: every line checked here first (line numbers in the refusal), then one update whose
   * validator checks them again against the workflow's own state; returns when every environment is recorded.
   */
  async createEnvironments(actor: Actor, tenantId: string, p: { list: string; region?: string; operation?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'env.create');
    const operation = p.operation ?? randomUUID();
    // Chosen by the caller (the CLI: a UUID) so that it can ask for progress while it waits; the grammar of IDs.
    if (!isValidId(operation)) refuse('INVALID_ARGUMENT', '"operation" must be an ID: lowercase letters, digits and dashes, at most 63.');
    if (Buffer.byteLength(p.list, 'utf8') > BULK_MAX_BYTES) refuse('INVALID_ARGUMENT', `The list is larger than ${BULK_MAX_BYTES / 1024} KiB; send at most 10,000 environments at once.`);
    const region = p.region ?? tenant.homeRegion;
    const { list, problems } = parseEnvironmentList(p.list);
    refuseIf(checkEnvironmentsCreate(tenant, { actor, region, list, policy: this.policy }, new Set(), problems));
    const result = await this.deps.controlPlane.createEnvironments(tenantId, { actor, policy: this.policy, operation, region, list });
    const refused = new Set(result.refused.map((r) => r.env));
    return {
      tenant: tenantId,
      operation,
      region,
      requested: list.entries.length,
      created: result.created,
      protection: result.protection,
      keyThumbprint: result.keyThumbprint,
      environments: list.entries.map(([env]) => env).filter((env) => !refused.has(env)),
      refused: result.refused,
    };
  }

  /** A bulk creation's progress (the CLI polls it while its request runs); `known: false` before it is accepted. */
  async environmentCreation(actor: Actor, tenantId: string, operation: string) {
    await this.authorize(actor, tenantId, 'env.create');
    if (!isValidId(operation)) refuse('INVALID_ARGUMENT', 'That is not an operation ID.');
    const progress = await this.deps.controlPlane.environmentCreation(tenantId, operation);
    return progress ? { tenant: tenantId, known: true, ...progress } : { tenant: tenantId, operation, known: false };
  }

  async listEnvironments(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'env.list');
    const region = this.regionOf(tenant, p.region);
    // A system administrator sees the environments they administer; the others see all of the tenant's.
    const seesAll = actor.kind === 'operator' || tenantAdminRole(tenant, actor) !== null;
    const mine = actor.kind === 'user' ? normaliseEmail(actor.email) : null;
    const environments = tenant.environments.filter((e) => e.region === region && (seesAll || e.systemAdmin === mine));
    await this.recordOperatorRead(actor, 'env.list', tenantId, { region, details: { environments: environments.length } });
    return { tenant: tenantId, region, environments: environments.map((e) => ({ ...environmentView(e), ...faultView(tenant, e), ...driftView(tenant, e) })) };
  }

  /** R7 `env apply` / `env revert`, and `env rekey`: returns when done, its mail in the outbox. */
  async environmentOperation(actor: Actor, tenantId: string, envId: string, operation: EnvironmentOperation, p: { acceptRisk?: unknown } = {}) {
    const tenant = await this.authorize(actor, tenantId, `env.${operation}`, envId);
    const current = this.environmentOf(tenant, envId);
    // An input code: after FORBIDDEN and NOT_FOUND (DESIGN.md §4's order), before any state code.
    if (p.acceptRisk !== undefined && typeof p.acceptRisk !== 'boolean') refuse('INVALID_ARGUMENT', '"acceptRisk" must be true or false.');
    const request = { actor, policy: this.policy, env: envId, operation, ...(p.acceptRisk === true ? { acceptRisk: true } : {}) };
    // The opt-in of a first apply answered here, as the workflow's validator would; only this refusal: a repeat of a
    // running operation must still reach the workflow, which attaches it to the one running.
    const refusal = checkEnvironmentOperation(tenant, request);
    if (refusal?.code === 'RISK_NOT_ACCEPTED') refuseIf(refusal);
    const env = await this.deps.controlPlane.environmentOperation(tenantId, request, current);
    return { environment: environmentView(env) };
  }

  /** `env data`: served straight from the database engine, never through a workflow payload (DESIGN.md §6). */
  async environmentData(actor: Actor, tenantId: string, envId: string, write: string | undefined) {
    const tenant = await this.authorize(actor, tenantId, 'env.data', envId);
    const env = this.environmentOf(tenant, envId);
    if (write !== undefined && (write.length === 0 || write.length > 10_000)) refuse('INVALID_ARGUMENT', 'The text to write must be 1 to 10,000 characters.');
    if (env.state === 'Locked') refuse('ENVIRONMENT_LOCKED', `Environment ${envId} is locked: its data cannot be read or written until it is unlocked.`);
    if (env.state !== 'Online') refuse('OPERATION_IN_PROGRESS', `Environment ${envId} is ${env.state.toLowerCase()}; try again when it is back online.`);
    if (write !== undefined) {
      await this.region(env.region).databases.writeRow(tenantId, envId, write);
      // Served here rather than by a workflow, so recorded here: who wrote, where, how much — never the text.
      await this.deps.audit([
        redactAuditEntry({ id: `env-data/${randomUUID()}`, at: new Date().toISOString(), actor: describeActor(actor), action: 'env.data', outcome: 'completed', tenant: tenantId, region: env.region, environment: envId, details: { characters: write.length } }),
      ]);
    }
    const rows = await this.region(env.region).databases.readRows(tenantId, envId);
    // Rows leaving to anyone but the tenant's own global or service administrators (the operator, a system
    // administrator; after a write too, whose answer holds them) are recorded first: who, where, how many — never the rows.
    if (tenantAdminRole(tenant, actor) === null) {
      await this.record(actor, 'env.data.read', tenantId, { region: env.region, environment: envId, details: { rows: rows.length } });
    }
    return { tenant: tenantId, env: envId, rows };
  }

  // ------------------------------------------------------------------------------------------ keys

  async showKey(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.show');
    return this.keyReport(tenant, this.regionOf(tenant, p.region));
  }

  /** `key history`: every key the tenant has had in the region, newest (last stored) first (issue 19). */
  async keyHistory(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.show');
    const region = this.regionOf(tenant, p.region);
    const keys = [...(tenant.regions[region]?.keys ?? [])].reverse();
    return {
      tenant: tenantId,
      region,
      keys: keys.map((k) => ({
        name: k.name,
        thumbprint: k.thumbprint,
        state: k.state,
        source: k.source,
        // Who made it the active key; for a key never activated, who stored it.
        setBy: k.activatedBy ?? k.createdBy,
        createdAt: k.createdAt,
        createdBy: k.createdBy,
        activatedAt: k.activatedAt,
        activatedBy: k.activatedBy,
        replacedAt: k.retiredAt,
        ...(k.lockedAt ? { lockedAt: k.lockedAt } : {}),
        ...(k.reactivatedAt ? { reactivatedAt: k.reactivatedAt } : {}),
        inVault: k.inVault,
      })),
    };
  }

  keyReport(tenant: TenantSnapshot, region: string) {
    const keys = tenant.regions[region];
    const at = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return {
      tenant: tenant.tenant,
      region,
      activeKey: keyView(activeKeyOf(keys)),
      // Uploaded with --no-activate, waiting for `key activate` (issue 19).
      availableKeys: (keys?.keys ?? []).filter((k) => k.state === 'Available').map((k) => ({ name: k.name, thumbprint: k.thumbprint, createdAt: k.createdAt, createdBy: k.createdBy })),
      nextKeyChangeAllowedAt: at(nextKeyChangeAllowedAt(keys, this.policy)),
      lockAllowedAt: at(lockAllowedAt(keys, this.policy)),
      rollbackAvailableUntil: keys?.rollbackUntil ?? null,
      reprotection: reprotectionProgress(tenant, region),
      faults: regionFaults(tenant, region),
    };
  }

  /** `key generate`: the key is made here, staged disabled in the vault, and the .pfx goes back to the caller only. */
  async generateKey(actor: Actor, tenantId: string, p: { name: string; password: string; region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.change');
    const region = this.checkGenerate(tenant, actor, p);
    const generated = await (this.deps.generatePfx ?? generateKeyPfx)({ name: p.name, password: p.password });
    const staged = await this.region(region).vault.importKey(tenantVaultKeyName(tenantId, region), generated.pkcs8Der, this.stagingOptions(tenantId, region, p.name, actor));
    const report = await this.activate(tenantId, region, actor, p.name, 'generated', staged);
    return { ...report, pfx: generated.pfx.toString('base64') };
  }

  /** What `key generate` checks before it makes a key, its dry run too: the region, the name, R3's password, R11, R5. */
  private checkGenerate(tenant: TenantSnapshot, actor: Actor, p: { name: string; password: string; region?: string }): string {
    const region = this.regionOf(tenant, p.region);
    checkKeyName(p.name);
    refuseIf(checkGeneratedPassword(p.password));
    this.precheckKeyChange(tenant, actor, region, '');
    return region;
  }

  /** `key generate --dry-run`: every check of the real run; no key is made. */
  async generateKeyDryRun(actor: Actor, tenantId: string, p: { name: string; password: string; region?: string }): Promise<DryRunReport> {
    const tenant = await this.authorize(actor, tenantId, 'key.change');
    return this.dryRun('key.generate', tenant, p.region, async () => {
      const region = this.checkGenerate(tenant, actor, p);
      return { region, plan: planKeyChange(tenant, region, 'change', null) };
    });
  }

  /**
   * A dry run after authorisation (issue 19): the checks `check` runs are the real run's; a refusal among them is
   * the report's, not an error, so that the caller sees what would happen either way. FORBIDDEN and anything that
   * is not a refusal fail as in the real run.
   */
  private async dryRun<T extends object>(operation: DryRunOperation, tenant: TenantSnapshot, region: string | undefined, check: () => Promise<{ region: string; plan: Plan; facts?: T }>): Promise<DryRunReport & Partial<T>> {
    try {
      const { region: checked, plan, facts } = await check();
      return { ...dryRunReport(operation, tenant.tenant, checked, { plan }), ...facts } as DryRunReport & Partial<T>;
    } catch (err) {
      // A caller who may not do it is refused as the real request is (403), never with a report (R12's rules too:
      // the maker of a key change may not roll it back).
      if (!isCmkError(err) || err.code === 'FORBIDDEN') throw err;
      return dryRunReport(operation, tenant.tenant, region ?? tenant.homeRegion, { refusal: { code: err.code, message: err.message } }) as DryRunReport & Partial<T>;
    }
  }

  /**
   * `key upload`: a .pfx opened here with its password, or a .byok unwrapped inside the vault. With `activate: false`
   * (`--no-activate`) it is kept Available: R5, R6 and R11 wait for `key activate`.
   */
  async uploadKey(actor: Actor, tenantId: string, p: { name: string; fileName: string; file: Buffer; password?: string; region?: string; activate?: boolean }) {
    const tenant = await this.authorize(actor, tenantId, 'key.change');
    const { region, activate, file } = await this.openUpload(tenant, actor, p);
    const options = this.stagingOptions(tenantId, region, p.name, actor);
    const vaultName = tenantVaultKeyName(tenantId, region);
    const staged =
      file.kind === 'pfx'
        ? await this.region(region).vault.importKey(vaultName, file.opened.pkcs8Der, options)
        : await this.region(region).vault.importByok(vaultName, file.transfer, options, await kekNameInVault(this.region(region).vault, tenantId, region));
    if (activate) return this.activate(tenantId, region, actor, p.name, file.kind, staged);
    const ref: StagedKey = { vaultKey: { name: staged.name, version: staged.version }, thumbprint: staged.thumbprint };
    const added = await this.handOver(region, ref, () => this.deps.controlPlane.addKey(tenantId, { actor, policy: this.policy, region, name: p.name, source: file.kind, staged: ref }));
    return { ...this.keyReport(await this.authorize(actor, tenantId, 'key.show'), region), key: keyView(added.key)! };
  }

  /**
   * What `key upload` checks before it stages anything, its dry run too: the region, the name, the file (a .pfx opened
   * with its password), then for a .pfx R11 and R5 (or, kept Available, only a key used before).
   */
  private async openUpload(tenant: TenantSnapshot, actor: Actor, p: { name: string; fileName: string; file: Buffer; password?: string; region?: string; activate?: boolean }) {
    const region = this.regionOf(tenant, p.region);
    checkKeyName(p.name);
    if (p.file.length > MAX_KEY_FILE_BYTES) refuse('INVALID_KEY_FILE', `The key file is larger than ${MAX_KEY_FILE_BYTES / 1024} KiB; no key file is that large.`);
    const kind = detectKeyFileKind(p.fileName);
    const activate = p.activate !== false;
    if (kind === 'byok') return { region, activate, file: { kind, transfer: parseByok(p.file) } as const };
    const opened = await this.openPfx(p.file, p.password);
    if (activate) this.precheckKeyChange(tenant, actor, region, opened.thumbprint);
    else refuseIf(checkKeyAdd(tenant, { actor, region, thumbprint: opened.thumbprint }, this.policy));
    return { region, activate, file: { kind, opened } as const };
  }

  /**
   * `key upload --dry-run`: the file opened and checked as the real run does; nothing staged. A .byok opens only
   * inside the vault, so its thumbprint is not known here, and the rules are checked as for a key never used before.
   */
  async uploadKeyDryRun(actor: Actor, tenantId: string, p: { name: string; fileName: string; file: Buffer; password?: string; region?: string; activate?: boolean }) {
    const tenant = await this.authorize(actor, tenantId, 'key.change');
    return this.dryRun('key.upload', tenant, p.region, async () => {
      const { region, activate, file } = await this.openUpload(tenant, actor, p);
      const thumbprint = file.kind === 'pfx' ? file.opened.thumbprint : null;
      if (file.kind === 'byok' && activate) this.precheckKeyChange(tenant, actor, region, '');
      const key = { name: p.name, source: file.kind, thumbprint, activate };
      return { region, plan: activate ? planKeyChange(tenant, region, 'change', thumbprint) : { environments: [], mails: [] }, facts: { key } };
    });
  }

  /** `key activate`: an Available key becomes the active key, with the rules of any key change (R5, R6, R11). */
  async activateKey(actor: Actor, tenantId: string, p: { thumbprint: string; region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.change');
    const region = this.regionOf(tenant, p.region);
    // Thumbprints are lowercase hex (DESIGN.md §4); one copied from an upper-case display is the same key.
    const request = { actor, policy: this.policy, region, thumbprint: p.thumbprint.toLowerCase() };
    refuseIf(checkKeyActivate(tenant, request, Date.now(), this.policy));
    await this.deps.controlPlane.activateKey(tenantId, request);
    return this.keyReport(await this.authorize(actor, tenantId, 'key.show'), region);
  }

  /** A staged key handed to the tenant workflow; a refusal (certain to have changed nothing) purges it from the vault (DESIGN.md §6). */
  private async handOver<T>(region: string, staged: StagedKey, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      // Only a refusal is certain to have changed nothing; after any other fault the workflow may still take it.
      if (err instanceof CmkError) await this.region(region).vault.deleteKey(staged.vaultKey);
      throw err;
    }
  }

  /** `key kek`: a key-exchange key in the vault; its public key goes to the HSM that makes the .byok. */
  async createKek(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.kek');
    const region = this.regionOf(tenant, p.region);
    const { key, publicKeyPem } = await this.region(region).vault.createKek(kekVaultKeyName(tenantId, region));
    await this.record(actor, 'key.kek', tenantId, { region, thumbprints: [key.thumbprint], details: { kid: key.kid } });
    return { tenant: tenantId, region, kid: key.kid, thumbprint: key.thumbprint, publicKeyPem };
  }

  /** `--wait`: until the active key is no longer Installing (re-protection done). */
  async waitForKey(actor: Actor, tenantId: string, p: { region?: string; timeoutMs: number }) {
    const deadline = Date.now() + p.timeoutMs;
    for (;;) {
      const tenant = await this.authorize(actor, tenantId, 'key.show');
      const region = this.regionOf(tenant, p.region);
      const report = this.keyReport(tenant, region);
      if (report.activeKey?.state !== 'Installing' || Date.now() > deadline) return report;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private stagingOptions(tenant: string, region: string, name: string, actor: Actor) {
    return { purpose: 'tenant' as const, enabled: false, tags: { tenant, region, name, stagedBy: actor.kind === 'operator' ? 'operator' : actor.email } };
  }

  /** Time and state rules before any key material is staged, so a doomed request costs nothing (R5, R11). */
  private precheckKeyChange(tenant: TenantSnapshot, actor: Actor, region: string, thumbprint: string): void {
    const refusal = checkKeyChange(tenant, { actor, region, thumbprint }, Date.now(), this.policy);
    if (refusal) refuse(refusal.code, refusal.message);
  }

  /** Hands the staged key to the tenant workflow; a refusal purges it from the vault (DESIGN.md §6). */
  private async activate(tenantId: string, region: string, actor: Actor, name: string, source: KeySource, key: VaultKeyInfo) {
    const staged: StagedKey = { vaultKey: { name: key.name, version: key.version }, thumbprint: key.thumbprint };
    await this.handOver(region, staged, () => this.deps.controlPlane.changeKey(tenantId, { actor, policy: this.policy, region, name, source, staged }));
    const tenant = await this.authorize(actor, tenantId, 'key.show');
    return this.keyReport(tenant, region);
  }

  /** R6's purpose: another administrator puts the replaced key back within the embargo; `--wait` as for a key change. */
  async rollbackKey(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.rollback');
    const region = this.checkRollback(tenant, actor, p);
    const active = activeKeyOf(tenant.regions[region])!;
    const result = await this.deps.controlPlane.rollbackKey(tenantId, { actor, policy: this.policy, region }, active.thumbprint);
    const after = await this.authorize(actor, tenantId, 'key.show');
    return { ...this.keyReport(after, region), rolledBack: result.rolledBack };
  }

  private checkRollback(tenant: TenantSnapshot, actor: Actor, p: { region?: string }): string {
    const region = this.regionOf(tenant, p.region);
    refuseIf(checkRollback(tenant, { actor, region }, Date.now()));
    return region;
  }

  /** `key rollback --dry-run`: the replaced key would be active again and re-protect the environments on the tenant key. */
  async rollbackKeyDryRun(actor: Actor, tenantId: string, p: { region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.rollback');
    return this.dryRun('key.rollback', tenant, p.region, async () => {
      const region = this.checkRollback(tenant, actor, p);
      return { region, plan: planKeyChange(tenant, region, 'rollback', rollbackThumbprint(tenant, region)) };
    });
  }

  /** `env apply|revert --dry-run`: the checks of the workflow's validator (checkEnvironmentOperation) on the same snapshot. */
  async environmentOperationDryRun(actor: Actor, tenantId: string, envId: string, operation: 'apply' | 'revert', p: { acceptRisk?: unknown } = {}) {
    const tenant = await this.authorize(actor, tenantId, `env.${operation}`, envId);
    const env = this.environmentOf(tenant, envId);
    if (p.acceptRisk !== undefined && typeof p.acceptRisk !== 'boolean') refuse('INVALID_ARGUMENT', '"acceptRisk" must be true or false.');
    return this.dryRun(`env.${operation}`, tenant, env.region, async () => {
      // The opt-in counts as in the real run: a first apply without it would meet RISK_NOT_ACCEPTED.
      refuseIf(checkEnvironmentOperation(tenant, { actor, env: envId, operation, ...(p.acceptRisk === true ? { acceptRisk: true } : {}) }));
      return { region: env.region, plan: planEnvironmentOperation(tenant, env, operation) };
    });
  }

  // ------------------------------------------------------------------------------------------ audit

  /** `cmk audit list`: the tenant's records, oldest first (the last `limit`, or those after `after`). */
  async listAudit(actor: Actor, tenantId: string | null, p: { limit: string | null; after: string | null }) {
    if (tenantId === null) {
      if (actor.kind !== 'operator') refuse('FORBIDDEN', `${actor.email} may not read the whole audit trail; only the provider operator may.`);
    } else {
      await this.authorize(actor, tenantId, 'audit');
    }
    await this.recordOperatorRead(actor, 'audit.list', tenantId);
    const limit = p.limit === null ? 100 : Number(p.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE) refuse('INVALID_ARGUMENT', `"limit" must be a whole number from 1 to ${MAX_AUDIT_PAGE}.`);
    const after = p.after === null ? null : Number(p.after);
    if (after !== null && (!Number.isInteger(after) || after < 0)) refuse('INVALID_ARGUMENT', '"after" must be a record number (0 or more).');
    const { records } = await this.deps.controlPlane.readAudit({ tenant: tenantId, afterSeq: after, limit, verify: false });
    return { tenant: tenantId, records };
  }

  /** `cmk audit verify`: the whole trail's hash chain and signed head (a tenant's records are links in one chain). */
  async verifyAudit(actor: Actor, tenantId: string) {
    await this.authorize(actor, tenantId, 'audit');
    const { verification } = await this.deps.controlPlane.readAudit({ tenant: null, afterSeq: null, limit: 1, verify: true });
    return { tenant: tenantId, ...verification! };
  }

  // ------------------------------------------------------------------------------------------ lock (R8–R11, R15)

  /** R8, step one: a fresh single-use challenge for the caller to sign with the active key's private key. */
  async issueChallenge(actor: Actor, tenantId: string, p: { operation: string; region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    const region = this.regionOf(tenant, p.region);
    if (p.operation !== 'lock') refuse('INVALID_ARGUMENT', `"${p.operation}" is not an operation that needs proof of possession (lock).`);
    if (actor.kind !== 'user') return refuse('FORBIDDEN', 'operator may not lock this tenant.');
    const { challenge, claims } = await this.deps.challenges.issue({ tenant: tenantId, region, user: normaliseEmail(actor.email), operation: 'lock' });
    return { tenant: tenantId, region, operation: 'lock', challenge, expiresAt: claims.expiresAt };
  }

  /**
   * R8 `tenant lock`: the signature over the challenge is verified here against the vault's public key of the active
   * key (the private key and its password stay with the caller), then the tenant workflow checks the rules again,
   * spends the challenge, and locks.
   */
  async lockTenant(actor: Actor, tenantId: string, p: { region?: string; confirm: string; challenge: string; signature: Buffer }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    const region = this.regionOf(tenant, p.region);
    const proof = await this.verifyPossession(tenant, region, p.challenge, p.signature);
    const request = { actor, policy: this.policy, region, confirm: p.confirm, proof };
    refuseIf(checkLock(tenant, request, Date.now(), this.policy));
    // checkLock refuses a missing proof; this only tells the compiler.
    if (!proof) return refuse('KEY_MISMATCH', 'The key file does not prove possession of the active key.');
    const possession = { challenge: p.challenge, signature: p.signature.toString('base64') };
    if (lockApprovalsRequired(tenant, Date.now()) === 2) return this.askForLock(tenantId, tenant, { actor, policy: this.policy, confirm: p.confirm, allRegions: false, locks: [{ region, proof, possession }] });
    // The workflow has the challenge and signature checked again against the vault before it locks anything.
    return this.deps.controlPlane.lockTenant(tenantId, { ...request, proof, possession });
  }

  /** Under the two-administrator policy: the lock's proofs go to the workflow, which keeps the lock waiting for approval. */
  private async askForLock(tenantId: string, tenant: TenantSnapshot, request: LockAskRequest) {
    refuseIf(checkLockRequest(tenant, request, Date.now(), this.policy));
    const pendingLock = await this.deps.controlPlane.requestLock(tenantId, request);
    return { tenant: tenantId, pendingLock };
  }

  /** `tenant policy`: how many administrators a lock takes, and the lock waiting for approval. */
  async lockPolicy(actor: Actor, tenantId: string) {
    // The tenant's global and service administrators: the request names the key proven (as `key show` does).
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    return { tenant: tenantId, ...lockApprovalReport(tenant, Date.now()) };
  }

  /** `tenant policy --lock-approval 1|2`: raised at once; lowered after the approval window (mailed to every administrator). */
  async setLockPolicy(actor: Actor, tenantId: string, p: { lockApproval: number }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.policy');
    refuseIf(checkLockApprovalChange(tenant, { actor, lockApproval: p.lockApproval }));
    const state = await this.deps.controlPlane.setLockApproval(tenantId, { actor, policy: this.policy, lockApproval: p.lockApproval as 1 | 2 });
    return { tenant: tenantId, ...state };
  }

  /** `tenant lock approve`: a second global or service administrator carries out the lock waiting for approval. */
  async approveLock(actor: Actor, tenantId: string, p: { confirm: string; id?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    refuseIf(checkLockApproval(tenant, { actor, ...p }, Date.now(), this.policy));
    const pending = pendingLockOf(tenant, Date.now())!;
    return this.deps.controlPlane.approveLock(tenantId, { actor, policy: this.policy, confirm: p.confirm, id: pending.id });
  }

  /** `tenant lock cancel`: the lock waiting for approval is dropped; nothing is locked. */
  async cancelLock(actor: Actor, tenantId: string, p: { id?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    refuseIf(checkLockCancel(tenant, { actor, ...p }, Date.now()));
    const pending = pendingLockOf(tenant, Date.now())!;
    const cancelled = await this.deps.controlPlane.cancelLock(tenantId, { actor, policy: this.policy, id: pending.id });
    return { tenant: tenantId, cancelled };
  }

  /**
   * `tenant lock --all-regions`: one confirmation; each region's challenge signed by that region's active key. Every
   * proof is verified here, then all of them again by the workflow, before any region is locked (all or none).
   */
  async lockAllRegions(actor: Actor, tenantId: string, p: { confirm: string; proofs: Array<{ region: string; challenge: string; signature: Buffer }> }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    const locks = [];
    for (const given of p.proofs) {
      const region = this.regionOf(tenant, given.region);
      const proof = await this.verifyPossession(tenant, region, given.challenge, given.signature);
      locks.push({ region, proof, possession: { challenge: given.challenge, signature: given.signature.toString('base64') } });
    }
    const request = { actor, policy: this.policy, confirm: p.confirm, locks };
    refuseIf(checkLockAllRegions(tenant, request, Date.now(), this.policy));
    // checkLockAllRegions refuses a missing proof; this only tells the compiler.
    const proven = locks.flatMap((l) => (l.proof ? [{ ...l, proof: l.proof }] : []));
    if (proven.length !== locks.length) return refuse('KEY_MISMATCH', 'A key file does not prove possession of its region\'s active key.');
    if (lockApprovalsRequired(tenant, Date.now()) === 2) return this.askForLock(tenantId, tenant, { ...request, allRegions: true, locks: proven });
    return this.deps.controlPlane.lockAllRegions(tenantId, { ...request, locks: proven });
  }

  /**
   * `tenant lock --dry-run`: the rules of a real lock, the proof verified when one is given (its challenge is not
   * spent: only the workflow spends it). Without one, the rules are checked as if the active key's proof came, and
   * the report says what proof the real lock needs.
   */
  async lockTenantDryRun(actor: Actor, tenantId: string, p: { region?: string; confirm: string; challenge?: string; signature?: Buffer }) {
    const tenant = await this.authorize(actor, tenantId, 'tenant.lock');
    return this.dryRun('tenant.lock', tenant, p.region, async () => {
      const region = this.regionOf(tenant, p.region);
      const active = usableKeyOf(tenant.regions[region]);
      const given = p.challenge !== undefined && p.signature !== undefined;
      const proof = given ? await this.verifyPossession(tenant, region, p.challenge!, p.signature!) : active && actor.kind === 'user' ? assumedProof(tenant.tenant, region, actor.email, active.thumbprint) : null;
      const approval = lockApprovalsRequired(tenant, Date.now());
      // Under the policy, the request's checks (the lock's own, then none waiting); else the lock's.
      refuseIf(approval === 2 ? checkLockRequest(tenant, { actor, confirm: p.confirm, allRegions: false, locks: [{ region, proof }] }, Date.now(), this.policy) : checkLock(tenant, { actor, region, confirm: p.confirm, proof }, Date.now(), this.policy));
      const needs = active
        ? `A real lock needs proof of possession of the active key "${active.name}" (thumbprint ${active.thumbprint}): its .pfx (--file with --password-file), or a signature over \`cmk tenant challenge\` made where the key is kept (--signature-file).`
        : null;
      const waitsUntil = approval === 2 ? new Date(approvalWindowEndsAt(Date.now(), this.policy)).toISOString() : null;
      const plan = planLock(tenant, region);
      // Under the policy the request itself only mails the administrators; the lock's own mail follows its approval.
      const planned = approval === 2 ? { ...plan, mails: [{ event: 'lock-requested' as const, to: notificationRecipients(tenant) }, ...plan.mails] } : plan;
      return { region, plan: planned, facts: { proof: { given, verified: given ? true : null, needs }, approval: { required: approval, waitsUntil } } };
    });
  }

  private async verifyPossession(tenant: TenantSnapshot, region: string, challenge: string, signature: Buffer): Promise<PossessionProof | null> {
    const claims = await this.deps.challenges.open(challenge);
    if (!claims) return null;
    const active = usableKeyOf(tenant.regions[region]);
    const verified = active ? await this.region(region).vault.verify(active.vaultKey, Buffer.from(challenge, 'utf8'), signature).catch(() => false) : false;
    return {
      challengeId: claims.id,
      tenant: claims.tenant,
      region: claims.region,
      user: claims.user,
      operation: claims.operation,
      expiresAt: claims.expiresAt,
      verifiedThumbprint: verified && active ? active.thumbprint : null,
    };
  }

  /** R10 `key reactivate`: the key the lock withdrew, uploaded again; any other answers KEY_MISMATCH. */
  async reactivateKey(actor: Actor, tenantId: string, p: { fileName: string; file: Buffer; password?: string; region?: string }) {
    const tenant = await this.authorize(actor, tenantId, 'key.reactivate');
    const region = this.regionOf(tenant, p.region);
    if (p.file.length > MAX_KEY_FILE_BYTES) refuse('INVALID_KEY_FILE', `The key file is larger than ${MAX_KEY_FILE_BYTES / 1024} KiB; no key file is that large.`);
    const kind = detectKeyFileKind(p.fileName);
    const vaultName = tenantVaultKeyName(tenantId, region);
    const options = { ...this.stagingOptions(tenantId, region, 'reactivation', actor) };
    let staged: VaultKeyInfo;
    if (kind === 'pfx') {
      const opened = await this.openPfx(p.file, p.password);
      refuseIf(checkReactivate(tenant, { actor, region, thumbprint: opened.thumbprint }));
      staged = await this.region(region).vault.importKey(vaultName, opened.pkcs8Der, options);
    } else {
      // A .byok opens only inside the vault: its thumbprint is known once it is imported.
      staged = await this.region(region).vault.importByok(vaultName, parseByok(p.file), options, await kekNameInVault(this.region(region).vault, tenantId, region));
      const refusal = checkReactivate(tenant, { actor, region, thumbprint: staged.thumbprint });
      if (refusal) {
        await this.region(region).vault.deleteKey(staged);
        refuse(refusal.code, refusal.message);
      }
    }
    const ref: StagedKey = { vaultKey: { name: staged.name, version: staged.version }, thumbprint: staged.thumbprint };
    await this.handOver(region, ref, () => this.deps.controlPlane.reactivateKey(tenantId, { actor, policy: this.policy, region, staged: ref }));
    return this.keyReport((await this.authorize(actor, tenantId, 'key.show')), region);
  }

  /** R10 `env unlock`: one environment, after the re-activation and R15's delay. */
  async unlockEnvironment(actor: Actor, tenantId: string, envId: string) {
    const tenant = await this.authorize(actor, tenantId, 'env.unlock', envId);
    const current = this.environmentOf(tenant, envId);
    const request = { actor, policy: this.policy, env: envId };
    // A repeat of the unlock that is running attaches to it (same update ID); anything else is checked here first.
    if (current.runningOperation !== 'unlock') refuseIf(checkUnlock(tenant, request, Date.now(), this.policy));
    const env = await this.deps.controlPlane.unlockEnvironment(tenantId, request, current);
    return { environment: environmentView(env) };
  }

  /** `env delete`: a locked environment destroyed now, as R9 destroys it at its deadline (mailed, audited). */
  async deleteEnvironment(actor: Actor, tenantId: string, envId: string, p: { confirm: string }) {
    const tenant = await this.authorize(actor, tenantId, 'env.delete', envId);
    const current = this.environmentOf(tenant, envId);
    const request = { actor, policy: this.policy, env: envId, confirm: p.confirm };
    // A repeat of the deletion that is running attaches to it (same update ID); anything else is checked here first.
    if (current.runningOperation !== 'delete') refuseIf(checkEnvironmentDelete(tenant, request));
    const env = await this.deps.controlPlane.deleteEnvironment(tenantId, request, current);
    return { environment: environmentView(env) };
  }

  /** `env backup` / `env restore`: through the tenant workflow, so that nothing else runs on the environment meanwhile. */
  async environmentBackup(actor: Actor, tenantId: string, envId: string, operation: BackupOperation, backupId: string | null) {
    const tenant = await this.authorize(actor, tenantId, `env.${operation}`, envId);
    const env = this.environmentOf(tenant, envId);
    const request = { actor, policy: this.policy, env: envId, operation, backupId };
    refuseIf(checkBackup(tenant, request));
    const result = await this.deps.controlPlane.environmentBackup(tenantId, request);
    const backups = await this.region(env.region).databases.listBackups(tenantId, envId);
    return { environment: environmentView(result.environment), backup: result.backup, backups };
  }

  // ------------------------------------------------------------------------------------------ mail

  async listMail(actor: Actor, tenantId: string) {
    await this.authorize(actor, tenantId, 'mail.list');
    const mails = await this.deps.outbox.list(tenantId);
    await this.recordOperatorRead(actor, 'mail.list', tenantId, { details: { mails: mails.length } });
    return { tenant: tenantId, mails: mails.map(mailView) };
  }

  /**
   * `cmk mail retry` (operator only): the tenant's pending and rejected mails, tried now by the workflows' worker.
   * Answers what was tried and how every mail stands after.
   */
  async retryMail(actor: Actor, tenantId: string) {
    if (actor.kind !== 'operator') refuse('FORBIDDEN', `${actor.email} may not retry mail; only the provider operator may.`);
    await this.authorize(actor, tenantId, 'mail.list');
    const report = await this.deps.controlPlane.retryMail(tenantId);
    const mails = await this.deps.outbox.list(tenantId);
    return {
      tenant: tenantId,
      tried: report.tried.map((t) => ({ to: t.to, subject: t.subject, event: t.event, delivery: t.delivery, ...(t.delivery !== 'delivered' ? { reason: t.reason ?? null, attempts: t.attempts } : {}) })),
      mails: mails.map(mailView),
    };
  }

  /**
   * `cmk drift check`: the tenant's environments compared with their databases and the vault now, by the workflows'
   * worker (it reads; it repairs nothing). Global and service administrators, and the operator.
   */
  async checkDrift(actor: Actor, tenantId: string) {
    await this.authorize(actor, tenantId, 'drift.check');
    const report = await this.deps.controlPlane.checkDrift(tenantId);
    const found = report.tenants.find((t) => t.tenant === tenantId);
    const drifting = (found?.drifting ?? []).map(({ env, foundAt, checkedAt, summary, differences }) => ({ env, foundAt, checkedAt, summary, differences }));
    return { tenant: tenantId, checkedAt: report.checkedAt, clean: drifting.length === 0, drifting, newlyFound: found?.newlyFound ?? [] };
  }

  /** For `cmk status` and the metrics: mail not delivered, across tenants. */
  mailSummary() {
    return this.deps.outbox.summary();
  }
}

/**
 * What background work could not do to an environment (issue 15): a refused R9 deletion, or a re-protection that left
 * it on an older key. Absent when nothing failed.
 */
export function faultView(tenant: TenantSnapshot, env: EnvironmentRecord): { fault?: { operation: 'delete' | 'reprotect'; code: string; reason: string; at: string; repair: string } } {
  const deletion = env.lock?.deletionFailure;
  if (env.state === 'Locked' && deletion) {
    return { fault: { operation: 'delete', code: deletion.code, reason: deletion.message, at: deletion.at, repair: `R9's deletion is tried again at ${deletion.retryAt}, and by the operator's purge.` } };
  }
  const active = activeKeyOf(tenant.regions[env.region]);
  const refused = tenant.reprotections?.[env.region]?.refused.find((r) => r.env === env.id);
  if (refused && env.protection === 'tenant' && env.state !== 'Deleted' && active && env.keyThumbprint !== active.thumbprint) {
    const at = tenant.reprotections?.[env.region]?.finishedAt ?? tenant.reprotections?.[env.region]?.startedAt ?? '';
    return { fault: { operation: 'reprotect', code: refused.code, reason: refused.message, at, repair: '`cmk env rekey` moves it to the active key.' } };
  }
  return {};
}

/** The drift the last check found in the environment, if any (without its signature, an internal key). */
export function driftView(tenant: TenantSnapshot, env: EnvironmentRecord): { drift?: { foundAt: string; checkedAt: string; summary: string; differences: Array<{ kind: string; expected: string; found: string }> } } {
  const drift = tenant.drift?.[env.id];
  if (!drift) return {};
  const { foundAt, checkedAt, summary, differences } = drift;
  return { drift: { foundAt, checkedAt, summary, differences } };
}

/** `key show`: the region's environments with a fault, and replaced keys the vault refused to delete. */
export function regionFaults(tenant: TenantSnapshot, region: string) {
  const environments = tenant.environments.filter((e) => e.region === region).flatMap((e) => {
    const { fault } = faultView(tenant, e);
    return fault ? [{ env: e.id, ...fault }] : [];
  });
  const keys = (tenant.regions[region]?.keys ?? []).flatMap((k) => (k.retireFailure && k.inVault ? [{ name: k.name, thumbprint: k.thumbprint, code: k.retireFailure.code, reason: k.retireFailure.message, at: k.retireFailure.at }] : []));
  return { environments, keysNotRemoved: keys };
}

/** DESIGN.md §4 `mail list`: `delivery` always; `reason` and `attempts` when the mail is not delivered. */
function mailView(m: OutboxEntry & { delivery: Delivery }) {
  const view = { to: m.to, subject: m.subject, event: m.event, sentAt: m.sentAt, delivery: m.delivery };
  return m.delivery === 'delivered' ? view : { ...view, reason: m.reason ?? null, attempts: m.attempts ?? 0 };
}

/**
 * R7 progress of the region's environments on the tenant key: how many are on the active key, how many are still
 * being re-protected, and how many stayed on an older key (a refused re-protection). Derived from the workflow state.
 */
export function reprotectionProgress(tenant: TenantSnapshot, region: string) {
  const active = activeKeyOf(tenant.regions[region]);
  const onTenantKey = tenant.environments.filter((e) => e.region === region && e.protection === 'tenant' && e.state !== 'Deleted');
  const remaining = onTenantKey.filter((e) => e.state === 'Reprotecting').length;
  const done = onTenantKey.filter((e) => e.keyThumbprint === active?.thumbprint).length;
  const latest = tenant.reprotections?.[region];
  return {
    total: onTenantKey.length,
    done,
    remaining,
    behind: onTenantKey.length - done - remaining,
    // The latest re-protection run: when, and which environments it could not move (they stay on their old key).
    startedAt: latest?.startedAt ?? null,
    finishedAt: latest?.finishedAt ?? null,
    refused: latest?.refused ?? [],
  };
}

function checkKeyName(name: string): void {
  if (!KEY_NAME_PATTERN.test(name)) refuse('INVALID_ARGUMENT', 'The key name must be 1 to 100 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.');
}

/** Per region the tenant has environments or keys in (its home region first): environments counted, deleted ones apart. */
function regionSummaries(t: TenantSnapshot) {
  const regions = [...new Set([t.homeRegion, ...Object.keys(t.regions).sort(), ...t.environments.map((e) => e.region).sort()])];
  return regions.map((region) => {
    const here = t.environments.filter((e) => e.region === region);
    const live = here.filter((e) => e.state !== 'Deleted');
    const byState: Partial<Record<EnvironmentState, number>> = {};
    for (const e of live) byState[e.state] = (byState[e.state] ?? 0) + 1;
    return {
      region,
      environments: live.length,
      byState,
      onTenantKey: live.filter((e) => e.protection === 'tenant').length,
      deleted: here.length - live.length,
    };
  });
}

function tenantView(t: TenantSnapshot) {
  const accepted = riskAcceptanceOf(t);
  return {
    id: t.tenant,
    name: t.displayName,
    homeRegion: t.homeRegion,
    admins: t.admins,
    createdAt: t.createdAt,
    riskAcceptance: { accepted: accepted !== null, by: accepted?.by ?? null, at: accepted?.at ?? null },
    lockApproval: lockApprovalsRequired(t, Date.now()),
    // Without the thumbprints: `tenant show` carries no key (the operator reads it too); `tenant policy` has them.
    pendingLock: withoutKeys(pendingLockOf(t, Date.now())),
  };
}

function withoutKeys(pending: PendingLock | null) {
  return pending && { ...pending, regions: pending.regions.map((r) => ({ region: r.region })) };
}

function describeAction(action: Action): string {
  const words: Record<Action, string> = {
    'tenant.create': 'create tenants',
    'tenant.show': 'see this tenant',
    'tenant.admin': 'change the administrators of this tenant',
    'tenant.lock': 'lock this tenant',
    'tenant.policy': "change this tenant's lock policy",
    'env.create': 'create environments for this tenant',
    'env.list': 'list the environments of this tenant',
    'env.data': 'read or write the data of this environment',
    'env.apply': 'apply the tenant key to this environment',
    'env.revert': 'revert this environment to the provider key',
    'env.rekey': 'rekey this environment',
    'env.unlock': 'unlock this environment',
    'env.delete': 'delete this environment',
    'env.backup': 'back up this environment',
    'env.restore': 'restore this environment',
    'key.change': 'change the keys of this tenant',
    'key.kek': 'create key-exchange keys for this tenant',
    'key.show': 'see the keys of this tenant',
    'key.rollback': 'roll back the key of this tenant',
    'key.reactivate': 're-activate the key of this tenant',
    'mail.list': 'read the mail of this tenant',
    'drift.check': 'check this tenant for drift',
    audit: 'read the audit trail of this tenant',
  };
  return words[action];
}

/** A dry run's stand-in for the proof a real lock brings: what a verified signature by the caller with the active key gives. */
function assumedProof(tenant: string, region: string, email: string, thumbprint: string): PossessionProof {
  return { challengeId: 'dry-run', tenant, region, user: normaliseEmail(email), operation: 'lock', expiresAt: new Date(Date.now() + 60_000).toISOString(), verifiedThumbprint: thumbprint };
}
