/**
 * `cmk`: the tenant administrator's command line, a client of the API service (DESIGN.md §4).
 * Exit status: 0 success, 2 usage error, 3 refused, 1 anything else. With --json, stdout is exactly one JSON document.
 */
import { constants, promises as fs } from 'node:fs';
import { sign } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { CmkError, isCmkError } from '../common/errors';
import { writeFileAtomic } from '../common/atomic';
import { MAX_KEY_FILE_BYTES } from '../common/keys';
import { ApiClient, ApiUnreachableError, secretsMayTravelTo } from './http';
import { detectKeyFileKind, parsePfx } from '../keyfiles';
import { isValidEmail, parseDuration, type Action } from '../domain/rules';
import { loadConfig } from '../config';
import { issueToken, loadTokenSigningKey } from '../common/tokens';
import { MAX_LOCAL_TOKEN_SECONDS } from '../api/auth';
import type { LockResult } from '../workflows/messages';

const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3 } as const;

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Record<string, string | undefined>;
}

class UsageError extends Error {}

type Json = Record<string, unknown>;

export async function main(argv: string[], io: Io): Promise<number> {
  let json = argv.includes('--json');
  const program = buildProgram(io, (value) => (json = value));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    return report(err, json, io);
  }
}

function report(err: unknown, json: boolean, io: Io): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    if (json) io.out(JSON.stringify({ error: { code: 'USAGE', message: err.message.replace(/^error: /, '') } }));
    return EXIT.usage;
  }
  if (err instanceof UsageError) {
    io.err(`error: ${err.message}`);
    if (json) io.out(JSON.stringify({ error: { code: 'USAGE', message: err.message } }));
    return EXIT.usage;
  }
  if (err instanceof AuditBrokenError) {
    io.err(`cmk: ${err.message}`);
    return EXIT.failed;
  }
  if (isCmkError(err)) {
    io.err(`${err.code}: ${err.message}`);
    if (json) io.out(JSON.stringify({ error: { code: err.code, message: err.message } }));
    return EXIT.refused;
  }
  const message = err instanceof ApiUnreachableError || err instanceof Error ? err.message : String(err);
  io.err(`cmk: ${message}`);
  if (json) io.out(JSON.stringify({ error: { code: 'FAILED', message } }));
  return EXIT.failed;
}

function buildProgram(io: Io, setJson: (json: boolean) => void): Command {
  const program = new Command('cmk')
    .description('Bring, rotate, apply, revert and lock your own database encryption keys.')
    .addOption(new Option('--as <email>', 'act as this user (embedded default only; default: CMK_USER, else the provider operator)'))
    .addOption(new Option('--token <jwt>', 'bearer token from your issuer (default: CMK_TOKEN)'))
    .option('--json', 'print exactly one JSON document on stdout')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  program.hook('preAction', () => setJson(Boolean(program.opts().json)));

  let token: Promise<string> | undefined;
  const credentials = () => (token ??= callerToken(program.opts() as { as?: string; token?: string }, io.env));
  const api = () => new ApiClient(io.env.CMK_API_URL || `http://127.0.0.1:${io.env.CMK_API_PORT || '8787'}`, credentials);
  /** Before a key file or password is read or sent: never over plain http to another host (a usage error). */
  const secretsMayGo = () => {
    const { baseUrl } = api();
    if (!secretsMayTravelTo(baseUrl)) throw new UsageError(`the API service at ${baseUrl} is plain http on another host: the key file and its password would cross the network in the clear; use an https:// URL (CMK_API_URL).`);
  };
  const wantsJson = () => Boolean(program.opts().json);
  const print = (doc: Json, human: () => string) => io.out(wantsJson() ? JSON.stringify(doc) : human());
  /** FORBIDDEN and NOT_FOUND come before any complaint about local input (DESIGN.md §4 order of checks). */
  const localInput = async <T>(tenant: string, action: Action, read: () => Promise<T>, env?: string): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      if (isCmkError(err)) await api().call('POST', `/v1/tenants/${enc(tenant)}/access`, { action, env });
      throw err;
    }
  };
  const command = (parent: Command, name: string, description: string) =>
    parent.command(name).description(description).exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });

  command(program, 'status', 'exit 0 once the API answers, Temporal answers and a worker polls').action(async () => {
    type Worker = { taskQueue: string; pollers: number };
    const s = await api().call<Json & { ready: boolean; temporal: { ok: boolean; namespace: string }; worker: Worker & { regions?: Record<string, Worker> }; warnings?: string[] }>('GET', '/v1/status');
    const regions = Object.entries(s.worker.regions ?? {}).map(([region, w]) => `\nWorkers polling ${w.taskQueue} (region ${region}): ${w.pollers}`);
    const warnings = (s.warnings ?? []).map((w) => `\nWarning: ${w}`);
    print(s, () => `API: ok\nTemporal: ${s.temporal.ok ? 'ok' : 'not answering'} (namespace ${s.temporal.namespace})\nWorkers polling ${s.worker.taskQueue}: ${s.worker.pollers}${regions.join('')}${warnings.join('')}`);
    if (!s.ready) throw new Error('The control plane is not ready yet.');
  });

  // ----------------------------------------------------------------------------------------------- tenant
  const tenant = command(program, 'tenant', 'tenants and their administrators');
  command(tenant, 'create', 'create a tenant (never alters an existing one)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <display name>', "the tenant's display name")
    .option('--region <region>', 'home region', 'default')
    .requiredOption('--admin <email:role...>', 'administrator, EMAIL:global or EMAIL:service (repeatable)')
    .action(async (o: { tenant: string; name: string; region: string; admin: string[] }) => {
      const admins = o.admin.map((spec) => parseAdmin(spec, 'global'));
      const r = await api().call<Json & { tenant: { id: string; admins: Array<{ email: string; role: string }> } }>('POST', '/v1/tenants', { tenant: o.tenant, name: o.name, region: o.region, admins });
      print(r, () => `Tenant ${r.tenant.id} created, administrators: ${r.tenant.admins.map((a) => `${a.email} (${a.role})`).join(', ')}.`);
    });
  command(tenant, 'show', "the tenant's administrators, and its environments per region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Json & { tenant: TenantView }>('GET', `/v1/tenants/${enc(o.tenant)}`);
      print(r, () => describeTenant(r.tenant));
    });
  const admin = command(tenant, 'admin', "change the tenant's global and service administrators");
  for (const change of ['add', 'remove'] as const) {
    command(admin, change, `${change} an administrator (mailed to every administrator)`)
      .requiredOption('--tenant <id>', 'tenant ID')
      .requiredOption('--admin <email[:role]>', 'EMAIL or EMAIL:global|service')
      .action(async (o: { tenant: string; admin: string }) => {
        const { email, role } = parseAdmin(o.admin, change === 'add' ? 'global' : undefined);
        const r = await api().call<Json & { admins: Array<{ email: string; role: string }> }>('POST', `/v1/tenants/${enc(o.tenant)}/admins`, { change, email, role });
        print(r, () => `Administrators of ${o.tenant}: ${r.admins.map((a) => `${a.email} (${a.role})`).join(', ')}.`);
      });
  }

  command(tenant, 'lock', "lock the tenant in a region (R8): every environment offline; those on your key sealed until you re-activate it")
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--confirm <display name>', "the tenant's display name, exactly")
    .requiredOption('--file <file.pfx>', "the active key's .pfx: it signs a challenge here and is never sent")
    .requiredOption('--password-file <file>', "file whose first line is the .pfx's password")
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; confirm: string; file: string; passwordFile: string; region?: string }) => {
      const privateKey = await localInput(o.tenant, 'tenant.lock', async () => {
        if (detectKeyFileKind(basename(o.file)) !== 'pfx') throw new CmkError('INVALID_KEY_FILE', 'A lock proves possession with the active key\'s .pfx (its private key signs a challenge on this machine).');
        const file = await readKeyFile(o.file);
        return parsePfx(file, await readPassword(o.passwordFile)).pkcs8Der;
      });
      const { challenge } = await api().call<Json & { challenge: string }>('POST', `/v1/tenants/${enc(o.tenant)}/challenges`, { operation: 'lock', region: o.region });
      // RSASSA-PKCS1-v1_5 with SHA-256 over the challenge: the password and the private key stay on this machine.
      const signature = sign('sha256', Buffer.from(challenge, 'utf8'), { key: privateKey, format: 'der', type: 'pkcs8' });
      privateKey.fill(0);
      const r = await api().call<LockReport>('POST', `/v1/tenants/${enc(o.tenant)}/lock`, { region: o.region, confirm: o.confirm, challenge, signature: signature.toString('base64') });
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

  // ----------------------------------------------------------------------------------------------- env
  const env = command(program, 'env', 'environments and their databases');
  command(env, 'create', 'create an environment: a new database under the provider key')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--admin <email>', "the environment's system administrator")
    .action(async (o: { tenant: string; env: string; region?: string; admin?: string }) => {
      const r = await api().call<Json & { environment: EnvView }>('POST', `/v1/tenants/${enc(o.tenant)}/environments`, { env: o.env, region: o.region, admin: o.admin });
      print(r, () => `Environment ${r.environment.id} created in region ${r.environment.region}: ${describeEnv(r.environment)}.`);
    });
  command(env, 'list', "list the tenant's environments in a region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; region?: string }) => {
      const r = await api().call<Json & { region: string; environments: EnvView[] }>('GET', `/v1/tenants/${enc(o.tenant)}/environments${query({ region: o.region })}`);
      print({ environments: r.environments }, () =>
        r.environments.length === 0
          ? `No environments in region ${r.region}.`
          : [
              `Environments of ${o.tenant} in region ${r.region}:`,
              columns([
                ['ENVIRONMENT', 'STATE', 'PROTECTION', 'KEY THUMBPRINT', 'SYSTEM ADMIN', ''],
                ...r.environments.map((e) => [e.id, e.state, e.protection, e.keyThumbprint, e.systemAdmin ?? '-', e.fault ? faultText(e.fault) : e.lock ? `deleted at ${e.lock.deleteAt} unless unlocked` : '']),
              ]),
              `Covered by the key: ${r.environments[0]!.coverage.covered.join(', ')}. Not covered: ${r.environments[0]!.coverage.notCovered.join(', ')}.`,
            ].join('\n'),
      );
    });
  const operations = [
    ['apply', 'protect the environment with the active tenant key: a new database encryption key, every page re-encrypted'],
    ['revert', 'return the environment to the provider key'],
    ['rekey', 'a new database encryption key, every page re-encrypted, under the same protector'],
  ] as const;
  for (const [operation, description] of operations) {
    command(env, operation, description)
      .requiredOption('--tenant <id>', 'tenant ID')
      .requiredOption('--env <id>', 'environment ID')
      .action(async (o: { tenant: string; env: string }) => {
        const r = await api().call<Json & { environment: EnvView }>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/${operation}`);
        print(r, () => `Environment ${r.environment.id}: ${describeEnv(r.environment)}.`);
      });
  }
  command(env, 'data', "read (and with --write, first add) rows of the environment's database")
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .option('--write <text>', 'add a row with this text first')
    .action(async (o: { tenant: string; env: string; write?: string }) => {
      const path = `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/data`;
      const r = await (o.write === undefined ? api().call<Json & { rows: Row[] }>('GET', path) : api().call<Json & { rows: Row[] }>('POST', path, { text: o.write }));
      print({ rows: r.rows }, () => (r.rows.length ? r.rows.map((row) => `${row.id}\t${row.createdAt}\t${row.text}`).join('\n') : 'No rows.'));
    });

  command(env, 'unlock', 'unlock one locked environment (after `cmk key reactivate`, and not within the unlock delay of the lock)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .action(async (o: { tenant: string; env: string }) => {
      const r = await api().call<Json & { environment: EnvView }>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/unlock`);
      print(r, () => `Environment ${r.environment.id} unlocked: ${describeEnv(r.environment)}.`);
    });
  command(env, 'backup', "back up the environment's encrypted database (it carries no key of its own)")
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .action(async (o: { tenant: string; env: string }) => {
      const r = await api().call<BackupReport>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/backup`);
      print(r, () => [`Backup ${r.backup.id} of ${o.env} taken at ${r.backup.createdAt} (${r.backup.sizeBytes} bytes).`, describeBackups(r.backups)].join('\n'));
    });
  command(env, 'restore', 'put a backup (default: the latest) in place of the database; rows written since are gone')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .option('--backup <id>', 'the backup to restore (default: the latest)')
    .action(async (o: { tenant: string; env: string; backup?: string }) => {
      const r = await api().call<BackupReport>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/restore`, { backupId: o.backup });
      print(r, () => `Environment ${o.env} restored from backup ${r.backup.id} (taken at ${r.backup.createdAt}).`);
    });

  // ----------------------------------------------------------------------------------------------- key
  const key = command(program, 'key', "the tenant's own encryption keys");
  command(key, 'generate', 'generate a new 2048-bit RSA key; the .pfx is written to --out once, and the key becomes active')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <name>', 'a name for the key')
    .requiredOption('--password-file <file>', 'file whose first line is the .pfx password (at least 12 characters)')
    .requiredOption('--out <file.pfx>', 'where to write the .pfx')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the new key')
    .action(async (o: { tenant: string; name: string; passwordFile: string; out: string; region?: string; wait?: boolean }) => {
      secretsMayGo();
      const { password, out } = await localInput(o.tenant, 'key.change', async () => ({ password: await readPassword(o.passwordFile), out: await checkOutPath(o.out) }));
      const r = await api().call<KeyReport & { pfx: string }>('POST', `/v1/tenants/${enc(o.tenant)}/keys/generate`, { name: o.name, password, region: o.region });
      await writeFileAtomic(out, Buffer.from(r.pfx, 'base64'), 0o600);
      const { pfx: _pfx, ...report } = r;
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print({ ...final, out }, () => `${describeKey(final)}\nThe key was written to ${out}: keep it and its password safe; the service does not keep a copy of the file.`);
    });
  command(key, 'upload', 'upload your own key (.pfx with its password, or .byok from an HSM); it becomes the active key')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <name>', 'a name for the key')
    .requiredOption('--file <file>', 'FILE.pfx or FILE.byok')
    .option('--password-file <file>', "file whose first line is the .pfx's password")
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the new key')
    .action(async (o: { tenant: string; name: string; file: string; passwordFile?: string; region?: string; wait?: boolean }) => {
      secretsMayGo();
      const { file, password } = await localInput(o.tenant, 'key.change', async () => ({
        file: await readKeyFile(o.file),
        password: o.passwordFile === undefined ? undefined : await readPassword(o.passwordFile),
      }));
      const report = await api().call<KeyReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/upload`, { name: o.name, fileName: basename(o.file), file: file.toString('base64'), password, region: o.region });
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print(final, () => describeKey(final));
    });
  command(key, 'kek', 'create a key-exchange key (KEK) and write its public key, for wrapping a .byok in your HSM')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--out <kek.pem>', 'where to write the public key (PEM)')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; out: string; region?: string }) => {
      const out = await localInput(o.tenant, 'key.kek', () => checkOutPath(o.out));
      const r = await api().call<Json & { kid: string; publicKeyPem: string; thumbprint: string }>('POST', `/v1/tenants/${enc(o.tenant)}/keys/kek`, { region: o.region });
      await writeFileAtomic(out, Buffer.from(r.publicKeyPem), 0o644);
      print({ ...r, out }, () => `Key-exchange key created. Key ID (the .byok header.kid): ${r.kid}\nIts public key was written to ${out}.`);
    });
  command(key, 'reactivate', 'upload the key a lock withdrew again (R10), so that its environments can be unlocked')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--file <file>', 'the same FILE.pfx (or FILE.byok) as the locked key')
    .requiredOption('--password-file <file>', "file whose first line is the .pfx's password")
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until the key is active')
    .action(async (o: { tenant: string; file: string; passwordFile: string; region?: string; wait?: boolean }) => {
      secretsMayGo();
      const { file, password } = await localInput(o.tenant, 'key.reactivate', async () => ({ file: await readKeyFile(o.file), password: await readPassword(o.passwordFile) }));
      const report = await api().call<KeyReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/reactivate`, { fileName: basename(o.file), file: file.toString('base64'), password, region: o.region });
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print(final, () => `${describeKey(final)}\nLocked environments can now be unlocked one at a time with \`cmk env unlock\`.`);
    });
  command(key, 'rollback', 'put back the key the last change replaced (within the embargo; another global or service administrator)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the key put back')
    .action(async (o: { tenant: string; region?: string; wait?: boolean }) => {
      const r = await api().call<KeyReport & { rolledBack: { name: string; thumbprint: string } }>('POST', `/v1/tenants/${enc(o.tenant)}/keys/rollback`, { region: o.region });
      const final = o.wait ? { ...(await waitForKey(api(), o.tenant, o.region)), rolledBack: r.rolledBack } : r;
      print(final, () => `Rolled back: the key "${r.rolledBack.name}" (${r.rolledBack.thumbprint}) is replaced.\n${describeKey(final)}`);
    });
  command(key, 'show', "show the tenant's active key in a region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; region?: string }) => {
      const r = await api().call<KeyReport>('GET', `/v1/tenants/${enc(o.tenant)}/key${query({ region: o.region })}`);
      print(r, () => describeKey(r));
    });

  // ----------------------------------------------------------------------------------------------- mail
  const mail = command(program, 'mail', 'mail sent to administrators');
  command(mail, 'list', 'list the mail sent about this tenant')
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Json & { mails: MailView[] }>('GET', `/v1/tenants/${enc(o.tenant)}/mail`);
      print({ mails: r.mails }, () => (r.mails.length ? columns([['SENT AT', 'TO', 'EVENT', 'DELIVERY', 'SUBJECT'], ...r.mails.map((m) => [m.sentAt ?? '', m.to, m.event, deliveryText(m), m.subject])]) : 'No mail.'));
    });
  command(mail, 'retry', "retry the tenant's pending and rejected mail now (operator)")
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Json & { tried: MailView[]; mails: MailView[] }>('POST', `/v1/tenants/${enc(o.tenant)}/mail/retry`, {});
      const left = r.mails.filter((m) => m.delivery !== 'delivered').length;
      print(r, () =>
        r.tried.length
          ? `${columns([['TO', 'EVENT', 'DELIVERY', 'SUBJECT'], ...r.tried.map((m) => [m.to, m.event, deliveryText(m), m.subject])])}\n${r.tried.filter((m) => m.delivery === 'delivered').length} of ${r.tried.length} delivered; ${left} mail(s) of ${o.tenant} not delivered.`
          : `No mail of ${o.tenant} to retry; ${left} mail(s) not delivered.`,
      );
    });

  // ----------------------------------------------------------------------------------------------- audit
  const audit = command(program, 'audit', 'the tamper-evident audit trail');
  command(audit, 'list', "list the tenant's audit records, oldest first")
    .option('--tenant <id>', 'tenant ID')
    .option('--all', 'every record of every tenant, and the codec decodes (operator only)')
    .option('--limit <n>', 'the last N records (1 to 500)', '100')
    .option('--after <seq>', 'only records after this record number')
    .action(async (o: { tenant?: string; all?: boolean; limit: string; after?: string }) => {
      if (Boolean(o.tenant) === Boolean(o.all)) throw new UsageError('audit list needs --tenant ID, or --all (operator).');
      const path = o.all ? '/v1/audit' : `/v1/tenants/${enc(o.tenant!)}/audit`;
      const r = await api().call<Json & { records: AuditRecordView[] }>('GET', `${path}${query({ limit: o.limit, after: o.after })}`);
      print({ records: r.records }, () => (r.records.length ? columns([AUDIT_HEADING, ...r.records.map(auditRow)]) : 'No audit records.'));
    });
  command(audit, 'verify', 'verify the whole trail: every record, its order, and the signed head (exit 1 if anything was changed)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Json & { ok: boolean; records: number; headSeq: number | null; placeholders?: number; problems: Array<{ seq: number | null; problem: string }> }>('GET', `/v1/tenants/${enc(o.tenant)}/audit/verify`);
      // Placeholders (records the trail could not keep as made) are an alarm for the operator, not a broken chain.
      const placeholders = r.placeholders ? `\n${r.placeholders} record(s) could not be kept as made; placeholders (audit.unrecordable) stand in for them.` : '';
      print(r, () =>
        r.ok
          ? `The audit trail verifies: ${r.records} record(s), hash chain intact, head signed.${placeholders}`
          : ['The audit trail does NOT verify:', ...r.problems.map((p) => `  ${p.seq === null ? '' : `record ${p.seq}: `}${p.problem}`)].join('\n'),
      );
      if (!r.ok) throw new AuditBrokenError();
    });

  // ----------------------------------------------------------------------------------------------- tokens
  const tokens = command(program, 'token', 'bearer tokens (embedded default)');
  command(tokens, 'issue', 'print a token signed with the local key; its last line is the token')
    .option('--operator', "the provider operator's token instead of a user's")
    .option('--ttl <duration>', 'how long it is valid (at most 24h)', '1h')
    .action(async (o: { operator?: boolean; ttl: string }) => {
      const as = (program.opts() as { as?: string }).as;
      if (!as && !o.operator) throw new UsageError('token issue needs --as EMAIL (or --operator).');
      const ttlMs = parseDuration(o.ttl);
      if (ttlMs === undefined || ttlMs < 1000 || ttlMs > MAX_LOCAL_TOKEN_SECONDS * 1000) throw new CmkError('INVALID_ARGUMENT', '--ttl must be a duration from 1s to 24h.');
      const issued = await localToken(o.operator ? null : as!, io.env, Math.floor(ttlMs / 1000));
      print({ token: issued.token, subject: issued.subject, expiresAt: issued.expiresAt }, () => `Token for ${issued.subject}, valid until ${issued.expiresAt}:\n${issued.token}`);
    });

  return program;
}

class AuditBrokenError extends Error {
  constructor() {
    super('The audit trail does not verify.');
  }
}

interface AuditRecordView {
  seq: number;
  tenant?: string | null;
  at: string;
  actor: string;
  action: string;
  outcome: string;
  environment?: string | null;
  region?: string | null;
  code?: string | null;
  thumbprints?: string[];
}

const AUDIT_HEADING = ['#', 'AT', 'TENANT', 'ACTOR', 'ACTION', 'OUTCOME', 'WHERE', 'THUMBPRINTS'];

function auditRow(r: AuditRecordView): string[] {
  const where = [r.region && `region ${r.region}`, r.environment && `env ${r.environment}`].filter(Boolean).join(', ');
  const prints = (r.thumbprints ?? []).map((t) => t.slice(0, 16)).join(', ');
  return [`${r.seq}`, r.at, r.tenant ?? '-', r.actor, r.action, r.code ? `${r.outcome} ${r.code}` : r.outcome, where || '-', prints];
}

/**
 * The bearer token for this invocation: `--token` / CMK_TOKEN as given; in the embedded default (no issuer
 * configured), a 5-minute token signed with the local key for `--as` / CMK_USER, or for the operator.
 */
async function callerToken(opts: { as?: string; token?: string }, env: Record<string, string | undefined>): Promise<string> {
  if (opts.token && opts.as) throw new UsageError('--as and --token exclude each other: the token says who you are.');
  // Flags before the environment: --token, then --as, then CMK_TOKEN, then CMK_USER (or the operator).
  if (opts.token) return opts.token;
  if (!opts.as && env.CMK_TOKEN) return env.CMK_TOKEN;
  return (await localToken(opts.as ?? (env.CMK_USER || null), env, 300)).token;
}

async function localToken(as: string | null, env: Record<string, string | undefined>, ttlSeconds: number) {
  const { auth, secretsDir } = loadConfig(env);
  if (auth.mode === 'external') {
    throw new CmkError('FORBIDDEN', `An external issuer (${auth.issuer}) vouches for callers here: sign in with it and pass its token (--token or CMK_TOKEN); local tokens and --as are for the embedded default only.`);
  }
  if (as !== null && !isValidEmail(as)) throw new CmkError('INVALID_ARGUMENT', 'The caller (--as) must be an e-mail address.');
  const email = as === null ? null : as.toLowerCase();
  const token = await issueToken(loadTokenSigningKey(secretsDir), { email, issuer: auth.issuer, audience: auth.audience, ttlSeconds });
  return { token, subject: email ?? 'operator', expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString() };
}

// --------------------------------------------------------------------------------------------------- helpers

interface EnvView {
  id: string;
  region: string;
  state: string;
  protection: string;
  keyThumbprint: string;
  systemAdmin: string | null;
  coverage: { covered: string[]; notCovered: string[] };
  lock?: { lockedAt: string; sealed: boolean; deleteAt: string };
  /** What background work could not do to it (docs/RELIABILITY.md). */
  fault?: { operation: 'delete' | 'reprotect'; code: string; reason: string; repair: string };
}
interface Row {
  id: number;
  text: string;
  createdAt: string;
}
/** The API service answers `tenant lock` with the workflow's result as it is. */
type LockReport = Json & LockResult;
interface BackupView {
  id: string;
  createdAt: string;
  sizeBytes: number;
}
type BackupReport = Json & { backup: BackupView; backups: BackupView[] };

function describeBackups(backups: BackupView[]): string {
  return [`Backups of this environment (oldest first):`, ...backups.map((b) => `  ${b.id}  ${b.createdAt}  ${b.sizeBytes} bytes`)].join('\n');
}

type KeyReport = Json & {
  tenant: string;
  region: string;
  activeKey: { name: string; thumbprint: string; state: string; activatedAt: string | null; activatedBy: string | null; lockedAt?: string } | null;
  nextKeyChangeAllowedAt: string | null;
  lockAllowedAt: string | null;
  rollbackAvailableUntil?: string | null;
  reprotection?: { total: number; done: number; remaining: number; behind: number; refused?: Array<{ env: string; code: string; message: string }> };
  faults?: { environments: Array<{ env: string; operation: string; code: string; reason: string; repair: string }>; keysNotRemoved: Array<{ name: string; code: string; reason: string }> };
};

const enc = encodeURIComponent;
const query = (params: Record<string, string | undefined>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
  return entries.length ? `?${new URLSearchParams(entries).toString()}` : '';
};

/** Rows as aligned columns, two spaces apart (a terminal reader scans a column; trailing blanks are trimmed). */
function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

interface TenantView {
  id: string;
  name: string;
  homeRegion: string;
  createdAt: string;
  admins: Array<{ email: string; role: string }>;
  regions: Array<{ region: string; environments: number; byState: Record<string, number>; onTenantKey: number; deleted: number }>;
}

function describeTenant(t: TenantView): string {
  const states = ['Online', 'Locked'];
  return [
    `Tenant ${t.id} ("${t.name}"), home region ${t.homeRegion}, created ${t.createdAt}.`,
    'Administrators:',
    ...t.admins.map((a) => `  ${a.email} (${a.role})`),
    columns([
      ['REGION', 'ENVIRONMENTS', ...states.map((s) => s.toUpperCase()), 'IN PROGRESS', 'ON THE TENANT KEY', 'DELETED'],
      ...t.regions.map((r) => {
        const inProgress = Object.entries(r.byState).filter(([state]) => !states.includes(state)).reduce((sum, [, n]) => sum + n, 0);
        return [r.region, `${r.environments}`, ...states.map((s) => `${r.byState[s] ?? 0}`), `${inProgress}`, `${r.onTenantKey}`, `${r.deleted}`];
      }),
    ]),
  ].join('\n');
}

function describeEnv(e: EnvView): string {
  const lock = e.lock ? ` (${e.lock.sealed ? 'sealed' : 'locked by decision only'} since ${e.lock.lockedAt}; deleted at ${e.lock.deleteAt} unless unlocked)` : '';
  return `${e.state}${lock}, protected by the ${e.protection} key ${e.keyThumbprint}`;
}

function describeKey(r: KeyReport): string {
  const k = r.activeKey;
  const lines = [k ? `Active key of ${r.tenant} in region ${r.region}: "${k.name}" (${k.state}), thumbprint ${k.thumbprint}, activated ${k.activatedAt} by ${k.activatedBy}.` : `${r.tenant} has no key of its own in region ${r.region}: its environments use the provider key.`];
  if (k?.state === 'Locked') lines.push(`The key was withdrawn from the vault by a lock at ${String(k.lockedAt)}: upload it again with \`cmk key reactivate\` to unlock environments.`);
  const p = r.reprotection;
  if (p && p.total > 0) lines.push(`Environments on the tenant key: ${p.done} of ${p.total} on this key, ${p.remaining} being re-protected${p.behind ? `, ${p.behind} still on an older key` : ''}.`);
  for (const r of p?.refused ?? []) lines.push(`  ${r.env} could not be re-protected (${r.code}): ${r.message}`);
  for (const f of r.faults?.environments ?? []) if (f.operation === 'delete') lines.push(`  ${f.env}: ${faultText(f)}`);
  for (const key of r.faults?.keysNotRemoved ?? []) lines.push(`  The replaced key "${key.name}" could not be removed from the vault (${key.code}): ${key.reason} The next environment operation in this region tries again.`);
  // A moment already past reads as "now": the reader should not have to compare timestamps with the clock.
  const passed = (at: string) => Date.parse(at) <= Date.now();
  if (r.nextKeyChangeAllowedAt) lines.push(passed(r.nextKeyChangeAllowedAt) ? `A key change is allowed now (R5: since ${r.nextKeyChangeAllowedAt}).` : `Next key change allowed at ${r.nextKeyChangeAllowedAt}.`);
  // A region already locked has nothing left to lock: the line above says what to do instead.
  if (r.lockAllowedAt && k?.state !== 'Locked') lines.push(passed(r.lockAllowedAt) ? `A lock is allowed now (R6: since ${r.lockAllowedAt}).` : `Lock allowed from ${r.lockAllowedAt}.`);
  if (r.rollbackAvailableUntil) lines.push(`Until ${r.rollbackAvailableUntil}, another global or service administrator can put the replaced key back (\`cmk key rollback\`).`);
  return lines.join('\n');
}

async function waitForKey(api: ApiClient, tenant: string, region: string | undefined): Promise<KeyReport> {
  for (;;) {
    const r = await api.call<KeyReport>('GET', `/v1/tenants/${enc(tenant)}/key/installed${query({ region })}`);
    if (r.activeKey?.state !== 'Installing') return r;
  }
}

/** A background failure in a sentence: what did not happen, its code, and the repair. */
function faultText(f: { operation: string; code: string; reason: string; repair: string }): string {
  return `${f.operation === 'delete' ? 'deletion refused' : 'left on an older key'} (${f.code}): ${f.reason} ${f.repair}`;
}

interface MailView {
  to: string;
  subject: string;
  event: string;
  sentAt?: string;
  delivery: 'delivered' | 'pending' | 'rejected';
  reason?: string | null;
  attempts?: number;
}

/** `delivered`, or the state with its attempts and reason: `pending (3 attempts: SendGrid answered 503 …)`. */
function deliveryText(m: MailView): string {
  if (m.delivery === 'delivered') return 'delivered';
  const why = [m.attempts !== undefined ? `${m.attempts} attempt(s)` : '', m.reason ?? ''].filter(Boolean).join(': ');
  return why ? `${m.delivery} (${why.slice(0, 160)})` : m.delivery;
}

/** `EMAIL[:global|service]`; without a role, `defaultRole` (none for a removal: whatever role they have). */
function parseAdmin(spec: string, defaultRole?: string): { email: string; role: string | undefined } {
  const at = spec.lastIndexOf(':');
  if (at > spec.lastIndexOf('@')) return { email: spec.slice(0, at), role: spec.slice(at + 1) };
  return { email: spec, role: defaultRole };
}

/** `--password-file F`: F's first line without CR/LF (DESIGN.md §4). */
async function readPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `The password file ${file} cannot be read.`);
  }
  return (text.split('\n')[0] ?? '').replace(/\r$/, '');
}

/** Refused by size before a byte of it is read or sent (INVALID_KEY_FILE). */
async function readKeyFile(file: string): Promise<Buffer> {
  let size: number;
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) throw new Error('not a file');
    size = stat.size;
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `The key file ${file} cannot be read.`);
  }
  if (size > MAX_KEY_FILE_BYTES) throw new CmkError('INVALID_KEY_FILE', `${file} is larger than 64 KiB; no key file is that large.`);
  return fs.readFile(file);
}

/** The key file is handed over once: never overwrite another file, and fail before the key is made. */
async function checkOutPath(out: string): Promise<string> {
  const path = resolve(out);
  try {
    await fs.access(dirname(path), constants.W_OK);
  } catch {
    throw new CmkError('INVALID_ARGUMENT', `Cannot write to ${dirname(path)}.`);
  }
  const exists = await fs.stat(path).then(() => true, () => false);
  if (exists) throw new CmkError('INVALID_ARGUMENT', `${out} already exists; choose another --out so that no key file is overwritten.`);
  return path;
}

if (require.main === module) {
  void main(process.argv.slice(2), {
    out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
    env: process.env,
  }).then((code) => {
    process.exitCode = code;
  });
}
