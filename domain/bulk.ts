/**
 * `cmk env create --from-file`: a list of environments created in one operation, all or none for a bad line. The
 * list's grammar (one environment ID a line, optionally `ID,ADMIN_EMAIL`; blank lines and `#` comments ignored) and
 * its checks, read by the API service (pre-check, with line numbers) and the tenant workflow's validator (the same
 * checks against its own state). Pure: no Node APIs, no I/O.
 */
import { isAllowed, type Actor } from './access';
import type { ErrorCode } from './codes';
import { isValidEmail, isValidId } from './ids';
import type { TenantSnapshot } from './model';
import { checkRegionServed, forbidden, type Refusal } from './rules';

/** At most this many environments in one list: the request must stay well under Temporal's 2 MB payload limit. */
export const BULK_MAX_ENVIRONMENTS = 10_000;
/** At most this many bytes of list (10,000 lines of a long ID and an e-mail address). */
export const BULK_MAX_BYTES = 1024 * 1024;
/** A refusal names the first bad line, then at most this many more line numbers. */
const MORE_LINES_SHOWN = 10;

/**
 * The list as the workflow receives it: each environment as [ID, line number in the file, index into `admins` or
 * -1]. The administrators are kept once each (a list often names a few for thousands of environments).
 */
export interface BulkEnvironmentList {
  entries: Array<[string, number, number]>;
  admins: string[];
}

/** A line the checks refuse: its number and why. */
export interface BulkLineProblem {
  line: number;
  code: ErrorCode;
  message: string;
}

/** A caller's text in a refusal: short, printable, quoted (refusals are audited and shown on terminals). */
const shown = (text: string): string => JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text).replace(/[^\x20-\x7e]/g, '?');

/** The list's text, parsed. Lines with more than two fields are problems of their own (the checks see the rest). */
export function parseEnvironmentList(text: string): { list: BulkEnvironmentList; problems: BulkLineProblem[] } {
  const entries: BulkEnvironmentList['entries'] = [];
  const admins: string[] = [];
  const adminIndex = new Map<string, number>();
  const problems: BulkLineProblem[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const content = raw.trim();
    if (content === '' || content.startsWith('#')) return;
    const fields = content.split(',').map((f) => f.trim());
    if (fields.length > 2) {
      problems.push({ line, code: 'INVALID_ARGUMENT', message: 'expected an environment ID, or ID,ADMIN_EMAIL (one comma at most).' });
      return;
    }
    const [env = '', admin] = fields;
    let at = -1;
    if (admin !== undefined) {
      at = adminIndex.get(admin) ?? -1;
      if (at < 0) adminIndex.set(admin, (at = admins.push(admin) - 1));
    }
    entries.push([env, line, at]);
  });
  return { list: { entries, admins }, problems };
}

export interface BulkCreateCheck {
  actor: Actor;
  region: string;
  list: BulkEnvironmentList;
  policy?: { regions?: string[] };
}

/**
 * Every line checked before anything is created, in DESIGN.md §4's order across the whole list: FORBIDDEN (the
 * caller), then input (the list's size, the region, each line's ID, e-mail address and duplicates), then state (an
 * environment that exists or is being created). The refusal names the first bad line of the first failing kind
 * (`line 17: …`) and how many more lines that kind refuses. `pending`: IDs whose creation is accepted, not finished.
 * `malformed`: what the parser refused.
 */
export function checkEnvironmentsCreate(tenant: TenantSnapshot, request: BulkCreateCheck, pending: ReadonlySet<string> = new Set(), malformed: readonly BulkLineProblem[] = []): Refusal | null {
  if (!isAllowed(tenant, request.actor, 'env.create')) return forbidden(request.actor, 'create environments for this tenant');
  const { entries, admins } = request.list;
  if (entries.length === 0 && malformed.length === 0) return { code: 'INVALID_ARGUMENT', message: 'The list names no environment (one environment ID a line, optionally ID,ADMIN_EMAIL; blank lines and # comments are ignored).' };
  if (entries.length > BULK_MAX_ENVIRONMENTS) return { code: 'INVALID_ARGUMENT', message: `The list names ${entries.length} environments; at most ${BULK_MAX_ENVIRONMENTS} are created at once.` };
  if (!isValidId(request.region)) return { code: 'INVALID_ARGUMENT', message: `${shown(request.region)} is not a valid region ID.` };
  const unserved = checkRegionServed(request.region, request.policy?.regions);
  if (unserved) return unserved;

  const input: BulkLineProblem[] = [...malformed];
  const state: BulkLineProblem[] = [];
  const firstLine = new Map<string, number>();
  const existing = new Set(tenant.environments.map((e) => e.id));
  for (const [env, line, admin] of entries) {
    if (!isValidId(env)) {
      input.push({ line, code: 'INVALID_ARGUMENT', message: `${shown(env)} is not a valid environment ID (lowercase letters, digits and dashes, at most 63).` });
      continue;
    }
    const email = admin < 0 ? null : admins[admin];
    if (email !== null && !isValidEmail(email)) input.push({ line, code: 'INVALID_ARGUMENT', message: `${shown(email ?? '')} is not a valid e-mail address.` });
    const before = firstLine.get(env);
    if (before !== undefined) input.push({ line, code: 'INVALID_ARGUMENT', message: `environment ${env} is already on line ${before}.` });
    else firstLine.set(env, line);
    if (existing.has(env)) state.push({ line, code: 'ALREADY_EXISTS', message: `environment ${env} already exists.` });
    else if (pending.has(env)) state.push({ line, code: 'ALREADY_EXISTS', message: `environment ${env} is being created.` });
  }
  return lineRefusal(input) ?? lineRefusal(state);
}

/** The first bad line's refusal, naming the others by number; nothing was created. */
function lineRefusal(problems: BulkLineProblem[]): Refusal | null {
  if (problems.length === 0) return null;
  const sorted = [...problems].sort((a, b) => a.line - b.line);
  const first = sorted[0]!;
  const others = [...new Set(sorted.slice(1).map((p) => p.line))].filter((l) => l !== first.line);
  const more = others.length === 0 ? '' : ` ${others.length} more line(s) refused: ${others.slice(0, MORE_LINES_SHOWN).join(', ')}${others.length > MORE_LINES_SHOWN ? ', …' : ''}.`;
  return { code: first.code, message: `line ${first.line}: ${first.message}${more} Nothing was created.` };
}
