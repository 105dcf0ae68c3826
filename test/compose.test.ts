/**
 * docker-compose.yml, the production-like stack (docs/DEPLOY.md), validated without a Docker engine: `docker-compose
 * config` (and `docker compose config` where the v2 plugin works) must accept it with deploy/compose.env.example, and
 * the resolved configuration must keep its promises — pinned images, loopback-only ports, no CMK_* variable the code
 * does not read, no secret but the documented development defaults, cmk services started after Temporal is healthy.
 * Also the two helpers its one-shot jobs run: scripts/init-secrets.ts (so the services can mount the secrets
 * read-only) and scripts/lowkey-vault-ca.ts (so TLS to Lowkey Vault stays verified).
 *
 * Without docker-compose the compose checks are skipped with the reason, except under CI=true, where they fail
 * (.ci/run installs Debian's docker-compose).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SEARCH_ATTRIBUTE_REGISTRATION } from '../workflows/messages';
import { initSecrets, SERVICE_SECRETS } from '../scripts/init-secrets';
import { certificatesOf, exportLowkeyVaultCertificate } from '../scripts/lowkey-vault-ca';
import { loadOrCreateSecret } from '../common/secrets';
import { loadCodecKeyRing } from '../codec';

const ROOT = join(__dirname, '..');
const COMPOSE_FILE = 'docker-compose.yml';
const ENV_EXAMPLE = 'deploy/compose.env.example';
const IN_CI = process.env.CI === 'true';

/** The development defaults docs/DEPLOY.md documents; any other secret-looking literal fails the test. */
const DEV_DEFAULTS = new Set(['Cmk-Dev-Only-1', 'temporal']);


// ------------------------------------------------------------------------------------------- compose clients

interface ComposeClient {
  name: string;
  command: string;
  prefix: string[];
}

function works(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { stdio: 'ignore', timeout: 30_000 });
  return result.status === 0;
}

const clients: ComposeClient[] = [
  ...(works('docker-compose', ['version']) ? [{ name: 'docker-compose (v1)', command: 'docker-compose', prefix: [] }] : []),
  ...(works('docker', ['compose', 'version']) ? [{ name: 'docker compose (v2 plugin)', command: 'docker', prefix: ['compose'] }] : []),
];

function compose(client: ComposeClient, args: string[], env: NodeJS.ProcessEnv = cleanEnv()) {
  const started = Date.now();
  const result = spawnSync(client.command, [...client.prefix, '-f', COMPOSE_FILE, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
  return { ...result, ms: Date.now() - started };
}

/** The environment without anything the compose file interpolates, so that only the env file decides. */
function cleanEnv(): NodeJS.ProcessEnv {
  const names = new Set([...readFileSync(join(ROOT, COMPOSE_FILE), 'utf8').matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]));
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !names.has(name) && name !== 'COMPOSE_FILE' && name !== 'COMPOSE_PROJECT_NAME'));
}

const NO_CLIENT = 'docker-compose.yml validation — skipped: neither `docker-compose` nor `docker compose` works here (Debian: apt-get install --no-install-recommends docker-compose)';

if (clients.length === 0 && !IN_CI) console.info(NO_CLIENT);

// ------------------------------------------------------------------------------------------- resolved config

interface Service {
  image?: string;
  build?: unknown;
  ports?: Array<string | { host_ip?: string; published?: string | number; target: number }>;
  environment?: Record<string, string | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: unknown; disable?: boolean };
  volumes?: Array<string | { source?: string; target: string; read_only?: boolean }>;
  entrypoint?: string[] | string;
  command?: string[] | string;
}
interface Resolved {
  services: Record<string, Service>;
}

/** YAML to JSON with Debian's python3-yaml (a dependency of Debian's docker-compose): no npm YAML parser needed. */
function parseYaml(text: string): Resolved {
  const json = execFileSync('python3', ['-c', 'import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: text, encoding: 'utf8' });
  return JSON.parse(json) as Resolved;
}

/** CMK_* names the TypeScript sources read (`env.CMK_X`, `'CMK_X'`, …), tests excluded: grepped now, so drift fails. */
function cmkNamesReadByCode(): Set<string> {
  const names = new Set<string>();
  const skip = new Set(['node_modules', '.venv', '.git', 'var', 'test', 'docs', 'coverage', '.tools']);
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (skip.has(entry.name)) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        for (const m of readFileSync(path, 'utf8').matchAll(/(?:\.|['"`])(CMK_[A-Z0-9_]+)\b/g)) names.add(m[1]!);
      }
    }
  };
  walk(ROOT);
  return names;
}

const hostIp = (port: string | { host_ip?: string; published?: string | number }): string | undefined => {
  if (typeof port !== 'string') return port.published === undefined ? 'unpublished' : port.host_ip;
  const parts = port.replace(/\/(tcp|udp)$/, '').split(':');
  return parts.length === 3 ? parts[0] : parts.length === 1 ? 'unpublished' : undefined;
};

const SECRET_NAME = /(PASSWORD|PWD|SECRET|TOKEN|CREDENTIAL|_KEYS?)$/;
const NOT_SECRETS = new Set(['CMK_MSSQL_TENANT_KEYS', 'TEMPORAL_CODEC_PASS_ACCESS_TOKEN']);

/** Every secret-looking literal among name=value pairs that is neither empty nor a documented development default. */
function secretLiterals(pairs: Array<[string, string]>, where: string): string[] {
  const found: string[] = [];
  for (const [name, value] of pairs) {
    if (SECRET_NAME.test(name) && !NOT_SECRETS.has(name) && value !== '' && !DEV_DEFAULTS.has(value)) found.push(`${where}: ${name}`);
    for (const m of value.matchAll(/\/\/[^/:@\s]+:([^@\s]+)@/g)) if (!DEV_DEFAULTS.has(m[1]!)) found.push(`${where}: ${name} has a password in its URL`);
    if (value.includes('-----BEGIN')) found.push(`${where}: ${name} holds PEM`);
  }
  return found;
}

const suite = clients.length > 0 || IN_CI ? describe : describe.skip;

suite(clients.length > 0 || IN_CI ? 'docker-compose.yml' : NO_CLIENT, () => {
  let resolved: Resolved;
  const timings: string[] = [];

  beforeAll(() => {
    if (clients.length === 0) throw new Error(`CI=true but ${NO_CLIENT.replace(/^.*— skipped: /, '')}`);
    const result = compose(clients[0]!, ['--env-file', ENV_EXAMPLE, 'config']);
    if (result.status !== 0) throw new Error(`${clients[0]!.name} config failed: ${result.stderr}`);
    resolved = parseYaml(result.stdout);
  });

  afterAll(() => {
    if (timings.length > 0) console.info(`compose config timings: ${timings.join(', ')}`);
  });

  test.each(clients.map((c) => [c.name, c] as const))('%s: `config -q` accepts it with deploy/compose.env.example', (_name, client) => {
    const result = compose(client, ['--env-file', ENV_EXAMPLE, 'config', '-q']);
    timings.push(`${client.name} ${result.ms} ms`);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  test.each(clients.map((c) => [c.name, c] as const))('%s: refuses to resolve without an external issuer', (_name, client) => {
    const empty = join(mkdtempSync(join(tmpdir(), 'cmk-compose-')), 'empty.env');
    writeFileSync(empty, '');
    const result = compose(client, ['--env-file', empty, 'config', '-q']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/CMK_AUTH_(ISSUER|JWKS_URL)/);
  });

  test('every image is pinned: a tag, never latest', () => {
    const unpinned = Object.entries(resolved.services).flatMap(([name, service]) => {
      const image = service.image ?? '';
      const tag = /^(?:[^/]+\/)*[^/:@]+(?::([^:@/]+))?(?:@sha256:[0-9a-f]{64})?$/.exec(image)?.[1];
      return !tag || /latest/i.test(tag) ? [`${name}: "${image}"`] : [];
    });
    expect(unpinned).toEqual([]);
  });

  test('every published port is bound to 127.0.0.1; the databases and the vault publish only there', () => {
    const exposed = Object.entries(resolved.services).flatMap(([name, service]) =>
      (service.ports ?? []).flatMap((port) => (hostIp(port) === '127.0.0.1' ? [] : [`${name}: ${JSON.stringify(port)}`])),
    );
    expect(exposed).toEqual([]);
    for (const name of ['postgresql', 'mssql', 'lowkey-vault']) expect(resolved.services[name]?.ports?.length).toBeGreaterThan(0);
  });

  test('every CMK_* variable it names is one the code reads', () => {
    const text = readFileSync(join(ROOT, COMPOSE_FILE), 'utf8') + readFileSync(join(ROOT, ENV_EXAMPLE), 'utf8');
    const named = new Set([...text.matchAll(/\bCMK_[A-Z0-9_]+/g)].map((m) => m[0]));
    for (const service of Object.values(resolved.services)) for (const name of Object.keys(service.environment ?? {})) if (name.startsWith('CMK_')) named.add(name);
    const read = cmkNamesReadByCode();
    expect(named.size).toBeGreaterThan(20);
    expect([...named].filter((name) => !read.has(name)).sort()).toEqual([]);
  });

  test('no secret literal other than the documented development defaults', () => {
    const found = Object.entries(resolved.services).flatMap(([name, service]) =>
      secretLiterals(Object.entries(service.environment ?? {}).map(([k, v]) => [k, v ?? '']), `service ${name}`),
    );
    const example = readFileSync(join(ROOT, ENV_EXAMPLE), 'utf8')
      .split('\n')
      .flatMap((line): Array<[string, string]> => {
        const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
        return m ? [[m[1]!, m[2]!]] : [];
      });
    found.push(...secretLiterals(example, ENV_EXAMPLE));
    // Defaults written in the file itself (`${NAME:-default}`), whatever the env file says.
    const defaults = [...readFileSync(join(ROOT, COMPOSE_FILE), 'utf8').matchAll(/\$\{([A-Z0-9_]+):-([^}]*)\}/g)].map((m): [string, string] => [m[1]!, m[2]!]);
    found.push(...secretLiterals(defaults, `${COMPOSE_FILE} defaults`));
    for (const file of [COMPOSE_FILE, ENV_EXAMPLE, 'Dockerfile']) if (readFileSync(join(ROOT, file), 'utf8').includes('-----BEGIN')) found.push(`${file} holds PEM`);
    expect(found).toEqual([]);
    // The documented defaults are the ones in use (so this list cannot grow stale either).
    expect(example).toEqual(expect.arrayContaining([['MSSQL_SA_PASSWORD', 'Cmk-Dev-Only-1'], ['TEMPORAL_POSTGRES_PASSWORD', 'temporal']]));
  });

  test('the cmk services start after Temporal is healthy, its namespace is set up and their one-shot jobs are done', () => {
    expect(resolved.services.temporal?.healthcheck?.test).toBeDefined();
    const cmk = Object.entries(resolved.services).filter(([, s]) => s.build !== undefined && /\b(worker|api)\/main\.ts\b/.test(JSON.stringify(s.command)));
    expect(cmk.map(([name]) => name).sort()).toEqual(['api', 'worker-eu', 'worker-us', 'worker-workflows']);
    for (const [name, service] of cmk) {
      const conditions = Object.fromEntries(Object.entries(service.depends_on ?? {}).map(([dep, d]) => [dep, d.condition]));
      expect({ name, conditions }).toEqual({
        name,
        conditions: expect.objectContaining({
          temporal: 'service_healthy',
          'temporal-setup': 'service_completed_successfully',
          mssql: 'service_healthy',
          'mssql-setup': 'service_completed_successfully',
          'lowkey-vault': 'service_healthy',
          'lowkey-vault-ca': 'service_completed_successfully',
          'cmk-init': 'service_completed_successfully',
        }),
      });
      expect(service.healthcheck?.test).toBeDefined();
      // The secrets volume is read-only for every long-running cmk service; only cmk-init writes it.
      const secrets = (service.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}:${v.read_only ? 'ro' : 'rw'}`)).filter((v) => v.startsWith('cmk-secrets:'));
      expect({ name, secrets }).toEqual({ name, secrets: ['cmk-secrets:/var/lib/cmk/secrets:ro'] });
    }
    for (const dep of ['temporal', 'mssql', 'lowkey-vault', 'postgresql']) expect(resolved.services[dep]?.healthcheck?.test).toBeDefined();
  });

  test('R1: one worker per region of CMK_REGIONS, and one worker (the audit trail\'s single writer) for the workflows', () => {
    const workers = Object.entries(resolved.services).filter(([name]) => name.startsWith('worker-'));
    const roles = workers.map(([, s]) => `${s.environment?.CMK_WORKER_REGIONS}/${s.environment?.CMK_WORKER_WORKFLOWS}`).sort();
    expect(roles).toEqual(['eu/false', 'none/true', 'us/false']);
    for (const [, s] of workers) expect(s.environment?.CMK_REGIONS).toBe('eu,us');
  });
});

// ------------------------------------------------------------------------------------ the jobs' own scripts

describe('the compose jobs', () => {
  test('temporal-setup registers exactly the search attributes of workflows/messages.ts', () => {
    const script = readFileSync(join(ROOT, 'deploy/temporal/setup-namespace.sh'), 'utf8');
    const block = /<<'ATTRIBUTES'\n([\s\S]*?)\nATTRIBUTES/.exec(script)?.[1] ?? '';
    const listed = block.split('\n').map((line) => line.trim().split(/\s+/) as [string, string]);
    expect(listed).toEqual(SEARCH_ATTRIBUTE_REGISTRATION.map(([name, type]) => [name, type]));
  });

  test('cmk-init makes every secret the sources load with loadOrCreateSecret', () => {
    const loaded = new Set<string>();
    for (const dir of ['api', 'worker', 'activities', 'client', 'codec', 'common', 'audit', 'vault', 'database', 'mail', 'keyfiles', 'config', 'stack']) {
      const walk = (d: string): void => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) walk(p);
          else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/loadOrCreateSecret\([^,]+,\s*'([^']+)'/g)) loaded.add(m[1]!);
        }
      };
      try {
        walk(join(ROOT, dir));
      } catch {
        // a folder that does not exist (yet) loads nothing
      }
    }
    expect(loaded.size).toBeGreaterThan(0);
    expect([...loaded].filter((name) => !(SERVICE_SECRETS as readonly string[]).includes(name))).toEqual([]);
  });

  test('cmk-init makes the secrets once (0700 / 0600), and the services can then read them from a read-only mount', () => {
    const base = mkdtempSync(join(tmpdir(), 'cmk-secrets-'));
    const dir = join(base, 'secrets');
    try {
      initSecrets(dir, {});
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      const files = readdirSync(dir).sort();
      expect(files).toEqual([...SERVICE_SECRETS, 'codec-key.1'].sort());
      for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
      const before = files.map((f) => readFileSync(join(dir, f), 'utf8'));
      initSecrets(dir, {});
      expect(files.map((f) => readFileSync(join(dir, f), 'utf8'))).toEqual(before);

      // The services' own loading on a read-only bind mount of that directory (needs root, as in CI).
      const ro = join(base, 'ro');
      mkdirSync(ro);
      const mounted = spawnSync('mount', ['--bind', dir, ro]).status === 0;
      if (!mounted) {
        if (IN_CI) throw new Error('cannot bind-mount as CI: the read-only check needs root');
        console.info('read-only secrets check — skipped: mount --bind needs root');
        return;
      }
      try {
        expect(spawnSync('mount', ['-o', 'remount,ro,bind', ro]).status).toBe(0);
        expect(spawnSync('touch', [join(ro, 'probe')]).status).not.toBe(0);
        for (const name of SERVICE_SECRETS) expect(loadOrCreateSecret(ro, name, 32, {}).toString('base64')).toBe(readFileSync(join(dir, name), 'utf8').trim());
        expect(loadCodecKeyRing(ro, {}).current.id).toBe('1');
      } finally {
        spawnSync('umount', [ro]);
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test("lowkey-vault-ca exports the keystore's certificate (never its key), which verifies the vault's TLS by name", async () => {
    const work = mkdtempSync(join(tmpdir(), 'cmk-lowkey-ca-'));
    const servers: Array<Server | ReturnType<typeof createTlsServer>> = [];
    try {
      // A keystore as Lowkey Vault's: self-signed, names lowkey-vault, PBES2/AES-256 with an HMAC-SHA256 MAC.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'), '-days', '2', '-subj', '/CN=lowkey-vault.local', '-addext', 'subjectAltName=DNS:lowkey-vault,DNS:localhost'], { stdio: 'ignore' });
      execFileSync('openssl', ['pkcs12', '-export', '-inkey', join(work, 'key.pem'), '-in', join(work, 'cert.pem'), '-out', join(work, 'ks.p12'), '-passout', 'pass:changeit', '-keypbe', 'AES-256-CBC', '-certpbe', 'AES-256-CBC', '-macalg', 'sha256'], { stdio: 'ignore' });
      const keystore = readFileSync(join(work, 'ks.p12'));
      const metadata = createServer((req, res) => {
        if (req.url === '/metadata/default-cert/password') res.end('changeit');
        else if (req.url === '/metadata/default-cert/lowkey-vault.p12') res.end(keystore);
        else res.writeHead(404).end();
      });
      servers.push(metadata);
      await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
      const port = (metadata.address() as { port: number }).port;

      const out = join(work, 'lowkey-vault.pem');
      const pem = await exportLowkeyVaultCertificate(`http://127.0.0.1:${port}/`, out);
      expect(readFileSync(out, 'utf8')).toBe(pem);
      expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----/);
      expect(pem).not.toMatch(/PRIVATE KEY/);
      expect(certificatesOf(keystore, 'changeit')).toBe(pem);
      expect(() => certificatesOf(keystore, 'wrong')).toThrow();

      // The vault's HTTPS as the cmk services see it: trusted through this PEM alone, for the name lowkey-vault only.
      const vault = createTlsServer({ key: readFileSync(join(work, 'key.pem')), cert: readFileSync(join(work, 'cert.pem')) }, (socket) => socket.end());
      servers.push(vault);
      await new Promise<void>((resolve) => vault.listen(0, '127.0.0.1', resolve));
      const tlsPort = (vault.address() as { port: number }).port;
      const handshake = (servername: string) =>
        new Promise<string>((resolve) => {
          const socket = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername, ca: pem }, () => {
            socket.destroy();
            resolve('verified');
          });
          socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        });
      expect(await handshake('lowkey-vault')).toBe('verified');
      expect(await handshake('elsewhere.example')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      for (const s of servers) s.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});

