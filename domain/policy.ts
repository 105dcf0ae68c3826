/**
 * Durations of the rules (R5, R6, R9, R15; R14 lets a deployment set its own) and the regions a deployment serves,
 * with the duration grammar of CMK_KEY_CHANGE_INTERVAL and its siblings. Pure: no Node APIs, no I/O.
 */

/** R5, R6, R9, R15 durations in milliseconds; a deployment sets its own (CMK_KEY_CHANGE_INTERVAL …). */
export interface Policy {
  keyChangeIntervalMs: number;
  lockEmbargoMs: number;
  lockedRetentionMs: number;
  unlockDelayMs: number;
  /**
   * How long a lock asked for under the two-administrator policy waits for the second administrator, and how long
   * a lowering of that policy takes to hold (issue 19; CMK_LOCK_APPROVAL_WINDOW). Absent in policies older than it.
   */
  lockApprovalWindowMs?: number;
  /**
   * R1: the regions this deployment serves (CMK_REGIONS), each with its own task queue, vault and database servers.
   * Absent: any valid region ID, and one task queue for all (the embedded default).
   */
  regions?: string[];
}

const HOUR = 3_600_000;
export const DEFAULT_POLICY: Policy = {
  keyChangeIntervalMs: 24 * HOUR, // R5
  lockEmbargoMs: 72 * HOUR, // R6
  lockedRetentionMs: 28 * 24 * HOUR, // R9
  unlockDelayMs: 1 * HOUR, // R15
  lockApprovalWindowMs: 24 * HOUR,
};

/** The two-administrator lock's window: the policy's, or 24 hours for a policy that predates it. */
export const lockApprovalWindowOf = (policy: Policy): number => policy.lockApprovalWindowMs ?? 24 * HOUR;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR };

/** Parses `24h`, `72h`, `28d`, `1h`, `30s`, `500ms`, `1h30m`; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(ms|s|m|h|d))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const part of trimmed.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(part[1]) * (UNIT_MS[part[2] ?? ''] ?? Number.NaN);
  }
  return Number.isFinite(total) ? total : undefined;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 24 * HOUR], ['h', HOUR], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
