/*
 * config: etcd 3.4's command line and ETCD_* environment (see config.h).
 *
 * The file has four parts:
 *  1. value parsers that accept and reject exactly what Go's strconv,
 *     time.ParseDuration and net/url (as etcd uses them) accept and reject,
 *     with the same error text, so a bad value gets etcd's message;
 *  2. the table of every flag etcd 3.4 defines, with its type, its default
 *     and whether ikada uses it, merely tolerates it or refuses it;
 *  3. the parse itself: the command line by Go's flag rules, then the
 *     environment, then conversion into struct config and etcd's checks in
 *     etcd's order (the first failing check decides the message);
 *  4. bootstrap checks, --help/--version text and small public helpers.
 */
#include "server/config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

bool (*config_fail_alloc_hook)(void) = NULL;

/* ------------------------------------------------------------------ */
/* Memory and text helpers                                             */
/* ------------------------------------------------------------------ */

static void *cmalloc(size_t n)
{
    if (config_fail_alloc_hook != NULL && config_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(n == 0 ? 1 : n);
}

static void *crealloc(void *p, size_t n)
{
    if (config_fail_alloc_hook != NULL && config_fail_alloc_hook()) {
        return NULL;
    }
    return realloc(p, n == 0 ? 1 : n);
}

static char *cstrndup(const char *s, size_t n)
{
    char *d = cmalloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *cstrdup(const char *s)
{
    return cstrndup(s, strlen(s));
}

/* Replace *@slot with a copy of @s. */
static int set_str(char **slot, const char *s)
{
    char *d = cstrdup(s);
    if (d == NULL) {
        return IK_ENOMEM;
    }
    free(*slot);
    *slot = d;
    return 0;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int to_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* Bounded message writer: appends, truncating at the buffer's end. */
struct mbuf {
    char *p;
    size_t cap;
    size_t len;
};

static void mb_init(struct mbuf *m, char *buf, size_t cap)
{
    m->p = buf;
    m->cap = cap;
    m->len = 0;
    buf[0] = '\0';
}

static void mb_putn(struct mbuf *m, const char *s, size_t n)
{
    while (n > 0 && m->len + 1 < m->cap) {
        m->p[m->len++] = *s++;
        n--;
    }
    m->p[m->len] = '\0';
}

static void mb_puts(struct mbuf *m, const char *s)
{
    mb_putn(m, s, strlen(s));
}

static void mb_printf(struct mbuf *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mb_printf(struct mbuf *m, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (m->len + 1 >= m->cap) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    m->len += (size_t)n;
    if (m->len >= m->cap) {
        m->len = m->cap - 1;
    }
}

/* Go's %q for a byte string: double quotes, backslash escapes for quotes,
 * backslashes and control bytes; other bytes as they are. */
static void mb_quoten(struct mbuf *m, const char *s, size_t n)
{
    size_t i;
    mb_putn(m, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            mb_puts(m, "\\\"");
            break;
        case '\\':
            mb_puts(m, "\\\\");
            break;
        case '\a':
            mb_puts(m, "\\a");
            break;
        case '\b':
            mb_puts(m, "\\b");
            break;
        case '\f':
            mb_puts(m, "\\f");
            break;
        case '\n':
            mb_puts(m, "\\n");
            break;
        case '\r':
            mb_puts(m, "\\r");
            break;
        case '\t':
            mb_puts(m, "\\t");
            break;
        case '\v':
            mb_puts(m, "\\v");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                mb_printf(m, "\\x%02x", c);
            } else {
                mb_putn(m, (const char *)&s[i], 1);
            }
        }
    }
    mb_putn(m, "\"", 1);
}

static void mb_quote(struct mbuf *m, const char *s)
{
    mb_quoten(m, s, strlen(s));
}

/* Go's %q of a []string: ["a" "b"]. */
static void mb_quote_list(struct mbuf *m, char *const *v, size_t n)
{
    size_t i;
    mb_puts(m, "[");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            mb_puts(m, " ");
        }
        mb_quote(m, v[i]);
    }
    mb_puts(m, "]");
}

/* A growable array of strings. */
struct strv {
    char **v;
    size_t n;
};

static int strv_push(struct strv *sv, const char *s, size_t len)
{
    char **nv;
    char *d = cstrndup(s, len);
    if (d == NULL) {
        return IK_ENOMEM;
    }
    nv = crealloc(sv->v, (sv->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        free(d);
        return IK_ENOMEM;
    }
    sv->v = nv;
    sv->v[sv->n++] = d;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Go's strings.TrimSpace for ASCII blanks. */
static void trim_space(const char **s, size_t *n)
{
    while (*n > 0 && ((*s)[0] == ' ' || ((*s)[0] >= '\t' && (*s)[0] <= '\r'))) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' ||
                      ((*s)[*n - 1] >= '\t' && (*s)[*n - 1] <= '\r'))) {
        (*n)--;
    }
}

/* ------------------------------------------------------------------ */
/* Part 1: Go-compatible value parsers                                 */
/* ------------------------------------------------------------------ */

enum { NUM_OK = 0, NUM_SYNTAX, NUM_RANGE };

/* strconv's rule for '_' digit separators (only with base prefix 0). */
static bool underscore_ok(const char *s)
{
    char saw = '^';
    size_t i = 0, n;
    bool hex = false;
    if (s[0] == '-' || s[0] == '+') {
        s++;
    }
    n = strlen(s);
    if (n >= 2 && s[0] == '0' &&
        (to_lower(s[1]) == 'b' || to_lower(s[1]) == 'o' ||
         to_lower(s[1]) == 'x')) {
        i = 2;
        saw = '0';
        hex = to_lower(s[1]) == 'x';
    }
    for (; i < n; i++) {
        int c = (unsigned char)s[i];
        if (is_digit(c) || (hex && to_lower(c) >= 'a' && to_lower(c) <= 'f')) {
            saw = '0';
            continue;
        }
        if (c == '_') {
            if (saw != '0') {
                return false;
            }
            saw = '_';
            continue;
        }
        if (saw == '_') {
            return false;
        }
        saw = '!';
    }
    return saw != '_';
}

/* strconv.ParseUint(s, base, bits) with base 0 (Go literal prefixes) or
 * 10. */
static int go_parse_uint(const char *s, int bits, int base, uint64_t *out)
{
    const char *s0 = s;
    uint64_t max = bits >= 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
    uint64_t n = 0, cutoff;
    bool base0 = base == 0, underscores = false;

    if (*s == '\0') {
        return NUM_SYNTAX;
    }
    if (base0) {
        size_t len = strlen(s);
        base = 10;
        if (s[0] == '0') {
            int c1 = len >= 3 ? to_lower(s[1]) : 0;
            if (c1 == 'b') {
                base = 2;
                s += 2;
            } else if (c1 == 'o') {
                base = 8;
                s += 2;
            } else if (c1 == 'x') {
                base = 16;
                s += 2;
            } else {
                base = 8;
                s += 1;
            }
        }
    }
    cutoff = UINT64_MAX / (uint64_t)base + 1;
    for (; *s != '\0'; s++) {
        int c = (unsigned char)*s, d;
        uint64_t n1;
        if (c == '_' && base0) {
            underscores = true;
            continue;
        }
        if (is_digit(c)) {
            d = c - '0';
        } else if (to_lower(c) >= 'a' && to_lower(c) <= 'z') {
            d = to_lower(c) - 'a' + 10;
        } else {
            return NUM_SYNTAX;
        }
        if (d >= base) {
            return NUM_SYNTAX;
        }
        if (n >= cutoff) {
            return NUM_RANGE;
        }
        n *= (uint64_t)base;
        n1 = n + (uint64_t)d;
        if (n1 < n || n1 > max) {
            return NUM_RANGE;
        }
        n = n1;
    }
    if (underscores && !underscore_ok(s0)) {
        return NUM_SYNTAX;
    }
    *out = n;
    return NUM_OK;
}

/* strconv.ParseInt(s, base, bits). */
static int go_parse_int(const char *s, int bits, int base, int64_t *out)
{
    bool neg = false;
    uint64_t un = 0, cutoff = (uint64_t)1 << (bits - 1);
    int rv;
    if (*s == '\0') {
        return NUM_SYNTAX;
    }
    if (*s == '+') {
        s++;
    } else if (*s == '-') {
        neg = true;
        s++;
    }
    rv = go_parse_uint(s, bits, base, &un);
    if (rv != NUM_OK) {
        return rv;
    }
    if ((!neg && un >= cutoff) || (neg && un > cutoff)) {
        return NUM_RANGE;
    }
    *out = neg ? (int64_t)(0 - un) : (int64_t)un;
    return NUM_OK;
}

/* strconv.ParseBool. */
static int go_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    size_t i;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return NUM_OK;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return NUM_OK;
        }
    }
    return NUM_SYNTAX;
}

#define DUR_LIMIT ((uint64_t)1 << 63)

/* time.ParseDuration: returns 0 and *out in nanoseconds, or -1 with the
 * Go error text in @why. */
static int go_parse_duration(const char *orig, int64_t *out, struct mbuf *why)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1ULL},           {"us", 1000ULL},
        {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000ULL}, /* U+03BC greek mu */
        {"ms", 1000000ULL},     {"s", 1000000000ULL},
        {"m", 60000000000ULL},  {"h", 3600000000000ULL},
    };
    const char *s = orig;
    uint64_t d = 0;
    bool neg = false;

    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    if (*s == '\0') {
        goto invalid;
    }
    while (*s != '\0') {
        uint64_t v = 0, f = 0, unit = 0;
        double scale = 1;
        const char *start, *u;
        bool pre, post = false, found = false, overflow = false;
        size_t i, ulen;

        if (!(*s == '.' || is_digit(*s))) {
            goto invalid;
        }
        start = s;
        for (; is_digit(*s); s++) {
            if (v > DUR_LIMIT / 10) {
                goto invalid;
            }
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > DUR_LIMIT) {
                goto invalid;
            }
        }
        pre = s != start;
        if (*s == '.') {
            s++;
            start = s;
            for (; is_digit(*s); s++) {
                uint64_t y;
                if (overflow) {
                    continue;
                }
                if (f > (DUR_LIMIT - 1) / 10) {
                    overflow = true;
                    continue;
                }
                y = f * 10 + (uint64_t)(*s - '0');
                if (y > DUR_LIMIT) {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10;
            }
            post = s != start;
        }
        if (!pre && !post) {
            goto invalid;
        }
        u = s;
        for (i = 0; u[i] != '\0' && u[i] != '.' && !is_digit(u[i]); i++) {
        }
        ulen = i;
        if (ulen == 0) {
            mb_puts(why, "time: missing unit in duration ");
            mb_quote(why, orig);
            return -1;
        }
        s += ulen;
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].name) == ulen &&
                memcmp(units[i].name, u, ulen) == 0) {
                unit = units[i].ns;
                found = true;
                break;
            }
        }
        if (!found) {
            mb_puts(why, "time: unknown unit ");
            mb_quoten(why, u, ulen);
            mb_puts(why, " in duration ");
            mb_quote(why, orig);
            return -1;
        }
        if (v > DUR_LIMIT / unit) {
            goto invalid;
        }
        v *= unit;
        if (f > 0) {
            v += (uint64_t)((double)f * ((double)unit / scale));
            if (v > DUR_LIMIT) {
                goto invalid;
            }
        }
        d += v;
        if (d > DUR_LIMIT) {
            goto invalid;
        }
    }
    if (neg) {
        *out = (int64_t)(0 - d);
        return 0;
    }
    if (d > DUR_LIMIT - 1) {
        goto invalid;
    }
    *out = (int64_t)d;
    return 0;
invalid:
    mb_puts(why, "time: invalid duration ");
    mb_quote(why, orig);
    return -1;
}

/* net.SplitHostPort: 0 and the host/port spans, or -1. */
static int split_host_port(const char *hp, size_t n, size_t *host_off,
                           size_t *host_len, size_t *port_off)
{
    size_t i, j = 0, k = 0, end = 0, x;
    bool found = false;
    for (x = n; x > 0; x--) {
        if (hp[x - 1] == ':') {
            i = x - 1;
            found = true;
            break;
        }
    }
    if (!found) {
        return -1;
    }
    if (n > 0 && hp[0] == '[') {
        const char *e = memchr(hp, ']', n);
        if (e == NULL) {
            return -1;
        }
        end = (size_t)(e - hp);
        if (end + 1 == n || end + 1 != i) {
            return -1;
        }
        *host_off = 1;
        *host_len = end - 1;
        j = 1;
        k = end + 1;
    } else {
        if (memchr(hp, ':', i) != NULL) {
            return -1;
        }
        *host_off = 0;
        *host_len = i;
    }
    if (memchr(hp + j, '[', n - j) != NULL) {
        return -1;
    }
    if (memchr(hp + k, ']', n - k) != NULL) {
        return -1;
    }
    *port_off = i + 1;
    return 0;
}

static bool valid_optional_port(const char *p, size_t n)
{
    size_t i;
    if (n == 0) {
        return true;
    }
    if (p[0] != ':') {
        return false;
    }
    for (i = 1; i < n; i++) {
        if (!is_digit(p[i])) {
            return false;
        }
    }
    return true;
}

/* Characters net/url accepts unescaped in a host. */
static bool host_char_ok(int c)
{
    if (c >= 0x80 || is_alpha(c) || is_digit(c)) {
        return true;
    }
    return strchr("-_.~!$&'()*+,;=:[]<>\"", c) != NULL && c != '\0';
}

/* What url_check() found. All malloc'ed when requested. */
struct urlparts {
    char *canon;  /* "<scheme>://<host:port>" */
    char *scheme; /* lower case */
    char *host;   /* from SplitHostPort, no brackets */
    char *port;   /* digits, may be "" */
};

static void urlparts_free(struct urlparts *u)
{
    free(u->canon);
    free(u->scheme);
    free(u->host);
    free(u->port);
    memset(u, 0, sizeof(*u));
}

/*
 * One URL as etcd's types.NewURLs checks it (url.Parse, then scheme, then
 * "host:port", then no path), plus ikada's own refusal of user info,
 * queries and fragments (etcd keeps them; nobody uses them). Returns 0
 * (and fills @out if not NULL), IK_EINVAL with Go's message in @why, or
 * IK_ENOMEM.
 */
static int url_check(const char *in, size_t n, struct urlparts *out,
                     struct mbuf *why)
{
    const char *s, *rest, *hash, *q, *auth = NULL;
    size_t i, nu, scheme_len = 0, rest_len, auth_len = 0, path_len = 0;
    size_t hoff = 0, hlen = 0, poff = 0;
    const char *hostport = "";
    size_t hostport_len = 0;
    bool has_scheme = false, has_user = false, has_query, has_frag;
    char scheme[8];

    trim_space(&in, &n);
    s = in;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            mb_puts(why, "parse ");
            mb_quoten(why, in, n);
            mb_puts(why, ": net/url: invalid control character in URL");
            return IK_EINVAL;
        }
    }
    hash = memchr(s, '#', n);
    has_frag = hash != NULL;
    nu = has_frag ? (size_t)(hash - s) : n;

    /* Scheme. */
    rest = s;
    rest_len = nu;
    for (i = 0; i < nu; i++) {
        int c = (unsigned char)s[i];
        if (is_alpha(c)) {
            continue;
        }
        if (is_digit(c) || c == '+' || c == '-' || c == '.') {
            if (i == 0) {
                break;
            }
            continue;
        }
        if (c == ':') {
            if (i == 0) {
                mb_puts(why, "parse ");
                mb_quoten(why, in, n);
                mb_puts(why, ": missing protocol scheme");
                return IK_EINVAL;
            }
            has_scheme = true;
            scheme_len = i;
            rest = s + i + 1;
            rest_len = nu - i - 1;
        }
        break;
    }

    /* Query. */
    q = memchr(rest, '?', rest_len);
    has_query = q != NULL;
    if (has_query) {
        rest_len = (size_t)(q - rest);
    }

    if (rest_len == 0 || rest[0] != '/') {
        if (has_scheme) {
            /* Opaque URL ("http:foo"): no host at all. */
            goto checks;
        }
        {
            const char *slash = memchr(rest, '/', rest_len);
            size_t seg = slash ? (size_t)(slash - rest) : rest_len;
            if (memchr(rest, ':', seg) != NULL) {
                mb_puts(why, "parse ");
                mb_quoten(why, in, n);
                mb_puts(why, ": first path segment in URL cannot contain "
                             "colon");
                return IK_EINVAL;
            }
        }
    }
    if (rest_len >= 2 && rest[0] == '/' && rest[1] == '/') {
        const char *slash, *at = NULL, *h, *colon_port = NULL;
        size_t hl, cpl = 0;
        auth = rest + 2;
        slash = memchr(auth, '/', rest_len - 2);
        auth_len = slash ? (size_t)(slash - auth) : rest_len - 2;
        path_len = rest_len - 2 - auth_len;
        for (i = auth_len; i > 0; i--) {
            if (auth[i - 1] == '@') {
                at = auth + i - 1;
                break;
            }
        }
        has_user = at != NULL;
        h = at ? at + 1 : auth;
        hl = auth_len - (size_t)(h - auth);
        hostport = h;
        hostport_len = hl;
        if (hl > 0 && h[0] == '[') {
            const char *e = NULL;
            for (i = hl; i > 0; i--) {
                if (h[i - 1] == ']') {
                    e = h + i - 1;
                    break;
                }
            }
            if (e == NULL) {
                mb_puts(why, "parse ");
                mb_quoten(why, in, n);
                mb_puts(why, ": missing ']' in host");
                return IK_EINVAL;
            }
            colon_port = e + 1;
            cpl = hl - (size_t)(colon_port - h);
        } else {
            for (i = hl; i > 0; i--) {
                if (h[i - 1] == ':') {
                    colon_port = h + i - 1;
                    cpl = hl - (i - 1);
                    break;
                }
            }
        }
        if (colon_port != NULL && !valid_optional_port(colon_port, cpl)) {
            mb_puts(why, "parse ");
            mb_quoten(why, in, n);
            mb_puts(why, ": invalid port ");
            mb_quoten(why, colon_port, cpl);
            mb_puts(why, " after host");
            return IK_EINVAL;
        }
        for (i = 0; i < hl; i++) {
            int c = (unsigned char)h[i];
            if (c == '%') {
                mb_puts(why, "parse ");
                mb_quoten(why, in, n);
                mb_puts(why, ": invalid URL escape ");
                mb_quoten(why, h + i, hl - i < 3 ? hl - i : 3);
                return IK_EINVAL;
            }
            if (!host_char_ok(c)) {
                mb_puts(why, "parse ");
                mb_quoten(why, in, n);
                mb_puts(why, ": invalid character ");
                mb_quoten(why, h + i, 1);
                mb_puts(why, " in host name");
                return IK_EINVAL;
            }
        }
    } else {
        path_len = rest_len;
    }

checks:
    if (scheme_len >= sizeof(scheme)) {
        scheme_len = 0; /* too long to be one of ours: rejected below */
    }
    for (i = 0; i < scheme_len; i++) {
        scheme[i] = (char)to_lower((unsigned char)s[i]);
    }
    scheme[scheme_len] = '\0';
    if (!has_scheme ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
         strcmp(scheme, "unix") != 0 && strcmp(scheme, "unixs") != 0)) {
        mb_puts(why, "URL scheme must be http, https, unix, or unixs: ");
        mb_putn(why, in, n);
        return IK_EINVAL;
    }
    if (split_host_port(hostport, hostport_len, &hoff, &hlen, &poff) != 0) {
        mb_puts(why, "URL address does not have the form \"host:port\": ");
        mb_putn(why, in, n);
        return IK_EINVAL;
    }
    if (path_len > 0) {
        mb_puts(why, "URL must not contain a path: ");
        mb_putn(why, in, n);
        return IK_EINVAL;
    }
    if (has_user || has_query || has_frag) {
        mb_puts(why, "URL must not contain user info, a query or a fragment: ");
        mb_putn(why, in, n);
        return IK_EINVAL;
    }
    (void)auth;
    if (out == NULL) {
        return 0;
    }
    memset(out, 0, sizeof(*out));
    out->scheme = cstrdup(scheme);
    out->host = cstrndup(hostport + hoff, hlen);
    out->port = cstrndup(hostport + poff, hostport_len - poff);
    out->canon = cmalloc(scheme_len + 3 + hostport_len + 1);
    if (out->scheme == NULL || out->host == NULL || out->port == NULL ||
        out->canon == NULL) {
        urlparts_free(out);
        return IK_ENOMEM;
    }
    memcpy(out->canon, scheme, scheme_len);
    memcpy(out->canon + scheme_len, "://", 3);
    memcpy(out->canon + scheme_len + 3, hostport, hostport_len);
    out->canon[scheme_len + 3 + hostport_len] = '\0';
    return 0;
}

/* Check every URL of a comma-separated list (types.NewURLs). */
static int url_list_check(const char *list, struct mbuf *why)
{
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        int rv = url_check(p, n, NULL, why);
        if (rv != 0) {
            return rv;
        }
        if (c == NULL) {
            return 0;
        }
        p = c + 1;
    }
}

/* ------------------------------------------------------------------ */
/* Part 2: the flag table                                              */
/* ------------------------------------------------------------------ */

enum ftype {
    T_STRING,
    T_BOOL,
    T_UINT,   /* Go uint: 64 bits, error "parse error"/"value out of range" */
    T_UINT32, /* etcd's uint32 flag: raw strconv error text */
    T_INT,    /* Go int/int64 */
    T_DURATION,
    T_URLS,    /* etcd's UniqueURLs; "" leaves the value unchanged */
    T_CORS,    /* UniqueURLs that also accepts "*" */
    T_STRINGS, /* comma-separated strings */
    T_SELECT,  /* one of fdef.choices */
    T_IGNORED, /* flags etcd dropped: boolean-like, warns when used */
};

enum fpolicy {
    P_USED,   /* ikada honours it */
    P_COMPAT, /* accepted and type-checked, no effect in ikada */
    P_REFUSE, /* ikada lacks the feature: error unless left at default */
};

enum fsection {
    S_MEMBER,
    S_CLUSTERING,
    S_SECURITY,
    S_AUTH,
    S_LOGGING,
    S_MONITORING,
    S_PROXY,
    S_EXPERIMENTAL,
    S_NONE,
};

struct fdef {
    const char *name;
    enum ftype type;
    enum fpolicy policy;
    enum fsection section;
    const char *def;      /* default in flag syntax */
    const char *help_def; /* default as --help shows it (NULL: def) */
    const char *choices;  /* T_SELECT: valid values, '|'-separated */
    const char *help;     /* one line of help (ikada's own words) */
};

enum fid {
    F_NAME, /* first: --help lists flags in this order */
    F_CONFIG_FILE,
    F_DATA_DIR,
    F_WAL_DIR,
    F_LISTEN_PEER_URLS,
    F_LISTEN_CLIENT_URLS,
    F_LISTEN_METRICS_URLS,
    F_MAX_SNAPSHOTS,
    F_MAX_WALS,
    F_SNAPSHOT_COUNT,
    F_HEARTBEAT_INTERVAL,
    F_ELECTION_TIMEOUT,
    F_INITIAL_ELECTION_TICK_ADVANCE,
    F_QUOTA_BACKEND_BYTES,
    F_BACKEND_BATCH_INTERVAL,
    F_BACKEND_BATCH_LIMIT,
    F_MAX_TXN_OPS,
    F_MAX_REQUEST_BYTES,
    F_GRPC_KEEPALIVE_MIN_TIME,
    F_GRPC_KEEPALIVE_INTERVAL,
    F_GRPC_KEEPALIVE_TIMEOUT,
    F_MAX_CONCURRENT_STREAMS,
    F_INITIAL_ADVERTISE_PEER_URLS,
    F_ADVERTISE_CLIENT_URLS,
    F_DISCOVERY,
    F_DISCOVERY_FALLBACK,
    F_DISCOVERY_PROXY,
    F_DISCOVERY_SRV,
    F_DISCOVERY_SRV_NAME,
    F_INITIAL_CLUSTER,
    F_INITIAL_CLUSTER_TOKEN,
    F_INITIAL_CLUSTER_STATE,
    F_STRICT_RECONFIG_CHECK,
    F_ENABLE_V2,
    F_PRE_VOTE,
    F_PROXY,
    F_PROXY_FAILURE_WAIT,
    F_PROXY_REFRESH_INTERVAL,
    F_PROXY_DIAL_TIMEOUT,
    F_PROXY_WRITE_TIMEOUT,
    F_PROXY_READ_TIMEOUT,
    F_CERT_FILE,
    F_KEY_FILE,
    F_CLIENT_CERT_AUTH,
    F_CLIENT_CRL_FILE,
    F_CLIENT_CERT_ALLOWED_HOSTNAME,
    F_TRUSTED_CA_FILE,
    F_AUTO_TLS,
    F_PEER_CERT_FILE,
    F_PEER_KEY_FILE,
    F_PEER_CLIENT_CERT_AUTH,
    F_PEER_TRUSTED_CA_FILE,
    F_PEER_AUTO_TLS,
    F_PEER_CRL_FILE,
    F_PEER_CERT_ALLOWED_CN,
    F_PEER_CERT_ALLOWED_HOSTNAME,
    F_CIPHER_SUITES,
    F_PEER_SKIP_SAN,
    F_CORS,
    F_HOST_WHITELIST,
    F_LOGGER,
    F_LOG_OUTPUT,
    F_LOG_OUTPUTS,
    F_DEBUG,
    F_LOG_LEVEL,
    F_LOG_PACKAGE_LEVELS,
    F_VERSION,
    F_AUTO_COMPACTION_RETENTION,
    F_AUTO_COMPACTION_MODE,
    F_ENABLE_PPROF,
    F_METRICS,
    F_AUTH_TOKEN,
    F_BCRYPT_COST,
    F_AUTH_TOKEN_TTL,
    F_ENABLE_GRPC_GATEWAY,
    F_X_INITIAL_CORRUPT_CHECK,
    F_X_CORRUPT_CHECK_TIME,
    F_X_ENABLE_V2V3,
    F_X_FREELIST_TYPE,
    F_X_LEASE_CHECKPOINT,
    F_X_LEASE_CHECKPOINT_PERSIST,
    F_X_COMPACTION_BATCH_LIMIT,
    F_X_WATCH_PROGRESS_NOTIFY_INTERVAL,
    F_X_WARNING_APPLY_DURATION,
    F_UNSAFE_NO_FSYNC,
    F_FORCE_NEW_CLUSTER,
    /* Flags etcd no longer supports but still swallows. */
    F_I_CLUSTER_ACTIVE_SIZE,
    F_I_CLUSTER_REMOVE_DELAY,
    F_I_CLUSTER_SYNC_INTERVAL,
    F_I_CONFIG,
    F_I_FORCE,
    F_I_MAX_RESULT_BUFFER,
    F_I_MAX_RETRY_ATTEMPTS,
    F_I_PEER_HEARTBEAT_INTERVAL,
    F_I_PEER_ELECTION_TIMEOUT,
    F_I_RETRY_INTERVAL,
    F_I_SNAPSHOT,
    F_I_V,
    F_I_VV,
    F_I_TEST_COVERPROFILE,
    F_I_TEST_OUTPUTDIR,
    F__COUNT
};

#define FLAG(id, nm, ty, po, se, df, hd, ch, he) \
    [id] = {nm, ty, po, se, df, hd, ch, he}
#define IGNORED(id, nm) \
    [id] = {nm, T_IGNORED, P_COMPAT, S_NONE, "", NULL, NULL, NULL}

static const struct fdef flag_defs[F__COUNT] = {
    FLAG(F_CONFIG_FILE, "config-file", T_STRING, P_REFUSE, S_NONE, "", NULL,
         NULL, NULL),
    FLAG(F_DATA_DIR, "data-dir", T_STRING, P_USED, S_MEMBER, "", "${name}.etcd",
         NULL, "Directory holding this member's data."),
    FLAG(F_WAL_DIR, "wal-dir", T_STRING, P_COMPAT, S_MEMBER, "", NULL, NULL,
         "Accepted for etcd compatibility; the raft log stays in the data "
         "directory."),
    FLAG(F_LISTEN_PEER_URLS, "listen-peer-urls", T_URLS, P_USED, S_MEMBER,
         "http://localhost:2380", NULL, NULL,
         "URLs to accept raft traffic from other members on."),
    FLAG(F_LISTEN_CLIENT_URLS, "listen-client-urls", T_URLS, P_USED, S_MEMBER,
         "http://localhost:2379", NULL, NULL,
         "URLs to accept client (gRPC) traffic on."),
    FLAG(F_LISTEN_METRICS_URLS, "listen-metrics-urls", T_URLS, P_USED,
         S_MONITORING, "", NULL, NULL,
         "Extra URLs serving only the metrics and health endpoints."),
    FLAG(F_MAX_SNAPSHOTS, "max-snapshots", T_UINT, P_COMPAT, S_MEMBER, "5",
         NULL, NULL, NULL),
    FLAG(F_MAX_WALS, "max-wals", T_UINT, P_COMPAT, S_MEMBER, "5", NULL, NULL,
         NULL),
    FLAG(F_NAME, "name", T_STRING, P_USED, S_MEMBER, "default", NULL, NULL,
         "This member's name, unique within the cluster."),
    FLAG(F_SNAPSHOT_COUNT, "snapshot-count", T_UINT, P_USED, S_MEMBER, "100000",
         NULL, NULL, "Applied entries between two raft snapshots."),
    FLAG(F_HEARTBEAT_INTERVAL, "heartbeat-interval", T_UINT, P_USED, S_MEMBER,
         "100", NULL, NULL, "Leader heartbeat period, in milliseconds."),
    FLAG(F_ELECTION_TIMEOUT, "election-timeout", T_UINT, P_USED, S_MEMBER,
         "1000", NULL, NULL,
         "Milliseconds without a leader before a follower campaigns "
         "(at least 5 heartbeats, at most 50000)."),
    FLAG(F_INITIAL_ELECTION_TICK_ADVANCE, "initial-election-tick-advance",
         T_BOOL, P_COMPAT, S_MEMBER, "true", NULL, NULL, NULL),
    FLAG(F_QUOTA_BACKEND_BYTES, "quota-backend-bytes", T_INT, P_USED, S_MEMBER,
         "0", NULL, NULL,
         "Store size that raises the NOSPACE alarm (0 means 2 GiB)."),
    FLAG(F_BACKEND_BATCH_INTERVAL, "backend-batch-interval", T_DURATION,
         P_COMPAT, S_MEMBER, "0s", "", NULL, NULL),
    FLAG(F_BACKEND_BATCH_LIMIT, "backend-batch-limit", T_INT, P_COMPAT,
         S_MEMBER, "0", NULL, NULL, NULL),
    FLAG(F_MAX_TXN_OPS, "max-txn-ops", T_UINT, P_USED, S_MEMBER, "128", NULL,
         NULL, "Most operations one transaction may hold."),
    FLAG(F_MAX_REQUEST_BYTES, "max-request-bytes", T_UINT, P_USED, S_MEMBER,
         "1572864", NULL, NULL, "Largest client request accepted, in bytes."),
    FLAG(F_GRPC_KEEPALIVE_MIN_TIME, "grpc-keepalive-min-time", T_DURATION,
         P_COMPAT, S_MEMBER, "5s", NULL, NULL, NULL),
    FLAG(F_GRPC_KEEPALIVE_INTERVAL, "grpc-keepalive-interval", T_DURATION,
         P_COMPAT, S_MEMBER, "2h", NULL, NULL, NULL),
    FLAG(F_GRPC_KEEPALIVE_TIMEOUT, "grpc-keepalive-timeout", T_DURATION,
         P_COMPAT, S_MEMBER, "20s", NULL, NULL, NULL),
    FLAG(F_MAX_CONCURRENT_STREAMS, "max-concurrent-streams", T_UINT32, P_COMPAT,
         S_MEMBER, "4294967295", NULL, NULL, NULL),
    FLAG(F_INITIAL_ADVERTISE_PEER_URLS, "initial-advertise-peer-urls", T_URLS,
         P_USED, S_CLUSTERING, "http://localhost:2380", NULL, NULL,
         "This member's peer URLs as the other members should reach it."),
    FLAG(F_ADVERTISE_CLIENT_URLS, "advertise-client-urls", T_URLS, P_USED,
         S_CLUSTERING, "http://localhost:2379", NULL, NULL,
         "This member's client URLs as clients should reach it."),
    FLAG(F_DISCOVERY, "discovery", T_STRING, P_REFUSE, S_CLUSTERING, "", NULL,
         NULL, NULL),
    FLAG(F_DISCOVERY_FALLBACK, "discovery-fallback", T_SELECT, P_COMPAT,
         S_CLUSTERING, "proxy", NULL, "proxy|exit", NULL),
    FLAG(F_DISCOVERY_PROXY, "discovery-proxy", T_STRING, P_REFUSE, S_CLUSTERING,
         "", NULL, NULL, NULL),
    FLAG(F_DISCOVERY_SRV, "discovery-srv", T_STRING, P_REFUSE, S_CLUSTERING, "",
         NULL, NULL, NULL),
    FLAG(F_DISCOVERY_SRV_NAME, "discovery-srv-name", T_STRING, P_REFUSE,
         S_CLUSTERING, "", NULL, NULL, NULL),
    FLAG(F_INITIAL_CLUSTER, "initial-cluster", T_STRING, P_USED, S_CLUSTERING,
         "default=http://localhost:2380", NULL, NULL,
         "Members to bootstrap with, as name=peerURL pairs separated by "
         "commas."),
    FLAG(F_INITIAL_CLUSTER_TOKEN, "initial-cluster-token", T_STRING, P_USED,
         S_CLUSTERING, "etcd-cluster", NULL, NULL,
         "Token mixed into the member and cluster IDs at bootstrap."),
    FLAG(F_INITIAL_CLUSTER_STATE, "initial-cluster-state", T_SELECT, P_USED,
         S_CLUSTERING, "new", NULL, "new|existing",
         "'new' to bootstrap a cluster, 'existing' to join one."),
    FLAG(F_STRICT_RECONFIG_CHECK, "strict-reconfig-check", T_BOOL, P_COMPAT,
         S_CLUSTERING, "true", NULL, NULL, NULL),
    FLAG(F_ENABLE_V2, "enable-v2", T_BOOL, P_USED, S_CLUSTERING, "false", NULL,
         NULL, "Accepted; ikada serves the v3 API only."),
    FLAG(F_PRE_VOTE, "pre-vote", T_BOOL, P_COMPAT, S_CLUSTERING, "false", NULL,
         NULL, NULL),
    FLAG(F_PROXY, "proxy", T_SELECT, P_REFUSE, S_PROXY, "off", NULL,
         "off|readonly|on", NULL),
    FLAG(F_PROXY_FAILURE_WAIT, "proxy-failure-wait", T_UINT, P_COMPAT, S_PROXY,
         "5000", NULL, NULL, NULL),
    FLAG(F_PROXY_REFRESH_INTERVAL, "proxy-refresh-interval", T_UINT, P_COMPAT,
         S_PROXY, "30000", NULL, NULL, NULL),
    FLAG(F_PROXY_DIAL_TIMEOUT, "proxy-dial-timeout", T_UINT, P_COMPAT, S_PROXY,
         "1000", NULL, NULL, NULL),
    FLAG(F_PROXY_WRITE_TIMEOUT, "proxy-write-timeout", T_UINT, P_COMPAT,
         S_PROXY, "5000", NULL, NULL, NULL),
    FLAG(F_PROXY_READ_TIMEOUT, "proxy-read-timeout", T_UINT, P_COMPAT, S_PROXY,
         "0", NULL, NULL, NULL),
    FLAG(F_CERT_FILE, "cert-file", T_STRING, P_REFUSE, S_SECURITY, "", NULL,
         NULL, NULL),
    FLAG(F_KEY_FILE, "key-file", T_STRING, P_REFUSE, S_SECURITY, "", NULL, NULL,
         NULL),
    FLAG(F_CLIENT_CERT_AUTH, "client-cert-auth", T_BOOL, P_REFUSE, S_SECURITY,
         "false", NULL, NULL, NULL),
    FLAG(F_CLIENT_CRL_FILE, "client-crl-file", T_STRING, P_REFUSE, S_SECURITY,
         "", NULL, NULL, NULL),
    FLAG(F_CLIENT_CERT_ALLOWED_HOSTNAME, "client-cert-allowed-hostname",
         T_STRING, P_REFUSE, S_SECURITY, "", NULL, NULL, NULL),
    FLAG(F_TRUSTED_CA_FILE, "trusted-ca-file", T_STRING, P_REFUSE, S_SECURITY,
         "", NULL, NULL, NULL),
    FLAG(F_AUTO_TLS, "auto-tls", T_BOOL, P_REFUSE, S_SECURITY, "false", NULL,
         NULL, NULL),
    FLAG(F_PEER_CERT_FILE, "peer-cert-file", T_STRING, P_REFUSE, S_SECURITY, "",
         NULL, NULL, NULL),
    FLAG(F_PEER_KEY_FILE, "peer-key-file", T_STRING, P_REFUSE, S_SECURITY, "",
         NULL, NULL, NULL),
    FLAG(F_PEER_CLIENT_CERT_AUTH, "peer-client-cert-auth", T_BOOL, P_REFUSE,
         S_SECURITY, "false", NULL, NULL, NULL),
    FLAG(F_PEER_TRUSTED_CA_FILE, "peer-trusted-ca-file", T_STRING, P_REFUSE,
         S_SECURITY, "", NULL, NULL, NULL),
    FLAG(F_PEER_AUTO_TLS, "peer-auto-tls", T_BOOL, P_REFUSE, S_SECURITY,
         "false", NULL, NULL, NULL),
    FLAG(F_PEER_CRL_FILE, "peer-crl-file", T_STRING, P_REFUSE, S_SECURITY, "",
         NULL, NULL, NULL),
    FLAG(F_PEER_CERT_ALLOWED_CN, "peer-cert-allowed-cn", T_STRING, P_REFUSE,
         S_SECURITY, "", NULL, NULL, NULL),
    FLAG(F_PEER_CERT_ALLOWED_HOSTNAME, "peer-cert-allowed-hostname", T_STRING,
         P_REFUSE, S_SECURITY, "", NULL, NULL, NULL),
    FLAG(F_CIPHER_SUITES, "cipher-suites", T_STRINGS, P_REFUSE, S_SECURITY, "",
         NULL, NULL, NULL),
    FLAG(F_PEER_SKIP_SAN, "experimental-peer-skip-client-san-verification",
         T_BOOL, P_REFUSE, S_SECURITY, "false", NULL, NULL, NULL),
    FLAG(F_CORS, "cors", T_CORS, P_COMPAT, S_SECURITY, "*", NULL, NULL, NULL),
    FLAG(F_HOST_WHITELIST, "host-whitelist", T_STRINGS, P_COMPAT, S_SECURITY,
         "*", NULL, NULL, NULL),
    FLAG(F_LOGGER, "logger", T_STRING, P_USED, S_LOGGING, "capnslog", NULL,
         NULL, "'capnslog' (etcd 3.4's default, plain lines) or 'zap' (JSON)."),
    FLAG(F_LOG_OUTPUT, "log-output", T_STRINGS, P_COMPAT, S_LOGGING, "default",
         NULL, NULL, NULL),
    FLAG(F_LOG_OUTPUTS, "log-outputs", T_STRINGS, P_USED, S_LOGGING, "default",
         NULL, NULL,
         "Where logs go: 'default', 'stderr', 'stdout' (or files with zap)."),
    FLAG(F_DEBUG, "debug", T_BOOL, P_USED, S_LOGGING, "false", NULL, NULL,
         "Deprecated in etcd: same as --log-level=debug."),
    FLAG(F_LOG_LEVEL, "log-level", T_STRING, P_USED, S_LOGGING, "info", NULL,
         NULL, "One of debug, info, warn, error, panic, fatal."),
    FLAG(F_LOG_PACKAGE_LEVELS, "log-package-levels", T_STRING, P_COMPAT,
         S_LOGGING, "", NULL, NULL, NULL),
    FLAG(F_VERSION, "version", T_BOOL, P_USED, S_NONE, "false", NULL, NULL,
         NULL),
    FLAG(F_AUTO_COMPACTION_RETENTION, "auto-compaction-retention", T_STRING,
         P_USED, S_CLUSTERING, "0", NULL, NULL,
         "History to keep: hours or a duration such as '30m' (periodic), "
         "revisions (revision); 0 disables."),
    FLAG(F_AUTO_COMPACTION_MODE, "auto-compaction-mode", T_STRING, P_USED,
         S_CLUSTERING, "periodic", NULL, NULL,
         "How to read --auto-compaction-retention: 'periodic' or "
         "'revision'."),
    FLAG(F_ENABLE_PPROF, "enable-pprof", T_BOOL, P_USED, S_MONITORING, "false",
         NULL, NULL, "Accepted; ikada has no Go profiler to expose."),
    FLAG(F_METRICS, "metrics", T_STRING, P_USED, S_MONITORING, "basic", NULL,
         NULL, "Metrics detail: 'basic' or 'extensive'."),
    FLAG(F_AUTH_TOKEN, "auth-token", T_STRING, P_COMPAT, S_AUTH, "simple", NULL,
         NULL, NULL),
    FLAG(F_BCRYPT_COST, "bcrypt-cost", T_UINT, P_COMPAT, S_AUTH, "10", NULL,
         NULL, NULL),
    FLAG(F_AUTH_TOKEN_TTL, "auth-token-ttl", T_UINT, P_COMPAT, S_AUTH, "300",
         NULL, NULL, NULL),
    FLAG(F_ENABLE_GRPC_GATEWAY, "enable-grpc-gateway", T_BOOL, P_COMPAT,
         S_MONITORING, "true", NULL, NULL, NULL),
    FLAG(F_X_INITIAL_CORRUPT_CHECK, "experimental-initial-corrupt-check",
         T_BOOL, P_COMPAT, S_EXPERIMENTAL, "false", NULL, NULL, NULL),
    FLAG(F_X_CORRUPT_CHECK_TIME, "experimental-corrupt-check-time", T_DURATION,
         P_COMPAT, S_EXPERIMENTAL, "0s", NULL, NULL, NULL),
    FLAG(F_X_ENABLE_V2V3, "experimental-enable-v2v3", T_STRING, P_COMPAT,
         S_EXPERIMENTAL, "", NULL, NULL, NULL),
    FLAG(F_X_FREELIST_TYPE, "experimental-backend-bbolt-freelist-type",
         T_STRING, P_COMPAT, S_EXPERIMENTAL, "array", NULL, NULL, NULL),
    FLAG(F_X_LEASE_CHECKPOINT, "experimental-enable-lease-checkpoint", T_BOOL,
         P_COMPAT, S_EXPERIMENTAL, "false", NULL, NULL, NULL),
    FLAG(F_X_LEASE_CHECKPOINT_PERSIST,
         "experimental-enable-lease-checkpoint-persist", T_BOOL, P_COMPAT,
         S_EXPERIMENTAL, "false", NULL, NULL, NULL),
    FLAG(F_X_COMPACTION_BATCH_LIMIT, "experimental-compaction-batch-limit",
         T_INT, P_COMPAT, S_EXPERIMENTAL, "1000", NULL, NULL, NULL),
    FLAG(F_X_WATCH_PROGRESS_NOTIFY_INTERVAL,
         "experimental-watch-progress-notify-interval", T_DURATION, P_COMPAT,
         S_EXPERIMENTAL, "10m", NULL, NULL, NULL),
    FLAG(F_X_WARNING_APPLY_DURATION, "experimental-warning-apply-duration",
         T_DURATION, P_COMPAT, S_EXPERIMENTAL, "100ms", NULL, NULL, NULL),
    FLAG(F_UNSAFE_NO_FSYNC, "unsafe-no-fsync", T_BOOL, P_COMPAT, S_EXPERIMENTAL,
         "false", NULL, NULL, NULL),
    FLAG(F_FORCE_NEW_CLUSTER, "force-new-cluster", T_BOOL, P_REFUSE,
         S_CLUSTERING, "false", NULL, NULL, NULL),
    IGNORED(F_I_CLUSTER_ACTIVE_SIZE, "cluster-active-size"),
    IGNORED(F_I_CLUSTER_REMOVE_DELAY, "cluster-remove-delay"),
    IGNORED(F_I_CLUSTER_SYNC_INTERVAL, "cluster-sync-interval"),
    IGNORED(F_I_CONFIG, "config"),
    IGNORED(F_I_FORCE, "force"),
    IGNORED(F_I_MAX_RESULT_BUFFER, "max-result-buffer"),
    IGNORED(F_I_MAX_RETRY_ATTEMPTS, "max-retry-attempts"),
    IGNORED(F_I_PEER_HEARTBEAT_INTERVAL, "peer-heartbeat-interval"),
    IGNORED(F_I_PEER_ELECTION_TIMEOUT, "peer-election-timeout"),
    IGNORED(F_I_RETRY_INTERVAL, "retry-interval"),
    IGNORED(F_I_SNAPSHOT, "snapshot"),
    IGNORED(F_I_V, "v"),
    IGNORED(F_I_VV, "vv"),
    IGNORED(F_I_TEST_COVERPROFILE, "test.coverprofile"),
    IGNORED(F_I_TEST_OUTPUTDIR, "test.outputdir"),
};

static int flag_lookup(const char *name, size_t len)
{
    int i;
    for (i = 0; i < F__COUNT; i++) {
        if (strlen(flag_defs[i].name) == len &&
            memcmp(flag_defs[i].name, name, len) == 0) {
            return i;
        }
    }
    return -1;
}

/* The ETCD_* variable of a flag: "ETCD_" + upper case, '-' and '.' kept
 * as etcd keeps them except '-' -> '_'. */
static void flag_env_name(const char *name, char *buf, size_t size)
{
    size_t i, j = 0;
    const char *prefix = "ETCD_";
    for (i = 0; prefix[i] != '\0' && j + 1 < size; i++) {
        buf[j++] = prefix[i];
    }
    for (i = 0; name[i] != '\0' && j + 1 < size; i++) {
        char c = name[i];
        if (c == '-') {
            c = '_';
        } else if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        buf[j++] = c;
    }
    buf[j] = '\0';
}

/* ------------------------------------------------------------------ */
/* Part 3: parsing                                                     */
/* ------------------------------------------------------------------ */

struct pstate {
    char *val[F__COUNT]; /* last value set; NULL = default */
    bool cli[F__COUNT];  /* set on the command line */
    bool set[F__COUNT];  /* set on the command line or by env */
};

static const char *pval(const struct pstate *ps, int id)
{
    return ps->val[id] != NULL ? ps->val[id] : flag_defs[id].def;
}

static bool pval_bool(const struct pstate *ps, int id)
{
    bool b = false;
    (void)go_parse_bool(pval(ps, id), &b);
    return b;
}

static uint64_t pval_uint(const struct pstate *ps, int id)
{
    uint64_t v = 0;
    (void)go_parse_uint(pval(ps, id), 64, 0, &v);
    return v;
}

static int64_t pval_int(const struct pstate *ps, int id)
{
    int64_t v = 0;
    (void)go_parse_int(pval(ps, id), 64, 0, &v);
    return v;
}

static int add_log(struct config *cfg, enum config_log_level level,
                   const char *pkg, const char *msg)
{
    struct config_log_entry *nl;
    char *d = cstrdup(msg);
    if (d == NULL) {
        return IK_ENOMEM;
    }
    nl = crealloc(cfg->logs, (cfg->n_logs + 1) * sizeof(*nl));
    if (nl == NULL) {
        free(d);
        return IK_ENOMEM;
    }
    cfg->logs = nl;
    cfg->logs[cfg->n_logs].level = level;
    cfg->logs[cfg->n_logs].pkg = pkg;
    cfg->logs[cfg->n_logs].msg = d;
    cfg->n_logs++;
    if (level == CONFIG_LOG_WARN) {
        struct strv sv = {cfg->warnings, cfg->n_warnings};
        int rv = strv_push(&sv, msg, strlen(msg));
        cfg->warnings = sv.v;
        cfg->n_warnings = sv.n;
        return rv;
    }
    return 0;
}

static int fail(struct config *cfg, char *errmsg, enum config_error_kind kind,
                const char *pkg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(struct config *cfg, char *errmsg, enum config_error_kind kind,
                const char *pkg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, IK_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    cfg->error_kind = kind;
    cfg->error_pkg = pkg;
    cfg->usage_on_error = kind == CONFIG_ERR_USAGE;
    cfg->exit_status =
        (kind == CONFIG_ERR_USAGE || kind == CONFIG_ERR_PANIC) ? 2 : 1;
    return IK_EINVAL;
}

/*
 * Set flag @id to @value as flag.Value.Set would. Returns 0, IK_ENOMEM, or
 * IK_EINVAL with the Value's error text (e.g. "parse error") in @why.
 */
static int flag_set(struct config *cfg, struct pstate *ps, int id,
                    const char *value, struct mbuf *why)
{
    const struct fdef *f = &flag_defs[id];
    const char *store = value;
    uint64_t u;
    int64_t i64;
    bool b;
    int rv;

    switch (f->type) {
    case T_STRING:
    case T_STRINGS:
        break;
    case T_BOOL:
        if (go_parse_bool(value, &b) != NUM_OK) {
            mb_puts(why, "parse error");
            return IK_EINVAL;
        }
        store = b ? "true" : "false";
        break;
    case T_UINT:
        rv = go_parse_uint(value, 64, 0, &u);
        if (rv != NUM_OK) {
            mb_puts(why,
                    rv == NUM_RANGE ? "value out of range" : "parse error");
            return IK_EINVAL;
        }
        break;
    case T_UINT32:
        rv = go_parse_uint(value, 32, 0, &u);
        if (rv != NUM_OK) {
            mb_puts(why, "strconv.ParseUint: parsing ");
            mb_quote(why, value);
            mb_puts(why, rv == NUM_RANGE ? ": value out of range"
                                         : ": invalid syntax");
            return IK_EINVAL;
        }
        break;
    case T_INT:
        rv = go_parse_int(value, 64, 0, &i64);
        if (rv != NUM_OK) {
            mb_puts(why,
                    rv == NUM_RANGE ? "value out of range" : "parse error");
            return IK_EINVAL;
        }
        break;
    case T_DURATION: {
        char tmp[IK_ERRMSG_SIZE];
        struct mbuf ignored;
        mb_init(&ignored, tmp, sizeof(tmp));
        if (go_parse_duration(value, &i64, &ignored) != 0) {
            mb_puts(why, "parse error");
            return IK_EINVAL;
        }
        break;
    }
    case T_URLS:
    case T_CORS:
        if (value[0] == '\0' ||
            (f->type == T_CORS && strcmp(value, "*") == 0)) {
            /* etcd's exceptions: accepted, the URL list is unchanged. */
            if (f->type == T_URLS) {
                ps->set[id] = true;
                return 0;
            }
            break;
        }
        rv = url_list_check(value, why);
        if (rv != 0) {
            return rv;
        }
        break;
    case T_SELECT: {
        const char *c = f->choices;
        size_t n = strlen(value);
        bool ok = false;
        while (c != NULL && *c != '\0') {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            if (len == n && memcmp(c, value, n) == 0) {
                ok = true;
                break;
            }
            c = bar ? bar + 1 : NULL;
        }
        if (!ok) {
            mb_puts(why, "invalid value");
            return IK_EINVAL;
        }
        break;
    }
    case T_IGNORED: {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "flag \"-%s\" is no longer supported - ignoring.", f->name);
        ps->set[id] = true;
        return add_log(cfg, CONFIG_LOG_WARN, "pkg/flags", msg);
    }
    }
    rv = set_str(&ps->val[id], store);
    if (rv != 0) {
        return rv;
    }
    ps->set[id] = true;
    return 0;
}

/*
 * The command line, by the rules of Go's flag.FlagSet.Parse. Returns 0
 * with *@next the index of the first non-flag argument, or an error.
 */
static int parse_args(struct config *cfg, struct pstate *ps, int argc,
                      char **argv, int *next, char *errmsg)
{
    int i = 1;
    while (i < argc) {
        const char *s = argv[i], *name, *eq, *value = NULL;
        size_t nlen;
        int id, rv;
        char whybuf[IK_ERRMSG_SIZE];
        struct mbuf why;

        if (s == NULL || strlen(s) < 2 || s[0] != '-') {
            break;
        }
        name = s + 1;
        if (s[1] == '-') {
            if (s[2] == '\0') {
                i++;
                break;
            }
            name = s + 2;
        }
        if (name[0] == '\0' || name[0] == '-' || name[0] == '=') {
            return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                        "bad flag syntax: %s", s);
        }
        i++;
        eq = strchr(name + 1, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (eq != NULL) {
            value = eq + 1;
        }
        id = flag_lookup(name, nlen);
        if (id < 0) {
            if ((nlen == 4 && memcmp(name, "help", 4) == 0) ||
                (nlen == 1 && name[0] == 'h')) {
                cfg->help_requested = true;
                *next = -1;
                return 0;
            }
            return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                        "flag provided but not defined: -%.*s", (int)nlen,
                        name);
        }
        mb_init(&why, whybuf, sizeof(whybuf));
        if (flag_defs[id].type == T_BOOL || flag_defs[id].type == T_IGNORED) {
            rv = flag_set(cfg, ps, id, value != NULL ? value : "true", &why);
            if (rv == IK_EINVAL) {
                char q[IK_ERRMSG_SIZE];
                struct mbuf mq;
                mb_init(&mq, q, sizeof(q));
                if (value != NULL) {
                    mb_quote(&mq, value);
                    return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                                "invalid boolean value %s for -%s: %s", q,
                                flag_defs[id].name, whybuf);
                }
                return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                            "invalid boolean flag %s: %s", flag_defs[id].name,
                            whybuf);
            }
        } else {
            if (value == NULL && i < argc) {
                value = argv[i++];
            }
            if (value == NULL) {
                return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                            "flag needs an argument: -%s", flag_defs[id].name);
            }
            rv = flag_set(cfg, ps, id, value, &why);
            if (rv == IK_EINVAL) {
                char q[IK_ERRMSG_SIZE];
                struct mbuf mq;
                mb_init(&mq, q, sizeof(q));
                mb_quote(&mq, value);
                return fail(cfg, errmsg, CONFIG_ERR_USAGE, NULL,
                            "invalid value %s for flag -%s: %s", q,
                            flag_defs[id].name, whybuf);
            }
        }
        if (rv != 0) {
            return rv;
        }
        ps->cli[id] = true;
    }
    *next = i;
    return 0;
}

static int cmp_flag_name(const void *a, const void *b)
{
    return strcmp(flag_defs[*(const int *)a].name,
                  flag_defs[*(const int *)b].name);
}

/* First value of @key in @envp (Go's os.Getenv keeps the first). */
static const char *env_get(char **envp, const char *key)
{
    size_t klen = strlen(key), i;
    if (envp == NULL) {
        return NULL;
    }
    for (i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], key, klen) == 0 && envp[i][klen] == '=') {
            return envp[i] + klen + 1;
        }
    }
    return NULL;
}

/*
 * etcd's flags.SetFlagsFromEnv: every flag not on the command line takes
 * a non-empty ETCD_<FLAG> (in flag name order; the last failure is the one
 * reported, after the environment has been checked for conflicts).
 */
static int parse_env(struct config *cfg, struct pstate *ps, char **envp,
                     char *errmsg)
{
    int order[F__COUNT], k, rv;
    bool used[F__COUNT] = {false};
    char env_err[IK_ERRMSG_SIZE] = "";
    size_t i;

    for (k = 0; k < F__COUNT; k++) {
        order[k] = k;
    }
    qsort(order, F__COUNT, sizeof(order[0]), cmp_flag_name);
    for (k = 0; k < F__COUNT; k++) {
        int id = order[k];
        char key[96], whybuf[IK_ERRMSG_SIZE], msg[IK_ERRMSG_SIZE * 2];
        const char *val;
        struct mbuf why;
        if (ps->cli[id]) {
            continue;
        }
        flag_env_name(flag_defs[id].name, key, sizeof(key));
        val = env_get(envp, key);
        if (val == NULL || val[0] == '\0') {
            continue;
        }
        used[id] = true;
        mb_init(&why, whybuf, sizeof(whybuf));
        rv = flag_set(cfg, ps, id, val, &why);
        if (rv == IK_EINVAL) {
            struct mbuf m;
            mb_init(&m, env_err, sizeof(env_err));
            mb_puts(&m, "invalid value ");
            mb_quote(&m, val);
            mb_printf(&m, " for %s: %s", key, whybuf);
            continue;
        }
        if (rv != 0) {
            return rv;
        }
        snprintf(msg, sizeof(msg),
                 "recognized and used environment variable %s=%s", key, val);
        rv = add_log(cfg, CONFIG_LOG_INFO, "pkg/flags", msg);
        if (rv != 0) {
            return rv;
        }
    }

    /* Check the environment: conflicts are fatal, strays are warned. */
    for (i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *e = envp[i], *eq = strchr(e, '=');
        size_t klen = eq ? (size_t)(eq - e) : strlen(e);
        bool is_used = false, conflict = false;
        char msg[IK_ERRMSG_SIZE * 2];
        for (k = 0; k < F__COUNT; k++) {
            char key[96];
            if (!used[k] && !ps->cli[k]) {
                continue;
            }
            flag_env_name(flag_defs[k].name, key, sizeof(key));
            if (strlen(key) == klen && memcmp(key, e, klen) == 0) {
                if (used[k]) {
                    is_used = true;
                } else {
                    conflict = true;
                }
            }
        }
        if (eq == NULL) {
            snprintf(msg, sizeof(msg), "found invalid env %s", e);
            rv = add_log(cfg, CONFIG_LOG_WARN, "pkg/flags", msg);
            if (rv != 0) {
                return rv;
            }
        }
        if (is_used) {
            continue;
        }
        if (conflict) {
            return fail(cfg, errmsg, CONFIG_ERR_FATAL, "pkg/flags",
                        "conflicting environment variable \"%.*s\" is "
                        "shadowed by corresponding command-line flag (either "
                        "unset environment variable or disable flag)",
                        (int)klen, e);
        }
        if (strncmp(e, "ETCD_", 5) == 0) {
            snprintf(msg, sizeof(msg), "unrecognized environment variable %s",
                     e);
            rv = add_log(cfg, CONFIG_LOG_WARN, "pkg/flags", msg);
            if (rv != 0) {
                return rv;
            }
        }
    }
    if (env_err[0] != '\0') {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain", "%s", env_err);
    }
    return 0;
}

/* Split a comma list into @out, each element trimmed (if @trim). */
static int split_list(const char *list, bool trim, struct strv *out)
{
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        const char *q = p;
        int rv;
        if (trim) {
            trim_space(&q, &n);
        }
        rv = strv_push(out, q, n);
        if (rv != 0) {
            return rv;
        }
        if (c == NULL) {
            return 0;
        }
        p = c + 1;
    }
}

static void url_array_free(struct config_url *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        config_url_free(&v[i]);
    }
    free(v);
}

static int cmp_url(const void *a, const void *b)
{
    return strcmp(((const struct config_url *)a)->raw,
                  ((const struct config_url *)b)->raw);
}

/* A URL list flag's value, parsed (the value was checked already). Sorted
 * by text, as etcd sorts. */
static int urls_parse(const char *list, struct config_url **out, size_t *n)
{
    struct strv parts = {NULL, 0};
    struct config_url *v = NULL;
    size_t i, cnt = 0;
    int rv;

    *out = NULL;
    *n = 0;
    if (list[0] == '\0') {
        return 0;
    }
    rv = split_list(list, false, &parts);
    if (rv != 0) {
        goto out;
    }
    v = cmalloc(parts.n * sizeof(*v));
    if (v == NULL) {
        rv = IK_ENOMEM;
        goto out;
    }
    for (i = 0; i < parts.n; i++) {
        struct urlparts u;
        char whybuf[IK_ERRMSG_SIZE];
        struct mbuf why;
        mb_init(&why, whybuf, sizeof(whybuf));
        rv = url_check(parts.v[i], strlen(parts.v[i]), &u, &why);
        if (rv != 0) {
            goto out;
        }
        memset(&v[cnt], 0, sizeof(v[cnt]));
        v[cnt].raw = u.canon;
        v[cnt].scheme = u.scheme;
        v[cnt].host = u.host;
        {
            uint64_t port = 0;
            if (go_parse_uint(u.port, 64, 10, &port) != NUM_OK ||
                port > 65535) {
                port = 0; /* rejected by verify() for listen URLs */
            }
            v[cnt].port = (uint16_t)port;
        }
        free(u.port);
        cnt++;
    }
    qsort(v, cnt, sizeof(*v), cmp_url);
    *out = v;
    *n = cnt;
    v = NULL;
    cnt = 0;
    rv = 0;
out:
    url_array_free(v, cnt);
    strv_free(parts.v, parts.n);
    return rv;
}

/* A URL list as sorted canonical strings. */
static int urls_strings(const char *list, char ***out, size_t *n)
{
    struct config_url *v;
    size_t cnt, i;
    char **s;
    int rv = urls_parse(list, &v, &cnt);
    if (rv != 0) {
        return rv;
    }
    s = cmalloc((cnt ? cnt : 1) * sizeof(*s));
    if (s == NULL) {
        url_array_free(v, cnt);
        return IK_ENOMEM;
    }
    for (i = 0; i < cnt; i++) {
        s[i] = v[i].raw;
        v[i].raw = NULL;
    }
    url_array_free(v, cnt);
    *out = s;
    *n = cnt;
    return 0;
}

/* etcd's UniqueStrings: split, de-duplicate, sort. */
static int unique_strings(const char *list, char ***out, size_t *n)
{
    struct strv sv = {NULL, 0};
    size_t i, j = 0;
    int rv = split_list(list, false, &sv);
    if (rv != 0) {
        strv_free(sv.v, sv.n);
        return rv;
    }
    qsort(sv.v, sv.n, sizeof(*sv.v), cmp_str);
    for (i = 0; i < sv.n; i++) {
        if (j > 0 && strcmp(sv.v[j - 1], sv.v[i]) == 0) {
            free(sv.v[i]);
            continue;
        }
        sv.v[j++] = sv.v[i];
    }
    *out = sv.v;
    *n = j;
    return 0;
}

static void members_free(struct config_member *m, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(m[i].name);
        strv_free(m[i].peer_urls, m[i].n_peer_urls);
    }
    free(m);
}

/*
 * etcd's types.NewURLsMap: "name=url,name=url,..." where a name may repeat;
 * each URL must pass the URL checks. Members keep the order of their
 * first mention; each member's URLs are sorted. Returns 0, IK_ENOMEM or
 * IK_EINVAL with the reason in @why.
 */
static int urls_map_parse(const char *s, struct config_member **out,
                          size_t *n_out, struct mbuf *why)
{
    struct config_member *m = NULL;
    size_t n = 0, i;
    const char *p = s;
    int rv = 0;

    while (*p != '\0') {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        const char *url = eq ? eq + 1 : p + len;
        size_t ulen = eq ? len - nlen - 1 : 0;
        struct urlparts u;
        struct strv sv;

        if (len == 0) {
            p = c ? c + 1 : p + len;
            continue;
        }
        for (i = 0; i < n; i++) {
            if (strlen(m[i].name) == nlen && memcmp(m[i].name, p, nlen) == 0) {
                break;
            }
        }
        if (i == n) {
            struct config_member *nm = crealloc(m, (n + 1) * sizeof(*nm));
            if (nm == NULL) {
                rv = IK_ENOMEM;
                goto fail;
            }
            m = nm;
            memset(&m[n], 0, sizeof(m[n]));
            m[n].name = cstrndup(p, nlen);
            n++;
            if (m[i].name == NULL) {
                rv = IK_ENOMEM;
                goto fail;
            }
        }
        rv = url_check(url, ulen, &u, why);
        if (rv != 0) {
            goto fail;
        }
        sv.v = m[i].peer_urls;
        sv.n = m[i].n_peer_urls;
        rv = strv_push(&sv, u.canon, strlen(u.canon));
        urlparts_free(&u);
        m[i].peer_urls = sv.v;
        m[i].n_peer_urls = sv.n;
        if (rv != 0) {
            goto fail;
        }
        p = c ? c + 1 : p + len;
    }
    for (i = 0; i < n; i++) {
        qsort(m[i].peer_urls, m[i].n_peer_urls, sizeof(char *), cmp_str);
    }
    *out = m;
    *n_out = n;
    return 0;
fail:
    members_free(m, n);
    return rv;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

static void mb_join(struct mbuf *m, char *const *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (i > 0) {
            mb_puts(m, ",");
        }
        mb_puts(m, v[i]);
    }
}

/* etcd's checkBindURLs. */
static int check_bind(struct config *cfg, const struct config_url *v, size_t n,
                      char *errmsg)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(v[i].scheme, "unix") == 0 ||
            strcmp(v[i].scheme, "unixs") == 0) {
            continue;
        }
        if (strcmp(v[i].host, "localhost") == 0) {
            continue;
        }
        if (!is_ip(v[i].host)) {
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "expected IP in URL for binding (%s)", v[i].raw);
        }
    }
    return 0;
}

/* etcd's checkHostURLs on a string list (all parse: checked at Set). */
static int check_host(struct config *cfg, const char *flag, char **v, size_t n,
                      char *errmsg)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const char *hp = strstr(v[i], "://");
        size_t ho, hl, po;
        hp = hp ? hp + 3 : v[i];
        if (split_host_port(hp, strlen(hp), &ho, &hl, &po) == 0 && hl > 0) {
            continue;
        }
        {
            char list[IK_ERRMSG_SIZE], q[IK_ERRMSG_SIZE];
            struct mbuf ml, mq;
            mb_init(&ml, list, sizeof(list));
            mb_join(&ml, v, n);
            mb_init(&mq, q, sizeof(q));
            mb_quote(&mq, list);
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "--%s %s must be \"host:port\" (unexpected empty host "
                        "(%s))",
                        flag, q, v[i]);
        }
    }
    return 0;
}

/* ikada's own limits: http only, real ports on listen URLs. */
static int check_ikada_url(struct config *cfg, const char *flag,
                           const char *url, char *errmsg)
{
    if (strncmp(url, "http://", 7) != 0) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "ikada: --%s: only http:// URLs are supported (no TLS or "
                    "unix sockets yet): %s",
                    flag, url);
    }
    return 0;
}

static int check_listen_ports(struct config *cfg, const char *flag,
                              const struct config_url *v, size_t n,
                              char *errmsg)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const char *colon = strrchr(v[i].raw, ':');
        uint64_t port = 0;
        int rv = check_ikada_url(cfg, flag, v[i].raw, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (colon == NULL || go_parse_uint(colon + 1, 64, 10, &port) != 0 ||
            port > 65535) {
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "ikada: --%s: invalid port in %s", flag, v[i].raw);
        }
    }
    return 0;
}

static const char *const level_names[] = {
    [CONFIG_LOG_DEBUG] = "debug", [CONFIG_LOG_INFO] = "info",
    [CONFIG_LOG_WARN] = "warn",   [CONFIG_LOG_ERROR] = "error",
    [CONFIG_LOG_PANIC] = "panic", [CONFIG_LOG_FATAL] = "fatal",
};

const char *config_log_level_name(enum config_log_level level)
{
    if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0])) {
        return level_names[level];
    }
    return "unknown";
}

/* etcd's setupLogging checks, in its order. */
static int verify_logging(struct config *cfg, struct pstate *ps, char *errmsg)
{
    char **old = NULL;
    size_t n_old = 0, i;
    int rv;
    const char *lvl = pval(ps, F_LOG_LEVEL);
    char buf[IK_ERRMSG_SIZE];
    struct mbuf m;

    strv_free(cfg->log_outputs, cfg->n_log_outputs);
    cfg->log_outputs = NULL;
    cfg->n_log_outputs = 0;
    rv = unique_strings(pval(ps, F_LOG_OUTPUTS), &cfg->log_outputs,
                        &cfg->n_log_outputs);
    if (rv != 0) {
        return rv;
    }
    rv = unique_strings(pval(ps, F_LOG_OUTPUT), &old, &n_old);
    if (rv != 0) {
        return rv;
    }
    if (n_old > cfg->n_log_outputs) {
        /* The deprecated flag wins when it lists more outputs. */
        strv_free(cfg->log_outputs, cfg->n_log_outputs);
        cfg->log_outputs = old;
        cfg->n_log_outputs = n_old;
        old = NULL;
        n_old = 0;
    } else if (n_old == cfg->n_log_outputs) {
        bool same = true;
        if (n_old > 1) {
            strv_free(old, n_old);
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "both '--log-output' and '--log-outputs' are set; "
                        "only set '--log-outputs'");
        }
        for (i = 0; i < n_old; i++) {
            same = same && strcmp(old[i], cfg->log_outputs[i]) == 0;
        }
        if (same && n_old == 1 && strcmp(old[0], "default") != 0) {
            char a[IK_ERRMSG_SIZE];
            struct mbuf ma;
            mb_init(&ma, a, sizeof(a));
            mb_quote_list(&ma, old, n_old);
            strv_free(old, n_old);
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "'--log-output=%s' and '--log-outputs=%s' are "
                        "incompatible; only set --log-outputs",
                        a, a);
        }
    }
    strv_free(old, n_old);

    rv = set_str(&cfg->logger, pval(ps, F_LOGGER));
    if (rv != 0) {
        return rv;
    }
    cfg->debug = pval_bool(ps, F_DEBUG);
    if (strcmp(cfg->logger, "capnslog") != 0 &&
        strcmp(cfg->logger, "zap") != 0) {
        mb_init(&m, buf, sizeof(buf));
        mb_quote(&m, cfg->logger);
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "unknown logger option %s", buf);
    }
    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(lvl, level_names[i]) == 0) {
            cfg->log_level = (enum config_log_level)i;
            break;
        }
    }
    if (strcmp(lvl, "dpanic") == 0) {
        cfg->log_level = CONFIG_LOG_PANIC;
    } else if (i == sizeof(level_names) / sizeof(level_names[0]) &&
               !(cfg->debug && strcmp(cfg->logger, "capnslog") == 0)) {
        /* (etcd never looks at --log-level with capnslog and --debug.) */
        mb_init(&m, buf, sizeof(buf));
        mb_quote(&m, lvl);
        return fail(cfg, errmsg, CONFIG_ERR_PANIC, NULL, "unknown level %s",
                    buf);
    }
    if (cfg->debug) {
        cfg->log_level = CONFIG_LOG_DEBUG;
    }
    if (strcmp(cfg->logger, "capnslog") == 0) {
        const char *o;
        if (cfg->n_log_outputs != 1) {
            mb_init(&m, buf, sizeof(buf));
            mb_quote_list(&m, cfg->log_outputs, cfg->n_log_outputs);
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "--logger=capnslog supports only 1 value in "
                        "'--log-outputs', got %s",
                        buf);
        }
        o = cfg->log_outputs[0];
        if (strcmp(o, "default") != 0 && strcmp(o, "stderr") != 0 &&
            strcmp(o, "stdout") != 0) {
            mb_init(&m, buf, sizeof(buf));
            mb_quote(&m, o);
            return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                        "unknown log-output %s (only supports \"default\", "
                        "\"stderr\", \"stdout\")",
                        buf);
        }
    } else if (cfg->n_log_outputs > 1) {
        for (i = 0; i < cfg->n_log_outputs; i++) {
            if (strcmp(cfg->log_outputs[i], "default") == 0) {
                return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                            "multi logoutput for \"default\" is not supported "
                            "yet");
            }
        }
    }
    return 0;
}

/* Flags ikada refuses unless left at their default. */
static int verify_refused(struct config *cfg, struct pstate *ps, char *errmsg)
{
    int id;
    for (id = 0; id < F__COUNT; id++) {
        const struct fdef *f = &flag_defs[id];
        if (f->policy != P_REFUSE || ps->val[id] == NULL ||
            strcmp(ps->val[id], f->def) == 0) {
            continue;
        }
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "ikada: --%s is not supported yet", f->name);
    }
    return 0;
}

static int parse_retention(struct config *cfg, struct pstate *ps, char *errmsg)
{
    const char *r = pval(ps, F_AUTO_COMPACTION_RETENTION);
    int64_t h = 0, ns = 0;
    char whybuf[IK_ERRMSG_SIZE];
    struct mbuf why;
    int rv = set_str(&cfg->auto_compaction_retention, r);
    if (rv != 0) {
        return rv;
    }
    if (r[0] == '\0') {
        r = "0";
    }
    if (go_parse_int(r, 64, 10, &h) == NUM_OK && h >= 0) {
        if (cfg->auto_compaction_mode == CONFIG_COMPACTION_REVISION) {
            cfg->auto_compaction_retention_value = h;
        } else if (h > INT64_MAX / 3600000) {
            cfg->auto_compaction_retention_value = INT64_MAX;
        } else {
            cfg->auto_compaction_retention_value = h * 3600000;
        }
        return 0;
    }
    mb_init(&why, whybuf, sizeof(whybuf));
    if (go_parse_duration(r, &ns, &why) != 0) {
        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                    "error parsing CompactionRetention: %s", whybuf);
    }
    /* As in etcd, a duration given in revision mode counts nanoseconds. */
    cfg->auto_compaction_retention_value =
        cfg->auto_compaction_mode == CONFIG_COMPACTION_REVISION ? ns
                                                                : ns / 1000000;
    return 0;
}

/* etcd's default --initial-cluster for the current name and peer URLs. */
static int initial_cluster_from_name(struct config *cfg, char **out)
{
    size_t i, len = 1;
    char *s;
    /* (etcd names the entry "default" when --name is empty.) */
    const char *name = cfg->name[0] != '\0' ? cfg->name : "default";
    for (i = 0; i < cfg->n_initial_advertise_peer_urls; i++) {
        len += strlen(name) + 2 + strlen(cfg->initial_advertise_peer_urls[i]);
    }
    s = cmalloc(len);
    if (s == NULL) {
        return IK_ENOMEM;
    }
    s[0] = '\0';
    for (i = 0; i < cfg->n_initial_advertise_peer_urls; i++) {
        if (i > 0) {
            strcat(s, ",");
        }
        strcat(s, name);
        strcat(s, "=");
        strcat(s, cfg->initial_advertise_peer_urls[i]);
    }
    *out = s;
    return 0;
}

static int apply_initial_cluster(struct config *cfg, struct pstate *ps)
{
    char *ic = NULL, whybuf[IK_ERRMSG_SIZE];
    struct mbuf why;
    int rv;
    const char *given = pval(ps, F_INITIAL_CLUSTER);

    if (strcmp(cfg->name, "default") != 0 &&
        strcmp(given, flag_defs[F_INITIAL_CLUSTER].def) == 0) {
        rv = initial_cluster_from_name(cfg, &ic);
    } else {
        ic = cstrdup(given);
        rv = ic == NULL ? IK_ENOMEM : 0;
    }
    if (rv != 0) {
        return rv;
    }
    free(cfg->initial_cluster_str);
    cfg->initial_cluster_str = ic;
    members_free(cfg->initial_cluster, cfg->n_initial_cluster);
    cfg->initial_cluster = NULL;
    cfg->n_initial_cluster = 0;
    free(cfg->initial_cluster_error);
    cfg->initial_cluster_error = NULL;
    mb_init(&why, whybuf, sizeof(whybuf));
    rv = urls_map_parse(ic, &cfg->initial_cluster, &cfg->n_initial_cluster,
                        &why);
    if (rv == IK_EINVAL) {
        cfg->initial_cluster_error = cstrdup(whybuf);
        return cfg->initial_cluster_error == NULL ? IK_ENOMEM : 0;
    }
    return rv;
}

/* Fill @cfg from the parsed flags and run etcd's checks in its order. */
static int apply_and_verify(struct config *cfg, struct pstate *ps, char *errmsg)
{
    int rv;
    char msg[IK_ERRMSG_SIZE * 2];
    const char *mode;
    bool missing_ac;

#define TRY(expr)      \
    do {               \
        rv = (expr);   \
        if (rv != 0) { \
            return rv; \
        }              \
    } while (0)

    TRY(set_str(&cfg->name, pval(ps, F_NAME)));
    TRY(set_str(&cfg->wal_dir, pval(ps, F_WAL_DIR)));
    cfg->snapshot_count = pval_uint(ps, F_SNAPSHOT_COUNT);
    cfg->heartbeat_ms = pval_uint(ps, F_HEARTBEAT_INTERVAL);
    cfg->election_ms = pval_uint(ps, F_ELECTION_TIMEOUT);
    cfg->max_request_bytes = pval_uint(ps, F_MAX_REQUEST_BYTES);
    cfg->max_txn_ops = pval_uint(ps, F_MAX_TXN_OPS);
    cfg->quota_backend_bytes = pval_int(ps, F_QUOTA_BACKEND_BYTES);
    cfg->enable_v2 = pval_bool(ps, F_ENABLE_V2);
    cfg->enable_pprof = pval_bool(ps, F_ENABLE_PPROF);
    TRY(set_str(&cfg->metrics, pval(ps, F_METRICS)));
    TRY(set_str(&cfg->initial_cluster_token,
                pval(ps, F_INITIAL_CLUSTER_TOKEN)));
    cfg->initial_cluster_state =
        strcmp(pval(ps, F_INITIAL_CLUSTER_STATE), "existing") == 0
            ? CONFIG_CLUSTER_STATE_EXISTING
            : CONFIG_CLUSTER_STATE_NEW;

    url_array_free(cfg->listen_peer_urls, cfg->n_listen_peer_urls);
    cfg->listen_peer_urls = NULL;
    cfg->n_listen_peer_urls = 0;
    TRY(urls_parse(pval(ps, F_LISTEN_PEER_URLS), &cfg->listen_peer_urls,
                   &cfg->n_listen_peer_urls));
    url_array_free(cfg->listen_client_urls, cfg->n_listen_client_urls);
    cfg->listen_client_urls = NULL;
    cfg->n_listen_client_urls = 0;
    TRY(urls_parse(pval(ps, F_LISTEN_CLIENT_URLS), &cfg->listen_client_urls,
                   &cfg->n_listen_client_urls));
    url_array_free(cfg->listen_metrics_urls, cfg->n_listen_metrics_urls);
    cfg->listen_metrics_urls = NULL;
    cfg->n_listen_metrics_urls = 0;
    TRY(urls_parse(pval(ps, F_LISTEN_METRICS_URLS), &cfg->listen_metrics_urls,
                   &cfg->n_listen_metrics_urls));
    strv_free(cfg->initial_advertise_peer_urls,
              cfg->n_initial_advertise_peer_urls);
    cfg->initial_advertise_peer_urls = NULL;
    cfg->n_initial_advertise_peer_urls = 0;
    TRY(urls_strings(pval(ps, F_INITIAL_ADVERTISE_PEER_URLS),
                     &cfg->initial_advertise_peer_urls,
                     &cfg->n_initial_advertise_peer_urls));
    strv_free(cfg->advertise_client_urls, cfg->n_advertise_client_urls);
    cfg->advertise_client_urls = NULL;
    cfg->n_advertise_client_urls = 0;
    /* etcd drops the default advertise URLs when the listen URLs are set
     * but the advertise ones are not (and then refuses to start). */
    missing_ac =
        ps->set[F_LISTEN_CLIENT_URLS] && !ps->set[F_ADVERTISE_CLIENT_URLS];
    if (!missing_ac) {
        TRY(urls_strings(pval(ps, F_ADVERTISE_CLIENT_URLS),
                         &cfg->advertise_client_urls,
                         &cfg->n_advertise_client_urls));
    }

    /* embed.Config.Validate(), in order. */
    TRY(verify_logging(cfg, ps, errmsg));
    TRY(check_bind(cfg, cfg->listen_peer_urls, cfg->n_listen_peer_urls,
                   errmsg));
    TRY(check_bind(cfg, cfg->listen_client_urls, cfg->n_listen_client_urls,
                   errmsg));
    TRY(check_bind(cfg, cfg->listen_metrics_urls, cfg->n_listen_metrics_urls,
                   errmsg));
    TRY(check_host(cfg, "initial-advertise-peer-urls",
                   cfg->initial_advertise_peer_urls,
                   cfg->n_initial_advertise_peer_urls, errmsg));
    TRY(check_host(cfg, "advertise-client-urls", cfg->advertise_client_urls,
                   cfg->n_advertise_client_urls, errmsg));
    if (cfg->heartbeat_ms == 0) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "--heartbeat-interval must be >0 (set to %" PRIu64 "ms)",
                    cfg->heartbeat_ms);
    }
    if (cfg->election_ms == 0) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "--election-timeout must be >0 (set to %" PRIu64 "ms)",
                    cfg->election_ms);
    }
    if (cfg->heartbeat_ms > UINT64_MAX / 5 ||
        5 * cfg->heartbeat_ms > cfg->election_ms) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "--election-timeout[%" PRIu64 "ms] should be at least as "
                    "5 times as --heartbeat-interval[%" PRIu64 "ms]",
                    cfg->election_ms, cfg->heartbeat_ms);
    }
    if (cfg->election_ms > 50000) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "--election-timeout[%" PRIu64 "ms] is too long, and "
                    "should be set less than 50000ms",
                    cfg->election_ms);
    }
    if (cfg->n_listen_client_urls > 0 && cfg->n_advertise_client_urls == 0) {
        rv = fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                  "--advertise-client-urls is required when "
                  "--listen-client-urls is set explicitly");
        cfg->error_hint = "When listening on specific address(es), this etcd "
                          "process must advertise accessible url(s) to each "
                          "connected client.";
        return rv;
    }
    mode = pval(ps, F_AUTO_COMPACTION_MODE);
    if (strcmp(mode, "revision") == 0) {
        cfg->auto_compaction_mode = CONFIG_COMPACTION_REVISION;
    } else if (strcmp(mode, "periodic") == 0 || mode[0] == '\0') {
        cfg->auto_compaction_mode = CONFIG_COMPACTION_PERIODIC;
    } else {
        char q[IK_ERRMSG_SIZE];
        struct mbuf mq;
        mb_init(&mq, q, sizeof(q));
        mb_quote(&mq, mode);
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "unknown auto-compaction-mode %s", q);
    }
    if (pval_bool(ps, F_X_LEASE_CHECKPOINT_PERSIST) &&
        !pval_bool(ps, F_X_LEASE_CHECKPOINT)) {
        return fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                    "setting experimental-enable-lease-checkpoint-persist "
                    "requires experimental-enable-lease-checkpoint");
    }

    /* What ikada cannot do (yet). */
    TRY(verify_refused(cfg, ps, errmsg));
    TRY(check_listen_ports(cfg, "listen-peer-urls", cfg->listen_peer_urls,
                           cfg->n_listen_peer_urls, errmsg));
    TRY(check_listen_ports(cfg, "listen-client-urls", cfg->listen_client_urls,
                           cfg->n_listen_client_urls, errmsg));
    TRY(check_listen_ports(cfg, "listen-metrics-urls", cfg->listen_metrics_urls,
                           cfg->n_listen_metrics_urls, errmsg));
    {
        size_t i;
        for (i = 0; i < cfg->n_initial_advertise_peer_urls; i++) {
            TRY(check_ikada_url(cfg, "initial-advertise-peer-urls",
                                cfg->initial_advertise_peer_urls[i], errmsg));
        }
        for (i = 0; i < cfg->n_advertise_client_urls; i++) {
            TRY(check_ikada_url(cfg, "advertise-client-urls",
                                cfg->advertise_client_urls[i], errmsg));
        }
    }

    /* What etcd does after validation, before starting the server. */
    TRY(apply_initial_cluster(cfg, ps));
    if (pval(ps, F_DATA_DIR)[0] == '\0') {
        char *dd = cmalloc(strlen(cfg->name) + sizeof(".etcd"));
        if (dd == NULL) {
            return IK_ENOMEM;
        }
        strcpy(dd, cfg->name);
        strcat(dd, ".etcd");
        free(cfg->data_dir);
        cfg->data_dir = dd;
        snprintf(msg, sizeof(msg),
                 "no data-dir provided, using default data-dir ./%s", dd);
        TRY(add_log(cfg, CONFIG_LOG_WARN, "etcdmain", msg));
    } else {
        TRY(set_str(&cfg->data_dir, pval(ps, F_DATA_DIR)));
    }
    TRY(parse_retention(cfg, ps, errmsg));
#undef TRY
    return 0;
}

static void clear_logs(struct config *cfg)
{
    while (cfg->n_logs > 0) {
        free(cfg->logs[--cfg->n_logs].msg);
    }
    free(cfg->logs);
    cfg->logs = NULL;
    strv_free(cfg->warnings, cfg->n_warnings);
    cfg->warnings = NULL;
    cfg->n_warnings = 0;
}

int config_init(struct config *cfg)
{
    struct pstate ps;
    char errmsg[IK_ERRMSG_SIZE];
    int rv;

    memset(cfg, 0, sizeof(*cfg));
    memset(&ps, 0, sizeof(ps));
    rv = apply_and_verify(cfg, &ps, errmsg);
    /* Defaults always verify; the only possible failure is memory. */
    cfg->error_kind = CONFIG_ERR_NONE;
    cfg->error_pkg = NULL;
    cfg->exit_status = 0;
    /* The "default data-dir" notice belongs to config_parse(). */
    clear_logs(cfg);
    return rv == 0 ? 0 : IK_ENOMEM;
}

static void pstate_free(struct pstate *ps)
{
    int i;
    for (i = 0; i < F__COUNT; i++) {
        free(ps->val[i]);
    }
}

int config_parse(struct config *cfg, int argc, char **argv, char **envp,
                 char *errmsg)
{
    struct pstate ps;
    int next = 0, rv;

    memset(&ps, 0, sizeof(ps));
    errmsg[0] = '\0';
    cfg->error_kind = CONFIG_ERR_NONE;
    cfg->error_pkg = NULL;
    cfg->error_hint = NULL;
    cfg->exit_status = 0;
    cfg->usage_on_error = false;
    cfg->help_requested = false;
    cfg->version_requested = false;
    clear_logs(cfg);

    rv = parse_args(cfg, &ps, argc, argv, &next, errmsg);
    if (rv != 0 || cfg->help_requested) {
        goto out;
    }
    if (next < argc) {
        rv = fail(cfg, errmsg, CONFIG_ERR_VERIFY, "etcdmain",
                  "'%s' is not a valid flag", argv[next]);
        goto out;
    }
    if (pval_bool(&ps, F_VERSION)) {
        cfg->version_requested = true;
        goto out;
    }
    rv = parse_env(cfg, &ps, envp, errmsg);
    if (rv != 0) {
        goto out;
    }
    rv = apply_and_verify(cfg, &ps, errmsg);
out:
    if (rv == IK_ENOMEM) {
        ik_errmsg_printf(errmsg, "out of memory");
        cfg->error_kind = CONFIG_ERR_FATAL;
        cfg->error_pkg = "etcdmain";
        cfg->exit_status = 1;
    }
    pstate_free(&ps);
    return rv;
}

void config_close(struct config *cfg)
{
    size_t i;
    free(cfg->name);
    free(cfg->data_dir);
    free(cfg->wal_dir);
    url_array_free(cfg->listen_client_urls, cfg->n_listen_client_urls);
    url_array_free(cfg->listen_peer_urls, cfg->n_listen_peer_urls);
    url_array_free(cfg->listen_metrics_urls, cfg->n_listen_metrics_urls);
    strv_free(cfg->advertise_client_urls, cfg->n_advertise_client_urls);
    strv_free(cfg->initial_advertise_peer_urls,
              cfg->n_initial_advertise_peer_urls);
    members_free(cfg->initial_cluster, cfg->n_initial_cluster);
    free(cfg->initial_cluster_str);
    free(cfg->initial_cluster_error);
    free(cfg->initial_cluster_token);
    free(cfg->auto_compaction_retention);
    free(cfg->logger);
    strv_free(cfg->log_outputs, cfg->n_log_outputs);
    free(cfg->metrics);
    for (i = 0; i < cfg->n_logs; i++) {
        free(cfg->logs[i].msg);
    }
    free(cfg->logs);
    strv_free(cfg->warnings, cfg->n_warnings);
    memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------------ */
/* Part 4: bootstrap checks, help, helpers                             */
/* ------------------------------------------------------------------ */

const struct config_member *config_find_member(const struct config *cfg,
                                               const char *name)
{
    size_t i;
    for (i = 0; i < cfg->n_initial_cluster; i++) {
        if (strcmp(cfg->initial_cluster[i].name, name) == 0) {
            return &cfg->initial_cluster[i];
        }
    }
    return NULL;
}

/* types.URLsMap.String(): every "name=url" pair, sorted, comma-joined. */
static int urls_map_string(const struct config_member *m, size_t n,
                           struct mbuf *out)
{
    struct strv pairs = {NULL, 0};
    size_t i, j;
    int rv = 0;
    for (i = 0; i < n && rv == 0; i++) {
        for (j = 0; j < m[i].n_peer_urls && rv == 0; j++) {
            size_t len = strlen(m[i].name) + 1 + strlen(m[i].peer_urls[j]);
            char *p = cmalloc(len + 1);
            if (p == NULL) {
                rv = IK_ENOMEM;
                break;
            }
            snprintf(p, len + 1, "%s=%s", m[i].name, m[i].peer_urls[j]);
            rv = strv_push(&pairs, p, len);
            free(p);
        }
    }
    if (rv == 0) {
        qsort(pairs.v, pairs.n, sizeof(char *), cmp_str);
        mb_join(out, pairs.v, pairs.n);
    }
    strv_free(pairs.v, pairs.n);
    return rv;
}

static bool strv_contains(char *const *v, size_t n, const char *s)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* etcd's advertiseMatchesCluster, comparing URLs as text. */
static int advertise_matches(struct config *cfg, const struct config_member *me,
                             char *errmsg)
{
    char *const *ap = cfg->initial_advertise_peer_urls;
    size_t nap = cfg->n_initial_advertise_peer_urls, i;
    char *const *ic = me->peer_urls;
    size_t nic = me->n_peer_urls;
    char cause[IK_ERRMSG_SIZE], aps[IK_ERRMSG_SIZE], list[IK_ERRMSG_SIZE];
    struct mbuf mc, ma, ml;

    mb_init(&mc, cause, sizeof(cause));
    if (nap != nic) {
        mb_puts(&mc, "len(");
        mb_quote_list(&mc, ap, nap);
        mb_puts(&mc, ") != len(");
        mb_quote_list(&mc, ic, nic);
        mb_puts(&mc, ")");
    } else {
        bool equal = true;
        for (i = 0; i < nap; i++) {
            if (strcmp(ap[i], ic[i]) != 0) {
                mb_puts(&mc, "resolved urls: ");
                mb_quote(&mc, ap[i]);
                mb_puts(&mc, " != ");
                mb_quote(&mc, ic[i]);
                equal = false;
                break;
            }
        }
        if (equal) {
            return 0;
        }
    }
    mb_init(&ma, aps, sizeof(aps));
    mb_join(&ma, ap, nap);

    /* URLs of --initial-cluster missing from the advertised ones. */
    mb_init(&ml, list, sizeof(list));
    for (i = 0; i < nic; i++) {
        if (!strv_contains(ap, nap, ic[i])) {
            if (ml.len > 0) {
                mb_puts(&ml, ",");
            }
            mb_printf(&ml, "%s=%s", cfg->name, ic[i]);
        }
    }
    if (ml.len > 0) {
        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                    "--initial-cluster has %s but missing from "
                    "--initial-advertise-peer-urls=%s (%s)",
                    list, aps, cause);
    }
    {
        struct config_member self = {cfg->name, (char **)ap, nap};
        char umap[IK_ERRMSG_SIZE];
        struct mbuf mu;
        int rv;
        mb_init(&mu, umap, sizeof(umap));
        rv = urls_map_string(&self, 1, &mu);
        if (rv != 0) {
            return rv;
        }
        for (i = 0; i < nap; i++) {
            if (!strv_contains(ic, nic, ap[i])) {
                if (ml.len > 0) {
                    mb_puts(&ml, ",");
                }
                mb_puts(&ml, ap[i]);
            }
        }
        if (ml.len > 0) {
            return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                        "--initial-advertise-peer-urls has %s but missing "
                        "from --initial-cluster=%s",
                        list, umap);
        }
        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                    "failed to resolve %s to match --initial-cluster=%s (%s)",
                    aps, umap, cause);
    }
}

int config_verify_bootstrap(struct config *cfg, char *errmsg)
{
    const struct config_member *me;
    size_t i, j, k, l;
    int rv;

    cfg->error_hint = NULL;
    if (cfg->initial_cluster_error != NULL) {
        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                    "error setting up initial cluster: %s",
                    cfg->initial_cluster_error);
    }
    me = config_find_member(cfg, cfg->name);
    if (me == NULL) {
        char q[IK_ERRMSG_SIZE];
        struct mbuf mq;
        mb_init(&mq, q, sizeof(q));
        mb_quote(&mq, cfg->name);
        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                    "couldn't find local name %s in the initial cluster "
                    "configuration",
                    q);
    }
    if (cfg->initial_cluster_state == CONFIG_CLUSTER_STATE_NEW) {
        rv = advertise_matches(cfg, me, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    for (i = 0; i < cfg->n_initial_cluster; i++) {
        const struct config_member *a = &cfg->initial_cluster[i];
        for (j = 0; j < a->n_peer_urls; j++) {
            for (k = i; k < cfg->n_initial_cluster; k++) {
                const struct config_member *b = &cfg->initial_cluster[k];
                for (l = (k == i ? j + 1 : 0); l < b->n_peer_urls; l++) {
                    if (strcmp(a->peer_urls[j], b->peer_urls[l]) == 0) {
                        char s[IK_ERRMSG_SIZE];
                        struct mbuf ms;
                        mb_init(&ms, s, sizeof(s));
                        rv = urls_map_string(cfg->initial_cluster,
                                             cfg->n_initial_cluster, &ms);
                        if (rv != 0) {
                            return rv;
                        }
                        return fail(cfg, errmsg, CONFIG_ERR_FATAL, "etcdmain",
                                    "initial cluster %s has duplicate url", s);
                    }
                }
            }
        }
    }
    return 0;
}

int config_url_parse(const char *s, struct config_url *url, char *errmsg)
{
    struct urlparts u;
    struct mbuf why;
    uint64_t port = 0;
    int rv;

    memset(url, 0, sizeof(*url));
    mb_init(&why, errmsg, IK_ERRMSG_SIZE);
    rv = url_check(s, strlen(s), &u, &why);
    if (rv != 0) {
        if (rv == IK_ENOMEM) {
            ik_errmsg_printf(errmsg, "out of memory");
        }
        return rv;
    }
    if (strcmp(u.scheme, "http") != 0 && strcmp(u.scheme, "https") != 0) {
        ik_errmsg_printf(errmsg, "URL scheme must be http or https: %s", s);
        urlparts_free(&u);
        return IK_EINVAL;
    }
    if (u.port[0] == '\0' || go_parse_uint(u.port, 64, 10, &port) != NUM_OK ||
        port > 65535) {
        ik_errmsg_printf(errmsg, "invalid port in URL: %s", s);
        urlparts_free(&u);
        return IK_EINVAL;
    }
    url->raw = u.canon;
    url->scheme = u.scheme;
    url->host = u.host;
    url->port = (uint16_t)port;
    free(u.port);
    return 0;
}

void config_url_free(struct config_url *url)
{
    free(url->raw);
    free(url->scheme);
    free(url->host);
    memset(url, 0, sizeof(*url));
}

void config_print_version(FILE *out)
{
    fprintf(out, "ikada Version: %s\n", CONFIG_IKADA_VERSION);
    fprintf(out, "etcd Version: %s (API compatible)\n", CONFIG_ETCD_VERSION);
    fprintf(out, "Git SHA: Not provided\n");
#if defined(__clang__)
    fprintf(out, "C Compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    fprintf(out, "C Compiler: gcc %s\n", __VERSION__);
#else
    fprintf(out, "C Compiler: unknown\n");
#endif
#if defined(__x86_64__)
    fprintf(out, "OS/Arch: linux/amd64\n");
#elif defined(__aarch64__)
    fprintf(out, "OS/Arch: linux/arm64\n");
#else
    fprintf(out, "OS/Arch: linux/unknown\n");
#endif
}

void config_print_usage(FILE *out)
{
    fputs("Usage:\n"
          "\n"
          "  ikada [flags]\n"
          "    Run an ikada member (an etcd 3.4 compatible server).\n"
          "\n"
          "  ikada --version\n"
          "    Print version information and exit.\n"
          "\n"
          "  ikada -h | --help\n"
          "    Print this help and the list of flags, then exit.\n"
          "\n"
          "  Every flag may also be set through the environment as\n"
          "  ETCD_<FLAG> (upper case, '-' replaced by '_'), e.g. ETCD_NAME.\n",
          out);
}

void config_print_help(FILE *out)
{
    static const char *const titles[] = {
        [S_MEMBER] = "Member",     [S_CLUSTERING] = "Clustering",
        [S_SECURITY] = "Security", [S_AUTH] = "Auth",
        [S_LOGGING] = "Logging",   [S_MONITORING] = "Profiling and Monitoring",
        [S_PROXY] = "Proxy",       [S_EXPERIMENTAL] = "Experimental",
    };
    int sec, id, col;

    for (sec = 0; sec < S_NONE; sec++) {
        bool any = false;
        for (id = 0; id < F__COUNT; id++) {
            const struct fdef *f = &flag_defs[id];
            if ((int)f->section != sec || f->help == NULL) {
                continue;
            }
            if (!any) {
                fprintf(out, "\n%s:\n", titles[sec]);
                any = true;
            }
            fprintf(out, "  --%s '%s'\n    %s\n", f->name,
                    f->help_def != NULL ? f->help_def : f->def, f->help);
        }
    }
    fputs("\nAccepted for etcd compatibility, without effect:\n ", out);
    col = 1;
    for (id = 0; id < F__COUNT; id++) {
        const struct fdef *f = &flag_defs[id];
        size_t len = strlen(f->name) + 3;
        if (f->policy != P_COMPAT || f->help != NULL || f->type == T_IGNORED) {
            continue;
        }
        if (col + (int)len > 78) {
            fputs("\n ", out);
            col = 1;
        }
        fprintf(out, " --%s", f->name);
        col += (int)len;
    }
    fputs("\n\nNot supported yet (refused unless left at the default):\n ",
          out);
    col = 1;
    for (id = 0; id < F__COUNT; id++) {
        const struct fdef *f = &flag_defs[id];
        size_t len = strlen(f->name) + 3;
        if (f->policy != P_REFUSE) {
            continue;
        }
        if (col + (int)len > 78) {
            fputs("\n ", out);
            col = 1;
        }
        fprintf(out, " --%s", f->name);
        col += (int)len;
    }
    fputs("\n", out);
}
