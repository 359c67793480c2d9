// Runs the real `pedro-ops` CLI (the package's bin) as a child process against a test API.
import { spawn } from 'node:child_process';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], api: { url: string; token: string }): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['api/cli/pedro-ops.mjs', ...args, '--url', api.url, '--token', api.token], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
