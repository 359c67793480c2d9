// Shared setup for the rotation tests: a built lab, a registry over a temp copy of its cluster file
// (optionally patched), a kubeconfig where the orchestrator looks, real deps with a memory logger,
// and helpers that change 1Password values the way an operator would (items.get/put on the double).
import { randomBytes } from 'node:crypto';
import type { ClusterSpec } from '../../config/schema.js';
import type { ActivityDeps } from '../../activities/deps.js';
import type { KubePort } from '../../activities/kube/client.js';
import type { Lab } from '../lab/index.js';
import { createLabOnePasswordClient } from '../lab/onepassword/index.js';
import type { memoryLogger } from '../helpers/temporal.js';
import { withBuiltLab } from '../helpers/lab-deps.js';

export interface RotationLab {
  lab: Lab;
  spec: ClusterSpec;
  deps: ActivityDeps;
  log: ReturnType<typeof memoryLogger>;
  kube: KubePort;
  dataDir: string;
  /** New random values for the 1Password fields behind these entries (default: every entry). */
  changeValues(entryIds?: string[]): Promise<void>;
  /** Decoded data of a Kubernetes Secret (test-side only). */
  secretData(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** OpenBAO KV v2 read through the HTTP API with the lab's root token. */
  bao(
    path: string,
    version?: number,
  ): Promise<{ data?: Record<string, string>; version: number; custom: Record<string, string> }>;
  stop(): Promise<void>;
}

export function startRotationLab(patch?: (spec: ClusterSpec) => void): Promise<RotationLab> {
  return withBuiltLab({ prefix: 'pedro-ops-rotation', patch }, (lab, o, stop): RotationLab => {
    const { spec: loaded, deps, log, kube } = o;
    const op = createLabOnePasswordClient(lab.onepassword.url);

    const changeValues = async (entryIds?: string[]) => {
      const entries = loaded.secrets.entries.filter((e) => !entryIds || entryIds.includes(e.id));
      const vault = (await op.vaults.list()).find((v) => v.title === loaded.onepassword.vault)!;
      const overviews = await op.items.list(vault.id);
      const byItem = new Map<string, Set<string>>();
      for (const e of entries) {
        for (const ref of Object.values(e.fields)) {
          const [, item, ...rest] = ref.slice('op://'.length).split('/');
          const field = rest[rest.length - 1];
          byItem.set(item, (byItem.get(item) ?? new Set()).add(field));
        }
      }
      for (const [title, fields] of byItem) {
        const id = overviews.find((o) => o.title === title)?.id;
        if (!id) continue; // entries that point at missing items on purpose
        const item = await op.items.get(vault.id, id);
        item.fields = item.fields.map((f) =>
          fields.has(f.title) || fields.has(f.id)
            ? { ...f, value: `lab-rotated-${randomBytes(8).toString('hex')}` }
            : f,
        );
        await op.items.put(item);
      }
    };

    const bao = async (path: string, version?: number) => {
      const h = { 'x-vault-token': lab.openbao.rootToken! };
      const mount = loaded.openbao.kvMount;
      const meta = await fetch(`${lab.openbao.url}/v1/${mount}/metadata/${path}`, { headers: h });
      const m = meta.ok
        ? ((await meta.json()) as { data: { current_version: number; custom_metadata: Record<string, string> | null } })
            .data
        : undefined;
      const v = version ?? m?.current_version ?? 0;
      const res = await fetch(`${lab.openbao.url}/v1/${mount}/data/${path}?version=${v}`, { headers: h });
      const data = res.ok ? ((await res.json()) as { data: { data: Record<string, string> } }).data.data : undefined;
      return { data, version: v, custom: m?.custom_metadata ?? {} };
    };

    return {
      lab,
      spec: loaded,
      deps,
      log,
      kube,
      dataDir: o.dataDir,
      changeValues,
      async secretData(namespace, name) {
        const s = await kube.read<{ data?: Record<string, string> } & Record<string, unknown>>(
          'v1',
          'Secret',
          name,
          namespace,
        );
        if (!s) return undefined;
        return Object.fromEntries(
          Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
        );
      },
      bao,
      stop,
    };
  });
}
