/*
 * node: one ikada member's replicated state machine.
 *
 * Glues canonical/raft (its libuv log and TCP transport) to the MVCC store:
 * the raft FSM applies committed entries (ikadapb.InternalRequest) through
 * the kv module, and hands each result to the request that proposed it.
 * Consensus is touched only through struct raft_fsm and raft's public API.
 *
 * Writes: node_propose() packs a request into a log entry with a member-
 * unique id and proposes it. When a member applies an entry whose id it has
 * registered, the proposal gets the response; every other member applies
 * the same entry and drops the response.
 *
 * Linearizable reads: node_read() queues the read behind a raft barrier.
 * Reads that arrive while a barrier is in flight wait for the next one, so
 * one barrier serves every read queued behind it. The callback fires once
 * the barrier is applied: every write committed before the read began is
 * then in the store.
 *
 * Callbacks: when node_propose()/node_read() return 0 their callback fires
 * exactly once, later, from the loop (with an error if raft loses the
 * request, e.g. on leadership loss or shutdown). When they return an error
 * the callback never fires. A caller whose client went away keeps its
 * request object alive until the callback and just ignores the result.
 *
 * Threading: everything runs on the loop given to node_init().
 */
#ifndef IKADA_NODE_H
#define IKADA_NODE_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto/internal.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "server/errors.h"
#include "server/grpc.h"
#include "server/kv.h"

struct node;

/* A cluster member as MemberList reports it. */
struct node_member {
    uint64_t id;
    char *name;
    char **peer_urls;
    size_t n_peer_urls;
    char **client_urls;
    size_t n_client_urls;
    bool is_learner;
};

/* A raised alarm (etcd's AlarmMember). */
struct node_alarm {
    uint64_t member_id;
    int type; /* ETCDSERVERPB__ALARM_TYPE__NOSPACE, ... */
};

struct node_options {
    const char *raft_dir;     /* canonical raft's data directory (exists) */
    const char *raft_address; /* "host:port" peers reach this member at */
    const char *bind_address; /* "host:port" to listen on; NULL: the above */
    uint64_t member_id;
    uint64_t cluster_id;
    const char *name; /* this member's --name */
    /* Initial membership (the bootstrap configuration, as every member of
     * the cluster has it); deep-copied. Entries applied later change it. */
    const struct node_member *members;
    size_t n_members;
    /* This member's client URLs, published through raft on start. */
    char *const *client_urls;
    size_t n_client_urls;
    /* Called once, when this member's published attributes have been
     * applied: the member is part of the cluster and may serve clients. */
    void (*ready_cb)(void *arg);
    void *ready_arg;
    /* Called (with ready_arg) when this member was removed from the
     * cluster: it should stop. */
    void (*removed_cb)(void *arg);
    const char *token; /* --initial-cluster-token */
    /* Extra methods served on the peer port (e.g. the Cluster service, so
     * that followers can hand leader-only calls to the leader). */
    const struct grpc_method *peer_methods;
    size_t n_peer_methods;
    bool bootstrap; /* first start of a new cluster */
    unsigned heartbeat_ms;
    unsigned election_ms;
    unsigned snapshot_count;
    uint64_t max_request_bytes;
    /* --quota-backend-bytes: 0 means etcd's default (2 GiB), < 0 none. */
    int64_t quota_bytes;
    /* --auto-compaction-mode/-retention: revision mode when true;
     * retention in ms (periodic) or revisions; 0 disables. */
    bool compact_by_revision;
    int64_t compact_retention;
};

struct node_read;
typedef void (*node_read_cb)(struct node_read *r, int status);

struct node_read {
    void *data; /* caller's */
    /* private */
    node_read_cb cb;
    struct node_read *next;
    uint64_t deadline; /* give up waiting for a leader (ms, monotonic) */
    uint64_t index;    /* serve once applied up to here (followers) */
};

struct node_proposal;
/* @resp is the typed response (e.g. Etcdserverpb__PutResponse) with its
 * header filled in, owned by the callee; NULL when @status != 0. */
typedef void (*node_proposal_cb)(struct node_proposal *p, int status,
                                 ProtobufCMessage *resp);

struct node_proposal {
    void *data; /* caller's */
    /* private */
    node_proposal_cb cb;
    uint64_t id;
    struct node *node;
    struct node_proposal *next_pending;
    struct node_proposal *next_stalled;
    uint8_t *entry; /* the framed entry, kept while it may be resent */
    size_t entry_len;
    const ProtobufCMessageDescriptor *resp_desc;
    uint64_t deadline; /* give up waiting for a leader (ms, monotonic) */
    int status;
    ProtobufCMessage *resp;
    struct raft_apply req;
    struct node_read wait; /* forwarded: until applied here too */
};

/*
 * Create the node and start raft: bootstraps the configuration on a new
 * cluster's first start, replays the snapshot and log into the store.
 * Returns 0 or an IK_E* code with the cause in @errmsg (IK_ERRMSG_SIZE).
 * On error the process is expected to exit: raft's libuv handles may still
 * be registered on @loop, so it must not be run again.
 */
int node_init(struct node **out, uv_loop_t *loop,
              const struct node_options *opts, char *errmsg);

/*
 * Propose a write. @req's op must be set; its id is assigned here and the
 * request is packed (the caller keeps ownership of @req). The entry must
 * pack to at most max_request_bytes, else IK_EREQUESTTOOLARGE. Other
 * errors: IK_ENOLEADER when this member is not the leader (followers will
 * forward in a later version), IK_ESTOPPED while closing, IK_ENOMEM.
 */
int node_propose(struct node *n, struct node_proposal *p,
                 const Ikadapb__InternalRequest *req, node_proposal_cb cb);

/* Queue a linearizable read; see the top of this file. Errors:
 * IK_ESTOPPED while closing. */
int node_read(struct node *n, struct node_read *r, node_read_cb cb);

enum node_member_change_kind {
    NODE_MEMBER_ADD,
    NODE_MEMBER_REMOVE,
    NODE_MEMBER_UPDATE,
    NODE_MEMBER_PROMOTE,
};

struct node_member_change {
    enum node_member_change_kind kind;
    uint64_t id;            /* for ADD: the new member's id (ids_member_id()) */
    char *const *peer_urls; /* ADD, UPDATE */
    size_t n_peer_urls;
    bool is_learner; /* ADD */
};

/*
 * Change the member table (etcd's MemberAdd/Remove/Update/Promote) with
 * etcd's checks, on the leader only (IK_ENOTLEADER elsewhere: forward the
 * client's call with node_forward()). Errors: IK_EMEMBERBADURLS,
 * IK_EPEERURLEXIST, IK_EMEMBEREXIST, IK_ETOOMANYLEARNERS,
 * IK_EMEMBERNOTENOUGHSTARTED, IK_EMEMBERNOTFOUND, IK_EMEMBERNOTLEARNER,
 * IK_ELEARNERNOTREADY, or node_propose()'s. On success @cb fires once the
 * change is applied (node_members() then shows it); the leader then makes
 * raft's configuration follow: new members join as non-voting standbys and
 * become voters once caught up (unless learners); removed members leave.
 */
int node_member_change(struct node *n, struct node_proposal *p,
                       const struct node_member_change *c, node_proposal_cb cb);

/* --initial-cluster-token (new member ids are derived from it). */
const char *node_token(const struct node *n);

bool node_is_leader(struct node *n);

/* Is this member a learner (in the member table)? */
bool node_is_learner(struct node *n);

/*
 * Send a unary gRPC call (@path, request bytes) to the leader's peer port
 * and hand back its answer: @cb gets the gRPC status, message and response
 * bytes (valid during the callback). Used to run leader-only client calls
 * from any member. Returns 0 (@cb will fire) or IK_ENOLEADER, IK_ESTOPPED,
 * IK_ENOMEM, IK_EUNAVAILABLE (@cb will not fire).
 */
typedef void (*node_forward_cb)(void *data, int status, const char *message,
                                const uint8_t *resp, size_t len);
int node_forward(struct node *n, const char *path, const uint8_t *req,
                 size_t len, node_forward_cb cb, void *data);

/* Raised alarms (valid until the next applied entry). */
const struct node_alarm *node_alarms(const struct node *n, size_t *count);

/*
 * etcd's space quota, checked before proposing a write that adds @cost
 * bytes: IK_ENOSPACE while the NOSPACE alarm is raised, or when the write
 * would exceed the quota (the alarm is then raised through raft).
 * Returns 0 when the write may go ahead.
 */
int node_quota_check(struct node *n, size_t cost);

/* Propose an alarm change (etcd's Alarm ACTIVATE/DEACTIVATE); @cb gets the
 * AlarmResponse listing the alarm that changed. */
int node_alarm_change(struct node *n, struct node_proposal *p,
                      const Etcdserverpb__AlarmRequest *req,
                      node_proposal_cb cb);

struct lessor;
struct watch_hub;

/* The member's lessor (lease table) and watch hub. */
struct lessor *node_lessor(struct node *n);
struct watch_hub *node_watch_hub(struct node *n);

/* A new lease id, unique cluster-wide (etcd's id scheme). */
int64_t node_lease_new_id(struct node *n);

/*
 * Keep lease @id alive on this member, which must be the leader
 * (IK_ENOTLEADER otherwise: use node_lease_renew_remote()). Sets *ttl to
 * the lease's TTL; IK_ELEASENOTFOUND when it does not exist (or expired).
 */
int node_lease_renew(struct node *n, int64_t id, int64_t *ttl);

/* Leader only (IK_ENOTLEADER elsewhere): the lease's granted and
 * remaining TTL in seconds; IK_ELEASENOTFOUND when it does not exist. */
int node_lease_ttl(struct node *n, int64_t id, int64_t *granted,
                   int64_t *remaining);

/* Ask the leader to keep lease @id alive. @cb gets 0 and the TTL (<= 0:
 * no such lease) or an IK_E* code. Returns 0 (@cb will fire) or an error
 * (it will not). */
typedef void (*node_renew_cb)(void *data, int status, int64_t ttl);
int node_lease_renew_remote(struct node *n, int64_t id, node_renew_cb cb,
                            void *data);

/* True once this member's attributes are published (see ready_cb). */
bool node_ready(const struct node *n);

/* The kv context (store + lease hook) serving reads. */
struct kv *node_kv(struct node *n);

/* Fill a response header with this member's view: cluster id, member id,
 * store revision and raft term. Allocates nothing. */
void node_fill_header(struct node *n, Etcdserverpb__ResponseHeader *h);

/* Members known to this node. */
const struct node_member *node_members(const struct node *n, size_t *count);

/* The same as etcd's Member messages, by ascending id as etcd lists them;
 * they point into the node's table (valid until the next applied entry).
 * *out and *storage are malloc()ed for the caller to free. Returns 0 or
 * IK_ENOMEM. */
int node_members_pb(const struct node *n, Etcdserverpb__Member ***out,
                    Etcdserverpb__Member **storage, size_t *count);

uint64_t node_member_id(const struct node *n);
uint64_t node_cluster_id(const struct node *n);
/* The leader's member id, 0 if none is known. */
uint64_t node_leader(struct node *n);
uint64_t node_term(const struct node *n);
uint64_t node_last_index(struct node *n);
uint64_t node_applied_index(struct node *n);
/* Approximate size of the state in bytes (Status.dbSize). */
uint64_t node_db_size(const struct node *n);

/*
 * The cluster-wide state (store, members, alarms, leases) as one snapshot
 * buffer, the same bytes raft snapshots hold (format: snapshot/snapshot.c),
 * without blocking the loop: the state is captured now (O(1)) and encoded
 * in libuv's thread pool. @cb fires on the loop with 0
 * and the malloc()ed buffer (the callee frees it), or an IK_E* code and
 * NULL. Returns 0 (@cb will fire) or an IK_E* code (it will not).
 */
typedef void (*node_snapshot_cb)(void *data, int status, void *buf, size_t len);
int node_snapshot_async(struct node *n, node_snapshot_cb cb, void *data);

/* Is @id a voting member of the raft configuration? */
bool node_is_voter(struct node *n, uint64_t id);

struct node_transfer;
typedef void (*node_transfer_cb)(struct node_transfer *t, int status);
struct node_transfer {
    void *data; /* caller's */
    /* private */
    node_transfer_cb cb;
    uint64_t target;
    struct node *node;
    struct raft_transfer req;
};

/*
 * Hand leadership to member @target (etcd's MoveLeader). This member must
 * be the leader (IK_ENOTLEADER) and @target a voting member other than
 * itself (IK_EBADLEADERTRANSFEREE). @cb fires once raft is done trying:
 * status 0 if @target leads then, IK_ETIMEOUT otherwise. Not called when an
 * error is returned.
 */
int node_transfer(struct node *n, struct node_transfer *t, uint64_t target,
                  node_transfer_cb cb);

/*
 * Stop the member before the process exits: outstanding stalled requests
 * and queued reads fail with IK_ESTOPPED, new requests are refused, and
 * once the leader's appended entries are on disk (waiting at most a few
 * seconds) @cb fires. raft is not torn down and nothing is freed (see
 * node.c for why): the caller must exit the process after @cb.
 */
void node_close(struct node *n, void (*cb)(void *arg), void *arg);

#endif /* IKADA_NODE_H */
