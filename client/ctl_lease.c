/* ctl_lease.c: ikadactl's lease commands (grant, revoke, timetolive, list,
 * keep-alive), printed as etcdctl 3.4 prints clientv3's lease types. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client/ctl.h"
#include "client/ctl_cluster.h"
#include "server/errors.h"

#define FLAG(n, k, v)          \
    {                          \
        n, 0, k, v, NULL, NULL \
    }

static uint64_t cmd_timeout(const struct ctl *ctl)
{
    return ctl->g.command_timeout_ms ? ctl->g.command_timeout_ms : 5000;
}

/* ExitWithError(code, fmt.Errorf(prefix + "(%v)")) style failures. */
static int fail_wrapped(struct ctl *ctl, int code, int rc,
                        const struct ikclient_status *st, const char *prefix,
                        const char *suffix)
{
    char *msg = ctl_cluster_error_text(ctl, rc, st);
    ctl_fail(ctl, code, "%s%s%s", prefix, msg ? msg : "out of memory", suffix);
    free(msg);
    return code;
}

/* leaseFromArgs: the hex lease ID; -1 or the exit code. */
static int lease_arg(struct ctl *ctl, const char *s, int64_t *id)
{
    char err[256];
    if (ctl_cluster_parse_int64(s, 16, id, err, sizeof err) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "bad lease ID arg (%s), expecting ID in Hex", err);
    return -1;
}

/* JSON of clientv3's lease responses: the embedded header's fields first,
 * then the type's own. */
static void json_open(struct ctl *ctl, const Etcdserverpb__ResponseHeader *h,
                      bool *first)
{
    *first = true;
    fputc('{', ctl->out);
    ctl_cluster_json_header(ctl->out, h, first);
}

static const char *comma(bool *first)
{
    bool f = *first;
    *first = false;
    return f ? "" : ",";
}

/* -w protobuf of a clientv3 lease type: its Marshal is the embedded
 * header's. */
static void pb_header(struct ctl *ctl, const Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__ResponseHeader empty = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    ctl_print_protobuf(ctl, h ? &h->base : &empty.base);
}

/* -w protobuf of a lease response (its header), or the unsupported-format
 * error for a format the caller does not print; returns the exit code. */
static int pb_or_unsupported(struct ctl *ctl,
                             const Etcdserverpb__ResponseHeader *h)
{
    if (ctl->g.write_out != CTL_OUT_PROTOBUF)
        return ctl_cluster_unsupported(ctl);
    pb_header(ctl, h);
    return 0;
}

/* -w fields of a lease grant / keep-alive response; returns the exit
 * code. */
static int fields_id_ttl(struct ctl *ctl, const Etcdserverpb__ResponseHeader *h,
                         int64_t id, int64_t ttl)
{
    int rc = ctl_cluster_fields_header(ctl, h);
    if (rc == 0)
        fprintf(ctl->out, "\"ID\" : %" PRId64 "\n\"TTL\" : %" PRId64 "\n", id,
                ttl);
    return rc;
}

static int print_keepalive(struct ctl *ctl,
                           const Etcdserverpb__LeaseKeepAliveResponse *r)
{
    FILE *o = ctl->out;
    bool first;
    int rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        fprintf(o, "lease %016" PRIx64 " keepalived with TTL(%" PRId64 ")\n",
                (uint64_t)r->id, r->ttl);
        break;
    case CTL_OUT_JSON:
        json_open(ctl, r->header, &first);
        fprintf(o, "%s\"ID\":%" PRId64 ",\"TTL\":%" PRId64 "}\n", comma(&first),
                r->id, r->ttl);
        break;
    case CTL_OUT_FIELDS:
        rc = fields_id_ttl(ctl, r->header, r->id, r->ttl);
        break;
    default:
        rc = pb_or_unsupported(ctl, r->header);
        break;
    }
    fflush(o);
    return rc;
}

static int lease_grant(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    int64_t ttl;
    char err[256];
    struct ikclient *c;
    Etcdserverpb__LeaseGrantRequest req =
        ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    Etcdserverpb__LeaseGrantResponse *r = NULL;
    struct ikclient_status st;
    FILE *o = ctl->out;
    bool first;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "lease grant command needs TTL argument");
    if (ctl_cluster_parse_int64(argv[0], 10, &ttl, err, sizeof err) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS, "bad TTL (%s)", err);
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    req.ttl = ttl;
    rc = ikclient_lease_grant(c, &req, &r, &st);
    if (rc != 0)
        return fail_wrapped(ctl, CTL_EXIT_ERROR, rc, &st,
                            "failed to grant lease (", ")");
    rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        fprintf(o, "lease %016" PRIx64 " granted with TTL(%" PRId64 "s)\n",
                (uint64_t)r->id, r->ttl);
        break;
    case CTL_OUT_JSON:
        json_open(ctl, r->header, &first);
        fprintf(o, "%s\"ID\":%" PRId64 ",\"TTL\":%" PRId64 ",\"Error\":",
                comma(&first), r->id, r->ttl);
        ctl_cluster_json_string(o, r->error, strlen(r->error));
        fputs("}\n", o);
        break;
    case CTL_OUT_FIELDS:
        rc = fields_id_ttl(ctl, r->header, r->id, r->ttl);
        break;
    default:
        rc = pb_or_unsupported(ctl, r->header);
        break;
    }
    fflush(o);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

static int lease_revoke(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    int64_t id;
    struct ikclient *c;
    Etcdserverpb__LeaseRevokeRequest req =
        ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    Etcdserverpb__LeaseRevokeResponse *r = NULL;
    struct ikclient_status st;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "lease revoke command needs 1 argument");
    rc = lease_arg(ctl, argv[0], &id);
    if (rc >= 0)
        return rc;
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    req.id = id;
    rc = ikclient_lease_revoke(c, &req, &r, &st);
    if (rc != 0)
        return fail_wrapped(ctl, CTL_EXIT_ERROR, rc, &st,
                            "failed to revoke lease (", ")");
    rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        fprintf(ctl->out, "lease %016" PRIx64 " revoked\n", (uint64_t)id);
        break;
    case CTL_OUT_JSON:
        ctl_print_json(ctl, &r->base);
        break;
    case CTL_OUT_FIELDS:
        rc = ctl_cluster_fields_header(ctl, r->header);
        break;
    case CTL_OUT_PROTOBUF:
        ctl_print_protobuf(ctl, &r->base);
        break;
    default:
        rc = ctl_cluster_unsupported(ctl);
        break;
    }
    fflush(ctl->out);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

static int lease_timetolive(struct ctl *ctl, int argc, char **argv)
{
    bool keys = false;
    const struct ctl_flag flags[] = {FLAG("keys", CTL_FLAG_BOOL, &keys), {0}};
    int nargs, rc;
    int64_t id;
    struct ikclient *c;
    Etcdserverpb__LeaseTimeToLiveRequest req =
        ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    Etcdserverpb__LeaseTimeToLiveResponse *r = NULL;
    struct ikclient_status st;
    FILE *o = ctl->out;
    bool first;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "lease timetolive command needs lease ID as argument");
    rc = lease_arg(ctl, argv[0], &id);
    if (rc >= 0)
        return rc;
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    req.id = id;
    req.keys = keys;
    rc = ikclient_lease_time_to_live(c, &req, &r, &st);
    if (rc != 0)
        return fail_wrapped(ctl, CTL_EXIT_BAD_CONNECTION, rc, &st, "", "");
    rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        if (r->grantedttl == 0 && r->ttl == -1) {
            fprintf(o, "lease %016" PRIx64 " already expired\n",
                    (uint64_t)r->id);
            break;
        }
        fprintf(o,
                "lease %016" PRIx64 " granted with TTL(%" PRId64
                "s), remaining(%" PRId64 "s)",
                (uint64_t)r->id, r->grantedttl, r->ttl);
        if (keys) {
            fputs(", attached keys([", o);
            for (size_t i = 0; i < r->n_keys; i++) {
                if (i)
                    fputc(' ', o);
                if (r->keys[i].len > 0)
                    fwrite(r->keys[i].data, 1, r->keys[i].len, o);
            }
            fputs("])", o);
        }
        fputc('\n', o);
        break;
    case CTL_OUT_JSON: {
        json_open(ctl, r->header, &first);
        fprintf(o,
                "%s\"id\":%" PRId64 ",\"ttl\":%" PRId64
                ",\"granted-ttl\":%" PRId64 ",\"keys\":",
                comma(&first), r->id, r->ttl, r->grantedttl);
        if (r->n_keys == 0) {
            fputs("null", o);
        } else {
            /* [][]byte: base64 strings; borrow the framework's bytes
             * encoding through a one-field message */
            fputc('[', o);
            for (size_t i = 0; i < r->n_keys; i++) {
                static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                                          "klmnopqrstuvwxyz0123456789+/";
                const uint8_t *d = r->keys[i].data;
                size_t n = r->keys[i].len;
                fputs(i ? ",\"" : "\"", o);
                for (size_t j = 0; j < n; j += 3) {
                    uint32_t v = (uint32_t)d[j] << 16;
                    if (j + 1 < n)
                        v |= (uint32_t)d[j + 1] << 8;
                    if (j + 2 < n)
                        v |= d[j + 2];
                    fputc(b64[(v >> 18) & 63], o);
                    fputc(b64[(v >> 12) & 63], o);
                    fputc(j + 1 < n ? b64[(v >> 6) & 63] : '=', o);
                    fputc(j + 2 < n ? b64[v & 63] : '=', o);
                }
                fputc('"', o);
            }
            fputc(']', o);
        }
        fputs("}\n", o);
        break;
    }
    case CTL_OUT_FIELDS:
        rc = ctl_cluster_fields_header(ctl, r->header);
        if (rc)
            break;
        fprintf(o,
                "\"ID\" : %" PRId64 "\n\"TTL\" : %" PRId64
                "\n\"GrantedTTL\" : %" PRId64 "\n",
                r->id, r->ttl, r->grantedttl);
        for (size_t i = 0; i < r->n_keys; i++) {
            fputs("\"Key\" : ", o);
            ctl_cluster_go_quote(o, (const char *)r->keys[i].data,
                                 r->keys[i].len);
            fputc('\n', o);
        }
        break;
    default:
        rc = pb_or_unsupported(ctl, r->header);
        break;
    }
    fflush(o);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

static int lease_list(struct ctl *ctl, int argc, char **argv)
{
    static const struct ctl_flag flags[] = {{0}};
    int nargs, rc;
    struct ikclient *c;
    Etcdserverpb__LeaseLeasesRequest req =
        ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
    Etcdserverpb__LeaseLeasesResponse *r = NULL;
    struct ikclient_status st;
    FILE *o = ctl->out;
    bool first;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    rc = ikclient_call(c, "/etcdserverpb.Lease/LeaseLeases", &req.base,
                       &etcdserverpb__lease_leases_response__descriptor,
                       IKCLIENT_IDEMPOTENT, cmd_timeout(ctl),
                       (ProtobufCMessage **)&r, &st);
    if (rc != 0)
        return fail_wrapped(ctl, CTL_EXIT_BAD_CONNECTION, rc, &st, "", "");
    rc = 0;
    switch (ctl->g.write_out) {
    case CTL_OUT_SIMPLE:
        fprintf(o, "found %zu leases\n", r->n_leases);
        for (size_t i = 0; i < r->n_leases; i++)
            fprintf(o, "%016" PRIx64 "\n", (uint64_t)r->leases[i]->id);
        break;
    case CTL_OUT_JSON:
        json_open(ctl, r->header, &first);
        fprintf(o, "%s\"leases\":[", comma(&first));
        for (size_t i = 0; i < r->n_leases; i++)
            fprintf(o, "%s{\"id\":%" PRId64 "}", i ? "," : "",
                    r->leases[i]->id);
        fputs("]}\n", o);
        break;
    case CTL_OUT_FIELDS:
        rc = ctl_cluster_fields_header(ctl, r->header);
        if (rc)
            break;
        for (size_t i = 0; i < r->n_leases; i++)
            fprintf(o, "\"ID\" : %" PRId64 "\n", r->leases[i]->id);
        break;
    default:
        rc = pb_or_unsupported(ctl, r->header);
        break;
    }
    fflush(o);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

struct ka_state {
    struct ctl *ctl;
    struct ikclient *c;
    int rc;
    bool done;
    bool lib_done; /* the keep-alive ended by itself */
};

static void ka_cb(struct ikclient_keepalive *ka, void *data,
                  const Etcdserverpb__LeaseKeepAliveResponse *resp, bool done,
                  const struct ikclient_status *st)
{
    struct ka_state *s = data;
    (void)ka;
    (void)st;
    /* the answer that says the lease is gone closes clientv3's channel
     * without being displayed */
    if (resp && resp->ttl > 0 && s->rc == 0) {
        int rc = print_keepalive(s->ctl, resp);
        if (rc) {
            s->rc = rc;
            s->done = true;
            ikclient_break(s->c);
            return;
        }
    }
    if (done) {
        s->lib_done = true;
        s->done = true;
        ikclient_break(s->c);
    }
}

static int lease_keepalive(struct ctl *ctl, int argc, char **argv)
{
    bool once = false;
    const struct ctl_flag flags[] = {FLAG("once", CTL_FLAG_BOOL, &once), {0}};
    int nargs, rc;
    int64_t id;
    struct ikclient *c;
    struct ikclient_status st;

    rc = ctl_parse_flags(ctl, argc, argv, flags, &nargs);
    if (rc >= 0)
        return rc;
    if (nargs != 1)
        return ctl_fail(ctl, CTL_EXIT_BAD_ARGS,
                        "lease keep-alive command needs lease ID as argument");
    rc = lease_arg(ctl, argv[0], &id);
    if (rc >= 0)
        return rc;
    c = ctl_client(ctl);
    if (c == NULL)
        return CTL_EXIT_BAD_CONNECTION;
    /* --once and the loop both open a LeaseKeepAlive stream */
    ctl_stream_auth(ctl, c, CTL_STREAM_LEASE);
    if (once) {
        Etcdserverpb__LeaseKeepAliveResponse *r = NULL;
        rc = ikclient_keepalive_once(c, id, &r, &st);
        if (rc == 0 && r->ttl <= 0) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
            return ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION,
                            "etcdserver: requested lease not found");
        }
        if (rc != 0) {
            /* a stream: clientv3 logs no retry warning for it */
            return ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "%s",
                            rc == IK_EGRPC ? ctl_go_error_string(&st)
                                           : ik_strerror(rc));
        }
        rc = print_keepalive(ctl, r);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return rc;
    }
    struct ka_state s = {ctl, c, 0, false, false};
    struct ikclient_keepalive *ka = NULL;
    if (ikclient_keepalive(c, id, ka_cb, &s, &ka) != 0)
        return ctl_fail(ctl, CTL_EXIT_BAD_CONNECTION, "out of memory");
    while (!s.done)
        ikclient_run(c, 0);
    if (!s.lib_done)
        ikclient_keepalive_stop(ka);
    if (s.rc)
        return s.rc;
    if (ctl->g.write_out == CTL_OUT_SIMPLE) {
        fprintf(ctl->out, "lease %016" PRIx64 " expired or revoked.\n",
                (uint64_t)id);
        fflush(ctl->out);
    }
    return 0;
}

static const struct ctl_flag_doc timetolive_docs[] = {
    {"keys", 0, "bool", "false", "also list the keys bound to the lease"}, {0}};

static const struct ctl_flag_doc keepalive_docs[] = {
    {"once", 0, "bool", "false", "renew the lease one time, then exit"}, {0}};

const struct ctl_command ctl_lease_commands[] = {
    {.name = "lease grant",
     .run = lease_grant,
     .usage = "grant <ttl>",
     .summary = "Create a lease that expires after <ttl> seconds"},
    {.name = "lease revoke",
     .run = lease_revoke,
     .usage = "revoke <leaseID>",
     .summary = "End a lease now, deleting the keys bound to it"},
    {.name = "lease timetolive",
     .run = lease_timetolive,
     .usage = "timetolive <leaseID> [options]",
     .summary = "Show how long a lease has left",
     .flags = timetolive_docs},
    {.name = "lease list",
     .run = lease_list,
     .usage = "list",
     .summary = "Show the IDs of the leases in force"},
    {.name = "lease keep-alive",
     .run = lease_keepalive,
     .usage = "keep-alive [options] <leaseID>",
     .summary = "Renew a lease again and again until interrupted",
     .flags = keepalive_docs},
    {0}};
