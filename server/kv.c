/*
 * kv: etcd's KV API semantics over the MVCC store (see kv.h).
 *
 * The order of checks, the revision put in each response header, how
 * `more` and `count` come out of limit/filters/sorting and how a txn picks
 * its branches all follow etcd 3.4's apply layer; the comments below say
 * which rule each piece implements.
 */
#include "server/kv.h"

#include <zlib.h>

#include <stdlib.h>
#include <string.h>

#include "server/btree.h"
#include "server/errors.h"
#include "server/mvcc.h"

bool (*kv_fail_alloc_hook)(void) = NULL;

static void *kmalloc(size_t size)
{
    if (kv_fail_alloc_hook != NULL && kv_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(size == 0 ? 1 : size);
}

static void *kcalloc(size_t n, size_t size)
{
    if (kv_fail_alloc_hook != NULL && kv_fail_alloc_hook()) {
        return NULL;
    }
    return calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
}

/* ---- Request checks (before proposal) ---------------------------------- */

int kv_check_range(const Etcdserverpb__RangeRequest *req)
{
    return req->key.len == 0 ? IK_EEMPTYKEY : 0;
}

int kv_check_put(const Etcdserverpb__PutRequest *req)
{
    if (req->key.len == 0) {
        return IK_EEMPTYKEY;
    }
    if (req->ignore_value && req->value.len != 0) {
        return IK_EVALUEPROVIDED;
    }
    if (req->ignore_lease && req->lease != 0) {
        return IK_ELEASEPROVIDED;
    }
    return 0;
}

int kv_check_delete_range(const Etcdserverpb__DeleteRangeRequest *req)
{
    return req->key.len == 0 ? IK_EEMPTYKEY : 0;
}

static int check_txn_ops(const Etcdserverpb__TxnRequest *req, int64_t max_ops);

static int check_request_op(const Etcdserverpb__RequestOp *op, int64_t max_ops)
{
    if (op == NULL) {
        return IK_EKEYNOTFOUND;
    }
    switch (op->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        return op->request_range != NULL ? kv_check_range(op->request_range)
                                         : IK_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        return op->request_put != NULL ? kv_check_put(op->request_put)
                                       : IK_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        return op->request_delete_range != NULL
                   ? kv_check_delete_range(op->request_delete_range)
                   : IK_EKEYNOTFOUND;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        return op->request_txn != NULL ? check_txn_ops(op->request_txn, max_ops)
                                       : IK_EKEYNOTFOUND;
    default:
        /* An empty op: etcd answers "key not found". */
        return IK_EKEYNOTFOUND;
    }
}

/* etcd's op-count rule: the largest of the compare, success and failure
 * lists must fit in the budget, and a nested txn gets what is left. */
static int check_txn_ops(const Etcdserverpb__TxnRequest *req, int64_t max_ops)
{
    int64_t opc = (int64_t)req->n_compare;
    size_t i;
    int rv;

    if ((int64_t)req->n_success > opc) {
        opc = (int64_t)req->n_success;
    }
    if ((int64_t)req->n_failure > opc) {
        opc = (int64_t)req->n_failure;
    }
    if (opc > max_ops) {
        return IK_ETOOMANYOPS;
    }
    for (i = 0; i < req->n_compare; i++) {
        if (req->compare[i] == NULL || req->compare[i]->key.len == 0) {
            return IK_EEMPTYKEY;
        }
    }
    for (i = 0; i < req->n_success; i++) {
        rv = check_request_op(req->success[i], max_ops - opc);
        if (rv != 0) {
            return rv;
        }
    }
    for (i = 0; i < req->n_failure; i++) {
        rv = check_request_op(req->failure[i], max_ops - opc);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/*
 * Duplicate-key rule (etcd 3.4's checkIntervals): within one list of ops,
 * no key may be put twice and no put may fall in a range deleted at the
 * same level or in a nested txn checked before it. Puts from the two
 * branches of one nested txn may repeat each other (only one runs).
 *
 * A delete covers its single key when it has no range_end, else the keys
 * k with key <= k < range_end; etcd's interval arithmetic gives a from-key
 * delete (range_end "\0") an empty interval, so it conflicts with nothing,
 * and so do inverted ranges.
 */
struct keyset {
    const ProtobufCBinaryData **keys;
    size_t n, cap;
};

struct delset {
    const ProtobufCBinaryData **begin; /* pairs: begin, end (end may be
                                          empty: single key) */
    const ProtobufCBinaryData **end;
    size_t n, cap;
};

static bool keyset_has(const struct keyset *s, const ProtobufCBinaryData *k)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        if (btree_keycmp(s->keys[i]->data, s->keys[i]->len, k->data, k->len) ==
            0) {
            return true;
        }
    }
    return false;
}

/* Add @k unless present (a set, like etcd's map of put keys). */
static int keyset_add(struct keyset *s, const ProtobufCBinaryData *k)
{
    if (keyset_has(s, k)) {
        return 0;
    }
    if (s->n == s->cap) {
        size_t ncap = s->cap == 0 ? 8 : s->cap * 2;
        const ProtobufCBinaryData **nk = kmalloc(ncap * sizeof(*nk));
        if (nk == NULL) {
            return IK_ENOMEM;
        }
        if (s->n > 0) {
            memcpy(nk, s->keys, s->n * sizeof(*nk));
        }
        free(s->keys);
        s->keys = nk;
        s->cap = ncap;
    }
    s->keys[s->n++] = k;
    return 0;
}

static int delset_add(struct delset *s, const ProtobufCBinaryData *b,
                      const ProtobufCBinaryData *e)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap == 0 ? 8 : s->cap * 2;
        const ProtobufCBinaryData **nb = kmalloc(ncap * sizeof(*nb));
        const ProtobufCBinaryData **ne = kmalloc(ncap * sizeof(*ne));
        if (nb == NULL || ne == NULL) {
            free(nb);
            free(ne);
            return IK_ENOMEM;
        }
        if (s->n > 0) {
            memcpy(nb, s->begin, s->n * sizeof(*nb));
            memcpy(ne, s->end, s->n * sizeof(*ne));
        }
        free(s->begin);
        free(s->end);
        s->begin = nb;
        s->end = ne;
        s->cap = ncap;
    }
    s->begin[s->n] = b;
    s->end[s->n] = e;
    s->n++;
    return 0;
}

static bool delset_covers(const struct delset *s, const ProtobufCBinaryData *k)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        const ProtobufCBinaryData *b = s->begin[i], *e = s->end[i];
        if (e->len == 0) {
            if (btree_keycmp(b->data, b->len, k->data, k->len) == 0) {
                return true;
            }
        } else if (btree_keycmp(b->data, b->len, k->data, k->len) <= 0 &&
                   btree_keycmp(k->data, k->len, e->data, e->len) < 0) {
            return true;
        }
    }
    return false;
}

static void keyset_free(struct keyset *s)
{
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

static void delset_free(struct delset *s)
{
    free(s->begin);
    free(s->end);
    memset(s, 0, sizeof(*s));
}

static int check_intervals(Etcdserverpb__RequestOp *const *ops, size_t n,
                           struct keyset *puts, struct delset *dels)
{
    size_t i, j;
    int rv;

    /* This level's deletes first. */
    for (i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        const Etcdserverpb__DeleteRangeRequest *d;
        if (op == NULL ||
            op->request_case !=
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
            op->request_delete_range == NULL) {
            continue;
        }
        d = op->request_delete_range;
        rv = delset_add(dels, &d->key, &d->range_end);
        if (rv != 0) {
            return rv;
        }
    }
    /* Then nested txns, in order. */
    for (i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        const Etcdserverpb__TxnRequest *t;
        struct keyset pthen = {0}, pelse = {0};
        struct delset dthen = {0}, delse = {0};

        if (op == NULL ||
            op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
            op->request_txn == NULL) {
            continue;
        }
        t = op->request_txn;
        rv = check_intervals(t->success, t->n_success, &pthen, &dthen);
        if (rv == 0) {
            rv = check_intervals(t->failure, t->n_failure, &pelse, &delse);
        }
        for (j = 0; rv == 0 && j < pthen.n; j++) {
            if (keyset_has(puts, pthen.keys[j]) ||
                delset_covers(dels, pthen.keys[j])) {
                rv = IK_EDUPKEY;
            } else {
                rv = keyset_add(puts, pthen.keys[j]);
            }
        }
        for (j = 0; rv == 0 && j < pelse.n; j++) {
            if ((keyset_has(puts, pelse.keys[j]) &&
                 !keyset_has(&pthen, pelse.keys[j])) ||
                delset_covers(dels, pelse.keys[j])) {
                rv = IK_EDUPKEY;
            } else {
                rv = keyset_add(puts, pelse.keys[j]);
            }
        }
        /* The nested deletes join this level's and constrain the puts
         * checked after them. */
        for (j = 0; rv == 0 && j < dthen.n; j++) {
            rv = delset_add(dels, dthen.begin[j], dthen.end[j]);
        }
        for (j = 0; rv == 0 && j < delse.n; j++) {
            rv = delset_add(dels, delse.begin[j], delse.end[j]);
        }
        keyset_free(&pthen);
        keyset_free(&pelse);
        delset_free(&dthen);
        delset_free(&delse);
        if (rv != 0) {
            return rv;
        }
    }
    /* Finally this level's puts. */
    for (i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        const ProtobufCBinaryData *k;
        if (op == NULL ||
            op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
            op->request_put == NULL) {
            continue;
        }
        k = &op->request_put->key;
        if (keyset_has(puts, k) || delset_covers(dels, k)) {
            return IK_EDUPKEY;
        }
        rv = keyset_add(puts, k);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int kv_check_txn(const Etcdserverpb__TxnRequest *req, unsigned max_txn_ops)
{
    struct keyset puts = {0};
    struct delset dels = {0};
    int rv = check_txn_ops(req, (int64_t)max_txn_ops);

    if (rv != 0) {
        return rv;
    }
    rv = check_intervals(req->success, req->n_success, &puts, &dels);
    keyset_free(&puts);
    delset_free(&dels);
    if (rv != 0) {
        return rv;
    }
    rv = check_intervals(req->failure, req->n_failure, &puts, &dels);
    keyset_free(&puts);
    delset_free(&dels);
    return rv;
}

static bool ops_are_ranges(Etcdserverpb__RequestOp *const *ops, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (ops[i] == NULL ||
            ops[i]->request_case !=
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE ||
            ops[i]->request_range == NULL) {
            return false;
        }
    }
    return true;
}

bool kv_txn_is_read_only(const Etcdserverpb__TxnRequest *req)
{
    return ops_are_ranges(req->success, req->n_success) &&
           ops_are_ranges(req->failure, req->n_failure);
}

/* ---- Sorting ------------------------------------------------------------
 *
 * etcd sorts range results with Go's sort.Sort, which is not stable: keys
 * that tie on the sort target come out in an order decided by the
 * algorithm. To give the same order, this is the same algorithm as the Go
 * 1.19 runtime etcd 3.4.23 is built with (pattern-defeating quicksort with
 * insertion sort for short runs and heapsort as the fallback), written
 * against a less(i, j)/swap(i, j) pair like Go's sort.Interface.
 */
struct sorter {
    struct mvcc_kv *kvs;
    int target;
    bool reverse;
};

static int cmp_i64_sub(int64_t a, int64_t b)
{
    /* Go compares (a - b) < 0 with wrapping arithmetic. */
    int64_t d = (int64_t)((uint64_t)a - (uint64_t)b);
    return d < 0 ? -1 : (d > 0 ? 1 : 0);
}

static bool s_less_raw(const struct sorter *s, size_t i, size_t j)
{
    const struct mvcc_kv *a = &s->kvs[i], *b = &s->kvs[j];

    switch (s->target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY:
        return btree_keycmp(a->key, a->key_len, b->key, b->key_len) < 0;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
        return cmp_i64_sub(a->version, b->version) < 0;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
        return cmp_i64_sub(a->create_revision, b->create_revision) < 0;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
        return cmp_i64_sub(a->mod_revision, b->mod_revision) < 0;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
        return btree_keycmp(a->value, a->value_len, b->value, b->value_len) < 0;
    default:
        return false;
    }
}

static bool s_less(const struct sorter *s, size_t i, size_t j)
{
    return s->reverse ? s_less_raw(s, j, i) : s_less_raw(s, i, j);
}

static void s_swap(struct sorter *s, size_t i, size_t j)
{
    struct mvcc_kv t = s->kvs[i];
    s->kvs[i] = s->kvs[j];
    s->kvs[j] = t;
}

static void sort_insertion(struct sorter *s, size_t a, size_t b)
{
    size_t i, j;
    for (i = a + 1; i < b; i++) {
        for (j = i; j > a && s_less(s, j, j - 1); j--) {
            s_swap(s, j, j - 1);
        }
    }
}

static void sort_sift_down(struct sorter *s, size_t lo, size_t hi, size_t first)
{
    size_t root = lo;
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= hi) {
            return;
        }
        if (child + 1 < hi && s_less(s, first + child, first + child + 1)) {
            child++;
        }
        if (!s_less(s, first + root, first + child)) {
            return;
        }
        s_swap(s, first + root, first + child);
        root = child;
    }
}

static void sort_heap(struct sorter *s, size_t a, size_t b)
{
    size_t hi = b - a, i;

    for (i = (hi - 1) / 2 + 1; i-- > 0;) {
        sort_sift_down(s, i, hi, a);
    }
    for (i = hi; i-- > 0;) {
        s_swap(s, a, a + i);
        sort_sift_down(s, 0, i, a);
    }
}

enum { HINT_UNKNOWN, HINT_INCREASING, HINT_DECREASING };

/* Index among @a, @b, @c holding the median; counts the swaps a sorting
 * network of three would make. */
static size_t sort_median(struct sorter *s, size_t a, size_t b, size_t c,
                          int *swaps)
{
    size_t t;
    if (s_less(s, b, a)) {
        (*swaps)++;
        t = a;
        a = b;
        b = t;
    }
    if (s_less(s, c, b)) {
        (*swaps)++;
        t = b;
        b = c;
        c = t;
    }
    if (s_less(s, b, a)) {
        (*swaps)++;
        t = a;
        a = b;
        b = t;
    }
    (void)a;
    (void)c;
    return b;
}

static size_t sort_choose_pivot(struct sorter *s, size_t a, size_t b, int *hint)
{
    size_t l = b - a;
    int swaps = 0;
    size_t i = a + l / 4 * 1, j = a + l / 4 * 2, k = a + l / 4 * 3;

    if (l >= 8) {
        if (l >= 50) {
            i = sort_median(s, i - 1, i, i + 1, &swaps);
            j = sort_median(s, j - 1, j, j + 1, &swaps);
            k = sort_median(s, k - 1, k, k + 1, &swaps);
        }
        j = sort_median(s, i, j, k, &swaps);
    }
    if (swaps == 0) {
        *hint = HINT_INCREASING;
    } else if (swaps == 12) {
        *hint = HINT_DECREASING;
    } else {
        *hint = HINT_UNKNOWN;
    }
    return j;
}

static void sort_reverse_range(struct sorter *s, size_t a, size_t b)
{
    size_t i = a, j = b - 1;
    while (i < j) {
        s_swap(s, i, j);
        i++;
        j--;
    }
}

/* Fix a few out-of-order pairs; true if [a, b) ends up sorted. */
static bool sort_partial_insertion(struct sorter *s, size_t a, size_t b)
{
    size_t i = a + 1, step, j;

    for (step = 0; step < 5; step++) {
        while (i < b && !s_less(s, i, i - 1)) {
            i++;
        }
        if (i == b) {
            return true;
        }
        if (b - a < 50) {
            return false;
        }
        s_swap(s, i, i - 1);
        if (i - a >= 2) {
            for (j = i - 1; j >= 1; j--) {
                if (!s_less(s, j, j - 1)) {
                    break;
                }
                s_swap(s, j, j - 1);
            }
        }
        if (b - i >= 2) {
            for (j = i + 1; j < b; j++) {
                if (!s_less(s, j, j - 1)) {
                    break;
                }
                s_swap(s, j, j - 1);
            }
        }
    }
    return false;
}

static unsigned bit_len(size_t x)
{
    unsigned n = 0;
    while (x != 0) {
        n++;
        x >>= 1;
    }
    return n;
}

static void sort_break_patterns(struct sorter *s, size_t a, size_t b)
{
    size_t length = b - a, idx;
    uint64_t r = length;
    size_t modulus;

    if (length < 8) {
        return;
    }
    modulus = (size_t)1 << bit_len(length);
    for (idx = a + (length / 4) * 2 - 1; idx <= a + (length / 4) * 2 + 1;
         idx++) {
        size_t other;
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        other = (size_t)r & (modulus - 1);
        if (other >= length) {
            other -= length;
        }
        s_swap(s, idx, a + other);
    }
}

/* Partition [a, b) around the element at @pivot; returns its final index.
 * *already tells whether nothing had to move. */
static size_t sort_partition(struct sorter *s, size_t a, size_t b, size_t pivot,
                             bool *already)
{
    size_t i, j;

    s_swap(s, a, pivot);
    i = a + 1;
    j = b - 1;
    while (i <= j && s_less(s, i, a)) {
        i++;
    }
    while (i <= j && !s_less(s, j, a)) {
        j--;
    }
    if (i > j) {
        s_swap(s, j, a);
        *already = true;
        return j;
    }
    s_swap(s, i, j);
    i++;
    j--;
    for (;;) {
        while (i <= j && s_less(s, i, a)) {
            i++;
        }
        while (i <= j && !s_less(s, j, a)) {
            j--;
        }
        if (i > j) {
            break;
        }
        s_swap(s, i, j);
        i++;
        j--;
    }
    s_swap(s, j, a);
    *already = false;
    return j;
}

/* Partition [a, b), which has nothing smaller than the pivot, into the
 * elements equal to it followed by the greater ones; returns the split. */
static size_t sort_partition_equal(struct sorter *s, size_t a, size_t b,
                                   size_t pivot)
{
    size_t i, j;

    s_swap(s, a, pivot);
    i = a + 1;
    j = b - 1;
    for (;;) {
        while (i <= j && !s_less(s, a, i)) {
            i++;
        }
        while (i <= j && s_less(s, a, j)) {
            j--;
        }
        if (i > j) {
            break;
        }
        s_swap(s, i, j);
        i++;
        j--;
    }
    return i;
}

static void sort_pdq(struct sorter *s, size_t a, size_t b, unsigned limit)
{
    bool balanced = true, partitioned = true;

    for (;;) {
        size_t length = b - a, pivot, mid;
        int hint;
        bool already;

        if (length <= 12) {
            sort_insertion(s, a, b);
            return;
        }
        if (limit == 0) {
            sort_heap(s, a, b);
            return;
        }
        if (!balanced) {
            sort_break_patterns(s, a, b);
            limit--;
        }
        pivot = sort_choose_pivot(s, a, b, &hint);
        if (hint == HINT_DECREASING) {
            sort_reverse_range(s, a, b);
            pivot = (b - 1) - (pivot - a);
            hint = HINT_INCREASING;
        }
        if (balanced && partitioned && hint == HINT_INCREASING &&
            sort_partial_insertion(s, a, b)) {
            return;
        }
        if (a > 0 && !s_less(s, a - 1, pivot)) {
            a = sort_partition_equal(s, a, b, pivot);
            continue;
        }
        mid = sort_partition(s, a, b, pivot, &already);
        partitioned = already;
        if (mid - a < b - mid) {
            balanced = mid - a >= length / 8;
            sort_pdq(s, a, mid, limit);
            a = mid + 1;
        } else {
            balanced = b - mid >= length / 8;
            sort_pdq(s, mid + 1, b, limit);
            b = mid;
        }
    }
}

static void sort_kvs(struct mvcc_kv *kvs, size_t n, int target, bool reverse)
{
    struct sorter s = {kvs, target, reverse};
    if (n > 1) {
        sort_pdq(&s, 0, n, bit_len(n));
    }
}

/* ---- Response building --------------------------------------------------
 * Everything is malloc'ed so protobuf_c_message_free_unpacked(msg, NULL)
 * frees it; a partially built response is always consistent (counts match
 * the pointers set) so the same call cleans up after a failure. */

static Etcdserverpb__ResponseHeader *new_header(int64_t rev)
{
    Etcdserverpb__ResponseHeader *h = kmalloc(sizeof(*h));
    if (h != NULL) {
        etcdserverpb__response_header__init(h);
        h->revision = rev;
    }
    return h;
}

static int bin_dup(ProtobufCBinaryData *dst, const uint8_t *p, size_t n)
{
    dst->len = 0;
    dst->data = NULL;
    if (n == 0) {
        return 0;
    }
    dst->data = kmalloc(n);
    if (dst->data == NULL) {
        return IK_ENOMEM;
    }
    memcpy(dst->data, p, n);
    dst->len = n;
    return 0;
}

static Mvccpb__KeyValue *kv_to_pb(const struct mvcc_kv *kv, bool keys_only)
{
    Mvccpb__KeyValue *pb = kmalloc(sizeof(*pb));

    if (pb == NULL) {
        return NULL;
    }
    mvccpb__key_value__init(pb);
    pb->create_revision = kv->create_revision;
    pb->mod_revision = kv->mod_revision;
    pb->version = kv->version;
    pb->lease = kv->lease;
    if (bin_dup(&pb->key, kv->key, kv->key_len) != 0 ||
        (!keys_only && bin_dup(&pb->value, kv->value, kv->value_len) != 0)) {
        protobuf_c_message_free_unpacked(&pb->base, NULL);
        return NULL;
    }
    return pb;
}

/* Fill (*arr, *n) with copies of @kvs. */
static int kvs_to_pb(const struct mvcc_kv *kvs, size_t nkvs, bool keys_only,
                     Mvccpb__KeyValue ***arr, size_t *n)
{
    size_t i;

    *n = 0;
    *arr = NULL;
    if (nkvs == 0) {
        return 0;
    }
    *arr = kcalloc(nkvs, sizeof(**arr));
    if (*arr == NULL) {
        return IK_ENOMEM;
    }
    for (i = 0; i < nkvs; i++) {
        (*arr)[i] = kv_to_pb(&kvs[i], keys_only);
        if ((*arr)[i] == NULL) {
            return IK_ENOMEM;
        }
        (*n)++;
    }
    return 0;
}

static bool lease_exists(const struct kv *kv, int64_t id)
{
    return kv->lease_exists != NULL && kv->lease_exists(kv->lease_data, id);
}

/* ---- Range ------------------------------------------------------------- */

static void prune(struct mvcc_kv *kvs, size_t *n, int64_t bound, bool mod,
                  bool is_max)
{
    size_t i, j = 0;
    for (i = 0; i < *n; i++) {
        int64_t v = mod ? kvs[i].mod_revision : kvs[i].create_revision;
        bool drop = is_max ? v > bound : v < bound;
        if (!drop) {
            kvs[j++] = kvs[i];
        }
    }
    *n = j;
}

/* etcd's applierV3backend.Range, against the store's current view (inside
 * an open write txn: the txn's view). */
static int do_range(struct kv *kv, const Etcdserverpb__RangeRequest *req,
                    Etcdserverpb__RangeResponse **out)
{
    struct mvcc_range_result rr;
    Etcdserverpb__RangeResponse *resp;
    int64_t limit = req->limit;
    int order = req->sort_order;
    int rv;

    /* Sorting or filtering needs every key; otherwise fetch one more than
     * the limit to learn whether there are more. */
    if (req->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE ||
        req->min_mod_revision != 0 || req->max_mod_revision != 0 ||
        req->min_create_revision != 0 || req->max_create_revision != 0) {
        limit = 0;
    }
    if (limit > 0 && limit < INT64_MAX) {
        limit++;
    }
    if (limit < 0) {
        limit = 0;
    }
    rv = mvcc_range(kv->store, req->key.data, req->key.len, req->range_end.data,
                    req->range_end.len, req->revision, (size_t)limit,
                    req->count_only, &rr);
    if (rv != 0) {
        return rv;
    }
    if (req->max_mod_revision != 0) {
        prune(rr.kvs, &rr.n, req->max_mod_revision, true, true);
    }
    if (req->min_mod_revision != 0) {
        prune(rr.kvs, &rr.n, req->min_mod_revision, true, false);
    }
    if (req->max_create_revision != 0) {
        prune(rr.kvs, &rr.n, req->max_create_revision, false, true);
    }
    if (req->min_create_revision != 0) {
        prune(rr.kvs, &rr.n, req->min_create_revision, false, false);
    }
    /* Results come sorted by key; any other target sorts ascending unless
     * told otherwise. */
    if (req->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE) {
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    }
    if (order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ||
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND) {
        sort_kvs(rr.kvs, rr.n, req->sort_target,
                 order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
    }

    resp = kmalloc(sizeof(*resp));
    if (resp == NULL) {
        mvcc_range_result_free(&rr);
        return IK_ENOMEM;
    }
    etcdserverpb__range_response__init(resp);
    if (req->limit > 0 && rr.n > (uint64_t)req->limit) {
        rr.n = (size_t)req->limit;
        resp->more = true;
    }
    resp->count = (int64_t)rr.count;
    resp->header = new_header(rr.rev);
    if (resp->header == NULL || kvs_to_pb(rr.kvs, rr.n, req->keys_only,
                                          &resp->kvs, &resp->n_kvs) != 0) {
        mvcc_range_result_free(&rr);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return IK_ENOMEM;
    }
    mvcc_range_result_free(&rr);
    *out = resp;
    return 0;
}

int kv_range(struct kv *kv, const Etcdserverpb__RangeRequest *req,
             Etcdserverpb__RangeResponse **resp)
{
    return do_range(kv, req, resp);
}

/* ---- Put / DeleteRange (inside an open mvcc txn) ----------------------- */

static int do_put(struct kv *kv, const Etcdserverpb__PutRequest *req,
                  Etcdserverpb__PutResponse **out)
{
    Etcdserverpb__PutResponse *resp;
    struct mvcc_kv prev;
    bool has_prev = false;
    const uint8_t *val = req->value.data;
    size_t vlen = req->value.len;
    int64_t lease = req->lease;
    int rv;

    if (req->ignore_value || req->ignore_lease || req->prev_kv) {
        has_prev = mvcc_get(kv->store, req->key.data, req->key.len, &prev) == 0;
    }
    if ((req->ignore_value || req->ignore_lease) && !has_prev) {
        return IK_EKEYNOTFOUND;
    }
    if (req->ignore_value) {
        val = prev.value;
        vlen = prev.value_len;
    }
    if (req->ignore_lease) {
        lease = prev.lease;
    }
    resp = kmalloc(sizeof(*resp));
    if (resp == NULL) {
        return IK_ENOMEM;
    }
    etcdserverpb__put_response__init(resp);
    resp->header = new_header(0);
    if (resp->header == NULL) {
        rv = IK_ENOMEM;
        goto err;
    }
    if (req->prev_kv && has_prev) {
        resp->prev_kv = kv_to_pb(&prev, false);
        if (resp->prev_kv == NULL) {
            rv = IK_ENOMEM;
            goto err;
        }
    }
    /* The previous version stays in the store, so @val stays valid. */
    rv = mvcc_txn_put(kv->store, req->key.data, req->key.len, val, vlen, lease);
    if (rv != 0) {
        goto err;
    }
    resp->header->revision = mvcc_rev(kv->store) + 1;
    *out = resp;
    return 0;
err:
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rv;
}

static int do_delete(struct kv *kv, const Etcdserverpb__DeleteRangeRequest *req,
                     Etcdserverpb__DeleteRangeResponse **out)
{
    Etcdserverpb__DeleteRangeResponse *resp;
    int64_t deleted = 0;
    int rv;

    resp = kmalloc(sizeof(*resp));
    if (resp == NULL) {
        return IK_ENOMEM;
    }
    etcdserverpb__delete_range_response__init(resp);
    resp->header = new_header(0);
    if (resp->header == NULL) {
        rv = IK_ENOMEM;
        goto err;
    }
    if (req->prev_kv) {
        struct mvcc_range_result rr;
        rv = mvcc_range(kv->store, req->key.data, req->key.len,
                        req->range_end.data, req->range_end.len, 0, 0, false,
                        &rr);
        if (rv != 0) {
            goto err;
        }
        rv = kvs_to_pb(rr.kvs, rr.n, false, &resp->prev_kvs, &resp->n_prev_kvs);
        mvcc_range_result_free(&rr);
        if (rv != 0) {
            goto err;
        }
    }
    rv = mvcc_txn_delete_range(kv->store, req->key.data, req->key.len,
                               req->range_end.data, req->range_end.len,
                               &deleted);
    if (rv != 0) {
        goto err;
    }
    resp->deleted = deleted;
    /* etcd: the txn's revision once it changed something, else the
     * current one. */
    resp->header->revision = mvcc_txn_rev(kv->store);
    *out = resp;
    return 0;
err:
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rv;
}

int kv_put(struct kv *kv, const Etcdserverpb__PutRequest *req,
           Etcdserverpb__PutResponse **resp)
{
    int rv;

    if (req->lease != 0 && !lease_exists(kv, req->lease)) {
        return IK_ELEASENOTFOUND;
    }
    rv = mvcc_txn_begin(kv->store);
    if (rv != 0) {
        return rv;
    }
    rv = do_put(kv, req, resp);
    if (rv != 0) {
        mvcc_txn_abort(kv->store);
        return rv;
    }
    mvcc_txn_end(kv->store);
    return 0;
}

int kv_delete_range(struct kv *kv, const Etcdserverpb__DeleteRangeRequest *req,
                    Etcdserverpb__DeleteRangeResponse **resp)
{
    int rv = mvcc_txn_begin(kv->store);

    if (rv != 0) {
        return rv;
    }
    rv = do_delete(kv, req, resp);
    if (rv != 0) {
        mvcc_txn_abort(kv->store);
        return rv;
    }
    mvcc_txn_end(kv->store);
    return 0;
}

/* ---- Txn --------------------------------------------------------------- */

/* The branch every (nested) txn takes, decided against the store before
 * the txn writes anything, in pre-order like etcd's txnPath. */
struct txn_path {
    bool *taken;
    size_t n, cap;
};

static int compare_one(struct kv *kv, const Etcdserverpb__Compare *c, bool *ok);

static int compare_kv(const Etcdserverpb__Compare *c, const struct mvcc_kv *kv)
{
    int result = 0;
    int64_t want = 0;

    switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
        const uint8_t *v = NULL;
        size_t vlen = 0;
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) {
            v = c->value.data;
            vlen = c->value.len;
        }
        result = btree_keycmp(kv->value, kv->value_len, v, vlen);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        if (c->target_union_case ==
            ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION) {
            want = c->create_revision;
        }
        result = kv->create_revision < want ? -1 : kv->create_revision > want;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        if (c->target_union_case ==
            ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION) {
            want = c->mod_revision;
        }
        result = kv->mod_revision < want ? -1 : kv->mod_revision > want;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        if (c->target_union_case ==
            ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION) {
            want = c->version;
        }
        result = kv->version < want ? -1 : kv->version > want;
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE) {
            want = c->lease;
        }
        result = kv->lease < want ? -1 : kv->lease > want;
        break;
    default:
        break;
    }
    switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
        return result == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
        return result != 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
        return result > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
        return result < 0;
    default:
        return true;
    }
}

/* etcd's applyCompare: every key of the range must satisfy the compare; an
 * empty range compares a zero KeyValue, except that a VALUE compare on
 * missing keys always fails. */
static int compare_one(struct kv *kv, const Etcdserverpb__Compare *c, bool *ok)
{
    struct mvcc_range_result rr;
    size_t i;
    int rv;

    *ok = false;
    if (c == NULL) {
        return 0;
    }
    rv = mvcc_range(kv->store, c->key.data, c->key.len, c->range_end.data,
                    c->range_end.len, 0, 0, false, &rr);
    if (rv == IK_ENOMEM) {
        return rv;
    }
    if (rv != 0) {
        return 0;
    }
    if (rr.n == 0) {
        struct mvcc_kv zero;
        memset(&zero, 0, sizeof(zero));
        *ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE &&
              compare_kv(c, &zero);
    } else {
        *ok = true;
        for (i = 0; i < rr.n && *ok; i++) {
            *ok = compare_kv(c, &rr.kvs[i]);
        }
    }
    mvcc_range_result_free(&rr);
    return 0;
}

static int path_push(struct txn_path *p, bool v)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap == 0 ? 8 : p->cap * 2;
        bool *nt = kmalloc(ncap * sizeof(*nt));
        if (nt == NULL) {
            return IK_ENOMEM;
        }
        if (p->n > 0) {
            memcpy(nt, p->taken, p->n * sizeof(*nt));
        }
        free(p->taken);
        p->taken = nt;
        p->cap = ncap;
    }
    p->taken[p->n++] = v;
    return 0;
}

static int compute_path(struct kv *kv, const Etcdserverpb__TxnRequest *req,
                        struct txn_path *p)
{
    Etcdserverpb__RequestOp *const *ops;
    size_t n, i;
    bool ok = true;
    int rv;

    for (i = 0; i < req->n_compare && ok; i++) {
        rv = compare_one(kv, req->compare[i], &ok);
        if (rv != 0) {
            return rv;
        }
    }
    rv = path_push(p, ok);
    if (rv != 0) {
        return rv;
    }
    ops = ok ? req->success : req->failure;
    n = ok ? req->n_success : req->n_failure;
    for (i = 0; i < n; i++) {
        if (ops[i] != NULL &&
            ops[i]->request_case ==
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            ops[i]->request_txn != NULL) {
            rv = compute_path(kv, ops[i]->request_txn, p);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static void branch(const Etcdserverpb__TxnRequest *req, bool taken,
                   Etcdserverpb__RequestOp *const **ops, size_t *n)
{
    *ops = taken ? req->success : req->failure;
    *n = taken ? req->n_success : req->n_failure;
}

/* etcd's checkRequests with checkRequestPut (@puts) or checkRequestRange,
 * over the taken branches, against the store before the txn. */
static int check_taken(struct kv *kv, const Etcdserverpb__TxnRequest *req,
                       const struct txn_path *p, size_t *pos, bool puts)
{
    Etcdserverpb__RequestOp *const *ops;
    size_t n, i;
    int rv;

    branch(req, p->taken[(*pos)++], &ops, &n);
    for (i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        if (op == NULL) {
            continue;
        }
        if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            op->request_txn != NULL) {
            rv = check_taken(kv, op->request_txn, p, pos, puts);
            if (rv != 0) {
                return rv;
            }
        } else if (puts &&
                   op->request_case ==
                       ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT &&
                   op->request_put != NULL) {
            const Etcdserverpb__PutRequest *r = op->request_put;
            struct mvcc_kv cur;
            if ((r->ignore_value || r->ignore_lease) &&
                mvcc_get(kv->store, r->key.data, r->key.len, &cur) != 0) {
                return IK_EKEYNOTFOUND;
            }
            if (r->lease != 0 && !lease_exists(kv, r->lease)) {
                return IK_ELEASENOTFOUND;
            }
        } else if (!puts &&
                   op->request_case ==
                       ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE &&
                   op->request_range != NULL) {
            int64_t rev = op->request_range->revision;
            if (rev == 0) {
                continue;
            }
            if (rev > mvcc_rev(kv->store)) {
                return IK_EFUTUREREV;
            }
            if (rev < mvcc_compact_rev(kv->store)) {
                return IK_ECOMPACTED;
            }
        }
    }
    return 0;
}

static int apply_txn(struct kv *kv, const Etcdserverpb__TxnRequest *req,
                     const struct txn_path *p, size_t *pos,
                     Etcdserverpb__TxnResponse *resp)
{
    Etcdserverpb__RequestOp *const *ops;
    size_t n, i;
    bool taken = p->taken[(*pos)++];
    int rv;

    resp->succeeded = taken;
    branch(req, taken, &ops, &n);
    if (n == 0) {
        return 0;
    }
    resp->responses = kcalloc(n, sizeof(*resp->responses));
    if (resp->responses == NULL) {
        return IK_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        Etcdserverpb__ResponseOp *r = kmalloc(sizeof(*r));

        if (r == NULL) {
            return IK_ENOMEM;
        }
        etcdserverpb__response_op__init(r);
        resp->responses[resp->n_responses++] = r;
        if (op == NULL) {
            continue;
        }
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            if (op->request_range == NULL) {
                break;
            }
            rv = do_range(kv, op->request_range, &r->response_range);
            if (rv != 0) {
                return rv;
            }
            r->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            if (op->request_put == NULL) {
                break;
            }
            rv = do_put(kv, op->request_put, &r->response_put);
            if (rv != 0) {
                return rv;
            }
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            if (op->request_delete_range == NULL) {
                break;
            }
            rv = do_delete(kv, op->request_delete_range,
                           &r->response_delete_range);
            if (rv != 0) {
                return rv;
            }
            r->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
            Etcdserverpb__TxnResponse *sub;
            if (op->request_txn == NULL) {
                break;
            }
            sub = kmalloc(sizeof(*sub));
            if (sub == NULL) {
                return IK_ENOMEM;
            }
            etcdserverpb__txn_response__init(sub);
            r->response_txn = sub;
            r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            /* etcd leaves a nested txn's header empty. */
            sub->header = new_header(0);
            if (sub->header == NULL) {
                return IK_ENOMEM;
            }
            rv = apply_txn(kv, op->request_txn, p, pos, sub);
            if (rv != 0) {
                return rv;
            }
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

int kv_txn(struct kv *kv, const Etcdserverpb__TxnRequest *req,
           Etcdserverpb__TxnResponse **out)
{
    struct txn_path path = {0};
    Etcdserverpb__TxnResponse *resp = NULL;
    bool write = !kv_txn_is_read_only(req);
    size_t pos;
    int rv;

    rv = compute_path(kv, req, &path);
    if (rv != 0) {
        goto out;
    }
    if (write) {
        pos = 0;
        rv = check_taken(kv, req, &path, &pos, true);
        if (rv != 0) {
            goto out;
        }
    }
    pos = 0;
    rv = check_taken(kv, req, &path, &pos, false);
    if (rv != 0) {
        goto out;
    }
    resp = kmalloc(sizeof(*resp));
    if (resp == NULL) {
        rv = IK_ENOMEM;
        goto out;
    }
    etcdserverpb__txn_response__init(resp);
    resp->header = new_header(0);
    if (resp->header == NULL) {
        rv = IK_ENOMEM;
        goto out;
    }
    if (write) {
        rv = mvcc_txn_begin(kv->store);
        if (rv != 0) {
            goto out;
        }
    }
    pos = 0;
    rv = apply_txn(kv, req, &path, &pos, resp);
    if (rv != 0) {
        if (write) {
            mvcc_txn_abort(kv->store);
        }
        goto out;
    }
    resp->header->revision = mvcc_txn_rev(kv->store);
    if (write) {
        mvcc_txn_end(kv->store);
    }
out:
    free(path.taken);
    if (rv != 0) {
        if (resp != NULL) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        return rv;
    }
    *out = resp;
    return 0;
}

/* ---- Compact ----------------------------------------------------------- */

int kv_compact(struct kv *kv, const Etcdserverpb__CompactionRequest *req,
               Etcdserverpb__CompactionResponse **out)
{
    Etcdserverpb__CompactionResponse *resp;
    int rv = mvcc_compact(kv->store, req->revision);

    if (rv != 0) {
        return rv;
    }
    /* The compaction is done; an allocation failure from here on still
     * reports the error, the store stays compacted (as etcd, where the
     * compaction is applied before the response is built). */
    resp = kmalloc(sizeof(*resp));
    if (resp == NULL) {
        return IK_ENOMEM;
    }
    etcdserverpb__compaction_response__init(resp);
    resp->header = new_header(mvcc_rev(kv->store));
    if (resp->header == NULL) {
        free(resp);
        return IK_ENOMEM;
    }
    *out = resp;
    return 0;
}

/* --- hash ---------------------------------------------------------------- */

struct hash_state {
    int64_t rev;
    uLong crc;
};

static void hash_i64(struct hash_state *h, int64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    }
    h->crc = crc32(h->crc, b, sizeof b);
}

static int hash_one(void *arg, const struct mvcc_kv *kv)
{
    struct hash_state *h = arg;

    if (kv->mod_revision > h->rev) {
        return 0;
    }
    hash_i64(h, (int64_t)kv->key_len);
    h->crc = crc32(h->crc, kv->key, (uInt)kv->key_len);
    hash_i64(h, kv->mod_revision);
    hash_i64(h, kv->sub);
    hash_i64(h, kv->create_revision);
    hash_i64(h, kv->version);
    hash_i64(h, kv->lease);
    hash_i64(h, (int64_t)kv->value_len);
    if (kv->value_len > 0) {
        h->crc = crc32(h->crc, kv->value, (uInt)kv->value_len);
    }
    return 0;
}

int kv_hash(struct kv *kv, int64_t rev, uint32_t *hash, int64_t *compact_rev)
{
    struct hash_state h;
    int64_t cur = mvcc_rev(kv->store);
    int64_t compacted = mvcc_compact_rev(kv->store);

    if (rev <= 0) {
        rev = cur;
    }
    if (rev > cur) {
        return IK_EFUTUREREV;
    }
    if (rev < compacted) {
        return IK_ECOMPACTED;
    }
    h.rev = rev;
    h.crc = crc32(0L, Z_NULL, 0);
    mvcc_walk(kv->store, hash_one, &h);
    *hash = (uint32_t)h.crc;
    *compact_rev = compacted;
    return 0;
}
