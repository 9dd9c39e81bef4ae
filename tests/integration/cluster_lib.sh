# shellcheck shell=bash
# tests/integration/cluster_lib.sh: helpers for the multi-member black-box
# tests (cluster_*.sh). Self-contained: it does not depend on lib.sh.
#
# Source it, then call cl_init first:
#
#   . "$(dirname "$0")/cluster_lib.sh"
#   cl_init
#
# A cluster is a name (say "c") and N members named c1..cN. Each member is
# started with etcd's own flags, identical for etcd and ikada:
#   --name --data-dir --listen-client-urls --advertise-client-urls
#   --listen-peer-urls --initial-advertise-peer-urls --initial-cluster
#   --initial-cluster-token --initial-cluster-state=new
#   --heartbeat-interval --election-timeout --snapshot-count
# on loopback ports picked when the cluster is created.
#
#   cl_init                  skip (77) unless etcd, etcdctl, python3 (with
#                            the etcd3 module) and timeout(1) are there; make
#                            $CL_TMP; install the cleanup trap: on every exit
#                            path the script's background jobs and every
#                            server it started are killed and $CL_TMP is
#                            removed (CL_KEEP_TMP=1 keeps it)
#   cl_sut_binary            the server under test: $top_builddir/ikada, or
#                            $IKADA_TEST_SERVER ("etcd" = /usr/bin/etcd)
#   cl_cluster_new C N BIN [FLAG...]
#                            define cluster C of N members running BIN;
#                            FLAGs are added to every member's command line.
#                            CL_HEARTBEAT / CL_ELECTION / CL_SNAPCOUNT
#                            (default 50 / 500 / 1000) set the timing flags
#   cl_cluster_start C [SECS]
#                            start all members, wait until each answers
#                            `endpoint health` (a first start that lost a
#                            port to another process is retried on fresh
#                            ports)
#   cl_members C             the member names, one line
#   cl_urls C [MEMBER...]    comma-separated client endpoints
#   cl_url MEMBER            one client endpoint, 127.0.0.1:PORT
#   cl_spawn MEMBER          start (or restart) MEMBER on its data dir
#   cl_kill MEMBER           kill -9 and reap
#   cl_stop MEMBER           SIGTERM, wait up to 10 s, then kill -9
#   cl_alive MEMBER          true while its process runs
#   cl_wait_ready MEMBER [SECS]
#                            poll `endpoint health`; fail with its log
#   cl_ectl MEMBER ARGS...   etcdctl against MEMBER only
#   cl_leader C [SECS]       print the leader's member name, once the
#                            running members agree on one that runs
#   cl_followers C           the running members that are not the leader
#   cl_follower C            the first of them
#   cl_status_field MEMBER FIELD
#                            a number from `endpoint status -w json`
#                            (raftAppliedIndex, raftIndex, raftTerm, leader,
#                            member_id, revision); empty if no answer
#   cl_revision MEMBER       store revision via a linearizable get
#   cl_hashkv_check REV MEMBER...
#                            HashKV at REV on each member: all must answer
#                            and agree; prints the table, returns 1 if not
#   cl_dump_logs C           tail of every member's log to stderr
#   cl_problems C            sanitizer reports in the logs (returns 1)
#   cl_now                   wall clock, seconds with nanoseconds
#   cl_log / cl_fail / cl_skip MSG
#
# Env: IKADA_TEST_SERVER=etcd runs the test against a real etcd cluster
# (validates the test itself), CL_KEEP_TMP=1 keeps logs and data dirs.

CL_ETCD=${CL_ETCD:-/usr/bin/etcd}
CL_ETCDCTL=${CL_ETCDCTL:-/usr/bin/etcdctl}
CL_PYTHON=${CL_PYTHON:-/usr/bin/python3}
CL_HOST=127.0.0.1
CL_HEARTBEAT=${CL_HEARTBEAT:-50}
CL_ELECTION=${CL_ELECTION:-500}
CL_SNAPCOUNT=${CL_SNAPCOUNT:-1000}

CL_LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL_LOAD=$CL_LIBDIR/cluster_load.py

declare -A CL_BIN=() CL_PID=() CL_DIR=() CL_CPORT=() CL_PPORT=() CL_LOG=()
declare -A CL_ARGS=() CL_OF=() CL_MEMBERS=() CL_TOKEN=()
CL_TMP=

cl_log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

cl_skip() {
    printf 'SKIP: %s: %s\n' "${0##*/}" "$*" >&2
    exit 77
}

cl_fail() {
    printf 'FAIL: %s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

cl_now() {
    date +%s.%N
}

# Kill every server started by this test. Each spawned PID is listed in
# $CL_TMP/.pids; a PID is only killed while its command line still names
# our temp dir, so a recycled PID is left alone.
_cl_kill_all() {
    local name pid
    for name in "${!CL_PID[@]}"; do
        pid=${CL_PID[$name]}
        [[ -n $pid ]] || continue
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        CL_PID[$name]=
    done
    [[ -n $CL_TMP && -f $CL_TMP/.pids ]] || return 0
    while read -r pid; do
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" |
            grep -qF -- "$CL_TMP/"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done <"$CL_TMP/.pids"
}

_cl_cleanup() {
    local rc=$? pid i jobpids
    trap - EXIT INT TERM
    jobpids=$(jobs -p)
    for pid in $jobpids; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $jobpids; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _cl_kill_all
    if [[ -n $CL_TMP && -d $CL_TMP ]]; then
        if [[ ${CL_KEEP_TMP:-0} == 1 ]]; then
            cl_log "kept temp dir $CL_TMP"
        else
            rm -rf "$CL_TMP"
        fi
    fi
    exit "$rc"
}

cl_init() {
    [[ -x $CL_ETCD ]] || cl_skip "$CL_ETCD not found (reference etcd needed)"
    [[ -x $CL_ETCDCTL ]] || cl_skip "$CL_ETCDCTL not found"
    [[ -x $CL_PYTHON ]] || cl_skip "$CL_PYTHON not found"
    command -v timeout >/dev/null || cl_skip "timeout(1) not found"
    "$CL_PYTHON" -c 'import etcd3' 2>/dev/null ||
        cl_skip "python3 module etcd3 (Debian package python3-etcd3) is missing"
    CL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ikada-cl.XXXXXX")
    trap _cl_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cl_sut_binary() {
    local sut=${IKADA_TEST_SERVER:-}
    if [[ $sut == etcd ]]; then
        printf '%s\n' "$CL_ETCD"
        return 0
    fi
    if [[ -z $sut ]]; then
        [[ -n ${top_builddir:-} ]] ||
            cl_skip "top_builddir is not set (run via make check, or set IKADA_TEST_SERVER)"
        sut=$top_builddir/ikada
    fi
    [[ -x $sut ]] || cl_skip "server under test $sut is not built"
    printf '%s\n' "$sut"
}

# cl_free_ports N: N distinct free loopback ports (all sockets are held at
# once so the ports differ).
cl_free_ports() {
    "$CL_PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

_cl_assign_ports() {
    local c=$1 m ports i=0
    read -r -a ports < <(cl_free_ports $((2 * $(wc -w <<<"${CL_MEMBERS[$c]}"))))
    for m in ${CL_MEMBERS[$c]}; do
        CL_CPORT[$m]=${ports[$i]}
        CL_PPORT[$m]=${ports[$((i + 1))]}
        i=$((i + 2))
    done
}

cl_cluster_new() {
    local c=$1 n=$2 bin=$3 i m members=
    shift 3
    [[ $c =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || cl_fail "bad cluster name '$c'"
    [[ -z ${CL_MEMBERS[$c]:-} ]] || cl_fail "cluster $c already exists"
    for ((i = 1; i <= n; i++)); do
        m=$c$i
        members+="${members:+ }$m"
        CL_BIN[$m]=$bin
        CL_PID[$m]=
        CL_DIR[$m]=$CL_TMP/$m.data
        CL_LOG[$m]=$CL_TMP/$m.log
        CL_OF[$m]=$c
        CL_ARGS[$m]=
        (($# == 0)) || CL_ARGS[$m]=$(printf '%q ' "$@")
    done
    CL_MEMBERS[$c]=$members
    CL_TOKEN[$c]=ikada-$c-$$-$RANDOM
    _cl_assign_ports "$c"
}

cl_members() {
    # shellcheck disable=SC2086 # member names are single words
    printf '%s\n' ${CL_MEMBERS[$1]}
}

cl_url() {
    printf '%s:%s\n' "$CL_HOST" "${CL_CPORT[$1]}"
}

cl_urls() {
    local c=$1 m out=
    shift
    # shellcheck disable=SC2086 # member names are single words
    (($# > 0)) || set -- ${CL_MEMBERS[$c]}
    for m in "$@"; do
        out+="${out:+,}$CL_HOST:${CL_CPORT[$m]}"
    done
    printf '%s\n' "$out"
}

# The flags of member M, one per line.
_cl_flags() {
    local m=$1 c=${CL_OF[$1]} o initial=
    for o in ${CL_MEMBERS[$c]}; do
        initial+="${initial:+,}$o=http://$CL_HOST:${CL_PPORT[$o]}"
    done
    printf '%s\n' \
        "--name=$m" \
        "--data-dir=${CL_DIR[$m]}" \
        "--listen-client-urls=http://$CL_HOST:${CL_CPORT[$m]}" \
        "--advertise-client-urls=http://$CL_HOST:${CL_CPORT[$m]}" \
        "--listen-peer-urls=http://$CL_HOST:${CL_PPORT[$m]}" \
        "--initial-advertise-peer-urls=http://$CL_HOST:${CL_PPORT[$m]}" \
        "--initial-cluster=$initial" \
        "--initial-cluster-token=${CL_TOKEN[$c]}" \
        "--initial-cluster-state=new" \
        "--heartbeat-interval=$CL_HEARTBEAT" \
        "--election-timeout=$CL_ELECTION" \
        "--snapshot-count=$CL_SNAPCOUNT"
}

cl_spawn() {
    local m=$1 flags extra
    [[ -z ${CL_PID[$m]:-} ]] || cl_fail "member $m is still running"
    mapfile -t flags < <(_cl_flags "$m")
    eval "extra=(${CL_ARGS[$m]})"
    printf '==== %s: start %s %s\n' "$(date +%T.%N)" "${CL_BIN[$m]}" \
        "${flags[*]} ${extra[*]}" >>"${CL_LOG[$m]}"
    "${CL_BIN[$m]}" "${flags[@]}" "${extra[@]}" \
        </dev/null >>"${CL_LOG[$m]}" 2>&1 &
    CL_PID[$m]=$!
    printf '%s\n' "$!" >>"$CL_TMP/.pids"
}

cl_alive() {
    local pid=${CL_PID[$1]:-}
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

cl_kill() {
    local m=$1 pid=${CL_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    CL_PID[$m]=
    printf '==== %s: killed with SIGKILL\n' "$(date +%T.%N)" >>"${CL_LOG[$m]}"
}

# cl_stop M: graceful stop; the exit status goes to CL_LAST_RC.
# shellcheck disable=SC2034 # read by the scripts
CL_LAST_RC=0
cl_stop() {
    local m=$1 pid=${CL_PID[$1]:-} i rc=0
    CL_LAST_RC=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        cl_log "member $m ignored SIGTERM for 10s, killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    CL_PID[$m]=
    # shellcheck disable=SC2034 # read by the scripts
    CL_LAST_RC=$rc
    printf '==== %s: stopped, exit status %s\n' "$(date +%T.%N)" "$rc" \
        >>"${CL_LOG[$m]}"
}

cl_ectl() {
    local m=$1
    shift
    ETCDCTL_API=3 "$CL_ETCDCTL" --endpoints="$CL_HOST:${CL_CPORT[$m]}" "$@"
}

cl_dump_log() {
    local m=$1
    printf -- '---- last 40 lines of %s log (%s) ----\n' "$m" "${CL_LOG[$m]}" >&2
    tail -n 40 "${CL_LOG[$m]}" >&2 2>/dev/null || true
    printf -- '---- end of %s log ----\n' "$m" >&2
}

cl_dump_logs() {
    local m
    for m in ${CL_MEMBERS[$1]}; do
        cl_dump_log "$m"
    done
}

_cl_healthy() {
    cl_ectl "$1" --dial-timeout=1s --command-timeout=2s endpoint health \
        >/dev/null 2>&1
}

# cl_wait_ready M [SECS]: returns once M answers `endpoint health`; fails
# the test (with M's log) if it exits or is not ready in time.
cl_wait_ready() {
    local m=$1 secs=${2:-30} deadline
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if ! cl_alive "$m"; then
            cl_dump_log "$m"
            cl_fail "member $m (${CL_BIN[$m]}) exited before becoming ready"
        fi
        _cl_healthy "$m" && return 0
        sleep 0.1
    done
    cl_dump_log "$m"
    cl_fail "member $m (${CL_BIN[$m]}) not ready after ${secs}s"
}

cl_cluster_start() {
    local c=$1 secs=${2:-30} m attempt deadline pending busy
    for ((attempt = 1; attempt <= 3; attempt++)); do
        for m in ${CL_MEMBERS[$c]}; do
            cl_spawn "$m"
        done
        deadline=$((SECONDS + secs))
        busy=
        while :; do
            pending=
            for m in ${CL_MEMBERS[$c]}; do
                if ! cl_alive "$m"; then
                    if grep -q 'address already in use' "${CL_LOG[$m]}"; then
                        busy=$m
                        break 2
                    fi
                    cl_dump_logs "$c"
                    cl_fail "member $m (${CL_BIN[$m]}) exited before becoming ready"
                fi
                _cl_healthy "$m" || pending+=" $m"
            done
            [[ -n $pending ]] || return 0
            if ((SECONDS >= deadline)); then
                cl_dump_logs "$c"
                cl_fail "cluster $c: not ready after ${secs}s:$pending"
            fi
            sleep 0.2
        done
        # Another process took one of our ports: start over on fresh ones.
        cl_log "cluster $c: $busy lost its port, retrying on fresh ports"
        for m in ${CL_MEMBERS[$c]}; do
            cl_kill "$m"
            rm -rf "${CL_DIR[$m]}"
            printf '==== retry on fresh ports\n' >>"${CL_LOG[$m]}"
        done
        _cl_assign_ports "$c"
    done
    cl_fail "cluster $c: could not get free ports"
}

# cl_status_json M: `endpoint status -w json` of M (empty if no answer).
cl_status_json() {
    cl_ectl "$1" --dial-timeout=1s --command-timeout=2s endpoint status \
        -w json 2>/dev/null || true
}

cl_status_field() {
    "$CL_PYTHON" "$CL_LOAD" status-field "$2" "$(cl_status_json "$1")"
}

# cl_leader C [SECS]: the name of the leader all running members (that
# answer) agree on, and which itself runs and says it leads.
cl_leader() {
    local c=$1 secs=${2:-15} deadline m js args
    deadline=$((SECONDS + secs))
    while :; do
        args=()
        for m in ${CL_MEMBERS[$c]}; do
            cl_alive "$m" || continue
            js=$(cl_status_json "$m")
            [[ -n $js ]] && args+=("$m" "$js")
        done
        if ((${#args[@]} > 0)) &&
            "$CL_PYTHON" "$CL_LOAD" leader "${args[@]}"; then
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    cl_fail "cluster $c: no agreed leader after ${secs}s"
}

cl_followers() {
    local c=$1 leader m
    leader=$(cl_leader "$c") || exit 1
    for m in ${CL_MEMBERS[$c]}; do
        [[ $m == "$leader" ]] || ! cl_alive "$m" || printf '%s\n' "$m"
    done
}

cl_follower() {
    local f
    mapfile -t f < <(cl_followers "$1")
    ((${#f[@]} > 0)) || cl_fail "cluster $1: no running follower"
    printf '%s\n' "${f[0]}"
}

# cl_revision M: the store revision as a linearizable read on M sees it.
cl_revision() {
    cl_ectl "$1" --command-timeout=10s get cl-revision-probe -w json |
        "$CL_PYTHON" "$CL_LOAD" json-field revision
}

# cl_hashkv_check REV M...: HashKV at REV on every member must agree.
cl_hashkv_check() {
    local rev=$1 m js args=()
    shift
    for m in "$@"; do
        js=$(cl_ectl "$m" --command-timeout=20s endpoint hashkv \
            --rev="$rev" -w json 2>&1) || js="ERROR: $js"
        args+=("$m" "$js")
    done
    "$CL_PYTHON" "$CL_LOAD" hashkv-compare "$rev" "${args[@]}"
}

# cl_problems C: sanitizer reports (ASan, LSan, UBSan) in members' logs.
cl_problems() {
    local m pat rc=0
    pat='ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|: runtime error: '
    for m in ${CL_MEMBERS[$1]}; do
        grep -qE "$pat" "${CL_LOG[$m]}" 2>/dev/null || continue
        printf -- '---- sanitizer report in %s ----\n' "${CL_LOG[$m]}" >&2
        grep -E -A12 "$pat" "${CL_LOG[$m]}" | awk 'NR <= 60' >&2
        rc=1
    done
    return $rc
}
