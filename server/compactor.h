/*
 * compactor: etcd's automatic compaction policy (--auto-compaction-mode
 * and --auto-compaction-retention) as pure logic, no timers or I/O.
 *
 * The owner (the leader's node) calls compactor_tick() periodically with
 * the current time and store revision; it answers with the revision to
 * compact at, or 0 for "nothing now". Policies, as in etcd 3.4:
 *  - periodic, retention P: the revision is sampled every min(P, 1h)/10;
 *    once P has passed since the last compaction (or since the start) the
 *    store is compacted at the revision seen P ago; afterwards every
 *    min(P, 1h).
 *  - revision, retention R: every 5 minutes, compact at (revision - R) if
 *    that is positive and moved since the last compaction.
 */
#ifndef IKADA_COMPACTOR_H
#define IKADA_COMPACTOR_H

#include <stddef.h>
#include <stdint.h>

enum compactor_mode {
    COMPACTOR_PERIODIC,
    COMPACTOR_REVISION,
};

#define COMPACTOR_REVISION_INTERVAL_MS (5 * 60 * 1000)

struct compactor {
    enum compactor_mode mode;
    int64_t retention; /* ms (periodic) or revisions (revision); 0: off */
    uint64_t started;  /* time of compactor_init() or the last compaction */
    uint64_t next;     /* next time a sample/check is due */
    int64_t last_rev;  /* last revision compacted at (revision mode) */
    /* periodic: revisions sampled every min(P, 1h)/10 covering one
     * retention period (as etcd keeps them), oldest first, in a ring */
    int64_t *samples;
    size_t cap;
    size_t head;
    size_t n_samples;
    uint64_t compact_every; /* min(retention, 1h) after the first one */
    uint64_t base;          /* current wait before compacting */
};

/* Set up the policy at time @now_ms. A retention <= 0 disables it.
 * Returns 0 or IK_ENOMEM (the sample ring of the periodic mode). */
int compactor_init(struct compactor *c, enum compactor_mode mode,
                   int64_t retention, uint64_t now_ms);

/* Release the sample ring. */
void compactor_close(struct compactor *c);

/* How long until compactor_tick() has something to do (ms); UINT64_MAX
 * when disabled. */
uint64_t compactor_due_in(const struct compactor *c, uint64_t now_ms);

/*
 * Advance to @now_ms with the store at revision @rev. Returns the revision
 * to compact at (> 0) or 0. The owner proposes the compaction; a failure
 * other than "already compacted" is simply retried at the next interval.
 */
int64_t compactor_tick(struct compactor *c, uint64_t now_ms, int64_t rev);

#endif /* IKADA_COMPACTOR_H */
