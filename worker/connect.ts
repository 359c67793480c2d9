// Connections to Temporal with retries: a worker or API started before the server (or during a
// server restart) logs one clear line per attempt and keeps trying instead of crashing.
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeConnection } from '@temporalio/worker';
import { Client, Connection, type DataConverter } from '@temporalio/client';
import type { TemporalSettings } from './settings.js';
import type { Logger } from '../activities/deps.js';

export interface RetryOptions {
  attempts?: number;
  delayMs?: number;
  signal?: AbortSignal;
}

async function withRetry<T>(
  what: string,
  address: string,
  log: Logger,
  fn: () => Promise<T>,
  opts: RetryOptions,
): Promise<T> {
  const attempts = opts.attempts ?? Infinity;
  let delay = opts.delayMs ?? 500;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts || opts.signal?.aborted) throw err;
      log.warn(
        { attempt: i, address, err: (err as Error).message },
        `${what}: Temporal at ${address} unreachable, retrying in ${delay} ms`,
      );
      await sleep(delay, undefined, { signal: opts.signal });
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

export function connectNative(
  settings: TemporalSettings,
  log: Logger,
  opts: RetryOptions = {},
): Promise<NativeConnection> {
  return withRetry(
    'worker',
    settings.address,
    log,
    () => NativeConnection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey }),
    opts,
  );
}

export async function connectClient(
  settings: TemporalSettings,
  log: Logger,
  dataConverter?: DataConverter,
  opts: RetryOptions = {},
): Promise<Client> {
  const connection = await withRetry(
    'client',
    settings.address,
    log,
    () => Connection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey }),
    opts,
  );
  return new Client({ connection, namespace: settings.namespace, dataConverter });
}
