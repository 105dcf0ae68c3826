/**
 * Tests encrypt their payloads as the product does, with the test-only codec key kept beside the recorded histories
 * (test/fixtures/codec-key.test-only.json), and keep a real audit trail: the records go straight to an AuditTrail in
 * the test's data dir (in the product they travel through the audit workflow, its single writer).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFor, loadCodecKeyRing, type CodecKeyRing, type CodecOptions } from '../../codec';
import { AuditTrail } from '../../audit/trail';
import { sign, type KeyObject } from 'node:crypto';
import type { ActivityDependencies } from '../../activities';
import { ChallengeIssuer } from '../../api/challenges';
import { RequestSigner, requestTrustFor } from '../../common/request-signing';
import { DEFAULT_POLICY, type Policy } from '../../domain/policy';
import type { RequestTrust } from '../../domain/signed';

export const TEST_AUDIT_KEY = Buffer.alloc(32, 7);
/** The tests' request-signing key (domain/signed.ts): the API service's role is played by each test's ControlPlane. */
export const TEST_REQUEST_SIGNING_SEED = Buffer.alloc(32, 9);

/** The tests' challenge key: the tests play the API service, the workers check a lock's proof with the same key. */
export const TEST_CHALLENGES = new ChallengeIssuer(Buffer.alloc(32, 5));

/** Signs a challenge as `cmk tenant lock` does with the .pfx's private key. */
export function signChallenge(challenge: string, privateKey: KeyObject): string {
  return sign('sha256', Buffer.from(challenge, 'utf8'), privateKey).toString('base64');
}

/** `now`: the clock the workflows see (the time-skipping server runs ahead of real time). */
export function testRequestSigner(now?: () => number | Promise<number>): RequestSigner {
  return new RequestSigner(TEST_REQUEST_SIGNING_SEED, now);
}

/** What the test workers' workflows trust: the tests' signing key and the deployment's policy. */
export function testRequestTrust(policy: Policy = DEFAULT_POLICY): Pick<ActivityDependencies, 'requestTrust'> {
  const trust: RequestTrust = requestTrustFor(testRequestSigner(), policy, {});
  return { requestTrust: trust };
}

export function testCodecKeyRing(): CodecKeyRing {
  const fixture = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'codec-key.test-only.json'), 'utf8')) as { keys: string };
  return loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: fixture.keys });
}

/** `acceptPlaintext`: only to replay the histories recorded before the codec. */
export function testDataConverter(options: CodecOptions = {}): DataConverter {
  return dataConverterFor(testCodecKeyRing(), options);
}

export function testAuditSink(dataDir: string): Pick<ActivityDependencies, 'auditSink' | 'auditTrail'> {
  const auditTrail = new AuditTrail(join(dataDir, 'audit'), TEST_AUDIT_KEY);
  return { auditTrail, auditSink: { report: async (entries) => void auditTrail.append(entries) } };
}
