/**
 * The payload codec (codec/): AES-256-GCM, `binary/encrypted`, the key id and the owning workflow in the metadata and
 * the AAD; keys rotate (old ids still decrypt, new payloads use the newest); a changed byte, an unknown key id or
 * another workflow's payload decodes to the refusal marker (an error only for the UI's endpoint), never a wrong payload.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { addCodecKey, EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, loadCodecKeyRing, PLAINTEXT_REFUSED, UnknownCodecKeyError, WORKFLOW_ID_METADATA, type CodecKeyRing } from '../codec';
import { createCodecEndpoint } from '../api/codec';

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const payload = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);
const valueOf = (decoded: Payload[]) => defaultPayloadConverter.fromPayload(decoded[0]!);
const twoKeys = (): CodecKeyRing => loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${Buffer.alloc(32, 1).toString('base64')},2:${Buffer.alloc(32, 2).toString('base64')}` });
/** A codec whose refusals are collected, and one that throws them (the UI's endpoint). */
function codecs(ring: CodecKeyRing): { codec: EncryptionCodec; strict: EncryptionCodec; warnings: string[] } {
  const warnings: string[] = [];
  return { codec: new EncryptionCodec(ring, { warn: (m) => warnings.push(m) }), strict: new EncryptionCodec(ring, { throwOnUndecodable: true }), warnings };
}
const inWorkflow = (workflowId: string) => ({ type: 'workflow' as const, namespace: 'default', workflowId });

test('payloads are encrypted with the newest key and decrypt to exactly what went in', async () => {
  const secrets = mkdtempSync(join(tmpdir(), 'cmk-codec-'));
  const codec = new EncryptionCodec(loadCodecKeyRing(secrets, {}));
  const original = payload({ tenant: 'contoso', note: 'a sentence that must not be readable in history' });
  const [encrypted] = await codec.encode([original]);
  expect(text(encrypted!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
  expect(text(encrypted!.metadata![KEY_ID_METADATA])).toBe('1');
  expect(Buffer.from(encrypted!.data!).includes(Buffer.from('contoso'))).toBe(false);
  const [decrypted] = await codec.decode([encrypted!]);
  expect(defaultPayloadConverter.fromPayload(decrypted!)).toEqual({ tenant: 'contoso', note: 'a sentence that must not be readable in history' });
  // Two encryptions of the same payload differ (fresh IV each time).
  const [again] = await codec.encode([original]);
  expect(Buffer.from(again!.data!).equals(Buffer.from(encrypted!.data!))).toBe(false);
  // The key file is the services' secret: 0600, in the secrets dir.
  expect(readdirSync(secrets)).toEqual(['codec-key.1']);
  expect(statSync(join(secrets, 'codec-key.1')).mode & 0o777).toBe(0o600);
});

test('rotation: new payloads use the new key, payloads under the old key still decrypt', async () => {
  const secrets = mkdtempSync(join(tmpdir(), 'cmk-codec-'));
  const onlyKey1 = loadCodecKeyRing(secrets, {});
  const before = new EncryptionCodec(onlyKey1);
  const [old] = await before.encode([payload('written before the rotation')]);
  expect(addCodecKey(secrets)).toBe('2');
  const after = new EncryptionCodec(loadCodecKeyRing(secrets, {}));
  const [fresh] = await after.encode([payload('written after')]);
  expect(text(fresh!.metadata![KEY_ID_METADATA])).toBe('2');
  expect(defaultPayloadConverter.fromPayload((await after.decode([old!]))[0]!)).toBe('written before the rotation');
  // A process that has only the old key cannot read the new payloads: refused (a forged id must not stall a tenant
  // either), with a warning naming the key; the UI's endpoint says so as an error. Never garbage.
  const warnings: string[] = [];
  expect(valueOf(await new EncryptionCodec(onlyKey1, { warn: (m) => warnings.push(m) }).decode([fresh!]))).toEqual(PLAINTEXT_REFUSED);
  expect(warnings).toEqual([expect.stringMatching(/codec key "2", which this process does not have/)]);
  await expect(new EncryptionCodec(onlyKey1, { throwOnUndecodable: true }).decode([fresh!])).rejects.toThrow(UnknownCodecKeyError);
});

test('a changed byte, a moved key id, a made-up key id, a truncated payload or bad protobuf inside is refused, with a warning that holds no payload byte', async () => {
  const ring = twoKeys();
  const { codec, strict, warnings } = codecs(ring);
  const [encrypted] = await codec.encode([payload('integrity')]);
  const flipped = Buffer.from(encrypted!.data!);
  flipped[20] = flipped[20]! ^ 1;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', ring.byId.get('2')!, iv);
  cipher.setAAD(Buffer.from(`${ENCRYPTED_ENCODING}:2`));
  const notProtobuf = Buffer.concat([iv, cipher.update(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), cipher.final(), cipher.getAuthTag()]);
  const garbage: Array<[Payload, RegExp]> = [
    [{ ...encrypted!, data: flipped }, /failed authentication/],
    [{ metadata: { ...encrypted!.metadata, [KEY_ID_METADATA]: Buffer.from('1') }, data: encrypted!.data }, /failed authentication/],
    [{ metadata: { ...encrypted!.metadata, [KEY_ID_METADATA]: Buffer.from('77') }, data: encrypted!.data }, /codec key "77", which this process does not have/],
    [{ ...encrypted!, data: Buffer.from(encrypted!.data!).subarray(0, 10) }, /truncated/],
    [{ metadata: encrypted!.metadata, data: notProtobuf }, /holds no payload/],
  ];
  for (const [spoiled, why] of garbage) {
    expect(valueOf(await codec.decode([spoiled]))).toEqual(PLAINTEXT_REFUSED);
    expect(warnings.pop()).toMatch(why);
    await expect(strict.decode([spoiled])).rejects.toThrow(why);
  }
  expect(warnings).toEqual([]);
});

test('payloads are bound to their workflow: refused in another workflow, decoded in their own and by the UI; a changed binding fails authentication', async () => {
  const { codec, strict, warnings } = codecs(twoKeys());
  const [bound] = await codec.encode([payload({ change: 'add' })], inWorkflow('cmk-tenant/a'));
  expect(text(bound!.metadata![WORKFLOW_ID_METADATA])).toBe('cmk-tenant/a');
  expect(valueOf(await codec.decode([bound!], inWorkflow('cmk-tenant/a')))).toEqual({ change: 'add' });
  // An activity's payloads carry its workflow's ID.
  expect(valueOf(await codec.decode([bound!], { type: 'activity', namespace: 'default', workflowId: 'cmk-tenant/a', activityId: '1', isLocal: false }))).toEqual({ change: 'add' });
  // The UI's endpoint has no context: it decodes by the payload's own binding.
  expect(valueOf(await strict.decode([bound!]))).toEqual({ change: 'add' });
  expect(warnings).toEqual([]);
  expect(valueOf(await codec.decode([bound!], inWorkflow('cmk-tenant/b')))).toEqual(PLAINTEXT_REFUSED);
  expect(warnings.pop()).toMatch(/workflow cmk-tenant\/b.*bound to workflow "cmk-tenant\/a" was sent to another workflow/);
  // An attacker who rewrites (or removes) the binding to fit workflow B breaks the authentication.
  const moved = { ...bound!, metadata: { ...bound!.metadata, [WORKFLOW_ID_METADATA]: Buffer.from('cmk-tenant/b') } };
  expect(valueOf(await codec.decode([moved], inWorkflow('cmk-tenant/b')))).toEqual(PLAINTEXT_REFUSED);
  expect(warnings.pop()).toMatch(/failed authentication/);
  const unboundMetadata = { ...bound!.metadata };
  delete unboundMetadata[WORKFLOW_ID_METADATA];
  expect(valueOf(await codec.decode([{ ...bound!, metadata: unboundMetadata }], inWorkflow('cmk-tenant/b')))).toEqual(PLAINTEXT_REFUSED);
  expect(warnings.pop()).toMatch(/failed authentication/);
  // Unbound payloads (written before the binding, or by the operator's /codec/encode) still decode anywhere.
  const [unbound] = await codec.encode([payload('old')]);
  expect(unbound!.metadata![WORKFLOW_ID_METADATA]).toBeUndefined();
  expect(valueOf(await codec.decode([unbound!], inWorkflow('cmk-tenant/b')))).toBe('old');
  // A schedule's action is encoded for the schedule's workflow ID and decoded by each run, named `<id>-<time>`.
  const [scheduled] = await codec.encode([payload({})], inWorkflow('cmk-mail-retry'));
  expect(valueOf(await codec.decode([scheduled!], inWorkflow('cmk-mail-retry-2026-12-04T19:00:00Z')))).toEqual({});
  expect(valueOf(await codec.decode([scheduled!], inWorkflow('cmk-mail-retry-x')))).toEqual(PLAINTEXT_REFUSED);
  expect(warnings).toHaveLength(1);
  // Temporal hands each scheduled run the previous run's result (encoded by that run): it opens in the next run of
  // the same schedule — before, every pass of cmk-mail-retry logged a refusal — and nowhere else.
  const [lastResult] = await codec.encode([payload({ tried: 0 })], inWorkflow('cmk-mail-retry-2026-12-04T19:00:00Z'));
  expect(valueOf(await codec.decode([lastResult!], inWorkflow('cmk-mail-retry-2026-12-04T19:01:00Z')))).toEqual({ tried: 0 });
  expect(warnings).toHaveLength(1);
  for (const elsewhere of ['cmk-purge-2026-12-04T19:01:00Z', 'cmk-mail-retry', 'cmk-tenant/a', 'cmk-mail-retry-2026-12-04T19:01:00Z-2026-12-04T19:02:00Z']) {
    expect(valueOf(await codec.decode([lastResult!], inWorkflow(elsewhere)))).toEqual(PLAINTEXT_REFUSED);
  }
  expect(warnings).toHaveLength(5);
});

test('the UI\'s decode endpoint decodes a bound payload by its binding, and answers INVALID_ARGUMENT for one that does not open', async () => {
  const ring = twoKeys();
  const audited: unknown[] = [];
  const endpoint = createCodecEndpoint({ codec: new EncryptionCodec(ring, { acceptPlaintext: true, throwOnUndecodable: true }), allowedOrigin: null, audit: async (e) => void audited.push(...e) });
  const [bound] = await new EncryptionCodec(ring).encode([payload('shown in the UI')], inWorkflow('cmk-tenant/a'));
  const wire = (p: Payload) => ({ payloads: [{ metadata: Object.fromEntries(Object.entries(p.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])), data: Buffer.from(p.data!).toString('base64') }] });
  const req = { headers: {} } as IncomingMessage;
  const decoded = (await endpoint.decode({ kind: 'operator' }, wire(bound!), req)) as { payloads: Array<{ data: string }> };
  expect(Buffer.from(decoded.payloads[0]!.data, 'base64').toString()).toBe('"shown in the UI"');
  const data = Buffer.from(bound!.data!);
  data[data.length - 1] = data[data.length - 1]! ^ 1;
  await expect(endpoint.decode({ kind: 'operator' }, wire({ ...bound!, data }), req)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  expect(audited).toHaveLength(1);
});

test('a plaintext payload decodes to the refusal marker, never to what it says; only acceptPlaintext (replay) passes it through', async () => {
  const ring = loadCodecKeyRing(mkdtempSync(join(tmpdir(), 'cmk-codec-')), {});
  const plain = payload({ actor: { kind: 'user', email: 'alice@example.com' }, change: 'add', email: 'mallory@evil.test' });
  const [decoded] = await new EncryptionCodec(ring, { warn: () => undefined }).decode([plain]);
  expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(PLAINTEXT_REFUSED);
  expect(await new EncryptionCodec(ring, { acceptPlaintext: true }).decode([plain])).toEqual([plain]);
});

test('CMK_CODEC_KEYS must be numbered 32-byte keys', () => {
  expect(() => loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: 'one:abcd' })).toThrow(/CMK_CODEC_KEYS/);
  expect(() => loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${Buffer.alloc(16).toString('base64')}` })).toThrow(/32 bytes/);
});
