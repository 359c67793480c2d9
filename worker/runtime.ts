// The SDK runtime, installed once per process before any connection: log level, and the Prometheus
// exporter that serves the SDK's worker metrics and our workflow domain metrics (workflows/metrics.ts).
import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed: { metricsUrl?: string } | undefined;

export function installRuntime(
  opts: { metricsAddress?: string; logLevel?: 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' } = {},
): { metricsUrl?: string } {
  if (installed) return installed;
  Runtime.install({
    logger: new DefaultLogger(opts.logLevel ?? 'INFO'),
    telemetryOptions: opts.metricsAddress
      ? { metrics: { prometheus: { bindAddress: opts.metricsAddress } } }
      : undefined,
  });
  installed = { metricsUrl: opts.metricsAddress ? `http://${opts.metricsAddress}/metrics` : undefined };
  return installed;
}
