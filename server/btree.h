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
 * Clones: btree_clone() makes a second tree sharing every node with the
 * first in O(1). Nodes carry reference counts; a write to either tree
 * copies each shared node it is about to change (path copying), so a
 * write never changes what the other tree holds. A clone nobody writes is
 * therefore an immutable view of the tree as it was when cloned. Items are
 * shared too: when a node copy duplicates item pointers, the ref_item hook
 * (btree_set_item_ref()) is called once per duplicated pointer, and when a
 * node is freed its items are handed to unref_item (or, in btree_close(),
 * to its free_item callback); an owner that counts references on its items
 * can so tell when an item is still reachable from some tree.
 *
 * Threading: one thread (the owner) writes and clones the trees that share
 * nodes. Other threads may, on a clone no thread writes: read it (btree_get,
 * iterators, btree_verify, btree_len) while the owner writes the other
 * trees, and then close it with btree_close(). A writer never modifies a
 * node reachable from another tree; node reference counts are atomic, and
 * whichever thread drops the last reference to a node frees it. So the
 * item hooks must be thread-safe too (atomic counts) if clones are closed
 * off the owner thread.
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
    void (*ref_item)(void *item);   /* see btree_set_item_ref() */
    void (*unref_item)(void *item); /* see btree_set_item_ref() */
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

/* Make @t an empty tree (no item hooks). Allocates nothing, cannot
 * fail. */
void btree_init(struct btree *t, btree_key_fn key_of);

/*
 * Install the item reference hooks (see "Clones" above): @ref_item is
 * called for every item pointer a node copy duplicates, @unref_item for
 * every item of a node a write frees because it dropped the node's last
 * reference (a node it had just copied, after the clone sharing it was
 * closed). NULL (the default) for none. Set them before the first
 * btree_clone(); clones inherit them.
 */
void btree_set_item_ref(struct btree *t, void (*ref_item)(void *item),
                        void (*unref_item)(void *item));

/*
 * Make @out a clone of @t: same content, every node shared (O(1), never
 * allocates, cannot fail). From then on @t and @out are independent trees;
 * close each with btree_close(). @out is overwritten, not closed.
 */
void btree_clone(struct btree *t, struct btree *out);

/*
 * Drop this tree's nodes: every node no other tree (clone) still shares is
 * freed, and if @free_item is not NULL it is called once for every item
 * held by a freed node (in key order within the freed part). Without
 * clones this frees every node and calls @free_item once for every item
 * in the tree. @t is empty (and reusable) after. May run on another thread
 * than the owner's for a clone nobody writes (see Threading).
 */
void btree_close(struct btree *t, void (*free_item)(void *item));

/* Number of items. */
size_t btree_len(const struct btree *t);

/* The item whose key equals @key, or NULL. */
void *btree_get(const struct btree *t, const void *key, size_t len);

/*
 * Make the item whose key equals @key writable in place: every node on the
 * path from the root to it that is shared with a clone is copied first, so
 * afterwards *@slot, the tree's own pointer to the item, belongs to this
 * tree alone. The caller may store through *@slot another item with the
 * same key (the tree's reference to the old item passes to the caller).
 * When no node on the path is shared this allocates nothing.
 * Returns 0; IK_ENOENT (no such item; nothing copied); IK_ENOMEM (content
 * unchanged, though some path nodes may already be copies). On error
 * *@slot is NULL. The slot is valid until the next write to the tree.
 */
int btree_get_mut(struct btree *t, const void *key, size_t len, void ***slot);

/*
 * Insert @item. If an item with the same key is present, it is replaced:
 * the old one is stored in *@replaced (if @replaced is not NULL) and the
 * count does not change; otherwise *@replaced is set to NULL.
 * Returns 0, or IK_ENOMEM when a node could not be allocated (a new node or
 * the copy of a shared one): the tree is then unchanged in content (still
 * valid, @item not inserted) and *@replaced is NULL.
 */
int btree_insert(struct btree *t, void *item, void **replaced);

/*
 * Remove the item whose key equals @key; *@item gets it (the tree's
 * reference passes to the caller). Returns 0, IK_ENOENT (no such item), or
 * IK_ENOMEM: a node shared with a clone had to be copied and could not be
 * (the tree is then unchanged in content). On a tree that shares no node
 * with a clone it never allocates and cannot fail with IK_ENOMEM.
 * *@item is NULL on error.
 */
int btree_remove(struct btree *t, const void *key, size_t len, void **item);

/*
 * btree_remove() returning the removed item (the caller owns it again), or
 * NULL if there is none. On a tree that shares no node with a clone it
 * never allocates and cannot fail; on a shared tree NULL may also mean
 * IK_ENOMEM (use btree_remove() to tell).
 */
void *btree_delete(struct btree *t, const void *key, size_t len);

/*
 * Position @it before the first item whose key is >= @key (@key NULL or
 * @len 0: before the first item). Then btree_iter_next() returns items in
 * ascending key order. The iterator is invalidated by any insert or delete
 * on the tree (writes to a clone of it do not matter). btree_get_mut() and
 * stores through its slot keep it valid as long as no tree sharing its
 * nodes is closed meanwhile: it goes on over the nodes it holds, which
 * yield the same keys, but an item stored after the iterator reached its
 * node may show up as the item it replaced.
 */
void btree_iter_seek(struct btree_iter *it, const struct btree *t,
                     const void *key, size_t len);

/* The next item, or NULL when the iteration is over. */
void *btree_iter_next(struct btree_iter *it);

/*
 * Check the structure (for tests and debugging): keys strictly ascending in
 * order, every non-root node at least half full, all leaves at the same
 * depth equal to the recorded height, item count matching, no node with a
 * zero reference count. Returns 0 or IK_ECORRUPT. Read-only (see
 * Threading).
 */
int btree_verify(const struct btree *t);

/* Compare two byte strings in etcd's order: <0, 0 or >0. */
int btree_keycmp(const void *a, size_t alen, const void *b, size_t blen);

#endif /* IKADA_BTREE_H */
