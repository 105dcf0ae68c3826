/**
 * A garbage `binary/encrypted` payload sent through the Temporal frontend (issue 16, last finding): a changed tag, a
 * truncated body, a made-up key id, bad protobuf under the real key. The codec refuses each as it refuses plaintext
 * (a marker no validator accepts), so the forged update changes nothing and the tenant keeps answering the API —
 * a decoding error would fail the workflow task over and over instead.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { startStack, type Stack } from '../harness/stack';
import { ENCRYPTED_ENCODING, KEY_ID_METADATA, loadCodecKeyRing, loadDataConverter, type CodecKeyRing } from '../codec';
import { tenantWorkflowId, updates } from '../workflows/messages';
import { DEFAULT_POLICY } from '../domain/policy';

let stack: Stack;
let connection: Connection;
let ring: CodecKeyRing;
const ALICE = 'alice@contoso.example';
const MALLORY = 'mallory@evil.test';
const tenant = 'contoso';

const sealed = (id: string, data: Uint8Array): Payload => ({ metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(id) }, data });

/** What each kind of garbage looks like; `real` is the payload the real codec would send. */
const GARBAGE: Record<string, (real: Payload) => Payload> = {
  'a changed tag': (real) => {
    const data = Buffer.from(real.data!);
    data[data.length - 1] = data[data.length - 1]! ^ 1;
    return { ...real, data };
  },
  'a truncated body': (real) => ({ ...real, data: Buffer.from(real.data!).subarray(0, 20) }),
  'a made-up key id': (real) => sealed('424242', real.data!),
  'bad protobuf under the real key': () => {
    const { id, key } = ring.current;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(`${ENCRYPTED_ENCODING}:${id}`));
    const body = Buffer.concat([cipher.update(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])), cipher.final()]);
    return sealed(id, Buffer.concat([iv, body, cipher.getAuthTag()]));
  },
};

/** A raw client that encrypts with the real codec, then spoils every payload it sends. */
function spoilingClient(spoil: (real: Payload) => Payload): Client {
  const real = loadDataConverter(stack.secretsDir, {}).payloadCodecs![0]!;
  const codec: PayloadCodec = {
    encode: async (payloads, context) => (await real.encode(payloads, context)).map(spoil),
    decode: (payloads, context) => real.decode(payloads, context),
  };
  return new Client({ connection, dataConverter: { payloadCodecs: [codec] } });
}

/** `promise`'s value, or null after 40 s: the tenant must answer well before then. */
async function withinDeadline<T>(promise: Promise<T>): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 40_000)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function admins(): Promise<string[]> {
  const shown = await stack.api('GET', `/v1/tenants/${tenant}`, { as: ALICE });
  return ((shown.body as { tenant?: { admins?: Array<{ email: string }> } }).tenant?.admins ?? []).map((a) => a.email).sort();
}

beforeAll(async () => {
  stack = await startStack({ CMK_KEY_CHANGE_INTERVAL: '1s' });
  connection = await Connection.connect({ address: stack.env.TEMPORAL_ADDRESS! });
  ring = loadCodecKeyRing(stack.secretsDir, {});
  expect((await stack.cmk(['tenant', 'create', '--tenant', tenant, '--name', 'Contoso', '--admin', `${ALICE}:global`])).code).toBe(0);
}, 180_000);

afterAll(async () => {
  await connection?.close();
  await stack?.stop();
});

test.each(Object.keys(GARBAGE))('a changeAdmin with %s is refused and the tenant keeps answering', async (kind) => {
  const client = spoilingClient(GARBAGE[kind]!);
  const forged = { actor: { kind: 'user', email: ALICE }, policy: DEFAULT_POLICY, change: 'add', email: MALLORY, role: 'global' };
  // Not awaited yet: on a stalled tenant it would not end. What matters first is that the tenant still answers.
  const update = client.workflow.getHandle(tenantWorkflowId(tenant)).executeUpdate(updates.changeAdmin.name, { args: [forged] });
  const outcome = update.then(
    () => 'accepted',
    (err: unknown) => (err instanceof Error ? `${err.message} / ${err.cause instanceof Error ? err.cause.message : ''}` : String(err)),
  );
  const added = await withinDeadline(stack.cmk(['tenant', 'admin', 'add', '--tenant', tenant, '--admin', 'carol@contoso.example:service'], { as: ALICE }));
  expect(added === null ? 'no answer within the deadline' : [added.code, added.stderr]).toEqual([0, '']);
  expect((await stack.cmk(['tenant', 'admin', 'remove', '--tenant', tenant, '--admin', 'carol@contoso.example'], { as: ALICE })).code).toBe(0);
  expect(await admins()).toEqual([ALICE]);
  // The forged update itself was refused as unsigned (its client reads the encrypted refusal with the real codec).
  expect(await withinDeadline(outcome)).toMatch(/This request was not issued by the cmk API service\.$/);
  expect(stack.output()).toMatch(/The payload codec refused a payload \(workflow cmk-tenant/);
}, 90_000);
