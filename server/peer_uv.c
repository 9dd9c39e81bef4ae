/*
 * peer_uv: raft transport over the shared peer port (see peer_uv.h).
 *
 * Raft handshake, protocol version 1. Sent once by the connecting member
 * right after the TCP connection is established. Integers are big endian.
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------
 *        0     8  magic 0x89 'i' 'k' 'a' 'd' 'a' '\r' '\n'
 *        8     2  u16 protocol version (1)
 *       10     8  u64 raft id of the connecting member (non-zero)
 *       18     2  u16 address length N (1..255)
 *       20     N  the connecting member's raft address, "host:port":
 *                 printable ASCII (0x21..0x7e), no terminator
 *     20+N     4  u32 CRC32 (zlib crc32()) of bytes 0 .. 20+N-1
 *
 * The listener answers with ONE byte:
 *   0x01  accepted: from here on the stream carries raft's messages
 *   0x02  refused: the listener does not speak this protocol version
 *   0x03  refused: malformed handshake (length, checksum, id, address,
 *         or bytes sent after the handshake)
 * and closes the connection after a refusal. Garbage (neither this magic
 * nor the HTTP/2 client preface) is closed without an answer.
 *
 * The connecting member sends nothing after the handshake until it has
 * read the acknowledgement (and reads exactly one byte), so neither side
 * ever reads raft bytes it would have to give back: the listener's sniff
 * buffer only ever holds the handshake. The magic's first byte differs
 * from the HTTP/2 preface's 'P', so the first byte decides which of the
 * two a connection may be.
 */
#include "server/peer_uv.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/log.h"

#define PEER_HS_VERSION 1
#define PEER_HS_FIXED 20 /* bytes before the address */
#define PEER_HS_MAX (PEER_HS_FIXED + PEER_UV_ADDRESS_MAX + 4)
#define PEER_ACK_OK 0x01
#define PEER_ACK_VERSION 0x02
#define PEER_ACK_MALFORMED 0x03

#define PEER_CONNECT_TIMEOUT_MS 3000
#define PEER_HANDSHAKE_TIMEOUT_MS 5000
#define PEER_ACCEPT_RETRY_MS 100
#define PEER_BACKLOG 511

static const uint8_t peer_magic[8] = {0x89, 'i', 'k',  'a',
                                      'd',  'a', '\r', '\n'};
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(h2_preface) - 1)

struct peer_in;
struct peer_out;

struct peer {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    struct grpc_uv_server *grpc;
    raft_id id;
    char address[PEER_UV_ADDRESS_MAX + 1];
    char bind[PEER_UV_ADDRESS_MAX + 1]; /* "": listen on address */
    raft_uv_accept_cb accept_cb;
    uv_tcp_t listener;
    uv_timer_t timer;
    struct peer_in *ins;   /* accepted, handshake not finished */
    struct peer_out *outs; /* connect requests whose cb has not fired */
    unsigned connect_ms;
    unsigned handshake_ms;
    unsigned pending; /* handles being closed */
    uint16_t port;
    bool initialized; /* vtable init ran: the timer exists */
    bool listener_open;
    bool stalled; /* a connection waits to be accepted (out of memory) */
    bool closing;
    bool close_fired;
    raft_uv_transport_close_cb close_cb;
};

enum in_state { IN_SNIFF, IN_ACKING, IN_DEAD };

struct peer_in {
    struct peer *p;
    uv_tcp_t *tcp; /* raft_malloc'ed alone: handed to raft as is */
    struct peer_in *prev, *next;
    uv_write_t wreq;
    uint64_t deadline;
    size_t n; /* bytes in buf */
    enum in_state state;
    uint8_t ack;
    uint8_t buf[PEER_HS_MAX];
};

struct peer_out {
    struct peer *p;
    struct raft_uv_connect *req;
    struct peer_out *prev, *next;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next; /* resolved addresses, next to try */
    uv_tcp_t *tcp;                 /* raft_malloc'ed alone */
    uv_connect_t creq;
    uv_write_t wreq;
    uint64_t deadline;
    int status;     /* 0, or the code the request fails with */
    bool resolving; /* uv_getaddrinfo in flight */
    bool stopping;  /* handle close / resolver cancel requested */
    bool try_next;  /* the TCP connect failed: try the next address */
    bool written;   /* handshake write completed */
    bool acked;     /* acknowledgement read */
    uint8_t ack;
    size_t hs_len;
    uint8_t hs[PEER_HS_MAX];
    char target[PEER_UV_ADDRESS_MAX + 1];
};

static void timer_arm(struct peer *p);

/* ------------------------------------------------------------------------ */
/* Helpers */

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static void put32(uint8_t *b, uint32_t v)
{
    put16(b, (uint16_t)(v >> 16));
    put16(b + 2, (uint16_t)v);
}

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)get16(b) << 16 | get16(b + 2);
}

static void put64(uint8_t *b, uint64_t v)
{
    put32(b, (uint32_t)(v >> 32));
    put32(b + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *b)
{
    return (uint64_t)get32(b) << 32 | get32(b + 4);
}

static uint32_t hs_crc(const uint8_t *b, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    return (uint32_t)crc32(crc, b, (uInt)n);
}

static void set_err(struct raft_uv_transport *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(struct raft_uv_transport *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errmsg, sizeof(t->errmsg), fmt, ap);
    va_end(ap);
}

static bool address_chars_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

int peer_uv_parse_address(const char *address, char *host, size_t size,
                          uint16_t *port)
{
    const char *h, *colon, *digits;
    size_t hlen;
    unsigned long v = 0;

    if (address == NULL || size == 0) {
        return IK_EINVAL;
    }
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close == NULL || close[1] != ':') {
            return IK_EINVAL;
        }
        h = address + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0 || memchr(h, ':', hlen) == NULL) {
            return IK_EINVAL; /* brackets are for IPv6 literals */
        }
    } else {
        colon = strchr(address, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL) {
            return IK_EINVAL;
        }
        h = address;
        hlen = (size_t)(colon - h);
        if (hlen == 0) {
            return IK_EINVAL;
        }
    }
    if (hlen >= size || !address_chars_ok((const uint8_t *)h, hlen) ||
        memchr(h, '[', hlen) != NULL || memchr(h, ']', hlen) != NULL) {
        return IK_EINVAL;
    }
    digits = colon + 1;
    if (*digits == '\0' || strlen(digits) > 5) {
        return IK_EINVAL;
    }
    for (const char *d = digits; *d != '\0'; d++) {
        if (*d < '0' || *d > '9') {
            return IK_EINVAL;
        }
        v = v * 10 + (unsigned long)(*d - '0');
    }
    if (v > 65535) {
        return IK_EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* Numeric @host → @ss. Returns false if @host is not an IP literal. */
static bool numeric_addr(const char *host, uint16_t port,
                         struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) {
        return true;
    }
    memset(ss, 0, sizeof(*ss));
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0;
}

static void maybe_fire_close(struct peer *p)
{
    if (!p->closing || p->close_fired || p->pending > 0 || p->ins != NULL ||
        p->outs != NULL) {
        return;
    }
    p->close_fired = true;
    if (p->close_cb != NULL) {
        p->close_cb(p->t);
    }
}

/* ------------------------------------------------------------------------ */
/* Incoming connections */

static void in_unlink(struct peer_in *in)
{
    struct peer *p = in->p;
    if (in->prev != NULL) {
        in->prev->next = in->next;
    } else {
        p->ins = in->next;
    }
    if (in->next != NULL) {
        in->next->prev = in->prev;
    }
    in->prev = in->next = NULL;
}

static void in_closed_cb(uv_handle_t *h)
{
    struct peer_in *in = h->data;
    struct peer *p = in->p;
    raft_free(in->tcp);
    raft_free(in);
    p->pending--;
    maybe_fire_close(p);
}

/* Close an accepted connection that raft will not get. */
static void in_abort(struct peer_in *in)
{
    if (in->state == IN_DEAD) {
        return;
    }
    in->state = IN_DEAD;
    in_unlink(in);
    in->p->pending++;
    uv_close((uv_handle_t *)in->tcp, in_closed_cb);
}

static void in_ack_cb(uv_write_t *req, int status)
{
    struct peer_in *in = req->data;
    struct peer *p = in->p;
    char address[PEER_UV_ADDRESS_MAX + 1];
    size_t alen;
    raft_id id;
    uv_tcp_t *tcp;

    if (in->state == IN_DEAD) {
        return; /* being closed: the write was cancelled */
    }
    if (status < 0 || in->ack != PEER_ACK_OK) {
        in_abort(in);
        return;
    }
    id = get64(in->buf + 10);
    alen = get16(in->buf + 18);
    memcpy(address, in->buf + PEER_HS_FIXED, alen);
    address[alen] = '\0';
    tcp = in->tcp;
    in_unlink(in);
    raft_free(in);
    tcp->data = NULL;
    p->accept_cb(p->t, id, address, (uv_stream_t *)tcp);
}

/* Stop reading and answer @code; the connection goes to raft (OK) or is
 * closed once the byte is out. */
static void in_reply(struct peer_in *in, uint8_t code)
{
    uv_buf_t buf;

    uv_read_stop((uv_stream_t *)in->tcp);
    in->state = IN_ACKING;
    in->ack = code;
    in->wreq.data = in;
    buf = uv_buf_init((char *)&in->ack, 1);
    if (uv_write(&in->wreq, (uv_stream_t *)in->tcp, &buf, 1, in_ack_cb) != 0) {
        in_abort(in);
    }
}

static void in_refuse(struct peer_in *in, uint8_t code, const char *why)
{
    log_warn("refused a raft connection on the peer port: %s", why);
    in_reply(in, code);
}

static void in_to_grpc(struct peer_in *in)
{
    struct peer *p = in->p;

    uv_read_stop((uv_stream_t *)in->tcp);
    if (p->grpc != NULL) {
        /* The server takes a duplicate of the socket; ours is closed
         * either way. */
        int rv = grpc_uv_server_adopt(p->grpc, in->tcp, in->buf, in->n);
        if (rv != 0) {
            log_debug("peer port: gRPC connection dropped: %s",
                      ik_strerror(rv));
        }
    }
    in_abort(in);
}

/* Look at what arrived so far and decide, if possible, what it is. */
static void in_sniff(struct peer_in *in)
{
    const uint8_t *b = in->buf;
    size_t n = in->n;
    size_t alen, total;

    if (b[0] == (uint8_t)h2_preface[0]) {
        size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
        if (memcmp(b, h2_preface, k) != 0) {
            in_abort(in);
        } else if (n >= H2_PREFACE_LEN) {
            in_to_grpc(in);
        }
        return;
    }
    if (memcmp(b, peer_magic,
               n < sizeof(peer_magic) ? n : sizeof(peer_magic)) != 0) {
        log_debug("peer port: closing a connection that is neither raft nor "
                  "HTTP/2");
        in_abort(in);
        return;
    }
    if (n < 10) {
        return;
    }
    if (get16(b + 8) != PEER_HS_VERSION) {
        char why[96];
        snprintf(why, sizeof(why),
                 "handshake version %u (this member speaks %u)",
                 (unsigned)get16(b + 8), (unsigned)PEER_HS_VERSION);
        in_refuse(in, PEER_ACK_VERSION, why);
        return;
    }
    if (n < PEER_HS_FIXED) {
        return;
    }
    alen = get16(b + 18);
    if (alen == 0 || alen > PEER_UV_ADDRESS_MAX) {
        in_refuse(in, PEER_ACK_MALFORMED, "bad address length");
        return;
    }
    total = PEER_HS_FIXED + alen + 4;
    if (n < total) {
        return;
    }
    if (n > total) {
        in_refuse(in, PEER_ACK_MALFORMED, "data sent before the handshake ack");
        return;
    }
    if (get32(b + PEER_HS_FIXED + alen) != hs_crc(b, PEER_HS_FIXED + alen)) {
        in_refuse(in, PEER_ACK_MALFORMED, "handshake checksum mismatch");
        return;
    }
    if (get64(b + 10) == 0) {
        in_refuse(in, PEER_ACK_MALFORMED, "raft id 0");
        return;
    }
    if (!address_chars_ok(b + PEER_HS_FIXED, alen)) {
        in_refuse(in, PEER_ACK_MALFORMED, "bad address");
        return;
    }
    in_reply(in, PEER_ACK_OK);
}

static void in_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer_in *in = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)in->buf + in->n,
                       (unsigned)(sizeof(in->buf) - in->n));
}

static void in_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct peer_in *in = stream->data;
    (void)buf;

    if (in->state != IN_SNIFF) {
        return;
    }
    if (nread < 0) {
        in_abort(in); /* EOF, error, or a full buffer (cannot happen) */
        return;
    }
    if (nread == 0) {
        return;
    }
    in->n += (size_t)nread;
    in_sniff(in);
}

/* Accept one pending connection. Returns false when out of memory (the
 * connection stays queued: libuv pauses the listener until we accept). */
static bool accept_one(struct peer *p)
{
    struct peer_in *in = raft_calloc(1, sizeof(*in));
    uv_tcp_t *tcp = raft_malloc(sizeof(*tcp));

    if (in == NULL || tcp == NULL) {
        raft_free(in);
        raft_free(tcp);
        return false;
    }
    uv_tcp_init(p->loop, tcp);
    tcp->data = in;
    in->p = p;
    in->tcp = tcp;
    in->state = IN_SNIFF;
    in->next = p->ins;
    if (p->ins != NULL) {
        p->ins->prev = in;
    }
    p->ins = in;
    if (uv_accept((uv_stream_t *)&p->listener, (uv_stream_t *)tcp) != 0) {
        in_abort(in);
        return true;
    }
    uv_tcp_nodelay(tcp, 1);
    in->deadline = uv_now(p->loop) + p->handshake_ms;
    if (uv_read_start((uv_stream_t *)tcp, in_alloc_cb, in_read_cb) != 0) {
        in_abort(in);
        return true;
    }
    timer_arm(p);
    return true;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct peer *p = server->data;

    if (status < 0) {
        log_warn("peer port: accept failed: %s", uv_strerror(status));
        return;
    }
    if (p->closing) {
        return;
    }
    if (!accept_one(p)) {
        p->stalled = true;
        timer_arm(p);
    }
}

/* ------------------------------------------------------------------------ */
/* Outgoing connections */

static void out_unlink(struct peer_out *out)
{
    struct peer *p = out->p;
    if (out->prev != NULL) {
        out->prev->next = out->next;
    } else {
        p->outs = out->next;
    }
    if (out->next != NULL) {
        out->next->prev = out->prev;
    }
    out->prev = out->next = NULL;
}

/* Fire the request's callback and release it. On success the stream goes
 * to raft. */
static void out_finish(struct peer_out *out)
{
    struct peer *p = out->p;
    struct raft_uv_connect *req = out->req;
    int status = out->status;
    uv_stream_t *stream = NULL;

    if (status == 0) {
        stream = (uv_stream_t *)out->tcp;
        stream->data = NULL;
    }
    out_unlink(out);
    if (out->ai != NULL) {
        uv_freeaddrinfo(out->ai);
    }
    raft_free(out);
    req->cb(req, stream, status);
    maybe_fire_close(p);
}

static void out_try_next(struct peer_out *out);

static void out_closed_cb(uv_handle_t *h)
{
    struct peer_out *out = h->data;

    raft_free(out->tcp);
    out->tcp = NULL;
    out->stopping = false;
    if (out->try_next && out->ai_next != NULL && !out->p->closing) {
        out->try_next = false;
        out->status = 0;
        out_try_next(out);
        return;
    }
    out_finish(out);
}

/*
 * Stop the request with @status (RAFT_CANCELED overrides an earlier
 * failure; a first failure sticks). @try_next: the TCP connection failed
 * and another resolved address may still work.
 */
static void out_stop(struct peer_out *out, int status, bool try_next)
{
    if (out->status == 0 || status == RAFT_CANCELED) {
        out->status = status;
    }
    out->try_next = try_next && status != RAFT_CANCELED;
    if (out->stopping) {
        return;
    }
    out->stopping = true;
    if (out->resolving) {
        uv_cancel((uv_req_t *)&out->gai); /* the callback fires either way */
    } else if (out->tcp != NULL) {
        uv_close((uv_handle_t *)out->tcp, out_closed_cb);
    }
}

static void out_done_if_ready(struct peer_out *out)
{
    if (out->written && out->acked && !out->stopping) {
        out_finish(out); /* status 0 */
    }
}

static void out_written_cb(uv_write_t *req, int status)
{
    struct peer_out *out = req->data;

    out->written = true;
    if (out->stopping) {
        return;
    }
    if (status < 0) {
        set_err(out->p->t, "handshake with %s: %s", out->target,
                uv_strerror(status));
        out_stop(out, RAFT_NOCONNECTION, false);
        return;
    }
    out_done_if_ready(out);
}

static void out_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct peer_out *out = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)&out->ack, 1); /* never read past the ack */
}

static void out_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct peer_out *out = stream->data;
    (void)buf;

    if (out->stopping || out->acked) {
        return;
    }
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        set_err(out->p->t, "handshake with %s: %s", out->target,
                nread == UV_EOF ? "connection closed"
                                : uv_strerror((int)nread));
        out_stop(out, RAFT_NOCONNECTION, false);
        return;
    }
    uv_read_stop(stream);
    switch (out->ack) {
    case PEER_ACK_OK:
        out->acked = true;
        out_done_if_ready(out);
        return;
    case PEER_ACK_VERSION:
        set_err(out->p->t,
                "peer %s refused the handshake: it does not speak "
                "peer protocol version %u",
                out->target, (unsigned)PEER_HS_VERSION);
        break;
    case PEER_ACK_MALFORMED:
        set_err(out->p->t, "peer %s refused the handshake as malformed",
                out->target);
        break;
    default:
        set_err(out->p->t, "peer %s: unexpected handshake reply 0x%02x",
                out->target, (unsigned)out->ack);
        break;
    }
    out_stop(out, RAFT_NOCONNECTION, false);
}

static void out_connected_cb(uv_connect_t *req, int status)
{
    struct peer_out *out = req->data;
    uv_buf_t buf;

    if (out->stopping) {
        return; /* cancelled: the handle is closing */
    }
    if (status < 0) {
        set_err(out->p->t, "connect to %s: %s", out->target,
                uv_strerror(status));
        out_stop(out, RAFT_NOCONNECTION, true);
        return;
    }
    uv_tcp_nodelay(out->tcp, 1);
    out->wreq.data = out;
    buf = uv_buf_init((char *)out->hs, (unsigned)out->hs_len);
    if (uv_write(&out->wreq, (uv_stream_t *)out->tcp, &buf, 1,
                 out_written_cb) != 0) {
        out->written = true;
        out_stop(out, RAFT_NOCONNECTION, false);
        return;
    }
    if (uv_read_start((uv_stream_t *)out->tcp, out_alloc_cb, out_read_cb) !=
        0) {
        out_stop(out, RAFT_NOCONNECTION, false);
    }
}

/*
 * Start a TCP connection to @sa. Returns 0 when it is under way or has
 * already failed asynchronously (out_closed_cb follows), or RAFT_NOMEM when
 * no handle could be created (nothing started).
 */
static int out_connect_addr(struct peer_out *out, const struct sockaddr *sa)
{
    int rv;

    out->tcp = raft_malloc(sizeof(*out->tcp));
    if (out->tcp == NULL) {
        return RAFT_NOMEM;
    }
    uv_tcp_init(out->p->loop, out->tcp);
    out->tcp->data = out;
    out->creq.data = out;
    out->written = false;
    out->acked = false;
    rv = uv_tcp_connect(&out->creq, out->tcp, sa, out_connected_cb);
    if (rv != 0) {
        set_err(out->p->t, "connect to %s: %s", out->target, uv_strerror(rv));
        out_stop(out, RAFT_NOCONNECTION, true);
    }
    return 0;
}

/* Connect to the next resolved address, or fail the request. */
static void out_try_next(struct peer_out *out)
{
    while (out->ai_next != NULL) {
        struct addrinfo *a = out->ai_next;
        out->ai_next = a->ai_next;
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6) {
            continue;
        }
        if (out_connect_addr(out, a->ai_addr) != 0) {
            out->status = RAFT_NOCONNECTION;
            out_finish(out);
        }
        return;
    }
    if (out->status == 0) {
        set_err(out->p->t, "connect to %s: no usable address", out->target);
        out->status = RAFT_NOCONNECTION;
    }
    out_finish(out);
}

static void out_resolved_cb(uv_getaddrinfo_t *req, int status,
                            struct addrinfo *res)
{
    struct peer_out *out = req->data;

    out->resolving = false;
    if (out->stopping) {
        if (res != NULL) {
            uv_freeaddrinfo(res);
        }
        out_finish(out);
        return;
    }
    if (status < 0) {
        set_err(out->p->t, "resolve %s: %s", out->target, uv_strerror(status));
        if (res != NULL) {
            uv_freeaddrinfo(res);
        }
        out->status = RAFT_NOCONNECTION;
        out_finish(out);
        return;
    }
    out->ai = res;
    out->ai_next = res;
    out_try_next(out);
}

static void out_encode_handshake(struct peer_out *out)
{
    struct peer *p = out->p;
    size_t alen = strlen(p->address);

    memcpy(out->hs, peer_magic, sizeof(peer_magic));
    put16(out->hs + 8, PEER_HS_VERSION);
    put64(out->hs + 10, p->id);
    put16(out->hs + 18, (uint16_t)alen);
    memcpy(out->hs + PEER_HS_FIXED, p->address, alen);
    put32(out->hs + PEER_HS_FIXED + alen,
          hs_crc(out->hs, PEER_HS_FIXED + alen));
    out->hs_len = PEER_HS_FIXED + alen + 4;
}

/* ------------------------------------------------------------------------ */
/* Deadlines: one timer for every pending handshake */

static void timer_cb(uv_timer_t *h)
{
    struct peer *p = h->data;
    uint64_t now = uv_now(p->loop);
    struct peer_in *in, *in_next;
    struct peer_out *out;

    if (p->closing) {
        return;
    }
    if (p->stalled) {
        p->stalled = !accept_one(p);
    }
    for (in = p->ins; in != NULL; in = in_next) {
        in_next = in->next;
        if (in->deadline <= now) {
            log_debug("peer port: handshake timed out after %u ms",
                      p->handshake_ms);
            in_abort(in);
        }
    }
    for (out = p->outs; out != NULL; out = out->next) {
        if (!out->stopping && out->deadline <= now) {
            set_err(p->t, "connect to %s: timed out", out->target);
            out_stop(out, RAFT_NOCONNECTION, false);
        }
    }
    timer_arm(p);
}

/* (Re)start the timer for the earliest deadline, or stop it. */
static void timer_arm(struct peer *p)
{
    uint64_t now = uv_now(p->loop);
    uint64_t next = UINT64_MAX;
    struct peer_in *in;
    struct peer_out *out;

    if (p->closing || !p->initialized) {
        return;
    }
    if (p->stalled) {
        next = now + PEER_ACCEPT_RETRY_MS;
    }
    for (in = p->ins; in != NULL; in = in->next) {
        if (in->deadline < next) {
            next = in->deadline;
        }
    }
    for (out = p->outs; out != NULL; out = out->next) {
        if (!out->stopping && out->deadline < next) {
            next = out->deadline;
        }
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    uv_timer_start(&p->timer, timer_cb, next > now ? next - now : 0, 0);
}

/* ------------------------------------------------------------------------ */
/* The raft_uv_transport vtable */

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct peer *p = t->impl;
    char host[PEER_UV_ADDRESS_MAX + 1];
    uint16_t port;

    if (p->initialized) {
        set_err(t, "transport already in use");
        return RAFT_INVALID;
    }
    if (id == 0) {
        set_err(t, "raft id 0");
        return RAFT_BADID;
    }
    if (address == NULL || strlen(address) > PEER_UV_ADDRESS_MAX ||
        peer_uv_parse_address(address, host, sizeof(host), &port) != 0) {
        set_err(t, "invalid peer address \"%.200s\"",
                address != NULL ? address : "");
        return RAFT_INVALID;
    }
    p->id = id;
    strcpy(p->address, address);
    uv_timer_init(p->loop, &p->timer);
    p->timer.data = p;
    p->initialized = true;
    return 0;
}

static void format_listen(char *out, size_t size, const char *host,
                          uint16_t port)
{
    if (strchr(host, ':') != NULL) {
        snprintf(out, size, "[%s]:%u", host, (unsigned)port);
    } else {
        snprintf(out, size, "%s:%u", host, (unsigned)port);
    }
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct peer *p = t->impl;
    const char *address = p->bind[0] != '\0' ? p->bind : p->address;
    char host[PEER_UV_ADDRESS_MAX + 1], shown[PEER_UV_ADDRESS_MAX + 16];
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    uint16_t port;
    int rv;

    if (p->listener_open || p->closing) {
        set_err(t, "already listening");
        return RAFT_INVALID;
    }
    if (peer_uv_parse_address(address, host, sizeof(host), &port) != 0) {
        set_err(t, "invalid peer address \"%s\"", address);
        return RAFT_INVALID;
    }
    format_listen(shown, sizeof(shown), host, port);
    if (!numeric_addr(host, port, &ss)) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        rv = getaddrinfo(host, NULL, &hints, &res);
        if (rv != 0 || res == NULL) {
            set_err(t, "listen tcp %s: lookup %s: %s", shown, host,
                    gai_strerror(rv));
            if (res != NULL) {
                freeaddrinfo(res);
            }
            return RAFT_IOERR;
        }
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        if (ss.ss_family == AF_INET) {
            ((struct sockaddr_in *)&ss)->sin_port = htons(port);
        } else {
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
        }
    }
    p->accept_cb = cb;
    uv_tcp_init(p->loop, &p->listener);
    p->listener.data = p;
    p->listener_open = true;
    rv = uv_tcp_bind(&p->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0) {
        rv =
            uv_listen((uv_stream_t *)&p->listener, PEER_BACKLOG, on_connection);
    }
    if (rv != 0) {
        /* libuv reports bind errors (EADDRINUSE...) from uv_listen. */
        set_err(t, "listen tcp %s: bind: %s", shown, uv_strerror(rv));
        return RAFT_IOERR; /* the listener is closed by close() */
    }
    if (uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &namelen) ==
        0) {
        p->port = ntohs(ss.ss_family == AF_INET
                            ? ((struct sockaddr_in *)&ss)->sin_port
                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                     raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct peer *p = t->impl;
    struct peer_out *out;
    struct sockaddr_storage ss;
    char host[PEER_UV_ADDRESS_MAX + 1];
    uint16_t port;
    int rv;

    (void)id;
    if (p->closing || !p->initialized) {
        set_err(t, "transport is closed");
        return RAFT_CANCELED;
    }
    if (address == NULL || strlen(address) > PEER_UV_ADDRESS_MAX ||
        peer_uv_parse_address(address, host, sizeof(host), &port) != 0 ||
        port == 0) {
        set_err(t, "invalid peer address \"%.200s\"",
                address != NULL ? address : "");
        return RAFT_NOCONNECTION;
    }
    out = raft_calloc(1, sizeof(*out));
    if (out == NULL) {
        set_err(t, "out of memory");
        return RAFT_NOMEM;
    }
    out->p = p;
    out->req = req;
    strcpy(out->target, address);
    out_encode_handshake(out);
    out->deadline = uv_now(p->loop) + p->connect_ms;
    out->gai.data = out;
    /* Linked and armed first: a connect that fails at once still reports
     * through the (asynchronous) close path. */
    req->cb = cb;
    out->next = p->outs;
    if (p->outs != NULL) {
        p->outs->prev = out;
    }
    p->outs = out;

    if (numeric_addr(host, port, &ss)) {
        rv = out_connect_addr(out, (const struct sockaddr *)&ss);
        if (rv != 0) {
            set_err(t, "out of memory");
            out_unlink(out);
            raft_free(out);
            return rv;
        }
    } else {
        struct addrinfo hints;
        char service[8];
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(service, sizeof(service), "%u", (unsigned)port);
        rv = uv_getaddrinfo(p->loop, &out->gai, out_resolved_cb, host, service,
                            &hints);
        if (rv != 0) {
            set_err(t, "resolve %s: %s", address, uv_strerror(rv));
            out_unlink(out);
            raft_free(out);
            return RAFT_NOCONNECTION;
        }
        out->resolving = true;
    }
    timer_arm(p);
    return 0;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct peer *p = h->data;
    p->pending--;
    maybe_fire_close(p);
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct peer *p = t->impl;
    struct peer_out *out;

    if (p->closing) {
        return;
    }
    p->closing = true;
    p->close_cb = cb;
    p->pending++; /* hold: no callback before we are done here */
    if (p->listener_open) {
        p->pending++;
        uv_close((uv_handle_t *)&p->listener, handle_closed_cb);
    }
    while (p->ins != NULL) {
        in_abort(p->ins);
    }
    for (out = p->outs; out != NULL; out = out->next) {
        out_stop(out, RAFT_CANCELED, false);
    }
    if (p->initialized) {
        p->pending++;
        uv_close((uv_handle_t *)&p->timer, handle_closed_cb);
    }
    p->pending--;
    maybe_fire_close(p);
}

/* ------------------------------------------------------------------------ */
/* Public API */

int peer_uv_init(struct raft_uv_transport *t, uv_loop_t *loop,
                 struct grpc_uv_server *grpc)
{
    void *data = t->data;
    struct peer *p;

    memset(t, 0, sizeof(*t));
    t->data = data;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        set_err(t, "out of memory");
        return IK_ENOMEM;
    }
    p->t = t;
    p->loop = loop;
    p->grpc = grpc;
    p->connect_ms = PEER_CONNECT_TIMEOUT_MS;
    p->handshake_ms = PEER_HANDSHAKE_TIMEOUT_MS;
    t->impl = p;
    t->init = t_init;
    t->listen = t_listen;
    t->connect = t_connect;
    t->close = t_close;
    return 0;
}

void peer_uv_close(struct raft_uv_transport *t)
{
    free(t->impl);
    t->impl = NULL;
}

int peer_uv_set_bind_address(struct raft_uv_transport *t, const char *address)
{
    struct peer *p = t->impl;
    char host[PEER_UV_ADDRESS_MAX + 1];
    uint16_t port;

    if (address == NULL || strlen(address) > PEER_UV_ADDRESS_MAX ||
        peer_uv_parse_address(address, host, sizeof(host), &port) != 0) {
        set_err(t, "invalid peer bind address \"%.200s\"",
                address != NULL ? address : "");
        return IK_EINVAL;
    }
    strcpy(p->bind, address);
    return 0;
}

void peer_uv_set_timeouts(struct raft_uv_transport *t, unsigned connect_ms,
                          unsigned handshake_ms)
{
    struct peer *p = t->impl;
    if (connect_ms > 0) {
        p->connect_ms = connect_ms;
    }
    if (handshake_ms > 0) {
        p->handshake_ms = handshake_ms;
    }
}

uint16_t peer_uv_port(const struct raft_uv_transport *t)
{
    const struct peer *p = t->impl;
    return p->port;
}
