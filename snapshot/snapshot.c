/*
 * snapshot: the snapshot buffer format (see snapshot.h).
 *
 * Format version 1. All integers are little-endian; offsets are from the
 * start of the buffer.
 *
 * Header (32 bytes):
 *
 *   off  size  field
 *   0    8     magic "IKADASNP"
 *   8    4     format version (1)
 *   12   4     number of sections N (1 .. 1024)
 *   16   8     total length of the snapshot in bytes
 *   24   4     flags (0; readers reject unknown flags)
 *   28   4     header checksum: crc32 of bytes [0, 28) followed by the
 *              whole section table
 *
 * Section table: N entries of 40 bytes, right after the header:
 *
 *   off  size  field
 *   0    4     section type (enum snapshot_section_type)
 *   4    4     codec (1 = LZ4 blocks, below)
 *   8    8     offset of the section's stored bytes
 *   16   8     stored length (bytes in the buffer)
 *   24   8     raw length (bytes after decompression)
 *   32   4     body checksum: crc32 of the stored bytes
 *   36   4     reserved (0)
 *
 * Sections follow the table back to back, in table order, each type at
 * most once. Codec 1 stores a section as a sequence of blocks, each
 * compressed on its own with LZ4 (block format):
 *
 *   off  size  field
 *   0    4     raw length of the block (1 .. 1 MiB)
 *   4    4     compressed length
 *   8    ...   LZ4 block
 *
 * The raw lengths add up to the section's raw length.
 *
 * Raw content of section 1 (SNAPSHOT_SECTION_KV), the MVCC store:
 *
 *   off  size  field
 *   0    8     current revision (>= 1)
 *   8    8     compacted revision (-1: never compacted)
 *   16   8     number of version records R
 *   24   ...   R records, in key order and, per key, oldest first:
 *
 *     size  field
 *     4     key length; 0 means "same key as the previous record"
 *     ...   key bytes
 *     8     mod revision
 *     4     sub revision
 *     8     create revision (0 for a tombstone)
 *     8     version (0: tombstone)
 *     8     lease id (0: none)
 *     4     value length
 *     ...   value bytes
 *
 * Other sections are opaque here: their owners define their content.
 */
#include "snapshot/snapshot.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/mvcc.h"

#define SNAP_MAGIC "IKADASNP"
#define SNAP_VERSION 1
#define HEADER_SIZE 32
#define ENTRY_SIZE 40
#define MAX_SECTIONS 1024
#define CODEC_LZ4_BLOCKS 1
#define RAW_BLOCK (1u << 20)
#define BLOCK_HDR 8

bool (*snapshot_fail_alloc_hook)(void) = NULL;

static void *smalloc(size_t size)
{
    if (snapshot_fail_alloc_hook != NULL && snapshot_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(size == 0 ? 1 : size);
}

static void *srealloc(void *p, size_t size)
{
    if (snapshot_fail_alloc_hook != NULL && snapshot_fail_alloc_hook()) {
        return NULL;
    }
    return realloc(p, size == 0 ? 1 : size);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* crc32 over a buffer of any size (zlib takes uInt lengths). */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* ---- Encoding ---------------------------------------------------------- */

struct writer {
    uint8_t *out; /* the whole snapshot being built */
    size_t len, cap;
    uint8_t *raw; /* current raw block */
    size_t raw_len;
    uint64_t sec_raw; /* raw bytes of the current section */
    int err;
};

static int out_reserve(struct writer *w, size_t n)
{
    size_t ncap;
    uint8_t *p;

    if (w->cap - w->len >= n) {
        return 0;
    }
    ncap = w->cap == 0 ? 4096 : w->cap;
    while (ncap - w->len < n) {
        if (ncap > SIZE_MAX / 2) {
            return IK_ENOMEM;
        }
        ncap *= 2;
    }
    p = srealloc(w->out, ncap);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    w->out = p;
    w->cap = ncap;
    return 0;
}

/* Compress the pending raw block into the output. */
static void flush_block(struct writer *w)
{
    int bound, clen;

    if (w->err != 0 || w->raw_len == 0) {
        return;
    }
    bound = LZ4_compressBound((int)w->raw_len);
    w->err = out_reserve(w, BLOCK_HDR + (size_t)bound);
    if (w->err != 0) {
        return;
    }
    clen = LZ4_compress_default((const char *)w->raw,
                                (char *)w->out + w->len + BLOCK_HDR,
                                (int)w->raw_len, bound);
    if (clen <= 0) {
        w->err = IK_ENOMEM; /* cannot happen with a bound-sized output */
        return;
    }
    put32(w->out + w->len, (uint32_t)w->raw_len);
    put32(w->out + w->len + 4, (uint32_t)clen);
    w->len += BLOCK_HDR + (size_t)clen;
    w->raw_len = 0;
}

static void wr(struct writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;

    while (n > 0 && w->err == 0) {
        size_t room = RAW_BLOCK - w->raw_len;
        size_t k = n < room ? n : room;
        memcpy(w->raw + w->raw_len, p, k);
        w->raw_len += k;
        w->sec_raw += k;
        p += k;
        n -= k;
        if (w->raw_len == RAW_BLOCK) {
            flush_block(w);
        }
    }
}

static void wr32(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    wr(w, b, 4);
}

static void wr64(struct writer *w, uint64_t v)
{
    uint8_t b[8];
    put64(b, v);
    wr(w, b, 8);
}

struct kv_enc {
    struct writer *w;
    const uint8_t *last_key;
    size_t last_len;
};

static int enc_kv(void *arg, const struct mvcc_kv *kv)
{
    struct kv_enc *e = arg;
    struct writer *w = e->w;

    if (e->last_key != NULL && e->last_len == kv->key_len &&
        memcmp(e->last_key, kv->key, kv->key_len) == 0) {
        wr32(w, 0);
    } else {
        wr32(w, (uint32_t)kv->key_len);
        wr(w, kv->key, kv->key_len);
        e->last_key = kv->key;
        e->last_len = kv->key_len;
    }
    wr64(w, (uint64_t)kv->mod_revision);
    wr32(w, kv->sub);
    wr64(w, (uint64_t)kv->create_revision);
    wr64(w, (uint64_t)kv->version);
    wr64(w, (uint64_t)kv->lease);
    wr32(w, (uint32_t)kv->value_len);
    wr(w, kv->value, kv->value_len);
    return w->err;
}

/* Close the current section and fill its table entry. */
static void end_section(struct writer *w, unsigned idx, uint32_t type,
                        size_t start)
{
    uint8_t *e;

    flush_block(w);
    if (w->err != 0) {
        return;
    }
    e = w->out + HEADER_SIZE + (size_t)idx * ENTRY_SIZE;
    put32(e, type);
    put32(e + 4, CODEC_LZ4_BLOCKS);
    put64(e + 8, start);
    put64(e + 16, w->len - start);
    put64(e + 24, w->sec_raw);
    put32(e + 32, crc_update(0, w->out + start, w->len - start));
    put32(e + 36, 0);
}

/* What the KV section is made from: a live store or a view. */
struct kv_source {
    const struct mvcc *m;
    const struct mvcc_view *v;
};

static int encode(const struct kv_source *src,
                  const struct snapshot_section *extra, unsigned n_extra,
                  void **out, size_t *out_len)
{
    struct writer w;
    struct kv_enc enc;
    unsigned i, j, n = n_extra + 1;
    size_t start;
    uint32_t crc;

    *out = NULL;
    *out_len = 0;
    if (n_extra >= MAX_SECTIONS) {
        return IK_EINVAL;
    }
    for (i = 0; i < n_extra; i++) {
        if (extra[i].type == SNAPSHOT_SECTION_KV ||
            (extra[i].len > 0 && extra[i].data == NULL)) {
            return IK_EINVAL;
        }
        for (j = 0; j < i; j++) {
            if (extra[j].type == extra[i].type) {
                return IK_EINVAL;
            }
        }
    }
    memset(&w, 0, sizeof(w));
    w.raw = smalloc(RAW_BLOCK);
    if (w.raw == NULL) {
        return IK_ENOMEM;
    }
    w.err = out_reserve(&w, HEADER_SIZE + (size_t)n * ENTRY_SIZE);
    if (w.err == 0) {
        memset(w.out, 0, HEADER_SIZE + (size_t)n * ENTRY_SIZE);
        w.len = HEADER_SIZE + (size_t)n * ENTRY_SIZE;
    }

    /* Section 0: the store. */
    start = w.len;
    w.sec_raw = 0;
    if (src->v != NULL) {
        wr64(&w, (uint64_t)mvcc_view_rev(src->v));
        wr64(&w, (uint64_t)mvcc_view_compact_rev(src->v));
        wr64(&w, (uint64_t)mvcc_view_walk_count(src->v));
    } else {
        wr64(&w, (uint64_t)mvcc_rev(src->m));
        wr64(&w, (uint64_t)mvcc_compact_rev(src->m));
        wr64(&w, (uint64_t)mvcc_walk_count(src->m));
    }
    enc.w = &w;
    enc.last_key = NULL;
    enc.last_len = 0;
    if (w.err == 0) {
        if (src->v != NULL) {
            mvcc_view_walk(src->v, enc_kv, &enc);
        } else {
            mvcc_walk(src->m, enc_kv, &enc);
        }
    }
    end_section(&w, 0, SNAPSHOT_SECTION_KV, start);

    for (i = 0; i < n_extra && w.err == 0; i++) {
        start = w.len;
        w.sec_raw = 0;
        wr(&w, extra[i].data, extra[i].len);
        end_section(&w, i + 1, extra[i].type, start);
    }
    free(w.raw);
    if (w.err != 0) {
        free(w.out);
        return w.err;
    }

    memcpy(w.out, SNAP_MAGIC, 8);
    put32(w.out + 8, SNAP_VERSION);
    put32(w.out + 12, n);
    put64(w.out + 16, w.len);
    put32(w.out + 24, 0);
    crc = crc_update(0, w.out, 28);
    crc = crc_update(crc, w.out + HEADER_SIZE, (size_t)n * ENTRY_SIZE);
    put32(w.out + 28, crc);
    *out = w.out;
    *out_len = w.len;
    return 0;
}

int snapshot_encode(const struct mvcc *m, const struct snapshot_section *extra,
                    unsigned n_extra, void **out, size_t *out_len)
{
    struct kv_source src = {m, NULL};

    if (mvcc_txn_is_open(m)) {
        *out = NULL;
        *out_len = 0;
        return IK_EINVAL;
    }
    return encode(&src, extra, n_extra, out, out_len);
}

int snapshot_encode_view(const struct mvcc_view *v,
                         const struct snapshot_section *extra, unsigned n_extra,
                         void **out, size_t *out_len)
{
    struct kv_source src = {NULL, v};

    return encode(&src, extra, n_extra, out, out_len);
}

/* ---- Decoding ---------------------------------------------------------- */

struct entry {
    uint32_t type;
    const uint8_t *data;
    size_t stored;
    uint64_t raw;
};

/* Check the header and the section table; fill @entries (@max of them)
 * and *n. Section bodies are checked by check_body(). */
static int parse_header(const uint8_t *b, size_t len, struct entry *entries,
                        unsigned *n)
{
    uint32_t nsec, crc, i, j;
    size_t table_end, prev_end;

    if (len < HEADER_SIZE || memcmp(b, SNAP_MAGIC, 8) != 0 ||
        get32(b + 8) != SNAP_VERSION) {
        return IK_ECORRUPT;
    }
    nsec = get32(b + 12);
    if (nsec == 0 || nsec > MAX_SECTIONS) {
        return IK_ECORRUPT;
    }
    table_end = HEADER_SIZE + (size_t)nsec * ENTRY_SIZE;
    if (len < table_end) {
        return IK_ECORRUPT;
    }
    crc = crc_update(0, b, 28);
    crc = crc_update(crc, b + HEADER_SIZE, (size_t)nsec * ENTRY_SIZE);
    if (crc != get32(b + 28) || get64(b + 16) != (uint64_t)len ||
        get32(b + 24) != 0) {
        return IK_ECORRUPT;
    }
    prev_end = table_end;
    for (i = 0; i < nsec; i++) {
        const uint8_t *e = b + HEADER_SIZE + (size_t)i * ENTRY_SIZE;
        uint64_t off = get64(e + 8), stored = get64(e + 16);

        if (get32(e + 4) != CODEC_LZ4_BLOCKS || get32(e + 36) != 0 ||
            off != prev_end || stored > len - off) {
            return IK_ECORRUPT;
        }
        entries[i].type = get32(e);
        entries[i].data = b + off;
        entries[i].stored = (size_t)stored;
        entries[i].raw = get64(e + 24);
        if (crc_update(0, entries[i].data, entries[i].stored) !=
            get32(e + 32)) {
            return IK_ECORRUPT;
        }
        for (j = 0; j < i; j++) {
            if (entries[j].type == entries[i].type) {
                return IK_ECORRUPT;
            }
        }
        prev_end = (size_t)(off + stored);
    }
    if (prev_end != len) {
        return IK_ECORRUPT;
    }
    *n = nsec;
    return 0;
}

struct reader {
    const uint8_t *p, *end; /* stored bytes not yet decompressed */
    uint8_t *buf;           /* current decompressed block */
    size_t pos, len;
    uint64_t raw_left; /* raw bytes the entry says remain after buf */
};

static int next_block(struct reader *r)
{
    uint32_t raw, clen;
    int got;

    if ((size_t)(r->end - r->p) < BLOCK_HDR) {
        return IK_ECORRUPT;
    }
    raw = get32(r->p);
    clen = get32(r->p + 4);
    r->p += BLOCK_HDR;
    if (raw == 0 || raw > RAW_BLOCK || raw > r->raw_left ||
        clen > (size_t)(r->end - r->p) || clen > INT32_MAX) {
        return IK_ECORRUPT;
    }
    got = LZ4_decompress_safe((const char *)r->p, (char *)r->buf, (int)clen,
                              (int)raw);
    if (got < 0 || (uint32_t)got != raw) {
        return IK_ECORRUPT;
    }
    r->p += clen;
    r->pos = 0;
    r->len = raw;
    r->raw_left -= raw;
    return 0;
}

static int rd(struct reader *r, void *dst, size_t n)
{
    uint8_t *d = dst;

    while (n > 0) {
        size_t k;
        int rv;
        if (r->pos == r->len) {
            rv = next_block(r);
            if (rv != 0) {
                return rv;
            }
        }
        k = r->len - r->pos;
        if (k > n) {
            k = n;
        }
        memcpy(d, r->buf + r->pos, k);
        r->pos += k;
        d += k;
        n -= k;
    }
    return 0;
}

/* Bytes the reader can still deliver. */
static uint64_t rd_left(const struct reader *r)
{
    return (r->len - r->pos) + r->raw_left;
}

static int rd32(struct reader *r, uint32_t *v)
{
    uint8_t b[4];
    int rv = rd(r, b, 4);
    *v = rv == 0 ? get32(b) : 0;
    return rv;
}

static int rd64(struct reader *r, uint64_t *v)
{
    uint8_t b[8];
    int rv = rd(r, b, 8);
    *v = rv == 0 ? get64(b) : 0;
    return rv;
}

static int reader_init(struct reader *r, const struct entry *e)
{
    memset(r, 0, sizeof(*r));
    r->p = e->data;
    r->end = e->data + e->stored;
    r->raw_left = e->raw;
    r->buf = smalloc(RAW_BLOCK);
    return r->buf == NULL ? IK_ENOMEM : 0;
}

/* After the content was read: everything consumed exactly. */
static int reader_done(const struct reader *r)
{
    return r->pos == r->len && r->raw_left == 0 && r->p == r->end ? 0
                                                                  : IK_ECORRUPT;
}

/* Grow @buf (capacity *cap) to hold @n bytes. */
static int scratch(uint8_t **buf, size_t *cap, size_t n)
{
    uint8_t *p;

    if (n <= *cap) {
        return 0;
    }
    p = srealloc(*buf, n);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    *buf = p;
    *cap = n;
    return 0;
}

static int decode_kv(const struct entry *e, struct mvcc *m)
{
    struct reader r;
    uint8_t *key = NULL, *val = NULL;
    size_t key_cap = 0, val_cap = 0, key_len = 0;
    uint64_t rev, crev, count, i;
    int rv;

    rv = reader_init(&r, e);
    if (rv != 0) {
        return rv;
    }
    if ((rv = rd64(&r, &rev)) != 0 || (rv = rd64(&r, &crev)) != 0 ||
        (rv = rd64(&r, &count)) != 0) {
        goto out;
    }
    for (i = 0; i < count; i++) {
        struct mvcc_kv kv;
        uint32_t klen, vlen;
        uint64_t mod, create, version, lease;

        if ((rv = rd32(&r, &klen)) != 0) {
            goto out;
        }
        if (klen == 0 && key_len == 0) {
            rv = IK_ECORRUPT; /* "same key" with no previous record */
            goto out;
        }
        if (klen != 0) {
            if (klen > rd_left(&r)) {
                rv = IK_ECORRUPT;
                goto out;
            }
            if ((rv = scratch(&key, &key_cap, klen)) != 0 ||
                (rv = rd(&r, key, klen)) != 0) {
                goto out;
            }
            key_len = klen;
        }
        if ((rv = rd64(&r, &mod)) != 0 || (rv = rd32(&r, &kv.sub)) != 0 ||
            (rv = rd64(&r, &create)) != 0 || (rv = rd64(&r, &version)) != 0 ||
            (rv = rd64(&r, &lease)) != 0 || (rv = rd32(&r, &vlen)) != 0) {
            goto out;
        }
        if (vlen > rd_left(&r)) {
            rv = IK_ECORRUPT;
            goto out;
        }
        if ((rv = scratch(&val, &val_cap, vlen)) != 0 ||
            (rv = rd(&r, val, vlen)) != 0) {
            goto out;
        }
        kv.key = key;
        kv.key_len = key_len;
        kv.value = val;
        kv.value_len = vlen;
        kv.mod_revision = (int64_t)mod;
        kv.create_revision = (int64_t)create;
        kv.version = (int64_t)version;
        kv.lease = (int64_t)lease;
        rv = mvcc_load_kv(m, &kv);
        if (rv == IK_EINVAL) {
            rv = IK_ECORRUPT;
        }
        if (rv != 0) {
            goto out;
        }
    }
    rv = reader_done(&r);
    if (rv == 0 && mvcc_load_finish(m, (int64_t)rev, (int64_t)crev) != 0) {
        rv = IK_ECORRUPT;
    }
out:
    free(key);
    free(val);
    free(r.buf);
    return rv;
}

int snapshot_decode(const void *buf, size_t len, struct mvcc *into)
{
    struct entry *entries;
    struct mvcc tmp;
    unsigned n = 0, i;
    int rv;

    if (buf == NULL || mvcc_txn_is_open(into)) {
        return buf == NULL ? IK_ECORRUPT : IK_EINVAL;
    }
    entries = smalloc(MAX_SECTIONS * sizeof(*entries));
    if (entries == NULL) {
        return IK_ENOMEM;
    }
    rv = parse_header(buf, len, entries, &n);
    if (rv != 0) {
        free(entries);
        return rv;
    }
    rv = IK_ECORRUPT; /* no KV section */
    mvcc_init(&tmp);
    for (i = 0; i < n; i++) {
        if (entries[i].type == SNAPSHOT_SECTION_KV) {
            rv = decode_kv(&entries[i], &tmp);
            break;
        }
    }
    free(entries);
    if (rv != 0) {
        mvcc_close(&tmp);
        return rv;
    }
    mvcc_swap(into, &tmp);
    mvcc_close(&tmp);
    return 0;
}

int snapshot_section_get(const void *buf, size_t len, uint32_t type,
                         void **data, size_t *data_len)
{
    struct entry *entries;
    struct reader r;
    unsigned n = 0, i;
    uint8_t *out = NULL;
    int rv;

    *data = NULL;
    *data_len = 0;
    if (buf == NULL) {
        return IK_ECORRUPT;
    }
    entries = smalloc(MAX_SECTIONS * sizeof(*entries));
    if (entries == NULL) {
        return IK_ENOMEM;
    }
    rv = parse_header(buf, len, entries, &n);
    if (rv != 0) {
        free(entries);
        return rv;
    }
    for (i = 0; i < n && entries[i].type != type; i++) {
    }
    if (i == n) {
        free(entries);
        return IK_ENOENT;
    }
    /* The raw length is covered by the header checksum, but bound it by
     * what LZ4 could have produced from the stored bytes before trusting
     * it with an allocation. */
    if (entries[i].raw > (uint64_t)entries[i].stored * 255 ||
        entries[i].raw > SIZE_MAX) {
        free(entries);
        return IK_ECORRUPT;
    }
    rv = reader_init(&r, &entries[i]);
    if (rv == 0 && entries[i].raw > 0) {
        out = smalloc((size_t)entries[i].raw);
        if (out == NULL) {
            rv = IK_ENOMEM;
        }
    }
    if (rv == 0) {
        rv = rd(&r, out, (size_t)entries[i].raw);
    }
    if (rv == 0) {
        rv = reader_done(&r);
    }
    if (rv == 0) {
        *data = out;
        *data_len = (size_t)entries[i].raw;
        out = NULL;
    }
    free(out);
    free(r.buf);
    free(entries);
    return rv;
}
