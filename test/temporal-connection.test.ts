/**
 * Connecting to a real Temporal cluster or Temporal Cloud (config/temporal.ts) from the Temporal CLI's envconfig
 * variables: plain by default, mTLS from files or inline PEM, an API key (TLS on by default with it), and clear
 * refusals for contradictory or unsupported settings.
 */
import { join } from 'node:path';
import { temporalConnectionOptions } from '../config/temporal';
import { scratchDir } from './support/scratch';

const { dir, file } = scratchDir('cmk-temporal-');
const CERT = '-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n';
const CA = '-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n';

test('the embedded default: the local dev server, no TLS, no key', () => {
  expect(temporalConnectionOptions({})).toEqual({ address: '127.0.0.1:7233' });
  expect(temporalConnectionOptions({ TEMPORAL_ADDRESS: 'temporal.internal:7233' })).toEqual({ address: 'temporal.internal:7233' });
});

test('mTLS from files or inline PEM, with a CA and a server name', () => {
  const fromFiles = temporalConnectionOptions({
    TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233',
    TEMPORAL_TLS_CLIENT_CERT_PATH: file('client.pem', CERT),
    TEMPORAL_TLS_CLIENT_KEY_PATH: file('client.key', KEY),
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: file('ca.pem', CA),
    TEMPORAL_TLS_SERVER_NAME: 'temporal.example',
  });
  expect(fromFiles).toEqual({
    address: 'ns.acct.tmprl.cloud:7233',
    tls: { serverNameOverride: 'temporal.example', serverRootCACertificate: Buffer.from(CA), clientCertPair: { crt: Buffer.from(CERT), key: Buffer.from(KEY) } },
  });
  const inline = temporalConnectionOptions({ TEMPORAL_TLS_CLIENT_CERT_DATA: CERT, TEMPORAL_TLS_CLIENT_KEY_DATA: KEY });
  expect(inline.tls).toEqual({ clientCertPair: { crt: Buffer.from(CERT), key: Buffer.from(KEY) } });
});

test('an API key turns TLS on unless TEMPORAL_TLS=false says otherwise; TEMPORAL_TLS=true alone uses the system CAs', () => {
  expect(temporalConnectionOptions({ TEMPORAL_API_KEY: 'secret-key' })).toEqual({ address: '127.0.0.1:7233', tls: true, apiKey: 'secret-key' });
  expect(temporalConnectionOptions({ TEMPORAL_API_KEY: 'secret-key', TEMPORAL_TLS: 'false' })).toEqual({ address: '127.0.0.1:7233', apiKey: 'secret-key' });
  expect(temporalConnectionOptions({ TEMPORAL_TLS: 'true' })).toEqual({ address: '127.0.0.1:7233', tls: true });
});

test('contradictions and unsupported settings are refused with a sentence, never echoing a key', () => {
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS_CLIENT_CERT_DATA: CERT })).toThrow(/both TEMPORAL_TLS_CLIENT_CERT/);
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS_CLIENT_CERT_DATA: CERT, TEMPORAL_TLS_CLIENT_CERT_PATH: '/x' })).toThrow(/not both/);
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: join(dir, 'missing.pem') })).toThrow(/cannot be read/);
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS: 'false', TEMPORAL_TLS_SERVER_NAME: 'x' })).toThrow(/contradicts/);
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS: 'maybe' })).toThrow(/true or false/);
  expect(() => temporalConnectionOptions({ TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' })).toThrow(/not supported/);
  try {
    temporalConnectionOptions({ TEMPORAL_API_KEY: 'very-secret-api-key', TEMPORAL_TLS: 'sometimes' });
  } catch (err) {
    expect(String(err)).not.toContain('very-secret-api-key');
  }
});
