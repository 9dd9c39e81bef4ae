#!/bin/bash
# tests/integration/ikadactl_diff.sh: the etcdctl differential test
# (etcdctl_diff.sh) in CLI mode: both sides run a fresh real etcd 3.4; one
# side records real etcdctl, the other ikadactl with the same arguments, and
# the normalised transcripts must be identical (help texts: their skeleton,
# see normalize.py). Same environment variables as etcdctl_diff.sh
# (IK_KEEP_TMP=1, IK_DIFF_SECTIONS=...); IKADACTL=PATH tests another
# ikadactl binary.
#
# Then ikadactl-only checks (no server needed): the etcdctl commands
# ikadactl does not implement fail with exit 1 and say so, and are not
# listed as commands in the help; ikadactl's help texts carry none of
# etcdctl's description lines (they are written in ikadactl's own words).

set -euo pipefail
if [[ -z ${IKADACTL:-} ]]; then
    if [[ -z ${top_builddir:-} ]]; then
        printf 'SKIP: %s: top_builddir is not set (run via make check, or set IKADACTL)\n' "${0##*/}" >&2
        exit 77
    fi
    IKADACTL=$top_builddir/ikadactl
fi
rc=0
IK_DIFF_CLI=$IKADACTL bash "$(dirname "$0")/etcdctl_diff.sh" || rc=$?
((rc == 77)) && exit 77

fails=0
fail() {
    printf 'FAIL: %s\n' "$*"
    fails=$((fails + 1))
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# an endpoint nothing listens on: none of these may try to connect
ep=--endpoints=127.0.0.1:1
nunimpl=0
for cmd in "user add bob" "user list" "role list" "auth enable" "user" \
    "completion bash" "make-mirror 127.0.0.1:2" "migrate" \
    "check datascale" "help user add" "help auth"; do
    nunimpl=$((nunimpl + 1))
    r=0
    # shellcheck disable=SC2086 # the command's words
    timeout 10 "$IKADACTL" $ep $cmd </dev/null >"$tmp/out" 2>"$tmp/err" || r=$?
    if ((r != 1)) || [[ -s $tmp/out ]] ||
        ! grep -q '^Error: ".*" is an etcdctl command that ikadactl does not implement$' "$tmp/err"; then
        fail "not implemented: '$cmd': exit $r, stdout $(head -c 100 "$tmp/out"), stderr $(head -c 200 "$tmp/err")"
    fi
done
"$IKADACTL" help >"$tmp/root" 2>&1 || fail "ikadactl help failed"
if grep -Eq $'^\t(user|role|auth|completion|check datascale|make-mirror|migrate)( |\t)' "$tmp/root"; then
    fail "the top-level help lists a command ikadactl does not implement"
fi
grep -q '^NOT IMPLEMENTED BY IKADACTL:' "$tmp/root" ||
    fail "the top-level help does not name the commands left out"

# etcdctl's descriptions (the text after the last tab of its help lines,
# and NAME's summary) must not appear in ikadactl's help
nhelp=0
for cmd in "" get put del txn compaction watch "lease grant" \
    "lease keep-alive" "lease timetolive" "lease list" "lease revoke" lease \
    "member add" "member update" "member list" "member remove" \
    "member promote" member "endpoint health" "endpoint status" \
    "endpoint hashkv" endpoint defrag "alarm list" "alarm disarm" alarm \
    "snapshot save" "snapshot status" "snapshot restore" snapshot lock \
    elect "check perf" check move-leader version help; do
    nhelp=$((nhelp + 1))
    # shellcheck disable=SC2086
    ETCDCTL_API=3 etcdctl help $cmd >"$tmp/ref" 2>/dev/null || true
    # shellcheck disable=SC2086
    "$IKADACTL" help $cmd >"$tmp/sut" 2>/dev/null || true
    if ! "${IK_PYTHON:-python3}" - "$tmp/ref" "$tmp/sut" <<'PY'; then
import sys
ref = open(sys.argv[1], encoding="utf-8").read().split("\n")
sut = open(sys.argv[2], encoding="utf-8").read()
texts = set()
for i, line in enumerate(ref):
    if "\t" in line and line.strip():
        t = line.rsplit("\t", 1)[1].strip()
        # USAGE lines and names are interface, not prose
        if i > 0 and ref[i - 1] in ("USAGE:", "VERSION:", "API VERSION:"):
            continue
        if i > 0 and ref[i - 1] == "NAME:":
            t = t.split(" - ", 1)[-1]
        if len(t) > 12:
            texts.add(t)
found = sorted(t for t in texts if t in sut)
if found:
    print("etcdctl's help prose in ikadactl's help: %r" % found[:5])
    sys.exit(1)
PY
        fail "help ${cmd:-(root)}: ikadactl's help repeats etcdctl's prose"
    fi
done

# every flag a help text lists is one the command accepts: "CMD --flag=DEFAULT
# -h" must print the help (an unknown flag would be an error)
nflags=0
for cmd in get put del txn compaction watch "lease grant" "lease keep-alive" \
    "lease timetolive" "member add" "member update" "endpoint hashkv" \
    "endpoint health" defrag "snapshot restore" lock elect "check perf"; do
    # shellcheck disable=SC2086
    "$IKADACTL" help $cmd >"$tmp/h" 2>&1 || true
    while IFS= read -r flag; do
        nflags=$((nflags + 1))
        r=0
        # shellcheck disable=SC2086
        timeout 10 "$IKADACTL" $ep $cmd "$flag" -h >"$tmp/out" 2>"$tmp/err" </dev/null || r=$?
        if ((r != 0)) || [[ $(head -n 1 "$tmp/out") != NAME: ]]; then
            fail "$cmd: the flag its help lists, $flag, is refused: exit $r, $(head -c 200 "$tmp/err")"
        fi
    done < <(sed -n '/^OPTIONS:/,/^$/p; /^GLOBAL OPTIONS:/,/^$/p' "$tmp/h" |
        sed -n 's/^ *\(-., \)\{0,1\}\(--[a-z-]*\)\[\{0,1\}=\([^\t]*\)\t.*/\2=\3/p' |
        sed 's/\]$//; s/="\(.*\)"$/=\1/; s/=\[\(.*\)$/=\1/' | grep -v '^--help=')
done
((nflags > 100)) || fail "only $nflags documented flags found in the help texts"
if ((fails == 0)); then
    printf 'PASS: %d unimplemented commands refused, %d help texts in ikadactl'"'"'s own words, %d documented flags accepted\n' \
        "$nunimpl" "$nhelp" "$nflags"
fi
((rc == 0 && fails == 0))
