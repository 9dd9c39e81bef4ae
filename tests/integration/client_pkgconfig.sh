#!/bin/bash
# tests/integration/client_pkgconfig.sh: the installed client library is
# usable on its own. Installs libikada-client.a, its headers and
# ikada-client.pc into a scratch DESTDIR (only those install targets, so it
# needs nothing else built), then compiles and links a small program with
# nothing but `pkg-config --cflags --libs ikada-client` (no -I into the
# source tree) and runs it: it creates a client, checks the endpoint
# parsing, and makes one call to a port nothing listens on, which must end
# with a gRPC status (UNAVAILABLE or DEADLINE_EXCEEDED) well within its
# timeout.
# Usage: tests/integration/client_pkgconfig.sh   (top_builddir may be set)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top_builddir=${top_builddir:-$here/../..}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ikada-pkgconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

make -s -C "$top_builddir" DESTDIR="$dest" install-libLIBRARIES \
    install-nobase_ikadaincHEADERS install-nobase_nodist_ikadaincHEADERS \
    install-pkgconfigDATA >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    echo "FAIL: make install of the client library" >&2
    exit 1
}
pc=$(find "$dest" -name ikada-client.pc | head -n 1)
[[ -n $pc ]] || { echo "FAIL: ikada-client.pc not installed" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
# The .pc is relative to ${prefix}: --define-prefix points it at the
# DESTDIR copy (derived from where the .pc file is).
flags=$(pkg-config --define-prefix --cflags --libs ikada-client) || {
    echo "FAIL: pkg-config ikada-client" >&2
    exit 1
}
echo "pkg-config: $flags"
for h in ikada/client/ikclient.h ikada/client/grpc_client.h \
    ikada/client/grpc_client_uv.h ikada/server/grpc.h ikada/server/errors.h \
    ikada/proto/rpc.pb-c.h ikada/proto/kv.pb-c.h ikada/proto/auth.pb-c.h; do
    [[ -n $(find "$dest" -path "*/include/$h") ]] ||
        { echo "FAIL: $h not installed" >&2; exit 1; }
done

cat >"$tmp/prog.c" <<'PROG'
#include <stdio.h>
#include <string.h>

#include "client/ikclient.h"
#include "server/errors.h"

int main(void)
{
    const char *eps[] = {"http://127.0.0.1:1", "localhost:2"};
    struct ikclient_config cfg;
    struct ikclient *c;
    struct ikclient_status st;
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    char err[256], buf[600];
    int rv;

    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = 2;
    cfg.request_timeout_ms = 300;
    if (ikclient_new(&cfg, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "ikclient_new: %s\n", err);
        return 1;
    }
    if (strcmp(ikclient_endpoint(c, 0), "127.0.0.1:1") != 0) {
        fprintf(stderr, "endpoint 0: %s\n", ikclient_endpoint(c, 0));
        return 1;
    }
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    rv = ikclient_range(c, &req, &resp, &st);
    printf("range: rv=%d %s\n", rv, ikclient_strstatus(&st, buf, sizeof(buf)));
    ikclient_free(c);
    if (rv != IK_EGRPC || (st.code != GRPC_UNAVAILABLE &&
                           st.code != GRPC_DEADLINE_EXCEEDED)) {
        return 1;
    }
    return 0;
}
PROG
# A library built with --enable-sanitize needs its consumers linked with
# the sanitizer runtime too: take the build's extra link flags.
san=$(sed -n 's/^IKADA_LDFLAGS = //p' "$top_builddir/Makefile")
# gnu11: libuv's uv.h needs POSIX/GNU declarations (pthread_rwlock_t).
# shellcheck disable=SC2086
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror $san -o "$tmp/prog" "$tmp/prog.c" $flags || {
    echo "FAIL: compiling/linking against the installed library" >&2
    exit 1
}
timeout 10 "$tmp/prog" || { echo "FAIL: the program failed" >&2; exit 1; }
echo "PASS: client_pkgconfig"
