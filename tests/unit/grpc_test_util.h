/*
 * grpc_test_util: helpers shared by the gRPC unit tests (test_grpc,
 * test_grpc_client, test_grpc_frame). Header-only, with internal linkage:
 * include it once, from the test program's one source file.
 *
 * failing_alloc: a struct grpc_allocator over libc that counts live blocks
 * (fa.live) and fails every allocation once fa.budget allocations have
 * succeeded (fa.budget < 0: never; 0: fail now), counting the failures
 * (fa.failures). Reset fa between tests: fa.budget = -1, fa.live = 0,
 * fa.failures = 0. fa_sweep() drives a scenario through every
 * allocation failure point.
 *
 * put_grpc_prefix() writes a message prefix.
 *
 * Server-side method handlers (grpc.h) that both core tests serve, static
 * inline so that a program may leave them unused; they assert with cmocka
 * (include <cmocka.h> first):
 *  - sstream_msg: the request is a decimal count N; answers "msg-0" ..
 *    "msg-<N-1>", then OK.
 *  - bidi_msg: echoes every message (the call stays open).
 *  - failing_msg: ends the call NOT_FOUND with a message that needs
 *    percent-encoding ("n\xc3\xb6t 100% found\n").
 */
#ifndef IKADA_TESTS_GRPC_TEST_UTIL_H
#define IKADA_TESTS_GRPC_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/grpc.h"

static struct {
    long budget; /* allocations left; < 0: unlimited */
    long live;
    long failures;
} fa;

/* Take one allocation from the budget; false when it is spent. */
static bool fa_take(void)
{
    if (fa.budget == 0) {
        fa.failures++;
        return false;
    }
    if (fa.budget > 0) {
        fa.budget--;
    }
    return true;
}

static void *fa_malloc(size_t size, void *ud)
{
    (void)ud;
    if (!fa_take()) {
        return NULL;
    }
    fa.live++;
    return malloc(size);
}

static void fa_free(void *p, void *ud)
{
    (void)ud;
    if (p != NULL) {
        fa.live--;
        free(p);
    }
}

static void *fa_calloc(size_t n, size_t size, void *ud)
{
    void *p = fa_malloc(n * size, ud);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

static void *fa_realloc(void *p, size_t size, void *ud)
{
    if (p == NULL) {
        return fa_malloc(size, ud);
    }
    return fa_take() ? realloc(p, size) : NULL;
}

static const struct grpc_allocator failing_alloc = {
    fa_malloc, fa_free, fa_calloc, fa_realloc, NULL};

/*
 * Run @round(budget) for budget 0, 1, ... until it succeeds (returns true),
 * which must happen below @max_budget; every failed round must have hit an
 * allocation failure, and more than @min_failed rounds must have failed.
 * Then one more round with no limit (-1) must succeed. @round sets
 * fa.budget itself and must clean up (no leak) whatever happens.
 */
static inline void fa_sweep(bool (*round)(long budget), long max_budget,
                            long min_failed)
{
    long budget, failed_rounds = 0;
    for (budget = 0; budget < max_budget; budget++) {
        fa.failures = 0;
        if (round(budget)) {
            break;
        }
        assert_true(fa.failures > 0);
        failed_rounds++;
    }
    assert_true(budget < max_budget);
    print_message("failing allocator: %ld rounds failed cleanly\n",
                  failed_rounds);
    assert_true(failed_rounds > min_failed);
    fa.budget = -1;
    assert_true(round(-1));
}

/* Write a gRPC message prefix at @out: @flag, then @len big-endian (tests
 * may claim a length other than the payload's). */
static inline void put_grpc_prefix(uint8_t *out, uint8_t flag, size_t len)
{
    out[0] = flag;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* Server-side handlers */

static inline void sstream_msg(struct grpc_call *call, const uint8_t *d,
                               size_t n)
{
    char buf[32];
    int count, i;
    assert_true(n < sizeof(buf));
    memcpy(buf, d, n);
    buf[n] = '\0';
    count = atoi(buf);
    for (i = 0; i < count; i++) {
        snprintf(buf, sizeof(buf), "msg-%d", i);
        assert_int_equal(
            grpc_call_send(call, (const uint8_t *)buf, strlen(buf)), 0);
    }
    grpc_call_finish(call, GRPC_OK, NULL);
}

static inline void bidi_msg(struct grpc_call *call, const uint8_t *d, size_t n)
{
    assert_int_equal(grpc_call_send(call, d, n), 0);
}

static inline void failing_msg(struct grpc_call *call, const uint8_t *d,
                               size_t n)
{
    (void)d;
    (void)n;
    grpc_call_finish(call, GRPC_NOT_FOUND, "n\xc3\xb6t 100% found\n");
}

#endif /* IKADA_TESTS_GRPC_TEST_UTIL_H */
