// `npm run config:check [file...]`: validates cluster definitions (default: config/clusters/*.yaml).
// Problems print as "file: path.to.field: reason", one per line; exit 2 on any, without a stack trace.
import { ConfigError, loadClusterFile, loadClusters } from '../config/loader.js';

const files = process.argv.slice(2);
try {
  if (files.length > 0) {
    for (const f of files) console.log(`${f}: ok (${loadClusterFile(f).name})`);
  } else {
    for (const [name] of loadClusters()) console.log(`${name}: ok`);
  }
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
