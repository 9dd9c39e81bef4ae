#!/bin/bash
# tests/integration/ikadactl_auth.sh: ikadactl's credentials, TLS refusal
# and unreachable-endpoint output against etcdctl 3.4.
#
# Differential part: each side (etcdctl = reference, ikadactl = CLI under
# test) gets its own two fresh real etcd servers, one with auth enabled
# (users root:pw and alice:apw, alice's role may read and write "foo" and
# the prefix "pfx/") and one without; the same command list runs on both
# sides, and the transcripts (stdout, stderr, exit code; normalised by
# normalize.py) must be identical. Covered: --user name:password,
# --user/--password, wrong password, unknown user, "name:" and ":password"
# (no authentication), no credentials on an auth-enabled server, the
# "Password: " prompt reading stdin, --user against a server with auth
# disabled (warning, then goes on) and against ikada (no Auth service:
# fails like etcdctl) for get/put/del/txn/watch/lease/member/endpoint/
# lock/elect/snapshot save; an unreachable endpoint (warning with "all
# SubConns are in TransientFailure"), alone and first in a list; empty
# --cert; --insecure-skip-tls-verify without TLS (ignored by both).
#
# ikadactl-only part: TLS requested (https:// endpoint, --cacert, --cert
# and --key, --insecure-transport=false, ETCDCTL_CACERT) must fail with
# exit code 4 and an error saying TLS is not supported by ikadactl, without
# talking to the (plain-text) server.
#
# Env: IKADACTL=PATH (default $top_builddir/ikadactl), IK_KEEP_TMP=1 keeps
# the transcripts. The ikada part needs $top_builddir/ikada (or
# IKADA_TEST_SERVER); it is left out when that is not built.

set -euo pipefail
. "$(dirname "$0")/lib.sh"
ik_init
if [[ -z ${IKADACTL:-} ]]; then
    [[ -n ${top_builddir:-} ]] ||
        ik_skip "top_builddir is not set (run via make check, or set IKADACTL)"
    IKADACTL=$top_builddir/ikadactl
fi
[[ -x $IKADACTL ]] || ik_skip "CLI under test $IKADACTL is not built"
NORMALIZE=$IK_LIBDIR/normalize.py
DEAD=127.0.0.1:1 # nothing listens on port 1
FAILS=0

# ------------------------------------------------------------- recorder

REC_CTL=
REC_DIR=
REC_N=0
REC_EPS=

# _rec MODE STDIN_TEXT LIMIT ARGS...: run REC_CTL --endpoints=$REC_EPS ARGS
_rec() {
    local mode=$1 text=$2 limit=$3 base rc=0
    shift 3
    REC_N=$((REC_N + 1))
    printf -v base '%s/%04d' "$REC_DIR" "$REC_N"
    printf 'etcdctl --endpoints=%s %s\n' "$REC_EPS" "$*" >"$base.cmd"
    printf '%s\n' "$mode" >"$base.mode"
    printf '%s' "$text" >"$base.in"
    if [[ -n ${REC_HOLD:-} ]]; then
        # stdin stays open (interactive watch) until the CLI is killed
        ETCDCTL_API=3 GOMAXPROCS=1 timeout -k 2 "$limit" "$REC_CTL" \
            --endpoints="$REC_EPS" "$@" \
            < <(cat "$base.in"; sleep "$REC_HOLD") >"$base.out" \
            2>"$base.err" || rc=$?
    else
        ETCDCTL_API=3 GOMAXPROCS=1 timeout -k 2 "$limit" "$REC_CTL" \
            --endpoints="$REC_EPS" "$@" <"$base.in" >"$base.out" \
            2>"$base.err" || rc=$?
    fi
    printf '%s\n' "$rc" >"$base.rc"
}
c() { _rec simple "" 30 "$@"; }
ci() {
    local t=$1
    shift
    _rec simple "$t" 30 "$@"
}
cwatch() {
    local s=$1
    shift
    _rec watch "" "$s" "$@"
}
# cwatchi SECS TEXT ARGS...: TEXT on a stdin that stays open; killed
# after SECS
cwatchi() {
    local s=$1 t=$2
    shift 2
    REC_HOLD=$((s + 2)) _rec watch "$t" "$s" "$@"
}

TXN=$'value("foo") = "x"\n\nput foo yes\n\nput foo no\n\n'

# ------------------------------------------------------------- scenario

sc_auth() { # on the auth-enabled server; $1: its endpoint
    local ep=$1
    REC_EPS=$ep
    c get foo
    c --user=root:pw put foo bar
    c --user=root:pw get foo
    c --user root --password pw get foo -w json
    c --user=root:bad get foo
    c --user=nobody:x get foo
    c --user=root: get foo
    c --user=:pw get foo
    c --user alice:apw put foo v2
    c --user alice:apw get foo
    c --user alice:apw put zzz v
    c --user alice:apw get zzz
    c --user alice:apw put pfx/a 1
    c --user alice:apw get pfx/ --prefix
    c --user alice:apw del zzz
    c --user=root:bad del foo
    c del foo
    c --user=root:pw del pfx/a
    ci "$TXN" --user=root:pw txn
    ci "$TXN" --user=alice:apw txn -w json
    ci "$TXN" --user=root:bad txn
    ci "$TXN" txn
    cwatch 2 --user=root:pw watch foo --rev 1
    cwatch 2 --user=alice:apw watch zzz
    cwatch 2 watch foo
    cwatch 2 --user=root:bad watch foo
    # no "progress" together with a watch that replays history (--rev): etcd
    # sends the replayed events from its sync loop (every 100 ms) and answers
    # a progress request at once, so their order varies from run to run with
    # etcdctl itself; replays are covered by the plain watches above
    cwatchi 2 $'watch foo\nprogress\nwatch pfx/ --prefix\nprogress\n' \
        --user=root:pw watch -i
    cwatchi 2 $'progress\nwatch foo\nprogress\n' --user=alice:apw watch -i
    c --user=root:pw lease grant 600
    c --user=root:bad lease grant 600
    c lease grant 600
    c --user=root:pw lease list
    c --user=alice:apw lease keep-alive --once 1234
    c --user=root:bad lease keep-alive --once 1234
    c --user=root:pw lease timetolive 1234
    c --user=root:pw member list
    c --user=root:pw member list -w json
    c --user=root:bad member list
    c member list
    c --user=root:pw endpoint health
    c --user=alice:apw endpoint health
    c --user=root:bad endpoint health
    c endpoint health
    c --user=alice:apw endpoint hashkv
    c --user=alice:apw defrag
    c --user=root:pw alarm list
    c --user=root:bad alarm list
    cwatch 2 --user=alice:apw lock mylock
    cwatch 2 lock mylock
    cwatch 2 --user=alice:apw elect el proposal
    cwatch 2 --user=alice:apw elect -l el
    c --user=root:pw snapshot save snap.db
    c --user=root:bad snapshot save snap.db
    c --user=alice:apw snapshot save snap.db
    c snapshot save snap.db
    # the password prompt
    ci $'pw\n' --user root get foo
    ci $'  pw  \r\n' --user root get foo
    ci $'bad\n' --user root get foo
    ci '' --user root get foo
    ci $'pw\n' --user root --password "" get foo
    ci $'pw\n' --user root -w bogus get foo
    ci $'pw\nvalue\n' --user root put foo
    # flags that leave TLS off
    c --cert= get foo
    c --cacert= get foo
    c --insecure-skip-tls-verify --user=root:pw get foo
    # unreachable endpoints
    REC_EPS=$DEAD
    c --command-timeout=1s get foo
    c --command-timeout=1s put foo bar
    c --user=root:pw --dial-timeout=1s get foo
    # one --dial-timeout covers the authentication on every endpoint (each a
    # bcrypt check on the server, slow on a loaded machine): 5 s so that it
    # does not run out before the server has answered, with either CLI
    REC_EPS=$DEAD,$ep
    c --user=root:pw --dial-timeout=5s get foo
    REC_EPS=$ep,$DEAD
    c --user=root:bad --dial-timeout=5s get foo
    REC_EPS=$ep
    c --endpoints=$DEAD --user=root:pw --command-timeout=2s get foo
}

sc_plain() { # on a server without auth
    REC_EPS=$1
    c --user=root:pw put foo bar
    c --user=root:pw get foo
    c --user=root:bad get foo
    c --user=root: get foo
    # the long-running commands below are stopped after 4 s: each must have
    # opened its stream (and printed that stream's warning) by then, also
    # on a loaded machine
    cwatch 4 --user=root:pw watch foo --rev 1
    c --user=root:pw member list
    c --user=root:bad endpoint health
    ci $'pw\n' --user root get foo
    # every stream authenticates again (one warning each)
    c --user=root:pw lease keep-alive --once 1234
    cwatch 4 --user=root:pw elect -l el
    # (no history replay with "progress": see sc_auth)
    cwatchi 4 $'watch foo\nwatch bar\nprogress\n' --user=root:pw watch -i
    c --user=root:pw snapshot save plain.db
}

sc_ikada() { # on ikada, which has no Auth service
    REC_EPS=$1
    c --user=root:pw get foo
    c --user=root:pw put foo bar
    c --user=root: get foo
    c get foo
}

# ------------------------------------------------------------- sides

setup_auth() {
    local s=$1
    {
        ectl "$s" user add root:pw
        ectl "$s" user add alice:apw
        ectl "$s" role add r1
        ectl "$s" role grant-permission r1 readwrite foo
        ectl "$s" role grant-permission --prefix=true r1 readwrite pfx/
        ectl "$s" user grant-role alice r1
        ectl "$s" auth enable
    } >>"$IK_TMP/setup.log" 2>&1 || ik_fail "could not set up auth on $s (see $IK_TMP/setup.log)"
}

normalise() { # SERVER SECTION DIR
    local ids
    read -r -a ids < <(ik_server_ids "$1")
    "$IK_PYTHON" "$NORMALIZE" "$3" --section "$2" \
        --client "$(ik_server_url "$1")" --peer "$IK_HOST:${IK_PPORT[$1]}" \
        --member-id "${ids[0]}" --cluster-id "${ids[1]}" --lease-ttl 600
}

IKADA_BIN=
if [[ -n ${IKADA_TEST_SERVER:-} || -x ${top_builddir:-/nonexistent}/ikada ]]; then
    IKADA_BIN=$(ik_sut_binary)
fi
if [[ -n $IKADA_BIN ]]; then
    ik_server_start ikada "$IKADA_BIN"
    ik_server_wait_ready ikada
else
    ik_log "ikada is not built: its part is left out"
fi

run_side() { # SIDE CTL
    local side=$1 a=$1-auth p=$1-plain
    REC_CTL=$2
    mkdir -p "$IK_TMP/$side.cwd"
    cd "$IK_TMP/$side.cwd"
    ik_server_start "$a" "$IK_ETCD"
    ik_server_start "$p" "$IK_ETCD"
    ik_server_wait_ready "$a"
    ik_server_wait_ready "$p"
    setup_auth "$a"
    : >"$IK_TMP/$side.txt"
    REC_DIR=$IK_TMP/$side.auth.rec REC_N=0
    mkdir -p "$REC_DIR"
    sc_auth "$(ik_server_url "$a")"
    REC_DIR=$IK_TMP/$side.plain.rec REC_N=0
    mkdir -p "$REC_DIR"
    sc_plain "$(ik_server_url "$p")"
    if [[ -n $IKADA_BIN ]]; then
        REC_DIR=$IK_TMP/$side.ikada.rec REC_N=0
        mkdir -p "$REC_DIR"
        sc_ikada "$(ik_server_url ikada)"
    fi
    cd "$IK_TMP"
    # the auth server's IDs: ask with credentials
    ids_auth "$a" "$side.auth.rec" auth >>"$IK_TMP/$side.txt"
    normalise "$p" plain "$IK_TMP/$side.plain.rec" >>"$IK_TMP/$side.txt"
    ik_server_stop "$p"
    if [[ -n $IKADA_BIN ]]; then
        normalise ikada ikada "$IK_TMP/$side.ikada.rec" >>"$IK_TMP/$side.txt"
    fi
    ik_server_stop "$a"
}

# normalize.py for the auth-enabled server (its IDs read with root's
# credentials: ik_server_ids has none).
ids_auth() {
    local s=$1 dir=$2 sec=$3 st mid cid
    st=$(ectl "$s" --user=root:pw endpoint status -w json 2>/dev/null)
    mid=$(sed -n 's/.*"member_id":\([0-9]*\).*/\1/p' <<<"$st")
    cid=$(sed -n 's/.*"cluster_id":\([0-9]*\).*/\1/p' <<<"$st")
    [[ -n $mid && -n $cid ]] || ik_fail "cannot read the IDs of $s"
    "$IK_PYTHON" "$NORMALIZE" "$IK_TMP/$dir" --section "$sec" \
        --client "$(ik_server_url "$s")" --peer "$IK_HOST:${IK_PPORT[$s]}" \
        --member-id "$mid" --cluster-id "$cid" --lease-ttl 600
}

start=$SECONDS
run_side ref "$IK_ETCDCTL"
run_side sut "$IKADACTL"
ncmd=$(grep -c '^=== \[' "$IK_TMP/ref.txt" || true)
ik_log "ran $ncmd commands per CLI in $((SECONDS - start))s"
if ! diff -u --label "etcdctl 3.4 (reference)" --label "ikadactl" \
    "$IK_TMP/ref.txt" "$IK_TMP/sut.txt" >"$IK_TMP/diff.txt"; then
    head -n 400 "$IK_TMP/diff.txt"
    FAILS=$((FAILS + 1))
    printf 'FAIL: ikadactl differs from etcdctl (IK_KEEP_TMP=1 keeps %s)\n' \
        "$IK_TMP"
fi

# ------------------------------------------------------------- TLS

# The plain-text auth-less server answers "get foo" with rc 0: a CLI that
# connected in clear despite the TLS request would exit 0.
ik_server_start tls-plain "$IK_ETCD"
ik_server_wait_ready tls-plain
EP=$(ik_server_url tls-plain)
ntls=0
tls_case() { # DESCRIPTION ENV-ASSIGNMENT-OR-"" ARGS...
    local what=$1 envset=$2 rc=0 out err
    shift 2
    ntls=$((ntls + 1))
    out=$IK_TMP/tls.$ntls.out err=$IK_TMP/tls.$ntls.err
    env ${envset:+"$envset"} ETCDCTL_API=3 timeout 20 "$IKADACTL" "$@" \
        </dev/null >"$out" 2>"$err" || rc=$?
    if ((rc != 4)) || [[ -s $out ]] ||
        ! grep -q '^Error: TLS is not supported by ikadactl' "$err"; then
        printf 'FAIL: TLS %s: exit %s, stdout %s, stderr:\n' "$what" "$rc" \
            "$(head -c 200 "$out")"
        cat "$err"
        FAILS=$((FAILS + 1))
    fi
}
tls_case "https endpoint" "" --endpoints="https://$EP" get foo
tls_case "HTTPS endpoint, second" "" --endpoints="http://$EP,HTTPS://$EP" get foo
tls_case "--cacert" "" --endpoints="$EP" --cacert=/nonexistent/ca.pem get foo
tls_case "--cert/--key" "" --endpoints="$EP" --cert=/x.pem --key=/y.pem put a b
tls_case "--insecure-transport=false" "" --endpoints="$EP" \
    --insecure-transport=false get foo
tls_case "ETCDCTL_CACERT" "ETCDCTL_CACERT=/nonexistent/ca.pem" \
    --endpoints="$EP" get foo
tls_case "watch over https" "" --endpoints="https://$EP" watch foo
tls_case "snapshot save over https" "" --endpoints="https://$EP" \
    snapshot save "$IK_TMP/tls.db"
tls_case "endpoint health over https" "" --endpoints="https://$EP" \
    endpoint health
# the server saw none of these: "a" was never put
if [[ -n $(ectl tls-plain get a --print-value-only 2>/dev/null) ]]; then
    printf 'FAIL: a TLS-refused put reached the server\n'
    FAILS=$((FAILS + 1))
fi
ik_server_stop tls-plain

if ((FAILS > 0)); then
    printf '%d passed, %d failed\n' $((ntls + 1 - FAILS)) "$FAILS"
    exit 1
fi
printf 'PASS: %d commands per CLI identical to etcdctl; %d TLS refusals\n' \
    "$ncmd" "$ntls"
printf '%d passed, 0 failed\n' $((ntls + 1))
