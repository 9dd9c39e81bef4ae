/*
 * snapfile: snapshot files, their status, and restoring one into a new
 * data dir (see snapfile.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw FTW_DEPTH/FTW_PHYS */
#endif
#include "snapshot/snapfile.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "proto/internal.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "server/config.h"
#include "server/errors.h"
#include "server/ids.h"
#include "server/meta.h"
#include "server/mvcc.h"
#include "snapshot/snapshot.h"

#define HASH_SIZE 32
#define ALIGN 512
#define SNAP_MAGIC "IKADASNP"
#define SNAP_HEADER 32
/* bbolt: a meta page starts with a 16-byte page header, then the magic. */
#define BOLT_MAGIC 0xED0CDAEDu
#define BOLT_MAGIC_OFF 16
/* The restored raft state: one snapshot at index 1, term 1. */
#define RESTORE_INDEX 1
#define RESTORE_TERM 1

/* Go's text of an errno (syscall.Errno.Error(): lower case). */
static const char *go_strerror(int e)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) {
        buf[0] = (char)(buf[0] - 'A' + 'a');
    }
    return buf;
}

static void emsg(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void emsg(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, SNAPFILE_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Go's %v of a []byte: "[1 2 3]". */
static void go_bytes(char *buf, size_t size, const uint8_t *p, size_t n)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (size_t i = 0; i < n && off < size; i++) {
        off += (size_t)snprintf(buf + off, size - off, i == 0 ? "%u" : " %u",
                                p[i]);
    }
    if (off < size) {
        snprintf(buf + off, size - off, "]");
    }
}

static int read_all(const char *path, uint8_t **out, size_t *len, char *errmsg)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int e = errno;
        emsg(errmsg, "open %s: %s", path, go_strerror(e));
        return e == ENOENT ? IK_ENOENT : IK_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        emsg(errmsg, "read %s: %s", path,
             fstat(fd, &st) != 0   ? go_strerror(e)
             : S_ISDIR(st.st_mode) ? "is a directory"
                                   : "not a regular file");
        close(fd);
        return IK_EIO;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        close(fd);
        emsg(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            emsg(errmsg, "read %s: %s", path,
                 n < 0 ? go_strerror(errno) : "file shrank while reading");
            free(buf);
            close(fd);
            return IK_EIO;
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

/* Read, check the hash trailer (when asked), locate and fully verify the
 * snapshot; with @store non-NULL, the store is decoded into it. */
static int read_file(const char *path, bool check_hash, struct snapfile *f,
                     struct mvcc *store, char *errmsg)
{
    struct mvcc tmp;
    size_t body;
    uint64_t total;
    int rv;

    memset(f, 0, sizeof *f);
    rv = read_all(path, &f->data, &f->file_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    f->has_hash = f->file_len % ALIGN == HASH_SIZE;
    body = f->has_hash ? f->file_len - HASH_SIZE : f->file_len;
    if (check_hash && !f->has_hash) {
        emsg(errmsg, "snapshot missing hash but --skip-hash-check=false");
        rv = IK_ECORRUPT;
        goto fail;
    }
    if (check_hash) {
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        if (EVP_Digest(f->data, body, digest, &dlen, EVP_sha256(), NULL) != 1) {
            emsg(errmsg, "sha256: libcrypto failed");
            rv = IK_ENOMEM;
            goto fail;
        }
        if (dlen != HASH_SIZE ||
            memcmp(digest, f->data + body, HASH_SIZE) != 0) {
            char want[200], got[200];
            go_bytes(want, sizeof want, f->data + body, HASH_SIZE);
            go_bytes(got, sizeof got, digest, dlen);
            emsg(errmsg, "expected sha256 %s, got %s", want, got);
            rv = IK_ECORRUPT;
            goto fail;
        }
    }
    if (body >= BOLT_MAGIC_OFF + 4 &&
        le32(f->data + BOLT_MAGIC_OFF) == BOLT_MAGIC) {
        emsg(errmsg,
             "%s is an etcd (bbolt) snapshot: ikada can only read "
             "snapshots saved from ikada",
             path);
        rv = IK_ECORRUPT;
        goto fail;
    }
    if (body < SNAP_HEADER || memcmp(f->data, SNAP_MAGIC, 8) != 0) {
        emsg(errmsg, "%s is not an ikada snapshot (bad magic)", path);
        rv = IK_ECORRUPT;
        goto fail;
    }
    total = le64(f->data + 16);
    if (total < SNAP_HEADER || total > body) {
        emsg(errmsg,
             "snapshot file %s is truncated (the snapshot has %llu bytes, "
             "the file %zu)",
             path, (unsigned long long)total, body);
        rv = IK_ECORRUPT;
        goto fail;
    }
    f->snap = f->data;
    f->snap_len = (size_t)total;
    mvcc_init(&tmp);
    rv = snapshot_decode(f->snap, f->snap_len, &tmp);
    if (rv != 0) {
        mvcc_close(&tmp);
        emsg(errmsg, "snapshot file %s is corrupt: %s", path,
             rv == IK_ENOMEM ? "out of memory" : "checksum or content error");
        goto fail;
    }
    if (store != NULL) {
        mvcc_swap(store, &tmp);
    }
    mvcc_close(&tmp);
    return 0;

fail:
    snapfile_free(f);
    return rv;
}

int snapfile_read(const char *path, bool check_hash, struct snapfile *f,
                  char *errmsg)
{
    return read_file(path, check_hash, f, NULL, errmsg);
}

void snapfile_free(struct snapfile *f)
{
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* ---- status ------------------------------------------------------------ */

int snapfile_status(const char *path, struct snapfile_status *st, char *errmsg)
{
    struct snapfile f;
    void *kv = NULL, *leases = NULL;
    size_t kv_len = 0, leases_len = 0;
    uint32_t crc;
    int rv;

    memset(st, 0, sizeof *st);
    rv = read_file(path, false, &f, NULL, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = snapshot_section_get(f.snap, f.snap_len, SNAPSHOT_SECTION_KV, &kv,
                              &kv_len);
    if (rv == 0 && kv_len < 24) {
        rv = IK_ECORRUPT;
    }
    if (rv == 0) {
        rv = snapshot_section_get(f.snap, f.snap_len, SNAPSHOT_SECTION_LEASES,
                                  &leases, &leases_len);
        if (rv == IK_ENOENT) {
            rv = 0;
        }
    }
    if (rv != 0) {
        emsg(errmsg, "snapshot file %s is corrupt: %s", path, ik_strerror(rv));
        goto out;
    }
    crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = (uint32_t)crc32_z(crc, kv, kv_len);
    if (leases_len > 0) {
        crc = (uint32_t)crc32_z(crc, leases, leases_len);
    }
    st->hash = crc;
    st->revision = (int64_t)le64(kv);
    st->total_keys = le64((const uint8_t *)kv + 16);
    st->total_size = f.snap_len;
out:
    free(kv);
    free(leases);
    snapfile_free(&f);
    return rv;
}

/* ---- restore ----------------------------------------------------------- */

void snapfile_data_dir(const struct snapfile_restore_config *cfg, char *buf,
                       size_t size)
{
    if (cfg->data_dir != NULL && cfg->data_dir[0] != '\0') {
        snprintf(buf, size, "%s", cfg->data_dir);
    } else {
        snprintf(buf, size, "%s.etcd", cfg->name != NULL ? cfg->name : "");
    }
}

/* Go's %q of a plain string (enough for paths). */
static void go_quote(char *buf, size_t size, const char *s)
{
    size_t off = 0;
    if (size < 3) {
        return;
    }
    buf[off++] = '"';
    for (; *s != '\0' && off + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[off++] = '\\';
            buf[off++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            off += (size_t)snprintf(buf + off, size - off, "\\x%02x", c);
        } else {
            buf[off++] = (char)c;
        }
    }
    buf[off++] = '"';
    buf[off] = '\0';
}

/* host:port of a peer URL, the raft address (as node.c derives it). */
static int raft_address(const char *url, char *out, size_t size)
{
    const char *hostport = strstr(url, "://");
    const char *end;
    size_t len;

    hostport = hostport != NULL ? hostport + 3 : url;
    end = strchr(hostport, '/');
    len = end != NULL ? (size_t)(end - hostport) : strlen(hostport);
    if (len == 0 || len >= size) {
        return IK_EINVAL;
    }
    memcpy(out, hostport, len);
    out[len] = '\0';
    return 0;
}

/* The new cluster's meta (ids as a fresh ikada start derives them). */
static int build_meta(const struct config *cfg, struct meta *m, char *errmsg)
{
    uint64_t *ids = calloc(cfg->n_initial_cluster + 1, sizeof *ids);
    int rv = 0;

    memset(m, 0, sizeof *m);
    m->members = calloc(cfg->n_initial_cluster + 1, sizeof *m->members);
    m->name = strdup(cfg->name);
    m->token = strdup(cfg->initial_cluster_token);
    if (ids == NULL || m->members == NULL || m->name == NULL ||
        m->token == NULL) {
        rv = IK_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < cfg->n_initial_cluster; i++) {
        const struct config_member *cm = &cfg->initial_cluster[i];
        struct meta_member *mm = &m->members[i];
        m->n_members = i + 1;
        rv = ids_member_id((const char *const *)cm->peer_urls, cm->n_peer_urls,
                           cfg->initial_cluster_token, 0, &mm->id);
        if (rv != 0) {
            goto out;
        }
        ids[i] = mm->id;
        mm->name = strdup(cm->name);
        mm->peer_urls = calloc(cm->n_peer_urls + 1, sizeof *mm->peer_urls);
        if (mm->name == NULL || mm->peer_urls == NULL) {
            rv = IK_ENOMEM;
            goto out;
        }
        for (size_t j = 0; j < cm->n_peer_urls; j++) {
            mm->peer_urls[j] = strdup(cm->peer_urls[j]);
            if (mm->peer_urls[j] == NULL) {
                rv = IK_ENOMEM;
                goto out;
            }
            mm->n_peer_urls = j + 1;
        }
        if (strcmp(cm->name, cfg->name) == 0) {
            m->member_id = mm->id;
        }
    }
    rv = ids_cluster_id(ids, cfg->n_initial_cluster, &m->cluster_id);
out:
    free(ids);
    if (rv != 0) {
        emsg(errmsg, "member ids: %s", ik_strerror(rv));
        meta_free(m);
    }
    return rv;
}

/* The member table section (ikadapb.Members) for the new members. */
static int members_section(const struct meta *m, void **out, size_t *len)
{
    Ikadapb__Members msg = IKADAPB__MEMBERS__INIT;
    Etcdserverpb__Member *ms = calloc(m->n_members + 1, sizeof *ms);
    Etcdserverpb__Member **mp = calloc(m->n_members + 1, sizeof *mp);
    int rv = IK_ENOMEM;

    if (ms != NULL && mp != NULL) {
        for (size_t i = 0; i < m->n_members; i++) {
            etcdserverpb__member__init(&ms[i]);
            ms[i].id = m->members[i].id;
            ms[i].name = m->members[i].name;
            ms[i].peerurls = m->members[i].peer_urls;
            ms[i].n_peerurls = m->members[i].n_peer_urls;
            mp[i] = &ms[i];
        }
        msg.members = mp;
        msg.n_members = m->n_members;
        *len = ikadapb__members__get_packed_size(&msg);
        *out = malloc(*len > 0 ? *len : 1);
        if (*out != NULL) {
            ikadapb__members__pack(&msg, *out);
            rv = 0;
        }
    }
    free(ms);
    free(mp);
    return rv;
}

/* ---- writing canonical/raft's state with its own libuv io ---- */

struct raft_writer {
    bool put_done;
    int put_status;
    bool closed;
};

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
    struct raft_writer *w = req->data;
    w->put_done = true;
    w->put_status = status;
}

static void io_close_cb(struct raft_io *io)
{
    struct raft_writer *w = io->data;
    w->closed = true;
}

static int write_raft(const char *raft_dir, const struct meta *m,
                      const void *payload, size_t len, char *errmsg)
{
    struct raft_writer w = {0};
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_configuration conf;
    struct raft_snapshot snap;
    struct raft_io_snapshot_put req;
    struct raft_buffer buf;
    struct raft_snapshot *loaded = NULL;
    struct raft_entry *entries = NULL;
    size_t n_entries = 0;
    raft_term term;
    raft_id vote;
    raft_index start;
    uv_loop_t loop;
    char self_addr[300] = "";
    bool io_inited = false;
    int rv;

    raft_configuration_init(&conf);
    for (size_t i = 0; i < m->n_members; i++) {
        char addr[300];
        const struct meta_member *mm = &m->members[i];
        if (mm->n_peer_urls == 0 ||
            raft_address(mm->peer_urls[0], addr, sizeof addr) != 0) {
            emsg(errmsg, "member %s has no usable peer URL", mm->name);
            raft_configuration_close(&conf);
            return IK_EINVAL;
        }
        if (mm->id == m->member_id) {
            snprintf(self_addr, sizeof self_addr, "%s", addr);
        }
        rv = raft_configuration_add(&conf, mm->id, addr, RAFT_VOTER);
        if (rv != 0) {
            emsg(errmsg, "raft configuration: %s", raft_strerror(rv));
            raft_configuration_close(&conf);
            return rv == RAFT_NOMEM ? IK_ENOMEM : IK_EINVAL;
        }
    }

    uv_loop_init(&loop);
    rv = raft_uv_tcp_init(&transport, &loop);
    if (rv != 0) {
        emsg(errmsg, "raft transport: %s", raft_strerror(rv));
        raft_configuration_close(&conf);
        uv_loop_close(&loop);
        return IK_ENOMEM;
    }
    rv = raft_uv_init(&io, &loop, raft_dir, &transport);
    if (rv != 0) {
        emsg(errmsg, "raft log in %s: %s", raft_dir, io.errmsg);
        raft_uv_tcp_close(&transport);
        raft_configuration_close(&conf);
        uv_loop_close(&loop);
        return IK_EIO;
    }
    io.data = &w;
    rv = io.init(&io, m->member_id, self_addr);
    if (rv != 0) {
        emsg(errmsg, "raft log in %s: %s", raft_dir, io.errmsg);
        goto out;
    }
    io_inited = true;
    rv = io.load(&io, &term, &vote, &loaded, &start, &entries, &n_entries);
    if (rv == 0 && (loaded != NULL || n_entries > 0)) {
        emsg(errmsg, "raft log in %s is not empty", raft_dir);
        rv = RAFT_CANTBOOTSTRAP;
        goto out;
    }
    if (rv == 0) {
        rv = io.set_term(&io, RESTORE_TERM);
    }
    if (rv != 0) {
        emsg(errmsg, "raft log in %s: %s", raft_dir, io.errmsg);
        goto out;
    }
    memset(&snap, 0, sizeof snap);
    snap.index = RESTORE_INDEX;
    snap.term = RESTORE_TERM;
    snap.configuration = conf;
    snap.configuration_index = RESTORE_INDEX;
    buf.base = (void *)payload;
    buf.len = len;
    snap.bufs = &buf;
    snap.n_bufs = 1;
    req.data = &w;
    rv = io.snapshot_put(&io, 0, &req, &snap, put_cb);
    if (rv != 0) {
        emsg(errmsg, "raft snapshot: %s",
             io.errmsg[0] ? io.errmsg : raft_strerror(rv));
        goto out;
    }
    while (!w.put_done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    rv = w.put_status;
    if (rv != 0) {
        emsg(errmsg, "raft snapshot: %s",
             io.errmsg[0] ? io.errmsg : raft_strerror(rv));
    }
out:
    if (io_inited) {
        io.close(&io, io_close_cb);
        while (!w.closed) {
            uv_run(&loop, UV_RUN_ONCE);
        }
    }
    raft_uv_close(&io);
    raft_uv_tcp_close(&transport);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (loaded != NULL) {
        for (unsigned i = 0; i < loaded->n_bufs; i++) {
            raft_free(loaded->bufs[i].base);
        }
        raft_free(loaded->bufs);
        raft_configuration_close(&loaded->configuration);
        raft_free(loaded);
    }
    raft_configuration_close(&conf);
    if (rv != 0) {
        return rv == RAFT_NOMEM ? IK_ENOMEM : IK_EIO;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Remove a data dir this module created (a failed restore). */
static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Verify the restore flags as etcd does; fills @cfg. */
static int check_flags(const struct snapfile_restore_config *rc,
                       const char *data_dir, struct config *cfg, char *errmsg)
{
    char msg[IK_ERRMSG_SIZE] = "";
    char *argv[] = {
        "ikadactl",
        "--name",
        (char *)(rc->name != NULL ? rc->name : "default"),
        "--data-dir",
        (char *)data_dir,
        "--initial-cluster",
        (char *)(rc->initial_cluster != NULL ? rc->initial_cluster : ""),
        "--initial-cluster-token",
        (char *)(rc->token != NULL ? rc->token : ""),
        "--initial-advertise-peer-urls",
        (char *)(rc->peer_urls != NULL ? rc->peer_urls : ""),
        NULL,
    };
    char *envp[] = {NULL};
    int rv = config_init(cfg);

    if (rv == 0) {
        rv = config_parse(cfg, (int)(sizeof argv / sizeof argv[0]) - 1, argv,
                          envp, msg);
    }
    /* ikada's server (as etcd's) reads the default --initial-cluster as
     * "<name>=<its peer URLs>"; etcdctl's restore takes it literally. */
    if (rv == 0 && strcmp(argv[6], "default=http://localhost:2380") == 0 &&
        strcmp(argv[2], "default") != 0) {
        snprintf(msg, sizeof msg,
                 "couldn't find local name \"%s\" in the initial cluster "
                 "configuration",
                 argv[2]);
        rv = IK_EINVAL;
    }
    if (rv == 0) {
        rv = config_verify_bootstrap(cfg, msg);
    }
    if (rv != 0) {
        emsg(errmsg, "%s", msg[0] != '\0' ? msg : ik_strerror(rv));
    }
    return rv;
}

int snapfile_restore(const struct snapfile_restore_config *rc, char *errmsg)
{
    struct config cfg;
    struct meta m;
    struct snapfile f;
    struct mvcc store;
    struct snapshot_section extra[2];
    unsigned n_extra = 0;
    void *members = NULL, *leases = NULL, *out = NULL;
    size_t members_len = 0, leases_len = 0, out_len = 0;
    char data_dir[4096], raft_dir[4200], msg[IK_ERRMSG_SIZE] = "";
    struct stat st;
    bool created = false;
    int rv;

    memset(&m, 0, sizeof m);
    memset(&f, 0, sizeof f);
    mvcc_init(&store);
    snapfile_data_dir(rc, data_dir, sizeof data_dir);
    rv = check_flags(rc, data_dir, &cfg, errmsg);
    if (rv != 0) {
        goto out;
    }
    if (stat(data_dir, &st) == 0) {
        char q[4200];
        go_quote(q, sizeof q, data_dir);
        emsg(errmsg, "data-dir %s exists", q);
        rv = IK_EINVAL;
        goto out;
    }
    if (rc->on_start != NULL) {
        rc->on_start(rc->arg);
    }
    rv = read_file(rc->snapshot_path, !rc->skip_hash_check, &f, &store, errmsg);
    if (rv != 0) {
        goto out;
    }
    rv = build_meta(&cfg, &m, errmsg);
    if (rv != 0) {
        goto out;
    }
    rv = members_section(&m, &members, &members_len);
    if (rv != 0) {
        emsg(errmsg, "out of memory");
        goto out;
    }
    extra[n_extra++] = (struct snapshot_section){SNAPSHOT_SECTION_MEMBERS,
                                                 members, members_len};
    rv = snapshot_section_get(f.snap, f.snap_len, SNAPSHOT_SECTION_LEASES,
                              &leases, &leases_len);
    if (rv == 0) {
        extra[n_extra++] = (struct snapshot_section){SNAPSHOT_SECTION_LEASES,
                                                     leases, leases_len};
    } else if (rv != IK_ENOENT) {
        emsg(errmsg, "snapshot file %s: leases: %s", rc->snapshot_path,
             ik_strerror(rv));
        goto out;
    }
    rv = snapshot_encode(&store, extra, n_extra, &out, &out_len);
    if (rv != 0) {
        emsg(errmsg, "encoding the snapshot: %s", ik_strerror(rv));
        goto out;
    }
    for (size_t i = 0; rc->on_member != NULL && i < m.n_members; i++) {
        rc->on_member(rc->arg, m.cluster_id, m.members[i].id,
                      m.members[i].peer_urls, m.members[i].n_peer_urls);
    }
    /* Everything checked: write. */
    created = true;
    rv = meta_mkdirs(data_dir, msg);
    if (rv == 0) {
        rv = meta_write(data_dir, &m, msg);
    }
    if (rv != 0) {
        emsg(errmsg, "%s", msg);
        goto out;
    }
    if (meta_raft_dir(data_dir, raft_dir, sizeof raft_dir) != 0) {
        emsg(errmsg, "data dir path too long: %s", data_dir);
        rv = IK_EINVAL;
        goto out;
    }
    rv = write_raft(raft_dir, &m, out, out_len, errmsg);

out:
    if (rv != 0 && created) {
        remove_tree(data_dir);
    }
    free(out);
    free(members);
    free(leases);
    mvcc_close(&store);
    snapfile_free(&f);
    meta_free(&m);
    config_close(&cfg);
    return rv;
}
