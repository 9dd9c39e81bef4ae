/* ctl.c: the ikadactl framework (see client/ctl.h). */
#include "client/ctl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <strings.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <wctype.h>

#include "server/errors.h"

/* ------------------------------------------------------------ buffers */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_grow(struct sbuf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        fputs("ikadactl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    b->p = p;
    b->cap = cap;
}

static void sb_add(struct sbuf *b, const void *data, size_t n)
{
    sb_grow(b, n);
    if (n > 0) /* @data may be NULL when empty */
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

__attribute__((format(printf, 2, 3))) static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static char *sb_take(struct sbuf *b)
{
    if (b->p == NULL)
        sb_grow(b, 0), b->p[0] = '\0';
    return b->p;
}

/* ------------------------------------------------------------ UTF-8 */

/* Decode one rune at @s (len @n); returns its length, or 0 when the bytes
 * are not valid UTF-8 (Go's RuneError, width 1). */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *r)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *r = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *r = v;
    return len;
}

static locale_t utf8_locale(void)
{
    static locale_t loc;
    static bool tried;
    if (!tried) {
        tried = true;
        loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    }
    return loc;
}

/* Go's strconv.IsPrint, approximated with the C library's tables. */
static bool go_isprint(uint32_t r)
{
    if (r < 0x80)
        return r >= 0x20 && r < 0x7F;
    if (r < 0xA1 || r == 0xAD)
        return false;
    locale_t loc = utf8_locale();
    if (loc == (locale_t)0)
        return true;
    return iswprint_l((wint_t)r, loc) != 0;
}

char *ctl_go_quote(const uint8_t *s, size_t n)
{
    struct sbuf b = {0};
    sb_putc(&b, '"');
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t w = utf8_decode(s + i, n - i, &r);
        if (w == 0) {
            sb_printf(&b, "\\x%02x", s[i]);
            i++;
            continue;
        }
        i += w;
        if (r == '"' || r == '\\') {
            sb_putc(&b, '\\');
            sb_putc(&b, (char)r);
        } else if (go_isprint(r)) {
            sb_add(&b, s + i - w, w);
        } else {
            switch (r) {
            case '\a':
                sb_puts(&b, "\\a");
                break;
            case '\b':
                sb_puts(&b, "\\b");
                break;
            case '\f':
                sb_puts(&b, "\\f");
                break;
            case '\n':
                sb_puts(&b, "\\n");
                break;
            case '\r':
                sb_puts(&b, "\\r");
                break;
            case '\t':
                sb_puts(&b, "\\t");
                break;
            case '\v':
                sb_puts(&b, "\\v");
                break;
            default:
                if (r < 0x20 || r == 0x7F)
                    sb_printf(&b, "\\x%02x", (unsigned)r);
                else if (r < 0x10000)
                    sb_printf(&b, "\\u%04x", (unsigned)r);
                else
                    sb_printf(&b, "\\U%08x", (unsigned)r);
            }
        }
    }
    sb_putc(&b, '"');
    return sb_take(&b);
}

static void json_quote_into(struct sbuf *b, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
                c != '&') {
                sb_putc(b, (char)c);
            } else if (c == '"' || c == '\\') {
                sb_putc(b, '\\');
                sb_putc(b, (char)c);
            } else if (c == '\n') {
                sb_puts(b, "\\n");
            } else if (c == '\r') {
                sb_puts(b, "\\r");
            } else if (c == '\t') {
                sb_puts(b, "\\t");
            } else {
                sb_puts(b, "\\u00");
                sb_putc(b, hex[c >> 4]);
                sb_putc(b, hex[c & 15]);
            }
            i++;
            continue;
        }
        uint32_t r;
        size_t w = utf8_decode(s + i, n - i, &r);
        if (w == 0) {
            sb_puts(b, "\\ufffd");
            i++;
            continue;
        }
        if (r == 0x2028 || r == 0x2029)
            sb_printf(b, "\\u%04x", (unsigned)r);
        else
            sb_add(b, s + i, w);
        i += w;
    }
    sb_putc(b, '"');
}

char *ctl_json_quote(const uint8_t *data, size_t len)
{
    struct sbuf b = {0};
    json_quote_into(&b, data, len);
    return sb_take(&b);
}

static void base64_into(struct sbuf *b, const uint8_t *s, size_t n)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    sb_grow(b, (n + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v =
            ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63],
                     tbl[v & 63]};
        sb_add(b, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
        sb_add(b, q, 4);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63],
                     '='};
        sb_add(b, q, 4);
    }
}

/* ------------------------------------------------------------ JSON */

/* Go's name of a oneof field of @desc (gogo: CamelCase of the oneof). */
static const char *oneof_go_name(const ProtobufCMessageDescriptor *desc)
{
    const char *n = desc->name;
    if (strcmp(n, "RequestOp") == 0)
        return "Request";
    if (strcmp(n, "Compare") == 0)
        return "TargetUnion";
    if (strcmp(n, "WatchRequest") == 0)
        return "RequestUnion";
    return "Response";
}

static void camel_into(struct sbuf *b, const char *name)
{
    bool up = true;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        sb_putc(b, up ? (char)toupper((unsigned char)*p) : *p);
        up = false;
    }
}

static void json_message(struct sbuf *b, const ProtobufCMessage *msg);

/* Appends the value at @p (one element) of field @f; false if it is the
 * zero value (for omitempty) and @omit_zero. */
static bool json_value(struct sbuf *b, const ProtobufCFieldDescriptor *f,
                       const void *p, bool omit_zero)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%" PRId32, v);
        return true;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint32_t v = *(const uint32_t *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%" PRIu32, v);
        return true;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v = *(const int64_t *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%" PRId64, v);
        return true;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = *(const uint64_t *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%" PRIu64, v);
        return true;
    }
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean v = *(const protobuf_c_boolean *)p;
        if (!v && omit_zero)
            return false;
        sb_puts(b, v ? "true" : "false");
        return true;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float v = *(const float *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%g", (double)v);
        return true;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = *(const double *)p;
        if (v == 0 && omit_zero)
            return false;
        sb_printf(b, "%g", v);
        return true;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        if ((s == NULL || *s == '\0') && omit_zero)
            return false;
        json_quote_into(b, (const uint8_t *)(s ? s : ""), s ? strlen(s) : 0);
        return true;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *d = p;
        if (d->len == 0 && omit_zero)
            return false;
        if (d->data == NULL && !omit_zero) {
            sb_puts(b, "null");
            return true;
        }
        sb_putc(b, '"');
        base64_into(b, d->data, d->len);
        sb_putc(b, '"');
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m == NULL) {
            if (omit_zero)
                return false;
            sb_puts(b, "null");
            return true;
        }
        json_message(b, m);
        return true;
    }
    }
    return false;
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_FLOAT:
        return 4;
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static void json_message(struct sbuf *b, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    bool first = true;
    sb_putc(b, '{');
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t c = *(const uint32_t *)(base + f->quantifier_offset);
            if (c != f->id)
                continue;
            if (!first)
                sb_putc(b, ',');
            first = false;
            sb_printf(b, "\"%s\":{\"", oneof_go_name(d));
            camel_into(b, f->name);
            sb_puts(b, "\":");
            json_value(b, f, base + f->offset, false);
            sb_putc(b, '}');
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0)
                continue;
            if (!first)
                sb_putc(b, ',');
            first = false;
            sb_printf(b, "\"%s\":[", f->name);
            const char *arr = *(char *const *)(base + f->offset);
            size_t sz = field_size(f);
            for (size_t j = 0; j < n; j++) {
                if (j)
                    sb_putc(b, ',');
                json_value(b, f, arr + j * sz, false);
            }
            sb_putc(b, ']');
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
            f->type != PROTOBUF_C_TYPE_MESSAGE &&
            f->type != PROTOBUF_C_TYPE_STRING) {
            if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                continue;
        }
        size_t mark = b->len;
        if (!first)
            sb_putc(b, ',');
        sb_printf(b, "\"%s\":", f->name);
        if (json_value(b, f, base + f->offset, true)) {
            first = false;
        } else {
            b->len = mark;
            b->p[mark] = '\0';
        }
    }
    sb_putc(b, '}');
}

char *ctl_json_string(const ProtobufCMessage *msg)
{
    struct sbuf b = {0};
    json_message(&b, msg);
    return sb_take(&b);
}

void ctl_print_json(struct ctl *ctl, const ProtobufCMessage *msg)
{
    char *s = ctl_json_string(msg);
    fputs(s, ctl->out);
    fputc('\n', ctl->out);
    free(s);
}

void ctl_print_protobuf(struct ctl *ctl, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return;
    protobuf_c_message_pack(msg, buf);
    fwrite(buf, 1, n, ctl->out);
    free(buf);
}

void ctl_print_bytes(struct ctl *ctl, const uint8_t *data, size_t len)
{
    if (!ctl->g.hex) {
        if (len > 0) /* an empty key or value may have NULL data */
            fwrite(data, 1, len, ctl->out);
        return;
    }
    for (size_t i = 0; i < len; i++)
        fprintf(ctl->out, "\\x%02x", data[i]);
}

void ctl_print_kv(struct ctl *ctl, bool value_only, const Mvccpb__KeyValue *kv)
{
    if (!value_only) {
        ctl_print_bytes(ctl, kv->key.data, kv->key.len);
        fputc('\n', ctl->out);
    }
    ctl_print_bytes(ctl, kv->value.data, kv->value.len);
    fputc('\n', ctl->out);
}

void ctl_print_header_fields(struct ctl *ctl,
                             const Etcdserverpb__ResponseHeader *h)
{
    fprintf(ctl->out,
            "\"ClusterID\" : %" PRIu64 "\n\"MemberID\" : %" PRIu64
            "\n\"Revision\" : %" PRId64 "\n\"RaftTerm\" : %" PRIu64 "\n",
            h ? h->cluster_id : 0, h ? h->member_id : 0, h ? h->revision : 0,
            h ? h->raft_term : 0);
}

void ctl_print_kv_fields(struct ctl *ctl, const char *pfx,
                         const Mvccpb__KeyValue *kv)
{
    char *k = ctl_go_quote(kv->key.data, kv->key.len);
    char *v = ctl_go_quote(kv->value.data, kv->value.len);
    fprintf(ctl->out,
            "\"%sKey\" : %s\n\"%sCreateRevision\" : %" PRId64
            "\n\"%sModRevision\" : %" PRId64 "\n\"%sVersion\" : %" PRId64
            "\n\"%sValue\" : %s\n\"%sLease\" : %" PRId64 "\n",
            pfx, k, pfx, kv->create_revision, pfx, kv->mod_revision, pfx,
            kv->version, pfx, v, pfx, kv->lease);
    free(k);
    free(v);
}

/* ------------------------------------------------------------ tables */

struct ctl_table {
    size_t n_cols, n_rows;
    char **cells; /* (n_rows + 1) * n_cols, row 0 = headers */
};

struct ctl_table *ctl_table_new(size_t n_cols, const char *const *headers)
{
    struct ctl_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->n_cols = n_cols;
    t->cells = calloc(n_cols, sizeof(char *));
    for (size_t i = 0; i < n_cols; i++) {
        /* tablewriter's Title(): upper case, '_' and '.' as spaces */
        char *h = strdup(headers[i]);
        for (char *p = h; p && *p; p++) {
            if (*p == '_' || *p == '.')
                *p = ' ';
            else
                *p = (char)toupper((unsigned char)*p);
        }
        t->cells[i] = h;
    }
    return t;
}

void ctl_table_row(struct ctl_table *t, const char *const *cells)
{
    if (t == NULL)
        return;
    char **c = realloc(t->cells, (t->n_rows + 2) * t->n_cols * sizeof(char *));
    if (c == NULL)
        return;
    t->cells = c;
    t->n_rows++;
    for (size_t i = 0; i < t->n_cols; i++)
        t->cells[t->n_rows * t->n_cols + i] = strdup(cells[i] ? cells[i] : "");
}

static size_t disp_width(const char *s)
{
    size_t w = 0, n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t k = utf8_decode((const uint8_t *)s + i, n - i, &r);
        if (k == 0)
            k = 1;
        i += k;
        w++;
    }
    return w;
}

static void pad(FILE *f, size_t n)
{
    while (n--)
        fputc(' ', f);
}

void ctl_table_print(struct ctl *ctl, struct ctl_table *t)
{
    if (t == NULL)
        return;
    size_t nc = t->n_cols;
    size_t *w = calloc(nc, sizeof(size_t));
    for (size_t r = 0; r <= t->n_rows; r++)
        for (size_t c = 0; c < nc; c++) {
            size_t x = disp_width(t->cells[r * nc + c]);
            if (x > w[c])
                w[c] = x;
        }
    FILE *o = ctl->out;
    /* border, centred headers, border, right-aligned rows, border */
    for (int part = 0; part < 4; part++) {
        if (part == 1) {
            fputc('|', o);
            for (size_t c = 0; c < nc; c++) {
                const char *h = t->cells[c];
                size_t hw = disp_width(h), total = w[c] + 2;
                size_t left = (total - hw) / 2;
                pad(o, left);
                fputs(h, o);
                pad(o, total - hw - left);
                fputc('|', o);
            }
            fputc('\n', o);
            continue;
        }
        if (part == 3) {
            for (size_t r = 1; r <= t->n_rows; r++) {
                fputc('|', o);
                for (size_t c = 0; c < nc; c++) {
                    const char *s = t->cells[r * nc + c];
                    fputc(' ', o);
                    pad(o, w[c] - disp_width(s));
                    fputs(s, o);
                    fputs(" |", o);
                }
                fputc('\n', o);
            }
        }
        fputc('+', o);
        for (size_t c = 0; c < nc; c++) {
            for (size_t k = 0; k < w[c] + 2; k++)
                fputc('-', o);
            fputc('+', o);
        }
        fputc('\n', o);
    }
    for (size_t i = 0; i < (t->n_rows + 1) * nc; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
    free(w);
}

/* ------------------------------------------------------------ Go parsers */

static bool go_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Go strconv.ParseUint core: 0 ok, 1 syntax, 2 range. */
static int go_parse_uint(const char *s0, int base, uint64_t *out)
{
    const char *s = s0;
    bool base0 = base == 0;
    if (*s == '\0')
        return 1;
    if (base == 0) {
        base = 10;
        if (s[0] == '0') {
            if (s[1] == 'x' || s[1] == 'X')
                base = 16, s += 2;
            else if (s[1] == 'o' || s[1] == 'O')
                base = 8, s += 2;
            else if (s[1] == 'b' || s[1] == 'B')
                base = 2, s += 2;
            else
                base = 8, s += 1;
            if (*s == '\0' && base != 8)
                return 1;
        }
    }
    uint64_t v = 0;
    bool range = false, under_ok = base0, saw_digit = false;
    char last = '_';
    if (base0 && s > s0 && s[-1] != '0')
        last = '_';
    for (; *s; s++) {
        char c = *s;
        int d;
        if (c == '_' && under_ok) {
            if (last == '_' && saw_digit)
                return 1;
            last = '_';
            continue;
        }
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'Z')
            d = c - 'A' + 10;
        else
            return 1;
        if (d >= base)
            return 1;
        saw_digit = true;
        last = c;
        if (!range) {
            if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
                range = true;
            else
                v = v * (uint64_t)base + (uint64_t)d;
        }
    }
    if (base0 && last == '_' && strchr(s0, '_'))
        return 1;
    *out = range ? UINT64_MAX : v;
    return range ? 2 : 0;
}

int ctl_parse_go_int(const char *s, int base, int64_t *out, char *err,
                     size_t err_size)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p == '-', p++;
    uint64_t u = 0;
    int rc = go_parse_uint(p, base, &u);
    if (rc == 0) {
        if (!neg && u > (uint64_t)INT64_MAX)
            rc = 2;
        else if (neg && u > (uint64_t)INT64_MAX + 1)
            rc = 2;
    }
    if (rc != 0) {
        char *q = ctl_go_quote((const uint8_t *)s, strlen(s));
        snprintf(err, err_size, "strconv.ParseInt: parsing %s: %s", q,
                 rc == 1 ? "invalid syntax" : "value out of range");
        free(q);
        return -1;
    }
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* Go time.ParseDuration, into milliseconds (negative clamps to 0). */
static int go_parse_duration(const char *orig, uint64_t *out_ms, char *err,
                             size_t err_size)
{
    const char *s = orig;
    char *q = ctl_go_quote((const uint8_t *)orig, strlen(orig));
    bool neg = false;
    double total = 0; /* ns */
    if (*s == '-' || *s == '+')
        neg = *s == '-', s++;
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        free(q);
        return 0;
    }
    if (*s == '\0')
        goto invalid;
    while (*s) {
        if (!(*s == '.' || (*s >= '0' && *s <= '9')))
            goto invalid;
        const char *numstart = s;
        double v = 0;
        bool pre = false, post = false;
        while (*s >= '0' && *s <= '9')
            v = v * 10 + (*s++ - '0'), pre = true;
        if (*s == '.') {
            s++;
            double scale = 0.1;
            while (*s >= '0' && *s <= '9')
                v += (*s++ - '0') * scale, scale /= 10, post = true;
        }
        (void)numstart;
        if (!pre && !post)
            goto invalid;
        const char *u = s;
        while (*s && *s != '.' && !(*s >= '0' && *s <= '9'))
            s++;
        size_t ul = (size_t)(s - u);
        if (ul == 0) {
            snprintf(err, err_size, "time: missing unit in duration %s", q);
            free(q);
            return -1;
        }
        static const struct {
            const char *n;
            double ns;
        } units[] = {{"ns", 1},          {"us", 1e3},  {"\xc2\xb5s", 1e3},
                     {"\xce\xbcs", 1e3}, {"ms", 1e6},  {"s", 1e9},
                     {"m", 60e9},        {"h", 3600e9}};
        double mul = -1;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strlen(units[i].n) == ul && memcmp(units[i].n, u, ul) == 0)
                mul = units[i].ns;
        if (mul < 0) {
            char *uq = ctl_go_quote((const uint8_t *)u, ul);
            snprintf(err, err_size, "time: unknown unit %s in duration %s", uq,
                     q);
            free(uq);
            free(q);
            return -1;
        }
        total += v * mul;
    }
    free(q);
    *out_ms = neg ? 0 : (uint64_t)(total / 1e6);
    return 0;
invalid:
    snprintf(err, err_size, "time: invalid duration %s", q);
    free(q);
    return -1;
}

/* ------------------------------------------------------------ flags */

static const char *g_endpoints_default[] = {"127.0.0.1:2379"};

/* Global flags; their values live in ctl->g (offsets). */
enum gkind { G_BOOL, G_STR, G_DUR, G_EPS };
struct gflag {
    const char *name;
    char short_name;
    enum gkind kind;
    size_t off;
};
#define GOFF(f) offsetof(struct ctl_global, f)
static const struct gflag g_flags[] = {
    {"cacert", 0, G_STR, GOFF(cacert)},
    {"cert", 0, G_STR, GOFF(cert)},
    {"command-timeout", 0, G_DUR, GOFF(command_timeout_ms)},
    {"debug", 0, G_BOOL, GOFF(debug)},
    {"dial-timeout", 0, G_DUR, GOFF(dial_timeout_ms)},
    {"discovery-srv", 'd', G_STR, GOFF(discovery_srv)},
    {"discovery-srv-name", 0, G_STR, GOFF(discovery_srv_name)},
    {"endpoints", 0, G_EPS, GOFF(endpoints)},
    {"hex", 0, G_BOOL, GOFF(hex)},
    {"insecure-discovery", 0, G_BOOL, GOFF(insecure_discovery)},
    {"insecure-skip-tls-verify", 0, G_BOOL, GOFF(insecure_skip_tls_verify)},
    {"insecure-transport", 0, G_BOOL, GOFF(insecure_transport)},
    {"keepalive-time", 0, G_DUR, GOFF(keepalive_time_ms)},
    {"keepalive-timeout", 0, G_DUR, GOFF(keepalive_timeout_ms)},
    {"key", 0, G_STR, GOFF(key)},
    {"password", 0, G_STR, GOFF(password)},
    {"user", 0, G_STR, GOFF(user)},
    {"write-out", 'w', G_STR, GOFF(write_out_name)},
};
#define N_GFLAGS (sizeof(g_flags) / sizeof(g_flags[0]))

void ctl_global_defaults(struct ctl_global *g)
{
    memset(g, 0, sizeof(*g));
    g->endpoints = (char **)g_endpoints_default;
    g->n_endpoints = 1;
    g->dial_timeout_ms = 2000;
    g->command_timeout_ms = 5000;
    g->keepalive_time_ms = 2000;
    g->keepalive_timeout_ms = 6000;
    g->write_out = CTL_OUT_SIMPLE;
    g->write_out_name = "simple";
    g->insecure_transport = true;
    g->insecure_discovery = true;
    g->user = g->password = g->cacert = g->cert = g->key = "";
    g->discovery_srv = g->discovery_srv_name = "";
}

static int split_strings(const char *val, char ***out, size_t *n)
{
    /* pflag's string slices are CSV: split on ',' (quotes are rare) */
    size_t cnt = 1;
    for (const char *p = val; *p; p++)
        cnt += *p == ',';
    char **v = calloc(cnt, sizeof(char *));
    size_t i = 0;
    const char *s = val;
    if (v == NULL)
        return -1;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        v[i] = strndup(s, l);
        if (v[i] == NULL) {
            while (i > 0)
                free(v[--i]);
            free(v);
            return -1;
        }
        i++;
        if (!e)
            break;
        s = e + 1;
    }
    if (*val == '\0') {
        free(v[0]);
        i = 0;
    }
    *out = v;
    *n = i;
    return 0;
}

/* Sets a global flag from a string; 0 or -1 with @err. */
static int gflag_set(struct ctl *ctl, const struct gflag *gf, const char *val,
                     char *err, size_t esz)
{
    char *base = (char *)&ctl->g;
    switch (gf->kind) {
    case G_BOOL: {
        bool b;
        if (!go_parse_bool(val, &b)) {
            char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
            snprintf(err, esz, "strconv.ParseBool: parsing %s: invalid syntax",
                     q);
            free(q);
            return -1;
        }
        *(bool *)(base + gf->off) = b;
        return 0;
    }
    case G_STR:
        *(const char **)(base + gf->off) = val;
        return 0;
    case G_DUR:
        return go_parse_duration(val, (uint64_t *)(base + gf->off), err, esz);
    case G_EPS: {
        char **v;
        size_t n;
        if (split_strings(val, &v, &n) != 0) {
            snprintf(err, esz, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            /* etcdctl trims spaces around each endpoint */
            char *p = v[i];
            while (*p == ' ' || *p == '\t')
                p++;
            memmove(v[i], p, strlen(p) + 1);
            size_t l = strlen(v[i]);
            while (l && (v[i][l - 1] == ' ' || v[i][l - 1] == '\t'))
                v[i][--l] = '\0';
        }
        if (ctl->g_set & (1ull << (gf - g_flags))) {
            /* pflag: a string slice given again appends */
            char **nv = realloc(v, (ctl->g.n_endpoints + n + 1) * sizeof(*nv));
            if (nv == NULL) {
                snprintf(err, esz, "out of memory");
                return -1;
            }
            memmove(nv + ctl->g.n_endpoints, nv, n * sizeof(*nv));
            memcpy(nv, ctl->g.endpoints, ctl->g.n_endpoints * sizeof(*nv));
            free(ctl->g.endpoints); /* the strings moved to nv */
            v = nv;
            n += ctl->g.n_endpoints;
        }
        ctl->g.endpoints = v;
        ctl->g.n_endpoints = n;
        return 0;
    }
    }
    return 0;
}

static int local_set(const struct ctl_flag *f, const char *val, char *err,
                     size_t esz, bool *strings_reset)
{
    switch (f->kind) {
    case CTL_FLAG_BOOL: {
        bool b;
        if (!go_parse_bool(val, &b)) {
            char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
            snprintf(err, esz, "strconv.ParseBool: parsing %s: invalid syntax",
                     q);
            free(q);
            return -1;
        }
        *(bool *)f->value = b;
        return 0;
    }
    case CTL_FLAG_STRING:
        *(const char **)f->value = val;
        return 0;
    case CTL_FLAG_INT64:
        return ctl_parse_go_int(val, 0, (int64_t *)f->value, err, esz);
    case CTL_FLAG_UINT64: {
        uint64_t u;
        int rc = go_parse_uint(val, 0, &u);
        if (rc) {
            char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
            snprintf(err, esz, "strconv.ParseUint: parsing %s: %s", q,
                     rc == 1 ? "invalid syntax" : "value out of range");
            free(q);
            return -1;
        }
        *(uint64_t *)f->value = u;
        return 0;
    }
    case CTL_FLAG_DURATION:
        return go_parse_duration(val, (uint64_t *)f->value, err, esz);
    case CTL_FLAG_STRINGS: {
        struct ctl_strings *s = f->value;
        char **v;
        size_t n;
        if (split_strings(val, &v, &n) != 0) {
            snprintf(err, esz, "out of memory");
            return -1;
        }
        if (!*strings_reset) {
            s->v = NULL;
            s->n = 0;
            *strings_reset = true;
        }
        char **nv = realloc(s->v, (s->n + n + 1) * sizeof(char *));
        if (nv == NULL) {
            while (n > 0)
                free(v[--n]);
            free(v);
            snprintf(err, esz, "out of memory");
            return -1;
        }
        memcpy(nv + s->n, v, n * sizeof(char *));
        s->v = nv;
        s->n += n;
        free(v);
        return 0;
    }
    }
    return 0;
}

/* Prints a flag error the way cobra does (error, usage, error again). */
static int flag_error(struct ctl *ctl, const char *msg)
{
    fprintf(ctl->err, "Error: %s\n", msg);
    fflush(ctl->err);
    ctl_print_usage(ctl);
    fflush(ctl->out);
    fprintf(ctl->err, "\nError: %s\n", msg);
    return CTL_EXIT_ERROR;
}

void ctl_print_usage(struct ctl *ctl)
{
    const char *name = ctl->cmd ? ctl->cmd->name : ctl->cmd_name;
    ctl_help_write(ctl->out, name ? name : "", true);
}

/* Set the flag named on the command line to @val: --help/-h (@is_help,
 * stored in *@help), the command's own flag @lf (its strings reset state in
 * *@reset) or global flag @gf. Returns 0, or -1 with pflag's reason in
 * @err. */
static int set_flag_value(struct ctl *ctl, const char *val, bool is_help,
                          bool *help, const struct ctl_flag *lf, bool *reset,
                          const struct gflag *gf, char *err, size_t esz)
{
    int r;
    if (is_help) {
        bool b;
        r = go_parse_bool(val, &b) ? 0 : -1;
        if (r == 0)
            *help = b;
        else {
            char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
            snprintf(err, esz, "strconv.ParseBool: parsing %s: invalid syntax",
                     q);
            free(q);
        }
    } else if (lf) {
        r = local_set(lf, val, err, esz, reset);
        if (r == 0 && lf->set)
            *lf->set = true;
    } else {
        r = gflag_set(ctl, gf, val, err, esz);
        if (r == 0)
            ctl->g_set |= 1ull << (gf - g_flags);
    }
    return r;
}

int ctl_parse_flags(struct ctl *ctl, int argc, char **argv,
                    const struct ctl_flag *flags, int *nargs)
{
    int np = 0;
    bool help = false;
    char err[600], msg[1200];
    size_t nlocal = 0;
    while (flags && flags[nlocal].name)
        nlocal++;
    bool *reset = calloc(nlocal + 1, sizeof(bool));
    char **pos = calloc((size_t)argc + 1, sizeof(char *));
    int rc = -1;
    int i = 0;
    while (i < argc) {
        char *s = argv[i++];
        if (s[0] != '-' || s[1] == '\0') {
            pos[np++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            while (i < argc)
                pos[np++] = argv[i++];
            break;
        }
        if (s[1] == '-') {
            const char *name = s + 2;
            const char *eq = strchr(name, '=');
            size_t nl = eq ? (size_t)(eq - name) : strlen(name);
            if (nl == 0 || name[0] == '-' || name[0] == '=') {
                snprintf(msg, sizeof(msg), "bad flag syntax: %s", s);
                rc = flag_error(ctl, msg);
                goto out;
            }
            const struct ctl_flag *lf = NULL;
            const struct gflag *gf = NULL;
            size_t li = 0;
            for (li = 0; li < nlocal; li++)
                if (strlen(flags[li].name) == nl &&
                    memcmp(flags[li].name, name, nl) == 0) {
                    lf = &flags[li];
                    break;
                }
            if (!lf)
                for (size_t k = 0; k < N_GFLAGS; k++)
                    if (strlen(g_flags[k].name) == nl &&
                        memcmp(g_flags[k].name, name, nl) == 0)
                        gf = &g_flags[k];
            bool is_help =
                !lf && !gf && nl == 4 && memcmp(name, "help", 4) == 0;
            if (!lf && !gf && !is_help) {
                snprintf(msg, sizeof(msg), "unknown flag: --%.*s", (int)nl,
                         name);
                rc = flag_error(ctl, msg);
                goto out;
            }
            bool isbool = is_help || (lf && lf->kind == CTL_FLAG_BOOL) ||
                          (gf && gf->kind == G_BOOL);
            const char *val;
            if (eq)
                val = eq + 1;
            else if (isbool)
                val = "true";
            else if (i < argc)
                val = argv[i++];
            else {
                snprintf(msg, sizeof(msg), "flag needs an argument: %s", s);
                rc = flag_error(ctl, msg);
                goto out;
            }
            int r = set_flag_value(ctl, val, is_help, &help, lf, &reset[li], gf,
                                   err, sizeof(err));
            char sh = is_help ? 'h' : lf ? lf->short_name : gf->short_name;
            if (r != 0) {
                char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
                if (sh)
                    snprintf(msg, sizeof(msg),
                             "invalid argument %s for \"-%c, --%.*s\" flag: %s",
                             q, sh, (int)nl, name, err);
                else
                    snprintf(msg, sizeof(msg),
                             "invalid argument %s for \"--%.*s\" flag: %s", q,
                             (int)nl, name, err);
                free(q);
                rc = flag_error(ctl, msg);
                goto out;
            }
            continue;
        }
        /* shorthand(s) */
        const char *sh = s + 1;
        while (*sh) {
            char c = *sh;
            const struct ctl_flag *lf = NULL;
            const struct gflag *gf = NULL;
            size_t li;
            for (li = 0; li < nlocal; li++)
                if (flags[li].short_name == c) {
                    lf = &flags[li];
                    break;
                }
            if (!lf)
                for (size_t k = 0; k < N_GFLAGS; k++)
                    if (g_flags[k].short_name == c)
                        gf = &g_flags[k];
            bool is_help = !lf && !gf && c == 'h';
            if (!lf && !gf && !is_help) {
                snprintf(msg, sizeof(msg),
                         "unknown shorthand flag: '%c' in -%s", c, sh);
                rc = flag_error(ctl, msg);
                goto out;
            }
            bool isbool = is_help || (lf && lf->kind == CTL_FLAG_BOOL) ||
                          (gf && gf->kind == G_BOOL);
            const char *val;
            const char *rest = sh;
            if (strlen(sh) > 2 && sh[1] == '=') {
                val = sh + 2;
                sh += strlen(sh);
            } else if (isbool) {
                val = "true";
                sh++;
            } else if (strlen(sh) > 1) {
                val = sh + 1;
                sh += strlen(sh);
            } else if (i < argc) {
                val = argv[i++];
                sh++;
            } else {
                snprintf(msg, sizeof(msg),
                         "flag needs an argument: '%c' in -%s", c, rest);
                rc = flag_error(ctl, msg);
                goto out;
            }
            int r = set_flag_value(ctl, val, is_help, &help, lf, &reset[li], gf,
                                   err, sizeof(err));
            const char *lname = is_help ? "help" : lf ? lf->name : gf->name;
            if (r != 0) {
                char *q = ctl_go_quote((const uint8_t *)val, strlen(val));
                snprintf(msg, sizeof(msg),
                         "invalid argument %s for \"-%c, --%s\" flag: %s", q, c,
                         lname, err);
                free(q);
                rc = flag_error(ctl, msg);
                goto out;
            }
        }
    }
    if (help) {
        ctl_print_usage(ctl);
        rc = CTL_EXIT_SUCCESS;
        goto out;
    }
    for (int k = 0; k < np; k++)
        argv[k] = pos[k];
    *nargs = np;
out:
    free(pos);
    free(reset);
    return rc;
}

/* ------------------------------------------------------------ client */

static char g_uuid[40];

static const char *client_uuid(void)
{
    if (g_uuid[0])
        return g_uuid;
    uint8_t r[16];
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (uint8_t)rand();
    }
    if (fd >= 0)
        close(fd);
    r[6] = (r[6] & 0x0F) | 0x40;
    r[8] = (r[8] & 0x3F) | 0x80;
    snprintf(
        g_uuid, sizeof(g_uuid),
        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
        r[11], r[12], r[13], r[14], r[15]);
    return g_uuid;
}

static int gflag_index(const char *name)
{
    for (size_t k = 0; k < N_GFLAGS; k++)
        if (strcmp(g_flags[k].name, name) == 0)
            return (int)k;
    return -1;
}

/* ETCDCTL_<FLAG> for the global flags not given on the command line
 * (once; each one applied is remembered in ctl->g_env). */
static void apply_env(struct ctl *ctl)
{
    char key[64], err[256];
    if (ctl->env_applied)
        return;
    ctl->env_applied = true;
    for (size_t k = 0; k < N_GFLAGS; k++) {
        if (ctl->g_set & (1ull << k))
            continue;
        snprintf(key, sizeof(key), "ETCDCTL_%s", g_flags[k].name);
        for (char *p = key; *p; p++)
            *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        const char *v = getenv(key);
        if (v == NULL || *v == '\0')
            continue;
        if (gflag_set(ctl, &g_flags[k], v, err, sizeof(err)) == 0)
            ctl->g_env |= 1ull << k;
    }
}

bool ctl_global_given(struct ctl *ctl, const char *name)
{
    int k = gflag_index(name);
    apply_env(ctl);
    return k >= 0 && ((ctl->g_set | ctl->g_env) & (1ull << k)) != 0;
}

int ctl_resolve_write_out(struct ctl *ctl)
{
    apply_env(ctl);
    const char *w = ctl->g.write_out_name ? ctl->g.write_out_name : "simple";
    if (strcmp(w, "simple") == 0)
        ctl->g.write_out = CTL_OUT_SIMPLE;
    else if (strcmp(w, "json") == 0)
        ctl->g.write_out = CTL_OUT_JSON;
    else if (strcmp(w, "protobuf") == 0)
        ctl->g.write_out = CTL_OUT_PROTOBUF;
    else if (strcmp(w, "fields") == 0)
        ctl->g.write_out = CTL_OUT_FIELDS;
    else if (strcmp(w, "table") == 0)
        ctl->g.write_out = CTL_OUT_TABLE;
    else
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE, "unsupported output format");
    return -1;
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* etcdctl's checks of --cert/--key/--cacert (keyAndCertFromCmd), then the
 * refusal of anything that would make etcdctl use TLS: ikadactl (and
 * ikclient) only speak plain HTTP/2, and silently connecting in clear when
 * TLS was asked for would be wrong. Returns -1 or the exit code. */
static int check_tls(struct ctl *ctl)
{
    static const char *const names[] = {"cert", "key", "cacert"};
    const char *vals[] = {ctl->g.cert, ctl->g.key, ctl->g.cacert};
    bool tls = false;
    const char *why = NULL;
    for (size_t i = 0; i < 3; i++) {
        bool given =
            (ctl->g_set | ctl->g_env) & (1ull << gflag_index(names[i]));
        if (given && (vals[i] == NULL || *vals[i] == '\0'))
            return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                            "empty string is passed to --%s option", names[i]);
    }
    for (size_t i = 0; i < 3 && !tls; i++)
        if (vals[i] && *vals[i]) {
            tls = true;
            why = names[i];
        }
    if (!tls && !ctl->g.insecure_transport) {
        tls = true;
        why = "insecure-transport=false";
    }
    if (!tls && !ctl->g.insecure_discovery && ctl->g.discovery_srv &&
        *ctl->g.discovery_srv) {
        tls = true;
        why = "discovery-srv";
    }
    for (size_t i = 0; i < ctl->g.n_endpoints && !tls; i++)
        if (has_prefix_ci(ctl->g.endpoints[i], "https://") ||
            has_prefix_ci(ctl->g.endpoints[i], "unixs://")) {
            tls = true;
            why = NULL;
        }
    if (!tls)
        return -1;
    if (why)
        return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                        "TLS is not supported by ikadactl (--%s given); use "
                        "a plain http:// endpoint",
                        why);
    return ctl_fail(ctl, CTL_EXIT_BAD_FEATURE,
                    "TLS is not supported by ikadactl (https:// endpoint "
                    "given); use a plain http:// endpoint");
}

/* Runs /bin/stty with @arg on our stdin/stdout/stderr, as etcdctl's
 * password prompt (speakeasy) does; 0 or an errno from the spawn. */
static int run_stty(const char *arg)
{
    pid_t pid;
    char *argv[] = {(char *)"stty", (char *)arg, NULL};
    extern char **environ;
    int rc = posix_spawn(&pid, "/bin/stty", NULL, NULL, argv, environ);
    if (rc != 0)
        return rc;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return 0;
}

/* etcdctl's "Password: " prompt (speakeasy.Ask): prompt on stdout, echo
 * off, one line read from stdin byte by byte, spaces trimmed, newline on
 * stdout. Returns -1 with *out malloc'ed, or the exit code. */
static int ask_password(struct ctl *ctl, char **out)
{
    fputs("Password: ", ctl->out);
    fflush(ctl->out);
    int rc = run_stty("-echo");
    if (rc != 0) {
        char m[256];
        snprintf(m, sizeof(m), "%s", strerror(rc));
        m[0] = (char)tolower((unsigned char)m[0]);
        fputc('\n', ctl->out);
        return ctl_fail(ctl, CTL_EXIT_ERROR,
                        "failed turning off console echo for password "
                        "entry:\n\tfork/exec /bin/stty: %s",
                        m);
    }
    struct sbuf b = {0};
    int rerr = 0;
    for (;;) {
        char ch;
        ssize_t n = read(0, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rerr = errno;
            break;
        }
        if (n == 0 || ch == '\n')
            break;
        sb_putc(&b, ch);
    }
    run_stty("echo");
    fputc('\n', ctl->out);
    fflush(ctl->out);
    if (rerr) {
        free(b.p);
        char m[256];
        snprintf(m, sizeof(m), "%s", strerror(rerr));
        m[0] = (char)tolower((unsigned char)m[0]);
        return ctl_fail(ctl, CTL_EXIT_ERROR,
                        "failed during password entry: read /dev/stdin: %s", m);
    }
    char *p = sb_take(&b);
    size_t len = strlen(p);
    while (len && isspace((unsigned char)p[len - 1]))
        p[--len] = '\0';
    size_t lead = 0;
    while (p[lead] && isspace((unsigned char)p[lead]))
        lead++;
    memmove(p, p + lead, len - lead + 1);
    *out = p;
    return -1;
}

/* etcdctl's authCfgFromCmd: --user name[:password] / --password, or the
 * prompt. Resolved once into ctl->auth_user / ctl->auth_password. */
static int resolve_auth(struct ctl *ctl)
{
    if (ctl->auth_resolved)
        return -1;
    ctl->auth_resolved = true;
    const char *u = ctl->g.user ? ctl->g.user : "";
    const char *pw = ctl->g.password ? ctl->g.password : "";
    if (*u == '\0')
        return -1;
    if (*pw != '\0') {
        ctl->auth_user = strdup(u);
        ctl->auth_password = strdup(pw);
        return -1;
    }
    const char *colon = strchr(u, ':');
    if (colon) {
        ctl->auth_user = strndup(u, (size_t)(colon - u));
        ctl->auth_password = strdup(colon + 1);
        return -1;
    }
    ctl->auth_user = strdup(u);
    return ask_password(ctl, &ctl->auth_password);
}

int ctl_prepare(struct ctl *ctl)
{
    int rc;
    if (ctl->prepared)
        return -1;
    apply_env(ctl);
    if ((rc = check_tls(ctl)) >= 0)
        return rc;
    if ((rc = resolve_auth(ctl)) >= 0)
        return rc;
    if ((rc = ctl_resolve_write_out(ctl)) >= 0)
        return rc;
    ctl->prepared = true;
    return -1;
}

void ctl_client_config(struct ctl *ctl, struct ikclient_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->endpoints = (const char *const *)ctl->g.endpoints;
    cfg->n_endpoints = ctl->g.n_endpoints;
    cfg->dial_timeout_ms = ctl->g.dial_timeout_ms;
    cfg->request_timeout_ms = ctl->g.command_timeout_ms;
    cfg->user_agent = "etcdctl";
    /* clientv3 authenticates only when both are non-empty */
    if (ctl->auth_user && *ctl->auth_user && ctl->auth_password &&
        *ctl->auth_password) {
        cfg->user = ctl->auth_user;
        cfg->password = ctl->auth_password;
    }
}

/* The host part clientv3 puts in its target for endpoint @ep. */
static void endpoint_host(const char *ep, char *buf, size_t size)
{
    const char *p = strstr(ep, "://");
    p = p ? p + 3 : ep;
    size_t l = strcspn(p, "/");
    snprintf(buf, size, "%.*s", (int)l, p);
}

char *ctl_client_auth(struct ctl *ctl, struct ikclient *c)
{
    struct ikclient_config cfg;
    ctl_client_config(ctl, &cfg);
    if (cfg.user == NULL)
        return NULL;
    uint64_t dial = ctl->g.dial_timeout_ms ? ctl->g.dial_timeout_ms : 2000;
    uint64_t deadline = uv_hrtime() / 1000000u + dial;
    struct ikclient_status st = {0};
    int rc = IK_EGRPC;
    st.code = 4;
    snprintf(st.message, sizeof(st.message), "context deadline exceeded");
    /* clientv3's getToken: each endpoint in turn, within one dial
     * timeout; "authentication is not enabled" means go on without. */
    for (size_t i = 0; i < ikclient_endpoint_count(c); i++) {
        uint64_t now = uv_hrtime() / 1000000u;
        if (now >= deadline)
            break;
        rc = ikclient_authenticate(c, deadline - now, &st);
        if (rc == 0)
            break;
        if (rc != IK_EGRPC)
            break;
        ctl_print_grpc_warn_ep(ctl, &st, ikclient_endpoint(c, i));
        if (strcmp(st.message, "etcdserver: authentication is not enabled") ==
            0) {
            rc = 0;
            break;
        }
    }
    if (rc == 0)
        return NULL;
    char *e =
        strdup(rc == IK_EGRPC ? ctl_go_error_string(&st) : ik_strerror(rc));
    return e ? e : strdup("out of memory");
}

void ctl_stream_auth(struct ctl *ctl, struct ikclient *c, unsigned kind)
{
    if (c == NULL || (ctl->streams_opened & kind))
        return;
    ctl->streams_opened |= kind;
    free(ctl_client_auth(ctl, c));
}

int ctl_authenticate(struct ctl *ctl, struct ikclient *c)
{
    char *e = ctl_client_auth(ctl, c);
    if (e == NULL)
        return -1;
    ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "%s", e);
    free(e);
    return CTL_EXIT_BAD_CONNECTION;
}

struct ikclient *ctl_client(struct ctl *ctl)
{
    if (ctl->cli)
        return ctl->cli;
    int prc = ctl_prepare(ctl);
    if (prc >= 0) {
        fflush(ctl->out);
        exit(prc);
    }
    struct ikclient_config cfg;
    ctl_client_config(ctl, &cfg);
    char errmsg[512] = "";
    struct ikclient *c = NULL;
    int rc = ikclient_new(&cfg, &c, errmsg, sizeof(errmsg));
    if (rc != 0) {
        ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "%s",
                 errmsg[0] ? errmsg : ik_strerror(rc));
        return NULL;
    }
    if (ctl_authenticate(ctl, c) >= 0) {
        ikclient_free(c);
        return NULL;
    }
    ctl->cli = c;
    return c;
}

int ctl_fail(struct ctl *ctl, int code, const char *fmt, ...)
{
    fflush(ctl->out);
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", ctl->err);
    vfprintf(ctl->err, fmt, ap);
    fputc('\n', ctl->err);
    va_end(ap);
    fflush(ctl->err);
    return code;
}

static const char *grpc_code_name(int code)
{
    static char buf[32];
    const char *name = ikclient_code_name(code);
    if (name != NULL)
        return name;
    snprintf(buf, sizeof(buf), "Code(%d)", code);
    return buf;
}

static bool is_etcd_error(const char *m)
{
    return strncmp(m, "etcdserver: ", 12) == 0 ||
           strncmp(m, "etcdserver:", 11) == 0;
}

static char g_errstr[1200];

static const char *status_error_string(const struct ikclient_status *st)
{
    snprintf(g_errstr, sizeof(g_errstr), "rpc error: code = %s desc = %s",
             grpc_code_name(st->code), st->message);
    return g_errstr;
}

const char *ctl_go_error_string(const struct ikclient_status *st)
{
    if (is_etcd_error(st->message)) {
        snprintf(g_errstr, sizeof(g_errstr), "%s", st->message);
        return g_errstr;
    }
    if (st->code == 4)
        return "context deadline exceeded";
    if (st->code == 1)
        return "context canceled";
    if (st->code == 14)
        return "context deadline exceeded";
    return status_error_string(st);
}

void ctl_print_grpc_warn(struct ctl *ctl, const struct ikclient_status *st)
{
    ctl_print_grpc_warn_ep(ctl, st,
                           ctl->g.n_endpoints ? ctl->g.endpoints[0] : "");
}

void ctl_print_grpc_warn_ep(struct ctl *ctl, const struct ikclient_status *st,
                            const char *ep)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    struct ikclient_status s = *st;
    if (s.unreachable && s.code == 4) {
        /* grpc-go's balancer: no connection was ever ready */
        snprintf(s.message, sizeof(s.message),
                 "latest balancer error: all SubConns are in TransientFailure");
    } else if (s.code == 14 && !is_etcd_error(s.message)) {
        s.code = 4;
        snprintf(s.message, sizeof(s.message),
                 "latest balancer error: all SubConns are in TransientFailure");
    }
    const char *e = status_error_string(&s);
    struct sbuf b = {0};
    sb_printf(&b,
              "{\"level\":\"warn\",\"ts\":\"%s\",\"caller\":\"clientv3/"
              "retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker "
              "failed\",\"target\":",
              ts);
    char tgt[600], host[512] = "";
    if (ep != NULL)
        endpoint_host(ep, host, sizeof(host));
    snprintf(tgt, sizeof(tgt), "endpoint://client-%s/%s", client_uuid(), host);
    json_quote_into(&b, (const uint8_t *)tgt, strlen(tgt));
    sb_puts(&b, ",\"attempt\":0,\"error\":");
    json_quote_into(&b, (const uint8_t *)e, strlen(e));
    sb_puts(&b, "}\n");
    fputs(b.p, ctl->err);
    free(b.p);
}

int ctl_fail_status(struct ctl *ctl, int rc, const struct ikclient_status *st)
{
    if (rc == IK_EGRPC && st) {
        ctl_print_grpc_warn(ctl, st);
        return ctl_fail(ctl, CTL_EXIT_ERROR, "%s", ctl_go_error_string(st));
    }
    return ctl_fail(ctl, CTL_EXIT_ERROR, "%s", ik_strerror(rc));
}
