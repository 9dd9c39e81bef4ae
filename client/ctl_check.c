/* ctl_check.c: ikadactl's `check perf`, etcdctl 3.4's algorithm: N
 * clients take rate-limited puts of random 256-byte keys (1 KiB values)
 * under a prefix for 60 s; then the prefix is deleted (optionally
 * compacted and defragmented) and throughput, slowest request and
 * standard deviation are checked against the load's limits. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/ctl.h"
#include "client/ctl_cluster.h"
#include "server/errors.h"

#define FOREVER_MS (100ull * 365 * 24 * 3600 * 1000)

struct perf_load {
    const char *name, *model;
    int limit, clients, duration;
};

static const struct perf_load loads[] = {
    {"s", "s", 150, 50, 60},       {"small", "s", 150, 50, 60},
    {"m", "m", 1000, 200, 60},     {"medium", "m", 1000, 200, 60},
    {"l", "l", 8000, 500, 60},     {"large", "l", 8000, 500, 60},
    {"xl", "xl", 15000, 1000, 60}, {"xLarge", "xl", 15000, 1000, 60},
};

struct err_count {
    char *msg;
    int n;
};

struct perf {
    struct ctl *ctl;
    const struct perf_load *load;
    uv_loop_t loop;
    uv_timer_t tick;
    struct ikclient **cl;
    bool *busy;
    uint64_t *started; /* per client: start of its current put */
    size_t n_busy;
    const char *prefix;
    size_t plen;
    uint8_t key[256];
    uint8_t value[1024];
    /* the generator */
    uint64_t t0, end_ns, next_ns, interval_ns;
    size_t queued; /* ops issued but waiting for a free client */
    bool gen_done;
    /* results */
    double *lats;
    size_t n_lats, cap_lats;
    double sum;
    struct err_count *errs;
    size_t n_errs;
    /* progress bar */
    int bar_done;
    uint64_t bar_next;
};

struct put_call {
    struct perf *p;
    size_t client;
};

static uint64_t rand63(void)
{
    return (((uint64_t)random() << 33) ^ ((uint64_t)random() << 2) ^
            (uint64_t)random()) &
           (uint64_t)INT64_MAX;
}

/* binary.PutVarint into the reused key buffer (later bytes untouched). */
static void put_varint(uint8_t *b, int64_t x)
{
    uint64_t ux = (uint64_t)x << 1;
    if (x < 0)
        ux = ~ux;
    size_t i = 0;
    while (ux >= 0x80) {
        b[i++] = (uint8_t)(ux | 0x80);
        ux >>= 7;
    }
    b[i] = (uint8_t)ux;
}

static void record_error(struct perf *p, const char *msg)
{
    for (size_t i = 0; i < p->n_errs; i++)
        if (strcmp(p->errs[i].msg, msg) == 0) {
            p->errs[i].n++;
            return;
        }
    struct err_count *n = realloc(p->errs, (p->n_errs + 1) * sizeof *n);
    if (n == NULL)
        return;
    p->errs = n;
    p->errs[p->n_errs].msg = strdup(msg);
    p->errs[p->n_errs].n = 1;
    p->n_errs++;
}

static void start_put(struct perf *p, size_t i);

static void put_cb(void *data, int rc, ProtobufCMessage *resp,
                   const struct ikclient_status *st)
{
    struct put_call *pc = data;
    struct perf *p = pc->p;
    size_t i = pc->client;
    double secs = (double)(uv_hrtime() - p->started[i]) / 1e9;
    free(pc);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (rc == 0) {
        if (p->n_lats == p->cap_lats) {
            size_t cap = p->cap_lats ? p->cap_lats * 2 : 4096;
            double *n = realloc(p->lats, cap * sizeof *n);
            if (n) {
                p->lats = n;
                p->cap_lats = cap;
            }
        }
        if (p->n_lats < p->cap_lats) {
            p->lats[p->n_lats++] = secs;
            p->sum += secs;
        }
    } else {
        record_error(p, rc == IK_EGRPC && st ? ctl_go_error_string(st)
                                             : ik_strerror(rc));
    }
    p->busy[i] = false;
    p->n_busy--;
    if (p->queued > 0) {
        p->queued--;
        start_put(p, i);
    } else if (p->gen_done && p->n_busy == 0) {
        uv_stop(&p->loop);
    }
}

static void start_put(struct perf *p, size_t i)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    struct put_call *pc = malloc(sizeof *pc);
    uint8_t *key = malloc(p->plen + sizeof p->key);
    if (pc == NULL || key == NULL) {
        free(pc);
        free(key);
        record_error(p, "out of memory");
        return;
    }
    put_varint(p->key, (int64_t)rand63());
    memcpy(key, p->prefix, p->plen);
    memcpy(key + p->plen, p->key, sizeof p->key);
    req.key.data = key;
    req.key.len = p->plen + sizeof p->key;
    req.value.data = p->value;
    req.value.len = sizeof p->value;
    pc->p = p;
    pc->client = i;
    p->busy[i] = true;
    p->n_busy++;
    p->started[i] = uv_hrtime();
    if (ikclient_call_async(p->cl[i], "/etcdserverpb.KV/Put", &req.base,
                            &etcdserverpb__put_response__descriptor, 0,
                            FOREVER_MS, put_cb, pc) != 0) {
        free(pc);
        p->busy[i] = false;
        p->n_busy--;
        record_error(p, "out of memory");
    }
    free(key);
}

/* The progress bar, as pb.v1 draws it when stdout is not a terminal
 * (etcdctl's usual case under scripts): redrawn every 200 ms with \r,
 * " <cur> / <total>  <pct>% <eta>". */
static void bar_draw(struct perf *p)
{
    int total = p->load->duration, cur = p->bar_done;
    FILE *o = p->ctl->out;
    fprintf(o, "\r %d / %d %8.2f%%", cur, total,
            total ? 100.0 * cur / total : 100.0);
    if (cur > 0 && cur < total) {
        double elapsed = (double)(uv_hrtime() - p->t0) / 1e9;
        int eta = (int)(elapsed / cur * (total - cur) + 0.5);
        fprintf(o, " %02dm%02ds", eta / 60, eta % 60);
    }
    fflush(o);
}

static void tick_cb(uv_timer_t *t)
{
    struct perf *p = t->data;
    uint64_t now = uv_hrtime();
    if (now >= p->bar_next) {
        /* one step a second, drawn every 200 ms */
        int secs = (int)((now - p->t0) / 1000000000ull);
        p->bar_done = secs < p->load->duration ? secs : p->load->duration;
        p->bar_next += 200000000ull;
        bar_draw(p);
    }
    if (p->gen_done)
        return;
    if (now >= p->end_ns) {
        p->gen_done = true;
        if (p->n_busy == 0 && p->queued == 0)
            uv_stop(&p->loop);
        return;
    }
    /* a limiter with burst 1: one op per interval, no catching up */
    while (now >= p->next_ns) {
        size_t nc = (size_t)p->load->clients;
        if (p->queued >= nc)
            break; /* the channel is full: the generator blocks */
        size_t i;
        for (i = 0; i < nc && p->busy[i]; i++)
            ;
        if (i < nc)
            start_put(p, i);
        else
            p->queued++;
        p->next_ns += p->interval_ns;
        if (p->next_ns + p->interval_ns < now)
            p->next_ns = now;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_secs(FILE *o, const char *fmt, double v)
{
    char buf[64];
    if (isnan(v))
        snprintf(buf, sizeof buf, "NaN");
    else if (isinf(v))
        snprintf(buf, sizeof buf, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(buf, sizeof buf, "%f", v);
    fprintf(o, fmt, buf);
}

/* The range of every key starting with @prefix[0..len): *key points into
 * @prefix, *end is malloc'ed (clientv3.GetPrefixRangeEnd; the caller frees
 * end->data). Returns 0, or -1 when out of memory. */
static int prefix_range(const char *prefix, size_t len,
                        ProtobufCBinaryData *key, ProtobufCBinaryData *end)
{
    uint8_t *e = malloc(len + 1);
    if (e == NULL)
        return -1;
    memcpy(e, prefix, len);
    size_t elen = len;
    while (elen > 0 && e[elen - 1] == 0xff)
        elen--;
    if (elen == 0) {
        e[0] = 0;
        elen = 1;
    } else {
        e[elen - 1]++;
    }
    key->data = (uint8_t *)prefix;
    key->len = len;
    end->data = e;
    end->len = elen;
    return 0;
}

static int check_perf(struct ctl *ctl, int argc, char **argv)
{
    const char *load = "s", *prefix = "/etcdctl-check-perf/";
    bool auto_compact = false, auto_defrag = false;
    const struct ctl_flag flags[] = {
        {"load", 0, CTL_FLAG_STRING, &load, NULL, NULL},
        {"prefix", 0, CTL_FLAG_STRING, &prefix, NULL, NULL},
        {"auto-compact", 0, CTL_FLAG_BOOL, &auto_compact, NULL, NULL},
        {"auto-defrag", 0, CTL_FLAG_BOOL, &auto_defrag, NULL, NULL},
        {0}};
    int nargs, rc;
    const struct perf_load *pl = NULL;
    struct perf *p;
    struct ikclient *c0;
    struct ikclient_status st;
    FILE *o = ctl->out;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++)
        if (strcmp(load, loads[i].name) == 0)
            pl = &loads[i];
    if (pl == NULL)
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE, "unknown load option %s",
                        load);
    c0 = ctl_client(ctl);
    if (c0 == NULL)
        return CTL_EXIT_BAD_CONNECTION;

    /* the prefix must be empty */
    {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        Etcdserverpb__RangeResponse *r = NULL;
        if (prefix_range(prefix, strlen(prefix), &req.key, &req.range_end) != 0)
            return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
        req.limit = 1;
        rc = ikclient_call(c0, "/etcdserverpb.KV/Range", &req.base,
                           &etcdserverpb__range_response__descriptor,
                           IKCLIENT_IDEMPOTENT, (uint64_t)pl->duration * 1000,
                           (ProtobufCMessage **)&r, &st);
        free(req.range_end.data);
        if (rc != 0) {
            char *msg = ctl_cluster_error_text(ctl, rc, &st);
            ctl_fail(ctl, CTL_EXIT_ERROR, "%s", msg ? msg : "out of memory");
            free(msg);
            return CTL_EXIT_ERROR;
        }
        size_t n = r->n_kvs;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (n > 0) {
            char *buf = NULL;
            size_t blen = 0;
            FILE *m = open_memstream(&buf, &blen);
            if (m == NULL)
                return CTL_EXIT_ERROR;
            ctl_cluster_go_quote(m, prefix, strlen(prefix));
            fclose(m);
            rc = ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                          "prefix %s has keys. Delete with etcdctl del "
                          "--prefix %s first",
                          buf, prefix);
            free(buf);
            return rc;
        }
    }

    p = calloc(1, sizeof *p);
    if (p == NULL)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    p->ctl = ctl;
    p->load = pl;
    p->prefix = prefix;
    p->plen = strlen(prefix);
    p->cl = calloc((size_t)pl->clients, sizeof *p->cl);
    p->busy = calloc((size_t)pl->clients, sizeof *p->busy);
    p->started = calloc((size_t)pl->clients, sizeof *p->started);
    if (p->cl == NULL || p->busy == NULL || p->started == NULL ||
        uv_loop_init(&p->loop) != 0) {
        free(p->cl);
        free(p->busy);
        free(p->started);
        free(p);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    srandom((unsigned)uv_hrtime());
    for (int i = 0; i < pl->clients; i++) {
        struct ikclient_config cfg;
        char err[256] = "";
        /* ctl_client() above resolved the credentials: each client
         * authenticates before its first request */
        ctl_client_config(ctl, &cfg);
        cfg.loop = &p->loop;
        if (ikclient_new(&cfg, &p->cl[i], err, sizeof err) != 0) {
            rc = ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "%s", err);
            for (int j = 0; j < i; j++)
                ikclient_free(p->cl[j]);
            uv_run(&p->loop, UV_RUN_DEFAULT);
            uv_loop_close(&p->loop);
            free(p->cl);
            free(p->busy);
            free(p->started);
            free(p);
            return rc;
        }
    }

    p->t0 = uv_hrtime();
    p->end_ns = p->t0 + (uint64_t)pl->duration * 1000000000ull;
    p->interval_ns = 1000000000ull / (uint64_t)pl->limit;
    p->next_ns = p->t0;
    p->bar_next = p->t0 + 200000000ull;
    bar_draw(p);
    uv_timer_init(&p->loop, &p->tick);
    p->tick.data = p;
    uv_timer_start(&p->tick, tick_cb, 0, 1);
    uint64_t stats_start = uv_hrtime();
    uv_run(&p->loop, UV_RUN_DEFAULT);
    double total = (double)(uv_hrtime() - stats_start) / 1e9;
    /* like etcdctl's, the bar is left as last drawn (its Finish races
     * with the report and usually loses: no newline) */
    fflush(o);
    uv_timer_stop(&p->tick);
    uv_close((uv_handle_t *)&p->tick, NULL);
    for (int i = 0; i < pl->clients; i++)
        ikclient_free(p->cl[i]);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_loop_close(&p->loop);

    /* statistics as pkg/report computes them */
    double rps = (double)p->n_lats / total;
    double avg = p->sum / (double)p->n_lats, stddev = 0, slowest = 0;
    for (size_t i = 0; i < p->n_lats; i++)
        stddev += (p->lats[i] - avg) * (p->lats[i] - avg);
    stddev = sqrt(stddev / (double)p->n_lats);
    if (p->n_lats) {
        qsort(p->lats, p->n_lats, sizeof *p->lats, cmp_double);
        slowest = p->lats[p->n_lats - 1];
    }

    /* clean up the prefix */
    int64_t del_rev = 0;
    {
        Etcdserverpb__DeleteRangeRequest req =
            ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
        Etcdserverpb__DeleteRangeResponse *r = NULL;
        if (prefix_range(prefix, p->plen, &req.key, &req.range_end) != 0) {
            rc = ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
            goto out;
        }
        rc = ikclient_call(c0, "/etcdserverpb.KV/DeleteRange", &req.base,
                           &etcdserverpb__delete_range_response__descriptor, 0,
                           30000, (ProtobufCMessage **)&r, &st);
        free(req.range_end.data);
        if (rc != 0) {
            rc = ctl_fail_status(ctl, rc, &st);
            goto out;
        }
        del_rev = r->header ? r->header->revision : 0;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    if (auto_compact) {
        Etcdserverpb__CompactionRequest req =
            ETCDSERVERPB__COMPACTION_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        fprintf(o, "Compacting with revision %" PRId64 "\n", del_rev);
        fflush(o);
        req.revision = del_rev;
        req.physical = 1;
        rc = ikclient_call(c0, "/etcdserverpb.KV/Compact", &req.base,
                           &etcdserverpb__compaction_response__descriptor, 0,
                           30000, &r, &st);
        if (rc != 0) {
            rc = ctl_fail_status(ctl, rc, &st);
            goto out;
        }
        protobuf_c_message_free_unpacked(r, NULL);
        fprintf(o, "Compacted with revision %" PRId64 "\n", del_rev);
        fflush(o);
    }
    if (auto_defrag) {
        for (size_t i = 0; i < ikclient_endpoint_count(c0); i++) {
            Etcdserverpb__DefragmentRequest req =
                ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
            ProtobufCMessage *r = NULL;
            const char *ep = i < ctl->g.n_endpoints ? ctl->g.endpoints[i]
                                                    : ikclient_endpoint(c0, i);
            fputs("Defragmenting ", o);
            ctl_cluster_go_quote(o, ep, strlen(ep));
            fputc('\n', o);
            fflush(o);
            rc = ikclient_call_endpoint(
                c0, i, "/etcdserverpb.Maintenance/Defragment", &req.base,
                &etcdserverpb__defragment_response__descriptor, 30000, &r, &st);
            if (rc != 0) {
                rc = ctl_fail_status(ctl, rc, &st);
                goto out;
            }
            protobuf_c_message_free_unpacked(r, NULL);
            fputs("Defragmented ", o);
            ctl_cluster_go_quote(o, ep, strlen(ep));
            fputc('\n', o);
            fflush(o);
        }
    }

    bool ok = true;
    if (p->n_errs) {
        fputs("FAIL: too many errors\n", o);
        for (size_t i = 0; i < p->n_errs; i++)
            fprintf(o, "FAIL: ERROR(%s) -> %d\n", p->errs[i].msg, p->errs[i].n);
        ok = false;
    }
    if (rps / (double)pl->limit <= 0.9) {
        fprintf(o, "FAIL: Throughput too low: %d writes/s\n", (int)rps + 1);
        ok = false;
    } else {
        fprintf(o, "PASS: Throughput is %d writes/s\n", (int)rps + 1);
    }
    if (slowest > 0.5) {
        print_secs(o, "Slowest request took too long: %ss\n", slowest);
        ok = false;
    } else {
        print_secs(o, "PASS: Slowest request took %ss\n", slowest);
    }
    if (stddev > 0.1) {
        print_secs(o, "Stddev too high: %ss\n", stddev);
        ok = false;
    } else {
        print_secs(o, "PASS: Stddev is %ss\n", stddev);
    }
    fputs(ok ? "PASS\n" : "FAIL\n", o);
    fflush(o);
    rc = ok ? 0 : CTL_EXIT_ERROR;
out:
    for (size_t i = 0; i < p->n_errs; i++)
        free(p->errs[i].msg);
    free(p->errs);
    free(p->lats);
    free(p->cl);
    free(p->busy);
    free(p->started);
    free(p);
    return rc;
}

static const struct ctl_flag_doc perf_docs[] = {
    {"auto-compact", 0, "bool", "false",
     "compact the history the test made once it is done"},
    {"auto-defrag", 0, "bool", "false",
     "defragment the storage once the test is done (with --auto-compact)"},
    {"load", 0, "string", "s", "size of the test load: s, m, l or xl"},
    {"prefix", 0, "string", "/etcdctl-check-perf/",
     "key prefix under which the test writes"},
    {0}};

const struct ctl_command ctl_check_commands[] = {
    {.name = "check perf",
     .run = check_perf,
     .usage = "perf [options]",
     .summary = "Measure whether the cluster keeps up with a write load",
     .flags = perf_docs,
     .description =
         "Several clients write random keys under --prefix for 60 seconds\n"
         "at the rate the load sets; then the keys are deleted and the\n"
         "throughput, the slowest request and the latency spread are\n"
         "each reported as PASS or FAIL against the load's limits."},
    {0}};
