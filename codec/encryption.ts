/**
 * The payload codec: every payload the client and the worker write to Temporal is AES-256-GCM encrypted as
 * `binary/encrypted`, with the key id in the metadata so keys rotate. A payload that is not encrypted (sent to the
 * frontend by someone without the codec key) decodes to a refusal marker, which every workflow refuses as unsigned
 * (workflows/signed.ts): throwing instead would fail the workflow task over and over, so one such request would
 * stall a tenant. Histories written before the codec replay with `acceptPlaintext` (replay tests; the operator's
 * CMK_CODEC_ACCEPT_PLAINTEXT for workflows still running from then).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { CodecKeyRing } from './keys';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class UnknownCodecKeyError extends Error {
  override name = 'UnknownCodecKeyError';
}

/** What a plaintext payload decodes to: a JSON object no request, input or signal of ours can be mistaken for. */
export const PLAINTEXT_REFUSED = { cmkRefused: 'This payload was not encrypted with the control plane\'s codec key.' } as const;
const REFUSED_PAYLOAD: Payload = { metadata: { encoding: encoder.encode('json/plain') }, data: encoder.encode(JSON.stringify(PLAINTEXT_REFUSED)) };

export interface CodecOptions {
  /** Pass plaintext payloads through on decode: only to replay (or finish) workflows written before the codec. */
  acceptPlaintext?: boolean;
}

export class EncryptionCodec implements PayloadCodec {
  constructor(
    private readonly ring: CodecKeyRing,
    private readonly options: CodecOptions = {},
  ) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.encrypt(payload));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.decrypt(payload));
  }

  encrypt(payload: Payload): Payload {
    const { id, key } = this.ring.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    // The key id is authenticated too: a payload moved under another id does not decrypt.
    cipher.setAAD(Buffer.from(`${ENCRYPTED_ENCODING}:${id}`));
    const plain = temporal.api.common.v1.Payload.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return { metadata: { encoding: encoder.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: encoder.encode(id) }, data: sealed };
  }

  decrypt(payload: Payload): Payload {
    const encoding = payload.metadata?.encoding;
    if (!encoding || decoder.decode(encoding) !== ENCRYPTED_ENCODING) return this.options.acceptPlaintext ? payload : REFUSED_PAYLOAD;
    const idBytes = payload.metadata?.[KEY_ID_METADATA];
    const id = idBytes ? decoder.decode(idBytes) : '';
    const key = this.ring.byId.get(id);
    if (!key) throw new UnknownCodecKeyError(`The payload was encrypted with codec key "${id}", which this process does not have.`);
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < IV_BYTES + TAG_BYTES) throw new Error('An encrypted payload is truncated.');
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(`${ENCRYPTED_ENCODING}:${id}`));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    return temporal.api.common.v1.Payload.decode(plain) as Payload;
  }
}
