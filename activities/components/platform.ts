// Platform wiring after the charts: the Tailscale operator's OAuth Secret (values move from
// 1Password to Kubernetes inside this activity only) and Velero's storage location check + Schedule.
// Both observe first and write only what differs.
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { beat, sleep, waitDeadline } from '../heartbeat.js';
import { fsBackupField } from '../velero/volumes.js';

/** A Secret, Velero Schedule or BackupStorageLocation: the spec is ours, `status` has the BSL fields read here. */
type Obj = KubeObject & {
  spec?: Record<string, unknown>;
  status?: { phase?: string; message?: string };
  data?: Record<string, string>;
};
const VELERO = 'velero.io/v1';

async function ensureNamespace(kube: KubePort, name: string): Promise<void> {
  if (await kube.read('v1', 'Namespace', name)) return;
  try {
    await kube.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  } catch (err) {
    // created meanwhile by helm-controller: fine
    if ((err as { type?: string }).type !== ErrorType.Conflict) throw err;
  }
}

/** Every field we set has our value (the API server adds defaults we do not care about). */
export function covers(want: unknown, have: unknown): boolean {
  if (Array.isArray(want))
    return Array.isArray(have) && want.length === have.length && want.every((w, i) => covers(w, have[i]));
  if (want && typeof want === 'object')
    return (
      !!have &&
      typeof have === 'object' &&
      Object.entries(want).every(([k, v]) => covers(v, (have as Record<string, unknown>)[k]))
    );
  return want === have;
}

export function desiredSchedule(spec: ClusterSpec): Obj {
  const b = spec.backups;
  return {
    apiVersion: VELERO,
    kind: 'Schedule',
    metadata: {
      name: b.schedule.name,
      namespace: b.veleroNamespace,
      labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
    },
    spec: {
      schedule: b.schedule.cron,
      template: {
        includedNamespaces: b.schedule.includedNamespaces,
        storageLocation: b.storageLocation,
        ttl: `${b.schedule.ttlHours}h0m0s`,
        ...fsBackupField(spec),
      },
    },
  };
}

/** The BackupStorageLocation the spec's backup policy describes (the chart normally creates the same). */
export function desiredStorageLocation(spec: ClusterSpec): Obj {
  const b = spec.backups;
  return {
    apiVersion: VELERO,
    kind: 'BackupStorageLocation',
    metadata: {
      name: b.storageLocation,
      namespace: b.veleroNamespace,
      labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' },
    },
    spec: {
      provider: 'aws',
      default: true,
      objectStorage: { bucket: b.bucket },
      config: {
        s3Url: b.s3Url,
        ...(b.publicUrl ? { publicUrl: b.publicUrl } : {}),
        s3ForcePathStyle: 'true',
        region: 'us-east-1',
      },
    },
  };
}

export function platformActivities(deps: ActivityDeps) {
  return {
    async applyTailscaleOAuth(input: { cluster: string }): Promise<{ secret: string; changed: boolean }> {
      const spec = clusterOrFail(deps, input.cluster);
      const ts = spec.tailscale;
      const component = spec.components.find((c) => c.name === ts.component);
      if (!component)
        throw nonRetryable(ErrorType.BadConfig, `tailscale.component names no component (${ts.component})`);
      const ns = component.namespace;
      const name = 'operator-oauth';
      const op = await deps.onepassword(spec);
      const [clientId, clientSecret] = await Promise.all([
        op.secrets.resolve(ts.oauthClientIdRef),
        op.secrets.resolve(ts.oauthClientSecretRef),
      ]).catch((err: unknown) => {
        throw nonRetryable(
          ErrorType.SecretMissing,
          `Tailscale OAuth references cannot be resolved: ${(err as Error).message}`,
        );
      });
      const data = {
        client_id: Buffer.from(clientId).toString('base64'),
        client_secret: Buffer.from(clientSecret).toString('base64'),
      };
      const kube = deps.kube(spec);
      await ensureNamespace(kube, ns);
      const cur = await kube.read<Obj>('v1', 'Secret', name, ns);
      const ref = `${ns}/${name}`;
      if (cur && cur.data?.client_id === data.client_id && cur.data?.client_secret === data.client_secret)
        return { secret: ref, changed: false };
      const body = {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'pedro-ops-orchestrator' } },
        data,
      };
      if (cur)
        await kube.replace({ ...body, metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion } });
      else await kube.create(body);
      return { secret: ref, changed: true };
    },

    /** BackupStorageLocation must report Available; the daily Schedule is created or corrected. */
    async configureVelero(input: { cluster: string; timeoutSeconds?: number }): Promise<{
      location: string;
      phase: string;
      schedule: string;
      scheduleChanged: boolean;
      locationCreated: boolean;
    }> {
      const spec = clusterOrFail(deps, input.cluster);
      const b = spec.backups;
      const kube = deps.kube(spec);
      const deadline = waitDeadline(input.timeoutSeconds ?? 120, 'BackupStorageLocation');
      // The chart normally creates it from its values; a missing one is created from the spec's backup policy.
      let locationCreated = false;
      if (!(await kube.read(VELERO, 'BackupStorageLocation', b.storageLocation, b.veleroNamespace))) {
        locationCreated = true;
        await ensureNamespace(kube, b.veleroNamespace);
        await kube.create(desiredStorageLocation(spec));
      }
      for (;;) {
        const bsl = await kube.read<Obj>(VELERO, 'BackupStorageLocation', b.storageLocation, b.veleroNamespace);
        const phase = bsl?.status?.phase ?? (bsl ? 'Unknown' : 'absent');
        if (phase === 'Available') break;
        beat({ step: 'waiting for BackupStorageLocation', phase, waiting: 'BackupStorageLocation', deadline });
        if (Date.now() > deadline) {
          throw retryable(
            ErrorType.NotReady,
            `BackupStorageLocation ${b.veleroNamespace}/${b.storageLocation} is ${phase}${bsl?.status?.message ? `: ${bsl.status.message}` : ''}`,
          );
        }
        await sleep(250);
      }
      const desired = desiredSchedule(spec);
      const cur = await kube.read<Obj>(VELERO, 'Schedule', b.schedule.name, b.veleroNamespace);
      const same = cur && covers(desired.spec, cur.spec);
      let scheduleChanged = false;
      if (!cur) {
        await kube.create(desired);
        scheduleChanged = true;
      } else if (!same) {
        await kube.replace({
          ...desired,
          metadata: { ...desired.metadata, resourceVersion: cur.metadata?.resourceVersion },
        });
        scheduleChanged = true;
      }
      return {
        location: `${b.veleroNamespace}/${b.storageLocation}`,
        phase: 'Available',
        schedule: `${b.veleroNamespace}/${b.schedule.name}`,
        scheduleChanged,
        locationCreated,
      };
    },
  };
}
