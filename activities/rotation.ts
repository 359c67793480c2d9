// The activities of secret rotation (workflows/rotate-secrets.ts), registered with one spread in
// activities/index.ts. Each wraps one hop; values never cross an activity boundary.
import type { ActivityDeps } from './deps.js';
import { applyKubeSecret, type ApplySecretInput } from './kube/secrets.js';
import { restartConsumer, type RestartInput } from './kube/restart.js';
import { checkSecretDrift, type DriftInput } from './openbao/drift.js';
import { markRolledBack, syncOnePasswordToOpenBao, type MarkRolledBackInput, type SyncInput } from './openbao/sync.js';
import { generateIntoOnePassword, type GenerateInput } from './onepassword/generate.js';
import { runProbe, type ProbeInput } from './probes/index.js';

export function rotationActivities(deps: ActivityDeps) {
  return {
    rotationGenerate: (input: GenerateInput) => generateIntoOnePassword(deps, input),
    rotationSyncOpenBao: (input: SyncInput) => syncOnePasswordToOpenBao(deps, input),
    rotationApplySecret: (input: ApplySecretInput) => applyKubeSecret(deps, input),
    rotationRestartConsumer: (input: RestartInput) => restartConsumer(deps, input),
    rotationProbe: (input: ProbeInput) => runProbe(deps, input),
    rotationMarkRolledBack: (input: MarkRolledBackInput) => markRolledBack(deps, input),
    rotationDriftCheck: (input: DriftInput) => checkSecretDrift(deps, input),
  };
}
