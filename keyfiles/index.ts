/** Key files a tenant administrator hands us (R2, R3): `.pfx` and `.byok`, and the `.pfx` that `key generate` returns. */
import { extname } from 'node:path';
import { CmkError } from '../common/errors';

export { MAX_KDF_ITERATIONS, MAX_KEY_FILE_BYTES, parsePfx, type OpenedPfx } from './pfx';
export { parseByok, unwrapByokCiphertext, wrapForByok } from './byok';
export { generateKeyPfx, PFX_PROTECTION, type CertificateSubject, type GenerateKeyOptions, type GeneratedKey } from './generate';

/** R2: `.pfx` (or `.p12`) and `.byok` files only, told apart by the name the administrator gave (any letter case). */
export function detectKeyFileKind(fileName: string): 'pfx' | 'byok' {
  const extension = extname(fileName).toLowerCase();
  if (extension === '.pfx' || extension === '.p12') return 'pfx';
  if (extension === '.byok') return 'byok';
  throw new CmkError('INVALID_KEY_FILE', 'Only .pfx and .byok files are accepted.');
}
