/*
 * service: etcd's v3 gRPC services (KV, Maintenance, Cluster ...) as a
 * method table for the grpc core.
 *
 * Each handler decodes the request, runs etcd's pre-proposal checks, then
 * either proposes the request through the node (writes), waits for a
 * linearizable read barrier (reads), or answers from local state
 * (serializable reads, Status, MemberList). Errors become gRPC statuses
 * through ik_grpc_status() (server/errors.h), nowhere else.
 *
 * A call whose client goes away (on_cancel) is detached from its in-flight
 * node request; the node's callback then only frees memory.
 */
#ifndef IKADA_SERVICE_H
#define IKADA_SERVICE_H

#include <uv.h>

#include "server/grpc.h"
#include "server/node.h"

struct service_options {
    uv_loop_t *loop;            /* the member's loop (v3lock/v3election) */
    unsigned max_txn_ops;       /* --max-txn-ops */
    uint64_t max_request_bytes; /* --max-request-bytes */
};

struct service;

/* Create the service table for @node (may be NULL at first and set with
 * service_set_node() before serving). Returns 0 or IK_ENOMEM. */
int service_init(struct service **out, struct node *node,
                 const struct service_options *opts);

/* The grpc server configuration (method table, limits) to serve with.
 * Owned by the service; valid until service_free(). The caller may fill in
 * now_ms/on_want_write (the transport glue does). */
struct grpc_server_config *service_grpc_config(struct service *s);

void service_set_node(struct service *s, struct node *node);

/* The leader-only methods (membership changes), contiguous in the table,
 * to serve on the peer port too: a follower hands such a call to the
 * leader with node_forward(). */
const struct grpc_method *service_peer_methods(struct service *s,
                                               size_t *count);

/* Free the table. Every connection using it must be closed first. */
void service_free(struct service *s);

#endif /* IKADA_SERVICE_H */
