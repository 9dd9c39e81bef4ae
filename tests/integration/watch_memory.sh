#!/bin/bash
# tests/integration/watch_memory.sh: memory of 10,000 watchers and of a
# consumer that never reads, real etcd and the server under test measured
# in the same run (a measurement: no ratio is asserted).
#
# For each server in turn (etcd first), a fresh single member;
# wl_client.py mem (grpc.aio) opens WATCH_MEM_STREAMS streams (default 100,
# over 10 connections) of WATCH_MEM_PER_STREAM watchers (default 100), each
# on its own key. Then 3 bursts each put every watched key once (1 KiB
# values, txns of 10 puts), and wait until every watcher got its event:
# round 1 with all watchers reading; before round 2 one more watcher, on
# the whole prefix with prev_kv and on its own connection with a small
# receive window, is opened and its stream never read again (rounds 2
# and 3: ~40 MB of events it does not take). The server's VmRSS
# (/proc/PID/status) is read at start, with the watchers open, after each
# round and after everything was cancelled; printed side by side. Passes
# when both servers stay up, deliver every event to the reading watchers
# and still answer (a read while the stalled stream is open, then
# `etcdctl endpoint health`). Skips (77) if 10,000 watchers cannot be
# opened within 40 s.
#
# Env: IKADA_TEST_SERVER=etcd, IK_KEEP_TMP=1, WATCH_MEM_STREAMS,
# WATCH_MEM_PER_STREAM.

set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
WL=$IK_LIBDIR/wl_client.py
"$IK_PYTHON" -c 'import etcd3, grpc.aio' 2>/dev/null ||
    ik_skip "python3 modules etcd3 / grpc.aio (Debian python3-etcd3) are missing"
STREAMS=${WATCH_MEM_STREAMS:-100}
PER=${WATCH_MEM_PER_STREAM:-100}
TOTAL=$((STREAMS * PER))

field() {
    "$IK_PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# measure NAME BIN: prints the RESULT JSON line to $IK_TMP/NAME.result
measure() {
    local name=$1 bin=$2 rc=0 res
    ik_server_start "$name" "$bin"
    ik_server_wait_ready "$name"
    timeout -k 5 120 "$IK_PYTHON" "$WL" mem --endpoint "$(ik_server_url "$name")" \
        --pid "${IK_PID[$name]}" --streams "$STREAMS" --per-stream "$PER" \
        --open-timeout 40 >"$IK_TMP/$name.out" 2>"$IK_TMP/$name.err" || rc=$?
    res=$(sed -n 's/^RESULT //p' "$IK_TMP/$name.out")
    if ((rc == 77)); then
        ik_skip "$name (${bin##*/}): only $(field "$res" opened) of $TOTAL watchers opened in $(field "$res" open_s)s"
    fi
    if ((rc != 0)) || [[ -z $res ]]; then
        tail -n 20 "$IK_TMP/$name.err" >&2
        ik_server_alive "$name" || ik_dump_log "$name"
        ik_fail "$name (${bin##*/}): the watcher client failed (status $rc)"
    fi
    printf '%s\n' "$res" >"$IK_TMP/$name.result"
    ik_server_alive "$name" || {
        ik_dump_log "$name"
        ik_fail "$name (${bin##*/}) died"
    }
    ectl "$name" --command-timeout=5s endpoint health >/dev/null 2>&1 || {
        ik_dump_log "$name"
        ik_fail "$name (${bin##*/}) does not answer endpoint health after the test"
    }
    ik_server_stop "$name"
    ik_clean_exit_status "$IK_LAST_RC" || {
        ik_dump_log "$name"
        ik_fail "$name (${bin##*/}) exited with status $IK_LAST_RC on SIGTERM"
    }
    ik_server_problems "$name" || ik_fail "sanitizer report in $name's log"
}

measure ref "$IK_ETCD"
measure sut "$SUT"

fail=0
printf '%-7s %8s %6s | VmRSS: %7s %8s %8s %8s %8s %7s | %s\n' server watchers open_s \
    start watchers round1 round2 round3 end delivered
for name in ref sut; do
    res=$(cat "$IK_TMP/$name.result")
    bin=${IK_BIN[$name]}
    "$IK_PYTHON" - "$res" "${bin##*/}" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
mb = lambda k: "%.1fM" % (r[k] / 1024.0) if k in r else "-"
print("%-7s %8d %6.2f |        %7s %8s %8s %8s %8s %7s | %d/%d" % (
    sys.argv[2], r["opened"], r["open_s"], mb("rss_start_kb"),
    mb("rss_watchers_kb"), mb("rss_burst1_kb"), mb("rss_burst2_kb"),
    mb("rss_burst3_kb"), mb("rss_end_kb"), r["delivered"],
    r["burst_events"]))
EOF
    [[ $(field "$res" answers) == True ]] || {
        echo "FAIL: $name (${bin##*/}) did not answer a read with the stalled stream open: $(field "$res" answer_error)"
        fail=1
    }
    [[ $(field "$res" delivered) == "$(field "$res" burst_events)" ]] || {
        echo "FAIL: $name (${bin##*/}) delivered $(field "$res" delivered) of $(field "$res" burst_events) events to the reading watchers"
        fail=1
    }
    [[ $(field "$res" burst_errors) == 0 ]] || {
        echo "FAIL: $name (${bin##*/}): $(field "$res" burst_errors) burst txns failed"
        fail=1
    }
done
for name in ref sut; do
    echo "RESULT server=${IK_BIN[$name]##*/} $(cat "$IK_TMP/$name.result")"
done
((fail == 0)) || ik_fail "see above"
echo "PASS: $TOTAL watchers and a never-reading consumer on both servers; both stayed up and answered"
