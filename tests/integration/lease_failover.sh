#!/bin/bash
# tests/integration/lease_failover.sh: a lease outlives a leader kill by
# the right amount of time.
#
# 3-member cluster (--heartbeat-interval=50 --election-timeout=500). Through
# a follower F1 a lease with TTL LEASE_TTL (default 10 s) is granted and 3
# keys are attached (puts through F1 and the other follower F2); a watcher
# on F2 watches the keys. The lease is kept alive through F1 once a second
# for 4 s, then keep-alives stop; ~3 s after the last one the leader is
# killed with SIGKILL. wl_client.py polls TimeToLive through F2 every 0.5 s
# and records when the DELETE events arrive. Checked (lease-verdict):
#   - the 3 keys are deleted in one revision, seen in one watch response,
#     and afterwards the keys are gone and TimeToLive says -1;
#   - not before the TTL has run out since the last keep-alive (the leader
#     change must not expire the leases);
#   - not later than one full TTL plus one election timeout after the new
#     leader was seen (+1.5 s slack): etcd 3.4 without lease checkpoints
#     (its default, and checkpoints are only taken for leases longer than
#     the 5-minute checkpoint interval anyway) gives every lease its full
#     TTL again when a new leader is promoted. LEASE_STRICT=1 also fails
#     when the remaining TTL was reset (i.e. asks for better than etcd).
# Prints the expiry time relative to the last keep-alive, the kill and the
# new leader ("RESULT ..." line), and the TimeToLive trajectory.
#
# Env: IKADA_TEST_SERVER=etcd, CL_KEEP_TMP=1, LEASE_TTL, LEASE_STRICT=1.

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
CL_HEARTBEAT=50
CL_ELECTION=500
cl_init
SUT=$(cl_sut_binary)
WL=$CL_LIBDIR/wl_client.py
TTL=${LEASE_TTL:-10}

cl_cluster_new c 3 "$SUT"
cl_cluster_start c
LEADER=$(cl_leader c)
mapfile -t FOLLOWERS < <(cl_followers c)
((${#FOLLOWERS[@]} == 2)) || cl_fail "expected 2 followers, got: ${FOLLOWERS[*]}"
F1=${FOLLOWERS[0]}
F2=${FOLLOWERS[1]}
TERM0=$(cl_status_field "$LEADER" raftTerm)
echo "leader $LEADER (term $TERM0); keep-alives through $F1, watch and TimeToLive through $F2"

"$CL_PYTHON" "$WL" lease-failover --grant-ep "$(cl_url "$F1")" \
    --watch-ep "$(cl_url "$F2")" --ttl "$TTL" --keepalive-secs 4 \
    --prefix lf/ --state "$CL_TMP" --timeout $((TTL + 20)) \
    >"$CL_TMP/client.out" 2>&1 &
CPID=$!
deadline=$((SECONDS + 20))
until [[ -f $CL_TMP/last_keepalive ]]; do
    kill -0 "$CPID" 2>/dev/null || {
        cat "$CL_TMP/client.out" >&2
        cl_fail "the lease client exited before its last keep-alive"
    }
    ((SECONDS < deadline)) || {
        cat "$CL_TMP/client.out" >&2
        cl_fail "no keep-alive phase within 20s"
    }
    sleep 0.05
done
LAST=$("$CL_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["resp"])' \
    "$CL_TMP/last_keepalive")
pause=$(awk -v l="$LAST" -v n="$(cl_now)" 'BEGIN { d = l + 3 - n; print (d > 0 ? d : 0) }')
sleep "$pause"
[[ $(cl_leader c) == "$LEADER" ]] ||
    cl_fail "the leader changed before the kill (inconclusive)"
KILL=$(cl_now)
cl_kill "$LEADER"
NEW=$(cl_leader c 10)
SEEN=$(cl_now)
TERM1=$(cl_status_field "$NEW" raftTerm)
echo "killed $LEADER at +$(awk -v a="$LAST" -v b="$KILL" 'BEGIN{printf "%.2f", b-a}')s after the last keep-alive; new leader $NEW (term $TERM1) seen $(awk -v a="$KILL" -v b="$SEEN" 'BEGIN{printf "%.2f", b-a}')s after the kill"
((TERM1 > TERM0)) || cl_fail "no new term after the kill (inconclusive)"

crc=0
wait "$CPID" || crc=$?
sed 's/^/client: /' "$CL_TMP/client.out"
((crc == 0)) || cl_fail "the lease client failed (status $crc)"
strict=()
[[ ${LEASE_STRICT:-0} != 1 ]] || strict=(--strict)
vrc=0
"$CL_PYTHON" "$WL" lease-verdict --result "$CL_TMP/result.json" \
    --kill "$KILL" --leader-seen "$SEEN" --ttl "$TTL" \
    --election-ms "$CL_ELECTION" --server "${SUT##*/}" "${strict[@]}" || vrc=$?
for m in "$F1" "$F2"; do
    cl_alive "$m" || {
        cl_dump_log "$m"
        cl_fail "member $m died"
    }
done
((vrc == 0)) || {
    cl_dump_logs c
    cl_problems c || true
    cl_fail "lease expiry across the leader change is wrong (see above)"
}
for m in $(cl_members c); do
    cl_alive "$m" || continue
    cl_stop "$m"
    [[ $CL_LAST_RC == 0 || $CL_LAST_RC == 143 ]] || {
        cl_dump_log "$m"
        cl_fail "member $m exited with status $CL_LAST_RC on SIGTERM"
    }
done
cl_problems c || cl_fail "sanitizer report in a member's log"
echo "PASS: the lease survived the leader kill and expired in one revision within etcd's bounds"
