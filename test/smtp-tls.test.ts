/**
 * `smtp://` relays (mail/smtp.ts): STARTTLS is required unless the relay is on loopback or the URL opts out
 * (`?requireTLS=false`), so that a relay (or someone in the path) that offers no TLS does not get the credentials and
 * the mail in the clear. A real `smtp-server` relay without STARTTLS, on a non-loopback address of this machine.
 */
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { SMTPServer } from 'smtp-server';
import { SmtpMailer } from '../mail/smtp';
import type { OutgoingMail } from '../mail/types';

const address = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && !i.internal && i.family === 'IPv4')?.address;
const FROM = 'cmk@example.com';
const mail = (id: string): OutgoingMail => ({ id, tenant: 't1', to: 'alice@example.com', subject: 'Your key changed', event: 'key-changed', body: 'The key of tenant t1 changed.', sentAt: '2026-01-02T03:04:05.000Z' });

let received = 0;
const relay = new SMTPServer({
  disabledCommands: ['STARTTLS', 'AUTH'],
  authOptional: true,
  logger: false,
  onData(stream, _session, callback) {
    stream.resume();
    stream.on('end', () => {
      received += 1;
      callback();
    });
  },
});
let port = 0;
const mailers: SmtpMailer[] = [];
beforeAll(async () => {
  await new Promise<void>((resolve) => relay.listen(0, '0.0.0.0', resolve));
  port = (relay.server.address() as AddressInfo).port;
});
afterAll(async () => {
  mailers.forEach((m) => m.close());
  await new Promise<void>((resolve) => relay.close(() => resolve()));
});

const mailer = (url: string) => {
  const m = new SmtpMailer({ smtpUrl: url, mailFrom: FROM });
  mailers.push(m);
  return m;
};

(address ? test : test.skip)('a relay on another host that offers no STARTTLS is not sent to in the clear; ?requireTLS=false opts out', async () => {
  // Not sent, and not the recipient's fault: an outage of our relay set-up, so the mail stays pending.
  const refused = await mailer(`smtp://${address}:${port}`).attempt(mail('a'));
  expect(refused).toEqual({ outcome: 'outage', reason: expect.stringMatching(/STARTTLS|TLS/i) });
  expect(received).toBe(0);
  await expect(mailer(`smtp://${address}:${port}?requireTLS=false`).attempt(mail('b'))).resolves.toEqual({ outcome: 'delivered' });
  expect(received).toBe(1);
});

test('a loopback relay needs no TLS', async () => {
  const before = received;
  await expect(mailer(`smtp://127.0.0.1:${port}`).attempt(mail('c'))).resolves.toEqual({ outcome: 'delivered' });
  await expect(mailer(`smtp://localhost:${port}`).attempt(mail('d'))).resolves.toEqual({ outcome: 'delivered' });
  expect(received).toBe(before + 2);
});
