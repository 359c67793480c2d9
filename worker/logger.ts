// One logger factory for the worker, the API and scripts. Secret-like fields are redacted wherever
// they appear in a logged object (DESIGN rule 1; the payload codec is the second line of defence).
import { pino, type Logger as PinoLogger, type LoggerOptions } from 'pino';

export const REDACT_PATHS = [
  'password',
  'token',
  'secret',
  'secrets',
  'value',
  'values',
  'privateKey',
  'unsealKeys',
  'keys',
  'rootToken',
  'authorization',
  '*.password',
  '*.token',
  '*.secret',
  '*.value',
  '*.privateKey',
  '*.unsealKeys',
  '*.keys',
  '*.rootToken',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
];

export function createLogger(name: string, opts: LoggerOptions = {}, destination?: NodeJS.WritableStream): PinoLogger {
  const base: LoggerOptions = {
    name,
    level: process.env.LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...opts,
  };
  return destination ? pino(base, destination as never) : pino(base);
}
