#!/bin/bash
# tests/integration/flags.sh: bad flags and unusable data dirs.
#
# Every case runs real etcd and the server under test with the same
# arguments (each run in its own scratch dir, on its own free ports) and
# classifies what happened: "exit N", "ready" (answered etcdctl endpoint
# health) or "running, not ready" (a half-started server, always a
# failure). The outcome must be the same as etcd's. For a failed start the
# message must match too: for a flag-parsing error (exit 2) the first line
# of stderr exactly; for a later error the text of etcd's first error log
# line (level E or C, timestamp and package prefix stripped) must appear in
# the server under test's output, plain or as a JSON log field.
#
# Placeholders in case arguments, expanded per run:
#   @D@ the run's scratch dir (it holds a regular file "file")
#   @C@ @P@ free client / peer ports   @B@ a port some other process holds
#   @STD@ the standard single-member flags (name node1, data dir @D@/data)

set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
SUT=$(ik_sut_binary)
WAIT=${FLAGS_WAIT:-15}

# A process holding a loopback port, for the "address already in use" cases.
"$IK_PYTHON" -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % s.getsockname()[1])
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
' "$IK_TMP/busy.port" &
for ((i = 0; i < 100; i++)); do
    [[ -f $IK_TMP/busy.port ]] && break
    sleep 0.05
done
BUSY=$(cat "$IK_TMP/busy.port")

STD=(--name=node1 --data-dir=@D@/data
    --listen-client-urls=http://127.0.0.1:@C@
    --advertise-client-urls=http://127.0.0.1:@C@
    --listen-peer-urls=http://127.0.0.1:@P@
    --initial-advertise-peer-urls=http://127.0.0.1:@P@
    --initial-cluster=node1=http://127.0.0.1:@P@
    --initial-cluster-token=flags-test --initial-cluster-state=new)

# std_with FLAG=VALUE...: the standard flags with some replaced or added.
std_with() {
    local out=() a f
    for a in "${STD[@]}"; do
        for f in "$@"; do
            [[ ${a%%=*} == "${f%%=*}" ]] && continue 2
        done
        out+=("$a")
    done
    printf '%s\n' "${out[@]}" "$@"
}

# std_without NAME: the standard flags without flag NAME.
std_without() {
    local a
    for a in "${STD[@]}"; do
        [[ ${a%%=*} == "$1" ]] || printf '%s\n' "$a"
    done
}

# run_one SIDE N BIN ARG...: runs one case; writes outcome/out/err files
# under $IK_TMP/SIDE.N/ with placeholders put back into the messages.
run_one() {
    local i
    for ((i = 0; i < 3; i++)); do
        _run_attempt "$@"
        # A free port may be taken by someone else before the server binds
        # it: retry on fresh ports unless the case is about a busy port.
        [[ "$*" != *@B@* ]] || break
        grep -q 'address already in use' "$IK_TMP/$1.$2/stderr" || break
    done
}

_run_attempt() {
    local side=$1 n=$2 bin=$3 dir ports a args=() pid outcome i
    shift 3
    dir=$IK_TMP/$side.$n
    rm -rf "$dir"
    mkdir -p "$dir/run"
    : >"$dir/run/file"
    read -r -a ports < <(ik_free_ports 2)
    for a in "$@"; do
        a=${a//@D@/$dir/run}
        a=${a//@C@/${ports[0]}}
        a=${a//@P@/${ports[1]}}
        a=${a//@B@/$BUSY}
        args+=("$a")
    done
    (cd "$dir/run" && exec "$bin" "${args[@]}") \
        </dev/null >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    printf '%s\n' "$pid" >>"$IK_TMP/.pids"
    outcome="running, not ready after ${WAIT}s"
    for ((i = 0; i < WAIT * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            a=0
            wait "$pid" || a=$?
            outcome="exit $a"
            break
        fi
        if ((i % 3 == 2)) && ETCDCTL_API=3 "$IK_ETCDCTL" \
            --endpoints="127.0.0.1:${ports[0]}" --dial-timeout=1s \
            --command-timeout=1s endpoint health >/dev/null 2>&1; then
            outcome=ready
            break
        fi
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    printf '%s\n' "$outcome" >"$dir/outcome"
    # Put the placeholders back so messages compare across runs.
    for a in stdout stderr; do
        sed -e "s|$dir/run|@D@|g" -e "s|127\.0\.0\.1:${ports[0]}|127.0.0.1:@C@|g" \
            -e "s|127\.0\.0\.1:${ports[1]}|127.0.0.1:@P@|g" \
            -e "s|127\.0\.0\.1:$BUSY|127.0.0.1:@B@|g" \
            "$dir/$a" >"$dir/$a.norm"
    done
}

# Message extraction and comparison (see the header).
COMPARE_PY='
import json, re, sys
ref_out, ref_err, sut_out, sut_err, outcome = sys.argv[1:6]
def read(p):
    with open(p, encoding="utf-8", errors="replace") as f:
        return f.read()
def flatten(text):
    """Log lines as text: a JSON log line becomes its string fields."""
    res = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            d = None
        if isinstance(d, dict):
            res.append(": ".join(str(v) for k, v in d.items()
                                 if k not in ("level", "ts", "caller")))
        else:
            res.append(line)
    return "\n".join(res)
capns = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [A-Z] \| [\w/.-]+: ")
ref_lines = [l for l in read(ref_err).splitlines() if l.strip()]
sut_text = read(sut_err)
if outcome == "exit 2":
    want = ref_lines[0] if ref_lines else ""
    got = sut_text.splitlines()[0] if sut_text.strip() else ""
    if want != got:
        print("first line of stderr differs:\n  etcd: %s\n  sut:  %s" % (want, got))
        sys.exit(1)
    print("  message: %s" % want)
elif outcome.startswith("exit ") and outcome != "exit 0":
    # etcd logs the cause first (level E or C), sometimes a hint after it.
    fatal = [l for l in ref_lines if re.match(r"^\S+ \S+ [CEF] \| ", l)]
    if not fatal:
        fatal = [l for l in ref_lines if not l.startswith("[WARNING]")][-1:]
    want = capns.sub("", fatal[0]) if fatal else ""
    got = flatten(sut_text) + "\n" + flatten(read(sut_out))
    if want not in got:
        last = [l for l in got.splitlines() if l.strip()]
        print("etcd message not found in the server under test output:\n"
              "  etcd: %s\n  sut (last line): %s" % (want, last[-1] if last else "(nothing)"))
        sys.exit(1)
    print("  message: %s" % want)
else:
    r = (read(ref_out) + read(ref_err)).strip().splitlines()
    s = (read(sut_out) + read(sut_err)).strip().splitlines()
    print("  first line: etcd: %s | sut: %s" % (r[0] if r else "", s[0] if s else ""))
'

NCASE=0
FAILED=()

# case LABEL ARG...
case_() {
    local label=$1 ref sut
    shift
    NCASE=$((NCASE + 1))
    run_one ref "$NCASE" "$IK_ETCD" "$@"
    run_one sut "$NCASE" "$SUT" "$@"
    ref=$(cat "$IK_TMP/ref.$NCASE/outcome")
    sut=$(cat "$IK_TMP/sut.$NCASE/outcome")
    echo "[$NCASE] $label: etcd: $ref, server under test: $sut"
    if ! ik_sanitizer_report "$IK_TMP/sut.$NCASE/stderr"; then
        FAILED+=("$label (sanitizer report)")
        return 0
    fi
    if [[ $ref != "$sut" ]]; then
        FAILED+=("$label (etcd: $ref, server under test: $sut)")
        sed -n '1,5p' "$IK_TMP/sut.$NCASE/stderr.norm" | sed 's/^/  sut stderr: /'
        return 0
    fi
    if [[ $ref == running* ]]; then
        FAILED+=("$label (etcd itself did not settle: the case is wrong)")
        return 0
    fi
    if ! "$IK_PYTHON" -c "$COMPARE_PY" \
        "$IK_TMP/ref.$NCASE/stdout.norm" "$IK_TMP/ref.$NCASE/stderr.norm" \
        "$IK_TMP/sut.$NCASE/stdout.norm" "$IK_TMP/sut.$NCASE/stderr.norm" \
        "$ref"; then
        FAILED+=("$label (message differs)")
    fi
}

mapfile -t std_file < <(std_with --data-dir=@D@/file)
mapfile -t std_under_file < <(std_with --data-dir=@D@/file/sub)
mapfile -t std_busy_client < <(std_with \
    --listen-client-urls=http://127.0.0.1:@B@ \
    --advertise-client-urls=http://127.0.0.1:@B@)
mapfile -t std_busy_peer < <(std_with \
    --listen-peer-urls=http://127.0.0.1:@B@ \
    --initial-advertise-peer-urls=http://127.0.0.1:@B@ \
    --initial-cluster=node1=http://127.0.0.1:@B@)
mapfile -t std_other_name < <(std_with --name=other)
mapfile -t std_bad_cluster < <(std_with --initial-cluster=node1=notaurl)
mapfile -t std_no_advertise < <(std_without --advertise-client-urls)

case_ "unknown flag" --no-such-flag
case_ "unknown flag, single dash" -no-such-flag
case_ "unknown flag among good ones" "${STD[@]}" --no-such-flag=1
case_ "integer flag, not a number" --snapshot-count=abc
case_ "unsigned flag, negative" --max-request-bytes=-1
case_ "integer flag, not a number (2)" --heartbeat-interval=abc
case_ "boolean flag, bad value" --force-new-cluster=maybe
case_ "URL flag, bad URL" --listen-client-urls=foo
case_ "cluster state, bad value" --initial-cluster-state=bogus
case_ "flag missing its value" --name
case_ "positional argument" extra
case_ "data dir is a regular file" "${std_file[@]}"
case_ "data dir below a regular file" "${std_under_file[@]}"
case_ "client port in use" "${std_busy_client[@]}"
case_ "peer port in use" "${std_busy_peer[@]}"
case_ "name not in initial cluster" "${std_other_name[@]}"
case_ "initial cluster with a bad URL" "${std_bad_cluster[@]}"
case_ "listen client URLs without advertise" "${std_no_advertise[@]}"
case_ "--version" --version
case_ "--help" --help
case_ "-h" -h
# The same standard flags in "--flag value" form must start a server.
case_ "flags as --flag value" --name node1 --data-dir @D@/data \
    --listen-client-urls http://127.0.0.1:@C@ \
    --advertise-client-urls http://127.0.0.1:@C@ \
    --listen-peer-urls http://127.0.0.1:@P@ \
    --initial-advertise-peer-urls http://127.0.0.1:@P@ \
    --initial-cluster node1=http://127.0.0.1:@P@ \
    --initial-cluster-token flags-test --initial-cluster-state new

if ((${#FAILED[@]})); then
    printf 'differs: %s\n' "${FAILED[@]}"
    ik_fail "${#FAILED[@]} of $NCASE cases differ from etcd"
fi
echo "PASS: $NCASE cases behave like etcd"
