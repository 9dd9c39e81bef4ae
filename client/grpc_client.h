/*
 * grpc_client: the client side of gRPC over cleartext HTTP/2 (h2c with prior
 * knowledge, what etcd's http:// endpoints speak), as a protocol core.
 *
 * No I/O here: the owner feeds the bytes it read from the socket with
 * grpc_client_conn_recv() and writes what grpc_client_conn_send() hands out.
 * HTTP/2 framing, HPACK, flow control and PING answers are nghttp2's (a
 * client session driven through mem_recv/mem_send); this module adds the
 * gRPC layer: request headers, grpc-timeout and client-side deadlines, the
 * 5-byte length-prefixed message framing, response/trailer decoding and the
 * mapping of transport events to a final status, modelled on grpc-go 1.33
 * (what etcd 3.4's etcdctl is built with).
 *
 * Many calls share one connection, each on its own HTTP/2 stream. Calls
 * beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until the
 * server's SETTINGS arrive) wait in a FIFO inside the connection and start
 * as earlier streams close.
 *
 * Threading: none. A connection and its calls belong to one thread;
 * callbacks run inside grpc_client_conn_recv(), grpc_client_conn_tick(),
 * grpc_client_conn_fail()/free(), or right where noted.
 *
 * Call lifetime: grpc_client_call_start() returns a call that is "live"
 * until exactly one of:
 *  - on_close fires (trailers, a trailers-only response, RST_STREAM from the
 *    server, GOAWAY, the connection failing or being freed, the client-side
 *    deadline, or a response the core rejects). The call pointer is invalid
 *    once on_close returns.
 *  - the owner calls grpc_client_call_cancel(): no callback follows, the
 *    pointer is invalid once it returns.
 * on_close never fires from inside grpc_client_call_start() (nor from any
 * other function that returns an error).
 *
 * Final status when the server gives none, as grpc-go reports it:
 *  - response not gRPC (content-type missing or other than
 *    application/grpc[+...|;...]): the status from the HTTP status (400
 *    INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
 *    UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, other UNKNOWN; no :status
 *    INTERNAL), message e.g. "Service Unavailable: HTTP status code 503;
 *    transport: received the unexpected content-type \"text/html\"".
 *  - trailers without grpc-status: UNKNOWN, empty message; a malformed
 *    grpc-status: INTERNAL "transport: malformed grpc-status: ...".
 *  - RST_STREAM from the server: the HTTP/2 code mapped (CANCEL -> CANCELLED,
 *    REFUSED_STREAM -> UNAVAILABLE, FLOW_CONTROL_ERROR/ENHANCE_YOUR_CALM ->
 *    RESOURCE_EXHAUSTED, INADEQUATE_SECURITY -> PERMISSION_DENIED, others
 *    INTERNAL), message "stream terminated by RST_STREAM with error code:
 *    CANCEL".
 *  - GOAWAY: calls on streams the server will not process, and calls still
 *    waiting for a stream: UNAVAILABLE "the connection is draining".
 *  - DATA with END_STREAM and no trailers: INTERNAL "server closed the
 *    stream without sending trailers"; stream ended inside a message:
 *    INTERNAL "unexpected EOF".
 *  - a response message over max_recv_msg_size: RESOURCE_EXHAUSTED "grpc:
 *    received message larger than max (N vs. M)"; compressed flag set:
 *    INTERNAL "grpc: compressed flag set with identity or empty encoding"
 *    (or UNIMPLEMENTED "grpc: Decompressor is not installed for
 *    grpc-encoding \"gzip\"" when the server announced one).
 *  - deadline: DEADLINE_EXCEEDED "context deadline exceeded". This also
 *    replaces whatever status the server sends once the call's deadline has
 *    passed (e.g. its own grpc-timeout expiring a hair before our timer),
 *    as grpc-go's client, whose context expires first, reports it.
 *  - connection lost/freed: UNAVAILABLE "transport is closing".
 * When the core ends a call on its own it resets the stream (RST_STREAM
 * CANCEL, or PROTOCOL_ERROR for a non-gRPC response). When the server ends a
 * stream the client has not half-closed, the client answers RST_STREAM
 * NO_ERROR, as grpc-go does.
 */
#ifndef IKADA_GRPC_CLIENT_H
#define IKADA_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "server/grpc.h" /* struct grpc_allocator */

struct grpc_client_conn;
struct grpc_client_call;

/* Default largest response message (grpc-go's client default). etcd's
 * clientv3, hence etcdctl, raises it to INT32_MAX. */
#define GRPC_CLIENT_DEFAULT_MAX_RECV (4u << 20)

struct grpc_client_config {
    /* :authority of every request, e.g. "127.0.0.1:2379" (copied). NULL:
     * "localhost". */
    const char *authority;
    /* user-agent header, or NULL for none (copied). */
    const char *user_agent;
    /* Largest response message accepted; 0: GRPC_CLIENT_DEFAULT_MAX_RECV. */
    size_t max_recv_msg_size;
    /* Monotonic clock in milliseconds. NULL: calls with a timeout still send
     * grpc-timeout (so the server enforces it) but the client never expires
     * them itself. */
    uint64_t (*now_ms)(void);
    /* Output became pending, or a call was started, outside
     * grpc_client_conn_recv()/grpc_client_conn_send() (by the owner, or by
     * grpc_client_conn_tick() after its callbacks): the owner should call
     * grpc_client_conn_send() soon and re-read
     * grpc_client_conn_next_deadline(). Fires at most once until
     * grpc_client_conn_send() next returns 0, and never from inside recv(),
     * send(), a callback, fail() or free(); after recv() the owner flushes
     * anyway. Optional. */
    void (*on_want_write)(struct grpc_client_conn *conn, void *conn_data);
    /* Memory for the connection, its calls and nghttp2. NULL: libc. */
    const struct grpc_allocator *alloc;
};

struct grpc_client_call_cbs {
    /* One complete response message. @data (without the 5-byte prefix) is
     * valid only during the callback. The callback may cancel this or any
     * call, start calls and send on calls. Optional. */
    void (*on_message)(struct grpc_client_call *call, const uint8_t *data,
                       size_t len);
    /* The call is over: @status is a gRPC status code (enum grpc_status,
     * GRPC_OK on success) and @message the decoded grpc-message ("" when
     * none, never NULL; valid during the callback). Fires exactly once
     * unless the call was cancelled. Required. */
    void (*on_close)(struct grpc_client_call *call, int status,
                     const char *message);
};

/* One item of request metadata. @name: lowercase [0-9a-z_.-], not a
 * pseudo-header, not a header the core sets itself; @value: printable
 * ASCII. */
struct grpc_client_md {
    const char *name;
    const char *value;
};

/*
 * Result of grpc_client_unary(): @message as in on_close; on GRPC_OK @resp
 * holds the one response message (valid during the callback only; may be
 * empty), otherwise @resp is NULL and @len 0. A unary call whose server
 * sends no message but OK ends UNKNOWN "EOF"; one that sends two ends
 * INTERNAL "grpc: client streaming protocol violation: get <nil>, want
 * <EOF>" (both as grpc-go).
 */
typedef void (*grpc_client_unary_cb)(void *data, int status,
                                     const char *message, const uint8_t *resp,
                                     size_t len);

/*
 * Create a client connection. @cfg is copied (strings too); cfg->alloc must
 * outlive the connection. Returns 0 or IK_ENOMEM (nothing allocated then).
 * The HTTP/2 client preface and SETTINGS (push disabled, 4 MiB stream
 * window) plus a WINDOW_UPDATE raising the connection window to 16 MiB are
 * queued for grpc_client_conn_send().
 */
int grpc_client_conn_new(const struct grpc_client_config *cfg, void *conn_data,
                         struct grpc_client_conn **out);

/*
 * Feed @len bytes received from the server (all are consumed). Callbacks
 * run inside. Returns 0; IK_EPROTO when the server broke HTTP/2, or
 * IK_ENOMEM: then every live call has been closed with UNAVAILABLE
 * "transport is closing", a GOAWAY is queued, and the owner should flush
 * grpc_client_conn_send() and free the connection; later calls return the
 * same error. IK_EINVAL if called from inside a callback.
 */
int grpc_client_conn_recv(struct grpc_client_conn *c, const uint8_t *data,
                          size_t len);

/*
 * Next chunk of bytes to write to the server; returns its length, 0 when
 * nothing is pending, or -1 on a fatal error (then every live call has been
 * closed with UNAVAILABLE "transport is closing"; free the connection).
 * *data stays valid until the next call on the connection. Chunks can be
 * small: gather them into one write. Returns 0 from inside a callback.
 */
ssize_t grpc_client_conn_send(struct grpc_client_conn *c, const uint8_t **data);

/* Expire calls whose deadline passed (on_close DEADLINE_EXCEEDED "context
 * deadline exceeded", RST_STREAM CANCEL to the server if the request went
 * out; a call still waiting for a stream when its deadline passes is never
 * sent and is ended here too). Cheap when nothing is due. No-op from inside
 * a callback. */
void grpc_client_conn_tick(struct grpc_client_conn *c);

/* The earliest deadline of a live call on the cfg->now_ms clock, or
 * UINT64_MAX if none (may be early: grpc_client_conn_tick() then just
 * recomputes it). */
uint64_t grpc_client_conn_next_deadline(const struct grpc_client_conn *c);

/* False once the connection will not take new calls: GOAWAY received, a
 * fatal error, or grpc_client_conn_fail() called. */
bool grpc_client_conn_is_usable(const struct grpc_client_conn *c);

/* True when the connection has nothing more to do and should be closed:
 * unusable, no stream left, and no output pending. */
bool grpc_client_conn_want_close(const struct grpc_client_conn *c);

/*
 * The transport is gone (or never came up): close every live call with
 * @status and @message (NULL: ""), e.g. UNAVAILABLE "connection error: desc
 * = \"transport: Error while dialing ...\"". The connection becomes
 * unusable; free it afterwards. Callbacks run inside; they cannot start
 * calls on this connection. No-op from inside a callback.
 */
void grpc_client_conn_fail(struct grpc_client_conn *c, int status,
                           const char *message);

/* Free the connection: live calls are closed with UNAVAILABLE "transport is
 * closing" first, then all memory is released. Must not be called from
 * inside a callback. NULL is a no-op. */
void grpc_client_conn_free(struct grpc_client_conn *c);

void *grpc_client_conn_data(const struct grpc_client_conn *c);

/* Live calls (started, neither closed nor cancelled), and how many of them
 * still wait for a stream. */
size_t grpc_client_conn_live_calls(const struct grpc_client_conn *c);
size_t grpc_client_conn_queued_calls(const struct grpc_client_conn *c);

/*
 * Start a call of method @path ("/etcdserverpb.KV/Range"; copied). The
 * request HEADERS carry :method POST, :scheme http, :path, :authority,
 * content-type application/grpc, te trailers, user-agent if configured,
 * grpc-timeout when @timeout_ms > 0 (the deadline also runs on the client,
 * see cfg->now_ms), then the @n_md items of @md (copied; @md may be NULL
 * when @n_md is 0). @cbs is copied. Messages are sent with
 * grpc_client_call_send*() and the request ends with
 * grpc_client_call_close_send().
 * Returns 0 and the call in *out, IK_EINVAL (bad path or metadata), IK_EIO
 * (connection unusable, see grpc_client_conn_is_usable()) or IK_ENOMEM. No
 * callback fires for a call that failed to start.
 */
int grpc_client_call_start(struct grpc_client_conn *c, const char *path,
                           uint64_t timeout_ms, const struct grpc_client_md *md,
                           size_t n_md, const struct grpc_client_call_cbs *cbs,
                           void *data, struct grpc_client_call **out);

/*
 * Queue one request message (copied, framed with the 5-byte prefix).
 * Returns 0, IK_ENOMEM, or IK_EINVAL if the call is not live, was
 * half-closed, or @len does not fit the 32-bit prefix.
 */
int grpc_client_call_send(struct grpc_client_call *call, const uint8_t *msg,
                          size_t len);

/* Pack @msg straight into the outgoing buffer (no intermediate copy) and
 * queue it. Same returns as grpc_client_call_send(). */
int grpc_client_call_send_proto(struct grpc_client_call *call,
                                const ProtobufCMessage *msg);

/* Half-close: END_STREAM goes out after the queued messages. Returns 0 or
 * IK_EINVAL (not live). Idempotent. */
int grpc_client_call_close_send(struct grpc_client_call *call);

/* Cancel a live call: RST_STREAM CANCEL to the server (if its stream was
 * opened), no callback fires afterwards, the pointer is invalid on return.
 * No-op on a call whose on_close is running. */
void grpc_client_call_cancel(struct grpc_client_call *call);

/* Request bytes queued on this call and not yet handed to nghttp2:
 * backpressure for streaming senders. */
size_t grpc_client_call_pending_bytes(const struct grpc_client_call *call);

void *grpc_client_call_data(const struct grpc_client_call *call);
struct grpc_client_conn *
grpc_client_call_conn(const struct grpc_client_call *call);
/* HTTP/2 stream id, or 0 while the call waits for a stream. */
int32_t grpc_client_call_stream_id(const struct grpc_client_call *call);

/*
 * Unary helper: start a call, send @req packed (or the @len raw bytes of
 * grpc_client_unary_bytes()), half-close, and call @cb exactly once with
 * the outcome (never from inside this function when it returns an error;
 * never after grpc_client_call_cancel()). @out may be NULL; otherwise it
 * receives the call so the owner can cancel it. Returns as
 * grpc_client_call_start().
 */
int grpc_client_unary(struct grpc_client_conn *c, const char *path,
                      const ProtobufCMessage *req, uint64_t timeout_ms,
                      const struct grpc_client_md *md, size_t n_md,
                      grpc_client_unary_cb cb, void *data,
                      struct grpc_client_call **out);
int grpc_client_unary_bytes(struct grpc_client_conn *c, const char *path,
                            const uint8_t *req, size_t len, uint64_t timeout_ms,
                            const struct grpc_client_md *md, size_t n_md,
                            grpc_client_unary_cb cb, void *data,
                            struct grpc_client_call **out);

/*
 * Encode @ms as a grpc-timeout value (the largest precision that fits 8
 * digits: "1500m", "100000S", ...) into @out (at least 12 bytes),
 * NUL-terminated. Returns its length.
 */
size_t grpc_client_timeout_encode(uint64_t ms, char *out);

/*
 * Decode a grpc-message value: "%XX" with two hex digits becomes that
 * byte, anything else is copied as is (grpc-go's rules). @out needs @len+1
 * bytes; the result is NUL-terminated. Returns its length.
 */
size_t grpc_client_percent_decode(const char *in, size_t len, char *out);

#endif /* IKADA_GRPC_CLIENT_H */
