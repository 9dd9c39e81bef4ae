#!/bin/bash
# bench/compare.sh: ikada against real etcd, side by side, same tool.
#
# Starts a 3-member real etcd cluster, runs the workloads below with
# ikada-bench, stops it, then does the same with a 3-member ikada cluster
# (never both at once: they would share the CPUs). Both get identical
# flags: loopback ports, --heartbeat-interval 100 --election-timeout 1000
# --snapshot-count 100000, data dirs on the same file system, default
# durability (both fsync the raft log before acknowledging a write; neither
# gets an "unsafe" flag). Every workload spreads its clients over all three
# members (followers forward writes to the leader in both).
#
# Workloads (each --duration $SECS except the load):
#   load      100k sequential keys of 256 B (--total, 200 clients); the RSS
#             of every member is read from /proc afterwards
#   put       200 clients, random keys among the 100k, 256 B values
#   put-3     3 clients, one per member (latency of an unloaded cluster,
#             through the leader and through followers)
#   range-l   200 clients, linearizable range of one key
#   range-s   200 clients, serializable range of one key
#   txn-put   200 clients, one put per txn
#   watch-lat 10 streams x 10 watchers on one key, 100 puts/s paced,
#             put-to-event latency
#   lease-ka  100 clients, one lease and keep-alive stream each
#
# Prints a table (ops/s of each, ratio ikada/etcd, p50/p99 of each, and the
# CPU ikada-bench itself used, as it shares the machine) and writes every
# raw JSON result to $OUT. With gnuplot installed it also draws p50, p90
# and p99 of every workload, etcd next to ikada, to $OUT/latency.png (and
# next to the --results file); without gnuplot that is skipped and said.
#
# usage: bench/compare.sh [--results FILE] [BUILD_DIR]
#   BUILD_DIR  holds ./ikada and ./ikada-bench (default: the current
#              directory)
#   --results FILE   also write the results as markdown (machine, date,
#                    command, table) to FILE, e.g. bench/RESULTS.md, and
#                    the plot beside it (latency.png in FILE's directory)
# env: SECS (default 4) seconds per workload; KEYS (default 100000) keys
#      loaded; ETCD (default /usr/bin/etcd); OUT (default a temp dir, kept);
#      PORT_BASE (default 45100) first loopback port tried for the members
#
# It only ever signals the PIDs it started, and only while their command
# line still names this run's temp dir.

set -euo pipefail

results=
while (($# > 0)); do
    case $1 in
    --results)
        results=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *) break ;;
    esac
done
build=$(cd "${1:-.}" && pwd)
IKADA=$build/ikada
BENCH=$build/ikada-bench
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
SECS=${SECS:-4}
KEYS=${KEYS:-100000}
for f in "$IKADA" "$BENCH" "$ETCD" "$ETCDCTL" /usr/bin/python3 /usr/bin/time; do
    [[ -x $f ]] || {
        echo "compare.sh: $f not found" >&2
        exit 1
    }
done
out_env=${OUT:+OUT=$OUT }
command_line="bench/compare.sh $*"
[[ -z $results ]] || command_line="bench/compare.sh --results $results $*"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ikada-compare.XXXXXX")
OUT=${OUT:-$TMP/out}
mkdir -p "$OUT"
PIDS=()

log() { printf 'compare.sh: %s\n' "$*" >&2; }

# Signal one PID we started, if it still is ours.
ours() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$TMP/"; }

stop_all() {
    local pid i
    for pid in "${PIDS[@]}"; do
        ours "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 100; i++)); do
            ours "$pid" || break
            sleep 0.1
        done
        ours "$pid" && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    # keep $OUT (raw results); drop data dirs and logs unless asked
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        find "$TMP" -mindepth 1 -maxdepth 1 ! -path "$OUT" -exec rm -rf {} +
        [[ $OUT == "$TMP/out" ]] || rmdir "$TMP" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports N: N loopback ports that can be bound now, taken from
# [PORT_BASE, PORT_BASE + 900) (default 45100: clear of the fixed ports
# the test suites use), skipping busy ones.
free_ports() {
    /usr/bin/python3 - "$1" "${PORT_BASE:-45100}" <<'EOF'
import socket, sys
want, base = int(sys.argv[1]), int(sys.argv[2])
socks = []
for port in range(base, base + 900):
    if len(socks) == want:
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
if len(socks) < want:
    sys.exit("compare.sh: no %d free ports from %d" % (want, base))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# start_cluster KIND BIN: 3 members KIND-1..3; sets ENDPOINTS
declare -A CPORT=()
start_cluster() {
    local kind=$1 bin=$2 ports cluster="" i token
    read -r -a ports < <(free_ports 6)
    token="cmp-$kind-$$"
    for i in 1 2 3; do
        CPORT[$kind-$i]=${ports[$((2 * i - 2))]}
        cluster+="${cluster:+,}$kind-$i=http://127.0.0.1:${ports[$((2 * i - 1))]}"
    done
    for i in 1 2 3; do
        local c=${ports[$((2 * i - 2))]} p=${ports[$((2 * i - 1))]}
        "$bin" --name "$kind-$i" --data-dir "$TMP/$kind-$i.data" \
            --listen-client-urls "http://127.0.0.1:$c" \
            --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" \
            --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$cluster" --initial-cluster-token "$token" \
            --initial-cluster-state new \
            --heartbeat-interval 100 --election-timeout 1000 \
            --snapshot-count 100000 \
            </dev/null >"$TMP/$kind-$i.log" 2>&1 &
        PIDS+=($!)
    done
    ENDPOINTS="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"
    for ((i = 0; i < 200; i++)); do
        if ETCDCTL_API=3 "$ETCDCTL" --endpoints="$ENDPOINTS" \
            --command-timeout=2s endpoint health >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    # Healthy, and really our members (names unique to this run), alive.
    local names
    names=$(ETCDCTL_API=3 "$ETCDCTL" --endpoints="$ENDPOINTS" member list 2>/dev/null |
        grep -c ", $kind-[123], " || true)
    for pid in "${PIDS[@]}"; do
        ours "$pid" || names=0
    done
    if [[ $names != 3 ]]; then
        tail -n 20 "$TMP/$kind"-*.log >&2
        log "the $kind cluster did not come up"
        exit 1
    fi
}

# rss_kib: sum and max of the members' VmRSS, "SUM MAX" in KiB
rss_kib() {
    local pid sum=0 max=0 v
    for pid in "${PIDS[@]}"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + v))
        ((v > max)) && max=$v
    done
    echo "$sum $max"
}

# bench KIND NAME ARGS...: run ikada-bench, keep its JSON
bench() {
    local kind=$1 name=$2 rc=0
    shift 2
    /usr/bin/time -f '%e %U %S' -o "$OUT/$kind-$name.time" \
        timeout $((SECS + 120)) "$BENCH" --endpoints="$ENDPOINTS" --json "$@" \
        >"$OUT/$kind-$name.json" 2>"$OUT/$kind-$name.err" || rc=$?
    if ((rc != 0)); then
        log "$kind $name: ikada-bench exited $rc: $(head -c 300 "$OUT/$kind-$name.err")"
        echo '{}' >"$OUT/$kind-$name.json"
    fi
    log "$kind $name: $(cat "$OUT/$kind-$name.json")"
}

run_suite() {
    local kind=$1 bin=$2
    log "starting 3-member $kind ($bin)"
    start_cluster "$kind" "$bin"
    bench "$kind" load --clients 200 --conns 10 put --total "$KEYS" \
        --sequential-keys --key-space-size "$KEYS" --val-size 256
    sleep 1
    rss_kib >"$OUT/$kind-rss.txt"
    log "$kind RSS after $KEYS keys (sum max KiB): $(cat "$OUT/$kind-rss.txt")"
    bench "$kind" put --clients 200 --conns 10 put --duration "${SECS}s" \
        --key-space-size "$KEYS" --val-size 256
    bench "$kind" put-3 --clients 3 --conns 3 put --duration "${SECS}s" \
        --key-space-size "$KEYS" --val-size 256
    bench "$kind" range-l --clients 200 --conns 10 range 00000042 \
        --duration "${SECS}s"
    bench "$kind" range-s --clients 200 --conns 10 range 00000042 \
        --consistency s --duration "${SECS}s"
    bench "$kind" txn-put --clients 200 --conns 10 txn-put --duration "${SECS}s" \
        --key-space-size "$KEYS" --val-size 256
    bench "$kind" watch-lat --conns 3 watch-latency --duration "${SECS}s" \
        --streams 10 --watchers-per-stream 10 --put-rate 100
    bench "$kind" lease-ka --clients 100 --conns 10 lease-keepalive \
        --duration "${SECS}s"
    stop_all
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS
run_suite etcd "$ETCD"
run_suite ikada "$IKADA"
log "done in $((SECONDS - t0)) s; raw results in $OUT"

table=$(/usr/bin/python3 - "$OUT" "$KEYS" <<'EOF'
import json, os, sys
out, keys = sys.argv[1], int(sys.argv[2])
rows = [("load", "put %dk seq keys, 200 clients" % (keys // 1000)),
        ("put", "put, 200 clients"),
        ("put-3", "put, 3 clients (1 per member)"),
        ("range-l", "range linearizable, 200 clients"),
        ("range-s", "range serializable, 200 clients"),
        ("txn-put", "txn-put, 200 clients"),
        ("watch-lat", "watch-latency events, 100 watchers, puts paced 100/s"),
        ("lease-ka", "lease-keepalive, 100 clients")]
def load(kind, name):
    try:
        with open(os.path.join(out, "%s-%s.json" % (kind, name))) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
def num(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d
def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)
def cpu(kind, name):
    # ikada-bench's own CPU use, percent of one CPU over its run
    try:
        e, u, s = map(float, open(os.path.join(out, "%s-%s.time" % (kind, name))).read().split()[-3:])
        return (u + s) / e * 100 if e > 0 else None
    except (OSError, ValueError):
        return None
print("| workload | etcd ops/s | ikada ops/s | ikada/etcd | p50 ms etcd / ikada | p99 ms etcd / ikada | errors etcd/ikada | bench CPU % etcd/ikada |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
plot = []
for name, label in rows:
    e, i = load("etcd", name), load("ikada", name)
    er, ir = num(e, "rps"), num(i, "rps")
    ratio = ir / er if er and ir is not None else None
    ep, ip = num(e, "latency_ms", "p99"), num(i, "latency_ms", "p99")
    e5, i5 = num(e, "latency_ms", "p50"), num(i, "latency_ms", "p50")
    print("| %s | %s | %s | %s | %s / %s | %s / %s | %s/%s | %s/%s |" % (
        label, fmt(er, ".0f"), fmt(ir, ".0f"),
        "n/a" if ratio is None else "%.2fx" % ratio,
        fmt(e5, ".2f"), fmt(i5, ".2f"), fmt(ep, ".2f"), fmt(ip, ".2f"),
        fmt(num(e, "errors"), "d"), fmt(num(i, "errors"), "d"),
        fmt(cpu("etcd", name), ".0f"), fmt(cpu("ikada", name), ".0f")))
    def pct(d, q):
        v = num(d, "latency_ms", q)
        return "NaN" if v is None else "%.4f" % v
    plot.append(" ".join([name] + [pct(d, q) for d in (e, i)
                                   for q in ("p50", "p90", "p99")]))
def rss(kind):
    try:
        s, m = open(os.path.join(out, kind + "-rss.txt")).read().split()
        return int(s) / 1024, int(m) / 1024
    except (OSError, ValueError):
        return None, None
(es, em), (is_, im) = rss("etcd"), rss("ikada")
print()
print("| RSS after loading %d keys of 256 B | etcd | ikada | ikada/etcd |" % keys)
print("|---|---:|---:|---:|")
if es and is_:
    print("| largest member (MiB) | %.1f | %.1f | %.2fx |" % (em, im, im / em))
    print("| sum of 3 members (MiB) | %.1f | %.1f | %.2fx |" % (es, is_, is_ / es))
with open(os.path.join(out, "latency.dat"), "w") as f:
    f.write("# workload etcd_p50 etcd_p90 etcd_p99 ikada_p50 ikada_p90 ikada_p99 (ms)\n")
    f.write("\n".join(plot) + "\n")
EOF
)
echo
echo "$table"

# The latency plot: p50, p90 and p99 of every workload, etcd next to
# ikada, log scale (gnuplot; optional, its absence is reported).
plot_note="not drawn: gnuplot is not installed (scripts/deps.sh installs gnuplot-nox)"
if command -v gnuplot >/dev/null; then
    if gnuplot >"$OUT/gnuplot.log" 2>&1 <<EOF; then
set terminal pngcairo size 1100,1000 font ",10"
set output "$OUT/latency.png"
set multiplot layout 3,1 title "ikada-bench latency, 3 members each, same machine (ms, log scale, lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set grid ytics
set key outside right top
set ylabel "ms"
set xtics rotate by -20 scale 0 font ",9"
do for [q in "p50 p90 p99"] {
    c = (q eq "p50") ? 2 : (q eq "p90") ? 3 : 4
    set title q
    plot "$OUT/latency.dat" using c:xtic(1) title "etcd 3.4.23" lc rgb "#4477aa", \\
         "" using c+3 title "ikada" lc rgb "#ee6677"
}
unset multiplot
EOF
        plot_note="$OUT/latency.png"
        log "latency plot: $OUT/latency.png"
    else
        plot_note="not drawn: gnuplot failed ($(head -c 200 "$OUT/gnuplot.log"))"
        log "latency plot $plot_note"
    fi
else
    log "latency plot $plot_note"
fi

# Sections measured by hand live below this line in the results file;
# a rewrite keeps them.
marker='<!-- measured by hand below: bench/compare.sh keeps what follows -->'
if [[ -n $results ]]; then
    kept=
    if [[ -f $results ]] && grep -qxF -- "$marker" "$results"; then
        kept=$(awk -v m="$marker" 'f || $0 == m { f = 1; print }' "$results")
    fi
    if [[ $plot_note == "$OUT/latency.png" ]]; then
        cp "$OUT/latency.png" "$(dirname "$results")/latency.png"
        plot_note="$(dirname "$results")/latency.png (p50/p90/p99 per workload)"
    fi
    {
        echo "# ikada vs etcd: ikada-bench results"
        echo
        echo "Written by \`bench/compare.sh\` (see the top of that script for"
        echo "the cluster settings and workloads). Numbers are from one run;"
        echo "re-run to refresh them."
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
        echo "- data dirs: $(df -T "$TMP" | awk 'NR==2 {print $2 " on " $1}') (fsync on, as both default)"
        echo "- etcd $("$ETCD" --version | awk 'NR==1 {print $NF}'); ikada $("$IKADA" --version 2>/dev/null | awk 'NR==1 {print $NF}') (source tree at git $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?'), plus uncommitted changes if any)"
        echo "- command: \`SECS=$SECS KEYS=$KEYS $out_env$command_line\` (build dir $build)"
        echo "- clients spread over all 3 members; $SECS s per workload;"
        echo "  the load and the servers share the same $(nproc) CPUs"
        echo "- load average before the run: $load_before (other work on the"
        echo "  machine at the time adds noise to both columns alike)"
        echo
        echo "$table"
        echo
        echo "ops/s: checked successful operations per second (ikada-bench"
        echo "--json \"rps\"); latencies from request sent to response"
        echo "checked. watch-latency counts events received (put sent to event"
        echo "received, for each of the 100 watchers); its puts are paced at"
        echo "100/s and each waits for all its events, so late events lower"
        echo "its ops/s. bench CPU: ikada-bench's own CPU time over its run"
        echo "(100 = one full CPU), taken from the same 2 CPUs."
        echo
        echo "Latency plot: $plot_note"
        if [[ -n $kept ]]; then
            echo
            printf '%s\n' "$kept"
        fi
    } >"$results.tmp"
    mv "$results.tmp" "$results"
    log "wrote $results"
fi
