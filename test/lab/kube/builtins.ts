// Defaulting and validation of the built-in kinds: the subset of the apiserver's strategies that a
// client of this project can trip over (missing selector, Job restartPolicy, bad base64, bad names).
import { badRequest, invalid, type StatusCause } from './errors.js';
import type { ResourceType } from './resources.js';
import { isObject, type KObj } from './util.js';

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

let nextClusterIp = 10;

/** Mutates obj with the defaults the real apiserver fills in. `old` is set on updates. */
export function applyBuiltinDefaults(rt: ResourceType, obj: KObj, old?: KObj): void {
  const spec = (obj.spec ??= {});
  switch (rt.kind) {
    case 'Namespace':
      obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name };
      spec.finalizers ??= ['kubernetes'];
      obj.status ??= { phase: 'Active' };
      break;
    case 'Secret':
      delete obj.spec;
      obj.type ??= 'Opaque';
      foldStringData(obj);
      break;
    case 'ConfigMap':
    case 'Event':
      delete obj.spec;
      break;
    case 'Service':
      spec.type ??= 'ClusterIP';
      spec.sessionAffinity ??= 'None';
      if (!spec.clusterIP)
        spec.clusterIP =
          old?.spec?.clusterIP ?? `10.43.${Math.floor(nextClusterIp / 250)}.${(nextClusterIp++ % 250) + 1}`;
      spec.clusterIPs ??= [spec.clusterIP];
      for (const p of spec.ports ?? []) {
        p.protocol ??= 'TCP';
        p.targetPort ??= p.port;
      }
      break;
    case 'Deployment':
      spec.replicas ??= 1;
      spec.strategy ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } };
      spec.revisionHistoryLimit ??= 10;
      spec.progressDeadlineSeconds ??= 600;
      break;
    case 'StatefulSet':
      spec.replicas ??= 1;
      spec.podManagementPolicy ??= 'OrderedReady';
      spec.updateStrategy ??= { type: 'RollingUpdate', rollingUpdate: { partition: 0 } };
      break;
    case 'DaemonSet':
      spec.updateStrategy ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } };
      break;
    case 'Job':
      defaultJob(obj, old);
      break;
    case 'CronJob':
      spec.concurrencyPolicy ??= 'Allow';
      spec.suspend ??= false;
      spec.successfulJobsHistoryLimit ??= 3;
      spec.failedJobsHistoryLimit ??= 1;
      break;
  }
}

function foldStringData(obj: KObj): void {
  for (const [k, v] of Object.entries(obj.data ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
      throw badRequest(
        `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0 (key ${k})`,
      );
    }
  }
  if (isObject(obj.stringData)) {
    obj.data ??= {};
    for (const [k, v] of Object.entries(obj.stringData)) obj.data[k] = Buffer.from(String(v)).toString('base64');
  }
  delete obj.stringData;
}

function defaultJob(obj: KObj, old?: KObj): void {
  const spec = obj.spec;
  spec.backoffLimit ??= 6;
  spec.completions ??= 1;
  spec.parallelism ??= 1;
  spec.completionMode ??= 'NonIndexed';
  spec.suspend ??= false;
  // The Job controller owns selector and pod labels; they are derived from the Job's uid.
  const uid = old?.metadata.uid ?? obj.metadata.uid;
  if (!uid || spec.manualSelector) return;
  const labels = {
    'batch.kubernetes.io/controller-uid': uid,
    'batch.kubernetes.io/job-name': obj.metadata.name,
    'controller-uid': uid,
    'job-name': obj.metadata.name,
  };
  spec.selector ??= { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
  const tmeta = ((spec.template ??= {}).metadata ??= {});
  tmeta.labels = { ...tmeta.labels, ...labels };
}

/** The pod template a workload kind carries, if any. */
export function podTemplateOf(kind: string, obj: KObj): KObj | undefined {
  if (kind === 'CronJob') return obj.spec?.jobTemplate?.spec?.template;
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(kind)) return obj.spec?.template;
  return undefined;
}

export function validateBuiltin(rt: ResourceType, obj: KObj, old?: KObj): void {
  const causes: StatusCause[] = [];
  const name = obj.metadata.name;
  const nameRe = rt.kind === 'Namespace' || rt.kind === 'Service' ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
  if (!nameRe.test(name) || name.length > 253) {
    causes.push({
      field: 'metadata.name',
      reason: 'FieldValueInvalid',
      message: `Invalid value: "${name}": a lowercase RFC 1123 ${nameRe === DNS1123_LABEL ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
    });
  }
  const spec = obj.spec ?? {};
  if (['Deployment', 'StatefulSet', 'DaemonSet'].includes(rt.kind)) {
    const sel = spec.selector?.matchLabels;
    const tl = spec.template?.metadata?.labels ?? {};
    if (!spec.selector)
      causes.push({ field: 'spec.selector', reason: 'FieldValueRequired', message: 'Required value' });
    else if (isObject(sel) && !Object.entries(sel).every(([k, v]) => tl[k] === v)) {
      causes.push({
        field: 'spec.template.metadata.labels',
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${JSON.stringify(tl)}: \`selector\` does not match template \`labels\``,
      });
    }
  }
  const template = podTemplateOf(rt.kind, obj);
  const tPath = rt.kind === 'CronJob' ? 'spec.jobTemplate.spec.template' : 'spec.template';
  if (template !== undefined || ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'].includes(rt.kind)) {
    const containers = template?.spec?.containers;
    if (!Array.isArray(containers) || containers.length === 0) {
      causes.push({ field: `${tPath}.spec.containers`, reason: 'FieldValueRequired', message: 'Required value' });
    } else {
      containers.forEach((c: KObj, i: number) => {
        if (!c?.name)
          causes.push({
            field: `${tPath}.spec.containers[${i}].name`,
            reason: 'FieldValueRequired',
            message: 'Required value',
          });
        if (!c?.image)
          causes.push({
            field: `${tPath}.spec.containers[${i}].image`,
            reason: 'FieldValueRequired',
            message: 'Required value',
          });
      });
    }
    if (rt.kind === 'Job' || rt.kind === 'CronJob') {
      const rp = template?.spec?.restartPolicy ?? 'Always';
      if (rp !== 'Never' && rp !== 'OnFailure') {
        causes.push({
          field: `${tPath}.spec.restartPolicy`,
          reason: 'FieldValueNotSupported',
          message: `Unsupported value: "${rp}": supported values: "OnFailure", "Never"`,
        });
      }
    }
  }
  if (rt.kind === 'CronJob' && !spec.schedule)
    causes.push({ field: 'spec.schedule', reason: 'FieldValueRequired', message: 'Required value' });
  if (rt.kind === 'Job' && old && JSON.stringify(old.spec?.template) !== JSON.stringify(spec.template)) {
    causes.push({
      field: 'spec.template',
      reason: 'FieldValueInvalid',
      message: `Invalid value: ${JSON.stringify(spec.template).slice(0, 80)}: field is immutable`,
    });
  }
  if (causes.length) throw invalid(rt, name, causes);
}
