/*
 * Tests for peer_uv, the raft transport sharing the peer port with the peer
 * gRPC server: real loopback TCP, one uv loop per test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/grpc.h"
#include "server/grpc_uv.h"
#include "server/log.h"
#include "server/peer_uv.h"

/* ------------------------------------------------------------------------ */
/* Loop helpers */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void tick_cb(uv_timer_t *h)
{
    (void)h;
}

/* Run @loop until pred(arg) holds or @ms pass; returns the predicate. A
 * ticking timer keeps the loop from blocking forever. */
static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg,
                      unsigned ms)
{
    uv_timer_t tick;
    uint64_t end = now_ms() + ms;
    bool ok;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    while (!(ok = pred(arg)) && now_ms() < end) {
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

/* Run until nothing is left on the loop, then close it: fails if a handle
 * leaked. */
static void loop_finish(uv_loop_t *loop)
{
    int i;
    for (i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++) {
        usleep(1000);
    }
    assert_int_equal(uv_loop_close(loop), 0);
}

static void free_handle_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* A TCP port nobody listens on (bound, read, released). */
static uint16_t free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port;

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ------------------------------------------------------------------------ */
/* A transport endpoint as raft would drive it */

#define BIG (256u << 10)

struct ep {
    struct raft_uv_transport t;
    uv_loop_t *loop;
    bool closed;
    /* accept side */
    int accepts;
    raft_id acc_id;
    char acc_address[300];
    uv_stream_t *acc_stream;
    /* connect side */
    struct raft_uv_connect req;
    int connects; /* callbacks fired */
    int conn_status;
    uv_stream_t *conn_stream;
    bool write_after_connect; /* write `big` from the connect callback */
    /* data received on the stream this endpoint holds */
    uint8_t *rx;
    size_t rx_len;
    bool rx_eof;
};

static uint8_t big[BIG];

static void ep_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct ep *e = h->data;
    (void)sz;
    e->rx = realloc(e->rx, e->rx_len + 65536);
    assert_non_null(e->rx);
    *buf = uv_buf_init((char *)e->rx + e->rx_len, 65536);
}

static void ep_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ep *e = s->data;
    (void)buf;
    if (nread < 0) {
        e->rx_eof = true;
        uv_read_stop(s);
        return;
    }
    e->rx_len += (size_t)nread;
}

static void write_free_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void stream_write(uv_stream_t *s, const void *data, size_t len)
{
    uv_write_t *req = malloc(sizeof(*req));
    uv_buf_t buf = uv_buf_init(malloc(len), (unsigned)len);
    assert_non_null(req);
    assert_non_null(buf.base);
    memcpy(buf.base, data, len);
    req->data = buf.base;
    assert_int_equal(uv_write(req, s, &buf, 1, write_free_cb), 0);
}

static void ep_accept_cb(struct raft_uv_transport *t, raft_id id,
                         const char *address, uv_stream_t *stream)
{
    struct ep *e = t->data;
    e->accepts++;
    e->acc_id = id;
    snprintf(e->acc_address, sizeof(e->acc_address), "%s", address);
    if (e->acc_stream != NULL) {
        /* Only one kept; extra ones are closed like raft would. */
        uv_close((uv_handle_t *)stream, free_handle_cb);
        return;
    }
    e->acc_stream = stream;
    stream->data = e;
    assert_int_equal(uv_read_start(stream, ep_alloc, ep_read), 0);
}

static void ep_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream,
                          int status)
{
    struct ep *e = req->data;
    e->connects++;
    e->conn_status = status;
    e->conn_stream = stream;
    if (status != 0) {
        assert_null(stream);
        return;
    }
    assert_non_null(stream);
    stream->data = e;
    if (e->write_after_connect) {
        stream_write(stream, big, sizeof(big));
    }
    assert_int_equal(uv_read_start(stream, ep_alloc, ep_read), 0);
}

static void ep_closed_cb(struct raft_uv_transport *t)
{
    struct ep *e = t->data;
    assert_false(e->closed);
    e->closed = true;
}

/* Init @e as raft would: peer_uv_init + vtable init. @bind may be NULL. */
static void ep_init(struct ep *e, uv_loop_t *loop, struct grpc_uv_server *grpc,
                    raft_id id, const char *address, const char *bind)
{
    memset(e, 0, sizeof(*e));
    e->loop = loop;
    e->t.data = e;
    assert_int_equal(peer_uv_init(&e->t, loop, grpc), 0);
    assert_ptr_equal(e->t.data, e);
    if (bind != NULL) {
        assert_int_equal(peer_uv_set_bind_address(&e->t, bind), 0);
    }
    assert_int_equal(e->t.init(&e->t, id, address), 0);
    e->req.data = e;
}

static int ep_listen(struct ep *e)
{
    return e->t.listen(&e->t, ep_accept_cb);
}

static bool ep_is_closed(void *arg)
{
    return ((struct ep *)arg)->closed;
}

/* Close the streams @e holds and the transport; release everything. */
static void ep_close(struct ep *e)
{
    if (e->acc_stream != NULL) {
        uv_close((uv_handle_t *)e->acc_stream, free_handle_cb);
        e->acc_stream = NULL;
    }
    if (e->conn_stream != NULL) {
        uv_close((uv_handle_t *)e->conn_stream, free_handle_cb);
        e->conn_stream = NULL;
    }
    e->t.close(&e->t, ep_closed_cb);
    assert_true(run_until(e->loop, ep_is_closed, e, 5000));
    peer_uv_close(&e->t);
    free(e->rx);
    e->rx = NULL;
}

static bool ep_connected(void *arg)
{
    return ((struct ep *)arg)->connects > 0;
}

/* ------------------------------------------------------------------------ */
/* Handshake encoding, written independently of peer_uv.c from its spec */

static size_t hs_encode(uint8_t *b, uint16_t version, uint64_t id,
                        const char *addr, size_t alen_field)
{
    static const uint8_t magic[8] = {0x89, 'i', 'k', 'a', 'd', 'a', '\r', '\n'};
    size_t alen = strlen(addr);
    uint32_t crc;
    memcpy(b, magic, 8);
    b[8] = (uint8_t)(version >> 8);
    b[9] = (uint8_t)version;
    for (int i = 0; i < 8; i++) {
        b[10 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    b[18] = (uint8_t)(alen_field >> 8);
    b[19] = (uint8_t)alen_field;
    memcpy(b + 20, addr, alen);
    crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(20 + alen));
    b[20 + alen] = (uint8_t)(crc >> 24);
    b[21 + alen] = (uint8_t)(crc >> 16);
    b[22 + alen] = (uint8_t)(crc >> 8);
    b[23 + alen] = (uint8_t)crc;
    return 24 + alen;
}

/* ------------------------------------------------------------------------ */
/* Tests: address parsing */

static void test_parse_address(void **state)
{
    char host[64];
    uint16_t port;
    (void)state;

    assert_int_equal(
        peer_uv_parse_address("127.0.0.1:2380", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 2380);
    assert_int_equal(
        peer_uv_parse_address("[::1]:2380", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 2380);
    assert_int_equal(
        peer_uv_parse_address("localhost:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0);
    assert_int_equal(
        peer_uv_parse_address("0.0.0.0:65535", host, sizeof(host), &port), 0);
    assert_int_equal(port, 65535);

    static const char *const bad[] = {
        "",          "127.0.0.1", "127.0.0.1:", ":2380",   "::1:2380", "[::1]",
        "[::1]2380", "[]:1",      "[a]:1",      "h:65536", "h:123456", "h:12a",
        "h:-1",      "h o:1",     "[::1:1",     "h:1:2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            peer_uv_parse_address(bad[i], host, sizeof(host), &port),
            IK_EINVAL);
    }
    /* Host longer than the output buffer. */
    assert_int_equal(peer_uv_parse_address("abcdefgh:1", host, 8, &port),
                     IK_EINVAL);
    assert_int_equal(peer_uv_parse_address("abcdefg:1", host, 8, &port), 0);
}

static void test_init_errors(void **state)
{
    uv_loop_t loop;
    struct raft_uv_transport t;
    char longaddr[300];
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&t, 0, sizeof(t));
    assert_int_equal(peer_uv_init(&t, &loop, NULL), 0);
    assert_int_equal(peer_uv_set_bind_address(&t, "nope"), IK_EINVAL);
    assert_non_null(strstr(t.errmsg, "nope"));
    assert_int_equal(t.init(&t, 0, "127.0.0.1:1"), RAFT_BADID);
    assert_int_equal(t.init(&t, 1, "127.0.0.1"), RAFT_INVALID);
    memset(longaddr, 'a', sizeof(longaddr));
    memcpy(longaddr + 280, ":1", 3);
    assert_int_equal(t.init(&t, 1, longaddr), RAFT_INVALID);
    assert_int_equal(peer_uv_port(&t), 0);
    /* Never initialised: no handle exists, memory release suffices. */
    peer_uv_close(&t);
    loop_finish(&loop);
}

/* ------------------------------------------------------------------------ */
/* Tests: raft connections */

struct pair {
    struct ep a, b;
};

static bool pair_rx_done(void *arg)
{
    struct pair *p = arg;
    return p->a.rx_len >= BIG && p->b.rx_len >= 5;
}

/* Connect b → a over @target and exchange data both ways. */
static void roundtrip(uv_loop_t *loop, const char *bind_a,
                      const char *target_fmt, const char *b_address)
{
    struct pair *p = calloc(1, sizeof(*p));
    char target[64];
    assert_non_null(p);

    ep_init(&p->a, loop, NULL, 1, "127.0.0.1:9", bind_a);
    assert_int_equal(ep_listen(&p->a), 0);
    assert_true(peer_uv_port(&p->a.t) > 0);
    ep_init(&p->b, loop, NULL, 2, b_address, NULL);
    p->b.write_after_connect = true;
    snprintf(target, sizeof(target), target_fmt,
             (unsigned)peer_uv_port(&p->a.t));
    assert_int_equal(
        p->b.t.connect(&p->b.t, &p->b.req, 1, target, ep_connect_cb), 0);
    assert_int_equal(p->b.connects, 0); /* never synchronously */
    assert_true(run_until(loop, ep_connected, &p->b, 5000));
    assert_int_equal(p->b.connects, 1);
    assert_int_equal(p->b.conn_status, 0);

    /* The accepted side got the handshake's identity, then the bytes
     * written right after connect_cb, intact. */
    for (int i = 0; i < 1000 && p->a.rx_len < BIG; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_int_equal(p->a.accepts, 1);
    assert_int_equal(p->a.acc_id, 2);
    assert_string_equal(p->a.acc_address, b_address);
    assert_int_equal(p->a.rx_len, BIG);
    assert_memory_equal(p->a.rx, big, BIG);

    stream_write(p->a.acc_stream, "pong!", 5);
    assert_true(run_until(loop, pair_rx_done, p, 5000));
    assert_int_equal(p->b.rx_len, 5);
    assert_memory_equal(p->b.rx, "pong!", 5);

    ep_close(&p->b);
    ep_close(&p->a);
    free(p);
}

static void test_connect_accept_roundtrip(void **state)
{
    uv_loop_t loop;
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* Advertise one address, listen on another (any-address bind). */
    roundtrip(&loop, "0.0.0.0:0", "127.0.0.1:%u", "127.0.0.1:2222");
    roundtrip(&loop, "127.0.0.1:0", "127.0.0.1:%u", "[::1]:2380");
    /* A name resolved with uv_getaddrinfo. */
    roundtrip(&loop, "127.0.0.1:0", "localhost:%u", "localhost:7");
    loop_finish(&loop);
}

static void test_ipv6(void **state)
{
    uv_loop_t loop;
    struct ep probe;
    int rv;
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    ep_init(&probe, &loop, NULL, 1, "[::1]:0", NULL);
    rv = ep_listen(&probe);
    ep_close(&probe);
    if (rv != 0) {
        loop_finish(&loop);
        skip(); /* no IPv6 loopback here */
    }
    roundtrip(&loop, "[::1]:0", "[::1]:%u", "[::1]:2380");
    loop_finish(&loop);
}

static void test_listen_in_use(void **state)
{
    uv_loop_t loop;
    struct ep a, b;
    char bind[32], want[96];
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    ep_init(&a, &loop, NULL, 1, "127.0.0.1:0", NULL);
    assert_int_equal(ep_listen(&a), 0);
    snprintf(bind, sizeof(bind), "127.0.0.1:%u", (unsigned)peer_uv_port(&a.t));
    ep_init(&b, &loop, NULL, 2, bind, NULL);
    assert_int_equal(ep_listen(&b), RAFT_IOERR);
    snprintf(want, sizeof(want), "listen tcp %s: bind: address already in use",
             bind);
    assert_string_equal(b.t.errmsg, want);
    ep_close(&b);
    ep_close(&a);
    loop_finish(&loop);
}

/* ------------------------------------------------------------------------ */
/* Tests: HTTP/2 on the peer port reaches the gRPC server */

static int echo_calls;

static void echo_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    echo_calls++;
    assert_int_equal(grpc_call_send(call, d, n), 0);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static const struct grpc_method methods[] = {
    {"/test.Echo/Unary", GRPC_UNARY, echo_msg, NULL, NULL, NULL},
};

struct h2c {
    uv_tcp_t tcp;
    uv_connect_t creq;
    nghttp2_session *cli;
    int32_t stream_id;
    int grpc_status;
    bool stream_closed;
    bool eof;
    bool closed;
    uint8_t resp[256];
    size_t resp_len;
    uint8_t body[64];
    size_t body_len, body_off;
    uint8_t rbuf[65536];
};

static ssize_t h2_body_read(nghttp2_session *s, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *src, void *ud)
{
    struct h2c *c = src->ptr;
    size_t n = c->body_len - c->body_off;
    (void)s;
    (void)id;
    (void)ud;
    if (n > length) {
        n = length;
    }
    memcpy(buf, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    struct h2c *c = ud;
    (void)s;
    (void)frame;
    (void)flags;
    (void)valuelen;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        c->grpc_status = atoi((const char *)value);
    }
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                      const uint8_t *data, size_t len, void *ud)
{
    struct h2c *c = ud;
    (void)s;
    (void)flags;
    (void)id;
    assert_true(c->resp_len + len <= sizeof(c->resp));
    memcpy(c->resp + c->resp_len, data, len);
    c->resp_len += len;
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct h2c *c = ud;
    (void)s;
    (void)code;
    if (id == c->stream_id) {
        c->stream_closed = true;
    }
    return 0;
}

static void h2_flush(struct h2c *c)
{
    const uint8_t *p;
    ssize_t n;
    if (c->eof) {
        return;
    }
    while ((n = nghttp2_session_mem_send(c->cli, &p)) > 0) {
        stream_write((uv_stream_t *)&c->tcp, p, (size_t)n);
    }
    assert_true(n == 0);
}

static void h2_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct h2c *c = h->data;
    (void)sz;
    *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void h2_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct h2c *c = s->data;
    if (nread < 0) {
        c->eof = true;
        uv_read_stop(s);
        return;
    }
    assert_int_equal(nghttp2_session_mem_recv(
                         c->cli, (const uint8_t *)buf->base, (size_t)nread),
                     nread);
    h2_flush(c);
}

#define NV(n, v)                                                      \
    {                                                                 \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
            NGHTTP2_NV_FLAG_NONE                                      \
    }

static void h2_connected(uv_connect_t *req, int status)
{
    struct h2c *c = req->data;
    nghttp2_nv nv[] = {
        NV(":method", "POST"),         NV(":scheme", "http"),
        NV(":authority", "localhost"), NV(":path", "/test.Echo/Unary"),
        NV("te", "trailers"),          NV("content-type", "application/grpc"),
    };
    nghttp2_data_provider prd;
    static const char msg[] = "through the peer port";
    size_t n = sizeof(msg) - 1;

    assert_int_equal(status, 0);
    assert_int_equal(
        nghttp2_submit_settings(c->cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    c->body[0] = 0;
    c->body[1] = c->body[2] = c->body[3] = 0;
    c->body[4] = (uint8_t)n;
    memcpy(c->body + 5, msg, n);
    c->body_len = 5 + n;
    prd.source.ptr = c;
    prd.read_callback = h2_body_read;
    c->stream_id = nghttp2_submit_request(c->cli, NULL, nv,
                                          sizeof(nv) / sizeof(nv[0]), &prd, c);
    assert_true(c->stream_id > 0);
    /* Preface, SETTINGS, HEADERS and DATA: one write, so the sniffer
     * reads past the preface and must hand those bytes on. */
    {
        const uint8_t *p;
        uint8_t all[1024];
        size_t len = 0;
        ssize_t k;
        while ((k = nghttp2_session_mem_send(c->cli, &p)) > 0) {
            assert_true(len + (size_t)k <= sizeof(all));
            memcpy(all + len, p, (size_t)k);
            len += (size_t)k;
        }
        stream_write((uv_stream_t *)&c->tcp, all, len);
    }
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, h2_alloc, h2_read),
                     0);
}

static struct h2c *h2_start(uv_loop_t *loop, uint16_t port)
{
    struct h2c *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs;
    struct sockaddr_in sa;

    assert_non_null(c);
    c->grpc_status = -1;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_close);
    assert_int_equal(nghttp2_session_client_new(&c->cli, cbs, c), 0);
    nghttp2_session_callbacks_del(cbs);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp,
                                    (const struct sockaddr *)&sa, h2_connected),
                     0);
    return c;
}

static void h2_closed_cb(uv_handle_t *h)
{
    struct h2c *c = h->data;
    c->closed = true;
}

static bool h2_is_closed(void *arg)
{
    return ((struct h2c *)arg)->closed;
}

static void h2_free(uv_loop_t *loop, struct h2c *c)
{
    uv_close((uv_handle_t *)&c->tcp, h2_closed_cb);
    assert_true(run_until(loop, h2_is_closed, c, 2000));
    nghttp2_session_del(c->cli);
    free(c);
}

static bool h2_done(void *arg)
{
    struct h2c *c = arg;
    return c->stream_closed || c->eof;
}

static bool h2_eof(void *arg)
{
    return ((struct h2c *)arg)->eof;
}

struct mixed {
    struct ep a, b;
    struct h2c *c;
};

static bool mixed_done(void *arg)
{
    struct mixed *m = arg;
    return h2_done(m->c) && m->b.connects > 0 && m->a.accepts > 0;
}

static bool grpc_closed;

static void grpc_closed_cb(struct grpc_uv_server *s)
{
    (void)s;
    grpc_closed = true;
}

static bool grpc_is_closed(void *arg)
{
    (void)arg;
    return grpc_closed;
}

static void test_http2_reaches_grpc(void **state)
{
    uv_loop_t loop;
    struct grpc_uv_server srv;
    struct grpc_server_config cfg = {methods, 1, 0, 0, NULL, NULL, NULL};
    struct mixed *m = calloc(1, sizeof(*m));
    static const char want[] = "through the peer port";
    (void)state;

    assert_non_null(m);
    echo_calls = 0;
    grpc_closed = false;
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&srv, 0, sizeof(srv));
    assert_int_equal(grpc_uv_server_init(&srv, &loop, &cfg), 0);
    ep_init(&m->a, &loop, &srv, 1, "127.0.0.1:9", "127.0.0.1:0");
    assert_int_equal(ep_listen(&m->a), 0);

    /* An HTTP/2 client and a raft connection on the same port at once. */
    ep_init(&m->b, &loop, NULL, 2, "127.0.0.1:8", NULL);
    {
        char target[32];
        snprintf(target, sizeof(target), "127.0.0.1:%u",
                 (unsigned)peer_uv_port(&m->a.t));
        assert_int_equal(
            m->b.t.connect(&m->b.t, &m->b.req, 1, target, ep_connect_cb), 0);
    }
    m->c = h2_start(&loop, peer_uv_port(&m->a.t));
    assert_true(run_until(&loop, mixed_done, m, 5000));

    assert_true(m->c->stream_closed);
    assert_int_equal(m->c->grpc_status, 0);
    assert_int_equal(echo_calls, 1);
    assert_int_equal(m->c->resp_len, 5 + sizeof(want) - 1);
    assert_int_equal(m->c->resp[4], sizeof(want) - 1);
    assert_memory_equal(m->c->resp + 5, want, sizeof(want) - 1);
    assert_int_equal(grpc_uv_server_conn_count(&srv), 1);
    assert_int_equal(m->b.conn_status, 0);
    assert_int_equal(m->a.accepts, 1);
    assert_int_equal(m->a.acc_id, 2);

    /* The client goes away: the adopted connection closes too. */
    h2_free(&loop, m->c);
    for (int i = 0; i < 200 && grpc_uv_server_conn_count(&srv) > 0; i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(grpc_uv_server_conn_count(&srv), 0);

    ep_close(&m->b);
    ep_close(&m->a);
    grpc_uv_server_close(&srv, grpc_closed_cb);
    assert_true(run_until(&loop, grpc_is_closed, NULL, 2000));

    /* Without a gRPC server, HTTP/2 connections are closed. */
    ep_init(&m->a, &loop, NULL, 1, "127.0.0.1:0", NULL);
    assert_int_equal(ep_listen(&m->a), 0);
    m->c = h2_start(&loop, peer_uv_port(&m->a.t));
    assert_true(run_until(&loop, h2_eof, m->c, 5000));
    assert_false(m->c->stream_closed);
    assert_int_equal(m->a.accepts, 0);
    h2_free(&loop, m->c);
    ep_close(&m->a);

    /* A closing gRPC server refuses adoption: closed as well. */
    memset(&srv, 0, sizeof(srv));
    grpc_closed = false;
    assert_int_equal(grpc_uv_server_init(&srv, &loop, &cfg), 0);
    ep_init(&m->a, &loop, &srv, 1, "127.0.0.1:0", NULL);
    assert_int_equal(ep_listen(&m->a), 0);
    grpc_uv_server_close(&srv, grpc_closed_cb);
    m->c = h2_start(&loop, peer_uv_port(&m->a.t));
    assert_true(run_until(&loop, h2_eof, m->c, 5000));
    assert_false(m->c->stream_closed);
    h2_free(&loop, m->c);
    ep_close(&m->a);
    assert_true(grpc_closed);

    loop_finish(&loop);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Tests: what the listener refuses */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uint8_t out[1024];
    size_t out_len;
    uint8_t in[64];
    size_t in_len;
    bool eof, closed;
    uint64_t t_start, t_eof;
};

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)sz;
    *buf = uv_buf_init((char *)r->in + r->in_len,
                       (unsigned)(sizeof(r->in) - r->in_len));
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf;
    if (nread < 0) {
        r->eof = true;
        r->t_eof = now_ms();
        uv_read_stop(s);
        return;
    }
    r->in_len += (size_t)nread;
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    assert_int_equal(status, 0);
    if (r->out_len > 0) {
        stream_write((uv_stream_t *)&r->tcp, r->out, r->out_len);
    }
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read),
                     0);
}

static struct raw *raw_start(uv_loop_t *loop, uint16_t port, const void *data,
                             size_t len)
{
    struct raw *r = calloc(1, sizeof(*r));
    struct sockaddr_in sa;
    assert_non_null(r);
    assert_true(len <= sizeof(r->out));
    if (len > 0) {
        memcpy(r->out, data, len);
    }
    r->out_len = len;
    r->t_start = now_ms();
    uv_tcp_init(loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
                                    (const struct sockaddr *)&sa,
                                    raw_connected),
                     0);
    return r;
}

static bool raw_eof(void *arg)
{
    return ((struct raw *)arg)->eof;
}

static void raw_closed_cb(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

static bool raw_is_closed(void *arg)
{
    return ((struct raw *)arg)->closed;
}

static void raw_free(uv_loop_t *loop, struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed_cb);
    assert_true(run_until(loop, raw_is_closed, r, 2000));
    free(r);
}

/* Send @data; expect the server to answer exactly @reply (@reply_len bytes)
 * and close. Returns the time until EOF, in ms. */
static uint64_t expect_refused(uv_loop_t *loop, uint16_t port, const void *data,
                               size_t len, const uint8_t *reply,
                               size_t reply_len)
{
    struct raw *r = raw_start(loop, port, data, len);
    uint64_t took;
    assert_true(run_until(loop, raw_eof, r, 5000));
    assert_int_equal(r->in_len, reply_len);
    if (reply_len > 0) {
        assert_memory_equal(r->in, reply, reply_len);
    }
    took = r->t_eof - r->t_start;
    raw_free(loop, r);
    return took;
}

static void test_listener_refuses(void **state)
{
    uv_loop_t loop;
    struct ep a;
    uint16_t port;
    uint8_t hs[600];
    size_t n;
    static const uint8_t nak_version[] = {0x02};
    static const uint8_t nak_malformed[] = {0x03};
    static const uint8_t ack[] = {0x01};
    char longaddr[301];
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    ep_init(&a, &loop, NULL, 1, "127.0.0.1:0", NULL);
    peer_uv_set_timeouts(&a.t, 0, 200);
    assert_int_equal(ep_listen(&a), 0);
    port = peer_uv_port(&a.t);

    /* Not raft, not HTTP/2: closed at once, no answer. */
    static const char http1[] = "GET /members HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(expect_refused(&loop, port, http1, sizeof(http1) - 1, NULL, 0) <
                150);
    assert_true(expect_refused(&loop, port, "PRI * HTTP/1.1\r\n", 16, NULL, 0) <
                150);
    assert_true(expect_refused(&loop, port, "\x89ikadx\r\n", 8, NULL, 0) < 150);
    assert_true(expect_refused(&loop, port, "\x89ikada\r\r", 8, NULL, 0) < 150);

    /* Another protocol version: refused with a clear code. */
    n = hs_encode(hs, 2, 7, "127.0.0.1:7", 11);
    expect_refused(&loop, port, hs, n, nak_version, 1);
    n = hs_encode(hs, 0, 7, "127.0.0.1:7", 11);
    expect_refused(&loop, port, hs, n, nak_version, 1);

    /* Oversized address length field (and an actual long address). */
    memset(longaddr, 'a', 300);
    longaddr[300] = '\0';
    n = hs_encode(hs, 1, 7, longaddr, 300);
    expect_refused(&loop, port, hs, n, nak_malformed, 1);
    n = hs_encode(hs, 1, 7, "127.0.0.1:7", 0);
    expect_refused(&loop, port, hs, 20, nak_malformed, 1);
    /* Bad checksum. */
    n = hs_encode(hs, 1, 7, "127.0.0.1:7", 11);
    hs[n - 1] ^= 0x40;
    expect_refused(&loop, port, hs, n, nak_malformed, 1);
    /* Address bytes changed after the checksum was computed. */
    n = hs_encode(hs, 1, 7, "127.0.0.1:7", 11);
    hs[22] = '2';
    expect_refused(&loop, port, hs, n, nak_malformed, 1);
    /* Raft bytes sent before the ack. */
    n = hs_encode(hs, 1, 7, "127.0.0.1:7", 11);
    memcpy(hs + n, "early", 5);
    expect_refused(&loop, port, hs, n + 5, nak_malformed, 1);
    /* Id 0; an address with a space in it. */
    n = hs_encode(hs, 1, 0, "127.0.0.1:7", 11);
    expect_refused(&loop, port, hs, n, nak_malformed, 1);
    n = hs_encode(hs, 1, 7, "127.0.0 1:7", 11);
    expect_refused(&loop, port, hs, n, nak_malformed, 1);

    /* Silent, or stuck half-way: closed after the handshake timeout. */
    {
        uint64_t took = expect_refused(&loop, port, NULL, 0, NULL, 0);
        assert_true(took >= 150 && took < 2000);
        n = hs_encode(hs, 1, 7, "127.0.0.1:7", 11);
        took = expect_refused(&loop, port, hs, n - 1, NULL, 0);
        assert_true(took >= 150 && took < 2000);
        took = expect_refused(&loop, port, "PRI * HTTP/2.0\r\n", 16, NULL, 0);
        assert_true(took >= 150 && took < 2000);
    }
    assert_int_equal(a.accepts, 0);

    /* The same encoder with good values is accepted: the refusals above
     * were about the one thing each case broke. */
    n = hs_encode(hs, 1, 7, "127.0.0.1:7", 11);
    {
        struct raw *r = raw_start(&loop, port, hs, n);
        for (int i = 0; i < 500 && (r->in_len < 1 || a.accepts < 1); i++) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        assert_int_equal(r->in_len, 1);
        assert_memory_equal(r->in, ack, 1);
        assert_int_equal(a.accepts, 1);
        assert_int_equal(a.acc_id, 7);
        assert_string_equal(a.acc_address, "127.0.0.1:7");
        /* The stream now belongs to "raft": no timeout closes it. */
        usleep(300 * 1000);
        uv_run(&loop, UV_RUN_NOWAIT);
        assert_false(r->eof);
        stream_write((uv_stream_t *)&r->tcp, "raft", 4);
        for (int i = 0; i < 500 && a.rx_len < 4; i++) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        assert_int_equal(a.rx_len, 4);
        assert_memory_equal(a.rx, "raft", 4);
        raw_free(&loop, r);
    }

    ep_close(&a);
    loop_finish(&loop);
}

/* ------------------------------------------------------------------------ */
/* Tests: connect failures and close */

/* A fake listener: accepts; @reply < 0 stays silent, otherwise answers
 * that one byte to the first bytes it reads. */
struct fake {
    uv_tcp_t tcp;
    uint16_t port;
    int reply;
    const char *extra; /* sent right behind the reply byte */
    uv_tcp_t *conns[8];
    int n;
    uint8_t rbuf[1024];
};

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct fake *f = h->data;
    (void)sz;
    *buf = uv_buf_init((char *)f->rbuf, sizeof(f->rbuf));
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct fake *f = s->data;
    uint8_t b;
    (void)buf;
    if (nread <= 0) {
        if (nread < 0) {
            uv_read_stop(s);
        }
        return;
    }
    if (f->reply >= 0) {
        uint8_t out[64];
        size_t n = f->extra != NULL ? strlen(f->extra) : 0;
        b = (uint8_t)f->reply;
        out[0] = b;
        if (n > 0) {
            memcpy(out + 1, f->extra, n);
        }
        stream_write(s, out, 1 + n); /* one write: one segment */
        uv_read_stop(s);
    }
}

static void fake_conn(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    uv_tcp_t *c = malloc(sizeof(*c));
    assert_int_equal(status, 0);
    assert_non_null(c);
    assert_true(f->n < 8);
    uv_tcp_init(server->loop, c);
    c->data = f;
    assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
    f->conns[f->n++] = c;
    assert_int_equal(uv_read_start((uv_stream_t *)c, fake_alloc, fake_read), 0);
}

static struct fake *fake_start(uv_loop_t *loop, int reply)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct sockaddr_in sa;
    int len = sizeof(sa);
    assert_non_null(f);
    f->reply = reply;
    uv_tcp_init(loop, &f->tcp);
    f->tcp.data = f;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&f->tcp, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->tcp, 8, fake_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&f->tcp, (struct sockaddr *)&sa, &len),
                     0);
    f->port = ntohs(sa.sin_port);
    return f;
}

static void free_plain_cb(uv_handle_t *h)
{
    free(h);
}

static void fake_stop(uv_loop_t *loop, struct fake *f)
{
    for (int i = 0; i < f->n; i++) {
        uv_close((uv_handle_t *)f->conns[i], free_plain_cb);
    }
    uv_close((uv_handle_t *)&f->tcp, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    free(f);
}

static void test_connect_failures(void **state)
{
    uv_loop_t loop;
    struct ep b;
    char target[64];
    struct fake *f;
    uint64_t t0;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    ep_init(&b, &loop, NULL, 2, "127.0.0.1:8", NULL);
    peer_uv_set_timeouts(&b.t, 300, 0);

    /* Nobody listening. */
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)free_port());
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, target, ep_connect_cb), 0);
    assert_int_equal(b.connects, 0);
    assert_true(run_until(&loop, ep_connected, &b, 5000));
    assert_int_equal(b.conn_status, RAFT_NOCONNECTION);
    assert_non_null(strstr(b.t.errmsg, "connection refused"));

    /* Not an address: refused synchronously, no callback. */
    b.connects = 0;
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, "nonsense", ep_connect_cb),
                     RAFT_NOCONNECTION);
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, "127.0.0.1:0", ep_connect_cb),
                     RAFT_NOCONNECTION);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(b.connects, 0);

    /* A listener that refuses our version. */
    f = fake_start(&loop, 0x02);
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, target, ep_connect_cb), 0);
    assert_true(run_until(&loop, ep_connected, &b, 5000));
    assert_int_equal(b.conn_status, RAFT_NOCONNECTION);
    assert_non_null(strstr(b.t.errmsg, "refused the handshake"));
    assert_non_null(strstr(b.t.errmsg, "version 1"));
    fake_stop(&loop, f);

    /* A listener answering something that is not an ack. */
    b.connects = 0;
    f = fake_start(&loop, 'H');
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, target, ep_connect_cb), 0);
    assert_true(run_until(&loop, ep_connected, &b, 5000));
    assert_int_equal(b.conn_status, RAFT_NOCONNECTION);
    assert_non_null(strstr(b.t.errmsg, "unexpected handshake reply 0x48"));
    fake_stop(&loop, f);

    /* The ack followed at once by raft bytes: the connecting side reads
     * only the ack, raft gets the rest on the stream. */
    b.connects = 0;
    f = fake_start(&loop, 0x01);
    f->extra = "raft-bytes";
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, target, ep_connect_cb), 0);
    assert_true(run_until(&loop, ep_connected, &b, 5000));
    assert_int_equal(b.conn_status, 0);
    for (int i = 0; i < 500 && b.rx_len < 10; i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(b.rx_len, 10);
    assert_memory_equal(b.rx, "raft-bytes", 10);
    uv_close((uv_handle_t *)b.conn_stream, free_handle_cb);
    b.conn_stream = NULL;
    b.rx_len = 0;
    fake_stop(&loop, f);

    /* A listener that never answers: the connect timeout fires. */
    b.connects = 0;
    f = fake_start(&loop, -1);
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    t0 = now_ms();
    assert_int_equal(b.t.connect(&b.t, &b.req, 1, target, ep_connect_cb), 0);
    assert_true(run_until(&loop, ep_connected, &b, 5000));
    assert_int_equal(b.conn_status, RAFT_NOCONNECTION);
    assert_true(now_ms() - t0 >= 250);
    assert_non_null(strstr(b.t.errmsg, "timed out"));
    fake_stop(&loop, f);

    ep_close(&b);
    loop_finish(&loop);
}

struct many {
    struct ep b;
    struct raft_uv_connect reqs[3];
    int status[3];
    int fired[3];
    int order; /* close cb must come last */
    int close_order;
};

static void many_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream,
                            int status)
{
    struct many *m = req->data;
    int i = (int)(req - m->reqs);
    assert_null(stream);
    m->status[i] = status;
    m->fired[i]++;
    m->order++;
}

static void many_closed_cb(struct raft_uv_transport *t)
{
    struct many *m = t->data;
    m->close_order = ++m->order;
    m->b.closed = true;
}

static void test_close_cancels(void **state)
{
    uv_loop_t loop;
    struct many *m = calloc(1, sizeof(*m));
    struct fake *f;
    struct raw *r;
    char target[64];
    (void)state;

    assert_non_null(m);
    assert_int_equal(uv_loop_init(&loop), 0);
    f = fake_start(&loop, -1);
    ep_init(&m->b, &loop, NULL, 2, "127.0.0.1:0", NULL);
    m->b.t.data = m;
    assert_int_equal(m->b.t.listen(&m->b.t, ep_accept_cb), 0);
    for (int i = 0; i < 3; i++) {
        m->reqs[i].data = m;
    }

    /* 0: stuck in the handshake; 1: resolving a name; 2: TCP connecting
     * (issued just before close). Plus an incoming connection stuck in its
     * handshake. */
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(
        m->b.t.connect(&m->b.t, &m->reqs[0], 1, target, many_connect_cb), 0);
    r = raw_start(&loop, peer_uv_port(&m->b.t), NULL, 0);
    for (int i = 0; i < 200 && f->n < 1; i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(f->n, 1);
    snprintf(target, sizeof(target), "localhost:%u", (unsigned)f->port);
    assert_int_equal(
        m->b.t.connect(&m->b.t, &m->reqs[1], 1, target, many_connect_cb), 0);
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)f->port);
    assert_int_equal(
        m->b.t.connect(&m->b.t, &m->reqs[2], 1, target, many_connect_cb), 0);

    m->b.t.close(&m->b.t, many_closed_cb);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m->fired[i], 0); /* not synchronously */
    }
    assert_true(run_until(&loop, ep_is_closed, &m->b, 5000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m->fired[i], 1);
        assert_int_equal(m->status[i], RAFT_CANCELED);
    }
    assert_int_equal(m->close_order, 4);
    /* The incoming connection was closed. */
    assert_true(run_until(&loop, raw_eof, r, 2000));
    assert_int_equal(m->b.accepts, 0);
    /* Closing twice is harmless. */
    m->b.t.close(&m->b.t, many_closed_cb);
    peer_uv_close(&m->b.t);
    raw_free(&loop, r);
    fake_stop(&loop, f);
    loop_finish(&loop);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Tests: failing allocator */

static long heap_budget = -1; /* allocations left; -1: unlimited */
static long heap_live;

static bool heap_take(void)
{
    if (heap_budget == 0) {
        return false;
    }
    if (heap_budget > 0) {
        heap_budget--;
    }
    return true;
}

static void *fh_malloc(void *d, size_t n)
{
    void *p;
    (void)d;
    if (!heap_take()) {
        return NULL;
    }
    p = malloc(n);
    heap_live += p != NULL;
    return p;
}

static void fh_free(void *d, void *p)
{
    (void)d;
    heap_live -= p != NULL;
    free(p);
}

static void *fh_calloc(void *d, size_t n, size_t s)
{
    void *p;
    (void)d;
    if (!heap_take()) {
        return NULL;
    }
    p = calloc(n, s);
    heap_live += p != NULL;
    return p;
}

static void *fh_realloc(void *d, void *p, size_t n)
{
    void *q;
    (void)d;
    if (!heap_take()) {
        return NULL;
    }
    q = realloc(p, n);
    heap_live += p == NULL && q != NULL;
    return q;
}

static void *fh_aligned(void *d, size_t a, size_t n)
{
    void *p;
    (void)d;
    if (!heap_take()) {
        return NULL;
    }
    p = aligned_alloc(a, n);
    heap_live += p != NULL;
    return p;
}

static void fh_aligned_free(void *d, size_t a, void *p)
{
    (void)d;
    (void)a;
    heap_live -= p != NULL;
    free(p);
}

static struct raft_heap failing_heap = {NULL,           fh_malloc,  fh_free,
                                        fh_calloc,      fh_realloc, fh_aligned,
                                        fh_aligned_free};

static void test_failing_heap(void **state)
{
    uv_loop_t loop;
    struct pair *p = calloc(1, sizeof(*p));
    char target[64];
    bool succeeded = false;
    long budget;
    (void)state;

    assert_non_null(p);
    assert_int_equal(uv_loop_init(&loop), 0);
    raft_heap_set(&failing_heap);
    for (budget = 0; budget < 64 && !succeeded; budget++) {
        int rv;
        heap_live = 0;
        heap_budget = -1;
        ep_init(&p->a, &loop, NULL, 1, "127.0.0.1:0", NULL);
        peer_uv_set_timeouts(&p->a.t, 0, 300);
        assert_int_equal(ep_listen(&p->a), 0);
        ep_init(&p->b, &loop, NULL, 2, "127.0.0.1:8", NULL);
        peer_uv_set_timeouts(&p->b.t, 300, 0);
        snprintf(target, sizeof(target), "127.0.0.1:%u",
                 (unsigned)peer_uv_port(&p->a.t));
        heap_budget = budget;
        rv = p->b.t.connect(&p->b.t, &p->b.req, 1, target, ep_connect_cb);
        if (rv == 0) {
            assert_true(run_until(&loop, ep_connected, &p->b, 5000));
            assert_int_equal(p->b.connects, 1);
            if (p->b.conn_status == 0) {
                for (int i = 0; i < 500 && p->a.accepts < 1; i++) {
                    uv_run(&loop, UV_RUN_ONCE);
                }
                assert_int_equal(p->a.accepts, 1);
                succeeded = true;
            } else {
                assert_int_equal(p->b.conn_status, RAFT_NOCONNECTION);
                assert_int_equal(p->a.accepts, 0);
            }
        } else {
            assert_int_equal(rv, RAFT_NOMEM);
            uv_run(&loop, UV_RUN_NOWAIT);
            assert_int_equal(p->b.connects, 0);
        }
        heap_budget = -1;
        ep_close(&p->b);
        ep_close(&p->a);
        assert_int_equal(heap_live, 0); /* everything raft_malloc'ed freed */
    }
    raft_heap_set_default();
    assert_true(succeeded);
    assert_true(budget > 3); /* several failure points were exercised */
    loop_finish(&loop);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* A real 3-member canonical/raft cluster over the transport */

#define N_MEMBERS 3
#define N_CMDS 5

struct member {
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport t;
    struct raft_fsm fsm;
    char dir[64];
    char address[32];
    uint64_t count, sum;
    bool closed;
};

struct cluster {
    struct member m[N_MEMBERS];
    struct raft_apply reqs[N_CMDS];
    int applied_ok;
    int apply_failed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct member *m = fsm->data;
    uint64_t v;
    assert_int_equal(buf->len, 8);
    memcpy(&v, buf->base, 8);
    m->count++;
    m->sum += v;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n)
{
    struct member *m = fsm->data;
    *bufs = raft_malloc(sizeof(**bufs));
    if (*bufs == NULL) {
        return RAFT_NOMEM;
    }
    (*bufs)[0].len = 16;
    (*bufs)[0].base = raft_malloc(16);
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &m->count, 8);
    memcpy((uint8_t *)(*bufs)[0].base + 8, &m->sum, 8);
    *n = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct member *m = fsm->data;
    if (buf->len != 16) {
        return RAFT_MALFORMED;
    }
    memcpy(&m->count, buf->base, 8);
    memcpy(&m->sum, (uint8_t *)buf->base + 8, 8);
    raft_free(buf->base);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static bool have_leader(void *arg)
{
    struct cluster *c = arg;
    for (int i = 0; i < N_MEMBERS; i++) {
        if (raft_state(&c->m[i].raft) == RAFT_LEADER) {
            return true;
        }
    }
    return false;
}

static bool all_applied(void *arg)
{
    struct cluster *c = arg;
    if (c->applied_ok + c->apply_failed < N_CMDS) {
        return false;
    }
    for (int i = 0; i < N_MEMBERS; i++) {
        if (c->m[i].count < N_CMDS) {
            return false;
        }
    }
    return true;
}

static bool all_closed(void *arg)
{
    struct cluster *c = arg;
    for (int i = 0; i < N_MEMBERS; i++) {
        if (!c->m[i].closed) {
            return false;
        }
    }
    return true;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct cluster *c = req->data;
    (void)result;
    if (status == 0) {
        c->applied_ok++;
    } else {
        c->apply_failed++;
    }
}

static void raft_closed_cb(struct raft *r)
{
    struct member *m = r->data;
    m->closed = true;
}

static void test_raft_cluster(void **state)
{
    uv_loop_t loop;
    struct cluster *c = calloc(1, sizeof(*c));
    struct raft_configuration conf;
    struct member *leader = NULL;
    raft_id leader_id = 0;
    (void)state;

    assert_non_null(c);
    assert_int_equal(uv_loop_init(&loop), 0);
    raft_configuration_init(&conf);
    for (int i = 0; i < N_MEMBERS; i++) {
        struct member *m = &c->m[i];
        snprintf(m->address, sizeof(m->address), "127.0.0.1:%u",
                 (unsigned)free_port());
        assert_int_equal(raft_configuration_add(&conf, (raft_id)(i + 1),
                                                m->address, RAFT_VOTER),
                         0);
    }
    for (int i = 0; i < N_MEMBERS; i++) {
        struct member *m = &c->m[i];
        strcpy(m->dir, "/tmp/test_peer_uv_XXXXXX");
        assert_non_null(mkdtemp(m->dir));
        m->fsm.version = 1;
        m->fsm.data = m;
        m->fsm.apply = fsm_apply;
        m->fsm.snapshot = fsm_snapshot;
        m->fsm.restore = fsm_restore;
        assert_int_equal(peer_uv_init(&m->t, &loop, NULL), 0);
        assert_int_equal(raft_uv_init(&m->io, &loop, m->dir, &m->t), 0);
        raft_uv_set_connect_retry_delay(&m->io, 50);
        assert_int_equal(
            raft_init(&m->raft, &m->io, &m->fsm, (raft_id)(i + 1), m->address),
            0);
        m->raft.data = m;
        raft_set_heartbeat_timeout(&m->raft, 50);
        raft_set_election_timeout(&m->raft, 300);
        assert_int_equal(raft_bootstrap(&m->raft, &conf), 0);
    }
    raft_configuration_close(&conf);
    for (int i = 0; i < N_MEMBERS; i++) {
        assert_int_equal(raft_start(&c->m[i].raft), 0);
    }

    assert_true(run_until(&loop, have_leader, c, 10000));
    for (int i = 0; i < N_MEMBERS; i++) {
        if (raft_state(&c->m[i].raft) == RAFT_LEADER) {
            leader = &c->m[i];
            leader_id = (raft_id)(i + 1);
        }
    }
    assert_non_null(leader);
    for (int i = 0; i < N_CMDS; i++) {
        struct raft_buffer buf;
        uint64_t v = (uint64_t)(i + 1) * 10;
        buf.len = 8;
        buf.base = raft_malloc(8);
        assert_non_null(buf.base);
        memcpy(buf.base, &v, 8);
        c->reqs[i].data = c;
        assert_int_equal(
            raft_apply(&leader->raft, &c->reqs[i], &buf, 1, apply_cb), 0);
    }
    assert_true(run_until(&loop, all_applied, c, 10000));
    assert_int_equal(c->applied_ok, N_CMDS);
    for (int i = 0; i < N_MEMBERS; i++) {
        raft_id id;
        const char *address;
        assert_int_equal(c->m[i].count, N_CMDS);
        assert_int_equal(c->m[i].sum, 10 + 20 + 30 + 40 + 50);
        /* Everyone knows the leader, learnt over the transport. */
        raft_leader(&c->m[i].raft, &id, &address);
        assert_int_equal(id, leader_id);
        assert_string_equal(address, leader->address);
    }

    for (int i = 0; i < N_MEMBERS; i++) {
        raft_close(&c->m[i].raft, raft_closed_cb);
    }
    assert_true(run_until(&loop, all_closed, c, 10000));
    for (int i = 0; i < N_MEMBERS; i++) {
        raft_uv_close(&c->m[i].io);
        peer_uv_close(&c->m[i].t);
        assert_int_equal(nftw(c->m[i].dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS),
                         0);
    }
    loop_finish(&loop);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_connect_accept_roundtrip),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_listen_in_use),
        cmocka_unit_test(test_http2_reaches_grpc),
        cmocka_unit_test(test_listener_refuses),
        cmocka_unit_test(test_connect_failures),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_failing_heap),
        cmocka_unit_test(test_raft_cluster),
    };
    for (size_t i = 0; i < BIG; i++) {
        big[i] = (uint8_t)(i * 131 + (i >> 9));
    }
    log_set_level(LOG_FATAL); /* refusals are logged at warn level */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
