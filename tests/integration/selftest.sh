#!/bin/bash
# tests/integration/selftest.sh: checks the integration tests themselves
# (not run by make check; takes about two minutes). Each test must pass
# with real etcd standing in for the server under test, and must fail
# against a deliberately broken stand-in:
#   - etcd that forgets its data dir on every start  -> durability.sh fails
#   - etcd whose log carries a sanitizer report      -> durability.sh fails
#   - etcd with a different --max-txn-ops            -> etcdctl_diff.sh fails
#   - etcd that rejects the first unknown-flag case differently
#                                                    -> flags.sh fails
# Usage: tests/integration/selftest.sh   (from anywhere)

set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ikada-selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export top_builddir=$tmp top_srcdir=$here/../..

cat >"$tmp/amnesiac" <<'EOF'
#!/bin/bash
for a in "$@"; do case $a in --data-dir=*) rm -rf "${a#--data-dir=}" ;; esac; done
exec /usr/bin/etcd "$@"
EOF
cat >"$tmp/asan-report" <<'EOF'
#!/bin/bash
echo "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1" >&2
exec /usr/bin/etcd "$@"
EOF
cat >"$tmp/txnops" <<'EOF'
#!/bin/bash
exec /usr/bin/etcd "$@" --max-txn-ops=200
EOF
cat >"$tmp/flagmsg" <<'EOF'
#!/bin/bash
[[ $1 == --no-such-flag ]] && { echo "unknown option --no-such-flag" >&2; exit 2; }
exec /usr/bin/etcd "$@"
EOF
chmod +x "$tmp"/amnesiac "$tmp"/asan-report "$tmp"/txnops "$tmp"/flagmsg

fails=0
# expect WANT SERVER TEST [ENV=VALUE...]
expect() {
    local want=$1 server=$2 test=$3 rc=0
    shift 3
    env IKADA_TEST_SERVER="$server" "$@" "$here/$test" >"$tmp/out" 2>&1 || rc=$?
    if { [[ $want == pass ]] && ((rc == 0)); } ||
        { [[ $want == fail ]] && ((rc == 1)); }; then
        echo "ok: $test against ${server##*/}: ${want}ed as expected"
    else
        echo "NOT OK: $test against ${server##*/}: wanted $want, got status $rc"
        tail -n 20 "$tmp/out"
        fails=$((fails + 1))
    fi
}

expect pass etcd flags.sh
expect fail "$tmp/flagmsg" flags.sh
expect pass etcd durability.sh
expect fail "$tmp/amnesiac" durability.sh DUR_ACKS=300
expect fail "$tmp/asan-report" durability.sh DUR_ACKS=300
expect pass etcd etcdctl_diff.sh
expect fail "$tmp/txnops" etcdctl_diff.sh
((fails == 0)) || { echo "selftest: $fails unexpected results"; exit 1; }
echo "selftest: all as expected"
