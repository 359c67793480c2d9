// The upgrade's pure rules: the version paths k3s allows and the order nodes and charts go in.
import { describe, expect, test } from 'vitest';
import { versionPathRefusal } from '../../workflows/upgrade-plan.js';
import { selects, drainFilter } from '../../activities/upgrade/nodes.js';

describe('versionPathRefusal', () => {
  test('patch and next-minor upgrades are allowed', () => {
    expect(versionPathRefusal('v1.31.4+k3s1', 'v1.31.5+k3s1')).toBeUndefined();
    expect(versionPathRefusal('v1.31.4+k3s1', 'v1.32.1+k3s1')).toBeUndefined();
    expect(versionPathRefusal('v1.31.4+k3s1', 'v1.31.4+k3s2')).toBeUndefined();
  });
  test('a skipped minor, a downgrade and a major change are refused with the reason', () => {
    expect(versionPathRefusal('v1.30.8+k3s1', 'v1.32.1+k3s1')).toBe(
      'v1.30.8+k3s1 → v1.32.1+k3s1 skips minor 31: upgrade one minor at a time',
    );
    expect(versionPathRefusal('v1.31.5+k3s1', 'v1.31.4+k3s1')).toBe('v1.31.5+k3s1 → v1.31.4+k3s1 is a downgrade');
    expect(versionPathRefusal('v1.31.4+k3s1', 'v2.0.0+k3s1')).toContain('major');
    expect(versionPathRefusal(undefined, 'v1.31.4+k3s1')).toContain('not a k3s version');
  });
});

describe('drain filters (kubectl pkg/drain/filters.go)', () => {
  const pod = (meta: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', ...meta } });
  test('DaemonSet and mirror pods stay, the rest is evicted', () => {
    expect(drainFilter(pod({ ownerReferences: [{ kind: 'DaemonSet', name: 'd', controller: true }] }))).toBe(
      'daemonset',
    );
    expect(drainFilter(pod({ annotations: { 'kubernetes.io/config.mirror': 'x' } }))).toBe('mirror');
    expect(drainFilter(pod({ ownerReferences: [{ kind: 'ReplicaSet', name: 'r', controller: true }] }))).toBe('evict');
  });
  test('label selectors as apimachinery reads them', () => {
    expect(selects({ matchLabels: { app: 'a' } }, { app: 'a', x: 'y' })).toBe(true);
    expect(selects({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] }, { tier: 'db' })).toBe(
      false,
    );
    expect(selects({}, { app: 'a' })).toBe(true);
    expect(selects(undefined, { app: 'a' })).toBe(false);
  });
});
