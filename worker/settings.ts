// Where Temporal is and how to reach it, from the environment. Shared by the worker, the API and
// scripts so that one set of variables configures them all.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

export interface TemporalSettings {
  address: string;
  namespace: string;
  taskQueue: string;
  /** Set when TEMPORAL_ADDRESS was given: connect to that server, start no embedded one. */
  external: boolean;
  tls?: {
    serverNameOverride?: string;
    serverRootCACertificate?: Buffer;
    clientCertPair?: { crt: Buffer; key: Buffer };
  };
  apiKey?: string;
  /** Base URL of Temporal Web, for links in API responses. */
  webUrl: string;
}

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const external = Boolean(env.TEMPORAL_ADDRESS);
  let tls: TemporalSettings['tls'];
  if (env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_CA || env.TEMPORAL_TLS === 'true') {
    tls = {
      serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME || undefined,
      serverRootCACertificate: env.TEMPORAL_TLS_CA ? readFileSync(env.TEMPORAL_TLS_CA) : undefined,
      clientCertPair:
        env.TEMPORAL_TLS_CERT && env.TEMPORAL_TLS_KEY
          ? { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY) }
          : undefined,
    };
  }
  return {
    address: env.TEMPORAL_ADDRESS ?? `127.0.0.1:${env.PEDRO_OPS_DEV_TEMPORAL_PORT ?? 7233}`,
    namespace: env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.PEDRO_OPS_TASK_QUEUE ?? 'pedro-ops',
    external,
    tls,
    apiKey: env.TEMPORAL_API_KEY || undefined,
    webUrl: (env.TEMPORAL_WEB_URL ?? 'http://127.0.0.1:8233').replace(/\/$/, ''),
  };
}

/** Dev mode: the embedded default. Outside it, missing keys and tokens are refused, not generated. */
export function isDevMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.PEDRO_OPS_ENV ?? (env.NODE_ENV === 'production' ? 'production' : 'dev')) === 'dev';
}

export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.PEDRO_OPS_DATA_DIR ?? resolve(REPO_ROOT, '.data'));
}

export function workflowWebUrl(settings: TemporalSettings, workflowId: string, runId?: string): string {
  const base = `${settings.webUrl}/namespaces/${encodeURIComponent(settings.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${base}/${encodeURIComponent(runId)}/history` : base;
}
