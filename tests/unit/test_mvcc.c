/* Unit tests for server/mvcc: etcd's revision model, ranges, txns,
 * compaction, restore, and allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/mvcc.h"

#define S(x) (const uint8_t *)(x), strlen(x)
#define FROM_KEY (const uint8_t *)"\0", 1
#define NOEND NULL, 0

static struct mvcc m;

static int setup(void **state)
{
    (void)state;
    mvcc_init(&m);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mvcc_close(&m);
    return 0;
}

static int64_t put(const char *k, const char *v)
{
    int64_t rev = 0;
    assert_int_equal(mvcc_put(&m, S(k), S(v), 0, &rev), 0);
    return rev;
}

static int64_t del(const char *k, const char *end, int64_t want_deleted)
{
    int64_t rev = 0, deleted = -1;
    assert_int_equal(mvcc_delete_range(&m, S(k), (const uint8_t *)end,
                                       end != NULL ? strlen(end) : 0, &deleted,
                                       &rev),
                     0);
    assert_int_equal(deleted, want_deleted);
    return rev;
}

/* Range and render "k=v@create/mod/ver ..." for easy comparisons. */
static char *range_str(const uint8_t *key, size_t klen, const uint8_t *end,
                       size_t elen, int64_t rev, size_t limit, size_t *count)
{
    struct mvcc_range_result rr;
    static char buf[8192];
    size_t i, off = 0;

    assert_int_equal(
        mvcc_range(&m, key, klen, end, elen, rev, limit, false, &rr), 0);
    buf[0] = '\0';
    for (i = 0; i < rr.n; i++) {
        off += (size_t)snprintf(
            buf + off, sizeof(buf) - off, "%s%.*s=%.*s@%lld/%lld/%lld",
            i > 0 ? " " : "", (int)rr.kvs[i].key_len,
            (const char *)rr.kvs[i].key, (int)rr.kvs[i].value_len,
            (const char *)rr.kvs[i].value, (long long)rr.kvs[i].create_revision,
            (long long)rr.kvs[i].mod_revision, (long long)rr.kvs[i].version);
    }
    if (count != NULL) {
        *count = rr.count;
    }
    mvcc_range_result_free(&rr);
    return buf;
}

static void test_initial_state(void **state)
{
    struct mvcc_stats st;
    struct mvcc_kv kv;
    size_t count = 99;
    (void)state;

    assert_int_equal(mvcc_rev(&m), 1);
    assert_int_equal(mvcc_compact_rev(&m), -1);
    assert_string_equal(range_str(S("a"), FROM_KEY, 0, 0, &count), "");
    assert_int_equal(count, 0);
    assert_int_equal(mvcc_get(&m, S("a"), &kv), IK_ENOENT);
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 0);
    assert_int_equal(st.revisions, 0);
}

static void test_put_revisions(void **state)
{
    struct mvcc_kv kv;
    (void)state;

    assert_int_equal(put("foo", "bar"), 2);
    assert_int_equal(put("foo", "baz"), 3);
    assert_int_equal(put("other", "x"), 4);
    assert_string_equal(range_str(S("foo"), NOEND, 0, 0, NULL),
                        "foo=baz@2/3/2");
    /* History. */
    assert_string_equal(range_str(S("foo"), NOEND, 2, 0, NULL),
                        "foo=bar@2/2/1");
    assert_string_equal(range_str(S("foo"), NOEND, 1, 0, NULL), "");
    assert_string_equal(range_str(S("other"), NOEND, 3, 0, NULL), "");
    assert_int_equal(mvcc_get(&m, S("foo"), &kv), 0);
    assert_int_equal(kv.version, 2);
    assert_int_equal(kv.mod_revision, 3);
    assert_int_equal(kv.create_revision, 2);
    assert_int_equal(kv.lease, 0);
    assert_memory_equal(kv.value, "baz", 3);
    /* Empty value is a value. */
    assert_int_equal(put("empty", ""), 5);
    assert_string_equal(range_str(S("empty"), NOEND, 0, 0, NULL),
                        "empty=@5/5/1");
}

static void test_delete_and_recreate(void **state)
{
    struct mvcc_kv kv;
    (void)state;

    put("k", "v1");                         /* 2 */
    put("k", "v2");                         /* 3 */
    assert_int_equal(del("k", NULL, 1), 4); /* tombstone at 4 */
    assert_int_equal(mvcc_get(&m, S("k"), &kv), IK_ENOENT);
    assert_string_equal(range_str(S("k"), NOEND, 0, 0, NULL), "");
    assert_string_equal(range_str(S("k"), NOEND, 3, 0, NULL), "k=v2@2/3/2");
    /* Deleting again deletes nothing and does not bump the revision. */
    assert_int_equal(del("k", NULL, 0), 4);
    assert_int_equal(del("nothing", "zzz", 0), 4);
    assert_int_equal(mvcc_rev(&m), 4);
    /* Re-create: new incarnation. */
    assert_int_equal(put("k", "v3"), 5);
    assert_string_equal(range_str(S("k"), NOEND, 0, 0, NULL), "k=v3@5/5/1");
    assert_string_equal(range_str(S("k"), NOEND, 4, 0, NULL), "");
    assert_string_equal(range_str(S("k"), NOEND, 2, 0, NULL), "k=v1@2/2/1");
}

static void test_range_forms(void **state)
{
    size_t count;
    (void)state;

    put("a", "1");     /* 2 */
    put("ab", "2");    /* 3 */
    put("abc", "3");   /* 4 */
    put("b", "4");     /* 5 */
    put("c", "5");     /* 6 */
    put("a\xff", "6"); /* 7 */

    /* Single key. */
    assert_string_equal(range_str(S("ab"), NOEND, 0, 0, &count), "ab=2@3/3/1");
    assert_int_equal(count, 1);
    assert_string_equal(range_str(S("zz"), NOEND, 0, 0, &count), "");
    assert_int_equal(count, 0);
    /* [a, b): prefix "a". */
    assert_string_equal(range_str(S("a"), S("b"), 0, 0, &count),
                        "a=1@2/2/1 ab=2@3/3/1 abc=3@4/4/1 a\xff=6@7/7/1");
    assert_int_equal(count, 4);
    /* [ab, abc) excludes the end. */
    assert_string_equal(range_str(S("ab"), S("abc"), 0, 0, NULL), "ab=2@3/3/1");
    /* From-key. */
    assert_string_equal(range_str(S("b"), FROM_KEY, 0, 0, &count),
                        "b=4@5/5/1 c=5@6/6/1");
    assert_int_equal(count, 2);
    /* All keys: key "\0", end "\0". */
    range_str(FROM_KEY, FROM_KEY, 0, 0, &count);
    assert_int_equal(count, 6);
    /* End <= key: empty. */
    assert_string_equal(range_str(S("c"), S("a"), 0, 0, &count), "");
    assert_int_equal(count, 0);
    assert_string_equal(range_str(S("b"), S("b"), 0, 0, NULL), "");
    /* Limit: count still counts the whole range. */
    assert_string_equal(range_str(S("a"), FROM_KEY, 0, 2, &count),
                        "a=1@2/2/1 ab=2@3/3/1");
    assert_int_equal(count, 6);
    /* Range at an old revision. */
    assert_string_equal(range_str(S("a"), FROM_KEY, 3, 0, &count),
                        "a=1@2/2/1 ab=2@3/3/1");
    assert_int_equal(count, 2);
}

static void test_count_only(void **state)
{
    struct mvcc_range_result rr;
    (void)state;

    put("x1", "1");
    put("x2", "2");
    put("x3", "3");
    del("x2", NULL, 1);
    assert_int_equal(mvcc_range(&m, S("x"), S("y"), 0, 0, true, &rr), 0);
    assert_int_equal(rr.count, 2);
    assert_int_equal(rr.n, 0);
    assert_null(rr.kvs);
    assert_int_equal(rr.rev, 5);
    mvcc_range_result_free(&rr);
}

static void test_revision_errors(void **state)
{
    struct mvcc_range_result rr;
    (void)state;

    put("a", "1"); /* 2 */
    put("a", "2"); /* 3 */
    assert_int_equal(mvcc_range(&m, S("a"), NOEND, 4, 0, false, &rr),
                     IK_EFUTUREREV);
    assert_null(rr.kvs);
    assert_int_equal(mvcc_range(&m, S("a"), NOEND, 3, 0, false, &rr), 0);
    mvcc_range_result_free(&rr);
    /* Negative revision means current (no compaction yet). */
    assert_int_equal(mvcc_range(&m, S("a"), NOEND, -5, 0, false, &rr), 0);
    assert_int_equal(rr.n, 1);
    mvcc_range_result_free(&rr);
    assert_int_equal(mvcc_compact(&m, 3), 0);
    assert_int_equal(mvcc_range(&m, S("a"), NOEND, 2, 0, false, &rr),
                     IK_ECOMPACTED);
    /* Future is checked before compacted. */
    assert_int_equal(mvcc_range(&m, S("a"), NOEND, 10, 0, false, &rr),
                     IK_EFUTUREREV);
}

static void test_txn_shares_revision(void **state)
{
    struct mvcc_kv kv, prev;
    int64_t deleted;
    (void)state;

    put("a", "0"); /* 2 */
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_begin(&m), IK_EINVAL);
    assert_int_equal(mvcc_txn_rev(&m), 2); /* nothing changed yet */
    assert_int_equal(mvcc_txn_put(&m, S("a"), S("1"), 7), 0);
    assert_int_equal(mvcc_txn_rev(&m), 3);
    assert_int_equal(mvcc_txn_put(&m, S("b"), S("2"), 0), 0);
    assert_int_equal(mvcc_txn_put(&m, S("a"), S("3"), 0), 0);
    assert_int_equal(mvcc_txn_delete_range(&m, S("b"), NOEND, &deleted), 0);
    assert_int_equal(deleted, 1);
    /* Reads inside see the txn's writes at the txn revision. */
    assert_string_equal(range_str(S("a"), FROM_KEY, 0, 0, NULL), "a=3@2/3/3");
    assert_int_equal(mvcc_rev(&m), 2);
    assert_int_equal(mvcc_txn_changes(&m), 4);
    assert_false(mvcc_txn_change(&m, 1, &kv, &prev)); /* b created */
    assert_int_equal(kv.sub, 1);
    assert_int_equal(kv.mod_revision, 3);
    assert_true(mvcc_txn_change(&m, 2, &kv, &prev));
    assert_int_equal(kv.sub, 2);
    assert_int_equal(kv.version, 3);
    assert_int_equal(prev.version, 2);
    assert_int_equal(prev.lease, 7);
    assert_true(mvcc_txn_change(&m, 3, &kv, &prev)); /* b tombstone */
    assert_int_equal(kv.version, 0);
    assert_int_equal(kv.sub, 3);
    assert_memory_equal(prev.value, "2", 1);
    assert_int_equal(mvcc_txn_end(&m), 3);
    assert_int_equal(mvcc_rev(&m), 3);
    assert_string_equal(range_str(S("a"), FROM_KEY, 2, 0, NULL), "a=0@2/2/1");
    assert_string_equal(range_str(S("b"), NOEND, 3, 0, NULL), "");
}

static void test_txn_without_changes(void **state)
{
    int64_t deleted = -1;
    (void)state;

    put("a", "1"); /* 2 */
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_delete_range(&m, S("zz"), NOEND, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(mvcc_txn_delete_range(&m, S("b"), FROM_KEY, &deleted), 0);
    assert_int_equal(mvcc_txn_rev(&m), 2);
    assert_int_equal(mvcc_txn_end(&m), 2);
    assert_int_equal(mvcc_rev(&m), 2);
    /* A delete after a put in the same txn reads the txn's writes. */
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_put(&m, S("new"), S("x"), 0), 0);
    assert_int_equal(mvcc_txn_delete_range(&m, S("new"), NOEND, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(mvcc_txn_delete_range(&m, S("new"), NOEND, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(mvcc_txn_end(&m), 3);
    assert_string_equal(range_str(S("new"), NOEND, 0, 0, NULL), "");
    /* Outside a txn the txn calls are refused. */
    assert_int_equal(mvcc_txn_put(&m, S("a"), S("1"), 0), IK_EINVAL);
    assert_int_equal(mvcc_txn_delete_range(&m, S("a"), NOEND, NULL), IK_EINVAL);
    assert_int_equal(mvcc_txn_end(&m), 3);
    /* Empty keys are refused. */
    assert_int_equal(mvcc_put(&m, (const uint8_t *)"", 0, S("v"), 0, NULL),
                     IK_EINVAL);
    assert_int_equal(mvcc_rev(&m), 3);
}

static uint64_t store_hash(void);

static void test_txn_abort(void **state)
{
    uint64_t before;
    struct mvcc_stats st1, st2;
    (void)state;

    put("a", "1");
    put("b", "2");
    del("b", NULL, 1);
    before = store_hash();
    mvcc_stats(&m, &st1);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_put(&m, S("a"), S("x"), 0), 0);
    assert_int_equal(mvcc_txn_put(&m, S("b"), S("y"), 0), 0);
    assert_int_equal(mvcc_txn_put(&m, S("c"), S("z"), 0), 0);
    assert_int_equal(mvcc_txn_delete_range(&m, S("a"), FROM_KEY, NULL), 0);
    mvcc_txn_abort(&m);
    assert_int_equal(mvcc_rev(&m), 4);
    assert_false(mvcc_txn_is_open(&m));
    assert_true(store_hash() == before);
    mvcc_stats(&m, &st2);
    assert_int_equal(st1.keys, st2.keys);
    assert_int_equal(st1.revisions, st2.revisions);
    assert_int_equal(st1.bytes, st2.bytes);
    assert_string_equal(range_str(S("c"), NOEND, 0, 0, NULL), "");
}

static void test_leases_kept(void **state)
{
    struct mvcc_kv kv;
    (void)state;

    assert_int_equal(mvcc_put(&m, S("k"), S("v"), 0x1234, NULL), 0);
    assert_int_equal(mvcc_put(&m, S("k"), S("w"), 0, NULL), 0);
    assert_int_equal(mvcc_get(&m, S("k"), &kv), 0);
    assert_int_equal(kv.lease, 0);
    {
        struct mvcc_range_result rr;
        assert_int_equal(mvcc_range(&m, S("k"), NOEND, 2, 0, false, &rr), 0);
        assert_int_equal(rr.n, 1);
        assert_int_equal(rr.kvs[0].lease, 0x1234);
        mvcc_range_result_free(&rr);
    }
}

static void test_compaction(void **state)
{
    struct mvcc_stats st1, st2;
    size_t count;
    (void)state;

    put("a", "1");     /* 2 */
    put("a", "2");     /* 3 */
    put("b", "1");     /* 4 */
    del("b", NULL, 1); /* 5 */
    put("c", "1");     /* 6 */
    del("c", NULL, 1); /* 7 */
    put("c", "2");     /* 8 */
    put("a", "3");     /* 9 */
    mvcc_stats(&m, &st1);
    assert_int_equal(st1.keys, 3);
    assert_int_equal(st1.revisions, 8);

    assert_int_equal(mvcc_compact(&m, 10), IK_EFUTUREREV);
    assert_int_equal(mvcc_compact(&m, 6), 0);
    assert_int_equal(mvcc_compact_rev(&m), 6);
    assert_int_equal(mvcc_compact(&m, 6), IK_ECOMPACTED);
    assert_int_equal(mvcc_compact(&m, 5), IK_ECOMPACTED);
    /* Reads at the compacted revision and later are unchanged. */
    assert_string_equal(range_str(S("a"), FROM_KEY, 6, 0, &count),
                        "a=2@2/3/2 c=1@6/6/1");
    assert_int_equal(count, 2);
    assert_string_equal(range_str(S("a"), FROM_KEY, 7, 0, NULL), "a=2@2/3/2");
    assert_string_equal(range_str(S("a"), FROM_KEY, 0, 0, NULL),
                        "a=3@2/9/3 c=2@8/8/1");
    /* b (deleted at 5 <= 6) is gone from the index; a lost its version at
     * 2; c keeps all. */
    mvcc_stats(&m, &st2);
    assert_int_equal(st2.keys, 2);
    assert_int_equal(st2.revisions, 5);
    assert_true(st2.bytes < st1.bytes);
    {
        struct mvcc_range_result rr;
        assert_int_equal(mvcc_range(&m, S("a"), NOEND, 5, 0, false, &rr),
                         IK_ECOMPACTED);
    }
    /* Compact at the current revision: only the latest versions remain;
     * c's tombstone at 7 goes with its older version. */
    assert_int_equal(mvcc_compact(&m, 9), 0);
    mvcc_stats(&m, &st2);
    assert_int_equal(st2.keys, 2);
    assert_int_equal(st2.revisions, 2);
    assert_string_equal(range_str(S("a"), FROM_KEY, 9, 0, NULL),
                        "a=3@2/9/3 c=2@8/8/1");
    /* The version counter survives compaction. */
    assert_int_equal(put("a", "4"), 10);
    assert_string_equal(range_str(S("a"), NOEND, 0, 0, NULL), "a=4@2/10/4");
    /* Delete everything and compact: the index is empty. */
    {
        int64_t deleted = 0;
        assert_int_equal(
            mvcc_delete_range(&m, S("a"), FROM_KEY, &deleted, NULL), 0);
        assert_int_equal(deleted, 2);
    }
    assert_int_equal(mvcc_compact(&m, mvcc_rev(&m)), 0);
    mvcc_stats(&m, &st2);
    assert_int_equal(st2.keys, 0);
    assert_int_equal(st2.revisions, 0);
    assert_int_equal(st2.bytes, 0);
}

static void test_compact_zero_and_txn(void **state)
{
    (void)state;
    /* etcd starts at compacted revision -1, so 0 is a valid target once. */
    assert_int_equal(mvcc_compact(&m, 0), 0);
    assert_int_equal(mvcc_compact_rev(&m), 0);
    assert_int_equal(mvcc_compact(&m, 0), IK_ECOMPACTED);
    assert_int_equal(mvcc_compact(&m, -3), IK_ECOMPACTED);
    assert_int_equal(mvcc_compact(&m, 1), 0);
    assert_int_equal(mvcc_compact(&m, 2), IK_EFUTUREREV);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_compact(&m, 1), IK_EINVAL);
    mvcc_txn_abort(&m);
}

/* ---- Random operations against a naive model ----
 * The model is the list of every change ever made; the state at a revision
 * is computed by replaying it. */
struct event {
    char key[4];
    int64_t rev;
    int sub;
    bool tomb;
    char val[8];
};

static struct event *events;
static size_t n_events;

static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Expected live version of @key at @rev: returns false if absent. */
static bool model_get(const char *key, int64_t rev, int64_t *create,
                      int64_t *mod, int64_t *ver, const char **val)
{
    size_t i;
    bool live = false;
    for (i = 0; i < n_events && events[i].rev <= rev; i++) {
        if (strcmp(events[i].key, key) != 0) {
            continue;
        }
        if (events[i].tomb) {
            live = false;
            continue;
        }
        if (!live) {
            *create = events[i].rev;
            *ver = 0;
        }
        live = true;
        *mod = events[i].rev;
        (*ver)++;
        *val = events[i].val;
    }
    return live;
}

static const char *const keyspace[] = {"a", "aa", "ab", "b", "ba",
                                       "c", "ca", "cb", "d", "e"};
#define NKEYS (sizeof(keyspace) / sizeof(keyspace[0]))

static void check_against_model(int64_t rev)
{
    struct mvcc_range_result rr;
    size_t i, j = 0;

    assert_int_equal(mvcc_range(&m, S("a"), FROM_KEY, rev, 0, false, &rr), 0);
    for (i = 0; i < NKEYS; i++) {
        int64_t c, mo, v;
        const char *val;
        if (!model_get(keyspace[i], rev, &c, &mo, &v, &val)) {
            continue;
        }
        assert_true(j < rr.n);
        assert_int_equal(rr.kvs[j].key_len, strlen(keyspace[i]));
        assert_memory_equal(rr.kvs[j].key, keyspace[i], strlen(keyspace[i]));
        assert_int_equal(rr.kvs[j].create_revision, c);
        assert_int_equal(rr.kvs[j].mod_revision, mo);
        assert_int_equal(rr.kvs[j].version, v);
        assert_int_equal(rr.kvs[j].value_len, strlen(val));
        assert_memory_equal(rr.kvs[j].value, val, strlen(val));
        j++;
    }
    assert_int_equal(j, rr.n);
    assert_int_equal(rr.count, rr.n);
    mvcc_range_result_free(&rr);
}

static void record(const char *key, bool tomb, const char *val, int sub)
{
    struct event *e = &events[n_events++];
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->rev = mvcc_rev(&m) + 1;
    e->sub = sub;
    e->tomb = tomb;
    snprintf(e->val, sizeof(e->val), "%s", val);
}

static void test_random_vs_model(void **state)
{
    int step;
    int64_t r;
    (void)state;

    rng_state = 20240601;
    events = calloc(20000, sizeof(*events));
    assert_non_null(events);
    n_events = 0;
    for (step = 0; step < 1500; step++) {
        int nops = 1 + (int)(rng() % 3), op, sub = 0;
        assert_int_equal(mvcc_txn_begin(&m), 0);
        for (op = 0; op < nops; op++) {
            const char *k = keyspace[rng() % NKEYS];
            if (rng() % 3 != 0) {
                char v[8];
                snprintf(v, sizeof(v), "v%d", (int)(rng() % 1000));
                assert_int_equal(mvcc_txn_put(&m, S(k), S(v), 0), 0);
                record(k, false, v, sub++);
            } else {
                /* Delete [k, k+1) which covers k and its extensions. */
                char end[4];
                size_t i;
                int64_t deleted;
                snprintf(end, sizeof(end), "%s", k);
                end[strlen(end) - 1]++;
                assert_int_equal(
                    mvcc_txn_delete_range(&m, S(k), S(end), &deleted), 0);
                for (i = 0; i < NKEYS; i++) {
                    int64_t c, mo, v;
                    const char *val;
                    if (strcmp(keyspace[i], k) >= 0 &&
                        strcmp(keyspace[i], end) < 0 &&
                        model_get(keyspace[i], mvcc_rev(&m) + 1, &c, &mo, &v,
                                  &val)) {
                        record(keyspace[i], true, "", sub++);
                        deleted--;
                    }
                }
                assert_int_equal(deleted, 0);
            }
        }
        mvcc_txn_end(&m);
        /* Occasionally compact somewhere behind the head. */
        if (step % 200 == 199) {
            int64_t at = mvcc_rev(&m) - (int64_t)(rng() % 50);
            if (at > mvcc_compact_rev(&m)) {
                assert_int_equal(mvcc_compact(&m, at), 0);
            }
        }
    }
    /* Every readable revision matches the model. */
    for (r = mvcc_compact_rev(&m); r <= mvcc_rev(&m); r++) {
        check_against_model(r);
    }
    free(events);
    events = NULL;
}

/* ---- Walk / hash / restore ---- */
static int hash_kv(void *arg, const struct mvcc_kv *kv)
{
    uint64_t *h = arg;
    const int64_t nums[] = {kv->create_revision, kv->mod_revision, kv->version,
                            kv->lease, kv->sub};
    size_t i;
    for (i = 0; i < kv->key_len; i++) {
        *h = (*h ^ kv->key[i]) * 1099511628211ULL;
    }
    *h = (*h ^ 0xfe) * 1099511628211ULL;
    for (i = 0; i < kv->value_len; i++) {
        *h = (*h ^ kv->value[i]) * 1099511628211ULL;
    }
    for (i = 0; i < 5; i++) {
        *h = (*h ^ (uint64_t)nums[i]) * 1099511628211ULL;
    }
    return 0;
}

static uint64_t store_hash(void)
{
    uint64_t h = 1469598103934665603ULL;
    assert_int_equal(mvcc_walk(&m, hash_kv, &h), 0);
    h = (h ^ (uint64_t)mvcc_rev(&m)) * 1099511628211ULL;
    h = (h ^ (uint64_t)mvcc_compact_rev(&m)) * 1099511628211ULL;
    return h;
}

static int load_into(void *arg, const struct mvcc_kv *kv)
{
    return mvcc_load_kv(arg, kv);
}

static int stop_at_3(void *arg, const struct mvcc_kv *kv)
{
    int *n = arg;
    (void)kv;
    return ++*n == 3 ? 77 : 0;
}

static void test_walk_and_load(void **state)
{
    struct mvcc copy;
    uint64_t h;
    int n = 0;
    (void)state;

    put("a", "1");
    put("b", "2");
    del("a", NULL, 1);
    put("a", "3");
    assert_int_equal(mvcc_put(&m, S("l"), S("x"), 99, NULL), 0);
    assert_int_equal(mvcc_compact(&m, 3), 0);
    h = store_hash();
    assert_int_equal(mvcc_walk(&m, stop_at_3, &n), 77);
    assert_int_equal(n, 3);

    mvcc_init(&copy);
    assert_int_equal(mvcc_walk(&m, load_into, &copy), 0);
    assert_int_equal(
        mvcc_load_finish(&copy, mvcc_rev(&m), mvcc_compact_rev(&m)), 0);
    mvcc_swap(&m, &copy);
    assert_true(store_hash() == h);
    mvcc_close(&copy);
    assert_string_equal(range_str(S("a"), FROM_KEY, 0, 0, NULL),
                        "a=3@5/5/1 b=2@3/3/1 l=x@6/6/1");
}

static void test_load_rejects(void **state)
{
    struct mvcc_kv kv;
    (void)state;

    memset(&kv, 0, sizeof(kv));
    kv.key = (const uint8_t *)"k";
    kv.key_len = 1;
    kv.value = (const uint8_t *)"v";
    kv.value_len = 1;
    kv.mod_revision = 5;
    kv.create_revision = 5;
    kv.version = 1;
    assert_int_equal(mvcc_load_kv(&m, &kv), 0);
    /* Same revision again, older revision: out of order. */
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    kv.mod_revision = 4;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    /* Same main revision, higher sub: fine. */
    kv.mod_revision = 5;
    kv.sub = 1;
    kv.version = 2;
    assert_int_equal(mvcc_load_kv(&m, &kv), 0);
    /* create > mod, revision 0, negative version, empty key. */
    kv.mod_revision = 6;
    kv.create_revision = 7;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    kv.create_revision = 5;
    kv.version = -1;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    kv.version = 3;
    kv.key_len = 0;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    kv.key_len = 1;
    kv.mod_revision = 0;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    /* Tombstone with a value. */
    kv.mod_revision = 6;
    kv.version = 0;
    kv.create_revision = 0;
    assert_int_equal(mvcc_load_kv(&m, &kv), IK_EINVAL);
    kv.value_len = 0;
    assert_int_equal(mvcc_load_kv(&m, &kv), 0);
    /* Finish: revisions must cover what was loaded. */
    assert_int_equal(mvcc_load_finish(&m, 5, -1), IK_EINVAL);
    assert_int_equal(mvcc_load_finish(&m, 6, 7), IK_EINVAL);
    assert_int_equal(mvcc_load_finish(&m, 6, -2), IK_EINVAL);
    assert_int_equal(mvcc_load_finish(&m, 6, 2), 0);
    assert_int_equal(mvcc_rev(&m), 6);
    assert_string_equal(range_str(S("k"), NOEND, 5, 0, NULL), "k=v@5/5/2");
    assert_string_equal(range_str(S("k"), NOEND, 6, 0, NULL), "");
}

static int count_one(void *arg, const struct mvcc_kv *kv)
{
    (void)kv;
    (*(size_t *)arg)++;
    return 0;
}

/* Loaded history that the compacted revision already excludes (only a
 * crafted snapshot has any) is dropped by mvcc_load_finish(), so walks,
 * walk counts and stats agree. */
static void test_load_drops_compacted_history(void **state)
{
    struct mvcc_kv kv;
    struct mvcc_stats st;
    size_t walked = 0;
    int64_t mods[] = {2, 3, 4, 8};
    size_t i;
    (void)state;

    memset(&kv, 0, sizeof(kv));
    kv.key = (const uint8_t *)"k";
    kv.key_len = 1;
    kv.value = (const uint8_t *)"v";
    kv.value_len = 1;
    for (i = 0; i < 4; i++) {
        kv.mod_revision = mods[i];
        kv.create_revision = 2;
        kv.version = (int64_t)i + 1;
        assert_int_equal(mvcc_load_kv(&m, &kv), 0);
    }
    /* A key whose only version is a tombstone at or below the compaction. */
    kv.key = (const uint8_t *)"t";
    kv.mod_revision = 5;
    kv.create_revision = 0;
    kv.version = 0;
    kv.value_len = 0;
    assert_int_equal(mvcc_load_kv(&m, &kv), 0);
    assert_int_equal(mvcc_load_finish(&m, 9, 6), 0);
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 1);
    assert_int_equal(st.revisions, 2); /* k@4 (visible at 6) and k@8 */
    assert_int_equal(mvcc_walk_count(&m), 2);
    assert_int_equal(mvcc_walk(&m, count_one, &walked), 0);
    assert_int_equal(walked, 2);
    assert_string_equal(range_str(S("k"), NOEND, 6, 0, NULL), "k=v@2/4/3");
}

/* ---- Allocation failures ---- */
static int fail_countdown;
static bool fail_after(void)
{
    if (fail_countdown == 0) {
        return true;
    }
    fail_countdown--;
    return false;
}

static void test_alloc_failures(void **state)
{
    int i, failed = 0, succeeded = 0;
    (void)state;

    rng_state = 5;
    for (i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%03d", i);
        put(k, "seed");
    }
    /* Each op runs with the allocator failing after n allocations, n
     * growing until it succeeds; a failed op must change nothing. */
    for (i = 0; i < 300; i++) {
        int n;
        for (n = 0;; n++) {
            uint64_t before = store_hash();
            struct mvcc_stats st1, st2;
            int rv;
            char k[16], v[16];
            int64_t deleted;
            int kind = i % 3;

            snprintf(k, sizeof(k), "key%03d", (int)(rng() % 60));
            snprintf(v, sizeof(v), "val%d", i);
            mvcc_stats(&m, &st1);
            fail_countdown = n;
            mvcc_fail_alloc_hook = fail_after;
            btree_fail_alloc_hook = fail_after;
            if (kind == 0) {
                rv = mvcc_put(&m, S(k), S(v), 0, NULL);
            } else if (kind == 1) {
                rv =
                    mvcc_delete_range(&m, S("key0"), S("key1"), &deleted, NULL);
            } else {
                /* A txn of several puts, aborted on failure. */
                rv = mvcc_txn_begin(&m);
                if (rv == 0) {
                    int j;
                    for (j = 0; j < 5 && rv == 0; j++) {
                        char kk[16];
                        snprintf(kk, sizeof(kk), "t%d-%d", i, j);
                        rv = mvcc_txn_put(&m, S(kk), S(v), 0);
                    }
                    if (rv != 0) {
                        mvcc_txn_abort(&m);
                    } else {
                        mvcc_txn_end(&m);
                    }
                }
            }
            mvcc_fail_alloc_hook = NULL;
            btree_fail_alloc_hook = NULL;
            if (rv == 0) {
                succeeded++;
                break;
            }
            assert_int_equal(rv, IK_ENOMEM);
            failed++;
            assert_true(store_hash() == before);
            mvcc_stats(&m, &st2);
            assert_int_equal(st1.revisions, st2.revisions);
            assert_int_equal(st1.keys, st2.keys);
            assert_int_equal(st1.bytes, st2.bytes);
        }
        if (i % 50 == 49) {
            /* Ranges fail cleanly too. */
            struct mvcc_range_result rr;
            fail_countdown = 0;
            mvcc_fail_alloc_hook = fail_after;
            assert_int_equal(mvcc_range(&m, S("a"), FROM_KEY, 0, 0, false, &rr),
                             IK_ENOMEM);
            mvcc_fail_alloc_hook = NULL;
            assert_null(rr.kvs);
            /* Compaction never allocates. */
            fail_countdown = 0;
            mvcc_fail_alloc_hook = fail_after;
            assert_int_equal(mvcc_compact(&m, mvcc_rev(&m) - 3), 0);
            mvcc_fail_alloc_hook = NULL;
        }
    }
    assert_true(failed > 100);
    assert_int_equal(succeeded, 300);
}

/* The commit hook sees every committed change, once per txn. */
struct hook_log {
    int calls;
    char seen[256];
};

static void hook(void *arg, const struct mvcc *s)
{
    struct hook_log *log = arg;
    size_t i, off = strlen(log->seen);
    log->calls++;
    for (i = 0; i < mvcc_txn_changes(s); i++) {
        struct mvcc_kv kv, prev;
        bool had = mvcc_txn_change(s, i, &kv, &prev);
        off += (size_t)snprintf(
            log->seen + off, sizeof(log->seen) - off, "%.*s@%lld%s%s ",
            (int)kv.key_len, (const char *)kv.key, (long long)kv.mod_revision,
            kv.version == 0 ? "-del" : "", had ? "+prev" : "");
    }
    assert_int_equal(mvcc_rev(s) + 1, mvcc_txn_rev(s));
}

static void test_commit_hook(void **state)
{
    struct hook_log log;
    struct mvcc other;
    (void)state;

    memset(&log, 0, sizeof(log));
    mvcc_set_commit_hook(&m, hook, &log);
    put("a", "1");
    put("a", "2");
    del("zz", NULL, 0); /* no change: no call */
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_put(&m, S("b"), S("1"), 0), 0);
    mvcc_txn_abort(&m); /* aborted: no call */
    del("a", NULL, 1);
    assert_int_equal(log.calls, 3);
    assert_string_equal(log.seen, "a@2 a@3+prev a@4-del+prev ");
    /* Swapping contents keeps each store's hook. */
    mvcc_init(&other);
    mvcc_swap(&m, &other);
    put("c", "1");
    assert_int_equal(log.calls, 4);
    assert_int_equal(mvcc_put(&other, S("d"), S("1"), 0, NULL), 0);
    assert_int_equal(log.calls, 4);
    mvcc_close(&other);
    mvcc_set_commit_hook(&m, NULL, NULL);
    put("c", "2");
    assert_int_equal(log.calls, 4);
}

/* Memory per key for the layout (1000 keys of 16 bytes, 256-byte values):
 * guards against accidental bloat. */
static void test_memory_per_key(void **state)
{
    struct mvcc_stats st;
    char val[256];
    int i;
    (void)state;

    memset(val, 'v', sizeof(val));
    for (i = 0; i < 1000; i++) {
        char k[17];
        snprintf(k, sizeof(k), "/registry/k%05d", i);
        assert_int_equal(mvcc_put(&m, (const uint8_t *)k, 16,
                                  (const uint8_t *)val, sizeof(val), 0, NULL),
                         0);
    }
    mvcc_stats(&m, &st);
    assert_int_equal(st.keys, 1000);
    /* 256 value + 16 key + 40 version header + 32 key header. */
    assert_true(st.bytes / 1000 <= 256 + 16 + 40 + 32);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_initial_state),
        T(test_put_revisions),
        T(test_delete_and_recreate),
        T(test_range_forms),
        T(test_count_only),
        T(test_revision_errors),
        T(test_txn_shares_revision),
        T(test_txn_without_changes),
        T(test_txn_abort),
        T(test_leases_kept),
        T(test_compaction),
        T(test_compact_zero_and_txn),
        T(test_random_vs_model),
        T(test_walk_and_load),
        T(test_load_rejects),
        T(test_alloc_failures),
        T(test_load_drops_compacted_history),
        T(test_commit_hook),
        T(test_memory_per_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
