/**
 * Key files made in the tests, as administrators' tools make them: node-forge, the OpenSSL CLI, a hand-assembled
 * PKCS#12 for shapes no tool writes on request (two keys, an EC key, no MAC, a foreign certificate), and an HSM's
 * BYOK export. The assembler uses forge's PKCS#12 KDF and node's PKCS#8 encryption, not keyfiles/ code, so that the
 * tests do not check the parser against itself.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv, pbkdf2Sync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { wrapForByok } from '../keyfiles';

type Asn1 = forge.asn1.Asn1;

const toForgeKey = (key: KeyObject): forge.pki.rsa.PrivateKey => forge.pki.privateKeyFromPem(key.export({ type: 'pkcs1', format: 'pem' }).toString());
const der = (value: Asn1): Buffer => Buffer.from(forge.asn1.toDer(value).getBytes(), 'binary');

/** A self-signed certificate for an RSA key (any size), as forge makes it. */
function forgeCertificate(key: KeyObject, commonName = 'test'): forge.pki.Certificate {
  const forgeKey = toForgeKey(key);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date();
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  cert.setSubject([{ name: 'commonName', value: commonName }]);
  cert.setIssuer([{ name: 'commonName', value: commonName }]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return cert;
}

export function certificateDer(key: KeyObject, commonName = 'test'): Buffer {
  return der(forge.pki.certificateToAsn1(forgeCertificate(key, commonName)));
}

export interface ForgePfxOptions {
  /** forge's key-bag encryption: '3des' is PKCS#12 PBE, the AES ones PBES2 with PBKDF2-HMAC-SHA1. Default '3des'. */
  algorithm?: 'aes128' | 'aes192' | 'aes256' | '3des';
  withCertificate?: boolean;
}

/** A .pfx made by node-forge (RSA keys only), optionally with no password (an unprotected key bag) or no certificate. */
export function makePfx(key: KeyObject, password: string | null, options: ForgePfxOptions = {}): Buffer {
  const certificate = options.withCertificate === false ? null : forgeCertificate(key);
  // forge takes null for "no certificate" (an empty list breaks it); its typings do not say so.
  const certificates = certificate as unknown as forge.pki.Certificate;
  const asn1 = forge.pkcs12.toPkcs12Asn1(toForgeKey(key), certificates, password, { algorithm: options.algorithm ?? '3des' });
  return der(asn1);
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-assembled PKCS#12.

export interface PfxParts {
  password: string;
  /** Encrypted by node:crypto (PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256): works for any key type and size. */
  shroudedKeys?: KeyObject[];
  /** Plain, unencrypted key bags. */
  plainKeys?: KeyObject[];
  /** Certificate DER, each in a clear certificate bag. */
  certificates?: Buffer[];
  /** Put the bags in an EncryptedData block (PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256) rather than in the clear. */
  sealBags?: boolean;
  /** Default true: an HMAC-SHA1 MAC under the password. */
  mac?: boolean;
  macIterations?: number;
}

const { Class, Type } = forge.asn1;
const node = (type: number, value: string | Asn1[]): Asn1 => forge.asn1.create(Class.UNIVERSAL, type, Array.isArray(value), value);
const seq = (...items: Asn1[]): Asn1 => node(Type.SEQUENCE, items);
const oid = (id: string): Asn1 => node(Type.OID, forge.asn1.oidToDer(id).getBytes());
const octets = (bytes: Buffer): Asn1 => node(Type.OCTETSTRING, bytes.toString('binary'));
const integer = (value: number): Asn1 => node(Type.INTEGER, forge.asn1.integerToDer(value).getBytes());
const explicit0 = (inner: Asn1): Asn1 => forge.asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [inner]);
const parse = (bytes: Buffer): Asn1 => forge.asn1.fromDer(bytes.toString('binary'));
const oids = forge.pki.oids;

export function assemblePfx(parts: PfxParts): Buffer {
  const bags = [
    ...(parts.certificates ?? []).map((cert) => seq(oid(oids.certBag!), explicit0(seq(oid(oids.x509Certificate!), explicit0(octets(cert)))))),
    ...(parts.plainKeys ?? []).map((key) => seq(oid(oids.keyBag!), explicit0(parse(key.export({ type: 'pkcs8', format: 'der' }))))),
    ...(parts.shroudedKeys ?? []).map((key) => {
      const encrypted = key.export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: parts.password });
      return seq(oid(oids.pkcs8ShroudedKeyBag!), explicit0(parse(encrypted)));
    }),
  ];
  const safeContents = der(seq(...bags));
  const block = parts.sealBags ? encryptedDataBlock(safeContents, parts.password) : seq(oid(oids.data!), explicit0(octets(safeContents)));
  const authSafe = der(seq(block));
  return pfxAround(authSafe, parts.mac === false ? undefined : { password: parts.password, iterations: parts.macIterations ?? 2048 });
}

/** ContentInfo(encryptedData) as OpenSSL 3 writes it, encrypted here with node:crypto's PBKDF2 and AES. */
function encryptedDataBlock(plaintext: Buffer, password: string): Asn1 {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const iterations = 2048;
  const key = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const kdf = seq(oid(oids.pkcs5PBKDF2!), seq(octets(salt), integer(iterations), seq(oid(oids.hmacWithSHA256!), node(Type.NULL, ''))));
  const algorithm = seq(oid(oids.pkcs5PBES2!), seq(kdf, seq(oid(oids['aes256-CBC']!), octets(iv))));
  const encryptedContent = forge.asn1.create(Class.CONTEXT_SPECIFIC, 0, false, ciphertext.toString('binary'));
  const encryptedData = seq(integer(0), seq(oid(oids.data!), algorithm, encryptedContent));
  return seq(oid(oids.encryptedData!), explicit0(encryptedData));
}

/** The outer PFX around AuthenticatedSafe bytes (which may be anything, for hostile tests), with a forge-computed MAC. */
export function pfxAround(authSafe: Buffer, mac?: { password: string; iterations: number }): Buffer {
  const items = [integer(3), seq(oid(oids.data!), explicit0(octets(authSafe)))];
  if (mac) {
    const salt = randomBytes(8);
    const macKey = forge.pkcs12.generateKey(mac.password, forge.util.createBuffer(salt.toString('binary')), 3, mac.iterations, 20);
    const hmac = forge.hmac.create();
    hmac.start('sha1', macKey);
    hmac.update(authSafe.toString('binary'));
    const value = Buffer.from(hmac.digest().getBytes(), 'binary');
    items.push(seq(seq(seq(oid(oids.sha1!), node(Type.NULL, '')), octets(value)), octets(salt), integer(mac.iterations)));
  }
  return der(seq(...items));
}

// ---------------------------------------------------------------------------------------------------------------
// The OpenSSL CLI.

let opensslPresent: boolean | undefined;
export function hasOpenssl(): boolean {
  if (opensslPresent === undefined) {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      opensslPresent = true;
    } catch {
      opensslPresent = false;
    }
  }
  return opensslPresent;
}

/**
 * Runs `openssl` with the password in the environment (`env:CMK_TEST_PASSWORD`), not on the command line where `ps`
 * would show it. Throws with OpenSSL's own message when it fails.
 */
export function openssl(args: string[], password = ''): { stdout: Buffer; stderr: string } {
  const run = spawnSync('openssl', args, { env: { ...process.env, CMK_TEST_PASSWORD: password }, timeout: 30_000 });
  if (run.status !== 0) throw new Error(`openssl ${args[0]} failed: ${run.stderr?.toString() ?? run.error?.message}`);
  return { stdout: run.stdout, stderr: run.stderr.toString() };
}

/** A .pfx made by the OpenSSL CLI, with a self-signed certificate, for any key type (RSA, EC). */
export function makeOpensslPfx(key: KeyObject, password: string, extraArgs: string[] = []): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'cmk-openssl-'));
  try {
    const keyPath = join(dir, 'key.pem');
    writeFileSync(keyPath, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const certPath = join(dir, 'cert.pem');
    openssl(['req', '-new', '-x509', '-key', keyPath, '-subj', '/CN=openssl-test', '-days', '2', '-out', certPath]);
    const out = join(dir, 'key.pfx');
    openssl(['pkcs12', '-export', '-inkey', keyPath, '-in', certPath, '-out', out, '-passout', 'env:CMK_TEST_PASSWORD', ...extraArgs], password);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let legacyWorks: boolean | undefined;
/** `openssl pkcs12 -legacy` needs OpenSSL 3's legacy provider (RC2), which some builds leave out. */
export function opensslSupportsLegacy(key: KeyObject): boolean {
  if (legacyWorks === undefined) {
    try {
      makeOpensslPfx(key, 'probe-password', ['-legacy']);
      legacyWorks = true;
    } catch {
      legacyWorks = false;
    }
  }
  return legacyWorks;
}

// ---------------------------------------------------------------------------------------------------------------
// BYOK.

export function makeByok(kekPublicKeyPem: string, kid: string, key: KeyObject): Buffer {
  return wrapForByok(kekPublicKeyPem, kid, key.export({ type: 'pkcs8', format: 'der' }));
}
