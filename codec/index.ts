/** The data converter every client and worker of the control plane uses: encrypted payloads and failures. */
import type { DataConverter } from '@temporalio/common';
import { EncryptionCodec } from './encryption';
import { loadCodecKeyRing, type CodecKeyRing } from './keys';

export { EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, UnknownCodecKeyError } from './encryption';
export { addCodecKey, loadCodecKeyRing, type CodecKeyRing } from './keys';

export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

export function dataConverterFor(ring: CodecKeyRing): DataConverter {
  return { payloadCodecs: [new EncryptionCodec(ring)], failureConverterPath: FAILURE_CONVERTER_PATH };
}

/** The data converter from CMK_CODEC_KEYS or the key files in the secrets dir (created at first start). */
export function loadDataConverter(secretsDir: string, env: Record<string, string | undefined> = process.env): DataConverter {
  return dataConverterFor(loadCodecKeyRing(secretsDir, env));
}
