#!/bin/bash
# tests/integration/cluster_membership.sh: membership changes of a 3-member
# cluster under write load, the way an operator does them with etcdctl.
#
# A writer (cluster_load.py write) puts unique keys round-robin to the
# three original members and logs every acknowledged put. While it runs:
#
#  1. `member add c4 --learner`: the printed ETCD_* lines must be etcd's;
#     `member list` shows the new member unstarted (no name) and a learner.
#     While it is an unstarted learner, the error paths that need a
#     learner: a second learner, a learner with an original member's peer
#     URL, promoting the learner before it has caught up. Then c4 is
#     started with --initial-cluster-state=existing and the printed
#     ETCD_INITIAL_CLUSTER; "time to serve" runs from its start until a
#     serializable get on it returns a key written before the add. `member
#     list` must show it started, named, a learner; a put and a
#     linearizable get on it must fail as on etcd's learners. `member
#     promote` is retried while etcd answers "can only promote a learner
#     member which is in sync with leader"; "time to promote" runs from the
#     start of c4 until a promote succeeds (less the time the put/get
#     checks on the learner took: etcdctl retries that get for seconds).
#     `member list` must then show it as a voter, and promoting a voter
#     (c4 again, the leader) or an unknown ID must fail.
#  2. `member update` of c4 to its own peer URL (output, member list
#     unchanged); updating an unknown ID must fail.
#  3. `member remove` of an original member that is not the leader: the
#     removed member must exit by itself with status 0 (etcd stops it)
#     within 20 s, `member list` must no longer name it, and the remaining
#     members must keep acknowledging writes. Removing it again, removing
#     an unknown ID and adding a voter with a peer URL in use (c4's, a
#     follower's) must fail.
#  4. The writer stops; every acknowledged write must be readable
#     (linearizable) on every remaining member, HashKV at one revision must
#     agree on them (per endpoint and with `endpoint hashkv --cluster`),
#     and they must all return the same `member list`.
#
# Every expected failure must print exactly etcd's message ("Error: ..."
# on stderr, client log lines aside) and exit with status 1. Membership
# commands go to a follower and to the leader (etcd forwards a promote
# that reaches a follower to the leader). A command answered with
# "etcdserver: unhealthy cluster" (etcd's strict reconfiguration check
# wants every peer connected for 5 s) is retried for up to 10 s.
# Mismatches in messages or listings are collected and reported at the
# end (exit 1); anything that leaves the cluster unusable fails at once.
#
# Timings are printed (RESULT line) but not judged: etcd 3.4's own time to
# serve is either well under 1 s or about 6 s (when the new member's first
# publish of its name times out and is retried).
#
# Env: IKADA_TEST_SERVER=etcd (run against real etcd), CL_KEEP_TMP=1.

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)
ACK=$CL_TMP/ack.log
ERR=$CL_TMP/err.log
STOP=$CL_TMP/stop
WPID=
MISMATCHES=()

E_NOTFOUND='Error: etcdserver: member not found'
E_NOTLEARNER='Error: etcdserver: can only promote a learner member'
E_NOTREADY='Error: etcdserver: can only promote a learner member which is in sync with leader'
E_URLEXISTS='Error: etcdserver: Peer URLs already exists'
E_LEARNERS='Error: etcdserver: too many learner members in cluster'
E_LEARNERRPC='Error: etcdserver: rpc not supported for learner'
E_UNHEALTHY='Error: etcdserver: unhealthy cluster'

lines() {
    local n=0
    [[ -f $1 ]] && n=$(wc -l <"$1")
    printf '%s\n' "$n"
}

mismatch() {
    MISMATCHES+=("$*")
    printf 'MISMATCH: %s\n' "$*" >&2
}

elapsed() {
    printf '%s %s\n' "$1" "$2" | awk '{printf "%.3f", $2 - $1}'
}

# proc_gone PID: true once PID has exited (a zombie counts: kill -0 would
# still succeed on it).
proc_gone() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z $st || $st == Z ]]
}

# port_open PORT: something accepts TCP connections on it (probed before
# etcdctl, whose dial to a closed port waits for its whole dial timeout).
port_open() {
    (exec 3<>"/dev/tcp/$CL_HOST/$1") 2>/dev/null
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

# run M ARGS...: etcdctl ARGS against M; sets OUT (stdout), ETXT (stderr
# without the client's JSON log lines) and RC. Retries for up to 10 s while
# the answer is etcd's "unhealthy cluster" (strict reconfiguration check).
run() {
    local m=$1 deadline=$((SECONDS + 10)) t0
    shift
    t0=$(cl_now)
    while :; do
        RC=0
        OUT=$(cl_ectl "$m" --dial-timeout=2s --command-timeout=5s "$@" \
            2>"$CL_TMP/ectl.err") || RC=$?
        ETXT=$(grep -v '^{"level"' "$CL_TMP/ectl.err" || true)
        [[ $RC != 0 && $ETXT == "$E_UNHEALTHY" && $SECONDS -lt $deadline ]] ||
            break
        sleep 0.2
    done
    printf '  $ etcdctl %s   # on %s: exit %s, %.2fs\n' "$*" "$m" "$RC" \
        "$(elapsed "$t0" "$(cl_now)")"
    [[ -z $OUT ]] || printf '%s\n' "$OUT" | sed 's/^/    > /'
    [[ -z $ETXT ]] || printf '%s\n' "$ETXT" | sed 's/^/    2> /'
}

# must M ARGS...: run, and fail the test unless it succeeded.
must() {
    run "$@"
    ((RC == 0)) || {
        cl_dump_logs c
        cl_fail "etcdctl ${*:2} on $1 failed (exit $RC): $ETXT"
    }
}

# expect_err M WANT ARGS...: etcdctl ARGS on M must exit 1 with stderr WANT.
# A member add that wrongly succeeds is undone.
expect_err() {
    local m=$1 want=$2
    shift 2
    run "$m" "$@"
    ((RC == 1)) && [[ $ETXT == "$want" ]] && return 0
    mismatch "etcdctl $* on $m: expected exit 1 and '$want'; got exit $RC, stderr '$ETXT', stdout '$OUT'"
    if ((RC == 0)) && [[ $OUT =~ ^Member\ +([0-9a-f]+)\ added ]]; then
        run "$m" member remove "${BASH_REMATCH[1]}"
    fi
}

# check_line WHAT GOT WANT: a member list row (or other output line).
check_line() {
    [[ $2 == "$3" ]] || mismatch "$1: expected '$3', got '$2'"
}

# member_row M ID: ID's row of `member list` on M (empty if absent).
member_row() {
    must "$1" member list >/dev/null
    awk -F', ' -v id="$2" '$1 == id' <<<"$OUT"
}

# member_id M NAME: the hex ID of member NAME, from `member list` on M.
member_id() {
    cl_ectl "$1" --command-timeout=5s member list |
        awk -F', ' -v n="$2" '$3 == n {print $1}'
}

peer_url() {
    printf 'http://%s:%s\n' "$CL_HOST" "${CL_PPORT[$1]}"
}

client_url() {
    printf 'http://%s:%s\n' "$CL_HOST" "${CL_CPORT[$1]}"
}

# spawn_joiner M INITIAL_CLUSTER: start M (registered in the CL_* tables)
# the way etcd's add-a-member procedure says: --initial-cluster-state
# existing and the cluster printed by `member add`.
spawn_joiner() {
    local m=$1 c=${CL_OF[$1]} flags
    flags=(
        "--name=$m"
        "--data-dir=${CL_DIR[$m]}"
        "--listen-client-urls=$(client_url "$m")"
        "--advertise-client-urls=$(client_url "$m")"
        "--listen-peer-urls=$(peer_url "$m")"
        "--initial-advertise-peer-urls=$(peer_url "$m")"
        "--initial-cluster=$2"
        "--initial-cluster-token=${CL_TOKEN[$c]}"
        "--initial-cluster-state=existing"
        "--heartbeat-interval=$CL_HEARTBEAT"
        "--election-timeout=$CL_ELECTION"
        "--snapshot-count=$CL_SNAPCOUNT"
    )
    printf '==== %s: start %s %s\n' "$(date +%T.%N)" "${CL_BIN[$m]}" \
        "${flags[*]}" >>"${CL_LOG[$m]}"
    "${CL_BIN[$m]}" "${flags[@]}" </dev/null >>"${CL_LOG[$m]}" 2>&1 &
    CL_PID[$m]=$!
    printf '%s\n' "$!" >>"$CL_TMP/.pids"
}

# ---------------------------------------------------------------- start
cl_cluster_new c 3 "$SUT"
cl_cluster_start c
LEADER=$(cl_leader c)
mapfile -t FOLLOWERS < <(cl_followers c)
((${#FOLLOWERS[@]} == 2)) || cl_fail "expected 2 followers, got ${FOLLOWERS[*]}"
F1=${FOLLOWERS[0]}
mapfile -t ORIGINALS < <(cl_members c)
echo "leader $LEADER, followers ${FOLLOWERS[*]}"
declare -A ID=()
for m in $(cl_members c); do
    ID[$m]=$(member_id "$LEADER" "$m")
    [[ -n ${ID[$m]} ]] || cl_fail "member list on $LEADER does not name $m"
done
CID=$(cl_status_field "$LEADER" cluster_id) ||
    cl_fail "no cluster_id in endpoint status of $LEADER"
CID_HEX=$(printf '%x' "$CID")

: >"$ACK"
: >"$ERR"
"$CL_PYTHON" "$CL_LOAD" write --endpoints "$(cl_urls c)" --prefix w/ \
    --acklog "$ACK" --errlog "$ERR" --stop "$STOP" --threads 6 \
    --timeout 2 --max-seconds 50 >"$CL_TMP/writer.out" 2>&1 &
WPID=$!
wait_acks 300 20
must "$LEADER" put mtest/marker joined >/dev/null

# The new member's ports; registered so that cl_* helpers and the cleanup
# trap know it.
NEW=c4
read -r p_client p_peer < <(cl_free_ports 2)
CL_BIN[$NEW]=$SUT
CL_PID[$NEW]=
CL_DIR[$NEW]=$CL_TMP/$NEW.data
CL_LOG[$NEW]=$CL_TMP/$NEW.log
CL_OF[$NEW]=c
CL_ARGS[$NEW]=
CL_CPORT[$NEW]=$p_client
CL_PPORT[$NEW]=$p_peer
NEW_PEER=$(peer_url "$NEW")

# ------------------------------------------------------ 1. learner, promote
echo "== 1. add $NEW as a learner (via follower $F1) under load"
T_ADD=$(cl_now)
must "$F1" member add "$NEW" --learner --peer-urls="$NEW_PEER"
ADD_OUT=$OUT
[[ $ADD_OUT =~ ^Member\ +([0-9a-f]+)\ added\ to\ cluster\ +([0-9a-f]+) ]] ||
    cl_fail "member add: unexpected output: $ADD_OUT"
NEW_ID=${BASH_REMATCH[1]}
check_line "member add: cluster ID" "${BASH_REMATCH[2]}" "$CID_HEX"
check_line "member add: ETCD_NAME" "$(sed -n 3p <<<"$ADD_OUT")" \
    "ETCD_NAME=\"$NEW\""
INITIAL=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$ADD_OUT")
want_initial=$(for m in $(cl_members c); do
    printf '%s=%s\n' "$m" "$(peer_url "$m")"
done
printf '%s=%s\n' "$NEW" "$NEW_PEER")
check_line "member add: ETCD_INITIAL_CLUSTER (sorted)" \
    "$(tr ',' '\n' <<<"$INITIAL" | sort)" "$(sort <<<"$want_initial")"
check_line "member add: ETCD_INITIAL_ADVERTISE_PEER_URLS" \
    "$(sed -n 5p <<<"$ADD_OUT")" \
    "ETCD_INITIAL_ADVERTISE_PEER_URLS=\"$NEW_PEER\""
check_line "member add: ETCD_INITIAL_CLUSTER_STATE" \
    "$(sed -n 6p <<<"$ADD_OUT")" 'ETCD_INITIAL_CLUSTER_STATE="existing"'
check_line "member list after add (unstarted learner)" \
    "$(member_row "$LEADER" "$NEW_ID")" "$NEW_ID, unstarted, , $NEW_PEER, , true"
n=$(member_row "$F1" "$NEW_ID" | wc -l)
((n == 1)) || mismatch "member list on $F1 after the add: $n rows for $NEW_ID"

echo "== error paths while $NEW is an unstarted learner"
read -r p_spare < <(cl_free_ports 1)
for m in "$F1" "$LEADER"; do
    expect_err "$m" "$E_LEARNERS" member add c5 --learner \
        --peer-urls="http://$CL_HOST:$p_spare"
    expect_err "$m" "$E_URLEXISTS" member add c5 --learner \
        --peer-urls="$(peer_url "$LEADER")"
    expect_err "$m" "$E_NOTREADY" member promote "$NEW_ID"
done

echo "== start $NEW with --initial-cluster-state=existing"
T_SPAWN=$(cl_now)
spawn_joiner "$NEW" "$INITIAL"
CL_MEMBERS[c]+=" $NEW"
deadline=$((SECONDS + 20))
until port_open "${CL_CPORT[$NEW]}" &&
    [[ $(cl_ectl "$NEW" --dial-timeout=1s --command-timeout=1s get \
        mtest/marker --consistency=s --print-value-only 2>/dev/null) == joined ]]; do
    if proc_gone "${CL_PID[$NEW]}"; then
        cl_dump_log "$NEW"
        cl_fail "new member $NEW exited"
    fi
    if ((SECONDS >= deadline)); then
        cl_dump_log "$NEW"
        cl_fail "new member $NEW does not serve a serializable get after 20s"
    fi
    sleep 0.05
done
T_SERVE=$(cl_now)
SERVE_S=$(elapsed "$T_SPAWN" "$T_SERVE")
echo "time to serve: ${SERVE_S}s (start of $NEW to a serializable get on it seeing a key written before the add)"

# It publishes its name once started: wait for that, then check the row.
want_row="$NEW_ID, started, $NEW, $NEW_PEER, $(client_url "$NEW"), true"
deadline=$((SECONDS + 10))
while row=$(member_row "$LEADER" "$NEW_ID") && [[ $row != "$want_row" ]] &&
    ((SECONDS < deadline)); do
    sleep 0.1
done
check_line "member list with $NEW started (learner)" "$row" "$want_row"
# (etcdctl retries that get for seconds: not counted in the time to
# promote.)
T_CHECKS=$(cl_now)
expect_err "$NEW" "$E_LEARNERRPC" put mtest/on-learner x
expect_err "$NEW" "$E_LEARNERRPC" get mtest/marker
CHECKS_S=$(elapsed "$T_CHECKS" "$(cl_now)")

echo "== promote $NEW (via follower $F1), retried while not in sync"
tries=0
T_FIRST=$(cl_now)
deadline=$((SECONDS + 25))
while :; do
    tries=$((tries + 1))
    run "$F1" member promote "$NEW_ID" >"$CL_TMP/promote.out"
    ((RC != 0)) || break
    if [[ $ETXT != "$E_NOTREADY" ]] || ((SECONDS >= deadline)); then
        cat "$CL_TMP/promote.out"
        cl_dump_log "$NEW"
        cl_fail "member promote $NEW_ID: exit $RC: $ETXT (after $tries tries)"
    fi
    sleep 0.1
done
T_PROMOTED=$(cl_now)
cat "$CL_TMP/promote.out"
PROMOTE_S=$(printf '%s %s %s\n' "$T_SPAWN" "$T_PROMOTED" "$CHECKS_S" |
    awk '{printf "%.3f", $2 - $1 - $3}')
echo "time to promote: ${PROMOTE_S}s from the start of $NEW," \
    "not counting the ${CHECKS_S}s of learner RPC checks" \
    "($(elapsed "$T_FIRST" "$T_PROMOTED")s after the first try, $tries tries)"
check_line "member promote output" "$OUT" \
    "$(printf 'Member %16s promoted in cluster %16s' "$NEW_ID" "$CID_HEX")"
check_line "member list after promote" "$(member_row "$LEADER" "$NEW_ID")" \
    "$NEW_ID, started, $NEW, $NEW_PEER, $(client_url "$NEW"), false"
for m in "$F1" "$LEADER"; do
    expect_err "$m" "$E_NOTLEARNER" member promote "$NEW_ID"
    expect_err "$m" "$E_NOTLEARNER" member promote "${ID[$LEADER]}"
done
expect_err "$LEADER" "$E_NOTFOUND" member promote 1234abcd1234abcd

# ------------------------------------------------------------- 2. update
echo "== 2. member update $NEW to its own peer URL (via $NEW)"
must "$NEW" member update "$NEW_ID" --peer-urls="$NEW_PEER"
check_line "member update output" "$OUT" \
    "$(printf 'Member %16s updated in cluster %16s' "$NEW_ID" "$CID_HEX")"
check_line "member list after update" "$(member_row "$LEADER" "$NEW_ID")" \
    "$NEW_ID, started, $NEW, $NEW_PEER, $(client_url "$NEW"), false"
expect_err "$NEW" "$E_NOTFOUND" member update 1234abcd1234abcd \
    --peer-urls="http://$CL_HOST:$p_spare"

# ------------------------------------------------------------- 3. remove
# The leader may have changed under load: pick an original member that
# does not lead now (and is not F1, unless F1 leads now).
LEADER=$(cl_leader c)
VICTIM=
for m in "${ORIGINALS[@]}"; do
    if [[ $m != "$LEADER" && $m != "$F1" ]]; then
        VICTIM=$m
    fi
done
if [[ $F1 == "$LEADER" ]]; then
    for m in "${ORIGINALS[@]}"; do
        if [[ $m != "$LEADER" && $m != "$VICTIM" ]]; then
            F1=$m
        fi
    done
fi
echo "== 3. remove original member $VICTIM (a follower) via leader $LEADER"
VICTIM_PID=${CL_PID[$VICTIM]}
VICTIM_URL=$(cl_url "$VICTIM")
T_REMOVE=$(cl_now)
must "$LEADER" member remove "${ID[$VICTIM]}"
check_line "member remove output" "$OUT" \
    "$(printf 'Member %16s removed from cluster %16s' "${ID[$VICTIM]}" "$CID_HEX")"
deadline=$((SECONDS + 20))
until proc_gone "$VICTIM_PID"; do
    if ((SECONDS >= deadline)); then
        cl_dump_log "$VICTIM"
        cl_fail "removed member $VICTIM still runs 20s after its removal"
    fi
    sleep 0.05
done
T_GONE=$(cl_now)
vrc=0
wait "$VICTIM_PID" 2>/dev/null || vrc=$?
CL_PID[$VICTIM]=
printf '==== %s: exited by itself after its removal, status %s\n' \
    "$(date +%T.%N)" "$vrc" >>"${CL_LOG[$VICTIM]}"
EXIT_S=$(elapsed "$T_REMOVE" "$T_GONE")
echo "removed member $VICTIM exited by itself ${EXIT_S}s after member remove, status $vrc"
((vrc == 0)) || mismatch "removed member $VICTIM exited with status $vrc (etcd: 0)"
[[ -z $(member_row "$LEADER" "${ID[$VICTIM]}") ]] ||
    mismatch "member list on $LEADER still names the removed $VICTIM"
REMAINING=("$LEADER" "$F1" "$NEW")
must "$LEADER" member list >/dev/null
n=$(wc -l <<<"$OUT")
((n == 3)) || mismatch "member list on $LEADER after the removal: $n rows, expected 3"

# The writer still sends a third of its puts to the removed member's
# endpoint (they fail); the others must keep being acknowledged.
deadline=$((SECONDS + 15))
while :; do
    n=$(awk -F'\t' -v t="$T_GONE" -v v="$VICTIM_URL" '$4 > t && $3 != v' \
        "$ACK" | wc -l)
    ((n < 100)) || break
    if ((SECONDS >= deadline)); then
        tail -n 5 "$ERR" >&2 || true
        cl_dump_logs c
        cl_fail "only $n writes acknowledged in 15s after the removal"
    fi
    sleep 0.05
done
echo "writes go on: $n acknowledged since $VICTIM exited"
for m in "${REMAINING[@]}"; do
    must "$m" put "mtest/after-remove-$m" x
done

echo "== error paths after the removal"
expect_err "$LEADER" "$E_NOTFOUND" member remove "${ID[$VICTIM]}"
expect_err "$F1" "$E_NOTFOUND" member remove "${ID[$VICTIM]}"
expect_err "$NEW" "$E_NOTFOUND" member remove 1234abcd1234abcd
# etcd derives a new member's ID from its peer URLs and the time in
# seconds: within the second of the first add, the same URL would collide
# on the ID ("member ID already exist") before the URL check.
while (($(elapsed "$T_ADD" "$(cl_now)" | cut -d. -f1) < 2)); do
    sleep 0.2
done
expect_err "$LEADER" "$E_URLEXISTS" member add c5 --peer-urls="$NEW_PEER"
expect_err "$F1" "$E_URLEXISTS" member add c5 --peer-urls="$(peer_url "$F1")"

# ------------------------------------------------------------ 4. verify
touch "$STOP"
wrc=0
wait "$WPID" || wrc=$?
WPID=
cat "$CL_TMP/writer.out"
((wrc == 0)) || cl_fail "writer failed (status $wrc)"
echo "write errors by kind:"
cut -f5 "$ERR" | sed 's/[0-9a-f]\{16\}/<ID>/g' | sort | uniq -c | sort -rn |
    awk 'NR <= 8'
for m in "${REMAINING[@]}"; do
    "$CL_PYTHON" "$CL_LOAD" verify --endpoint "$(cl_url "$m")" --prefix w/ \
        "$ACK" || {
        cl_dump_log "$m"
        cl_fail "member $m: acknowledged writes missing or wrong"
    }
done
LEADER=$(cl_leader c 10)
REV=$(cl_revision "$LEADER")
for m in "${REMAINING[@]}"; do
    cl_revision "$m" >/dev/null # waits until m has applied everything
done
cl_hashkv_check "$REV" "${REMAINING[@]}" ||
    cl_fail "HashKV differs between the remaining members at revision $REV"
out=$(cl_ectl "$LEADER" --command-timeout=20s endpoint hashkv --cluster \
    -w json 2>"$CL_TMP/hashkv.err") || true
"$CL_PYTHON" "$CL_LOAD" hashkv-cluster 3 <<<"$out" || {
    grep -v '"level"' "$CL_TMP/hashkv.err" >&2 || true
    mismatch "endpoint hashkv --cluster: not 3 equal hashes"
}
must "$LEADER" member list >/dev/null
LIST=$OUT
for m in "$F1" "$NEW"; do
    must "$m" member list >/dev/null
    check_line "member list on $m vs on $LEADER" "$OUT" "$LIST"
done

for m in "${REMAINING[@]}"; do
    cl_stop "$m"
    [[ $CL_LAST_RC == 0 || $CL_LAST_RC == 143 ]] || {
        cl_dump_log "$m"
        cl_fail "member $m exited with status $CL_LAST_RC on SIGTERM"
    }
done
cl_problems c || cl_fail "sanitizer report in a member's log"
echo "RESULT serve_s=$SERVE_S promote_s=$PROMOTE_S promote_tries=$tries removed_exit_s=$EXIT_S server=${SUT##*/}"
if ((${#MISMATCHES[@]} > 0)); then
    printf 'MISMATCH: %s\n' "${MISMATCHES[@]}" >&2
    cl_fail "${#MISMATCHES[@]} difference(s) from etcd's behaviour (above)"
fi
echo "PASS: learner added, promoted, updated; a member removed under load; no acknowledged write lost, hashes agree"
