#!/bin/sh
# Configure and build ikada in the source tree: ./ikada, ./ikadactl and
# ./ikada-bench end up at the top. Extra arguments go to ./configure.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] || autoreconf -fi
./configure -q "$@"
make -j"$(nproc)"
