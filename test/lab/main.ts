// `npm run lab [-- --built] [-- --facts '{"worker-2":{"memoryMiB":1024}}']`: the lab in the foreground.
// Writes lab.yaml into the orchestrator's clusters folder (PEDRO_OPS_CLUSTERS_DIR, default
// config/clusters/) so a running orchestrator serves cluster "lab"; Ctrl-C stops everything and
// deletes that file again.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from './cluster-spec.js';
import { startLab, type StartLabOptions } from './index.js';

const LAB_FILE = join(process.env.PEDRO_OPS_CLUSTERS_DIR ?? join(REPO_ROOT, 'config/clusters'), 'lab.yaml');

function options(): StartLabOptions {
  const { values } = parseArgs({
    options: {
      built: { type: 'boolean', default: false },
      facts: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npm run lab [-- --built] [--facts \'{"<node>": {"cpus": 1}}\']');
    process.exit(0);
  }
  let facts: StartLabOptions['facts'];
  if (values.facts) {
    try {
      facts = JSON.parse(values.facts) as StartLabOptions['facts'];
    } catch {
      throw new Error('--facts: is not valid JSON');
    }
    if (!facts || typeof facts !== 'object' || Array.isArray(facts))
      throw new Error('--facts: must be an object {node: facts}');
  }
  return { built: values.built, facts, writeClusterFile: LAB_FILE, log: (l) => console.log(`[lab] ${l}`) };
}

async function main() {
  const lab = await startLab(options());
  const rows: Array<[string, string]> = [
    ...lab.nodes.map((n): [string, string] => [
      `ssh ${n.name}`,
      `ssh -i ${lab.sshKeyPath} -o UserKnownHostsFile=${lab.knownHostsPath} -p ${n.port} root@${n.host}`,
    ]),
    ['kube-apiserver', `${lab.kube.url}  v1.31.4, real (KUBECONFIG=${lab.kube.kubeconfigPath})`],
    [
      'VIP',
      `https://${lab.vip}:${lab.spec.k3s.apiPort}  answers once kube-vip runs and leads (after the first server)`,
    ],
    [
      'control plane',
      `kine + kube-apiserver + controller-manager + scheduler + kwok: ${lab.pieces.kube.startMs} ms to ready`,
    ],
    ['OpenBAO', lab.openbao.url],
    ['1Password double', lab.onepassword.url],
    ['control API', `${lab.control.url}  (GET / lists the fault routes)`],
    ['cluster file', `${LAB_FILE}  (copy: ${lab.clusterFile})`],
    ['lab dir', lab.dir],
    ['started in', `${lab.startMs} ms${lab.built ? ' (built: k3s installed, OpenBAO unsealed, secrets seeded)' : ''}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n'));
  console.log('Ctrl-C stops the lab.');

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`[lab] ${signal}: stopping`);
    lab
      .stop()
      .then(() => {
        rmSync(LAB_FILE, { force: true });
        console.log('[lab] stopped; nothing left behind');
        process.exit(0);
      })
      .catch((err: unknown) => {
        rmSync(LAB_FILE, { force: true });
        console.error(`[lab] stop: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  rmSync(LAB_FILE, { force: true });
  console.error(`[lab] failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
