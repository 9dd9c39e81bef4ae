/* Unit tests for the auto-compaction policy (server/compactor.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/compactor.h"

#define MIN_MS (60ULL * 1000)
#define HOUR_MS (60 * MIN_MS)

/* Drive the compactor every @step ms up to @until, the store revision
 * growing by @rate per ms; returns the first compaction seen (0 if none)
 * and when it happened. */
static int64_t run_until(struct compactor *c, uint64_t *now, uint64_t step,
                         uint64_t until, int64_t rate, uint64_t *when)
{
    for (; *now <= until; *now += step) {
        /* @rate revisions per minute, or per second when @step < 1 min. */
        uint64_t unit = step < MIN_MS ? 1000 : MIN_MS;
        int64_t rev = 1 + (int64_t)(*now / unit) * rate;
        int64_t target = compactor_tick(c, *now, rev);
        if (target != 0) {
            *when = *now;
            return target;
        }
    }
    return 0;
}

static void disabled(void **state)
{
    struct compactor c;
    (void)state;
    assert_int_equal(compactor_init(&c, COMPACTOR_PERIODIC, 0, 0), 0);
    assert_int_equal(compactor_tick(&c, 10 * HOUR_MS, 1000), 0);
    assert_true(compactor_due_in(&c, 0) == UINT64_MAX);
    compactor_close(&c);
    assert_int_equal(compactor_init(&c, COMPACTOR_REVISION, -5, 0), 0);
    assert_int_equal(compactor_tick(&c, 10 * HOUR_MS, 1000), 0);
}

/* Retention 10 minutes: nothing before 10 minutes, then the revision of
 * (about) 10 minutes earlier, then every 10 minutes. */
static void periodic_short(void **state)
{
    struct compactor c;
    uint64_t now = 0, when = 0;
    int64_t target;
    (void)state;

    assert_int_equal(
        compactor_init(&c, COMPACTOR_PERIODIC, (int64_t)(10 * MIN_MS), 0), 0);
    target = run_until(&c, &now, 1000, 30 * MIN_MS, 1, &when);
    assert_int_equal(when, 10 * MIN_MS);
    /* Sampled at t=0: revision 1. */
    assert_int_equal(target, 1);
    now += 1000;
    target = run_until(&c, &now, 1000, 30 * MIN_MS, 1, &when);
    assert_int_equal(when, 20 * MIN_MS);
    /* The oldest sample kept is one retention period old. */
    assert_int_equal(target, 1 + (int64_t)(10 * 60));
    compactor_close(&c);
}

/* Retention 72h: the first compaction after 72h, then hourly. */
static void periodic_long(void **state)
{
    struct compactor c;
    uint64_t now = 0, when = 0;
    int64_t target;
    (void)state;

    assert_int_equal(
        compactor_init(&c, COMPACTOR_PERIODIC, (int64_t)(72 * HOUR_MS), 0), 0);
    /* One revision per minute. */
    target = run_until(&c, &now, MIN_MS, 80 * HOUR_MS, 1, &when);
    assert_int_equal(when, 72 * HOUR_MS);
    assert_int_equal(target, 1);
    now += MIN_MS;
    target = run_until(&c, &now, MIN_MS, 80 * HOUR_MS, 1, &when);
    assert_int_equal(when, 73 * HOUR_MS);
    /* The revision of 72 hours before 73h: the one sampled at 1h. */
    assert_int_equal(target, 1 + (int64_t)(HOUR_MS / MIN_MS));
    compactor_close(&c);
}

/* Revision mode: every 5 minutes, rev - retention, only when it moved. */
static void revision_mode(void **state)
{
    struct compactor c;
    uint64_t five = 5 * MIN_MS;
    (void)state;

    assert_int_equal(compactor_init(&c, COMPACTOR_REVISION, 100, 0), 0);
    assert_int_equal(compactor_due_in(&c, 0), five);
    assert_int_equal(compactor_tick(&c, five - 1, 1000), 0);
    assert_int_equal(compactor_tick(&c, five, 50), 0); /* 50-100 <= 0 */
    assert_int_equal(compactor_tick(&c, 2 * five, 1000), 900);
    assert_int_equal(compactor_tick(&c, 3 * five, 1000), 0); /* unchanged */
    assert_int_equal(compactor_tick(&c, 4 * five, 1500), 1400);
    compactor_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disabled),
        cmocka_unit_test(periodic_short),
        cmocka_unit_test(periodic_long),
        cmocka_unit_test(revision_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
