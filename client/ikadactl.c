/*
 * ikadactl: ikada's etcdctl 3.4-compatible CLI (see client/ctl.h).
 *
 * ikadactl answers to scripts as etcdctl 3.4.23 does ("etcdctl version:
 * 3.4.23", error messages naming "etcdctl", the same flags and defaults),
 * so that scripts written against etcdctl see the same results. Its help
 * texts keep etcdctl's layout but are generated from ikadactl's own
 * command tables (struct ctl_command, struct ctl_flag_doc), in its own
 * words.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/ctl.h"

/* ------------------------------------------------------------ the tables */

/* The global flags (parsed by ctl.c's g_flags table). */
static const struct ctl_flag_doc global_docs[] = {
    {"cacert", 0, "string", "",
     "CA bundle to check TLS servers with (no TLS in ikadactl)"},
    {"cert", 0, "string", "",
     "client certificate file for TLS (no TLS in ikadactl)"},
    {"command-timeout", 0, "duration", "5s",
     "time limit of a short command, the connection setup not included"},
    {"debug", 0, "bool", "false", "log what the client does"},
    {"dial-timeout", 0, "duration", "2s",
     "time allowed for connecting to an endpoint"},
    {"discovery-srv", 'd', "string", "",
     "domain whose DNS SRV records list the cluster's endpoints"},
    {"discovery-srv-name", 0, "string", "",
     "service name to add to the DNS SRV lookup"},
    {"endpoints", 0, "stringSlice", "[127.0.0.1:2379]",
     "server addresses (host:port), comma separated"},
    {"hex", 0, "bool", "false", "print keys and values hex encoded"},
    {"insecure-discovery", 0, "bool", "true",
     "accept SRV records that lead to plain-text endpoints"},
    {"insecure-skip-tls-verify", 0, "bool", "false",
     "trust any server certificate (for tests only)"},
    {"insecure-transport", 0, "bool", "true",
     "talk to the servers without TLS"},
    {"keepalive-time", 0, "duration", "2s",
     "how often the connection is checked with a ping"},
    {"keepalive-timeout", 0, "duration", "6s",
     "how long a ping may stay unanswered"},
    {"key", 0, "string", "",
     "private key of the client certificate (no TLS in ikadactl)"},
    {"password", 0, "string", "",
     "password to log in with (--user then holds the name alone)"},
    {"user", 0, "string", "",
     "name[:password] to log in with; a missing password is asked for"},
    {"write-out", 'w', "string", "simple",
     "output format: simple, json, protobuf, fields or table"},
    {0}};

static const struct ctl_flag_doc endpoint_group_docs[] = {
    {"cluster", 0, "bool", "false",
     "ask every member's client URLs taken from the member list"},
    {0}};

/* Commands with subcommands; their flags are inherited by the
 * subcommands (shown under GLOBAL OPTIONS there). */
static const struct ctl_command ctl_groups[] = {
    {.name = "alarm",
     .usage = "alarm <subcommand>",
     .summary = "Show or clear the cluster's alarms"},
    {.name = "check",
     .usage = "check <subcommand>",
     .summary = "Tests of the cluster's capacity"},
    {.name = "endpoint",
     .usage = "endpoint <subcommand>",
     .summary = "Questions put to each endpoint in turn",
     .flags = endpoint_group_docs},
    {.name = "lease",
     .usage = "lease <subcommand>",
     .summary = "Create, inspect, renew and revoke leases"},
    {.name = "member",
     .usage = "member <subcommand>",
     .summary = "Show and change the cluster's membership"},
    {.name = "snapshot",
     .usage = "snapshot <subcommand>",
     .summary = "Save, inspect and restore snapshots"},
    {0}};

/* etcdctl commands ikadactl does not have. Their names stay known (so a
 * command line is matched and misspellings suggested as etcdctl does), but
 * running them or asking for their help is an error. */
static const char *const ctl_unimplemented[] = {"auth",
                                                "auth disable",
                                                "auth enable",
                                                "check datascale",
                                                "completion",
                                                "completion bash",
                                                "completion fish",
                                                "completion powershell",
                                                "completion zsh",
                                                "make-mirror",
                                                "migrate",
                                                "role",
                                                "role add",
                                                "role delete",
                                                "role get",
                                                "role grant-permission",
                                                "role list",
                                                "role revoke-permission",
                                                "user",
                                                "user add",
                                                "user delete",
                                                "user get",
                                                "user grant-role",
                                                "user list",
                                                "user passwd",
                                                "user revoke-role",
                                                NULL};

/* The version command is the framework's own. */
static int cmd_version(struct ctl *ctl, int argc, char **argv)
{
    int n = 0;
    static const struct ctl_flag flags[] = {{0}};
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    fputs("etcdctl version: 3.4.23\nAPI version: 3.4\n", ctl->out);
    return CTL_EXIT_SUCCESS;
}

/* "help" is run by main() itself (run_help); the entry gives its help. */
static const struct ctl_command ctl_builtin_commands[] = {
    {.name = "version",
     .run = cmd_version,
     .usage = "version",
     .summary = "Print the version of the tool and of its API"},
    {.name = "help",
     .usage = "help [command]",
     .summary = "Show the help of a command, or the list of commands"},
    {0}};

static const struct ctl_command ctl_root = {
    .name = "etcdctl",
    .usage = "etcdctl",
    .summary = "ikadactl, the command line client of ikada (and etcd v3)"};

static const struct ctl_command *const *all_tables(void)
{
    static const struct ctl_command *const t[] = {
        ctl_builtin_commands,  ctl_kv_commands,
        ctl_lease_commands,    ctl_cluster_commands,
        ctl_lock_commands,     ctl_check_commands,
        ctl_snapshot_commands, NULL};
    return t;
}

/* A runnable command by full name (not "help"). */
static const struct ctl_command *find_impl(const char *name)
{
    for (const struct ctl_command *const *t = all_tables(); *t; t++)
        for (const struct ctl_command *c = *t; c->name; c++)
            if (c->run && strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

static const struct ctl_command *find_group(const char *name)
{
    for (const struct ctl_command *c = ctl_groups; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Any command with a help text: runnable, "help", group or the root. */
static const struct ctl_command *find_documented(const char *name)
{
    if (strcmp(name, ctl_root.name) == 0)
        return &ctl_root;
    for (const struct ctl_command *const *t = all_tables(); *t; t++)
        for (const struct ctl_command *c = *t; c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return find_group(name);
}

bool ctl_help_unimplemented(const char *name)
{
    for (size_t i = 0; ctl_unimplemented[i]; i++)
        if (strcmp(ctl_unimplemented[i], name) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ tabwriter */

/*
 * etcdctl passes its help through Go's text/tabwriter (minimum width 0,
 * tab width 8, padding 1, padded with tabs). The same alignment here:
 * cells end at a '\t'; the cells of one column in consecutive lines form
 * a block whose width is the widest cell plus one, rounded up to a
 * multiple of 8, and each cell is followed by as many tabs as it takes to
 * reach that width. The text after a line's last tab is not a cell.
 */
struct tw_line {
    char **cell; /* cells, then the rest of the line */
    size_t n;    /* number of entries in cell (cells + 1) */
    size_t *width;
};

static void tw_columns(struct tw_line *l, size_t l0, size_t l1, size_t col)
{
    size_t i = l0;
    while (i < l1) {
        if (l[i].n - 1 <= col) {
            i++;
            continue;
        }
        size_t j = i, w = 0;
        for (; j < l1 && l[j].n - 1 > col; j++) {
            size_t cw = strlen(l[j].cell[col]) + 1;
            if (cw > w)
                w = cw;
        }
        w = (w + 7) / 8 * 8;
        for (size_t k = i; k < j; k++)
            l[k].width[col] = w;
        tw_columns(l, i, j, col + 1);
        i = j;
    }
}

/* Writes @text to @f aligned as etcdctl's tabwriter does; frees nothing. */
static void tw_write(FILE *f, char *text)
{
    size_t nl = 1;
    for (char *p = text; *p; p++)
        nl += *p == '\n';
    struct tw_line *l = calloc(nl, sizeof(*l));
    if (l == NULL) {
        fputs(text, f);
        return;
    }
    size_t n = 0;
    char *save = text;
    for (;;) {
        char *eol = strchr(save, '\n');
        if (eol)
            *eol = '\0';
        size_t nc = 1;
        for (char *p = save; *p; p++)
            nc += *p == '\t';
        l[n].cell = calloc(nc, sizeof(char *));
        l[n].width = calloc(nc, sizeof(size_t));
        if (l[n].cell && l[n].width) {
            l[n].n = nc;
            char *c = save;
            for (size_t k = 0; k < nc; k++) {
                l[n].cell[k] = c;
                char *t = strchr(c, '\t');
                if (t) {
                    *t = '\0';
                    c = t + 1;
                }
            }
        } else {
            l[n].n = 0;
        }
        n++;
        if (!eol)
            break;
        save = eol + 1;
    }
    tw_columns(l, 0, n, 0);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k + 1 < l[i].n; k++) {
            size_t tw = strlen(l[i].cell[k]);
            fputs(l[i].cell[k], f);
            for (size_t t = (l[i].width[k] - tw + 7) / 8; t > 0; t--)
                fputc('\t', f);
        }
        if (l[i].n > 0)
            fputs(l[i].cell[l[i].n - 1], f);
        if (i + 1 < n)
            fputc('\n', f);
        free(l[i].cell);
        free(l[i].width);
    }
    free(l);
}

/* ------------------------------------------------------------ help texts */

static const struct ctl_flag_doc help_flag_doc = {"help", 'h', "bool", "false",
                                                  "print this help"};

static int doc_cmp(const void *a, const void *b)
{
    const struct ctl_flag_doc *x = *(const struct ctl_flag_doc *const *)a;
    const struct ctl_flag_doc *y = *(const struct ctl_flag_doc *const *)b;
    return strcmp(x->name, y->name);
}

/* Up to three flag tables (NULL allowed) merged and sorted by name, plus
 * the help flag when @help; *n gets the count. Caller frees. */
static const struct ctl_flag_doc **merge_docs(const struct ctl_flag_doc *a,
                                              const struct ctl_flag_doc *b,
                                              bool help, size_t *n)
{
    size_t cnt = help ? 1 : 0;
    for (const struct ctl_flag_doc *d = a; d && d->name; d++)
        cnt++;
    for (const struct ctl_flag_doc *d = b; d && d->name; d++)
        cnt++;
    const struct ctl_flag_doc **v = calloc(cnt + 1, sizeof(*v));
    if (v == NULL) {
        *n = 0;
        return NULL;
    }
    size_t k = 0;
    if (help)
        v[k++] = &help_flag_doc;
    for (const struct ctl_flag_doc *d = a; d && d->name; d++)
        v[k++] = d;
    for (const struct ctl_flag_doc *d = b; d && d->name; d++)
        v[k++] = d;
    qsort(v, k, sizeof(*v), doc_cmp);
    *n = k;
    return v;
}

/* One flag line in etcdctl's help layout (a cell, then the text). */
static void flag_line(FILE *f, const struct ctl_flag_doc *d, const char *word)
{
    if (d->short_name)
        fprintf(f, "  -%c, --%s", d->short_name, d->name);
    else
        fprintf(f, "      --%s", d->name);
    if (strcmp(d->type, "bool") == 0)
        fprintf(f, "[=%s]", d->def);
    else if (strcmp(d->type, "string") == 0)
        fprintf(f, "=\"%s\"", d->def);
    else
        fprintf(f, "=%s", d->def);
    if (d == &help_flag_doc)
        fprintf(f, "\tprint the help of %s\n", word);
    else
        fprintf(f, "\t%s\n", d->doc);
}

static void flag_lines(FILE *f, const struct ctl_flag_doc *a,
                       const struct ctl_flag_doc *b, bool help,
                       const char *word)
{
    size_t n;
    const struct ctl_flag_doc **v = merge_docs(a, b, help, &n);
    for (size_t i = 0; i < n; i++)
        flag_line(f, v[i], word);
    free(v);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The subcommand list of a group (@prefix "member "), or of the root
 * (@prefix NULL: every runnable command by full name); the etcdctl
 * commands ikadactl lacks go to the NOT IMPLEMENTED section. */
static void command_lines(FILE *f, const char *prefix)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    const struct ctl_command *v[128];
    size_t n = 0;
    for (const struct ctl_command *const *t = all_tables(); *t; t++)
        for (const struct ctl_command *c = *t; c->name && n < 128; c++)
            if (!prefix || strncmp(c->name, prefix, pl) == 0)
                v[n++] = c;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(v[j - 1]->name, v[j]->name) > 0;
             j--) {
            const struct ctl_command *x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    fputs("COMMANDS:\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "\t%s\t%s\n", v[i]->name + pl, v[i]->summary);
    const char *u[64];
    size_t nu = 0;
    for (size_t i = 0; ctl_unimplemented[i] && nu < 64; i++) {
        const char *name = ctl_unimplemented[i];
        const char *sp = strchr(name, ' ');
        bool in;
        if (prefix) {
            in = strncmp(name, prefix, pl) == 0;
        } else if (sp == NULL) {
            in = true;
        } else { /* a subcommand, unless its whole group is missing */
            char group[64];
            snprintf(group, sizeof(group), "%.*s", (int)(sp - name), name);
            in = !ctl_help_unimplemented(group);
        }
        if (in)
            u[nu++] = name;
    }
    qsort(u, nu, sizeof(u[0]), str_cmp);
    if (nu > 0) {
        fputs("\nNOT IMPLEMENTED BY IKADACTL:\n\t", f);
        for (size_t i = 0; i < nu; i++)
            fprintf(f, "%s%s", i ? ", " : "", u[i] + pl);
        fputc('\n', f);
    }
}

static void help_text(FILE *f, const char *name, bool with_help_flag)
{
    const struct ctl_command *c = find_documented(name);
    if (c == NULL) {
        fprintf(f, "NAME:\n\t%s - %s\n\nGLOBAL OPTIONS:\n", name,
                ctl_help_unimplemented(name) ? "not implemented by ikadactl"
                                             : "unknown command");
        flag_lines(f, global_docs, NULL, false, name);
        fputc('\n', f);
        return;
    }
    const char *word = strrchr(c->name, ' ');
    word = word ? word + 1 : c->name;
    /* the parent's words come before the usage; a group's flags are
     * inherited by its subcommands */
    char parent[128] = "";
    const struct ctl_command *pg = NULL;
    if (word != c->name) {
        snprintf(parent, sizeof(parent), "%.*s", (int)(word - c->name - 1),
                 c->name);
        pg = find_group(parent);
    }
    fprintf(f, "NAME:\n\t%s - %s\n\n", c->name, c->summary);
    if (c == &ctl_root)
        fputs("USAGE:\n\tetcdctl [flags]\n\n", f);
    else
        fprintf(f, "USAGE:\n\tetcdctl %s%s%s [flags]\n\n", parent,
                *parent ? " " : "", c->usage);
    bool group = c->run == NULL && (c == &ctl_root || find_group(name));
    if (c == &ctl_root)
        fputs("VERSION:\n\t3.4.23\n\n", f);
    if (group)
        fputs("API VERSION:\n\t3.4\n\n\n", f);
    if (c->description) {
        fputs("DESCRIPTION:\n", f);
        for (const char *p = c->description; *p;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            fprintf(f, "\t%.*s\n", (int)len, p);
            p += len + (e ? 1 : 0);
        }
        fputc('\n', f);
    }
    if (group) {
        char pfx[128];
        snprintf(pfx, sizeof(pfx), "%s ", name);
        command_lines(f, c == &ctl_root ? NULL : pfx);
        fputc('\n', f);
    }
    fputs("OPTIONS:\n", f);
    if (c == &ctl_root) {
        flag_lines(f, global_docs, NULL, with_help_flag, "etcdctl");
        fputc('\n', f);
        return;
    }
    flag_lines(f, c->flags, NULL, true, word);
    fputs("\nGLOBAL OPTIONS:\n", f);
    flag_lines(f, global_docs, pg ? pg->flags : NULL, false, word);
    fputc('\n', f);
}

void ctl_help_write(FILE *f, const char *name, bool with_help_flag)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL)
        return;
    help_text(m, name, with_help_flag);
    fclose(m);
    tw_write(f, buf);
    free(buf);
}

/* pflag's name for a type in its usage lines ("" for bool). */
static const char *pflag_type_word(const char *type)
{
    if (strcmp(type, "bool") == 0)
        return "";
    if (strcmp(type, "int64") == 0)
        return "int";
    if (strcmp(type, "uint64") == 0)
        return "uint";
    if (strcmp(type, "stringSlice") == 0)
        return "strings";
    return type;
}

static bool pflag_default_is_zero(const struct ctl_flag_doc *d)
{
    const char *t = d->type, *v = d->def;
    if (strcmp(t, "bool") == 0)
        return strcmp(v, "false") == 0;
    if (strcmp(t, "string") == 0)
        return *v == '\0';
    if (strcmp(t, "duration") == 0)
        return strcmp(v, "0s") == 0 || strcmp(v, "0") == 0;
    if (strcmp(t, "stringSlice") == 0)
        return strcmp(v, "[]") == 0;
    return strcmp(v, "0") == 0;
}

void ctl_help_write_pflag(FILE *f, const char *name)
{
    const struct ctl_command *c = find_documented(name);
    if (c == NULL)
        return;
    size_t n;
    const struct ctl_flag_doc **v = merge_docs(c->flags, NULL, true, &n);
    char **left = calloc(n + 1, sizeof(char *));
    size_t maxlen = 0;
    for (size_t i = 0; v && left && i < n; i++) {
        const char *tw = pflag_type_word(v[i]->type);
        if (v[i]->short_name)
            (void)!asprintf(&left[i], "  -%c, --%s%s%s", v[i]->short_name,
                            v[i]->name, *tw ? " " : "", tw);
        else
            (void)!asprintf(&left[i], "      --%s%s%s", v[i]->name,
                            *tw ? " " : "", tw);
        if (left[i] && strlen(left[i]) > maxlen)
            maxlen = strlen(left[i]);
    }
    fprintf(f, "Usage:\n   %s [flags]\n\nFlags:\n", c->usage);
    for (size_t i = 0; v && left && i < n; i++) {
        if (left[i] == NULL)
            continue;
        const char *doc = v[i] == &help_flag_doc ? NULL : v[i]->doc;
        fprintf(f, "%s%*s", left[i], (int)(maxlen - strlen(left[i]) + 3), "");
        if (doc)
            fputs(doc, f);
        else
            fprintf(f, "print the help of %s", c->name);
        if (!pflag_default_is_zero(v[i])) {
            if (strcmp(v[i]->type, "string") == 0)
                fprintf(f, " (default \"%s\")", v[i]->def);
            else
                fprintf(f, " (default %s)", v[i]->def);
        }
        fputc('\n', f);
        free(left[i]);
    }
    fputc('\n', f);
    free(left);
    free(v);
}

/* ------------------------------------------------------- command lookup */

/* The names of the command tree, etcdctl's (ikadactl's commands and the
 * ones it lacks): the top-level words (@parent NULL) or the subcommands
 * of @parent. Returns the count; names in *out, sorted, no duplicates. */
static size_t child_names(const char *parent, const char **out, size_t max)
{
    size_t n = 0;
    size_t pl = parent ? strlen(parent) : 0;
    const char *all[256];
    size_t na = 0;
    for (const struct ctl_command *const *t = all_tables(); *t; t++)
        for (const struct ctl_command *c = *t; c->name && na < 256; c++)
            all[na++] = c->name;
    for (const struct ctl_command *c = ctl_groups; c->name && na < 256; c++)
        all[na++] = c->name;
    for (size_t i = 0; ctl_unimplemented[i] && na < 256; i++)
        all[na++] = ctl_unimplemented[i];
    /* top-level words of multi-word names, copied (the same each call) */
    static char words[256][64];
    for (size_t i = 0; i < na; i++) {
        const char *name = all[i], *w;
        size_t wl;
        if (!parent) {
            const char *sp = strchr(name, ' ');
            w = name;
            wl = sp ? (size_t)(sp - name) : strlen(name);
        } else {
            if (strncmp(name, parent, pl) != 0 || name[pl] != ' ')
                continue;
            w = name + pl + 1;
            wl = strlen(w);
        }
        if (wl >= sizeof(words[0]))
            continue;
        bool dup = false;
        for (size_t k = 0; k < n; k++)
            if (strlen(out[k]) == wl && strncmp(out[k], w, wl) == 0)
                dup = true;
        if (dup || n >= max)
            continue;
        if (parent) {
            out[n++] = w; /* the name's tail, NUL-terminated already */
            continue;
        }
        memcpy(words[i], w, wl);
        words[i][wl] = '\0';
        out[n++] = words[i];
    }
    qsort(out, n, sizeof(out[0]), str_cmp);
    return n;
}

/* cobra's findNext: exact name, else the only name with @word as prefix. */
static const char *match_name(const char **names, size_t n, const char *word)
{
    const char *m = NULL;
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], word) == 0)
            return names[i];
        if (strncmp(names[i], word, strlen(word)) == 0)
            m = names[i], nm++;
    }
    return nm == 1 ? m : NULL;
}

static bool is_group(const char *name)
{
    const char *names[64];
    return child_names(name, names, 64) > 0;
}

static size_t levenshtein_ci(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *d = calloc((la + 1) * (lb + 1), sizeof(size_t));
    for (size_t i = 0; i <= la; i++)
        d[i * (lb + 1)] = i;
    for (size_t j = 0; j <= lb; j++)
        d[j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[(i - 1) * (lb + 1) + j] + 1;
            size_t x = d[i * (lb + 1) + j - 1] + 1;
            if (x < best)
                best = x;
            x = d[(i - 1) * (lb + 1) + j - 1] + (ca == cb ? 0 : 1);
            if (x < best)
                best = x;
            d[i * (lb + 1) + j] = best;
        }
    size_t r = d[la * (lb + 1) + lb];
    free(d);
    return r;
}

static int unknown_command(struct ctl *ctl, const char *word)
{
    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    /* cobra lists commands sorted by name */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    char *q = ctl_go_quote((const uint8_t *)word, strlen(word));
    char msg[4096];
    int off =
        snprintf(msg, sizeof(msg), "unknown command %s for \"etcdctl\"", q);
    free(q);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        size_t wl = strlen(word);
        bool pfx = true;
        for (size_t k = 0; k < wl; k++)
            if (tolower((unsigned char)names[i][k]) !=
                tolower((unsigned char)word[k])) {
                pfx = false;
                break;
            }
        if (levenshtein_ci(word, names[i]) <= 2 || pfx) {
            if (!any)
                off += snprintf(msg + off, sizeof(msg) - (size_t)off,
                                "\n\nDid you mean this?\n");
            any = true;
            off += snprintf(msg + off, sizeof(msg) - (size_t)off, "\t%s\n",
                            names[i]);
        }
    }
    fprintf(ctl->err, "Error: %s\nRun 'etcdctl --help' for usage.\n", msg);
    fprintf(ctl->err, "Error: %s\n", msg);
    return CTL_EXIT_ERROR;
}

static bool global_takes_value(const char *s)
{
    /* cobra's stripFlags: does "--name" / "-x" (no '=') eat the next arg? */
    static const char *const bools[] = {"debug",
                                        "hex",
                                        "insecure-discovery",
                                        "insecure-skip-tls-verify",
                                        "insecure-transport",
                                        "help",
                                        NULL};
    if (s[1] == '-') {
        for (size_t i = 0; bools[i]; i++)
            if (strcmp(s + 2, bools[i]) == 0)
                return false;
        return true;
    }
    return s[1] != 'h';
}

static void print_root_help(struct ctl *ctl, bool with_help_flag)
{
    ctl_help_write(ctl->out, "etcdctl", with_help_flag);
}

static int not_implemented(struct ctl *ctl, const char *name)
{
    return ctl_fail(ctl, CTL_EXIT_ERROR,
                    "\"%s\" is an etcdctl command that ikadactl does not "
                    "implement",
                    name);
}

static int run_help(struct ctl *ctl, char **words, int nwords)
{
    /* "help [command]" */
    if (nwords == 0) {
        print_root_help(ctl, true);
        return 0;
    }
    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    const char *top = match_name(names, n, words[0]);
    char full[256];
    if (top == NULL) {
        fputs("Unknown help topic [", ctl->err);
        for (int i = 0; i < nwords; i++)
            fprintf(ctl->err, "%s`%s`", i ? " " : "", words[i]);
        fputs("]\n", ctl->err);
        print_root_help(ctl, false);
        return 0;
    }
    snprintf(full, sizeof(full), "%s", top);
    if (nwords > 1 && is_group(top)) {
        n = child_names(top, names, 128);
        const char *sub = match_name(names, n, words[1]);
        if (sub)
            snprintf(full, sizeof(full), "%s %s", top, sub);
    }
    if (ctl_help_unimplemented(full))
        return not_implemented(ctl, full);
    ctl_help_write(ctl->out, full, true);
    return 0;
}

int main(int argc, char **argv)
{
    static struct ctl ctl;
    ctl_global_defaults(&ctl.g);
    ctl.out = stdout;
    ctl.err = stderr;

    /* cobra's Find: the command words, skipping flags (and the values
     * of the flags that take one). */
    int nargs = argc - 1;
    char **args = argv + 1;
    int *word_idx = calloc((size_t)argc + 1, sizeof(int));
    int nw = 0;
    for (int i = 0; i < nargs; i++) {
        const char *s = args[i];
        if (strcmp(s, "--") == 0)
            break;
        if (s[0] == '-' && s[1] != '\0') {
            if (strchr(s, '=') == NULL &&
                ((s[1] == '-' && global_takes_value(s)) ||
                 (s[1] != '-' && strlen(s) == 2 && global_takes_value(s)))) {
                if (nargs - i <= 2) /* cobra stops here */
                    break;
                i++;
            }
            continue;
        }
        if (s[0] != '\0')
            word_idx[nw++] = i;
    }

    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    char full[256];
    int used = 0;
    const struct ctl_command *cmd = NULL;
    const char *top = NULL;
    if (nw > 0) {
        top = match_name(names, n, args[word_idx[0]]);
        if (top == NULL) {
            int rc = unknown_command(&ctl, args[word_idx[0]]);
            free(word_idx);
            return rc;
        }
        used = 1;
        snprintf(full, sizeof(full), "%s", top);
        if (is_group(top) && nw > 1) {
            const char *sub_names[64];
            size_t ns = child_names(top, sub_names, 64);
            const char *sub = match_name(sub_names, ns, args[word_idx[1]]);
            if (sub) {
                snprintf(full, sizeof(full), "%s %s", top, sub);
                used = 2;
            }
        }
    }
    /* the arguments without the command words */
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    for (int i = 0; i < nargs; i++) {
        bool skip = false;
        for (int k = 0; k < used; k++)
            if (word_idx[k] == i)
                skip = true;
        if (!skip)
            rest[nrest++] = args[i];
    }
    free(word_idx);

    int rc;
    if (nw == 0) {
        /* the root command: flags, then its help */
        struct ctl_command root = {.name = "etcdctl"};
        ctl.cmd = &root;
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0) {
            print_root_help(&ctl, true);
            rc = 0;
        }
    } else if (strcmp(full, "help") == 0) {
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        struct ctl_command hc = {.name = "help"};
        ctl.cmd = &hc;
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0)
            rc = run_help(&ctl, rest, np);
    } else if (ctl_help_unimplemented(full)) {
        rc = not_implemented(&ctl, full);
    } else if ((cmd = find_impl(full)) != NULL) {
        ctl.cmd = cmd;
        ctl.cmd_name = cmd->name;
        rc = cmd->run(&ctl, nrest, rest);
    } else if (is_group(full)) {
        struct ctl_command gc = {.name = full};
        ctl.cmd = &gc;
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0) {
            ctl_print_usage(&ctl);
            rc = 0;
        }
    } else {
        rc = ctl_fail(&ctl, CTL_EXIT_ERROR,
                      "command \"%s\" is not supported by ikadactl", full);
    }
    if (ctl.cli)
        ikclient_free(ctl.cli);
    fflush(stdout);
    free(rest);
    return rc;
}
