/**
 * Requests that arrive while a tenant's workflow continues as new (issue 20's set-up at scale found it): the new run
 * loads its worker's trust (a local activity) before it registers its handlers, and the SDK rejects an update that
 * finds no handler at the end of the activation it arrived in ("No registered handler for update"). Nothing was
 * applied then, so the client library sends it again; no request may fail for it.
 *
 * On the Temporal dev server with continue-as-new suggested after a few dozen events, environments are created eight
 * at a time, as the API service would under load, across several continue-as-new boundaries.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import { temporalCliPath } from '../stack/tools';
import { registerSearchAttributes } from '../stack/search-attributes';
import { DEFAULT_POLICY } from '../domain/policy';
import { defaultPayloadConverter } from '@temporalio/common';
import { tenantWorkflowId, type TenantWorkflowInput } from '../workflows/messages';
import { localParts } from './support/parts';
import { TEST_AUDIT_KEY, testDataConverter, testRequestSigner, testRequestTrust } from './support/codec';
import { AuditTrail } from '../audit/trail';
import { join } from 'node:path';

/** Events after which the server suggests continue-as-new. */
const SUGGEST_AFTER_EVENTS = 40;

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalCliPath() }, extraArgs: ['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER_EVENTS}`] },
    client: { dataConverter: testDataConverter() },
  });
  await registerSearchAttributes(env.connection, 'default');
}, 120_000);
afterAll(async () => {
  await env?.teardown();
});

test('environments created eight at a time across continue-as-new boundaries: every request succeeds, none twice', async () => {
  const parts = localParts();
  const taskQueue = `can-updates-${process.pid}`;
  const plane = new ControlPlane(env.client, taskQueue, testRequestSigner());
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('../workflows'),
    dataConverter: testDataConverter(),
    // The product's path: audit records go to the audit workflow, whose appends run here.
    activities: createActivities({ ...parts, ...testRequestTrust(), auditTrail: new AuditTrail(join(parts.config.dataDir, 'audit'), TEST_AUDIT_KEY), auditSink: { report: (entries) => plane.recordAudit(entries) } }),
  });
  await worker.runUntil(async () => {
    const tenant = 'busy';
    await plane.createTenant({ actor: { kind: 'operator' }, tenant, displayName: 'Busy Ltd', homeRegion: 'default', admins: [{ email: 'alice@example.com', role: 'global' }] });
    const firstRun = (await env.client.workflow.getHandle(tenantWorkflowId(tenant)).describe()).runId;
    const failures: string[] = [];
    const ids = Array.from({ length: 96 }, (_, i) => `env-${i}`);
    for (let i = 0; i < ids.length; i += 8) {
      await Promise.all(
        ids.slice(i, i + 8).map((id) =>
          plane.createEnvironment(tenant, { actor: { kind: 'operator' }, policy: DEFAULT_POLICY, env: id, region: 'default', systemAdmin: null }).catch((err: unknown) => {
            const messages: string[] = [];
            for (let cause: unknown = err, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth++) messages.push(cause.message);
            failures.push(`${id}: ${messages.join(' / ')}`);
          }),
        ),
      );
    }
    expect(failures).toEqual([]);
    const snapshot = await plane.snapshot(tenant);
    expect(snapshot?.environments.map((e) => e.id).sort()).toEqual([...ids].sort());
    // The boundaries were crossed: the run that holds them is not the first.
    expect((await env.client.workflow.getHandle(tenantWorkflowId(tenant)).describe()).runId).not.toBe(firstRun);

    // What crossed them: the spent signatures of the requests accepted so far, compact (domain/spent-signatures.ts).
    // Kept whole (128 hex characters and an ISO time, 160 bytes each) they filled the 2 MB payload at 10,000 applies.
    const carriedLedgers: Array<Record<string, unknown>> = [];
    for await (const run of env.client.workflow.list({ query: `WorkflowId = "${tenantWorkflowId(tenant)}"` })) {
      const { events } = await env.client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      for (const event of events ?? []) {
        const payload = event.workflowExecutionContinuedAsNewEventAttributes?.input?.payloads?.[0];
        if (!payload) continue;
        const [decoded] = await testDataConverter().payloadCodecs![0]!.decode([payload]);
        const input = defaultPayloadConverter.fromPayload<TenantWorkflowInput>(decoded!);
        expect(input.carried?.spentSignatures).toBeUndefined();
        carriedLedgers.push(input.carried?.spentRequests ?? {});
      }
    }
    expect(carriedLedgers.length).toBeGreaterThan(0);
    const largest = carriedLedgers.reduce((a, b) => (Object.keys(b).length > Object.keys(a).length ? b : a));
    expect(Object.keys(largest).length).toBeGreaterThan(8);
    for (const [key, seconds] of Object.entries(largest)) {
      expect(key).toMatch(/^[0-9a-f]{24}$/);
      expect(typeof seconds).toBe('number');
    }
    expect(JSON.stringify(largest).length / Object.keys(largest).length).toBeLessThan(40);
  });
}, 300_000);
