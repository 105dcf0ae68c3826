/** The audit trail: its verification (hash chain and signed head), and its records filtered by actor and event. */
import { useState } from 'preact/hooks';
import { call, enc, type AuditRecordView } from '../api';
import { when } from '../format';
import { Field, Refusal, Section, useLoad } from '../ui';
import type { TenantContext } from '../tenant-context';

interface Verification {
  ok: boolean;
  records: number;
  problems: Array<{ seq: number | null; problem: string }>;
}

const PAGE = 500;
/** Past this many records the page shows the oldest ones it loaded and says so; `cmk audit list` pages through all. */
const MOST = 10_000;

async function loadRecords(base: string): Promise<AuditRecordView[]> {
  const all: AuditRecordView[] = [];
  for (;;) {
    const after = `&after=${all.length ? all[all.length - 1]!.seq : 0}`;
    const { records } = await call<{ records: AuditRecordView[] }>('GET', `${base}?limit=${PAGE}${after}`);
    all.push(...records);
    if (records.length < PAGE || all.length >= MOST) return all;
  }
}

export function Audit({ ctx }: { ctx: TenantContext }) {
  const base = `/v1/tenants/${enc(ctx.tenant.id)}/audit`;
  const [actor, setActor] = useState('');
  const [event, setEvent] = useState('');
  const verified = useLoad(() => call<Verification>('GET', `${base}/verify`), [base]);
  const records = useLoad(() => loadRecords(base), [base]);
  const shown = (records.data ?? []).filter((r) => r.actor.toLowerCase().includes(actor.trim().toLowerCase()) && r.action.toLowerCase().includes(event.trim().toLowerCase())).reverse();
  return (
    <>
      <h1>Audit trail</h1>
      <Section title="Verification">
        <Refusal error={verified.error} />
        {verified.data ? (
          verified.data.ok ? (
            <p class="done">The trail verifies: {verified.data.records} records, hash chain and signed head intact.</p>
          ) : (
            <div role="alert" class="refusal">
              <p>The trail does not verify:</p>
              <ul>
                {verified.data.problems.map((p, i) => (
                  <li key={i}>
                    {p.seq === null ? '' : `record ${p.seq}: `}
                    {p.problem}
                  </li>
                ))}
              </ul>
            </div>
          )
        ) : null}
      </Section>
      <Section title="Records">
        <div class="filters">
          <Field label="Actor">{(id) => <input id={id} type="search" value={actor} onInput={(e) => setActor(e.currentTarget.value)} />}</Field>
          <Field label="Event">{(id) => <input id={id} type="search" value={event} onInput={(e) => setEvent(e.currentTarget.value)} placeholder="e.g. key.generate" />}</Field>
        </div>
        <Refusal error={records.error} />
        <p aria-live="polite">
          {shown.length} of {records.data?.length ?? 0} records{(records.data?.length ?? 0) >= MOST ? ` (the first ${MOST}; \`cmk audit list\` shows every one)` : ''}
        </p>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">When</th>
                <th scope="col">Actor</th>
                <th scope="col">Event</th>
                <th scope="col">Outcome</th>
                <th scope="col">Environment</th>
                <th scope="col">Region</th>
                <th scope="col">Code</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((r) => (
                <tr key={r.seq}>
                  <td>{r.seq}</td>
                  <td>{when(r.at)}</td>
                  <td>{r.actor}</td>
                  <th scope="row">{r.action}</th>
                  <td>{r.outcome}</td>
                  <td>{r.environment ?? ''}</td>
                  <td>{r.region ?? ''}</td>
                  <td>{r.code ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </Section>
    </>
  );
}
