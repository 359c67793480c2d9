/**
 * Temporal's remote codec protocol, so Temporal Web (and `temporal --codec-endpoint`) can show
 * decoded payloads to an authorised operator: POST <endpoint>/decode and <endpoint>/encode with a
 * Payloads message in proto JSON (`{payloads: [{metadata: {k: base64}, data: base64}]}`).
 * Register with `app.register(codecRoutes, {...})`; the Web UI's "codec endpoint" is then
 * `https://<api>/codec`.
 *
 * The plugin is deliberately encapsulated (no fastify-plugin): its validator, CORS hook and error
 * handler apply to these routes only.
 */
import { STATUS_CODES } from 'node:http';
import { Ajv } from 'ajv';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Payload, PayloadCodec } from '@temporalio/common';
// Default import: the package is CommonJS and Node's ESM loader cannot see its named exports.
import proto from '@temporalio/proto';
import { PayloadCodecError } from '../../worker/codec.js';

export type CodecAction = 'decode' | 'encode';

export interface CodecRoutesOptions {
  codec: PayloadCodec;
  /** Exact origins (scheme://host[:port]) of Temporal Web UIs allowed to call from a browser. */
  allowedOrigins: string[];
  /** Runs before any work (even before the body is read); throw an error with `statusCode` to refuse. */
  authorize?: (req: FastifyRequest, action: CodecAction) => Promise<void> | void;
  /** If set, an X-Namespace header naming any other namespace is refused. */
  namespaces?: string[];
  /** Default 4 MiB: Temporal's 2 MB blob limit plus base64 overhead. */
  bodyLimit?: number;
  /** Default 1000 payloads per request. */
  maxPayloads?: number;
}

// Temporal Web sends Authorization-Extras (the OIDC id token) next to Authorization.
export const CORS_ALLOW_HEADERS = 'X-Namespace, Content-Type, Authorization, Authorization-Extras';
export const CORS_ALLOW_METHODS = 'POST, OPTIONS';

// Proto JSON bytes: standard or URL-safe alphabet, padding optional.
const B64_PATTERN = '^[A-Za-z0-9+/_-]*={0,2}$';

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
  externalPayloads?: { sizeBytes?: string | number }[];
}
interface PayloadsBody {
  payloads?: JsonPayload[];
}

class CodecHttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly index?: number,
  ) {
    super(message);
  }
}

function payloadSchema(maxItems: number) {
  const payload = {
    type: 'object',
    additionalProperties: false,
    properties: {
      metadata: {
        type: 'object',
        maxProperties: 64,
        propertyNames: { maxLength: 256 },
        additionalProperties: { type: 'string', pattern: B64_PATTERN },
      },
      data: { type: 'string', pattern: B64_PATTERN },
      externalPayloads: {
        type: 'array',
        maxItems: 64,
        items: {
          type: 'object',
          additionalProperties: false,
          properties: {
            sizeBytes: {
              anyOf: [
                { type: 'string', pattern: '^[0-9]{1,19}$' },
                { type: 'integer', minimum: 0 },
              ],
            },
          },
        },
      },
    },
  };
  return {
    type: 'object',
    additionalProperties: false,
    properties: { payloads: { type: 'array', maxItems, items: payload } },
  };
}

const responseSchema = {
  type: 'object',
  properties: {
    payloads: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          metadata: { type: 'object', additionalProperties: { type: 'string' } },
          data: { type: 'string' },
          externalPayloads: { type: 'array', items: { type: 'object', properties: { sizeBytes: { type: 'string' } } } },
        },
      },
    },
  },
};

function fromBase64(b64: string, where: string, index: number): Buffer {
  // The schema pins the alphabet; a length of 4n+1 is the one shape no base64 encoder produces.
  if (b64.replace(/=+$/, '').length % 4 === 1)
    throw new CodecHttpError(400, `payloads[${index}].${where} is not valid base64`, index);
  return Buffer.from(b64, 'base64');
}

function fromJson(p: JsonPayload, index: number): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = fromBase64(v, `metadata.${k}`, index);
  const out: Payload = { metadata, data: fromBase64(p.data ?? '', 'data', index) };
  if (p.externalPayloads?.length) {
    out.externalPayloads = p.externalPayloads.map((e) =>
      proto.temporal.api.common.v1.Payload.ExternalPayloadDetails.fromObject({ sizeBytes: e.sizeBytes ?? 0 }),
    );
  }
  return out;
}

function toJson(p: Payload): JsonPayload {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = Buffer.from(v).toString('base64');
  const out: JsonPayload = { metadata, data: Buffer.from(p.data ?? new Uint8Array(0)).toString('base64') };
  if (p.externalPayloads?.length) {
    out.externalPayloads = p.externalPayloads.map((e) => ({ sizeBytes: String(e.sizeBytes ?? 0) }));
  }
  return out;
}

/** One payload at a time, so a failure can name its index; a PayloadCodecError's message is safe to show. */
async function runCodec(codec: PayloadCodec, action: CodecAction, payloads: Payload[]): Promise<Payload[]> {
  const results = await Promise.allSettled(payloads.map((p) => codec[action]([p])));
  return results.map((r, index) => {
    if (r.status === 'fulfilled' && r.value.length === 1) return r.value[0];
    const reason = r.status === 'rejected' && r.reason instanceof PayloadCodecError ? `: ${r.reason.message}` : '';
    throw new CodecHttpError(400, `payloads[${index}] could not be ${action}d${reason}`, index);
  });
}

export const codecRoutes: FastifyPluginAsync<CodecRoutesOptions> = async (app: FastifyInstance, opts) => {
  const { codec, authorize } = opts;
  const bodyLimit = opts.bodyLimit ?? 4 * 1024 * 1024;
  const allowed = new Set(
    opts.allowedOrigins.map((o) => {
      const origin = new URL(o).origin;
      // Credentials are allowed, so a wildcard or a path-carrying "origin" would be a misconfiguration.
      if (origin === 'null' || origin !== o.replace(/\/$/, '')) throw new Error(`codecRoutes: "${o}" is not an origin`);
      return origin;
    }),
  );
  const namespaces = opts.namespaces ? new Set(opts.namespaces) : undefined;

  // Fastify's default Ajv strips unknown properties and coerces types; the codec contract rejects them.
  const ajv = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false });
  app.setValidatorCompiler(({ schema }) => ajv.compile(schema));

  app.addHook('onRequest', async (req, reply) => {
    // Responses differ by Origin and carry decrypted data: never let a cache share them.
    reply.header('Vary', 'Origin').header('Cache-Control', 'no-store');
    const origin = req.headers.origin;
    if (origin === undefined) return; // CLI and server-side callers send no Origin.
    if (!allowed.has(origin)) throw new CodecHttpError(403, 'origin not allowed to use the codec endpoint');
    reply.header('Access-Control-Allow-Origin', origin).header('Access-Control-Allow-Credentials', 'true');
  });

  // Per-route onRequest: after the CORS hook, before the body is read - refusals cost nothing.
  const gate = (action: CodecAction) => async (req: FastifyRequest) => {
    const ns = req.headers['x-namespace'];
    if (ns !== undefined && (typeof ns !== 'string' || ns.length === 0 || ns.length > 255)) {
      throw new CodecHttpError(400, 'X-Namespace header must be a single namespace name');
    }
    if (namespaces && typeof ns === 'string' && !namespaces.has(ns)) {
      throw new CodecHttpError(400, `this codec endpoint does not serve namespace "${ns}"`);
    }
    if (authorize) await authorize(req, action);
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; index?: number }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      req.log.error({ err }, 'codec request failed');
      return reply
        .code(status)
        .send({ statusCode: status, error: STATUS_CODES[status], message: 'codec request failed' });
    }
    return reply.code(status).send({
      statusCode: status,
      error: STATUS_CODES[status],
      message: err.message,
      ...(err.code ? { code: err.code } : {}),
      ...(err.index !== undefined ? { index: err.index } : {}),
    });
  });

  for (const action of ['decode', 'encode'] as const) {
    const url = `/codec/${action}`;
    app.options(url, { schema: { hide: true } }, async (_req, reply: FastifyReply) => {
      // Reached only for allowed or absent origins (the hook refused the rest).
      reply
        .header('Access-Control-Allow-Methods', CORS_ALLOW_METHODS)
        .header('Access-Control-Allow-Headers', CORS_ALLOW_HEADERS)
        .header('Access-Control-Max-Age', '600')
        .code(204)
        .send();
    });
    app.post<{ Body: PayloadsBody }>(
      url,
      {
        bodyLimit,
        onRequest: gate(action),
        schema: {
          summary: `Temporal remote codec: ${action} payloads (proto JSON) for Temporal Web and the CLI`,
          tags: ['codec'],
          headers: { type: 'object', properties: { 'x-namespace': { type: 'string', maxLength: 255 } } },
          body: payloadSchema(opts.maxPayloads ?? 1000),
          response: { 200: responseSchema },
        },
      },
      async (req) => {
        const input = (req.body.payloads ?? []).map(fromJson);
        const output = await runCodec(codec, action, input);
        req.log.info({ namespace: req.headers['x-namespace'], action, count: output.length }, 'codec request');
        return { payloads: output.map(toJson) };
      },
    );
  }
};

export default codecRoutes;
