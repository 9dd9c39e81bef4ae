/*
 * grpc_frame: the gRPC wire pieces that the server core (grpc.h) and the
 * client core (client/grpc_client.h) share. No I/O and no HTTP/2 here:
 *  - memory through a struct grpc_allocator (libc when it is NULL), also
 *    handed to nghttp2;
 *  - the reader that cuts the DATA payload of one stream into gRPC messages
 *    (5-byte prefix: a compressed flag and a big-endian length), checking
 *    the flag and the size limit;
 *  - the output buffer that frames outgoing messages and hands the bytes to
 *    nghttp2's data provider;
 *  - small header-value checks.
 *
 * What an error means to the peer (status, message, reset) stays with the
 * cores: the reader reports an IK_E* code and keeps the offending prefix so
 * that the caller can word it.
 *
 * Threading: none; every object belongs to its caller's thread.
 */
#ifndef IKADA_GRPC_FRAME_H
#define IKADA_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>

struct grpc_allocator; /* server/grpc.h */

/* Length of the prefix in front of every gRPC message. */
#define GRPC_FRAME_PREFIX_LEN 5

/* ------------------------------------------------------------------------ */
/* Memory: malloc/calloc/realloc/free through @a, or libc when @a is NULL. */

void *grpc_mem_alloc(const struct grpc_allocator *a, size_t n);
void *grpc_mem_calloc(const struct grpc_allocator *a, size_t n, size_t size);
void *grpc_mem_realloc(const struct grpc_allocator *a, void *p, size_t n);
/* NULL @p is a no-op. */
void grpc_mem_free(const struct grpc_allocator *a, void *p);

/* A NUL-terminated copy of the @n bytes at @s (owned by the caller, freed
 * with grpc_mem_free()), or NULL when out of memory. */
char *grpc_mem_strndup(const struct grpc_allocator *a, const void *s, size_t n);

/* Fill @mem so that nghttp2 allocates through @a (which must outlive the
 * session); pass @mem to nghttp2 only when @a is not NULL. */
void grpc_mem_nghttp2(const struct grpc_allocator *a, nghttp2_mem *mem);

/* ------------------------------------------------------------------------ */
/* Header values */

/* True when the @alen bytes at @a are exactly the string @b. */
bool grpc_bytes_eq(const uint8_t *a, size_t alen, const char *b);

/* True for "application/grpc", optionally followed by "+subtype" or
 * ";params" (what grpc-go accepts as a gRPC content-type). */
bool grpc_is_content_type(const uint8_t *v, size_t len);

/* ------------------------------------------------------------------------ */
/* Message reader: DATA payload in, whole messages out */

struct grpc_frame_reader {
    const struct grpc_allocator *alloc;
    size_t max; /* largest payload accepted */
    /* The prefix gathered so far; prefix_len == GRPC_FRAME_PREFIX_LEN
     * while a payload is being gathered into buf. */
    uint8_t prefix[GRPC_FRAME_PREFIX_LEN];
    size_t prefix_len;
    uint8_t flag;  /* compressed flag of the current/refused message */
    uint32_t need; /* payload length of the current/refused message */
    uint8_t *buf;  /* gathering buffer, reused across messages */
    size_t len, cap;
};

/*
 * A complete message: @msg (without the prefix) is valid during the
 * callback only. It points into the chunk being fed when the whole message
 * lies in it, else into the reader's buffer (see
 * grpc_frame_reader_take()). Return false to stop: the rest of the chunk is
 * dropped (the caller's stream is over).
 */
typedef bool (*grpc_frame_msg_cb)(void *ud, const uint8_t *msg, size_t len);

/* Start empty; @max is the largest payload accepted. Cannot fail. */
void grpc_frame_reader_init(struct grpc_frame_reader *r,
                            const struct grpc_allocator *alloc, size_t max);

/*
 * Feed the next @len bytes of the stream's DATA payload; @cb fires for
 * every message completed by them, in order. Returns 0 (all bytes used, or
 * @cb returned false), or, for the message whose prefix was just read:
 * IK_ECOMPRESSED (flag 1), IK_EPROTO (flag other than 0 and 1),
 * IK_EMSGTOOLARGE (length over max), IK_ENOMEM (no buffer for a payload
 * that spans chunks). After an error the stream is unusable: do not feed
 * the reader again (grpc_frame_reader_flag()/_need() tell the prefix).
 */
int grpc_frame_reader_feed(struct grpc_frame_reader *r, const uint8_t *data,
                           size_t len, grpc_frame_msg_cb cb, void *ud);

/* True when the stream stopped inside a message (prefix or payload). */
bool grpc_frame_reader_partial(const struct grpc_frame_reader *r);

/* Compressed flag and length of the last prefix read. */
uint8_t grpc_frame_reader_flag(const struct grpc_frame_reader *r);
uint32_t grpc_frame_reader_need(const struct grpc_frame_reader *r);

/*
 * From inside the callback: if @msg is the reader's buffer, hand the buffer
 * over to the caller (who frees it with grpc_mem_free() on the reader's
 * allocator) and return it; otherwise (the message lies in the chunk, or is
 * empty) return NULL.
 */
uint8_t *grpc_frame_reader_take(struct grpc_frame_reader *r,
                                const uint8_t *msg);

/*
 * grpc-go's status and wording for a reader error of the same kind on
 * either side: IK_EPROTO is INTERNAL "grpc: received unexpected payload
 * format N", IK_EMSGTOOLARGE is RESOURCE_EXHAUSTED "grpc: received message
 * larger than max (N vs. M)"; any other code gives ik_grpc_status()'s.
 * Writes the message into @out (@size bytes, 128 is always enough) and
 * returns the status.
 */
int grpc_frame_reader_status(const struct grpc_frame_reader *r, int rv,
                             char *out, size_t size);

/* Release the buffer; the reader may be initialised again. */
void grpc_frame_reader_free(struct grpc_frame_reader *r);

/* ------------------------------------------------------------------------ */
/* Output buffer: framed messages waiting for the data provider */

struct grpc_frame_buf {
    const struct grpc_allocator *alloc;
    uint8_t *data; /* bytes [head, tail) are pending */
    size_t head, tail, cap;
};

/* Start empty. Cannot fail. */
void grpc_frame_buf_init(struct grpc_frame_buf *b,
                         const struct grpc_allocator *alloc);

/*
 * Reserve room for a message of @len bytes and write its prefix (flag 0);
 * *payload is where its @len bytes go. Nothing is pending until
 * grpc_frame_buf_commit(). Returns 0, IK_EINVAL (@len does not fit the
 * 32-bit prefix) or IK_ENOMEM; pending bytes are kept in every case.
 */
int grpc_frame_buf_begin(struct grpc_frame_buf *b, size_t len,
                         uint8_t **payload);

/* Make the message begun with @len pending. */
void grpc_frame_buf_commit(struct grpc_frame_buf *b, size_t len);

/* begin + copy @len bytes of @msg + commit. Same returns as begin. */
int grpc_frame_buf_append(struct grpc_frame_buf *b, const uint8_t *msg,
                          size_t len);

/* begin + pack @msg, whose packed size the caller computed as @len, +
 * commit. Same returns as begin, plus IK_EINVAL (nothing pending added)
 * when the packed size differs from @len. */
int grpc_frame_buf_pack(struct grpc_frame_buf *b, const ProtobufCMessage *msg,
                        size_t len);

/*
 * Move up to @size pending bytes to @out; returns how many. When that
 * drains the buffer, a large allocation is released.
 */
size_t grpc_frame_buf_read(struct grpc_frame_buf *b, uint8_t *out, size_t size);

/* Bytes pending. */
size_t grpc_frame_buf_pending(const struct grpc_frame_buf *b);

/* Release the memory; the buffer may be initialised again. */
void grpc_frame_buf_free(struct grpc_frame_buf *b);

#endif /* IKADA_GRPC_FRAME_H */
