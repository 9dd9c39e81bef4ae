/*
 * report: latency summary of one benchmark measurement. See report.h for
 * the definitions (nearest-rank percentiles, equal-width histogram).
 */
#include "bench/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

#define HIST_BUCKETS 10
#define BAR_WIDTH 40

void report_init(struct report *r, report_realloc_fn realloc_fn)
{
    memset(r, 0, sizeof(*r));
    r->realloc_fn = realloc_fn != NULL ? realloc_fn : realloc;
    r->sorted = true;
}

void report_free(struct report *r)
{
    report_realloc_fn fn = r->realloc_fn;
    free(r->lat); /* the realloc function's memory goes with free() */
    report_init(r, fn);
}

int report_add(struct report *r, uint64_t ns)
{
    if (r->n == r->cap) {
        size_t ncap = r->cap != 0 ? r->cap * 2 : 1024;
        uint64_t *p;
        if (ncap > SIZE_MAX / sizeof(*p)) {
            return IK_ENOMEM;
        }
        p = r->realloc_fn(r->lat, ncap * sizeof(*p));
        if (p == NULL) {
            return IK_ENOMEM;
        }
        r->lat = p;
        r->cap = ncap;
    }
    if (r->n > 0 && ns < r->lat[r->n - 1]) {
        r->sorted = false;
    }
    r->lat[r->n++] = ns;
    return 0;
}

void report_error(struct report *r, const char *text)
{
    char cut[REPORT_ERROR_TEXT_MAX + 1];
    size_t i;

    if (text == NULL || text[0] == '\0') {
        text = "unknown error";
    }
    snprintf(cut, sizeof(cut), "%s", text);
    r->errors++;
    for (i = 0; i < r->n_errs; i++) {
        if (strcmp(r->errs[i].text, cut) == 0) {
            r->errs[i].count++;
            return;
        }
    }
    if (r->n_errs < REPORT_MAX_ERROR_TEXTS) {
        memcpy(r->errs[r->n_errs].text, cut, sizeof(cut));
        r->errs[r->n_errs].count = 1;
        r->n_errs++;
        return;
    }
    r->other_errors++;
}

size_t report_count(const struct report *r)
{
    return r->n;
}

uint64_t report_errors(const struct report *r)
{
    return r->errors;
}

const char *report_error_text(const struct report *r, size_t i, uint64_t *count)
{
    if (i >= r->n_errs) {
        return NULL;
    }
    if (count != NULL) {
        *count = r->errs[i].count;
    }
    return r->errs[i].text;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static void ensure_sorted(struct report *r)
{
    if (!r->sorted) {
        qsort(r->lat, r->n, sizeof(*r->lat), cmp_u64);
        r->sorted = true;
    }
}

uint64_t report_percentile(struct report *r, double p)
{
    double x, rank;
    size_t idx;

    if (r->n == 0) {
        return 0;
    }
    ensure_sorted(r);
    if (!(p > 0)) { /* also NaN */
        return r->lat[0];
    }
    if (p >= 100) {
        return r->lat[r->n - 1];
    }
    /* p/100*n can land a hair above an integer through rounding (e.g.
     * 99.9/100*1000 = 999.0000000000001): take such values as the integer. */
    x = p / 100.0 * (double)r->n;
    rank = ceil(x - x * 1e-12);
    idx = rank < 1 ? 0 : (size_t)rank - 1;
    if (idx >= r->n) {
        idx = r->n - 1;
    }
    return r->lat[idx];
}

static double ns_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

void report_stats(struct report *r, double seconds, struct report_stats *out)
{
    double sum = 0, mean, var = 0;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->ops = r->n;
    out->errors = r->errors;
    out->seconds = isfinite(seconds) && seconds > 0 ? seconds : 0;
    out->rps = out->seconds > 0 ? (double)r->n / out->seconds : 0;
    if (r->n == 0) {
        return;
    }
    ensure_sorted(r);
    for (i = 0; i < r->n; i++) {
        sum += (double)r->lat[i];
    }
    mean = sum / (double)r->n;
    for (i = 0; i < r->n; i++) {
        double d = (double)r->lat[i] - mean;
        var += d * d;
    }
    out->min_ms = ns_ms(r->lat[0]);
    out->max_ms = ns_ms(r->lat[r->n - 1]);
    out->avg_ms = mean / 1e6;
    out->stddev_ms = sqrt(var / (double)r->n) / 1e6;
    out->p10_ms = ns_ms(report_percentile(r, 10));
    out->p25_ms = ns_ms(report_percentile(r, 25));
    out->p50_ms = ns_ms(report_percentile(r, 50));
    out->p75_ms = ns_ms(report_percentile(r, 75));
    out->p90_ms = ns_ms(report_percentile(r, 90));
    out->p95_ms = ns_ms(report_percentile(r, 95));
    out->p99_ms = ns_ms(report_percentile(r, 99));
    out->p999_ms = ns_ms(report_percentile(r, 99.9));
}

size_t report_histogram(struct report *r, struct report_bucket *out, size_t nb)
{
    uint64_t lo, hi, span;
    size_t i, b;

    if (r->n == 0 || nb == 0) {
        return 0;
    }
    ensure_sorted(r);
    lo = r->lat[0];
    hi = r->lat[r->n - 1];
    if (lo == hi) {
        out[0].upper_ns = hi;
        out[0].count = r->n;
        return 1;
    }
    span = hi - lo;
    for (b = 0; b < nb; b++) {
        /* min + span*(b+1)/nb without overflowing for any span */
        uint64_t k = (uint64_t)(b + 1);
        out[b].upper_ns =
            lo + (span / nb) * k + ((span % nb) * k) / (uint64_t)nb;
        out[b].count = 0;
    }
    out[nb - 1].upper_ns = hi;
    b = 0;
    for (i = 0; i < r->n; i++) {
        while (r->lat[i] > out[b].upper_ns) {
            b++; /* cannot pass the last bucket: its bound is the max */
        }
        out[b].count++;
    }
    return nb;
}

void report_print_text(struct report *r, double seconds, const char *title,
                       FILE *f)
{
    static const double pcts[] = {10, 25, 50, 75, 90, 95, 99, 99.9};
    struct report_bucket hist[HIST_BUCKETS];
    struct report_stats s;
    uint64_t most = 0;
    size_t nb, i;

    report_stats(r, seconds, &s);
    fprintf(f, "\n%s:\n", title != NULL ? title : "Summary");
    fprintf(f, "  Total:\t%.4f secs.\n", s.seconds);
    fprintf(f, "  Ops:\t%llu ok, %llu errors.\n", (unsigned long long)s.ops,
            (unsigned long long)s.errors);
    if (s.ops > 0) {
        fprintf(f, "  Slowest:\t%.4f ms.\n", s.max_ms);
        fprintf(f, "  Fastest:\t%.4f ms.\n", s.min_ms);
        fprintf(f, "  Average:\t%.4f ms.\n", s.avg_ms);
        fprintf(f, "  Stddev:\t%.4f ms.\n", s.stddev_ms);
    }
    fprintf(f, "  Requests/sec:\t%.4f\n", s.rps);

    nb = report_histogram(r, hist, HIST_BUCKETS);
    if (nb > 0) {
        fprintf(f, "\nResponse time histogram (ms):\n");
        for (i = 0; i < nb; i++) {
            if (hist[i].count > most) {
                most = hist[i].count;
            }
        }
        for (i = 0; i < nb; i++) {
            int bar = (int)(hist[i].count * BAR_WIDTH / most);
            fprintf(f, "  %10.4f [%llu]\t|", ns_ms(hist[i].upper_ns),
                    (unsigned long long)hist[i].count);
            for (int j = 0; j < bar; j++) {
                fputs("\xe2\x88\x8e", f); /* U+220E, a tombstone block */
            }
            fputc('\n', f);
        }
        fprintf(f, "\nLatency distribution:\n");
        for (i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
            fprintf(f, "  %g%% in %.4f ms.\n", pcts[i],
                    ns_ms(report_percentile(r, pcts[i])));
        }
    }
    if (r->errors > 0) {
        fprintf(f, "\nError distribution:\n");
        for (i = 0; i < r->n_errs; i++) {
            fprintf(f, "  [%llu]\t%s\n", (unsigned long long)r->errs[i].count,
                    r->errs[i].text);
        }
        if (r->other_errors > 0) {
            fprintf(f, "  [%llu]\t(other error texts)\n",
                    (unsigned long long)r->other_errors);
        }
    }
}

/* JSON has no NaN/Inf; keep every number finite. */
static double fin(double x)
{
    return isfinite(x) ? x : 0;
}

int report_format_json(const struct report_stats *s, char *buf, size_t len)
{
    return snprintf(buf, len,
                    "{\"ops\": %llu, \"errors\": %llu, \"seconds\": %.6f, "
                    "\"rps\": %.3f, \"latency_ms\": {\"min\": %.6f, "
                    "\"avg\": %.6f, \"p50\": %.6f, \"p90\": %.6f, "
                    "\"p99\": %.6f, \"p999\": %.6f, \"max\": %.6f}}",
                    (unsigned long long)s->ops, (unsigned long long)s->errors,
                    fin(s->seconds), fin(s->rps), fin(s->min_ms),
                    fin(s->avg_ms), fin(s->p50_ms), fin(s->p90_ms),
                    fin(s->p99_ms), fin(s->p999_ms), fin(s->max_ms));
}
