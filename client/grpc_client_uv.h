/*
 * grpc_client_uv: the libuv glue around the gRPC client core
 * (grpc_client.h): one TCP connection (TCP_NODELAY) to host:port at a time,
 * socket reads fed to grpc_client_conn_recv(), grpc_client_conn_send()
 * output gathered into one uv_write at a time, and a timer that fires at
 * the earliest client-side deadline to drive grpc_client_conn_tick().
 *
 * Connections are made on demand: grpc_client_uv_conn() returns the core
 * connection of the current TCP connection, or creates a new one and starts
 * dialing. The core connection exists from the start, so calls made while
 * the TCP connection is still being set up simply wait in it and go out
 * when it is up. If dialing fails, every call on it is closed with
 * UNAVAILABLE and grpc-go's wording, e.g.
 *   connection error: desc = "transport: Error while dialing dial tcp
 *   127.0.0.1:2379: connect: connection refused"
 * When an established connection breaks (EOF, socket error, HTTP/2 protocol
 * error) its live calls are closed with UNAVAILABLE "transport is closing";
 * the next grpc_client_uv_conn() dials again. After a GOAWAY the old
 * connection keeps serving its streams until they end (then it is closed)
 * while grpc_client_uv_conn() dials a new one for new calls.
 *
 * Output produced outside a read (calls started by the owner, cancels,
 * expired deadlines) is flushed from a uv_prepare callback, i.e. before the
 * loop next blocks, so everything started in one loop iteration shares one
 * write.
 *
 * Threading: everything runs on the loop's thread.
 */
#ifndef IKADA_GRPC_CLIENT_UV_H
#define IKADA_GRPC_CLIENT_UV_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "client/grpc_client.h"

struct grpc_client_uv_link;
struct uvwrite;

struct grpc_client_uv {
    void *data; /* the owner's; untouched by this module */

    /* Private. */
    uv_loop_t *loop;
    char *host;
    uint16_t port;
    struct grpc_client_config cfg; /* copy; now_ms/on_want_write are ours */
    char *authority;
    char *user_agent;
    struct grpc_client_uv_link *cur;   /* where new calls go, or NULL */
    struct grpc_client_uv_link *links; /* every open connection */
    struct uvwrite *dirty;             /* connections with output */
    uv_timer_t timer;
    uv_prepare_t prepare;
    uint64_t timer_due;
    uint8_t *rbuf; /* shared read buffer: the core consumes reads at once */
    unsigned long dials;
    unsigned pending_closes;
    int busy; /* > 0 inside one of our libuv callbacks */
    bool closing;
    bool torn_down;
    void (*close_cb)(struct grpc_client_uv *c);
};

/*
 * Prepare @c to talk to @host (an IPv4/IPv6 literal without brackets, or a
 * name resolved with uv_getaddrinfo) port @port on @loop. @cfg (may be
 * NULL for defaults) is copied (strings too); its now_ms and on_want_write
 * are replaced by the glue's, a NULL authority becomes "host:port", and
 * cfg->alloc (used by the core only) must outlive @c. Nothing is dialed yet.
 * Returns 0 or IK_ENOMEM (nothing to close then). After 0 the owner must call
 * grpc_client_uv_close() eventually.
 */
int grpc_client_uv_init(struct grpc_client_uv *c, uv_loop_t *loop,
                        const char *host, uint16_t port,
                        const struct grpc_client_config *cfg);

/*
 * The core connection to start calls on: the current one if it is usable,
 * otherwise a new one whose TCP connection is being dialed (calls wait in
 * it until it is up). Returns NULL when @c is closing or out of memory. The
 * pointer is valid until the connection fails, i.e. until the on_close of
 * its calls reports it; do not keep it across loop iterations, ask again.
 */
struct grpc_client_conn *grpc_client_uv_conn(struct grpc_client_uv *c);

/* True if the current connection's TCP connection is established. */
bool grpc_client_uv_connected(const struct grpc_client_uv *c);

/* Number of dials started so far (each grpc_client_uv_conn() that had to
 * create a connection). */
unsigned long grpc_client_uv_dials(const struct grpc_client_uv *c);

/*
 * Close every connection (live calls are closed with CANCELLED "grpc: the
 * client connection is closing", synchronously unless this is called from
 * inside a call callback, in which case it happens when that callback's
 * libuv callback returns) and the timer. @cb (may be NULL) runs once all
 * handles are closed; @c can be freed from there. A second call is a no-op.
 */
void grpc_client_uv_close(struct grpc_client_uv *c,
                          void (*cb)(struct grpc_client_uv *c));

#endif /* IKADA_GRPC_CLIENT_UV_H */
