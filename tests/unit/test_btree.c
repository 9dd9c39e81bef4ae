/* Unit tests for server/btree: random operations against a sorted-array
 * model, range scans, byte order, and allocation failures. */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
