// Suite-wide leak audit (DESIGN rule 1, security issue): after all tests, every workflow history on
// the run's Temporal server must hold only encrypted payloads, and no secret value the lab ever
// minted or stored may appear in a history (raw or decoded), a worker log line or an API response.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Connection, Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { fixtureSecretValues } from './lab/onepassword/fixture.js';
import { FIXTURE_PATH } from './lab/index.js';
import { TEST_CODEC_KEY_ID, testCodec, testDataConverter } from './helpers/temporal.js';
import { dataConverterFor, type AesGcmCodec } from '../worker/codec.js';
import { RESPONSES_FILE } from './helpers/app.js';

/** Workflow ids the audit self-test (test/unit/leak-audit.test.ts) plants. */
export const SELF_TEST_PREFIX = 'leak-audit-selftest-';

export interface AuditReport {
  workflows: number;
  payloads: number;
  otherKeys: number;
  unencrypted: string[];
  leaks: string[];
  secretsChecked: number;
  logBytes: number;
  responseBytes: number;
}

function walkPayloads(
  node: unknown,
  out: { payload: Payload; path: string }[],
  path: string,
  skip: (p: string) => boolean,
): void {
  if (!node || typeof node !== 'object' || skip(path)) return;
  const o = node as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'data' in o && !Array.isArray(o)) {
    out.push({ payload: o, path });
    return;
  }
  for (const [k, v] of Object.entries(o)) {
    if (v instanceof Uint8Array) continue;
    walkPayloads(v, out, `${path}.${k}`, skip);
  }
}

/** Every string and byte field of a proto object as text (Buffer.toJSON would hide bytes from JSON.stringify). */
function allText(node: unknown, out: string[] = []): string {
  if (typeof node === 'string') out.push(node);
  else if (node instanceof Uint8Array) out.push(Buffer.from(node).toString('utf8'));
  else if (node && typeof node === 'object') for (const v of Object.values(node)) allText(v, out);
  return out.join('\n');
}

const text = (u?: Uint8Array | null) => (u ? Buffer.from(u).toString('utf8') : '');

export async function auditSuite(
  address: string,
  dir: string,
  opts: {
    query?: string;
    extraSecrets?: string[];
    /** The key the run's payloads must be encrypted with (default: the test suite's key). */
    codec?: { keyId: string; codec: AesGcmCodec };
  } = {},
): Promise<AuditReport> {
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
  const secrets = new Set([
    ...fixtureSecretValues(FIXTURE_PATH),
    ...read('secrets.txt').split('\n').filter(Boolean),
    ...(opts.extraSecrets ?? []),
  ]);
  const keyId = opts.codec?.keyId ?? TEST_CODEC_KEY_ID;
  const codec = opts.codec?.codec ?? testCodec;
  const logs = read('logs.txt');
  const responses = read(RESPONSES_FILE);
  const connection = await Connection.connect({ address });
  const client = new Client({
    connection,
    dataConverter: opts.codec ? dataConverterFor(opts.codec.codec) : testDataConverter,
  });
  const report: AuditReport = {
    workflows: 0,
    payloads: 0,
    otherKeys: 0,
    unencrypted: [],
    leaks: [],
    secretsChecked: secrets.size,
    logBytes: logs.length,
    responseBytes: responses.length,
  };
  const scan = (where: string, haystack: string) => {
    for (const s of secrets)
      if (haystack.includes(s)) report.leaks.push(`${where}: contains a secret value (${s.slice(0, 6)}…)`);
  };
  try {
    for await (const wf of client.workflow.list(opts.query ? { query: opts.query } : undefined)) {
      // The audit's own self-test plants a plaintext run on purpose (and deletes it; deletion is async).
      if (!opts.query && wf.workflowId.startsWith(SELF_TEST_PREFIX)) continue;
      report.workflows++;
      const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      const payloads: { payload: Payload; path: string }[] = [];
      // Search attributes are indexed by the server and patch markers (patched()) carry only the patch
      // id written by the SDK core: neither goes through the codec. The raw-text scan below still
      // searches both for secrets.
      walkPayloads(history, payloads, '', (p) => /(searchAttributes|patch-data)$/i.test(p));
      const where = `${wf.type} ${wf.workflowId}`;
      scan(`${where} raw history`, allText(history));
      for (const { payload: p, path } of payloads) {
        report.payloads++;
        const enc = text(p.metadata?.encoding);
        if (enc !== 'binary/encrypted') {
          report.unencrypted.push(`${where}: payload at ${path} with encoding ${enc || '(none)'}`);
          continue;
        }
        if (text(p.metadata?.['encryption-key-id']) !== keyId) {
          report.otherKeys++; // encrypted by a codec test with its own key: still encrypted, not decodable here
          continue;
        }
        const [decoded] = await codec.decode([p]);
        scan(`${where} decoded payload`, text(decoded.data));
      }
    }
  } finally {
    await connection.close();
  }
  scan('worker logs', logs);
  scan('API responses', responses);
  return report;
}
