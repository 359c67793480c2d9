// Discovery documents: /version, /api, /api/v1, /apis, /apis/<group>, /apis/<group>/<version>.
import { apiVersionOf, verbsOf, type Registry, type ResourceType } from './resources.js';

export function versionInfo(k3sVersion: string) {
  const m = /^v(\d+)\.(\d+)\.(\d+)/.exec(k3sVersion) ?? ['', '1', '31', '4'];
  return {
    major: m[1],
    minor: m[2],
    gitVersion: k3sVersion,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2024-12-18T00:00:00Z',
    goVersion: 'go1.22.9',
    compiler: 'gc',
    platform: 'linux/amd64',
  };
}

const resourceEntries = (types: ResourceType[]) =>
  types.flatMap((t) => {
    const main = {
      name: t.plural,
      singularName: t.singular,
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: verbsOf(t),
      ...(t.shortNames?.length ? { shortNames: t.shortNames } : {}),
    };
    return t.statusSubresource
      ? [
          main,
          {
            name: `${t.plural}/status`,
            singularName: '',
            namespaced: t.namespaced,
            kind: t.kind,
            verbs: ['get', 'patch', 'update'],
          },
        ]
      : [main];
  });

export function discovery(registry: Registry, segs: string[], serverAddress: string): object | undefined {
  const address = [{ clientCIDR: '0.0.0.0/0', serverAddress }];
  if (segs[0] === 'api') {
    if (segs.length === 1) return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: address };
    if (segs.length === 2 && segs[1] === 'v1') {
      return {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: resourceEntries(registry.types.filter((t) => !t.group)),
      };
    }
    return undefined;
  }
  if (segs[0] !== 'apis') return undefined;
  const groups = registry.groups().map(({ group, versions }) => ({
    name: group,
    versions: versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v })),
    preferredVersion: { groupVersion: `${group}/${versions[0]}`, version: versions[0] },
  }));
  if (segs.length === 1) return { kind: 'APIGroupList', apiVersion: 'v1', groups };
  const g = groups.find((x) => x.name === segs[1]);
  if (!g) return undefined;
  if (segs.length === 2) return { kind: 'APIGroup', apiVersion: 'v1', ...g };
  if (segs.length === 3 && g.versions.some((v) => v.version === segs[2])) {
    const types = registry.types.filter((t) => t.group === segs[1] && t.version === segs[2]);
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: apiVersionOf(types[0]),
      resources: resourceEntries(types),
    };
  }
  return undefined;
}
