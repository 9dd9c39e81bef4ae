# shellcheck shell=bash
# tests/integration/lib.sh: helpers shared by the black-box tests.
#
# Source it from a test script, then call ik_init first:
#
#   . "$(dirname "$0")/lib.sh"
#   ik_init
#
# What it gives:
#   ik_init                  skip (exit 77) unless etcd, etcdctl and python3
#                            are there; make $IK_TMP; install the cleanup
#                            trap (it ends the script's background jobs and
#                            servers and removes $IK_TMP on every exit path)
#   ik_sut_binary            path of the server under test (see below)
#   ik_free_ports N          print N distinct free loopback TCP ports
#   ik_server_start NAME BIN [FLAG...]
#                            start BIN as a single-member cluster on fresh
#                            ports with data dir $IK_TMP/NAME.data; FLAGs are
#                            appended to the standard etcd flags
#   ik_server_wait_ready NAME [SECONDS]
#                            poll `etcdctl endpoint health` until it answers;
#                            on failure print the server log and exit 1 (a
#                            first start that lost its port to someone else
#                            is retried on fresh ports)
#   ik_server_kill NAME      kill -9 and reap
#   ik_server_stop NAME      SIGTERM, wait (10 s), then kill -9
#   ik_server_restart NAME   start again with the same flags and data dir
#   ik_server_alive NAME     true while the process runs
#   ik_sanitizer_report FILE print sanitizer reports found in FILE, 1 if any
#   ik_server_problems NAME  the same for NAME's log
#   ik_clean_exit_status RC  true for 0 and 143 (clean exit on SIGTERM)
#   ik_server_url NAME       its client endpoint, 127.0.0.1:PORT
#   ik_server_ids NAME       "MEMBER_ID CLUSTER_ID" (decimal) it reports
#   ectl NAME ARGS...        ETCDCTL_API=3 etcdctl --endpoints=<NAME's url>
#   ik_subshell_init         first call in a background subshell that
#                            starts servers of its own
#   ik_fail MSG / ik_skip MSG
#
# Clusters: a cluster C of N members is N servers C-1..C-N in the tables
# above (so ectl, ik_server_alive, ik_server_stop... work on each member),
# started with etcd's own flags, identical for every binary; each member's
# etcd --name is ik-member-K.
#   ik_cluster_start C N BIN [FLAG...]
#                            start the N members on fresh ports (FLAGs go to
#                            every member), wait until each answers
#                            `endpoint health`; a start that lost a port to
#                            another process is retried on fresh ports
#   ik_cluster_members C     the members' server names, one a line
#   ik_cluster_alive C       true while every member runs
#   ik_cluster_leader C [SECS]
#                            the server name of the leader every member
#                            agrees on (and which says it leads); fails the
#                            test if there is none within SECS (default 15)
#   ik_status NAME           "MEMBER_ID LEADER_ID RAFT_TERM CLUSTER_ID"
#                            (decimal) from NAME's `endpoint status`; "0 0 0
#                            0" when it does not answer
#   ik_dump_cluster_logs C   ik_dump_log of every member
#
# The server under test is $top_builddir/ikada, unless IKADA_TEST_SERVER is
# set: "etcd" means /usr/bin/etcd (used to validate these scripts: etcd
# against etcd must show no difference), any other value is taken as the
# path of the binary to test.
#
# Set IK_KEEP_TMP=1 to keep the temp dir (logs, transcripts) for inspection.

IK_ETCD=${IK_ETCD:-/usr/bin/etcd}
IK_ETCDCTL=${IK_ETCDCTL:-/usr/bin/etcdctl}
IK_PYTHON=${IK_PYTHON:-/usr/bin/python3}
IK_HOST=127.0.0.1
IK_MEMBER=${IK_MEMBER:-node1}
IK_CLUSTER_TOKEN=${IK_CLUSTER_TOKEN:-ikada-test}

# shellcheck disable=SC2034 # used by the scripts that source this file
IK_LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

declare -A IK_BIN=() IK_PID=() IK_DIR=() IK_CPORT=() IK_PPORT=() IK_LOG=()
declare -A IK_ARGS=() IK_STARTS=()
# cluster members: IK_OF[server] = its cluster, IK_NAME[server] = its
# --name; IK_MEMBERS[cluster] = its servers, IK_TOKEN[cluster]
declare -A IK_OF=() IK_NAME=() IK_MEMBERS=() IK_TOKEN=()
IK_TMP=
IK_LAST_RC=0

ik_log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

ik_skip() {
    printf 'SKIP: %s: %s\n' "${0##*/}" "$*" >&2
    exit 77
}

ik_fail() {
    printf 'FAIL: %s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# Kill the servers this shell started.
_ik_kill_own_servers() {
    local name pid
    for name in "${!IK_PID[@]}"; do
        pid=${IK_PID[$name]}
        [[ -n $pid ]] || continue
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        IK_PID[$name]=
    done
}

# Kill every server this test started, in this shell or in a subshell:
# _ik_spawn lists each PID in $IK_TMP/.pids; a PID is only killed while its
# command line still names our temp dir (so a recycled PID is left alone).
_ik_kill_all_servers() {
    local pid
    _ik_kill_own_servers
    [[ -n $IK_TMP && -f $IK_TMP/.pids ]] || return 0
    while read -r pid; do
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" |
            grep -qF -- "$IK_TMP/"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done <"$IK_TMP/.pids"
}

# On exit: end this shell's background jobs (TERM, then KILL after 3 s),
# kill every server, remove the temp dir.
ik_cleanup() {
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
    _ik_kill_all_servers
    if [[ -n $IK_TMP && -d $IK_TMP ]]; then
        if [[ ${IK_KEEP_TMP:-0} == 1 ]]; then
            ik_log "kept temp dir $IK_TMP"
        else
            rm -rf "$IK_TMP"
        fi
    fi
    exit "$rc"
}

_ik_sub_exit() {
    _ik_kill_own_servers
    exit "$1"
}

# ik_subshell_init: call first thing in a `( ... ) &` subshell that starts
# servers: on exit it kills them (the parent's trap also would, later).
ik_subshell_init() {
    trap '_ik_sub_exit $?' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
}

ik_init() {
    [[ -x $IK_ETCD ]] || ik_skip "$IK_ETCD not found (reference etcd needed)"
    [[ -x $IK_ETCDCTL ]] || ik_skip "$IK_ETCDCTL not found"
    [[ -x $IK_PYTHON ]] || ik_skip "$IK_PYTHON not found"
    command -v timeout >/dev/null || ik_skip "timeout(1) not found"
    IK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ikada-it.XXXXXX")
    trap ik_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

ik_sut_binary() {
    local sut=${IKADA_TEST_SERVER:-}
    if [[ $sut == etcd ]]; then
        printf '%s\n' "$IK_ETCD"
        return 0
    fi
    if [[ -z $sut ]]; then
        [[ -n ${top_builddir:-} ]] ||
            ik_skip "top_builddir is not set (run via make check, or set IKADA_TEST_SERVER)"
        sut=$top_builddir/ikada
    fi
    [[ -x $sut ]] || ik_skip "server under test $sut is not built"
    printf '%s\n' "$sut"
}

# ik_free_ports N: asks the kernel for N ephemeral ports, holding all the
# sockets at once so the N ports are distinct.
ik_free_ports() {
    "$IK_PYTHON" - "$1" <<'EOF'
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

# ik_server_flags NAME: the etcd flags every server gets, one per line.
ik_server_flags() {
    local name=$1 c=${IK_CPORT[$1]} p=${IK_PPORT[$1]}
    if [[ -n ${IK_OF[$name]:-} ]]; then
        _ik_member_flags "$name"
        return
    fi
    printf '%s\n' \
        "--name=$IK_MEMBER" \
        "--data-dir=${IK_DIR[$name]}" \
        "--listen-client-urls=http://$IK_HOST:$c" \
        "--advertise-client-urls=http://$IK_HOST:$c" \
        "--listen-peer-urls=http://$IK_HOST:$p" \
        "--initial-advertise-peer-urls=http://$IK_HOST:$p" \
        "--initial-cluster=$IK_MEMBER=http://$IK_HOST:$p" \
        "--initial-cluster-token=$IK_CLUSTER_TOKEN" \
        "--initial-cluster-state=new"
}

_ik_spawn() {
    local name=$1 flags extra
    mapfile -t flags < <(ik_server_flags "$name")
    eval "extra=(${IK_ARGS[$name]})"
    printf '==== %s: start %s %s\n' "$(date +%T.%N)" "${IK_BIN[$name]}" \
        "${flags[*]} ${extra[*]}" >>"${IK_LOG[$name]}"
    "${IK_BIN[$name]}" "${flags[@]}" "${extra[@]}" \
        </dev/null >>"${IK_LOG[$name]}" 2>&1 &
    IK_PID[$name]=$!
    printf '%s\n' "$!" >>"$IK_TMP/.pids"
}

ik_server_start() {
    local name=$1 bin=$2 ports
    shift 2
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || ik_fail "bad server name '$name'"
    [[ -z ${IK_PID[$name]:-} ]] || ik_fail "server $name already started"
    read -r -a ports < <(ik_free_ports 2)
    IK_BIN[$name]=$bin
    IK_CPORT[$name]=${ports[0]}
    IK_PPORT[$name]=${ports[1]}
    IK_DIR[$name]=$IK_TMP/$name.data
    IK_LOG[$name]=$IK_TMP/$name.log
    IK_ARGS[$name]=
    (($# == 0)) || IK_ARGS[$name]=$(printf '%q ' "$@")
    IK_STARTS[$name]=1
    _ik_spawn "$name"
}

ik_server_alive() {
    local pid=${IK_PID[$1]:-}
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

ik_server_url() {
    printf '%s:%s\n' "$IK_HOST" "${IK_CPORT[$1]}"
}

ectl() {
    local name=$1
    shift
    ETCDCTL_API=3 "$IK_ETCDCTL" --endpoints="$IK_HOST:${IK_CPORT[$name]}" "$@"
}

ik_dump_log() {
    local name=$1
    printf -- '---- last 60 lines of %s log (%s) ----\n' "$name" \
        "${IK_LOG[$name]}" >&2
    tail -n 60 "${IK_LOG[$name]}" >&2 || true
    printf -- '---- end of %s log ----\n' "$name" >&2
}

# Reap a dead server; its exit status goes to IK_LAST_RC.
_ik_reap() {
    local name=$1 pid=${IK_PID[$1]}
    IK_LAST_RC=0
    wait "$pid" 2>/dev/null || IK_LAST_RC=$?
    IK_PID[$name]=
}

ik_server_wait_ready() {
    local name=$1 secs=${2:-30} deadline ports
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if ! ik_server_alive "$name"; then
            _ik_reap "$name"
            # The free ports found by ik_free_ports may be taken by someone
            # else before the server binds them: on a first start, retry
            # twice on fresh ports.
            if ((IK_STARTS[$name] < 3)) &&
                grep -q 'address already in use' "${IK_LOG[$name]}"; then
                read -r -a ports < <(ik_free_ports 2)
                IK_CPORT[$name]=${ports[0]}
                IK_PPORT[$name]=${ports[1]}
                IK_STARTS[$name]=$((IK_STARTS[$name] + 1))
                rm -rf "${IK_DIR[$name]}"
                _ik_spawn "$name"
                continue
            fi
            ik_dump_log "$name"
            ik_fail "server $name (${IK_BIN[$name]}) exited with status $IK_LAST_RC before becoming ready"
        fi
        if ectl "$name" --dial-timeout=1s --command-timeout=2s \
            endpoint health >/dev/null 2>&1; then
            IK_STARTS[$name]=3 # ports are ours now: no retry on restart
            return 0
        fi
        sleep 0.2
    done
    ik_dump_log "$name"
    ik_fail "server $name (${IK_BIN[$name]}) not ready after ${secs}s"
}

ik_server_kill() {
    local name=$1 pid=${IK_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    IK_PID[$name]=
    printf '==== %s: killed with SIGKILL\n' "$(date +%T.%N)" >>"${IK_LOG[$name]}"
}

# ik_server_stop NAME: graceful stop. Leaves the server's exit status in
# IK_LAST_RC (0 or 143 for a clean SIGTERM exit, 137 if it had to be
# killed); returns 0.
ik_server_stop() {
    local name=$1 pid=${IK_PID[$1]:-} i rc=0
    IK_LAST_RC=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        ik_log "server $name ignored SIGTERM for 10s, killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    IK_PID[$name]=
    IK_LAST_RC=$rc
    printf '==== %s: stopped, exit status %s\n' "$(date +%T.%N)" "$rc" \
        >>"${IK_LOG[$name]}"
}

# ik_sanitizer_report FILE: prints the sanitizer reports (ASan, LSan,
# UBSan) found in FILE and returns 1; returns 0 when there are none.
ik_sanitizer_report() {
    local pat
    pat='ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|: runtime error: '
    grep -qE "$pat" "$1" 2>/dev/null || return 0
    printf -- '---- sanitizer report in %s ----\n' "$1" >&2
    grep -E -A12 "$pat" "$1" | head -n 60 >&2
    return 1
}

# ik_server_problems NAME: ik_sanitizer_report on NAME's log.
ik_server_problems() {
    ik_sanitizer_report "${IK_LOG[$1]}"
}

# ik_clean_exit_status RC: true for the statuses of a clean exit on SIGTERM
# (etcd re-raises the signal: 143; a server may also exit 0).
ik_clean_exit_status() {
    [[ $1 == 0 || $1 == 143 ]]
}

ik_server_restart() {
    local name=$1
    [[ -z ${IK_PID[$name]:-} ]] || ik_fail "server $name is still running"
    _ik_spawn "$name"
}

# ik_server_ids NAME: prints "MEMBER_ID CLUSTER_ID" (decimal) as the server
# reports them in `endpoint status`, falling back to `member list`; prints
# "0 0" when neither answers (then nothing gets normalised).
ik_server_ids() {
    local name=$1 js
    js=$(ectl "$name" endpoint status -w json 2>/dev/null || true)
    [[ -n $js ]] || js=$(ectl "$name" member list -w json 2>/dev/null || true)
    "$IK_PYTHON" -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
    if isinstance(d, list):
        d = d[0]["Status"]
    h = d.get("header", {})
    print(h.get("member_id", 0), h.get("cluster_id", 0))
except Exception:
    print(0, 0)
' "$js"
}


# ------------------------------------------------------------- clusters

# The flags of cluster member NAME, one per line.
_ik_member_flags() {
    local name=$1 cl=${IK_OF[$1]} m initial=
    for m in ${IK_MEMBERS[$cl]}; do
        initial+="${initial:+,}${IK_NAME[$m]}=http://$IK_HOST:${IK_PPORT[$m]}"
    done
    printf '%s\n' \
        "--name=${IK_NAME[$name]}" \
        "--data-dir=${IK_DIR[$name]}" \
        "--listen-client-urls=http://$IK_HOST:${IK_CPORT[$name]}" \
        "--advertise-client-urls=http://$IK_HOST:${IK_CPORT[$name]}" \
        "--listen-peer-urls=http://$IK_HOST:${IK_PPORT[$name]}" \
        "--initial-advertise-peer-urls=http://$IK_HOST:${IK_PPORT[$name]}" \
        "--initial-cluster=$initial" \
        "--initial-cluster-token=${IK_TOKEN[$cl]}" \
        "--initial-cluster-state=new"
}

_ik_cluster_ports() {
    local cl=$1 m ports i=0
    read -r -a ports < <(ik_free_ports $((2 * $(wc -w <<<"${IK_MEMBERS[$cl]}"))))
    for m in ${IK_MEMBERS[$cl]}; do
        IK_CPORT[$m]=${ports[$i]}
        IK_PPORT[$m]=${ports[$((i + 1))]}
        i=$((i + 2))
    done
}

ik_cluster_members() {
    # shellcheck disable=SC2086 # server names are single words
    printf '%s\n' ${IK_MEMBERS[$1]}
}

ik_cluster_alive() {
    local m
    for m in ${IK_MEMBERS[$1]}; do
        ik_server_alive "$m" || return 1
    done
}

ik_dump_cluster_logs() {
    local m
    for m in ${IK_MEMBERS[$1]}; do
        ik_dump_log "$m"
    done
}

_ik_healthy() {
    ectl "$1" --dial-timeout=1s --command-timeout=2s endpoint health \
        >/dev/null 2>&1
}

ik_cluster_start() {
    local cl=$1 n=$2 bin=$3 i m members="" attempt deadline pending busy
    shift 3
    [[ $cl =~ ^[A-Za-z0-9_-]+$ ]] || ik_fail "bad cluster name '$cl'"
    [[ -z ${IK_MEMBERS[$cl]:-} ]] || ik_fail "cluster $cl already exists"
    ((n >= 1)) || ik_fail "cluster $cl: bad member count '$n'"
    for ((i = 1; i <= n; i++)); do
        m=$cl-$i
        [[ -z ${IK_PID[$m]:-} ]] || ik_fail "server $m already started"
        members+="${members:+ }$m"
        IK_BIN[$m]=$bin
        IK_DIR[$m]=$IK_TMP/$m.data
        IK_LOG[$m]=$IK_TMP/$m.log
        IK_OF[$m]=$cl
        IK_NAME[$m]=ik-member-$i
        IK_ARGS[$m]=
        (($# == 0)) || IK_ARGS[$m]=$(printf '%q ' "$@")
        IK_STARTS[$m]=3 # the per-server port retry does not apply
    done
    IK_MEMBERS[$cl]=$members
    # A token of its own: a stray member of someone else's cluster that
    # reaches one of our recycled ports is then refused.
    IK_TOKEN[$cl]=$IK_CLUSTER_TOKEN-$cl-$$-$RANDOM
    _ik_cluster_ports "$cl"
    for ((attempt = 1; attempt <= 3; attempt++)); do
        for m in $members; do
            _ik_spawn "$m"
        done
        deadline=$((SECONDS + 30))
        busy=
        while :; do
            pending=
            for m in $members; do
                if ! ik_server_alive "$m"; then
                    if grep -q 'address already in use' "${IK_LOG[$m]}"; then
                        busy=$m
                        break 2
                    fi
                    _ik_reap "$m"
                    ik_dump_cluster_logs "$cl"
                    ik_fail "member $m (${IK_BIN[$m]}) exited with status $IK_LAST_RC before becoming ready"
                fi
                _ik_healthy "$m" || pending+=" $m"
            done
            [[ -n $pending ]] || return 0
            if ((SECONDS >= deadline)); then
                ik_dump_cluster_logs "$cl"
                ik_fail "cluster $cl (${bin}) not ready after 30s:$pending"
            fi
            sleep 0.2
        done
        # Another process took one of our ports: start over on fresh ones.
        ik_log "cluster $cl: $busy lost its port, retrying on fresh ports"
        for m in $members; do
            ik_server_kill "$m"
            rm -rf "${IK_DIR[$m]}"
            printf '==== retry on fresh ports\n' >>"${IK_LOG[$m]}"
        done
        _ik_cluster_ports "$cl"
    done
    ik_fail "cluster $cl: could not get free ports"
}

ik_status() {
    local js
    js=$(ectl "$1" --dial-timeout=1s --command-timeout=2s endpoint status \
        -w json 2>/dev/null || true)
    "$IK_PYTHON" -c '
import json, sys
try:
    d = json.loads(sys.argv[1])[0]["Status"]
    h = d["header"]
    print(h.get("member_id", 0), d.get("leader", 0), d.get("raftTerm", 0),
          h.get("cluster_id", 0))
except Exception:
    print(0, 0, 0, 0)
' "$js"
}

ik_cluster_leader() {
    local cl=$1 secs=${2:-15} deadline m st leaders lid
    local -A ids=()
    deadline=$((SECONDS + secs))
    while :; do
        ids=()
        leaders=
        for m in ${IK_MEMBERS[$cl]}; do
            read -r -a st < <(ik_status "$m")
            ((st[0] != 0)) || continue
            ids[${st[0]}]=$m
            leaders+=" ${st[1]}"
        done
        # one leader, named by every member, which answered as itself
        lid=$(tr ' ' '\n' <<<"$leaders" | sort -u | grep . || true)
        if ((${#ids[@]} == $(wc -w <<<"${IK_MEMBERS[$cl]}"))) &&
            [[ $lid =~ ^[1-9][0-9]*$ && -n ${ids[$lid]:-} ]]; then
            printf '%s\n' "${ids[$lid]}"
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    ik_fail "cluster $cl: no agreed leader after ${secs}s"
}
