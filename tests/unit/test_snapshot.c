/* Unit tests for snapshot/: round trips, extra sections, corruption of
 * every byte, truncation at every length, crafted bad content, and
 * allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/mvcc.h"
#include "snapshot/snapshot.h"

#define S(x) (const uint8_t *)(x), strlen(x)

/* ---- helpers ---- */

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

/* A store with history, tombstones, re-created keys, leases, a multi-op
 * txn and a compaction. */
static void fill_store(struct mvcc *m)
{
    int i;
    char k[16], v[32];

    for (i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "key/%02d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        assert_int_equal(mvcc_put(m, S(k), S(v), i % 3 == 0 ? 7 : 0, NULL), 0);
    }
    for (i = 0; i < 50; i += 4) {
        snprintf(k, sizeof(k), "key/%02d", i);
        assert_int_equal(mvcc_delete_range(m, S(k), NULL, 0, NULL, NULL), 0);
    }
    assert_int_equal(mvcc_compact(m, 30), 0);
    for (i = 0; i < 50; i += 8) {
        snprintf(k, sizeof(k), "key/%02d", i);
        assert_int_equal(mvcc_put(m, S(k), S("again"), 0, NULL), 0);
    }
    assert_int_equal(mvcc_txn_begin(m), 0);
    assert_int_equal(mvcc_txn_put(m, S("txn/a"), S("1"), 0), 0);
    assert_int_equal(mvcc_txn_put(m, S("txn/b"), S(""), 42), 0);
    assert_int_equal(mvcc_txn_delete_range(m, S("key/1"), S("key/2"), NULL), 0);
    mvcc_txn_end(m);
    /* Binary key and value. */
    assert_int_equal(mvcc_put(m, (const uint8_t *)"\0\xff\x01", 3,
                              (const uint8_t *)"\0\0\0", 3, 0, NULL),
                     0);
}

static void test_round_trip(void **state)
{
    struct mvcc a, b;
    void *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    fill_store(&a);
    assert_int_equal(snapshot_encode(&a, NULL, 0, &buf, &len), 0);
    assert_non_null(buf);
    assert_memory_equal(buf, "IKADASNP", 8);
    assert_int_equal(snapshot_decode(buf, len, &b), 0);
    assert_true(store_hash(&a) == store_hash(&b));
    assert_int_equal(mvcc_rev(&b), mvcc_rev(&a));
    assert_int_equal(mvcc_compact_rev(&b), 30);
    {
        struct mvcc_stats sa, sb;
        mvcc_stats(&a, &sa);
        mvcc_stats(&b, &sb);
        assert_int_equal(sa.keys, sb.keys);
        assert_int_equal(sa.revisions, sb.revisions);
    }
    /* Reads at old revisions work on the restored store. */
    {
        struct mvcc_range_result r1, r2;
        size_t i;
        assert_int_equal(
            mvcc_range(&a, S("key/"), S("key0"), 40, 0, false, &r1), 0);
        assert_int_equal(
            mvcc_range(&b, S("key/"), S("key0"), 40, 0, false, &r2), 0);
        assert_int_equal(r1.n, r2.n);
        for (i = 0; i < r1.n; i++) {
            assert_int_equal(r1.kvs[i].mod_revision, r2.kvs[i].mod_revision);
            assert_int_equal(r1.kvs[i].lease, r2.kvs[i].lease);
        }
        mvcc_range_result_free(&r1);
        mvcc_range_result_free(&r2);
        assert_int_equal(mvcc_range(&b, S("key/"), NULL, 0, 29, 0, false, &r2),
                         IK_ECOMPACTED);
    }
    /* Deterministic: same store, same bytes; the copy encodes alike. */
    assert_int_equal(snapshot_encode(&b, NULL, 0, &buf2, &len2), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    /* The restored store keeps working: next write gets the next rev. */
    {
        int64_t rev;
        assert_int_equal(mvcc_put(&b, S("post"), S("x"), 0, &rev), 0);
        assert_int_equal(rev, mvcc_rev(&a) + 1);
    }
    free(buf);
    free(buf2);
    mvcc_close(&a);
    mvcc_close(&b);
}

static void test_empty_store(void **state)
{
    struct mvcc a, b;
    void *buf;
    size_t len;
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    assert_int_equal(mvcc_put(&b, S("old"), S("content"), 0, NULL), 0);
    assert_int_equal(snapshot_encode(&a, NULL, 0, &buf, &len), 0);
    assert_int_equal(snapshot_decode(buf, len, &b), 0);
    assert_int_equal(mvcc_rev(&b), 1);
    assert_int_equal(mvcc_compact_rev(&b), -1);
    assert_true(store_hash(&a) == store_hash(&b));
    free(buf);
    mvcc_close(&a);
    mvcc_close(&b);
}

static void test_extra_sections(void **state)
{
    struct mvcc a, b;
    void *buf, *data;
    size_t len, dlen;
    static const char leases[] = "lease section payload";
    struct snapshot_section extra[2] = {
        {SNAPSHOT_SECTION_LEASES, leases, sizeof(leases)},
        {SNAPSHOT_SECTION_MEMBERS, NULL, 0},
    };
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    fill_store(&a);
    assert_int_equal(snapshot_encode(&a, extra, 2, &buf, &len), 0);
    assert_int_equal(
        snapshot_section_get(buf, len, SNAPSHOT_SECTION_LEASES, &data, &dlen),
        0);
    assert_int_equal(dlen, sizeof(leases));
    assert_memory_equal(data, leases, dlen);
    free(data);
    assert_int_equal(
        snapshot_section_get(buf, len, SNAPSHOT_SECTION_MEMBERS, &data, &dlen),
        0);
    assert_int_equal(dlen, 0);
    assert_null(data);
    assert_int_equal(
        snapshot_section_get(buf, len, SNAPSHOT_SECTION_AUTH, &data, &dlen),
        IK_ENOENT);
    assert_null(data);
    /* The KV section can be read raw too. */
    assert_int_equal(
        snapshot_section_get(buf, len, SNAPSHOT_SECTION_KV, &data, &dlen), 0);
    assert_true(dlen > 24);
    free(data);
    /* Sections do not disturb the store. */
    assert_int_equal(snapshot_decode(buf, len, &b), 0);
    assert_true(store_hash(&a) == store_hash(&b));
    free(buf);
    /* Invalid extra sections. */
    buf = (void *)1;
    extra[1].type = SNAPSHOT_SECTION_LEASES;
    assert_int_equal(snapshot_encode(&a, extra, 2, &buf, &len), IK_EINVAL);
    assert_null(buf);
    extra[1].type = SNAPSHOT_SECTION_KV;
    assert_int_equal(snapshot_encode(&a, extra, 2, &buf, &len), IK_EINVAL);
    extra[1].type = SNAPSHOT_SECTION_META;
    extra[1].len = 5; /* with NULL data */
    assert_int_equal(snapshot_encode(&a, extra, 2, &buf, &len), IK_EINVAL);
    /* Open txn. */
    assert_int_equal(mvcc_txn_begin(&a), 0);
    assert_int_equal(snapshot_encode(&a, NULL, 0, &buf, &len), IK_EINVAL);
    assert_int_equal(snapshot_decode("x", 1, &a), IK_EINVAL);
    mvcc_txn_abort(&a);
    mvcc_close(&a);
    mvcc_close(&b);
}

/* Every single-byte change anywhere is caught: the header checksum covers
 * the header and the section table, the body checksums the rest. The
 * target store stays untouched. */
static void test_corrupt_every_byte(void **state)
{
    struct mvcc a, b;
    uint8_t *buf;
    void *p;
    size_t len, i;
    uint64_t before;
    static const char extra_data[] = "extra";
    struct snapshot_section extra = {SNAPSHOT_SECTION_LEASES, extra_data, 5};
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    fill_store(&a);
    assert_int_equal(mvcc_put(&b, S("target"), S("untouched"), 0, NULL), 0);
    before = store_hash(&b);
    assert_int_equal(snapshot_encode(&a, &extra, 1, &p, &len), 0);
    buf = p;
    for (i = 0; i < len; i++) {
        uint8_t orig = buf[i];
        int flip;
        for (flip = 0; flip < 2; flip++) {
            buf[i] = (uint8_t)(orig ^ (flip == 0 ? 0x01 : 0x80));
            assert_int_equal(snapshot_decode(buf, len, &b), IK_ECORRUPT);
        }
        buf[i] = orig;
    }
    assert_true(store_hash(&b) == before);
    assert_int_equal(snapshot_decode(buf, len, &b), 0);
    assert_true(store_hash(&b) == store_hash(&a));
    free(buf);
    mvcc_close(&a);
    mvcc_close(&b);
}

static void test_truncated(void **state)
{
    struct mvcc a, b;
    uint8_t *buf, *big;
    void *p, *data;
    size_t len, i, dlen;
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    fill_store(&a);
    assert_int_equal(snapshot_encode(&a, NULL, 0, &p, &len), 0);
    buf = p;
    for (i = 0; i < len; i++) {
        /* A fresh copy of exactly i bytes so ASan sees any over-read. */
        uint8_t *t = malloc(i > 0 ? i : 1);
        assert_non_null(t);
        memcpy(t, buf, i);
        assert_int_equal(snapshot_decode(t, i, &b), IK_ECORRUPT);
        assert_int_equal(
            snapshot_section_get(t, i, SNAPSHOT_SECTION_KV, &data, &dlen),
            IK_ECORRUPT);
        free(t);
    }
    assert_int_equal(snapshot_decode(NULL, 0, &b), IK_ECORRUPT);
    /* Trailing bytes are corruption too. */
    big = malloc(len + 1);
    assert_non_null(big);
    memcpy(big, buf, len);
    big[len] = 0;
    assert_int_equal(snapshot_decode(big, len + 1, &b), IK_ECORRUPT);
    free(big);
    assert_int_equal(mvcc_rev(&b), 1);
    free(buf);
    mvcc_close(&a);
    mvcc_close(&b);
}

/* ---- Hand-built snapshots with valid checksums but bad content ---- */

static void le32(uint8_t *p, uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void le64(uint8_t *p, uint64_t v)
{
    le32(p, (uint32_t)v);
    le32(p + 4, (uint32_t)(v >> 32));
}

struct raw {
    uint8_t b[4096];
    size_t n;
};

static void raw32(struct raw *r, uint32_t v)
{
    le32(r->b + r->n, v);
    r->n += 4;
}

static void raw64(struct raw *r, uint64_t v)
{
    le64(r->b + r->n, v);
    r->n += 8;
}

static void raw_rec(struct raw *r, const char *key, int64_t mod, uint32_t sub,
                    int64_t create, int64_t ver, const char *val)
{
    raw32(r, (uint32_t)strlen(key));
    memcpy(r->b + r->n, key, strlen(key));
    r->n += strlen(key);
    raw64(r, (uint64_t)mod);
    raw32(r, sub);
    raw64(r, (uint64_t)create);
    raw64(r, (uint64_t)ver);
    raw64(r, 0);
    raw32(r, (uint32_t)strlen(val));
    memcpy(r->b + r->n, val, strlen(val));
    r->n += strlen(val);
}

/* Knobs to build specific malformations. */
struct build_opts {
    uint32_t version;
    uint32_t type; /* of the single section */
    uint32_t codec;
    int64_t raw_len_delta; /* added to the recorded raw length */
    int block_raw_delta;   /* added to the block's raw length field */
    uint32_t flags;
    bool two_same; /* two sections of the same type */
    size_t gap;    /* bytes between table and first section */
};

static uint8_t *build(const struct raw *content, const struct build_opts *o,
                      size_t *out_len)
{
    int bound = LZ4_compressBound((int)content->n);
    uint32_t nsec = o->two_same ? 2 : 1, i;
    size_t table = 32 + 40 * (size_t)nsec;
    uint8_t *sec = malloc(8 + (size_t)bound), *buf;
    int clen = LZ4_compress_default((const char *)content->b, (char *)sec + 8,
                                    (int)content->n, bound);
    size_t slen = 8 + (size_t)clen, total = table + o->gap + slen * nsec;
    uint32_t crc;

    assert_true(clen > 0);
    le32(sec, (uint32_t)((int)content->n + o->block_raw_delta));
    le32(sec + 4, (uint32_t)clen);
    buf = calloc(1, total);
    assert_non_null(buf);
    memcpy(buf, "IKADASNP", 8);
    le32(buf + 8, o->version);
    le32(buf + 12, nsec);
    le64(buf + 16, total);
    le32(buf + 24, o->flags);
    for (i = 0; i < nsec; i++) {
        uint8_t *e = buf + 32 + 40 * i;
        size_t off = table + o->gap + slen * i;
        memcpy(buf + off, sec, slen);
        le32(e, o->type);
        le32(e + 4, o->codec);
        le64(e + 8, off);
        le64(e + 16, slen);
        le64(e + 24, (uint64_t)((int64_t)content->n + o->raw_len_delta));
        le32(e + 32, (uint32_t)crc32(0, sec, (uInt)slen));
    }
    crc = (uint32_t)crc32(0, buf, 28);
    crc = (uint32_t)crc32(crc, buf + 32, (uInt)(40 * nsec));
    le32(buf + 28, crc);
    free(sec);
    *out_len = total;
    return buf;
}

static const struct build_opts good_opts = {
    1, SNAPSHOT_SECTION_KV, 1, 0, 0, 0, false, 0};

static int try_decode(const struct raw *content, const struct build_opts *o)
{
    struct mvcc b;
    size_t len;
    uint8_t *buf = build(content, o, &len);
    int rv;
    mvcc_init(&b);
    rv = snapshot_decode(buf, len, &b);
    mvcc_close(&b);
    free(buf);
    return rv;
}

static void kv_header(struct raw *r, int64_t rev, int64_t crev, uint64_t n)
{
    r->n = 0;
    raw64(r, (uint64_t)rev);
    raw64(r, (uint64_t)crev);
    raw64(r, n);
}

static void test_crafted_content(void **state)
{
    struct raw r;
    struct build_opts o;
    (void)state;

    /* The builder itself makes a valid snapshot. */
    kv_header(&r, 5, -1, 2);
    raw_rec(&r, "a", 2, 0, 2, 1, "x");
    raw_rec(&r, "", 3, 0, 2, 2, "y"); /* same key */
    assert_int_equal(try_decode(&r, &good_opts), 0);

    /* Header-level problems. */
    o = good_opts;
    o.version = 2;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.flags = 1;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.codec = 2;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.type = SNAPSHOT_SECTION_LEASES; /* no KV section */
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.two_same = true;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.gap = 3;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.raw_len_delta = 1;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.raw_len_delta = -1;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.block_raw_delta = 1;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);
    o = good_opts;
    o.block_raw_delta = -1;
    assert_int_equal(try_decode(&r, &o), IK_ECORRUPT);

    /* Content-level problems. */
    kv_header(&r, 5, -1, 1);
    raw_rec(&r, "", 2, 0, 2, 1, "x"); /* "same key" first */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 2);
    raw_rec(&r, "a", 3, 0, 2, 1, "x");
    raw_rec(&r, "", 2, 0, 2, 2, "y"); /* out of order */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 2, -1, 1);
    raw_rec(&r, "a", 3, 0, 3, 1, "x"); /* above the current revision */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, 6, 0); /* compacted above current */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 0, -1, 0); /* revision 0 */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 1);
    raw_rec(&r, "a", 3, 0, 4, 1, "x"); /* create after mod */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 1);
    raw_rec(&r, "a", 3, 0, 0, 0, "x"); /* tombstone with a value */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 3); /* count says 3, only 1 record */
    raw_rec(&r, "a", 3, 0, 3, 1, "x");
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 1); /* trailing bytes after the records */
    raw_rec(&r, "a", 3, 0, 3, 1, "x");
    raw32(&r, 0);
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, UINT64_MAX); /* absurd count */
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 1); /* key length beyond the data */
    raw32(&r, 0x7fffffff);
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    kv_header(&r, 5, -1, 1); /* value length beyond the data */
    raw_rec(&r, "a", 3, 0, 3, 1, "");
    le32(r.b + r.n - 4, 0xfffffff0u);
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
    /* Too short for the KV header. */
    r.n = 10;
    assert_int_equal(try_decode(&r, &good_opts), IK_ECORRUPT);
}

/* Values and keys spanning several 1 MiB LZ4 blocks. */
static void test_multi_block(void **state)
{
    struct mvcc a, b;
    void *buf;
    size_t len;
    uint8_t *val;
    int i;
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    val = malloc(700000);
    assert_non_null(val);
    for (i = 0; i < 700000; i++) {
        val[i] = (uint8_t)(((unsigned)i * 7919u) >> 3); /* compressible-ish */
    }
    for (i = 0; i < 6; i++) {
        char k[16];
        snprintf(k, sizeof(k), "big%d", i);
        val[0] = (uint8_t)i;
        assert_int_equal(mvcc_put(&a, S(k), val, 700000, 0, NULL), 0);
    }
    assert_int_equal(snapshot_encode(&a, NULL, 0, &buf, &len), 0);
    assert_int_equal(snapshot_decode(buf, len, &b), 0);
    assert_true(store_hash(&a) == store_hash(&b));
    free(buf);
    free(val);
    mvcc_close(&a);
    mvcc_close(&b);
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

static void arm(int n)
{
    fail_countdown = n;
    snapshot_fail_alloc_hook = fail_after;
    mvcc_fail_alloc_hook = fail_after;
    btree_fail_alloc_hook = fail_after;
}

static void disarm(void)
{
    snapshot_fail_alloc_hook = NULL;
    mvcc_fail_alloc_hook = NULL;
    btree_fail_alloc_hook = NULL;
}

static void test_alloc_failures(void **state)
{
    struct mvcc a, b;
    void *buf = NULL, *good, *data;
    size_t len, good_len, dlen;
    uint64_t before;
    int n, rv, fails = 0;
    static const char x[] = "x";
    struct snapshot_section extra = {SNAPSHOT_SECTION_LEASES, x, 1};
    (void)state;

    mvcc_init(&a);
    mvcc_init(&b);
    fill_store(&a);
    assert_int_equal(mvcc_put(&b, S("keep"), S("me"), 0, NULL), 0);
    before = store_hash(&b);
    for (n = 0;; n++) {
        arm(n);
        rv = snapshot_encode(&a, &extra, 1, &buf, &len);
        disarm();
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
        assert_null(buf);
        fails++;
    }
    good = buf;
    good_len = len;
    for (n = 0;; n++) {
        arm(n);
        rv = snapshot_decode(good, good_len, &b);
        disarm();
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
        assert_true(store_hash(&b) == before);
        fails++;
    }
    assert_true(store_hash(&b) == store_hash(&a));
    for (n = 0;; n++) {
        arm(n);
        rv = snapshot_section_get(good, good_len, SNAPSHOT_SECTION_LEASES,
                                  &data, &dlen);
        disarm();
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
        assert_null(data);
        fails++;
    }
    free(data);
    assert_true(fails > 50);
    free(good);
    mvcc_close(&a);
    mvcc_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_store),
        cmocka_unit_test(test_extra_sections),
        cmocka_unit_test(test_corrupt_every_byte),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_crafted_content),
        cmocka_unit_test(test_multi_block),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
