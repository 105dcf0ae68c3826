/**
 * `key generate` (R3): an RSA-2048 key made by node:crypto (async, and ~50x faster than forge's RSA), a self-signed
 * certificate made by node-forge, both packed into a password-protected `.pfx` that OpenSSL, Windows and parsePfx open.
 *
 * We assemble the PKCS#12 ourselves (forge's ASN.1 encoder, node:crypto's PBKDF2 and AES) instead of calling
 * forge.pkcs12.toPkcs12Asn1: forge can write PBES2 AES-256 with PBKDF2-HMAC-SHA256 (its undocumented `prfAlgorithm`
 * option) but then runs PBKDF2 in JavaScript, blocking the API's event loop ~2 s at 210,000 iterations, and it feeds
 * PBKDF2 the password's UTF-16 code units cut to bytes where OpenSSL and Windows use UTF-8 — a password with an "é"
 * would give a file no other tool opens. Its MAC is fixed to HMAC-SHA1.
 */
import { createHash, createPublicKey, generateKeyPair, pbkdf2, randomBytes, createCipheriv, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CmkError } from '../common/errors';
import { REQUIRED_RSA_BITS, thumbprintOf } from '../common/keys';
import { OID } from './pfx';
import { bmpPassword, pkcs12Mac } from './pkcs12-kdf';

const generateRsa = promisify(generateKeyPair);
const pbkdf2Async = promisify(pbkdf2);

/**
 * How generated files are protected. The key bag: PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256, 210,000 iterations
 * (forge's defaults, AES-128 and 2,048 iterations, are not used). The MAC uses as many iterations, so that it is no
 * shortcut for guessing the password. Both stay below the per-derivation limits .NET applies when loading a PFX.
 */
export const PFX_PROTECTION = {
  cipher: 'aes-256-cbc',
  prf: 'sha256',
  iterations: 210_000,
  saltBytes: 16,
  macDigest: 'sha256',
  macIterations: 210_000,
} as const;

/** Certificate validity: two years from (a few minutes before) generation. */
const VALIDITY_YEARS = 2;
/** Backdating covers clocks of machines that import the file running a little behind ours. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
/** X.520's upper bound for a common name. */
const MAX_COMMON_NAME = 64;

/** Extra subject attributes for the certificate; its common name is always the key's name. */
export interface CertificateSubject {
  organization?: string;
  organizationalUnit?: string;
  locality?: string;
  state?: string;
  /** Two-letter ISO 3166 code. */
  country?: string;
}

export interface GenerateKeyOptions {
  name: string;
  password: string;
  subject?: CertificateSubject;
}

export interface GeneratedKey {
  /** The .pfx, returned once to the administrator; never stored by the service. */
  pfx: Buffer;
  pkcs8Der: Buffer;
  thumbprint: string;
  publicKeyPem: string;
}

/** Makes a tenant key and its password-protected `.pfx` (R3). The password policy (WEAK_PASSWORD) is the caller's. */
export async function generateKeyPfx({ name, password, subject }: GenerateKeyOptions): Promise<GeneratedKey> {
  // An empty password would give a file parsePfx itself refuses as unprotected.
  if (password === '') throw new CmkError('WEAK_PASSWORD', 'The password is empty; a generated key file must be protected by a password.');
  const { privateKey } = await generateRsa('rsa', { modulusLength: REQUIRED_RSA_BITS });
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  const pkcs8Der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const certificateDer = selfSignedCertificate(privateKey, publicKeyPem, name, subject ?? {});
  const pfx = await packPfx(pkcs8Der, certificateDer, password, name);
  return { pfx, pkcs8Der, thumbprint: thumbprintOf(privateKey), publicKeyPem };
}

// ---------------------------------------------------------------------------------------------------------------
// The certificate (forge: node:crypto cannot issue certificates).

function selfSignedCertificate(privateKey: KeyObject, publicKeyPem: string, name: string, subject: CertificateSubject): Buffer {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = randomPositiveSerial();
  const notBefore = new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const attributes = subjectAttributes(name, subject);
  cert.setSubject(attributes);
  cert.setIssuer(attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  const forgeKey = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  cert.sign(forgeKey, forge.md.sha256.create());
  return Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
}

/** 16 random bytes with the top byte in 0x40-0x7f: positive and minimally encoded as a DER INTEGER (RFC 5280 §4.1.2.2). */
function randomPositiveSerial(): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  return serial.toString('hex');
}

function subjectAttributes(name: string, subject: CertificateSubject): forge.pki.CertificateField[] {
  // UTF8String, so that names outside PrintableString's alphabet survive (forge defaults to PrintableString). forge
  // compares valueTagClass with asn1.Type.UTF8, though @types/node-forge declares it an asn1.Class: hence the cast.
  const utf8 = (shortName: string, value: string | undefined): forge.pki.CertificateField[] =>
    value ? [{ shortName, value, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class }] : [];
  return [
    ...(subject.country ? [{ shortName: 'C', value: subject.country }] : []),
    ...utf8('ST', subject.state),
    ...utf8('L', subject.locality),
    ...utf8('O', subject.organization),
    ...utf8('OU', subject.organizationalUnit),
    ...utf8('CN', Array.from(name).slice(0, MAX_COMMON_NAME).join('')),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The PKCS#12 (RFC 7292), built with forge's ASN.1 encoder.

type Asn1 = forge.asn1.Asn1;
const { Class, Type } = forge.asn1;
const node = (type: number, value: string | Asn1[]): Asn1 => forge.asn1.create(Class.UNIVERSAL, type, Array.isArray(value), value);
const seq = (...items: Asn1[]): Asn1 => node(Type.SEQUENCE, items);
const set = (...items: Asn1[]): Asn1 => node(Type.SET, items);
const oid = (id: string): Asn1 => node(Type.OID, forge.asn1.oidToDer(id).getBytes());
const octets = (bytes: Buffer): Asn1 => node(Type.OCTETSTRING, bytes.toString('binary'));
const integer = (value: number): Asn1 => node(Type.INTEGER, forge.asn1.integerToDer(value).getBytes());
const explicit0 = (inner: Asn1): Asn1 => forge.asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [inner]);
const der = (value: Asn1): Buffer => Buffer.from(forge.asn1.toDer(value).getBytes(), 'binary');

/** ContentInfo of type data around DER bytes. */
const dataContent = (bytes: Buffer): Asn1 => seq(oid(OID.data), explicit0(octets(bytes)));

async function packPfx(pkcs8Der: Buffer, certificateDer: Buffer, password: string, friendlyName: string): Promise<Buffer> {
  // localKeyId = SHA-1 of the certificate, as OpenSSL and forge write it: it pairs the key bag with its certificate.
  const localKeyId = createHash('sha1').update(certificateDer).digest();
  const attributes = set(
    seq(oid(OID.friendlyName), set(node(Type.BMPSTRING, friendlyName))),
    seq(oid(OID.localKeyId), set(octets(localKeyId))),
  );
  // The certificate bag goes in the clear (the certificate is public; forge and Windows do the same) and the key bag
  // is shrouded with AES-256/PBKDF2-SHA256; the MAC is HMAC-SHA256 (forge's would be HMAC-SHA1, also acceptable as it
  // guards integrity, not secrecy). parsePfx can thus judge the key's type from the certificate before the password.
  const certBag = seq(oid(OID.certBag), explicit0(seq(oid(OID.x509Certificate), explicit0(octets(certificateDer)))), attributes);
  const keyBag = seq(oid(OID.shroudedKeyBag), explicit0(await encryptPrivateKeyInfo(pkcs8Der, password)), attributes);
  const authSafe = der(seq(dataContent(der(seq(certBag))), dataContent(der(seq(keyBag)))));
  return der(seq(integer(3), dataContent(authSafe), macData(authSafe, password)));
}

/** EncryptedPrivateKeyInfo with PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 and AES-256-CBC, the password as UTF-8. */
async function encryptPrivateKeyInfo(pkcs8Der: Buffer, password: string): Promise<Asn1> {
  const { iterations, saltBytes, cipher } = PFX_PROTECTION;
  const salt = randomBytes(saltBytes);
  const iv = randomBytes(16);
  const key = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, PFX_PROTECTION.prf);
  const encryptor = createCipheriv(cipher, key, iv);
  const ciphertext = Buffer.concat([encryptor.update(pkcs8Der), encryptor.final()]);
  key.fill(0);
  const pbkdf2Params = seq(octets(salt), integer(iterations), seq(oid(OID.hmacWithSha256), node(Type.NULL, '')));
  const algorithm = seq(oid(OID.pbes2), seq(seq(oid(OID.pbkdf2), pbkdf2Params), seq(oid(OID.aes256Cbc), octets(iv))));
  return seq(algorithm, octets(ciphertext));
}

/** MacData: HMAC-SHA256 over the AuthenticatedSafe, its key from PKCS#12's KDF over the BMPString password. */
function macData(authSafe: Buffer, password: string): Asn1 {
  const { macIterations, saltBytes, macDigest } = PFX_PROTECTION;
  const salt = randomBytes(saltBytes);
  const mac = pkcs12Mac(authSafe, bmpPassword(password), salt, macIterations, macDigest);
  return seq(seq(seq(oid(OID.sha256), node(Type.NULL, '')), octets(mac)), octets(salt), integer(macIterations));
}
