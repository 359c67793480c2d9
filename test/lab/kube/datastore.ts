// The lab control plane's datastore as k3s's etcd snapshot/restore sees it. Real k3s snapshots its
// embedded etcd (k3s-io/k3s pkg/etcd/snapshot.go: snapshotv3.Save) and restores with
// `k3s server --cluster-reset --cluster-reset-restore-path=<file>` (docs.k3s.io/cli/etcd-snapshot:
// the old data dir moves aside, etcd starts from the snapshot as a one-member cluster). The lab's
// datastore is kine on SQLite, so a snapshot is a copy of kine's database taken while kine is paused
// and a restore is starting kine from that copy.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The SQLite files kine writes (`?_journal=WAL`); the -shm index is rebuilt from the WAL on open. */
const DB_FILES = ['state.db', 'state.db-wal'];

/**
 * A consistent copy of kine's database as one tar. kine is SIGSTOPped for the copy: no write can land
 * between reading the main file and the WAL. A stop in the middle of a WAL append leaves a frame without
 * a valid commit checksum, which SQLite ignores on open; a stop mid-checkpoint leaves main-file pages
 * equal to WAL frames, which replaying the WAL rewrites identically. So the copy is a committed state.
 */
export async function snapshotDatastore(dir: string, kinePid: number): Promise<Buffer> {
  const tmp = mkdtempSync(join(tmpdir(), 'lab-snap-'));
  try {
    process.kill(kinePid, 'SIGSTOP');
    try {
      for (const f of DB_FILES) {
        if (existsSync(join(dir, f))) writeFileSync(join(tmp, f), readFileSync(join(dir, f)));
      }
    } finally {
      process.kill(kinePid, 'SIGCONT');
    }
    const present = DB_FILES.filter((f) => existsSync(join(tmp, f)));
    if (!present.includes('state.db')) throw new Error(`kine database ${join(dir, 'state.db')} not found`);
    await run('tar', ['-czf', join(tmp, 'snap.tgz'), '-C', tmp, ...present]);
    return readFileSync(join(tmp, 'snap.tgz'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Replaces kine's database with a snapshot's (kine must be stopped); the old files move to db-old/ as k3s's do. */
export async function restoreDatastore(dir: string, snapshot: Buffer): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'lab-restore-'));
  try {
    writeFileSync(join(tmp, 'snap.tgz'), snapshot);
    const { stdout } = await run('tar', ['-tzf', join(tmp, 'snap.tgz')]);
    const names = stdout.split('\n').filter(Boolean);
    if (!names.includes('state.db') || names.some((n) => !DB_FILES.includes(n)))
      throw new Error(`not a lab etcd snapshot (holds ${names.join(', ') || 'nothing'})`);
    await run('tar', ['-xzf', join(tmp, 'snap.tgz'), '-C', tmp]);
    const old = join(dir, `db-old-${Date.now()}`);
    await run('mkdir', ['-p', old]);
    for (const f of [...DB_FILES, 'state.db-shm']) {
      if (existsSync(join(dir, f))) await run('mv', [join(dir, f), join(old, f)]);
    }
    for (const f of names) writeFileSync(join(dir, f), readFileSync(join(tmp, f)));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The "disk is gone" fault: kine's files are deleted (kine must be stopped). */
export function destroyDatastore(dir: string): void {
  for (const f of [...DB_FILES, 'state.db-shm']) rmSync(join(dir, f), { force: true });
}
