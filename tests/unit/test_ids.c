/*
 * Unit tests for server/ids.c.
 *
 * Every expected ID below was read from a REAL etcd 3.4.23 (/usr/bin/etcd)
 * started on loopback with the flags quoted in each test, via
 * `etcdctl member list -w json` and `etcdctl endpoint status -w json`
 * (decimal values as etcdctl printed them).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/crypto.h>

#include "server/errors.h"
#include "server/ids.h"

static uint64_t member_id(const char *const *urls, size_t n, const char *token,
                          int64_t t)
{
    uint64_t id = 0;
    assert_int_equal(ids_member_id(urls, n, token, t, &id), 0);
    return id;
}

/* etcd with all defaults except listen URLs (advertised peer URL
 * http://localhost:2380, --name default, token etcd-cluster):
 * member 10276657743932975437 (8e9e05c52164694d),
 * cluster 14841639068965178418 (cdf818194e3a8c32). */
static void test_default_member(void **state)
{
    const char *urls[] = {"http://localhost:2380"};
    uint64_t m, c;
    char buf[IDS_STRLEN];
    (void)state;
    m = member_id(urls, 1, "etcd-cluster", 0);
    assert_true(m == 10276657743932975437ULL);
    assert_string_equal(ids_format(m, buf), "8e9e05c52164694d");
    assert_int_equal(ids_cluster_id(&m, 1, &c), 0);
    assert_true(c == 14841639068965178418ULL);
    assert_string_equal(ids_format(c, buf), "cdf818194e3a8c32");
}

/* etcd --name solo --initial-advertise-peer-urls http://127.0.0.1:42380
 *      --initial-cluster solo=http://127.0.0.1:42380
 *      --initial-cluster-token ikada-test-1
 * member 4775127431603451243, cluster 1834075994603688464. */
static void test_single_member(void **state)
{
    const char *urls[] = {"http://127.0.0.1:42380"};
    uint64_t m, c;
    (void)state;
    m = member_id(urls, 1, "ikada-test-1", 0);
    assert_true(m == 4775127431603451243ULL);
    assert_int_equal(ids_cluster_id(&m, 1, &c), 0);
    assert_true(c == 1834075994603688464ULL);
}

/* Three etcd processes, --initial-cluster-token ikada-test-3,
 * --initial-cluster a=http://127.0.0.1:42380,b=http://127.0.0.1:42392,
 *                   b=http://127.0.0.1:42390,c=http://127.0.0.1:42400
 * (b advertises both of its URLs, given unsorted):
 * a 265566580621269366, b 16078586452516980119, c 17685183583714295076,
 * cluster 1158340644824026705. */
static void test_three_members(void **state)
{
    const char *a[] = {"http://127.0.0.1:42380"};
    const char *b[] = {"http://127.0.0.1:42392", "http://127.0.0.1:42390"};
    const char *b_sorted[] = {"http://127.0.0.1:42390",
                              "http://127.0.0.1:42392"};
    const char *c[] = {"http://127.0.0.1:42400"};
    uint64_t ids[3], rev[3], cid = 0;
    (void)state;
    ids[0] = member_id(a, 1, "ikada-test-3", 0);
    ids[1] = member_id(b, 2, "ikada-test-3", 0);
    ids[2] = member_id(c, 1, "ikada-test-3", 0);
    assert_true(ids[0] == 265566580621269366ULL);
    assert_true(ids[1] == 16078586452516980119ULL);
    assert_true(ids[2] == 17685183583714295076ULL);
    /* URL order does not matter, and the caller's array is untouched. */
    assert_true(member_id(b_sorted, 2, "ikada-test-3", 0) == ids[1]);
    assert_string_equal(b[0], "http://127.0.0.1:42392");
    assert_int_equal(ids_cluster_id(ids, 3, &cid), 0);
    assert_true(cid == 1158340644824026705ULL);
    /* Neither does member order. */
    rev[0] = ids[2];
    rev[1] = ids[0];
    rev[2] = ids[1];
    cid = 0;
    assert_int_equal(ids_cluster_id(rev, 3, &cid), 0);
    assert_true(cid == 1158340644824026705ULL);
    assert_true(rev[0] == ids[2]);
}

/* A one-member etcd (--initial-cluster a=http://127.0.0.1:42380, default
 * token: member 7383792418829112008, cluster 15875391935852295136), then
 * `etcdctl member add d --peer-urls=http://127.0.0.1:42410,
 * http://127.0.0.1:42411` at Unix time 1795295606 (the same second was
 * read before and after the call): new member 18332531866555581541.
 * etcd hashes runtime-added members with an EMPTY token plus the time. */
static void test_runtime_added_member(void **state)
{
    const char *a[] = {"http://127.0.0.1:42380"};
    const char *d[] = {"http://127.0.0.1:42411", "http://127.0.0.1:42410"};
    uint64_t m, c;
    (void)state;
    m = member_id(a, 1, "etcd-cluster", 0);
    assert_true(m == 7383792418829112008ULL);
    assert_int_equal(ids_cluster_id(&m, 1, &c), 0);
    assert_true(c == 15875391935852295136ULL);
    assert_true(member_id(d, 2, "", 1795295606) == 18332531866555581541ULL);
    assert_true(member_id(d, 2, NULL, 1795295606) == 18332531866555581541ULL);
    /* Another second, another ID. */
    assert_true(member_id(d, 2, "", 1795295607) != 18332531866555581541ULL);
}

static void test_duplicates_and_empty(void **state)
{
    const char *dup[] = {"http://b:1", "http://a:1", "http://b:1"};
    const char *dup2[] = {"http://b:1", "http://b:1", "http://a:1"};
    uint64_t ids[] = {5, 3, 5}, ids2[] = {5, 5, 3}, c1, c2;
    (void)state;
    /* Duplicates are hashed as many times as they appear. */
    assert_true(member_id(dup, 3, "t", 0) == member_id(dup2, 3, "t", 0));
    assert_true(member_id(dup, 3, "t", 0) != member_id(dup, 2, "t", 0));
    assert_int_equal(ids_cluster_id(ids, 3, &c1), 0);
    assert_int_equal(ids_cluster_id(ids2, 3, &c2), 0);
    assert_true(c1 == c2);
    /* Zero inputs: the hash of the token / of nothing, still defined. */
    assert_true(member_id(NULL, 0, "x", 0) != member_id(NULL, 0, "y", 0));
    assert_int_equal(ids_cluster_id(NULL, 0, &c1), 0);
    /* SHA-1("") starts da39a3ee5e6b4b0d. */
    assert_true(c1 == 0xda39a3ee5e6b4b0dULL);
}

static void test_format_parse(void **state)
{
    char buf[IDS_STRLEN];
    uint64_t id = 42;
    (void)state;
    assert_string_equal(ids_format(0, buf), "0");
    assert_string_equal(ids_format(UINT64_MAX, buf), "ffffffffffffffff");
    assert_string_equal(ids_format(0x1a, buf), "1a");
    assert_int_equal(ids_parse("8E9E05c52164694d", &id), 0);
    assert_true(id == 0x8e9e05c52164694dULL);
    assert_int_equal(ids_parse("ffffffffffffffff", &id), 0);
    assert_true(id == UINT64_MAX);
    id = 42;
    assert_int_equal(ids_parse("", &id), IK_EINVAL);
    assert_int_equal(ids_parse("1ffffffffffffffff", &id), IK_EINVAL);
    assert_int_equal(ids_parse("0x12", &id), IK_EINVAL);
    assert_int_equal(ids_parse("12 ", &id), IK_EINVAL);
    assert_int_equal(ids_parse("-1", &id), IK_EINVAL);
    assert_true(id == 42);
}

/* libcrypto allocation failures surface as IK_ENOMEM, *id untouched. */
static int crypto_fail;

static void *t_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return crypto_fail ? NULL : malloc(n);
}

static void *t_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return crypto_fail ? NULL : realloc(p, n);
}

static void t_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void test_crypto_alloc_failure(void **state)
{
    const char *urls[] = {"http://localhost:2380"};
    uint64_t id = 7, ids[] = {1, 2};
    (void)state;
    /* Warm up libcrypto first so that only the per-call context fails. */
    assert_int_equal(ids_member_id(urls, 1, "t", 0, &id), 0);
    crypto_fail = 1;
    id = 7;
    assert_int_equal(ids_member_id(urls, 1, "t", 0, &id), IK_ENOMEM);
    assert_true(id == 7);
    assert_int_equal(ids_cluster_id(ids, 2, &id), IK_ENOMEM);
    assert_true(id == 7);
    crypto_fail = 0;
    assert_int_equal(ids_member_id(urls, 1, "etcd-cluster", 0, &id), 0);
    assert_true(id == 10276657743932975437ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_member),
        cmocka_unit_test(test_single_member),
        cmocka_unit_test(test_three_members),
        cmocka_unit_test(test_runtime_added_member),
        cmocka_unit_test(test_duplicates_and_empty),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_crypto_alloc_failure),
    };
    /* Must happen before libcrypto allocates anything. */
    if (!CRYPTO_set_mem_functions(t_malloc, t_realloc, t_free)) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
