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
 *  - on_cancel fires: the client reset the stream, the deadline passed, or
 *    the connection is freed. The call pointer is invalid after on_cancel
 *    returns, so a handler that keeps it (e.g. while a raft proposal is in
 *    flight) must forget it there.
 * Requests for unknown methods are answered UNIMPLEMENTED without creating a
 * call; compressed messages (grpc-encoding other than identity) get
 * UNIMPLEMENTED; a message over max_recv_msg_size gets RESOURCE_EXHAUSTED.
 * In all these cases the connection stays usable.
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
     * valid only during the call. Unary and server-streaming methods get
     * exactly one message (a second one is a protocol error answered with
     * INTERNAL by the core). */
    void (*on_message)(struct grpc_call *call, const uint8_t *data,
                       size_t len);
    /* The client finished sending (END_STREAM). Optional. For unary
     * methods it follows on_message. */
    void (*on_half_close)(struct grpc_call *call);
    /* The call ended without grpc_call_finish(). Optional. */
    void (*on_cancel)(struct grpc_call *call);
    void *data; /* handler's own, see grpc_call_method() */
};

struct grpc_server_config {
    const struct grpc_method *methods;
    size_t n_methods;
    /* Largest request message accepted (etcd: --max-request-bytes plus
     * 512 KiB of gRPC overhead). */
    size_t max_recv_msg_size;
    uint32_t max_concurrent_streams;
    /* Monotonic clock in milliseconds, used for grpc-timeout. */
    uint64_t (*now_ms)(void);
    /* Output became pending outside grpc_conn_recv() (e.g. an asynchronous
     * response): the owner should call grpc_conn_send() soon. */
    void (*on_want_write)(struct grpc_conn *conn, void *conn_data);
};

/*
 * Create a server-side connection. @cfg must outlive it. Returns 0 or
 * IK_ENOMEM. The server preface (SETTINGS) is queued for grpc_conn_send().
 */
int grpc_conn_new(const struct grpc_server_config *cfg, void *conn_data,
                  struct grpc_conn **out);

/*
 * Feed @len bytes received from the peer. Handlers run inside. Returns 0, or
 * IK_EPROTO when the peer broke HTTP/2: the owner should flush
 * grpc_conn_send() output (a GOAWAY) and close.
 */
int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len);

/*
 * Next chunk of bytes to write to the peer; returns its length, 0 when
 * nothing is pending, or -1 on a fatal error (close the connection). *data
 * stays valid until the next call on the connection.
 */
ssize_t grpc_conn_send(struct grpc_conn *c, const uint8_t **data);

/* True when the connection has nothing more to say and should be closed. */
bool grpc_conn_want_close(const struct grpc_conn *c);

/* Expire calls whose deadline has passed (DEADLINE_EXCEEDED + on_cancel). */
void grpc_conn_tick(struct grpc_conn *c);

/* Free the connection: on_cancel fires for every live call first. */
void grpc_conn_free(struct grpc_conn *c);

void *grpc_conn_data(const struct grpc_conn *c);

struct grpc_conn *grpc_call_conn(const struct grpc_call *call);
const struct grpc_method *grpc_call_method(const struct grpc_call *call);
void *grpc_call_get_data(const struct grpc_call *call);
void grpc_call_set_data(struct grpc_call *call, void *data);

/*
 * Queue one response message (copied). Returns 0, IK_ENOMEM, or IK_EINVAL
 * if the call was already finished.
 */
int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len);

/* Pack @msg straight into the outgoing frame buffer and queue it. */
int grpc_call_send_proto(struct grpc_call *call, const ProtobufCMessage *msg);

/* Bytes queued on this call and not yet handed to grpc_conn_send(): lets a
 * streaming handler (watch) apply backpressure. */
size_t grpc_call_pending_bytes(const struct grpc_call *call);

/*
 * End the call with grpc-status @status and grpc-message @message (may be
 * NULL; percent-encoded by the core). Queued messages go out first. The call
 * is released by the core once the trailers are sent; no callback fires for
 * it afterwards and the pointer must not be used again.
 */
void grpc_call_finish(struct grpc_call *call, int status, const char *message);

/* Convenience: finish with the status/message ik_grpc_status() gives. */
void grpc_call_finish_error(struct grpc_call *call, int rv);

#endif /* IKADA_GRPC_H */
