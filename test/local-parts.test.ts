/**
 * The embedded parts on real files: the local vault (keys encrypted at rest, Azure's semantics), the encrypted
 * environment databases with their one key record, and the outbox's exactly-once delivery.
 */
import crypto, { createCipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { localParts } from './support/parts';
import { LocalVault } from '../vault/local';
import { loadOrCreateSecret } from '../common/secrets';
import { wrapForByok } from '../keyfiles';
import { createEnvironmentActivities, providerProtector } from '../activities/environments';
import { createLockActivities } from '../activities/lock';
import { thumbprintOf } from '../common/keys';

const der = (bits = 2048) => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({ type: 'pkcs8', format: 'der' });
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? filesUnder(join(dir, d.name)) : [join(dir, d.name)]));

describe('local vault', () => {
  test('wrap and unwrap with an enabled key; a disabled or deleted key refuses', async () => {
    const { vault } = localParts();
    const key = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: false });
    await expect(vault.wrapKey(key, Buffer.alloc(32, 7))).rejects.toMatchObject({ reason: 'disabled' });
    await vault.setEnabled(key, true);
    const wrapped = await vault.wrapKey(key, Buffer.alloc(32, 7));
    expect(await vault.unwrapKey(key, wrapped)).toEqual(Buffer.alloc(32, 7));
    await vault.deleteKey(key);
    expect(await vault.getKey(key)).toBeUndefined();
    await expect(vault.unwrapKey(key, wrapped)).rejects.toMatchObject({ reason: 'not-found' });
  });

  test('R2: only 2048-bit RSA keys are imported', async () => {
    const { vault } = localParts();
    await expect(vault.importKey('tenant-a-default', der(1024), { purpose: 'tenant', enabled: false })).rejects.toMatchObject({ code: 'UNSUPPORTED_KEY' });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'der' });
    await expect(vault.importKey('tenant-a-default', ec, { purpose: 'tenant', enabled: false })).rejects.toMatchObject({ code: 'UNSUPPORTED_KEY' });
    expect(await vault.listVersions('tenant-a-default')).toEqual([]);
  });

  test('no private key in the clear on disk, and records cannot be swapped', async () => {
    const { vault, config } = localParts();
    const pkcs8 = der();
    const a = await vault.importKey('tenant-a-default', pkcs8, { purpose: 'tenant', enabled: true });
    const b = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: true });
    const files = filesUnder(join(config.dataDir, 'vault'));
    for (const needle of [pkcs8.subarray(100, 140), Buffer.from(pkcs8.subarray(100, 140).toString('base64')), Buffer.from(pkcs8.subarray(100, 140).toString('hex'))]) {
      for (const f of files) expect(readFileSync(f).includes(needle)).toBe(false);
    }
    for (const f of files) expect(statSync(f).mode & 0o077).toBe(0);
    const dir = join(config.dataDir, 'vault', 'keys', 'tenant-a-default');
    renameSync(join(dir, `${a.version}.json`), join(dir, 'tmp'));
    renameSync(join(dir, `${b.version}.json`), join(dir, `${a.version}.json`));
    await expect(vault.unwrapKey(a, Buffer.alloc(256))).rejects.toMatchObject({ reason: 'tampered' });
  });

  test('a second vault instance on the same files sees every change (API service and worker)', async () => {
    const { vault, config } = localParts();
    const other = new LocalVault({ dataDir: config.dataDir, masterKey: loadOrCreateSecret(config.secretsDir, 'vault-master-key') });
    const key = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: false });
    await other.setEnabled(key, true);
    expect((await vault.getKey(key))?.enabled).toBe(true);
  });

  test("BYOK: unwrapped inside the vault with the KEK it names; an unknown KEK, or another tenant's, is refused", async () => {
    const { vault } = localParts();
    const { key: kek, publicKeyPem } = await vault.createKek('kek-a-default');
    const { key: otherKek, publicKeyPem: otherPem } = await vault.createKek('kek-b-default');
    const pkcs8 = der();
    const transfer = (pem: string, kid: string) => ({ kid, ciphertext: Buffer.from(JSON.parse(wrapForByok(pem, kid, pkcs8).toString()).ciphertext, 'base64url') });
    const imported = await vault.importByok('tenant-a-default', transfer(publicKeyPem, kek.kid), { purpose: 'tenant', enabled: true }, 'kek-a-default');
    const wrapped = await vault.wrapKey(imported, Buffer.from('dek'));
    expect(await vault.unwrapKey(imported, wrapped)).toEqual(Buffer.from('dek'));
    await expect(vault.importByok('tenant-a-default', { kid: 'kek-unknown', ciphertext: Buffer.alloc(300) }, { purpose: 'tenant', enabled: true }, 'kek-a-default')).rejects.toMatchObject({ code: 'INVALID_KEY_FILE' });
    // Tenant a's upload wrapped with tenant b's KEK: well formed, and refused all the same (tenant isolation).
    const before = await vault.listVersions('tenant-a-default');
    await expect(vault.importByok('tenant-a-default', transfer(otherPem, otherKek.kid), { purpose: 'tenant', enabled: true }, 'kek-a-default')).rejects.toMatchObject({ code: 'INVALID_KEY_FILE' });
    expect(await vault.listVersions('tenant-a-default')).toEqual(before);
  });
});

describe('private keys kept between unwraps never outlive a withdrawal (issue 20)', () => {
  const dek = Buffer.alloc(32, 9);
  /** A key that has unwrapped once, and proof that the next unwrap used the kept key (no private key parsed again). */
  async function cachedKey() {
    const parts = localParts();
    const key = await parts.vault.importKey('tenant--1-a-default', der(), { purpose: 'tenant', enabled: true });
    const wrapped = await parts.vault.wrapKey(key, dek);
    expect(await parts.vault.unwrapKey(key, wrapped)).toEqual(dek);
    const parsing = jest.spyOn(crypto, 'createPrivateKey');
    try {
      expect(await parts.vault.unwrapKey(key, wrapped)).toEqual(dek);
      expect(parsing).not.toHaveBeenCalled();
    } finally {
      parsing.mockRestore();
    }
    const other = new LocalVault({ dataDir: parts.config.dataDir, masterKey: loadOrCreateSecret(parts.config.secretsDir, 'vault-master-key') });
    return { ...parts, key, wrapped, other };
  }

  test("a lock's withdrawal (disable, delete, purge): the kept key unwraps nothing more", async () => {
    const { vault, databases, key, wrapped } = await cachedKey();
    await createLockActivities({ vault, databases }).withdrawTenantKeys({ vaultKeys: [key] });
    await expect(vault.unwrapKey(key, wrapped)).rejects.toMatchObject({ reason: 'not-found' });
  });

  test('disabled by this process, or by another one (the API service): refused at once, and again after re-reading', async () => {
    const here = await cachedKey();
    await here.vault.setEnabled(here.key, false);
    await expect(here.vault.unwrapKey(here.key, here.wrapped)).rejects.toMatchObject({ reason: 'disabled' });
    const there = await cachedKey();
    await there.other.setEnabled(there.key, false);
    await expect(there.vault.unwrapKey(there.key, there.wrapped)).rejects.toMatchObject({ reason: 'disabled' });
    await expect(there.vault.wrapKey(there.key, dek)).rejects.toMatchObject({ reason: 'disabled' });
  });

  test('deleted by another process: not found, though this one had it open', async () => {
    const { vault, other, key, wrapped } = await cachedKey();
    await other.deleteKey(key);
    await expect(vault.unwrapKey(key, wrapped)).rejects.toMatchObject({ reason: 'not-found' });
  });

  test('re-enabled in the data dir behind the vault (no MAC) after a disable: tampered, not the kept key', async () => {
    const { vault, other, key, wrapped, config } = await cachedKey();
    await other.setEnabled(key, false);
    const file = join(config.dataDir, 'vault', 'keys', key.name, `${key.version}.json`);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), enabled: true }));
    await expect(vault.unwrapKey(key, wrapped)).rejects.toMatchObject({ reason: 'tampered' });
  });

  test('many unwraps at once (off the event loop): each DEK right, the key opened once, a foreign DEK refused by name', async () => {
    const { vault } = localParts();
    const key = await vault.importKey('tenant--2-a-default', der(), { purpose: 'tenant', enabled: true });
    const deks = Array.from({ length: 24 }, () => randomBytes(32));
    const wrapped = await Promise.all(deks.map((d) => vault.wrapKey(key, d)));
    const opening = jest.spyOn(crypto.webcrypto.subtle, 'importKey');
    try {
      expect(await Promise.all(wrapped.map((w) => vault.unwrapKey(key, w)))).toEqual(deks);
      // One opening shared by the 24 concurrent unwraps: a copy per lane, not one per unwrap.
      expect(opening.mock.calls.length).toBeGreaterThanOrEqual(2);
      expect(opening.mock.calls.length).toBeLessThanOrEqual(4);
    } finally {
      opening.mockRestore();
    }
    const stranger = await vault.importKey('tenant--2-b-default', der(), { purpose: 'tenant', enabled: true });
    const foreign = await vault.wrapKey(stranger, deks[0]!);
    await expect(vault.unwrapKey(key, foreign)).rejects.toThrow(`cannot be unwrapped with tenant--2-a-default/${key.version}`);
    // A refused ciphertext does not spoil the kept key.
    expect(await vault.unwrapKey(key, wrapped[3]!)).toEqual(deks[3]);
  });
});

describe('local vault records are authenticated (issue 16)', () => {
  const recordPath = (dataDir: string, ref: { name: string; version: string }) => join(dataDir, 'vault', 'keys', ref.name, `${ref.version}.json`);
  const readRecord = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const challenge = Buffer.from('lock challenge');

  test("another public key put in a record (the data dir writable, the secrets dir not) does not pass a proof of possession", async () => {
    const { vault, config } = localParts();
    const tenantKey = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: true });
    const mallory = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const path = recordPath(config.dataDir, tenantKey);
    writeFileSync(path, JSON.stringify({ ...readRecord(path), publicKeyPem: mallory.publicKey.export({ type: 'spki', format: 'pem' }), thumbprint: thumbprintOf(mallory.publicKey) }));
    const forged = sign('sha256', challenge, mallory.privateKey);
    await expect(vault.verify(tenantKey, challenge, forged)).rejects.toMatchObject({ reason: 'tampered', message: expect.stringMatching(/changed outside the vault/) });
    await expect(vault.getPublicKeyPem(tenantKey)).rejects.toMatchObject({ reason: 'tampered' });
  });

  test('a disabled key re-enabled, or its purpose changed, in the data dir is refused', async () => {
    const { vault, config } = localParts();
    const tenantKey = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: true });
    await vault.setEnabled(tenantKey, false);
    const path = recordPath(config.dataDir, tenantKey);
    writeFileSync(path, JSON.stringify({ ...readRecord(path), enabled: true }));
    await expect(vault.wrapKey(tenantKey, Buffer.alloc(32, 1))).rejects.toMatchObject({ reason: 'tampered' });
    await vault.setEnabled(tenantKey, false).catch(() => undefined);
    const kek = await vault.createKek('kek-a-default');
    const kekPath = recordPath(config.dataDir, kek.key);
    writeFileSync(kekPath, JSON.stringify({ ...readRecord(kekPath), purpose: 'tenant' }));
    await expect(vault.getKey(kek.key)).rejects.toMatchObject({ reason: 'tampered' });
    // Stripping the MAC does not make a record pass for one written before records were authenticated.
    const fresh = await vault.importKey('tenant-a-default', der(), { purpose: 'tenant', enabled: false });
    const freshPath = recordPath(config.dataDir, fresh);
    const { mac: _mac, ...unsigned } = readRecord(freshPath);
    writeFileSync(freshPath, JSON.stringify({ ...unsigned, enabled: true }));
    await expect(vault.wrapKey(fresh, Buffer.alloc(32, 1))).rejects.toMatchObject({ reason: 'tampered' });
  });

  test('a record written before records were authenticated is checked against its private key, then sealed with a MAC', async () => {
    const { vault, config } = localParts();
    const masterKey = loadOrCreateSecret(config.secretsDir, 'vault-master-key');
    // The earlier format: the private key under AES-GCM with name/version as additional data, the rest in the clear.
    const legacy = (name: string, version: string, publicOf: string) => {
      const pkcs8 = der();
      const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', masterKey, iv);
      cipher.setAAD(Buffer.from(`cmk-local-vault:${name}/${version}`));
      const ciphertext = Buffer.concat([cipher.update(pkcs8), cipher.final()]);
      const publicKey = publicOf === 'own' ? createPublicKey(key) : generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
      const record = {
        name,
        version,
        kid: `local-vault:/keys/${name}/${version}`,
        thumbprint: thumbprintOf(publicKey),
        purpose: 'tenant',
        enabled: true,
        createdAt: new Date().toISOString(),
        tags: {},
        publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        sealed: { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), ciphertext: ciphertext.toString('base64') },
      };
      const dir = join(config.dataDir, 'vault', 'keys', name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${version}.json`), JSON.stringify(record));
      return { ref: { name, version }, key };
    };
    const old = legacy('tenant-old-default', 'a'.repeat(32), 'own');
    expect(await vault.getKey(old.ref)).toMatchObject({ enabled: true, thumbprint: thumbprintOf(old.key) });
    expect(readRecord(recordPath(config.dataDir, old.ref)).mac).toEqual(expect.any(String));
    expect(await vault.verify(old.ref, challenge, sign('sha256', challenge, old.key))).toBe(true);
    expect(await vault.unwrapKey(old.ref, await vault.wrapKey(old.ref, Buffer.from('dek')))).toEqual(Buffer.from('dek'));
    // An old record whose public key is not its private key's was changed: refused, not sealed.
    const swapped = legacy('tenant-old-default', 'b'.repeat(32), 'another');
    await expect(vault.getKey(swapped.ref)).rejects.toMatchObject({ reason: 'tampered' });
    expect(readRecord(recordPath(config.dataDir, swapped.ref)).mac).toBeUndefined();
  });
});

describe('environment databases', () => {
  test('rows are written and read under a DEK wrapped by one protector; the file holds no plaintext', async () => {
    const { vault, databases, config } = localParts();
    const protector = await providerProtector(vault, 'emea');
    const record = await databases.create('contoso', 'prod', protector);
    expect(record).toMatchObject({ tenant: 'contoso', env: 'prod', protector, algorithm: 'RSA-OAEP-256' });
    expect(record).not.toHaveProperty('wrappedDek');
    expect(await databases.create('contoso', 'prod', protector)).toEqual(record);
    await databases.writeRow('contoso', 'prod', 'canary-plaintext-91f2');
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['canary-plaintext-91f2']);
    for (const f of filesUnder(join(config.dataDir, 'environments'))) expect(readFileSync(f).includes(Buffer.from('canary-plaintext-91f2'))).toBe(false);
  });

  test('re-protecting re-wraps the DEK: the old protector can go, the rows stay', async () => {
    const { vault, databases } = localParts();
    const provider = await providerProtector(vault, 'emea');
    await databases.create('contoso', 'prod', provider);
    await databases.writeRow('contoso', 'prod', 'kept');
    const tenantKey = await vault.importKey('tenant-contoso-emea', der(), { purpose: 'tenant', enabled: true });
    await databases.reprotect('contoso', 'prod', { kind: 'tenant', name: tenantKey.name, version: tenantKey.version, thumbprint: tenantKey.thumbprint });
    await vault.deleteKey(provider);
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['kept']);
  });

  test('rekey: a new DEK re-encrypts every page; a crash mid-rekey still opens, under the new key', async () => {
    const { vault, databases, config } = localParts();
    const provider = await providerProtector(vault, 'emea');
    await databases.create('contoso', 'prod', provider);
    await databases.writeRow('contoso', 'prod', 'before rekey');
    const file = join(config.dataDir, 'environments', 'contoso', 'prod', 'database.sqlite');
    const recordFile = join(config.dataDir, 'environments', 'contoso', 'prod', 'key-record.json');
    const bytesBefore = readFileSync(file);
    const wrappedBefore = JSON.parse(readFileSync(recordFile, 'utf8')).wrappedDek;
    await databases.rekey('contoso', 'prod', provider);
    expect(JSON.parse(readFileSync(recordFile, 'utf8')).wrappedDek).not.toBe(wrappedBefore);
    expect(readFileSync(file).subarray(4096, 8192).equals(bytesBefore.subarray(4096, 8192))).toBe(false);
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['before rekey']);

    const tenantKey = await vault.importKey('tenant-contoso-emea', der(), { purpose: 'tenant', enabled: true });
    const onTenantKey = { kind: 'tenant' as const, name: tenantKey.name, version: tenantKey.version, thumbprint: tenantKey.thumbprint };
    await expect(
      databases.rekey('contoso', 'prod', onTenantKey, {
        afterPagesRewritten: () => {
          throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['before rekey']);
    expect((await databases.describe('contoso', 'prod'))?.protector).toEqual(onTenantKey);
    await vault.deleteKey(provider);
    expect((await databases.readRows('contoso', 'prod')).map((r) => r.text)).toEqual(['before rekey']);
  });

  test('IDs outside the grammar never reach a path', async () => {
    const { vault, databases } = localParts();
    const provider = await providerProtector(vault, 'emea');
    await expect(databases.create('../etc', 'prod', provider)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('outbox', () => {
  test('one message per ID, however often and however concurrently it is sent', async () => {
    const { outbox } = localParts();
    const mail = { id: 'cmk-tenant/a#1:alice@example.com', tenant: 'a', to: 'alice@example.com', subject: 's', event: 'key-changed' as const, body: 'b', sentAt: '2026-01-01T00:00:00.000Z' };
    const results = await Promise.all(Array.from({ length: 10 }, () => outbox.send(mail)));
    expect(results.filter((r) => r.delivered)).toHaveLength(1);
    expect(await outbox.send(mail)).toEqual({ delivered: false });
    await outbox.send({ ...mail, id: 'cmk-tenant/a#2:alice@example.com', sentAt: '2026-01-01T00:00:01.000Z' });
    expect((await outbox.list('a')).map((m) => m.id)).toEqual(['cmk-tenant/a#1:alice@example.com', 'cmk-tenant/a#2:alice@example.com']);
  });
});

describe('provider keys', () => {
  test('a region’s provider key is listed once per process, then checked with one read; a key gone from the vault is found or made again', async () => {
    const parts = localParts();
    const calls: string[] = [];
    const vault = new Proxy(parts.vault, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(String(property));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const { provisionEnvironmentDatabase } = createEnvironmentActivities({ vault, databases: parts.databases });
    const first = await provisionEnvironmentDatabase({ tenant: 'a', env: 'e1', region: 'emea' });
    expect(calls.filter((c) => c === 'listVersions')).toHaveLength(2); // none yet, then the one just made
    calls.length = 0;
    for (const env of ['e2', 'e3']) expect(await provisionEnvironmentDatabase({ tenant: 'a', env, region: 'emea' })).toEqual(first);
    expect(calls.filter((c) => c === 'listVersions' || c === 'createKey')).toEqual([]);

    // Deleted behind the process's back: the next provisioning looks again and makes a new one.
    const [old] = await parts.vault.listVersions('provider-emea');
    await parts.vault.deleteKey(old!);
    const again = await provisionEnvironmentDatabase({ tenant: 'a', env: 'e4', region: 'emea' });
    expect(again.keyThumbprint).not.toBe(first.keyThumbprint);
    expect((await parts.vault.listVersions('provider-emea')).map((k) => k.thumbprint)).toEqual([again.keyThumbprint]);
  });
});
