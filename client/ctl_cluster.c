/* ctl_cluster.c: ikadactl's member, endpoint, alarm, defrag and
 * move-leader commands, and helpers shared with the lease, lock and check
 * commands (see client/ctl_cluster.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "client/ctl_cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/errors.h"

/* ------------------------------------------------------------ helpers */

static int parse_digits(const char *s, int base, uint64_t max, uint64_t *out,
                        bool *range)
{
    uint64_t n = 0;
    *range = false;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        int d;
        char c = *s;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'Z')
            d = c - 'A' + 10;
        else
            return -1;
        if (d >= base)
            return -1;
        if (n > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) {
            *range = true;
            return -1;
        }
        n = n * (uint64_t)base + (uint64_t)d;
        if (n > max) {
            *range = true;
            return -1;
        }
    }
    *out = n;
    return 0;
}

static void parse_error(const char *fn, const char *s, bool range, char *err,
                        size_t size)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL) {
        snprintf(err, size, "%s: parsing: %s", fn,
                 range ? "value out of range" : "invalid syntax");
        return;
    }
    fprintf(m, "%s: parsing ", fn);
    ctl_cluster_go_quote(m, s, strlen(s));
    fprintf(m, ": %s", range ? "value out of range" : "invalid syntax");
    fclose(m);
    snprintf(err, size, "%s", buf);
    free(buf);
}

int ctl_cluster_parse_uint64(const char *s, int base, uint64_t *out, char *err,
                             size_t err_size)
{
    bool range;
    if (parse_digits(s, base, UINT64_MAX, out, &range) == 0)
        return 0;
    parse_error("strconv.ParseUint", s, range, err, err_size);
    return -1;
}

int ctl_cluster_parse_int64(const char *s, int base, int64_t *out, char *err,
                            size_t err_size)
{
    const char *p = s;
    bool neg = false, range;
    uint64_t u;
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    if (parse_digits(p, base, UINT64_MAX, &u, &range) != 0) {
        parse_error("strconv.ParseInt", s, range, err, err_size);
        return -1;
    }
    if ((!neg && u > (uint64_t)INT64_MAX) ||
        (neg && u > (uint64_t)INT64_MAX + 1)) {
        parse_error("strconv.ParseInt", s, true, err, err_size);
        return -1;
    }
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* Length of the valid UTF-8 sequence at @s (0 when invalid). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
        (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void ctl_cluster_go_quote(FILE *f, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t n = utf8_len(u + i, len - i);
        if (n == 0) {
            fprintf(f, "\\x%02x", c);
            i++;
            continue;
        }
        if (n > 1) {
            fwrite(u + i, 1, n, f);
            i += n;
            continue;
        }
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\a':
            fputs("\\a", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        case '\f':
            fputs("\\f", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\v':
            fputs("\\v", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\x%02x", c);
            else
                fputc(c, f);
        }
        i++;
    }
    fputc('"', f);
}

void ctl_cluster_json_string(FILE *f, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t n = utf8_len(u + i, len - i);
        if (n == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (n > 1) {
            /* U+2028 and U+2029 are escaped by encoding/json */
            if (n == 3 && u[i] == 0xe2 && u[i + 1] == 0x80 &&
                (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
                fprintf(f, "\\u202%c", u[i + 2] == 0xa8 ? '8' : '9');
            else
                fwrite(u + i, 1, n, f);
            i += n;
            continue;
        }
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (c < 0x20 || c == '<' || c == '>' || c == '&')
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
        i++;
    }
    fputc('"', f);
}

/* Go's fmtFrac/fmtInt logic of time.Duration.String, built right to
 * left. */
const char *ctl_cluster_go_duration(char *buf, size_t size, int64_t d)
{
    char tmp[32];
    int w = (int)sizeof tmp;
    uint64_t u = d < 0 ? (uint64_t)0 - (uint64_t)d : (uint64_t)d;
    bool neg = d < 0;
    if (u < 1000000000ull) {
        int prec;
        w--;
        tmp[w] = 's';
        w--;
        if (u == 0) {
            snprintf(buf, size, "0s");
            return buf;
        } else if (u < 1000ull) {
            prec = 0;
            tmp[w] = 'n';
        } else if (u < 1000000ull) {
            prec = 3;
            /* "µ" is two bytes; written right to left */
            tmp[w] = (char)0xb5;
            w--;
            tmp[w] = (char)0xc2;
        } else {
            prec = 6;
            tmp[w] = 'm';
        }
        /* fraction */
        bool print = false;
        for (int i = 0; i < prec; i++) {
            int digit = (int)(u % 10);
            print = print || digit != 0;
            if (print) {
                w--;
                tmp[w] = (char)('0' + digit);
            }
            u /= 10;
        }
        if (print) {
            w--;
            tmp[w] = '.';
        }
        /* integer */
        if (u == 0) {
            w--;
            tmp[w] = '0';
        } else {
            while (u > 0) {
                w--;
                tmp[w] = (char)('0' + u % 10);
                u /= 10;
            }
        }
    } else {
        w--;
        tmp[w] = 's';
        bool print = false;
        for (int i = 0; i < 9; i++) {
            int digit = (int)(u % 10);
            print = print || digit != 0;
            if (print) {
                w--;
                tmp[w] = (char)('0' + digit);
            }
            u /= 10;
        }
        if (print) {
            w--;
            tmp[w] = '.';
        }
        uint64_t secs = u % 60;
        u /= 60;
        if (secs == 0) {
            w--;
            tmp[w] = '0';
        }
        while (secs > 0) {
            w--;
            tmp[w] = (char)('0' + secs % 10);
            secs /= 10;
        }
        if (u > 0) {
            w--;
            tmp[w] = 'm';
            uint64_t mins = u % 60;
            u /= 60;
            if (mins == 0) {
                w--;
                tmp[w] = '0';
            }
            while (mins > 0) {
                w--;
                tmp[w] = (char)('0' + mins % 10);
                mins /= 10;
            }
            if (u > 0) {
                w--;
                tmp[w] = 'h';
                while (u > 0) {
                    w--;
                    tmp[w] = (char)('0' + u % 10);
                    u /= 10;
                }
            }
        }
    }
    if (neg) {
        w--;
        tmp[w] = '-';
    }
    snprintf(buf, size, "%.*s", (int)sizeof tmp - w, tmp + w);
    return buf;
}

char *ctl_cluster_error_text(struct ctl *ctl, int rc,
                             const struct ikclient_status *st)
{
    char *buf = NULL, *msg, *line, *last = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    FILE *saved = ctl->err;
    if (m == NULL)
        return NULL;
    ctl->err = m;
    ctl_fail_status(ctl, rc, st);
    ctl->err = saved;
    fclose(m);
    /* the last line that starts with "Error: " is the error; what comes
     * before it are the client's log lines */
    for (line = buf; line && *line;) {
        if (strncmp(line, "Error: ", 7) == 0)
            last = line;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    if (last == NULL) {
        fputs(buf, ctl->err);
        msg = strdup(st && st->message[0] ? st->message : "unknown error");
        free(buf);
        return msg;
    }
    fwrite(buf, 1, (size_t)(last - buf), ctl->err);
    msg = strdup(last + 7);
    free(buf);
    if (msg) {
        size_t l = strlen(msg);
        while (l > 0 && msg[l - 1] == '\n')
            msg[--l] = '\0';
    }
    return msg;
}

char *ctl_cluster_json_of(struct ctl *ctl, const ProtobufCMessage *msg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    FILE *saved = ctl->out;
    if (m == NULL)
        return NULL;
    ctl->out = m;
    ctl_print_json(ctl, msg);
    ctl->out = saved;
    fclose(m);
    while (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    return buf;
}

void ctl_cluster_json_header(FILE *f, const Etcdserverpb__ResponseHeader *h,
                             bool *first)
{
    if (h == NULL)
        return;
#define HF(name, fmt, v)                                          \
    if (v) {                                                      \
        fprintf(f, "%s\"" name "\":%" fmt, *first ? "" : ",", v); \
        *first = false;                                           \
    }
    HF("cluster_id", PRIu64, h->cluster_id)
    HF("member_id", PRIu64, h->member_id)
    HF("revision", PRId64, h->revision)
    HF("raft_term", PRIu64, h->raft_term)
#undef HF
}

int ctl_cluster_nil_panic(struct ctl *ctl)
{
    fflush(ctl->out);
    fputs("panic: runtime error: invalid memory address or nil pointer "
          "dereference\n[signal SIGSEGV: segmentation violation code=0x1 "
          "addr=0x0 pc=0x0]\n\ngoroutine 1 [running]:\nmain.main()\n",
          ctl->err);
    fflush(ctl->err);
    return 2;
}

int ctl_cluster_fields_header(struct ctl *ctl,
                              const Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL)
        return ctl_cluster_nil_panic(ctl);
    fprintf(ctl->out,
            "\"ClusterID\" : %" PRIu64 "\n\"MemberID\" : %" PRIu64
            "\n\"Revision\" : %" PRId64 "\n\"RaftTerm\" : %" PRIu64 "\n",
            h->cluster_id, h->member_id, h->revision, h->raft_term);
    return 0;
}

int ctl_cluster_unsupported(struct ctl *ctl)
{
    const char *n = ctl->g.write_out_name;
    if (n == NULL) {
        switch (ctl->g.write_out) {
        case CTL_OUT_JSON:
            n = "json";
            break;
        case CTL_OUT_PROTOBUF:
            n = "protobuf";
            break;
        case CTL_OUT_FIELDS:
            n = "fields";
            break;
        case CTL_OUT_TABLE:
            n = "table";
            break;
        default:
            n = "simple";
            break;
        }
    }
    return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                    "%s not supported as output format", n);
}

static void fields_kv(struct ctl *ctl, const char *pfx,
                      const Mvccpb__KeyValue *kv)
{
    FILE *o = ctl->out;
    fprintf(o, "\"%sKey\" : ", pfx);
    ctl_cluster_go_quote(o, (const char *)kv->key.data, kv->key.len);
    fprintf(o, "\n\"%sCreateRevision\" : %" PRId64 "\n", pfx,
            kv->create_revision);
    fprintf(o, "\"%sModRevision\" : %" PRId64 "\n", pfx, kv->mod_revision);
    fprintf(o, "\"%sVersion\" : %" PRId64 "\n", pfx, kv->version);
    fprintf(o, "\"%sValue\" : ", pfx);
    ctl_cluster_go_quote(o, (const char *)kv->value.data, kv->value.len);
    fprintf(o, "\n\"%sLease\" : %" PRId64 "\n", pfx, kv->lease);
}

/* Print a protobuf bytes field; protobuf-c leaves data NULL for an empty
 * field (e.g. a lock key's value), which must not reach fwrite. */
static void print_field(struct ctl *ctl, const ProtobufCBinaryData *b)
{
    if (b->len > 0)
        ctl_print_bytes(ctl, b->data, b->len);
}

int ctl_cluster_print_get(struct ctl *ctl,
                          const Etcdserverpb__RangeResponse *resp)
{
    int rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < resp->n_kvs; i++) {
            print_field(ctl, &resp->kvs[i]->key);
            fputc('\n', ctl->out);
            print_field(ctl, &resp->kvs[i]->value);
            fputc('\n', ctl->out);
        }
        break;
    case CTL_OUT_JSON:
        ctl_print_json(ctl, &resp->base);
        break;
    case CTL_OUT_PROTOBUF:
        ctl_print_protobuf(ctl, &resp->base);
        break;
    case CTL_OUT_FIELDS:
        rc = ctl_cluster_fields_header(ctl, resp->header);
        if (rc)
            return rc;
        for (size_t i = 0; i < resp->n_kvs; i++)
            fields_kv(ctl, "", resp->kvs[i]);
        fprintf(ctl->out, "\"More\" : %s\n\"Count\" : %" PRId64 "\n",
                resp->more ? "true" : "false", resp->count);
        break;
    default:
        return ctl_cluster_unsupported(ctl);
    }
    fflush(ctl->out);
    return 0;
}

/* ------------------------------------------------------------ common */

static uint64_t cmd_timeout(const struct ctl *ctl)
{
    return ctl->g.command_timeout_ms ? ctl->g.command_timeout_ms : 5000;
}

/* A client of its own for @eps (on @loop, NULL: private). */
static struct ikclient *client_for(struct ctl *ctl, char *const *eps, size_t n,
                                   uv_loop_t *loop, char *errmsg,
                                   size_t errsize)
{
    struct ikclient_config cfg;
    struct ikclient *c = NULL;
    /* the credentials as ctl_prepare() resolved them */
    ctl_client_config(ctl, &cfg);
    cfg.endpoints = (const char *const *)eps;
    cfg.n_endpoints = n;
    cfg.request_timeout_ms = cmd_timeout(ctl);
    cfg.loop = loop;
    if (ikclient_new(&cfg, &c, errmsg, errsize) != 0)
        return NULL;
    return c;
}

static int uint_arg(struct ctl *ctl, const char *s, uint64_t *id)
{
    char err[256];
    if (ctl_cluster_parse_uint64(s, 16, id, err, sizeof err) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "bad member ID arg (%s), expecting ID in Hex", err);
    return -1;
}

/* Print a failed call as ExitWithError(code, err) does. */
static int fail_call(struct ctl *ctl, int code, int rc,
                     const struct ikclient_status *st)
{
    char *msg = ctl_cluster_error_text(ctl, rc, st);
    ctl_fail(ctl, code, "%s", msg ? msg : "out of memory");
    free(msg);
    return code;
}

/* Replace the first @from in the malloc'd string *s with @to. */
static void str_replace1(char **s, const char *from, const char *to)
{
    char *at = *s ? strstr(*s, from) : NULL;
    char *n;
    size_t lf = strlen(from), lt = strlen(to), ls;
    if (at == NULL)
        return;
    ls = strlen(*s);
    n = malloc(ls - lf + lt + 1);
    if (n == NULL)
        return;
    memcpy(n, *s, (size_t)(at - *s));
    memcpy(n + (at - *s), to, lt);
    memcpy(n + (at - *s) + lt, at + lf, ls - (size_t)(at - *s) - lf + 1);
    free(*s);
    *s = n;
}

/*
 * The error text of a call clientv3 makes on a connection of its own to
 * endpoint @ep (Status, HashKV, Defragment: Client.Dial(ep)): its log line
 * names the target "passthrough:///<ep>" and a refused dial as such.
 */
static char *endpoint_error_text(struct ctl *ctl, const char *ep, int rc,
                                 const struct ikclient_status *st)
{
    char *buf = NULL, *msg;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    FILE *saved = ctl->err;
    if (m == NULL)
        return NULL;
    ctl->err = m;
    msg = ctl_cluster_error_text(ctl, rc, st);
    ctl->err = saved;
    fclose(m);
    if (buf && strncmp(buf, "{\"level\":\"warn\"", 15) == 0) {
        char *t = strstr(buf, "\"target\":\"endpoint://client-");
        if (t) {
            char *end = strchr(t + 10, '"');
            if (end) {
                char *from = strndup(t, (size_t)(end + 1 - t));
                char *to = NULL;
                if (from &&
                    asprintf(&to, "\"target\":\"passthrough:///%s\"", ep) > 0)
                    str_replace1(&buf, from, to);
                free(from);
                free(to);
            }
        }
        if (st && st->code == 14) {
            const char *host = strstr(ep, "://");
            char *to = NULL;
            host = host ? host + 3 : ep;
            if (asprintf(&to,
                         "latest balancer error: connection error: desc = "
                         "\\\"transport: Error while dialing dial tcp %s: "
                         "connect: connection refused\\\"",
                         host) > 0)
                str_replace1(&buf,
                             "latest balancer error: all SubConns are "
                             "in TransientFailure",
                             to);
            free(to);
        }
    }
    if (buf)
        fputs(buf, ctl->err);
    free(buf);
    return msg;
}

/* ------------------------------------------------------------ member */

static void member_row(FILE *o, const Etcdserverpb__Member *m, const char *sep)
{
    fprintf(o, "%" PRIx64 "%s%s%s%s%s", m->id, sep,
            m->name[0] ? "started" : "unstarted", sep, m->name, sep);
    for (size_t i = 0; i < m->n_peerurls; i++)
        fprintf(o, "%s%s", i ? "," : "", m->peerurls[i]);
    fputs(sep, o);
    for (size_t i = 0; i < m->n_clienturls; i++)
        fprintf(o, "%s%s", i ? "," : "", m->clienturls[i]);
    fprintf(o, "%s%s\n", sep, m->islearner ? "true" : "false");
}

static char *join_urls(char **v, size_t n)
{
    size_t len = 1;
    char *s;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    s = calloc(1, len);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, v[i]);
    }
    return s;
}

static int print_member_list(struct ctl *ctl,
                             const Etcdserverpb__MemberListResponse *r)
{
    FILE *o = ctl->out;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < r->n_members; i++)
            member_row(o, r->members[i], ", ");
        break;
    case CTL_OUT_JSON:
        ctl_print_json(ctl, &r->base);
        break;
    case CTL_OUT_PROTOBUF:
        ctl_print_protobuf(ctl, &r->base);
        break;
    case CTL_OUT_FIELDS: {
        int rc = ctl_cluster_fields_header(ctl, r->header);
        if (rc)
            return rc;
        for (size_t i = 0; i < r->n_members; i++) {
            const Etcdserverpb__Member *m = r->members[i];
            fprintf(o, "\"ID\" : %" PRIu64 "\n\"Name\" : ", m->id);
            ctl_cluster_go_quote(o, m->name, strlen(m->name));
            fputc('\n', o);
            for (size_t j = 0; j < m->n_peerurls; j++) {
                fputs("\"PeerURL\" : ", o);
                ctl_cluster_go_quote(o, m->peerurls[j], strlen(m->peerurls[j]));
                fputc('\n', o);
            }
            for (size_t j = 0; j < m->n_clienturls; j++) {
                fputs("\"ClientURL\" : ", o);
                ctl_cluster_go_quote(o, m->clienturls[j],
                                     strlen(m->clienturls[j]));
                fputc('\n', o);
            }
            fprintf(o, "\"IsLearner\" : %s\n\n",
                    m->islearner ? "true" : "false");
        }
        break;
    }
    case CTL_OUT_TABLE: {
        static const char *const hdr[] = {
            "ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"};
        struct ctl_table *t = ctl_table_new(6, hdr);
        for (size_t i = 0; i < r->n_members; i++) {
            const Etcdserverpb__Member *m = r->members[i];
            char id[24];
            char *peers = join_urls(m->peerurls, m->n_peerurls);
            char *clients = join_urls(m->clienturls, m->n_clienturls);
            const char *cells[6];
            snprintf(id, sizeof id, "%" PRIx64, m->id);
            cells[0] = id;
            cells[1] = m->name[0] ? "started" : "unstarted";
            cells[2] = m->name;
            cells[3] = peers ? peers : "";
            cells[4] = clients ? clients : "";
            cells[5] = m->islearner ? "true" : "false";
            ctl_table_row(t, cells);
            free(peers);
            free(clients);
        }
        ctl_table_print(ctl, t);
        break;
    }
    }
    fflush(o);
    return 0;
}

static int member_list(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    struct ikclient *c;
    Etcdserverpb__MemberListRequest req =
        ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    Etcdserverpb__MemberListResponse *resp = NULL;
    struct ikclient_status st;
    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    rc = ikclient_call(c, "/etcdserverpb.Cluster/MemberList", &req.base,
                       &etcdserverpb__member_list_response__descriptor,
                       IKCLIENT_IDEMPOTENT, cmd_timeout(ctl),
                       (ProtobufCMessage **)&resp, &st);
    if (rc != 0)
        return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
    rc = print_member_list(ctl, resp);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

/* Split a comma list into a malloc'd vector (strings point into @copy). */
static char **split_commas(char *copy, size_t *n)
{
    size_t cap = 1;
    char **v;
    for (const char *p = copy; *p; p++)
        cap += *p == ',';
    v = calloc(cap, sizeof *v);
    if (v == NULL)
        return NULL;
    *n = 0;
    for (char *p = copy;;) {
        char *q = strchr(p, ',');
        v[(*n)++] = p;
        if (q == NULL)
            break;
        *q = '\0';
        p = q + 1;
    }
    return v;
}

/* The display for responses etcdctl prints through printerRPC (json,
 * protobuf) and that the fields/table printers do not support. */
static int print_rpc(struct ctl *ctl, const ProtobufCMessage *m)
{
    if (ctl->g.write_out == CTL_OUT_JSON)
        ctl_print_json(ctl, m);
    else if (ctl->g.write_out == CTL_OUT_PROTOBUF)
        ctl_print_protobuf(ctl, m);
    else
        return ctl_cluster_unsupported(ctl);
    fflush(ctl->out);
    return 0;
}

static int member_add(struct ctl *ctl, int argc, char **argv)
{
    const char *peer_urls = "";
    bool learner = false;
    const struct ctl_flag flags[] = {
        {"peer-urls", 0, CTL_FLAG_STRING, &peer_urls, NULL, NULL},
        {"learner", 0, CTL_FLAG_BOOL, &learner, NULL, NULL},
        {0}};
    int nargs, rc;
    struct ikclient *c;
    Etcdserverpb__MemberAddRequest req = ETCDSERVERPB__MEMBER_ADD_REQUEST__INIT;
    Etcdserverpb__MemberAddResponse *resp = NULL;
    struct ikclient_status st;
    char *copy, **urls;
    size_t n_urls = 0;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs < 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "member name not provided");
    if (nargs > 1) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (m == NULL)
            return CTL_EXIT_ERROR;
        fputs("too many arguments", m);
        for (int i = 0; i < nargs; i++)
            if (strncasecmp(argv[i], "http", 4) == 0)
                fprintf(m, ", did you mean --peer-urls=%s", argv[i]);
        fclose(m);
        rc = ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "%s", buf);
        free(buf);
        return rc;
    }
    if (peer_urls[0] == '\0')
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "member peer urls not provided");
    copy = strdup(peer_urls);
    urls = copy ? split_commas(copy, &n_urls) : NULL;
    if (urls == NULL) {
        free(copy);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    c = ctl_client(ctl);
    if (c == NULL) {
        free(urls);
        free(copy);
        return CTL_EXIT_BAD_CONNECTION;
    }
    req.n_peerurls = n_urls;
    req.peerurls = urls;
    req.islearner = learner;
    rc = ikclient_call(c, "/etcdserverpb.Cluster/MemberAdd", &req.base,
                       &etcdserverpb__member_add_response__descriptor, 0,
                       cmd_timeout(ctl), (ProtobufCMessage **)&resp, &st);
    free(urls);
    free(copy);
    if (rc != 0)
        return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        FILE *o = ctl->out;
        uint64_t new_id = resp->member ? resp->member->id : 0;
        bool first = true;
        if (resp->member == NULL || resp->header == NULL) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return ctl_cluster_nil_panic(ctl);
        }
        fprintf(o, "Member %16" PRIx64 " added to cluster %16" PRIx64 "\n",
                new_id, resp->header->cluster_id);
        fputs("\nETCD_NAME=", o);
        ctl_cluster_go_quote(o, argv[0], strlen(argv[0]));
        fputs("\nETCD_INITIAL_CLUSTER=", o);
        {
            char *buf = NULL;
            size_t len = 0;
            FILE *m = open_memstream(&buf, &len);
            if (m) {
                for (size_t i = 0; i < resp->n_members; i++) {
                    const Etcdserverpb__Member *mb = resp->members[i];
                    const char *nm = mb->id == new_id ? argv[0] : mb->name;
                    for (size_t j = 0; j < mb->n_peerurls; j++) {
                        fprintf(m, "%s%s=%s", first ? "" : ",", nm,
                                mb->peerurls[j]);
                        first = false;
                    }
                }
                fclose(m);
                ctl_cluster_go_quote(o, buf, len);
                free(buf);
            }
        }
        fputs("\nETCD_INITIAL_ADVERTISE_PEER_URLS=", o);
        ctl_cluster_go_quote(o, peer_urls, strlen(peer_urls));
        fputs("\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n", o);
        fflush(o);
        rc = 0;
    } else {
        rc = print_rpc(ctl, &resp->base);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

/* remove, update and promote: "Member %16x <verb> cluster %16x". */
static int member_by_id(struct ctl *ctl, int argc, char **argv,
                        const char *what)
{
    const char *peer_urls = "";
    bool update = strcmp(what, "update") == 0;
    bool promote = strcmp(what, "promote") == 0;
    const struct ctl_flag flags_update[] = {
        {"peer-urls", 0, CTL_FLAG_STRING, &peer_urls, NULL, NULL}, {0}};
    const struct ctl_flag flags_none[] = {{0}};
    int nargs, rc;
    uint64_t id;
    struct ikclient *c;
    struct ikclient_status st;
    ProtobufCMessage *resp = NULL;
    char *copy = NULL, **urls = NULL;
    size_t n_urls = 0;
    Etcdserverpb__MemberRemoveRequest rm =
        ETCDSERVERPB__MEMBER_REMOVE_REQUEST__INIT;
    Etcdserverpb__MemberUpdateRequest up =
        ETCDSERVERPB__MEMBER_UPDATE_REQUEST__INIT;
    Etcdserverpb__MemberPromoteRequest pr =
        ETCDSERVERPB__MEMBER_PROMOTE_REQUEST__INIT;
    const ProtobufCMessage *req;
    const ProtobufCMessageDescriptor *desc;
    const char *method;

    rc = ctl_parse_flags(ctl, argc, argv, update ? flags_update : flags_none,
                         &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "member ID is not provided");
    rc = uint_arg(ctl, argv[0], &id);
    if (rc >= 0)
        return rc;
    if (update) {
        if (peer_urls[0] == '\0')
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "member peer urls not provided");
        copy = strdup(peer_urls);
        urls = copy ? split_commas(copy, &n_urls) : NULL;
        if (urls == NULL) {
            free(copy);
            return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
        }
        up.id = id;
        up.n_peerurls = n_urls;
        up.peerurls = urls;
        req = &up.base;
        desc = &etcdserverpb__member_update_response__descriptor;
        method = "/etcdserverpb.Cluster/MemberUpdate";
    } else if (promote) {
        pr.id = id;
        req = &pr.base;
        desc = &etcdserverpb__member_promote_response__descriptor;
        method = "/etcdserverpb.Cluster/MemberPromote";
    } else {
        rm.id = id;
        req = &rm.base;
        desc = &etcdserverpb__member_remove_response__descriptor;
        method = "/etcdserverpb.Cluster/MemberRemove";
    }
    c = ctl_client(ctl);
    if (c == NULL) {
        free(urls);
        free(copy);
        return CTL_EXIT_BAD_CONNECTION;
    }
    rc = ikclient_call(c, method, req, desc, 0, cmd_timeout(ctl), &resp, &st);
    free(urls);
    free(copy);
    if (rc != 0)
        return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
    /* all three responses start with the header */
    const Etcdserverpb__ResponseHeader *h =
        ((const Etcdserverpb__MemberRemoveResponse *)resp)->header;
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        if (h == NULL) {
            rc = ctl_cluster_nil_panic(ctl);
        } else {
            fprintf(ctl->out, "Member %16" PRIx64 " %s cluster %16" PRIx64 "\n",
                    id,
                    update    ? "updated in"
                    : promote ? "promoted in"
                              : "removed from",
                    h->cluster_id);
            fflush(ctl->out);
            rc = 0;
        }
    } else if (promote) {
        /* etcdctl's non-simple printers lack MemberPromote: a nil
         * interface call */
        rc = ctl_cluster_nil_panic(ctl);
    } else {
        rc = print_rpc(ctl, resp);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static int member_remove(struct ctl *ctl, int argc, char **argv)
{
    return member_by_id(ctl, argc, argv, "remove");
}
static int member_update(struct ctl *ctl, int argc, char **argv)
{
    return member_by_id(ctl, argc, argv, "update");
}
static int member_promote(struct ctl *ctl, int argc, char **argv)
{
    return member_by_id(ctl, argc, argv, "promote");
}

/* ------------------------------------------------------------ endpoints */

struct eplist {
    char **v;
    size_t n;
    Etcdserverpb__MemberListResponse *ml; /* owns the strings with --cluster */
};

static void eplist_free(struct eplist *l)
{
    free(l->v);
    if (l->ml)
        protobuf_c_message_free_unpacked(&l->ml->base, NULL);
}

/* endpointsFromCluster: --endpoints as given, or with --cluster every
 * member's client URLs. Returns -1 or an exit code. */
static int endpoints_from_cluster(struct ctl *ctl, bool cluster,
                                  struct eplist *l)
{
    memset(l, 0, sizeof *l);
    if (!cluster) {
        l->v = calloc(ctl->g.n_endpoints + 1, sizeof *l->v);
        if (l->v == NULL)
            return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
        for (size_t i = 0; i < ctl->g.n_endpoints; i++)
            l->v[i] = ctl->g.endpoints[i];
        l->n = ctl->g.n_endpoints;
        return -1;
    }
    struct ikclient *c = ctl_client(ctl);
    Etcdserverpb__MemberListRequest req =
        ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    struct ikclient_status st;
    size_t n = 0;
    int rc;
    if (c == NULL)
        return CTL_EXIT_ERROR;
    rc = ikclient_call(c, "/etcdserverpb.Cluster/MemberList", &req.base,
                       &etcdserverpb__member_list_response__descriptor,
                       IKCLIENT_IDEMPOTENT, cmd_timeout(ctl),
                       (ProtobufCMessage **)&l->ml, &st);
    if (rc != 0) {
        char *msg = ctl_cluster_error_text(ctl, rc, &st);
        rc = ctl_fail(ctl, CTL_EXIT_ERROR,
                      "failed to fetch endpoints from etcd cluster member "
                      "list: %s",
                      msg ? msg : "out of memory");
        free(msg);
        return rc;
    }
    for (size_t i = 0; i < l->ml->n_members; i++)
        n += l->ml->members[i]->n_clienturls;
    l->v = calloc(n + 1, sizeof *l->v);
    if (l->v == NULL)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    for (size_t i = 0; i < l->ml->n_members; i++)
        for (size_t j = 0; j < l->ml->members[i]->n_clienturls; j++)
            l->v[l->n++] = l->ml->members[i]->clienturls[j];
    return -1;
}

/* One client whose endpoint i is l->v[i]: the command's own client
 * without --cluster, a new one (caller frees) with it. */
static struct ikclient *eplist_client(struct ctl *ctl, bool cluster,
                                      const struct eplist *l, bool *owned)
{
    char err[256] = "";
    struct ikclient *c;
    *owned = false;
    if (!cluster)
        return ctl_client(ctl);
    if (l->n == 0)
        return NULL;
    c = client_for(ctl, l->v, l->n, NULL, err, sizeof err);
    if (c == NULL) {
        ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "%s", err);
        return NULL;
    }
    if (ctl_authenticate(ctl, c) >= 0) {
        ikclient_free(c);
        return NULL;
    }
    *owned = true;
    return c;
}

/* health */

struct health {
    char *ep;
    bool healthy;
    char took[40];
    char *error; /* NULL: none */
};

struct health_run {
    struct ctl *ctl;
    struct health *res;
    size_t n_done;
    size_t n_pending; /* calls not answered yet */
    uv_loop_t *loop;
};

struct health_call {
    struct health_run *run;
    const char *ep;
    uint64_t start_ns;
};

static void health_cb(void *data, int rc, ProtobufCMessage *resp,
                      const struct ikclient_status *st)
{
    struct health_call *hc = data;
    struct health_run *run = hc->run;
    struct health *h = &run->res[run->n_done++];
    h->ep = (char *)hc->ep;
    ctl_cluster_go_duration(h->took, sizeof h->took,
                            (int64_t)(uv_hrtime() - hc->start_ns));
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (--run->n_pending == 0)
        uv_stop(run->loop);
    if (rc == 0) {
        h->healthy = true;
        return;
    }
    if (rc == IK_EGRPC && st &&
        strcmp(st->message, "etcdserver: permission denied") == 0) {
        /* healthy (the request went through consensus), but the client
         * logs the failed call */
        ctl_print_grpc_warn_ep(run->ctl, st, hc->ep);
        h->healthy = true;
        return;
    }
    /* log lines of the failure are printed as they happen, like the
     * client's logger does */
    h->error = ctl_cluster_error_text(run->ctl, rc, st);
    if (h->error == NULL)
        h->error = strdup("unknown error");
}

static int endpoint_health(struct ctl *ctl, int argc, char **argv)
{
    bool cluster = false;
    const struct ctl_flag flags[] = {
        {"cluster", 0, CTL_FLAG_BOOL, &cluster, NULL, NULL}, {0}};
    int nargs, rc;
    struct eplist l;
    uv_loop_t loop;
    struct ikclient **cl;
    struct health_call *calls;
    struct health_run run = {ctl, NULL, 0, 0, NULL};
    bool errs = false;
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    /* ETCDCTL_*, TLS, credentials and -w; each endpoint gets its own
     * client below (as etcdctl) */
    rc = ctl_prepare(ctl);
    if (rc >= 0)
        return rc;
    rc = endpoints_from_cluster(ctl, cluster, &l);
    if (rc >= 0) {
        eplist_free(&l);
        return rc;
    }
    run.loop = &loop;
    if (uv_loop_init(&loop) != 0) {
        eplist_free(&l);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "cannot make an event loop");
    }
    cl = calloc(l.n + 1, sizeof *cl);
    calls = calloc(l.n + 1, sizeof *calls);
    run.res = calloc(l.n + 1, sizeof *run.res);
    if (cl == NULL || calls == NULL || run.res == NULL) {
        free(cl);
        free(calls);
        free(run.res);
        eplist_free(&l);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    req.key.data = (uint8_t *)"health";
    req.key.len = 6;
    for (size_t i = 0; i < l.n; i++) {
        char err[256] = "";
        calls[i].run = &run;
        calls[i].ep = l.v[i];
        cl[i] = client_for(ctl, &l.v[i], 1, &loop, err, sizeof err);
        if (cl[i] == NULL) {
            struct health *h = &run.res[run.n_done++];
            h->ep = l.v[i];
            h->error = strdup(err);
            continue;
        }
        /* clientv3.New authenticates; its failure is this endpoint's */
        char *aerr = ctl_client_auth(ctl, cl[i]);
        if (aerr != NULL) {
            struct health *h = &run.res[run.n_done++];
            h->ep = l.v[i];
            h->error = aerr;
            continue;
        }
        calls[i].start_ns = uv_hrtime();
        run.n_pending++;
        if (ikclient_call_async(cl[i], "/etcdserverpb.KV/Range", &req.base,
                                &etcdserverpb__range_response__descriptor,
                                IKCLIENT_NO_FAILOVER, cmd_timeout(ctl),
                                health_cb, &calls[i]) != 0) {
            struct health *h = &run.res[run.n_done++];
            h->ep = l.v[i];
            h->error = strdup("out of memory");
            run.n_pending--;
        }
    }
    if (run.n_pending > 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < l.n; i++)
        ikclient_free(cl[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    for (size_t i = 0; i < run.n_done; i++)
        if (run.res[i].error)
            errs = true;
    FILE *o = ctl->out;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < run.n_done; i++) {
            struct health *h = &run.res[i];
            if (h->error == NULL)
                fprintf(ctl->err,
                        "%s is healthy: successfully committed proposal: "
                        "took = %s\n",
                        h->ep, h->took);
            else
                fprintf(ctl->err,
                        "%s is unhealthy: failed to commit proposal: %s\n",
                        h->ep, h->error);
        }
        break;
    case CTL_OUT_JSON:
        fputc('[', o);
        for (size_t i = 0; i < run.n_done; i++) {
            struct health *h = &run.res[i];
            fputs(i ? ",{\"endpoint\":" : "{\"endpoint\":", o);
            ctl_cluster_json_string(o, h->ep, strlen(h->ep));
            fprintf(o,
                    ",\"health\":%s,\"took\":", h->healthy ? "true" : "false");
            ctl_cluster_json_string(o, h->took, strlen(h->took));
            if (h->error) {
                fputs(",\"error\":", o);
                ctl_cluster_json_string(o, h->error, strlen(h->error));
            }
            fputc('}', o);
        }
        fputs("]\n", o);
        break;
    case CTL_OUT_FIELDS:
        for (size_t i = 0; i < run.n_done; i++) {
            struct health *h = &run.res[i];
            fputs("\"Endpoint\" : ", o);
            ctl_cluster_go_quote(o, h->ep, strlen(h->ep));
            fprintf(o, "\n\"Health\" : %s\n\"Took\" : %s\n\"Error\" : %s\n\n",
                    h->healthy ? "true" : "false", h->took,
                    h->error ? h->error : "");
        }
        break;
    case CTL_OUT_TABLE: {
        static const char *const hdr[] = {"endpoint", "health", "took",
                                          "error"};
        struct ctl_table *t = ctl_table_new(4, hdr);
        for (size_t i = 0; i < run.n_done; i++) {
            struct health *h = &run.res[i];
            const char *cells[4] = {h->ep, h->healthy ? "true" : "false",
                                    h->took, h->error ? h->error : ""};
            ctl_table_row(t, cells);
        }
        ctl_table_print(ctl, t);
        break;
    }
    default:
        rc = ctl_cluster_unsupported(ctl);
        break;
    }
    fflush(o);
    fflush(ctl->err);
    for (size_t i = 0; i < run.n_done; i++)
        free(run.res[i].error);
    free(run.res);
    free(calls);
    free(cl);
    eplist_free(&l);
    if (rc >= 0)
        return rc;
    if (errs)
        return ctl_fail(ctl, CTL_EXIT_ERROR, "unhealthy cluster");
    return 0;
}

/* status */

static void human_bytes(char *buf, size_t size, uint64_t s)
{
    static const char *const sizes[] = {"B",  "kB", "MB", "GB",
                                        "TB", "PB", "EB"};
    if (s < 10) {
        snprintf(buf, size, "%" PRIu64 " B", s);
        return;
    }
    double e = floor(log((double)s) / log(1000.0));
    const char *suffix = sizes[(int)e];
    double val = floor((double)s / pow(1000.0, e) * 10.0 + 0.5) / 10.0;
    if (val < 10)
        snprintf(buf, size, "%.1f %s", val, suffix);
    else
        snprintf(buf, size, "%.0f %s", val, suffix);
}

struct epresp {
    const char *ep;
    ProtobufCMessage *resp;
};

static void status_cells(const struct epresp *e, char cells[10][64],
                         char **errors)
{
    const Etcdserverpb__StatusResponse *s =
        (const Etcdserverpb__StatusResponse *)e->resp;
    uint64_t mid = s->header ? s->header->member_id : 0;
    size_t len = 1;
    snprintf(cells[1], 64, "%" PRIx64, mid);
    snprintf(cells[2], 64, "%s", s->version);
    human_bytes(cells[3], 64, (uint64_t)s->dbsize);
    snprintf(cells[4], 64, "%s", s->leader == mid ? "true" : "false");
    snprintf(cells[5], 64, "%s", s->islearner ? "true" : "false");
    snprintf(cells[6], 64, "%" PRIu64, s->raftterm);
    snprintf(cells[7], 64, "%" PRIu64, s->raftindex);
    snprintf(cells[8], 64, "%" PRIu64, s->raftappliedindex);
    cells[0][0] = cells[9][0] = '\0';
    for (size_t i = 0; i < s->n_errors; i++)
        len += strlen(s->errors[i]) + 2;
    *errors = calloc(1, len);
    if (*errors)
        for (size_t i = 0; i < s->n_errors; i++) {
            if (i)
                strcat(*errors, ", ");
            strcat(*errors, s->errors[i]);
        }
}

/* -w json of endpoint status / hashkv: a JSON list of {"Endpoint": ep,
 * @key: response} objects, one per endpoint of @v[0..n). */
static void print_json_each(struct ctl *ctl, const struct epresp *v, size_t n,
                            const char *key)
{
    FILE *o = ctl->out;
    fputc('[', o);
    for (size_t i = 0; i < n; i++) {
        char *js = ctl_cluster_json_of(ctl, v[i].resp);
        fputs(i ? ",{\"Endpoint\":" : "{\"Endpoint\":", o);
        ctl_cluster_json_string(o, v[i].ep, strlen(v[i].ep));
        fprintf(o, ",\"%s\":%s}", key, js ? js : "null");
        free(js);
    }
    fputs("]\n", o);
}

static void print_status(struct ctl *ctl, const struct epresp *v, size_t n)
{
    FILE *o = ctl->out;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < n; i++) {
            char cells[10][64], *errors = NULL;
            status_cells(&v[i], cells, &errors);
            fprintf(o, "%s", v[i].ep);
            for (int j = 1; j < 9; j++)
                fprintf(o, ", %s", cells[j]);
            fprintf(o, ", %s\n", errors ? errors : "");
            free(errors);
        }
        break;
    case CTL_OUT_JSON:
        print_json_each(ctl, v, n, "Status");
        break;
    case CTL_OUT_FIELDS:
        for (size_t i = 0; i < n; i++) {
            const Etcdserverpb__StatusResponse *s =
                (const Etcdserverpb__StatusResponse *)v[i].resp;
            if (ctl_cluster_fields_header(ctl, s->header) != 0)
                return;
            fputs("\"Version\" : ", o);
            ctl_cluster_go_quote(o, s->version, strlen(s->version));
            fprintf(o,
                    "\n\"DBSize\" : %" PRId64 "\n\"Leader\" : %" PRIu64
                    "\n\"IsLearner\" : %s\n\"RaftIndex\" : %" PRIu64
                    "\n\"RaftTerm\" : %" PRIu64
                    "\n\"RaftAppliedIndex\" : %" PRIu64 "\n\"Errors\" : [",
                    s->dbsize, s->leader, s->islearner ? "true" : "false",
                    s->raftindex, s->raftterm, s->raftappliedindex);
            for (size_t j = 0; j < s->n_errors; j++)
                fprintf(o, "%s%s", j ? " " : "", s->errors[j]);
            fputs("]\n\"Endpoint\" : ", o);
            ctl_cluster_go_quote(o, v[i].ep, strlen(v[i].ep));
            fputs("\n\n", o);
        }
        break;
    case CTL_OUT_TABLE: {
        static const char *const hdr[] = {
            "endpoint",           "ID",         "version",   "db size",
            "is leader",          "is learner", "raft term", "raft index",
            "raft applied index", "errors"};
        struct ctl_table *t = ctl_table_new(10, hdr);
        for (size_t i = 0; i < n; i++) {
            char cells[10][64], *errors = NULL;
            const char *row[10];
            status_cells(&v[i], cells, &errors);
            row[0] = v[i].ep;
            for (int j = 1; j < 9; j++)
                row[j] = cells[j];
            row[9] = errors ? errors : "";
            ctl_table_row(t, row);
            free(errors);
        }
        ctl_table_print(ctl, t);
        break;
    }
    default:
        break;
    }
}

static void print_hashkv(struct ctl *ctl, const struct epresp *v, size_t n)
{
    FILE *o = ctl->out;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        for (size_t i = 0; i < n; i++)
            fprintf(o, "%s, %" PRIu32 "\n", v[i].ep,
                    ((const Etcdserverpb__HashKVResponse *)v[i].resp)->hash);
        break;
    case CTL_OUT_JSON:
        print_json_each(ctl, v, n, "HashKV");
        break;
    case CTL_OUT_FIELDS:
        for (size_t i = 0; i < n; i++) {
            const Etcdserverpb__HashKVResponse *h =
                (const Etcdserverpb__HashKVResponse *)v[i].resp;
            if (ctl_cluster_fields_header(ctl, h->header) != 0)
                return;
            fputs("\"Endpoint\" : ", o);
            ctl_cluster_go_quote(o, v[i].ep, strlen(v[i].ep));
            fprintf(o, "\n\"Hash\" : %" PRIu32 "\n\n", h->hash);
        }
        break;
    case CTL_OUT_TABLE: {
        static const char *const hdr[] = {"endpoint", "hash"};
        struct ctl_table *t = ctl_table_new(2, hdr);
        for (size_t i = 0; i < n; i++) {
            char hash[24];
            const char *row[2] = {v[i].ep, hash};
            snprintf(hash, sizeof hash, "%" PRIu32,
                     ((const Etcdserverpb__HashKVResponse *)v[i].resp)->hash);
            ctl_table_row(t, row);
        }
        ctl_table_print(ctl, t);
        break;
    }
    default:
        break;
    }
}

/* endpoint status / endpoint hashkv */
static int endpoint_each(struct ctl *ctl, int argc, char **argv, bool hashkv)
{
    bool cluster = false, owned = false;
    int64_t rev = 0;
    const struct ctl_flag flags_status[] = {
        {"cluster", 0, CTL_FLAG_BOOL, &cluster, NULL, NULL}, {0}};
    const struct ctl_flag flags_hash[] = {
        {"cluster", 0, CTL_FLAG_BOOL, &cluster, NULL, NULL},
        {"rev", 0, CTL_FLAG_INT64, &rev, NULL, NULL},
        {0}};
    int nargs, rc, exit_code = 0;
    struct eplist l;
    struct ikclient *c;
    struct epresp *v;
    size_t n = 0;
    char *last_err = NULL;

    rc = ctl_parse_flags(ctl, argc, argv, hashkv ? flags_hash : flags_status,
                         &nargs);
    if (rc >= 0)
        return rc;
    /* etcdctl makes its client first (mustClientFromCmd) */
    if (ctl_client(ctl) == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    rc = endpoints_from_cluster(ctl, cluster, &l);
    if (rc >= 0) {
        eplist_free(&l);
        return rc;
    }
    c = eplist_client(ctl, cluster, &l, &owned);
    v = calloc(l.n + 1, sizeof *v);
    if (v == NULL) {
        if (owned)
            ikclient_free(c);
        eplist_free(&l);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
    }
    for (size_t i = 0; c && i < l.n; i++) {
        struct ikclient_status st;
        ProtobufCMessage *resp = NULL;
        if (hashkv) {
            Etcdserverpb__HashKVRequest req =
                ETCDSERVERPB__HASH_KVREQUEST__INIT;
            req.revision = rev;
            rc = ikclient_call_endpoint(
                c, i, "/etcdserverpb.Maintenance/HashKV", &req.base,
                &etcdserverpb__hash_kvresponse__descriptor, cmd_timeout(ctl),
                &resp, &st);
        } else {
            Etcdserverpb__StatusRequest req =
                ETCDSERVERPB__STATUS_REQUEST__INIT;
            rc = ikclient_call_endpoint(
                c, i, "/etcdserverpb.Maintenance/Status", &req.base,
                &etcdserverpb__status_response__descriptor, cmd_timeout(ctl),
                &resp, &st);
        }
        if (rc != 0) {
            char *msg = endpoint_error_text(ctl, l.v[i], rc, &st);
            fprintf(ctl->err, "Failed to get the %s of endpoint %s (%s)\n",
                    hashkv ? "hash" : "status", l.v[i],
                    msg ? msg : "out of memory");
            fflush(ctl->err);
            free(last_err);
            last_err = msg;
            exit_code = CTL_EXIT_ERROR;
            continue;
        }
        v[n].ep = l.v[i];
        v[n].resp = resp;
        n++;
    }
    if (ctl->g.write_out == CTL_OUT_PROTOBUF) {
        rc = ctl_cluster_unsupported(ctl);
    } else {
        if (hashkv)
            print_hashkv(ctl, v, n);
        else
            print_status(ctl, v, n);
        fflush(ctl->out);
        rc = -1;
    }
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(v[i].resp, NULL);
    free(v);
    if (owned)
        ikclient_free(c);
    eplist_free(&l);
    if (rc < 0 && exit_code != 0) {
        /* status exits quietly, hashkv with ExitWithError(err) */
        if (hashkv)
            ctl_fail(ctl, CTL_EXIT_ERROR, "%s", last_err ? last_err : "");
        rc = exit_code;
    }
    free(last_err);
    return rc < 0 ? 0 : rc;
}

static int endpoint_status(struct ctl *ctl, int argc, char **argv)
{
    return endpoint_each(ctl, argc, argv, false);
}
static int endpoint_hashkv(struct ctl *ctl, int argc, char **argv)
{
    return endpoint_each(ctl, argc, argv, true);
}

/* ------------------------------------------------------------ defrag */

static int defrag(struct ctl *ctl, int argc, char **argv)
{
    bool cluster = false, owned = false;
    const char *data_dir = "";
    const struct ctl_flag flags[] = {
        {"cluster", 0, CTL_FLAG_BOOL, &cluster, NULL, NULL},
        {"data-dir", 0, CTL_FLAG_STRING, &data_dir, NULL, NULL},
        {0}};
    int nargs, rc, failures = 0;
    struct eplist l;
    struct ikclient *c;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (data_dir[0]) {
        /* etcd's offline defrag works on its bbolt file, which ikada does
         * not have */
        fprintf(ctl->err,
                "Failed to defragment etcd data[%s] (offline defragmentation "
                "is not supported by ikadactl)\n",
                data_dir);
        return CTL_EXIT_ERROR;
    }
    if (ctl_client(ctl) == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    rc = endpoints_from_cluster(ctl, cluster, &l);
    if (rc >= 0) {
        eplist_free(&l);
        return rc;
    }
    c = eplist_client(ctl, cluster, &l, &owned);
    for (size_t i = 0; c && i < l.n; i++) {
        Etcdserverpb__DefragmentRequest req =
            ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
        struct ikclient_status st;
        ProtobufCMessage *resp = NULL;
        rc = ikclient_call_endpoint(
            c, i, "/etcdserverpb.Maintenance/Defragment", &req.base,
            &etcdserverpb__defragment_response__descriptor, cmd_timeout(ctl),
            &resp, &st);
        if (rc != 0) {
            char *msg = endpoint_error_text(ctl, l.v[i], rc, &st);
            fprintf(ctl->err, "Failed to defragment etcd member[%s] (%s)\n",
                    l.v[i], msg ? msg : "out of memory");
            fflush(ctl->err);
            free(msg);
            failures++;
        } else {
            protobuf_c_message_free_unpacked(resp, NULL);
            fprintf(ctl->out, "Finished defragmenting etcd member[%s]\n",
                    l.v[i]);
            fflush(ctl->out);
        }
    }
    if (owned)
        ikclient_free(c);
    eplist_free(&l);
    return failures ? CTL_EXIT_ERROR : 0;
}

/* ------------------------------------------------------------ alarm */

static const char *alarm_name(int a)
{
    switch (a) {
    case ETCDSERVERPB__ALARM_TYPE__NONE:
        return "NONE";
    case ETCDSERVERPB__ALARM_TYPE__NOSPACE:
        return "NOSPACE";
    case ETCDSERVERPB__ALARM_TYPE__CORRUPT:
        return "CORRUPT";
    default:
        return NULL;
    }
}

static int print_alarms(struct ctl *ctl,
                        const Etcdserverpb__AlarmResponse *resp);

static int alarm_cmd(struct ctl *ctl, int argc, char **argv, bool disarm)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    struct ikclient *c;
    Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
    Etcdserverpb__AlarmResponse *resp = NULL;
    struct ikclient_status st;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "alarm %s command accepts no arguments",
                        disarm ? "disarm" : "list");
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    req.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET;
    rc = ikclient_call(c, "/etcdserverpb.Maintenance/Alarm", &req.base,
                       &etcdserverpb__alarm_response__descriptor,
                       IKCLIENT_IDEMPOTENT, cmd_timeout(ctl),
                       (ProtobufCMessage **)&resp, &st);
    if (rc != 0)
        return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
    if (disarm) {
        /* clientv3's AlarmDisarm of "every alarm": list them, disarm each,
         * answer with the alarms the disarms returned and no header */
        Etcdserverpb__AlarmResponse *list = resp;
        Etcdserverpb__AlarmResponse *all = calloc(1, sizeof *all);
        if (all == NULL) {
            protobuf_c_message_free_unpacked(&list->base, NULL);
            return ctl_fail(ctl, CTL_EXIT_ERROR, "out of memory");
        }
        etcdserverpb__alarm_response__init(all);
        for (size_t i = 0; i < list->n_alarms; i++) {
            Etcdserverpb__AlarmRequest dr = ETCDSERVERPB__ALARM_REQUEST__INIT;
            Etcdserverpb__AlarmResponse *d = NULL;
            dr.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE;
            dr.memberid = list->alarms[i]->memberid;
            dr.alarm = list->alarms[i]->alarm;
            rc = ikclient_call(c, "/etcdserverpb.Maintenance/Alarm", &dr.base,
                               &etcdserverpb__alarm_response__descriptor, 0,
                               cmd_timeout(ctl), (ProtobufCMessage **)&d, &st);
            if (rc != 0) {
                rc = fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
                break;
            }
            /* move d's alarms over */
            Etcdserverpb__AlarmMember **v = realloc(
                all->alarms, (all->n_alarms + d->n_alarms + 1) * sizeof *v);
            if (v) {
                all->alarms = v;
                for (size_t j = 0; j < d->n_alarms; j++) {
                    Etcdserverpb__AlarmMember *a = malloc(sizeof *a);
                    if (a == NULL)
                        continue;
                    etcdserverpb__alarm_member__init(a);
                    a->memberid = d->alarms[j]->memberid;
                    a->alarm = d->alarms[j]->alarm;
                    all->alarms[all->n_alarms++] = a;
                }
            }
            protobuf_c_message_free_unpacked(&d->base, NULL);
            rc = 0;
        }
        protobuf_c_message_free_unpacked(&list->base, NULL);
        if (rc == 0)
            rc = print_alarms(ctl, all);
        for (size_t i = 0; i < all->n_alarms; i++)
            free(all->alarms[i]);
        free(all->alarms);
        free(all);
        return rc;
    }
    rc = print_alarms(ctl, resp);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int print_alarms(struct ctl *ctl,
                        const Etcdserverpb__AlarmResponse *resp)
{
    FILE *o = ctl->out;
    int rc;
    rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        /* %+v of *pb.AlarmMember: its proto text String() */
        for (size_t i = 0; i < resp->n_alarms; i++) {
            const Etcdserverpb__AlarmMember *a = resp->alarms[i];
            const char *nm = alarm_name(a->alarm);
            if (a->memberid)
                fprintf(o, "memberID:%" PRIu64 " ", a->memberid);
            if (a->alarm != 0) {
                if (nm)
                    fprintf(o, "alarm:%s ", nm);
                else
                    fprintf(o, "alarm:%d ", (int)a->alarm);
            }
            fputc('\n', o);
        }
        break;
    case CTL_OUT_FIELDS:
        rc = ctl_cluster_fields_header(ctl, resp->header);
        if (rc)
            break;
        for (size_t i = 0; i < resp->n_alarms; i++) {
            const Etcdserverpb__AlarmMember *a = resp->alarms[i];
            const char *nm = alarm_name(a->alarm);
            fprintf(o, "\"MemberID\" : %" PRIu64 "\n", a->memberid);
            if (nm)
                fprintf(o, "\"AlarmType\" : %s\n\n", nm);
            else
                fprintf(o, "\"AlarmType\" : %d\n\n", (int)a->alarm);
        }
        break;
    default:
        rc = print_rpc(ctl, &resp->base);
        break;
    }
    fflush(o);
    return rc;
}

static int alarm_list(struct ctl *ctl, int argc, char **argv)
{
    return alarm_cmd(ctl, argc, argv, false);
}
static int alarm_disarm(struct ctl *ctl, int argc, char **argv)
{
    return alarm_cmd(ctl, argc, argv, true);
}

/* ------------------------------------------------------------ move-leader */

static int move_leader(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    uint64_t target, leader_id = 0;
    char err[256];
    struct ikclient *c;
    size_t leader_ep = SIZE_MAX;
    Etcdserverpb__MoveLeaderRequest req =
        ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
    Etcdserverpb__MoveLeaderResponse *resp = NULL;
    struct ikclient_status st;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "move-leader command needs 1 argument");
    if (ctl_cluster_parse_uint64(argv[0], 16, &target, err, sizeof err) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "%s", err);
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    for (size_t i = 0; i < ikclient_endpoint_count(c); i++) {
        Etcdserverpb__StatusResponse *s = NULL;
        rc = ikclient_status(c, i, &s, &st);
        if (rc != 0)
            return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
        if (s->header && s->header->member_id == s->leader) {
            leader_ep = i;
            leader_id = s->leader;
        }
        protobuf_c_message_free_unpacked(&s->base, NULL);
        if (leader_ep != SIZE_MAX)
            break;
    }
    if (leader_ep == SIZE_MAX) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (m == NULL)
            return CTL_EXIT_ERROR;
        for (size_t i = 0; i < ctl->g.n_endpoints; i++)
            fprintf(m, "%s%s", i ? " " : "", ctl->g.endpoints[i]);
        fclose(m);
        rc = ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                      "no leader endpoint given at [%s]", buf);
        free(buf);
        return rc;
    }
    req.targetid = target;
    rc = ikclient_call_endpoint(
        c, leader_ep, "/etcdserverpb.Maintenance/MoveLeader", &req.base,
        &etcdserverpb__move_leader_response__descriptor, cmd_timeout(ctl),
        (ProtobufCMessage **)&resp, &st);
    if (rc != 0)
        return fail_call(ctl, CTL_EXIT_ERROR, rc, &st);
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        fprintf(ctl->out,
                "Leadership transferred from %" PRIx64 " to %" PRIx64 "\n",
                leader_id, target);
        fflush(ctl->out);
        rc = 0;
    } else {
        rc = print_rpc(ctl, &resp->base);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static const struct ctl_flag_doc member_add_docs[] = {
    {"learner", 0, "bool", "false",
     "add the member as a learner that does not vote"},
    {"peer-urls", 0, "string", "",
     "peer URLs of the new member, comma separated"},
    {0}};

static const struct ctl_flag_doc member_update_docs[] = {
    {"peer-urls", 0, "string", "",
     "the member's new peer URLs, comma separated"},
    {0}};

static const struct ctl_flag_doc hashkv_docs[] = {
    {"rev", 0, "int64", "0", "hash the history up to this revision (0: all)"},
    {0}};

static const struct ctl_flag_doc defrag_docs[] = {
    {"cluster", 0, "bool", "false",
     "defragment every member found in the member list"},
    {"data-dir", 0, "string", "",
     "defragment the backend in this directory of a stopped member"},
    {0}};

const struct ctl_command ctl_cluster_commands[] = {
    {.name = "member add",
     .run = member_add,
     .usage = "add <memberName> [options]",
     .summary = "Register a new member with the cluster",
     .flags = member_add_docs},
    {.name = "member remove",
     .run = member_remove,
     .usage = "remove <memberID>",
     .summary = "Take a member out of the cluster"},
    {.name = "member update",
     .run = member_update,
     .usage = "update <memberID> [options]",
     .summary = "Change the peer URLs of a member",
     .flags = member_update_docs},
    {.name = "member list",
     .run = member_list,
     .usage = "list",
     .summary = "Show the members of the cluster"},
    {.name = "member promote",
     .run = member_promote,
     .usage = "promote <memberID>",
     .summary = "Make a learner a voting member"},
    {.name = "endpoint health",
     .run = endpoint_health,
     .usage = "health",
     .summary = "Tell whether each endpoint can serve a request"},
    {.name = "endpoint status",
     .run = endpoint_status,
     .usage = "status",
     .summary = "Show version, size, leader and raft position of each "
                "endpoint"},
    {.name = "endpoint hashkv",
     .run = endpoint_hashkv,
     .usage = "hashkv",
     .summary = "Show a hash of each endpoint's key history",
     .flags = hashkv_docs},
    {.name = "defrag",
     .run = defrag,
     .usage = "defrag",
     .summary = "Give the free space in the endpoints' storage back",
     .flags = defrag_docs},
    {.name = "alarm disarm",
     .run = alarm_disarm,
     .usage = "disarm",
     .summary = "Clear every raised alarm"},
    {.name = "alarm list",
     .run = alarm_list,
     .usage = "list",
     .summary = "Show the raised alarms"},
    {.name = "move-leader",
     .run = move_leader,
     .usage = "move-leader <transferee-member-id>",
     .summary = "Hand the leadership over to another member"},
    {0}};
