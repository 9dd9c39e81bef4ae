/* Unit tests for server/kv: etcd 3.4's KV API semantics. Expected values
 * were checked against a real etcd 3.4.23 (grpc-gateway and etcdctl). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/kv.h"
#include "server/mvcc.h"

#define BIN(s) ((ProtobufCBinaryData){strlen(s), (uint8_t *)(s)})
#define BINN(s, n) ((ProtobufCBinaryData){(n), (uint8_t *)(s)})
#define FROMKEY BINN("\0", 1)

static struct mvcc store;
static struct kv kv;

static bool lease_ok(void *data, int64_t id)
{
    (void)data;
    return id == 100 || id == 200;
}

static int setup(void **state)
{
    (void)state;
    mvcc_init(&store);
    kv.store = &store;
    kv.lease_exists = lease_ok;
    kv.lease_data = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kv_fail_alloc_hook = NULL;
    mvcc_fail_alloc_hook = NULL;
    btree_fail_alloc_hook = NULL;
    mvcc_close(&store);
    return 0;
}

/* ---- helpers ---- */

static int64_t put_lease(const char *k, const char *v, int64_t lease)
{
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    int64_t rev;
    r.key = BIN(k);
    r.value = BIN(v);
    r.lease = lease;
    assert_int_equal(kv_check_put(&r), 0);
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    assert_non_null(resp->header);
    rev = resp->header->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

static int64_t put(const char *k, const char *v)
{
    return put_lease(k, v, 0);
}

/* "key=value" list of a response's kvs (values omitted when keys_only). */
static const char *kvs_str(Mvccpb__KeyValue **kvs, size_t n)
{
    static char buf[4096];
    size_t i, off = 0;
    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        off += (size_t)snprintf(
            buf + off, sizeof(buf) - off, "%s%.*s=%.*s", i > 0 ? " " : "",
            (int)kvs[i]->key.len, (const char *)kvs[i]->key.data,
            (int)kvs[i]->value.len, (const char *)kvs[i]->value.data);
    }
    return buf;
}

static Etcdserverpb__RangeResponse *do_range(Etcdserverpb__RangeRequest *r)
{
    Etcdserverpb__RangeResponse *resp = NULL;
    assert_int_equal(kv_check_range(r), 0);
    assert_int_equal(kv_range(&kv, r, &resp), 0);
    assert_non_null(resp);
    assert_non_null(resp->header);
    return resp;
}

static void free_msg(void *msg)
{
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* Hash of the whole store, to show that failures change nothing. */
static int hash_kv(void *arg, const struct mvcc_kv *v)
{
    uint64_t *h = arg;
    size_t i;
    const int64_t nums[] = {v->create_revision, v->mod_revision, v->version,
                            v->lease, v->sub};
    for (i = 0; i < v->key_len; i++) {
        *h = (*h ^ v->key[i]) * 1099511628211ULL;
    }
    for (i = 0; i < v->value_len; i++) {
        *h = (*h ^ v->value[i]) * 1099511628211ULL;
    }
    for (i = 0; i < 5; i++) {
        *h = (*h ^ (uint64_t)nums[i]) * 1099511628211ULL;
    }
    return 0;
}

static uint64_t store_hash(void)
{
    uint64_t h = 1469598103934665603ULL;
    mvcc_walk(&store, hash_kv, &h);
    return (h ^ (uint64_t)mvcc_rev(&store)) * 1099511628211ULL;
}

/* ---- checks ---- */

static void test_check_requests(void **state)
{
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__PutRequest pr = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__DeleteRangeRequest dr =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    (void)state;

    assert_int_equal(kv_check_range(&rr), IK_EEMPTYKEY);
    rr.key = BIN("a");
    assert_int_equal(kv_check_range(&rr), 0);
    assert_int_equal(kv_check_delete_range(&dr), IK_EEMPTYKEY);
    dr.key = BIN("a");
    assert_int_equal(kv_check_delete_range(&dr), 0);

    assert_int_equal(kv_check_put(&pr), IK_EEMPTYKEY);
    pr.key = BIN("a");
    assert_int_equal(kv_check_put(&pr), 0);
    pr.ignore_value = true;
    assert_int_equal(kv_check_put(&pr), 0);
    pr.value = BIN("v");
    assert_int_equal(kv_check_put(&pr), IK_EVALUEPROVIDED);
    pr.ignore_value = false;
    pr.ignore_lease = true;
    assert_int_equal(kv_check_put(&pr), 0);
    pr.lease = 5;
    assert_int_equal(kv_check_put(&pr), IK_ELEASEPROVIDED);
    /* Empty key wins over the other checks. */
    pr.key = BIN("");
    assert_int_equal(kv_check_put(&pr), IK_EEMPTYKEY);
}

/* Building blocks for txn requests on the stack. */
#define OP_PUT(op, preq, k, v)                                             \
    do {                                                                   \
        etcdserverpb__put_request__init(&(preq));                          \
        (preq).key = BIN(k);                                               \
        (preq).value = BIN(v);                                             \
        etcdserverpb__request_op__init(&(op));                             \
        (op).request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT; \
        (op).request_put = &(preq);                                        \
    } while (0)
#define OP_DEL(op, dreq, k, e)                                      \
    do {                                                            \
        etcdserverpb__delete_range_request__init(&(dreq));          \
        (dreq).key = BIN(k);                                        \
        (dreq).range_end = (e);                                     \
        etcdserverpb__request_op__init(&(op));                      \
        (op).request_case =                                         \
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE; \
        (op).request_delete_range = &(dreq);                        \
    } while (0)
#define OP_RANGE(op, rreq, k, e)                                             \
    do {                                                                     \
        etcdserverpb__range_request__init(&(rreq));                          \
        (rreq).key = BIN(k);                                                 \
        (rreq).range_end = (e);                                              \
        etcdserverpb__request_op__init(&(op));                               \
        (op).request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE; \
        (op).request_range = &(rreq);                                        \
    } while (0)
#define OP_TXN(op, treq)                                                   \
    do {                                                                   \
        etcdserverpb__request_op__init(&(op));                             \
        (op).request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN; \
        (op).request_txn = &(treq);                                        \
    } while (0)
#define NOEND BINN(NULL, 0)

static void test_check_txn_limits(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest nested = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__RequestOp ops[4], nops[2], empty;
    Etcdserverpb__RequestOp *pops[4], *pnops[2], *pempty[1];
    Etcdserverpb__PutRequest puts[4];
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    Etcdserverpb__Compare *pcmp[1] = {&cmp};
    int i;
    (void)state;

    for (i = 0; i < 3; i++) {
        static const char *keys[] = {"a", "b", "c"};
        OP_PUT(ops[i], puts[i], keys[i], "v");
        pops[i] = &ops[i];
    }
    t.success = pops;
    t.n_success = 3;
    assert_int_equal(kv_check_txn(&t, 3), 0);
    assert_int_equal(kv_check_txn(&t, 2), IK_ETOOMANYOPS);
    /* The failure list counts on its own, not added to success. */
    t.failure = pops;
    t.n_failure = 3;
    assert_int_equal(kv_check_txn(&t, 3), 0);
    t.n_failure = 0;
    /* Compares count too. */
    cmp.key = BIN("a");
    t.compare = pcmp;
    t.n_compare = 1;
    assert_int_equal(kv_check_txn(&t, 3), 0);
    cmp.key = BIN("");
    assert_int_equal(kv_check_txn(&t, 3), IK_EEMPTYKEY);
    t.n_compare = 0;
    /* A nested txn gets the budget left: max - the outer count. */
    OP_PUT(nops[0], puts[3], "n", "v");
    pnops[0] = &nops[0];
    nested.success = pnops;
    nested.n_success = 1;
    OP_TXN(ops[2], nested);
    assert_int_equal(kv_check_txn(&t, 4), 0);
    assert_int_equal(kv_check_txn(&t, 3), IK_ETOOMANYOPS);
    /* An empty op is "key not found"; an empty key in an op is caught. */
    etcdserverpb__request_op__init(&empty);
    pempty[0] = &empty;
    nested.success = pempty;
    assert_int_equal(kv_check_txn(&t, 10), IK_EKEYNOTFOUND);
    puts[0].key = BIN("");
    assert_int_equal(kv_check_txn(&t, 10), IK_EEMPTYKEY);
}

static void test_check_txn_dupkeys(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest n1 = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest n2 = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__RequestOp o[4], a[2], b2[2], c[2];
    Etcdserverpb__RequestOp *po[4], *pa[2], *pb[2], *pc[2];
    Etcdserverpb__PutRequest p[8];
    Etcdserverpb__DeleteRangeRequest d[8];
    Etcdserverpb__RangeRequest r[2];
    int i;
    (void)state;

    for (i = 0; i < 4; i++) {
        po[i] = &o[i];
    }
    for (i = 0; i < 2; i++) {
        pa[i] = &a[i];
        pb[i] = &b2[i];
        pc[i] = &c[i];
    }
    t.success = po;

    /* put k twice. */
    OP_PUT(o[0], p[0], "k", "1");
    OP_PUT(o[1], p[1], "k", "2");
    t.n_success = 2;
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* put k, range k: fine. */
    OP_RANGE(o[1], r[0], "k", NOEND);
    assert_int_equal(kv_check_txn(&t, 128), 0);
    /* put k + delete k (point) in either order. */
    OP_DEL(o[1], d[0], "k", NOEND);
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    OP_DEL(o[0], d[1], "k", NOEND);
    OP_PUT(o[1], p[1], "k", "2");
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* put inside a deleted range [a, m). */
    OP_DEL(o[0], d[1], "a", BIN("m"));
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* End is exclusive. */
    OP_DEL(o[0], d[1], "a", BIN("k"));
    assert_int_equal(kv_check_txn(&t, 128), 0);
    /* A from-key delete does not conflict (etcd 3.4 quirk), nor does an
     * inverted range, nor do two overlapping deletes. */
    OP_DEL(o[0], d[1], "a", FROMKEY);
    assert_int_equal(kv_check_txn(&t, 128), 0);
    OP_DEL(o[0], d[1], "z", BIN("a"));
    assert_int_equal(kv_check_txn(&t, 128), 0);
    OP_DEL(o[0], d[1], "a", BIN("z"));
    OP_DEL(o[1], d[2], "b", BIN("y"));
    assert_int_equal(kv_check_txn(&t, 128), 0);

    /* Nested: the same key in the then and else branch is fine... */
    OP_PUT(a[0], p[2], "x", "1");
    OP_PUT(b2[0], p[3], "x", "2");
    n1.success = pa;
    n1.n_success = 1;
    n1.failure = pb;
    n1.n_failure = 1;
    OP_TXN(o[0], n1);
    t.n_success = 1;
    assert_int_equal(kv_check_txn(&t, 128), 0);
    /* ...but not with an outer put of the same key. */
    OP_PUT(o[1], p[4], "x", "3");
    t.n_success = 2;
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* Outer delete covering a nested put. */
    OP_DEL(o[1], d[3], "w", BIN("y"));
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* A nested delete covering an outer put. */
    OP_DEL(a[0], d[4], "q", NOEND);
    n1.n_failure = 0;
    OP_PUT(o[1], p[5], "q", "1");
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* Two sibling nested txns putting the same key. */
    OP_PUT(a[0], p[2], "s", "1");
    OP_PUT(c[0], p[6], "s", "2");
    n2.success = pc;
    n2.n_success = 1;
    OP_TXN(o[1], n2);
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* An earlier nested put and a later nested delete: etcd lets it
     * through (the later deletes are added after the check). */
    OP_DEL(c[0], d[5], "s", NOEND);
    assert_int_equal(kv_check_txn(&t, 128), 0);
    /* The same key put in then and else of one nested txn and again in
     * a sibling's branch is a duplicate. */
    OP_PUT(a[0], p[2], "m", "1");
    OP_PUT(b2[0], p[3], "m", "2");
    n1.n_failure = 1;
    OP_PUT(c[0], p[6], "m", "3");
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    /* Two levels down: then and else of the inner txn put the same key;
     * the middle txn reports it once, so the outer level sees no
     * duplicate (a set, as etcd's map). */
    {
        Etcdserverpb__TxnRequest outer = ETCDSERVERPB__TXN_REQUEST__INIT;
        Etcdserverpb__TxnRequest mid = ETCDSERVERPB__TXN_REQUEST__INIT;
        Etcdserverpb__TxnRequest in = ETCDSERVERPB__TXN_REQUEST__INIT;
        Etcdserverpb__RequestOp om, mi, i1, i2;
        Etcdserverpb__RequestOp *pom[1] = {&om}, *pmi[1] = {&mi};
        Etcdserverpb__RequestOp *pi1[1] = {&i1}, *pi2[1] = {&i2};
        Etcdserverpb__PutRequest q1, q2;
        OP_PUT(i1, q1, "deep", "1");
        OP_PUT(i2, q2, "deep", "2");
        in.success = pi1;
        in.n_success = 1;
        in.failure = pi2;
        in.n_failure = 1;
        OP_TXN(mi, in);
        mid.success = pmi;
        mid.n_success = 1;
        OP_TXN(om, mid);
        outer.success = pom;
        outer.n_success = 1;
        assert_int_equal(kv_check_txn(&outer, 128), 0);
    }
    /* The failure list is checked too. */
    t.n_success = 0;
    t.failure = po;
    OP_PUT(o[0], p[0], "f", "1");
    OP_PUT(o[1], p[1], "f", "2");
    t.n_failure = 2;
    assert_int_equal(kv_check_txn(&t, 128), IK_EDUPKEY);
    (void)r;
}

static void test_txn_read_only(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest n = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__RequestOp o[2];
    Etcdserverpb__RequestOp *po[2] = {&o[0], &o[1]};
    Etcdserverpb__RangeRequest r[2];
    Etcdserverpb__PutRequest p;
    (void)state;

    assert_true(kv_txn_is_read_only(&t));
    OP_RANGE(o[0], r[0], "a", NOEND);
    OP_RANGE(o[1], r[1], "b", NOEND);
    t.success = po;
    t.n_success = 2;
    t.failure = po;
    t.n_failure = 1;
    assert_true(kv_txn_is_read_only(&t));
    OP_PUT(o[1], p, "b", "1");
    assert_false(kv_txn_is_read_only(&t));
    /* A nested txn counts as a write, even a read-only one. */
    OP_TXN(o[1], n);
    assert_false(kv_txn_is_read_only(&t));
}

/* ---- Range ---- */

static void seed_keys(void)
{
    put("a", "1");   /* 2 */
    put("b", "2");   /* 3 */
    put("c", "3");   /* 4 */
    put("b", "22");  /* 5 */
    put("d", "0");   /* 6 */
    put("b", "222"); /* 7 */
    put("e", "9");   /* 8 */
}

static void test_range_forms(void **state)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    (void)state;

    seed_keys();
    r.key = BIN("b");
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222");
    assert_int_equal(resp->count, 1);
    assert_false(resp->more);
    assert_int_equal(resp->header->revision, 8);
    assert_int_equal(resp->kvs[0]->create_revision, 3);
    assert_int_equal(resp->kvs[0]->mod_revision, 7);
    assert_int_equal(resp->kvs[0]->version, 3);
    free_msg(resp);

    r.range_end = BIN("d");
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 c=3");
    free_msg(resp);

    r.range_end = FROMKEY;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 c=3 d=0 e=9");
    free_msg(resp);

    r.key = FROMKEY; /* all keys */
    resp = do_range(&r);
    assert_int_equal(resp->count, 5);
    assert_int_equal(resp->n_kvs, 5);
    free_msg(resp);

    r.key = BIN("zz");
    r.range_end = NOEND;
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 0);
    assert_int_equal(resp->count, 0);
    assert_null(resp->kvs);
    free_msg(resp);

    /* Revision. */
    r.key = BIN("b");
    r.revision = 4;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=2");
    assert_int_equal(resp->header->revision, 8); /* header: current */
    free_msg(resp);
}

static void test_range_limit_more_count(void **state)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    (void)state;

    seed_keys();
    r.key = BIN("a");
    r.range_end = FROMKEY;
    r.limit = 2;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "a=1 b=222");
    assert_true(resp->more);
    assert_int_equal(resp->count, 5);
    free_msg(resp);

    r.limit = 5;
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 5);
    assert_false(resp->more);
    free_msg(resp);

    r.limit = -1; /* negative: no limit */
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 5);
    assert_false(resp->more);
    free_msg(resp);

    /* count_only: no kvs, the count, never "more". */
    r.limit = 1;
    r.count_only = true;
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 0);
    assert_int_equal(resp->count, 5);
    assert_false(resp->more);
    free_msg(resp);
    r.count_only = false;

    /* keys_only: no values. */
    r.limit = 0;
    r.keys_only = true;
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 5);
    assert_int_equal(resp->kvs[1]->value.len, 0);
    assert_int_equal(resp->kvs[1]->version, 3);
    free_msg(resp);
    r.keys_only = false;

    /* Filters prune kvs but not the count; with a limit, more is computed
     * after filtering (etcd fetches everything when filtering). */
    r.min_mod_revision = 5; /* b@7, d@6, e@8 */
    r.limit = 2;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 d=0");
    assert_true(resp->more);
    assert_int_equal(resp->count, 5);
    free_msg(resp);
    r.limit = 3;
    resp = do_range(&r);
    assert_int_equal(resp->n_kvs, 3);
    assert_false(resp->more);
    free_msg(resp);
    r.limit = 0;
    r.max_mod_revision = 7;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 d=0");
    free_msg(resp);
    r.min_mod_revision = 0;
    r.max_mod_revision = 0;
    r.min_create_revision = 3;
    r.max_create_revision = 4;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 c=3");
    assert_int_equal(resp->count, 5);
    free_msg(resp);
}

static void test_range_sort(void **state)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *resp;
    (void)state;

    seed_keys();
    r.key = BIN("a");
    r.range_end = BIN("z");

    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs),
                        "e=9 d=0 c=3 b=222 a=1");
    free_msg(resp);
    /* A non-KEY target with order NONE sorts ascending. */
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs),
                        "d=0 a=1 b=222 c=3 e=9");
    free_msg(resp);
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs),
                        "e=9 b=222 d=0 c=3 a=1");
    free_msg(resp);
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs),
                        "a=1 b=222 c=3 d=0 e=9");
    free_msg(resp);
    /* Version ties keep key order for short lists (Go's insertion sort). */
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs),
                        "b=222 a=1 c=3 d=0 e=9");
    free_msg(resp);
    /* Sorting happens before the limit; more tells about the rest. */
    r.limit = 2;
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "b=222 a=1");
    assert_true(resp->more);
    assert_int_equal(resp->count, 5);
    free_msg(resp);
}

/* Ties among more than 12 results come out in the order of Go's pdqsort;
 * these orders were produced by etcd 3.4.23 for the same data. */
static void test_range_sort_ties_like_go(void **state)
{
    static const char vals[] = "qpsrpqspqrsqpprsqqpsrpsqprqspr";
    static const int bumps[] = {3, 7, 11, 19, 23, 29, 3, 7};
    static const struct {
        int order, target;
        const char *keys;
    } cases[] = {
        {1, 4,
         "21 12 24 18 04 01 28 07 13 11 16 23 00 08 17 05 26 29 03 25 "
         "20 09 14 02 22 19 10 27 06 15"},
        {2, 4,
         "15 27 10 19 22 02 06 14 20 09 25 29 03 05 00 11 16 17 23 26 "
         "08 07 21 18 24 13 12 04 28 01"},
        {0, 1,
         "21 02 15 14 04 05 06 28 08 09 10 27 12 13 26 01 16 17 18 25 "
         "20 00 22 24 23 19 29 11 07 03"},
        {2, 1,
         "07 03 29 23 19 11 14 17 08 09 10 05 12 13 00 15 16 06 18 04 "
         "20 21 22 02 24 25 26 27 28 01"},
        {1, 3,
         "00 01 02 04 05 06 08 09 10 12 13 14 15 16 17 18 20 21 22 24 "
         "25 26 27 28 11 19 23 29 03 07"},
    };
    size_t i, j;
    (void)state;

    for (i = 0; i < 30; i++) {
        char k[8], v[2] = {vals[i], 0};
        snprintf(k, sizeof(k), "k%02d", (int)i);
        put(k, v);
    }
    for (i = 0; i < sizeof(bumps) / sizeof(bumps[0]); i++) {
        char k[8], v[2] = {vals[bumps[i]], 0};
        snprintf(k, sizeof(k), "k%02d", bumps[i]);
        put(k, v);
    }
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
        Etcdserverpb__RangeResponse *resp;
        char got[256];
        size_t off = 0;
        r.key = BIN("k");
        r.range_end = BIN("l");
        r.sort_order = cases[i].order;
        r.sort_target = cases[i].target;
        r.keys_only = true;
        resp = do_range(&r);
        assert_int_equal(resp->n_kvs, 30);
        for (j = 0; j < resp->n_kvs; j++) {
            off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%.2s",
                                    j > 0 ? " " : "",
                                    (const char *)resp->kvs[j]->key.data + 1);
        }
        assert_string_equal(got, cases[i].keys);
        free_msg(resp);
    }
}

static void test_range_errors(void **state)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    Etcdserverpb__CompactionResponse *cresp = NULL;
    Etcdserverpb__RangeResponse *resp = NULL;
    (void)state;

    seed_keys();
    r.key = BIN("a");
    r.revision = 9;
    assert_int_equal(kv_range(&kv, &r, &resp), IK_EFUTUREREV);
    assert_null(resp);
    c.revision = 5;
    assert_int_equal(kv_compact(&kv, &c, &cresp), 0);
    assert_int_equal(cresp->header->revision, 8);
    free_msg(cresp);
    r.revision = 4;
    assert_int_equal(kv_range(&kv, &r, &resp), IK_ECOMPACTED);
    assert_null(resp);
    r.revision = 5; /* at the compacted revision: fine */
    resp = do_range(&r);
    assert_string_equal(kvs_str(resp->kvs, resp->n_kvs), "a=1");
    free_msg(resp);
    /* Compaction errors. */
    cresp = NULL;
    assert_int_equal(kv_compact(&kv, &c, &cresp), IK_ECOMPACTED);
    c.revision = 3;
    assert_int_equal(kv_compact(&kv, &c, &cresp), IK_ECOMPACTED);
    c.revision = 9;
    assert_int_equal(kv_compact(&kv, &c, &cresp), IK_EFUTUREREV);
    c.revision = 8;
    c.physical = true;
    assert_int_equal(kv_compact(&kv, &c, &cresp), 0);
    assert_int_equal(cresp->header->revision, 8);
    free_msg(cresp);
}

/* ---- Put ---- */

static void test_put_options(void **state)
{
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *rresp;
    uint64_t h;
    (void)state;

    assert_int_equal(put_lease("k", "v1", 100), 2);
    /* prev_kv. */
    r.key = BIN("k");
    r.value = BIN("v2");
    r.prev_kv = true;
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    assert_int_equal(resp->header->revision, 3);
    assert_non_null(resp->prev_kv);
    assert_int_equal(resp->prev_kv->value.len, 2);
    assert_memory_equal(resp->prev_kv->value.data, "v1", 2);
    assert_int_equal(resp->prev_kv->lease, 100);
    assert_int_equal(resp->prev_kv->mod_revision, 2);
    free_msg(resp);
    /* prev_kv on a new key: none. */
    r.key = BIN("new");
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    assert_null(resp->prev_kv);
    free_msg(resp);
    r.prev_kv = false;

    /* Unknown lease: error, nothing written. */
    h = store_hash();
    resp = NULL;
    r.key = BIN("k");
    r.lease = 300;
    assert_int_equal(kv_put(&kv, &r, &resp), IK_ELEASENOTFOUND);
    assert_null(resp);
    assert_true(store_hash() == h);
    /* No lease hook: every lease is unknown. */
    kv.lease_exists = NULL;
    r.lease = 100;
    assert_int_equal(kv_put(&kv, &r, &resp), IK_ELEASENOTFOUND);
    kv.lease_exists = lease_ok;
    r.lease = 0;

    /* ignore_value on a missing key. */
    r.key = BIN("missing");
    r.value = BIN("");
    r.ignore_value = true;
    assert_int_equal(kv_put(&kv, &r, &resp), IK_EKEYNOTFOUND);
    assert_true(store_hash() == h);
    /* ignore_value keeps the value, takes the new lease. */
    r.key = BIN("k");
    r.lease = 200;
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    free_msg(resp);
    rr.key = BIN("k");
    rresp = do_range(&rr);
    assert_string_equal(kvs_str(rresp->kvs, rresp->n_kvs), "k=v2");
    assert_int_equal(rresp->kvs[0]->lease, 200);
    assert_int_equal(rresp->kvs[0]->version, 3);
    free_msg(rresp);
    /* ignore_lease keeps the lease, takes the new value. */
    r.ignore_value = false;
    r.ignore_lease = true;
    r.lease = 0;
    r.value = BIN("v3");
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    free_msg(resp);
    rresp = do_range(&rr);
    assert_string_equal(kvs_str(rresp->kvs, rresp->n_kvs), "k=v3");
    assert_int_equal(rresp->kvs[0]->lease, 200);
    free_msg(rresp);
    /* ignore_lease on a missing key. */
    r.key = BIN("missing");
    assert_int_equal(kv_put(&kv, &r, &resp), IK_EKEYNOTFOUND);
    /* A plain put without lease drops the old lease. */
    put("k", "v4");
    rresp = do_range(&rr);
    assert_int_equal(rresp->kvs[0]->lease, 0);
    free_msg(rresp);
}

/* ---- DeleteRange ---- */

static void test_delete_range(void **state)
{
    Etcdserverpb__DeleteRangeRequest r =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    (void)state;

    seed_keys();
    r.key = BIN("zzz");
    assert_int_equal(kv_delete_range(&kv, &r, &resp), 0);
    assert_int_equal(resp->deleted, 0);
    assert_int_equal(resp->header->revision, 8); /* nothing: current */
    free_msg(resp);
    assert_int_equal(mvcc_rev(&store), 8);

    r.key = BIN("b");
    r.range_end = BIN("d");
    r.prev_kv = true;
    assert_int_equal(kv_delete_range(&kv, &r, &resp), 0);
    assert_int_equal(resp->deleted, 2);
    assert_int_equal(resp->header->revision, 9);
    assert_string_equal(kvs_str(resp->prev_kvs, resp->n_prev_kvs), "b=222 c=3");
    free_msg(resp);

    /* prev_kv with nothing to delete. */
    assert_int_equal(kv_delete_range(&kv, &r, &resp), 0);
    assert_int_equal(resp->deleted, 0);
    assert_int_equal(resp->n_prev_kvs, 0);
    free_msg(resp);

    r.key = BIN("a");
    r.range_end = FROMKEY;
    r.prev_kv = false;
    assert_int_equal(kv_delete_range(&kv, &r, &resp), 0);
    assert_int_equal(resp->deleted, 3);
    assert_int_equal(resp->n_prev_kvs, 0);
    free_msg(resp);
    /* Re-create gets a new create revision and version 1. */
    put("b", "again");
    {
        Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
        Etcdserverpb__RangeResponse *rresp;
        rr.key = BIN("b");
        rresp = do_range(&rr);
        assert_int_equal(rresp->kvs[0]->create_revision, 11);
        assert_int_equal(rresp->kvs[0]->version, 1);
        free_msg(rresp);
    }
}

/* ---- Txn ---- */

static Etcdserverpb__Compare mkcmp(const char *k, int target, int result,
                                   int64_t n, const char *value)
{
    Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
    c.key = BIN(k);
    c.target = target;
    c.result = result;
    switch (target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        c.version = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        c.target_union_case =
            ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        c.create_revision = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        c.mod_revision = n;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
        c.lease = n;
        break;
    default:
        if (value != NULL) {
            c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            c.value = BIN(value);
        }
        break;
    }
    return c;
}

/* Run a txn made of compares only; return whether it succeeded. */
static bool cmp_succeeds(Etcdserverpb__Compare c)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp = NULL;
    Etcdserverpb__Compare *pc[1] = {&c};
    bool ok;
    t.compare = pc;
    t.n_compare = 1;
    assert_int_equal(kv_check_txn(&t, 128), 0);
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    ok = resp->succeeded;
    assert_int_equal(resp->header->revision, mvcc_rev(&store));
    free_msg(resp);
    return ok;
}

enum {
    EQ = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL,
    NE = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
    GT = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
    LT = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS,
    VER = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
    CRE = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE,
    MOD = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD,
    VAL = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE,
    LEA = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE,
};

static void test_txn_compares(void **state)
{
    Etcdserverpb__Compare c;
    (void)state;

    seed_keys();              /* b: create 3, mod 7, version 3, value 222 */
    put_lease("l", "x", 100); /* 9 */
    assert_true(cmp_succeeds(mkcmp("b", VER, EQ, 3, NULL)));
    assert_false(cmp_succeeds(mkcmp("b", VER, NE, 3, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", VER, GT, 2, NULL)));
    assert_false(cmp_succeeds(mkcmp("b", VER, GT, 3, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", VER, LT, 4, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", CRE, EQ, 3, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", MOD, EQ, 7, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", MOD, LT, 8, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", VAL, EQ, 0, "222")));
    assert_true(cmp_succeeds(mkcmp("b", VAL, GT, 0, "2")));
    assert_true(cmp_succeeds(mkcmp("b", VAL, LT, 0, "3")));
    assert_true(cmp_succeeds(mkcmp("b", VAL, NE, 0, "22")));
    assert_true(cmp_succeeds(mkcmp("l", LEA, EQ, 100, NULL)));
    assert_true(cmp_succeeds(mkcmp("b", LEA, EQ, 0, NULL)));
    assert_false(cmp_succeeds(mkcmp("l", LEA, EQ, 200, NULL)));
    assert_true(cmp_succeeds(mkcmp("l", LEA, GT, 99, NULL)));
    assert_false(cmp_succeeds(mkcmp("l", LEA, LT, 100, NULL)));
    /* A missing key compares as a zero KeyValue... */
    assert_true(cmp_succeeds(mkcmp("nope", VER, EQ, 0, NULL)));
    assert_true(cmp_succeeds(mkcmp("nope", CRE, EQ, 0, NULL)));
    assert_true(cmp_succeeds(mkcmp("nope", MOD, LT, 1, NULL)));
    assert_true(cmp_succeeds(mkcmp("nope", LEA, EQ, 0, NULL)));
    /* ...except for VALUE, which always fails on missing keys. */
    assert_false(cmp_succeeds(mkcmp("nope", VAL, EQ, 0, "")));
    assert_false(cmp_succeeds(mkcmp("nope", VAL, NE, 0, "x")));
    /* No target value set: compares against zero / empty. */
    assert_true(cmp_succeeds(mkcmp("b", VAL, GT, 0, NULL)));
    c = mkcmp("b", VER, GT, 0, NULL);
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION__NOT_SET;
    c.version = 99;
    assert_true(cmp_succeeds(c));
    /* A mismatched union member is ignored (0 is used). */
    c = mkcmp("b", MOD, EQ, 7, NULL);
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
    assert_false(cmp_succeeds(c));
    /* Range compares: every key must satisfy. */
    c = mkcmp("a", VER, GT, 0, NULL);
    c.range_end = BIN("f");
    assert_true(cmp_succeeds(c));
    c = mkcmp("a", VER, EQ, 1, NULL);
    c.range_end = BIN("f");
    assert_false(cmp_succeeds(c)); /* b has version 3 */
    c.range_end = BIN("b");
    assert_true(cmp_succeeds(c));
    c = mkcmp("a", MOD, LT, 100, NULL);
    c.range_end = FROMKEY;
    assert_true(cmp_succeeds(c));
    /* An empty range compares a zero KeyValue. */
    c = mkcmp("x", CRE, EQ, 0, NULL);
    c.range_end = BIN("y");
    assert_true(cmp_succeeds(c));
    /* Unknown result: true. */
    c = mkcmp("b", VER, 7, 99, NULL);
    assert_true(cmp_succeeds(c));
}

static const char *resp_revs(Etcdserverpb__TxnResponse *t)
{
    static char buf[256];
    size_t i, off = 0;
    buf[0] = 0;
    for (i = 0; i < t->n_responses; i++) {
        Etcdserverpb__ResponseOp *r = t->responses[i];
        const char *kind = "?";
        int64_t rev = -1;
        switch (r->response_case) {
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
            kind = "R";
            rev = r->response_range->header->revision;
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
            kind = "P";
            rev = r->response_put->header->revision;
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
            kind = "D";
            rev = r->response_delete_range->header->revision;
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN:
            kind = "T";
            rev = r->response_txn->header->revision;
            break;
        default:
            break;
        }
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s%lld",
                                i > 0 ? " " : "", kind, (long long)rev);
    }
    return buf;
}

static void test_txn_ops_and_revisions(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp = NULL;
    Etcdserverpb__RequestOp o[5];
    Etcdserverpb__RequestOp *po[5];
    Etcdserverpb__RangeRequest r[2];
    Etcdserverpb__PutRequest p[2];
    Etcdserverpb__DeleteRangeRequest d[2];
    int i;
    (void)state;

    put("a", "1"); /* 2 */
    for (i = 0; i < 5; i++) {
        po[i] = &o[i];
    }
    /* Checked against etcd: a range before any write sees the old
     * revision, after a write the txn's; a delete of nothing after a
     * write reports the txn's revision. */
    OP_DEL(o[0], d[0], "zzz", NOEND);
    OP_RANGE(o[1], r[0], "a", NOEND);
    OP_PUT(o[2], p[0], "x", "y");
    OP_RANGE(o[3], r[1], "x", NOEND);
    OP_DEL(o[4], d[1], "zzz", NOEND);
    t.success = po;
    t.n_success = 5;
    assert_int_equal(kv_check_txn(&t, 128), 0);
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_true(resp->succeeded);
    assert_int_equal(resp->header->revision, 3);
    assert_string_equal(resp_revs(resp), "D2 R2 P3 R3 D3");
    assert_string_equal(kvs_str(resp->responses[3]->response_range->kvs,
                                resp->responses[3]->response_range->n_kvs),
                        "x=y");
    free_msg(resp);
    assert_int_equal(mvcc_rev(&store), 3);

    /* A txn whose writes change nothing keeps the revision. */
    t.n_success = 1;
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_int_equal(resp->header->revision, 3);
    free_msg(resp);
    assert_int_equal(mvcc_rev(&store), 3);

    /* Failure branch and empty branches. */
    {
        Etcdserverpb__Compare c = mkcmp("a", VER, EQ, 5, NULL);
        Etcdserverpb__Compare *pc[1] = {&c};
        t.compare = pc;
        t.n_compare = 1;
        t.failure = &po[2];
        t.n_failure = 1;
        p[0].value = BIN("z");
        assert_int_equal(kv_txn(&kv, &t, &resp), 0);
        assert_false(resp->succeeded);
        assert_string_equal(resp_revs(resp), "P4");
        free_msg(resp);
        t.n_failure = 0;
        assert_int_equal(kv_txn(&kv, &t, &resp), 0);
        assert_false(resp->succeeded);
        assert_int_equal(resp->n_responses, 0);
        assert_int_equal(resp->header->revision, 4);
        free_msg(resp);
    }
    /* Each put in one txn: same revision, increasing versions. */
    t.n_compare = 0;
    OP_PUT(o[0], p[0], "m", "1");
    OP_PUT(o[1], p[1], "n", "2");
    t.success = po;
    t.n_success = 2;
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_string_equal(resp_revs(resp), "P5 P5");
    free_msg(resp);
}

static void test_txn_nested(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest n = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp = NULL, *sub;
    Etcdserverpb__RequestOp o[2], no[2];
    Etcdserverpb__RequestOp *po[2] = {&o[0], &o[1]};
    Etcdserverpb__RequestOp *pno[2] = {&no[0], &no[1]};
    Etcdserverpb__PutRequest p[2];
    Etcdserverpb__RangeRequest r;
    Etcdserverpb__Compare nc = mkcmp("flag", VER, EQ, 0, NULL);
    Etcdserverpb__Compare *pnc[1] = {&nc};
    (void)state;

    put("a", "1"); /* 2 */
    /* Outer: put flag; nested: compare flag version == 0. The nested
     * compare is evaluated before any write, so it still sees no flag. */
    OP_PUT(o[0], p[0], "flag", "1");
    OP_TXN(o[1], n);
    n.compare = pnc;
    n.n_compare = 1;
    OP_PUT(no[0], p[1], "inner", "x");
    n.success = pno;
    n.n_success = 1;
    OP_RANGE(no[1], r, "a", NOEND);
    n.failure = &pno[1];
    n.n_failure = 1;
    t.success = po;
    t.n_success = 2;
    assert_int_equal(kv_check_txn(&t, 128), 0);
    assert_false(kv_txn_is_read_only(&t));
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_true(resp->succeeded);
    assert_int_equal(resp->header->revision, 3);
    assert_string_equal(resp_revs(resp), "P3 T0");
    sub = resp->responses[1]->response_txn;
    assert_true(sub->succeeded);
    assert_non_null(sub->header);
    assert_int_equal(sub->header->revision, 0); /* etcd leaves it empty */
    assert_string_equal(resp_revs(sub), "P3");
    free_msg(resp);
    /* Now flag exists: the nested txn takes its failure branch. */
    p[0].key = BIN("other");
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    sub = resp->responses[1]->response_txn;
    assert_false(sub->succeeded);
    assert_string_equal(resp_revs(sub), "R4");
    free_msg(resp);
}

static void test_txn_atomic_on_failure(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest n = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp = NULL;
    Etcdserverpb__RequestOp o[3], no[1];
    Etcdserverpb__RequestOp *po[3] = {&o[0], &o[1], &o[2]};
    Etcdserverpb__RequestOp *pno[1] = {&no[0]};
    Etcdserverpb__PutRequest p[3];
    Etcdserverpb__RangeRequest r;
    Etcdserverpb__DeleteRangeRequest d;
    uint64_t h;
    (void)state;

    seed_keys();
    h = store_hash();
    t.success = po;
    /* Unknown lease on the second put. */
    OP_PUT(o[0], p[0], "a", "changed");
    OP_PUT(o[1], p[1], "b", "changed");
    p[1].lease = 999;
    t.n_success = 2;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_ELEASENOTFOUND);
    assert_null(resp);
    assert_true(store_hash() == h);
    /* ignore_value on a missing key inside a nested txn. */
    p[1].lease = 0;
    OP_TXN(o[1], n);
    OP_PUT(no[0], p[2], "missing", "");
    p[2].ignore_value = true;
    n.success = pno;
    n.n_success = 1;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_EKEYNOTFOUND);
    assert_true(store_hash() == h);
    /* Key-not-found is checked before range revisions. */
    OP_RANGE(o[2], r, "a", NOEND);
    r.revision = 100;
    t.n_success = 3;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_EKEYNOTFOUND);
    p[2].ignore_value = false;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_EFUTUREREV);
    assert_true(store_hash() == h);
    /* Compacted range revision. */
    assert_int_equal(mvcc_compact(&store, 6), 0);
    h = store_hash();
    r.revision = 5;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_ECOMPACTED);
    assert_true(store_hash() == h);
    /* The branch not taken is not checked. */
    {
        Etcdserverpb__Compare c = mkcmp("a", VER, EQ, 99, NULL);
        Etcdserverpb__Compare *pc[1] = {&c};
        t.compare = pc;
        t.n_compare = 1;
        OP_DEL(o[0], d, "e", NOEND);
        t.failure = po;
        t.n_failure = 1;
        assert_int_equal(kv_txn(&kv, &t, &resp), 0);
        assert_false(resp->succeeded);
        assert_string_equal(resp_revs(resp), "D9");
        free_msg(resp);
    }
}

static void test_txn_range_revisions(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse *resp = NULL;
    Etcdserverpb__RequestOp o[1];
    Etcdserverpb__RequestOp *po[1] = {&o[0]};
    Etcdserverpb__RangeRequest r;
    (void)state;

    put("a", "1"); /* 2 */
    put("a", "2"); /* 3 */
    OP_RANGE(o[0], r, "a", NOEND);
    t.success = po;
    t.n_success = 1;
    r.revision = 2;
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_string_equal(kvs_str(resp->responses[0]->response_range->kvs,
                                resp->responses[0]->response_range->n_kvs),
                        "a=1");
    assert_int_equal(resp->header->revision, 3);
    free_msg(resp);
    /* Negative revisions below the compacted revision (-1 initially)
     * are "compacted" inside a txn, as in etcd; -1 reads the current. */
    r.revision = -2;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_ECOMPACTED);
    r.revision = -1;
    assert_int_equal(kv_txn(&kv, &t, &resp), 0);
    assert_string_equal(kvs_str(resp->responses[0]->response_range->kvs,
                                resp->responses[0]->response_range->n_kvs),
                        "a=2");
    free_msg(resp);
    r.revision = 4;
    assert_int_equal(kv_txn(&kv, &t, &resp), IK_EFUTUREREV);
}

static void test_open_txn_refused(void **state)
{
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    (void)state;

    r.key = BIN("a");
    assert_int_equal(mvcc_txn_begin(&store), 0);
    assert_int_equal(kv_put(&kv, &r, &resp), IK_EINVAL);
    assert_null(resp);
    mvcc_txn_abort(&store);
}

/* ---- Allocation failures: every error leaves the store unchanged and
 * leaks nothing (run under ASan). ---- */
static int fail_countdown;
static bool fail_after(void)
{
    if (fail_countdown == 0) {
        return true;
    }
    fail_countdown--;
    return false;
}

static void arm(int n)
{
    fail_countdown = n;
    kv_fail_alloc_hook = fail_after;
    mvcc_fail_alloc_hook = fail_after;
    btree_fail_alloc_hook = fail_after;
}

static void disarm(void)
{
    kv_fail_alloc_hook = NULL;
    mvcc_fail_alloc_hook = NULL;
    btree_fail_alloc_hook = NULL;
}

static void test_alloc_failures(void **state)
{
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnRequest nt = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__RequestOp o[4], no[1];
    Etcdserverpb__RequestOp *po[4] = {&o[0], &o[1], &o[2], &o[3]};
    Etcdserverpb__RequestOp *pno[1] = {&no[0]};
    Etcdserverpb__PutRequest p[2];
    Etcdserverpb__DeleteRangeRequest d;
    Etcdserverpb__RangeRequest r, r2;
    Etcdserverpb__Compare c = mkcmp("a", VER, GT, 0, NULL);
    Etcdserverpb__Compare *pc[1] = {&c};
    int kind, n, fails = 0;
    (void)state;

    seed_keys();
    OP_PUT(o[0], p[0], "new", "value");
    p[0].prev_kv = true;
    OP_DEL(o[1], d, "b", BIN("d"));
    d.prev_kv = true;
    OP_RANGE(o[2], r, "a", FROMKEY);
    r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    OP_TXN(o[3], nt);
    OP_PUT(no[0], p[1], "nested", "v");
    nt.success = pno;
    nt.n_success = 1;
    t.compare = pc;
    t.n_compare = 1;
    t.success = po;
    t.n_success = 4;
    etcdserverpb__range_request__init(&r2);
    r2.key = BIN("a");
    r2.range_end = FROMKEY;

    for (kind = 0; kind < 5; kind++) {
        for (n = 0;; n++) {
            uint64_t h = store_hash();
            void *resp = NULL;
            int rv;
            arm(n);
            switch (kind) {
            case 0:
                rv = kv_txn(&kv, &t, (Etcdserverpb__TxnResponse **)&resp);
                break;
            case 1:
                rv = kv_put(&kv, &p[0], (Etcdserverpb__PutResponse **)&resp);
                break;
            case 2:
                rv = kv_delete_range(
                    &kv, &d, (Etcdserverpb__DeleteRangeResponse **)&resp);
                break;
            case 3:
                rv = kv_range(&kv, &r2, (Etcdserverpb__RangeResponse **)&resp);
                break;
            default:
                rv = kv_check_txn(&t, 128);
                break;
            }
            disarm();
            if (rv == 0) {
                if (resp != NULL) {
                    free_msg(resp);
                }
                break;
            }
            assert_int_equal(rv, IK_ENOMEM);
            assert_null(resp);
            assert_true(store_hash() == h);
            fails++;
        }
        /* Undo the successful write so the next kind starts alike. */
    }
    assert_true(fails > 20);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_check_requests),
        T(test_check_txn_limits),
        T(test_check_txn_dupkeys),
        T(test_txn_read_only),
        T(test_range_forms),
        T(test_range_limit_more_count),
        T(test_range_sort),
        T(test_range_sort_ties_like_go),
        T(test_range_errors),
        T(test_put_options),
        T(test_delete_range),
        T(test_txn_compares),
        T(test_txn_ops_and_revisions),
        T(test_txn_nested),
        T(test_txn_atomic_on_failure),
        T(test_txn_range_revisions),
        T(test_open_txn_refused),
        T(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
