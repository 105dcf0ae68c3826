/**
 * Issue 14's first liveness risk: the audit workflow continues as new only once its handlers have finished, and a
 * read (an update) waits for the records received before it, which only the main loop writes. A read that arrives
 * with records while the loop waits to continue as new must still answer: the loop writes those records first.
 *
 * On the Temporal dev server, with continue-as-new suggested after a few dozen events, driven as the API service
 * drives it: signed records by signal-with-start, signed reads by update-with-start. A slow read (its activity held
 * until the test lets it go, as a verify over a long trail would be) keeps a handler running while the suggestion
 * comes; then a record and another read arrive.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/workflow-bundle';
import { temporal } from '@temporalio/proto';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import type { AuditReadRequest, AuditReadResult } from '../activities/audit';
import { AuditTrail, type AuditEntry } from '../audit/trail';
import { temporalCliPath } from '../stack/tools';
import { AUDIT_WORKFLOW_ID } from '../workflows/messages';
import { until, within } from './support/deadline';
import { localParts } from './support/parts';
import { TEST_AUDIT_KEY, testDataConverter, testRequestSigner, testRequestTrust } from './support/codec';

const { EventType } = temporal.api.enums.v1;

/** Events after which the server suggests continue-as-new: a fresh run's first task stays well below it. */
const SUGGEST_AFTER_EVENTS = 30;

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalCliPath() }, extraArgs: ['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER_EVENTS}`] },
    client: { dataConverter: testDataConverter() },
  });
}, 120_000);
afterAll(async () => {
  await env?.client.workflow
    .getHandle(AUDIT_WORKFLOW_ID)
    .terminate('test finished')
    .catch(() => undefined);
  await env?.teardown();
});

const entry = (n: number): AuditEntry => ({
  id: `liveness/${process.pid}/${n}`,
  at: '2026-01-01T00:00:00Z',
  actor: 'alice@example.com',
  action: 'key.generate',
  outcome: 'completed',
  tenant: 'contoso',
});

test('a read that arrives with records while the audit workflow waits to continue as new answers; the run continues as new with every record', async () => {
  const parts = localParts();
  const taskQueue = `audit-liveness-${process.pid}`;
  const plane = new ControlPlane(env.client, taskQueue, testRequestSigner());
  const auditTrail = new AuditTrail(join(mkdtempSync(join(tmpdir(), 'cmk-audit-live-')), 'audit'), TEST_AUDIT_KEY);
  const activities = createActivities({ ...parts, ...testRequestTrust(), auditTrail, auditSink: { report: (entries: AuditEntry[]) => plane.recordAudit(entries) } });
  // The first read's activity is held: that read is a handler still running when continue-as-new is suggested.
  let letGo = (): void => undefined;
  const held = new Promise<void>((resolve) => (letGo = resolve));
  let holding = (): void => undefined;
  const isHeld = new Promise<void>((resolve) => (holding = resolve));
  const read = activities.readAuditTrail;
  let reads = 0;
  activities.readAuditTrail = async (request: AuditReadRequest): Promise<AuditReadResult> => {
    if (++reads === 1) {
      holding();
      await held;
    }
    return read(request);
  };
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await bundleWorkflowCode(workflowBundleOptions()),
    dataConverter: testDataConverter(),
    activities,
  });
  const handle = env.client.workflow.getHandle(AUDIT_WORKFLOW_ID);
  const all: AuditReadRequest = { tenant: null, afterSeq: null, limit: 500, verify: false };

  await worker.runUntil(async () => {
    let n = 0;
    await plane.recordAudit([entry(++n), entry(++n)]);
    const firstRun = (await handle.describe()).runId;
    const slowRead = plane.readAudit(all);
    await within('the first read reaches its activity', isHeld);

    // Records, one by one, until the server suggests continue-as-new and the workflow has done what it can: it now
    // waits for the slow read to finish before continuing as new.
    await until('continue-as-new is suggested', async () => {
      await plane.recordAudit([entry(++n)]);
      await until('the workflow is idle but for the slow read', async () => {
        const { raw } = await handle.describe();
        const last = (await handle.fetchHistory()).events?.at(-1)?.eventType;
        return (raw.pendingActivities ?? []).length === 1 && last === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED ? true : undefined;
      });
      const events = (await handle.fetchHistory()).events ?? [];
      return events.some((e) => e.workflowTaskStartedEventAttributes?.suggestContinueAsNew) ? true : undefined;
    });
    expect((await handle.describe()).runId).toBe(firstRun);

    // A record, then a read that must see it: accepted into the history before the slow read is let go.
    await plane.recordAudit([entry(++n)]);
    const lateRead = plane.readAudit(all);
    await until('the late read is accepted', async () => {
      const events = (await env.client.workflow.getHandle(AUDIT_WORKFLOW_ID, firstRun).fetchHistory()).events ?? [];
      return events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length === 2 ? true : undefined;
    });
    letGo();

    const sent = Array.from({ length: n }, (_, i) => entry(i + 1).id);
    await within('the slow read answers', slowRead);
    const late = await within('the late read answers (it waits for the record sent before it)', lateRead);
    expect(late.records.map((r) => r.id)).toEqual(sent);

    // Continued as new: a new run, with nothing lost, that answers reads and writes records.
    await until('the workflow continues as new', async () => ((await handle.describe()).runId !== firstRun ? true : undefined));
    expect((await env.client.workflow.getHandle(AUDIT_WORKFLOW_ID, firstRun).describe()).status.name).toBe('CONTINUED_AS_NEW');
    await plane.recordAudit([entry(++n)]);
    const after = await within('a read on the new run answers', plane.readAudit(all));
    expect(after.records.map((r) => r.id)).toEqual([...sent, entry(n).id]);
    const { verification } = await within('a verify on the new run answers', plane.readAudit({ ...all, limit: 1, verify: true }));
    expect(verification).toMatchObject({ ok: true, records: n });
  });
}, 90_000);
