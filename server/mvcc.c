/*
 * mvcc: the multi-version store (see mvcc.h for the model).
 *
 * Layout, chosen for memory: the index is a B-tree of struct mvcc_key, one
 * per key, holding the key bytes inline. A key's retained history is an
 * array of versions ordered by (mod_revision, sub), oldest first; a key with
 * a single version (the common case) stores it inline instead of in an
 * array. Each version is one allocation: the mod revision and the
 * reference count (12 bytes), then the other fields as varints (version,
 * mod - create, lease, sub, value length: 6 bytes for a typical put without
 * lease), then the value bytes. A tombstone is a version with version == 0.
 *
 * Measured (glibc malloc, 1M keys of 8 bytes, 256-byte values, in key
 * order): 355 bytes of RSS per key, malloc overhead and the tree included:
 * 288-byte version chunks (value 256 + 18 header + malloc's 8, rounded to
 * 16), 48-byte key chunks, about 17 bytes of B-tree leaf per key (append
 * order leaves half-full nodes). With fixed 48-byte version headers it was
 * 387 bytes. (etcd keeps a Go B-tree key index plus a bbolt database
 * holding a marshalled KeyValue per revision.)
 *
 * Because every change of a txn appends exactly one version to one key,
 * the txn keeps a list of (key, index) and undoes changes by popping them
 * in reverse order; a key whose history becomes empty leaves the index.
 *
 * Views share everything with the store and copy nothing up front:
 *  - the index is a copy-on-write B-tree (btree.h): a view holds a clone,
 *    and a write to the store copies the shared nodes on its path;
 *  - a key object is counted by the tree nodes pointing at it (ref); once
 *    the path to it is private, ref > 1 means some view's node holds it,
 *    and the writer replaces it by a copy (key_writable) before changing
 *    its version list;
 *  - a version is counted by the key objects listing it; versions never
 *    change after they are appended, so copies of a key share them.
 * A writer therefore never changes or frees memory a view can reach, so
 * views can be walked by other threads without locks. The counts are
 * atomic (same protocol as btree.c) so that a walker thread can also drop
 * the view's references itself (mvcc_view_discard()): the owner thread
 * then does not pay for freeing what the store copied away meanwhile.
 * Without views every count is 1 and writes change everything in place,
 * as before.
 * Compaction rewrites version lists in place, so while views are alive it
 * only records the revision (walks filter by it, see keep_from()) and the
 * memory is reclaimed after the last view goes (reclaim()).
 */
#include "server/mvcc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

struct mvcc_ver {
    int64_t mod;
    _Atomic uint32_t ref; /* key objects listing this version */
    /* The rest, as unsigned LEB128 varints in this order: version (0:
     * tombstone), mod - create, lease (as uint64), sub, value length;
     * then the value bytes. See ver_new() and ver_read(). */
    uint8_t data[];
};

/* The decoded fields of a version. */
struct ver_fields {
    int64_t version, create, lease;
    uint32_t sub, vlen;
    const uint8_t *value;
};

struct mvcc_key {
    uint32_t nver;
    uint32_t cap; /* <= 1: the version is inline in v.one */
    union {
        struct mvcc_ver *one;
        struct mvcc_ver **many;
    } v;
    uint32_t klen;
    _Atomic uint32_t ref; /* index node slots holding this key */
    uint8_t key[];
};

struct mvcc_view {
    struct btree index; /* clone of the store's index at capture */
    int64_t rev;
    int64_t compact_rev;
    size_t n_revs;      /* walk count when !pending */
    bool pending;       /* a compaction was waiting at capture */
    bool discarded;     /* mvcc_view_discard() done: index closed */
    struct mvcc *owner; /* NULL once the store was closed */
    struct mvcc_view *prev, *next;
};

struct mvcc_change {
    struct mvcc_key *k;
    uint32_t idx; /* index of the version this change appended */
};

bool (*mvcc_fail_alloc_hook)(void) = NULL;

static void reclaim(struct mvcc *m);

static void *xmalloc(size_t size)
{
    if (mvcc_fail_alloc_hook != NULL && mvcc_fail_alloc_hook()) {
        return NULL;
    }
    return malloc(size);
}

static void *xrealloc(void *p, size_t size)
{
    if (mvcc_fail_alloc_hook != NULL && mvcc_fail_alloc_hook()) {
        return NULL;
    }
    return realloc(p, size);
}

static const uint8_t *key_of(const void *item, size_t *len)
{
    const struct mvcc_key *k = item;
    *len = k->klen;
    return k->key;
}

static struct mvcc_ver *kver(const struct mvcc_key *k, size_t i)
{
    return k->cap <= 1 ? k->v.one : k->v.many[i];
}

static struct mvcc_ver *klast(const struct mvcc_key *k)
{
    return kver(k, k->nver - 1);
}

/* Fixed header bytes of a version allocation (varints and value follow). */
#define VER_HDR offsetof(struct mvcc_ver, data)
/* Most bytes the five varints take (10 + 10 + 10 + 5 + 5). */
#define VER_VARINT_MAX 40
/* Longest value a version holds (its length is stored in 32 bits). */
#define VER_MAX_VALUE (UINT32_MAX - VER_HDR - VER_VARINT_MAX)

static uint8_t *varint_put(uint8_t *p, uint64_t x)
{
    while (x >= 0x80) {
        *p++ = (uint8_t)(x | 0x80);
        x >>= 7;
    }
    *p++ = (uint8_t)x;
    return p;
}

static const uint8_t *varint_get(const uint8_t *p, uint64_t *x)
{
    uint64_t r = 0;
    unsigned shift = 0;

    while (*p & 0x80) {
        r |= (uint64_t)(*p++ & 0x7f) << shift;
        shift += 7;
    }
    *x = r | (uint64_t)*p++ << shift;
    return p;
}

static void ver_read(const struct mvcc_ver *v, struct ver_fields *f)
{
    const uint8_t *p = v->data;
    uint64_t x;

    p = varint_get(p, &x);
    f->version = (int64_t)x;
    p = varint_get(p, &x);
    f->create = v->mod - (int64_t)x;
    p = varint_get(p, &x);
    f->lease = (int64_t)x;
    p = varint_get(p, &x);
    f->sub = (uint32_t)x;
    p = varint_get(p, &x);
    f->vlen = (uint32_t)x;
    f->value = p;
}

/* The version number alone (0: tombstone); the first varint. */
static int64_t ver_version(const struct mvcc_ver *v)
{
    uint64_t x;

    if (v->data[0] < 0x80) {
        return v->data[0];
    }
    varint_get(v->data, &x);
    return (int64_t)x;
}

static uint32_t ver_sub(const struct mvcc_ver *v)
{
    struct ver_fields f;

    ver_read(v, &f);
    return f.sub;
}

static size_t ver_size(const struct mvcc_ver *v)
{
    struct ver_fields f;

    ver_read(v, &f);
    return (size_t)(f.value - (const uint8_t *)v) + f.vlen;
}

static size_t key_size(const struct mvcc_key *k)
{
    return sizeof(*k) + k->klen +
           (k->cap > 1 ? k->cap * sizeof(struct mvcc_ver *) : 0);
}

static void fill_kv(const struct mvcc_key *k, const struct mvcc_ver *v,
                    struct mvcc_kv *kv)
{
    struct ver_fields f;

    ver_read(v, &f);
    kv->key = k->key;
    kv->key_len = k->klen;
    kv->value = f.value;
    kv->value_len = f.vlen;
    kv->create_revision = f.create;
    kv->mod_revision = v->mod;
    kv->version = f.version;
    kv->lease = f.lease;
    kv->sub = f.sub;
}

/* The version of @k visible at @rev (the latest with mod <= rev), or NULL
 * when there is none or it is a tombstone. */
static const struct mvcc_ver *visible_at(const struct mvcc_key *k, int64_t rev)
{
    size_t lo = 0, hi = k->nver;
    const struct mvcc_ver *v;

    /* Find the first version with mod > rev. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kver(k, mid)->mod <= rev) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    v = kver(k, lo - 1);
    return ver_version(v) == 0 ? NULL : v;
}

static void ver_ref(struct mvcc_ver *v)
{
    atomic_fetch_add_explicit(&v->ref, 1, memory_order_relaxed);
}

static void ver_unref(struct mvcc_ver *v)
{
    if (atomic_fetch_sub_explicit(&v->ref, 1, memory_order_acq_rel) == 1) {
        free(v);
    }
}

/* Free a key nobody holds any more, dropping its hold on its versions. */
static void key_free(struct mvcc_key *k)
{
    uint32_t i;

    for (i = 0; i < k->nver; i++) {
        ver_unref(kver(k, i));
    }
    if (k->cap > 1) {
        free(k->v.many);
    }
    free(k);
}

/* Index item hooks: a node copy holds the key once more; a freed node (or
 * the store) lets go of it. */
static void key_ref_item(void *item)
{
    struct mvcc_key *k = item;
    atomic_fetch_add_explicit(&k->ref, 1, memory_order_relaxed);
}

static void key_unref_item(void *item)
{
    struct mvcc_key *k = item;
    if (atomic_fetch_sub_explicit(&k->ref, 1, memory_order_acq_rel) == 1) {
        key_free(k);
    }
}

void mvcc_init(struct mvcc *m)
{
    memset(m, 0, sizeof(*m));
    btree_init(&m->index, key_of);
    btree_set_item_ref(&m->index, key_ref_item, key_unref_item);
    m->rev = 1;
    m->compact_rev = -1;
}

void mvcc_close(struct mvcc *m)
{
    struct mvcc_view *v;

    if (m->txn_open) {
        mvcc_txn_abort(m);
    }
    /* Views keep their own references: they outlive the store. */
    for (v = m->views; v != NULL; v = v->next) {
        v->owner = NULL;
    }
    btree_close(&m->index, key_unref_item);
    free(m->changes);
    free(m->retired);
    mvcc_init(m);
}

void mvcc_swap(struct mvcc *a, struct mvcc *b)
{
    struct mvcc tmp = *a;
    struct mvcc_view *v;

    *a = *b;
    *b = tmp;
    /* Hooks belong to the object, not to the data. */
    b->commit_hook = a->commit_hook;
    b->commit_arg = a->commit_arg;
    a->commit_hook = tmp.commit_hook;
    a->commit_arg = tmp.commit_arg;
    /* Views follow the data. */
    for (v = a->views; v != NULL; v = v->next) {
        v->owner = a;
    }
    for (v = b->views; v != NULL; v = v->next) {
        v->owner = b;
    }
}

void mvcc_set_commit_hook(struct mvcc *m,
                          void (*fn)(void *arg, const struct mvcc *m),
                          void *arg)
{
    m->commit_hook = fn;
    m->commit_arg = arg;
}

int64_t mvcc_rev(const struct mvcc *m)
{
    return m->rev;
}

int64_t mvcc_compact_rev(const struct mvcc *m)
{
    return m->compact_rev;
}

void mvcc_stats(const struct mvcc *m, struct mvcc_stats *out)
{
    out->keys = btree_len(&m->index) - m->n_dead;
    out->revisions = m->n_revs;
    out->bytes = m->bytes;
}

/* The revision a read sees "now": inside a txn that changed something, the
 * txn's revision. */
static int64_t view_rev(const struct mvcc *m)
{
    return m->rev + (m->txn_open && m->n_changes > 0 ? 1 : 0);
}

static bool is_from_key(const uint8_t *end, size_t end_len)
{
    return end_len == 1 && end[0] == 0;
}

/* Calls @fn(arg, k) for every key of the range that has an entry in the
 * index (live or not), in order; stops early when @fn returns non-zero. */
static int range_keys(const struct btree *index, const uint8_t *key,
                      size_t key_len, const uint8_t *end, size_t end_len,
                      int (*fn)(void *arg, struct mvcc_key *k), void *arg)
{
    struct btree_iter it;
    struct mvcc_key *k;
    bool open = is_from_key(end, end_len);

    if (end_len == 0) {
        k = btree_get(index, key, key_len);
        return k != NULL ? fn(arg, k) : 0;
    }
    if (!open && btree_keycmp(key, key_len, end, end_len) >= 0) {
        return 0;
    }
    btree_iter_seek(&it, index, key, key_len);
    while ((k = btree_iter_next(&it)) != NULL) {
        int rv;
        if (!open && btree_keycmp(k->key, k->klen, end, end_len) >= 0) {
            break;
        }
        rv = fn(arg, k);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

struct range_ctx {
    int64_t rev;
    size_t limit;
    bool count_only;
    struct mvcc_range_result *res;
    size_t cap;
};

static int range_visit(void *arg, struct mvcc_key *k)
{
    struct range_ctx *c = arg;
    const struct mvcc_ver *v = visible_at(k, c->rev);
    struct mvcc_range_result *res = c->res;

    if (v == NULL) {
        return 0;
    }
    res->count++;
    if (c->count_only || (c->limit > 0 && res->n >= c->limit)) {
        return 0;
    }
    if (res->n == c->cap) {
        size_t ncap = c->cap == 0 ? 8 : c->cap * 2;
        struct mvcc_kv *nkvs = xrealloc(res->kvs, ncap * sizeof(*nkvs));
        if (nkvs == NULL) {
            return IK_ENOMEM;
        }
        res->kvs = nkvs;
        c->cap = ncap;
    }
    fill_kv(k, v, &res->kvs[res->n++]);
    return 0;
}

int mvcc_range(const struct mvcc *m, const uint8_t *key, size_t key_len,
               const uint8_t *end, size_t end_len, int64_t rev, size_t limit,
               bool count_only, struct mvcc_range_result *res)
{
    int64_t cur = view_rev(m);
    struct range_ctx c;
    int rv;

    memset(res, 0, sizeof(*res));
    if (rev > cur) {
        return IK_EFUTUREREV;
    }
    if (rev <= 0) {
        rev = cur;
    }
    if (rev < m->compact_rev) {
        return IK_ECOMPACTED;
    }
    c.rev = rev;
    c.limit = limit;
    c.count_only = count_only;
    c.res = res;
    c.cap = 0;
    rv = range_keys(&m->index, key, key_len, end, end_len, range_visit, &c);
    if (rv != 0) {
        mvcc_range_result_free(res);
        return rv;
    }
    res->rev = cur;
    return 0;
}

void mvcc_range_result_free(struct mvcc_range_result *res)
{
    free(res->kvs);
    memset(res, 0, sizeof(*res));
}

int mvcc_get(const struct mvcc *m, const uint8_t *key, size_t key_len,
             struct mvcc_kv *kv)
{
    const struct mvcc_key *k = btree_get(&m->index, key, key_len);

    if (k == NULL || k->nver == 0 || ver_version(klast(k)) == 0) {
        return IK_ENOENT;
    }
    fill_kv(k, klast(k), kv);
    return 0;
}

int mvcc_txn_begin(struct mvcc *m)
{
    if (m->txn_open) {
        return IK_EINVAL;
    }
    m->txn_open = true;
    m->n_changes = 0;
    return 0;
}

bool mvcc_txn_is_open(const struct mvcc *m)
{
    return m->txn_open;
}

int64_t mvcc_txn_rev(const struct mvcc *m)
{
    return view_rev(m);
}

static int reserve_change(struct mvcc *m)
{
    struct mvcc_change *nc;
    size_t ncap;

    if (m->n_changes < m->cap_changes) {
        return 0;
    }
    if (m->n_changes >= UINT32_MAX) {
        return IK_EINVAL; /* sub revisions are 32-bit */
    }
    ncap = m->cap_changes == 0 ? 16 : m->cap_changes * 2;
    nc = xrealloc(m->changes, ncap * sizeof(*nc));
    if (nc == NULL) {
        return IK_ENOMEM;
    }
    m->changes = nc;
    m->cap_changes = ncap;
    return 0;
}

/* A new version (ref 1) of @f's fields and value (f->value, f->vlen) at
 * revision @mod; f->create <= @mod. NULL when out of memory. */
static struct mvcc_ver *ver_new(int64_t mod, const struct ver_fields *f)
{
    uint8_t hdr[VER_VARINT_MAX], *p = hdr;
    size_t n;
    struct mvcc_ver *v;

    p = varint_put(p, (uint64_t)f->version);
    p = varint_put(p, (uint64_t)(mod - f->create));
    p = varint_put(p, (uint64_t)f->lease);
    p = varint_put(p, f->sub);
    p = varint_put(p, f->vlen);
    n = (size_t)(p - hdr);
    v = xmalloc(VER_HDR + n + f->vlen);
    if (v == NULL) {
        return NULL;
    }
    v->mod = mod;
    atomic_init(&v->ref, 1);
    memcpy(v->data, hdr, n);
    if (f->vlen > 0) {
        memcpy(v->data + n, f->value, f->vlen);
    }
    return v;
}

static struct mvcc_key *key_new(const uint8_t *key, size_t klen)
{
    struct mvcc_key *k = xmalloc(sizeof(*k) + klen);

    if (k == NULL) {
        return NULL;
    }
    k->nver = 0;
    k->cap = 0;
    k->v.one = NULL;
    k->klen = (uint32_t)klen;
    atomic_init(&k->ref, 1);
    memcpy(k->key, key, klen);
    return k;
}

/* A private copy of @k (same key, same versions, each held once more),
 * with room for one more version. */
static struct mvcc_key *key_copy(const struct mvcc_key *k)
{
    struct mvcc_key *c;
    uint32_t i, ncap;

    if (k->nver >= UINT32_MAX / 2) {
        return NULL;
    }
    c = key_new(k->key, k->klen);
    if (c == NULL) {
        return NULL;
    }
    if (k->nver > 0) {
        ncap = k->nver + 1 > 4 ? k->nver + 1 : 4;
        c->v.many = xmalloc(ncap * sizeof(*c->v.many));
        if (c->v.many == NULL) {
            free(c);
            return NULL;
        }
        c->cap = ncap;
        for (i = 0; i < k->nver; i++) {
            c->v.many[i] = kver(k, i);
            ver_ref(c->v.many[i]);
        }
        c->nver = k->nver;
    }
    return c;
}

/*
 * Find @key for writing: *out is the key object, now private to the store
 * (its path in the index copied where a view shares it, the object itself
 * copied if a view holds it too), or NULL if the key is not in the index.
 * Returns 0 or IK_ENOMEM (content unchanged, *out NULL).
 */
static int key_writable(struct mvcc *m, const uint8_t *key, size_t key_len,
                        struct mvcc_key **out)
{
    void **slot;
    struct mvcc_key *k, *c;
    int rv = btree_get_mut(&m->index, key, key_len, &slot);

    *out = NULL;
    if (rv == IK_ENOENT) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    k = *slot;
    if (atomic_load_explicit(&k->ref, memory_order_acquire) > 1) {
        if (m->txn_open && m->n_retired == m->cap_retired) {
            size_t ncap = m->cap_retired == 0 ? 16 : m->cap_retired * 2;
            struct mvcc_key **r = xrealloc(m->retired, ncap * sizeof(*r));
            if (r == NULL) {
                return IK_ENOMEM;
            }
            m->retired = r;
            m->cap_retired = ncap;
        }
        c = key_copy(k);
        if (c == NULL) {
            return IK_ENOMEM;
        }
        m->bytes += key_size(c);
        m->bytes -= key_size(k);
        *slot = c;
        /* The store's reference to the old object: usually a view's node
         * still holds it too, but one discarded on another thread may not.
         * Inside a txn, kvs read before this write point into it: keep it
         * until the txn ends. */
        if (m->txn_open) {
            m->retired[m->n_retired++] = k;
        } else {
            key_unref_item(k);
        }
        k = c;
    }
    *out = k;
    return 0;
}

/* Let go of the key objects the txn replaced by copies. */
static void drop_retired(struct mvcc *m)
{
    while (m->n_retired > 0) {
        key_unref_item(m->retired[--m->n_retired]);
    }
    if (m->cap_retired > 1024) {
        free(m->retired);
        m->retired = NULL;
        m->cap_retired = 0;
    }
}

/* Make room for one more version in @k. */
static int key_reserve(struct mvcc *m, struct mvcc_key *k)
{
    struct mvcc_ver **arr;
    uint32_t ncap;

    if (k->nver == 0 && k->cap <= 1) {
        return 0; /* fits inline */
    }
    if (k->cap > 1 && k->nver < k->cap) {
        return 0;
    }
    if (k->nver >= UINT32_MAX / 2) {
        return IK_ENOMEM;
    }
    if (k->cap <= 1) {
        ncap = 4;
        arr = xmalloc(ncap * sizeof(*arr));
        if (arr == NULL) {
            return IK_ENOMEM;
        }
        arr[0] = k->v.one;
    } else {
        ncap = k->cap * 2;
        arr = xrealloc(k->v.many, ncap * sizeof(*arr));
        if (arr == NULL) {
            return IK_ENOMEM;
        }
    }
    m->bytes -= key_size(k);
    k->v.many = arr;
    k->cap = ncap;
    m->bytes += key_size(k);
    return 0;
}

/* Append @v to @k (room reserved with key_reserve()). */
static void key_append(struct mvcc *m, struct mvcc_key *k, struct mvcc_ver *v)
{
    if (k->cap <= 1) {
        k->v.one = v;
        k->cap = 1;
    } else {
        k->v.many[k->nver] = v;
    }
    k->nver++;
    m->n_revs++;
    m->bytes += ver_size(v);
}

/* Drop the last version of the private key @k; if @k becomes empty it
 * leaves the index and is freed. If a view shares the index nodes and
 * copying them fails, it stays in the index, empty (a dead key: reads and
 * walks skip it, reclaim() removes it). */
static void key_pop(struct mvcc *m, struct mvcc_key *k)
{
    struct mvcc_ver *v = klast(k);

    k->nver--;
    m->n_revs--;
    m->bytes -= ver_size(v);
    ver_unref(v);
    if (k->nver == 0) {
        void *item;
        if (btree_remove(&m->index, k->key, k->klen, &item) != 0) {
            m->n_dead++;
            return;
        }
        m->bytes -= key_size(k);
        key_unref_item(item);
    } else if (k->nver == 1 && k->cap > 1) {
        /* Back to the inline form, as before the array was needed. */
        struct mvcc_ver *only = k->v.many[0];
        m->bytes -= key_size(k);
        free(k->v.many);
        k->v.one = only;
        k->cap = 1;
        m->bytes += key_size(k);
    }
}

/* Undo the changes of the open txn down to @n of them. */
static void rollback_to(struct mvcc *m, size_t n)
{
    while (m->n_changes > n) {
        struct mvcc_change *c = &m->changes[--m->n_changes];
        key_pop(m, c->k);
    }
}

/* Append version @v (its revisions already set) to key @k, or to a new key
 * if @k is NULL. Records the change. On error frees @v and changes nothing. */
static int append_change(struct mvcc *m, struct mvcc_key *k, const uint8_t *key,
                         size_t key_len, struct mvcc_ver *v)
{
    int rv = reserve_change(m);

    if (rv != 0) {
        free(v);
        return rv;
    }
    if (k == NULL) {
        k = key_new(key, key_len);
        if (k == NULL) {
            free(v);
            return IK_ENOMEM;
        }
        rv = btree_insert(&m->index, k, NULL);
        if (rv != 0) {
            free(k);
            free(v);
            return rv;
        }
        m->bytes += key_size(k);
    } else {
        rv = key_reserve(m, k);
        if (rv != 0) {
            free(v);
            return rv;
        }
        if (k->nver == 0) {
            m->n_dead--; /* a dead key comes back to life */
        }
    }
    key_append(m, k, v);
    m->changes[m->n_changes].k = k;
    m->changes[m->n_changes].idx = k->nver - 1;
    m->n_changes++;
    return 0;
}

int mvcc_txn_put(struct mvcc *m, const uint8_t *key, size_t key_len,
                 const uint8_t *value, size_t value_len, int64_t lease)
{
    struct mvcc_key *k;
    struct mvcc_ver *v;
    const struct mvcc_ver *last = NULL;
    struct ver_fields f;
    int64_t rev = m->rev + 1;
    int rv;

    if (!m->txn_open || key_len == 0 || key_len > UINT32_MAX ||
        value_len > VER_MAX_VALUE) {
        return IK_EINVAL;
    }
    rv = key_writable(m, key, key_len, &k);
    if (rv != 0) {
        return rv;
    }
    if (k != NULL && k->nver > 0 && ver_version(klast(k)) != 0) {
        last = klast(k);
    }
    if (last != NULL) {
        ver_read(last, &f);
        f.version++;
    } else {
        f.create = rev;
        f.version = 1;
    }
    f.lease = lease;
    f.sub = (uint32_t)m->n_changes;
    f.value = value;
    f.vlen = (uint32_t)value_len;
    v = ver_new(rev, &f);
    if (v == NULL) {
        return IK_ENOMEM;
    }
    return append_change(m, k, key, key_len, v);
}

struct delete_ctx {
    struct mvcc *m;
    int64_t deleted;
};

static int delete_visit(void *arg, struct mvcc_key *k)
{
    struct delete_ctx *c = arg;
    struct mvcc_ver *v;
    struct ver_fields f;
    int rv;

    if (k->nver == 0 || ver_version(klast(k)) == 0) {
        return 0;
    }
    if (c->m->views != NULL) {
        /* Views may share the key and its path: write through a private
         * copy. */
        rv = key_writable(c->m, k->key, k->klen, &k);
        if (rv != 0) {
            return rv;
        }
    }
    memset(&f, 0, sizeof f);
    f.sub = (uint32_t)c->m->n_changes;
    v = ver_new(c->m->rev + 1, &f); /* a tombstone: version 0, create 0 */
    if (v == NULL) {
        return IK_ENOMEM;
    }
    rv = append_change(c->m, k, k->key, k->klen, v);
    if (rv != 0) {
        return rv;
    }
    c->deleted++;
    return 0;
}

struct key_list {
    struct mvcc_key **keys;
    size_t n, cap;
};

/* Lists the keys of a range that a delete would tombstone. */
static int list_visit(void *arg, struct mvcc_key *k)
{
    struct key_list *l = arg;

    if (k->nver == 0 || ver_version(klast(k)) == 0) {
        return 0;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap == 0 ? 16 : l->cap * 2;
        struct mvcc_key **p = xrealloc(l->keys, ncap * sizeof(*p));
        if (p == NULL) {
            return IK_ENOMEM;
        }
        l->keys = p;
        l->cap = ncap;
    }
    l->keys[l->n++] = k;
    return 0;
}

int mvcc_txn_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
                          const uint8_t *end, size_t end_len, int64_t *deleted)
{
    struct delete_ctx c = {m, 0};
    size_t before = m->n_changes;
    int rv;

    if (deleted != NULL) {
        *deleted = 0;
    }
    if (!m->txn_open) {
        return IK_EINVAL;
    }
    if (m->views == NULL) {
        /* Appending versions does not change the index structure, so the
         * walk stays valid while it writes tombstones. */
        rv =
            range_keys(&m->index, key, key_len, end, end_len, delete_visit, &c);
    } else {
        /* With views, writes copy nodes away from under a walk, and a view
         * discarded on another thread could then free them: list the keys
         * first. Each listed key stays alive: it is in the index until its
         * own write replaces it, and then retired until the txn ends. */
        struct key_list l = {NULL, 0, 0};
        size_t i;
        rv = range_keys(&m->index, key, key_len, end, end_len, list_visit, &l);
        for (i = 0; i < l.n && rv == 0; i++) {
            rv = delete_visit(&c, l.keys[i]);
        }
        free(l.keys);
    }
    if (rv != 0) {
        rollback_to(m, before);
        return rv;
    }
    if (deleted != NULL) {
        *deleted = c.deleted;
    }
    return 0;
}

size_t mvcc_txn_changes(const struct mvcc *m)
{
    return m->txn_open ? m->n_changes : 0;
}

bool mvcc_txn_change(const struct mvcc *m, size_t i, struct mvcc_kv *kv,
                     struct mvcc_kv *prev)
{
    const struct mvcc_change *c = &m->changes[i];
    const struct mvcc_ver *p;

    fill_kv(c->k, kver(c->k, c->idx), kv);
    if (c->idx == 0) {
        return false;
    }
    p = kver(c->k, c->idx - 1);
    if (ver_version(p) == 0) {
        return false;
    }
    if (prev != NULL) {
        fill_kv(c->k, p, prev);
    }
    return true;
}

int64_t mvcc_txn_end(struct mvcc *m)
{
    if (!m->txn_open) {
        return m->rev;
    }
    if (m->n_changes > 0) {
        if (m->commit_hook != NULL) {
            m->commit_hook(m->commit_arg, m);
        }
        m->rev++;
    }
    m->txn_open = false;
    m->n_changes = 0;
    /* Do not keep a huge change list around after a huge txn. */
    if (m->cap_changes > 1024) {
        free(m->changes);
        m->changes = NULL;
        m->cap_changes = 0;
    }
    drop_retired(m);
    reclaim(m);
    return m->rev;
}

void mvcc_txn_abort(struct mvcc *m)
{
    if (!m->txn_open) {
        return;
    }
    rollback_to(m, 0);
    m->txn_open = false;
    drop_retired(m);
    reclaim(m);
}

int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len,
             const uint8_t *value, size_t value_len, int64_t lease,
             int64_t *rev)
{
    int rv = mvcc_txn_begin(m);

    if (rv != 0) {
        return rv;
    }
    rv = mvcc_txn_put(m, key, key_len, value, value_len, lease);
    if (rv != 0) {
        mvcc_txn_abort(m);
        return rv;
    }
    if (rev != NULL) {
        *rev = mvcc_txn_end(m);
    } else {
        mvcc_txn_end(m);
    }
    return 0;
}

int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len,
                      const uint8_t *end, size_t end_len, int64_t *deleted,
                      int64_t *rev)
{
    int rv = mvcc_txn_begin(m);

    if (rv != 0) {
        return rv;
    }
    rv = mvcc_txn_delete_range(m, key, key_len, end, end_len, deleted);
    if (rv != 0) {
        mvcc_txn_abort(m);
        return rv;
    }
    if (rev != NULL) {
        *rev = mvcc_txn_end(m);
    } else {
        mvcc_txn_end(m);
    }
    return 0;
}

/* Index of the first version of @k that a compaction at @rev keeps: the
 * latest version <= @rev stays unless it is a tombstone, everything older
 * goes. 0 when nothing goes (also for @rev -1). */
static size_t keep_from(const struct mvcc_key *k, int64_t rev)
{
    size_t lo = 0, hi = k->nver;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kver(k, mid)->mod <= rev) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return 0; /* everything is newer than rev */
    }
    return ver_version(kver(k, lo - 1)) == 0 ? lo : lo - 1;
}

/* Compact one key's history at @rev, in place (no view may share it).
 * Returns true if the key has no version left (the caller removes it from
 * the index). */
static bool compact_key(struct mvcc *m, struct mvcc_key *k, int64_t rev)
{
    size_t drop = keep_from(k, rev), i;

    if (k->nver == 0) {
        m->n_dead--; /* a dead key: remove it */
        return true;
    }
    if (drop == 0) {
        return false;
    }
    for (i = 0; i < drop; i++) {
        struct mvcc_ver *v = kver(k, i);
        m->bytes -= ver_size(v);
        m->n_revs--;
        ver_unref(v);
    }
    if (drop == k->nver) {
        k->nver = 0;
        return true;
    }
    m->bytes -= key_size(k);
    memmove(&k->v.many[0], &k->v.many[drop],
            (k->nver - drop) * sizeof(struct mvcc_ver *));
    k->nver -= (uint32_t)drop;
    if (k->nver == 1) {
        struct mvcc_ver *only = k->v.many[0];
        free(k->v.many);
        k->v.one = only;
        k->cap = 1;
    } else if (k->nver * 4 <= k->cap && k->cap > 4) {
        /* Shrink; on failure keep the larger array. */
        uint32_t ncap = k->nver * 2 > 4 ? k->nver * 2 : 4;
        struct mvcc_ver **arr = realloc(k->v.many, ncap * sizeof(*arr));
        if (arr != NULL) {
            k->v.many = arr;
            k->cap = ncap;
        }
    }
    m->bytes += key_size(k);
    return false;
}

/* Apply the compaction at m->compact_rev to memory and drop dead keys.
 * Only without views (nothing shared) and outside a txn. */
static void compact_now(struct mvcc *m)
{
    struct btree_iter it;
    struct mvcc_key *k;

    btree_iter_seek(&it, &m->index, NULL, 0);
    k = btree_iter_next(&it);
    while (k != NULL) {
        struct mvcc_key *next = btree_iter_next(&it);
        if (compact_key(m, k, m->compact_rev)) {
            btree_delete(&m->index, k->key, k->klen);
            m->bytes -= key_size(k);
            key_unref_item(k);
            if (next != NULL) {
                /* The delete invalidated the iterator: find next again. */
                btree_iter_seek(&it, &m->index, next->key, next->klen);
                next = btree_iter_next(&it);
            }
        }
        k = next;
    }
    m->compact_pending = false;
}

/* Catch up on what views held back, once none is left. */
static void reclaim(struct mvcc *m)
{
    if (m->views == NULL && !m->txn_open &&
        (m->compact_pending || m->n_dead > 0)) {
        compact_now(m);
    }
}

int mvcc_compact(struct mvcc *m, int64_t rev)
{
    if (m->txn_open) {
        return IK_EINVAL;
    }
    if (rev <= m->compact_rev) {
        return IK_ECOMPACTED;
    }
    if (rev > m->rev) {
        return IK_EFUTUREREV;
    }
    m->compact_rev = rev;
    m->compact_pending = true;
    reclaim(m);
    return 0;
}

/* Walk an index as a compaction at @compact_rev would have left it. */
static int walk_index(const struct btree *index, int64_t compact_rev,
                      int (*fn)(void *arg, const struct mvcc_kv *kv), void *arg)
{
    struct btree_iter it;
    const struct mvcc_key *k;

    btree_iter_seek(&it, index, NULL, 0);
    while ((k = btree_iter_next(&it)) != NULL) {
        size_t i;
        for (i = keep_from(k, compact_rev); i < k->nver; i++) {
            struct mvcc_kv kv;
            int rv;
            fill_kv(k, kver(k, i), &kv);
            rv = fn(arg, &kv);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static size_t count_index(const struct btree *index, int64_t compact_rev)
{
    struct btree_iter it;
    const struct mvcc_key *k;
    size_t n = 0;

    btree_iter_seek(&it, index, NULL, 0);
    while ((k = btree_iter_next(&it)) != NULL) {
        n += k->nver - keep_from(k, compact_rev);
    }
    return n;
}

int mvcc_walk(const struct mvcc *m,
              int (*fn)(void *arg, const struct mvcc_kv *kv), void *arg)
{
    return walk_index(&m->index, m->compact_rev, fn, arg);
}

size_t mvcc_walk_count(const struct mvcc *m)
{
    return m->compact_pending ? count_index(&m->index, m->compact_rev)
                              : m->n_revs;
}

/* ---- Views ------------------------------------------------------------- */

int mvcc_view_take(struct mvcc *m, struct mvcc_view **out)
{
    struct mvcc_view *v;

    *out = NULL;
    if (m->txn_open) {
        return IK_EINVAL;
    }
    v = xmalloc(sizeof(*v));
    if (v == NULL) {
        return IK_ENOMEM;
    }
    btree_clone(&m->index, &v->index);
    v->rev = m->rev;
    v->compact_rev = m->compact_rev;
    v->n_revs = m->n_revs;
    v->pending = m->compact_pending;
    v->discarded = false;
    v->owner = m;
    v->prev = NULL;
    v->next = m->views;
    if (m->views != NULL) {
        m->views->prev = v;
    }
    m->views = v;
    *out = v;
    return 0;
}

void mvcc_view_release(struct mvcc_view *v)
{
    struct mvcc *m = v->owner;

    if (m != NULL) {
        if (v->prev != NULL) {
            v->prev->next = v->next;
        } else {
            m->views = v->next;
        }
        if (v->next != NULL) {
            v->next->prev = v->prev;
        }
    }
    /* First let go of the shared nodes, so a reclaim finds nothing shared
     * if this was the last view. */
    if (!v->discarded) {
        btree_close(&v->index, key_unref_item);
    }
    free(v);
    if (m != NULL) {
        reclaim(m);
    }
}

void mvcc_view_discard(struct mvcc_view *v)
{
    mvcc_view_discard_paced(v, NULL, NULL);
}

/* The pacing of the discard running on this thread (btree_close() passes
 * no context to its item callback). */
struct pace {
    void (*fn)(void *arg);
    void *arg;
    unsigned n;
};
static _Thread_local struct pace *pace_of_thread;

static void key_unref_paced(void *item)
{
    struct pace *p = pace_of_thread;

    key_unref_item(item);
    if (++p->n % MVCC_DISCARD_PACE == 0) {
        p->fn(p->arg);
    }
}

void mvcc_view_discard_paced(struct mvcc_view *v, void (*pace)(void *arg),
                             void *arg)
{
    struct pace p = {pace, arg, 0};

    if (v->discarded) {
        return;
    }
    if (pace == NULL) {
        btree_close(&v->index, key_unref_item);
    } else {
        pace_of_thread = &p;
        btree_close(&v->index, key_unref_paced);
        pace_of_thread = NULL;
    }
    v->discarded = true;
}

int64_t mvcc_view_rev(const struct mvcc_view *v)
{
    return v->rev;
}

int64_t mvcc_view_compact_rev(const struct mvcc_view *v)
{
    return v->compact_rev;
}

size_t mvcc_view_walk_count(const struct mvcc_view *v)
{
    return v->pending ? count_index(&v->index, v->compact_rev) : v->n_revs;
}

int mvcc_view_walk(const struct mvcc_view *v,
                   int (*fn)(void *arg, const struct mvcc_kv *kv), void *arg)
{
    return walk_index(&v->index, v->compact_rev, fn, arg);
}

int mvcc_load_kv(struct mvcc *m, const struct mvcc_kv *kv)
{
    struct mvcc_key *k;
    struct mvcc_ver *v;
    struct ver_fields f;
    int rv;

    if (m->txn_open || kv->key_len == 0 || kv->key_len > UINT32_MAX ||
        kv->value_len > VER_MAX_VALUE || kv->mod_revision < 1 ||
        kv->version < 0) {
        return IK_EINVAL;
    }
    if (kv->version == 0) {
        if (kv->value_len != 0 || kv->create_revision != 0 || kv->lease != 0) {
            return IK_EINVAL;
        }
    } else if (kv->create_revision < 1 ||
               kv->create_revision > kv->mod_revision) {
        return IK_EINVAL;
    }
    rv = key_writable(m, kv->key, kv->key_len, &k);
    if (rv != 0) {
        return rv;
    }
    if (k != NULL && k->nver > 0) {
        const struct mvcc_ver *last = klast(k);
        if (kv->mod_revision < last->mod ||
            (kv->mod_revision == last->mod && kv->sub <= ver_sub(last))) {
            return IK_EINVAL;
        }
    }
    f.version = kv->version;
    f.create = kv->create_revision;
    f.lease = kv->lease;
    f.sub = kv->sub;
    f.value = kv->value;
    f.vlen = (uint32_t)kv->value_len;
    v = ver_new(kv->mod_revision, &f);
    if (v == NULL) {
        return IK_ENOMEM;
    }
    if (k == NULL) {
        k = key_new(kv->key, kv->key_len);
        if (k == NULL) {
            free(v);
            return IK_ENOMEM;
        }
        rv = btree_insert(&m->index, k, NULL);
        if (rv != 0) {
            free(k);
            free(v);
            return rv;
        }
        m->bytes += key_size(k);
    } else {
        rv = key_reserve(m, k);
        if (rv != 0) {
            free(v);
            return rv;
        }
        if (k->nver == 0) {
            m->n_dead--;
        }
    }
    key_append(m, k, v);
    if (kv->mod_revision > m->load_max_rev) {
        m->load_max_rev = kv->mod_revision;
    }
    return 0;
}

int mvcc_load_finish(struct mvcc *m, int64_t rev, int64_t compact_rev)
{
    if (m->txn_open || rev < 1 || m->load_max_rev > rev || compact_rev < -1 ||
        compact_rev > rev) {
        return IK_EINVAL;
    }
    m->rev = rev;
    m->compact_rev = compact_rev;
    /* Loaded history older than the compaction (only crafted input has
     * any) goes now, so walks and counts agree with the memory. */
    if (compact_rev >= 0) {
        m->compact_pending = true;
        reclaim(m);
    }
    return 0;
}
