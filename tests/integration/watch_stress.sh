#!/bin/bash
# tests/integration/watch_stress.sh: etcd's six watch guarantees under
# concurrent writes on a 3-member cluster.
#
# Writers (wl_client.py write: 6 threads, thread t through member t mod 3,
# for WATCH_STRESS_SECS s, default 10) put, multi-put txn, delete, range
# delete and put+delete txn on 13 overlapping keys under s/, logging every
# acknowledged write that made a revision (events in apply order); at the
# end they put the sentinel key s/c~end, which lies in every watched range
# and ends the watchers. Watchers (wl_client.py watchers), each on its own
# connection, opened on different members (times for the default 10 s;
# they scale with WATCH_STRESS_SECS):
#   A  member 1  prefix s/        from revision 1 (past), opened at 3 s
#   B  member 3  prefix s/        from revision 1, slow reader (2 ms
#                                 sleep per response), prev_kv, at 3 s
#   C  member 2  [s/b, s/m)       live, before the writers start
#   D  member 3  [s/b, s/m)       from revision 2, at 4 s
#   E  member 1  prefix s/c       live, opened at 5 s
#   F  member 2  prefix s/c       from revision 2, at 2 s; drops its stream
#                                 after 40 event responses and re-watches
#                                 from the last revision + 1 on member 1
#   G  member 2  prefix s/        live, before the writers, slow (0.5 ms
#                                 per response) and stops reading for 6 s
#                                 after 200 responses: the server must
#                                 buffer or catch it up
# Then wl_client.py check verifies, from the writers' history (which must
# account for every revision 2 .. sentinel): ordered (revisions increase,
# also across responses), unique, atomic (every response holds whole
# revisions), reliable (exactly the expected events with values, mod
# revisions and, for B, prev_kv), resumable (F's second stream is exactly
# the rest) and identical sequences for the same range on different
# members (A/B, A/G, C/D, E/F).
#
# Env: IKADA_TEST_SERVER=etcd, CL_KEEP_TMP=1, WATCH_STRESS_SECS.

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)
WL=$CL_LIBDIR/wl_client.py
SECS=${WATCH_STRESS_SECS:-10}
SENTINEL=s/c~end

cl_cluster_new c 3 "$SUT"
cl_cluster_start c
cl_leader c >/dev/null
U1=$(cl_url c1)
U2=$(cl_url c2)
U3=$(cl_url c3)
echo "cluster: c1=$U1 c2=$U2 c3=$U3, leader $(cl_leader c)"

# watcher open delays: fractions of the write phase
at() {
    awk -v s="$SECS" -v f="$1" 'BEGIN { printf "%.2f", s * f }'
}
SPEC=$CL_TMP/spec.json
cat >"$SPEC" <<EOF
[
 {"name": "A", "ep": "$U1", "key": "s/", "range_end": "s0", "start": 1,
  "delay": $(at 0.3)},
 {"name": "B", "ep": "$U3", "key": "s/", "range_end": "s0", "start": 1,
  "slow": 0.002, "prev_kv": true, "delay": $(at 0.3)},
 {"name": "C", "ep": "$U2", "key": "s/b", "range_end": "s/m"},
 {"name": "D", "ep": "$U3", "key": "s/b", "range_end": "s/m", "start": 2,
  "delay": $(at 0.4)},
 {"name": "E", "ep": "$U1", "key": "s/c", "range_end": "s/d", "delay": $(at 0.5)},
 {"name": "F", "ep": "$U2", "key": "s/c", "range_end": "s/d", "start": 2,
  "delay": $(at 0.2), "resume_after": 40, "resume_ep": "$U1"},
 {"name": "G", "ep": "$U2", "key": "s/", "range_end": "s0", "slow": 0.0005,
  "stall_after": 200, "stall": 6}
]
EOF
mkdir -p "$CL_TMP/w"
"$CL_PYTHON" "$WL" watchers --spec "$SPEC" --outdir "$CL_TMP/w" \
    --sentinel "$SENTINEL" --ready "$CL_TMP/ready" --timeout $((SECS + 30)) \
    >"$CL_TMP/watchers.out" 2>&1 &
WPID=$!
deadline=$((SECONDS + 15))
until [[ -f $CL_TMP/ready ]]; do
    kill -0 "$WPID" 2>/dev/null || {
        cat "$CL_TMP/watchers.out" >&2
        cl_fail "the watchers exited early"
    }
    ((SECONDS < deadline)) || cl_fail "live watchers not created within 15s"
    sleep 0.1
done

t0=$(cl_now)
wrc=0
"$CL_PYTHON" "$WL" write --endpoints "$U1,$U2,$U3" --log "$CL_TMP/writes.jsonl" \
    --seconds "$SECS" --threads 6 --seed "${WATCH_STRESS_SEED:-$RANDOM}" \
    --sentinel "$SENTINEL" >"$CL_TMP/writer.out" 2>&1 || wrc=$?
t1=$(cl_now)
cat "$CL_TMP/writer.out"
((wrc == 0)) || {
    cl_dump_logs c
    cl_fail "writers failed (status $wrc): the history is uncertain"
}
revs=$(wc -l <"$CL_TMP/writes.jsonl")
echo "writers: $revs revisions in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"

wait_rc=0
wait "$WPID" || wait_rc=$?
t2=$(cl_now)
echo "watchers done $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')s after the last write"
((wait_rc == 0)) || {
    cat "$CL_TMP/watchers.out" >&2
    cl_fail "watchers process failed (status $wait_rc)"
}
for m in c1 c2 c3; do
    cl_alive "$m" || {
        cl_dump_log "$m"
        cl_fail "member $m died"
    }
done

crc=0
"$CL_PYTHON" "$WL" check --writes "$CL_TMP/writes.jsonl" \
    --watchers "$CL_TMP/w" --spec "$SPEC" --same A,B --same A,G \
    --same C,D --same E,F || crc=$?
((crc == 0)) || {
    cl_problems c || true
    cl_fail "watch guarantees violated (see above)"
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
echo "PASS: ordered, unique, atomic, reliable, resumable and identical across members"
