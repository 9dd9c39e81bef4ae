/*
 * Tests for the gRPC client core (client/grpc_client.h) and its libuv glue.
 *
 * The core is paired in-process with ikada's server core (server/grpc.h),
 * bytes pumped both ways through memory; responses the server core never
 * produces (odd headers, resets, GOAWAY, compressed or oversized messages)
 * come from a bare nghttp2 server session the tests script by hand. The
 * glue is tested over loopback TCP against ikada's server glue.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "client/grpc_client.h"
#include "client/grpc_client_uv.h"
#include "proto/rpc.pb-c.h"
#include "server/errors.h"
#include "server/grpc.h"
#include "server/grpc_uv.h"
#include "tests/unit/grpc_test_util.h"

/* ------------------------------------------------------------------------ */
/* Server side (ikada's server core): handlers and their state */

#define MAX_HELD 256

static struct {
    int cancels;
    struct grpc_call *held[MAX_HELD];
    int n_held;
    uint64_t last_deadline;
    char last_token[64];
} ss;

static uint64_t fake_now = 1000;

static uint64_t fake_now_ms(void)
{
    return fake_now;
}

static void echo_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    if (grpc_call_send(call, d, n) != 0) {
        grpc_call_finish_error(call, IK_ENOMEM);
        return;
    }
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void proto_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    Etcdserverpb__RangeRequest *req;
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;

    req = etcdserverpb__range_request__unpack(NULL, n, d);
    assert_non_null(req);
    resp.count = (int64_t)req->key.len; /* proves the request arrived */
    resp.more = 1;
    etcdserverpb__range_request__free_unpacked(req, NULL);
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void bidi_done(struct grpc_call *call)
{
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void hold_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    if (ss.n_held > 0 && ss.held[ss.n_held - 1] == call) {
        return; /* HoldBidi: further messages */
    }
    assert_true(ss.n_held < MAX_HELD);
    ss.held[ss.n_held++] = call;
    ss.last_deadline = grpc_call_deadline(call);
}

static void hold_cancel(struct grpc_call *call)
{
    int i;
    ss.cancels++;
    for (i = 0; i < ss.n_held; i++) {
        if (ss.held[i] == call) {
            memmove(&ss.held[i], &ss.held[i + 1],
                    (size_t)(ss.n_held - i - 1) * sizeof(ss.held[0]));
            ss.n_held--;
            break;
        }
    }
}

/* Finish the @i-th held call with @status (after sending @msg if any). */
static void held_finish(int i, int status, const char *msg)
{
    struct grpc_call *call;
    assert_true(i < ss.n_held);
    call = ss.held[i];
    memmove(&ss.held[i], &ss.held[i + 1],
            (size_t)(ss.n_held - i - 1) * sizeof(ss.held[0]));
    ss.n_held--;
    if (msg != NULL) {
        assert_int_equal(
            grpc_call_send(call, (const uint8_t *)msg, strlen(msg)), 0);
    }
    grpc_call_finish(call, status, NULL);
}

static void meta_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    const char *tok = grpc_call_metadata(call, "token");
    (void)d;
    (void)n;
    snprintf(ss.last_token, sizeof(ss.last_token), "%s",
             tok != NULL ? tok : "(none)");
    assert_int_equal(grpc_call_send(call, (const uint8_t *)ss.last_token,
                                    strlen(ss.last_token)),
                     0);
    grpc_call_finish_error(call, IK_EKEYNOTFOUND);
}

static const struct grpc_method methods[] = {
    {"/test.Echo/Unary", GRPC_UNARY, echo_msg, NULL, NULL, NULL},
    {"/test.Echo/Proto", GRPC_UNARY, proto_msg, NULL, NULL, NULL},
    {"/test.Echo/ServerStream", GRPC_SERVER_STREAMING, sstream_msg, NULL, NULL,
     NULL},
    {"/test.Echo/Bidi", GRPC_BIDI_STREAMING, bidi_msg, bidi_done, NULL, NULL},
    {"/test.Echo/Hold", GRPC_UNARY, hold_msg, NULL, hold_cancel, NULL},
    {"/test.Echo/HoldBidi", GRPC_BIDI_STREAMING, hold_msg, NULL, hold_cancel,
     NULL},
    {"/test.Echo/Fail", GRPC_UNARY, failing_msg, NULL, NULL, NULL},
    {"/test.Echo/Meta", GRPC_UNARY, meta_msg, NULL, NULL, NULL},
};

/* ------------------------------------------------------------------------ */
/* Client-side recorders */

#define MAX_MSGS 64

struct crec {
    struct grpc_client_call *call;
    int closes;
    int status;
    char message[512];
    int n_msgs;
    uint8_t *msg[MAX_MSGS];
    size_t mlen[MAX_MSGS];
    /* Actions */
    bool cancel_on_msg;        /* cancel the call from its first on_message */
    bool cancel_on_close;      /* try to cancel itself from on_close (no-op) */
    struct crec *cancel_other; /* cancel that call from on_close */
};

static void crec_on_message(struct grpc_client_call *call, const uint8_t *d,
                            size_t n)
{
    struct crec *r = grpc_client_call_data(call);
    assert_ptr_equal(r->call, call);
    assert_int_equal(r->closes, 0);
    assert_true(r->n_msgs < MAX_MSGS);
    r->msg[r->n_msgs] = malloc(n + 1);
    assert_non_null(r->msg[r->n_msgs]);
    if (n > 0) {
        memcpy(r->msg[r->n_msgs], d, n);
    }
    r->mlen[r->n_msgs] = n;
    r->n_msgs++;
    if (r->cancel_on_msg) {
        grpc_client_call_cancel(call);
    }
}

static void crec_on_close(struct grpc_client_call *call, int status,
                          const char *message)
{
    struct crec *r = grpc_client_call_data(call);
    assert_ptr_equal(r->call, call);
    assert_non_null(message);
    r->closes++;
    r->status = status;
    snprintf(r->message, sizeof(r->message), "%s", message);
    if (r->cancel_on_close) {
        grpc_client_call_cancel(call); /* ignored: the call is over */
        assert_int_equal(grpc_client_call_send(call, (const uint8_t *)"x", 1),
                         IK_EINVAL);
        assert_int_equal(grpc_client_call_close_send(call), IK_EINVAL);
    }
    if (r->cancel_other != NULL) {
        grpc_client_call_cancel(r->cancel_other->call);
    }
}

static const struct grpc_client_call_cbs crec_cbs = {crec_on_message,
                                                     crec_on_close};

static void crec_free(struct crec *r)
{
    int i;
    for (i = 0; i < r->n_msgs; i++) {
        free(r->msg[i]);
    }
    memset(r, 0, sizeof(*r));
}

static void assert_msg(const struct crec *r, int i, const char *want)
{
    assert_true(i < r->n_msgs);
    assert_int_equal(r->mlen[i], strlen(want));
    assert_memory_equal(r->msg[i], want, strlen(want));
}

struct urec {
    int calls;
    int status;
    char message[512];
    bool resp_null;
    uint8_t *resp;
    size_t len;
};

static void urec_cb(void *data, int status, const char *message,
                    const uint8_t *resp, size_t len)
{
    struct urec *u = data;
    assert_non_null(message);
    u->calls++;
    u->status = status;
    snprintf(u->message, sizeof(u->message), "%s", message);
    u->resp_null = resp == NULL;
    free(u->resp);
    u->resp = NULL;
    u->len = len;
    if (resp != NULL) {
        u->resp = malloc(len + 1);
        assert_non_null(u->resp);
        memcpy(u->resp, resp, len);
    } else {
        assert_int_equal(len, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* Raw nghttp2 server: scripted responses */

#define RAW_MAX 64

struct raw_body {
    uint8_t *data;
    size_t len, off;
};

struct raw {
    nghttp2_session *s;
    int32_t ids[RAW_MAX]; /* request streams, in arrival order */
    char paths[RAW_MAX][64];
    char timeouts[RAW_MAX][16];
    char hdrs[RAW_MAX][512]; /* "name: value\n"... */
    int n_ids;
    int32_t rst_ids[RAW_MAX]; /* RST_STREAMs from the client */
    uint32_t rst_codes[RAW_MAX];
    int n_rst;
    int ends; /* END_STREAMs from the client */
    struct raw_body bodies[RAW_MAX];
    int n_bodies;
};

static int raw_index(struct raw *r, int32_t id)
{
    int i;
    for (i = 0; i < r->n_ids; i++) {
        if (r->ids[i] == id) {
            return i;
        }
    }
    return -1;
}

static int raw_on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr,
                                void *ud)
{
    struct raw *r = ud;
    (void)s;
    if (fr->hd.type == NGHTTP2_HEADERS &&
        fr->headers.cat == NGHTTP2_HCAT_REQUEST) {
        assert_true(r->n_ids < RAW_MAX);
        r->ids[r->n_ids] = fr->hd.stream_id;
        r->paths[r->n_ids][0] = '\0';
        r->timeouts[r->n_ids][0] = '\0';
        r->hdrs[r->n_ids][0] = '\0';
        r->n_ids++;
    }
    return 0;
}

static int raw_on_header(nghttp2_session *s, const nghttp2_frame *fr,
                         const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *ud)
{
    struct raw *r = ud;
    int i = raw_index(r, fr->hd.stream_id);
    (void)s;
    (void)flags;
    if (i < 0) {
        return 0;
    }
    {
        size_t used = strlen(r->hdrs[i]);
        snprintf(r->hdrs[i] + used, sizeof(r->hdrs[i]) - used, "%.*s: %.*s\n",
                 (int)namelen, (const char *)name, (int)valuelen,
                 (const char *)value);
    }
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        snprintf(r->paths[i], sizeof(r->paths[i]), "%.*s", (int)valuelen,
                 (const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        snprintf(r->timeouts[i], sizeof(r->timeouts[i]), "%.*s", (int)valuelen,
                 (const char *)value);
    }
    return 0;
}

static int raw_on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr,
                             void *ud)
{
    struct raw *r = ud;
    (void)s;
    if (fr->hd.type == NGHTTP2_RST_STREAM) {
        assert_true(r->n_rst < RAW_MAX);
        r->rst_ids[r->n_rst] = fr->hd.stream_id;
        r->rst_codes[r->n_rst] = fr->rst_stream.error_code;
        r->n_rst++;
    }
    if ((fr->hd.type == NGHTTP2_DATA || fr->hd.type == NGHTTP2_HEADERS) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        r->ends++;
    }
    return 0;
}

static void raw_new(struct raw *r, uint32_t max_streams)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv[2] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 24},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams}};
    memset(r, 0, sizeof(*r));
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        cbs, raw_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, raw_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                         raw_on_frame_recv);
    assert_int_equal(nghttp2_session_server_new(&r->s, cbs, r), 0);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(r->s, NGHTTP2_FLAG_NONE, iv,
                                             max_streams > 0 ? 2 : 1),
                     0);
}

static void raw_del(struct raw *r)
{
    int i;
    nghttp2_session_del(r->s);
    for (i = 0; i < r->n_bodies; i++) {
        free(r->bodies[i].data);
    }
}

static ssize_t raw_body_read(nghttp2_session *s, int32_t id, uint8_t *buf,
                             size_t length, uint32_t *flags,
                             nghttp2_data_source *src, void *ud)
{
    struct raw_body *b = src->ptr;
    size_t n = b->len - b->off;
    (void)s;
    (void)id;
    (void)ud;
    if (n > length) {
        n = length;
    }
    memcpy(buf, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* Frame @n bytes as one gRPC message with @flag into a new body. */
static struct raw_body *raw_body_new(struct raw *r)
{
    assert_true(r->n_bodies < RAW_MAX);
    return &r->bodies[r->n_bodies++];
}

static void raw_body_add(struct raw_body *b, const void *payload, size_t n,
                         uint8_t flag, size_t claimed)
{
    b->data = realloc(b->data, b->len + 5 + n + 1);
    assert_non_null(b->data);
    put_grpc_prefix(b->data + b->len, flag, claimed);
    if (n > 0) {
        memcpy(b->data + b->len + 5, payload, n);
    }
    b->len += 5 + n;
}

#define NV(n, v)                                              \
    {                                                         \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), \
            NGHTTP2_NV_FLAG_NONE                              \
    }

/* Submit a header block (@kv: name, value, ..., NULL) on stream @id. */
static void raw_headers(struct raw *r, int32_t id, bool end,
                        const char *const *kv)
{
    nghttp2_nv nv[16];
    size_t n = 0;
    while (kv[0] != NULL) {
        nghttp2_nv e = NV(kv[0], kv[1]);
        assert_true(n < 16);
        nv[n++] = e;
        kv += 2;
    }
    assert_int_equal(nghttp2_submit_headers(r->s,
                                            end ? NGHTTP2_FLAG_END_STREAM
                                                : NGHTTP2_FLAG_NONE,
                                            id, NULL, nv, n, NULL),
                     0);
}

static void raw_data(struct raw *r, int32_t id, struct raw_body *b, bool end)
{
    nghttp2_data_provider prd;
    prd.source.ptr = b;
    prd.read_callback = raw_body_read;
    assert_int_equal(
        nghttp2_submit_data(
            r->s, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id, &prd),
        0);
}

static bool raw_got_rst(const struct raw *r, int idx, uint32_t code)
{
    int i;
    for (i = 0; i < r->n_rst; i++) {
        if (r->rst_ids[i] == r->ids[idx] && r->rst_codes[i] == code) {
            return true;
        }
    }
    return false;
}

static const char *const grpc_200[] = {":status", "200", "content-type",
                                       "application/grpc", NULL};

/* ------------------------------------------------------------------------ */
/* Fixture: client core + (server core | raw server), bytes pumped in memory */

struct fix {
    struct grpc_server_config scfg;
    struct grpc_conn *srv;
    struct raw raw;
    bool use_raw;
    struct grpc_client_config ccfg;
    struct grpc_client_conn *cli;
    size_t chunk;  /* bytes per recv call; 0: all */
    bool tolerant; /* errors end the pump instead of failing the test */
    int cli_rv;
    int srv_rv;
    int want_writes;
};

static void cli_want_write(struct grpc_client_conn *c, void *data)
{
    struct fix *f = data;
    assert_ptr_equal(c, f->cli);
    f->want_writes++;
}

static void fix_start(struct fix *f, uint32_t max_streams, bool raw,
                      const struct grpc_allocator *alloc)
{
    memset(f, 0, sizeof(*f));
    memset(&ss, 0, sizeof(ss));
    fake_now = 1000;
    f->scfg.methods = methods;
    f->scfg.n_methods = sizeof(methods) / sizeof(methods[0]);
    f->scfg.max_recv_msg_size = 2u << 20;
    f->scfg.max_concurrent_streams = max_streams;
    f->scfg.now_ms = fake_now_ms;
    f->use_raw = raw;
    if (raw) {
        raw_new(&f->raw, max_streams);
    } else {
        assert_int_equal(grpc_conn_new(&f->scfg, f, &f->srv), 0);
    }
    f->ccfg.authority = "test.local:2379";
    f->ccfg.user_agent = "ikada-test/1";
    f->ccfg.now_ms = fake_now_ms;
    f->ccfg.on_want_write = cli_want_write;
    f->ccfg.alloc = alloc;
}

static void fix_client(struct fix *f)
{
    assert_int_equal(grpc_client_conn_new(&f->ccfg, f, &f->cli), 0);
    assert_ptr_equal(grpc_client_conn_data(f->cli), f);
}

static void fix_close(struct fix *f)
{
    if (f->cli != NULL) {
        grpc_client_conn_free(f->cli);
        f->cli = NULL;
    }
    if (f->srv != NULL) {
        grpc_conn_free(f->srv);
        f->srv = NULL;
    }
    if (f->use_raw) {
        raw_del(&f->raw);
    }
}

static void srv_feed(struct fix *f, const uint8_t *p, size_t n)
{
    if (f->use_raw) {
        assert_int_equal(nghttp2_session_mem_recv(f->raw.s, p, n), (ssize_t)n);
    } else {
        f->srv_rv = grpc_conn_recv(f->srv, p, n);
        if (!f->tolerant) {
            assert_int_equal(f->srv_rv, 0);
        }
    }
}

static ssize_t srv_out(struct fix *f, const uint8_t **p)
{
    return f->use_raw ? nghttp2_session_mem_send(f->raw.s, p)
                      : grpc_conn_send(f->srv, p);
}

/* Move bytes both ways until neither side has anything to say. */
static void pump(struct fix *f)
{
    bool progress = true;
    while (progress && f->cli != NULL) {
        const uint8_t *p;
        ssize_t n;
        progress = false;
        while ((n = grpc_client_conn_send(f->cli, &p)) > 0) {
            size_t off = 0;
            progress = true;
            while (off < (size_t)n) {
                size_t k = (size_t)n - off;
                if (f->chunk > 0 && k > f->chunk) {
                    k = f->chunk;
                }
                srv_feed(f, p + off, k);
                off += k;
            }
        }
        if (n < 0) {
            assert_true(f->tolerant);
            return;
        }
        while ((n = srv_out(f, &p)) > 0) {
            size_t off = 0;
            progress = true;
            while (off < (size_t)n) {
                size_t k = (size_t)n - off;
                if (f->chunk > 0 && k > f->chunk) {
                    k = f->chunk;
                }
                f->cli_rv = grpc_client_conn_recv(f->cli, p + off, k);
                if (f->cli_rv != 0) {
                    assert_true(f->tolerant);
                    break;
                }
                off += k;
            }
        }
        if (n < 0) {
            assert_true(f->tolerant);
            return;
        }
    }
}

static struct grpc_client_call *start(struct fix *f, const char *path,
                                      uint64_t timeout, struct crec *r)
{
    assert_int_equal(grpc_client_call_start(f->cli, path, timeout, NULL, 0,
                                            &crec_cbs, r, &r->call),
                     0);
    assert_ptr_equal(grpc_client_call_conn(r->call), f->cli);
    return r->call;
}

static void send_str(struct grpc_client_call *call, const char *s)
{
    assert_int_equal(grpc_client_call_send(call, (const uint8_t *)s, strlen(s)),
                     0);
}

/* Start a unary call with the raw call API: one message, half-close. */
static void start_unary(struct fix *f, const char *path, const char *msg,
                        struct crec *r)
{
    start(f, path, 0, r);
    send_str(r->call, msg);
    assert_int_equal(grpc_client_call_close_send(r->call), 0);
}

/* ------------------------------------------------------------------------ */
/* Tests: against ikada's server core */

static void test_unary_roundtrip(void **state)
{
    struct fix f;
    struct crec r = {0};
    struct urec u = {0}, ub = {0};
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    assert_true(grpc_client_conn_is_usable(f.cli));
    assert_false(grpc_client_conn_want_close(f.cli));

    /* Raw call API. */
    start_unary(&f, "/test.Echo/Unary", "hello", &r);
    assert_int_equal(f.want_writes, 1);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 1);
    assert_int_equal(grpc_client_call_pending_bytes(r.call), 10);
    assert_true(grpc_client_call_stream_id(r.call) > 0);
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_OK);
    assert_string_equal(r.message, "");
    assert_int_equal(r.n_msgs, 1);
    assert_msg(&r, 0, "hello");
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);

    /* Unary helper with a protobuf request and response. */
    req.key.data = (uint8_t *)"abcdef";
    req.key.len = 6;
    assert_int_equal(grpc_client_unary(f.cli, "/test.Echo/Proto", &req.base, 0,
                                       NULL, 0, urec_cb, &u, NULL),
                     0);
    /* ... and with raw bytes, an empty message. */
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Unary", NULL, 0,
                                             0, NULL, 0, urec_cb, &ub, NULL),
                     0);
    assert_int_equal(u.calls, 0); /* nothing synchronous */
    pump(&f);
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.status, GRPC_OK);
    assert_false(u.resp_null);
    resp = etcdserverpb__range_response__unpack(NULL, u.len, u.resp);
    assert_non_null(resp);
    assert_int_equal(resp->count, 6);
    assert_true(resp->more);
    etcdserverpb__range_response__free_unpacked(resp, NULL);
    assert_int_equal(ub.calls, 1);
    assert_int_equal(ub.status, GRPC_OK);
    assert_false(ub.resp_null);
    assert_int_equal(ub.len, 0);

    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    assert_int_equal(grpc_client_conn_next_deadline(f.cli), UINT64_MAX);
    assert_false(grpc_client_conn_want_close(f.cli));
    crec_free(&r);
    free(u.resp);
    free(ub.resp);
    fix_close(&f);
}

static void test_want_write_coalesced(void **state)
{
    struct fix f;
    struct crec a = {0}, b = {0};
    const uint8_t *p;
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    assert_int_equal(f.want_writes, 0); /* preface is not "outside" output */
    start(&f, "/test.Echo/HoldBidi", 0, &a);
    assert_int_equal(f.want_writes, 1);
    start(&f, "/test.Echo/HoldBidi", 0, &b);
    send_str(a.call, "x");
    assert_int_equal(f.want_writes, 1); /* until send returns 0 */
    pump(&f);
    assert_int_equal(grpc_client_conn_send(f.cli, &p), 0);
    send_str(b.call, "y"); /* resumes a parked data provider */
    assert_int_equal(f.want_writes, 2);
    pump(&f);
    assert_int_equal(ss.n_held, 2);
    fix_close(&f);
    assert_int_equal(a.closes, 1);
    assert_int_equal(b.closes, 1);
    assert_int_equal(a.status, GRPC_UNAVAILABLE);
    crec_free(&a);
    crec_free(&b);
}

static void test_many_concurrent(void **state)
{
    struct fix f;
    struct crec *r = calloc(200, sizeof(*r));
    char buf[32];
    int i;
    (void)state;
    assert_non_null(r);
    fix_start(&f, 100, false, NULL);
    fix_client(&f);
    for (i = 0; i < 200; i++) {
        snprintf(buf, sizeof(buf), "req-%d", i);
        start_unary(&f, "/test.Echo/Unary", buf, &r[i]);
    }
    /* 100 streams until the server's SETTINGS say otherwise. */
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 200);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 100);
    assert_int_equal(grpc_client_call_stream_id(r[150].call), 0);
    pump(&f);
    for (i = 0; i < 200; i++) {
        snprintf(buf, sizeof(buf), "req-%d", i);
        assert_int_equal(r[i].closes, 1);
        assert_int_equal(r[i].status, GRPC_OK);
        assert_int_equal(r[i].n_msgs, 1);
        assert_msg(&r[i], 0, buf);
        crec_free(&r[i]);
    }
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);

    /* Held calls: never more streams than the server allows. */
    for (i = 0; i < 150; i++) {
        start_unary(&f, "/test.Echo/Hold", "h", &r[i]);
    }
    pump(&f);
    assert_int_equal(ss.n_held, 100);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 50);
    for (i = 0; i < 10; i++) {
        held_finish(0, GRPC_OK, "done");
    }
    pump(&f);
    assert_int_equal(ss.n_held, 100);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 40);
    for (i = 0; i < 10; i++) {
        assert_int_equal(r[i].closes, 1);
        assert_int_equal(r[i].status, GRPC_OK);
        assert_msg(&r[i], 0, "done");
    }
    while (ss.n_held > 0) {
        held_finish(0, GRPC_ABORTED, NULL);
        pump(&f);
    }
    for (i = 0; i < 150; i++) {
        assert_int_equal(r[i].closes, 1);
        assert_int_equal(r[i].status, i < 10 ? GRPC_OK : GRPC_ABORTED);
        crec_free(&r[i]);
    }
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    fix_close(&f);
    free(r);
}

static void test_large_messages(void **state)
{
    struct fix f;
    struct crec r = {0};
    struct urec u = {0};
    size_t n = 1572864 + 1000; /* etcd's --max-request-bytes default + */
    uint8_t *big = malloc(n);
    size_t i;
    (void)state;
    assert_non_null(big);
    for (i = 0; i < n; i++) {
        big[i] = (uint8_t)(i * 31 + 7);
    }
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    f.chunk = 7777; /* messages straddle recv calls */
    start(&f, "/test.Echo/Unary", 0, &r);
    assert_int_equal(grpc_client_call_send(r.call, big, n), 0);
    assert_int_equal(grpc_client_call_pending_bytes(r.call), n + 5);
    assert_int_equal(grpc_client_call_close_send(r.call), 0);
    assert_int_equal(grpc_client_call_close_send(r.call), 0); /* idempotent */
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_OK);
    assert_int_equal(r.n_msgs, 1);
    assert_int_equal(r.mlen[0], n);
    assert_memory_equal(r.msg[0], big, n);
    /* The unary helper keeps a gathered response without copying twice. */
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Unary", big, n,
                                             0, NULL, 0, urec_cb, &u, NULL),
                     0);
    f.chunk = 0;
    pump(&f);
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.status, GRPC_OK);
    assert_int_equal(u.len, n);
    assert_memory_equal(u.resp, big, n);
    crec_free(&r);
    free(u.resp);
    fix_close(&f);
    free(big);
}

static void test_server_streaming(void **state)
{
    struct fix f;
    struct crec r = {0}, z = {0};
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    f.chunk = 3;
    start_unary(&f, "/test.Echo/ServerStream", "5", &r);
    start_unary(&f, "/test.Echo/ServerStream", "0", &z);
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_OK);
    assert_int_equal(r.n_msgs, 5);
    assert_msg(&r, 0, "msg-0");
    assert_msg(&r, 4, "msg-4");
    /* Zero messages: a trailers-only response. */
    assert_int_equal(z.closes, 1);
    assert_int_equal(z.status, GRPC_OK);
    assert_int_equal(z.n_msgs, 0);
    crec_free(&r);
    crec_free(&z);
    fix_close(&f);
}

static void test_bidi_interleaved(void **state)
{
    struct fix f;
    struct crec r = {0};
    char buf[32];
    int i;
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    start(&f, "/test.Echo/Bidi", 0, &r);
    for (i = 0; i < 10; i++) {
        snprintf(buf, sizeof(buf), "ping-%d", i);
        send_str(r.call, buf);
        if (i % 3 == 0) {
            send_str(r.call, ""); /* an empty message in between */
        }
        pump(&f);
        assert_int_equal(r.closes, 0);
        assert_msg(&r, r.n_msgs - (i % 3 == 0 ? 2 : 1), buf);
    }
    assert_int_equal(r.n_msgs, 14);
    assert_int_equal(grpc_client_call_pending_bytes(r.call), 0);
    /* Protobuf packing straight into the frame. */
    {
        Etcdserverpb__WatchRequest w = ETCDSERVERPB__WATCH_REQUEST__INIT;
        Etcdserverpb__WatchCancelRequest cr =
            ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
        Etcdserverpb__WatchRequest *back;
        cr.watch_id = 42;
        w.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
        w.cancel_request = &cr;
        assert_int_equal(grpc_client_call_send_proto(r.call, &w.base), 0);
        pump(&f);
        back = etcdserverpb__watch_request__unpack(NULL, r.mlen[r.n_msgs - 1],
                                                   r.msg[r.n_msgs - 1]);
        assert_non_null(back);
        assert_int_equal(back->cancel_request->watch_id, 42);
        etcdserverpb__watch_request__free_unpacked(back, NULL);
    }
    assert_int_equal(grpc_client_call_close_send(r.call), 0);
    assert_int_equal(grpc_client_call_send(r.call, (const uint8_t *)"late", 4),
                     IK_EINVAL);
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_OK);
    assert_int_equal(r.n_msgs, 15);
    crec_free(&r);
    fix_close(&f);
}

static void test_error_status_message(void **state)
{
    struct fix f;
    struct crec r = {0}, m = {0}, open = {0};
    static const struct grpc_client_md md[] = {{"token", "s3cr3t"},
                                               {"x-other", "1"}};
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    start_unary(&f, "/test.Echo/Fail", "x", &r);
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Meta", 0, md, 2,
                                            &crec_cbs, &m, &m.call),
                     0);
    send_str(m.call, "x");
    grpc_client_call_close_send(m.call);
    /* The server ends a call the client never half-closed. */
    start(&f, "/test.Echo/Fail", 0, &open);
    send_str(open.call, "x");
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_NOT_FOUND);
    /* Percent-encoded on the wire, decoded back exactly. */
    assert_string_equal(r.message, "n\xc3\xb6t 100% found\n");
    assert_int_equal(m.closes, 1);
    assert_msg(&m, 0, "s3cr3t");
    assert_string_equal(ss.last_token, "s3cr3t");
    assert_int_equal(m.status, GRPC_INVALID_ARGUMENT);
    assert_string_equal(m.message, "etcdserver: key not found");
    assert_int_equal(open.closes, 1);
    assert_int_equal(open.status, GRPC_NOT_FOUND);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    crec_free(&r);
    crec_free(&m);
    crec_free(&open);
    fix_close(&f);
}

static void test_unimplemented(void **state)
{
    struct fix f;
    struct crec a = {0}, b = {0};
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    start_unary(&f, "/test.Echo/Nope", "x", &a);
    start_unary(&f, "/foo.Bar/Baz", "x", &b);
    pump(&f);
    assert_int_equal(a.closes, 1);
    assert_int_equal(a.status, GRPC_UNIMPLEMENTED);
    assert_string_equal(a.message, "unknown method Nope for service test.Echo");
    assert_int_equal(b.closes, 1);
    assert_int_equal(b.status, GRPC_UNIMPLEMENTED);
    assert_string_equal(b.message, "unknown service foo.Bar");
    crec_free(&a);
    crec_free(&b);
    fix_close(&f);
}

static void test_deadline(void **state)
{
    struct fix f;
    struct crec r = {0}, q = {0}, late = {0};
    struct urec u = {0};
    (void)state;
    fix_start(&f, 1, false, NULL);
    fix_client(&f);
    pump(&f); /* learn the server's limit: one stream */
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Hold", 250, NULL,
                                            0, &crec_cbs, &r, &r.call),
                     0);
    send_str(r.call, "x");
    grpc_client_call_close_send(r.call);
    /* Queued behind it (one stream allowed), with a shorter deadline. */
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Hold", 100, NULL,
                                            0, &crec_cbs, &q, &q.call),
                     0);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 1);
    assert_int_equal(grpc_client_conn_next_deadline(f.cli), 1100);
    pump(&f);
    assert_int_equal(ss.n_held, 1);
    /* The server got grpc-timeout: same fake clock, same deadline. */
    assert_int_equal(ss.last_deadline, 1250);
    fake_now = 1099;
    grpc_client_conn_tick(f.cli);
    assert_int_equal(q.closes, 0);
    fake_now = 1100;
    grpc_client_conn_tick(f.cli);
    assert_int_equal(q.closes, 1);
    assert_int_equal(q.status, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(q.message, "context deadline exceeded");
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 0);
    assert_int_equal(grpc_client_conn_next_deadline(f.cli), 1250);
    assert_int_equal(r.closes, 0);
    fake_now = 1300;
    f.want_writes = 0;
    grpc_client_conn_tick(f.cli);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(f.want_writes, 1); /* the RST_STREAM waits */
    assert_int_equal(grpc_client_conn_next_deadline(f.cli), UINT64_MAX);
    pump(&f);
    assert_int_equal(ss.cancels, 1); /* the server learnt it */
    assert_int_equal(ss.n_held, 0);

    /* Unary helper with a deadline; the server answers in time. */
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Unary",
                                             (const uint8_t *)"in time", 7,
                                             5000, NULL, 0, urec_cb, &u, NULL),
                     0);
    pump(&f);
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.status, GRPC_OK);
    assert_int_equal(u.len, 7);
    fake_now += 10000;
    grpc_client_conn_tick(f.cli);
    assert_int_equal(u.calls, 1);

    /* A queued call whose deadline passes before a stream frees up is not
     * sent at all; tick ends it (never a callback from cancel()). */
    start(&f, "/test.Echo/HoldBidi", 0, &late);
    send_str(late.call, "hold the only stream");
    crec_free(&q);
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Unary", 10, NULL,
                                            0, &crec_cbs, &q, &q.call),
                     0);
    send_str(q.call, "x");
    grpc_client_call_close_send(q.call);
    pump(&f);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 1);
    fake_now += 20; /* expired, but tick not called yet */
    grpc_client_call_cancel(late.call);
    assert_int_equal(q.closes, 0);
    pump(&f); /* the stream frees up: q is skipped, not sent */
    assert_int_equal(q.closes, 0);
    assert_int_equal(grpc_client_call_stream_id(q.call), 0);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 1);
    assert_true(grpc_client_conn_next_deadline(f.cli) <= fake_now);
    grpc_client_conn_tick(f.cli);
    assert_int_equal(q.closes, 1);
    assert_int_equal(q.status, GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 0);
    pump(&f);
    assert_int_equal(late.closes, 0);
    crec_free(&r);
    crec_free(&q);
    crec_free(&late);
    free(u.resp);
    fix_close(&f);
}

static void test_cancel(void **state)
{
    struct fix f;
    struct crec a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    struct urec u = {0};
    struct grpc_client_call *ucall;
    (void)state;
    fix_start(&f, 2, false, NULL);
    fix_client(&f);
    pump(&f);
    start_unary(&f, "/test.Echo/Hold", "a", &a);
    /* Cancelled from its own first message: the server echoes. */
    start(&f, "/test.Echo/Bidi", 0, &b);
    b.cancel_on_msg = true;
    send_str(b.call, "one");
    send_str(b.call, "two");
    /* Queued (2 streams), then cancelled before it ever gets one. */
    start_unary(&f, "/test.Echo/Hold", "c", &c);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 1);
    grpc_client_call_cancel(c.call);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 0);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 2);
    pump(&f);
    assert_int_equal(ss.n_held, 1);
    assert_int_equal(b.n_msgs, 1); /* nothing after the cancel */
    assert_int_equal(b.closes, 0);
    assert_int_equal(c.closes, 0);
    /* Cancel the held one: RST_STREAM(CANCEL) reaches the server. */
    grpc_client_call_cancel(a.call);
    pump(&f);
    assert_int_equal(ss.cancels, 1);
    assert_int_equal(ss.n_held, 0);
    assert_int_equal(a.closes, 0);
    /* A unary helper call cancelled: its callback never runs. */
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Hold",
                                             (const uint8_t *)"u", 1, 0, NULL,
                                             0, urec_cb, &u, &ucall),
                     0);
    pump(&f);
    assert_int_equal(ss.n_held, 1);
    grpc_client_call_cancel(ucall);
    pump(&f);
    assert_int_equal(u.calls, 0);
    assert_int_equal(ss.cancels, 2);
    /* on_close of d cancels e (live) and tries to cancel itself. */
    start_unary(&f, "/test.Echo/Unary", "d", &d);
    start_unary(&f, "/test.Echo/Hold", "e", &e);
    d.cancel_on_close = true;
    d.cancel_other = &e;
    pump(&f);
    assert_int_equal(d.closes, 1);
    assert_int_equal(d.status, GRPC_OK);
    assert_int_equal(e.closes, 0);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    assert_int_equal(ss.n_held, 0);
    fix_close(&f);
    assert_int_equal(a.closes + b.closes + c.closes + e.closes, 0);
    crec_free(&a);
    crec_free(&b);
    crec_free(&c);
    crec_free(&d);
    crec_free(&e);
}

/* on_close starts a new call on the same connection. */
static struct fix *chain_fix;
static struct crec chain_next;

static void chain_close(struct grpc_client_call *call, int status,
                        const char *message)
{
    struct crec *r = grpc_client_call_data(call);
    crec_on_close(call, status, message);
    if (r->closes == 1 && chain_next.call == NULL) {
        assert_int_equal(grpc_client_call_start(
                             chain_fix->cli, "/test.Echo/Unary", 500, NULL, 0,
                             &crec_cbs, &chain_next, &chain_next.call),
                         0);
        send_str(chain_next.call, "chained");
        grpc_client_call_close_send(chain_next.call);
    }
}

static void test_reentrant_start(void **state)
{
    static const struct grpc_client_call_cbs cbs = {crec_on_message,
                                                    chain_close};
    struct fix f;
    struct crec r = {0};
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    chain_fix = &f;
    memset(&chain_next, 0, sizeof(chain_next));
    /* From a deadline expiry inside tick. */
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Hold", 100, NULL,
                                            0, &cbs, &r, &r.call),
                     0);
    send_str(r.call, "x");
    pump(&f);
    fake_now += 100;
    grpc_client_conn_tick(f.cli);
    assert_int_equal(r.status, GRPC_DEADLINE_EXCEEDED);
    assert_non_null(chain_next.call);
    /* The new call's deadline is known although tick had reset it. */
    assert_int_equal(grpc_client_conn_next_deadline(f.cli), fake_now + 500);
    pump(&f);
    assert_int_equal(chain_next.closes, 1);
    assert_int_equal(chain_next.status, GRPC_OK);
    assert_msg(&chain_next, 0, "chained");
    crec_free(&r);
    crec_free(&chain_next);

    /* From on_close inside recv. */
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Unary", 0, NULL,
                                            0, &cbs, &r, &r.call),
                     0);
    send_str(r.call, "first");
    grpc_client_call_close_send(r.call);
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(chain_next.closes, 1);
    assert_msg(&chain_next, 0, "chained");
    crec_free(&r);
    crec_free(&chain_next);
    fix_close(&f);
}

static void test_connection_loss(void **state)
{
    struct fix f;
    struct crec r[5];
    struct urec u = {0};
    int i;
    (void)state;
    memset(r, 0, sizeof(r));
    fix_start(&f, 3, false, NULL);
    fix_client(&f);
    pump(&f);
    for (i = 0; i < 5; i++) {
        start_unary(&f, "/test.Echo/Hold", "x", &r[i]);
    }
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Hold",
                                             (const uint8_t *)"u", 1, 0, NULL,
                                             0, urec_cb, &u, NULL),
                     0);
    pump(&f);
    assert_int_equal(ss.n_held, 3);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 3);
    /* The socket is gone: every live call, sent or queued, fails once. */
    grpc_client_conn_free(f.cli);
    f.cli = NULL;
    for (i = 0; i < 5; i++) {
        assert_int_equal(r[i].closes, 1);
        assert_int_equal(r[i].status, GRPC_UNAVAILABLE);
        assert_string_equal(r[i].message, "transport is closing");
        crec_free(&r[i]);
    }
    assert_int_equal(u.calls, 1);
    assert_int_equal(u.status, GRPC_UNAVAILABLE);
    assert_true(u.resp_null);
    fix_close(&f);

    /* Dial failure reported with the owner's message, then free. */
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    start_unary(&f, "/test.Echo/Unary", "x", &r[0]);
    start(&f, "/test.Echo/Bidi", 0, &r[1]);
    grpc_client_conn_fail(f.cli, GRPC_UNAVAILABLE, "dial failed");
    assert_int_equal(r[0].closes, 1);
    assert_int_equal(r[1].closes, 1);
    assert_string_equal(r[1].message, "dial failed");
    assert_false(grpc_client_conn_is_usable(f.cli));
    assert_int_equal(grpc_client_call_start(f.cli, "/test.Echo/Unary", 0, NULL,
                                            0, &crec_cbs, &r[2], &r[2].call),
                     IK_EIO);
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/test.Echo/Unary", NULL, 0,
                                             0, NULL, 0, urec_cb, &u, NULL),
                     IK_EIO);
    grpc_client_conn_free(f.cli);
    f.cli = NULL;
    assert_int_equal(r[0].closes, 1);
    assert_int_equal(r[1].closes, 1);
    assert_int_equal(r[2].closes, 0);
    assert_int_equal(u.calls, 1);
    for (i = 0; i < 3; i++) {
        crec_free(&r[i]);
    }
    free(u.resp);
    fix_close(&f);
}

static void test_bad_arguments(void **state)
{
    struct fix f;
    struct crec r = {0};
    struct urec u = {0};
    struct grpc_client_call *call = NULL;
    static const struct grpc_client_call_cbs no_close = {crec_on_message, NULL};
    static const struct grpc_client_md bad_md[][1] = {
        {{"Token", "x"}}, {{":path", "/x"}},       {{"te", "x"}},
        {{"", "x"}},      {{"token", "a\nb"}},     {{"token", NULL}},
        {{NULL, "x"}},    {{"content-type", "x"}}, {{"grpc-timeout", "1S"}}};
    size_t i;
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    assert_int_equal(grpc_client_call_start(f.cli, "nopath", 0, NULL, 0,
                                            &crec_cbs, &r, &call),
                     IK_EINVAL);
    assert_int_equal(
        grpc_client_call_start(f.cli, "/a b", 0, NULL, 0, &crec_cbs, &r, &call),
        IK_EINVAL);
    assert_int_equal(
        grpc_client_call_start(f.cli, NULL, 0, NULL, 0, &crec_cbs, &r, &call),
        IK_EINVAL);
    assert_int_equal(
        grpc_client_call_start(f.cli, "/a/b", 0, NULL, 0, &no_close, &r, &call),
        IK_EINVAL);
    assert_int_equal(
        grpc_client_call_start(f.cli, "/a/b", 0, NULL, 1, &crec_cbs, &r, &call),
        IK_EINVAL);
    for (i = 0; i < sizeof(bad_md) / sizeof(bad_md[0]); i++) {
        assert_int_equal(grpc_client_call_start(f.cli, "/a/b", 0, bad_md[i], 1,
                                                &crec_cbs, &r, &call),
                         IK_EINVAL);
    }
    assert_int_equal(
        grpc_client_unary(f.cli, "/a/b", NULL, 0, NULL, 0, urec_cb, &u, NULL),
        IK_EINVAL);
    assert_int_equal(grpc_client_unary_bytes(f.cli, "/a/b",
                                             (const uint8_t *)"x", 1, 0, NULL,
                                             0, NULL, &u, NULL),
                     IK_EINVAL);
    assert_null(call);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    pump(&f);
    assert_int_equal(r.closes + u.calls, 0);
    fix_close(&f);
}

static void test_garbage_from_server(void **state)
{
    static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    struct fix f;
    struct crec r = {0};
    const uint8_t *p;
    ssize_t n;
    int rounds = 0;
    (void)state;
    fix_start(&f, 0, false, NULL);
    fix_client(&f);
    start_unary(&f, "/test.Echo/Hold", "x", &r);
    assert_int_equal(
        grpc_client_conn_recv(f.cli, (const uint8_t *)junk, sizeof(junk) - 1),
        IK_EPROTO);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_UNAVAILABLE);
    assert_string_equal(r.message, "transport is closing");
    assert_false(grpc_client_conn_is_usable(f.cli));
    /* Sticky. */
    assert_int_equal(grpc_client_conn_recv(f.cli, (const uint8_t *)"x", 1),
                     IK_EPROTO);
    while ((n = grpc_client_conn_send(f.cli, &p)) > 0) {
        assert_true(++rounds < 100);
    }
    assert_true(n >= 0);
    assert_true(grpc_client_conn_want_close(f.cli));
    fix_close(&f);
    assert_int_equal(r.closes, 1);
    crec_free(&r);
}

static void test_timeout_encode(void **state)
{
    char buf[16];
    (void)state;
    assert_int_equal(grpc_client_timeout_encode(1, buf), 2);
    assert_string_equal(buf, "1m");
    assert_string_equal((grpc_client_timeout_encode(5000, buf), buf), "5000m");
    assert_string_equal((grpc_client_timeout_encode(99999999, buf), buf),
                        "99999999m");
    assert_string_equal((grpc_client_timeout_encode(100000000, buf), buf),
                        "100000S");
    assert_string_equal((grpc_client_timeout_encode(100000001, buf), buf),
                        "100001S");
    assert_string_equal(
        (grpc_client_timeout_encode(99999999ull * 1000 + 1, buf), buf),
        "1666667M");
    assert_string_equal((grpc_client_timeout_encode(UINT64_MAX, buf), buf),
                        "99999999H");
    /* Round trip through the server's parser. */
    {
        uint64_t ms = 0;
        size_t n = grpc_client_timeout_encode(123456789, buf);
        assert_int_equal(grpc_timeout_parse(buf, n, &ms), 0);
        assert_int_equal(ms, 123457000);
    }
}

static void test_percent_decode(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(grpc_client_percent_decode("plain", 5, out), 5);
    assert_string_equal(out, "plain");
    assert_int_equal(grpc_client_percent_decode("%41%42c", 7, out), 3);
    assert_string_equal(out, "ABc");
    assert_int_equal(grpc_client_percent_decode("100%25 %e2%82%ac", 16, out),
                     8);
    assert_string_equal(out, "100% \xe2\x82\xac");
    /* Not an escape: copied as is. */
    assert_int_equal(grpc_client_percent_decode("a%zzb%4", 7, out), 7);
    assert_string_equal(out, "a%zzb%4");
    assert_int_equal(grpc_client_percent_decode("%", 1, out), 1);
    assert_string_equal(out, "%");
    assert_int_equal(grpc_client_percent_decode("%4", 2, out), 2);
    assert_int_equal(grpc_client_percent_decode("", 0, out), 0);
    assert_string_equal(out, "");
    /* Round trip with the server's encoder. */
    {
        char enc[128];
        const char *s = "n\xc3\xb6t 100% found\n\x01";
        size_t n = grpc_percent_encode(s, enc, sizeof(enc));
        assert_int_equal(grpc_client_percent_decode(enc, n, out), strlen(s));
        assert_string_equal(out, s);
    }
}

/* ------------------------------------------------------------------------ */
/* Tests: against a scripted nghttp2 server */

static void test_request_headers(void **state)
{
    struct fix f;
    struct crec r = {0};
    static const struct grpc_client_md md[] = {{"token", "abc.def"}};
    (void)state;
    fix_start(&f, 0, true, NULL);
    fix_client(&f);
    assert_int_equal(grpc_client_call_start(f.cli, "/etcdserverpb.KV/Range",
                                            1500, md, 1, &crec_cbs, &r,
                                            &r.call),
                     0);
    send_str(r.call, "q");
    grpc_client_call_close_send(r.call);
    pump(&f);
    assert_int_equal(f.raw.n_ids, 1);
    assert_string_equal(f.raw.hdrs[0], ":method: POST\n"
                                       ":scheme: http\n"
                                       ":path: /etcdserverpb.KV/Range\n"
                                       ":authority: test.local:2379\n"
                                       "content-type: application/grpc\n"
                                       "user-agent: ikada-test/1\n"
                                       "te: trailers\n"
                                       "grpc-timeout: 1500m\n"
                                       "token: abc.def\n");
    assert_int_equal(f.raw.ends, 1);
    /* The remaining time, for a call that waited: */
    fake_now += 400;
    raw_headers(&f.raw, f.raw.ids[0], true,
                (const char *const[]){":status", "200", "content-type",
                                      "application/grpc", "grpc-status", "0",
                                      NULL});
    pump(&f);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.status, GRPC_OK);
    crec_free(&r);
    fix_close(&f);
}

static void test_server_rst(void **state)
{
    struct fix f;
    struct crec r[5];
    static const uint32_t codes[] = {NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM,
                                     NGHTTP2_ENHANCE_YOUR_CALM, 0x42,
                                     NGHTTP2_PROTOCOL_ERROR};
    int i;
    (void)state;
    memset(r, 0, sizeof(r));
    fix_start(&f, 0, true, NULL);
    fix_client(&f);
    for (i = 0; i < 5; i++) {
        start(&f, "/t.S/M", 0, &r[i]);
        send_str(r[i].call, "x");
    }
    pump(&f);
    assert_int_equal(f.raw.n_ids, 5);
    for (i = 0; i < 5; i++) {
        assert_int_equal(nghttp2_submit_rst_stream(f.raw.s, NGHTTP2_FLAG_NONE,
                                                   f.raw.ids[i], codes[i]),
                         0);
    }
    pump(&f);
    for (i = 0; i < 5; i++) {
        assert_int_equal(r[i].closes, 1);
    }
    assert_int_equal(r[0].status, GRPC_CANCELLED);
    assert_string_equal(r[0].message,
                        "stream terminated by RST_STREAM with error code: "
                        "CANCEL");
    assert_int_equal(r[1].status, GRPC_UNAVAILABLE);
    assert_string_equal(r[1].message,
                        "stream terminated by RST_STREAM with error code: "
                        "REFUSED_STREAM");
    assert_int_equal(r[2].status, GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(r[3].status, GRPC_UNKNOWN);
    assert_string_equal(r[3].message,
                        "stream terminated by RST_STREAM with error code: "
                        "unknown error code 0x42");
    assert_int_equal(r[4].status, GRPC_INTERNAL);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    assert_int_equal(f.raw.n_rst, 0); /* nothing to reset back */
    /* Trailers while the client is still sending, then the server's
     * RST_STREAM(NO_ERROR) as grpc-go does: one close, status from the
     * trailers, and the client releases the stream itself. */
    crec_free(&r[0]);
    start(&f, "/t.S/M", 0, &r[0]);
    send_str(r[0].call, "x");
    pump(&f);
    raw_headers(&f.raw, f.raw.ids[5], true,
                (const char *const[]){":status", "200", "content-type",
                                      "application/grpc", "grpc-status", "7",
                                      "grpc-message", "no%20way", NULL});
    pump(&f);
    assert_true(raw_got_rst(&f.raw, 5, NGHTTP2_NO_ERROR));
    assert_int_equal(nghttp2_submit_rst_stream(f.raw.s, NGHTTP2_FLAG_NONE,
                                               f.raw.ids[5], NGHTTP2_NO_ERROR),
                     0);
    pump(&f);
    assert_int_equal(r[0].closes, 1);
    assert_int_equal(r[0].status, GRPC_PERMISSION_DENIED);
    assert_string_equal(r[0].message, "no way");
    for (i = 0; i < 5; i++) {
        crec_free(&r[i]);
    }
    fix_close(&f);
}

static void test_goaway(void **state)
{
    struct fix f;
    struct crec a = {0}, b = {0}, c = {0}, d = {0};
    struct raw_body *body;
    (void)state;
    fix_start(&f, 2, true, NULL);
    fix_client(&f);
    pump(&f);
    start_unary(&f, "/t.S/A", "a", &a);
    start_unary(&f, "/t.S/B", "b", &b);
    start_unary(&f, "/t.S/C", "c", &c); /* waits: 2 streams allowed */
    pump(&f);
    assert_int_equal(f.raw.n_ids, 2);
    assert_int_equal(grpc_client_conn_queued_calls(f.cli), 1);
    assert_int_equal(nghttp2_submit_goaway(f.raw.s, NGHTTP2_FLAG_NONE,
                                           f.raw.ids[0], NGHTTP2_NO_ERROR, NULL,
                                           0),
                     0);
    pump(&f);
    assert_false(grpc_client_conn_is_usable(f.cli));
    assert_int_equal(a.closes, 0); /* below the last stream id: goes on */
    assert_int_equal(b.closes, 1);
    assert_int_equal(b.status, GRPC_UNAVAILABLE);
    assert_string_equal(b.message, "the connection is draining");
    assert_int_equal(c.closes, 1);
    assert_int_equal(c.status, GRPC_UNAVAILABLE);
    assert_string_equal(c.message, "the connection is draining");
    assert_int_equal(grpc_client_call_start(f.cli, "/t.S/D", 0, NULL, 0,
                                            &crec_cbs, &d, &d.call),
                     IK_EIO);
    assert_false(grpc_client_conn_want_close(f.cli));
    /* The surviving stream completes normally. */
    raw_headers(&f.raw, f.raw.ids[0], false, grpc_200);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "resp-a", 6, 0, 6);
    raw_data(&f.raw, f.raw.ids[0], body, false);
    pump(&f);
    raw_headers(&f.raw, f.raw.ids[0], true,
                (const char *const[]){"grpc-status", "0", NULL});
    pump(&f);
    assert_int_equal(a.closes, 1);
    assert_int_equal(a.status, GRPC_OK);
    assert_msg(&a, 0, "resp-a");
    assert_true(grpc_client_conn_want_close(f.cli));
    crec_free(&a);
    crec_free(&b);
    crec_free(&c);
    fix_close(&f);
}

/* Script: HEADERS (@hdrs) [+ one body] [+ trailers (@tr)], pumping between
 * the steps so they arrive in order. */
static void raw_reply(struct fix *f, int idx, const char *const *hdrs,
                      bool hdr_end, struct raw_body *body, bool body_end,
                      const char *const *tr)
{
    int32_t id = f->raw.ids[idx];
    raw_headers(&f->raw, id, hdr_end, hdrs);
    pump(f);
    if (body != NULL) {
        raw_data(&f->raw, id, body, body_end);
        pump(f);
    }
    if (tr != NULL) {
        raw_headers(&f->raw, id, true, tr);
        pump(f);
    }
}

static void test_status_mapping(void **state)
{
    struct fix f;
    struct crec r[8];
    struct raw_body *body;
    int i;
    (void)state;
    memset(r, 0, sizeof(r));
    fix_start(&f, 0, true, NULL);
    fix_client(&f);
    for (i = 0; i < 8; i++) {
        start_unary(&f, "/t.S/M", "x", &r[i]);
    }
    pump(&f);
    assert_int_equal(f.raw.n_ids, 8);
    /* Not gRPC: HTTP status and content-type. */
    raw_reply(&f, 0,
              (const char *const[]){":status", "503", "content-type",
                                    "text/html", NULL},
              true, NULL, false, NULL);
    raw_reply(&f, 1, (const char *const[]){":status", "404", NULL}, false, NULL,
              false, NULL);
    /* Trailers without grpc-status. */
    body = raw_body_new(&f.raw);
    raw_body_add(body, "m", 1, 0, 1);
    raw_reply(&f, 2, grpc_200, false, body, false,
              (const char *const[]){"grpc-message", "oops", NULL});
    /* Malformed grpc-status, trailers-only. */
    raw_reply(&f, 3,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc+proto", "grpc-status",
                                    "abc", NULL},
              true, NULL, false, NULL);
    raw_reply(&f, 4,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc", "grpc-status",
                                    "99999999999", NULL},
              true, NULL, false, NULL);
    /* DATA with END_STREAM, no trailers. */
    body = raw_body_new(&f.raw);
    raw_body_add(body, "m", 1, 0, 1);
    raw_reply(&f, 5, grpc_200, false, body, true, NULL);
    /* A code grpc does not define, and a percent-encoded message. */
    raw_reply(&f, 6,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc;charset=x", "grpc-status",
                                    "17", "grpc-message", "a%20b%zz%", NULL},
              true, NULL, false, NULL);
    /* A non-200 HTTP status does not matter once the response is gRPC. */
    raw_reply(&f, 7,
              (const char *const[]){":status", "500", "content-type",
                                    "application/grpc", "grpc-status", "0",
                                    NULL},
              true, NULL, false, NULL);
    for (i = 0; i < 8; i++) {
        assert_int_equal(r[i].closes, 1);
    }
    assert_int_equal(r[0].status, GRPC_UNAVAILABLE);
    assert_string_equal(r[0].message,
                        "Service Unavailable: HTTP status code 503; "
                        "transport: received the unexpected content-type "
                        "\"text/html\"");
    assert_int_equal(r[1].status, GRPC_UNIMPLEMENTED);
    assert_string_equal(r[1].message,
                        "Not Found: HTTP status code 404; transport: missing "
                        "content-type field");
    assert_true(raw_got_rst(&f.raw, 1, NGHTTP2_PROTOCOL_ERROR));
    assert_int_equal(r[2].status, GRPC_UNKNOWN);
    assert_string_equal(r[2].message, "oops");
    assert_int_equal(r[2].n_msgs, 1);
    assert_int_equal(r[3].status, GRPC_INTERNAL);
    assert_string_equal(r[3].message,
                        "transport: malformed grpc-status: strconv.Atoi: "
                        "parsing \"abc\": invalid syntax");
    assert_int_equal(r[4].status, GRPC_INTERNAL);
    assert_string_equal(r[4].message,
                        "transport: malformed grpc-status: strconv.Atoi: "
                        "parsing \"99999999999\": value out of range");
    assert_int_equal(r[5].status, GRPC_INTERNAL);
    assert_string_equal(r[5].message,
                        "server closed the stream without sending trailers");
    assert_int_equal(r[5].n_msgs, 1);
    assert_int_equal(r[6].status, 17);
    assert_string_equal(r[6].message, "a b%zz%");
    assert_int_equal(r[7].status, GRPC_OK);
    assert_int_equal(grpc_client_conn_live_calls(f.cli), 0);
    for (i = 0; i < 8; i++) {
        crec_free(&r[i]);
    }
    fix_close(&f);
}

static void test_bad_messages(void **state)
{
    struct fix f;
    struct crec r[5];
    struct raw_body *body;
    static const char *const gzip_hdrs[] = {
        ":status", "200", "content-type", "application/grpc", "grpc-encoding",
        "gzip",    NULL};
    static const char *const ok_tr[] = {"grpc-status", "0", NULL};
    char big[101];
    int i;
    (void)state;
    memset(r, 0, sizeof(r));
    memset(big, 'b', sizeof(big));
    fix_start(&f, 0, true, NULL);
    f.ccfg.max_recv_msg_size = 100;
    fix_client(&f);
    for (i = 0; i < 5; i++) {
        start(&f, "/t.S/M", 0, &r[i]);
        send_str(r[i].call, "x");
    }
    pump(&f);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "zz", 2, 1, 2);
    raw_reply(&f, 0, grpc_200, false, body, false, NULL);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "zz", 2, 1, 2);
    raw_reply(&f, 1, gzip_hdrs, false, body, false, NULL);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "fits", 4, 0, 4);
    raw_body_add(body, big, 100, 0, 100); /* exactly the limit */
    raw_body_add(body, big, 101, 0, 101);
    raw_reply(&f, 2, grpc_200, false, body, false, NULL);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "abc", 3, 0, 10); /* claims 10 bytes, has 3 */
    raw_reply(&f, 3, grpc_200, false, body, false, ok_tr);
    body = raw_body_new(&f.raw);
    raw_body_add(body, "abc", 3, 7, 3);
    raw_reply(&f, 4, grpc_200, false, body, false, NULL);
    for (i = 0; i < 5; i++) {
        assert_int_equal(r[i].closes, 1);
    }
    assert_int_equal(r[0].status, GRPC_INTERNAL);
    assert_string_equal(r[0].message, "grpc: compressed flag set with "
                                      "identity or empty encoding");
    assert_true(raw_got_rst(&f.raw, 0, NGHTTP2_CANCEL));
    assert_int_equal(r[1].status, GRPC_UNIMPLEMENTED);
    assert_string_equal(r[1].message, "grpc: Decompressor is not installed "
                                      "for grpc-encoding \"gzip\"");
    assert_int_equal(r[2].status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r[2].message,
                        "grpc: received message larger than max (101 vs. "
                        "100)");
    assert_int_equal(r[2].n_msgs, 2);
    assert_msg(&r[2], 0, "fits");
    assert_true(raw_got_rst(&f.raw, 2, NGHTTP2_CANCEL));
    assert_int_equal(r[3].status, GRPC_INTERNAL);
    assert_string_equal(r[3].message, "unexpected EOF");
    assert_true(raw_got_rst(&f.raw, 3, NGHTTP2_NO_ERROR));
    assert_int_equal(r[4].status, GRPC_INTERNAL);
    assert_string_equal(r[4].message,
                        "grpc: received unexpected payload format 7");
    for (i = 0; i < 5; i++) {
        crec_free(&r[i]);
    }
    fix_close(&f);
}

static void test_unary_cardinality(void **state)
{
    struct fix f;
    struct urec u[4];
    struct raw_body *body;
    static const char *const ok_tr[] = {"grpc-status", "0", NULL};
    int i;
    (void)state;
    memset(u, 0, sizeof(u));
    fix_start(&f, 0, true, NULL);
    fix_client(&f);
    for (i = 0; i < 4; i++) {
        assert_int_equal(grpc_client_unary_bytes(f.cli, "/t.S/U",
                                                 (const uint8_t *)"q", 1, 0,
                                                 NULL, 0, urec_cb, &u[i], NULL),
                         0);
    }
    pump(&f);
    assert_int_equal(f.raw.ends, 4);
    /* OK with no message: grpc-go's io.EOF. */
    raw_reply(&f, 0,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc", "grpc-status", "0",
                                    NULL},
              true, NULL, false, NULL);
    /* Two messages. */
    body = raw_body_new(&f.raw);
    raw_body_add(body, "one", 3, 0, 3);
    raw_body_add(body, "two", 3, 0, 3);
    raw_reply(&f, 1, grpc_200, false, body, false, NULL);
    /* A message, then an error status: the status wins. */
    body = raw_body_new(&f.raw);
    raw_body_add(body, "partial", 7, 0, 7);
    raw_reply(&f, 2, grpc_200, false, body, false,
              (const char *const[]){"grpc-status", "5", "grpc-message", "gone",
                                    NULL});
    /* The normal case, message split over DATA frames. */
    body = raw_body_new(&f.raw);
    raw_body_add(body, "answer", 6, 0, 6);
    f.chunk = 2;
    raw_reply(&f, 3, grpc_200, false, body, false, ok_tr);
    for (i = 0; i < 4; i++) {
        assert_int_equal(u[i].calls, 1);
    }
    assert_int_equal(u[0].status, GRPC_UNKNOWN);
    assert_string_equal(u[0].message, "EOF");
    assert_true(u[0].resp_null);
    assert_int_equal(u[1].status, GRPC_INTERNAL);
    assert_string_equal(u[1].message, "grpc: client streaming protocol "
                                      "violation: get <nil>, want <EOF>");
    assert_true(raw_got_rst(&f.raw, 1, NGHTTP2_CANCEL));
    assert_int_equal(u[2].status, GRPC_NOT_FOUND);
    assert_string_equal(u[2].message, "gone");
    assert_true(u[2].resp_null);
    assert_int_equal(u[3].status, GRPC_OK);
    assert_int_equal(u[3].len, 6);
    assert_memory_equal(u[3].resp, "answer", 6);
    for (i = 0; i < 4; i++) {
        free(u[i].resp);
    }
    fix_close(&f);
}

static void test_deadline_race(void **state)
{
    struct fix f;
    struct crec r[3];
    int i;
    (void)state;
    memset(r, 0, sizeof(r));
    fix_start(&f, 0, true, NULL);
    fix_client(&f);
    assert_int_equal(grpc_client_call_start(f.cli, "/t.S/M", 100, NULL, 0,
                                            &crec_cbs, &r[0], &r[0].call),
                     0);
    send_str(r[0].call, "x");
    grpc_client_call_close_send(r[0].call);
    assert_int_equal(grpc_client_call_start(f.cli, "/t.S/M", 100, NULL, 0,
                                            &crec_cbs, &r[1], &r[1].call),
                     0);
    send_str(r[1].call, "x");
    start_unary(&f, "/t.S/M", "x", &r[2]);
    pump(&f);
    assert_int_equal(f.raw.n_ids, 3);
    assert_string_equal(f.raw.timeouts[0], "100m");
    assert_string_equal(f.raw.timeouts[2], "");
    /* The server's deadline fires first and its answer arrives before our
     * tick: the client still reports its own deadline. */
    fake_now += 100;
    raw_reply(&f, 0,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc", "grpc-status", "2",
                                    "grpc-message", "context deadline exceeded",
                                    NULL},
              true, NULL, false, NULL);
    assert_int_equal(nghttp2_submit_rst_stream(f.raw.s, NGHTTP2_FLAG_NONE,
                                               f.raw.ids[1], NGHTTP2_CANCEL),
                     0);
    /* A call without deadline gets the server's word as is. */
    raw_reply(&f, 2,
              (const char *const[]){":status", "200", "content-type",
                                    "application/grpc", "grpc-status", "2",
                                    "grpc-message", "context deadline exceeded",
                                    NULL},
              true, NULL, false, NULL);
    pump(&f);
    assert_int_equal(r[0].closes, 1);
    assert_int_equal(r[0].status, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(r[0].message, "context deadline exceeded");
    assert_int_equal(r[1].closes, 1);
    assert_int_equal(r[1].status, GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(r[2].closes, 1);
    assert_int_equal(r[2].status, GRPC_UNKNOWN);
    for (i = 0; i < 3; i++) {
        crec_free(&r[i]);
    }
    fix_close(&f);
}

/* ------------------------------------------------------------------------ */
/* Failing allocator */

static bool alloc_round(long budget)
{
    struct fix f;
    struct crec a = {0}, h = {0};
    struct urec u = {0};
    static const struct grpc_client_md md[] = {{"token", "t"}};
    int ra, rh, ru;
    bool ok;

    fix_start(&f, 0, false, &failing_alloc);
    fa.budget = budget;
    fa.live = 0;
    if (grpc_client_conn_new(&f.ccfg, &f, &f.cli) != 0) {
        assert_int_equal(fa.live, 0);
        f.cli = NULL;
        fix_close(&f);
        return false;
    }
    f.tolerant = true;
    ra = grpc_client_call_start(f.cli, "/test.Echo/Unary", 1000, md, 1,
                                &crec_cbs, &a, &a.call);
    assert_true(ra == 0 || ra == IK_ENOMEM);
    if (ra == 0) {
        int rv = grpc_client_call_send(a.call, (const uint8_t *)"hello", 5);
        assert_true(rv == 0 || rv == IK_ENOMEM);
        grpc_client_call_close_send(a.call);
    }
    rh = grpc_client_call_start(f.cli, "/test.Echo/HoldBidi", 0, NULL, 0,
                                &crec_cbs, &h, &h.call);
    assert_true(rh == 0 || rh == IK_ENOMEM);
    if (rh == 0) {
        grpc_client_call_send(h.call, (const uint8_t *)"h", 1);
    }
    ru = grpc_client_unary_bytes(f.cli, "/test.Echo/Nope", (const uint8_t *)"x",
                                 1, 0, NULL, 0, urec_cb, &u, NULL);
    assert_true(ru == 0 || ru == IK_ENOMEM);
    pump(&f);
    ok = ra == 0 && a.closes == 1 && a.status == GRPC_OK && a.n_msgs == 1 &&
         rh == 0 && h.closes == 0 && ss.n_held == 1 && ru == 0 &&
         u.calls == 1 && u.status == GRPC_UNIMPLEMENTED;
    if (ok) {
        assert_msg(&a, 0, "hello");
    }
    grpc_client_conn_free(f.cli);
    f.cli = NULL;
    /* Every call that started ended exactly once; nothing leaked. */
    assert_int_equal(a.closes, ra == 0 ? 1 : 0);
    assert_int_equal(h.closes, rh == 0 ? 1 : 0);
    assert_int_equal(u.calls, ru == 0 ? 1 : 0);
    assert_int_equal(fa.live, 0);
    crec_free(&a);
    crec_free(&h);
    free(u.resp);
    fix_close(&f);
    return ok;
}

static void test_failing_allocator(void **state)
{
    (void)state;
    fa_sweep(alloc_round, 5000, 10);
}

/* ------------------------------------------------------------------------ */
/* libuv glue over loopback TCP, against ikada's server glue */

#define UV_CALLS 50

struct uvt {
    uv_loop_t loop;
    struct grpc_uv_server srv;
    struct grpc_server_config scfg;
    struct grpc_client_uv cli;
    uv_timer_t guard;
    uv_timer_t later;
    struct urec u[UV_CALLS];
    int unary_done;
    struct crec held, refused, late;
    uint64_t t0, elapsed_ms;
    bool srv_closed, cli_closed, timed_out;
};

static void uvt_srv_closed(struct grpc_uv_server *s)
{
    struct uvt *t = s->data;
    t->srv_closed = true;
}

static void uvt_cli_closed(struct grpc_client_uv *c)
{
    struct uvt *t = c->data;
    t->cli_closed = true;
}

static void uvt_guard(uv_timer_t *h)
{
    struct uvt *t = h->data;
    t->timed_out = true;
    grpc_client_uv_close(&t->cli, uvt_cli_closed);
    grpc_uv_server_close(&t->srv, uvt_srv_closed);
    uv_close((uv_handle_t *)&t->later, NULL);
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static struct uvt *cur_uvt;

/* Server on @host, client dialing @client_host at the server's port. */
static void uvt_init(struct uvt *t, const char *host, const char *client_host)
{
    char errmsg[IK_ERRMSG_SIZE];
    memset(&ss, 0, sizeof(ss));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    t->scfg.methods = methods;
    t->scfg.n_methods = sizeof(methods) / sizeof(methods[0]);
    t->srv.data = t;
    assert_int_equal(grpc_uv_server_init(&t->srv, &t->loop, &t->scfg), 0);
    assert_int_equal(grpc_uv_server_listen(&t->srv, host, 0, errmsg), 0);
    t->cli.data = t;
    assert_int_equal(grpc_client_uv_init(&t->cli, &t->loop, client_host,
                                         grpc_uv_server_port(&t->srv), NULL),
                     0);
    cur_uvt = t;
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
    uv_timer_start(&t->guard, uvt_guard, 10000, 0);
    uv_timer_init(&t->loop, &t->later);
    t->later.data = t;
}

static void uvt_run(struct uvt *t)
{
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_false(t->timed_out);
    assert_true(t->cli_closed);
    assert_true(t->srv_closed);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void refused_close(struct grpc_client_call *call, int status,
                          const char *message)
{
    struct uvt *t = grpc_client_call_data(call);
    t->refused.closes++;
    t->refused.status = status;
    snprintf(t->refused.message, sizeof(t->refused.message), "%s", message);
    /* Closing from inside a call callback: deferred, but it happens. */
    grpc_client_uv_close(&t->cli, uvt_cli_closed);
    assert_null(grpc_client_uv_conn(&t->cli));
    uv_close((uv_handle_t *)&t->later, NULL);
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static void held_close(struct grpc_client_call *call, int status,
                       const char *message)
{
    static const struct grpc_client_call_cbs cbs = {NULL, refused_close};
    struct uvt *t = grpc_client_call_data(call);
    struct grpc_client_conn *conn;
    t->held.closes++;
    t->held.status = status;
    snprintf(t->held.message, sizeof(t->held.message), "%s", message);
    /* The connection is gone; asking again dials again (and fails: the
     * server no longer listens). */
    conn = grpc_client_uv_conn(&t->cli);
    assert_non_null(conn);
    assert_int_equal(grpc_client_uv_dials(&t->cli), 2);
    assert_false(grpc_client_uv_connected(&t->cli));
    assert_int_equal(grpc_client_call_start(conn, "/test.Echo/Unary", 0, NULL,
                                            0, &cbs, t, &t->refused.call),
                     0);
}

static void uvt_unary_cb(void *data, int status, const char *message,
                         const uint8_t *resp, size_t len)
{
    struct uvt *t = cur_uvt;
    urec_cb(data, status, message, resp, len);
    if (++t->unary_done == UV_CALLS) {
        assert_int_equal(ss.n_held, 1);
        assert_true(grpc_client_uv_connected(&t->cli));
        grpc_uv_server_close(&t->srv, uvt_srv_closed);
        assert_int_equal(ss.cancels, 1);
    }
}

static void test_uv_roundtrip(void **state)
{
    static const struct grpc_client_call_cbs hcbs = {NULL, held_close};
    struct uvt *t = calloc(1, sizeof(*t));
    struct grpc_client_conn *conn;
    char buf[32];
    int i;
    (void)state;
    assert_non_null(t);
    uvt_init(t, "127.0.0.1", "127.0.0.1");
    conn = grpc_client_uv_conn(&t->cli);
    assert_non_null(conn);
    assert_ptr_equal(grpc_client_uv_conn(&t->cli), conn); /* same one */
    assert_int_equal(grpc_client_uv_dials(&t->cli), 1);
    assert_false(grpc_client_uv_connected(&t->cli));
    /* Calls made before the connection is up wait for it. */
    assert_int_equal(grpc_client_call_start(conn, "/test.Echo/Hold", 0, NULL, 0,
                                            &hcbs, t, &t->held.call),
                     0);
    send_str(t->held.call, "hold");
    grpc_client_call_close_send(t->held.call);
    for (i = 0; i < UV_CALLS; i++) {
        snprintf(buf, sizeof(buf), "msg-%d", i);
        assert_int_equal(grpc_client_unary_bytes(conn, "/test.Echo/Unary",
                                                 (const uint8_t *)buf,
                                                 strlen(buf), 0, NULL, 0,
                                                 uvt_unary_cb, &t->u[i], NULL),
                         0);
    }
    uvt_run(t);
    for (i = 0; i < UV_CALLS; i++) {
        snprintf(buf, sizeof(buf), "msg-%d", i);
        assert_int_equal(t->u[i].calls, 1);
        assert_int_equal(t->u[i].status, GRPC_OK);
        assert_int_equal(t->u[i].len, strlen(buf));
        assert_memory_equal(t->u[i].resp, buf, strlen(buf));
        free(t->u[i].resp);
    }
    assert_int_equal(t->held.closes, 1);
    assert_int_equal(t->held.status, GRPC_UNAVAILABLE);
    assert_string_equal(t->held.message, "transport is closing");
    assert_int_equal(t->refused.closes, 1);
    assert_int_equal(t->refused.status, GRPC_UNAVAILABLE);
    snprintf(buf, sizeof(buf), "%u", (unsigned)grpc_uv_server_port(&t->srv));
    {
        char want[256];
        snprintf(want, sizeof(want),
                 "connection error: desc = \"transport: Error while dialing "
                 "dial tcp 127.0.0.1:%s: connect: connection refused\"",
                 buf);
        assert_string_equal(t->refused.message, want);
    }
    free(t);
}

/* Deadline through the glue's timer, then closing the client with a call in
 * flight. */
static void late_close(struct grpc_client_call *call, int status,
                       const char *message)
{
    struct uvt *t = grpc_client_call_data(call);
    t->late.closes++;
    t->late.status = status;
    snprintf(t->late.message, sizeof(t->late.message), "%s", message);
}

static void close_all(uv_timer_t *h)
{
    struct uvt *t = h->data;
    assert_int_equal(ss.n_held, 1);
    grpc_client_uv_close(&t->cli, uvt_cli_closed); /* synchronous here */
    assert_int_equal(t->late.closes, 1);
    grpc_client_uv_close(&t->cli, uvt_cli_closed); /* no-op */
    grpc_uv_server_close(&t->srv, uvt_srv_closed);
    uv_close((uv_handle_t *)&t->later, NULL);
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static void deadline_close(struct grpc_client_call *call, int status,
                           const char *message)
{
    static const struct grpc_client_call_cbs lcbs = {NULL, late_close};
    struct uvt *t = grpc_client_call_data(call);
    struct grpc_client_conn *conn;
    t->held.closes++;
    t->held.status = status;
    snprintf(t->held.message, sizeof(t->held.message), "%s", message);
    t->elapsed_ms = (uv_hrtime() - t->t0) / 1000000u;
    conn = grpc_client_uv_conn(&t->cli);
    assert_int_equal(grpc_client_uv_dials(&t->cli), 1); /* still the same */
    assert_int_equal(grpc_client_call_start(conn, "/test.Echo/HoldBidi", 0,
                                            NULL, 0, &lcbs, t, &t->late.call),
                     0);
    send_str(t->late.call, "x");
    uv_timer_start(&t->later, close_all, 100, 0);
}

static void test_uv_deadline_and_close(void **state)
{
    static const struct grpc_client_call_cbs dcbs = {NULL, deadline_close};
    struct uvt *t = calloc(1, sizeof(*t));
    struct grpc_client_conn *conn;
    (void)state;
    assert_non_null(t);
    /* A name: resolved with uv_getaddrinfo. */
    uvt_init(t, "localhost", "localhost");
    conn = grpc_client_uv_conn(&t->cli);
    t->t0 = uv_hrtime();
    assert_int_equal(grpc_client_call_start(conn, "/test.Echo/Hold", 150, NULL,
                                            0, &dcbs, t, &t->held.call),
                     0);
    send_str(t->held.call, "x");
    grpc_client_call_close_send(t->held.call);
    uvt_run(t);
    assert_int_equal(t->held.closes, 1);
    assert_int_equal(t->held.status, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(t->held.message, "context deadline exceeded");
    /* The clock has millisecond steps: 149.x ms can read as 149. */
    assert_true(t->elapsed_ms >= 149);
    assert_true(t->elapsed_ms < 2000);
    assert_int_equal(t->late.closes, 1);
    assert_int_equal(t->late.status, GRPC_CANCELLED);
    assert_string_equal(t->late.message,
                        "grpc: the client connection is closing");
    free(t);
}

static void lookup_close(struct grpc_client_call *call, int status,
                         const char *message)
{
    struct uvt *t = grpc_client_call_data(call);
    t->held.closes++;
    t->held.status = status;
    snprintf(t->held.message, sizeof(t->held.message), "%s", message);
    grpc_client_uv_close(&t->cli, uvt_cli_closed);
    grpc_uv_server_close(&t->srv, uvt_srv_closed);
    uv_close((uv_handle_t *)&t->later, NULL);
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static void test_uv_lookup_failure(void **state)
{
    static const struct grpc_client_call_cbs cbs = {NULL, lookup_close};
    struct uvt *t = calloc(1, sizeof(*t));
    struct grpc_client_conn *conn;
    (void)state;
    assert_non_null(t);
    /* A name that cannot resolve (.invalid is reserved, RFC 2606). */
    uvt_init(t, "127.0.0.1", "no-such-host.invalid");
    conn = grpc_client_uv_conn(&t->cli);
    assert_non_null(conn);
    assert_int_equal(grpc_client_call_start(conn, "/test.Echo/Unary", 0, NULL,
                                            0, &cbs, t, &t->held.call),
                     0);
    uvt_run(t);
    assert_int_equal(t->held.closes, 1);
    assert_int_equal(t->held.status, GRPC_UNAVAILABLE);
    assert_non_null(strstr(t->held.message,
                           "connection error: desc = \"transport: Error while "
                           "dialing dial tcp: lookup no-such-host.invalid: "));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_roundtrip),
        cmocka_unit_test(test_want_write_coalesced),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_large_messages),
        cmocka_unit_test(test_server_streaming),
        cmocka_unit_test(test_bidi_interleaved),
        cmocka_unit_test(test_error_status_message),
        cmocka_unit_test(test_unimplemented),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_reentrant_start),
        cmocka_unit_test(test_connection_loss),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_garbage_from_server),
        cmocka_unit_test(test_timeout_encode),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_request_headers),
        cmocka_unit_test(test_server_rst),
        cmocka_unit_test(test_goaway),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_unary_cardinality),
        cmocka_unit_test(test_deadline_race),
        cmocka_unit_test(test_failing_allocator),
        cmocka_unit_test(test_uv_roundtrip),
        cmocka_unit_test(test_uv_deadline_and_close),
        cmocka_unit_test(test_uv_lookup_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
