#!/bin/bash
# tests/integration/cluster_catchup.sh: a follower killed with SIGKILL
# misses 50,000 writes and must catch up after its restart.
#
# 3 members with --snapshot-count 1000, so the leader snapshots and
# compacts its log many times while the follower is down and the follower
# has to be brought back with a snapshot. The keys are written by
# cluster_load.py bulk (several threads, small txn batches so that there
# are far more raft entries than the log keeps) to the two live members.
# The catch-up time runs from the restart of the follower until its
# raftAppliedIndex has reached the leader's and a serializable get on it
# sees the last key. Then all three members must hold the same data:
# HashKV at one revision equal everywhere, and every key with its value on
# the restarted member.
#
# Env: IKADA_TEST_SERVER=etcd, CL_KEEP_TMP=1, CATCHUP_KEYS (default 50000),
# CATCHUP_BATCH (keys per txn, default 8).

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)
KEYS=${CATCHUP_KEYS:-50000}
BATCH=${CATCHUP_BATCH:-8}
CL_SNAPCOUNT=1000

cl_cluster_new c 3 "$SUT"
cl_cluster_start c
LEADER=$(cl_leader c)
F=$(cl_follower c)
[[ -n $F ]] || cl_fail "no follower found"
cl_ectl "$F" put k/before-kill x >/dev/null
cl_kill "$F"
echo "leader $LEADER; killed follower $F with SIGKILL"

live=()
for m in $(cl_members c); do
    [[ $m == "$F" ]] || live+=("$m")
done
out=$("$CL_PYTHON" "$CL_LOAD" bulk --endpoints "$(cl_urls c "${live[@]}")" \
    --prefix b/ --count "$KEYS" --threads 6 --batch "$BATCH" 2>&1) || {
    printf '%s\n' "$out" >&2
    cl_dump_logs c
    cl_fail "bulk write of $KEYS keys failed"
}
printf '%s\n' "$out"
LAST_KEY=$(printf '%s\n' "$out" | tail -n 1 | cut -d' ' -f2)
LEADER=$(cl_leader c)
echo "leader now $LEADER: raftIndex $(cl_status_field "$LEADER" raftIndex)"

# Restart the follower and time its catch-up.
T0=$(cl_now)
cl_spawn "$F"
deadline=$((SECONDS + 40))
while :; do
    if ! cl_alive "$F"; then
        cl_dump_log "$F"
        cl_fail "restarted follower $F exited"
    fi
    fa=$(cl_status_field "$F" raftAppliedIndex || true)
    la=$(cl_status_field "$LEADER" raftAppliedIndex || true)
    if [[ -n $fa && -n $la ]] && ((fa >= la)) &&
        cl_ectl "$F" --command-timeout=2s get "$LAST_KEY" --consistency=s \
            --print-value-only 2>/dev/null | grep -q .; then
        break
    fi
    if ((SECONDS >= deadline)); then
        cl_dump_log "$F"
        cl_fail "follower $F not caught up 40s after restart (applied ${fa:-?}, leader ${la:-?})"
    fi
    sleep 0.05
done
CT=$(printf '%s %s\n' "$T0" "$(cl_now)" | awk '{printf "%.3f", $2 - $1}')
echo "catch-up time: ${CT}s (restart to applied index $fa >= leader's $la and last key visible)"
echo "snapshot files in $F's data dir now: $(find "${CL_DIR[$F]}" -type f \
    -name '*snap*' ! -name '*.tmp' | sed 's|.*/||' | sort | tr '\n' ' ')"

# Same data everywhere.
REV=$(cl_revision "$LEADER")
for m in $(cl_members c); do
    cl_revision "$m" >/dev/null
done
mapfile -t all < <(cl_members c)
cl_hashkv_check "$REV" "${all[@]}" ||
    cl_fail "HashKV differs between members at revision $REV"
out=$("$CL_PYTHON" "$CL_LOAD" count --endpoint "$(cl_url "$F")" --prefix b/ \
    --serializable) || {
    printf '%s\n' "$out" >&2
    cl_fail "wrong values on $F"
}
echo "on $F (serializable): $out"
[[ $out == "$KEYS keys "* ]] || cl_fail "$F has '$out', expected $KEYS keys"
[[ $(cl_ectl "$F" get k/before-kill --print-value-only) == x ]] ||
    cl_fail "$F lost the key written before its kill"
for m in $(cl_members c); do
    cl_stop "$m"
    [[ $CL_LAST_RC == 0 || $CL_LAST_RC == 143 ]] || {
        cl_dump_log "$m"
        cl_fail "member $m exited with status $CL_LAST_RC on SIGTERM"
    }
done
cl_problems c || cl_fail "sanitizer report in a member's log"
echo "RESULT catchup_time_s=$CT keys=$KEYS server=${SUT##*/}"
echo "PASS: follower caught up after missing $KEYS writes, hashes agree"
