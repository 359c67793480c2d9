// Longhorn's dynamic provisioning in miniature, against the real apiserver. The real
// kube-controller-manager's PV controller does the binding; what it waits for is an external
// provisioner, which this copies:
// - Longhorn's chart installs StorageClass `longhorn` (provisioner driver.longhorn.io, reclaimPolicy
//   Delete, volumeBindingMode Immediate; longhorn/longhorn chart/templates/storageclass.yaml). The lab
//   has it from the start, so components that use storage can be installed in any order.
// - For a claim the PV controller annotated volume.kubernetes.io/storage-provisioner=driver.longhorn.io,
//   a PersistentVolume `pvc-<claim uid>` pre-bound through claimRef, annotated
//   pv.kubernetes.io/provisioned-by (kubernetes-sigs/sig-storage-lib-external-provisioner
//   controller/controller.go provisionClaimOperation, getProvisionedVolumeNameForClaim); a Released
//   volume with reclaimPolicy Delete is deleted (deleteVolumeOperation).
// A new volume is empty: what it holds after a restore is what a PodVolumeRestore wrote into it.
import { pathOf, type KObj, type LabApi } from '../lab-api.js';

export const LONGHORN_DRIVER = 'driver.longhorn.io';
export const STORAGE_CLASS = 'longhorn';

export class ProvisionerController {
  private watches: { stop(): void }[] = [];

  constructor(
    private readonly api: LabApi,
    private readonly log: (line: string) => void = () => {},
  ) {}

  async start(): Promise<void> {
    await this.api.createIfAbsent('/apis/storage.k8s.io/v1/storageclasses', {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: STORAGE_CLASS, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: LONGHORN_DRIVER,
      allowVolumeExpansion: true,
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'Immediate',
      parameters: { numberOfReplicas: '3', staleReplicaTimeout: '30', fromBackup: '', fsType: 'ext4' },
    });
    const safely = (p: Promise<void>) => p.catch((err: unknown) => this.log(`provisioner: ${String(err)}`));
    this.watches.push(
      this.api.watch('/api/v1/persistentvolumeclaims', (e) => {
        if (e.type !== 'DELETED') void safely(this.provision(e.object));
      }),
      this.api.watch('/api/v1/persistentvolumes', (e) => {
        if (e.type !== 'DELETED') void safely(this.reclaim(e.object));
      }),
    );
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    this.watches = [];
  }

  private async provision(pvc: KObj): Promise<void> {
    const ann = pvc.metadata.annotations ?? {};
    const by = ann['volume.kubernetes.io/storage-provisioner'] ?? ann['volume.beta.kubernetes.io/storage-provisioner'];
    if (by !== LONGHORN_DRIVER || pvc.spec?.volumeName || pvc.metadata.deletionTimestamp) return;
    const name = `pvc-${pvc.metadata.uid}`;
    await this.api.createIfAbsent('/api/v1/persistentvolumes', {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': LONGHORN_DRIVER } },
      spec: {
        capacity: { storage: pvc.spec?.resources?.requests?.storage ?? '1Gi' },
        accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        storageClassName: pvc.spec?.storageClassName ?? STORAGE_CLASS,
        volumeMode: pvc.spec?.volumeMode ?? 'Filesystem',
        claimRef: {
          kind: 'PersistentVolumeClaim',
          apiVersion: 'v1',
          namespace: pvc.metadata.namespace,
          name: pvc.metadata.name,
          uid: pvc.metadata.uid,
        },
        csi: { driver: LONGHORN_DRIVER, volumeHandle: name, fsType: 'ext4' },
      },
    });
  }

  private async reclaim(pv: KObj): Promise<void> {
    if (pv.metadata.annotations?.['pv.kubernetes.io/provisioned-by'] !== LONGHORN_DRIVER) return;
    if (pv.status?.phase === 'Released' && pv.spec?.persistentVolumeReclaimPolicy === 'Delete')
      await this.api.delete(pathOf('v1', 'persistentvolumes', undefined, pv.metadata.name));
  }
}

/**
 * A chart with persistence, as the lab renders it: a StatefulSet gets a `data` volumeClaimTemplate
 * (openbao-helm's dataStorage), any other workload a `<name>-data` claim mounted at /data.
 */
/** Mounts a data volume into the workload; returns the claim it created (a Deployment's), as the chart renders it. */
export async function mountDataVolume(api: LabApi, workload: KObj, ns: string): Promise<KObj | undefined> {
  const claimSpec = {
    accessModes: ['ReadWriteOnce'],
    storageClassName: STORAGE_CLASS,
    resources: { requests: { storage: '1Gi' } },
  };
  const pod = workload.spec.template.spec;
  for (const c of pod.containers) c.volumeMounts = [...(c.volumeMounts ?? []), { name: 'data', mountPath: '/data' }];
  if (workload.kind === 'StatefulSet') {
    workload.spec.volumeClaimTemplates = [{ metadata: { name: 'data' }, spec: claimSpec }];
    return undefined;
  }
  const claimName = `${workload.metadata.name}-data`;
  const claim: KObj = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: claimName, namespace: ns, labels: workload.metadata.labels },
    spec: claimSpec,
  };
  await api.createIfAbsent(pathOf('v1', 'persistentvolumeclaims', ns), claim);
  pod.volumes = [...(pod.volumes ?? []), { name: 'data', persistentVolumeClaim: { claimName } }];
  return claim;
}
