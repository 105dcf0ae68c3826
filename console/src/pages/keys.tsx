/**
 * Keys: generate (the .pfx downloads once, R3), upload a .pfx or .byok (the key-exchange key first for a .byok), now or
 * kept Available to activate later, roll back within the embargo (R6), re-activate after a lock (R10), and the
 * region's key history. Each refusal shows beside its control.
 */
import { CmkError } from '../../../common/errors';
import { useRef, useState } from 'preact/hooks';
import { MIN_GENERATED_PASSWORD_LENGTH } from '../../../domain/rules';
import { call, download, enc, fromBase64, toBase64, withRegion, type Answer, type KeyReport } from '../api';
import type * as S from '../../../api/schemas';
import { isPast, relative, when } from '../format';
import { Done, Field, Refusal, Section, readPicked, useAction, useLoad, useRenderAt } from '../ui';
import type { TenantContext } from '../tenant-context';
import { PreviewPanel, usePreview, type DryRunView } from '../preview';

/** A hint, not a rule: the service's only rule is the length (R3); this says how far a password is from a good one. */
export function passwordStrength(password: string): string {
  if (password.length < MIN_GENERATED_PASSWORD_LENGTH) return `Too short: at least ${MIN_GENERATED_PASSWORD_LENGTH} characters.`;
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(password)).length;
  if (password.length >= 20 || (password.length >= 14 && kinds >= 3)) return 'Strong.';
  return kinds >= 3 ? 'Fair: a longer password is stronger.' : 'Weak: mix letters, digits and symbols, or make it longer.';
}

const keyBase = (ctx: TenantContext) => `/v1/tenants/${enc(ctx.tenant.id)}/keys`;

function Generate({ ctx }: { ctx: TenantContext }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const action = useAction(async () => {
    if (password !== confirm) throw new CmkError('INVALID_ARGUMENT', 'The two passwords differ; type the same password twice.');
    const r = await call<KeyReport & { pfx: string }>('POST', `${keyBase(ctx)}/generate`, { name, password, region: ctx.region });
    download(`${name || 'key'}.pfx`, fromBase64(r.pfx), 'application/x-pkcs12');
    setPassword('');
    setConfirm('');
    ctx.refresh();
    return `Key ${r.activeKey?.name ?? name} generated; its .pfx was downloaded (this is the only copy you will get). Environments on the tenant key are being re-protected.`;
  });
  // The same route and checks with "dryRun": no key is made, nothing downloads.
  const preview = usePreview(async () => {
    if (password !== confirm) throw new CmkError('INVALID_ARGUMENT', 'The two passwords differ; type the same password twice.');
    return call<DryRunView>('POST', `${keyBase(ctx)}/generate`, { name, password, region: ctx.region, dryRun: true });
  });
  const allowed = ctx.can('key.change');
  const waiting = !isPast(ctx.key.nextKeyChangeAllowedAt);
  return (
    <Section title="Generate a key">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action.go();
        }}
      >
        <Field label="Key name">{(id) => <input id={id} value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} />}</Field>
        <Field label="Password" hint={password ? passwordStrength(password) : `At least ${MIN_GENERATED_PASSWORD_LENGTH} characters; it protects the .pfx you download.`}>
          {(id) => <input id={id} type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required aria-describedby={`${id}-hint`} />}
        </Field>
        <Field label="Confirm password">{(id) => <input id={id} type="password" autocomplete="new-password" value={confirm} onInput={(e) => setConfirm(e.currentTarget.value)} required />}</Field>
        <button type="submit" disabled={action.busy || !allowed}>
          {action.busy ? 'Generating…' : 'Generate key'}
        </button>
        <button type="button" class="secondary" disabled={preview.busy || !allowed} onClick={() => void preview.go()}>
          Preview generate
        </button>
        {!allowed ? <p class="why">Only the tenant's global and service administrators change keys.</p> : waiting ? <p class="why">A key change is allowed from {when(ctx.key.nextKeyChangeAllowedAt)} (R5).</p> : null}
      </form>
      <Refusal error={action.error} />
      <Done text={action.done} />
      <PreviewPanel preview={preview} label="Preview of the key generation" />
    </Section>
  );
}

function Upload({ ctx }: { ctx: TenantContext }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [activate, setActivate] = useState(true);
  const file = useRef<HTMLInputElement>(null);
  const request = async () => {
    const picked = await readPicked(file.current);
    if (!picked) throw new CmkError('INVALID_ARGUMENT', 'Choose the key file (.pfx or .byok).');
    return { name, fileName: picked.name, file: toBase64(picked.bytes), ...(password ? { password } : {}), region: ctx.region, ...(activate ? {} : { activate: false }) };
  };
  const action = useAction(async () => {
    const r = await call<KeyReport & { uploadedKey?: { thumbprint: string } }>('POST', `${keyBase(ctx)}/upload`, await request());
    setPassword('');
    ctx.refresh();
    return activate
      ? `Key ${r.activeKey?.name ?? name} uploaded and active. Environments on the tenant key are being re-protected.`
      : `Key ${name} uploaded and kept Available: nothing uses it until you activate it under Key history.`;
  });
  // The file is opened and checked by the service as for the upload; nothing is staged or activated.
  const preview = usePreview(async () => call<DryRunView>('POST', `${keyBase(ctx)}/upload`, { ...(await request()), dryRun: true }));
  const kek = useAction(async () => {
    const r = await call<{ kid: string; publicKeyPem: string }>('POST', `${keyBase(ctx)}/kek`, { region: ctx.region });
    // A kid is a vault URL or path: the file's name keeps only what every file system takes; the page shows it whole.
    download(`kek-${r.kid.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-120)}.pem`, r.publicKeyPem, 'application/x-pem-file');
    return `Key-exchange key ${r.kid} downloaded: wrap your key with it in your HSM, then upload the .byok.`;
  });
  const allowed = ctx.can('key.change');
  return (
    <Section title="Upload your own key">
      <p>A .pfx with its password, or a .byok made by your HSM: for a .byok, download the key-exchange key first and wrap your key with it.</p>
      <button type="button" disabled={kek.busy || !ctx.can('key.kek')} onClick={() => void kek.go()}>
        Download key-exchange key
      </button>
      <Refusal error={kek.error} />
      <Done text={kek.done} />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action.go();
        }}
      >
        <Field label="Key name">{(id) => <input id={id} value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} />}</Field>
        <Field label="Key file">{(id) => <input id={id} type="file" accept=".pfx,.byok" ref={file} required />}</Field>
        <Field label="Password" hint="For a .pfx; leave empty for a .byok.">
          {(id) => <input id={id} type="password" autocomplete="off" value={password} onInput={(e) => setPassword(e.currentTarget.value)} aria-describedby={`${id}-hint`} />}
        </Field>
        <p>
          <label>
            <input type="checkbox" checked={activate} onChange={(e) => setActivate(e.currentTarget.checked)} /> Activate it now
          </label>
        </p>
        <button type="submit" disabled={action.busy || !allowed}>
          {action.busy ? 'Uploading…' : 'Upload key'}
        </button>
        <button type="button" class="secondary" disabled={preview.busy || !allowed} onClick={() => void preview.go()}>
          Preview upload
        </button>
      </form>
      <Refusal error={action.error} />
      <Done text={action.done} />
      <PreviewPanel preview={preview} label="Preview of the upload" />
    </Section>
  );
}

function Rollback({ ctx }: { ctx: TenantContext }) {
  const action = useAction(async () => {
    const r = await call<KeyReport & { rolledBack: { name: string } }>('POST', `${keyBase(ctx)}/rollback`, { region: ctx.region });
    ctx.refresh();
    return `Rolled back: ${r.rolledBack.name} is no longer the active key; ${r.activeKey?.name ?? 'the provider key'} is.`;
  });
  const preview = usePreview(async () => call<DryRunView>('POST', `${keyBase(ctx)}/rollback`, { region: ctx.region, dryRun: true }));
  const open = ctx.key.rollbackAvailableUntil && !isPast(ctx.key.rollbackAvailableUntil);
  // R6: the administrator who made the change cannot undo it alone (the service refuses; the console says so first).
  const mine = ctx.key.activeKey?.activatedBy?.toLowerCase() === ctx.user.toLowerCase();
  return (
    <Section title="Roll back the last key change">
      <p>
        {open
          ? `Another global or service administrator can roll back the last key change until ${when(ctx.key.rollbackAvailableUntil)} (${relative(ctx.key.rollbackAvailableUntil)}, R6).`
          : 'No key change can be rolled back now.'}
      </p>
      <button type="button" disabled={action.busy || !open || mine || !ctx.can('key.rollback')} onClick={() => void action.go()}>
        Roll back
      </button>
      <button type="button" class="secondary" disabled={preview.busy || !ctx.can('key.rollback')} onClick={() => void preview.go()}>
        Preview rollback
      </button>
      {open && mine ? <p class="why">You made this key change; another global or service administrator must roll it back (R6).</p> : null}
      <Refusal error={action.error} />
      <Done text={action.done} />
      <PreviewPanel preview={preview} label="Preview of the rollback" />
    </Section>
  );
}

function Reactivate({ ctx }: { ctx: TenantContext }) {
  const [password, setPassword] = useState('');
  const file = useRef<HTMLInputElement>(null);
  const action = useAction(async () => {
    const picked = await readPicked(file.current);
    if (!picked) throw new CmkError('INVALID_ARGUMENT', 'Choose the locked key\'s file (.pfx or .byok).');
    const r = await call<KeyReport>('POST', `${keyBase(ctx)}/reactivate`, { fileName: picked.name, file: toBase64(picked.bytes), ...(password ? { password } : {}), region: ctx.region });
    setPassword('');
    ctx.refresh();
    return `Key ${r.activeKey?.name ?? ''} re-activated. Unlock each environment under Environments.`;
  });
  const locked = ctx.key.activeKey?.state === 'Locked';
  return (
    <Section title="Re-activate the key after a lock">
      <p>{locked ? 'The region is locked. Upload the same key again to re-activate it (R10); then unlock environments one at a time.' : 'Nothing is locked in this region.'}</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action.go();
        }}
      >
        <Field label="Locked key file">{(id) => <input id={id} type="file" accept=".pfx,.byok" ref={file} disabled={!locked} />}</Field>
        <Field label="Key file password">{(id) => <input id={id} type="password" autocomplete="off" value={password} onInput={(e) => setPassword(e.currentTarget.value)} disabled={!locked} />}</Field>
        <button type="submit" disabled={action.busy || !locked || !ctx.can('key.reactivate')}>
          Re-activate key
        </button>
      </form>
      <Refusal error={action.error} />
      <Done text={action.done} />
    </Section>
  );
}

type HistoryEntry = Answer<typeof S.KeyHistory>['keys'][number];

/** Every key the region has had, newest first; a key uploaded without activating can be activated here (R5 counts from then). */
function History({ ctx }: { ctx: TenantContext }) {
  const history = useLoad(() => call<Answer<typeof S.KeyHistory>>('GET', withRegion(`${keyBase(ctx)}/history`, ctx.region)), [ctx.key, ctx.region]);
  const activate = useAction(async (key: HistoryEntry) => {
    const r = await call<KeyReport>('POST', `${keyBase(ctx)}/activate`, { thumbprint: key.thumbprint, region: ctx.region });
    ctx.refresh();
    return `Key ${r.activeKey?.name ?? key.name} is active. Environments on the tenant key are being re-protected.`;
  });
  const mayChange = ctx.can('key.change');
  const waiting = !isPast(ctx.key.nextKeyChangeAllowedAt);
  return (
    <Section title="Key history">
      <Refusal error={history.error} />
      {history.data && history.data.keys.length === 0 ? <p>No tenant key yet in {ctx.region}.</p> : null}
      {history.data && history.data.keys.length > 0 ? (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">State</th>
                <th scope="col">Thumbprint</th>
                <th scope="col">Added</th>
                <th scope="col">Active since</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {history.data.keys.map((k) => (
                <tr key={k.thumbprint}>
                  <th scope="row">{k.name}</th>
                  <td>{k.state}</td>
                  <td>
                    <code title={k.thumbprint}>{k.thumbprint.slice(0, 16)}…</code>
                  </td>
                  <td>
                    {when(k.createdAt)} by {k.createdBy} ({k.source})
                  </td>
                  <td>{k.activatedAt ? `${when(k.activatedAt)} by ${k.activatedBy ?? '—'}` : '—'}</td>
                  <td>
                    {k.state === 'Available' ? (
                      <>
                        <button type="button" aria-label={`Activate key ${k.name}`} disabled={activate.busy || !mayChange || waiting} onClick={() => void activate.go(k)}>
                          Activate
                        </button>
                        {waiting ? <p class="why">A key change is allowed from {when(ctx.key.nextKeyChangeAllowedAt)} (R5).</p> : null}
                      </>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Refusal error={activate.error} />
      <Done text={activate.done} />
    </Section>
  );
}

export function Keys({ ctx }: { ctx: TenantContext }) {
  // R5's interval and R6's window end while the page is open: the controls they hold back follow without a reload.
  useRenderAt(ctx.key.nextKeyChangeAllowedAt);
  useRenderAt(ctx.key.rollbackAvailableUntil);
  const active = ctx.key.activeKey;
  const progress = ctx.key.reprotection;
  return (
    <>
      <h1>Keys</h1>
      <Section title={`Active key in ${ctx.region}`}>
        <p>{active ? `${active.name} (${active.state}), thumbprint ${active.thumbprint}, since ${when(active.activatedAt)}.` : 'No tenant key: environments use the provider key.'}</p>
        {progress && progress.total > 0 ? (
          <>
            <label class="progress">
              Re-protection {progress.done} / {progress.total}
              {progress.refused?.length ? ` (${progress.refused.length} refused)` : ''}
              <progress max={progress.total} value={progress.done} />
            </label>
            {progress.refused?.map((r) => (
              <p key={r.env} class="refusal">
                {r.env}: <code>{r.code}</code> {r.message}
              </p>
            ))}
          </>
        ) : null}
      </Section>
      {ctx.can('key.change') || ctx.can('key.rollback') ? (
        <>
          <Generate ctx={ctx} />
          <Upload ctx={ctx} />
          <Rollback ctx={ctx} />
          <Reactivate ctx={ctx} />
        </>
      ) : (
        <p>Keys are changed by the tenant's global and service administrators.</p>
      )}
      {ctx.can('key.show') ? <History ctx={ctx} /> : null}
    </>
  );
}
