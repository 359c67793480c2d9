// /metrics in Prometheus text: the API's own request counters and latency histograms, plus the
// worker's SDK and domain metrics scraped from its exporter (same process in dev, or
// PEDRO_OPS_WORKER_METRICS_URL in production) so one scrape target shows everything.
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Prometheus endpoints of workers to include (e.g. http://127.0.0.1:9464/metrics). */
  workerMetricsUrls?: string[];
  /** Runs parked in needs-attention now, per cluster and operation (read from Temporal visibility). */
  parkedRuns?: () => Promise<Map<string, { cluster: string; operation: string; n: number }>>;
}

export async function installMetrics(app: FastifyInstance, opts: MetricsOptions): Promise<void> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pedro_ops_api_' });
  const requests = new Counter({
    name: 'pedro_ops_api_requests_total',
    help: 'API requests',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'pedro_ops_api_request_duration_seconds',
    help: 'API request latency',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  if (opts.parkedRuns) {
    const parkedRuns = opts.parkedRuns;
    // Computed from visibility at scrape time, not counted by a worker: the count is right after any
    // worker or API restart, with several workers, and a run resolved or terminated drops out at once.
    const scrapeErrors = new Counter({
      name: 'pedro_ops_parked_runs_scrape_errors_total',
      help: 'Scrapes where Temporal visibility could not be read for pedro_ops_parked_runs',
      registers: [registry],
    });
    new Gauge({
      name: 'pedro_ops_parked_runs',
      help: 'Runs waiting in needs-attention for an operator (retry, skip or abort), by cluster and operation',
      labelNames: ['cluster', 'operation'],
      registers: [registry],
      async collect() {
        this.reset();
        try {
          for (const c of (await parkedRuns()).values()) this.set({ cluster: c.cluster, operation: c.operation }, c.n);
        } catch (err) {
          scrapeErrors.inc();
          app.log.warn({ err: (err as Error).message }, 'parked runs: visibility query failed');
        }
      },
    });
  }
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics: API, worker SDK and domain metrics',
        response: { 200: { type: 'string' } },
      },
    },
    async (_req, reply) => {
      const parts = [await registry.metrics()];
      for (const url of opts.workerMetricsUrls ?? []) {
        try {
          const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
          if (r.ok) parts.push(`# worker metrics from ${url}\n${await r.text()}`);
          else parts.push(`# worker metrics from ${url} unavailable: HTTP ${r.status}\n`);
        } catch (err) {
          parts.push(`# worker metrics from ${url} unavailable: ${(err as Error).message}\n`);
        }
      }
      return reply.type('text/plain; version=0.0.4').send(parts.join('\n'));
    },
  );
}
