/*
 * lease: the lessor, etcd 3.4's lease semantics as a pure core.
 *
 * No I/O, no timers, no threads, no protobuf. Time comes in as a monotonic
 * millisecond clock argument (@now_ms); the lessor never reads a clock.
 *
 * Two halves, as in etcd:
 *
 *  - Replicated state, changed only by the raft FSM when it applies an
 *    entry, identically on every member: the set of leases (id, granted
 *    TTL, last checkpointed remaining TTL) and which keys are attached to
 *    which lease. lease_grant(), lease_revoke(), lease_checkpoint() and
 *    the store's commit hook (lease_commit_hook()) are the only writers.
 *    Their results never depend on @now_ms or on the member's role: the
 *    time is used only to (re)arm the leader-local expiry bookkeeping.
 *
 *  - Leader-local state (not replicated): when each lease expires, and
 *    when its remaining TTL is due for a checkpoint. Only the "primary"
 *    lessor (the one of the raft leader, after lease_promote()) keeps it;
 *    on every other member every lease lives forever. The owner of the
 *    primary lessor polls lease_expired() and lease_checkpoints() (etcd
 *    does it every LEASE_TICK_MS) and proposes LeaseRevoke and
 *    LeaseCheckpoint entries through raft; keep-alives (lease_renew()) are
 *    answered by the primary directly, without raft.
 *
 * Attachments follow the store: install lease_commit_hook() as the store's
 * commit hook (or call it from the node's own hook). Every committed put
 * with lease L attaches its key to L (if L exists) and detaches it from
 * the lease of the key's previous version; every delete detaches. So
 * kv_put()/kv_txn()/kv_delete_range()/lease_revoke() all keep the
 * attachments right whichever path made the write.
 *
 * TTLs are in seconds (etcd's unit); times in milliseconds.
 *
 * Memory: the lessor copies every key it attaches. Arrays handed out by
 * lease_keys()/lease_leases()/lease_encode() are malloc'ed and belong to
 * the caller (free()). Nothing returned points into the lessor.
 *
 * Out of memory: the apply-side calls either fail with IK_ENOMEM having
 * changed nothing, or cannot fail. The commit hook cannot report errors;
 * if it cannot record an attachment (allocation failure) it marks the
 * attachments stale and they are rebuilt from the store (as
 * lease_rebuild_from_store()) before the next lease_revoke() or
 * lease_keys() needs them; those then fail with IK_ENOMEM (changing
 * nothing) if the rebuild itself cannot allocate.
 *
 * Threading: one thread (the one owning the store) makes every call.
 */
#ifndef IKADA_LEASE_H
#define IKADA_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/btree.h"

struct mvcc;
struct lease;

/* etcd's MaxLeaseTTL (seconds): a grant above it is IK_ELEASETTLTOOLARGE. */
#define LEASE_MAX_TTL INT64_C(9000000000)

/* etcd's defaults (lease/lessor.go). */
#define LEASE_DEFAULT_CHECKPOINT_INTERVAL_MS (5 * 60 * 1000)
#define LEASE_DEFAULT_EXPIRED_RETRY_MS 3000
#define LEASE_DEFAULT_REVOKE_RATE 1000 /* expired leases revoked per second */
/* Checkpoints per LeaseCheckpointRequest entry (etcd's batch size). */
#define LEASE_CHECKPOINT_BATCH 1000
/* How often etcd's lessor looks for expired leases and due checkpoints. */
#define LEASE_TICK_MS 500

/* Version of the lease_encode() format (layout at the top of lease.c). */
#define LEASE_SNAPSHOT_VERSION 1

struct lease_config {
    /* Minimum TTL (s): shorter grants get this one (see lease_min_ttl()).
     * Values below 1 are taken as 1. */
    int64_t min_ttl;
    /* Added to every lease's expiry when this member is promoted (etcd
     * passes its election timeout). */
    uint64_t promote_extend_ms;
    /* etcd's --experimental-enable-lease-checkpoint: when false the
     * primary never asks for checkpoints (lease_checkpoints() returns
     * nothing and lease_renew() never asks to clear one), but applied
     * checkpoints are still honoured. */
    bool checkpointing;
    /* Interval between two checkpoints of a lease (etcd's
     * --experimental-lease-checkpoint-interval); 0: the default. */
    uint64_t checkpoint_interval_ms;
    /* How long an expired lease handed out by lease_expired() waits before
     * it is handed out again if its revoke did not get through; 0: the
     * default (3 s). */
    uint64_t expired_retry_ms;
    /* Expired leases lease_expired() hands out per second, at most half of
     * it per LEASE_TICK_MS window; 0: the default (1000). */
    unsigned revoke_rate;
};

/* A lease checkpoint to propose: LeaseCheckpoint{ID, Remaining_TTL}. */
struct lease_checkpoint {
    int64_t id;
    int64_t remaining_ttl; /* seconds */
};

/* A key attached to a lease (lease_keys()). */
struct lease_key {
    const uint8_t *key;
    size_t len;
};

/*
 * etcd's lease id generator (pkg/idutil): the low 16 bits of the member id
 * in the top 2 bytes, then a 5-byte millisecond timestamp taken at start
 * and a 1-byte counter; each id adds one to the 6 low bytes (the counter
 * overflows into the timestamp on purpose). Ids of different members
 * differ in their prefix; ids of one member after a restart start above
 * every id it gave before (unless the clock went back).
 */
struct lease_idgen {
    uint64_t prefix;
    uint64_t suffix;
};

struct lease_heap {
    /* Private. */
    struct lease **a;
    size_t n;
};

struct lessor {
    /* Private: use the functions below. */
    struct lease_config cfg;
    struct mvcc *store;     /* where lease_revoke() deletes; may be NULL */
    struct btree leases;    /* struct lease, keyed by the id (8 bytes) */
    struct btree items;     /* attachments, keyed by lease id + key */
    size_t cap;             /* room in the heaps and scratch (>= leases) */
    struct lease_heap exp;  /* primary: next expiry check, earliest first */
    struct lease_heap cp;   /* primary: next checkpoint, earliest first */
    struct lease **scratch; /* cap entries, for sorting without failing */
    bool primary;
    bool stale;   /* attachments must be rebuilt from the store */
    uint8_t *buf; /* lookup key for attachments (lease id + key) */
    size_t buf_cap;
    int64_t win_start; /* lease_expired() rate limit window */
    size_t win_used;
};

/*
 * Test hook for fault injection: when non-NULL, called before every
 * allocation the lessor makes itself (the B-trees it uses have their own
 * hook, btree_fail_alloc_hook); a true return makes it fail.
 */
extern bool (*lease_fail_alloc_hook)(void);

/*
 * etcd's minimum lease TTL for a heartbeat interval and election timeout
 * (ms): election ticks = election / heartbeat, minimum = ceil((3 * ticks /
 * 2) * heartbeat ms, in seconds), integer division as etcd does it.
 * 100/1000 (etcd's defaults) gives 2. Never below 1.
 */
int64_t lease_min_ttl(uint64_t heartbeat_ms, uint64_t election_ms);

/* The configuration etcd 3.4 uses for these timings: min_ttl from
 * lease_min_ttl(), promote_extend_ms the election timeout (ticks *
 * heartbeat), defaults for the rest, and checkpointing ON (ikada default;
 * etcd 3.4 has it off unless --experimental-enable-lease-checkpoint). */
void lease_config_init(struct lease_config *cfg, uint64_t heartbeat_ms,
                       uint64_t election_ms);

/* An empty, non-primary lessor deleting from @store (may be NULL: revokes
 * then delete nothing). Copies @cfg. Allocates nothing, cannot fail. The
 * caller still has to install lease_commit_hook() on the store. */
void lease_init(struct lessor *l, const struct lease_config *cfg,
                struct mvcc *store);

/* Free everything. Does not touch the store or its hook. */
void lease_close(struct lessor *l);

/* ---- Replicated state (raft FSM) ---------------------------------- */

/*
 * Apply a LeaseGrant: create lease @id with @ttl seconds (raised to the
 * minimum TTL). If primary, it expires at @now_ms + TTL. *@granted_ttl
 * (if not NULL) gets the TTL granted (the response's TTL).
 * Errors, in etcd's order: IK_ELEASENOTFOUND (@id is 0),
 * IK_ELEASETTLTOOLARGE (@ttl > LEASE_MAX_TTL), IK_ELEASEEXIST, IK_ENOMEM;
 * nothing changed on error.
 */
int lease_grant(struct lessor *l, int64_t id, int64_t ttl, uint64_t now_ms,
                int64_t *granted_ttl);

/*
 * Apply a LeaseRevoke: delete every key attached to @id in ONE write txn of
 * the store (one revision, keys deleted in byte order; no revision at all
 * if no key is attached), then forget the lease.
 * Returns 0, IK_ELEASENOTFOUND, IK_EINVAL (the store has an open txn) or
 * IK_ENOMEM (store or lessor; the txn is aborted, nothing changed).
 */
int lease_revoke(struct lessor *l, int64_t id);

/*
 * Apply one LeaseCheckpoint: remember @remaining_ttl (seconds; <= 0 means
 * "none", the granted TTL counts again) for @id; a later promotion uses it.
 * The primary also schedules the lease's next checkpoint (from @now_ms).
 * An unknown @id is ignored (etcd answers OK). Returns 0; cannot fail.
 */
int lease_checkpoint(struct lessor *l, int64_t id, int64_t remaining_ttl,
                     uint64_t now_ms);

/*
 * The store's commit hook: @arg is the struct lessor. Attaches/detaches the
 * keys the committed txn changed (see top). Signature of
 * mvcc_set_commit_hook(). Never fails (see "Out of memory").
 */
void lease_commit_hook(void *arg, const struct mvcc *m);

/* Whether lease @id exists (0 never does). */
bool lease_exists(const struct lessor *l, int64_t id);

/* lease_exists() for struct kv's lease_exists hook: @data is the lessor. */
bool lease_exists_cb(void *data, int64_t id);

/* Number of leases. */
size_t lease_count(const struct lessor *l);

/*
 * TimeToLive: *@granted_ttl gets the granted TTL and *@remaining_ttl the
 * seconds left, truncated toward zero as etcd does (so 0 or -1 for a lease
 * that expired but is not revoked yet). Only the primary knows expiries:
 * on other members *@remaining_ttl is the checkpointed remaining TTL, or
 * the granted one (etcd forwards TimeToLive to the leader; check
 * lease_is_primary()). Either pointer may be NULL.
 * Returns 0 or IK_ELEASENOTFOUND.
 */
int lease_time_to_live(const struct lessor *l, int64_t id, uint64_t now_ms,
                       int64_t *granted_ttl, int64_t *remaining_ttl);

/*
 * The keys attached to @id, in byte order: *@keys is one malloc'ed block
 * (the array followed by copies of the keys; free() it once), NULL when
 * *@n is 0. Returns 0, IK_ELEASENOTFOUND or IK_ENOMEM (*@keys NULL).
 */
int lease_keys(struct lessor *l, int64_t id, struct lease_key **keys,
               size_t *n);

/*
 * LeaseLeases: every lease id, earliest expiry first (ties, e.g. every
 * lease on a non-primary member, by ascending id). *@ids is malloc'ed (NULL
 * when *@n is 0). Returns 0 or IK_ENOMEM (*@ids NULL, *@n 0).
 */
int lease_leases(const struct lessor *l, int64_t **ids, size_t *n);

/*
 * Re-attach keys from @m's current state: every live key whose version
 * has a lease that exists is attached to it, and nothing else. Used after
 * a snapshot restore (lease_decode() + store restored). Returns 0 or
 * IK_ENOMEM (attachments unchanged). @m must have no open txn.
 */
int lease_rebuild_from_store(struct lessor *l, const struct mvcc *m);

/*
 * Snapshot of the replicated state (ids, granted TTLs, checkpointed
 * remaining TTLs; see lease.c for the layout). Deterministic: equal states
 * give equal bytes on every member. *@buf is malloc'ed, the caller frees
 * it. Returns 0 or IK_ENOMEM.
 */
int lease_encode(const struct lessor *l, uint8_t **buf, size_t *len);

/*
 * Replace the replicated state with a snapshot from lease_encode(). TTLs
 * below the minimum are raised to it (as etcd's recovery does). No key is
 * attached afterwards: call lease_rebuild_from_store() once the store is
 * restored (the lessor also does it by itself before the next revoke).
 * The lessor comes out demoted: a leader calls lease_promote() again.
 * Returns 0, IK_ECORRUPT (bad magic, version, length, checksum, zero or
 * unordered ids, TTL out of range) or IK_ENOMEM; the lessor is unchanged
 * on error.
 */
int lease_decode(struct lessor *l, const uint8_t *buf, size_t len);

/* ---- Leader-local state (primary only) ---------------------------- */

/*
 * Become primary at @now_ms: every lease expires at now + promote_extend +
 * its remaining TTL (the checkpointed one if set, else the granted one).
 * With at least revoke_rate leases, leases whose expiries pile up are
 * spread further, as etcd does, so no more than 3/4 of the revoke rate
 * expire in any second. Schedules checkpoints. Cannot fail.
 */
void lease_promote(struct lessor *l, uint64_t now_ms);

/* Stop being primary: every lease lives forever again, nothing scheduled. */
void lease_demote(struct lessor *l);

/* Whether lease_promote() was called and lease_demote() not since. */
bool lease_is_primary(const struct lessor *l);

/*
 * Keep-alive on the primary: the lease now expires at @now_ms + its TTL;
 * *@ttl gets the granted TTL. *@clear_checkpoint (if not NULL) is set to
 * true when the lease carries a checkpointed remaining TTL and
 * checkpointing is on: the caller then proposes a checkpoint of @id with
 * remaining TTL 0 (etcd does so; the renewal already counts from the full
 * TTL).
 * Errors: IK_ENOTLEADER (not primary: forward to the leader),
 * IK_ELEASENOTFOUND (no such lease, or it has expired: etcd waits for the
 * expired lease's revoke and then answers "not found"; a caller that
 * wants to wait can test lease_exists() - an expired lease exists until
 * its revoke is applied). Nothing changes on error.
 */
int lease_renew(struct lessor *l, int64_t id, uint64_t now_ms, int64_t *ttl,
                bool *clear_checkpoint);

/*
 * Expired leases to revoke (primary only; 0 otherwise): up to @max ids,
 * earliest first, into @ids. Rate limited as etcd: at most revoke_rate/2
 * per LEASE_TICK_MS window. A lease handed out is handed out again after
 * expired_retry_ms if it still exists and is still expired (its revoke got
 * lost). Returns the number of ids stored.
 */
size_t lease_expired(struct lessor *l, uint64_t now_ms, int64_t *ids,
                     size_t max);

/*
 * Checkpoints due (primary with checkpointing on; 0 otherwise): up to @max
 * (id, remaining TTL) pairs into @out. A lease is checkpointed every
 * checkpoint_interval while its remaining TTL (rounded up to seconds) is
 * below its granted TTL; leases not longer than the interval never are.
 * The caller proposes them (at most LEASE_CHECKPOINT_BATCH per entry);
 * applying one through lease_checkpoint() schedules the next.
 */
size_t lease_checkpoints(struct lessor *l, uint64_t now_ms,
                         struct lease_checkpoint *out, size_t max);

/* ---- Lease ids ----------------------------------------------------- */

/* Start the generator of member @member_id at wall-clock @unix_ms. */
void lease_idgen_init(struct lease_idgen *g, uint64_t member_id,
                      uint64_t unix_ms);

/* The next id for a LeaseGrant without one: positive, never 0 (etcd
 * clears the top bit and skips 0). */
int64_t lease_idgen_next(struct lease_idgen *g);

#endif /* IKADA_LEASE_H */
