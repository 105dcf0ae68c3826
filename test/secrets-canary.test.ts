/**
 * DESIGN.md §6: no password, PFX byte or private key in any Temporal payload, log or file under the data dir, and no
 * environment row in plaintext there either. Canaries go in through the real CLI; then raw history (no codec) and
 * every byte under the data dir are searched for them in every encoding we can think of.
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startStack, type Stack } from '../harness/stack';
import { onceTimeAllows } from './support/deadline';
import { makeByok, makePfx } from '../harness/keyfiles';
import { parsePfx } from '../keyfiles';

const CANARY_PASSWORD = 'canary-password-3c1e9f57a2';
const CANARY_UPLOAD_PASSWORD = 'canary-upload-pw-77d0b1e4';
const CANARY_ROW = 'canary-row-5b8e0c4d19';
const CANARY_LOCK_PASSWORD = 'canary-lock-pw-e41f6a0c93';
const ALICE = 'alice@fabrikam.example';

let stack: Stack;
const work = mkdtempSync(join(tmpdir(), 'cmk-canary-'));

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s', CMK_LOCK_EMBARGO: '1s', CMK_UNLOCK_DELAY: '1s' });
}, 120_000);
afterAll(async () => stack?.stop());

function encodings(secret: Buffer, label: string): Array<[string, Buffer]> {
  return [
    [`${label} raw`, secret],
    [`${label} hex`, Buffer.from(secret.toString('hex'))],
    [`${label} base64`, Buffer.from(secret.toString('base64'))],
    [`${label} base64url`, Buffer.from(secret.toString('base64url'))],
  ];
}

/** The private key as raw PKCS#8 DER, PEM body, hex, base64, and its JWK private members. */
function keyCanaries(key: KeyObject, label: string): Array<[string, Buffer]> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const pem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const pemLine = pem.split('\n')[5]!; // a line from the middle of the PEM body
  const jwk = key.export({ format: 'jwk' });
  // Search a slice of the DER: long enough to be unique, short enough to catch partial copies.
  const slices = encodings(der.subarray(100, 160), `${label} PKCS#8`);
  const members = (['d', 'p', 'q', 'dp', 'dq', 'qi'] as const).map((m): [string, Buffer] => [`${label} JWK ${m}`, Buffer.from(String(jwk[m]).slice(0, 40))]);
  return [[`${label} PEM line`, Buffer.from(pemLine)], ...slices, ...members];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name)) : d.isFile() ? [join(dir, d.name)] : []));
}

test('canaries reach neither history nor the data dir', async () => {
  const pw = join(work, 'pw.txt');
  writeFileSync(pw, `${CANARY_PASSWORD}\n`);
  const generatedPfx = join(work, 'generated.pfx');
  expect((await stack.cmk(['tenant', 'create', '--tenant', 'fabrikam', '--name', 'Fabrikam', '--admin', `${ALICE}:global`])).code).toBe(0);
  expect((await stack.cmk(['env', 'create', '--tenant', 'fabrikam', '--env', 'prod'])).code).toBe(0);
  expect((await stack.cmk(['env', 'data', '--tenant', 'fabrikam', '--env', 'prod', '--write', CANARY_ROW])).code).toBe(0);
  expect((await stack.cmk(['key', 'generate', '--tenant', 'fabrikam', '--name', 'gen', '--password-file', pw, '--out', generatedPfx], { as: ALICE })).code).toBe(0);

  const { privateKey: uploaded } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const uploadPw = join(work, 'upw.txt');
  writeFileSync(uploadPw, CANARY_UPLOAD_PASSWORD);
  const uploadPfx = join(work, 'upload.pfx');
  writeFileSync(uploadPfx, makePfx(uploaded, CANARY_UPLOAD_PASSWORD));
  const up = await onceTimeAllows('R5 lets the upload in', () => stack.cmk(['key', 'upload', '--tenant', 'fabrikam', '--name', 'up', '--file', uploadPfx, '--password-file', uploadPw], { as: ALICE }));
  expect(up.stderr).toBe('');

  const kekPath = join(work, 'kek.pem');
  const kek = await stack.cmk(['key', 'kek', '--tenant', 'fabrikam', '--out', kekPath, '--json'], { as: ALICE });
  const { privateKey: hsmKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const byokPath = join(work, 'hsm.byok');
  writeFileSync(byokPath, makeByok(readFileSync(kekPath, 'utf8'), kek.json().kid, hsmKey));
  expect((await onceTimeAllows('R5 lets the .byok in', () => stack.cmk(['key', 'upload', '--tenant', 'fabrikam', '--name', 'hsm', '--file', byokPath], { as: ALICE }))).code).toBe(0);

  // The last resort with the active (HSM) key as a .pfx made here: its bytes and password stay on this machine for
  // the lock's signature and travel only to the API service (never a workflow) for the re-activation. The environment
  // is sealed with a backup, then unlocked.
  const lockPw = join(work, 'lock-pw.txt');
  writeFileSync(lockPw, `${CANARY_LOCK_PASSWORD}\n`);
  const lockPfx = join(work, 'lock.pfx');
  writeFileSync(lockPfx, makePfx(hsmKey, CANARY_LOCK_PASSWORD));
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', 'fabrikam', '--env', 'prod'], { as: ALICE })).code).toBe(0);
  expect((await stack.cmk(['env', 'backup', '--tenant', 'fabrikam', '--env', 'prod'], { as: ALICE })).code).toBe(0);
  const locked = await onceTimeAllows('the embargo lets the lock in', () => stack.cmk(['tenant', 'lock', '--tenant', 'fabrikam', '--confirm', 'Fabrikam', '--file', lockPfx, '--password-file', lockPw], { as: ALICE }));
  expect(locked.stderr).toBe('');
  expect((await stack.cmk(['key', 'reactivate', '--tenant', 'fabrikam', '--file', lockPfx, '--password-file', lockPw], { as: ALICE })).code).toBe(0);
  expect((await onceTimeAllows('R15 lets the unlock in', () => stack.cmk(['env', 'unlock', '--tenant', 'fabrikam', '--env', 'prod'], { as: ALICE }))).code).toBe(0);

  const generatedKey = createPrivateKey({ key: parsePfx(readFileSync(generatedPfx), CANARY_PASSWORD).pkcs8Der, format: 'der', type: 'pkcs8' });
  const pfxBytes = readFileSync(uploadPfx);
  const canaries: Array<[string, Buffer]> = [
    ...encodings(Buffer.from(CANARY_PASSWORD), 'generate password'),
    ...encodings(Buffer.from(CANARY_UPLOAD_PASSWORD), 'upload password'),
    ...encodings(Buffer.from(CANARY_ROW), 'environment row'),
    ...encodings(Buffer.from(CANARY_LOCK_PASSWORD), 'lock password'),
    ...encodings(readFileSync(lockPfx).subarray(200, 260), 'lock PFX bytes'),
    ...encodings(pfxBytes.subarray(200, 260), 'uploaded PFX bytes'),
    ...encodings(readFileSync(generatedPfx).subarray(200, 260), 'generated PFX bytes'),
    ...keyCanaries(uploaded, 'uploaded key'),
    ...keyCanaries(hsmKey, 'BYOK key'),
    ...keyCanaries(generatedKey, 'generated key'),
  ];

  // Raw history of every workflow, read without any codec.
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, namespace: 'default' });
  const histories: Buffer[] = [];
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    histories.push(Buffer.from(JSON.stringify(history)));
    for (const event of history.events ?? []) {
      for (const payload of collectPayloads(event)) histories.push(Buffer.from(payload));
    }
  }
  await connection.close();
  expect(histories.length).toBeGreaterThan(1);

  const files = filesUnder(stack.dataDir).filter((f) => statSync(f).size > 0);
  expect(files.some((f) => f.endsWith('.sqlite'))).toBe(true);
  const found: string[] = [];
  for (const [label, needle] of canaries) {
    if (histories.some((h) => h.includes(needle))) found.push(`${label} in history`);
    for (const f of files) if (readFileSync(f).includes(needle)) found.push(`${label} in ${f}`);
  }
  expect(found).toEqual([]);
  // The canaries are real: the row is readable through the API, so its absence on disk means encryption.
  expect((await stack.cmk(['env', 'data', '--tenant', 'fabrikam', '--env', 'prod', '--json'])).json().rows[0].text).toBe(CANARY_ROW);
});

test('raw history read without the codec holds only binary/encrypted payloads and encoded failures', async () => {
  // A refusal (recorded in the audit trail through its workflow) and a read of the trail (an update with a result).
  expect((await stack.cmk(['env', 'apply', '--accept-risk', '--tenant', 'fabrikam', '--env', 'no-such-env'], { as: ALICE })).code).toBe(3);
  expect((await stack.cmk(['audit', 'list', '--tenant', 'fabrikam', '--json'], { as: ALICE })).code).toBe(0);
  const namespace = process.env.TEMPORAL_NAMESPACE || 'default';
  const connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  const client = new Client({ connection, namespace });
  const seen = { payloads: 0, failures: 0, workflows: new Set<string>() };
  const problems: string[] = [];
  for await (const wf of client.workflow.list()) {
    seen.workflows.add(wf.type);
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    for (const event of history.events ?? []) inspect(event, `${wf.workflowId} event ${String(event.eventId)}`);
  }
  await connection.close();

  function inspect(node: unknown, where: string): void {
    if (Array.isArray(node)) return node.forEach((n) => inspect(n, where));
    if (!node || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if ('metadata' in record && 'data' in record) {
      seen.payloads += 1;
      const encoding = Buffer.from((record.metadata as Record<string, Uint8Array>).encoding ?? []).toString();
      if (encoding !== 'binary/encrypted') problems.push(`${where}: a payload encoded ${encoding || '(none)'}`);
      return;
    }
    if ('stackTrace' in record && 'message' in record) {
      seen.failures += 1;
      if (record.message !== 'Encoded failure' || record.stackTrace) problems.push(`${where}: a failure with a readable message: ${String(record.message)}`);
    }
    // The SDK writes patch markers itself, outside any codec: their details are the patch id and a flag.
    if (record.markerName === 'core_patch') {
      const id = Buffer.from(((record.details as Record<string, { payloads: Array<{ data: Uint8Array }> }>)['patch-data']?.payloads[0]?.data) ?? []).toString();
      if (!/^\{"id":"[a-z-]+","deprecated":(true|false)\}$/.test(id)) problems.push(`${where}: an unexpected patch marker ${id}`);
      return;
    }
    // So are local activity markers' `data` (sequence, attempt, activity id and type, times); their `result` is the
    // codec's. The one local activity is `requestTrust` (public keys and durations, domain/signed.ts).
    if (record.markerName === 'core_local_activity') {
      const details = record.details as Record<string, { payloads: Array<{ data: Uint8Array }> }>;
      const meta = JSON.parse(Buffer.from(details.data?.payloads[0]?.data ?? []).toString() || '{}') as Record<string, unknown>;
      const known = ['seq', 'attempt', 'activity_id', 'activity_type', 'complete_time', 'backoff', 'original_schedule_time'];
      if (meta.activity_type !== 'requestTrust' || Object.keys(meta).some((k) => !known.includes(k))) problems.push(`${where}: an unexpected local activity marker ${JSON.stringify(meta)}`);
      return inspect(details.result, where);
    }
    for (const [key, value] of Object.entries(record)) {
      // Search attributes are not payloads a codec may touch: they hold only ids, states, counts and thumbprints.
      if (key === 'searchAttributes') continue;
      inspect(value, where);
    }
  }
  expect(problems).toEqual([]);
  // The mail retry Schedule's runs are read too when one has started (it runs every minute, so not always yet).
  expect([...seen.workflows].filter((w) => w !== 'mailRetryWorkflow').sort()).toEqual(['auditTrailWorkflow', 'tenantWorkflow']);
  expect(seen.payloads).toBeGreaterThan(50);
});

/** Every payload's data bytes in an event, decoded from the base64 the JSON history holds. */
function collectPayloads(node: unknown): Buffer[] {
  if (Array.isArray(node)) return node.flatMap(collectPayloads);
  if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    const own = record.data instanceof Uint8Array ? [Buffer.from(record.data)] : [];
    return [...own, ...Object.values(record).flatMap(collectPayloads)];
  }
  return [];
}
