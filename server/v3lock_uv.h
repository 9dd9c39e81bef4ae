/*
 * v3lock_uv: the v3lock/v3election core (server/v3lock.h) on a running
 * member.
 *
 * The backend the core needs, made of the node and its event loop:
 * proposals go through node_propose() (after the space quota check the KV
 * service makes for puts and txns), linearizable reads wait for
 * node_read(), reads and watches use the node's kv and watch hub, and
 * deferred steps run from a uv_idle handle on the loop.
 *
 * Threading: everything on the loop's thread.
 */
#ifndef IKADA_V3LOCK_UV_H
#define IKADA_V3LOCK_UV_H

#include <stddef.h>

#include <uv.h>

#include "server/grpc.h"
#include "server/node.h"
#include "server/v3lock.h"

struct v3lock_uv;

/*
 * Create the services on @loop for @node (may be NULL until
 * v3lock_uv_set_node(); calls that arrive before fail with
 * "etcdserver: server stopped"). @max_txn_ops is --max-txn-ops (0: 128).
 * Returns 0 or IK_ENOMEM (*@out untouched). Starts no handle yet.
 */
int v3lock_uv_new(struct v3lock_uv **out, uv_loop_t *loop, struct node *node,
                  unsigned max_txn_ops);

void v3lock_uv_set_node(struct v3lock_uv *u, struct node *node);

/*
 * The method descriptors to serve (V3LOCK_N_METHODS of them, in *@n):
 * /v3lockpb.Lock/{Lock,Unlock} and /v3electionpb.Election/{Campaign,
 * Proclaim,Leader,Observe,Resign}. Copy them into the grpc server's method
 * table as they are (their data field is set). Valid until
 * v3lock_uv_close().
 */
const struct grpc_method *v3lock_uv_methods(struct v3lock_uv *u, size_t *n);

/*
 * Close: every request is dropped without cleanup (v3lock_free()),
 * deferred steps still queued run at once, the idle handle is closed and
 * @u is freed from its close callback (so the loop must run once more for
 * the memory to go; at process exit it does not matter). Node callbacks
 * still due are delivered to the core, which frees itself with the last.
 * Every grpc connection serving the methods must be closed first. Not from
 * inside a callback of the module. NULL is fine.
 */
void v3lock_uv_close(struct v3lock_uv *u);

#endif /* IKADA_V3LOCK_UV_H */
