#!/bin/bash
# tests/jepsen/smoke.sh: the make-check smoke run of the Jepsen-style fault
# test: 60 s (JEPSEN_SMOKE_TIME) against a 5-member ikada cluster, one
# network namespace per member, every fault. Exit 0 when the checkers find
# no anomaly, 1 when they do, 77 (SKIP) where network namespaces cannot be
# created (not root, no iproute2, in a container without CAP_NET_ADMIN) or
# python3-etcd3 is missing. The results directory is removed after a clean
# run and kept (its path printed) after a failing one.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=${top_builddir:-$here/../..}
python=/usr/bin/python3
if [[ ! -x $python ]]; then
    echo "SKIP: jepsen smoke: $python not found"
    exit 77
fi
if [[ ! -x $top/ikada ]]; then
    echo "SKIP: jepsen smoke: $top/ikada is not built"
    exit 77
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/ikj-smoke.XXXXXX")
rc=0
"$python" "$here/run" --time "${JEPSEN_SMOKE_TIME:-60}" --server ikada \
    --binary "$top/ikada" --nodes 5 --out "$out" ${JEPSEN_SMOKE_ARGS:-} || rc=$?
if [[ $rc == 0 || $rc == 77 ]]; then
    rm -rf "$out"
else
    echo "jepsen smoke: exit status $rc; results kept in $out" >&2
fi
exit "$rc"
