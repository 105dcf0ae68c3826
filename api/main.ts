/** The API service process: HTTP on CMK_API_PORT (loopback in the embedded default), built on the client library. */
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { temporalConnectionOptions } from '../config/temporal';
import { ControlPlane } from '../client/library';
import { buildParts } from '../worker/parts';
import { ApiService } from './service';
import { ChallengeIssuer } from './challenges';
import { loadOrCreateSecret } from '../common/secrets';
import { loadRequestSigner } from '../common/request-signing';
import { loadOrCreateTokenSigningKey, publicKeyOf } from '../common/tokens';
import { EncryptionCodec, loadCodecKeyRing, dataConverterFor } from '../codec';
import { createAuthenticator } from './auth';
import { createCodecEndpoint, uiCodecCapability } from './codec';
import { createApiServer } from './server';
import { IsolatedPfxParser } from '../keyfiles/isolated';
import { stopWhenStackEnds } from '../stack/parent';
import { createLineLogger } from '../common/logging';
import { ApiMetrics, createMetricsServer } from './metrics';
import { RateLimiter } from './ratelimit';
import { ConsoleSessions } from './console-sessions';
import { ConsoleOidc } from './console-oidc';
import { loadConsoleAssets } from './console-assets';

export async function runApi(): Promise<void> {
  const config = loadConfig();
  const parts = buildParts(config);
  const ring = loadCodecKeyRing(config.secretsDir);
  const connection = await Connection.connect(temporalConnectionOptions());
  const temporal = new Client({ connection, namespace: config.temporalNamespace, dataConverter: dataConverterFor(ring) });
  const challenges = new ChallengeIssuer(loadOrCreateSecret(config.secretsDir, 'challenge-key'));
  const controlPlane = new ControlPlane(temporal, config.taskQueue, loadRequestSigner(config.secretsDir));
  const audit = (entries: Parameters<ControlPlane['recordAudit']>[0]) => controlPlane.recordAudit(entries);
  const pfxParser = new IsolatedPfxParser();
  const service = new ApiService({ config, controlPlane, challenges, audit, openPfx: (bytes, password) => pfxParser.parsePfx(bytes, password), generatePfx: (options) => pfxParser.generateKeyPfx(options), ...parts });
  const localKey = config.auth.mode === 'local' ? publicKeyOf(loadOrCreateTokenSigningKey(config.secretsDir)) : null;
  const log = createLineLogger(config.telemetry, 'api');
  if (config.auth.mode === 'external' && !config.auth.requireEmailVerified) {
    log('warning: CMK_AUTH_REQUIRE_EMAIL_VERIFIED=false: tokens whose e-mail address the issuer has not verified are accepted; whoever can register that address with the issuer acts as its administrator.');
  }
  const metrics = config.telemetry.apiMetrics ? new ApiMetrics() : undefined;
  // `Secure` cookies unless the console is on this machine (loopback http, the embedded default).
  const secureCookie = !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(config.apiUrl).hostname);
  const consoleSessions = new ConsoleSessions({ secureCookie });
  const server = createApiServer({
    ...(metrics ? { metrics } : {}),
    service,
    temporal,
    taskQueue: config.taskQueue,
    ...(config.policy.regions ? { regions: config.policy.regions } : {}),
    authenticate: createAuthenticator(config.auth, localKey),
    loopbackOnly: config.auth.mode === 'local',
    // Display only (the UI, the CLI): old plaintext histories show as they are, an undecodable payload is an error
    // (INVALID_ARGUMENT); no workflow trusts this decoding.
    codec: createCodecEndpoint({
      codec: new EncryptionCodec(ring, { acceptPlaintext: true, throwOnUndecodable: true }),
      allowedOrigin: config.codecCorsOrigin,
      audit,
      uiCapability: uiCodecCapability(config),
    }),
    audit,
    log,
    rateLimits: new RateLimiter(config.rateLimits),
    // The console: same origin as the API, so its requests go through the same routes, checks and codes.
    consoleAssets: loadConsoleAssets(),
    consoleSessions,
    ...(config.consoleOidc
      ? { consoleOidc: new ConsoleOidc(config.consoleOidc, { sessions: consoleSessions, secureCookie, requireEmailVerified: config.auth.requireEmailVerified, log }) }
      : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.apiPort, config.apiHost, resolve);
  });
  const metricsServer = metrics && config.telemetry.apiMetrics ? createMetricsServer(metrics, () => service.mailSummary()) : undefined;
  if (metricsServer && config.telemetry.apiMetrics) {
    const { host, port } = config.telemetry.apiMetrics;
    await new Promise<void>((resolve, reject) => {
      metricsServer.once('error', reject);
      metricsServer.listen(port, host, resolve);
    });
  }
  const stop = () => {
    metricsServer?.close();
    server.close();
    server.closeAllConnections();
    void pfxParser.close();
    void connection.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  stopWhenStackEnds(stop);
}

if (require.main === module) {
  runApi().catch((err: unknown) => {
    console.error(`cmk api: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
