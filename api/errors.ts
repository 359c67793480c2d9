// The API's error shape: { error, message, ... } with a status code. Validation errors name the
// exact field path (DESIGN rule 7).
import type { FastifyError, FastifyInstance, RouteOptions } from 'fastify';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly error: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const notFound = (message: string, extra?: Record<string, unknown>) =>
  new HttpError(404, 'NotFound', message, extra);
export const conflict = (message: string, extra?: Record<string, unknown>) =>
  new HttpError(409, 'Conflict', message, extra);
export const badRequest = (message: string, extra?: Record<string, unknown>) =>
  new HttpError(400, 'BadRequest', message, extra);

/** "body.entries[0]" from Fastify/Ajv's instancePath "/entries/0" and the validation context. */
function fieldPath(context: string | undefined, instancePath: string, missing?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`));
  if (missing) parts.push(`.${missing}`);
  return `${context ?? 'body'}${parts.join('')}`;
}

export const ErrorBody = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    field: { type: 'string' },
    workflowId: { type: 'string' },
    runId: { type: 'string' },
  },
  required: ['error', 'message'],
  additionalProperties: true,
} as const;

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: `field` names the exact path (e.g. body.entries[0])',
  401: 'Missing, unknown or repeated bearer token',
  403: "The token's role is too low for this route",
  404: 'Unknown cluster, run, schedule or route',
  413: 'Body larger than the limit',
  415: 'Content type is not application/json',
  429: 'Rate limit for this identity exceeded',
  500: 'Internal error (details only in the server log)',
};

/** Adds ErrorBody responses for `codes` to a route's schema where the route module did not document them. */
export function documentErrors(route: RouteOptions, codes: number[]): void {
  if (route.schema?.hide) return;
  // Copies: route modules share schema objects between routes, and one route's additions must not leak.
  const response: Record<string, unknown> = { ...((route.schema?.response as object | undefined) ?? {}) };
  route.schema = { ...route.schema, response };
  for (const code of codes) {
    if (!(code in response)) response[code] = { ...ErrorBody, description: ERROR_DESCRIPTIONS[code] ?? 'Error' };
  }
}

export function installErrorHandler(app: FastifyInstance): void {
  // Every route documents the errors any route can give (the rest come from auth and the rate limiter).
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    const carriesBody = methods.some((m) => ['POST', 'PUT', 'PATCH'].includes(m));
    const validates =
      Boolean(route.schema?.params || route.schema?.querystring || route.schema?.body || route.schema?.headers) ||
      carriesBody;
    documentErrors(route, [
      ...(validates ? [400] : []),
      ...(route.url.includes(':') ? [404] : []),
      ...(carriesBody ? [413, 415] : []),
      500,
    ]);
  });
  app.setErrorHandler((err: FastifyError | HttpError, req, reply) => {
    if (err instanceof HttpError) {
      return reply.status(err.statusCode).send({ error: err.error, message: err.message, ...err.extra });
    }
    const fe = err;
    if (fe.validation && fe.validation.length > 0) {
      const v = fe.validation[0];
      const missing =
        v.keyword === 'required' ? String((v.params as { missingProperty?: string }).missingProperty) : undefined;
      const extraProp =
        v.keyword === 'additionalProperties'
          ? String((v.params as { additionalProperty?: string }).additionalProperty)
          : undefined;
      const field = fieldPath(fe.validationContext, v.instancePath, missing ?? extraProp);
      const reason = missing ? 'is required' : extraProp ? 'is not allowed' : (v.message ?? 'is invalid');
      return reply.status(400).send({ error: 'BadRequest', message: `${field} ${reason}`, field, reason });
    }
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 600 ? fe.statusCode : 500;
    if (status >= 500) req.log.error({ err: fe.message }, 'request failed');
    return reply.status(status).send({
      error: status >= 500 ? 'InternalError' : (fe.code ?? 'Error'),
      message: status >= 500 ? 'internal error' : fe.message,
    });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({ error: 'NotFound', message: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );
}
