// Shapes the Velero activities return and the workflows decide on. No runtime imports: workflow
// code imports this file type-only.

export const VELERO_API = 'velero.io/v1';

/** Velero's terminal phases (REFERENCE.md); anything else is still moving. */
export const BACKUP_TERMINAL = ['Completed', 'PartiallyFailed', 'Failed', 'FailedValidation'] as const;
export const RESTORE_TERMINAL = ['Completed', 'PartiallyFailed', 'Failed', 'FailedValidation'] as const;

export interface StorageLocationInfo {
  name: string;
  available: boolean;
  phase?: string;
  message?: string;
}

export interface BackupInfo {
  name: string;
  phase?: string;
  errors: number;
  warnings: number;
  failureReason?: string;
  validationErrors?: string[];
  /** Empty or ['*'] means every namespace; entries are glob patterns (Velero includes_excludes.go). */
  includedNamespaces: string[];
  /** Excluded namespaces (glob patterns); they win over includes. */
  excludedNamespaces?: string[];
  storageLocation?: string;
  scheduleName?: string;
  startTimestamp?: string;
  completionTimestamp?: string;
  totalItems?: number;
  itemsBackedUp?: number;
  /** The wait gave up before a terminal phase. */
  timedOut?: boolean;
}

export interface RestoreInfo {
  name: string;
  backupName?: string;
  phase?: string;
  errors: number;
  warnings: number;
  failureReason?: string;
  validationErrors?: string[];
  totalItems?: number;
  itemsRestored?: number;
  timedOut?: boolean;
}

export interface FindBackupResult {
  backup?: BackupInfo;
  /** Why nothing usable was found (unknown name, no Completed backup of the schedule). */
  reason?: string;
  /** Newer backups of the schedule that were passed over because they did not complete cleanly. */
  skipped: { name: string; phase?: string }[];
}

/** Velero's BackupResourceList: "apps/v1/Deployment" -> ["ns/name"], cluster-scoped items are bare names. */
export type ResourceList = Record<string, string[]>;

export interface ResourceListResult {
  list?: ResourceList;
  /** Why the list could not be had; the comparison then falls back to counts per kind. */
  unavailable?: string;
}

export interface KindCount {
  expected?: number;
  restored: number;
}

export interface CompareResult {
  method: 'resource-list' | 'counts';
  /** "apps/v1/Deployment" -> counts over the compared namespaces. */
  counts: Record<string, KindCount>;
  missing: string[];
  /** Scratch/target namespaces that do not exist after the restore. */
  missingNamespaces: string[];
  /** In the backup but not restored, as Velero does by design (completed Jobs). */
  skipped?: string[];
}

export interface WorkloadsResult {
  ready: string[];
  notReady: { workload: string; message: string }[];
  timedOut: boolean;
}

/** A scratch namespace that outlived its deletion wait. */
export interface StuckNamespace {
  namespace: string;
  phase: string;
  /** Deleted and Terminating; false: present and not being deleted (created again after the delete). */
  terminating: boolean;
  conditions: string[];
}

export interface ProbeResult {
  name: string;
  namespace: string;
  passed: boolean;
  skipped?: boolean;
  message: string;
}

/** What one restored PVC got back, and from which Velero object. */
export interface PvcVolumeData {
  pvc: string;
  /** fs-backup: a PodVolumeRestore (node-agent); data-mover: a DataDownload; none: an empty new volume. */
  method: 'fs-backup' | 'data-mover' | 'none';
  /** The PodVolumeRestore or DataDownload. */
  name?: string;
  phase?: string;
  bytes?: number;
  message?: string;
}

export interface VolumeDataResult {
  source: string;
  target: string;
  /** Every PVC the restore created in the target namespace. */
  pvcs: PvcVolumeData[];
  withData: string[];
  withoutData: string[];
}
