// The drift activities checkDrift and reconcile call. Each observes one part of the cluster and
// returns findings (read-only); repairNodeMetadata is the one repair without an older step to reuse.
// Secret drift is the existing fingerprint comparison (openbao/drift.ts) turned into findings.
import type { ActivityDeps } from '../deps.js';
import { clusterOrFail } from '../deps.js';
import { ErrorType, nonRetryable } from '../../workflows/failures.js';
import { nodeOrFail } from '../ssh/session.js';
import { checkSecretDrift } from '../openbao/drift.js';
import { componentDrift, platformDrift } from './components.js';
import { nodeDrift, repairNodeMetadata } from './nodes.js';
import type { DriftFinding, DriftObservation } from '../../workflows/drift-types.js';

/** Fingerprints (HMAC, never values) shortened for reading: `hmac-sha256:` and 12 hex digits. */
const short = (fp?: string) => (fp ? fp.replace(/^((?:[a-z0-9-]+:)?[0-9a-f]{12}).*$/, '$1') : '(none)');

export function driftActivities(deps: ActivityDeps) {
  return {
    driftNode: (input: { cluster: string; node: string }): Promise<DriftObservation> => {
      const spec = clusterOrFail(deps, input.cluster);
      return nodeDrift(deps, spec, nodeOrFail(spec, input.node));
    },

    driftComponent: (input: { cluster: string; component: string }): Promise<DriftObservation> => {
      const spec = clusterOrFail(deps, input.cluster);
      const c = spec.components.find((x) => x.name === input.component);
      if (!c) throw nonRetryable(ErrorType.NotFound, `cluster ${spec.name} has no component "${input.component}"`);
      return componentDrift(deps, spec, c);
    },

    driftPlatform: (input: { cluster: string }): Promise<DriftObservation> =>
      platformDrift(deps, clusterOrFail(deps, input.cluster)),

    /** Entries whose 1Password items exist (pendingSource ones are left out, as rotations do). */
    async driftSecrets(input: { cluster: string }): Promise<DriftObservation> {
      const spec = clusterOrFail(deps, input.cluster);
      const live = spec.secrets.entries.filter((e) => !e.pendingSource);
      if (live.length === 0) return { findings: [], checked: 0 };
      const { entries } = await checkSecretDrift(deps, { cluster: spec.name, entryIds: live.map((e) => e.id) });
      const findings: DriftFinding[] = entries
        .filter((e) => !e.inSync)
        .map((e) => {
          const k = e.kubernetes;
          return {
            kind: 'secret',
            group: `secret ${e.id}`,
            object: `secret entry ${e.id}`,
            want: `1Password ${short(e.onepassword)}${k ? `; Secret ${short(k.expected)}` : ''}`,
            have: `OpenBAO v${e.openbao?.version ?? 0} ${short(e.openbao?.fingerprint)}${k ? `; Secret ${k.exists ? short(k.fingerprint) : '(absent)'}` : ''} (${e.findings.join('; ')})`,
            action: 'sync 1Password -> OpenBAO -> Kubernetes (a rotation of this entry)',
            repair: { step: 'secret-sync', entry: e.id },
          };
        });
      return { findings, checked: live.length };
    },

    async repairNodeMetadata(input: { cluster: string; node: string }) {
      const spec = clusterOrFail(deps, input.cluster);
      return repairNodeMetadata(deps, spec, nodeOrFail(spec, input.node));
    },
  };
}
