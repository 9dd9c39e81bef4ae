/*
 * meta: the data-dir metadata file and the data-dir lock (see meta.h).
 *
 * File <data-dir>/member/meta, format version 1. All integers are
 * little endian. A "str" is a u32 byte length followed by that many bytes
 * (no terminator; a NUL byte inside is corruption).
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------
 *        0     8  magic "IKADAMET"
 *        8     4  u32 format version (1)
 *       12     4  u32 body length B
 *       16     4  u32 CRC32 (zlib crc32()) of bytes 0..15 followed by
 *                 the B body bytes
 *       20     B  body:
 *                   u64 cluster ID
 *                   u64 member ID (this member)
 *                   str member name
 *                   str cluster token
 *                   u32 member count M, then M times:
 *                     u64 member ID
 *                     str member name
 *                     u32 peer URL count U, then U times: str peer URL
 *
 * The file is exactly 20 + B bytes: anything shorter or longer, a length
 * field running past the body, bytes left over after the last member, or
 * a member ID that is not among the members is corruption.
 */
#include "server/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "server/errors.h"

bool (*meta_fail_alloc_hook)(void) = NULL;

#define META_MAGIC "IKADAMET"
#define META_HEADER_SIZE 20
#define META_PATH_MAX 4096

static void *mmalloc(size_t n)
{
    if (meta_fail_alloc_hook != NULL && meta_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(n == 0 ? 1 : n);
}

static void *mcalloc(size_t n, size_t size)
{
    if (meta_fail_alloc_hook != NULL && meta_fail_alloc_hook()) {
        return NULL;
    }
    return calloc(n == 0 ? 1 : n, size);
}

/* snprintf a path into @buf; IK_EINVAL if it does not fit. */
static int join_path(char *buf, size_t size, const char *dir, const char *rel)
{
    int n = snprintf(buf, size, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= size) {
        return IK_EINVAL;
    }
    return 0;
}

int meta_raft_dir(const char *data_dir, char *buf, size_t size)
{
    return join_path(buf, size, data_dir, "member/raft");
}

int meta_path(const char *data_dir, char *buf, size_t size)
{
    return join_path(buf, size, data_dir, "member/meta");
}

/* mkdir -p @path with mode 0700 for what it creates. */
static int mkdir_p(char *path, char *errmsg)
{
    size_t i, n = strlen(path);
    struct stat st;
    for (i = 1; i <= n; i++) {
        char saved;
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            ik_errmsg_printf(errmsg, "mkdir %s: %s", path, strerror(errno));
            path[i] = saved;
            return IK_EIO;
        }
        if (stat(path, &st) != 0) {
            ik_errmsg_printf(errmsg, "stat %s: %s", path, strerror(errno));
            path[i] = saved;
            return IK_EIO;
        }
        if (!S_ISDIR(st.st_mode)) {
            ik_errmsg_printf(errmsg, "mkdir %s: exists and is not a directory",
                             path);
            path[i] = saved;
            return IK_EIO;
        }
        path[i] = saved;
    }
    return 0;
}

int meta_mkdirs(const char *data_dir, char *errmsg)
{
    char path[META_PATH_MAX];
    if (data_dir[0] == '\0') {
        ik_errmsg_printf(errmsg, "empty data dir");
        return IK_EINVAL;
    }
    if (meta_raft_dir(data_dir, path, sizeof(path)) != 0) {
        ik_errmsg_printf(errmsg, "data dir path too long: %s", data_dir);
        return IK_EINVAL;
    }
    return mkdir_p(path, errmsg);
}

/* ---- encoding ---- */

struct wbuf {
    unsigned char *p;
    size_t len;
    size_t cap;
};

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Size of the encoded body, or 0 if something does not fit the format. */
static size_t body_size(const struct meta *m)
{
    size_t n = 8 + 8 + 4 + 4 + 4, i, j;
    if (m->name == NULL || m->token == NULL ||
        (m->n_members > 0 && m->members == NULL)) {
        return 0;
    }
    n += strlen(m->name) + strlen(m->token);
    for (i = 0; i < m->n_members; i++) {
        const struct meta_member *mm = &m->members[i];
        if (mm->name == NULL ||
            (mm->n_peer_urls > 0 && mm->peer_urls == NULL)) {
            return 0;
        }
        n += 8 + 4 + strlen(mm->name) + 4;
        for (j = 0; j < mm->n_peer_urls; j++) {
            if (mm->peer_urls[j] == NULL) {
                return 0;
            }
            n += 4 + strlen(mm->peer_urls[j]);
        }
        if (n > META_MAX_SIZE) {
            return 0;
        }
    }
    return n + META_HEADER_SIZE > META_MAX_SIZE ? 0 : n;
}

static void w_u32(struct wbuf *w, uint32_t v)
{
    put_u32(w->p + w->len, v);
    w->len += 4;
}

static void w_u64(struct wbuf *w, uint64_t v)
{
    put_u64(w->p + w->len, v);
    w->len += 8;
}

static void w_str(struct wbuf *w, const char *s)
{
    size_t n = strlen(s);
    w_u32(w, (uint32_t)n);
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static uint32_t meta_crc(const unsigned char *file, size_t body_len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, file, 16);
    crc = crc32(crc, file + META_HEADER_SIZE, (uInt)body_len);
    return (uint32_t)crc;
}

/* ---- decoding ---- */

struct rbuf {
    const unsigned char *p;
    size_t len;
    size_t off;
    char *errmsg;
};

static int r_need(struct rbuf *r, size_t n, const char *what)
{
    if (r->len - r->off < n) {
        ik_errmsg_printf(r->errmsg,
                         "%s at body offset %zu needs %zu bytes, %zu left",
                         what, r->off, n, r->len - r->off);
        return IK_ECORRUPT;
    }
    return 0;
}

static int r_u32(struct rbuf *r, uint32_t *v, const char *what)
{
    int rv = r_need(r, 4, what);
    if (rv == 0) {
        *v = get_u32(r->p + r->off);
        r->off += 4;
    }
    return rv;
}

static int r_u64(struct rbuf *r, uint64_t *v, const char *what)
{
    int rv = r_need(r, 8, what);
    if (rv == 0) {
        *v = get_u64(r->p + r->off);
        r->off += 8;
    }
    return rv;
}

static int r_str(struct rbuf *r, char **out, const char *what)
{
    uint32_t n;
    int rv = r_u32(r, &n, what);
    char *s;
    if (rv != 0) {
        return rv;
    }
    rv = r_need(r, n, what);
    if (rv != 0) {
        return rv;
    }
    if (memchr(r->p + r->off, '\0', n) != NULL) {
        ik_errmsg_printf(r->errmsg, "%s at body offset %zu contains a NUL byte",
                         what, r->off);
        return IK_ECORRUPT;
    }
    s = mmalloc((size_t)n + 1);
    if (s == NULL) {
        ik_errmsg_printf(r->errmsg, "out of memory");
        return IK_ENOMEM;
    }
    memcpy(s, r->p + r->off, n);
    s[n] = '\0';
    r->off += n;
    *out = s;
    return 0;
}

static int decode_body(struct rbuf *r, struct meta *m)
{
    uint32_t nm, i, j;
    int rv;
    bool self_found = false;

    if ((rv = r_u64(r, &m->cluster_id, "cluster ID")) != 0 ||
        (rv = r_u64(r, &m->member_id, "member ID")) != 0 ||
        (rv = r_str(r, &m->name, "member name")) != 0 ||
        (rv = r_str(r, &m->token, "cluster token")) != 0 ||
        (rv = r_u32(r, &nm, "member count")) != 0) {
        return rv;
    }
    /* Each member needs at least 16 bytes: bound the allocation. */
    if (nm > (r->len - r->off) / 16) {
        ik_errmsg_printf(r->errmsg,
                         "member count %u does not fit in the %zu bytes left",
                         nm, r->len - r->off);
        return IK_ECORRUPT;
    }
    m->members = mcalloc(nm, sizeof(*m->members));
    if (m->members == NULL) {
        ik_errmsg_printf(r->errmsg, "out of memory");
        return IK_ENOMEM;
    }
    for (i = 0; i < nm; i++) {
        struct meta_member *mm = &m->members[i];
        uint32_t nu;
        m->n_members = i + 1;
        if ((rv = r_u64(r, &mm->id, "member entry ID")) != 0 ||
            (rv = r_str(r, &mm->name, "member entry name")) != 0 ||
            (rv = r_u32(r, &nu, "peer URL count")) != 0) {
            return rv;
        }
        if (nu > (r->len - r->off) / 4) {
            ik_errmsg_printf(r->errmsg,
                             "peer URL count %u of member %u does not fit in "
                             "the %zu bytes left",
                             nu, i, r->len - r->off);
            return IK_ECORRUPT;
        }
        mm->peer_urls = mcalloc(nu, sizeof(char *));
        if (mm->peer_urls == NULL) {
            ik_errmsg_printf(r->errmsg, "out of memory");
            return IK_ENOMEM;
        }
        for (j = 0; j < nu; j++) {
            mm->n_peer_urls = j + 1;
            if ((rv = r_str(r, &mm->peer_urls[j], "peer URL")) != 0) {
                mm->n_peer_urls = j;
                return rv;
            }
        }
        if (mm->id == m->member_id) {
            self_found = true;
        }
    }
    if (r->off != r->len) {
        ik_errmsg_printf(r->errmsg,
                         "%zu unexpected bytes after the last member",
                         r->len - r->off);
        return IK_ECORRUPT;
    }
    if (nm > 0 && !self_found) {
        ik_errmsg_printf(r->errmsg,
                         "member ID %llx is not among the %u members",
                         (unsigned long long)m->member_id, nm);
        return IK_ECORRUPT;
    }
    return 0;
}

void meta_free(struct meta *m)
{
    size_t i, j;
    free(m->name);
    free(m->token);
    for (i = 0; i < m->n_members; i++) {
        free(m->members[i].name);
        for (j = 0; j < m->members[i].n_peer_urls; j++) {
            free(m->members[i].peer_urls[j]);
        }
        free(m->members[i].peer_urls);
    }
    free(m->members);
    memset(m, 0, sizeof(*m));
}

/* Read all of @fd (at most META_MAX_SIZE + 1 bytes). */
static int read_all(int fd, const char *path, unsigned char **out, size_t *len,
                    char *errmsg)
{
    size_t cap = 4096, n = 0;
    unsigned char *buf = mmalloc(cap);
    if (buf == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    for (;;) {
        ssize_t r;
        if (n == cap) {
            unsigned char *nb;
            if (cap > META_MAX_SIZE) {
                break;
            }
            nb = mmalloc(cap * 2);
            if (nb == NULL) {
                free(buf);
                ik_errmsg_printf(errmsg, "out of memory");
                return IK_ENOMEM;
            }
            memcpy(nb, buf, n);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            ik_errmsg_printf(errmsg, "read %s: %s", path, strerror(errno));
            free(buf);
            return IK_EIO;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

int meta_read(const char *data_dir, struct meta *m, char *errmsg)
{
    char path[META_PATH_MAX];
    unsigned char *buf = NULL;
    size_t len = 0;
    uint32_t version, blen, crc;
    struct rbuf r;
    int fd, rv;

    memset(m, 0, sizeof(*m));
    if (meta_path(data_dir, path, sizeof(path)) != 0) {
        ik_errmsg_printf(errmsg, "data dir path too long: %s", data_dir);
        return IK_EINVAL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ik_errmsg_printf(errmsg, "open %s: %s", path, strerror(e));
        return e == ENOENT ? IK_ENOENT : IK_EIO;
    }
    rv = read_all(fd, path, &buf, &len, errmsg);
    close(fd);
    if (rv != 0) {
        return rv;
    }
    rv = IK_ECORRUPT;
    if (len < META_HEADER_SIZE) {
        ik_errmsg_printf(errmsg, "%s: truncated header (%zu of %d bytes)", path,
                         len, META_HEADER_SIZE);
        goto out;
    }
    if (memcmp(buf, META_MAGIC, 8) != 0) {
        ik_errmsg_printf(errmsg, "%s: bad magic (not an ikada meta file)",
                         path);
        goto out;
    }
    version = get_u32(buf + 8);
    if (version != META_VERSION) {
        ik_errmsg_printf(errmsg,
                         "%s: unsupported format version %u (expected %d)",
                         path, version, META_VERSION);
        goto out;
    }
    blen = get_u32(buf + 12);
    if ((size_t)blen != len - META_HEADER_SIZE) {
        ik_errmsg_printf(errmsg,
                         "%s: body length %u but the file holds %zu body "
                         "bytes%s",
                         path, blen, len - META_HEADER_SIZE,
                         len - META_HEADER_SIZE < blen ? " (truncated)" : "");
        goto out;
    }
    crc = get_u32(buf + 16);
    if (crc != meta_crc(buf, blen)) {
        ik_errmsg_printf(errmsg,
                         "%s: checksum mismatch (stored %08x, computed %08x)",
                         path, crc, meta_crc(buf, blen));
        goto out;
    }
    r.p = buf + META_HEADER_SIZE;
    r.len = blen;
    r.off = 0;
    r.errmsg = errmsg;
    rv = decode_body(&r, m);
    if (rv == IK_ECORRUPT) {
        ik_errmsg_wrapf(errmsg, "%s", path);
    }
    if (rv == 0) {
        m->version = version;
    }
out:
    if (rv != 0) {
        meta_free(m);
    }
    free(buf);
    return rv;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int meta_write(const char *data_dir, const struct meta *m, char *errmsg)
{
    char path[META_PATH_MAX], tmp[META_PATH_MAX], dir[META_PATH_MAX];
    size_t blen = body_size(m), i, j;
    struct wbuf w;
    int fd, dfd, rv = IK_EIO;

    if (blen == 0) {
        ik_errmsg_printf(errmsg,
                         "meta: NULL field or content larger than "
                         "%u bytes",
                         META_MAX_SIZE);
        return IK_EINVAL;
    }
    if (meta_path(data_dir, path, sizeof(path)) != 0 ||
        join_path(tmp, sizeof(tmp), data_dir, "member/meta.tmp") != 0 ||
        join_path(dir, sizeof(dir), data_dir, "member") != 0) {
        ik_errmsg_printf(errmsg, "data dir path too long: %s", data_dir);
        return IK_EINVAL;
    }
    w.cap = META_HEADER_SIZE + blen;
    w.p = mmalloc(w.cap);
    if (w.p == NULL) {
        ik_errmsg_printf(errmsg, "out of memory");
        return IK_ENOMEM;
    }
    memcpy(w.p, META_MAGIC, 8);
    put_u32(w.p + 8, META_VERSION);
    put_u32(w.p + 12, (uint32_t)blen);
    w.len = META_HEADER_SIZE;
    w_u64(&w, m->cluster_id);
    w_u64(&w, m->member_id);
    w_str(&w, m->name);
    w_str(&w, m->token);
    w_u32(&w, (uint32_t)m->n_members);
    for (i = 0; i < m->n_members; i++) {
        const struct meta_member *mm = &m->members[i];
        w_u64(&w, mm->id);
        w_str(&w, mm->name);
        w_u32(&w, (uint32_t)mm->n_peer_urls);
        for (j = 0; j < mm->n_peer_urls; j++) {
            w_str(&w, mm->peer_urls[j]);
        }
    }
    put_u32(w.p + 16, meta_crc(w.p, blen));

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ik_errmsg_printf(errmsg, "open %s: %s", tmp, strerror(errno));
        free(w.p);
        return IK_EIO;
    }
    if (write_all(fd, w.p, w.len) != 0) {
        ik_errmsg_printf(errmsg, "write %s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    if (fsync(fd) != 0) {
        ik_errmsg_printf(errmsg, "fsync %s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    if (close(fd) != 0) {
        ik_errmsg_printf(errmsg, "close %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        ik_errmsg_printf(errmsg, "rename %s: %s", tmp, strerror(errno));
        goto fail;
    }
    free(w.p);
    /* Make the rename itself durable. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        ik_errmsg_printf(errmsg, "open %s: %s", dir, strerror(errno));
        return IK_EIO;
    }
    if (fsync(dfd) != 0) {
        ik_errmsg_printf(errmsg, "fsync %s: %s", dir, strerror(errno));
        close(dfd);
        return IK_EIO;
    }
    close(dfd);
    return 0;
fail:
    unlink(tmp);
    free(w.p);
    return rv;
}

int meta_lock(const char *data_dir, int *fd, char *errmsg)
{
    char path[META_PATH_MAX];
    int lfd;
    if (join_path(path, sizeof(path), data_dir, "member/lock") != 0) {
        ik_errmsg_printf(errmsg, "data dir path too long: %s", data_dir);
        return IK_EINVAL;
    }
    lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        ik_errmsg_printf(errmsg, "open %s: %s", path, strerror(errno));
        return IK_EIO;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(lfd);
        if (e == EWOULDBLOCK) {
            ik_errmsg_printf(errmsg,
                             "data dir %s is locked by another ikada (%s is "
                             "held)",
                             data_dir, path);
        } else {
            ik_errmsg_printf(errmsg, "flock %s: %s", path, strerror(e));
        }
        return IK_EIO;
    }
    *fd = lfd;
    return 0;
}

void meta_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}
