// Typed failures, named once and used in every retry policy (DESIGN.md rule 3).
// Activities throw these; workflows decide: retryable ones are retried by Temporal, non-retryable
// ones park the step in needs-attention (rule 4).
import { ApplicationFailure, type RetryPolicy } from '@temporalio/common';

export const ErrorType = {
  // Retryable: the world may fix itself.
  Transient: 'Transient', // network, timeouts, 5xx
  Conflict: 'Conflict', // 409, check-and-set races
  Sealed: 'Sealed', // OpenBAO sealed while unsealing is under way
  RateLimited: 'RateLimited',
  NotReady: 'NotReady', // waited long enough for this attempt; try again
  // Non-retryable: a human has to act.
  BadConfig: 'BadConfig',
  AuthDenied: 'AuthDenied',
  HostKeyMismatch: 'HostKeyMismatch',
  SchemaRejected: 'SchemaRejected',
  PreflightFailed: 'PreflightFailed',
  InstallFailed: 'InstallFailed',
  ServerUnreachable: 'ServerUnreachable', // a k3s agent could not validate its token against the server
  NotFound: 'NotFound',
  SecretMissing: 'SecretMissing',
  UnsealKeysMissing: 'UnsealKeysMissing',
  VerificationFailed: 'VerificationFailed',
  BackupNotUsable: 'BackupNotUsable',
  RestoreFailed: 'RestoreFailed',
  DrainBlocked: 'DrainBlocked', // a PodDisruptionBudget refused evictions until the drain's deadline
  NodeNotReady: 'NodeNotReady', // an upgraded node did not come back Ready on its new version in time
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

export const NON_RETRYABLE_ERROR_TYPES: string[] = [
  ErrorType.BadConfig,
  ErrorType.AuthDenied,
  ErrorType.HostKeyMismatch,
  ErrorType.SchemaRejected,
  ErrorType.PreflightFailed,
  ErrorType.InstallFailed,
  ErrorType.ServerUnreachable,
  ErrorType.NotFound,
  ErrorType.SecretMissing,
  ErrorType.UnsealKeysMissing,
  ErrorType.VerificationFailed,
  ErrorType.BackupNotUsable,
  ErrorType.RestoreFailed,
  ErrorType.DrainBlocked,
  ErrorType.NodeNotReady,
];

export function nonRetryable(type: ErrorType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message,
    nonRetryable: true,
    details: details === undefined ? undefined : [details],
  });
}

export function retryable(type: ErrorType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message,
    nonRetryable: false,
    details: details === undefined ? undefined : [details],
  });
}

/**
 * The default activity retry policy: transient errors back off; typed non-retryables stop at once.
 * A crashed worker's attempt counts as a failed one (its heartbeat timeout), so the backoff also sits
 * between a crash being noticed and the next attempt: capped at 10 s, a worker killed again and again
 * inside one activity still has it retried within 10 s + the heartbeat timeout (the chaos suite found
 * 16 s of backoff plus 8 s after the sixth kill in a row with a 20 s cap). 15 attempts keep the window
 * a transient outage is retried through at about 100 s (0.5 + 1 + 2 + 4 + 8 s, then 10 s each).
 */
export const DEFAULT_RETRY: RetryPolicy = {
  initialInterval: '500ms',
  backoffCoefficient: 2,
  maximumInterval: '10s',
  maximumAttempts: 15,
  nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
};
