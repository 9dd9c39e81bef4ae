/*
 * uvwrite: gathered, double-buffered writes on a libuv stream (see
 * uvwrite.h).
 */
#include "server/uvwrite.h"

#include <stdlib.h>
#include <string.h>

#include "server/errors.h"

/* First size of a gathering buffer. */
#define UVWRITE_MIN (16u << 10)
/* Buffers above this are released after their write. */
#define UVWRITE_KEEP (1u << 20)

void uvwrite_init(struct uvwrite *w, void *owner)
{
    memset(w, 0, sizeof(*w));
    w->owner = owner;
}

static int buf_append(struct uvwrite_buf *b, const uint8_t *p, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap > 0 ? b->cap : UVWRITE_MIN;
        uint8_t *q;
        while (cap - b->len < n) {
            cap *= 2;
        }
        q = realloc(b->data, cap);
        if (q == NULL) {
            return IK_ENOMEM;
        }
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int uvwrite_flush(struct uvwrite *w, uv_stream_t *stream, uvwrite_pull_fn pull,
                  void *src, uv_write_cb cb)
{
    struct uvwrite_buf tmp;
    uv_buf_t buf;

    while (w->fill.len < UVWRITE_HIGH) {
        const uint8_t *p;
        ssize_t n = pull(src, &p);
        if (n < 0) {
            return IK_EIO;
        }
        if (n == 0) {
            break;
        }
        if (buf_append(&w->fill, p, (size_t)n) != 0) {
            return IK_ENOMEM;
        }
    }
    if (w->fill.len == 0) {
        return 0;
    }
    tmp = w->inflight;
    w->inflight = w->fill;
    w->fill = tmp;
    buf = uv_buf_init((char *)w->inflight.data, (unsigned)w->inflight.len);
    w->req.data = w->owner;
    if (uv_write(&w->req, stream, &buf, 1, cb) != 0) {
        w->inflight.len = 0;
        return IK_EIO;
    }
    w->writing = true;
    return 0;
}

void uvwrite_done(struct uvwrite *w)
{
    w->writing = false;
    w->inflight.len = 0;
    if (w->inflight.cap > UVWRITE_KEEP) {
        free(w->inflight.data);
        w->inflight.data = NULL;
        w->inflight.cap = 0;
    }
}

size_t uvwrite_inflight(const struct uvwrite *w)
{
    return w->writing ? w->inflight.len : 0;
}

void uvwrite_free(struct uvwrite *w)
{
    free(w->fill.data);
    free(w->inflight.data);
    w->fill.data = w->inflight.data = NULL;
    w->fill.len = w->fill.cap = w->inflight.len = w->inflight.cap = 0;
}

bool uvwrite_mark(struct uvwrite **list, struct uvwrite *w)
{
    if (w->dirty) {
        return false;
    }
    w->dirty = true;
    w->dirty_next = *list;
    *list = w;
    return true;
}

void uvwrite_unmark(struct uvwrite **list, struct uvwrite *w)
{
    struct uvwrite **pp = list;
    if (!w->dirty) {
        return;
    }
    while (*pp != NULL && *pp != w) {
        pp = &(*pp)->dirty_next;
    }
    if (*pp == w) {
        *pp = w->dirty_next;
    }
    w->dirty = false;
    w->dirty_next = NULL;
}

struct uvwrite *uvwrite_pop(struct uvwrite **list)
{
    struct uvwrite *w = *list;
    if (w != NULL) {
        *list = w->dirty_next;
        w->dirty = false;
        w->dirty_next = NULL;
    }
    return w;
}
