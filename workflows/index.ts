// Every workflow the worker registers. One file per workflow; this index only re-exports.
export {};
