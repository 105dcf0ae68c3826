/** A vault fault that is not a tenant's doing (missing or disabled key): retried or reported, never a refusal. */
export class VaultError extends Error {
  override name = 'VaultError';
  constructor(
    readonly reason: 'not-found' | 'disabled' | 'tampered',
    message: string,
  ) {
    super(message);
  }
}
