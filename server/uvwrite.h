/*
 * uvwrite: the write side of a libuv stream that carries a protocol core's
 * output (server/grpc_uv.c, client/grpc_client_uv.c): the core's small
 * output chunks are gathered into one buffer and written with one uv_write
 * at a time, double-buffered (one buffer being filled while the other is in
 * flight), and streams that have output to flush wait in a "dirty" list
 * until the owner's uv_prepare callback flushes them.
 *
 * What a failure means (close the stream, with which status) is the
 * owner's: every function reports an IK_E* code and does nothing else.
 *
 * Threading: the loop's thread only.
 */
#ifndef IKADA_UVWRITE_H
#define IKADA_UVWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

/* Gathering stops once this much is buffered for one write. */
#define UVWRITE_HIGH (256u << 10)

struct uvwrite_buf {
    uint8_t *data;
    size_t len, cap;
};

struct uvwrite {
    uv_write_t req;
    struct uvwrite_buf fill;     /* being gathered */
    struct uvwrite_buf inflight; /* owned by req while writing */
    bool writing;                /* a uv_write is in flight */
    /* The dirty list (see uvwrite_mark()). */
    bool dirty;
    struct uvwrite *dirty_next;
    void *owner; /* the stream's owner: req.data, and for the dirty list */
};

/* Next chunk of output from the core: its length and *data, 0 when nothing
 * is pending, < 0 on a fatal error (as grpc_conn_send()). */
typedef ssize_t (*uvwrite_pull_fn)(void *src, const uint8_t **data);

/* Start idle and clean; @owner is given back as req.data and w->owner. */
void uvwrite_init(struct uvwrite *w, void *owner);

/*
 * Gather what @pull(@src) hands out (up to about UVWRITE_HIGH bytes) and
 * start one uv_write of it on @stream; @cb is that write's callback
 * (req->data is the owner), which must call uvwrite_done() first. Must not
 * be called while w->writing. Returns 0, after which w->writing tells
 * whether a write started (false: the core had nothing to say); IK_EIO when
 * @pull failed or uv_write refused; IK_ENOMEM. Nothing is in flight after an
 * error; gathered bytes stay until uvwrite_free().
 */
int uvwrite_flush(struct uvwrite *w, uv_stream_t *stream, uvwrite_pull_fn pull,
                  void *src, uv_write_cb cb);

/* The write finished (in its callback, whatever its status): the in-flight
 * buffer is free again, and released when it grew large. */
void uvwrite_done(struct uvwrite *w);

/* Bytes of the write in flight (0 when none). */
size_t uvwrite_inflight(const struct uvwrite *w);

/* Release the buffers. Only when no write is in flight (or from the
 * stream's close callback, after which libuv has cancelled it). */
void uvwrite_free(struct uvwrite *w);

/*
 * Dirty list, headed by a `struct uvwrite *` of the owner's (NULL: empty).
 * uvwrite_mark() puts @w at the head and returns true, or returns false if
 * @w is already listed. uvwrite_unmark() takes @w out if listed.
 * uvwrite_pop() takes out and returns the head, or NULL.
 */
bool uvwrite_mark(struct uvwrite **list, struct uvwrite *w);
void uvwrite_unmark(struct uvwrite **list, struct uvwrite *w);
struct uvwrite *uvwrite_pop(struct uvwrite **list);

#endif /* IKADA_UVWRITE_H */
