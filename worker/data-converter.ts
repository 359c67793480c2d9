// The data converter every Temporal client and worker in this service uses: AES-256-GCM over every
// payload (DESIGN rule 1, second line of defence). Keys: worker/codec-keys.ts.
import type { DataConverter } from '@temporalio/common';
import type { Logger } from '../activities/deps.js';
import { createCodec, dataConverterFor, type AesGcmCodec } from './codec.js';
import { loadCodecKeys } from './codec-keys.js';
import { dataDir, isDevMode } from './settings.js';

export interface LoadedDataConverter {
  codec: AesGcmCodec;
  dataConverter: DataConverter;
  source: string;
}

export async function loadDataConverter(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedDataConverter> {
  const loaded = await loadCodecKeys({
    env,
    dataDir: dataDir(env),
    devMode: isDevMode(env),
    log: { warn: (m) => log.warn(m), info: (m) => log.info(m) },
  });
  const codec = createCodec(loaded);
  log.info({ source: loaded.source, activeKeyId: loaded.activeId, keys: undefined }, 'payload codec ready');
  return { codec, dataConverter: dataConverterFor(codec), source: loaded.source };
}
