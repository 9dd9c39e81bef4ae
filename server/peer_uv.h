/*
 * peer_uv: ikada's raft_uv_transport for canonical/raft, sharing the
 * member's one peer port with the internal peer gRPC server.
 *
 * Every connection accepted on the peer port is sniffed:
 *  - the HTTP/2 client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") hands
 *    the connection, with the bytes already read, to the peer gRPC server
 *    (grpc_uv_server_adopt()); without a gRPC server it is closed;
 *  - ikada's raft handshake (byte layout and version at the top of
 *    peer_uv.c) is validated, acknowledged with one byte, and the stream is
 *    handed to raft's accept callback with the id and address it carried;
 *  - anything else, or an incomplete handshake after the handshake timeout
 *    (default 5 s), is closed without raft or gRPC seeing it.
 *
 * Outgoing raft connections resolve the "host:port" address (numeric IPv4,
 * bracketed IPv6 "[::1]:2380", or a name such as "localhost", trying each
 * resolved address in turn), connect with TCP_NODELAY, send the handshake
 * and wait for the acknowledgement before raft gets the stream, all within
 * the connect timeout (default 3 s).
 *
 * Vtable behaviour (what raft relies on):
 *  - connect(): a non-zero return (RAFT_NOCONNECTION for an address that
 *    does not parse or a resolver that cannot start, RAFT_NOMEM, or
 *    RAFT_CANCELED once closing) means the callback will not fire.
 *    After a 0 return the callback fires exactly once, never from inside
 *    connect(): status 0 with the stream, RAFT_NOCONNECTION (refused,
 *    unreachable, refused handshake, timeout; t->errmsg says which), or
 *    RAFT_CANCELED when the transport is closed first.
 *  - listen(): RAFT_INVALID for an unusable address, RAFT_IOERR when the
 *    bind fails (t->errmsg in etcd's words: "listen tcp 127.0.0.1:2380:
 *    bind: address already in use"). The accept callback never fires after
 *    close() was called.
 *  - close(): stops listening, closes connections still in their
 *    handshake, fails in-flight connects with RAFT_CANCELED, and fires its
 *    callback (never synchronously) after all of those callbacks and once
 *    every handle is closed.
 *
 * Memory: the streams given to raft are allocated with raft_malloc() and
 * hold nothing else, as raft expects (it uv_close()s and raft_free()s
 * them). The transport's own state is in t->impl.
 *
 * Return codes: the functions called through the raft_uv_transport vtable
 * return canonical/raft's RAFT_* codes (raft's contract); the peer_uv_*
 * functions below return ikada's IK_* codes.
 */
#ifndef IKADA_PEER_UV_H
#define IKADA_PEER_UV_H

#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "server/grpc_uv.h"

/* Longest raft address ("host:port") the handshake carries. */
#define PEER_UV_ADDRESS_MAX 255

/*
 * Set up @t (its ->data is kept, everything else overwritten) as a
 * transport on @loop for raft_uv_init(). @grpc (may be NULL) is the peer
 * gRPC server that HTTP/2 connections are handed to; it must outlive the
 * transport's listener (close the transport first, or accept that
 * grpc_uv_server_adopt() refuses connections once the server is closing).
 * Creates no libuv handle: those are created by the vtable's init (which
 * raft_uv_init()/raft_init() call) and closed by its close (raft_close()).
 * Returns 0 or IK_ENOMEM (t->errmsg set, nothing to release).
 */
int peer_uv_init(struct raft_uv_transport *t, uv_loop_t *loop,
                 struct grpc_uv_server *grpc);

/*
 * Release the memory of @t's implementation, like raft_uv_tcp_close():
 * call it once the transport's close callback has fired (raft_close()
 * completed), or right away if raft never initialised the transport.
 */
void peer_uv_close(struct raft_uv_transport *t);

/*
 * Listen on @address ("host:port", "[v6]:port"; "0.0.0.0:2380" for all
 * IPv4 addresses) instead of the address raft advertises (the one given
 * to raft_init()). Must be called before raft_start(). @address is copied.
 * Returns 0, or IK_EINVAL if it is not a valid address (t->errmsg set).
 */
int peer_uv_set_bind_address(struct raft_uv_transport *t, const char *address);

/*
 * Timeouts in milliseconds (0 keeps the current value): @connect_ms bounds
 * an outgoing connection from resolution to the acknowledgement,
 * @handshake_ms bounds how long an accepted connection may take to show
 * its first bytes / complete the handshake. Takes effect for connections
 * started afterwards.
 */
void peer_uv_set_timeouts(struct raft_uv_transport *t, unsigned connect_ms,
                          unsigned handshake_ms);

/* The port the listener is bound to (useful with port 0), 0 before a
 * successful listen. */
uint16_t peer_uv_port(const struct raft_uv_transport *t);

/*
 * Split a raft address into @host (NUL-terminated, brackets of an IPv6
 * literal removed; @size bytes) and @port. Accepted: "host:port" with a
 * non-empty host without ':', and "[v6]:port"; port is 0..65535 in
 * decimal. Returns 0 or IK_EINVAL (nothing meaningful in the outputs).
 */
int peer_uv_parse_address(const char *address, char *host, size_t size,
                          uint16_t *port);

#endif /* IKADA_PEER_UV_H */
