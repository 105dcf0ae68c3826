/** `cmk key`: the tenant's own encryption keys (DESIGN.md §4). */
import { basename } from 'node:path';
import { writeFileAtomic } from '../../common/atomic';
import type { Answer, ApiClient } from '../http';
import { checkOutPath, columns, enc, faultText, query, readKeyFile, readPassword, type CliContext } from './context';
import type * as S from '../../api/schemas';
import { reportDryRun, type DryRunReport } from './dry-run';

const DRY_RUN = 'check and print what would happen (environments, mail, or the refusal); change nothing';

export function registerKey({ program, command, api, print, localInput, secretsMayGo }: CliContext): void {
  const key = command(program, 'key', "the tenant's own encryption keys");
  command(key, 'generate', 'generate a new 2048-bit RSA key; the .pfx is written to --out once, and the key becomes active')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <name>', 'a name for the key')
    .requiredOption('--password-file <file>', 'file whose first line is the .pfx password (at least 12 characters)')
    .requiredOption('--out <file.pfx>', 'where to write the .pfx')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the new key')
    .option('--dry-run', `${DRY_RUN}: the password and name are checked, no key is made, --out is not written`)
    .action(async (o: { tenant: string; name: string; passwordFile: string; out: string; region?: string; wait?: boolean; dryRun?: boolean }) => {
      secretsMayGo();
      const { password, out } = await localInput(o.tenant, 'key.change', async () => ({ password: await readPassword(o.passwordFile), out: await checkOutPath(o.out) }));
      if (o.dryRun) {
        const dry = await api().call<DryRunReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/generate`, { name: o.name, password, region: o.region, dryRun: true });
        return reportDryRun(print, dry);
      }
      const r = await api().call<Answer<typeof S.GeneratedKeyReport>>('POST', `/v1/tenants/${enc(o.tenant)}/keys/generate`, { name: o.name, password, region: o.region });
      await writeFileAtomic(out, Buffer.from(r.pfx, 'base64'), 0o600);
      const { pfx: _pfx, ...report } = r;
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print({ ...final, out }, () => `${describeKey(final)}\nThe key was written to ${out}: keep it and its password safe; the service does not keep a copy of the file.`);
    });
  command(key, 'upload', 'upload your own key (.pfx with its password, or .byok from an HSM); it becomes the active key, unless --no-activate')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--name <name>', 'a name for the key')
    .requiredOption('--file <file>', 'FILE.pfx or FILE.byok')
    .option('--password-file <file>', "file whose first line is the .pfx's password")
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--no-activate', 'keep the key Available, protecting nothing, until `cmk key activate` (R5, R6, R11 apply then)')
    .option('--wait', 'wait until every environment is re-protected with the new key')
    .option('--dry-run', `${DRY_RUN}: the file is opened and its thumbprint shown, nothing is stored in the vault`)
    .action(async (o: { tenant: string; name: string; file: string; passwordFile?: string; region?: string; activate: boolean; wait?: boolean; dryRun?: boolean }) => {
      secretsMayGo();
      const { file, password } = await localInput(o.tenant, 'key.change', async () => ({
        file: await readKeyFile(o.file),
        password: o.passwordFile === undefined ? undefined : await readPassword(o.passwordFile),
      }));
      const request = { name: o.name, fileName: basename(o.file), file: file.toString('base64'), password, region: o.region, ...(o.activate ? {} : { activate: false }) };
      if (o.dryRun) return reportDryRun(print, await api().call<DryRunReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/upload`, { ...request, dryRun: true }));
      const report = await api().call<Answer<typeof S.UploadedKeyReport>>('POST', `/v1/tenants/${enc(o.tenant)}/keys/upload`, request);
      if (report.key) {
        const added = report.key;
        print(report, () => `Key "${added.name}" uploaded and Available, thumbprint ${added.thumbprint}: it protects nothing until \`cmk key activate --tenant ${o.tenant} --thumbprint ${added.thumbprint}\`.\n${describeKey(report)}`);
        return;
      }
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print(final, () => describeKey(final));
    });
  command(key, 'activate', 'make a key uploaded with --no-activate the active key (a key change: R5, R6, R11 apply)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--thumbprint <hex>', "the Available key's thumbprint (`cmk key show`, `cmk key history`)")
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the key')
    .action(async (o: { tenant: string; thumbprint: string; region?: string; wait?: boolean }) => {
      const report = await api().call<KeyReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/activate`, { thumbprint: o.thumbprint, region: o.region });
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print(final, () => describeKey(final));
    });
  command(key, 'kek', 'create a key-exchange key (KEK) and write its public key, for wrapping a .byok in your HSM')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--out <kek.pem>', 'where to write the public key (PEM)')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; out: string; region?: string }) => {
      const out = await localInput(o.tenant, 'key.kek', () => checkOutPath(o.out));
      const r = await api().call<Answer<typeof S.Kek>>('POST', `/v1/tenants/${enc(o.tenant)}/keys/kek`, { region: o.region });
      await writeFileAtomic(out, Buffer.from(r.publicKeyPem), 0o644);
      print({ ...r, out }, () => `Key-exchange key created. Key ID (the .byok header.kid): ${r.kid}\nIts public key was written to ${out}.`);
    });
  command(key, 'reactivate', 'upload the key a lock withdrew again (R10), so that its environments can be unlocked')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--file <file>', 'the same FILE.pfx (or FILE.byok) as the locked key')
    .option('--password-file <file>', "file whose first line is the .pfx's password (a .byok needs none)")
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until the key is active')
    .action(async (o: { tenant: string; file: string; passwordFile?: string; region?: string; wait?: boolean }) => {
      secretsMayGo();
      const { file, password } = await localInput(o.tenant, 'key.reactivate', async () => ({
        file: await readKeyFile(o.file),
        password: o.passwordFile === undefined ? undefined : await readPassword(o.passwordFile),
      }));
      const report = await api().call<KeyReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/reactivate`, { fileName: basename(o.file), file: file.toString('base64'), password, region: o.region });
      const final = o.wait ? await waitForKey(api(), o.tenant, o.region) : report;
      print(final, () => `${describeKey(final)}\nLocked environments can now be unlocked one at a time with \`cmk env unlock\`.`);
    });
  command(key, 'rollback', 'put back the key the last change replaced (within the embargo; another global or service administrator)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--wait', 'wait until every environment is re-protected with the key put back')
    .option('--dry-run', DRY_RUN)
    .action(async (o: { tenant: string; region?: string; wait?: boolean; dryRun?: boolean }) => {
      if (o.dryRun) return reportDryRun(print, await api().call<DryRunReport>('POST', `/v1/tenants/${enc(o.tenant)}/keys/rollback`, { region: o.region, dryRun: true }));
      const r = await api().call<Answer<typeof S.RolledBackKeyReport>>('POST', `/v1/tenants/${enc(o.tenant)}/keys/rollback`, { region: o.region });
      const final = o.wait ? { ...(await waitForKey(api(), o.tenant, o.region)), rolledBack: r.rolledBack } : r;
      print(final, () => `Rolled back: the key "${r.rolledBack.name}" (${r.rolledBack.thumbprint}) is replaced.\n${describeKey(final)}`);
    });
  command(key, 'history', 'every key the tenant has had in a region, newest first: state, who set it, when activated and replaced')
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; region?: string }) => {
      const r = await api().call<Answer<typeof S.KeyHistory>>('GET', `/v1/tenants/${enc(o.tenant)}/keys/history${query({ region: o.region })}`);
      print(r, () =>
        r.keys.length === 0
          ? `${r.tenant} has had no key of its own in region ${r.region}.`
          : [
              `Keys of ${r.tenant} in region ${r.region}, newest first:`,
              columns([
                ['NAME', 'THUMBPRINT', 'STATE', 'SET BY', 'ACTIVATED', 'REPLACED'],
                ...r.keys.map((k) => [k.name, k.thumbprint, k.state, k.setBy, k.activatedAt ?? '-', k.replacedAt ?? '-']),
              ]),
            ].join('\n'),
      );
    });
  command(key, 'show', "show the tenant's active key in a region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; region?: string }) => {
      const r = await api().call<KeyReport>('GET', `/v1/tenants/${enc(o.tenant)}/key${query({ region: o.region })}`);
      print(r, () => describeKey(r));
    });
}

type KeyReport = Answer<typeof S.KeyReport>;

function describeKey(r: KeyReport): string {
  const k = r.activeKey;
  const lines = [k ? `Active key of ${r.tenant} in region ${r.region}: "${k.name}" (${k.state}), thumbprint ${k.thumbprint}, activated ${k.activatedAt} by ${k.activatedBy}.` : `${r.tenant} has no key of its own in region ${r.region}: its environments use the provider key.`];
  for (const a of r.availableKeys ?? []) lines.push(`Available (uploaded ${a.createdAt} by ${a.createdBy}, not active): "${a.name}", thumbprint ${a.thumbprint}.`);
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
