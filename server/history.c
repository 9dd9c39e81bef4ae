#include "server/history.h"

#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/mvcc.h"

struct history_event {
    struct mvcc_kv kv;
    struct mvcc_kv prev; /* prev.key == NULL: none */
};

struct history_walk {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end;
    size_t end_len;
    int64_t from;
    int64_t to;
    struct history_event *ev;
    size_t n;
    size_t cap;
    struct mvcc_kv last; /* previous version of the key being walked */
    bool have_last;
    int rv;
};

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

/* Where @k stands relative to the range: -1 before, 0 in, 1 after. */
static int in_range(const struct history_walk *w, const uint8_t *k, size_t len)
{
    int c = key_cmp(k, len, w->key, w->key_len);
    if (w->end_len == 0) { /* single key */
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (c < 0) {
        return -1;
    }
    if (w->end_len == 1 && w->end[0] == '\0') { /* from key */
        return 0;
    }
    return key_cmp(k, len, w->end, w->end_len) < 0 ? 0 : 1;
}

static int collect(void *arg, const struct mvcc_kv *kv)
{
    struct history_walk *w = arg;
    int where = in_range(w, kv->key, kv->key_len);
    bool same_key = w->have_last && key_cmp(kv->key, kv->key_len, w->last.key,
                                            w->last.key_len) == 0;

    if (where > 0) {
        return 1; /* keys come in order: nothing further matches */
    }
    if (where == 0 && kv->mod_revision >= w->from &&
        kv->mod_revision <= w->to) {
        if (w->n == w->cap) {
            size_t cap = w->cap > 0 ? 2 * w->cap : 64;
            struct history_event *ev = realloc(w->ev, cap * sizeof *ev);
            if (ev == NULL) {
                w->rv = IK_ENOMEM;
                return 1;
            }
            w->ev = ev;
            w->cap = cap;
        }
        w->ev[w->n].kv = *kv;
        memset(&w->ev[w->n].prev, 0, sizeof w->ev[w->n].prev);
        if (same_key) {
            w->ev[w->n].prev = w->last;
        }
        w->n++;
    }
    w->last = *kv;
    w->have_last = true;
    return 0;
}

static int event_cmp(const void *a, const void *b)
{
    const struct history_event *x = a, *y = b;
    if (x->kv.mod_revision != y->kv.mod_revision) {
        return x->kv.mod_revision < y->kv.mod_revision ? -1 : 1;
    }
    return x->kv.sub < y->kv.sub ? -1 : x->kv.sub > y->kv.sub;
}

int history_read(void *arg, const uint8_t *key, size_t key_len,
                 const uint8_t *end, size_t end_len, int64_t from_rev,
                 int64_t to_rev, bool want_prev, watch_emit_fn emit, void *ctx)
{
    const struct mvcc *m = arg;
    struct history_walk w = {
        .key = key,
        .key_len = key_len,
        .end = end,
        .end_len = end_len,
        .from = from_rev,
        .to = to_rev,
    };

    if (from_rev < mvcc_compact_rev(m)) {
        return IK_ECOMPACTED;
    }
    mvcc_walk(m, collect, &w);
    if (w.rv != 0) {
        free(w.ev);
        return w.rv;
    }
    if (w.n > 1) {
        qsort(w.ev, w.n, sizeof *w.ev, event_cmp);
    }
    for (size_t i = 0; i < w.n; i++) {
        const struct mvcc_kv *prev = NULL;
        /* A previous version that is a tombstone is no previous value. */
        if (want_prev && w.ev[i].prev.key != NULL && w.ev[i].prev.version > 0) {
            prev = &w.ev[i].prev;
        }
        if (emit(ctx, &w.ev[i].kv, prev) != 0) {
            break;
        }
    }
    free(w.ev);
    return 0;
}
