/*
 * Raft log entry payload (RAFT_COMMAND entries), format version 1.
 *
 * canonical/raft stores entry payloads inside checksummed batches (CRC32
 * over header and data) and requires every payload length to be a multiple
 * of 8 bytes, so ikada frames its protobuf with a small header and pads:
 *
 *   offset  size  field
 *   0       1     format version (1)
 *   1       1     payload type (1 = ikadapb.InternalRequest)
 *   2       2     reserved, zero
 *   4       4     payload length N, little endian
 *   8       N     payload (protobuf)
 *   8+N     P     zero padding, 0 <= P < 8, so that 8+N+P is a multiple of 8
 *
 * An entry whose header does not match is skipped on every member alike
 * (logged), never half-applied.
 */
#include "server/node.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "client/grpc_client_uv.h"
#include "server/compactor.h"
#include "server/grpc_uv.h"
#include "server/history.h"
#include "server/lease.h"
#include "server/log.h"
#include "server/mvcc.h"
#include "server/peer_uv.h"
#include "snapshot/snapshot.h"

#define ENTRY_VERSION 1
#define ENTRY_TYPE_INTERNAL_REQUEST 1
#define ENTRY_HEADER_SIZE 8

/* Proposals waiting for their entry to be applied, by id. */
#define PENDING_BUCKETS 1024

/* How often requests that wait for a leader are retried. */
#define RETRY_MS 20

/* Longest wait for in-flight log appends when closing (see node_close). */
#define DRAIN_MAX_MS 3000

#define PEER_PROPOSE_PATH "/ikadapb.Peer/Propose"
#define PEER_READ_INDEX_PATH "/ikadapb.Peer/ReadIndex"

/* A gRPC client connection to another member's peer port. */
struct peer_link {
    uint64_t id;
    char address[300];
    struct grpc_client_uv client;
    struct node *node;
    struct peer_link *next;
};

struct node {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct mvcc store;
    struct kv kv;

    uint64_t member_id;
    uint64_t cluster_id;
    uint64_t max_request_bytes;
    uint64_t next_id; /* proposal ids: (member id low 16 bits) << 48 | seq */

    struct node_proposal *pending[PENDING_BUCKETS];

    /* Linearizable reads: `queued` wait for the next barrier, `served`
     * are answered by the barrier in flight. */
    struct node_read *queued_head;
    struct node_read *queued_tail;
    struct node_read *served;
    bool barrier_inflight;
    struct raft_barrier barrier;

    /* Routing on a follower: requests wait (bounded by leader_wait_ms) in
     * `stalled` while no leader is known; reads ask the leader for a read
     * index (one RPC serves every read queued behind it) and then wait in
     * `applying` until this member has applied up to that index. */
    uint64_t leader_wait_ms;
    uint64_t forward_timeout_ms;
    struct node_proposal *stalled;
    struct node_read *ri_queue_head;
    struct node_read *ri_queue_tail;
    struct node_read *ri_batch;
    bool ri_inflight;
    struct node_read *applying;
    uv_timer_t retry_timer;
    uv_check_t apply_check;
    uv_prepare_t nudge_prepare;
    bool nudge;
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    struct peer_link *links;
    struct grpc_uv_server peer_grpc;
    struct grpc_method *peer_methods;

    /* Replicated member table: starts as the initial cluster, changed only
     * by applied entries (publish), saved in snapshots. */
    struct node_member *members;
    size_t n_members;

    /* Publishing this member's attributes; ready once it is applied. */
    char *name;         /* this member's --name */
    char **client_urls; /* this member's advertised client URLs */
    size_t n_client_urls;
    uv_timer_t publish_timer;
    struct node_proposal publish;
    bool publish_inflight;
    bool ready;
    void (*ready_cb)(void *arg);
    void *ready_arg;

    /* Leases (replicated; expiry tracked by the leader) and watches. */
    struct lessor lessor;
    struct lease_idgen idgen;
    uv_timer_t lease_timer;
    bool lease_primary;
    struct watch_hub *hub;
    uv_timer_t watch_timer;

    /* Alarms (replicated, saved in snapshots) and the space quota. */
    struct node_alarm *alarms;
    size_t n_alarms;
    uint64_t quota_bytes;
    struct node_proposal alarm_prop;
    bool alarm_inflight;

    /* Automatic compaction, proposed by the leader. */
    struct compactor compactor;
    uv_timer_t compact_timer;
    struct node_proposal compact_prop;
    bool compact_inflight;

    /* Membership: the leader drives raft's configuration towards the
     * member table, one raft change at a time. */
    char *token; /* --initial-cluster-token, for new member ids */
    uv_timer_t reconcile_timer;
    struct raft_change change;
    bool change_inflight;
    bool removed;
    bool was_in_config;
    bool removal_check_inflight;
    size_t removal_check_next;
    uint64_t leaderless_since;
    void (*removed_cb)(void *arg);

    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* Translate a raft error into the error a client should see. */
static int raft_to_ik(int rv)
{
    switch (rv) {
    case 0:
        return IK_OK;
    case RAFT_NOMEM:
        return IK_ENOMEM;
    case RAFT_NOTLEADER:
        return IK_ENOLEADER;
    case RAFT_LEADERSHIPLOST:
        return IK_ELEADERCHANGED;
    case RAFT_SHUTDOWN:
        return IK_ESTOPPED;
    case RAFT_TOOBIG:
        return IK_EREQUESTTOOLARGE;
    default:
        return IK_EIO;
    }
}

/* --- pending proposals --------------------------------------------------- */

static struct node_proposal **pending_slot(struct node *n, uint64_t id)
{
    /* Ids are sequential within a member: the low bits spread well. */
    return &n->pending[id % PENDING_BUCKETS];
}

static void pending_add(struct node *n, struct node_proposal *p)
{
    struct node_proposal **slot = pending_slot(n, p->id);
    p->next_pending = *slot;
    *slot = p;
}

/* Unlink and return the proposal registered under @id, or NULL. */
static struct node_proposal *pending_take(struct node *n, uint64_t id)
{
    struct node_proposal **pp;
    for (pp = pending_slot(n, id); *pp != NULL; pp = &(*pp)->next_pending) {
        if ((*pp)->id == id) {
            struct node_proposal *p = *pp;
            *pp = p->next_pending;
            p->next_pending = NULL;
            return p;
        }
    }
    return NULL;
}

static int alarms_decode(const void *buf, size_t len, struct node_alarm **out,
                         size_t *n_out);
static void members_free(struct node_member *m, size_t count);
static int members_copy(struct node_member **out, size_t *n_out,
                        const struct node_member *src, size_t count);

/* --- FSM ----------------------------------------------------------------- */

static Etcdserverpb__ResponseHeader *response_header(ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &etcdserverpb__put_response__descriptor) {
        return ((Etcdserverpb__PutResponse *)m)->header;
    }
    if (d == &etcdserverpb__delete_range_response__descriptor) {
        return ((Etcdserverpb__DeleteRangeResponse *)m)->header;
    }
    if (d == &etcdserverpb__txn_response__descriptor) {
        return ((Etcdserverpb__TxnResponse *)m)->header;
    }
    if (d == &etcdserverpb__compaction_response__descriptor) {
        return ((Etcdserverpb__CompactionResponse *)m)->header;
    }
    if (d == &etcdserverpb__lease_grant_response__descriptor) {
        return ((Etcdserverpb__LeaseGrantResponse *)m)->header;
    }
    if (d == &etcdserverpb__lease_revoke_response__descriptor) {
        return ((Etcdserverpb__LeaseRevokeResponse *)m)->header;
    }
    return NULL;
}

static Ikadapb__InternalRequest *entry_decode(const struct raft_buffer *buf)
{
    const uint8_t *p = buf->base;
    uint32_t len;

    if (buf->len < ENTRY_HEADER_SIZE || p[0] != ENTRY_VERSION ||
        p[1] != ENTRY_TYPE_INTERNAL_REQUEST) {
        return NULL;
    }
    len = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
          (uint32_t)p[7] << 24;
    if (len > buf->len - ENTRY_HEADER_SIZE) {
        return NULL;
    }
    return ikadapb__internal_request__unpack(NULL, len, p + ENTRY_HEADER_SIZE);
}

static void strv_free(char **v, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(v[i]);
    }
    free(v);
}

static char **strv_dup(char *const *v, size_t count)
{
    char **out = calloc(count > 0 ? count : 1, sizeof *out);
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        out[i] = strdup(v[i]);
        if (out[i] == NULL) {
            strv_free(out, i);
            return NULL;
        }
    }
    return out;
}

/* Apply a member's published attributes. An unknown member id (removed
 * meanwhile) changes nothing. */
static int members_publish(struct node *n, const Ikadapb__MemberAttributes *a)
{
    for (size_t i = 0; i < n->n_members; i++) {
        struct node_member *m = &n->members[i];
        char *name;
        char **urls;
        if (m->id != a->id) {
            continue;
        }
        name = strdup(a->name);
        urls = strv_dup(a->client_urls, a->n_client_urls);
        if (name == NULL || urls == NULL) {
            free(name);
            strv_free(urls, urls != NULL ? a->n_client_urls : 0);
            return IK_ENOMEM;
        }
        free(m->name);
        strv_free(m->client_urls, m->n_client_urls);
        m->name = name;
        m->client_urls = urls;
        m->n_client_urls = a->n_client_urls;
        return 0;
    }
    return 0;
}

static int member_raft_address(const struct node_member *m, char *out,
                               size_t size);
static void reconcile_soon(struct node *n);

static struct node_member *member_find(struct node *n, uint64_t id)
{
    for (size_t i = 0; i < n->n_members; i++) {
        if (n->members[i].id == id) {
            return &n->members[i];
        }
    }
    return NULL;
}

/* Apply a change to the member table (validated by the leader before it
 * was proposed). ADD and REMOVE are idempotent so that a member that
 * joined with a copy of the table converges while replaying the log. The
 * leader then makes raft's configuration follow the table. */
static int members_change(struct node *n, const Ikadapb__MemberChange *c)
{
    struct node_member *m = member_find(n, c->id);
    char **urls = NULL;

    switch (c->kind) {
    case IKADAPB__MEMBER_CHANGE__KIND__ADD: {
        struct node_member *grown;
        if (m != NULL) {
            /* Idempotent: a member that joined with a copy of the current
             * table replays the entries that built it. */
            urls = strv_dup(c->peer_urls, c->n_peer_urls);
            if (urls == NULL) {
                return IK_ENOMEM;
            }
            strv_free(m->peer_urls, m->n_peer_urls);
            m->peer_urls = urls;
            m->n_peer_urls = c->n_peer_urls;
            m->is_learner = c->is_learner;
            break;
        }
        urls = strv_dup(c->peer_urls, c->n_peer_urls);
        grown = realloc(n->members, (n->n_members + 1) * sizeof *grown);
        if (urls == NULL || grown == NULL) {
            strv_free(urls, urls != NULL ? c->n_peer_urls : 0);
            if (grown != NULL) {
                n->members = grown;
            }
            return IK_ENOMEM;
        }
        n->members = grown;
        m = &n->members[n->n_members];
        memset(m, 0, sizeof *m);
        m->id = c->id;
        m->name = strdup("");
        m->client_urls = calloc(1, sizeof *m->client_urls);
        if (m->name == NULL || m->client_urls == NULL) {
            free(m->name);
            free(m->client_urls);
            strv_free(urls, c->n_peer_urls);
            return IK_ENOMEM;
        }
        m->peer_urls = urls;
        m->n_peer_urls = c->n_peer_urls;
        m->is_learner = c->is_learner;
        n->n_members++;
        break;
    }
    case IKADAPB__MEMBER_CHANGE__KIND__REMOVE:
        if (m == NULL) {
            break; /* idempotent, as ADD */
        }
        free(m->name);
        strv_free(m->peer_urls, m->n_peer_urls);
        strv_free(m->client_urls, m->n_client_urls);
        *m = n->members[n->n_members - 1];
        n->n_members--;
        if (c->id == n->member_id) {
            log_error("this member has been permanently removed from the "
                      "cluster; exiting");
            n->removed = true;
        }
        break;
    case IKADAPB__MEMBER_CHANGE__KIND__UPDATE:
        if (m == NULL) {
            return IK_EMEMBERNOTFOUND;
        }
        urls = strv_dup(c->peer_urls, c->n_peer_urls);
        if (urls == NULL) {
            return IK_ENOMEM;
        }
        strv_free(m->peer_urls, m->n_peer_urls);
        m->peer_urls = urls;
        m->n_peer_urls = c->n_peer_urls;
        break;
    case IKADAPB__MEMBER_CHANGE__KIND__PROMOTE:
        if (m == NULL) {
            return IK_EMEMBERNOTFOUND;
        }
        if (!m->is_learner) {
            return IK_EMEMBERNOTLEARNER;
        }
        m->is_learner = false;
        break;
    default:
        return IK_EINVAL;
    }
    reconcile_soon(n);
    return 0;
}

static bool alarm_active(const struct node *n, int type)
{
    for (size_t i = 0; i < n->n_alarms; i++) {
        if (n->alarms[i].type == type) {
            return true;
        }
    }
    return false;
}

/* Apply an alarm change; the response lists the alarm that changed, as
 * etcd's does. */
static int alarms_apply(struct node *n, const Etcdserverpb__AlarmRequest *r,
                        ProtobufCMessage **out)
{
    Etcdserverpb__AlarmResponse *resp = malloc(sizeof *resp);
    Etcdserverpb__AlarmMember *am = malloc(sizeof *am);
    size_t i;
    bool changed = false;

    if (resp == NULL || am == NULL) {
        free(resp);
        free(am);
        return IK_ENOMEM;
    }
    etcdserverpb__alarm_response__init(resp);
    etcdserverpb__alarm_member__init(am);
    for (i = 0; i < n->n_alarms; i++) {
        if (n->alarms[i].member_id == r->memberid &&
            n->alarms[i].type == (int)r->alarm) {
            break;
        }
    }
    if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE &&
        i == n->n_alarms && r->alarm != ETCDSERVERPB__ALARM_TYPE__NONE) {
        struct node_alarm *grown =
            realloc(n->alarms, (n->n_alarms + 1) * sizeof *grown);
        if (grown == NULL) {
            free(resp);
            free(am);
            return IK_ENOMEM;
        }
        n->alarms = grown;
        n->alarms[n->n_alarms].member_id = r->memberid;
        n->alarms[n->n_alarms].type = (int)r->alarm;
        n->n_alarms++;
        changed = true;
        log_warn("alarm %s raised for member %016llx",
                 r->alarm == ETCDSERVERPB__ALARM_TYPE__NOSPACE ? "NOSPACE"
                                                               : "CORRUPT",
                 (unsigned long long)r->memberid);
    } else if (r->action ==
                   ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE &&
               i < n->n_alarms) {
        n->alarms[i] = n->alarms[n->n_alarms - 1];
        n->n_alarms--;
        changed = true;
    }
    if (changed) {
        am->memberid = r->memberid;
        am->alarm = r->alarm;
        resp->alarms = malloc(sizeof *resp->alarms);
        if (resp->alarms == NULL) {
            free(resp);
            free(am);
            return IK_ENOMEM;
        }
        resp->alarms[0] = am;
        resp->n_alarms = 1;
    } else {
        free(am);
    }
    *out = &resp->base;
    return 0;
}

static uint64_t now_ms(void);

static int lease_grant_apply(struct node *n,
                             const Etcdserverpb__LeaseGrantRequest *r,
                             ProtobufCMessage **out)
{
    Etcdserverpb__LeaseGrantResponse *resp = malloc(sizeof *resp);
    Etcdserverpb__ResponseHeader *h = malloc(sizeof *h);
    int64_t ttl = 0;
    int rv;

    if (resp == NULL || h == NULL) {
        free(resp);
        free(h);
        return IK_ENOMEM;
    }
    rv = lease_grant(&n->lessor, r->id, r->ttl, now_ms(), &ttl);
    if (rv != 0) {
        free(resp);
        free(h);
        return rv;
    }
    etcdserverpb__lease_grant_response__init(resp);
    etcdserverpb__response_header__init(h);
    resp->header = h;
    resp->id = r->id;
    resp->ttl = ttl;
    *out = &resp->base;
    return 0;
}

static int lease_revoke_apply(struct node *n,
                              const Etcdserverpb__LeaseRevokeRequest *r,
                              ProtobufCMessage **out)
{
    Etcdserverpb__LeaseRevokeResponse *resp = malloc(sizeof *resp);
    Etcdserverpb__ResponseHeader *h = malloc(sizeof *h);
    int rv;

    if (resp == NULL || h == NULL) {
        free(resp);
        free(h);
        return IK_ENOMEM;
    }
    rv = lease_revoke(&n->lessor, r->id);
    if (rv != 0) {
        free(resp);
        free(h);
        return rv;
    }
    etcdserverpb__lease_revoke_response__init(resp);
    etcdserverpb__response_header__init(h);
    resp->header = h;
    *out = &resp->base;
    return 0;
}

/* While NOSPACE is raised, writes that add data fail (deletes and
 * compactions still work), as with etcd's capped applier. */
static bool capped(const struct node *n, const Ikadapb__InternalRequest *ir)
{
    if (!alarm_active(n, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
        return false;
    }
    return ir->op_case == IKADAPB__INTERNAL_REQUEST__OP_PUT ||
           (ir->op_case == IKADAPB__INTERNAL_REQUEST__OP_TXN &&
            !kv_txn_is_read_only(ir->txn));
}

/* Run one decoded request against the store. */
static int execute(struct node *n, const Ikadapb__InternalRequest *ir,
                   ProtobufCMessage **resp)
{
    if (capped(n, ir)) {
        return IK_ENOSPACE;
    }
    switch (ir->op_case) {
    case IKADAPB__INTERNAL_REQUEST__OP_ALARM:
        return alarms_apply(n, ir->alarm, resp);
    case IKADAPB__INTERNAL_REQUEST__OP_PUT:
        return kv_put(&n->kv, ir->put, (Etcdserverpb__PutResponse **)resp);
    case IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE:
        return kv_delete_range(&n->kv, ir->delete_range,
                               (Etcdserverpb__DeleteRangeResponse **)resp);
    case IKADAPB__INTERNAL_REQUEST__OP_TXN:
        return kv_txn(&n->kv, ir->txn, (Etcdserverpb__TxnResponse **)resp);
    case IKADAPB__INTERNAL_REQUEST__OP_COMPACTION: {
        int rv = kv_compact(&n->kv, ir->compaction,
                            (Etcdserverpb__CompactionResponse **)resp);
        if (rv == 0 && n->hub != NULL) {
            watch_hub_compact(n->hub, mvcc_compact_rev(&n->store));
        }
        return rv;
    }
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_GRANT:
        return lease_grant_apply(n, ir->lease_grant, resp);
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_REVOKE:
        return lease_revoke_apply(n, ir->lease_revoke, resp);
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_CHECKPOINT:
        for (size_t i = 0; i < ir->lease_checkpoint->n_checkpoints; i++) {
            const Ikadapb__LeaseCheckpoint *c =
                ir->lease_checkpoint->checkpoints[i];
            lease_checkpoint(&n->lessor, c->id, c->remaining_ttl, now_ms());
        }
        return 0;
    case IKADAPB__INTERNAL_REQUEST__OP_PUBLISH:
        return members_publish(n, ir->publish);
    case IKADAPB__INTERNAL_REQUEST__OP_MEMBER_CHANGE:
        return members_change(n, ir->member_change);
    default:
        return IK_EINVAL;
    }
}

/*
 * Apply one committed entry. Deterministic on every member: request errors
 * (lease not found, compacted revision...) are results, not failures, so
 * this returns non-zero only when the member cannot go on (out of memory),
 * which makes raft retry the entry later.
 */
static void nudge_followers(struct node *n);

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct node *n = fsm->data;
    Ikadapb__InternalRequest *ir;
    struct node_proposal *p;
    ProtobufCMessage *resp = NULL;
    int rv;

    *result = NULL;
    if (raft_state(&n->raft) == RAFT_LEADER) {
        nudge_followers(n);
    }
    ir = entry_decode(buf);
    if (ir == NULL) {
        /* Every member sees the same bytes, so every member skips it. */
        log_error("raft entry of %zu bytes does not decode; skipped", buf->len);
        return 0;
    }
    rv = execute(n, ir, &resp);
    p = pending_take(n, ir->id);
    ikadapb__internal_request__free_unpacked(ir, NULL);
    if (rv == IK_ENOMEM) {
        if (p != NULL) {
            pending_add(n, p);
        }
        return RAFT_NOMEM;
    }
    if (p == NULL) {
        if (resp != NULL) {
            protobuf_c_message_free_unpacked(resp, NULL);
        }
        return 0;
    }
    /* Delivered from apply_cb, which raft calls right after this returns
     * (p embeds the raft request, so it must outlive this call). */
    p->status = rv;
    p->resp = resp;
    if (resp != NULL) {
        node_fill_header(n, response_header(resp));
    }
    return 0;
}

static int member_pb_cmp(const void *a, const void *b)
{
    const Etcdserverpb__Member *x = *(Etcdserverpb__Member *const *)a;
    const Etcdserverpb__Member *y = *(Etcdserverpb__Member *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int node_members_pb(const struct node *n, Etcdserverpb__Member ***out,
                    Etcdserverpb__Member **storage, size_t *count)
{
    Etcdserverpb__Member *ms = calloc(n->n_members + 1, sizeof *ms);
    Etcdserverpb__Member **mp = calloc(n->n_members + 1, sizeof *mp);

    if (ms == NULL || mp == NULL) {
        free(ms);
        free(mp);
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < n->n_members; i++) {
        const struct node_member *m = &n->members[i];
        etcdserverpb__member__init(&ms[i]);
        ms[i].id = m->id;
        ms[i].name = m->name;
        ms[i].n_peerurls = m->n_peer_urls;
        ms[i].peerurls = m->peer_urls;
        ms[i].n_clienturls = m->n_client_urls;
        ms[i].clienturls = m->client_urls;
        ms[i].islearner = m->is_learner;
        mp[i] = &ms[i];
    }
    qsort(mp, n->n_members, sizeof *mp, member_pb_cmp);
    *out = mp;
    *storage = ms;
    *count = n->n_members;
    return 0;
}

/* The member table as a snapshot section (protobuf ikadapb.Members). */
static int members_encode(const struct node *n, void **out, size_t *len)
{
    Ikadapb__Members msg = IKADAPB__MEMBERS__INIT;
    Etcdserverpb__Member *ms, **mp;
    int rv = node_members_pb(n, &mp, &ms, &msg.n_members);

    if (rv != 0) {
        return rv;
    }
    msg.members = mp;
    *len = ikadapb__members__get_packed_size(&msg);
    *out = malloc(*len > 0 ? *len : 1);
    if (*out != NULL) {
        ikadapb__members__pack(&msg, *out);
    } else {
        rv = IK_ENOMEM;
    }
    free(ms);
    free(mp);
    return rv;
}

static int members_decode(const void *buf, size_t len, struct node_member **out,
                          size_t *n_out)
{
    Ikadapb__Members *msg = ikadapb__members__unpack(NULL, len, buf);
    struct node_member *view;
    int rv;

    if (msg == NULL) {
        return IK_ECORRUPT;
    }
    view = calloc(msg->n_members + 1, sizeof *view);
    if (view == NULL) {
        ikadapb__members__free_unpacked(msg, NULL);
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < msg->n_members; i++) {
        view[i].id = msg->members[i]->id;
        view[i].name = msg->members[i]->name;
        view[i].peer_urls = msg->members[i]->peerurls;
        view[i].n_peer_urls = msg->members[i]->n_peerurls;
        view[i].client_urls = msg->members[i]->clienturls;
        view[i].n_client_urls = msg->members[i]->n_clienturls;
        view[i].is_learner = msg->members[i]->islearner;
    }
    rv = members_copy(out, n_out, view, msg->n_members);
    free(view);
    ikadapb__members__free_unpacked(msg, NULL);
    return rv;
}

/* Replace the store and the member table with a snapshot's; on any error
 * (corruption included) nothing changes and raft is told. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct node *n = fsm->data;
    struct mvcc store;
    struct node_member *members = NULL;
    size_t n_members = 0;
    struct node_alarm *alarms = NULL;
    size_t n_alarms = 0;
    void *section = NULL;
    size_t section_len = 0;
    int rv;

    mvcc_init(&store);
    rv = snapshot_decode(buf->base, buf->len, &store);
    if (rv == 0) {
        rv = snapshot_section_get(buf->base, buf->len, SNAPSHOT_SECTION_MEMBERS,
                                  &section, &section_len);
    }
    if (rv == 0) {
        rv = members_decode(section, section_len, &members, &n_members);
    }
    free(section);
    section = NULL;
    if (rv == 0) {
        rv = snapshot_section_get(buf->base, buf->len, SNAPSHOT_SECTION_META,
                                  &section, &section_len);
        if (rv == 0) {
            rv = alarms_decode(section, section_len, &alarms, &n_alarms);
        } else if (rv == IK_ENOENT) {
            rv = 0; /* no alarms were raised */
        }
        free(section);
        if (rv != 0) {
            members_free(members, n_members);
        }
    }
    if (rv != 0) {
        log_error("snapshot restore failed: %s", ik_strerror(rv));
        mvcc_close(&store);
        return rv == IK_ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    }
    mvcc_swap(&n->store, &store);
    mvcc_close(&store);
    members_free(n->members, n->n_members);
    n->members = members;
    n->n_members = n_members;
    free(n->alarms);
    n->alarms = alarms;
    n->n_alarms = n_alarms;
    /* Leases: their table from the snapshot, their keys from the store. */
    rv = snapshot_section_get(buf->base, buf->len, SNAPSHOT_SECTION_LEASES,
                              &section, &section_len);
    if (rv == 0) {
        rv = lease_decode(&n->lessor, section, section_len);
        free(section);
    } else if (rv == IK_ENOENT) {
        rv = 0; /* no lease section: keep the lessor as it is */
    }
    if (rv == 0) {
        rv = lease_rebuild_from_store(&n->lessor, &n->store);
    }
    if (rv != 0) {
        log_error("snapshot restore: leases: %s", ik_strerror(rv));
    }
    n->lease_primary = false;
    if (n->hub != NULL) {
        watch_hub_restore(n->hub, mvcc_rev(&n->store),
                          mvcc_compact_rev(&n->store));
    }
    raft_free(buf->base);
    return 0;
}

/* --- proposals ----------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* The typed response of a request, for decoding a forwarded answer. */
static const ProtobufCMessageDescriptor *
response_descriptor(Ikadapb__InternalRequest__OpCase op)
{
    switch (op) {
    case IKADAPB__INTERNAL_REQUEST__OP_PUT:
        return &etcdserverpb__put_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_DELETE_RANGE:
        return &etcdserverpb__delete_range_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_TXN:
        return &etcdserverpb__txn_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_COMPACTION:
        return &etcdserverpb__compaction_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_ALARM:
        return &etcdserverpb__alarm_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_GRANT:
        return &etcdserverpb__lease_grant_response__descriptor;
    case IKADAPB__INTERNAL_REQUEST__OP_LEASE_REVOKE:
        return &etcdserverpb__lease_revoke_response__descriptor;
    default:
        return NULL;
    }
}

/* Complete a proposal: release what routing held, then the callback. */
static void proposal_finish(struct node_proposal *p, int rv,
                            ProtobufCMessage *resp)
{
    free(p->entry);
    p->entry = NULL;
    p->entry_len = 0;
    if (rv != 0 && resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
        resp = NULL;
    }
    p->cb(p, rv, resp);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct node_proposal *p = req->data;
    struct node *n = p->node;
    int rv = p->status;
    ProtobufCMessage *resp = p->resp;

    (void)result;
    if (status != 0) {
        /* Lost before it was applied here. */
        pending_take(n, p->id);
        rv = raft_to_ik(status);
    }
    p->resp = NULL;
    proposal_finish(p, rv, resp);
}

/* Propose on this member, which must be the leader. The proposal's entry
 * is copied into a raft buffer. */
static int propose_local(struct node *n, struct node_proposal *p)
{
    struct raft_buffer buf;
    int rv;

    buf.len = p->entry_len;
    buf.base = raft_malloc(buf.len);
    if (buf.base == NULL) {
        return IK_ENOMEM;
    }
    memcpy(buf.base, p->entry, buf.len);
    p->status = IK_EIO; /* overwritten by fsm_apply */
    p->resp = NULL;
    p->req.data = p;
    pending_add(n, p);
    rv = raft_apply(&n->raft, &p->req, &buf, 1, apply_cb);
    if (rv != 0) {
        pending_take(n, p->id);
        raft_free(buf.base);
        return raft_to_ik(rv);
    }
    return 0;
}

/* The leader as this member knows it: its id (0 when unknown) and its raft
 * address. */
static uint64_t leader_of(struct node *n, const char **address)
{
    raft_id id = 0;
    *address = NULL;
    raft_leader(&n->raft, &id, address);
    if (id == 0 || *address == NULL) {
        return 0;
    }
    return id;
}

static struct peer_link *link_get(struct node *n, uint64_t id,
                                  const char *address);
static void stall(struct node *n, struct node_proposal *p);
static void forward_done(void *data, int status, const char *message,
                         const uint8_t *resp, size_t len);

/* Send the proposal to the leader over the peer port. */
static int forward(struct node *n, struct node_proposal *p, uint64_t leader,
                   const char *address)
{
    Ikadapb__ProposeRequest req = IKADAPB__PROPOSE_REQUEST__INIT;
    struct peer_link *link = link_get(n, leader, address);
    struct grpc_client_conn *conn;

    if (link == NULL) {
        return IK_ENOMEM;
    }
    conn = grpc_client_uv_conn(&link->client);
    if (conn == NULL) {
        return IK_EUNAVAILABLE;
    }
    req.id = p->id;
    req.entry.data = p->entry;
    req.entry.len = p->entry_len;
    return grpc_client_unary(conn, PEER_PROPOSE_PATH, &req.base,
                             n->forward_timeout_ms, NULL, 0, forward_done, p,
                             NULL);
}

/* Route a proposal: raft on the leader, the leader's peer port from a
 * follower, or the stall queue while no leader is known. Returns 0 when
 * the proposal is on its way (its callback will fire). */
static int route(struct node *n, struct node_proposal *p)
{
    const char *address;
    uint64_t leader;

    if (raft_state(&n->raft) == RAFT_LEADER) {
        return propose_local(n, p);
    }
    leader = leader_of(n, &address);
    if (leader != 0 && leader != n->member_id &&
        forward(n, p, leader, address) == 0) {
        return 0;
    }
    stall(n, p);
    return 0;
}

/* A request is worth sending again only if it surely did not reach a
 * leader: the peer said it is not the leader, or we could not connect. */
static bool retryable(int status, const char *message, int rv)
{
    if (rv == IK_ENOTLEADER) {
        return true;
    }
    return status == GRPC_UNAVAILABLE && message != NULL &&
           strncmp(message, "connection error", 16) == 0;
}

static void wait_applied(struct node *n, struct node_read *list,
                         uint64_t index);

static void forward_applied(struct node_read *r, int status)
{
    struct node_proposal *p = r->data;
    ProtobufCMessage *resp = p->resp;

    p->resp = NULL;
    proposal_finish(p, status != 0 ? status : p->status, resp);
}

static void forward_done(void *data, int status, const char *message,
                         const uint8_t *resp, size_t len)
{
    struct node_proposal *p = data;
    struct node *n = p->node;
    Ikadapb__ProposeResponse *pr;
    ProtobufCMessage *typed = NULL;
    uint64_t index;
    int rv;

    if (status != GRPC_OK) {
        rv = ik_error_from_grpc(status, message);
        if (n->closing) {
            proposal_finish(p, IK_ESTOPPED, NULL);
        } else if (retryable(status, message, rv)) {
            stall(n, p);
        } else {
            /* The leader may or may not have applied it. */
            proposal_finish(p, rv == IK_EUNAVAILABLE ? IK_ETIMEOUT : rv, NULL);
        }
        return;
    }
    pr = ikadapb__propose_response__unpack(NULL, len, resp);
    if (pr == NULL) {
        proposal_finish(p, IK_EPROTO, NULL);
        return;
    }
    rv = pr->error;
    if (rv == 0 && p->resp_desc != NULL) {
        typed = protobuf_c_message_unpack(p->resp_desc, NULL, pr->response.len,
                                          pr->response.data);
        if (typed == NULL) {
            rv = IK_EPROTO;
        } else {
            /* Answered by this member: its ids, the leader's revision. */
            Etcdserverpb__ResponseHeader *h = response_header(typed);
            if (h != NULL) {
                h->member_id = n->member_id;
                h->cluster_id = n->cluster_id;
            }
        }
    }
    index = pr->index;
    ikadapb__propose_response__free_unpacked(pr, NULL);
    if (rv == 0 && index > raft_last_applied(&n->raft)) {
        /* Answer once applied here too, as etcd's followers do. */
        p->status = rv;
        p->resp = typed;
        p->wait.data = p;
        p->wait.cb = forward_applied;
        p->wait.next = NULL;
        wait_applied(n, &p->wait, index);
        return;
    }
    proposal_finish(p, rv, typed);
}

int node_propose(struct node *n, struct node_proposal *p,
                 const Ikadapb__InternalRequest *req, node_proposal_cb cb)
{
    Ikadapb__InternalRequest ir = *req;
    uint8_t *hdr;
    size_t len;

    if (n->closing) {
        return IK_ESTOPPED;
    }
    ir.id = n->next_id++;
    len = ikadapb__internal_request__get_packed_size(&ir);
    if (len > n->max_request_bytes) {
        return IK_EREQUESTTOOLARGE;
    }
    p->entry_len = (ENTRY_HEADER_SIZE + len + 7) & ~(size_t)7;
    p->entry = calloc(1, p->entry_len);
    if (p->entry == NULL) {
        return IK_ENOMEM;
    }
    hdr = p->entry;
    hdr[0] = ENTRY_VERSION;
    hdr[1] = ENTRY_TYPE_INTERNAL_REQUEST;
    hdr[4] = (uint8_t)len;
    hdr[5] = (uint8_t)(len >> 8);
    hdr[6] = (uint8_t)(len >> 16);
    hdr[7] = (uint8_t)(len >> 24);
    ikadapb__internal_request__pack(&ir, hdr + ENTRY_HEADER_SIZE);

    p->cb = cb;
    p->id = ir.id;
    p->node = n;
    p->resp_desc = response_descriptor(ir.op_case);
    p->deadline = now_ms() + n->leader_wait_ms;
    p->next_stalled = NULL;
    if (raft_state(&n->raft) == RAFT_LEADER) {
        int rv = propose_local(n, p);
        if (rv != 0) {
            free(p->entry);
            p->entry = NULL;
        }
        return rv;
    }
    return route(n, p);
}

/* --- linearizable reads -------------------------------------------------- */

static void barrier_cb(struct raft_barrier *req, int status);
static void retry_arm(struct node *n);

static void reads_complete(struct node_read *list, int status)
{
    while (list != NULL) {
        struct node_read *r = list;
        list = r->next;
        r->next = NULL;
        r->cb(r, status);
    }
}

/* Start a barrier for every queued read. */
static void barrier_start(struct node *n)
{
    int rv;

    n->served = n->queued_head;
    n->queued_head = n->queued_tail = NULL;
    n->barrier.data = n;
    rv = raft_barrier(&n->raft, &n->barrier, barrier_cb);
    if (rv != 0) {
        struct node_read *list = n->served;
        n->served = NULL;
        reads_complete(list, raft_to_ik(rv));
        return;
    }
    n->barrier_inflight = true;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct node *n = req->data;
    struct node_read *list = n->served;

    n->served = NULL;
    n->barrier_inflight = false;
    reads_complete(list, raft_to_ik(status));
    if (status != 0) {
        /* Leadership lost: raft calls this while tearing its leader state
         * down and must not be re-entered (raft_barrier here crashed).
         * Queued reads go to the new leader by read index once the retry
         * timer fires. */
        struct node_read *q = n->queued_head;
        n->queued_head = n->queued_tail = NULL;
        n->nudge = false;
        while (q != NULL) {
            struct node_read *r = q;
            q = r->next;
            r->next = NULL;
            if (n->ri_queue_tail != NULL) {
                n->ri_queue_tail->next = r;
            } else {
                n->ri_queue_head = r;
            }
            n->ri_queue_tail = r;
        }
        if (n->ri_queue_head != NULL) {
            retry_arm(n);
        }
        return;
    }
    if ((n->queued_head != NULL || n->nudge) && !n->closing) {
        n->nudge = false;
        barrier_start(n);
    }
}

/*
 * Followers learn that an entry is committed only from the leader's next
 * AppendEntries, and canonical/raft sends none until there is a new entry
 * or a heartbeat is due (--heartbeat-interval, 100 ms by default): a write
 * or a watch event would reach a follower's clients up to a heartbeat
 * late. So after applying entries, the leader appends a barrier (batched:
 * at most one in flight), whose replication carries the new commit index
 * at once. Checked once per loop iteration.
 */
static void nudge_cb(uv_prepare_t *h)
{
    struct node *n = h->data;

    uv_prepare_stop(h);
    if (!n->nudge || n->closing || raft_state(&n->raft) != RAFT_LEADER) {
        n->nudge = false;
        return;
    }
    if (!n->barrier_inflight) {
        n->nudge = false;
        barrier_start(n);
    }
    /* else: barrier_cb starts the next one */
}

static void nudge_followers(struct node *n)
{
    if (n->nudge || n->raft.configuration.n < 2) {
        return;
    }
    n->nudge = true;
    uv_prepare_start(&n->nudge_prepare, nudge_cb);
}

/* Leader: queue behind the next barrier. */
static void read_local(struct node *n, struct node_read *r)
{
    if (n->queued_tail != NULL) {
        n->queued_tail->next = r;
    } else {
        n->queued_head = r;
    }
    n->queued_tail = r;
    if (!n->barrier_inflight) {
        barrier_start(n);
    }
}

static void ri_start(struct node *n);

/* Follower: queue for the next read-index round trip to the leader. */
static void read_remote(struct node *n, struct node_read *r)
{
    if (n->ri_queue_tail != NULL) {
        n->ri_queue_tail->next = r;
    } else {
        n->ri_queue_head = r;
    }
    n->ri_queue_tail = r;
    if (!n->ri_inflight) {
        ri_start(n);
    }
}

/* Reads waiting to be applied up to their index: checked after every loop
 * iteration, since applying happens as raft I/O completes. */
static void apply_check_cb(uv_check_t *h)
{
    struct node *n = h->data;
    uint64_t applied = raft_last_applied(&n->raft);
    struct node_read *ready = NULL, **pp = &n->applying;

    while (*pp != NULL) {
        struct node_read *r = *pp;
        if (r->index <= applied) {
            *pp = r->next;
            r->next = ready;
            ready = r;
        } else {
            pp = &r->next;
        }
    }
    if (n->applying == NULL) {
        uv_check_stop(&n->apply_check);
    }
    reads_complete(ready, 0);
}

static void wait_applied(struct node *n, struct node_read *list, uint64_t index)
{
    while (list != NULL) {
        struct node_read *r = list;
        list = r->next;
        r->index = index;
        r->next = n->applying;
        n->applying = r;
    }
    uv_check_start(&n->apply_check, apply_check_cb);
    /* The index may already be applied: check without waiting for I/O. */
    apply_check_cb(&n->apply_check);
}

static void retry_cb(uv_timer_t *t);

static void retry_arm(struct node *n)
{
    if (!n->closing && !uv_is_active((uv_handle_t *)&n->retry_timer)) {
        uv_timer_start(&n->retry_timer, retry_cb, RETRY_MS, 0);
    }
}

static void ri_done(void *data, int status, const char *message,
                    const uint8_t *resp, size_t len)
{
    struct node *n = data;
    struct node_read *batch = n->ri_batch;
    Ikadapb__ReadIndexResponse *rr;
    int rv;

    n->ri_batch = NULL;
    n->ri_inflight = false;
    if (status == GRPC_OK) {
        rr = ikadapb__read_index_response__unpack(NULL, len, resp);
        if (rr == NULL) {
            reads_complete(batch, IK_EPROTO);
        } else {
            wait_applied(n, batch, rr->index);
            ikadapb__read_index_response__free_unpacked(rr, NULL);
        }
    } else {
        rv = ik_error_from_grpc(status, message);
        if (!n->closing && retryable(status, message, rv)) {
            /* Back to the front of the queue; the retry timer resends. */
            struct node_read *last = batch;
            while (last != NULL && last->next != NULL) {
                last = last->next;
            }
            if (last != NULL) {
                last->next = n->ri_queue_head;
                n->ri_queue_head = batch;
                if (n->ri_queue_tail == NULL) {
                    n->ri_queue_tail = last;
                }
            }
            retry_arm(n);
            return;
        }
        reads_complete(batch, n->closing              ? IK_ESTOPPED
                              : rv == IK_EUNAVAILABLE ? IK_ETIMEOUT
                                                      : rv);
    }
    if (n->ri_queue_head != NULL && !n->closing) {
        ri_start(n);
    }
}

/* Ask the leader for a read index on behalf of every queued read. */
static void ri_start(struct node *n)
{
    Ikadapb__ReadIndexRequest req = IKADAPB__READ_INDEX_REQUEST__INIT;
    struct grpc_client_conn *conn = NULL;
    struct peer_link *link;
    const char *address;
    uint64_t leader;

    if (raft_state(&n->raft) == RAFT_LEADER) {
        /* Became the leader meanwhile: use barriers. */
        struct node_read *list = n->ri_queue_head;
        n->ri_queue_head = n->ri_queue_tail = NULL;
        while (list != NULL) {
            struct node_read *r = list;
            list = r->next;
            r->next = NULL;
            read_local(n, r);
        }
        return;
    }
    leader = leader_of(n, &address);
    link = leader != 0 && leader != n->member_id ? link_get(n, leader, address)
                                                 : NULL;
    if (link != NULL) {
        conn = grpc_client_uv_conn(&link->client);
    }
    if (conn == NULL || grpc_client_unary(conn, PEER_READ_INDEX_PATH, &req.base,
                                          n->forward_timeout_ms, NULL, 0,
                                          ri_done, n, NULL) != 0) {
        retry_arm(n); /* no leader yet: the retry timer tries again */
        return;
    }
    n->ri_batch = n->ri_queue_head;
    n->ri_queue_head = n->ri_queue_tail = NULL;
    n->ri_inflight = true;
}

/*
 * TEST-ONLY fault injection for tests/jepsen (never set it anywhere else):
 * with IKADA_TEST_BUG=stale-read in the environment, linearizable reads are
 * served from this member's local store at once, without a barrier (leader)
 * or a read index from the leader (follower), so they can be stale. The
 * Jepsen-style checker must catch it. Without the variable: no effect.
 */
static bool test_bug_stale_read(void)
{
    static int on = -1;

    if (on < 0) {
        const char *bug = getenv("IKADA_TEST_BUG");
        on = bug != NULL && strcmp(bug, "stale-read") == 0;
    }
    return on == 1;
}

int node_read(struct node *n, struct node_read *r, node_read_cb cb)
{
    if (n->closing) {
        return IK_ESTOPPED;
    }
    r->cb = cb;
    r->next = NULL;
    r->index = 0;
    r->deadline = now_ms() + n->leader_wait_ms;
    if (test_bug_stale_read()) { /* TEST-ONLY bug, see above */
        cb(r, 0);
        return 0;
    }
    if (raft_state(&n->raft) == RAFT_LEADER) {
        read_local(n, r);
    } else {
        read_remote(n, r);
    }
    return 0;
}

/* --- waiting for a leader ------------------------------------------------- */

static void stall(struct node *n, struct node_proposal *p)
{
    p->next_stalled = n->stalled;
    n->stalled = p;
    retry_arm(n);
}

/* Retry what waits for a leader; fail what waited too long with etcd's
 * "no leader". */
static void retry_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    struct node_proposal *list = n->stalled;
    struct node_read **pp;
    struct node_read *expired = NULL;
    uint64_t now = now_ms();

    n->stalled = NULL;
    while (list != NULL) {
        struct node_proposal *p = list;
        list = p->next_stalled;
        p->next_stalled = NULL;
        if (now >= p->deadline) {
            proposal_finish(p, IK_ENOLEADER, NULL);
        } else if (route(n, p) != 0) {
            proposal_finish(p, IK_ENOLEADER, NULL);
        }
    }
    /* Queued reads not yet sent: expire, then try to send the rest. */
    n->ri_queue_tail = NULL;
    for (pp = &n->ri_queue_head; *pp != NULL;) {
        struct node_read *r = *pp;
        if (now >= r->deadline) {
            *pp = r->next;
            r->next = expired;
            expired = r;
        } else {
            n->ri_queue_tail = r;
            pp = &r->next;
        }
    }
    reads_complete(expired, IK_ENOLEADER);
    if (n->ri_queue_head != NULL && !n->ri_inflight) {
        ri_start(n);
    }
}

/* --- peer links ------------------------------------------------------------
 */

static struct peer_link *link_get(struct node *n, uint64_t id,
                                  const char *address)
{
    struct grpc_client_config cfg = {0};
    struct peer_link *l;
    char host[256];
    uint16_t port;

    for (l = n->links; l != NULL; l = l->next) {
        if (l->id == id && strcmp(l->address, address) == 0) {
            return l;
        }
    }
    if (peer_uv_parse_address(address, host, sizeof host, &port) != 0 ||
        strlen(address) >= sizeof l->address) {
        return NULL;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        return NULL;
    }
    l->id = id;
    l->node = n;
    strcpy(l->address, address);
    cfg.authority = address;
    cfg.now_ms = now_ms;
    cfg.max_recv_msg_size = n->max_request_bytes * 2 + 1024 * 1024;
    if (grpc_client_uv_init(&l->client, n->loop, host, port, &cfg) != 0) {
        free(l);
        return NULL;
    }
    l->client.data = l;
    l->next = n->links;
    n->links = l;
    return l;
}

/* --- peer service (served on the peer port) ------------------------------- */

/* A proposal forwarded to this member by a follower. */
struct peer_op {
    struct grpc_call *call; /* NULL once the follower went away */
    struct node *node;
    union {
        struct node_proposal prop;
        struct node_read read;
    } u;
};

static void peer_propose_done(struct node_proposal *p, int status,
                              ProtobufCMessage *resp)
{
    struct peer_op *op = p->data;
    Ikadapb__ProposeResponse pr = IKADAPB__PROPOSE_RESPONSE__INIT;
    uint8_t *packed = NULL;

    pr.index = p->req.index;
    if (op->call != NULL) {
        if (status == IK_ENOLEADER || status == IK_ELEADERCHANGED) {
            /* Tell the follower to look for the new leader. */
            grpc_call_finish_error(op->call, IK_ENOTLEADER);
        } else if (status == IK_ESTOPPED || status == IK_ENOMEM ||
                   status == IK_EIO) {
            grpc_call_finish_error(op->call, status);
        } else {
            pr.error = status;
            if (resp != NULL) {
                size_t len = protobuf_c_message_get_packed_size(resp);
                packed = malloc(len > 0 ? len : 1);
                if (packed == NULL) {
                    pr.error = IK_ENOMEM;
                } else {
                    protobuf_c_message_pack(resp, packed);
                    pr.response.data = packed;
                    pr.response.len = len;
                }
            }
            if (grpc_call_send_proto(op->call, &pr.base) != 0) {
                grpc_call_finish_error(op->call, IK_ENOMEM);
            } else {
                grpc_call_finish(op->call, GRPC_OK, NULL);
            }
        }
    }
    free(packed);
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    free(op);
}

/* Does @entry look like an entry node_propose() framed? Only such entries
 * may enter the log. */
static bool entry_valid(const uint8_t *entry, size_t len, uint64_t max)
{
    uint32_t plen;
    if (len < ENTRY_HEADER_SIZE || len % 8 != 0 || entry[0] != ENTRY_VERSION ||
        entry[1] != ENTRY_TYPE_INTERNAL_REQUEST) {
        return false;
    }
    plen = (uint32_t)entry[4] | (uint32_t)entry[5] << 8 |
           (uint32_t)entry[6] << 16 | (uint32_t)entry[7] << 24;
    return plen <= len - ENTRY_HEADER_SIZE && plen <= max;
}

static void peer_propose_on_message(struct grpc_call *call, const uint8_t *data,
                                    size_t len)
{
    struct node *n = grpc_call_method(call)->data;
    Ikadapb__ProposeRequest *req;
    struct peer_op *op;
    int rv;

    req = ikadapb__propose_request__unpack(NULL, len, data);
    if (req == NULL) {
        grpc_call_finish_error(call, IK_EMALFORMED);
        return;
    }
    if (!entry_valid(req->entry.data, req->entry.len, n->max_request_bytes)) {
        ikadapb__propose_request__free_unpacked(req, NULL);
        grpc_call_finish_error(call, IK_EINVAL);
        return;
    }
    if (n->closing || raft_state(&n->raft) != RAFT_LEADER) {
        ikadapb__propose_request__free_unpacked(req, NULL);
        grpc_call_finish_error(call, n->closing ? IK_ESTOPPED : IK_ENOTLEADER);
        return;
    }
    op = calloc(1, sizeof *op);
    if (op == NULL) {
        ikadapb__propose_request__free_unpacked(req, NULL);
        grpc_call_finish_error(call, IK_ENOMEM);
        return;
    }
    op->call = call;
    op->u.prop.data = op;
    op->u.prop.cb = peer_propose_done;
    op->u.prop.id = req->id;
    op->u.prop.node = n;
    op->u.prop.entry = req->entry.data; /* borrowed for the copy below */
    op->u.prop.entry_len = req->entry.len;
    rv = propose_local(n, &op->u.prop);
    op->u.prop.entry = NULL;
    op->u.prop.entry_len = 0;
    ikadapb__propose_request__free_unpacked(req, NULL);
    if (rv != 0) {
        free(op);
        grpc_call_finish_error(call, rv == IK_ENOLEADER ? IK_ENOTLEADER : rv);
        return;
    }
    grpc_call_set_data(call, op);
}

static void peer_read_done(struct node_read *r, int status)
{
    struct peer_op *op = r->data;
    Ikadapb__ReadIndexResponse rr = IKADAPB__READ_INDEX_RESPONSE__INIT;

    if (op->call != NULL) {
        if (status != 0) {
            grpc_call_finish_error(op->call, status == IK_ELEADERCHANGED ||
                                                     status == IK_ENOLEADER
                                                 ? IK_ENOTLEADER
                                                 : status);
        } else {
            /* The barrier is applied: everything committed before the
             * request arrived is at or below this index. */
            rr.index = raft_last_applied(&op->node->raft);
            if (grpc_call_send_proto(op->call, &rr.base) != 0) {
                grpc_call_finish_error(op->call, IK_ENOMEM);
            } else {
                grpc_call_finish(op->call, GRPC_OK, NULL);
            }
        }
    }
    free(op);
}

static void peer_read_index_on_message(struct grpc_call *call,
                                       const uint8_t *data, size_t len)
{
    struct node *n = grpc_call_method(call)->data;
    struct peer_op *op;

    (void)data;
    (void)len;
    if (n->closing || raft_state(&n->raft) != RAFT_LEADER) {
        grpc_call_finish_error(call, n->closing ? IK_ESTOPPED : IK_ENOTLEADER);
        return;
    }
    op = calloc(1, sizeof *op);
    if (op == NULL) {
        grpc_call_finish_error(call, IK_ENOMEM);
        return;
    }
    op->call = call;
    op->node = n;
    op->u.read.data = op;
    op->u.read.cb = peer_read_done;
    op->u.read.next = NULL;
    grpc_call_set_data(call, op);
    read_local(n, &op->u.read);
}

static void peer_members_on_message(struct grpc_call *call, const uint8_t *data,
                                    size_t len)
{
    struct node *n = grpc_call_method(call)->data;
    Ikadapb__MembersResponse resp = IKADAPB__MEMBERS_RESPONSE__INIT;
    Etcdserverpb__Member *ms, **mp;

    (void)data;
    (void)len;
    if (node_members_pb(n, &mp, &ms, &resp.n_members) != 0) {
        grpc_call_finish_error(call, IK_ENOMEM);
        return;
    }
    resp.cluster_id = n->cluster_id;
    resp.members = mp;
    if (grpc_call_send_proto(call, &resp.base) != 0) {
        grpc_call_finish_error(call, IK_ENOMEM);
    } else {
        grpc_call_finish(call, GRPC_OK, NULL);
    }
    free(ms);
    free(mp);
}

static void peer_on_cancel(struct grpc_call *call)
{
    struct peer_op *op = grpc_call_get_data(call);
    if (op != NULL) {
        op->call = NULL;
    }
}

/* --- leases and watches ------------------------------------------------- */

#define WATCH_TICK_MS 100
#define WATCH_SYNC_ROUNDS 16
#define EXPIRED_BATCH 64

/* A proposal the node makes on its own behalf; freed when done. */
static void internal_done(struct node_proposal *p, int status,
                          ProtobufCMessage *resp)
{
    (void)status;
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    free(p);
}

static void propose_internal(struct node *n, const Ikadapb__InternalRequest *ir)
{
    struct node_proposal *p = calloc(1, sizeof *p);
    if (p != NULL && node_propose(n, p, ir, internal_done) != 0) {
        free(p);
    }
}

/* Every committed write reaches the lessor (key attachments) and the
 * watch hub (events). */
static void commit_hook(void *arg, const struct mvcc *m)
{
    struct node *n = arg;
    lease_commit_hook(&n->lessor, m);
    if (n->hub != NULL) {
        watch_hub_notify_mvcc(n->hub, m);
    }
}

static void hub_fill_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    struct node *n = arg;
    h->cluster_id = n->cluster_id;
    h->member_id = n->member_id;
    h->raft_term = n->raft.current_term;
}

static int leases_and_watches_init(struct node *n,
                                   const struct node_options *opts)
{
    struct lease_config lcfg;
    struct watch_hub_config wcfg = {0};

    lease_config_init(&lcfg, opts->heartbeat_ms, opts->election_ms);
    lease_init(&n->lessor, &lcfg, &n->store);
    lease_idgen_init(&n->idgen, n->member_id, uv_hrtime() / 1000000);
    n->kv.lease_exists = lease_exists_cb;
    n->kv.lease_data = &n->lessor;
    wcfg.rev = mvcc_rev(&n->store);
    wcfg.compact_rev = mvcc_compact_rev(&n->store);
    wcfg.history = history_read;
    wcfg.history_arg = &n->store;
    wcfg.fill_header = hub_fill_header;
    wcfg.header_arg = n;
    wcfg.fragment_bytes = opts->max_request_bytes + 512 * 1024;
    if (watch_hub_new(&wcfg, &n->hub) != 0) {
        return IK_ENOMEM;
    }
    mvcc_set_commit_hook(&n->store, commit_hook, n);
    return 0;
}

/* Only the leader's lessor tracks expiry: follow leadership changes. */
static bool lease_leader_check(struct node *n)
{
    bool leader = raft_state(&n->raft) == RAFT_LEADER;
    if (leader && !n->lease_primary) {
        lease_promote(&n->lessor, now_ms());
        n->lease_primary = true;
    } else if (!leader && n->lease_primary) {
        lease_demote(&n->lessor);
        n->lease_primary = false;
    }
    return leader;
}

/* Leader: revoke expired leases and checkpoint remaining TTLs, through
 * raft like every other change. */
static void lease_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    int64_t ids[EXPIRED_BATCH];
    struct lease_checkpoint *cps;
    uint64_t now = now_ms();
    size_t k;

    if (n->closing || !lease_leader_check(n)) {
        return;
    }
    k = lease_expired(&n->lessor, now, ids, EXPIRED_BATCH);
    for (size_t i = 0; i < k; i++) {
        Etcdserverpb__LeaseRevokeRequest r =
            ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
        r.id = ids[i];
        ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_REVOKE;
        ir.lease_revoke = &r;
        propose_internal(n, &ir);
    }
    cps = calloc(LEASE_CHECKPOINT_BATCH, sizeof *cps);
    k = cps != NULL
            ? lease_checkpoints(&n->lessor, now, cps, LEASE_CHECKPOINT_BATCH)
            : 0;
    if (k > 0) {
        Ikadapb__LeaseCheckpoints msg = IKADAPB__LEASE_CHECKPOINTS__INIT;
        Ikadapb__LeaseCheckpoint *c = calloc(k, sizeof *c);
        Ikadapb__LeaseCheckpoint **cp = calloc(k, sizeof *cp);
        if (c != NULL && cp != NULL) {
            for (size_t i = 0; i < k; i++) {
                ikadapb__lease_checkpoint__init(&c[i]);
                c[i].id = cps[i].id;
                c[i].remaining_ttl = cps[i].remaining_ttl;
                cp[i] = &c[i];
            }
            msg.n_checkpoints = k;
            msg.checkpoints = cp;
            ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_CHECKPOINT;
            ir.lease_checkpoint = &msg;
            propose_internal(n, &ir);
        }
        free(c);
        free(cp);
    }
    free(cps);
}

/* Watches: catch slow watchers up and send progress notifications. */
static void watch_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    for (int i = 0; i < WATCH_SYNC_ROUNDS && watch_hub_sync(n->hub); i++) {
    }
    watch_hub_tick(n->hub, now_ms());
}

struct lessor *node_lessor(struct node *n)
{
    return &n->lessor;
}

struct watch_hub *node_watch_hub(struct node *n)
{
    return n->hub;
}

int64_t node_lease_new_id(struct node *n)
{
    return lease_idgen_next(&n->idgen);
}

int node_lease_renew(struct node *n, int64_t id, int64_t *ttl)
{
    bool clear = false;
    int rv;

    if (!lease_leader_check(n)) {
        return IK_ENOTLEADER;
    }
    rv = lease_renew(&n->lessor, id, now_ms(), ttl, &clear);
    if (rv == 0 && clear) {
        /* A renewed lease's old checkpoint must not shorten it later. */
        Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
        Ikadapb__LeaseCheckpoints msg = IKADAPB__LEASE_CHECKPOINTS__INIT;
        Ikadapb__LeaseCheckpoint c = IKADAPB__LEASE_CHECKPOINT__INIT;
        Ikadapb__LeaseCheckpoint *cp = &c;
        c.id = id;
        c.remaining_ttl = 0;
        msg.n_checkpoints = 1;
        msg.checkpoints = &cp;
        ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_LEASE_CHECKPOINT;
        ir.lease_checkpoint = &msg;
        propose_internal(n, &ir);
    }
    return rv;
}

int node_lease_ttl(struct node *n, int64_t id, int64_t *granted,
                   int64_t *remaining)
{
    if (!lease_leader_check(n)) {
        return IK_ENOTLEADER;
    }
    return lease_time_to_live(&n->lessor, id, now_ms(), granted, remaining);
}

struct renew_call {
    node_renew_cb cb;
    void *data;
};

static void renew_done(void *data, int status, const char *message,
                       const uint8_t *resp, size_t len)
{
    struct renew_call *rc = data;
    Ikadapb__LeaseRenewResponse *r = NULL;
    int64_t ttl = 0;
    int rv = ik_error_from_grpc(status, message);

    if (rv == 0) {
        r = ikadapb__lease_renew_response__unpack(NULL, len, resp);
        rv = r != NULL ? 0 : IK_EPROTO;
        ttl = r != NULL ? r->ttl : 0;
    }
    if (r != NULL) {
        ikadapb__lease_renew_response__free_unpacked(r, NULL);
    }
    rc->cb(rc->data, rv, ttl);
    free(rc);
}

int node_lease_renew_remote(struct node *n, int64_t id, node_renew_cb cb,
                            void *data)
{
    Ikadapb__LeaseRenewRequest req = IKADAPB__LEASE_RENEW_REQUEST__INIT;
    struct renew_call *rc;
    uint8_t buf[32];
    size_t len;
    int rv;

    req.id = id;
    len = ikadapb__lease_renew_request__pack(&req, buf);
    rc = malloc(sizeof *rc);
    if (rc == NULL) {
        return IK_ENOMEM;
    }
    rc->cb = cb;
    rc->data = data;
    rv = node_forward(n, "/ikadapb.Peer/LeaseRenew", buf, len, renew_done, rc);
    if (rv != 0) {
        free(rc);
    }
    return rv;
}

static void peer_lease_renew_on_message(struct grpc_call *call,
                                        const uint8_t *data, size_t len)
{
    struct node *n = grpc_call_method(call)->data;
    Ikadapb__LeaseRenewRequest *req =
        ikadapb__lease_renew_request__unpack(NULL, len, data);
    Ikadapb__LeaseRenewResponse resp = IKADAPB__LEASE_RENEW_RESPONSE__INIT;
    int rv;

    if (req == NULL) {
        grpc_call_finish_error(call, IK_EMALFORMED);
        return;
    }
    rv = node_lease_renew(n, req->id, &resp.ttl);
    ikadapb__lease_renew_request__free_unpacked(req, NULL);
    if (rv == IK_ELEASENOTFOUND) {
        resp.ttl = 0;
        rv = 0;
    }
    if (rv != 0) {
        grpc_call_finish_error(call, rv);
        return;
    }
    if (grpc_call_send_proto(call, &resp.base) != 0) {
        grpc_call_finish_error(call, IK_ENOMEM);
    } else {
        grpc_call_finish(call, GRPC_OK, NULL);
    }
}

/* --- automatic compaction ------------------------------------------------ */

static void compact_done(struct node_proposal *p, int status,
                         ProtobufCMessage *resp)
{
    struct node *n = p->data;
    n->compact_inflight = false;
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (status != 0 && status != IK_ECOMPACTED && !n->closing) {
        log_warn("auto compaction failed: %s", ik_strerror(status));
    }
}

static void compact_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Etcdserverpb__CompactionRequest req =
        ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    uint64_t now = now_ms(), due;
    int64_t target = compactor_tick(&n->compactor, now, mvcc_rev(&n->store));

    /* Every member samples; only the leader proposes. */
    if (target > mvcc_compact_rev(&n->store) && !n->compact_inflight &&
        raft_state(&n->raft) == RAFT_LEADER) {
        log_info("starting auto compaction at revision %lld",
                 (long long)target);
        req.revision = target;
        ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_COMPACTION;
        ir.compaction = &req;
        n->compact_prop.data = n;
        if (node_propose(n, &n->compact_prop, &ir, compact_done) == 0) {
            n->compact_inflight = true;
        }
    }
    due = compactor_due_in(&n->compactor, now);
    if (due != UINT64_MAX) {
        uv_timer_start(t, compact_timer_cb, due > 0 ? due : 1, 0);
    }
}

/* --- membership ---------------------------------------------------------- */

#define RECONCILE_MS 200
/* etcd promotes a learner only once it has 90% of the leader's log. */
#define LEARNER_READY_PERCENT 90

/* Index of @id in raft's configuration, or -1. */
static int config_index(struct node *n, uint64_t id)
{
    const struct raft_configuration *c = &n->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

/* Leader only: has member @id replicated most of the log? */
static bool caught_up(struct node *n, uint64_t id)
{
    int i = config_index(n, id);
    uint64_t last = raft_last_index(&n->raft);

    if (i < 0 || raft_state(&n->raft) != RAFT_LEADER ||
        n->raft.leader_state.progress == NULL) {
        return false;
    }
    return n->raft.leader_state.progress[i].match_index * 100 >=
           last * LEARNER_READY_PERCENT;
}

static void change_cb(struct raft_change *req, int status)
{
    struct node *n = req->data;

    n->change_inflight = false;
    if (status != 0 && !n->closing) {
        log_warn("raft configuration change failed: %s", raft_strerror(status));
    }
    if (!n->closing) {
        reconcile_soon(n);
    }
}

/* Leader: make raft's configuration follow the member table, one change at
 * a time: add missing servers (as spares, then standbys that replicate
 * without voting), promote caught-up non-learners to voters, remove
 * servers no longer in the table. */
static void reconcile(struct node *n)
{
    const struct raft_configuration *c = &n->raft.configuration;
    char address[300];
    int rv = 0;

    if (n->closing || n->change_inflight ||
        raft_state(&n->raft) != RAFT_LEADER) {
        return;
    }
    n->change.data = n;
    for (size_t k = 0; k < n->n_members; k++) {
        const struct node_member *m = &n->members[k];
        int i = config_index(n, m->id);
        if (i < 0) {
            if (member_raft_address(m, address, sizeof address) != 0) {
                continue;
            }
            rv = raft_add(&n->raft, &n->change, m->id, address, change_cb);
        } else if (c->servers[i].role == RAFT_SPARE) {
            rv = raft_assign(&n->raft, &n->change, m->id, RAFT_STANDBY,
                             change_cb);
        } else if (c->servers[i].role == RAFT_STANDBY && !m->is_learner &&
                   caught_up(n, m->id)) {
            rv =
                raft_assign(&n->raft, &n->change, m->id, RAFT_VOTER, change_cb);
        } else {
            continue;
        }
        if (rv == 0) {
            n->change_inflight = true;
        } else {
            log_warn("raft configuration change for %016llx: %s",
                     (unsigned long long)m->id, raft_strerror(rv));
        }
        return;
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (member_find(n, c->servers[i].id) == NULL) {
            rv = raft_remove(&n->raft, &n->change, c->servers[i].id, change_cb);
            if (rv == 0) {
                n->change_inflight = true;
            } else {
                log_warn("raft remove %016llx: %s",
                         (unsigned long long)c->servers[i].id,
                         raft_strerror(rv));
            }
            return;
        }
    }
}

/* Answer of another member to "am I still a member?". */
static void removal_check_done(void *data, int status, const char *message,
                               const uint8_t *resp, size_t len)
{
    struct node *n = data;
    Ikadapb__MembersResponse *mr;
    bool found = false;

    (void)message;
    n->removal_check_inflight = false;
    if (status != GRPC_OK || n->closing) {
        return;
    }
    mr = ikadapb__members_response__unpack(NULL, len, resp);
    if (mr == NULL) {
        return;
    }
    for (size_t i = 0; i < mr->n_members; i++) {
        found = found || mr->members[i]->id == n->member_id;
    }
    if (mr->cluster_id == n->cluster_id && !found && !n->removed) {
        log_error("this member has been permanently removed from the "
                  "cluster; exiting");
        n->removed = true;
    }
    ikadapb__members_response__free_unpacked(mr, NULL);
}

/* A member cut off from the leader asks the others whether it was removed
 * meanwhile (the leader stops replicating to a removed member, so it may
 * never apply its own removal). */
static void removal_check(struct node *n)
{
    Ikadapb__MembersRequest req = IKADAPB__MEMBERS_REQUEST__INIT;
    const char *address;
    char raft_address[300];
    struct peer_link *link;
    struct grpc_client_conn *conn;
    uint64_t now = now_ms();

    if (leader_of(n, &address) != 0) {
        n->leaderless_since = 0;
        return;
    }
    if (n->leaderless_since == 0) {
        n->leaderless_since = now;
    }
    if (n->removal_check_inflight || now - n->leaderless_since < 1000 ||
        n->n_members < 2) {
        return;
    }
    /* Round-robin over the other members. */
    n->removal_check_next = (n->removal_check_next + 1) % n->n_members;
    if (n->members[n->removal_check_next].id == n->member_id ||
        member_raft_address(&n->members[n->removal_check_next], raft_address,
                            sizeof raft_address) != 0) {
        return;
    }
    link = link_get(n, n->members[n->removal_check_next].id, raft_address);
    conn = link != NULL ? grpc_client_uv_conn(&link->client) : NULL;
    if (conn != NULL &&
        grpc_client_unary(conn, "/ikadapb.Peer/Members", &req.base, 1000, NULL,
                          0, removal_check_done, n, NULL) == 0) {
        n->removal_check_inflight = true;
    }
}

static void reconcile_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;

    if (raft_state(&n->raft) != RAFT_LEADER) {
        removal_check(n);
    }
    /* A removed member may never learn the commit of its own removal (the
     * leader stops replicating to it once raft's configuration drops it),
     * so leaving raft's configuration counts as removal too. */
    if (config_index(n, n->member_id) >= 0) {
        n->was_in_config = true;
    } else if (n->was_in_config && !n->removed) {
        log_error("this member has been permanently removed from the "
                  "cluster; exiting");
        n->removed = true;
    }
    if (n->removed) {
        n->removed = false;
        if (n->removed_cb != NULL) {
            n->removed_cb(n->ready_arg);
        }
        return;
    }
    reconcile(n);
}

static void reconcile_soon(struct node *n)
{
    if (!n->closing && uv_is_active((uv_handle_t *)&n->reconcile_timer)) {
        uv_timer_start(&n->reconcile_timer, reconcile_timer_cb, 0,
                       RECONCILE_MS);
    }
}

static bool url_in_use(struct node *n, const char *url, uint64_t except)
{
    for (size_t i = 0; i < n->n_members; i++) {
        if (n->members[i].id == except) {
            continue;
        }
        for (size_t j = 0; j < n->members[i].n_peer_urls; j++) {
            if (strcmp(n->members[i].peer_urls[j], url) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* etcd's strict reconfiguration check: after the change, the members that
 * have started must still form a quorum of the voters. */
static bool enough_started(struct node *n, int delta_voters, uint64_t except)
{
    int voters = delta_voters, started = 0;
    for (size_t i = 0; i < n->n_members; i++) {
        const struct node_member *m = &n->members[i];
        if (m->is_learner || m->id == except) {
            continue;
        }
        voters++;
        if (m->name != NULL && m->name[0] != '\0') {
            started++;
        }
    }
    return started >= voters / 2 + 1;
}

int node_member_change(struct node *n, struct node_proposal *p,
                       const struct node_member_change *c, node_proposal_cb cb)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Ikadapb__MemberChange mc = IKADAPB__MEMBER_CHANGE__INIT;
    const struct node_member *m;
    size_t learners = 0;

    if (n->closing) {
        return IK_ESTOPPED;
    }
    if (raft_state(&n->raft) != RAFT_LEADER) {
        return IK_ENOTLEADER;
    }
    m = member_find(n, c->id);
    for (size_t i = 0; i < n->n_members; i++) {
        learners += n->members[i].is_learner;
    }
    switch (c->kind) {
    case NODE_MEMBER_ADD:
        if (c->n_peer_urls == 0) {
            return IK_EMEMBERBADURLS;
        }
        for (size_t i = 0; i < c->n_peer_urls; i++) {
            if (url_in_use(n, c->peer_urls[i], 0)) {
                return IK_EPEERURLEXIST;
            }
        }
        if (m != NULL) {
            return IK_EMEMBEREXIST;
        }
        if (c->is_learner && learners >= 1) {
            return IK_ETOOMANYLEARNERS;
        }
        if (!c->is_learner && !enough_started(n, 1, 0)) {
            return IK_EMEMBERNOTENOUGHSTARTED;
        }
        mc.kind = IKADAPB__MEMBER_CHANGE__KIND__ADD;
        break;
    case NODE_MEMBER_REMOVE:
        if (m == NULL) {
            return IK_EMEMBERNOTFOUND;
        }
        if (!m->is_learner && !enough_started(n, 0, c->id)) {
            return IK_EMEMBERNOTENOUGHSTARTED;
        }
        mc.kind = IKADAPB__MEMBER_CHANGE__KIND__REMOVE;
        break;
    case NODE_MEMBER_UPDATE:
        if (m == NULL) {
            return IK_EMEMBERNOTFOUND;
        }
        for (size_t i = 0; i < c->n_peer_urls; i++) {
            if (url_in_use(n, c->peer_urls[i], c->id)) {
                return IK_EPEERURLEXIST;
            }
        }
        mc.kind = IKADAPB__MEMBER_CHANGE__KIND__UPDATE;
        break;
    case NODE_MEMBER_PROMOTE:
        if (m == NULL) {
            return IK_EMEMBERNOTFOUND;
        }
        if (!m->is_learner) {
            return IK_EMEMBERNOTLEARNER;
        }
        if (!caught_up(n, c->id)) {
            return IK_ELEARNERNOTREADY;
        }
        mc.kind = IKADAPB__MEMBER_CHANGE__KIND__PROMOTE;
        break;
    default:
        return IK_EINVAL;
    }
    mc.id = c->id;
    mc.n_peer_urls = c->n_peer_urls;
    mc.peer_urls = (char **)c->peer_urls;
    mc.is_learner = c->is_learner;
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_MEMBER_CHANGE;
    ir.member_change = &mc;
    return node_propose(n, p, &ir, cb);
}

bool node_is_learner(struct node *n)
{
    const struct node_member *m = member_find(n, n->member_id);
    return m != NULL && m->is_learner;
}

const char *node_token(const struct node *n)
{
    return n->token;
}

bool node_is_leader(struct node *n)
{
    return raft_state(&n->raft) == RAFT_LEADER;
}

/* --- proxying a client call to the leader -------------------------------- */

struct forward_call {
    node_forward_cb cb;
    void *data;
};

static void forward_call_done(void *data, int status, const char *message,
                              const uint8_t *resp, size_t len)
{
    struct forward_call *f = data;
    f->cb(f->data, status, message, resp, len);
    free(f);
}

int node_forward(struct node *n, const char *path, const uint8_t *req,
                 size_t len, node_forward_cb cb, void *data)
{
    struct grpc_client_conn *conn;
    struct forward_call *f;
    struct peer_link *link;
    const char *address;
    uint64_t leader;
    int rv;

    if (n->closing) {
        return IK_ESTOPPED;
    }
    leader = leader_of(n, &address);
    if (leader == 0 || leader == n->member_id) {
        return IK_ENOLEADER;
    }
    link = link_get(n, leader, address);
    conn = link != NULL ? grpc_client_uv_conn(&link->client) : NULL;
    f = malloc(sizeof *f);
    if (conn == NULL || f == NULL) {
        free(f);
        return IK_ENOMEM;
    }
    f->cb = cb;
    f->data = data;
    rv = grpc_client_unary_bytes(conn, path, req, len, n->forward_timeout_ms,
                                 NULL, 0, forward_call_done, f, NULL);
    if (rv != 0) {
        free(f);
        return IK_EUNAVAILABLE;
    }
    return 0;
}

/* --- publishing this member ---------------------------------------------- */

#define PUBLISH_RETRY_MS 100

static void publish_try(uv_timer_t *timer);

static void publish_done(struct node_proposal *p, int status,
                         ProtobufCMessage *resp)
{
    struct node *n = p->data;

    n->publish_inflight = false;
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (status == 0) {
        n->ready = true;
        log_info("published member %016llx to the cluster",
                 (unsigned long long)n->member_id);
        if (n->ready_cb != NULL) {
            n->ready_cb(n->ready_arg);
        }
        return;
    }
    if (!n->closing) {
        uv_timer_start(&n->publish_timer, publish_try, PUBLISH_RETRY_MS, 0);
    }
}

/* Propose this member's attributes; retried until one is applied. */
static void publish_try(uv_timer_t *timer)
{
    struct node *n = timer->data;
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    Ikadapb__MemberAttributes a = IKADAPB__MEMBER_ATTRIBUTES__INIT;
    int rv;

    if (n->closing || n->ready || n->publish_inflight) {
        return;
    }
    a.id = n->member_id;
    a.name = n->name;
    a.n_client_urls = n->n_client_urls;
    a.client_urls = n->client_urls;
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_PUBLISH;
    ir.publish = &a;
    n->publish.data = n;
    rv = node_propose(n, &n->publish, &ir, publish_done);
    if (rv != 0) {
        uv_timer_start(&n->publish_timer, publish_try, PUBLISH_RETRY_MS, 0);
        return;
    }
    n->publish_inflight = true;
}

bool node_ready(const struct node *n)
{
    return n->ready;
}

/* --- maintenance --------------------------------------------------------- */

/* The alarm table as a snapshot section (an etcdserverpb.AlarmResponse
 * listing the raised alarms). */
static int alarms_encode(const struct node *n, void **out, size_t *len)
{
    Etcdserverpb__AlarmResponse msg = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember *ms = calloc(n->n_alarms + 1, sizeof *ms);
    Etcdserverpb__AlarmMember **mp = calloc(n->n_alarms + 1, sizeof *mp);
    int rv = IK_ENOMEM;

    if (ms != NULL && mp != NULL) {
        for (size_t i = 0; i < n->n_alarms; i++) {
            etcdserverpb__alarm_member__init(&ms[i]);
            ms[i].memberid = n->alarms[i].member_id;
            ms[i].alarm = n->alarms[i].type;
            mp[i] = &ms[i];
        }
        msg.n_alarms = n->n_alarms;
        msg.alarms = mp;
        *len = etcdserverpb__alarm_response__get_packed_size(&msg);
        *out = malloc(*len > 0 ? *len : 1);
        if (*out != NULL) {
            etcdserverpb__alarm_response__pack(&msg, *out);
            rv = 0;
        }
    }
    free(ms);
    free(mp);
    return rv;
}

static int alarms_decode(const void *buf, size_t len, struct node_alarm **out,
                         size_t *n_out)
{
    Etcdserverpb__AlarmResponse *msg =
        etcdserverpb__alarm_response__unpack(NULL, len, buf);
    struct node_alarm *a;

    if (msg == NULL) {
        return IK_ECORRUPT;
    }
    a = calloc(msg->n_alarms + 1, sizeof *a);
    if (a == NULL) {
        etcdserverpb__alarm_response__free_unpacked(msg, NULL);
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < msg->n_alarms; i++) {
        a[i].member_id = msg->alarms[i]->memberid;
        a[i].type = msg->alarms[i]->alarm;
    }
    *out = a;
    *n_out = msg->n_alarms;
    etcdserverpb__alarm_response__free_unpacked(msg, NULL);
    return 0;
}

/* The snapshot sections besides the store, encoded from the node's current
 * state. */
#define SNAP_EXTRA 3
struct snap_extra {
    struct snapshot_section sections[SNAP_EXTRA];
    void *members;
    void *alarms;
    uint8_t *leases;
};

static int snap_extra_encode(const struct node *n, struct snap_extra *e)
{
    int rv;

    memset(e, 0, sizeof *e);
    e->sections[0].type = SNAPSHOT_SECTION_MEMBERS;
    e->sections[1].type = SNAPSHOT_SECTION_META;
    e->sections[2].type = SNAPSHOT_SECTION_LEASES;
    rv = members_encode(n, &e->members, &e->sections[0].len);
    if (rv == 0) {
        rv = alarms_encode(n, &e->alarms, &e->sections[1].len);
    }
    if (rv == 0) {
        rv = lease_encode(&n->lessor, &e->leases, &e->sections[2].len);
    }
    e->sections[0].data = e->members;
    e->sections[1].data = e->alarms;
    e->sections[2].data = e->leases;
    return rv;
}

static void snap_extra_free(struct snap_extra *e)
{
    free(e->members);
    free(e->alarms);
    free(e->leases);
    memset(e, 0, sizeof *e);
}

/* A client's snapshot (Maintenance.Snapshot): captured on the loop in
 * O(1), encoded in libuv's thread pool, handed back on the loop. */
struct node_snapshot_job {
    uv_work_t work;
    struct mvcc_view *view;
    struct snap_extra extra;
    void *buf;
    size_t len;
    int rv;
    node_snapshot_cb cb;
    void *data;
};

static void snapshot_job_work(uv_work_t *w)
{
    struct node_snapshot_job *j = w->data;
    j->rv = snapshot_encode_view(j->view, j->extra.sections, SNAP_EXTRA,
                                 &j->buf, &j->len);
}

static void snapshot_job_done(uv_work_t *w, int status)
{
    struct node_snapshot_job *j = w->data;
    int rv = status != 0 ? IK_EIO : j->rv;

    mvcc_view_release(j->view);
    snap_extra_free(&j->extra);
    j->cb(j->data, rv, rv == 0 ? j->buf : NULL, rv == 0 ? j->len : 0);
    if (rv != 0) {
        free(j->buf);
    }
    free(j);
}

int node_snapshot_async(struct node *n, node_snapshot_cb cb, void *data)
{
    struct node_snapshot_job *j = calloc(1, sizeof *j);
    int rv;

    if (j == NULL) {
        return IK_ENOMEM;
    }
    rv = snap_extra_encode(n, &j->extra);
    if (rv == 0) {
        rv = mvcc_view_take(&n->store, &j->view);
    }
    if (rv != 0) {
        snap_extra_free(&j->extra);
        free(j);
        return rv;
    }
    j->cb = cb;
    j->data = data;
    j->work.data = j;
    rv = uv_queue_work(n->loop, &j->work, snapshot_job_work, snapshot_job_done);
    if (rv != 0) {
        mvcc_view_release(j->view);
        snap_extra_free(&j->extra);
        free(j);
        return IK_EIO;
    }
    return 0;
}

/*
 * raft snapshots (fsm version 3). raft calls fsm_snapshot() on the loop
 * right after applying entries: it only captures a view of the store (O(1))
 * and encodes the small sections. raft then runs fsm_snapshot_async() in
 * libuv's thread pool, which encodes the view into the buffer raft stores,
 * while the loop goes on applying entries. raft calls
 * fsm_snapshot_finalize() on the loop once it is done with the buffer
 * (stored, failed, or cancelled by raft_close), and after any failure that
 * follows a successful fsm_snapshot(); it frees nothing itself. raft starts
 * no other snapshot and installs none while one is in flight.
 * raft only ever holds &snap->buf; the worker thread touches nothing but
 * *snap (never the node).
 */
struct node_snap {
    struct raft_buffer buf; /* first: raft's bufs[] points here */
    struct mvcc_view *view;
    struct snap_extra extra;
};

static void node_snap_free(struct node_snap *s)
{
    free(s->buf.base);
    if (s->view != NULL) {
        mvcc_view_release(s->view);
    }
    snap_extra_free(&s->extra);
    free(s);
}

static int snap_raft_error(int rv)
{
    return rv == IK_ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct node *n = fsm->data;
    struct node_snap *s = calloc(1, sizeof *s);
    int rv;

    if (s == NULL) {
        return RAFT_NOMEM;
    }
    rv = snap_extra_encode(n, &s->extra);
    if (rv == 0) {
        rv = mvcc_view_take(&n->store, &s->view);
    }
    if (rv == 0 && fsm->snapshot_async == NULL) {
        /* No async support in raft's io: encode here, on the loop. */
        rv = snapshot_encode_view(s->view, s->extra.sections, SNAP_EXTRA,
                                  &s->buf.base, &s->buf.len);
    }
    if (rv != 0) {
        node_snap_free(s);
        return snap_raft_error(rv);
    }
    *bufs = &s->buf;
    *n_bufs = 1;
    return 0;
}

/* Pacing of the view discard below: with glibc, frees made here in one
 * burst are consolidated in one go by the next loop allocation that grows
 * the heap (tens of ms for a few 100k keys); short sleeps between batches
 * keep each of those small (bench/snapstall.c measures it). */
static void snap_discard_pace(void *arg)
{
    (void)arg;
    uv_sleep(1);
}

/* Thread pool: encode the captured view into the buffer raft stores, then
 * drop the view's data here too (what the loop copied away since capture
 * is freed off the loop; finalize's release is then O(1)). */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct node_snap *s = (struct node_snap *)*bufs;
    int rv;

    (void)fsm;
    (void)n_bufs;
    rv = snapshot_encode_view(s->view, s->extra.sections, SNAP_EXTRA,
                              &s->buf.base, &s->buf.len);
    mvcc_view_discard_paced(s->view, snap_discard_pace, NULL);
    return rv == 0 ? 0 : snap_raft_error(rv);
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    if (*bufs != NULL) {
        node_snap_free((struct node_snap *)*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

const struct node_alarm *node_alarms(const struct node *n, size_t *count)
{
    *count = n->n_alarms;
    return n->alarms;
}

static void alarm_raised(struct node_proposal *p, int status,
                         ProtobufCMessage *resp)
{
    struct node *n = p->data;
    (void)status;
    n->alarm_inflight = false;
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
}

int node_alarm_change(struct node *n, struct node_proposal *p,
                      const Etcdserverpb__AlarmRequest *req,
                      node_proposal_cb cb)
{
    Ikadapb__InternalRequest ir = IKADAPB__INTERNAL_REQUEST__INIT;
    ir.op_case = IKADAPB__INTERNAL_REQUEST__OP_ALARM;
    ir.alarm = (Etcdserverpb__AlarmRequest *)req;
    return node_propose(n, p, &ir, cb);
}

int node_quota_check(struct node *n, size_t cost)
{
    Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;

    if (alarm_active(n, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
        return IK_ENOSPACE;
    }
    if (n->quota_bytes == 0 || node_db_size(n) + cost <= n->quota_bytes) {
        return 0;
    }
    if (!n->alarm_inflight) {
        req.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
        req.memberid = n->member_id;
        req.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        n->alarm_prop.data = n;
        if (node_alarm_change(n, &n->alarm_prop, &req, alarm_raised) == 0) {
            n->alarm_inflight = true;
        }
    }
    return IK_ENOSPACE;
}

bool node_is_voter(struct node *n, uint64_t id)
{
    const struct raft_configuration *c = &n->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return c->servers[i].role == RAFT_VOTER;
        }
    }
    return false;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct node_transfer *t = req->data;
    t->cb(t, node_leader(t->node) == t->target ? 0 : IK_ETIMEOUT);
}

int node_transfer(struct node *n, struct node_transfer *t, uint64_t target,
                  node_transfer_cb cb)
{
    int rv;

    if (n->closing) {
        return IK_ESTOPPED;
    }
    if (raft_state(&n->raft) != RAFT_LEADER) {
        return IK_ENOTLEADER;
    }
    if (target == n->member_id || !node_is_voter(n, target)) {
        return IK_EBADLEADERTRANSFEREE;
    }
    t->cb = cb;
    t->target = target;
    t->node = n;
    t->req.data = t;
    rv = raft_transfer(&n->raft, &t->req, target, transfer_cb);
    if (rv != 0) {
        return rv == RAFT_BADID ? IK_EBADLEADERTRANSFEREE : raft_to_ik(rv);
    }
    return 0;
}

/* --- accessors ----------------------------------------------------------- */

struct kv *node_kv(struct node *n)
{
    return &n->kv;
}

void node_fill_header(struct node *n, Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL) {
        return;
    }
    h->cluster_id = n->cluster_id;
    h->member_id = n->member_id;
    h->revision = mvcc_rev(&n->store);
    h->raft_term = n->raft.current_term;
}

const struct node_member *node_members(const struct node *n, size_t *count)
{
    *count = n->n_members;
    return n->members;
}

uint64_t node_member_id(const struct node *n)
{
    return n->member_id;
}

uint64_t node_cluster_id(const struct node *n)
{
    return n->cluster_id;
}

uint64_t node_leader(struct node *n)
{
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&n->raft, &id, &address);
    return id;
}

uint64_t node_term(const struct node *n)
{
    return n->raft.current_term;
}

uint64_t node_last_index(struct node *n)
{
    return raft_last_index(&n->raft);
}

uint64_t node_applied_index(struct node *n)
{
    return raft_last_applied(&n->raft);
}

uint64_t node_db_size(const struct node *n)
{
    struct mvcc_stats st;
    mvcc_stats(&n->store, &st);
    return st.bytes;
}

/* --- lifecycle ----------------------------------------------------------- */

static void members_free(struct node_member *m, size_t count)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        free(m[i].name);
        strv_free(m[i].peer_urls, m[i].n_peer_urls);
        strv_free(m[i].client_urls, m[i].n_client_urls);
    }
    free(m);
}

/* Deep copy of a member table; on error nothing is allocated. */
static int members_copy(struct node_member **out, size_t *n_out,
                        const struct node_member *src, size_t count)
{
    struct node_member *ms = calloc(count > 0 ? count : 1, sizeof *ms);
    if (ms == NULL) {
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        struct node_member *m = &ms[i];
        m->id = src[i].id;
        m->is_learner = src[i].is_learner;
        m->name = strdup(src[i].name != NULL ? src[i].name : "");
        m->peer_urls = strv_dup(src[i].peer_urls, src[i].n_peer_urls);
        m->n_peer_urls = m->peer_urls != NULL ? src[i].n_peer_urls : 0;
        m->client_urls = strv_dup(src[i].client_urls, src[i].n_client_urls);
        m->n_client_urls = m->client_urls != NULL ? src[i].n_client_urls : 0;
        if (m->name == NULL || m->peer_urls == NULL || m->client_urls == NULL) {
            members_free(ms, i + 1);
            return IK_ENOMEM;
        }
    }
    *out = ms;
    *n_out = count;
    return 0;
}

/* The raft address of a member: host:port of its first peer URL. */
static int member_raft_address(const struct node_member *m, char *out,
                               size_t size)
{
    const char *url, *hostport, *end;
    size_t len;

    if (m->n_peer_urls == 0) {
        return IK_EINVAL;
    }
    url = m->peer_urls[0];
    hostport = strstr(url, "://");
    hostport = hostport != NULL ? hostport + 3 : url;
    end = strchr(hostport, '/');
    len = end != NULL ? (size_t)(end - hostport) : strlen(hostport);
    if (len == 0 || len >= size) {
        return IK_EINVAL;
    }
    memcpy(out, hostport, len);
    out[len] = '\0';
    return 0;
}

static int bootstrap(struct node *n, char *errmsg)
{
    struct raft_configuration conf;
    char address[256];
    int rv;

    raft_configuration_init(&conf);
    for (size_t i = 0; i < n->n_members; i++) {
        const struct node_member *m = &n->members[i];
        rv = member_raft_address(m, address, sizeof address);
        if (rv != 0) {
            ik_errmsg_printf(errmsg, "member %s has no usable peer URL",
                             m->name);
            raft_configuration_close(&conf);
            return IK_EINVAL;
        }
        rv = raft_configuration_add(&conf, m->id, address,
                                    m->is_learner ? RAFT_SPARE : RAFT_VOTER);
        if (rv != 0) {
            ik_errmsg_printf(errmsg, "raft configuration: %s",
                             raft_strerror(rv));
            raft_configuration_close(&conf);
            return IK_EINVAL;
        }
    }
    rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP) {
        return 0; /* state already there: a restart */
    }
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "raft bootstrap: %s", raft_errmsg(&n->raft));
        return IK_EIO;
    }
    return 0;
}

static void node_free(struct node *n)
{
    mvcc_close(&n->store);
    members_free(n->members, n->n_members);
    strv_free(n->client_urls, n->n_client_urls);
    free(n->name);
    free(n->token);
    free(n->peer_methods);
    free(n->alarms);
    compactor_close(&n->compactor);
    lease_close(&n->lessor);
    if (n->hub != NULL) {
        watch_hub_free(n->hub);
    }
    free(n);
}

/* The peer port: raft traffic and the peer gRPC service share it. */
static int start_peer(struct node *n, const struct node_options *opts,
                      char *errmsg)
{
    struct grpc_server_config cfg = {0};
    size_t count = 4 + opts->n_peer_methods;
    int rv;

    n->peer_methods = calloc(count, sizeof *n->peer_methods);
    if (n->peer_methods == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    n->peer_methods[0] = (struct grpc_method){
        .path = PEER_PROPOSE_PATH,
        .kind = GRPC_UNARY,
        .on_message = peer_propose_on_message,
        .on_cancel = peer_on_cancel,
        .data = n,
    };
    n->peer_methods[1] = (struct grpc_method){
        .path = PEER_READ_INDEX_PATH,
        .kind = GRPC_UNARY,
        .on_message = peer_read_index_on_message,
        .on_cancel = peer_on_cancel,
        .data = n,
    };
    n->peer_methods[2] = (struct grpc_method){
        .path = "/ikadapb.Peer/Members",
        .kind = GRPC_UNARY,
        .on_message = peer_members_on_message,
        .data = n,
    };
    n->peer_methods[3] = (struct grpc_method){
        .path = "/ikadapb.Peer/LeaseRenew",
        .kind = GRPC_UNARY,
        .on_message = peer_lease_renew_on_message,
        .data = n,
    };
    for (size_t i = 0; i < opts->n_peer_methods; i++) {
        n->peer_methods[4 + i] = opts->peer_methods[i];
    }
    cfg.methods = n->peer_methods;
    cfg.n_methods = count;
    cfg.max_recv_msg_size = n->max_request_bytes * 2 + 1024 * 1024;
    cfg.max_concurrent_streams = 1u << 20;
    rv = grpc_uv_server_init(&n->peer_grpc, n->loop, &cfg);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "peer service: %s", ik_strerror(rv));
        return rv;
    }
    rv = peer_uv_init(&n->transport, n->loop, &n->peer_grpc);
    if (rv == 0 && opts->bind_address != NULL) {
        rv = peer_uv_set_bind_address(&n->transport, opts->bind_address);
        if (rv != 0) {
            peer_uv_close(&n->transport);
        }
    }
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "peer listen address %s: %s",
                         opts->bind_address != NULL ? opts->bind_address : "",
                         ik_strerror(rv));
        grpc_uv_server_close(&n->peer_grpc, NULL);
        uv_run(n->loop, UV_RUN_DEFAULT);
        return rv;
    }
    return 0;
}

int node_init(struct node **out, uv_loop_t *loop,
              const struct node_options *opts, char *errmsg)
{
    struct node *n;
    struct timeval tv;
    int rv;

    n = calloc(1, sizeof *n);
    if (n == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    mvcc_init(&n->store);
    n->loop = loop;
    n->member_id = opts->member_id;
    n->cluster_id = opts->cluster_id;
    n->max_request_bytes = opts->max_request_bytes;
    /* Ids must not repeat across restarts while old entries may still be
     * in flight: seed the sequence from the clock. */
    gettimeofday(&tv, NULL);
    n->next_id =
        ((opts->member_id & 0xffff) << 48) |
        ((((uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000) << 8) &
         0xffffffffffffULL);

    rv = members_copy(&n->members, &n->n_members, opts->members,
                      opts->n_members);
    if (rv == 0) {
        n->client_urls = strv_dup(opts->client_urls, opts->n_client_urls);
        n->n_client_urls = opts->n_client_urls;
        n->name = strdup(opts->name);
        if (n->client_urls == NULL || n->name == NULL) {
            rv = IK_ENOMEM;
        }
    }
    n->ready_cb = opts->ready_cb;
    n->ready_arg = opts->ready_arg;
    n->removed_cb = opts->removed_cb;
    if (rv == 0) {
        n->token = strdup(opts->token != NULL ? opts->token : "");
        if (n->token == NULL) {
            rv = IK_ENOMEM;
        }
    }
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "out of memory");
        node_free(n);
        return rv;
    }
    n->kv.store = &n->store;
    rv = leases_and_watches_init(n, opts);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "out of memory");
        node_free(n);
        return rv;
    }

    n->fsm.version = 3;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    n->fsm.snapshot_finalize = fsm_snapshot_finalize;
    n->fsm.snapshot_async = fsm_snapshot_async;

    n->quota_bytes = opts->quota_bytes < 0    ? 0
                     : opts->quota_bytes == 0 ? 2ULL * 1024 * 1024 * 1024
                                              : (uint64_t)opts->quota_bytes;
    rv = compactor_init(&n->compactor,
                        opts->compact_by_revision ? COMPACTOR_REVISION
                                                  : COMPACTOR_PERIODIC,
                        opts->compact_retention, now_ms());
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "out of memory");
        node_free(n);
        return rv;
    }
    n->leader_wait_ms = 3 * (uint64_t)opts->election_ms;
    if (n->leader_wait_ms < 1000) {
        n->leader_wait_ms = 1000;
    }
    n->forward_timeout_ms = 5000 + 2 * (uint64_t)opts->election_ms;

    rv = start_peer(n, opts, errmsg);
    if (rv != 0) {
        node_free(n);
        return rv;
    }
    rv = raft_uv_init(&n->io, loop, opts->raft_dir, &n->transport);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "raft log in %s: %s", opts->raft_dir,
                         n->io.errmsg);
        rv = IK_EIO;
        goto err_after_peer;
    }
    /* A corrupt log must stop the member with an error, not be moved
     * aside and silently forgotten. */
    raft_uv_set_auto_recovery(&n->io, false);
    /* raft_uv 0.15 implements async_work but still reports io version 1,
     * which makes raft_init() refuse async snapshots; without it,
     * fsm_snapshot() encodes on the loop. */
    if (n->io.async_work == NULL) {
        n->fsm.snapshot_async = NULL;
    } else if (n->io.version < 2) {
        n->io.version = 2;
    }
    rv = raft_init(&n->raft, &n->io, &n->fsm, opts->member_id,
                   opts->raft_address);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "raft: %s", raft_errmsg(&n->raft));
        raft_uv_close(&n->io);
        rv = IK_EIO;
        goto err_after_peer;
    }
    n->raft.data = n;
    raft_set_heartbeat_timeout(&n->raft, opts->heartbeat_ms);
    raft_set_election_timeout(&n->raft, opts->election_ms);
    raft_set_pre_vote(&n->raft, true);
    if (opts->snapshot_count > 0) {
        raft_set_snapshot_threshold(&n->raft, opts->snapshot_count);
        /* etcd keeps 5000 entries after a snapshot for slow followers. */
        raft_set_snapshot_trailing(&n->raft, opts->snapshot_count < 5000
                                                 ? opts->snapshot_count
                                                 : 5000);
    }

    if (opts->bootstrap) {
        rv = bootstrap(n, errmsg);
        if (rv != 0) {
            goto err_after_raft_init;
        }
    }
    rv = raft_start(&n->raft);
    if (rv != 0) {
        /* The cause is in whichever layer failed (e.g. the peer port is in
         * use: the transport's message is etcd's "listen tcp ..."). */
        const char *cause = n->transport.errmsg[0] != '\0' ? n->transport.errmsg
                            : n->io.errmsg[0] != '\0'      ? n->io.errmsg
                                                      : raft_errmsg(&n->raft);
        ik_errmsg_printf(errmsg, "%s", cause);
        rv = IK_EIO;
        goto err_after_raft_init;
    }
    uv_timer_init(loop, &n->publish_timer);
    n->publish_timer.data = n;
    uv_timer_init(loop, &n->retry_timer);
    n->retry_timer.data = n;
    uv_check_init(loop, &n->apply_check);
    uv_prepare_init(loop, &n->nudge_prepare);
    n->nudge_prepare.data = n;
    n->apply_check.data = n;
    uv_timer_init(loop, &n->lease_timer);
    n->lease_timer.data = n;
    uv_timer_start(&n->lease_timer, lease_timer_cb, LEASE_TICK_MS,
                   LEASE_TICK_MS);
    uv_timer_init(loop, &n->watch_timer);
    n->watch_timer.data = n;
    uv_timer_start(&n->watch_timer, watch_timer_cb, WATCH_TICK_MS,
                   WATCH_TICK_MS);
    uv_timer_init(loop, &n->drain_timer);
    n->drain_timer.data = n;
    uv_timer_init(loop, &n->compact_timer);
    n->compact_timer.data = n;
    if (compactor_due_in(&n->compactor, now_ms()) != UINT64_MAX) {
        uv_timer_start(&n->compact_timer, compact_timer_cb, 1, 0);
    }
    uv_timer_init(loop, &n->reconcile_timer);
    n->reconcile_timer.data = n;
    uv_timer_start(&n->reconcile_timer, reconcile_timer_cb, RECONCILE_MS,
                   RECONCILE_MS);
    uv_timer_start(&n->publish_timer, publish_try, 0, 0);
    *out = n;
    return 0;

err_after_raft_init:
    /* raft and its libuv handles cannot be torn down synchronously once
     * raft_init() succeeded; the caller exits on this error (see node.h). */
    return rv;

err_after_peer:
    peer_uv_close(&n->transport);
    grpc_uv_server_close(&n->peer_grpc, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return rv;
}

/* Has the leader persisted every entry it appended? */
static bool appends_drained(struct node *n)
{
    return raft_state(&n->raft) != RAFT_LEADER ||
           n->raft.last_stored >= raft_last_index(&n->raft);
}

static void stopped(struct node *n)
{
    uv_timer_stop(&n->drain_timer);
    if (n->close_cb != NULL) {
        n->close_cb(n->close_arg);
    }
}

static void drain_cb(uv_timer_t *t)
{
    struct node *n = t->data;

    if (appends_drained(n) || now_ms() >= n->drain_deadline) {
        stopped(n);
    }
}

void node_close(struct node *n, void (*cb)(void *arg), void *arg)
{
    struct node_proposal *stalled = n->stalled;
    struct node_read *reads[3] = {n->queued_head, n->ri_queue_head,
                                  n->applying};

    n->closing = true;
    n->close_cb = cb;
    n->close_arg = arg;
    n->stalled = NULL;
    n->queued_head = n->queued_tail = NULL;
    n->ri_queue_head = n->ri_queue_tail = NULL;
    n->applying = NULL;
    while (stalled != NULL) {
        struct node_proposal *p = stalled;
        stalled = p->next_stalled;
        proposal_finish(p, IK_ESTOPPED, NULL);
    }
    for (int i = 0; i < 3; i++) {
        reads_complete(reads[i], IK_ESTOPPED);
    }
    uv_timer_stop(&n->publish_timer);
    uv_timer_stop(&n->retry_timer);
    uv_timer_stop(&n->compact_timer);
    uv_timer_stop(&n->reconcile_timer);
    uv_timer_stop(&n->lease_timer);
    uv_timer_stop(&n->watch_timer);
    uv_prepare_stop(&n->nudge_prepare);
    /*
     * raft is not torn down: canonical/raft 0.15's raft_close() is not safe
     * while disk writes are in flight (closing a leader with several
     * pending appends truncates its log twice and aborts, and the libuv
     * backend can report itself closed before its segment writer is,
     * leading to a use after free). Nothing needs it: entries reach disk
     * before raft counts them, so stopping the process is as safe as a
     * crash, which raft is built to survive. New requests are refused from
     * here on; wait (bounded) until the leader's appended entries are on
     * disk so that in-flight requests can complete, then hand over.
     */
    if (!appends_drained(n)) {
        n->drain_deadline = now_ms() + DRAIN_MAX_MS;
        uv_timer_start(&n->drain_timer, drain_cb, 1, 1);
        return;
    }
    stopped(n);
}
