// What the orchestrator wrote, read from the real apiserver's audit log (JSON lines, one
// audit.k8s.io/v1 Event per request at stage ResponseComplete; see the policy in control-plane.ts).
// Counts successful writes as `verb:Kind` and rollout restarts (a patch that sets
// kubectl.kubernetes.io/restartedAt on a pod template) as `ns/Kind/name`.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

const KINDS: Record<string, string> = {
  namespaces: 'Namespace',
  nodes: 'Node',
  pods: 'Pod',
  secrets: 'Secret',
  configmaps: 'ConfigMap',
  services: 'Service',
  serviceaccounts: 'ServiceAccount',
  persistentvolumeclaims: 'PersistentVolumeClaim',
  events: 'Event',
  deployments: 'Deployment',
  statefulsets: 'StatefulSet',
  daemonsets: 'DaemonSet',
  replicasets: 'ReplicaSet',
  jobs: 'Job',
  cronjobs: 'CronJob',
  helmcharts: 'HelmChart',
  helmchartconfigs: 'HelmChartConfig',
  backups: 'Backup',
  restores: 'Restore',
  schedules: 'Schedule',
  backupstoragelocations: 'BackupStorageLocation',
  deletebackuprequests: 'DeleteBackupRequest',
  downloadrequests: 'DownloadRequest',
  networkpolicies: 'NetworkPolicy',
  ingresses: 'Ingress',
  poddisruptionbudgets: 'PodDisruptionBudget',
};

const kindOf = (plural: string) =>
  KINDS[plural] ??
  plural
    .replace(/ies$/, 'y')
    .replace(/s$/, '')
    .replace(/^./, (c) => c.toUpperCase());

interface AuditEvent {
  stage?: string;
  verb?: string;
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  requestObject?: unknown;
}

export class AuditCounters {
  private offset = 0;
  private rest = '';
  private readonly writes: Record<string, number> = {};
  private readonly restarts: Record<string, number> = {};

  constructor(private readonly path: string) {}

  read(): { writes: Record<string, number>; restarts: Record<string, number> } {
    this.consume();
    return { writes: { ...this.writes }, restarts: { ...this.restarts } };
  }

  private consume(): void {
    if (!existsSync(this.path)) return;
    const size = statSync(this.path).size;
    if (size < this.offset) this.offset = 0; // rotated
    if (size === this.offset) return;
    const fd = openSync(this.path, 'r');
    try {
      const buf = Buffer.alloc(size - this.offset);
      readSync(fd, buf, 0, buf.length, this.offset);
      this.offset = size;
      const text = this.rest + buf.toString('utf8');
      const lines = text.split('\n');
      this.rest = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) this.count(JSON.parse(line) as AuditEvent);
    } finally {
      closeSync(fd);
    }
  }

  private count(e: AuditEvent): void {
    if (e.stage !== 'ResponseComplete' || !e.objectRef?.resource || !e.verb) return;
    const code = e.responseStatus?.code ?? 0;
    if (code < 200 || code >= 300) return;
    if (e.objectRef.subresource && e.objectRef.subresource !== 'status') return;
    const kind = kindOf(e.objectRef.resource);
    const verb = e.objectRef.subresource === 'status' ? `${e.verb}-status` : e.verb;
    this.writes[`${verb}:${kind}`] = (this.writes[`${verb}:${kind}`] ?? 0) + 1;
    if (e.verb === 'patch' && JSON.stringify(e.requestObject ?? '').includes('restartedAt')) {
      const key = `${e.objectRef.namespace}/${kind}/${e.objectRef.name}`;
      this.restarts[key] = (this.restarts[key] ?? 0) + 1;
    }
  }
}
