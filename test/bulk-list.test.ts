/** The bulk list's grammar and checks (domain/bulk.ts), as the API service and the workflow's validator run them. */
import { checkEnvironmentsCreate, parseEnvironmentList } from '../domain/bulk';
import type { TenantSnapshot } from '../domain/model';

const tenant: TenantSnapshot = {
  tenant: 'contoso',
  displayName: 'Contoso',
  homeRegion: 'emea',
  createdAt: '2026-01-01T00:00:00.000Z',
  admins: [{ email: 'alice@example.com', role: 'global' }],
  environments: [{ id: 'prod', region: 'emea', state: 'Online', protection: 'provider', keyThumbprint: 'ab', systemAdmin: 'sam@example.com', createdAt: '2026-01-01T00:00:00.000Z' }],
  regions: {},
  operations: {},
};
const alice = { kind: 'user', email: 'alice@example.com' } as const;
const check = (text: string, options: { actor?: typeof alice | { kind: 'user'; email: string }; region?: string; pending?: string[]; regions?: string[] } = {}) => {
  const { list, problems } = parseEnvironmentList(text);
  return checkEnvironmentsCreate(tenant, { actor: options.actor ?? alice, region: options.region ?? 'emea', list, ...(options.regions ? { policy: { regions: options.regions } } : {}) }, new Set(options.pending ?? []), problems);
};

test('lines: CRLF, blanks and # comments skipped, fields trimmed, line numbers kept, each administrator kept once', () => {
  const { list, problems } = parseEnvironmentList('# header\r\n\r\n dev \r\nqa , Sam@Example.com\r\n  # indented comment\nui,Sam@Example.com\n');
  expect(problems).toEqual([]);
  expect(list).toEqual({ entries: [['dev', 3, -1], ['qa', 4, 0], ['ui', 6, 0]], admins: ['Sam@Example.com'] });
  expect(check('dev\nqa,sam@example.com\n')).toBeNull();
});

test('the order of DESIGN.md §4 across the list: FORBIDDEN, then input (first bad line named, the others counted), then state', () => {
  expect(check('Bad\n', { actor: { kind: 'user', email: 'sam@example.com' } })?.code).toBe('FORBIDDEN');
  expect(check('# only a comment\n')).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/names no environment/) });
  expect(check('dev\n', { region: 'mars', regions: ['emea'] })).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not served/) });
  // prod (line 1) exists, but the bad ID on line 3 is an input code: it answers first.
  expect(check('prod\ndev\nDev!\nx,y,z\nqa,not-mail\ndev\n')).toEqual({
    code: 'INVALID_ARGUMENT',
    message: 'line 3: "Dev!" is not a valid environment ID (lowercase letters, digits and dashes, at most 63). 3 more line(s) refused: 4, 5, 6. Nothing was created.',
  });
  expect(check('dev\nprod\nqa\n')).toEqual({ code: 'ALREADY_EXISTS', message: 'line 2: environment prod already exists. Nothing was created.' });
  expect(check('dev\nqa\n', { pending: ['qa'] })).toEqual({ code: 'ALREADY_EXISTS', message: 'line 2: environment qa is being created. Nothing was created.' });
});

test('a caller’s text is quoted short and printable in a refusal', () => {
  const refusal = check(`${'A'.repeat(200)}\u0007\n`);
  expect(refusal?.message).toMatch(/^line 1: "A{40}\.\.\." is not a valid environment ID/);
  expect(refusal?.message).not.toMatch(/[^\x20-\x7e]/);
});
