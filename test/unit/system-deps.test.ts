// scripts/system-deps.sh with stubbed dpkg-query / apt-get / id first on PATH: nothing missing exits
// 0 at once; a missing package without root exits 1 within seconds naming the install command (and
// installs nothing); as root it runs apt-get update + install --no-install-recommends for exactly the
// missing ones and checks again. Nothing on this machine is installed or removed.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const SCRIPT = join(import.meta.dirname, '../../scripts/system-deps.sh');
const FAKE = 'pedro-ops-no-such-package';
const stubs = mkdtempSync(join(tmpdir(), 'system-deps-stubs-'));
afterAll(() => rmSync(stubs, { recursive: true, force: true }));

function stub(name: string, body: string) {
  writeFileSync(join(stubs, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(stubs, name), 0o755);
}
// dpkg-query -W -f=... <pkg>: installed unless the package is listed in $STUB_MISSING and not yet
// "installed" by the apt-get stub (which records its calls).
stub(
  'dpkg-query',
  `for a; do pkg="$a"; done
if printf '%s\\n' $STUB_MISSING | grep -qx "$pkg" && ! grep -qx "$pkg" "$STUB_DIR/installed" 2>/dev/null; then
  echo "dpkg-query: no packages found matching $pkg" >&2; exit 1
fi
printf 'install ok installed'`,
);
stub(
  'apt-get',
  `echo "apt-get $*" >>"$STUB_DIR/apt.log"
if [ "$1" = install ] && [ -z "$STUB_APT_FAILS" ]; then for a; do case "$a" in -*|install) ;; *) echo "$a" >>"$STUB_DIR/installed" ;; esac; done; fi
exit 0`,
);
stub('id', 'echo "$STUB_UID"');

function run(opts: { missing?: string[]; uid: number; args?: string[]; env?: Record<string, string> }) {
  rmSync(join(stubs, 'apt.log'), { force: true });
  rmSync(join(stubs, 'installed'), { force: true });
  const t0 = Date.now();
  const r = spawnSync('bash', [SCRIPT, ...(opts.args ?? [])], {
    encoding: 'utf8',
    env: {
      PATH: `${stubs}:/usr/bin:/bin`,
      STUB_DIR: stubs,
      STUB_MISSING: (opts.missing ?? []).join(' '),
      STUB_UID: String(opts.uid),
      ...opts.env,
    },
  });
  const apt = existsSync(join(stubs, 'apt.log')) ? readFileSync(join(stubs, 'apt.log'), 'utf8') : '';
  return { code: r.status, stderr: r.stderr, stdout: r.stdout, ms: Date.now() - t0, apt };
}

describe('scripts/system-deps.sh', () => {
  it('everything installed: exit 0, no apt-get', () => {
    const r = run({ uid: 1000 });
    expect(r.code).toBe(0);
    expect(r.apt).toBe('');
    expect(r.ms).toBeLessThan(10_000);
  });

  it('a missing package without root: exit 1 within seconds, the one install command, nothing installed', () => {
    const r = run({ missing: ['jq', FAKE], uid: 1000, args: [FAKE] });
    expect(r.code).toBe(1);
    expect(r.ms).toBeLessThan(10_000);
    expect(r.stderr).toContain(`missing system packages: jq ${FAKE}`);
    expect(r.stderr).toContain(`sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends jq ${FAKE}'`);
    expect(r.apt).toBe('');
  });

  it('as root on Debian: apt-get update, then install --no-install-recommends of exactly the missing ones', () => {
    const r = run({ missing: ['openssh-server', FAKE], uid: 0, args: [FAKE] });
    expect(r.code, r.stderr).toBe(0);
    expect(r.apt.trim().split('\n')).toEqual([
      'apt-get update -qq',
      `apt-get install -y -qq --no-install-recommends openssh-server ${FAKE}`,
    ]);
    expect(r.stdout).toBe(''); // apt's chatter goes to stderr: a caller's stdout stays clean
  });

  it('as root, an install that leaves a package missing fails naming it', () => {
    const r = run({ missing: [FAKE], uid: 0, args: [FAKE], env: { STUB_APT_FAILS: '1' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`still missing after apt-get install: ${FAKE}`);
  });

  it('PEDRO_OPS_SYSTEM_DEPS_INSTALL=never only checks, even as root', () => {
    const r = run({ missing: [FAKE], uid: 0, args: [FAKE], env: { PEDRO_OPS_SYSTEM_DEPS_INSTALL: 'never' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`apt-get update && apt-get install -y --no-install-recommends ${FAKE}`);
    expect(r.apt).toBe('');
  });

  it("this machine's real dpkg-query: the listed packages are there, a fake one is reported missing", () => {
    const ok = spawnSync('bash', [SCRIPT], {
      encoding: 'utf8',
      env: { ...process.env, PEDRO_OPS_SYSTEM_DEPS_INSTALL: 'never' },
    });
    expect(ok.status, ok.stderr).toBe(0);
    const t0 = Date.now();
    const r = spawnSync('bash', [SCRIPT, FAKE], {
      encoding: 'utf8',
      env: { ...process.env, PEDRO_OPS_SYSTEM_DEPS_INSTALL: 'never' },
    });
    expect(r.status).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toContain(`--no-install-recommends ${FAKE}`);
  });
});
