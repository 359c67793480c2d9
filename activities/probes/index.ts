// Verification probes run after a rotation: an HTTP answer, a TCP connect, or a Kubernetes Job that
// must succeed. A probe returns its verdict (the workflow decides to roll back); only problems with
// the probe itself (bad config, API errors) throw.
import { connect } from 'node:net';
import { beat, keepAlive, sleep, waitDeadline } from '../heartbeat.js';
import type { ProbeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { probeSeconds } from '../../workflows/probe-timeouts.js';
import type { KubeObject } from '../kube/client.js';

export interface ProbeInput {
  cluster: string;
  probe: ProbeSpec;
  /** Names the Job (job probes) and the log lines. */
  label: string;
  timeoutSeconds?: number;
}

export interface ProbeResult {
  ok: boolean;
  message: string;
  durationMs: number;
}

export async function httpProbe(
  url: string,
  expectStatus: number | undefined,
  timeoutMs: number,
): Promise<{ ok: boolean; message: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await res.body?.cancel();
    const ok = expectStatus !== undefined ? res.status === expectStatus : res.status >= 200 && res.status < 400;
    return { ok, message: `GET ${url} answered ${res.status}${ok ? '' : ` (expected ${expectStatus ?? '2xx/3xx'})`}` };
  } catch (err) {
    return {
      ok: false,
      message: `GET ${url} failed: ${(err as Error).cause ? String((err as { cause: Error }).cause.message) : (err as Error).message}`,
    };
  }
}

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; message: string }> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean, message: string) => {
      sock.destroy();
      resolve({ ok, message });
    };
    sock.setTimeout(timeoutMs, () => done(false, `tcp ${host}:${port}: no connection after ${timeoutMs} ms`));
    sock.once('connect', () => done(true, `tcp ${host}:${port} accepted a connection`));
    sock.once('error', (err) =>
      done(false, `tcp ${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`),
    );
  });
}

/** A job probe's PVCs, mounted read-only at /data/<claim> (a data probe reads what was restored). */
export function claimMounts(claims: string[] | undefined) {
  const list = claims ?? [];
  return {
    volumeMounts: list.map((c, k) => ({ name: `data-${k}`, mountPath: `/data/${c}`, readOnly: true })),
    volumes: list.map((c, k) => ({ name: `data-${k}`, persistentVolumeClaim: { claimName: c, readOnly: true } })),
  };
}

type JobObj = KubeObject & {
  status?: { conditions?: Array<{ type: string; status: string; message?: string; reason?: string }> };
};

async function jobProbe(
  deps: ActivityDeps,
  input: ProbeInput,
  probe: Extract<ProbeSpec, { type: 'job' }>,
  timeoutMs: number,
) {
  const spec = clusterOrFail(deps, input.cluster);
  const kube = deps.kube(spec);
  // Deterministic per label so a retried activity finds its own Job instead of starting another.
  const name = `verify-${input.label}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
  let job = await kube.read<JobObj>('batch/v1', 'Job', name, probe.namespace);
  if (!job) {
    job = await kube.create<JobObj>({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name,
        namespace: probe.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
      },
      spec: {
        backoffLimit: 0,
        ttlSecondsAfterFinished: 3600,
        template: {
          spec: {
            restartPolicy: 'Never',
            containers: [
              {
                name: 'probe',
                image: probe.image,
                command: probe.command,
                ...(probe.secretEnv ? { envFrom: [{ secretRef: { name: probe.secretEnv } }] } : {}),
                volumeMounts: claimMounts(probe.claims).volumeMounts,
              },
            ],
            volumes: claimMounts(probe.claims).volumes,
          },
        },
      },
    });
  }
  const waiting = `Job ${probe.namespace}/${name}`;
  const deadline = waitDeadline(timeoutMs / 1000, waiting);
  for (;;) {
    const conds = job?.status?.conditions ?? [];
    const failed = conds.find((c) => c.type === 'Failed' && c.status === 'True');
    if (failed)
      return {
        ok: false,
        message: `Job ${probe.namespace}/${name} failed: ${failed.message ?? failed.reason ?? 'no reason given'}`,
      };
    if (conds.some((c) => c.type === 'Complete' && c.status === 'True'))
      return { ok: true, message: `Job ${probe.namespace}/${name} completed` };
    if (Date.now() >= deadline)
      return {
        ok: false,
        message: `Job ${probe.namespace}/${name} did not finish within ${Math.round(timeoutMs / 1000)}s`,
      };
    beat({ job: name, waiting, deadline });
    await sleep(500);
    job = await kube.read<JobObj>('batch/v1', 'Job', name, probe.namespace);
    if (!job) return { ok: false, message: `Job ${probe.namespace}/${name} disappeared` };
  }
}

export async function runProbe(deps: ActivityDeps, input: ProbeInput): Promise<ProbeResult> {
  const t0 = Date.now();
  const p = input.probe;
  // The workflow sizes this activity's timeouts from the same numbers (workflows/probe-timeouts.ts).
  const timeoutMs = (input.timeoutSeconds ?? probeSeconds(p)) * 1000;
  let r: { ok: boolean; message: string };
  // One request that may take its whole timeout: beat meanwhile (the heartbeat timeout is shorter).
  if (p.type === 'http') r = await keepAlive(() => httpProbe(p.url, p.expectStatus, timeoutMs));
  else if (p.type === 'tcp') r = await keepAlive(() => tcpProbe(p.host, p.port, timeoutMs));
  else if (p.type === 'job') r = await jobProbe(deps, input, p, timeoutMs);
  else throw nonRetryable(ErrorType.BadConfig, `unknown probe type ${(p as { type: string }).type}`);
  deps.log.info({ probe: input.label, ok: r.ok }, r.message);
  return { ...r, durationMs: Date.now() - t0 };
}
