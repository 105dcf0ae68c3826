/** `cmk drift check`: the tenant's environments compared with their databases and the vault now (reads only). */
import { columns, DriftFoundError, enc, type CliContext } from './context';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerDrift({ program, command, api, print }: CliContext): void {
  const drift = command(program, 'drift', 'environments whose database or vault differs from what cmk set');
  command(drift, 'check', "check the tenant's environments now; exit 1 when drift is found")
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Answer<typeof S.DriftChecked>>('POST', `/v1/tenants/${enc(o.tenant)}/drift-check`, {});
      print(r, () =>
        r.clean
          ? `No drift in ${o.tenant}: every environment is as cmk set it (checked ${r.checkedAt}).`
          : [
              `Drift in ${o.tenant} (checked ${r.checkedAt}):`,
              columns([['ENVIRONMENT', 'FOUND AT', 'WHAT DIFFERS'], ...r.drifting.map((d) => [d.env, d.foundAt + (r.newlyFound.includes(d.env) ? ' (new)' : ''), d.summary])]),
              'cmk repairs nothing by itself: see docs/RUNBOOK.md, "Drift".',
            ].join('\n'),
      );
      if (!r.clean) throw new DriftFoundError(r.drifting.length);
    });
}
