/*
 * lease: the lessor (see lease.h).
 *
 * Data structures:
 *  - leases: B-tree of struct lease keyed by lease_idkey() (the id as 8
 *    big-endian bytes with the sign bit flipped, so byte order is signed
 *    id order).
 *  - items: B-tree of attachments keyed by idkey + key bytes: the keys of
 *    one lease are contiguous and in etcd's byte order, which is the order
 *    etcd's Revoke deletes them in.
 *  - two indexed min-heaps over the leases, used only while primary: the
 *    next expiry check of each lease (its expiry, or the retry time once
 *    handed out by lease_expired()), and its next checkpoint. The heap
 *    arrays (and a scratch array used to sort) always have room for every
 *    lease, reserved when a lease is granted, so nothing leader-side ever
 *    allocates or fails.
 *
 * Snapshot format (lease_encode()), version 1. Integers little endian.
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------
 *        0     8  magic "IKLEASES"
 *        8     4  u32 format version (1)
 *       12     8  u64 lease count N
 *       20     4  u32 CRC32 (zlib crc32()) of bytes 0..19
 *       24  28*N  N lease records, ascending (signed) id order:
 *                   +0   8  i64 lease id (never 0)
 *                   +8   8  i64 granted TTL, seconds (1..LEASE_MAX_TTL)
 *                  +16   8  i64 checkpointed remaining TTL, seconds
 *                           (0 = none; 0..LEASE_MAX_TTL)
 *                  +24   4  u32 CRC32 of the record's bytes +0..+23
 *
 * The section is exactly 24 + 28*N bytes. Anything else (other magic or
 * version, other length, a checksum mismatch, a zero or out-of-order id,
 * a value out of range) is corruption. Attached keys are not stored: they
 * are rebuilt from the store.
 */
#include "server/lease.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/errors.h"
#include "server/mvcc.h"

bool (*lease_fail_alloc_hook)(void) = NULL;

#define FOREVER INT64_MAX
#define NOT_IN_HEAP SIZE_MAX
#define IDKEY_LEN 8

#define SNAP_MAGIC "IKLEASES"
#define SNAP_HEADER 24
#define SNAP_RECORD 28

enum { HEAP_EXP = 0, HEAP_CP = 1 };

struct lease {
    uint8_t idkey[IDKEY_LEN];
    int64_t id;
    int64_t ttl;           /* granted TTL, seconds */
    int64_t remaining_ttl; /* checkpointed remaining TTL, 0 = none */
    int64_t expiry;        /* ms; FOREVER unless primary */
    int64_t at[2];         /* heap keys (ms) */
    size_t hidx[2];        /* position in the heaps or NOT_IN_HEAP */
    size_t n_keys;         /* attached keys */
};

/* An attachment: idkey followed by the key. */
struct lease_item {
    size_t len;
    uint8_t k[];
};

/* ---- allocation ---------------------------------------------------- */

static void *lmalloc(size_t n)
{
    if (lease_fail_alloc_hook != NULL && lease_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(n == 0 ? 1 : n);
}

static void *lrealloc(void *p, size_t n)
{
    if (lease_fail_alloc_hook != NULL && lease_fail_alloc_hook()) {
        return NULL;
    }
    return realloc(p, n == 0 ? 1 : n);
}

/* ---- small helpers ------------------------------------------------- */

static int64_t clamp_now(uint64_t now_ms)
{
    return now_ms > (uint64_t)(INT64_MAX / 4) ? INT64_MAX / 4 : (int64_t)now_ms;
}

/* a + b for b >= 0, saturating at FOREVER - 1. */
static int64_t add_ms(int64_t a, int64_t b)
{
    if (b > 0 && a > FOREVER - 1 - b) {
        return FOREVER - 1;
    }
    return a + b;
}

static void lease_idkey(int64_t id, uint8_t out[IDKEY_LEN])
{
    uint64_t u = (uint64_t)id ^ (UINT64_C(1) << 63);
    for (int i = IDKEY_LEN - 1; i >= 0; i--) {
        out[i] = (uint8_t)u;
        u >>= 8;
    }
}

static const uint8_t *lease_key_of(const void *item, size_t *len)
{
    const struct lease *ls = item;
    *len = IDKEY_LEN;
    return ls->idkey;
}

static const uint8_t *item_key_of(const void *item, size_t *len)
{
    const struct lease_item *it = item;
    *len = it->len;
    return it->k;
}

static struct lease *find(const struct lessor *l, int64_t id)
{
    uint8_t k[IDKEY_LEN];
    lease_idkey(id, k);
    return btree_get(&l->leases, k, IDKEY_LEN);
}

/* The remaining TTL a refresh counts from (etcd's Lease.RemainingTTL()). */
static int64_t effective_ttl(const struct lease *ls)
{
    return ls->remaining_ttl > 0 ? ls->remaining_ttl : ls->ttl;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t crc(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* ---- heaps --------------------------------------------------------- */

static bool heap_less(const struct lease *a, const struct lease *b, int w)
{
    if (a->at[w] != b->at[w]) {
        return a->at[w] < b->at[w];
    }
    return a->id < b->id;
}

static struct lease_heap *heap_of(struct lessor *l, int w)
{
    return w == HEAP_EXP ? &l->exp : &l->cp;
}

static void heap_set(struct lease_heap *h, size_t i, struct lease *ls, int w)
{
    h->a[i] = ls;
    ls->hidx[w] = i;
}

static void heap_up(struct lease_heap *h, size_t i, int w)
{
    struct lease *ls = h->a[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(ls, h->a[parent], w)) {
            break;
        }
        heap_set(h, i, h->a[parent], w);
        i = parent;
    }
    heap_set(h, i, ls, w);
}

static void heap_down(struct lease_heap *h, size_t i, int w)
{
    struct lease *ls = h->a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && heap_less(h->a[c + 1], h->a[c], w)) {
            c++;
        }
        if (!heap_less(h->a[c], ls, w)) {
            break;
        }
        heap_set(h, i, h->a[c], w);
        i = c;
    }
    heap_set(h, i, ls, w);
}

/* Insert @ls or move it after its key changed. Room is always reserved. */
static void heap_update(struct lessor *l, struct lease *ls, int w, int64_t at)
{
    struct lease_heap *h = heap_of(l, w);
    ls->at[w] = at;
    if (ls->hidx[w] == NOT_IN_HEAP) {
        heap_set(h, h->n, ls, w);
        h->n++;
        heap_up(h, h->n - 1, w);
        return;
    }
    heap_up(h, ls->hidx[w], w);
    heap_down(h, ls->hidx[w], w);
}

static void heap_remove(struct lessor *l, struct lease *ls, int w)
{
    struct lease_heap *h = heap_of(l, w);
    size_t i = ls->hidx[w];
    struct lease *moved;

    if (i == NOT_IN_HEAP) {
        return;
    }
    ls->hidx[w] = NOT_IN_HEAP;
    h->n--;
    if (i == h->n) {
        return;
    }
    moved = h->a[h->n];
    heap_set(h, i, moved, w);
    heap_up(h, i, w);
    heap_down(h, moved->hidx[w], w);
}

/* Room for @want leases in the heaps and the scratch array. */
static int reserve(struct lessor *l, size_t want)
{
    struct lease **p;
    size_t cap;

    if (want <= l->cap) {
        return 0;
    }
    cap = l->cap < 16 ? 16 : l->cap;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(struct lease *)) {
            return IK_ENOMEM;
        }
        cap *= 2;
    }
    p = lrealloc(l->exp.a, cap * sizeof *p);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    l->exp.a = p;
    p = lrealloc(l->cp.a, cap * sizeof *p);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    l->cp.a = p;
    p = lrealloc(l->scratch, cap * sizeof *p);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    l->scratch = p;
    l->cap = cap;
    return 0;
}

/* ---- setup --------------------------------------------------------- */

int64_t lease_min_ttl(uint64_t heartbeat_ms, uint64_t election_ms)
{
    uint64_t ticks, ms;

    if (heartbeat_ms == 0) {
        return 1;
    }
    ticks = election_ms / heartbeat_ms;
    ms = (3 * ticks / 2) * heartbeat_ms;
    ms = (ms + 999) / 1000;
    return ms < 1 ? 1 : (int64_t)ms;
}

void lease_config_init(struct lease_config *cfg, uint64_t heartbeat_ms,
                       uint64_t election_ms)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->min_ttl = lease_min_ttl(heartbeat_ms, election_ms);
    cfg->promote_extend_ms =
        heartbeat_ms == 0 ? 0 : (election_ms / heartbeat_ms) * heartbeat_ms;
    cfg->checkpointing = true;
    cfg->checkpoint_interval_ms = LEASE_DEFAULT_CHECKPOINT_INTERVAL_MS;
    cfg->expired_retry_ms = LEASE_DEFAULT_EXPIRED_RETRY_MS;
    cfg->revoke_rate = LEASE_DEFAULT_REVOKE_RATE;
}

void lease_init(struct lessor *l, const struct lease_config *cfg,
                struct mvcc *store)
{
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    if (l->cfg.min_ttl < 1) {
        l->cfg.min_ttl = 1;
    }
    if (l->cfg.checkpoint_interval_ms == 0) {
        l->cfg.checkpoint_interval_ms = LEASE_DEFAULT_CHECKPOINT_INTERVAL_MS;
    }
    if (l->cfg.expired_retry_ms == 0) {
        l->cfg.expired_retry_ms = LEASE_DEFAULT_EXPIRED_RETRY_MS;
    }
    if (l->cfg.revoke_rate == 0) {
        l->cfg.revoke_rate = LEASE_DEFAULT_REVOKE_RATE;
    }
    l->store = store;
    btree_init(&l->leases, lease_key_of);
    btree_init(&l->items, item_key_of);
    l->win_start = INT64_MIN / 2;
}

static void free_ptr(void *p)
{
    free(p);
}

void lease_close(struct lessor *l)
{
    btree_close(&l->items, free_ptr);
    btree_close(&l->leases, free_ptr);
    free(l->exp.a);
    free(l->cp.a);
    free(l->scratch);
    free(l->buf);
    memset(l, 0, sizeof *l);
}

/* ---- attachments --------------------------------------------------- */

/* l->buf = idkey(id) + key. False if it cannot grow. */
static bool lookup_key(struct lessor *l, int64_t id, const uint8_t *key,
                       size_t len)
{
    if (len > SIZE_MAX - IDKEY_LEN) {
        return false;
    }
    if (l->buf_cap < IDKEY_LEN + len) {
        uint8_t *p = lrealloc(l->buf, IDKEY_LEN + len);
        if (p == NULL) {
            return false;
        }
        l->buf = p;
        l->buf_cap = IDKEY_LEN + len;
    }
    lease_idkey(id, l->buf);
    if (len > 0) {
        memcpy(l->buf + IDKEY_LEN, key, len);
    }
    return true;
}

static struct lease_item *item_new(int64_t id, const uint8_t *key, size_t len)
{
    struct lease_item *it;
    if (len > SIZE_MAX - IDKEY_LEN - sizeof *it) {
        return NULL;
    }
    it = lmalloc(sizeof *it + IDKEY_LEN + len);
    if (it == NULL) {
        return NULL;
    }
    it->len = IDKEY_LEN + len;
    lease_idkey(id, it->k);
    if (len > 0) {
        memcpy(it->k + IDKEY_LEN, key, len);
    }
    return it;
}

static void attach(struct lessor *l, int64_t id, const uint8_t *key, size_t len)
{
    struct lease *ls = find(l, id);
    struct lease_item *it;
    void *old = NULL;

    if (ls == NULL) {
        return; /* kv checks leases exist; nothing to attach to */
    }
    it = item_new(id, key, len);
    if (it == NULL || btree_insert(&l->items, it, &old) != 0) {
        free(it);
        l->stale = true;
        return;
    }
    if (old != NULL) {
        free(old);
    } else {
        ls->n_keys++;
    }
}

static void detach(struct lessor *l, int64_t id, const uint8_t *key, size_t len)
{
    struct lease *ls = find(l, id);
    void *it;

    if (ls == NULL) {
        return;
    }
    if (!lookup_key(l, id, key, len)) {
        l->stale = true;
        return;
    }
    it = btree_delete(&l->items, l->buf, IDKEY_LEN + len);
    if (it != NULL) {
        free(it);
        ls->n_keys--;
    }
}

void lease_commit_hook(void *arg, const struct mvcc *m)
{
    struct lessor *l = arg;
    size_t n = mvcc_txn_changes(m);

    for (size_t i = 0; i < n; i++) {
        struct mvcc_kv kv, prev;
        int64_t old_id = 0, new_id = 0;

        if (mvcc_txn_change(m, i, &kv, &prev)) {
            old_id = prev.lease;
        }
        if (kv.version != 0) {
            new_id = kv.lease;
        }
        if (old_id == new_id) {
            continue;
        }
        if (old_id != 0) {
            detach(l, old_id, kv.key, kv.key_len);
        }
        if (new_id != 0) {
            attach(l, new_id, kv.key, kv.key_len);
        }
    }
}

struct rebuild {
    struct lessor *l;
    struct btree tree;
    struct mvcc_kv last; /* latest version seen of the current key */
    bool have;
};

static int rebuild_flush(struct rebuild *r)
{
    struct lease_item *it;

    if (!r->have || r->last.version == 0 || r->last.lease == 0 ||
        find(r->l, r->last.lease) == NULL) {
        return 0;
    }
    it = item_new(r->last.lease, r->last.key, r->last.key_len);
    if (it == NULL) {
        return IK_ENOMEM;
    }
    if (btree_insert(&r->tree, it, NULL) != 0) {
        free(it);
        return IK_ENOMEM;
    }
    return 0;
}

static int rebuild_visit(void *arg, const struct mvcc_kv *kv)
{
    struct rebuild *r = arg;

    if (r->have && (kv->key_len != r->last.key_len ||
                    memcmp(kv->key, r->last.key, kv->key_len) != 0)) {
        int rv = rebuild_flush(r);
        if (rv != 0) {
            return rv;
        }
    }
    r->last = *kv;
    r->have = true;
    return 0;
}

int lease_rebuild_from_store(struct lessor *l, const struct mvcc *m)
{
    struct rebuild r;
    struct btree_iter it;
    struct lease_item *item;
    struct lease *ls;
    int rv;

    memset(&r, 0, sizeof r);
    r.l = l;
    btree_init(&r.tree, item_key_of);
    rv = mvcc_walk(m, rebuild_visit, &r);
    if (rv == 0) {
        rv = rebuild_flush(&r);
    }
    if (rv != 0) {
        btree_close(&r.tree, free_ptr);
        return rv;
    }
    btree_close(&l->items, free_ptr);
    l->items = r.tree;
    btree_iter_seek(&it, &l->leases, NULL, 0);
    while ((ls = btree_iter_next(&it)) != NULL) {
        ls->n_keys = 0;
    }
    btree_iter_seek(&it, &l->items, NULL, 0);
    while ((item = btree_iter_next(&it)) != NULL) {
        ls = btree_get(&l->leases, item->k, IDKEY_LEN);
        ls->n_keys++;
    }
    l->stale = false;
    return 0;
}

static int refresh_if_stale(struct lessor *l)
{
    if (!l->stale || l->store == NULL) {
        return 0;
    }
    return lease_rebuild_from_store(l, l->store);
}

/* ---- leader-side bookkeeping --------------------------------------- */

/* etcd's scheduleCheckpointIfNeeded(); keeps an earlier schedule. */
static void schedule_checkpoint(struct lessor *l, struct lease *ls, int64_t now)
{
    int64_t at;

    if (!l->cfg.checkpointing) {
        return;
    }
    if (effective_ttl(ls) <= (int64_t)(l->cfg.checkpoint_interval_ms / 1000)) {
        return;
    }
    at = add_ms(now, (int64_t)l->cfg.checkpoint_interval_ms);
    if (ls->hidx[HEAP_CP] != NOT_IN_HEAP && ls->at[HEAP_CP] <= at) {
        return;
    }
    heap_update(l, ls, HEAP_CP, at);
}

/* etcd's Lease.refresh(): expire @extend ms after the effective TTL. */
static void refresh(struct lessor *l, struct lease *ls, int64_t now,
                    int64_t extend, int64_t ttl)
{
    int64_t ttl_ms = ttl > LEASE_MAX_TTL ? LEASE_MAX_TTL * 1000 : ttl * 1000;
    ls->expiry = add_ms(add_ms(now, extend), ttl_ms);
    heap_update(l, ls, HEAP_EXP, ls->expiry);
}

/* ---- replicated operations ----------------------------------------- */

int lease_grant(struct lessor *l, int64_t id, int64_t ttl, uint64_t now_ms,
                int64_t *granted_ttl)
{
    struct lease *ls;
    int rv;

    if (id == 0) {
        return IK_ELEASENOTFOUND;
    }
    if (ttl > LEASE_MAX_TTL) {
        return IK_ELEASETTLTOOLARGE;
    }
    if (find(l, id) != NULL) {
        return IK_ELEASEEXIST;
    }
    rv = reserve(l, btree_len(&l->leases) + 1);
    if (rv != 0) {
        return rv;
    }
    ls = lmalloc(sizeof *ls);
    if (ls == NULL) {
        return IK_ENOMEM;
    }
    memset(ls, 0, sizeof *ls);
    lease_idkey(id, ls->idkey);
    ls->id = id;
    ls->ttl = ttl < l->cfg.min_ttl ? l->cfg.min_ttl : ttl;
    ls->expiry = FOREVER;
    ls->hidx[HEAP_EXP] = NOT_IN_HEAP;
    ls->hidx[HEAP_CP] = NOT_IN_HEAP;
    if (btree_insert(&l->leases, ls, NULL) != 0) {
        free(ls);
        return IK_ENOMEM;
    }
    if (l->primary) {
        int64_t now = clamp_now(now_ms);
        refresh(l, ls, now, 0, effective_ttl(ls));
        schedule_checkpoint(l, ls, now);
    }
    if (granted_ttl != NULL) {
        *granted_ttl = ls->ttl;
    }
    return 0;
}

/* Drop every attachment of @ls (they are normally gone already). */
static void drop_items(struct lessor *l, struct lease *ls)
{
    struct btree_iter it;
    struct lease_item *item;

    for (;;) {
        btree_iter_seek(&it, &l->items, ls->idkey, IDKEY_LEN);
        item = btree_iter_next(&it);
        if (item == NULL || memcmp(item->k, ls->idkey, IDKEY_LEN) != 0) {
            break;
        }
        free(btree_delete(&l->items, item->k, item->len));
    }
    ls->n_keys = 0;
}

int lease_revoke(struct lessor *l, int64_t id)
{
    struct lease *ls = find(l, id);
    int rv;

    if (ls == NULL) {
        return IK_ELEASENOTFOUND;
    }
    rv = refresh_if_stale(l);
    if (rv != 0) {
        return rv;
    }
    if (l->store != NULL && ls->n_keys > 0) {
        struct btree_iter it;
        struct lease_item *item;

        rv = mvcc_txn_begin(l->store);
        if (rv != 0) {
            return rv;
        }
        btree_iter_seek(&it, &l->items, ls->idkey, IDKEY_LEN);
        while ((item = btree_iter_next(&it)) != NULL &&
               memcmp(item->k, ls->idkey, IDKEY_LEN) == 0) {
            rv = mvcc_txn_delete_range(l->store, item->k + IDKEY_LEN,
                                       item->len - IDKEY_LEN, NULL, 0, NULL);
            if (rv != 0) {
                mvcc_txn_abort(l->store);
                return rv;
            }
        }
        /* The commit hook detaches the deleted keys here. */
        mvcc_txn_end(l->store);
    }
    drop_items(l, ls);
    heap_remove(l, ls, HEAP_EXP);
    heap_remove(l, ls, HEAP_CP);
    btree_delete(&l->leases, ls->idkey, IDKEY_LEN);
    free(ls);
    return 0;
}

int lease_checkpoint(struct lessor *l, int64_t id, int64_t remaining_ttl,
                     uint64_t now_ms)
{
    struct lease *ls = find(l, id);

    if (ls == NULL) {
        return 0;
    }
    if (remaining_ttl < 0) {
        remaining_ttl = 0;
    }
    if (remaining_ttl > LEASE_MAX_TTL) {
        remaining_ttl = LEASE_MAX_TTL;
    }
    ls->remaining_ttl = remaining_ttl;
    if (l->primary) {
        schedule_checkpoint(l, ls, clamp_now(now_ms));
    }
    return 0;
}

bool lease_exists(const struct lessor *l, int64_t id)
{
    return id != 0 && find(l, id) != NULL;
}

bool lease_exists_cb(void *data, int64_t id)
{
    return lease_exists(data, id);
}

size_t lease_count(const struct lessor *l)
{
    return btree_len(&l->leases);
}

int lease_time_to_live(const struct lessor *l, int64_t id, uint64_t now_ms,
                       int64_t *granted_ttl, int64_t *remaining_ttl)
{
    const struct lease *ls = find(l, id);

    if (ls == NULL) {
        return IK_ELEASENOTFOUND;
    }
    if (granted_ttl != NULL) {
        *granted_ttl = ls->ttl;
    }
    if (remaining_ttl != NULL) {
        if (l->primary && ls->expiry != FOREVER) {
            /* C division truncates toward zero, as Go's int64(d.Seconds()) */
            *remaining_ttl = (ls->expiry - clamp_now(now_ms)) / 1000;
        } else {
            *remaining_ttl = effective_ttl(ls);
        }
    }
    return 0;
}

int lease_keys(struct lessor *l, int64_t id, struct lease_key **keys, size_t *n)
{
    struct lease *ls = find(l, id);
    struct btree_iter it;
    struct lease_item *item;
    struct lease_key *out;
    uint8_t *p;
    size_t total, i = 0;
    int rv;

    *keys = NULL;
    *n = 0;
    if (ls == NULL) {
        return IK_ELEASENOTFOUND;
    }
    rv = refresh_if_stale(l);
    if (rv != 0) {
        return rv;
    }
    if (ls->n_keys == 0) {
        return 0;
    }
    if (ls->n_keys > SIZE_MAX / sizeof *out) {
        return IK_ENOMEM;
    }
    total = ls->n_keys * sizeof *out;
    btree_iter_seek(&it, &l->items, ls->idkey, IDKEY_LEN);
    while ((item = btree_iter_next(&it)) != NULL &&
           memcmp(item->k, ls->idkey, IDKEY_LEN) == 0) {
        if (total > SIZE_MAX - item->len) {
            return IK_ENOMEM;
        }
        total += item->len - IDKEY_LEN;
    }
    out = lmalloc(total);
    if (out == NULL) {
        return IK_ENOMEM;
    }
    p = (uint8_t *)(out + ls->n_keys);
    btree_iter_seek(&it, &l->items, ls->idkey, IDKEY_LEN);
    while ((item = btree_iter_next(&it)) != NULL &&
           memcmp(item->k, ls->idkey, IDKEY_LEN) == 0 && i < ls->n_keys) {
        size_t klen = item->len - IDKEY_LEN;
        memcpy(p, item->k + IDKEY_LEN, klen);
        out[i].key = p;
        out[i].len = klen;
        p += klen;
        i++;
    }
    *keys = out;
    *n = i;
    return 0;
}

static int cmp_expiry(const void *a, const void *b)
{
    const struct lease *x = *(struct lease *const *)a;
    const struct lease *y = *(struct lease *const *)b;

    if (x->expiry != y->expiry) {
        return x->expiry < y->expiry ? -1 : 1;
    }
    return x->id < y->id ? -1 : (x->id > y->id ? 1 : 0);
}

/* Every lease into l->scratch, earliest expiry first; returns the count. */
static size_t sorted_leases(const struct lessor *l)
{
    struct btree_iter it;
    struct lease *ls;
    size_t n = 0;

    btree_iter_seek(&it, &l->leases, NULL, 0);
    while ((ls = btree_iter_next(&it)) != NULL) {
        l->scratch[n++] = ls;
    }
    if (n > 1) {
        qsort(l->scratch, n, sizeof *l->scratch, cmp_expiry);
    }
    return n;
}

int lease_leases(const struct lessor *l, int64_t **ids, size_t *n)
{
    size_t count = btree_len(&l->leases);
    int64_t *out;

    *ids = NULL;
    *n = 0;
    if (count == 0) {
        return 0;
    }
    out = lmalloc(count * sizeof *out);
    if (out == NULL) {
        return IK_ENOMEM;
    }
    count = sorted_leases(l);
    for (size_t i = 0; i < count; i++) {
        out[i] = l->scratch[i]->id;
    }
    *ids = out;
    *n = count;
    return 0;
}

/* ---- snapshot ------------------------------------------------------ */

int lease_encode(const struct lessor *l, uint8_t **buf, size_t *len)
{
    size_t count = btree_len(&l->leases);
    struct btree_iter it;
    struct lease *ls;
    uint8_t *out, *p;
    size_t total;

    *buf = NULL;
    *len = 0;
    if (count > (SIZE_MAX - SNAP_HEADER) / SNAP_RECORD) {
        return IK_ENOMEM;
    }
    total = SNAP_HEADER + count * SNAP_RECORD;
    out = lmalloc(total);
    if (out == NULL) {
        return IK_ENOMEM;
    }
    memcpy(out, SNAP_MAGIC, 8);
    put_u32(out + 8, LEASE_SNAPSHOT_VERSION);
    put_u64(out + 12, count);
    put_u32(out + 20, crc(out, 20));
    p = out + SNAP_HEADER;
    btree_iter_seek(&it, &l->leases, NULL, 0);
    while ((ls = btree_iter_next(&it)) != NULL) {
        put_u64(p, (uint64_t)ls->id);
        put_u64(p + 8, (uint64_t)ls->ttl);
        put_u64(p + 16, (uint64_t)ls->remaining_ttl);
        put_u32(p + 24, crc(p, 24));
        p += SNAP_RECORD;
    }
    *buf = out;
    *len = total;
    return 0;
}

int lease_decode(struct lessor *l, const uint8_t *buf, size_t len)
{
    struct btree tree;
    uint64_t count;
    const uint8_t *p;
    int64_t prev_id = 0;
    int rv;

    if (len < SNAP_HEADER || memcmp(buf, SNAP_MAGIC, 8) != 0 ||
        get_u32(buf + 8) != LEASE_SNAPSHOT_VERSION ||
        get_u32(buf + 20) != crc(buf, 20)) {
        return IK_ECORRUPT;
    }
    count = get_u64(buf + 12);
    if (count != (len - SNAP_HEADER) / SNAP_RECORD ||
        (len - SNAP_HEADER) % SNAP_RECORD != 0) {
        return IK_ECORRUPT;
    }
    rv = reserve(l, (size_t)count);
    if (rv != 0) {
        return rv;
    }
    btree_init(&tree, lease_key_of);
    p = buf + SNAP_HEADER;
    for (uint64_t i = 0; i < count; i++, p += SNAP_RECORD) {
        int64_t id = (int64_t)get_u64(p);
        int64_t ttl = (int64_t)get_u64(p + 8);
        int64_t rem = (int64_t)get_u64(p + 16);
        struct lease *ls;

        if (get_u32(p + 24) != crc(p, 24) || id == 0 ||
            (i > 0 && id <= prev_id) || ttl < 1 || ttl > LEASE_MAX_TTL ||
            rem < 0 || rem > LEASE_MAX_TTL) {
            rv = IK_ECORRUPT;
            goto fail;
        }
        prev_id = id;
        ls = lmalloc(sizeof *ls);
        if (ls == NULL) {
            rv = IK_ENOMEM;
            goto fail;
        }
        memset(ls, 0, sizeof *ls);
        lease_idkey(id, ls->idkey);
        ls->id = id;
        ls->ttl = ttl < l->cfg.min_ttl ? l->cfg.min_ttl : ttl;
        ls->remaining_ttl = rem;
        ls->expiry = FOREVER;
        ls->hidx[HEAP_EXP] = NOT_IN_HEAP;
        ls->hidx[HEAP_CP] = NOT_IN_HEAP;
        if (btree_insert(&tree, ls, NULL) != 0) {
            free(ls);
            rv = IK_ENOMEM;
            goto fail;
        }
    }
    lease_demote(l);
    btree_close(&l->items, free_ptr);
    btree_close(&l->leases, free_ptr);
    l->leases = tree;
    l->stale = true; /* attachments come from the store */
    return 0;

fail:
    btree_close(&tree, free_ptr);
    return rv;
}

/* ---- leader side --------------------------------------------------- */

void lease_promote(struct lessor *l, uint64_t now_ms)
{
    int64_t now = clamp_now(now_ms);
    int64_t extend = (int64_t)l->cfg.promote_extend_ms;
    struct btree_iter it;
    struct lease *ls;
    size_t n, target;
    int64_t base, next;
    size_t expires = 0;

    if (extend < 0) {
        extend = 0;
    }
    l->primary = true;
    btree_iter_seek(&it, &l->leases, NULL, 0);
    while ((ls = btree_iter_next(&it)) != NULL) {
        refresh(l, ls, now, extend, effective_ttl(ls));
        schedule_checkpoint(l, ls, now);
    }
    if (btree_len(&l->leases) < l->cfg.revoke_rate) {
        return; /* no pile-up possible */
    }
    /* Spread expiries so that at most 3/4 of the revoke rate expire per
     * second, leaving room for leases expiring normally. */
    n = sorted_leases(l);
    target = (3 * (size_t)l->cfg.revoke_rate) / 4;
    if (target == 0) {
        target = 1;
    }
    base = l->scratch[0]->expiry - now;
    next = base + 1000;
    for (size_t i = 0; i < n; i++) {
        int64_t remaining, delay;
        double rate_delay;

        ls = l->scratch[i];
        remaining = ls->expiry - now;
        if (remaining > next) {
            base = remaining;
            next = base + 1000;
            expires = 1;
            continue;
        }
        expires++;
        if (expires <= target) {
            continue;
        }
        /* A lease n seconds past the window start gets n seconds less. */
        rate_delay = 1000.0 * ((double)expires / (double)target) -
                     (double)(remaining - base);
        delay = (int64_t)rate_delay;
        next = base + delay;
        refresh(l, ls, now, add_ms(delay, extend), effective_ttl(ls));
        schedule_checkpoint(l, ls, now);
    }
}

void lease_demote(struct lessor *l)
{
    struct btree_iter it;
    struct lease *ls;

    btree_iter_seek(&it, &l->leases, NULL, 0);
    while ((ls = btree_iter_next(&it)) != NULL) {
        ls->expiry = FOREVER;
        ls->hidx[HEAP_EXP] = NOT_IN_HEAP;
        ls->hidx[HEAP_CP] = NOT_IN_HEAP;
    }
    l->exp.n = 0;
    l->cp.n = 0;
    l->primary = false;
    l->win_start = INT64_MIN / 2;
    l->win_used = 0;
}

bool lease_is_primary(const struct lessor *l)
{
    return l->primary;
}

int lease_renew(struct lessor *l, int64_t id, uint64_t now_ms, int64_t *ttl,
                bool *clear_checkpoint)
{
    int64_t now = clamp_now(now_ms);
    struct lease *ls;
    bool clear;

    if (!l->primary) {
        return IK_ENOTLEADER;
    }
    ls = find(l, id);
    if (ls == NULL || ls->expiry <= now) {
        return IK_ELEASENOTFOUND;
    }
    /* The checkpoint clear the caller proposes makes the full TTL count;
     * etcd waits for it before refreshing. */
    clear = l->cfg.checkpointing && ls->remaining_ttl > 0;
    refresh(l, ls, now, 0, clear ? ls->ttl : effective_ttl(ls));
    if (ttl != NULL) {
        *ttl = ls->ttl;
    }
    if (clear_checkpoint != NULL) {
        *clear_checkpoint = clear;
    }
    return 0;
}

size_t lease_expired(struct lessor *l, uint64_t now_ms, int64_t *ids,
                     size_t max)
{
    int64_t now = clamp_now(now_ms);
    size_t budget, n = 0;

    if (!l->primary) {
        return 0;
    }
    if (now - l->win_start >= LEASE_TICK_MS || now < l->win_start) {
        l->win_start = now;
        l->win_used = 0;
    }
    budget = l->cfg.revoke_rate / 2;
    if (budget == 0) {
        budget = 1;
    }
    budget = budget > l->win_used ? budget - l->win_used : 0;
    if (max > budget) {
        max = budget;
    }
    while (n < max && l->exp.n > 0) {
        struct lease *ls = l->exp.a[0];
        if (ls->at[HEAP_EXP] > now) {
            break;
        }
        /* Look again later in case the revoke does not get through. */
        heap_update(l, ls, HEAP_EXP,
                    add_ms(now, (int64_t)l->cfg.expired_retry_ms));
        if (ls->expiry <= now) {
            ids[n++] = ls->id;
        }
    }
    l->win_used += n;
    return n;
}

size_t lease_checkpoints(struct lessor *l, uint64_t now_ms,
                         struct lease_checkpoint *out, size_t max)
{
    int64_t now = clamp_now(now_ms);
    size_t n = 0;

    if (!l->primary || !l->cfg.checkpointing) {
        return 0;
    }
    while (n < max && l->cp.n > 0) {
        struct lease *ls = l->cp.a[0];
        int64_t remaining;

        if (ls->at[HEAP_CP] > now) {
            break;
        }
        heap_remove(l, ls, HEAP_CP);
        if (now >= ls->expiry) {
            continue;
        }
        remaining = (ls->expiry - now + 999) / 1000; /* round up */
        if (remaining >= ls->ttl) {
            continue;
        }
        out[n].id = ls->id;
        out[n].remaining_ttl = remaining;
        n++;
    }
    return n;
}

/* ---- ids ----------------------------------------------------------- */

#define IDGEN_TS_BITS 40
#define IDGEN_CNT_BITS 8
#define IDGEN_SUFFIX_BITS (IDGEN_TS_BITS + IDGEN_CNT_BITS)

static uint64_t low_bits(uint64_t x, unsigned n)
{
    return x & (UINT64_MAX >> (64 - n));
}

void lease_idgen_init(struct lease_idgen *g, uint64_t member_id,
                      uint64_t unix_ms)
{
    g->prefix = (uint64_t)(uint16_t)member_id << IDGEN_SUFFIX_BITS;
    g->suffix = low_bits(unix_ms, IDGEN_TS_BITS) << IDGEN_CNT_BITS;
}

int64_t lease_idgen_next(struct lease_idgen *g)
{
    int64_t id;

    do {
        g->suffix++;
        id = (int64_t)((g->prefix | low_bits(g->suffix, IDGEN_SUFFIX_BITS)) &
                       (uint64_t)INT64_MAX);
    } while (id == 0);
    return id;
}
