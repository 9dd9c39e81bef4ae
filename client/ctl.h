/*
 * ctl: the framework of ikadactl, the etcdctl 3.4-compatible CLI.
 *
 * ikadactl.c holds main() and the command table; each group of commands
 * lives in its own file (ctl_kv.c: get/put/del/txn/compaction/watch;
 * ctl_lease.c; ctl_cluster.c: member/endpoint/alarm/defrag/move-leader;
 * ctl_lock.c: lock/elect; ctl_check.c: check perf; ctl_snapshot.c) and
 * exports a table of its commands (struct ctl_command, at the end).
 *
 * Behaviour contract (what etcdctl 3.4 does, which ikadactl matches byte
 * for byte on stdout/stderr and in its exit code):
 *  - flags are parsed the pflag way: "--name=value", "--name value",
 *    "-x value", "-xvalue", bool flags "--name" / "--name=false", flags and
 *    positional arguments interleaved, "--" ends flags; global flags are
 *    accepted anywhere on the command line; ETCDCTL_<FLAG> environment
 *    variables (upper case, '-' -> '_') set global flags that are not on the
 *    command line.
 *  - errors: "Error: <message>" on stderr and the exit code of etcdctl's
 *    ExitWithError (CTL_EXIT_*).
 */
#ifndef IKADA_CTL_H
#define IKADA_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/ikclient.h"

/* etcdctl's exit codes. */
enum {
    CTL_EXIT_SUCCESS = 0,
    CTL_EXIT_ERROR = 1,
    CTL_EXIT_BAD_CONNECTION = 2,
    CTL_EXIT_INVALID_INPUT = 3,
    CTL_EXIT_BAD_FEATURE = 4,
    CTL_EXIT_INTERRUPTED = 5,
    CTL_EXIT_IO = 6,
    CTL_EXIT_BAD_ARGS = 128
};

enum ctl_write_out {
    CTL_OUT_SIMPLE,
    CTL_OUT_JSON,
    CTL_OUT_PROTOBUF,
    CTL_OUT_FIELDS,
    CTL_OUT_TABLE
};

/* Global flags (etcdctl's GLOBAL OPTIONS). */
struct ctl_global {
    char **endpoints; /* --endpoints, comma separated; default 127.0.0.1:2379 */
    size_t n_endpoints;
    uint64_t dial_timeout_ms;    /* --dial-timeout, default 2s */
    uint64_t command_timeout_ms; /* --command-timeout, default 5s */
    uint64_t keepalive_time_ms;  /* accepted, unused */
    uint64_t keepalive_timeout_ms;
    enum ctl_write_out write_out; /* -w/--write-out, default simple */
    const char *write_out_name;   /* as given, e.g. "json" */
    bool hex;                     /* --hex */
    bool debug;
    const char *user, *password;
    const char *cacert, *cert, *key;
    bool insecure_skip_tls_verify, insecure_transport, insecure_discovery;
    const char *discovery_srv, *discovery_srv_name;
};

struct ctl_command;
struct ctl {
    struct ctl_global g;
    const char *cmd_name; /* "get", "member list", ... */
    struct ikclient *cli; /* made by ctl_client() on first use */
    FILE *out;            /* stdout */
    FILE *err;            /* stderr */
    /* Added: the command being run (NULL before lookup), for the usage
     * text printed on flag errors and -h. */
    const struct ctl_command *cmd;
    /* Added: which global flags were given on the command line (bit i:
     * entry i of ctl.c's global flag table), for ETCDCTL_* env vars. */
    uint64_t g_set;
    /* Added: which global flags were set by ETCDCTL_* (same bits), and
     * whether the environment was applied (ctl_prepare()). */
    uint64_t g_env;
    bool env_applied;
    /* Added: the credentials resolved from --user/--password or the
     * password prompt (ctl_prepare(); malloc'ed, NULL without --user). */
    bool auth_resolved, prepared;
    char *auth_user, *auth_password;
    /* Added: the kinds of streams already opened (ctl_stream_auth()). */
    unsigned streams_opened;
};

/* Kinds of flag values. */
enum ctl_flag_kind {
    CTL_FLAG_BOOL,     /* bool *: "--x", "--x=true|false" */
    CTL_FLAG_STRING,   /* const char **: points into argv or the default */
    CTL_FLAG_INT64,    /* int64_t *: Go strconv.ParseInt syntax, base 0 */
    CTL_FLAG_UINT64,   /* uint64_t * */
    CTL_FLAG_DURATION, /* uint64_t * in ms: Go time.ParseDuration syntax */
    CTL_FLAG_STRINGS   /* struct ctl_strings *: repeated or comma list */
};

struct ctl_strings {
    char **v;
    size_t n;
};

/* One flag of a command: long name without "--", optional one-letter
 * short name (0: none). The array ends with a zeroed entry. */
struct ctl_flag {
    const char *name;
    char short_name;
    enum ctl_flag_kind kind;
    void *value; /* where the parsed value goes; preset it to the default */
    bool *set;   /* optional: set true when given on the command line */
    /* Unused (kept for the tables' shape): the help texts come from the
     * commands' struct ctl_flag_doc tables. */
    const char *usage;
};

/*
 * Parse @argc/@argv (argv[0] is the first word after the command name)
 * against @flags plus the global flags (into ctl->g); the positional
 * arguments are left, in order, in argv[0..*nargs). On an unknown flag or
 * a bad value prints etcdctl's error ("Error: unknown flag: --foo",
 * "Error: invalid argument \"x\" for \"--limit\" flag: strconv.ParseInt:
 * parsing \"x\": invalid syntax", ...) and returns the exit code to exit
 * with; returns -1 on success.
 */
int ctl_parse_flags(struct ctl *ctl, int argc, char **argv,
                    const struct ctl_flag *flags, int *nargs);

/*
 * The client for ctl->g (created on first use). On failure prints
 * etcdctl's error and returns NULL; the caller returns
 * CTL_EXIT_BAD_CONNECTION (what etcdctl exits with when it cannot make its
 * client).
 */
struct ikclient *ctl_client(struct ctl *ctl);

/*
 * What etcdctl does with its global flags before it makes a client
 * (clientConfigFromCmd + newClientCfg), in its order: ETCDCTL_* applied,
 * --cert/--key/--cacert given as "" refused (exit CTL_EXIT_BAD_ARGS), TLS
 * refused (https:// or unixs:// endpoint, --cert/--key/--cacert,
 * --insecure-transport=false, --discovery-srv without
 * --insecure-discovery: "Error: TLS is not supported by ikadactl ...",
 * CTL_EXIT_BAD_FEATURE; ikclient has no TLS), the credentials resolved
 * (--password, else "name:password" in --user, else etcdctl's "Password: "
 * prompt on stdout reading one line of stdin with echo off), -w checked.
 * Returns -1 when the command may go on, else the exit code (the error is
 * printed). Idempotent. ctl_client() calls it first.
 */
int ctl_prepare(struct ctl *ctl);

/* An ikclient config for ctl->g and the resolved credentials (user set
 * only when both name and password are non-empty, as clientv3); pointers
 * into ctl, valid while it lives. Call ctl_prepare() first. */
void ctl_client_config(struct ctl *ctl, struct ikclient_config *cfg);

/*
 * clientv3.New's authentication for a client made with ctl_client_config():
 * when credentials are set, Authenticate on each endpoint in turn within
 * one --dial-timeout, a retry warning line for each failure, "not enabled"
 * accepted (go on without a token). Returns -1 on success (or nothing to
 * do), else prints "Error: ..." and returns CTL_EXIT_BAD_CONNECTION.
 */
int ctl_authenticate(struct ctl *ctl, struct ikclient *c);
/* The same without the "Error:" line: NULL on success, else the error text
 * (malloc'ed, caller frees); for commands that report per endpoint. */
char *ctl_client_auth(struct ctl *ctl, struct ikclient *c);

/*
 * clientv3 3.4's stream interceptor authenticates again (getToken) each
 * time it opens a gRPC stream when credentials are set: a warning line per
 * failed attempt, e.g. "authentication is not enabled" against a server
 * without auth. etcdctl's watches share one stream, its keep-alives
 * another, and a snapshot has its own: call this before the first stream
 * of kind @kind (CTL_STREAM_*) on client @c; later calls for that kind do
 * nothing. A failure is ignored here (the stream then fails on its own).
 */
enum { CTL_STREAM_WATCH = 1, CTL_STREAM_LEASE = 2, CTL_STREAM_SNAPSHOT = 4 };
void ctl_stream_auth(struct ctl *ctl, struct ikclient *c, unsigned kind);

/* True when global flag @name ("command-timeout") was given on the command
 * line or by its ETCDCTL_* variable (applies the environment first). */
bool ctl_global_given(struct ctl *ctl, const char *name);

/* ctl->g.write_out from -w / ETCDCTL_WRITE_OUT (applies the environment
 * first); -1, or prints "Error: unsupported output format" and returns
 * CTL_EXIT_BAD_FEATURE. */
int ctl_resolve_write_out(struct ctl *ctl);

/*
 * Print a failed call's error as etcdctl does ("Error: " + the gRPC
 * message, e.g. "Error: etcdserver: requested revision has been
 * compacted"; "context deadline exceeded" for deadlines, ...) and return
 * the exit code etcdctl uses for it (CTL_EXIT_ERROR, or
 * CTL_EXIT_BAD_CONNECTION when no endpoint could be reached).
 */
int ctl_fail_status(struct ctl *ctl, int rc, const struct ikclient_status *st);

/* Print "Error: <formatted>" + newline to stderr and return @code. */
int ctl_fail(struct ctl *ctl, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Output helpers shared by the commands.
 * ctl_print_json(): @msg as etcdctl's -w json prints that response
 * (Go encoding/json of the gogo-generated struct: fields in .proto order,
 * zero values omitted, int64/uint64 as numbers, bytes base64, nested
 * messages and repeated fields likewise), newline-terminated.
 * ctl_print_protobuf(): the packed bytes of @msg, as -w protobuf.
 * ctl_print_bytes(): a key or value as etcdctl prints it in simple/fields
 * output: raw, or hex-encoded with --hex.
 */
void ctl_print_json(struct ctl *ctl, const ProtobufCMessage *msg);
void ctl_print_protobuf(struct ctl *ctl, const ProtobufCMessage *msg);
void ctl_print_bytes(struct ctl *ctl, const uint8_t *data, size_t len);

/*
 * Added helpers.
 * ctl_go_quote(): @data as Go's strconv.Quote / %q writes it (printable
 * UTF-8 kept, \n \t \" \\ ..., other bytes \xNN, non-printable runes
 * \uNNNN); malloc'ed, NUL-terminated, caller frees.
 * ctl_json_string(): the JSON ctl_print_json() prints (no newline),
 * malloc'ed; for composing outputs that are not one protobuf message.
 * ctl_json_quote(): a JSON string literal as Go's encoding/json writes it
 * (HTML-safe escapes, invalid UTF-8 as \ufffd); malloc'ed.
 * ctl_print_header_fields(): the 4 header lines of -w fields
 * ("\"ClusterID\" : N" ...); @h may be NULL (zeros).
 * ctl_print_kv_fields(): a KeyValue in -w fields ("\"<pfx>Key\" : ...").
 * ctl_print_kv(): a KeyValue in -w simple (key line unless @value_only,
 * value line; --hex aware).
 * ctl_parse_go_int(): Go strconv.ParseInt(s, base, 64); 0 or -1 with
 * @err filled with Go's message ("strconv.ParseInt: parsing \"x\":
 * invalid syntax").
 * ctl_print_usage(): the usage text of ctl->cmd on stdout (as -h).
 * ctl_print_grpc_warn(): the zap warn line clientv3's retry interceptor
 * logs for a failed unary call (ctl_fail_status() prints it itself).
 * ctl_go_error_string(): the error text clientv3 returns for @st
 * ("etcdserver: ..." or "rpc error: code = X desc = Y"); static buffer.
 */
char *ctl_go_quote(const uint8_t *data, size_t len);
char *ctl_json_string(const ProtobufCMessage *msg);
char *ctl_json_quote(const uint8_t *data, size_t len);
void ctl_print_header_fields(struct ctl *ctl,
                             const Etcdserverpb__ResponseHeader *h);
void ctl_print_kv_fields(struct ctl *ctl, const char *pfx,
                         const Mvccpb__KeyValue *kv);
void ctl_print_kv(struct ctl *ctl, bool value_only, const Mvccpb__KeyValue *kv);
int ctl_parse_go_int(const char *s, int base, int64_t *out, char *err,
                     size_t err_size);
void ctl_print_usage(struct ctl *ctl);
void ctl_print_grpc_warn(struct ctl *ctl, const struct ikclient_status *st);
/* The same line for a client whose target is endpoint @ep (e.g.
 * "http://127.0.0.1:2379"; shown without scheme). */
void ctl_print_grpc_warn_ep(struct ctl *ctl, const struct ikclient_status *st,
                            const char *ep);
const char *ctl_go_error_string(const struct ikclient_status *st);

/*
 * Tables as etcdctl draws them (olekukonko/tablewriter): @n_cols headers,
 * then rows of @n_cols cells each, borders "+---+", centred headers in
 * upper case, cells right-aligned (etcdctl sets ALIGN_RIGHT)... exactly
 * as etcdctl -w table.
 */
struct ctl_table;
struct ctl_table *ctl_table_new(size_t n_cols, const char *const *headers);
void ctl_table_row(struct ctl_table *t, const char *const *cells);
void ctl_table_print(struct ctl *ctl, struct ctl_table *t); /* and frees */

/*
 * Documentation of one flag, for the help texts (ikadactl's own words; the
 * layout is etcdctl's). Arrays end with a zeroed entry.
 * @type is pflag's type name of the flag, which decides how the default
 * is shown: "bool" ("--x[=false]"), "string" ("--x=\"l\""), "int",
 * "int64", "uint64", "duration", "stringSlice" ("--x=0", "--x=5s",
 * "--x=[a,b]"). @def is the default as etcdctl shows it, unquoted.
 */
struct ctl_flag_doc {
    const char *name; /* long name without "--" */
    char short_name;  /* 0: none */
    const char *type;
    const char *def;
    const char *doc; /* one line */
};

/*
 * Command tables: each command file exports one, ending with a zeroed
 * entry; ikadactl.c looks commands up by their full name ("lease grant",
 * "get"), longest match of the leading words of the command line.
 */
struct ctl_command {
    const char *name; /* "get", "member list", ... */
    int (*run)(struct ctl *ctl, int argc, char **argv); /* returns exit code */
    /* the syntax after the parent command's words (cobra's "Use"), e.g.
     * "get [options] <key> [range_end]", "grant <ttl>" */
    const char *usage;
    const char *summary;              /* one line, for NAME: and COMMANDS: */
    const struct ctl_flag_doc *flags; /* the command's own flags, or NULL */
    const char *description;          /* optional longer text, or NULL */
};
extern const struct ctl_command ctl_kv_commands[];       /* ctl_kv.c */
extern const struct ctl_command ctl_lease_commands[];    /* ctl_lease.c */
extern const struct ctl_command ctl_cluster_commands[];  /* ctl_cluster.c */
extern const struct ctl_command ctl_lock_commands[];     /* ctl_lock.c */
extern const struct ctl_command ctl_check_commands[];    /* ctl_check.c */
extern const struct ctl_command ctl_snapshot_commands[]; /* ctl_snapshot.c */

/* Added: the defaults of the global flags (etcdctl's). */
void ctl_global_defaults(struct ctl_global *g);

/*
 * Help texts, generated from the command tables (in ikadactl.c).
 * ctl_help_write(): the help of command @name ("get", "member list",
 * "member", "etcdctl" for the root, "help") in etcdctl's layout (NAME:,
 * USAGE:, DESCRIPTION:, COMMANDS:, OPTIONS:, GLOBAL OPTIONS:, tab-aligned
 * as etcdctl aligns them) to @f; @with_help_flag false leaves the
 * "-h, --help" line out (etcdctl's root help after an unknown help
 * topic). An unknown name gets a NAME: section and the global flags.
 * ctl_help_write_pflag(): the short usage cobra prints on stderr for a
 * flag error inside a txn ("Usage:\n   put ... [flags]\n\nFlags:\n" and
 * pflag's flag lines with types and "(default ...)").
 * ctl_help_unimplemented(): true when @name is an etcdctl command (or
 * group) that ikadactl does not implement.
 */
void ctl_help_write(FILE *f, const char *name, bool with_help_flag);
void ctl_help_write_pflag(FILE *f, const char *name);
bool ctl_help_unimplemented(const char *name);

#endif /* IKADA_CTL_H */
