#include "server/service.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/config.h"
#include "server/ids.h"
#include "server/kv.h"
#include "server/lease.h"
#include "server/v3lock_uv.h"
#include "server/watch.h"

/* gRPC adds framing and field overhead on top of --max-request-bytes; etcd
 * lets messages this much larger through gRPC so that the size check that
 * clients see is etcd's own "request is too large". */
#define GRPC_OVERHEAD_BYTES (512 * 1024)

struct service;

/* One in-flight unary call. */
struct op;
typedef void (*op_start_fn)(struct op *op);

struct op {
    struct grpc_call *call; /* NULL once the client went away */
    struct service *svc;
    ProtobufCMessage *req; /* decoded request, owned */
    uint8_t *raw;          /* the request bytes (leader-only methods) */
    size_t raw_len;
    uint64_t new_id; /* MemberAdd: the new member's id */
    union {
        struct node_proposal prop;
        struct node_read read;
        struct node_transfer transfer;
    } u;
};

/* What a method does with its decoded request. */
struct method_impl {
    const ProtobufCMessageDescriptor *request;
    op_start_fn start;
    bool leader_only; /* keep the raw request to hand it to the leader */
};

/* What grpc_method.data points at. */
struct binding {
    struct service *svc;
    const struct method_impl *impl;
};

struct service {
    struct node *node;
    struct service_options opts;
    struct grpc_method *methods;
    struct binding *bindings;
    size_t n_methods;
    struct grpc_server_config grpc;
    struct v3lock_uv *lock; /* v3lockpb.Lock and v3electionpb.Election */
};

/* --- replying ------------------------------------------------------------ */

static void op_free(struct op *op)
{
    if (op->req != NULL) {
        protobuf_c_message_free_unpacked(op->req, NULL);
    }
    free(op->raw);
    free(op);
}

/* Answer the call (if the client is still there) and release the op. @resp
 * is consumed. */
static void op_reply(struct op *op, int rv, ProtobufCMessage *resp)
{
    if (op->call != NULL) {
        if (rv != 0) {
            grpc_call_finish_error(op->call, rv);
        } else if (grpc_call_send_proto(op->call, resp) != 0) {
            grpc_call_finish_error(op->call, IK_ENOMEM);
        } else {
            grpc_call_finish(op->call, GRPC_OK, NULL);
        }
    }
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    op_free(op);
}

/* --- writes: through raft ------------------------------------------------ */

static void proposal_done(struct node_proposal *p, int status,
                          ProtobufCMessage *resp)
{
    op_reply(p->data, status, resp);
}

static void propose(struct op *op, Ikadapb__InternalRequest *ir)
{
    int rv;

    op->u.prop.data = op;
    rv = node_propose(op->svc->node, &op->u.prop, ir, proposal_done);
    if (rv != 0) {
        op_reply(op, rv, NULL);
    }
}

/*
 * TEST-ONLY fault injection for tests/jepsen (never set it anywhere else):
 * with IKADA_TEST_BUG=ack-before-commit in the environment, a Put is
 * answered OK before it is proposed, let alone committed; the proposal then
 * goes on with nobody waiting for it (it may be lost). The Jepsen-style
 * checker must catch it. Without the variable: no effect.
 */
static bool test_bug_ack_before_commit(void)
{
    static int on = -1;

    if (on < 0) {
        const char *bug = getenv("IKADA_TEST_BUG");
        on = bug != NULL && strcmp(bug, "ack-before-commit") == 0;
    }
    return on == 1;
}

/* TEST-ONLY: answer a Put at once and detach the call from the op. */
static void ack_put_early(struct op *op)
{
    Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    struct grpc_call *call = op->call;

    if (call == NULL) {
        return;
    }
    node_fill_header(op->svc->node, &h);
    resp.header = &h;
    grpc_call_set_data(call, NULL); /* finishing ends the call */
    op->call = NULL;
    if (grpc_call_send_proto(call, &resp.base) != 0) {
        grpc_call_finish_error(call, IK_ENOMEM);
    } else {
        grpc_call_finish(call, GRPC_OK, NULL);
    }
}

static void put_start(struct op *op)
{
    Etcdserverpb__PutRequest *req = (Etcdserverpb__PutRequest *)op->req;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    int rv = kv_check_put(req);

    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    rv = node_quota_check(op->svc->node,
                          etcdserverpb__put_request__get_packed_size(req));
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_PUT;
    ir.put = req;
    if (test_bug_ack_before_commit()) { /* TEST-ONLY bug, see above */
        ack_put_early(op);
    }
    propose(op, &ir);
}

static void delete_range_start(struct op *op)
{
    Etcdserverpb__DeleteRangeRequest *req =
        (Etcdserverpb__DeleteRangeRequest *)op->req;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    int rv = kv_check_delete_range(req);

    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE;
    ir.delete_range = req;
    propose(op, &ir);
}

static void compact_start(struct op *op)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;

    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_COMPACTION;
    ir.compaction = (Etcdserverpb__CompactionRequest *)op->req;
    propose(op, &ir);
}

/* --- reads --------------------------------------------------------------- */

/* Serve a Range or read-only Txn from the local store. */
static void read_serve(struct op *op)
{
    struct node *node = op->svc->node;
    ProtobufCMessage *resp = NULL;
    Etcdserverpb__ResponseHeader *h;
    int rv;

    if (op->call == NULL) {
        op_free(op); /* nobody to answer: skip the work */
        return;
    }
    if (op->req->descriptor == &etcdserverpb__range_request__descriptor) {
        rv = kv_range(node_kv(node), (Etcdserverpb__RangeRequest *)op->req,
                      (Etcdserverpb__RangeResponse **)&resp);
        h = rv == 0 ? ((Etcdserverpb__RangeResponse *)resp)->header : NULL;
    } else {
        rv = kv_txn(node_kv(node), (Etcdserverpb__TxnRequest *)op->req,
                    (Etcdserverpb__TxnResponse **)&resp);
        h = rv == 0 ? ((Etcdserverpb__TxnResponse *)resp)->header : NULL;
    }
    node_fill_header(node, h);
    op_reply(op, rv, resp);
}

static void read_ready(struct node_read *r, int status)
{
    struct op *op = r->data;
    if (status != 0) {
        op_reply(op, status, NULL);
        return;
    }
    read_serve(op);
}

/* Wait until the read can be served linearizably, then serve it. */
static void read_linearizable(struct op *op)
{
    int rv;

    op->u.read.data = op;
    rv = node_read(op->svc->node, &op->u.read, read_ready);
    if (rv != 0) {
        op_reply(op, rv, NULL);
    }
}

static void range_start(struct op *op)
{
    Etcdserverpb__RangeRequest *req = (Etcdserverpb__RangeRequest *)op->req;
    int rv = kv_check_range(req);

    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    if (req->serializable) {
        read_serve(op);
        return;
    }
    read_linearizable(op);
}

static void txn_start(struct op *op)
{
    Etcdserverpb__TxnRequest *req = (Etcdserverpb__TxnRequest *)op->req;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    int rv = kv_check_txn(req, op->svc->opts.max_txn_ops);

    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    if (kv_txn_is_read_only(req)) {
        read_linearizable(op);
        return;
    }
    rv = node_quota_check(op->svc->node,
                          etcdserverpb__txn_request__get_packed_size(req));
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_TXN;
    ir.txn = req;
    propose(op, &ir);
}

/* --- Maintenance and Cluster --------------------------------------------- */

/* Send a response built on the stack and release the op. */
static void reply_static(struct op *op, const ProtobufCMessage *resp)
{
    if (op->call != NULL) {
        if (grpc_call_send_proto(op->call, resp) != 0) {
            grpc_call_finish_error(op->call, IK_ENOMEM);
        } else {
            grpc_call_finish(op->call, GRPC_OK, NULL);
        }
    }
    op_free(op);
}

#define ALARM_TEXT_SIZE 64

static void status_start(struct op *op)
{
    struct node *node = op->svc->node;
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    size_t n_members, n_alarms;
    const struct node_member *members = node_members(node, &n_members);
    const struct node_alarm *alarms;
    char **errors, *text;

    node_fill_header(node, &h);
    resp.header = &h;
    resp.version = (char *)CONFIG_ETCD_VERSION;
    resp.dbsize = (int64_t)node_db_size(node);
    resp.dbsizeinuse = resp.dbsize;
    resp.leader = node_leader(node);
    resp.raftindex = node_last_index(node);
    resp.raftterm = node_term(node);
    resp.raftappliedindex = node_applied_index(node);
    for (size_t i = 0; i < n_members; i++) {
        if (members[i].id == node_member_id(node)) {
            resp.islearner = members[i].is_learner;
        }
    }
    /* Raised alarms show up as errors, in etcd's wording. */
    alarms = node_alarms(node, &n_alarms);
    errors = calloc(n_alarms + 1, sizeof *errors);
    text = calloc(n_alarms + 1, ALARM_TEXT_SIZE);
    if (errors == NULL || text == NULL) {
        free(errors);
        free(text);
        op_reply(op, IK_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n_alarms; i++) {
        errors[i] = text + i * ALARM_TEXT_SIZE;
        snprintf(errors[i], ALARM_TEXT_SIZE, "memberID:%llu alarm:%s ",
                 (unsigned long long)alarms[i].member_id,
                 alarms[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE
                     ? "NOSPACE"
                     : "CORRUPT");
    }
    resp.n_errors = n_alarms;
    resp.errors = errors;
    reply_static(op, &resp.base);
    free(errors);
    free(text);
}

static void member_list_start(struct op *op)
{
    struct node *node = op->svc->node;
    Etcdserverpb__MemberListResponse resp =
        ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Etcdserverpb__Member **mp, *ms;
    size_t n;
    int rv = node_members_pb(node, &mp, &ms, &n);

    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    /* etcd's cluster service header carries no revision. */
    node_fill_header(node, &h);
    h.revision = 0;
    resp.header = &h;
    resp.n_members = n;
    resp.members = mp;
    reply_static(op, &resp.base);
    free(ms);
    free(mp);
}

/* etcd hashes on the member the client talks to, without raft. */
static void hash_kv_start(struct op *op)
{
    Etcdserverpb__HashKVRequest *req = (Etcdserverpb__HashKVRequest *)op->req;
    Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    struct node *node = op->svc->node;
    int rv;

    rv = kv_hash(node_kv(node), req->revision, &resp.hash,
                 &resp.compact_revision);
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    node_fill_header(node, &h);
    resp.header = &h;
    reply_static(op, &resp.base);
}

static void hash_start(struct op *op)
{
    Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    struct node *node = op->svc->node;
    int64_t compact_rev;
    int rv;

    rv = kv_hash(node_kv(node), 0, &resp.hash, &compact_rev);
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    node_fill_header(node, &h);
    resp.header = &h;
    reply_static(op, &resp.base);
}

static void transfer_done(struct node_transfer *t, int status)
{
    struct op *op = t->data;
    Etcdserverpb__MoveLeaderResponse resp =
        ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;

    if (status != 0) {
        op_reply(op, status, NULL);
        return;
    }
    reply_static(op, &resp.base);
}

static void move_leader_start(struct op *op)
{
    Etcdserverpb__MoveLeaderRequest *req =
        (Etcdserverpb__MoveLeaderRequest *)op->req;
    int rv;

    op->u.transfer.data = op;
    rv = node_transfer(op->svc->node, &op->u.transfer, req->targetid,
                       transfer_done);
    if (rv != 0) {
        op_reply(op, rv, NULL);
    }
}

/* etcd streams its database in chunks and ends with the SHA-256 of what it
 * sent; etcdctl insists the data part is a multiple of 512 bytes. ikada
 * streams its own snapshot format (which records its true length in its
 * header), zero-padded to a multiple of 512 bytes, then the SHA-256 of the
 * padded data. */
#define SNAPSHOT_CHUNK (32 * 1024)
#define SNAPSHOT_ALIGN 512

static void snapshot_ready(void *data, int status, void *blob, size_t len)
{
    struct op *op = data;
    Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    size_t sent = 0;
    int rv = status;

    if (rv == 0 && op->call == NULL) {
        rv = IK_ECANCELED; /* the client left meanwhile */
    }
    if (rv == 0 && len % SNAPSHOT_ALIGN != 0) {
        size_t padded = len + SNAPSHOT_ALIGN - len % SNAPSHOT_ALIGN;
        void *p = realloc(blob, padded);
        if (p == NULL) {
            rv = IK_ENOMEM;
        } else {
            memset((uint8_t *)p + len, 0, padded - len);
            blob = p;
            len = padded;
        }
    }
    if (rv == 0 &&
        EVP_Digest(blob, len, digest, &digest_len, EVP_sha256(), NULL) != 1) {
        rv = IK_EIO;
    }
    if (rv == 0) {
        node_fill_header(op->svc->node, &h);
        resp.header = &h;
    }
    while (rv == 0 && sent < len) {
        size_t n = len - sent < SNAPSHOT_CHUNK ? len - sent : SNAPSHOT_CHUNK;
        resp.blob.data = (uint8_t *)blob + sent;
        resp.blob.len = n;
        sent += n;
        resp.remaining_bytes = len - sent;
        rv = grpc_call_send_proto(op->call, &resp.base);
    }
    if (rv == 0) {
        resp.blob.data = digest;
        resp.blob.len = digest_len;
        resp.remaining_bytes = 0;
        rv = grpc_call_send_proto(op->call, &resp.base);
    }
    free(blob);
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    grpc_call_finish(op->call, GRPC_OK, NULL);
    op_free(op);
}

/* The state is captured at once and encoded off the event loop. */
static void snapshot_start(struct op *op)
{
    int rv = node_snapshot_async(op->svc->node, snapshot_ready, op);
    if (rv != 0) {
        op_reply(op, rv, NULL);
    }
}

/* Alarm GET lists the raised alarms (of one type, or all); ACTIVATE and
 * DEACTIVATE go through raft. Like etcd's, the response has no header. */
static void alarm_start(struct op *op)
{
    Etcdserverpb__AlarmRequest *req = (Etcdserverpb__AlarmRequest *)op->req;
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember *ms, **mp;
    const struct node_alarm *alarms;
    size_t n, k = 0;
    int rv;

    if (req->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        op->u.prop.data = op;
        rv = node_alarm_change(op->svc->node, &op->u.prop, req, proposal_done);
        if (rv != 0) {
            op_reply(op, rv, NULL);
        }
        return;
    }
    alarms = node_alarms(op->svc->node, &n);
    ms = calloc(n + 1, sizeof *ms);
    mp = calloc(n + 1, sizeof *mp);
    if (ms == NULL || mp == NULL) {
        free(ms);
        free(mp);
        op_reply(op, IK_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (req->alarm != ETCDSERVERPB__ALARM_TYPE__NONE &&
            (int)req->alarm != alarms[i].type) {
            continue;
        }
        etcdserverpb__alarm_member__init(&ms[k]);
        ms[k].memberid = alarms[i].member_id;
        ms[k].alarm = alarms[i].type;
        mp[k] = &ms[k];
        k++;
    }
    resp.n_alarms = k;
    resp.alarms = mp;
    reply_static(op, &resp.base);
    free(ms);
    free(mp);
}

/* The store lives in memory and frees what compaction drops at once, so
 * there is nothing to defragment; answered as etcd does (no header). */
static void defragment_start(struct op *op)
{
    Etcdserverpb__DefragmentResponse resp =
        ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    reply_static(op, &resp.base);
}

/* The response type of a leader-only call, by its request type. */
static const ProtobufCMessageDescriptor *
forwarded_response(const ProtobufCMessageDescriptor *req)
{
    if (req == &etcdserverpb__member_add_request__descriptor) {
        return &etcdserverpb__member_add_response__descriptor;
    }
    if (req == &etcdserverpb__member_remove_request__descriptor) {
        return &etcdserverpb__member_remove_response__descriptor;
    }
    if (req == &etcdserverpb__member_update_request__descriptor) {
        return &etcdserverpb__member_update_response__descriptor;
    }
    if (req == &etcdserverpb__member_promote_request__descriptor) {
        return &etcdserverpb__member_promote_response__descriptor;
    }
    if (req == &etcdserverpb__lease_time_to_live_request__descriptor) {
        return &etcdserverpb__lease_time_to_live_response__descriptor;
    }
    return NULL;
}

/* A follower hands a leader-only call to the leader and relays its
 * answer, as answered by this member (its id in the header, as etcd's
 * followers answer such calls themselves). */
static void member_forwarded(void *data, int status, const char *message,
                             const uint8_t *resp, size_t len)
{
    struct op *op = data;
    const ProtobufCMessageDescriptor *d;
    const ProtobufCFieldDescriptor *f;
    ProtobufCMessage *msg;

    if (op->call == NULL) {
        op_free(op);
        return;
    }
    if (status != GRPC_OK) {
        grpc_call_finish(op->call, status, message);
        op_free(op);
        return;
    }
    d = forwarded_response(op->req->descriptor);
    msg = d != NULL ? protobuf_c_message_unpack(d, NULL, len, resp) : NULL;
    if (msg == NULL) {
        op_reply(op, IK_EPROTO, NULL);
        return;
    }
    f = protobuf_c_message_descriptor_get_field_by_name(d, "header");
    if (f != NULL) {
        Etcdserverpb__ResponseHeader *h =
            *(Etcdserverpb__ResponseHeader **)((char *)msg + f->offset);
        if (h != NULL) {
            h->member_id = node_member_id(op->svc->node);
        }
    }
    op_reply(op, 0, msg);
}

/* --- Lease ---------------------------------------------------------------- */

static void lease_grant_start(struct op *op)
{
    Etcdserverpb__LeaseGrantRequest *req =
        (Etcdserverpb__LeaseGrantRequest *)op->req;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;

    /* As etcd, the member the client talks to picks a missing id. */
    if (req->id == 0) {
        req->id = node_lease_new_id(op->svc->node);
    }
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_GRANT;
    ir.lease_grant = req;
    propose(op, &ir);
}

static void lease_revoke_start(struct op *op)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;

    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_REVOKE;
    ir.lease_revoke = (Etcdserverpb__LeaseRevokeRequest *)op->req;
    propose(op, &ir);
}

/* The leader answers (followers hand the call over): remaining TTL and,
 * if asked, the keys. An unknown lease is TTL -1, not an error (etcd). */
static void lease_ttl_start(struct op *op)
{
    Etcdserverpb__LeaseTimeToLiveRequest *req =
        (Etcdserverpb__LeaseTimeToLiveRequest *)op->req;
    Etcdserverpb__LeaseTimeToLiveResponse resp =
        ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    struct node *node = op->svc->node;
    struct lease_key *keys = NULL;
    ProtobufCBinaryData *bins = NULL;
    size_t n_keys = 0;
    int rv;

    rv = node_lease_ttl(node, req->id, &resp.grantedttl, &resp.ttl);
    if (rv == IK_ENOTLEADER) {
        rv = node_forward(node, grpc_call_method(op->call)->path, op->raw,
                          op->raw_len, member_forwarded, op);
        if (rv != 0) {
            op_reply(op, rv, NULL);
        }
        return;
    }
    if (rv == IK_ELEASENOTFOUND) {
        resp.ttl = -1;
        resp.grantedttl = 0;
    } else if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    } else if (req->keys) {
        rv = lease_keys(node_lessor(node), req->id, &keys, &n_keys);
        bins = calloc(n_keys + 1, sizeof *bins);
        if (rv != 0 || bins == NULL) {
            free(keys);
            free(bins);
            op_reply(op, rv != 0 ? rv : IK_ENOMEM, NULL);
            return;
        }
        for (size_t i = 0; i < n_keys; i++) {
            bins[i].data = (uint8_t *)keys[i].key;
            bins[i].len = keys[i].len;
        }
        resp.n_keys = n_keys;
        resp.keys = bins;
    }
    node_fill_header(node, &h);
    resp.header = &h;
    resp.id = req->id;
    reply_static(op, &resp.base);
    free(keys);
    free(bins);
}

static void lease_leases_start(struct op *op)
{
    Etcdserverpb__LeaseLeasesResponse resp =
        ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Etcdserverpb__LeaseStatus *st = NULL, **sp = NULL;
    int64_t *ids = NULL;
    size_t n = 0;
    int rv;

    rv = lease_leases(node_lessor(op->svc->node), &ids, &n);
    if (rv == 0) {
        st = calloc(n + 1, sizeof *st);
        sp = calloc(n + 1, sizeof *sp);
        if (st == NULL || sp == NULL) {
            rv = IK_ENOMEM;
        }
    }
    if (rv != 0) {
        free(ids);
        free(st);
        free(sp);
        op_reply(op, rv, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__lease_status__init(&st[i]);
        st[i].id = ids[i];
        sp[i] = &st[i];
    }
    node_fill_header(op->svc->node, &h);
    resp.header = &h;
    resp.n_leases = n;
    resp.leases = sp;
    reply_static(op, &resp.base);
    free(ids);
    free(st);
    free(sp);
}

/* LeaseKeepAlive: a bidirectional stream of renewals. Followers ask the
 * leader, so answers may come after the stream is gone: the stream state
 * lives until its last renewal is answered. */
struct ka_stream {
    struct grpc_call *call; /* NULL once gone */
    struct service *svc;
    unsigned inflight;
};

static void ka_send(struct ka_stream *ks, int64_t id, int64_t ttl)
{
    Etcdserverpb__LeaseKeepAliveResponse resp =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;

    node_fill_header(ks->svc->node, &h);
    resp.header = &h;
    resp.id = id;
    resp.ttl = ttl > 0 ? ttl : 0;
    if (grpc_call_send_proto(ks->call, &resp.base) != 0) {
        grpc_call_finish_error(ks->call, IK_ENOMEM);
        ks->call = NULL;
    }
}

struct ka_renewal {
    struct ka_stream *ks;
    int64_t id;
};

static void ka_renewed(void *data, int status, int64_t ttl)
{
    struct ka_renewal *r = data;
    struct ka_stream *ks = r->ks;

    ks->inflight--;
    if (ks->call != NULL) {
        if (status != 0) {
            grpc_call_finish_error(ks->call, status);
            grpc_call_set_data(ks->call, NULL);
            ks->call = NULL;
        } else {
            ka_send(ks, r->id, ttl);
        }
    }
    if (ks->call == NULL && ks->inflight == 0) {
        free(ks);
    }
    free(r);
}

static void ka_release(struct grpc_call *call);

static void ka_on_message(struct grpc_call *call, const uint8_t *data,
                          size_t len)
{
    const struct binding *b = grpc_call_method(call)->data;
    struct ka_stream *ks = grpc_call_get_data(call);
    Etcdserverpb__LeaseKeepAliveRequest *req;
    struct ka_renewal *r;
    int64_t ttl = 0;
    int rv;

    if (node_is_learner(b->svc->node)) {
        ka_release(call);
        grpc_call_finish_error(call, IK_ENOTSUPPORTEDFORLEARNER);
        return;
    }
    if (ks == NULL) {
        ks = calloc(1, sizeof *ks);
        if (ks == NULL) {
            grpc_call_finish_error(call, IK_ENOMEM);
            return;
        }
        ks->call = call;
        ks->svc = b->svc;
        grpc_call_set_data(call, ks);
    }
    req = etcdserverpb__lease_keep_alive_request__unpack(NULL, len, data);
    if (req == NULL) {
        return; /* etcd ignores what it cannot decode on this stream */
    }
    rv = node_lease_renew(ks->svc->node, req->id, &ttl);
    if (rv == 0 || rv == IK_ELEASENOTFOUND) {
        ka_send(ks, req->id, rv == 0 ? ttl : 0);
    } else if (rv == IK_ENOTLEADER && (r = malloc(sizeof *r)) != NULL) {
        r->ks = ks;
        r->id = req->id;
        if (node_lease_renew_remote(ks->svc->node, req->id, ka_renewed, r) ==
            0) {
            ks->inflight++;
        } else {
            free(r);
            grpc_call_finish_error(call, IK_ENOLEADER);
            grpc_call_set_data(call, NULL);
            ks->call = NULL;
            if (ks->inflight == 0) {
                free(ks);
            }
        }
    } else {
        grpc_call_finish_error(call, rv == IK_ENOTLEADER ? IK_ENOMEM : rv);
        grpc_call_set_data(call, NULL);
        ks->call = NULL;
        if (ks->inflight == 0) {
            free(ks);
        }
    }
    etcdserverpb__lease_keep_alive_request__free_unpacked(req, NULL);
}

static void ka_release(struct grpc_call *call)
{
    struct ka_stream *ks = grpc_call_get_data(call);
    if (ks == NULL) {
        return;
    }
    grpc_call_set_data(call, NULL);
    ks->call = NULL;
    if (ks->inflight == 0) {
        free(ks);
    }
}

/* The client closed its side: end the stream (etcd returns OK). */
static void ka_on_half_close(struct grpc_call *call)
{
    ka_release(call);
    grpc_call_finish(call, GRPC_OK, NULL);
}

/* --- Watch ---------------------------------------------------------------- */

static int watch_send(void *arg, const Etcdserverpb__WatchResponse *resp)
{
    return grpc_call_send_proto(arg, &resp->base);
}

static size_t watch_queued(void *arg)
{
    return grpc_call_pending_bytes(arg);
}

static const struct watch_stream_ops watch_ops = {
    .send = watch_send,
    .queued_bytes = watch_queued,
};

static void watch_release(struct grpc_call *call);

static void watch_on_message(struct grpc_call *call, const uint8_t *data,
                             size_t len)
{
    const struct binding *b = grpc_call_method(call)->data;
    struct watch_stream *ws = grpc_call_get_data(call);
    int rv;

    if (node_is_learner(b->svc->node)) {
        watch_release(call);
        grpc_call_finish_error(call, IK_ENOTSUPPORTEDFORLEARNER);
        return;
    }
    if (ws == NULL) {
        rv = watch_stream_new(node_watch_hub(b->svc->node), &watch_ops, call,
                              &ws);
        if (rv != 0) {
            grpc_call_finish_error(call, rv);
            return;
        }
        grpc_call_set_data(call, ws);
    }
    rv = watch_stream_recv_packed(ws, data, len);
    if (rv != 0 && watch_stream_error(ws) != 0) {
        grpc_call_set_data(call, NULL);
        watch_stream_free(ws);
        grpc_call_finish_error(call, rv);
    }
}

static void watch_release(struct grpc_call *call)
{
    struct watch_stream *ws = grpc_call_get_data(call);
    if (ws != NULL) {
        grpc_call_set_data(call, NULL);
        watch_stream_free(ws);
    }
}

/* etcd keeps a Watch stream open after the client half-closes it: the
 * watchers go on until the call is cancelled. */
static void watch_on_half_close(struct grpc_call *call)
{
    (void)call;
}

/* --- membership (leader-only) -------------------------------------------- */

static void member_change_done(struct node_proposal *p, int status,
                               ProtobufCMessage *resp)
{
    struct op *op = p->data;
    struct node *node = op->svc->node;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Etcdserverpb__Member **mp = NULL, *ms = NULL;
    size_t n = 0;
    int rv;

    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (status != 0) {
        op_reply(op, status, NULL);
        return;
    }
    rv = node_members_pb(node, &mp, &ms, &n);
    if (rv != 0) {
        op_reply(op, rv, NULL);
        return;
    }
    /* etcd's cluster service header carries no revision. */
    node_fill_header(node, &h);
    h.revision = 0;
    if (op->req->descriptor == &etcdserverpb__member_add_request__descriptor) {
        Etcdserverpb__MemberAddResponse r =
            ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
        Etcdserverpb__MemberAddRequest *req =
            (Etcdserverpb__MemberAddRequest *)op->req;
        Etcdserverpb__Member added = ETCDSERVERPB__MEMBER__INIT;
        added.id = op->new_id;
        added.n_peerurls = req->n_peerurls;
        added.peerurls = req->peerurls;
        added.islearner = req->islearner;
        r.header = &h;
        r.member = &added;
        r.n_members = n;
        r.members = mp;
        reply_static(op, &r.base);
    } else {
        /* Remove, Update and Promote responses share one shape. */
        Etcdserverpb__MemberRemoveResponse r =
            ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
        r.header = &h;
        r.n_members = n;
        r.members = mp;
        reply_static(op, &r.base);
    }
    free(ms);
    free(mp);
}

/* Peer URLs as etcd accepts them for a member: http(s)://host:port. */
static int check_peer_urls(char **urls, size_t n)
{
    char errmsg[IK_ERRMSG_SIZE];
    struct config_url u;

    if (n == 0) {
        return IK_EMEMBERBADURLS;
    }
    for (size_t i = 0; i < n; i++) {
        if (config_url_parse(urls[i], &u, errmsg) != 0) {
            return IK_EMEMBERBADURLS;
        }
        config_url_free(&u);
    }
    return 0;
}

static void member_op_start(struct op *op)
{
    struct node *node = op->svc->node;
    const ProtobufCMessageDescriptor *d = op->req->descriptor;
    struct node_member_change c = {0};
    int rv = 0;

    if (!node_is_leader(node)) {
        rv = node_forward(node, grpc_call_method(op->call)->path, op->raw,
                          op->raw_len, member_forwarded, op);
        if (rv != 0) {
            op_reply(op, rv, NULL);
        }
        return;
    }
    if (d == &etcdserverpb__member_add_request__descriptor) {
        Etcdserverpb__MemberAddRequest *r =
            (Etcdserverpb__MemberAddRequest *)op->req;
        c.kind = NODE_MEMBER_ADD;
        c.peer_urls = r->peerurls;
        c.n_peer_urls = r->n_peerurls;
        c.is_learner = r->islearner;
        rv = check_peer_urls(r->peerurls, r->n_peerurls);
        if (rv == 0) {
            /* A runtime-added member's id also covers the time (etcd). */
            rv = ids_member_id((const char *const *)r->peerurls, r->n_peerurls,
                               node_token(node), (int64_t)time(NULL), &c.id);
        }
        op->new_id = c.id;
    } else if (d == &etcdserverpb__member_remove_request__descriptor) {
        c.kind = NODE_MEMBER_REMOVE;
        c.id = ((Etcdserverpb__MemberRemoveRequest *)op->req)->id;
    } else if (d == &etcdserverpb__member_update_request__descriptor) {
        Etcdserverpb__MemberUpdateRequest *r =
            (Etcdserverpb__MemberUpdateRequest *)op->req;
        c.kind = NODE_MEMBER_UPDATE;
        c.id = r->id;
        c.peer_urls = r->peerurls;
        c.n_peer_urls = r->n_peerurls;
        rv = check_peer_urls(r->peerurls, r->n_peerurls);
    } else {
        c.kind = NODE_MEMBER_PROMOTE;
        c.id = ((Etcdserverpb__MemberPromoteRequest *)op->req)->id;
    }
    if (rv == 0) {
        op->u.prop.data = op;
        rv = node_member_change(node, &op->u.prop, &c, member_change_done);
    }
    if (rv != 0) {
        op_reply(op, rv, NULL);
    }
}

/* --- dispatch ------------------------------------------------------------ */

static const struct {
    const char *path;
    struct method_impl impl;
    enum grpc_method_kind kind;
} unary_methods[] = {
    {"/etcdserverpb.KV/Range",
     {&etcdserverpb__range_request__descriptor, range_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.KV/Put",
     {&etcdserverpb__put_request__descriptor, put_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.KV/DeleteRange",
     {&etcdserverpb__delete_range_request__descriptor, delete_range_start,
      false},
     GRPC_UNARY},
    {"/etcdserverpb.KV/Txn",
     {&etcdserverpb__txn_request__descriptor, txn_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.KV/Compact",
     {&etcdserverpb__compaction_request__descriptor, compact_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/Status",
     {&etcdserverpb__status_request__descriptor, status_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/Alarm",
     {&etcdserverpb__alarm_request__descriptor, alarm_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/Defragment",
     {&etcdserverpb__defragment_request__descriptor, defragment_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/Hash",
     {&etcdserverpb__hash_request__descriptor, hash_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/HashKV",
     {&etcdserverpb__hash_kvrequest__descriptor, hash_kv_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/MoveLeader",
     {&etcdserverpb__move_leader_request__descriptor, move_leader_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Maintenance/Snapshot",
     {&etcdserverpb__snapshot_request__descriptor, snapshot_start, false},
     GRPC_SERVER_STREAMING},
    {"/etcdserverpb.Lease/LeaseGrant",
     {&etcdserverpb__lease_grant_request__descriptor, lease_grant_start, false},
     GRPC_UNARY},
    {"/etcdserverpb.Lease/LeaseRevoke",
     {&etcdserverpb__lease_revoke_request__descriptor, lease_revoke_start,
      false},
     GRPC_UNARY},
    {"/etcdserverpb.Lease/LeaseLeases",
     {&etcdserverpb__lease_leases_request__descriptor, lease_leases_start,
      false},
     GRPC_UNARY},
    {"/etcdserverpb.Lease/LeaseTimeToLive",
     {&etcdserverpb__lease_time_to_live_request__descriptor, lease_ttl_start,
      true},
     GRPC_UNARY},
    {"/etcdserverpb.Cluster/MemberAdd",
     {&etcdserverpb__member_add_request__descriptor, member_op_start, true},
     GRPC_UNARY},
    {"/etcdserverpb.Cluster/MemberRemove",
     {&etcdserverpb__member_remove_request__descriptor, member_op_start, true},
     GRPC_UNARY},
    {"/etcdserverpb.Cluster/MemberUpdate",
     {&etcdserverpb__member_update_request__descriptor, member_op_start, true},
     GRPC_UNARY},
    {"/etcdserverpb.Cluster/MemberPromote",
     {&etcdserverpb__member_promote_request__descriptor, member_op_start, true},
     GRPC_UNARY},
    {"/etcdserverpb.Cluster/MemberList",
     {&etcdserverpb__member_list_request__descriptor, member_list_start, false},
     GRPC_UNARY},
};

#define N_UNARY (sizeof unary_methods / sizeof unary_methods[0])

static const struct grpc_method stream_methods[] = {
    {
        .path = "/etcdserverpb.Watch/Watch",
        .kind = GRPC_BIDI_STREAMING,
        .on_message = watch_on_message,
        .on_half_close = watch_on_half_close,
        .on_cancel = watch_release,
    },
    {
        .path = "/etcdserverpb.Lease/LeaseKeepAlive",
        .kind = GRPC_BIDI_STREAMING,
        .on_message = ka_on_message,
        .on_half_close = ka_on_half_close,
        .on_cancel = ka_release,
    },
};

#define N_STREAMS (sizeof stream_methods / sizeof stream_methods[0])

/* A learner answers only Status and serializable reads, as etcd's. */
static bool learner_allowed(const struct op *op)
{
    const ProtobufCMessageDescriptor *d = op->req->descriptor;

    if (!node_is_learner(op->svc->node)) {
        return true;
    }
    if (d == &etcdserverpb__status_request__descriptor) {
        return true;
    }
    return d == &etcdserverpb__range_request__descriptor &&
           ((const Etcdserverpb__RangeRequest *)op->req)->serializable;
}

static void unary_on_message(struct grpc_call *call, const uint8_t *data,
                             size_t len)
{
    const struct binding *b = grpc_call_method(call)->data;
    const struct method_impl *impl = b->impl;
    struct op *op = calloc(1, sizeof *op);

    if (op == NULL) {
        grpc_call_finish_error(call, IK_ENOMEM);
        return;
    }
    op->call = call;
    op->svc = b->svc;
    op->req = protobuf_c_message_unpack(impl->request, NULL, len, data);
    if (impl->leader_only && op->req != NULL) {
        op->raw = malloc(len > 0 ? len : 1);
        if (op->raw == NULL) {
            op_free(op);
            grpc_call_finish_error(call, IK_ENOMEM);
            return;
        }
        memcpy(op->raw, data, len);
        op->raw_len = len;
    }
    if (op->req == NULL) {
        free(op);
        grpc_call_finish_error(call, IK_EMALFORMED);
        return;
    }
    if (!learner_allowed(op)) {
        op_reply(op, IK_ENOTSUPPORTEDFORLEARNER, NULL);
        return;
    }
    grpc_call_set_data(call, op);
    impl->start(op);
}

static void unary_on_cancel(struct grpc_call *call)
{
    struct op *op = grpc_call_get_data(call);
    if (op != NULL) {
        op->call = NULL;
    }
}

int service_init(struct service **out, struct node *node,
                 const struct service_options *opts)
{
    struct service *s = calloc(1, sizeof *s);
    const struct grpc_method *lock_methods;
    size_t n_lock = 0;

    if (s == NULL) {
        return IK_ENOMEM;
    }
    s->node = node;
    s->opts = *opts;
    if (v3lock_uv_new(&s->lock, opts->loop, node, opts->max_txn_ops) != 0) {
        free(s);
        return IK_ENOMEM;
    }
    lock_methods = v3lock_uv_methods(s->lock, &n_lock);
    s->methods = calloc(N_UNARY + N_STREAMS + n_lock, sizeof *s->methods);
    s->bindings = calloc(N_UNARY + N_STREAMS, sizeof *s->bindings);
    if (s->methods == NULL || s->bindings == NULL) {
        service_free(s);
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < N_UNARY; i++) {
        s->methods[i].path = unary_methods[i].path;
        s->methods[i].kind = unary_methods[i].kind;
        s->methods[i].on_message = unary_on_message;
        s->methods[i].on_cancel = unary_on_cancel;
        s->bindings[i].svc = s;
        s->bindings[i].impl = &unary_methods[i].impl;
        s->methods[i].data = &s->bindings[i];
    }
    /* The bidirectional streams. */
    for (size_t i = 0; i < N_STREAMS; i++) {
        struct grpc_method *m = &s->methods[N_UNARY + i];
        *m = stream_methods[i];
        s->bindings[N_UNARY + i].svc = s;
        m->data = &s->bindings[N_UNARY + i];
    }
    /* The lock and election services bring their own bindings. */
    for (size_t i = 0; i < n_lock; i++) {
        s->methods[N_UNARY + N_STREAMS + i] = lock_methods[i];
    }
    s->n_methods = N_UNARY + N_STREAMS + n_lock;
    s->grpc.methods = s->methods;
    s->grpc.n_methods = s->n_methods;
    s->grpc.max_recv_msg_size = opts->max_request_bytes + GRPC_OVERHEAD_BYTES;
    s->grpc.max_concurrent_streams = 1u << 20;
    *out = s;
    return 0;
}

struct grpc_server_config *service_grpc_config(struct service *s)
{
    return &s->grpc;
}

void service_set_node(struct service *s, struct node *node)
{
    s->node = node;
    v3lock_uv_set_node(s->lock, node);
}

const struct grpc_method *service_peer_methods(struct service *s, size_t *count)
{
    size_t first = N_UNARY, n = 0;
    for (size_t i = 0; i < N_UNARY; i++) {
        if (unary_methods[i].impl.leader_only) {
            if (first == N_UNARY) {
                first = i;
            }
            n++;
        }
    }
    *count = n;
    return n > 0 ? &s->methods[first] : NULL;
}

void service_free(struct service *s)
{
    if (s == NULL) {
        return;
    }
    v3lock_uv_close(s->lock);
    free(s->methods);
    free(s->bindings);
    free(s);
}
