/*
 * report: latency bookkeeping and the printed summary of one benchmark
 * measurement, as a pure module (no I/O besides writing to a FILE the
 * caller hands in, no clock: the caller measures and passes numbers in).
 *
 * A report collects one latency per successful operation (nanoseconds,
 * exact integers) and counts failed operations, remembering the first
 * REPORT_MAX_ERROR_TEXTS distinct error texts with how often each occurred.
 * report_stats() sorts the latencies once and derives the summary:
 *
 *   min / max       smallest and largest latency
 *   avg / stddev    arithmetic mean and population standard deviation
 *   pXX             nearest-rank percentile: the smallest recorded latency
 *                   such that at least XX% of all latencies are <= it, i.e.
 *                   sorted[ceil(XX/100 * n) - 1] (p0 is the minimum)
 *   rps             ops / seconds (0 when seconds <= 0)
 *
 * With no successful operation every latency figure is 0.
 *
 * The histogram (report_histogram()) splits [min, max] into equal-width
 * buckets: bucket i covers (upper[i-1], upper[i]] with upper[i] = min +
 * (max - min) * (i + 1) / nbuckets (bucket 0 also holds min itself, the
 * last upper bound is exactly max).
 *
 * Memory: the latency array grows by doubling through the realloc function
 * given to report_init() (NULL: libc realloc), so tests can make it fail;
 * a failed growth leaves the report as it was and returns IK_ENOMEM. That
 * function must hand out memory that free() releases (a wrapper around
 * realloc()).
 *
 * Threading: none; a report belongs to one thread.
 */
#ifndef IKADA_BENCH_REPORT_H
#define IKADA_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Distinct error texts remembered (further distinct texts are only
 * counted, in report.other_errors). */
#define REPORT_MAX_ERROR_TEXTS 8
/* Longest error text kept (longer ones are cut). */
#define REPORT_ERROR_TEXT_MAX 240

typedef void *(*report_realloc_fn)(void *ptr, size_t size);

struct report_error {
    char text[REPORT_ERROR_TEXT_MAX + 1];
    uint64_t count;
};

struct report {
    /* Private; read with the functions below. */
    uint64_t *lat; /* nanoseconds */
    size_t n, cap;
    bool sorted;
    uint64_t errors;
    struct report_error errs[REPORT_MAX_ERROR_TEXTS];
    size_t n_errs;
    uint64_t other_errors; /* errors whose text did not fit errs[] */
    report_realloc_fn realloc_fn;
};

struct report_stats {
    uint64_t ops;    /* successful operations (latencies recorded) */
    uint64_t errors; /* failed operations */
    double seconds;  /* as passed to report_stats() */
    double rps;      /* ops / seconds */
    double min_ms, avg_ms, stddev_ms, max_ms;
    double p10_ms, p25_ms, p50_ms, p75_ms, p90_ms, p95_ms, p99_ms, p999_ms;
};

struct report_bucket {
    uint64_t upper_ns; /* inclusive upper bound */
    uint64_t count;
};

/* An empty report. @realloc_fn: NULL for libc realloc. Cannot fail; call
 * report_free() when done. */
void report_init(struct report *r, report_realloc_fn realloc_fn);

/* Release the latency array; the report is empty (and usable) again. */
void report_free(struct report *r);

/* Record one successful operation of @ns nanoseconds. Returns 0 or
 * IK_ENOMEM (the report is unchanged then). */
int report_add(struct report *r, uint64_t ns);

/* Record one failed operation with its error text (NULL or "" counts as
 * "unknown error"). Texts are compared after cutting to
 * REPORT_ERROR_TEXT_MAX bytes. Cannot fail. */
void report_error(struct report *r, const char *text);

/* Successful operations recorded so far. */
size_t report_count(const struct report *r);

/* Failed operations recorded so far. */
uint64_t report_errors(const struct report *r);

/* The @i-th distinct error text (0-based, in first-seen order) and its
 * count in *count, or NULL when @i is out of range. */
const char *report_error_text(const struct report *r, size_t i,
                              uint64_t *count);

/* Compute the summary over @seconds of wall time (sorts the latencies).
 * Never fails; every field is finite. */
void report_stats(struct report *r, double seconds, struct report_stats *out);

/* Nearest-rank percentile @p (0..100, clamped) in nanoseconds; 0 when the
 * report is empty. Sorts the latencies if needed. */
uint64_t report_percentile(struct report *r, double p);

/* Fill @nb buckets (see the top of this file) into @out. Returns how many
 * were filled: 0 when the report is empty or @nb is 0, 1 when every
 * latency is the same (one bucket holding all), @nb otherwise. Sorts the
 * latencies if needed. */
size_t report_histogram(struct report *r, struct report_bucket *out, size_t nb);

/* Print the human summary (totals, rate, latency figures, a 10-bucket
 * histogram with bars, the percentile list and the error distribution)
 * under the heading @title (NULL: "Summary") to @f. */
void report_print_text(struct report *r, double seconds, const char *title,
                       FILE *f);

/*
 * Format @s as one JSON object, no newline:
 *   {"ops": N, "errors": N, "seconds": S, "rps": R, "latency_ms": {"min": x,
 *    "avg": x, "p50": x, "p90": x, "p99": x, "p999": x, "max": x}}
 * into @buf of @len bytes. Returns the length the full text has (as
 * snprintf: if it is >= @len the output was cut, still NUL-terminated when
 * @len > 0).
 */
int report_format_json(const struct report_stats *s, char *buf, size_t len);

#endif /* IKADA_BENCH_REPORT_H */
