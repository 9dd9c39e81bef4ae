/*
 * Unit tests of bench/report: percentiles, summary statistics, histogram,
 * error bookkeeping, text and JSON output, on known inputs, plus a failing
 * allocator.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/report.h"
#include "server/errors.h"

#define MS 1000000ull /* ns */

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * (fabs(want) + 1)) {
        fail_msg("got %.12f, want %.12f", got, want);
    }
}

/* 1..100 ms in a scrambled order. */
static void add_1_to_100(struct report *r)
{
    for (uint64_t i = 0; i < 100; i++) {
        uint64_t v = (i * 37) % 100 + 1;
        assert_int_equal(report_add(r, v * MS), 0);
    }
}

static void test_empty(void **state)
{
    struct report r;
    struct report_stats s;
    struct report_bucket h[4];
    (void)state;

    report_init(&r, NULL);
    assert_int_equal(report_count(&r), 0);
    assert_int_equal(report_errors(&r), 0);
    assert_int_equal(report_percentile(&r, 50), 0);
    assert_int_equal(report_histogram(&r, h, 4), 0);
    report_stats(&r, 2.0, &s);
    assert_int_equal(s.ops, 0);
    assert_int_equal(s.errors, 0);
    assert_close(s.seconds, 2.0);
    assert_close(s.rps, 0);
    assert_close(s.min_ms, 0);
    assert_close(s.max_ms, 0);
    assert_close(s.avg_ms, 0);
    assert_close(s.p99_ms, 0);
    assert_null(report_error_text(&r, 0, NULL));
    report_free(&r);
}

static void test_percentiles_known(void **state)
{
    struct report r;
    (void)state;

    report_init(&r, NULL);
    add_1_to_100(&r);
    assert_int_equal(report_count(&r), 100);
    /* nearest rank over 1..100: pXX is XX ms */
    assert_int_equal(report_percentile(&r, 0), 1 * MS);
    assert_int_equal(report_percentile(&r, 1), 1 * MS);
    assert_int_equal(report_percentile(&r, 10), 10 * MS);
    assert_int_equal(report_percentile(&r, 50), 50 * MS);
    assert_int_equal(report_percentile(&r, 50.5), 51 * MS);
    assert_int_equal(report_percentile(&r, 90), 90 * MS);
    assert_int_equal(report_percentile(&r, 99), 99 * MS);
    assert_int_equal(report_percentile(&r, 99.9), 100 * MS);
    assert_int_equal(report_percentile(&r, 100), 100 * MS);
    assert_int_equal(report_percentile(&r, 250), 100 * MS);
    assert_int_equal(report_percentile(&r, -3), 1 * MS);
    assert_int_equal(report_percentile(&r, NAN), 1 * MS);
    report_free(&r);

    /* 1000 values 1..1000 us: p99.9 is exactly the 999th, not rounded up
     * by floating-point noise (99.9/100*1000 is not exactly 999). */
    report_init(&r, NULL);
    for (uint64_t i = 1000; i >= 1; i--) {
        assert_int_equal(report_add(&r, i * 1000), 0);
    }
    assert_int_equal(report_percentile(&r, 99.9), 999 * 1000);
    assert_int_equal(report_percentile(&r, 99), 990 * 1000);
    assert_int_equal(report_percentile(&r, 50), 500 * 1000);
    report_free(&r);

    /* small sets */
    report_init(&r, NULL);
    assert_int_equal(report_add(&r, 7), 0);
    assert_int_equal(report_percentile(&r, 50), 7);
    assert_int_equal(report_percentile(&r, 99.9), 7);
    assert_int_equal(report_add(&r, 3), 0);
    assert_int_equal(report_percentile(&r, 50), 3); /* ceil(1)-1 = 0 */
    assert_int_equal(report_percentile(&r, 50.1), 7);
    report_free(&r);
}

static void test_stats_known(void **state)
{
    struct report r;
    struct report_stats s;
    (void)state;

    report_init(&r, NULL);
    add_1_to_100(&r);
    report_error(&r, "boom");
    report_stats(&r, 4.0, &s);
    assert_int_equal(s.ops, 100);
    assert_int_equal(s.errors, 1);
    assert_close(s.seconds, 4.0);
    assert_close(s.rps, 25.0);
    assert_close(s.min_ms, 1);
    assert_close(s.max_ms, 100);
    assert_close(s.avg_ms, 50.5);
    /* population stddev of 1..100 = sqrt((100^2-1)/12) */
    assert_close(s.stddev_ms, sqrt(9999.0 / 12.0));
    assert_close(s.p10_ms, 10);
    assert_close(s.p25_ms, 25);
    assert_close(s.p50_ms, 50);
    assert_close(s.p75_ms, 75);
    assert_close(s.p90_ms, 90);
    assert_close(s.p95_ms, 95);
    assert_close(s.p99_ms, 99);
    assert_close(s.p999_ms, 100);

    /* seconds <= 0 or not finite: no rate, no NaN */
    report_stats(&r, 0, &s);
    assert_close(s.rps, 0);
    assert_close(s.seconds, 0);
    report_stats(&r, NAN, &s);
    assert_close(s.rps, 0);
    assert_close(s.seconds, 0);
    report_stats(&r, -1, &s);
    assert_close(s.rps, 0);
    report_free(&r);

    /* a constant series: stddev exactly 0 */
    report_init(&r, NULL);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(report_add(&r, 2500000), 0);
    }
    report_stats(&r, 1.0, &s);
    assert_close(s.avg_ms, 2.5);
    assert_close(s.stddev_ms, 0);
    assert_close(s.min_ms, 2.5);
    assert_close(s.max_ms, 2.5);
    report_free(&r);
}

static void test_histogram(void **state)
{
    struct report r;
    struct report_bucket h[10];
    uint64_t total = 0;
    (void)state;

    report_init(&r, NULL);
    /* 0..100 ms in 10 buckets of 10 ms: bucket 0 = [0,10] (11 values),
     * the others (10k, 10k+10] (10 values each). */
    for (uint64_t i = 0; i <= 100; i++) {
        assert_int_equal(report_add(&r, (100 - i) * MS), 0);
    }
    assert_int_equal(report_histogram(&r, h, 10), 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(h[i].upper_ns, (uint64_t)(i + 1) * 10 * MS);
        assert_int_equal(h[i].count, i == 0 ? 11 : 10);
        total += h[i].count;
    }
    assert_int_equal(total, 101);
    report_free(&r);

    /* a skewed set: the last bound is exactly the max, uneven widths
     * rounded down */
    report_init(&r, NULL);
    assert_int_equal(report_add(&r, 5), 0);
    assert_int_equal(report_add(&r, 6), 0);
    assert_int_equal(report_add(&r, 6), 0);
    assert_int_equal(report_add(&r, 12), 0);
    assert_int_equal(report_histogram(&r, h, 3), 3);
    /* span 7: bounds 5+2=7, 5+4=9 (14/3), 12 */
    assert_int_equal(h[0].upper_ns, 7);
    assert_int_equal(h[0].count, 3);
    assert_int_equal(h[1].upper_ns, 9);
    assert_int_equal(h[1].count, 0);
    assert_int_equal(h[2].upper_ns, 12);
    assert_int_equal(h[2].count, 1);
    assert_int_equal(report_histogram(&r, h, 0), 0);
    report_free(&r);

    /* all equal: one bucket */
    report_init(&r, NULL);
    assert_int_equal(report_add(&r, 42), 0);
    assert_int_equal(report_add(&r, 42), 0);
    assert_int_equal(report_histogram(&r, h, 10), 1);
    assert_int_equal(h[0].upper_ns, 42);
    assert_int_equal(h[0].count, 2);
    report_free(&r);

    /* huge values do not overflow the bound arithmetic */
    report_init(&r, NULL);
    assert_int_equal(report_add(&r, 0), 0);
    assert_int_equal(report_add(&r, UINT64_MAX), 0);
    assert_int_equal(report_histogram(&r, h, 10), 10);
    assert_int_equal(h[0].count, 1);
    assert_int_equal(h[9].upper_ns, UINT64_MAX);
    assert_int_equal(h[9].count, 1);
    for (int i = 1; i < 10; i++) {
        assert_true(h[i].upper_ns > h[i - 1].upper_ns);
    }
    report_free(&r);
}

static void test_errors(void **state)
{
    struct report r;
    uint64_t n = 0;
    char longtext[600];
    char name[32];
    (void)state;

    report_init(&r, NULL);
    report_error(&r, "rpc error: code = Unavailable desc = x");
    report_error(&r, "second");
    report_error(&r, "rpc error: code = Unavailable desc = x");
    report_error(&r, NULL);
    report_error(&r, "");
    assert_int_equal(report_errors(&r), 5);
    assert_int_equal(report_count(&r), 0);
    assert_string_equal(report_error_text(&r, 0, &n),
                        "rpc error: code = Unavailable desc = x");
    assert_int_equal(n, 2);
    assert_string_equal(report_error_text(&r, 1, &n), "second");
    assert_int_equal(n, 1);
    assert_string_equal(report_error_text(&r, 2, &n), "unknown error");
    assert_int_equal(n, 2);
    assert_null(report_error_text(&r, 3, &n));

    /* only REPORT_MAX_ERROR_TEXTS distinct texts are kept */
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "e%d", i);
        report_error(&r, name);
    }
    assert_int_equal(report_errors(&r), 25);
    assert_non_null(report_error_text(&r, REPORT_MAX_ERROR_TEXTS - 1, &n));
    assert_null(report_error_text(&r, REPORT_MAX_ERROR_TEXTS, &n));
    assert_int_equal(r.other_errors, 20 - (REPORT_MAX_ERROR_TEXTS - 3));

    /* long texts are cut, and equal after the cut */
    report_free(&r);
    memset(longtext, 'a', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    report_error(&r, longtext);
    longtext[sizeof(longtext) - 2] = 'b'; /* differs past the cut */
    report_error(&r, longtext);
    assert_int_equal(strlen(report_error_text(&r, 0, &n)),
                     REPORT_ERROR_TEXT_MAX);
    assert_int_equal(n, 2);
    report_free(&r);
}

/* Capture report_print_text() output. */
static char *print_to_string(struct report *r, double secs, const char *title)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    report_print_text(r, secs, title, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_text(void **state)
{
    struct report r;
    char *out;
    (void)state;

    report_init(&r, NULL);
    add_1_to_100(&r);
    report_error(&r, "rpc error: code = Unavailable desc = gone");
    report_error(&r, "rpc error: code = Unavailable desc = gone");
    out = print_to_string(&r, 2.0, "Put summary");
    assert_non_null(strstr(out, "\nPut summary:\n"));
    assert_non_null(strstr(out, "  Total:\t2.0000 secs.\n"));
    assert_non_null(strstr(out, "  Ops:\t100 ok, 2 errors.\n"));
    assert_non_null(strstr(out, "  Slowest:\t100.0000 ms.\n"));
    assert_non_null(strstr(out, "  Fastest:\t1.0000 ms.\n"));
    assert_non_null(strstr(out, "  Average:\t50.5000 ms.\n"));
    assert_non_null(strstr(out, "  Requests/sec:\t50.0000\n"));
    assert_non_null(strstr(out, "Response time histogram (ms):\n"));
    /* span 99 ms in 10 buckets of 9.9 ms: (1, 10.9] holds 1..10, ...,
     * (90.1, 100] holds 91..100 */
    assert_non_null(strstr(out, "     10.9000 [10]\t|"));
    assert_non_null(strstr(out, "    100.0000 [10]\t|"));
    assert_non_null(strstr(out, "  99% in 99.0000 ms.\n"));
    assert_non_null(strstr(out, "  99.9% in 100.0000 ms.\n"));
    assert_non_null(strstr(out, "  50% in 50.0000 ms.\n"));
    assert_non_null(strstr(out, "Error distribution:\n  [2]\trpc error: "
                                "code = Unavailable desc = gone\n"));
    free(out);
    report_free(&r);

    /* nothing succeeded: no histogram, no latency lines, errors shown */
    report_init(&r, NULL);
    report_error(&r, "x");
    out = print_to_string(&r, 1.0, NULL);
    assert_non_null(strstr(out, "\nSummary:\n"));
    assert_non_null(strstr(out, "  Ops:\t0 ok, 1 errors.\n"));
    assert_null(strstr(out, "Slowest"));
    assert_null(strstr(out, "histogram"));
    assert_non_null(strstr(out, "  [1]\tx\n"));
    free(out);
    report_free(&r);
}

static void test_json(void **state)
{
    struct report r;
    struct report_stats s;
    char buf[1024], small[16];
    int n;
    (void)state;

    report_init(&r, NULL);
    add_1_to_100(&r);
    report_error(&r, "e");
    report_stats(&r, 4.0, &s);
    n = report_format_json(&s, buf, sizeof(buf));
    assert_int_equal((size_t)n, strlen(buf));
    assert_string_equal(
        buf, "{\"ops\": 100, \"errors\": 1, \"seconds\": 4.000000, "
             "\"rps\": 25.000, \"latency_ms\": {\"min\": 1.000000, "
             "\"avg\": 50.500000, \"p50\": 50.000000, \"p90\": 90.000000, "
             "\"p99\": 99.000000, \"p999\": 100.000000, "
             "\"max\": 100.000000}}");
    /* cut output still reports the full length, NUL-terminated */
    assert_int_equal(report_format_json(&s, small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    report_free(&r);

    /* empty report, non-finite input: still valid JSON numbers */
    report_init(&r, NULL);
    report_stats(&r, NAN, &s);
    s.avg_ms = NAN; /* as if a caller computed garbage */
    s.max_ms = INFINITY;
    report_format_json(&s, buf, sizeof(buf));
    assert_string_equal(
        buf, "{\"ops\": 0, \"errors\": 0, \"seconds\": 0.000000, "
             "\"rps\": 0.000, \"latency_ms\": {\"min\": 0.000000, "
             "\"avg\": 0.000000, \"p50\": 0.000000, \"p90\": 0.000000, "
             "\"p99\": 0.000000, \"p999\": 0.000000, \"max\": 0.000000}}");
    report_free(&r);
}

/* realloc that fails once @budget successful calls are used up */
static int alloc_budget;
static int alloc_failures;

static void *failing_realloc(void *p, size_t n)
{
    if (alloc_budget == 0) {
        alloc_failures++;
        return NULL;
    }
    alloc_budget--;
    return realloc(p, n);
}

static void test_failing_allocator(void **state)
{
    struct report r;
    struct report_stats s;
    size_t i;
    (void)state;

    /* no memory at all: nothing recorded, errors still counted */
    alloc_budget = 0;
    alloc_failures = 0;
    report_init(&r, failing_realloc);
    assert_int_equal(report_add(&r, 5), IK_ENOMEM);
    assert_int_equal(report_count(&r), 0);
    report_error(&r, "still counted");
    assert_int_equal(report_errors(&r), 1);
    assert_int_equal(alloc_failures, 1);
    report_free(&r);

    /* one block: the first 1024 fit, growth fails and keeps them */
    alloc_budget = 1;
    alloc_failures = 0;
    report_init(&r, failing_realloc);
    for (i = 0; i < 1024; i++) {
        assert_int_equal(report_add(&r, 1024 - i), 0);
    }
    assert_int_equal(report_add(&r, 1), IK_ENOMEM);
    assert_int_equal(report_add(&r, 1), IK_ENOMEM);
    assert_int_equal(alloc_failures, 2);
    assert_int_equal(report_count(&r), 1024);
    report_stats(&r, 1.0, &s);
    assert_int_equal(s.ops, 1024);
    assert_close(s.min_ms, 1e-6);
    assert_close(s.max_ms, 1024e-6);
    assert_int_equal(report_percentile(&r, 50), 512);
    /* the allocator is kept across report_free() */
    report_free(&r);
    alloc_budget = 1;
    assert_int_equal(report_add(&r, 9), 0);
    assert_int_equal(alloc_budget, 0);
    report_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_percentiles_known),
        cmocka_unit_test(test_stats_known),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_failing_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
