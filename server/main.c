/*
 * ikada: the server. Parses etcd's command line, opens (or creates) the data
 * dir, starts the raft node and serves the etcd v3 gRPC API on the client
 * URLs until SIGINT/SIGTERM.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "client/grpc_client_uv.h"
#include "proto/internal.pb-c.h"
#include "server/config.h"
#include "server/errors.h"
#include "server/grpc_uv.h"
#include "server/ids.h"
#include "server/log.h"
#include "server/meta.h"
#include "server/node.h"
#include "server/service.h"

extern char **environ;

struct server {
    uv_loop_t loop;
    struct config cfg;
    struct meta meta;
    int lock_fd;
    struct node *node;
    struct service *service;
    struct grpc_uv_server grpc;
    bool grpc_started;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    bool stopping;
};

/* Member ids and the cluster id for a new cluster from --initial-cluster,
 * the way etcd derives them. */
static int meta_from_config(const struct config *cfg, struct meta *m,
                            char *errmsg)
{
    uint64_t *ids;
    int rv;

    /* One malloc arena: the libuv worker threads that encode snapshots
     * would otherwise each keep an arena of freed buffers cached (about
     * 40 MiB at 1M keys, measured with bench/memstore and malloc_info);
     * the loop thread does nearly all allocation, so nothing is lost. */
    mallopt(M_ARENA_MAX, 1);

    memset(m, 0, sizeof *m);
    m->members = calloc(cfg->n_initial_cluster, sizeof *m->members);
    ids = calloc(cfg->n_initial_cluster, sizeof *ids);
    m->name = strdup(cfg->name);
    m->token = strdup(cfg->initial_cluster_token);
    if (m->members == NULL || ids == NULL || m->name == NULL ||
        m->token == NULL) {
        free(ids);
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_initial_cluster; i++) {
        const struct config_member *cm = &cfg->initial_cluster[i];
        struct meta_member *mm = &m->members[i];
        m->n_members = i + 1;
        rv = ids_member_id((const char *const *)cm->peer_urls, cm->n_peer_urls,
                           cfg->initial_cluster_token, 0, &mm->id);
        if (rv != 0) {
            free(ids);
            ik_errmsg_printf(errmsg, "member id for %s: %s", cm->name,
                             ik_strerror(rv));
            return rv;
        }
        ids[i] = mm->id;
        mm->name = strdup(cm->name);
        mm->peer_urls = calloc(cm->n_peer_urls, sizeof *mm->peer_urls);
        if (mm->name == NULL || mm->peer_urls == NULL) {
            free(ids);
            ik_errmsg_printf(errmsg, "out of memory");
            return IK_ENOMEM;
        }
        for (size_t j = 0; j < cm->n_peer_urls; j++) {
            mm->peer_urls[j] = strdup(cm->peer_urls[j]);
            if (mm->peer_urls[j] == NULL) {
                free(ids);
                ik_errmsg_printf(errmsg, "out of memory");
                return IK_ENOMEM;
            }
            mm->n_peer_urls = j + 1;
        }
        if (strcmp(cm->name, cfg->name) == 0) {
            m->member_id = mm->id;
        }
    }
    rv = ids_cluster_id(ids, cfg->n_initial_cluster, &m->cluster_id);
    free(ids);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "cluster id: %s", ik_strerror(rv));
    }
    return rv;
}

/* --- joining an existing cluster ----------------------------------------- */

#define JOIN_TIMEOUT_MS 5000

struct join {
    uv_loop_t loop;
    struct grpc_client_uv client;
    Ikadapb__MembersResponse *resp;
    char message[IK_ERRMSG_SIZE];
    bool done;
};

static uint64_t join_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void join_done(void *data, int status, const char *message,
                      const uint8_t *resp, size_t len)
{
    struct join *j = data;
    j->done = true;
    if (status == GRPC_OK) {
        j->resp = ikadapb__members_response__unpack(NULL, len, resp);
    } else {
        snprintf(j->message, sizeof j->message, "%s",
                 message != NULL ? message : "");
    }
}

static void join_closed(struct grpc_client_uv *c)
{
    (void)c;
}

/* Ask one peer URL for the cluster's members. */
static Ikadapb__MembersResponse *join_ask(const char *url, uint64_t timeout_ms,
                                          char *why)
{
    Ikadapb__MembersRequest req = IKADAPB__MEMBERS_REQUEST__INIT;
    struct grpc_client_config cfg = {0};
    struct config_url u;
    struct join j;
    struct grpc_client_conn *conn;

    memset(&j, 0, sizeof j);
    if (config_url_parse(url, &u, why) != 0) {
        return NULL;
    }
    uv_loop_init(&j.loop);
    cfg.now_ms = join_now_ms;
    cfg.authority = u.host;
    if (grpc_client_uv_init(&j.client, &j.loop, u.host, u.port, &cfg) != 0) {
        config_url_free(&u);
        uv_loop_close(&j.loop);
        ik_errmsg_printf(why, "out of memory");
        return NULL;
    }
    conn = grpc_client_uv_conn(&j.client);
    if (conn != NULL &&
        grpc_client_unary(conn, "/ikadapb.Peer/Members", &req.base, timeout_ms,
                          NULL, 0, join_done, &j, NULL) == 0) {
        while (!j.done && uv_run(&j.loop, UV_RUN_ONCE) != 0) {
        }
    }
    grpc_client_uv_close(&j.client, join_closed);
    uv_run(&j.loop, UV_RUN_DEFAULT);
    uv_loop_close(&j.loop);
    config_url_free(&u);
    if (j.resp == NULL) {
        ik_errmsg_printf(why, "%s: %s", url,
                         j.message[0] != '\0' ? j.message : "no answer");
    }
    return j.resp;
}

static bool same_url_set(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t k = 0; k < nb && !found; k++) {
            found = strcmp(a[i], b[k]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* --initial-cluster-state=existing on an empty data dir: learn this
 * member's id and the cluster's from a running member (the member must
 * have been added with `etcdctl member add` first, as with etcd). */
static int join_cluster(const struct config *cfg, struct meta *m, char *errmsg)
{
    Ikadapb__MembersResponse *resp = NULL;
    char why[IK_ERRMSG_SIZE] = "no other member in --initial-cluster";
    int rv = IK_EINVAL;

    for (size_t i = 0; i < cfg->n_initial_cluster && resp == NULL; i++) {
        const struct config_member *cm = &cfg->initial_cluster[i];
        if (strcmp(cm->name, cfg->name) == 0) {
            continue;
        }
        for (size_t k = 0; k < cm->n_peer_urls && resp == NULL; k++) {
            resp = join_ask(cm->peer_urls[k], JOIN_TIMEOUT_MS, why);
        }
    }
    if (resp == NULL) {
        ik_errmsg_printf(errmsg, "cannot fetch the cluster's members: %s", why);
        return IK_EUNAVAILABLE;
    }
    memset(m, 0, sizeof *m);
    m->cluster_id = resp->cluster_id;
    m->members = calloc(resp->n_members + 1, sizeof *m->members);
    m->name = strdup(cfg->name);
    m->token = strdup(cfg->initial_cluster_token);
    if (m->members == NULL || m->name == NULL || m->token == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        rv = IK_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < resp->n_members; i++) {
        Etcdserverpb__Member *rm = resp->members[i];
        struct meta_member *mm = &m->members[i];
        m->n_members = i + 1;
        mm->id = rm->id;
        mm->name = strdup(rm->name);
        mm->peer_urls = calloc(rm->n_peerurls + 1, sizeof *mm->peer_urls);
        if (mm->name == NULL || mm->peer_urls == NULL) {
            ik_errmsg_printf(errmsg, "out of memory");
            rv = IK_ENOMEM;
            goto out;
        }
        for (size_t k = 0; k < rm->n_peerurls; k++) {
            mm->peer_urls[k] = strdup(rm->peerurls[k]);
            if (mm->peer_urls[k] == NULL) {
                ik_errmsg_printf(errmsg, "out of memory");
                rv = IK_ENOMEM;
                goto out;
            }
            mm->n_peer_urls = k + 1;
        }
        if (same_url_set(rm->peerurls, rm->n_peerurls,
                         cfg->initial_advertise_peer_urls,
                         cfg->n_initial_advertise_peer_urls)) {
            m->member_id = rm->id;
        }
    }
    if (m->member_id == 0) {
        ik_errmsg_printf(errmsg,
                         "no member of cluster %016llx has this member's "
                         "peer URLs (add it with 'etcdctl member add' "
                         "first)",
                         (unsigned long long)m->cluster_id);
        rv = IK_EINVAL;
        goto out;
    }
    rv = 0;
out:
    ikadapb__members_response__free_unpacked(resp, NULL);
    return rv;
}

#define CLUSTER_CHECK_TIMEOUT_MS 1000

/* A restarted member checks that the running members it can reach belong
 * to the cluster its data dir records: a data dir from another cluster is
 * refused. Members that do not answer are skipped (they may be starting
 * too). */
static int check_cluster_id(const struct meta *m, char *errmsg)
{
    for (size_t i = 0; i < m->n_members; i++) {
        const struct meta_member *mm = &m->members[i];
        char why[IK_ERRMSG_SIZE];
        Ikadapb__MembersResponse *resp;
        uint64_t theirs;

        if (mm->id == m->member_id || mm->n_peer_urls == 0) {
            continue;
        }
        resp = join_ask(mm->peer_urls[0], CLUSTER_CHECK_TIMEOUT_MS, why);
        if (resp == NULL) {
            continue;
        }
        theirs = resp->cluster_id;
        ikadapb__members_response__free_unpacked(resp, NULL);
        if (theirs != m->cluster_id) {
            ik_errmsg_printf(errmsg,
                             "data dir belongs to cluster %016llx, but the "
                             "member at %s is in cluster %016llx",
                             (unsigned long long)m->cluster_id,
                             mm->peer_urls[0], (unsigned long long)theirs);
            return IK_EINVAL;
        }
        return 0; /* one answer is enough */
    }
    return 0;
}

/* Open the data dir: lock it, then read its metadata or, on first start,
 * derive and write it. Sets *bootstrap when raft must be bootstrapped. */
static int open_data_dir(struct server *s, bool *bootstrap, char *errmsg)
{
    const struct config *cfg = &s->cfg;
    struct stat st;
    int rv;

    /* etcd's wording when the data dir cannot be a directory. */
    if ((stat(cfg->data_dir, &st) == 0 && !S_ISDIR(st.st_mode)) ||
        (stat(cfg->data_dir, &st) != 0 && errno == ENOTDIR)) {
        ik_errmsg_printf(errmsg, "error listing data dir: %s", cfg->data_dir);
        return IK_EINVAL;
    }
    rv = meta_mkdirs(cfg->data_dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = meta_lock(cfg->data_dir, &s->lock_fd, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = meta_read(cfg->data_dir, &s->meta, errmsg);
    if (rv == 0) {
        *bootstrap = false;
        if (strcmp(s->meta.name, cfg->name) != 0) {
            log_warn("data dir %s belongs to member %s, started as %s",
                     cfg->data_dir, s->meta.name, cfg->name);
        }
        return check_cluster_id(&s->meta, errmsg);
    }
    if (rv != IK_ENOENT) {
        return rv;
    }
    rv = config_verify_bootstrap(&s->cfg, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (cfg->initial_cluster_state == CONFIG_CLUSTER_STATE_EXISTING) {
        rv = join_cluster(cfg, &s->meta, errmsg);
        if (rv == 0) {
            rv = meta_write(cfg->data_dir, &s->meta, errmsg);
        }
        *bootstrap = false;
        return rv;
    }
    rv = meta_from_config(cfg, &s->meta, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = meta_write(cfg->data_dir, &s->meta, errmsg);
    if (rv != 0) {
        return rv;
    }
    *bootstrap = true;
    return 0;
}

/* host:port of a URL as canonical raft wants an address. */
static void url_hostport(const struct config_url *u, char *buf, size_t size)
{
    if (strchr(u->host, ':') != NULL) {
        snprintf(buf, size, "[%s]:%u", u->host, (unsigned)u->port);
    } else {
        snprintf(buf, size, "%s:%u", u->host, (unsigned)u->port);
    }
}

/* A start-up failure: etcd logs these at critical level from etcdmain. */
static void fail(const char *what, const char *errmsg)
{
    log_emit(LOG_FATAL, "etcdmain: %s", errmsg);
    fprintf(stderr, "ikada: %s: %s\n", what, errmsg);
}

static int start_grpc(struct server *s, char *errmsg)
{
    int rv;

    rv = grpc_uv_server_init(&s->grpc, &s->loop,
                             service_grpc_config(s->service));
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "grpc server: %s", ik_strerror(rv));
        return rv;
    }
    s->grpc_started = true;
    for (size_t i = 0; i < s->cfg.n_listen_client_urls; i++) {
        const struct config_url *u = &s->cfg.listen_client_urls[i];
        if (strcmp(u->scheme, "http") != 0) {
            ik_errmsg_printf(errmsg,
                             "%s: TLS client URLs are not supported "
                             "yet",
                             u->raw);
            return IK_EINVAL;
        }
        rv = grpc_uv_server_listen(&s->grpc, u->host, u->port, errmsg);
        if (rv != 0) {
            return rv;
        }
        log_info("serving client traffic insecurely on %s", u->raw);
    }
    return 0;
}

/* The member is part of the cluster: serve clients (etcd, too, starts
 * serving only once its attributes are published). */
static void on_ready(void *arg)
{
    struct server *s = arg;
    char errmsg[IK_ERRMSG_SIZE] = "";

    if (start_grpc(s, errmsg) != 0) {
        fail("cannot serve clients", errmsg);
        fflush(stderr);
        _exit(1);
    }
    log_info("ready to serve client requests");
}

static void shutdown_server(struct server *s);

/* This member was removed from the cluster: stop, as etcd does. */
static void on_removed(void *arg)
{
    shutdown_server(arg);
}

static int start_node(struct server *s, bool bootstrap, char *errmsg)
{
    struct service_options sopts = {
        .loop = &s->loop,
        .max_txn_ops = s->cfg.max_txn_ops,
        .max_request_bytes = s->cfg.max_request_bytes,
    };
    const struct config *cfg = &s->cfg;
    struct node_options opts;
    struct node_member *members;
    struct config_url self_url;
    char raft_dir[4096];
    char raft_address[300];
    char bind_address[300];
    const char *self_peer = NULL;
    int rv;

    rv = meta_raft_dir(cfg->data_dir, raft_dir, sizeof raft_dir);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "data dir path too long");
        return rv;
    }
    rv = service_init(&s->service, NULL, &sopts);
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "out of memory");
        return rv;
    }
    members = calloc(s->meta.n_members, sizeof *members);
    if (members == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < s->meta.n_members; i++) {
        const struct meta_member *mm = &s->meta.members[i];
        members[i].id = mm->id;
        members[i].name = mm->name;
        members[i].peer_urls = mm->peer_urls;
        members[i].n_peer_urls = mm->n_peer_urls;
        if (mm->id == s->meta.member_id && mm->n_peer_urls > 0) {
            self_peer = mm->peer_urls[0];
        }
    }
    if (self_peer == NULL) {
        free(members);
        ik_errmsg_printf(errmsg, "member %s is not in the cluster's members",
                         s->meta.name);
        return IK_EINVAL;
    }
    rv = config_url_parse(self_peer, &self_url, errmsg);
    if (rv != 0) {
        free(members);
        return rv;
    }
    url_hostport(&self_url, raft_address, sizeof raft_address);
    config_url_free(&self_url);
    url_hostport(&cfg->listen_peer_urls[0], bind_address, sizeof bind_address);

    memset(&opts, 0, sizeof opts);
    opts.raft_dir = raft_dir;
    opts.raft_address = raft_address;
    opts.bind_address = bind_address;
    opts.member_id = s->meta.member_id;
    opts.cluster_id = s->meta.cluster_id;
    opts.name = cfg->name;
    opts.client_urls = cfg->advertise_client_urls;
    opts.n_client_urls = cfg->n_advertise_client_urls;
    opts.ready_cb = on_ready;
    opts.removed_cb = on_removed;
    opts.ready_arg = s;
    opts.token = s->meta.token;
    opts.peer_methods = service_peer_methods(s->service, &opts.n_peer_methods);
    opts.members = members;
    opts.n_members = s->meta.n_members;
    opts.bootstrap = bootstrap;
    opts.heartbeat_ms = cfg->heartbeat_ms;
    opts.election_ms = cfg->election_ms;
    opts.snapshot_count = (unsigned)cfg->snapshot_count;
    opts.max_request_bytes = cfg->max_request_bytes;
    opts.quota_bytes = cfg->quota_backend_bytes;
    opts.compact_by_revision =
        cfg->auto_compaction_mode == CONFIG_COMPACTION_REVISION;
    opts.compact_retention = cfg->auto_compaction_retention_value;
    rv = node_init(&s->node, &s->loop, &opts, errmsg);
    free(members);
    if (rv == 0) {
        service_set_node(s->service, s->node);
    }
    return rv;
}

/* The member stopped (see node_close): leave without tearing raft down. */
static void node_closed(void *arg)
{
    (void)arg;
    log_info("stopped");
    fflush(NULL);
    exit(0);
}

static void grpc_closed(struct grpc_uv_server *g)
{
    struct server *s = g->data;
    if (s->node != NULL) {
        node_close(s->node, node_closed, s);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    if (!s->stopping) {
        log_info("received %s, shutting down", strsignal(signum));
    }
    shutdown_server(s);
}

static void shutdown_server(struct server *s)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    if (s->grpc_started) {
        s->grpc.data = s;
        grpc_uv_server_close(&s->grpc, grpc_closed);
    } else {
        node_close(s->node, node_closed, s);
    }
}

/* Report a configuration error the way etcd does; returns the exit status. */
static int report_config_error(const struct config *cfg, const char *errmsg)
{
    switch (cfg->error_kind) {
    case CONFIG_ERR_USAGE:
        fprintf(stderr, "%s\n", errmsg);
        config_print_usage(stderr);
        break;
    case CONFIG_ERR_VERIFY:
        log_error("error verifying flags, %s. See 'etcd --help'.", errmsg);
        if (cfg->error_hint != NULL) {
            log_error("%s", cfg->error_hint);
        }
        break;
    case CONFIG_ERR_FATAL:
        log_emit(LOG_FATAL, "%s: %s", cfg->error_pkg, errmsg);
        break;
    case CONFIG_ERR_PANIC:
        fprintf(stderr, "panic: %s\n", errmsg);
        break;
    default:
        fprintf(stderr, "ikada: %s\n", errmsg);
        break;
    }
    return cfg->exit_status != 0 ? cfg->exit_status : 1;
}

int main(int argc, char **argv)
{
    struct server s;
    char errmsg[IK_ERRMSG_SIZE] = "";
    bool bootstrap = false;
    int rv;

    memset(&s, 0, sizeof s);
    s.lock_fd = -1;
    signal(SIGPIPE, SIG_IGN);

    rv = config_init(&s.cfg);
    if (rv == 0) {
        rv = config_parse(&s.cfg, argc, argv, environ, errmsg);
    }
    if (rv != 0) {
        rv = report_config_error(&s.cfg, errmsg);
        config_close(&s.cfg);
        return rv;
    }
    if (s.cfg.help_requested) {
        config_print_usage(stderr);
        config_print_help(stdout);
        config_close(&s.cfg);
        return 0;
    }
    if (s.cfg.version_requested) {
        config_print_version(stdout);
        config_close(&s.cfg);
        return 0;
    }
    log_set_level(s.cfg.debug ? LOG_DEBUG
                              : (enum log_level)log_level_parse(
                                    config_log_level_name(s.cfg.log_level)));
    for (size_t i = 0; i < s.cfg.n_logs; i++) {
        const struct config_log_entry *e = &s.cfg.logs[i];
        log_emit(e->level == CONFIG_LOG_WARN ? LOG_WARN : LOG_INFO, "%s: %s",
                 e->pkg, e->msg);
    }
    log_info("starting ikada %s (etcd %s API) as member %s, data dir %s",
             CONFIG_IKADA_VERSION, CONFIG_ETCD_VERSION, s.cfg.name,
             s.cfg.data_dir);

    rv = open_data_dir(&s, &bootstrap, errmsg);
    if (rv != 0) {
        if (s.cfg.error_kind != CONFIG_ERR_NONE) {
            rv = report_config_error(&s.cfg, errmsg);
            meta_free(&s.meta);
            config_close(&s.cfg);
            return rv;
        }
        fail("cannot open data dir", errmsg);
        goto out;
    }
    uv_loop_init(&s.loop);
    rv = start_node(&s, bootstrap, errmsg);
    if (rv != 0) {
        fail("cannot start raft", errmsg);
        goto out_loop;
    }
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);

    uv_run(&s.loop, UV_RUN_DEFAULT);
    log_info("stopped");
    rv = 0;

out_loop:
    if (rv != 0) {
        /* A half-started server must not linger: exit without serving. */
        fflush(stderr);
        _exit(1);
    }
    service_free(s.service);
    uv_loop_close(&s.loop);
out:
    meta_free(&s.meta);
    if (s.lock_fd >= 0) {
        meta_unlock(s.lock_fd);
    }
    config_close(&s.cfg);
    return rv != 0 ? 1 : 0;
}
