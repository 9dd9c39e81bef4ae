/*
 * grpc_client: gRPC client core on top of an nghttp2 client session (see
 * grpc_client.h).
 *
 * Every call is one struct grpc_client_call, allocated together with a copy
 * of its :path and metadata. A call sits in one of two lists of the
 * connection:
 *  - the queue (FIFO) while it waits for a stream: the server's
 *    SETTINGS_MAX_CONCURRENT_STREAMS is reached, or earlier calls are still
 *    waiting. Nothing in nghttp2 refers to it.
 *  - the active list once its request HEADERS are submitted. The call is the
 *    stream's user data and its data provider's source, so the struct lives
 *    until nghttp2 closes the stream (on_stream_close), whatever the owner's
 *    view of it ("live") says.
 * A queued call that stops being live (cancelled, expired, failed) stays in
 * the queue, marked dead, until the outermost public entry point returns:
 * callbacks may run while the core walks its lists, so nothing is unlinked
 * under them. Streams only close inside nghttp2_session_mem_recv/mem_send,
 * which never run from a callback.
 *
 * Sending: messages are framed into the call's output buffer; the data
 * provider copies from it, parks (NGHTTP2_ERR_DEFERRED) when it is empty and
 * the call is not half-closed, and ends the stream once it is.
 *
 * Receiving: DATA payload is cut into messages as it arrives. A message that
 * lies whole in one chunk nghttp2 hands over is delivered in place;
 * otherwise it is gathered in the call's receive buffer, sized once from
 * the length prefix. Each header block is decoded into the call's block
 * state (HTTP status, content-type, grpc-status, grpc-message) and turned
 * into the final status when it ends the stream.
 */
#include "client/grpc_client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "server/errors.h"
#include "server/grpc_frame.h"

/* Receive windows: a 1.5 MiB response needs no WINDOW_UPDATE round trip;
 * nghttp2 acknowledges consumed data by itself. */
#define STREAM_WINDOW (4u << 20)
#define CONN_WINDOW (16u << 20)
/* Header entries the core sets itself, before the caller's metadata. */
#define NV_FIXED 8
#define NV_STACK 24

static const char MSG_CLOSING[] = "transport is closing";
static const char MSG_DRAINING[] = "the connection is draining";

enum {
    CALL_LIVE = 1u << 0,         /* the owner's: on_close not fired yet */
    CALL_SUBMITTED = 1u << 1,    /* has a stream, in conn->active */
    CALL_DEFERRED = 1u << 2,     /* data provider parked */
    CALL_HALF_CLOSED = 1u << 3,  /* close_send() called */
    CALL_HAS_DEADLINE = 1u << 4, /* deadline valid */
    CALL_GOT_HEADERS = 1u << 5,  /* first response header block seen */
    CALL_GRPC = 1u << 6,         /* the response is gRPC */
    CALL_UNARY = 1u << 7,        /* started by grpc_client_unary*() */
    CALL_NOMEM = 1u << 8         /* nghttp2 reset it for lack of memory */
};

/* What the header block being received carried. */
enum {
    BLK_HTTP_STATUS = 1u << 0,
    BLK_CT_GRPC = 1u << 1,
    BLK_STATUS = 1u << 2,
    BLK_BAD_STATUS = 1u << 3
};

struct grpc_client_call {
    struct grpc_client_conn *conn;
    struct grpc_client_call *prev, *next; /* queue or active list */
    struct grpc_client_call_cbs cbs;
    grpc_client_unary_cb unary_cb;
    void *data;
    int32_t stream_id;
    uint32_t flags;
    uint64_t timeout_ms;
    uint64_t deadline;
    size_t n_md;
    char tmo[16];              /* grpc-timeout value */
    struct grpc_frame_buf out; /* framed requests not yet given to nghttp2 */
    /* Header block state. */
    uint32_t blk;
    int http_status;
    int grpc_status;
    char *grpc_message;          /* decoded */
    char *bad_ct;                /* content-type that is not gRPC */
    char *bad_status;            /* grpc-status that is not a number */
    char *encoding;              /* grpc-encoding of the response headers */
    struct grpc_frame_reader rx; /* response messages */
    uint32_t n_msgs;
    /* Unary helper: the response message. */
    uint8_t *ures;
    size_t ulen;
    /* :path, then n_md "name\0value\0" pairs. */
    char strs[];
};

struct grpc_client_conn {
    const struct grpc_allocator *alloc;
    void *data;
    char *authority;
    char *user_agent;
    uint64_t (*now_ms)(void);
    void (*on_want_write)(struct grpc_client_conn *conn, void *conn_data);
    size_t max_recv;
    nghttp2_session *session;
    nghttp2_mem mem;
    struct grpc_client_call *active, *active_tail;
    struct grpc_client_call *qhead, *qtail;
    size_t n_live;   /* live calls, queued or not */
    size_t n_queued; /* live calls in the queue */
    size_t n_dead;   /* dead calls in the queue */
    size_t n_streams;
    uint64_t next_deadline; /* UINT64_MAX: none */
    int depth;              /* > 0 inside a public entry point */
    int error;              /* sticky error of recv */
    bool failed;            /* fatal: send returns -1 */
    bool unusable;          /* no new calls */
    bool goaway;
    bool signalled;
    bool freeing;
};

/* ------------------------------------------------------------------------ */
/* Helpers */

size_t grpc_client_timeout_encode(uint64_t ms, char *out)
{
    static const uint64_t max = 99999999u;
    uint64_t v = ms;
    char unit = 'm';

    if (v > max) {
        v = ms / 1000u + (ms % 1000u != 0);
        unit = 'S';
    }
    if (v > max) {
        v = ms / 60000u + (ms % 60000u != 0);
        unit = 'M';
    }
    if (v > max) {
        v = ms / 3600000u + (ms % 3600000u != 0);
        unit = 'H';
        if (v > max) {
            v = max;
        }
    }
    return (size_t)snprintf(out, 12, "%llu%c", (unsigned long long)v, unit);
}

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

size_t grpc_client_percent_decode(const char *in, size_t len, char *out)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (in[i] == '%' && i + 2 < len) {
            int hi = hex_val(in[i + 1]);
            int lo = hex_val(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[n++] = (char)(hi << 4 | lo);
                i += 2;
                continue;
            }
        }
        out[n++] = in[i];
    }
    out[n] = '\0';
    return n;
}

/*
 * grpc-status as Go's strconv.Atoi reads it (optional sign, decimal
 * digits). Returns 0, or -1 for bad syntax and -2 for out of range.
 */
static int parse_status(const uint8_t *v, size_t len, int *out)
{
    size_t i = 0;
    bool neg = false;
    long long x = 0;

    if (len > 0 && (v[0] == '+' || v[0] == '-')) {
        neg = v[0] == '-';
        i = 1;
    }
    if (i == len) {
        return -1;
    }
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        if (x > INT_MAX) {
            continue; /* keep checking the syntax */
        }
        x = x * 10 + (v[i] - '0');
    }
    if (x > INT_MAX) {
        return -2;
    }
    *out = neg ? -(int)x : (int)x;
    return 0;
}

static const char *h2_error_name(uint32_t code)
{
    static const char *const names[] = {"NO_ERROR",
                                        "PROTOCOL_ERROR",
                                        "INTERNAL_ERROR",
                                        "FLOW_CONTROL_ERROR",
                                        "SETTINGS_TIMEOUT",
                                        "STREAM_CLOSED",
                                        "FRAME_SIZE_ERROR",
                                        "REFUSED_STREAM",
                                        "CANCEL",
                                        "COMPRESSION_ERROR",
                                        "CONNECT_ERROR",
                                        "ENHANCE_YOUR_CALM",
                                        "INADEQUATE_SECURITY",
                                        "HTTP_1_1_REQUIRED"};
    return code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

/* gRPC status for an HTTP/2 error code (grpc-go's table). */
static int h2_error_status(uint32_t code)
{
    switch (code) {
    case NGHTTP2_FLOW_CONTROL_ERROR:
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return GRPC_RESOURCE_EXHAUSTED;
    case NGHTTP2_REFUSED_STREAM:
        return GRPC_UNAVAILABLE;
    case NGHTTP2_CANCEL:
        return GRPC_CANCELLED;
    case NGHTTP2_INADEQUATE_SECURITY:
        return GRPC_PERMISSION_DENIED;
    default:
        return h2_error_name(code) != NULL ? GRPC_INTERNAL : GRPC_UNKNOWN;
    }
}

static int http_to_grpc(int http)
{
    switch (http) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

static const char *http_status_text(int http)
{
    static const struct {
        int code;
        const char *text;
    } tab[] = {
        {200, "OK"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Request Entity Too Large"},
        {415, "Unsupported Media Type"},
        {429, "Too Many Requests"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    size_t i;
    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if (tab[i].code == http) {
            return tab[i].text;
        }
    }
    return "";
}

static void signal_write(struct grpc_client_conn *c)
{
    if (c->depth > 0 || c->signalled || c->freeing ||
        c->on_want_write == NULL) {
        return;
    }
    c->signalled = true;
    c->on_want_write(c, c->data);
}

static uint32_t remote_max_streams(struct grpc_client_conn *c)
{
    return nghttp2_session_get_remote_settings(
        c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

/* ------------------------------------------------------------------------ */
/* Calls: lists and lifecycle */

static void list_unlink(struct grpc_client_call **head,
                        struct grpc_client_call **tail,
                        struct grpc_client_call *call)
{
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        *head = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    } else {
        *tail = call->prev;
    }
    call->prev = call->next = NULL;
}

static void list_append(struct grpc_client_call **head,
                        struct grpc_client_call **tail,
                        struct grpc_client_call *call)
{
    call->next = NULL;
    call->prev = *tail;
    if (*tail != NULL) {
        (*tail)->next = call;
    } else {
        *head = call;
    }
    *tail = call;
}

static void call_free(struct grpc_client_call *call)
{
    const struct grpc_allocator *a = call->conn->alloc;
    grpc_frame_buf_free(&call->out);
    grpc_mem_free(a, call->grpc_message);
    grpc_mem_free(a, call->bad_ct);
    grpc_mem_free(a, call->bad_status);
    grpc_mem_free(a, call->encoding);
    grpc_frame_reader_free(&call->rx);
    grpc_mem_free(a, call->ures);
    grpc_mem_free(a, call);
}

/*
 * The call is over for its owner: fire on_close (or the unary callback)
 * exactly once. The struct stays allocated; see the file comment.
 */
static void call_end(struct grpc_client_call *call, int status, const char *msg)
{
    struct grpc_client_conn *c = call->conn;

    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    call->flags &= ~CALL_LIVE;
    c->n_live--;
    if (!(call->flags & CALL_SUBMITTED)) {
        c->n_queued--;
        c->n_dead++;
    }
    if (msg == NULL) {
        msg = "";
    }
    if (call->flags & CALL_UNARY) {
        const uint8_t *resp = NULL;
        size_t len = 0;
        if (status == GRPC_OK && call->n_msgs == 0) {
            status = GRPC_UNKNOWN;
            msg = "EOF";
        } else if (status == GRPC_OK) {
            resp = call->ures != NULL ? call->ures : (const uint8_t *)"";
            len = call->ulen;
        }
        call->unary_cb(call->data, status, msg, resp, len);
    } else {
        call->cbs.on_close(call, status, msg);
    }
}

/*
 * The server ended the call. If the call's deadline has passed meanwhile
 * (the server's own grpc-timeout can beat our timer by a hair), report the
 * deadline, as grpc-go does: its client context expires first.
 */
static void call_end_server(struct grpc_client_call *call, int status,
                            const char *msg)
{
    struct grpc_client_conn *c = call->conn;
    if ((call->flags & CALL_HAS_DEADLINE) && c->now_ms() >= call->deadline) {
        status = GRPC_DEADLINE_EXCEEDED;
        msg = ik_strerror(IK_EDEADLINE);
    }
    call_end(call, status, msg);
}

static void call_end_rv(struct grpc_client_call *call, int rv)
{
    const char *msg;
    int status = ik_grpc_status(rv, &msg);
    call_end(call, status, msg);
}

/* Reset the call's stream (if it has one). If nghttp2 cannot even queue
 * that, the connection is beyond repair. */
static void call_reset(struct grpc_client_call *call, uint32_t code)
{
    struct grpc_client_conn *c = call->conn;
    if (!(call->flags & CALL_SUBMITTED)) {
        return;
    }
    if (nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE,
                                  call->stream_id, code) != 0) {
        c->failed = true;
    }
}

/* The core ends a live call by itself and tells the server. */
static void call_abort(struct grpc_client_call *call, int status,
                       const char *msg, uint32_t code)
{
    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    call_end(call, status, msg);
    call_reset(call, code);
}

/*
 * The server ended its side of the stream and the call is over. If our
 * side is still open and the owner never half-closed, nothing would ever
 * end it (the data provider stays parked): reset it with @code.
 */
static void call_release_stream(struct grpc_client_call *call, uint32_t code)
{
    if (!(call->flags & CALL_HALF_CLOSED)) {
        call_reset(call, code);
    }
}

/* Close every live call: the transport is gone. */
static void conn_fail_all(struct grpc_client_conn *c, int status,
                          const char *msg)
{
    struct grpc_client_call *call;

    c->unusable = true;
    /* Callbacks cannot unlink or free calls (see the file comment), and new
     * calls are refused now, so the lists stay walkable. */
    for (call = c->active; call != NULL; call = call->next) {
        call_end(call, status, msg);
    }
    for (call = c->qhead; call != NULL; call = call->next) {
        call_end(call, status, msg);
    }
}

/* ------------------------------------------------------------------------ */
/* Calls: request */

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *data_flags,
                            nghttp2_data_source *source, void *user_data)
{
    struct grpc_client_call *call = source->ptr;
    size_t n = grpc_frame_buf_read(&call->out, buf, length);

    (void)session;
    (void)stream_id;
    (void)user_data;
    if (grpc_frame_buf_pending(&call->out) > 0) {
        return (ssize_t)n;
    }
    if (!(call->flags & CALL_HALF_CLOSED)) {
        if (n > 0) {
            return (ssize_t)n;
        }
        call->flags |= CALL_DEFERRED;
        return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void nv_set(nghttp2_nv *nv, const char *name, const char *value,
                   size_t vlen)
{
    nv->name = (uint8_t *)name;
    nv->namelen = strlen(name);
    nv->value = (uint8_t *)value;
    nv->valuelen = vlen;
    /* Names are literals, values live in the call or the connection, both
     * of which outlive the HEADERS frame. */
    nv->flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
}

/* Submit the request HEADERS (and the data provider). */
static int call_submit(struct grpc_client_call *call)
{
    struct grpc_client_conn *c = call->conn;
    nghttp2_nv stack_nv[NV_STACK];
    nghttp2_nv *nv = stack_nv;
    nghttp2_data_provider prd;
    size_t n = 0, i;
    const char *s;
    int32_t id;

    if (NV_FIXED + call->n_md > NV_STACK) {
        nv = grpc_mem_alloc(c->alloc, (NV_FIXED + call->n_md) * sizeof(*nv));
        if (nv == NULL) {
            return IK_ENOMEM;
        }
    }
    nv_set(&nv[n++], ":method", "POST", 4);
    nv_set(&nv[n++], ":scheme", "http", 4);
    nv_set(&nv[n++], ":path", call->strs, strlen(call->strs));
    nv_set(&nv[n++], ":authority", c->authority, strlen(c->authority));
    nv_set(&nv[n++], "content-type", "application/grpc", 16);
    if (c->user_agent != NULL) {
        nv_set(&nv[n++], "user-agent", c->user_agent, strlen(c->user_agent));
    }
    nv_set(&nv[n++], "te", "trailers", 8);
    if (call->timeout_ms > 0) {
        uint64_t ms = call->timeout_ms;
        if ((call->flags & CALL_HAS_DEADLINE) && c->now_ms != NULL) {
            uint64_t now = c->now_ms();
            ms = call->deadline > now ? call->deadline - now : 1;
        }
        nv_set(&nv[n++], "grpc-timeout", call->tmo,
               grpc_client_timeout_encode(ms, call->tmo));
    }
    s = call->strs + strlen(call->strs) + 1;
    for (i = 0; i < call->n_md; i++) {
        const char *v = s + strlen(s) + 1;
        nv[n].name = (uint8_t *)s;
        nv[n].namelen = strlen(s);
        nv[n].value = (uint8_t *)v;
        nv[n].valuelen = strlen(v);
        nv[n].flags =
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
        n++;
        s = v + strlen(v) + 1;
    }
    prd.source.ptr = call;
    prd.read_callback = data_read_cb;
    id = nghttp2_submit_request(c->session, NULL, nv, n, &prd, call);
    if (nv != stack_nv) {
        grpc_mem_free(c->alloc, nv);
    }
    if (id < 0) {
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            c->unusable = true; /* stream ids exhausted */
            return IK_EIO;
        }
        return IK_ENOMEM;
    }
    call->stream_id = id;
    call->flags |= CALL_SUBMITTED;
    list_append(&c->active, &c->active_tail, call);
    c->n_streams++;
    return 0;
}

/*
 * Free dead queued calls and give waiting calls the streams that became
 * free, in FIFO order. Fires no callback: a queued call whose deadline
 * passed is skipped (grpc_client_conn_tick() ends it, it is due already),
 * and if nghttp2 cannot take a request the call stays queued for the next
 * round. Returns true if a call was submitted.
 */
static bool queue_pump(struct grpc_client_conn *c)
{
    struct grpc_client_call *call, *next;
    uint32_t max;
    uint64_t now = 0;
    bool submitted = false;

    if (c->n_dead > 0) {
        for (call = c->qhead; call != NULL; call = next) {
            next = call->next;
            if (!(call->flags & CALL_LIVE)) {
                list_unlink(&c->qhead, &c->qtail, call);
                c->n_dead--;
                call_free(call);
            }
        }
    }
    if (c->n_queued == 0 || c->unusable) {
        return false;
    }
    max = remote_max_streams(c);
    if (c->now_ms != NULL) {
        now = c->now_ms();
    }
    for (call = c->qhead; call != NULL && c->n_streams < max; call = next) {
        next = call->next;
        if ((call->flags & CALL_HAS_DEADLINE) && call->deadline <= now) {
            continue;
        }
        list_unlink(&c->qhead, &c->qtail, call);
        if (call_submit(call) != 0) {
            /* Back where it was; try again later. */
            if (next != NULL) {
                call->next = next;
                call->prev = next->prev;
                if (next->prev != NULL) {
                    next->prev->next = call;
                } else {
                    c->qhead = call;
                }
                next->prev = call;
            } else {
                list_append(&c->qhead, &c->qtail, call);
            }
            break;
        }
        c->n_queued--;
        submitted = true;
    }
    return submitted;
}

static void conn_enter(struct grpc_client_conn *c)
{
    c->depth++;
}

static void conn_leave(struct grpc_client_conn *c)
{
    if (c->depth == 1 && !c->freeing) {
        queue_pump(c);
    }
    c->depth--;
}

/* May a request message of @len bytes be queued? */
static int call_can_send(const struct grpc_client_call *call, size_t len)
{
    if ((call->flags & (CALL_LIVE | CALL_HALF_CLOSED)) != CALL_LIVE ||
        len > UINT32_MAX) {
        return IK_EINVAL;
    }
    return 0;
}

/* Wake the parked data provider after output was added. */
static void call_resume(struct grpc_client_call *call)
{
    struct grpc_client_conn *c = call->conn;
    if (call->flags & CALL_DEFERRED) {
        call->flags &= ~CALL_DEFERRED;
        if (nghttp2_session_resume_data(c->session, call->stream_id) != 0) {
            /* Out of memory: no callback from here; the next
             * grpc_client_conn_send() fails the connection. */
            c->failed = true;
        }
    }
    signal_write(c);
}

static int pack_into(struct grpc_client_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    int rv = call_can_send(call, len);
    return rv != 0 ? rv : grpc_frame_buf_pack(&call->out, msg, len);
}

static int copy_into(struct grpc_client_call *call, const uint8_t *msg,
                     size_t len)
{
    int rv = call_can_send(call, len);
    return rv != 0 ? rv : grpc_frame_buf_append(&call->out, msg, len);
}

/* ------------------------------------------------------------------------ */
/* Calls: response */

/* One response message (grpc_frame_msg_cb). Returns whether the call is
 * still live. */
static bool deliver(void *ud, const uint8_t *p, size_t n)
{
    struct grpc_client_call *call = ud;
    struct grpc_client_conn *c = call->conn;

    call->n_msgs++;
    if (!(call->flags & CALL_UNARY)) {
        if (call->cbs.on_message != NULL) {
            call->cbs.on_message(call, p, n);
        }
        return (call->flags & CALL_LIVE) != 0;
    }
    if (call->n_msgs > 1) {
        call_abort(call, GRPC_INTERNAL,
                   "grpc: client streaming protocol violation: get <nil>, "
                   "want <EOF>",
                   NGHTTP2_CANCEL);
        return false;
    }
    if (n == 0) {
        return true;
    }
    /* Gathered: take the buffer over; in place: copy it. */
    call->ures = grpc_frame_reader_take(&call->rx, p);
    if (call->ures == NULL) {
        call->ures = grpc_mem_alloc(c->alloc, n);
        if (call->ures == NULL) {
            call_abort(call, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM),
                       NGHTTP2_CANCEL);
            return false;
        }
        memcpy(call->ures, p, n);
    }
    call->ulen = n;
    return true;
}

static void call_recv_data(struct grpc_client_call *call, const uint8_t *p,
                           size_t len)
{
    char msg[160];
    int rv;

    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    rv = grpc_frame_reader_feed(&call->rx, p, len, deliver, call);
    if (rv == 0) {
        return;
    }
    if (rv == IK_ECOMPRESSED) {
        if (call->encoding == NULL || strcmp(call->encoding, "identity") == 0) {
            call_abort(call, GRPC_INTERNAL,
                       "grpc: compressed flag set with identity or empty "
                       "encoding",
                       NGHTTP2_CANCEL);
        } else {
            snprintf(msg, sizeof(msg),
                     "grpc: Decompressor is not installed for grpc-encoding "
                     "\"%.64s\"",
                     call->encoding);
            call_abort(call, GRPC_UNIMPLEMENTED, msg, NGHTTP2_CANCEL);
        }
        return;
    }
    /* IK_EPROTO, IK_EMSGTOOLARGE, IK_ENOMEM: as the server words them. */
    call_abort(call, grpc_frame_reader_status(&call->rx, rv, msg, sizeof(msg)),
               msg, NGHTTP2_CANCEL);
}

/* A response that is not gRPC: grpc-go's "HTTP fallback" status. @end: the
 * header block ended the stream. */
static void end_http_fallback(struct grpc_client_call *call, bool end)
{
    char msg[384];
    size_t n;

    if (call->blk & BLK_HTTP_STATUS) {
        n = (size_t)snprintf(msg, sizeof(msg), "%s: HTTP status code %d",
                             http_status_text(call->http_status),
                             call->http_status);
    } else {
        n = (size_t)snprintf(msg, sizeof(msg),
                             "malformed header: missing HTTP status");
    }
    if (call->bad_ct != NULL) {
        snprintf(msg + n, sizeof(msg) - n,
                 "; transport: received the unexpected content-type "
                 "\"%.200s\"",
                 call->bad_ct);
    } else {
        snprintf(msg + n, sizeof(msg) - n,
                 "; transport: missing content-type field");
    }
    call_end_server(call,
                    (call->blk & BLK_HTTP_STATUS)
                        ? http_to_grpc(call->http_status)
                        : GRPC_INTERNAL,
                    msg);
    if (end) {
        call_release_stream(call, NGHTTP2_PROTOCOL_ERROR);
    } else {
        call_reset(call, NGHTTP2_PROTOCOL_ERROR);
    }
}

/* The server ended the stream with a header block (trailers or a
 * trailers-only response) in gRPC mode. */
static void end_with_status(struct grpc_client_call *call)
{
    char msg[160];

    if (call->blk & BLK_BAD_STATUS) {
        int tmp;
        bool range = parse_status((const uint8_t *)call->bad_status,
                                  strlen(call->bad_status), &tmp) == -2;
        snprintf(msg, sizeof(msg),
                 "transport: malformed grpc-status: strconv.Atoi: parsing "
                 "\"%.64s\": %s",
                 call->bad_status,
                 range ? "value out of range" : "invalid syntax");
        call_end_server(call, GRPC_INTERNAL, msg);
        call_release_stream(call, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (grpc_frame_reader_partial(&call->rx)) {
        call_end_server(call, GRPC_INTERNAL, "unexpected EOF");
    } else if (call->blk & BLK_STATUS) {
        call_end_server(call, call->grpc_status,
                        call->grpc_message != NULL ? call->grpc_message : "");
    } else {
        call_end_server(call, GRPC_UNKNOWN,
                        call->grpc_message != NULL ? call->grpc_message : "");
    }
    /* grpc-go answers RST_STREAM NO_ERROR too when it is still sending. */
    call_release_stream(call, NGHTTP2_NO_ERROR);
}

/* ------------------------------------------------------------------------ */
/* nghttp2 callbacks */

static struct grpc_client_call *stream_call(nghttp2_session *session,
                                            int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
    struct grpc_client_conn *c = user_data;
    struct grpc_client_call *call;

    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    call->blk = 0;
    call->http_status = 0;
    call->grpc_status = 0;
    grpc_mem_free(c->alloc, call->grpc_message);
    grpc_mem_free(c->alloc, call->bad_ct);
    grpc_mem_free(c->alloc, call->bad_status);
    call->grpc_message = call->bad_ct = call->bad_status = NULL;
    return 0;
}

static int header_nomem(struct grpc_client_call *call)
{
    call->flags |= CALL_NOMEM;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
    struct grpc_client_conn *c = user_data;
    struct grpc_client_call *call;

    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || !(call->flags & CALL_LIVE)) {
        return 0;
    }
    if (grpc_bytes_eq(name, namelen, ":status")) {
        int st;
        if (parse_status(value, valuelen, &st) == 0) {
            call->http_status = st;
            call->blk |= BLK_HTTP_STATUS;
        }
    } else if (grpc_bytes_eq(name, namelen, "content-type")) {
        if (grpc_is_content_type(value, valuelen)) {
            call->blk |= BLK_CT_GRPC;
        } else if (call->bad_ct == NULL) {
            call->bad_ct = grpc_mem_strndup(c->alloc, value, valuelen);
            if (call->bad_ct == NULL) {
                return header_nomem(call);
            }
        }
    } else if (grpc_bytes_eq(name, namelen, "grpc-status")) {
        if (parse_status(value, valuelen, &call->grpc_status) == 0) {
            call->blk = (call->blk | BLK_STATUS) & ~BLK_BAD_STATUS;
        } else {
            grpc_mem_free(c->alloc, call->bad_status);
            call->bad_status = grpc_mem_strndup(c->alloc, value, valuelen);
            if (call->bad_status == NULL) {
                return header_nomem(call);
            }
            call->blk = (call->blk | BLK_BAD_STATUS) & ~BLK_STATUS;
        }
    } else if (grpc_bytes_eq(name, namelen, "grpc-message")) {
        grpc_mem_free(c->alloc, call->grpc_message);
        call->grpc_message = grpc_mem_alloc(c->alloc, valuelen + 1);
        if (call->grpc_message == NULL) {
            return header_nomem(call);
        }
        grpc_client_percent_decode((const char *)value, valuelen,
                                   call->grpc_message);
    } else if (grpc_bytes_eq(name, namelen, "grpc-encoding") &&
               !(call->flags & CALL_GOT_HEADERS)) {
        grpc_mem_free(c->alloc, call->encoding);
        call->encoding = grpc_mem_strndup(c->alloc, value, valuelen);
        if (call->encoding == NULL) {
            return header_nomem(call);
        }
    }
    return 0;
}

static void on_goaway(struct grpc_client_conn *c)
{
    struct grpc_client_call *call;

    c->goaway = true;
    c->unusable = true;
    /* Calls still waiting for a stream will never get one here. Streams
     * above the last stream id are closed by nghttp2 (REFUSED_STREAM). */
    for (call = c->qhead; call != NULL; call = call->next) {
        call_end(call, GRPC_UNAVAILABLE, MSG_DRAINING);
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct grpc_client_conn *c = user_data;
    struct grpc_client_call *call;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (frame->hd.type == NGHTTP2_GOAWAY) {
        on_goaway(c);
        return 0;
    }
    if (frame->hd.stream_id == 0) {
        return 0;
    }
    call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || !(call->flags & CALL_LIVE)) {
        return 0;
    }
    switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM: {
        uint32_t code = frame->rst_stream.error_code;
        const char *name = h2_error_name(code);
        char msg[96];
        if (name != NULL) {
            snprintf(msg, sizeof(msg),
                     "stream terminated by RST_STREAM with error code: %s",
                     name);
        } else {
            snprintf(msg, sizeof(msg),
                     "stream terminated by RST_STREAM with error code: "
                     "unknown error code 0x%x",
                     (unsigned)code);
        }
        call_end_server(call, h2_error_status(code), msg);
        break;
    }
    case NGHTTP2_HEADERS:
        if (!(call->flags & CALL_GOT_HEADERS)) {
            call->flags |= CALL_GOT_HEADERS;
            if (!(call->blk & BLK_CT_GRPC)) {
                end_http_fallback(call, end);
                break;
            }
            call->flags |= CALL_GRPC;
        }
        if (end) {
            end_with_status(call);
        }
        break;
    case NGHTTP2_DATA:
        if (end) {
            call_end_server(
                call, GRPC_INTERNAL,
                "server closed the stream without sending trailers");
            call_release_stream(call, NGHTTP2_NO_ERROR);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags,
                              int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
    struct grpc_client_call *call = stream_call(session, stream_id);

    (void)flags;
    (void)user_data;
    if (call != NULL && (call->flags & CALL_GRPC)) {
        call_recv_data(call, data, len);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
    struct grpc_client_conn *c = user_data;
    struct grpc_client_call *call;

    if (c->freeing) {
        return 0;
    }
    call = stream_call(session, stream_id);
    if (call == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    c->n_streams--;
    if (call->flags & CALL_LIVE) {
        /* Closed without a frame from the server telling why: refused
         * after GOAWAY, or reset by nghttp2 itself. */
        if (call->flags & CALL_NOMEM) {
            call_end_rv(call, IK_ENOMEM);
        } else if (c->goaway && error_code == NGHTTP2_REFUSED_STREAM) {
            call_end(call, GRPC_UNAVAILABLE, MSG_DRAINING);
        } else {
            const char *name = h2_error_name(error_code);
            char msg[96];
            snprintf(msg, sizeof(msg),
                     "stream terminated by RST_STREAM with error code: %s",
                     name != NULL ? name : "unknown");
            call_end(call, h2_error_status(error_code), msg);
        }
    }
    list_unlink(&c->active, &c->active_tail, call);
    call_free(call);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connection */

static int conn_setup(struct grpc_client_conn *c)
{
    nghttp2_session_callbacks *cbs;
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
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
    rv = nghttp2_session_client_new3(&c->session, cbs, c, NULL,
                                     c->alloc != NULL ? &c->mem : NULL);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        c->session = NULL;
        return IK_ENOMEM;
    }
    iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
    iv[0].value = 0;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = STREAM_WINDOW;
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              CONN_WINDOW) != 0) {
        return IK_ENOMEM;
    }
    return 0;
}

static void conn_release(struct grpc_client_conn *c)
{
    if (c->session != NULL) {
        nghttp2_session_del(c->session);
    }
    grpc_mem_free(c->alloc, c->authority);
    grpc_mem_free(c->alloc, c->user_agent);
    grpc_mem_free(c->alloc, c);
}

int grpc_client_conn_new(const struct grpc_client_config *cfg, void *conn_data,
                         struct grpc_client_conn **out)
{
    struct grpc_client_conn *c = grpc_mem_calloc(cfg->alloc, 1, sizeof(*c));
    const char *auth = cfg->authority != NULL ? cfg->authority : "localhost";
    int rv;

    if (c == NULL) {
        return IK_ENOMEM;
    }
    c->alloc = cfg->alloc;
    c->data = conn_data;
    c->now_ms = cfg->now_ms;
    c->on_want_write = cfg->on_want_write;
    c->next_deadline = UINT64_MAX;
    c->max_recv = cfg->max_recv_msg_size != 0 ? cfg->max_recv_msg_size
                                              : GRPC_CLIENT_DEFAULT_MAX_RECV;
    if (c->alloc != NULL) {
        grpc_mem_nghttp2(c->alloc, &c->mem);
    }
    c->authority = grpc_mem_strndup(c->alloc, auth, strlen(auth));
    rv = c->authority != NULL ? 0 : IK_ENOMEM;
    if (rv == 0 && cfg->user_agent != NULL) {
        c->user_agent = grpc_mem_strndup(c->alloc, cfg->user_agent,
                                         strlen(cfg->user_agent));
        rv = c->user_agent != NULL ? 0 : IK_ENOMEM;
    }
    if (rv == 0) {
        rv = conn_setup(c);
    }
    if (rv != 0) {
        conn_release(c);
        return rv;
    }
    *out = c;
    return 0;
}

int grpc_client_conn_recv(struct grpc_client_conn *c, const uint8_t *data,
                          size_t len)
{
    ssize_t rv;

    if (c->depth > 0) {
        return IK_EINVAL;
    }
    if (c->error != 0) {
        return c->error;
    }
    if (c->failed) {
        return IK_EPROTO;
    }
    conn_enter(c);
    rv = nghttp2_session_mem_recv(c->session, data, len);
    if (rv >= 0 && !c->goaway &&
        !nghttp2_session_check_request_allowed(c->session) &&
        nghttp2_session_get_next_stream_id(c->session) <= INT32_MAX) {
        /* Most connection errors (a frame that is not SETTINGS first,
         * a bad frame size...) do not fail mem_recv: nghttp2 queues a
         * GOAWAY and ignores the rest. Nothing will answer our calls. */
        rv = NGHTTP2_ERR_PROTO;
    }
    if (rv < 0 || c->failed) {
        c->error = rv == NGHTTP2_ERR_NOMEM || c->failed ? IK_ENOMEM : IK_EPROTO;
        /* Most errors already queued a GOAWAY; make sure one is. */
        nghttp2_session_terminate_session(
            c->session, c->error == IK_ENOMEM ? NGHTTP2_INTERNAL_ERROR
                                              : NGHTTP2_PROTOCOL_ERROR);
        conn_fail_all(c, GRPC_UNAVAILABLE, MSG_CLOSING);
    }
    conn_leave(c);
    return c->error;
}

ssize_t grpc_client_conn_send(struct grpc_client_conn *c, const uint8_t **data)
{
    ssize_t n;

    if (c->failed) {
        return -1;
    }
    if (c->depth > 0) {
        return 0;
    }
    conn_enter(c);
    queue_pump(c);
    n = nghttp2_session_mem_send(c->session, data);
    /* Sending may close streams (RST_STREAM, END_STREAM), which frees
     * room for waiting calls. */
    if (n == 0 && queue_pump(c)) {
        n = nghttp2_session_mem_send(c->session, data);
    }
    if (n < 0 || c->failed) {
        c->failed = true;
        conn_fail_all(c, GRPC_UNAVAILABLE, MSG_CLOSING);
    }
    conn_leave(c);
    if (c->failed) {
        return -1;
    }
    if (n == 0) {
        c->signalled = false;
    }
    return n;
}

void grpc_client_conn_tick(struct grpc_client_conn *c)
{
    struct grpc_client_call *lists[2], *call;
    uint64_t now, next = UINT64_MAX;
    int i;

    if (c->depth > 0 || c->next_deadline == UINT64_MAX || c->now_ms == NULL) {
        return;
    }
    now = c->now_ms();
    if (now < c->next_deadline) {
        return;
    }
    conn_enter(c);
    /* Calls started by the callbacks below lower it again. */
    c->next_deadline = UINT64_MAX;
    lists[0] = c->active;
    lists[1] = c->qhead;
    for (i = 0; i < 2; i++) {
        for (call = lists[i]; call != NULL; call = call->next) {
            if ((call->flags & (CALL_LIVE | CALL_HAS_DEADLINE)) !=
                (CALL_LIVE | CALL_HAS_DEADLINE)) {
                continue;
            }
            if (call->deadline <= now) {
                call_abort(call, GRPC_DEADLINE_EXCEEDED,
                           ik_strerror(IK_EDEADLINE), NGHTTP2_CANCEL);
            } else if (call->deadline < next) {
                next = call->deadline;
            }
        }
    }
    if (next < c->next_deadline) {
        c->next_deadline = next;
    }
    conn_leave(c);
    if (nghttp2_session_want_write(c->session) || c->failed) {
        signal_write(c);
    }
}

uint64_t grpc_client_conn_next_deadline(const struct grpc_client_conn *c)
{
    return c->next_deadline;
}

bool grpc_client_conn_is_usable(const struct grpc_client_conn *c)
{
    return !c->unusable && !c->failed && c->error == 0;
}

bool grpc_client_conn_want_close(const struct grpc_client_conn *c)
{
    if (c->failed) {
        return true;
    }
    if (!c->unusable || nghttp2_session_want_write(c->session)) {
        return false;
    }
    return c->n_streams == 0 || !nghttp2_session_want_read(c->session);
}

void grpc_client_conn_fail(struct grpc_client_conn *c, int status,
                           const char *message)
{
    if (c->depth > 0) {
        return;
    }
    conn_enter(c);
    conn_fail_all(c, status, message);
    conn_leave(c);
}

void grpc_client_conn_free(struct grpc_client_conn *c)
{
    struct grpc_client_call *call, *next;

    if (c == NULL) {
        return;
    }
    conn_enter(c);
    conn_fail_all(c, GRPC_UNAVAILABLE, MSG_CLOSING);
    c->freeing = true;
    nghttp2_session_del(c->session);
    c->session = NULL;
    for (call = c->active; call != NULL; call = next) {
        next = call->next;
        call_free(call);
    }
    for (call = c->qhead; call != NULL; call = next) {
        next = call->next;
        call_free(call);
    }
    conn_release(c);
}

void *grpc_client_conn_data(const struct grpc_client_conn *c)
{
    return c->data;
}

size_t grpc_client_conn_live_calls(const struct grpc_client_conn *c)
{
    return c->n_live;
}

size_t grpc_client_conn_queued_calls(const struct grpc_client_conn *c)
{
    return c->n_queued;
}

/* ------------------------------------------------------------------------ */
/* Calls: public */

static bool valid_path(const char *path)
{
    const char *p;
    if (path == NULL || path[0] != '/') {
        return false;
    }
    for (p = path; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool valid_md_name(const char *name)
{
    static const char *const reserved[] = {
        "content-type",      "te",
        "user-agent",        "grpc-timeout",
        "grpc-encoding",     "grpc-accept-encoding",
        "grpc-status",       "grpc-message",
        "connection",        "host",
        "keep-alive",        "proxy-connection",
        "transfer-encoding", "upgrade"};
    const char *p;
    size_t i;

    if (name == NULL || name[0] == '\0') {
        return false;
    }
    for (p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.')) {
            return false;
        }
    }
    for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcmp(name, reserved[i]) == 0) {
            return false;
        }
    }
    return true;
}

static bool valid_md_value(const char *value)
{
    const char *p;
    if (value == NULL) {
        return false;
    }
    for (p = value; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            return false;
        }
    }
    return true;
}

/* Allocate a call with its strings; not linked anywhere yet. */
static int call_new(struct grpc_client_conn *c, const char *path,
                    uint64_t timeout_ms, const struct grpc_client_md *md,
                    size_t n_md, struct grpc_client_call **out)
{
    struct grpc_client_call *call;
    size_t size, plen, i;
    char *s;

    if (!valid_path(path) || (md == NULL && n_md > 0)) {
        return IK_EINVAL;
    }
    plen = strlen(path);
    size = plen + 1;
    for (i = 0; i < n_md; i++) {
        if (!valid_md_name(md[i].name) || !valid_md_value(md[i].value)) {
            return IK_EINVAL;
        }
        size += strlen(md[i].name) + strlen(md[i].value) + 2;
    }
    if (!grpc_client_conn_is_usable(c)) {
        return IK_EIO;
    }
    call = grpc_mem_calloc(c->alloc, 1, sizeof(*call) + size);
    if (call == NULL) {
        return IK_ENOMEM;
    }
    call->conn = c;
    grpc_frame_buf_init(&call->out, c->alloc);
    grpc_frame_reader_init(&call->rx, c->alloc, c->max_recv);
    call->timeout_ms = timeout_ms;
    call->n_md = n_md;
    s = call->strs;
    memcpy(s, path, plen + 1);
    s += plen + 1;
    for (i = 0; i < n_md; i++) {
        size_t nl = strlen(md[i].name) + 1;
        size_t vl = strlen(md[i].value) + 1;
        memcpy(s, md[i].name, nl);
        memcpy(s + nl, md[i].value, vl);
        s += nl + vl;
    }
    *out = call;
    return 0;
}

/* Make the call live and submit it, or queue it behind others. On error
 * the call is untouched (not linked, not live) and the caller frees it. */
static int call_launch(struct grpc_client_call *call)
{
    struct grpc_client_conn *c = call->conn;
    int rv;

    if (call->timeout_ms > 0 && c->now_ms != NULL) {
        uint64_t now = c->now_ms();
        call->deadline = call->timeout_ms > UINT64_MAX - 1 - now
                             ? UINT64_MAX - 1
                             : now + call->timeout_ms;
        call->flags |= CALL_HAS_DEADLINE;
    }
    if (c->n_queued == 0 && !c->unusable &&
        c->n_streams < remote_max_streams(c)) {
        rv = call_submit(call);
        if (rv != 0) {
            return rv;
        }
    } else {
        list_append(&c->qhead, &c->qtail, call);
        c->n_queued++;
    }
    call->flags |= CALL_LIVE;
    c->n_live++;
    if ((call->flags & CALL_HAS_DEADLINE) &&
        call->deadline < c->next_deadline) {
        c->next_deadline = call->deadline;
    }
    return 0;
}

int grpc_client_call_start(struct grpc_client_conn *c, const char *path,
                           uint64_t timeout_ms, const struct grpc_client_md *md,
                           size_t n_md, const struct grpc_client_call_cbs *cbs,
                           void *data, struct grpc_client_call **out)
{
    struct grpc_client_call *call;
    int rv;

    if (cbs == NULL || cbs->on_close == NULL || out == NULL) {
        return IK_EINVAL;
    }
    rv = call_new(c, path, timeout_ms, md, n_md, &call);
    if (rv != 0) {
        return rv;
    }
    call->cbs = *cbs;
    call->data = data;
    conn_enter(c);
    rv = call_launch(call);
    conn_leave(c);
    if (rv != 0) {
        call_free(call);
        return rv;
    }
    *out = call;
    signal_write(c);
    return 0;
}

static int unary_start(struct grpc_client_conn *c, const char *path,
                       const ProtobufCMessage *req, const uint8_t *bytes,
                       size_t len, uint64_t timeout_ms,
                       const struct grpc_client_md *md, size_t n_md,
                       grpc_client_unary_cb cb, void *data,
                       struct grpc_client_call **out)
{
    struct grpc_client_call *call;
    int rv;

    if (cb == NULL || (req == NULL && bytes == NULL && len > 0)) {
        return IK_EINVAL;
    }
    rv = call_new(c, path, timeout_ms, md, n_md, &call);
    if (rv != 0) {
        return rv;
    }
    call->unary_cb = cb;
    call->data = data;
    call->flags |= CALL_UNARY | CALL_LIVE; /* LIVE for call_frame() only */
    rv = req != NULL ? pack_into(call, req) : copy_into(call, bytes, len);
    call->flags = (call->flags & ~CALL_LIVE) | CALL_HALF_CLOSED;
    if (rv == 0) {
        conn_enter(c);
        rv = call_launch(call);
        conn_leave(c);
    }
    if (rv != 0) {
        call_free(call);
        return rv;
    }
    if (out != NULL) {
        *out = call;
    }
    signal_write(c);
    return 0;
}

int grpc_client_unary(struct grpc_client_conn *c, const char *path,
                      const ProtobufCMessage *req, uint64_t timeout_ms,
                      const struct grpc_client_md *md, size_t n_md,
                      grpc_client_unary_cb cb, void *data,
                      struct grpc_client_call **out)
{
    if (req == NULL) {
        return IK_EINVAL;
    }
    return unary_start(c, path, req, NULL, 0, timeout_ms, md, n_md, cb, data,
                       out);
}

int grpc_client_unary_bytes(struct grpc_client_conn *c, const char *path,
                            const uint8_t *req, size_t len, uint64_t timeout_ms,
                            const struct grpc_client_md *md, size_t n_md,
                            grpc_client_unary_cb cb, void *data,
                            struct grpc_client_call **out)
{
    return unary_start(c, path, NULL, req != NULL ? req : (const uint8_t *)"",
                       len, timeout_ms, md, n_md, cb, data, out);
}

int grpc_client_call_send(struct grpc_client_call *call, const uint8_t *msg,
                          size_t len)
{
    int rv = copy_into(call, msg, len);
    if (rv == 0) {
        call_resume(call);
    }
    return rv;
}

int grpc_client_call_send_proto(struct grpc_client_call *call,
                                const ProtobufCMessage *msg)
{
    int rv = pack_into(call, msg);
    if (rv == 0) {
        call_resume(call);
    }
    return rv;
}

int grpc_client_call_close_send(struct grpc_client_call *call)
{
    if (!(call->flags & CALL_LIVE)) {
        return IK_EINVAL;
    }
    if (!(call->flags & CALL_HALF_CLOSED)) {
        call->flags |= CALL_HALF_CLOSED;
        call_resume(call);
    }
    return 0;
}

void grpc_client_call_cancel(struct grpc_client_call *call)
{
    struct grpc_client_conn *c = call->conn;

    if (!(call->flags & CALL_LIVE)) {
        return;
    }
    conn_enter(c);
    call->flags &= ~CALL_LIVE;
    c->n_live--;
    if (call->flags & CALL_SUBMITTED) {
        call_reset(call, NGHTTP2_CANCEL);
    } else {
        c->n_queued--;
        c->n_dead++;
    }
    conn_leave(c);
    signal_write(c);
}

size_t grpc_client_call_pending_bytes(const struct grpc_client_call *call)
{
    return grpc_frame_buf_pending(&call->out);
}

void *grpc_client_call_data(const struct grpc_client_call *call)
{
    return call->data;
}

struct grpc_client_conn *
grpc_client_call_conn(const struct grpc_client_call *call)
{
    return call->conn;
}

int32_t grpc_client_call_stream_id(const struct grpc_client_call *call)
{
    return call->stream_id;
}
