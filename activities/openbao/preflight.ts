// Preflight of the path to OpenBAO, run before bootstrap touches it: each finding names the hop that
// failed. Through the API proxy that is the Service (openbao-helm server-service.yaml), its port, its
// endpoints (a sealed pod is NotReady, so only `publishNotReadyAddresses: true` — the chart's default —
// puts it there; k8s pkg/controller/endpoint), then OpenBAO's own answer. Through a URL it is DNS, TLS,
// and whether what answers is OpenBAO at all (an Ingress's error page is not).
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import type { KubeObject } from '../kube/client.js';
import { AccessPathError, openbaoTarget } from './access.js';
import { classifyVaultError, type VaultClient } from './client.js';

export interface Health {
  initialized?: boolean;
  sealed?: boolean;
  standby?: boolean;
}

type Service = KubeObject & {
  spec?: { ports?: { port: number; name?: string }[]; publishNotReadyAddresses?: boolean };
};
type Endpoints = KubeObject & {
  subsets?: { addresses?: { ip: string }[]; notReadyAddresses?: { ip: string }[]; ports?: { port: number }[] }[];
};

async function checkService(deps: ActivityDeps, spec: ClusterSpec): Promise<void> {
  const { service, port } = spec.openbao.access;
  const ns = spec.openbao.namespace;
  const id = `${ns}/${service}`;
  const kube = deps.kube(spec);
  const svc = await kube.read<Service>('v1', 'Service', service, ns);
  if (!svc)
    throw nonRetryable(
      ErrorType.NotFound,
      `OpenBAO preflight: no Service ${id} (openbao.access.service): the openbao chart creates it; is the component installed in ${ns}?`,
    );
  const ports = (svc.spec?.ports ?? []).map((p) => p.port);
  if (!ports.includes(port))
    throw nonRetryable(
      ErrorType.BadConfig,
      `OpenBAO preflight: Service ${id} has no port ${port} (openbao.access.port); it has ${ports.join(', ') || 'none'}`,
    );
  const eps = await kube.read<Endpoints>('v1', 'Endpoints', service, ns);
  const subsets = eps?.subsets ?? [];
  const ready = subsets.flatMap((s) => s.addresses ?? []);
  const notReady = subsets.flatMap((s) => s.notReadyAddresses ?? []);
  if (ready.length > 0) return;
  if (notReady.length > 0)
    // Sealed pods are NotReady (`bao status`) and stay out of the Service: nothing could unseal them.
    throw nonRetryable(
      ErrorType.BadConfig,
      `OpenBAO preflight: Service ${id} lists ${notReady.length} pod(s) only as not ready: a sealed OpenBAO is NotReady, ` +
        'so the Service must publish not-ready addresses (openbao-helm server.service.publishNotReadyAddresses: true, its default)',
    );
  throw retryable(
    ErrorType.NotReady,
    `OpenBAO preflight: Service ${id} has no endpoints: no OpenBAO pod is running (check the ${ns} pods)`,
  );
}

/** Checks the path hop by hop and returns a client with OpenBAO's health (initialised/sealed) read through it. */
export async function preflightOpenBaoPath(
  deps: ActivityDeps,
  spec: ClusterSpec,
): Promise<{ bao: VaultClient; health: Health }> {
  if (spec.openbao.access.mode === 'api-proxy') await checkService(deps, spec);
  const bao = await deps.openbao(spec).catch((err: unknown) => {
    throw nonRetryable(ErrorType.BadConfig, `OpenBAO preflight: ${(err as Error).message}`);
  });
  let health: unknown;
  try {
    health = await bao.health({ sealedcode: 200, uninitcode: 200, standbycode: 200 });
  } catch (err) {
    // An AccessPathError names the path itself ("OpenBAO via Service … through the Kubernetes API").
    const what = err instanceof AccessPathError ? 'sys/health' : `${openbaoTarget(spec)} unreachable`;
    throw classifyVaultError(err, `OpenBAO preflight: ${what}`);
  }
  const h = health as Health | undefined;
  if (typeof h?.initialized !== 'boolean' || typeof h.sealed !== 'boolean')
    throw retryable(
      ErrorType.Transient,
      `OpenBAO preflight: ${openbaoTarget(spec)} answered, but not as OpenBAO's sys/health: ${JSON.stringify(health)?.slice(0, 200)}`,
    );
  return { bao, health: h };
}
