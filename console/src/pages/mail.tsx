/** The tenant's notifications: what `cmk mail list` shows, with each mail's delivery. */
import { call, enc, type MailView } from '../api';
import { when } from '../format';
import { Refusal, useLoad } from '../ui';
import type { TenantContext } from '../tenant-context';

export function Mail({ ctx }: { ctx: TenantContext }) {
  const mail = useLoad(() => call<{ mails: MailView[] }>('GET', `/v1/tenants/${enc(ctx.tenant.id)}/mail`).then((r) => r.mails), [ctx.tenant.id]);
  return (
    <>
      <h1>Notifications</h1>
      <Refusal error={mail.error} />
      {mail.data ? (
        mail.data.length ? (
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Sent</th>
                  <th scope="col">To</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Event</th>
                  <th scope="col">Delivery</th>
                </tr>
              </thead>
              <tbody>
                {[...mail.data].reverse().map((m, i) => (
                  <tr key={i}>
                    <td>{when(m.sentAt)}</td>
                    <td>{m.to}</td>
                    <th scope="row">{m.subject}</th>
                    <td>{m.event}</td>
                    <td>
                      {m.delivery}
                      {m.reason ? `: ${m.reason}` : ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p>No mail yet.</p>
        )
      ) : mail.error ? null : (
        <p class="loading">Loading…</p>
      )}
    </>
  );
}
