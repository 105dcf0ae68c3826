/** `cmk mail`: mail sent to administrators (DESIGN.md §4). */
import { columns, enc, type CliContext } from './context';
import type { Static } from '@sinclair/typebox';
import type * as S from '../../api/schemas';
import type { Answer } from '../http';

export function registerMail({ program, command, api, print }: CliContext): void {
  const mail = command(program, 'mail', 'mail sent to administrators');
  command(mail, 'list', 'list the mail sent about this tenant')
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Answer<typeof S.MailList>>('GET', `/v1/tenants/${enc(o.tenant)}/mail`);
      print({ mails: r.mails }, () => (r.mails.length ? columns([['SENT AT', 'TO', 'EVENT', 'DELIVERY', 'SUBJECT'], ...r.mails.map((m) => [m.sentAt ?? '', m.to, m.event, deliveryText(m), m.subject])]) : 'No mail.'));
    });
  command(mail, 'retry', "retry the tenant's pending and rejected mail now (operator)")
    .requiredOption('--tenant <id>', 'tenant ID')
    .action(async (o: { tenant: string }) => {
      const r = await api().call<Answer<typeof S.MailRetried>>('POST', `/v1/tenants/${enc(o.tenant)}/mail/retry`, {});
      const left = r.mails.filter((m) => m.delivery !== 'delivered').length;
      print(r, () =>
        r.tried.length
          ? `${columns([['TO', 'EVENT', 'DELIVERY', 'SUBJECT'], ...r.tried.map((m) => [m.to, m.event, deliveryText(m), m.subject])])}\n${r.tried.filter((m) => m.delivery === 'delivered').length} of ${r.tried.length} delivered; ${left} mail(s) of ${o.tenant} not delivered.`
          : `No mail of ${o.tenant} to retry; ${left} mail(s) not delivered.`,
      );
    });
}

type MailView = Static<typeof S.MailView>;

/** `delivered`, or the state with its attempts and reason: `pending (3 attempts: SendGrid answered 503 …)`. */
function deliveryText(m: MailView): string {
  if (m.delivery === 'delivered') return 'delivered';
  const why = [m.attempts !== undefined ? `${m.attempts} attempt(s)` : '', m.reason ?? ''].filter(Boolean).join(': ');
  return why ? `${m.delivery} (${why.slice(0, 160)})` : m.delivery;
}
