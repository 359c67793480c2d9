// Loaded by path (DataConverter.failureConverterPath) in the worker, the client and the workflow
// sandbox, hence CommonJS. encodeCommonAttributes moves failure messages and stack traces into an
// encoded payload, so the payload codec encrypts them too: error text in history is no longer plain.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
