// Small helpers every SSH activity shares: one session per call, disposed on every path, and
// heartbeats that say which node and which command the activity is on.
import type { ClusterSpec, NodeSpec } from '../../config/schema.js';
import { ErrorType, nonRetryable, retryable } from '../../workflows/failures.js';
import type { ActivityDeps } from '../deps.js';
import { keepAlive } from '../heartbeat.js';
import type { ExecResult, SshSession } from './client.js';

export function nodeOrFail(spec: ClusterSpec, name: string): NodeSpec {
  const node = spec.nodes.find((n) => n.name === name);
  if (!node) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no node "${name}"`);
  return node;
}

/**
 * One SSH session for `fn`, disposed on every path. While it is open the activity keeps beating (one
 * command, an apt install, can run for minutes) and a cancellation (worker shutdown, workflow cancel)
 * closes the session, so the running command's promise rejects and the attempt is handed back.
 */
export async function withSession<T>(
  deps: ActivityDeps,
  spec: ClusterSpec,
  node: NodeSpec,
  fn: (s: SshSession & { hostKey: string }) => Promise<T>,
  allowTofu = false,
): Promise<T> {
  let session: (SshSession & { hostKey: string }) | undefined;
  return keepAlive(
    async () => {
      session = await deps.ssh.connect(spec, node, { allowTofu });
      try {
        return await fn(session);
      } finally {
        session.dispose();
      }
    },
    () => session?.dispose(),
  );
}

/** Runs a command that must succeed; a non-zero exit is a transient failure unless `fatal` says otherwise. */
export async function must(
  s: SshSession,
  node: string,
  command: string,
  opts: { stdin?: string; what?: string } = {},
): Promise<ExecResult> {
  const r = await s.exec(command, { stdin: opts.stdin });
  if (r.code !== 0) {
    throw retryable(
      ErrorType.Transient,
      `${node}: ${opts.what ?? command.split('\n')[0].slice(0, 120)} exited ${r.code}: ${r.stderr.trim().slice(-300)}`,
    );
  }
  return r;
}
