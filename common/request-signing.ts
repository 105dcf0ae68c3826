/**
 * The request-signing key (DESIGN.md §6): an Ed25519 seed in CMK_SECRETS_DIR (`request-signing-key`, 0600, created at
 * first start) or CMK_SECRET_REQUEST_SIGNING_KEY (base64). The API service and the workers sign with it; workflows
 * verify with its public key, which their worker hands them with its policy (`requestTrust`). Rotation: set
 * CMK_REQUEST_VERIFY_KEYS to the old public key(s) (hex, comma-separated) on the workers, replace the seed, restart;
 * drop the old key once every workflow has started a new run (continue-as-new) or ten minutes have passed.
 */
import { ed25519 } from '@noble/curves/ed25519';
import { loadOrCreateSecret } from './secrets';
import { signedBytes, toHex, type RequestAuth, type RequestTrust } from '../domain/signed';
import type { Policy } from '../domain/policy';

export const REQUEST_SIGNING_SECRET = 'request-signing-key';

export class RequestSigner {
  readonly publicKey: string;

  /** `now` is the signing clock: the time-skipping test server's in tests, whose workflows live ahead of real time. */
  constructor(
    private readonly seed: Uint8Array,
    private readonly now: () => number | Promise<number> = () => Date.now(),
  ) {
    this.publicKey = toHex(ed25519.getPublicKey(seed));
  }

  async sign(workflowId: string, name: string, request: unknown): Promise<RequestAuth> {
    const signedAt = new Date(await this.now()).toISOString();
    return { signedAt, signature: toHex(ed25519.sign(signedBytes(workflowId, name, signedAt, request), this.seed)) };
  }

  /** The request with its `auth`. */
  async signed<T extends object>(workflowId: string, name: string, request: T): Promise<T & { auth: RequestAuth }> {
    const { auth: _old, ...body } = request as T & { auth?: RequestAuth };
    return { ...(body as T), auth: await this.sign(workflowId, name, body) };
  }
}

export function loadRequestSigner(secretsDir: string, env: Record<string, string | undefined> = process.env): RequestSigner {
  return new RequestSigner(loadOrCreateSecret(secretsDir, REQUEST_SIGNING_SECRET, 32, env));
}

/** What this worker's workflows trust: its own signing key's public half, any older ones still accepted, its policy. */
export function requestTrustFor(signer: RequestSigner, policy: Policy, env: Record<string, string | undefined> = process.env): RequestTrust {
  const older = (env.CMK_REQUEST_VERIFY_KEYS ?? '')
    .split(',')
    .map((k) => k.trim().toLowerCase())
    .filter(Boolean);
  for (const key of older) if (!/^[0-9a-f]{64}$/.test(key)) throw new Error('CMK_REQUEST_VERIFY_KEYS must be Ed25519 public keys, 64 hex digits each, comma-separated.');
  return { publicKeys: [signer.publicKey, ...older], policy };
}
