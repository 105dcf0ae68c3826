/**
 * `node --import tsx bench/audit-list.ts [--n 100000] [--small 100]`: one tenant's `audit list` page on a trail of N
 * records where that tenant has only `small` of them. Not a test: it prints figures; nothing asserts a duration.
 * Building the trail is not timed; opening it (which builds the per-tenant index) and each page read are.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditTrail, type AuditEntry } from '../audit/trail';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};

function main(): void {
  const n = arg('n', 100_000);
  const small = arg('small', 100);
  const dir = join(mkdtempSync(join(tmpdir(), 'cmk-bench-audit-')), 'audit');
  const key = randomBytes(32);
  const every = Math.floor(n / small);
  const entry = (i: number): AuditEntry => ({
    id: `bench/${i}`,
    at: '2026-01-01T00:00:00Z',
    actor: 'alice@example.com',
    action: 'env.apply',
    outcome: 'completed',
    tenant: i % every === 0 ? 'small' : 'big',
    region: 'emea',
    environment: 'prod',
    thumbprints: ['ab'.repeat(32)],
    details: { attempt: i },
  });
  const writer = new AuditTrail(dir, key);
  for (let from = 0; from < n; from += 1000) writer.append(Array.from({ length: Math.min(1000, n - from) }, (_, j) => entry(from + j + 1)));

  let t = process.hrtime.bigint();
  const trail = new AuditTrail(dir, key);
  const openMs = Number(process.hrtime.bigint() - t) / 1e6;
  const times: number[] = [];
  let count = 0;
  for (let round = 0; round < 10; round += 1) {
    t = process.hrtime.bigint();
    count = trail.list({ tenant: 'small', limit: 100 }).length;
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`trail of ${n} records, tenant "small" holds ${count} of them`);
  console.log(`open (chain check + index): ${openMs.toFixed(0)} ms`);
  console.log(`list({tenant: "small", limit: 100}) over 10 runs: median ${times[5]!.toFixed(2)} ms, min ${times[0]!.toFixed(2)} ms, max ${times[9]!.toFixed(2)} ms`);
}

main();
