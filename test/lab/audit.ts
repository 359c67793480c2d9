// Lab side of the suite-wide leak audit (test/leak-audit.ts): every secret value the lab mints or
// stores (OpenBAO unseal keys and root tokens, every 1Password field value) is appended to the
// run's audit file, so the teardown can search all histories, logs and responses for it.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

const MIN_LENGTH = 12; // shorter values (ports, "pedro") would match innocent text

export function recordSecrets(values: Iterable<string>): void {
  const dir = process.env.PEDRO_OPS_AUDIT_DIR;
  if (!dir) return;
  const lines = [...values].filter((v) => typeof v === 'string' && v.length >= MIN_LENGTH && !v.includes('\n'));
  if (lines.length > 0) appendFileSync(join(dir, 'secrets.txt'), `${lines.join('\n')}\n`, { mode: 0o600 });
}
