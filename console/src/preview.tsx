/**
 * Previews (issue 19's dry runs): a Preview button beside an action calls the action's own route with `"dryRun": true`
 * and the service answers a DryRunReport — nothing changed. The panel says it in words, as `cmk … --dry-run` does
 * (client/commands/dry-run.ts): accepted or the refusal the real request would meet (its code and sentence), the
 * environments touched, those that would go offline, and the mails and their recipients.
 */
import { useState } from 'preact/hooks';
import { DRY_RUN_WHAT } from '../../domain/dry-run';
import type { Answer } from './api';
import type * as S from '../../api/schemas';
import { consoleSentence, Refusal, useAction } from './ui';
import { when } from './format';

export type DryRunView = Answer<typeof S.DryRunReport>;
type Planned = DryRunView['environments'][number]['to'];

/** A preview's state: the report shown, a refusal that came instead of one (FORBIDDEN, a malformed request), and its runner. */
export function usePreview<A extends unknown[]>(run: (...args: A) => Promise<DryRunView>) {
  const [report, setReport] = useState<DryRunView | null>(null);
  const action = useAction(async (...args: A) => {
    setReport(null);
    setReport(await run(...args));
  });
  return { busy: action.busy, error: action.error, report, go: action.go };
}

const short = (thumbprint: string | null) => (thumbprint === null ? null : `${thumbprint.slice(0, 16)}…`);

function protection(p: Planned, operation: string): string {
  if (p.protection === 'provider') return 'the provider key';
  const known = short(p.keyThumbprint);
  if (known) return `the tenant key ${known}`;
  return operation === 'key.generate' ? 'the new key' : 'the tenant key (thumbprint not known yet)';
}

/**
 * The report, read out when it arrives (a polite live region that is always there, so that what enters it is said).
 * `proofNeeds` is said instead of the service's sentence about the proof, which names the CLI's flags.
 */
export function PreviewPanel({ preview, label, proofNeeds }: { preview: { busy: boolean; error: unknown; report: DryRunView | null }; label: string; proofNeeds?: string }) {
  const r = preview.report;
  const what = r ? ((DRY_RUN_WHAT as Record<string, string>)[r.operation] ?? r.operation) : '';
  const offline = r ? r.environments.filter((e) => e.goesOffline).map((e) => e.id) : [];
  return (
    <>
      <Refusal error={preview.error} />
      <div class={r ? 'preview' : 'preview-idle'} role="status" aria-live="polite" aria-label={label}>
        {r ? (
          <>
            <p>
              <strong>Preview: nothing was changed.</strong> The real request ({what}, region {r.region}) {r.refusal ? 'would be refused:' : 'would be accepted.'}
            </p>
            {r.refusal ? (
              <p class="refusal">
                <code>{r.refusal.code}</code> {consoleSentence(r.refusal.code, r.refusal.message)}
              </p>
            ) : (
              <>
                {r.key ? (
                  <p>
                    Key “{r.key.name}” ({r.key.source}), thumbprint {r.key.thumbprint ?? 'known once the vault opens the .byok'}
                    {r.key.activate ? '.' : '; kept Available, protecting nothing until it is activated.'}
                  </p>
                ) : null}
                {r.proof && !r.proof.given && r.proof.needs ? <p>{proofNeeds ?? r.proof.needs}</p> : null}
                {r.approval?.required === 2 ? <p>The tenant's policy wants a second administrator: the lock would wait for approval until {when(r.approval.waitsUntil)}; nothing goes offline before.</p> : null}
                {r.environments.length === 0 ? (
                  <p>No environment would be touched.</p>
                ) : (
                  <>
                    <p>Environments touched ({r.environments.length}):</p>
                    <ul>
                      {r.environments.map((e) => (
                        <li key={e.id}>
                          <strong>{e.id}</strong>: {e.from.state} on {protection(e.from, r.operation)} → {e.to.state} on {protection(e.to, r.operation)}
                          {e.goesOffline ? <strong class="offline"> — goes offline</strong> : null}
                        </li>
                      ))}
                    </ul>
                  </>
                )}
                <p>{offline.length ? `Would go offline: ${offline.join(', ')}.` : 'No environment would go offline.'}</p>
                {r.mails.length === 0 ? (
                  <p>No mail would be sent.</p>
                ) : (
                  <>
                    <p>Mails that would be sent:</p>
                    <ul>
                      {r.mails.map((m, i) => (
                        <li key={i}>
                          “{m.event}” to {m.to.join(', ')}
                        </li>
                      ))}
                    </ul>
                  </>
                )}
              </>
            )}
          </>
        ) : preview.busy ? (
          'Previewing…'
        ) : null}
      </div>
    </>
  );
}
