// Every workflow the worker registers. One file per workflow; this index only re-exports.
export {};
export * from './verify-backup.js';
export * from './rotate-secrets.js';
export * from './provision-cluster.js';
export * from './dr-restore.js';
export * from './recover-control-plane.js';
export * from './check-drift.js';
export * from './reconcile.js';
export * from './upgrade-cluster.js';
