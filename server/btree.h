/*
 * btree: an ordered in-memory B-tree of items keyed by byte strings.
 *
 * Order is etcd's byte order: memcmp() on the common prefix, and a key that
 * is a prefix of another sorts first ("a" < "a\0" < "ab" < "b").
 *
 * The tree stores item pointers only (8 bytes per item); it never copies or
 * frees keys. Each item carries its own key, which the tree reads through
 * the key_of() callback given to btree_init(). The key of an item must not
 * change while the item is in the tree. Keys may contain any byte and may
 * be empty.
 *
 * It is a classic B-tree (items live in inner nodes too), so every item is
 * stored exactly once and deleting an item never leaves a stale separator
 * behind. Leaves carry no child array.
 *
 * Threading: none; a tree belongs to one thread.
 */
#ifndef IKADA_BTREE_H
#define IKADA_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the key of @item and stores its length in *len. */
typedef const uint8_t *(*btree_key_fn)(const void *item, size_t *len);

struct btree_node;

struct btree {
    /* Private. */
    struct btree_node *root;
    size_t count;
    unsigned height; /* 0 when empty, 1 when the root is a leaf */
    btree_key_fn key_of;
};

/* Deepest tree the iterator can walk. With at least 16 children per inner
 * node this is far beyond any tree that fits in memory. */
#define BTREE_MAX_HEIGHT 24

struct btree_iter {
    /* Private. */
    const struct btree *tree;
    unsigned depth;
    struct {
        const struct btree_node *node;
        unsigned pos;
    } stack[BTREE_MAX_HEIGHT];
};

/*
 * Test hook for fault injection: when non-NULL, it is called before every
 * allocation the tree makes, and a true return makes that allocation fail
 * (btree_insert() then returns IK_ENOMEM). NULL in production.
 */
extern bool (*btree_fail_alloc_hook)(void);

/* Make @t an empty tree. Allocates nothing, cannot fail. */
void btree_init(struct btree *t, btree_key_fn key_of);

/*
 * Free every node. If @free_item is not NULL it is called once for every
 * item still in the tree (in key order). @t is empty (and reusable) after.
 */
void btree_close(struct btree *t, void (*free_item)(void *item));

/* Number of items. */
size_t btree_len(const struct btree *t);

/* The item whose key equals @key, or NULL. */
void *btree_get(const struct btree *t, const void *key, size_t len);

/*
 * Insert @item. If an item with the same key is present, it is replaced:
 * the old one is stored in *@replaced (if @replaced is not NULL) and the
 * count does not change; otherwise *@replaced is set to NULL.
 * Returns 0, or IK_ENOMEM when a node could not be allocated: the tree is
 * then unchanged in content (still valid, @item not inserted) and
 * *@replaced is NULL.
 */
int btree_insert(struct btree *t, void *item, void **replaced);

/*
 * Remove the item whose key equals @key and return it (the caller owns it
 * again), or return NULL if there is none. Never allocates, cannot fail.
 */
void *btree_delete(struct btree *t, const void *key, size_t len);

/*
 * Position @it before the first item whose key is >= @key (@key NULL or
 * @len 0: before the first item). Then btree_iter_next() returns items in
 * ascending key order. The iterator is invalidated by any insert or delete
 * on the tree.
 */
void btree_iter_seek(struct btree_iter *it, const struct btree *t,
                     const void *key, size_t len);

/* The next item, or NULL when the iteration is over. */
void *btree_iter_next(struct btree_iter *it);

/*
 * Check the structure (for tests and debugging): keys strictly ascending in
 * order, every non-root node at least half full, all leaves at the same
 * depth equal to the recorded height, item count matching. Returns 0 or
 * IK_ECORRUPT.
 */
int btree_verify(const struct btree *t);

/* Compare two byte strings in etcd's order: <0, 0 or >0. */
int btree_keycmp(const void *a, size_t alen, const void *b, size_t blen);

#endif /* IKADA_BTREE_H */
