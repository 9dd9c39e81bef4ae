#!/bin/bash
# tests/integration/etcdctl_diff_cluster.sh: the etcdctl differential test
# (etcdctl_diff.sh) in cluster mode: a 3-member real etcd 3.4 cluster and a
# 3-member cluster of the server under test (same flags, heartbeat 100 ms,
# election timeout 1000 ms), every etcdctl command sent to a follower of
# its cluster. Fails if any normalised output differs, and as inconclusive
# if a leader changes during the run. Same environment variables as
# etcdctl_diff.sh (IKADA_TEST_SERVER=etcd, IK_KEEP_TMP=1,
# IK_DIFF_SECTIONS=...).

set -euo pipefail
IK_DIFF_CLUSTER=3 exec bash "$(dirname "$0")/etcdctl_diff.sh"
