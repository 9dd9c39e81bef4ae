/*
 * btree: a classic B-tree of item pointers (see btree.h).
 *
 * Every node holds between MIN_ITEMS and MAX_ITEMS items (the root may hold
 * fewer), sorted by key; an inner node with n items has n + 1 children, and
 * every key in child[i] sorts between items[i - 1] and items[i].
 *
 * Insertion splits full nodes on the way down, so it never has to walk back
 * up; a split only moves items around, which is why a failed allocation
 * leaves a valid tree with unchanged content. Deletion makes sure, on the
 * way down, that the child it enters holds more than MIN_ITEMS items
 * (borrowing from a sibling or merging with one), so removing an item never
 * has to walk back up either.
 *
 * Sharing: a node's ref counts the pointers to it (a tree's root pointer or
 * a parent's child slot). A node with ref 1 whose ancestors all have ref 1
 * is private to the tree being written; writers walk down from their own
 * root and replace every shared node they are about to change by a private
 * copy (make_private), which takes new references on the children and,
 * through ref_item, on the items. Every structural step (split, rotation,
 * merge) first makes private all the nodes it changes and only then
 * changes them, so a failed copy leaves the content as it was. Without
 * clones every ref is 1 and nothing is ever copied: deletion then only
 * frees memory.
 *
 * Counts are C11 atomics so that a clone may be closed on another thread
 * while the owner writes (see btree.h): whoever drops the last reference
 * frees the node, which is why a writer dropping its reference to a node
 * it just copied may end up freeing it. Decrements are acq_rel: the
 * dropping thread's reads of a node happen before whatever the next
 * (sole) owner or the freeing thread does with it; the writer's "is it
 * private?" load is acquire for the same reason. Without clones the only
 * cost is that an acquire load is a plain load on common CPUs.
 */
#include "server/btree.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

/* Minimum degree: non-root nodes have MIN_DEGREE - 1 .. 2 * MIN_DEGREE - 1
 * items. 16 gives 256-byte leaves and 512-byte inner nodes on 64-bit. */
#define MIN_DEGREE 16
#define MAX_ITEMS (2 * MIN_DEGREE - 1)
#define MIN_ITEMS (MIN_DEGREE - 1)

struct btree_node {
    uint16_t n; /* items in use */
    bool leaf;
    _Atomic uint32_t ref; /* pointers to it (root pointers, child slots) */
    void *items[MAX_ITEMS];
    struct btree_node *child[]; /* MAX_ITEMS + 1 entries, inner nodes only */
};

bool (*btree_fail_alloc_hook)(void) = NULL;

static struct btree_node *node_new(bool leaf)
{
    size_t size = sizeof(struct btree_node);
    struct btree_node *x;

    if (btree_fail_alloc_hook != NULL && btree_fail_alloc_hook()) {
        return NULL;
    }
    if (!leaf) {
        size += (MAX_ITEMS + 1) * sizeof(struct btree_node *);
    }
    x = malloc(size);
    if (x == NULL) {
        return NULL;
    }
    x->n = 0;
    x->leaf = leaf;
    atomic_init(&x->ref, 1);
    return x;
}

static void node_ref(struct btree_node *x)
{
    atomic_fetch_add_explicit(&x->ref, 1, memory_order_relaxed);
}

static bool node_shared(const struct btree_node *x)
{
    return atomic_load_explicit(&x->ref, memory_order_acquire) > 1;
}

/* Drop one reference to @x; free it (and what only it held) at zero. */
static void node_unref(struct btree_node *x, void (*free_item)(void *item))
{
    unsigned i;

    if (atomic_fetch_sub_explicit(&x->ref, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (i = 0; i <= x->n; i++) {
        if (!x->leaf) {
            node_unref(x->child[i], free_item);
        }
        if (i < x->n && free_item != NULL) {
            free_item(x->items[i]);
        }
    }
    free(x);
}

/* Replace the shared node *@link by a private copy. The copy holds new
 * references on x's children and items; x loses the reference @link held
 * (and is freed if that was the last one, a clone having let go of it
 * meanwhile). */
static int make_private(const struct btree *t, struct btree_node **link)
{
    struct btree_node *x = *link, *c;
    unsigned i;

    if (!node_shared(x)) {
        return 0;
    }
    c = node_new(x->leaf);
    if (c == NULL) {
        return IK_ENOMEM;
    }
    c->n = x->n;
    memcpy(c->items, x->items, x->n * sizeof(void *));
    if (!x->leaf) {
        memcpy(c->child, x->child, (x->n + 1u) * sizeof(struct btree_node *));
        for (i = 0; i <= x->n; i++) {
            node_ref(c->child[i]);
        }
    }
    if (t->ref_item != NULL) {
        for (i = 0; i < x->n; i++) {
            t->ref_item(x->items[i]);
        }
    }
    *link = c;
    node_unref(x, t->unref_item);
    return 0;
}

int btree_keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int item_cmp(const struct btree *t, const void *key, size_t len,
                    const void *item)
{
    size_t ilen;
    const uint8_t *ikey = t->key_of(item, &ilen);
    return btree_keycmp(key, len, ikey, ilen);
}

/* Index of the first item of @x whose key is >= @key; *found tells whether
 * that item's key equals @key. */
static unsigned node_search(const struct btree *t, const struct btree_node *x,
                            const void *key, size_t len, bool *found)
{
    unsigned lo = 0, hi = x->n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int c = item_cmp(t, key, len, x->items[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *found = false;
    return lo;
}

void btree_init(struct btree *t, btree_key_fn key_of)
{
    t->root = NULL;
    t->count = 0;
    t->height = 0;
    t->key_of = key_of;
    t->ref_item = NULL;
    t->unref_item = NULL;
}

void btree_set_item_ref(struct btree *t, void (*ref_item)(void *item),
                        void (*unref_item)(void *item))
{
    t->ref_item = ref_item;
    t->unref_item = unref_item;
}

void btree_clone(struct btree *t, struct btree *out)
{
    *out = *t;
    if (t->root != NULL) {
        node_ref(t->root);
    }
}

void btree_close(struct btree *t, void (*free_item)(void *item))
{
    if (t->root != NULL) {
        node_unref(t->root, free_item);
    }
    t->root = NULL;
    t->count = 0;
    t->height = 0;
}

size_t btree_len(const struct btree *t)
{
    return t->count;
}

void *btree_get(const struct btree *t, const void *key, size_t len)
{
    const struct btree_node *x = t->root;

    while (x != NULL) {
        bool found;
        unsigned i = node_search(t, x, key, len, &found);
        if (found) {
            return x->items[i];
        }
        x = x->leaf ? NULL : x->child[i];
    }
    return NULL;
}

int btree_get_mut(struct btree *t, const void *key, size_t len, void ***slot)
{
    struct btree_node *x = t->root, **link;
    bool shared = false, found = false;
    unsigned i = 0;

    *slot = NULL;
    /* Look first: the common case (nothing shared) needs no second walk,
     * and a missing key must not cost copies. */
    while (x != NULL) {
        shared = shared || node_shared(x);
        i = node_search(t, x, key, len, &found);
        if (found) {
            break;
        }
        x = x->leaf ? NULL : x->child[i];
    }
    if (x == NULL) {
        return IK_ENOENT;
    }
    if (!shared) {
        *slot = &x->items[i];
        return 0;
    }
    link = &t->root;
    for (;;) {
        if (make_private(t, link) != 0) {
            return IK_ENOMEM;
        }
        x = *link;
        i = node_search(t, x, key, len, &found);
        if (found) {
            *slot = &x->items[i];
            return 0;
        }
        link = &x->child[i];
    }
}

/* Split the full child @i of @x (which is private and not full) around its
 * median, which moves up into @x at position @i. */
static int split_child(const struct btree *t, struct btree_node *x, unsigned i)
{
    struct btree_node *y, *z = node_new(x->child[i]->leaf);

    if (z == NULL) {
        return IK_ENOMEM;
    }
    if (make_private(t, &x->child[i]) != 0) {
        free(z);
        return IK_ENOMEM;
    }
    y = x->child[i];
    /* z takes y's upper MIN_ITEMS items (and children). */
    z->n = MIN_ITEMS;
    memcpy(z->items, &y->items[MIN_DEGREE], MIN_ITEMS * sizeof(void *));
    if (!y->leaf) {
        memcpy(z->child, &y->child[MIN_DEGREE],
               MIN_DEGREE * sizeof(struct btree_node *));
    }
    y->n = MIN_ITEMS;
    /* Make room in x for the median and z. */
    memmove(&x->child[i + 2], &x->child[i + 1],
            (x->n - i) * sizeof(struct btree_node *));
    memmove(&x->items[i + 1], &x->items[i], (x->n - i) * sizeof(void *));
    x->child[i + 1] = z;
    x->items[i] = y->items[MIN_ITEMS];
    x->n++;
    return 0;
}

int btree_insert(struct btree *t, void *item, void **replaced)
{
    struct btree_node *x;
    size_t len;
    const uint8_t *key = t->key_of(item, &len);

    if (replaced != NULL) {
        *replaced = NULL;
    }
    if (t->root == NULL) {
        x = node_new(true);
        if (x == NULL) {
            return IK_ENOMEM;
        }
        x->items[0] = item;
        x->n = 1;
        t->root = x;
        t->height = 1;
        t->count = 1;
        return 0;
    }
    if (t->root->n == MAX_ITEMS) {
        struct btree_node *r = node_new(false);
        if (r == NULL) {
            return IK_ENOMEM;
        }
        /* The tree's reference to the old root becomes r's child slot. */
        r->child[0] = t->root;
        if (split_child(t, r, 0) != 0) {
            free(r);
            return IK_ENOMEM;
        }
        t->root = r;
        t->height++;
    }
    if (make_private(t, &t->root) != 0) {
        return IK_ENOMEM;
    }
    x = t->root;
    for (;;) {
        bool found;
        unsigned i = node_search(t, x, key, len, &found);
        if (found) {
            if (replaced != NULL) {
                *replaced = x->items[i];
            }
            x->items[i] = item;
            return 0;
        }
        if (x->leaf) {
            memmove(&x->items[i + 1], &x->items[i],
                    (x->n - i) * sizeof(void *));
            x->items[i] = item;
            x->n++;
            t->count++;
            return 0;
        }
        if (x->child[i]->n == MAX_ITEMS) {
            int c;
            if (split_child(t, x, i) != 0) {
                return IK_ENOMEM;
            }
            c = item_cmp(t, key, len, x->items[i]);
            if (c == 0) {
                if (replaced != NULL) {
                    *replaced = x->items[i];
                }
                x->items[i] = item;
                return 0;
            }
            if (c > 0) {
                i++;
            }
        }
        if (make_private(t, &x->child[i]) != 0) {
            return IK_ENOMEM;
        }
        x = x->child[i];
    }
}

/* Move the last item of child[i - 1] up into x->items[i - 1], and that
 * item down to the front of child[i]. Both children must be private. */
static void rotate_right(struct btree_node *x, unsigned i)
{
    struct btree_node *c = x->child[i];
    struct btree_node *l = x->child[i - 1];

    memmove(&c->items[1], &c->items[0], c->n * sizeof(void *));
    c->items[0] = x->items[i - 1];
    if (!c->leaf) {
        memmove(&c->child[1], &c->child[0],
                (c->n + 1) * sizeof(struct btree_node *));
        c->child[0] = l->child[l->n];
    }
    c->n++;
    x->items[i - 1] = l->items[l->n - 1];
    l->n--;
}

/* Mirror of rotate_right: child[i + 1] gives its first item. */
static void rotate_left(struct btree_node *x, unsigned i)
{
    struct btree_node *c = x->child[i];
    struct btree_node *r = x->child[i + 1];

    c->items[c->n] = x->items[i];
    if (!c->leaf) {
        c->child[c->n + 1] = r->child[0];
        memmove(&r->child[0], &r->child[1], r->n * sizeof(struct btree_node *));
    }
    c->n++;
    x->items[i] = r->items[0];
    memmove(&r->items[0], &r->items[1], (r->n - 1) * sizeof(void *));
    r->n--;
}

/* Merge child[i + 1] and x->items[i] into child[i] (both children have
 * MIN_ITEMS items; child[i] must be private) and drop child[i + 1]. If
 * that one is shared, child[i] takes new references on what it copied
 * from it instead of taking them over. */
static void merge_children(const struct btree *t, struct btree_node *x,
                           unsigned i)
{
    struct btree_node *y = x->child[i];
    struct btree_node *z = x->child[i + 1];
    unsigned j;

    y->items[y->n] = x->items[i];
    memcpy(&y->items[y->n + 1], z->items, z->n * sizeof(void *));
    if (!y->leaf) {
        memcpy(&y->child[y->n + 1], z->child,
               (z->n + 1) * sizeof(struct btree_node *));
    }
    y->n += z->n + 1;
    memmove(&x->items[i], &x->items[i + 1], (x->n - i - 1) * sizeof(void *));
    memmove(&x->child[i + 1], &x->child[i + 2],
            (x->n - i - 1) * sizeof(struct btree_node *));
    x->n--;
    if (!node_shared(z)) {
        free(z);
        return;
    }
    for (j = 0; j <= z->n; j++) {
        if (!z->leaf) {
            node_ref(z->child[j]);
        }
        if (j < z->n && t->ref_item != NULL) {
            t->ref_item(z->items[j]);
        }
    }
    node_unref(z, t->unref_item);
}

/* Make sure child[*i] of the private node @x has more than MIN_ITEMS
 * items; *i becomes the index of the child that now covers the keys
 * child[*i] covered. Returns 0 or IK_ENOMEM (nothing changed but copies). */
static int fill_child(const struct btree *t, struct btree_node *x, unsigned *pi)
{
    unsigned i = *pi;

    if (i > 0 && x->child[i - 1]->n > MIN_ITEMS) {
        if (make_private(t, &x->child[i]) != 0 ||
            make_private(t, &x->child[i - 1]) != 0) {
            return IK_ENOMEM;
        }
        rotate_right(x, i);
    } else if (i < x->n && x->child[i + 1]->n > MIN_ITEMS) {
        if (make_private(t, &x->child[i]) != 0 ||
            make_private(t, &x->child[i + 1]) != 0) {
            return IK_ENOMEM;
        }
        rotate_left(x, i);
    } else if (i < x->n) {
        if (make_private(t, &x->child[i]) != 0) {
            return IK_ENOMEM;
        }
        merge_children(t, x, i);
    } else {
        if (make_private(t, &x->child[i - 1]) != 0) {
            return IK_ENOMEM;
        }
        merge_children(t, x, i - 1);
        *pi = i - 1;
    }
    return 0;
}

/* Remove the item with @key from the subtree of the private node @x, which
 * has more than MIN_ITEMS items unless it is the root. Returns the item,
 * or NULL with *rv 0 (not found) or IK_ENOMEM. */
static void *node_delete(const struct btree *t, struct btree_node *x,
                         const void *key, size_t len, int *rv)
{
    *rv = 0;
    for (;;) {
        bool found;
        unsigned i = node_search(t, x, key, len, &found);

        if (x->leaf) {
            void *item;
            if (!found) {
                return NULL;
            }
            item = x->items[i];
            memmove(&x->items[i], &x->items[i + 1],
                    (x->n - i - 1) * sizeof(void *));
            x->n--;
            return item;
        }
        if (found) {
            void *item = x->items[i], *moved;
            struct btree_node *y = x->child[i];
            struct btree_node *z = x->child[i + 1];
            const uint8_t *k2;
            size_t l2;

            if (y->n > MIN_ITEMS || z->n > MIN_ITEMS) {
                /* Replace by the predecessor (or successor), removed from
                 * its subtree first so a failure changes nothing here. */
                unsigned side = y->n > MIN_ITEMS ? i : i + 1;
                const struct btree_node *p = x->child[side];
                while (!p->leaf) {
                    p = p->child[side == i ? p->n : 0];
                }
                k2 = t->key_of(side == i ? p->items[p->n - 1] : p->items[0],
                               &l2);
                if (make_private(t, &x->child[side]) != 0) {
                    *rv = IK_ENOMEM;
                    return NULL;
                }
                moved = node_delete(t, x->child[side], k2, l2, rv);
                if (moved == NULL) {
                    return NULL;
                }
                x->items[i] = moved;
                return item;
            }
            /* Both minimal: merge them around the item, delete below. */
            if (make_private(t, &x->child[i]) != 0) {
                *rv = IK_ENOMEM;
                return NULL;
            }
            merge_children(t, x, i);
            x = x->child[i];
            continue;
        }
        if (x->child[i]->n <= MIN_ITEMS && fill_child(t, x, &i) != 0) {
            *rv = IK_ENOMEM;
            return NULL;
        }
        if (make_private(t, &x->child[i]) != 0) {
            *rv = IK_ENOMEM;
            return NULL;
        }
        x = x->child[i];
    }
}

int btree_remove(struct btree *t, const void *key, size_t len, void **out)
{
    void *item;
    struct btree_node *r;
    int rv;

    *out = NULL;
    if (t->root == NULL) {
        return IK_ENOENT;
    }
    if (make_private(t, &t->root) != 0) {
        return IK_ENOMEM;
    }
    r = t->root;
    item = node_delete(t, r, key, len, &rv);
    if (item != NULL) {
        t->count--;
    }
    /* Merges may have emptied the root even when nothing was removed. */
    if (r->n == 0) {
        if (r->leaf) {
            t->root = NULL;
        } else {
            t->root = r->child[0];
        }
        t->height--;
        free(r);
    }
    if (rv != 0) {
        return rv;
    }
    if (item == NULL) {
        return IK_ENOENT;
    }
    *out = item;
    return 0;
}

void *btree_delete(struct btree *t, const void *key, size_t len)
{
    void *item;

    return btree_remove(t, key, len, &item) == 0 ? item : NULL;
}

void btree_iter_seek(struct btree_iter *it, const struct btree *t,
                     const void *key, size_t len)
{
    const struct btree_node *x = t->root;

    it->tree = t;
    it->depth = 0;
    while (x != NULL && it->depth < BTREE_MAX_HEIGHT) {
        bool found = false;
        unsigned i = 0;
        if (key != NULL && len > 0) {
            i = node_search(t, x, key, len, &found);
        }
        it->stack[it->depth].node = x;
        it->stack[it->depth].pos = i;
        it->depth++;
        if (found || x->leaf) {
            break;
        }
        x = x->child[i];
    }
}

void *btree_iter_next(struct btree_iter *it)
{
    while (it->depth > 0) {
        unsigned top = it->depth - 1;
        const struct btree_node *x = it->stack[top].node;
        unsigned pos = it->stack[top].pos;
        void *item;

        if (pos >= x->n) {
            it->depth--;
            continue;
        }
        item = x->items[pos];
        it->stack[top].pos = pos + 1;
        if (!x->leaf) {
            /* Next come the items of child[pos + 1], leftmost first. */
            const struct btree_node *c = x->child[pos + 1];
            while (c != NULL && it->depth < BTREE_MAX_HEIGHT) {
                it->stack[it->depth].node = c;
                it->stack[it->depth].pos = 0;
                it->depth++;
                c = c->leaf ? NULL : c->child[0];
            }
        }
        return item;
    }
    return NULL;
}

struct verify_ctx {
    const struct btree *t;
    const void *prev; /* last item seen in key order */
    size_t count;
};

static int verify_node(struct verify_ctx *c, const struct btree_node *x,
                       unsigned depth, bool root)
{
    unsigned i;
    int rv;

    if (x->n > MAX_ITEMS || (!root && x->n < MIN_ITEMS) || x->n == 0 ||
        atomic_load_explicit(&x->ref, memory_order_relaxed) == 0) {
        return IK_ECORRUPT;
    }
    if (x->leaf != (depth == c->t->height)) {
        return IK_ECORRUPT;
    }
    for (i = 0; i <= x->n; i++) {
        if (!x->leaf) {
            rv = verify_node(c, x->child[i], depth + 1, false);
            if (rv != 0) {
                return rv;
            }
        }
        if (i < x->n) {
            if (c->prev != NULL) {
                size_t al, bl;
                const uint8_t *a = c->t->key_of(c->prev, &al);
                const uint8_t *b = c->t->key_of(x->items[i], &bl);
                if (btree_keycmp(a, al, b, bl) >= 0) {
                    return IK_ECORRUPT;
                }
            }
            c->prev = x->items[i];
            c->count++;
        }
    }
    return 0;
}

int btree_verify(const struct btree *t)
{
    struct verify_ctx c = {t, NULL, 0};
    int rv;

    if (t->root == NULL) {
        return t->count == 0 && t->height == 0 ? 0 : IK_ECORRUPT;
    }
    if (t->height == 0 || t->height > BTREE_MAX_HEIGHT) {
        return IK_ECORRUPT;
    }
    rv = verify_node(&c, t->root, 1, true);
    if (rv != 0) {
        return rv;
    }
    return c.count == t->count ? 0 : IK_ECORRUPT;
}
