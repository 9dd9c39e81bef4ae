/* Unit tests for server/btree: random operations against a sorted-array
 * model, range scans, byte order, allocation failures, and clones
 * (copy-on-write sharing, item reference counts, failures while shared). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/btree.h"
#include "server/errors.h"

/* An item: its key plus a payload to tell replaced items apart. */
struct item {
    size_t len;
    int payload;
    int ref; /* references held by trees (clone tests only) */
    uint8_t key[16];
};

static const uint8_t *item_key(const void *p, size_t *len)
{
    const struct item *it = p;
    *len = it->len;
    return it->key;
}

static struct item *item_new(const void *key, size_t len, int payload)
{
    struct item *it = malloc(sizeof(*it));
    assert_non_null(it);
    assert_true(len <= sizeof(it->key));
    memcpy(it->key, key, len);
    it->len = len;
    it->payload = payload;
    it->ref = 1;
    return it;
}

static int n_freed;

static void item_free(void *p)
{
    n_freed++;
    free(p);
}

/* Deterministic PRNG (xorshift64*), so every run does the same ops. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Random short key over a small alphabet so prefixes and collisions are
 * frequent: length 0..4, bytes from {0x00, 'a', 'b', 0xff}. */
static size_t random_key(uint8_t *k)
{
    static const uint8_t alpha[] = {0x00, 'a', 'b', 0xff};
    size_t len = rng() % 5, i;
    for (i = 0; i < len; i++) {
        k[i] = alpha[rng() % 4];
    }
    return len;
}

/* ---- The model: a sorted array of items. ---- */
struct model {
    struct item **items;
    size_t n;
};

static size_t model_lower(const struct model *m, const void *key, size_t len,
                          bool *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = btree_keycmp(m->items[mid]->key, m->items[mid]->len, key, len);
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < m->n &&
             btree_keycmp(m->items[lo]->key, m->items[lo]->len, key, len) == 0;
    return lo;
}

static void check_tree_equals_model(const struct btree *t,
                                    const struct model *m)
{
    struct btree_iter it;
    size_t i = 0;
    void *p;

    assert_int_equal(btree_len(t), m->n);
    assert_int_equal(btree_verify(t), 0);
    btree_iter_seek(&it, t, NULL, 0);
    while ((p = btree_iter_next(&it)) != NULL) {
        assert_true(i < m->n);
        assert_ptr_equal(p, m->items[i]);
        i++;
    }
    assert_int_equal(i, m->n);
}

static void test_keycmp_order(void **state)
{
    (void)state;
    assert_true(btree_keycmp("", 0, "", 0) == 0);
    assert_true(btree_keycmp("", 0, "\0", 1) < 0);
    assert_true(btree_keycmp("a", 1, "a\0", 2) < 0);
    assert_true(btree_keycmp("a\0", 2, "ab", 2) < 0);
    assert_true(btree_keycmp("ab", 2, "b", 1) < 0);
    assert_true(btree_keycmp("b", 1, "ab", 2) > 0);
    assert_true(btree_keycmp("\x7f", 1, "\x80", 1) < 0); /* unsigned bytes */
    assert_true(btree_keycmp("\xff", 1, "\xff\x00", 2) < 0);
    assert_true(btree_keycmp("abc", 3, "abc", 3) == 0);
}

static void test_empty(void **state)
{
    struct btree t;
    struct btree_iter it;
    (void)state;

    btree_init(&t, item_key);
    assert_int_equal(btree_len(&t), 0);
    assert_null(btree_get(&t, "a", 1));
    assert_null(btree_delete(&t, "a", 1));
    btree_iter_seek(&it, &t, "a", 1);
    assert_null(btree_iter_next(&it));
    btree_iter_seek(&it, &t, NULL, 0);
    assert_null(btree_iter_next(&it));
    btree_close(&t, item_free);
}

static void test_insert_replace_get(void **state)
{
    struct btree t;
    struct item *a = item_new("a", 1, 1), *a2 = item_new("a", 1, 2);
    struct item *empty = item_new("", 0, 3);
    void *old = (void *)1;
    (void)state;

    btree_init(&t, item_key);
    assert_int_equal(btree_insert(&t, a, &old), 0);
    assert_null(old);
    assert_int_equal(btree_insert(&t, empty, &old), 0);
    assert_null(old);
    assert_int_equal(btree_len(&t), 2);
    assert_int_equal(btree_insert(&t, a2, &old), 0);
    assert_ptr_equal(old, a);
    free(a);
    assert_int_equal(btree_len(&t), 2);
    assert_ptr_equal(btree_get(&t, "a", 1), a2);
    assert_ptr_equal(btree_get(&t, "", 0), empty);
    assert_null(btree_get(&t, "a\0", 2));
    assert_null(btree_get(&t, "b", 1));
    n_freed = 0;
    btree_close(&t, item_free);
    assert_int_equal(n_freed, 2);
    assert_int_equal(btree_len(&t), 0);
}

/* Thousands of random inserts and deletes, compared with the model after
 * each batch; every lookup checked. */
static void run_random(uint64_t seed, int ops, int key_space)
{
    struct btree t;
    struct model m = {NULL, 0};
    int op;

    rng_state = seed;
    btree_init(&t, item_key);
    m.items = calloc((size_t)key_space + 1, sizeof(*m.items));
    assert_non_null(m.items);

    for (op = 0; op < ops; op++) {
        uint8_t kb[16];
        size_t klen;
        bool found;
        size_t pos;
        int r = (int)(rng() % 100);

        /* Keys: 3 bytes from a 0..key_space number, sometimes shorter. */
        unsigned v = (unsigned)(rng() % (uint64_t)key_space);
        kb[0] = (uint8_t)(v >> 16);
        kb[1] = (uint8_t)(v >> 8);
        kb[2] = (uint8_t)v;
        klen = 1 + (v % 3);
        pos = model_lower(&m, kb, klen, &found);
        if (r < 60) {
            struct item *it = item_new(kb, klen, op);
            void *old;
            assert_int_equal(btree_insert(&t, it, &old), 0);
            if (found) {
                assert_ptr_equal(old, m.items[pos]);
                free(old);
                m.items[pos] = it;
            } else {
                assert_null(old);
                memmove(&m.items[pos + 1], &m.items[pos],
                        (m.n - pos) * sizeof(*m.items));
                m.items[pos] = it;
                m.n++;
            }
        } else if (r < 95) {
            void *got = btree_delete(&t, kb, klen);
            if (found) {
                assert_ptr_equal(got, m.items[pos]);
                free(got);
                memmove(&m.items[pos], &m.items[pos + 1],
                        (m.n - pos - 1) * sizeof(*m.items));
                m.n--;
            } else {
                assert_null(got);
            }
        } else {
            void *got = btree_get(&t, kb, klen);
            assert_ptr_equal(got, found ? (void *)m.items[pos] : NULL);
        }
        assert_int_equal(btree_len(&t), m.n);
        if (op % 500 == 0) {
            check_tree_equals_model(&t, &m);
        }
    }
    check_tree_equals_model(&t, &m);
    /* Delete everything in random order; the tree must shrink to empty. */
    while (m.n > 0) {
        size_t pos = (size_t)(rng() % m.n);
        struct item *it = m.items[pos];
        assert_ptr_equal(btree_delete(&t, it->key, it->len), it);
        free(it);
        memmove(&m.items[pos], &m.items[pos + 1],
                (m.n - pos - 1) * sizeof(*m.items));
        m.n--;
        assert_int_equal(btree_len(&t), m.n);
        if (m.n % 97 == 0) {
            assert_int_equal(btree_verify(&t), 0);
        }
    }
    check_tree_equals_model(&t, &m);
    assert_null(t.root);
    assert_int_equal(t.height, 0);
    btree_close(&t, item_free);
    free(m.items);
}

static void test_random_small_keyspace(void **state)
{
    (void)state;
    run_random(0x1234567ULL, 20000, 300);
}

static void test_random_large_keyspace(void **state)
{
    (void)state;
    run_random(0x9e3779b97f4a7c15ULL, 30000, 20000);
    run_random(42, 30000, 5000);
}

/* Sequential patterns stress splits and merges at one edge. */
static void test_sequential(void **state)
{
    struct btree t;
    int i;
    (void)state;

    btree_init(&t, item_key);
    for (i = 0; i < 5000; i++) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16),
                        (uint8_t)(i >> 8), (uint8_t)i};
        assert_int_equal(btree_insert(&t, item_new(k, 4, i), NULL), 0);
    }
    assert_int_equal(btree_len(&t), 5000);
    assert_true(t.height >= 3);
    /* Delete ascending. */
    for (i = 0; i < 5000; i++) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16),
                        (uint8_t)(i >> 8), (uint8_t)i};
        struct item *it = btree_delete(&t, k, 4);
        assert_non_null(it);
        assert_int_equal(it->payload, i);
        free(it);
    }
    assert_int_equal(btree_len(&t), 0);
    /* Insert descending, delete descending. */
    for (i = 4999; i >= 0; i--) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16),
                        (uint8_t)(i >> 8), (uint8_t)i};
        assert_int_equal(btree_insert(&t, item_new(k, 4, i), NULL), 0);
    }
    for (i = 4999; i >= 2500; i--) {
        uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16),
                        (uint8_t)(i >> 8), (uint8_t)i};
        free(btree_delete(&t, k, 4));
    }
    assert_int_equal(btree_len(&t), 2500);
    n_freed = 0;
    btree_close(&t, item_free);
    assert_int_equal(n_freed, 2500);
}

/* Range scans [start, end) and from-key against the model. */
static void test_range_scans(void **state)
{
    struct btree t;
    struct model m = {NULL, 0};
    int i, q;
    (void)state;

    rng_state = 777;
    btree_init(&t, item_key);
    m.items = calloc(2000, sizeof(*m.items));
    assert_non_null(m.items);
    for (i = 0; i < 1500; i++) {
        uint8_t k[8];
        size_t len = random_key(k);
        bool found;
        size_t pos = model_lower(&m, k, len, &found);
        struct item *it;
        if (found) {
            continue;
        }
        it = item_new(k, len, i);
        assert_int_equal(btree_insert(&t, it, NULL), 0);
        memmove(&m.items[pos + 1], &m.items[pos],
                (m.n - pos) * sizeof(*m.items));
        m.items[pos] = it;
        m.n++;
    }
    /* At most 1 + 4 + 16 + 64 + 256 = 341 distinct keys exist. */
    assert_true(m.n > 250 && m.n <= 341);
    for (q = 0; q < 2000; q++) {
        uint8_t s[8], e[8];
        size_t slen = random_key(s), elen = random_key(e);
        bool open = rng() % 4 == 0, found;
        size_t pos = model_lower(&m, s, slen, &found), n = 0;
        struct btree_iter it;
        struct item *p;

        btree_iter_seek(&it, &t, s, slen);
        while ((p = btree_iter_next(&it)) != NULL) {
            if (!open && btree_keycmp(p->key, p->len, e, elen) >= 0) {
                break;
            }
            assert_true(pos + n < m.n);
            assert_ptr_equal(p, m.items[pos + n]);
            n++;
        }
        /* The model's count for the same range. */
        if (open) {
            assert_int_equal(n, m.n - pos);
        } else {
            size_t cnt = 0;
            while (pos + cnt < m.n &&
                   btree_keycmp(m.items[pos + cnt]->key,
                                m.items[pos + cnt]->len, e, elen) < 0) {
                cnt++;
            }
            assert_int_equal(n, cnt);
        }
    }
    /* Seek past the end, and seek to an exact key in an inner node. */
    {
        struct btree_iter it;
        btree_iter_seek(&it, &t, "\xff\xff\xff\xff\xff", 5);
        assert_null(btree_iter_next(&it));
        for (i = 0; i < (int)m.n; i++) {
            btree_iter_seek(&it, &t, m.items[i]->key, m.items[i]->len);
            assert_ptr_equal(btree_iter_next(&it), m.items[i]);
            if (i + 1 < (int)m.n) {
                assert_ptr_equal(btree_iter_next(&it), m.items[i + 1]);
            } else {
                assert_null(btree_iter_next(&it));
            }
        }
    }
    btree_close(&t, item_free);
    free(m.items);
}

/* btree_verify() must notice a broken order (so the checks above can
 * fail). */
static void test_verify_detects_disorder(void **state)
{
    struct btree t;
    struct item *a = item_new("a", 1, 0), *b = item_new("b", 1, 0);
    (void)state;

    btree_init(&t, item_key);
    assert_int_equal(btree_insert(&t, a, NULL), 0);
    assert_int_equal(btree_insert(&t, b, NULL), 0);
    assert_int_equal(btree_verify(&t), 0);
    a->key[0] = 'c'; /* a key changed behind the tree's back */
    assert_int_equal(btree_verify(&t), IK_ECORRUPT);
    a->key[0] = 'a';
    t.count = 3;
    assert_int_equal(btree_verify(&t), IK_ECORRUPT);
    t.count = 2;
    btree_close(&t, item_free);
}

/* ---- Allocation failure ---- */
static int fail_countdown;

static bool fail_after(void)
{
    if (fail_countdown == 0) {
        return true;
    }
    fail_countdown--;
    return false;
}

static void test_alloc_failure(void **state)
{
    struct btree t;
    struct model m = {NULL, 0};
    int i, failures = 0;
    (void)state;

    btree_init(&t, item_key);
    m.items = calloc(3000, sizeof(*m.items));
    assert_non_null(m.items);
    rng_state = 99;
    /* Every insert gets a failing allocator after a random number of
     * allocations; a failed insert must leave the content untouched. */
    for (i = 0; i < 3000; i++) {
        uint8_t k[4];
        bool found;
        size_t pos;
        struct item *it;
        int rv;
        unsigned v = (unsigned)(rng() % 100000);
        k[0] = (uint8_t)(v >> 16);
        k[1] = (uint8_t)(v >> 8);
        k[2] = (uint8_t)v;
        pos = model_lower(&m, k, 3, &found);
        if (found) {
            continue;
        }
        it = item_new(k, 3, i);
        fail_countdown = (int)(rng() % 4);
        btree_fail_alloc_hook = fail_after;
        rv = btree_insert(&t, it, NULL);
        btree_fail_alloc_hook = NULL;
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            assert_null(btree_get(&t, k, 3));
            free(it);
            failures++;
        } else {
            memmove(&m.items[pos + 1], &m.items[pos],
                    (m.n - pos) * sizeof(*m.items));
            m.items[pos] = it;
            m.n++;
        }
        check_tree_equals_model(&t, &m);
    }
    assert_true(failures > 0);
    assert_true(m.n > 100);
    /* An insert into an empty tree fails cleanly too. */
    {
        struct btree e;
        struct item *it = item_new("x", 1, 0);
        btree_init(&e, item_key);
        fail_countdown = 0;
        btree_fail_alloc_hook = fail_after;
        assert_int_equal(btree_insert(&e, it, NULL), IK_ENOMEM);
        btree_fail_alloc_hook = NULL;
        assert_int_equal(btree_len(&e), 0);
        assert_null(e.root);
        free(it);
        btree_close(&e, item_free);
    }
    /* Deletion never allocates: works with every allocation failing. */
    fail_countdown = 0;
    btree_fail_alloc_hook = fail_after;
    while (m.n > 0) {
        struct item *it = m.items[m.n - 1];
        assert_ptr_equal(btree_delete(&t, it->key, it->len), it);
        free(it);
        m.n--;
    }
    btree_fail_alloc_hook = NULL;
    btree_close(&t, item_free);
    free(m.items);
}

/* ---- Clones ---- */

/* Reference-counted items: a tree holds one reference per slot. */
static int n_live;

static struct item *ritem_new(const void *key, size_t len, int payload)
{
    n_live++;
    return item_new(key, len, payload);
}

static void ritem_ref(void *p)
{
    struct item *it = p;
    it->ref++;
}

static void ritem_unref(void *p)
{
    struct item *it = p;
    assert_true(it->ref > 0);
    if (--it->ref == 0) {
        n_live--;
        free(it);
    }
}

static void model_copy(struct model *dst, const struct model *src, size_t cap)
{
    dst->items = calloc(cap, sizeof(*dst->items));
    assert_non_null(dst->items);
    memcpy(dst->items, src->items, src->n * sizeof(*src->items));
    dst->n = src->n;
}

static void model_insert(struct model *m, size_t pos, bool found,
                         struct item *it)
{
    if (found) {
        m->items[pos] = it;
        return;
    }
    memmove(&m->items[pos + 1], &m->items[pos],
            (m->n - pos) * sizeof(*m->items));
    m->items[pos] = it;
    m->n++;
}

static void model_remove(struct model *m, size_t pos)
{
    memmove(&m->items[pos], &m->items[pos + 1],
            (m->n - pos - 1) * sizeof(*m->items));
    m->n--;
}

static size_t key3(unsigned v, uint8_t *kb)
{
    kb[0] = (uint8_t)(v >> 16);
    kb[1] = (uint8_t)(v >> 8);
    kb[2] = (uint8_t)v;
    return 3;
}

/* One random write (insert/replace, remove, or replace in place through
 * btree_get_mut) on @t, mirrored in @m. Returns the btree result. */
static int clone_op(struct btree *t, struct model *m, int key_space, int op)
{
    uint8_t kb[4];
    size_t klen = key3((unsigned)(rng() % (uint64_t)key_space), kb);
    bool found;
    size_t pos = model_lower(m, kb, klen, &found);
    int r = (int)(rng() % 100), rv;

    if (r < 50) {
        struct item *it = ritem_new(kb, klen, op);
        void *old = (void *)1;
        rv = btree_insert(t, it, &old);
        if (rv != 0) {
            assert_null(old);
            ritem_unref(it);
            return rv;
        }
        assert_ptr_equal(old, found ? (void *)m->items[pos] : NULL);
        if (old != NULL) {
            ritem_unref(old);
        }
        model_insert(m, pos, found, it);
    } else if (r < 80) {
        void *got = (void *)1;
        rv = btree_remove(t, kb, klen, &got);
        if (rv == IK_ENOENT) {
            assert_false(found);
            assert_null(got);
            return 0;
        }
        if (rv != 0) {
            assert_null(got);
            return rv;
        }
        assert_true(found);
        assert_ptr_equal(got, m->items[pos]);
        ritem_unref(got);
        model_remove(m, pos);
    } else {
        void **slot = (void **)1;
        rv = btree_get_mut(t, kb, klen, &slot);
        if (rv == IK_ENOENT) {
            assert_false(found);
            assert_null(slot);
            return 0;
        }
        if (rv != 0) {
            assert_null(slot);
            return rv;
        }
        assert_true(found);
        assert_ptr_equal(*slot, m->items[pos]);
        ritem_unref(*slot);
        *slot = ritem_new(kb, klen, op);
        m->items[pos] = *slot;
    }
    return 0;
}

#define MAX_CLONES 6

/* A tree written at random while clones are taken, written and closed at
 * random: every tree always matches its own model, and once all are closed
 * every item has been freed exactly once. */
static void test_clones_independent(void **state)
{
    struct btree trees[MAX_CLONES + 1];
    struct model models[MAX_CLONES + 1];
    bool open[MAX_CLONES + 1] = {true};
    const int key_space = 3000;
    int op, i;
    (void)state;

    n_live = 0;
    rng_state = 4242;
    btree_init(&trees[0], item_key);
    btree_set_item_ref(&trees[0], ritem_ref, ritem_unref);
    models[0].items = calloc(key_space + 1, sizeof(struct item *));
    models[0].n = 0;
    assert_non_null(models[0].items);
    for (op = 0; op < 40000; op++) {
        int r = (int)(rng() % 1000);
        if (r < 3) {
            /* Clone some open tree into a free slot. */
            int from = (int)(rng() % (MAX_CLONES + 1)), to;
            for (to = 0; to <= MAX_CLONES && open[to]; to++) {
            }
            if (to <= MAX_CLONES && open[from]) {
                btree_clone(&trees[from], &trees[to]);
                model_copy(&models[to], &models[from], key_space + 1);
                open[to] = true;
            }
        } else if (r < 5) {
            int c = (int)(rng() % (MAX_CLONES + 1));
            if (open[c] && c != 0) {
                btree_close(&trees[c], ritem_unref);
                free(models[c].items);
                open[c] = false;
            }
        } else {
            /* Mostly the original, sometimes a clone. */
            int w = r < 900 ? 0 : (int)(rng() % (MAX_CLONES + 1));
            if (open[w]) {
                assert_int_equal(clone_op(&trees[w], &models[w], key_space, op),
                                 0);
            }
        }
        if (op % 2000 == 0) {
            for (i = 0; i <= MAX_CLONES; i++) {
                if (open[i]) {
                    check_tree_equals_model(&trees[i], &models[i]);
                }
            }
        }
    }
    for (i = 0; i <= MAX_CLONES; i++) {
        if (open[i]) {
            check_tree_equals_model(&trees[i], &models[i]);
            btree_close(&trees[i], ritem_unref);
            free(models[i].items);
        }
    }
    assert_int_equal(n_live, 0);
}

/* Emptying a tree that shares everything with a clone leaves the clone
 * intact, and closing the clone then frees everything. */
static void test_clone_drain(void **state)
{
    struct btree a, b;
    int i;
    (void)state;

    n_live = 0;
    btree_init(&a, item_key);
    btree_set_item_ref(&a, ritem_ref, ritem_unref);
    for (i = 0; i < 4000; i++) {
        uint8_t kb[4];
        size_t klen = key3((unsigned)i, kb);
        assert_int_equal(btree_insert(&a, ritem_new(kb, klen, i), NULL), 0);
    }
    btree_clone(&a, &b);
    for (i = 3999; i >= 0; i -= 2) {
        uint8_t kb[4];
        size_t klen = key3((unsigned)i, kb);
        void *got;
        assert_int_equal(btree_remove(&a, kb, klen, &got), 0);
        ritem_unref(got);
    }
    for (i = 0; i < 4000; i += 2) {
        uint8_t kb[4];
        size_t klen = key3((unsigned)i, kb);
        void *got;
        assert_int_equal(btree_remove(&a, kb, klen, &got), 0);
        ritem_unref(got);
    }
    assert_int_equal(btree_len(&a), 0);
    assert_null(a.root);
    assert_int_equal(btree_len(&b), 4000);
    assert_int_equal(btree_verify(&b), 0);
    assert_int_equal(n_live, 4000);
    for (i = 0; i < 4000; i++) {
        uint8_t kb[4];
        size_t klen = key3((unsigned)i, kb);
        struct item *it = btree_get(&b, kb, klen);
        assert_non_null(it);
        assert_int_equal(it->payload, i);
        assert_int_equal(it->ref, 1);
    }
    btree_close(&a, ritem_unref);
    btree_close(&b, ritem_unref);
    assert_int_equal(n_live, 0);
}

/* Writes to a tree shared with a clone, with allocations failing: a
 * failed write leaves both trees' content as it was. */
static void test_clone_alloc_failure(void **state)
{
    struct btree a, b;
    struct model ma, mb;
    const int key_space = 6000;
    int i, failures = 0, ok = 0;
    (void)state;

    n_live = 0;
    rng_state = 31337;
    btree_init(&a, item_key);
    btree_set_item_ref(&a, ritem_ref, ritem_unref);
    ma.items = calloc(key_space + 1, sizeof(struct item *));
    ma.n = 0;
    assert_non_null(ma.items);
    for (i = 0; i < 3000; i++) {
        assert_int_equal(clone_op(&a, &ma, key_space, i), 0);
    }
    for (i = 0; i < 3000; i++) {
        int rv;
        if (i % 500 == 0) {
            /* Re-share everything now and then. */
            if (i > 0) {
                btree_close(&b, ritem_unref);
                free(mb.items);
            }
            btree_clone(&a, &b);
            model_copy(&mb, &ma, key_space + 1);
        }
        fail_countdown = (int)(rng() % 6);
        btree_fail_alloc_hook = fail_after;
        rv = clone_op(&a, &ma, key_space, i);
        btree_fail_alloc_hook = NULL;
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            failures++;
        } else {
            ok++;
        }
        if (i % 50 == 0 || rv != 0) {
            check_tree_equals_model(&a, &ma);
            check_tree_equals_model(&b, &mb);
        }
    }
    assert_true(failures > 100);
    assert_true(ok > 100);
    /* With every allocation failing, a remove from a shared root fails
     * cleanly; without a clone it needs no allocation. */
    btree_close(&b, ritem_unref);
    free(mb.items);
    btree_clone(&a, &b);
    {
        struct item *first = ma.items[0];
        void *got = (void *)1;
        fail_countdown = 0;
        btree_fail_alloc_hook = fail_after;
        assert_int_equal(btree_remove(&a, first->key, first->len, &got),
                         IK_ENOMEM);
        assert_null(got);
        assert_null(btree_delete(&a, first->key, first->len));
        btree_fail_alloc_hook = NULL;
        check_tree_equals_model(&a, &ma);
        btree_close(&b, ritem_unref);
        fail_countdown = 0;
        btree_fail_alloc_hook = fail_after;
        assert_int_equal(btree_remove(&a, first->key, first->len, &got), 0);
        btree_fail_alloc_hook = NULL;
        assert_ptr_equal(got, first);
        ritem_unref(got);
        model_remove(&ma, 0);
        check_tree_equals_model(&a, &ma);
    }
    btree_close(&a, ritem_unref);
    free(ma.items);
    assert_int_equal(n_live, 0);
}

/* btree_get_mut on an unshared tree allocates nothing; a slot store is
 * seen by lookups; missing keys are IK_ENOENT. */
static void test_get_mut(void **state)
{
    struct btree t, c;
    void **slot;
    struct item *a = item_new("a", 1, 1), *a2 = item_new("a", 1, 2);
    (void)state;

    btree_init(&t, item_key);
    assert_int_equal(btree_get_mut(&t, "a", 1, &slot), IK_ENOENT);
    assert_int_equal(btree_insert(&t, a, NULL), 0);
    fail_countdown = 0;
    btree_fail_alloc_hook = fail_after;
    assert_int_equal(btree_get_mut(&t, "a", 1, &slot), 0);
    assert_ptr_equal(*slot, a);
    assert_int_equal(btree_get_mut(&t, "b", 1, &slot), IK_ENOENT);
    assert_null(slot);
    /* Shared: the copy needs an allocation, which fails cleanly. */
    btree_clone(&t, &c);
    assert_int_equal(btree_get_mut(&t, "a", 1, &slot), IK_ENOMEM);
    assert_null(slot);
    btree_fail_alloc_hook = NULL;
    assert_int_equal(btree_get_mut(&t, "a", 1, &slot), 0);
    *slot = a2;
    assert_ptr_equal(btree_get(&t, "a", 1), a2);
    assert_ptr_equal(btree_get(&c, "a", 1), a);
    assert_int_equal(btree_verify(&t), 0);
    assert_int_equal(btree_verify(&c), 0);
    n_freed = 0;
    btree_close(&c, item_free);
    btree_close(&t, item_free);
    assert_int_equal(n_freed, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keycmp_order),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_insert_replace_get),
        cmocka_unit_test(test_random_small_keyspace),
        cmocka_unit_test(test_random_large_keyspace),
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_range_scans),
        cmocka_unit_test(test_verify_detects_disorder),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_clones_independent),
        cmocka_unit_test(test_clone_drain),
        cmocka_unit_test(test_clone_alloc_failure),
        cmocka_unit_test(test_get_mut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
