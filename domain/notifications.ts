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
  'operation-failed',
  // Extends §4 (issue 19): a re-protection finished with environments it could not move to the new key.
  'reprotection-incomplete',
  'drift-detected',
  // Extends §4 (issue 19): the two-administrator lock — the policy changed, a lock waits for approval, a request
  // cancelled or lapsed. An approved lock is mailed as every lock is (tenant-locked).
  'lock-policy-changed',
  'lock-requested',
  'lock-request-closed',
] as const;
export type MailEvent = (typeof MAIL_EVENTS)[number];

export interface Notification {
  event: MailEvent;
  subject: string;
  body: string;
}

const SIGNATURE = '\n\n— cmk, the encryption key control plane. You receive this because you administer this tenant.';
const SYSTEM_ADMIN_SIGNATURE = '\n\n— cmk, the encryption key control plane. You receive this because you are the system administrator of the environments named here.';

/**
 * A tenant-wide notification as the system administrator of some of its environments receives it: the same text,
 * then the environments it concerns that are theirs (never another's), and what it means for them.
 */
export function forSystemAdministrator(n: Notification, envs: readonly string[], meaning: string): Notification {
  const body = n.body.endsWith(SIGNATURE) ? n.body.slice(0, -SIGNATURE.length) : n.body;
  return { ...n, body: `${body}\n\nYour environment(s) concerned: ${envs.join(', ')}. ${meaning}` + SYSTEM_ADMIN_SIGNATURE };
}

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

export function keyRolledBackMail(p: {
  tenantName: string;
  tenant: string;
  region: string;
  keyName: string;
  thumbprint: string;
  rolledBackName: string;
  rolledBackThumbprint: string;
  by: string;
  at: string;
  lockAllowedAt: string;
}): Notification {
  return {
    event: 'key-rolled-back',
    subject: `Encryption key change rolled back for ${p.tenantName} (region ${p.region})`,
    body:
      `${p.by} rolled back the key change of tenant ${p.tenant} in region ${p.region} at ${p.at}: the key "${p.keyName}" ` +
      `(thumbprint ${p.thumbprint}) is active again and every environment on the tenant key is being re-protected with it. ` +
      `The key "${p.rolledBackName}" (thumbprint ${p.rolledBackThumbprint}) leaves the vault once no environment depends on it.\n\n` +
      `The tenant cannot be locked before ${p.lockAllowedAt}. A rollback does not move the date of the next allowed key change.` +
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

/** The R4 event an environment operation is mailed as (what a dry run says it would send). */
export const environmentOperationEvent = (operation: keyof typeof ENVIRONMENT_EVENTS): MailEvent => ENVIRONMENT_EVENTS[operation].event;

export function environmentOperationMail(p: { operation: keyof typeof ENVIRONMENT_EVENTS; tenantName: string; env: string; thumbprint: string; by: string; at: string }): Notification {
  const e = ENVIRONMENT_EVENTS[p.operation];
  return {
    event: e.event,
    subject: `${e.subject}: ${p.env} (${p.tenantName})`,
    body: `${p.by} ${e.what} for environment ${p.env} at ${p.at}. It is now protected by the key with thumbprint ${p.thumbprint}.` + SIGNATURE,
  };
}

const list = (ids: string[]): string => (ids.length ? ids.join(', ') : 'none');

export function tenantLockedMail(p: {
  tenantName: string;
  tenant: string;
  region: string;
  by: string;
  at: string;
  sealed: string[];
  lockedByDecisionOnly: string[];
  unlockAllowedAt: string;
  deleteAt: string;
  /** A lock under the two-administrator policy: who approved it (`by` asked for it). */
  approvedBy?: string;
}): Notification {
  return {
    event: 'tenant-locked',
    subject: `${p.tenantName} was locked (region ${p.region})`,
    body:
      `${p.by} locked tenant ${p.tenant} in region ${p.region} at ${p.at}${p.approvedBy ? `, approved by ${p.approvedBy}` : ''}. Every environment there is offline and inaccessible, to the provider too.\n` +
      `Sealed with your key (the service no longer holds any key that opens them): ${list(p.sealed)}.\n` +
      `Locked by decision only (they were on the provider key): ${list(p.lockedByDecisionOnly)}.\n\n` +
      `To undo it, upload the same key again (\`cmk key reactivate\`), then unlock each environment (\`cmk env unlock\`), ` +
      `not before ${p.unlockAllowedAt}. Environments still locked at ${p.deleteAt} are deleted with their backups.` +
      SIGNATURE,
  };
}

export function lockPolicyChangedMail(p: { tenantName: string; tenant: string; lockApproval: 1 | 2; by: string; at: string; holdsFrom: string | null }): Notification {
  const what =
    p.lockApproval === 2
      ? 'From now on, a lock asked for by one global or service administrator waits for a second one to approve it (`cmk tenant lock approve`).'
      : `One administrator will lock alone again from ${p.holdsFrom ?? p.at}; until then a lock still needs a second administrator's approval. If you did not expect this, set it back now: \`cmk tenant policy --tenant ${p.tenant} --lock-approval 2\`.`;
  return {
    event: 'lock-policy-changed',
    subject: `${p.tenantName}: a lock now takes ${p.lockApproval === 2 ? 'two administrators' : 'one administrator'}`,
    body: `${p.by} set the lock policy of tenant ${p.tenant} at ${p.at}. ${what}` + SIGNATURE,
  };
}

export function lockRequestedMail(p: { tenantName: string; tenant: string; id: string; regions: string[]; offline: string[]; by: string; at: string; expiresAt: string }): Notification {
  return {
    event: 'lock-requested',
    subject: `${p.tenantName}: a lock waits for your approval`,
    body:
      `${p.by} asked at ${p.at} to lock tenant ${p.tenant} (region(s) ${list(p.regions)}; request ${p.id}). The tenant's policy wants a second ` +
      `global or service administrator to approve it.\nApproved, every environment there goes offline and is locked: ${list(p.offline)}; ` +
      `those not unlocked are deleted after the retention period.\n\nTo approve: \`cmk tenant lock approve --tenant ${p.tenant} --confirm "${p.tenantName}"\`. ` +
      `To refuse: \`cmk tenant lock cancel --tenant ${p.tenant}\`. Without an approval the request lapses at ${p.expiresAt}.` +
      SIGNATURE,
  };
}

export function lockRequestClosedMail(p: { tenantName: string; tenant: string; id: string; requestedBy: string; how: 'cancelled' | 'lapsed'; by: string | null; at: string }): Notification {
  return {
    event: 'lock-request-closed',
    subject: `${p.tenantName}: the lock asked for by ${p.requestedBy} was ${p.how === 'cancelled' ? 'cancelled' : 'not approved in time'}`,
    body:
      (p.how === 'cancelled'
        ? `${p.by} cancelled at ${p.at} the lock of tenant ${p.tenant} that ${p.requestedBy} had asked for (request ${p.id}).`
        : `The lock of tenant ${p.tenant} that ${p.requestedBy} asked for (request ${p.id}) lapsed at ${p.at}: no second administrator approved it.`) +
      ' Nothing was locked.' +
      SIGNATURE,
  };
}

export function keyReactivatedMail(p: { tenantName: string; tenant: string; region: string; keyName: string; thumbprint: string; by: string; at: string }): Notification {
  return {
    event: 'key-reactivated',
    subject: `Encryption key re-activated for ${p.tenantName} (region ${p.region})`,
    body:
      `${p.by} re-activated the key "${p.keyName}" (thumbprint ${p.thumbprint}) of tenant ${p.tenant} in region ${p.region} at ${p.at}. ` +
      `Locked environments can now be unlocked one at a time with \`cmk env unlock\`.` +
      SIGNATURE,
  };
}

export function environmentUnlockedMail(p: { tenantName: string; env: string; by: string; at: string }): Notification {
  return {
    event: 'environment-unlocked',
    subject: `Environment unlocked: ${p.env} (${p.tenantName})`,
    body: `${p.by} unlocked environment ${p.env} at ${p.at}. It is online again, with the protection it had before the lock.` + SIGNATURE,
  };
}

export function deletionWarningMail(p: { tenantName: string; tenant: string; envs: string[]; deleteAt: string }): Notification {
  return {
    event: 'deletion-warning',
    subject: `Locked environments of ${p.tenantName} will be deleted on ${p.deleteAt}`,
    body:
      `These environments of tenant ${p.tenant} are still locked and will be deleted, with their backups, at ${p.deleteAt}: ${list(p.envs)}.\n` +
      `To keep one, re-activate the key (\`cmk key reactivate\`) and unlock it (\`cmk env unlock\`) before then. A deletion cannot be undone.` +
      SIGNATURE,
  };
}

/** R9's deletion at the deadline, or (`by` set) an administrator's `cmk env delete` of a locked environment. */
export function environmentsDeletedMail(p: { tenantName: string; tenant: string; envs: string[]; at: string; by?: string }): Notification {
  const how = p.by === undefined ? 'stayed locked until their deadline and were deleted' : `were locked and ${p.by} deleted them on request`;
  return {
    event: 'environment-deleted',
    subject: `Locked environments of ${p.tenantName} were deleted`,
    body:
      `These environments of tenant ${p.tenant} ${how} at ${p.at}, with their backups and their key records: ${list(p.envs)}. ` +
      `Their data cannot be recovered by anyone.` +
      SIGNATURE,
  };
}

/** Background work refused by the vault or a database server: what did not happen, why, and how it is repaired. */
export function backgroundFailureMail(p: { tenantName: string; tenant: string; what: string; reason: string; repair: string; at: string }): Notification {
  return {
    event: 'operation-failed',
    subject: `Action needed for ${p.tenantName}: ${p.what}`,
    body: `At ${p.at}, for tenant ${p.tenant}: ${p.what}.\nReason: ${p.reason}\n\n${p.repair}` + SIGNATURE,
  };
}

/** How many environments a mail names one by one; the rest are counted (`cmk key show` lists them all). */
const NAMED_AT_MOST = 50;

/**
 * A re-protection (R7, after a key change, rollback or activation) finished with environments it could not move to
 * the new key: which, why, what to do, and why it matters before a lock. `systemAdmin`: the mail of the system
 * administrator of those environments, which names only theirs.
 */
export function reprotectionIncompleteMail(p: {
  tenantName: string;
  tenant: string;
  region: string;
  keyName: string;
  refused: ReadonlyArray<{ env: string; code: string; message: string }>;
  at: string;
  systemAdmin?: boolean;
}): Notification {
  const shown = p.refused.slice(0, NAMED_AT_MOST);
  const more = p.refused.length - shown.length;
  const lines = shown.map((r) => `- ${r.env}: ${r.code}: ${r.message}`);
  if (more > 0) lines.push(`- and ${more} more (\`cmk key show --tenant ${p.tenant} --region ${p.region}\` lists them all)`);
  const first = p.refused[0]?.env ?? 'ENV';
  return {
    event: 'reprotection-incomplete',
    subject: `Action needed for ${p.tenantName}: ${p.refused.length} environment(s) left on the previous key (region ${p.region})`,
    body:
      `At ${p.at}, tenant ${p.tenant} finished moving its environments in region ${p.region} to the key "${p.keyName}", ` +
      `but ${p.refused.length} environment(s) could not be moved and are still protected by the previous key:\n${lines.join('\n')}\n\n` +
      `What to do: repair the cause named above, then move each to the active key with ` +
      `\`cmk env rekey --tenant ${p.tenant} --env ${first}\` (one command per environment). Until then they stay on the previous key, which stays in ` +
      `the vault because they depend on it.\n\n` +
      `Why it matters: a lock withdraws every key of the tenant and only the active key can be uploaded again, so an ` +
      `environment still on the previous key when the tenant is locked can never be unlocked, and is deleted with its backups ` +
      `when its lock expires. Move them before anyone locks the tenant.` +
      (p.systemAdmin ? SYSTEM_ADMIN_SIGNATURE : SIGNATURE),
  };
}

/** The drift check found environments that differ from what cmk believes (domain/drift.ts); sent once per new drift. */
export function driftDetectedMail(p: { tenantName: string; tenant: string; drifts: Array<{ env: string; summary: string }>; at: string }): Notification {
  return {
    event: 'drift-detected',
    subject: `Encryption drift found in ${p.tenantName}: ${list(p.drifts.map((d) => d.env))}`,
    body:
      `cmk's drift check found, at ${p.at}, environments of tenant ${p.tenant} whose database or key vault no longer matches what cmk set:\n` +
      p.drifts.map((d) => `- ${d.env}: ${d.summary}\n`).join('') +
      `\nSomething changed them outside cmk. cmk repairs nothing by itself: the provider's operators follow the drift runbook ` +
      `(docs/RUNBOOK.md, "Drift"). \`cmk env list\` shows the drift until a check finds the environment as cmk set it again.` +
      SIGNATURE,
  };
}
