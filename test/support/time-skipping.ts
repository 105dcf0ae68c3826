/**
 * The tenant workflow on the time-skipping test server with the real activities over local parts (vault, encrypted
 * databases, outbox): a harness shared by the workflow test files. Call `timeSkippingHarness()` at the top of a test
 * file; it starts the server before the file's tests and stops it after them.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { LockPossession } from '../../workflows/messages';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporal } from '@temporalio/proto';
import { Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { workflowBundleOptions } from '../../worker/workflow-bundle';
import { ControlPlane } from '../../client/library';
import { createActivities, type ActivityDependencies } from '../../activities';
import { temporalTestServerPath } from '../../stack/tools';
import { registerSearchAttributes } from '../../stack/search-attributes';
import { tenantWorkflowId } from '../../workflows/messages';
import type { Actor } from '../../domain/access';
import type { KeySource } from '../../domain/model';
import { DEFAULT_POLICY } from '../../domain/policy';
import type { PossessionProof } from '../../domain/rules';
import { localParts } from './parts';
import { signChallenge, testDataConverter, testAuditSink, testRequestSigner, testRequestTrust, TEST_CHALLENGES } from './codec';

const { EventType } = temporal.api.enums.v1;

export interface StagedTestKey {
  vaultKey: { name: string; version: string };
  thumbprint: string;
}

export interface TenantContext {
  plane: ControlPlane;
  parts: ReturnType<typeof localParts>;
  tenant: string;
  /** Imports a key (a new one unless given) into the vault, disabled, as the API service stages it. */
  stage: (key?: KeyObject) => Promise<StagedTestKey>;
  /**
   * What the API service passes on with a lock: the challenge of exactly this proof's claims, signed (as the CLI
   * signs it) with the private key of the staged key the proof names (any other key when it names none).
   */
  possession: (proof: PossessionProof) => Promise<LockPossession>;
}


export const ALICE: Actor = { kind: 'user', email: 'alice@example.com' };
export const BOB: Actor = { kind: 'user', email: 'bob@example.com' };
export const OPERATOR_ACTOR: Actor = { kind: 'operator' };
export const HOUR = 3_600_000;

/** A key change request as the API service sends it. */
export const keyChange = (actor: Actor, staged: StagedTestKey, source: KeySource = 'generated') => ({
  actor,
  policy: DEFAULT_POLICY,
  region: 'emea',
  name: 'contoso-2026',
  source,
  staged,
});

/**
 * The tenant the lock tests start from: prod (system administrator sam) on a new tenant key, dev on the provider key,
 * both in region emea. The key's private half is returned for the possession proof.
 */
export async function tenantWithProdOnItsKey(ctx: TenantContext): Promise<{ privateKey: KeyObject; staged: StagedTestKey }> {
  const { plane, tenant, stage } = ctx;
  const privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  for (const [env, systemAdmin] of [['prod', 'sam@example.com'], ['dev', null]] as const) {
    await plane.createEnvironment(tenant, { actor: OPERATOR_ACTOR, policy: DEFAULT_POLICY, env, region: 'emea', systemAdmin });
  }
  const staged = await stage(privateKey);
  await plane.changeKey(tenant, keyChange(ALICE, staged));
  await plane.environmentOperation(tenant, { actor: ALICE, policy: DEFAULT_POLICY, env: 'prod', operation: 'apply', acceptRisk: true });
  return { privateKey, staged };
}

export function timeSkippingHarness() {
  let env: TestWorkflowEnvironment | undefined;
  let bundle: WorkflowBundleWithSourceMap | undefined;
  let counter = 0;

  beforeAll(async () => {
    // Encrypted payloads, as in production: the workflows see them only through the codec.
    env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: temporalTestServerPath() } }, client: { dataConverter: testDataConverter() } });
    await registerSearchAttributes(env.connection, 'default');
    bundle = await bundleWorkflowCode(workflowBundleOptions());
  });

  afterAll(async () => {
    await env?.teardown();
  });

  const harness = {
    get env(): TestWorkflowEnvironment {
      if (!env) throw new Error('The time-skipping server is not started yet (use the harness inside tests).');
      return env;
    },
    /** Signs as the API service does, on the test server's clock (which time skipping moves ahead). */
    get signer() {
      return testRequestSigner(() => harness.env.currentTimeMs());
    },
    get bundle(): WorkflowBundleWithSourceMap {
      if (!bundle) throw new Error('The workflow bundle is not built yet.');
      return bundle;
    },

    /**
     * A fresh tenant (admins alice: global, bob: service; home region emea) on its own task queue and worker.
     * `dependencies` may replace parts of the activities' dependencies (e.g. a failing mailer).
     */
    async withTenant(test: (ctx: TenantContext) => Promise<void>, dependencies: (parts: ReturnType<typeof localParts>) => Partial<ActivityDependencies> = () => ({})) {
      const parts = localParts();
      const taskQueue = `tenant-wf-${process.pid}-${++counter}`;
      const worker = await Worker.create({
        connection: harness.env.nativeConnection,
        taskQueue,
        workflowBundle: harness.bundle,
        dataConverter: testDataConverter(),
        activities: createActivities({ ...parts, ...testAuditSink(parts.config.dataDir), ...testRequestTrust(), challenges: TEST_CHALLENGES, ...dependencies(parts) }),
      });
      const plane = new ControlPlane(harness.env.client, taskQueue, harness.signer);
      const tenant = `contoso-${process.pid % 1000}-${counter}`;
      const privateKeys = new Map<string, KeyObject>();
      const stage = async (privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey) => {
        const key = await parts.vault.importKey(`tenant-${tenant}-emea`, privateKey.export({ type: 'pkcs8', format: 'der' }), { purpose: 'tenant', enabled: false });
        privateKeys.set(key.thumbprint, privateKey);
        return { vaultKey: { name: key.name, version: key.version }, thumbprint: key.thumbprint };
      };
      const possession = async (proof: PossessionProof): Promise<LockPossession> => {
        const challenge = await TEST_CHALLENGES.seal({ id: proof.challengeId, tenant: proof.tenant, region: proof.region, user: proof.user, operation: proof.operation, expiresAt: proof.expiresAt });
        const key = (proof.verifiedThumbprint && privateKeys.get(proof.verifiedThumbprint)) || generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
        return { challenge, signature: signChallenge(challenge, key) };
      };
      // Everything, tenant creation included, runs while the worker polls: a query needs a worker to answer it.
      await worker.runUntil(async () => {
        await plane.createTenant({ actor: OPERATOR_ACTOR, tenant, displayName: 'Contoso Ltd', homeRegion: 'emea', admins: [{ email: 'alice@example.com', role: 'global' }, { email: 'bob@example.com', role: 'service' }] });
        try {
          await test({ plane, parts, tenant, stage, possession });
        } finally {
          // A tenant left running would keep timers that fire (with no worker) while a later test skips time.
          await harness.terminateWhenIdle(tenantWorkflowId(tenant));
        }
      });
    },

    /**
     * Waits until no workflow task or activity of the workflow is scheduled or running (about ten seconds at most);
     * says whether it got there. A query answers from the last completed workflow task, so work that task scheduled
     * (e.g. the retirement of a key after a re-protection) may still be in flight when the query shows its cause.
     */
    async whenIdle(workflowId: string): Promise<boolean> {
      const handle = harness.env.client.workflow.getHandle(workflowId);
      const busy = new Set([EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]);
      for (let i = 0; i < 200; i++) {
        const { raw } = await handle.describe();
        const events = (await handle.fetchHistory()).events ?? [];
        const last = events.at(-1)?.eventType;
        if ((raw.pendingActivities ?? []).length === 0 && last !== undefined && last !== null && !busy.has(last)) return true;
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    },

    /**
     * Terminates a workflow once no activity of it is in flight: the time-skipping server stops skipping time for
     * good when a workflow is terminated under a running activity (e.g. the audit record after a tenant's creation).
     */
    async terminateWhenIdle(workflowId: string): Promise<void> {
      await harness.whenIdle(workflowId);
      await harness.env.client.workflow.getHandle(workflowId).terminate('test finished');
    },

    /** Updates accepted into the tenant's history: a refusal must not add one. */
    async acceptedUpdates(tenant: string): Promise<number> {
      const history = await harness.env.client.workflow.getHandle(tenantWorkflowId(tenant)).fetchHistory();
      return (history.events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length;
    },
  };
  return harness;
}
