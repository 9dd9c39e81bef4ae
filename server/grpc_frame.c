/*
 * grpc_frame: gRPC message framing and memory shared by the server and
 * client cores (see grpc_frame.h).
 *
 * Reading: a message that lies whole inside the chunk being fed is handed
 * out in place (no copy); otherwise it is gathered in the reader's buffer,
 * sized once from the length prefix and reused for the next messages
 * unless it grew large.
 */
#include "server/grpc_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/grpc.h" /* struct grpc_allocator */

/* Buffers larger than this are released once drained rather than kept for
 * the next message. */
#define FRAME_BUF_KEEP (64u << 10)
#define FRAME_BUF_MIN 256

/* ------------------------------------------------------------------------ */
/* Memory */

void *grpc_mem_alloc(const struct grpc_allocator *a, size_t n)
{
    return a != NULL ? a->malloc_fn(n, a->ud) : malloc(n);
}

void *grpc_mem_calloc(const struct grpc_allocator *a, size_t n, size_t size)
{
    return a != NULL ? a->calloc_fn(n, size, a->ud) : calloc(n, size);
}

void *grpc_mem_realloc(const struct grpc_allocator *a, void *p, size_t n)
{
    return a != NULL ? a->realloc_fn(p, n, a->ud) : realloc(p, n);
}

void grpc_mem_free(const struct grpc_allocator *a, void *p)
{
    if (a != NULL) {
        a->free_fn(p, a->ud);
    } else {
        free(p);
    }
}

char *grpc_mem_strndup(const struct grpc_allocator *a, const void *s, size_t n)
{
    char *p = grpc_mem_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void *ng_malloc(size_t size, void *ud)
{
    return grpc_mem_alloc(ud, size);
}

static void ng_free(void *ptr, void *ud)
{
    grpc_mem_free(ud, ptr);
}

static void *ng_calloc(size_t nmemb, size_t size, void *ud)
{
    return grpc_mem_calloc(ud, nmemb, size);
}

static void *ng_realloc(void *ptr, size_t size, void *ud)
{
    return grpc_mem_realloc(ud, ptr, size);
}

void grpc_mem_nghttp2(const struct grpc_allocator *a, nghttp2_mem *mem)
{
    mem->mem_user_data = (void *)a;
    mem->malloc = ng_malloc;
    mem->free = ng_free;
    mem->calloc = ng_calloc;
    mem->realloc = ng_realloc;
}

/* ------------------------------------------------------------------------ */
/* Header values */

bool grpc_bytes_eq(const uint8_t *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && memcmp(a, b, blen) == 0;
}

bool grpc_is_content_type(const uint8_t *v, size_t len)
{
    static const char ct[] = "application/grpc";
    size_t n = sizeof(ct) - 1;
    if (len < n || memcmp(v, ct, n) != 0) {
        return false;
    }
    return len == n || v[n] == '+' || v[n] == ';';
}

/* ------------------------------------------------------------------------ */
/* Reader */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

void grpc_frame_reader_init(struct grpc_frame_reader *r,
                            const struct grpc_allocator *alloc, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->alloc = alloc;
    r->max = max;
}

/* A prefix is complete: remember and check it. */
static int begin_message(struct grpc_frame_reader *r, const uint8_t *prefix)
{
    r->flag = prefix[0];
    r->need = get_be32(prefix + 1);
    if (r->flag == 1) {
        return IK_ECOMPRESSED;
    }
    if (r->flag != 0) {
        return IK_EPROTO;
    }
    if (r->need > r->max) {
        return IK_EMSGTOOLARGE;
    }
    return 0;
}

/* Make room for the payload of the current message. */
static int reserve_buf(struct grpc_frame_reader *r)
{
    if (r->cap < r->need) {
        uint8_t *p = grpc_mem_alloc(r->alloc, r->need);
        if (p == NULL) {
            return IK_ENOMEM;
        }
        grpc_mem_free(r->alloc, r->buf);
        r->buf = p;
        r->cap = r->need;
    }
    r->len = 0;
    return 0;
}

int grpc_frame_reader_feed(struct grpc_frame_reader *r, const uint8_t *p,
                           size_t len, grpc_frame_msg_cb cb, void *ud)
{
    int rv;

    while (len > 0) {
        if (r->prefix_len == 0 && len >= GRPC_FRAME_PREFIX_LEN) {
            /* Fast path: prefix in place, maybe the whole message too. */
            rv = begin_message(r, p);
            if (rv != 0) {
                return rv;
            }
            p += GRPC_FRAME_PREFIX_LEN;
            len -= GRPC_FRAME_PREFIX_LEN;
            if (len >= r->need) {
                size_t n = r->need;
                if (!cb(ud, p, n)) {
                    return 0;
                }
                p += n;
                len -= n;
                continue;
            }
            r->prefix_len = GRPC_FRAME_PREFIX_LEN;
            rv = reserve_buf(r);
            if (rv != 0) {
                return rv;
            }
            continue;
        }
        if (r->prefix_len < GRPC_FRAME_PREFIX_LEN) {
            size_t n = GRPC_FRAME_PREFIX_LEN - r->prefix_len;
            if (n > len) {
                n = len;
            }
            memcpy(r->prefix + r->prefix_len, p, n);
            r->prefix_len += n;
            p += n;
            len -= n;
            if (r->prefix_len < GRPC_FRAME_PREFIX_LEN) {
                return 0;
            }
            rv = begin_message(r, r->prefix);
            if (rv != 0) {
                return rv;
            }
            if (r->need == 0) {
                r->prefix_len = 0;
                if (!cb(ud, (const uint8_t *)"", 0)) {
                    return 0;
                }
                continue;
            }
            rv = reserve_buf(r);
            if (rv != 0) {
                return rv;
            }
            continue;
        }
        /* Gathering a payload. */
        {
            size_t n = r->need - r->len;
            bool go_on;
            if (n > len) {
                n = len;
            }
            memcpy(r->buf + r->len, p, n);
            r->len += n;
            p += n;
            len -= n;
            if (r->len < r->need) {
                continue;
            }
            r->prefix_len = 0;
            go_on = cb(ud, r->buf, r->need);
            if (r->cap > FRAME_BUF_KEEP) {
                grpc_mem_free(r->alloc, r->buf);
                r->buf = NULL;
                r->cap = 0;
            }
            if (!go_on) {
                return 0;
            }
        }
    }
    return 0;
}

bool grpc_frame_reader_partial(const struct grpc_frame_reader *r)
{
    return r->prefix_len > 0;
}

uint8_t grpc_frame_reader_flag(const struct grpc_frame_reader *r)
{
    return r->flag;
}

uint32_t grpc_frame_reader_need(const struct grpc_frame_reader *r)
{
    return r->need;
}

uint8_t *grpc_frame_reader_take(struct grpc_frame_reader *r, const uint8_t *msg)
{
    uint8_t *p = r->buf;
    if (p == NULL || msg != p) {
        return NULL;
    }
    r->buf = NULL;
    r->cap = 0;
    return p;
}

int grpc_frame_reader_status(const struct grpc_frame_reader *r, int rv,
                             char *out, size_t size)
{
    const char *msg;
    int status;

    switch (rv) {
    case IK_EPROTO:
        snprintf(out, size, "grpc: received unexpected payload format %u",
                 (unsigned)r->flag);
        return GRPC_INTERNAL;
    case IK_EMSGTOOLARGE:
        snprintf(out, size,
                 "grpc: received message larger than max (%u vs. %zu)", r->need,
                 r->max);
        return GRPC_RESOURCE_EXHAUSTED;
    default:
        status = ik_grpc_status(rv, &msg);
        snprintf(out, size, "%s", msg);
        return status;
    }
}

void grpc_frame_reader_free(struct grpc_frame_reader *r)
{
    grpc_mem_free(r->alloc, r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Output buffer */

void grpc_frame_buf_init(struct grpc_frame_buf *b,
                         const struct grpc_allocator *alloc)
{
    memset(b, 0, sizeof(*b));
    b->alloc = alloc;
}

/* Room for @n more bytes at tail. */
static int buf_reserve(struct grpc_frame_buf *b, size_t n)
{
    size_t used = b->tail - b->head;
    size_t cap;
    uint8_t *p;

    if (b->cap - b->tail >= n) {
        return 0;
    }
    if (b->head > 0) {
        memmove(b->data, b->data + b->head, used);
        b->head = 0;
        b->tail = used;
        if (b->cap - used >= n) {
            return 0;
        }
    }
    if (n > SIZE_MAX / 2 - used) {
        return IK_ENOMEM;
    }
    cap = b->cap > FRAME_BUF_MIN ? b->cap : FRAME_BUF_MIN;
    while (cap < used + n) {
        cap *= 2;
    }
    p = grpc_mem_realloc(b->alloc, b->data, cap);
    if (p == NULL) {
        return IK_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int grpc_frame_buf_begin(struct grpc_frame_buf *b, size_t len,
                         uint8_t **payload)
{
    int rv;

    if (len > UINT32_MAX) {
        return IK_EINVAL;
    }
    rv = buf_reserve(b, GRPC_FRAME_PREFIX_LEN + len);
    if (rv != 0) {
        return rv;
    }
    b->data[b->tail] = 0;
    put_be32(b->data + b->tail + 1, (uint32_t)len);
    *payload = b->data + b->tail + GRPC_FRAME_PREFIX_LEN;
    return 0;
}

void grpc_frame_buf_commit(struct grpc_frame_buf *b, size_t len)
{
    b->tail += GRPC_FRAME_PREFIX_LEN + len;
}

int grpc_frame_buf_append(struct grpc_frame_buf *b, const uint8_t *msg,
                          size_t len)
{
    uint8_t *p;
    int rv = grpc_frame_buf_begin(b, len, &p);
    if (rv != 0) {
        return rv;
    }
    if (len > 0) {
        memcpy(p, msg, len);
    }
    grpc_frame_buf_commit(b, len);
    return 0;
}

int grpc_frame_buf_pack(struct grpc_frame_buf *b, const ProtobufCMessage *msg,
                        size_t len)
{
    uint8_t *p;
    int rv = grpc_frame_buf_begin(b, len, &p);
    if (rv != 0) {
        return rv;
    }
    if (protobuf_c_message_pack(msg, p) != len) {
        return IK_EINVAL;
    }
    grpc_frame_buf_commit(b, len);
    return 0;
}

size_t grpc_frame_buf_read(struct grpc_frame_buf *b, uint8_t *out, size_t size)
{
    size_t avail = b->tail - b->head;
    size_t n = avail < size ? avail : size;

    if (n == 0) {
        return 0;
    }
    memcpy(out, b->data + b->head, n);
    b->head += n;
    if (b->head == b->tail) {
        b->head = b->tail = 0;
        if (b->cap > FRAME_BUF_KEEP) {
            grpc_mem_free(b->alloc, b->data);
            b->data = NULL;
            b->cap = 0;
        }
    }
    return n;
}

size_t grpc_frame_buf_pending(const struct grpc_frame_buf *b)
{
    return b->tail - b->head;
}

void grpc_frame_buf_free(struct grpc_frame_buf *b)
{
    grpc_mem_free(b->alloc, b->data);
    b->data = NULL;
    b->head = b->tail = b->cap = 0;
}
