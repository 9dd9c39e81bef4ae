/*
 * ikada-bench: load generator for any etcd v3 endpoint (etcd 3.4 or ikada),
 * in the manner of etcd's tools/benchmark: the same subcommands and flag
 * names where they apply, and a latency report of the same shape.
 *
 *   ikada-bench [global flags] COMMAND [command flags] [ARGS]
 *
 * Commands: put, range KEY [END], txn-put, txn-mixed [KEY [END]], watch,
 * watch-latency, lease-keepalive (usage() below lists every flag).
 *
 * Design: one thread, one libuv loop. --conns gRPC connections (ikada's
 * client core, client/grpc_client*.h) are spread round-robin over
 * --endpoints; --clients independent request loops are spread round-robin
 * over the connections, each with at most one request in flight, so the
 * calls of many clients share one HTTP/2 connection as concurrent streams.
 * Before anything is measured every connection answers one
 * Maintenance.Status call (so dialing is not measured and an unreachable
 * endpoint fails at once, as etcd's tool fails at dial time).
 *
 * Every response is checked: gRPC status OK, the body decodes as the
 * expected message type and carries a response header (plus per-command
 * checks: txn results, lease id/TTL, watch event key and type). Only
 * checked successes count as ops; failures are counted with their text.
 *
 * The measured phase is run by the "engine": it hands out operations to
 * idle clients until --total operations were issued or --duration passed
 * (whichever comes first), optionally paced to --rate operations per second
 * (a fixed schedule: op k may start at t0 + k/rate), and ends when the last
 * operation in flight has completed. Elapsed time is from the start of the
 * phase to the last completion.
 *
 * Watch benchmarks carry the send time (uv_hrtime, 16 hex digits) at the
 * start of each put value, so a watcher can tell the put-to-event latency
 * from the event alone; hence --val-size >= 16 there.
 *
 * Exit status: 0 when the benchmark ran (its report may still show errors),
 * 1 when it could not run (unreachable endpoint, setup failure), 2 on bad
 * usage.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "bench/report.h"
#include "client/grpc_client.h"
#include "client/grpc_client_uv.h"
#include "client/ikclient.h"
#include "proto/rpc.pb-c.h"
#include "server/errors.h"

#define BENCH_VERSION "0.1.0"
#define MAX_TXN_OPS 128
#define ERROR_BACKOFF_MS 10
#define SETUP_MIN_MS 30000
#define PROGRESS_MS 250
#define TS_HEX 16 /* send-time prefix of watch put values */

/* ------------------------------------------------------------------------ */
/* Options */

enum cmd {
    CMD_PUT = 1u << 0,
    CMD_RANGE = 1u << 1,
    CMD_TXN_PUT = 1u << 2,
    CMD_TXN_MIXED = 1u << 3,
    CMD_WATCH = 1u << 4,
    CMD_WATCH_LATENCY = 1u << 5,
    CMD_LEASE = 1u << 6,
};
#define CMD_ALL 0x7fu
#define CMD_WATCHES (CMD_WATCH | CMD_WATCH_LATENCY)

struct endpoint {
    char host[256];
    uint16_t port;
};

struct opts {
    unsigned cmd;
    const char *cmd_name;
    const char *endpoints;
    struct endpoint *eps;
    size_t n_eps;
    uint64_t clients, conns;
    uint64_t total;    /* 0: no limit (only with a duration) */
    uint64_t duration; /* ms; 0: none */
    uint64_t timeout;  /* ms, per request */
    uint64_t key_size, val_size, key_space;
    bool seq_keys;
    double rate; /* ops/s; 0: unlimited */
    bool json;
    /* range, txn-mixed */
    const char *consistency;
    int64_t limit;
    bool count_only;
    const char *key, *end;
    /* txn */
    uint64_t txn_ops;
    double rw_ratio;
    /* watch */
    uint64_t streams, watch_per_stream, watched_key_total;
    /* lease */
    uint64_t lease_ttl;
};

enum ftype { F_U64, F_I64, F_DOUBLE, F_STR, F_BOOL, F_DURATION };

struct flagdef {
    const char *name;
    enum ftype type;
    size_t off;
    unsigned cmds;
    const char *help;
};

#define OFF(f) offsetof(struct opts, f)

static const struct flagdef flags[] = {
    {"endpoints", F_STR, OFF(endpoints), CMD_ALL,
     "comma-separated endpoints (host:port or http://host:port); "
     "connections are spread over them (default 127.0.0.1:2379)"},
    {"clients", F_U64, OFF(clients), CMD_ALL,
     "concurrent request loops, one request in flight each (default 1)"},
    {"conns", F_U64, OFF(conns), CMD_ALL,
     "gRPC (TCP) connections; clients share them (default 1)"},
    {"total", F_U64, OFF(total), CMD_ALL,
     "operations to issue (default 10000; no limit when only --duration "
     "is given)"},
    {"duration", F_DURATION, OFF(duration), CMD_ALL,
     "stop issuing after this long (e.g. 10s, 500ms; plain number: "
     "seconds)"},
    {"timeout", F_DURATION, OFF(timeout), CMD_ALL,
     "per-request deadline (default 10s)"},
    {"key-size", F_U64, OFF(key_size), CMD_ALL,
     "key size in bytes (default 8; watch commands 32)"},
    {"val-size", F_U64, OFF(val_size), CMD_ALL,
     "value size in bytes (default 8; watch commands 32, at least 16)"},
    {"key-space-size", F_U64, OFF(key_space), CMD_ALL,
     "number of distinct keys written (default 1)"},
    {"sequential-keys", F_BOOL, OFF(seq_keys), CMD_ALL,
     "use keys 0,1,2... in turn instead of random ones"},
    {"rate", F_DOUBLE, OFF(rate), CMD_ALL,
     "operations per second limit, 0 for none (default 0)"},
    {"json", F_BOOL, OFF(json), CMD_ALL,
     "print exactly one JSON object with the result on stdout"},
    {"consistency", F_STR, OFF(consistency), CMD_RANGE | CMD_TXN_MIXED,
     "l (linearizable, default) or s (serializable)"},
    {"limit", F_I64, OFF(limit), CMD_RANGE | CMD_TXN_MIXED,
     "maximum keys per range (range: 0 = none; txn-mixed: default 1000)"},
    {"count-only", F_BOOL, OFF(count_only), CMD_RANGE,
     "only ask for the count of keys"},
    {"txn-ops", F_U64, OFF(txn_ops), CMD_TXN_PUT,
     "puts per transaction, on distinct keys (default 1, at most 128)"},
    {"rw-ratio", F_DOUBLE, OFF(rw_ratio), CMD_TXN_MIXED,
     "reads per write (default 1; 0: writes only)"},
    {"streams", F_U64, OFF(streams), CMD_WATCHES,
     "watch streams, spread over the connections (default 10)"},
    {"watch-per-stream", F_U64, OFF(watch_per_stream), CMD_WATCHES,
     "watchers per stream (default watch 100, watch-latency 10)"},
    {"watchers-per-stream", F_U64, OFF(watch_per_stream), CMD_WATCHES,
     "same as --watch-per-stream"},
    {"watched-key-total", F_U64, OFF(watched_key_total), CMD_WATCH,
     "distinct keys watched, watcher i on key i mod N (default 1)"},
    {"put-total", F_U64, OFF(total), CMD_WATCHES, "same as --total"},
    {"put-rate", F_DOUBLE, OFF(rate), CMD_WATCHES,
     "puts per second (watch default 0 = unlimited, watch-latency 100)"},
    {"lease-ttl", F_U64, OFF(lease_ttl), CMD_LEASE,
     "TTL in seconds of each client's lease (default 100)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static bool flag_set[N_FLAGS];

static const struct {
    const char *name;
    unsigned cmd;
    const char *help;
} commands[] = {
    {"put", CMD_PUT, "Put requests"},
    {"range", CMD_RANGE, "Range requests on KEY [END]"},
    {"txn-put", CMD_TXN_PUT, "Txn requests of --txn-ops puts"},
    {"txn-mixed", CMD_TXN_MIXED,
     "Txn requests, a range on [KEY [END]] or a put (--rw-ratio)"},
    {"watch", CMD_WATCH,
     "watcher creation, then event delivery under concurrent puts"},
    {"watch-latency", CMD_WATCH_LATENCY,
     "put-to-event latency of many watchers on one key, puts paced"},
    {"lease-keepalive", CMD_LEASE,
     "LeaseKeepAlive round trips, one lease and stream per client"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    size_t i;
    fprintf(f, "usage: ikada-bench [flags] COMMAND [flags] [ARGS]\n\n"
               "Benchmark an etcd v3 endpoint (etcd 3.4 or ikada).\n\n"
               "Commands:\n");
    for (i = 0; i < N_COMMANDS; i++) {
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
    }
    fprintf(f, "\nFlags (commands they apply to in brackets when not all):\n");
    for (i = 0; i < N_FLAGS; i++) {
        fprintf(f, "  --%-20s %s", flags[i].name, flags[i].help);
        if (flags[i].cmds != CMD_ALL) {
            const char *sep = " [";
            for (size_t c = 0; c < N_COMMANDS; c++) {
                if (flags[i].cmds & commands[c].cmd) {
                    fprintf(f, "%s%s", sep, commands[c].name);
                    sep = ", ";
                }
            }
            fputc(']', f);
        }
        fputc('\n', f);
    }
    fprintf(f, "  --%-20s %s\n  --%-20s %s\n", "help", "this text", "version",
            "print the version");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (s == NULL || *s == '\0' || *s == '-' || isspace((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v;
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0) {
        return -1;
    }
    *out = v;
    return 0;
}

/* "1.5s", "200ms", "2m", "100us", "1h", or a plain number of seconds, into
 * milliseconds (rounded up to 1 ms when positive). */
static int parse_duration(const char *s, uint64_t *out_ms)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3},  {"ms", 1}, {"s", 1e3},
                 {"m", 60e3},  {"h", 3600e3}, {"", 1e3}};
    char *end;
    double v, ms;
    size_t i;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(v) || v < 0) {
        return -1;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            break;
        }
    }
    if (i == sizeof(units) / sizeof(units[0])) {
        return -1;
    }
    ms = v * units[i].ms;
    if (ms > 1e15) {
        return -1;
    }
    *out_ms = (uint64_t)ceil(ms);
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "t") == 0 ||
        strcmp(s, "TRUE") == 0 || strcmp(s, "True") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "f") == 0 ||
        strcmp(s, "FALSE") == 0 || strcmp(s, "False") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

/* One endpoint: [http://]host:port, host an IPv4 literal, a name or a
 * bracketed IPv6 literal. */
static int parse_endpoint(const char *s, struct endpoint *ep, char *err,
                          size_t errlen)
{
    const char *host, *colon;
    size_t hlen;
    uint64_t port;

    if (strncmp(s, "https://", 8) == 0 || strncmp(s, "unixs://", 8) == 0) {
        snprintf(err, errlen, "endpoint %s: TLS is not supported", s);
        return -1;
    }
    if (strncmp(s, "http://", 7) == 0) {
        s += 7;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':') {
            goto bad;
        }
        host = s + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            goto bad;
        }
        host = s;
        hlen = (size_t)(colon - s);
    }
    {
        char portbuf[16];
        size_t plen = strlen(colon + 1);
        if (plen > 0 && colon[1 + plen - 1] == '/') {
            plen--; /* http://host:port/ */
        }
        if (plen == 0 || plen >= sizeof(portbuf)) {
            goto bad;
        }
        memcpy(portbuf, colon + 1, plen);
        portbuf[plen] = '\0';
        if (parse_u64(portbuf, &port) != 0 || port == 0 || port > 65535) {
            goto bad;
        }
    }
    if (hlen == 0 || hlen >= sizeof(ep->host)) {
        goto bad;
    }
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = '\0';
    ep->port = (uint16_t)port;
    return 0;
bad:
    snprintf(err, errlen, "endpoint %s: want host:port", s);
    return -1;
}

static int parse_endpoints(struct opts *o, char *err, size_t errlen)
{
    const char *p = o->endpoints;
    size_t n = 1, i = 0;

    for (const char *q = p; *q; q++) {
        n += *q == ',';
    }
    o->eps = calloc(n, sizeof(*o->eps));
    if (o->eps == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[300];
        if (len > 0) {
            if (len >= sizeof(one)) {
                snprintf(err, errlen, "endpoint too long");
                return -1;
            }
            memcpy(one, p, len);
            one[len] = '\0';
            if (parse_endpoint(one, &o->eps[i], err, errlen) != 0) {
                return -1;
            }
            i++;
        }
        p += len + (comma != NULL);
    }
    if (i == 0) {
        snprintf(err, errlen, "--endpoints is empty");
        return -1;
    }
    o->n_eps = i;
    return 0;
}

static const struct flagdef *find_flag(const char *name, size_t len,
                                       size_t *idx)
{
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (strlen(flags[i].name) == len &&
            strncmp(flags[i].name, name, len) == 0) {
            *idx = i;
            return &flags[i];
        }
    }
    return NULL;
}

static int set_flag(struct opts *o, const struct flagdef *f, const char *val,
                    char *err, size_t errlen)
{
    void *p = (char *)o + f->off;
    int rv = 0;
    switch (f->type) {
    case F_U64:
        rv = parse_u64(val, p);
        break;
    case F_I64:
        rv = parse_i64(val, p);
        break;
    case F_DOUBLE:
        rv = parse_double(val, p);
        break;
    case F_STR:
        *(const char **)p = val;
        break;
    case F_BOOL:
        rv = parse_bool(val, p);
        break;
    case F_DURATION:
        rv = parse_duration(val, p);
        break;
    }
    if (rv != 0) {
        snprintf(err, errlen, "invalid argument \"%s\" for \"--%s\" flag", val,
                 f->name);
        return -1;
    }
    return 0;
}

static uint64_t digits(uint64_t v)
{
    uint64_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Parse argv into @o. Returns 0, 1 for --help/--version (already printed),
 * or -1 with the message in @err. */
static int parse_args(int argc, char **argv, struct opts *o, char *err,
                      size_t errlen)
{
    const char *pos[3];
    size_t n_pos = 0;
    int i;

    memset(o, 0, sizeof(*o));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (n_pos == 3) {
                    snprintf(err, errlen, "too many arguments");
                    return -1;
                }
                pos[n_pos++] = argv[i];
            }
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("ikada-bench %s\n", BENCH_VERSION);
            return 1;
        }
        if (a[0] == '-' && a[1] != '\0') {
            const char *name = a + (a[1] == '-' ? 2 : 1);
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            size_t idx;
            const struct flagdef *f = find_flag(name, len, &idx);
            const char *val;
            if (f == NULL) {
                snprintf(err, errlen, "unknown flag: %s", a);
                return -1;
            }
            if (eq != NULL) {
                val = eq + 1;
            } else if (f->type == F_BOOL) {
                val = "true";
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                snprintf(err, errlen, "flag needs an argument: --%s", f->name);
                return -1;
            }
            if (set_flag(o, f, val, err, errlen) != 0) {
                return -1;
            }
            flag_set[idx] = true;
            continue;
        }
        if (o->cmd == 0) {
            for (size_t c = 0; c < N_COMMANDS; c++) {
                if (strcmp(a, commands[c].name) == 0) {
                    o->cmd = commands[c].cmd;
                    o->cmd_name = commands[c].name;
                }
            }
            if (o->cmd == 0) {
                snprintf(err, errlen, "unknown command \"%s\"", a);
                return -1;
            }
            continue;
        }
        if (n_pos == 3) {
            snprintf(err, errlen, "too many arguments");
            return -1;
        }
        pos[n_pos++] = a;
    }
    if (o->cmd == 0) {
        snprintf(err, errlen, "no command given");
        return -1;
    }
    for (size_t k = 0; k < N_FLAGS; k++) {
        if (flag_set[k] && !(flags[k].cmds & o->cmd)) {
            snprintf(err, errlen, "unknown flag: --%s (not a flag of %s)",
                     flags[k].name, o->cmd_name);
            return -1;
        }
    }
    /* Counts that make no sense as 0 when given. */
    for (size_t k = 0; k < N_FLAGS; k++) {
        static const size_t positive[] = {
            OFF(clients),           OFF(conns),     OFF(key_space),
            OFF(txn_ops),           OFF(streams),   OFF(watch_per_stream),
            OFF(watched_key_total), OFF(lease_ttl),
        };
        for (size_t j = 0;
             flag_set[k] && j < sizeof(positive) / sizeof(positive[0]); j++) {
            if (flags[k].off == positive[j] &&
                *(const uint64_t *)((const char *)o + flags[k].off) == 0) {
                snprintf(err, errlen, "--%s must be positive", flags[k].name);
                return -1;
            }
        }
    }
    /* Defaults for what was not given. */
    {
        bool watch = (o->cmd & CMD_WATCHES) != 0;
        bool set_total = false, set_duration = false, set_val = false,
             set_key = false, set_rate = false, set_wps = false,
             set_limit = false, set_rw = false;
        for (size_t k = 0; k < N_FLAGS; k++) {
            if (!flag_set[k]) {
                continue;
            }
            set_total |= flags[k].off == OFF(total);
            set_duration |= flags[k].off == OFF(duration);
            set_val |= flags[k].off == OFF(val_size);
            set_key |= flags[k].off == OFF(key_size);
            set_rate |= flags[k].off == OFF(rate);
            set_wps |= flags[k].off == OFF(watch_per_stream);
            set_limit |= flags[k].off == OFF(limit);
            set_rw |= flags[k].off == OFF(rw_ratio);
        }
        if (o->endpoints == NULL) {
            o->endpoints = "127.0.0.1:2379";
        }
        if (o->clients == 0) {
            o->clients = 1;
        }
        if (o->conns == 0) {
            o->conns = 1;
        }
        if (set_duration && o->duration == 0) {
            snprintf(err, errlen, "--duration must be positive");
            return -1;
        }
        if (!set_total) {
            o->total = set_duration ? 0 : 10000;
        } else if (o->total == 0) {
            snprintf(err, errlen, "--total must be positive");
            return -1;
        }
        if (o->timeout == 0) {
            o->timeout = 10000;
        }
        if (!set_key) {
            o->key_size = watch ? 32 : 8;
        }
        if (!set_val) {
            o->val_size = watch ? 32 : 8;
        }
        if (o->key_space == 0) {
            o->key_space = 1;
        }
        if (o->consistency == NULL) {
            o->consistency = "l";
        }
        if (!set_limit && o->cmd == CMD_TXN_MIXED) {
            o->limit = 1000;
        }
        if (o->txn_ops == 0) {
            o->txn_ops = 1;
        }
        if (!set_rw && o->cmd == CMD_TXN_MIXED) {
            o->rw_ratio = 1;
        }
        if (o->streams == 0) {
            o->streams = 10;
        }
        if (!set_wps || o->watch_per_stream == 0) {
            o->watch_per_stream = o->cmd == CMD_WATCH_LATENCY ? 10 : 100;
        }
        if (o->watched_key_total == 0) {
            o->watched_key_total = 1;
        }
        if (!set_rate && o->cmd == CMD_WATCH_LATENCY) {
            o->rate = 100;
        }
        if (o->lease_ttl == 0) {
            o->lease_ttl = 100;
        }
        if (watch && o->val_size < TS_HEX) {
            snprintf(err, errlen,
                     "--val-size must be at least %d for %s (values carry "
                     "the send time)",
                     TS_HEX, o->cmd_name);
            return -1;
        }
    }
    if (strcmp(o->consistency, "l") != 0 && strcmp(o->consistency, "s") != 0) {
        snprintf(err, errlen, "--consistency must be l or s, not \"%s\"",
                 o->consistency);
        return -1;
    }
    if (o->key_size == 0 || o->key_size > 1024 * 1024) {
        snprintf(err, errlen, "--key-size must be in 1..1048576");
        return -1;
    }
    if (o->val_size > 64 * 1024 * 1024) {
        snprintf(err, errlen, "--val-size is at most 67108864");
        return -1;
    }
    if (o->clients > 100000 || o->conns > 10000 || o->streams > 100000 ||
        o->watch_per_stream > 1000000 ||
        o->streams * o->watch_per_stream > 10000000) {
        snprintf(err, errlen,
                 "too many clients (100000), conns (10000), streams "
                 "(100000) or watchers (10000000)");
        return -1;
    }
    if (o->txn_ops > MAX_TXN_OPS) {
        snprintf(err, errlen, "--txn-ops is at most %d", MAX_TXN_OPS);
        return -1;
    }
    if (o->cmd == CMD_TXN_PUT && o->txn_ops > o->key_space) {
        snprintf(err, errlen,
                 "--txn-ops (%" PRIu64 ") needs as many distinct keys: raise "
                 "--key-space-size (%" PRIu64 ")",
                 o->txn_ops, o->key_space);
        return -1;
    }
    {
        uint64_t space =
            o->cmd == CMD_WATCH ? o->watched_key_total : o->key_space;
        if (o->cmd == CMD_WATCH_LATENCY) {
            space = 1;
        }
        if (digits(space - 1) > o->key_size) {
            snprintf(err, errlen,
                     "--key-size %" PRIu64 " is too small for %" PRIu64
                     " distinct keys (keys are zero-padded decimal numbers)",
                     o->key_size, space);
            return -1;
        }
    }
    if (o->cmd == CMD_RANGE) {
        if (n_pos < 1 || n_pos > 2) {
            snprintf(err, errlen, "range: want KEY [END]");
            return -1;
        }
        o->key = pos[0];
        o->end = n_pos == 2 ? pos[1] : NULL;
        if (o->key[0] == '\0') {
            snprintf(err, errlen, "range: KEY must not be empty");
            return -1;
        }
    } else if (o->cmd == CMD_TXN_MIXED) {
        if (n_pos > 2) {
            snprintf(err, errlen, "txn-mixed: want [KEY [END]]");
            return -1;
        }
        o->key = n_pos >= 1 ? pos[0] : NULL;
        o->end = n_pos == 2 ? pos[1] : NULL;
        if (o->key != NULL && o->key[0] == '\0') {
            snprintf(err, errlen, "txn-mixed: KEY must not be empty");
            return -1;
        }
    } else if (n_pos > 0) {
        snprintf(err, errlen, "%s takes no arguments", o->cmd_name);
        return -1;
    }
    if (parse_endpoints(o, err, errlen) != 0) {
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static uint64_t rng_state = 0x2545f4914f6cdd1dULL; /* fixed: same keys for
                                                     every server compared */

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static const char *status_name(int status)
{
    const char *name = ikclient_code_name(status);
    return name != NULL ? name : "Code(?)";
}

/* grpc-go's error text, which is what etcd's tool prints. */
static void rpc_error_text(char *buf, size_t len, int status, const char *msg)
{
    snprintf(buf, len, "rpc error: code = %s desc = %s", status_name(status),
             msg != NULL ? msg : "");
}

/* ------------------------------------------------------------------------ */
/* State */

struct bench;

struct conn {
    struct bench *b;
    struct grpc_client_uv cli;
    const struct endpoint *ep;
    bool inited;
};

enum timer_use { T_NONE, T_BACKOFF, T_GUARD };

struct client {
    struct bench *b;
    size_t idx;
    struct conn *conn;
    uv_timer_t timer; /* error backoff, or the guard of a stream request */
    enum timer_use timer_use;
    bool in_engine; /* counted in engine.active */
    bool in_flight; /* an operation is outstanding */
    bool waiting;   /* queued for a rate slot */
    struct client *wait_next;
    uint64_t t_start; /* ns, current operation */
    bool is_read;     /* txn-mixed: current op */
    /* lease-keepalive */
    int64_t lease_id;
    struct grpc_client_call *stream;
    /* watch puts */
    uint64_t put_key;
    uint64_t put_ts;
};

struct watcher_stream {
    struct bench *b;
    size_t idx;
    struct conn *conn;
    struct grpc_client_call *call;
    size_t n_watchers, n_created;
    int64_t *ids;
    uint64_t create_sent;
    bool done_creating;
    bool dead;
};

struct engine {
    uint64_t limit;    /* ops to issue; 0: no limit */
    uint64_t deadline; /* ns; 0: none */
    double rate;       /* ops/s; 0: unlimited */
    uint64_t issued, completed;
    uint64_t t0, t_end;
    size_t active;
    bool stopping, running;
    struct client *wait_head, *wait_tail;
    void (*issue)(struct client *c);
    void (*finished)(struct bench *b);
    const char *label;
};

struct bench {
    struct opts o;
    uv_loop_t loop;
    struct conn *conns;
    struct client *clients;
    size_t n_clients;
    struct engine eng;
    uv_timer_t rate_timer, dur_timer, progress_timer, phase_timer, next_timer;
    uv_signal_t sigint;
    bool progress;
    int sigints;
    int exit_code;
    bool closing;
    bool loop_inited, handles_inited;
    size_t open_handles;
    void (*next_fn)(struct bench *b);
    /* reports */
    struct report main;   /* what --json prints */
    struct report extra;  /* watch: creation; watch-latency: puts; txn-mixed:
                             reads */
    struct report extra2; /* txn-mixed: writes */
    double main_seconds, extra_seconds;
    /* request material */
    uint8_t *value;
    char *keybuf; /* MAX_TXN_OPS keys of key_size */
    /* probe phase */
    size_t probes_left, probe_failures;
    char probe_err[768];
    /* lease setup */
    size_t grants_left, granted;
    char grant_err[512];
    /* watch */
    struct watcher_stream *streams;
    size_t n_streams;
    size_t streams_left; /* still creating */
    uint64_t *watchers_on_key;
    char *wkeys; /* watched keys, key_size each */
    uint64_t events_expected, events_received, events_stale;
    uint64_t t_last_event;
    uint64_t drain_deadline;
    /* watch-latency: the put in flight */
    uint64_t wl_ts;
    uint64_t wl_need, wl_got;
    bool wl_put_done, wl_active;
    struct client *wl_client;
};

static void bench_shutdown(struct bench *b);
static void client_next(struct client *c);

static void fatal(struct bench *b, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ikada-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    b->exit_code = 1;
    bench_shutdown(b);
}

/* Run @fn from a fresh loop iteration (never from inside a gRPC callback). */
static void next_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    void (*fn)(struct bench *) = b->next_fn;
    b->next_fn = NULL;
    if (fn != NULL && !b->closing) {
        fn(b);
    }
}

static void run_next(struct bench *b, void (*fn)(struct bench *))
{
    b->next_fn = fn;
    uv_timer_start(&b->next_timer, next_cb, 0, 0);
}

static void fmt_key(const struct bench *b, char *out, uint64_t idx)
{
    /* zero-padded decimal, exactly key_size bytes; digits(idx) <= key_size
     * was checked against the key space */
    uint64_t ks = b->o.key_size;
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, idx);
    memset(out, '0', ks - (uint64_t)n);
    memcpy(out + ks - (uint64_t)n, tmp, (size_t)n);
}

static uint64_t next_key_index(struct bench *b, uint64_t space)
{
    static uint64_t seq;
    if (b->o.seq_keys) {
        return seq++ % space;
    }
    return rng() % space;
}

static struct grpc_client_conn *client_conn(struct client *c)
{
    return grpc_client_uv_conn(&c->conn->cli);
}

/* ------------------------------------------------------------------------ */
/* Progress bar (stderr, only on a terminal) */

static void progress_draw(struct bench *b, bool final)
{
    struct engine *e = &b->eng;
    double frac = 0;
    char bar[41];
    int fill;

    if (e->limit > 0) {
        frac = (double)e->completed / (double)e->limit;
    }
    if (e->deadline > 0 && e->t0 > 0) {
        double tf = (double)(now_ns() - e->t0) / (double)(e->deadline - e->t0);
        if (e->limit == 0 || tf > frac) {
            frac = tf;
        }
    }
    if (final || frac > 1) {
        frac = final ? 1 : frac > 1 ? 1 : frac;
    }
    fill = (int)(frac * 40);
    memset(bar, '=', (size_t)fill);
    memset(bar + fill, ' ', (size_t)(40 - fill));
    bar[40] = '\0';
    fprintf(stderr, "\r%-14s [%s] %3d%% %" PRIu64 " ops", e->label, bar,
            (int)(frac * 100), e->completed);
    if (final) {
        fputc('\n', stderr);
    }
    fflush(stderr);
}

static void progress_cb(uv_timer_t *t)
{
    progress_draw(t->data, false);
}

/* ------------------------------------------------------------------------ */
/* Engine: hands out operations to the clients */

static bool engine_may_issue(struct bench *b)
{
    struct engine *e = &b->eng;
    if (e->stopping || b->closing) {
        return false;
    }
    if (e->limit > 0 && e->issued >= e->limit) {
        return false;
    }
    if (e->deadline > 0 && now_ns() >= e->deadline) {
        return false;
    }
    return true;
}

static void engine_finish_cb(struct bench *b)
{
    struct engine *e = &b->eng;
    e->running = false;
    uv_timer_stop(&b->rate_timer);
    uv_timer_stop(&b->dur_timer);
    if (b->progress) {
        uv_timer_stop(&b->progress_timer);
        progress_draw(b, true);
    }
    if (e->t_end == 0) {
        e->t_end = now_ns();
    }
    e->finished(b);
}

static void client_idle(struct client *c)
{
    struct bench *b = c->b;
    if (!c->in_engine) {
        return;
    }
    c->in_engine = false;
    if (--b->eng.active == 0) {
        run_next(b, engine_finish_cb);
    }
}

static uint64_t slot_time(struct engine *e, uint64_t k)
{
    return e->t0 + (uint64_t)((double)k * 1e9 / e->rate);
}

static void rate_cb(uv_timer_t *t);

static void rate_arm(struct bench *b)
{
    struct engine *e = &b->eng;
    uint64_t due, now = now_ns();
    if (e->wait_head == NULL) {
        return;
    }
    due = e->wait_head->t_start; /* its slot */
    uv_timer_start(&b->rate_timer, rate_cb,
                   due > now ? (due - now + 999999) / 1000000 : 0, 0);
}

static void rate_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct engine *e = &b->eng;
    uint64_t now = now_ns();
    while (e->wait_head != NULL && e->wait_head->t_start <= now) {
        struct client *c = e->wait_head;
        e->wait_head = c->wait_next;
        if (e->wait_head == NULL) {
            e->wait_tail = NULL;
        }
        c->waiting = false;
        if (e->stopping || b->closing ||
            (e->deadline > 0 && now >= e->deadline)) {
            e->issued--; /* its slot is not used */
            client_idle(c);
            continue;
        }
        c->in_flight = true;
        c->t_start = now_ns();
        e->issue(c);
    }
    rate_arm(b);
}

/* Give @c its next operation, or retire it. */
static void client_next(struct client *c)
{
    struct bench *b = c->b;
    struct engine *e = &b->eng;

    if (!engine_may_issue(b)) {
        client_idle(c);
        return;
    }
    e->issued++;
    if (e->rate > 0) {
        uint64_t slot = slot_time(e, e->issued - 1);
        if (slot > now_ns()) {
            c->t_start = slot;
            c->waiting = true;
            c->wait_next = NULL;
            if (e->wait_tail != NULL) {
                e->wait_tail->wait_next = c;
            } else {
                e->wait_head = c;
                rate_arm(b);
            }
            e->wait_tail = c;
            return;
        }
    }
    c->in_flight = true;
    c->t_start = now_ns();
    e->issue(c);
}

static void backoff_cb(uv_timer_t *t)
{
    struct client *c = t->data;
    c->timer_use = T_NONE;
    client_next(c);
}

/* The operation of @c is over. @backoff: wait ERROR_BACKOFF_MS before the
 * next one (after a failure, so a down endpoint is not hammered and a
 * failure to start never recurses). */
static void client_done(struct client *c, bool backoff)
{
    struct bench *b = c->b;
    struct engine *e = &b->eng;
    c->in_flight = false;
    e->completed++;
    e->t_end = now_ns();
    if (backoff) {
        c->timer_use = T_BACKOFF;
        uv_timer_start(&c->timer, backoff_cb, ERROR_BACKOFF_MS, 0);
        return;
    }
    client_next(c);
}

static void dur_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct engine *e = &b->eng;
    /* Clients waiting for a rate slot or in backoff retire now; those with
     * a request in flight retire when it completes. */
    while (e->wait_head != NULL) {
        struct client *c = e->wait_head;
        e->wait_head = c->wait_next;
        c->waiting = false;
        e->issued--;
        client_idle(c);
    }
    e->wait_tail = NULL;
    for (size_t i = 0; i < b->n_clients; i++) {
        struct client *c = &b->clients[i];
        if (c->in_engine && c->timer_use == T_BACKOFF) {
            uv_timer_stop(&c->timer);
            c->timer_use = T_NONE;
            client_idle(c);
        }
    }
}

static void engine_stop(struct bench *b)
{
    if (b->eng.running) {
        b->eng.stopping = true;
        dur_cb(&b->dur_timer);
    }
}

/* Run the measured phase with the first @n clients. */
static void engine_start(struct bench *b, size_t n, const char *label,
                         double rate, void (*issue)(struct client *),
                         void (*finished)(struct bench *))
{
    struct engine *e = &b->eng;
    size_t i;

    memset(e, 0, sizeof(*e));
    e->limit = b->o.total;
    e->rate = rate;
    e->issue = issue;
    e->finished = finished;
    e->label = label;
    e->running = true;
    e->t0 = now_ns();
    if (b->o.duration > 0) {
        e->deadline = e->t0 + b->o.duration * 1000000u;
        uv_timer_start(&b->dur_timer, dur_cb, b->o.duration, 0);
    }
    if (b->progress) {
        uv_timer_start(&b->progress_timer, progress_cb, PROGRESS_MS,
                       PROGRESS_MS);
    }
    e->active = n;
    for (i = 0; i < n; i++) {
        b->clients[i].in_engine = true;
    }
    if (n == 0) {
        run_next(b, engine_finish_cb);
        return;
    }
    for (i = 0; i < n; i++) {
        client_next(&b->clients[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* Unary KV requests: put, range, txn-put, txn-mixed */

static const char *check_header(const Etcdserverpb__ResponseHeader *h,
                                const char *what, char *err, size_t len)
{
    if (h == NULL) {
        snprintf(err, len, "bad response: %s without a header", what);
        return err;
    }
    return NULL;
}

static const char *check_put_response(const uint8_t *d, size_t n, char *err,
                                      size_t len)
{
    Etcdserverpb__PutResponse *r =
        etcdserverpb__put_response__unpack(NULL, n, d);
    const char *bad;
    if (r == NULL) {
        snprintf(err, len, "bad response: not an etcdserverpb.PutResponse");
        return err;
    }
    bad = check_header(r->header, "PutResponse", err, len);
    if (bad == NULL && r->header->revision <= 0) {
        snprintf(err, len, "bad response: PutResponse revision %" PRId64,
                 r->header->revision);
        bad = err;
    }
    etcdserverpb__put_response__free_unpacked(r, NULL);
    return bad;
}

static const char *check_range_response(const uint8_t *d, size_t n, char *err,
                                        size_t len)
{
    Etcdserverpb__RangeResponse *r =
        etcdserverpb__range_response__unpack(NULL, n, d);
    const char *bad;
    if (r == NULL) {
        snprintf(err, len, "bad response: not an etcdserverpb.RangeResponse");
        return err;
    }
    bad = check_header(r->header, "RangeResponse", err, len);
    if (bad == NULL && r->count < (int64_t)r->n_kvs) {
        snprintf(err, len,
                 "bad response: RangeResponse count %" PRId64
                 " below its %zu kvs",
                 r->count, r->n_kvs);
        bad = err;
    }
    etcdserverpb__range_response__free_unpacked(r, NULL);
    return bad;
}

/* A Txn without compares: must succeed with @n_ops responses of @want. */
static const char *check_txn_response(const uint8_t *d, size_t n, size_t n_ops,
                                      int want, char *err, size_t len)
{
    Etcdserverpb__TxnResponse *r =
        etcdserverpb__txn_response__unpack(NULL, n, d);
    const char *bad;
    if (r == NULL) {
        snprintf(err, len, "bad response: not an etcdserverpb.TxnResponse");
        return err;
    }
    bad = check_header(r->header, "TxnResponse", err, len);
    if (bad == NULL && (!r->succeeded || r->n_responses != n_ops)) {
        snprintf(err, len,
                 "bad response: TxnResponse succeeded=%d with %zu responses "
                 "(want 1 and %zu)",
                 (int)r->succeeded, r->n_responses, n_ops);
        bad = err;
    }
    for (size_t i = 0; bad == NULL && i < r->n_responses; i++) {
        if ((int)r->responses[i]->response_case != want) {
            snprintf(err, len, "bad response: TxnResponse op %zu of kind %d", i,
                     (int)r->responses[i]->response_case);
            bad = err;
        }
    }
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    return bad;
}

static void kv_done(void *data, int status, const char *message,
                    const uint8_t *resp, size_t len)
{
    struct client *c = data;
    struct bench *b = c->b;
    uint64_t lat = now_ns() - c->t_start;
    char err[512];
    const char *bad = NULL;
    struct report *sub = NULL;

    if (b->closing) {
        return;
    }
    if (status != GRPC_OK) {
        rpc_error_text(err, sizeof(err), status, message);
        bad = err;
    } else {
        switch (b->o.cmd) {
        case CMD_PUT:
            bad = check_put_response(resp, len, err, sizeof(err));
            break;
        case CMD_RANGE:
            bad = check_range_response(resp, len, err, sizeof(err));
            break;
        case CMD_TXN_PUT:
            bad = check_txn_response(
                resp, len, b->o.txn_ops,
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT, err,
                sizeof(err));
            break;
        case CMD_TXN_MIXED:
            bad = check_txn_response(
                resp, len, 1,
                c->is_read ? ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE
                           : ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT,
                err, sizeof(err));
            break;
        default:
            bad = "internal: unexpected command";
        }
    }
    if (b->o.cmd == CMD_TXN_MIXED) {
        sub = c->is_read ? &b->extra : &b->extra2;
    }
    if (bad != NULL) {
        report_error(&b->main, bad);
        if (sub != NULL) {
            report_error(sub, bad);
        }
    } else if (report_add(&b->main, lat) != 0 ||
               (sub != NULL && report_add(sub, lat) != 0)) {
        report_error(&b->main, "ikada-bench: out of memory for latencies");
    }
    client_done(c, bad != NULL && status == GRPC_UNAVAILABLE);
}

static void kv_start_failed(struct client *c, int rv)
{
    char err[256];
    snprintf(err, sizeof(err), "ikada-bench: cannot start a call: %s",
             ik_strerror(rv));
    report_error(&c->b->main, err);
    client_done(c, true);
}

static void fill_range(const struct bench *b, Etcdserverpb__RangeRequest *rr,
                       const char *key, const char *end)
{
    static const uint8_t all = 0;
    if (key == NULL) { /* every key */
        rr->key.data = (uint8_t *)&all;
        rr->key.len = 1;
        rr->range_end.data = (uint8_t *)&all;
        rr->range_end.len = 1;
    } else {
        rr->key.data = (uint8_t *)key;
        rr->key.len = strlen(key);
        if (end != NULL) {
            rr->range_end.data = (uint8_t *)end;
            rr->range_end.len = strlen(end);
        }
    }
    rr->limit = b->o.limit;
    rr->serializable = b->o.consistency[0] == 's';
    rr->count_only = b->o.count_only;
}

static void kv_issue(struct client *c)
{
    struct bench *b = c->b;
    struct grpc_client_conn *conn = client_conn(c);
    const uint64_t ks = b->o.key_size;
    int rv = IK_EIO;

    if (conn == NULL) {
        kv_start_failed(c, IK_ENOMEM);
        return;
    }
    switch (b->o.cmd) {
    case CMD_PUT: {
        Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
        fmt_key(b, b->keybuf, next_key_index(b, b->o.key_space));
        req.key.data = (uint8_t *)b->keybuf;
        req.key.len = ks;
        req.value.data = b->value;
        req.value.len = b->o.val_size;
        rv = grpc_client_unary(conn, "/etcdserverpb.KV/Put", &req.base,
                               b->o.timeout, NULL, 0, kv_done, c, NULL);
        break;
    }
    case CMD_RANGE: {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        fill_range(b, &req, b->o.key, b->o.end);
        rv = grpc_client_unary(conn, "/etcdserverpb.KV/Range", &req.base,
                               b->o.timeout, NULL, 0, kv_done, c, NULL);
        break;
    }
    case CMD_TXN_PUT:
    case CMD_TXN_MIXED: {
        Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
        Etcdserverpb__RequestOp ops[MAX_TXN_OPS], *opp[MAX_TXN_OPS];
        Etcdserverpb__PutRequest puts[MAX_TXN_OPS];
        Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
        size_t n = b->o.cmd == CMD_TXN_PUT ? b->o.txn_ops : 1;
        uint64_t base = next_key_index(b, b->o.key_space);

        c->is_read = b->o.cmd == CMD_TXN_MIXED &&
                     (double)(rng() >> 11) / 9007199254740992.0 <
                         b->o.rw_ratio / (1 + b->o.rw_ratio);
        for (size_t i = 0; i < n; i++) {
            Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
            ops[i] = op;
            opp[i] = &ops[i];
            if (c->is_read) {
                fill_range(b, &rr, b->o.key, b->o.end);
                ops[i].request_case =
                    ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
                ops[i].request_range = &rr;
            } else {
                Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
                char *k = b->keybuf + i * ks;
                fmt_key(b, k, (base + i) % b->o.key_space);
                puts[i] = p;
                puts[i].key.data = (uint8_t *)k;
                puts[i].key.len = ks;
                puts[i].value.data = b->value;
                puts[i].value.len = b->o.val_size;
                ops[i].request_case =
                    ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
                ops[i].request_put = &puts[i];
            }
        }
        req.n_success = n;
        req.success = opp;
        rv = grpc_client_unary(conn, "/etcdserverpb.KV/Txn", &req.base,
                               b->o.timeout, NULL, 0, kv_done, c, NULL);
        break;
    }
    }
    if (rv != 0) {
        kv_start_failed(c, rv);
    }
}

static void print_header(struct bench *b, FILE *f)
{
    const struct opts *o = &b->o;
    fprintf(f,
            "ikada-bench %s: %" PRIu64 " clients over %" PRIu64
            " connection(s) to %zu endpoint(s)",
            o->cmd_name, o->clients, o->conns, o->n_eps);
    if (o->total > 0) {
        fprintf(f, ", total %" PRIu64, o->total);
    }
    if (o->duration > 0) {
        fprintf(f, ", duration %.3fs", (double)o->duration / 1000.0);
    }
    if (o->rate > 0) {
        fprintf(f, ", rate %g/s", o->rate);
    }
    fputc('\n', f);
}

/* Print the result: the text reports, or the one JSON object. */
static void print_results(struct bench *b)
{
    if (b->o.json) {
        struct report_stats s;
        char buf[1024];
        report_stats(&b->main, b->main_seconds, &s);
        report_format_json(&s, buf, sizeof(buf));
        printf("%s\n", buf);
        fflush(stdout);
        /* The first distinct error texts, on stderr. */
        for (size_t i = 0;; i++) {
            uint64_t n;
            const char *t = report_error_text(&b->main, i, &n);
            if (t == NULL) {
                break;
            }
            fprintf(stderr, "ikada-bench: error [%" PRIu64 "x]: %s\n", n, t);
        }
        return;
    }
    print_header(b, stdout);
    switch (b->o.cmd) {
    case CMD_TXN_MIXED:
        report_print_text(&b->extra, b->main_seconds,
                          b->o.consistency[0] == 's'
                              ? "Read summary (serializable ranges)"
                              : "Read summary (linearizable ranges)",
                          stdout);
        report_print_text(&b->extra2, b->main_seconds, "Write summary", stdout);
        report_print_text(&b->main, b->main_seconds, "All txns", stdout);
        break;
    case CMD_WATCH:
        report_print_text(&b->extra, b->extra_seconds, "Watch creation summary",
                          stdout);
        report_print_text(&b->extra2, b->main_seconds, "Put summary", stdout);
        report_print_text(&b->main, b->main_seconds,
                          "Watch events received summary (put-to-event "
                          "latency)",
                          stdout);
        break;
    case CMD_WATCH_LATENCY:
        report_print_text(&b->extra, b->main_seconds, "Put summary", stdout);
        report_print_text(&b->main, b->main_seconds,
                          "Watch latency summary (put sent to event received)",
                          stdout);
        break;
    default:
        report_print_text(&b->main, b->main_seconds, NULL, stdout);
    }
    fflush(stdout);
}

static void finish_measurement(struct bench *b)
{
    b->main_seconds = (double)(b->eng.t_end - b->eng.t0) / 1e9;
    print_results(b);
    bench_shutdown(b);
}

/* ------------------------------------------------------------------------ */
/* Lease keep-alive */

static void lease_stream_close(struct grpc_client_call *call, int status,
                               const char *message);
static void lease_stream_msg(struct grpc_client_call *call, const uint8_t *data,
                             size_t len);

static void lease_guard_cb(uv_timer_t *t)
{
    struct client *c = t->data;
    char err[128];
    c->timer_use = T_NONE;
    if (c->stream != NULL) {
        grpc_client_call_cancel(c->stream);
        c->stream = NULL;
    }
    snprintf(err, sizeof(err), "keep-alive: no response within %" PRIu64 " ms",
             c->b->o.timeout);
    report_error(&c->b->main, err);
    client_done(c, false);
}

static void lease_op_end(struct client *c, const char *bad)
{
    struct bench *b = c->b;
    uint64_t lat = now_ns() - c->t_start;
    if (c->timer_use == T_GUARD) {
        uv_timer_stop(&c->timer);
        c->timer_use = T_NONE;
    }
    if (bad != NULL) {
        report_error(&b->main, bad);
    } else if (report_add(&b->main, lat) != 0) {
        report_error(&b->main, "ikada-bench: out of memory for latencies");
    }
    client_done(c, bad != NULL);
}

static void lease_stream_msg(struct grpc_client_call *call, const uint8_t *data,
                             size_t len)
{
    struct client *c = grpc_client_call_data(call);
    Etcdserverpb__LeaseKeepAliveResponse *r;
    char err[256];
    const char *bad = NULL;

    if (c->b->closing) {
        return;
    }
    if (!c->in_flight) {
        report_error(&c->b->main, "keep-alive: unsolicited response");
        return;
    }
    r = etcdserverpb__lease_keep_alive_response__unpack(NULL, len, data);
    if (r == NULL) {
        bad = "bad response: not an etcdserverpb.LeaseKeepAliveResponse";
    } else if ((bad = check_header(r->header, "LeaseKeepAliveResponse", err,
                                   sizeof(err))) == NULL) {
        if (r->id != c->lease_id) {
            snprintf(err, sizeof(err),
                     "bad response: keep-alive for lease %" PRIx64
                     " answered for %" PRIx64,
                     (uint64_t)c->lease_id, (uint64_t)r->id);
            bad = err;
        } else if (r->ttl <= 0) {
            snprintf(err, sizeof(err),
                     "keep-alive: lease %" PRIx64
                     " expired or revoked (TTL %" PRId64 ")",
                     (uint64_t)c->lease_id, r->ttl);
            bad = err;
        }
    }
    if (r != NULL) {
        etcdserverpb__lease_keep_alive_response__free_unpacked(r, NULL);
    }
    lease_op_end(c, bad);
}

static void lease_stream_close(struct grpc_client_call *call, int status,
                               const char *message)
{
    struct client *c = grpc_client_call_data(call);
    char err[512];
    c->stream = NULL;
    if (c->b->closing) {
        return;
    }
    if (c->in_flight) {
        if (status == GRPC_OK) {
            snprintf(err, sizeof(err), "keep-alive stream ended by the server");
        } else {
            rpc_error_text(err, sizeof(err), status, message);
        }
        lease_op_end(c, err);
    }
}

static void lease_issue(struct client *c)
{
    static const struct grpc_client_call_cbs cbs = {lease_stream_msg,
                                                    lease_stream_close};
    struct bench *b = c->b;
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    int rv;

    if (c->stream == NULL) {
        struct grpc_client_conn *conn = client_conn(c);
        rv = conn == NULL
                 ? IK_ENOMEM
                 : grpc_client_call_start(conn,
                                          "/etcdserverpb.Lease/LeaseKeepAlive",
                                          0, NULL, 0, &cbs, c, &c->stream);
        if (rv != 0) {
            c->stream = NULL;
            kv_start_failed(c, rv);
            return;
        }
    }
    req.id = c->lease_id;
    rv = grpc_client_call_send_proto(c->stream, &req.base);
    if (rv != 0) {
        grpc_client_call_cancel(c->stream);
        c->stream = NULL;
        kv_start_failed(c, rv);
        return;
    }
    c->timer_use = T_GUARD;
    uv_timer_start(&c->timer, lease_guard_cb, b->o.timeout, 0);
}

static void lease_run(struct bench *b)
{
    /* Clients whose grant failed were moved to the end; run the others. */
    engine_start(b, b->granted, "keep-alive", b->o.rate, lease_issue,
                 finish_measurement);
}

static void grant_done(void *data, int status, const char *message,
                       const uint8_t *resp, size_t len)
{
    struct client *c = data;
    struct bench *b = c->b;
    if (b->closing) {
        return;
    }
    if (status != GRPC_OK) {
        rpc_error_text(b->grant_err, sizeof(b->grant_err), status, message);
    } else {
        Etcdserverpb__LeaseGrantResponse *r =
            etcdserverpb__lease_grant_response__unpack(NULL, len, resp);
        if (r == NULL || r->header == NULL || r->id == 0 ||
            (r->error != NULL && r->error[0] != '\0')) {
            snprintf(b->grant_err, sizeof(b->grant_err),
                     "bad LeaseGrantResponse%s%s",
                     r != NULL && r->error != NULL ? ": " : "",
                     r != NULL && r->error != NULL ? r->error : "");
        } else {
            c->lease_id = r->id;
        }
        if (r != NULL) {
            etcdserverpb__lease_grant_response__free_unpacked(r, NULL);
        }
    }
    if (--b->grants_left > 0) {
        return;
    }
    /* Every grant answered: put the clients with a lease first. */
    {
        size_t w = 0;
        for (size_t i = 0; i < b->n_clients; i++) {
            if (b->clients[i].lease_id != 0) {
                if (w != i) {
                    int64_t id = b->clients[i].lease_id;
                    b->clients[i].lease_id = b->clients[w].lease_id;
                    b->clients[w].lease_id = id;
                }
                w++;
            }
        }
        b->granted = w;
    }
    if (b->granted < b->n_clients) {
        fprintf(stderr, "ikada-bench: %zu of %zu lease grants failed: %s\n",
                b->n_clients - b->granted, b->n_clients, b->grant_err);
    }
    if (b->granted == 0) {
        fatal(b, "no lease could be granted");
        return;
    }
    uv_timer_stop(&b->phase_timer);
    run_next(b, lease_run);
}

static uint64_t setup_ms(const struct bench *b)
{
    return b->o.timeout > SETUP_MIN_MS ? b->o.timeout : SETUP_MIN_MS;
}

static void setup_timeout_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    fatal(b,
          "setup (connections, leases or watchers) did not complete "
          "within %.0f s",
          (double)setup_ms(b) / 1000.0);
}

/* Setup phases (probe, lease grants, watcher creation) must end in time. */
static void setup_guard(struct bench *b)
{
    uv_timer_start(&b->phase_timer, setup_timeout_cb, setup_ms(b), 0);
}

static void lease_setup(struct bench *b)
{
    b->grants_left = b->n_clients;
    setup_guard(b);
    for (size_t i = 0; i < b->n_clients; i++) {
        struct client *c = &b->clients[i];
        Etcdserverpb__LeaseGrantRequest req =
            ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
        struct grpc_client_conn *conn = client_conn(c);
        int rv;
        req.ttl = (int64_t)b->o.lease_ttl;
        rv = conn == NULL
                 ? IK_ENOMEM
                 : grpc_client_unary(conn, "/etcdserverpb.Lease/LeaseGrant",
                                     &req.base, b->o.timeout, NULL, 0,
                                     grant_done, c, NULL);
        if (rv != 0) {
            fatal(b, "cannot start LeaseGrant: %s", ik_strerror(rv));
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Watch and watch-latency */

static void watch_put_issue(struct client *c);
static void wl_complete(struct bench *b, const char *bad);
static void wl_guard_start(struct client *c);

static int watch_send_create(struct watcher_stream *s)
{
    struct bench *b = s->b;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest cr =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    size_t w = s->idx * b->o.watch_per_stream + s->n_created;
    uint64_t k = w % (b->o.cmd == CMD_WATCH ? b->o.watched_key_total : 1);

    cr.key.data = (uint8_t *)(b->wkeys + k * b->o.key_size);
    cr.key.len = b->o.key_size;
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    s->create_sent = now_ns();
    return grpc_client_call_send_proto(s->call, &req.base);
}

static void watch_run(struct bench *b);

static void watch_stream_ready(struct watcher_stream *s)
{
    struct bench *b = s->b;
    if (s->done_creating) {
        return;
    }
    s->done_creating = true;
    if (--b->streams_left == 0) {
        b->extra_seconds = (double)(now_ns() - b->eng.t0) / 1e9;
        uv_timer_stop(&b->phase_timer);
        run_next(b, watch_run);
    }
}

/* Watcher index (within its stream) of @id, or -1. */
static long watch_find(const struct watcher_stream *s, int64_t id)
{
    for (size_t j = 0; j < s->n_created; j++) {
        if (s->ids[j] == id) {
            return (long)j;
        }
    }
    return -1;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

static bool parse_ts(const ProtobufCBinaryData *v, uint64_t *ts)
{
    uint64_t t = 0;
    if (v->len < TS_HEX) {
        return false;
    }
    for (size_t i = 0; i < TS_HEX; i++) {
        int h = hexval(v->data[i]);
        if (h < 0) {
            return false;
        }
        t = t << 4 | (uint64_t)h;
    }
    *ts = t;
    return true;
}

static void watch_events(struct watcher_stream *s,
                         const Etcdserverpb__WatchResponse *r)
{
    struct bench *b = s->b;
    long j = watch_find(s, r->watch_id);
    uint64_t now = now_ns();
    const char *wkey = NULL;

    if (j < 0) {
        report_error(&b->main, "watch: events for an unknown watch id");
        return;
    }
    {
        size_t w = s->idx * b->o.watch_per_stream + (size_t)j;
        uint64_t k = w % (b->o.cmd == CMD_WATCH ? b->o.watched_key_total : 1);
        wkey = b->wkeys + k * b->o.key_size;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        const Mvccpb__Event *ev = r->events[i];
        uint64_t ts;
        if (ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT || ev->kv == NULL ||
            ev->kv->key.len != b->o.key_size ||
            memcmp(ev->kv->key.data, wkey, b->o.key_size) != 0) {
            report_error(&b->main, "watch: event of the wrong type or key");
            continue;
        }
        if (!parse_ts(&ev->kv->value, &ts) || ts > now) {
            report_error(&b->main, "watch: event value without a send time");
            continue;
        }
        b->events_received++;
        b->t_last_event = now;
        if (report_add(&b->main, now - ts) != 0) {
            report_error(&b->main, "ikada-bench: out of memory for latencies");
        }
        if (b->o.cmd == CMD_WATCH_LATENCY) {
            if (b->wl_active && ts == b->wl_ts) {
                b->wl_got++;
                if (b->wl_put_done && b->wl_got >= b->wl_need) {
                    wl_complete(b, NULL);
                }
            } else {
                b->events_stale++;
            }
        }
    }
}

static void watch_stream_msg(struct grpc_client_call *call, const uint8_t *data,
                             size_t len)
{
    struct watcher_stream *s = grpc_client_call_data(call);
    struct bench *b = s->b;
    Etcdserverpb__WatchResponse *r;

    if (b->closing) {
        return;
    }
    r = etcdserverpb__watch_response__unpack(NULL, len, data);
    if (r == NULL || r->header == NULL) {
        report_error(s->done_creating ? &b->main : &b->extra,
                     "bad response: not an etcdserverpb.WatchResponse with "
                     "a header");
        if (r != NULL) {
            etcdserverpb__watch_response__free_unpacked(r, NULL);
        }
        return;
    }
    if (r->created) {
        if (!s->done_creating && s->n_created < s->n_watchers) {
            s->ids[s->n_created++] = r->watch_id;
            if (report_add(&b->extra, now_ns() - s->create_sent) != 0) {
                report_error(&b->extra, "ikada-bench: out of memory");
            }
            if (s->n_created < s->n_watchers) {
                if (watch_send_create(s) != 0) {
                    report_error(&b->extra, "cannot send WatchCreateRequest");
                    s->dead = true;
                    watch_stream_ready(s);
                }
            } else {
                watch_stream_ready(s);
            }
        } else {
            report_error(&b->main, "watch: unexpected created response");
        }
    } else if (r->canceled) {
        char err[512];
        snprintf(
            err, sizeof(err), "watch %" PRId64 " canceled: %s", r->watch_id,
            r->cancel_reason != NULL && r->cancel_reason[0] ? r->cancel_reason
                                                            : "(no reason)");
        report_error(s->done_creating ? &b->main : &b->extra, err);
    }
    if (r->n_events > 0) {
        watch_events(s, r);
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static void watch_stream_close(struct grpc_client_call *call, int status,
                               const char *message)
{
    struct watcher_stream *s = grpc_client_call_data(call);
    struct bench *b = s->b;
    char err[512];

    s->call = NULL;
    s->dead = true;
    if (b->closing) {
        return;
    }
    rpc_error_text(err, sizeof(err), status, message);
    if (!s->done_creating) {
        for (size_t j = s->n_created; j < s->n_watchers; j++) {
            report_error(&b->extra, err);
        }
        watch_stream_ready(s);
    } else {
        report_error(&b->main, err);
    }
}

static void watch_setup(struct bench *b)
{
    static const struct grpc_client_call_cbs cbs = {watch_stream_msg,
                                                    watch_stream_close};
    b->streams_left = b->n_streams;
    b->eng.t0 = now_ns(); /* creation phase start, for extra_seconds */
    setup_guard(b);
    for (size_t i = 0; i < b->n_streams; i++) {
        struct watcher_stream *s = &b->streams[i];
        struct grpc_client_conn *conn = grpc_client_uv_conn(&s->conn->cli);
        int rv = conn == NULL
                     ? IK_ENOMEM
                     : grpc_client_call_start(conn, "/etcdserverpb.Watch/Watch",
                                              0, NULL, 0, &cbs, s, &s->call);
        if (rv == 0) {
            rv = watch_send_create(s);
        }
        if (rv != 0) {
            fatal(b, "cannot open a watch stream: %s", ik_strerror(rv));
            return;
        }
    }
}

/* Watchers that exist now, per key. */
static void watch_count_live(struct bench *b)
{
    uint64_t nkeys = b->o.cmd == CMD_WATCH ? b->o.watched_key_total : 1;
    memset(b->watchers_on_key, 0, nkeys * sizeof(*b->watchers_on_key));
    for (size_t i = 0; i < b->n_streams; i++) {
        const struct watcher_stream *s = &b->streams[i];
        if (s->dead) {
            continue;
        }
        for (size_t j = 0; j < s->n_created; j++) {
            size_t w = i * b->o.watch_per_stream + j;
            b->watchers_on_key[w % nkeys]++;
        }
    }
}

static void drain_cb(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = now_ns();
    if (b->events_received < b->events_expected && now < b->drain_deadline) {
        return; /* repeating timer: look again */
    }
    uv_timer_stop(t);
    if (b->events_received < b->events_expected) {
        char err[256];
        uint64_t missing = b->events_expected - b->events_received;
        snprintf(err, sizeof(err),
                 "watch: event not received within %" PRIu64
                 " ms after the last put",
                 b->o.timeout);
        for (uint64_t i = 0; i < missing; i++) {
            report_error(&b->main, err);
        }
    }
    if (b->t_last_event == 0) {
        b->t_last_event = b->eng.t_end;
    }
    b->main_seconds = (double)((b->t_last_event > b->eng.t_end ? b->t_last_event
                                                               : b->eng.t_end) -
                               b->eng.t0) /
                      1e9;
    print_results(b);
    bench_shutdown(b);
}

static void watch_puts_done(struct bench *b)
{
    b->drain_deadline = now_ns() + b->o.timeout * 1000000u;
    uv_timer_start(&b->phase_timer, drain_cb, 0, 5);
}

static void watch_put_done(void *data, int status, const char *message,
                           const uint8_t *resp, size_t len)
{
    struct client *c = data;
    struct bench *b = c->b;
    uint64_t lat = now_ns() - c->t_start;
    char err[512];
    const char *bad = NULL;

    if (b->closing) {
        return;
    }
    if (status != GRPC_OK) {
        rpc_error_text(err, sizeof(err), status, message);
        bad = err;
    } else {
        bad = check_put_response(resp, len, err, sizeof(err));
    }
    if (b->o.cmd == CMD_WATCH) {
        if (bad == NULL) {
            b->events_expected += b->watchers_on_key[c->put_key];
            (void)report_add(&b->extra2, lat);
        } else {
            report_error(&b->main, bad);
        }
        client_done(c, bad != NULL && status == GRPC_UNAVAILABLE);
        return;
    }
    /* watch-latency */
    if (bad == NULL) {
        if (report_add(&b->extra, lat) != 0) {
            report_error(&b->extra, "ikada-bench: out of memory");
        }
        b->wl_put_done = true;
        if (b->wl_got >= b->wl_need) {
            wl_complete(b, NULL);
        }
    } else {
        report_error(&b->extra, bad);
        report_error(&b->main, bad);
        wl_complete(b, bad);
    }
}

static void watch_put_issue(struct client *c)
{
    struct bench *b = c->b;
    struct grpc_client_conn *conn = client_conn(c);
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    uint8_t *val = b->value + c->idx * b->o.val_size;
    char ts[TS_HEX + 1];
    int rv;

    if (b->o.cmd == CMD_WATCH) {
        c->put_key = next_key_index(b, b->o.watched_key_total);
    } else {
        c->put_key = 0;
    }
    c->put_ts = c->t_start;
    snprintf(ts, sizeof(ts), "%016" PRIx64, c->put_ts);
    memcpy(val, ts, TS_HEX);
    req.key.data = (uint8_t *)(b->wkeys + c->put_key * b->o.key_size);
    req.key.len = b->o.key_size;
    req.value.data = val;
    req.value.len = b->o.val_size;
    if (b->o.cmd == CMD_WATCH_LATENCY) {
        watch_count_live(b);
        b->wl_active = true;
        b->wl_ts = c->put_ts;
        b->wl_need = b->watchers_on_key[0];
        b->wl_got = 0;
        b->wl_put_done = false;
        b->wl_client = c;
    }
    rv = conn == NULL ? IK_ENOMEM
                      : grpc_client_unary(conn, "/etcdserverpb.KV/Put",
                                          &req.base, b->o.timeout, NULL, 0,
                                          watch_put_done, c, NULL);
    if (rv != 0) {
        char err[256];
        snprintf(err, sizeof(err), "ikada-bench: cannot start a call: %s",
                 ik_strerror(rv));
        if (b->o.cmd == CMD_WATCH_LATENCY) {
            b->wl_active = false;
            report_error(&b->extra, err);
        }
        report_error(&b->main, err);
        client_done(c, true);
        return;
    }
    if (b->o.cmd == CMD_WATCH_LATENCY) {
        wl_guard_start(c);
    }
}

static void wl_guard_cb(uv_timer_t *t)
{
    struct client *c = t->data;
    struct bench *b = c->b;
    char err[256];
    c->timer_use = T_NONE;
    if (!b->wl_active) {
        return;
    }
    if (!b->wl_put_done) {
        /* The put's own deadline ends it; look again later. */
        wl_guard_start(c);
        return;
    }
    snprintf(err, sizeof(err),
             "watch: event not received within %" PRIu64 " ms", b->o.timeout);
    for (uint64_t i = b->wl_got; i < b->wl_need; i++) {
        report_error(&b->main, err);
    }
    wl_complete(b, "");
}

/* The put answers within the request timeout; its events get as long
 * again after that. */
static void wl_guard_start(struct client *c)
{
    c->timer_use = T_GUARD;
    uv_timer_start(&c->timer, wl_guard_cb, 2 * c->b->o.timeout, 0);
}

/* The paced put of watch-latency is over: its events arrived (or will not,
 * @bad set). */
static void wl_complete(struct bench *b, const char *bad)
{
    struct client *c = b->wl_client;
    if (!b->wl_active) {
        return;
    }
    b->wl_active = false;
    if (c->timer_use == T_GUARD) {
        uv_timer_stop(&c->timer);
        c->timer_use = T_NONE;
    }
    client_done(c, bad != NULL && bad[0] != '\0');
}

static void watch_run(struct bench *b)
{
    size_t live = 0;
    for (size_t i = 0; i < b->n_streams; i++) {
        live += b->streams[i].dead ? 0 : b->streams[i].n_created;
    }
    if (live == 0) {
        fatal(b, "no watcher could be created");
        return;
    }
    if (live < b->n_streams * b->o.watch_per_stream) {
        fprintf(stderr, "ikada-bench: only %zu of %zu watchers created\n", live,
                (size_t)(b->n_streams * b->o.watch_per_stream));
    }
    watch_count_live(b);
    if (b->o.cmd == CMD_WATCH) {
        engine_start(b, b->n_clients, "watch puts", b->o.rate, watch_put_issue,
                     watch_puts_done);
    } else {
        engine_start(b, 1, "watch-latency", b->o.rate, watch_put_issue,
                     finish_measurement);
    }
}

/* ------------------------------------------------------------------------ */
/* Probe: one Maintenance.Status per connection before measuring */

static void start_workload(struct bench *b)
{
    switch (b->o.cmd) {
    case CMD_LEASE:
        lease_setup(b);
        break;
    case CMD_WATCH:
    case CMD_WATCH_LATENCY:
        watch_setup(b);
        break;
    default:
        engine_start(b, b->n_clients, b->o.cmd_name, b->o.rate, kv_issue,
                     finish_measurement);
    }
}

static void probe_done(void *data, int status, const char *message,
                       const uint8_t *resp, size_t len)
{
    struct conn *cn = data;
    struct bench *b = cn->b;
    if (b->closing) {
        return;
    }
    if (status != GRPC_OK) {
        char err[400];
        rpc_error_text(err, sizeof(err), status, message);
        snprintf(b->probe_err, sizeof(b->probe_err), "%s:%u: %s", cn->ep->host,
                 (unsigned)cn->ep->port, err);
        b->probe_failures++;
    } else {
        Etcdserverpb__StatusResponse *r =
            etcdserverpb__status_response__unpack(NULL, len, resp);
        if (r == NULL || r->header == NULL) {
            snprintf(b->probe_err, sizeof(b->probe_err),
                     "%s:%u: bad StatusResponse", cn->ep->host,
                     (unsigned)cn->ep->port);
            b->probe_failures++;
        }
        if (r != NULL) {
            etcdserverpb__status_response__free_unpacked(r, NULL);
        }
    }
    if (--b->probes_left > 0) {
        return;
    }
    uv_timer_stop(&b->phase_timer);
    if (b->probe_failures > 0) {
        fatal(b, "endpoint not usable: %s", b->probe_err);
        return;
    }
    run_next(b, start_workload);
}

static void probe_start(struct bench *b)
{
    b->probes_left = b->o.conns;
    setup_guard(b);
    for (size_t i = 0; i < b->o.conns; i++) {
        struct conn *cn = &b->conns[i];
        Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
        struct grpc_client_conn *conn = grpc_client_uv_conn(&cn->cli);
        int rv = conn == NULL
                     ? IK_ENOMEM
                     : grpc_client_unary(
                           conn, "/etcdserverpb.Maintenance/Status", &req.base,
                           b->o.timeout, NULL, 0, probe_done, cn, NULL);
        if (rv != 0) {
            fatal(b, "cannot start a call: %s", ik_strerror(rv));
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Setup and teardown */

static void handle_closed(uv_handle_t *h)
{
    struct bench *b = h->loop->data; /* h->data is the handle's owner */
    b->open_handles--;
}

static void cli_closed(struct grpc_client_uv *c)
{
    struct conn *cn = c->data;
    cn->b->open_handles--;
}

static void close_handle(struct bench *b, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        b->open_handles++;
        uv_close(h, handle_closed);
    }
}

static void bench_shutdown(struct bench *b)
{
    if (b->closing || !b->handles_inited) {
        b->closing = true;
        return;
    }
    b->closing = true;
    b->eng.running = false;
    if (b->progress && uv_is_active((uv_handle_t *)&b->progress_timer)) {
        fputc('\n', stderr);
    }
    for (size_t i = 0; i < b->n_clients; i++) {
        struct client *c = &b->clients[i];
        if (c->stream != NULL) {
            grpc_client_call_cancel(c->stream);
            c->stream = NULL;
        }
        close_handle(b, (uv_handle_t *)&c->timer);
    }
    for (size_t i = 0; i < b->n_streams; i++) {
        if (b->streams[i].call != NULL) {
            grpc_client_call_cancel(b->streams[i].call);
            b->streams[i].call = NULL;
        }
    }
    for (size_t i = 0; i < b->o.conns; i++) {
        if (b->conns[i].inited) {
            b->open_handles++;
            grpc_client_uv_close(&b->conns[i].cli, cli_closed);
        }
    }
    close_handle(b, (uv_handle_t *)&b->rate_timer);
    close_handle(b, (uv_handle_t *)&b->dur_timer);
    close_handle(b, (uv_handle_t *)&b->progress_timer);
    close_handle(b, (uv_handle_t *)&b->phase_timer);
    close_handle(b, (uv_handle_t *)&b->next_timer);
    close_handle(b, (uv_handle_t *)&b->sigint);
}

static void sigint_cb(uv_signal_t *h, int signum)
{
    struct bench *b = h->data;
    (void)signum;
    if (++b->sigints > 1 || !b->eng.running) {
        fprintf(stderr, "\nikada-bench: interrupted\n");
        b->exit_code = 130;
        bench_shutdown(b);
        return;
    }
    fprintf(stderr, "\nikada-bench: stopping (Ctrl-C again to quit at once)\n");
    engine_stop(b);
}

static void init_timer(struct bench *b, uv_timer_t *t, void *data)
{
    uv_timer_init(&b->loop, t);
    t->data = data;
}

/* Allocate everything, then create the libuv handles (so a failed
 * allocation leaves no handle to close). */
static int bench_init(struct bench *b)
{
    const struct opts *o = &b->o;
    struct grpc_client_config cfg;
    uint64_t nkeys = o->cmd == CMD_WATCH ? o->watched_key_total : 1;
    size_t nvals;

    report_init(&b->main, NULL);
    report_init(&b->extra, NULL);
    report_init(&b->extra2, NULL);
    b->n_clients = o->cmd == CMD_WATCH_LATENCY ? 1 : o->clients;
    b->conns = calloc(o->conns, sizeof(*b->conns));
    b->clients = calloc(b->n_clients, sizeof(*b->clients));
    nvals = (o->cmd & CMD_WATCHES) ? b->n_clients : 1;
    b->value = malloc(nvals * o->val_size + 1);
    b->keybuf = malloc(MAX_TXN_OPS * o->key_size);
    if (b->conns == NULL || b->clients == NULL || b->value == NULL ||
        b->keybuf == NULL) {
        return IK_ENOMEM;
    }
    if (o->cmd & CMD_WATCHES) {
        b->n_streams = o->streams;
        b->streams = calloc(b->n_streams, sizeof(*b->streams));
        b->watchers_on_key = calloc(nkeys, sizeof(*b->watchers_on_key));
        b->wkeys = malloc(nkeys * o->key_size);
        if (b->streams == NULL || b->watchers_on_key == NULL ||
            b->wkeys == NULL) {
            return IK_ENOMEM;
        }
        for (size_t i = 0; i < b->n_streams; i++) {
            struct watcher_stream *s = &b->streams[i];
            s->b = b;
            s->idx = i;
            s->conn = &b->conns[i % o->conns];
            s->n_watchers = o->watch_per_stream;
            s->ids = calloc(s->n_watchers, sizeof(*s->ids));
            if (s->ids == NULL) {
                return IK_ENOMEM;
            }
        }
        for (uint64_t k = 0; k < nkeys; k++) {
            fmt_key(b, b->wkeys + k * o->key_size, k);
        }
    }
    for (size_t i = 0; i < nvals * o->val_size; i++) {
        b->value[i] = (uint8_t)("abcdefghijklmnopqrstuvwxyz"[rng() % 26]);
    }

    if (uv_loop_init(&b->loop) != 0) {
        return IK_ENOMEM;
    }
    b->loop_inited = true;
    b->loop.data = b;
    for (size_t i = 0; i < b->n_clients; i++) {
        struct client *c = &b->clients[i];
        c->b = b;
        c->idx = i;
        c->conn = &b->conns[i % o->conns];
        init_timer(b, &c->timer, c);
    }
    init_timer(b, &b->rate_timer, b);
    init_timer(b, &b->dur_timer, b);
    init_timer(b, &b->progress_timer, b);
    init_timer(b, &b->phase_timer, b);
    init_timer(b, &b->next_timer, b);
    uv_signal_init(&b->loop, &b->sigint);
    b->sigint.data = b;
    uv_signal_start(&b->sigint, sigint_cb, SIGINT);
    uv_unref((uv_handle_t *)&b->sigint);
    b->handles_inited = true;
    b->progress = isatty(STDERR_FILENO) != 0;

    memset(&cfg, 0, sizeof(cfg));
    cfg.user_agent = "ikada-bench/" BENCH_VERSION;
    cfg.max_recv_msg_size = INT32_MAX;
    for (size_t i = 0; i < o->conns; i++) {
        struct conn *cn = &b->conns[i];
        cn->b = b;
        cn->ep = &o->eps[i % o->n_eps];
        cn->cli.data = cn;
        if (grpc_client_uv_init(&cn->cli, &b->loop, cn->ep->host, cn->ep->port,
                                &cfg) != 0) {
            return IK_ENOMEM;
        }
        cn->inited = true;
    }
    return 0;
}

static void bench_free(struct bench *b)
{
    report_free(&b->main);
    report_free(&b->extra);
    report_free(&b->extra2);
    for (size_t i = 0; i < b->n_streams && b->streams != NULL; i++) {
        free(b->streams[i].ids);
    }
    free(b->streams);
    free(b->watchers_on_key);
    free(b->wkeys);
    free(b->conns);
    free(b->clients);
    free(b->value);
    free(b->keybuf);
    free(b->o.eps);
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    char err[512];
    int rv, code;

    if (b == NULL) {
        fprintf(stderr, "ikada-bench: out of memory\n");
        return 1;
    }
    rv = parse_args(argc, argv, &b->o, err, sizeof(err));
    if (rv != 0) {
        free(b->o.eps);
        free(b);
        if (rv > 0) {
            return 0;
        }
        fprintf(stderr,
                "ikada-bench: %s\nRun 'ikada-bench --help' for usage.\n", err);
        return 2;
    }
    if (bench_init(b) != 0) {
        fprintf(stderr, "ikada-bench: out of memory\n");
        b->exit_code = 1;
        bench_shutdown(b);
    } else {
        probe_start(b);
    }
    if (b->loop_inited) {
        uv_run(&b->loop, UV_RUN_DEFAULT);
        /* Anything left (e.g. after an early failure) is closed here. */
        bench_shutdown(b);
        uv_run(&b->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&b->loop) != 0) {
            fprintf(stderr, "ikada-bench: warning: loop handles left open\n");
        }
    }
    code = b->exit_code;
    bench_free(b);
    free(b);
    return code;
}
