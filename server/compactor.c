#include "server/compactor.h"

#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

#define HOUR_MS (60ULL * 60 * 1000)
#define SAMPLE_DIVISOR 10

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Sampling interval of the periodic mode. */
static uint64_t sample_every(const struct compactor *c)
{
    uint64_t itv = min_u64((uint64_t)c->retention, HOUR_MS) / SAMPLE_DIVISOR;
    return itv > 0 ? itv : 1;
}

/* Samples needed to cover one retention period (plus the one at its
 * start). */
static size_t samples_wanted(const struct compactor *c)
{
    return (size_t)((uint64_t)c->retention / sample_every(c)) + 1;
}

int compactor_init(struct compactor *c, enum compactor_mode mode,
                   int64_t retention, uint64_t now_ms)
{
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->retention = retention > 0 ? retention : 0;
    c->started = now_ms;
    if (c->retention == 0) {
        return 0;
    }
    if (mode == COMPACTOR_PERIODIC) {
        c->compact_every = min_u64((uint64_t)c->retention, HOUR_MS);
        c->base = (uint64_t)c->retention;
        c->next = now_ms; /* take the first sample at once */
        c->cap = samples_wanted(c);
        c->samples = calloc(c->cap, sizeof *c->samples);
        if (c->samples == NULL) {
            return IK_ENOMEM;
        }
    } else {
        c->next = now_ms + COMPACTOR_REVISION_INTERVAL_MS;
    }
    return 0;
}

void compactor_close(struct compactor *c)
{
    free(c->samples);
    c->samples = NULL;
}

uint64_t compactor_due_in(const struct compactor *c, uint64_t now_ms)
{
    if (c->retention == 0) {
        return UINT64_MAX;
    }
    return c->next > now_ms ? c->next - now_ms : 0;
}

static int64_t tick_periodic(struct compactor *c, uint64_t now_ms, int64_t rev)
{
    int64_t target;

    if (c->n_samples == c->cap) {
        c->head = (c->head + 1) % c->cap; /* drop the oldest */
        c->n_samples--;
    }
    c->samples[(c->head + c->n_samples) % c->cap] = rev;
    c->n_samples++;
    c->next = now_ms + sample_every(c);
    if (now_ms - c->started < c->base) {
        return 0;
    }
    /* The oldest sample is the revision one retention period ago. */
    target = c->samples[c->head];
    c->started = now_ms;
    c->base = c->compact_every;
    return target > 0 ? target : 0;
}

static int64_t tick_revision(struct compactor *c, uint64_t now_ms, int64_t rev)
{
    int64_t target = rev - c->retention;

    c->next = now_ms + COMPACTOR_REVISION_INTERVAL_MS;
    if (target <= 0 || target == c->last_rev) {
        return 0;
    }
    c->last_rev = target;
    return target;
}

int64_t compactor_tick(struct compactor *c, uint64_t now_ms, int64_t rev)
{
    if (c->retention == 0 || now_ms < c->next) {
        return 0;
    }
    if (c->mode == COMPACTOR_PERIODIC) {
        return tick_periodic(c, now_ms, rev);
    }
    return tick_revision(c, now_ms, rev);
}
