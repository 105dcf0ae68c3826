/**
 * The retry of mail a provider outage left pending (mail/post-office.ts): every minute from the Schedule
 * `cmk-mail-retry` (the mails whose backoff is over, every tenant), and on the operator's `cmk mail retry --tenant T`
 * (that tenant's pending and rejected mails, now). Its result is the report of what it tried.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { MailRetryReport } from '../mail/types';

/** A pass stops trying at the first outage, and each attempt is bounded (10–15 s), so a pass is short. */
const { retryMail } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 3 },
});

export async function mailRetryWorkflow(input: { tenant?: string; now?: boolean } = {}): Promise<MailRetryReport> {
  return retryMail(input);
}
