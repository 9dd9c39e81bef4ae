#!/usr/bin/env bash
# tests/integration/snapshot_restore.sh: ikadactl snapshot save / status /
# restore, end to end.
#
#  1. one ikada member gets keys (overwrites, deletes, a lease, a
#     compaction); `ikadactl snapshot save` and the real `etcdctl snapshot
#     save` both fetch its snapshot; `ikadactl snapshot status` reports its
#     revision and key count in every output format;
#  2. damaged files (hash mismatch, damaged content, truncated, not a
#     snapshot, an etcd bbolt file) and an existing data dir are refused
#     with a clear error and a non-zero exit, and leave no data dir behind;
#  3. the file is restored into 3 data dirs, the 3 members started together
#     form a NEW cluster (new ids) that holds every key with its value,
#     revisions, version, lease and history, and takes new writes; the file
#     etcdctl saved restores into a 1-member cluster just as well;
#  4. `snapshot save` against real etcd: ikadactl and etcdctl print the
#     same and exit the same, on success and on errors.
set -u
. "$(dirname "$0")/lib.sh"
ik_init

SUT=$(ik_sut_binary)
[[ ${IKADA_TEST_SERVER:-} == etcd ]] &&
    ik_skip "restoring ikada snapshot files needs ikada"
CTL=${IKADACTL:-${top_builddir:-.}/ikadactl}
[[ -x $CTL ]] || ik_skip "ikadactl $CTL is not built"
T=$IK_TMP
PY=$IK_PYTHON

ictl() { # ictl ENDPOINT ARGS...: ikadactl against one endpoint
    local ep=$1
    shift
    timeout 30 "$CTL" --endpoints="$ep" "$@"
}

# expect_err WHAT RC_WANT GREP_PATTERN RC ERRFILE: an error case's outcome.
expect_err() {
    [[ $4 == "$2" ]] || { cat "$5" >&2; ik_fail "$1: exit $4, want $2"; }
    grep -q -- "$3" "$5" || { cat "$5" >&2; ik_fail "$1: no '$3' on stderr"; }
}

# kvs_of JSONFILE: the kvs of a `get -w json` as comparable lines.
kvs_of() {
    "$PY" - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for kv in r.get("kvs", []):
    print(kv["key"], kv.get("value", ""), kv.get("create_revision", 0),
          kv.get("mod_revision", 0), kv.get("version", 0), kv.get("lease", 0))
EOF
}
json_field() { # json_field FILE EXPR (python expression on r)
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---------------------------------------------------------------- source
ik_server_start src "$SUT"
ik_server_wait_ready src
SRC=$(ik_server_url src)
for i in $(seq 1 20); do
    ectl src put "key$i" "value-$i" >/dev/null || ik_fail "put key$i"
done
for i in 3 5 7; do ectl src put "key$i" "second-$i" >/dev/null; done
ectl src put "key5" "third-5" >/dev/null
ectl src del key9 >/dev/null
ectl src put 'odd key' $'line1\nline2' >/dev/null
LEASE=$(ectl src lease grant 600 | awk '{print $2}')
[[ -n $LEASE ]] || ik_fail "lease grant"
ectl src put leased yes --lease="$LEASE" >/dev/null
ectl src compaction 5 >/dev/null || ik_fail "compaction"
ectl src put after-compact x >/dev/null
ectl src get "" --prefix -w json >"$T/src.json" || ik_fail "get"
kvs_of "$T/src.json" >"$T/src.kvs"
REV=$(json_field "$T/src.json" 'r["header"]["revision"]')
SRC_CLUSTER=$(json_field "$T/src.json" 'r["header"]["cluster_id"]')
ectl src get key5 --rev=12 -w json >"$T/src-hist.json" || ik_fail "get --rev"
kvs_of "$T/src-hist.json" >"$T/src-hist.kvs"
NKEYS=$(wc -l <"$T/src.kvs")
((NKEYS == 22)) || ik_fail "source holds $NKEYS keys, want 22"

# ---------------------------------------------------------------- save
ictl "$SRC" snapshot save "$T/snap.db" >"$T/save.out" 2>"$T/save.err"
rc=$?
[[ $rc == 0 ]] || { cat "$T/save.err" >&2; ik_fail "ikadactl snapshot save: exit $rc"; }
[[ $(cat "$T/save.out") == "Snapshot saved at $T/snap.db" ]] ||
    ik_fail "save printed '$(cat "$T/save.out")'"
[[ ! -e $T/snap.db.part ]] || ik_fail "snap.db.part left behind"
size=$(stat -c %s "$T/snap.db")
((size % 512 == 32)) || ik_fail "saved file has no sha256 trailer ($size bytes)"
grep -q '"msg":"saved"' "$T/save.err" || ik_fail "no 'saved' log line"

ETCDCTL_API=3 timeout 30 "$IK_ETCDCTL" --endpoints="$SRC" snapshot save \
    "$T/snap-etcdctl.db" >"$T/esave.out" 2>"$T/esave.err" ||
    { cat "$T/esave.err" >&2; ik_fail "etcdctl snapshot save against ikada"; }

# ---------------------------------------------------------------- status
for f in snap.db snap-etcdctl.db; do
    "$CTL" snapshot status "$T/$f" -w json >"$T/status.json" 2>"$T/status.err" ||
        { cat "$T/status.err" >&2; ik_fail "status $f"; }
    srev=$(json_field "$T/status.json" 'r["revision"]')
    skeys=$(json_field "$T/status.json" 'r["totalKey"]')
    ssize=$(json_field "$T/status.json" 'r["totalSize"]')
    [[ $srev == "$REV" ]] || ik_fail "status $f: revision $srev, want $REV"
    # every live key plus the history kept after the compaction
    ((skeys >= NKEYS)) || ik_fail "status $f: $skeys keys, want >= $NKEYS"
    ((ssize > 0 && ssize <= size)) || ik_fail "status $f: size $ssize"
done
"$CTL" snapshot status "$T/snap.db" -w json >"$T/s1.json"
"$CTL" snapshot status "$T/snap-etcdctl.db" -w json >"$T/s2.json"
cmp -s "$T/s1.json" "$T/s2.json" || ik_fail "the two saved files differ in status"
"$CTL" snapshot status "$T/snap.db" -w table >"$T/status.table"
sed -n 2p "$T/status.table" | grep -q '^|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |$' ||
    { cat "$T/status.table" >&2; ik_fail "status table header"; }
"$CTL" snapshot status "$T/snap.db" >"$T/status.simple"
grep -Eq "^[0-9a-f]+, $REV, $skeys, [0-9.]+ [kM]?B$" "$T/status.simple" ||
    ik_fail "status simple: $(cat "$T/status.simple")"
"$CTL" snapshot status "$T/snap.db" -w fields | grep -q "^\"Revision\" : $REV$" ||
    ik_fail "status fields"
"$CTL" snapshot status "$T/snap.db" -w protobuf 2>"$T/err"
expect_err "status -w protobuf" 4 "protobuf not supported as output format" $? "$T/err"
"$CTL" snapshot status "$T/nonexistent.db" 2>"$T/err"
expect_err "status of a missing file" 1 "stat .*: no such file or directory" $? "$T/err"

# ---------------------------------------------------------------- bad files
# The restore flags of a 1-member cluster on a port nobody uses.
one_member() { # one_member DIR NAME PEERPORT
    printf '%s\n' --data-dir="$1" --name="$2" \
        --initial-cluster="$2=http://127.0.0.1:$3" \
        --initial-advertise-peer-urls="http://127.0.0.1:$3"
}
mapfile -t F < <(one_member "$T/bad.data" bad 1)
cp "$T/snap.db" "$T/flipped.db"
printf '\xa5' | dd of="$T/flipped.db" bs=1 seek=200 conv=notrunc 2>/dev/null
"$CTL" snapshot restore "$T/flipped.db" "${F[@]}" 2>"$T/err"
expect_err "restore with a hash mismatch" 1 "Error: expected sha256 \[" $? "$T/err"
[[ ! -e $T/bad.data ]] || ik_fail "hash mismatch left a data dir"
"$CTL" snapshot restore "$T/flipped.db" "${F[@]}" --skip-hash-check 2>"$T/err"
expect_err "restore of damaged content" 1 "is corrupt" $? "$T/err"
[[ ! -e $T/bad.data ]] || ik_fail "damaged content left a data dir"
"$CTL" snapshot status "$T/flipped.db" 2>"$T/err"
expect_err "status of damaged content" 1 "is corrupt" $? "$T/err"
head -c 300 "$T/snap.db" >"$T/truncated.db"
"$CTL" snapshot restore "$T/truncated.db" "${F[@]}" --skip-hash-check 2>"$T/err"
expect_err "restore of a truncated file" 1 "truncated" $? "$T/err"
[[ ! -e $T/bad.data ]] || ik_fail "truncated file left a data dir"
"$CTL" snapshot restore "$T/truncated.db" "${F[@]}" 2>"$T/err"
expect_err "restore of a file without hash" 1 \
    "Error: snapshot missing hash but --skip-hash-check=false" $? "$T/err"
head -c 2080 /dev/urandom >"$T/random.db" # 2080 % 512 == 32
"$CTL" snapshot restore "$T/random.db" "${F[@]}" --skip-hash-check 2>"$T/err"
expect_err "restore of random bytes" 1 "not an ikada snapshot" $? "$T/err"
"$CTL" snapshot restore "$T/nonexistent.db" "${F[@]}" 2>"$T/err"
expect_err "restore of a missing file" 1 "Error: open .*: no such file or directory" $? "$T/err"
[[ ! -e $T/bad.data ]] || ik_fail "a failed restore left a data dir"
mkdir "$T/exists.data"
mapfile -t F2 < <(one_member "$T/exists.data" bad 1)
"$CTL" snapshot restore "$T/snap.db" "${F2[@]}" 2>"$T/err"
expect_err "restore into an existing dir" 1 "Error: data-dir \"$T/exists.data\" exists" $? "$T/err"
[[ -z $(ls -A "$T/exists.data") ]] || ik_fail "existing data dir was written to"
"$CTL" snapshot restore "$T/snap.db" --data-dir="$T/bad.data" --name=nothere 2>"$T/err"
expect_err "restore with --name not in --initial-cluster" 1 \
    "couldn't find local name \"nothere\" in the initial cluster configuration" $? "$T/err"
"$CTL" snapshot restore 2>"$T/err"
expect_err "restore without file" 128 "snapshot restore requires exactly one argument" $? "$T/err"

# ---------------------------------------------------------------- restore x3
read -r -a P < <(ik_free_ports 6)
TOKEN=restored-cluster
IC="r1=http://127.0.0.1:${P[1]},r2=http://127.0.0.1:${P[3]},r3=http://127.0.0.1:${P[5]}"
for i in 1 2 3; do
    pp=${P[$((2 * i - 1))]}
    "$CTL" snapshot restore "$T/snap.db" --data-dir="$T/r$i.data" --name="r$i" \
        --initial-cluster="$IC" --initial-cluster-token=$TOKEN \
        --initial-advertise-peer-urls="http://127.0.0.1:$pp" \
        >"$T/restore$i.out" 2>"$T/restore$i.err" ||
        { cat "$T/restore$i.err" >&2; ik_fail "restore r$i"; }
    grep -q '"msg":"restored snapshot"' "$T/restore$i.err" || ik_fail "restore r$i: no log"
    [[ -f $T/r$i.data/member/meta ]] || ik_fail "restore r$i: no member/meta"
done
# shellcheck disable=SC2034 # the IK_* tables are lib.sh's
start_member() { # start_member SERVERNAME DATADIR NAME CLIENTPORT PEERPORT IC
    local c=$4 p=$5
    IK_BIN[$1]=$SUT IK_CPORT[$1]=$c IK_PPORT[$1]=$p IK_DIR[$1]=$2
    IK_LOG[$1]=$T/$1.log IK_STARTS[$1]=3
    "$SUT" --name="$3" --data-dir="$2" \
        --listen-client-urls="http://127.0.0.1:$c" --advertise-client-urls="http://127.0.0.1:$c" \
        --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p" \
        --initial-cluster="$6" --initial-cluster-token=$TOKEN \
        </dev/null >>"$T/$1.log" 2>&1 &
    IK_PID[$1]=$!
    echo $! >>"$T/.pids"
}
for i in 1 2 3; do
    start_member "r$i" "$T/r$i.data" "r$i" "${P[$((2 * i - 2))]}" "${P[$((2 * i - 1))]}" "$IC"
done
for i in 1 2 3; do ik_server_wait_ready "r$i" 30; done

check_member() { # check_member SERVER: the data is all there
    local s=$1
    ectl "$s" get "" --prefix -w json >"$T/$s.json" || ik_fail "$s: get"
    kvs_of "$T/$s.json" >"$T/$s.kvs"
    diff "$T/src.kvs" "$T/$s.kvs" >&2 || ik_fail "$s: keys differ from the source"
    [[ $(json_field "$T/$s.json" 'r["header"]["revision"]') == "$REV" ]] ||
        ik_fail "$s: revision is not $REV"
    ectl "$s" get key5 --rev=12 -w json >"$T/$s-hist.json" || ik_fail "$s: get --rev=12"
    kvs_of "$T/$s-hist.json" | diff "$T/src-hist.kvs" - >&2 || ik_fail "$s: history differs"
    ectl "$s" get key1 --rev=3 2>"$T/err" >/dev/null
    grep -q "required revision has been compacted" "$T/err" ||
        ik_fail "$s: the compaction was not kept"
    ectl "$s" lease timetolive "$LEASE" --keys | grep -q 'attached keys(\[leased\])' ||
        ik_fail "$s: lease $LEASE or its key is missing"
}
for i in 1 2 3; do check_member "r$i"; done
ectl r1 member list >"$T/members"
[[ $(wc -l <"$T/members") == 3 ]] || ik_fail "restored cluster has $(wc -l <"$T/members") members"
for i in 1 2 3; do grep -q ", started, r$i, http://127.0.0.1:${P[$((2 * i - 1))]}," "$T/members" ||
    ik_fail "member r$i missing: $(cat "$T/members")"; done
NEW_CLUSTER=$(json_field "$T/r1.json" 'r["header"]["cluster_id"]')
[[ $NEW_CLUSTER != "$SRC_CLUSTER" ]] || ik_fail "restored cluster kept the old cluster id"
ectl r2 put new-key new-value >/dev/null || ik_fail "write to the restored cluster"
for i in 1 2 3; do
    out=$(ectl "r$i" get new-key -w json) || ik_fail "r$i: get new-key"
    [[ $(printf '%s' "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])') == $((REV + 1)) ]] ||
        ik_fail "r$i: new-key not at revision $((REV + 1)): $out"
done
# A restarted member comes back from its data dir with everything.
ik_server_stop r3
start_member r3 "$T/r3.data" r3 "${P[4]}" "${P[5]}" "$IC"
ik_server_wait_ready r3 30
ectl r3 get new-key --print-value-only | grep -qx new-value || ik_fail "r3 lost new-key on restart"
# The restored cluster's own snapshot is a valid file at the new revision.
ictl "$(ik_server_url r1)" snapshot save "$T/again.db" >/dev/null 2>&1 || ik_fail "save from r1"
"$CTL" snapshot status "$T/again.db" -w json >"$T/again.json"
[[ $(json_field "$T/again.json" 'r["revision"]') == $((REV + 1)) ]] || ik_fail "status of the re-saved file"

# The file real etcdctl saved restores too (1 member).
read -r -a Q < <(ik_free_ports 2)
"$CTL" snapshot restore "$T/snap-etcdctl.db" --data-dir="$T/one.data" --name=one \
    --initial-cluster="one=http://127.0.0.1:${Q[1]}" --initial-cluster-token=$TOKEN \
    --initial-advertise-peer-urls="http://127.0.0.1:${Q[1]}" 2>"$T/err" ||
    { cat "$T/err" >&2; ik_fail "restore of the etcdctl-saved file"; }
start_member one "$T/one.data" one "${Q[0]}" "${Q[1]}" "one=http://127.0.0.1:${Q[1]}"
ik_server_wait_ready one 30
check_member one

# ---------------------------------------------------------------- vs etcd
ik_server_start etcd "$IK_ETCD"
ik_server_wait_ready etcd
ectl etcd put a 1 >/dev/null
EP=$(ik_server_url etcd)
# same stdout and exit code, on success and on the usual errors
compare() { # compare LABEL ARGS...: run both tools, compare
    local label=$1
    shift
    ETCDCTL_API=3 timeout 30 "$IK_ETCDCTL" "$@" >"$T/e.out" 2>"$T/e.err"
    local erc=$?
    timeout 30 "$CTL" "$@" >"$T/i.out" 2>"$T/i.err"
    local irc=$?
    sed -i "s#$T/[ei]-#$T/X-#" "$T/e.out" "$T/i.out"
    [[ $erc == "$irc" ]] || ik_fail "$label: etcdctl exit $erc, ikadactl $irc"
    cmp -s "$T/e.out" "$T/i.out" || ik_fail "$label: stdout differs"
    diff <(grep '^Error' "$T/e.err") <(grep '^Error' "$T/i.err") >&2 ||
        ik_fail "$label: error differs"
}
compare "save" --endpoints="$EP" snapshot save "$T/e-etcd.db"
mv "$T/e-etcd.db" "$T/etcd.db"
ETCDCTL_API=3 "$IK_ETCDCTL" --endpoints="$EP" snapshot save "$T/i-etcd.db" >/dev/null 2>&1
timeout 30 "$CTL" --endpoints="$EP" snapshot save "$T/i-etcd.db" >/dev/null 2>&1 ||
    ik_fail "ikadactl snapshot save against etcd"
[[ $(stat -c %s "$T/i-etcd.db") == $(stat -c %s "$T/etcd.db") ]] ||
    ik_fail "ikadactl and etcdctl saved files of different sizes from etcd"
compare "save without file" --endpoints="$EP" snapshot save
compare "save, two files" --endpoints="$EP" snapshot save a b
compare "save, two endpoints" --endpoints="$EP,$SRC" snapshot save "$T/x.db"
compare "save, unreachable endpoint" --endpoints=127.0.0.1:1 --command-timeout=1s \
    snapshot save "$T/x.db"
[[ ! -e $T/x.db.part && ! -e $T/x.db ]] || ik_fail "failed save left a file"
compare "status without file" snapshot status
compare "status, bad -w" snapshot status -w nope "$T/snap.db"
compare "restore without file" snapshot restore
compare "restore into an existing dir" snapshot restore "$T/etcd.db" --data-dir="$T/exists.data"
# etcd's own (bbolt) files: refused with a clear message
"$CTL" snapshot restore "$T/etcd.db" --data-dir="$T/bolt.data" 2>"$T/err"
expect_err "restore of an etcd bbolt file" 1 "etcd (bbolt) snapshot" $? "$T/err"
[[ ! -e $T/bolt.data ]] || ik_fail "bbolt restore left a data dir"
"$CTL" snapshot status "$T/etcd.db" 2>"$T/err"
expect_err "status of an etcd bbolt file" 1 "etcd (bbolt) snapshot" $? "$T/err"

for s in src r1 r2 r3 one; do
    ik_server_problems "$s" || ik_fail "$s logged sanitizer reports"
done
echo "PASS: ${0##*/}"
