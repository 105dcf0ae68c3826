/** `cmk audit`: the tamper-evident audit trail (DESIGN.md §4). */
import { AuditBrokenError, columns, enc, query, UsageError, type CliContext } from './context';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerAudit({ program, command, api, print }: CliContext): void {
  const audit = command(program, 'audit', 'the tamper-evident audit trail');
  command(audit, 'list', "list the tenant's audit records, oldest first")
    .option('--tenant <id>', 'tenant ID')
    .option('--all', 'every record of every tenant, and the codec decodes (operator only)')
    .option('--limit <n>', 'the last N records (1 to 500)', '100')
    .option('--after <seq>', 'only records after this record number')
    .action(async (o: { tenant?: string; all?: boolean; limit: string; after?: string }) => {
      if (Boolean(o.tenant) === Boolean(o.all)) throw new UsageError('audit list needs --tenant ID, or --all (operator).');
      const path = o.all ? '/v1/audit' : `/v1/tenants/${enc(o.tenant!)}/audit`;
      const r = await api().call<Answer<typeof S.AuditList>>('GET', `${path}${query({ limit: o.limit, after: o.after })}`);
      print({ records: r.records }, () => (r.records.length ? columns([AUDIT_HEADING, ...r.records.map(auditRow)]) : 'No audit records.'));
    });
  command(audit, 'verify', 'verify the whole trail: every record, its order, and the signed head (exit 1 if anything was changed)')
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Answer<typeof S.AuditVerification>>('GET', `/v1/tenants/${enc(o.tenant)}/audit/verify`);
      // Placeholders (records the trail could not keep as made) are an alarm for the operator, not a broken chain.
      const placeholders = r.placeholders ? `\n${r.placeholders} record(s) could not be kept as made; placeholders (audit.unrecordable) stand in for them.` : '';
      print(r, () =>
        r.ok
          ? `The audit trail verifies: ${r.records} record(s), hash chain intact, head signed.${placeholders}`
          : ['The audit trail does NOT verify:', ...r.problems.map((p) => `  ${p.seq === null ? '' : `record ${p.seq}: `}${p.problem}`)].join('\n'),
      );
      if (!r.ok) throw new AuditBrokenError();
    });
}

type AuditRecordView = Static<typeof S.AuditRecordView>;

const AUDIT_HEADING = ['#', 'AT', 'TENANT', 'ACTOR', 'ACTION', 'OUTCOME', 'WHERE', 'THUMBPRINTS'];

function auditRow(r: AuditRecordView): string[] {
  const where = [r.region && `region ${r.region}`, r.environment && `env ${r.environment}`].filter(Boolean).join(', ');
  const prints = (r.thumbprints ?? []).map((t) => t.slice(0, 16)).join(', ');
  return [`${r.seq}`, r.at, r.tenant ?? '-', r.actor, r.action, r.code ? `${r.outcome} ${r.code}` : r.outcome, where || '-', prints];
}
