/** `--dry-run` (issue 19): the API's DryRunReport printed, and the exit status the real run's refusal would have. */
import type { Answer } from '../http';
import type * as S from '../../api/schemas';
import { DRY_RUN_WHAT } from '../../domain/dry-run';
import { DryRunRefusedError, type CliContext } from './context';

export type DryRunReport = Answer<typeof S.DryRunReport>;

const short = (thumbprint: string | null, unknown: string) => (thumbprint === null ? unknown : thumbprint.slice(0, 16));

function protection(p: DryRunReport['environments'][number]['to'], unknown: string): string {
  return p.protection === 'provider' ? 'provider key' : `tenant key ${short(p.keyThumbprint, unknown)}`;
}

/** The human report: nothing changed, then what would happen, or the refusal the real run would meet. */
export function describeDryRun(r: DryRunReport): string {
  const what = (DRY_RUN_WHAT as Record<string, string>)[r.operation] ?? r.operation;
  const lines = ['Dry run: nothing was changed.'];
  if (r.refusal) {
    lines.push(`The real command (${what}, tenant ${r.tenant}, region ${r.region}) would be refused: ${r.refusal.code}: ${r.refusal.message}`);
    return lines.join('\n');
  }
  lines.push(`The real command (${what}, tenant ${r.tenant}, region ${r.region}) would be accepted.`);
  if (r.key) lines.push(`Key "${r.key.name}" (${r.key.source}): thumbprint ${r.key.thumbprint ?? 'known once the vault opens the .byok'}${r.key.activate ? '' : '; kept Available, protecting nothing'}.`);
  if (r.proof && !r.proof.given && r.proof.needs) lines.push(r.proof.needs);
  if (r.proof?.given) lines.push('The proof of possession verifies with the active key (its challenge is not spent).');
  if (r.approval?.required === 2) lines.push(`The tenant's policy wants a second administrator: the lock would wait for approval (\`cmk tenant lock approve\`) until ${r.approval.waitsUntil}; nothing goes offline before.`);
  const unknown = r.operation === 'key.generate' ? 'the new key' : 'not known yet';
  if (r.environments.length === 0) lines.push('No environment would be touched.');
  else {
    lines.push(`Environments touched (${r.environments.length}):`);
    for (const e of r.environments) {
      const offline = e.goesOffline ? ', goes OFFLINE' : '';
      lines.push(`  ${e.id}: ${e.from.state} on ${protection(e.from, unknown)} -> ${e.to.state} on ${protection(e.to, unknown)}${offline}`);
    }
  }
  const offline = r.environments.filter((e) => e.goesOffline).map((e) => e.id);
  lines.push(offline.length ? `Would go offline: ${offline.join(', ')}.` : 'No environment would go offline.');
  if (r.mails.length === 0) lines.push('No mail would be sent.');
  for (const m of r.mails) lines.push(`Mail "${m.event}" to ${m.to.join(', ')}.`);
  return lines.join('\n');
}

/** Prints the report; a refusal then ends the command with its exit status (the report stays printed). */
export function reportDryRun(print: CliContext['print'], r: DryRunReport): void {
  print(r, () => describeDryRun(r));
  if (r.refusal) throw new DryRunRefusedError(r.refusal.code, r.refusal.message);
}
