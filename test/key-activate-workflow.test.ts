/**
 * `key upload --no-activate` and `key activate` in the tenant workflow (issue 19: the reference document's import,
 * then activate), on the time-skipping server over the real local parts: an Available key protects nothing and
 * waits in the vault, disabled; the key change rules (R5, R6, R11) apply at its activation, and R5 and R6 count from
 * there. Every refusal leaves no trace in history.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import type { Actor } from '../domain/access';
import { DEFAULT_POLICY } from '../domain/policy';
import { ALICE, BOB, HOUR, OPERATOR_ACTOR, keyChange, tenantWithProdOnItsKey, timeSkippingHarness, type StagedTestKey } from './support/time-skipping';
import { tenantWorkflowId } from '../workflows/messages';

const harness = timeSkippingHarness();
const SAM: Actor = { kind: 'user', email: 'sam@example.com' };

test('an Available key protects nothing until activated; R5 and R6 count from the activation; R11 and the lock spare it', async () => {
  await harness.withTenant(async (ctx) => {
    const { plane, parts, tenant, stage } = ctx;
    const { staged: first } = await tenantWithProdOnItsKey(ctx);
    const add = (staged: StagedTestKey, actor: Actor = ALICE) => plane.addKey(tenant, { ...keyChange(actor, staged, 'pfx'), name: `key-${staged.thumbprint.slice(0, 6)}` });
    const activate = (thumbprint: string, actor: Actor = BOB) => plane.activateKey(tenant, { actor, policy: DEFAULT_POLICY, region: 'emea', thumbprint });
    const region = async () => (await plane.snapshot(tenant))!.regions.emea!;

    // An hour after a key change (R5 refuses another): the upload is accepted, the key Available and disabled.
    await harness.env.sleep(HOUR);
    const secondKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const second = await stage(secondKey);
    const added = await add(second);
    expect(added.key).toMatchObject({ state: 'Available', thumbprint: second.thumbprint, activatedAt: null, activatedBy: null, createdBy: 'alice@example.com' });
    expect((await region()).activeThumbprint).toBe(first.thumbprint);
    expect(await parts.vault.getKey(second.vaultKey)).toMatchObject({ enabled: false });
    expect((await parts.outbox.list(tenant)).filter((m) => m.event === 'key-changed')).toHaveLength(2);

    // Refusals, none of which reaches history.
    const before = await harness.acceptedUpdates(tenant);
    // The same key uploaded again (staged anew; a repeat of the same staged version attaches to the first request).
    await expect(add(await stage(secondKey))).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringMatching(/cmk key activate/) });
    await expect(add(await stage(), SAM)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(activate(second.thumbprint, SAM)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(activate(second.thumbprint, OPERATOR_ACTOR)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(activate('not-a-thumbprint')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(activate('ab'.repeat(32))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(activate(first.thumbprint)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(activate(second.thumbprint)).rejects.toMatchObject({ code: 'KEY_CHANGE_TOO_SOON' });
    expect(await harness.acceptedUpdates(tenant)).toBe(before);

    // Retiring unused keys (after any environment operation) leaves an Available key in the vault.
    await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'rekey' });
    expect(await parts.vault.getKey(second.vaultKey)).toBeDefined();

    await harness.env.sleep(24 * HOUR);
    const activated = await activate(second.thumbprint);
    expect(activated.key).toMatchObject({ thumbprint: second.thumbprint, activatedBy: 'bob@example.com', state: expect.stringMatching(/^(Installing|Active)$/) });
    await harness.whenIdle(tenantWorkflowId(tenant));
    const after = await region();
    const key = after.keys.find((k) => k.thumbprint === second.thumbprint)!;
    expect(key).toMatchObject({ state: 'Active', inVault: true });
    expect(Date.parse(key.activatedAt!) - Date.parse(key.createdAt)).toBeGreaterThanOrEqual(24 * HOUR - 60_000);
    // R5 and R6 count from the activation, not from the upload.
    expect([after.lastKeyChangeAt, after.embargoStartedAt]).toEqual([key.activatedAt, key.activatedAt]);
    expect(after.keys.find((k) => k.thumbprint === first.thumbprint)).toMatchObject({ state: 'Retired' });
    expect((await plane.snapshot(tenant))!.environments.find((e) => e.id === 'prod')).toMatchObject({ protection: 'tenant', keyThumbprint: second.thumbprint });
    const changed = (await parts.outbox.list(tenant)).filter((m) => m.event === 'key-changed');
    // The administrators, and prod's system administrator about prod (issue 19: the environments it re-protects).
    expect(changed.filter((m) => m.body.includes(second.thumbprint)).map((m) => m.to).sort()).toEqual(['alice@example.com', 'bob@example.com', 'sam@example.com']);
    expect(changed.find((m) => m.to === 'sam@example.com' && m.body.includes(second.thumbprint))!.body).toMatch(/Your environment\(s\) concerned: prod\./);

    // A third key, Available: R5 from the activation refuses it for 24 hours.
    const third = await stage();
    await add(third);
    await harness.env.sleep(23 * HOUR);
    await expect(activate(third.thumbprint)).rejects.toMatchObject({ code: 'KEY_CHANGE_TOO_SOON' });

    // R11: after a lock the Available key stays in the vault (it never wrapped a record), but cannot be activated.
    await harness.env.sleep(50 * HOUR);
    const proof = { challengeId: randomUUID(), tenant, region: 'emea', user: 'alice@example.com', operation: 'lock' as const, expiresAt: new Date((await harness.env.currentTimeMs()) + HOUR).toISOString(), verifiedThumbprint: second.thumbprint };
    const locked = await plane.lockTenant(tenant, { actor: ALICE, policy: DEFAULT_POLICY, region: 'emea', confirm: 'Contoso Ltd', proof, possession: await ctx.possession(proof) });
    expect(locked.withdrawnKeys).not.toContain(third.thumbprint);
    expect(await parts.vault.getKey(third.vaultKey)).toBeDefined();
    await expect(activate(third.thumbprint)).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
    // Not at upload: a fourth key is stored Available even now.
    expect((await add(await stage())).key.state).toBe('Available');
    await expect(plane.changeKey(tenant, keyChange(ALICE, await stage()))).rejects.toMatchObject({ code: 'LOCKED_ENVIRONMENTS_EXIST' });
  });
}, 240_000);
