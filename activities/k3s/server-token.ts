// The k3s server token kept off the node, in a 1Password item (k3s.tokenItem), the way bootstrapOpenBao
// keeps the unseal keys. k3s encrypts the bootstrap data in its datastore (CA keys, service-account
// keys) with the token, so an etcd snapshot restored with another token is unusable: "you must also
// back up the server token file at /var/lib/rancher/k3s/server/token. You must restore this file, or
// pass its value into the --token option, when restoring from backup" (docs.k3s.io/datastore/backup-restore).
// A node whose disk is gone takes its token with it; this copy is what a recovery onto a replacement
// machine writes back. The value moves only inside these activities (node <-> 1Password); workflows
// see the reference and an HMAC fingerprint.
import type { Item } from '@1password/sdk';
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import { clusterOrFail, type ActivityDeps } from '../deps.js';
import { vaultIdByName, type OnePasswordPort } from '../onepassword/client.js';
import { classifyOpError } from '../onepassword/read.js';
import { fingerprint, fingerprintKey } from '../openbao/fingerprint.js';
import { must, nodeOrFail, withSession } from '../ssh/session.js';
import { beat } from '../heartbeat.js';

export const SERVER_TOKEN_FILE = '/var/lib/rancher/k3s/server/token';
export const DEFAULT_TOKEN_ITEM = 'k3s-server-token';
const FIELD = 'token';

export const tokenItemTitle = (spec: ClusterSpec): string => spec.k3s.tokenItem ?? DEFAULT_TOKEN_ITEM;
/** The secret reference of the copy (a reference, never the value). */
export const tokenRef = (spec: ClusterSpec): string =>
  `op://${spec.onepassword.vault}/${tokenItemTitle(spec)}/${FIELD}`;

export interface ServerTokenCopy {
  ref: string;
  /** HMAC-SHA256 of the token (fingerprint.ts), equal across runs for an equal token. */
  fingerprint: string;
  /** created: the item was written now; unchanged: it already held this token; written: the node's file was restored from it. */
  action: 'created' | 'unchanged' | 'written';
}

async function op1p<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw classifyOpError(err, what);
  }
}

async function storedItem(op: OnePasswordPort, vaultId: string, title: string): Promise<Item | undefined> {
  const overview = (await op1p('list items', () => op.items.list(vaultId))).find((i) => i.title === title);
  return overview ? op1p(`read item ${title}`, () => op.items.get(vaultId, overview.id)) : undefined;
}

const valueOf = (item: Item | undefined) =>
  item?.fields.find((f) => f.id === FIELD || f.title === FIELD)?.value?.trim() || undefined;

/** The token held in 1Password, or undefined when there is no copy. */
async function readCopy(deps: ActivityDeps, spec: ClusterSpec): Promise<string | undefined> {
  const op = await deps.onepassword(spec);
  const vaultId = await vaultIdByName(op, spec.onepassword.vault);
  return valueOf(await storedItem(op, vaultId, tokenItemTitle(spec)));
}

const fp = (deps: ActivityDeps, token: string) => fingerprint(fingerprintKey(deps.dataDir), { [FIELD]: token });

async function readNodeToken(deps: ActivityDeps, spec: ClusterSpec, node: NodeSpec): Promise<string | undefined> {
  return withSession(deps, spec, node, async (s) => {
    const r = await s.exec(`cat ${SERVER_TOKEN_FILE} 2>/dev/null`);
    return r.code === 0 ? r.stdout.trim() || undefined : undefined;
  });
}

/**
 * Keeps the server's token in 1Password: read back and compared by fingerprint, created when absent.
 * An item holding another token is refused, not overwritten: it may be the only copy that opens an
 * older cluster's snapshots (as bootstrapOpenBao refuses a leftover unseal item).
 */
export async function keepServerTokenOffNode(
  deps: ActivityDeps,
  spec: ClusterSpec,
  server: NodeSpec,
): Promise<ServerTokenCopy> {
  const token = await readNodeToken(deps, spec, server);
  if (!token) throw retryable(ErrorType.NotReady, `no server token at ${SERVER_TOKEN_FILE} on ${server.name} yet`);
  const ref = tokenRef(spec);
  const title = tokenItemTitle(spec);
  beat({ node: server.name, step: `server token -> ${ref}` });
  const op = await deps.onepassword(spec);
  const vaultId = await vaultIdByName(op, spec.onepassword.vault);
  const item = await storedItem(op, vaultId, title);
  const stored = valueOf(item);
  if (stored === token) return { ref, fingerprint: fp(deps, token), action: 'unchanged' };
  if (item)
    throw nonRetryable(
      ErrorType.BadConfig,
      `1Password item ${ref} holds ${stored ? 'another k3s server token' : 'no token field'} than ${server.name}'s; ` +
        `move it aside (it may open an older cluster's snapshots) and retry`,
    );
  await op1p(`create item ${title}`, () =>
    op.items.create({
      category: 'Password' as never,
      vaultId,
      title,
      fields: [{ id: FIELD, title: FIELD, fieldType: 'Concealed', value: token } as never],
      sections: [],
      tags: ['k3s', spec.name],
    }),
  );
  // Read back: a write the SDK reported but that did not land must not pass for a kept copy.
  const back = valueOf(await storedItem(op, vaultId, title));
  if (back !== token) throw retryable(ErrorType.Transient, `1Password item ${ref} did not read back the token written`);
  return { ref, fingerprint: fp(deps, token), action: 'created' };
}

export function serverTokenActivities(deps: ActivityDeps) {
  return {
    /** Plan-time: is there a copy to restore from? (reference and fingerprint only) */
    async observeServerTokenCopy(input: { cluster: string }): Promise<{ ref: string; fingerprint?: string }> {
      const spec = clusterOrFail(deps, input.cluster);
      const token = await readCopy(deps, spec);
      return { ref: tokenRef(spec), fingerprint: token ? fp(deps, token) : undefined };
    },

    /**
     * Restores the server token file on `node` from 1Password before a cluster-reset (k3s reads it
     * from the data dir when no --token is given). A file already there with the same token is left;
     * one with another token is refused (the snapshot could not be decrypted with it).
     */
    async restoreServerToken(input: { cluster: string; node: string }): Promise<ServerTokenCopy> {
      const spec = clusterOrFail(deps, input.cluster);
      const node = nodeOrFail(spec, input.node);
      if (node.role !== 'server') throw nonRetryable(ErrorType.BadConfig, `${node.name} is not a server`);
      const ref = tokenRef(spec);
      const token = await readCopy(deps, spec);
      if (!token)
        throw nonRetryable(
          ErrorType.NotFound,
          `no k3s server token in 1Password (${ref}): the snapshot cannot be opened`,
        );
      const onNode = await readNodeToken(deps, spec, node);
      if (onNode === token) return { ref, fingerprint: fp(deps, token), action: 'unchanged' };
      if (onNode)
        throw nonRetryable(
          ErrorType.BadConfig,
          `${node.name} holds another server token than ${ref}; a cluster-reset with it could not decrypt the snapshot`,
        );
      await withSession(deps, spec, node, async (s) => {
        const dir = SERVER_TOKEN_FILE.replace(/\/[^/]+$/, '');
        await must(s, node.name, `mkdir -p ${dir} && chmod 700 ${dir}`, { what: 'create the server data dir' });
        await s.putContent(`${token}\n`, `${SERVER_TOKEN_FILE}.tmp`, 0o600);
        await must(s, node.name, `mv -f ${SERVER_TOKEN_FILE}.tmp ${SERVER_TOKEN_FILE}`, { what: 'write the token' });
      });
      return { ref, fingerprint: fp(deps, token), action: 'written' };
    },
  };
}
