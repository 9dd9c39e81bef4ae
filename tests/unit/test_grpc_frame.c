/*
 * Tests for the gRPC framing shared by the server and client cores
 * (server/grpc_frame.h) and for the gathered uv writes (server/uvwrite.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/rpc.pb-c.h"
#include "server/errors.h"
#include "server/grpc_frame.h"
#include "server/uvwrite.h"
#include "tests/unit/grpc_test_util.h"

/* ------------------------------------------------------------------------ */
/* Helpers */

#define MAX_MSGS 64

/* What the reader delivered. */
static struct {
    int n;
    size_t len[MAX_MSGS];
    uint8_t *data[MAX_MSGS];     /* copies */
    const uint8_t *at[MAX_MSGS]; /* where the message was handed out */
    int stop_after;              /* return false after this many; 0: never */
    struct grpc_frame_reader *take_from; /* take gathered buffers */
    uint8_t *taken[MAX_MSGS];
} got;

static int setup(void **state)
{
    (void)state;
    memset(&got, 0, sizeof(got));
    fa.budget = -1;
    fa.live = 0;
    fa.failures = 0;
    return 0;
}

static int teardown(void **state)
{
    int i;
    (void)state;
    for (i = 0; i < got.n; i++) {
        free(got.data[i]);
        grpc_mem_free(&failing_alloc, got.taken[i]);
    }
    return 0;
}

static bool on_msg(void *ud, const uint8_t *msg, size_t len)
{
    assert_ptr_equal(ud, &got);
    assert_true(got.n < MAX_MSGS);
    got.len[got.n] = len;
    got.at[got.n] = msg;
    got.data[got.n] = malloc(len + 1);
    assert_non_null(got.data[got.n]);
    memcpy(got.data[got.n], msg, len);
    if (got.take_from != NULL) {
        got.taken[got.n] = grpc_frame_reader_take(got.take_from, msg);
    }
    got.n++;
    return got.stop_after == 0 || got.n < got.stop_after;
}

/* Write a framed message (flag, length, then the payload unless @payload
 * is NULL: already in place) at @out; returns its size. */
static size_t frame(uint8_t *out, uint8_t flag, const void *payload,
                    uint32_t len)
{
    put_grpc_prefix(out, flag, len);
    if (payload != NULL) {
        memcpy(out + 5, payload, len);
    }
    return 5 + (size_t)len;
}

static void assert_msg(int i, const char *text)
{
    assert_true(i < got.n);
    assert_int_equal(got.len[i], strlen(text));
    assert_memory_equal(got.data[i], text, got.len[i]);
}

/* ------------------------------------------------------------------------ */
/* Reader */

/* Whole messages in one chunk are handed out in place, without any
 * allocation; a zero-length message too. */
static void test_reader_in_place(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    size_t n = 0;
    (void)state;

    n += frame(buf + n, 0, "hello", 5);
    n += frame(buf + n, 0, NULL, 0);
    n += frame(buf + n, 0, "xy", 2);
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    fa.budget = 0; /* no allocation allowed */
    assert_int_equal(grpc_frame_reader_feed(&r, buf, n, on_msg, &got), 0);
    assert_int_equal(got.n, 3);
    assert_msg(0, "hello");
    assert_msg(1, "");
    assert_msg(2, "xy");
    assert_ptr_equal(got.at[0], buf + 5);
    assert_ptr_equal(got.at[2], buf + 20);
    assert_false(grpc_frame_reader_partial(&r));
    assert_int_equal(fa.failures, 0);
    grpc_frame_reader_free(&r);
    assert_int_equal(fa.live, 0);
}

/* The same stream fed one byte at a time: prefixes split at every offset,
 * payloads gathered, zero-length messages through the split-prefix path. */
static void test_reader_byte_by_byte(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[128];
    size_t n = 0, i;
    (void)state;

    n += frame(buf + n, 0, "first message", 13);
    n += frame(buf + n, 0, NULL, 0);
    n += frame(buf + n, 0, "a", 1);
    n += frame(buf + n, 0, NULL, 0);
    n += frame(buf + n, 0, "last", 4);
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    for (i = 0; i < n; i++) {
        assert_int_equal(grpc_frame_reader_feed(&r, buf + i, 1, on_msg, &got),
                         0);
        /* Between messages exactly when a message just completed. */
        if (i + 1 == 18 || i + 1 == 23 || i + 1 == 29 || i + 1 == 34) {
            assert_false(grpc_frame_reader_partial(&r));
        } else if (i + 1 < n) {
            assert_true(grpc_frame_reader_partial(&r));
        }
    }
    assert_false(grpc_frame_reader_partial(&r));
    assert_int_equal(got.n, 5);
    assert_msg(0, "first message");
    assert_msg(1, "");
    assert_msg(2, "a");
    assert_msg(3, "");
    assert_msg(4, "last");
    grpc_frame_reader_free(&r);
    assert_int_equal(fa.live, 0);
}

/* A message spanning chunks: the prefix whole in the first chunk (fast
 * path), the payload gathered over three chunks, the next message's prefix
 * split across the last two. */
static void test_reader_spanning(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    size_t n = 0;
    (void)state;

    n += frame(buf + n, 0, "0123456789abcdef", 16); /* 21 bytes */
    n += frame(buf + n, 0, "zz", 2);                /* 7 bytes */
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 8, on_msg, &got), 0);
    assert_true(grpc_frame_reader_partial(&r));
    assert_int_equal(grpc_frame_reader_need(&r), 16);
    assert_int_equal(fa.live, 1); /* the gathering buffer */
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 8, 10, on_msg, &got), 0);
    assert_int_equal(got.n, 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 18, 5, on_msg, &got), 0);
    assert_int_equal(got.n, 1);
    assert_msg(0, "0123456789abcdef");
    assert_ptr_equal(got.at[0], r.buf);         /* gathered, not in place */
    assert_true(grpc_frame_reader_partial(&r)); /* 2 prefix bytes in */
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 23, n - 23, on_msg, &got),
                     0);
    assert_int_equal(got.n, 2);
    assert_msg(1, "zz");
    assert_false(grpc_frame_reader_partial(&r));
    /* The buffer is kept for the next message. */
    assert_int_equal(fa.live, 1);
    grpc_frame_reader_free(&r);
    assert_int_equal(fa.live, 0);
}

/* The size limit: exactly max passes, max + 1 is refused with grpc-go's
 * wording, on both the fast and the split-prefix path. */
static void test_reader_size_limit(void **state)
{
    struct grpc_frame_reader r;
    static uint8_t buf[2 * (5 + 11)];
    char msg[128];
    size_t n;
    int rv;
    (void)state;

    memset(buf, 'q', sizeof(buf));
    n = frame(buf, 0, "0123456789", 10);
    grpc_frame_reader_init(&r, NULL, 10);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, n, on_msg, &got), 0);
    assert_int_equal(got.n, 1);

    n = frame(buf, 0, "0123456789a", 11);
    rv = grpc_frame_reader_feed(&r, buf, n, on_msg, &got);
    assert_int_equal(rv, IK_EMSGTOOLARGE);
    assert_int_equal(got.n, 1);
    assert_int_equal(grpc_frame_reader_need(&r), 11);
    assert_int_equal(grpc_frame_reader_status(&r, rv, msg, sizeof(msg)),
                     GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(msg,
                        "grpc: received message larger than max (11 vs. 10)");
    grpc_frame_reader_free(&r);

    /* Split prefix. */
    grpc_frame_reader_init(&r, NULL, 10);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 3, on_msg, &got), 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 3, 2, on_msg, &got),
                     IK_EMSGTOOLARGE);
    assert_int_equal(got.n, 1);
    grpc_frame_reader_free(&r);

    /* A huge length is refused before any allocation. */
    grpc_frame_reader_init(&r, &failing_alloc, 4u << 20);
    buf[0] = 0;
    buf[1] = buf[2] = buf[3] = buf[4] = 0xff;
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 6, on_msg, &got),
                     IK_EMSGTOOLARGE);
    assert_int_equal(
        grpc_frame_reader_status(&r, IK_EMSGTOOLARGE, msg, sizeof(msg)),
        GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(msg, "grpc: received message larger than max "
                             "(4294967295 vs. 4194304)");
    assert_int_equal(fa.live, 0);
    grpc_frame_reader_free(&r);
}

/* The compressed flag: 1 is IK_ECOMPRESSED (each core words it), anything
 * else but 0 is IK_EPROTO ("unexpected payload format"). Messages before
 * the bad one are delivered. */
static void test_reader_flags(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    char msg[128];
    const char *text;
    size_t n = 0;
    int rv, status;
    (void)state;

    n += frame(buf + n, 0, "ok", 2);
    n += frame(buf + n, 1, "zip", 3);
    grpc_frame_reader_init(&r, NULL, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, n, on_msg, &got),
                     IK_ECOMPRESSED);
    assert_int_equal(got.n, 1);
    assert_int_equal(grpc_frame_reader_flag(&r), 1);
    status = grpc_frame_reader_status(&r, IK_ECOMPRESSED, msg, sizeof(msg));
    assert_int_equal(status, ik_grpc_status(IK_ECOMPRESSED, &text));
    assert_string_equal(msg, text);
    grpc_frame_reader_free(&r);

    n = frame(buf, 7, "x", 1);
    grpc_frame_reader_init(&r, NULL, 100);
    /* Split prefix path. */
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 1, on_msg, &got), 0);
    rv = grpc_frame_reader_feed(&r, buf + 1, n - 1, on_msg, &got);
    assert_int_equal(rv, IK_EPROTO);
    assert_int_equal(grpc_frame_reader_flag(&r), 7);
    assert_int_equal(grpc_frame_reader_status(&r, rv, msg, sizeof(msg)),
                     GRPC_INTERNAL);
    assert_string_equal(msg, "grpc: received unexpected payload format 7");
    assert_int_equal(got.n, 1);
    grpc_frame_reader_free(&r);
}

/* No memory for a payload that spans chunks: IK_ENOMEM, nothing leaked;
 * a message whole in its chunk still needs no memory. */
static void test_reader_nomem(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    char msg[128];
    const char *text;
    size_t n;
    int status;
    (void)state;

    n = frame(buf, 0, "0123456789", 10);
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    fa.budget = 0;
    assert_int_equal(grpc_frame_reader_feed(&r, buf, n, on_msg, &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 8, on_msg, &got),
                     IK_ENOMEM);
    assert_int_equal(fa.failures, 1);
    status = grpc_frame_reader_status(&r, IK_ENOMEM, msg, sizeof(msg));
    assert_int_equal(status, ik_grpc_status(IK_ENOMEM, &text));
    assert_int_equal(status, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(msg, text);
    grpc_frame_reader_free(&r);

    /* Split prefix, then no memory for the payload. */
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 2, on_msg, &got), 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 2, 6, on_msg, &got),
                     IK_ENOMEM);
    assert_int_equal(got.n, 1);
    grpc_frame_reader_free(&r);
    assert_int_equal(fa.live, 0);
}

/* The callback stops the reader: the rest of the chunk is dropped. */
static void test_reader_stop(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    size_t n = 0;
    (void)state;

    n += frame(buf + n, 0, "one", 3);
    n += frame(buf + n, 0, "two", 3);
    n += frame(buf + n, 0, "three", 5);
    got.stop_after = 1;
    grpc_frame_reader_init(&r, NULL, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, n, on_msg, &got), 0);
    assert_int_equal(got.n, 1);
    grpc_frame_reader_free(&r);

    /* Also when the message was gathered, and the zero-length kind. */
    n = frame(buf, 0, "gathered", 8);
    n += frame(buf + n, 0, NULL, 0);
    n += frame(buf + n, 0, "never", 5);
    got.stop_after = 2;
    grpc_frame_reader_init(&r, NULL, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 3, on_msg, &got), 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 3, n - 3, on_msg, &got),
                     0);
    assert_int_equal(got.n, 2);
    assert_msg(1, "gathered");
    got.stop_after = 4;
    grpc_frame_reader_free(&r);
    grpc_frame_reader_init(&r, NULL, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 13, on_msg, &got), 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 13, 2, on_msg, &got), 0);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 15, n - 15, on_msg, &got),
                     0);
    /* "gathered" in place, then stop at "" (split prefix): no "never". */
    assert_int_equal(got.n, 4);
    assert_msg(2, "gathered");
    assert_msg(3, "");
    grpc_frame_reader_free(&r);
}

/* take(): a gathered message's buffer changes hands; in-place messages are
 * not taken; the reader allocates anew for the next gathered message. */
static void test_reader_take(void **state)
{
    struct grpc_frame_reader r;
    uint8_t buf[64];
    size_t n = 0;
    (void)state;

    n += frame(buf + n, 0, "spanning", 8);
    n += frame(buf + n, 0, "inplace", 7);
    n += frame(buf + n, 0, "again", 5);
    grpc_frame_reader_init(&r, &failing_alloc, 100);
    got.take_from = &r;
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 6, on_msg, &got), 0);
    assert_int_equal(
        grpc_frame_reader_feed(&r, buf + 6, 7 + 12 + 2, on_msg, &got), 0);
    assert_int_equal(got.n, 2);
    assert_non_null(got.taken[0]);
    assert_memory_equal(got.taken[0], "spanning", 8);
    assert_null(got.taken[1]); /* in place */
    assert_null(r.buf);
    assert_int_equal(grpc_frame_reader_feed(&r, buf + 27, n - 27, on_msg, &got),
                     0);
    assert_int_equal(got.n, 3);
    assert_msg(2, "again");
    assert_non_null(got.taken[2]);
    assert_int_equal(fa.live, 2); /* both taken buffers, owned by the test */
    assert_null(grpc_frame_reader_take(&r, (const uint8_t *)"x"));
    grpc_frame_reader_free(&r);
}

/* A large gathered buffer is released once its message is delivered; a
 * small one is kept. */
static void test_reader_release_large(void **state)
{
    struct grpc_frame_reader r;
    size_t big = 100000;
    uint8_t *buf = malloc(5 + big);
    (void)state;

    assert_non_null(buf);
    memset(buf + 5, 'b', big);
    frame(buf, 0, NULL, (uint32_t)big);
    grpc_frame_reader_init(&r, &failing_alloc, big);
    assert_int_equal(grpc_frame_reader_feed(&r, buf, 1000, on_msg, &got), 0);
    assert_int_equal(fa.live, 1);
    assert_int_equal(
        grpc_frame_reader_feed(&r, buf + 1000, 5 + big - 1000, on_msg, &got),
        0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.len[0], big);
    assert_int_equal(got.data[0][big - 1], 'b');
    assert_int_equal(fa.live, 0);
    grpc_frame_reader_free(&r);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Output buffer */

/* Prefix encoding and reading out in pieces. */
static void test_buf_framing(void **state)
{
    struct grpc_frame_buf b;
    uint8_t out[64], *p;
    size_t n;
    (void)state;

    grpc_frame_buf_init(&b, &failing_alloc);
    assert_int_equal(grpc_frame_buf_pending(&b), 0);
    assert_int_equal(grpc_frame_buf_read(&b, out, sizeof(out)), 0);
    assert_int_equal(grpc_frame_buf_append(&b, (const uint8_t *)"abc", 3), 0);
    assert_int_equal(grpc_frame_buf_append(&b, NULL, 0), 0);
    assert_int_equal(grpc_frame_buf_begin(&b, 4, &p), 0);
    memcpy(p, "lost", 4);
    /* begin without commit adds nothing. */
    assert_int_equal(grpc_frame_buf_pending(&b), 8 + 5);
    n = grpc_frame_buf_read(&b, out, 4);
    assert_int_equal(n, 4);
    assert_int_equal(grpc_frame_buf_pending(&b), 9);
    n += grpc_frame_buf_read(&b, out + 4, sizeof(out) - 4);
    assert_int_equal(n, 13);
    assert_memory_equal(out, "\0\0\0\0\3abc\0\0\0\0\0", 13);
    assert_int_equal(grpc_frame_buf_pending(&b), 0);
    grpc_frame_buf_free(&b);
    assert_int_equal(fa.live, 0);
}

/* The buffer compacts after partial reads, grows, and keeps its pending
 * bytes when it cannot grow; too long a message is refused. */
static void test_buf_growth_and_failure(void **state)
{
    struct grpc_frame_buf b;
    static uint8_t payload[3000], out[8192];
    size_t i, n;
    uint8_t *p;
    (void)state;

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)i;
    }
    grpc_frame_buf_init(&b, &failing_alloc);
    assert_int_equal(grpc_frame_buf_append(&b, payload, 100), 0);
    assert_int_equal(grpc_frame_buf_read(&b, out, 50), 50);
    /* Needs room: compaction or growth; pending bytes survive both. */
    assert_int_equal(grpc_frame_buf_append(&b, payload, sizeof(payload)), 0);
    assert_int_equal(grpc_frame_buf_pending(&b), 55 + 5 + sizeof(payload));
    fa.budget = 0;
    assert_int_equal(grpc_frame_buf_append(&b, payload, sizeof(payload)),
                     IK_ENOMEM);
    assert_int_equal(fa.failures, 1);
    assert_int_equal(grpc_frame_buf_pending(&b), 55 + 5 + sizeof(payload));
    fa.budget = -1;
    assert_int_equal(grpc_frame_buf_begin(&b, (size_t)UINT32_MAX + 1, &p),
                     IK_EINVAL);
    n = grpc_frame_buf_read(&b, out, sizeof(out));
    assert_int_equal(n, 55 + 5 + sizeof(payload));
    assert_int_equal(out[0], 45); /* rest of the first payload */
    assert_memory_equal(out + 55, "\0\0\0\x0b\xb8", 5);
    assert_memory_equal(out + 60, payload, sizeof(payload));
    grpc_frame_buf_free(&b);
    assert_int_equal(fa.live, 0);
}

/* A large buffer is released once drained. */
static void test_buf_release_large(void **state)
{
    struct grpc_frame_buf b;
    size_t big = 200000, n = 0;
    uint8_t *payload = calloc(1, big), out[16384];
    (void)state;

    assert_non_null(payload);
    grpc_frame_buf_init(&b, &failing_alloc);
    assert_int_equal(grpc_frame_buf_append(&b, payload, big), 0);
    assert_int_equal(fa.live, 1);
    while (grpc_frame_buf_pending(&b) > 0) {
        n += grpc_frame_buf_read(&b, out, sizeof(out));
        if (grpc_frame_buf_pending(&b) > 0) {
            assert_int_equal(fa.live, 1);
        }
    }
    assert_int_equal(n, 5 + big);
    assert_int_equal(fa.live, 0);
    grpc_frame_buf_free(&b);
    free(payload);
}

/* Packing a protobuf message straight into the buffer. */
static void test_buf_pack(void **state)
{
    struct grpc_frame_buf b;
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    Etcdserverpb__RangeResponse *back;
    struct grpc_frame_reader r;
    uint8_t out[256];
    size_t len, n;
    (void)state;

    resp.count = 42;
    resp.more = 1;
    len = protobuf_c_message_get_packed_size(&resp.base);
    grpc_frame_buf_init(&b, NULL);
    assert_int_equal(grpc_frame_buf_pack(&b, &resp.base, len), 0);
    /* A wrong size is refused and adds nothing. */
    assert_int_equal(grpc_frame_buf_pack(&b, &resp.base, len + 1), IK_EINVAL);
    assert_int_equal(grpc_frame_buf_pending(&b), 5 + len);
    n = grpc_frame_buf_read(&b, out, sizeof(out));
    grpc_frame_reader_init(&r, NULL, 100);
    assert_int_equal(grpc_frame_reader_feed(&r, out, n, on_msg, &got), 0);
    assert_int_equal(got.n, 1);
    back = etcdserverpb__range_response__unpack(NULL, got.len[0], got.data[0]);
    assert_non_null(back);
    assert_int_equal(back->count, 42);
    assert_true(back->more);
    etcdserverpb__range_response__free_unpacked(back, NULL);
    grpc_frame_reader_free(&r);
    grpc_frame_buf_free(&b);
}

/* Writer and reader agree for any chunking (deterministic pseudo-random
 * message sizes and chunk sizes). */
static void test_round_trip(void **state)
{
    struct grpc_frame_buf b;
    struct grpc_frame_reader r;
    static uint8_t wire[1 << 16];
    uint8_t payload[700];
    size_t lens[40], n, off;
    uint32_t x = 12345;
    int i, round;
    (void)state;

    for (i = 0; i < (int)sizeof(payload); i++) {
        payload[i] = (uint8_t)(i * 7);
    }
    for (round = 0; round < 20; round++) {
        teardown(NULL);
        memset(&got, 0, sizeof(got));
        grpc_frame_buf_init(&b, NULL);
        for (i = 0; i < 40; i++) {
            x = x * 1103515245u + 12345u;
            lens[i] = (x >> 8) % 5 == 0 ? 0 : (x >> 12) % sizeof(payload);
            assert_int_equal(grpc_frame_buf_append(&b, payload, lens[i]), 0);
        }
        n = grpc_frame_buf_read(&b, wire, sizeof(wire));
        assert_int_equal(grpc_frame_buf_pending(&b), 0);
        grpc_frame_reader_init(&r, NULL, sizeof(payload));
        for (off = 0; off < n;) {
            size_t chunk;
            x = x * 1103515245u + 12345u;
            chunk = 1 + (x >> 10) % (round < 10 ? 9 : 900);
            if (chunk > n - off) {
                chunk = n - off;
            }
            assert_int_equal(
                grpc_frame_reader_feed(&r, wire + off, chunk, on_msg, &got), 0);
            off += chunk;
        }
        assert_false(grpc_frame_reader_partial(&r));
        assert_int_equal(got.n, 40);
        for (i = 0; i < 40; i++) {
            assert_int_equal(got.len[i], lens[i]);
            assert_memory_equal(got.data[i], payload, lens[i]);
        }
        grpc_frame_reader_free(&r);
        grpc_frame_buf_free(&b);
    }
}

/* Every allocation failure point of a write-then-read scenario ends with
 * IK_ENOMEM and no leak. */
static bool frame_round(long budget)
{
    static uint8_t payload[5000], wire[6 * 5010];
    struct grpc_frame_buf b;
    struct grpc_frame_reader r;
    size_t n = 0, off, sizes[] = {10, 300, 0, 5000, 1200, 70};
    bool ok = true;
    int i, rv = 0;

    memset(payload, 'p', sizeof(payload));
    fa.budget = budget;
    teardown(NULL);
    memset(&got, 0, sizeof(got));
    grpc_frame_buf_init(&b, &failing_alloc);
    grpc_frame_reader_init(&r, &failing_alloc, sizeof(payload));
    for (i = 0; i < 6 && rv == 0; i++) {
        rv = grpc_frame_buf_append(&b, payload, sizes[i]);
        /* Drain part of it now and then: compaction, reuse, release. */
        if (rv == 0 && i % 2 == 1) {
            n += grpc_frame_buf_read(&b, wire + n, 200);
        }
    }
    if (rv != 0) {
        assert_int_equal(rv, IK_ENOMEM);
        ok = false;
    }
    n += grpc_frame_buf_read(&b, wire + n, sizeof(wire) - n);
    for (off = 0; ok && off < n; off += 7) {
        rv = grpc_frame_reader_feed(&r, wire + off, n - off < 7 ? n - off : 7,
                                    on_msg, &got);
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            ok = false;
        }
    }
    if (ok) {
        assert_int_equal(got.n, 6);
        for (i = 0; i < 6; i++) {
            assert_int_equal(got.len[i], sizes[i]);
        }
    }
    grpc_frame_reader_free(&r);
    grpc_frame_buf_free(&b);
    assert_int_equal(fa.live, 0);
    return ok;
}

static void test_failing_allocator(void **state)
{
    (void)state;
    fa_sweep(frame_round, 100, 3);
}

/* ------------------------------------------------------------------------ */
/* Memory and header helpers */

static void test_mem_and_headers(void **state)
{
    nghttp2_mem mem;
    char *s;
    void *p;
    (void)state;

    s = grpc_mem_strndup(&failing_alloc, "abcdef", 3);
    assert_string_equal(s, "abc");
    assert_int_equal(fa.live, 1);
    grpc_mem_free(&failing_alloc, s);
    fa.budget = 0;
    assert_null(grpc_mem_strndup(&failing_alloc, "x", 1));
    fa.budget = -1;
    s = grpc_mem_strndup(NULL, "xyz", 3);
    assert_string_equal(s, "xyz");
    grpc_mem_free(NULL, s);

    /* nghttp2's memory goes through the allocator. */
    grpc_mem_nghttp2(&failing_alloc, &mem);
    p = mem.calloc(4, 4, mem.mem_user_data);
    assert_non_null(p);
    assert_int_equal(fa.live, 1);
    p = mem.realloc(p, 64, mem.mem_user_data);
    assert_non_null(p);
    mem.free(p, mem.mem_user_data);
    p = mem.malloc(8, mem.mem_user_data);
    mem.free(p, mem.mem_user_data);
    assert_int_equal(fa.live, 0);

    assert_true(grpc_bytes_eq((const uint8_t *)"te", 2, "te"));
    assert_false(grpc_bytes_eq((const uint8_t *)"tex", 2, "tex"));
    assert_false(grpc_bytes_eq((const uint8_t *)"tf", 2, "te"));
#define CT(s) grpc_is_content_type((const uint8_t *)(s), strlen(s))
    assert_true(CT("application/grpc"));
    assert_true(CT("application/grpc+proto"));
    assert_true(CT("application/grpc;charset=utf-8"));
    assert_false(CT("application/grpcx"));
    assert_false(CT("application/json"));
    assert_false(CT("application/grp"));
#undef CT
}

/* ------------------------------------------------------------------------ */
/* uvwrite */

struct src {
    const char *chunks[8];
    int next;
    int fail_at; /* -1: never */
};

static ssize_t pull(void *ud, const uint8_t **data)
{
    struct src *s = ud;
    const char *c;
    if (s->next == s->fail_at) {
        return -1;
    }
    c = s->chunks[s->next];
    if (c == NULL) {
        return 0;
    }
    s->next++;
    *data = (const uint8_t *)c;
    return (ssize_t)strlen(c);
}

static int writes_done;
static int write_status;

static void on_written(uv_write_t *req, int status)
{
    struct uvwrite *w = req->data; /* owner given to uvwrite_init */
    uvwrite_done(w);
    writes_done++;
    write_status = status;
}

/* Chunks are gathered into one write; nothing to say starts no write; a
 * failing source is IK_EIO. */
static void test_uvwrite_flush(void **state)
{
    uv_loop_t loop;
    uv_pipe_t pp;
    struct uvwrite w;
    struct src s = {{"hello ", "gathered ", "world", NULL}, 0, -1};
    char buf[64];
    int fds[2];
    ssize_t n;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_pipe_init(&loop, &pp, 0), 0);
    assert_int_equal(uv_pipe_open(&pp, fds[0]), 0);
    uvwrite_init(&w, &w);
    writes_done = 0;

    assert_int_equal(
        uvwrite_flush(&w, (uv_stream_t *)&pp, pull, &s, on_written), 0);
    assert_true(w.writing);
    assert_int_equal(uvwrite_inflight(&w), 20);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(writes_done, 1);
    assert_int_equal(write_status, 0);
    assert_false(w.writing);
    assert_int_equal(uvwrite_inflight(&w), 0);
    n = read(fds[1], buf, sizeof(buf));
    assert_int_equal(n, 20);
    assert_memory_equal(buf, "hello gathered world", 20);

    /* Nothing pending: no write. */
    assert_int_equal(
        uvwrite_flush(&w, (uv_stream_t *)&pp, pull, &s, on_written), 0);
    assert_false(w.writing);

    /* The source fails. */
    s.next = 0;
    s.fail_at = 1;
    assert_int_equal(
        uvwrite_flush(&w, (uv_stream_t *)&pp, pull, &s, on_written), IK_EIO);
    assert_false(w.writing);

    uv_close((uv_handle_t *)&pp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    uvwrite_free(&w);
    close(fds[1]);
}

/* The dirty list: marked once, unmarked from any position, popped LIFO. */
static void test_uvwrite_dirty(void **state)
{
    struct uvwrite a, b, c, *list = NULL;
    (void)state;

    uvwrite_init(&a, &a);
    uvwrite_init(&b, &b);
    uvwrite_init(&c, &c);
    assert_true(uvwrite_mark(&list, &a));
    assert_true(uvwrite_mark(&list, &b));
    assert_false(uvwrite_mark(&list, &a));
    assert_true(uvwrite_mark(&list, &c));
    uvwrite_unmark(&list, &b);
    assert_false(b.dirty);
    uvwrite_unmark(&list, &b); /* not listed: no-op */
    assert_ptr_equal(uvwrite_pop(&list), &c);
    assert_false(c.dirty);
    assert_true(uvwrite_mark(&list, &c));
    assert_ptr_equal(uvwrite_pop(&list), &c);
    assert_ptr_equal(uvwrite_pop(&list), &a);
    assert_ptr_equal(a.owner, &a);
    assert_null(uvwrite_pop(&list));
    assert_null(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reader_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_byte_by_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reader_spanning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_size_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reader_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_nomem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_release_large, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_buf_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buf_growth_and_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_buf_release_large, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_buf_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_allocator, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mem_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uvwrite_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uvwrite_dirty, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
