/**
 * `cmk env create --from-file F`: many environments in one operation (domain/bulk.ts), all or none for a bad line.
 * The list goes to the API as it is (the refusal's line numbers are the file's); while the request runs, the CLI
 * asks for its progress once a second and prints `created 4,000 / 10,000` on stderr.
 */
import { randomUUID } from 'node:crypto';
import { CmkError } from '../../common/errors';
import { BULK_MAX_BYTES } from '../../domain/bulk';
import { isErrorCode } from '../../domain/codes';
import { enc, readFileWithin, type CliContext } from './context';
import type * as S from '../../api/schemas';
import { ApiUnreachableError, type Answer } from '../http';

const PROGRESS_EVERY_MS = 1_000;
/** How often a request cut off after it was accepted is sent again (a second apart) before the CLI gives up. */
const RESENDS = 10;
const count = (n: number): string => n.toLocaleString('en-US');

export async function createFromFile({ api, io, print, localInput }: CliContext, o: { tenant: string; fromFile: string; region?: string }): Promise<void> {
  // FORBIDDEN and NOT_FOUND come before any complaint about the file (DESIGN.md §4).
  const list = await localInput(o.tenant, 'env.create', () => readList(o.fromFile));
  const operation = randomUUID();
  const path = `/v1/tenants/${enc(o.tenant)}/environments/bulk`;
  let shown = '';
  const show = (created: number, total: number) => {
    const line = `created ${count(created)} / ${count(total)}`;
    if (line !== shown) io.err((shown = line));
  };
  let finished = false;
  let accepted = false;
  const send = async (): Promise<Answer<typeof S.EnvironmentsCreated>> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await api().call<Answer<typeof S.EnvironmentsCreated>>('POST', path, { list, region: o.region, operation });
      } catch (err) {
        // Cut off after the workflow accepted it (an HTTP timeout, a dropped connection): the operation runs on, and
        // the same request again attaches to it (the operation ID names its update) and answers when it ends.
        if (!(err instanceof ApiUnreachableError) || !accepted || attempt >= RESENDS) throw err;
        await new Promise((resolve) => setTimeout(resolve, PROGRESS_EVERY_MS));
      }
    }
  };
  const request = send().finally(() => (finished = true));
  const watching = (async () => {
    while (!finished) {
      await new Promise((resolve) => setTimeout(resolve, PROGRESS_EVERY_MS));
      if (finished) return;
      // Progress is a courtesy: a failed poll is skipped, the request's own answer decides.
      const p = await api()
        .call<Answer<typeof S.EnvironmentCreation>>('GET', `${path}/${enc(operation)}/progress`)
        .catch(() => null);
      accepted ||= p?.known === true;
      if (p?.known && !finished) show(p.created ?? 0, p.total ?? 0);
    }
  })();
  const r = await request;
  await watching;
  show(r.created, r.requested);
  const first = r.refused[0];
  if (first) {
    throw new CmkError(isErrorCode(first.code) ? first.code : 'INVALID_ARGUMENT', `line ${first.line}: ${first.message} ${r.refused.length} environment(s) refused after the checks passed; the other ${r.created} were created (cmk env list).`);
  }
  print({ tenant: r.tenant, operation: r.operation, region: r.region, requested: r.requested, created: r.created, protection: r.protection, keyThumbprint: r.keyThumbprint, environments: r.environments }, () =>
    `${count(r.created)} environments created in region ${r.region}, Online, protected by the ${r.protection} key ${r.keyThumbprint}.`,
  );
}

/** The list file's text, refused by size before it is read (INVALID_ARGUMENT). */
async function readList(file: string): Promise<string> {
  const tooLarge = new CmkError('INVALID_ARGUMENT', `${file} is larger than ${BULK_MAX_BYTES / 1024} KiB; create at most 10,000 environments at once.`);
  return (await readFileWithin(file, BULK_MAX_BYTES, 'list', tooLarge)).toString('utf8');
}
