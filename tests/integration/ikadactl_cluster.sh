#!/bin/bash
# tests/integration/ikadactl_cluster.sh: ikadactl's cluster, lease,
# lock/elect and check commands that etcdctl_diff.sh does not cover, on a
# real 3-member etcd cluster: each command runs with the real etcdctl and
# with ikadactl, and their stdout, stderr and exit code (normalised: client
# log timestamps and UUIDs, durations, lease IDs, map-ordered lists) must
# be identical. Then the same commands run with ikadactl against a 3-member
# ikada cluster, which must answer them (exit codes and output shapes).
#
# Env: IKADACTL (default $top_builddir/ikadactl), IK_KEEP_TMP=1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
IKADACTL=${IKADACTL:-${top_builddir:-.}/ikadactl}
[[ -x $IKADACTL ]] || ik_skip "ikadactl not built ($IKADACTL)"
SUT=$(ik_sut_binary)
FAILS=0

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    FAILS=$((FAILS + 1))
}

# norm: the parts that legitimately differ between two runs
norm() {
    sed -E 's/"ts":"[^"]*"/"ts":"<TS>"/g
        s/client-[0-9a-f-]{36}/client-<UUID>/g
        s/took = [0-9.]+[a-zµ]+/took = <DUR>/g
        s/"took":"[^"]*"/"took":"<DUR>"/g
        s/"Took" : [0-9.]+[a-zµ]+/"Took" : <DUR>/g
        s/(lease |^|\/)[0-9a-f]{12,16}( |$)/\1<LEASE>\2/g
        s/"(id|ID|lease)":[0-9]{15,20}/"\1":<LEASE>/g
        s/("revision"|"mod_revision"|"create_revision"|"Revision" :|"raft_term"|"RaftTerm" :)[: ]*[0-9]+/\1<N>/g
        s/"key":"[A-Za-z0-9+\/=]*"/"key":"<KEY>"/g
        s/[0-9]+ \/ 60 +[0-9.]+%( [0-9]+m[0-9]+s)?/<BAR>/g
        s/-- [0-9a-f]{16}/-- <LEASE>/g
        s/\r/\n/g'
}

# both ENDPOINTS ARGS...: run etcdctl and ikadactl, compare
both() {
    local eps=$1 rc1=0 rc2=0
    shift
    ETCDCTL_API=3 timeout 30 "$IK_ETCDCTL" --endpoints="$eps" "$@" \
        >"$IK_TMP/e.out" 2>"$IK_TMP/e.err" </dev/null || rc1=$?
    ETCDCTL_API=3 timeout 30 "$IKADACTL" --endpoints="$eps" "$@" \
        >"$IK_TMP/i.out" 2>"$IK_TMP/i.err" </dev/null || rc2=$?
    if [[ $rc1 != "$rc2" ]] ||
        ! diff <(norm <"$IK_TMP/e.out") <(norm <"$IK_TMP/i.out") >/dev/null ||
        ! diff <(norm <"$IK_TMP/e.err" | sed '/^\t/d; /^goroutine\|^main\.\|^go\.etcd\|^github\.com\|^\[signal/d') \
            <(norm <"$IK_TMP/i.err" | sed '/^\t/d; /^goroutine\|^main\.\|^go\.etcd\|^github\.com\|^\[signal/d') >/dev/null; then
        fail "differs: $* (exit $rc1 vs $rc2)"
        diff <(norm <"$IK_TMP/e.out"; echo "--- stderr"; norm <"$IK_TMP/e.err") \
            <(norm <"$IK_TMP/i.out"; echo "--- stderr"; norm <"$IK_TMP/i.err") | head -20 >&2 || true
    else
        printf 'same: %s\n' "$*"
    fi
}

# bg_both SECS ENDPOINTS ARGS...: the same for a command that runs until
# SIGINT, stopped after SECS
bg_both() {
    local secs=$1 eps=$2 rc1=0 rc2=0
    shift 2
    ETCDCTL_API=3 timeout -s INT "$secs" "$IK_ETCDCTL" --endpoints="$eps" "$@" \
        >"$IK_TMP/e.out" 2>"$IK_TMP/e.err" </dev/null || rc1=$?
    ETCDCTL_API=3 timeout -s INT "$secs" "$IKADACTL" --endpoints="$eps" "$@" \
        >"$IK_TMP/i.out" 2>"$IK_TMP/i.err" </dev/null || rc2=$?
    if [[ $rc1 != "$rc2" ]] ||
        ! diff <(norm <"$IK_TMP/e.out"; norm <"$IK_TMP/e.err") \
            <(norm <"$IK_TMP/i.out"; norm <"$IK_TMP/i.err") >/dev/null; then
        fail "differs: $* (exit $rc1 vs $rc2)"
        diff <(norm <"$IK_TMP/e.out"; norm <"$IK_TMP/e.err") \
            <(norm <"$IK_TMP/i.out"; norm <"$IK_TMP/i.err") | head -20 >&2 || true
    else
        printf 'same: %s (until SIGINT)\n' "$*"
    fi
}

ik_cluster_start ref 3 "$IK_ETCD" --heartbeat-interval=100 --election-timeout=1000
leader=$(ik_cluster_leader ref)
EPS=
FOLLOWER=
for m in $(ik_cluster_members ref); do
    EPS+="${EPS:+,}$(ik_server_url "$m")"
    [[ $m == "$leader" || -n $FOLLOWER ]] || FOLLOWER=$(ik_server_url "$m")
done
LEADER=$(ik_server_url "$leader")

# endpoint --cluster (output order of health is completion order: compare
# the sorted lines)
for w in simple json fields table protobuf; do
    both "$FOLLOWER" endpoint status --cluster -w "$w"
    both "$FOLLOWER" endpoint hashkv --cluster -w "$w"
    both "$EPS" endpoint status -w "$w"
done
both "$FOLLOWER" endpoint health --cluster -w protobuf
both "$FOLLOWER" defrag --cluster
both "$FOLLOWER,127.0.0.1:1" endpoint status
both "$FOLLOWER,127.0.0.1:1" defrag

# member promote (a learner that never started: not in sync) and errors
ectl "${leader}" member add learner1 --learner --peer-urls=http://127.0.0.1:2 >/dev/null
LID=$(ectl "$leader" member list | sed -n 's/^\([0-9a-f]*\), unstarted.*/\1/p')
for w in simple json fields table protobuf; do
    both "$FOLLOWER" member promote "$LID" -w "$w"
done
both "$FOLLOWER" member update "$LID" --peer-urls=http://127.0.0.1:3 -w json
both "$FOLLOWER" member promote zz
both "$FOLLOWER" member promote
both "$FOLLOWER" member add x http://a
both "$FOLLOWER" member remove 1234
ectl "$leader" member remove "$LID" >/dev/null

# move-leader: errors and a leader that moves back and forth
both "$FOLLOWER" move-leader 1
both "$FOLLOWER" move-leader zz
for m in $(ik_cluster_members ref); do [[ $m == "$leader" ]] || fm=$m; done
read -r -a st < <(ik_status "$fm")
TARGET=$(printf '%x' "${st[0]}")
both "$EPS" move-leader -w fields "$TARGET"
both "$EPS" move-leader -w table "$TARGET"

# lease keep-alive (runs until SIGINT) and --once
L=$(ectl "$leader" lease grant 30 | awk '{print $2}')
bg_both 2 "$FOLLOWER" lease keep-alive "$L"
bg_both 2 "$FOLLOWER" lease keep-alive -w json "$L"
both "$FOLLOWER" lease keep-alive --once -w fields "$L"
ectl "$leader" lease revoke "$L" >/dev/null
both "$FOLLOWER" lease keep-alive "$L"

# lock and elect
bg_both 2 "$FOLLOWER" lock mylock
bg_both 2 "$FOLLOWER" lock mylock -w json --ttl 5
both "$FOLLOWER" lock mylock -- sh -c 'echo "$ETCD_LOCK_KEY" | cut -d/ -f1; exit 3'
both "$FOLLOWER" lock mylock no-such-command-xyz
both "$FOLLOWER" lock
bg_both 2 "$FOLLOWER" elect myelection proposal1
both "$FOLLOWER" elect
both "$FOLLOWER" elect one
both "$FOLLOWER" elect -l one two
# a contended lock: the waiter is interrupted
ETCDCTL_API=3 timeout -s INT 6 "$IK_ETCDCTL" --endpoints="$FOLLOWER" lock held >/dev/null 2>&1 &
holder=$!
sleep 1
bg_both 1.5 "$FOLLOWER" lock held
wait "$holder" || true
# an observer sees each leader in turn
(ETCDCTL_API=3 timeout -s INT 5 "$IK_ETCDCTL" --endpoints="$FOLLOWER" elect -l ob >"$IK_TMP/obs_e.out" 2>&1 || true) &
o1=$!
(ETCDCTL_API=3 timeout -s INT 5 "$IKADACTL" --endpoints="$FOLLOWER" elect -l ob >"$IK_TMP/obs_i.out" 2>&1 || true) &
o2=$!
sleep 0.7
ectl "$leader" put ob/1 a >/dev/null
ectl "$leader" put ob/1 b >/dev/null
ectl "$leader" del ob/1 >/dev/null
sleep 0.3
ectl "$leader" put ob/2 c >/dev/null
ectl "$leader" put ob/3 d >/dev/null
ectl "$leader" del ob/2 >/dev/null
wait "$o1" "$o2"
if diff "$IK_TMP/obs_e.out" "$IK_TMP/obs_i.out" >/dev/null; then
    echo "same: elect -l ob (observer)"
else
    fail "elect -l observer output differs"
    diff "$IK_TMP/obs_e.out" "$IK_TMP/obs_i.out" >&2 || true
fi

# check perf: flags and error paths only (a real run takes 60 s)
both "$FOLLOWER" check perf --load=x
ectl "$leader" put /etcdctl-check-perf/x 1 >/dev/null
both "$FOLLOWER" check perf
both "$FOLLOWER" check perf --load=xLarge --prefix=/etcdctl-check-perf/
ectl "$leader" del /etcdctl-check-perf/x >/dev/null

# alarm with a real alarm (NOSPACE): a member with a tiny quota
ik_server_start quota "$IK_ETCD" --quota-backend-bytes=100000
ik_server_wait_ready quota
Q=$(ik_server_url quota)
big=$(head -c 60000 /dev/zero | tr '\0' x)
for i in 1 2 3 4 5 6; do ectl quota put "big$i" "$big" >/dev/null 2>&1 || break; done
for w in simple json fields table protobuf; do
    both "$Q" alarm list -w "$w"
done
# disarming answers with the alarms it cleared: ikadactl does it, then both
# see none left
out=$(ETCDCTL_API=3 "$IKADACTL" --endpoints="$Q" alarm disarm -w json)
[[ $out == '{"alarms":[{"memberID":'*'"alarm":1}]}' ]] || fail "ikadactl alarm disarm -w json printed: $out"
both "$Q" alarm disarm -w json
both "$Q" alarm list

# ---------------------------------------------------------------- ikada
ik_cluster_start sut 3 "$SUT" --heartbeat-interval=100 --election-timeout=1000
sleader=$(ik_cluster_leader sut)
SEPS=
for m in $(ik_cluster_members sut); do SEPS+="${SEPS:+,}$(ik_server_url "$m")"; done
ik() {
    local rc=0
    ETCDCTL_API=3 timeout 30 "$IKADACTL" --endpoints="$SEPS" "$@" >"$IK_TMP/s.out" 2>"$IK_TMP/s.err" </dev/null || rc=$?
    printf '%s\n' "$rc"
}
expect() { # expect RC PATTERN ARGS...: exit code and a line of output
    local want=$1 pat=$2 rc
    shift 2
    rc=$(ik "$@")
    if [[ $rc != "$want" ]] || ! grep -Eq -- "$pat" "$IK_TMP/s.out" "$IK_TMP/s.err"; then
        fail "ikada: $* (exit $rc, wanted $want and /$pat/)"
        cat "$IK_TMP/s.out" "$IK_TMP/s.err" >&2
    else
        printf 'ikada ok: %s\n' "$*"
    fi
}
expect 0 'started' member list
expect 0 '^\[\{"Endpoint":"http' endpoint status --cluster -w json
expect 0 'is healthy' endpoint health --cluster
expect 0 '^http://127.0.0.1:[0-9]+, [0-9]+$' endpoint hashkv --cluster
expect 0 'Finished defragmenting etcd member\[http' defrag --cluster
rc=$(ik alarm list)
[[ $rc == 0 && ! -s $IK_TMP/s.out ]] || fail "ikada: alarm list (exit $rc): $(cat "$IK_TMP/s.out")"
L=$(ETCDCTL_API=3 "$IKADACTL" --endpoints="$SEPS" lease grant 20 | awk '{print $2}')
expect 0 "keepalived with TTL\(20\)" lease keep-alive --once "$L"
rc=0
ETCDCTL_API=3 timeout -s INT 2 "$IKADACTL" --endpoints="$SEPS" lease keep-alive "$L" >"$IK_TMP/s.out" 2>&1 || rc=$?
grep -q "lease $L keepalived with TTL(20)" "$IK_TMP/s.out" || fail "ikada: lease keep-alive printed: $(cat "$IK_TMP/s.out")"
rc=0
ETCDCTL_API=3 timeout -s INT 2 "$IKADACTL" --endpoints="$SEPS" lock ik-lock >"$IK_TMP/s.out" 2>&1 || rc=$?
grep -q '^ik-lock/[0-9a-f]*$' "$IK_TMP/s.out" || fail "ikada: lock printed: $(cat "$IK_TMP/s.out")"
expect 1 'key=ik-lock/' lock ik-lock -- sh -c 'echo "key=$ETCD_LOCK_KEY"; exit 3'
rc=0
ETCDCTL_API=3 timeout -s INT 2 "$IKADACTL" --endpoints="$SEPS" elect ik-el p1 >"$IK_TMP/s.out" 2>&1 || rc=$?
grep -q '^p1$' "$IK_TMP/s.out" || fail "ikada: elect printed: $(cat "$IK_TMP/s.out")"
SLID=$(ETCDCTL_API=3 "$IKADACTL" --endpoints="$SEPS" endpoint status -w json | "$IK_PYTHON" -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["leader"] != s["header"]["member_id"]:
        print("%x" % s["header"]["member_id"]); break')
expect 0 "Leadership transferred from [0-9a-f]+ to $SLID" move-leader "$SLID"

if ((FAILS > 0)); then
    ik_fail "$FAILS check(s) failed"
fi
echo "PASS: ikadactl cluster commands match etcdctl on etcd and work on ikada"
