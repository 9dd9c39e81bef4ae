#!/bin/bash
# tests/integration/durability.sh: acknowledged writes survive kill -9.
#
# The server under test gets a stream of puts from two client threads
# (durability_load.py, over gRPC with python3-etcd3); every acknowledged put
# is logged with its revision. After a few thousand acknowledgements the
# server is killed with SIGKILL in the middle of the load, restarted on the
# same data dir, and every acknowledged write must be there with its value
# and revision, and the store revision must not go backwards. This is done
# twice in a row, then once more after a graceful stop.
#
# Env: IKADA_TEST_SERVER=etcd runs it against real etcd, IK_KEEP_TMP=1 keeps
# the data dir, logs and ack logs, DUR_ACKS (default 2000) sets how many
# acknowledged writes to wait for before each kill.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
LOAD=$IK_LIBDIR/durability_load.py
ACKS=${DUR_ACKS:-2000}

"$IK_PYTHON" -c 'import etcd3' 2>/dev/null ||
    ik_skip "python3 module etcd3 (Debian package python3-etcd3) is missing"

ik_server_start dur "$SUT"
ik_server_wait_ready dur
EP=$(ik_server_url dur)
min_rev=0

lines() {
    local n=0
    [[ -f $1 ]] && n=$(wc -l <"$1")
    printf '%s\n' "$n"
}

# verify LABEL: checks every ack log so far; updates min_rev.
verify() {
    local out rc=0
    out=$("$IK_PYTHON" "$LOAD" verify "$EP" dur/ "$min_rev" "$IK_TMP"/ack.* 2>&1) ||
        rc=$?
    printf '%s\n' "$out" | sed '$d'
    if ((rc != 0)); then
        ik_dump_log dur
        ik_fail "$1: verification failed (status $rc)"
    fi
    min_rev=$(printf '%s\n' "$out" | tail -n 1)
}

# round N: write load, kill -9 during it, restart, verify.
round() {
    local n=$1 ack=$IK_TMP/ack.$1 wout=$IK_TMP/write.$1.out wpid deadline
    local wrc=0
    : >"$ack"
    "$IK_PYTHON" "$LOAD" write "$EP" "dur/r$n/" 1000000 "$ack" 2 \
        >"$wout" 2>&1 &
    wpid=$!
    deadline=$((SECONDS + 40))
    while (($(lines "$ack") < ACKS)); do
        if ! kill -0 "$wpid" 2>/dev/null; then
            cat "$wout" >&2
            ik_dump_log dur
            ik_fail "round $n: the writer stopped after $(lines "$ack") acknowledged writes, before the kill"
        fi
        if ((SECONDS >= deadline)); then
            ik_dump_log dur
            ik_fail "round $n: only $(lines "$ack") writes acknowledged in 40s"
        fi
        sleep 0.05
    done
    ik_server_kill dur
    wait "$wpid" || wrc=$?
    cat "$wout"
    ((wrc == 0)) || ik_fail "round $n: writer failed (status $wrc)"
    grep -q 'stopped:' "$wout" ||
        ik_fail "round $n: the writer was not interrupted by the kill"
    echo "round $n: killed -9 after $(lines "$ack") acknowledged writes"
    ik_server_restart dur
    ik_server_wait_ready dur
    verify "round $n"
}

round 1
round 2

# A graceful stop must keep everything too, and the revision must not move.
before=$min_rev
ik_server_stop dur
echo "graceful stop: exit status $IK_LAST_RC"
ik_clean_exit_status "$IK_LAST_RC" || {
    ik_dump_log dur
    ik_fail "server exited with status $IK_LAST_RC on SIGTERM"
}
ik_server_restart dur
ik_server_wait_ready dur
verify "after graceful restart"
((min_rev == before)) ||
    ik_fail "revision changed across a graceful restart: $before -> $min_rev"
ik_server_stop dur
ik_clean_exit_status "$IK_LAST_RC" ||
    ik_fail "server exited with status $IK_LAST_RC on SIGTERM"
ik_server_problems dur || ik_fail "sanitizer report in the server log"
echo "PASS: acknowledged writes survived two kill -9 and a graceful restart"
