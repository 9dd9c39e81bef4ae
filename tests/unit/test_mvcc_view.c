/* Unit tests for mvcc views: a view encodes exactly the state at capture
 * whatever the store does afterwards (puts, deletes, txns, aborts,
 * compactions); the store written under views behaves exactly like a store
 * that never had one; views released in any order, outliving their store,
 * following a swap; allocation failures while views share the data; and
 * views encoded by real threads while the owner keeps writing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/btree.h"
#include "server/errors.h"
#include "server/mvcc.h"
#include "snapshot/snapshot.h"

#define S(x) (const uint8_t *)(x), strlen(x)
#define FROM_KEY (const uint8_t *)"\0", 1

/* Deterministic PRNG (xorshift64*). */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* ---- Helpers ---- */

struct blob {
    void *p;
    size_t len;
};

static struct blob enc_store(const struct mvcc *m)
{
    struct blob b;
    assert_int_equal(snapshot_encode(m, NULL, 0, &b.p, &b.len), 0);
    return b;
}

static struct blob enc_view(const struct mvcc_view *v)
{
    struct blob b;
    assert_int_equal(snapshot_encode_view(v, NULL, 0, &b.p, &b.len), 0);
    return b;
}

static void assert_blob_eq(struct blob a, struct blob b)
{
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.p, b.p, a.len);
}

static int hash_kv(void *arg, const struct mvcc_kv *kv)
{
    uint64_t *h = arg;
    size_t i;
    const int64_t nums[] = {kv->create_revision, kv->mod_revision, kv->version,
                            kv->lease, kv->sub};
    for (i = 0; i < kv->key_len; i++) {
        *h = (*h ^ kv->key[i]) * 1099511628211ULL;
    }
    *h = (*h ^ 0x1ff) * 1099511628211ULL;
    for (i = 0; i < kv->value_len; i++) {
        *h = (*h ^ kv->value[i]) * 1099511628211ULL;
    }
    for (i = 0; i < 5; i++) {
        *h = (*h ^ (uint64_t)nums[i]) * 1099511628211ULL;
    }
    return 0;
}

static uint64_t store_hash(const struct mvcc *m)
{
    uint64_t h = 1469598103934665603ULL;
    mvcc_walk(m, hash_kv, &h);
    h = (h ^ (uint64_t)mvcc_rev(m)) * 1099511628211ULL;
    return (h ^ (uint64_t)mvcc_compact_rev(m)) * 1099511628211ULL;
}

static int count_kv(void *arg, const struct mvcc_kv *kv)
{
    (void)kv;
    (*(size_t *)arg)++;
    return 0;
}

/* Hash of a range read (kvs, count and header revision). */
static uint64_t range_hash(const struct mvcc *m, const uint8_t *key,
                           size_t klen, const uint8_t *end, size_t elen,
                           int64_t rev, int *rv)
{
    struct mvcc_range_result r;
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    *rv = mvcc_range(m, key, klen, end, elen, rev, 0, false, &r);
    if (*rv != 0) {
        return 0;
    }
    for (i = 0; i < r.n; i++) {
        hash_kv(&h, &r.kvs[i]);
    }
    h = (h ^ r.count) * 1099511628211ULL;
    h = (h ^ (uint64_t)r.rev) * 1099511628211ULL;
    mvcc_range_result_free(&r);
    return h;
}

static size_t random_key(char *k, size_t cap, int space)
{
    return (size_t)snprintf(k, cap, "k%04d", (int)(rng() % (uint64_t)space));
}

/*
 * One random write applied the same way to every store of @ms (all in the
 * same state). Kinds: put, delete one, delete range, multi-op txn (kept or
 * aborted), compaction. Returns what the first store returned; the others
 * must agree.
 */
static int random_write(struct mvcc **ms, int n, int space)
{
    char k[32], k2[32], v[48];
    int kind = (int)(rng() % 100), i, rv0 = 0;
    int64_t at = 0;
    size_t vlen, klen;
    int nops = 1 + (int)(rng() % 6);
    bool abort_txn = rng() % 4 == 0;
    uint64_t seed = rng();

    klen = random_key(k, sizeof k, space);
    random_key(k2, sizeof k2, space);
    vlen = (size_t)snprintf(v, sizeof v, "v%llu-%0*d",
                            (unsigned long long)(rng() % 100000),
                            (int)(rng() % 24), 7);
    if (kind >= 95 && mvcc_compact_rev(ms[0]) < mvcc_rev(ms[0])) {
        int64_t lo = mvcc_compact_rev(ms[0]) + 1, hi = mvcc_rev(ms[0]);
        at = lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
    }
    for (i = 0; i < n; i++) {
        struct mvcc *m = ms[i];
        int rv;
        int64_t deleted = -1;
        if (kind < 55) {
            rv = mvcc_put(m, (const uint8_t *)k, klen, (const uint8_t *)v, vlen,
                          (int64_t)(seed % 3), NULL);
        } else if (kind < 70) {
            rv = mvcc_delete_range(m, (const uint8_t *)k, klen, NULL, 0,
                                   &deleted, NULL);
        } else if (kind < 80) {
            const char *a = strcmp(k, k2) < 0 ? k : k2;
            const char *b = a == k ? k2 : k;
            rv = mvcc_delete_range(m, S(a), S(b), &deleted, NULL);
        } else if (kind < 95) {
            uint64_t save = rng_state;
            int j;
            rng_state = seed | 1;
            rv = mvcc_txn_begin(m);
            for (j = 0; j < nops && rv == 0; j++) {
                char kk[32];
                size_t kl = random_key(kk, sizeof kk, space + 50);
                if (rng() % 4 == 0) {
                    rv = mvcc_txn_delete_range(m, (const uint8_t *)kk, kl, NULL,
                                               0, NULL);
                } else {
                    rv = mvcc_txn_put(m, (const uint8_t *)kk, kl,
                                      (const uint8_t *)v, vlen, 0);
                }
            }
            if (rv != 0 || abort_txn) {
                mvcc_txn_abort(m);
            } else {
                mvcc_txn_end(m);
            }
            rng_state = save;
        } else {
            rv = at > 0 ? mvcc_compact(m, at) : 0;
        }
        if (i == 0) {
            rv0 = rv;
        } else {
            assert_int_equal(rv, rv0);
        }
    }
    return rv0;
}

static void fill(struct mvcc *m, int keys, int versions)
{
    int i, j;
    char k[32], v[32];

    for (j = 0; j < versions; j++) {
        for (i = 0; i < keys; i++) {
            snprintf(k, sizeof k, "k%04d", i);
            snprintf(v, sizeof v, "v%d-%d", i, j);
            assert_int_equal(mvcc_put(m, S(k), S(v), 0, NULL), 0);
        }
    }
}

/* ---- Tests ---- */

/* The scenario of the brief: a view, then many writes and compactions on
 * the live store, then the view encodes exactly the bytes a synchronous
 * encode produced at capture. The live store (written through shared
 * structure) stays byte-identical to a store that never had a view. */
static void test_view_encodes_capture_state(void **state)
{
    struct mvcc live, ref;
    struct mvcc *both[2] = {&live, &ref};
    struct mvcc_view *v = NULL;
    struct blob at_capture, later, l, r;
    struct mvcc_stats sl, sr;
    int i;
    (void)state;

    rng_state = 1;
    mvcc_init(&live);
    mvcc_init(&ref);
    for (i = 0; i < 3000; i++) {
        random_write(both, 2, 400);
    }
    assert_int_equal(mvcc_view_take(&live, &v), 0);
    assert_non_null(v);
    at_capture = enc_store(&live);
    assert_int_equal(mvcc_view_rev(v), mvcc_rev(&live));
    assert_int_equal(mvcc_view_compact_rev(v), mvcc_compact_rev(&live));
    for (i = 0; i < 5000; i++) {
        random_write(both, 2, 400);
        if (i % 500 == 0) {
            int rv1, rv2;
            int64_t rev = mvcc_compact_rev(&ref) +
                          (int64_t)(rng() % (uint64_t)(mvcc_rev(&ref) -
                                                       mvcc_compact_rev(&ref)));
            uint64_t h1 = range_hash(&live, S("k0"), FROM_KEY, rev, &rv1);
            uint64_t h2 = range_hash(&ref, S("k0"), FROM_KEY, rev, &rv2);
            assert_int_equal(rv1, rv2);
            assert_true(h1 == h2);
            assert_true(store_hash(&live) == store_hash(&ref));
        }
    }
    /* A compaction above the capture revision while the view lives. */
    assert_int_equal(mvcc_compact(&live, mvcc_rev(&live) - 1), 0);
    assert_int_equal(mvcc_compact(&ref, mvcc_rev(&ref) - 1), 0);
    later = enc_view(v);
    assert_blob_eq(at_capture, later);
    {
        size_t n = 0;
        mvcc_view_walk(v, count_kv, &n);
        assert_int_equal(n, mvcc_view_walk_count(v));
    }
    l = enc_store(&live);
    r = enc_store(&ref);
    assert_blob_eq(l, r);
    /* Reclaim waits for the view: live still holds more keys and
     * versions, though no read or walk sees them. */
    mvcc_stats(&live, &sl);
    mvcc_stats(&ref, &sr);
    assert_true(sl.keys > sr.keys);
    assert_true(sl.revisions > sr.revisions);
    assert_int_equal(mvcc_walk_count(&live), sr.revisions);
    mvcc_view_release(v);
    mvcc_stats(&live, &sl);
    assert_int_equal(sl.keys, sr.keys);
    assert_int_equal(sl.revisions, sr.revisions);
    assert_false(live.compact_pending);
    free(at_capture.p);
    free(later.p);
    free(l.p);
    free(r.p);
    mvcc_close(&live);
    mvcc_close(&ref);
}

/* The view's walk gives the capture state record by record, and its count
 * matches its walk (also when a compaction was waiting at capture). */
static void test_view_walk_and_count(void **state)
{
    struct mvcc m, ref;
    struct mvcc_view *v1, *v2;
    uint64_t h_cap, h1;
    size_t n;
    (void)state;

    mvcc_init(&m);
    mvcc_init(&ref);
    fill(&m, 100, 5);
    fill(&ref, 100, 5);
    assert_int_equal(mvcc_delete_range(&m, S("k0010"), S("k0020"), NULL, NULL),
                     0);
    assert_int_equal(
        mvcc_delete_range(&ref, S("k0010"), S("k0020"), NULL, NULL), 0);
    assert_int_equal(mvcc_view_take(&m, &v1), 0);
    h_cap = store_hash(&m);
    /* Compaction while v1 lives: recorded, not applied to memory. */
    assert_int_equal(mvcc_compact(&m, 450), 0);
    assert_int_equal(mvcc_compact(&ref, 450), 0);
    assert_true(m.compact_pending);
    assert_true(store_hash(&m) == store_hash(&ref));
    {
        struct mvcc_range_result rr;
        assert_int_equal(
            mvcc_range(&m, S("k0001"), NULL, 0, 449, 0, false, &rr),
            IK_ECOMPACTED);
    }
    n = 0;
    mvcc_walk(&m, count_kv, &n);
    assert_int_equal(n, mvcc_walk_count(&m));
    /* v2 captured with the compaction pending. */
    assert_int_equal(mvcc_view_take(&m, &v2), 0);
    assert_int_equal(mvcc_view_compact_rev(v2), 450);
    n = 0;
    mvcc_view_walk(v2, count_kv, &n);
    assert_int_equal(n, mvcc_view_walk_count(v2));
    assert_int_equal(n, mvcc_walk_count(&m));
    fill(&m, 100, 1);
    fill(&ref, 100, 1);
    h1 = 1469598103934665603ULL;
    mvcc_view_walk(v1, hash_kv, &h1);
    h1 = (h1 ^ (uint64_t)mvcc_view_rev(v1)) * 1099511628211ULL;
    h1 = (h1 ^ (uint64_t)mvcc_view_compact_rev(v1)) * 1099511628211ULL;
    assert_true(h1 == h_cap);
    n = 0;
    mvcc_view_walk(v1, count_kv, &n);
    assert_int_equal(n, mvcc_view_walk_count(v1));
    assert_int_equal(n, 100 * 5 + 10);
    mvcc_view_release(v2);
    assert_true(m.compact_pending); /* v1 still shares the data */
    mvcc_view_release(v1);
    assert_false(m.compact_pending);
    {
        struct mvcc_stats st, sr;
        mvcc_stats(&m, &st);
        mvcc_stats(&ref, &sr);
        assert_int_equal(st.revisions, mvcc_walk_count(&m));
        assert_int_equal(st.revisions, sr.revisions);
        assert_int_equal(st.keys, sr.keys);
        assert_true(store_hash(&m) == store_hash(&ref));
    }
    mvcc_close(&m);
    mvcc_close(&ref);
}

static int stop_at_3(void *arg, const struct mvcc_kv *kv)
{
    int *n = arg;
    (void)kv;
    return ++*n == 3 ? 77 : 0;
}

static void test_view_walk_stops(void **state)
{
    struct mvcc m;
    struct mvcc_view *v;
    int n = 0;
    (void)state;

    mvcc_init(&m);
    fill(&m, 10, 1);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    assert_int_equal(mvcc_view_walk(v, stop_at_3, &n), 77);
    assert_int_equal(n, 3);
    mvcc_view_release(v);
    mvcc_close(&m);
}

/* Several views taken at different times, released in every order: each
 * remaining view keeps encoding its capture state, and the store matches
 * a store that never had views once all are gone. */
static void test_views_release_orders(void **state)
{
    static const int perms[24][4] = {
        {0, 1, 2, 3}, {0, 1, 3, 2}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 3, 1, 2},
        {0, 3, 2, 1}, {1, 0, 2, 3}, {1, 0, 3, 2}, {1, 2, 0, 3}, {1, 2, 3, 0},
        {1, 3, 0, 2}, {1, 3, 2, 0}, {2, 0, 1, 3}, {2, 0, 3, 1}, {2, 1, 0, 3},
        {2, 1, 3, 0}, {2, 3, 0, 1}, {2, 3, 1, 0}, {3, 0, 1, 2}, {3, 0, 2, 1},
        {3, 1, 0, 2}, {3, 1, 2, 0}, {3, 2, 0, 1}, {3, 2, 1, 0},
    };
    int p;
    (void)state;

    for (p = 0; p < 24; p++) {
        struct mvcc live, ref;
        struct mvcc *both[2] = {&live, &ref};
        struct mvcc_view *v[4];
        struct blob expect[4];
        bool alive[4];
        int i, j;

        rng_state = 100 + (uint64_t)p;
        mvcc_init(&live);
        mvcc_init(&ref);
        for (i = 0; i < 4; i++) {
            for (j = 0; j < 300; j++) {
                random_write(both, 2, 150);
            }
            assert_int_equal(mvcc_view_take(&live, &v[i]), 0);
            expect[i] = enc_store(&live);
            alive[i] = true;
        }
        for (i = 0; i < 4; i++) {
            struct blob l, r;
            for (j = 0; j < 200; j++) {
                random_write(both, 2, 150);
            }
            mvcc_view_release(v[perms[p][i]]);
            alive[perms[p][i]] = false;
            for (j = 0; j < 4; j++) {
                if (alive[j]) {
                    struct blob b = enc_view(v[j]);
                    assert_blob_eq(b, expect[j]);
                    free(b.p);
                }
            }
            l = enc_store(&live);
            r = enc_store(&ref);
            assert_blob_eq(l, r);
            free(l.p);
            free(r.p);
        }
        {
            struct mvcc_stats sl, sr;
            mvcc_stats(&live, &sl);
            mvcc_stats(&ref, &sr);
            assert_int_equal(sl.keys, sr.keys);
            assert_int_equal(sl.revisions, sr.revisions);
            assert_null(live.views);
            assert_int_equal(live.n_dead, 0);
        }
        for (i = 0; i < 4; i++) {
            free(expect[i].p);
        }
        mvcc_close(&live);
        mvcc_close(&ref);
    }
}

/* A view outlives its store (closed, or swapped away and closed, as a
 * snapshot restore does). */
static void test_view_outlives_store(void **state)
{
    struct mvcc m, other;
    struct mvcc_view *v1, *v2;
    struct blob e1, e2, b;
    (void)state;

    mvcc_init(&m);
    fill(&m, 200, 3);
    assert_int_equal(mvcc_view_take(&m, &v1), 0);
    e1 = enc_store(&m);
    fill(&m, 50, 1);
    assert_int_equal(mvcc_view_take(&m, &v2), 0);
    e2 = enc_store(&m);
    /* Restore-like: the data (with its views) moves to other. */
    mvcc_init(&other);
    mvcc_swap(&m, &other);
    assert_null(m.views);
    assert_non_null(other.views);
    assert_int_equal(mvcc_put(&m, S("fresh"), S("1"), 0, NULL), 0);
    assert_int_equal(mvcc_compact(&other, 600), 0);
    assert_true(other.compact_pending);
    mvcc_view_release(v2); /* v1 still holds the data */
    assert_true(other.compact_pending);
    mvcc_close(&other);
    b = enc_view(v1);
    assert_blob_eq(b, e1);
    free(b.p);
    mvcc_view_release(v1);
    /* m was never shared. */
    assert_int_equal(mvcc_compact(&m, 2), 0);
    assert_false(m.compact_pending);
    free(e1.p);
    free(e2.p);
    mvcc_close(&m);
}

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
    mvcc_fail_alloc_hook = fail_after;
    btree_fail_alloc_hook = fail_after;
}

static void disarm(void)
{
    mvcc_fail_alloc_hook = NULL;
    btree_fail_alloc_hook = NULL;
}

static void test_view_take_errors(void **state)
{
    struct mvcc m;
    struct mvcc_view *v = (struct mvcc_view *)1;
    struct mvcc_stats st;
    (void)state;

    mvcc_init(&m);
    fill(&m, 20, 3);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_view_take(&m, &v), IK_EINVAL);
    assert_null(v);
    mvcc_txn_abort(&m);
    arm(0);
    assert_int_equal(mvcc_view_take(&m, &v), IK_ENOMEM);
    disarm();
    assert_null(v);
    assert_null(m.views);
    /* No view was left behind: compaction applies to memory at once. */
    assert_int_equal(mvcc_compact(&m, mvcc_rev(&m)), 0);
    assert_false(m.compact_pending);
    mvcc_stats(&m, &st);
    assert_int_equal(st.revisions, 20);
    mvcc_close(&m);
}

/* Writes with allocations failing while a view shares the data: a failed
 * write changes nothing (store content, view content), and the store
 * still matches a store without views that only got the writes that
 * succeeded. */
static void test_view_alloc_failures(void **state)
{
    struct mvcc live, ref;
    struct mvcc *both[2] = {&live, &ref};
    struct mvcc_view *v = NULL;
    struct blob expect;
    int i, failed = 0, ok = 0;
    (void)state;

    rng_state = 77;
    mvcc_init(&live);
    mvcc_init(&ref);
    for (i = 0; i < 1500; i++) {
        random_write(both, 2, 300);
    }
    for (i = 0; i < 1500; i++) {
        uint64_t h_before = store_hash(&live), save;
        struct mvcc_stats s1, s2;
        int rv;
        if (i % 300 == 0) {
            /* A fresh view now and then, so there is shared data again. */
            if (v != NULL) {
                struct blob b = enc_view(v);
                assert_blob_eq(b, expect);
                free(b.p);
                free(expect.p);
                mvcc_view_release(v);
            }
            assert_int_equal(mvcc_view_take(&live, &v), 0);
            expect = enc_store(&live);
        }
        mvcc_stats(&live, &s1);
        save = rng_state;
        arm((int)(rng() % 8));
        rv = random_write(both, 1, 300);
        disarm();
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            failed++;
            assert_true(store_hash(&live) == h_before);
            mvcc_stats(&live, &s2);
            assert_int_equal(s1.keys, s2.keys);
            assert_int_equal(s1.revisions, s2.revisions);
        } else {
            /* Replay the same write on the reference store. */
            uint64_t after = rng_state;
            rng_state = save;
            rng();
            assert_int_equal(random_write(&both[1], 1, 300), 0);
            assert_int_equal(rng_state, after);
            ok++;
            assert_true(store_hash(&live) == store_hash(&ref));
        }
    }
    assert_true(failed > 50);
    assert_true(ok > 50);
    {
        struct blob b = enc_view(v), l, r;
        assert_blob_eq(b, expect);
        free(b.p);
        mvcc_view_release(v);
        l = enc_store(&live);
        r = enc_store(&ref);
        assert_blob_eq(l, r);
        free(l.p);
        free(r.p);
    }
    free(expect.p);
    mvcc_close(&live);
    mvcc_close(&ref);
}

/* A txn that created keys is aborted while a view shares the index and
 * no allocation succeeds: keys that cannot be unlinked stay as dead
 * entries that no read, walk or count sees; a put revives one correctly;
 * releasing the view reclaims the rest. */
static void test_abort_dead_keys(void **state)
{
    struct mvcc m;
    struct mvcc_view *v;
    struct blob before, after, vb;
    struct mvcc_stats st;
    struct mvcc_range_result rr;
    struct mvcc_kv kv;
    char k[32], dead[32] = "";
    int i, attempt;
    int64_t rev;
    (void)state;

    mvcc_init(&m);
    for (i = 0; i < 40000; i += 2) {
        snprintf(k, sizeof k, "k%05d", i);
        assert_int_equal(mvcc_put(&m, S(k), S("x"), 0, NULL), 0);
    }
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    before = enc_store(&m);
    rev = mvcc_rev(&m);
    /* Unlinking a new key needs a copy only when its removal borrows from
     * a node the view shares; try spots across the tree until one does. */
    for (attempt = 0; attempt < 200 && m.n_dead == 0; attempt++) {
        int base = 1 + 2 * (int)(rng() % 19990);
        assert_int_equal(mvcc_txn_begin(&m), 0);
        for (i = 0; i < 3; i++) {
            snprintf(k, sizeof k, "k%05d", base + 2 * i);
            assert_int_equal(mvcc_txn_put(&m, S(k), S("new"), 0), 0);
        }
        assert_int_equal(mvcc_put(&m, S("zz"), S("1"), 0, NULL), IK_EINVAL);
        arm(0);
        mvcc_txn_abort(&m);
        disarm();
        for (i = 0; i < 3 && m.n_dead > 0; i++) {
            snprintf(k, sizeof k, "k%05d", base + 2 * i);
            if (btree_get(&m.index, S(k)) != NULL) {
                strcpy(dead, k);
            }
        }
    }
    assert_true(m.n_dead > 0);
    assert_true(dead[0] != 0);
    assert_int_equal(mvcc_rev(&m), rev);
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 20000);
    assert_int_equal(mvcc_get(&m, S(dead), &kv), IK_ENOENT);
    assert_int_equal(mvcc_range(&m, S("k"), FROM_KEY, 0, 0, false, &rr), 0);
    assert_int_equal(rr.count, 20000);
    mvcc_range_result_free(&rr);
    assert_int_equal(mvcc_range(&m, S(dead), NULL, 0, 0, 0, false, &rr), 0);
    assert_int_equal(rr.count, 0);
    mvcc_range_result_free(&rr);
    after = enc_store(&m);
    assert_blob_eq(before, after);
    free(after.p);
    /* Deleting over a dead key writes no tombstone for it. */
    {
        int64_t deleted;
        size_t n_dead = m.n_dead;
        assert_int_equal(
            mvcc_delete_range(&m, S(dead), NULL, 0, &deleted, NULL), 0);
        assert_int_equal(deleted, 0);
        assert_int_equal(m.n_dead, n_dead);
        assert_int_equal(mvcc_rev(&m), rev);
    }
    /* Revive it: a fresh incarnation. */
    {
        size_t n_dead = m.n_dead;
        assert_int_equal(mvcc_put(&m, S(dead), S("back"), 0, NULL), 0);
        assert_int_equal(m.n_dead, n_dead - 1);
    }
    assert_int_equal(mvcc_get(&m, S(dead), &kv), 0);
    assert_int_equal(kv.version, 1);
    assert_int_equal(kv.create_revision, rev + 1);
    assert_int_equal(kv.mod_revision, rev + 1);
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 20001);
    vb = enc_view(v);
    assert_blob_eq(vb, before);
    free(vb.p);
    mvcc_view_release(v);
    assert_int_equal(m.n_dead, 0);
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 20001);
    assert_int_equal(btree_len(&m.index), 20001);
    assert_int_equal(btree_verify(&m.index), 0);
    free(before.p);
    mvcc_close(&m);
}

/* Aborts without allocation failures under a view unlink the new keys for
 * real (no dead keys). */
static void test_abort_under_view(void **state)
{
    struct mvcc m;
    struct mvcc_view *v;
    struct blob before, after;
    char k[32];
    int i;
    (void)state;

    mvcc_init(&m);
    fill(&m, 2000, 1);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    before = enc_store(&m);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    for (i = 0; i < 2000; i += 7) {
        snprintf(k, sizeof k, "k%04dx", i);
        assert_int_equal(mvcc_txn_put(&m, S(k), S("new"), 0), 0);
        snprintf(k, sizeof k, "k%04d", i);
        assert_int_equal(mvcc_txn_put(&m, S(k), S("upd"), 0), 0);
    }
    assert_int_equal(mvcc_txn_delete_range(&m, S("k0100"), S("k0200"), NULL),
                     0);
    mvcc_txn_abort(&m);
    assert_int_equal(m.n_dead, 0);
    after = enc_store(&m);
    assert_blob_eq(before, after);
    assert_int_equal(btree_verify(&m.index), 0);
    free(after.p);
    after = enc_view(v);
    assert_blob_eq(before, after);
    free(after.p);
    free(before.p);
    mvcc_view_release(v);
    mvcc_close(&m);
}

/* ---- Threads ---- */

struct encoder {
    pthread_t th;
    struct mvcc_view *v;
    bool discard; /* drop the view's data on the thread when done */
    struct blob expect;
    int rounds;
    int mismatches;
    int errors;
    volatile int done; /* read by the owner only after join, or polled */
    pthread_mutex_t mu;
};

static void *encode_main(void *arg)
{
    struct encoder *e = arg;
    int i;

    for (i = 0; i < e->rounds; i++) {
        void *p;
        size_t len;
        uint64_t h = 1469598103934665603ULL;
        if (snapshot_encode_view(e->v, NULL, 0, &p, &len) != 0) {
            e->errors++;
            continue;
        }
        if (len != e->expect.len || memcmp(p, e->expect.p, len) != 0) {
            e->mismatches++;
        }
        free(p);
        /* A plain walk too (reads every value). */
        mvcc_view_walk(e->v, hash_kv, &h);
    }
    if (e->discard) {
        mvcc_view_discard(e->v);
    }
    pthread_mutex_lock(&e->mu);
    e->done = 1;
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static bool encoder_done(struct encoder *e)
{
    bool d;
    pthread_mutex_lock(&e->mu);
    d = e->done != 0;
    pthread_mutex_unlock(&e->mu);
    return d;
}

static void encoder_start(struct encoder *e, struct mvcc_view *v,
                          struct blob expect, int rounds, bool discard)
{
    memset(e, 0, sizeof *e);
    e->v = v;
    e->discard = discard;
    e->expect = expect;
    e->rounds = rounds;
    assert_int_equal(pthread_mutex_init(&e->mu, NULL), 0);
    assert_int_equal(pthread_create(&e->th, NULL, encode_main, e), 0);
}

static void encoder_join(struct encoder *e)
{
    assert_int_equal(pthread_join(e->th, NULL), 0);
    pthread_mutex_destroy(&e->mu);
    assert_int_equal(e->errors, 0);
    assert_int_equal(e->mismatches, 0);
}

/* Two threads encode two views while the owner keeps writing (puts,
 * deletes, txns, aborts, compactions), takes and releases a third view,
 * and releases the first view as soon as its thread is done. The first
 * thread also drops its view's data itself (mvcc_view_discard(), as
 * node.c does in raft's thread pool) while the owner goes on writing over
 * the nodes and keys it frees. Run it under ASan and TSan. */
static void test_concurrent_encode(void **state)
{
    struct mvcc live, ref;
    struct mvcc *both[2] = {&live, &ref};
    struct mvcc_view *v1, *v2, *v3;
    struct encoder e1, e2;
    struct blob x1, x2;
    bool v1_alive = true;
    int writes = 0;
    (void)state;

    rng_state = 9;
    mvcc_init(&live);
    mvcc_init(&ref);
    fill(&live, 3000, 2);
    fill(&ref, 3000, 2);
    assert_int_equal(mvcc_view_take(&live, &v1), 0);
    x1 = enc_store(&live);
    for (writes = 0; writes < 500; writes++) {
        random_write(both, 2, 3500);
    }
    assert_int_equal(mvcc_view_take(&live, &v2), 0);
    x2 = enc_store(&live);
    encoder_start(&e1, v1, x1, 3, true);
    encoder_start(&e2, v2, x2, 4, false);
    while (!encoder_done(&e2) || writes < 6000) {
        random_write(both, 2, 3500);
        writes++;
        if (writes % 700 == 0) {
            struct blob b;
            assert_int_equal(mvcc_view_take(&live, &v3), 0);
            random_write(both, 2, 3500);
            b = enc_view(v3);
            free(b.p);
            mvcc_view_release(v3);
        }
        if (v1_alive && encoder_done(&e1)) {
            encoder_join(&e1);
            mvcc_view_release(v1);
            v1_alive = false;
        }
    }
    if (v1_alive) {
        encoder_join(&e1);
        mvcc_view_release(v1);
    }
    encoder_join(&e2);
    mvcc_view_release(v2);
    {
        struct blob l = enc_store(&live), r = enc_store(&ref);
        assert_blob_eq(l, r);
        free(l.p);
        free(r.p);
    }
    free(x1.p);
    free(x2.p);
    mvcc_close(&live);
    mvcc_close(&ref);
}

/* Discarding a view drops what it shares at once (writes stop copying),
 * but the store still waits for the release before reclaiming a
 * compaction; discard is idempotent and release after it is O(1). */
static void test_view_discard(void **state)
{
    struct mvcc m, ref;
    struct mvcc_view *v;
    struct mvcc_stats st, sr;
    int64_t crev;
    (void)state;

    mvcc_init(&m);
    mvcc_init(&ref);
    fill(&m, 1000, 2);
    fill(&ref, 1000, 2);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    fill(&m, 300, 1); /* copies keys and nodes the view shares */
    fill(&ref, 300, 1);
    crev = mvcc_rev(&m) - 10;
    assert_int_equal(mvcc_compact(&m, crev), 0);
    assert_int_equal(mvcc_compact(&ref, crev), 0);
    mvcc_view_discard(v);
    mvcc_view_discard(v);
    assert_int_equal(mvcc_view_rev(v), 2001);
    /* Nothing is shared any more: the index holds no copies' originals,
     * and writes go on in place. */
    assert_int_equal(btree_verify(&m.index), 0);
    fill(&m, 300, 1);
    fill(&ref, 300, 1);
    assert_true(m.compact_pending);
    mvcc_view_release(v);
    assert_false(m.compact_pending);
    mvcc_stats(&m, &st);
    mvcc_stats(&ref, &sr);
    assert_int_equal(st.keys, sr.keys);
    assert_int_equal(st.revisions, sr.revisions);
    assert_true(store_hash(&m) == store_hash(&ref));
    mvcc_close(&m);
    mvcc_close(&ref);
}

/* A view discarded (by its thread) right between the owner seeing a node
 * or key as shared and dropping its own reference to the original: the
 * owner's drop is then the last one and must free it. The allocation hooks
 * run exactly in that window, so they stand in for the other thread. */
static struct mvcc_view *discard_me;

static bool discard_in_window(void)
{
    if (discard_me != NULL) {
        mvcc_view_discard(discard_me);
        discard_me = NULL;
    }
    return false;
}

/* A delete over a range, with the view discarded (as by its thread) once
 * the delete is under way: what the delete walks must stay alive. */
static void test_discard_during_delete_range(void **state)
{
    struct mvcc m, ref;
    struct mvcc_view *v;
    int64_t d1 = 0, d2 = 0;
    (void)state;

    mvcc_init(&m);
    mvcc_init(&ref);
    fill(&m, 5000, 1);
    fill(&ref, 5000, 1);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_begin(&ref), 0);
    /* A key written earlier in the txn is deleted again below. */
    assert_int_equal(mvcc_txn_put(&m, S("k0100"), S("x"), 0), 0);
    assert_int_equal(mvcc_txn_put(&ref, S("k0100"), S("x"), 0), 0);
    discard_me = v;
    btree_fail_alloc_hook = discard_in_window;
    assert_int_equal(mvcc_txn_delete_range(&m, S("k0050"), S("k4000"), &d1), 0);
    btree_fail_alloc_hook = NULL;
    assert_null(discard_me);
    assert_int_equal(mvcc_txn_delete_range(&ref, S("k0050"), S("k4000"), &d2),
                     0);
    assert_int_equal(d1, 3950);
    assert_int_equal(d1, d2);
    {
        struct mvcc_kv kv, prev;
        size_t i, n = mvcc_txn_changes(&m);
        assert_int_equal(n, 3951);
        for (i = 0; i < n; i++) {
            bool had = mvcc_txn_change(&m, i, &kv, &prev);
            assert_true(had);
            assert_int_equal(kv.key_len, 5);
        }
    }
    /* Abort undoes it all on the right (live) key objects. */
    mvcc_txn_abort(&m);
    mvcc_txn_abort(&ref);
    assert_true(store_hash(&m) == store_hash(&ref));
    mvcc_view_release(v);
    assert_int_equal(btree_verify(&m.index), 0);
    mvcc_close(&m);
    mvcc_close(&ref);
}

/* Inside a txn, a kv read before a put on the same key stays valid until
 * the txn ends, even if the view holding the old key object is discarded
 * in between. */
static void test_kv_valid_until_txn_end(void **state)
{
    struct mvcc m;
    struct mvcc_view *v;
    struct mvcc_range_result rr;
    (void)state;

    mvcc_init(&m);
    fill(&m, 100, 1);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_range(&m, S("k0042"), NULL, 0, 0, 0, false, &rr), 0);
    assert_int_equal(rr.n, 1);
    discard_me = v;
    mvcc_fail_alloc_hook = discard_in_window;
    assert_int_equal(mvcc_txn_put(&m, S("k0042"), S("new"), 0), 0);
    mvcc_fail_alloc_hook = NULL;
    assert_null(discard_me);
    /* memcmp() here, not assert_memory_equal(): the read must happen in
     * instrumented code for ASan to see a use after free. */
    assert_int_equal(rr.kvs[0].key_len, 5);
    assert_int_equal(memcmp(rr.kvs[0].key, "k0042", 5), 0);
    assert_int_equal(memcmp(rr.kvs[0].value, "v42-0", 5), 0);
    mvcc_range_result_free(&rr);
    mvcc_txn_end(&m);
    mvcc_view_release(v);
    mvcc_close(&m);
}

static int paced;

static void count_pace(void *arg)
{
    (void)arg;
    paced++;
}

/* The paced discard calls its pacer once per MVCC_DISCARD_PACE keys it lets
 * go of: never when the view shares everything (only the root is dropped),
 * once per batch when the store rewrote every key since capture. */
static void test_view_discard_paced(void **state)
{
    struct mvcc m;
    struct mvcc_view *v;
    (void)state;

    mvcc_init(&m);
    fill(&m, 20000, 1);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    paced = 0;
    mvcc_view_discard_paced(v, count_pace, NULL);
    assert_int_equal(paced, 0);
    mvcc_view_release(v);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    fill(&m, 20000, 1);
    paced = 0;
    mvcc_view_discard_paced(v, count_pace, NULL);
    assert_int_equal(paced, 20000 / MVCC_DISCARD_PACE);
    mvcc_view_discard_paced(v, count_pace, NULL);
    assert_int_equal(paced, 20000 / MVCC_DISCARD_PACE);
    mvcc_view_release(v);
    assert_int_equal(btree_verify(&m.index), 0);
    {
        struct mvcc_stats st;
        mvcc_stats(&m, &st);
        assert_int_equal(st.keys, 20000);
        assert_int_equal(st.revisions, 40000);
    }
    mvcc_close(&m);
}

static void test_discard_mid_write(void **state)
{
    struct mvcc m, ref;
    struct mvcc_view *v;
    (void)state;

    mvcc_init(&m);
    mvcc_init(&ref);
    fill(&m, 2000, 1);
    fill(&ref, 2000, 1);
    /* Index nodes: copying the shared path (btree's node allocation). */
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    discard_me = v;
    btree_fail_alloc_hook = discard_in_window;
    assert_int_equal(mvcc_put(&m, S("k0500"), S("new"), 0, NULL), 0);
    btree_fail_alloc_hook = NULL;
    assert_null(discard_me);
    assert_int_equal(mvcc_put(&ref, S("k0500"), S("new"), 0, NULL), 0);
    mvcc_view_release(v);
    /* Key objects: k0501 shares k0500's (now private) leaf, but the
     * view's copy of that leaf still holds it; the key copy allocates. */
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    assert_int_equal(mvcc_put(&m, S("k0500"), S("again"), 0, NULL), 0);
    assert_int_equal(mvcc_put(&ref, S("k0500"), S("again"), 0, NULL), 0);
    discard_me = v;
    mvcc_fail_alloc_hook = discard_in_window;
    assert_int_equal(mvcc_put(&m, S("k0501"), S("new"), 0, NULL), 0);
    mvcc_fail_alloc_hook = NULL;
    assert_null(discard_me);
    assert_int_equal(mvcc_put(&ref, S("k0501"), S("new"), 0, NULL), 0);
    mvcc_view_release(v);
    assert_int_equal(btree_verify(&m.index), 0);
    assert_true(store_hash(&m) == store_hash(&ref));
    mvcc_close(&m);
    mvcc_close(&ref);
}

/* The raft pattern: take a view, encode it in a thread with extra
 * sections, apply writes meanwhile, release; the bytes decode to the
 * capture state with the sections intact. */
static void test_encode_view_sections(void **state)
{
    struct mvcc m, back;
    struct mvcc_view *v;
    struct snapshot_section sec[2] = {
        {.type = SNAPSHOT_SECTION_MEMBERS, .data = "members", .len = 7},
        {.type = SNAPSHOT_SECTION_META, .data = "", .len = 0},
    };
    struct snapshot_section bad[2] = {
        {.type = SNAPSHOT_SECTION_KV, .data = "x", .len = 1},
        {.type = SNAPSHOT_SECTION_META, .data = "", .len = 0},
    };
    void *buf, *sync_buf, *got;
    size_t len, sync_len, got_len;
    uint64_t h_cap;
    (void)state;

    mvcc_init(&m);
    mvcc_init(&back);
    fill(&m, 500, 2);
    assert_int_equal(mvcc_view_take(&m, &v), 0);
    h_cap = store_hash(&m);
    assert_int_equal(snapshot_encode(&m, sec, 2, &sync_buf, &sync_len), 0);
    fill(&m, 600, 1);
    assert_int_equal(mvcc_compact(&m, mvcc_rev(&m)), 0);
    assert_int_equal(snapshot_encode_view(v, sec, 2, &buf, &len), 0);
    assert_int_equal(len, sync_len);
    assert_memory_equal(buf, sync_buf, len);
    /* Errors: a KV extra section, a duplicate, allocation failure. */
    assert_int_equal(snapshot_encode_view(v, bad, 2, &got, &got_len),
                     IK_EINVAL);
    assert_null(got);
    sec[1].type = SNAPSHOT_SECTION_MEMBERS;
    assert_int_equal(snapshot_encode_view(v, sec, 2, &got, &got_len),
                     IK_EINVAL);
    sec[1].type = SNAPSHOT_SECTION_META;
    fail_countdown = 1;
    snapshot_fail_alloc_hook = fail_after;
    assert_int_equal(snapshot_encode_view(v, sec, 2, &got, &got_len),
                     IK_ENOMEM);
    snapshot_fail_alloc_hook = NULL;
    assert_null(got);
    mvcc_view_release(v);
    assert_int_equal(snapshot_decode(buf, len, &back), 0);
    assert_true(store_hash(&back) == h_cap);
    assert_int_equal(snapshot_section_get(buf, len, SNAPSHOT_SECTION_MEMBERS,
                                          &got, &got_len),
                     0);
    assert_int_equal(got_len, 7);
    assert_memory_equal(got, "members", 7);
    free(got);
    free(buf);
    free(sync_buf);
    mvcc_close(&m);
    mvcc_close(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_encodes_capture_state),
        cmocka_unit_test(test_view_walk_and_count),
        cmocka_unit_test(test_view_walk_stops),
        cmocka_unit_test(test_views_release_orders),
        cmocka_unit_test(test_view_outlives_store),
        cmocka_unit_test(test_view_take_errors),
        cmocka_unit_test(test_view_alloc_failures),
        cmocka_unit_test(test_abort_dead_keys),
        cmocka_unit_test(test_abort_under_view),
        cmocka_unit_test(test_concurrent_encode),
        cmocka_unit_test(test_view_discard),
        cmocka_unit_test(test_discard_mid_write),
        cmocka_unit_test(test_view_discard_paced),
        cmocka_unit_test(test_discard_during_delete_range),
        cmocka_unit_test(test_kv_valid_until_txn_end),
        cmocka_unit_test(test_encode_view_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
