/**
 * How the worker and the API service reach a real Temporal cluster or Temporal Cloud, from the variables the Temporal
 * CLI's envconfig reads: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE (in config/index.ts), TEMPORAL_API_KEY, TEMPORAL_TLS,
 * TEMPORAL_TLS_CLIENT_CERT_PATH|DATA, TEMPORAL_TLS_CLIENT_KEY_PATH|DATA, TEMPORAL_TLS_SERVER_CA_CERT_PATH|DATA,
 * TEMPORAL_TLS_SERVER_NAME. Profiles (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE) are not read.
 */
import { readFileSync } from 'node:fs';

type Env = Record<string, string | undefined>;

export class TemporalConnectionError extends Error {
  override name = 'TemporalConnectionError';
}

export interface TemporalTls {
  serverNameOverride?: string;
  serverRootCACertificate?: Buffer;
  clientCertPair?: { crt: Buffer; key: Buffer };
}

/** Options both `Connection.connect` (client) and `NativeConnection.connect` (worker) take. */
export interface TemporalConnectionOptions {
  address: string;
  tls?: TemporalTls | true;
  apiKey?: string;
}

function flag(env: Env, name: string): boolean | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  if (/^(1|true|yes)$/i.test(text)) return true;
  if (/^(0|false|no)$/i.test(text)) return false;
  throw new TemporalConnectionError(`${name}="${text}" is not true or false.`);
}

/** PEM from `<NAME>_PATH` (a file) or `<NAME>_DATA` (the PEM itself), never both. */
function pem(env: Env, name: string): Buffer | undefined {
  const path = env[`${name}_PATH`];
  const data = env[`${name}_DATA`];
  if (path && data) throw new TemporalConnectionError(`Set ${name}_PATH or ${name}_DATA, not both.`);
  if (data) return Buffer.from(data);
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch {
    throw new TemporalConnectionError(`${name}_PATH="${path}" cannot be read.`);
  }
}

export function temporalConnectionOptions(env: Env = process.env): TemporalConnectionOptions {
  const address = env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
  const apiKey = env.TEMPORAL_API_KEY || undefined;
  if (flag(env, 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION')) {
    throw new TemporalConnectionError('TEMPORAL_TLS_DISABLE_HOST_VERIFICATION is not supported: name the host the certificate is for with TEMPORAL_TLS_SERVER_NAME, or trust its CA with TEMPORAL_TLS_SERVER_CA_CERT_PATH.');
  }
  const crt = pem(env, 'TEMPORAL_TLS_CLIENT_CERT');
  const key = pem(env, 'TEMPORAL_TLS_CLIENT_KEY');
  if (Boolean(crt) !== Boolean(key)) throw new TemporalConnectionError('mTLS needs both TEMPORAL_TLS_CLIENT_CERT_* and TEMPORAL_TLS_CLIENT_KEY_*.');
  const ca = pem(env, 'TEMPORAL_TLS_SERVER_CA_CERT');
  const serverName = env.TEMPORAL_TLS_SERVER_NAME || undefined;
  const tlsFlag = flag(env, 'TEMPORAL_TLS');
  const details: TemporalTls = {
    ...(serverName ? { serverNameOverride: serverName } : {}),
    ...(ca ? { serverRootCACertificate: ca } : {}),
    ...(crt && key ? { clientCertPair: { crt, key } } : {}),
  };
  // As the Temporal CLI does: TLS when asked, when any TLS setting is given, and by default with an API key.
  const wantsTls = tlsFlag ?? (Object.keys(details).length > 0 || apiKey !== undefined);
  if (tlsFlag === false && Object.keys(details).length > 0) throw new TemporalConnectionError('TEMPORAL_TLS=false contradicts the TEMPORAL_TLS_* settings given.');
  return {
    address,
    ...(wantsTls ? { tls: Object.keys(details).length > 0 ? details : true } : {}),
    ...(apiKey ? { apiKey } : {}),
  };
}
