/*
 * snapstall: how long does taking a raft snapshot stall the loop?
 *
 * Builds an in-memory store of N keys ("key%07d", default 1,000,000) with
 * V-byte values (default 256), then runs a continuous stream of puts
 * (random existing keys) on this thread, which plays the server's event
 * loop, and records the longest gap between two consecutive puts while a
 * snapshot is taken:
 *
 *   sync   the old way: snapshot_encode() of the whole store on the loop;
 *   view   the new way: mvcc_view_take() on the loop, snapshot_encode_view()
 *          on a second thread (as raft's snapshot_async runs in libuv's
 *          thread pool), puts going on meanwhile, then mvcc_view_release()
 *          on the loop once the encoding is done; measured twice: with the
 *          view's data freed by that release on the loop (b1), and dropped
 *          by the thread with mvcc_view_discard() first (b2, as ikada's
 *          node.c does).
 *
 * Prints, for each: the longest pause, put latency percentiles and rate
 * during the snapshot, encode time, snapshot size, and RSS. Starts nothing
 * external; single process, one extra thread.
 *
 * usage: snapstall [keys [value_bytes [seconds_around]]]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "server/mvcc.h"
#include "snapshot/snapshot.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS and VmHWM of this process, in MiB. */
static void rss_mib(double *rss, double *hwm)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];

    *rss = *hwm = 0;
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            *rss = (double)atol(line + 6) / 1024.0;
        } else if (strncmp(line, "VmHWM:", 6) == 0) {
            *hwm = (double)atol(line + 6) / 1024.0;
        }
    }
    fclose(f);
}

/* Involuntary context switches of the calling thread so far: a pause with
 * them going up is (at least partly) the scheduler's, not the code's. */
static long preempted(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) {
        return -1;
    }
    return ru.ru_nivcsw;
}

/* Compact the history the put streams added, outside any measurement, so
 * every phase snapshots the same amount of data. */
static void settle(struct mvcc *m)
{
    if (mvcc_compact(m, mvcc_rev(m)) != 0) {
        fprintf(stderr, "compaction failed\n");
        exit(1);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* A value of printable bytes, so LZ4 has about as much to do as on real
 * text-like payloads. */
static void make_value(uint8_t *v, size_t n)
{
    static const char alpha[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    for (size_t i = 0; i < n; i++) {
        v[i] = (uint8_t)alpha[rng() % 64];
    }
}

static int put_random(struct mvcc *m, long keys, uint8_t *val, size_t vlen)
{
    char k[32];
    int n = snprintf(k, sizeof k, "key%07ld", (long)(rng() % (uint64_t)keys));

    val[rng() % vlen] = (uint8_t)('a' + rng() % 26);
    return mvcc_put(m, (const uint8_t *)k, (size_t)n, val, vlen, 0, NULL);
}

/* Put latencies of one measured stretch, in microseconds. */
struct lat {
    double *us;
    size_t n, cap;
    double max_gap; /* longest time between two put completions, seconds */
};

static void lat_add(struct lat *l, double us)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap == 0 ? 1 << 16 : l->cap * 2;
        double *p = realloc(l->us, ncap * sizeof *p);
        if (p == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        l->us = p;
        l->cap = ncap;
    }
    l->us[l->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct lat *l, double p)
{
    size_t i;
    if (l->n == 0) {
        return 0;
    }
    i = (size_t)(p / 100.0 * (double)(l->n - 1));
    return l->us[i];
}

static void lat_report(const char *what, struct lat *l, double secs)
{
    qsort(l->us, l->n, sizeof *l->us, cmp_double);
    printf("  %-26s %8zu puts, %7.0f puts/s, latency p50 %.1f us, "
           "p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
           what, l->n, secs > 0 ? (double)l->n / secs : 0.0, pct(l, 50),
           pct(l, 99), pct(l, 99.9), l->n > 0 ? l->us[l->n - 1] : 0.0);
}

/* Discard pacing: a short sleep every MVCC_DISCARD_PACE keys. */
static void pace_sleep(void *arg)
{
    struct timespec ts = {0, 1000000};
    (void)arg;
    nanosleep(&ts, NULL);
}

struct encode_job {
    struct mvcc_view *view;
    bool discard; /* drop the view's data on the thread (as ikada does) */
    bool pace;    /* ... paced (as ikada does) */
    void *buf;
    size_t len;
    size_t records;
    int rv;
    double secs, discard_secs;
    atomic_int done;
};

static void *encode_thread(void *arg)
{
    struct encode_job *j = arg;
    double t0 = now_s();

    j->records = mvcc_view_walk_count(j->view);
    j->rv = snapshot_encode_view(j->view, NULL, 0, &j->buf, &j->len);
    j->secs = now_s() - t0;
    if (j->discard) {
        t0 = now_s();
        mvcc_view_discard_paced(j->view, j->pace ? pace_sleep : NULL, NULL);
        j->discard_secs = now_s() - t0;
    }
    atomic_store_explicit(&j->done, 1, memory_order_release);
    return NULL;
}

/* CPU time of the calling thread: a wall-clock pause during which it
 * barely ran was the scheduler's (the machine is shared), a pause it spent
 * on the CPU was the code's. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where the longest pause of a phase happened, and the longest stretch
 * of loop CPU time between two puts. */
static const char *gap_where, *cpu_where;
static double cpu_last, cpu_gap;

static void gap_reset(void)
{
    gap_where = cpu_where = "-";
    cpu_gap = 0;
    cpu_last = cpu_s();
}

static void gap_note(double t, double *last, double *max_gap, const char *where)
{
    double c = cpu_s();

    if (t - *last > *max_gap) {
        *max_gap = t - *last;
        gap_where = where;
    }
    *last = t;
    if (c - cpu_last > cpu_gap) {
        cpu_gap = c - cpu_last;
        cpu_where = where;
    }
    cpu_last = c;
}

/* Run puts for @secs, tracking the longest gap since *last. */
static void stream(struct mvcc *m, long keys, uint8_t *val, size_t vlen,
                   double secs, double *last, double *max_gap,
                   const char *where)
{
    double end = now_s() + secs;

    for (;;) {
        double t;
        if (put_random(m, keys, val, vlen) != 0) {
            fprintf(stderr, "put failed\n");
            exit(1);
        }
        t = now_s();
        gap_note(t, last, max_gap, where);
        if (t >= end) {
            return;
        }
    }
}

/* Phase (b): see main(). */
static void run_view(struct mvcc *m, long keys, uint8_t *val, size_t vlen,
                     double around, bool discard, bool pace)
{
    struct encode_job job = {0};
    struct lat during = {0};
    struct mvcc_view *v;
    pthread_t th;
    double t0, t1, last, gap = 0, take_s, release_s, enc_start, enc_end;
    double rss, hwm, rss_before, rss_peak = 0;
    long ivcsw;

    settle(m);
    atomic_init(&job.done, 0);
    ivcsw = preempted();
    gap_reset();
    last = now_s();
    stream(m, keys, val, vlen, around, &last, &gap, "puts before");
    rss_mib(&rss_before, &hwm);
    t0 = now_s();
    if (mvcc_view_take(m, &v) != 0) {
        fprintf(stderr, "view failed\n");
        exit(1);
    }
    t1 = now_s();
    take_s = t1 - t0;
    gap_note(t1, &last, &gap, "view take");
    job.view = v;
    job.discard = discard;
    job.pace = pace;
    enc_start = now_s();
    if (pthread_create(&th, NULL, encode_thread, &job) != 0) {
        exit(1);
    }
    while (!atomic_load_explicit(&job.done, memory_order_acquire)) {
        double a = now_s();
        if (put_random(m, keys, val, vlen) != 0) {
            exit(1);
        }
        t1 = now_s();
        lat_add(&during, (t1 - a) * 1e6);
        gap_note(t1, &last, &gap, "puts during the encode");
        if ((during.n & 4095) == 0) {
            rss_mib(&rss, &hwm);
            if (rss > rss_peak) {
                rss_peak = rss;
            }
            gap_note(now_s(), &last, &gap, "reading RSS");
        }
    }
    enc_end = now_s();
    pthread_join(th, NULL);
    if (job.rv != 0) {
        fprintf(stderr, "view encode failed\n");
        exit(1);
    }
    rss_mib(&rss, &hwm);
    if (rss > rss_peak) {
        rss_peak = rss;
    }
    t0 = now_s();
    mvcc_view_release(v);
    t1 = now_s();
    release_s = t1 - t0;
    gap_note(t1, &last, &gap, "view release");
    stream(m, keys, val, vlen, around, &last, &gap, "puts after");
    ivcsw = preempted() - ivcsw;
    rss_mib(&rss, &hwm);
    printf("(b%d) view on the loop + snapshot_encode_view on a thread, view "
           "data dropped by %s:\n",
           discard ? (pace ? 3 : 2) : 1,
           discard ? (pace ? "the thread, paced (1 ms sleep every 2048 keys)"
                           : "the thread")
                   : "the loop's release");
    printf("  longest pause between puts  %.3f ms wall at %s; %.3f ms of "
           "loop CPU at %s (loop preempted %ld times in the phase)\n",
           gap * 1e3, gap_where, cpu_gap * 1e3, cpu_where, ivcsw);
    printf("  view take %.1f us, view release %.3f ms (on the loop)",
           take_s * 1e6, release_s * 1e3);
    if (discard) {
        printf(", discard %.1f ms (on the thread)", job.discard_secs * 1e3);
    }
    printf("\n  encode time %.1f ms on the thread (%zu records), snapshot "
           "%.1f MiB\n",
           job.secs * 1e3, job.records, (double)job.len / 1048576.0);
    lat_report("puts during the encode", &during, enc_end - enc_start);
    printf("  RSS before %.0f MiB, peak during %.0f MiB, after release %.0f "
           "MiB, process peak %.0f MiB\n",
           rss_before, rss_peak, rss, hwm);
    free(job.buf);
    free(during.us);
}

int main(int argc, char **argv)
{
    long keys = argc > 1 ? atol(argv[1]) : 1000000;
    size_t vlen = argc > 2 ? (size_t)atol(argv[2]) : 256;
    double around = argc > 3 ? atof(argv[3]) : 0.5;
    struct mvcc m;
    uint8_t *val;
    double t0, t1, rss, hwm, last, gap;
    long ivcsw;
    struct lat base = {0};
    void *sync_buf = NULL;
    size_t sync_len = 0, sync_records;

    if (keys < 1 || vlen < 1 || around <= 0) {
        fprintf(stderr, "usage: %s [keys [value_bytes [seconds_around]]]\n",
                argv[0]);
        return 2;
    }
    val = malloc(vlen);
    if (val == NULL) {
        return 1;
    }
    mvcc_init(&m);
    t0 = now_s();
    for (long i = 0; i < keys; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "key%07ld", i);
        make_value(val, vlen);
        if (mvcc_put(&m, (const uint8_t *)k, (size_t)n, val, vlen, 0, NULL) !=
            0) {
            fprintf(stderr, "build failed at %ld\n", i);
            return 1;
        }
    }
    t1 = now_s();
    rss_mib(&rss, &hwm);
    printf("store: %ld keys, %zu-byte values, built in %.2f s; RSS %.0f MiB "
           "(%.0f bytes/key)\n",
           keys, vlen, t1 - t0, rss, rss * 1048576.0 / (double)keys);

    /* Baseline: puts with no snapshot at all. */
    t0 = now_s();
    while (now_s() - t0 < around) {
        double a = now_s();
        if (put_random(&m, keys, val, vlen) != 0) {
            return 1;
        }
        lat_add(&base, (now_s() - a) * 1e6);
    }
    printf("baseline (no snapshot):\n");
    lat_report("puts", &base, now_s() - t0);

    /* (a) synchronous encode on the loop. */
    settle(&m);
    gap = 0;
    ivcsw = preempted();
    gap_reset();
    last = now_s();
    stream(&m, keys, val, vlen, around, &last, &gap, "puts before");
    sync_records = mvcc_walk_count(&m);
    t0 = now_s();
    if (snapshot_encode(&m, NULL, 0, &sync_buf, &sync_len) != 0) {
        fprintf(stderr, "encode failed\n");
        return 1;
    }
    t1 = now_s();
    gap_note(t1, &last, &gap, "snapshot_encode");
    stream(&m, keys, val, vlen, around, &last, &gap, "puts after");
    ivcsw = preempted() - ivcsw;
    rss_mib(&rss, &hwm);
    printf("(a) sync snapshot_encode on the loop:\n");
    printf("  longest pause between puts  %.1f ms wall at %s; %.1f ms of "
           "loop CPU at %s (loop preempted %ld times in the phase)\n",
           gap * 1e3, gap_where, cpu_gap * 1e3, cpu_where, ivcsw);
    printf("  encode time %.1f ms (%zu records), snapshot %.1f MiB, RSS %.0f "
           "MiB, process peak %.0f MiB\n",
           (t1 - t0) * 1e3, sync_records, (double)sync_len / 1048576.0, rss,
           hwm);
    free(sync_buf);

    /* (b) view on the loop, encode on another thread; the view's data
     * dropped by the loop's release (b1) or by the thread (b2, what
     * ikada's raft snapshot does). */
    run_view(&m, keys, val, vlen, around, false, false);
    run_view(&m, keys, val, vlen, around, true, false);
    run_view(&m, keys, val, vlen, around, true, true);
    mvcc_close(&m);
    free(val);
    free(base.us);
    return 0;
}
