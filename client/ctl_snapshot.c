/* ctl_snapshot.c: ikadactl's snapshot commands (save, status, restore), as
 * etcdctl 3.4 runs them (etcdctl/ctlv3/command/snapshot_command.go and
 * clientv3/snapshot). The file format, status and restore logic are in
 * snapshot/snapfile.h; this file is the command line, the Snapshot stream
 * and the output. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "client/ctl.h"
#include "client/grpc_client.h"
#include "client/grpc_client_uv.h"
#include "server/errors.h"
#include "snapshot/snapfile.h"

#define SNAPSHOT_PATH "/etcdserverpb.Maintenance/Snapshot"
/* The stack etcdctl 3.4's zap logger prints with that error (fixed: the
 * same call path every time). */
#define SNAPSHOT_STACK                                                        \
    "go.etcd.io/etcd/clientv3.(*Client).streamClientInterceptor.func1\n"      \
    "\tgo.etcd.io/etcd/clientv3/retry_interceptor.go:129\n"                   \
    "google.golang.org/grpc.(*ClientConn).NewStream\n"                        \
    "\tgoogle.golang.org/grpc/stream.go:148\n"                                \
    "google.golang.org/grpc.NewClientStream\n"                                \
    "\tgoogle.golang.org/grpc/stream.go:155\n"                                \
    "go.etcd.io/etcd/etcdserver/etcdserverpb.(*maintenanceClient).Snapshot\n" \
    "\tgo.etcd.io/etcd/etcdserver/etcdserverpb/rpc.pb.go:4296\n"              \
    "go.etcd.io/etcd/clientv3.(*retryMaintenanceClient).Snapshot\n"           \
    "\tgo.etcd.io/etcd/clientv3/retry.go:214\n"                               \
    "go.etcd.io/etcd/clientv3.(*maintenance).Snapshot\n"                      \
    "\tgo.etcd.io/etcd/clientv3/maintenance.go:195\n"                         \
    "go.etcd.io/etcd/clientv3/snapshot.(*v3Manager).Save\n"                   \
    "\tgo.etcd.io/etcd/clientv3/snapshot/v3_snapshot.go:123\n"                \
    "go.etcd.io/etcd/etcdctl/ctlv3/command.snapshotSaveCommandFunc\n"         \
    "\tgo.etcd.io/etcd/etcdctl/ctlv3/command/snapshot_command.go:113\n"       \
    "github.com/spf13/cobra.(*Command).execute\n"                             \
    "\tgithub.com/spf13/cobra/command.go:920\n"                               \
    "github.com/spf13/cobra.(*Command).ExecuteC\n"                            \
    "\tgithub.com/spf13/cobra/command.go:1044\n"                              \
    "github.com/spf13/cobra.(*Command).Execute\n"                             \
    "\tgithub.com/spf13/cobra/command.go:968\n"                               \
    "go.etcd.io/etcd/etcdctl/ctlv3.Start\n"                                   \
    "\tgo.etcd.io/etcd/etcdctl/ctlv3/ctl_nocov.go:26\n"                       \
    "main.main\n"                                                             \
    "\tgo.etcd.io/etcd/etcdctl/main.go:35\n"                                  \
    "runtime.main\n"                                                          \
    "\truntime/proc.go:250"
/* grpc-go's reconnect backoff (base 1 s, x1.6, max 120 s). */
#define BACKOFF_BASE_MS 1000
#define BACKOFF_MAX_MS 120000

/* ---- zap log lines ------------------------------------------------------ */

/* zap.NewProduction's epoch timestamp ("ts":1795304872.211434). */

/* Go's text of an errno (syscall.Errno.Error(): lower case). */
static const char *go_strerror(int e)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) {
        buf[0] = (char)(buf[0] - 'A' + 'a');
    }
    return buf;
}

static void ts_epoch(char *buf, size_t size)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(buf, size, "%lld.%06ld", (long long)tv.tv_sec, (long)tv.tv_usec);
    /* Go prints the shortest form: no trailing zeros. */
    for (size_t n = strlen(buf); n > 0 && buf[n - 1] == '0'; n--) {
        buf[n - 1] = '\0';
    }
}

/* clientv3's logger timestamp ("ts":"2026-11-21T23:47:52.212Z"). */
static void ts_iso(char *buf, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, size, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

/* One info line: @fields is the already-encoded tail (",\"k\":v..."). */
static void zlog(struct ctl *ctl, bool iso, const char *level,
                 const char *caller, const char *msg, const char *fields)
{
    char ts[64];
    if (iso) {
        ts_iso(ts, sizeof ts);
    } else {
        ts_epoch(ts, sizeof ts);
    }
    fprintf(ctl->err,
            "{\"level\":\"%s\",\"ts\":%s,\"caller\":\"%s\",\"msg\":\"%s\"%s}\n",
            level, ts, caller, msg, fields != NULL ? fields : "");
    fflush(ctl->err);
}

/* ",\"key\":<json string>" into @buf (appended). */
static void field_str(char *buf, size_t size, const char *key, const char *val)
{
    char *q = ctl_json_quote((const uint8_t *)val, strlen(val));
    size_t off = strlen(buf);
    snprintf(buf + off, size - off, ",\"%s\":%s", key, q ? q : "\"\"");
    free(q);
}

/* go-humanize's Bytes (SI units): "20 kB", "2.1 MB", "7 B". */
static void humanize_bytes(uint64_t s, char *buf, size_t size)
{
    static const char *const sizes[] = {"B",  "kB", "MB", "GB",
                                        "TB", "PB", "EB"};
    double val, e;
    if (s < 10) {
        snprintf(buf, size, "%" PRIu64 " B", s);
        return;
    }
    e = floor(log((double)s) / log(1000.0));
    val = floor((double)s / pow(1000.0, e) * 10 + 0.5) / 10;
    snprintf(buf, size, val < 10 ? "%.1f %s" : "%.0f %s", val, sizes[(int)e]);
}

/* Go's error text of a gRPC status as clientv3 returns it from the
 * snapshot reader (toErr: etcd errors by their message, a deadline of the
 * caller's context as "context deadline exceeded"). */
static const char *code_name(int code)
{
    const char *name = ikclient_code_name(code);
    return name != NULL ? name : "Unknown";
}

static void status_text(int code, const char *message, bool ctx_expired,
                        char *buf, size_t size)
{
    if (strncmp(message, "etcdserver:", 11) == 0) {
        snprintf(buf, size, "%s", message);
    } else if (ctx_expired &&
               (code == GRPC_DEADLINE_EXCEEDED || code == GRPC_CANCELLED)) {
        snprintf(buf, size, "context deadline exceeded");
    } else {
        snprintf(buf, size, "rpc error: code = %s desc = %s", code_name(code),
                 message);
    }
}

/* ---- snapshot save ------------------------------------------------------ */

struct save {
    struct ctl *ctl;
    uv_loop_t loop;
    struct grpc_client_uv client;
    struct grpc_client_call *call;
    uv_timer_t retry;
    uv_timer_t deadline;
    uint64_t timeout_ms; /* 0: none */
    uint64_t deadline_at;
    uint64_t backoff_ms;
    const char *endpoint; /* as given */
    char *token;          /* auth token, NULL: none */
    int fd;
    const char *part;
    uint64_t size;
    bool opened; /* first message seen */
    bool done;
    bool expired;
    int status; /* gRPC status of the end */
    char message[600];
    int write_errno;
};

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void save_start(struct save *s);

/* The stream is open: clientv3 logs it, then etcdctl starts copying. */
static void save_opened(struct save *s)
{
    char fields[5000] = "";
    zlog(s->ctl, true, "info", "clientv3/maintenance.go:200",
         "opened snapshot stream; downloading", NULL);
    field_str(fields, sizeof fields, "endpoint", s->endpoint);
    zlog(s->ctl, false, "info", "snapshot/v3_snapshot.go:127",
         "fetching snapshot", fields);
}

static void save_on_message(struct grpc_client_call *call, const uint8_t *data,
                            size_t len)
{
    struct save *s = grpc_client_call_data(call);
    Etcdserverpb__SnapshotResponse *r;

    if (!s->opened) {
        s->opened = true;
        save_opened(s);
    }
    if (s->write_errno != 0) {
        return;
    }
    r = etcdserverpb__snapshot_response__unpack(NULL, len, data);
    if (r == NULL) {
        s->write_errno = EPROTO;
        return;
    }
    for (size_t off = 0; off < r->blob.len;) {
        ssize_t n = write(s->fd, r->blob.data + off, r->blob.len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            s->write_errno = errno;
            break;
        }
        off += (size_t)n;
    }
    s->size += r->blob.len;
    etcdserverpb__snapshot_response__free_unpacked(r, NULL);
}

static void retry_cb(uv_timer_t *t)
{
    save_start(t->data);
}

static void save_on_close(struct grpc_client_call *call, int status,
                          const char *message)
{
    struct save *s = grpc_client_call_data(call);
    s->call = NULL;
    if (!s->opened && s->timeout_ms > 0 && mono_ms() + 5 >= s->deadline_at) {
        /* the caller's context ran out while waiting for the endpoint */
        s->expired = true;
        status = GRPC_DEADLINE_EXCEEDED;
        message = "context deadline exceeded";
    }
    /* WaitForReady: a stream that never got an answer because the
     * endpoint cannot be reached is retried until the deadline. */
    if (status == GRPC_UNAVAILABLE && !s->opened && !s->expired) {
        uint64_t wait = s->backoff_ms;
        s->backoff_ms = s->backoff_ms * 8 / 5;
        if (s->backoff_ms > BACKOFF_MAX_MS) {
            s->backoff_ms = BACKOFF_MAX_MS;
        }
        uv_timer_start(&s->retry, retry_cb, wait, 0);
        return;
    }
    s->status = status;
    snprintf(s->message, sizeof s->message, "%s", message);
    s->done = true;
    uv_stop(&s->loop);
}

static void save_start(struct save *s)
{
    static const struct grpc_client_call_cbs cbs = {
        .on_message = save_on_message,
        .on_close = save_on_close,
    };
    Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
    struct grpc_client_conn *conn = grpc_client_uv_conn(&s->client);
    uint64_t left = 0;
    int rv;
    struct grpc_client_md md[1] = {{"token", s->token}};

    if (s->timeout_ms > 0) {
        uint64_t now = mono_ms();
        left = s->deadline_at > now ? s->deadline_at - now : 1;
    }
    rv = conn == NULL
             ? IK_ENOMEM
             : grpc_client_call_start(conn, SNAPSHOT_PATH, left, md,
                                      s->token ? 1 : 0, &cbs, s, &s->call);
    if (rv == 0) {
        rv = grpc_client_call_send_proto(s->call, &req.base);
        if (rv == 0) {
            rv = grpc_client_call_close_send(s->call);
        }
        if (rv != 0) {
            grpc_client_call_cancel(s->call);
            s->call = NULL;
        }
    }
    if (rv != 0) {
        s->status = GRPC_INTERNAL;
        snprintf(s->message, sizeof s->message, "%s", ik_strerror(rv));
        s->done = true;
        uv_stop(&s->loop);
    }
}

static void deadline_cb(uv_timer_t *t)
{
    struct save *s = t->data;
    s->expired = true;
    if (s->call != NULL) {
        grpc_client_call_cancel(s->call);
        s->call = NULL;
    }
    s->status = GRPC_DEADLINE_EXCEEDED;
    snprintf(s->message, sizeof s->message, "context deadline exceeded");
    s->done = true;
    uv_stop(&s->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Split "host:port" / "[v6]:port" (scheme already stripped). */
static int split_hostport(const char *ep, char *host, size_t size,
                          uint16_t *port)
{
    const char *colon;
    const char *p = strstr(ep, "://");
    unsigned long v;
    char *end;

    p = p != NULL ? p + 3 : ep;
    if (p[0] == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        snprintf(host, size, "%.*s", (int)(close - p - 1), p + 1);
        colon = close + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL) {
            return -1;
        }
        snprintf(host, size, "%.*s", (int)(colon - p), p);
    }
    v = strtoul(colon + 1, &end, 10);
    if (*end != '\0' && *end != '/') {
        return -1;
    }
    if (v == 0 || v > 65535) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

/* Fetch the snapshot into s->part; 0 or the exit code after printing. */
static int save_fetch(struct save *s)
{
    struct grpc_client_config gcfg = {0};
    char host[300];
    uint16_t port = 0;
    int rv;

    if (split_hostport(s->endpoint, host, sizeof host, &port) != 0) {
        return ctl_fail(s->ctl, CTL_EXIT_INTERRUPTED,
                        "dial tcp: address %s: missing port in address",
                        s->endpoint);
    }
    uv_loop_init(&s->loop);
    gcfg.user_agent = "etcdctl";
    gcfg.max_recv_msg_size = INT32_MAX;
    rv = grpc_client_uv_init(&s->client, &s->loop, host, port, &gcfg);
    if (rv != 0) {
        uv_loop_close(&s->loop);
        return ctl_fail(s->ctl, CTL_EXIT_INTERRUPTED, "%s", ik_strerror(rv));
    }
    uv_timer_init(&s->loop, &s->retry);
    s->retry.data = s;
    uv_timer_init(&s->loop, &s->deadline);
    s->deadline.data = s;
    s->backoff_ms = BACKOFF_BASE_MS;
    if (s->timeout_ms > 0) {
        s->deadline_at = mono_ms() + s->timeout_ms;
        uv_timer_start(&s->deadline, deadline_cb, s->timeout_ms, 0);
    }
    save_start(s);
    while (!s->done) {
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
    if (s->call != NULL) {
        grpc_client_call_cancel(s->call);
        s->call = NULL;
    }
    grpc_client_uv_close(&s->client, NULL);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);

    if (s->status == GRPC_OK && s->write_errno != 0) {
        return ctl_fail(s->ctl, CTL_EXIT_INTERRUPTED, "write %s: %s", s->part,
                        go_strerror(s->write_errno));
    }
    if (s->status != GRPC_OK) {
        char text[800];
        char fields[4000] = "";
        status_text(s->status, s->message, s->expired, text, sizeof text);
        if (!s->opened && s->expired) {
            /* no connection before the deadline: clientv3's stream
             * interceptor logs the failed stream creation */
            field_str(fields, sizeof fields, "error",
                      "rpc error: code = DeadlineExceeded desc = latest "
                      "balancer error: all SubConns are in TransientFailure");
            field_str(fields, sizeof fields, "stacktrace", SNAPSHOT_STACK);
            zlog(s->ctl, true, "error", "clientv3/retry_interceptor.go:129",
                 "streamer failed to create ClientStream", fields);
            fields[0] = '\0';
        }
        if (!s->opened && !s->expired && s->status != GRPC_UNAVAILABLE) {
            /* a server answered (e.g. an auth error): grpc-go had handed
             * clientv3 the stream already, so it logged it as opened and
             * the error came from the first Recv */
            save_opened(s);
            s->opened = true;
        }
        if (s->opened) {
            field_str(fields, sizeof fields, "error", text);
            zlog(s->ctl, true, "warn", "clientv3/maintenance.go:210",
                 "failed to receive from snapshot stream; closing", fields);
        }
        return ctl_fail(s->ctl, CTL_EXIT_INTERRUPTED, "%s", text);
    }
    if (!s->opened) {
        save_opened(s);
    }
    zlog(s->ctl, true, "info", "clientv3/maintenance.go:208",
         "completed snapshot read; closing", NULL);
    return 0;
}

static int snapshot_save(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    struct save s;
    char part[4200], fields[5000];
    const char *path;
    uint64_t t0;
    int nargs = 0, rc;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0) {
        return rc;
    }
    if (nargs != 1) {
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "snapshot save expects one argument");
    }
    path = argv[0];
    /* mustClientCfgFromCmd: ETCDCTL_*, TLS, credentials, -w; no client */
    rc = ctl_prepare(ctl);
    if (rc >= 0) {
        return rc;
    }
    if (ctl->g.n_endpoints != 1) {
        char list[2000] = "[";
        for (size_t i = 0; i < ctl->g.n_endpoints; i++) {
            size_t off = strlen(list);
            snprintf(list + off, sizeof list - off, "%s%s", i ? " " : "",
                     ctl->g.endpoints[i]);
        }
        strncat(list, "]", sizeof list - strlen(list) - 1);
        return ctl_fail(ctl, CTL_EXIT_INTERRUPTED,
                        "snapshot must be requested to one selected node, "
                        "not multiple %s",
                        list);
    }
    memset(&s, 0, sizeof s);
    s.ctl = ctl;
    s.endpoint = ctl->g.endpoints[0];
    /* bounded only when --command-timeout / ETCDCTL_COMMAND_TIMEOUT was
     * given (isCommandTimeoutFlagSet) */
    s.timeout_ms = ctl_global_given(ctl, "command-timeout")
                       ? ctl->g.command_timeout_ms
                       : 0;
    /* clientv3.New in Save authenticates; its failure is Save's error */
    struct ikclient *ac = NULL;
    {
        struct ikclient_config cfg;
        char errmsg[512] = "";
        ctl_client_config(ctl, &cfg);
        if (cfg.user != NULL) {
            if (ikclient_new(&cfg, &ac, errmsg, sizeof errmsg) != 0) {
                return ctl_fail(ctl, CTL_EXIT_INTERRUPTED, "%s", errmsg);
            }
            char *e = ctl_client_auth(ctl, ac);
            if (e != NULL) {
                ikclient_free(ac);
                ctl_fail(ctl, CTL_EXIT_INTERRUPTED, "%s", e);
                free(e);
                return CTL_EXIT_INTERRUPTED;
            }
        }
    }
    snprintf(part, sizeof part, "%s.part", path);
    s.part = part;
    s.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s.fd < 0) {
        ikclient_free(ac);
        return ctl_fail(ctl, CTL_EXIT_INTERRUPTED,
                        "could not open %s (open %s: %s)", part, part,
                        go_strerror(errno));
    }
    fields[0] = '\0';
    field_str(fields, sizeof fields, "path", part);
    zlog(ctl, false, "info", "snapshot/v3_snapshot.go:119",
         "created temporary db file", fields);
    if (ac != NULL) {
        /* the Snapshot stream authenticates again (clientv3's stream
         * interceptor); the token it gets is the one sent */
        ctl_stream_auth(ctl, ac, CTL_STREAM_SNAPSHOT);
        if (ikclient_token(ac) != NULL) {
            s.token = strdup(ikclient_token(ac));
        }
        ikclient_free(ac);
        ac = NULL;
    }
    t0 = uv_hrtime();
    rc = save_fetch(&s);
    free(s.token);
    s.token = NULL;
    if (rc == 0 && s.size % 512 != 32) {
        rc = ctl_fail(ctl, CTL_EXIT_INTERRUPTED,
                      "sha256 checksum not found [bytes: %" PRIu64 "]", s.size);
    }
    if (rc == 0 && fsync(s.fd) != 0) {
        rc = ctl_fail(ctl, CTL_EXIT_INTERRUPTED, "sync %s: %s", part,
                      go_strerror(errno));
    }
    if (close(s.fd) != 0 && rc == 0) {
        rc = ctl_fail(ctl, CTL_EXIT_INTERRUPTED, "close %s: %s", part,
                      go_strerror(errno));
    }
    if (rc == 0) {
        char size[32], took[64];
        double secs = (double)(uv_hrtime() - t0) / 1e9;
        humanize_bytes(s.size, size, sizeof size);
        snprintf(took, sizeof took, "%.9f", secs);
        for (size_t n = strlen(took); n > 0 && took[n - 1] == '0'; n--) {
            took[n - 1] = '\0';
        }
        fields[0] = '\0';
        field_str(fields, sizeof fields, "endpoint", s.endpoint);
        field_str(fields, sizeof fields, "size", size);
        snprintf(fields + strlen(fields), sizeof fields - strlen(fields),
                 ",\"took\":%s", took);
        zlog(ctl, false, "info", "snapshot/v3_snapshot.go:142",
             "fetched snapshot", fields);
        if (rename(part, path) != 0) {
            int e = errno;
            rc = ctl_fail(ctl, CTL_EXIT_INTERRUPTED,
                          "could not rename %s to %s (rename %s %s: %s)", part,
                          path, part, path, go_strerror(e));
        }
    }
    if (rc != 0) {
        unlink(part);
        return rc;
    }
    fields[0] = '\0';
    field_str(fields, sizeof fields, "path", path);
    zlog(ctl, false, "info", "snapshot/v3_snapshot.go:152", "saved", fields);
    fprintf(ctl->out, "Snapshot saved at %s\n", path);
    return CTL_EXIT_SUCCESS;
}

/* ---- snapshot status ---------------------------------------------------- */

/* -w as given on the command line: etcdctl's snapshot status reads the
 * flag (initDisplayFromCmd) without applying ETCDCTL_* first (only the
 * commands that make a client do), so ETCDCTL_WRITE_OUT is ignored here,
 * whatever its value. */
static const char *output_name(struct ctl *ctl)
{
    const char *w = ctl->g.write_out_name;
    return w != NULL ? w : "simple";
}

static int snapshot_status(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    char errmsg[SNAPFILE_ERRMSG_SIZE];
    struct snapfile_status st;
    const char *w;
    int nargs = 0, rc;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0) {
        return rc;
    }
    if (nargs != 1) {
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "snapshot status requires exactly one argument");
    }
    w = output_name(ctl);
    if (strcmp(w, "simple") != 0 && strcmp(w, "json") != 0 &&
        strcmp(w, "protobuf") != 0 && strcmp(w, "fields") != 0 &&
        strcmp(w, "table") != 0) {
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE, "unsupported output format");
    }
    if (access(argv[0], F_OK) != 0) {
        return ctl_fail(ctl, CTL_EXIT_ERROR, "stat %s: %s", argv[0],
                        go_strerror(errno));
    }
    if (snapfile_status(argv[0], &st, errmsg) != 0) {
        return ctl_fail(ctl, CTL_EXIT_ERROR, "%s", errmsg);
    }
    if (strcmp(w, "json") == 0) {
        fprintf(ctl->out,
                "{\"hash\":%" PRIu32 ",\"revision\":%" PRId64
                ",\"totalKey\":%" PRIu64 ",\"totalSize\":%" PRIu64 "}\n",
                st.hash, st.revision, st.total_keys, st.total_size);
    } else if (strcmp(w, "fields") == 0) {
        fprintf(ctl->out,
                "\"Hash\" : %" PRIu32 "\n\"Revision\" : %" PRId64
                "\n\"Keys\" : %" PRIu64 "\n\"Size\" : %" PRIu64 "\n",
                st.hash, st.revision, st.total_keys, st.total_size);
    } else if (strcmp(w, "protobuf") == 0) {
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                        "protobuf not supported as output format");
    } else {
        char hash[16], rev[32], keys[32], size[32];
        snprintf(hash, sizeof hash, "%" PRIx32, st.hash);
        snprintf(rev, sizeof rev, "%" PRId64, st.revision);
        snprintf(keys, sizeof keys, "%" PRIu64, st.total_keys);
        humanize_bytes(st.total_size, size, sizeof size);
        if (strcmp(w, "table") == 0) {
            static const char *const hdr[] = {"HASH", "REVISION", "TOTAL KEYS",
                                              "TOTAL SIZE"};
            const char *const row[] = {hash, rev, keys, size};
            struct ctl_table *t = ctl_table_new(4, hdr);
            ctl_table_row(t, row);
            ctl_table_print(ctl, t);
        } else {
            fprintf(ctl->out, "%s, %s, %s, %s\n", hash, rev, keys, size);
        }
    }
    return CTL_EXIT_SUCCESS;
}

/* ---- snapshot restore --------------------------------------------------- */

struct restore_log {
    struct ctl *ctl;
    const char *path, *wal_dir, *data_dir, *snap_dir;
};

static void restore_fields(const struct restore_log *l, char *buf, size_t size)
{
    buf[0] = '\0';
    field_str(buf, size, "path", l->path);
    field_str(buf, size, "wal-dir", l->wal_dir);
    field_str(buf, size, "data-dir", l->data_dir);
    field_str(buf, size, "snap-dir", l->snap_dir);
}

static void restore_on_start(void *arg)
{
    struct restore_log *l = arg;
    char fields[20000];
    restore_fields(l, fields, sizeof fields);
    zlog(l->ctl, false, "info", "snapshot/v3_snapshot.go:296",
         "restoring snapshot", fields);
}

static void restore_on_member(void *arg, uint64_t cluster_id,
                              uint64_t member_id, char *const *peer_urls,
                              size_t n_peer_urls)
{
    struct restore_log *l = arg;
    char fields[8000], id[32];
    size_t off;

    fields[0] = '\0';
    snprintf(id, sizeof id, "%" PRIx64, cluster_id);
    field_str(fields, sizeof fields, "cluster-id", id);
    field_str(fields, sizeof fields, "local-member-id", "0");
    snprintf(id, sizeof id, "%" PRIx64, member_id);
    field_str(fields, sizeof fields, "added-peer-id", id);
    off = strlen(fields);
    snprintf(fields + off, sizeof fields - off, ",\"added-peer-peer-urls\":[");
    for (size_t i = 0; i < n_peer_urls; i++) {
        char *q =
            ctl_json_quote((const uint8_t *)peer_urls[i], strlen(peer_urls[i]));
        off = strlen(fields);
        snprintf(fields + off, sizeof fields - off, "%s%s", i ? "," : "",
                 q ? q : "\"\"");
        free(q);
    }
    strncat(fields, "]", sizeof fields - strlen(fields) - 1);
    zlog(l->ctl, false, "info", "membership/cluster.go:392", "added member",
         fields);
}

static int snapshot_restore(struct ctl *ctl, int argc, char **argv)
{
    const char *data_dir = "", *wal_dir = "";
    const char *initial_cluster = "default=http://localhost:2380";
    const char *token = "etcd-cluster";
    const char *peer_urls = "http://localhost:2380";
    const char *name = "default";
    bool skip_hash = false, wal_set = false;
    const struct ctl_flag flags[] = {
        {"data-dir", 0, CTL_FLAG_STRING, &data_dir, NULL, NULL},
        {"wal-dir", 0, CTL_FLAG_STRING, &wal_dir, &wal_set, NULL},
        {"initial-cluster", 0, CTL_FLAG_STRING, &initial_cluster, NULL, NULL},
        {"initial-cluster-token", 0, CTL_FLAG_STRING, &token, NULL, NULL},
        {"initial-advertise-peer-urls", 0, CTL_FLAG_STRING, &peer_urls, NULL,
         NULL},
        {"name", 0, CTL_FLAG_STRING, &name, NULL, NULL},
        {"skip-hash-check", 0, CTL_FLAG_BOOL, &skip_hash, NULL, NULL},
        {0},
    };
    struct snapfile_restore_config cfg;
    struct restore_log log;
    char errmsg[SNAPFILE_ERRMSG_SIZE];
    char dir[4096], wal[4200], snap[4200], fields[20000];
    int nargs = 0, rc;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0) {
        return rc;
    }
    if (nargs != 1) {
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "snapshot restore requires exactly one argument");
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.snapshot_path = argv[0];
    cfg.name = name;
    cfg.data_dir = data_dir;
    cfg.initial_cluster = initial_cluster;
    cfg.token = token;
    cfg.peer_urls = peer_urls;
    cfg.skip_hash_check = skip_hash;
    snapfile_data_dir(&cfg, dir, sizeof dir);
    /* ikada keeps no separate WAL: --wal-dir only gets etcd's check. */
    if (wal_set && wal_dir[0] != '\0' && access(wal_dir, F_OK) == 0) {
        return ctl_fail(ctl, CTL_EXIT_ERROR, "wal-dir \"%s\" exists", wal_dir);
    }
    if (wal_dir[0] != '\0') {
        snprintf(wal, sizeof wal, "%s", wal_dir);
    } else {
        snprintf(wal, sizeof wal, "%s/member/wal", dir);
    }
    snprintf(snap, sizeof snap, "%s/member/snap", dir);
    log = (struct restore_log){ctl, argv[0], wal, dir, snap};
    cfg.on_start = restore_on_start;
    cfg.on_member = restore_on_member;
    cfg.arg = &log;
    if (snapfile_restore(&cfg, errmsg) != 0) {
        return ctl_fail(ctl, CTL_EXIT_ERROR, "%s", errmsg);
    }
    restore_fields(&log, fields, sizeof fields);
    zlog(ctl, false, "info", "snapshot/v3_snapshot.go:309", "restored snapshot",
         fields);
    return CTL_EXIT_SUCCESS;
}

static const struct ctl_flag_doc restore_docs[] = {
    {"data-dir", 0, "string", "",
     "data directory to create (default: <name>.etcd)"},
    {"initial-advertise-peer-urls", 0, "string", "http://localhost:2380",
     "peer URLs of the member being restored"},
    {"initial-cluster", 0, "string", "default=http://localhost:2380",
     "members of the new cluster as name=peer-url pairs, comma separated"},
    {"initial-cluster-token", 0, "string", "etcd-cluster",
     "token naming the new cluster"},
    {"name", 0, "string", "default", "name of the member being restored"},
    {"skip-hash-check", 0, "bool", "false",
     "accept a snapshot file that carries no integrity hash"},
    {"wal-dir", 0, "string", "",
     "separate log directory (only checked: ikada keeps its log in the "
     "data directory)"},
    {0}};

const struct ctl_command ctl_snapshot_commands[] = {
    {.name = "snapshot save",
     .run = snapshot_save,
     .usage = "save <filename>",
     .summary = "Fetch a member's snapshot into a file"},
    {.name = "snapshot status",
     .run = snapshot_status,
     .usage = "status <filename>",
     .summary = "Show the hash, revision, key count and size of a snapshot"},
    {.name = "snapshot restore",
     .run = snapshot_restore,
     .usage = "restore <filename> [options]",
     .summary = "Make a new member's data directory from a snapshot",
     .flags = restore_docs},
    {0}};
