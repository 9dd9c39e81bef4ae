#!/bin/sh
# Install everything ikada needs to build and test, from Debian's packages.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config \
libuv1-dev libraft-dev liblz4-dev libprotobuf-c-dev protobuf-c-compiler \
libssl-dev libnghttp2-dev libcmocka-dev libjansson-dev zlib1g-dev \
etcd-server etcd-client python3 python3-etcd3 iproute2 procps \
gnuplot-nox"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
