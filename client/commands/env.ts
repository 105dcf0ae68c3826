/** `cmk env`: environments and their databases (DESIGN.md §4). */
import { columns, enc, faultText, query, UsageError, type CliContext } from './context';
import { createFromFile } from './env-bulk';
import { reportDryRun, type DryRunReport } from './dry-run';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerEnv(context: CliContext): void {
  const { program, command, api, print } = context;
  const env = command(program, 'env', 'environments and their databases');
  command(env, 'create', 'create an environment (--env), or many in one operation (--from-file): new databases under the provider key')
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--env <id>', 'environment ID')
    .option('--from-file <file>', 'one environment ID a line, optionally ID,ADMIN_EMAIL (# comments); all or none')
    .option('--region <region>', 'region (default: the tenant home region)')
    .option('--admin <email>', "the environment's system administrator")
    .action(async (o: { tenant: string; env?: string; fromFile?: string; region?: string; admin?: string }) => {
      if ((o.env === undefined) === (o.fromFile === undefined)) throw new UsageError('give either --env or --from-file');
      if (o.fromFile !== undefined) {
        if (o.admin !== undefined) throw new UsageError('--admin goes with --env; in a --from-file list, write ID,ADMIN_EMAIL');
        return createFromFile(context, { tenant: o.tenant, fromFile: o.fromFile, ...(o.region ? { region: o.region } : {}) });
      }
      const r = await api().call<Answer<typeof S.EnvironmentShown>>('POST', `/v1/tenants/${enc(o.tenant)}/environments`, { env: o.env, region: o.region, admin: o.admin });
      print(r, () => `Environment ${r.environment.id} created in region ${r.environment.region}: ${describeEnv(r.environment)}.`);
    });
  command(env, 'list', "list the tenant's environments in a region")
    .requiredOption('--tenant <id>', 'tenant ID')
    .option('--region <region>', 'region (default: the tenant home region)')
    .action(async (o: { tenant: string; region?: string }) => {
      const r = await api().call<Answer<typeof S.EnvironmentList>>('GET', `/v1/tenants/${enc(o.tenant)}/environments${query({ region: o.region })}`);
      print({ environments: r.environments }, () =>
        r.environments.length === 0
          ? `No environments in region ${r.region}.`
          : [
              `Environments of ${o.tenant} in region ${r.region}:`,
              columns([
                ['ENVIRONMENT', 'STATE', 'PROTECTION', 'KEY THUMBPRINT', 'SYSTEM ADMIN', ''],
                ...r.environments.map((e) => [
                  e.id,
                  e.state,
                  e.protection,
                  e.keyThumbprint,
                  e.systemAdmin ?? '-',
                  [e.drift ? `DRIFT since ${e.drift.foundAt}: ${e.drift.summary}` : '', e.fault ? faultText(e.fault) : e.lock ? `deleted at ${e.lock.deleteAt} unless unlocked` : ''].filter(Boolean).join('; '),
                ]),
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
    const sub = command(env, operation, description)
      .requiredOption('--tenant <id>', 'tenant ID')
      .requiredOption('--env <id>', 'environment ID');
    if (operation === 'apply') sub.option('--accept-risk', "accept the risk of managing the tenant's own key (asked once per tenant, before its first apply)");
    // Issue 19: apply and revert have a dry run; a rekey changes no protection and has none.
    if (operation !== 'rekey') sub.option('--dry-run', 'check and print what would happen (protection, mail, or the refusal); change nothing');
    sub.action(async (o: { tenant: string; env: string; dryRun?: boolean; acceptRisk?: boolean }) => {
      const path = `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/${operation}`;
      const risk = o.acceptRisk ? { acceptRisk: true } : {};
      if (o.dryRun) return reportDryRun(print, await api().call<DryRunReport>('POST', path, { ...risk, dryRun: true }));
      const r = await api().call<Answer<typeof S.EnvironmentShown>>('POST', path, ...(o.acceptRisk ? [risk] : []));
      print(r, () => `Environment ${r.environment.id}: ${describeEnv(r.environment)}.`);
    });
  }
  command(env, 'data', "read (and with --write, first add) rows of the environment's database")
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .option('--write <text>', 'add a row with this text first')
    .action(async (o: { tenant: string; env: string; write?: string }) => {
      const path = `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/data`;
      const r = await (o.write === undefined ? api().call<Answer<typeof S.EnvironmentRows>>('GET', path) : api().call<Answer<typeof S.EnvironmentRows>>('POST', path, { text: o.write }));
      print({ rows: r.rows }, () => (r.rows.length ? r.rows.map((row) => `${row.id}\t${row.createdAt}\t${row.text}`).join('\n') : 'No rows.'));
    });

  command(env, 'unlock', 'unlock one locked environment (after `cmk key reactivate`, and not within the unlock delay of the lock)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .action(async (o: { tenant: string; env: string }) => {
      const r = await api().call<Answer<typeof S.EnvironmentShown>>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/unlock`);
      print(r, () => `Environment ${r.environment.id} unlocked: ${describeEnv(r.environment)}.`);
    });
  command(env, 'delete', 'delete a locked environment now, with its backups and key record (it cannot be undone)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .requiredOption('--confirm <id>', "the environment's ID again")
    .action(async (o: { tenant: string; env: string; confirm: string }) => {
      const r = await api().call<Answer<typeof S.EnvironmentShown>>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/delete`, { confirm: o.confirm });
      print(r, () => `Environment ${r.environment.id} deleted at ${r.environment.deletedAt ?? 'now'}, with its backups and key record: no one can recover its data.`);
    });
  command(env, 'backup', "back up the environment's encrypted database (it carries no key of its own)")
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .action(async (o: { tenant: string; env: string }) => {
      const r = await api().call<Answer<typeof S.BackupReport>>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/backup`);
      print(r, () => [`Backup ${r.backup.id} of ${o.env} taken at ${r.backup.createdAt} (${r.backup.sizeBytes} bytes).`, describeBackups(r.backups)].join('\n'));
    });
  command(env, 'restore', 'put a backup (default: the latest) in place of the database; rows written since are gone')
    .requiredOption('--tenant <id>', 'tenant ID')
    .requiredOption('--env <id>', 'environment ID')
    .option('--backup <id>', 'the backup to restore (default: the latest)')
    .action(async (o: { tenant: string; env: string; backup?: string }) => {
      const r = await api().call<Answer<typeof S.BackupReport>>('POST', `/v1/tenants/${enc(o.tenant)}/environments/${enc(o.env)}/restore`, { backupId: o.backup });
      print(r, () => `Environment ${o.env} restored from backup ${r.backup.id} (taken at ${r.backup.createdAt}).`);
    });
}

type EnvView = Static<typeof S.EnvView>;
type BackupView = Static<typeof S.BackupView>;

function describeBackups(backups: BackupView[]): string {
  return [`Backups of this environment (oldest first):`, ...backups.map((b) => `  ${b.id}  ${b.createdAt}  ${b.sizeBytes} bytes`)].join('\n');
}

function describeEnv(e: EnvView): string {
  const lock = e.lock ? ` (${e.lock.sealed ? 'sealed' : 'locked by decision only'} since ${e.lock.lockedAt}; deleted at ${e.lock.deleteAt} unless unlocked)` : '';
  return `${e.state}${lock}, protected by the ${e.protection} key ${e.keyThumbprint}`;
}
