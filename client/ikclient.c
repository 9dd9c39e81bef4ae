/*
 * ikclient: etcd v3 client library (see ikclient.h).
 *
 * Structure:
 *  - endpoints: one struct ep per configured endpoint; its connection is a
 *    heap "epconn" wrapping a grpc_client_uv, created on first use. A dial
 *    timer per endpoint closes the epconn when its TCP connection is not up
 *    within dial_timeout_ms (the calls on it then fail as a dial error).
 *  - one uv timer per client drives a sorted list of "tentry" timeouts:
 *    call deadlines, retry backoffs, dial timeouts, watch/keep-alive
 *    restarts and sends.
 *  - ops: one unary call (or the first message of a stream) with failover
 *    and retries; synchronous calls are ops the caller waits for by running
 *    the loop.
 *  - watches and keep-alives: one gRPC stream each, re-created on the next
 *    endpoint when it breaks.
 *  - auth: one Authenticate at a time for the whole client; everything that
 *    needs a token waits for it in c->auth_waiters.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "client/ikclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/grpc_client.h"
#include "client/grpc_client_uv.h"
#include "server/errors.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define DEFAULT_DIAL_MS 2000u
#define DEFAULT_REQUEST_MS 5000u
/* Wait before retrying a unary call (clientv3: 25 ms, 10% jitter). */
#define RETRY_WAIT_MS 25u
#define RETRY_WAIT_MAX_MS 500u
/* Wait before re-creating a stream that failed without any answer. */
#define STREAM_RETRY_MS 500u
#define KA_MIN_PERIOD_MS 500u

static const char MSG_DEADLINE[] = "context deadline exceeded";
static const char MSG_DIAL_PREFIX[] =
    "connection error: desc = \"transport: Error while dialing";
static const char MSG_DRAINING[] = "the connection is draining";
static const char MSG_REFUSED[] =
    "stream terminated by RST_STREAM with error code: REFUSED_STREAM";
static const char MSG_AUTH_NOT_ENABLED[] =
    "etcdserver: authentication is not enabled";

/* ------------------------------------------------------------------------ */
/* Types */

struct ikclient;

struct tentry {
    uint64_t due;
    void (*fn)(struct tentry *t);
    struct tentry *next;
    bool armed;
};

struct epconn {
    struct grpc_client_uv uv;
    struct ikclient *c;
    bool timed_out; /* closed by the dial timer */
};

struct ep {
    struct ikclient *c;
    char *name; /* "host:port" ([v6]:port) */
    char *host; /* without brackets */
    uint16_t port;
    struct epconn *ec;
    struct tentry dial_t;
    unsigned long dial_seen;
};

/* Something waiting for the auth token. @status GRPC_OK: go on. */
struct authw {
    void (*resume)(struct authw *w, int status, const char *msg);
    struct authw *next;
    bool waiting;
};

enum auth_state { AUTH_NEEDED, AUTH_BUSY, AUTH_DONE };

struct op {
    struct ikclient *c;
    struct op *next, *prev;
    char *method;
    uint8_t *req;
    size_t req_len;
    const ProtobufCMessageDescriptor *resp_desc;
    bool idempotent;
    bool fixed;     /* one endpoint only, no retry */
    bool first_msg; /* stream: the first message is the answer */
    bool sync;
    bool done;
    bool auth_retried;
    bool got_msg;
    bool no_auth;     /* the Authenticate call itself: needs no token */
    bool dial_failed; /* the last attempt could not connect */
    size_t ep;
    unsigned attempts;
    uint64_t deadline;
    struct tentry deadline_t;
    struct tentry retry_t;
    struct authw aw;
    struct grpc_client_call *call;
    struct epconn *ec;
    /* result */
    int rc;
    ProtobufCMessage *resp;
    struct ikclient_status st;
    ikclient_call_cb cb;
    void *data;
};

struct ikclient_watch {
    struct ikclient *c;
    struct ikclient_watch *next, *prev;
    Etcdserverpb__WatchCreateRequest *req; /* our copy */
    ikclient_watch_cb cb;
    void *data;
    struct grpc_client_call *call;
    struct epconn *ec;
    size_t ep;
    struct authw aw;
    struct tentry restart_t;
    int64_t next_rev; /* resume point; 0: req->start_revision */
    int64_t last_rev; /* last event revision delivered */
    bool created_delivered;
    bool stream_created;
    bool stream_got_msg;
    unsigned failures;
    bool in_cb;
    bool cancelled;
    unsigned progress_pending; /* asked while the stream was not up */
};

struct ikclient_keepalive {
    struct ikclient *c;
    struct ikclient_keepalive *next, *prev;
    int64_t id;
    ikclient_keepalive_cb cb;
    void *data;
    struct grpc_client_call *call;
    struct epconn *ec;
    size_t ep;
    struct authw aw;
    struct tentry send_t;
    struct tentry deadline_t;
    int64_t ttl;
    bool stream_got_msg;
    bool in_cb;
    bool stopped;
    struct ikclient_status last_err;
};

struct ikclient {
    uv_loop_t *loop;
    bool own_loop;
    struct ep *eps;
    size_t n_eps;
    size_t cur;
    uint64_t dial_ms;
    uint64_t request_ms;
    size_t max_recv;
    char *user_agent;
    char *user;
    char *password;
    uv_timer_t timer;
    struct tentry *tq;
    struct tentry run_t;
    unsigned pending_closes;
    struct op *ops;
    struct ikclient_watch *watches;
    struct ikclient_keepalive *kas;
    size_t n_async; /* async ops + watches + keep-alives */
    /* auth */
    enum auth_state auth;
    char *token;
    struct authw *auth_waiters;
    struct grpc_client_call *auth_call;
    struct epconn *auth_ec;
    size_t auth_ep;
    uint64_t rng;
    bool closing;
    bool broken;
    bool run_expired;
    bool in_run;
};

#define CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

static void st_set(struct ikclient_status *st, int code, const char *msg)
{
    if (st == NULL) {
        return;
    }
    st->code = code;
    snprintf(st->message, sizeof(st->message), "%s", msg != NULL ? msg : "");
    st->unreachable = false;
}

/* The gRPC status code for an IK_E* code. */
static int grpc_code(int rv)
{
    const char *msg;
    return ik_grpc_status(rv, &msg);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The request certainly did not reach a server's handler. */
static bool never_sent(const char *msg)
{
    return starts_with(msg, MSG_DIAL_PREFIX) ||
           strcmp(msg, MSG_DRAINING) == 0 || starts_with(msg, MSG_REFUSED);
}

static bool is_token_error(const char *msg)
{
    return strcmp(msg, "etcdserver: invalid auth token") == 0 ||
           strcmp(msg, "etcdserver: revision of auth store is old") == 0 ||
           strcmp(msg, "etcdserver: user name is empty") == 0;
}

/* Methods clientv3 3.4 retries on UNAVAILABLE (its "repeatable" policy). */
static bool method_idempotent(const char *m)
{
    static const char *const list[] = {
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        "/etcdserverpb.Lease/LeaseLeases",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseRevoke",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Cluster/MemberList",
        "/etcdserverpb.Maintenance/Alarm",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Maintenance/MoveLeader",
        "/etcdserverpb.Auth/UserList",
        "/etcdserverpb.Auth/UserGet",
        "/etcdserverpb.Auth/RoleGet",
        "/etcdserverpb.Auth/RoleList",
    };
    size_t i;
    for (i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        if (strcmp(m, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static uint64_t jitter(struct ikclient *c, uint64_t ms)
{
    uint64_t span = ms / 5; /* +-10% */
    c->rng = c->rng * 6364136223846793005ull + 1442695040888963407ull;
    if (span == 0) {
        return ms;
    }
    return ms - span / 2 + (c->rng >> 33) % (span + 1);
}

/* Token metadata for a call; returns the number of items. */
static size_t make_md(struct ikclient *c, struct grpc_client_md *md)
{
    if (c->token != NULL) {
        md[0].name = "token";
        md[0].value = c->token;
        return 1;
    }
    return 0;
}

/* The endpoint the client sends to moves on after @e failed. */
static void ep_failed(struct ikclient *c, size_t e)
{
    if (c->cur == e && c->n_eps > 0) {
        c->cur = (e + 1) % c->n_eps;
    }
}

/* ------------------------------------------------------------------------ */
/* Timer queue */

static void tq_cb(uv_timer_t *h);

static void tq_reprogram(struct ikclient *c)
{
    uint64_t now;
    if (c->closing) {
        return;
    }
    if (c->tq == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    now = now_ms();
    uv_timer_start(&c->timer, tq_cb, c->tq->due > now ? c->tq->due - now : 0,
                   0);
}

static void tq_disarm(struct ikclient *c, struct tentry *t)
{
    struct tentry **pp;
    if (!t->armed) {
        return;
    }
    for (pp = &c->tq; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    t->armed = false;
    t->next = NULL;
}

static void tq_arm(struct ikclient *c, struct tentry *t, uint64_t due)
{
    struct tentry **pp;
    bool first;
    tq_disarm(c, t);
    t->due = due;
    for (pp = &c->tq; *pp != NULL && (*pp)->due <= due; pp = &(*pp)->next) {
    }
    t->next = *pp;
    *pp = t;
    t->armed = true;
    first = c->tq == t;
    if (first) {
        tq_reprogram(c);
    }
}

static void tq_cb(uv_timer_t *h)
{
    struct ikclient *c = h->data;
    uint64_t now = now_ms();
    while (c->tq != NULL && c->tq->due <= now) {
        struct tentry *t = c->tq;
        c->tq = t->next;
        t->next = NULL;
        t->armed = false;
        t->fn(t);
    }
    tq_reprogram(c);
}

/* ------------------------------------------------------------------------ */
/* Endpoints and connections */

static void epconn_closed(struct grpc_client_uv *uv)
{
    struct epconn *ec = uv->data;
    struct ikclient *c = ec->c;
    free(ec);
    c->pending_closes--;
}

static void epconn_close(struct ikclient *c, struct epconn *ec)
{
    c->pending_closes++;
    grpc_client_uv_close(&ec->uv, epconn_closed);
}

static void dial_timer_fn(struct tentry *t)
{
    struct ep *ep = CONTAINER_OF(t, struct ep, dial_t);
    struct ikclient *c = ep->c;
    struct epconn *ec = ep->ec;
    unsigned long dials;

    if (ec == NULL || grpc_client_uv_connected(&ec->uv)) {
        return;
    }
    dials = grpc_client_uv_dials(&ec->uv);
    if (dials != ep->dial_seen) {
        /* A newer dial started after the timer was armed: give it time. */
        ep->dial_seen = dials;
        tq_arm(c, &ep->dial_t, now_ms() + c->dial_ms);
        return;
    }
    ec->timed_out = true;
    ep->ec = NULL;
    epconn_close(c, ec); /* our calls on it see CANCELLED + timed_out */
}

static struct grpc_client_conn *ep_conn(struct ikclient *c, size_t e,
                                        struct epconn **ecp)
{
    struct ep *ep = &c->eps[e];
    struct grpc_client_conn *conn;

    if (ep->ec == NULL) {
        struct grpc_client_config cfg;
        struct epconn *ec = calloc(1, sizeof(*ec));
        if (ec == NULL) {
            return NULL;
        }
        memset(&cfg, 0, sizeof(cfg));
        cfg.user_agent = c->user_agent;
        cfg.max_recv_msg_size = c->max_recv;
        ec->c = c;
        ec->uv.data = ec;
        if (grpc_client_uv_init(&ec->uv, c->loop, ep->host, ep->port, &cfg) !=
            0) {
            free(ec);
            return NULL;
        }
        ep->ec = ec;
    }
    conn = grpc_client_uv_conn(&ep->ec->uv);
    if (conn == NULL) {
        return NULL;
    }
    if (!grpc_client_uv_connected(&ep->ec->uv) && !ep->dial_t.armed) {
        ep->dial_seen = grpc_client_uv_dials(&ep->ec->uv);
        tq_arm(c, &ep->dial_t, now_ms() + c->dial_ms);
    }
    *ecp = ep->ec;
    return conn;
}

/* A status from a call on @ec, with a dial timeout shown as such. */
static int fix_status(struct ikclient *c, struct epconn *ec, size_t e,
                      int status, const char **msg, char *buf, size_t size)
{
    if (status == GRPC_CANCELLED && ec != NULL && ec->timed_out) {
        snprintf(buf, size, "%s dial tcp %s: i/o timeout\"", MSG_DIAL_PREFIX,
                 c->eps[e].name);
        *msg = buf;
        return GRPC_UNAVAILABLE;
    }
    return status;
}

/* Parse one endpoint into @ep. Returns 0 or IK_EINVAL/IK_ENOMEM. */
static int ep_parse(struct ep *ep, const char *s, char *errmsg, size_t size)
{
    const char *p = s, *hs, *he, *colon;
    char *end;
    unsigned long port;
    size_t len;

    if (starts_with(p, "https://")) {
        snprintf(errmsg, size, "TLS is not supported");
        return IK_EINVAL;
    }
    if (starts_with(p, "http://")) {
        p += 7;
    } else if (strstr(p, "://") != NULL) {
        snprintf(errmsg, size, "endpoint %s: unsupported scheme", s);
        return IK_EINVAL;
    }
    len = strlen(p);
    while (len > 0 && p[len - 1] == '/') {
        len--;
    }
    if (len == 0) {
        snprintf(errmsg, size, "endpoint \"%s\": missing address", s);
        return IK_EINVAL;
    }
    if (p[0] == '[') {
        hs = p + 1;
        he = memchr(p, ']', len);
        if (he == NULL || he + 1 >= p + len || he[1] != ':') {
            snprintf(errmsg, size, "endpoint %s: missing port in address", s);
            return IK_EINVAL;
        }
        colon = he + 1;
    } else {
        colon = NULL;
        for (he = p; he < p + len; he++) {
            if (*he == ':') {
                colon = he;
            }
        }
        if (colon == NULL) {
            snprintf(errmsg, size, "endpoint %s: missing port in address", s);
            return IK_EINVAL;
        }
        hs = p;
        he = colon;
        if (memchr(hs, ':', (size_t)(he - hs)) != NULL) {
            snprintf(errmsg, size, "endpoint %s: too many colons in address",
                     s);
            return IK_EINVAL;
        }
    }
    if (he == hs || memchr(hs, '/', (size_t)(he - hs)) != NULL) {
        snprintf(errmsg, size, "endpoint %s: bad host", s);
        return IK_EINVAL;
    }
    {
        char pbuf[8];
        size_t plen = (size_t)(p + len - (colon + 1));
        if (plen == 0 || plen >= sizeof(pbuf)) {
            snprintf(errmsg, size, "endpoint %s: bad port", s);
            return IK_EINVAL;
        }
        memcpy(pbuf, colon + 1, plen);
        pbuf[plen] = '\0';
        if (pbuf[0] < '0' || pbuf[0] > '9') {
            snprintf(errmsg, size, "endpoint %s: bad port", s);
            return IK_EINVAL;
        }
        port = strtoul(pbuf, &end, 10);
        if (*end != '\0' || port == 0 || port > 65535) {
            snprintf(errmsg, size, "endpoint %s: bad port", s);
            return IK_EINVAL;
        }
    }
    ep->host = malloc((size_t)(he - hs) + 1);
    ep->name = malloc(len + 1);
    if (ep->host == NULL || ep->name == NULL) {
        free(ep->host);
        free(ep->name);
        ep->host = ep->name = NULL;
        return IK_ENOMEM;
    }
    memcpy(ep->host, hs, (size_t)(he - hs));
    ep->host[he - hs] = '\0';
    memcpy(ep->name, p, len);
    ep->name[len] = '\0';
    ep->port = (uint16_t)port;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Auth */

static void auth_resume_all(struct ikclient *c, int status, const char *msg)
{
    struct authw *list = c->auth_waiters;
    c->auth_waiters = NULL;
    while (list != NULL) {
        struct authw *w = list;
        list = w->next;
        w->next = NULL;
        w->waiting = false;
        w->resume(w, status, msg);
    }
}

static void auth_done(void *data, int status, const char *msg,
                      const uint8_t *resp, size_t len)
{
    struct ikclient *c = data;
    char buf[300];

    status =
        fix_status(c, c->auth_ec, c->auth_ep, status, &msg, buf, sizeof(buf));
    c->auth_call = NULL;
    c->auth_ec = NULL;
    if (status == GRPC_OK) {
        Etcdserverpb__AuthenticateResponse *r =
            etcdserverpb__authenticate_response__unpack(NULL, len, resp);
        if (r == NULL) {
            status = GRPC_INTERNAL;
            msg = "grpc: failed to unmarshal the received message";
        } else {
            free(c->token);
            c->token = xstrdup(r->token != NULL ? r->token : "");
            etcdserverpb__authenticate_response__free_unpacked(r, NULL);
            if (c->token == NULL) {
                status = GRPC_RESOURCE_EXHAUSTED;
                msg = ik_strerror(IK_ENOMEM);
            }
        }
    } else if (strcmp(msg, MSG_AUTH_NOT_ENABLED) == 0) {
        status = GRPC_OK; /* as clientv3: go on without a token */
        msg = "";
    }
    if (status == GRPC_OK) {
        c->auth = AUTH_DONE;
    } else {
        c->auth = AUTH_NEEDED;
        if (status == GRPC_UNAVAILABLE) {
            ep_failed(c, c->auth_ep);
        }
    }
    auth_resume_all(c, status, msg);
}

static void auth_cancel_wait(struct ikclient *c, struct authw *w)
{
    struct authw **pp;
    if (!w->waiting) {
        return;
    }
    for (pp = &c->auth_waiters; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->waiting = false;
    w->next = NULL;
}

/*
 * Returns true when the caller may go on now (no auth needed); otherwise
 * @w is queued and resumed later (never from inside this function).
 * Returns false and sets *rv on error starting the Authenticate call.
 */
static bool auth_need(struct ikclient *c, size_t e, struct authw *w, int *rv)
{
    *rv = 0;
    if (c->user == NULL || c->auth == AUTH_DONE) {
        return true;
    }
    if (c->auth == AUTH_NEEDED) {
        Etcdserverpb__AuthenticateRequest req =
            ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
        struct epconn *ec = NULL;
        struct grpc_client_conn *conn = ep_conn(c, e, &ec);
        int r;
        if (conn == NULL) {
            *rv = IK_ENOMEM;
            return false;
        }
        req.name = c->user;
        req.password = c->password;
        r = grpc_client_unary(conn, "/etcdserverpb.Auth/Authenticate",
                              &req.base, c->request_ms, NULL, 0, auth_done, c,
                              &c->auth_call);
        if (r != 0) {
            *rv = r;
            return false;
        }
        c->auth_ec = ec;
        c->auth_ep = e;
        c->auth = AUTH_BUSY;
    }
    w->next = c->auth_waiters;
    c->auth_waiters = w;
    w->waiting = true;
    return false;
}

/* The server rejected our token: drop it so the next attempt
 * authenticates again. */
static void auth_invalidate(struct ikclient *c)
{
    if (c->auth == AUTH_DONE) {
        c->auth = AUTH_NEEDED;
        free(c->token);
        c->token = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Ops: unary calls with failover */

static void op_attempt(struct op *op);

static void op_free(struct op *op)
{
    struct ikclient *c = op->c;
    if (op->call != NULL) {
        grpc_client_call_cancel(op->call);
        op->call = NULL;
    }
    tq_disarm(c, &op->deadline_t);
    tq_disarm(c, &op->retry_t);
    auth_cancel_wait(c, &op->aw);
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else if (c->ops == op) {
        c->ops = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    if (op->resp != NULL) {
        protobuf_c_message_free_unpacked(op->resp, NULL);
    }
    free(op->method);
    free(op->req);
    free(op);
}

/* The op has not reached a connected endpoint: its last attempt failed to
 * connect, or it is still waiting for a connection (its own, or the one of
 * the Authenticate call it waits for). */
static bool op_unreachable(const struct op *op)
{
    const struct ikclient *c = op->c;
    if (op->dial_failed) {
        return true;
    }
    if (op->call != NULL && op->ec != NULL) {
        return !grpc_client_uv_connected(&op->ec->uv);
    }
    if (op->aw.waiting && c->auth_ec != NULL) {
        return !grpc_client_uv_connected(&c->auth_ec->uv);
    }
    return false;
}

static void op_finish(struct op *op, int rc, int status, const char *msg,
                      ProtobufCMessage *resp)
{
    struct ikclient *c = op->c;
    bool unreachable = starts_with(msg, MSG_DIAL_PREFIX) ||
                       (status == GRPC_DEADLINE_EXCEEDED && op_unreachable(op));
    if (op->call != NULL) {
        grpc_client_call_cancel(op->call);
        op->call = NULL;
    }
    tq_disarm(c, &op->deadline_t);
    tq_disarm(c, &op->retry_t);
    auth_cancel_wait(c, &op->aw);
    op->rc = rc;
    op->resp = resp;
    st_set(&op->st, rc == 0 ? GRPC_OK : status, rc == 0 ? "" : msg);
    op->st.unreachable = rc == IK_EGRPC && unreachable;
    op->done = true;
    if (!op->sync) {
        ikclient_call_cb cb = op->cb;
        void *data = op->data;
        struct ikclient_status st = op->st;
        op->resp = NULL;
        c->n_async--;
        op_free(op);
        cb(data, rc, resp, &st);
    }
}

static void op_failed(struct op *op, int status, const char *msg, bool unsent)
{
    struct ikclient *c = op->c;
    uint64_t now = now_ms(), wait;
    bool retry;

    if (status == GRPC_UNAVAILABLE && !op->fixed) {
        ep_failed(c, op->ep);
    }
    op->dial_failed = starts_with(msg, MSG_DIAL_PREFIX);
    if (c->user != NULL && !op->no_auth && is_token_error(msg) &&
        !op->auth_retried) {
        op->auth_retried = true;
        auth_invalidate(c);
        tq_arm(c, &op->retry_t, now);
        return;
    }
    retry = !op->fixed && status == GRPC_UNAVAILABLE &&
            (op->idempotent || unsent || never_sent(msg));
    wait = RETRY_WAIT_MS * (1 + op->attempts / (c->n_eps > 0 ? c->n_eps : 1));
    if (wait > RETRY_WAIT_MAX_MS) {
        wait = RETRY_WAIT_MAX_MS;
    }
    wait = jitter(c, wait);
    if (retry && now < op->deadline) {
        /* Past the deadline the deadline timer ends the call first, with
         * "context deadline exceeded" (clientv3's backoff wait does the
         * same). */
        tq_arm(c, &op->retry_t, now + wait);
        return;
    }
    op_finish(op, IK_EGRPC, status, msg, NULL);
}

static void op_unary_cb(void *data, int status, const char *msg,
                        const uint8_t *resp, size_t len)
{
    struct op *op = data;
    char buf[300];
    op->call = NULL;
    status = fix_status(op->c, op->ec, op->ep, status, &msg, buf, sizeof(buf));
    if (status == GRPC_OK) {
        ProtobufCMessage *m =
            protobuf_c_message_unpack(op->resp_desc, NULL, len, resp);
        if (m == NULL) {
            op_finish(op, IK_EPROTO, GRPC_INTERNAL,
                      "grpc: failed to unmarshal the received message", NULL);
        } else {
            op_finish(op, 0, GRPC_OK, "", m);
        }
        return;
    }
    op_failed(op, status, msg, false);
}

static void op_stream_msg(struct grpc_client_call *call, const uint8_t *d,
                          size_t len)
{
    struct op *op = grpc_client_call_data(call);
    ProtobufCMessage *m;
    if (op->got_msg) {
        return;
    }
    op->got_msg = true;
    m = protobuf_c_message_unpack(op->resp_desc, NULL, len, d);
    /* op_finish cancels the call (allowed from on_message). */
    if (m == NULL) {
        op_finish(op, IK_EPROTO, GRPC_INTERNAL,
                  "grpc: failed to unmarshal the received message", NULL);
    } else {
        op_finish(op, 0, GRPC_OK, "", m);
    }
}

static void op_stream_close(struct grpc_client_call *call, int status,
                            const char *msg)
{
    struct op *op = grpc_client_call_data(call);
    char buf[300];
    op->call = NULL;
    status = fix_status(op->c, op->ec, op->ep, status, &msg, buf, sizeof(buf));
    if (status == GRPC_OK) {
        status = GRPC_UNKNOWN; /* closed without an answer */
        msg = "EOF";
    }
    op_failed(op, status, msg, false);
}

static void op_send(struct op *op)
{
    struct ikclient *c = op->c;
    struct grpc_client_md md[1];
    size_t n_md = make_md(c, md);
    struct grpc_client_conn *conn;
    uint64_t now = now_ms(), timeout;
    int rv;

    op->ec = NULL;
    conn = ep_conn(c, op->ep, &op->ec);
    if (conn == NULL) {
        op_finish(op, IK_ENOMEM, GRPC_RESOURCE_EXHAUSTED,
                  ik_strerror(IK_ENOMEM), NULL);
        return;
    }
    timeout = op->deadline > now ? op->deadline - now : 1;
    op->attempts++;
    op->dial_failed = false;
    op->got_msg = false;
    if (op->first_msg) {
        static const struct grpc_client_call_cbs cbs = {op_stream_msg,
                                                        op_stream_close};
        rv = grpc_client_call_start(conn, op->method, timeout, md, n_md, &cbs,
                                    op, &op->call);
        if (rv == 0) {
            rv = grpc_client_call_send(op->call, op->req, op->req_len);
            if (rv != 0) {
                grpc_client_call_cancel(op->call);
                op->call = NULL;
            }
        }
    } else {
        rv = grpc_client_unary_bytes(conn, op->method, op->req, op->req_len,
                                     timeout, md, n_md, op_unary_cb, op,
                                     &op->call);
    }
    if (rv == IK_EIO) {
        op_failed(op, GRPC_UNAVAILABLE, "transport is closing", true);
    } else if (rv != 0) {
        op_finish(op, rv, grpc_code(rv), ik_strerror(rv), NULL);
    }
}

static void op_auth_resume(struct authw *w, int status, const char *msg)
{
    struct op *op = CONTAINER_OF(w, struct op, aw);
    if (status != GRPC_OK) {
        op_failed(op, status, msg, true);
        return;
    }
    op_send(op);
}

static void op_attempt(struct op *op)
{
    struct ikclient *c = op->c;
    int rv;
    if (!op->fixed) {
        op->ep = c->cur;
    }
    if (!op->no_auth && !auth_need(c, op->ep, &op->aw, &rv)) {
        if (rv != 0) {
            op_finish(op, rv, grpc_code(rv), ik_strerror(rv), NULL);
        }
        return;
    }
    op_send(op);
}

static void op_retry_fn(struct tentry *t)
{
    op_attempt(CONTAINER_OF(t, struct op, retry_t));
}

static void op_deadline_fn(struct tentry *t)
{
    struct op *op = CONTAINER_OF(t, struct op, deadline_t);
    op_finish(op, IK_EGRPC, GRPC_DEADLINE_EXCEEDED, MSG_DEADLINE, NULL);
}

static struct op *op_new(struct ikclient *c, const char *method,
                         const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc,
                         uint64_t timeout_ms)
{
    struct op *op = calloc(1, sizeof(*op));
    size_t len;
    if (op == NULL) {
        return NULL;
    }
    len = protobuf_c_message_get_packed_size(req);
    op->method = xstrdup(method);
    op->req = malloc(len > 0 ? len : 1);
    if (op->method == NULL || op->req == NULL) {
        free(op->method);
        free(op->req);
        free(op);
        return NULL;
    }
    op->req_len = protobuf_c_message_pack(req, op->req);
    op->c = c;
    op->resp_desc = resp_desc;
    op->deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : c->request_ms);
    op->deadline_t.fn = op_deadline_fn;
    op->retry_t.fn = op_retry_fn;
    op->aw.resume = op_auth_resume;
    op->next = c->ops;
    if (c->ops != NULL) {
        c->ops->prev = op;
    }
    c->ops = op;
    return op;
}

/* Run the loop until @op is done; hand out its result and free it. */
static int op_wait(struct op *op, ProtobufCMessage **resp,
                   struct ikclient_status *st)
{
    struct ikclient *c = op->c;
    int rc;
    op->sync = true;
    tq_arm(c, &op->deadline_t, op->deadline);
    op_attempt(op);
    while (!op->done) {
        uv_run(c->loop, UV_RUN_ONCE);
    }
    rc = op->rc;
    if (rc == 0) {
        *resp = op->resp;
        op->resp = NULL;
    } else {
        *resp = NULL;
        if (st != NULL) {
            *st = op->st;
        }
    }
    op_free(op);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Client */

int ikclient_new(const struct ikclient_config *cfg, struct ikclient **out,
                 char *errmsg, size_t errmsg_size)
{
    struct ikclient *c;
    char dummy[8];
    size_t i;
    int rv = IK_ENOMEM;

    *out = NULL;
    if (errmsg == NULL || errmsg_size == 0) {
        errmsg = dummy;
        errmsg_size = sizeof(dummy);
    }
    errmsg[0] = '\0';
    if (cfg == NULL || cfg->n_endpoints == 0 || cfg->endpoints == NULL) {
        snprintf(errmsg, errmsg_size, "no endpoints");
        return IK_EINVAL;
    }
    if ((cfg->user != NULL) != (cfg->password != NULL) && cfg->user == NULL) {
        snprintf(errmsg, errmsg_size, "password given without user");
        return IK_EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(errmsg, errmsg_size, "%s", ik_strerror(IK_ENOMEM));
        return IK_ENOMEM;
    }
    c->eps = calloc(cfg->n_endpoints, sizeof(*c->eps));
    if (c->eps == NULL) {
        goto fail;
    }
    for (i = 0; i < cfg->n_endpoints; i++) {
        struct ep *ep = &c->eps[i];
        ep->c = c;
        ep->dial_t.fn = dial_timer_fn;
        if (cfg->endpoints[i] == NULL) {
            snprintf(errmsg, errmsg_size, "endpoint %zu is NULL", i);
            rv = IK_EINVAL;
            goto fail;
        }
        rv = ep_parse(ep, cfg->endpoints[i], errmsg, errmsg_size);
        if (rv != 0) {
            goto fail;
        }
        c->n_eps++;
    }
    rv = IK_ENOMEM;
    c->dial_ms =
        cfg->dial_timeout_ms > 0 ? cfg->dial_timeout_ms : DEFAULT_DIAL_MS;
    c->request_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms
                                                : DEFAULT_REQUEST_MS;
    c->max_recv =
        cfg->max_recv_msg_size > 0 ? cfg->max_recv_msg_size : (size_t)INT32_MAX;
    c->user_agent =
        xstrdup(cfg->user_agent != NULL ? cfg->user_agent
                                        : "ikclient/" PACKAGE_VERSION);
    if (c->user_agent == NULL) {
        goto fail;
    }
    if (cfg->user != NULL) {
        c->user = xstrdup(cfg->user);
        c->password = xstrdup(cfg->password != NULL ? cfg->password : "");
        if (c->user == NULL || c->password == NULL) {
            goto fail;
        }
    }
    if (cfg->loop != NULL) {
        c->loop = cfg->loop;
    } else {
        c->loop = malloc(sizeof(*c->loop));
        if (c->loop == NULL) {
            goto fail;
        }
        if (uv_loop_init(c->loop) != 0) {
            free(c->loop);
            c->loop = NULL;
            snprintf(errmsg, errmsg_size, "uv_loop_init failed");
            rv = IK_EIO;
            goto fail;
        }
        c->own_loop = true;
    }
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->rng = uv_hrtime() | 1;
    *out = c;
    return 0;

fail:
    if (rv == IK_ENOMEM) {
        snprintf(errmsg, errmsg_size, "%s", ik_strerror(IK_ENOMEM));
    }
    if (c->eps != NULL) {
        for (i = 0; i < cfg->n_endpoints; i++) {
            free(c->eps[i].name);
            free(c->eps[i].host);
        }
    }
    free(c->eps);
    free(c->user_agent);
    free(c->user);
    free(c->password);
    free(c);
    return rv;
}

static void watch_free(struct ikclient_watch *w);
static void ka_free(struct ikclient_keepalive *ka);

static void timer_closed(uv_handle_t *h)
{
    struct ikclient *c = h->data;
    c->pending_closes--;
}

void ikclient_free(struct ikclient *c)
{
    size_t i;
    if (c == NULL) {
        return;
    }
    while (c->ops != NULL) {
        op_free(c->ops);
    }
    while (c->watches != NULL) {
        watch_free(c->watches);
    }
    while (c->kas != NULL) {
        ka_free(c->kas);
    }
    if (c->auth_call != NULL) {
        grpc_client_call_cancel(c->auth_call);
        c->auth_call = NULL;
    }
    c->tq = NULL;
    c->closing = true;
    for (i = 0; i < c->n_eps; i++) {
        if (c->eps[i].ec != NULL) {
            epconn_close(c, c->eps[i].ec);
            c->eps[i].ec = NULL;
        }
    }
    c->pending_closes++;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    while (c->pending_closes > 0) {
        uv_run(c->loop, UV_RUN_ONCE);
    }
    if (c->own_loop) {
        uv_run(c->loop, UV_RUN_NOWAIT);
        uv_loop_close(c->loop);
        free(c->loop);
    }
    for (i = 0; i < c->n_eps; i++) {
        free(c->eps[i].name);
        free(c->eps[i].host);
    }
    free(c->eps);
    free(c->user_agent);
    free(c->user);
    free(c->password);
    free(c->token);
    free(c);
}

uv_loop_t *ikclient_loop(struct ikclient *c)
{
    return c->loop;
}

size_t ikclient_endpoint_count(const struct ikclient *c)
{
    return c->n_eps;
}

const char *ikclient_endpoint(const struct ikclient *c, size_t i)
{
    return i < c->n_eps ? c->eps[i].name : NULL;
}

int ikclient_call(struct ikclient *c, const char *method,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, unsigned flags,
                  uint64_t timeout_ms, ProtobufCMessage **resp,
                  struct ikclient_status *st)
{
    struct op *op = op_new(c, method, req, resp_desc, timeout_ms);
    *resp = NULL;
    if (op == NULL) {
        st_set(st, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return IK_ENOMEM;
    }
    op->idempotent =
        (flags & IKCLIENT_IDEMPOTENT) != 0 || method_idempotent(method);
    if (flags & IKCLIENT_NO_FAILOVER) {
        op->fixed = true;
        op->ep = c->cur;
    }
    return op_wait(op, resp, st);
}

int ikclient_call_endpoint(struct ikclient *c, size_t endpoint,
                           const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc,
                           uint64_t timeout_ms, ProtobufCMessage **resp,
                           struct ikclient_status *st)
{
    struct op *op;
    *resp = NULL;
    if (endpoint >= c->n_eps) {
        st_set(st, GRPC_INVALID_ARGUMENT, "no such endpoint");
        return IK_EINVAL;
    }
    op = op_new(c, method, req, resp_desc, timeout_ms);
    if (op == NULL) {
        st_set(st, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return IK_ENOMEM;
    }
    op->fixed = true;
    op->ep = endpoint;
    return op_wait(op, resp, st);
}

int ikclient_authenticate(struct ikclient *c, uint64_t timeout_ms,
                          struct ikclient_status *st)
{
    Etcdserverpb__AuthenticateRequest req =
        ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    struct op *op;
    int rv;

    if (c->user == NULL) {
        return 0;
    }
    if (c->auth == AUTH_BUSY) {
        st_set(st, GRPC_FAILED_PRECONDITION, "authentication in progress");
        return IK_EINVAL;
    }
    req.name = c->user;
    req.password = c->password;
    op = op_new(c, "/etcdserverpb.Auth/Authenticate", &req.base,
                &etcdserverpb__authenticate_response__descriptor, timeout_ms);
    if (op == NULL) {
        st_set(st, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return IK_ENOMEM;
    }
    op->no_auth = true;
    op->idempotent = true; /* clientv3 waits for a ready endpoint */
    rv = op_wait(op, &m, st);
    if (rv == 0) {
        Etcdserverpb__AuthenticateResponse *r =
            (Etcdserverpb__AuthenticateResponse *)m;
        char *tok = xstrdup(r->token != NULL ? r->token : "");
        protobuf_c_message_free_unpacked(m, NULL);
        if (tok == NULL) {
            st_set(st, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
            return IK_ENOMEM;
        }
        free(c->token);
        c->token = tok;
        c->auth = AUTH_DONE;
    } else if (rv == IK_EGRPC && st != NULL &&
               strcmp(st->message, MSG_AUTH_NOT_ENABLED) == 0) {
        free(c->token);
        c->token = NULL;
        c->auth = AUTH_DONE; /* go on without a token */
    }
    return rv;
}

const char *ikclient_token(const struct ikclient *c)
{
    return c->token;
}

#define TYPED(fn, path, rq, rs, desc)                                     \
    int fn(struct ikclient *c, const rq *req, rs **resp,                  \
           struct ikclient_status *st)                                    \
    {                                                                     \
        ProtobufCMessage *m = NULL;                                       \
        int rv = ikclient_call(c, path, &req->base, &desc, 0, 0, &m, st); \
        *resp = (rs *)m;                                                  \
        return rv;                                                        \
    }

TYPED(ikclient_range, "/etcdserverpb.KV/Range", Etcdserverpb__RangeRequest,
      Etcdserverpb__RangeResponse, etcdserverpb__range_response__descriptor)
TYPED(ikclient_put, "/etcdserverpb.KV/Put", Etcdserverpb__PutRequest,
      Etcdserverpb__PutResponse, etcdserverpb__put_response__descriptor)
TYPED(ikclient_delete_range, "/etcdserverpb.KV/DeleteRange",
      Etcdserverpb__DeleteRangeRequest, Etcdserverpb__DeleteRangeResponse,
      etcdserverpb__delete_range_response__descriptor)
TYPED(ikclient_txn, "/etcdserverpb.KV/Txn", Etcdserverpb__TxnRequest,
      Etcdserverpb__TxnResponse, etcdserverpb__txn_response__descriptor)
TYPED(ikclient_compact, "/etcdserverpb.KV/Compact",
      Etcdserverpb__CompactionRequest, Etcdserverpb__CompactionResponse,
      etcdserverpb__compaction_response__descriptor)
TYPED(ikclient_lease_grant, "/etcdserverpb.Lease/LeaseGrant",
      Etcdserverpb__LeaseGrantRequest, Etcdserverpb__LeaseGrantResponse,
      etcdserverpb__lease_grant_response__descriptor)
TYPED(ikclient_lease_revoke, "/etcdserverpb.Lease/LeaseRevoke",
      Etcdserverpb__LeaseRevokeRequest, Etcdserverpb__LeaseRevokeResponse,
      etcdserverpb__lease_revoke_response__descriptor)
TYPED(ikclient_lease_time_to_live, "/etcdserverpb.Lease/LeaseTimeToLive",
      Etcdserverpb__LeaseTimeToLiveRequest,
      Etcdserverpb__LeaseTimeToLiveResponse,
      etcdserverpb__lease_time_to_live_response__descriptor)
TYPED(ikclient_member_list, "/etcdserverpb.Cluster/MemberList",
      Etcdserverpb__MemberListRequest, Etcdserverpb__MemberListResponse,
      etcdserverpb__member_list_response__descriptor)

int ikclient_status(struct ikclient *c, size_t endpoint,
                    Etcdserverpb__StatusResponse **resp,
                    struct ikclient_status *st)
{
    Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rv = ikclient_call_endpoint(
        c, endpoint, "/etcdserverpb.Maintenance/Status", &req.base,
        &etcdserverpb__status_response__descriptor, 0, &m, st);
    *resp = (Etcdserverpb__StatusResponse *)m;
    return rv;
}

int ikclient_call_async(struct ikclient *c, const char *method,
                        const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc,
                        unsigned flags, uint64_t timeout_ms,
                        ikclient_call_cb cb, void *data)
{
    struct op *op = op_new(c, method, req, resp_desc, timeout_ms);
    if (op == NULL) {
        return IK_ENOMEM;
    }
    op->idempotent =
        (flags & IKCLIENT_IDEMPOTENT) != 0 || method_idempotent(method);
    if (flags & IKCLIENT_NO_FAILOVER) {
        op->fixed = true;
        op->ep = c->cur;
    }
    op->cb = cb;
    op->data = data;
    c->n_async++;
    tq_arm(c, &op->deadline_t, op->deadline);
    tq_arm(c, &op->retry_t, now_ms()); /* first attempt from the loop */
    return 0;
}

int ikclient_keepalive_once(struct ikclient *c, int64_t id,
                            Etcdserverpb__LeaseKeepAliveResponse **resp,
                            struct ikclient_status *st)
{
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    struct op *op;
    int rv;

    *resp = NULL;
    req.id = id;
    op = op_new(c, "/etcdserverpb.Lease/LeaseKeepAlive", &req.base,
                &etcdserverpb__lease_keep_alive_response__descriptor, 0);
    if (op == NULL) {
        st_set(st, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return IK_ENOMEM;
    }
    op->first_msg = true;
    op->idempotent = true;
    rv = op_wait(op, &m, st);
    *resp = (Etcdserverpb__LeaseKeepAliveResponse *)m;
    return rv;
}

/* ------------------------------------------------------------------------ */
/* Watch */

static void watch_start(struct ikclient_watch *w);

static void watch_unlink(struct ikclient_watch *w)
{
    struct ikclient *c = w->c;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else if (c->watches == w) {
        c->watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    w->next = w->prev = NULL;
}

static void watch_free(struct ikclient_watch *w)
{
    struct ikclient *c = w->c;
    if (w->call != NULL) {
        grpc_client_call_cancel(w->call);
        w->call = NULL;
    }
    tq_disarm(c, &w->restart_t);
    auth_cancel_wait(c, &w->aw);
    watch_unlink(w);
    c->n_async--;
    if (w->req != NULL) {
        etcdserverpb__watch_create_request__free_unpacked(w->req, NULL);
    }
    free(w);
}

/* Deliver @resp; returns false when @w is gone (cancelled or done). */
static bool watch_deliver(struct ikclient_watch *w,
                          const Etcdserverpb__WatchResponse *resp, bool done,
                          const struct ikclient_status *st)
{
    w->in_cb = true;
    w->cb(w, w->data, resp, done, st);
    w->in_cb = false;
    if (w->cancelled || done) {
        watch_free(w);
        return false;
    }
    return true;
}

static void watch_end(struct ikclient_watch *w, int status, const char *msg)
{
    struct ikclient_status st;
    st_set(&st, status, msg);
    watch_deliver(w, NULL, true, &st);
}

/* Drop events the callback has seen already (revision below the resume
 * point); they were fully delivered because a revision's events travel in
 * one response. */
static void watch_dedup(struct ikclient_watch *w,
                        Etcdserverpb__WatchResponse *r)
{
    size_t i, j = 0;
    if (w->next_rev <= 0) {
        return;
    }
    for (i = 0; i < r->n_events; i++) {
        Mvccpb__Event *ev = r->events[i];
        if (ev->kv != NULL && ev->kv->mod_revision < w->next_rev) {
            mvccpb__event__free_unpacked(ev, NULL);
        } else {
            r->events[j++] = ev;
        }
    }
    r->n_events = j;
}

static void watch_on_message(struct grpc_client_call *call, const uint8_t *d,
                             size_t len)
{
    struct ikclient_watch *w = grpc_client_call_data(call);
    Etcdserverpb__WatchResponse *r;
    bool done = false, deliver = true;

    r = etcdserverpb__watch_response__unpack(NULL, len, d);
    if (r == NULL) {
        grpc_client_call_cancel(call);
        w->call = NULL;
        watch_end(w, GRPC_INTERNAL,
                  "grpc: failed to unmarshal the received message");
        return;
    }
    w->stream_got_msg = true;
    w->failures = 0;
    if (r->created && !w->stream_created) {
        w->stream_created = true;
        if (w->created_delivered && !r->canceled) {
            deliver = false; /* a resume: invisible */
        }
        w->created_delivered = true;
        if (w->next_rev == 0 && w->req->start_revision == 0 &&
            r->header != NULL) {
            w->next_rev = r->header->revision + 1;
        }
    } else if (r->n_events > 0) {
        size_t orig = r->n_events;
        watch_dedup(w, r);
        if (r->n_events > 0) {
            Mvccpb__Event *last = r->events[r->n_events - 1];
            if (last->kv != NULL) {
                w->last_rev = last->kv->mod_revision;
                w->next_rev = w->last_rev + 1;
            }
        } else if (orig > 0 && !r->canceled) {
            deliver = false;
        }
    } else if (!r->canceled && r->header != NULL && r->watch_id != -1 &&
               r->header->revision + 1 > w->next_rev) {
        /* progress notification of this watcher (etcd sends those only
         * to synced watchers): everything up to it was delivered. A
         * requested one (ikclient_watch_progress) has watch ID -1: etcd
         * 3.4 answers it at the store's revision even while this watcher
         * is still catching up, so it says nothing about delivery. */
        if (w->next_rev > 0 || w->req->start_revision <= r->header->revision) {
            w->next_rev = r->header->revision + 1;
        }
    }
    if (r->canceled) {
        done = true;
        grpc_client_call_cancel(call);
        w->call = NULL;
    }
    if (deliver) {
        struct ikclient_status st;
        st_set(&st, GRPC_OK, "");
        if (done && r->cancel_reason != NULL && r->cancel_reason[0] != '\0') {
            st_set(&st, GRPC_OK, r->cancel_reason);
        }
        watch_deliver(w, r, done, &st);
    } else if (done) {
        watch_free(w);
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static void watch_on_close(struct grpc_client_call *call, int status,
                           const char *msg)
{
    struct ikclient_watch *w = grpc_client_call_data(call);
    struct ikclient *c = w->c;
    char buf[300];
    uint64_t wait;

    w->call = NULL;
    status = fix_status(c, w->ec, w->ep, status, &msg, buf, sizeof(buf));
    if (c->user != NULL && is_token_error(msg) && w->failures < 3) {
        /* The token expired: authenticate again, then resume. */
        auth_invalidate(c);
        status = GRPC_UNAVAILABLE;
        w->stream_got_msg = false;
    }
    if (status != GRPC_UNAVAILABLE && status != GRPC_INTERNAL) {
        /* clientv3's isHaltErr: anything else ends the watch */
        if (status == GRPC_OK) {
            status = GRPC_UNKNOWN;
            msg = "EOF";
        }
        watch_end(w, status, msg);
        return;
    }
    ep_failed(c, w->ep);
    if (w->stream_got_msg) {
        wait = 0;
    } else {
        wait = 50u << (w->failures < 5 ? w->failures : 5);
        if (wait > 1000) {
            wait = 1000;
        }
        w->failures++;
    }
    tq_arm(c, &w->restart_t, now_ms() + wait);
}

static void watch_auth_resume(struct authw *aw, int status, const char *msg)
{
    struct ikclient_watch *w = CONTAINER_OF(aw, struct ikclient_watch, aw);
    if (status != GRPC_OK) {
        if (status == GRPC_UNAVAILABLE) {
            w->failures++;
            tq_arm(w->c, &w->restart_t, now_ms() + STREAM_RETRY_MS);
            return;
        }
        watch_end(w, status, msg);
        return;
    }
    watch_start(w);
}

static void watch_send_create(struct ikclient_watch *w, int *rv)
{
    Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
    int64_t orig = w->req->start_revision;
    wr.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wr.create_request = w->req;
    if (w->next_rev > 0) {
        w->req->start_revision = w->next_rev;
    }
    *rv = grpc_client_call_send_proto(w->call, &wr.base);
    w->req->start_revision = orig;
}

static int watch_send_progress(struct ikclient_watch *w)
{
    Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchProgressRequest pr =
        ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    wr.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    wr.progress_request = &pr;
    return grpc_client_call_send_proto(w->call, &wr.base);
}

static void watch_start(struct ikclient_watch *w)
{
    static const struct grpc_client_call_cbs cbs = {watch_on_message,
                                                    watch_on_close};
    struct ikclient *c = w->c;
    struct grpc_client_md md[1];
    struct grpc_client_conn *conn;
    size_t n_md;
    int rv;

    w->ep = c->cur;
    if (!auth_need(c, w->ep, &w->aw, &rv)) {
        if (rv != 0) {
            watch_end(w, grpc_code(rv), ik_strerror(rv));
        }
        return;
    }
    n_md = make_md(c, md);
    w->stream_created = false;
    w->stream_got_msg = false;
    conn = ep_conn(c, w->ep, &w->ec);
    if (conn == NULL) {
        watch_end(w, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return;
    }
    rv = grpc_client_call_start(conn, "/etcdserverpb.Watch/Watch", 0, md, n_md,
                                &cbs, w, &w->call);
    if (rv == 0) {
        watch_send_create(w, &rv);
        while (rv == 0 && w->progress_pending > 0) {
            rv = watch_send_progress(w);
            if (rv == 0) {
                w->progress_pending--;
            }
        }
        if (rv != 0) {
            grpc_client_call_cancel(w->call);
            w->call = NULL;
        }
    }
    if (rv == IK_EIO) {
        ep_failed(c, w->ep);
        w->failures++;
        tq_arm(c, &w->restart_t, now_ms() + STREAM_RETRY_MS);
    } else if (rv != 0) {
        watch_end(w, grpc_code(rv), ik_strerror(rv));
    }
}

static void watch_restart_fn(struct tentry *t)
{
    watch_start(CONTAINER_OF(t, struct ikclient_watch, restart_t));
}

int ikclient_watch(struct ikclient *c,
                   const Etcdserverpb__WatchCreateRequest *req,
                   ikclient_watch_cb cb, void *data,
                   struct ikclient_watch **out)
{
    struct ikclient_watch *w = calloc(1, sizeof(*w));
    uint8_t *buf;
    size_t len;

    *out = NULL;
    if (w == NULL) {
        return IK_ENOMEM;
    }
    len = protobuf_c_message_get_packed_size(&req->base);
    buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        free(w);
        return IK_ENOMEM;
    }
    protobuf_c_message_pack(&req->base, buf);
    w->req = etcdserverpb__watch_create_request__unpack(NULL, len, buf);
    free(buf);
    if (w->req == NULL) {
        free(w);
        return IK_ENOMEM;
    }
    w->c = c;
    w->cb = cb;
    w->data = data;
    w->aw.resume = watch_auth_resume;
    w->restart_t.fn = watch_restart_fn;
    w->next = c->watches;
    if (c->watches != NULL) {
        c->watches->prev = w;
    }
    c->watches = w;
    c->n_async++;
    tq_arm(c, &w->restart_t, now_ms());
    *out = w;
    return 0;
}

int ikclient_watch_progress(struct ikclient_watch *w)
{
    if (w->call == NULL) {
        /* the stream is not up yet (or being re-created): ask right after
         * its create request, as clientv3 queues it on its stream */
        w->progress_pending++;
        return 0;
    }
    return watch_send_progress(w);
}

void ikclient_watch_cancel(struct ikclient_watch *w)
{
    if (w == NULL) {
        return;
    }
    if (w->in_cb) {
        w->cancelled = true;
        if (w->call != NULL) {
            grpc_client_call_cancel(w->call);
            w->call = NULL;
        }
        return;
    }
    watch_free(w);
}

int64_t ikclient_watch_last_revision(const struct ikclient_watch *w)
{
    return w->last_rev;
}

/* ------------------------------------------------------------------------ */
/* Keep-alive */

static void ka_start(struct ikclient_keepalive *ka);

static void ka_free(struct ikclient_keepalive *ka)
{
    struct ikclient *c = ka->c;
    if (ka->call != NULL) {
        grpc_client_call_cancel(ka->call);
        ka->call = NULL;
    }
    tq_disarm(c, &ka->send_t);
    tq_disarm(c, &ka->deadline_t);
    auth_cancel_wait(c, &ka->aw);
    if (ka->prev != NULL) {
        ka->prev->next = ka->next;
    } else if (c->kas == ka) {
        c->kas = ka->next;
    }
    if (ka->next != NULL) {
        ka->next->prev = ka->prev;
    }
    c->n_async--;
    free(ka);
}

static void ka_deliver(struct ikclient_keepalive *ka,
                       const Etcdserverpb__LeaseKeepAliveResponse *resp,
                       bool done, const struct ikclient_status *st)
{
    ka->in_cb = true;
    ka->cb(ka, ka->data, resp, done, st);
    ka->in_cb = false;
    if (ka->stopped || done) {
        ka_free(ka);
    }
}

static uint64_t ka_period(const struct ikclient_keepalive *ka)
{
    uint64_t p = ka->ttl > 0 ? (uint64_t)ka->ttl * 1000u / 3u : 0;
    return p > KA_MIN_PERIOD_MS ? p : KA_MIN_PERIOD_MS;
}

static int ka_send(struct ikclient_keepalive *ka)
{
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = ka->id;
    return grpc_client_call_send_proto(ka->call, &req.base);
}

static void ka_on_message(struct grpc_client_call *call, const uint8_t *d,
                          size_t len)
{
    struct ikclient_keepalive *ka = grpc_client_call_data(call);
    struct ikclient *c = ka->c;
    Etcdserverpb__LeaseKeepAliveResponse *r;
    struct ikclient_status st;
    uint64_t now = now_ms();

    r = etcdserverpb__lease_keep_alive_response__unpack(NULL, len, d);
    if (r == NULL) {
        return; /* ignore a garbled answer; the deadline still runs */
    }
    ka->stream_got_msg = true;
    st_set(&st, GRPC_OK, "");
    if (r->ttl <= 0) {
        grpc_client_call_cancel(call);
        ka->call = NULL;
        ka_deliver(ka, r, true, &st);
    } else {
        ka->ttl = r->ttl;
        tq_arm(c, &ka->deadline_t, now + (uint64_t)r->ttl * 1000u);
        tq_arm(c, &ka->send_t, now + ka_period(ka));
        ka_deliver(ka, r, false, &st);
    }
    etcdserverpb__lease_keep_alive_response__free_unpacked(r, NULL);
}

static void ka_on_close(struct grpc_client_call *call, int status,
                        const char *msg)
{
    struct ikclient_keepalive *ka = grpc_client_call_data(call);
    struct ikclient *c = ka->c;
    char buf[300];

    ka->call = NULL;
    status = fix_status(c, ka->ec, ka->ep, status, &msg, buf, sizeof(buf));
    if (status == GRPC_OK) {
        status = GRPC_UNKNOWN;
        msg = "EOF";
    }
    st_set(&ka->last_err, status, msg);
    if (c->user != NULL && is_token_error(msg)) {
        auth_invalidate(c);
    }
    ep_failed(c, ka->ep);
    /* clientv3 retries keep-alive streams until the lease's deadline. */
    tq_arm(c, &ka->send_t,
           now_ms() + (ka->stream_got_msg ? 0 : STREAM_RETRY_MS));
}

static void ka_auth_resume(struct authw *aw, int status, const char *msg)
{
    struct ikclient_keepalive *ka =
        CONTAINER_OF(aw, struct ikclient_keepalive, aw);
    if (status != GRPC_OK) {
        st_set(&ka->last_err, status, msg);
        tq_arm(ka->c, &ka->send_t, now_ms() + STREAM_RETRY_MS);
        return;
    }
    ka_start(ka);
}

static void ka_start(struct ikclient_keepalive *ka)
{
    static const struct grpc_client_call_cbs cbs = {ka_on_message, ka_on_close};
    struct ikclient *c = ka->c;
    struct grpc_client_md md[1];
    struct grpc_client_conn *conn;
    size_t n_md;
    int rv;

    ka->ep = c->cur;
    if (!auth_need(c, ka->ep, &ka->aw, &rv)) {
        if (rv != 0) {
            st_set(&ka->last_err, grpc_code(rv), ik_strerror(rv));
            tq_arm(c, &ka->send_t, now_ms() + STREAM_RETRY_MS);
        }
        return;
    }
    n_md = make_md(c, md);
    ka->stream_got_msg = false;
    conn = ep_conn(c, ka->ep, &ka->ec);
    rv =
        conn == NULL
            ? IK_ENOMEM
            : grpc_client_call_start(conn, "/etcdserverpb.Lease/LeaseKeepAlive",
                                     0, md, n_md, &cbs, ka, &ka->call);
    if (rv == 0) {
        rv = ka_send(ka);
        if (rv != 0) {
            grpc_client_call_cancel(ka->call);
            ka->call = NULL;
        }
    }
    if (rv != 0) {
        st_set(&ka->last_err, rv == IK_EIO ? GRPC_UNAVAILABLE : grpc_code(rv),
               rv == IK_EIO ? "transport is closing" : ik_strerror(rv));
        tq_arm(c, &ka->send_t, now_ms() + STREAM_RETRY_MS);
        return;
    }
    tq_arm(c, &ka->send_t, now_ms() + ka_period(ka));
}

static void ka_send_fn(struct tentry *t)
{
    struct ikclient_keepalive *ka =
        CONTAINER_OF(t, struct ikclient_keepalive, send_t);
    if (ka->call == NULL) {
        if (!ka->aw.waiting) {
            ka_start(ka);
        }
        return;
    }
    if (ka_send(ka) != 0) {
        /* out of memory: try again later */
    }
    tq_arm(ka->c, &ka->send_t, now_ms() + ka_period(ka));
}

static void ka_deadline_fn(struct tentry *t)
{
    struct ikclient_keepalive *ka =
        CONTAINER_OF(t, struct ikclient_keepalive, deadline_t);
    struct ikclient_status st;
    if (ka->last_err.code != GRPC_OK) {
        st = ka->last_err;
    } else {
        st_set(&st, GRPC_DEADLINE_EXCEEDED, MSG_DEADLINE);
    }
    if (ka->call != NULL) {
        grpc_client_call_cancel(ka->call);
        ka->call = NULL;
    }
    ka_deliver(ka, NULL, true, &st);
}

int ikclient_keepalive(struct ikclient *c, int64_t id, ikclient_keepalive_cb cb,
                       void *data, struct ikclient_keepalive **out)
{
    struct ikclient_keepalive *ka = calloc(1, sizeof(*ka));
    uint64_t now = now_ms();
    *out = NULL;
    if (ka == NULL) {
        return IK_ENOMEM;
    }
    ka->c = c;
    ka->id = id;
    ka->cb = cb;
    ka->data = data;
    ka->aw.resume = ka_auth_resume;
    ka->send_t.fn = ka_send_fn;
    ka->deadline_t.fn = ka_deadline_fn;
    ka->next = c->kas;
    if (c->kas != NULL) {
        c->kas->prev = ka;
    }
    c->kas = ka;
    c->n_async++;
    /* clientv3: the first answer is awaited for dial timeout + 1 s. */
    tq_arm(c, &ka->deadline_t, now + c->dial_ms + 1000u);
    tq_arm(c, &ka->send_t, now);
    *out = ka;
    return 0;
}

void ikclient_keepalive_stop(struct ikclient_keepalive *ka)
{
    if (ka == NULL) {
        return;
    }
    if (ka->in_cb) {
        ka->stopped = true;
        if (ka->call != NULL) {
            grpc_client_call_cancel(ka->call);
            ka->call = NULL;
        }
        tq_disarm(ka->c, &ka->send_t);
        tq_disarm(ka->c, &ka->deadline_t);
        return;
    }
    ka_free(ka);
}

/* ------------------------------------------------------------------------ */
/* Running */

static void run_timer_fn(struct tentry *t)
{
    struct ikclient *c = CONTAINER_OF(t, struct ikclient, run_t);
    c->run_expired = true;
}

int ikclient_run(struct ikclient *c, uint64_t timeout_ms)
{
    c->broken = false;
    c->run_expired = false;
    c->run_t.fn = run_timer_fn;
    if (timeout_ms > 0) {
        tq_arm(c, &c->run_t, now_ms() + timeout_ms);
    }
    c->in_run = true;
    while (!c->broken && !c->run_expired && c->n_async > 0) {
        uv_run(c->loop, UV_RUN_ONCE);
    }
    c->in_run = false;
    tq_disarm(c, &c->run_t);
    c->broken = false;
    return 0;
}

void ikclient_break(struct ikclient *c)
{
    c->broken = true;
    if (c->in_run) {
        uv_stop(c->loop);
    }
}

const char *ikclient_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    };
    if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0])) {
        return NULL;
    }
    return names[code];
}

const char *ikclient_strstatus(const struct ikclient_status *st, char *buf,
                               size_t size)
{
    const char *name;
    if (size == 0) {
        return buf;
    }
    if (st == NULL) {
        snprintf(buf, size, "OK");
    } else if ((name = ikclient_code_name(st->code)) != NULL) {
        snprintf(buf, size, "%s: %s", name, st->message);
    } else {
        snprintf(buf, size, "Code(%d): %s", st->code, st->message);
    }
    return buf;
}
