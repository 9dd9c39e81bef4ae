#!/bin/bash
# tests/integration/bench_smoke.sh: ikada-bench against one member.
#
# Starts the server under test ($top_builddir/ikada, or IKADA_TEST_SERVER,
# "etcd" for the real one) as a single member on fresh loopback ports and
# runs a few short ikada-bench workloads with --json. Each must exit 0 and
# print exactly one JSON object (parsed with python's json module) with
# ops > 0, errors == 0, the documented keys, and sane numbers (p50 <= p99
# <= max, rps about ops/seconds). Also: ops equal --total, the put data is
# really there (etcdctl counts the keys), a bad endpoint fails with exit 1,
# and a bad flag with exit 2. The progress bar: none when stderr is not a
# terminal (the runs above write it to a file), drawn on a terminal (a run
# under script(1), which gives it a pseudo-terminal).

set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
BENCH=${top_builddir:-.}/ikada-bench
[[ -x $BENCH ]] || ik_skip "$BENCH is not built"

ik_server_start s "$SUT"
ik_server_wait_ready s
URL=$(ik_server_url s)

# check_json FILE WANT_OPS (0: any positive number)
check_json() {
    "$IK_PYTHON" - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
want = int(sys.argv[2])
obj = json.loads(text)  # exactly one JSON document (extra text fails)
assert isinstance(obj, dict), "not an object"
keys = {"ops", "errors", "seconds", "rps", "latency_ms"}
assert set(obj) == keys, "keys %s" % sorted(obj)
lat = obj["latency_ms"]
assert set(lat) == {"min", "avg", "p50", "p90", "p99", "p999", "max"}, lat
assert obj["errors"] == 0, "errors: %r" % obj["errors"]
assert obj["ops"] > 0, "no ops"
if want:
    assert obj["ops"] == want, "ops %d, want %d" % (obj["ops"], want)
assert obj["seconds"] > 0
assert abs(obj["rps"] - obj["ops"] / obj["seconds"]) <= 0.01 * obj["rps"] + 0.01
assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
assert lat["min"] <= lat["avg"] <= lat["max"]
print("ok: %d ops, %.0f/s, p99 %.3f ms" % (obj["ops"], obj["rps"], lat["p99"]))
EOF
}

run() { # NAME WANT_OPS ARGS...
    local name=$1 want=$2 rc=0
    shift 2
    timeout 60 "$BENCH" --endpoints="$URL" --json "$@" \
        >"$IK_TMP/$name.out" 2>"$IK_TMP/$name.err" || rc=$?
    if ((rc != 0)); then
        cat "$IK_TMP/$name.err" >&2
        ik_fail "$name: ikada-bench exited $rc"
    fi
    check_json "$IK_TMP/$name.out" "$want" >"$IK_TMP/$name.check" 2>&1 || {
        cat "$IK_TMP/$name.out" "$IK_TMP/$name.err" "$IK_TMP/$name.check" >&2
        ik_fail "$name: bad result"
    }
    ik_log "$name: $(cat "$IK_TMP/$name.check")"
}

run put 2000 --clients 20 --conns 2 put --total 2000 --key-space-size 500 \
    --sequential-keys --val-size 64
n=$(ectl s get 00000000 00000500 --keys-only --limit 1 -w json |
    "$IK_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["count"])')
[[ $n == 500 ]] || ik_fail "put: $n keys in the store, want 500"

run range-l 1000 --clients 10 range 00000000 00000500 --limit 10 --total 1000
run range-s 0 --clients 10 range 00000000 --consistency s --duration 1s
run txn-put 300 --clients 5 txn-put --txn-ops 3 --key-space-size 100 --total 300

# No progress bar (nor any carriage return) when stderr is a file.
for f in "$IK_TMP"/{put,range-l,range-s,txn-put}.err; do
    if grep -q $'\r' "$f" || grep -q '%.*ops' "$f"; then
        ik_fail "progress output on a non-terminal stderr ($f): $(head -c 200 "$f")"
    fi
done
# On a terminal: the bar ("[====...] 100% N ops") is drawn on stderr while
# stdout still carries exactly the one JSON object.
if command -v script >/dev/null; then
    rc=0
    timeout 60 script -qec "$BENCH --endpoints=$URL --json --clients 4 put \
        --total 400 --key-space-size 50 >$IK_TMP/tty.out" /dev/null \
        </dev/null >"$IK_TMP/tty.typescript" 2>&1 || rc=$?
    [[ $rc == 0 ]] || ik_fail "tty run: exit $rc: $(cat "$IK_TMP/tty.typescript")"
    grep -q '100% 400 ops' "$IK_TMP/tty.typescript" ||
        ik_fail "no progress bar on a terminal: $(head -c 300 "$IK_TMP/tty.typescript")"
    check_json "$IK_TMP/tty.out" 400 >/dev/null ||
        ik_fail "tty run: bad JSON on stdout: $(cat "$IK_TMP/tty.out")"
    ik_log "progress bar: drawn on a terminal, absent otherwise"
else
    ik_log "script(1) missing: progress bar on a terminal not checked"
fi

# Unusable endpoint: exit 1 with the dial error; bad usage: exit 2.
read -r -a dead < <(ik_free_ports 1)
rc=0
"$BENCH" --endpoints="127.0.0.1:${dead[0]}" --json put --total 10 \
    >"$IK_TMP/dead.out" 2>"$IK_TMP/dead.err" || rc=$?
[[ $rc == 1 ]] || ik_fail "dead endpoint: exit $rc, want 1"
grep -q 'connection refused' "$IK_TMP/dead.err" ||
    ik_fail "dead endpoint: no dial error: $(cat "$IK_TMP/dead.err")"
[[ ! -s $IK_TMP/dead.out ]] || ik_fail "dead endpoint: output on stdout"
rc=0
"$BENCH" --endpoints="$URL" put --no-such-flag >/dev/null 2>&1 || rc=$?
[[ $rc == 2 ]] || ik_fail "bad flag: exit $rc, want 2"

ik_server_problems s || ik_fail "sanitizer reports in the server log"
ik_log "PASS"
