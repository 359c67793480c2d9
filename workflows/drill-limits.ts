// How long a DR drill may take. The drill enforces its own deadline (it cancels its work, fails with
// DrillTimeout and still cleans up); the schedule's workflowRunTimeout adds a margin above it as a
// backstop, so no drill can hold its schedule (overlap SKIP) forever. Plain constants: imported by the
// workflow and by the worker's schedule code alike.
export const DRILL_DEADLINE_SECONDS = 3 * 3600;
export const DRILL_CLEANUP_MARGIN_SECONDS = 3600;
