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
 * cluster_id, member_id and raft_term are the caller's to fill. On error
 * *resp is left untouched and nothing is allocated.
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

/* etcd's pre-proposal checks. Return 0 or an IK_E* code. */
int kv_check_range(const Etcdserverpb__RangeRequest *req);
int kv_check_put(const Etcdserverpb__PutRequest *req);
int kv_check_delete_range(const Etcdserverpb__DeleteRangeRequest *req);
int kv_check_txn(const Etcdserverpb__TxnRequest *req, unsigned max_txn_ops);

/* True when the txn (including nested txns) contains no write, so it can be
 * served as a read. */
bool kv_txn_is_read_only(const Etcdserverpb__TxnRequest *req);

/* Execution. Return 0 and set *resp, or an IK_E* code (IK_ECOMPACTED,
 * IK_EFUTUREREV, IK_ELEASENOTFOUND, IK_EKEYNOTFOUND, IK_ENOMEM ...). */
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

#endif /* IKADA_KV_H */
