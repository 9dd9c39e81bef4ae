/*
 * grpc_uv: the libuv glue around the gRPC core (grpc.h): TCP listeners,
 * one grpc_conn per accepted connection, socket reads fed to
 * grpc_conn_recv(), grpc_conn_send() output gathered into one uv_write at a
 * time, and a periodic timer driving grpc_conn_tick().
 *
 * Writes: at most one uv_write per connection is in flight; while it is,
 * the output stays queued in the core (grpc_call_pending_bytes() grows, so
 * streaming handlers can apply backpressure). When a connection's write
 * backlog is large, reading from it pauses until the write completes.
 * Output produced outside a read (asynchronous responses, expired
 * deadlines) is flushed from a uv_prepare callback, i.e. before the loop
 * next blocks, so the responses of one loop iteration share one write.
 *
 * Connections close on EOF, a socket error, a protocol error (after the
 * GOAWAY is flushed) or when the core wants to close; closing a connection
 * frees its grpc_conn, so on_cancel fires for its live calls.
 *
 * Handlers get the struct grpc_uv_conn as grpc_conn_data(); see
 * grpc_uv_conn_server() to reach the server (and its ->data).
 */
#ifndef IKADA_GRPC_UV_H
#define IKADA_GRPC_UV_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "server/grpc.h"

struct grpc_uv_listener;
struct grpc_uv_conn;
struct uvwrite;

struct grpc_uv_server {
    void *data; /* the owner's; untouched by this module */

    /* Private. */
    uv_loop_t *loop;
    struct grpc_server_config cfg; /* copy; now_ms/on_want_write are ours */
    struct grpc_uv_listener *listeners;
    struct grpc_uv_conn *conns;
    struct uvwrite *dirty; /* connections with output to flush (uvwrite.h) */
    uv_timer_t timer;
    uv_prepare_t prepare;
    uint8_t *rbuf; /* shared read buffer: the core consumes reads at once */
    unsigned pending_closes;
    uint16_t last_port;
    bool closing;
    void (*close_cb)(struct grpc_uv_server *s);
};

/*
 * Prepare @s on @loop serving @cfg (copied; cfg->methods and everything
 * they point to must outlive the server; cfg->now_ms and cfg->on_want_write
 * are replaced by the glue's). Starts the tick timer. Returns 0 or
 * IK_ENOMEM (nothing to close then). After a 0 return the owner must call
 * grpc_uv_server_close() eventually, even if no listen succeeded.
 */
int grpc_uv_server_init(struct grpc_uv_server *s, uv_loop_t *loop,
                        const struct grpc_server_config *cfg);

/*
 * Listen on @host (an IPv4 or IPv6 literal without brackets, or a name the
 * resolver knows such as "localhost"; "" means all addresses) and @port (0:
 * any free port, see grpc_uv_server_port()). Can be called several times.
 * Returns 0, or IK_EIO with @errmsg (IK_ERRMSG_SIZE bytes) set the way etcd
 * words it: "listen tcp 127.0.0.1:2379: bind: address already in use".
 */
int grpc_uv_server_listen(struct grpc_uv_server *s, const char *host,
                          uint16_t port, char *errmsg);

/*
 * Take over a connection accepted elsewhere (e.g. on the shared peer port,
 * see peer_uv.h) whose first @len bytes (@prefix, may be NULL when @len is
 * 0) were already read from it: they are fed to the gRPC core first, then
 * the connection is served like an accepted one.
 *
 * The server takes a duplicate of @tcp's socket; @tcp itself stays the
 * caller's, who must uv_close() it after this call whatever it returns
 * (closing it does not close the adopted connection). Reading on @tcp is
 * stopped here. Returns 0; IK_ENOMEM; or IK_EIO when the socket cannot be
 * duplicated or the server is closing. On error nothing was adopted (the
 * connection ends when the caller closes @tcp). Handlers may run inside
 * this call (when @prefix already holds complete requests).
 */
int grpc_uv_server_adopt(struct grpc_uv_server *s, uv_tcp_t *tcp,
                         const uint8_t *prefix, size_t len);

/* The port the last successful grpc_uv_server_listen() bound. */
uint16_t grpc_uv_server_port(const struct grpc_uv_server *s);

/* Number of open client connections. */
size_t grpc_uv_server_conn_count(const struct grpc_uv_server *s);

/*
 * Close the listeners and every connection (on_cancel fires, synchronously,
 * for each live call), then stop the timer. @cb (may be NULL) runs once all
 * handles are closed; @s can be freed from there. Calling it twice is a
 * no-op. Must not be called from inside a gRPC handler (it frees the
 * connection the handler runs on); call it from any other loop callback.
 */
void grpc_uv_server_close(struct grpc_uv_server *s,
                          void (*cb)(struct grpc_uv_server *s));

/* The server a connection belongs to (for handlers: pass
 * grpc_conn_data(grpc_call_conn(call))). */
struct grpc_uv_server *grpc_uv_conn_server(const struct grpc_uv_conn *conn);

#endif /* IKADA_GRPC_UV_H */
