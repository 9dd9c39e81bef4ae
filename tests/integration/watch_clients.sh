#!/bin/bash
# tests/integration/watch_clients.sh: Watch and Lease through real clients,
# real etcd as the baseline. A fresh single-member etcd and a fresh server
# under test (same flags) get the same commands, both sides at once; what
# each prints must be identical:
#
#  1. python3-etcd3 (wl_client.py scenario): put / get / delete / txn,
#     watch and watch_prefix with start revisions (history replay), with
#     prev_kv, on a range, with NOPUT / NODELETE filters (raw stub: the
#     module cannot send them), a start revision in the future, cancel
#     (callback and iterator API), leases: grant, put(lease=), refresh,
#     get_lease_info / remaining_ttl, revoke and the DELETE events a
#     watcher sees (one revision), errors (unknown lease, TTL too large,
#     ID in use), the minimum TTL and a real expiry, a watch from a
#     compacted revision. Lease IDs are numbered by appearance, remaining
#     TTLs checked against a range. Then one raw Watch stream (requests
#     built byte by byte: the module's stubs predate watch_id, fragment
#     and progress_request) carrying creates with auto and explicit
#     (duplicate) watch IDs, a progress request, cancels (known and
#     unknown IDs), a reversed range, a compacted start revision, empty
#     keys, and a half-close after which etcd keeps delivering events.
#  2. etcdctl watch: `--prefix --rev=N --prev-kv` (simple and -w json, the
#     JSON header's cluster/member IDs and raft term normalised), a range,
#     a compacted start revision, argument errors, and an interactive
#     session (`watch -i`: two watches with and without --rev and
#     --prev-kv, `progress`, invalid lines, EOF) fed line by line from
#     stdin while etcdctl puts change the keys in between.
#
# Env: IKADA_TEST_SERVER=etcd (etcd against etcd), IK_KEEP_TMP=1.

set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
WL=$IK_LIBDIR/wl_client.py
"$IK_PYTHON" -c 'import etcd3, grpc' 2>/dev/null ||
    ik_skip "python3 modules etcd3 / grpc (Debian python3-etcd3) are missing"

ik_server_start ref "$IK_ETCD"
ik_server_start sut "$SUT"
ik_server_wait_ready ref
ik_server_wait_ready sut

# ------------------------------------------------------------- recorder
# Each side writes its transcript to $IK_TMP/<side>.txt.

OUT=
SIDE=

say() {
    printf '%s\n' "$*" >>"$OUT"
}

# Normalise what legitimately differs: JSON header IDs and raft term.
norm() {
    sed -E -e 's/"(cluster_id|member_id)":[0-9]+/"\1":<ID>/g' \
        -e 's/"raft_term":[0-9]+/"raft_term":<TERM>/g'
}

# rec LABEL TIMEOUT STDIN ARGS...: etcdctl ARGS with stdin from file STDIN
# (or /dev/null), killed after TIMEOUT s; records stdout, stderr and the
# exit status.
rec() {
    local label=$1 limit=$2 in=${3:-/dev/null} rc=0 base
    shift 3
    base=$IK_TMP/$SIDE.last
    ETCDCTL_API=3 timeout -k 2 "$limit" "$IK_ETCDCTL" \
        --endpoints="$(ik_server_url "$SIDE")" "$@" \
        <"$in" >"$base.out" 2>"$base.err" || rc=$?
    say "==== $label: etcdctl $*"
    norm <"$base.out" >>"$OUT"
    say "---- stderr"
    norm <"$base.err" >>"$OUT"
    say "---- exit $rc"
}

sput() {
    ectl "$SIDE" put "$@" >/dev/null
}

rev_now() {
    ectl "$SIDE" get rev-probe -w json |
        sed -n 's/.*"revision":\([0-9]*\).*/\1/p'
}

# The interactive session: lines go to etcdctl's stdin one by one, with
# writes (and time for etcdctl to print) in between.
interactive_feed() {
    local r=$1
    printf 'watch --rev=%s wi/a\n' "$((r + 1))"
    sleep 0.6
    sput wi/a 1
    sleep 0.4
    printf 'watch --prefix --rev=%s --prev-kv wi/\n' "$((r + 1))"
    sleep 0.6
    # (only keys the second watch alone sees: two watches printing the
    # same event would interleave at random)
    sput wi/b 2
    sleep 0.4
    sput wi/c 3
    sleep 0.4
    printf 'progress\n'
    sleep 0.6
    printf 'bogus line\n'
    printf '\n'
    printf 'watch\n'
    printf 'watch --rev=abc x\n'
    sleep 0.4
}

side() {
    SIDE=$1
    OUT=$IK_TMP/$SIDE.txt
    local rc=0 r
    : >"$OUT"
    say "==== python3-etcd3 scenario"
    timeout -k 2 60 "$IK_PYTHON" "$WL" scenario \
        --endpoint "$(ik_server_url "$SIDE")" >>"$OUT" \
        2>"$IK_TMP/$SIDE.scenario.err" || rc=$?
    say "---- scenario exit $rc"
    grep '^wl_client:' "$IK_TMP/$SIDE.scenario.err" | sed "s/^/$SIDE: /" >&2 || true

    # etcdctl watch transcripts (keys wx/, after the scenario's compaction)
    r=$(rev_now)
    sput wx/a 1
    sput wx/b 2
    sput wx/a 3
    ectl "$SIDE" del wx/b >/dev/null
    ectl "$SIDE" txn >/dev/null <<'EOF'

put wx/c 4
put wx/d 5
del wx/a


EOF
    # the watches that do not end by themselves are stopped after 2 s
    rec "prefix, history, prev-kv" 2 "" watch --prefix --rev=$((r + 1)) --prev-kv wx/
    rec "prefix, history, json" 2 "" watch --prefix --rev=$((r + 1)) --prev-kv -w json wx/
    rec "range, history" 2 "" watch --rev=$((r + 2)) wx/b wx/d
    rec "key, from the txn" 2 "" watch --rev=$((r + 5)) wx/a
    rec "compacted revision" 5 "" watch --prefix --rev=2 wx/
    rec "no key" 5 "" watch
    rec "prefix and range end" 5 "" watch --prefix wx/a wx/b
    rec "bad revision" 5 "" watch --rev=abc wx/
    # the interactive session: the feed reaches etcdctl line by line
    r=$(rev_now)
    local base=$IK_TMP/$SIDE.inter
    rc=0
    interactive_feed "$r" | ETCDCTL_API=3 timeout -k 2 15 "$IK_ETCDCTL" \
        --endpoints="$(ik_server_url "$SIDE")" watch -i \
        >"$base.out" 2>"$base.err" || rc=$?
    say "==== interactive: etcdctl watch -i"
    cat "$base.out" >>"$OUT"
    say "---- stderr"
    cat "$base.err" >>"$OUT"
    say "---- exit $rc"
}

side ref &
REF_PID=$!
side sut &
SUT_PID=$!
rc_ref=0
rc_sut=0
wait "$REF_PID" || rc_ref=$?
wait "$SUT_PID" || rc_sut=$?
((rc_ref == 0)) || ik_fail "recording against etcd failed (status $rc_ref)"
((rc_sut == 0)) || ik_fail "recording against the server under test failed (status $rc_sut)"

for s in ref sut; do
    ik_server_alive "$s" || {
        ik_dump_log "$s"
        ik_fail "server $s (${IK_BIN[$s]}) died during the test"
    }
done

# The reference transcript must be complete, or the comparison proves
# nothing.
grep -q '^---- scenario exit 0$' "$IK_TMP/ref.txt" || {
    cat "$IK_TMP/ref.scenario.err" >&2
    ik_fail "the python3-etcd3 scenario failed against etcd"
}
for want in 'refresh revoked \[\(.L1., 0\)\]' '^progress notify: ' \
    'requested lease not found' 'required revision has been compacted' \
    '^expired within \[1, 5\] s True$'; do
    grep -qE "$want" "$IK_TMP/ref.txt" ||
        ik_fail "reference transcript lacks /$want/ (test broken?)"
done
n=$(wc -l <"$IK_TMP/ref.txt")

# Graceful stop (sanitizer builds report leaks at exit), then compare.
ik_server_stop sut
stop_rc=$IK_LAST_RC
san=0
ik_server_problems sut || san=1
if ! diff -u "$IK_TMP/ref.txt" "$IK_TMP/sut.txt" >"$IK_TMP/diff.txt"; then
    head -n 150 "$IK_TMP/diff.txt"
    grep -v '^wl_client' "$IK_TMP/sut.scenario.err" | tail -n 20 >&2 || true
    ik_fail "transcripts differ (--- etcd, +++ ${SUT##*/})"
fi
((san == 0)) || ik_fail "sanitizer report in the server log"
ik_clean_exit_status "$stop_rc" || {
    ik_dump_log sut
    ik_fail "${SUT##*/} exited with status $stop_rc on SIGTERM"
}
echo "PASS: $n transcript lines identical (python3-etcd3 watch/lease scenario, raw watch stream, etcdctl watch and watch -i)"
