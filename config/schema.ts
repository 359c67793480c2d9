// The cluster definition schema. One TypeBox schema gives the JSON Schema (validated by Ajv in the
// loader, reusable in Fastify routes) and the static ClusterSpec type from the same source.
// One file on purpose: it is one document (clusters/*.yaml), read top to bottom beside a cluster file.
import { Type, type Static } from '@sinclair/typebox';

const Name = Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$', description: 'DNS-1123 label' });
const Host = Type.String({ minLength: 1, maxLength: 253 });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const Duration = Type.Integer({ minimum: 1, description: 'seconds' });
const OpRef = Type.String({
  pattern: '^op://[^/]+/[^/]+(/[^/]+)?/[^/]+$',
  description: '1Password secret reference op://vault/item[/section]/field',
});

export const WorkloadKind = Type.Union([
  Type.Literal('Deployment'),
  Type.Literal('StatefulSet'),
  Type.Literal('DaemonSet'),
  Type.Literal('CronJob'),
]);

export const WorkloadRef = Type.Object(
  {
    kind: WorkloadKind,
    name: Name,
    namespace: Type.Optional(Name),
    replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 50 })),
    /**
     * When the component's install counts this workload as up: `ready` (default: kubectl's rollout
     * rules) or `running` (pods Running, readiness not required). OpenBAO needs `running`: its
     * readiness probe is `bao status`, which fails until the bootstrap step unseals it
     * (openbao-helm charts/openbao/templates/server-statefulset.yaml).
     */
    readyWhen: Type.Optional(Type.Union([Type.Literal('ready'), Type.Literal('running')])),
  },
  { additionalProperties: false },
);

/**
 * k3s's own etcd snapshots (docs.k3s.io/cli/etcd-snapshot; flags in k3s-io/k3s pkg/cli/cmds/server.go),
 * rendered by prepare into the server's config.yaml. The S3 keys are 1Password references: their
 * values are resolved inside the prepare activity and written only into that 0600 file on the node.
 */
export const EtcdSnapshotsSpec = Type.Object(
  {
    /** etcd-snapshot-schedule-cron (k3s default: minute 0 of every 12th hour). */
    scheduleCron: Type.String({ minLength: 9 }),
    /** etcd-snapshot-retention: snapshots kept per location (k3s default 5). */
    retention: Type.Integer({ minimum: 1, maximum: 1000 }),
    /** The drill fails when the newest off-node snapshot is older than this (the control plane's RPO). */
    rpoSeconds: Duration,
    /** Smallest size a usable snapshot can have (default 65536 bytes); a smaller one fails the drill. */
    minSizeBytes: Type.Optional(Type.Integer({ minimum: 1 })),
    s3: Type.Object(
      {
        /** etcd-s3-endpoint: host[:port], no scheme (k3s default s3.amazonaws.com). */
        endpoint: Type.String({ pattern: '^[A-Za-z0-9.-]+(:[0-9]+)?$' }),
        /** etcd-s3-insecure: plain HTTP (SeaweedFS's S3 gateway inside the LAN). */
        insecure: Type.Optional(Type.Boolean()),
        bucket: Type.String({ minLength: 3 }),
        folder: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._/-]+$' })),
        region: Type.Optional(Type.String({ minLength: 1 })),
        accessKeyRef: OpRef,
        secretKeyRef: OpRef,
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const NodeSpec = Type.Object(
  {
    name: Name,
    /** Address the orchestrator reaches over SSH (may be a Tailscale address). */
    address: Host,
    /**
     * LAN address k3s binds to (flannel over the Tailscale address broke pod networking). Absent:
     * preflight and prepare discover it (the default-route interface other than tailscale0) and the
     * preflight step shows it, so it can be pinned here.
     */
    nodeIp: Type.Optional(Host),
    /** Allow a nodeIp inside 100.64.0.0/10 (Tailscale/CGNAT). Off by default: that is the address that broke flannel. */
    allowCgnatNodeIp: Type.Optional(Type.Boolean()),
    port: Type.Optional(Port),
    user: Type.Optional(Type.String({ minLength: 1 })),
    role: Type.Union([Type.Literal('server'), Type.Literal('agent')]),
    roles: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    /** Pinned SSH host key, known_hosts style: "ssh-ed25519 AAAA...". Absent means TOFU must be allowed explicitly. */
    hostKey: Type.Optional(
      Type.String({
        pattern: '^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+',
      }),
    ),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    storage: Type.Optional(
      Type.Object(
        {
          path: Type.String({ pattern: '^/' }),
          sizeGi: Type.Integer({ minimum: 1 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ComponentSpec = Type.Object(
  {
    name: Name,
    namespace: Name,
    chart: Type.String({ minLength: 1 }),
    repo: Type.Optional(Type.String({ pattern: '^(https?|oci)://' })),
    version: Type.String({ minLength: 1 }),
    dependsOn: Type.Array(Name, { default: [] }),
    timeoutSeconds: Duration,
    /** Inline Helm values; rendered to the HelmChart's valuesContent. */
    values: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    /** Values file relative to the cluster file's folder. */
    valuesFile: Type.Optional(Type.String({ minLength: 1 })),
    /**
     * Workloads the chart creates. An install is judged by the objects of the Helm release it deployed
     * (activities/components/helmchart.ts workloadsReady), not by this list: here only exceptions
     * count (`readyWhen: running`), secret consumers are matched to their component, and
     * `npm run config:check` refuses a name the chart lock's render does not contain.
     */
    workloads: Type.Array(WorkloadRef, { default: [] }),
    /** Uses a PersistentVolumeClaim, so must come after the storage class provider. */
    usesStorage: Type.Optional(Type.Boolean()),
    /**
     * The chart cannot be had where the chart lock is made (what to do, in words). config:check lists
     * the component instead of refusing the cluster, as it does a secret entry's pendingSource; its
     * install still fails until the chart exists where the cluster pulls it from.
     */
    pendingChart: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export const ProbeSpec = Type.Union([
  Type.Object(
    {
      type: Type.Literal('http'),
      url: Type.String({ pattern: '^https?://' }),
      expectStatus: Type.Optional(Type.Integer()),
    },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('tcp'), host: Host, port: Port }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('job'),
      namespace: Name,
      image: Type.String({ minLength: 1 }),
      command: Type.Array(Type.String()),
      timeoutSeconds: Type.Optional(Duration),
      /** A Secret in `namespace` whose keys the Job gets as env vars (envFrom): the probe uses the new credential. */
      secretEnv: Type.Optional(Name),
      /**
       * PVCs of `namespace` mounted read-only at /data/<claim>: a drill's data probe counts rows or
       * checksums files of the restored volume (in the drill, the claim of the scratch namespace).
       */
      claims: Type.Optional(Type.Array(Name, { minItems: 1, uniqueItems: true })),
    },
    { additionalProperties: false },
  ),
]);

/** Backup of pod volumes by Velero's node-agent (file-system backup, kopia). */
export const VolumeBackupSpec = Type.Object(
  {
    /**
     * Sets defaultVolumesToFsBackup on the Schedule's template and on on-demand Backups: every pod
     * volume is copied. Unset, Velero uses its server default (false in the chart): with snapshots
     * disabled, PVCs are restored empty.
     */
    fsBackup: Type.Boolean(),
  },
  { additionalProperties: false },
);

export const NamespaceVolumeData = Type.Object(
  {
    /** At least this many PVCs of the namespace must come back with data (a backup that lost some fails). */
    minPvcs: Type.Optional(Type.Integer({ minimum: 0 })),
    /** PVCs that may come back empty (caches, volumes excluded from the backup on purpose). */
    allowEmpty: Type.Optional(Type.Array(Name)),
  },
  { additionalProperties: false },
);

export const SecretEntrySpec = Type.Object(
  {
    id: Name,
    /** OpenBAO KV v2 path below the mount, e.g. "eleduck-analytics/database". */
    openbaoPath: Type.String({ pattern: '^[a-z0-9][a-z0-9/_-]*$' }),
    /** OpenBAO key -> 1Password reference. Every key's source is explicit. */
    fields: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }), OpRef, { minProperties: 1 }),
    kubernetes: Type.Optional(
      Type.Object(
        {
          namespace: Name,
          name: Name,
          /** Kubernetes Secret key -> OpenBAO key. */
          keys: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }), Type.String(), { minProperties: 1 }),
        },
        { additionalProperties: false },
      ),
    ),
    consumers: Type.Array(WorkloadRef, { default: [] }),
    verify: Type.Optional(ProbeSpec),
    /**
     * The 1Password items this entry reads do not exist yet (what to create, in words). Such an entry is
     * left out of rotations of the whole map and refused when named, until the items exist and this goes.
     */
    pendingSource: Type.Optional(Type.String({ minLength: 1 })),
    /** Generate mode: a new value is made by 1Password's generator and written there first. */
    generate: Type.Optional(
      Type.Object(
        {
          field: Type.String({ minLength: 1 }),
          length: Type.Integer({ minimum: 8, maximum: 128 }),
          digits: Type.Optional(Type.Boolean()),
          symbols: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ClusterSpecSchema = Type.Object(
  {
    name: Name,
    clusterName: Type.String({ minLength: 1 }),
    domain: Type.String({ pattern: '^[a-z0-9.-]+$' }),
    /** The API's virtual IP: agents join https://<vip>:<apiPort> and the kubeconfig points at it. */
    vip: Host,
    /**
     * What answers on the VIP. k3s creates no VIP (it only puts tls-san addresses in its serving cert),
     * so something has to announce it: kube-vip as a DaemonSet on the control-plane nodes, in ARP mode
     * on `interface` (kube-vip docs/usage/k3s, docs/install_daemonset at v0.6.4). Absent: the VIP is
     * provided outside the cluster (keepalived, a load balancer); the build still waits for it.
     */
    vipProvider: Type.Optional(
      Type.Object(
        {
          kind: Type.Literal('kube-vip'),
          /** Image tag, pinned (ghcr.io/kube-vip/kube-vip:<version>). */
          version: Type.String({ pattern: '^v\\d+\\.\\d+\\.\\d+$' }),
          /** The control-plane nodes' LAN interface the VIP is added to and ARP-announced on (vip_interface). */
          interface: Type.String({ minLength: 1, maxLength: 15 }),
          image: Type.Optional(Type.String({ minLength: 1 })),
          /** How long the build waits for https://<vip>:<apiPort>/readyz (default 180). */
          readyTimeoutSeconds: Type.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    /** Marks a lab (test double) cluster; the worker then wires lab clients where it is told to. */
    lab: Type.Optional(Type.Boolean()),
    k3s: Type.Object(
      {
        version: Type.String({ pattern: '^v\\d+\\.\\d+\\.\\d+\\+k3s\\d+$', description: 'pinned INSTALL_K3S_VERSION' }),
        apiPort: Type.Optional(Port),
        disable: Type.Array(Type.String(), { default: ['traefik', 'servicelb'] }),
        clusterCidr: Type.Optional(Type.String()),
        serviceCidr: Type.Optional(Type.String()),
        extraTlsSans: Type.Optional(Type.Array(Host)),
        /** Installer script source: an https URL, or a file path on the orchestrator host. */
        installScript: Type.String({ minLength: 1 }),
        /**
         * How long an install, start or restart may wait for k3s to report ready (default 300). The
         * units are Type=notify with TimeoutStartSec=0, so without this bound a join that cannot reach
         * the server would wait forever.
         */
        startTimeoutSeconds: Type.Optional(Duration),
        etcdSnapshots: Type.Optional(EtcdSnapshotsSpec),
        /**
         * 1Password item (in onepassword.vault) that keeps the server token off the node, written by the
         * first server's install (default k3s-server-token): a restore needs the same token
         * (docs.k3s.io/datastore/backup-restore), and a replacement server gets it from here.
         */
        tokenItem: Type.Optional(
          Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]*$' }),
        ),
      },
      { additionalProperties: false },
    ),
    ssh: Type.Object(
      {
        user: Type.String({ minLength: 1 }),
        port: Port,
        /** Path of the private key file, or "agent" to use SSH_AUTH_SOCK. Never the key itself. */
        privateKey: Type.String({ minLength: 1 }),
        connectTimeoutSeconds: Type.Optional(Duration),
      },
      { additionalProperties: false },
    ),
    nodes: Type.Array(NodeSpec, { minItems: 1 }),
    /**
     * The cluster's own OCI registry (Zot). Written to every node's /etc/rancher/k3s/registries.yaml so
     * containerd can pull "<host>:<port>/..." images, and used for oci:// charts (plainHTTP when tls is false).
     */
    registry: Type.Optional(
      Type.Object(
        {
          host: Host,
          port: Port,
          /** false: the registry speaks plain HTTP (Zot's chart default). */
          tls: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
    ),
    preflight: Type.Object(
      {
        minCpus: Type.Integer({ minimum: 1 }),
        minMemoryMiB: Type.Integer({ minimum: 256 }),
        minDiskGiB: Type.Integer({ minimum: 1 }),
        requiredPackages: Type.Array(Type.String()),
        requiredPorts: Type.Array(Port),
        architectures: Type.Array(Type.String(), { minItems: 1 }),
      },
      { additionalProperties: false },
    ),
    storage: Type.Object(
      {
        node: Name,
        basePath: Type.String({ pattern: '^/' }),
        longhornPath: Type.String({ pattern: '^/' }),
        replicas: Type.Integer({ minimum: 1, maximum: 3 }),
        directories: Type.Array(
          Type.Object({ name: Type.String(), sizeGi: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
        ),
      },
      { additionalProperties: false },
    ),
    kubernetes: Type.Optional(
      Type.Object(
        {
          /** Where the orchestrator keeps the fetched kubeconfig (0600). Default: .data/kubeconfig/<cluster>.yaml */
          kubeconfigPath: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
    components: Type.Array(ComponentSpec, { minItems: 1 }),
    parallelism: Type.Integer({ minimum: 1, maximum: 16 }),
    /** Rolling upgrades (workflow upgradeCluster): how many agents at a time, and how long each gate waits. */
    upgrade: Type.Optional(
      Type.Object(
        {
          /** Agents upgraded at once (servers always go one at a time). Default 1. */
          concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
          /** How long a drain keeps retrying evictions a PodDisruptionBudget refuses. Default 300. */
          drainTimeoutSeconds: Type.Optional(Duration),
          /** How long a node may take to be Ready on the new version, its workloads available. Default 300. */
          nodeReadyTimeoutSeconds: Type.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    openbao: Type.Object(
      {
        /**
         * How the orchestrator reaches OpenBAO. openbao-helm creates no Ingress (`ingress.enabled: false`)
         * and serves plain HTTP (`tls_disable = 1`) on Service `openbao`:8200, so a hostname reaches
         * nothing unless the cluster adds a route for it.
         * - `api-proxy`: through the Kubernetes API's `services/proxy` subresource
         *   (`/api/v1/namespaces/<ns>/services/<scheme>:<service>:<port>/proxy/`), with the kubeconfig's
         *   CA and credentials; needs nothing else in the cluster (k3s routes the apiserver's connection
         *   to the pod through its agent tunnel).
         * - `url`: `address` directly (an Ingress/HTTPRoute in front of the Service); `caFile` is the PEM
         *   CA that signed its certificate when it is not a public one.
         */
        access: Type.Object(
          {
            mode: Type.Union([Type.Literal('api-proxy'), Type.Literal('url')]),
            /** api-proxy: the chart's Service (its fullname; `openbao` for release `openbao`). */
            service: Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$', default: 'openbao' }),
            port: Type.Integer({ minimum: 1, maximum: 65535, default: 8200 }),
            /** api-proxy: the listener's scheme (`http` while the chart's `global.tlsDisable` is true). */
            scheme: Type.Union([Type.Literal('http'), Type.Literal('https')], { default: 'http' }),
            caFile: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false },
        ),
        /** url mode: where OpenBAO answers (an Ingress or route in front of the Service). */
        address: Type.Optional(Type.String({ pattern: '^https?://' })),
        namespace: Name,
        kvMount: Type.String({ pattern: '^[a-z0-9_-]+$' }),
        shares: Type.Integer({ minimum: 1, maximum: 10 }),
        threshold: Type.Integer({ minimum: 1, maximum: 10 }),
        /** 1Password item that keeps the unseal keys and root token. */
        unsealItem: Type.String({ minLength: 1 }),
      },
      { additionalProperties: false },
    ),
    onepassword: Type.Object(
      {
        vault: Type.String({ minLength: 1 }),
        /** Env var holding the service-account token. */
        tokenEnv: Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$' }),
        /** Lab only: URL of the lab's 1Password double. Chosen explicitly, never as a fallback. */
        labUrl: Type.Optional(Type.String({ pattern: '^http://(127\\.|localhost)' })),
      },
      { additionalProperties: false },
    ),
    dns: Type.Object(
      {
        /** domain -> upstream resolver for CoreDNS forwarding. */
        splitDns: Type.Record(Type.String({ pattern: '^[a-z0-9.-]+$' }), Type.String({ minLength: 1 })),
      },
      { additionalProperties: false },
    ),
    tailscale: Type.Object(
      {
        component: Name,
        oauthClientIdRef: OpRef,
        oauthClientSecretRef: OpRef,
      },
      { additionalProperties: false },
    ),
    secrets: Type.Object(
      {
        entries: Type.Array(SecretEntrySpec),
        driftCheck: Type.Object(
          { cron: Type.String({ minLength: 9 }), paused: Type.Boolean() },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
    backups: Type.Object(
      {
        veleroNamespace: Name,
        storageLocation: Name,
        bucket: Type.String({ minLength: 3 }),
        s3Url: Type.String({ pattern: '^https?://' }),
        /**
         * Where the worker reaches the object store. Velero signs DownloadRequest URLs (resource
         * lists, logs) for the BSL's publicUrl when set, else for s3Url, usually an in-cluster name
         * the worker outside the cluster cannot resolve (velero pkg/persistence/object_store.go).
         */
        publicUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
        /** How volume data gets into a backup (README, Configuration). */
        volumes: Type.Optional(VolumeBackupSpec),
        schedule: Type.Object(
          {
            name: Name,
            cron: Type.String({ minLength: 9 }),
            ttlHours: Type.Integer({ minimum: 1 }),
            includedNamespaces: Type.Array(Name, { minItems: 1 }),
          },
          { additionalProperties: false },
        ),
        drill: Type.Object(
          {
            cron: Type.String({ minLength: 9 }),
            namespaces: Type.Array(Name, { minItems: 1 }),
            paused: Type.Boolean(),
            /** Data probes run as Jobs in the restored namespaces. */
            probes: Type.Optional(Type.Array(ProbeSpec)),
            /** Keeps the drill's sandbox off production: activities/velero/sandbox.ts. */
            sandbox: Type.Optional(
              Type.Object(
                {
                  /** Restored Ingress/HTTPProxy hosts become <host>.<scratch ns>.<domain>; default drill.invalid. */
                  domain: Type.Optional(Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,200}[a-z0-9])?$' })),
                  /** External-facing workloads (talk to production systems): restored with 0 replicas. */
                  scaleDown: Type.Optional(
                    Type.Array(
                      Type.Object(
                        {
                          kind: Type.Union([Type.Literal('Deployment'), Type.Literal('StatefulSet')]),
                          name: Name,
                          namespace: Name,
                        },
                        { additionalProperties: false },
                      ),
                    ),
                  ),
                },
                { additionalProperties: false },
              ),
            ),
            /** Volume data a restored namespace must get back, by source namespace (README, Configuration). */
            volumeData: Type.Optional(Type.Record(Name, NamespaceVolumeData)),
          },
          { additionalProperties: false },
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type ClusterSpec = Static<typeof ClusterSpecSchema>;
export type NodeSpec = Static<typeof NodeSpec>;
export type ComponentSpec = Static<typeof ComponentSpec>;
export type SecretEntrySpec = Static<typeof SecretEntrySpec>;
export type WorkloadRef = Static<typeof WorkloadRef>;
export type ProbeSpec = Static<typeof ProbeSpec>;
export type NamespaceVolumeData = Static<typeof NamespaceVolumeData>;
export type EtcdSnapshotsSpec = Static<typeof EtcdSnapshotsSpec>;
