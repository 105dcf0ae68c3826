/**
 * Lock (R8): the last resort. The dialog asks for the tenant's name and proof of possession of the active key, says
 * what will happen, then locks. The proof is either the key's .pfx with its password, which signs the service's
 * challenge here in the browser (pfx-sign.ts: the file and its password never leave this page; only the signature
 * does), or, for a key that lives in an HSM (a .byok), a signature the HSM made over a challenge downloaded here.
 */
import { CmkError } from '../../../common/errors';
import { useRef, useState } from 'preact/hooks';
import { call, download, enc, toBase64, withRegion, type KeyReport } from '../api';
import { isPast, relative, when } from '../format';
import { openPfxSigner, signChallengeWithPfx } from '../pfx-sign';
import { Done, Field, Refusal, Section, readPicked, useAction, useRenderAt } from '../ui';
import type { TenantContext } from '../tenant-context';
import { LockApproval, pendingText } from './lock-approval';
import { PreviewPanel, usePreview, type DryRunView } from '../preview';

type Challenge = { challenge: string; expiresAt: string };
type LockResult = { region: string; sealed: string[]; lockedByDecisionOnly: string[]; deleteAt: string; unlockAllowedAt: string };

/** The lock's confirmation: the tenant's display name typed exactly. */
function TenantName(props: { name: string; value: string; onInput: (value: string) => void }) {
  return (
    <Field label="Tenant name" hint={`Type the tenant's name, ${props.name}, to confirm.`}>
      {(id) => <input id={id} value={props.value} onInput={(e) => props.onInput(e.currentTarget.value)} required autocomplete="off" aria-describedby={`${id}-hint`} />}
    </Field>
  );
}

/**
 * The reference document's lock of the whole tenant (`tenant lock --all-regions`): one confirmation, each region's
 * challenge signed here by that region's .pfx, one request; all or none. Offered when the tenant has several regions.
 */
function LockEveryRegion({ ctx, regions }: { ctx: TenantContext; regions: string[] }) {
  const [confirm, setConfirm] = useState('');
  const [passwords, setPasswords] = useState<Record<string, string>>({});
  const files = useRef<Record<string, HTMLInputElement | null>>({});
  const base = `/v1/tenants/${enc(ctx.tenant.id)}`;
  const action = useAction(async () => {
    const proofs: Array<{ region: string; challenge: string; signature: string }> = [];
    for (const region of regions) {
      const picked = await readPicked(files.current[region] ?? null);
      // A region left empty: the service says whether it needed a proof (one without a key of the tenant's does not).
      if (!picked) continue;
      const signer = await openPfxSigner(picked.bytes, passwords[region] ?? '');
      const { activeKey } = await call<KeyReport>('GET', withRegion(`${base}/key`, region));
      if (activeKey && signer.thumbprint !== activeKey.thumbprint) {
        throw new CmkError('KEY_MISMATCH', `The file chosen for ${region} is not that region's active key "${activeKey.name}"; nothing was locked.`);
      }
      const { challenge } = await call<Challenge>('POST', `${base}/challenges`, { operation: 'lock', region });
      proofs.push({ region, challenge, signature: toBase64(await signer.sign(challenge)) });
    }
    setPasswords({});
    const answer = await call<{ regions: LockResult[] } | { pendingLock: Parameters<typeof pendingText>[0] }>('POST', `${base}/lock/all-regions`, { confirm, proofs });
    ctx.refresh();
    if ('pendingLock' in answer) return pendingText(answer.pendingLock);
    const r = answer;
    const offline = r.regions.reduce((n, l) => n + l.sealed.length + l.lockedByDecisionOnly.length, 0);
    return `The tenant is locked in every region (${r.regions.map((l) => l.region).join(', ')}): ${offline} environments are offline and will be deleted on ${when(r.regions[0]?.deleteAt)} unless unlocked. Re-activate each region's key; unlocking is possible from ${when(r.regions[0]?.unlockAllowedAt)}.`;
  });
  return (
    <Section title="Lock every region at once">
      <p class="warning">
        Every environment of the tenant in every region ({regions.join(', ')}) goes offline in one operation, or none does if any region's proof or rule
        refuses. Each region's key proves itself: choose each region's .pfx, signed here and never sent.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void action.go();
        }}
      >
        <TenantName name={ctx.tenant.name} value={confirm} onInput={setConfirm} />
        {regions.map((region) => (
          <fieldset key={region}>
            <legend>Region {region}</legend>
            <Field label={`Key file for ${region}`}>{(id) => <input id={id} type="file" accept=".pfx" ref={(el) => {
                  files.current[region] = el;
                }} />}</Field>
            <Field label={`Password for ${region}`}>
              {(id) => <input id={id} type="password" autocomplete="off" value={passwords[region] ?? ''} onInput={(e) => setPasswords({ ...passwords, [region]: e.currentTarget.value })} />}
            </Field>
          </fieldset>
        ))}
        <button type="submit" class="danger" disabled={action.busy || !ctx.can('tenant.lock')}>
          {action.busy ? 'Locking…' : 'Lock every region'}
        </button>
      </form>
      <Refusal error={action.error} />
      <Done text={action.done} />
    </Section>
  );
}

export function Lock({ ctx }: { ctx: TenantContext }) {
  const [confirm, setConfirm] = useState('');
  const [password, setPassword] = useState('');
  const [proof, setProof] = useState<'pfx' | 'signature'>('pfx');
  const [challenge, setChallenge] = useState<Challenge | null>(null);
  const file = useRef<HTMLInputElement>(null);
  const signatureFile = useRef<HTMLInputElement>(null);
  const base = `/v1/tenants/${enc(ctx.tenant.id)}`;
  const getChallenge = useAction(async () => {
    const c = await call<Challenge>('POST', `${base}/challenges`, { operation: 'lock', region: ctx.region });
    setChallenge(c);
    // Exactly the bytes to sign (no newline), as `openssl dgst -sha256 -sign key.pem -out lock.sig challenge.txt` wants.
    download(`lock-challenge-${ctx.tenant.id}-${ctx.region}.txt`, c.challenge, 'text/plain');
    return `Challenge downloaded. Sign it with the active key (RSASSA-PKCS1-v1_5, SHA-256) before ${when(c.expiresAt)}, then choose the signature file below.`;
  });
  const live = ctx.environments.filter((e) => e.state !== 'Deleted').length;
  const onTenantKey = ctx.environments.filter((e) => e.protection === 'tenant' && e.state !== 'Deleted').length;
  const signed = async (): Promise<{ challenge: string; signature: Uint8Array }> => {
    if (proof === 'signature') {
      if (!challenge) throw new CmkError('INVALID_ARGUMENT', 'Download the challenge first, and sign that one.');
      const picked = await readPicked(signatureFile.current);
      if (!picked) throw new CmkError('INVALID_ARGUMENT', "Choose the signature file your HSM made over the challenge.");
      return { challenge: challenge.challenge, signature: picked.bytes };
    }
    const picked = await readPicked(file.current);
    if (!picked) throw new CmkError('INVALID_ARGUMENT', "Choose the active key's .pfx.");
    if (!picked.name.toLowerCase().endsWith('.pfx')) throw new CmkError('INVALID_KEY_FILE', "With a .pfx, the lock proves possession by signing a challenge in this page; for a key in an HSM, choose \"A signature from your HSM\".");
    const { challenge: fresh } = await call<Challenge>('POST', `${base}/challenges`, { operation: 'lock', region: ctx.region });
    const signature = await signChallengeWithPfx(picked.bytes, password, fresh);
    setPassword('');
    return { challenge: fresh, signature };
  };
  const action = useAction(async () => {
    const { challenge, signature } = await signed();
    const answer = await call<LockResult | { pendingLock: Parameters<typeof pendingText>[0] }>('POST', `${base}/lock`, { region: ctx.region, confirm, challenge, signature: toBase64(signature) });
    ctx.refresh();
    if ('pendingLock' in answer) return pendingText(answer.pendingLock);
    const r = answer;
    return `The tenant is locked in ${ctx.region}: ${r.sealed.length + r.lockedByDecisionOnly.length} environments are offline (${r.sealed.length} sealed) and will be deleted on ${when(r.deleteAt)} unless unlocked. Re-activate the key; unlocking is possible from ${when(r.unlockAllowedAt)}.`;
  });
  // The dry run needs no proof (the service says what the real lock needs): neither the key file nor its password is read.
  const preview = usePreview(async () => call<DryRunView>('POST', `${base}/lock`, { region: ctx.region, confirm, dryRun: true }));
  useRenderAt(ctx.key.lockAllowedAt);
  const embargo = !isPast(ctx.key.lockAllowedAt);
  const locked = ctx.key.activeKey?.state === 'Locked';
  const why = !ctx.can('tenant.lock')
    ? "Only the tenant's global and service administrators can lock it."
    : locked
      ? 'This region is already locked.'
      : !ctx.key.activeKey
        ? 'There is no tenant key to lock.'
        : embargo
          ? `A lock becomes possible on ${when(ctx.key.lockAllowedAt)} (${relative(ctx.key.lockAllowedAt)}): the embargo after a key change (R6).`
          : null;
  return (
    <>
      <h1>Lock the tenant</h1>
      <LockApproval ctx={ctx} />
      <Section title={`Lock in ${ctx.region}`}>
        <p class="warning">
          Locking takes every environment of the tenant in {ctx.region} offline at once ({live} here): the {onTenantKey} on the tenant key are sealed
          cryptographically, the others are locked by decision. Nobody, the provider included, can reach them; backups cannot be restored. Each one is
          deleted, with its backups, 28 days later unless you re-activate this same key and unlock it. Use it only when the key or the tenant is
          compromised.
        </p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void action.go();
          }}
        >
          <TenantName name={ctx.tenant.name} value={confirm} onInput={setConfirm} />
          <fieldset>
            <legend>Proof that you hold the active key</legend>
            <label>
              <input type="radio" name="proof" checked={proof === 'pfx'} onChange={() => setProof('pfx')} /> The key's .pfx, signed in this page
            </label>
            <label>
              <input type="radio" name="proof" checked={proof === 'signature'} onChange={() => setProof('signature')} /> A signature from your HSM
            </label>
          </fieldset>
          {proof === 'pfx' ? (
            <>
              <Field label="Key file" hint="The active key's .pfx: it signs a challenge in this page and is never sent.">
                {(id) => <input id={id} type="file" accept=".pfx" ref={file} required aria-describedby={`${id}-hint`} />}
              </Field>
              <Field label="Password">{(id) => <input id={id} type="password" autocomplete="off" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />}</Field>
            </>
          ) : (
            <>
              <p>
                <button type="button" disabled={getChallenge.busy || why !== null} onClick={() => void getChallenge.go()}>
                  Download challenge
                </button>
              </p>
              <Refusal error={getChallenge.error} />
              <Done text={getChallenge.done} />
              <Field label="Signature file" hint="The HSM's RSASSA-PKCS1-v1_5 SHA-256 signature over the downloaded challenge, as raw bytes (what openssl dgst -sign writes).">
                {(id) => <input id={id} type="file" ref={signatureFile} required aria-describedby={`${id}-hint`} />}
              </Field>
            </>
          )}
          <button type="submit" class="danger" disabled={action.busy || why !== null}>
            {action.busy ? 'Locking…' : 'Lock tenant'}
          </button>
          <button type="button" class="secondary" disabled={preview.busy || !ctx.can('tenant.lock')} onClick={() => void preview.go()}>
            Preview lock
          </button>
          {why ? <p class="why">{why}</p> : null}
        </form>
        <Refusal error={action.error} />
        <Done text={action.done} />
        <PreviewPanel
          preview={preview}
          label="Preview of the lock"
          proofNeeds={`The real lock also needs proof that you hold the active key${ctx.key.activeKey ? ` “${ctx.key.activeKey.name}”` : ''}: its .pfx signed in this page, or a signature from your HSM. The preview reads neither.`}
        />
      </Section>
      {ctx.tenant.regions.length > 1 ? <LockEveryRegion ctx={ctx} regions={ctx.tenant.regions.map((r) => r.region)} /> : null}
    </>
  );
}
