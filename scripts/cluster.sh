#!/bin/sh
# Start a local 3-member ikada cluster on loopback, the same layout etcd's
# own Procfile uses (client ports 2379/22379/32379, peer ports
# 2380/22380/32380), with data dirs under ./cluster-data. Ctrl-C stops it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/ikada"
data="${IKADA_CLUSTER_DATA:-$top/cluster-data}"
[ -x "$bin" ] || { echo "cluster.sh: $bin not built (run scripts/build.sh)" >&2; exit 1; }
mkdir -p "$data"

cluster="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=""
stop() {
    trap - INT TERM EXIT
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
    echo "cluster stopped (data kept in $data)"
}
trap stop INT TERM EXIT

start() { # name client-port peer-port
    "$bin" --name "$1" --data-dir "$data/$1.etcd" \
        --listen-client-urls "http://127.0.0.1:$2" \
        --advertise-client-urls "http://127.0.0.1:$2" \
        --listen-peer-urls "http://127.0.0.1:$3" \
        --initial-advertise-peer-urls "http://127.0.0.1:$3" \
        --initial-cluster "$cluster" \
        --initial-cluster-token ikada-quickstart \
        --initial-cluster-state new >"$data/$1.log" 2>&1 &
    pids="$pids $!"
}
start m1 2379 2380
start m2 22379 22380
start m3 32379 32380

endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
i=0
until ETCDCTL_API=3 etcdctl --endpoints=$endpoints endpoint health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "cluster.sh: the cluster did not become healthy; logs in $data/*.log" >&2
        tail -n 5 "$data"/*.log >&2
        exit 1
    fi
    sleep 0.1
done
cat <<MSG
ikada 3-member cluster is up (logs: $data/m1.log m2.log m3.log).

Talk to it with etcdctl or ikadactl (same commands, same output):
  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS=$endpoints
  etcdctl put greeting hello
  $top/ikadactl get greeting
  $top/ikadactl endpoint status --cluster -w table
  etcdctl member list -w table

Load it with ./ikada-bench, e.g.:
  ./ikada-bench --endpoints=$endpoints --clients=50 --total=10000 put

Press Ctrl-C to stop the cluster.
MSG
wait
