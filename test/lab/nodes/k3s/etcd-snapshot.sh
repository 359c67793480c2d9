# Sourced by the k3s stand-in (nodes/k3s/k3s): its etcd snapshot side, kept apart so the stand-in's
# own edits merge cleanly. Lives on the node as /run/lab/k3s-etcd-snapshot.sh (the lab's control dir,
# which survives the "node destroyed" fault as the lab's machinery, not the node's disk).
# Upstream behaviour copied:
# - names `<name>-<node>-<unix ts>`, default name on-demand for `save`, files in
#   ${data-dir}/server/db/snapshots (k3s-io/k3s pkg/etcd/snapshot.go snapshot(), snapshotDir);
# - with etcd-s3 the file is uploaded to <bucket>/<folder>/<file> (pkg/etcd/s3/s3.go Upload), and
#   `ls` lists local and S3 snapshots. Since k3s v1.30 (PR #9816; read at the v1.35.1 module) `-o json`
#   prints the ETCDSnapshotFileList the server answers, sorted by creation time, through cli-runtime's
#   JSONPrinter (pkg/cli/etcdsnapshot/etcd_snapshot.go list): per item spec {snapshotName, nodeName,
#   location, s3 for an S3 copy}, status {size as a resource.Quantity, creationTime, readyToUse}
#   (pkg/etcd/snapshot/types.go ToETCDSnapshotFile; k3s-io/api k3s.cattle.io/v1 types.go); the table
#   is Name Location Size Created for every item. The client-of-the-server side (`save`/`ls` POST
#   /db/snapshot to the running server) is not copied: the stand-in reads the files itself;
# - the etcd-snapshot subcommand reads the server's config file, so etcd-s3-* apply to it
#   (commandSetup copies every EtcdS3* setting);
# - `k3s server --cluster-reset --cluster-reset-restore-path=<file>` restores and exits; with etcd-s3
#   the path is a snapshot name, downloaded from S3 first (docs.k3s.io/cli/etcd-snapshot, "Restoring
#   from S3"; k3s-io/k3s#8169). Lab side: the datastore is kine, so the snapshot is kine's database
#   taken by the lab supervisor while kine is paused, and a restore restarts kine from it.
SNAP_DIR=/var/lib/rancher/k3s/server/db/snapshots
s3=false; s3_endpoint=s3.amazonaws.com; s3_insecure=false; s3_bucket=; s3_folder=; s3_region=us-east-1
s3_access=; s3_secret=; cluster_reset=false; restore_path=

snap_opt() { # name value (config file keys and flags; the subcommand's --s3-* spell the same settings)
  case "$1" in
    etcd-s3|s3) [ "$2" = false ] || s3=true ;;
    etcd-s3-endpoint|s3-endpoint) s3_endpoint=$2 ;;
    etcd-s3-insecure|s3-insecure) [ "$2" = false ] || s3_insecure=true ;;
    etcd-s3-bucket|s3-bucket) s3_bucket=$2 ;;
    etcd-s3-folder|s3-folder) s3_folder=$2 ;;
    etcd-s3-region|s3-region) s3_region=$2 ;;
    etcd-s3-access-key|s3-access-key) s3_access=$2 ;;
    etcd-s3-secret-key|s3-secret-key) s3_secret=$2 ;;
    cluster-reset) [ "$2" = false ] || cluster_reset=true ;;
    cluster-reset-restore-path) restore_path=$2 ;;
  esac
}

snap_node_name() {
  . $LAB/kube.env
  printf '%s' "${node_name:-${K3S_NODE_NAME:-$(hostname)}}" | tr '[:upper:]' '[:lower:]'
}

s3_url() { # key
  scheme=https; [ "$s3_insecure" = true ] && scheme=http
  echo "$scheme://$s3_endpoint/$s3_bucket/$1"
}
s3_key() { # file name -> object key
  if [ -n "$s3_folder" ]; then echo "${s3_folder%/}/$1"; else echo "$1"; fi
}
# SigV4-signed request (minio-go signs the same way); the keys reach curl on stdin, never argv.
s3_curl() { # method url [curl args...]
  m=$1; u=$2; shift 2
  printf 'user = "%s:%s"\n' "$s3_access" "$s3_secret" |
    curl -sS -f -K - --aws-sigv4 "aws:amz:$s3_region:s3" -X "$m" "$@" "$u"
}

lab_post() { # path [curl args...] -> response on stdout
  p=$1; shift
  . $LAB/kube.env
  curl -sS -f --cacert $LAB/kube-ca.pem -H @$LAB/kube-auth-header -X POST "$@" "$KUBE_URL$p"
}

snapshot_save() { # name
  [ -d /var/lib/rancher/k3s/server ] || fatal "etcd database not found in /var/lib/rancher/k3s/server"
  node=$(snap_node_name)
  file="$1-$node-$(date +%s)"
  mkdir -p $SNAP_DIR && chmod 700 $SNAP_DIR
  log info "Saving etcd snapshot to $SNAP_DIR/$file"
  lab_post /lab/k3s/etcd-snapshot/save -o "$SNAP_DIR/$file" || { rm -f "$SNAP_DIR/$file"; fatal "failed to save etcd snapshot $file"; }
  if [ "$s3" = true ]; then
    log info "Saving etcd snapshot $file to S3"
    if s3_curl PUT "$(s3_url "$(s3_key "$file")")" --data-binary "@$SNAP_DIR/$file" -o /dev/null; then
      log info "S3 upload complete for $file"
    else
      log error "Error received during snapshot upload to S3: upload of $file failed"
    fi
  fi
  log info "Snapshot $file saved."
}

# resource.Quantity's canonical DecimalSI form of a byte count: the largest power of 1000 that divides it
# (1500000 -> "1500k"; k8s.io/apimachinery pkg/api/resource quantity.go CanonicalizeBytes).
JQ_QUANTITY='def quantity: if . == 0 then "0" else [., 0] | until(.[0] % 1000 != 0 or .[1] == 6; [.[0] / 1000, .[1] + 1])
  | "\(.[0])\(["", "k", "M", "G", "T", "P", "E"][.[1]])" end;'

snapshot_list_json() { # -> the ETCDSnapshotFileList `k3s etcd-snapshot ls -o json` prints
  node=$(snap_node_name)
  {
    for f in "$SNAP_DIR"/*; do
      [ -f "$f" ] || continue
      b=$(basename "$f")
      jq -n --arg name "$b" --arg loc "file://$f" --arg node "$node" --argjson size "$(stat -c %s "$f")" \
        --argjson ts "${b##*-}" "$JQ_QUANTITY"'
        {apiVersion: "k3s.cattle.io/v1", kind: "ETCDSnapshotFile",
         metadata: {name: ("local-" + ($name | ascii_downcase | gsub("[^-.a-z0-9]"; "-"))),
                    labels: {"etcd.k3s.cattle.io/snapshot-storage-node": $node}},
         spec: {snapshotName: $name, nodeName: $node, location: $loc},
         status: {size: ($size | quantity), creationTime: ($ts | todate), readyToUse: true}}'
    done
    if [ "$s3" = true ]; then
      prefix=$(s3_key '')
      xml=$(s3_curl GET "$(s3_url '')?list-type=2&prefix=$prefix") || fatal "failed to list S3 snapshots in $s3_bucket/$prefix"
      echo "$xml" | sed 's#<Contents>#\n<Contents>#g' | grep '^<Contents>' | while read -r c; do
        k=$(echo "$c" | sed -n 's#.*<Key>\([^<]*\)</Key>.*#\1#p')
        [ -n "$k" ] || continue
        size=$(echo "$c" | sed -n 's#.*<Size>\([0-9]*\)</Size>.*#\1#p')
        b=${k##*/}
        # An S3 copy's nodeName is the node that took it when known, else "s3" (ToETCDSnapshotFile).
        jq -n --arg name "$b" --arg loc "s3://$s3_bucket/$k" --argjson size "${size:-0}" --argjson ts "${b##*-}" \
          --arg endpoint "$s3_endpoint" --arg bucket "$s3_bucket" --arg folder "$s3_folder" --arg region "$s3_region" \
          --argjson insecure "$s3_insecure" "$JQ_QUANTITY"'
          {apiVersion: "k3s.cattle.io/v1", kind: "ETCDSnapshotFile",
           metadata: {name: ("s3-" + ($name | ascii_downcase | gsub("[^-.a-z0-9]"; "-"))),
                      labels: {"etcd.k3s.cattle.io/snapshot-storage-node": "s3"}},
           spec: {snapshotName: $name, nodeName: "s3", location: $loc,
                  s3: ({endpoint: $endpoint, bucket: $bucket, region: $region, prefix: $folder}
                       + (if $insecure then {insecure: true} else {} end))},
           status: {size: ($size | quantity), creationTime: ($ts | todate), readyToUse: true}}'
      done
    fi
  } | jq -s '{apiVersion: "k3s.cattle.io/v1", kind: "ETCDSnapshotFileList", metadata: {},
             items: sort_by(.status.creationTime, .spec.snapshotName)}'
}

# `k3s etcd-snapshot <subcommand> [flags]`
etcd_snapshot() {
  sub=$1; [ $# -gt 0 ] && shift
  name=on-demand; format=
  while [ $# -gt 0 ]; do
    a=$1; shift
    case "$a" in
      --name|--output|-o|--node-name|--etcd-s3-*|--s3-*)
        [ $# -gt 0 ] || fatal "flag needs an argument: $a"
        case "$a" in
          --name) name=$1 ;; --output|-o) format=$1 ;; --node-name) node_name=$1 ;; *) snap_opt "${a#--}" "$1" ;;
        esac
        shift ;;
      --name=*) name=${a#*=} ;;
      --output=*|-o=*) format=${a#*=} ;;
      --etcd-s3|--s3) s3=true ;;
      --*=*) n=${a%%=*}; snap_opt "${n#--}" "${a#*=}" ;;
      --*) ;;
      *) fatal "Incorrect Usage: unexpected argument $a" ;;
    esac
  done
  case "$sub" in
    save) snapshot_save "$name" ;;
    ls|list|l)
      case "$format" in
        json) snapshot_list_json ;;
        yaml) snapshot_list_json | jq -r '.items[] | "- spec:\n    snapshotName: \(.spec.snapshotName)\n    location: \(.spec.location)\n  status:\n    size: \"\(.status.size)\""' ;;
        '')
          # tabwriter: Name Location Size Created, every item (the size as a plain number)
          { printf 'Name\tLocation\tSize\tCreated\n'
            snapshot_list_json | jq -r '.items[] | [.spec.snapshotName, .spec.location,
              (.status.size | capture("^(?<n>[0-9]+)(?<s>[kMGTPE]?)$") as $q
                | ($q.n | tonumber) * pow(1000; ["", "k", "M", "G", "T", "P", "E"] | index($q.s))),
              .status.creationTime] | @tsv'
          } | column -t -s "$(printf '\t')" ;;
        *) fatal "invalid output format: $format" ;;
      esac ;;
    '') fatal "Incorrect Usage: etcd-snapshot needs a subcommand (save, ls, delete, prune)" ;;
    *) fatal "etcd-snapshot $sub: not simulated in the lab" ;;
  esac
}

# `k3s server --cluster-reset [--cluster-reset-restore-path=<file or S3 name>]`: restore, then exit.
cluster_reset_run() {
  if [ -n "$restore_path" ]; then
    path=$restore_path
    if [ ! -f "$path" ] && [ "$s3" = true ]; then
      mkdir -p $SNAP_DIR && chmod 700 $SNAP_DIR
      log info "Retrieving etcd snapshot $restore_path from S3"
      s3_curl GET "$(s3_url "$(s3_key "$restore_path")")" -o "$SNAP_DIR/$restore_path" ||
        { rm -f "$SNAP_DIR/$restore_path"; fatal "failed to download snapshot $restore_path from S3"; }
      path=$SNAP_DIR/$restore_path
    fi
    [ -f "$path" ] || fatal "etcd: snapshot path does not exist: $path"
    log info "Pre-restore etcd database moved to /var/lib/rancher/k3s/server/db/etcd-old-$(date +%s)"
    lab_post /lab/k3s/etcd-snapshot/restore -H 'Content-Type: application/octet-stream' \
      --data-binary "@$path" -o /dev/null || fatal "failed to restore etcd snapshot $path"
    mkdir -p /var/lib/rancher/k3s/server/db
  fi
  log info "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete \${datadir}/server/db on each peer etcd server and rejoin the nodes"
}
