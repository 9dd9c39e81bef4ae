/*
 * grpc: the server side of gRPC over cleartext HTTP/2 ("h2c" with prior
 * knowledge, what etcd's http:// client URLs speak), as a protocol core.
 *
 * No I/O here: the caller feeds the bytes it read from a socket with
 * grpc_conn_recv() and writes what grpc_conn_send() hands out. HTTP/2
 * framing, HPACK, flow control and PING are nghttp2's; this module adds the
 * gRPC layer: method dispatch on :path, the 5-byte length-prefixed message
 * framing, grpc-timeout deadlines, grpc-encoding checks, and the
 * grpc-status/grpc-message trailers.
 *
 * Threading: none. A connection and its calls belong to one thread (the
 * server's event loop); handlers run inside grpc_conn_recv()/grpc_conn_tick()
 * or whenever the owner calls grpc_call_*().
 *
 * Call lifetime: a call is created when a request's HEADERS arrive for a
 * known method and lives until either
 *  - the handler calls grpc_call_finish() (no callback follows), or
 *  - on_cancel fires: the client reset the stream, the deadline passed, the
 *    core rejected a message (see below), or the connection is freed. The
 *    call pointer is invalid after on_cancel returns, so a handler that
 *    keeps it (e.g. while a raft proposal is in flight) must forget it there.
 *    grpc_call_finish()/grpc_call_send() called from inside on_cancel are
 *    ignored (the call is already over).
 *
 * What the core answers by itself (the connection stays usable in all
 * these cases), modelled on grpc-go 1.33 (etcd 3.4's):
 *  - unknown service or method: UNIMPLEMENTED "unknown service S" /
 *    "unknown method M for service S"; a :path without '/' between service
 *    and method: RESOURCE_EXHAUSTED "malformed method name: \"...\"". No
 *    call is created.
 *  - grpc-encoding other than identity: UNIMPLEMENTED "grpc: Decompressor is
 *    not installed for grpc-encoding \"gzip\"". No call is created.
 *  - a request whose content-type is not application/grpc[+...|;...] or
 *    whose grpc-timeout is malformed: RST_STREAM(PROTOCOL_ERROR).
 *  - a message with the compressed flag set: UNIMPLEMENTED (IK_ECOMPRESSED's
 *    text) + on_cancel. (grpc-go answers INTERNAL there.)
 *  - a message over max_recv_msg_size: RESOURCE_EXHAUSTED "grpc: received
 *    message larger than max (N vs. M)" + on_cancel.
 *  - a second message on a unary/server-streaming call, or END_STREAM with
 *    no message / in the middle of a message: INTERNAL + on_cancel.
 * When the server ends a stream that the client has not half-closed, the
 * trailers are followed by RST_STREAM(NO_ERROR), as grpc-go does.
 */
#ifndef IKADA_GRPC_H
#define IKADA_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

struct grpc_conn;
struct grpc_call;
struct grpc_allocator;

enum grpc_method_kind {
    GRPC_UNARY,
    GRPC_SERVER_STREAMING,
    GRPC_CLIENT_STREAMING,
    GRPC_BIDI_STREAMING,
};

struct grpc_method {
    const char *path; /* "/etcdserverpb.KV/Range" */
    enum grpc_method_kind kind;
    /* One complete request message: @data (without the 5-byte prefix) is
     * valid only during the call (it may point into the caller's receive
     * buffer). Unary and server-streaming methods get exactly one message
     * (a second one is a protocol error answered with INTERNAL by the core,
     * and on_cancel fires). Required. */
    void (*on_message)(struct grpc_call *call, const uint8_t *data, size_t len);
    /* The client finished sending (END_STREAM) while the call is live.
     * Optional. For unary methods it follows on_message (unless the handler
     * already finished the call there). */
    void (*on_half_close)(struct grpc_call *call);
    /* The call ended without grpc_call_finish(). Optional. */
    void (*on_cancel)(struct grpc_call *call);
    void *data; /* handler's own, see grpc_call_method() */
};

struct grpc_server_config {
    const struct grpc_method *methods;
    size_t n_methods;
    /* Largest request message accepted (etcd: --max-request-bytes plus
     * 512 KiB of gRPC overhead). 0: grpc-go's default, 4 MiB. */
    size_t max_recv_msg_size;
    /* SETTINGS_MAX_CONCURRENT_STREAMS; 0: unlimited (2^32-1, etcd's
     * default). */
    uint32_t max_concurrent_streams;
    /* Monotonic clock in milliseconds, used for grpc-timeout. NULL: request
     * deadlines are not enforced. */
    uint64_t (*now_ms)(void);
    /* Output became pending outside grpc_conn_recv()/grpc_conn_send() (an
     * asynchronous response, or grpc_conn_tick() expired a call): the owner
     * should call grpc_conn_send() soon. Fires at most once until
     * grpc_conn_send() next returns 0, and never from inside
     * grpc_conn_recv(), grpc_conn_send(), grpc_conn_tick()'s handlers or
     * grpc_conn_free(); after grpc_conn_recv() the owner flushes anyway.
     * Optional. */
    void (*on_want_write)(struct grpc_conn *conn, void *conn_data);
    /* Memory for the connection, its calls and nghttp2. NULL: libc. */
    const struct grpc_allocator *alloc;
};

/*
 * An allocator (same contract as malloc/free/calloc/realloc, @ud passed
 * through). Lets tests inject allocation failures; every failure surfaces as
 * IK_ENOMEM, a reset stream, an error status or a closed connection, never a
 * crash or a leak.
 */
struct grpc_allocator {
    void *(*malloc_fn)(size_t size, void *ud);
    void (*free_fn)(void *ptr, void *ud);
    void *(*calloc_fn)(size_t nmemb, size_t size, void *ud);
    void *(*realloc_fn)(void *ptr, size_t size, void *ud);
    void *ud;
};

/*
 * Create a server-side connection. @cfg must outlive it. Returns 0 or
 * IK_ENOMEM (nothing allocated then). The server preface (SETTINGS, and a
 * WINDOW_UPDATE raising the connection window) is queued for
 * grpc_conn_send().
 */
int grpc_conn_new(const struct grpc_server_config *cfg, void *conn_data,
                  struct grpc_conn **out);

/*
 * Feed @len bytes received from the peer (all are consumed). Handlers run
 * inside. Returns 0, IK_EPROTO when the peer broke HTTP/2 (e.g. no client
 * preface), or IK_ENOMEM: in both error cases the owner should flush
 * grpc_conn_send() output (a GOAWAY, if any) and close; later calls return
 * the same error.
 */
int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len);

/*
 * Next chunk of bytes to write to the peer; returns its length, 0 when
 * nothing is pending, or -1 on a fatal error (close the connection). *data
 * stays valid until the next call on the connection. The chunks can be
 * small: the owner should gather them into one write. Must not be called
 * from inside a handler (returns 0 then).
 */
ssize_t grpc_conn_send(struct grpc_conn *c, const uint8_t **data);

/* True when the connection has nothing more to say and should be closed
 * (GOAWAY exchanged, fatal error, or protocol error with output flushed). */
bool grpc_conn_want_close(const struct grpc_conn *c);

/* Expire calls whose deadline has passed (DEADLINE_EXCEEDED "context
 * deadline exceeded" + on_cancel). Cheap when no deadline is due. */
void grpc_conn_tick(struct grpc_conn *c);

/* Free the connection: on_cancel fires for every live call first, then all
 * memory is released. Must not be called from inside a handler. */
void grpc_conn_free(struct grpc_conn *c);

void *grpc_conn_data(const struct grpc_conn *c);

/* Number of calls currently live (dispatched, neither finished nor
 * cancelled). */
size_t grpc_conn_live_calls(const struct grpc_conn *c);

struct grpc_conn *grpc_call_conn(const struct grpc_call *call);
const struct grpc_method *grpc_call_method(const struct grpc_call *call);
void *grpc_call_get_data(const struct grpc_call *call);
void grpc_call_set_data(struct grpc_call *call, void *data);

/*
 * Request metadata: the value of header @name (lowercase) as received, or
 * NULL. Pseudo-headers and the transport's own headers (content-type, te,
 * user-agent, grpc-timeout, grpc-encoding, grpc-accept-encoding) are not
 * kept. The string lives as long as the call.
 */
const char *grpc_call_metadata(const struct grpc_call *call, const char *name);

/* The call's deadline on the cfg->now_ms clock, or 0 if it has none. */
uint64_t grpc_call_deadline(const struct grpc_call *call);

/*
 * Queue one response message (copied). Returns 0, IK_ENOMEM, or IK_EINVAL
 * if the call was already finished (or @len does not fit the 32-bit
 * prefix). The response HEADERS go out before the first message.
 */
int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len);

/* Pack @msg straight into the outgoing frame buffer and queue it. Same
 * returns as grpc_call_send(). */
int grpc_call_send_proto(struct grpc_call *call, const ProtobufCMessage *msg);

/* Bytes queued on this call and not yet handed to grpc_conn_send(): lets a
 * streaming handler (watch) apply backpressure. */
size_t grpc_call_pending_bytes(const struct grpc_call *call);

/*
 * End the call with grpc-status @status and grpc-message @message (may be
 * NULL; percent-encoded by the core). Queued messages go out first. The call
 * is released by the core once the trailers are sent; no callback fires for
 * it afterwards and the pointer must not be used again. When no message was
 * sent the answer is a trailers-only response.
 */
void grpc_call_finish(struct grpc_call *call, int status, const char *message);

/* Convenience: finish with the status/message ik_grpc_status() gives. */
void grpc_call_finish_error(struct grpc_call *call, int rv);

/*
 * Parse a grpc-timeout header value ("1..8 digits" + one of H M S m u n)
 * into milliseconds, rounded up. Returns 0 or IK_EINVAL.
 */
int grpc_timeout_parse(const char *s, size_t len, uint64_t *ms);

/*
 * Percent-encode @msg for grpc-message (bytes outside 0x20..0x7e and '%'
 * become %XX) into @out of @size bytes, NUL-terminated. Returns the length
 * the encoding needs (without the NUL); if that is >= @size the output was
 * truncated (a 3*strlen+1 buffer always fits).
 */
size_t grpc_percent_encode(const char *msg, char *out, size_t size);

#endif /* IKADA_GRPC_H */
