// The Kubernetes port: a thin generic object client over @kubernetes/client-node 1.4 plus the
// error classification every activity shares (409 retry, 422 schema, 401/403 auth, 5xx transient).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { ApplicationFailure } from '@temporalio/common';
import type { ClusterSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';

export type PatchKind = 'merge' | 'strategic' | 'json' | 'apply';
const STRATEGY: Record<PatchKind, string> = {
  merge: PatchStrategy.MergePatch,
  strategic: PatchStrategy.StrategicMergePatch,
  json: PatchStrategy.JsonPatch,
  apply: PatchStrategy.ServerSideApply,
};

/** Every write names this field manager; server-side apply keys field ownership by it. */
export const FIELD_MANAGER = 'pedro-ops';
/** Metadata annotations for a JSON merge patch that deletes `key` (null removes a key: RFC 7386). */
export const removeAnnotation = (key: string) => ({ [key]: null }) as unknown as Record<string, string>;

export interface KubeObject extends KubernetesObject {
  [key: string]: unknown;
}

export interface KubePort {
  read<T extends KubeObject = KubeObject>(
    apiVersion: string,
    kind: string,
    name: string,
    namespace?: string,
  ): Promise<T | undefined>;
  list<T extends KubeObject = KubeObject>(
    apiVersion: string,
    kind: string,
    namespace?: string,
    labelSelector?: string,
  ): Promise<T[]>;
  create<T extends KubeObject = KubeObject>(obj: KubeObject): Promise<T>;
  replace<T extends KubeObject = KubeObject>(obj: KubeObject): Promise<T>;
  patch<T extends KubeObject = KubeObject>(obj: KubeObject, kind: PatchKind): Promise<T>;
  /**
   * Returns false when the object was already gone. With `uid`, only that object is deleted (a
   * precondition: one created again under the same name in the meantime stays, and false is returned).
   */
  delete(apiVersion: string, kind: string, name: string, namespace?: string, opts?: { uid?: string }): Promise<boolean>;
  /** Pods bound to a node (field selector spec.nodeName), in every namespace. */
  podsOnNode<T extends KubeObject = KubeObject>(node: string): Promise<T[]>;
  /**
   * POST pods/<name>/eviction (policy/v1 Eviction): `evicted`, `gone` (404), or `blocked` with the
   * apiserver's message when a PodDisruptionBudget refuses it (429: k8s pkg/registry/core/pod/storage/eviction.go).
   */
  evict(name: string, namespace: string): Promise<{ result: 'evicted' | 'gone' | 'blocked'; message?: string }>;
}

export function kubeconfigPathFor(spec: ClusterSpec, dataDir: string): string {
  return spec.kubernetes?.kubeconfigPath
    ? resolve(spec.kubernetes.kubeconfigPath)
    : resolve(dataDir, 'kubeconfig', `${spec.name}.yaml`);
}

export function kubeFromKubeConfig(kc: KubeConfig): KubePort {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const core = kc.makeApiClient(CoreV1Api);
  const ref = (apiVersion: string, kind: string, name: string, namespace?: string) => ({
    apiVersion,
    kind,
    metadata: { name, namespace },
  });
  return {
    async read<T extends KubeObject>(apiVersion: string, kind: string, name: string, namespace?: string) {
      try {
        return (await api.read(ref(apiVersion, kind, name, namespace))) as unknown as T;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw classifyKubeError(err, `read ${kind} ${namespace ? `${namespace}/` : ''}${name}`);
      }
    },
    async list<T extends KubeObject>(apiVersion: string, kind: string, namespace?: string, labelSelector?: string) {
      try {
        const res = await api.list(
          apiVersion,
          kind,
          namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          labelSelector,
        );
        return (res.items ?? []) as unknown as T[];
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return [];
        throw classifyKubeError(err, `list ${kind}${namespace ? ` in ${namespace}` : ''}`);
      }
    },
    async create<T extends KubeObject>(obj: KubeObject) {
      try {
        return (await api.create(obj)) as unknown as T;
      } catch (err) {
        throw classifyKubeError(err, `create ${obj.kind} ${obj.metadata?.name}`);
      }
    },
    async replace<T extends KubeObject>(obj: KubeObject) {
      try {
        return (await api.replace(obj)) as unknown as T;
      } catch (err) {
        throw classifyKubeError(err, `replace ${obj.kind} ${obj.metadata?.name}`);
      }
    },
    async patch<T extends KubeObject>(obj: KubeObject, kind: PatchKind) {
      try {
        return (await api.patch(
          obj,
          undefined,
          undefined,
          FIELD_MANAGER,
          // Apply forces: the orchestrator is the authority for the fields it applies (its Secret keys),
          // taking them over from whoever created them with a plain create/update.
          kind === 'apply' ? true : undefined,
          STRATEGY[kind] as PatchStrategy,
        )) as unknown as T;
      } catch (err) {
        throw classifyKubeError(err, `patch ${obj.kind} ${obj.metadata?.name}`);
      }
    },
    async delete(apiVersion: string, kind: string, name: string, namespace?: string, opts?: { uid?: string }) {
      try {
        // Background: dependents (a Job's pods) are garbage-collected. The API's default for Jobs is
        // to orphan them (kubectl sets background itself), leaving the pods of a deleted Job running.
        await api.delete(
          ref(apiVersion, kind, name, namespace),
          undefined,
          undefined,
          undefined,
          undefined,
          'Background',
          opts?.uid ? { preconditions: { uid: opts.uid } } : undefined,
        );
        return true;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return false;
        // DeleteOptions.preconditions.uid not matching: the apiserver answers 409 Conflict.
        if (opts?.uid && err instanceof ApiException && err.code === 409) return false;
        throw classifyKubeError(err, `delete ${kind} ${name}`);
      }
    },
    async podsOnNode<T extends KubeObject>(node: string) {
      try {
        const res = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${node}` });
        return (res.items ?? []).map((p) => ({ apiVersion: 'v1', kind: 'Pod', ...p })) as unknown as T[];
      } catch (err) {
        throw classifyKubeError(err, `list pods on node ${node}`);
      }
    },
    async evict(name: string, namespace: string) {
      try {
        await core.createNamespacedPodEviction({
          name,
          namespace,
          body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace } },
        });
        return { result: 'evicted' as const };
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return { result: 'gone' as const };
        if (err instanceof ApiException && err.code === 429)
          return { result: 'blocked' as const, message: statusMessage(err.body) ?? 'eviction refused (429)' };
        // Two budgets over one pod: the apiserver refuses with 500 "This pod has more than one
        // PodDisruptionBudget, which the eviction subresource does not support." (eviction.go): no
        // retry helps until a budget goes, so it blocks like a 429 instead of counting as a transient.
        if (
          err instanceof ApiException &&
          err.code === 500 &&
          /more than one PodDisruptionBudget/.test(String(statusMessage(err.body)))
        )
          return { result: 'blocked' as const, message: statusMessage(err.body) };
        throw classifyKubeError(err, `evict pod ${namespace}/${name}`);
      }
    },
  };
}

export function kubeForCluster(spec: ClusterSpec, dataDir: string): KubePort {
  const path = kubeconfigPathFor(spec, dataDir);
  if (!existsSync(path)) {
    throw nonRetryable(
      ErrorType.BadConfig,
      `no kubeconfig for cluster ${spec.name} at ${path}: provision the cluster first or set kubernetes.kubeconfigPath`,
    );
  }
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kubeFromKubeConfig(kc);
}

function statusMessage(body: unknown): string | undefined {
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body.slice(0, 300);
    } catch {
      return body.slice(0, 300);
    }
  }
  if (body && typeof body === 'object' && 'message' in body) return String(body.message);
  return undefined;
}

/** Maps an API/network error to a typed failure (DESIGN rule 3). */
export function classifyKubeError(err: unknown, what: string): ApplicationFailure {
  if (err instanceof ApiException) {
    const msg = `${what}: HTTP ${err.code}${statusMessage(err.body) ? `: ${statusMessage(err.body)}` : ''}`;
    if (err.code === 409) return retryable(ErrorType.Conflict, msg);
    if (err.code === 401 || err.code === 403) return nonRetryable(ErrorType.AuthDenied, msg);
    if (err.code === 422 || err.code === 400 || err.code === 415) return nonRetryable(ErrorType.SchemaRejected, msg);
    if (err.code === 404) return nonRetryable(ErrorType.NotFound, msg);
    return retryable(ErrorType.Transient, msg);
  }
  const e = err as { code?: string; message?: string };
  return retryable(ErrorType.Transient, `${what}: ${e?.code ?? ''} ${e?.message ?? String(err)}`.trim());
}
