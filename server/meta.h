/*
 * meta: the data-dir metadata file and the data-dir lock.
 *
 * Layout of an ikada data dir (--data-dir):
 *
 *   <data-dir>/                 created with mode 0700 (as etcd does)
 *   <data-dir>/member/          everything this member persists
 *   <data-dir>/member/meta      this module's file: who this member is and
 *                               the cluster it was bootstrapped into
 *   <data-dir>/member/lock      empty file; the running ikada holds an
 *                               exclusive flock() on it
 *   <data-dir>/member/raft/     canonical raft's libuv log and snapshots
 *
 * The meta file is written once when the member is bootstrapped and read
 * at every start: its presence means "this data dir belongs to a member",
 * so --initial-cluster* flags are then ignored, as etcd ignores them for an
 * existing data dir. The byte layout is specified at the top of meta.c.
 *
 * Writes are atomic: a temp file in the same directory is written and
 * fsync()ed, renamed over the old file, and the directory fsync()ed.
 * Reads validate everything (magic, version, lengths, CRC32) and report
 * any damage as IK_ECORRUPT with a precise message; never a crash.
 */
#ifndef IKADA_META_H
#define IKADA_META_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

/* The format version meta_write() writes and meta_read() accepts. */
#define META_VERSION 1

/* Largest meta file meta_read() accepts (a sanity bound, far above any
 * real cluster's metadata). */
#define META_MAX_SIZE (1u << 20)

/* Test hook: when set, called before every allocation this module makes;
 * returning true makes that allocation fail (IK_ENOMEM). */
extern bool (*meta_fail_alloc_hook)(void);

/* One member of the cluster as bootstrapped. */
struct meta_member {
    uint64_t id;
    char *name; /* may be "" */
    char **peer_urls;
    size_t n_peer_urls;
};

struct meta {
    uint32_t version; /* set by meta_read(); meta_write() ignores it */
    uint64_t cluster_id;
    uint64_t member_id;          /* this member */
    char *name;                  /* this member's --name */
    char *token;                 /* --initial-cluster-token */
    struct meta_member *members; /* initial membership */
    size_t n_members;
};

/*
 * Create <data-dir> and <data-dir>/member and <data-dir>/member/raft with
 * mode 0700 if missing (like `mkdir -p`). Returns 0, or IK_EIO with the
 * failing path and strerror in @errmsg (IK_ERRMSG_SIZE bytes).
 */
int meta_mkdirs(const char *data_dir, char *errmsg);

/*
 * Path helpers: write "<data-dir>/member/raft" / "<data-dir>/member/meta"
 * into @buf of @size bytes. Return 0, or IK_EINVAL if it does not fit.
 */
int meta_raft_dir(const char *data_dir, char *buf, size_t size);
int meta_path(const char *data_dir, char *buf, size_t size);

/*
 * Read <data-dir>/member/meta into @m (whose previous content is ignored
 * and not freed). Returns 0 (caller frees with meta_free()), or:
 *  - IK_ENOENT: no meta file (a fresh data dir);
 *  - IK_ECORRUPT: truncated, bad magic, unsupported version, bad checksum
 *    or inconsistent content; @errmsg says exactly what;
 *  - IK_EIO: the file could not be read (errmsg has strerror);
 *  - IK_ENOMEM.
 * On error @m holds nothing to free.
 */
int meta_read(const char *data_dir, struct meta *m, char *errmsg);

/*
 * Atomically (re)write <data-dir>/member/meta from @m; <data-dir>/member
 * must exist (meta_mkdirs()). Strings must be non-NULL (use "" for none).
 * Returns 0, IK_EINVAL (a field too large for the format, NULL string),
 * IK_EIO (errmsg has the failing step and strerror) or IK_ENOMEM. On error
 * the previous file, if any, is left intact and no temp file remains.
 */
int meta_write(const char *data_dir, const struct meta *m, char *errmsg);

/* Free what @m owns (not @m itself); leaves it zeroed. Safe on zeroed. */
void meta_free(struct meta *m);

/*
 * Take the data-dir lock: open (creating) <data-dir>/member/lock and
 * flock(LOCK_EX|LOCK_NB) it; <data-dir>/member must exist. Returns 0 and
 * the lock's fd in *@fd (keep it open while running; meta_unlock() to
 * release), or IK_EIO with a message in @errmsg, in particular when
 * another process (or another open of the same file) holds the lock:
 * "data dir <dir> is locked by another ikada (...)".
 */
int meta_lock(const char *data_dir, int *fd, char *errmsg);

/* Release the lock taken by meta_lock() and close @fd. */
void meta_unlock(int fd);

#endif /* IKADA_META_H */
