#!/bin/bash
# tests/integration/lock_elect.sh: etcd's lock and election APIs.
#
# Two kinds of clients use them:
#  - etcdctl lock / etcdctl elect run etcd's concurrency recipes on the
#    client side, over KV, Watch and Lease;
#  - gRPC clients of the v3lockpb.Lock and v3electionpb.Election services
#    (etcd runs the same recipes server-side), driven here with
#    lock_client (built next to this script by `make check`).
#
# Transcripts (compared with a real etcd started next to the server under
# test, after replacing lease ids by L1, L2 ... in order of appearance):
#  1. every service method, incl. a waiter that gives up (deadline) and
#     the cleanup of its key, errors, and an Observe stream;
#  2. etcdctl elect p1 / p2 with an etcdctl elect -l observer.
# Properties checked on the server under test:
#  3. mutual exclusion: concurrent `etcdctl lock NAME -- cmd` contenders,
#     and concurrent Lock/Unlock service contenders, never overlap;
#  4. a lock is released when its holder is killed (-9: its lease
#     expires; SIGTERM: etcdctl unlocks), and a service waiter whose
#     client is killed -9 loses its key.
#
# Env: IKADA_TEST_SERVER=etcd runs it against real etcd (both sides etcd:
# no difference allowed), LOCK_CLIENT overrides the client's path,
# IK_KEEP_TMP=1 keeps the transcripts and logs.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
LOCK_CLIENT=${LOCK_CLIENT:-${top_builddir:-}/tests/integration/lock_client}
[[ -x $LOCK_CLIENT ]] ||
    ik_skip "lock_client not built ($LOCK_CLIENT); run via make check or set LOCK_CLIENT"

ik_server_start ref "$IK_ETCD"
ik_server_start sut "$SUT"
ik_server_wait_ready ref
ik_server_wait_ready sut

# Until the services are registered in the server's method table, skip
# rather than fail (UNIMPLEMENTED "unknown service ...").
probe=$("$LOCK_CLIENT" "$(ik_server_url sut)" leader probe 2>&1 || true)
if [[ $probe == "status=12 "* ]]; then
    ik_skip "the server under test does not serve v3lockpb/v3electionpb ($probe)"
fi

lc() {
    "$LOCK_CLIENT" "$@" 2>&1 || true
}

# ec NAME: sets EC to the etcdctl command line for NAME. Background jobs
# run it directly (not through a shell function) so that $! is the
# client's own pid and signals reach it.
ec() {
    EC=(env ETCDCTL_API=3 "$IK_ETCDCTL" --endpoints="$(ik_server_url "$1")")
}

# grant NAME: a 60 s lease; prints its id in hex as keys spell it (no
# leading zeros; etcdctl pads to 16 digits).
grant() {
    local h
    h=$(ectl "$1" lease grant 60 | awk '{print $2}')
    printf '%x\n' "$((16#$h))"
}

# wait_key NAME KEY present|absent: until KEY is (not) there (10 s).
wait_key() {
    local name=$1 key=$2 want=$3 i out
    for ((i = 0; i < 100; i++)); do
        out=$(ectl "$name" get "$key" --keys-only 2>/dev/null || true)
        if [[ $want == present && -n $out ]] ||
            [[ $want == absent && -z $out ]]; then
            return 0
        fi
        sleep 0.1
    done
    ik_fail "$name: key $key still not $want after 10s"
}

# wait_lines FILE N: until FILE has N lines (20 s).
wait_lines() {
    local i
    for ((i = 0; i < 200; i++)); do
        if [[ -f $1 ]] && (($(wc -l <"$1") >= $2)); then
            return 0
        fi
        sleep 0.1
    done
    ik_fail "$1: fewer than $2 lines after 20s: $(cat "$1" 2>/dev/null)"
}

# field FILE NAME: the value of the first "NAME=value" line.
field() {
    sed -n "s/^$2=//p" "$1" | head -n 1
}

# normalize FILE HEX...: lease ids (the given ones first, then any other
# one found in a key) become L1, L2 ..., in hex and in decimal.
normalize() {
    "$IK_PYTHON" - "$@" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
names = {}
for h in sys.argv[2:] + re.findall(r'/([0-9a-f]{8,16})\b', text):
    names.setdefault(h, "L%d" % (len(names) + 1))
for h, n in names.items():
    text = re.sub(r'\b%s\b' % h, n, text)
    text = re.sub(r'\b%d\b' % int(h, 16), n, text)
sys.stdout.write(text)
EOF
}

# services NAME OUT: transcript of the Lock and Election services on NAME.
services() {
    local s=$1 out=$2 ep l1 l2 l3 d1 d2 d3 pb pc po r1 r2 k
    ep=$(ik_server_url "$s")
    l1=$(grant "$s")
    l2=$(grant "$s")
    l3=$(grant "$s")
    d1=$((16#$l1))
    d2=$((16#$l2))
    d3=$((16#$l3))
    {
        echo "## lock: free"
        lc "$ep" lock lk "$d1"
        echo "## lock: a waiter"
        "$LOCK_CLIENT" "$ep" lock lk "$d2" >"$IK_TMP/$s.b" 2>&1 &
        pb=$!
        wait_key "$s" "lk/$l2" present
        echo "## lock: a waiter whose deadline passes loses its key"
        lc -t 800 "$ep" lock lk "$d3"
        wait_key "$s" "lk/$l3" absent
        echo "gone: lk/$l3"
        echo "## lock: the holder's lease again (same key)"
        lc "$ep" lock lk "$d1"
        echo "## unlock: the waiter gets the lock"
        lc "$ep" unlock "lk/$l1"
        wait "$pb" || true
        cat "$IK_TMP/$s.b"
        lc "$ep" unlock "lk/$l2"
        echo "## lock: lease 0 grants a session lease"
        lc "$ep" lock lk0 >"$IK_TMP/$s.z"
        cat "$IK_TMP/$s.z"
        k=$(field "$IK_TMP/$s.z" key)
        ectl "$s" lease timetolive "${k#lk0/}" 2>&1 |
            sed -e 's/, remaining.*//' -e 's/lease 0*/lease /'
        echo "## errors"
        lc "$ep" lock lk 12345
        lc "$ep" unlock ""
        lc "$ep" unlock nokey
        lc "$ep" leader el
        lc "$ep" proclaim-nil v
        lc "$ep" resign-nil
        lc "$ep" proclaim el "" 0 "$d1" v
        echo "## election"
        timeout 30 "$LOCK_CLIENT" "$ep" observe el 5 >"$IK_TMP/$s.o" 2>&1 &
        po=$!
        sleep 1
        lc "$ep" campaign el "$d1" v1 | tee "$IK_TMP/$s.a"
        r1=$(field "$IK_TMP/$s.a" leader.rev)
        lc "$ep" campaign el "$d1" v2
        lc "$ep" leader el
        lc "$ep" proclaim el "el/$l1" 999 "$d1" v3
        lc "$ep" proclaim el "el/$l1" "$r1" "$d1" v3
        "$LOCK_CLIENT" "$ep" campaign el "$d2" w1 >"$IK_TMP/$s.c" 2>&1 &
        pc=$!
        wait_key "$s" "el/$l2" present
        echo "## campaign: a candidate whose deadline passes resigns"
        lc -t 800 "$ep" campaign el "$d3" x
        wait_key "$s" "el/$l3" absent
        echo "gone: el/$l3"
        lc "$ep" resign el "el/$l1" 999 "$d1"
        lc "$ep" resign el "el/$l1" "$r1" "$d1"
        wait "$pc" || true
        cat "$IK_TMP/$s.c"
        r2=$(field "$IK_TMP/$s.c" leader.rev)
        lc "$ep" leader el
        lc "$ep" proclaim el "el/$l2" "$r2" "$d2" w2
        echo "## observe (5 responses)"
        wait "$po" || echo "observe status $?"
        cat "$IK_TMP/$s.o"
        echo "## end state"
        ectl "$s" get "" --prefix 2>&1
    } >"$IK_TMP/$s.services.raw"
    normalize "$IK_TMP/$s.services.raw" "$l1" "$l2" "$l3" >"$out"
}

# elect NAME OUT: etcdctl elect p1 / p2 with an observer.
elect() {
    local s=$1 out=$2 t=$IK_TMP/$1.elect po p1 p2 rc1=0 rc2=0 rco=0
    ec "$s"
    "${EC[@]}" elect -l myelection >"$t.obs" 2>&1 &
    po=$!
    sleep 1
    "${EC[@]}" elect myelection p1 >"$t.p1" 2>&1 &
    p1=$!
    wait_lines "$t.p1" 2
    "${EC[@]}" elect myelection p2 >"$t.p2" 2>&1 &
    p2=$!
    sleep 1
    [[ ! -s $t.p2 ]] || ik_fail "$s: p2 elected while p1 leads: $(cat "$t.p2")"
    kill -TERM "$p1"
    wait "$p1" || rc1=$?
    wait_lines "$t.p2" 2
    kill -TERM "$p2"
    wait "$p2" || rc2=$?
    wait_lines "$t.obs" 4
    sleep 0.5
    kill -TERM "$po"
    wait "$po" || rco=$?
    {
        echo "## p1 (exit status $rc1 after SIGTERM)"
        cat "$t.p1"
        echo "## p2 (exit status $rc2 after SIGTERM)"
        cat "$t.p2"
        echo "## observer (exit status $rco after SIGTERM)"
        cat "$t.obs"
        echo "## end state"
        ectl "$s" get myelection --prefix 2>&1
    } >"$t.raw"
    normalize "$t.raw" >"$out"
}

compare() {
    if ! diff -u "$IK_TMP/ref.$1" "$IK_TMP/sut.$1" >"$IK_TMP/$1.diff"; then
        cat "$IK_TMP/$1.diff" >&2
        ik_server_problems sut || true
        ik_fail "$1: the server under test differs from etcd"
    fi
    echo "$1: same as etcd ($(wc -l <"$IK_TMP/sut.$1") lines)"
}

for s in ref sut; do
    services "$s" "$IK_TMP/$s.services"
    elect "$s" "$IK_TMP/$s.elect"
done
compare services
compare elect
grep -q '^p1$' "$IK_TMP/sut.elect" || ik_fail "elect: p1 never observed"
grep -q '^p2$' "$IK_TMP/sut.elect" || ik_fail "elect: p2 never observed"

EP=$(ik_server_url sut)

# check_exclusive LOG N WHAT: N "enter I T" / "exit I T" pairs, one
# contender at a time.
check_exclusive() {
    "$IK_PYTHON" - "$1" "$2" "$3" <<'EOF' || ik_fail "$3: overlap or missing run"
import sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
n, what = int(sys.argv[2]), sys.argv[3]
assert len(lines) == 2 * n, "%s: %d lines, want %d" % (what, len(lines), 2 * n)
holder, last_exit, seen = None, 0, set()
for kind, who, t in lines:
    t = int(t)
    if kind == "enter":
        assert holder is None, "%s: %s entered while %s held the lock" % (what, who, holder)
        assert t >= last_exit, "%s: %s entered before the last exit" % (what, who)
        holder = who
        seen.add(who)
    else:
        assert holder == who, "%s: %s left while %s held the lock" % (what, who, holder)
        holder, last_exit = None, t
assert len(seen) == n, "%s: %d distinct holders, want %d" % (what, len(seen), n)
print("%s: %d holders, no overlap" % (what, n))
EOF
}

# 3a. etcdctl lock contenders.
ec sut
N=5
LOG=$IK_TMP/mutex.log
: >"$LOG"
pids=()
for ((i = 1; i <= N; i++)); do
    timeout 60 "${EC[@]}" lock mutex -- \
        sh -c "echo enter $i \$(date +%s%N) >>'$LOG'; sleep 0.2; echo exit $i \$(date +%s%N) >>'$LOG'" \
        >"$IK_TMP/mutex.$i.out" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || ik_fail "an etcdctl lock contender failed: $(cat "$IK_TMP"/mutex.*.out)"
done
check_exclusive "$LOG" "$N" "etcdctl lock"
[[ -z $(ectl sut get mutex --prefix --keys-only) ]] ||
    ik_fail "etcdctl lock left keys behind"

# 3b. Lock/Unlock service contenders, each with its own lease.
SLOG=$IK_TMP/svc.log
: >"$SLOG"
contender() {
    local i=$1 lease=$2 out key
    out=$("$LOCK_CLIENT" "$EP" lock svc "$lease" 2>&1) ||
        { echo "lock $i: $out" >&2; return 1; }
    key=$(printf '%s\n' "$out" | sed -n 's/^key=//p')
    echo "enter $i $(date +%s%N)" >>"$SLOG"
    sleep 0.2
    echo "exit $i $(date +%s%N)" >>"$SLOG"
    "$LOCK_CLIENT" "$EP" unlock "$key" >/dev/null ||
        { echo "unlock $i failed" >&2; return 1; }
}
export EP LOCK_CLIENT SLOG
export -f contender
pids=()
for ((i = 1; i <= N; i++)); do
    l=$(grant sut)
    timeout 60 bash -c "contender $i $((16#$l))" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || ik_fail "a Lock service contender failed"
done
check_exclusive "$SLOG" "$N" "Lock service"
[[ -z $(ectl sut get svc --prefix --keys-only) ]] ||
    ik_fail "Lock service contenders left keys behind"

# 4a. The holder is killed -9: its 3 s lease expires, the waiter gets in.
HOLD=$IK_TMP/hold.out
ec sut
"${EC[@]}" lock --ttl 3 held >"$HOLD" 2>&1 &
hp=$!
wait_lines "$HOLD" 1
"${EC[@]}" lock --ttl 3 held -- sh -c "date +%s%N >'$IK_TMP/got'" \
    >"$IK_TMP/waiter.out" 2>&1 &
wp=$!
sleep 1
[[ ! -e $IK_TMP/got ]] || ik_fail "the waiter got the lock while it was held"
t0=$(date +%s%N)
kill -9 "$hp"
wait "$hp" 2>/dev/null || true
for ((i = 0; i < 150; i++)); do
    [[ ! -s $IK_TMP/got ]] || break
    sleep 0.1
done
[[ -s $IK_TMP/got ]] || ik_fail "lock not released 15s after its holder was killed -9"
wait "$wp" || ik_fail "the waiter failed: $(cat "$IK_TMP/waiter.out")"
echo "lock released $((($(cat "$IK_TMP/got") - t0) / 1000000)) ms after kill -9 of its holder (lease TTL 3 s)"

# 4b. The holder gets SIGTERM: etcdctl unlocks at once.
rm -f "$IK_TMP/got"
"${EC[@]}" lock held >"$HOLD" 2>&1 &
hp=$!
wait_lines "$HOLD" 1
"${EC[@]}" lock held -- sh -c "date +%s%N >'$IK_TMP/got'" \
    >"$IK_TMP/waiter.out" 2>&1 &
wp=$!
sleep 1
[[ ! -e $IK_TMP/got ]] || ik_fail "the waiter got the lock while it was held"
t0=$(date +%s%N)
kill -TERM "$hp"
wait "$hp" 2>/dev/null || true
wait "$wp" || ik_fail "the waiter failed: $(cat "$IK_TMP/waiter.out")"
ms=$((($(cat "$IK_TMP/got") - t0) / 1000000))
((ms < 3000)) || ik_fail "lock released only ${ms} ms after SIGTERM of its holder"
echo "lock released $ms ms after SIGTERM of its holder"

# 4c. A Lock service waiter whose client dies loses its key.
l1=$(grant sut)
l2=$(grant sut)
lc "$EP" lock gone "$((16#$l1))" >/dev/null
"$LOCK_CLIENT" "$EP" lock gone "$((16#$l2))" >/dev/null 2>&1 &
cp=$!
wait_key sut "gone/$l2" present
kill -9 "$cp"
wait "$cp" 2>/dev/null || true
wait_key sut "gone/$l2" absent
echo "a killed Lock waiter's key is deleted"

# 5. Stop the server while a Lock waiter and an observer are live: a
# clean exit, the clients see the connection go.
ik_server_alive sut || ik_fail "the server under test died"
"$LOCK_CLIENT" "$EP" lock gone "$((16#$l2))" >"$IK_TMP/last.lock" 2>&1 &
lp=$!
"$LOCK_CLIENT" "$EP" observe gone >"$IK_TMP/last.observe" 2>&1 &
op=$!
wait_key sut "gone/$l2" present
wait_lines "$IK_TMP/last.observe" 1
ik_server_stop sut
ik_clean_exit_status "$IK_LAST_RC" ||
    ik_fail "the server under test exited with status $IK_LAST_RC on SIGTERM"
wait "$lp" 2>/dev/null || true
wait "$op" 2>/dev/null || true
grep -q '^status=14 ' "$IK_TMP/last.lock" ||
    ik_fail "a Lock waiter did not see the server go: $(cat "$IK_TMP/last.lock")"
ik_server_problems sut || ik_fail "sanitizer reports in the server's log"
echo "PASS: lock_elect"
