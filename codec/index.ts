/** The data converter every client and worker of the control plane uses: encrypted payloads and failures. */
import type { DataConverter } from '@temporalio/common';
import { EncryptionCodec, type CodecOptions } from './encryption';
import { loadCodecKeyRing, type CodecKeyRing } from './keys';

export { EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, PLAINTEXT_REFUSED, UnknownCodecKeyError, type CodecOptions } from './encryption';
export { addCodecKey, loadCodecKeyRing, type CodecKeyRing } from './keys';

export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

export function dataConverterFor(ring: CodecKeyRing, options: CodecOptions = {}): DataConverter {
  return { payloadCodecs: [new EncryptionCodec(ring, options)], failureConverterPath: FAILURE_CONVERTER_PATH };
}

/**
 * The data converter from CMK_CODEC_KEYS or the key files in the secrets dir (created at first start).
 * CMK_CODEC_ACCEPT_PLAINTEXT=true lets a worker finish workflows started before the codec (docs/SECURITY.md): it
 * reopens the side door for plaintext payloads, so only for as long as those workflows run.
 */
export function loadDataConverter(secretsDir: string, env: Record<string, string | undefined> = process.env): DataConverter {
  return dataConverterFor(loadCodecKeyRing(secretsDir, env), { acceptPlaintext: env.CMK_CODEC_ACCEPT_PLAINTEXT === 'true' });
}
