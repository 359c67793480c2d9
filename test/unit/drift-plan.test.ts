// Pure parts of drift: the report id, the repair plan's order and grouping, the file diff's redaction.
import { describe, expect, test } from 'vitest';
import { findingsId, repairPlan, countByKind } from '../../workflows/drift-plan.js';
import type { DriftFinding } from '../../workflows/drift-types.js';
import { fileDiff } from '../../activities/drift/nodes.js';
import { loadClusterFile } from '../../config/loader.js';

const spec = loadClusterFile('config/clusters/pedro-ops.yaml');
const f = (x: Partial<DriftFinding> & Pick<DriftFinding, 'kind' | 'repair'>): DriftFinding => ({
  group: 'g',
  object: `${x.kind} object`,
  want: 'w',
  have: 'h',
  action: 'a',
  ...x,
});

describe('drift plan', () => {
  test('the id depends on what was found, not on the order it was found in', () => {
    const a = f({ kind: 'k3s-service', repair: { step: 'k3s', node: 'worker-1' } });
    const b = f({ kind: 'secret', repair: { step: 'secret-sync', entry: 'github' } });
    expect(findingsId([a, b])).toBe(findingsId([b, a]));
    expect(findingsId([a, b])).not.toBe(findingsId([a, { ...b, have: 'other' }]));
    expect(findingsId([])).toMatch(/^[0-9a-f]{16}$/);
    expect(countByKind([a, b, b])).toMatchObject({ 'k3s-service': 1, secret: 2, helmchart: 0 });
  });

  test("a rewritten k3s file is followed by that node's k3s step; servers before agents; one change per step", () => {
    const worker = spec.nodes.find((n) => n.role === 'agent')!.name;
    const server = spec.nodes.find((n) => n.role === 'server')!.name;
    const c = spec.components[0].name;
    const plan = repairPlan(
      [
        f({ kind: 'secret', repair: { step: 'secret-sync', entry: 'github' } }),
        f({ kind: 'helmchart', repair: { step: 'component', component: c } }),
        f({ kind: 'workloads', repair: { step: 'component', component: c } }),
        f({ kind: 'k3s-config', repair: { step: 'prepare-node', node: worker } }),
        f({ kind: 'k3s-service', repair: { step: 'k3s', node: server } }),
        f({ kind: 'velero-bsl', repair: { step: 'manual' } }),
        f({ kind: 'unobservable', repair: { step: 'manual' } }),
      ],
      spec,
    );
    expect(plan.map((x) => x.id)).toEqual([
      `prepare/${worker}`,
      `k3s/${server}`,
      `k3s/${worker}`,
      `component/${c}`,
      'secret/github',
      'manual',
    ]);
    expect(plan.find((x) => x.id === `component/${c}`)!.fixes).toHaveLength(2);
    // An unobservable part is not something a repair can fix: it is not in the plan.
    expect(plan.find((x) => x.id === 'manual')!.fixes).toEqual(['velero-bsl: velero-bsl object']);
  });

  test('file diffs show the differing lines and never a credential', () => {
    const d = fileDiff(
      'node-name: a\nnode-ip: 1.2.3.4\n',
      'node-name: a\nnode-ip: 5.6.7.8\ntoken: K10abc::server:s3cr3t\n',
    );
    expect(d.want).toBe('node-ip: 1.2.3.4');
    expect(d.have).toBe('node-ip: 5.6.7.8\ntoken: <redacted>');
    expect(fileDiff('a: 1\n', undefined).have).toBe('(absent)');
  });
});
