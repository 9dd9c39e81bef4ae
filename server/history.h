/*
 * history: the watch hub's history source over the MVCC store: every
 * change (puts and tombstones) of a key range within a revision window, in
 * revision order, each with the key's previous version. No I/O.
 *
 * The store keeps history per key, so this walks the store and sorts what
 * matches: O(versions in the store) per call. Catch-up reads are rare
 * (new watchers with an old start revision, slow watchers), bounded by the
 * hub's batch limits, and run on the event loop.
 */
#ifndef IKADA_HISTORY_H
#define IKADA_HISTORY_H

#include "server/watch.h"

/*
 * A watch_history_fn over @arg, a const struct mvcc *. Returns 0,
 * IK_ECOMPACTED when @from_rev is at or below the compacted revision's
 * horizon (etcd: a watch may start at the compacted revision itself, not
 * below it), or IK_ENOMEM.
 */
int history_read(void *arg, const uint8_t *key, size_t key_len,
                 const uint8_t *end, size_t end_len, int64_t from_rev,
                 int64_t to_rev, bool want_prev, watch_emit_fn emit, void *ctx);

#endif /* IKADA_HISTORY_H */
