#!/bin/bash
# tests/integration/ikadactl_diff.sh: the etcdctl differential test
# (etcdctl_diff.sh) in CLI mode: both sides run a fresh real etcd 3.4; one
# side records real etcdctl, the other ikadactl with the same arguments, and
# the normalised transcripts must be identical. Same environment variables
# as etcdctl_diff.sh (IK_KEEP_TMP=1, IK_DIFF_SECTIONS=...); IKADACTL=PATH
# tests another ikadactl binary.

set -euo pipefail
if [[ -z ${IKADACTL:-} ]]; then
    if [[ -z ${top_builddir:-} ]]; then
        printf 'SKIP: %s: top_builddir is not set (run via make check, or set IKADACTL)\n' "${0##*/}" >&2
        exit 77
    fi
    IKADACTL=$top_builddir/ikadactl
fi
IK_DIFF_CLI=$IKADACTL exec bash "$(dirname "$0")/etcdctl_diff.sh"
