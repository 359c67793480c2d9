// How long a verification probe may take, and the activity timeouts that fit it. A Job probe waits
// up to its timeoutSeconds (default JOB_PROBE_SECONDS) and heartbeats while it polls, so its activity
// gets a start-to-close above the probe's own timeout and a short heartbeat timeout (a killed worker
// is noticed within seconds, DESIGN rule 10). Plain values: used by workflows and activities alike.
import type { ProbeSpec } from '../config/schema.js';

export const JOB_PROBE_SECONDS = 300;
export const PLAIN_PROBE_SECONDS = 10;
/** Room above the probe's own timeout for creating the Job and reporting. */
const MARGIN_SECONDS = 60;

export function probeSeconds(probe: ProbeSpec): number {
  return probe.type === 'job' ? (probe.timeoutSeconds ?? JOB_PROBE_SECONDS) : PLAIN_PROBE_SECONDS;
}
