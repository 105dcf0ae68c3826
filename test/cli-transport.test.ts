/**
 * The CLI never sends a key file or its password over plain http to another host (client/http.ts
 * secretsMayTravelTo): `key upload`, `key reactivate` and `key generate` refuse with a usage error (exit 2) before
 * anything is read or sent; https, and http to loopback (the embedded default), go ahead.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { secretsMayTravelTo } from '../client/http';
import { loadOrCreateTokenSigningKey } from '../common/tokens';
import { makePfx } from '../harness/keyfiles';
import { runCmk } from '../harness/stack';

const work = mkdtempSync(join(tmpdir(), 'cmk-cli-transport-'));
const secretsDir = join(work, 'secrets');
loadOrCreateTokenSigningKey(secretsDir);
const pfx = join(work, 'key.pfx');
writeFileSync(pfx, makePfx(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'transport password'));
const passwordFile = join(work, 'pw.txt');
writeFileSync(passwordFile, 'transport password\n');
const address = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && !i.internal && i.family === 'IPv4')?.address;

let requests = 0;
const server = createServer((req, res) => {
  requests += 1;
  req.resume();
  res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'Tenant contoso does not exist.' } }));
});
let port = 0;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const cmk = (url: string, args: string[]) => runCmk([...args, '--json'], { ...(process.env as Record<string, string>), CMK_API_URL: url, CMK_SECRETS_DIR: secretsDir, CMK_USER: 'alice@contoso.example' });
const commands = [
  ['key', 'upload', '--tenant', 'contoso', '--name', 'k', '--file', pfx, '--password-file', passwordFile],
  ['key', 'reactivate', '--tenant', 'contoso', '--file', pfx, '--password-file', passwordFile],
  ['key', 'generate', '--tenant', 'contoso', '--name', 'k', '--password-file', passwordFile, '--out', join(work, 'out.pfx')],
];

test('which URLs a key file may travel to', () => {
  expect(['https://cmk.example', 'http://127.0.0.1:8787', 'http://localhost:8787', 'http://[::1]:8787'].map(secretsMayTravelTo)).toEqual([true, true, true, true]);
  expect(['http://cmk.example', 'http://10.0.0.5:8787', 'http://127.0.0.1.evil.example', 'ftp://127.0.0.1', 'not a url'].map(secretsMayTravelTo)).toEqual([false, false, false, false, false]);
});

(address ? test : test.skip)('plain http to another host: a usage error, and nothing is sent', async () => {
  for (const args of commands) {
    const result = await cmk(`http://${address}:${port}`, args);
    expect([args[1], result.code]).toEqual([args[1], 2]);
    expect(result.stderr).toMatch(/plain http on another host.*https:\/\//);
  }
  expect(requests).toBe(0);
});

test('http to loopback goes ahead (the embedded default)', async () => {
  const result = await cmk(`http://127.0.0.1:${port}`, commands[0]!);
  expect([result.code, result.json().error.code]).toEqual([3, 'NOT_FOUND']);
  expect(requests).toBeGreaterThan(0);
});
