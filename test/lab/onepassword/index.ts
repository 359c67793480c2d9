export {
  startOnePasswordDouble,
  type OnePasswordDouble,
  type OnePasswordDoubleOptions,
  type OnePasswordCounters,
} from './server.js';
export { createLabOnePasswordClient, type LabOnePasswordClient } from './client.js';
export { fixtureSecretValues, readVaultFile, type VaultFile, type StoredItem, type StoredVault } from './fixture.js';
