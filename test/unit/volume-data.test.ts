// How a drill judges the volume data a restore brought back (workflows/volume-checks.ts): every PVC
// the restore created must have been filled by a Completed PodVolumeRestore or DataDownload, unless
// the config allows it to come back empty; the config's minimum of PVCs with data per namespace.
import { describe, expect, it } from 'vitest';
import type { PvcVolumeData, VolumeDataResult } from '../../activities/velero/types.js';
import { volumeDataProblems } from '../../workflows/volume-checks.js';

const pvc = (name: string, method: PvcVolumeData['method'], phase?: string, message?: string): PvcVolumeData => ({
  pvc: name,
  method,
  ...(phase ? { phase, name: `r-${name}` } : {}),
  ...(message ? { message } : {}),
});
const ns = (pvcs: PvcVolumeData[], source = 'app', target = 'drill-app-1'): VolumeDataResult => ({
  source,
  target,
  pvcs,
  withData: pvcs.filter((p) => p.phase === 'Completed').map((p) => p.pvc),
  withoutData: pvcs.filter((p) => p.phase !== 'Completed').map((p) => p.pvc),
});

describe('volume data of a restore', () => {
  it('passes when every restored PVC was filled, and for a namespace without PVCs', () => {
    expect(volumeDataProblems([ns([pvc('a', 'fs-backup', 'Completed'), pvc('b', 'data-mover', 'Completed')])])).toEqual(
      [],
    );
    expect(volumeDataProblems([ns([])])).toEqual([]);
  });

  it('names the PVCs of a namespace that got no data at all', () => {
    expect(volumeDataProblems([ns([pvc('a', 'none'), pvc('b', 'none')])])).toEqual([
      'no volume data restored for app (restored as drill-app-1): PVCs a, b came back empty',
    ]);
  });

  it('names PVCs left empty beside filled ones, unless allowed, and failed restores with their message', () => {
    const r = ns([
      pvc('db', 'fs-backup', 'Completed'),
      pvc('cache', 'none'),
      pvc('logs', 'fs-backup', 'Failed', 'kopia: boom'),
    ]);
    expect(volumeDataProblems([r])).toEqual([
      'no volume data restored for PVCs cache of app (restored as drill-app-1)',
      'volume data of PVC logs in app (restored as drill-app-1) not restored: r-logs is Failed: kopia: boom',
    ]);
    expect(volumeDataProblems([r], { app: { allowEmpty: ['cache'] } })).toEqual([
      'volume data of PVC logs in app (restored as drill-app-1) not restored: r-logs is Failed: kopia: boom',
    ]);
  });

  it('holds each namespace to the config’s minimum of PVCs with data (in place: the namespace alone)', () => {
    expect(
      volumeDataProblems([ns([pvc('db', 'fs-backup', 'Completed')], 'app', 'app')], { app: { minPvcs: 2 } }),
    ).toEqual(['1 PVCs of app came back with data; the config expects at least 2']);
  });
});
