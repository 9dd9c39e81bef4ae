/*
 * Unit tests for server/meta.c: round trips, every truncation, every
 * flipped byte, hand-made bodies with valid checksums but bad content,
 * I/O errors, allocation failures and the data-dir lock.
 */
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/meta.h"

struct fixture {
    char dir[64];
    char path[256];
    char errmsg[IK_ERRMSG_SIZE];
};

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/ikada-test-meta.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(meta_mkdirs(f->dir, f->errmsg), 0);
    assert_int_equal(meta_path(f->dir, f->path, sizeof(f->path)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A three-member cluster as main would record it. */
static char *urls_a[] = {"http://10.0.0.1:2380"};
static char *urls_b[] = {"http://10.0.0.2:2380", "http://10.0.0.2:2381"};
static char *urls_c[] = {"http://10.0.0.3:2380"};
static struct meta_member sample_members[] = {
    {0x3af8e5d6c1b2a901ULL, "a", urls_a, 1},
    {0xdf2e41c3b0a19877ULL, "b", urls_b, 2},
    {0x11ULL, "", urls_c, 1},
};

static struct meta sample(void)
{
    struct meta m;
    memset(&m, 0, sizeof(m));
    m.cluster_id = 0x1012345678abcdefULL;
    m.member_id = 0xdf2e41c3b0a19877ULL;
    m.name = "b";
    m.token = "etcd-cluster";
    m.members = sample_members;
    m.n_members = 3;
    return m;
}

static void assert_meta_equal(const struct meta *a, const struct meta *b)
{
    size_t i, j;
    assert_true(a->cluster_id == b->cluster_id);
    assert_true(a->member_id == b->member_id);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->token, b->token);
    assert_int_equal(a->n_members, b->n_members);
    for (i = 0; i < a->n_members; i++) {
        assert_true(a->members[i].id == b->members[i].id);
        assert_string_equal(a->members[i].name, b->members[i].name);
        assert_int_equal(a->members[i].n_peer_urls, b->members[i].n_peer_urls);
        for (j = 0; j < a->members[i].n_peer_urls; j++) {
            assert_string_equal(a->members[i].peer_urls[j],
                                b->members[i].peer_urls[j]);
        }
    }
}

static void assert_meta_zero(const struct meta *m)
{
    assert_null(m->name);
    assert_null(m->token);
    assert_null(m->members);
    assert_int_equal(m->n_members, 0);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = malloc(1 << 16);
    assert_non_null(fp);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, fp);
    fclose(fp);
    return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    struct stat st;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), 0);
    assert_int_equal(out.version, META_VERSION);
    assert_meta_equal(&in, &out);
    meta_free(&out);
    assert_meta_zero(&out);
    meta_free(&out); /* twice is fine */
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_round_trip_empty_membership(void **state)
{
    struct fixture *f = *state;
    struct meta in, out;
    memset(&in, 0, sizeof(in));
    in.name = "";
    in.token = "";
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), 0);
    assert_string_equal(out.name, "");
    assert_int_equal(out.n_members, 0);
    meta_free(&out);
}

static void test_overwrite_is_atomic(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    char tmp[300];
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    in.cluster_id = 99;
    in.token = "other";
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), 0);
    assert_true(out.cluster_id == 99);
    assert_string_equal(out.token, "other");
    meta_free(&out);
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    assert_int_equal(access(tmp, F_OK), -1);
}

/* The exact bytes of a small file: the layout in meta.c is the contract. */
static void test_byte_layout(void **state)
{
    struct fixture *f = *state;
    static char *u[] = {"u"};
    struct meta_member mm = {2, "n", u, 1};
    struct meta in;
    static const unsigned char body[] = {
        1, 0, 0, 0, 0,   0, 0, 0,      /* cluster ID */
        2, 0, 0, 0, 0,   0, 0, 0,      /* member ID */
        1, 0, 0, 0, 'n',               /* name */
        1, 0, 0, 0, 't',               /* token */
        1, 0, 0, 0,                    /* member count */
        2, 0, 0, 0, 0,   0, 0, 0,      /* member ID */
        1, 0, 0, 0, 'n',               /* member name */
        1, 0, 0, 0, 1,   0, 0, 0, 'u', /* 1 URL "u" */
    };
    unsigned char *buf;
    size_t len;
    uLong crc;
    memset(&in, 0, sizeof(in));
    in.cluster_id = 1;
    in.member_id = 2;
    in.name = "n";
    in.token = "t";
    in.members = &mm;
    in.n_members = 1;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    buf = slurp(f->path, &len);
    assert_int_equal(len, 20 + sizeof(body));
    assert_memory_equal(buf, "IKADAMET\x01\x00\x00\x00", 12);
    assert_int_equal(buf[12], sizeof(body));
    assert_int_equal(buf[13] | buf[14] | buf[15], 0);
    assert_memory_equal(buf + 20, body, sizeof(body));
    crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, buf, 16);
    crc = crc32(crc, body, sizeof(body));
    assert_int_equal(buf[16] | buf[17] << 8 | buf[18] << 16 |
                         (uint32_t)buf[19] << 24,
                     (uint32_t)crc);
    free(buf);
}

/* ---- damaged files ---- */

static void test_missing_file(void **state)
{
    struct fixture *f = *state;
    struct meta out;
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ENOENT);
    assert_non_null(strstr(f->errmsg, "No such file or directory"));
    assert_meta_zero(&out);
    assert_int_equal(meta_read("/nonexistent/ikada", &out, f->errmsg),
                     IK_ENOENT);
}

static void test_every_truncation(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    unsigned char *buf;
    size_t len, cut;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    buf = slurp(f->path, &len);
    assert_true(len > 100);
    for (cut = 0; cut < len; cut++) {
        spit(f->path, buf, cut);
        f->errmsg[0] = '\0';
        assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
        assert_true(f->errmsg[0] != '\0');
        assert_meta_zero(&out);
    }
    spit(f->path, buf, 10);
    meta_read(f->dir, &out, f->errmsg);
    assert_non_null(strstr(f->errmsg, "truncated header (10 of 20 bytes)"));
    spit(f->path, buf, len - 1);
    meta_read(f->dir, &out, f->errmsg);
    assert_non_null(strstr(f->errmsg, "(truncated)"));
    /* And one byte too many. */
    buf[len] = 0;
    spit(f->path, buf, len + 1);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
    free(buf);
}

static void test_every_flipped_byte(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    unsigned char *buf;
    size_t len, i;
    int bit;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    buf = slurp(f->path, &len);
    for (i = 0; i < len; i++) {
        for (bit = 0; bit < 8; bit += 7) {
            buf[i] ^= (unsigned char)(1 << bit);
            spit(f->path, buf, len);
            assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
            assert_meta_zero(&out);
            buf[i] ^= (unsigned char)(1 << bit);
        }
    }
    spit(f->path, buf, len);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), 0);
    meta_free(&out);
    free(buf);
}

static void test_bad_magic_and_version(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    unsigned char *buf;
    size_t len;
    char expect[400];
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), 0);
    buf = slurp(f->path, &len);
    buf[0] = 'X';
    spit(f->path, buf, len);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
    snprintf(expect, sizeof(expect), "%s: bad magic (not an ikada meta file)",
             f->path);
    assert_string_equal(f->errmsg, expect);
    buf[0] = 'I';
    buf[8] = 2;
    spit(f->path, buf, len);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
    snprintf(expect, sizeof(expect),
             "%s: unsupported format version 2 (expected 1)", f->path);
    assert_string_equal(f->errmsg, expect);
    buf[8] = 1;
    buf[30] ^= 0xff;
    spit(f->path, buf, len);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "checksum mismatch"));
    free(buf);
}

/* Write header + @body with a correct CRC, so only the body checks can
 * catch what is wrong. */
static void write_raw(struct fixture *f, const unsigned char *body, size_t n)
{
    unsigned char buf[512];
    uLong crc;
    assert_true(n + 20 <= sizeof(buf));
    memcpy(buf, "IKADAMET", 8);
    buf[8] = 1;
    buf[9] = buf[10] = buf[11] = 0;
    buf[12] = (unsigned char)n;
    buf[13] = (unsigned char)(n >> 8);
    buf[14] = buf[15] = 0;
    memcpy(buf + 20, body, n);
    crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, buf, 16);
    crc = crc32(crc, body, (uInt)n);
    buf[16] = (unsigned char)crc;
    buf[17] = (unsigned char)(crc >> 8);
    buf[18] = (unsigned char)(crc >> 16);
    buf[19] = (unsigned char)(crc >> 24);
    spit(f->path, buf, n + 20);
}

#define HEAD                                                                  \
    1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'n', 1, 0, 0, \
        0, 't'

static void expect_corrupt(struct fixture *f, const unsigned char *body,
                           size_t n, const char *msg)
{
    struct meta out;
    char expect[400];
    write_raw(f, body, n);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_ECORRUPT);
    assert_meta_zero(&out);
    snprintf(expect, sizeof(expect), "%s: %s", f->path, msg);
    assert_string_equal(f->errmsg, expect);
}

static void test_bad_bodies(void **state)
{
    struct fixture *f = *state;
    struct meta out;
    static const unsigned char ok[] = {HEAD, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0,
                                       0,    0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char too_many[] = {HEAD, 0xff, 0xff, 0xff, 0x0f};
    static const unsigned char trailing[] = {HEAD, 0, 0, 0, 0, 7};
    static const unsigned char nul[] = {1, 0, 0, 0, 0,   0, 0, 0, 2, 0,   0,
                                        0, 0, 0, 0, 0,   2, 0, 0, 0, 'a', 0,
                                        1, 0, 0, 0, 't', 0, 0, 0, 0};
    static const unsigned char long_str[] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0,  0,
                                             0, 0, 0, 0, 0, 9, 0, 0, 0, 'n'};
    static const unsigned char stranger[] = {HEAD, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0,
                                             0,    0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char urls[] = {
        HEAD, 1, 0, 0, 0,       /* one member */
        2,    0, 0, 0, 0, 0, 0, /* its ID ... */
        0,                      /* ... 8 bytes */
        0,    0, 0, 0,          /* empty name */
        5,    0, 0, 0,          /* 5 URLs, no bytes left */
    };

    write_raw(f, ok, sizeof(ok));
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), 0);
    assert_int_equal(out.n_members, 1);
    assert_string_equal(out.members[0].name, "");
    meta_free(&out);

    expect_corrupt(f, too_many, sizeof(too_many),
                   "member count 268435455 does not fit in the 0 bytes left");
    expect_corrupt(f, trailing, sizeof(trailing),
                   "1 unexpected bytes after the last member");
    expect_corrupt(f, nul, sizeof(nul),
                   "member name at body offset 20 contains a NUL byte");
    expect_corrupt(f, long_str, sizeof(long_str),
                   "member name at body offset 20 needs 9 bytes, 1 left");
    expect_corrupt(f, stranger, sizeof(stranger),
                   "member ID 2 is not among the 1 members");
    expect_corrupt(f, urls, sizeof(urls),
                   "peer URL count 5 of member 0 does not fit in the 0 bytes "
                   "left");
    expect_corrupt(f, ok, 7,
                   "cluster ID at body offset 0 needs 8 bytes, 7 "
                   "left");
}

/* ---- I/O errors and bad arguments ---- */

static void test_io_errors(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    char sub[128];

    /* meta is a directory: open succeeds, read fails. */
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(meta_read(f->dir, &out, f->errmsg), IK_EIO);
    assert_non_null(strstr(f->errmsg, "Is a directory"));
    assert_meta_zero(&out);
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), IK_EIO);
    assert_non_null(strstr(f->errmsg, "rename"));
    assert_int_equal(rmdir(f->path), 0);

    /* No member/ directory: the temp file cannot be created. */
    snprintf(sub, sizeof(sub), "%s/fresh", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(meta_write(sub, &in, f->errmsg), IK_EIO);
    assert_non_null(strstr(f->errmsg, "meta.tmp"));
    assert_int_equal(meta_lock(sub, &(int){0}, f->errmsg), IK_EIO);
}

static void test_write_rejects_null_fields(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample();
    struct meta_member bad = {1, NULL, NULL, 0};
    in.name = NULL;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), IK_EINVAL);
    in = sample();
    in.members = &bad;
    in.n_members = 1;
    assert_int_equal(meta_write(f->dir, &in, f->errmsg), IK_EINVAL);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_long_paths(void **state)
{
    struct fixture *f = *state;
    char longdir[5000];
    char buf[16];
    struct meta out, in = sample();
    int fd;
    memset(longdir, 'x', sizeof(longdir) - 1);
    longdir[sizeof(longdir) - 1] = '\0';
    assert_int_equal(meta_read(longdir, &out, f->errmsg), IK_EINVAL);
    assert_int_equal(meta_write(longdir, &in, f->errmsg), IK_EINVAL);
    assert_int_equal(meta_mkdirs(longdir, f->errmsg), IK_EINVAL);
    assert_int_equal(meta_lock(longdir, &fd, f->errmsg), IK_EINVAL);
    assert_int_equal(meta_raft_dir(f->dir, buf, sizeof(buf)), IK_EINVAL);
    assert_int_equal(meta_path(f->dir, buf, sizeof(buf)), IK_EINVAL);
    assert_int_equal(meta_mkdirs("", f->errmsg), IK_EINVAL);
}

static void test_mkdirs(void **state)
{
    struct fixture *f = *state;
    char nested[200], raft[300], file[200];
    struct stat st;
    snprintf(nested, sizeof(nested), "%s/a/b/c", f->dir);
    assert_int_equal(meta_mkdirs(nested, f->errmsg), 0);
    assert_int_equal(meta_raft_dir(nested, raft, sizeof(raft)), 0);
    assert_int_equal(stat(raft, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* Again: nothing to do. */
    assert_int_equal(meta_mkdirs(nested, f->errmsg), 0);
    /* A file in the way. */
    snprintf(file, sizeof(file), "%s/plain", f->dir);
    spit(file, (const unsigned char *)"x", 1);
    assert_int_equal(meta_mkdirs(file, f->errmsg), IK_EIO);
    assert_non_null(strstr(f->errmsg, "not a directory"));
}

/* ---- the lock ---- */

static void test_lock_contention(void **state)
{
    struct fixture *f = *state;
    int fd1 = -1, fd2 = -1, fd3 = -1;
    assert_int_equal(meta_lock(f->dir, &fd1, f->errmsg), 0);
    assert_true(fd1 >= 0);
    /* A second open file description conflicts, even in this process. */
    assert_int_equal(meta_lock(f->dir, &fd2, f->errmsg), IK_EIO);
    assert_int_equal(fd2, -1);
    assert_non_null(strstr(f->errmsg, "is locked by another ikada"));
    meta_unlock(fd1);
    assert_int_equal(meta_lock(f->dir, &fd3, f->errmsg), 0);
    meta_unlock(fd3);
    meta_unlock(-1); /* no-op */
}

/* ---- allocation failures ---- */

static int fail_countdown;

static bool fail_nth(void)
{
    return fail_countdown-- == 0;
}

static void test_alloc_failures(void **state)
{
    struct fixture *f = *state;
    struct meta in = sample(), out;
    int n, rv;
    bool done = false;

    for (n = 0; n < 100 && !done; n++) {
        fail_countdown = n;
        meta_fail_alloc_hook = fail_nth;
        rv = meta_write(f->dir, &in, f->errmsg);
        meta_fail_alloc_hook = NULL;
        if (rv == 0) {
            done = true;
        } else {
            assert_int_equal(rv, IK_ENOMEM);
        }
    }
    assert_true(done);
    done = false;
    for (n = 0; n < 100 && !done; n++) {
        fail_countdown = n;
        meta_fail_alloc_hook = fail_nth;
        rv = meta_read(f->dir, &out, f->errmsg);
        meta_fail_alloc_hook = NULL;
        if (rv == 0) {
            assert_meta_equal(&in, &out);
            meta_free(&out);
            done = true;
        } else {
            assert_int_equal(rv, IK_ENOMEM);
            assert_meta_zero(&out);
        }
    }
    assert_true(done);
    assert_true(n > 10); /* every string is its own allocation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_round_trip),
        T(test_round_trip_empty_membership),
        T(test_overwrite_is_atomic),
        T(test_byte_layout),
        T(test_missing_file),
        T(test_every_truncation),
        T(test_every_flipped_byte),
        T(test_bad_magic_and_version),
        T(test_bad_bodies),
        T(test_io_errors),
        T(test_write_rejects_null_fields),
        T(test_long_paths),
        T(test_mkdirs),
        T(test_lock_contention),
        T(test_alloc_failures),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
