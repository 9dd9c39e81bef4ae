/*
 * v3lock_uv: the node and libuv backend of the v3lock core (see
 * v3lock_uv.h).
 */
#include "server/v3lock_uv.h"

#include <stdlib.h>

#include "server/errors.h"

struct v3lock_uv {
    uv_loop_t *loop;
    struct node *node;
    struct v3lock *core;
    uv_idle_t idle;
    bool idle_init;
    struct v3lock_defer *head, *tail; /* deferred steps, in order */
    struct grpc_method methods[V3LOCK_N_METHODS];
};

/* One proposal or read in flight. */
struct uv_op {
    union {
        struct node_proposal prop;
        struct node_read read;
    } u;
    v3lock_done_fn done;
    void *ctx;
};

static void proposal_cb(struct node_proposal *p, int status,
                        ProtobufCMessage *resp)
{
    struct uv_op *op = p->data;
    v3lock_done_fn done = op->done;
    void *ctx = op->ctx;

    free(op);
    done(ctx, status, resp);
}

static int be_propose(void *arg, const Ikadapb__InternalRequest *req,
                      v3lock_done_fn done, void *ctx)
{
    struct v3lock_uv *u = arg;
    struct uv_op *op;
    size_t cost = 0;
    int rv;

    if (u->node == NULL) {
        return IK_ESTOPPED;
    }
    /* The KV service's quota check; deletes are always allowed. */
    if (req->op_case == IKADAPB__INTERNAL_REQUEST__OP_TXN) {
        cost = etcdserverpb__txn_request__get_packed_size(req->txn);
    } else if (req->op_case == IKADAPB__INTERNAL_REQUEST__OP_PUT) {
        cost = etcdserverpb__put_request__get_packed_size(req->put);
    }
    if (cost > 0) {
        rv = node_quota_check(u->node, cost);
        if (rv != 0) {
            return rv;
        }
    }
    op = calloc(1, sizeof *op);
    if (op == NULL) {
        return IK_ENOMEM;
    }
    op->done = done;
    op->ctx = ctx;
    op->u.prop.data = op;
    rv = node_propose(u->node, &op->u.prop, req, proposal_cb);
    if (rv != 0) {
        free(op);
    }
    return rv;
}

static void read_cb(struct node_read *r, int status)
{
    struct uv_op *op = r->data;
    v3lock_done_fn done = op->done;
    void *ctx = op->ctx;

    free(op);
    done(ctx, status, NULL);
}

static int be_read(void *arg, v3lock_done_fn done, void *ctx)
{
    struct v3lock_uv *u = arg;
    struct uv_op *op;
    int rv;

    if (u->node == NULL) {
        return IK_ESTOPPED;
    }
    op = calloc(1, sizeof *op);
    if (op == NULL) {
        return IK_ENOMEM;
    }
    op->done = done;
    op->ctx = ctx;
    op->u.read.data = op;
    rv = node_read(u->node, &op->u.read, read_cb);
    if (rv != 0) {
        free(op);
    }
    return rv;
}

/* Run every deferred step queued so far (steps queued meanwhile wait for
 * the next round). */
static void run_deferred(struct v3lock_uv *u)
{
    struct v3lock_defer *d = u->head;

    u->head = u->tail = NULL;
    while (d != NULL) {
        struct v3lock_defer *next = d->next;
        d->next = NULL;
        d->fn(d);
        d = next;
    }
}

static void idle_cb(uv_idle_t *h)
{
    struct v3lock_uv *u = h->data;

    run_deferred(u);
    if (u->head == NULL) {
        uv_idle_stop(&u->idle);
    }
}

static void be_defer(void *arg, struct v3lock_defer *d)
{
    struct v3lock_uv *u = arg;

    d->next = NULL;
    if (u->tail != NULL) {
        u->tail->next = d;
    } else {
        u->head = d;
    }
    u->tail = d;
    if (!u->idle_init) {
        uv_idle_init(u->loop, &u->idle);
        u->idle.data = u;
        u->idle_init = true;
    }
    uv_idle_start(&u->idle, idle_cb);
}

static struct kv *be_kv(void *arg)
{
    struct v3lock_uv *u = arg;
    return node_kv(u->node);
}

static struct watch_hub *be_hub(void *arg)
{
    struct v3lock_uv *u = arg;
    return node_watch_hub(u->node);
}

static void be_fill_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    struct v3lock_uv *u = arg;
    node_fill_header(u->node, h);
}

static int64_t be_lease_new_id(void *arg)
{
    struct v3lock_uv *u = arg;
    return node_lease_new_id(u->node);
}

int v3lock_uv_new(struct v3lock_uv **out, uv_loop_t *loop, struct node *node,
                  unsigned max_txn_ops)
{
    struct v3lock_backend be = {0};
    struct v3lock_uv *u = calloc(1, sizeof *u);
    int rv;

    if (u == NULL) {
        return IK_ENOMEM;
    }
    u->loop = loop;
    u->node = node;
    be.arg = u;
    be.propose = be_propose;
    be.read = be_read;
    be.defer = be_defer;
    be.kv = be_kv;
    be.hub = be_hub;
    be.fill_header = be_fill_header;
    be.lease_new_id = be_lease_new_id;
    be.max_txn_ops = max_txn_ops;
    rv = v3lock_new(&be, &u->core);
    if (rv != 0) {
        free(u);
        return rv;
    }
    v3lock_grpc_methods(u->core, u->methods);
    *out = u;
    return 0;
}

void v3lock_uv_set_node(struct v3lock_uv *u, struct node *node)
{
    u->node = node;
}

const struct grpc_method *v3lock_uv_methods(struct v3lock_uv *u, size_t *n)
{
    *n = V3LOCK_N_METHODS;
    return u->methods;
}

static void idle_closed(uv_handle_t *h)
{
    free(h->data);
}

void v3lock_uv_close(struct v3lock_uv *u)
{
    if (u == NULL) {
        return;
    }
    v3lock_free(u->core);
    u->core = NULL;
    /* Queued steps only free their requests now; none queues another. */
    while (u->head != NULL) {
        run_deferred(u);
    }
    if (u->idle_init) {
        uv_close((uv_handle_t *)&u->idle, idle_closed);
    } else {
        free(u);
    }
}
