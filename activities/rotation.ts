// The activities of secret rotation (workflows/rotate-secrets.ts), registered with one spread in
// activities/index.ts. Each wraps one hop; values never cross an activity boundary.
import type { ActivityDeps } from './deps.js';
import { applyKubeSecret, type ApplySecretInput } from './kube/secrets.js';
import { restartConsumer, type RestartInput } from './kube/restart.js';
import { checkSecretDrift, type DriftInput } from './openbao/drift.js';
import {
  markRolledBack,
  restoreRolledBack,
  syncOnePasswordToOpenBao,
  type MarkRolledBackInput,
  type RestoreInput,
  type SyncInput,
} from './openbao/sync.js';
import { generateIntoOnePassword, type GenerateInput } from './onepassword/generate.js';
import { runProbe, type ProbeInput } from './probes/index.js';
import { findMissingItems, type MissingItems } from './onepassword/read.js';
import { clusterOrFail } from './deps.js';
import { selectEntries } from './openbao/sync.js';
import { preflightOpenBaoPath } from './openbao/preflight.js';

export function rotationActivities(deps: ActivityDeps) {
  return {
    /**
     * Before any write: the path to OpenBAO answers (a generate must not put a new value into 1Password
     * that OpenBAO cannot take), and every referenced 1Password item of every selected entry exists (no
     * values read). A broken path throws its typed finding (openbao/preflight.ts).
     */
    async rotationPreflight(input: { cluster: string; entryIds: string[] }): Promise<MissingItems> {
      const spec = clusterOrFail(deps, input.cluster);
      const entries = selectEntries(spec, input.entryIds);
      await preflightOpenBaoPath(deps, spec);
      return findMissingItems(
        await deps.onepassword(spec),
        entries.map((e) => ({ id: e.id, refs: Object.values(e.fields) })),
      );
    },
    rotationGenerate: (input: GenerateInput) => generateIntoOnePassword(deps, input),
    rotationSyncOpenBao: (input: SyncInput) => syncOnePasswordToOpenBao(deps, input),
    rotationApplySecret: (input: ApplySecretInput) => applyKubeSecret(deps, input),
    rotationRestartConsumer: (input: RestartInput) => restartConsumer(deps, input),
    rotationProbe: (input: ProbeInput) => runProbe(deps, input),
    rotationMarkRolledBack: (input: MarkRolledBackInput) => markRolledBack(deps, input),
    rotationRestoreOpenBao: (input: RestoreInput) => restoreRolledBack(deps, input),
    rotationDriftCheck: (input: DriftInput) => checkSecretDrift(deps, input),
  };
}
