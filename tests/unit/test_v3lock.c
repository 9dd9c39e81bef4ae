/* Unit tests for server/v3lock: the v3lock and v3election recipes on a
 * fake backend made of a real store, lessor and watch hub, whose
 * proposals, reads and deferrals complete only when the test pumps them.
 * Expected answers follow etcd 3.4.23 (checked with
 * tests/integration/lock_client against a real etcd). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/history.h"
#include "server/kv.h"
#include "server/lease.h"
#include "server/mvcc.h"
#include "server/v3lock.h"
#include "server/watch.h"

#define BIN(s) ((ProtobufCBinaryData){strlen(s), (uint8_t *)(s)})
#define CLUSTER 7
#define MEMBER 9
#define TERM 3

/* ---- fake backend ---------------------------------------------------------
 */

enum job_kind { J_PROPOSE, J_READ, J_DEFER };

struct job {
    enum job_kind kind;
    uint8_t *packed; /* J_PROPOSE: the InternalRequest */
    size_t len;
    v3lock_done_fn done;
    void *ctx;
    struct v3lock_defer *d;
    struct job *next;
};

static struct {
    struct mvcc store;
    struct lessor lessor;
    struct kv kv;
    struct watch_hub *hub;
    struct job *head, *tail;
    int64_t next_lease;
    int propose_error; /* propose() returns this */
    int read_error;    /* read() returns this */
    int apply_error;   /* proposals complete with this status */
    int read_status;   /* reads complete with this status */
    size_t proposals;  /* proposals accepted */
    size_t grants;     /* lease grants applied */
    struct v3lock *l;
} F;

static void commit_hook(void *arg, const struct mvcc *m)
{
    (void)arg;
    lease_commit_hook(&F.lessor, m);
    watch_hub_notify_mvcc(F.hub, m);
}

static void fake_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    (void)arg;
    h->cluster_id = CLUSTER;
    h->member_id = MEMBER;
    h->raft_term = TERM;
    h->revision = mvcc_rev(&F.store);
}

static void hub_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    (void)arg;
    h->cluster_id = CLUSTER;
    h->member_id = MEMBER;
    h->raft_term = TERM;
}

static void enqueue(struct job *j)
{
    j->next = NULL;
    if (F.tail != NULL) {
        F.tail->next = j;
    } else {
        F.head = j;
    }
    F.tail = j;
}

static int fake_propose(void *arg, const Ikadapb__InternalRequest *req,
                        v3lock_done_fn done, void *ctx)
{
    struct job *j;

    (void)arg;
    if (F.propose_error != 0) {
        return F.propose_error;
    }
    j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->kind = J_PROPOSE;
    j->len = ikadapb__internal_request__get_packed_size(req);
    j->packed = malloc(j->len + 1);
    assert_non_null(j->packed);
    ikadapb__internal_request__pack(req, j->packed);
    j->done = done;
    j->ctx = ctx;
    enqueue(j);
    F.proposals++;
    return 0;
}

static int fake_read(void *arg, v3lock_done_fn done, void *ctx)
{
    struct job *j;

    (void)arg;
    if (F.read_error != 0) {
        return F.read_error;
    }
    j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->kind = J_READ;
    j->done = done;
    j->ctx = ctx;
    enqueue(j);
    return 0;
}

static void fake_defer(void *arg, struct v3lock_defer *d)
{
    struct job *j = calloc(1, sizeof *j);

    (void)arg;
    assert_non_null(j);
    j->kind = J_DEFER;
    j->d = d;
    enqueue(j);
}

static struct kv *fake_kv(void *arg)
{
    (void)arg;
    return &F.kv;
}

static struct watch_hub *fake_hub(void *arg)
{
    (void)arg;
    return F.hub;
}

static int64_t fake_lease_id(void *arg)
{
    (void)arg;
    return F.next_lease++;
}

/* Apply one proposal as the node's FSM would. */
static int apply(const Ikadapb__InternalRequest *ir, ProtobufCMessage **out)
{
    int rv;

    switch (ir->op_case) {
    case IKADAPB__INTERNAL_REQUEST__OP_TXN:
        rv = kv_txn(&F.kv, ir->txn, (Etcdserverpb__TxnResponse **)out);
        break;
    case IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE:
        rv = kv_delete_range(&F.kv, ir->delete_range,
                             (Etcdserverpb__DeleteRangeResponse **)out);
        break;
    case IKADAPB__INTERNAL_REQUEST__OP_PUT:
        rv = kv_put(&F.kv, ir->put, (Etcdserverpb__PutResponse **)out);
        break;
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_GRANT: {
        Etcdserverpb__LeaseGrantResponse *g = malloc(sizeof *g);
        Etcdserverpb__ResponseHeader *h = malloc(sizeof *h);
        int64_t ttl = 0;
        assert_non_null(g);
        assert_non_null(h);
        rv = lease_grant(&F.lessor, ir->lease_grant->id, ir->lease_grant->ttl,
                         0, &ttl);
        if (rv != 0) {
            free(g);
            free(h);
            break;
        }
        F.grants++;
        etcdserverpb__lease_grant_response__init(g);
        etcdserverpb__response_header__init(h);
        g->header = h;
        g->id = ir->lease_grant->id;
        g->ttl = ttl;
        *out = &g->base;
        break;
    }
    default:
        fail_msg("unexpected proposal %d", ir->op_case);
        return IK_EINVAL;
    }
    return rv;
}

/* The header of a typed response (every one here has it first). */
static Etcdserverpb__ResponseHeader *header_of(ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
                                                        "header");
    assert_non_null(f);
    return *(Etcdserverpb__ResponseHeader **)((char *)m + f->offset);
}

/* Complete the oldest job. Returns false when there was none. */
static bool pump_one(void)
{
    struct job *j = F.head;

    if (j == NULL) {
        return false;
    }
    F.head = j->next;
    if (F.head == NULL) {
        F.tail = NULL;
    }
    if (j->kind == J_DEFER) {
        j->d->fn(j->d);
    } else if (j->kind == J_READ) {
        j->done(j->ctx, F.read_status, NULL);
    } else {
        Ikadapb__InternalRequest *ir =
            ikadapb__internal_request__unpack(NULL, j->len, j->packed);
        ProtobufCMessage *resp = NULL;
        int rv;
        assert_non_null(ir);
        rv = F.apply_error != 0 ? F.apply_error : apply(ir, &resp);
        ikadapb__internal_request__free_unpacked(ir, NULL);
        if (rv == 0) {
            fake_header(NULL, header_of(resp));
        }
        j->done(j->ctx, rv, resp);
    }
    free(j->packed);
    free(j);
    return true;
}

static void pump(void)
{
    for (int i = 0; i < 10000 && pump_one(); i++) {
    }
    assert_null(F.head);
}

static const struct v3lock_backend fake_backend = {
    .arg = NULL,
    .propose = fake_propose,
    .read = fake_read,
    .defer = fake_defer,
    .kv = fake_kv,
    .hub = fake_hub,
    .fill_header = fake_header,
    .lease_new_id = fake_lease_id,
    .max_txn_ops = 0,
};

static int setup(void **state)
{
    struct lease_config lcfg;
    struct watch_hub_config wcfg = {0};

    (void)state;
    memset(&F, 0, sizeof F);
    mvcc_init(&F.store);
    lease_config_init(&lcfg, 100, 1000);
    lease_init(&F.lessor, &lcfg, &F.store);
    F.kv.store = &F.store;
    F.kv.lease_exists = lease_exists_cb;
    F.kv.lease_data = &F.lessor;
    wcfg.rev = mvcc_rev(&F.store);
    wcfg.compact_rev = mvcc_compact_rev(&F.store);
    wcfg.history = history_read;
    wcfg.history_arg = &F.store;
    wcfg.fill_header = hub_header;
    assert_int_equal(watch_hub_new(&wcfg, &F.hub), 0);
    mvcc_set_commit_hook(&F.store, commit_hook, NULL);
    F.next_lease = 0x1a2b3c;
    assert_int_equal(v3lock_new(&fake_backend, &F.l), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    v3lock_fail_alloc_hook = NULL;
    F.propose_error = F.read_error = F.apply_error = F.read_status = 0;
    v3lock_free(F.l);
    pump(); /* callbacks still due free what they hold */
    watch_hub_free(F.hub);
    lease_close(&F.lessor);
    mvcc_close(&F.store);
    return 0;
}

/* ---- a fake client ------------------------------------------------------- */

#define MAX_MSGS 16

struct client {
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *msgs[MAX_MSGS];
    size_t n;
    bool finished;
    int status;
    char message[160];
    bool fail_send;
    struct v3lock_req *req;
};

static int client_send(void *ctx, const ProtobufCMessage *msg)
{
    struct client *c = ctx;
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);

    assert_false(c->finished);
    assert_ptr_equal(msg->descriptor, c->desc);
    if (c->fail_send) {
        free(buf);
        return IK_ENOMEM;
    }
    assert_non_null(buf);
    protobuf_c_message_pack(msg, buf);
    assert_true(c->n < MAX_MSGS);
    c->msgs[c->n] = protobuf_c_message_unpack(c->desc, NULL, len, buf);
    assert_non_null(c->msgs[c->n]);
    c->n++;
    free(buf);
    return 0;
}

static void client_finish(void *ctx, int status, const char *message)
{
    struct client *c = ctx;

    assert_false(c->finished);
    c->finished = true;
    c->status = status;
    snprintf(c->message, sizeof c->message, "%s",
             message != NULL ? message : "");
    c->req = NULL;
}

static const struct v3lock_reply_ops client_ops = {
    .send = client_send,
    .finish = client_finish,
};

static void client_free(struct client *c)
{
    for (size_t i = 0; i < c->n; i++) {
        protobuf_c_message_free_unpacked(c->msgs[i], NULL);
    }
    c->n = 0;
}

static const ProtobufCMessageDescriptor *resp_desc(enum v3lock_method m)
{
    switch (m) {
    case V3LOCK_LOCK:
        return &v3lockpb__lock_response__descriptor;
    case V3LOCK_UNLOCK:
        return &v3lockpb__unlock_response__descriptor;
    case V3LOCK_CAMPAIGN:
        return &v3electionpb__campaign_response__descriptor;
    case V3LOCK_PROCLAIM:
        return &v3electionpb__proclaim_response__descriptor;
    case V3LOCK_RESIGN:
        return &v3electionpb__resign_response__descriptor;
    default:
        return &v3electionpb__leader_response__descriptor;
    }
}

/* Start method @m with @req packed; returns v3lock_start()'s result. */
static int start(struct client *c, enum v3lock_method m,
                 const ProtobufCMessage *req)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len + 1);
    int rv;

    assert_non_null(buf);
    protobuf_c_message_pack(req, buf);
    memset(c, 0, sizeof *c);
    c->desc = resp_desc(m);
    rv = v3lock_start(F.l, m, buf, len, &client_ops, c, &c->req);
    free(buf);
    if (c->finished) {
        assert_null(c->req);
    }
    return rv;
}

static void lock(struct client *c, const char *name, int64_t lease)
{
    V3lockpb__LockRequest q = V3LOCKPB__LOCK_REQUEST__INIT;
    q.name = BIN(name);
    q.lease = lease;
    assert_int_equal(start(c, V3LOCK_LOCK, &q.base), 0);
}

static void unlock(struct client *c, const char *key)
{
    V3lockpb__UnlockRequest q = V3LOCKPB__UNLOCK_REQUEST__INIT;
    q.key = BIN(key);
    assert_int_equal(start(c, V3LOCK_UNLOCK, &q.base), 0);
}

static void campaign(struct client *c, const char *name, int64_t lease,
                     const char *value)
{
    V3electionpb__CampaignRequest q = V3ELECTIONPB__CAMPAIGN_REQUEST__INIT;
    q.name = BIN(name);
    q.lease = lease;
    q.value = BIN(value);
    assert_int_equal(start(c, V3LOCK_CAMPAIGN, &q.base), 0);
}

static void proclaim(struct client *c, const char *name, const char *key,
                     int64_t rev, int64_t lease, const char *value)
{
    V3electionpb__ProclaimRequest q = V3ELECTIONPB__PROCLAIM_REQUEST__INIT;
    V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
    lk.name = BIN(name);
    lk.key = BIN(key != NULL ? key : "");
    lk.rev = rev;
    lk.lease = lease;
    q.leader = key != NULL ? &lk : NULL;
    q.value = BIN(value);
    assert_int_equal(start(c, V3LOCK_PROCLAIM, &q.base), 0);
}

static void resign(struct client *c, const char *name, const char *key,
                   int64_t rev, int64_t lease)
{
    V3electionpb__ResignRequest q = V3ELECTIONPB__RESIGN_REQUEST__INIT;
    V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
    lk.name = BIN(name);
    lk.key = BIN(key != NULL ? key : "");
    lk.rev = rev;
    lk.lease = lease;
    q.leader = key != NULL ? &lk : NULL;
    assert_int_equal(start(c, V3LOCK_RESIGN, &q.base), 0);
}

static void leader(struct client *c, enum v3lock_method m, const char *name)
{
    V3electionpb__LeaderRequest q = V3ELECTIONPB__LEADER_REQUEST__INIT;
    q.name = BIN(name);
    assert_int_equal(start(c, m, &q.base), 0);
}

static void cancel(struct client *c)
{
    assert_false(c->finished);
    assert_non_null(c->req);
    v3lock_cancel(c->req);
    c->req = NULL;
}

static void assert_ok(const struct client *c)
{
    assert_true(c->finished);
    if (c->status != GRPC_OK) {
        fail_msg("status %d: %s", c->status, c->message);
    }
    assert_int_equal(c->n, 1);
}

static void assert_err(const struct client *c, int status, const char *msg)
{
    assert_true(c->finished);
    assert_int_equal(c->status, status);
    assert_string_equal(c->message, msg);
    assert_int_equal(c->n, 0);
}

static void assert_header(const Etcdserverpb__ResponseHeader *h, int64_t rev)
{
    assert_non_null(h);
    assert_int_equal(h->cluster_id, CLUSTER);
    assert_int_equal(h->member_id, MEMBER);
    assert_int_equal(h->raft_term, TERM);
    assert_int_equal(h->revision, rev);
}

static const V3lockpb__LockResponse *lock_resp(const struct client *c)
{
    assert_ok(c);
    return (const V3lockpb__LockResponse *)c->msgs[0];
}

static void assert_bytes(ProtobufCBinaryData b, const char *s)
{
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.data, s, b.len);
}

/* ---- store helpers --------------------------------------------------------
 */

static int64_t grant(int64_t id)
{
    assert_int_equal(lease_grant(&F.lessor, id, 30, 0, NULL), 0);
    return id;
}

static void revoke(int64_t id)
{
    assert_int_equal(lease_revoke(&F.lessor, id), 0);
}

static int64_t put(const char *k, const char *v)
{
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    int64_t rev;
    r.key = BIN(k);
    r.value = BIN(v);
    assert_int_equal(kv_put(&F.kv, &r, &resp), 0);
    rev = resp->header->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

static int64_t del(const char *k)
{
    Etcdserverpb__DeleteRangeRequest r =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    int64_t rev;
    r.key = BIN(k);
    assert_int_equal(kv_delete_range(&F.kv, &r, &resp), 0);
    rev = resp->header->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

/* The key's create revision, or 0 when it does not exist; *lease gets its
 * lease and *value (if not NULL, 32 bytes) its value. */
static int64_t get(const char *k, int64_t *lease, char *value)
{
    struct mvcc_kv kv;
    int rv = mvcc_get(&F.store, (const uint8_t *)k, strlen(k), &kv);
    if (rv == IK_ENOENT) {
        return 0;
    }
    assert_int_equal(rv, 0);
    if (lease != NULL) {
        *lease = kv.lease;
    }
    if (value != NULL) {
        snprintf(value, 32, "%.*s", (int)kv.value_len, (const char *)kv.value);
    }
    return kv.create_revision;
}

static int64_t rev_now(void)
{
    return mvcc_rev(&F.store);
}

/* ---- Lock -----------------------------------------------------------------
 */

static void test_lock_free_lock(void **state)
{
    struct client c;
    int64_t lease;

    (void)state;
    grant(0x2a);
    lock(&c, "mylock", 0x2a);
    assert_false(c.finished);
    assert_non_null(c.req);
    pump();
    assert_header(lock_resp(&c)->header, 2);
    assert_bytes(lock_resp(&c)->key, "mylock/2a");
    assert_int_equal(get("mylock/2a", &lease, NULL), 2);
    assert_int_equal(lease, 0x2a);
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&c);
}

/* Lease 0: a 60 s lease is granted first, as etcd's session does. */
static void test_lock_grants_session_lease(void **state)
{
    struct client c;
    int64_t granted = 0, lease = 0;

    (void)state;
    lock(&c, "l", 0);
    pump();
    assert_bytes(lock_resp(&c)->key, "l/1a2b3c");
    assert_int_equal(F.grants, 1);
    assert_int_equal(lease_time_to_live(&F.lessor, 0x1a2b3c, 0, &granted, NULL),
                     0);
    assert_int_equal(granted, V3LOCK_SESSION_TTL);
    assert_int_equal(get("l/1a2b3c", &lease, NULL), 2);
    assert_int_equal(lease, 0x1a2b3c);
    client_free(&c);
}

/* Go's %x of a negative lease id. */
static void test_lock_negative_lease_key(void **state)
{
    struct client c;

    (void)state;
    grant(-26);
    lock(&c, "n", -26);
    pump();
    assert_bytes(lock_resp(&c)->key, "n/-1a");
    client_free(&c);
}

/* Waiters queue by create revision, each on the key just before its own;
 * a waiter whose predecessor leaves re-reads and waits on the next one. */
static void test_lock_queue(void **state)
{
    struct client a, b, c, ua;

    (void)state;
    grant(1);
    grant(2);
    grant(3);
    lock(&a, "q", 1);
    pump();
    assert_header(lock_resp(&a)->header, 2);
    lock(&b, "q", 2);
    pump();
    lock(&c, "q", 3);
    pump();
    assert_false(b.finished);
    assert_false(c.finished);
    assert_int_equal(get("q/2", NULL, NULL), 3);
    assert_int_equal(get("q/3", NULL, NULL), 4);
    assert_int_equal(v3lock_live(F.l), 2);

    /* b leaves: its key goes, c now waits on a. */
    cancel(&b);
    pump();
    assert_int_equal(get("q/2", NULL, NULL), 0);
    assert_int_equal(rev_now(), 5);
    assert_false(c.finished);
    assert_int_equal(v3lock_live(F.l), 1);

    /* A key outside the prefix changes nothing. */
    put("q0", "x");
    del("q0");
    pump();
    assert_false(c.finished);

    /* a unlocks: c holds the lock, answering the read after the delete. */
    unlock(&ua, "q/1");
    pump();
    assert_ok(&ua);
    assert_header(((V3lockpb__UnlockResponse *)ua.msgs[0])->header, 8);
    assert_header(lock_resp(&c)->header, 8);
    assert_bytes(lock_resp(&c)->key, "q/3");
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&a);
    client_free(&c);
    client_free(&ua);
}

/* The holder's lease expires: the next waiter gets the lock. */
static void test_lock_holder_lease_expires(void **state)
{
    struct client a, b;

    (void)state;
    grant(1);
    grant(2);
    lock(&a, "e", 1);
    lock(&b, "e", 2);
    pump();
    assert_ok(&a);
    assert_false(b.finished);
    revoke(1);
    pump();
    assert_header(lock_resp(&b)->header, 4);
    assert_bytes(lock_resp(&b)->key, "e/2");
    client_free(&a);
    client_free(&b);
}

/* Locking again with the same lease reuses the key (etcd's Mutex). */
static void test_lock_same_lease_reuses_key(void **state)
{
    struct client a, b;

    (void)state;
    grant(5);
    lock(&a, "r", 5);
    pump();
    lock(&b, "r", 5);
    pump();
    assert_bytes(lock_resp(&b)->key, "r/5");
    assert_header(lock_resp(&b)->header, 2); /* nothing written */
    assert_int_equal(get("r/5", NULL, NULL), 2);
    client_free(&a);
    client_free(&b);
}

/* A waiter whose own lease expires keeps waiting and then "gets" a key
 * that no longer exists: etcd's server-side Mutex does exactly that. */
static void test_lock_waiter_lease_expires(void **state)
{
    struct client a, b;

    (void)state;
    grant(1);
    grant(2);
    lock(&a, "w", 1);
    lock(&b, "w", 2);
    pump();
    revoke(2);
    pump();
    assert_int_equal(get("w/2", NULL, NULL), 0);
    assert_false(b.finished);
    del("w/1");
    pump();
    assert_bytes(lock_resp(&b)->key, "w/2");
    client_free(&a);
    client_free(&b);
}

static void test_lock_cancel_during_txn(void **state)
{
    struct client a, b;

    (void)state;
    grant(1);
    grant(2);
    lock(&a, "c", 1);
    pump();
    lock(&b, "c", 2);
    cancel(&b); /* the acquiring txn is still in flight */
    pump();
    assert_false(b.finished);
    assert_int_equal(get("c/2", NULL, NULL), 0);
    assert_int_equal(rev_now(), 4); /* created, then deleted */
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&a);
}

static void test_lock_cancel_during_grant(void **state)
{
    struct client a;

    (void)state;
    lock(&a, "g", 0);
    cancel(&a);
    pump();
    assert_int_equal(F.grants, 1);
    assert_int_equal(rev_now(), 1); /* no key was made */
    assert_int_equal(v3lock_live(F.l), 0);
}

static void test_lock_errors(void **state)
{
    struct client c;
    uint8_t junk[] = {0x0a, 0x05, 'a'}; /* field 1 longer than the data */

    (void)state;
    lock(&c, "x", 12345);
    pump();
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: requested lease not found");

    unlock(&c, "");
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: key is not provided");

    unlock(&c, "nokey");
    pump();
    assert_ok(&c);
    assert_header(((V3lockpb__UnlockResponse *)c.msgs[0])->header, 1);
    client_free(&c);

    memset(&c, 0, sizeof c);
    assert_int_equal(v3lock_start(F.l, V3LOCK_LOCK, junk, sizeof junk,
                                  &client_ops, &c, &c.req),
                     IK_EMALFORMED);
    assert_int_equal(
        v3lock_start(F.l, V3LOCK_N_METHODS, junk, 0, &client_ops, &c, &c.req),
        IK_EINVAL);
    assert_false(c.finished);

    /* The backend refuses: UNKNOWN with its message. */
    F.propose_error = IK_ENOLEADER;
    grant(7);
    lock(&c, "x", 7);
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: no leader");
    F.propose_error = 0;

    /* The proposal fails once applied. */
    F.apply_error = IK_ETIMEOUT;
    lock(&c, "x", 7);
    pump();
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: request timed out");
    F.apply_error = 0;
    assert_int_equal(v3lock_live(F.l), 0);
}

/* Waiting fails (the read fails): etcd's Mutex deletes the key, then
 * fails. */
static void test_lock_wait_fails_unlocks(void **state)
{
    struct client a, b;

    (void)state;
    grant(1);
    grant(2);
    lock(&a, "f", 1);
    pump();
    lock(&b, "f", 2);
    pump_one(); /* the txn */
    F.read_status = IK_ENOLEADER;
    pump();
    F.read_status = 0;
    assert_err(&b, GRPC_UNKNOWN, "etcdserver: no leader");
    assert_int_equal(get("f/2", NULL, NULL), 0);
    assert_int_equal(get("f/1", NULL, NULL), 2);
    client_free(&a);
}

static void test_lock_send_fails(void **state)
{
    struct client a;

    (void)state;
    grant(1);
    lock(&a, "s", 1);
    a.fail_send = true;
    pump();
    assert_err(&a, GRPC_RESOURCE_EXHAUSTED, "ikada: out of memory");
}

/* ---- Election -------------------------------------------------------------
 */

static const V3electionpb__CampaignResponse *camp_resp(const struct client *c)
{
    assert_ok(c);
    return (const V3electionpb__CampaignResponse *)c->msgs[0];
}

static void test_election_flow(void **state)
{
    struct client a, b, c;
    const V3electionpb__LeaderResponse *lr;
    char value[32];

    (void)state;
    grant(0x10);
    grant(0x20);
    campaign(&a, "el", 0x10, "v1");
    pump();
    assert_header(camp_resp(&a)->header, 2);
    assert_bytes(camp_resp(&a)->leader->name, "el");
    assert_bytes(camp_resp(&a)->leader->key, "el/10");
    assert_int_equal(camp_resp(&a)->leader->rev, 2);
    assert_int_equal(camp_resp(&a)->leader->lease, 0x10);

    campaign(&b, "el", 0x20, "w1");
    pump();
    assert_false(b.finished);

    leader(&c, V3LOCK_LEADER, "el");
    pump();
    assert_ok(&c);
    lr = (const V3electionpb__LeaderResponse *)c.msgs[0];
    assert_header(lr->header, 3);
    assert_bytes(lr->kv->key, "el/10");
    assert_bytes(lr->kv->value, "v1");
    client_free(&c);

    proclaim(&c, "el", "el/10", 2, 0x10, "v2");
    pump();
    assert_ok(&c);
    assert_header(((V3electionpb__ProclaimResponse *)c.msgs[0])->header, 4);
    get("el/10", NULL, value);
    assert_string_equal(value, "v2");
    client_free(&c);

    proclaim(&c, "el", "el/10", 7, 0x10, "v3");
    pump();
    assert_err(&c, GRPC_UNKNOWN, "election: not leader");

    /* A resign with a stale revision answers OK and changes nothing. */
    resign(&c, "el", "el/10", 7, 0x10);
    pump();
    assert_ok(&c);
    assert_header(((V3electionpb__ResignResponse *)c.msgs[0])->header, 4);
    assert_false(b.finished);
    client_free(&c);

    resign(&c, "el", "el/10", 2, 0x10);
    pump();
    assert_ok(&c);
    assert_header(((V3electionpb__ResignResponse *)c.msgs[0])->header, 5);
    client_free(&c);
    /* b leads, answering its own campaign txn's header. */
    assert_header(camp_resp(&b)->header, 3);
    assert_bytes(camp_resp(&b)->leader->key, "el/20");
    assert_int_equal(camp_resp(&b)->leader->rev, 3);
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&a);
    client_free(&b);
}

/* Campaigning again with the same lease and another value proclaims it;
 * the answer keeps the first txn's header. */
static void test_campaign_same_lease_proclaims(void **state)
{
    struct client a, b;
    char value[32];

    (void)state;
    grant(0x10);
    campaign(&a, "el", 0x10, "v1");
    pump();
    campaign(&b, "el", 0x10, "v9");
    pump();
    assert_header(camp_resp(&b)->header, 2);
    assert_int_equal(camp_resp(&b)->leader->rev, 2);
    get("el/10", NULL, value);
    assert_string_equal(value, "v9");
    assert_int_equal(rev_now(), 3);
    client_free(&a);
    client_free(&b);
}

static void test_campaign_cancel_resigns(void **state)
{
    struct client a, b;

    (void)state;
    grant(0x10);
    grant(0x20);
    campaign(&a, "el", 0x10, "v1");
    campaign(&b, "el", 0x20, "w1");
    pump();
    assert_false(b.finished);
    cancel(&b);
    pump();
    assert_int_equal(get("el/20", NULL, NULL), 0);
    assert_int_equal(get("el/10", NULL, NULL), 2);
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&a);
}

static void test_election_errors(void **state)
{
    struct client c;

    (void)state;
    leader(&c, V3LOCK_LEADER, "none");
    pump();
    assert_err(&c, GRPC_UNKNOWN, "election: no leader");

    proclaim(&c, "el", NULL, 0, 0, "v");
    assert_err(&c, GRPC_UNKNOWN, "\"leader\" field must be provided");
    resign(&c, "el", NULL, 0, 0);
    assert_err(&c, GRPC_UNKNOWN, "\"leader\" field must be provided");

    /* Proclaim with lease 0 grants a session lease first (etcd). */
    proclaim(&c, "el", "", 0, 0, "v");
    pump();
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: key is not provided");
    assert_int_equal(F.grants, 1);

    campaign(&c, "el", 999, "v");
    pump();
    assert_err(&c, GRPC_UNKNOWN, "etcdserver: requested lease not found");
    assert_int_equal(v3lock_live(F.l), 0);
}

/* ---- Observe --------------------------------------------------------------
 */

static const V3electionpb__LeaderResponse *obs(const struct client *c, size_t i)
{
    assert_true(c->n > i);
    return (const V3electionpb__LeaderResponse *)c->msgs[i];
}

static void test_observe(void **state)
{
    struct client o, a, b, p, r;

    (void)state;
    grant(0x10);
    grant(0x20);
    leader(&o, V3LOCK_OBSERVE, "el");
    pump();
    assert_int_equal(o.n, 0);
    assert_false(o.finished);

    put("el0", "outside");
    pump();
    assert_int_equal(o.n, 0);

    campaign(&a, "el", 0x10, "v1");
    pump();
    assert_int_equal(o.n, 1);
    assert_header(obs(&o, 0)->header, 3); /* the put's revision */
    assert_bytes(obs(&o, 0)->kv->key, "el/10");
    assert_bytes(obs(&o, 0)->kv->value, "v1");

    campaign(&b, "el", 0x20, "w1");
    pump();
    assert_int_equal(o.n, 1); /* not the leader */

    proclaim(&p, "el", "el/10", 3, 0x10, "v2");
    pump();
    assert_ok(&p);
    assert_int_equal(o.n, 2);
    assert_header(obs(&o, 1)->header, 5);
    assert_bytes(obs(&o, 1)->kv->value, "v2");
    assert_int_equal(obs(&o, 1)->kv->version, 2);

    resign(&r, "el", "el/10", 3, 0x10);
    pump();
    assert_ok(&r);
    assert_int_equal(o.n, 3);
    assert_header(obs(&o, 2)->header, 6); /* the read after the delete */
    assert_bytes(obs(&o, 2)->kv->key, "el/20");
    assert_bytes(obs(&o, 2)->kv->value, "w1");
    assert_ok(&b);

    /* The last leader goes: nothing is sent until a new one comes. */
    revoke(0x20);
    pump();
    assert_int_equal(o.n, 3);
    put("el/x", "direct");
    pump();
    assert_int_equal(o.n, 4);
    assert_bytes(obs(&o, 3)->kv->key, "el/x");

    assert_false(o.finished);
    cancel(&o);
    pump();
    assert_int_equal(v3lock_live(F.l), 0);
    client_free(&o);
    client_free(&a);
    client_free(&b);
    client_free(&p);
    client_free(&r);
}

static void test_observe_existing_leader(void **state)
{
    struct client o;

    (void)state;
    put("el/a", "first");
    put("el/b", "second");
    leader(&o, V3LOCK_OBSERVE, "el");
    pump();
    assert_int_equal(o.n, 1);
    assert_header(obs(&o, 0)->header, 3);
    assert_bytes(obs(&o, 0)->kv->value, "first");
    put("el/b", "ignored"); /* not the leader key */
    put("el/a", "again");
    pump();
    assert_int_equal(o.n, 2);
    assert_header(obs(&o, 1)->header, 5);
    assert_bytes(obs(&o, 1)->kv->value, "again");
    cancel(&o);
    pump();
    client_free(&o);
}

/* Observe gives up with OK when a read fails, as etcd's channel closes. */
static void test_observe_read_fails(void **state)
{
    struct client o;

    (void)state;
    F.read_error = IK_ESTOPPED;
    leader(&o, V3LOCK_OBSERVE, "el");
    assert_true(o.finished);
    assert_int_equal(o.status, GRPC_OK);
    F.read_error = 0;

    put("el/a", "first");
    leader(&o, V3LOCK_OBSERVE, "el");
    pump();
    assert_int_equal(o.n, 1);
    F.read_status = IK_ENOLEADER;
    del("el/a");
    pump();
    F.read_status = 0;
    assert_true(o.finished);
    assert_int_equal(o.status, GRPC_OK);
    client_free(&o);
    assert_int_equal(v3lock_live(F.l), 0);
}

static void test_observe_send_fails(void **state)
{
    struct client o;

    (void)state;
    leader(&o, V3LOCK_OBSERVE, "el");
    pump();
    o.fail_send = true;
    put("el/a", "first");
    pump();
    assert_err(&o, GRPC_RESOURCE_EXHAUSTED, "ikada: out of memory");
    assert_int_equal(v3lock_live(F.l), 0);
}

/* ---- lifetime -------------------------------------------------------------
 */

/* Closing with requests in every kind of state: nothing is answered, the
 * callbacks still due free what they hold (ASan checks the rest). */
static void test_close_with_live_requests(void **state)
{
    struct client a, b, c, o, g;
    size_t proposals;

    (void)state;
    grant(1);
    grant(2);
    grant(3);
    lock(&a, "z", 1);
    lock(&b, "z", 2);
    pump();
    leader(&o, V3LOCK_OBSERVE, "z");
    lock(&c, "z", 3); /* txn in flight at close */
    lock(&g, "y", 0); /* grant in flight */
    assert_false(b.finished);
    v3lock_free(F.l);
    proposals = F.proposals;
    pump();
    assert_int_equal(F.proposals, proposals); /* no cleanup proposals */
    assert_false(b.finished);
    assert_false(c.finished);
    assert_false(o.finished);
    assert_false(g.finished);
    client_free(&a);
    /* teardown must not free it again */
    assert_int_equal(v3lock_new(&fake_backend, &F.l), 0);
}

/* ---- fault injection ------------------------------------------------------
 */

static int alloc_countdown;

static bool fail_nth(void)
{
    return alloc_countdown-- == 0;
}

/* A contended lock and an observer, failing the n-th allocation of the
 * module each run: every run ends cleanly (success or an out-of-memory
 * status), with nothing leaked or left behind. */
static void test_alloc_failures(void **state)
{
    int n;

    (void)state;
    for (n = 0; n < 200; n++) {
        struct client a, b, o;
        int rv;

        teardown(NULL);
        setup(NULL);
        grant(1);
        grant(2);
        alloc_countdown = n;
        v3lock_fail_alloc_hook = fail_nth;
        memset(&o, 0, sizeof o);
        {
            V3electionpb__LeaderRequest q = V3ELECTIONPB__LEADER_REQUEST__INIT;
            uint8_t buf[64];
            size_t len;
            q.name = BIN("m");
            len = v3electionpb__leader_request__pack(&q, buf);
            o.desc = &v3electionpb__leader_response__descriptor;
            rv = v3lock_start(F.l, V3LOCK_OBSERVE, buf, len, &client_ops, &o,
                              &o.req);
            assert_true(rv == 0 || rv == IK_ENOMEM);
        }
        {
            V3lockpb__LockRequest q = V3LOCKPB__LOCK_REQUEST__INIT;
            uint8_t buf[64];
            size_t len;
            q.name = BIN("m");
            q.lease = 1;
            len = v3lockpb__lock_request__pack(&q, buf);
            memset(&a, 0, sizeof a);
            a.desc = &v3lockpb__lock_response__descriptor;
            rv = v3lock_start(F.l, V3LOCK_LOCK, buf, len, &client_ops, &a,
                              &a.req);
            assert_true(rv == 0 || rv == IK_ENOMEM);
            q.lease = 2;
            len = v3lockpb__lock_request__pack(&q, buf);
            memset(&b, 0, sizeof b);
            b.desc = &v3lockpb__lock_response__descriptor;
            rv = v3lock_start(F.l, V3LOCK_LOCK, buf, len, &client_ops, &b,
                              &b.req);
            assert_true(rv == 0 || rv == IK_ENOMEM);
            pump();
        }
        del("m/1");
        pump();
        v3lock_fail_alloc_hook = NULL;
        if (a.finished && a.status != GRPC_OK) {
            assert_int_equal(a.status, GRPC_RESOURCE_EXHAUSTED);
        }
        if (b.finished && b.status != GRPC_OK) {
            assert_int_equal(b.status, GRPC_RESOURCE_EXHAUSTED);
            /* a waiter that failed took its key away */
            assert_int_equal(get("m/2", NULL, NULL), 0);
        }
        if (o.finished && o.status != GRPC_OK) {
            assert_int_equal(o.status, GRPC_RESOURCE_EXHAUSTED);
        }
        if (!o.finished && o.req != NULL) {
            cancel(&o);
        }
        if (!b.finished && b.req != NULL) {
            cancel(&b);
        }
        pump();
        assert_int_equal(v3lock_live(F.l), 0);
        client_free(&a);
        client_free(&b);
        client_free(&o);
        if (alloc_countdown >= 0) {
            /* Ran out of allocations to fail: everything succeeded. */
            assert_true(a.finished && a.status == GRPC_OK);
            assert_true(b.finished && b.status == GRPC_OK);
            break;
        }
    }
    /* Every allocation of the scenario was failed once (and there are
     * some: the runs before this one did fail). */
    assert_true(n > 5 && n < 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_free_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_grants_session_lease, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_negative_lease_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_holder_lease_expires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_same_lease_reuses_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_waiter_lease_expires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_cancel_during_txn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_cancel_during_grant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait_fails_unlocks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_send_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_election_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_campaign_same_lease_proclaims,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_campaign_cancel_resigns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_election_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observe_existing_leader, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_observe_read_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_observe_send_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_with_live_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
