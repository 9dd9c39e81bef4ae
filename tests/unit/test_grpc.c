/*
 * Tests for the gRPC core: a grpc_conn driven in-process by an nghttp2
 * client session, bytes pumped both ways through memory.
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

#include "proto/rpc.pb-c.h"
#include "server/errors.h"
#include "server/grpc.h"
#include "server/grpc_uv.h"
#include "tests/unit/grpc_test_util.h"

/* ------------------------------------------------------------------------ */
/* Server side: handlers and their observable state */

#define MAX_HELD 64

static struct {
    int cancels;
    int half_closes;
    int want_writes;
    struct grpc_call *held[MAX_HELD];
    int n_held;
    int cs_count; /* client-streaming: messages */
    size_t cs_bytes;
} st;

static uint64_t fake_now;

static uint64_t fake_now_ms(void)
{
    return fake_now;
}

static void on_want_write(struct grpc_conn *c, void *data)
{
    (void)c;
    (void)data;
    st.want_writes++;
}

static void echo_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    int rv = grpc_call_send(call, d, n);
    /* Only the failing allocator makes this fail. */
    assert_true(rv == 0 || rv == IK_ENOMEM);
    if (rv != 0) {
        grpc_call_finish_error(call, rv);
        return;
    }
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void finish_ok(struct grpc_call *call)
{
    st.half_closes++;
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void cstream_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    (void)call;
    (void)d;
    st.cs_count++;
    st.cs_bytes += n;
}

static void cstream_done(struct grpc_call *call)
{
    char buf[64];
    st.half_closes++;
    snprintf(buf, sizeof(buf), "count=%d bytes=%zu", st.cs_count, st.cs_bytes);
    assert_int_equal(grpc_call_send(call, (const uint8_t *)buf, strlen(buf)),
                     0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void hold_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    assert_true(st.n_held < MAX_HELD);
    st.held[st.n_held++] = call;
}

static void hold_cancel(struct grpc_call *call)
{
    int i;
    st.cancels++;
    for (i = 0; i < st.n_held; i++) {
        if (st.held[i] == call) {
            st.held[i] = st.held[--st.n_held];
            break;
        }
    }
    /* Ignored: the call is over. */
    grpc_call_finish(call, GRPC_OK, NULL);
    assert_int_equal(grpc_call_send(call, (const uint8_t *)"x", 1), IK_EINVAL);
}

static void meta_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    const char *tok = grpc_call_metadata(call, "token");
    (void)d;
    (void)n;
    assert_null(grpc_call_metadata(call, "user-agent"));
    assert_null(grpc_call_metadata(call, "content-type"));
    assert_non_null(tok);
    assert_int_equal(grpc_call_send(call, (const uint8_t *)tok, strlen(tok)),
                     0);
    grpc_call_finish_error(call, IK_EKEYNOTFOUND);
}

static void proto_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    (void)d;
    (void)n;
    resp.count = 7;
    resp.more = 1;
    assert_int_equal(grpc_call_send_proto(call, &resp.base), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static const struct grpc_method methods[] = {
    {"/test.Echo/Unary", GRPC_UNARY, echo_msg, NULL, NULL, NULL},
    {"/test.Echo/ServerStream", GRPC_SERVER_STREAMING, sstream_msg, NULL, NULL,
     NULL},
    {"/test.Echo/Bidi", GRPC_BIDI_STREAMING, bidi_msg, finish_ok, NULL, NULL},
    {"/test.Echo/ClientStream", GRPC_CLIENT_STREAMING, cstream_msg,
     cstream_done, NULL, NULL},
    {"/test.Echo/Hold", GRPC_UNARY, hold_msg, NULL, hold_cancel, NULL},
    {"/test.Echo/HoldBidi", GRPC_BIDI_STREAMING, hold_msg, NULL, hold_cancel,
     NULL},
    {"/test.Echo/Fail", GRPC_UNARY, failing_msg, NULL, NULL, NULL},
    {"/test.Echo/Meta", GRPC_UNARY, meta_msg, NULL, NULL, NULL},
    {"/test.Echo/Proto", GRPC_UNARY, proto_msg, NULL, NULL, NULL},
};

/* ------------------------------------------------------------------------ */
/* Client side */

struct body {
    uint8_t *data;
    size_t len, off;
    size_t max_chunk; /* 0: as much as nghttp2 takes */
    bool eof;
    bool deferred;
};

struct rec {
    int32_t id;
    int http_status;
    int grpc_status; /* -1: none */
    char grpc_message[512];
    int header_blocks;
    bool trailers_only;
    bool closed;
    uint32_t close_code;
    uint8_t *data;
    size_t len, cap;
    struct body body;
};

struct fix {
    struct grpc_server_config cfg;
    struct grpc_conn *srv;
    nghttp2_session *cli;
    size_t chunk; /* bytes per grpc_conn_recv(); 0: all */
    int last_recv_rv;
    int pings_acked;
    struct rec *recs[512];
    int n_recs;
};

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct body *b = src->ptr;
    size_t n = b->len - b->off;
    (void)s;
    (void)id;
    (void)ud;
    if (n > length) {
        n = length;
    }
    if (b->max_chunk > 0 && n > b->max_chunk) {
        n = b->max_chunk;
    }
    if (n == 0 && !b->eof) {
        b->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > 0) {
        memcpy(buf, b->data + b->off, n);
        b->off += n;
    }
    if (b->off == b->len && b->eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int cli_on_header(nghttp2_session *s, const nghttp2_frame *frame,
                         const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *ud)
{
    struct rec *r =
        nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    (void)flags;
    (void)ud;
    if (r == NULL) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        r->http_status = atoi((const char *)value);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        r->grpc_status = atoi((const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        assert_true(valuelen < sizeof(r->grpc_message));
        memcpy(r->grpc_message, value, valuelen);
        r->grpc_message[valuelen] = '\0';
    }
    return 0;
}

static int cli_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame,
                             void *ud)
{
    struct fix *f = ud;
    struct rec *r;
    if (frame->hd.type == NGHTTP2_PING &&
        (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        f->pings_acked++;
    }
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    r = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (r == NULL) {
        return 0;
    }
    r->header_blocks++;
    if (r->header_blocks == 1 && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        r->trailers_only = true;
    }
    return 0;
}

static int cli_on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                       const uint8_t *data, size_t len, void *ud)
{
    struct rec *r = nghttp2_session_get_stream_user_data(s, id);
    (void)flags;
    (void)ud;
    assert_non_null(r);
    if (r->cap - r->len < len) {
        r->cap = (r->len + len) * 2;
        r->data = realloc(r->data, r->cap);
        assert_non_null(r->data);
    }
    memcpy(r->data + r->len, data, len);
    r->len += len;
    return 0;
}

static int cli_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct rec *r = nghttp2_session_get_stream_user_data(s, id);
    (void)ud;
    if (r != NULL) {
        r->closed = true;
        r->close_code = code;
    }
    return 0;
}

static void client_new(struct fix *f)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24};
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cli_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                         cli_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cli_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cli_on_close);
    assert_int_equal(nghttp2_session_client_new(&f->cli, cbs, f), 0);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(f->cli, NGHTTP2_FLAG_NONE, &iv, 1),
                     0);
}

static void fix_init(struct fix *f, size_t max_recv, uint32_t max_streams,
                     const struct grpc_allocator *alloc)
{
    memset(f, 0, sizeof(*f));
    memset(&st, 0, sizeof(st));
    f->cfg.methods = methods;
    f->cfg.n_methods = sizeof(methods) / sizeof(methods[0]);
    f->cfg.max_recv_msg_size = max_recv;
    f->cfg.max_concurrent_streams = max_streams;
    f->cfg.now_ms = fake_now_ms;
    f->cfg.on_want_write = on_want_write;
    f->cfg.alloc = alloc;
    client_new(f);
}

static void fix_close(struct fix *f)
{
    int i;
    if (f->srv != NULL) {
        grpc_conn_free(f->srv);
        f->srv = NULL;
    }
    nghttp2_session_del(f->cli);
    for (i = 0; i < f->n_recs; i++) {
        free(f->recs[i]->data);
        free(f->recs[i]->body.data);
        free(f->recs[i]);
    }
}

/*
 * Move bytes both ways until neither side has anything to say. Returns
 * false if the server reported a fatal error on send.
 */
static bool pump(struct fix *f)
{
    bool progress = true;
    while (progress) {
        const uint8_t *p;
        ssize_t n;
        progress = false;
        while ((n = grpc_conn_send(f->srv, &p)) > 0) {
            progress = true;
            assert_int_equal(nghttp2_session_mem_recv(f->cli, p, (size_t)n), n);
        }
        if (n < 0) {
            return false;
        }
        while ((n = nghttp2_session_mem_send(f->cli, &p)) > 0) {
            size_t off = 0;
            progress = true;
            while (off < (size_t)n) {
                size_t k = (size_t)n - off;
                if (f->chunk > 0 && k > f->chunk) {
                    k = f->chunk;
                }
                f->last_recv_rv = grpc_conn_recv(f->srv, p + off, k);
                if (f->last_recv_rv != 0) {
                    break;
                }
                off += k;
            }
        }
        assert_true(n >= 0);
    }
    return true;
}

/* Frame @n bytes of @payload as one gRPC message at the end of @b. */
static void body_add(struct body *b, const void *payload, size_t n,
                     uint8_t flag)
{
    b->data = realloc(b->data, b->len + 5 + n + 1);
    assert_non_null(b->data);
    put_grpc_prefix(b->data + b->len, flag, n);
    if (n > 0) {
        memcpy(b->data + b->len + 5, payload, n);
    }
    b->len += 5 + n;
}

#define MAKE_NV(n, v)                                         \
    {                                                         \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), \
            NGHTTP2_NV_FLAG_NONE                              \
    }

/*
 * Open a stream to @path. @extra: additional header pairs (name, value,
 * ..., NULL). @ct: content-type or NULL for none. The body is filled by the
 * caller through the returned record before pumping.
 */
static struct rec *open_stream_ct(struct fix *f, const char *path,
                                  const char *ct, const char *const *extra)
{
    nghttp2_nv nv[16] = {
        MAKE_NV(":method", "POST"),         MAKE_NV(":scheme", "http"),
        MAKE_NV(":authority", "localhost"), MAKE_NV(":path", path),
        MAKE_NV("te", "trailers"),          MAKE_NV("user-agent", "test/1.0"),
    };
    size_t nvlen = 6;
    nghttp2_data_provider prd;
    struct rec *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    assert_true(f->n_recs < 512);
    f->recs[f->n_recs++] = r;
    r->grpc_status = -1;
    if (ct != NULL) {
        nghttp2_nv c = MAKE_NV("content-type", ct);
        nv[nvlen++] = c;
    }
    while (extra != NULL && extra[0] != NULL) {
        nghttp2_nv e = MAKE_NV(extra[0], extra[1]);
        assert_true(nvlen < 16);
        nv[nvlen++] = e;
        extra += 2;
    }
    prd.source.ptr = &r->body;
    prd.read_callback = body_read;
    r->id = nghttp2_submit_request(f->cli, NULL, nv, nvlen, &prd, r);
    assert_true(r->id > 0);
    return r;
}

static struct rec *open_stream(struct fix *f, const char *path,
                               const char *const *extra)
{
    return open_stream_ct(f, path, "application/grpc", extra);
}

/* A unary request with one message and END_STREAM. */
static struct rec *unary(struct fix *f, const char *path, const void *msg,
                         size_t n)
{
    struct rec *r = open_stream(f, path, NULL);
    body_add(&r->body, msg, n, 0);
    r->body.eof = true;
    return r;
}

static void body_more(struct fix *f, struct rec *r)
{
    if (r->body.deferred) {
        r->body.deferred = false;
        assert_int_equal(nghttp2_session_resume_data(f->cli, r->id), 0);
    }
}

/* The @idx-th message of the response; returns its length or -1. */
static long resp_msg(const struct rec *r, int idx, const uint8_t **out)
{
    size_t off = 0;
    while (off + 5 <= r->len) {
        size_t n = (size_t)r->data[off + 1] << 24 |
                   (size_t)r->data[off + 2] << 16 |
                   (size_t)r->data[off + 3] << 8 | r->data[off + 4];
        assert_int_equal(r->data[off], 0);
        assert_true(off + 5 + n <= r->len);
        if (idx-- == 0) {
            *out = r->data + off + 5;
            return (long)n;
        }
        off += 5 + n;
    }
    return -1;
}

static int resp_count(const struct rec *r)
{
    const uint8_t *p;
    int i = 0;
    while (resp_msg(r, i, &p) >= 0) {
        i++;
    }
    return i;
}

static void assert_resp_msg(const struct rec *r, int idx, const char *want)
{
    const uint8_t *p;
    long n = resp_msg(r, idx, &p);
    assert_int_equal(n, (long)strlen(want));
    assert_memory_equal(p, want, (size_t)n);
}

static void start(struct fix *f, size_t max_recv, uint32_t max_streams)
{
    fix_init(f, max_recv, max_streams, NULL);
    assert_int_equal(grpc_conn_new(&f->cfg, f, &f->srv), 0);
    assert_ptr_equal(grpc_conn_data(f->srv), f);
}

/* ------------------------------------------------------------------------ */
/* Tests */

static void test_unary_echo(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Unary", "hello", 5);
    assert_true(pump(&f));
    assert_int_equal(f.last_recv_rv, 0);
    assert_true(r->closed);
    assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
    assert_int_equal(r->http_status, 200);
    assert_int_equal(r->grpc_status, 0);
    assert_string_equal(r->grpc_message, "");
    assert_false(r->trailers_only);
    assert_int_equal(r->header_blocks, 2);
    assert_int_equal(resp_count(r), 1);
    assert_resp_msg(r, 0, "hello");
    assert_int_equal(grpc_conn_live_calls(f.srv), 0);
    /* Nothing left to say, nothing to ask: no want_write outside recv. */
    assert_int_equal(st.want_writes, 0);
    assert_false(grpc_conn_want_close(f.srv));
    fix_close(&f);
}

static void test_empty_message(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Unary", "", 0);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_int_equal(resp_count(r), 1);
    assert_resp_msg(r, 0, "");
    fix_close(&f);
}

static void test_split_across_frames(void **state)
{
    struct fix f;
    struct rec *r;
    uint8_t *big = malloc(100000);
    const uint8_t *p;
    size_t i;
    (void)state;
    for (i = 0; i < 100000; i++) {
        big[i] = (uint8_t)(i * 7);
    }
    /* Small message fed one byte at a time. */
    start(&f, 0, 0);
    f.chunk = 1;
    r = unary(&f, "/test.Echo/Unary", "split me up please", 18);
    r->body.max_chunk = 3; /* many tiny DATA frames */
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_resp_msg(r, 0, "split me up please");
    /* Large message over many 16 KiB frames, fed in odd chunks. */
    f.chunk = 1000;
    r = unary(&f, "/test.Echo/Unary", big, 100000);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_int_equal(resp_msg(r, 0, &p), 100000);
    assert_memory_equal(p, big, 100000);
    fix_close(&f);
    free(big);
}

static void test_large_request_window(void **state)
{
    struct fix f;
    struct rec *r;
    size_t n = 1572864 + 1000; /* etcd's --max-request-bytes default + */
    uint8_t *big = calloc(1, n);
    const uint8_t *p;
    (void)state;
    start(&f, 2u << 20, 0);
    assert_true(pump(&f));
    /* The server raised both windows well beyond the 64 KiB default. */
    assert_true(nghttp2_session_get_remote_settings(
                    f.cli, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) >= n + 5);
    assert_true(nghttp2_session_get_remote_window_size(f.cli) >=
                (int32_t)(n + 5));
    r = unary(&f, "/test.Echo/Unary", big, n);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_int_equal(resp_msg(r, 0, &p), (long)n);
    fix_close(&f);
    free(big);
}

static void test_two_messages_one_frame(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/Bidi", NULL);
    body_add(&r->body, "one", 3, 0);
    body_add(&r->body, "two", 3, 0);
    body_add(&r->body, "three", 5, 0);
    assert_true(pump(&f));
    assert_false(r->closed);
    assert_int_equal(resp_count(r), 3);
    assert_resp_msg(r, 0, "one");
    assert_resp_msg(r, 1, "two");
    assert_resp_msg(r, 2, "three");
    assert_int_equal(grpc_conn_live_calls(f.srv), 1);
    /* More later, then half-close: the handler finishes. */
    body_add(&r->body, "four", 4, 0);
    r->body.eof = true;
    body_more(&f, r);
    assert_true(pump(&f));
    assert_true(r->closed);
    assert_int_equal(st.half_closes, 1);
    assert_int_equal(resp_count(r), 4);
    assert_resp_msg(r, 3, "four");
    assert_int_equal(r->grpc_status, 0);
    assert_int_equal(grpc_conn_live_calls(f.srv), 0);
    fix_close(&f);
}

static void test_server_streaming(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/ServerStream", "3", 1);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_int_equal(resp_count(r), 3);
    assert_resp_msg(r, 0, "msg-0");
    assert_resp_msg(r, 2, "msg-2");
    /* Zero messages: trailers-only. */
    r = unary(&f, "/test.Echo/ServerStream", "0", 1);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_true(r->trailers_only);
    assert_int_equal(r->len, 0);
    fix_close(&f);
}

static void test_client_streaming(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/ClientStream", NULL);
    body_add(&r->body, "aa", 2, 0);
    body_add(&r->body, "bbb", 3, 0);
    body_add(&r->body, "", 0, 0);
    r->body.max_chunk = 4; /* messages straddle DATA frames */
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(st.cs_count, 3);
    assert_int_equal(st.cs_bytes, 5);
    assert_int_equal(r->grpc_status, 0);
    assert_resp_msg(r, 0, "count=3 bytes=5");
    fix_close(&f);
}

static void test_many_streams(void **state)
{
    struct fix f;
    struct rec *r[200];
    char buf[32];
    int i;
    (void)state;
    start(&f, 0, 100);
    assert_true(pump(&f));
    assert_int_equal(nghttp2_session_get_remote_settings(
                         f.cli, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                     100);
    for (i = 0; i < 200; i++) {
        snprintf(buf, sizeof(buf), "req-%d", i);
        r[i] = unary(&f, "/test.Echo/Unary", buf, strlen(buf));
    }
    assert_true(pump(&f));
    for (i = 0; i < 200; i++) {
        snprintf(buf, sizeof(buf), "req-%d", i);
        assert_int_equal(r[i]->grpc_status, 0);
        assert_resp_msg(r[i], 0, buf);
    }
    /* Many live at once. */
    for (i = 0; i < 50; i++) {
        struct rec *h = open_stream(&f, "/test.Echo/HoldBidi", NULL);
        body_add(&h->body, "x", 1, 0);
    }
    assert_true(pump(&f));
    assert_int_equal(st.n_held, 50);
    assert_int_equal(grpc_conn_live_calls(f.srv), 50);
    fix_close(&f);
    assert_int_equal(st.cancels, 50);
}

static void test_unknown_method(void **state)
{
    struct fix f;
    struct rec *a, *b, *c;
    (void)state;
    start(&f, 0, 0);
    a = unary(&f, "/test.Echo/Nope", "x", 1);
    b = unary(&f, "/foo.Bar/Baz", "x", 1);
    c = unary(&f, "/nopath", "x", 1);
    assert_true(pump(&f));
    assert_int_equal(a->grpc_status, GRPC_UNIMPLEMENTED);
    assert_string_equal(a->grpc_message,
                        "unknown method Nope for service test.Echo");
    assert_true(a->trailers_only);
    assert_int_equal(a->http_status, 200);
    assert_int_equal(b->grpc_status, GRPC_UNIMPLEMENTED);
    assert_string_equal(b->grpc_message, "unknown service foo.Bar");
    assert_int_equal(c->grpc_status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(c->grpc_message, "malformed method name: \"/nopath\"");
    assert_true(a->closed && b->closed && c->closed);
    /* Still usable. */
    a = unary(&f, "/test.Echo/Unary", "ok", 2);
    assert_true(pump(&f));
    assert_resp_msg(a, 0, "ok");
    fix_close(&f);
}

static void test_unknown_method_client_still_sending(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/Nope", NULL);
    body_add(&r->body, "x", 1, 0); /* no END_STREAM */
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_UNIMPLEMENTED);
    /* Trailers, then RST_STREAM(NO_ERROR) as grpc-go does. */
    assert_true(r->closed);
    assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
    fix_close(&f);
}

static void test_compressed_flag(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/Hold", NULL);
    body_add(&r->body, "zz", 2, 1);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_UNIMPLEMENTED);
    assert_string_equal(r->grpc_message, ik_strerror(IK_ECOMPRESSED));
    assert_int_equal(st.n_held, 0);
    assert_int_equal(st.cancels, 1);
    /* Payload format other than 0/1. */
    r = open_stream(&f, "/test.Echo/Unary", NULL);
    body_add(&r->body, "zz", 2, 7);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_INTERNAL);
    r = unary(&f, "/test.Echo/Unary", "fine", 4);
    assert_true(pump(&f));
    assert_resp_msg(r, 0, "fine");
    fix_close(&f);
}

static void test_grpc_encoding_gzip(void **state)
{
    static const char *const gz[] = {"grpc-encoding", "gzip", NULL};
    static const char *const id[] = {"grpc-encoding", "identity", NULL};
    struct fix f;
    struct rec *r, *ok;
    (void)state;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/Hold", gz);
    body_add(&r->body, "zz", 2, 0);
    r->body.eof = true;
    ok = open_stream(&f, "/test.Echo/Unary", id);
    body_add(&ok->body, "id", 2, 0);
    ok->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_UNIMPLEMENTED);
    assert_string_equal(
        r->grpc_message,
        "grpc: Decompressor is not installed for grpc-encoding \"gzip\"");
    assert_true(r->trailers_only);
    assert_int_equal(st.n_held, 0);
    assert_int_equal(st.cancels, 0); /* never became a call */
    assert_int_equal(ok->grpc_status, 0);
    assert_resp_msg(ok, 0, "id");
    fix_close(&f);
}

static void test_oversize(void **state)
{
    struct fix f;
    struct rec *r;
    uint8_t big[2000];
    uint8_t *huge = calloc(1, 100000);
    (void)state;
    memset(big, 'a', sizeof(big));
    start(&f, 1024, 0);
    r = open_stream(&f, "/test.Echo/Hold", NULL);
    body_add(&r->body, big, sizeof(big), 0);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message,
                        "grpc: received message larger than max (2000 vs. "
                        "1024)");
    assert_int_equal(st.cancels, 1);
    /* Exactly max is fine, one more is not. */
    r = unary(&f, "/test.Echo/Unary", big, 1024);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    r = unary(&f, "/test.Echo/Unary", big, 1025);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message,
                        "grpc: received message larger than max (1025 vs. "
                        "1024)");
    /* Client still sending when refused: trailers then RST(NO_ERROR). */
    r = unary(&f, "/test.Echo/Unary", huge, 100000);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message,
                        "grpc: received message larger than max (100000 vs. "
                        "1024)");
    assert_true(r->closed);
    /* The connection is still usable. */
    r = unary(&f, "/test.Echo/Unary", "after", 5);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, 0);
    assert_resp_msg(r, 0, "after");
    assert_int_equal(f.last_recv_rv, 0);
    fix_close(&f);
    free(huge);
}

static void test_timeout(void **state)
{
    static const char *const to[] = {"grpc-timeout", "100m", NULL};
    static const char *const to2[] = {"grpc-timeout", "1S", NULL};
    struct fix f;
    struct rec *r, *r2;
    (void)state;
    fake_now = 1000;
    start(&f, 0, 0);
    r = open_stream(&f, "/test.Echo/Hold", to);
    body_add(&r->body, "x", 1, 0);
    r->body.eof = true;
    r2 = open_stream(&f, "/test.Echo/Hold", to2);
    body_add(&r2->body, "y", 1, 0);
    r2->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(st.n_held, 2);
    assert_int_equal(grpc_call_deadline(st.held[0]) +
                         grpc_call_deadline(st.held[1]),
                     1100 + 2000);
    fake_now = 1099;
    grpc_conn_tick(f.srv);
    assert_int_equal(st.cancels, 0);
    assert_int_equal(st.want_writes, 0);
    fake_now = 1100;
    grpc_conn_tick(f.srv);
    assert_int_equal(st.cancels, 1);
    assert_int_equal(st.n_held, 1);
    assert_int_equal(st.want_writes, 1);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(r->grpc_message, "context deadline exceeded");
    assert_false(r2->closed);
    fake_now = 5000;
    grpc_conn_tick(f.srv);
    assert_int_equal(st.cancels, 2);
    assert_true(pump(&f));
    assert_int_equal(r2->grpc_status, GRPC_DEADLINE_EXCEEDED);
    /* No deadline: never expires. */
    r = unary(&f, "/test.Echo/Hold", "z", 1);
    assert_true(pump(&f));
    assert_int_equal(grpc_call_deadline(st.held[0]), 0);
    fake_now = UINT64_MAX - 1;
    grpc_conn_tick(f.srv);
    assert_int_equal(st.cancels, 2);
    fix_close(&f);
    assert_int_equal(st.cancels, 3);
}

static void test_bad_headers(void **state)
{
    static const char *const bad_to[] = {"grpc-timeout", "abc", NULL};
    struct fix f;
    struct rec *a, *b, *c, *d;
    (void)state;
    start(&f, 0, 0);
    a = open_stream_ct(&f, "/test.Echo/Unary", NULL, NULL);
    body_add(&a->body, "x", 1, 0);
    a->body.eof = true;
    b = open_stream_ct(&f, "/test.Echo/Unary", "text/plain", NULL);
    b->body.eof = true;
    c = open_stream(&f, "/test.Echo/Unary", bad_to);
    c->body.eof = true;
    d = open_stream_ct(&f, "/test.Echo/Unary", "application/grpc+proto", NULL);
    body_add(&d->body, "d", 1, 0);
    d->body.eof = true;
    assert_true(pump(&f));
    assert_true(a->closed && b->closed && c->closed);
    assert_int_equal(a->close_code, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(b->close_code, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(c->close_code, NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(a->header_blocks, 0);
    assert_int_equal(d->grpc_status, 0);
    assert_resp_msg(d, 0, "d");
    fix_close(&f);
}

static void test_unary_protocol_violations(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    /* Two messages on a unary call. */
    r = open_stream(&f, "/test.Echo/Hold", NULL);
    body_add(&r->body, "a", 1, 0);
    body_add(&r->body, "b", 1, 0);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_INTERNAL);
    assert_int_equal(st.cancels, 1);
    assert_int_equal(st.n_held, 0);
    /* No message at all. */
    r = open_stream(&f, "/test.Echo/Hold", NULL);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_INTERNAL);
    assert_int_equal(st.cancels, 2);
    /* Half-close in the middle of a message. */
    r = open_stream(&f, "/test.Echo/HoldBidi", NULL);
    body_add(&r->body, "abcdef", 6, 0);
    r->body.len -= 2;
    r->body.eof = true;
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_INTERNAL);
    assert_int_equal(st.cancels, 3);
    assert_int_equal(grpc_conn_live_calls(f.srv), 0);
    fix_close(&f);
}

static void test_client_rst(void **state)
{
    struct fix f;
    struct rec *r;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Hold", "x", 1);
    assert_true(pump(&f));
    assert_int_equal(st.n_held, 1);
    assert_int_equal(grpc_conn_live_calls(f.srv), 1);
    assert_int_equal(nghttp2_submit_rst_stream(f.cli, NGHTTP2_FLAG_NONE, r->id,
                                               NGHTTP2_CANCEL),
                     0);
    assert_true(pump(&f));
    assert_int_equal(st.cancels, 1);
    assert_int_equal(st.n_held, 0);
    assert_int_equal(grpc_conn_live_calls(f.srv), 0);
    assert_int_equal(r->grpc_status, -1);
    fix_close(&f);
    assert_int_equal(st.cancels, 1);
}

static void test_free_with_live_calls(void **state)
{
    struct fix f;
    struct rec *r;
    int i;
    (void)state;
    start(&f, 0, 0);
    for (i = 0; i < 3; i++) {
        r = unary(&f, "/test.Echo/Hold", "x", 1);
    }
    r = open_stream(&f, "/test.Echo/HoldBidi", NULL);
    body_add(&r->body, "partial", 7, 0);
    r->body.len -= 3; /* a half-received message in the buffer */
    assert_true(pump(&f));
    assert_int_equal(st.n_held, 3);
    /* Output queued but never sent, too. */
    assert_int_equal(grpc_call_send(st.held[0], (const uint8_t *)"q", 1), 0);
    assert_int_equal(grpc_call_pending_bytes(st.held[0]), 6);
    grpc_conn_free(f.srv);
    f.srv = NULL;
    assert_int_equal(st.cancels, 4); /* 3 held + the bidi mid-message */
    assert_int_equal(st.n_held, 0);
    fix_close(&f);
}

static void test_async_finish(void **state)
{
    struct fix f;
    struct rec *r;
    struct grpc_call *call;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Hold", "x", 1);
    assert_true(pump(&f));
    assert_int_equal(st.n_held, 1);
    assert_int_equal(r->header_blocks, 0);
    call = st.held[0];
    assert_ptr_equal(grpc_call_conn(call), f.srv);
    assert_string_equal(grpc_call_method(call)->path, "/test.Echo/Hold");
    grpc_call_set_data(call, &f);
    assert_ptr_equal(grpc_call_get_data(call), &f);
    assert_int_equal(st.want_writes, 0);
    assert_int_equal(grpc_call_send(call, (const uint8_t *)"late", 4), 0);
    assert_int_equal(st.want_writes, 1);
    assert_int_equal(grpc_call_pending_bytes(call), 9);
    assert_true(pump(&f)); /* headers + message; data provider parks */
    assert_int_equal(grpc_call_pending_bytes(call), 0);
    assert_int_equal(r->header_blocks, 1);
    assert_int_equal(resp_count(r), 1);
    assert_false(r->closed);
    /* Resumed from the deferred state. */
    assert_int_equal(grpc_call_send(call, (const uint8_t *)"later", 5), 0);
    assert_int_equal(st.want_writes, 2);
    assert_int_equal(grpc_call_send(call, (const uint8_t *)"latest", 6), 0);
    assert_int_equal(st.want_writes, 2); /* coalesced until drained */
    grpc_call_finish(call, GRPC_ABORTED, "nope");
    st.n_held = 0;
    assert_true(pump(&f));
    assert_true(r->closed);
    assert_int_equal(resp_count(r), 3);
    assert_resp_msg(r, 2, "latest");
    assert_int_equal(r->grpc_status, GRPC_ABORTED);
    assert_string_equal(r->grpc_message, "nope");
    assert_int_equal(st.cancels, 0);
    fix_close(&f);
    assert_int_equal(st.cancels, 0);
}

static void test_status_message_encoding(void **state)
{
    struct fix f;
    struct rec *r;
    static const char *const md[] = {"token", "s3cr3t", "x-other", "1", NULL};
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Fail", "x", 1);
    assert_true(pump(&f));
    assert_int_equal(r->grpc_status, GRPC_NOT_FOUND);
    assert_string_equal(r->grpc_message, "n%C3%B6t 100%25 found%0A");
    r = open_stream(&f, "/test.Echo/Meta", md);
    body_add(&r->body, "x", 1, 0);
    r->body.eof = true;
    assert_true(pump(&f));
    assert_resp_msg(r, 0, "s3cr3t");
    assert_int_equal(r->grpc_status, GRPC_INVALID_ARGUMENT);
    assert_string_equal(r->grpc_message, "etcdserver: key not found");
    fix_close(&f);
}

static void test_send_proto(void **state)
{
    struct fix f;
    struct rec *r;
    const uint8_t *p;
    long n;
    Etcdserverpb__RangeResponse *resp;
    (void)state;
    start(&f, 0, 0);
    r = unary(&f, "/test.Echo/Proto", "", 0);
    assert_true(pump(&f));
    n = resp_msg(r, 0, &p);
    assert_true(n > 0);
    resp = etcdserverpb__range_response__unpack(NULL, (size_t)n, p);
    assert_non_null(resp);
    assert_int_equal(resp->count, 7);
    assert_true(resp->more);
    etcdserverpb__range_response__free_unpacked(resp, NULL);
    fix_close(&f);
}

static void test_ping(void **state)
{
    struct fix f;
    (void)state;
    start(&f, 0, 0);
    assert_int_equal(nghttp2_submit_ping(f.cli, NGHTTP2_FLAG_NONE, NULL), 0);
    assert_true(pump(&f));
    assert_int_equal(f.pings_acked, 1);
    fix_close(&f);
}

static void test_garbage_preface(void **state)
{
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct fix f;
    const uint8_t *p;
    ssize_t n;
    int rounds = 0;
    (void)state;
    start(&f, 0, 0);
    assert_int_equal(
        grpc_conn_recv(f.srv, (const uint8_t *)junk, sizeof(junk) - 1),
        IK_EPROTO);
    assert_int_equal(grpc_conn_recv(f.srv, (const uint8_t *)"x", 1), IK_EPROTO);
    while ((n = grpc_conn_send(f.srv, &p)) > 0) {
        assert_true(++rounds < 100);
    }
    assert_true(n >= 0);
    assert_true(grpc_conn_want_close(f.srv));
    fix_close(&f);
}

static void test_client_goaway(void **state)
{
    struct fix f;
    (void)state;
    start(&f, 0, 0);
    assert_true(pump(&f));
    assert_false(grpc_conn_want_close(f.srv));
    assert_int_equal(nghttp2_session_terminate_session(f.cli, NGHTTP2_NO_ERROR),
                     0);
    assert_true(pump(&f));
    assert_true(grpc_conn_want_close(f.srv));
    fix_close(&f);
}

static void test_timeout_parse(void **state)
{
    uint64_t ms = 42;
    (void)state;
    assert_int_equal(grpc_timeout_parse("1H", 2, &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(grpc_timeout_parse("2M", 2, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(grpc_timeout_parse("3S", 2, &ms), 0);
    assert_int_equal(ms, 3000);
    assert_int_equal(grpc_timeout_parse("4m", 2, &ms), 0);
    assert_int_equal(ms, 4);
    assert_int_equal(grpc_timeout_parse("1500u", 5, &ms), 0);
    assert_int_equal(ms, 2);
    assert_int_equal(grpc_timeout_parse("1n", 2, &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(grpc_timeout_parse("0m", 2, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(grpc_timeout_parse("99999999H", 9, &ms), 0);
    assert_int_equal(ms, 99999999ull * 3600000);
    ms = 42;
    assert_int_equal(grpc_timeout_parse("123456789S", 10, &ms), IK_EINVAL);
    assert_int_equal(grpc_timeout_parse("5", 1, &ms), IK_EINVAL);
    assert_int_equal(grpc_timeout_parse("5x", 2, &ms), IK_EINVAL);
    assert_int_equal(grpc_timeout_parse("-5S", 3, &ms), IK_EINVAL);
    assert_int_equal(grpc_timeout_parse("S", 1, &ms), IK_EINVAL);
    assert_int_equal(grpc_timeout_parse("", 0, &ms), IK_EINVAL);
    assert_int_equal(ms, 42);
}

static void test_percent_encode(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(grpc_percent_encode("plain text", out, sizeof(out)), 10);
    assert_string_equal(out, "plain text");
    assert_int_equal(grpc_percent_encode("a%b\n\xff", out, sizeof(out)), 11);
    assert_string_equal(out, "a%25b%0A%FF");
    /* Truncation never leaves half an escape. */
    assert_int_equal(grpc_percent_encode("ab%", out, 4), 5);
    assert_string_equal(out, "ab");
    assert_int_equal(grpc_percent_encode("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

/* Run a small exchange with the allocator failing after @budget
 * allocations. Returns true when everything worked. */
static bool alloc_round(long budget)
{
    struct fix f;
    struct rec *r, *h, *x;
    bool ok = false;

    fix_init(&f, 0, 0, &failing_alloc);
    fa.budget = budget;
    fa.live = 0;
    if (grpc_conn_new(&f.cfg, &f, &f.srv) != 0) {
        assert_int_equal(fa.live, 0);
        f.srv = NULL;
        fix_close(&f);
        return false;
    }
    r = unary(&f, "/test.Echo/Unary", "hello", 5);
    h = open_stream(&f, "/test.Echo/HoldBidi", NULL);
    body_add(&h->body, "abc", 3, 0);
    x = unary(&f, "/test.Echo/Nope", "x", 1);
    if (pump(&f) && f.last_recv_rv == 0 && r->grpc_status == 0 &&
        resp_count(r) == 1 && st.n_held == 1 &&
        x->grpc_status == GRPC_UNIMPLEMENTED) {
        assert_resp_msg(r, 0, "hello");
        ok = true;
    }
    grpc_conn_free(f.srv);
    f.srv = NULL;
    assert_int_equal(st.n_held, 0); /* held call cancelled if it got live */
    assert_int_equal(fa.live, 0);   /* nothing leaked */
    fix_close(&f);
    return ok;
}

static void test_failing_allocator(void **state)
{
    (void)state;
    fa_sweep(alloc_round, 2000, 5);
}

/* ------------------------------------------------------------------------ */
/* libuv glue over real loopback TCP */

struct uvt {
    uv_loop_t loop;
    struct grpc_uv_server srv;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t guard;
    struct fix f;
    struct rec *echo;
    bool server_closed;
    bool closing;
    bool eof;
    bool timed_out;
    uint8_t rbuf[65536];
};

static void uvt_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void uvt_flush(struct uvt *t)
{
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(t->f.cli, &p)) > 0) {
        uv_write_t *req = malloc(sizeof(*req));
        uv_buf_t buf = uv_buf_init(malloc((size_t)n), (unsigned)n);
        assert_non_null(req);
        assert_non_null(buf.base);
        memcpy(buf.base, p, (size_t)n);
        req->data = buf.base;
        assert_int_equal(
            uv_write(req, (uv_stream_t *)&t->tcp, &buf, 1, uvt_write_cb), 0);
    }
    assert_true(n == 0);
}

static void uvt_srv_closed(struct grpc_uv_server *s)
{
    struct uvt *t = s->data;
    t->server_closed = true;
}

static void uvt_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct uvt *t = h->data;
    (void)sz;
    *buf = uv_buf_init((char *)t->rbuf, sizeof(t->rbuf));
}

static void uvt_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct uvt *t = stream->data;
    if (nread < 0) {
        t->eof = true;
        uv_close((uv_handle_t *)&t->tcp, NULL);
        uv_close((uv_handle_t *)&t->guard, NULL);
        return;
    }
    assert_int_equal(nghttp2_session_mem_recv(
                         t->f.cli, (const uint8_t *)buf->base, (size_t)nread),
                     nread);
    uvt_flush(t);
    if (t->echo->closed && st.n_held == 1 && !t->closing) {
        /* One answered, one live: shut the server down under it. */
        t->closing = true;
        assert_int_equal(grpc_uv_server_conn_count(&t->srv), 1);
        grpc_uv_server_close(&t->srv, uvt_srv_closed);
        assert_int_equal(st.cancels, 1); /* synchronously */
    }
}

static void uvt_connected(uv_connect_t *req, int status)
{
    struct uvt *t = req->data;
    assert_int_equal(status, 0);
    t->echo = unary(&t->f, "/test.Echo/Unary", "over tcp", 8);
    unary(&t->f, "/test.Echo/Hold", "held", 4);
    uvt_flush(t);
    assert_int_equal(uv_read_start((uv_stream_t *)&t->tcp, uvt_alloc, uvt_read),
                     0);
}

static void uvt_guard(uv_timer_t *h)
{
    struct uvt *t = h->data;
    t->timed_out = true;
    uv_close((uv_handle_t *)&t->tcp, NULL);
    uv_close((uv_handle_t *)&t->guard, NULL);
    grpc_uv_server_close(&t->srv, uvt_srv_closed);
}

static void test_uv_roundtrip(void **state)
{
    struct uvt *t = calloc(1, sizeof(*t));
    struct sockaddr_in sa;
    char errmsg[IK_ERRMSG_SIZE];
    (void)state;
    assert_non_null(t);
    fix_init(&t->f, 0, 0, NULL);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(grpc_uv_server_init(&t->srv, &t->loop, &t->f.cfg), 0);
    t->srv.data = t;
    assert_int_equal(grpc_uv_server_listen(&t->srv, "127.0.0.1", 0, errmsg), 0);
    assert_true(grpc_uv_server_port(&t->srv) > 0);
    uv_tcp_init(&t->loop, &t->tcp);
    t->tcp.data = t;
    t->creq.data = t;
    uv_ip4_addr("127.0.0.1", grpc_uv_server_port(&t->srv), &sa);
    assert_int_equal(uv_tcp_connect(&t->creq, &t->tcp,
                                    (const struct sockaddr *)&sa,
                                    uvt_connected),
                     0);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
    uv_timer_start(&t->guard, uvt_guard, 5000, 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_false(t->timed_out);
    assert_true(t->server_closed);
    assert_true(t->eof);
    assert_int_equal(t->echo->grpc_status, 0);
    assert_resp_msg(t->echo, 0, "over tcp");
    assert_int_equal(st.cancels, 1);
    assert_int_equal(st.n_held, 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    fix_close(&t->f);
    free(t);
}

static void test_uv_listen_errors(void **state)
{
    uv_loop_t loop;
    struct grpc_uv_server a, b;
    struct grpc_server_config cfg = {methods, 1, 0, 0, NULL, NULL, NULL};
    char errmsg[IK_ERRMSG_SIZE], want[IK_ERRMSG_SIZE];
    uint16_t port;
    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(grpc_uv_server_init(&a, &loop, &cfg), 0);
    assert_int_equal(grpc_uv_server_init(&b, &loop, &cfg), 0);
    assert_int_equal(grpc_uv_server_listen(&a, "127.0.0.1", 0, errmsg), 0);
    port = grpc_uv_server_port(&a);
    assert_int_equal(grpc_uv_server_listen(&b, "127.0.0.1", port, errmsg),
                     IK_EIO);
    snprintf(want, sizeof(want),
             "listen tcp 127.0.0.1:%u: bind: address already in use",
             (unsigned)port);
    assert_string_equal(errmsg, want);
    /* IPv6 (if the machine has ::1) and a bad address. */
    if (grpc_uv_server_listen(&b, "::1", 0, errmsg) == 0) {
        assert_true(grpc_uv_server_port(&b) > 0);
    } else {
        assert_non_null(strstr(errmsg, "listen tcp [::1]:0: "));
    }
    assert_int_equal(grpc_uv_server_listen(&b, "256.1.2.3", 1, errmsg), IK_EIO);
    assert_non_null(strstr(errmsg, "listen tcp 256.1.2.3:1: "));
    grpc_uv_server_close(&a, NULL);
    grpc_uv_server_close(&b, NULL);
    grpc_uv_server_close(&b, NULL); /* twice: no-op */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_echo),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_split_across_frames),
        cmocka_unit_test(test_large_request_window),
        cmocka_unit_test(test_two_messages_one_frame),
        cmocka_unit_test(test_server_streaming),
        cmocka_unit_test(test_client_streaming),
        cmocka_unit_test(test_many_streams),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_unknown_method_client_still_sending),
        cmocka_unit_test(test_compressed_flag),
        cmocka_unit_test(test_grpc_encoding_gzip),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_unary_protocol_violations),
        cmocka_unit_test(test_client_rst),
        cmocka_unit_test(test_free_with_live_calls),
        cmocka_unit_test(test_async_finish),
        cmocka_unit_test(test_status_message_encoding),
        cmocka_unit_test(test_send_proto),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_garbage_preface),
        cmocka_unit_test(test_client_goaway),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_percent_encode),
        cmocka_unit_test(test_failing_allocator),
        cmocka_unit_test(test_uv_roundtrip),
        cmocka_unit_test(test_uv_listen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
