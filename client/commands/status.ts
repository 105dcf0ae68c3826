/** `cmk status`: exit 0 once the API answers, Temporal answers and a worker polls (DESIGN.md §4). */
import type { CliContext } from './context';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerStatus({ program, command, api, print }: CliContext): void {
  command(program, 'status', 'exit 0 once the API answers, Temporal answers and a worker polls').action(async () => {
    const s = await api().call<Answer<typeof S.Status>>('GET', '/v1/status');
    const regions = Object.entries(s.worker.regions ?? {}).map(([region, w]) => `\nWorkers polling ${w.taskQueue} (region ${region}): ${w.pollers}`);
    const warnings = (s.warnings ?? []).map((w) => `\nWarning: ${w}`);
    print(s, () => `API: ok\nTemporal: ${s.temporal.ok ? 'ok' : 'not answering'} (namespace ${s.temporal.namespace})\nWorkers polling ${s.worker.taskQueue}: ${s.worker.pollers}${regions.join('')}${warnings.join('')}`);
    if (!s.ready) throw new Error('The control plane is not ready yet.');
  });
}
