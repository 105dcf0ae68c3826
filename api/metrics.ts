/**
 * The API service's own Prometheus metrics (CMK_API_METRICS_PORT, docs/OPERATIONS.md): requests by route template,
 * method and status, and their durations. Labels are route templates (`/v1/tenants/{tenant}/keys`), never paths,
 * so no tenant or environment ID becomes a label and the series stay few. Served on a port of its own, apart from
 * the authenticated API.
 */
import { createServer, type Server } from 'node:http';

/** Seconds; an API request is a Temporal update or query, and a key upload opens a .pfx (up to seconds). */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface Series {
  labels: string;
  count: number;
  sum: number;
  buckets: number[];
}

const escape = (value: string): string => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class ApiMetrics {
  private readonly requests = new Map<string, Series>();
  private inFlight = 0;

  /** Call when a request arrives; call the returned function with the route template and status when it is answered. */
  begin(method: string): (route: string, status: number) => void {
    const started = process.hrtime.bigint();
    this.inFlight += 1;
    let done = false;
    return (route, status) => {
      if (done) return;
      done = true;
      this.inFlight -= 1;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const labels = `method="${escape(method)}",route="${escape(route)}",status="${status}"`;
      let series = this.requests.get(labels);
      if (!series) this.requests.set(labels, (series = { labels, count: 0, sum: 0, buckets: BUCKETS.map(() => 0) }));
      series.count += 1;
      series.sum += seconds;
      BUCKETS.forEach((le, i) => {
        if (seconds <= le) series.buckets[i]! += 1;
      });
    };
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  render(): string {
    const lines: string[] = [];
    const all = [...this.requests.values()].sort((a, b) => a.labels.localeCompare(b.labels));
    lines.push('# HELP cmk_api_requests_total Requests answered by the API service, by route template, method and status.');
    lines.push('# TYPE cmk_api_requests_total counter');
    for (const s of all) lines.push(`cmk_api_requests_total{${s.labels}} ${s.count}`);
    lines.push('# HELP cmk_api_request_duration_seconds Time from a request’s arrival to its answer.');
    lines.push('# TYPE cmk_api_request_duration_seconds histogram');
    for (const s of all) {
      BUCKETS.forEach((le, i) => lines.push(`cmk_api_request_duration_seconds_bucket{${s.labels},le="${le}"} ${s.buckets[i]}`));
      lines.push(`cmk_api_request_duration_seconds_bucket{${s.labels},le="+Inf"} ${s.count}`);
      lines.push(`cmk_api_request_duration_seconds_sum{${s.labels}} ${s.sum}`);
      lines.push(`cmk_api_request_duration_seconds_count{${s.labels}} ${s.count}`);
    }
    lines.push('# HELP cmk_api_requests_in_flight Requests being answered now.');
    lines.push('# TYPE cmk_api_requests_in_flight gauge');
    lines.push(`cmk_api_requests_in_flight ${this.inFlight}`);
    return `${lines.join('\n')}\n`;
  }
}

/** What the outbox holds undelivered (Outbox.summary): read at each scrape, so it is as fresh as the files. */
export type MailSummary = { pending: number; oldestPendingSince: string | null; rejected: number };

/** Mail failing, for alerts: pending mail (a provider outage) and rejected mail (refused recipients, given up). */
export function renderMailMetrics(mail: MailSummary, now = Date.now()): string {
  const age = mail.oldestPendingSince ? Math.max(0, (now - Date.parse(mail.oldestPendingSince)) / 1000) : 0;
  return [
    '# HELP cmk_mail_pending Mails waiting for the provider (an outage, or a refusal of our credentials); retried with backoff for 7 days.',
    '# TYPE cmk_mail_pending gauge',
    `cmk_mail_pending ${mail.pending}`,
    '# HELP cmk_mail_pending_oldest_age_seconds How long the oldest pending mail has waited (0 when none).',
    '# TYPE cmk_mail_pending_oldest_age_seconds gauge',
    `cmk_mail_pending_oldest_age_seconds ${age}`,
    '# HELP cmk_mail_rejected Mails in the outbox the provider refused for good (a bad address), or given up after 7 days.',
    '# TYPE cmk_mail_rejected gauge',
    `cmk_mail_rejected ${mail.rejected}`,
    '',
  ].join('\n');
}

/** `GET /metrics` on its own listener; anything else is 404. `mail`, when given, adds the mail gauges. */
export function createMetricsServer(metrics: ApiMetrics, mail?: () => Promise<MailSummary>): Server {
  return createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      // An unreadable outbox leaves the mail gauges out rather than failing the scrape.
      void (mail ? mail().then((m) => renderMailMetrics(m), () => '') : Promise.resolve('')).then((extra) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(metrics.render() + extra);
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('Not found: metrics are at /metrics.\n');
  });
}
