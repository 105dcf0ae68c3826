/**
 * The API service's own Prometheus metrics (CMK_API_METRICS_PORT, docs/OPERATIONS.md): requests by route template,
 * method and status, and their durations. Labels are route templates (`/v1/tenants/{tenant}/keys`), never paths,
 * so no tenant or environment ID becomes a label and the series stay few. Served on a port of its own, apart from
 * the authenticated API. prom-client keeps the series and writes the exposition format; each ApiMetrics has a
 * registry of its own (not prom-client's global one), so two API services in one process never share counters.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds; an API request is a Temporal update or query, and a key upload opens a .pfx (up to seconds). */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const LABELS = ['method', 'route', 'status'] as const;

export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'cmk_api_requests_total',
    help: 'Requests answered by the API service, by route template, method and status.',
    labelNames: LABELS,
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: 'cmk_api_request_duration_seconds',
    help: 'Time from a request’s arrival to its answer.',
    labelNames: LABELS,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  private readonly inFlight = new Gauge({ name: 'cmk_api_requests_in_flight', help: 'Requests being answered now.', registers: [this.registry] });

  /** Call when a request arrives; call the returned function with the route template and status when it is answered. */
  begin(method: string): (route: string, status: number) => void {
    const started = process.hrtime.bigint();
    this.inFlight.inc();
    let done = false;
    return (route, status) => {
      if (done) return;
      done = true;
      this.inFlight.dec();
      const labels = { method, route, status: String(status) };
      this.requests.inc(labels);
      this.durations.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    };
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** What the outbox holds undelivered (Outbox.summary): read at each scrape, so it is as fresh as the files. */
export type MailSummary = { pending: number; oldestPendingSince: string | null; rejected: number };

/**
 * Mail failing, for alerts: pending mail (a provider outage) and rejected mail (refused recipients, given up). A
 * registry per scrape: the gauges are set from the outbox just read, and left out altogether when it is unreadable.
 */
export function renderMailMetrics(mail: MailSummary, now = Date.now()): Promise<string> {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: number) => new Gauge({ name, help, registers: [registry] }).set(value);
  gauge('cmk_mail_pending', 'Mails waiting for the provider (an outage, or a refusal of our credentials); retried with backoff for 7 days.', mail.pending);
  const age = mail.oldestPendingSince ? Math.max(0, (now - Date.parse(mail.oldestPendingSince)) / 1000) : 0;
  gauge('cmk_mail_pending_oldest_age_seconds', 'How long the oldest pending mail has waited (0 when none).', age);
  gauge('cmk_mail_rejected', 'Mails in the outbox the provider refused for good (a bad address), or given up after 7 days.', mail.rejected);
  return registry.metrics();
}

/** `GET /metrics` on its own listener; anything else is 404. `mail`, when given, adds the mail gauges. */
export function createMetricsServer(metrics: ApiMetrics, mail?: () => Promise<MailSummary>): Server {
  return createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      // An unreadable outbox leaves the mail gauges out rather than failing the scrape.
      const extra = mail ? mail().then((m) => renderMailMetrics(m), () => '') : Promise.resolve('');
      void Promise.all([metrics.render(), extra]).then(
        ([api, mailText]) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(api + mailText);
        },
        () => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end('The metrics could not be collected.\n');
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('Not found: metrics are at /metrics.\n');
  });
}
