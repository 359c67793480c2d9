// How a worker leaves: graceful on SIGTERM, and what a SIGKILLed one costs the workflows it ran.
// Used by create-worker.ts; the Dockerfile, docker-compose.yml and the systemd unit in README repeat
// the numbers (checked in test/unit/compose.test.ts). Upstream semantics: sdk-typescript
// packages/worker/src/worker-options.ts (shutdownGraceTime: in-flight activities are cancelled after
// it and their attempt fails; shutdownForceTime; stickyQueueScheduleToStartTimeout, default 10 s).

/**
 * Graceful shutdown (SIGTERM): the worker stops polling at once, in-flight activities get this long
 * to finish; then they are cancelled (activities/heartbeat.ts aborts what they wait on) and their
 * attempt fails, so the server hands it to another worker right away instead of after a timeout.
 */
export const SHUTDOWN_GRACE_TIME = '10s';
/** After this the worker gives up on a clean shutdown and exits anyway (worker/main.ts). */
export const SHUTDOWN_FORCE_TIME = '20s';
/**
 * What the container runtime must allow between SIGTERM and SIGKILL: the force time plus a margin
 * for closing the connection. docker-compose.yml's `stop_grace_period` for the worker says the same
 * (test/unit/compose.test.ts holds them together).
 */
export const STOP_GRACE_PERIOD_SECONDS = 30;
/**
 * A workflow task waits this long on the sticky queue of the worker that ran the workflow last
 * before any worker may take it (with a full replay). A SIGKILLed worker never polls again, so this
 * is what the next step of its workflows waits after a crash (the SDK default is 10 s).
 */
export const STICKY_SCHEDULE_TO_START = '3s';
