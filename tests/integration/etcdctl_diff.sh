#!/bin/bash
# tests/integration/etcdctl_diff.sh: differential test. The same long
# scenario of real etcdctl 3.4 commands runs against a fresh real etcd and a
# fresh server under test (both single-member, same flags); for every
# command the command line, stdin, stdout, stderr and exit code are
# recorded, normalised by normalize.py (only IDs, ports, terms, sizes,
# versions, timestamps and durations), and the two transcripts must be
# identical.
#
# The scenario is the set of sc_* functions below, run in the order listed
# in SECTIONS (section "limits" runs on servers started with small
# --max-request-bytes and --max-txn-ops). To extend it, add commands to a
# section or add a section function and list it. Recorders:
#   c ARGS...            etcdctl ARGS, stdin from /dev/null
#   ci TEXT ARGS...      etcdctl ARGS with TEXT fed verbatim on stdin
#   cf FILE ARGS...      etcdctl ARGS with FILE on stdin
#   cpb ARGS...          like c, stdout is protobuf (decoded for the diff)
#   chash ARGS...        like c, stdout recorded as length + sha256
#   cipb TEXT ARGS...    like ci, stdout is protobuf
#   cwatch SECS ARGS...  etcdctl ARGS killed after SECS (for `watch`)
# Revisions are deterministic: the main sections share one fresh server
# (revision 1 at start), "limits" gets another, and every command changes
# the same state on both sides. Revisions a command needs are computed with
# cur_rev, so sections can be extended without renumbering later ones.
# Servers that crash or stop answering are reported; the remaining commands
# are then recorded as not run.
#
# Cluster mode (IK_DIFF_CLUSTER=N, N >= 2): each server is instead an
# N-member cluster (same flags on both sides, --heartbeat-interval=100
# --election-timeout=1000) and every command goes to one follower of it, so
# writes are forwarded to the leader and linearizable reads go through the
# follower's read index. Members are then named by role in the transcript
# (the follower, the leader, the others; see normalize.py). The leader must
# be the same member, in the same term, at the end of each section as at
# its start: otherwise the run is inconclusive and fails as such. No
# section needs skipping in this mode: none restarts a server, and what
# each one checks holds through a follower as well.
#
# CLI mode (IK_DIFF_CLI=/path/to/ikadactl): both sides run a fresh real etcd;
# the reference side records real etcdctl, the other side records the CLI
# under test with the same arguments (the transcript still shows
# "etcdctl ..."), so the CLI must match etcdctl byte for byte, except for
# help texts: normalize.py reduces them (on both sides, in every mode) to
# the command name, usage line and flags with their defaults, so a CLI with
# help worded its own way still passes while a missing flag or a different
# default fails.
#
# Env: IKADA_TEST_SERVER=etcd runs etcd against etcd (validates the script),
# IK_KEEP_TMP=1 keeps transcripts and logs, IK_DIFF_CLUSTER=3 cluster mode,
# IK_DIFF_SECTIONS="sc_put ..." runs only the sections listed.

# shellcheck disable=SC2317 # sections are called through $SECTIONS
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
CLI=${IK_DIFF_CLI:-}
if [[ -n $CLI ]]; then
    [[ -x $CLI ]] || ik_skip "CLI under test $CLI is not built"
    SUT=$IK_ETCD
else
    SUT=$(ik_sut_binary)
fi
REC_CTL=$IK_ETCDCTL # the CLI the recorder runs (per side)
NORMALIZE=$IK_LIBDIR/normalize.py
LEASE_TTL=600
CLUSTER_N=${IK_DIFF_CLUSTER:-}
if [[ -n $CLUSTER_N ]] && ! [[ $CLUSTER_N =~ ^[0-9]+$ && $CLUSTER_N -ge 2 ]]; then
    ik_fail "IK_DIFF_CLUSTER must be a member count of at least 2, not '$CLUSTER_N'"
fi
CLUSTER_FLAGS=(--heartbeat-interval=100 --election-timeout=1000)

# ------------------------------------------------------------- recorder

REC_DIR=
REC_SCRATCH= # per-side scratch dir (the two sides run concurrently)
REC_SERVER=
REC_CLUSTER= # cluster mode: the cluster REC_SERVER belongs to
declare -A REC_ROLE=() # cluster mode: member -> self, leader or other
REC_N=0
REC_DEAD=
REC_STALLS=0

_rec_display() {
    local a q out=etcdctl
    for a in "$@"; do
        if ((${#a} > 100)); then
            q=$(printf %s "$a" | md5sum)
            out+=" <${#a}-char argument, md5 ${q:0:12}>"
        else
            printf -v q '%q' "$a"
            out+=" $q"
        fi
    done
    printf '%s\n' "$out"
}

# _rec_gone: prints the role of a cluster member that no longer runs
# ("server" outside cluster mode), nothing while all run.
_rec_gone() {
    local m
    if [[ -z $REC_CLUSTER ]]; then
        ik_server_alive "$REC_SERVER" || echo server
        return 0
    fi
    for m in $(ik_cluster_members "$REC_CLUSTER"); do
        if ! ik_server_alive "$m"; then
            printf '%s\n' "${REC_ROLE[$m]}"
            return 0
        fi
    done
}

# _rec MODE STDIN_FILE TIMEOUT ARGS...
_rec() {
    local mode=$1 infile=$2 limit=$3 base rc=0 gone
    shift 3
    REC_N=$((REC_N + 1))
    printf -v base '%s/%04d' "$REC_DIR" "$REC_N"
    _rec_display "$@" >"$base.cmd"
    printf '%s\n' "$mode" >"$base.mode"
    [[ -z $infile ]] || cp "$infile" "$base.in"
    if [[ -n $REC_DEAD ]]; then
        printf '%s\n' "$REC_DEAD" >"$base.skip"
        return 0
    fi
    ETCDCTL_API=3 GOMAXPROCS=1 timeout -k 2 "$limit" "$REC_CTL" \
        --endpoints="$IK_HOST:${IK_CPORT[$REC_SERVER]}" "$@" \
        <"${infile:-/dev/null}" >"$base.out" 2>"$base.err" || rc=$?
    printf '%s\n' "$rc" >"$base.rc"
    gone=$(_rec_gone)
    if [[ $gone == server ]]; then
        REC_DEAD="server exited during an earlier command"
        printf 'server process is gone\n' >"$base.died"
        return 0
    elif [[ -n $gone ]]; then
        REC_DEAD="cluster member ($gone) exited during an earlier command"
        printf 'cluster member process is gone (%s)\n' "$gone" >"$base.died"
        return 0
    fi
    # A server that stops answering would make every later command wait
    # for etcdctl's timeouts: after 3 stalls in a row skip the rest.
    if [[ $mode != watch ]] && ((rc != 0)) && { ((rc == 124)) ||
        grep -q 'context deadline exceeded' "$base.err"; }; then
        REC_STALLS=$((REC_STALLS + 1))
        if ((REC_STALLS >= 3)); then
            REC_DEAD="server stopped answering (3 timeouts in a row)"
        fi
    else
        REC_STALLS=0
    fi
}

c() { _rec simple "" 30 "$@"; }
cpb() { _rec protobuf "" 30 "$@"; }
chash() { _rec hash "" 30 "$@"; }
cf() {
    local f=$1
    shift
    _rec simple "$f" 30 "$@"
}
ci() {
    local f=$REC_SCRATCH/stdin.txt
    printf '%s' "$1" >"$f"
    shift
    _rec simple "$f" 30 "$@"
}
cipb() {
    local f=$REC_SCRATCH/stdin.txt
    printf '%s' "$1" >"$f"
    shift
    _rec protobuf "$f" 30 "$@"
}
cwatch() {
    local secs=$1
    shift
    _rec watch "" "$secs" "$@"
}

# current revision of the server (not recorded; 0 if it does not answer)
cur_rev() {
    local r
    r=$(ectl "$REC_SERVER" get cur-rev-probe -w json 2>/dev/null |
        sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
    printf '%s\n' "${r:-0}"
}

# stdout of the last recorded command
last_out() {
    local f
    printf -v f '%s/%04d.out' "$REC_DIR" "$REC_N"
    cat "$f" 2>/dev/null || true
}

# ------------------------------------------------------------- scenario

# Leases come late: a server without them shifts every later revision.
# IK_DIFF_SECTIONS="sc_put ..." runs only the sections listed.
IK_ALL_SECTIONS="sc_put sc_range sc_sort sc_del sc_txn sc_compaction sc_watch
sc_cluster sc_errors sc_big sc_lease sc_wipe sc_cli"
SECTIONS=${IK_DIFF_SECTIONS:-all}
[[ $SECTIONS != all ]] || SECTIONS=$IK_ALL_SECTIONS

sc_put() {
    c get missing
    c get missing -w json
    c put "" emptykey
    c get ""
    c put foo bar
    c get foo
    c put foo bar2 --prev-kv
    c put foo bar3 --prev-kv -w json
    c put foo bar4 --prev-kv -w fields
    c put foo bar5 -w json
    c put foo bar6 -w fields
    c put foo bar7 -w table
    cpb put foo bar8 -w protobuf
    cpb put foo bar9 -w protobuf --prev-kv
    c put newkey v --prev-kv
    c put newkey v2 --prev-kv -w json
    c put foo --ignore-value
    c get foo -w json
    c put foo --ignore-value --prev-kv -w json
    c put nokey --ignore-value
    c put foo newval --ignore-value
    c put foo bar10 --ignore-lease
    c put nokey2 x --ignore-lease
    c put foo bar11 --lease=123
    c put foo bar12 --lease=zz
    c put foo bar13 --lease=0
    c get foo
    c put "with space" "a value with  spaces "
    c get "with space"
    c put nl $'line1\nline2\n'
    c get nl
    c get nl -w json
    c put uni '日本語 ✓ émoji 🚀'
    c get uni
    c get uni -w json
    c get uni --hex
    c put bin $'\x01\x02\x7f\xfe\xff'
    c get bin
    c get bin --hex
    c get bin -w fields
    c put $'\xff' topbyte
    c put $'key\nwith\nnewlines' v
    c get $'key\nwith\nnewlines'
    c put -- -dashkey -dashvalue
    c get -- -dashkey
    c put -- dashval --
    c get dashval
    c put -- dashval2 --prev-kv
    c get dashval2
    ci $'from stdin\nsecond line\n' put stdinkey
    c get stdinkey
    c get stdinkey -w json
    ci 'no newline' put stdinkey2
    c get stdinkey2 --print-value-only
    ci '' put stdinempty
    ci 'ignored' put stdinkey3 argvalue
    c get stdinkey3
    c put emptyval ""
    c get emptyval
    c get emptyval -w json
    c put foo bar14 extra-arg
    c get foo
    c get foo --consistency=s
    c get foo --consistency=s -w json
    c get foo --consistency=l
    c get foo --print-value-only
    c get foo --keys-only
    c get foo --keys-only -w json
    c get foo --count-only # not in etcdctl 3.4: usage error
    c get foo --keys-only --limit=1 -w fields
    c get foo --print-value-only -w fields
    c get foo --hex
    c get foo --hex -w fields
    c get foo --hex -w json
    c get foo --hex --print-value-only
    cpb get foo -w protobuf
    c get foo -w table
    c get foo -w fields
}

sc_range() {
    local k r0
    r0=$(cur_rev)
    for k in a b c c1 c2 c/x d e; do
        c put "r/$k" "val-$k"
    done
    c put r0 below
    c put rz above
    c get r/a r/c
    c get r/a r/c -w json
    c get r/a r/d
    c get r/c r/a
    c get r/a r/a
    c get r/c r/c0
    c get r/a r/z --limit=2
    c get r/a r/z --limit=2 -w json
    c get r/a r/z --limit=2 -w fields
    c get r/a r/z --limit=0
    c get r/a r/z --limit=-1
    c get r/a r/z --limit=100 --keys-only -w json
    c get r/ --prefix
    c get r/c --prefix
    c get r/c --prefix --keys-only
    c get r/c --prefix --print-value-only
    c get r/c --prefix --keys-only --limit=1 -w fields
    c get r/c --prefix --limit=1 -w json
    c get r/c/ --prefix
    c get r/nomatch --prefix
    c get r/nomatch --prefix -w json
    c get r/d --from-key
    c get r/d --from-key --limit=2
    c get r/d --from-key --keys-only
    c get rz --from-key -w json
    c get "" --from-key --keys-only
    c get "" --prefix --keys-only
    c get "" --prefix --keys-only --limit=1 -w json
    c get $'\xff' --prefix
    c get $'\xff' --from-key
    c get r/a r/z --keys-only --limit=3
    c get r/a r/z --print-value-only --limit=1
    c get r/a r/z --keys-only --limit=1 -w json
    # revisions: current, past, future, zero, negative
    c get r/a --rev=0
    c get r/a --rev=-5
    c get foo --rev=2
    c get foo --rev=5 -w json
    c get foo --rev=7 --prefix
    c get r/ --prefix --rev=$((r0 + 1)) --keys-only
    c get r/ --prefix --rev=$((r0 + 3)) --keys-only
    c get r/ --prefix --rev="$r0" -w json
    c get foo --rev=100000
    c get foo --rev=100000 -w json
    c get r/ --prefix --rev=1000 --keys-only
    c get r/a r/c --rev=$((r0 + 2))
    c get r/ --prefix --keys-only --rev="$(cur_rev)"
}

sc_sort() {
    # Values, versions, create and mod revisions all order the keys
    # differently; s/b, s/c and s/d tie on version (1).
    c put s/c 30
    c put s/a 50
    c put s/e 10
    c put s/b 40
    c put s/d 20
    c put s/e 15
    c put s/a 55
    c put s/e 12
    local by ord
    for by in KEY VERSION CREATE MODIFY VALUE; do
        for ord in ASCEND DESCEND; do
            c get s/ --prefix --sort-by="$by" --order="$ord"
        done
        c get s/ --prefix --sort-by="$by"
        c get s/ --prefix --sort-by="$by" --order=DESCEND --limit=2 -w json
    done
    c get s/ --prefix --order=DESCEND
    c get s/ --prefix --order=ASCEND --limit=2
    c get s/ --prefix --order=descend --sort-by=value
    c get s/ --prefix --sort-by=VALUE --order=ASCEND --keys-only
    c get s/ --prefix --sort-by=MODIFY --order=DESCEND --limit=1 --keys-only -w json
    c get s/a s/d --sort-by=CREATE --order=DESCEND
    c get s/ --from-key --sort-by=VERSION --order=DESCEND --limit=3
    c get s/ --prefix --sort-by=VERSION --order=ASCEND --rev=$(($(cur_rev) - 2))
    c get s/ --prefix --sort-by=BOGUS
    c get s/ --prefix --order=SIDEWAYS
}

sc_del() {
    local k r0
    r0=$(cur_rev)
    for k in a b c c1 c2 d; do
        c put "d/$k" "dv-$k"
    done
    c del d/missing
    c del d/missing -w json
    c del d/a
    c get d/a
    c del d/a -w json
    c del d/b --prev-kv
    c del d/c d/d --prev-kv -w json
    c get d/ --prefix
    for k in a b c c1; do
        c put "d/$k" "dv2-$k"
    done
    c del d/c --prefix -w fields
    c del d/ --prefix --prev-kv
    c del d/ --prefix
    c del d/ --prefix -w json
    for k in a b c; do
        c put "d/$k" "dv3-$k"
    done
    cpb del d/a -w protobuf --prev-kv
    c del d/b d/a
    c del d/b --from-key --prev-kv -w json
    c del d/x --prefix --from-key
    c del d/a d/b --prefix
    c del d/a d/b --from-key
    c del
    c del d/a --prev-kv -w table
    c get d/ --prefix --rev=$((r0 + 6))
    c get d/ --prefix --rev=$((r0 + 7)) -w json
}

# Helpers to write a txn stdin: compares, success ops, failure ops, each
# block ended by an empty line.
txn_input() {
    printf '%s\n' "$1" "" "$2" "" "$3" "" | sed '/^$/N;/^\n$/D'
}

sc_txn() {
    c put t/k1 v1
    c put t/k2 v2
    c put t/n 10
    local T k1
    k1=$(($(cur_rev) - 2))
    T=$'value("t/k1") = "v1"\n\nput t/k3 v3\nget t/k1\ndel t/k2\n\nput t/failed yes\n\n'
    ci "$T" txn
    ci "$T" txn -w json
    ci "$T" txn -i
    ci "$T" txn -w fields
    ci "$T" txn -w table
    T=$'val("t/k1") = "v1"\nver("t/k1") = "1"\ncreate("t/k1") > "0"\nmod("t/k1") < "1000"\n\nget t/ --prefix\n\nget t/k1\n\n'
    ci "$T" txn
    T=$'ver("t/k1") != "1"\n\nput t/a 1\n\nput t/b 2\nget t/b\n\n'
    ci "$T" txn
    ci "$T" txn -w json
    ci "$T" txn -i -w fields
    cipb "$T" txn -w protobuf
    # each compare target and operator
    local cmp
    for cmp in 'value("t/k1") = "v1"' 'value("t/k1") != "v1"' \
        'value("t/k1") > "v0"' 'value("t/k1") < "v0"' \
        'value("t/missing") = ""' 'value("t/missing") != "x"' \
        'version("t/k1") = "1"' 'version("t/k1") > "1"' \
        'version("t/missing") = "0"' 'version("t/missing") < "1"' \
        'c("t/k1") = "'$k1'"' 'c("t/k1") != "'$k1'"' 'create("t/missing") = "0"' \
        'm("t/k1") = "'$k1'"' 'mod("t/k1") > "'$((k1 - 1))'"' 'mod("t/missing") < "1"' \
        'val("t/n") > "9"' 'val("t/n") < "9"' 'ver("t/k1") = "-1"'; do
        ci "$cmp"$'\n\nget t/k1 --print-value-only\n\nget t/n\n\n' txn
    done
    # A compare over a key range cannot be written in etcdctl 3.4's txn
    # syntax (it has no range_end). A lease compare can be written, but
    # etcdctl 3.4 panics building it (client side, before any request).
    ci $'lease("t/k1") = "0"\n\nget t/k1\n\n\n' txn
    # unknown operator: client-side panic as well
    ci $'val("t/k1") == "v1"\n\nget t/k1\n\n\n' txn
    # an empty txn
    ci $'\n\n\n' txn
    ci $'\n\n\n' txn -w json
    ci $'\n\n\n' txn -i
    # ops with options inside a txn
    ci $'\nput t/p1 a --prev-kv\nput t/p2 b\nget t/ --prefix --keys-only --limit=2\nget t/p t/q --sort-by=VALUE --order=DESCEND\ndel t/k2 --prev-kv\n\n\n' txn -w json
    ci $'\nput t/p3 a --prev-kv\nput t/p4 b\nget t/ --prefix --keys-only\ndel t/b --prev-kv\n\n\n' txn -w fields
    ci $'\nput t/ign --ignore-value\n\n\n' txn
    ci $'\nput t/k1 --ignore-value\n\n\n' txn
    ci $'\nput t/k1 x --lease=123\n\n\n' txn
    ci $'\nget t/k1 --rev=100000\n\n\n' txn
    ci $'\nget t/k1 --rev=1\n\n\n' txn
    ci $'\nput t/q1 "quoted value" \nput t/q2 \'single quoted\'\nget t/q --prefix\n\n\n' txn
    # duplicate keys
    ci $'\nput t/d 1\nput t/d 2\n\n\n' txn
    ci $'\nput t/d 1\ndel t/d\n\n\n' txn
    ci $'\nput t/d1 1\ndel t/d --prefix\n\n\n' txn
    ci $'\nget t/d\nget t/d\nput t/d 3\n\n\n' txn
    ci $'\nput t/e 1\n\nput t/e 2\n\n' txn
    ci $'val("t/k1") = "nope"\n\nput t/f 1\n\nput t/f 2\nput t/f 3\n\n' txn
    c get t/ --prefix
    # malformed input
    ci $'foo("t/k1") = "v1"\n\n\n\n' txn
    ci $'val(t/k1) = "v1"\n\n\n\n' txn
    ci $'val("t/k1") = v1\n\n\n\n' txn
    ci $'ver("t/k1") = "abc"\n\n\n\n' txn
    ci $'val("t/k1")\n\n\n\n' txn
    ci $'garbage\n\n\n\n' txn
    ci $'\nfoo bar\n\n\n' txn
    ci $'\nput\n\n\n' txn
    ci $'\nput t/x\n\n\n' txn
    ci $'\nget\n\n\n' txn
    ci $'\ndel\n\n\n' txn
    ci $'\nput t/x 1 --bogus-flag\n\n\n' txn
    ci $'val("t/k1") = "v1"\n\nput t/x 1\n' txn
    ci $'val("t/k1") = "v1"' txn
    ci '' txn
    ci '' txn -i
    c txn extra-arg
    # 128 ops are fine, 129 are not (and compares count too)
    local f128=$REC_SCRATCH/txn128 f129=$REC_SCRATCH/txn129 c129=$REC_SCRATCH/cmp129 i
    {
        echo
        for ((i = 0; i < 128; i++)); do echo "put t/many/$i v$i"; done
        echo
        echo
    } >"$f128"
    {
        echo
        for ((i = 0; i < 129; i++)); do echo "put t/many/$i w$i"; done
        echo
        echo
    } >"$f129"
    {
        for ((i = 0; i < 129; i++)); do echo "ver(\"t/k1\") = \"1\""; done
        echo
        echo "get t/k1"
        echo
        echo
    } >"$c129"
    cf "$f128" txn -w json
    c get t/many/ --prefix --keys-only --limit=1 -w json
    cf "$f129" txn
    cf "$c129" txn
    c get t/many/ --prefix --sort-by=MODIFY --order=DESCEND --limit=3
}

sc_lease() {
    c lease list
    c lease grant "$LEASE_TTL"
    local L
    L=$(last_out | sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p')
    c put lk1 v1 --lease="$L"
    c put lk2 v2 --lease="$L" -w json
    c get lk1 -w json
    c get lk1 -w fields
    c lease list
    c lease list -w json
    c lease timetolive "$L"
    c lease timetolive "$L" --keys
    c lease timetolive "$L" --keys -w json
    c lease timetolive "$L" -w fields
    c lease keep-alive --once "$L"
    c lease keep-alive --once "$L" -w json
    cpb lease list -w protobuf
    c lease list -w table
    c lease list -w fields
    c put lk1 v1b --ignore-lease
    c get lk1 -w json
    c put lk1 v1c
    c get lk1 -w json
    ci $'\nput lk3 v3 --lease='"$L"$'\n\n\n' txn
    c lease revoke "$L"
    c get lk --prefix
    c lease revoke "$L"
    c lease timetolive "$L"
    c lease timetolive 123
    c lease timetolive 123 -w json
    c lease keep-alive --once 123
    c lease revoke 123
    c lease revoke zz
    c lease grant abc
    c lease grant
    c put lk4 v --lease="$L"
    c lease list
    # etcd raises a TTL below 2 s to 2 s. Nothing may look at these leases
    # later: they expire while the scenario goes on.
    c lease grant 0
    c lease grant -- -5
}

sc_compaction() {
    c put cmp/a a1
    c put cmp/a a2
    c del cmp/a
    c put cmp/a a3
    local now
    now=$(cur_rev)
    c compaction 5
    c compaction 5
    c compaction 3
    c get foo --rev=4
    c get foo --rev=5
    c get foo --rev=6 -w json
    c compaction --physical 10
    c get foo --rev=9
    c get foo --rev=10
    c get cmp/a --rev=$((now - 1))
    c compaction $((now - 2)) -w json
    c get cmp/a --rev=$((now - 3))
    c get cmp/a --rev=$((now - 2))
    c get cmp/a --rev=$((now - 1))
    c get cmp/a --rev="$now"
    c compaction $((now + 1000))
    c compaction "$now"
    c get cmp/a
    c get cmp/a --rev="$now"
    c compaction "$now"
    c compaction 0
    c compaction -- -1
    c compaction abc
    c compaction
    c compaction --physical=true $((now + 1))
    c get cmp/a --rev="$now"
    c get cmp/a
}

sc_watch() {
    c put w/a 1
    c put w/b 2
    c put w/a 3
    local rev
    rev=$(cur_rev)
    # The first two watches never end by themselves: they are stopped after
    # 2.5 s (exit 124), by which time the history has long been printed.
    cwatch 2.5 watch w/ --prefix --rev=$((rev - 2))
    cwatch 2.5 watch w/a --rev=$((rev - 2)) -w json
    cwatch 2.5 watch w/a --rev=2
    cwatch 2.5 watch w/a --rev=2 -w json
}

sc_cluster() {
    local w
    for w in simple json fields table; do
        c endpoint status -w "$w"
        c endpoint health -w "$w"
        c member list -w "$w"
        c alarm list -w "$w"
    done
    cpb member list -w protobuf
    cpb alarm list -w protobuf
    c endpoint status -w protobuf
    c endpoint health -w protobuf
    c defrag
    c alarm disarm
}

sc_errors() {
    c bogus-command
    c get
    c put
    c put onlykey
    c del
    c get x --limit=abc
    c get x --rev=abc
    c get x --sort-by=FOO
    c get x --order=UP
    c get x --consistency=q
    c get x --prefix --from-key
    c get x y --prefix
    c get x y --from-key
    c get x y z
    c -w xml get x
    c --write-out= get x
    c --no-such-flag get x
    c get x --no-such-flag
    c --dial-timeout=abc get x
    c --hex=maybe get x
    c put k v --lease=-1
    c put k v --prev-kv=maybe
    c member
    c member bogus
    c lease
    c endpoint
    c endpoint status extra
    c alarm bogus
    c get --help
    c help put
}

sc_big() {
    local f
    f=$REC_SCRATCH/val_1400k
    head -c 1400000 /dev/zero | tr '\0' 'a' >"$f"
    cf "$f" put big/ok
    chash get big/ok --print-value-only
    c get big/ok --keys-only -w json
    f=$REC_SCRATCH/val_1600k
    head -c 1600000 /dev/zero | tr '\0' 'b' >"$f"
    cf "$f" put big/toolarge
    f=$REC_SCRATCH/val_2000k
    head -c 2000000 /dev/zero | tr '\0' 'c' >"$f"
    cf "$f" put big/toolarge
    f=$REC_SCRATCH/val_3000k
    head -c 3000000 /dev/zero | tr '\0' 'd' >"$f"
    cf "$f" put big/client-limit
    c get big/ --prefix --keys-only
    # a txn whose ops add up to more than the limit
    f=$REC_SCRATCH/txn_big
    {
        echo
        for i in 1 2 3; do echo "put big/t$i $(head -c 600000 /dev/zero | tr '\0' 'e')"; done
        echo
        echo
    } >"$f"
    cf "$f" txn
    c get big/ --prefix --keys-only
}

sc_wipe() {
    c get "" --prefix --keys-only --limit=1 -w json
    c del "" --prefix
    c get "" --prefix
    c get "" --prefix --keys-only -w json
    c get foo --rev=20
    c put after wipe -w json
}

# CLI details: watch formats and forms, flag syntaxes, help texts.
sc_cli() {
    c put cli/a 1
    c put cli/b 2
    c put cli/a 3
    c del cli/b
    local rev
    rev=$(cur_rev)
    cwatch 2.5 watch cli/ --prefix --rev=$((rev - 3)) --prev-kv
    cwatch 2.5 watch cli/ --prefix --rev=$((rev - 3)) -w fields
    cwatch 2.5 watch cli/a cli/c --rev=$((rev - 3))
    cwatch 2.5 watch --rev=$((rev - 3)) cli/a -- sh -c 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'
    cwatch 2.5 watch cli/a --rev=$((rev - 3)) -w table
    c watch cli/a cli/c --prefix
    c watch --progress-notify cli/a
    c watch
    c watch cli/a --
    c get cli/ --prefix --hex -w json
    c get cli/ --prefix --consistency=s --keys-only
    ci $'\nput cli/x y\n\n\n' txn --interactive -w json
    ci $'value("cli/a") = "3"\n\nget cli/a\n\n\n' txn -i -w fields
    c --hex get cli/a
    c -w=json get cli/a
    c -wjson get cli/a
    c get cli/a --limit 1
    # a repeated --endpoints appends (pflag string slice): the server, then
    # a port nothing listens on; the call goes to the server
    c --endpoints=127.0.0.1:1 get cli/a
    c ge cli/a
    c version
    c help get
    c help
    c --help
    c txn -h
    c watch --help
    c del -h
    c compaction -h
    c put k v --lease
}

# Section run on a server started with small limits.
LIMIT_FLAGS=(--max-request-bytes=1024 --max-txn-ops=4)
sc_limits() {
    c put small v
    c put medium "$(head -c 500 /dev/zero | tr '\0' m)"
    c put large "$(head -c 1100 /dev/zero | tr '\0' l)"
    local f=$REC_SCRATCH/val_600k
    head -c 600000 /dev/zero | tr '\0' 'g' >"$f"
    cf "$f" put huge
    c get "" --prefix --keys-only
    ci $'\nput l/1 1\nput l/2 2\nput l/3 3\nput l/4 4\n\n\n' txn
    ci $'\nput l/1 1\nput l/2 2\nput l/3 3\nput l/4 4\nput l/5 5\n\n\n' txn
    ci $'\nput l/1 1\nput l/2 2\nput l/3 3\nput l/4 4\n\nput l/5 5\nput l/6 6\nput l/7 7\nput l/8 8\n\n' txn
    ci $'\nget l/1\n\nput l/5 5\nput l/6 6\nput l/7 7\nput l/8 8\nput l/9 9\n\n' txn
    ci $'ver("l/1") > "0"\nver("l/1") > "0"\nver("l/1") > "0"\nver("l/1") > "0"\nver("l/1") > "0"\n\nget l/1\n\n\n' txn
    ci $'ver("l/1") > "0"\nver("l/1") > "0"\nver("l/1") > "0"\nver("l/1") > "0"\n\nget l/1\n\n\n' txn
    c get l/ --prefix --keys-only
    c del l/ --prefix
}

# ------------------------------------------------------------- driver

# cluster_setup C BIN [FLAG...]: cluster mode: starts cluster C of BIN,
# points the recorder at its first follower and fills NORM_ARGS (member
# roles for normalize.py) and CL_VIEW (every member's leader and term).
NORM_ARGS=()
CL_VIEW=
cluster_setup() {
    local cl=$1 bin=$2 leader m role st
    shift 2
    ik_cluster_start "$cl" "$CLUSTER_N" "$bin" "${CLUSTER_FLAGS[@]}" "$@"
    leader=$(ik_cluster_leader "$cl")
    REC_CLUSTER=$cl
    REC_SERVER=
    NORM_ARGS=()
    CL_VIEW=
    for m in $(ik_cluster_members "$cl"); do
        read -r -a st < <(ik_status "$m")
        ((st[0] != 0)) || ik_fail "cluster $cl: $m does not answer endpoint status"
        if [[ $m == "$leader" ]]; then
            role=leader
        elif [[ -z $REC_SERVER ]]; then
            role=self
            REC_SERVER=$m
        else
            role=other
        fi
        REC_ROLE[$m]=$role
        NORM_ARGS+=(--member "$role,${IK_NAME[$m]},${st[0]},$(ik_server_url "$m"),$IK_HOST:${IK_PPORT[$m]}")
        CL_VIEW+="$role:leader=${st[1]},term=${st[2]} "
    done
    NORM_ARGS+=(--cluster-id "${st[3]}")
}

# cluster_view C: what CL_VIEW holds, as of now.
cluster_view() {
    local m st view=
    for m in $(ik_cluster_members "$1"); do
        read -r -a st < <(ik_status "$m")
        view+="${REC_ROLE[$m]}:leader=${st[1]},term=${st[2]} "
    done
    printf '%s\n' "$view"
}

# cluster_finish SIDE SECTION: cluster mode: checks that the leader did not
# change, stops every member (all at once) and reports a member that died,
# exited badly or logged a sanitizer report.
cluster_finish() {
    local side=$1 sec=$2 m pid view alive=()
    # (a member that died is reported as a problem below, not as this)
    view=$(cluster_view "$REC_CLUSTER")
    if ik_cluster_alive "$REC_CLUSTER" && [[ $view != "$CL_VIEW" ]]; then
        printf '%s section %s: at the start %s; at the end %s\n' "$side" \
            "$sec" "$CL_VIEW" "$view" >>"$IK_TMP/inconclusive"
    fi
    for m in $(ik_cluster_members "$REC_CLUSTER"); do
        if ik_server_alive "$m"; then
            alive+=("$m")
            pid=${IK_PID[$m]}
            kill -TERM "$pid" 2>/dev/null || true
        else
            ik_log "$side cluster member $m (${REC_ROLE[$m]}) died during section $sec"
            ik_dump_log "$m"
            _ik_reap "$m"
            problem "$side cluster member (${REC_ROLE[$m]}) died during section $sec (status $IK_LAST_RC)"
        fi
    done
    for m in "${alive[@]}"; do
        ik_server_stop "$m"
        ik_clean_exit_status "$IK_LAST_RC" || {
            ik_dump_log "$m"
            problem "$side cluster member (${REC_ROLE[$m]}) exited with status $IK_LAST_RC on SIGTERM after section $sec"
        }
    done
    for m in $(ik_cluster_members "$REC_CLUSTER"); do
        ik_server_problems "$m" ||
            problem "sanitizer report in the log of $side cluster member (${REC_ROLE[$m]}) (section $sec)"
    done
}

# run_side SIDE BIN: runs every section against fresh servers of BIN and
# writes the normalised transcript to $IK_TMP/SIDE.txt.
run_side() {
    local side=$1 bin=$2 sec name ids
    : >"$IK_TMP/$side.txt"
    if [[ $side == sut && -n $CLI ]]; then
        REC_CTL=$CLI
    else
        REC_CTL=$IK_ETCDCTL
    fi
    REC_SCRATCH=$IK_TMP/$side.scratch
    mkdir -p "$REC_SCRATCH"
    for sec in main limits; do
        name=$side-$sec
        if [[ -n $CLUSTER_N ]]; then
            run_section_cluster "$side" "$bin" "$sec"
            continue
        fi
        if [[ $sec == limits ]]; then
            ik_server_start "$name" "$bin" "${LIMIT_FLAGS[@]}"
        else
            ik_server_start "$name" "$bin"
        fi
        ik_server_wait_ready "$name"
        read -r -a ids < <(ik_server_ids "$name")
        REC_DIR=$IK_TMP/$name.rec
        mkdir -p "$REC_DIR"
        REC_SERVER=$name
        REC_N=0
        REC_DEAD=
        REC_STALLS=0
        if [[ $sec == limits ]]; then
            sc_limits
        else
            local s
            for s in $SECTIONS; do
                "$s"
            done
        fi
        if ik_server_alive "$name"; then
            ik_server_stop "$name"
            ik_clean_exit_status "$IK_LAST_RC" || {
                ik_dump_log "$name"
                problem "$side server exited with status $IK_LAST_RC on SIGTERM after section $sec"
            }
        else
            ik_log "$side server ($bin) died during section $sec"
            ik_dump_log "$name"
            _ik_reap "$name"
            problem "$side server died during section $sec (status $IK_LAST_RC)"
        fi
        ik_server_problems "$name" ||
            problem "sanitizer report in the $side server log (section $sec)"
        "$IK_PYTHON" "$NORMALIZE" "$REC_DIR" --section "$sec" \
            --client "$(ik_server_url "$name")" \
            --peer "$IK_HOST:${IK_PPORT[$name]}" \
            --member-id "${ids[0]}" --cluster-id "${ids[1]}" \
            --lease-ttl "$LEASE_TTL" >>"$IK_TMP/$side.txt"
    done
}

# run_section_cluster SIDE BIN SECTION: cluster mode's run_side body.
run_section_cluster() {
    local side=$1 bin=$2 sec=$3 name=$1-$3 s
    if [[ $sec == limits ]]; then
        cluster_setup "$name" "$bin" "${LIMIT_FLAGS[@]}"
    else
        cluster_setup "$name" "$bin"
    fi
    REC_DIR=$IK_TMP/$name.rec
    mkdir -p "$REC_DIR"
    REC_N=0
    REC_DEAD=
    REC_STALLS=0
    if [[ $sec == limits ]]; then
        sc_limits
    else
        for s in $SECTIONS; do
            "$s"
        done
    fi
    cluster_finish "$side" "$sec"
    "$IK_PYTHON" "$NORMALIZE" "$REC_DIR" --section "$sec" "${NORM_ARGS[@]}" \
        --lease-ttl "$LEASE_TTL" >>"$IK_TMP/$side.txt"
}

# Crashes, bad exit statuses and sanitizer reports of either side.
problem() {
    printf '%s\n' "$*" >>"$IK_TMP/problems"
}

# Both sides run at the same time (the reference in a subshell).
start=$SECONDS
(
    ik_subshell_init
    run_side ref "$IK_ETCD"
) &
refpid=$!
run_side sut "$SUT"
refrc=0
wait "$refpid" || refrc=$?
((refrc == 0)) || ik_fail "the reference side (real etcd) failed (status $refrc)"
ncmd=$(grep -c '^=== \[' "$IK_TMP/ref.txt" || true)
if [[ -n $CLI ]]; then
    ik_log "ran $ncmd commands per CLI against real etcd in $((SECONDS - start))s (CLI under test: $CLI)"
elif [[ -n $CLUSTER_N ]]; then
    ik_log "ran $ncmd etcdctl commands per side on a follower of a $CLUSTER_N-member cluster in $((SECONDS - start))s (server under test: $SUT)"
else
    ik_log "ran $ncmd etcdctl commands per server in $((SECONDS - start))s (server under test: $SUT)"
fi

nproblems=0
if [[ -s $IK_TMP/problems ]]; then
    sed 's/^/problem: /' "$IK_TMP/problems"
    nproblems=$(wc -l <"$IK_TMP/problems")
fi
if [[ -s $IK_TMP/inconclusive ]]; then
    sed 's/^/leader change: /' "$IK_TMP/inconclusive"
    ik_fail "inconclusive: the leader changed during the run (the commands may no longer have gone to a follower)"
fi
if [[ -n $CLI ]]; then
    labels=(--label "etcdctl 3.4 (reference)" --label "CLI under test")
else
    labels=(--label "etcd 3.4 (reference)" --label "server under test")
fi
if diff -u "${labels[@]}" \
    "$IK_TMP/ref.txt" "$IK_TMP/sut.txt" >"$IK_TMP/diff.txt"; then
    ((nproblems == 0)) || ik_fail "no difference in output, but see the problems above"
    echo "PASS: $ncmd etcdctl commands${CLUSTER_N:+ on a follower of a $CLUSTER_N-member cluster}${CLI:+ (CLI under test: $CLI)}, no difference"
    exit 0
fi
"$IK_PYTHON" "$NORMALIZE" --compare "$IK_TMP/ref.txt" "$IK_TMP/sut.txt" || true
echo "---- unified diff (first 800 lines of $(wc -l <"$IK_TMP/diff.txt")) ----"
head -n 800 "$IK_TMP/diff.txt"
if [[ -n $CLI ]]; then
    ik_fail "CLI under test differs from etcdctl (set IK_KEEP_TMP=1 to keep transcripts)"
fi
ik_fail "server under test differs from etcd (set IK_KEEP_TMP=1 to keep transcripts)"
