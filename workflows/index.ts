// Every workflow the worker registers. One file per workflow; this index only re-exports.
export {};
export * from './verify-backup.js';
export * from './rotate-secrets.js';
