/** `cmk tenant`: tenants, their administrators, and the lock (R8), DESIGN.md §4. */
import { sign } from 'node:crypto';
import { basename } from 'node:path';
import { CmkError } from '../../common/errors';
import { detectKeyFileKind, parsePfx } from '../../keyfiles';
import type { LockResult } from '../../workflows/messages';
import { columns, enc, readKeyFile, readPassword, type CliContext, type Json } from './context';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerTenant({ program, command, api, print, localInput }: CliContext): void {
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
      const { challenge } = await api().call<Answer<typeof S.Challenge>>('POST', `/v1/tenants/${enc(o.tenant)}/challenges`, { operation: 'lock', region: o.region });
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
    columns([
      ['REGION', 'ENVIRONMENTS', ...states.map((s) => s.toUpperCase()), 'IN PROGRESS', 'ON THE TENANT KEY', 'DELETED'],
      ...t.regions.map((r) => {
        const inProgress = Object.entries(r.byState).filter(([state]) => !states.includes(state)).reduce((sum, [, n]) => sum + n, 0);
        return [r.region, `${r.environments}`, ...states.map((s) => `${r.byState[s] ?? 0}`), `${inProgress}`, `${r.onTenantKey}`, `${r.deleted}`];
      }),
    ]),
  ].join('\n');
}

/** `EMAIL[:global|service]`; without a role, `defaultRole` (none for a removal: whatever role they have). */
function parseAdmin(spec: string, defaultRole?: string): { email: string; role: string | undefined } {
  const at = spec.lastIndexOf(':');
  if (at > spec.lastIndexOf('@')) return { email: spec.slice(0, at), role: spec.slice(at + 1) };
  return { email: spec, role: defaultRole };
}
