/**
 * A test double of Azure Key Vault's keys REST API and of an App Service managed-identity endpoint, for the Azure
 * adapter (vault/azure.ts). Lowkey Vault, the emulator DESIGN.md names, cannot run here (its app jar is not on this
 * machine's Maven mirror, and there is no Docker), and it has no BYOK (`key_hsm`) anyway; so this double stands at the
 * SaaS boundary in its place. It does real RSA crypto and CHECKS the request shape the real service requires,
 * answering 400/401/403/404/409 with Azure's `{"error":{"code","message"}}` bodies otherwise:
 *
 * - HTTPS only, with a certificate made per run (its CA in `caPem` / `caFile`);
 * - the challenge flow: no Bearer token → 401 with `WWW-Authenticate: Bearer authorization=…, resource=…`; a token
 *   must be one the identity endpoint issued (unexpired);
 * - `api-version` present and a known one (7.x or a dated version); JSON content type on bodies;
 * - key names `^[0-9a-zA-Z-]{1,127}$`, JWK byte fields base64url, ≤ 15 tags with values ≤ 256 characters;
 * - crypto refused with 403 on a disabled key or a key whose key_ops lack the operation; 404 KeyNotFound shapes;
 * - BYOK: `PUT /keys/{name}` with `key: {kty: 'RSA-HSM', key_hsm: base64url(.byok file)}` unwraps with the KEK the
 *   file names (an RSA-HSM key of this vault with key_ops ["import"]) using keyfiles/byok.ts;
 * - soft delete, deleted keys, purge (refused with 403 under purge protection), list paging with nextLink.
 *
 * Tests inject faults (`failNext`) and read what was sent (`requests`: method, path, status — never bodies, which
 * carry key material).
 */
import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { parseByok, unwrapByokCiphertext } from '../../keyfiles/byok';

export const VAULT_RESOURCE = 'https://vault.azure.net';
const API_VERSION = /^(7\.[0-6](-preview(\.\d+)?)?|20\d\d-\d\d-\d\d(-preview)?)$/;
const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const VERSION = /^[0-9a-f]{32}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const MAX_TAGS = 15;
const RSA_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
const JWK_BYTE_FIELDS = ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'key_hsm', 'x', 'y'] as const;

export interface RecordedRequest {
  method: string;
  /** The path without the query, e.g. /keys/tenant-a-default-0123…/wrapkey. */
  path: string;
  query: Record<string, string>;
  status: number;
  /** Whether it carried a valid Bearer token. */
  authorized: boolean;
}

export interface Fault {
  status: number;
  /** How many matching requests get the fault. */
  times: number;
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
  /** Which requests (after authentication) it applies to; default all. */
  when?: (request: { method: string; path: string }) => boolean;
  /** Echo the request body into the error message, as a careless proxy would (the adapter must not pass it on). */
  echoBody?: boolean;
}

interface StoredVersion {
  name: string;
  version: string;
  kty: 'RSA' | 'RSA-HSM';
  keyOps: string[];
  privateKey: KeyObject;
  n: string;
  e: string;
  enabled: boolean;
  created: number;
  updated: number;
  tags: Record<string, string>;
}

interface DeletedEntry {
  versions: StoredVersion[];
  deletedDate: number;
  scheduledPurgeDate: number;
  /** GETs of /deletedkeys/{name} still answered 404, as while Azure is deleting. */
  pendingPolls: number;
}

export interface KeyVaultDoubleOptions {
  /** Keys per list page (Azure's own maximum is 25). */
  pageSize?: number;
  purgeProtection?: boolean;
  /** GETs of a just-deleted key under /deletedkeys that answer 404 first (Azure deletes asynchronously). */
  deletionLag?: number;
}
// The options are read on every request: a test may change them (purge protection, page size) for a while.

export interface KeyVaultDouble {
  url: string;
  caPem: string;
  /** The CA as a file, for NODE_EXTRA_CA_CERTS of child processes. */
  caFile: string;
  identityEndpoint: string;
  identityHeader: string;
  tenantId: string;
  /** IDENTITY_ENDPOINT and IDENTITY_HEADER, as App Service sets them. */
  identityEnv: () => Record<'IDENTITY_ENDPOINT' | 'IDENTITY_HEADER', string>;
  requests: RecordedRequest[];
  tokenRequests: () => number;
  options: Required<KeyVaultDoubleOptions>;
  failNext: (fault: Fault) => void;
  clearFaults: () => void;
  /** A token as the identity endpoint issues it, for raw requests in tests. */
  issueToken: () => string;
  liveKeys: () => Array<Pick<StoredVersion, 'name' | 'version' | 'kty' | 'keyOps' | 'enabled' | 'tags'>>;
  deletedKeyNames: () => string[];
  purgedKeyNames: () => string[];
  close: () => Promise<void>;
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const fail = (status: number, code: string, message: string): never => {
  throw new HttpFailure(status, code, message);
};

/** A CA and a server certificate for 127.0.0.1 / localhost, made with node-forge (keys from node:crypto, faster). */
function certificates(): { caPem: string; keyPem: string; certPem: string } {
  const rsa = () => forge.pki.privateKeyFromPem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
  const make = (subject: string, key: forge.pki.rsa.PrivateKey, issuer: { name: string; key: forge.pki.rsa.PrivateKey }, ca: boolean): forge.pki.Certificate => {
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + 2 * 86_400_000);
    cert.setSubject([{ name: 'commonName', value: subject }]);
    cert.setIssuer([{ name: 'commonName', value: issuer.name }]);
    cert.setExtensions(
      ca
        ? [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }]
        : [
            { name: 'basicConstraints', cA: false },
            { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
            { name: 'extKeyUsage', serverAuth: true },
            { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
          ],
    );
    cert.sign(issuer.key, forge.md.sha256.create());
    return cert;
  };
  const caKey = rsa();
  const caName = `cmk key vault double CA ${randomBytes(4).toString('hex')}`;
  const ca = make(caName, caKey, { name: caName, key: caKey }, true);
  const serverKey = rsa();
  const server = make('127.0.0.1', serverKey, { name: caName, key: caKey }, false);
  return { caPem: forge.pki.certificateToPem(ca), keyPem: forge.pki.privateKeyToPem(serverKey), certPem: forge.pki.certificateToPem(server) };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}), 'x-ms-keyvault-service-version': 'double', ...headers });
  res.end(text);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const now = (): number => Math.floor(Date.now() / 1000);

export async function startKeyVaultDouble(options: KeyVaultDoubleOptions = {}): Promise<KeyVaultDouble> {
  const settings: Required<KeyVaultDoubleOptions> = { pageSize: 25, purgeProtection: false, deletionLag: 0, ...options };
  const { caPem, keyPem, certPem } = certificates();
  const caFile = join(mkdtempSync(join(tmpdir(), 'cmk-kv-double-')), 'ca.pem');
  writeFileSync(caFile, caPem);
  const tenantId = randomUUID();
  const identityHeader = randomBytes(16).toString('hex');
  const tokens = new Map<string, number>();
  const keys = new Map<string, StoredVersion[]>();
  const deleted = new Map<string, DeletedEntry>();
  const purged: string[] = [];
  const requests: RecordedRequest[] = [];
  const faults: Fault[] = [];
  let tokenRequests = 0;
  let url = '';

  const issueToken = (): string => {
    const token = randomBytes(24).toString('base64url');
    tokens.set(token, Date.now() + 3_600_000);
    return token;
  };

  // ---------------------------------------------------------------------------------------------- shapes

  const recoveryLevel = () => (settings.purgeProtection ? 'Recoverable' : 'Recoverable+Purgeable');
  const attributes = (v: StoredVersion) => ({ enabled: v.enabled, created: v.created, updated: v.updated, recoveryLevel: recoveryLevel(), recoverableDays: settings.purgeProtection ? 90 : 7 });
  const kid = (v: StoredVersion) => `${url}/keys/${v.name}/${v.version}`;
  const bundle = (v: StoredVersion) => ({ key: { kid: kid(v), kty: v.kty, key_ops: v.keyOps, n: v.n, e: v.e }, attributes: attributes(v), tags: v.tags });
  const item = (v: StoredVersion, withVersion: boolean) => ({ kid: withVersion ? kid(v) : `${url}/keys/${v.name}`, attributes: attributes(v), tags: v.tags });
  const notFound = (name: string, version?: string): never =>
    fail(404, 'KeyNotFound', version ? `A key with (name/id) ${name}/${version} was not found in this key vault.` : `A key with (name/id) ${name} was not found in this key vault.`);

  function keyName(raw: string): string {
    const name = decodeURIComponent(raw);
    if (!KEY_NAME.test(name)) fail(400, 'BadParameter', `The key name '${name}' is invalid: use 1-127 letters, digits and dashes.`);
    return name;
  }

  function find(name: string, version: string | undefined): StoredVersion {
    const versions = keys.get(name);
    if (!versions?.length) return notFound(name, version);
    if (!version) return versions[versions.length - 1]!;
    if (!VERSION.test(version)) fail(400, 'BadParameter', `The key version '${version}' is invalid.`);
    return versions.find((v) => v.version === version) ?? notFound(name, version);
  }

  function checkTags(tags: unknown): Record<string, string> | undefined {
    if (tags === undefined || tags === null) return undefined;
    if (!isObject(tags)) return fail(400, 'BadParameter', 'Tags must be an object of strings.');
    const entries = Object.entries(tags);
    if (entries.length > MAX_TAGS) fail(400, 'BadParameter', `A key can have at most ${MAX_TAGS} tags.`);
    for (const [k, v] of entries) {
      if (typeof v !== 'string' || k.length > 512 || v.length > 256) fail(400, 'BadParameter', `Tag '${k.slice(0, 40)}' is invalid: names up to 512 characters, values strings up to 256.`);
    }
    return tags as Record<string, string>;
  }

  function checkAttributes(value: unknown): { enabled?: boolean } {
    if (value === undefined || value === null) return {};
    if (!isObject(value)) return fail(400, 'BadParameter', 'attributes must be an object.');
    if (value.enabled !== undefined && typeof value.enabled !== 'boolean') fail(400, 'BadParameter', 'attributes.enabled must be a boolean.');
    return value.enabled === undefined ? {} : { enabled: value.enabled as boolean };
  }

  function checkKeyOps(value: unknown, allowed: string[]): string[] | undefined {
    if (value === undefined || value === null) return undefined;
    if (!Array.isArray(value) || value.some((op) => typeof op !== 'string' || !allowed.concat('import').includes(op))) fail(400, 'BadParameter', 'key_ops names an unknown operation.');
    return value as string[];
  }

  function store(name: string, key: KeyObject, kty: 'RSA' | 'RSA-HSM', keyOps: string[], enabled: boolean, tags: Record<string, string>): StoredVersion {
    if (deleted.has(name)) fail(409, 'Conflict', `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`);
    const jwk = createPublicKey(key).export({ format: 'jwk' });
    const t = now();
    const v: StoredVersion = { name, version: randomBytes(16).toString('hex'), kty, keyOps, privateKey: key, n: jwk.n!, e: jwk.e!, enabled, created: t, updated: t, tags };
    keys.set(name, [...(keys.get(name) ?? []), v]);
    return v;
  }

  // ---------------------------------------------------------------------------------------------- operations

  function create(name: string, body: Record<string, unknown>) {
    const kty = body.kty;
    if (kty !== 'RSA' && kty !== 'RSA-HSM') return fail(400, 'BadParameter', `Key type '${String(kty)}' is not supported here; use RSA or RSA-HSM.`);
    const size = body.key_size ?? 2048;
    if (size !== 2048 && size !== 3072 && size !== 4096) return fail(400, 'BadParameter', `RSA key size ${String(size)} is not supported.`);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: size });
    const { enabled = true } = checkAttributes(body.attributes);
    return bundle(store(name, privateKey, kty, checkKeyOps(body.key_ops, RSA_OPS) ?? RSA_OPS, enabled, checkTags(body.tags) ?? {}));
  }

  function importKey(name: string, body: Record<string, unknown>) {
    const jwk = body.key;
    if (!isObject(jwk)) return fail(400, 'BadParameter', 'The request has no key.');
    for (const field of JWK_BYTE_FIELDS) {
      const value = jwk[field];
      if (value !== undefined && (typeof value !== 'string' || !BASE64URL.test(value))) fail(400, 'BadParameter', `JWK field '${field}' is not base64url.`);
    }
    if (body.Hsm !== undefined && typeof body.Hsm !== 'boolean') fail(400, 'BadParameter', 'Hsm must be a boolean.');
    const { enabled = true } = checkAttributes(body.attributes);
    const tags = checkTags(body.tags) ?? {};
    const keyOps = checkKeyOps(jwk.key_ops, RSA_OPS) ?? RSA_OPS;
    let key: KeyObject;
    let kty: 'RSA' | 'RSA-HSM';
    if (jwk.kty === 'RSA-HSM' && typeof jwk.key_hsm === 'string') {
      key = unwrapTransfer(Buffer.from(jwk.key_hsm, 'base64url'));
      kty = 'RSA-HSM';
    } else if (jwk.kty === 'RSA' || jwk.kty === 'RSA-HSM') {
      for (const field of ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi']) if (typeof jwk[field] !== 'string') fail(400, 'BadParameter', `The RSA key has no '${field}'.`);
      try {
        key = createPrivateKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e, d: jwk.d, p: jwk.p, q: jwk.q, dp: jwk.dp, dq: jwk.dq, qi: jwk.qi } as never, format: 'jwk' });
      } catch {
        return fail(400, 'BadParameter', 'The RSA key parameters are inconsistent.');
      }
      kty = body.Hsm === true || jwk.kty === 'RSA-HSM' ? 'RSA-HSM' : 'RSA';
    } else {
      return fail(400, 'BadParameter', `Key type '${String(jwk.kty)}' cannot be imported here.`);
    }
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (key.asymmetricKeyType !== 'rsa' || (bits !== 2048 && bits !== 3072 && bits !== 4096)) fail(400, 'BadParameter', 'Only RSA keys of 2048, 3072 or 4096 bits are supported.');
    return bundle(store(name, key, kty, keyOps, enabled, tags));
  }

  /** BYOK inside "the HSM": the .byok names a KEK of this vault (RSA-HSM, key_ops ["import"]) that unwraps it. */
  function unwrapTransfer(file: Buffer): KeyObject {
    let transfer: ReturnType<typeof parseByok>;
    try {
      transfer = parseByok(file);
    } catch {
      return fail(400, 'BadParameter', 'The key_hsm value is not a BYOK transfer blob.');
    }
    const match = transfer.kid.startsWith(`${url}/keys/`) ? /^\/keys\/([0-9a-zA-Z-]{1,127})(?:\/([0-9a-f]{32}))?$/.exec(transfer.kid.slice(url.length)) : null;
    const kek = match ? keys.get(match[1]!)?.find((v) => !match[2] || v.version === match[2]) : undefined;
    if (!kek || kek.kty !== 'RSA-HSM' || kek.keyOps.join() !== 'import' || !kek.enabled) return fail(400, 'BadParameter', 'The key exchange key named in the BYOK blob is not a usable KEK of this vault.');
    try {
      return createPrivateKey({ key: unwrapByokCiphertext(kek.privateKey, transfer.ciphertext), format: 'der', type: 'pkcs8' });
    } catch {
      return fail(400, 'BadParameter', 'The BYOK blob cannot be unwrapped with the key exchange key it names.');
    }
  }

  function update(v: StoredVersion, body: Record<string, unknown>) {
    const { enabled } = checkAttributes(body.attributes);
    const tags = checkTags(body.tags);
    const keyOps = checkKeyOps(body.key_ops, RSA_OPS);
    if (enabled !== undefined) v.enabled = enabled;
    if (tags) v.tags = tags;
    if (keyOps) v.keyOps = keyOps;
    v.updated = now();
    return bundle(v);
  }

  function deletedBundle(name: string, entry: DeletedEntry) {
    const latest = entry.versions[entry.versions.length - 1]!;
    return { ...bundle(latest), recoveryId: `${url}/deletedkeys/${name}`, deletedDate: entry.deletedDate, scheduledPurgeDate: entry.scheduledPurgeDate };
  }

  function crypto(v: StoredVersion, operation: 'wrapKey' | 'unwrapKey', body: Record<string, unknown>) {
    if (!v.enabled) fail(403, 'Forbidden', `Operation ${operation} is not allowed on a disabled key.`);
    if (!v.keyOps.includes(operation)) fail(403, 'Forbidden', `Operation ${operation} is not permitted on this key.`);
    const hash = body.alg === 'RSA-OAEP-256' ? 'sha256' : body.alg === 'RSA-OAEP' ? 'sha1' : fail(400, 'BadParameter', `Algorithm '${String(body.alg)}' is not supported for ${operation}.`);
    if (typeof body.value !== 'string' || !BASE64URL.test(body.value)) fail(400, 'BadParameter', 'value must be base64url.');
    const input = Buffer.from(body.value as string, 'base64url');
    let output: Buffer;
    try {
      output =
        operation === 'wrapKey'
          ? publicEncrypt({ key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, input)
          : privateDecrypt({ key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, input);
    } catch {
      return fail(400, 'BadParameter', `The ${operation} operation failed: the value does not fit this key.`);
    }
    return { kid: kid(v), value: output.toString('base64url') };
  }

  function list(items: unknown[], query: Record<string, string>, path: string) {
    const max = Math.min(Number(query.maxresults || 25), 25, settings.pageSize);
    const skip = Number(query.$skiptoken || 0);
    const page = items.slice(skip, skip + max);
    const next = skip + max < items.length ? `${url}${path}?api-version=${query['api-version']}&$skiptoken=${skip + max}&maxresults=${max}` : null;
    return { value: page, nextLink: next };
  }

  function route(method: string, path: string, query: Record<string, string>, body: Record<string, unknown>): { status: number; body?: unknown } {
    const parts = path.split('/').filter(Boolean);
    const [collection, rawName, third, fourth] = parts;
    if (parts.length > 4) return fail(400, 'BadParameter', 'Unknown operation.');
    if (collection === 'keys' && !rawName && method === 'GET') {
      return { status: 200, body: list([...keys.values()].map((versions) => item(versions[versions.length - 1]!, false)), query, path) };
    }
    if (collection === 'deletedkeys' && rawName && !third) {
      const name = keyName(rawName);
      const entry = deleted.get(name);
      if (!entry) return fail(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
      if (method === 'GET') {
        if (entry.pendingPolls > 0) {
          entry.pendingPolls--;
          return fail(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
        }
        return { status: 200, body: deletedBundle(name, entry) };
      }
      if (method === 'DELETE') {
        if (settings.purgeProtection) {
          fail(403, 'Forbidden', 'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.');
        }
        if (entry.pendingPolls > 0) fail(409, 'Conflict', `Key ${name} is currently being deleted.`);
        deleted.delete(name);
        purged.push(name);
        return { status: 204 };
      }
    }
    if (collection !== 'keys' || !rawName) return fail(400, 'BadParameter', 'Unknown operation.');
    const name = keyName(rawName);
    if (!third) {
      if (method === 'PUT') return { status: 200, body: importKey(name, body) };
      if (method === 'DELETE') {
        const versions = keys.get(name) ?? notFound(name);
        keys.delete(name);
        const entry: DeletedEntry = { versions, deletedDate: now(), scheduledPurgeDate: now() + (settings.purgeProtection ? 90 : 7) * 86_400, pendingPolls: settings.deletionLag };
        deleted.set(name, entry);
        return { status: 200, body: deletedBundle(name, entry) };
      }
      if (method === 'GET') return { status: 200, body: bundle(find(name, undefined)) };
      if (method === 'PATCH') return { status: 200, body: update(find(name, undefined), body) };
    }
    if (third === 'create' && !fourth && method === 'POST') return { status: 200, body: create(name, body) };
    if (third === 'versions' && !fourth && method === 'GET') {
      const versions = keys.get(name) ?? notFound(name);
      return { status: 200, body: list(versions.map((v) => item(v, true)), query, path) };
    }
    if (third && !fourth && method === 'GET') return { status: 200, body: bundle(find(name, third)) };
    if (third && !fourth && method === 'PATCH') return { status: 200, body: update(find(name, third), body) };
    if (third && (fourth === 'wrapkey' || fourth === 'unwrapkey') && method === 'POST') {
      return { status: 200, body: crypto(find(name, third), fourth === 'wrapkey' ? 'wrapKey' : 'unwrapKey', body) };
    }
    return fail(400, 'BadParameter', 'Unknown operation.');
  }

  // ---------------------------------------------------------------------------------------------- HTTP

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parsed = new URL(req.url ?? '/', 'https://127.0.0.1');
    const query = Object.fromEntries(parsed.searchParams);
    const method = req.method ?? 'GET';
    const record: RecordedRequest = { method, path: parsed.pathname, query, status: 0, authorized: false };
    requests.push(record);
    const text = await readBody(req);
    const answer = (status: number, body?: unknown, headers?: Record<string, string>) => {
      record.status = status;
      send(res, status, body, headers);
    };
    try {
      const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      const expiry = auth ? tokens.get(auth[1]!) : undefined;
      if (!expiry || expiry < Date.now()) {
        const message = auth ? 'AKV10032: The token was not issued by the identity endpoint this vault trusts, or it expired.' : 'AKV10000: Request is missing a Bearer or PoP token.';
        answer(401, { error: { code: 'Unauthorized', message } }, { 'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="${VAULT_RESOURCE}"` });
        return;
      }
      record.authorized = true;
      const version = query['api-version'];
      if (!version) fail(400, 'BadParameter', "The 'api-version' query parameter is missing.");
      if (!API_VERSION.test(version!)) fail(400, 'BadParameter', `The specified version (${version}) is not recognized.`);
      const fault = faults.find((f) => f.times > 0 && (!f.when || f.when({ method, path: parsed.pathname })));
      if (fault) {
        fault.times--;
        const message = fault.echoBody ? `Upstream failure while handling: ${text}` : `Injected fault ${fault.status}.`;
        answer(fault.status, { error: { code: fault.status === 429 ? 'Throttled' : 'ServiceUnavailable', message } }, fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {});
        return;
      }
      let body: Record<string, unknown> = {};
      if (method === 'PUT' || method === 'POST' || method === 'PATCH') {
        if (!/^application\/json(;|$)/.test(req.headers['content-type'] ?? '')) fail(400, 'BadParameter', 'The request body must be application/json.');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          return fail(400, 'BadParameter', 'The request body is not JSON.');
        }
        if (!isObject(json)) fail(400, 'BadParameter', 'The request body must be a JSON object.');
        body = json as Record<string, unknown>;
      }
      const result = route(method, parsed.pathname, query, body);
      answer(result.status, result.body);
    } catch (err) {
      if (err instanceof HttpFailure) answer(err.status, { error: { code: err.code, message: err.message } });
      else answer(500, { error: { code: 'InternalServerError', message: 'The double failed.' } });
    }
  }

  /** App Service's managed identity endpoint (api-version 2019-08-01, X-IDENTITY-HEADER). */
  function identity(req: IncomingMessage, res: ServerResponse): void {
    tokenRequests++;
    const parsed = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || parsed.pathname !== '/msi/token') return send(res, 404, { error: 'not_found' });
    if (req.headers['x-identity-header'] !== identityHeader) return send(res, 401, { error: 'unauthorized', error_description: 'X-IDENTITY-HEADER is missing or wrong.' });
    if (parsed.searchParams.get('api-version') !== '2019-08-01') return send(res, 400, { error: 'invalid_request', error_description: 'api-version must be 2019-08-01.' });
    const resource = parsed.searchParams.get('resource');
    if (resource !== VAULT_RESOURCE) return send(res, 400, { error: 'invalid_resource', error_description: `No token for resource ${resource ?? '(none)'}.` });
    send(res, 200, { access_token: issueToken(), expires_on: String(now() + 3600), resource, token_type: 'Bearer' });
  }

  const vault = createHttpsServer({ key: keyPem, cert: certPem }, (req, res) => void handle(req, res));
  const identityServer = createHttpServer(identity);
  const listen = (server: Server): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
  url = `https://127.0.0.1:${await listen(vault)}`;
  const identityEndpoint = `http://127.0.0.1:${await listen(identityServer)}/msi/token`;
  const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

  return {
    url,
    caPem,
    caFile,
    identityEndpoint,
    identityHeader,
    tenantId,
    identityEnv: () => ({ IDENTITY_ENDPOINT: identityEndpoint, IDENTITY_HEADER: identityHeader }),
    requests,
    tokenRequests: () => tokenRequests,
    options: settings,
    failNext: (fault) => faults.push({ ...fault }),
    clearFaults: () => faults.splice(0),
    issueToken,
    liveKeys: () => [...keys.values()].flat().map(({ name, version, kty, keyOps, enabled, tags }) => ({ name, version, kty, keyOps, enabled, tags })),
    deletedKeyNames: () => [...deleted.keys()],
    purgedKeyNames: () => [...purged],
    close: async () => {
      vault.closeAllConnections();
      identityServer.closeAllConnections();
      await Promise.all([close(vault), close(identityServer)]);
    },
  };
}
