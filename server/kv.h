/*
 * kv: etcd's KV API semantics (Range, Put, DeleteRange, Txn, Compact) on top
 * of the MVCC store, in etcd's protobuf request/response types.
 *
 * No I/O and no raft here: the FSM calls the mutating functions when it
 * applies a committed entry, the read path calls kv_range() directly. All
 * functions are deterministic given the store state, so every member that
 * applies the same entries reaches the same state and the same answers.
 *
 * Two stages, as in etcd:
 *  - kv_check_*(): the checks etcd makes before a request is proposed
 *    (empty key, txn op limit, duplicate keys in a txn ...).
 *  - kv_range()/kv_put()/...: execution. A request that fails here changes
 *    nothing (a txn is validated completely before its first write).
 *
 * Responses are allocated with malloc() (every nested field too) and owned
 * by the caller, who frees them with protobuf_c_message_free_unpacked(msg,
 * NULL). The response header is allocated and carries the store revision;
 * cluster_id, member_id and raft_term are the caller's to fill (top-level
 * header only: like etcd, the per-op responses inside a TxnResponse carry
 * just a revision, and a nested txn's header is all zero). On error *resp
 * is left untouched and nothing stays allocated.
 *
 * Header revisions, as etcd sets them: Range: the store revision it read
 * (inside a txn: the txn's revision once the txn wrote something). Put:
 * the revision of the write. DeleteRange: the revision of the write, or
 * the current one if nothing was deleted and nothing written before it in
 * the txn. Txn: the new revision if it changed something, else the
 * current one. Compact: the current revision.
 */
#ifndef IKADA_KV_H
#define IKADA_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/rpc.pb-c.h"

struct mvcc;

struct kv {
    struct mvcc *store;
    /* Does lease @id exist? NULL means no lease exists (lease support is a
     * separate module); a Put/Txn naming a lease that does not exist fails
     * with IK_ELEASENOTFOUND. */
    bool (*lease_exists)(void *data, int64_t id);
    void *lease_data;
};

/*
 * Test hook for fault injection: when non-NULL, called before every
 * allocation kv makes itself; a true return makes it fail (IK_ENOMEM).
 */
extern bool (*kv_fail_alloc_hook)(void);

/* etcd's pre-proposal checks (v3rpc/key.go). Return 0 or an IK_E* code:
 * IK_EEMPTYKEY, IK_EVALUEPROVIDED, IK_ELEASEPROVIDED; for a txn also
 * IK_ETOOMANYOPS (the longest of compare/success/failure exceeds
 * max_txn_ops; nested txns get the budget left), IK_EKEYNOTFOUND for an
 * empty RequestOp, IK_EDUPKEY (etcd 3.4's put/delete overlap rules) and
 * IK_ENOMEM. */
int kv_check_range(const Etcdserverpb__RangeRequest *req);
int kv_check_put(const Etcdserverpb__PutRequest *req);
int kv_check_delete_range(const Etcdserverpb__DeleteRangeRequest *req);
int kv_check_txn(const Etcdserverpb__TxnRequest *req, unsigned max_txn_ops);

/* True when every op of both branches is a Range (etcd's isTxnReadonly: a
 * nested txn counts as a write even if it only reads), so the txn can be
 * served without going through raft. */
bool kv_txn_is_read_only(const Etcdserverpb__TxnRequest *req);

/*
 * Execution. Return 0 and set *resp, or an IK_E* code (IK_ECOMPACTED,
 * IK_EFUTUREREV, IK_ELEASENOTFOUND, IK_EKEYNOTFOUND, IK_ENOMEM, and
 * IK_EINVAL if the store already has an open mvcc txn). Every failing
 * call leaves the store unchanged, except kv_compact() failing with
 * IK_ENOMEM after the compaction itself succeeded.
 *
 * kv_range() never writes; the mutating calls open and close an mvcc
 * write txn themselves (so they must not be called inside one).
 * kv_txn() evaluates every compare (nested ones too) against the store
 * before writing, then checks the taken branches (ignore_value/
 * ignore_lease on a missing key: IK_EKEYNOTFOUND; unknown lease:
 * IK_ELEASENOTFOUND; then Range revisions: IK_EFUTUREREV/IK_ECOMPACTED),
 * and only then writes. Sorting ties come out in the order Go's sort.Sort
 * (the one etcd uses) gives them.
 */
int kv_range(struct kv *kv, const Etcdserverpb__RangeRequest *req,
             Etcdserverpb__RangeResponse **resp);
int kv_put(struct kv *kv, const Etcdserverpb__PutRequest *req,
           Etcdserverpb__PutResponse **resp);
int kv_delete_range(struct kv *kv, const Etcdserverpb__DeleteRangeRequest *req,
                    Etcdserverpb__DeleteRangeResponse **resp);
int kv_txn(struct kv *kv, const Etcdserverpb__TxnRequest *req,
           Etcdserverpb__TxnResponse **resp);
int kv_compact(struct kv *kv, const Etcdserverpb__CompactionRequest *req,
               Etcdserverpb__CompactionResponse **resp);

/*
 * Hash of the key-value history up to @rev (0 = current), as HashKV
 * reports it: CRC-32 over every retained version with mod_revision <= @rev
 * (tombstones included), in key order then revision order, covering key,
 * value, create/mod revision, sub revision, version and lease. Equal on
 * every member at the same revision: ikada's corruption check. Sets *hash
 * and *compact_rev (the store's compacted revision). Returns 0,
 * IK_ECOMPACTED (@rev below the compacted revision) or IK_EFUTUREREV.
 */
int kv_hash(struct kv *kv, int64_t rev, uint32_t *hash, int64_t *compact_rev);

#endif /* IKADA_KV_H */
