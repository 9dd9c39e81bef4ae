/*
 * watch: the watch hub, etcd 3.4's Watch service semantics as a pure core.
 *
 * No I/O, no libuv, no raft, no threads: the owner (the gRPC Watch handler
 * and the store's commit hook) feeds events in and the hub answers through
 * per-stream callbacks. Everything runs on the owner's thread.
 *
 *   struct watch_hub     every watcher of the server, indexed by key
 *   struct watch_stream  one client Watch stream (one gRPC call), holding
 *                        any number of watchers named by watch ids
 *
 * What the owner feeds:
 *   watch_stream_recv()       each WatchRequest the client sends
 *   watch_hub_notify()        each committed write (revision + changes),
 *   watch_hub_notify_mvcc()     e.g. from mvcc_set_commit_hook()
 *   watch_hub_compact()       each compaction
 *   watch_hub_restore()       the store was replaced (raft snapshot)
 *   watch_hub_tick()          the clock, for progress notifications
 *   watch_stream_writable()   the stream's queue drained (backpressure)
 *   watch_hub_sync()          catch-up work (periodically, and again at
 *                             once while it returns true)
 * What the hub calls:
 *   ops->send()          one WatchResponse for one stream
 *   ops->queued_bytes()  how many bytes a stream has queued and not yet
 *                        written (e.g. grpc_call_pending_bytes())
 *   cfg->history()       past events, to catch watchers up
 *   cfg->fill_header()   cluster id, member id and raft term of headers
 *
 * Semantics (etcd 3.4.23's v3rpc/watch.go and mvcc watchable store):
 *  - Create: an empty key means "\0"; range_end "" is the single key,
 *    "\0" every key >= key, otherwise [key, range_end). key >= range_end
 *    (non-empty range_end) is refused: a response with watch_id -1,
 *    created and canceled set and cancel_reason "mvcc: watcher range is
 *    empty". watch_id 0 asks for an automatic id (the stream's counter,
 *    from 0, skipping ids in use); any other id is used as given (etcd
 *    takes negative ids too) unless in use on the stream: then the same
 *    refusal with "mvcc: duplicate watch ID provided on the WatchStream".
 *    Success answers {watch_id, created} with header revision = the
 *    current revision. start_revision 0 means "from the next revision";
 *    a start revision above the current one waits for it; one at or below
 *    it is caught up from history first (events follow the created
 *    response). Filters NOPUT/NODELETE drop those event types (unknown
 *    filter values are ignored); prev_kv adds the key's previous version
 *    to PUT events that are not creations and to DELETE events.
 *  - Live events of one revision go to each synced watcher in one response
 *    whose header revision is that revision. Catch-up responses carry the
 *    current revision, events of at most batch_max_revs revisions (and
 *    about batch_max_bytes), always whole revisions.
 *  - Compaction: a watcher that needs a revision below the compacted
 *    revision (checked when it catches up, as etcd does) gets one response
 *    {watch_id, canceled, compact_revision} with header revision 0 (what
 *    etcd sends) and stops; its id stays taken on the stream until the
 *    client cancels it (which is answered as any cancel). A negative start
 *    revision is below the compacted revision -1 of a never compacted
 *    store too; otherwise it reads no history (etcd's behaviour).
 *  - Cancel: {watch_id, canceled} with the current revision; nothing is
 *    sent for an unknown id. No event of that watcher follows.
 *  - Fragment: a watcher created with fragment=true whose event response
 *    packs to fragment_bytes or more (and holds 2+ events) is split as
 *    etcd's sendFragments() does: fragment=true on all parts but the last.
 *  - progress_notify: every progress interval (etcd: 10 minutes plus up to
 *    10% jitter, per stream), a synced watcher that got no events since
 *    the last interval gets {watch_id} with the current revision and no
 *    events. Skipped while the stream has no room (etcd drops it when its
 *    channel is full).
 *  - WatchProgressRequest: {watch_id -1} with the current revision, sent
 *    once every watcher of the stream is synced: at once if they are
 *    (also with no watchers, as etcd 3.4 does), else as soon as the last
 *    one catches up (several requests while waiting give one response).
 *    etcd 3.4.23 answers at once whatever the watchers' state, which can
 *    announce a revision whose events a lagging watcher has not seen yet;
 *    waiting is what later etcd releases do and keeps notifications
 *    bookmarkable.
 *  - Control responses (created, canceled, progress requests) are sent
 *    whatever the stream's queue; event responses, compaction cancels and
 *    progress notifications only while the stream has room.
 *
 * Guarantees, per watcher: events in strictly increasing revision order,
 * each at most once, all events of a revision in one response (or its
 * fragments), no gap, a progress revision below every later event.
 *
 * Backpressure and memory: a stream "has room" while ops->queued_bytes()
 * is below max_queued_bytes. A synced watcher whose stream has no room
 * when an event for it commits becomes unsynced at that revision and keeps
 * no queue: once the stream has room (watch_stream_writable(),
 * watch_hub_sync()) it reads the missed revisions back from history in
 * bounded batches, then is synced again. Writers and other streams never
 * wait for a slow stream; a slow watcher can be compacted away.
 * Per-watcher memory is the watcher itself plus its key (about 170 bytes
 * on 64-bit). The hub keeps scratch buffers: a catch-up batch (bounded by
 * batch_max_revs / batch_max_bytes plus one revision), and for a notify
 * 8 bytes per (matching watcher, event) pair of that one revision; large
 * ones are released after use.
 *
 * Matching cost: single-key watchers sit in a hash table by key; range
 * watchers in an interval treap (one node per distinct range); a change
 * costs O(1 + log(ranges) + matching watchers).
 *
 * Callbacks: none of them may call back into the hub (no watch_* call on
 * any hub or stream) and none may free the stream. A function that returns
 * an error has not called ops->send() for the failed operation, except
 * where noted (a send failure).
 */
#ifndef IKADA_WATCH_H
#define IKADA_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/rpc.pb-c.h"
#include "server/mvcc.h"

struct watch_hub;
struct watch_stream;

/*
 * Test hook for fault injection: when non-NULL, called before every
 * allocation the hub makes (including request unpacking in
 * watch_stream_recv_packed()); a true return makes it fail.
 */
extern bool (*watch_fail_alloc_hook)(void);

/*
 * One change of a committed write: @kv is the version written (version 0:
 * a tombstone, i.e. a DELETE event; its key and mod_revision are used),
 * @prev the key's live version just before (NULL: the key did not exist).
 * The hub copies nothing it keeps: the pointers need only be valid during
 * the call they are passed to.
 */
struct watch_change {
    const struct mvcc_kv *kv;
    const struct mvcc_kv *prev;
};

/*
 * Emit callback handed to the history source: one change, same form as
 * struct watch_change (@prev NULL when there was no live previous
 * version, or it cannot be read any more, or prev was not asked for).
 * Pointers need only be valid during the call. Returns 0 to go on, or
 * non-zero to stop: the source must then return 0 promptly without
 * emitting more.
 */
typedef int (*watch_emit_fn)(void *ctx, const struct mvcc_kv *kv,
                             const struct mvcc_kv *prev);

/*
 * History source: emit every change (puts and tombstones) with
 * @from_rev <= mod_revision <= @to_rev on keys of the range, in
 * (mod_revision, sub) order. The range uses mvcc's convention: @end_len 0
 * is the single key @key, @end "\0" (length 1) every key >= @key,
 * otherwise [key, end). @want_prev: fill @prev of emitted changes.
 * Returns 0 (also when stopped by @emit), IK_ECOMPACTED if @from_rev is
 * below the store's compacted revision (the watcher is then canceled as
 * compacted, with the hub's compacted revision, or @from_rev + 1 if the
 * hub was not told of a compaction that high), or another IK_E* code
 * (e.g. IK_ENOMEM): the hub then retries later from the same revision
 * (events already emitted by the failed call are discarded). Called only from
 * watch_stream_recv(), watch_stream_writable() and watch_hub_sync(),
 * never from inside notify, with @to_rev == watch_hub_rev().
 * Changes out of the window or range, or going back in revision, are
 * ignored by the hub.
 */
typedef int (*watch_history_fn)(void *arg, const uint8_t *key, size_t key_len,
                                const uint8_t *end, size_t end_len,
                                int64_t from_rev, int64_t to_rev,
                                bool want_prev, watch_emit_fn emit, void *ctx);

#define WATCH_DEFAULT_MAX_QUEUED_BYTES (1024u * 1024u)
/* etcd: --max-request-bytes (1.5 MiB) + 512 KiB gRPC overhead */
#define WATCH_DEFAULT_FRAGMENT_BYTES (2u * 1024u * 1024u)
#define WATCH_DEFAULT_BATCH_MAX_REVS 1000u /* etcd's watchBatchMaxRevs */
#define WATCH_DEFAULT_BATCH_MAX_BYTES (1024u * 1024u)
#define WATCH_DEFAULT_PROGRESS_INTERVAL_MS (10u * 60u * 1000u)
#define WATCH_DEFAULT_SYNC_BUDGET 64u

struct watch_hub_config {
    int64_t rev;              /* store revision at start (>= 1) */
    int64_t compact_rev;      /* compacted revision at start (-1: never) */
    watch_history_fn history; /* required */
    void *history_arg;
    /* Fill cluster_id, member_id and raft_term of a response header (the
     * hub sets revision afterwards). Optional (NULL: zeros). Must not
     * fail or allocate anything the hub would have to free. */
    void (*fill_header)(void *arg, Etcdserverpb__ResponseHeader *hdr);
    void *header_arg;
    /* 0 in any field below selects the WATCH_DEFAULT_* value. */
    size_t max_queued_bytes; /* a stream has room below this */
    size_t fragment_bytes;   /* etcd's maxRequestBytes for fragmenting */
    uint32_t batch_max_revs; /* revisions per catch-up batch */
    size_t batch_max_bytes;  /* soft bytes per catch-up batch */
    uint64_t progress_interval_ms;
    /* Catch-up batches per watch_stream_recv()/writable()/hub_sync() */
    uint32_t sync_budget;
    /* Seed of the progress jitter and treap priorities. 0: no jitter. */
    uint64_t seed;
};

struct watch_stream_ops {
    /*
     * Deliver one response. @resp and everything it points to belong to
     * the hub and are valid only during the call: pack it (e.g.
     * grpc_call_send_proto()) or copy it, don't keep it. Returns 0, or
     * non-zero when the stream is dead (call over, out of memory): the
     * hub then never sends on this stream again, its watchers stop, and
     * calls on it return IK_EUNAVAILABLE; the owner (who saw the failure)
     * must still watch_stream_free() it. Required.
     */
    int (*send)(void *arg, const Etcdserverpb__WatchResponse *resp);
    /* Bytes queued on the stream and not yet written. Required. */
    size_t (*queued_bytes)(void *arg);
};

struct watch_hub_stats {
    size_t streams;
    size_t watchers;    /* all, including compacted ones awaiting cancel */
    size_t synced;      /* receiving live events */
    size_t unsynced;    /* catching up from history */
    size_t compacted;   /* stopped by compaction, id still held */
    size_t key_nodes;   /* distinct single keys watched */
    size_t range_nodes; /* distinct ranges watched */
};

/*
 * Create a hub. @cfg is copied. Returns 0, IK_EINVAL (no history
 * callback, rev < 1, compact_rev > rev) or IK_ENOMEM; *@out is set only
 * on success and belongs to the caller until watch_hub_free().
 */
int watch_hub_new(const struct watch_hub_config *cfg, struct watch_hub **out);

/* Free the hub and every stream still attached (their pointers become
 * invalid; nothing is sent). NULL is fine. */
void watch_hub_free(struct watch_hub *h);

/* Last revision notified (the store's current revision). */
int64_t watch_hub_rev(const struct watch_hub *h);

/* Compacted revision as last told (-1: never). */
int64_t watch_hub_compact_rev(const struct watch_hub *h);

/* Counters, O(1). */
void watch_hub_stats(const struct watch_hub *h, struct watch_hub_stats *out);

/*
 * A write committed revision @rev with changes @changes[0..@n) in order.
 * Synced watchers get their events now (on streams with room), others
 * become unsynced. Returns 0, or IK_EINVAL (and does nothing) if @rev is
 * not above watch_hub_rev(). A revision that skips some (@rev >
 * watch_hub_rev() + 1) is taken as "history moved on without us": every
 * synced watcher becomes unsynced and catches up from history. Out of
 * memory never loses events: affected watchers become unsynced instead.
 * Send failures only kill their stream (see ops->send).
 */
int watch_hub_notify(struct watch_hub *h, int64_t rev,
                     const struct watch_change *changes, size_t n);

/*
 * watch_hub_notify() for the open txn of @m from inside its commit hook
 * (mvcc_set_commit_hook(): the revision is mvcc_rev(m) + 1 and the
 * changes are mvcc_txn_change()'s). Same returns.
 */
int watch_hub_notify_mvcc(struct watch_hub *h, const struct mvcc *m);

/*
 * The store was compacted at @rev. Unsynced watchers that need an older
 * revision are canceled (compact_revision = @rev) when next processed.
 * A revision not above the current compacted revision is ignored.
 */
void watch_hub_compact(struct watch_hub *h, int64_t rev);

/*
 * The store was replaced (e.g. by a raft snapshot) and is now at @rev,
 * compacted at @compact_rev: every synced watcher becomes unsynced and
 * catches up from history (watch_hub_sync()). Cannot fail.
 */
void watch_hub_restore(struct watch_hub *h, int64_t rev, int64_t compact_rev);

/*
 * Clock for progress notifications (monotonic ms). A stream's interval
 * starts at the last tick before it was created (at the first tick if
 * there was none).
 * Cost O(streams) plus the watchers of streams whose interval elapsed.
 */
void watch_hub_tick(struct watch_hub *h, uint64_t now_ms);

/*
 * Catch up unsynced watchers of streams that have room, round-robin, at
 * most sync_budget batches. Returns true if it stopped because of the
 * budget (call again soon), false when no stream with room has work left.
 * The owner calls it periodically (etcd syncs every 100 ms), after
 * watch_hub_restore(), and again while it returns true.
 */
bool watch_hub_sync(struct watch_hub *h);

/*
 * Attach a new stream to @h. @ops is copied; @arg is passed to the ops.
 * Returns 0, IK_EINVAL (a required op missing) or IK_ENOMEM; *@out belongs to
 * the caller until watch_stream_free().
 */
int watch_stream_new(struct watch_hub *h, const struct watch_stream_ops *ops,
                     void *arg, struct watch_stream **out);

/* Cancel every watcher of the stream (nothing is sent) and free it. Not
 * from inside a callback. NULL is fine. */
void watch_stream_free(struct watch_stream *s);

/*
 * Handle one decoded request (the hub keeps nothing of @req). Answers go
 * out through ops->send() before this returns (catch-up events of a new
 * watcher too, within the sync budget and while the stream has room).
 * Returns 0 (including for refused creates, which are answered, and for
 * requests etcd ignores: empty request union, cancel of an unknown id),
 * IK_ENOMEM (a create could not be registered: nothing was sent; the
 * stream stays usable), IK_EINVAL (@req NULL), or IK_EUNAVAILABLE (the
 * stream is dead: a send failed now or before).
 */
int watch_stream_recv(struct watch_stream *s,
                      const Etcdserverpb__WatchRequest *req);

/* Unpack a WatchRequest message and watch_stream_recv() it. Also returns
 * IK_EMALFORMED when @data is not a valid message, IK_ENOMEM when
 * unpacking ran out of memory (nothing done either way). */
int watch_stream_recv_packed(struct watch_stream *s, const uint8_t *data,
                             size_t len);

/*
 * The stream's queue drained: catch its unsynced watchers up while it has
 * room (within the sync budget). Returns 0, or IK_EUNAVAILABLE if the
 * stream is dead.
 */
int watch_stream_writable(struct watch_stream *s);

/* 0, or IK_EUNAVAILABLE once a send failed on the stream. */
int watch_stream_error(const struct watch_stream *s);

#endif /* IKADA_WATCH_H */
