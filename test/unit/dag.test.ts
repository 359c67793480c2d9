import { describe, expect, it } from 'vitest';
import { criticalPath, dependentsOf, findCycle, layers, readyNodes } from '../../workflows/dag.js';

const g = [
  { id: 'cert-manager', dependsOn: [] },
  { id: 'longhorn', dependsOn: [] },
  { id: 'contour', dependsOn: ['cert-manager'] },
  { id: 'seaweedfs', dependsOn: ['longhorn'] },
  { id: 'velero', dependsOn: ['seaweedfs'] },
  { id: 'airbyte', dependsOn: ['longhorn', 'contour'] },
];

describe('dag helpers', () => {
  it('finds what may start now', () => {
    expect(readyNodes(g, new Set(), new Set())).toEqual(['cert-manager', 'longhorn']);
    expect(readyNodes(g, new Set(['longhorn']), new Set(['cert-manager']))).toEqual(['seaweedfs']);
    expect(readyNodes(g, new Set(['longhorn', 'cert-manager', 'contour']), new Set())).toEqual([
      'seaweedfs',
      'airbyte',
    ]);
  });
  it('lists transitive dependents (what waits when a step is stuck)', () => {
    expect(dependentsOf(g, 'longhorn').sort()).toEqual(['airbyte', 'seaweedfs', 'velero']);
    expect(dependentsOf(g, 'velero')).toEqual([]);
  });
  it('finds cycles and accepts DAGs', () => {
    expect(findCycle(g)).toBeNull();
    expect(findCycle([...g, { id: 'x', dependsOn: ['y'] }, { id: 'y', dependsOn: ['x'] }])).toEqual(['x', 'y', 'x']);
  });
  it('computes layers and the weighted critical path', () => {
    expect(layers(g)).toEqual([
      ['cert-manager', 'longhorn'],
      ['contour', 'seaweedfs'],
      ['velero', 'airbyte'],
    ]);
    const w: Record<string, number> = {
      'cert-manager': 1,
      longhorn: 5,
      contour: 1,
      seaweedfs: 2,
      velero: 1,
      airbyte: 3,
    };
    expect(criticalPath(g, (id) => w[id])).toBe(8); // longhorn 5 + airbyte 3
  });
});
