// Kubernetes `Status` failure bodies, shaped exactly as kube-apiserver sends them, so clients that
// branch on `body.reason` / `body.code` behave the same against the double and a real cluster.

export interface StatusCause {
  field?: string;
  message: string;
  reason: string;
}

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[] };
  code: number;
}

export class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusBody['details'],
  ) {
    super(message);
  }
  body(): StatusBody {
    const b: StatusBody = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details) b.details = this.details;
    return b;
  }
}

/** What the API server names a resource in messages: `secrets`, `deployments.apps`, `backups.velero.io`. */
export interface ResourceName {
  group: string;
  plural: string;
  kind: string;
}
const qualified = (r: ResourceName) => (r.group ? `${r.plural}.${r.group}` : r.plural);
const kindQualified = (r: ResourceName) => (r.group ? `${r.kind}.${r.group}` : r.kind);
const details = (r: ResourceName, name: string) =>
  r.group ? { name, group: r.group, kind: r.plural } : { name, kind: r.plural };

export const notFound = (r: ResourceName, name: string) =>
  new KubeError(404, 'NotFound', `${qualified(r)} "${name}" not found`, details(r, name));

export const namespaceNotFound = (ns: string) =>
  new KubeError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });

export const alreadyExists = (r: ResourceName, name: string) =>
  new KubeError(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, details(r, name));

export const conflict = (r: ResourceName, name: string) =>
  new KubeError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified(r)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(r, name),
  );

export const forbiddenTerminating = (r: ResourceName, name: string, ns: string) =>
  new KubeError(
    403,
    'Forbidden',
    `${qualified(r)} "${name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
    details(r, name),
  );

export const badRequest = (message: string) => new KubeError(400, 'BadRequest', message);

export const methodNotAllowed = () =>
  new KubeError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');

export const unauthorized = () => new KubeError(401, 'Unauthorized', 'Unauthorized');

export const notFoundPath = () =>
  new KubeError(404, 'NotFound', 'the server could not find the requested resource', {});

export function unsupportedMediaType(accepted: string[]) {
  return new KubeError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
  );
}

/** 422 Invalid: the message lists every cause as `<field>: <detail>`, like the apiserver's field.ErrorList. */
export function invalid(r: ResourceName, name: string, causes: StatusCause[]) {
  const list = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const summary = list.length === 1 ? list[0] : `[${list.join(', ')}]`;
  return new KubeError(422, 'Invalid', `${kindQualified(r)} "${name}" is invalid: ${summary}`, {
    ...(r.group ? { name, group: r.group, kind: r.kind } : { name, kind: r.kind }),
    causes,
  });
}
