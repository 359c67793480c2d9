// Velero: backups, restores, resource lists, post-restore checks and scratch cleanup.
import type { ActivityDeps } from '../deps.js';
import { veleroBackupActivities } from './backups.js';
import { veleroVerifyActivities } from './verify.js';
import { veleroSandboxActivities } from './sandbox.js';
import { veleroEvidenceActivities } from './evidence.js';
import { veleroVolumeActivities } from './volumes.js';

export function veleroActivities(deps: ActivityDeps) {
  return {
    ...veleroBackupActivities(deps),
    ...veleroVerifyActivities(deps),
    ...veleroSandboxActivities(deps),
    ...veleroEvidenceActivities(deps),
    ...veleroVolumeActivities(deps),
  };
}
