/*
 * grpc: gRPC server core on top of an nghttp2 server session (see grpc.h).
 *
 * Every HTTP/2 stream the client opens gets a struct grpc_call, attached to
 * the nghttp2 stream as its user data and linked in the connection's list.
 * The struct lives until nghttp2 closes the stream (or the connection is
 * freed); the handler's view of it ("live") ends earlier, at
 * grpc_call_finish() or on_cancel.
 *
 * Receiving: DATA payload is cut into gRPC messages as it arrives by the
 * call's grpc_frame_reader (in place when a message lies whole inside one
 * chunk, else gathered in its buffer).
 *
 * Sending: messages are framed into the call's grpc_frame_buf; one nghttp2
 * data provider per call reads from it, returning NGHTTP2_ERR_DEFERRED when
 * it is empty and the call is not finished; grpc_call_send()/finish() resume
 * it. When the buffer drains after grpc_call_finish(), the provider ends the
 * DATA without END_STREAM and submits the trailers.
 */
#include "server/grpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "server/errors.h"
#include "server/grpc_frame.h"

#define GRPC_DEFAULT_MAX_RECV (4u << 20)
/* Receive windows: large enough that etcd's 1.5 MiB requests need no
 * WINDOW_UPDATE round trip; nghttp2 acknowledges consumed data itself. */
#define GRPC_STREAM_WINDOW (4u << 20)
#define GRPC_CONN_WINDOW (16u << 20)

enum {
    CALL_LIVE = 1u << 0,          /* handler owns it */
    CALL_FINISHED = 1u << 1,      /* status decided, trailers queued/sent */
    CALL_HEADERS_SENT = 1u << 2,  /* response HEADERS submitted */
    CALL_DEFERRED = 1u << 3,      /* data provider is parked */
    CALL_REMOTE_CLOSED = 1u << 4, /* END_STREAM received */
    CALL_HAS_DEADLINE = 1u << 5,
    CALL_GRPC_CT = 1u << 6,      /* content-type is application/grpc */
    CALL_BAD_TIMEOUT = 1u << 7,  /* malformed grpc-timeout */
    CALL_HAS_TIMEOUT = 1u << 8,  /* grpc-timeout seen (timeout_ms valid) */
    CALL_DISPATCHED = 1u << 9,   /* request headers processed */
    CALL_TRAILERS_OUT = 1u << 10 /* trailers submitted to nghttp2 */
};

struct grpc_call {
    struct grpc_conn *conn;
    struct grpc_call *prev, *next; /* conn->calls */
    const struct grpc_method *method;
    void *data;
    int32_t stream_id;
    uint32_t flags;
    uint32_t n_msgs;
    uint64_t timeout_ms;
    uint64_t deadline;
    /* Header phase: why the request will be rejected. */
    char *bad_path;     /* :path of an unknown method */
    char *bad_encoding; /* grpc-encoding other than identity */
    /* Metadata: "name\0value\0" pairs. */
    char *md;
    size_t md_len, md_cap;
    struct grpc_frame_reader rx; /* request messages */
    struct grpc_frame_buf out;   /* framed responses not yet given to nghttp2 */
    /* Trailers waiting for the output buffer to drain. */
    int status;
    char *status_msg; /* percent-encoded, or NULL */
};

struct grpc_conn {
    const struct grpc_server_config *cfg;
    const struct grpc_allocator *alloc;
    void *data;
    nghttp2_session *session;
    nghttp2_mem mem;
    struct grpc_call *calls;
    size_t n_live;
    uint64_t next_deadline; /* UINT64_MAX: none */
    size_t max_recv;
    int depth;      /* > 0 while inside recv/send/tick/free */
    int error;      /* sticky IK_EPROTO/IK_ENOMEM from recv */
    bool failed;    /* fatal: grpc_conn_send() returns -1 */
    bool signalled; /* on_want_write fired, not yet drained */
    bool freeing;
};

/* ------------------------------------------------------------------------ */
/* Helpers */

int grpc_timeout_parse(const char *s, size_t len, uint64_t *ms)
{
    uint64_t v = 0;
    size_t i;

    if (len < 2 || len > 9) {
        return IK_EINVAL;
    }
    for (i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return IK_EINVAL;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    switch (s[len - 1]) {
    case 'H':
        *ms = v * 3600000u;
        break;
    case 'M':
        *ms = v * 60000u;
        break;
    case 'S':
        *ms = v * 1000u;
        break;
    case 'm':
        *ms = v;
        break;
    case 'u':
        *ms = (v + 999u) / 1000u;
        break;
    case 'n':
        *ms = (v + 999999u) / 1000000u;
        break;
    default:
        return IK_EINVAL;
    }
    return 0;
}

size_t grpc_percent_encode(const char *msg, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const unsigned char *p;

    for (p = (const unsigned char *)msg; *p != '\0'; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (n + 1 < size) {
                out[n] = (char)*p;
            }
            n++;
        } else {
            if (n + 3 < size) {
                out[n] = '%';
                out[n + 1] = hex[*p >> 4];
                out[n + 2] = hex[*p & 0xf];
            } else if (n < size) {
                size = n + 1; /* never emit half an escape */
            }
            n += 3;
        }
    }
    if (size > 0) {
        out[n < size ? n : size - 1] = '\0';
    }
    return n;
}

static void signal_write(struct grpc_conn *c)
{
    if (c->depth > 0 || c->signalled || c->freeing ||
        c->cfg->on_want_write == NULL) {
        return;
    }
    c->signalled = true;
    c->cfg->on_want_write(c, c->data);
}

/* ------------------------------------------------------------------------ */
/* Calls: lifecycle */

static void call_unlink(struct grpc_call *call)
{
    struct grpc_conn *c = call->conn;
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        c->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
}

static void call_free(struct grpc_call *call)
{
    const struct grpc_allocator *a = call->conn->alloc;
    grpc_mem_free(a, call->bad_path);
    grpc_mem_free(a, call->bad_encoding);
    grpc_mem_free(a, call->md);
    grpc_frame_reader_free(&call->rx);
    grpc_frame_buf_free(&call->out);
    grpc_mem_free(a, call->status_msg);
    grpc_mem_free(a, call);
}

/* The handler's view of the call ends. */
static void call_unlive(struct grpc_call *call)
{
    if (call->flags & CALL_LIVE) {
        call->flags &= ~CALL_LIVE;
        call->conn->n_live--;
    }
}

static void call_cancelled(struct grpc_call *call)
{
    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    call_unlive(call);
    if (call->method->on_cancel != NULL) {
        call->method->on_cancel(call);
    }
}

/* Last resort when nghttp2 could not take a frame: reset the stream, and if
 * even that fails give up on the connection. */
static void call_reset(struct grpc_call *call, uint32_t code)
{
    struct grpc_conn *c = call->conn;
    if (nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE,
                                  call->stream_id, code) != 0) {
        c->failed = true;
    }
}

/* ------------------------------------------------------------------------ */
/* Calls: response */

#define NV_CONST(n, v)                                                   \
    {                                                                    \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,    \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE \
    }

static const char *const status_str[] = {"0",  "1",  "2",  "3",  "4",  "5",
                                         "6",  "7",  "8",  "9",  "10", "11",
                                         "12", "13", "14", "15", "16"};

/*
 * Fill @nv with grpc-status (and grpc-message if @msg is non-empty); @buf
 * holds the digits of an unusual status. Returns the number of entries.
 */
static size_t status_nv(nghttp2_nv *nv, int status, const char *msg,
                        char buf[16])
{
    size_t n = 0;
    const char *s;

    if (status >= 0 && status <= 16) {
        s = status_str[status];
    } else {
        snprintf(buf, 16, "%d", status);
        s = buf;
    }
    nv[n].name = (uint8_t *)"grpc-status";
    nv[n].namelen = sizeof("grpc-status") - 1;
    nv[n].value = (uint8_t *)s;
    nv[n].valuelen = strlen(s);
    nv[n].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
    n++;
    if (msg != NULL && msg[0] != '\0') {
        nv[n].name = (uint8_t *)"grpc-message";
        nv[n].namelen = sizeof("grpc-message") - 1;
        nv[n].value = (uint8_t *)msg;
        nv[n].valuelen = strlen(msg);
        nv[n].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
        n++;
    }
    return n;
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *data_flags,
                            nghttp2_data_source *source, void *user_data)
{
    struct grpc_call *call = source->ptr;
    struct grpc_conn *c = call->conn;
    size_t n = grpc_frame_buf_read(&call->out, buf, length);
    nghttp2_nv nv[2];
    char digits[16];
    size_t nvlen;

    (void)user_data;
    if (grpc_frame_buf_pending(&call->out) > 0) {
        return (ssize_t)n;
    }
    if (!(call->flags & CALL_FINISHED)) {
        if (n > 0) {
            return (ssize_t)n;
        }
        call->flags |= CALL_DEFERRED;
        return NGHTTP2_ERR_DEFERRED;
    }
    /* Drained and finished: end the DATA and send the trailers. */
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nvlen = status_nv(nv, call->status, call->status_msg, digits);
    if (nghttp2_submit_trailer(session, stream_id, nv, nvlen) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    call->flags |= CALL_TRAILERS_OUT;
    grpc_mem_free(c->alloc, call->status_msg);
    call->status_msg = NULL;
    return (ssize_t)n;
}

static int call_submit_headers(struct grpc_call *call)
{
    static const nghttp2_nv nv[] = {
        NV_CONST(":status", "200"),
        NV_CONST("content-type", "application/grpc"),
    };
    nghttp2_data_provider prd;

    prd.source.ptr = call;
    prd.read_callback = data_read_cb;
    if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, 2,
                                &prd) != 0) {
        return IK_ENOMEM;
    }
    call->flags |= CALL_HEADERS_SENT;
    return 0;
}

static void call_resume(struct grpc_call *call)
{
    if (call->flags & CALL_DEFERRED) {
        call->flags &= ~CALL_DEFERRED;
        if (nghttp2_session_resume_data(call->conn->session, call->stream_id) !=
            0) {
            call_reset(call, NGHTTP2_INTERNAL_ERROR);
        }
    }
}

/*
 * Decide the call's status and queue the trailers (after the queued
 * messages) or a trailers-only response. Does not touch CALL_LIVE.
 */
static void call_end(struct grpc_call *call, int status, const char *msg)
{
    struct grpc_conn *c = call->conn;
    char stackbuf[256];
    char *enc = NULL;
    size_t need;

    if (call->flags & CALL_FINISHED) {
        return;
    }
    call->flags |= CALL_FINISHED;
    if (msg != NULL && msg[0] != '\0') {
        need = grpc_percent_encode(msg, stackbuf, sizeof(stackbuf));
        if (need < sizeof(stackbuf)) {
            enc = stackbuf;
        } else {
            enc = grpc_mem_alloc(c->alloc, need + 1);
            if (enc != NULL) {
                grpc_percent_encode(msg, enc, need + 1);
            } else {
                enc = stackbuf; /* truncated, better than nothing */
            }
        }
    }
    if (!(call->flags & CALL_HEADERS_SENT)) {
        nghttp2_nv nv[4] = {
            NV_CONST(":status", "200"),
            NV_CONST("content-type", "application/grpc"),
        };
        char digits[16];
        size_t nvlen = 2 + status_nv(nv + 2, status, enc, digits);
        call->flags |= CALL_HEADERS_SENT | CALL_TRAILERS_OUT;
        if (nghttp2_submit_response(c->session, call->stream_id, nv, nvlen,
                                    NULL) != 0) {
            call_reset(call, NGHTTP2_INTERNAL_ERROR);
        }
    } else {
        call->status = status;
        if (enc != NULL) {
            call->status_msg =
                grpc_mem_strndup(c->alloc, (const uint8_t *)enc, strlen(enc));
        }
        call_resume(call);
    }
    if (enc != NULL && enc != stackbuf) {
        grpc_mem_free(c->alloc, enc);
    }
    signal_write(c);
}

/* The core ends a live call on its own: status to the client, on_cancel to
 * the handler. */
static void call_abort(struct grpc_call *call, int status, const char *msg)
{
    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    call_end(call, status, msg);
    call_cancelled(call);
}

static void call_abort_rv(struct grpc_call *call, int rv)
{
    const char *msg;
    int status = ik_grpc_status(rv, &msg);
    call_abort(call, status, msg);
}

/* ------------------------------------------------------------------------ */
/* Calls: request */

static int md_add(struct grpc_call *call, const uint8_t *name, size_t nlen,
                  const uint8_t *value, size_t vlen)
{
    size_t need = call->md_len + nlen + vlen + 2;
    if (need > call->md_cap) {
        size_t cap = call->md_cap > 0 ? call->md_cap * 2 : 128;
        char *p;
        while (cap < need) {
            cap *= 2;
        }
        p = grpc_mem_realloc(call->conn->alloc, call->md, cap);
        if (p == NULL) {
            return IK_ENOMEM;
        }
        call->md = p;
        call->md_cap = cap;
    }
    memcpy(call->md + call->md_len, name, nlen);
    call->md[call->md_len + nlen] = '\0';
    memcpy(call->md + call->md_len + nlen + 1, value, vlen);
    call->md[call->md_len + nlen + 1 + vlen] = '\0';
    call->md_len = need;
    return 0;
}

static const struct grpc_method *
find_method(const struct grpc_server_config *cfg, const uint8_t *path,
            size_t len)
{
    size_t i;
    for (i = 0; i < cfg->n_methods; i++) {
        if (grpc_bytes_eq(path, len, cfg->methods[i].path)) {
            return &cfg->methods[i];
        }
    }
    return NULL;
}

/* Is there a method "/<service>/..." in the table? */
static bool service_known(const struct grpc_server_config *cfg,
                          const char *service, size_t len)
{
    size_t i;
    for (i = 0; i < cfg->n_methods; i++) {
        const char *p = cfg->methods[i].path;
        if (p[0] == '/' && strncmp(p + 1, service, len) == 0 &&
            p[1 + len] == '/') {
            return true;
        }
    }
    return false;
}

/* Answer a request for a method we do not serve, as grpc-go words it. */
static void reject_unknown(struct grpc_call *call)
{
    struct grpc_conn *c = call->conn;
    const char *path = call->bad_path != NULL ? call->bad_path : "";
    const char *sm = path[0] == '/' ? path + 1 : path;
    const char *slash = strrchr(sm, '/');
    size_t cap = strlen(path) * 2 + 64;
    char *msg = grpc_mem_alloc(c->alloc, cap);
    int status = GRPC_UNIMPLEMENTED;

    if (msg == NULL) {
        call_end(call, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
        return;
    }
    if (slash == NULL) {
        status = GRPC_RESOURCE_EXHAUSTED;
        snprintf(msg, cap, "malformed method name: \"%s\"", path);
    } else if (!service_known(c->cfg, sm, (size_t)(slash - sm))) {
        snprintf(msg, cap, "unknown service %.*s", (int)(slash - sm), sm);
    } else {
        snprintf(msg, cap, "unknown method %s for service %.*s", slash + 1,
                 (int)(slash - sm), sm);
    }
    call_end(call, status, msg);
    grpc_mem_free(c->alloc, msg);
}

/* One request message (grpc_frame_msg_cb): hand it to the handler. Returns
 * whether the call is still live. */
static bool deliver(void *ud, const uint8_t *p, size_t n)
{
    struct grpc_call *call = ud;
    const struct grpc_method *m = call->method;
    call->n_msgs++;
    if ((m->kind == GRPC_UNARY || m->kind == GRPC_SERVER_STREAMING) &&
        call->n_msgs > 1) {
        call_abort(call, GRPC_INTERNAL,
                   "grpc: client streaming protocol violation: more than "
                   "one request message for a unary request");
        return false;
    }
    if (m->on_message != NULL) {
        m->on_message(call, p, n);
    }
    return (call->flags & CALL_LIVE) != 0;
}

static void call_recv_data(struct grpc_call *call, const uint8_t *p, size_t len)
{
    int rv;

    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    rv = grpc_frame_reader_feed(&call->rx, p, len, deliver, call);
    if (rv != 0) {
        /* Refused message: IK_ECOMPRESSED and IK_ENOMEM keep errors.h's
         * status and text; the others are worded as grpc-go does. */
        char msg[128];
        int status = grpc_frame_reader_status(&call->rx, rv, msg, sizeof(msg));
        call_abort(call, status, msg);
    }
}

static void call_half_close(struct grpc_call *call)
{
    enum grpc_method_kind kind;

    call->flags |= CALL_REMOTE_CLOSED;
    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    kind = call->method->kind;
    if (grpc_frame_reader_partial(&call->rx)) {
        call_abort(call, GRPC_INTERNAL,
                   "grpc: client half-closed the stream inside a message "
                   "(unexpected EOF)");
        return;
    }
    if ((kind == GRPC_UNARY || kind == GRPC_SERVER_STREAMING) &&
        call->n_msgs == 0) {
        call_abort(call, GRPC_INTERNAL,
                   "grpc: client half-closed the stream without sending the "
                   "request message");
        return;
    }
    if (call->method->on_half_close != NULL) {
        call->method->on_half_close(call);
    }
}

/* The request's header block is complete. */
static void call_dispatch(struct grpc_call *call)
{
    struct grpc_conn *c = call->conn;

    call->flags |= CALL_DISPATCHED;
    if (!(call->flags & CALL_GRPC_CT) || (call->flags & CALL_BAD_TIMEOUT)) {
        /* grpc-go refuses these at the transport level. */
        call->flags |= CALL_FINISHED | CALL_HEADERS_SENT;
        call_reset(call, NGHTTP2_PROTOCOL_ERROR);
        signal_write(c);
    } else if (call->method == NULL) {
        reject_unknown(call);
    } else if (call->bad_encoding != NULL) {
        size_t cap = strlen(call->bad_encoding) * 2 + 80;
        char *msg = grpc_mem_alloc(c->alloc, cap);
        if (msg != NULL) {
            snprintf(msg, cap,
                     "grpc: Decompressor is not installed for grpc-encoding "
                     "\"%s\"",
                     call->bad_encoding);
        }
        call_end(call,
                 msg != NULL ? GRPC_UNIMPLEMENTED : GRPC_RESOURCE_EXHAUSTED,
                 msg != NULL ? msg : ik_strerror(IK_ENOMEM));
        grpc_mem_free(c->alloc, msg);
    } else {
        call->flags |= CALL_LIVE;
        c->n_live++;
        if ((call->flags & CALL_HAS_TIMEOUT) && c->cfg->now_ms != NULL) {
            uint64_t now = c->cfg->now_ms();
            call->deadline = call->timeout_ms > UINT64_MAX - now
                                 ? UINT64_MAX - 1
                                 : now + call->timeout_ms;
            call->flags |= CALL_HAS_DEADLINE;
            if (call->deadline < c->next_deadline) {
                c->next_deadline = call->deadline;
            }
        }
    }
    grpc_mem_free(c->alloc, call->bad_path);
    call->bad_path = NULL;
    grpc_mem_free(c->alloc, call->bad_encoding);
    call->bad_encoding = NULL;
}

/* ------------------------------------------------------------------------ */
/* nghttp2 callbacks */

static struct grpc_call *stream_call(nghttp2_session *session, int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
    struct grpc_conn *c = user_data;
    struct grpc_call *call;

    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    call = grpc_mem_calloc(c->alloc, 1, sizeof(*call));
    if (call == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    call->conn = c;
    call->stream_id = frame->hd.stream_id;
    grpc_frame_reader_init(&call->rx, c->alloc, c->max_recv);
    grpc_frame_buf_init(&call->out, c->alloc);
    if (nghttp2_session_set_stream_user_data(session, call->stream_id, call) !=
        0) {
        grpc_mem_free(c->alloc, call);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    call->next = c->calls;
    if (c->calls != NULL) {
        c->calls->prev = call;
    }
    c->calls = call;
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
    struct grpc_conn *c = user_data;
    struct grpc_call *call;

    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* client trailers carry nothing we use */
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    if (namelen > 0 && name[0] == ':') {
        if (grpc_bytes_eq(name, namelen, ":path")) {
            call->method = find_method(c->cfg, value, valuelen);
            if (call->method == NULL && call->bad_path == NULL) {
                call->bad_path = grpc_mem_strndup(c->alloc, value, valuelen);
                if (call->bad_path == NULL) {
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                }
            }
        }
        return 0;
    }
    if (grpc_bytes_eq(name, namelen, "content-type")) {
        if (grpc_is_content_type(value, valuelen)) {
            call->flags |= CALL_GRPC_CT;
        }
    } else if (grpc_bytes_eq(name, namelen, "grpc-timeout")) {
        if (grpc_timeout_parse((const char *)value, valuelen,
                               &call->timeout_ms) != 0) {
            call->flags |= CALL_BAD_TIMEOUT;
        } else {
            call->flags |= CALL_HAS_TIMEOUT;
        }
    } else if (grpc_bytes_eq(name, namelen, "grpc-encoding")) {
        if (!grpc_bytes_eq(value, valuelen, "identity") &&
            call->bad_encoding == NULL) {
            call->bad_encoding = grpc_mem_strndup(c->alloc, value, valuelen);
            if (call->bad_encoding == NULL) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
    } else if (grpc_bytes_eq(name, namelen, "te") ||
               grpc_bytes_eq(name, namelen, "user-agent") ||
               grpc_bytes_eq(name, namelen, "grpc-accept-encoding")) {
        /* transport's own */
    } else if (md_add(call, name, namelen, value, valuelen) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct grpc_call *call;

    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS &&
        frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
        !(call->flags & CALL_DISPATCHED)) {
        call_dispatch(call);
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        call_half_close(call);
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags,
                              int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
    struct grpc_call *call = stream_call(session, stream_id);

    (void)flags;
    (void)user_data;
    if (call != NULL) {
        call_recv_data(call, data, len);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct grpc_call *call;

    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call != NULL && !(call->flags & CALL_REMOTE_CLOSED)) {
        /* We are done but the client is still sending: tell it to stop. */
        call_reset(call, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
    struct grpc_conn *c = user_data;
    struct grpc_call *call;

    (void)error_code;
    if (c->freeing) {
        return 0;
    }
    call = stream_call(session, stream_id);
    if (call == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    call_cancelled(call);
    call_unlink(call);
    call_free(call);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connection */

static int conn_setup(struct grpc_conn *c)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    uint32_t mcs = c->cfg->max_concurrent_streams;
    nghttp2_settings_entry iv[2];
    int rv;

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return IK_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                            on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return IK_ENOMEM;
    }
    /* No priority tree bookkeeping for closed streams: gRPC has no use for
     * it and it costs memory per stream. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* nghttp2's HTTP semantics checks reject what Go gRPC clients dialled
     * with a URL as target send (etcdctl --endpoints=http://host:port, as
     * `endpoint status --cluster` does): ":authority: http://host:port",
     * which etcd accepts. gRPC needs none of those checks: the core
     * validates what it uses (:path, content-type, grpc-*). */
    nghttp2_option_set_no_http_messaging(opt, 1);
    rv = nghttp2_session_server_new3(&c->session, cbs, c, opt,
                                     c->alloc != NULL ? &c->mem : NULL);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        c->session = NULL;
        return IK_ENOMEM;
    }
    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = mcs != 0 ? mcs : UINT32_MAX;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = GRPC_STREAM_WINDOW;
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              GRPC_CONN_WINDOW) != 0) {
        return IK_ENOMEM;
    }
    return 0;
}

int grpc_conn_new(const struct grpc_server_config *cfg, void *conn_data,
                  struct grpc_conn **out)
{
    struct grpc_conn *c = grpc_mem_calloc(cfg->alloc, 1, sizeof(*c));
    int rv;

    if (c == NULL) {
        return IK_ENOMEM;
    }
    c->cfg = cfg;
    c->alloc = cfg->alloc;
    c->data = conn_data;
    c->next_deadline = UINT64_MAX;
    c->max_recv = cfg->max_recv_msg_size != 0 ? cfg->max_recv_msg_size
                                              : GRPC_DEFAULT_MAX_RECV;
    if (c->alloc != NULL) {
        grpc_mem_nghttp2(c->alloc, &c->mem);
    }
    rv = conn_setup(c);
    if (rv != 0) {
        if (c->session != NULL) {
            nghttp2_session_del(c->session);
        }
        grpc_mem_free(c->alloc, c);
        return rv;
    }
    *out = c;
    return 0;
}

int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv;

    if (c->error != 0) {
        return c->error;
    }
    if (c->failed) {
        return IK_EPROTO;
    }
    c->depth++;
    rv = nghttp2_session_mem_recv(c->session, data, len);
    c->depth--;
    if (rv < 0) {
        c->error = rv == NGHTTP2_ERR_NOMEM ? IK_ENOMEM : IK_EPROTO;
        /* Most errors already queued a GOAWAY; make sure one is. */
        nghttp2_session_terminate_session(
            c->session, c->error == IK_ENOMEM ? NGHTTP2_INTERNAL_ERROR
                                              : NGHTTP2_PROTOCOL_ERROR);
        return c->error;
    }
    if (c->failed) {
        return IK_ENOMEM;
    }
    return 0;
}

ssize_t grpc_conn_send(struct grpc_conn *c, const uint8_t **data)
{
    ssize_t n;

    if (c->failed) {
        return -1;
    }
    if (c->depth > 0) {
        return 0;
    }
    c->depth++;
    n = nghttp2_session_mem_send(c->session, data);
    c->depth--;
    if (n < 0 || c->failed) {
        c->failed = true;
        return -1;
    }
    if (n == 0) {
        c->signalled = false;
    }
    return n;
}

bool grpc_conn_want_close(const struct grpc_conn *c)
{
    if (c->failed) {
        return true;
    }
    if (nghttp2_session_want_write(c->session)) {
        return false;
    }
    return c->error != 0 || !nghttp2_session_want_read(c->session);
}

void grpc_conn_tick(struct grpc_conn *c)
{
    struct grpc_call *call;
    uint64_t now, next = UINT64_MAX;

    if (c->next_deadline == UINT64_MAX || c->cfg->now_ms == NULL) {
        return;
    }
    now = c->cfg->now_ms();
    if (now < c->next_deadline) {
        return;
    }
    c->depth++;
    /* Handlers cannot free calls from here (only nghttp2 closing a stream
     * inside recv/send does), so the list stays walkable. */
    for (call = c->calls; call != NULL; call = call->next) {
        if ((call->flags & (CALL_LIVE | CALL_HAS_DEADLINE)) !=
            (CALL_LIVE | CALL_HAS_DEADLINE)) {
            continue;
        }
        if (call->deadline <= now) {
            call_abort_rv(call, IK_EDEADLINE);
        } else if (call->deadline < next) {
            next = call->deadline;
        }
    }
    c->next_deadline = next;
    c->depth--;
    if (nghttp2_session_want_write(c->session)) {
        signal_write(c);
    }
}

void grpc_conn_free(struct grpc_conn *c)
{
    struct grpc_call *call, *next;

    if (c == NULL) {
        return;
    }
    c->depth++;
    for (call = c->calls; call != NULL; call = call->next) {
        call_cancelled(call);
    }
    c->freeing = true;
    nghttp2_session_del(c->session);
    for (call = c->calls; call != NULL; call = next) {
        next = call->next;
        call_free(call);
    }
    grpc_mem_free(c->alloc, c);
}

void *grpc_conn_data(const struct grpc_conn *c)
{
    return c->data;
}

size_t grpc_conn_live_calls(const struct grpc_conn *c)
{
    return c->n_live;
}

/* ------------------------------------------------------------------------ */
/* Calls: public */

struct grpc_conn *grpc_call_conn(const struct grpc_call *call)
{
    return call->conn;
}

const struct grpc_method *grpc_call_method(const struct grpc_call *call)
{
    return call->method;
}

void *grpc_call_get_data(const struct grpc_call *call)
{
    return call->data;
}

void grpc_call_set_data(struct grpc_call *call, void *data)
{
    call->data = data;
}

const char *grpc_call_metadata(const struct grpc_call *call, const char *name)
{
    size_t off = 0;
    while (off < call->md_len) {
        const char *n = call->md + off;
        size_t nlen = strlen(n);
        const char *v = n + nlen + 1;
        if (strcmp(n, name) == 0) {
            return v;
        }
        off += nlen + strlen(v) + 2;
    }
    return NULL;
}

uint64_t grpc_call_deadline(const struct grpc_call *call)
{
    return (call->flags & CALL_HAS_DEADLINE) ? call->deadline : 0;
}

/* May a message of @len bytes be queued? Submits the response HEADERS
 * before the first one. */
static int call_can_send(struct grpc_call *call, size_t len)
{
    if (!(call->flags & CALL_LIVE) || len > UINT32_MAX) {
        return IK_EINVAL;
    }
    if (!(call->flags & CALL_HEADERS_SENT)) {
        return call_submit_headers(call);
    }
    return 0;
}

static void call_queued(struct grpc_call *call)
{
    call_resume(call);
    signal_write(call->conn);
}

int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len)
{
    int rv = call_can_send(call, len);
    if (rv == 0) {
        rv = grpc_frame_buf_append(&call->out, msg, len);
    }
    if (rv != 0) {
        return rv;
    }
    call_queued(call);
    return 0;
}

int grpc_call_send_proto(struct grpc_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    int rv = call_can_send(call, len);
    if (rv == 0) {
        rv = grpc_frame_buf_pack(&call->out, msg, len);
    }
    if (rv != 0) {
        return rv;
    }
    call_queued(call);
    return 0;
}

size_t grpc_call_pending_bytes(const struct grpc_call *call)
{
    return grpc_frame_buf_pending(&call->out);
}

void grpc_call_finish(struct grpc_call *call, int status, const char *message)
{
    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    call_unlive(call);
    call_end(call, status, message);
}

void grpc_call_finish_error(struct grpc_call *call, int rv)
{
    const char *msg;
    int status = ik_grpc_status(rv, &msg);
    grpc_call_finish(call, status, msg);
}
