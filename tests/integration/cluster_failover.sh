#!/bin/bash
# tests/integration/cluster_failover.sh: a 3-member cluster loses its leader
# to kill -9 under write load and must lose no acknowledged write.
#
# A writer (cluster_load.py write, 6 threads, 1 s timeout per put) puts
# fresh unique keys to all three members round-robin and logs every
# acknowledged put with its revision and timestamps. Mid-load the leader is
# killed with SIGKILL; the failover time is the time from the kill to the
# acknowledgement of the first put sent after the killed process was
# reaped (the new leader must have a higher term). The writer keeps going,
# the killed member is restarted on its data dir and takes writes again. At
# the end every acknowledged write must be readable (linearizable) on every
# member with its acknowledged revision, and HashKV at the final revision
# must be equal on all members (asked per endpoint, then with `endpoint
# hashkv --cluster`).
#
# Env: IKADA_TEST_SERVER=etcd (run against real etcd), CL_KEEP_TMP=1,
# FAILOVER_ACKS (acknowledged writes before the kill, default 1500).

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)
ACKS=${FAILOVER_ACKS:-1500}
ACK=$CL_TMP/ack.log
ERR=$CL_TMP/err.log
STOP=$CL_TMP/stop

lines() {
    local n=0
    [[ -f $1 ]] && n=$(wc -l <"$1")
    printf '%s\n' "$n"
}

# wait_acks N SECS: until the writer has N acknowledgements in total.
wait_acks() {
    local want=$1 deadline=$((SECONDS + $2))
    while (($(lines "$ACK") < want)); do
        kill -0 "$WPID" 2>/dev/null || {
            cat "$CL_TMP/writer.out" >&2
            cl_fail "the writer stopped early"
        }
        if ((SECONDS >= deadline)); then
            tail -n 5 "$ERR" >&2 || true
            cl_dump_logs c
            cl_fail "only $(lines "$ACK") of $want writes acknowledged after ${2}s"
        fi
        sleep 0.05
    done
}

cl_cluster_new c 3 "$SUT"
cl_cluster_start c
: >"$ACK"
: >"$ERR"
"$CL_PYTHON" "$CL_LOAD" write --endpoints "$(cl_urls c)" --prefix f/ \
    --acklog "$ACK" --errlog "$ERR" --stop "$STOP" --threads 6 \
    --timeout 1 --max-seconds 50 >"$CL_TMP/writer.out" 2>&1 &
WPID=$!

wait_acks "$ACKS" 20
LEADER=$(cl_leader c)
TERM0=$(cl_status_field "$LEADER" raftTerm)
KILLED_AT=$(cl_now)
cl_kill "$LEADER"
DEAD_AT=$(cl_now) # reaped: no put sent after this can reach it
acks_at_kill=$(lines "$ACK")
echo "killed leader $LEADER (term $TERM0) with SIGKILL after $acks_at_kill acknowledged writes"

# The cluster must accept writes again, then keep doing so.
deadline=$((SECONDS + 15))
until out=$("$CL_PYTHON" "$CL_LOAD" failover-time --kill "$KILLED_AT" \
    --dead "$DEAD_AT" "$ACK"); do
    if ((SECONDS >= deadline)); then
        tail -n 5 "$ERR" >&2 || true
        cl_dump_logs c
        cl_fail "no write accepted within 15s of killing the leader"
    fi
    sleep 0.05
done
FT=${out%% *}
echo "failover time: ${FT}s from the kill -9 of the leader to the first accepted write (${out#* })"
NEW_LEADER=$(cl_leader c 10)
TERM1=$(cl_status_field "$NEW_LEADER" raftTerm)
echo "new leader: $NEW_LEADER (term $TERM1)"
((TERM1 > TERM0)) ||
    cl_fail "no new term after the kill: $LEADER was not the leader any more when killed (inconclusive)"
wait_acks $(($(lines "$ACK") + 500)) 20

# Bring the killed member back; it must catch up and take writes again.
cl_spawn "$LEADER"
cl_wait_ready "$LEADER" 30
n0=$(lines "$ACK")
deadline=$((SECONDS + 20))
url=$(cl_url "$LEADER")
until (($(cut -f3 "$ACK" | tail -n +$((n0 + 1)) | grep -cxF "$url") >= 50)); do
    if ((SECONDS >= deadline)); then
        tail -n 5 "$ERR" >&2 || true
        cl_dump_log "$LEADER"
        cl_fail "restarted member $LEADER took fewer than 50 writes in 20s"
    fi
    sleep 0.1
done
touch "$STOP"
wrc=0
wait "$WPID" || wrc=$?
cat "$CL_TMP/writer.out"
((wrc == 0)) || cl_fail "writer failed (status $wrc)"
echo "write errors by kind (expected while the leader was gone):"
cut -f5 "$ERR" | sed 's/[0-9a-f]\{16\}/<ID>/g' | sort | uniq -c | sort -rn |
    awk 'NR <= 8'

# Every acknowledged write on every member, HashKV equal at one revision.
for m in $(cl_members c); do
    "$CL_PYTHON" "$CL_LOAD" verify --endpoint "$(cl_url "$m")" --prefix f/ \
        "$ACK" || {
        cl_dump_log "$m"
        cl_fail "member $m: acknowledged writes missing or wrong"
    }
done
REV=$(cl_revision "$NEW_LEADER")
for m in $(cl_members c); do
    cl_revision "$m" >/dev/null # waits until m has applied everything
done
mapfile -t all < <(cl_members c)
cl_hashkv_check "$REV" "${all[@]}" ||
    cl_fail "HashKV differs between members at revision $REV"
# The same the way an operator checks it (the members' advertised client
# URLs, "http://...", as endpoints).
out=$(cl_ectl "$NEW_LEADER" --command-timeout=20s endpoint hashkv --cluster \
    -w json 2>"$CL_TMP/hashkv.err") || true
cluster_hash_ok=1
"$CL_PYTHON" "$CL_LOAD" hashkv-cluster 3 <<<"$out" || {
    grep -v '"level"' "$CL_TMP/hashkv.err" >&2 || true
    cluster_hash_ok=0
}
for m in $(cl_members c); do
    cl_stop "$m"
    [[ $CL_LAST_RC == 0 || $CL_LAST_RC == 143 ]] || {
        cl_dump_log "$m"
        cl_fail "member $m exited with status $CL_LAST_RC on SIGTERM"
    }
done
cl_problems c || cl_fail "sanitizer report in a member's log"
echo "RESULT failover_time_s=$FT server=${SUT##*/}"
((cluster_hash_ok)) ||
    cl_fail "etcdctl endpoint hashkv --cluster: not 3 equal hashes (the per-endpoint hashes agreed)"
echo "PASS: leader killed under load, no acknowledged write lost, hashes agree"
