/**
 * Key files (R2, R3, DESIGN.md §4 and §6): .pfx and .byok parsing, hostile input, and generated .pfx files.
 * Every file is made here, by node-forge, the OpenSSL CLI (when present) or the hand assembler in support/keyfiles.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CmkError } from '../common/errors';
import { assertSupportedKey, privateKeyFromPkcs8 } from '../common/keys';
import {
  detectKeyFileKind,
  generateKeyPfx,
  MAX_KEY_FILE_BYTES,
  parseByok,
  parsePfx,
  PFX_PROTECTION,
  unwrapByokCiphertext,
  wrapForByok,
} from '../keyfiles';
import type { ErrorCode } from '../domain/codes';
import { assemblePfx, certificateDer, hasOpenssl, makeByok, makeOpensslPfx, makePfx, openssl, opensslSupportsLegacy, pfxAround } from '../harness/keyfiles';

const newKeyPair = promisify(generateKeyPair);
const PASSWORD = 'Canary-Pfx-Password-7g2K';
const KID = 'https://cmk.local/keys/kek-t1-default/0001';

let rsa2048: KeyObject;
let other2048: KeyObject;
let rsa1024: KeyObject;
let rsa4096: KeyObject;
let ecP256: KeyObject;
let kek: KeyObject;
let otherKek: KeyObject;

beforeAll(async () => {
  // In parallel on the libuv pool: the 4096-bit key alone takes seconds.
  const rsa = (bits: number) => newKeyPair('rsa', { modulusLength: bits }).then((pair) => pair.privateKey);
  [rsa2048, other2048, rsa1024, rsa4096, ecP256, kek, otherKek] = await Promise.all([
    rsa(2048),
    rsa(2048),
    rsa(1024),
    rsa(4096),
    newKeyPair('ec', { namedCurve: 'P-256' }).then((pair) => pair.privateKey),
    rsa(2048),
    rsa(2048),
  ]);
});

// ASN.1 walking, for building hostile variants and for checking what generateKeyPfx wrote.
type Asn1 = forge.asn1.Asn1;
const fromDer = (bytes: string): Asn1 => forge.asn1.fromDer(bytes);
const kids = (node: Asn1 | undefined): Asn1[] => {
  if (!node || !Array.isArray(node.value)) throw new Error('not a constructed ASN.1 value');
  return node.value;
};
const at = (node: Asn1, ...path: number[]): Asn1 => path.reduce<Asn1>((n, i) => kids(n)[i]!, node);
const oidAt = (node: Asn1, ...path: number[]): string => forge.asn1.derToOid(at(node, ...path).value as string);
const intAt = (node: Asn1, ...path: number[]): number => parseInt(forge.util.bytesToHex(at(node, ...path).value as string), 16);
/** Decodes DER (a binary string), lets `change` edit the tree, and re-encodes it with the lengths recomputed. */
function editDer(bytes: string, change: (node: Asn1) => void): string {
  const node = fromDer(bytes);
  change(node);
  return forge.asn1.toDer(node).getBytes();
}

const spkiThumbprint = (key: KeyObject): string => createHash('sha256').update(createPublicKey(key).export({ type: 'spki', format: 'der' })).digest('hex');
const publicPem = (key: KeyObject): string => createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
const withOpenssl = hasOpenssl() ? it : it.skip;

/** The CmkError `fn` throws; its message must never carry the password. */
function refusal(fn: () => unknown, password = PASSWORD): CmkError {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof CmkError)) throw err;
    expect(err.message).not.toContain(password);
    expect(err.message).toMatch(/^[A-Z].*\.$/);
    return err;
  }
  throw new Error('expected a refusal');
}

function expectCode(fn: () => unknown, code: ErrorCode, password = PASSWORD): CmkError {
  const err = refusal(fn, password);
  expect(err.code).toBe(code);
  return err;
}

function expectOpensWith(pfx: Buffer, password: string, key: KeyObject): void {
  const opened = parsePfx(pfx, password);
  expect(opened.thumbprint).toBe(spkiThumbprint(key));
  expect(opened.publicKeyPem).toBe(publicPem(key));
  expect(createPrivateKey({ key: opened.pkcs8Der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs1', format: 'der' })).toEqual(
    key.export({ type: 'pkcs1', format: 'der' }),
  );
}

describe('parsePfx accepts good files', () => {
  it.each(['3des', 'aes128', 'aes256'] as const)('forge-made, key bag %s, certificate in the clear', (algorithm) => {
    expectOpensWith(makePfx(rsa2048, PASSWORD, { algorithm }), PASSWORD, rsa2048);
  });

  it('forge-made without a certificate', () => {
    expectOpensWith(makePfx(rsa2048, PASSWORD, { withCertificate: false }), PASSWORD, rsa2048);
  });

  it('forge-made with PBES2 PBKDF2-HMAC-SHA256 (its prfAlgorithm option)', () => {
    const forgeKey = forge.pki.privateKeyFromPem(rsa2048.export({ type: 'pkcs1', format: 'pem' }).toString());
    // prfAlgorithm reaches forge's PBES2 encryptor through toPkcs12Asn1's options, though neither forge's docs nor
    // @types/node-forge list it.
    const options = { algorithm: 'aes256', count: 2048, prfAlgorithm: 'sha256' } as Parameters<typeof forge.pkcs12.toPkcs12Asn1>[3];
    // null: no certificate, which forge accepts though its typings do not say so.
    const pfx = Buffer.from(forge.asn1.toDer(forge.pkcs12.toPkcs12Asn1(forgeKey, null as unknown as forge.pki.Certificate, PASSWORD, options)).getBytes(), 'binary');
    expectOpensWith(pfx, PASSWORD, rsa2048);
  });

  it('hand-assembled with the bags in an encrypted block and no MAC', () => {
    expectOpensWith(assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048], certificates: [certificateDer(rsa2048)], sealBags: true, mac: false }), PASSWORD, rsa2048);
  });

  it('a plain key bag inside a password-encrypted block is protected, hence accepted', () => {
    expectOpensWith(assemblePfx({ password: PASSWORD, plainKeys: [rsa2048], sealBags: true }), PASSWORD, rsa2048);
  });

  withOpenssl('OpenSSL 3 defaults (PBES2 AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC), non-ASCII password', () => {
    const password = 'Pässwörd-ключ-🔑';
    const pfx = makeOpensslPfx(rsa2048, password);
    expectOpensWith(pfx, password, rsa2048);
    expectCode(() => parsePfx(pfx, 'Passwoerd-kljuch'), 'WRONG_PASSWORD', password);
  });

  withOpenssl('openssl pkcs12 -legacy (3DES key bag, RC2-40 certificate block, SHA-1 MAC), when the legacy provider exists', () => {
    if (!opensslSupportsLegacy(rsa2048)) return;
    expectOpensWith(makeOpensslPfx(rsa2048, PASSWORD, ['-legacy']), PASSWORD, rsa2048);
  });

  withOpenssl('OpenSSL with a 3DES-encrypted key and certificate block', () => {
    expectOpensWith(makeOpensslPfx(rsa2048, PASSWORD, ['-keypbe', 'DES-EDE3-CBC', '-certpbe', 'DES-EDE3-CBC']), PASSWORD, rsa2048);
  });

  it('reports the thumbprint as the SHA-256 of the SubjectPublicKeyInfo DER', () => {
    const opened = parsePfx(makePfx(rsa2048, PASSWORD), PASSWORD);
    expect(opened.thumbprint).toMatch(/^[0-9a-f]{64}$/);
    const spki = createPublicKey(createPrivateKey({ key: opened.pkcs8Der, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' });
    expect(opened.thumbprint).toBe(createHash('sha256').update(spki).digest('hex'));
  });
});

describe('parsePfx refuses unsupported keys (UNSUPPORTED_KEY)', () => {
  it.each([
    ['1024', () => rsa1024],
    ['4096', () => rsa4096],
  ])('%s-bit RSA, judged from the clear certificate even before the password', (_bits, key) => {
    const pfx = makePfx(key(), PASSWORD);
    expect(expectCode(() => parsePfx(pfx, PASSWORD), 'UNSUPPORTED_KEY').message).toContain('2048-bit RSA');
    expectCode(() => parsePfx(pfx, undefined), 'UNSUPPORTED_KEY');
  });

  it('1024-bit RSA with no certificate: judged after decryption', () => {
    const pfx = makePfx(rsa1024, PASSWORD, { withCertificate: false });
    expectCode(() => parsePfx(pfx, undefined), 'PASSWORD_REQUIRED');
    expectCode(() => parsePfx(pfx, PASSWORD), 'UNSUPPORTED_KEY');
  });

  it('EC P-256 key (forge cannot load it; node can)', () => {
    const err = expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, shroudedKeys: [ecP256] }), PASSWORD), 'UNSUPPORTED_KEY');
    expect(err.message).toMatch(/\bec\b/);
  });

  withOpenssl('EC P-256 .pfx made by OpenSSL (certificate encrypted too)', () => {
    expectCode(() => parsePfx(makeOpensslPfx(ecP256, PASSWORD), PASSWORD), 'UNSUPPORTED_KEY');
  });
});

describe('parsePfx and passwords', () => {
  it('an unprotected file (plain key bag) answers PASSWORD_REQUIRED, with or without a password', () => {
    const pfx = makePfx(rsa2048, null);
    expect(expectCode(() => parsePfx(pfx, PASSWORD), 'PASSWORD_REQUIRED').message).toMatch(/not protected/);
    expectCode(() => parsePfx(pfx, undefined), 'PASSWORD_REQUIRED');
  });

  it('a missing or empty password answers PASSWORD_REQUIRED', () => {
    const pfx = makePfx(rsa2048, PASSWORD);
    expect(expectCode(() => parsePfx(pfx, undefined), 'PASSWORD_REQUIRED').message).toMatch(/--password-file/);
    expectCode(() => parsePfx(pfx, ''), 'PASSWORD_REQUIRED');
  });

  it('a file protected by the empty password counts as unprotected', () => {
    expectCode(() => parsePfx(makePfx(rsa2048, ''), 'any-password-at-all'), 'PASSWORD_REQUIRED', 'any-password-at-all');
    expectCode(() => parsePfx(assemblePfx({ password: '', shroudedKeys: [rsa2048], mac: false }), 'any-password-at-all'), 'PASSWORD_REQUIRED', 'any-password-at-all');
  });

  withOpenssl('an OpenSSL file made with an empty password counts as unprotected', () => {
    expectCode(() => parsePfx(makeOpensslPfx(rsa2048, ''), 'any-password-at-all'), 'PASSWORD_REQUIRED', 'any-password-at-all');
  });

  it('a wrong password answers WRONG_PASSWORD (MAC check, and decryption when there is no MAC)', () => {
    expectCode(() => parsePfx(makePfx(rsa2048, PASSWORD), `${PASSWORD}x`), 'WRONG_PASSWORD');
    expectCode(() => parsePfx(makePfx(rsa2048, PASSWORD, { algorithm: 'aes256' }), 'wrong'), 'WRONG_PASSWORD');
    for (let i = 0; i < 20; i++) {
      // Without a MAC, a wrong key sometimes yields valid CBC padding: the garbage must still read as a wrong password.
      expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048], mac: false, sealBags: i % 2 === 0 }), `wrong-${i}`), 'WRONG_PASSWORD');
    }
  });

  withOpenssl('a wrong password on an OpenSSL file answers WRONG_PASSWORD', () => {
    expectCode(() => parsePfx(makeOpensslPfx(rsa2048, PASSWORD), 'wrong'), 'WRONG_PASSWORD');
  });
});

describe('parsePfx refuses damaged and hostile files (INVALID_KEY_FILE)', () => {
  it('truncated at any of many points', () => {
    const pfx = makePfx(rsa2048, PASSWORD);
    for (const length of [0, 1, 2, 4, 16, 100, pfx.length >> 1, pfx.length - 40, pfx.length - 1]) {
      expectCode(() => parsePfx(pfx.subarray(0, length), PASSWORD), 'INVALID_KEY_FILE');
    }
  });

  it('random bytes, PEM text, and DER that is not PKCS#12', () => {
    for (let i = 0; i < 20; i++) expectCode(() => parsePfx(randomBytes(64 + i * 97), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(Buffer.from(rsa2048.export({ type: 'pkcs8', format: 'pem' })), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(certificateDer(rsa2048), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(rsa2048.export({ type: 'pkcs8', format: 'der' }), PASSWORD), 'INVALID_KEY_FILE');
  });

  it('over 64 KiB: refused before any parsing, even with a valid .pfx at its start', () => {
    const pfx = makePfx(rsa2048, PASSWORD);
    const big = Buffer.concat([pfx, Buffer.alloc(70 * 1024 - pfx.length)]);
    const fromDer = jest.spyOn(forge.asn1, 'fromDer');
    try {
      expect(expectCode(() => parsePfx(big, PASSWORD), 'INVALID_KEY_FILE').message).toContain('64 KiB');
      expect(fromDer).not.toHaveBeenCalled();
      // The limit is inclusive: 64 KiB exactly is parsed (and here refused as trailing garbage, for another reason).
      expect(expectCode(() => parsePfx(big.subarray(0, MAX_KEY_FILE_BYTES), PASSWORD), 'INVALID_KEY_FILE').message).not.toContain('64 KiB');
      expect(fromDer).toHaveBeenCalled();
    } finally {
      fromDer.mockRestore();
    }
  });

  it('two private keys, seen before the password when in the clear, after it when encrypted', () => {
    const clear = assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048, other2048] });
    expect(expectCode(() => parsePfx(clear, undefined), 'INVALID_KEY_FILE').message).toMatch(/exactly one/);
    const sealed = assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048, other2048], sealBags: true });
    expectCode(() => parsePfx(sealed, undefined), 'PASSWORD_REQUIRED');
    expect(expectCode(() => parsePfx(sealed, PASSWORD), 'INVALID_KEY_FILE').message).toMatch(/exactly one/);
  });

  it('no private key at all', () => {
    expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, certificates: [certificateDer(rsa2048)] }), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, certificates: [certificateDer(rsa2048)], sealBags: true }), PASSWORD), 'INVALID_KEY_FILE');
  });

  it('a certificate that does not belong to the key (checked before the key type, DESIGN.md §4 order)', () => {
    const foreign = certificateDer(other2048);
    expect(expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048], certificates: [foreign] }), PASSWORD), 'INVALID_KEY_FILE').message).toMatch(/certificate/);
    expectCode(() => parsePfx(assemblePfx({ password: PASSWORD, shroudedKeys: [rsa1024], certificates: [foreign] }), PASSWORD), 'INVALID_KEY_FILE');
  });

  it('deeply nested DER, at the top and inside the content list, is refused quickly', () => {
    const nested = (depth: number, definite: boolean): Buffer => {
      if (!definite) return Buffer.concat([Buffer.from('3080'.repeat(depth), 'hex'), Buffer.alloc(depth * 2)]);
      let inner = Buffer.from('0500', 'hex');
      for (let i = 0; i < depth; i++) inner = Buffer.concat([Buffer.from([0x30, 0x82, inner.length >> 8, inner.length & 0xff]), inner]);
      return inner;
    };
    const started = Date.now();
    expectCode(() => parsePfx(nested(16_000, false), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(nested(10_000, true), PASSWORD), 'INVALID_KEY_FILE');
    expectCode(() => parsePfx(pfxAround(nested(10_000, false), { password: PASSWORD, iterations: 1 }), PASSWORD), 'INVALID_KEY_FILE');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('lengths far beyond the file are refused, not trusted', () => {
    for (const hex of ['3084ffffffff', '3088ffffffffffffffff0201', '30ff' + '01'.repeat(127), '308400010000020103', '3082ffff020103']) {
      expectCode(() => parsePfx(Buffer.from(hex, 'hex'), PASSWORD), 'INVALID_KEY_FILE');
    }
  });

  it('an absurd MAC or PBKDF2 iteration count is refused before any key derivation', () => {
    const withMacIterations = (iterations: number): Buffer =>
      Buffer.from(editDer(makePfx(rsa2048, PASSWORD).toString('binary'), (top) => (at(top, 2, 2).value = forge.asn1.integerToDer(iterations).getBytes())), 'binary');
    const started = Date.now();
    expect(expectCode(() => parsePfx(withMacIterations(2 ** 31 - 1), PASSWORD), 'INVALID_KEY_FILE').message).toMatch(/iteration/);
    // The key bag's PBKDF2 iterationCount, four DER layers down: PFX → AuthenticatedSafe → SafeContents → SafeBag.
    const noMac = assemblePfx({ password: PASSWORD, shroudedKeys: [rsa2048], mac: false });
    const hostile = editDer(noMac.toString('binary'), (top) => {
      const authSafe = at(top, 1, 1, 0);
      authSafe.value = editDer(authSafe.value as string, (list) => {
        const safeContents = at(list, 0, 1, 0);
        safeContents.value = editDer(safeContents.value as string, (bags) => {
          at(bags, 0, 1, 0, 0, 1, 0, 1, 1).value = forge.asn1.integerToDer(2 ** 31 - 1).getBytes();
        });
      });
    });
    expect(expectCode(() => parsePfx(Buffer.from(hostile, 'binary'), PASSWORD), 'INVALID_KEY_FILE').message).toMatch(/iteration/);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('BYOK', () => {
  const byokOf = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));
  let good: { schema_version: string; header: { kid: string; alg: string; enc: string }; ciphertext: string; generator?: string };

  beforeAll(() => {
    good = JSON.parse(makeByok(publicPem(kek), KID, rsa2048).toString('utf8'));
  });

  it('round trip: wrap a fresh RSA-2048 PKCS#8 with a KEK, parse, unwrap', () => {
    const pkcs8 = rsa2048.export({ type: 'pkcs8', format: 'der' });
    const transfer = parseByok(wrapForByok(publicPem(kek), KID, pkcs8));
    expect(transfer.kid).toBe(KID);
    expect(transfer.ciphertext.length).toBe(256 + pkcs8.length + 8 + ((8 - (pkcs8.length % 8)) % 8));
    const unwrapped = unwrapByokCiphertext(kek, transfer.ciphertext);
    expect(unwrapped).toEqual(pkcs8);
    assertSupportedKey(privateKeyFromPkcs8(unwrapped));
  });

  it('the file is Azure Key Vault BYOK JSON', () => {
    expect(good).toMatchObject({ schema_version: '1.0.0', header: { kid: KID, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' } });
    expect(good.ciphertext).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('unwrapping with another KEK, or a damaged ciphertext, answers INVALID_KEY_FILE', () => {
    const { ciphertext } = parseByok(byokOf(good));
    expectCode(() => unwrapByokCiphertext(otherKek, ciphertext), 'INVALID_KEY_FILE');
    const flipped = Buffer.from(ciphertext);
    flipped[300] = flipped[300]! ^ 1;
    expectCode(() => unwrapByokCiphertext(kek, flipped), 'INVALID_KEY_FILE');
    expectCode(() => unwrapByokCiphertext(kek, ciphertext.subarray(0, 256 + 8)), 'INVALID_KEY_FILE');
    expectCode(() => unwrapByokCiphertext(kek, ciphertext.subarray(0, ciphertext.length - 3)), 'INVALID_KEY_FILE');
  });

  it('a 1024-bit key inside a BYOK unwraps, then is refused with UNSUPPORTED_KEY', () => {
    const transfer = parseByok(makeByok(publicPem(kek), KID, rsa1024));
    const key = privateKeyFromPkcs8(unwrapByokCiphertext(kek, transfer.ciphertext));
    expectCode(() => assertSupportedKey(key), 'UNSUPPORTED_KEY');
  });

  it('accepts an optional generator, padded base64url and a byte-order mark', () => {
    expect(parseByok(byokOf({ ...good, generator: 'Thales Luna BYOK' })).kid).toBe(KID);
    const { generator: _omitted, ...withoutGenerator } = good;
    expect(parseByok(byokOf(withoutGenerator)).kid).toBe(KID);
    const ciphertext = Buffer.from(good.ciphertext, 'base64url');
    const padded = ciphertext.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
    expect(parseByok(byokOf({ ...good, ciphertext: padded })).ciphertext).toEqual(ciphertext);
    expect(parseByok(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), byokOf(good)])).kid).toBe(KID);
  });

  it.each<[string, () => Buffer]>([
    ['not JSON', () => Buffer.from('{"schema_version": "1.0.0", header')],
    ['not UTF-8', () => Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
    ['a JSON array', () => byokOf([good])],
    ['JSON null', () => Buffer.from('null')],
    ['missing schema_version', () => byokOf({ ...good, schema_version: undefined })],
    ['numeric schema_version', () => byokOf({ ...good, schema_version: 1 })],
    ['missing header', () => byokOf({ ...good, header: undefined })],
    ['missing kid', () => byokOf({ ...good, header: { ...good.header, kid: undefined } })],
    ['empty kid', () => byokOf({ ...good, header: { ...good.header, kid: '' } })],
    ['bad alg', () => byokOf({ ...good, header: { ...good.header, alg: 'RSA-OAEP-256' } })],
    ['bad enc', () => byokOf({ ...good, header: { ...good.header, enc: 'CKM_AES_KEY_WRAP_PAD' } })],
    ['missing ciphertext', () => byokOf({ ...good, ciphertext: undefined })],
    ['numeric ciphertext', () => byokOf({ ...good, ciphertext: 42 })],
    ['standard base64 characters', () => byokOf({ ...good, ciphertext: `${good.ciphertext.slice(0, 40)}+/${good.ciphertext.slice(42)}` })],
    ['whitespace in the ciphertext', () => byokOf({ ...good, ciphertext: `${good.ciphertext.slice(0, 40)} ${good.ciphertext.slice(40)}` })],
    ['misplaced padding', () => byokOf({ ...good, ciphertext: `${good.ciphertext.slice(0, 12)}=${good.ciphertext.slice(12)}` })],
    ['a non-string generator', () => byokOf({ ...good, generator: { name: 'x' } })],
    ['over 64 KiB', () => byokOf({ ...good, generator: 'x'.repeat(70 * 1024) })],
  ])('%s → INVALID_KEY_FILE', (_what, make) => {
    expectCode(() => parseByok(make()), 'INVALID_KEY_FILE');
  });
});

describe('detectKeyFileKind', () => {
  it.each([
    ['key.pfx', 'pfx'],
    ['KEY.PFX', 'pfx'],
    ['/home/admin/keys/tenant.p12', 'pfx'],
    ['hsm-export.byok', 'byok'],
    ['C:\\keys\\Export.BYOK', 'byok'],
  ])('%s is %s', (name, kind) => {
    expect(detectKeyFileKind(name)).toBe(kind);
  });

  it.each(['key.pem', 'key.pfx.txt', 'key', '.pfx.', 'key.cer', 'key.json'])('%s is refused', (name) => {
    expect(expectCode(() => detectKeyFileKind(name), 'INVALID_KEY_FILE').message).toMatch(/only \.pfx and \.byok/i);
  });
});

describe('generateKeyPfx', () => {

  /** The generated file's layout: [certificate bag block, key bag block], then the MAC. */
  function layoutOf(pfx: Buffer) {
    const top = fromDer(pfx.toString('binary'));
    const authSafe = fromDer(at(top, 1, 1, 0).value as string);
    const bagsOf = (block: number): Asn1[] => kids(fromDer(at(authSafe, block, 1, 0).value as string));
    return { top, certificateBag: bagsOf(0)[0]!, keyBag: bagsOf(1)[0]!, blocks: kids(authSafe).map((_, i) => oidAt(authSafe, i, 0)) };
  }

  let generated: Awaited<ReturnType<typeof generateKeyPfx>>;
  const password = 'Generated-Pässwörd-🔑-2026';

  beforeAll(async () => {
    generated = await generateKeyPfx({ name: 'finance-key-2026', password });
  });

  it('makes an RSA-2048 key whose .pfx round-trips through parsePfx', () => {
    const key = privateKeyFromPkcs8(generated.pkcs8Der);
    assertSupportedKey(key);
    expect(generated.thumbprint).toBe(spkiThumbprint(key));
    expect(generated.publicKeyPem).toBe(publicPem(key));
    const opened = parsePfx(generated.pfx, password);
    expect(opened.thumbprint).toBe(generated.thumbprint);
    expect(opened.pkcs8Der).toEqual(generated.pkcs8Der);
    expectCode(() => parsePfx(generated.pfx, 'Generated-Passwoerd'), 'WRONG_PASSWORD', password);
    expectCode(() => parsePfx(generated.pfx, undefined), 'PASSWORD_REQUIRED', password);
  });

  it('shrouds the key with PBES2: PBKDF2-HMAC-SHA256 (>= 100,000 iterations, 16-byte salt) and AES-256-CBC', () => {
    const { keyBag, blocks } = layoutOf(generated.pfx);
    expect(blocks).toEqual([forge.pki.oids.data, forge.pki.oids.data]);
    expect(oidAt(keyBag, 0)).toBe(forge.pki.oids.pkcs8ShroudedKeyBag);
    const algorithm = at(keyBag, 1, 0, 0);
    expect(oidAt(algorithm, 0)).toBe(forge.pki.oids.pkcs5PBES2);
    expect(oidAt(algorithm, 1, 0, 0)).toBe(forge.pki.oids.pkcs5PBKDF2);
    const pbkdf2Params = at(algorithm, 1, 0, 1);
    expect((at(pbkdf2Params, 0).value as string).length).toBe(16);
    expect(intAt(pbkdf2Params, 1)).toBeGreaterThanOrEqual(100_000);
    expect(intAt(pbkdf2Params, 1)).toBe(PFX_PROTECTION.iterations);
    expect(oidAt(pbkdf2Params, 2, 0)).toBe(forge.pki.oids.hmacWithSHA256);
    expect(oidAt(algorithm, 1, 1, 0)).toBe(forge.pki.oids['aes256-CBC']);
    expect((at(algorithm, 1, 1, 1).value as string).length).toBe(16);
  });

  it('protects integrity with an HMAC-SHA256 MAC at the same iteration count', () => {
    const macData = at(layoutOf(generated.pfx).top, 2);
    expect(oidAt(macData, 0, 0, 0)).toBe(forge.pki.oids.sha256);
    expect(intAt(macData, 2)).toBe(PFX_PROTECTION.macIterations);
  });

  it('holds a self-signed SHA-256 certificate: CN = name, 2 years, positive serial, paired by localKeyId', () => {
    const { certificateBag, keyBag } = layoutOf(generated.pfx);
    const cert = new X509Certificate(Buffer.from(at(certificateBag, 1, 0, 1, 0).value as string, 'binary'));
    expect(cert.subject).toBe('CN=finance-key-2026');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(privateKeyFromPkcs8(generated.pkcs8Der))).toBe(true);
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(1.99);
    expect(years).toBeLessThan(2.01);
    expect(parseInt(cert.serialNumber.slice(0, 2), 16)).toBeLessThan(0x80);
    expect(cert.serialNumber.length).toBe(32);
    const sigAlg = forge.pki.certificateFromAsn1(fromDer(cert.raw.toString('binary'))).siginfo.algorithmOid;
    expect(sigAlg).toBe(forge.pki.oids.sha256WithRSAEncryption);
    expect(forge.asn1.toDer(at(certificateBag, 2)).getBytes()).toBe(forge.asn1.toDer(at(keyBag, 2)).getBytes());
  });

  it('adds extra subject attributes, and keeps a non-ASCII name', async () => {
    const made = await generateKeyPfx({ name: 'clé-финансы', password: 'another-password-123', subject: { organization: 'Contoso Ltd', country: 'FR' } });
    const cert = new X509Certificate(Buffer.from(at(layoutOf(made.pfx).certificateBag, 1, 0, 1, 0).value as string, 'binary'));
    expect(cert.subject.split('\n')).toEqual(['C=FR', 'O=Contoso Ltd', 'CN=clé-финансы']);
    expect(parsePfx(made.pfx, 'another-password-123').thumbprint).toBe(made.thumbprint);
  });

  it('refuses an empty password (the file would be unprotected)', async () => {
    await expect(generateKeyPfx({ name: 'k', password: '' })).rejects.toMatchObject({ code: 'WEAK_PASSWORD' });
  });

  withOpenssl('OpenSSL reads it with the (non-ASCII) password: algorithms as intended, same key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmk-generated-'));
    try {
      const file = join(dir, 'generated.pfx');
      writeFileSync(file, generated.pfx, { mode: 0o600 });
      const info = openssl(['pkcs12', '-info', '-nokeys', '-in', file, '-passin', 'env:CMK_TEST_PASSWORD'], password).stderr;
      expect(info).toContain(`MAC: sha256, Iteration ${PFX_PROTECTION.macIterations}`);
      expect(info).toMatch(new RegExp(`Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration ${PFX_PROTECTION.iterations}, PRF hmacWithSHA256`));
      const keyPem = openssl(['pkcs12', '-in', file, '-nocerts', '-nodes', '-passin', 'env:CMK_TEST_PASSWORD'], password).stdout.toString();
      expect(spkiThumbprint(createPrivateKey(keyPem))).toBe(generated.thumbprint);
      expect(() => openssl(['pkcs12', '-in', file, '-nokeys', '-passin', 'env:CMK_TEST_PASSWORD'], 'wrong-password')).toThrow(/mac verify/i);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
