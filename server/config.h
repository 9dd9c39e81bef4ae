/*
 * config: etcd 3.4's command line, ETCD_* environment variables and
 * defaults, parsed into one struct.
 *
 * ikada is started exactly like etcd: the same flags, the same env vars,
 * the same defaults and (as far as is practical) the same error messages
 * and exit statuses. Flags follow Go's `flag` package: `-flag` or `--flag`,
 * `--flag=value` or `--flag value`, booleans as `--flag` or
 * `--flag=true|false` (never `--flag false`). Parsing stops at the first
 * non-flag argument or after `--`; etcd rejects leftover arguments.
 *
 * Every flag can also be given as ETCD_<FLAG> (upper case, '-' -> '_'),
 * e.g. ETCD_NAME, ETCD_INITIAL_CLUSTER; empty values are ignored. As in
 * etcd 3.4, a variable for a flag that is ALSO on the command line is a
 * fatal error ("conflicting environment variable \"ETCD_NAME\" is shadowed
 * by corresponding command-line flag ..."), not a warning; an ETCD_*
 * variable that names no flag is a warning ("unrecognized environment
 * variable ETCD_FOO=1"), recorded in cfg->logs for the caller to log.
 *
 * This module does no I/O except config_print_*() which write to a FILE*
 * given by the caller.
 *
 * Memory: every string and array in struct config is malloc()ed and owned
 * by the struct; config_close() frees all of it.
 */
#ifndef IKADA_CONFIG_H
#define IKADA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Program version reported by --version and the version RPCs. */
#define CONFIG_IKADA_VERSION "0.1.0"
/* The etcd version ikada is compatible with (and reports to clients). */
#define CONFIG_ETCD_VERSION "3.4.23"
/* etcd's cluster version for a 3.4 cluster. */
#define CONFIG_CLUSTER_VERSION "3.4.0"

/* A parsed URL such as "http://127.0.0.1:2379". */
struct config_url {
    char *raw;     /* canonical text: "<scheme>://<host>:<port>", scheme
                      lower-cased, surrounding blanks trimmed */
    char *scheme;  /* "http" or "https" (lower case) */
    char *host;    /* host name or IP; IPv6 without the brackets */
    uint16_t port; /* always present: etcd requires an explicit port */
};

/* One member of --initial-cluster: a name and all of its peer URLs (etcd
 * allows "a=http://x:2380,a=http://y:2380", i.e. several URLs per name).
 * Members appear in the order of their first mention; each member's URLs
 * are sorted (as etcd sorts them, and as ids_member_id() hashes them). */
struct config_member {
    char *name;
    char **peer_urls;
    size_t n_peer_urls;
};

enum config_cluster_state {
    CONFIG_CLUSTER_STATE_NEW = 0,
    CONFIG_CLUSTER_STATE_EXISTING,
};

enum config_log_level {
    CONFIG_LOG_DEBUG = 0,
    CONFIG_LOG_INFO,
    CONFIG_LOG_WARN,
    CONFIG_LOG_ERROR,
    CONFIG_LOG_PANIC,
    CONFIG_LOG_FATAL,
};

enum config_compaction_mode {
    CONFIG_COMPACTION_PERIODIC = 0, /* etcd's default */
    CONFIG_COMPACTION_REVISION,
};

/* A message etcd would log while parsing its configuration. */
struct config_log_entry {
    enum config_log_level level; /* CONFIG_LOG_INFO or CONFIG_LOG_WARN */
    const char *pkg;             /* static: etcd's package, "pkg/flags" */
    char *msg;
};

/* How etcd reports a configuration error (valid after config_parse() or
 * config_verify_bootstrap() failed). In all cases errmsg is the message. */
enum config_error_kind {
    CONFIG_ERR_NONE = 0,
    /* Go flag package error: etcd prints errmsg and a newline to stderr,
     * then the short usage (config_print_usage()); exit status 2. */
    CONFIG_ERR_USAGE,
    /* etcd logs at error level in package "etcdmain":
     * "error verifying flags, <errmsg>. See 'etcd --help'." then, if
     * cfg->error_hint is set, that hint as a second error line; exit 1. */
    CONFIG_ERR_VERIFY,
    /* etcd logs errmsg at critical level ("C | <error_pkg>: <errmsg>")
     * and exits with status 1. */
    CONFIG_ERR_FATAL,
    /* etcd panics: "panic: <errmsg>" on stderr, exit status 2. */
    CONFIG_ERR_PANIC,
};

struct config {
    /* Member. */
    char *name;              /* --name, default "default" */
    char *data_dir;          /* --data-dir, default "<name>.etcd" */
    char *wal_dir;           /* --wal-dir, default "" (accepted, unused) */
    uint64_t snapshot_count; /* --snapshot-count, default 100000 */
    uint64_t heartbeat_ms;   /* --heartbeat-interval, default 100 */
    uint64_t election_ms;    /* --election-timeout, default 1000 */

    /* Listen URLs: sorted by text, as etcd sorts them. */
    struct config_url *listen_client_urls; /* --listen-client-urls */
    size_t n_listen_client_urls;
    struct config_url *listen_peer_urls; /* --listen-peer-urls */
    size_t n_listen_peer_urls;

    uint64_t max_request_bytes;  /* --max-request-bytes, default 1572864 */
    uint64_t max_txn_ops;        /* --max-txn-ops, default 128 */
    int64_t quota_backend_bytes; /* --quota-backend-bytes, 0 = 2 GiB */

    /* Clustering. URL lists are in canonical text form, sorted. */
    char **advertise_client_urls; /* --advertise-client-urls */
    size_t n_advertise_client_urls;
    char **initial_advertise_peer_urls; /* --initial-advertise-peer-urls */
    size_t n_initial_advertise_peer_urls;
    /* --initial-cluster, parsed. etcd's default is "<name>=<each initial
     * advertise peer URL>" when --name is not "default" and
     * --initial-cluster was left at its default. If the string does not
     * parse, n_initial_cluster is 0 and initial_cluster_error holds the
     * reason: etcd only reports it when it bootstraps a fresh data dir,
     * see config_verify_bootstrap(). */
    struct config_member *initial_cluster;
    size_t n_initial_cluster;
    char *initial_cluster_str; /* the string the above was parsed from */
    char *initial_cluster_error;
    enum config_cluster_state initial_cluster_state; /* default new */
    char *initial_cluster_token; /* default "etcd-cluster" */

    /* Compaction. auto_compaction_retention_value is, as in etcd, in
     * milliseconds for the periodic mode (the flag is a number of hours
     * or a Go duration such as "30m") and a number of revisions for the
     * revision mode. 0 disables auto compaction. */
    enum config_compaction_mode auto_compaction_mode;
    char *auto_compaction_retention; /* as given, default "0" */
    int64_t auto_compaction_retention_value;

    /* Logging. */
    enum config_log_level log_level; /* --log-level, default info */
    char *logger;                    /* --logger, "capnslog" (default), "zap" */
    char **log_outputs;              /* --log-outputs, default "default" */
    size_t n_log_outputs;
    bool debug; /* --debug (deprecated in etcd; implies log level debug) */

    /* Profiling and monitoring (accepted; ikada serves what it can). */
    bool enable_pprof;
    char *metrics; /* "basic" (default) or "extensive" */
    struct config_url *listen_metrics_urls; /* default none */
    size_t n_listen_metrics_urls;

    bool enable_v2; /* --enable-v2, accepted and ignored */

    /* --version / --help was given: the caller prints
     * config_print_version() to stdout, or for help
     * config_print_usage() to stderr then config_print_help() to stdout
     * (etcd does both), and exits 0. Parsing stops there: nothing else is
     * validated and other fields may be left at their defaults. */
    bool version_requested;
    bool help_requested;

    /* Messages etcd would log while parsing (env var used, unrecognized
     * ETCD_* variable, default data dir...), in order; reset by each
     * config_parse(). */
    struct config_log_entry *logs;
    size_t n_logs;
    /* The same warning-level messages as plain strings (convenience). */
    char **warnings;
    size_t n_warnings;

    /* Set when config_parse() or config_verify_bootstrap() fails. */
    enum config_error_kind error_kind;
    const char *error_pkg;  /* static, for CONFIG_ERR_FATAL */
    const char *error_hint; /* static or NULL, for CONFIG_ERR_VERIFY */
    int exit_status;        /* the status etcd exits with */
    bool usage_on_error;    /* error_kind == CONFIG_ERR_USAGE */
};

/* Test hook: when set, called before every allocation this module makes;
 * returning true makes that allocation fail (IK_ENOMEM). */
extern bool (*config_fail_alloc_hook)(void);

/*
 * Set every field to etcd's default (data_dir "default.etcd", initial
 * cluster "default=http://localhost:2380" ...). Returns 0, or IK_ENOMEM
 * (config_close() is still required and safe).
 */
int config_init(struct config *cfg);

/*
 * Parse @argv (argv[0] is the program name and is skipped) and the ETCD_*
 * variables of @envp (a NULL-terminated "NAME=value" array, may be NULL)
 * into @cfg, which must have been config_init()ed, then validate the
 * result as etcd does (unless --help or --version was given).
 *
 * Besides etcd's own checks, flags ikada does not implement (TLS,
 * discovery, proxy, --config-file, --force-new-cluster) are rejected when
 * set to anything but their default, and https/unix URLs are rejected
 * (CONFIG_ERR_VERIFY, message starting with "ikada: "). Flags that only
 * tune etcd internals (--max-wals, --pre-vote, grpc keepalives ...) are
 * accepted, type-checked and ignored.
 *
 * Returns 0, or:
 *  - IK_EINVAL: bad flag, bad value or invalid configuration. @errmsg
 *    (IK_ERRMSG_SIZE bytes) holds etcd's message for it, e.g.
 *    "flag provided but not defined: -foo" or
 *    "invalid value \"abc\" for flag -max-request-bytes: parse error";
 *    cfg->error_kind / error_pkg / error_hint / exit_status say how etcd
 *    reports it.
 *  - IK_ENOMEM.
 * On error @cfg may be partially filled; config_close() frees it.
 */
int config_parse(struct config *cfg, int argc, char **argv, char **envp,
                 char *errmsg);

/* Free everything @cfg owns and zero it. Safe on a zeroed or failed
 * struct. */
void config_close(struct config *cfg);

/*
 * The checks etcd makes when it bootstraps a member on a FRESH data dir
 * (call it only then: etcd ignores --initial-cluster* for an initialized
 * one): --initial-cluster must parse ("error setting up initial cluster:
 * ..."), contain --name ("couldn't find local name \"x\" in the initial
 * cluster configuration"), have no URL twice ("initial cluster ... has
 * duplicate url") and, for state new, list exactly this member's
 * --initial-advertise-peer-urls ("--initial-cluster has ... but missing
 * from --initial-advertise-peer-urls=..."). URLs are compared as text
 * (etcd also resolves host names; ikada does no DNS here).
 * Returns 0, or IK_EINVAL with etcd's message in @errmsg and
 * cfg->error_kind = CONFIG_ERR_FATAL, error_pkg "etcdmain", exit_status 1.
 */
int config_verify_bootstrap(struct config *cfg, char *errmsg);

/* The member of cfg->initial_cluster called @name, or NULL. */
const struct config_member *config_find_member(const struct config *cfg,
                                               const char *name);

/*
 * Parse one URL as etcd does for listen/advertise URLs: scheme http or
 * https, a host and an explicit numeric port, no path. Returns 0 and fills
 * @url (caller frees with config_url_free()), or IK_EINVAL with a message
 * in @errmsg, or IK_ENOMEM. On error @url holds nothing.
 */
int config_url_parse(const char *s, struct config_url *url, char *errmsg);
void config_url_free(struct config_url *url);

/* Name of a log level ("debug", "info" ...); never NULL. */
const char *config_log_level_name(enum config_log_level level);

/* What etcd prints for --version (to @out). */
void config_print_version(FILE *out);
/* The flag list etcd prints to stdout for --help (etcd prints the short
 * usage to stderr first). */
void config_print_help(FILE *out);
/* The short usage etcd prints to stderr after a flag syntax error. */
void config_print_usage(FILE *out);

#endif /* IKADA_CONFIG_H */
