/**
 * R4 mail: the events of DESIGN.md §4 and the plain words that say them. Pure text built from IDs, names,
 * e-mails and thumbprints — never secrets.
 */
export const MAIL_EVENTS = [
  'key-changed',
  'key-rolled-back',
  'key-reactivated',
  'environment-applied',
  'environment-reverted',
  'environment-rekeyed',
  'tenant-locked',
  'environment-unlocked',
  'deletion-warning',
  'environment-deleted',
  'admin-changed',
] as const;
export type MailEvent = (typeof MAIL_EVENTS)[number];

export interface Notification {
  event: MailEvent;
  subject: string;
  body: string;
}

const SIGNATURE = '\n\n— cmk, the encryption key control plane. You receive this because you administer this tenant.';

export function keyChangedMail(p: {
  tenantName: string;
  tenant: string;
  region: string;
  keyName: string;
  thumbprint: string;
  by: string;
  at: string;
  lockAllowedAt: string;
  nextChangeAllowedAt: string;
}): Notification {
  return {
    event: 'key-changed',
    subject: `Encryption key changed for ${p.tenantName} (region ${p.region})`,
    body:
      `${p.by} set a new encryption key "${p.keyName}" for tenant ${p.tenant} in region ${p.region} at ${p.at}.\n` +
      `Key thumbprint (SHA-256 of the public key): ${p.thumbprint}\n\n` +
      `If you did not expect this change, act now: the tenant cannot be locked before ${p.lockAllowedAt}, ` +
      `which is the window in which another administrator can roll the change back. ` +
      `The key cannot change again before ${p.nextChangeAllowedAt}.` +
      SIGNATURE,
  };
}

export function adminChangedMail(p: { tenantName: string; tenant: string; change: 'added' | 'removed'; email: string; role: string; by: string; at: string }): Notification {
  const what = p.change === 'added' ? `added ${p.email} as a ${p.role} administrator` : `removed ${p.email} (${p.role} administrator)`;
  return {
    event: 'admin-changed',
    subject: `Administrators changed for ${p.tenantName}`,
    body: `${p.by} ${what} of tenant ${p.tenant} at ${p.at}.` + SIGNATURE,
  };
}

export function tenantCreatedMail(p: { tenantName: string; tenant: string; admins: Array<{ email: string; role: string }>; by: string; at: string }): Notification {
  const list = p.admins.map((a) => `${a.email} (${a.role})`).join(', ');
  return {
    event: 'admin-changed',
    subject: `You are an administrator of ${p.tenantName}`,
    body: `${p.by} created tenant ${p.tenant} at ${p.at} with these administrators: ${list}.` + SIGNATURE,
  };
}

const ENVIRONMENT_EVENTS = {
  apply: { event: 'environment-applied', subject: 'Environment now protected by your own key', what: 'applied the tenant key' },
  revert: { event: 'environment-reverted', subject: 'Environment returned to the provider key', what: 'returned the environment to the provider key' },
  rekey: { event: 'environment-rekeyed', subject: 'Environment database re-encrypted with a new key', what: 're-encrypted the environment with a new database encryption key' },
} as const;

export function environmentOperationMail(p: { operation: keyof typeof ENVIRONMENT_EVENTS; tenantName: string; env: string; thumbprint: string; by: string; at: string }): Notification {
  const e = ENVIRONMENT_EVENTS[p.operation];
  return {
    event: e.event,
    subject: `${e.subject}: ${p.env} (${p.tenantName})`,
    body: `${p.by} ${e.what} for environment ${p.env} at ${p.at}. It is now protected by the key with thumbprint ${p.thumbprint}.` + SIGNATURE,
  };
}
