/**
 * `npm start` killed with SIGKILL loses nothing a command reported done: a new stack on the same data dir (which
 * also clears the previous stack's leftover processes) sees the tenant, its key, its environment's rows and mail.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack } from '../harness/stack';

test('a SIGKILLed stack restarts on the same data dir with everything it reported done', async () => {
  const base = mkdtempSync(join(tmpdir(), 'cmk-restart-'));
  const dirs = { dataDir: join(base, 'var'), secretsDir: join(base, 'secrets') };
  const first = await startStack({}, dirs);
  const alice = 'alice@tailspin.example';
  const pw = join(base, 'pw.txt');
  writeFileSync(pw, 'a long and secret password\n');
  let thumbprint = '';
  try {
    expect((await first.cmk(['tenant', 'create', '--tenant', 'tailspin', '--name', 'Tailspin', '--admin', `${alice}:global`])).code).toBe(0);
    expect((await first.cmk(['env', 'create', '--tenant', 'tailspin', '--env', 'prod'])).code).toBe(0);
    expect((await first.cmk(['env', 'data', '--tenant', 'tailspin', '--env', 'prod', '--write', 'survives'])).code).toBe(0);
    const generated = await first.cmk(['key', 'generate', '--tenant', 'tailspin', '--name', 'k1', '--password-file', pw, '--out', join(base, 'k1.pfx'), '--json'], { as: alice });
    expect(generated.code).toBe(0);
    thumbprint = generated.json().activeKey.thumbprint as string;
  } finally {
    await first.stop('SIGKILL');
  }

  const ports = { CMK_API_PORT: first.env.CMK_API_PORT!, TEMPORAL_ADDRESS: first.env.TEMPORAL_ADDRESS! };
  const second = await startStack(ports, dirs);
  try {
    expect(second.output()).toMatch(/left by a previous stack/);
    const show = await second.cmk(['key', 'show', '--tenant', 'tailspin', '--json'], { as: alice });
    expect(show.json().activeKey).toMatchObject({ name: 'k1', state: 'Active', thumbprint });
    expect((await second.cmk(['env', 'data', '--tenant', 'tailspin', '--env', 'prod', '--json'])).json().rows.map((r: { text: string }) => r.text)).toEqual(['survives']);
    const mails = (await second.cmk(['mail', 'list', '--tenant', 'tailspin', '--json'])).json().mails as Array<{ event: string }>;
    expect(mails.map((m) => m.event)).toEqual(['admin-changed', 'key-changed']);
    // And it goes on working.
    expect((await second.cmk(['env', 'create', '--tenant', 'tailspin', '--env', 'test'])).code).toBe(0);
  } finally {
    await second.stop();
  }
});
