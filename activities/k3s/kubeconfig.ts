// The kubeconfig: fetched from the first server, its server URL rewritten from 127.0.0.1 to the VIP,
// kept as a 0600 file in the worker's data folder (kubeconfigPathFor). Its credentials never enter
// history: the activity returns the path and a fingerprint. Then node readiness through the API.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseDocument } from 'yaml';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { kubeconfigPathFor, type KubeObject } from '../kube/client.js';
import { beat, sleep, waitDeadline } from '../heartbeat.js';
import { withSession } from '../ssh/session.js';

export const K3S_KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';

export function rewriteKubeconfig(text: string, spec: ClusterSpec): string {
  const doc = parseDocument(text);
  const clusters = doc.get('clusters') as { items?: unknown[] } | undefined;
  if (!clusters?.items?.length) throw nonRetryable(ErrorType.BadConfig, 'kubeconfig from the server has no clusters');
  const server = `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}`;
  doc.setIn(['clusters', 0, 'cluster', 'server'], server);
  doc.setIn(['clusters', 0, 'name'], spec.name);
  doc.setIn(['contexts', 0, 'context', 'cluster'], spec.name);
  doc.setIn(['contexts', 0, 'name'], spec.name);
  doc.set('current-context', spec.name);
  return doc.toString();
}

export interface KubeconfigResult {
  path: string;
  server: string;
  /** sha256 prefix of the file: changes when the credentials change, reveals nothing. */
  fingerprint: string;
  changed: boolean;
}

type NodeObj = KubeObject & {
  status?: { conditions?: { type: string; status: string }[]; nodeInfo?: { kubeletVersion?: string } };
};

export function kubeconfigActivities(deps: ActivityDeps) {
  return {
    async fetchKubeconfig(input: { cluster: string }): Promise<KubeconfigResult> {
      const spec = clusterOrFail(deps, input.cluster);
      const server = spec.nodes.find((n) => n.role === 'server')!;
      const text = await withSession(deps, spec, server, async (s) => {
        const r = await s.exec(`cat ${K3S_KUBECONFIG}`);
        if (r.code !== 0 || !r.stdout.trim())
          throw retryable(ErrorType.NotReady, `${K3S_KUBECONFIG} not written on ${server.name} yet`);
        return r.stdout;
      });
      const content = rewriteKubeconfig(text, spec);
      const path = kubeconfigPathFor(spec, deps.dataDir);
      const fingerprint = createHash('sha256').update(content).digest('hex').slice(0, 16);
      const base = { path, server: `https://${spec.vip}:${spec.k3s.apiPort ?? 6443}`, fingerprint };
      if (existsSync(path) && readFileSync(path, 'utf8') === content) {
        chmodSync(path, 0o600);
        return { ...base, changed: false };
      }
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, content, { mode: 0o600 });
      renameSync(tmp, path);
      return { ...base, changed: true };
    },

    /** Polls the API until every configured node is registered and Ready (no fixed sleeps). */
    async waitNodesReady(input: {
      cluster: string;
      timeoutSeconds?: number;
    }): Promise<{ nodes: { name: string; version?: string }[]; waitedMs: number; alreadyReady: boolean }> {
      const spec = clusterOrFail(deps, input.cluster);
      const kube = deps.kube(spec);
      const want = spec.nodes.map((n) => n.name);
      const t0 = Date.now();
      const deadline = waitDeadline(input.timeoutSeconds ?? 300, 'nodes Ready');
      for (let polls = 0; ; polls++) {
        const list = await kube.list<NodeObj>('v1', 'Node');
        const ready = new Map(
          list
            .filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
            .map((n) => [n.metadata!.name!, n]),
        );
        const waiting = want.filter((n) => !ready.has(n));
        if (waiting.length === 0) {
          return {
            nodes: want.map((n) => ({ name: n, version: ready.get(n)?.status?.nodeInfo?.kubeletVersion })),
            waitedMs: Date.now() - t0,
            alreadyReady: polls === 0,
          };
        }
        beat({ step: 'waiting for nodes Ready', nodes: waiting, waiting: 'nodes Ready', deadline });
        if (Date.now() > deadline)
          throw retryable(
            ErrorType.NotReady,
            `nodes not Ready after ${input.timeoutSeconds ?? 300}s: ${waiting.join(', ')}`,
          );
        await sleep(250);
      }
    },
  };
}
