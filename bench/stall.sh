#!/bin/bash
# Snapshot stall, the same test for real etcd and ikada: one member, 1M keys
# of 256 B preloaded, --snapshot-count 10000, then 20,000 sequential puts
# from one client; the max put latency covers the snapshots taken meanwhile.
# Usage: bench/stall.sh [BUILD_DIR]   (BUILD_DIR holds ikada and ikada-bench)
# Prints one line per server. Takes a few minutes; uses loopback only.
set -u
B=${1:-.}
run() { # server snapcount
    local d port pport bin pid rss
    d=$(mktemp -d)
    port=$((31000 + RANDOM % 2000))
    pport=$((port + 5000))
    if [ "$1" = etcd ]; then bin=/usr/bin/etcd; else bin=$B/ikada; fi
    "$bin" --name s --data-dir "$d/data" \
        --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "s=http://127.0.0.1:$pport" \
        --snapshot-count "$2" --quota-backend-bytes 8589934592 >"$d/log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$port" endpoint health \
            >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$B/ikada-bench" --endpoints="127.0.0.1:$port" --clients=100 --conns=10 \
        --total=1000000 --sequential-keys --key-space-size=1000000 \
        --val-size=256 --json put >"$d/load.json" 2>/dev/null
    "$B/ikada-bench" --endpoints="127.0.0.1:$port" --clients=1 --conns=1 \
        --total=20000 --key-space-size=1000000 --val-size=256 --json put \
        >"$d/m.json" 2>/dev/null
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    /usr/bin/python3 - "$1" "$2" "$d" "$rss" <<'PY'
import json, sys
name, snap, d, rss = sys.argv[1:5]
load = json.load(open(d + "/load.json"))
m = json.load(open(d + "/m.json"))
l = m["latency_ms"]
print("%s snapshot-count=%s: load %.0f puts/s; measured puts p50 %.2f p99 %.2f "
      "max %.1f ms (%d ops); RSS %d MiB" % (name, snap, load["rps"], l["p50"],
      l["p99"], l["max"], m["ops"], int(rss) // 1024))
PY
    kill "$pid"
    wait "$pid" 2>/dev/null
    rm -rf "$d"
}
run ikada 10000
run etcd 10000
