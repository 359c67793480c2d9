// Volume data of a restore: which restored PVCs got their data back, read from the PodVolumeRestores
// (file-system backup) and DataDownloads (CSI data mover) Velero made for the Restore. A PVC without
// either came back as a new, empty volume: with snapshots disabled that is what Velero does for every
// volume the backup did not copy (pkg/restore/restore.go pvsToProvision).
import { createHash } from 'node:crypto';
import type { ClusterSpec } from '../../config/schema.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import type { KubeObject, KubePort } from '../kube/client.js';
import { keepAlive } from '../heartbeat.js';
import { VELERO_API, type PvcVolumeData, type VolumeDataResult } from './types.js';

const DATA_MOVER_API = 'velero.io/v2alpha1';
/** Velero's own labels (pkg/apis/velero/v1/labels_annotations.go). */
const RESTORE_NAME = 'velero.io/restore-name';
const PVC_UID = 'velero.io/pvc-uid';

/** defaultVolumesToFsBackup for a Backup spec or a Schedule template; nothing when the config leaves it to Velero. */
export function fsBackupField(spec: ClusterSpec): { defaultVolumesToFsBackup?: boolean } {
  const v = spec.backups.volumes;
  return v ? { defaultVolumesToFsBackup: v.fsBackup } : {};
}

/**
 * The name a VolumeSnapshot has after a restore. Velero ≥ 1.16 renames it to
 * sha256(<restore uid>/<name>) to keep restores of one backup apart (pkg/util/util.go
 * GenerateSha256FromRestoreUIDAndVsName, pkg/restore/actions/csi/volumesnapshot_action.go); older
 * versions keep the name. Both count.
 */
export function restoredSnapshotNames(restoreUid: string | undefined, name: string): string[] {
  return restoreUid ? [name, createHash('sha256').update(`${restoreUid}/${name}`).digest('hex')] : [name];
}

/** The Restore's uid (for renamed VolumeSnapshots), or undefined when it is gone. */
export async function restoreUid(kube: KubePort, ns: string, restore: string | undefined): Promise<string | undefined> {
  if (!restore) return undefined;
  return (await kube.read(VELERO_API, 'Restore', restore, ns))?.metadata?.uid;
}

type Pvr = KubeObject & {
  spec?: { pod?: { namespace?: string; name?: string }; volume?: string };
  status?: { phase?: string; message?: string; progress?: { bytesDone?: number } };
};
type DataDownload = KubeObject & {
  spec?: { targetVolume?: { pvc?: string; namespace?: string } };
  status?: { phase?: string; message?: string; progress?: { bytesDone?: number } };
};
type Pod = KubeObject & { spec?: { volumes?: { name: string; persistentVolumeClaim?: { claimName?: string } }[] } };

/** Lists a kind the cluster may not serve (no data mover CRDs): nothing then. */
async function listOrNone<T extends KubeObject>(
  kube: KubePort,
  apiVersion: string,
  kind: string,
  ns: string,
  selector: string,
): Promise<T[]> {
  try {
    return await kube.list<T>(apiVersion, kind, ns, selector);
  } catch (err) {
    if (/Unrecognized API version and kind/i.test((err as Error).message)) return [];
    throw err;
  }
}

export function veleroVolumeActivities(deps: ActivityDeps) {
  return {
    /**
     * For each restored namespace: every PVC this Restore created, and whether a PodVolumeRestore or
     * DataDownload of the Restore filled it. PVCs the Restore did not create (kept in place) are not
     * its data to judge.
     */
    async veleroVolumeData(input: {
      cluster: string;
      restore: string;
      mapping: Record<string, string>;
    }): Promise<VolumeDataResult[]> {
      return keepAlive(() => volumeData(deps, input));
    },
  };
}

async function volumeData(
  deps: ActivityDeps,
  input: { cluster: string; restore: string; mapping: Record<string, string> },
): Promise<VolumeDataResult[]> {
  const spec = clusterOrFail(deps, input.cluster);
  const kube = deps.kube(spec);
  const vns = spec.backups.veleroNamespace;
  const selector = `${RESTORE_NAME}=${input.restore}`;
  const pvrs = await listOrNone<Pvr>(kube, VELERO_API, 'PodVolumeRestore', vns, selector);
  const downloads = await listOrNone<DataDownload>(kube, DATA_MOVER_API, 'DataDownload', vns, selector);
  const out: VolumeDataResult[] = [];
  for (const [source, target] of Object.entries(input.mapping)) {
    const pvcs = await kube.list('v1', 'PersistentVolumeClaim', target, selector);
    const byUid = new Map(pvcs.map((p) => [p.metadata?.uid, p.metadata!.name!]));
    const data = new Map<string, PvcVolumeData>(
      pvcs.map((p) => [p.metadata!.name!, { pvc: p.metadata!.name!, method: 'none' }]),
    );
    const pods = new Map<string, Pod | undefined>();
    for (const pvr of pvrs.filter((r) => r.spec?.pod?.namespace === target)) {
      let claim = byUid.get(pvr.metadata?.labels?.[PVC_UID]);
      if (!claim && pvr.spec?.pod?.name) {
        // Older PVRs carry no pvc-uid label: the pod's volume names the claim.
        const name = pvr.spec.pod.name;
        if (!pods.has(name)) pods.set(name, await kube.read<Pod>('v1', 'Pod', name, target));
        claim = pods.get(name)?.spec?.volumes?.find((v) => v.name === pvr.spec?.volume)
          ?.persistentVolumeClaim?.claimName;
      }
      if (!claim || !data.has(claim)) continue;
      data.set(claim, entry(claim, 'fs-backup', pvr));
    }
    for (const dd of downloads.filter((d) => d.spec?.targetVolume?.namespace === target)) {
      const claim = dd.spec?.targetVolume?.pvc;
      if (claim && data.has(claim)) data.set(claim, entry(claim, 'data-mover', dd));
    }
    const list = [...data.values()].sort((a, b) => a.pvc.localeCompare(b.pvc));
    out.push({
      source,
      target,
      pvcs: list,
      withData: list.filter((p) => p.phase === 'Completed').map((p) => p.pvc),
      withoutData: list.filter((p) => p.phase !== 'Completed').map((p) => p.pvc),
    });
  }
  return out;
}

function entry(pvc: string, method: PvcVolumeData['method'], o: Pvr | DataDownload): PvcVolumeData {
  return {
    pvc,
    method,
    name: o.metadata?.name,
    phase: o.status?.phase ?? 'New',
    ...(o.status?.progress?.bytesDone !== undefined ? { bytes: o.status.progress.bytesDone } : {}),
    ...(o.status?.message ? { message: o.status.message } : {}),
  };
}
