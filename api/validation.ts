// Request validation: Fastify's own Ajv compiler, with one difference — request bodies are never
// type-coerced. Coercion suits query strings and path params (all text on the wire), but on a JSON
// body it turns wrong types into accepted values ({"dryRun": null} became false, {"backup": 123}
// became "123") and starts workflows from requests the contract refuses.
import { AjvCompiler } from '@fastify/ajv-compiler';
import type { FastifySchemaCompiler, FastifyServerOptions } from 'fastify';

type ValidatorFactory = NonNullable<NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']>;

export function bodiesWithoutCoercion(): ValidatorFactory {
  const pool = AjvCompiler();
  return (externalSchemas, options) => {
    const coercing = pool(externalSchemas, options) as FastifySchemaCompiler<unknown>;
    const strict = pool(externalSchemas, { ...options, customOptions: { ...options.customOptions, coerceTypes: false } }) as FastifySchemaCompiler<unknown>;
    return (route) => (route.httpPart === 'body' ? strict(route) : coercing(route));
  };
}
