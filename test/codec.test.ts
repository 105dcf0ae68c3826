/**
 * The payload codec (codec/): AES-256-GCM, `binary/encrypted`, the key id in the metadata; keys rotate (old ids still
 * decrypt, new payloads use the newest); a changed byte or an unknown key id is an error, never a wrong payload.
 */
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { addCodecKey, EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, loadCodecKeyRing, PLAINTEXT_REFUSED, UnknownCodecKeyError } from '../codec';

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const payload = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);

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
  const before = new EncryptionCodec(loadCodecKeyRing(secrets, {}));
  const [old] = await before.encode([payload('written before the rotation')]);
  expect(addCodecKey(secrets)).toBe('2');
  const after = new EncryptionCodec(loadCodecKeyRing(secrets, {}));
  const [fresh] = await after.encode([payload('written after')]);
  expect(text(fresh!.metadata![KEY_ID_METADATA])).toBe('2');
  expect(defaultPayloadConverter.fromPayload((await after.decode([old!]))[0]!)).toBe('written before the rotation');
  // A process that has only the old key cannot read the new payloads: a clear error, not garbage.
  await expect(before.decode([fresh!])).rejects.toThrow(UnknownCodecKeyError);
});

test('a changed byte, a moved key id or a truncated payload fails authentication', async () => {
  const ring = loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${Buffer.alloc(32, 1).toString('base64')},2:${Buffer.alloc(32, 2).toString('base64')}` });
  const codec = new EncryptionCodec(ring);
  const [encrypted] = await codec.encode([payload('integrity')]);
  const flipped = Buffer.from(encrypted!.data!);
  flipped[20] = flipped[20]! ^ 1;
  await expect(codec.decode([{ ...encrypted!, data: flipped }])).rejects.toThrow();
  await expect(codec.decode([{ metadata: { ...encrypted!.metadata, [KEY_ID_METADATA]: Buffer.from('1') }, data: encrypted!.data }])).rejects.toThrow();
  await expect(codec.decode([{ ...encrypted!, data: Buffer.from(encrypted!.data!).subarray(0, 10) }])).rejects.toThrow(/truncated/);
});

test('a plaintext payload decodes to the refusal marker, never to what it says; only acceptPlaintext (replay) passes it through', async () => {
  const ring = loadCodecKeyRing(mkdtempSync(join(tmpdir(), 'cmk-codec-')), {});
  const plain = payload({ actor: { kind: 'user', email: 'alice@example.com' }, change: 'add', email: 'mallory@evil.test' });
  const [decoded] = await new EncryptionCodec(ring).decode([plain]);
  expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(PLAINTEXT_REFUSED);
  expect(await new EncryptionCodec(ring, { acceptPlaintext: true }).decode([plain])).toEqual([plain]);
});

test('CMK_CODEC_KEYS must be numbered 32-byte keys', () => {
  expect(() => loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: 'one:abcd' })).toThrow(/CMK_CODEC_KEYS/);
  expect(() => loadCodecKeyRing('/nonexistent', { CMK_CODEC_KEYS: `1:${Buffer.alloc(16).toString('base64')}` })).toThrow(/32 bytes/);
});
