/*
 * v3lock: the v3lock and v3election services (see v3lock.h).
 *
 * Each call is a struct v3lock_req driven by a small state machine. At any
 * time a request has at most one thing outstanding (r->pending): a backend
 * proposal, a read barrier, or a deferral. While it waits for a key to be
 * deleted (or, for Observe, for changes of the leader key) it owns a watch
 * stream on the hub with one watcher; the hub's callbacks run inside the
 * store's commit (or inside our own watch_stream_recv()), where the hub
 * must not be touched, so they only record what happened and defer the
 * next step to the loop.
 *
 * Waiting (etcd's waitDeletes): read the newest key under the prefix
 * created before our own (max_create_revision = ours - 1); if there is
 * none we are first in line; otherwise watch that key from the revision
 * after the read, and once it is deleted read again. The read and the
 * watch creation happen in the same callback, so no write can slip in
 * between.
 */
#include "server/v3lock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

bool (*v3lock_fail_alloc_hook)(void) = NULL;

#define DEFAULT_MAX_TXN_OPS 128

const char *const v3lock_paths[V3LOCK_N_METHODS] = {
    [V3LOCK_LOCK] = "/v3lockpb.Lock/Lock",
    [V3LOCK_UNLOCK] = "/v3lockpb.Lock/Unlock",
    [V3LOCK_CAMPAIGN] = "/v3electionpb.Election/Campaign",
    [V3LOCK_PROCLAIM] = "/v3electionpb.Election/Proclaim",
    [V3LOCK_LEADER] = "/v3electionpb.Election/Leader",
    [V3LOCK_OBSERVE] = "/v3electionpb.Election/Observe",
    [V3LOCK_RESIGN] = "/v3electionpb.Election/Resign",
};

static const ProtobufCMessageDescriptor *const request_desc[V3LOCK_N_METHODS] =
    {
        [V3LOCK_LOCK] = &v3lockpb__lock_request__descriptor,
        [V3LOCK_UNLOCK] = &v3lockpb__unlock_request__descriptor,
        [V3LOCK_CAMPAIGN] = &v3electionpb__campaign_request__descriptor,
        [V3LOCK_PROCLAIM] = &v3electionpb__proclaim_request__descriptor,
        [V3LOCK_LEADER] = &v3electionpb__leader_request__descriptor,
        [V3LOCK_OBSERVE] = &v3electionpb__leader_request__descriptor,
        [V3LOCK_RESIGN] = &v3electionpb__resign_request__descriptor,
};

enum state {
    ST_NEW,
    ST_GRANT,        /* lease grant (lease 0) in flight */
    ST_OP,           /* the method's main proposal in flight */
    ST_PROCLAIM,     /* Campaign: proclaiming over an old value */
    ST_WAIT_READ,    /* waiting: read barrier in flight */
    ST_WAIT_WATCH,   /* waiting: watching the key before ours */
    ST_LEADER_READ,  /* Leader: read barrier in flight */
    ST_OBS_READ,     /* Observe: read barrier in flight */
    ST_OBS_PREFIX,   /* Observe: no leader, watching for the first put */
    ST_OBS_KEY,      /* Observe: watching the leader key */
    ST_CLEANUP,      /* client gone: deleting our key */
    ST_FAIL_CLEANUP, /* deleting our key, then failing with r->err */
};

struct binding {
    struct v3lock *l;
    enum v3lock_method m;
};

struct v3lock {
    struct v3lock_backend be;
    struct v3lock_req *reqs; /* every live request */
    size_t n_live;
    bool closing;
    bool freeing; /* inside v3lock_free() */
    /* v3lock_start(): did the request being started end already? */
    struct v3lock_req *starting;
    bool starting_ended;
    struct binding bindings[V3LOCK_N_METHODS];
};

struct v3lock_req {
    struct v3lock *l;
    struct v3lock_req *prev, *next;
    enum v3lock_method m;
    const struct v3lock_reply_ops *ops; /* NULL once the client is gone */
    void *ctx;
    ProtobufCMessage *msg; /* the decoded request */
    enum state st;
    bool pending; /* a backend callback or deferral is outstanding */

    ProtobufCBinaryData name;  /* into msg */
    ProtobufCBinaryData value; /* into msg */
    uint8_t *pfx;              /* "<name>/", then its range end */
    size_t pfx_len;
    uint8_t *key; /* our key (owned, or into msg: key_owned) */
    size_t key_len;
    bool key_owned;
    int64_t lease;
    int64_t rev; /* our key's create revision */
    bool have_key;
    Etcdserverpb__ResponseHeader hdr; /* the header to answer with */
    int err;                          /* ST_FAIL_CLEANUP: the error */

    struct watch_stream *ws;
    bool woke;     /* the watch asked for the next step */
    int watch_err; /* the watch was cancelled under us */
    bool obs_end;  /* Observe: stop (OK) at the next step */
    uint8_t *okey; /* Observe: the leader key being watched */
    size_t okey_len;
    int64_t orev; /* ... from this revision */
    struct v3lock_defer defer;
};

/* --- memory --------------------------------------------------------------- */

static bool alloc_fails(void)
{
    return v3lock_fail_alloc_hook != NULL && v3lock_fail_alloc_hook();
}

static void *xmalloc(size_t n)
{
    if (alloc_fails()) {
        return NULL;
    }
    return malloc(n > 0 ? n : 1);
}

static void *xcalloc(size_t n, size_t size)
{
    if (alloc_fails()) {
        return NULL;
    }
    return calloc(n > 0 ? n : 1, size > 0 ? size : 1);
}

/* Set when an allocation made while unpacking a request failed. */
static bool unpack_oom;

static void *pb_alloc(void *data, size_t size)
{
    void *p = xmalloc(size);

    (void)data;
    if (p == NULL) {
        unpack_oom = true;
    }
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data;
    free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

static void free_msg(ProtobufCMessage *m)
{
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

/* --- request lifetime ----------------------------------------------------- */

static void lock_release(struct v3lock *l);

/* Free @r. It must have nothing outstanding and we must not be inside a
 * hub callback (its watch stream is freed here). */
static void destroy(struct v3lock_req *r)
{
    struct v3lock *l = r->l;

    if (l->starting == r) {
        l->starting_ended = true;
    }
    if (r->ws != NULL) {
        watch_stream_free(r->ws);
    }
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        l->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    if (r->msg != NULL) {
        protobuf_c_message_free_unpacked(r->msg, &pb_allocator);
    }
    if (r->key_owned) {
        free(r->key);
    }
    free(r->pfx);
    free(r->okey);
    free(r);
    l->n_live--;
    if (l->closing && !l->freeing && l->n_live == 0) {
        lock_release(l);
    }
}

static void finish(struct v3lock_req *r, int status, const char *message)
{
    if (r->ops != NULL) {
        const struct v3lock_reply_ops *ops = r->ops;
        r->ops = NULL;
        ops->finish(r->ctx, status, message);
    }
}

/* End @r with the status a failed inner request gets from etcd: its own
 * message under UNKNOWN (etcd's in-process client turns them into plain
 * errors). Our own out-of-memory keeps its status. */
static void fail(struct v3lock_req *r, int rv)
{
    const char *message;
    int status;

    if (rv == IK_ENOMEM) {
        status = ik_grpc_status(rv, &message);
    } else {
        status = GRPC_UNKNOWN;
        message = ik_strerror(rv);
    }
    finish(r, status, message);
    destroy(r);
}

/* End @r with one of the election recipes' errors. */
static void fail_text(struct v3lock_req *r, const char *message)
{
    finish(r, GRPC_UNKNOWN, message);
    destroy(r);
}

/* Answer @msg and end @r. */
static void reply(struct v3lock_req *r, const ProtobufCMessage *msg)
{
    if (r->ops != NULL) {
        if (r->ops->send(r->ctx, msg) != 0) {
            const char *message;
            int status = ik_grpc_status(IK_ENOMEM, &message);
            finish(r, status, message);
        } else {
            finish(r, GRPC_OK, NULL);
        }
    }
    destroy(r);
}

/* --- backend ops ---------------------------------------------------------- */

static void on_done(void *ctx, int status, ProtobufCMessage *resp);
static void on_defer(struct v3lock_defer *d);

static int be_propose(struct v3lock_req *r, const Ikadapb__InternalRequest *ir)
{
    int rv = r->l->be.propose(r->l->be.arg, ir, on_done, r);
    if (rv == 0) {
        r->pending = true;
    }
    return rv;
}

static int be_read(struct v3lock_req *r)
{
    int rv = r->l->be.read(r->l->be.arg, on_done, r);
    if (rv == 0) {
        r->pending = true;
    }
    return rv;
}

static void be_defer(struct v3lock_req *r)
{
    if (!r->pending) {
        r->pending = true;
        r->defer.fn = on_defer;
        r->l->be.defer(r->l->be.arg, &r->defer);
    }
}

/* The watch asked for the next step (from inside a hub callback). */
static void wake(struct v3lock_req *r)
{
    r->woke = true;
    be_defer(r);
}

/* --- building requests ---------------------------------------------------- */

static void bin_set(ProtobufCBinaryData *b, const uint8_t *p, size_t n)
{
    b->data = (uint8_t *)p;
    b->len = n;
}

/* Range of every key under the prefix, sorted by create revision, one key
 * (etcd's WithFirstCreate / WithLastCreate). */
static void prefix_top(const struct v3lock_req *r,
                       Etcdserverpb__RangeRequest *rq, bool last)
{
    etcdserverpb__range_request__init(rq);
    bin_set(&rq->key, r->pfx, r->pfx_len);
    bin_set(&rq->range_end, r->pfx + r->pfx_len, r->pfx_len);
    rq->limit = 1;
    rq->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    rq->sort_order = last ? ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND
                          : ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
}

/* "Our key's create revision is @rev" (0: it does not exist). */
static void cmp_created(const struct v3lock_req *r, Etcdserverpb__Compare *c,
                        int64_t rev)
{
    etcdserverpb__compare__init(c);
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    bin_set(&c->key, r->key, r->key_len);
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    c->create_revision = rev;
}

static void op_range(Etcdserverpb__RequestOp *op,
                     Etcdserverpb__RangeRequest *rq)
{
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = rq;
}

/* Check and propose @txn; on success @r waits in state @st. */
static int propose_txn(struct v3lock_req *r, Etcdserverpb__TxnRequest *txn,
                       enum state st)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    unsigned max = r->l->be.max_txn_ops;
    int rv = kv_check_txn(txn, max > 0 ? max : DEFAULT_MAX_TXN_OPS);

    if (rv != 0) {
        return rv;
    }
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_TXN;
    ir.txn = txn;
    r->st = st;
    return be_propose(r, &ir);
}

/* Delete our key if its create revision still is r->rev (etcd's Resign),
 * or unconditionally (Mutex.Unlock). */
static int propose_delete_own(struct v3lock_req *r, bool if_rev, enum state st)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Etcdserverpb__DeleteRangeRequest del =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__Compare c, *cp = &c;
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT, *opp = &op;
    int rv;

    bin_set(&del.key, r->key, r->key_len);
    if (!if_rev) {
        rv = kv_check_delete_range(&del);
        if (rv != 0) {
            return rv;
        }
        ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE;
        ir.delete_range = &del;
        r->st = st;
        return be_propose(r, &ir);
    }
    cmp_created(r, &c, r->rev);
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op.request_delete_range = &del;
    txn.n_compare = 1;
    txn.compare = &cp;
    txn.n_success = 1;
    txn.success = &opp;
    return propose_txn(r, &txn, st);
}

/* The client left: delete our key if we made one (Lock), resign (Campaign),
 * then free the request. */
static void cleanup(struct v3lock_req *r)
{
    int rv = -1;

    if (r->ws != NULL) {
        watch_stream_free(r->ws);
        r->ws = NULL;
    }
    if (r->have_key && !r->l->closing) {
        if (r->m == V3LOCK_LOCK) {
            rv = propose_delete_own(r, false, ST_CLEANUP);
        } else if (r->m == V3LOCK_CAMPAIGN) {
            rv = propose_delete_own(r, true, ST_CLEANUP);
        }
    }
    if (rv != 0) {
        destroy(r);
    }
}

/* --- watching --------------------------------------------------------------
 */

static int watch_send(void *arg, const Etcdserverpb__WatchResponse *resp);

static size_t watch_queued(void *arg)
{
    (void)arg;
    return 0; /* events are consumed as they come */
}

static const struct watch_stream_ops watch_ops = {
    .send = watch_send,
    .queued_bytes = watch_queued,
};

/* Watch [key, end) (end_len 0: the key alone) from revision @from. */
static int watch_open(struct v3lock_req *r, const uint8_t *key, size_t key_len,
                      const uint8_t *end, size_t end_len, int64_t from,
                      enum state st)
{
    Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest cr =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    struct watch_hub *hub = r->l->be.hub(r->l->be.arg);
    int rv;

    if (alloc_fails()) {
        return IK_ENOMEM;
    }
    rv = watch_stream_new(hub, &watch_ops, r, &r->ws);
    if (rv != 0) {
        r->ws = NULL;
        return rv;
    }
    r->st = st;
    r->woke = false;
    r->watch_err = 0;
    r->obs_end = false;
    bin_set(&cr.key, key, key_len);
    bin_set(&cr.range_end, end, end_len);
    cr.start_revision = from;
    wr.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wr.create_request = &cr;
    /* On error nothing was sent (our send never fails), so no deferral
     * is pending either. */
    rv = watch_stream_recv(r->ws, &wr);
    if (rv != 0) {
        watch_stream_free(r->ws);
        r->ws = NULL;
        return rv;
    }
    return 0;
}

static void watch_close(struct v3lock_req *r)
{
    if (r->ws != NULL) {
        watch_stream_free(r->ws);
        r->ws = NULL;
    }
}

/* Send one LeaderResponse to an observer; a dead call stops it. */
static void observe_send(struct v3lock_req *r,
                         const Etcdserverpb__ResponseHeader *h,
                         const Mvccpb__KeyValue *kv)
{
    V3electionpb__LeaderResponse lr = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;

    if (r->ops == NULL) {
        return;
    }
    if (h != NULL) {
        hdr.cluster_id = h->cluster_id;
        hdr.member_id = h->member_id;
        hdr.revision = h->revision;
        hdr.raft_term = h->raft_term;
    }
    lr.header = &hdr;
    lr.kv = (Mvccpb__KeyValue *)kv;
    if (r->ops->send(r->ctx, &lr.base) != 0) {
        const char *message;
        int status = ik_grpc_status(IK_ENOMEM, &message);
        finish(r, status, message); /* now gone: cleaned up when woken */
        wake(r);
    }
}

/* Hub callback: runs inside the store's commit or our watch_stream_recv();
 * record, defer, never touch the hub. */
static int watch_send(void *arg, const Etcdserverpb__WatchResponse *resp)
{
    struct v3lock_req *r = arg;

    if (r->woke || r->ops == NULL) {
        return 0;
    }
    if (resp->canceled) {
        /* Only compaction cancels our watchers. */
        r->watch_err = IK_ECOMPACTED;
        r->obs_end = true;
        wake(r);
        return 0;
    }
    for (size_t i = 0; i < resp->n_events && !r->woke && r->ops != NULL; i++) {
        const Mvccpb__Event *ev = resp->events[i];
        bool put = ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT;

        if (ev->kv == NULL) {
            continue;
        }
        switch (r->st) {
        case ST_WAIT_WATCH:
            if (!put) {
                wake(r);
            }
            break;
        case ST_OBS_PREFIX:
            if (put) {
                /* The first put on the empty prefix: the new leader. The
                 * header carries the put's revision (etcd's observe). */
                Etcdserverpb__ResponseHeader h =
                    ETCDSERVERPB__RESPONSE_HEADER__INIT;
                if (resp->header != NULL) {
                    h = *resp->header;
                }
                h.revision = ev->kv->mod_revision;
                free(r->okey);
                r->okey_len = 0;
                r->okey = xmalloc(ev->kv->key.len);
                if (r->okey == NULL) {
                    const char *message;
                    int status = ik_grpc_status(IK_ENOMEM, &message);
                    finish(r, status, message);
                    wake(r);
                    break;
                }
                memcpy(r->okey, ev->kv->key.data, ev->kv->key.len);
                r->okey_len = ev->kv->key.len;
                r->orev = ev->kv->mod_revision + 1;
                observe_send(r, &h, ev->kv);
                wake(r);
            }
            break;
        case ST_OBS_KEY:
            if (put) {
                observe_send(r, resp->header, ev->kv);
            } else {
                wake(r);
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

/* --- waiting for the keys before ours ------------------------------------- */

static void wait_done(struct v3lock_req *r, int rv);

/* Read the newest key created before ours (etcd's waitDeletes loop). */
static void wait_next(struct v3lock_req *r)
{
    int rv;

    r->st = ST_WAIT_READ;
    rv = be_read(r);
    if (rv != 0) {
        wait_done(r, rv);
    }
}

static void wait_read_done(struct v3lock_req *r)
{
    Etcdserverpb__RangeRequest rq;
    Etcdserverpb__RangeResponse *resp = NULL;
    const Mvccpb__KeyValue *kv;
    int rv;

    prefix_top(r, &rq, true);
    rq.max_create_revision = r->rev - 1;
    rv = kv_range(r->l->be.kv(r->l->be.arg), &rq, &resp);
    if (rv != 0) {
        wait_done(r, rv);
        return;
    }
    r->l->be.fill_header(r->l->be.arg, resp->header);
    if (resp->n_kvs == 0) {
        if (r->m == V3LOCK_LOCK) {
            r->hdr = *resp->header; /* Lock answers the last read's header */
        }
        free_msg(&resp->base);
        wait_done(r, 0);
        return;
    }
    kv = resp->kvs[0];
    rv = watch_open(r, kv->key.data, kv->key.len, NULL, 0,
                    resp->header->revision + 1, ST_WAIT_WATCH);
    free_msg(&resp->base);
    if (rv != 0) {
        wait_done(r, rv);
    }
}

static void campaign_reply(struct v3lock_req *r);
static void lock_reply(struct v3lock_req *r);

static void wait_done(struct v3lock_req *r, int rv)
{
    watch_close(r);
    if (rv == 0) {
        if (r->m == V3LOCK_LOCK) {
            lock_reply(r);
        } else {
            campaign_reply(r);
        }
        return;
    }
    if (r->m == V3LOCK_LOCK) {
        /* etcd's Mutex.Lock unlocks when waiting fails, then fails. */
        r->err = rv;
        if (propose_delete_own(r, false, ST_FAIL_CLEANUP) == 0) {
            return;
        }
    }
    fail(r, rv);
}

/* --- Lock and Unlock ------------------------------------------------------ */

static void lock_reply(struct v3lock_req *r)
{
    V3lockpb__LockResponse resp = V3LOCKPB__LOCK_RESPONSE__INIT;

    resp.header = &r->hdr;
    bin_set(&resp.key, r->key, r->key_len);
    reply(r, &resp.base);
}

/* The acquiring txn (etcd's Mutex.Lock): create our key unless it exists,
 * and read the current holder in the same txn. */
static int lock_txn(struct v3lock_req *r)
{
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__Compare c, *cp = &c;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT, owner;
    Etcdserverpb__RequestOp ops[4], *succ[2], *fail_ops[2];

    cmp_created(r, &c, 0);
    bin_set(&put.key, r->key, r->key_len);
    put.lease = r->lease;
    bin_set(&get.key, r->key, r->key_len);
    prefix_top(r, &owner, false);
    for (int i = 0; i < 4; i++) {
        etcdserverpb__request_op__init(&ops[i]);
    }
    ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ops[0].request_put = &put;
    op_range(&ops[1], &owner);
    op_range(&ops[2], &get);
    op_range(&ops[3], &owner);
    succ[0] = &ops[0];
    succ[1] = &ops[1];
    fail_ops[0] = &ops[2];
    fail_ops[1] = &ops[3];
    txn.n_compare = 1;
    txn.compare = &cp;
    txn.n_success = 2;
    txn.success = succ;
    txn.n_failure = 2;
    txn.failure = fail_ops;
    return propose_txn(r, &txn, ST_OP);
}

/* The range response of op @i of a txn response, or NULL. */
static const Etcdserverpb__RangeResponse *
txn_range(const Etcdserverpb__TxnResponse *t, size_t i)
{
    if (i >= t->n_responses || t->responses[i] == NULL ||
        t->responses[i]->response_case !=
            ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE) {
        return NULL;
    }
    return t->responses[i]->response_range;
}

static void lock_txn_done(struct v3lock_req *r, Etcdserverpb__TxnResponse *t)
{
    const Etcdserverpb__RangeResponse *mine = txn_range(t, 0);
    const Etcdserverpb__RangeResponse *owner = txn_range(t, 1);

    r->have_key = true;
    if (t->header == NULL || owner == NULL ||
        (!t->succeeded && (mine == NULL || mine->n_kvs == 0))) {
        fail(r, IK_EPROTO);
        return;
    }
    r->hdr = *t->header;
    r->rev = t->succeeded ? t->header->revision : mine->kvs[0]->create_revision;
    if (r->ops == NULL) {
        cleanup(r);
        return;
    }
    if (owner->n_kvs == 0 || owner->kvs[0]->create_revision == r->rev) {
        lock_reply(r); /* nobody before us */
        return;
    }
    wait_next(r);
}

static void unlock_done(struct v3lock_req *r,
                        const Etcdserverpb__DeleteRangeResponse *d)
{
    V3lockpb__UnlockResponse resp = V3LOCKPB__UNLOCK_RESPONSE__INIT;

    resp.header = d->header;
    reply(r, &resp.base);
}

/* --- Campaign, Proclaim, Resign ------------------------------------------- */

static void campaign_reply(struct v3lock_req *r)
{
    V3electionpb__CampaignResponse resp = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
    V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;

    lk.name = r->name;
    bin_set(&lk.key, r->key, r->key_len);
    lk.rev = r->rev;
    lk.lease = r->lease;
    resp.header = &r->hdr;
    resp.leader = &lk;
    reply(r, &resp.base);
}

/* Put our value on our key: only if it does not exist (Campaign), or only
 * if its create revision is still r->rev (Proclaim). */
static int put_txn(struct v3lock_req *r, bool campaign, enum state st)
{
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__Compare c, *cp = &c;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RequestOp op_put = ETCDSERVERPB__REQUEST_OP__INIT;
    Etcdserverpb__RequestOp op_get = ETCDSERVERPB__REQUEST_OP__INIT;
    Etcdserverpb__RequestOp *succ = &op_put, *fail_op = &op_get;

    cmp_created(r, &c, campaign ? 0 : r->rev);
    bin_set(&put.key, r->key, r->key_len);
    put.value = r->value;
    put.lease = r->lease;
    op_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op_put.request_put = &put;
    bin_set(&get.key, r->key, r->key_len);
    op_range(&op_get, &get);
    txn.n_compare = 1;
    txn.compare = &cp;
    txn.n_success = 1;
    txn.success = &succ;
    if (campaign) {
        txn.n_failure = 1;
        txn.failure = &fail_op;
    }
    return propose_txn(r, &txn, st);
}

static bool same_bytes(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void campaign_txn_done(struct v3lock_req *r,
                              const Etcdserverpb__TxnResponse *t)
{
    const Etcdserverpb__RangeResponse *mine = txn_range(t, 0);
    int rv;

    r->have_key = true;
    if (t->header == NULL ||
        (!t->succeeded && (mine == NULL || mine->n_kvs == 0))) {
        fail(r, IK_EPROTO);
        return;
    }
    r->hdr = *t->header; /* Campaign answers this txn's header */
    r->rev = t->header->revision;
    if (r->ops == NULL) {
        if (!t->succeeded) {
            r->rev = mine->kvs[0]->create_revision;
        }
        cleanup(r);
        return;
    }
    if (!t->succeeded) {
        r->rev = mine->kvs[0]->create_revision;
        if (!same_bytes(mine->kvs[0]->value, r->value)) {
            rv = put_txn(r, false, ST_PROCLAIM);
            if (rv != 0) {
                r->err = rv;
                if (propose_delete_own(r, true, ST_FAIL_CLEANUP) != 0) {
                    fail(r, rv);
                }
            }
            return;
        }
    }
    wait_next(r);
}

/* Campaign: the proclaim over our key's old value is done. */
static void campaign_proclaim_done(struct v3lock_req *r,
                                   const Etcdserverpb__TxnResponse *t)
{
    if (r->ops == NULL) {
        cleanup(r);
        return;
    }
    if (!t->succeeded) {
        /* The key went away meanwhile: not ours to resign any more. */
        fail_text(r, V3LOCK_MSG_NOT_LEADER);
        return;
    }
    wait_next(r);
}

/* Proclaim (put if still ours) or Resign (delete if still ours). */
static int leader_txn(struct v3lock_req *r)
{
    if (r->m == V3LOCK_PROCLAIM) {
        return put_txn(r, false, ST_OP);
    }
    return propose_delete_own(r, true, ST_OP);
}

static void leader_txn_done(struct v3lock_req *r,
                            const Etcdserverpb__TxnResponse *t)
{
    if (r->m == V3LOCK_PROCLAIM) {
        V3electionpb__ProclaimResponse resp =
            V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
        if (!t->succeeded) {
            fail_text(r, V3LOCK_MSG_NOT_LEADER);
            return;
        }
        resp.header = t->header;
        reply(r, &resp.base);
    } else {
        V3electionpb__ResignResponse resp = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
        resp.header = t->header;
        reply(r, &resp.base);
    }
}

/* --- Leader and Observe ----------------------------------------------------
 */

/* The current leader: the key with the lowest create revision. */
static int first_created(struct v3lock_req *r,
                         Etcdserverpb__RangeResponse **out)
{
    Etcdserverpb__RangeRequest rq;
    int rv;

    prefix_top(r, &rq, false);
    rv = kv_range(r->l->be.kv(r->l->be.arg), &rq, out);
    if (rv == 0) {
        r->l->be.fill_header(r->l->be.arg, (*out)->header);
    }
    return rv;
}

static void leader_read_done(struct v3lock_req *r)
{
    V3electionpb__LeaderResponse lr = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = first_created(r, &resp);

    if (rv != 0) {
        fail(r, rv);
        return;
    }
    if (resp->n_kvs == 0) {
        free_msg(&resp->base);
        fail_text(r, V3LOCK_MSG_NO_LEADER);
        return;
    }
    lr.header = resp->header;
    lr.kv = resp->kvs[0];
    reply(r, &lr.base);
    free_msg(&resp->base);
}

/* Observe ends with OK whenever its recipe gives up (etcd returns nil
 * when the observe channel closes). */
static void observe_end(struct v3lock_req *r)
{
    finish(r, GRPC_OK, NULL);
    destroy(r);
}

static void observe_next(struct v3lock_req *r)
{
    r->st = ST_OBS_READ;
    if (be_read(r) != 0) {
        observe_end(r);
    }
}

static void observe_read_done(struct v3lock_req *r)
{
    Etcdserverpb__RangeResponse *resp = NULL;
    const Mvccpb__KeyValue *kv;
    int64_t from;
    int rv = first_created(r, &resp);

    if (rv != 0) {
        observe_end(r);
        return;
    }
    from = resp->header->revision + 1;
    if (resp->n_kvs == 0) {
        free_msg(&resp->base);
        rv = watch_open(r, r->pfx, r->pfx_len, r->pfx + r->pfx_len, r->pfx_len,
                        from, ST_OBS_PREFIX);
        if (rv != 0) {
            fail(r, rv);
        }
        return;
    }
    kv = resp->kvs[0];
    observe_send(r, resp->header, kv);
    if (r->ops == NULL) {
        free_msg(&resp->base);
        r->woke = false;
        /* The call died while sending; the deferral cleans up. */
        return;
    }
    rv = watch_open(r, kv->key.data, kv->key.len, NULL, 0, from, ST_OBS_KEY);
    free_msg(&resp->base);
    if (rv != 0) {
        fail(r, rv);
    }
}

/* The next step of a watching Observe, out of the hub callback. */
static void observe_step(struct v3lock_req *r)
{
    int rv;

    watch_close(r);
    if (r->obs_end) {
        observe_end(r);
        return;
    }
    if (r->st == ST_OBS_PREFIX) {
        /* Now follow the new leader key from just after its creation. */
        rv = watch_open(r, r->okey, r->okey_len, NULL, 0, r->orev, ST_OBS_KEY);
        if (rv != 0) {
            fail(r, rv);
        }
        return;
    }
    observe_next(r); /* the leader key is gone: who leads now? */
}

/* --- dispatch ------------------------------------------------------------- */

static void method_main(struct v3lock_req *r);

static void grant_done(struct v3lock_req *r,
                       const Etcdserverpb__LeaseGrantResponse *g)
{
    r->lease = g->id;
    if (r->ops == NULL) {
        cleanup(r);
        return;
    }
    method_main(r);
}

/* Backend completion. */
static void on_done(void *ctx, int status, ProtobufCMessage *resp)
{
    struct v3lock_req *r = ctx;

    r->pending = false;
    if (r->l->closing) {
        free_msg(resp);
        destroy(r);
        return;
    }
    if (r->st == ST_CLEANUP) {
        free_msg(resp);
        destroy(r);
        return;
    }
    if (r->st == ST_FAIL_CLEANUP) {
        free_msg(resp);
        fail(r, r->err);
        return;
    }
    if (status != 0 || (resp == NULL && r->st != ST_WAIT_READ &&
                        r->st != ST_LEADER_READ && r->st != ST_OBS_READ)) {
        free_msg(resp);
        if (r->ops == NULL) {
            cleanup(r);
        } else if (r->st == ST_OBS_READ) {
            observe_end(r);
        } else if (r->st == ST_WAIT_READ) {
            wait_done(r, status != 0 ? status : IK_EPROTO);
        } else if (r->st == ST_PROCLAIM) {
            /* etcd's Campaign resigns when its proclaim fails. */
            r->err = status != 0 ? status : IK_EPROTO;
            if (propose_delete_own(r, true, ST_FAIL_CLEANUP) != 0) {
                fail(r, r->err);
            }
        } else {
            fail(r, status != 0 ? status : IK_EPROTO);
        }
        return;
    }
    if (r->ops == NULL && r->st != ST_OP && r->st != ST_GRANT &&
        r->st != ST_PROCLAIM) {
        free_msg(resp);
        cleanup(r);
        return;
    }
    switch (r->st) {
    case ST_GRANT:
        grant_done(r, (const Etcdserverpb__LeaseGrantResponse *)resp);
        break;
    case ST_OP:
        if (r->m == V3LOCK_LOCK) {
            lock_txn_done(r, (Etcdserverpb__TxnResponse *)resp);
        } else if (r->m == V3LOCK_CAMPAIGN) {
            campaign_txn_done(r, (const Etcdserverpb__TxnResponse *)resp);
        } else if (r->m == V3LOCK_UNLOCK) {
            unlock_done(r, (const Etcdserverpb__DeleteRangeResponse *)resp);
        } else if (r->ops == NULL) {
            cleanup(r);
        } else {
            leader_txn_done(r, (const Etcdserverpb__TxnResponse *)resp);
        }
        break;
    case ST_PROCLAIM:
        campaign_proclaim_done(r, (const Etcdserverpb__TxnResponse *)resp);
        break;
    case ST_WAIT_READ:
        wait_read_done(r);
        break;
    case ST_LEADER_READ:
        leader_read_done(r);
        break;
    case ST_OBS_READ:
        observe_read_done(r);
        break;
    default:
        fail(r, IK_EPROTO);
        break;
    }
    free_msg(resp);
}

/* Deferred step (a watch woke us, or the client left). */
static void on_defer(struct v3lock_defer *d)
{
    struct v3lock_req *r =
        (struct v3lock_req *)((char *)d - offsetof(struct v3lock_req, defer));

    r->pending = false;
    if (r->l->closing) {
        destroy(r);
        return;
    }
    if (r->ops == NULL) {
        cleanup(r);
        return;
    }
    if (!r->woke) {
        return; /* a stale wake-up: the request moved on */
    }
    r->woke = false;
    switch (r->st) {
    case ST_WAIT_WATCH:
        watch_close(r);
        if (r->watch_err != 0) {
            wait_done(r, r->watch_err);
        } else {
            wait_next(r);
        }
        break;
    case ST_OBS_PREFIX:
    case ST_OBS_KEY:
        observe_step(r);
        break;
    default:
        break;
    }
}

/* Build "<name>/" and its range end ("<name>0") in one buffer. */
static int set_prefix(struct v3lock_req *r, ProtobufCBinaryData name)
{
    size_t n = name.len + 1;

    r->pfx = xmalloc(2 * n);
    if (r->pfx == NULL) {
        return IK_ENOMEM;
    }
    if (name.len > 0) {
        memcpy(r->pfx, name.data, name.len);
    }
    r->pfx[name.len] = '/';
    memcpy(r->pfx + n, r->pfx, n);
    r->pfx[2 * n - 1] = '/' + 1;
    r->pfx_len = n;
    return 0;
}

/* Our key: "<name>/<lease>", the lease as Go's %x prints an int64. */
static int set_own_key(struct v3lock_req *r)
{
    char hex[24];
    uint64_t mag = r->lease < 0 ? -(uint64_t)r->lease : (uint64_t)r->lease;
    int n = snprintf(hex, sizeof hex, "%s%llx", r->lease < 0 ? "-" : "",
                     (unsigned long long)mag);

    if (r->key_owned) {
        free(r->key);
    }
    r->key = xmalloc(r->pfx_len + (size_t)n);
    if (r->key == NULL) {
        r->key_owned = false;
        return IK_ENOMEM;
    }
    r->key_owned = true;
    memcpy(r->key, r->pfx, r->pfx_len);
    memcpy(r->key + r->pfx_len, hex, (size_t)n);
    r->key_len = r->pfx_len + (size_t)n;
    return 0;
}

/* The method's main step, once the lease is known. */
static void method_main(struct v3lock_req *r)
{
    int rv = 0;

    switch (r->m) {
    case V3LOCK_LOCK:
        rv = set_own_key(r);
        if (rv == 0) {
            rv = lock_txn(r);
        }
        break;
    case V3LOCK_CAMPAIGN:
        rv = set_own_key(r);
        if (rv == 0) {
            rv = put_txn(r, true, ST_OP);
        }
        break;
    case V3LOCK_PROCLAIM:
    case V3LOCK_RESIGN:
        rv = leader_txn(r);
        break;
    default:
        rv = IK_EPROTO;
        break;
    }
    if (rv != 0) {
        fail(r, rv);
    }
}

/* Lease 0: grant one for the session (etcd's NewSession does). */
static void with_lease(struct v3lock_req *r)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    int rv;

    if (r->lease != 0) {
        method_main(r);
        return;
    }
    g.ttl = V3LOCK_SESSION_TTL;
    g.id = r->l->be.lease_new_id(r->l->be.arg);
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_GRANT;
    ir.lease_grant = &g;
    r->st = ST_GRANT;
    rv = be_propose(r, &ir);
    if (rv != 0) {
        fail(r, rv);
    }
}

static void begin(struct v3lock_req *r)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Etcdserverpb__DeleteRangeRequest del =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    const V3electionpb__LeaderKey *lk = NULL;
    int rv = 0;

    switch (r->m) {
    case V3LOCK_LOCK: {
        const V3lockpb__LockRequest *q = (const V3lockpb__LockRequest *)r->msg;
        r->name = q->name;
        r->lease = q->lease;
        rv = set_prefix(r, q->name);
        if (rv == 0) {
            with_lease(r);
            return;
        }
        break;
    }
    case V3LOCK_UNLOCK: {
        const V3lockpb__UnlockRequest *q =
            (const V3lockpb__UnlockRequest *)r->msg;
        del.key = q->key;
        rv = kv_check_delete_range(&del);
        if (rv == 0) {
            ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE;
            ir.delete_range = &del;
            r->st = ST_OP;
            rv = be_propose(r, &ir);
        }
        break;
    }
    case V3LOCK_CAMPAIGN: {
        const V3electionpb__CampaignRequest *q =
            (const V3electionpb__CampaignRequest *)r->msg;
        r->name = q->name;
        r->value = q->value;
        r->lease = q->lease;
        rv = set_prefix(r, q->name);
        if (rv == 0) {
            with_lease(r);
            return;
        }
        break;
    }
    case V3LOCK_PROCLAIM:
    case V3LOCK_RESIGN:
        if (r->m == V3LOCK_PROCLAIM) {
            const V3electionpb__ProclaimRequest *q =
                (const V3electionpb__ProclaimRequest *)r->msg;
            lk = q->leader;
            r->value = q->value;
        } else {
            lk = ((const V3electionpb__ResignRequest *)r->msg)->leader;
        }
        if (lk == NULL) {
            fail_text(r, V3LOCK_MSG_NO_LEADER_KEY);
            return;
        }
        r->name = lk->name;
        r->key = lk->key.data;
        r->key_len = lk->key.len;
        r->rev = lk->rev;
        r->lease = lk->lease;
        with_lease(r);
        return;
    case V3LOCK_LEADER:
    case V3LOCK_OBSERVE: {
        const V3electionpb__LeaderRequest *q =
            (const V3electionpb__LeaderRequest *)r->msg;
        r->name = q->name;
        rv = set_prefix(r, q->name);
        if (rv == 0) {
            r->st = r->m == V3LOCK_LEADER ? ST_LEADER_READ : ST_OBS_READ;
            rv = be_read(r);
        }
        if (rv != 0 && r->m == V3LOCK_OBSERVE && rv != IK_ENOMEM) {
            observe_end(r);
            return;
        }
        break;
    }
    default:
        rv = IK_EPROTO;
        break;
    }
    if (rv != 0) {
        fail(r, rv);
    }
}

/* --- public --------------------------------------------------------------- */

int v3lock_new(const struct v3lock_backend *be, struct v3lock **out)
{
    struct v3lock *l = xcalloc(1, sizeof *l);

    if (l == NULL) {
        return IK_ENOMEM;
    }
    l->be = *be;
    for (int i = 0; i < V3LOCK_N_METHODS; i++) {
        l->bindings[i].l = l;
        l->bindings[i].m = (enum v3lock_method)i;
    }
    *out = l;
    return 0;
}

int v3lock_start(struct v3lock *l, enum v3lock_method m, const uint8_t *data,
                 size_t len, const struct v3lock_reply_ops *ops, void *ctx,
                 struct v3lock_req **out)
{
    struct v3lock_req *r;

    if (l->closing) {
        return IK_ESTOPPED;
    }
    if ((unsigned)m >= V3LOCK_N_METHODS) {
        return IK_EINVAL;
    }
    r = xcalloc(1, sizeof *r);
    if (r == NULL) {
        return IK_ENOMEM;
    }
    unpack_oom = false;
    r->msg =
        protobuf_c_message_unpack(request_desc[m], &pb_allocator, len, data);
    if (r->msg == NULL) {
        free(r);
        return unpack_oom ? IK_ENOMEM : IK_EMALFORMED;
    }
    r->l = l;
    r->m = m;
    r->ops = ops;
    r->ctx = ctx;
    r->next = l->reqs;
    if (l->reqs != NULL) {
        l->reqs->prev = r;
    }
    l->reqs = r;
    l->n_live++;
    l->starting = r;
    l->starting_ended = false;
    begin(r);
    *out = l->starting_ended ? NULL : r;
    l->starting = NULL;
    return 0;
}

void v3lock_cancel(struct v3lock_req *r)
{
    r->ops = NULL;
    r->ctx = NULL;
    be_defer(r); /* unless something is pending: its callback cleans up */
}

size_t v3lock_live(const struct v3lock *l)
{
    return l->n_live;
}

static void lock_release(struct v3lock *l)
{
    free(l);
}

void v3lock_free(struct v3lock *l)
{
    struct v3lock_req *r, *next;

    if (l == NULL) {
        return;
    }
    l->closing = true;
    l->freeing = true;
    for (r = l->reqs; r != NULL; r = next) {
        next = r->next;
        r->ops = NULL;
        if (!r->pending) {
            destroy(r);
        }
    }
    l->freeing = false;
    if (l->n_live == 0) {
        lock_release(l);
    }
}

/* --- gRPC binding ----------------------------------------------------------
 */

static int grpc_reply_send(void *ctx, const ProtobufCMessage *msg)
{
    return grpc_call_send_proto(ctx, msg);
}

static void grpc_reply_finish(void *ctx, int status, const char *message)
{
    struct grpc_call *call = ctx;

    grpc_call_set_data(call, NULL);
    grpc_call_finish(call, status, message);
}

static const struct v3lock_reply_ops grpc_reply_ops = {
    .send = grpc_reply_send,
    .finish = grpc_reply_finish,
};

static void grpc_on_message(struct grpc_call *call, const uint8_t *data,
                            size_t len)
{
    const struct binding *b = grpc_call_method(call)->data;
    struct v3lock_req *r = NULL;
    int rv;

    rv = v3lock_start(b->l, b->m, data, len, &grpc_reply_ops, call, &r);
    if (rv != 0) {
        grpc_call_finish_error(call, rv);
    } else if (r != NULL) {
        grpc_call_set_data(call, r);
    }
}

static void grpc_on_cancel(struct grpc_call *call)
{
    struct v3lock_req *r = grpc_call_get_data(call);

    if (r != NULL) {
        grpc_call_set_data(call, NULL);
        v3lock_cancel(r);
    }
}

void v3lock_grpc_methods(struct v3lock *l, struct grpc_method *out)
{
    for (int i = 0; i < V3LOCK_N_METHODS; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].path = v3lock_paths[i];
        out[i].kind = i == V3LOCK_OBSERVE ? GRPC_SERVER_STREAMING : GRPC_UNARY;
        out[i].on_message = grpc_on_message;
        out[i].on_cancel = grpc_on_cancel;
        out[i].data = &l->bindings[i];
    }
}
