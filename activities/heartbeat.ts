// Heartbeats and cancellable sleeps for long activities. Outside an activity (unit tests, benches)
// they degrade to a no-op and a plain timer, so activity functions can be called directly.
import { Context } from '@temporalio/activity';

/** Heartbeat with progress details (Temporal Web shows them); a no-op outside an activity. */
export function beat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // not in an activity context
  }
}

/** Sleeps; inside an activity it rejects with CancelledFailure once cancellation is delivered. */
export function sleep(ms: number): Promise<void> {
  try {
    return Context.current().sleep(ms);
  } catch {
    return new Promise((r) => setTimeout(r, ms));
  }
}
