// Velero's volume handling in miniature, used by the lab's VeleroServer (velero.ts). Copies
// vmware-tanzu/velero at the vendored CRDs' commit (d30d389b5, main after v1.18.1):
// - File-system backup (node-agent, kopia): a Backup with spec.defaultVolumesToFsBackup backs up every
//   volume of a running pod except hostPath, Secret, ConfigMap, projected, downwardAPI and
//   default-token volumes and those named in the pod annotation backup.velero.io/backup-volumes-excludes;
//   without it only the volumes named in backup.velero.io/backup-volumes (pkg/util/podvolume/pod_volume.go
//   GetVolumesByPod). The server default (--default-volumes-to-fs-backup) is false, as in the chart.
//   One PodVolumeBackup per volume, generateName `<backup>-`, owner the Backup, labels
//   velero.io/backup-name, velero.io/backup-uid, velero.io/pvc-uid, annotation velero.io/pvc-name
//   (pkg/podvolume/backupper.go newPodVolumeBackup); phases New → InProgress → Completed.
// - Restore: the PodVolumeBackups come from the cluster, listed by velero.io/backup-name
//   (pkg/controller/restore_controller.go); a restored pod gets one PodVolumeRestore per volume backed up
//   for the pod of the same name in the source namespace (pkg/podvolume/util.go isPVBMatchPod), labels
//   velero.io/restore-name, velero.io/restore-uid, velero.io/pod-uid (the restored pod's uid),
//   velero.io/pvc-uid (pkg/podvolume/restorer.go newPodVolumeRestore). The Restore waits for them
//   (pkg/restore/restore.go "Waiting for all pod volume restores to complete").
// - A restored PVC loses its binding (resetVolumeBindingInfo) and, with no native snapshot to restore
//   its PV from, its volumeName: the provisioner creates a new, empty volume that only a
//   PodVolumeRestore fills (pkg/restore/restore.go, pvsToProvision).
// - CSI VolumeSnapshots are restored under sha256(<restore uid>/<name>) as a static snapshot of the
//   VolumeSnapshotContent of the same name; a PVC whose backup carries velero.io/volume-snapshot-name
//   gets that VolumeSnapshot as dataSource (pkg/restore/actions/csi/volumesnapshot_action.go and
//   pvc_action.go, pkg/util/util.go GenerateSha256FromRestoreUIDAndVsName; since v1.16.0, before that
//   the name was kept).
import { createHash, randomBytes } from 'node:crypto';
import { pathOf, type KObj, type LabApi } from '../lab-api.js';

const VELERO = 'velero.io/v1';
const timestamp = (d = new Date()) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What the lab's volumes hold: each backed-up volume reports this many bytes. */
export const LAB_VOLUME_BYTES = 4 * 1024 * 1024;

export function restoredVolumeSnapshotName(restoreUid: string, name: string): string {
  return createHash('sha256').update(`${restoreUid}/${name}`).digest('hex');
}

/**
 * The restore item actions for VolumeSnapshots and PVCs, applied to the cleaned object; returns the
 * action's error for an item it cannot restore.
 */
export function volumeRestoreActions(obj: KObj, fromBackup: KObj, restoreUid: string): string | undefined {
  if (obj.kind === 'VolumeSnapshot') {
    if (!fromBackup.status?.boundVolumeSnapshotContentName)
      return `VS ${fromBackup.metadata.name} doesn't have bound VSC`;
    const name = restoredVolumeSnapshotName(restoreUid, obj.metadata.name);
    obj.metadata.name = name;
    obj.spec = { ...obj.spec, source: { volumeSnapshotContentName: name } };
    delete obj.spec.volumeSnapshotClassName;
    obj.metadata.annotations = { ...obj.metadata.annotations, 'velero.io/csi-vsc-deletion-policy': 'Retain' };
  }
  if (obj.kind === 'PersistentVolumeClaim') {
    const ann: Record<string, string> = { ...obj.metadata.annotations };
    delete ann['pv.kubernetes.io/bind-completed'];
    delete ann['pv.kubernetes.io/bound-by-controller'];
    obj.metadata.annotations = ann;
    delete obj.spec.volumeName;
    const vs = ann['velero.io/volume-snapshot-name'];
    if (vs)
      obj.spec.dataSource = {
        apiGroup: 'snapshot.storage.k8s.io',
        kind: 'VolumeSnapshot',
        name: restoredVolumeSnapshotName(restoreUid, vs),
      };
  }
  return undefined;
}

const SKIPPED_SOURCES = ['hostPath', 'secret', 'configMap', 'projected', 'downwardAPI'];

/** GetVolumesByPod: the pod volumes a backup copies with the node-agent. */
export function fsBackupVolumes(pod: KObj, defaultVolumesToFsBackup: boolean): string[] {
  const ann: Record<string, string> = pod.metadata.annotations ?? {};
  const list = (k: string) => (ann[k] ? ann[k].split(',') : []);
  if (!defaultVolumesToFsBackup) return list('backup.velero.io/backup-volumes');
  const excluded = list('backup.velero.io/backup-volumes-excludes');
  return ((pod.spec?.volumes ?? []) as Record<string, unknown>[])
    .filter((v) => !SKIPPED_SOURCES.some((s) => v[s] !== undefined))
    .map((v) => String(v.name))
    .filter((n) => !excluded.includes(n) && !n.startsWith('default-token') && !n.startsWith('kube-api-access-'));
}

/**
 * A restore with no volume data, as a real one happens: the restore controller finds none of the
 * backup's PodVolumeBackups in the cluster (deleted, or not yet synced from the bucket into a new cluster),
 * so it restores the PVCs empty and still ends Completed.
 */
export interface VolumeFaults {
  /** Backups whose PodVolumeBackups the restore controller does not find. */
  lostPodVolumeBackups: Set<string>;
  /** The next restore, whatever its backup. */
  nextRestoreLosesPodVolumeBackups: boolean;
}

export class PodVolumes {
  constructor(
    private readonly api: LabApi,
    private readonly stepMs: number,
  ) {}

  /** The node-agent's part of a backup: one Completed PodVolumeBackup per volume of each running pod. */
  async backup(b: KObj, pods: KObj[]): Promise<number> {
    const ns = b.metadata.namespace!;
    // nil means the server's default, which the chart leaves at false.
    const all = b.spec?.defaultVolumesToFsBackup === true;
    let n = 0;
    for (const pod of pods.filter((p) => p.status?.phase === 'Running')) {
      for (const volume of fsBackupVolumes(pod, all)) {
        const claim = (pod.spec.volumes ?? []).find((v: { name: string }) => v.name === volume)?.persistentVolumeClaim
          ?.claimName as string | undefined;
        const pvc = claim
          ? await this.api.get(pathOf('v1', 'persistentvolumeclaims', pod.metadata.namespace, claim))
          : undefined;
        const created = await this.api.must('POST', pathOf(VELERO, 'podvolumebackups', ns), {
          apiVersion: VELERO,
          kind: 'PodVolumeBackup',
          metadata: {
            generateName: `${b.metadata.name}-`,
            ownerReferences: [
              { apiVersion: VELERO, kind: 'Backup', name: b.metadata.name, uid: b.metadata.uid, controller: true },
            ],
            labels: {
              'velero.io/backup-name': b.metadata.name,
              'velero.io/backup-uid': b.metadata.uid,
              ...(pvc ? { 'velero.io/pvc-uid': pvc.metadata.uid } : {}),
            },
            ...(pvc ? { annotations: { 'velero.io/pvc-name': pvc.metadata.name } } : {}),
          },
          spec: {
            node: pod.spec.nodeName ?? '',
            pod: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
            volume,
            tags: {
              backup: b.metadata.name,
              'backup-uid': b.metadata.uid,
              pod: pod.metadata.name,
              'pod-uid': pod.metadata.uid,
              ns: pod.metadata.namespace,
              volume,
              ...(pvc ? { 'pvc-uid': pvc.metadata.uid } : {}),
            },
            backupStorageLocation: b.spec?.storageLocation || 'default',
            repoIdentifier: '',
            uploaderType: 'kopia',
          },
        });
        await this.progress('podvolumebackups', created, {
          snapshotID: randomBytes(16).toString('hex'),
          path: `/host_pods/${pod.metadata.uid}/volumes/kubernetes.io~csi/${volume}/mount`,
        });
        n++;
      }
    }
    return n;
  }

  /** The backup's PodVolumeBackups as the restore controller lists them. */
  async backupsOf(ns: string, backupName: string, faults: VolumeFaults): Promise<KObj[]> {
    if (faults.lostPodVolumeBackups.has(backupName)) return [];
    if (faults.nextRestoreLosesPodVolumeBackups) {
      faults.nextRestoreLosesPodVolumeBackups = false;
      return [];
    }
    return (
      await this.api.list(
        `${pathOf(VELERO, 'podvolumebackups', ns)}?labelSelector=${encodeURIComponent(`velero.io/backup-name=${backupName}`)}`,
      )
    ).filter((p) => p.status?.phase === 'Completed' && p.status?.snapshotID);
  }

  /** The Completed PodVolumeRestores of a restored pod (the Restore waits for them); how many. */
  async restore(r: KObj, pod: KObj, sourceNs: string, pvbs: KObj[]): Promise<number> {
    const ns = r.metadata.namespace!;
    let n = 0;
    for (const pvb of pvbs.filter((p) => p.spec.pod.name === pod.metadata.name && p.spec.pod.namespace === sourceNs)) {
      const claim = (pod.spec.volumes ?? []).find((v: { name: string }) => v.name === pvb.spec.volume)
        ?.persistentVolumeClaim?.claimName as string | undefined;
      const pvc = claim
        ? await this.api.get(pathOf('v1', 'persistentvolumeclaims', pod.metadata.namespace, claim))
        : undefined;
      const created = await this.api.must('POST', pathOf(VELERO, 'podvolumerestores', ns), {
        apiVersion: VELERO,
        kind: 'PodVolumeRestore',
        metadata: {
          generateName: `${r.metadata.name}-`,
          ownerReferences: [
            { apiVersion: VELERO, kind: 'Restore', name: r.metadata.name, uid: r.metadata.uid, controller: true },
          ],
          labels: {
            'velero.io/restore-name': r.metadata.name,
            'velero.io/restore-uid': r.metadata.uid,
            'velero.io/pod-uid': pod.metadata.uid,
            ...(pvc ? { 'velero.io/pvc-uid': pvc.metadata.uid } : {}),
          },
        },
        spec: {
          pod: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
          volume: pvb.spec.volume,
          snapshotID: pvb.status.snapshotID,
          snapshotSize: pvb.status.progress?.totalBytes ?? 0,
          backupStorageLocation: pvb.spec.backupStorageLocation,
          repoIdentifier: '',
          uploaderType: pvb.spec.uploaderType,
          sourceNamespace: sourceNs,
        },
      });
      await this.progress('podvolumerestores', created, {});
      n++;
    }
    return n;
  }

  private async progress(plural: string, o: KObj, done: Record<string, unknown>): Promise<void> {
    const path = pathOf(VELERO, plural, o.metadata.namespace, o.metadata.name);
    await this.api.mergePatch(path, {
      status: {
        phase: 'InProgress',
        startTimestamp: timestamp(),
        progress: { totalBytes: LAB_VOLUME_BYTES, bytesDone: 0 },
      },
    });
    await sleep(this.stepMs);
    await this.api.mergePatch(path, {
      status: {
        ...done,
        phase: 'Completed',
        completionTimestamp: timestamp(),
        progress: { totalBytes: LAB_VOLUME_BYTES, bytesDone: LAB_VOLUME_BYTES },
      },
    });
  }
}
