// One real Temporal dev server for the whole test run (in-memory, headless, free port), from the
// project's own toolchain binary. Tests isolate themselves by task queue. At the end, the leak
// audit searches every history, worker log line and API response of the run for secret values.
// First of all, the system packages the lab needs (scripts/system-deps.sh): installed when the run is
// root on Debian, otherwise the run stops here, in seconds, naming the command that installs them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { freePort, startDevServer, type DevServer } from '../scripts/temporal-server.js';
import { labToolchainDir } from './lab/kube/control-plane.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
  }
}

let server: DevServer | undefined;

function systemDeps(): void {
  const script = fileURLToPath(new URL('../scripts/system-deps.sh', import.meta.url));
  const r = spawnSync('bash', [script], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  if (r.status === 0) {
    if (r.stderr) process.stderr.write(r.stderr);
    return;
  }
  // vitest prints a global-setup error once and runs no test file: one clear message, not 25 failures.
  throw new Error(
    `system packages the tests need are missing (scripts/system-deps.sh):\n${r.stderr ?? r.error?.message}`,
  );
}

export default async function setup(project: TestProject) {
  systemDeps();
  const auditDir = mkdtempSync(join(tmpdir(), 'pedro-ops-audit-'));
  process.env.PEDRO_OPS_AUDIT_DIR = auditDir; // inherited by the test workers forked after this
  // The lab's real control plane (kube-apiserver, controller-manager, scheduler, kine, kwok, CoreDNS):
  // built from the Go module proxy on first use (minutes), cached afterwards (milliseconds).
  const tc = Date.now();
  process.env.PEDRO_OPS_LAB_BIN = await labToolchainDir();
  process.stderr.write(`[global-setup] lab toolchain ${process.env.PEDRO_OPS_LAB_BIN} in ${Date.now() - tc} ms\n`);
  let address = process.env.PEDRO_OPS_TEST_TEMPORAL_ADDRESS;
  if (!address) {
    const started = Date.now();
    server = await startDevServer({ port: await freePort(), headless: true });
    process.stderr.write(
      `[global-setup] temporal dev server ${server.address} (pid ${server.pid}) ready in ${Date.now() - started} ms\n`,
    );
    address = server.address;
  }
  project.provide('temporalAddress', address);
  return async () => {
    try {
      // Only a full run audits: a single file's run says nothing about the suite (PEDRO_OPS_AUDIT=1 forces it).
      const full = project.vitest.state.getFiles().length >= 20 || process.env.PEDRO_OPS_AUDIT === '1';
      if (full) {
        const { auditSuite } = await import('./leak-audit.js');
        const r = await auditSuite(address, auditDir);
        process.stderr.write(
          `[leak-audit] ${r.workflows} workflow histories, ${r.payloads} payloads (${r.otherKeys} under other test keys), ${r.secretsChecked} secret values, ` +
            `${r.logBytes} B of worker logs, ${r.responseBytes} B of API responses: ${r.leaks.length} leaks, ${r.unencrypted.length} unencrypted payloads\n`,
        );
        const problems = [...new Set([...r.unencrypted, ...r.leaks])];
        if (problems.length > 0) {
          // vitest reports a teardown error but keeps exit code 0: set it, so the run fails.
          process.exitCode = 1;
          throw new Error(`leak audit failed:\n${problems.slice(0, 40).join('\n')}`);
        }
      }
    } finally {
      await server?.stop();
      rmSync(auditDir, { recursive: true, force: true });
    }
  };
}
