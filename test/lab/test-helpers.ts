// Helpers for tests against a lab: clients wired to its endpoints, the control API, polling, and the
// rollout rule from REFERENCE.md. Shared so every suite judges the lab the same way.
import * as k8s from '@kubernetes/client-node';
import { connectNode } from './built.js';
import type { Lab } from './index.js';

export function clients(lab: Lab) {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(lab.kube.kubeconfigPath);
  return {
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    batch: kc.makeApiClient(k8s.BatchV1Api),
    coordination: kc.makeApiClient(k8s.CoordinationV1Api),
  };
}

export async function control(
  lab: Lab,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${lab.control.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** 'connected' or the reason it failed; never the NodeSSH object, whose config holds the private key. */
export async function tryConnect(lab: Lab, node: string, hostKey = pinnedKey(lab, node)): Promise<string> {
  try {
    (
      await connectNode(
        lab.nodes.find((n) => n.name === node)!,
        lab.sshKeyPath,
        hostKey,
      )
    ).dispose();
    return 'connected';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** The key recorded in the cluster file (lab.nodes[].hostKey follows rotations, like a TOFU client would). */
export const pinnedKey = (lab: Lab, node: string) => lab.spec.nodes.find((n) => n.name === node)!.hostKey!;

export const ready = (n: k8s.V1Node) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

/** The REFERENCE rollout rule for Deployments. */
export function rolledOut(d: k8s.V1Deployment): boolean {
  const s = d.status ?? {};
  const want = d.spec?.replicas ?? 1;
  return (
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    !s.conditions?.some((c) => c.reason === 'ProgressDeadlineExceeded') &&
    s.updatedReplicas === want &&
    s.replicas === want &&
    s.availableReplicas === want
  );
}

export async function restart(lab: Lab, namespace: string, name: string) {
  const { apps } = clients(lab);
  const body = {
    spec: {
      template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
    },
  };
  return apps.patchNamespacedDeployment(
    { name, namespace, body },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
  );
}
