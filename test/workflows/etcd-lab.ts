// Shared setup for the control-plane snapshot tests: a built lab whose cluster config turns on k3s
// etcd snapshots to the lab's S3 store, with the S3 keys in a 1Password item of the double and allowed
// by the store, plus helpers to run a command on the server node and to change the cluster file.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { ClusterSpec } from '../../config/schema.js';
import { startVeleroLab, type VeleroLab } from './velero-lab.js';

export const BUCKET = 'etcd-snapshots';
export const FOLDER = 'pedro-ops';
const ITEM = 'ETCD_S3';

export interface EtcdLab extends VeleroLab {
  keys: { access: string; secret: string };
  /** Runs a command on a node (default the server) over the orchestrator's SSH. */
  onNode(command: string, node?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Changes the orchestrator's copy of the cluster file (the registry reloads it by mtime). */
  rewriteSpec(change: (raw: Pick<ClusterSpec, 'k3s' | 'nodes'>) => void): void;
}

export async function startEtcdLab(): Promise<EtcdLab> {
  const v = await startVeleroLab((spec) => {
    spec.k3s.etcdSnapshots = {
      scheduleCron: '0 */6 * * *',
      retention: 5,
      rpoSeconds: 3600,
      minSizeBytes: 4096,
      s3: {
        // the lab's object store, which the BSL's publicUrl also names
        endpoint: new URL(spec.backups.publicUrl ?? spec.backups.s3Url).host,
        insecure: true,
        bucket: BUCKET,
        folder: FOLDER,
        accessKeyRef: `op://${spec.onepassword.vault}/${ITEM}/access-key`,
        secretKeyRef: `op://${spec.onepassword.vault}/${ITEM}/secret-key`,
      },
    };
  });
  try {
    const keys = { access: `lab-s3-access-${randomUUID().slice(0, 8)}`, secret: `lab-s3-secret-${randomUUID()}` };
    const op = await v.deps.onepassword(v.spec);
    const vault = (await op.vaults.list()).find((x) => x.title === v.spec.onepassword.vault)!;
    const field = (id: string, value: string) => ({ id, title: id, fieldType: 'Concealed', value }) as never;
    await op.items.create({
      category: 'Password' as never,
      vaultId: vault.id,
      title: ITEM,
      fields: [field('access-key', keys.access), field('secret-key', keys.secret)],
      sections: [],
      tags: ['lab'],
    });
    v.lab.pieces.kube.objectStore.allow(BUCKET, keys.access);
    const onNode = async (command: string, name = 'control-plane') => {
      // the orchestrator's current copy of the cluster file: a replaced node has a new address there
      const spec = v.deps.clusters.get(v.spec.name) ?? v.spec;
      const node = spec.nodes.find((n) => n.name === name)!;
      const s = await v.deps.ssh.connect(spec, node, {});
      try {
        const r = await s.exec(command);
        return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
      } finally {
        s.dispose();
      }
    };
    const rewriteSpec = (change: (raw: Pick<ClusterSpec, 'k3s' | 'nodes'>) => void) => {
      const file = join(v.dataDir, 'clusters', `${v.spec.name}.yaml`);
      const raw = parse(readFileSync(file, 'utf8')) as Pick<ClusterSpec, 'k3s' | 'nodes'>;
      change(raw);
      writeFileSync(file, stringify(raw, { lineWidth: 0 }));
    };
    return Object.assign(v, { keys, onNode, rewriteSpec });
  } catch (err) {
    await v.stop();
    throw err;
  }
}

/** Runs an activity function outside a worker (heartbeats go nowhere). */
export const activity = <R>(fn: () => Promise<R>): Promise<R> => new MockActivityEnvironment().run(fn);
