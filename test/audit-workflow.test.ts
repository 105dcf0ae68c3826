/**
 * The audit workflow, the trail's single writer, with the real activities over a real trail: a record the trail
 * refuses for its content (a producer that skipped the redaction) becomes a
 * placeholder and an alarm, the records around it are written, and reads answer; the head it keeps outside the data
 * dir makes a trail deleted or rolled back behind its back fail verify.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { ControlPlane } from '../client/library';
import { createActivities } from '../activities';
import { AuditTrail, type AuditEntry } from '../audit/trail';
import { AUDIT_WORKFLOW_ID } from '../workflows/messages';
import { AUDIT_SIGNALS_PER_RUN } from '../workflows/audit';
import type { WorkflowHandle } from '@temporalio/client';
import { localParts } from './support/parts';
import { TEST_AUDIT_KEY, testDataConverter, testRequestTrust } from './support/codec';
import { timeSkippingHarness } from './support/time-skipping';

const harness = timeSkippingHarness();
let counter = 0;

const entry = (n: number, over: Partial<AuditEntry> = {}): AuditEntry => ({
  id: `test/${process.pid}/${n}`,
  at: '2026-01-01T00:00:00Z',
  actor: 'alice@example.com',
  action: 'key.generate',
  outcome: 'completed',
  tenant: 'contoso',
  ...over,
});

/** A worker over a trail in `auditDir`; `reopen` gives it a new trail handle, as a restarted worker opens the files. */
async function withWriter(auditDir: string, run: (plane: ControlPlane, reopen: () => void) => Promise<void>): Promise<void> {
  const parts = localParts();
  const taskQueue = `audit-wf-${process.pid}-${++counter}`;
  const plane = new ControlPlane(harness.env.client, taskQueue, harness.signer);
  const deps = { ...parts, ...testRequestTrust(), auditTrail: new AuditTrail(auditDir, TEST_AUDIT_KEY), auditSink: { report: (entries: AuditEntry[]) => plane.recordAudit(entries) } };
  const worker = await Worker.create({ connection: harness.env.nativeConnection, taskQueue, workflowBundle: harness.bundle, dataConverter: testDataConverter(), activities: createActivities(deps) });
  await worker.runUntil(() => run(plane, () => (deps.auditTrail = new AuditTrail(auditDir, TEST_AUDIT_KEY))));
}

afterEach(async () => {
  await harness.env.client.workflow
    .getHandle(AUDIT_WORKFLOW_ID)
    .terminate('next test')
    .catch(() => undefined);
});

test('a record the trail refuses becomes a placeholder and an alarm; the others are written and reads answer', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'cmk-audit-wf-')), 'audit');
  await withWriter(dir, async (plane) => {
    // Unredacted (signed, as the API service signs), as a producer that skipped the redaction would send them.
    await plane.recordAudit([entry(1), entry(2, { message: 'here: -----BEGIN PRIVATE KEY----- MIIE' }), entry(3), entry(4, { details: { password: 'x' } }), entry(5)]);
    const read = await plane.readAudit({ tenant: 'contoso', afterSeq: null, limit: 100, verify: false });
    expect(read.records.map((r) => [r.id, r.action])).toEqual([
      [`test/${process.pid}/1`, 'key.generate'],
      [`test/${process.pid}/2`, 'audit.unrecordable'],
      [`test/${process.pid}/3`, 'key.generate'],
      [`test/${process.pid}/4`, 'audit.unrecordable'],
      [`test/${process.pid}/5`, 'key.generate'],
    ]);
    expect(read.records[1]).toMatchObject({ outcome: 'completed', tenant: 'contoso', actor: 'alice@example.com', code: 'AUDIT_RECORD_REFUSED', details: { action: 'key.generate' } });
    expect(JSON.stringify(read.records)).not.toMatch(/-----BEGIN|MIIE/);
    const { verification } = await plane.readAudit({ tenant: null, afterSeq: null, limit: 1, verify: true });
    expect(verification).toMatchObject({ ok: true, records: 5, placeholders: 2 });
  });
});

test('a trail deleted, or put back from an older copy, behind the writer fails verify; the alarm stays after later appends', async () => {
  const base = mkdtempSync(join(tmpdir(), 'cmk-audit-wf-'));
  const dir = join(base, 'audit');
  const older = join(base, 'older');
  await withWriter(dir, async (plane, reopen) => {
    const verify = async () => (await plane.readAudit({ tenant: null, afterSeq: null, limit: 1, verify: true })).verification!;
    await plane.recordAudit([entry(1), entry(2), entry(3)]);
    expect(await verify()).toMatchObject({ ok: true, records: 3 });
    cpSync(dir, older, { recursive: true });
    await plane.recordAudit([entry(4), entry(5)]);
    expect(await verify()).toMatchObject({ ok: true, records: 5 });

    // The older copy put back; the writer restarts and opens it.
    rmSync(dir, { recursive: true });
    cpSync(older, dir, { recursive: true });
    reopen();
    const v = await verify();
    expect(v.ok).toBe(false);
    expect(v.problems[0]?.problem).toMatch(/deleted or rolled back: it ends at seq 3, .*records 4\.\.5 missing/);
    // Later records are written (nothing is lost), and the alarm stays.
    await plane.recordAudit([entry(6)]);
    const after = await verify();
    expect([after.ok, after.records]).toEqual([false, 4]);
    expect(after.problems.map((p) => p.problem).join(' ')).toMatch(/deleted or rolled back/);

    // Deleted outright.
    rmSync(dir, { recursive: true });
    reopen();
    const gone = await verify();
    expect(gone.ok).toBe(false);
    expect(gone.problems.map((p) => p.problem).join(' ')).toMatch(/deleted or rolled back: it holds no records, .*records 1\.\.4 missing/);
  });
}, 300_000);

test('the writer continues as new after a bounded number of record signals, so a replay checks few signatures; nothing is lost on the way', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'cmk-audit-wf-')), 'audit');
  const count = AUDIT_SIGNALS_PER_RUN + 30;
  await withWriter(dir, async (plane) => {
    // One signal each, as tenant workflows and the API service send them, ten at a time.
    for (let n = 1; n <= count; n += 10) await Promise.all(Array.from({ length: Math.min(10, count - n + 1) }, (_, i) => plane.recordAudit([entry(n + i)])));
    const ids = (await plane.readAudit({ tenant: 'contoso', afterSeq: null, limit: 500, verify: false })).records.map((r) => r.id);
    expect(ids.sort()).toEqual(Array.from({ length: count }, (_, i) => `test/${process.pid}/${i + 1}`).sort());
    expect((await plane.readAudit({ tenant: null, afterSeq: null, limit: 1, verify: true })).verification).toMatchObject({ ok: true, records: count });
  });
  // The signals each run of the chain received, oldest first: split, never all in one run; the last replays on today's code.
  const signalsPerRun: number[] = [];
  for (let runId: string | undefined = undefined; ; ) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await harness.env.client.workflow.getHandle(AUDIT_WORKFLOW_ID, runId).fetchHistory();
    signalsPerRun.unshift(history.events?.filter((e) => e.workflowExecutionSignaledEventAttributes).length ?? 0);
    if (runId === undefined) await Worker.runReplayHistory({ workflowBundle: harness.bundle, dataConverter: testDataConverter() }, history, AUDIT_WORKFLOW_ID);
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) break;
  }
  expect(signalsPerRun.reduce((n, signals) => n + signals, 0)).toBe(count);
  expect(signalsPerRun.length).toBeGreaterThanOrEqual(2);
  expect(signalsPerRun.at(-1)).toBeLessThan(AUDIT_SIGNALS_PER_RUN);
}, 300_000);
