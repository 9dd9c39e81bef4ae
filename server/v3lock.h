/*
 * v3lock: etcd 3.4's v3lock (Lock, Unlock) and v3election (Campaign,
 * Proclaim, Leader, Observe, Resign) services, as a protocol core.
 *
 * etcd serves both with its clientv3/concurrency recipes, run server-side
 * through an in-process client. This module runs the same recipes directly
 * on the member's store, watch hub and proposal path:
 *
 *  - Lock(name, lease): the waiter's key is "<name>/<lease in hex>" (Go's
 *    %x of the signed id), created with the lease in a txn if it does not
 *    exist (an existing one is reused). The holder is the key with the
 *    lowest create revision under "<name>/". A waiter repeatedly reads the
 *    newest key created before its own and waits for that key's deletion;
 *    when no older key is left it holds the lock. Lease 0 means "grant a
 *    60 s lease first" (etcd's session default), as etcd does.
 *    Unlock(key) deletes the key.
 *  - Campaign(name, lease, value): same queue, value in the key; a key
 *    that already exists with another value is proclaimed first.
 *    Proclaim/Resign put/delete the leader key if its create revision still
 *    is the given one ("election: not leader" for Proclaim otherwise).
 *    Leader answers the key with the lowest create revision ("election: no
 *    leader" if none). Observe streams the leader key: every put of the
 *    current leader key, then, once it is deleted, the next leader.
 *
 * Answers as etcd's: headers are the ones etcd's recipes keep (Lock: the
 * acquiring txn's, or the last read's when it had to wait; Campaign: the
 * campaign txn's; others: their own request's). Errors of the underlying
 * requests reach the client as gRPC status UNKNOWN with etcd's text
 * ("etcdserver: requested lease not found"), because etcd's in-process
 * client turns them into plain errors; so do the election errors and the
 * missing "leader" field. Observe ends with OK when its reads or watches
 * fail (etcd closes the channel and returns nil).
 *
 * Cancellation: a Lock whose client goes away once its key exists deletes
 * the key; a Campaign resigns (deletes its key if the create revision
 * still matches). Both happen in the background after v3lock_cancel().
 * (etcd does this only when the client leaves while waiting; ikada also
 * cleans up when the client left during the first txn.)
 *
 * No I/O: the store is reached through struct v3lock_backend (the node
 * and the event loop in production, server/v3lock_uv.h; a fake in the unit
 * tests), the client through struct v3lock_reply_ops (the gRPC call).
 * Everything runs on one thread.
 */
#ifndef IKADA_V3LOCK_H
#define IKADA_V3LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/internal.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"
#include "server/grpc.h"
#include "server/kv.h"
#include "server/watch.h"

/* etcd's concurrency.Session default TTL (seconds), used for lease 0. */
#define V3LOCK_SESSION_TTL 60

/* The messages etcd's election recipes fail with (gRPC status UNKNOWN). */
#define V3LOCK_MSG_NOT_LEADER "election: not leader"
#define V3LOCK_MSG_NO_LEADER "election: no leader"
#define V3LOCK_MSG_NO_LEADER_KEY "\"leader\" field must be provided"

/*
 * Test hook for fault injection: when non-NULL, called before every
 * allocation this module makes; a true return makes it fail.
 */
extern bool (*v3lock_fail_alloc_hook)(void);

enum v3lock_method {
    V3LOCK_LOCK,
    V3LOCK_UNLOCK,
    V3LOCK_CAMPAIGN,
    V3LOCK_PROCLAIM,
    V3LOCK_LEADER,
    V3LOCK_OBSERVE,
    V3LOCK_RESIGN,
    V3LOCK_N_METHODS
};

/*
 * Completion of a backend operation: @status 0 or an IK_E* code; @resp the
 * typed response of a proposal (NULL otherwise or on error), owned by the
 * callee from then on.
 */
typedef void (*v3lock_done_fn)(void *ctx, int status, ProtobufCMessage *resp);

/* Storage for one deferred call, owned by the core and handed to the
 * backend's defer(); the backend may use @next while it holds it. */
struct v3lock_defer {
    void (*fn)(struct v3lock_defer *d);
    struct v3lock_defer *next;
};

/*
 * How the core reaches the member. Each op that returns 0 calls @done
 * exactly once, later (never from inside the op); an op that returns an
 * error never calls it.
 */
struct v3lock_backend {
    void *arg; /* passed to every op */
    /* Propose @req (op put, delete_range, txn or lease_grant; the caller
     * keeps ownership of it) through consensus, with the checks the KV and
     * Lease services make before proposing (e.g. the space quota). @done
     * gets the typed response (TxnResponse ...) with a full header. */
    int (*propose)(void *arg, const Ikadapb__InternalRequest *req,
                   v3lock_done_fn done, void *ctx);
    /* Linearizable read point: @done(ctx, status, NULL) once kv() holds
     * every write committed before the call. */
    int (*read)(void *arg, v3lock_done_fn done, void *ctx);
    /* Call @d->fn(@d) soon, from the loop (never from inside this call
     * nor from inside a watch hub callback). Cannot fail. */
    void (*defer)(void *arg, struct v3lock_defer *d);
    /* The store reads are served from, and its watch hub. */
    struct kv *(*kv)(void *arg);
    struct watch_hub *(*hub)(void *arg);
    /* Cluster id, member id, raft term and revision of a header. */
    void (*fill_header)(void *arg, Etcdserverpb__ResponseHeader *h);
    /* A new lease id for a grant (cluster-wide unique). */
    int64_t (*lease_new_id)(void *arg);
    /* Maximum operations in a txn (--max-txn-ops) for the pre-proposal
     * checks; 0: etcd's default 128. */
    unsigned max_txn_ops;
};

/*
 * Where a request's answers go. Both are called on the core's thread,
 * possibly from inside a backend callback or a watch hub callback.
 */
struct v3lock_reply_ops {
    /* One response message (@msg valid during the call only). Returns 0,
     * or non-zero when the call cannot take it: the core then ends the
     * request with finish(RESOURCE_EXHAUSTED) and stops. */
    int (*send)(void *ctx, const ProtobufCMessage *msg);
    /* The request is over: gRPC status @status and @message (NULL for
     * OK). Called exactly once per started request unless it was
     * cancelled first; nothing is called for it afterwards. */
    void (*finish)(void *ctx, int status, const char *message);
};

struct v3lock;
struct v3lock_req;

/*
 * A core over @be (copied; be->arg must outlive the core). Returns 0 or
 * IK_ENOMEM (*@out untouched).
 */
int v3lock_new(const struct v3lock_backend *be, struct v3lock **out);

/*
 * Start method @m with its packed request (@data, @len: only read during
 * the call). Returns 0: the request runs; ops->finish fires exactly once
 * (possibly before this returns, then *@out is NULL) unless
 * v3lock_cancel() comes first. Otherwise IK_EMALFORMED (not a valid
 * request message), IK_ENOMEM or IK_ESTOPPED (core closing); nothing was
 * called then. Unary methods send one message before finish(OK); Observe
 * sends any number.
 */
int v3lock_start(struct v3lock *l, enum v3lock_method m, const uint8_t *data,
                 size_t len, const struct v3lock_reply_ops *ops, void *ctx,
                 struct v3lock_req **out);

/*
 * The client went away: no reply op is called for @r any more. The
 * cleanup described at the top runs in the background, then @r is freed.
 * Not to be called after finish fired for @r.
 */
void v3lock_cancel(struct v3lock_req *r);

/* Requests alive (running, or cleaning up after a cancel). */
size_t v3lock_live(const struct v3lock *l);

/*
 * Close the core: every request is dropped as if cancelled, but without
 * cleanup (no more backend ops are started). Requests waiting for a
 * backend callback are freed when it fires, the core with the last of
 * them; the backend must keep delivering callbacks already due. Must not
 * be called from inside a callback of this module. NULL is fine.
 */
void v3lock_free(struct v3lock *l);

/* The gRPC method paths served, indexed by enum v3lock_method. */
extern const char *const v3lock_paths[V3LOCK_N_METHODS];

/*
 * gRPC binding: the V3LOCK_N_METHODS method descriptors for the grpc
 * server (unary ones, Observe server-streaming), handing each call to
 * @l. Written into @out (V3LOCK_N_METHODS entries); their data points at
 * bindings stored in @l, valid until v3lock_free(). Cancelled calls are
 * v3lock_cancel()ed.
 */
void v3lock_grpc_methods(struct v3lock *l, struct grpc_method *out);

#endif /* IKADA_V3LOCK_H */
