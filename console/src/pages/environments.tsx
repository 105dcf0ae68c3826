/**
 * Environments: state, protection and per-row actions (R7 apply/revert, rekey, backup/restore, R10 unlock, and the
 * deletion of a locked one now instead of at R9's deadline), each offered only where the rules and the user's role
 * allow it, with the reason shown where they do not.
 */
import { useState } from 'preact/hooks';
import type { Action } from '../../../domain/access';
import { RISK_WARNING } from '../../../domain/rules';
import { call, enc, type Answer, type EnvView } from '../api';
import type * as S from '../../../api/schemas';
import { relative, when } from '../format';
import { PreviewPanel, usePreview, type DryRunView } from '../preview';
import { Field, Refusal, useAction } from '../ui';
import type { TenantContext } from '../tenant-context';

type Operation = 'apply' | 'revert' | 'rekey' | 'backup' | 'restore' | 'unlock';

const LABEL: Record<Operation, string> = { apply: 'Apply', revert: 'Revert', rekey: 'Rekey', backup: 'Backup', restore: 'Restore', unlock: 'Unlock' };
const ACTION: Record<Operation, Action> = { apply: 'env.apply', revert: 'env.revert', rekey: 'env.rekey', backup: 'env.backup', restore: 'env.restore', unlock: 'env.unlock' };
const DONE: Record<Operation, string> = {
  apply: 'now protected by the tenant key',
  revert: 'back on the provider key',
  rekey: 'has a new data encryption key',
  backup: 'backed up',
  restore: 'restored from its newest backup',
  unlock: 'unlocked and online',
};

/**
 * The opt-in of a first apply (issue 19): asked until the tenant has accepted it. A tenant with an environment on its
 * key has (the service implies it for tenants older than the opt-in).
 */
export function asksForRisk(ctx: TenantContext): boolean {
  return !ctx.tenant.riskAcceptance.accepted && !ctx.environments.some((e) => e.protection === 'tenant');
}

/** Why `operation` is not offered on `env` now, or null when it is (the service still decides). */
export function whyNot(ctx: TenantContext, env: EnvView, operation: Operation, riskAccepted = true): string | null {
  if (!ctx.can(ACTION[operation], env.id)) return 'Only its system administrator and the tenant\'s global and service administrators may.';
  const active = ctx.key.activeKey;
  if (operation === 'unlock') {
    if (env.state !== 'Locked') return 'Not locked.';
    return active?.state === 'Active' ? null : 'Re-activate the key first (Keys).';
  }
  if (env.state === 'Locked') return 'Locked: re-activate the key, then unlock it.';
  if (env.state !== 'Online') return `Busy: ${env.state.toLowerCase()}.`;
  if (operation === 'apply') {
    if (env.protection === 'tenant') return 'Already on the tenant key.';
    if (active?.state !== 'Active') return 'No active tenant key in this region.';
    return riskAccepted ? null : 'Accept the risk first (above the table).';
  }
  if (operation === 'revert' && env.protection !== 'tenant') return 'Already on the provider key.';
  return null;
}

/**
 * A locked environment not worth unlocking is deleted now (database, backups and key record, as R9 would at its
 * deadline), so that R11 no longer holds the tenant's next key back. Typing its ID confirms, as `--confirm` does.
 */
function DeleteNow({ ctx, env }: { ctx: TenantContext; env: EnvView }) {
  const [asked, setAsked] = useState(false);
  const [typed, setTyped] = useState('');
  const action = useAction(async () => {
    await call('POST', `/v1/tenants/${enc(ctx.tenant.id)}/environments/${enc(env.id)}/delete`, { confirm: typed });
    ctx.refresh();
    return `${env.id}: deleted, with its backups and key record.`;
  });
  if (env.state !== 'Locked' || !ctx.can('env.delete', env.id)) return null;
  if (!asked) {
    return (
      <button type="button" class="danger" onClick={() => setAsked(true)}>
        Delete…
      </button>
    );
  }
  return (
    <form
      class="confirm"
      onSubmit={(e) => {
        e.preventDefault();
        void action.go();
      }}
    >
      <p class="warning">Deleting {env.id} destroys its database, its backups and its key record now. It cannot be undone.</p>
      <Field label={`Type ${env.id} to confirm`}>{(id) => <input id={id} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} required autocomplete="off" />}</Field>
      <button type="submit" class="danger" disabled={action.busy}>
        Delete now
      </button>
      <button type="button" class="link" onClick={() => setAsked(false)}>
        Cancel
      </button>
      <Refusal error={action.error} />
      {action.done ? <p class="done">{action.done}</p> : null}
    </form>
  );
}

/** The operations with a preview (the service's dry run: a rekey has none). */
const PREVIEWED = ['apply', 'revert'] as const;

function Row({ ctx, env, acceptRisk }: { ctx: TenantContext; env: EnvView; acceptRisk: boolean | null }) {
  const path = (operation: Operation) => `/v1/tenants/${enc(ctx.tenant.id)}/environments/${enc(env.id)}/${operation}`;
  const action = useAction(async (operation: Operation) => {
    const body = operation === 'restore' ? {} : operation === 'apply' && acceptRisk ? { acceptRisk: true } : undefined;
    await call('POST', path(operation), body);
    ctx.refresh();
    return `${env.id}: ${DONE[operation]}.`;
  });
  // The same request with "dryRun" (the opt-in included, as the real apply would carry it): nothing changes.
  const preview = usePreview((operation: (typeof PREVIEWED)[number]) => call<DryRunView>('POST', path(operation), { dryRun: true, ...(operation === 'apply' && acceptRisk ? { acceptRisk: true } : {}) }));
  const ops: Operation[] = ['apply', 'revert', 'rekey', 'backup', 'restore', 'unlock'];
  const reasons = ops.map((op) => [op, whyNot(ctx, env, op, acceptRisk !== false)] as const);
  const reasonId = `why-${env.id}`;
  return (
    <tr>
      <th scope="row">{env.id}</th>
      <td>{env.state}</td>
      <td>
        {env.protection === 'tenant' ? (
          <>
            Tenant key <code class="thumb">{env.keyThumbprint}</code>
          </>
        ) : (
          'Provider key'
        )}
      </td>
      <td>{env.systemAdmin ?? '—'}</td>
      <td>{env.lock ? `${when(env.lock.deleteAt)} (${relative(env.lock.deleteAt)})` : ''}</td>
      <td class="drift">
        {env.drift ? (
          <>
            <span class="badge">Drift</span> {env.drift.summary}{' '}
            <small>
              (found {when(env.drift.foundAt)}, last checked {when(env.drift.checkedAt)})
            </small>
          </>
        ) : null}
      </td>
      <td class="actions">
        {reasons.map(([op, why]) => (
          <button key={op} type="button" disabled={action.busy || why !== null} aria-describedby={reasonId} title={why ?? undefined} onClick={() => void action.go(op)}>
            {LABEL[op]}
          </button>
        ))}
        {PREVIEWED.map((op) => (
          <button key={op} type="button" class="secondary" disabled={preview.busy || !ctx.can(ACTION[op], env.id)} onClick={() => void preview.go(op)}>
            Preview {op}
          </button>
        ))}
        <p id={reasonId} class="why">
          {reasons
            .filter(([, why]) => why !== null)
            .map(([op, why]) => `${LABEL[op]}: ${why}`)
            .join(' ')}
        </p>
        <DeleteNow ctx={ctx} env={env} />
        {env.fault ? (
          <p class="refusal">
            <code>{env.fault.code}</code> {env.fault.reason} {env.fault.repair}
          </p>
        ) : null}
        <Refusal error={action.error} />
        {action.done ? <p class="done">{action.done}</p> : null}
        <PreviewPanel preview={preview} label={`Preview for ${env.id}`} />
      </td>
    </tr>
  );
}

type DriftChecked = Answer<typeof S.DriftChecked>;

/**
 * The drift check (`cmk drift check`): every environment of the tenant compared with its database and the vault now.
 * It reads and repairs nothing; what it finds shows in the table's Drift column until a check finds it as cmk set it.
 */
function DriftCheck({ ctx }: { ctx: TenantContext }) {
  const [result, setResult] = useState<DriftChecked | null>(null);
  const check = useAction(async () => {
    setResult(null);
    setResult(await call<DriftChecked>('POST', `/v1/tenants/${enc(ctx.tenant.id)}/drift-check`));
    ctx.refresh();
  });
  const allowed = ctx.can('drift.check');
  return (
    <section class="card" aria-labelledby="drift-title">
      <h2 id="drift-title">Drift</h2>
      <p>
        The drift check compares every environment of the tenant with its database and the vault, and shows what differs from what cmk set (it also runs on
        a schedule). It changes nothing.
      </p>
      <button type="button" disabled={check.busy || !allowed} onClick={() => void check.go()}>
        {check.busy ? 'Checking…' : 'Check drift now'}
      </button>
      {allowed ? null : <p class="why">Only the tenant's global and service administrators run the drift check.</p>}
      <Refusal error={check.error} />
      <div class={result ? 'preview' : 'preview-idle'} role="status" aria-live="polite" aria-label="Drift check result">
        {result === null ? null : result.clean ? (
          <p>No drift: every environment of {ctx.tenant.id} is as cmk set it (checked {when(result.checkedAt)}).</p>
        ) : (
          <>
            <p>
              <strong>
                Drift in {result.drifting.length} environment{result.drifting.length === 1 ? '' : 's'}
              </strong>{' '}
              (checked {when(result.checkedAt)}):
            </p>
            <ul>
              {result.drifting.map((d) => (
                <li key={d.env}>
                  <strong>{d.env}</strong>: {d.summary} (found {when(d.foundAt)}
                  {result.newlyFound.includes(d.env) ? ', new' : ''})
                </li>
              ))}
            </ul>
            <p>cmk repairs nothing by itself: the provider's operators find who changed it and repair it (their runbook, “Drift”).</p>
          </>
        )}
      </div>
    </section>
  );
}

export function Environments({ ctx }: { ctx: TenantContext }) {
  const progress = ctx.key.reprotection;
  const [ticked, setTicked] = useState(false);
  // null: not asked (accepted already); else whether the box is ticked.
  const acceptRisk = asksForRisk(ctx) ? ticked : null;
  return (
    <>
      <h1>Environments in {ctx.region}</h1>
      {acceptRisk !== null ? (
        <section class="warning" aria-labelledby="risk-title">
          <h2 id="risk-title">Before the first key is applied</h2>
          <p>{RISK_WARNING}</p>
          <label>
            <input type="checkbox" checked={ticked} onChange={(e) => setTicked((e.currentTarget as HTMLInputElement).checked)} /> I understand and accept the risk
          </label>
        </section>
      ) : null}
      {progress && progress.remaining > 0 ? (
        <p role="status">
          Re-protecting after a key change: {progress.done} of {progress.total} done, {progress.remaining} to go{progress.refused?.length ? `, ${progress.refused.length} refused` : ''}.
        </p>
      ) : null}
      {ctx.environments.length === 0 ? (
        <p>No environments here{ctx.tenant.admins.length ? '' : ' that you administer'}.</p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Environment</th>
                <th scope="col">State</th>
                <th scope="col">Protection</th>
                <th scope="col">System administrator</th>
                <th scope="col">Deletion</th>
                <th scope="col">Drift</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {ctx.environments.map((env) => (
                <Row key={env.id} ctx={ctx} env={env} acceptRisk={acceptRisk} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <DriftCheck ctx={ctx} />
    </>
  );
}
