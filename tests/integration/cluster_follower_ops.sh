#!/bin/bash
# tests/integration/cluster_follower_ops.sh: KV commands served by a
# follower must look exactly like real etcd's.
#
# A 3-member real etcd cluster and a 3-member cluster of the server under
# test are started one after the other with the same flags. On each, one
# deterministic sequence of etcdctl KV commands (put, get, del, txn,
# compaction; simple, json and fields output; serializable reads right
# after writes) runs, every command against the same follower. Command
# line, stdin, stdout, stderr and exit status of each are recorded. The
# transcripts are normalised by cluster_load.py normalize (member IDs are
# replaced by their role: <SELF> for the follower, <LEADER>, others; the
# cluster ID and raft terms) and here for what is not the server's (the
# endpoint's port, client-side log timestamps and client UUIDs); then they
# must be identical. The leader must not change during a run.
#
# Env: IKADA_TEST_SERVER=etcd (etcd against etcd), CL_KEEP_TMP=1 keeps the
# transcripts ($CL_TMP/ref.txt, $CL_TMP/sut.txt).

set -euo pipefail
# shellcheck source=cluster_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/cluster_lib.sh"
cl_init
SUT=$(cl_sut_binary)
# Steadier than the failover tests' 50/500: a leader change would move
# the commands off the follower.
CL_HEARTBEAT=100
CL_ELECTION=1000

REC=
REC_N=0
TARGET=

# rec [--stdin TEXT] ARGS...: run etcdctl ARGS against $TARGET and append
# the record to $REC.
rec() {
    local input='' has_in=0 rc=0 a shown=''
    if [[ $1 == --stdin ]]; then
        input=$2
        has_in=1
        shift 2
    fi
    REC_N=$((REC_N + 1))
    for a in "$@"; do
        printf -v a '%q' "$a"
        shown+=" $a"
    done
    printf '=== [%d] etcdctl%s\n' "$REC_N" "$shown" >>"$REC"
    if ((has_in)); then
        printf '%s' "$input" >"$CL_TMP/stdin"
        printf -- '--- stdin\n%s\n' "$input" >>"$REC"
    else
        : >"$CL_TMP/stdin"
    fi
    ETCDCTL_API=3 timeout -k 2 20 "$CL_ETCDCTL" \
        --endpoints="$(cl_url "$TARGET")" --command-timeout=5s "$@" \
        <"$CL_TMP/stdin" >"$CL_TMP/out" 2>"$CL_TMP/err" || rc=$?
    {
        printf -- '--- stdout\n'
        cat "$CL_TMP/out"
        printf -- '--- stderr\n'
        cat "$CL_TMP/err"
        printf -- '--- exit %d\n' "$rc"
    } >>"$REC"
}

# Revisions are the same on both sides: a fresh cluster is at revision 1
# and every command changes the same state.
sequence() {
    local i
    rec get missing -w json
    rec put a 1
    rec put a 2 --prev-kv -w json
    rec get a -w json
    rec get a --consistency=s -w json
    rec put b 1 -w fields
    rec put c 1
    rec put c 2 --prev-kv
    rec get a c -w json
    rec get "" --prefix -w json
    rec get a --from-key --keys-only
    rec get "" --prefix --sort-by=MODIFY --order=DESCEND -w json
    rec get "" --prefix --sort-by=VALUE --limit=2 -w fields
    rec get a --rev=2 -w json
    rec get a --rev=3 --consistency=s
    # read-your-writes on the follower: a serializable get right after a
    # put through the same member must see the put
    for i in 1 2 3 4 5 6 7 8; do
        rec put "ryw/$i" "v$i"
        rec get "ryw/$i" --consistency=s --print-value-only
    done
    rec get ryw/ --prefix --consistency=s -w json
    rec del b --prev-kv -w json
    rec del nothing -w json
    rec del ryw/ --prefix
    rec get b -w json
    rec get "" --prefix --keys-only --consistency=s
    rec --stdin $'value("a") = "2"\n\nput t1 yes\nget a\ndel c --prev-kv\n\nput t1 no\n\n' txn -w json
    rec --stdin $'version("a") = "9"\n\nput t2 yes\n\nput t2 no\nget t2\n\n' txn -w json
    rec --stdin $'mod("a") > "0"\n\nget "" --prefix --keys-only\n\n\n' txn
    rec --stdin $'\nput t3 x\nput t3 y\n\n\n' txn
    rec --stdin $'create("missing") = "0"\n\nput t4 z\n\n\n' txn -w fields
    rec get t --prefix --consistency=s -w json
    rec compaction 5
    rec compaction 5
    rec compaction 3
    rec compaction 100000
    rec get a --rev=4
    rec get a --rev=5 -w json
    rec get a --rev=100000
    rec put a 3 --lease=123
    rec put e 1
    rec compaction "$(($(cl_ectl "$TARGET" get a -w json |
        "$CL_PYTHON" "$CL_LOAD" json-field revision)))" --physical
    rec get "" --prefix -w json
    rec del "" --prefix --prev-kv -w json
    rec get "" --prefix -w json --consistency=s
    rec put z last -w json
    rec get z -w fields
}

# run_side SIDE BIN: one cluster, the sequence on a follower, normalised
# transcript in $CL_TMP/SIDE.txt.
run_side() {
    local side=$1 bin=$2 leader term0 lead_id self_id cluster_id m
    cl_cluster_new "$side" 3 "$bin"
    cl_cluster_start "$side"
    leader=$(cl_leader "$side")
    TARGET=$(cl_follower "$side")
    term0=$(cl_status_field "$TARGET" raftTerm)
    REC=$CL_TMP/$side.raw
    REC_N=0
    : >"$REC"
    sequence
    [[ $(cl_leader "$side") == "$leader" &&
        $(cl_status_field "$TARGET" raftTerm) == "$term0" ]] ||
        cl_fail "$side: the leader changed during the run (inconclusive)"
    self_id=$(cl_status_field "$TARGET" member_id)
    lead_id=$(cl_status_field "$leader" member_id)
    cluster_id=$(cl_status_field "$TARGET" cluster_id)
    "$CL_PYTHON" "$CL_LOAD" normalize "$self_id" "$lead_id" "$cluster_id" \
        <"$REC" |
        sed -E -e "s/127\.0\.0\.1:${CL_CPORT[$TARGET]}/<ENDPOINT>/g" \
            -e 's/"ts":"[^"]*"/"ts":"<TS>"/g' \
            -e 's/client-[0-9a-f-]{36}/client-<UUID>/g' >"$CL_TMP/$side.txt"
    echo "$side: ${bin##*/}, $REC_N commands on follower $TARGET (leader $leader)"
    for m in $(cl_members "$side"); do
        cl_stop "$m"
    done
    cl_problems "$side" || cl_fail "sanitizer report in a $side member's log"
}

run_side ref "$CL_ETCD"
run_side sut "$SUT"
if ! diff -u "$CL_TMP/ref.txt" "$CL_TMP/sut.txt" >"$CL_TMP/diff"; then
    n=$(grep -c '^=== ' "$CL_TMP/ref.txt")
    d=$("$CL_PYTHON" - "$CL_TMP/ref.txt" "$CL_TMP/sut.txt" <<'EOF'
import sys
def blocks(p):
    out, cur = [], None
    for line in open(p, errors="replace"):
        if line.startswith("=== ["):
            cur = [line, ""]
            out.append(cur)
        elif cur is not None:
            cur[1] += line
    return out
a, b = blocks(sys.argv[1]), blocks(sys.argv[2])
bad = [x[0].strip() for x, y in zip(a, b) if x != y]
print("\n".join(bad))
EOF
)
    cat "$CL_TMP/diff"
    echo "commands that differ:"
    printf '%s\n' "$d"
    cl_fail "$(printf '%s\n' "$d" | grep -c .) of $n commands differ from etcd (follower endpoint)"
fi
echo "PASS: $(grep -c '^=== ' "$CL_TMP/ref.txt") commands on a follower, identical to etcd"
