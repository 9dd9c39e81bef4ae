/*
 * snapshot: the snapshot buffer format (the raft FSM's snapshot/restore).
 *
 * A snapshot is one contiguous byte buffer: a fixed header, a section table
 * and the sections. Section SNAPSHOT_SECTION_KV holds the complete MVCC
 * state (every key with its retained history, tombstones included, leases
 * per version, current and compacted revision). Other modules add their own
 * state as extra sections (opaque bytes, their own inner format): the
 * snapshot layer compresses them with LZ4, checksums them and hands them
 * back on restore. Decoders ignore section types they do not know, so new
 * sections need no format version bump. The byte layout is specified at the
 * top of snapshot.c.
 *
 * Pure: no I/O. Deterministic: the same store and sections give the same
 * bytes.
 *
 * Threading: snapshot_encode_view() only reads the view and its own
 * buffers, so it can run on any thread (e.g. libuv's thread pool) while the
 * store's owner keeps writing the store; the other functions touch only
 * what they are given. The allocation hook is read, never written.
 */
#ifndef IKADA_SNAPSHOT_H
#define IKADA_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc;
struct mvcc_view;

/* Section types. Values are part of the format: never reuse one. */
enum snapshot_section_type {
    SNAPSHOT_SECTION_KV = 1,      /* written by snapshot_encode() itself */
    SNAPSHOT_SECTION_LEASES = 2,  /* reserved: lease module */
    SNAPSHOT_SECTION_MEMBERS = 3, /* reserved: cluster membership */
    SNAPSHOT_SECTION_META = 4,    /* reserved: FSM metadata */
    SNAPSHOT_SECTION_AUTH = 5,    /* reserved: users/roles */
};

/* An extra section given to snapshot_encode(). */
struct snapshot_section {
    uint32_t type; /* not SNAPSHOT_SECTION_KV; at most once per type */
    const void *data;
    size_t len;
};

/* Test hook: when non-NULL, called before every allocation; returning true
 * makes it fail (IK_ENOMEM). */
extern bool (*snapshot_fail_alloc_hook)(void);

/*
 * Serialize @m (which must have no open txn) plus @n_extra extra sections
 * into one malloc'ed buffer: on success *out and *out_len are set and the
 * caller frees *out with free(). Returns 0, IK_EINVAL (open txn, a
 * duplicate or KV extra section type) or IK_ENOMEM; on error nothing is
 * allocated and *out is NULL.
 */
int snapshot_encode(const struct mvcc *m, const struct snapshot_section *extra,
                    unsigned n_extra, void **out, size_t *out_len);

/*
 * snapshot_encode() of the store as view @v captured it (mvcc.h): the same
 * bytes snapshot_encode() would have produced at capture with the same
 * extra sections. Callable from any thread while the view is alive; the
 * extra sections' data must stay unchanged meanwhile. Returns 0,
 * IK_EINVAL (duplicate or KV extra section type) or IK_ENOMEM; on error
 * nothing is allocated and *out is NULL.
 */
int snapshot_encode_view(const struct mvcc_view *v,
                         const struct snapshot_section *extra, unsigned n_extra,
                         void **out, size_t *out_len);

/*
 * Verify the whole buffer (magic, version, header checksum, every section's
 * checksum and decompressed content) and load the KV section into @into,
 * which must be an initialized store without an open txn. On success the
 * previous content of @into is freed and replaced. On any error @into is
 * left untouched. The buffer is only read; the caller keeps owning it.
 * Returns 0, IK_ECORRUPT (bad magic, unknown version, checksum mismatch,
 * truncation, malformed content, missing KV section) or IK_ENOMEM.
 */
int snapshot_decode(const void *buf, size_t len, struct mvcc *into);

/*
 * Check the header and section table of @buf and extract the section of
 * @type: *data is a malloc'ed copy of its decompressed bytes (the caller
 * frees it; NULL when *data_len is 0). Returns 0, IK_ENOENT if the snapshot
 * has no such section, IK_ECORRUPT or IK_ENOMEM (*data is then NULL).
 */
int snapshot_section_get(const void *buf, size_t len, uint32_t type,
                         void **data, size_t *data_len);

#endif /* IKADA_SNAPSHOT_H */
