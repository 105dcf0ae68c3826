/** `cmk tenant`: tenants, their administrators, and the lock (R8), DESIGN.md §4. */
import { sign } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../../common/atomic';
import { CmkError } from '../../common/errors';
import { detectKeyFileKind, parsePfx } from '../../keyfiles';
import type { LockResult } from '../../workflows/messages';
import { columns, enc, readKeyFile, readPassword, UsageError, type CliContext, type Json } from './context';
import { reportDryRun, type DryRunReport } from './dry-run';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerTenant({ program, command, api, print, localInput, io }: CliContext): void {
  const tenant = command(program, 'tenant', 'tenants and their administrators');
  command(tenant, 'create', 'create a tenant (never alters an existing one)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <display name>', "the tenant's display name")
    .option('--region <region>', 'home region', 'default')
    .requiredOption('--admin <email:role...>', 'administrator, EMAIL:global or EMAIL:service (repeatable)')
    .action(async (o: { tenant: string; name: string; region: string; admin: string[] }) => {
      const admins = o.admin.map((spec) => parseAdmin(spec, 'global'));
      const r = await api().call<Answer<typeof S.TenantCreated>>('POST', '/v1/tenants', { tenant: o.tenant, name: o.name, region: o.region, admins });
      print(r, () => `Tenant ${r.tenant.id} created, administrators: ${r.tenant.admins.map((a) => `${a.email} (${a.role})`).join(', ')}.`);
    });
  command(tenant, 'show', "the tenant's administrators, and its environments per region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Answer<typeof S.TenantShown>>('GET', `/v1/tenants/${enc(o.tenant)}`);
      print(r, () => describeTenant(r.tenant));
    });
  const admin = command(tenant, 'admin', "change the tenant's global and service administrators");
  for (const change of ['add', 'remove'] as const) {
    command(admin, change, `${change} an administrator (mailed to every administrator)`)
      .requiredOption('--tenant <id>', 'tenant ID')
      .requiredOption('--admin <email[:role]>', 'EMAIL or EMAIL:global|service')
      .action(async (o: { tenant: string; admin: string }) => {
        const { email, role } = parseAdmin(o.admin, change === 'add' ? 'global' : undefined);
        const r = await api().call<Answer<typeof S.AdminsChanged>>('POST', `/v1/tenants/${enc(o.tenant)}/admins`, { change, email, role });
        print(r, () => `Administrators of ${o.tenant}: ${r.admins.map((a) => `${a.email} (${a.role})`).join(', ')}.`);
      });
  }

  command(tenant, 'challenge', 'a single-use challenge (valid 5 minutes) to sign elsewhere, e.g. in your HSM, for `tenant lock --signature-file`; prints the challenge alone')
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--out <file>', "also write the challenge's exact bytes (what is signed) to this file")
    .action(async (o: { tenant: string; region?: string; out?: string }) => {
      const r = await api().call<Answer<typeof S.Challenge>>('POST', `/v1/tenants/${enc(o.tenant)}/challenges`, { operation: 'lock', region: o.region });
      const bytes = Buffer.from(r.challenge, 'utf8');
      if (o.out !== undefined) await writeFileAtomic(resolve(o.out), bytes, 0o644);
      await rememberChallenge(io.env, o.tenant, o.region, r.challenge);
      // Issue 19: with --json, `challenge` is the bytes to sign, base64-encoded (the API's `challenge` is their text).
      print({ tenant: r.tenant, region: r.region, operation: r.operation, challenge: bytes.toString('base64'), expiresAt: r.expiresAt, ...(o.out !== undefined ? { out: resolve(o.out) } : {}) }, () => r.challenge);
    });

  /** `--file`: the .pfx signs a fresh challenge on this machine; the password and the private key stay here. */
  async function signedHere(tenantId: string, region: string | undefined, file: string, passwordFile: string): Promise<{ challenge: string; signature: Buffer }> {
    const privateKey = await localInput(tenantId, 'tenant.lock', async () => {
      if (detectKeyFileKind(basename(file)) !== 'pfx') throw new CmkError('INVALID_KEY_FILE', "A lock with --file proves possession with the active key's .pfx (its private key signs a challenge on this machine); a key kept in an HSM signs `cmk tenant challenge` there (--signature-file).");
      return parsePfx(await readKeyFile(file), await readPassword(passwordFile)).pkcs8Der;
    });
    const { challenge } = await api().call<Answer<typeof S.Challenge>>('POST', `/v1/tenants/${enc(tenantId)}/challenges`, { operation: 'lock', region });
    // RSASSA-PKCS1-v1_5 with SHA-256 over the challenge.
    const signature = sign('sha256', Buffer.from(challenge, 'utf8'), { key: privateKey, format: 'der', type: 'pkcs8' });
    privateKey.fill(0);
    return { challenge, signature };
  }

  /**
   * `--all-regions`: every .pfx is opened here (after the access check), each region's challenge is signed by the file
   * whose key is that region's active key, and one request locks them all or none.
   */
  async function lockEveryRegion(o: { tenant: string; confirm: string; file?: string[]; passwordFile?: string[]; signatureFile?: string; region?: string }): Promise<void> {
    const files = o.file ?? [];
    const passwords = o.passwordFile ?? [];
    if (o.region !== undefined) throw new UsageError('--all-regions locks every region: leave out --region.');
    if (o.signatureFile !== undefined) throw new UsageError('--all-regions signs each region\'s challenge here with its .pfx (--file); a key kept in an HSM locks its region with --region and --signature-file.');
    if (files.length === 0) throw new UsageError("required option '--file <file.pfx>' not specified (--all-regions needs each region's active key)");
    if (passwords.length !== 1 && passwords.length !== files.length) throw new UsageError('Give one --password-file for all the --file, or one for each, in the same order.');
    const keys = await localInput(o.tenant, 'tenant.lock', () =>
      Promise.all(
        files.map(async (file, i) => {
          if (detectKeyFileKind(basename(file)) !== 'pfx') throw new CmkError('INVALID_KEY_FILE', `${file}: --all-regions proves each region with its active key's .pfx.`);
          const opened = parsePfx(await readKeyFile(file), await readPassword(passwords[passwords.length === 1 ? 0 : i]!));
          return { file, thumbprint: opened.thumbprint, pkcs8: opened.pkcs8Der };
        }),
      ),
    );
    try {
      const { tenant: shown } = await api().call<Answer<typeof S.TenantShown>>('GET', `/v1/tenants/${enc(o.tenant)}`);
      const proofs: Array<{ region: string; challenge: string; signature: string }> = [];
      for (const { region } of shown.regions) {
        const { activeKey } = await api().call<Answer<typeof S.KeyReport>>('GET', `/v1/tenants/${enc(o.tenant)}/key?region=${enc(region)}`);
        // A region without an active key: the service says whether it stands in the way.
        if (!activeKey || activeKey.state !== 'Active') continue;
        const key = keys.find((k) => k.thumbprint === activeKey.thumbprint);
        if (!key) throw new CmkError('KEY_MISMATCH', `None of the --file keys is region ${region}'s active key "${activeKey.name}" (${activeKey.thumbprint}); add its .pfx. Nothing was locked.`);
        const { challenge } = await api().call<Answer<typeof S.Challenge>>('POST', `/v1/tenants/${enc(o.tenant)}/challenges`, { operation: 'lock', region });
        proofs.push({ region, challenge, signature: sign('sha256', Buffer.from(challenge, 'utf8'), { key: key.pkcs8, format: 'der', type: 'pkcs8' }).toString('base64') });
      }
      const answer = await api().call<{ tenant: string; regions: LockResult[] } | PendingLockAnswer>('POST', `/v1/tenants/${enc(o.tenant)}/lock/all-regions`, { confirm: o.confirm, proofs });
      if (isPending(answer)) return printPending(answer);
      const r = answer;
      print(r as unknown as Json, () =>
        [
          `Tenant ${r.tenant} is locked in every region (${r.regions.map((l) => l.region).join(', ')}).`,
          ...r.regions.map((l) => `  ${l.region}: since ${l.lockedAt}; sealed ${l.sealed.join(', ') || 'none'}; locked by decision only ${l.lockedByDecisionOnly.join(', ') || 'none'}; ${l.withdrawnKeys.length} key version(s) withdrawn; deleted at ${l.deleteAt} unless unlocked.`),
          `To undo: \`cmk key reactivate --region R\` in each region, then \`cmk env unlock\` for each environment, from ${r.regions[0]?.unlockAllowedAt ?? 'the unlock delay'}.`,
        ].join('\n'),
      );
    } finally {
      for (const key of keys) key.pkcs8.fill(0);
    }
  }

  /** `--signature-file`: a signature made elsewhere (an HSM) over a challenge of `tenant challenge`. */
  async function signedElsewhere(tenantId: string, region: string | undefined, signatureFile: string, challengeFile: string | undefined): Promise<{ challenge: string; signature: Buffer }> {
    return localInput(tenantId, 'tenant.lock', async () => ({
      signature: await readSignature(signatureFile),
      challenge: challengeFile !== undefined ? await readChallenge(challengeFile) : await rememberedChallenge(io.env, tenantId, region),
    }));
  }

  // --tenant and --confirm are required, checked in the action: commander checks an ancestor's required options for
  // its subcommands too, and `lock approve|cancel` take their own.
  command(tenant, 'lock', "lock the tenant in a region (R8): every environment offline; those on your key sealed until you re-activate it")
    .option('--tenant <id>', 'tenant ID (required)')
    .option('--confirm <display name>', "the tenant's display name, exactly (required)")
    .option('--file <file.pfx>', "the active key's .pfx: it signs a challenge here and is never sent (with --all-regions: once per region's key)", collect)
    .option('--password-file <file>', "with --file: file whose first line is the .pfx's password (with several --file: one for all, or one each, in order)", collect)
    .option('--all-regions', 'lock every region of the tenant at once, all or none: each region is proved by the --file whose key is its active key')
    .option('--signature-file <file>', 'instead of --file: a detached RSASSA-PKCS1-v1_5 SHA-256 signature over the challenge of `cmk tenant challenge`, raw as `openssl dgst -sha256 -sign` writes it, or base64')
    .option('--challenge-file <file>', 'with --signature-file: the challenge that was signed (default: the last one `cmk tenant challenge` gave here for this tenant and region)')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--dry-run', 'check and print what would happen (environments offline, mail, or the refusal); lock nothing, spend no challenge; the proof may be left out')
    .action(async (o: { tenant: string; confirm: string; file?: string[]; passwordFile?: string[]; signatureFile?: string; challengeFile?: string; region?: string; allRegions?: boolean; dryRun?: boolean }) => {
      // Usage first (exit 2): exactly one proof (none is allowed for a dry run), and each flag with its own.
      for (const [flag, value] of [['--tenant <id>', o.tenant], ['--confirm <display name>', o.confirm]] as const) {
        if (value === undefined) throw new UsageError(`required option '${flag}' not specified`);
      }
      if (o.allRegions) {
        if (o.dryRun) throw new UsageError('--dry-run checks one region: give --region instead of --all-regions.');
        return lockEveryRegion(o);
      }
      if (o.file !== undefined && o.signatureFile !== undefined) throw new UsageError('tenant lock takes one of --file FILE.pfx (with --password-file) and --signature-file S, not both.');
      if (o.dryRun && o.file === undefined && o.signatureFile === undefined) {
        if (o.passwordFile !== undefined || o.challengeFile !== undefined) throw new UsageError('--password-file goes with --file, --challenge-file with --signature-file.');
        return reportDryRun(print, await api().call<DryRunReport>('POST', `/v1/tenants/${enc(o.tenant)}/lock`, { region: o.region, confirm: o.confirm, dryRun: true }));
      }
      if ((o.file === undefined) === (o.signatureFile === undefined)) throw new UsageError('tenant lock needs exactly one of --file FILE.pfx (with --password-file) and --signature-file S.');
      if (o.file !== undefined && o.passwordFile === undefined) throw new UsageError("required option '--password-file <file>' not specified (it goes with --file)");
      if ((o.file?.length ?? 0) > 1 || (o.passwordFile?.length ?? 0) > 1) throw new UsageError('One --file and one --password-file lock one region; several go with --all-regions.');
      if (o.file !== undefined && o.challengeFile !== undefined) throw new UsageError('--challenge-file goes with --signature-file: with --file, the challenge is fetched and signed here.');
      if (o.signatureFile !== undefined && o.passwordFile !== undefined) throw new UsageError('--password-file goes with --file: a detached signature needs no password.');
      const { challenge, signature } =
        o.file !== undefined ? await signedHere(o.tenant, o.region, o.file[0]!, o.passwordFile![0]!) : await signedElsewhere(o.tenant, o.region, o.signatureFile!, o.challengeFile);
      const request = { region: o.region, confirm: o.confirm, challenge, signature: signature.toString('base64') };
      if (o.dryRun) return reportDryRun(print, await api().call<DryRunReport>('POST', `/v1/tenants/${enc(o.tenant)}/lock`, { ...request, dryRun: true }));
      const answer = await api().call<LockReport | PendingLockAnswer>('POST', `/v1/tenants/${enc(o.tenant)}/lock`, request);
      if (isPending(answer)) return printPending(answer);
      const r = answer;
      print(r, () =>
        [
          `Tenant ${r.tenant} is locked in region ${r.region} since ${r.lockedAt}.`,
          `Sealed with your key: ${r.sealed.join(', ') || 'none'}.`,
          `Locked by decision only (on the provider key): ${r.lockedByDecisionOnly.join(', ') || 'none'}.`,
          `Withdrawn from the vault: ${r.withdrawnKeys.length} key version(s).`,
          `To undo: \`cmk key reactivate\`, then \`cmk env unlock\` for each environment, from ${r.unlockAllowedAt}. Environments still locked at ${r.deleteAt} are deleted with their backups.`,
        ].join('\n'),
      );
    });

  /** Under the two-administrator policy a lock waits: who may approve it, and until when. */
  function printPending(r: PendingLockAnswer): void {
    const p = r.pendingLock;
    print(r, () =>
      [
        `The lock of tenant ${r.tenant} (region(s) ${p.regions.map((x) => x.region).join(', ')}) waits for a second administrator: nothing is locked yet.`,
        `Request ${p.id}, asked for by ${p.requestedBy} at ${p.requestedAt}; it lapses at ${p.expiresAt} unless another global or service administrator runs`,
        `  cmk tenant lock approve --tenant ${r.tenant} --confirm "<display name>"`,
        `Every administrator was mailed. To withdraw it: cmk tenant lock cancel --tenant ${r.tenant}`,
      ].join('\n'),
    );
  }

  /**
   * `lock approve|cancel`: commander hands the flags the lock also has (--tenant, --confirm) to the lock, wherever they
   * stand; read from there. A flag only the lock itself takes is a usage error here.
   */
  const lockCommand = tenant.commands.find((c) => c.name() === 'lock')!;
  function lockDecision(o: { tenant?: string; confirm?: string }, needsConfirm: boolean): { tenant: string; confirm?: string } {
    const lock = lockCommand.opts<{ tenant?: string; confirm?: string } & Record<string, unknown>>();
    const stray = Object.keys(lock).find((k) => k !== 'tenant' && (k !== 'confirm' || !needsConfirm) && lock[k] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is not an option of this command.`);
    const tenant = o.tenant ?? lock.tenant;
    const confirm = o.confirm ?? lock.confirm;
    if (tenant === undefined) throw new UsageError("required option '--tenant <id>' not specified");
    if (needsConfirm && confirm === undefined) throw new UsageError("required option '--confirm <display name>' not specified");
    return { tenant, ...(needsConfirm ? { confirm: confirm! } : {}) };
  }
  command(lockCommand, 'approve', "approve the lock another administrator asked for (two-administrator policy): it is carried out at once")
    .option('--tenant <id>', 'tenant ID (required)')
    .option('--confirm <display name>', "the tenant's display name, exactly (required)")
    .option('--id <request>', 'the lock request (default: the one waiting)')
    .action(async (given: { tenant?: string; confirm?: string; id?: string }) => {
      const o = { ...lockDecision(given, true), id: given.id };
      const r = await api().call<Answer<typeof S.LockApprovedReport>>('POST', `/v1/tenants/${enc(o.tenant)}/lock/approve`, { confirm: o.confirm, ...(o.id === undefined ? {} : { id: o.id }) });
      const regions = r.regions as unknown as LockResult[];
      print(r, () =>
        [
          `Tenant ${r.tenant} is locked (region(s) ${regions.map((l) => l.region).join(', ')}), asked for by ${r.requestedBy}, approved by ${r.approvedBy}.`,
          ...regions.map((l) => `  ${l.region}: since ${l.lockedAt}; sealed ${l.sealed.join(', ') || 'none'}; locked by decision only ${l.lockedByDecisionOnly.join(', ') || 'none'}; ${l.withdrawnKeys.length} key version(s) withdrawn; deleted at ${l.deleteAt} unless unlocked.`),
          `To undo: \`cmk key reactivate\`, then \`cmk env unlock\` for each environment, from ${regions[0]?.unlockAllowedAt ?? 'the unlock delay'}.`,
        ].join('\n'),
      );
    });
  command(lockCommand, 'cancel', 'cancel the lock waiting for approval (any global or service administrator, the one who asked included)')
    .option('--tenant <id>', 'tenant ID (required)')
    .option('--id <request>', 'the lock request (default: the one waiting)')
    .action(async (given: { tenant?: string; id?: string }) => {
      const o = { ...lockDecision(given, false), id: given.id };
      const r = await api().call<Answer<typeof S.LockCancelledReport>>('POST', `/v1/tenants/${enc(o.tenant)}/lock/cancel`, o.id === undefined ? {} : { id: o.id });
      print(r, () => `The lock of tenant ${r.tenant} asked for by ${r.cancelled.requestedBy} (request ${r.cancelled.id}) is cancelled; nothing was locked.`);
    });

  command(tenant, 'policy', "how many administrators a lock takes (1, or 2: a second approves every lock), and the lock waiting for approval")
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--lock-approval <n>', 'set it: 1 or 2 (raised at once; lowered only after the approval window, 24 hours by default)')
    .action(async (o: { tenant: string; lockApproval?: string }) => {
      if (o.lockApproval !== undefined && o.lockApproval !== '1' && o.lockApproval !== '2') throw new UsageError('--lock-approval takes 1 or 2.');
      const r =
        o.lockApproval === undefined
          ? await api().call<Answer<typeof S.LockPolicyReport>>('GET', `/v1/tenants/${enc(o.tenant)}/policy`)
          : await api().call<Answer<typeof S.LockPolicyReport>>('POST', `/v1/tenants/${enc(o.tenant)}/policy`, { lockApproval: Number(o.lockApproval) });
      print(r, () =>
        [
          r.lockApproval === 2 ? `A lock of tenant ${r.tenant} takes two administrators: one asks for it, another approves it.` : `A lock of tenant ${r.tenant} takes one administrator.`,
          ...(r.setBy ? [`Set by ${r.setBy} at ${r.setAt}.`] : []),
          ...(r.lockApprovalFrom ? [`From ${r.lockApprovalFrom.at}: ${r.lockApprovalFrom.value === 1 ? 'one administrator' : 'two administrators'} (a lowering holds only after the approval window).`] : []),
          r.pendingLock ? `Waiting for approval: the lock asked for by ${r.pendingLock.requestedBy} at ${r.pendingLock.requestedAt} (request ${r.pendingLock.id}), until ${r.pendingLock.expiresAt}.` : 'No lock waits for approval.',
        ].join('\n'),
      );
    });
}

type PendingLockAnswer = Json & Answer<typeof S.PendingLockReport>;
const isPending = (answer: object): answer is PendingLockAnswer => 'pendingLock' in answer;

/** A flag given several times: every value, in order. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** A detached signature is a few hundred bytes; anything much larger is not one. */
const MAX_SIGNATURE_BYTES = 16 * 1024;

/** `--signature-file`: raw bytes as `openssl dgst -sign` writes them, or the same in base64 text (line breaks allowed). */
async function readSignature(file: string): Promise<Buffer> {
  const bytes = await fs.readFile(file).catch(() => {
    throw new CmkError('INVALID_ARGUMENT', `The signature file ${file} cannot be read.`);
  });
  if (bytes.length === 0 || bytes.length > MAX_SIGNATURE_BYTES) throw new CmkError('INVALID_ARGUMENT', `${file} is not a signature: it is empty or larger than ${MAX_SIGNATURE_BYTES / 1024} KiB.`);
  const text = bytes.toString('latin1').replace(/\s+/g, '');
  // Raw RSA signature bytes are almost never all base64 characters; base64 text always is.
  return /^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0 ? Buffer.from(text, 'base64') : bytes;
}

/** `--challenge-file`: the challenge's bytes as `tenant challenge --out` wrote them (a final line break is ignored). */
async function readChallenge(file: string): Promise<string> {
  const bytes = await fs.readFile(file).catch(() => {
    throw new CmkError('INVALID_ARGUMENT', `The challenge file ${file} cannot be read.`);
  });
  if (bytes.length > MAX_SIGNATURE_BYTES) throw new CmkError('INVALID_ARGUMENT', `${file} is not a challenge of \`cmk tenant challenge\`.`);
  return bytes.toString('utf8').trimEnd();
}

/**
 * The last challenge `tenant challenge` gave on this machine for the tenant and region, so that `tenant lock
 * --signature-file S` needs nothing else. Not a secret (it is bound to its caller and spent by one lock): kept under
 * CMK_STATE_DIR, else $XDG_STATE_HOME/cmk, else ~/.local/state/cmk.
 */
function challengePath(env: Record<string, string | undefined>, tenant: string, region: string | undefined): string {
  const dir = env.CMK_STATE_DIR || join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'cmk');
  return join(dir, 'challenges', `${encodeURIComponent(tenant)}@${region === undefined ? '-' : encodeURIComponent(region)}.txt`);
}

/** A convenience only: where the state dir cannot be written, the challenge is still printed (and `--out` written). */
async function rememberChallenge(env: Record<string, string | undefined>, tenant: string, region: string | undefined, challenge: string): Promise<void> {
  const path = challengePath(env, tenant, region);
  try {
    await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, challenge, 0o600);
  } catch {
    // `tenant lock` then asks for --challenge-file.
  }
}

async function rememberedChallenge(env: Record<string, string | undefined>, tenant: string, region: string | undefined): Promise<string> {
  const text = await fs.readFile(challengePath(env, tenant, region), 'utf8').catch(() => undefined);
  if (text === undefined) throw new CmkError('INVALID_ARGUMENT', `No challenge to go with the signature: none was remembered here (${challengePath(env, tenant, region)}); run \`cmk tenant challenge\` and sign it, or give --challenge-file.`);
  return text;
}

/** The API service answers `tenant lock` with the workflow's result as it is. */
type LockReport = Json & LockResult;

type TenantView = Static<typeof S.TenantView>;

function describeTenant(t: TenantView): string {
  const states = ['Online', 'Locked'];
  return [
    `Tenant ${t.id} ("${t.name}"), home region ${t.homeRegion}, created ${t.createdAt}.`,
    'Administrators:',
    ...t.admins.map((a) => `  ${a.email} (${a.role})`),
    riskText(t.riskAcceptance),
    t.lockApproval === 2 ? 'Lock: a second global or service administrator approves every lock (`cmk tenant policy`).' : 'Lock: one global or service administrator locks (`cmk tenant policy`).',
    ...(t.pendingLock ? [`A lock waits for approval: \`cmk tenant policy --tenant ${t.id}\` says which; \`cmk tenant lock approve\` or \`cancel\`.`] : []),
    columns([
      ['REGION', 'ENVIRONMENTS', ...states.map((s) => s.toUpperCase()), 'IN PROGRESS', 'ON THE TENANT KEY', 'DELETED'],
      ...t.regions.map((r) => {
        const inProgress = Object.entries(r.byState).filter(([state]) => !states.includes(state)).reduce((sum, [, n]) => sum + n, 0);
        return [r.region, `${r.environments}`, ...states.map((s) => `${r.byState[s] ?? 0}`), `${inProgress}`, `${r.onTenantKey}`, `${r.deleted}`];
      }),
    ]),
  ].join('\n');
}

function riskText(r: TenantView['riskAcceptance']): string {
  if (!r.accepted) return 'Risk of managing its own key: not accepted yet (the first `cmk env apply` asks for --accept-risk).';
  return r.by === null ? 'Risk of managing its own key: accepted before the opt-in existed (a key was already applied).' : `Risk of managing its own key: accepted by ${r.by} at ${r.at}.`;
}

/** `EMAIL[:global|service]`; without a role, `defaultRole` (none for a removal: whatever role they have). */
function parseAdmin(spec: string, defaultRole?: string): { email: string; role: string | undefined } {
  const at = spec.lastIndexOf(':');
  if (at > spec.lastIndexOf('@')) return { email: spec.slice(0, at), role: spec.slice(at + 1) };
  return { email: spec, role: defaultRole };
}
