/*
 * Tests for the client library (client/ikclient.h).
 *
 * Fake etcd servers are built from ikada's gRPC server core and its libuv
 * glue (server/grpc.h, server/grpc_uv.h) and run on the same loop as the
 * client (config.loop), so each test decides exactly when a server answers,
 * refuses, or drops its connections. A server is "killed" by closing it
 * (listener included) from a timer, i.e. outside its handlers.
 *
 * Allocation failures: the test binary is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free so a budget
 * can make the library's own allocations fail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/ikclient.h"
#include "proto/rpc.pb-c.h"
#include "server/errors.h"
#include "server/grpc.h"
#include "server/grpc_uv.h"

/* ------------------------------------------------------------------------ */
/* Allocation failure injection */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *q, size_t size);
void __wrap_free(void *p);

static struct {
    bool on;
    long budget; /* successful allocations left while on */
    long live;   /* allocations minus frees while on */
    long failures;
} fa;

void *__wrap_malloc(size_t size)
{
    void *p;
    if (fa.on) {
        if (fa.budget == 0) {
            fa.failures++;
            return NULL;
        }
        fa.budget--;
    }
    p = __real_malloc(size);
    if (fa.on && p != NULL) {
        fa.live++;
    }
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    void *p;
    if (fa.on) {
        if (fa.budget == 0) {
            fa.failures++;
            return NULL;
        }
        fa.budget--;
    }
    p = __real_calloc(n, size);
    if (fa.on && p != NULL) {
        fa.live++;
    }
    return p;
}

void *__wrap_realloc(void *q, size_t size)
{
    void *p;
    if (fa.on) {
        if (fa.budget == 0) {
            fa.failures++;
            return NULL;
        }
        fa.budget--;
    }
    p = __real_realloc(q, size);
    if (fa.on && p != NULL && q == NULL) {
        fa.live++;
    }
    return p;
}

void __wrap_free(void *p)
{
    if (fa.on && p != NULL) {
        fa.live--;
    }
    __real_free(p);
}

/* ------------------------------------------------------------------------ */
/* Fake servers */

#define MAX_HELD 16

enum range_mode { RM_OK, RM_NOLEADER, RM_HOLD };
enum put_mode { PM_OK, PM_NOLEADER, PM_DROP };

struct fsrv {
    struct grpc_uv_server s;
    uv_timer_t kill_timer;
    int id;
    uint16_t port;
    bool up;
    bool closed_cb_ran;
    enum range_mode range_mode;
    enum put_mode put_mode;
    int ranges, puts, keepalives, watch_creates;
    int64_t watch_start_revs[8];
    /* watch script: revisions to send after created; kill after them */
    int64_t watch_events[8];
    int n_watch_events;
    bool watch_kill_after;
    int64_t watch_compacted; /* > 0: end with a compaction cancel */
    int64_t header_rev;
    /* keep-alive: answers with these TTLs in turn (last one repeats) */
    int64_t ka_ttls[8];
    int n_ka_ttls;
    bool ka_kill_after_first;
    struct grpc_call *held[MAX_HELD];
    int n_held;
    char last_token[64];
    /* progress requests seen; an event to send after the first answer */
    int progress_reqs;
    int64_t event_after_progress;
};

static struct fsrv *call_srv(struct grpc_call *call)
{
    struct grpc_uv_server *s =
        grpc_uv_conn_server(grpc_conn_data(grpc_call_conn(call)));
    return s->data;
}

static void fsrv_closed(struct grpc_uv_server *s)
{
    struct fsrv *f = s->data;
    f->closed_cb_ran = true;
}

static void kill_timer_cb(uv_timer_t *t)
{
    struct fsrv *f = t->data;
    if (f->up) {
        f->up = false;
        f->n_held = 0; /* their on_cancel fires while closing */
        grpc_uv_server_close(&f->s, fsrv_closed);
    }
}

/* Kill @f soon (from a timer, never inside a handler). */
static void fsrv_kill_soon(struct fsrv *f)
{
    uv_timer_start(&f->kill_timer, kill_timer_cb, 0, 0);
}

static void note_token(struct fsrv *f, struct grpc_call *call)
{
    const char *tok = grpc_call_metadata(call, "token");
    snprintf(f->last_token, sizeof(f->last_token), "%s",
             tok != NULL ? tok : "");
}

static void range_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    struct fsrv *f = call_srv(call);
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    (void)d;
    (void)n;
    f->ranges++;
    note_token(f, call);
    switch (f->range_mode) {
    case RM_NOLEADER:
        grpc_call_finish_error(call, IK_ENOLEADER);
        return;
    case RM_HOLD:
        assert_true(f->n_held < MAX_HELD);
        f->held[f->n_held++] = call;
        return;
    case RM_OK:
        break;
    }
    resp.count = f->id;
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void held_cancel(struct grpc_call *call)
{
    struct fsrv *f = call_srv(call);
    int i;
    for (i = 0; i < f->n_held; i++) {
        if (f->held[i] == call) {
            f->held[i] = f->held[--f->n_held];
            break;
        }
    }
}

static void put_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    struct fsrv *f = call_srv(call);
    Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
    (void)d;
    (void)n;
    f->puts++;
    switch (f->put_mode) {
    case PM_NOLEADER:
        grpc_call_finish_error(call, IK_ENOLEADER);
        return;
    case PM_DROP:
        assert_true(f->n_held < MAX_HELD);
        f->held[f->n_held++] = call;
        fsrv_kill_soon(f);
        return;
    case PM_OK:
        break;
    }
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void send_watch_resp(struct grpc_call *call, struct fsrv *f,
                            bool created, int64_t rev)
{
    Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    Mvccpb__Event ev = MVCCPB__EVENT__INIT;
    Mvccpb__Event *evs[1] = {&ev};

    hdr.revision = rev > 0 ? rev : f->header_rev;
    resp.header = &hdr;
    resp.watch_id = 0;
    resp.created = created;
    if (rev > 0) {
        kv.key.data = (uint8_t *)"k";
        kv.key.len = 1;
        kv.mod_revision = rev;
        ev.kv = &kv;
        resp.n_events = 1;
        resp.events = evs;
    }
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
}

static void watch_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    struct fsrv *f = call_srv(call);
    Etcdserverpb__WatchRequest *req =
        etcdserverpb__watch_request__unpack(NULL, n, d);
    int i;

    assert_non_null(req);
    if (req->request_union_case ==
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST) {
        assert_true(f->watch_creates < 8);
        f->watch_start_revs[f->watch_creates++] =
            req->create_request->start_revision;
        send_watch_resp(call, f, true, 0);
        for (i = 0; i < f->n_watch_events; i++) {
            send_watch_resp(call, f, false, f->watch_events[i]);
        }
        if (f->watch_compacted > 0) {
            Etcdserverpb__WatchResponse resp =
                ETCDSERVERPB__WATCH_RESPONSE__INIT;
            Etcdserverpb__ResponseHeader hdr =
                ETCDSERVERPB__RESPONSE_HEADER__INIT;
            hdr.revision = f->header_rev;
            resp.header = &hdr;
            resp.canceled = 1;
            resp.compact_revision = f->watch_compacted;
            resp.cancel_reason = "mvcc: required revision has been compacted";
            assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
        }
        if (f->watch_kill_after) {
            fsrv_kill_soon(f);
        }
    } else if (req->request_union_case ==
               ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST) {
        /* as etcd 3.4: watch ID -1, the store's revision, even for a
         * watcher that is still catching up */
        Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
        Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        f->progress_reqs++;
        hdr.revision = f->header_rev;
        resp.header = &hdr;
        resp.watch_id = -1;
        assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
        if (f->event_after_progress > 0) {
            send_watch_resp(call, f, false, f->event_after_progress);
            f->event_after_progress = 0;
        }
    }
    etcdserverpb__watch_request__free_unpacked(req, NULL);
}

static void ka_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    struct fsrv *f = call_srv(call);
    Etcdserverpb__LeaseKeepAliveRequest *req =
        etcdserverpb__lease_keep_alive_request__unpack(NULL, n, d);
    Etcdserverpb__LeaseKeepAliveResponse resp =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    int i;

    assert_non_null(req);
    i = f->keepalives < f->n_ka_ttls ? f->keepalives : f->n_ka_ttls - 1;
    f->keepalives++;
    resp.id = req->id;
    resp.ttl = f->n_ka_ttls > 0 ? f->ka_ttls[i] : 10;
    etcdserverpb__lease_keep_alive_request__free_unpacked(req, NULL);
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    if (f->ka_kill_after_first) {
        f->ka_kill_after_first = false;
        fsrv_kill_soon(f);
    }
}

static void auth_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    Etcdserverpb__AuthenticateRequest *req =
        etcdserverpb__authenticate_request__unpack(NULL, n, d);
    Etcdserverpb__AuthenticateResponse resp =
        ETCDSERVERPB__AUTHENTICATE_RESPONSE__INIT;
    assert_non_null(req);
    if (strcmp(req->name, "root") != 0 || strcmp(req->password, "pw") != 0) {
        etcdserverpb__authenticate_request__free_unpacked(req, NULL);
        grpc_call_finish(
            call, GRPC_INVALID_ARGUMENT,
            "etcdserver: authentication failed, invalid user ID or password");
        return;
    }
    etcdserverpb__authenticate_request__free_unpacked(req, NULL);
    resp.token = "tok.123";
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void stream_cancel(struct grpc_call *call)
{
    (void)call;
}

static const struct grpc_method fake_methods[] = {
    {"/etcdserverpb.KV/Range", GRPC_UNARY, range_msg, NULL, held_cancel, NULL},
    {"/etcdserverpb.KV/Put", GRPC_UNARY, put_msg, NULL, held_cancel, NULL},
    {"/etcdserverpb.Watch/Watch", GRPC_BIDI_STREAMING, watch_msg, NULL,
     stream_cancel, NULL},
    {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI_STREAMING, ka_msg, NULL,
     stream_cancel, NULL},
    {"/etcdserverpb.Auth/Authenticate", GRPC_UNARY, auth_msg, NULL, NULL, NULL},
};

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Starts fake server @id listening on 127.0.0.1 on a port the kernel
 * picks (port 0), read back into f->port: fixed ports could collide with
 * the ephemeral ports of other tests' outgoing connections. */
static void fsrv_start(struct fsrv *f, uv_loop_t *loop, int id)
{
    struct grpc_server_config cfg;
    char errmsg[IK_ERRMSG_SIZE];

    memset(&cfg, 0, sizeof(cfg));
    cfg.methods = fake_methods;
    cfg.n_methods = sizeof(fake_methods) / sizeof(fake_methods[0]);
    cfg.now_ms = mono_ms;
    f->id = id;
    f->s.data = f;
    assert_int_equal(grpc_uv_server_init(&f->s, loop, &cfg), 0);
    assert_int_equal(grpc_uv_server_listen(&f->s, "127.0.0.1", 0, errmsg), 0);
    /* the bound port, read with uv_tcp_getsockname() by grpc_uv */
    f->port = grpc_uv_server_port(&f->s);
    assert_true(f->port != 0);
    uv_timer_init(loop, &f->kill_timer);
    f->kill_timer.data = f;
    f->up = true;
}

/* ------------------------------------------------------------------------ */
/* Fixture: a loop, up to two fake servers, a client on the loop */

struct fx {
    uv_loop_t loop;
    struct fsrv srv[2];
    int n_srv;
    struct ikclient *c;
    char eps[3][64];
    int refuse_fd; /* first_refuses: the refusing socket, else -1 */
};

/* A loopback TCP socket bound to a kernel-chosen port and not listening:
 * connects to that port are refused for as long as the socket is open.
 * Returns the fd; *port gets the port. */
static int refusing_socket(uint16_t *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static struct fx *fx_new(int n_srv, bool first_refuses, uint64_t req_ms)
{
    struct fx *t = calloc(1, sizeof(*t));
    const char *eps[3];
    struct ikclient_config cfg;
    char err[256];
    int i, n = 0;

    assert_non_null(t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    t->refuse_fd = -1;
    if (first_refuses) {
        /* bound, but nothing listens there */
        uint16_t port;
        t->refuse_fd = refusing_socket(&port);
        snprintf(t->eps[n], sizeof(t->eps[n]), "http://127.0.0.1:%u",
                 (unsigned)port);
        n++;
    }
    for (i = 0; i < n_srv; i++) {
        fsrv_start(&t->srv[i], &t->loop, i + 1);
        snprintf(t->eps[n], sizeof(t->eps[n]), "127.0.0.1:%u",
                 (unsigned)t->srv[i].port);
        n++;
    }
    t->n_srv = n_srv;
    for (i = 0; i < n; i++) {
        eps[i] = t->eps[i];
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = (size_t)n;
    cfg.loop = &t->loop;
    cfg.request_timeout_ms = req_ms;
    cfg.dial_timeout_ms = 1000;
    assert_int_equal(ikclient_new(&cfg, &t->c, err, sizeof(err)), 0);
    return t;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void fx_free(struct fx *t)
{
    int i;
    ikclient_free(t->c);
    for (i = 0; i < t->n_srv; i++) {
        if (t->srv[i].up) {
            t->srv[i].up = false;
            grpc_uv_server_close(&t->srv[i].s, fsrv_closed);
        }
        uv_close((uv_handle_t *)&t->srv[i].kill_timer, NULL);
    }
    uv_run(&t->loop, UV_RUN_DEFAULT);
    for (i = 0; i < t->n_srv; i++) {
        assert_true(t->srv[i].closed_cb_ran);
    }
    if (uv_loop_close(&t->loop) != 0) {
        uv_walk(&t->loop, walk_close, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        fail_msg("handles left open on the loop");
    }
    if (t->refuse_fd >= 0) {
        close(t->refuse_fd);
    }
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Tests */

static int do_range(struct ikclient *c, Etcdserverpb__RangeResponse **resp,
                    struct ikclient_status *st)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    return ikclient_range(c, &req, resp, st);
}

static int do_put(struct ikclient *c, struct ikclient_status *st)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    int rv;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    rv = ikclient_put(c, &req, &resp, st);
    if (rv == 0) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } else {
        assert_null(resp);
    }
    return rv;
}

static void test_endpoints(void **state)
{
    const char *good[] = {"http://127.0.0.1:2379", "localhost:2379",
                          "[::1]:2380", "http://host.example:1/"};
    const char *norm[] = {"127.0.0.1:2379", "localhost:2379", "[::1]:2380",
                          "host.example:1"};
    const char *bad[] = {"https://127.0.0.1:2379",
                         "127.0.0.1",
                         "host:0",
                         "host:99999",
                         "host:12x",
                         "unix:///tmp/x",
                         ":2379",
                         "a:b:1"};
    struct ikclient_config cfg;
    struct ikclient *c;
    char err[256];
    size_t i;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = good;
    cfg.n_endpoints = 4;
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(ikclient_endpoint_count(c), 4);
    for (i = 0; i < 4; i++) {
        assert_string_equal(ikclient_endpoint(c, i), norm[i]);
    }
    assert_null(ikclient_endpoint(c, 4));
    assert_non_null(ikclient_loop(c));
    ikclient_free(c);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.endpoints = &bad[i];
        cfg.n_endpoints = 1;
        c = (struct ikclient *)&cfg; /* must be reset to NULL */
        assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), IK_EINVAL);
        assert_null(c);
        assert_true(err[0] != '\0');
        if (i == 0) {
            assert_string_equal(err, "TLS is not supported");
        }
    }
    cfg.n_endpoints = 0;
    assert_int_equal(ikclient_new(&cfg, &c, NULL, 0), IK_EINVAL);
    ikclient_free(NULL);
}

static void test_strstatus(void **state)
{
    struct ikclient_status st = {14, "etcdserver: no leader", false};
    char buf[128];
    (void)state;
    assert_string_equal(ikclient_strstatus(&st, buf, sizeof(buf)),
                        "Unavailable: etcdserver: no leader");
    st.code = 99;
    assert_string_equal(ikclient_strstatus(&st, buf, sizeof(buf)),
                        "Code(99): etcdserver: no leader");
    {
        const char *msg;
        assert_int_equal(ik_grpc_status(IK_EGRPC, &msg), GRPC_UNKNOWN);
    }
}

/* First endpoint: nothing listening. Second answers. */
static void test_failover_refused(void **state)
{
    struct fx *t = fx_new(1, true, 3000);
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    (void)state;

    assert_int_equal(do_range(t->c, &resp, &st), 0);
    assert_int_equal(resp->count, 1);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_int_equal(t->srv[0].ranges, 1);
    /* A write too: it never reached the refusing endpoint, so it is safe
     * to send elsewhere (the client now sits on the good endpoint). */
    assert_int_equal(do_put(t->c, &st), 0);
    assert_int_equal(t->srv[0].puts, 1);

    /* The per-endpoint call reports the refusal as is. */
    {
        Etcdserverpb__StatusResponse *sr;
        assert_int_equal(ikclient_status(t->c, 0, &sr, &st), IK_EGRPC);
        assert_null(sr);
        assert_int_equal(st.code, GRPC_UNAVAILABLE);
        assert_non_null(strstr(st.message, "connect: connection refused"));
        assert_non_null(strstr(st.message, "Error while dialing dial tcp"));
    }
    fx_free(t);
}

/* A write whose endpoint refuses: retried on the next one (never sent). */
static void test_put_refused_then_ok(void **state)
{
    struct fx *t = fx_new(1, true, 3000);
    struct ikclient_status st;
    (void)state;
    assert_int_equal(do_put(t->c, &st), 0);
    assert_int_equal(t->srv[0].puts, 1);
    fx_free(t);
}

/* "etcdserver: no leader" on A: an idempotent Range is retried on B; a
 * Put is not. */
static void test_noleader_range_retried(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    (void)state;

    t->srv[0].range_mode = RM_NOLEADER;
    assert_int_equal(do_range(t->c, &resp, &st), 0);
    assert_int_equal(resp->count, 2);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_int_equal(t->srv[0].ranges, 1);
    assert_int_equal(t->srv[1].ranges, 1);
    fx_free(t);
}

static void test_noleader_put_not_retried(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    struct ikclient_status st;
    (void)state;

    t->srv[0].put_mode = PM_NOLEADER;
    assert_int_equal(do_put(t->c, &st), IK_EGRPC);
    assert_int_equal(st.code, GRPC_UNAVAILABLE);
    assert_string_equal(st.message, "etcdserver: no leader");
    assert_int_equal(t->srv[0].puts, 1);
    assert_int_equal(t->srv[1].puts, 0);
    /* The client moved on: the next call goes to B. */
    assert_int_equal(do_put(t->c, &st), 0);
    assert_int_equal(t->srv[1].puts, 1);
    fx_free(t);
}

/* The connection drops after the Put was sent: not retried. */
static void test_put_dropped_not_retried(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    struct ikclient_status st;
    (void)state;

    t->srv[0].put_mode = PM_DROP;
    assert_int_equal(do_put(t->c, &st), IK_EGRPC);
    assert_int_equal(st.code, GRPC_UNAVAILABLE);
    assert_string_equal(st.message, "transport is closing");
    assert_int_equal(t->srv[0].puts, 1);
    assert_int_equal(t->srv[1].puts, 0);
    fx_free(t);
}

/* Same drop with IKCLIENT_IDEMPOTENT: retried on B. */
static void test_put_dropped_idempotent_retried(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    struct ikclient_status st;
    (void)state;

    t->srv[0].put_mode = PM_DROP;
    assert_int_equal(ikclient_call(t->c, "/etcdserverpb.KV/Put", &req.base,
                                   &etcdserverpb__put_response__descriptor,
                                   IKCLIENT_IDEMPOTENT, 0, &resp, &st),
                     0);
    assert_non_null(resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    assert_int_equal(t->srv[0].puts, 1);
    assert_int_equal(t->srv[1].puts, 1);
    fx_free(t);
}

/* A server that never answers: DEADLINE_EXCEEDED after the timeout. */
static void test_deadline(void **state)
{
    struct fx *t = fx_new(1, false, 300);
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    uint64_t t0 = mono_ms(), el;
    (void)state;

    t->srv[0].range_mode = RM_HOLD;
    assert_int_equal(do_range(t->c, &resp, &st), IK_EGRPC);
    el = mono_ms() - t0;
    assert_null(resp);
    assert_int_equal(st.code, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(st.message, "context deadline exceeded");
    assert_false(st.unreachable); /* sent, not answered */
    assert_true(el >= 290 && el < 1500);
    fx_free(t);
}

/* Every endpoint down: the call keeps failing over until its deadline. */
static void test_all_down_deadline(void **state)
{
    struct fx *t = fx_new(0, true, 300);
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    uint64_t t0 = mono_ms(), el;
    (void)state;

    assert_int_equal(do_range(t->c, &resp, &st), IK_EGRPC);
    el = mono_ms() - t0;
    print_message("all down: %d %s after %lu ms\n", st.code, st.message,
                  (unsigned long)el);
    assert_int_equal(st.code, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(st.message, "context deadline exceeded");
    assert_true(st.unreachable); /* never connected */
    assert_true(el >= 290 && el < 1500);
    fx_free(t);
}

/* Async call + ikclient_run()/ikclient_break(). */
struct async_res {
    int calls;
    int rc;
    int64_t count;
    struct ikclient *c;
};

static void async_cb(void *data, int rc, ProtobufCMessage *resp,
                     const struct ikclient_status *st)
{
    struct async_res *r = data;
    r->calls++;
    r->rc = rc;
    (void)st;
    if (rc == 0) {
        r->count = ((Etcdserverpb__RangeResponse *)resp)->count;
        protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        assert_null(resp);
    }
}

static void test_async(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    struct async_res r = {0, -1, 0, NULL};
    (void)state;

    t->srv[0].range_mode = RM_NOLEADER;
    assert_int_equal(
        ikclient_call_async(t->c, "/etcdserverpb.KV/Range", &req.base,
                            &etcdserverpb__range_response__descriptor, 0, 0,
                            async_cb, &r),
        0);
    assert_int_equal(r.calls, 0); /* never from inside the starting call */
    assert_int_equal(ikclient_run(t->c, 2000), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.count, 2);
    /* nothing left: returns at once */
    assert_int_equal(ikclient_run(t->c, 0), 0);
    fx_free(t);
}

/* Watch resume across a dropped connection. */
struct wstate {
    int64_t revs[16];
    int n_revs;
    int created;
    int done;
    struct ikclient *c;
    int64_t stop_at;
    bool cancel_at_stop;
    int64_t compact_rev;
    char reason[512];
    int progress; /* progress notifications delivered */
};

static void wcb(struct ikclient_watch *w, void *data,
                const Etcdserverpb__WatchResponse *resp, bool done,
                const struct ikclient_status *st)
{
    struct wstate *s = data;
    size_t i;
    if (done) {
        s->done++;
        snprintf(s->reason, sizeof(s->reason), "%s", st->message);
        if (resp != NULL) {
            s->compact_rev = resp->compact_revision;
        }
        ikclient_watch_cancel(w); /* allowed, a no-op */
    }
    if (resp == NULL) {
        return;
    }
    if (resp->created) {
        s->created++;
    }
    if (!resp->created && !resp->canceled && resp->n_events == 0) {
        s->progress++;
    }
    for (i = 0; i < resp->n_events; i++) {
        assert_true(s->n_revs < 16);
        s->revs[s->n_revs++] = resp->events[i]->kv->mod_revision;
        if (resp->events[i]->kv->mod_revision == s->stop_at) {
            if (s->cancel_at_stop) {
                ikclient_watch_cancel(w);
                return;
            }
            ikclient_break(s->c);
        }
    }
}

static void test_watch_resume(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct ikclient_watch *w;
    struct wstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    s.stop_at = 8;
    t->srv[0].header_rev = 4;
    t->srv[0].watch_events[0] = 5;
    t->srv[0].watch_events[1] = 6;
    t->srv[0].n_watch_events = 2;
    t->srv[0].watch_kill_after = true;
    t->srv[1].header_rev = 8;
    /* B (wrongly) repeats 6: the client must not deliver it twice. */
    t->srv[1].watch_events[0] = 6;
    t->srv[1].watch_events[1] = 7;
    t->srv[1].watch_events[2] = 8;
    t->srv[1].n_watch_events = 3;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    req.start_revision = 5;
    assert_int_equal(ikclient_watch(t->c, &req, wcb, &s, &w), 0);
    assert_int_equal(ikclient_run(t->c, 3000), 0);
    assert_int_equal(t->srv[0].watch_creates, 1);
    assert_int_equal(t->srv[0].watch_start_revs[0], 5);
    assert_int_equal(t->srv[1].watch_creates, 1);
    assert_int_equal(t->srv[1].watch_start_revs[0], 7);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.done, 0);
    assert_int_equal(s.n_revs, 4);
    assert_int_equal(s.revs[0], 5);
    assert_int_equal(s.revs[1], 6);
    assert_int_equal(s.revs[2], 7);
    assert_int_equal(s.revs[3], 8);
    assert_int_equal(ikclient_watch_last_revision(w), 8);
    ikclient_watch_cancel(w);
    fx_free(t);
}

/* A watch from "now" (start_revision 0) resumes after the created
 * response's revision. */
static void test_watch_resume_from_now(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct ikclient_watch *w;
    struct wstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    s.stop_at = 11;
    t->srv[0].header_rev = 10;
    t->srv[0].watch_kill_after = true;
    t->srv[1].header_rev = 11;
    t->srv[1].watch_events[0] = 11;
    t->srv[1].n_watch_events = 1;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    assert_int_equal(ikclient_watch(t->c, &req, wcb, &s, &w), 0);
    assert_int_equal(ikclient_run(t->c, 3000), 0);
    assert_int_equal(t->srv[0].watch_start_revs[0], 0);
    assert_int_equal(t->srv[1].watch_creates, 1);
    assert_int_equal(t->srv[1].watch_start_revs[0], 11);
    assert_int_equal(s.n_revs, 1);
    assert_int_equal(s.created, 1);
    ikclient_watch_cancel(w);
    fx_free(t);
}

/* The server cancels the watch (compaction): the final response is
 * delivered with done, then the watch is gone. */
static void test_watch_compacted(void **state)
{
    struct fx *t = fx_new(1, false, 3000);
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct ikclient_watch *w;
    struct wstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    t->srv[0].header_rev = 20;
    t->srv[0].watch_compacted = 15;
    req.start_revision = 3;
    assert_int_equal(ikclient_watch(t->c, &req, wcb, &s, &w), 0);
    /* returns when nothing is left: the watch ended by itself */
    assert_int_equal(ikclient_run(t->c, 3000), 0);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.compact_rev, 15);
    assert_string_equal(s.reason, "mvcc: required revision has been compacted");
    assert_int_equal(t->srv[0].watch_creates, 1);
    fx_free(t);
}

/* Cancel from inside the callback: no callback afterwards, even for the
 * rest of the same response stream. */
static void test_watch_cancel_in_cb(void **state)
{
    struct fx *t = fx_new(1, false, 3000);
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct ikclient_watch *w;
    struct wstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    s.stop_at = 2;
    s.cancel_at_stop = true;
    t->srv[0].header_rev = 1;
    t->srv[0].watch_events[0] = 2;
    t->srv[0].watch_events[1] = 3;
    t->srv[0].watch_events[2] = 4;
    t->srv[0].n_watch_events = 3;
    assert_int_equal(ikclient_watch(t->c, &req, wcb, &s, &w), 0);
    assert_int_equal(ikclient_run(t->c, 3000), 0);
    assert_int_equal(s.n_revs, 1);
    assert_int_equal(s.revs[0], 2);
    assert_int_equal(s.done, 0);
    /* let the rest arrive: still nothing */
    assert_int_equal(ikclient_run(t->c, 200), 0);
    assert_int_equal(s.n_revs, 1);
    fx_free(t);
}

/* Keep-alive: re-sent on a new stream after the drop; done on TTL 0. */
struct kstate {
    int answers;
    int done;
    int64_t last_ttl;
    bool resp_null_on_done;
    struct ikclient *c;
};

static void kcb(struct ikclient_keepalive *ka, void *data,
                const Etcdserverpb__LeaseKeepAliveResponse *resp, bool done,
                const struct ikclient_status *st)
{
    struct kstate *s = data;
    (void)ka;
    (void)st;
    if (resp != NULL) {
        s->answers++;
        s->last_ttl = resp->ttl;
        assert_int_equal(resp->id, 42);
    }
    if (done) {
        s->done++;
        s->resp_null_on_done = resp == NULL;
        ikclient_break(s->c);
    }
}

static void test_keepalive_failover(void **state)
{
    struct fx *t = fx_new(2, false, 3000);
    struct ikclient_keepalive *ka;
    struct kstate s;
    uint64_t t0 = mono_ms();
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    t->srv[0].ka_ttls[0] = 1;
    t->srv[0].n_ka_ttls = 1;
    t->srv[0].ka_kill_after_first = true;
    t->srv[1].ka_ttls[0] = 1;
    t->srv[1].ka_ttls[1] = 0;
    t->srv[1].n_ka_ttls = 2;
    assert_int_equal(ikclient_keepalive(t->c, 42, kcb, &s, &ka), 0);
    assert_int_equal(ikclient_run(t->c, 4000), 0);
    assert_int_equal(t->srv[0].keepalives, 1);
    assert_int_equal(t->srv[1].keepalives, 2);
    assert_int_equal(s.answers, 3);
    assert_int_equal(s.done, 1);
    assert_false(s.resp_null_on_done);
    assert_int_equal(s.last_ttl, 0);
    /* TTL 1 s: the second request on B went out ~500 ms after the first */
    assert_true(mono_ms() - t0 >= 400);
    fx_free(t);
}

/* No endpoint answers: done with resp NULL once the deadline passes. */
static void test_keepalive_deadline(void **state)
{
    struct fx *t = fx_new(0, true, 3000);
    struct ikclient_keepalive *ka;
    struct kstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    assert_int_equal(ikclient_keepalive(t->c, 42, kcb, &s, &ka), 0);
    /* dial timeout 1000 + 1000 ms for the first answer */
    assert_int_equal(ikclient_run(t->c, 5000), 0);
    assert_int_equal(s.done, 1);
    assert_true(s.resp_null_on_done);
    assert_int_equal(s.answers, 0);
    fx_free(t);
}

static void test_keepalive_once(void **state)
{
    struct fx *t = fx_new(1, true, 3000);
    Etcdserverpb__LeaseKeepAliveResponse *resp;
    struct ikclient_status st;
    (void)state;
    t->srv[0].ka_ttls[0] = 7;
    t->srv[0].n_ka_ttls = 1;
    assert_int_equal(ikclient_keepalive_once(t->c, 42, &resp, &st), 0);
    assert_int_equal(resp->ttl, 7);
    assert_int_equal(resp->id, 42);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    fx_free(t);
}

/* A listener whose accept queue is full: connects to it hang (the SYNs
 * are dropped). Binds a kernel-chosen port (*port gets it). Returns the
 * listening fd; fills[] get the filler sockets. */
static int hang_listener(uint16_t *port, int fills[3])
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd, i;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    assert_int_equal(listen(fd, 0), 0);
    for (i = 0; i < 3; i++) {
        fills[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fills[i] >= 0);
        (void)connect(fills[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(100000);
    return fd;
}

/* Dial timeout: the first endpoint's connect hangs; after
 * dial_timeout_ms the call fails over to the second. */
static void test_dial_timeout(void **state)
{
    uv_loop_t loop;
    struct fsrv f;
    struct ikclient_config cfg;
    struct ikclient *c;
    char ep0[64], ep1[64], err[256];
    const char *eps[2] = {ep0, ep1};
    Etcdserverpb__RangeResponse *resp;
    Etcdserverpb__StatusResponse *sr;
    struct ikclient_status st;
    uint16_t hport;
    int fills[3], lfd, i;
    uint64_t t0, el;
    (void)state;

    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&loop), 0);
    lfd = hang_listener(&hport, fills);
    fsrv_start(&f, &loop, 7);
    snprintf(ep0, sizeof(ep0), "127.0.0.1:%u", (unsigned)hport);
    snprintf(ep1, sizeof(ep1), "127.0.0.1:%u", (unsigned)f.port);
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = 2;
    cfg.loop = &loop;
    cfg.dial_timeout_ms = 200;
    cfg.request_timeout_ms = 3000;
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);

    t0 = mono_ms();
    assert_int_equal(do_range(c, &resp, &st), 0);
    el = mono_ms() - t0;
    assert_int_equal(resp->count, 7);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_true(el >= 190 && el < 1500);

    /* Only the hanging endpoint: the dial timeout is the outcome. */
    t0 = mono_ms();
    assert_int_equal(ikclient_status(c, 0, &sr, &st), IK_EGRPC);
    el = mono_ms() - t0;
    assert_int_equal(st.code, GRPC_UNAVAILABLE);
    snprintf(err, sizeof(err),
             "connection error: desc = \"transport: Error while dialing "
             "dial tcp 127.0.0.1:%u: i/o timeout\"",
             (unsigned)hport);
    assert_string_equal(st.message, err);
    assert_true(el >= 190 && el < 1500);
    ikclient_free(c);

    f.up = false;
    grpc_uv_server_close(&f.s, fsrv_closed);
    uv_close((uv_handle_t *)&f.kill_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (i = 0; i < 3; i++) {
        close(fills[i]);
    }
    close(lfd);
}

/* --user: Authenticate first, then the token on every call. */
static void test_auth(void **state)
{
    uv_loop_t loop;
    struct fsrv f;
    struct ikclient_config cfg;
    struct ikclient *c;
    char ep[64], err[256];
    const char *eps[1] = {ep};
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    (void)state;

    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&loop), 0);
    fsrv_start(&f, &loop, 1);
    snprintf(ep, sizeof(ep), "127.0.0.1:%u", (unsigned)f.port);
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = 1;
    cfg.loop = &loop;
    cfg.user = "root";
    cfg.password = "pw";
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(do_range(c, &resp, &st), 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_string_equal(f.last_token, "tok.123");
    ikclient_free(c);

    cfg.password = "bad";
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(do_range(c, &resp, &st), IK_EGRPC);
    assert_int_equal(st.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(
        st.message,
        "etcdserver: authentication failed, invalid user ID or password");
    assert_int_equal(f.ranges, 1);
    ikclient_free(c);

    f.up = false;
    grpc_uv_server_close(&f.s, fsrv_closed);
    uv_close((uv_handle_t *)&f.kill_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ikclient_authenticate(): eager Authenticate, its token on later calls;
 * a wrong password is the server's answer; an endpoint that refuses is
 * skipped; no endpoint at all ends in an unreachable deadline. */
static void test_authenticate_now(void **state)
{
    struct fx *t = fx_new(1, true, 3000);
    struct ikclient_config cfg;
    struct ikclient *c;
    const char *eps[2] = {t->eps[0], t->eps[1]};
    char err[256];
    Etcdserverpb__RangeResponse *resp;
    struct ikclient_status st;
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = 2; /* the refusing one first */
    cfg.loop = &t->loop;
    cfg.dial_timeout_ms = 500;
    /* no user: nothing to do */
    assert_int_equal(ikclient_authenticate(t->c, 1000, &st), 0);
    assert_null(ikclient_token(t->c));

    cfg.user = "root";
    cfg.password = "pw";
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(ikclient_authenticate(c, 2000, &st), 0);
    assert_non_null(ikclient_token(c));
    assert_string_equal(ikclient_token(c), "tok.123");
    assert_int_equal(do_range(c, &resp, &st), 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_string_equal(t->srv[0].last_token, "tok.123");
    ikclient_free(c);

    cfg.password = "bad";
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(ikclient_authenticate(c, 2000, &st), IK_EGRPC);
    assert_int_equal(st.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(
        st.message,
        "etcdserver: authentication failed, invalid user ID or password");
    assert_false(st.unreachable);
    assert_null(ikclient_token(c));
    ikclient_free(c);

    cfg.n_endpoints = 1; /* only the refusing endpoint */
    cfg.password = "pw";
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    assert_int_equal(ikclient_authenticate(c, 300, &st), IK_EGRPC);
    assert_int_equal(st.code, GRPC_DEADLINE_EXCEEDED);
    assert_true(st.unreachable);
    ikclient_free(c);
    fx_free(t);
}

/* ikclient_watch_progress() before the stream is up: each ask is sent
 * after the create request; a requested progress (watch ID -1) does not
 * hide events of revisions below it that arrive later. */
static void test_watch_progress(void **state)
{
    struct fx *t = fx_new(1, false, 3000);
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct ikclient_watch *w;
    struct wstate s;
    (void)state;

    memset(&s, 0, sizeof(s));
    s.c = t->c;
    t->srv[0].header_rev = 9;
    t->srv[0].watch_events[0] = 5;
    t->srv[0].watch_events[1] = 6;
    t->srv[0].n_watch_events = 2;
    t->srv[0].event_after_progress = 7;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    req.start_revision = 5;
    assert_int_equal(ikclient_watch(t->c, &req, wcb, &s, &w), 0);
    assert_int_equal(ikclient_watch_progress(w), 0);
    assert_int_equal(ikclient_watch_progress(w), 0);
    assert_int_equal(ikclient_run(t->c, 500), 0);
    assert_int_equal(t->srv[0].watch_creates, 1);
    assert_int_equal(t->srv[0].progress_reqs, 2);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.progress, 2);
    assert_int_equal(s.n_revs, 3);
    assert_int_equal(s.revs[0], 5);
    assert_int_equal(s.revs[1], 6);
    assert_int_equal(s.revs[2], 7);
    /* the stream is up now: sent at once */
    assert_int_equal(ikclient_watch_progress(w), 0);
    assert_int_equal(ikclient_run(t->c, 300), 0);
    assert_int_equal(t->srv[0].progress_reqs, 3);
    assert_int_equal(s.progress, 3);
    ikclient_watch_cancel(w);
    fx_free(t);
}

/* ikclient_new() and a call under allocation failures: no leak, no
 * crash, IK_ENOMEM. */
static void test_enomem(void **state)
{
    const char *eps[] = {"http://127.0.0.1:1", "localhost:2"};
    struct ikclient_config cfg;
    struct ikclient *c;
    char err[256];
    long budget;
    int rv = IK_ENOMEM;
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = eps;
    cfg.n_endpoints = 2;
    cfg.user = "u";
    cfg.password = "p";
    for (budget = 0; budget < 100 && rv == IK_ENOMEM; budget++) {
        fa.budget = budget;
        fa.live = 0;
        fa.failures = 0;
        fa.on = true;
        rv = ikclient_new(&cfg, &c, err, sizeof(err));
        fa.on = false;
        if (rv == IK_ENOMEM) {
            assert_null(c);
            assert_int_equal(fa.live, 0);
            assert_true(fa.failures > 0);
        }
    }
    assert_int_equal(rv, 0);
    assert_true(budget > 3);
    ikclient_free(c);

    /* A call that cannot allocate its state. */
    cfg.user = NULL;
    cfg.password = NULL;
    assert_int_equal(ikclient_new(&cfg, &c, err, sizeof(err)), 0);
    {
        Etcdserverpb__RangeResponse *resp = (void *)&cfg;
        struct ikclient_status st;
        struct ikclient_watch *w = (void *)&cfg;
        struct ikclient_keepalive *ka = (void *)&cfg;
        Etcdserverpb__WatchCreateRequest wr =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        fa.budget = 0;
        fa.on = true;
        assert_int_equal(do_range(c, &resp, &st), IK_ENOMEM);
        assert_null(resp);
        assert_int_equal(ikclient_watch(c, &wr, wcb, NULL, &w), IK_ENOMEM);
        assert_null(w);
        assert_int_equal(ikclient_keepalive(c, 1, kcb, NULL, &ka), IK_ENOMEM);
        assert_null(ka);
        fa.on = false;
    }
    ikclient_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_strstatus),
        cmocka_unit_test(test_failover_refused),
        cmocka_unit_test(test_put_refused_then_ok),
        cmocka_unit_test(test_noleader_range_retried),
        cmocka_unit_test(test_noleader_put_not_retried),
        cmocka_unit_test(test_put_dropped_not_retried),
        cmocka_unit_test(test_put_dropped_idempotent_retried),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_all_down_deadline),
        cmocka_unit_test(test_async),
        cmocka_unit_test(test_watch_resume),
        cmocka_unit_test(test_watch_resume_from_now),
        cmocka_unit_test(test_watch_compacted),
        cmocka_unit_test(test_watch_cancel_in_cb),
        cmocka_unit_test(test_keepalive_failover),
        cmocka_unit_test(test_keepalive_deadline),
        cmocka_unit_test(test_keepalive_once),
        cmocka_unit_test(test_dial_timeout),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_authenticate_now),
        cmocka_unit_test(test_watch_progress),
        cmocka_unit_test(test_enomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
