// The Velero chart owns the BackupStorageLocation (velero 8.0.0 templates/backupstoragelocation.yaml),
// so the backup policy's publicUrl reaches the BSL only through the chart's values.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_CLUSTERS_DIR, loadClusterFile } from '../../config/loader.js';
import { desiredHelmChart } from '../../activities/components/helmchart.js';

const real = loadClusterFile(join(DEFAULT_CLUSTERS_DIR, 'pedro-ops.yaml'));
const valuesOf = (spec: typeof real, name: string) => {
  const c = spec.components.find((x) => x.name === name)!;
  return parse(String(desiredHelmChart(spec, c).spec!.valuesContent)) as Record<string, any>;
};

describe("backups.publicUrl goes through the Velero chart's BSL values", () => {
  it('is added to the entry of the storage location, keeping its other config; config itself is not changed', () => {
    const spec = structuredClone(real);
    spec.backups.publicUrl = 'https://s3.soypetetech.local';
    const bsl = valuesOf(spec, 'velero').configuration.backupStorageLocation;
    expect(bsl).toHaveLength(1);
    expect(bsl[0]).toMatchObject({ name: spec.backups.storageLocation, default: true });
    expect(bsl[0].config).toEqual({
      s3Url: 'http://seaweedfs-s3.seaweedfs:8333',
      s3ForcePathStyle: 'true',
      region: 'us-east-1',
      publicUrl: 'https://s3.soypetetech.local',
    });
    const inConfig = spec.components.find((x) => x.name === 'velero')!.values as Record<string, any>;
    expect(inConfig.configuration.backupStorageLocation[0].config.publicUrl).toBeUndefined();
  });

  it('changes nothing without a publicUrl, for another location, or for another component', () => {
    expect(valuesOf(real, 'velero').configuration.backupStorageLocation[0].config.publicUrl).toBeUndefined();
    const other = structuredClone(real);
    other.backups.publicUrl = 'https://s3.soypetetech.local';
    other.backups.storageLocation = 'offsite';
    expect(valuesOf(other, 'velero').configuration.backupStorageLocation[0].config.publicUrl).toBeUndefined();
    const c = other.components.find((x) => x.name === 'loki')!;
    expect(desiredHelmChart(other, c).spec!.valuesContent).not.toContain('publicUrl');
  });
});
