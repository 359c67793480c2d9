// kubectl's rollout-status rules as pure functions (REFERENCE.md), shared by component readiness
// after an install and by consumer restarts during secret rotation.
import type { KubeObject } from './client.js';

export interface RolloutStatus {
  done: boolean;
  /** Terminal failure (ProgressDeadlineExceeded): waiting longer will not help. */
  failed: boolean;
  message: string;
}

/** The apps/v1 Deployment, StatefulSet and DaemonSet fields the rules read (k8s.io/api apps/v1 types.go). */
type Obj = KubeObject & {
  spec?: { replicas?: number; updateStrategy?: { type?: string; rollingUpdate?: { partition?: number } } };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status?: string; reason?: string }[];
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    readyReplicas?: number;
    updateRevision?: string;
    currentRevision?: string;
    desiredNumberScheduled?: number;
    updatedNumberScheduled?: number;
    numberAvailable?: number;
  };
  metadata: { generation?: number; name?: string };
};

export function rolloutStatus(kind: string, o: KubeObject): RolloutStatus {
  const obj = o as Obj;
  const s: NonNullable<Obj['status']> = obj.status ?? {};
  const gen = obj.metadata.generation ?? 0;
  const observed = s.observedGeneration ?? 0;
  if (kind !== 'CronJob' && observed < gen)
    return {
      done: false,
      failed: false,
      message: `waiting for ${kind} ${obj.metadata.name} spec update to be observed`,
    };
  switch (kind) {
    case 'Deployment': {
      const progressing = (s.conditions ?? []).find((c) => c.type === 'Progressing');
      if (progressing?.reason === 'ProgressDeadlineExceeded')
        return { done: false, failed: true, message: `deployment ${obj.metadata.name} exceeded its progress deadline` };
      const want = obj.spec?.replicas ?? 1;
      const updated = s.updatedReplicas ?? 0;
      if (updated < want) return { done: false, failed: false, message: `${updated} of ${want} updated replicas` };
      if ((s.replicas ?? 0) > updated)
        return {
          done: false,
          failed: false,
          message: `${(s.replicas ?? 0) - updated} old replicas pending termination`,
        };
      if ((s.availableReplicas ?? 0) < updated)
        return {
          done: false,
          failed: false,
          message: `${s.availableReplicas ?? 0} of ${updated} updated replicas available`,
        };
      return { done: true, failed: false, message: 'successfully rolled out' };
    }
    case 'StatefulSet': {
      const want = obj.spec?.replicas ?? 1;
      // kubectl (pkg/polymorphichelpers/rollout_status.go): "rollout status is only available for
      // RollingUpdate strategy type": an OnDelete set never rolls by itself, so there is no revision
      // to wait for; its pods are replaced by deleting them (restartWorkload does that).
      if (obj.spec?.updateStrategy?.type === 'OnDelete') {
        if ((s.readyReplicas ?? 0) < want)
          return { done: false, failed: false, message: `${s.readyReplicas ?? 0} of ${want} pods ready (OnDelete)` };
        return { done: true, failed: false, message: 'OnDelete: pods are replaced only when deleted' };
      }
      if ((s.readyReplicas ?? 0) < want)
        return { done: false, failed: false, message: `${s.readyReplicas ?? 0} of ${want} pods ready` };
      const partition = obj.spec?.updateStrategy?.rollingUpdate?.partition;
      if (obj.spec?.updateStrategy?.type === 'RollingUpdate' && typeof partition === 'number' && partition > 0) {
        const updated = s.updatedReplicas ?? 0;
        if (updated < want - partition)
          return { done: false, failed: false, message: `${updated} of ${want - partition} partitioned pods updated` };
        return { done: true, failed: false, message: 'partitioned roll out complete' };
      }
      if (s.updateRevision !== s.currentRevision)
        return { done: false, failed: false, message: `waiting for revision ${s.updateRevision}` };
      return { done: true, failed: false, message: 'rolling update complete' };
    }
    case 'DaemonSet': {
      const desired = s.desiredNumberScheduled ?? 0;
      if (obj.spec?.updateStrategy?.type === 'OnDelete') {
        if ((s.numberAvailable ?? 0) < desired)
          return {
            done: false,
            failed: false,
            message: `${s.numberAvailable ?? 0} of ${desired} pods available (OnDelete)`,
          };
        return { done: true, failed: false, message: 'OnDelete: pods are replaced only when deleted' };
      }
      if ((s.updatedNumberScheduled ?? 0) < desired)
        return {
          done: false,
          failed: false,
          message: `${s.updatedNumberScheduled ?? 0} of ${desired} updated pods scheduled`,
        };
      if ((s.numberAvailable ?? 0) < desired)
        return {
          done: false,
          failed: false,
          message: `${s.numberAvailable ?? 0} of ${desired} updated pods available`,
        };
      return { done: true, failed: false, message: 'successfully rolled out' };
    }
    case 'CronJob':
      // Nothing to roll: the next scheduled Job reads the new Secret.
      return { done: true, failed: false, message: 'cronjob picks up changes on its next run' };
    default:
      return { done: false, failed: true, message: `unsupported workload kind ${kind}` };
  }
}

export const WORKLOAD_API_VERSION: Record<string, string> = {
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  CronJob: 'batch/v1',
};
