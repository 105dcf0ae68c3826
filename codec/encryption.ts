/**
 * The payload codec: every payload the client and the worker write to Temporal is AES-256-GCM encrypted as
 * `binary/encrypted`, with the key id in the metadata so keys rotate, and bound to the workflow that owns it (the
 * SDK's serialization context) so it cannot be moved into another workflow's history. A payload that is not
 * encrypted, or does not open (changed, truncated, an unknown key id, another workflow's, not a payload inside) —
 * sent to the frontend by someone without the codec key — decodes to a refusal marker, which every workflow refuses
 * as unsigned (domain/signed.ts): throwing instead would fail the workflow task over and over, so one such request
 * would stall a tenant. Histories written before the codec replay with `acceptPlaintext` (replay tests; the
 * operator's CMK_CODEC_ACCEPT_PLAINTEXT for workflows still running from then).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { CodecKeyRing } from './keys';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
/** The workflow a payload belongs to; authenticated with the key id. Absent: written before the binding, or by `/codec/encode`. */
export const WORKFLOW_ID_METADATA = 'encryption-workflow-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why an encrypted payload did not open; its message names no byte of the payload. */
class Undecodable extends Error {}

export class UnknownCodecKeyError extends Undecodable {
  override name = 'UnknownCodecKeyError';
}

/** What a payload the codec refuses decodes to: a JSON object no request, input or signal of ours can be mistaken for. */
export const PLAINTEXT_REFUSED = { cmkRefused: 'This payload was not encrypted with the control plane\'s codec key.' } as const;
const REFUSED_PAYLOAD: Payload = { metadata: { encoding: encoder.encode('json/plain') }, data: encoder.encode(JSON.stringify(PLAINTEXT_REFUSED)) };

export interface CodecOptions {
  /** Pass plaintext payloads through on decode: only to replay (or finish) workflows written before the codec. */
  acceptPlaintext?: boolean;
  /**
   * Throw on an encrypted payload that does not open, instead of refusing it: the UI's decode endpoint, where an error
   * is the honest answer and no workflow task waits on it.
   */
  throwOnUndecodable?: boolean;
  /** Where a refusal is reported (why and the key id, never the payload); console.warn unless given. */
  warn?: (message: string) => void;
}

/** What the Temporal server appends to a schedule's workflow ID for each run it starts (RFC 3339, UTC). */
const SCHEDULED_RUN = /^-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** The schedule's workflow ID of a scheduled run `<id>-<time>`, or undefined for any other workflow ID. */
const scheduleOf = (workflowId: string): string | undefined => {
  const base = workflowId.slice(0, -'-2026-12-04T19:00:00Z'.length);
  return base && SCHEDULED_RUN.test(workflowId.slice(base.length)) && scheduleOf(base) === undefined ? base : undefined;
};

/**
 * A schedule's action is encoded for the schedule's workflow ID and decoded by runs named `<id>-<time>`; each run is
 * also handed the previous run's result, encoded by that run. No other workflow ID of ours can look like that (tenant
 * IDs hold no ':').
 */
const sameWorkflow = (bound: string, context: string) => {
  if (bound === context) return true;
  const schedule = scheduleOf(context);
  return schedule !== undefined && (bound === schedule || scheduleOf(bound) === schedule);
};

const aad = (keyId: string, workflowId: string | undefined) =>
  Buffer.from(workflowId === undefined ? `${ENCRYPTED_ENCODING}:${keyId}` : `${ENCRYPTED_ENCODING}:${keyId}:workflow:${workflowId}`);

export class EncryptionCodec implements PayloadCodec {
  constructor(
    private readonly ring: CodecKeyRing,
    private readonly options: CodecOptions = {},
  ) {}

  /** With a context naming a workflow (the SDK's, for workflow- and activity-owned payloads), each payload is bound to it. */
  async encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return payloads.map((payload) => this.encrypt(payload, context?.workflowId || undefined));
  }

  /** With a context naming a workflow, a payload bound to another workflow is refused; without one (the UI), it opens by its own binding. */
  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return payloads.map((payload) => this.decrypt(payload, context?.workflowId || undefined));
  }

  encrypt(payload: Payload, workflowId?: string): Payload {
    const { id, key } = this.ring.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    // The key id and the workflow are authenticated too: a payload moved under another id or workflow does not decrypt.
    cipher.setAAD(aad(id, workflowId));
    const plain = temporal.api.common.v1.Payload.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    const metadata: Record<string, Uint8Array> = { encoding: encoder.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: encoder.encode(id) };
    if (workflowId !== undefined) metadata[WORKFLOW_ID_METADATA] = encoder.encode(workflowId);
    return { metadata, data: sealed };
  }

  decrypt(payload: Payload, contextWorkflowId?: string): Payload {
    const encoding = payload.metadata?.encoding;
    if (!encoding || decoder.decode(encoding) !== ENCRYPTED_ENCODING) {
      if (this.options.acceptPlaintext) return payload;
      return this.refuse('It is not encrypted.', contextWorkflowId);
    }
    try {
      return this.open(payload, contextWorkflowId);
    } catch (err) {
      // Anything else is a bug of ours, and loud.
      if (!(err instanceof Undecodable) || this.options.throwOnUndecodable) throw err;
      return this.refuse(err.message, contextWorkflowId);
    }
  }

  private open(payload: Payload, contextWorkflowId: string | undefined): Payload {
    const idBytes = payload.metadata?.[KEY_ID_METADATA];
    const id = idBytes ? decoder.decode(idBytes) : '';
    const boundBytes = payload.metadata?.[WORKFLOW_ID_METADATA];
    const bound = boundBytes ? decoder.decode(boundBytes) : undefined;
    // Refused too, not thrown (whoever reaches the frontend can make one up): a key this process lacks because it
    // has not loaded a rotation yet is a misconfiguration, and the warning names the id; restarting fixes it.
    const key = this.ring.byId.get(id);
    if (!key) throw new UnknownCodecKeyError(`The payload was encrypted with codec key "${id.slice(0, 20)}", which this process does not have (restart it with every codec key in use).`);
    if (bound !== undefined && contextWorkflowId !== undefined && !sameWorkflow(bound, contextWorkflowId)) {
      throw new Undecodable(`An encrypted payload bound to workflow "${bound.slice(0, 200)}" was sent to another workflow.`);
    }
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < IV_BYTES + TAG_BYTES) throw new Undecodable('An encrypted payload is truncated.');
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(aad(id, bound));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new Undecodable(`An encrypted payload under codec key "${id}" failed authentication (changed, or its key id or workflow changed).`);
    }
    try {
      return temporal.api.common.v1.Payload.decode(plain) as Payload;
    } catch {
      throw new Undecodable(`An encrypted payload under codec key "${id}" authenticated but holds no payload.`);
    }
  }

  private refuse(why: string, contextWorkflowId: string | undefined): Payload {
    const where = contextWorkflowId === undefined ? '' : ` (workflow ${contextWorkflowId.slice(0, 200)})`;
    (this.options.warn ?? console.warn)(`The payload codec refused a payload${where}, which decodes to a refusal marker: ${why}`);
    return REFUSED_PAYLOAD;
  }
}
