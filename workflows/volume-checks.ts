// Shared by verifyBackup and drRestore (through restore-checks.ts): did the restore bring the volume
// data back? Objects and workloads can all be there while every PVC is a new, empty volume (a backup
// without file-system backup, with snapshots disabled). Judged per namespace from the Restore's
// PodVolumeRestores and DataDownloads (activities/velero/volumes.ts).
import type { NamespaceVolumeData } from '../config/schema.js';
import type { VolumeDataResult } from '../activities/velero/types.js';
import { steady } from './restore-checks.js';
import type { StepRunner } from './steps.js';

/** Why the restored volume data is not enough; empty when it is. */
export function volumeDataProblems(
  results: VolumeDataResult[],
  config: Record<string, NamespaceVolumeData> = {},
): string[] {
  const reasons: string[] = [];
  for (const r of results) {
    const want = config[r.source] ?? {};
    const where = r.source === r.target ? r.source : `${r.source} (restored as ${r.target})`;
    const allowed = new Set(want.allowEmpty ?? []);
    const failed = r.pvcs.filter((p) => p.method !== 'none' && p.phase !== 'Completed');
    const empty = r.pvcs.filter((p) => p.method === 'none' && !allowed.has(p.pvc));
    if (r.pvcs.length > 0 && r.withData.length === 0)
      reasons.push(`no volume data restored for ${where}: PVCs ${r.pvcs.map((p) => p.pvc).join(', ')} came back empty`);
    else if (empty.length > 0)
      reasons.push(`no volume data restored for PVCs ${empty.map((p) => p.pvc).join(', ')} of ${where}`);
    for (const p of failed)
      reasons.push(
        `volume data of PVC ${p.pvc} in ${where} not restored: ${p.name ?? p.method} is ${p.phase}${p.message ? `: ${p.message}` : ''}`,
      );
    if (want.minPvcs !== undefined && r.withData.length < want.minPvcs)
      reasons.push(
        `${r.withData.length} PVCs of ${where} came back with data; the config expects at least ${want.minPvcs}`,
      );
  }
  return reasons;
}

/** The volume-data step: reads what the Restore filled and judges it. */
export async function checkVolumeData(
  runner: StepRunner,
  input: {
    cluster: string;
    restore: string;
    mapping: Record<string, string>;
    config?: Record<string, NamespaceVolumeData>;
  },
): Promise<{ volumes: VolumeDataResult[]; reasons: string[] }> {
  const { cluster, restore, mapping } = input;
  const res = await runner.run(
    'volume-data',
    'verify',
    `Check the volume data restore ${restore} brought back`,
    () => steady.veleroVolumeData({ cluster, restore, mapping }),
    {
      describe: (v) => ({
        detail: v.map((r) => `${r.source}: ${r.withData.length} of ${r.pvcs.length} PVCs with data`).join('; '),
      }),
    },
  );
  const volumes = res ?? [];
  const reasons = volumeDataProblems(volumes, input.config);
  if (reasons.length > 0) runner.mark('volume-data', 'failed');
  return { volumes, reasons };
}
