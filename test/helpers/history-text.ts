// A workflow history as text, for leak checks: every string in it (payload bytes decoded as UTF-8)
// plus every payload decoded with the suite's codec (what an operator with the codec endpoint sees).
import type { Client } from '@temporalio/client';
import { testCodec } from './temporal.js';

/** Every payload of the history decoded with the suite codec, as text (what an operator with the codec sees). */
export async function decodedPayloads(node: unknown, out: string[] = []): Promise<string[]> {
  if (!node || typeof node !== 'object' || node instanceof Uint8Array) return out;
  const o = node as { metadata?: Record<string, Uint8Array>; data?: Uint8Array };
  if (
    o.metadata &&
    o.data instanceof Uint8Array &&
    Buffer.from(o.metadata.encoding ?? []).toString() === 'binary/encrypted'
  ) {
    const [p] = await testCodec.decode([o]);
    out.push(Buffer.from(p.data ?? []).toString('utf8'));
    return out;
  }
  for (const v of Object.values(node)) await decodedPayloads(v, out);
  return out;
}

/** Every string in the history, payload bytes decoded as UTF-8 (bytes may arrive as Uint8Array or base64 text). */
export function rawStrings(node: unknown, key = '', out: string[] = []): string[] {
  if (node instanceof Uint8Array) out.push(Buffer.from(node).toString('utf8'));
  else if (typeof node === 'string') {
    out.push(node);
    if (key === 'data') out.push(Buffer.from(node, 'base64').toString('utf8'));
  } else if (Array.isArray(node)) node.forEach((x) => rawStrings(x, key, out));
  else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) rawStrings(v, k, out);
  return out;
}

/** The histories of these workflows (latest runs) as one text. */
export async function historiesText(client: Client, workflowIds: string[]): Promise<string> {
  const parts: string[] = [];
  for (const id of workflowIds) {
    const history = await client.workflow.getHandle(id).fetchHistory();
    parts.push(...rawStrings(history), ...(await decodedPayloads(history)));
  }
  return parts.join('\n');
}
