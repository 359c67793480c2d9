// How long a verification probe may take. A Job probe waits up to its timeoutSeconds (default
// JOB_PROBE_SECONDS) and heartbeats while it polls; the workflow gives it a wait activity sized to this
// (activity-options.ts waitUpTo). Plain values: used by workflows and activities alike.
import type { ProbeSpec } from '../config/schema.js';

export const JOB_PROBE_SECONDS = 300;
export const PLAIN_PROBE_SECONDS = 10;

export function probeSeconds(probe: ProbeSpec): number {
  return probe.type === 'job' ? (probe.timeoutSeconds ?? JOB_PROBE_SECONDS) : PLAIN_PROBE_SECONDS;
}
