/*
 * Unit tests for server/config.c.
 *
 * Expected messages, exit statuses and defaults were taken from the real
 * etcd 3.4.23 (/usr/bin/etcd) by running it with the same arguments on a
 * temp data dir and loopback ports (see the task notes in the report).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/config.h"
#include "server/errors.h"

/* ---- helpers ---- */

struct fixture {
    struct config cfg;
    char errmsg[IK_ERRMSG_SIZE];
    int rv;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(config_init(&f->cfg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    config_close(&f->cfg);
    free(f);
    return 0;
}

#define MAXARGS 32

/* Parse a NULL-terminated argument list (without argv[0]) with env. */
static int parse_env(struct fixture *f, char **env, ...)
{
    char *argv[MAXARGS];
    int argc = 0;
    va_list ap;
    const char *a;
    argv[argc++] = "ikada";
    va_start(ap, env);
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < MAXARGS - 1);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    f->rv = config_parse(&f->cfg, argc, argv, env, f->errmsg);
    return f->rv;
}

#define PARSE(f, ...) parse_env(f, NULL, __VA_ARGS__, (char *)NULL)
#define PARSE_ENV(f, env, ...) parse_env(f, env, __VA_ARGS__, (char *)NULL)

/* Flags that make the URL checks pass so a test can focus on one thing. */
#define LOOPBACK                                             \
    "--listen-client-urls", "http://127.0.0.1:42379",        \
        "--advertise-client-urls", "http://127.0.0.1:42379", \
        "--listen-peer-urls", "http://127.0.0.1:42380"

static void expect_error(struct fixture *f, enum config_error_kind kind,
                         int status, const char *msg)
{
    assert_int_equal(f->rv, IK_EINVAL);
    assert_string_equal(f->errmsg, msg);
    assert_int_equal(f->cfg.error_kind, kind);
    assert_int_equal(f->cfg.exit_status, status);
    assert_int_equal(f->cfg.usage_on_error, kind == CONFIG_ERR_USAGE);
}

static bool has_log(const struct config *cfg, enum config_log_level level,
                    const char *pkg, const char *msg)
{
    size_t i;
    for (i = 0; i < cfg->n_logs; i++) {
        if (cfg->logs[i].level == level && strcmp(cfg->logs[i].pkg, pkg) == 0 &&
            strcmp(cfg->logs[i].msg, msg) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- defaults ---- */

static void check_defaults(const struct config *c)
{
    assert_string_equal(c->name, "default");
    assert_string_equal(c->data_dir, "default.etcd");
    assert_string_equal(c->wal_dir, "");
    assert_int_equal(c->snapshot_count, 100000);
    assert_int_equal(c->heartbeat_ms, 100);
    assert_int_equal(c->election_ms, 1000);
    assert_int_equal(c->n_listen_client_urls, 1);
    assert_string_equal(c->listen_client_urls[0].raw, "http://localhost:2379");
    assert_string_equal(c->listen_client_urls[0].scheme, "http");
    assert_string_equal(c->listen_client_urls[0].host, "localhost");
    assert_int_equal(c->listen_client_urls[0].port, 2379);
    assert_int_equal(c->n_listen_peer_urls, 1);
    assert_string_equal(c->listen_peer_urls[0].raw, "http://localhost:2380");
    assert_int_equal(c->listen_peer_urls[0].port, 2380);
    assert_int_equal(c->n_advertise_client_urls, 1);
    assert_string_equal(c->advertise_client_urls[0], "http://localhost:2379");
    assert_int_equal(c->n_initial_advertise_peer_urls, 1);
    assert_string_equal(c->initial_advertise_peer_urls[0],
                        "http://localhost:2380");
    assert_int_equal(c->n_initial_cluster, 1);
    assert_string_equal(c->initial_cluster[0].name, "default");
    assert_int_equal(c->initial_cluster[0].n_peer_urls, 1);
    assert_string_equal(c->initial_cluster[0].peer_urls[0],
                        "http://localhost:2380");
    assert_string_equal(c->initial_cluster_str,
                        "default=http://localhost:2380");
    assert_null(c->initial_cluster_error);
    assert_int_equal(c->initial_cluster_state, CONFIG_CLUSTER_STATE_NEW);
    assert_string_equal(c->initial_cluster_token, "etcd-cluster");
    assert_int_equal(c->max_request_bytes, 1572864);
    assert_int_equal(c->max_txn_ops, 128);
    assert_int_equal(c->quota_backend_bytes, 0);
    assert_int_equal(c->auto_compaction_mode, CONFIG_COMPACTION_PERIODIC);
    assert_string_equal(c->auto_compaction_retention, "0");
    assert_int_equal(c->auto_compaction_retention_value, 0);
    assert_int_equal(c->log_level, CONFIG_LOG_INFO);
    assert_string_equal(c->logger, "capnslog");
    assert_int_equal(c->n_log_outputs, 1);
    assert_string_equal(c->log_outputs[0], "default");
    assert_false(c->debug);
    assert_false(c->enable_pprof);
    assert_string_equal(c->metrics, "basic");
    assert_int_equal(c->n_listen_metrics_urls, 0);
    assert_false(c->enable_v2);
    assert_false(c->version_requested);
    assert_false(c->help_requested);
}

static void test_init_defaults(void **state)
{
    struct fixture *f = *state;
    check_defaults(&f->cfg);
    assert_int_equal(f->cfg.n_logs, 0);
    assert_int_equal(f->cfg.error_kind, CONFIG_ERR_NONE);
}

static void test_parse_no_args(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"ikada", NULL};
    f->rv = config_parse(&f->cfg, 1, argv, NULL, f->errmsg);
    assert_int_equal(f->rv, 0);
    check_defaults(&f->cfg);
    assert_true(has_log(&f->cfg, CONFIG_LOG_WARN, "etcdmain",
                        "no data-dir provided, using default data-dir "
                        "./default.etcd"));
    assert_int_equal(f->cfg.n_warnings, 1);
    assert_string_equal(f->cfg.warnings[0],
                        "no data-dir provided, using default data-dir "
                        "./default.etcd");
}

static void test_parse_argc_zero(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(config_parse(&f->cfg, 0, NULL, NULL, f->errmsg), 0);
    check_defaults(&f->cfg);
}

/* ---- Go flag syntax ---- */

static void test_flag_forms(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, "-name", "a", "--data-dir=/tmp/x",
                           "--initial-cluster-token", "tok", "-max-txn-ops=7",
                           "--enable-v2", "-enable-pprof=true", "--debug=0"),
                     0);
    assert_string_equal(f->cfg.name, "a");
    assert_string_equal(f->cfg.data_dir, "/tmp/x");
    assert_string_equal(f->cfg.initial_cluster_token, "tok");
    assert_int_equal(f->cfg.max_txn_ops, 7);
    assert_true(f->cfg.enable_v2);
    assert_true(f->cfg.enable_pprof);
    assert_false(f->cfg.debug);
    /* --name a with the default --initial-cluster: etcd derives it. */
    assert_string_equal(f->cfg.initial_cluster_str, "a=http://localhost:2380");
    assert_int_equal(f->cfg.n_initial_cluster, 1);
    assert_string_equal(f->cfg.initial_cluster[0].name, "a");
}

static void test_flag_value_may_start_with_dash(void **state)
{
    struct fixture *f = *state;
    /* Go takes the next argument as the value, whatever it looks like. */
    assert_int_equal(PARSE(f, "--initial-cluster-token", "--x"), 0);
    assert_string_equal(f->cfg.initial_cluster_token, "--x");
}

static void test_last_flag_wins(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, "--name=a", "--name=b"), 0);
    assert_string_equal(f->cfg.name, "b");
}

static void test_unknown_flag(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--no-such-flag");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "flag provided but not defined: -no-such-flag");
}

static void test_bad_flag_syntax(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "---name");
    expect_error(f, CONFIG_ERR_USAGE, 2, "bad flag syntax: ---name");
    PARSE(f, "--=x");
    expect_error(f, CONFIG_ERR_USAGE, 2, "bad flag syntax: --=x");
}

static void test_flag_needs_argument(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--name");
    expect_error(f, CONFIG_ERR_USAGE, 2, "flag needs an argument: -name");
}

static void test_leftover_arguments(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "extra-arg");
    expect_error(f, CONFIG_ERR_VERIFY, 1, "'extra-arg' is not a valid flag");
    PARSE(f, "--", "--name");
    expect_error(f, CONFIG_ERR_VERIFY, 1, "'--name' is not a valid flag");
    PARSE(f, "-");
    expect_error(f, CONFIG_ERR_VERIFY, 1, "'-' is not a valid flag");
    /* A boolean never takes the next argument. */
    PARSE(f, "--enable-v2", "false");
    expect_error(f, CONFIG_ERR_VERIFY, 1, "'false' is not a valid flag");
}

static void test_bad_numbers(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--max-request-bytes=abc");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"abc\" for flag -max-request-bytes: parse "
                 "error");
    PARSE(f, "--max-txn-ops=-1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"-1\" for flag -max-txn-ops: parse error");
    PARSE(f, "--max-txn-ops=99999999999999999999");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"99999999999999999999\" for flag "
                 "-max-txn-ops: value out of range");
    PARSE(f, "--max-txn-ops=1__0");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"1__0\" for flag -max-txn-ops: parse error");
    PARSE(f, "--max-txn-ops=");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"\" for flag -max-txn-ops: parse error");
    PARSE(f, "--max-concurrent-streams=abc");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"abc\" for flag -max-concurrent-streams: "
                 "strconv.ParseUint: parsing \"abc\": invalid syntax");
    PARSE(f, "--max-concurrent-streams=4294967296");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"4294967296\" for flag "
                 "-max-concurrent-streams: strconv.ParseUint: parsing "
                 "\"4294967296\": value out of range");
    PARSE(f, "--grpc-keepalive-min-time=abc");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"abc\" for flag -grpc-keepalive-min-time: "
                 "parse error");
    PARSE(f, "--quota-backend-bytes=9223372036854775808");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"9223372036854775808\" for flag "
                 "-quota-backend-bytes: value out of range");
}

static void test_go_number_forms(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, "--max-txn-ops=0x10", "--snapshot-count=017",
                           "--max-request-bytes=1_000",
                           "--quota-backend-bytes=-1",
                           "--grpc-keepalive-min-time=1.5h",
                           "--backend-batch-interval=10ms"),
                     0);
    assert_int_equal(f->cfg.max_txn_ops, 16);
    assert_int_equal(f->cfg.snapshot_count, 15);
    assert_int_equal(f->cfg.max_request_bytes, 1000);
    assert_int_equal(f->cfg.quota_backend_bytes, -1);
    assert_int_equal(PARSE(f, "--max-txn-ops=0b101", "--snapshot-count=0o17",
                           "--max-request-bytes=18446744073709551615"),
                     0);
    assert_int_equal(f->cfg.max_txn_ops, 5);
    assert_int_equal(f->cfg.snapshot_count, 15);
    assert_true(f->cfg.max_request_bytes == UINT64_MAX);
    PARSE(f, "--max-txn-ops=0x");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"0x\" for flag -max-txn-ops: parse error");
    PARSE(f, "--max-txn-ops=08");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"08\" for flag -max-txn-ops: parse error");
}

static void test_bad_booleans(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--enable-v2=maybe");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid boolean value \"maybe\" for -enable-v2: parse error");
    assert_int_equal(PARSE(f, "--enable-v2=T", "--enable-pprof=TRUE"), 0);
    assert_true(f->cfg.enable_v2);
    assert_true(f->cfg.enable_pprof);
    assert_int_equal(PARSE(f, "--enable-v2=F", "--enable-pprof=False"), 0);
    assert_false(f->cfg.enable_v2);
    assert_false(f->cfg.enable_pprof);
}

static void test_select_values(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--initial-cluster-state=bogus");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"bogus\" for flag -initial-cluster-state: "
                 "invalid value");
    assert_int_equal(PARSE(f, "--initial-cluster-state", "existing"), 0);
    assert_int_equal(f->cfg.initial_cluster_state,
                     CONFIG_CLUSTER_STATE_EXISTING);
}

/* ---- URLs ---- */

static void test_bad_urls(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--listen-client-urls=127.0.0.1:2379");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"127.0.0.1:2379\" for flag "
                 "-listen-client-urls: parse \"127.0.0.1:2379\": first path "
                 "segment in URL cannot contain colon");
    PARSE(f, "--listen-client-urls=localhost:2379");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"localhost:2379\" for flag "
                 "-listen-client-urls: URL scheme must be http, https, unix, "
                 "or unixs: localhost:2379");
    PARSE(f, "--listen-client-urls=ftp://127.0.0.1:2379");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"ftp://127.0.0.1:2379\" for flag "
                 "-listen-client-urls: URL scheme must be http, https, unix, "
                 "or unixs: ftp://127.0.0.1:2379");
    PARSE(f, "--listen-client-urls=http://127.0.0.1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://127.0.0.1\" for flag "
                 "-listen-client-urls: URL address does not have the form "
                 "\"host:port\": http://127.0.0.1");
    PARSE(f, "--listen-client-urls=http://127.0.0.1:2379/");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://127.0.0.1:2379/\" for flag "
                 "-listen-client-urls: URL must not contain a path: "
                 "http://127.0.0.1:2379/");
    PARSE(f, "--advertise-client-urls", "http://a:b");
    expect_error(
        f, CONFIG_ERR_USAGE, 2,
        "invalid value \"http://a:b\" for flag -advertise-client-urls: "
        "parse \"http://a:b\": invalid port \":b\" after host");
    PARSE(f, "--advertise-client-urls", "http://a:-1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://a:-1\" for flag "
                 "-advertise-client-urls: parse \"http://a:-1\": invalid port "
                 "\":-1\" after host");
    PARSE(f, "--initial-advertise-peer-urls", ":2380");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \":2380\" for flag "
                 "-initial-advertise-peer-urls: parse \":2380\": missing "
                 "protocol scheme");
    PARSE(f, "--listen-peer-urls", "http://[::1:2380");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://[::1:2380\" for flag "
                 "-listen-peer-urls: parse \"http://[::1:2380\": missing ']' "
                 "in host");
    PARSE(f, "--listen-peer-urls", "http://a b:1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://a b:1\" for flag -listen-peer-urls: "
                 "parse \"http://a b:1\": invalid character \" \" in host "
                 "name");
    PARSE(f, "--listen-peer-urls", "http://127.0.0.1:1,");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://127.0.0.1:1,\" for flag "
                 "-listen-peer-urls: URL scheme must be http, https, unix, or "
                 "unixs: ");
    PARSE(f, "--listen-peer-urls", "http://x\n:1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://x\\n:1\" for flag -listen-peer-urls: "
                 "parse \"http://x\\n:1\": net/url: invalid control character "
                 "in URL");
    /* ikada's own refusal (etcd keeps such URLs). */
    PARSE(f, "--advertise-client-urls", "http://u@a:1");
    expect_error(f, CONFIG_ERR_USAGE, 2,
                 "invalid value \"http://u@a:1\" for flag "
                 "-advertise-client-urls: URL must not contain user info, a "
                 "query or a fragment: http://u@a:1");
}

static void test_url_lists(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(
        PARSE(f, "--listen-client-urls",
              "http://127.0.0.1:2, HTTP://[::1]:2379 ,http://127.0.0.1:1",
              "--advertise-client-urls", "http://b:1,http://a:1",
              "--listen-metrics-urls", "http://localhost:9000"),
        0);
    /* Sorted by text, as etcd's types.NewURLs sorts. */
    assert_int_equal(f->cfg.n_listen_client_urls, 3);
    assert_string_equal(f->cfg.listen_client_urls[0].raw, "http://127.0.0.1:1");
    assert_string_equal(f->cfg.listen_client_urls[1].raw, "http://127.0.0.1:2");
    assert_string_equal(f->cfg.listen_client_urls[2].raw, "http://[::1]:2379");
    assert_string_equal(f->cfg.listen_client_urls[2].host, "::1");
    assert_int_equal(f->cfg.listen_client_urls[2].port, 2379);
    assert_int_equal(f->cfg.n_advertise_client_urls, 2);
    assert_string_equal(f->cfg.advertise_client_urls[0], "http://a:1");
    assert_string_equal(f->cfg.advertise_client_urls[1], "http://b:1");
    assert_int_equal(f->cfg.n_listen_metrics_urls, 1);
    assert_int_equal(f->cfg.listen_metrics_urls[0].port, 9000);
}

static void test_empty_url_value_keeps_default(void **state)
{
    struct fixture *f = *state;
    /* etcd: "" is an allowed exception that leaves the list unchanged. */
    assert_int_equal(PARSE(f, "--advertise-client-urls", ""), 0);
    assert_int_equal(f->cfg.n_advertise_client_urls, 1);
    assert_string_equal(f->cfg.advertise_client_urls[0],
                        "http://localhost:2379");
}

static void test_bind_urls_need_ip(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--listen-client-urls=http://foo.com:2379");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "expected IP in URL for binding (http://foo.com:2379)");
    PARSE(f, LOOPBACK, "--listen-peer-urls=http://foo:2380");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "expected IP in URL for binding (http://foo:2380)");
}

static void test_advertise_empty_host(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--advertise-client-urls", "http://:2379");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--advertise-client-urls \"http://:2379\" must be "
                 "\"host:port\" (unexpected empty host (http://:2379))");
}

static void test_listen_without_advertise(void **state)
{
    struct fixture *f = *state;
    PARSE(f, "--listen-client-urls", "http://127.0.0.1:42379");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--advertise-client-urls is required when "
                 "--listen-client-urls is set explicitly");
    assert_string_equal(f->cfg.error_hint,
                        "When listening on specific address(es), this etcd "
                        "process must advertise accessible url(s) to each "
                        "connected client.");
}

static void test_ikada_url_limits(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--listen-client-urls", "https://127.0.0.1:1");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "ikada: --listen-client-urls: only http:// URLs are "
                 "supported (no TLS or unix sockets yet): https://127.0.0.1:1");
    PARSE(f, LOOPBACK, "--listen-client-urls", "http://127.0.0.1:99999");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "ikada: --listen-client-urls: invalid port in "
                 "http://127.0.0.1:99999");
    PARSE(f, LOOPBACK, "--advertise-client-urls", "https://a:1");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "ikada: --advertise-client-urls: only http:// URLs are "
                 "supported (no TLS or unix sockets yet): https://a:1");
}

/* ---- timing ---- */

static void test_timing_checks(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--heartbeat-interval=300");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--election-timeout[1000ms] should be at least as 5 times as "
                 "--heartbeat-interval[300ms]");
    PARSE(f, LOOPBACK, "--heartbeat-interval=0");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--heartbeat-interval must be >0 (set to 0ms)");
    PARSE(f, LOOPBACK, "--election-timeout=0", "--heartbeat-interval=1");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--election-timeout must be >0 (set to 0ms)");
    PARSE(f, LOOPBACK, "--election-timeout=60000", "--heartbeat-interval=200");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--election-timeout[60000ms] is too long, and should be set "
                 "less than 50000ms");
    assert_int_equal(PARSE(f, LOOPBACK, "--election-timeout=500",
                           "--heartbeat-interval=100"),
                     0);
    assert_int_equal(f->cfg.election_ms, 500);
    assert_int_equal(f->cfg.heartbeat_ms, 100);
}

/* ---- compaction ---- */

static void test_compaction(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--auto-compaction-mode=foo");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "unknown auto-compaction-mode \"foo\"");
    PARSE(f, LOOPBACK, "--auto-compaction-retention=abc");
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "error parsing CompactionRetention: time: invalid duration "
                 "\"abc\"");
    assert_string_equal(f->cfg.error_pkg, "etcdmain");
    PARSE(f, LOOPBACK, "--auto-compaction-retention=-1");
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "error parsing CompactionRetention: time: missing unit in "
                 "duration \"-1\"");
    PARSE(f, LOOPBACK, "--auto-compaction-retention=5x");
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "error parsing CompactionRetention: time: unknown unit \"x\" "
                 "in duration \"5x\"");

    assert_int_equal(PARSE(f, LOOPBACK, "--auto-compaction-retention=2"), 0);
    assert_int_equal(f->cfg.auto_compaction_mode, CONFIG_COMPACTION_PERIODIC);
    assert_int_equal(f->cfg.auto_compaction_retention_value, 2 * 3600000);
    assert_int_equal(PARSE(f, LOOPBACK, "--auto-compaction-retention=1h30m"),
                     0);
    assert_int_equal(f->cfg.auto_compaction_retention_value, 5400000);
    assert_int_equal(PARSE(f, LOOPBACK, "--auto-compaction-retention=.5s"), 0);
    assert_int_equal(f->cfg.auto_compaction_retention_value, 500);
    assert_int_equal(PARSE(f, LOOPBACK, "--auto-compaction-mode=revision",
                           "--auto-compaction-retention=1000"),
                     0);
    assert_int_equal(f->cfg.auto_compaction_mode, CONFIG_COMPACTION_REVISION);
    assert_string_equal(f->cfg.auto_compaction_retention, "1000");
    assert_int_equal(f->cfg.auto_compaction_retention_value, 1000);
}

/* ---- logging ---- */

static void test_logging(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--log-level=foo");
    expect_error(f, CONFIG_ERR_PANIC, 2, "unknown level \"foo\"");
    PARSE(f, LOOPBACK, "--logger=foo");
    expect_error(f, CONFIG_ERR_VERIFY, 1, "unknown logger option \"foo\"");
    PARSE(f, LOOPBACK, "--log-outputs=stderr,stdout");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "--logger=capnslog supports only 1 value in '--log-outputs', "
                 "got [\"stderr\" \"stdout\"]");
    PARSE(f, LOOPBACK, "--log-outputs=/tmp/x");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "unknown log-output \"/tmp/x\" (only supports \"default\", "
                 "\"stderr\", \"stdout\")");
    PARSE(f, LOOPBACK, "--logger=zap", "--log-outputs=default,stderr");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "multi logoutput for \"default\" is not supported yet");

    assert_int_equal(PARSE(f, LOOPBACK, "--logger=zap",
                           "--log-outputs=stdout,stderr,stdout",
                           "--log-level=warn"),
                     0);
    assert_string_equal(f->cfg.logger, "zap");
    assert_int_equal(f->cfg.n_log_outputs, 2);
    assert_string_equal(f->cfg.log_outputs[0], "stderr");
    assert_string_equal(f->cfg.log_outputs[1], "stdout");
    assert_int_equal(f->cfg.log_level, CONFIG_LOG_WARN);
    assert_int_equal(PARSE(f, LOOPBACK, "--debug"), 0);
    assert_true(f->cfg.debug);
    assert_int_equal(f->cfg.log_level, CONFIG_LOG_DEBUG);
    assert_int_equal(PARSE(f, LOOPBACK, "--log-level=error"), 0);
    assert_int_equal(f->cfg.log_level, CONFIG_LOG_ERROR);
    assert_string_equal(config_log_level_name(CONFIG_LOG_ERROR), "error");
    assert_string_equal(config_log_level_name((enum config_log_level)99),
                        "unknown");
}

/* ---- environment ---- */

static void test_env_sets_flags(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"PATH=/bin", "ETCD_NAME=x", "ETCD_MAX_TXN_OPS=9",
                   "ETCD_ENABLE_V2=true", NULL};
    assert_int_equal(PARSE_ENV(f, env, LOOPBACK), 0);
    assert_string_equal(f->cfg.name, "x");
    assert_int_equal(f->cfg.max_txn_ops, 9);
    assert_true(f->cfg.enable_v2);
    assert_string_equal(f->cfg.data_dir, "x.etcd");
    assert_string_equal(f->cfg.initial_cluster_str, "x=http://localhost:2380");
    assert_true(has_log(&f->cfg, CONFIG_LOG_INFO, "pkg/flags",
                        "recognized and used environment variable "
                        "ETCD_NAME=x"));
    assert_true(has_log(&f->cfg, CONFIG_LOG_INFO, "pkg/flags",
                        "recognized and used environment variable "
                        "ETCD_ENABLE_V2=true"));
}

static void test_env_conflict_is_fatal(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"ETCD_NAME=x", NULL};
    PARSE_ENV(f, env, LOOPBACK, "--name", "y");
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "conflicting environment variable \"ETCD_NAME\" is shadowed "
                 "by corresponding command-line flag (either unset "
                 "environment variable or disable flag)");
    assert_string_equal(f->cfg.error_pkg, "pkg/flags");
}

static void test_env_conflict_even_when_empty(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"ETCD_LISTEN_PEER_URLS=", NULL};
    PARSE_ENV(f, env, LOOPBACK);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "conflicting environment variable \"ETCD_LISTEN_PEER_URLS\" "
                 "is shadowed by corresponding command-line flag (either "
                 "unset environment variable or disable flag)");
}

static void test_env_unrecognized(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"ETCD_FOO=1", "ETCD_NAME=", "HOME=/root", NULL};
    assert_int_equal(PARSE_ENV(f, env, LOOPBACK), 0);
    assert_true(has_log(&f->cfg, CONFIG_LOG_WARN, "pkg/flags",
                        "unrecognized environment variable ETCD_FOO=1"));
    assert_true(has_log(&f->cfg, CONFIG_LOG_WARN, "pkg/flags",
                        "unrecognized environment variable ETCD_NAME="));
    assert_string_equal(f->cfg.name, "default");
}

static void test_env_bad_values(void **state)
{
    struct fixture *f = *state;
    char *env1[] = {"ETCD_MAX_REQUEST_BYTES=abc", NULL};
    char *env2[] = {"ETCD_INITIAL_CLUSTER_STATE=bogus", NULL};
    char *env3[] = {"ETCD_ENABLE_V2=maybe", NULL};
    PARSE_ENV(f, env1, LOOPBACK);
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "invalid value \"abc\" for ETCD_MAX_REQUEST_BYTES: parse "
                 "error");
    PARSE_ENV(f, env2, LOOPBACK);
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "invalid value \"bogus\" for ETCD_INITIAL_CLUSTER_STATE: "
                 "invalid value");
    PARSE_ENV(f, env3, LOOPBACK);
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "invalid value \"maybe\" for ETCD_ENABLE_V2: parse error");
}

static void test_env_conflict_beats_bad_value(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"ETCD_MAX_TXN_OPS=abc", "ETCD_NAME=a", NULL};
    PARSE_ENV(f, env, LOOPBACK, "--name=b");
    assert_int_equal(f->cfg.error_kind, CONFIG_ERR_FATAL);
}

/* ---- help and version ---- */

static void test_version_and_help(void **state)
{
    struct fixture *f = *state;
    char *env[] = {"ETCD_NAME=x", NULL};
    /* etcd prints the version before looking at the environment. */
    assert_int_equal(PARSE_ENV(f, env, "--name=y", "--version"), 0);
    assert_true(f->cfg.version_requested);
    assert_false(f->cfg.help_requested);
    assert_int_equal(PARSE(f, "--version=false"), 0);
    assert_false(f->cfg.version_requested);

    assert_int_equal(PARSE(f, "-h"), 0);
    assert_true(f->cfg.help_requested);
    f->cfg.help_requested = false;
    assert_int_equal(PARSE(f, "--help=false"), 0);
    assert_true(f->cfg.help_requested);
    f->cfg.help_requested = false;
    /* Parsing stops at the help flag: later garbage is not seen. */
    assert_int_equal(PARSE(f, "-help", "--no-such-flag"), 0);
    assert_true(f->cfg.help_requested);
}

static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    fn(out);
    fclose(out);
    return buf;
}

static void test_print_functions(void **state)
{
    char *s;
    (void)state;
    s = capture(config_print_version);
    assert_non_null(strstr(s, "ikada Version: " CONFIG_IKADA_VERSION "\n"));
    assert_non_null(strstr(s, "etcd Version: " CONFIG_ETCD_VERSION));
    free(s);
    s = capture(config_print_usage);
    assert_true(strncmp(s, "Usage:\n", 7) == 0);
    assert_non_null(strstr(s, "--version"));
    free(s);
    s = capture(config_print_help);
    assert_non_null(strstr(s, "\nMember:\n  --"));
    assert_non_null(strstr(s, "\n  --name 'default'\n    "));
    assert_non_null(strstr(s, "  --data-dir '${name}.etcd'\n"));
    assert_non_null(strstr(s, "  --max-request-bytes '1572864'\n"));
    assert_non_null(strstr(s, "  --initial-cluster 'default=http://localhost:"
                              "2380'\n"));
    assert_non_null(strstr(s, "  --log-level 'info'\n"));
    assert_non_null(strstr(s, "--cert-file"));
    free(s);
}

/* ---- refused and ignored flags ---- */

static void test_refused_and_ignored(void **state)
{
    struct fixture *f = *state;
    PARSE(f, LOOPBACK, "--cert-file=/x");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "ikada: --cert-file is not supported yet");
    PARSE(f, LOOPBACK, "--proxy=on");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "ikada: --proxy is not supported yet");
    /* Explicit defaults are fine. */
    assert_int_equal(PARSE(f, LOOPBACK, "--proxy=off", "--auto-tls=false",
                           "--max-wals=3", "--pre-vote",
                           "--experimental-corrupt-check-time=3m"),
                     0);
    assert_int_equal(PARSE(f, LOOPBACK, "--snapshot"), 0);
    assert_true(has_log(&f->cfg, CONFIG_LOG_WARN, "pkg/flags",
                        "flag \"-snapshot\" is no longer supported - "
                        "ignoring."));
    PARSE(f, LOOPBACK, "--experimental-enable-lease-checkpoint-persist");
    expect_error(f, CONFIG_ERR_VERIFY, 1,
                 "setting experimental-enable-lease-checkpoint-persist "
                 "requires experimental-enable-lease-checkpoint");
}

/* ---- initial cluster and bootstrap checks ---- */

static void test_initial_cluster_parse(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, LOOPBACK, "--name", "b", "--initial-cluster",
                           "a=http://10.0.0.1:2380,,b=http://10.0.0.2:2381,"
                           "b= http://10.0.0.2:2380 ,c=http://10.0.0.3:2380",
                           "--initial-advertise-peer-urls",
                           "http://10.0.0.2:2381,http://10.0.0.2:2380"),
                     0);
    assert_int_equal(f->cfg.n_initial_cluster, 3);
    assert_string_equal(f->cfg.initial_cluster[0].name, "a");
    assert_string_equal(f->cfg.initial_cluster[1].name, "b");
    assert_int_equal(f->cfg.initial_cluster[1].n_peer_urls, 2);
    assert_string_equal(f->cfg.initial_cluster[1].peer_urls[0],
                        "http://10.0.0.2:2380");
    assert_string_equal(f->cfg.initial_cluster[1].peer_urls[1],
                        "http://10.0.0.2:2381");
    assert_string_equal(f->cfg.initial_cluster[2].name, "c");
    assert_non_null(config_find_member(&f->cfg, "c"));
    assert_null(config_find_member(&f->cfg, "d"));
    assert_int_equal(config_verify_bootstrap(&f->cfg, f->errmsg), 0);

    /* Names are not trimmed (etcd): " b" is another member. */
    assert_int_equal(PARSE(f, LOOPBACK, "--initial-cluster",
                           "b=http://10.0.0.2:2380, b=http://10.0.0.3:2380"),
                     0);
    assert_int_equal(f->cfg.n_initial_cluster, 2);
    assert_string_equal(f->cfg.initial_cluster[1].name, " b");
}

static void test_bootstrap_errors(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(PARSE(f, LOOPBACK, "--initial-advertise-peer-urls",
                           "http://127.0.0.1:41380"),
                     0);
    /* --name default: the default --initial-cluster is not re-derived. */
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "--initial-cluster has default=http://localhost:2380 but "
                 "missing from --initial-advertise-peer-urls=http://"
                 "127.0.0.1:41380 (resolved urls: \"http://127.0.0.1:41380\" "
                 "!= \"http://localhost:2380\")");
    assert_string_equal(f->cfg.error_pkg, "etcdmain");

    assert_int_equal(PARSE(f, LOOPBACK, "--name", "foo", "--initial-cluster",
                           "bar=http://127.0.0.1:41380"),
                     0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "couldn't find local name \"foo\" in the initial cluster "
                 "configuration");

    assert_int_equal(PARSE(f, LOOPBACK, "--name", "foo", "--initial-cluster",
                           "foo=http://127.0.0.1:41380,foo=http://127.0.0.1:"
                           "41381",
                           "--initial-advertise-peer-urls",
                           "http://127.0.0.1:41380"),
                     0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "--initial-cluster has foo=http://127.0.0.1:41381 but missing "
                 "from --initial-advertise-peer-urls=http://127.0.0.1:41380 "
                 "(len([\"http://127.0.0.1:41380\"]) != len([\"http://"
                 "127.0.0.1:41380\" \"http://127.0.0.1:41381\"]))");

    assert_int_equal(PARSE(f, LOOPBACK, "--name", "foo", "--initial-cluster",
                           "foo=http://127.0.0.1:41380,bar=http://127.0.0.1:"
                           "41380",
                           "--initial-advertise-peer-urls",
                           "http://127.0.0.1:41380"),
                     0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "initial cluster bar=http://127.0.0.1:41380,foo=http://"
                 "127.0.0.1:41380 has duplicate url");

    assert_int_equal(PARSE(f, LOOPBACK, "--name", "foo", "--initial-cluster",
                           "foo=http://127.0.0.1:41380",
                           "--initial-advertise-peer-urls",
                           "http://127.0.0.1:41380,http://127.0.0.1:41381"),
                     0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "--initial-advertise-peer-urls has http://127.0.0.1:41381 but "
                 "missing from --initial-cluster=foo=http://127.0.0.1:41380,"
                 "foo=http://127.0.0.1:41381");

    assert_int_equal(PARSE(f, LOOPBACK, "--initial-cluster", "foo"), 0);
    assert_non_null(f->cfg.initial_cluster_error);
    assert_int_equal(f->cfg.n_initial_cluster, 0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "error setting up initial cluster: URL scheme must be http, "
                 "https, unix, or unixs: ");

    assert_int_equal(PARSE(f, LOOPBACK, "--initial-cluster", ""), 0);
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "couldn't find local name \"default\" in the initial cluster "
                 "configuration");

    assert_int_equal(PARSE(f, LOOPBACK, "--name="), 0);
    assert_string_equal(f->cfg.initial_cluster_str,
                        "default=http://localhost:2380");
    assert_string_equal(f->cfg.data_dir, ".etcd");
    f->rv = config_verify_bootstrap(&f->cfg, f->errmsg);
    expect_error(f, CONFIG_ERR_FATAL, 1,
                 "couldn't find local name \"\" in the initial cluster "
                 "configuration");
}

static void test_bootstrap_existing_skips_advertise_check(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, LOOPBACK, "--name", "foo", "--initial-cluster",
                           "foo=http://127.0.0.1:1,bar=http://127.0.0.1:2",
                           "--initial-cluster-state", "existing"),
                     0);
    assert_int_equal(config_verify_bootstrap(&f->cfg, f->errmsg), 0);
}

static void test_default_cluster_follows_name(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(PARSE(f, LOOPBACK, "--name", "n1",
                           "--initial-advertise-peer-urls",
                           "http://127.0.0.1:2,http://127.0.0.1:1"),
                     0);
    assert_string_equal(f->cfg.initial_cluster_str,
                        "n1=http://127.0.0.1:1,n1=http://127.0.0.1:2");
    assert_int_equal(config_verify_bootstrap(&f->cfg, f->errmsg), 0);
}

/* ---- config_url_parse ---- */

static void test_url_parse(void **state)
{
    struct config_url u;
    char errmsg[IK_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(config_url_parse(" http://10.1.2.3:2380 ", &u, errmsg), 0);
    assert_string_equal(u.raw, "http://10.1.2.3:2380");
    assert_string_equal(u.scheme, "http");
    assert_string_equal(u.host, "10.1.2.3");
    assert_int_equal(u.port, 2380);
    config_url_free(&u);
    assert_int_equal(config_url_parse("https://[fe80::1]:443", &u, errmsg), 0);
    assert_string_equal(u.host, "fe80::1");
    assert_int_equal(u.port, 443);
    config_url_free(&u);

    assert_int_equal(config_url_parse("unix://a:1", &u, errmsg), IK_EINVAL);
    assert_string_equal(errmsg, "URL scheme must be http or https: unix://a:1");
    assert_null(u.raw);
    assert_int_equal(config_url_parse("http://a:70000", &u, errmsg), IK_EINVAL);
    assert_string_equal(errmsg, "invalid port in URL: http://a:70000");
    assert_int_equal(config_url_parse("http://a:", &u, errmsg), IK_EINVAL);
    assert_string_equal(errmsg, "invalid port in URL: http://a:");
    assert_int_equal(config_url_parse("http:a:1", &u, errmsg), IK_EINVAL);
    assert_string_equal(errmsg, "URL address does not have the form "
                                "\"host:port\": http:a:1");
    assert_int_equal(config_url_parse("", &u, errmsg), IK_EINVAL);
    assert_int_equal(config_url_parse("http://a:1/x", &u, errmsg), IK_EINVAL);
    assert_string_equal(errmsg, "URL must not contain a path: http://a:1/x");
}

/* ---- fault injection ---- */

static int fail_countdown;
static int alloc_calls;

static bool fail_nth(void)
{
    alloc_calls++;
    return fail_countdown-- == 0;
}

static void test_alloc_failures(void **state)
{
    int n;
    bool finished = false;
    char errmsg[IK_ERRMSG_SIZE];
    char *env[] = {"ETCD_SNAPSHOT_COUNT=10", "ETCD_FOO=bar", NULL};
    char *argv[] = {"ikada",
                    "--name=b",
                    "--listen-client-urls=http://127.0.0.1:1,http://[::1]:2",
                    "--advertise-client-urls=http://a:1",
                    "--listen-peer-urls=http://127.0.0.1:3",
                    "--initial-advertise-peer-urls=http://10.0.0.2:1",
                    "--initial-cluster=a=http://10.0.0.1:1,b=http://10.0.0.2:1",
                    "--logger=zap",
                    "--log-outputs=stderr,stdout",
                    "--snapshot",
                    NULL};
    (void)state;
    for (n = 0; n < 10000 && !finished; n++) {
        struct config cfg;
        int rv;
        fail_countdown = -1;
        config_fail_alloc_hook = fail_nth;
        rv = config_init(&cfg);
        assert_int_equal(rv, 0);
        fail_countdown = n;
        alloc_calls = 0;
        rv = config_parse(&cfg, 10, argv, env, errmsg);
        if (rv == 0) {
            assert_string_equal(cfg.name, "b");
            assert_int_equal(cfg.n_initial_cluster, 2);
            assert_int_equal(cfg.snapshot_count, 10);
            fail_countdown = n - alloc_calls;
            rv = config_verify_bootstrap(&cfg, errmsg);
            if (rv == 0) {
                finished = fail_countdown >= 0;
            } else {
                assert_int_equal(rv, IK_ENOMEM);
            }
        } else {
            assert_int_equal(rv, IK_ENOMEM);
            assert_string_equal(errmsg, "out of memory");
        }
        config_fail_alloc_hook = NULL;
        config_close(&cfg);
    }
    assert_true(finished);
    assert_true(n > 20); /* the parse really allocates */

    /* config_init itself. */
    for (n = 0; n < 200; n++) {
        struct config cfg;
        int rv;
        fail_countdown = n;
        config_fail_alloc_hook = fail_nth;
        rv = config_init(&cfg);
        config_fail_alloc_hook = NULL;
        config_close(&cfg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
    }
    assert_true(n > 5 && n < 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_init_defaults),
        T(test_parse_no_args),
        T(test_parse_argc_zero),
        T(test_flag_forms),
        T(test_flag_value_may_start_with_dash),
        T(test_last_flag_wins),
        T(test_unknown_flag),
        T(test_bad_flag_syntax),
        T(test_flag_needs_argument),
        T(test_leftover_arguments),
        T(test_bad_numbers),
        T(test_go_number_forms),
        T(test_bad_booleans),
        T(test_select_values),
        T(test_bad_urls),
        T(test_url_lists),
        T(test_empty_url_value_keeps_default),
        T(test_bind_urls_need_ip),
        T(test_advertise_empty_host),
        T(test_listen_without_advertise),
        T(test_ikada_url_limits),
        T(test_timing_checks),
        T(test_compaction),
        T(test_logging),
        T(test_env_sets_flags),
        T(test_env_conflict_is_fatal),
        T(test_env_conflict_even_when_empty),
        T(test_env_unrecognized),
        T(test_env_bad_values),
        T(test_env_conflict_beats_bad_value),
        T(test_version_and_help),
        T(test_print_functions),
        T(test_refused_and_ignored),
        T(test_initial_cluster_parse),
        T(test_bootstrap_errors),
        T(test_bootstrap_existing_skips_advertise_check),
        T(test_default_cluster_follows_name),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_alloc_failures),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
