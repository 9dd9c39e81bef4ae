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
 * has to walk back up either. Deletion only frees memory.
 */
#include "server/btree.h"

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
    return x;
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
}

static void node_free(struct btree_node *x, void (*free_item)(void *item))
{
    unsigned i;

    for (i = 0; i <= x->n; i++) {
        if (!x->leaf) {
            node_free(x->child[i], free_item);
        }
        if (i < x->n && free_item != NULL) {
            free_item(x->items[i]);
        }
    }
    free(x);
}

void btree_close(struct btree *t, void (*free_item)(void *item))
{
    if (t->root != NULL) {
        node_free(t->root, free_item);
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

/* Split the full child @i of @x (which is not full) around its median,
 * which moves up into @x at position @i. */
static int split_child(struct btree_node *x, unsigned i)
{
    struct btree_node *y = x->child[i];
    struct btree_node *z = node_new(y->leaf);

    if (z == NULL) {
        return IK_ENOMEM;
    }
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
        r->child[0] = t->root;
        if (split_child(r, 0) != 0) {
            free(r);
            return IK_ENOMEM;
        }
        t->root = r;
        t->height++;
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
            if (split_child(x, i) != 0) {
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
        x = x->child[i];
    }
}

/* Move the last item of child[i - 1] up into x->items[i - 1], and that
 * item down to the front of child[i]. */
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
 * MIN_ITEMS items) and free child[i + 1]. */
static void merge_children(struct btree_node *x, unsigned i)
{
    struct btree_node *y = x->child[i];
    struct btree_node *z = x->child[i + 1];

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
    free(z);
}

/* Make sure child[i] of @x has more than MIN_ITEMS items; returns the index
 * of the child that now covers the keys child[i] covered. */
static unsigned fill_child(struct btree_node *x, unsigned i)
{
    if (i > 0 && x->child[i - 1]->n > MIN_ITEMS) {
        rotate_right(x, i);
    } else if (i < x->n && x->child[i + 1]->n > MIN_ITEMS) {
        rotate_left(x, i);
    } else if (i < x->n) {
        merge_children(x, i);
    } else {
        merge_children(x, i - 1);
        i--;
    }
    return i;
}

/* Remove the item with @key from the subtree of @x, which has more than
 * MIN_ITEMS items unless it is the root. */
static void *node_delete(struct btree *t, struct btree_node *x, const void *key,
                         size_t len)
{
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
            void *item = x->items[i];
            struct btree_node *y = x->child[i];
            struct btree_node *z = x->child[i + 1];
            const uint8_t *k2;
            size_t l2;

            if (y->n > MIN_ITEMS) {
                /* Replace by the predecessor, then remove that from y. */
                struct btree_node *p = y;
                while (!p->leaf) {
                    p = p->child[p->n];
                }
                x->items[i] = p->items[p->n - 1];
                k2 = t->key_of(x->items[i], &l2);
                node_delete(t, y, k2, l2);
                return item;
            }
            if (z->n > MIN_ITEMS) {
                struct btree_node *s = z;
                while (!s->leaf) {
                    s = s->child[0];
                }
                x->items[i] = s->items[0];
                k2 = t->key_of(x->items[i], &l2);
                node_delete(t, z, k2, l2);
                return item;
            }
            /* Both minimal: merge them around the item, delete below. */
            merge_children(x, i);
            x = y;
            continue;
        }
        if (x->child[i]->n <= MIN_ITEMS) {
            i = fill_child(x, i);
        }
        x = x->child[i];
    }
}

void *btree_delete(struct btree *t, const void *key, size_t len)
{
    void *item;
    struct btree_node *r = t->root;

    if (r == NULL) {
        return NULL;
    }
    item = node_delete(t, r, key, len);
    if (item != NULL) {
        t->count--;
    }
    if (r->n == 0) {
        if (r->leaf) {
            t->root = NULL;
        } else {
            t->root = r->child[0];
        }
        t->height--;
        free(r);
    }
    return item;
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

    if (x->n > MAX_ITEMS || (!root && x->n < MIN_ITEMS) || x->n == 0) {
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
