/*
 * mvcc: the multi-version key-value store, etcd's revision model.
 *
 * Pure in-memory data structure: no I/O, no protobuf, no threads. The store
 * is made durable by the raft log plus snapshots (snapshot/snapshot.h).
 *
 * Revision model (as etcd's mvcc package):
 *  - The store revision starts at 1 (an empty store is at revision 1).
 *  - Every write transaction that changes something takes the next main
 *    revision. Its changes (puts and tombstones) share that main revision
 *    and get increasing sub revisions 0, 1, 2 ... in the order made.
 *  - Each key version records create_revision (main revision of the put
 *    that created the key's current incarnation), mod_revision (main
 *    revision of this change), version (1 for the creating put, +1 per
 *    put), and the lease id it was written with (0 = none).
 *  - Deleting a key appends a tombstone. A put after a tombstone starts a
 *    new incarnation: new create_revision, version 1.
 *  - History is kept until compaction. Compacting at revision R drops every
 *    version not needed to read at R or later; reading below R then fails
 *    with IK_ECOMPACTED. Reading at exactly R works.
 *  - The compacted revision starts at -1 (never compacted), like etcd.
 *
 * Ranges use etcd's wire convention for the end of a range:
 *   end_len == 0                   the single key @key
 *   end == "\0" (end_len == 1)     every key >= @key (from-key)
 *   otherwise                      keys in [key, end); empty if end <= key
 *
 * Writes go through a write transaction: mvcc_txn_begin(), any number of
 * mvcc_txn_put()/mvcc_txn_delete_range(), then mvcc_txn_end() (keep) or
 * mvcc_txn_abort() (undo everything since begin). The revision only moves
 * at mvcc_txn_end() and only if the txn changed something: a txn made only
 * of delete_range calls that deleted nothing leaves the revision alone.
 * While a txn is open, mvcc_range()/mvcc_get() see its changes, at the
 * revision mvcc_txn_rev() (exactly etcd's write-txn read view).
 *
 * Memory: the store copies every key and value it is given. Pointers in a
 * struct mvcc_kv handed out by the store point into the store: they stay
 * valid until the next mvcc_txn_end()/mvcc_txn_abort()/mvcc_compact()/
 * mvcc_close()/mvcc_swap()/mvcc_view_release() (writes inside an open txn
 * do not move existing versions, so a kv read before a put in the same txn
 * stays valid until the txn ends). Copy what you need to keep.
 *
 * Views (snapshots of the whole state for another thread):
 * mvcc_view_take() captures, in O(1), an immutable view of the store as it
 * is: keys, retained history, revision and compacted revision. The store
 * goes on taking writes; a view never sees them. Implementation: the index
 * is a copy-on-write B-tree shared with the view, and keys and versions are
 * reference counted, so a write copies the few nodes and the key it
 * changes when they are shared, never the whole store (see mvcc.c).
 * While at least one view is alive, mvcc_compact() only records the new
 * compacted revision (reads and walks behave exactly as after a full
 * compaction); the memory is reclaimed when the last view is released.
 *
 * Threading: a store and its views belong to one thread (the owner), which
 * does every call below except those marked "any thread". Views may be
 * read (mvcc_view_walk() etc.) by other threads, concurrently with the
 * owner writing the store, until the owner releases them; the last reader
 * may also discard the view's data itself (mvcc_view_discard()), so the
 * owner's release is O(1).
 */
#ifndef IKADA_MVCC_H
#define IKADA_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/btree.h"

/* One version of one key. version == 0 marks a tombstone (value empty,
 * create_revision and lease 0); tombstones only show up in
 * mvcc_txn_change() and mvcc_walk(), never in ranges. */
struct mvcc_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
    uint32_t sub; /* sub revision within mod_revision */
};

struct mvcc_range_result {
    struct mvcc_kv *kvs; /* malloc'ed array of n kvs (NULL when n == 0) */
    size_t n;            /* kvs returned (<= limit when a limit is set) */
    size_t count;        /* keys in the range at the read revision */
    int64_t rev;         /* store revision of the read view (header rev) */
};

struct mvcc_stats {
    size_t keys;      /* keys in the index, including tombstoned ones */
    size_t revisions; /* stored versions, tombstones included */
    size_t bytes;     /* approximate heap bytes used by the data */
};

struct mvcc_key;
struct mvcc_change;
struct mvcc_view;

struct mvcc {
    /* Private: use the functions below. */
    struct btree index; /* struct mvcc_key items */
    int64_t rev;        /* current (last committed) revision */
    int64_t compact_rev;
    bool txn_open;
    struct mvcc_change *changes; /* changes of the open txn */
    size_t n_changes;
    size_t cap_changes;
    size_t n_revs;
    size_t bytes;
    int64_t load_max_rev; /* highest mod revision seen by mvcc_load_kv() */
    void (*commit_hook)(void *arg, const struct mvcc *m);
    void *commit_arg;
    struct mvcc_view *views; /* live views sharing this store's data */
    bool compact_pending;    /* compact_rev recorded, memory not reclaimed */
    size_t n_dead; /* keys left in the index without versions (see mvcc.c) */
    struct mvcc_key **retired; /* keys the open txn replaced by copies */
    size_t n_retired;
    size_t cap_retired;
};

/*
 * Test hook for fault injection: when non-NULL, called before every
 * allocation the store makes; a true return makes it fail with IK_ENOMEM.
 */
extern bool (*mvcc_fail_alloc_hook)(void);

/* An empty store at revision 1, compacted revision -1. Cannot fail. */
void mvcc_init(struct mvcc *m);

/* Free everything (an open txn is discarded). @m can be mvcc_init()ed
 * again. Views still alive stay valid (they keep what they share) and
 * must still be released; they are no longer tied to @m. */
void mvcc_close(struct mvcc *m);

/* Exchange the contents (keys, history, revisions) of two stores; each
 * keeps its own commit hook. Neither may have an open txn. Live views
 * follow the contents they were taken from. */
void mvcc_swap(struct mvcc *a, struct mvcc *b);

/* Current revision: the revision of the last write that changed the store
 * (1 for an empty store). Does not include an open txn. */
int64_t mvcc_rev(const struct mvcc *m);

/* Revision of the last compaction, -1 if never compacted. Reads below it
 * fail with IK_ECOMPACTED. */
int64_t mvcc_compact_rev(const struct mvcc *m);

/* Sizes of the stored data. While a compaction waits for views to go away
 * (see Views), keys, revisions and bytes still count what it drops. */
void mvcc_stats(const struct mvcc *m, struct mvcc_stats *out);

/*
 * Read the keys of a range (see the range forms above) as they were at
 * revision @rev (0 or negative: the current revision, which inside an open
 * txn includes the txn's changes). Keys come back in ascending order, at
 * most @limit of them (0 = no limit); res->count is the number of keys in
 * the range regardless of @limit. With @count_only no kvs are returned
 * (only res->count).
 * Errors, checked in etcd's order: IK_EFUTUREREV if @rev is above the
 * current revision, IK_ECOMPACTED if @rev is below the compacted revision,
 * IK_ENOMEM. On error *res is zeroed and nothing is allocated.
 * On success the caller frees res->kvs with free() (or
 * mvcc_range_result_free()); the kvs point into the store (see above).
 */
int mvcc_range(const struct mvcc *m, const uint8_t *key, size_t key_len,
               const uint8_t *end, size_t end_len, int64_t rev, size_t limit,
               bool count_only, struct mvcc_range_result *res);

/* Free res->kvs and zero *res. */
void mvcc_range_result_free(struct mvcc_range_result *res);

/*
 * The live version of @key at the current revision (including an open
 * txn's changes). Returns 0 and fills *kv, or IK_ENOENT if the key does not
 * exist (never written, or tombstoned). Never allocates.
 */
int mvcc_get(const struct mvcc *m, const uint8_t *key, size_t key_len,
             struct mvcc_kv *kv);

/*
 * Start a write txn. Returns 0, or IK_EINVAL if one is already open.
 */
int mvcc_txn_begin(struct mvcc *m);

/* Whether a write txn is open. */
bool mvcc_txn_is_open(const struct mvcc *m);

/* The revision the open txn writes to is mvcc_rev() + 1; this returns the
 * revision its read view is at: mvcc_rev() + 1 once it changed something,
 * else mvcc_rev() (etcd's rule, used for response headers). */
int64_t mvcc_txn_rev(const struct mvcc *m);

/*
 * Put @key = @value with @lease in the open txn. The key and value are
 * copied. @key must not be empty. Returns 0, IK_EINVAL (no open txn, empty
 * key) or IK_ENOMEM; on error this put changed nothing (earlier changes of
 * the txn stay, the caller decides to end or abort).
 */
int mvcc_txn_put(struct mvcc *m, const uint8_t *key, size_t key_len,
                 const uint8_t *value, size_t value_len, int64_t lease);

/*
 * Delete every live key of the range (range forms above) in the open txn,
 * one tombstone each. *deleted (if not NULL) gets the number of keys
 * deleted. Returns 0, IK_EINVAL (no open txn) or IK_ENOMEM; on error this
 * call changed nothing.
 */
int mvcc_txn_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
                          const uint8_t *end, size_t end_len, int64_t *deleted);

/* Number of changes (puts and tombstones) made by the open txn so far. */
size_t mvcc_txn_changes(const struct mvcc *m);

/*
 * Change @i (0-based, in order) of the open txn: *kv is the version written
 * (a tombstone has version 0). If @prev is not NULL it gets the key's
 * version just before this change, and the return value says whether there
 * was a live one (false: the key did not exist, e.g. a create). Used to
 * emit watch events and lease attach/detach before mvcc_txn_end().
 */
bool mvcc_txn_change(const struct mvcc *m, size_t i, struct mvcc_kv *kv,
                     struct mvcc_kv *prev);

/*
 * Commit the open txn: the revision moves to mvcc_rev() + 1 if it changed
 * anything. Returns the (new) current revision. Without an open txn it
 * does nothing and returns mvcc_rev().
 */
int64_t mvcc_txn_end(struct mvcc *m);

/*
 * Install (or with NULL remove) the commit hook: mvcc_txn_end() of a txn
 * that changed something calls @fn once, before the revision moves, while
 * mvcc_txn_changes()/mvcc_txn_change() still list the txn's changes (in
 * order; their mod_revision is the new revision). Watchers and the lessor
 * (attach/detach on put and delete) learn about writes here, whichever
 * path made them (kv_put(), kv_txn(), ...). @fn must not modify the store.
 * mvcc_close() removes the hook.
 */
void mvcc_set_commit_hook(struct mvcc *m,
                          void (*fn)(void *arg, const struct mvcc *m),
                          void *arg);

/* Undo every change of the open txn and close it. Cannot fail. Without
 * views it never allocates; with views alive it may try to (to unlink a
 * key the txn created from index nodes a view shares) and if that fails
 * the key stays in the index without versions, invisible to every read,
 * until the memory of the next compaction or last view release. */
void mvcc_txn_abort(struct mvcc *m);

/* One-write conveniences: begin, write, end (abort on error). *rev (if not
 * NULL) gets the revision after the write. Same errors as the txn calls. */
int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len,
             const uint8_t *value, size_t value_len, int64_t lease,
             int64_t *rev);
int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
                      const uint8_t *end, size_t end_len, int64_t *deleted,
                      int64_t *rev);

/*
 * Compact at @rev: drop every version that no read at @rev or later needs
 * (for each key, everything older than its latest version <= @rev, and
 * that version too if it is a tombstone; keys left without versions leave
 * the index). Memory is freed before returning, or, while views are alive,
 * when the last one is released (the dropped versions are gone for every
 * reader and walker right away either way).
 * Returns 0; IK_ECOMPACTED if @rev <= mvcc_compact_rev(); IK_EFUTUREREV if
 * @rev > mvcc_rev(); IK_EINVAL if a txn is open. Never allocates.
 */
int mvcc_compact(struct mvcc *m, int64_t rev);

/*
 * Call @fn for every stored version (tombstones included) in key order,
 * each key's versions oldest first. Stops at the first non-zero return of
 * @fn and returns it; returns 0 after a full walk. @fn must not modify the
 * store.
 */
int mvcc_walk(const struct mvcc *m,
              int (*fn)(void *arg, const struct mvcc_kv *kv), void *arg);

/* Number of versions a full mvcc_walk() visits. O(1), except while a
 * compaction waits for views (then it counts, O(keys)). */
size_t mvcc_walk_count(const struct mvcc *m);

/*
 * Capture a view of the whole store (see Views above) in O(1). The store
 * must have no open txn. *@out belongs to the caller until
 * mvcc_view_release(). Returns 0, IK_EINVAL (open txn) or IK_ENOMEM (*@out
 * NULL).
 */
int mvcc_view_take(struct mvcc *m, struct mvcc_view **out);

/*
 * Release a view: frees what only it kept alive (unless mvcc_view_discard()
 * did) and, if it was the last view of its store and a compaction was
 * waiting, reclaims that memory now (O(keys), as mvcc_compact() without
 * views). Owner thread, once no other thread uses the view any more.
 */
void mvcc_view_release(struct mvcc_view *v);

/*
 * Let go of the view's data now: frees what only the view kept alive
 * (typically what the store copied away since capture), so that the
 * release is O(1) for the owner. Any thread, once every walk of the view
 * is over; the view can then no longer be walked or counted (its revisions
 * can still be read), only released, by the owner, which must happen
 * after this call returns (e.g. from a work request's completion on the
 * owner's loop). Idempotent.
 */
void mvcc_view_discard(struct mvcc_view *v);

/*
 * mvcc_view_discard() calling @pace(@arg) after every MVCC_DISCARD_PACE
 * keys it lets go of, so the caller can spread the freeing over time (e.g.
 * sleep a little): with glibc, a burst of frees from one thread is
 * consolidated later in one go by whichever thread next grows the heap,
 * i.e. the store's owner. @pace NULL: no pacing.
 */
#define MVCC_DISCARD_PACE 2048
void mvcc_view_discard_paced(struct mvcc_view *v, void (*pace)(void *arg),
                             void *arg);

/* The store revision and compacted revision at capture. Any thread. */
int64_t mvcc_view_rev(const struct mvcc_view *v);
int64_t mvcc_view_compact_rev(const struct mvcc_view *v);

/* Number of versions mvcc_view_walk() visits: O(1), or O(keys) if a
 * compaction was waiting at capture. Any thread. */
size_t mvcc_view_walk_count(const struct mvcc_view *v);

/*
 * mvcc_walk() over the view: the store's content at capture, whatever was
 * written since. The kvs point into memory the view keeps alive until it
 * is released. Any thread, several at once.
 */
int mvcc_view_walk(const struct mvcc_view *v,
                   int (*fn)(void *arg, const struct mvcc_kv *kv), void *arg);

/*
 * Rebuilding a store (snapshot restore): on a freshly mvcc_init()ed store,
 * call mvcc_load_kv() for every version (as mvcc_walk() produced them: per
 * key, strictly increasing (mod_revision, sub)), then mvcc_load_finish().
 * kv->key must not be empty; key and value are copied.
 * mvcc_load_kv() returns 0, IK_ENOMEM, or IK_EINVAL when the version does
 * not fit (empty key, out of order, revision < 1, negative version,
 * create_revision above mod_revision, tombstone with a value).
 * mvcc_load_finish() sets the revisions; IK_EINVAL if @rev < 1, some
 * version is above @rev, or @compact_rev > @rev.
 * On error the store is valid but partially loaded: close it.
 */
int mvcc_load_kv(struct mvcc *m, const struct mvcc_kv *kv);
int mvcc_load_finish(struct mvcc *m, int64_t rev, int64_t compact_rev);

#endif /* IKADA_MVCC_H */
