/*
 * snapfile: snapshot files as `etcdctl snapshot save` / `ikadactl snapshot
 * save` store them, their status, and restoring one into a new data dir
 * (etcdctl snapshot restore's role).
 *
 * File layout (what ikada's Maintenance.Snapshot streams, see
 * server/service.c): an ikada snapshot buffer (snapshot/snapshot.c, which
 * records its own length in its header), zero padding up to a multiple of
 * 512 bytes, then the SHA-256 of everything before it (32 bytes). As with
 * etcd's files, "has a hash" means size % 512 == 32.
 *
 * Real etcd's snapshot files are bbolt databases; they are recognised and
 * refused with a message saying so (ikada cannot import them).
 *
 * A restored data dir is what a member of a NEW cluster finds on its
 * first start after raft installed a snapshot: <data-dir>/member/meta
 * (server/meta.h) with the new cluster's member and cluster ids, derived
 * from --initial-cluster and --initial-cluster-token exactly as a fresh
 * `ikada` start derives them, and <data-dir>/member/raft/ holding
 * canonical/raft's metadata (term 1) and one raft snapshot at index 1,
 * term 1, whose configuration lists every --initial-cluster member as a
 * voter. The snapshot's payload is the saved store (keys, history,
 * revisions, compaction point) and leases as they were, with the member
 * table replaced by the new members (no client URLs: each member
 * publishes them on start) and no alarms. Each member of the new cluster
 * is restored from the same file with its own --name and
 * --initial-advertise-peer-urls; started together with the same
 * --initial-cluster they form the cluster holding the data.
 *
 * Threading: blocking file I/O; snapfile_restore() runs a private libuv
 * loop for canonical/raft's I/O. Call from one thread at a time.
 */
#ifndef IKADA_SNAPFILE_H
#define IKADA_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of the @errmsg buffers of this module (etcd's hash mismatch message
 * lists both digests byte by byte). */
#define SNAPFILE_ERRMSG_SIZE 1024

/* A snapshot file read into memory. */
struct snapfile {
    uint8_t *data;       /* the whole file (malloc'ed) */
    size_t file_len;     /* its size */
    const uint8_t *snap; /* the ikada snapshot inside @data */
    size_t snap_len;
    bool has_hash; /* a SHA-256 trailer is present (size % 512 == 32) */
};

/*
 * Read @path and find the ikada snapshot in it. With @check_hash, a file
 * with a hash trailer must match it ("expected sha256 [..], got [..]", as
 * etcd) and a file without one is refused ("snapshot missing hash but
 * --skip-hash-check=false"); without @check_hash the trailer, if any, is
 * ignored. Then the whole snapshot is verified (magic, checksums, every
 * section decodes) with snapshot_decode().
 * Returns 0 (free with snapfile_free()), or with a message in @errmsg
 * (SNAPFILE_ERRMSG_SIZE bytes): IK_ENOENT / IK_EIO (the file cannot be
 * read: "open <path>: <strerror>"), IK_ECORRUPT (hash mismatch, not an
 * ikada snapshot, an etcd bbolt file, damaged), IK_ENOMEM. On error @f
 * holds nothing.
 */
int snapfile_read(const char *path, bool check_hash, struct snapfile *f,
                  char *errmsg);

/* Free what @f holds; leaves it zeroed. Safe on a zeroed struct. */
void snapfile_free(struct snapfile *f);

/* What `snapshot status` reports (etcd's snapshot.Status fields). */
struct snapfile_status {
    /* CRC-32 (IEEE) of the decompressed store section followed by the
     * decompressed lease section: equal for equal data, whatever the
     * membership of the cluster the file came from. */
    uint32_t hash;
    int64_t revision;    /* the store's current revision */
    uint64_t total_keys; /* stored key versions (history and tombstones
                            included), as etcd counts bucket entries */
    uint64_t total_size; /* bytes of the snapshot (without padding/hash) */
};

/*
 * Status of the snapshot file @path (no hash check, as etcd's status).
 * Returns 0, or an error of snapfile_read() with @errmsg set.
 */
int snapfile_status(const char *path, struct snapfile_status *st, char *errmsg);

/* What `snapshot restore` is told (etcdctl's flags). */
struct snapfile_restore_config {
    const char *snapshot_path;
    const char *name;            /* --name */
    const char *data_dir;        /* --data-dir; NULL or "": <name>.etcd */
    const char *initial_cluster; /* --initial-cluster */
    const char *token;           /* --initial-cluster-token */
    const char *peer_urls;       /* --initial-advertise-peer-urls, comma
                                    separated */
    bool skip_hash_check;        /* --skip-hash-check */
    /* Optional progress callbacks (for etcdctl's log lines), with @arg:
     * on_start once the flags and the data dir were checked, before the
     * file is read; on_member for every member of the new cluster once
     * the file was verified, before the data dir is written. */
    void (*on_start)(void *arg);
    void (*on_member)(void *arg, uint64_t cluster_id, uint64_t member_id,
                      char *const *peer_urls, size_t n_peer_urls);
    void *arg;
};

/*
 * Restore: verify the flags as etcd's restore does (--initial-cluster
 * parses and contains --name with exactly its
 * --initial-advertise-peer-urls), refuse an existing data dir ("data-dir
 * \"D\" exists"), read and verify the file (snapfile_read()), then write
 * the data dir described at the top. Everything is checked before
 * anything is created; if writing fails half-way, the data dir is removed
 * again. Returns 0, or IK_EINVAL (flags, existing data dir), an error of
 * snapfile_read(), IK_EIO (writing failed) or IK_ENOMEM, with @errmsg
 * (SNAPFILE_ERRMSG_SIZE bytes) set.
 */
int snapfile_restore(const struct snapfile_restore_config *cfg, char *errmsg);

/* The data dir snapfile_restore() writes for @cfg: @cfg->data_dir, or
 * "<name>.etcd" when it is empty. Writes it into @buf (NUL-terminated,
 * truncated to @size). */
void snapfile_data_dir(const struct snapfile_restore_config *cfg, char *buf,
                       size_t size);

#endif /* IKADA_SNAPFILE_H */
