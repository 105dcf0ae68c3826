/**
 * Tests encrypt their payloads as the product does, with the test-only codec key kept beside the recorded histories
 * (test/fixtures/codec-key.test-only.json), and keep a real audit trail: the records go straight to an AuditTrail in
 * the test's data dir (in the product they travel through the audit workflow, its single writer).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFor, loadCodecKeyRing, type CodecKeyRing } from '../../codec';
import { AuditTrail } from '../../audit/trail';
import type { ActivityDependencies } from '../../activities';

export const TEST_AUDIT_KEY = Buffer.alloc(32, 7);

export function testCodecKeyRing(): CodecKeyRing {
  const fixture = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'codec-key.test-only.json'), 'utf8')) as { keys: string };
  return loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: fixture.keys });
}

export function testDataConverter(): DataConverter {
  return dataConverterFor(testCodecKeyRing());
}

export function testAuditSink(dataDir: string): Pick<ActivityDependencies, 'auditSink' | 'auditTrail'> {
  const auditTrail = new AuditTrail(join(dataDir, 'audit'), TEST_AUDIT_KEY);
  return { auditTrail, auditSink: { report: async (entries) => void auditTrail.append(entries) } };
}
