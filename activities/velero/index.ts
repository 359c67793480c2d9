// Velero: backups, restores, resource lists, post-restore checks and scratch cleanup.
import type { ActivityDeps } from '../deps.js';
import { veleroBackupActivities } from './backups.js';
import { veleroVerifyActivities } from './verify.js';
import { veleroVolumeActivities } from './volumes.js';

export function veleroActivities(deps: ActivityDeps) {
  return { ...veleroBackupActivities(deps), ...veleroVerifyActivities(deps), ...veleroVolumeActivities(deps) };
}
