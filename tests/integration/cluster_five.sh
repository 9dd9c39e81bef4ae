#!/bin/bash
# tests/integration/cluster_five.sh: quorum arithmetic on a 5-member
# cluster.
#
#  1. kill -9 the leader and one follower: the remaining three elect a
#     leader; puts and linearizable gets succeed on each of them.
#  2. kill -9 one more member (a follower, so a leader without quorum and a
#     follower survive): a put on either survivor must FAIL, with an
#     etcdctl error and exit status 1, within a bounded time (etcdctl
#     --command-timeout=3s; a hang shows as timeout(1)'s 124). The exact
#     error text is printed (it is reported, not compared). A serializable
#     get still answers from the survivors' local state.
#  3. restart the three killed members: all five must converge (every key
#     written in step 1 readable on each; HashKV equal at one revision).
#
# Env: IKADA_TEST_SERVER=etcd, CL_KEEP_TMP=1.

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)

cl_cluster_new c 5 "$SUT"
cl_cluster_start c
cl_ectl c1 put five/start s >/dev/null
L1=$(cl_leader c)
F1=$(cl_follower c)
cl_kill "$L1"
cl_kill "$F1"
echo "step 1: killed the leader $L1 and the follower $F1 with SIGKILL"

live=()
for m in $(cl_members c); do
    cl_alive "$m" && live+=("$m")
done

# A put on each survivor, retried until the new leader is there.
T0=$(cl_now)
first=
for m in "${live[@]}"; do
    deadline=$((SECONDS + 15))
    until out=$(cl_ectl "$m" --command-timeout=1s put "five/$m" "v-$m" 2>&1); do
        if ((SECONDS >= deadline)); then
            cl_dump_logs c
            cl_fail "put on $m still failing 15s after the kills: $out"
        fi
        sleep 0.1
    done
    [[ $out == OK ]] || cl_fail "put on $m printed '$out'"
    [[ -n $first ]] || first=$(printf '%s %s\n' "$T0" "$(cl_now)" |
        awk '{printf "%.3f", $2 - $1}')
done
echo "step 1: first put accepted ${first}s after the kills; new leader $(cl_leader c)"
for m in "${live[@]}"; do
    for k in "${live[@]}" start; do
        want=v-$k
        [[ $k == start ]] && want=s
        got=$(cl_ectl "$m" --command-timeout=5s get "five/$k" \
            --print-value-only) || cl_fail "linearizable get on $m failed"
        [[ $got == "$want" ]] ||
            cl_fail "get five/$k on $m: '$got', expected '$want'"
    done
done
echo "step 1: puts and linearizable gets succeed on ${live[*]}"

# Kill a follower of the new leader: two of five left, no quorum.
L2=$(cl_leader c)
F2=$(cl_follower c)
cl_kill "$F2"
survivors=()
for m in $(cl_members c); do
    cl_alive "$m" && survivors+=("$m")
done
echo "step 2: killed follower $F2; survivors: ${survivors[*]} (leader was $L2)"
for m in "${survivors[@]}"; do
    role=follower
    [[ $m == "$L2" ]] && role="former leader"
    t0=$(cl_now)
    rc=0
    timeout -k 2 20 "$CL_ETCDCTL" --endpoints="$(cl_url "$m")" \
        --command-timeout=3s put five/noquorum x \
        >"$CL_TMP/nq.out" 2>"$CL_TMP/nq.err" || rc=$?
    dt=$(printf '%s %s\n' "$t0" "$(cl_now)" | awk '{printf "%.1f", $2 - $1}')
    echo "step 2: put on $m ($role) without quorum: exit $rc after ${dt}s"
    echo "ERROR-TEXT put on $role: stdout='$(cat "$CL_TMP/nq.out")' stderr='$(cat "$CL_TMP/nq.err")'"
    ((rc != 124 && rc != 137)) ||
        cl_fail "put on $m hung (killed by timeout after 20s)"
    ((rc == 1)) || cl_fail "put on $m without quorum: exit status $rc, expected 1"
    grep -q '^Error: ' "$CL_TMP/nq.err" ||
        cl_fail "put on $m without quorum: no 'Error: ...' line"
    awk -v d="$dt" 'BEGIN { exit !(d < 10) }' ||
        cl_fail "put on $m took ${dt}s to fail (want < 10s)"
    rc=0
    timeout -k 2 20 "$CL_ETCDCTL" --endpoints="$(cl_url "$m")" \
        --command-timeout=3s get five/start \
        >"$CL_TMP/nq.out" 2>"$CL_TMP/nq.err" || rc=$?
    echo "ERROR-TEXT linearizable get on $role: exit $rc stderr='$(cat "$CL_TMP/nq.err")'"
    ((rc != 124 && rc != 137)) || cl_fail "linearizable get on $m hung"
    ((rc != 0)) || cl_fail "linearizable get on $m succeeded without quorum"
    got=$(cl_ectl "$m" --command-timeout=3s get five/start --consistency=s \
        --print-value-only 2>&1) ||
        cl_fail "serializable get on $m without quorum failed: $got"
    [[ $got == s ]] || cl_fail "serializable get on $m: '$got', expected 's'"
done

# Restart the three killed members: all five converge.
for m in "$L1" "$F1" "$F2"; do
    cl_spawn "$m"
done
for m in $(cl_members c); do
    cl_wait_ready "$m" 30
done
L3=$(cl_leader c)
deadline=$((SECONDS + 15))
until cl_ectl "$L3" --command-timeout=3s put five/end e >/dev/null 2>&1; do
    ((SECONDS < deadline)) || cl_fail "no put accepted after the restarts"
    sleep 0.1
done
echo "step 3: restarted $L1 $F1 $F2; leader $L3"
REV=$(cl_revision "$L3")
for m in $(cl_members c); do
    for k in "${live[@]}" end; do
        want=v-$k
        [[ $k == end ]] && want=e
        got=$(cl_ectl "$m" --command-timeout=5s get "five/$k" \
            --print-value-only) || cl_fail "get on $m failed"
        [[ $got == "$want" ]] ||
            cl_fail "get five/$k on $m: '$got', expected '$want'"
    done
done
mapfile -t all < <(cl_members c)
cl_hashkv_check "$REV" "${all[@]}" ||
    cl_fail "HashKV differs between members at revision $REV"
for m in $(cl_members c); do
    cl_stop "$m"
    [[ $CL_LAST_RC == 0 || $CL_LAST_RC == 143 ]] || {
        cl_dump_log "$m"
        cl_fail "member $m exited with status $CL_LAST_RC on SIGTERM"
    }
done
cl_problems c || cl_fail "sanitizer report in a member's log"
echo "RESULT five_first_put_after_kill_s=$first server=${SUT##*/}"
echo "PASS: 3 of 5 serve, 2 of 5 refuse writes in bounded time, 5 converge"
