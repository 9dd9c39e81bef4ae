/* ctl_lock.c: ikadactl's lock and elect commands. Like etcdctl's (which
 * use clientv3/concurrency), they hold a session lease kept alive for the
 * command's life; the lock, campaign and resign steps go through etcd's
 * v3lock and v3election services, observing reads the election prefix and
 * watches it as concurrency.Election.Observe does. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/ctl.h"
#include "client/ctl_cluster.h"
#include "proto/kv.pb-c.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"
#include "server/errors.h"

extern char **environ;

/* A call that waits for as long as it takes (a lock, a campaign). */
#define FOREVER_MS (100ull * 365 * 24 * 3600 * 1000)

/* The command's session: its lease, kept alive; SIGINT/SIGTERM. */
struct session {
    struct ctl *ctl;
    struct ikclient *c;
    int64_t lease;
    struct ikclient_keepalive *ka;
    bool expired;                  /* the keep-alive ended: lease gone */
    bool signaled;                 /* SIGINT or SIGTERM */
    uv_signal_t *sigint, *sigterm; /* heap: closed asynchronously */
    bool sig_started;
    /* the pending async call */
    bool call_done;
    int call_rc;
    ProtobufCMessage *call_resp;
    struct ikclient_status call_st;
};

static void ka_cb(struct ikclient_keepalive *ka, void *data,
                  const Etcdserverpb__LeaseKeepAliveResponse *resp, bool done,
                  const struct ikclient_status *st)
{
    struct session *s = data;
    (void)ka;
    (void)resp;
    (void)st;
    if (done) {
        s->ka = NULL;
        s->expired = true;
        ikclient_break(s->c);
    }
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct session *s = h->data;
    (void)signum;
    s->signaled = true;
    ikclient_break(s->c);
}

static void call_cb(void *data, int rc, ProtobufCMessage *resp,
                    const struct ikclient_status *st)
{
    struct session *s = data;
    s->call_done = true;
    s->call_rc = rc;
    s->call_resp = resp;
    if (st)
        s->call_st = *st;
    ikclient_break(s->c);
}

static void signals_start(struct session *s)
{
    uv_loop_t *loop = ikclient_loop(s->c);
    s->sigint = calloc(1, sizeof *s->sigint);
    s->sigterm = calloc(1, sizeof *s->sigterm);
    if (s->sigint == NULL || s->sigterm == NULL) {
        free(s->sigint);
        free(s->sigterm);
        s->sigint = s->sigterm = NULL;
        return;
    }
    uv_signal_init(loop, s->sigint);
    uv_signal_init(loop, s->sigterm);
    s->sigint->data = s->sigterm->data = s;
    uv_signal_start(s->sigint, signal_cb, SIGINT);
    uv_signal_start(s->sigterm, signal_cb, SIGTERM);
    uv_unref((uv_handle_t *)s->sigint);
    uv_unref((uv_handle_t *)s->sigterm);
    s->sig_started = true;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Print a failure as ExitWithError(ExitError, err); returns 1. */
/* SIGINT while a lock or campaign waits: clientv3 logs the canceled call
 * etcdctl exits with "context canceled" (the wait is a watch: no client
 * log line). */
static int fail_canceled(struct ctl *ctl)
{
    return ctl_fail(ctl, CTL_EXIT_ERROR, "context canceled");
}

/* etcd's v3lock/v3election services forward the errors of their internal
 * client as code Unknown; etcdctl, which runs the lock/election recipe
 * itself (txns and watches), sees the same error with its own code. */
static int etcd_error_code(const char *msg)
{
    static const struct {
        const char *msg;
        int code;
    } tbl[] = {
        {"etcdserver: permission denied", 7},
        {"etcdserver: user name is empty", 3},
        {"etcdserver: authentication failed, invalid user ID or password", 3},
        {"etcdserver: invalid auth token", 16},
        {"etcdserver: revision of auth store is old", 3},
        {"etcdserver: no leader", 14},
        {"etcdserver: leader changed", 14},
        {"etcdserver: request timed out", 14},
        {"etcdserver: too many requests", 8},
        {"etcdserver: requested lease not found", 5},
    };
    for (size_t i = 0; i < sizeof tbl / sizeof tbl[0]; i++)
        if (strcmp(msg, tbl[i].msg) == 0)
            return tbl[i].code;
    return -1;
}

static int fail_err(struct ctl *ctl, int rc, const struct ikclient_status *st)
{
    struct ikclient_status fixed;
    if (rc == IK_EGRPC && st != NULL && st->code == 2 &&
        etcd_error_code(st->message) >= 0) {
        fixed = *st;
        fixed.code = etcd_error_code(st->message);
        st = &fixed;
    }
    char *msg = ctl_cluster_error_text(ctl, rc, st);
    ctl_fail(ctl, CTL_EXIT_ERROR, "%s", msg ? msg : "out of memory");
    free(msg);
    return CTL_EXIT_ERROR;
}

/* concurrency.NewSession: grant @ttl, keep it alive. -1 or exit code. */
static int session_start(struct session *s, struct ctl *ctl, int64_t ttl)
{
    Etcdserverpb__LeaseGrantRequest req =
        ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    Etcdserverpb__LeaseGrantResponse *r = NULL;
    struct ikclient_status st;
    int rc;
    memset(s, 0, sizeof *s);
    s->ctl = ctl;
    s->c = ctl_client(ctl);
    if (s->c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    signals_start(s);
    req.ttl = ttl;
    rc = ikclient_lease_grant(s->c, &req, &r, &st);
    if (rc != 0)
        return fail_err(ctl, rc, &st);
    s->lease = r->id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    ctl_stream_auth(ctl, s->c, CTL_STREAM_LEASE);
    if (ikclient_keepalive(s->c, s->lease, ka_cb, s, &s->ka) != 0)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    return -1;
}

static void session_end(struct session *s)
{
    if (s->ka)
        ikclient_keepalive_stop(s->ka);
    s->ka = NULL;
    if (s->sig_started) {
        uv_close((uv_handle_t *)s->sigint, free_handle);
        uv_close((uv_handle_t *)s->sigterm, free_handle);
        s->sig_started = false;
    }
}

/* Run the loop until the pending call answered, a signal, or the session
 * expired (when @stop_on_expiry). */
static void wait_call(struct session *s, bool stop_on_expiry)
{
    while (!s->call_done && !s->signaled && !(stop_on_expiry && s->expired))
        ikclient_run(s->c, 0);
}

/* Call @method with @req in session @s and wait for its answer, left in
 * s->call_resp. Returns -1 on success; otherwise ends the session, prints
 * the error and returns the exit code (also when interrupted). */
static int session_call(struct session *s, const char *method,
                        const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc)
{
    if (ikclient_call_async(s->c, method, req, resp_desc, 0, FOREVER_MS,
                            call_cb, s) != 0) {
        session_end(s);
        return ctl_fail(s->ctl, CTL_EXIT_ERROR, "out of memory");
    }
    wait_call(s, false);
    if (!s->call_done) {
        session_end(s);
        return fail_canceled(s->ctl);
    }
    if (s->call_rc != 0) {
        session_end(s);
        return fail_err(s->ctl, s->call_rc, &s->call_st);
    }
    return -1;
}

/* Wait for a signal or the end of the session. */
static void wait_end(struct session *s)
{
    while (!s->signaled && !s->expired)
        ikclient_run(s->c, 0);
}

static int print_key(struct session *s, const uint8_t *key, size_t len)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;
    struct ikclient_status st;
    int rc;
    req.key.data = (uint8_t *)key;
    req.key.len = len;
    rc = ikclient_range(s->c, &req, &r, &st);
    if (rc != 0)
        return fail_err(s->ctl, rc, &st);
    if (r->n_kvs == 0) {
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return -2;
    }
    rc = ctl_cluster_print_get(s->ctl, r);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc ? rc : -1;
}

/* ------------------------------------------------------------ lock */

/* exec.Command(args...).Run() with the lock's variables first in the
 * environment; returns -1 on success or prints Go's error and returns 1. */
static int run_command(struct ctl *ctl, char **args, const char *key,
                       size_t key_len, int64_t rev)
{
    char *path = NULL;
    size_t n_env = 0;
    char **env;
    pid_t pid;
    int status;

    if (strchr(args[0], '/') == NULL) {
        const char *p = getenv("PATH");
        char *dirs = strdup(p ? p : "");
        for (char *save = NULL, *d = dirs ? strtok_r(dirs, ":", &save) : NULL;
             d && !path; d = strtok_r(NULL, ":", &save)) {
            char *cand = NULL;
            struct stat sb;
            if (asprintf(&cand, "%s/%s", *d ? d : ".", args[0]) < 0)
                break;
            if (stat(cand, &sb) == 0 && S_ISREG(sb.st_mode) &&
                (sb.st_mode & 0111))
                path = cand;
            else
                free(cand);
        }
        free(dirs);
        if (path == NULL)
            return ctl_fail(ctl, CTL_EXIT_ERROR,
                            "exec: \"%s\": executable file not found in $PATH",
                            args[0]);
    } else {
        path = strdup(args[0]);
        if (path == NULL)
            return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    while (environ[n_env])
        n_env++;
    env = calloc(n_env + 3, sizeof *env);
    if (env != NULL &&
        asprintf(&env[0], "ETCD_LOCK_KEY=%.*s", (int)key_len, key) < 0)
        env[0] = NULL; /* asprintf leaves it undefined on failure */
    if (env != NULL && env[0] != NULL &&
        asprintf(&env[1], "ETCD_LOCK_REV=%" PRId64, rev) < 0)
        env[1] = NULL;
    if (env == NULL || env[0] == NULL || env[1] == NULL) {
        if (env != NULL) {
            free(env[0]);
            free(env);
        }
        free(path);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    memcpy(env + 2, environ, n_env * sizeof *env);
    fflush(ctl->out);
    fflush(ctl->err);
    pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execve(path, args, env);
        dprintf(2, "Error: fork/exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    free(env[0]);
    free(env[1]);
    free(env);
    if (pid < 0) {
        int e = errno;
        free(path);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "fork/exec %s: %s", args[0],
                        strerror(e));
    }
    free(path);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return -1;
    if (WIFEXITED(status))
        return ctl_fail(ctl, CTL_EXIT_ERROR, "exit status %d",
                        WEXITSTATUS(status));
    {
        const char *sig = strsignal(WTERMSIG(status));
        /* Go names signals in lower case ("signal: killed") */
        char buf[64];
        size_t i;
        for (i = 0; sig && sig[i] && i + 1 < sizeof buf; i++)
            buf[i] =
                (char)((sig[i] >= 'A' && sig[i] <= 'Z') ? sig[i] + 32 : sig[i]);
        buf[i] = '\0';
        return ctl_fail(ctl, CTL_EXIT_ERROR, "signal: %s", buf);
    }
}

static int unlock(struct session *s, const ProtobufCBinaryData *key)
{
    V3lockpb__UnlockRequest req = V3LOCKPB__UNLOCK_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    struct ikclient_status st;
    int rc;
    req.key = *key;
    rc = ikclient_call(s->c, "/v3lockpb.Lock/Unlock", &req.base,
                       &v3lockpb__unlock_response__descriptor, 0, 0, &r, &st);
    if (rc != 0)
        return fail_err(s->ctl, rc, &st);
    protobuf_c_message_free_unpacked(r, NULL);
    return -1;
}

static int lock_cmd(struct ctl *ctl, int argc, char **argv)
{
    int64_t ttl = 10;
    const struct ctl_flag flags[] = {
        {"ttl", 0, CTL_FLAG_INT64, &ttl, NULL, NULL}, {0}};
    int nargs, rc;
    struct session s;
    V3lockpb__LockRequest req = V3LOCKPB__LOCK_REQUEST__INIT;
    V3lockpb__LockResponse *lr;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs == 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "lock takes a lock name argument and an optional "
                        "command to execute");
    rc = session_start(&s, ctl, ttl);
    if (rc >= 0) {
        session_end(&s);
        return rc;
    }
    req.name.data = (uint8_t *)argv[0];
    req.name.len = strlen(argv[0]);
    req.lease = s.lease;
    rc = session_call(&s, "/v3lockpb.Lock/Lock", &req.base,
                      &v3lockpb__lock_response__descriptor);
    if (rc >= 0)
        return rc;
    lr = (V3lockpb__LockResponse *)s.call_resp;
    if (nargs > 1) {
        char **args = calloc((size_t)nargs, sizeof *args);
        int urc;
        if (args == NULL) {
            rc = ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
        } else {
            for (int i = 1; i < nargs; i++)
                args[i - 1] = argv[i];
            rc = run_command(ctl, args, (const char *)lr->key.data, lr->key.len,
                             lr->header ? lr->header->revision : 0);
            free(args);
        }
        urc = unlock(&s, &lr->key);
        if (rc < 0)
            rc = urc;
    } else {
        rc = print_key(&s, lr->key.data, lr->key.len);
        if (rc == -2)
            rc = ctl_fail(ctl, CTL_EXIT_ERROR, "lock lost on init");
        if (rc < 0) {
            wait_end(&s);
            if (s.signaled)
                rc = unlock(&s, &lr->key);
            else
                rc = ctl_fail(ctl, CTL_EXIT_ERROR, "session expired");
        }
    }
    protobuf_c_message_free_unpacked(&lr->base, NULL);
    session_end(&s);
    return rc < 0 ? 0 : rc;
}

/* ------------------------------------------------------------ elect */

static int campaign(struct ctl *ctl, const char *name, const char *prop)
{
    struct session s;
    V3electionpb__CampaignRequest req = V3ELECTIONPB__CAMPAIGN_REQUEST__INIT;
    V3electionpb__CampaignResponse *cr;
    int rc = session_start(&s, ctl, 60);
    if (rc >= 0) {
        session_end(&s);
        return rc;
    }
    req.name.data = (uint8_t *)name;
    req.name.len = strlen(name);
    req.lease = s.lease;
    req.value.data = (uint8_t *)prop;
    req.value.len = strlen(prop);
    rc = session_call(&s, "/v3electionpb.Election/Campaign", &req.base,
                      &v3electionpb__campaign_response__descriptor);
    if (rc >= 0)
        return rc;
    cr = (V3electionpb__CampaignResponse *)s.call_resp;
    if (cr->leader == NULL) {
        protobuf_c_message_free_unpacked(&cr->base, NULL);
        session_end(&s);
        return ctl_cluster_nil_panic(ctl);
    }
    rc = print_key(&s, cr->leader->key.data, cr->leader->key.len);
    if (rc == -2) {
        /* an empty Get prints nothing */
        rc = -1;
    }
    if (rc < 0) {
        wait_end(&s);
        if (!s.signaled) {
            rc = ctl_fail(ctl, CTL_EXIT_ERROR, "elect: session expired");
        } else {
            V3electionpb__ResignRequest rr = V3ELECTIONPB__RESIGN_REQUEST__INIT;
            ProtobufCMessage *r = NULL;
            struct ikclient_status st;
            rr.leader = cr->leader;
            rc = ikclient_call(s.c, "/v3electionpb.Election/Resign", &rr.base,
                               &v3electionpb__resign_response__descriptor, 0, 0,
                               &r, &st);
            if (rc != 0)
                rc = fail_err(ctl, rc, &st);
            else
                protobuf_c_message_free_unpacked(r, NULL);
        }
    }
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    session_end(&s);
    return rc < 0 ? 0 : rc;
}

/* observe: the state the watch callbacks share with the main loop */
struct observer {
    struct session *s;
    bool want_first_put;  /* phase 1: waiting for the first PUT */
    Mvccpb__KeyValue *kv; /* phase 1 result (owned) */
    Etcdserverpb__ResponseHeader hdr;
    bool key_deleted; /* phase 2 end */
    bool ended;       /* the watch ended by itself */
    int print_rc;
};

static Mvccpb__KeyValue *kv_copy(const Mvccpb__KeyValue *kv)
{
    size_t n = mvccpb__key_value__get_packed_size(kv);
    uint8_t *buf = malloc(n ? n : 1);
    Mvccpb__KeyValue *c;
    if (buf == NULL)
        return NULL;
    mvccpb__key_value__pack(kv, buf);
    c = mvccpb__key_value__unpack(NULL, n, buf);
    free(buf);
    return c;
}

static void print_one(struct observer *o, Etcdserverpb__ResponseHeader *h,
                      Mvccpb__KeyValue *kv)
{
    Etcdserverpb__RangeResponse r = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    Mvccpb__KeyValue *kvs[1] = {kv};
    int rc;
    r.header = h;
    r.n_kvs = 1;
    r.kvs = kvs;
    rc = ctl_cluster_print_get(o->s->ctl, &r);
    if (rc && !o->print_rc)
        o->print_rc = rc;
}

static void observe_cb(struct ikclient_watch *w, void *data,
                       const Etcdserverpb__WatchResponse *resp, bool done,
                       const struct ikclient_status *st)
{
    struct observer *o = data;
    (void)w;
    (void)st;
    if (resp && !o->key_deleted && !(o->want_first_put && o->kv)) {
        for (size_t i = 0; i < resp->n_events; i++) {
            const Mvccpb__Event *ev = resp->events[i];
            if (o->want_first_put) {
                if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT && ev->kv) {
                    o->kv = kv_copy(ev->kv);
                    if (resp->header)
                        o->hdr = *resp->header;
                    o->hdr.revision = ev->kv->mod_revision;
                    break;
                }
                continue;
            }
            if (ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
                o->key_deleted = true;
                break;
            }
            if (ev->kv) {
                Etcdserverpb__ResponseHeader h =
                    ETCDSERVERPB__RESPONSE_HEADER__INIT;
                if (resp->header)
                    h = *resp->header;
                print_one(o, &h, (Mvccpb__KeyValue *)ev->kv);
            }
        }
    }
    if (done)
        o->ended = true;
    if (done || o->key_deleted || o->kv || o->print_rc)
        ikclient_break(o->s->c);
}

static int observe(struct ctl *ctl, const char *name)
{
    struct session s;
    struct observer o;
    char *pfx = NULL, *end;
    size_t plen;
    int rc = session_start(&s, ctl, 60);
    if (rc >= 0) {
        session_end(&s);
        return rc;
    }
    if (asprintf(&pfx, "%s/", name) < 0) {
        session_end(&s);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    plen = strlen(pfx);
    end = strdup(pfx);
    end[plen - 1]++; /* '/' + 1: the prefix's range end */
    memset(&o, 0, sizeof o);
    o.s = &s;
    rc = -1;
    while (rc < 0 && !s.signaled) {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        Etcdserverpb__RangeResponse *r = NULL;
        struct ikclient_status st;
        Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        Mvccpb__KeyValue *kv = NULL;
        struct ikclient_watch *w = NULL;
        Etcdserverpb__WatchCreateRequest wr =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;

        req.key.data = (uint8_t *)pfx;
        req.key.len = plen;
        req.range_end.data = (uint8_t *)end;
        req.range_end.len = plen;
        req.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
        req.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
        req.limit = 1;
        int grc = ikclient_range(s.c, &req, &r, &st);
        if (grc != 0) {
            /* the client logs the failed Get; the observer's channel
             * closes */
            if (grc == IK_EGRPC)
                ctl_print_grpc_warn(ctl, &st);
            break;
        }
        if (r->n_kvs == 0) {
            /* wait for the first key put under the prefix */
            o.want_first_put = true;
            o.key_deleted = false;
            o.kv = NULL;
            o.ended = false;
            wr.key = req.key;
            wr.range_end = req.range_end;
            wr.start_revision = r->header ? r->header->revision : 0;
            ctl_stream_auth(ctl, s.c, CTL_STREAM_WATCH);
            if (ikclient_watch(s.c, &wr, observe_cb, &o, &w) != 0) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                break;
            }
            while (!o.kv && !o.ended && !s.signaled)
                ikclient_run(s.c, 0);
            if (!o.ended)
                ikclient_watch_cancel(w);
            o.want_first_put = false;
            if (o.kv == NULL) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                break;
            }
            kv = o.kv;
            o.kv = NULL;
            hdr = o.hdr;
        } else {
            if (r->header)
                hdr = *r->header;
            kv = kv_copy(r->kvs[0]);
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (kv == NULL)
            break;
        print_one(&o, &hdr, kv);
        if (o.print_rc) {
            rc = o.print_rc;
            protobuf_c_message_free_unpacked(&kv->base, NULL);
            break;
        }
        /* follow the leader key until it is deleted */
        memset(&wr, 0, sizeof wr);
        etcdserverpb__watch_create_request__init(&wr);
        wr.key = kv->key;
        wr.start_revision = hdr.revision + 1;
        o.key_deleted = false;
        o.ended = false;
        ctl_stream_auth(ctl, s.c, CTL_STREAM_WATCH);
        if (ikclient_watch(s.c, &wr, observe_cb, &o, &w) != 0) {
            protobuf_c_message_free_unpacked(&kv->base, NULL);
            break;
        }
        while (!o.key_deleted && !o.ended && !s.signaled && !o.print_rc)
            ikclient_run(s.c, 0);
        if (!o.ended)
            ikclient_watch_cancel(w);
        protobuf_c_message_free_unpacked(&kv->base, NULL);
        if (o.print_rc)
            rc = o.print_rc;
        else if (o.ended)
            break;
    }
    free(pfx);
    free(end);
    if (rc < 0 && !s.signaled)
        rc = ctl_fail(ctl, CTL_EXIT_ERROR, "elect: observer lost");
    session_end(&s);
    return rc < 0 ? 0 : rc;
}

static int elect_cmd(struct ctl *ctl, int argc, char **argv)
{
    bool listen = false;
    const struct ctl_flag flags[] = {
        {"listen", 'l', CTL_FLAG_BOOL, &listen, NULL, NULL}, {0}};
    int nargs, rc;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1 && nargs != 2)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "elect takes one election name argument and an "
                        "optional proposal argument");
    if (ctl_client(ctl) == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    if (nargs == 1) {
        if (!listen)
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "no proposal argument but -l not set");
        return observe(ctl, argv[0]);
    }
    if (listen)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "proposal given but -l is set");
    return campaign(ctl, argv[0], argv[1]);
}

static const struct ctl_flag_doc lock_docs[] = {
    {"ttl", 0, "int", "10",
     "seconds the lock outlives this client if it stops renewing it"},
    {0}};

static const struct ctl_flag_doc elect_docs[] = {
    {"listen", 'l', "bool", "false",
     "print each new leader instead of campaigning"},
    {0}};

const struct ctl_command ctl_lock_commands[] = {
    {.name = "lock",
     .run = lock_cmd,
     .usage = "lock <lockname> [exec-command arg1 arg2 ...]",
     .summary = "Hold a named distributed lock",
     .flags = lock_docs,
     .description =
         "Waits for the lock, prints the key that holds it and keeps it\n"
         "until interrupted. With a command, runs it while holding the\n"
         "lock and releases the lock when the command exits."},
    {.name = "elect",
     .run = elect_cmd,
     .usage = "elect <election-name> [proposal]",
     .summary = "Run for leader of a named election, or follow its leader",
     .flags = elect_docs,
     .description =
         "With a proposal, campaigns until elected, prints the proposal and\n"
         "stays leader until interrupted. With -l, prints every leader the\n"
         "election gets."},
    {0}};
