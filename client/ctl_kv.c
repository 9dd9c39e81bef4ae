/* ctl_kv.c: ikadactl get/put/del/txn/compaction/watch (see client/ctl.h),
 * matching etcdctl 3.4 byte for byte. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/ctl.h"
#include "server/errors.h"

/* ------------------------------------------------------------ helpers */

static uint8_t nul_byte[1] = {0};

/* What the running command allocates for its requests (keys, range ends,
 * split txn and watch lines, request structs): kept in this pool and freed
 * all at once by release_owned() when the command returns, whichever path
 * it returns by. ikadactl runs one command per process. */
static struct {
    void **v;
    size_t n, cap;
} g_owned;

/* Hands @p (may be NULL) over to the pool; returns @p. */
static void *own(void *p)
{
    if (p == NULL)
        return NULL;
    if (g_owned.n == g_owned.cap) {
        size_t ncap = g_owned.cap ? g_owned.cap * 2 : 64;
        void **nv = realloc(g_owned.v, ncap * sizeof(*nv));
        if (nv == NULL) {
            fputs("ikadactl: out of memory\n", stderr);
            exit(CTL_EXIT_ERROR);
        }
        g_owned.v = nv;
        g_owned.cap = ncap;
    }
    g_owned.v[g_owned.n++] = p;
    return p;
}

/* Frees everything own() was given. */
static void release_owned(void)
{
    for (size_t i = 0; i < g_owned.n; i++)
        free(g_owned.v[i]);
    free(g_owned.v);
    g_owned.v = NULL;
    g_owned.n = g_owned.cap = 0;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* clientv3's getPrefix(): the range end of prefix @k (owned by the pool,
 * or the static nul_byte). */
static ProtobufCBinaryData prefix_end(ProtobufCBinaryData k)
{
    ProtobufCBinaryData e = {0, NULL};
    for (size_t i = k.len; i-- > 0;) {
        if (k.data[i] < 0xff) {
            e.data = own(malloc(i + 1));
            memcpy(e.data, k.data, i + 1);
            e.data[i]++;
            e.len = i + 1;
            return e;
        }
    }
    e.data = nul_byte;
    e.len = 1;
    return e;
}

/* Go's panic, as a Go program dies of it. */
static int go_panic(struct ctl *ctl, const char *msg)
{
    fflush(ctl->out);
    fprintf(ctl->err, "panic: %s\n\ngoroutine 1 [running]:\nmain.main()\n",
            msg);
    fflush(ctl->err);
    return 2;
}

static int unsupported_format(struct ctl *ctl)
{
    return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                    "%s not supported as output format",
                    ctl->g.write_out == CTL_OUT_TABLE ? "table" : "fields");
}

/* ------------------------------------------------------------ printers */

static void print_get(struct ctl *ctl, const Etcdserverpb__RangeResponse *r,
                      bool value_only)
{
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < r->n_kvs; i++)
            ctl_print_kv(ctl, value_only, r->kvs[i]);
        break;
    case CTL_OUT_FIELDS:
        ctl_print_header_fields(ctl, r->header);
        for (size_t i = 0; i < r->n_kvs; i++)
            ctl_print_kv_fields(ctl, "", r->kvs[i]);
        fprintf(ctl->out, "\"More\" : %s\n\"Count\" : %" PRId64 "\n",
                r->more ? "true" : "false", r->count);
        break;
    default:
        break;
    }
}

static void print_put(struct ctl *ctl, const Etcdserverpb__PutResponse *r)
{
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        fputs("OK\n", ctl->out);
        if (r->prev_kv)
            ctl_print_kv(ctl, false, r->prev_kv);
    } else if (ctl->g.write_out == CTL_OUT_FIELDS) {
        ctl_print_header_fields(ctl, r->header);
        if (r->prev_kv)
            ctl_print_kv_fields(ctl, "Prev", r->prev_kv);
    }
}

static void print_del(struct ctl *ctl,
                      const Etcdserverpb__DeleteRangeResponse *r)
{
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        fprintf(ctl->out, "%" PRId64 "\n", r->deleted);
        for (size_t i = 0; i < r->n_prev_kvs; i++)
            ctl_print_kv(ctl, false, r->prev_kvs[i]);
    } else if (ctl->g.write_out == CTL_OUT_FIELDS) {
        ctl_print_header_fields(ctl, r->header);
        fprintf(ctl->out, "\"Deleted\" : %" PRId64 "\n", r->deleted);
        for (size_t i = 0; i < r->n_prev_kvs; i++)
            ctl_print_kv_fields(ctl, "Prev", r->prev_kvs[i]);
    }
}

/* The display of one response for every format; returns an exit code
 * (0, or the unsupported-format error). */
static int display(struct ctl *ctl, const ProtobufCMessage *m,
                   void (*simple_fields)(struct ctl *,
                                         const ProtobufCMessage *))
{
    switch (ctl->g.write_out) {
    case CTL_OUT_JSON:
        ctl_print_json(ctl, m);
        return 0;
    case CTL_OUT_PROTOBUF:
        ctl_print_protobuf(ctl, m);
        return 0;
    case CTL_OUT_TABLE:
        return unsupported_format(ctl);
    default:
        simple_fields(ctl, m);
        return 0;
    }
}

static void sf_put(struct ctl *ctl, const ProtobufCMessage *m)
{
    print_put(ctl, (const Etcdserverpb__PutResponse *)m);
}
static void sf_del(struct ctl *ctl, const ProtobufCMessage *m)
{
    print_del(ctl, (const Etcdserverpb__DeleteRangeResponse *)m);
}
static bool g_value_only;
static void sf_get(struct ctl *ctl, const ProtobufCMessage *m)
{
    print_get(ctl, (const Etcdserverpb__RangeResponse *)m, g_value_only);
}
static void sf_txn(struct ctl *ctl, const ProtobufCMessage *m)
{
    const Etcdserverpb__TxnResponse *r = (const Etcdserverpb__TxnResponse *)m;
    bool simple = ctl->g.write_out == CTL_OUT_SIMPLE;
    if (simple) {
        fputs(r->succeeded ? "SUCCESS\n" : "FAILURE\n", ctl->out);
    } else {
        ctl_print_header_fields(ctl, r->header);
        fprintf(ctl->out, "\"Succeeded\" : %s\n",
                r->succeeded ? "true" : "false");
    }
    for (size_t i = 0; i < r->n_responses; i++) {
        const Etcdserverpb__ResponseOp *op = r->responses[i];
        if (simple)
            fputs("\n", ctl->out);
        switch (op->response_case) {
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
            print_del(ctl, op->response_delete_range);
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
            print_put(ctl, op->response_put);
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
            print_get(ctl, op->response_range, false);
            break;
        default:
            if (simple)
                fputs("unexpected response {Response:<nil>}\n", ctl->out);
            else
                fputs("\"Unknown\" : \"<nil>\"\n", ctl->out);
        }
    }
}

/* ------------------------------------------------------------ get */

struct get_opts {
    const char *consistency, *order, *sort_by;
    int64_t limit, rev;
    bool prefix, from_key, keys_only, value_only;
};

static void get_flags(struct ctl_flag *f, struct get_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->consistency = "l";
    o->order = "";
    o->sort_by = "";
    struct ctl_flag fl[] = {
        {"consistency", 0, CTL_FLAG_STRING, &o->consistency, NULL, NULL},
        {"order", 0, CTL_FLAG_STRING, &o->order, NULL, NULL},
        {"sort-by", 0, CTL_FLAG_STRING, &o->sort_by, NULL, NULL},
        {"limit", 0, CTL_FLAG_INT64, &o->limit, NULL, NULL},
        {"prefix", 0, CTL_FLAG_BOOL, &o->prefix, NULL, NULL},
        {"from-key", 0, CTL_FLAG_BOOL, &o->from_key, NULL, NULL},
        {"rev", 0, CTL_FLAG_INT64, &o->rev, NULL, NULL},
        {"keys-only", 0, CTL_FLAG_BOOL, &o->keys_only, NULL, NULL},
        {"print-value-only", 0, CTL_FLAG_BOOL, &o->value_only, NULL, NULL},
        {0}};
    memcpy(f, fl, sizeof(fl));
}

/* etcdctl's getGetOp(): fills @req; returns -1 or the exit code (error
 * printed). */
static int get_op(struct ctl *ctl, int nargs, char **args,
                  const struct get_opts *o, Etcdserverpb__RangeRequest *req)
{
    if (nargs == 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "get command needs one argument as key and an optional "
                        "argument as range_end");
    if (o->prefix && o->from_key)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "`--prefix` and `--from-key` cannot be set at the same "
                        "time, choose one");
    if (strcmp(o->consistency, "s") == 0)
        req->serializable = true;
    else if (strcmp(o->consistency, "l") != 0) {
        char *q = ctl_go_quote((const uint8_t *)o->consistency,
                               strlen(o->consistency));
        int rc = ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                          "unknown consistency flag %s", q);
        free(q);
        return rc;
    }
    req->key = bin(args[0]);
    if (nargs > 1) {
        if (o->prefix || o->from_key)
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "too many arguments, only accept one argument when "
                            "`--prefix` or `--from-key` is set");
        req->range_end = bin(args[1]);
    }
    req->limit = o->limit;
    if (o->rev > 0)
        req->revision = o->rev;
    int order = 0, target = 0;
    if (strcasecmp(o->order, "ASCEND") == 0)
        order = 1;
    else if (strcasecmp(o->order, "DESCEND") == 0)
        order = 2;
    else if (o->order[0] != '\0')
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE, "bad sort order %s",
                        o->order);
    static const char *const targets[] = {"KEY", "VERSION", "CREATE", "MODIFY",
                                          "VALUE"};
    bool found = o->sort_by[0] == '\0';
    for (int i = 0; i < 5 && !found; i++)
        if (strcasecmp(o->sort_by, targets[i]) == 0)
            target = i, found = true;
    if (!found)
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE, "bad sort target %s",
                        o->sort_by);
    if (target == 0 && order == 1)
        order = 0; /* clientv3.WithSort */
    req->sort_order = (Etcdserverpb__RangeRequest__SortOrder)order;
    req->sort_target = (Etcdserverpb__RangeRequest__SortTarget)target;
    if (o->prefix) {
        if (req->key.len == 0) {
            req->key.data = nul_byte, req->key.len = 1;
            req->range_end.data = nul_byte, req->range_end.len = 1;
        } else {
            req->range_end = prefix_end(req->key);
        }
    }
    if (o->from_key) {
        if (req->key.len == 0)
            req->key.data = nul_byte, req->key.len = 1;
        req->range_end.data = nul_byte, req->range_end.len = 1;
    }
    if (o->keys_only)
        req->keys_only = true;
    return -1;
}

static int get_run(struct ctl *ctl, int argc, char **argv)
{
    struct ctl_flag flags[10];
    struct get_opts o;
    get_flags(flags, &o);
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rc = get_op(ctl, n, argv, &o, &req);
    if (rc >= 0)
        return rc;
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    Etcdserverpb__RangeResponse *resp = NULL;
    struct ikclient_status st = {0};
    rc = ikclient_range(c, &req, &resp, &st);
    if (rc != 0)
        return ctl_fail_status(ctl, rc, &st);
    if (o.value_only && ctl->g.write_out != CTL_OUT_SIMPLE) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "print-value-only is only for `--write-out=simple`");
    }
    g_value_only = o.value_only;
    rc = display(ctl, &resp->base, sf_get);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int cmd_get(struct ctl *ctl, int argc, char **argv)
{
    int rc = get_run(ctl, argc, argv);
    release_owned();
    return rc;
}

/* ------------------------------------------------------------ put */

struct put_opts {
    const char *lease;
    bool prev_kv, ignore_value, ignore_lease;
};

static void put_flags(struct ctl_flag *f, struct put_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->lease = "0";
    struct ctl_flag fl[] = {
        {"lease", 0, CTL_FLAG_STRING, &o->lease, NULL, NULL},
        {"prev-kv", 0, CTL_FLAG_BOOL, &o->prev_kv, NULL, NULL},
        {"ignore-value", 0, CTL_FLAG_BOOL, &o->ignore_value, NULL, NULL},
        {"ignore-lease", 0, CTL_FLAG_BOOL, &o->ignore_lease, NULL, NULL},
        {0}};
    memcpy(f, fl, sizeof(fl));
}

static char *read_all_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
        ssize_t r = read(0, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return b;
}

static int put_op(struct ctl *ctl, int nargs, char **args,
                  const struct put_opts *o, Etcdserverpb__PutRequest *req)
{
    static const char needs[] =
        "put command needs 1 argument and input from stdin or 2 arguments";
    if (nargs == 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, needs);
    req->key = bin(args[0]);
    if (o->ignore_value && nargs > 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "put command needs only 1 argument when 'ignore-value' "
                        "is set");
    if (!o->ignore_value) {
        if (nargs > 1) {
            req->value = bin(args[1]);
        } else {
            size_t len = 0;
            char *v = own(read_all_stdin(&len));
            if (len == 0)
                return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, needs);
            req->value.data = (uint8_t *)v;
            req->value.len = len;
        }
    }
    int64_t id = 0;
    char err[300];
    if (ctl_parse_go_int(o->lease, 16, &id, err, sizeof(err)) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "bad lease ID (%s), expecting ID in Hex", err);
    req->lease = id;
    req->prev_kv = o->prev_kv;
    req->ignore_value = o->ignore_value;
    req->ignore_lease = o->ignore_lease;
    return -1;
}

/* clientv3's default client-side send limit. */
#define CTL_MAX_SEND (2 * 1024 * 1024)

static int too_large(struct ctl *ctl, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n <= CTL_MAX_SEND)
        return -1;
    struct ikclient_status st = {.code = 8};
    snprintf(st.message, sizeof(st.message),
             "trying to send message larger than max (%zu vs. %d)", n,
             CTL_MAX_SEND);
    return ctl_fail_status(ctl, IK_EGRPC, &st);
}

static int put_run(struct ctl *ctl, int argc, char **argv)
{
    struct ctl_flag flags[6];
    struct put_opts o;
    put_flags(flags, &o);
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    rc = put_op(ctl, n, argv, &o, &req);
    if (rc >= 0)
        return rc;
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    if ((rc = too_large(ctl, &req.base)) >= 0)
        return rc;
    Etcdserverpb__PutResponse *resp = NULL;
    struct ikclient_status st = {0};
    rc = ikclient_put(c, &req, &resp, &st);
    if (rc != 0)
        return ctl_fail_status(ctl, rc, &st);
    rc = display(ctl, &resp->base, sf_put);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int cmd_put(struct ctl *ctl, int argc, char **argv)
{
    int rc = put_run(ctl, argc, argv);
    release_owned();
    return rc;
}

/* ------------------------------------------------------------ del */

struct del_opts {
    bool prefix, prev_kv, from_key;
};

static void del_flags(struct ctl_flag *f, struct del_opts *o)
{
    memset(o, 0, sizeof(*o));
    struct ctl_flag fl[] = {
        {"prefix", 0, CTL_FLAG_BOOL, &o->prefix, NULL, NULL},
        {"prev-kv", 0, CTL_FLAG_BOOL, &o->prev_kv, NULL, NULL},
        {"from-key", 0, CTL_FLAG_BOOL, &o->from_key, NULL, NULL},
        {0}};
    memcpy(f, fl, sizeof(fl));
}

static int del_op(struct ctl *ctl, int nargs, char **args,
                  const struct del_opts *o,
                  Etcdserverpb__DeleteRangeRequest *req)
{
    if (nargs == 0 || nargs > 2)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "del command needs one argument as key and an optional "
                        "argument as range_end");
    if (o->prefix && o->from_key)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "`--prefix` and `--from-key` cannot be set at the same "
                        "time, choose one");
    req->key = bin(args[0]);
    if (nargs > 1) {
        if (o->prefix || o->from_key)
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "too many arguments, only accept one argument when "
                            "`--prefix` or `--from-key` is set");
        req->range_end = bin(args[1]);
    }
    if (o->prefix) {
        if (req->key.len == 0) {
            req->key.data = nul_byte, req->key.len = 1;
            req->range_end.data = nul_byte, req->range_end.len = 1;
        } else {
            req->range_end = prefix_end(req->key);
        }
    }
    req->prev_kv = o->prev_kv;
    if (o->from_key) {
        if (req->key.len == 0)
            req->key.data = nul_byte, req->key.len = 1;
        req->range_end.data = nul_byte, req->range_end.len = 1;
    }
    return -1;
}

static int del_run(struct ctl *ctl, int argc, char **argv)
{
    struct ctl_flag flags[5];
    struct del_opts o;
    del_flags(flags, &o);
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    Etcdserverpb__DeleteRangeRequest req =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    rc = del_op(ctl, n, argv, &o, &req);
    if (rc >= 0)
        return rc;
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    struct ikclient_status st = {0};
    rc = ikclient_delete_range(c, &req, &resp, &st);
    if (rc != 0)
        return ctl_fail_status(ctl, rc, &st);
    rc = display(ctl, &resp->base, sf_del);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int cmd_del(struct ctl *ctl, int argc, char **argv)
{
    int rc = del_run(ctl, argc, argv);
    release_owned();
    return rc;
}

/* ------------------------------------------------------------ compaction */

static int cmd_compaction(struct ctl *ctl, int argc, char **argv)
{
    bool physical = false;
    struct ctl_flag flags[] = {
        {"physical", 0, CTL_FLAG_BOOL, &physical, NULL, NULL}, {0}};
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    if (n != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "compaction command needs 1 argument");
    int64_t rev;
    char err[300];
    if (ctl_parse_go_int(argv[0], 10, &rev, err, sizeof(err)) != 0)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "%s", err);
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    Etcdserverpb__CompactionRequest req =
        ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    req.revision = rev;
    req.physical = physical;
    Etcdserverpb__CompactionResponse *resp = NULL;
    struct ikclient_status st = {0};
    rc = ikclient_compact(c, &req, &resp, &st);
    if (rc != 0)
        return ctl_fail_status(ctl, rc, &st);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    fprintf(ctl->out, "compacted revision %" PRId64 "\n", rev);
    return 0;
}

/* ------------------------------------------------------------ txn */

/* Go's strconv.Unquote of a double-quoted literal @s[0..n) (quotes
 * included); malloc'ed result in *out / *olen, -1 if invalid. */
static int go_unquote(const char *s, size_t n, char **out, size_t *olen)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return -1;
    char *r = malloc(n * 4 + 1);
    size_t k = 0;
    for (size_t i = 1; i < n - 1;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\n') {
            free(r);
            return -1;
        }
        if (c != '\\') {
            r[k++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= n - 1) {
            free(r);
            return -1;
        }
        char e = s[i + 1];
        i += 2;
        uint32_t v = 0;
        int digits = 0, base = 16;
        switch (e) {
        case 'a':
            r[k++] = '\a';
            continue;
        case 'b':
            r[k++] = '\b';
            continue;
        case 'f':
            r[k++] = '\f';
            continue;
        case 'n':
            r[k++] = '\n';
            continue;
        case 'r':
            r[k++] = '\r';
            continue;
        case 't':
            r[k++] = '\t';
            continue;
        case 'v':
            r[k++] = '\v';
            continue;
        case '\\':
            r[k++] = '\\';
            continue;
        case '"':
            r[k++] = '"';
            continue;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
        default:
            if (e >= '0' && e <= '7') {
                digits = 2, base = 8, v = (uint32_t)(e - '0');
                break;
            }
            free(r);
            return -1;
        }
        for (int d = 0; d < digits; d++, i++) {
            if (i >= n - 1) {
                free(r);
                return -1;
            }
            char h = s[i];
            int x;
            if (h >= '0' && h <= '9')
                x = h - '0';
            else if (base == 16 && h >= 'a' && h <= 'f')
                x = h - 'a' + 10;
            else if (base == 16 && h >= 'A' && h <= 'F')
                x = h - 'A' + 10;
            else {
                free(r);
                return -1;
            }
            if (x >= base) {
                free(r);
                return -1;
            }
            v = v * (uint32_t)base + (uint32_t)x;
        }
        if (e == 'x' || base == 8) {
            if (v > 255) {
                free(r);
                return -1;
            }
            r[k++] = (char)v;
            continue;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
            free(r);
            return -1;
        }
        if (v < 0x80)
            r[k++] = (char)v;
        else if (v < 0x800)
            r[k++] = (char)(0xC0 | (v >> 6)), r[k++] = (char)(0x80 | (v & 63));
        else if (v < 0x10000)
            r[k++] = (char)(0xE0 | (v >> 12)),
            r[k++] = (char)(0x80 | ((v >> 6) & 63)),
            r[k++] = (char)(0x80 | (v & 63));
        else
            r[k++] = (char)(0xF0 | (v >> 18)),
            r[k++] = (char)(0x80 | ((v >> 12) & 63)),
            r[k++] = (char)(0x80 | ((v >> 6) & 63)),
            r[k++] = (char)(0x80 | (v & 63));
    }
    r[k] = '\0';
    *out = r;
    *olen = k;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

/* Frees the @c strings of @v, and @v. */
static void free_args(char **v, int c)
{
    for (int k = 0; k < c; k++)
        free(v[k]);
    free(v);
}

/* etcdctl's argify(): splits a txn line into words owned by the pool; on
 * Go's runtime panic returns NULL (nothing allocated left) with the panic
 * message in @panic_msg. */
static char **argify(const char *s, int *argc, char *panic_msg, size_t psz)
{
    size_t n = strlen(s), cap = 8;
    char **v = calloc(cap, sizeof(char *));
    int c = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = 0;
        bool ok = false;
        if (s[i] == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != '"') {
                if (s[j] == '\\') {
                    if (j + 1 >= n || s[j + 1] == '\n')
                        break;
                    j += 2;
                } else {
                    j++;
                }
            }
            if (j < n && s[j] == '"')
                end = j + 1, ok = true;
        }
        if (!ok && s[i] == '\'') {
            const char *q = strchr(s + i + 1, '\'');
            if (q)
                end = (size_t)(q - s) + 1, ok = true;
        }
        if (!ok && s[i] != '\'' && s[i] != '"' && !is_space(s[i])) {
            size_t j = i + 1;
            while (j < n && !is_space(s[j]))
                j++;
            end = j, ok = true;
        }
        if (!ok) {
            i++;
            continue;
        }
        if ((size_t)c + 1 >= cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(char *));
        }
        v[c++] = strndup(s + i, end - i);
        i = end;
    }
    for (int k = 0; k < c; k++) {
        char *a = v[k];
        size_t al = strlen(a);
        if (al == 0)
            continue;
        if (a[0] == '\'') {
            /* args[i][1 : len(args)-1], as etcdctl writes it */
            long hi = c - 1;
            if (hi > (long)al) {
                snprintf(panic_msg, psz,
                         "runtime error: slice bounds out of range [:%ld] with "
                         "length %zu",
                         hi, al);
                free_args(v, c);
                return NULL;
            }
            if (hi < 1) {
                snprintf(panic_msg, psz,
                         "runtime error: slice bounds out of range [1:%ld]",
                         hi);
                free_args(v, c);
                return NULL;
            }
            char *x = strndup(a + 1, (size_t)hi - 1);
            free(a);
            v[k] = x;
        } else if (a[0] == '"') {
            char *u;
            size_t ul;
            if (go_unquote(a, al, &u, &ul) == 0) {
                free(a);
                v[k] = u;
            }
        }
    }
    v[c] = NULL;
    *argc = c;
    for (int k = 0; k < c; k++)
        own(v[k]);
    return own(v);
}

/* A local flag parse for the ops of a txn (cobra with SilenceErrors):
 * returns 0, or -1 after printing the short usage of command @name to
 * stderr. No global flags. */
static int txn_parse(struct ctl *ctl, int argc, char **argv,
                     struct ctl_flag *flags, const char *name, int *np)
{
    /* run the framework parser on a scratch ctl whose output is discarded,
     * then print cobra's default usage ourselves */
    struct ctl tmp = *ctl;
    FILE *null = fopen("/dev/null", "w");
    tmp.out = null;
    tmp.err = null;
    tmp.cmd = NULL;
    int rc = ctl_parse_flags(&tmp, argc, argv, flags, np);
    if (null)
        fclose(null);
    if (rc < 0)
        return 0;
    ctl_help_write_pflag(ctl->err, name);
    return -1;
}

/* parseRequestUnion(): -1 ok (appended to the malloc'ed array *@ops of
 * *@nops; the op itself is owned by the pool), else exit code (printed). */
static int parse_op(struct ctl *ctl, const char *line,
                    Etcdserverpb__RequestOp ***ops, size_t *nops)
{
    char pmsg[200];
    int argc = 0;
    char **args = argify(line, &argc, pmsg, sizeof(pmsg));
    if (args == NULL)
        return go_panic(ctl, pmsg);
    if (argc < 2)
        return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                        "invalid txn compare request: %s", line);
    static const char *const names[] = {"del", "get", "put"};
    const char *cmd = NULL;
    int nm = 0;
    for (int i = 0; i < 3; i++) {
        if (strcmp(names[i], args[0]) == 0) {
            cmd = names[i];
            nm = 1;
            break;
        }
        if (strncmp(names[i], args[0], strlen(args[0])) == 0)
            cmd = names[i], nm++;
    }
    /* cobra finds the command among the words that are not flags */
    if (nm != 1)
        return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT, "invalid txn request: %s",
                        line);
    Etcdserverpb__RequestOp *op = own(malloc(sizeof(*op)));
    etcdserverpb__request_op__init(op);
    int np = 0;
    char **rest = args + 1;
    int nrest = argc - 1;
    if (cmd[0] == 'p') {
        struct ctl_flag flags[6];
        struct put_opts o;
        put_flags(flags, &o);
        if (txn_parse(ctl, nrest, rest, flags, "put", &np) != 0)
            return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                            "invalid txn request: %s", line);
        Etcdserverpb__PutRequest *r = own(malloc(sizeof(*r)));
        etcdserverpb__put_request__init(r);
        /* its stdin was read to the end by the txn reader already */
        if (np < 2 && !o.ignore_value && np > 0) {
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "put command needs 1 argument and input from stdin "
                            "or 2 arguments");
        }
        int rc = put_op(ctl, np, rest, &o, r);
        if (rc >= 0)
            return rc;
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op->request_put = r;
    } else if (cmd[0] == 'g') {
        struct ctl_flag flags[10];
        struct get_opts o;
        get_flags(flags, &o);
        if (txn_parse(ctl, nrest, rest, flags, "get", &np) != 0)
            return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                            "invalid txn request: %s", line);
        Etcdserverpb__RangeRequest *r = own(malloc(sizeof(*r)));
        etcdserverpb__range_request__init(r);
        int rc = get_op(ctl, np, rest, &o, r);
        if (rc >= 0)
            return rc;
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        op->request_range = r;
    } else {
        struct ctl_flag flags[5];
        struct del_opts o;
        del_flags(flags, &o);
        if (txn_parse(ctl, nrest, rest, flags, "del", &np) != 0)
            return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                            "invalid txn request: %s", line);
        Etcdserverpb__DeleteRangeRequest *r = own(malloc(sizeof(*r)));
        etcdserverpb__delete_range_request__init(r);
        int rc = del_op(ctl, np, rest, &o, r);
        if (rc >= 0)
            return rc;
        op->request_case =
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        op->request_delete_range = r;
    }
    Etcdserverpb__RequestOp **nv = realloc(*ops, (*nops + 1) * sizeof(*nv));
    if (nv == NULL)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    *ops = nv;
    nv[(*nops)++] = op;
    return -1;
}

/* fmt's %q scan at *p: skips spaces, reads a Go quoted string. */
static bool scan_quoted(const char **p, char **out, size_t *olen)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    if (*s == '`') {
        const char *e = strchr(s + 1, '`');
        if (!e)
            return false;
        *out = strndup(s + 1, (size_t)(e - s - 1));
        *olen = (size_t)(e - s - 1);
        *p = e + 1;
        return true;
    }
    if (*s != '"')
        return false;
    const char *e = s + 1;
    while (*e && *e != '"') {
        if (*e == '\\' && e[1])
            e += 2;
        else
            e++;
    }
    if (*e != '"')
        return false;
    if (go_unquote(s, (size_t)(e - s + 1), out, olen) != 0)
        return false;
    *p = e + 1;
    return true;
}

static void append_quoted(char *buf, size_t sz, const char *s, size_t n)
{
    char *q = ctl_go_quote((const uint8_t *)s, n);
    strncat(buf, q, sz - strlen(buf) - 1);
    free(q);
}

/* parseCompare(): -1 ok (appended to the malloc'ed array *@cmps of *@ncmp;
 * the compare and its bytes are owned by the pool), else exit code
 * (printed). */
static int parse_compare(struct ctl *ctl, const char *line,
                         Etcdserverpb__Compare ***cmps, size_t *ncmp)
{
    const char *lp = strchr(line, '(');
    if (lp == NULL)
        return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT, "malformed comparison: %s",
                        line);
    char *target = own(strndup(line, (size_t)(lp - line)));
    const char *p = lp + 1;
    char *key = NULL, *val = NULL, *opstr = NULL;
    size_t klen = 0, vlen = 0;
    int n = 0;
    if (scan_quoted(&p, &key, &klen)) {
        own(key);
        n = 1;
        if (*p == ')') {
            p++;
            while (*p == ' ' || *p == '\t' || *p == '\r')
                p++;
            const char *t = p;
            while (*p && !is_space(*p))
                p++;
            if (p > t) {
                opstr = own(strndup(t, (size_t)(p - t)));
                n = 2;
                if (scan_quoted(&p, &val, &vlen)) {
                    own(val);
                    n = 3;
                }
            }
        }
    }
    if (n != 3) {
        char msg[2048];
        snprintf(msg, sizeof(msg), "malformed comparison: %s; got %s(", line,
                 target);
        append_quoted(msg, sizeof(msg), key ? key : "", klen);
        strncat(msg, ") ", sizeof(msg) - strlen(msg) - 1);
        strncat(msg, opstr ? opstr : "", sizeof(msg) - strlen(msg) - 1);
        strncat(msg, " ", sizeof(msg) - strlen(msg) - 1);
        append_quoted(msg, sizeof(msg), val ? val : "", vlen);
        return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT, "%s", msg);
    }
    Etcdserverpb__Compare *c = own(malloc(sizeof(*c)));
    etcdserverpb__compare__init(c);
    c->key.data = (uint8_t *)key;
    c->key.len = klen;
    int kind; /* 0 version 1 create 2 mod 3 value 4 lease */
    if (!strcmp(target, "ver") || !strcmp(target, "version"))
        kind = 0;
    else if (!strcmp(target, "c") || !strcmp(target, "create"))
        kind = 1;
    else if (!strcmp(target, "m") || !strcmp(target, "mod"))
        kind = 2;
    else if (!strcmp(target, "val") || !strcmp(target, "value"))
        kind = 3;
    else if (!strcmp(target, "lease"))
        kind = 4;
    else
        return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                        "malformed comparison: %s (unknown target %s)", line,
                        target);
    int64_t v = 0;
    if (kind <= 2) {
        char err[200];
        if (ctl_parse_go_int(val, 10, &v, err, sizeof(err)) != 0)
            return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                            "invalid txn compare request: %s", line);
    }
    int res;
    if (!strcmp(opstr, "="))
        res = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    else if (!strcmp(opstr, "!="))
        res = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
    else if (!strcmp(opstr, ">"))
        res = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    else if (!strcmp(opstr, "<"))
        res = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
    else
        return go_panic(ctl, "Unknown result op");
    c->result = (Etcdserverpb__Compare__CompareResult)res;
    switch (kind) {
    case 0:
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        c->version = v;
        break;
    case 1:
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
        c->target_union_case =
            ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        c->create_revision = v;
        break;
    case 2:
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        c->mod_revision = v;
        break;
    case 3:
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        c->value.data = (uint8_t *)val;
        c->value.len = vlen;
        break;
    default:
        /* clientv3.Compare cannot take a string for a lease */
        return go_panic(ctl, "bad value");
    }
    Etcdserverpb__Compare **nv = realloc(*cmps, (*ncmp + 1) * sizeof(*nv));
    if (nv == NULL)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    *cmps = nv;
    nv[(*ncmp)++] = c;
    return -1;
}

/* bufio.Reader.ReadString('\n') over the whole of stdin. */
struct line_reader {
    char *buf;
    size_t len, pos;
};

/* Next line, trimmed (strings.TrimSpace); NULL at EOF before a '\n'. */
static char *next_line(struct line_reader *r)
{
    char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
    if (nl == NULL)
        return NULL;
    char *s = r->buf + r->pos;
    size_t n = (size_t)(nl - s);
    r->pos += n + 1;
    while (n && is_space(*s))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    return strndup(s, n);
}

/* The txn command building @req (its arrays are malloc'ed, all else is
 * owned by the pool). */
static int txn_run(struct ctl *ctl, int argc, char **argv,
                   Etcdserverpb__TxnRequest *req)
{
    bool interactive = false;
    struct ctl_flag flags[] = {
        {"interactive", 'i', CTL_FLAG_BOOL, &interactive, NULL, NULL}, {0}};
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    if (n != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "txn command does not accept argument");
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    struct line_reader lr = {0};
    lr.buf = own(read_all_stdin(&lr.len));
    if (interactive)
        fputs("compares:\n", ctl->out);
    for (;;) {
        char *l = next_line(&lr);
        if (l == NULL)
            return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT, "EOF");
        if (*l == '\0') {
            free(l);
            break;
        }
        rc = parse_compare(ctl, l, &req->compare, &req->n_compare);
        free(l);
        if (rc >= 0)
            return rc;
    }
    for (int part = 0; part < 2; part++) {
        if (interactive)
            fputs(part == 0 ? "success requests (get, put, del):\n"
                            : "failure requests (get, put, del):\n",
                  ctl->out);
        Etcdserverpb__RequestOp ***ops =
            part == 0 ? &req->success : &req->failure;
        size_t *nops = part == 0 ? &req->n_success : &req->n_failure;
        for (;;) {
            char *l = next_line(&lr);
            if (l == NULL)
                return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT, "EOF");
            if (*l == '\0') {
                free(l);
                break;
            }
            rc = parse_op(ctl, l, ops, nops);
            free(l);
            if (rc >= 0)
                return rc;
        }
    }
    if ((rc = too_large(ctl, &req->base)) >= 0)
        return rc;
    Etcdserverpb__TxnResponse *resp = NULL;
    struct ikclient_status st = {0};
    rc = ikclient_txn(c, req, &resp, &st);
    if (rc != 0)
        return ctl_fail_status(ctl, rc, &st);
    rc = display(ctl, &resp->base, sf_txn);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int cmd_txn(struct ctl *ctl, int argc, char **argv)
{
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    int rc = txn_run(ctl, argc, argv, &req);
    free(req.compare);
    free(req.success);
    free(req.failure);
    release_owned();
    return rc;
}

/* ------------------------------------------------------------ watch */

struct watch_state {
    struct ctl *ctl;
    char **exec_args;
    int n_exec;
    int exit_code; /* -1 while running */
    int active;
    /* the running watches (for "progress" in watch -i) */
    struct ikclient_watch **ws;
    size_t n_ws, cap_ws;
};

static const char *event_type(int t)
{
    return t == 1 ? "DELETE" : "PUT";
}

static void watch_print(struct watch_state *ws,
                        const Etcdserverpb__WatchResponse *r)
{
    struct ctl *ctl = ws->ctl;
    if (r->canceled) {
        const char *why;
        char buf[600];
        if (r->compact_revision != 0)
            why = "etcdserver: mvcc: required revision has been compacted";
        else if (r->cancel_reason && r->cancel_reason[0]) {
            snprintf(buf, sizeof(buf), "%s", r->cancel_reason);
            why = buf;
        } else
            why = "etcdserver: mvcc: required revision is a future revision";
        fflush(ctl->out);
        fprintf(ctl->err, "watch was canceled (%s)\n", why);
    }
    if (r->n_events == 0 && !r->canceled && !r->created &&
        r->compact_revision == 0 && r->header && r->header->revision != 0)
        fprintf(ctl->out, "progress notify: %" PRId64 "\n",
                r->header->revision);
    Etcdserverpb__ResponseHeader zero = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    const Etcdserverpb__ResponseHeader *h = r->header ? r->header : &zero;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < r->n_events; i++) {
            Mvccpb__Event *e = r->events[i];
            fprintf(ctl->out, "%s\n", event_type(e->type));
            if (e->prev_kv)
                ctl_print_kv(ctl, false, e->prev_kv);
            if (e->kv)
                ctl_print_kv(ctl, false, e->kv);
        }
        break;
    case CTL_OUT_FIELDS:
        ctl_print_header_fields(ctl, h);
        for (size_t i = 0; i < r->n_events; i++) {
            Mvccpb__Event *e = r->events[i];
            fprintf(ctl->out, "\"Type\" : %s\n", event_type(e->type));
            if (e->prev_kv)
                ctl_print_kv_fields(ctl, "Prev", e->prev_kv);
            if (e->kv)
                ctl_print_kv_fields(ctl, "", e->kv);
        }
        break;
    case CTL_OUT_JSON: {
        char *hs = ctl_json_string(&h->base);
        fprintf(ctl->out, "{\"Header\":%s,\"Events\":", hs);
        free(hs);
        {
            /* clientv3 always makes the slice: [] when empty */
            fputc('[', ctl->out);
            for (size_t i = 0; i < r->n_events; i++) {
                char *es = ctl_json_string(&r->events[i]->base);
                fprintf(ctl->out, "%s%s", i ? "," : "", es);
                free(es);
            }
            fputc(']', ctl->out);
        }
        fprintf(ctl->out,
                ",\"CompactRevision\":%" PRId64
                ",\"Canceled\":%s,\"Created\":%s}\n",
                r->compact_revision, r->canceled ? "true" : "false",
                r->created ? "true" : "false");
        break;
    }
    case CTL_OUT_PROTOBUF: {
        Etcdserverpb__WatchResponse w = ETCDSERVERPB__WATCH_RESPONSE__INIT;
        w.header = (Etcdserverpb__ResponseHeader *)h;
        w.events = r->events;
        w.n_events = r->n_events;
        w.compact_revision = r->compact_revision;
        w.canceled = r->canceled;
        w.created = r->created;
        ctl_print_protobuf(ctl, &w.base);
        break;
    }
    default:
        if (ws->exit_code < 0)
            ws->exit_code = unsupported_format(ctl);
        ikclient_break(ctl->cli);
        return;
    }
    fflush(ctl->out);
    for (size_t i = 0; i < r->n_events && ws->n_exec > 0; i++) {
        Mvccpb__Event *e = r->events[i];
        pid_t pid = fork();
        if (pid == 0) {
            char buf[64];
            snprintf(buf, sizeof(buf), "%" PRId64, h->revision);
            setenv("ETCD_WATCH_REVISION", buf, 1);
            char *t = ctl_go_quote((const uint8_t *)event_type(e->type),
                                   strlen(event_type(e->type)));
            setenv("ETCD_WATCH_EVENT_TYPE", t, 1);
            char *k = ctl_go_quote(e->kv ? e->kv->key.data : NULL,
                                   e->kv ? e->kv->key.len : 0);
            setenv("ETCD_WATCH_KEY", k, 1);
            char *v = ctl_go_quote(e->kv ? e->kv->value.data : NULL,
                                   e->kv ? e->kv->value.len : 0);
            setenv("ETCD_WATCH_VALUE", v, 1);
            execvp(ws->exec_args[0], ws->exec_args);
            _exit(127);
        }
        int status = 0;
        if (pid > 0)
            waitpid(pid, &status, 0);
        if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(ctl->err, "command [");
            for (int a = 0; a < ws->n_exec; a++) {
                char *q = ctl_go_quote((const uint8_t *)ws->exec_args[a],
                                       strlen(ws->exec_args[a]));
                fprintf(ctl->err, "%s%s", a ? " " : "", q);
                free(q);
            }
            if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127)
                fprintf(ctl->err, "] error (exec: %s)\n",
                        "executable file not found in $PATH");
            else if (pid > 0 && WIFEXITED(status))
                fprintf(ctl->err, "] error (exit status %d)\n",
                        WEXITSTATUS(status));
            else
                fprintf(ctl->err, "] error (signal: %d)\n",
                        pid > 0 ? WTERMSIG(status) : 0);
            fflush(ctl->err);
            _exit(1);
        }
    }
}

static void watch_cb(struct ikclient_watch *w, void *data,
                     const Etcdserverpb__WatchResponse *resp, bool done,
                     const struct ikclient_status *st)
{
    (void)st;
    struct watch_state *ws = data;
    if (resp && !(resp->created && resp->n_events == 0 && !resp->canceled))
        watch_print(ws, resp);
    if (done) {
        for (size_t i = 0; i < ws->n_ws; i++)
            if (ws->ws[i] == w) {
                ws->ws[i] = ws->ws[--ws->n_ws];
                break;
            }
        ws->active--;
        if (ws->active <= 0)
            ikclient_break(ws->ctl->cli);
    }
}

struct watch_opts {
    int64_t rev;
    bool prefix, interactive, prev_kv;
};

/* getWatchChan(): starts the watch; -1 ok, else exit code after printing
 * (or, @soft, the error text in @err). */
static int start_watch(struct ctl *ctl, struct watch_state *ws, int n,
                       char **args, const struct watch_opts *o, char *err,
                       size_t esz)
{
    if (n < 1) {
        snprintf(err, esz, "bad number of arguments");
        return CTL_EXIT_BAD_ARGS;
    }
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    req.key = bin(args[0]);
    req.start_revision = o->rev;
    if (n == 2) {
        if (o->prefix) {
            snprintf(err, esz,
                     "`range_end` and `--prefix` are mutually exclusive");
            return CTL_EXIT_BAD_ARGS;
        }
        req.range_end = bin(args[1]);
    }
    if (o->prefix) {
        if (req.key.len == 0) {
            req.key.data = nul_byte, req.key.len = 1;
            req.range_end.data = nul_byte, req.range_end.len = 1;
        } else {
            req.range_end = prefix_end(req.key);
        }
    }
    req.prev_kv = o->prev_kv;
    struct ikclient_watch *w = NULL;
    if (ws->n_ws == ws->cap_ws) {
        size_t ncap = ws->cap_ws ? ws->cap_ws * 2 : 8;
        struct ikclient_watch **nv = realloc(ws->ws, ncap * sizeof(*nv));
        if (nv == NULL) {
            snprintf(err, esz, "out of memory");
            return CTL_EXIT_ERROR;
        }
        ws->ws = nv;
        ws->cap_ws = ncap;
    }
    ctl_stream_auth(ctl, ctl->cli, CTL_STREAM_WATCH);
    if (ikclient_watch(ctl->cli, &req, watch_cb, ws, &w) != 0) {
        snprintf(err, esz, "out of memory");
        return CTL_EXIT_ERROR;
    }
    ws->ws[ws->n_ws++] = w;
    ws->active++;
    return -1;
}

static struct ctl_flag *watch_flagset(struct ctl_flag *f, struct watch_opts *o)
{
    memset(o, 0, sizeof(*o));
    struct ctl_flag fl[] = {
        {"interactive", 'i', CTL_FLAG_BOOL, &o->interactive, NULL, NULL},
        {"prefix", 0, CTL_FLAG_BOOL, &o->prefix, NULL, NULL},
        {"rev", 0, CTL_FLAG_INT64, &o->rev, NULL, NULL},
        {"prev-kv", 0, CTL_FLAG_BOOL, &o->prev_kv, NULL, NULL},
        {0}};
    memcpy(f, fl, sizeof(fl));
    return f;
}

/* watch -i reading its lines into @lr (whose buffer the caller frees). */
static int watch_lines(struct ctl *ctl, struct watch_state *ws,
                       const char *env_key, const char *env_range,
                       struct line_reader *lr)
{
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    /* stdin is read line by line while the loop runs */
    size_t cap = 4096;
    lr->buf = malloc(cap);
    for (;;) {
        char *nl = memchr(lr->buf + lr->pos, '\n', lr->len - lr->pos);
        if (nl == NULL) {
            /* need more input: let the watches run while waiting */
            fflush(ctl->out);
            fd_set rfds;
            for (;;) {
                FD_ZERO(&rfds);
                FD_SET(0, &rfds);
                struct timeval tv = {0, 0};
                struct stat sb;
                bool regular = fstat(0, &sb) == 0 && !S_ISFIFO(sb.st_mode) &&
                               !S_ISSOCK(sb.st_mode) && !S_ISCHR(sb.st_mode);
                if (regular || select(1, &rfds, NULL, NULL, &tv) > 0)
                    break;
                ikclient_run(c, 50);
            }
            if (lr->len == cap) {
                cap *= 2;
                lr->buf = realloc(lr->buf, cap);
            }
            ssize_t r = read(0, lr->buf + lr->len, cap - lr->len);
            if (r <= 0) {
                return ctl_fail(ctl, CTL_EXIT_INVALID_INPUT,
                                "Error reading watch request line: EOF");
            }
            lr->len += (size_t)r;
            continue;
        }
        size_t ln = (size_t)(nl - (lr->buf + lr->pos));
        char *l = own(strndup(lr->buf + lr->pos, ln));
        lr->pos += ln + 1;
        char pmsg[200];
        int argc = 0;
        char **args = argify(l, &argc, pmsg, sizeof(pmsg));
        if (args == NULL)
            return go_panic(ctl, pmsg);
        if (argc < 1) {
            fprintf(ctl->err,
                    "Invalid command: %s (watch and progress supported)\n", l);
        } else if (strcmp(args[0], "watch") == 0) {
            if (argc < 2 && env_key[0] == '\0') {
                fprintf(ctl->err,
                        "Invalid command %s (command type or key is not "
                        "provided)\n",
                        l);
                continue;
            }
            struct ctl_flag flags[5];
            struct watch_opts o;
            watch_flagset(flags, &o);
            int sep = -1;
            for (int i = 1; i < argc; i++)
                if (strcmp(args[i], "--") == 0) {
                    sep = i;
                    break;
                }
            if (sep == argc - 1)
                return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                                "bad number of arguments (found separator --, "
                                "but no commands)");
            struct ctl tmp = *ctl;
            FILE *null = fopen("/dev/null", "w");
            tmp.out = tmp.err = null;
            tmp.cmd = NULL;
            int np = 0;
            int nparse = sep >= 0 ? sep - 1 : argc - 1;
            int rc = ctl_parse_flags(&tmp, nparse, args + 1, flags, &np);
            if (null)
                fclose(null);
            if (rc >= 0)
                return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "bad flag");
            char **wargs = args + 1;
            char *envv[2] = {(char *)env_key, (char *)env_range};
            if (env_key[0]) {
                if (sep < 0 && np > 0)
                    return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                                    "bad number of arguments (found "
                                    "conflicting environment key)");
                wargs = envv;
                np = env_range[0] ? 2 : 1;
            } else if (np < 1 && sep < 0) {
                return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                                "bad number of arguments");
            }
            if (sep >= 0) {
                ws->exec_args = args + sep + 1;
                ws->n_exec = argc - sep - 1;
            }
            char err[300];
            rc = start_watch(ctl, ws, np, wargs, &o, err, sizeof(err));
            if (rc >= 0)
                fprintf(ctl->err, "Invalid command %s (%s)\n", l, err);
        } else if (strcmp(args[0], "progress") == 0) {
            /* clientv3's RequestProgress: one request on the watch stream,
             * whose answer is broadcast to every watcher on it (etcdctl's
             * watches share one stream); ikclient gives each watch its own
             * stream, so ask on each: every watcher gets its one "progress
             * notify" line, as in etcdctl. A watch whose stream is being
             * re-created is skipped. */
            for (size_t i = 0; i < ws->n_ws; i++)
                (void)ikclient_watch_progress(ws->ws[i]);
        } else {
            fprintf(ctl->err, "Invalid command %s (only support watch)\n", l);
        }
    }
}

static int watch_interactive(struct ctl *ctl, struct watch_state *ws,
                             const char *env_key, const char *env_range)
{
    struct line_reader lr = {0};
    int rc = watch_lines(ctl, ws, env_key, env_range, &lr);
    free(lr.buf);
    return rc;
}

/* The watch command; @ws is initialised by the caller, its array of
 * watches is left for the caller to free. */
static int watch_run(struct ctl *ctl, int argc, char **argv,
                     struct watch_state *ws)
{
    const char *env_key = getenv("ETCDCTL_WATCH_KEY");
    const char *env_range = getenv("ETCDCTL_WATCH_RANGE_END");
    env_key = env_key ? env_key : "";
    env_range = env_range ? env_range : "";
    /* raw arguments (for the "--" exec separator) */
    int sep = -1;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            sep = i;
            break;
        }
    int raw_argc = argc;
    struct ctl_flag flags[5];
    struct watch_opts o;
    watch_flagset(flags, &o);
    char **raw = own(malloc(((size_t)argc + 1) * sizeof(char *)));
    memcpy(raw, argv, (size_t)argc * sizeof(char *));
    int n = 0;
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    if (env_key[0] == '\0' && env_range[0] != '\0') {
        char *q = ctl_go_quote((const uint8_t *)env_range, strlen(env_range));
        rc = ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                      "ETCDCTL_WATCH_KEY is empty but got "
                      "ETCDCTL_WATCH_RANGE_END=%s",
                      q);
        free(q);
        return rc;
    }
    if (o.interactive)
        return watch_interactive(ctl, ws, env_key, env_range);
    if (sep >= 0 && sep == raw_argc - 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "bad number of arguments (found separator --, but no "
                        "commands)");
    if (sep < 0 && raw_argc < 1 && env_key[0] == '\0')
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "bad number of arguments");
    int n_exec = sep >= 0 ? raw_argc - sep - 1 : 0;
    int nw = n - n_exec;
    if (sep < 0 && nw > 0 && env_key[0])
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "bad number of arguments (found conflicting "
                        "environment key)");
    char **wargs = argv;
    char *envv[3] = {(char *)env_key, (char *)env_range, NULL};
    char **joined = NULL;
    if (env_key[0]) {
        int ne = env_range[0] ? 2 : 1;
        joined = own(malloc(((size_t)nw + 3) * sizeof(char *)));
        memcpy(joined, envv, (size_t)ne * sizeof(char *));
        memcpy(joined + ne, argv, (size_t)nw * sizeof(char *));
        wargs = joined;
        nw += ne;
    }
    if (sep >= 0) {
        ws->exec_args = own(calloc((size_t)n_exec + 1, sizeof(char *)));
        memcpy(ws->exec_args, raw + sep + 1, (size_t)n_exec * sizeof(char *));
        ws->n_exec = n_exec;
    }
    struct ikclient *c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    char err[300];
    rc = start_watch(ctl, ws, nw, wargs, &o, err, sizeof(err));
    if (rc >= 0)
        return ctl_fail(ctl, rc, "%s", err);
    while (ws->active > 0 && ws->exit_code < 0)
        ikclient_run(c, 0);
    if (ws->exit_code >= 0)
        return ws->exit_code;
    return ctl_fail(ctl, CTL_EXIT_INTERRUPTED,
                    "watch is canceled by the server");
}

static int cmd_watch(struct ctl *ctl, int argc, char **argv)
{
    struct watch_state ws = {ctl, NULL, 0, -1, 0, NULL, 0, 0};
    int rc = watch_run(ctl, argc, argv, &ws);
    /* the watches themselves go with the client (ikclient_free) */
    free(ws.ws);
    release_owned();
    return rc;
}

static const struct ctl_flag_doc get_docs[] = {
    {"consistency", 0, "string", "l",
     "read consistency: l (linearizable) or s (serializable)"},
    {"from-key", 0, "bool", "false",
     "read every key from <key> upwards, in byte order"},
    {"keys-only", 0, "bool", "false", "print the keys without their values"},
    {"limit", 0, "int64", "0", "return at most this many keys (0: all)"},
    {"order", 0, "string", "",
     "sort direction: ASCEND (the default) or DESCEND"},
    {"prefix", 0, "bool", "false", "read every key that starts with <key>"},
    {"print-value-only", 0, "bool", "false",
     "print the values alone (simple output format only)"},
    {"rev", 0, "int64", "0", "read the keys as of this revision (0: now)"},
    {"sort-by", 0, "string", "",
     "field to sort by: CREATE, KEY, MODIFY, VALUE or VERSION"},
    {0}};

static const struct ctl_flag_doc put_docs[] = {
    {"ignore-lease", 0, "bool", "false", "keep the lease the key has now"},
    {"ignore-value", 0, "bool", "false", "keep the value the key has now"},
    {"lease", 0, "string", "0", "lease to bind the key to (hex ID)"},
    {"prev-kv", 0, "bool", "false", "also print the key as it was before"},
    {0}};

static const struct ctl_flag_doc del_docs[] = {
    {"from-key", 0, "bool", "false",
     "delete every key from <key> upwards, in byte order"},
    {"prefix", 0, "bool", "false", "delete every key that starts with <key>"},
    {"prev-kv", 0, "bool", "false", "print the key-value pairs deleted"},
    {0}};

static const struct ctl_flag_doc txn_docs[] = {
    {"interactive", 'i', "bool", "false",
     "prompt for the compares, the success requests and the failure "
     "requests"},
    {0}};

static const struct ctl_flag_doc compaction_docs[] = {
    {"physical", 0, "bool", "false",
     "return only once the old revisions are gone from the backend"},
    {0}};

static const struct ctl_flag_doc watch_docs[] = {
    {"interactive", 'i', "bool", "false",
     "take watch commands, one a line, from standard input"},
    {"prefix", 0, "bool", "false", "watch every key that starts with the key"},
    {"prev-kv", 0, "bool", "false",
     "show each changed key's value from before the change"},
    {"rev", 0, "int64", "0",
     "report the changes from this revision on (0: from now)"},
    {0}};

const struct ctl_command ctl_kv_commands[] = {
    {.name = "get",
     .run = cmd_get,
     .usage = "get [options] <key> [range_end]",
     .summary = "Read a key, or the keys of a range",
     .flags = get_docs},
    {.name = "put",
     .run = cmd_put,
     .usage =
         "put [options] <key> <value> (<value> can also be given from stdin)",
     .summary = "Store a value under a key",
     .flags = put_docs,
     .description =
         "Writes <value> to <key>. Without a <value> argument (and without\n"
         "--ignore-value) the value is read from standard input to its end.\n"
         "A value starting with '-' would be taken for a flag: put \"--\"\n"
         "before the key or the value, e.g. put -- mykey -5."},
    {.name = "del",
     .run = cmd_del,
     .usage = "del [options] <key> [range_end]",
     .summary = "Delete a key, or the keys of a range [key, range_end)",
     .flags = del_docs},
    {.name = "txn",
     .run = cmd_txn,
     .usage = "txn [options]",
     .summary = "Run compares and requests as one atomic transaction",
     .flags = txn_docs,
     .description =
         "Reads three blocks from standard input, each ended by an empty\n"
         "line: the compares (e.g. value(\"k\") = \"v\", mod(\"k\") > \"5\"),\n"
         "the requests to run when all compares hold, and the requests to\n"
         "run otherwise. Requests are written like the put, get and del\n"
         "commands (\"put k v\", \"get k --prefix\")."},
    {.name = "compaction",
     .run = cmd_compaction,
     .usage = "compaction [options] <revision>",
     .summary = "Drop the key history before a revision",
     .flags = compaction_docs},
    {.name = "watch",
     .run = cmd_watch,
     .usage = "watch [options] [key or prefix] [range_end] [--] "
              "[exec-command arg1 arg2 ...]",
     .summary = "Print the changes to a key, a range or a prefix as they "
                "happen",
     .flags = watch_docs,
     .description =
         "Prints each event as it arrives. When a command follows \"--\", it\n"
         "is run for every event instead, with ETCD_WATCH_EVENT_TYPE,\n"
         "ETCD_WATCH_KEY, ETCD_WATCH_VALUE and ETCD_WATCH_REVISION set in\n"
         "its environment. With -i, lines such as \"watch k --prefix\" are\n"
         "read from standard input, each opening another watch."},
    {0}};
