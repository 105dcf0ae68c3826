/**
 * Issue 17's lock dialog proves possession of the active key in the browser: console/src/pfx-sign.ts, bundled by
 * esbuild as the console is, opens a `.pfx` and signs a challenge in Debian's Chromium (playwright-core). Each
 * signature is checked with node:crypto against the key's public key and with the vault's own verify (the server's
 * path for a lock); each refusal must carry the code keyfiles/pfx.ts gives the same file and password.
 */
import { constants, createCipheriv, createPrivateKey, generateKeyPairSync, pbkdf2Sync, randomBytes, sign, verify, X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { build } from 'esbuild';
import forge from 'node-forge';
import { chromium, type Browser, type Page } from 'playwright-core';
import { generateKeyPfx } from '../keyfiles/generate';
import { OID, parsePfx } from '../keyfiles/pfx';
import { CmkError } from '../common/errors';
import { LocalVault } from '../vault/local';
import { ChallengeIssuer } from '../api/challenges';
import { scratchDir } from './support/scratch';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console-pfx-sign.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it).`);
const openssl = (args: string[]): boolean => spawnSync('openssl', args, { stdio: 'ignore' }).status === 0;
const haveOpenssl = openssl(['version']);
// `openssl pkcs12 -legacy` needs OpenSSL 3's legacy provider (RC2) to be installed.
const haveLegacy = haveOpenssl && openssl(['list', '-providers', '-provider', 'legacy']);
if (!haveOpenssl) console.warn('console-pfx-sign.test.ts: the OpenSSL-made files are skipped, `openssl` is missing.');
else if (!haveLegacy) console.warn("console-pfx-sign.test.ts: `-legacy` files are skipped, OpenSSL's legacy provider is missing.");
const browserTest = haveChromium ? test : test.skip;
const opensslTest = haveChromium && haveOpenssl ? test : test.skip;
const legacyTest = haveChromium && haveLegacy ? test : test.skip;

const PASSWORD = 'correct horse battery staple';
/** Non-ASCII, outside the BMP too: PBKDF2 takes its UTF-8 bytes, PKCS#12's MAC its UTF-16. */
const UNICODE_PASSWORD = 'Pässwörd-鍵-🔑';
const CHALLENGE = 'cmk-possession-challenge.v1.eyJpZCI6ImV4YW1wbGUifQ.c2lnbmF0dXJl';
const { dir: work, file } = scratchDir('cmk-console-pfx-');

let browser: Browser | undefined;
let page: Page;
let server: Server;
let origin: string;
/** The bundle: console/src/pfx-sign.ts as an IIFE defining `cmkPfxSign`. */
let script: string;
const requests: Array<{ method: string; url: string; body: string | null }> = [];
const timings: string[] = [];

/** What the page answers: a signature (base64) and the thumbprint, or a refusal's name, code and sentence. */
type Outcome = { signature: string; thumbprint: string; ms: number } | { name: string; code: string; message: string };

beforeAll(async () => {
  // As the console is built (console/build.ts: esbuild, browser targets), but as an IIFE with a global to call.
  const bundle = await build({
    entryPoints: [join(__dirname, '..', 'console', 'src', 'pfx-sign.ts')],
    bundle: true,
    minify: true,
    format: 'iife',
    globalName: 'cmkPfxSign',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    write: false,
    logLevel: 'silent',
  });
  script = bundle.outputFiles[0]!.text;
  timings.push(`bundle ${(bundle.outputFiles[0]!.contents.length / 1024).toFixed(0)} KiB minified`);
  // http://127.0.0.1 is a secure context (crypto.subtle exists there); the CSP forbids the page any request of its own.
  server = createServer((req, res) => {
    const headers = { 'content-security-policy': "default-src 'none'; script-src 'self'", 'cache-control': 'no-store' };
    if (req.url === '/pfx-sign.js') res.writeHead(200, { ...headers, 'content-type': 'text/javascript' }).end(script);
    else res.writeHead(200, { ...headers, 'content-type': 'text/html' }).end('<!doctype html><title>pfx</title><script src="/pfx-sign.js"></script>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (!haveChromium) return;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'] });
  page = await browser.newPage();
  page.on('request', (request) => requests.push({ method: request.method(), url: request.url(), body: request.postData() }));
  await page.goto(`${origin}/`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
  console.log(`console-pfx-sign: ${timings.join('; ')}`);
});

/** Opens the .pfx in the page, signs with signChallengeWithPfx and reads the thumbprint with openPfxSigner. */
async function signInPage(pfx: Buffer, password: string, challenge = CHALLENGE): Promise<Outcome> {
  return page.evaluate(
    async ({ pfx64, password, challenge }) => {
      type Api = {
        signChallengeWithPfx(pfx: Uint8Array, password: string, challenge: string): Promise<Uint8Array>;
        openPfxSigner(pfx: Uint8Array, password: string): Promise<{ thumbprint: string }>;
      };
      const api = (globalThis as unknown as { cmkPfxSign: Api }).cmkPfxSign;
      const bytes = Uint8Array.from(atob(pfx64), (c) => c.charCodeAt(0));
      const started = performance.now();
      try {
        const signature = await api.signChallengeWithPfx(bytes, password, challenge);
        const ms = performance.now() - started;
        const { thumbprint } = await api.openPfxSigner(bytes, password);
        return { signature: btoa(String.fromCharCode(...signature)), thumbprint, ms };
      } catch (err) {
        const { name, code, message } = err as { name?: unknown; code?: unknown; message?: unknown };
        return { name: String(name), code: String(code), message: String(message) };
      }
    },
    { pfx64: pfx.toString('base64'), password, challenge },
  );
}

/** The signature verifies with the key's public key and is, byte for byte, the one `cmk tenant lock` would make. */
async function expectSignsAsTheCli(label: string, pfx: Buffer, password: string): Promise<Buffer> {
  const outcome = await signInPage(pfx, password);
  if (!('signature' in outcome)) throw new Error(`${label}: the page refused with ${outcome.code}: ${outcome.message}`);
  timings.push(`${label} ${outcome.ms.toFixed(0)} ms`);
  const opened = parsePfx(pfx, password);
  const signature = Buffer.from(outcome.signature, 'base64');
  expect(verify('sha256', Buffer.from(CHALLENGE, 'utf8'), { key: opened.publicKeyPem, padding: constants.RSA_PKCS1_PADDING }, signature)).toBe(true);
  // PKCS#1 v1.5 is deterministic: the CLI's signature (client/commands/tenant.ts) must be the same bytes.
  expect(signature).toEqual(sign('sha256', Buffer.from(CHALLENGE, 'utf8'), { key: opened.pkcs8Der, format: 'der', type: 'pkcs8' }));
  expect(outcome.thumbprint).toBe(opened.thumbprint);
  return signature;
}

/** The code keyfiles/pfx.ts answers for the same file and password (the server's reading of it). */
function serverCode(pfx: Buffer, password: string): string {
  try {
    parsePfx(pfx, password);
    return 'opened';
  } catch (err) {
    if (err instanceof CmkError) return err.code;
    throw err;
  }
}

async function expectRefused(pfx: Buffer, password: string, code: string): Promise<void> {
  const outcome = await signInPage(pfx, password);
  expect(outcome).toMatchObject({ name: 'PfxSignError', code });
  expect(serverCode(pfx, password)).toBe(code);
  // A sentence for a person, holding neither the password nor key material.
  const { message } = outcome as { message: string };
  expect(message).toMatch(/^[A-Z].*\.$/);
  if (password) expect(message).not.toContain(password);
}

// ---------------------------------------------------------------------------------------------------------------
// Key files, made by cmk and by OpenSSL 3.

let cmkKey: Awaited<ReturnType<typeof generateKeyPfx>>;
let cmkUnicodeKey: Awaited<ReturnType<typeof generateKeyPfx>>;

beforeAll(async () => {
  cmkKey = await generateKeyPfx({ name: 'contoso-k1', password: PASSWORD });
  cmkUnicodeKey = await generateKeyPfx({ name: 'contoso-k2', password: UNICODE_PASSWORD });
}, 60_000);

function run(args: string[]): void {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`);
}

/** A new key (PKCS#8 PEM file) and its self-signed certificate (PEM file), made by OpenSSL. */
function keyAndCertificate(name: string, key: 'rsa' | 'rsa3072' | 'ec'): { keyFile: string; certFile: string } {
  const { privateKey } = key === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: key === 'rsa' ? 2048 : 3072 });
  const keyFile = file(`${name}.key.pem`, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const certFile = join(work, `${name}.cert.pem`);
  run(['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${name}`, '-days', '2', '-out', certFile]);
  return { keyFile, certFile };
}

/** `openssl pkcs12 -export` of a new key and self-signed certificate with `extra` options; the file's bytes. */
function opensslPfx(name: string, key: 'rsa' | 'rsa3072' | 'ec', password: string, extra: string[] = []): Buffer {
  const { keyFile, certFile } = keyAndCertificate(name, key);
  const out = join(work, `${name}.pfx`);
  run(['pkcs12', '-export', '-inkey', keyFile, '-in', certFile, '-passout', `file:${file(`${name}.pw`, `${password}\n`)}`, '-out', out, ...extra]);
  return readFileSync(out);
}

/**
 * A layout no tool here writes but PKCS#12 allows (and keyfiles/pfx.ts reads): one password-encrypted block (PBES2,
 * AES-256, PBKDF2-SHA256) holding the certificate and a plain key bag, and no MAC.
 */
function keyInsideEncryptedBlock(password: string): Buffer {
  const { keyFile, certFile } = keyAndCertificate('inner', 'rsa');
  const pkcs8 = createPrivateKey(readFileSync(keyFile)).export({ type: 'pkcs8', format: 'der' });
  const certificate = new X509Certificate(readFileSync(certFile)).raw;
  const { create, Class, Type, oidToDer, integerToDer, toDer, fromDer } = forge.asn1;
  const seq = (...items: forge.asn1.Asn1[]): forge.asn1.Asn1 => create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
  const oid = (id: string): forge.asn1.Asn1 => create(Class.UNIVERSAL, Type.OID, false, oidToDer(id).getBytes());
  const octets = (bytes: Buffer): forge.asn1.Asn1 => create(Class.UNIVERSAL, Type.OCTETSTRING, false, bytes.toString('binary'));
  const explicit0 = (inner: forge.asn1.Asn1): forge.asn1.Asn1 => create(Class.CONTEXT_SPECIFIC, 0, true, [inner]);
  const der = (node: forge.asn1.Asn1): Buffer => Buffer.from(toDer(node).getBytes(), 'binary');
  const safeContents = seq(
    seq(oid(OID.certBag), explicit0(seq(oid(OID.x509Certificate), explicit0(octets(certificate))))),
    seq(oid(OID.keyBag), explicit0(fromDer(pkcs8.toString('binary')))),
  );
  const [salt, iv, iterations] = [randomBytes(16), randomBytes(16), 10_000];
  const key = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const ciphertext = Buffer.concat([cipher.update(der(safeContents)), cipher.final()]);
  const pbkdf2 = seq(oid(OID.pbkdf2), seq(octets(salt), create(Class.UNIVERSAL, Type.INTEGER, false, integerToDer(iterations).getBytes()), seq(oid(OID.hmacWithSha256), create(Class.UNIVERSAL, Type.NULL, false, ''))));
  const algorithm = seq(oid(OID.pbes2), seq(pbkdf2, seq(oid(OID.aes256Cbc), octets(iv))));
  const encryptedData = seq(create(Class.UNIVERSAL, Type.INTEGER, false, '\x00'), seq(oid(OID.data), algorithm, create(Class.CONTEXT_SPECIFIC, 0, false, ciphertext.toString('binary'))));
  const authSafe = seq(seq(oid(OID.encryptedData), explicit0(encryptedData)));
  return der(seq(create(Class.UNIVERSAL, Type.INTEGER, false, '\x03'), seq(oid(OID.data), explicit0(octets(der(authSafe))))));
}

// ---------------------------------------------------------------------------------------------------------------

browserTest('the page is a secure context with WebCrypto, under a CSP that forbids it any request', async () => {
  expect(await page.evaluate(() => (globalThis as unknown as { isSecureContext: boolean }).isSecureContext)).toBe(true);
  expect(await page.evaluate(() => typeof (globalThis as unknown as { cmkPfxSign?: object }).cmkPfxSign)).toBe('object');
});

browserTest('outside a secure context (about:blank: no crypto.subtle) signing fails with a plain Error that says why', async () => {
  const blank = await browser!.newPage();
  try {
    await blank.addScriptTag({ content: script });
    const outcome = await blank.evaluate(async (pfx64) => {
      const api = (globalThis as unknown as { cmkPfxSign: { signChallengeWithPfx(pfx: Uint8Array, password: string, challenge: string): Promise<Uint8Array> } }).cmkPfxSign;
      return api.signChallengeWithPfx(Uint8Array.from(atob(pfx64), (c) => c.charCodeAt(0)), 'x', 'y').then(
        () => 'signed',
        (err: Error) => `${err.name}: ${err.message}`,
      );
    }, cmkKey.pfx.toString('base64'));
    expect(outcome).toMatch(/^Error: This page is not a secure context/);
  } finally {
    await blank.close();
  }
});

browserTest("a .pfx cmk issues (PBES2 AES-256, PBKDF2-SHA256, 210,000 iterations) signs as `cmk tenant lock` does", async () => {
  await expectSignsAsTheCli('cmk .pfx', cmkKey.pfx, PASSWORD);
  expect(parsePfx(cmkKey.pfx, PASSWORD).thumbprint).toBe(cmkKey.thumbprint);
});

browserTest('a non-ASCII password opens the file cmk made with it (PBKDF2 over its UTF-8 bytes)', async () => {
  await expectSignsAsTheCli('cmk .pfx, non-ASCII password', cmkUnicodeKey.pfx, UNICODE_PASSWORD);
  await expectRefused(cmkUnicodeKey.pfx, UNICODE_PASSWORD.normalize('NFD'), 'WRONG_PASSWORD');
});

browserTest("the server's verification of a lock accepts the page's signature: the vault's verify of the active key", async () => {
  const vault = new LocalVault({ dataDir: join(work, 'data'), masterKey: randomBytes(32) });
  const active = await vault.importKey('contoso-k1', parsePfx(cmkKey.pfx, PASSWORD).pkcs8Der, { purpose: 'tenant', enabled: true });
  const other = await vault.importKey('fabrikam-k1', parsePfx(cmkUnicodeKey.pfx, UNICODE_PASSWORD).pkcs8Der, { purpose: 'tenant', enabled: true });
  const { challenge } = await new ChallengeIssuer(randomBytes(32)).issue({ tenant: 'contoso', region: 'westeurope', user: 'alice@contoso.example', operation: 'lock' });
  const outcome = await signInPage(cmkKey.pfx, PASSWORD, challenge);
  if (!('signature' in outcome)) throw new Error(outcome.message);
  // As api/service.ts and activities/lock.ts call it: the challenge's UTF-8 bytes and the signature decoded from base64.
  expect(await vault.verify(active, Buffer.from(challenge, 'utf8'), Buffer.from(outcome.signature, 'base64'))).toBe(true);
  expect(await vault.verify(other, Buffer.from(challenge, 'utf8'), Buffer.from(outcome.signature, 'base64'))).toBe(false);
  expect(await vault.verify(active, Buffer.from(`${challenge}x`, 'utf8'), Buffer.from(outcome.signature, 'base64'))).toBe(false);
});

opensslTest('OpenSSL 3 defaults (PBES2 AES-256-CBC, PBKDF2-SHA256, encrypted certificates), also with a non-ASCII password', async () => {
  await expectSignsAsTheCli('openssl default', opensslPfx('default', 'rsa', PASSWORD), PASSWORD);
  await expectSignsAsTheCli('openssl default, non-ASCII password', opensslPfx('unicode', 'rsa', UNICODE_PASSWORD), UNICODE_PASSWORD);
});

opensslTest('a plain key bag inside a password-encrypted block, with no MAC, opens; a wrong password is refused', async () => {
  const inner = keyInsideEncryptedBlock(PASSWORD);
  await expectSignsAsTheCli('key in an encrypted block', inner, PASSWORD);
  await expectRefused(inner, 'not the password', 'WRONG_PASSWORD');
});

opensslTest('PBES2 ciphers WebCrypto lacks (AES-192-CBC, 3DES-CBC) are decrypted with forge', async () => {
  await expectSignsAsTheCli('openssl AES-192', opensslPfx('aes192', 'rsa', PASSWORD, ['-keypbe', 'AES-192-CBC']), PASSWORD);
  await expectSignsAsTheCli('openssl PBES2 3DES', opensslPfx('pbes2-3des', 'rsa', PASSWORD, ['-keypbe', 'DES-EDE3-CBC', '-certpbe', 'AES-128-CBC']), PASSWORD);
});

legacyTest('`openssl pkcs12 -legacy` (3DES key bag, RC2-40 certificates, PKCS#12 KDF over the BMPString password)', async () => {
  const legacy = opensslPfx('legacy', 'rsa', PASSWORD, ['-legacy']);
  await expectSignsAsTheCli('openssl -legacy', legacy, PASSWORD);
  await expectRefused(legacy, 'not the password', 'WRONG_PASSWORD');
});

// ---------------------------------------------------------------------------------------------------------------
// Refusals, each with keyfiles/pfx.ts's code for the same file and password.

browserTest('a wrong password is WRONG_PASSWORD; no password on a protected file is PASSWORD_REQUIRED', async () => {
  await expectRefused(cmkKey.pfx, 'Correct horse battery staple', 'WRONG_PASSWORD');
  await expectRefused(cmkKey.pfx, '', 'PASSWORD_REQUIRED');
});

opensslTest('files that are not protected are PASSWORD_REQUIRED, whatever password is typed', async () => {
  // An empty export password: the empty password opens it, so it protects nothing.
  const emptyPassword = opensslPfx('empty-password', 'rsa', '');
  await expectRefused(emptyPassword, '', 'PASSWORD_REQUIRED');
  await expectRefused(emptyPassword, 'a guess', 'PASSWORD_REQUIRED');
  // The key in a plain (not shrouded) bag, in the clear.
  await expectRefused(opensslPfx('plain-key', 'rsa', PASSWORD, ['-keypbe', 'NONE', '-certpbe', 'NONE']), PASSWORD, 'PASSWORD_REQUIRED');
  await expectRefused(opensslPfx('wrong-openssl', 'rsa', PASSWORD), 'not the password', 'WRONG_PASSWORD');
});

opensslTest('keys other than 2048-bit RSA are UNSUPPORTED_KEY: before the password when the certificate is in the clear', async () => {
  const ecClearCertificate = opensslPfx('ec-clear', 'ec', PASSWORD, ['-certpbe', 'NONE']);
  await expectRefused(ecClearCertificate, PASSWORD, 'UNSUPPORTED_KEY');
  await expectRefused(ecClearCertificate, 'not the password', 'UNSUPPORTED_KEY');
  await expectRefused(ecClearCertificate, '', 'UNSUPPORTED_KEY');
  // OpenSSL's default encrypts the certificate: the key's kind shows once the password opens the key bag.
  await expectRefused(opensslPfx('ec', 'ec', PASSWORD), PASSWORD, 'UNSUPPORTED_KEY');
  await expectRefused(opensslPfx('rsa3072', 'rsa3072', PASSWORD), PASSWORD, 'UNSUPPORTED_KEY');
});

browserTest('what is not a usable .pfx is INVALID_KEY_FILE: garbage, truncation, over 64 KiB, over the iteration cap', async () => {
  await expectRefused(randomBytes(2_000), PASSWORD, 'INVALID_KEY_FILE');
  await expectRefused(Buffer.alloc(0), PASSWORD, 'INVALID_KEY_FILE');
  await expectRefused(cmkKey.pfx.subarray(0, cmkKey.pfx.length - 40), PASSWORD, 'INVALID_KEY_FILE');
  await expectRefused(Buffer.concat([cmkKey.pfx, Buffer.alloc(64 * 1024)]), PASSWORD, 'INVALID_KEY_FILE');
  // 210,000 iterations (INTEGER 0x033450) become 1,000,001 (0x0F4241), one over the cap: refused before any derivation.
  const iterations = (n: number): Buffer => Buffer.from([0x02, 0x03, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  const hex = cmkKey.pfx.toString('hex');
  expect(hex).toContain(iterations(210_000).toString('hex'));
  const overCap = Buffer.from(hex.split(iterations(210_000).toString('hex')).join(iterations(1_000_001).toString('hex')), 'hex');
  await expectRefused(overCap, PASSWORD, 'INVALID_KEY_FILE');
});

browserTest('nothing left the page: its only requests were for the page and its script, none with a body', () => {
  const seen = requests.map((r) => `${r.method} ${r.url.replace(origin, '')}`);
  expect(seen.slice(0, 2)).toEqual(['GET /', 'GET /pfx-sign.js']);
  // A browser may ask for a favicon of its own accord; the page itself asked for nothing.
  expect(seen.slice(2).filter((r) => r !== 'GET /favicon.ico')).toEqual([]);
  expect(requests.every((r) => r.body === null)).toBe(true);
});
