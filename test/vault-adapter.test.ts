/**
 * One contract for every `Vault`: the local vault on real files, and the Azure Key Vault adapter (vault/azure.ts)
 * against the Key Vault REST test double (test/support/keyvault-double.ts) — Lowkey Vault cannot run on this machine
 * (its app is not on the Maven mirror, there is no Docker), and it has no BYOK (`key_hsm`) either. When
 * CMK_TEST_AZURE_VAULT_URL names a real vault (Azure, or a Lowkey Vault started elsewhere, with IDENTITY_ENDPOINT and
 * IDENTITY_HEADER for its token endpoint), the same contract runs against it too, BYOK left out (Lowkey Vault lacks it;
 * Azure needs a Premium vault for it).
 *
 * Then what only the Azure adapter has: the challenge flow, throttling and transient faults (counted in requests,
 * never timed), no key material in any error, delete + purge, purge protection, paging — and the double's own
 * refusals, so that it cannot silently accept what Azure would refuse.
 */
import { constants, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { ConfigError, loadConfig } from '../config';
import { azureVaultUrlFor } from '../config/vault';
import { thumbprintOf } from '../common/keys';
import { AzureKeyVault, AzureKeyVaultError, azureKeyName } from '../vault/azure';
import { buildVault } from '../vault';
import { LocalVault, VaultError } from '../vault/local';
import type { Vault } from '../vault/types';
import { makeByok } from '../harness/keyfiles';
import { startKeyVaultDouble, VAULT_RESOURCE, type KeyVaultDouble } from './support/keyvault-double';

const rsa = (bits = 2048): KeyObject => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
const der = (key: KeyObject): Buffer => key.export({ type: 'pkcs8', format: 'der' });
const oaep256 = (publicKeyPem: string, plaintext: Buffer): Buffer => publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
/** Names unique per run: a real vault keeps what earlier runs left. */
const run = randomBytes(3).toString('hex');
const unique = (prefix: string): string => `${prefix}-${run}-${randomBytes(3).toString('hex')}`;
const tenantOptions = { purpose: 'tenant' as const, enabled: true, tags: { tenant: 'a', region: 'default' } };

let double: KeyVaultDouble;
const realVaultUrl = process.env.CMK_TEST_AZURE_VAULT_URL || undefined;
const savedIdentityEnv = { IDENTITY_ENDPOINT: process.env.IDENTITY_ENDPOINT, IDENTITY_HEADER: process.env.IDENTITY_HEADER };

beforeAll(async () => {
  double = await startKeyVaultDouble();
  // As App Service sets them, so DefaultAzureCredential finds the double's managed-identity endpoint — unless a
  // real vault's own IDENTITY_* are in force (see doubleCredential).
  if (!realVaultUrl) Object.assign(process.env, double.identityEnv());
});

afterAll(async () => {
  for (const [name, value] of Object.entries(savedIdentityEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await double?.close();
});

/**
 * msal-node picks the managed-identity source once per process; with a real vault configured its IDENTITY_* win,
 * and the double's tokens are then fetched from its endpoint directly, exactly as msal would.
 */
function doubleCredential(target: KeyVaultDouble): TokenCredential {
  if (!realVaultUrl) return new DefaultAzureCredential();
  return {
    async getToken() {
      const response = await fetch(`${target.identityEndpoint}?api-version=2019-08-01&resource=${encodeURIComponent(VAULT_RESOURCE)}`, { headers: { 'X-IDENTITY-HEADER': target.identityHeader } });
      const body = (await response.json()) as { access_token: string; expires_on: string };
      return { token: body.access_token, expiresOnTimestamp: Number(body.expires_on) * 1000 };
    },
  };
}

function azureOnDouble(options: { purgeRefused?: (e: { azureName: string; scheduledPurgeDate?: string }) => void } = {}): AzureKeyVault {
  const target = double;
  return new AzureKeyVault({
    vaultUrl: target.url,
    credential: doubleCredential(target),
    disableChallengeResourceVerification: true,
    trustedCaPem: target.caPem,
    // Fast backoff for injected 5xx; Retry-After (429) is honoured whatever these say.
    retry: { retryDelayInMs: 10, maxRetryDelayInMs: 100 },
    deletePollIntervalMs: 20,
    ...(options.purgeRefused ? { onPurgeRefused: options.purgeRefused } : {}),
  });
}

interface Subject {
  label: string;
  make: () => Vault;
  /** Why BYOK cannot run here, or null when it can. */
  byokSkipped: string | null;
}

const subjects: Subject[] = [
  { label: 'local vault', make: () => new LocalVault({ dataDir: mkdtempSync(join(tmpdir(), 'cmk-vault-contract-')), masterKey: randomBytes(32) }), byokSkipped: null },
  { label: 'Azure adapter on the Key Vault double', make: () => azureOnDouble(), byokSkipped: null },
  ...(realVaultUrl
    ? [
        {
          label: `Azure adapter on ${realVaultUrl}`,
          make: () =>
            new AzureKeyVault({
              vaultUrl: realVaultUrl,
              credential: new DefaultAzureCredential(),
              disableChallengeResourceVerification: process.env.CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION === 'true',
              ...(process.env.CMK_TEST_AZURE_VAULT_CA_FILE ? { trustedCaPem: readFileSync(process.env.CMK_TEST_AZURE_VAULT_CA_FILE, 'utf8') } : {}),
              deletePollIntervalMs: 500,
            }),
          byokSkipped: 'Lowkey Vault has no BYOK (key_hsm), and Azure needs a Premium vault with an HSM KEK for it',
        },
      ]
    : []),
];

describe.each(subjects)('Vault contract: $label', ({ make, byokSkipped }) => {
  let vault: Vault;
  beforeAll(() => {
    vault = make();
  });
  const byokTest = byokSkipped ? test.skip : test;

  test('import a PKCS#8 key; get it back with its kid, thumbprint (SHA-256 of the SPKI), purpose, tags and public key', async () => {
    const key = rsa();
    const name = unique('tenant-imp');
    const info = await vault.importKey(name, der(key), tenantOptions);
    expect(info).toMatchObject({ name, version: expect.stringMatching(/^[0-9a-f]{32}$/), purpose: 'tenant', enabled: true, tags: tenantOptions.tags, thumbprint: thumbprintOf(key) });
    expect(Date.parse(info.createdAt)).toBeGreaterThan(Date.now() - 120_000);
    expect(await vault.getKey(info)).toEqual(info);
    expect(createPublicKey(await vault.getPublicKeyPem(info)).export({ type: 'spki', format: 'der' })).toEqual(createPublicKey(key).export({ type: 'spki', format: 'der' }));
    expect(await vault.getKey({ name, version: 'f'.repeat(32) })).toBeUndefined();
    await expect(vault.importKey('Not_A_Name', der(key), tenantOptions)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  test('listVersions: every live version, disabled ones too, oldest first; an unknown name lists nothing', async () => {
    const name = unique('tenant-list');
    const made = [];
    for (const enabled of [true, false, true]) made.push(await vault.importKey(name, der(rsa()), { ...tenantOptions, enabled }));
    const listed = await vault.listVersions(name);
    expect(listed.map((k) => k.version)).toEqual(made.map((k) => k.version));
    expect(listed.map((k) => k.enabled)).toEqual([true, false, true]);
    expect(await vault.listVersions(unique('tenant-none'))).toEqual([]);
  });

  test('disable and enable: a disabled key is still readable but refuses to wrap, unwrap and verify', async () => {
    const key = await vault.importKey(unique('tenant-dis'), der(rsa()), { ...tenantOptions, enabled: false });
    expect((await vault.getKey(key))?.enabled).toBe(false);
    await expect(vault.wrapKey(key, Buffer.alloc(32, 7))).rejects.toMatchObject({ name: 'VaultError', reason: 'disabled' });
    await vault.setEnabled(key, true);
    expect((await vault.getKey(key))?.enabled).toBe(true);
    const wrapped = await vault.wrapKey(key, Buffer.alloc(32, 7));
    await vault.setEnabled(key, false);
    await expect(vault.unwrapKey(key, wrapped)).rejects.toBeInstanceOf(VaultError);
    await expect(vault.unwrapKey(key, wrapped)).rejects.toMatchObject({ reason: 'disabled' });
    await expect(vault.verify(key, Buffer.from('x'), Buffer.alloc(256))).rejects.toMatchObject({ reason: 'disabled' });
  });

  test('wrap and unwrap (RSA-OAEP-256) round trip; unwrap of a ciphertext made outside with the public key', async () => {
    const key = await vault.importKey(unique('tenant-wrap'), der(rsa()), tenantOptions);
    const dek = randomBytes(32);
    const wrapped = await vault.wrapKey(key, dek);
    expect(wrapped).toHaveLength(256);
    expect(await vault.unwrapKey(key, wrapped)).toEqual(dek);
    const outside = oaep256(await vault.getPublicKeyPem(key), dek);
    expect(await vault.unwrapKey(key, outside)).toEqual(dek);
  });

  test('deleteKey withdraws exactly one version while another version of the same name still unwraps; idempotent', async () => {
    const name = unique('tenant-del');
    const older = await vault.importKey(name, der(rsa()), tenantOptions);
    const newer = await vault.importKey(name, der(rsa()), tenantOptions);
    const dek = randomBytes(32);
    const [wrappedOld, wrappedNew] = [await vault.wrapKey(older, dek), await vault.wrapKey(newer, dek)];
    await vault.deleteKey(older);
    expect(await vault.getKey(older)).toBeUndefined();
    expect((await vault.listVersions(name)).map((k) => k.version)).toEqual([newer.version]);
    expect(await vault.unwrapKey(newer, wrappedNew)).toEqual(dek);
    await expect(vault.unwrapKey(older, wrappedOld)).rejects.toMatchObject({ reason: 'not-found' });
    await expect(vault.deleteKey(older)).resolves.toBeUndefined();
    await expect(vault.deleteKey({ name, version: '0'.repeat(32) })).resolves.toBeUndefined();
  });

  byokTest('BYOK: a key wrapped for the tenant\'s KEK is unwrapped inside the vault and imported', async () => {
    const kekName = unique('kek-a');
    const { key: kek, publicKeyPem } = await vault.createKek(kekName);
    expect(kek).toMatchObject({ purpose: 'kek', enabled: true, thumbprint: thumbprintOf(createPublicKey(publicKeyPem)) });
    const tenantKey = rsa();
    const file = JSON.parse(makeByok(publicKeyPem, kek.kid, tenantKey).toString()) as { header: { kid: string }; ciphertext: string };
    const imported = await vault.importByok(unique('tenant-byok'), { kid: file.header.kid, ciphertext: Buffer.from(file.ciphertext, 'base64url') }, tenantOptions, kekName);
    expect(imported).toMatchObject({ purpose: 'tenant', enabled: true, thumbprint: thumbprintOf(tenantKey) });
    const dek = randomBytes(32);
    expect(await vault.unwrapKey(imported, await vault.wrapKey(imported, dek))).toEqual(dek);
  });

  byokTest("BYOK: another tenant's KEK, or one the vault does not hold, is refused INVALID_KEY_FILE and nothing is imported", async () => {
    const mine = unique('kek-mine');
    await vault.createKek(mine);
    const { key: theirs, publicKeyPem: theirPem } = await vault.createKek(unique('kek-theirs'));
    const file = JSON.parse(makeByok(theirPem, theirs.kid, rsa()).toString()) as { ciphertext: string };
    const name = unique('tenant-byok-x');
    await expect(vault.importByok(name, { kid: theirs.kid, ciphertext: Buffer.from(file.ciphertext, 'base64url') }, tenantOptions, mine)).rejects.toMatchObject({ code: 'INVALID_KEY_FILE' });
    await expect(vault.importByok(name, { kid: 'https://elsewhere.vault.azure.net/keys/kek-x/' + '0'.repeat(32), ciphertext: Buffer.alloc(300) }, tenantOptions, mine)).rejects.toMatchObject({ code: 'INVALID_KEY_FILE' });
    expect(await vault.listVersions(name)).toEqual([]);
  });

  test('R2: an RSA-3072 key is refused UNSUPPORTED_KEY and nothing is stored', async () => {
    const name = unique('tenant-3072');
    await expect(vault.importKey(name, der(rsa(3072)), tenantOptions)).rejects.toMatchObject({ code: 'UNSUPPORTED_KEY' });
    expect(await vault.listVersions(name)).toEqual([]);
  });

  byokTest('R2 through BYOK: an RSA-3072 key in a .byok is refused UNSUPPORTED_KEY and nothing is left', async () => {
    const kekName = unique('kek-3072');
    const { key: kek, publicKeyPem } = await vault.createKek(kekName);
    const file = JSON.parse(makeByok(publicKeyPem, kek.kid, rsa(3072)).toString()) as { ciphertext: string };
    const name = unique('tenant-byok-3072');
    await expect(vault.importByok(name, { kid: kek.kid, ciphertext: Buffer.from(file.ciphertext, 'base64url') }, tenantOptions, kekName)).rejects.toMatchObject({ code: 'UNSUPPORTED_KEY' });
    expect(await vault.listVersions(name)).toEqual([]);
  });

  test('verify: an RSASSA-PKCS1-v1_5 SHA-256 signature by the private key holds; another message does not', async () => {
    const key = rsa();
    const info = await vault.importKey(unique('tenant-verify'), der(key), tenantOptions);
    const challenge = Buffer.from('cmk-lock-challenge:tenant-a:alice');
    const signature = sign('sha256', challenge, { key, padding: constants.RSA_PKCS1_PADDING });
    expect(await vault.verify(info, challenge, signature)).toBe(true);
    expect(await vault.verify(info, Buffer.from('another message'), signature)).toBe(false);
  });

  test('createKey makes an RSA-2048 provider key inside the vault', async () => {
    const name = unique('provider');
    const info = await vault.createKey(name, { purpose: 'provider', enabled: true, tags: { region: 'emea' } });
    expect(info).toMatchObject({ name, purpose: 'provider', enabled: true, tags: { region: 'emea' } });
    expect(createPublicKey(await vault.getPublicKeyPem(info)).asymmetricKeyDetails?.modulusLength).toBe(2048);
    const dek = randomBytes(32);
    expect(await vault.unwrapKey(info, await vault.wrapKey(info, dek))).toEqual(dek);
  });
});

// ------------------------------------------------------------------------------------------------------------------

/** Requests the double saw from `from` on, as "METHOD path status", with the vault's names shortened. */
const seen = (from: number): string[] => double.requests.slice(from).map((r) => `${r.method} ${r.path.replace(/\/[0-9a-f]{32}/g, '/<v>')} ${r.status}`);

describe('Azure adapter only (on the double)', () => {
  test('the challenge flow: the first request goes without a token, is answered 401 with the challenge, then carries the identity endpoint\'s token', async () => {
    const vault = azureOnDouble();
    const from = double.requests.length;
    const tokensBefore = double.tokenRequests();
    const key = await vault.importKey(unique('tenant-challenge'), der(rsa()), tenantOptions);
    const first = double.requests.slice(from);
    expect(first.map((r) => [r.method, r.status, r.authorized])).toEqual([
      ['PUT', 401, false],
      ['PUT', 200, true],
    ]);
    expect(first[0]!.query['api-version']).toBe('2025-07-01');
    // msal caches the token per process: at most one more token request, and none for the next call.
    expect(double.tokenRequests() - tokensBefore).toBeLessThanOrEqual(1);
    const tokens = double.tokenRequests();
    await vault.getKey(key);
    expect(double.tokenRequests()).toBe(tokens);
  });

  test('requests per operation (measured): import 1, get 1, enable 1, first wrap 3 then 1, unwrap 1, verify 1, delete 3', async () => {
    const vault = azureOnDouble();
    await vault.getKey({ name: 'warm-up', version: '0'.repeat(32) });
    let from = double.requests.length;
    const step = async (run: () => Promise<unknown>): Promise<string[]> => {
      from = double.requests.length;
      await run();
      return seen(from);
    };
    const key = rsa();
    const info = await vault.importKey(unique('tenant-count'), der(key), { ...tenantOptions, enabled: false });
    expect(seen(from)).toEqual([`PUT /keys/${azureKeyName(info)} 200`]);
    expect(await step(() => vault.getKey(info))).toHaveLength(1);
    expect(await step(() => vault.setEnabled(info, true))).toEqual([`PATCH /keys/${azureKeyName(info)}/ 200`]);
    let wrapped: Buffer = Buffer.alloc(0);
    // The first wrap reads the key for its id and gives it its own client, which meets the challenge once.
    expect(await step(async () => (wrapped = await vault.wrapKey(info, randomBytes(32))))).toEqual([
      expect.stringMatching(/^GET .* 200$/),
      expect.stringMatching(/^POST .*\/wrapkey 401$/),
      expect.stringMatching(/^POST .*\/wrapkey 200$/),
    ]);
    expect(await step(() => vault.wrapKey(info, randomBytes(32)))).toHaveLength(1);
    expect(await step(() => vault.unwrapKey(info, wrapped))).toEqual([expect.stringMatching(/^POST .*\/unwrapkey 200$/)]);
    expect(await step(() => vault.verify(info, Buffer.from('m'), sign('sha256', Buffer.from('m'), key)))).toHaveLength(1);
    expect(await step(() => vault.deleteKey(info))).toEqual([
      `DELETE /keys/${azureKeyName(info)} 200`,
      `GET /deletedkeys/${azureKeyName(info)} 200`,
      `DELETE /deletedkeys/${azureKeyName(info)} 204`,
    ]);
    expect(await step(() => vault.deleteKey(info))).toEqual([expect.stringMatching(/^DELETE \/keys\/\S+ 404$/), expect.stringMatching(/^GET \/deletedkeys\/\S+ 404$/)]);
  });

  test('429 with Retry-After is retried after the wait, then succeeds (counted in requests)', async () => {
    const vault = azureOnDouble();
    const info = await vault.importKey(unique('tenant-429'), der(rsa()), tenantOptions);
    const path = `/keys/${azureKeyName(info)}/`;
    double.failNext({ status: 429, times: 2, retryAfter: 1, when: (r) => r.method === 'GET' && r.path === path });
    const from = double.requests.length;
    expect(await vault.getKey(info)).toMatchObject({ version: info.version });
    expect(double.requests.slice(from).map((r) => r.status)).toEqual([429, 429, 200]);
  });

  test('503 is retried by the SDK; a fault that outlasts the retries surfaces as a retryable AzureKeyVaultError', async () => {
    const vault = azureOnDouble();
    const info = await vault.importKey(unique('tenant-503'), der(rsa()), tenantOptions);
    const wrapped = await vault.wrapKey(info, Buffer.alloc(32, 1));
    const unwrapPath = (r: { method: string; path: string }) => r.method === 'POST' && r.path.endsWith('/unwrapkey');
    double.failNext({ status: 503, times: 2, when: unwrapPath });
    let from = double.requests.length;
    expect(await vault.unwrapKey(info, wrapped)).toEqual(Buffer.alloc(32, 1));
    expect(double.requests.slice(from).map((r) => r.status)).toEqual([503, 503, 200]);

    double.failNext({ status: 503, times: 100, when: unwrapPath });
    from = double.requests.length;
    const failure = (await vault.unwrapKey(info, wrapped).catch((e: unknown) => e)) as AzureKeyVaultError;
    expect(failure).toBeInstanceOf(AzureKeyVaultError);
    expect(failure).toMatchObject({ status: 503 });
    // maxRetries 4: the first try and four retries.
    expect(double.requests.slice(from)).toHaveLength(5);
    double.clearFaults();
  });

  test('a 500 on import that echoes the request leaks no key material into the error (message, stack, JSON, inspect)', async () => {
    const vault = azureOnDouble();
    const key = rsa();
    const jwk = key.export({ format: 'jwk' });
    const privateFields = [jwk.d, jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi].map(String);
    double.failNext({ status: 500, times: 100, echoBody: true, when: (r) => r.method === 'PUT' });
    const failure = (await vault.importKey(unique('tenant-canary'), der(key), tenantOptions).catch((e: unknown) => e)) as Error;
    double.clearFaults();
    // The double really did echo the body: this is what the adapter had to clean.
    expect(failure).toBeInstanceOf(AzureKeyVaultError);
    expect(failure.message).toMatch(/^Azure Key Vault answered 500 .*Upstream failure while handling/);
    const renderings = [failure.message, String(failure.stack), JSON.stringify(failure), inspect(failure, { depth: 10, showHidden: true })];
    for (const text of renderings) {
      for (const field of privateFields) {
        for (let i = 0; i + 24 <= field.length; i += 24) expect(text.includes(field.slice(i, i + 24))).toBe(false);
      }
    }
    expect(Object.keys(failure).sort()).toEqual(['code', 'name', 'status']);
    expect((failure as { cause?: unknown }).cause).toBeUndefined();
  });

  test('deleteKey purges: nothing stays among the deleted keys; a slow soft delete is polled until it shows', async () => {
    double.options.deletionLag = 2;
    try {
      const vault = azureOnDouble();
      const info = await vault.importKey(unique('tenant-purge'), der(rsa()), tenantOptions);
      const from = double.requests.length;
      await vault.deleteKey(info);
      expect(double.deletedKeyNames()).not.toContain(azureKeyName(info));
      expect(double.purgedKeyNames()).toContain(azureKeyName(info));
      expect(seen(from).filter((r) => r.startsWith('GET /deletedkeys/'))).toHaveLength(3);
    } finally {
      double.options.deletionLag = 0;
    }
  });

  test('purge protection: the key is deleted (unusable), not purged, and reported — deleteKey still completes', async () => {
    double.options.purgeProtection = true;
    try {
      const refused: Array<{ azureName: string; scheduledPurgeDate?: string }> = [];
      const vault = azureOnDouble({ purgeRefused: (e) => refused.push(e) });
      const info = await vault.importKey(unique('tenant-guarded'), der(rsa()), tenantOptions);
      const wrapped = await vault.wrapKey(info, Buffer.alloc(32, 2));
      const from = double.requests.length;
      await vault.deleteKey(info);
      expect(refused).toEqual([{ ref: info, azureName: azureKeyName(info), scheduledPurgeDate: expect.any(String) }]);
      expect(Date.parse(refused[0]!.scheduledPurgeDate!)).toBeGreaterThan(Date.now() + 89 * 86_400_000);
      expect(double.deletedKeyNames()).toContain(azureKeyName(info));
      expect(seen(from).some((r) => r.startsWith('DELETE /deletedkeys/'))).toBe(false);
      expect(await vault.getKey(info)).toBeUndefined();
      await expect(vault.unwrapKey(info, wrapped)).rejects.toMatchObject({ reason: 'not-found' });
      await expect(vault.deleteKey(info)).resolves.toBeUndefined();
      expect(refused).toHaveLength(2);
    } finally {
      double.options.purgeProtection = false;
    }
  });

  test('listVersions pages through the whole key list (nextLink) and keeps only that name\'s versions', async () => {
    double.options.pageSize = 2;
    try {
      const vault = azureOnDouble();
      const name = unique('provider-paged');
      const a = await vault.createKey(name, { purpose: 'provider', enabled: true });
      await vault.createKey(`${name}-x`, { purpose: 'provider', enabled: true });
      const b = await vault.importKey(name, der(rsa()), { purpose: 'provider', enabled: false });
      const from = double.requests.length;
      expect((await vault.listVersions(name)).map((k) => k.version)).toEqual([a.version, b.version]);
      const pages = seen(from).filter((r) => r.startsWith('GET /keys 200'));
      expect(pages).toHaveLength(Math.ceil(double.liveKeys().length / 2));
    } finally {
      double.options.pageSize = 25;
    }
  });

  test('every Azure key name fits SQL Server EKM (at most 26 letters, digits and dashes) and still maps one-to-one', async () => {
    const vault = azureOnDouble();
    const name = `tenant-${'a'.repeat(63)}-${'b'.repeat(40)}`;
    const other = `${name.slice(0, -1)}c`;
    const [one, two] = [await vault.importKey(name, der(rsa()), tenantOptions), await vault.importKey(other, der(rsa()), tenantOptions)];
    for (const key of [one, two]) expect(azureKeyName(key)).toMatch(/^[0-9a-zA-Z-]{1,26}$/);
    expect(azureKeyName(one)).not.toBe(azureKeyName(two));
    expect(azureKeyName(one)).not.toBe(azureKeyName({ name, version: two.version }));
    expect((await vault.listVersions(name)).map((k) => k.version)).toEqual([one.version]);
    expect(await vault.getKey({ name: other, version: one.version })).toBeUndefined();
  });
});

// ------------------------------------------------------------------------------------------------------------------

describe("the double refuses what Azure would refuse (so it cannot silently accept anything)", () => {
  function raw(method: string, path: string, options: { token?: string | null; body?: string; contentType?: string } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: { error?: { code?: string; message?: string } } }> {
    const token = options.token === undefined ? double.issueToken() : options.token;
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${double.url}${path}`,
        {
          method,
          ca: double.caPem,
          headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(options.body !== undefined ? { 'content-type': options.contentType ?? 'application/json' } : {}) },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as { error?: { code?: string; message?: string } }) : {} }));
        },
      );
      req.on('error', reject);
      req.end(options.body);
    });
  }
  const v = 'api-version=7.5';
  const jwk = (): Record<string, string> => {
    const exported = rsa().export({ format: 'jwk' });
    return { kty: 'RSA', n: exported.n!, e: exported.e!, d: exported.d!, p: exported.p!, q: exported.q!, dp: exported.dp!, dq: exported.dq!, qi: exported.qi! };
  };

  test('no token: 401 with the challenge; a token the identity endpoint did not issue: 401', async () => {
    const none = await raw('GET', `/keys?${v}`, { token: null });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe(`Bearer authorization="https://login.microsoftonline.com/${double.tenantId}", resource="https://vault.azure.net"`);
    expect((await raw('GET', `/keys?${v}`, { token: 'made-up' })).status).toBe(401);
  });

  test('api-version missing or unknown: 400 BadParameter', async () => {
    expect(await raw('GET', '/keys')).toMatchObject({ status: 400, body: { error: { code: 'BadParameter', message: expect.stringMatching(/api-version/) } } });
    expect((await raw('GET', '/keys?api-version=1.0')).status).toBe(400);
    expect((await raw('GET', `/keys?${v}`)).status).toBe(200);
  });

  test('key names outside [0-9a-zA-Z-]{1,127}: 400; an unknown key: 404 KeyNotFound in Azure\'s shape', async () => {
    expect((await raw('GET', `/keys/bad_name/?${v}`)).status).toBe(400);
    expect((await raw('GET', `/keys/${'a'.repeat(128)}/?${v}`)).status).toBe(400);
    expect(await raw('GET', `/keys/no-such-key/?${v}`)).toEqual(expect.objectContaining({ status: 404, body: { error: { code: 'KeyNotFound', message: expect.stringContaining('no-such-key') } } }));
  });

  test('bodies: JSON content type, base64url JWK fields, at most 15 tags of at most 256 characters', async () => {
    const put = (body: unknown, contentType?: string) => raw('PUT', `/keys/shape-check?${v}`, { body: JSON.stringify(body), ...(contentType ? { contentType } : {}) });
    expect((await put({ key: jwk() }, 'text/plain')).status).toBe(400);
    expect((await put({ key: { ...jwk(), n: Buffer.from(jwk().n!, 'base64url').toString('base64') + '==' } })).status).toBe(400);
    expect((await put({ key: jwk(), tags: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, 'x'])) })).status).toBe(400);
    expect((await put({ key: jwk(), tags: { long: 'x'.repeat(257) } })).status).toBe(400);
    expect((await put({ key: jwk(), Hsm: 'yes' })).status).toBe(400);
    const ok = await put({ key: jwk(), tags: Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`t${i}`, 'x'.repeat(256)])) });
    expect(ok.status).toBe(200);
    expect((await raw('DELETE', `/keys/shape-check?${v}`)).status).toBe(200);
    expect((await raw('DELETE', `/deletedkeys/shape-check?${v}`)).status).toBe(204);
  });

  test('crypto on a disabled key: 403 "Operation wrapKey is not allowed on a disabled key."', async () => {
    expect((await raw('PUT', `/keys/shape-disabled?${v}`, { body: JSON.stringify({ key: jwk(), attributes: { enabled: false } }) })).status).toBe(200);
    const version = double.liveKeys().find((k) => k.name === 'shape-disabled')!.version;
    const wrap = await raw('POST', `/keys/shape-disabled/${version}/wrapkey?${v}`, { body: JSON.stringify({ alg: 'RSA-OAEP-256', value: randomBytes(32).toString('base64url') }) });
    expect(wrap).toMatchObject({ status: 403, body: { error: { code: 'Forbidden', message: 'Operation wrapKey is not allowed on a disabled key.' } } });
  });

  test('the identity endpoint wants X-IDENTITY-HEADER, api-version 2019-08-01 and the vault resource', async () => {
    const get = (query: string, header?: string) => fetch(`${double.identityEndpoint}?${query}`, { headers: header ? { 'X-IDENTITY-HEADER': header } : {} });
    const resource = `resource=${encodeURIComponent(VAULT_RESOURCE)}`;
    expect((await get(`api-version=2019-08-01&${resource}`)).status).toBe(401);
    expect((await get(`api-version=2019-08-01&${resource}`, 'wrong')).status).toBe(401);
    expect((await get(`api-version=2017-09-01&${resource}`, double.identityHeader)).status).toBe(400);
    expect((await get('api-version=2019-08-01&resource=https://management.azure.com', double.identityHeader)).status).toBe(400);
    const ok = await get(`api-version=2019-08-01&${resource}`, double.identityHeader);
    expect(await ok.json()).toMatchObject({ access_token: expect.any(String), expires_on: expect.stringMatching(/^\d+$/), resource: VAULT_RESOURCE, token_type: 'Bearer' });
  });
});

// ------------------------------------------------------------------------------------------------------------------

describe('configuration (config/vault.ts) and buildVault', () => {
  const base = { CMK_DATA_DIR: mkdtempSync(join(tmpdir(), 'cmk-vault-config-')), CMK_SECRETS_DIR: mkdtempSync(join(tmpdir(), 'cmk-vault-secrets-')) };

  test('local by default; azure with its URL, per-region URLs and the emulator switch', () => {
    expect(loadConfig(base).vault).toEqual({ kind: 'local' });
    expect(buildVault(loadConfig(base))).toBeInstanceOf(LocalVault);
    const config = loadConfig({
      ...base,
      CMK_REGIONS: 'emea,eu-west',
      CMK_VAULT: 'azure',
      CMK_AZURE_VAULT_URL: 'https://contoso-cmk.vault.azure.net/',
      CMK_AZURE_VAULT_URL_EU_WEST: 'https://contoso-cmk-euw.vault.azure.net',
      CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
    });
    expect(config.vault).toEqual({
      kind: 'azure',
      azure: { vaultUrl: 'https://contoso-cmk.vault.azure.net', regionVaultUrls: { EU_WEST: 'https://contoso-cmk-euw.vault.azure.net' }, disableChallengeResourceVerification: true },
    });
    expect(azureVaultUrlFor(config.vault.azure!, 'eu-west')).toBe('https://contoso-cmk-euw.vault.azure.net');
    expect(azureVaultUrlFor(config.vault.azure!, 'emea')).toBe('https://contoso-cmk.vault.azure.net');
    expect(buildVault(config, 'eu-west')).toBeInstanceOf(AzureKeyVault);
  });

  test.each([
    [{ CMK_VAULT: 'hsm' }, /^CMK_VAULT="hsm" is not a key vault/],
    [{ CMK_VAULT: 'azure' }, /^CMK_AZURE_VAULT_URL is required when CMK_VAULT=azure/],
    [{ CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'http://contoso.vault.azure.net' }, /^CMK_AZURE_VAULT_URL="http:\/\/contoso.vault.azure.net" must be the vault's bare https URL/],
    [{ CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'not a url' }, /^CMK_AZURE_VAULT_URL="not a url" is not a URL/],
    [{ CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'https://a.vault.azure.net', CMK_AZURE_VAULT_URL_EMEA: 'https://a.vault.azure.net/keys' }, /^CMK_AZURE_VAULT_URL_EMEA=/],
    [{ CMK_VAULT: 'azure', CMK_AZURE_VAULT_URL: 'https://a.vault.azure.net', CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'yes' }, /^CMK_AZURE_DISABLE_CHALLENGE_RESOURCE_VERIFICATION="yes" is not true or false/],
  ])('refused with a sentence naming the variable: %j', (env, message) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, ...env })).toThrow(message);
  });
});
