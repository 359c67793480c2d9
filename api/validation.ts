// Request validation: Fastify's own Ajv compiler, with one difference — request bodies are never
// type-coerced. Coercion suits query strings and path params (all text on the wire), but on a JSON
// body it turns wrong types into accepted values ({"dryRun": null} became false, {"backup": 123}
// became "123") and starts workflows from requests the contract refuses.
import { AjvCompiler } from '@fastify/ajv-compiler';
import type { FastifyServerOptions } from 'fastify';

type ValidatorFactory = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>;
type Options = { customOptions?: Record<string, unknown> } & Record<string, unknown>;
type Compile = (route: { httpPart?: string }) => unknown;

export function bodiesWithoutCoercion(): ValidatorFactory {
  const pool = AjvCompiler() as unknown as (externalSchemas: unknown, options: Options) => Compile;
  const factory = (externalSchemas: unknown, options: Options = {}): Compile => {
    const coercing = pool(externalSchemas, options);
    const strict = pool(externalSchemas, {
      ...options,
      customOptions: { ...options.customOptions, coerceTypes: false },
    });
    return (route) => (route.httpPart === 'body' ? strict(route) : coercing(route));
  };
  return factory as unknown as ValidatorFactory;
}
