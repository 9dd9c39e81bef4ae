/*
 * watch: the watch hub (see watch.h for the semantics and the contract).
 *
 * Layout:
 *  - struct watcher: one per watch id, holding its key range (copied into
 *    the same allocation), its state and the links of every list it is on.
 *  - Index of every watcher that is not compacted: single-key watchers hang
 *    off a chained hash table of key nodes (struct knode), range watchers
 *    off a treap of interval nodes (struct rnode, one per distinct
 *    [start, end)), ordered by (start, end) and augmented with the node of
 *    largest end in each subtree, so a stab query prunes subtrees that end
 *    at or before the key. Unsynced watchers stay in the index; notify
 *    skips them (no allocation when a watcher changes state).
 *  - Each stream: an id table (open addressing, linear probing, backward
 *    shift deletion), a list of all its watchers, and a FIFO of its
 *    unsynced watchers, served round-robin. Streams with unsynced watchers
 *    sit on the hub's work list.
 *
 * State of a watcher:
 *   SYNCED    gets live events of revisions >= min_rev (min_rev is above
 *             the hub revision when created, or a future start revision)
 *   UNSYNCED  min_rev is the next revision to read from history
 *   COMPACTED stopped by compaction: only its id remains (out of the index)
 *
 * Notify groups the changes per watcher without sorting: each touched
 * watcher gets a slot in the hub's touch array (found through an epoch
 * stamp on the watcher) heading a chain of (change index) links, so a
 * watcher's events stay in commit order. Responses are built in hub
 * scratch arrays that point into the caller's kvs (nothing is copied).
 * A catch-up batch copies what the history source emits into an arena
 * (the source's pointers only live during emit), then sends from there.
 */
#include "server/watch.h"

#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

bool (*watch_fail_alloc_hook)(void) = NULL;

enum { W_SYNCED, W_UNSYNCED, W_COMPACTED };

/* Scratch above these sizes is released after use. */
#define TRIM_EVENTS 16384u
#define TRIM_TOUCHES 65536u

static const char reason_empty_range[] = "mvcc: watcher range is empty";
static const char reason_dup_id[] =
    "mvcc: duplicate watch ID provided on the WatchStream";

struct knode;
struct rnode;

struct watcher {
    struct watch_stream *s;
    int64_t id;
    int64_t min_rev;
    uint8_t state;
    bool range; /* false: the single key `key` */
    bool from_key;
    bool prev_kv;
    bool progress_notify;
    bool progress_due; /* etcd's progress[id]: no events since last tick */
    bool fragment;
    bool no_put;
    bool no_delete;
    struct knode *kn;                  /* index node (single key) */
    struct rnode *rn;                  /* index node (range) */
    struct watcher *ix_prev, *ix_next; /* watchers of the index node */
    struct watcher *s_prev, *s_next;   /* all watchers of the stream */
    struct watcher *u_prev, *u_next;   /* unsynced FIFO of the stream */
    uint64_t epoch;                    /* notify that touched it */
    uint32_t touch;                    /* its slot in that notify */
    size_t key_len;
    size_t end_len; /* range && !from_key */
    uint8_t *key;
    uint8_t *end;
    uint8_t mem[];
};

struct wlist {
    struct watcher *head;
    size_t n;
};

struct knode {
    struct knode *next;
    uint64_t hash;
    struct wlist ws;
    size_t len;
    uint8_t key[];
};

struct rnode {
    struct rnode *l, *r;
    uint64_t prio;
    const struct rnode *maxn; /* node of largest end in this subtree */
    struct wlist ws;
    bool inf; /* from-key: no end */
    size_t start_len, end_len;
    uint8_t *start, *end;
    uint8_t mem[];
};

struct watch_stream {
    struct watch_hub *h;
    struct watch_stream_ops ops;
    void *arg;
    int err;
    int64_t next_id;
    struct watcher **slots; /* id table */
    size_t cap, count;
    struct watcher *all;
    size_t n_progress; /* watchers with progress_notify */
    struct watcher *u_head, *u_tail;
    size_t n_unsynced;
    bool progress_deferred;
    uint64_t interval;
    uint64_t next_progress;                 /* 0: starts at the next tick */
    struct watch_stream *prev, *next;       /* hub's streams */
    struct watch_stream *wk_prev, *wk_next; /* hub's work list */
    bool in_work;
};

struct touch {
    struct watcher *w;
    uint32_t head, tail, n;
};

struct link {
    uint32_t ev;
    uint32_t next;
};

struct hkv {
    size_t key_off, key_len, val_off, val_len;
    int64_t create, mod, version, lease;
};

struct hrec {
    struct hkv kv;
    struct hkv prev;
    bool has_prev;
};

struct watch_hub {
    struct watch_hub_config cfg;
    int64_t rev;
    int64_t compact_rev;
    uint64_t now;
    bool ticked;
    uint64_t rng;
    struct watch_stream *streams;
    struct watch_stream *work_head, *work_tail;
    struct knode **kb; /* key hash buckets */
    size_t kcap, kcount;
    struct rnode *rroot;
    size_t rcount;
    size_t n_streams, n_watchers, n_synced, n_unsynced, n_compacted;
    /* notify grouping */
    uint64_t epoch;
    struct touch *touches;
    size_t touch_cap, n_touches;
    struct link *links;
    size_t link_cap, n_links;
    /* event scratch: n entries each */
    size_t ev_cap;
    Mvccpb__KeyValue *kv, *pkv;
    Mvccpb__Event *ev, *evp;
    size_t *sz, *szp;
    Mvccpb__Event **ptrs;
    size_t *psz;
    /* notify_mvcc scratch */
    struct mvcc_kv *mkv;
    struct watch_change *mch;
    size_t m_cap;
    /* catch-up batch */
    struct hrec *recs;
    size_t rec_cap, n_recs;
    uint8_t *arena;
    size_t arena_cap, arena_len;
};

/* ---- allocation ------------------------------------------------------ */

static void *wmalloc(size_t n)
{
    if (watch_fail_alloc_hook != NULL && watch_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(n);
}

static void *wcalloc(size_t n, size_t size)
{
    if (watch_fail_alloc_hook != NULL && watch_fail_alloc_hook()) {
        return NULL;
    }
    return calloc(n, size);
}

static void *wrealloc(void *p, size_t n)
{
    if (watch_fail_alloc_hook != NULL && watch_fail_alloc_hook()) {
        return NULL;
    }
    return realloc(p, n);
}

/* Grow *@p (an array of @size-byte items with capacity *@cap) to hold at
 * least @need items. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t ncap;
    void *np;
    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            return IK_ENOMEM;
        }
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / size) {
        return IK_ENOMEM;
    }
    np = wrealloc(*p, ncap * size);
    if (np == NULL) {
        return IK_ENOMEM;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

/* ---- small helpers --------------------------------------------------- */

static int kcmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static uint64_t khash(const uint8_t *k, size_t len)
{
    uint64_t x = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        x ^= k[i];
        x *= 0x100000001b3ull;
    }
    return x;
}

static uint64_t rng_next(struct watch_hub *h)
{
    uint64_t x = h->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    h->rng = x;
    return x;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Bytes an event of packed size @es adds to a WatchResponse (field 11). */
static size_t event_field_size(size_t es)
{
    return 1 + varint_size(es) + es;
}

static bool watcher_has_key(const struct watcher *w, const uint8_t *k,
                            size_t len)
{
    if (!w->range) {
        return kcmp(k, len, w->key, w->key_len) == 0;
    }
    if (kcmp(k, len, w->key, w->key_len) < 0) {
        return false;
    }
    return w->from_key || kcmp(k, len, w->end, w->end_len) < 0;
}

static bool stream_has_room(const struct watch_stream *s)
{
    return s->err == 0 &&
           s->ops.queued_bytes(s->arg) < s->h->cfg.max_queued_bytes;
}

/* ---- list plumbing ---------------------------------------------------- */

static void wlist_add(struct wlist *l, struct watcher *w)
{
    w->ix_prev = NULL;
    w->ix_next = l->head;
    if (l->head != NULL) {
        l->head->ix_prev = w;
    }
    l->head = w;
    l->n++;
}

static void wlist_del(struct wlist *l, struct watcher *w)
{
    if (w->ix_prev != NULL) {
        w->ix_prev->ix_next = w->ix_next;
    } else {
        l->head = w->ix_next;
    }
    if (w->ix_next != NULL) {
        w->ix_next->ix_prev = w->ix_prev;
    }
    w->ix_prev = w->ix_next = NULL;
    l->n--;
}

static void work_add(struct watch_stream *s)
{
    struct watch_hub *h = s->h;
    if (s->in_work || s->err != 0) {
        return;
    }
    s->in_work = true;
    s->wk_next = NULL;
    s->wk_prev = h->work_tail;
    if (h->work_tail != NULL) {
        h->work_tail->wk_next = s;
    } else {
        h->work_head = s;
    }
    h->work_tail = s;
}

static void work_del(struct watch_stream *s)
{
    struct watch_hub *h = s->h;
    if (!s->in_work) {
        return;
    }
    if (s->wk_prev != NULL) {
        s->wk_prev->wk_next = s->wk_next;
    } else {
        h->work_head = s->wk_next;
    }
    if (s->wk_next != NULL) {
        s->wk_next->wk_prev = s->wk_prev;
    } else {
        h->work_tail = s->wk_prev;
    }
    s->wk_prev = s->wk_next = NULL;
    s->in_work = false;
}

static void ulist_append(struct watch_stream *s, struct watcher *w)
{
    w->u_next = NULL;
    w->u_prev = s->u_tail;
    if (s->u_tail != NULL) {
        s->u_tail->u_next = w;
    } else {
        s->u_head = w;
    }
    s->u_tail = w;
    s->n_unsynced++;
}

static void ulist_del(struct watch_stream *s, struct watcher *w)
{
    if (w->u_prev != NULL) {
        w->u_prev->u_next = w->u_next;
    } else {
        s->u_head = w->u_next;
    }
    if (w->u_next != NULL) {
        w->u_next->u_prev = w->u_prev;
    } else {
        s->u_tail = w->u_prev;
    }
    w->u_prev = w->u_next = NULL;
    s->n_unsynced--;
}

/* Leave state @w->state (updating every count and list). */
static void state_leave(struct watcher *w)
{
    struct watch_stream *s = w->s;
    struct watch_hub *h = s->h;
    switch (w->state) {
    case W_SYNCED:
        h->n_synced--;
        break;
    case W_UNSYNCED:
        h->n_unsynced--;
        ulist_del(s, w);
        if (s->n_unsynced == 0) {
            work_del(s);
        }
        break;
    default:
        h->n_compacted--;
        break;
    }
}

static void set_synced(struct watcher *w)
{
    if (w->state == W_SYNCED) {
        return;
    }
    state_leave(w);
    w->state = W_SYNCED;
    w->s->h->n_synced++;
}

/* Make @w read history from @from_rev on. */
static void set_unsynced(struct watcher *w, int64_t from_rev)
{
    struct watch_stream *s = w->s;
    if (w->state != W_UNSYNCED) {
        state_leave(w);
        w->state = W_UNSYNCED;
        s->h->n_unsynced++;
        ulist_append(s, w);
    }
    w->min_rev = from_rev;
    work_add(s);
}

/* ---- single-key index ------------------------------------------------- */

static struct knode *kfind(const struct watch_hub *h, const uint8_t *k,
                           size_t len, uint64_t hash)
{
    struct knode *n;
    if (h->kcap == 0) {
        return NULL;
    }
    for (n = h->kb[hash & (h->kcap - 1)]; n != NULL; n = n->next) {
        if (n->hash == hash && kcmp(n->key, n->len, k, len) == 0) {
            return n;
        }
    }
    return NULL;
}

static void kresize(struct watch_hub *h, size_t ncap)
{
    struct knode **nb = wcalloc(ncap, sizeof *nb);
    if (nb == NULL) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < h->kcap; i++) {
        struct knode *n = h->kb[i];
        while (n != NULL) {
            struct knode *next = n->next;
            size_t b = n->hash & (ncap - 1);
            n->next = nb[b];
            nb[b] = n;
            n = next;
        }
    }
    free(h->kb);
    h->kb = nb;
    h->kcap = ncap;
}

static int kadd(struct watch_hub *h, struct watcher *w)
{
    uint64_t hash = khash(w->key, w->key_len);
    struct knode *n = kfind(h, w->key, w->key_len, hash);
    if (n == NULL) {
        size_t b;
        if (h->kcap == 0) {
            kresize(h, 64);
            if (h->kcap == 0) {
                return IK_ENOMEM;
            }
        }
        n = wmalloc(sizeof *n + w->key_len);
        if (n == NULL) {
            return IK_ENOMEM;
        }
        n->hash = hash;
        n->ws.head = NULL;
        n->ws.n = 0;
        n->len = w->key_len;
        memcpy(n->key, w->key, w->key_len);
        b = hash & (h->kcap - 1);
        n->next = h->kb[b];
        h->kb[b] = n;
        h->kcount++;
        if (h->kcount > h->kcap) {
            kresize(h, h->kcap * 2);
        }
    }
    wlist_add(&n->ws, w);
    w->kn = n;
    return 0;
}

static void kdel(struct watch_hub *h, struct watcher *w)
{
    struct knode *n = w->kn;
    struct knode **pp;
    wlist_del(&n->ws, w);
    w->kn = NULL;
    if (n->ws.n != 0) {
        return;
    }
    for (pp = &h->kb[n->hash & (h->kcap - 1)]; *pp != n; pp = &(*pp)->next) {
    }
    *pp = n->next;
    free(n);
    h->kcount--;
}

/* ---- range index: treap of intervals ------------------------------------ */

static int end_cmp(const struct rnode *a, const struct rnode *b)
{
    if (a->inf || b->inf) {
        return (int)a->inf - (int)b->inf;
    }
    return kcmp(a->end, a->end_len, b->end, b->end_len);
}

/* Order of intervals: by start, then end (from-key last). */
static int rcmp(const uint8_t *s, size_t sl, const uint8_t *e, size_t el,
                bool inf, const struct rnode *n)
{
    int c = kcmp(s, sl, n->start, n->start_len);
    if (c != 0) {
        return c;
    }
    if (inf || n->inf) {
        return (int)inf - (int)n->inf;
    }
    return kcmp(e, el, n->end, n->end_len);
}

static const struct rnode *max_end_of(const struct rnode *a,
                                      const struct rnode *b)
{
    if (a == NULL) {
        return b;
    }
    if (b == NULL) {
        return a;
    }
    return end_cmp(a, b) >= 0 ? a : b;
}

static void rfix(struct rnode *n)
{
    const struct rnode *m = n;
    if (n->l != NULL) {
        m = max_end_of(m, n->l->maxn);
    }
    if (n->r != NULL) {
        m = max_end_of(m, n->r->maxn);
    }
    n->maxn = m;
}

static struct rnode *rot_right(struct rnode *n)
{
    struct rnode *l = n->l;
    n->l = l->r;
    rfix(n);
    l->r = n;
    rfix(l);
    return l;
}

static struct rnode *rot_left(struct rnode *n)
{
    struct rnode *r = n->r;
    n->r = r->l;
    rfix(n);
    r->l = n;
    rfix(r);
    return r;
}

static struct rnode *rinsert(struct rnode *t, struct rnode *nn)
{
    if (t == NULL) {
        rfix(nn);
        return nn;
    }
    if (rcmp(nn->start, nn->start_len, nn->end, nn->end_len, nn->inf, t) < 0) {
        t->l = rinsert(t->l, nn);
        if (t->l->prio > t->prio) {
            return rot_right(t);
        }
    } else {
        t->r = rinsert(t->r, nn);
        if (t->r->prio > t->prio) {
            return rot_left(t);
        }
    }
    rfix(t);
    return t;
}

static struct rnode *rmerge(struct rnode *a, struct rnode *b)
{
    if (a == NULL) {
        return b;
    }
    if (b == NULL) {
        return a;
    }
    if (a->prio > b->prio) {
        a->r = rmerge(a->r, b);
        rfix(a);
        return a;
    }
    b->l = rmerge(a, b->l);
    rfix(b);
    return b;
}

static struct rnode *rremove(struct rnode *t, struct rnode *x)
{
    if (t == x) {
        return rmerge(t->l, t->r);
    }
    if (rcmp(x->start, x->start_len, x->end, x->end_len, x->inf, t) < 0) {
        t->l = rremove(t->l, x);
    } else {
        t->r = rremove(t->r, x);
    }
    rfix(t);
    return t;
}

static struct rnode *rfind(struct rnode *t, const struct watcher *w)
{
    while (t != NULL) {
        int c = rcmp(w->key, w->key_len, w->end, w->end_len, w->from_key, t);
        if (c == 0) {
            return t;
        }
        t = c < 0 ? t->l : t->r;
    }
    return NULL;
}

static int radd(struct watch_hub *h, struct watcher *w)
{
    struct rnode *n = rfind(h->rroot, w);
    if (n == NULL) {
        n = wmalloc(sizeof *n + w->key_len + w->end_len);
        if (n == NULL) {
            return IK_ENOMEM;
        }
        n->l = n->r = NULL;
        n->prio = rng_next(h);
        n->ws.head = NULL;
        n->ws.n = 0;
        n->inf = w->from_key;
        n->start_len = w->key_len;
        n->end_len = w->end_len;
        n->start = n->mem;
        n->end = n->mem + w->key_len;
        memcpy(n->start, w->key, w->key_len);
        if (w->end_len != 0) {
            memcpy(n->end, w->end, w->end_len);
        }
        h->rroot = rinsert(h->rroot, n);
        h->rcount++;
    }
    wlist_add(&n->ws, w);
    w->rn = n;
    return 0;
}

static void rdel(struct watch_hub *h, struct watcher *w)
{
    struct rnode *n = w->rn;
    wlist_del(&n->ws, w);
    w->rn = NULL;
    if (n->ws.n != 0) {
        return;
    }
    h->rroot = rremove(h->rroot, n);
    h->rcount--;
    free(n);
}

static int index_add(struct watch_hub *h, struct watcher *w)
{
    return w->range ? radd(h, w) : kadd(h, w);
}

static void index_del(struct watch_hub *h, struct watcher *w)
{
    if (w->range) {
        rdel(h, w);
    } else {
        kdel(h, w);
    }
}

/* ---- stream id table ---------------------------------------------------- */

static size_t id_home(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    return (size_t)(x ^ (x >> 29)) & (cap - 1);
}

static struct watcher *id_get(const struct watch_stream *s, int64_t id)
{
    if (s->cap == 0) {
        return NULL;
    }
    for (size_t i = id_home(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == NULL) {
            return NULL;
        }
        if (s->slots[i]->id == id) {
            return s->slots[i];
        }
    }
}

static void id_place(struct watcher **slots, size_t cap, struct watcher *w)
{
    size_t i = id_home(w->id, cap);
    while (slots[i] != NULL) {
        i = (i + 1) & (cap - 1);
    }
    slots[i] = w;
}

static int id_put(struct watch_stream *s, struct watcher *w)
{
    if ((s->count + 1) * 4 > s->cap * 3) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        struct watcher **ns = wcalloc(ncap, sizeof *ns);
        if (ns == NULL) {
            return IK_ENOMEM;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i] != NULL) {
                id_place(ns, ncap, s->slots[i]);
            }
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    id_place(s->slots, s->cap, w);
    s->count++;
    return 0;
}

static void id_del(struct watch_stream *s, const struct watcher *w)
{
    size_t mask = s->cap - 1;
    size_t i = id_home(w->id, s->cap);
    while (s->slots[i] != w) {
        i = (i + 1) & mask;
    }
    s->slots[i] = NULL;
    /* Backward shift: pull later entries of the run into the hole when
     * their home slot does not lie cyclically in (hole, entry]. */
    for (size_t j = (i + 1) & mask; s->slots[j] != NULL; j = (j + 1) & mask) {
        size_t k = id_home(s->slots[j]->id, s->cap);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
    s->count--;
}

/* ---- sending --------------------------------------------------------------
 */

static void header_init(const struct watch_hub *h,
                        Etcdserverpb__ResponseHeader *hdr, int64_t rev)
{
    etcdserverpb__response_header__init(hdr);
    if (h->cfg.fill_header != NULL) {
        h->cfg.fill_header(h->cfg.header_arg, hdr);
    }
    hdr->revision = rev;
}

static void stream_fail(struct watch_stream *s)
{
    s->err = IK_EUNAVAILABLE;
    work_del(s);
}

static int stream_send(struct watch_stream *s,
                       const Etcdserverpb__WatchResponse *r)
{
    if (s->err != 0) {
        return s->err;
    }
    if (s->ops.send(s->arg, r) != 0) {
        stream_fail(s);
        return s->err;
    }
    return 0;
}

/* created / canceled / progress responses without events. */
static int send_plain(struct watch_stream *s, int64_t hdr_rev, int64_t id,
                      bool created, bool canceled, int64_t compact_rev,
                      const char *reason)
{
    Etcdserverpb__ResponseHeader hdr;
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    header_init(s->h, &hdr, hdr_rev);
    r.header = &hdr;
    r.watch_id = id;
    r.created = created;
    r.canceled = canceled;
    r.compact_revision = compact_rev;
    if (reason != NULL) {
        r.cancel_reason = (char *)reason;
    }
    return stream_send(s, &r);
}

/*
 * Send @n events of @w with header revision @rev; @sizes (packed size of
 * each event) is needed only when @w asked for fragments. Splits as etcd's
 * sendFragments(): whole when the response is below fragment_bytes or
 * holds one event; else greedy parts, each closed before the event that
 * makes it reach the limit (a part always has at least one event).
 */
static int send_events(struct watch_stream *s, struct watcher *w, int64_t rev,
                       Mvccpb__Event **evs, const size_t *sizes, size_t n)
{
    struct watch_hub *h = s->h;
    Etcdserverpb__ResponseHeader hdr;
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    size_t total, base, idx = 0;
    int rv;

    header_init(h, &hdr, rev);
    r.header = &hdr;
    r.watch_id = w->id;
    w->progress_due = false;
    if (!w->fragment || n < 2) {
        r.n_events = n;
        r.events = evs;
        return stream_send(s, &r);
    }
    total = protobuf_c_message_get_packed_size(&r.base);
    for (size_t i = 0; i < n; i++) {
        total += event_field_size(sizes[i]);
    }
    if (total < h->cfg.fragment_bytes) {
        r.n_events = n;
        r.events = evs;
        return stream_send(s, &r);
    }
    r.fragment = true;
    base = protobuf_c_message_get_packed_size(&r.base);
    for (;;) {
        size_t start = idx, cnt = 0, cur = base;
        while (idx < n) {
            cur += event_field_size(sizes[idx]);
            cnt++;
            if (cnt > 1 && cur >= h->cfg.fragment_bytes) {
                cnt--;
                break;
            }
            idx++;
        }
        r.events = evs + start;
        r.n_events = cnt;
        r.fragment = idx != n;
        rv = stream_send(s, &r);
        if (rv != 0 || !r.fragment) {
            return rv;
        }
    }
}

/* The stream's WatchProgressRequest answer, once nothing lags. */
static void maybe_deferred_progress(struct watch_stream *s)
{
    if (s->progress_deferred && s->n_unsynced == 0 && s->err == 0) {
        s->progress_deferred = false;
        send_plain(s, s->h->rev, -1, false, false, 0, NULL);
    }
}

/* ---- event scratch ------------------------------------------------------- */

static int ev_scratch(struct watch_hub *h, size_t n)
{
    size_t cap = h->ev_cap;
    if (n <= cap) {
        return 0;
    }
    cap = cap ? cap : 64;
    while (cap < n) {
        cap *= 2;
    }
    /* Reallocate every array together; on failure keep the old ones. */
    {
        Mvccpb__KeyValue *kv = wrealloc(h->kv, cap * sizeof *kv);
        if (kv == NULL) {
            return IK_ENOMEM;
        }
        h->kv = kv;
    }
    {
        Mvccpb__KeyValue *pkv = wrealloc(h->pkv, cap * sizeof *pkv);
        if (pkv == NULL) {
            return IK_ENOMEM;
        }
        h->pkv = pkv;
    }
    {
        Mvccpb__Event *ev = wrealloc(h->ev, cap * sizeof *ev);
        if (ev == NULL) {
            return IK_ENOMEM;
        }
        h->ev = ev;
    }
    {
        Mvccpb__Event *evp = wrealloc(h->evp, cap * sizeof *evp);
        if (evp == NULL) {
            return IK_ENOMEM;
        }
        h->evp = evp;
    }
    {
        size_t *sz = wrealloc(h->sz, cap * sizeof *sz);
        if (sz == NULL) {
            return IK_ENOMEM;
        }
        h->sz = sz;
    }
    {
        size_t *szp = wrealloc(h->szp, cap * sizeof *szp);
        if (szp == NULL) {
            return IK_ENOMEM;
        }
        h->szp = szp;
    }
    {
        Mvccpb__Event **ptrs = wrealloc(h->ptrs, cap * sizeof *ptrs);
        if (ptrs == NULL) {
            return IK_ENOMEM;
        }
        h->ptrs = ptrs;
    }
    {
        size_t *psz = wrealloc(h->psz, cap * sizeof *psz);
        if (psz == NULL) {
            return IK_ENOMEM;
        }
        h->psz = psz;
    }
    h->ev_cap = cap;
    return 0;
}

static void ev_scratch_free(struct watch_hub *h)
{
    free(h->kv);
    free(h->pkv);
    free(h->ev);
    free(h->evp);
    free(h->sz);
    free(h->szp);
    free(h->ptrs);
    free(h->psz);
    h->kv = h->pkv = NULL;
    h->ev = h->evp = NULL;
    h->sz = h->szp = h->psz = NULL;
    h->ptrs = NULL;
    h->ev_cap = 0;
}

static void trim_scratch(struct watch_hub *h)
{
    if (h->ev_cap > TRIM_EVENTS) {
        ev_scratch_free(h);
    }
    if (h->touch_cap > TRIM_TOUCHES) {
        free(h->touches);
        h->touches = NULL;
        h->touch_cap = 0;
    }
    if (h->link_cap > TRIM_TOUCHES) {
        free(h->links);
        h->links = NULL;
        h->link_cap = 0;
    }
    if (h->rec_cap > TRIM_EVENTS) {
        free(h->recs);
        h->recs = NULL;
        h->rec_cap = 0;
    }
    if (h->arena_cap > 4 * h->cfg.batch_max_bytes) {
        free(h->arena);
        h->arena = NULL;
        h->arena_cap = 0;
    }
}

/* Is a PUT of @kv the creation of its key? (no prev_kv for those) */
static bool is_create(const Mvccpb__Event *e)
{
    return e->type == MVCCPB__EVENT__EVENT_TYPE__PUT &&
           e->kv->create_revision == e->kv->mod_revision;
}

/* Fill slot @i of the event scratch from a change; kvs point at the
 * caller's bytes. */
static void ev_fill(struct watch_hub *h, size_t i, const struct mvcc_kv *kv,
                    const struct mvcc_kv *prev)
{
    Mvccpb__KeyValue *k = &h->kv[i];
    Mvccpb__Event *e = &h->ev[i];
    bool tomb = kv->version == 0;

    mvccpb__key_value__init(k);
    k->key.data = (uint8_t *)kv->key;
    k->key.len = kv->key_len;
    k->mod_revision = kv->mod_revision;
    if (!tomb) {
        k->create_revision = kv->create_revision;
        k->version = kv->version;
        k->value.data = (uint8_t *)kv->value;
        k->value.len = kv->value_len;
        k->lease = kv->lease;
    }
    mvccpb__event__init(e);
    e->type = tomb ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                   : MVCCPB__EVENT__EVENT_TYPE__PUT;
    e->kv = k;
    h->evp[i] = *e;
    if (prev != NULL && prev->version != 0 && !is_create(e)) {
        Mvccpb__KeyValue *p = &h->pkv[i];
        mvccpb__key_value__init(p);
        p->key.data = (uint8_t *)prev->key;
        p->key.len = prev->key_len;
        p->create_revision = prev->create_revision;
        p->mod_revision = prev->mod_revision;
        p->version = prev->version;
        p->value.data = (uint8_t *)prev->value;
        p->value.len = prev->value_len;
        p->lease = prev->lease;
        h->evp[i].prev_kv = p;
    }
    h->sz[i] = 0;
    h->szp[i] = 0;
}

/* Event @i as watcher @w sees it, and its packed size if @w fragments. */
static Mvccpb__Event *ev_for(struct watch_hub *h, const struct watcher *w,
                             size_t i, size_t *size)
{
    Mvccpb__Event *e = w->prev_kv ? &h->evp[i] : &h->ev[i];
    size_t *cache = w->prev_kv ? &h->szp[i] : &h->sz[i];
    if (w->fragment) {
        if (*cache == 0) {
            *cache = protobuf_c_message_get_packed_size(&e->base);
        }
        *size = *cache;
    }
    return e;
}

/* ---- watcher lifecycle -----------------------------------------------------
 */

/* Remove @w from everything and free it (nothing is sent). */
static void watcher_destroy(struct watcher *w)
{
    struct watch_stream *s = w->s;
    struct watch_hub *h = s->h;

    state_leave(w);
    if (w->state != W_COMPACTED) {
        index_del(h, w);
    }
    id_del(s, w);
    if (w->s_prev != NULL) {
        w->s_prev->s_next = w->s_next;
    } else {
        s->all = w->s_next;
    }
    if (w->s_next != NULL) {
        w->s_next->s_prev = w->s_prev;
    }
    if (w->progress_notify) {
        s->n_progress--;
    }
    h->n_watchers--;
    free(w);
}

/* Compaction cancel: etcd sends {watch_id, compact_revision} with header
 * revision 0 and the watcher leaves the index, its id staying taken. */
static int compact_cancel(struct watcher *w, int64_t compact_rev)
{
    struct watch_stream *s = w->s;
    struct watch_hub *h = s->h;
    state_leave(w);
    index_del(h, w);
    w->state = W_COMPACTED;
    h->n_compacted++;
    return send_plain(s, 0, w->id, false, true, compact_rev, NULL);
}

/* Revisions @from..@to were not delivered live: every synced watcher that
 * wants some of them reads them from history (used for gaps and when live
 * delivery is impossible). */
static void unsync_window(struct watch_hub *h, int64_t from, int64_t to)
{
    for (struct watch_stream *s = h->streams; s != NULL; s = s->next) {
        for (struct watcher *w = s->all; w != NULL; w = w->s_next) {
            if (w->state == W_SYNCED && w->min_rev <= to) {
                set_unsynced(w, w->min_rev > from ? w->min_rev : from);
            }
        }
    }
}

/* ---- catch-up from history --------------------------------------------- */

struct batch {
    struct watch_hub *h;
    struct watcher *w;
    int64_t last_rev;
    uint32_t revs;
    size_t bytes;
    int64_t more_rev;
    int err;
};

static int arena_put(struct watch_hub *h, const uint8_t *p, size_t len,
                     size_t *off)
{
    if (len > SIZE_MAX - h->arena_len) {
        return IK_ENOMEM;
    }
    if (grow((void **)&h->arena, &h->arena_cap, h->arena_len + len, 1) != 0) {
        return IK_ENOMEM;
    }
    *off = h->arena_len;
    if (len != 0) {
        memcpy(h->arena + h->arena_len, p, len);
    }
    h->arena_len += len;
    return 0;
}

static int hkv_copy(struct watch_hub *h, struct hkv *d,
                    const struct mvcc_kv *kv, bool tomb)
{
    memset(d, 0, sizeof *d);
    d->mod = kv->mod_revision;
    d->key_len = kv->key_len;
    if (arena_put(h, kv->key, kv->key_len, &d->key_off) != 0) {
        return IK_ENOMEM;
    }
    if (tomb) {
        return 0;
    }
    d->create = kv->create_revision;
    d->version = kv->version;
    d->lease = kv->lease;
    d->val_len = kv->value_len;
    return arena_put(h, kv->value, kv->value_len, &d->val_off);
}

static int batch_emit(void *ctx, const struct mvcc_kv *kv,
                      const struct mvcc_kv *prev)
{
    struct batch *b = ctx;
    struct watch_hub *h = b->h;
    struct watcher *w = b->w;
    int64_t rev = kv->mod_revision;
    bool tomb = kv->version == 0;
    struct hrec *rec;

    if (b->err != 0 || b->more_rev != 0) {
        return 1;
    }
    if (rev < w->min_rev || rev > h->rev || rev < b->last_rev ||
        !watcher_has_key(w, kv->key, kv->key_len)) {
        return 0; /* not ours: ignore */
    }
    if (rev > b->last_rev) {
        if (b->revs >= h->cfg.batch_max_revs ||
            b->bytes >= h->cfg.batch_max_bytes) {
            b->more_rev = rev; /* whole revisions only */
            return 1;
        }
        b->revs++;
        b->last_rev = rev;
    }
    if (tomb ? w->no_delete : w->no_put) {
        return 0;
    }
    if (grow((void **)&h->recs, &h->rec_cap, h->n_recs + 1, sizeof *rec) != 0) {
        b->err = IK_ENOMEM;
        return 1;
    }
    rec = &h->recs[h->n_recs];
    if (hkv_copy(h, &rec->kv, kv, tomb) != 0) {
        b->err = IK_ENOMEM;
        return 1;
    }
    rec->has_prev = w->prev_kv && prev != NULL && prev->version != 0 &&
                    !(!tomb && kv->create_revision == rev);
    if (rec->has_prev && hkv_copy(h, &rec->prev, prev, false) != 0) {
        b->err = IK_ENOMEM;
        return 1;
    }
    h->n_recs++;
    b->bytes += 64 + kv->key_len + (tomb ? 0 : kv->value_len) +
                (rec->has_prev ? prev->key_len + prev->value_len : 0);
    return 0;
}

static void hkv_to_pb(const struct watch_hub *h, Mvccpb__KeyValue *k,
                      const struct hkv *d)
{
    mvccpb__key_value__init(k);
    k->key.data = h->arena + d->key_off;
    k->key.len = d->key_len;
    k->create_revision = d->create;
    k->mod_revision = d->mod;
    k->version = d->version;
    k->value.data = d->val_len ? h->arena + d->val_off : NULL;
    k->value.len = d->val_len;
    k->lease = d->lease;
}

/*
 * One catch-up step for unsynced @w: compaction cancel, or one batch of
 * history (whole revisions). Returns 0, the history error (w unchanged),
 * or the stream's error.
 */
static int sync_one(struct watch_hub *h, struct watcher *w)
{
    struct watch_stream *s = w->s;
    struct batch b;
    size_t n;
    int rv;

    if (w->min_rev < h->compact_rev) {
        return compact_cancel(w, h->compact_rev);
    }
    if (w->min_rev > h->rev) {
        set_synced(w);
        return 0;
    }
    if (w->min_rev < 1) {
        /* etcd reads nothing below revision 1 */
        w->min_rev = h->rev + 1;
        set_synced(w);
        return 0;
    }
    memset(&b, 0, sizeof b);
    b.h = h;
    b.w = w;
    h->n_recs = 0;
    h->arena_len = 0;
    rv = h->cfg.history(h->cfg.history_arg, w->key, w->key_len,
                        w->range ? (w->from_key ? (const uint8_t *)"" : w->end)
                                 : NULL,
                        w->range ? (w->from_key ? 1 : w->end_len) : 0,
                        w->min_rev, h->rev, w->prev_kv, batch_emit, &b);
    if (rv == 0) {
        rv = b.err;
    }
    if (rv == IK_ECOMPACTED) {
        /* The source knows better than us: use our compacted revision if
         * it covers this, else the first revision that may still work. */
        int64_t crev =
            h->compact_rev > w->min_rev ? h->compact_rev : w->min_rev + 1;
        h->n_recs = 0;
        return compact_cancel(w, crev);
    }
    if (rv != 0) {
        h->n_recs = 0;
        trim_scratch(h);
        return rv;
    }
    n = h->n_recs;
    if (n != 0 && ev_scratch(h, n) != 0) {
        h->n_recs = 0;
        return IK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct hrec *rec = &h->recs[i];
        Mvccpb__Event *e = &h->ev[i];
        hkv_to_pb(h, &h->kv[i], &rec->kv);
        mvccpb__event__init(e);
        e->type = rec->kv.version == 0 ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                                       : MVCCPB__EVENT__EVENT_TYPE__PUT;
        e->kv = &h->kv[i];
        if (rec->has_prev) {
            hkv_to_pb(h, &h->pkv[i], &rec->prev);
            e->prev_kv = &h->pkv[i];
        }
        h->ptrs[i] = e;
        if (w->fragment) {
            h->psz[i] = protobuf_c_message_get_packed_size(&e->base);
        }
    }
    if (b.more_rev != 0) {
        w->min_rev = b.more_rev;
    } else {
        w->min_rev = h->rev + 1;
        set_synced(w);
    }
    rv = 0;
    if (n != 0) {
        rv = send_events(s, w, h->rev, h->ptrs, h->psz, n);
    }
    h->n_recs = 0;
    h->arena_len = 0;
    trim_scratch(h);
    return rv;
}

/* Serve the stream's unsynced watchers round-robin while it has room, at
 * most *@budget batches. */
static int stream_pump(struct watch_stream *s, uint32_t *budget)
{
    struct watch_hub *h = s->h;
    while (*budget > 0 && s->u_head != NULL && stream_has_room(s)) {
        struct watcher *w = s->u_head;
        (*budget)--;
        sync_one(h, w);
        if (s->err != 0) {
            return s->err;
        }
        if (w->state == W_UNSYNCED && s->u_tail != w) {
            ulist_del(s, w); /* more to read (or an error): go last */
            ulist_append(s, w);
        }
    }
    maybe_deferred_progress(s);
    return s->err;
}

/* ---- hub ---------------------------------------------------------------- */

int watch_hub_new(const struct watch_hub_config *cfg, struct watch_hub **out)
{
    struct watch_hub *h;
    if (cfg == NULL || out == NULL || cfg->history == NULL || cfg->rev < 1 ||
        cfg->compact_rev > cfg->rev) {
        return IK_EINVAL;
    }
    h = wcalloc(1, sizeof *h);
    if (h == NULL) {
        return IK_ENOMEM;
    }
    h->cfg = *cfg;
    if (h->cfg.max_queued_bytes == 0) {
        h->cfg.max_queued_bytes = WATCH_DEFAULT_MAX_QUEUED_BYTES;
    }
    if (h->cfg.fragment_bytes == 0) {
        h->cfg.fragment_bytes = WATCH_DEFAULT_FRAGMENT_BYTES;
    }
    if (h->cfg.batch_max_revs == 0) {
        h->cfg.batch_max_revs = WATCH_DEFAULT_BATCH_MAX_REVS;
    }
    if (h->cfg.batch_max_bytes == 0) {
        h->cfg.batch_max_bytes = WATCH_DEFAULT_BATCH_MAX_BYTES;
    }
    if (h->cfg.progress_interval_ms == 0) {
        h->cfg.progress_interval_ms = WATCH_DEFAULT_PROGRESS_INTERVAL_MS;
    }
    if (h->cfg.sync_budget == 0) {
        h->cfg.sync_budget = WATCH_DEFAULT_SYNC_BUDGET;
    }
    h->rev = cfg->rev;
    h->compact_rev = cfg->compact_rev;
    h->rng = cfg->seed ? cfg->seed : 0x2545f4914f6cdd1dull;
    *out = h;
    return 0;
}

static void stream_release(struct watch_stream *s)
{
    struct watch_hub *h = s->h;
    while (s->all != NULL) {
        watcher_destroy(s->all);
    }
    work_del(s);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        h->streams = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    h->n_streams--;
    free(s->slots);
    free(s);
}

void watch_hub_free(struct watch_hub *h)
{
    if (h == NULL) {
        return;
    }
    while (h->streams != NULL) {
        stream_release(h->streams);
    }
    free(h->kb);
    ev_scratch_free(h);
    free(h->touches);
    free(h->links);
    free(h->mkv);
    free(h->mch);
    free(h->recs);
    free(h->arena);
    free(h);
}

int64_t watch_hub_rev(const struct watch_hub *h)
{
    return h->rev;
}

int64_t watch_hub_compact_rev(const struct watch_hub *h)
{
    return h->compact_rev;
}

void watch_hub_stats(const struct watch_hub *h, struct watch_hub_stats *out)
{
    out->streams = h->n_streams;
    out->watchers = h->n_watchers;
    out->synced = h->n_synced;
    out->unsynced = h->n_unsynced;
    out->compacted = h->n_compacted;
    out->key_nodes = h->kcount;
    out->range_nodes = h->rcount;
}

/* Record change @ev for watcher @w in this notify's grouping. */
static int touch(struct watch_hub *h, struct watcher *w, uint32_t ev,
                 int64_t rev, bool tomb)
{
    struct link *l;
    if (w->state != W_SYNCED || w->s->err != 0 || rev < w->min_rev ||
        (tomb ? w->no_delete : w->no_put)) {
        return 0;
    }
    if (grow((void **)&h->links, &h->link_cap, h->n_links + 1, sizeof *l) !=
        0) {
        return IK_ENOMEM;
    }
    l = &h->links[h->n_links];
    l->ev = ev;
    l->next = UINT32_MAX;
    if (w->epoch != h->epoch) {
        struct touch *t;
        if (grow((void **)&h->touches, &h->touch_cap, h->n_touches + 1,
                 sizeof *t) != 0) {
            return IK_ENOMEM;
        }
        t = &h->touches[h->n_touches];
        t->w = w;
        t->head = t->tail = (uint32_t)h->n_links;
        t->n = 1;
        w->epoch = h->epoch;
        w->touch = (uint32_t)h->n_touches++;
    } else {
        struct touch *t = &h->touches[w->touch];
        h->links[t->tail].next = (uint32_t)h->n_links;
        t->tail = (uint32_t)h->n_links;
        t->n++;
    }
    h->n_links++;
    return 0;
}

static int touch_list(struct watch_hub *h, const struct wlist *l, uint32_t ev,
                      int64_t rev, bool tomb)
{
    for (struct watcher *w = l->head; w != NULL; w = w->ix_next) {
        int rv = touch(h, w, ev, rev, tomb);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Touch the watchers of every interval of @t that contains @k. */
static int rstab(struct watch_hub *h, const struct rnode *t, const uint8_t *k,
                 size_t len, uint32_t ev, int64_t rev, bool tomb)
{
    while (t != NULL) {
        int rv;
        if (!t->maxn->inf &&
            kcmp(t->maxn->end, t->maxn->end_len, k, len) <= 0) {
            return 0; /* everything here ends at or before k */
        }
        rv = rstab(h, t->l, k, len, ev, rev, tomb);
        if (rv != 0) {
            return rv;
        }
        if (kcmp(t->start, t->start_len, k, len) > 0) {
            return 0; /* this and the right subtree start after k */
        }
        if (t->inf || kcmp(k, len, t->end, t->end_len) < 0) {
            rv = touch_list(h, &t->ws, ev, rev, tomb);
            if (rv != 0) {
                return rv;
            }
        }
        t = t->r;
    }
    return 0;
}

int watch_hub_notify(struct watch_hub *h, int64_t rev,
                     const struct watch_change *changes, size_t n)
{
    if (rev <= h->rev) {
        return IK_EINVAL;
    }
    if (rev > h->rev + 1) {
        unsync_window(h, h->rev + 1, rev - 1); /* we missed revisions */
    }
    h->rev = rev;
    if (n == 0 || h->n_synced == 0) {
        return 0;
    }
    if (n > UINT32_MAX - 1 || ev_scratch(h, n) != 0) {
        unsync_window(h, rev, rev);
        return 0;
    }
    h->epoch++;
    h->n_touches = 0;
    h->n_links = 0;
    for (size_t i = 0; i < n; i++) {
        const struct mvcc_kv *kv = changes[i].kv;
        bool tomb = kv->version == 0;
        struct knode *kn;
        int rv = 0;
        ev_fill(h, i, kv, changes[i].prev);
        kn = kfind(h, kv->key, kv->key_len, khash(kv->key, kv->key_len));
        if (kn != NULL) {
            rv = touch_list(h, &kn->ws, (uint32_t)i, rev, tomb);
        }
        if (rv == 0) {
            rv = rstab(h, h->rroot, kv->key, kv->key_len, (uint32_t)i, rev,
                       tomb);
        }
        if (rv != 0) {
            unsync_window(h, rev, rev);
            h->n_touches = h->n_links = 0;
            trim_scratch(h);
            return 0;
        }
    }
    for (size_t t = 0; t < h->n_touches; t++) {
        const struct touch *tc = &h->touches[t];
        struct watcher *w = tc->w;
        struct watch_stream *s = w->s;
        size_t k = 0;
        if (s->err != 0 || w->state != W_SYNCED) {
            continue;
        }
        if (!stream_has_room(s)) {
            set_unsynced(w, rev); /* read it back when the stream drains */
            continue;
        }
        for (uint32_t l = tc->head; l != UINT32_MAX; l = h->links[l].next) {
            h->ptrs[k] = ev_for(h, w, h->links[l].ev, &h->psz[k]);
            k++;
        }
        send_events(s, w, rev, h->ptrs, h->psz, k);
    }
    h->n_touches = h->n_links = 0;
    trim_scratch(h);
    return 0;
}

int watch_hub_notify_mvcc(struct watch_hub *h, const struct mvcc *m)
{
    size_t n = mvcc_txn_changes(m);
    int64_t rev = mvcc_rev(m) + 1;

    if (rev <= h->rev) {
        return IK_EINVAL;
    }
    if (n > h->m_cap) {
        /* mkv holds two kvs per change; grow() only sees counts. */
        size_t kcap = 2 * h->m_cap, ccap = h->m_cap;
        if (grow((void **)&h->mkv, &kcap, 2 * n, sizeof(struct mvcc_kv)) != 0 ||
            grow((void **)&h->mch, &ccap, n, sizeof(struct watch_change)) !=
                0) {
            /* no room to list the changes: deliver them from history */
            unsync_window(h, h->rev + 1, rev);
            h->rev = rev;
            return 0;
        }
        h->m_cap = kcap / 2 < ccap ? kcap / 2 : ccap;
    }
    for (size_t i = 0; i < n; i++) {
        struct mvcc_kv *kv = &h->mkv[2 * i];
        struct mvcc_kv *prev = &h->mkv[2 * i + 1];
        bool has_prev = mvcc_txn_change(m, i, kv, prev);
        h->mch[i].kv = kv;
        h->mch[i].prev = has_prev ? prev : NULL;
    }
    return watch_hub_notify(h, rev, h->mch, n);
}

void watch_hub_compact(struct watch_hub *h, int64_t rev)
{
    if (rev > h->compact_rev) {
        h->compact_rev = rev;
    }
}

void watch_hub_restore(struct watch_hub *h, int64_t rev, int64_t compact_rev)
{
    for (struct watch_stream *s = h->streams; s != NULL; s = s->next) {
        for (struct watcher *w = s->all; w != NULL; w = w->s_next) {
            if (w->state == W_SYNCED) {
                set_unsynced(w, w->min_rev > h->rev ? w->min_rev : h->rev + 1);
            }
        }
    }
    h->rev = rev < 1 ? 1 : rev;
    h->compact_rev = compact_rev;
}

static void stream_progress(struct watch_stream *s)
{
    struct watch_hub *h = s->h;
    for (struct watcher *w = s->all; w != NULL && s->err == 0; w = w->s_next) {
        if (!w->progress_notify) {
            continue;
        }
        if (w->progress_due && w->state == W_SYNCED && stream_has_room(s)) {
            send_plain(s, h->rev, w->id, false, false, 0, NULL);
        }
        w->progress_due = true;
    }
}

void watch_hub_tick(struct watch_hub *h, uint64_t now_ms)
{
    h->now = now_ms;
    h->ticked = true;
    for (struct watch_stream *s = h->streams; s != NULL; s = s->next) {
        if (s->next_progress == 0) {
            s->next_progress = now_ms + s->interval;
            continue;
        }
        if (now_ms < s->next_progress) {
            continue;
        }
        s->next_progress += s->interval;
        if (s->next_progress <= now_ms) {
            s->next_progress = now_ms + s->interval;
        }
        if (s->err == 0 && s->n_progress != 0) {
            stream_progress(s);
        }
    }
}

bool watch_hub_sync(struct watch_hub *h)
{
    uint32_t budget = h->cfg.sync_budget;
    while (budget > 0) {
        bool progressed = false;
        size_t round = 0;
        for (struct watch_stream *s = h->work_head; s != NULL; s = s->wk_next) {
            round++;
        }
        for (size_t i = 0; i < round && budget > 0 && h->work_head != NULL;
             i++) {
            struct watch_stream *s = h->work_head;
            uint32_t one = 1;
            work_del(s); /* rotate: serve streams round-robin */
            work_add(s);
            if (!stream_has_room(s)) {
                continue;
            }
            stream_pump(s, &one);
            if (one == 0) {
                budget--;
                progressed = true;
            }
        }
        if (!progressed) {
            return false;
        }
    }
    return h->work_head != NULL;
}

/* ---- streams ---------------------------------------------------------------
 */

int watch_stream_new(struct watch_hub *h, const struct watch_stream_ops *ops,
                     void *arg, struct watch_stream **out)
{
    struct watch_stream *s;
    uint64_t iv = h->cfg.progress_interval_ms;
    if (ops == NULL || ops->send == NULL || ops->queued_bytes == NULL) {
        return IK_EINVAL;
    }
    s = wcalloc(1, sizeof *s);
    if (s == NULL) {
        return IK_ENOMEM;
    }
    s->h = h;
    s->ops = *ops;
    s->arg = arg;
    s->interval = iv;
    if (h->cfg.seed != 0 && iv / 10 != 0) {
        s->interval += rng_next(h) % (iv / 10); /* etcd's jitter */
    }
    s->next_progress = h->ticked ? h->now + s->interval : 0;
    if (s->next_progress == 0 && h->ticked) {
        s->next_progress = 1;
    }
    s->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = s;
    }
    h->streams = s;
    h->n_streams++;
    *out = s;
    return 0;
}

void watch_stream_free(struct watch_stream *s)
{
    if (s != NULL) {
        stream_release(s);
    }
}

int watch_stream_error(const struct watch_stream *s)
{
    return s->err;
}

static int handle_create(struct watch_stream *s,
                         const Etcdserverpb__WatchCreateRequest *c)
{
    struct watch_hub *h = s->h;
    const uint8_t *key = c->key.data, *end = c->range_end.data;
    size_t key_len = c->key.len, end_len = c->range_end.len;
    bool range = end_len != 0, from_key = end_len == 1 && end[0] == 0;
    int64_t id = c->watch_id, start = c->start_revision;
    struct watcher *w;
    int rv;

    if (key_len == 0) {
        key = (const uint8_t *)""; /* "\0": the smallest key */
        key_len = 1;
    }
    if (from_key) {
        end_len = 0;
    }
    if (range && !from_key && kcmp(key, key_len, end, end_len) >= 0) {
        return send_plain(s, h->rev, -1, true, true, 0, reason_empty_range);
    }
    if (id == 0) {
        id = s->next_id;
        while (id_get(s, id) != NULL) {
            id++;
        }
    } else if (id_get(s, id) != NULL) {
        return send_plain(s, h->rev, -1, true, true, 0, reason_dup_id);
    }
    if (key_len > SIZE_MAX - sizeof *w - end_len) {
        return IK_ENOMEM;
    }
    w = wcalloc(1, sizeof *w + key_len + end_len);
    if (w == NULL) {
        return IK_ENOMEM;
    }
    w->s = s;
    w->id = id;
    w->range = range;
    w->from_key = from_key;
    w->key = w->mem;
    w->key_len = key_len;
    memcpy(w->key, key, key_len);
    if (range && !from_key) {
        w->end = w->mem + key_len;
        w->end_len = end_len;
        memcpy(w->end, end, end_len);
    }
    w->prev_kv = c->prev_kv;
    w->fragment = c->fragment;
    w->progress_notify = c->progress_notify;
    w->progress_due = true;
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] ==
            ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT) {
            w->no_put = true;
        } else if (c->filters[i] ==
                   ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE) {
            w->no_delete = true;
        }
    }
    rv = id_put(s, w);
    if (rv != 0) {
        free(w);
        return rv;
    }
    rv = index_add(h, w);
    if (rv != 0) {
        id_del(s, w);
        free(w);
        return rv;
    }
    if (c->watch_id == 0) {
        s->next_id = id + 1;
    }
    w->s_next = s->all;
    if (s->all != NULL) {
        s->all->s_prev = w;
    }
    s->all = w;
    if (w->progress_notify) {
        s->n_progress++;
    }
    h->n_watchers++;
    if (start == 0 || start > h->rev) {
        /* etcd: synced, from the next revision or the future start */
        w->state = W_SYNCED;
        h->n_synced++;
        w->min_rev = start > h->rev + 1 ? start : h->rev + 1;
    } else {
        w->state = W_UNSYNCED;
        h->n_unsynced++;
        w->min_rev = start;
        ulist_append(s, w);
        work_add(s);
    }
    rv = send_plain(s, h->rev, id, true, false, 0, NULL);
    if (rv == 0 && w->state == W_UNSYNCED) {
        uint32_t budget = h->cfg.sync_budget;
        rv = stream_pump(s, &budget);
    }
    return rv;
}

static int handle_cancel(struct watch_stream *s, int64_t id)
{
    struct watcher *w = id_get(s, id);
    int rv;
    if (w == NULL) {
        return 0; /* etcd answers nothing */
    }
    watcher_destroy(w);
    rv = send_plain(s, s->h->rev, id, false, true, 0, NULL);
    maybe_deferred_progress(s);
    return rv != 0 ? rv : s->err;
}

int watch_stream_recv(struct watch_stream *s,
                      const Etcdserverpb__WatchRequest *req)
{
    if (s->err != 0) {
        return s->err;
    }
    if (req == NULL) {
        return IK_EINVAL;
    }
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        if (req->create_request == NULL) {
            return 0;
        }
        return handle_create(s, req->create_request);
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
        if (req->cancel_request == NULL) {
            return 0;
        }
        return handle_cancel(s, req->cancel_request->watch_id);
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        if (req->progress_request == NULL) {
            return 0;
        }
        if (s->n_unsynced == 0) {
            return send_plain(s, s->h->rev, -1, false, false, 0, NULL);
        }
        s->progress_deferred = true;
        return 0;
    default:
        return 0; /* etcd ignores what it does not know */
    }
}

struct unpack_ctx {
    bool oom;
};

static void *pb_alloc(void *ud, size_t size)
{
    void *p = wmalloc(size);
    if (p == NULL) {
        ((struct unpack_ctx *)ud)->oom = true;
    }
    return p;
}

static void pb_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

int watch_stream_recv_packed(struct watch_stream *s, const uint8_t *data,
                             size_t len)
{
    struct unpack_ctx ctx = {false};
    ProtobufCAllocator a = {pb_alloc, pb_free, &ctx};
    Etcdserverpb__WatchRequest *req;
    int rv;

    if (s->err != 0) {
        return s->err;
    }
    if (data == NULL && len != 0) {
        return IK_EINVAL;
    }
    req = etcdserverpb__watch_request__unpack(&a, len, data);
    if (req == NULL) {
        return ctx.oom ? IK_ENOMEM : IK_EMALFORMED;
    }
    rv = watch_stream_recv(s, req);
    etcdserverpb__watch_request__free_unpacked(req, &a);
    return rv;
}

int watch_stream_writable(struct watch_stream *s)
{
    uint32_t budget = s->h->cfg.sync_budget;
    if (s->err != 0) {
        return s->err;
    }
    return stream_pump(s, &budget);
}
