/* Unit tests for server/watch: etcd 3.4's Watch semantics on the hub core,
 * with a fake in-memory history, fake streams that queue packed responses,
 * fault injection, and a randomized model check of the guarantees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/errors.h"
#include "server/mvcc.h"
#include "server/watch.h"

#define K(s) (const uint8_t *)(s), (sizeof(s) - 1)
#define NOEND NULL, 0
#define FROMKEY (const uint8_t *)"", 1

/* ---- fake store: a log of every change, in revision order --------------- */

struct fentry {
    struct mvcc_kv kv; /* owns key and value */
    struct mvcc_kv prev;
    bool has_prev;
};

struct flive {
    char key[8];
    bool live;
    struct mvcc_kv kv; /* value owned */
};

struct fstore {
    int64_t rev;
    int64_t compact;
    struct fentry *log;
    size_t n, cap;
    struct flive *live;
    size_t n_live, cap_live;
    /* history instrumentation */
    int fail_history; /* fail the next N calls with fail_code */
    int fail_code;
    size_t history_calls;
    size_t max_emit_revs; /* most distinct revisions emitted by one call */
};

static struct fstore fs;
static struct watch_hub *hub;

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n) {
        memcpy(d, p, n);
    }
    return d;
}

static void fs_init(void)
{
    memset(&fs, 0, sizeof fs);
    fs.rev = 1;
    fs.compact = -1;
}

static void fs_free(void)
{
    for (size_t i = 0; i < fs.n; i++) {
        free((void *)fs.log[i].kv.key); /* prev.key aliases it */
        free((void *)fs.log[i].kv.value);
        free((void *)fs.log[i].prev.value);
    }
    for (size_t i = 0; i < fs.n_live; i++) {
        free((void *)fs.live[i].kv.value);
    }
    free(fs.log);
    free(fs.live);
    memset(&fs, 0, sizeof fs);
}

static struct flive *fs_key(const char *key)
{
    for (size_t i = 0; i < fs.n_live; i++) {
        if (strcmp(fs.live[i].key, key) == 0) {
            return &fs.live[i];
        }
    }
    if (fs.n_live == fs.cap_live) {
        fs.cap_live = fs.cap_live ? 2 * fs.cap_live : 16;
        fs.live = realloc(fs.live, fs.cap_live * sizeof *fs.live);
        assert_non_null(fs.live);
    }
    memset(&fs.live[fs.n_live], 0, sizeof fs.live[0]);
    assert_true(strlen(key) < sizeof fs.live[0].key);
    strcpy(fs.live[fs.n_live].key, key);
    return &fs.live[fs.n_live++];
}

/* One write op of a txn. del_end: NULL single key, else the range end of
 * a delete over the known keys ("" = from key). */
struct op {
    const char *key;
    const char *val; /* NULL: delete */
    const char *del_end;
};

static bool in_range(const uint8_t *k, size_t kl, const uint8_t *key,
                     size_t key_len, const uint8_t *end, size_t end_len)
{
    size_t n;
    int c;
    if (end_len == 0) {
        return kl == key_len && memcmp(k, key, kl) == 0;
    }
    n = kl < key_len ? kl : key_len;
    c = memcmp(k, key, n);
    if (c < 0 || (c == 0 && kl < key_len)) {
        return false;
    }
    if (end_len == 1 && end[0] == 0) {
        return true;
    }
    n = kl < end_len ? kl : end_len;
    c = memcmp(k, end, n);
    return c < 0 || (c == 0 && kl < end_len);
}

/* A new zeroed log entry (pointers into the log move on the next call). */
static struct fentry *log_new(void)
{
    struct fentry *e;
    if (fs.n == fs.cap) {
        fs.cap = fs.cap ? 2 * fs.cap : 64;
        fs.log = realloc(fs.log, fs.cap * sizeof *fs.log);
        assert_non_null(fs.log);
    }
    e = &fs.log[fs.n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* Log a change of live key @l (as it is now: the previous version). */
static struct fentry *log_change(const struct flive *l, uint32_t sub)
{
    struct fentry *e = log_new();
    size_t klen = strlen(l->key);
    e->kv.key = dup_bytes((const uint8_t *)l->key, klen);
    e->kv.key_len = klen;
    e->kv.mod_revision = fs.rev + 1;
    e->kv.sub = sub;
    e->has_prev = l->live;
    if (l->live) {
        e->prev = l->kv;
        e->prev.key = e->kv.key;
        e->prev.key_len = klen;
        e->prev.value = dup_bytes(l->kv.value, l->kv.value_len);
    }
    return e;
}

/*
 * Apply a txn to the fake store and notify the hub. Returns the number of
 * changes (0: no new revision).
 */
static size_t fs_txn(const struct op *ops, size_t n_ops)
{
    size_t first = fs.n;
    uint32_t sub = 0;
    for (size_t i = 0; i < n_ops; i++) {
        const struct op *o = &ops[i];
        if (o->val != NULL) {
            struct flive *l = fs_key(o->key);
            struct fentry *e = log_change(l, sub);
            if (!l->live) {
                l->kv.create_revision = fs.rev + 1;
                l->kv.version = 0;
            }
            l->live = true;
            l->kv.mod_revision = fs.rev + 1;
            l->kv.version++;
            l->kv.lease = (int64_t)strlen(o->val) % 3;
            free((void *)l->kv.value);
            l->kv.value = dup_bytes((const uint8_t *)o->val, strlen(o->val));
            l->kv.value_len = strlen(o->val);
            l->kv.sub = sub;
            {
                const uint8_t *key = e->kv.key;
                size_t key_len = e->kv.key_len;
                e->kv = l->kv;
                e->kv.key = key;
                e->kv.key_len = key_len;
                e->kv.value = dup_bytes(l->kv.value, l->kv.value_len);
            }
            sub++;
        } else {
            const uint8_t *end = NULL;
            size_t end_len = 0;
            size_t idx[64], m = 0;
            if (o->del_end != NULL) {
                end = (const uint8_t *)(o->del_end[0] ? o->del_end : "");
                end_len = o->del_end[0] ? strlen(o->del_end) : 1;
            }
            for (size_t k = 0; k < fs.n_live; k++) {
                struct flive *l = &fs.live[k];
                if (l->live && in_range((const uint8_t *)l->key, strlen(l->key),
                                        (const uint8_t *)o->key, strlen(o->key),
                                        end, end_len)) {
                    assert_true(m < 64);
                    idx[m++] = k;
                }
            }
            /* tombstones in key order */
            for (size_t a = 1; a < m; a++) {
                for (size_t b = a; b > 0 && strcmp(fs.live[idx[b - 1]].key,
                                                   fs.live[idx[b]].key) > 0;
                     b--) {
                    size_t t = idx[b];
                    idx[b] = idx[b - 1];
                    idx[b - 1] = t;
                }
            }
            for (size_t a = 0; a < m; a++) {
                struct flive *l = &fs.live[idx[a]];
                log_change(l, sub++);
                l->live = false;
                free((void *)l->kv.value);
                memset(&l->kv, 0, sizeof l->kv);
            }
        }
    }
    if (fs.n == first) {
        return 0;
    }
    fs.rev++;
    {
        size_t n = fs.n - first;
        struct watch_change *ch = calloc(n, sizeof *ch);
        assert_non_null(ch);
        for (size_t i = 0; i < n; i++) {
            ch[i].kv = &fs.log[first + i].kv;
            ch[i].prev =
                fs.log[first + i].has_prev ? &fs.log[first + i].prev : NULL;
        }
        if (hub != NULL) {
            assert_int_equal(watch_hub_notify(hub, fs.rev, ch, n), 0);
        }
        free(ch);
        return n;
    }
}

static void put(const char *key, const char *val)
{
    struct op o = {key, val, NULL};
    assert_int_equal(fs_txn(&o, 1), 1);
}

static size_t del(const char *key, const char *end)
{
    struct op o = {key, NULL, end};
    return fs_txn(&o, 1);
}

static void compact(int64_t rev)
{
    fs.compact = rev;
    watch_hub_compact(hub, rev);
}

static int fake_history(void *arg, const uint8_t *key, size_t key_len,
                        const uint8_t *end, size_t end_len, int64_t from,
                        int64_t to, bool want_prev, watch_emit_fn emit,
                        void *ctx)
{
    struct fstore *f = arg;
    size_t lo = 0, hi = f->n, revs = 0;
    int64_t last = 0;
    f->history_calls++;
    assert_int_equal(to, f->rev);
    assert_true(from >= 1 && from <= to);
    if (f->fail_history > 0) {
        f->fail_history--;
        return f->fail_code;
    }
    if (from < f->compact) {
        return IK_ECOMPACTED;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->log[mid].kv.mod_revision < from) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < f->n && f->log[i].kv.mod_revision <= to; i++) {
        const struct fentry *e = &f->log[i];
        if (!in_range(e->kv.key, e->kv.key_len, key, key_len, end, end_len)) {
            continue;
        }
        if (e->kv.mod_revision != last) {
            last = e->kv.mod_revision;
            revs++;
        }
        if (revs > f->max_emit_revs) {
            f->max_emit_revs = revs;
        }
        if (emit(ctx, &e->kv, want_prev && e->has_prev ? &e->prev : NULL)) {
            return 0;
        }
    }
    return 0;
}

/* ---- fake streams -------------------------------------------------------- */

struct qmsg {
    uint8_t *data;
    size_t len;
};

struct fstream {
    struct watch_stream *ws;
    struct qmsg *q;
    size_t head, n, cap;
    size_t queued;     /* bytes queued */
    size_t max_queued; /* most ever queued */
    bool fail_send;
    size_t sends;
    bool mid_fragment; /* last response sent had fragment=true */
    int index;         /* for the random test */
};

/* Extra checks on every response sent (set by some tests). */
static void (*on_send_check)(struct fstream *st,
                             const Etcdserverpb__WatchResponse *r);

static int fake_send(void *arg, const Etcdserverpb__WatchResponse *r)
{
    struct fstream *st = arg;
    size_t len;
    uint8_t *buf;
    if (st->fail_send) {
        return IK_ENOMEM;
    }
    if (on_send_check != NULL) {
        on_send_check(st, r);
    }
    len = protobuf_c_message_get_packed_size(&r->base);
    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(&r->base, buf), len);
    if (st->n == st->cap) {
        struct qmsg *nq;
        size_t ncap = st->cap ? 2 * st->cap : 16;
        nq = malloc(ncap * sizeof *nq);
        assert_non_null(nq);
        for (size_t i = 0; i < st->n; i++) {
            nq[i] = st->q[(st->head + i) % st->cap];
        }
        free(st->q);
        st->q = nq;
        st->cap = ncap;
        st->head = 0;
    }
    st->q[(st->head + st->n) % st->cap].data = buf;
    st->q[(st->head + st->n) % st->cap].len = len;
    st->n++;
    st->queued += len;
    if (st->queued > st->max_queued) {
        st->max_queued = st->queued;
    }
    st->sends++;
    st->mid_fragment = r->fragment;
    return 0;
}

static size_t fake_queued(void *arg)
{
    return ((struct fstream *)arg)->queued;
}

static const struct watch_stream_ops fake_ops = {fake_send, fake_queued};

static void st_open(struct fstream *st)
{
    memset(st, 0, sizeof *st);
    assert_int_equal(watch_stream_new(hub, &fake_ops, st, &st->ws), 0);
}

static void st_drop_queue(struct fstream *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->q[(st->head + i) % st->cap].data);
    }
    free(st->q);
    st->q = NULL;
    st->n = st->cap = st->head = 0;
    st->queued = 0;
}

static void st_close(struct fstream *st)
{
    watch_stream_free(st->ws);
    st->ws = NULL;
    st_drop_queue(st);
}

/* Next queued response, unpacked (caller frees with resp_free), or NULL. */
static Etcdserverpb__WatchResponse *st_pop(struct fstream *st)
{
    Etcdserverpb__WatchResponse *r;
    struct qmsg m;
    if (st->n == 0) {
        return NULL;
    }
    m = st->q[st->head];
    st->head = (st->head + 1) % st->cap;
    st->n--;
    st->queued -= m.len;
    r = etcdserverpb__watch_response__unpack(NULL, m.len, m.data);
    assert_non_null(r);
    free(m.data);
    return r;
}

static void resp_free(Etcdserverpb__WatchResponse *r)
{
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

/* Drop everything queued, asserting it held exactly @n responses. */
static void st_expect_count(struct fstream *st, size_t n)
{
    assert_int_equal(st->n, n);
}

/* ---- requests -------------------------------------------------------------
 */

struct copt {
    int64_t start;
    int64_t id;
    bool prev_kv;
    bool progress;
    bool fragment;
    bool noput;
    bool nodel;
    bool bogus_filter;
};

static int create_req(struct fstream *st, const uint8_t *key, size_t key_len,
                      const uint8_t *end, size_t end_len, const struct copt *o)
{
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest c =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest__FilterType filters[3];
    struct copt none = {0};
    if (o == NULL) {
        o = &none;
    }
    c.key.data = (uint8_t *)key;
    c.key.len = key_len;
    c.range_end.data = (uint8_t *)end;
    c.range_end.len = end_len;
    c.start_revision = o->start;
    c.watch_id = o->id;
    c.prev_kv = o->prev_kv;
    c.progress_notify = o->progress;
    c.fragment = o->fragment;
    c.filters = filters;
    if (o->noput) {
        filters[c.n_filters++] =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
    }
    if (o->nodel) {
        filters[c.n_filters++] =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
    }
    if (o->bogus_filter) {
        filters[c.n_filters++] =
            (Etcdserverpb__WatchCreateRequest__FilterType)7;
    }
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &c;
    return watch_stream_recv(st->ws, &req);
}

static int cancel_req(struct fstream *st, int64_t id)
{
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCancelRequest c =
        ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
    c.watch_id = id;
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    req.cancel_request = &c;
    return watch_stream_recv(st->ws, &req);
}

static int progress_req(struct fstream *st)
{
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchProgressRequest p =
        ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    req.progress_request = &p;
    return watch_stream_recv(st->ws, &req);
}

/* Create and consume the created response; returns the watch id. */
static int64_t watch(struct fstream *st, const uint8_t *key, size_t key_len,
                     const uint8_t *end, size_t end_len, const struct copt *o)
{
    Etcdserverpb__WatchResponse *r;
    int64_t id;
    size_t before = st->n;
    assert_int_equal(create_req(st, key, key_len, end, end_len, o), 0);
    assert_true(st->n > before);
    /* the created response is the first one queued by the create */
    assert_int_equal(before, 0);
    r = st_pop(st);
    assert_true(r->created);
    assert_false(r->canceled);
    assert_int_equal(r->header->revision, watch_hub_rev(hub));
    id = r->watch_id;
    resp_free(r);
    return id;
}

/* ---- hub setup -------------------------------------------------------------
 */

static void fill_header(void *arg, Etcdserverpb__ResponseHeader *h)
{
    (void)arg;
    h->cluster_id = 0x1234567890abcdefull;
    h->member_id = 42;
    h->raft_term = 7;
}

static struct watch_hub_config base_cfg(void)
{
    struct watch_hub_config c;
    memset(&c, 0, sizeof c);
    c.rev = fs.rev;
    c.compact_rev = fs.compact;
    c.history = fake_history;
    c.history_arg = &fs;
    c.fill_header = fill_header;
    return c;
}

static void hub_open(const struct watch_hub_config *c)
{
    assert_int_equal(watch_hub_new(c, &hub), 0);
}

static int setup(void **state)
{
    struct watch_hub_config c;
    (void)state;
    fs_init();
    c = base_cfg();
    hub_open(&c);
    on_send_check = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    watch_hub_free(hub);
    hub = NULL;
    fs_free();
    on_send_check = NULL;
    watch_fail_alloc_hook = NULL;
    return 0;
}

static void expect_kv(const Mvccpb__KeyValue *kv, const char *key,
                      const char *val, int64_t create, int64_t mod,
                      int64_t version)
{
    assert_non_null(kv);
    assert_int_equal(kv->key.len, strlen(key));
    assert_memory_equal(kv->key.data, key, strlen(key));
    assert_int_equal(kv->mod_revision, mod);
    assert_int_equal(kv->create_revision, create);
    assert_int_equal(kv->version, version);
    if (val == NULL) {
        assert_int_equal(kv->value.len, 0);
    } else {
        assert_int_equal(kv->value.len, strlen(val));
        assert_memory_equal(kv->value.data, val, strlen(val));
    }
}

static void expect_put(const Mvccpb__Event *e, const char *key, const char *val,
                       int64_t create, int64_t mod, int64_t version)
{
    assert_int_equal(e->type, MVCCPB__EVENT__EVENT_TYPE__PUT);
    expect_kv(e->kv, key, val, create, mod, version);
}

static void expect_del(const Mvccpb__Event *e, const char *key, int64_t mod)
{
    assert_int_equal(e->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
    expect_kv(e->kv, key, NULL, 0, mod, 0);
    assert_int_equal(e->kv->lease, 0);
}

/* ---- tests ----------------------------------------------------------------
 */

static void test_new_rejects(void **state)
{
    struct watch_hub_config c = base_cfg();
    struct watch_hub *h2 = NULL;
    struct fstream st;
    struct watch_stream_ops bad = {fake_send, NULL};
    (void)state;
    c.history = NULL;
    assert_int_equal(watch_hub_new(&c, &h2), IK_EINVAL);
    c = base_cfg();
    c.rev = 0;
    assert_int_equal(watch_hub_new(&c, &h2), IK_EINVAL);
    c = base_cfg();
    c.compact_rev = 5;
    assert_int_equal(watch_hub_new(&c, &h2), IK_EINVAL);
    assert_null(h2);
    assert_int_equal(watch_stream_new(hub, &bad, &st, &st.ws), IK_EINVAL);
    assert_int_equal(watch_hub_rev(hub), 1);
    assert_int_equal(watch_hub_compact_rev(hub), -1);
    watch_hub_free(NULL);
    watch_stream_free(NULL);
}

/* created responses, automatic and chosen ids, duplicates, header fields */
static void test_create_ids(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    (void)state;
    st_open(&st);
    put("a", "1"); /* rev 2 */

    assert_int_equal(watch(&st, K("a"), NOEND, NULL), 0);
    assert_int_equal(watch(&st, K("a"), NOEND, NULL), 1);
    o.id = 3;
    assert_int_equal(watch(&st, K("a"), NOEND, &o), 3);
    assert_int_equal(watch(&st, K("a"), NOEND, NULL), 2);
    /* auto ids skip ids in use */
    assert_int_equal(watch(&st, K("a"), NOEND, NULL), 4);
    o.id = -7; /* etcd accepts negative ids */
    assert_int_equal(watch(&st, K("a"), NOEND, &o), -7);

    /* duplicate id: created + canceled with id -1 and etcd's reason */
    o.id = 3;
    assert_int_equal(create_req(&st, K("b"), NOEND, &o), 0);
    r = st_pop(&st);
    assert_non_null(r);
    assert_true(r->created);
    assert_true(r->canceled);
    assert_int_equal(r->watch_id, -1);
    assert_string_equal(r->cancel_reason,
                        "mvcc: duplicate watch ID provided on the WatchStream");
    assert_int_equal(r->header->revision, 2);
    assert_int_equal(r->header->cluster_id, 0x1234567890abcdefull);
    assert_int_equal(r->header->member_id, 42);
    assert_int_equal(r->header->raft_term, 7);
    assert_int_equal(r->compact_revision, 0);
    resp_free(r);
    assert_null(st_pop(&st));

    /* cancel frees the id for reuse; auto ids never go back */
    assert_int_equal(cancel_req(&st, 3), 0);
    r = st_pop(&st);
    assert_true(r->canceled);
    assert_false(r->created);
    assert_int_equal(r->watch_id, 3);
    assert_int_equal(r->header->revision, 2);
    assert_string_equal(r->cancel_reason, "");
    resp_free(r);
    o.id = 3;
    assert_int_equal(watch(&st, K("a"), NOEND, &o), 3);
    assert_int_equal(watch(&st, K("a"), NOEND, NULL), 5);

    /* ids are per stream */
    {
        struct fstream st2;
        st_open(&st2);
        assert_int_equal(watch(&st2, K("a"), NOEND, NULL), 0);
        st_close(&st2);
    }
    {
        struct watch_hub_stats s;
        watch_hub_stats(hub, &s);
        assert_int_equal(s.streams, 1);
        assert_int_equal(s.watchers, 7);
        assert_int_equal(s.synced, 7);
        assert_int_equal(s.key_nodes, 1);
    }
    st_close(&st);
}

/* the per-stream id table under many creates and cancels */
static void test_id_table(void **state)
{
    enum { IDS = 3000 };
    static bool live[IDS + 1];
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    (void)state;
    memset(live, 0, sizeof live);
    srand(7);
    st_open(&st);
    for (int i = 0; i < 2 * IDS; i++) {
        int64_t id = 1 + rand() % IDS;
        if (rand() % 3 == 0 && live[id]) {
            assert_int_equal(cancel_req(&st, id), 0);
            live[id] = false;
        } else if (!live[id]) {
            o.id = id;
            assert_int_equal(create_req(&st, K("k"), NOEND, &o), 0);
            live[id] = true;
        }
        st_drop_queue(&st);
    }
    /* every id: taken exactly when live */
    for (int64_t id = 1; id <= IDS; id++) {
        o.id = id;
        assert_int_equal(create_req(&st, K("k"), NOEND, &o), 0);
        r = st_pop(&st);
        assert_int_equal(r->watch_id, live[id] ? -1 : id);
        resp_free(r);
        if (!live[id]) {
            assert_int_equal(cancel_req(&st, id), 0);
            r = st_pop(&st);
            assert_true(r->canceled);
            assert_int_equal(r->watch_id, id);
            resp_free(r);
        }
    }
    /* and the live ones all cancel */
    for (int64_t id = 1; id <= IDS; id++) {
        if (live[id]) {
            assert_int_equal(cancel_req(&st, id), 0);
            r = st_pop(&st);
            assert_int_equal(r->watch_id, id);
            resp_free(r);
        }
    }
    {
        struct watch_hub_stats s;
        watch_hub_stats(hub, &s);
        assert_int_equal(s.watchers, 0);
        assert_int_equal(s.key_nodes, 0);
    }
    st_close(&st);
}

static void test_empty_range(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    (void)state;
    st_open(&st);
    o.id = 1;
    assert_int_equal(watch(&st, K("a"), NOEND, &o), 1);

    assert_int_equal(create_req(&st, K("b"), K("a"), NULL), 0);
    r = st_pop(&st);
    assert_true(r->created && r->canceled);
    assert_int_equal(r->watch_id, -1);
    assert_string_equal(r->cancel_reason, "mvcc: watcher range is empty");
    assert_int_equal(r->header->revision, 1);
    resp_free(r);
    /* equal bounds are empty too; the range check comes before the id */
    assert_int_equal(create_req(&st, K("a"), K("a"), &o), 0);
    r = st_pop(&st);
    assert_string_equal(r->cancel_reason, "mvcc: watcher range is empty");
    resp_free(r);
    /* range_end "\0" is "from key", never empty, even from the empty
     * key (which means "\0": every key) */
    assert_int_equal(watch(&st, NOEND, FROMKEY, NULL), 0);
    assert_int_equal(watch(&st, K("zzz"), FROMKEY, NULL), 2);
    /* any other end at or below the key is empty */
    assert_int_equal(create_req(&st, K("a"), K("\0\1"), NULL), 0);
    r = st_pop(&st);
    assert_string_equal(r->cancel_reason, "mvcc: watcher range is empty");
    resp_free(r);
    assert_int_equal(create_req(&st, NOEND, K("\0"), NULL), 0);
    r = st_pop(&st);
    assert_false(r->canceled);
    assert_int_equal(r->watch_id, 3);
    resp_free(r);
    {
        struct watch_hub_stats s;
        watch_hub_stats(hub, &s);
        assert_int_equal(s.watchers, 4);
        assert_int_equal(s.range_nodes, 2);
    }
    put("b", "1");
    st_expect_count(&st, 2); /* the two all-keys watchers */
    st_close(&st);
}

/* single keys, prefixes, from-key, all keys; event fields and headers */
static void test_match_forms(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    int64_t w_a, w_pre, w_from, w_all, w_zero;
    (void)state;
    st_open(&st);
    w_a = watch(&st, K("a"), NOEND, NULL);
    w_pre = watch(&st, K("a"), K("b"), NULL);
    w_from = watch(&st, K("b"), FROMKEY, NULL);
    w_all = watch(&st, NOEND, FROMKEY, NULL);
    w_zero = watch(&st, NOEND, NOEND, NULL); /* the key "\0" only */

    put("a", "1");                       /* rev 2: w_a, w_pre, w_all */
    put("ab", "2");                      /* rev 3: w_pre, w_all */
    put("b", "3");                       /* rev 4: w_from, w_all */
    put("zz", "4");                      /* rev 5: w_from, w_all */
    assert_int_equal(del("a", NULL), 1); /* rev 6: w_a, w_pre, w_all */

    struct {
        int64_t id;
        int64_t rev;
    } want[] = {{w_a, 2},   {w_pre, 2},  {w_all, 2}, {w_pre, 3},
                {w_all, 3}, {w_from, 4}, {w_all, 4}, {w_from, 5},
                {w_all, 5}, {w_a, 6},    {w_pre, 6}, {w_all, 6}};
    /* per revision, order among watchers is unspecified: compare sets */
    size_t got = 0;
    while ((r = st_pop(&st)) != NULL) {
        bool found = false;
        assert_int_equal(r->n_events, 1);
        assert_int_equal(r->header->revision, r->events[0]->kv->mod_revision);
        assert_false(r->created || r->canceled || r->fragment);
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            if (want[i].id == r->watch_id &&
                want[i].rev == r->header->revision) {
                want[i].id = -100;
                found = true;
                break;
            }
        }
        assert_true(found);
        if (r->header->revision == 6) {
            expect_del(r->events[0], "a", 6);
            assert_null(r->events[0]->prev_kv);
        } else if (r->header->revision == 2) {
            expect_put(r->events[0], "a", "1", 2, 2, 1);
            assert_int_equal(r->events[0]->kv->lease, 1);
        }
        got++;
        resp_free(r);
    }
    assert_int_equal(got, sizeof want / sizeof want[0]);
    (void)w_zero; /* the key "\0" was never written: nothing for it */
    st_close(&st);
}

/* all changes of a txn: one response per watcher, in commit order */
static void test_txn_atomic(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    int64_t w_all, w_c;
    struct op ops[] = {
        {"c", "1", NULL}, {"a", "2", NULL}, {"b", "3", NULL}, {"d", "4", NULL}};
    (void)state;
    st_open(&st);
    w_all = watch(&st, K("a"), FROMKEY, NULL);
    w_c = watch(&st, K("c"), NOEND, NULL);
    assert_int_equal(fs_txn(ops, 4), 4);
    st_expect_count(&st, 2);
    for (int i = 0; i < 2; i++) {
        r = st_pop(&st);
        assert_int_equal(r->header->revision, 2);
        if (r->watch_id == w_all) {
            assert_int_equal(r->n_events, 4);
            expect_put(r->events[0], "c", "1", 2, 2, 1);
            expect_put(r->events[1], "a", "2", 2, 2, 1);
            expect_put(r->events[2], "b", "3", 2, 2, 1);
            expect_put(r->events[3], "d", "4", 2, 2, 1);
        } else {
            assert_int_equal(r->watch_id, w_c);
            assert_int_equal(r->n_events, 1);
            expect_put(r->events[0], "c", "1", 2, 2, 1);
        }
        resp_free(r);
    }
    /* a range delete: tombstones in key order, one revision */
    assert_int_equal(del("a", "c"), 2);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, w_all);
    assert_int_equal(r->n_events, 2);
    expect_del(r->events[0], "a", 3);
    expect_del(r->events[1], "b", 3);
    resp_free(r);
    assert_null(st_pop(&st));
    st_close(&st);
}

static void test_prev_kv(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    int64_t wp, wn;
    (void)state;
    st_open(&st);
    o.prev_kv = true;
    wp = watch(&st, K("k"), NOEND, &o);
    wn = watch(&st, K("k"), NOEND, NULL);
    put("k", "v1"); /* 2: create, no prev */
    put("k", "v2"); /* 3: prev v1 */
    del("k", NULL); /* 4: prev v2 */
    put("k", "v3"); /* 5: re-create, no prev */
    for (int rev = 2; rev <= 5; rev++) {
        for (int i = 0; i < 2; i++) {
            r = st_pop(&st);
            assert_non_null(r);
            assert_int_equal(r->header->revision, rev);
            assert_int_equal(r->n_events, 1);
            if (r->watch_id == wn || rev == 2 || rev == 5) {
                assert_null(r->events[0]->prev_kv);
            } else {
                assert_int_equal(r->watch_id, wp);
                if (rev == 3) {
                    expect_kv(r->events[0]->prev_kv, "k", "v1", 2, 2, 1);
                } else {
                    expect_kv(r->events[0]->prev_kv, "k", "v2", 2, 3, 2);
                }
            }
            resp_free(r);
        }
    }
    /* the same through history */
    o.start = 2;
    assert_int_equal(create_req(&st, K("k"), NOEND, &o), 0);
    r = st_pop(&st);
    assert_true(r->created);
    resp_free(r);
    r = st_pop(&st);
    assert_int_equal(r->n_events, 4);
    assert_int_equal(r->header->revision, 5);
    assert_null(r->events[0]->prev_kv);
    expect_kv(r->events[1]->prev_kv, "k", "v1", 2, 2, 1);
    expect_del(r->events[2], "k", 4);
    expect_kv(r->events[2]->prev_kv, "k", "v2", 2, 3, 2);
    expect_put(r->events[3], "k", "v3", 5, 5, 1);
    assert_null(r->events[3]->prev_kv);
    resp_free(r);
    st_close(&st);
}

static void test_filters(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt np = {.noput = true}, nd = {.nodel = true},
                both = {.noput = true, .nodel = true},
                bogus = {.bogus_filter = true};
    int64_t w_np, w_nd, w_bogus;
    (void)state;
    st_open(&st);
    w_np = watch(&st, K("f"), NOEND, &np);
    w_nd = watch(&st, K("f"), NOEND, &nd);
    watch(&st, K("f"), NOEND, &both);
    w_bogus = watch(&st, K("f"), NOEND, &bogus);
    put("f", "1");  /* 2 */
    del("f", NULL); /* 3 */
    /* rev 2: w_nd and w_bogus; rev 3: w_np and w_bogus */
    for (int i = 0; i < 4; i++) {
        r = st_pop(&st);
        assert_non_null(r);
        if (r->header->revision == 2) {
            assert_true(r->watch_id == w_nd || r->watch_id == w_bogus);
            assert_int_equal(r->events[0]->type,
                             MVCCPB__EVENT__EVENT_TYPE__PUT);
        } else {
            assert_int_equal(r->header->revision, 3);
            assert_true(r->watch_id == w_np || r->watch_id == w_bogus);
            assert_int_equal(r->events[0]->type,
                             MVCCPB__EVENT__EVENT_TYPE__DELETE);
        }
        resp_free(r);
    }
    assert_null(st_pop(&st));
    /* history applies the filters too, and a filtered-out batch sends
     * nothing */
    np.start = 2;
    both.start = 2;
    assert_int_equal(create_req(&st, K("f"), NOEND, &np), 0);
    assert_int_equal(create_req(&st, K("f"), NOEND, &both), 0);
    r = st_pop(&st);
    assert_true(r->created);
    resp_free(r);
    r = st_pop(&st);
    assert_int_equal(r->n_events, 1);
    expect_del(r->events[0], "f", 3);
    resp_free(r);
    r = st_pop(&st);
    assert_true(r->created);
    resp_free(r);
    assert_null(st_pop(&st));
    st_close(&st);
}

/* start_revision: history first (header = current revision), future
 * starts, 0 = next */
static void test_start_revision(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    int64_t id;
    (void)state;
    st_open(&st);
    for (int i = 0; i < 9; i++) {
        char v[8];
        snprintf(v, sizeof v, "v%d", i + 2);
        put(i % 2 ? "x" : "y", v); /* revs 2..10 */
    }
    o.start = 3;
    id = watch(&st, K("x"), K("z"), &o);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, id);
    assert_int_equal(r->header->revision, 10);
    assert_int_equal(r->n_events, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(r->events[i]->kv->mod_revision, 3 + (int64_t)i);
    }
    resp_free(r);
    put("x", "live"); /* 11 */
    r = st_pop(&st);
    assert_int_equal(r->header->revision, 11);
    assert_int_equal(r->n_events, 1);
    resp_free(r);

    /* a future start waits for its revision */
    o.start = 13;
    id = watch(&st, K("x"), NOEND, &o);
    put("x", "12");
    r = st_pop(&st); /* only the first watcher */
    assert_int_not_equal(r->watch_id, id);
    assert_int_equal(r->header->revision, 12);
    resp_free(r);
    assert_null(st_pop(&st));
    put("x", "13");
    st_expect_count(&st, 2);
    for (int i = 0; i < 2; i++) {
        r = st_pop(&st);
        assert_int_equal(r->header->revision, 13);
        assert_int_equal(r->events[0]->kv->mod_revision, 13);
        resp_free(r);
    }
    st_close(&st);
}

static void test_compaction(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    struct watch_hub_stats s;
    (void)state;
    st_open(&st);
    for (int i = 0; i < 6; i++) {
        put("c", "v"); /* revs 2..7 */
    }
    compact(5);
    o.start = 3;
    o.id = 9;
    assert_int_equal(create_req(&st, K("c"), NOEND, &o), 0);
    r = st_pop(&st);
    assert_true(r->created);
    assert_false(r->canceled);
    assert_int_equal(r->watch_id, 9);
    assert_int_equal(r->header->revision, 7);
    resp_free(r);
    r = st_pop(&st);
    assert_non_null(r);
    assert_false(r->created);
    assert_true(r->canceled);
    assert_int_equal(r->watch_id, 9);
    assert_int_equal(r->compact_revision, 5);
    assert_int_equal(r->header->revision, 0); /* as etcd sends it */
    assert_int_equal(r->header->member_id, 42);
    assert_int_equal(r->n_events, 0);
    assert_string_equal(r->cancel_reason, "");
    resp_free(r);
    watch_hub_stats(hub, &s);
    assert_int_equal(s.compacted, 1);
    assert_int_equal(s.key_nodes, 0);
    /* the id stays taken until canceled; no events reach it */
    put("c", "8");
    assert_null(st_pop(&st));
    assert_int_equal(create_req(&st, K("c"), NOEND, &o), 0);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, -1);
    assert_true(r->canceled);
    resp_free(r);
    assert_int_equal(cancel_req(&st, 9), 0);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, 9);
    assert_true(r->canceled);
    assert_int_equal(r->header->revision, 8);
    resp_free(r);
    watch_hub_stats(hub, &s);
    assert_int_equal(s.watchers, 0);

    /* exactly the compacted revision is readable */
    o.start = 5;
    o.id = 0;
    watch(&st, K("c"), NOEND, &o);
    r = st_pop(&st);
    assert_int_equal(r->n_events, 4);
    assert_int_equal(r->events[0]->kv->mod_revision, 5);
    resp_free(r);
    st_close(&st);
}

/* negative start revisions, as etcd 3.4 treats them */
static void test_negative_start(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    (void)state;
    st_open(&st);
    put("n", "1");
    /* below the "never compacted" revision -1: compaction cancel, -1 */
    o.start = -5;
    watch(&st, K("n"), NOEND, &o);
    r = st_pop(&st);
    assert_true(r->canceled);
    assert_int_equal(r->compact_revision, -1);
    resp_free(r);
    /* -1: no history, then live events */
    o.start = -1;
    watch(&st, K("n"), NOEND, &o);
    assert_null(st_pop(&st));
    put("n", "2");
    r = st_pop(&st);
    assert_int_equal(r->n_events, 1);
    assert_int_equal(r->events[0]->kv->mod_revision, 3);
    resp_free(r);
    /* once compacted, any negative start is below it */
    compact(2);
    watch(&st, K("n"), NOEND, &o);
    r = st_pop(&st);
    assert_true(r->canceled);
    assert_int_equal(r->compact_revision, 2);
    resp_free(r);
    st_close(&st);
}

static void test_cancel(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    int64_t id;
    (void)state;
    st_open(&st);
    id = watch(&st, K("q"), NOEND, NULL);
    put("q", "1");
    r = st_pop(&st);
    assert_int_equal(r->n_events, 1);
    resp_free(r);
    /* unknown id: no answer at all */
    assert_int_equal(cancel_req(&st, 77), 0);
    assert_null(st_pop(&st));
    assert_int_equal(cancel_req(&st, id), 0);
    r = st_pop(&st);
    assert_true(r->canceled);
    assert_int_equal(r->watch_id, id);
    assert_int_equal(r->header->revision, 2);
    resp_free(r);
    put("q", "2");
    assert_null(st_pop(&st));
    /* canceling twice: the second is unknown */
    assert_int_equal(cancel_req(&st, id), 0);
    assert_null(st_pop(&st));
    /* requests etcd ignores */
    {
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        assert_int_equal(watch_stream_recv(st.ws, &req), 0);
        req.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        assert_int_equal(watch_stream_recv(st.ws, &req), 0);
        assert_null(st_pop(&st));
    }
    st_close(&st);
}

/* a stalled stream does not hold back the others; its watchers catch up
 * from history in batches once it drains */
static void test_backpressure(void **state)
{
    struct watch_hub_config c;
    struct fstream slow, fast;
    Etcdserverpb__WatchResponse *r;
    struct watch_hub_stats s;
    int64_t next = 2;
    (void)state;
    watch_hub_free(hub);
    c = base_cfg();
    c.max_queued_bytes = 200;
    c.batch_max_revs = 3;
    hub_open(&c);
    st_open(&slow);
    st_open(&fast);
    watch(&slow, K("p"), K("q"), NULL);
    watch(&fast, K("p"), K("q"), NULL);
    for (int i = 0; i < 40; i++) {
        put("p1", "some value that takes room");
        /* the fast stream gets every event at once */
        r = st_pop(&fast);
        assert_non_null(r);
        assert_int_equal(r->events[0]->kv->mod_revision, 2 + i);
        resp_free(r);
    }
    /* the slow stream stopped near its bound and its watcher is unsynced */
    assert_true(slow.queued >= 200);
    assert_true(slow.max_queued < 200 + 120);
    watch_hub_stats(hub, &s);
    assert_int_equal(s.unsynced, 1);
    assert_int_equal(s.synced, 1);
    /* nothing moves until the stream has room */
    assert_false(watch_hub_sync(hub));
    /* drain: everything arrives once, in order, in batches of <= 3 revs */
    for (int guard = 0; guard < 1000; guard++) {
        size_t nres = 0;
        while ((r = st_pop(&slow)) != NULL) {
            int64_t first = next;
            for (size_t i = 0; i < r->n_events; i++) {
                assert_int_equal(r->events[i]->kv->mod_revision, next);
                next++;
            }
            assert_true(next - first <= 3);
            assert_int_equal(r->header->revision >= next - 1, 1);
            resp_free(r);
            nres++;
        }
        if (nres == 0) {
            break;
        }
        assert_int_equal(watch_stream_writable(slow.ws), 0);
        assert_true(slow.max_queued < 200 + 200);
    }
    assert_int_equal(next, 42);
    watch_hub_stats(hub, &s);
    assert_int_equal(s.unsynced, 0);
    assert_true(fs.max_emit_revs <= 4);
    /* and it is live again */
    put("p2", "x");
    r = st_pop(&slow);
    assert_int_equal(r->events[0]->kv->mod_revision, 42);
    assert_int_equal(r->header->revision, 42);
    resp_free(r);
    st_close(&slow);
    st_close(&fast);
}

/* batches hold whole revisions even when a revision has many events */
static void test_batches_whole_revisions(void **state)
{
    struct watch_hub_config c;
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {0};
    int64_t last = 0;
    size_t total = 0, responses = 0;
    (void)state;
    watch_hub_free(hub);
    c = base_cfg();
    c.batch_max_revs = 2;
    c.batch_max_bytes = 10; /* tiny: one revision per batch */
    c.sync_budget = 100;
    hub_open(&c);
    st_open(&st);
    for (int i = 0; i < 5; i++) {
        struct op ops[] = {
            {"a", "1", NULL}, {"b", "2", NULL}, {"c", "3", NULL}};
        fs_txn(ops, 3);
    }
    o.start = 1;
    watch(&st, K("a"), FROMKEY, &o);
    while ((r = st_pop(&st)) != NULL) {
        assert_int_equal(r->n_events, 3);
        assert_true(r->events[0]->kv->mod_revision > last);
        last = r->events[0]->kv->mod_revision;
        for (size_t i = 0; i < 3; i++) {
            assert_int_equal(r->events[i]->kv->mod_revision, last);
        }
        assert_int_equal(r->header->revision, 6);
        total += r->n_events;
        responses++;
        resp_free(r);
    }
    assert_int_equal(total, 15);
    assert_int_equal(responses, 5);
    st_close(&st);
}

/* sync budget: many unsynced watchers are served round-robin */
static void test_sync_budget(void **state)
{
    struct watch_hub_config c;
    struct fstream st[4];
    struct copt o = {.start = 2};
    struct watch_hub_stats s;
    int calls = 0;
    (void)state;
    for (int i = 0; i < 30; i++) {
        put("s", "v");
    }
    watch_hub_free(hub);
    c = base_cfg();
    c.batch_max_revs = 2;
    c.sync_budget = 1;
    hub_open(&c);
    for (int i = 0; i < 4; i++) {
        st_open(&st[i]);
        for (int j = 0; j < 5; j++) {
            assert_int_equal(create_req(&st[i], K("s"), NOEND, &o), 0);
        }
    }
    watch_hub_stats(hub, &s);
    assert_true(s.unsynced > 0);
    while (watch_hub_sync(hub)) {
        calls++;
        assert_true(calls < 10000);
    }
    watch_hub_stats(hub, &s);
    assert_int_equal(s.unsynced, 0);
    assert_int_equal(s.synced, 20);
    /* 20 watchers x 30 revisions in batches of 2 */
    assert_true(calls >= 20 * 15 - 20 - 1);
    for (int i = 0; i < 4; i++) {
        size_t events = 0;
        Etcdserverpb__WatchResponse *r;
        while ((r = st_pop(&st[i])) != NULL) {
            events += r->n_events;
            resp_free(r);
        }
        assert_int_equal(events, 5 * 30);
        st_close(&st[i]);
    }
}

/* WatchProgressRequest: watch_id -1 with the current revision, held until
 * every watcher of the stream is synced */
static void test_progress_request(void **state)
{
    struct watch_hub_config c;
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    int64_t last_ev = 0;
    (void)state;
    watch_hub_free(hub);
    c = base_cfg();
    c.max_queued_bytes = 100;
    hub_open(&c);
    st_open(&st);
    /* no watchers: answered at once (etcd 3.4 does) */
    put("x", "1");
    assert_int_equal(progress_req(&st), 0);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, -1);
    assert_int_equal(r->header->revision, 2);
    assert_false(r->created || r->canceled);
    assert_int_equal(r->n_events, 0);
    assert_int_equal(r->compact_revision, 0);
    resp_free(r);
    watch(&st, K("x"), NOEND, NULL);
    assert_int_equal(progress_req(&st), 0);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, -1);
    assert_int_equal(r->header->revision, 2);
    resp_free(r);
    /* stall the stream until its watcher falls behind */
    for (int i = 0; i < 10; i++) {
        put("x", "a longer value to fill the queue");
    }
    assert_int_equal(progress_req(&st), 0);
    assert_int_equal(progress_req(&st), 0); /* coalesced */
    /* drain: the progress comes after every event up to its revision */
    for (int guard = 0; guard < 100; guard++) {
        bool any = false;
        while ((r = st_pop(&st)) != NULL) {
            any = true;
            if (r->n_events > 0) {
                for (size_t i = 0; i < r->n_events; i++) {
                    assert_true(r->events[i]->kv->mod_revision > last_ev);
                    last_ev = r->events[i]->kv->mod_revision;
                }
            } else {
                assert_int_equal(r->watch_id, -1);
                assert_int_equal(r->header->revision, 12);
                assert_int_equal(last_ev, 12);
                guard = 1000;
            }
            resp_free(r);
        }
        if (!any) {
            break;
        }
        watch_stream_writable(st.ws);
    }
    assert_int_equal(last_ev, 12);
    assert_null(st_pop(&st));
    st_close(&st);
}

/* progress_notify: every interval, for synced watchers with no events since
 * the last one */
static void test_progress_notify(void **state)
{
    struct watch_hub_config c;
    struct fstream st, st2;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {.progress = true};
    int64_t id;
    (void)state;
    watch_hub_free(hub);
    c = base_cfg();
    c.progress_interval_ms = 1000;
    hub_open(&c);
    watch_hub_tick(hub, 5000);
    st_open(&st);
    id = watch(&st, K("p"), NOEND, &o);
    watch(&st, K("other"), NOEND, NULL); /* no progress_notify */
    watch_hub_tick(hub, 5500);
    assert_null(st_pop(&st));
    watch_hub_tick(hub, 6000);
    r = st_pop(&st);
    assert_non_null(r);
    assert_int_equal(r->watch_id, id);
    assert_int_equal(r->header->revision, 1);
    assert_int_equal(r->n_events, 0);
    assert_false(r->created || r->canceled);
    resp_free(r);
    assert_null(st_pop(&st));
    /* an event elides the next notification */
    put("p", "1");
    r = st_pop(&st);
    resp_free(r);
    watch_hub_tick(hub, 7000);
    assert_null(st_pop(&st));
    watch_hub_tick(hub, 8000);
    r = st_pop(&st);
    assert_int_equal(r->watch_id, id);
    assert_int_equal(r->header->revision, 2);
    resp_free(r);
    /* a late tick fires once, then the period restarts from it */
    watch_hub_tick(hub, 20000);
    r = st_pop(&st);
    resp_free(r);
    assert_null(st_pop(&st));
    watch_hub_tick(hub, 20999);
    assert_null(st_pop(&st));
    watch_hub_tick(hub, 21000);
    r = st_pop(&st);
    resp_free(r);
    /* an unsynced watcher gets none */
    st_open(&st2);
    o.start = 1;
    st2.queued = 1u << 30; /* pretend the stream is full */
    assert_int_equal(create_req(&st2, K("p"), NOEND, &o), 0);
    watch_hub_tick(hub, 30000); /* starts st2's period */
    watch_hub_tick(hub, 31000);
    assert_int_equal(st2.n, 1); /* just the created response */
    st2.queued = 0;
    st_drop_queue(&st2);
    st_close(&st2);
    st_close(&st);

    /* jitter: up to 10% of the interval, per stream */
    watch_hub_free(hub);
    c.seed = 99;
    c.rev = fs.rev;
    hub_open(&c);
    watch_hub_tick(hub, 0);
    st_open(&st);
    id = watch(&st, K("p"), NOEND, &o);
    {
        uint64_t t;
        for (t = 1000; t <= 1100; t += 1) {
            watch_hub_tick(hub, t);
            if (st.n != 0) {
                break;
            }
        }
        assert_true(t >= 1000 && t < 1100);
    }
    st_close(&st);
}

/* fragment=true splits big responses as etcd's sendFragments() */
static void test_fragment(void **state)
{
    struct watch_hub_config c;
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt of = {.fragment = true, .prev_kv = true};
    int64_t wf, wn;
    struct op ops[20];
    char keys[20][8];
    size_t seen = 0, parts = 0;
    const size_t limit = 300;
    (void)state;
    watch_hub_free(hub);
    c = base_cfg();
    c.fragment_bytes = limit;
    hub_open(&c);
    st_open(&st);
    wf = watch(&st, K("f"), K("g"), &of);
    wn = watch(&st, K("f"), K("g"), NULL);
    for (int i = 0; i < 20; i++) {
        snprintf(keys[i], sizeof keys[i], "f%02d", i);
        ops[i].key = keys[i];
        ops[i].val = "value-value-value-value";
        ops[i].del_end = NULL;
    }
    fs_txn(ops, 20);
    while ((r = st_pop(&st)) != NULL) {
        if (r->watch_id == wn) {
            assert_int_equal(r->n_events, 20);
            assert_false(r->fragment);
            resp_free(r);
            continue;
        }
        assert_int_equal(r->watch_id, wf);
        parts++;
        assert_true(r->n_events >= 1);
        for (size_t i = 0; i < r->n_events; i++) {
            assert_memory_equal(r->events[i]->kv->key.data, keys[seen], 3);
            seen++;
        }
        {
            /* each part is below the limit (unless it has one event) and
             * would reach it with the next event */
            size_t sz = protobuf_c_message_get_packed_size(&r->base);
            bool frag = r->fragment;
            r->fragment = true;
            sz = protobuf_c_message_get_packed_size(&r->base);
            r->fragment = frag;
            assert_true(sz < limit || r->n_events == 1);
            if (frag) {
                size_t next_sz =
                    protobuf_c_message_get_packed_size(&r->events[0]->base);
                size_t fld = 1 + (next_sz < 128 ? 1 : 2) + next_sz;
                assert_true(sz + fld >= limit);
            }
        }
        assert_int_equal(r->fragment, seen < 20);
        resp_free(r);
    }
    assert_int_equal(seen, 20);
    assert_true(parts > 2);
    /* small responses are not fragmented */
    put("f00", "x");
    r = st_pop(&st);
    assert_false(r->fragment);
    resp_free(r);
    r = st_pop(&st);
    resp_free(r);
    /* history responses fragment too */
    of.start = 2;
    assert_int_equal(create_req(&st, K("f"), K("g"), &of), 0);
    r = st_pop(&st);
    assert_true(r->created);
    resp_free(r);
    seen = 0;
    while ((r = st_pop(&st)) != NULL) {
        seen += r->n_events;
        assert_int_equal(r->fragment, seen < 21);
        resp_free(r);
    }
    assert_int_equal(seen, 21);
    st_close(&st);
}

/* Run the same 5-put txn on a fresh store and hub with @limit; return the
 * number of events in the first response of watcher 2 (fragment=true),
 * and the unfragmented response of watcher 1 in *@whole. */
static size_t fragment_first_part(size_t limit,
                                  Etcdserverpb__WatchResponse **whole)
{
    struct watch_hub_config c;
    struct fstream st;
    struct copt o1 = {.id = 1}, o2 = {.id = 2, .fragment = true};
    struct op ops[5] = {{"k1", "aaaa", NULL},
                        {"k2", "bbbb", NULL},
                        {"k3", "cccc", NULL},
                        {"k4", "dddd", NULL},
                        {"k5", "eeee", NULL}};
    Etcdserverpb__WatchResponse *r;
    size_t n = 0;
    watch_hub_free(hub);
    hub = NULL;
    fs_free();
    fs_init();
    c = base_cfg();
    c.fragment_bytes = limit;
    hub_open(&c);
    st_open(&st);
    watch(&st, K("k"), K("l"), &o1);
    watch(&st, K("k"), K("l"), &o2);
    fs_txn(ops, 5);
    while ((r = st_pop(&st)) != NULL) {
        if (r->watch_id == 1) {
            *whole = r;
            continue;
        }
        if (n == 0) {
            n = r->n_events;
            assert_int_equal(r->fragment, n < 5);
        }
        resp_free(r);
    }
    st_close(&st);
    return n;
}

/* the exact boundary: a part stops before the event that makes it reach
 * the limit (etcd: "cur.Size() >= maxRequestBytes") */
static void test_fragment_boundary(void **state)
{
    Etcdserverpb__WatchResponse *whole = NULL, *again = NULL;
    size_t s3, s5, n;
    (void)state;
    assert_int_equal(fragment_first_part(1u << 20, &whole), 5);
    assert_non_null(whole);
    assert_int_equal(whole->n_events, 5);
    assert_false(whole->fragment);
    /* a response is split from the limit on, not only above it */
    s5 = protobuf_c_message_get_packed_size(&whole->base);
    assert_int_equal(fragment_first_part(s5 + 1, &again), 5);
    resp_free(again);
    assert_true(fragment_first_part(s5, &again) < 5);
    resp_free(again);
    /* the first part with 3 events, as the hub sizes it (watch ids 1 and
     * 2 pack to the same size) */
    whole->fragment = true;
    whole->n_events = 3;
    s3 = protobuf_c_message_get_packed_size(&whole->base);
    whole->n_events = 5;
    resp_free(whole);
    n = fragment_first_part(s3, &again);
    resp_free(again);
    assert_int_equal(n, 2);
    n = fragment_first_part(s3 + 1, &again);
    resp_free(again);
    assert_int_equal(n, 3);
}

/* a failing send kills the stream, not the hub */
static void test_send_failure(void **state)
{
    struct fstream st, ok;
    Etcdserverpb__WatchResponse *r;
    (void)state;
    st_open(&st);
    st_open(&ok);
    watch(&st, K("a"), NOEND, NULL);
    watch(&ok, K("a"), NOEND, NULL);
    st.fail_send = true;
    put("a", "1");
    assert_int_equal(watch_stream_error(st.ws), IK_EUNAVAILABLE);
    assert_int_equal(watch_stream_error(ok.ws), 0);
    r = st_pop(&ok);
    assert_non_null(r);
    resp_free(r);
    st.fail_send = false;
    put("a", "2");
    assert_int_equal(st.n, 0); /* never sent again */
    assert_int_equal(create_req(&st, K("b"), NOEND, NULL), IK_EUNAVAILABLE);
    assert_int_equal(progress_req(&st), IK_EUNAVAILABLE);
    assert_int_equal(watch_stream_writable(st.ws), IK_EUNAVAILABLE);
    assert_int_equal(st.n, 0);
    /* failure on the created response itself */
    ok.fail_send = true;
    assert_int_equal(create_req(&ok, K("c"), NOEND, NULL), IK_EUNAVAILABLE);
    st_close(&st);
    st_close(&ok);
}

static void test_recv_packed(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest c =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    uint8_t buf[64];
    size_t len;
    Etcdserverpb__WatchResponse *r;
    const uint8_t junk[] = {0x0a, 0x7f, 0x01};
    (void)state;
    st_open(&st);
    c.key.data = (uint8_t *)"key";
    c.key.len = 3;
    c.watch_id = 5;
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &c;
    len = etcdserverpb__watch_request__pack(&req, buf);
    assert_int_equal(watch_stream_recv_packed(st.ws, buf, len), 0);
    r = st_pop(&st);
    assert_true(r->created);
    assert_int_equal(r->watch_id, 5);
    resp_free(r);
    assert_int_equal(watch_stream_recv_packed(st.ws, junk, sizeof junk),
                     IK_EMALFORMED);
    assert_int_equal(watch_stream_recv_packed(st.ws, NULL, 0), 0);
    assert_null(st_pop(&st));
    st_close(&st);
}

/* history errors: retried later; IK_ECOMPACTED cancels */
static void test_history_errors(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {.start = 2};
    struct watch_hub_stats s;
    (void)state;
    st_open(&st);
    put("h", "1");
    put("h", "2");
    fs.fail_history = 1;
    fs.fail_code = IK_ENOMEM;
    watch(&st, K("h"), NOEND, &o);
    /* the first attempt failed; the pump comes back to the watcher within
     * the same budget */
    r = st_pop(&st);
    assert_non_null(r);
    assert_int_equal(r->n_events, 2);
    resp_free(r);
    /* a source that fails every time leaves the watcher unsynced */
    fs.fail_history = 1000;
    watch(&st, K("h"), NOEND, &o);
    assert_null(st_pop(&st));
    watch_hub_stats(hub, &s);
    assert_int_equal(s.unsynced, 1);
    assert_true(watch_hub_sync(hub)); /* budget spent on retries */
    fs.fail_history = 0;
    assert_false(watch_hub_sync(hub));
    r = st_pop(&st);
    assert_int_equal(r->n_events, 2);
    resp_free(r);
    /* the source reports compaction the hub was not told about */
    fs.fail_history = 1;
    fs.fail_code = IK_ECOMPACTED;
    watch(&st, K("h"), NOEND, &o);
    r = st_pop(&st);
    assert_true(r->canceled);
    assert_int_equal(r->compact_revision, 3);
    resp_free(r);
    st_close(&st);
}

/* restore and notify gaps: synced watchers re-read from history */
static void test_restore_and_gap(void **state)
{
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct watch_change ch;
    struct watch_hub_stats s;
    int64_t before;
    (void)state;
    st_open(&st);
    watch(&st, K("r"), NOEND, NULL);
    put("r", "1"); /* 2 */
    r = st_pop(&st);
    resp_free(r);
    /* the store moves on without the hub, then is "restored" */
    before = fs.rev;
    {
        struct watch_hub *saved = hub;
        hub = NULL; /* fs_txn notifies nobody */
        put("r", "2");
        put("zz", "x");
        put("r", "3");
        hub = saved;
    }
    assert_int_equal(fs.rev, before + 3);
    watch_hub_restore(hub, fs.rev, fs.compact);
    watch_hub_stats(hub, &s);
    assert_int_equal(s.unsynced, 1);
    assert_null(st_pop(&st));
    assert_false(watch_hub_sync(hub));
    r = st_pop(&st);
    assert_int_equal(r->n_events, 2);
    assert_int_equal(r->events[0]->kv->mod_revision, 3);
    assert_int_equal(r->events[1]->kv->mod_revision, 5);
    resp_free(r);
    /* a stale revision is refused */
    assert_int_equal(watch_hub_notify(hub, fs.rev, NULL, 0), IK_EINVAL);
    /* a gap: the hub missed a revision; the watcher re-reads it */
    {
        struct watch_hub *saved = hub;
        hub = NULL;
        put("r", "4"); /* 6, missed */
        hub = saved;
    }
    put("r", "5"); /* 7, notified */
    (void)ch;
    assert_null(st_pop(&st));
    assert_false(watch_hub_sync(hub));
    r = st_pop(&st);
    assert_int_equal(r->n_events, 2);
    assert_int_equal(r->events[0]->kv->mod_revision, 6);
    assert_int_equal(r->events[1]->kv->mod_revision, 7);
    resp_free(r);
    /* a watcher waiting for a future revision that falls in a gap */
    {
        struct copt o = {.start = 9};
        int64_t id = watch(&st, K("r"), NOEND, &o);
        struct watch_hub *saved = hub;
        hub = NULL;
        put("r", "6"); /* 8, missed */
        put("r", "7"); /* 9, missed */
        hub = saved;
        put("r", "8"); /* 10 */
        /* the old watcher and the new one both re-read what they lack */
        assert_null(st_pop(&st));
        assert_false(watch_hub_sync(hub));
        for (int i = 0; i < 2; i++) {
            r = st_pop(&st);
            assert_non_null(r);
            assert_int_equal(r->header->revision, 10);
            if (r->watch_id == id) {
                assert_int_equal(r->n_events, 2);
                assert_int_equal(r->events[0]->kv->mod_revision, 9);
            } else {
                assert_int_equal(r->n_events, 3);
                assert_int_equal(r->events[0]->kv->mod_revision, 8);
            }
            assert_int_equal(r->events[r->n_events - 1]->kv->mod_revision, 10);
            resp_free(r);
        }
    }
    /* an empty notify just moves the revision */
    assert_int_equal(watch_hub_notify(hub, 11, NULL, 0), 0);
    assert_int_equal(watch_hub_rev(hub), 11);
    st_close(&st);
}

static long alloc_countdown;
static long alloc_failures;

static bool fail_at(void)
{
    if (alloc_countdown-- == 0) {
        alloc_failures++;
        return true;
    }
    return false;
}

/* ---- the real store: commit hook and a history source over mvcc --------- */

struct mvcc_hist {
    struct mvcc_kv kv;
    struct mvcc_kv prev;
    bool has_prev;
};

struct mvcc_walk_ctx {
    const uint8_t *key, *end;
    size_t key_len, end_len;
    int64_t from, to;
    struct mvcc_hist *out;
    size_t n, cap;
    struct mvcc_kv last; /* previous version seen in the walk */
    bool have_last;
};

static int mvcc_walk_fn(void *arg, const struct mvcc_kv *kv)
{
    struct mvcc_walk_ctx *c = arg;
    bool same = c->have_last && c->last.key_len == kv->key_len &&
                memcmp(c->last.key, kv->key, kv->key_len) == 0;
    if (kv->mod_revision >= c->from && kv->mod_revision <= c->to &&
        in_range(kv->key, kv->key_len, c->key, c->key_len, c->end,
                 c->end_len)) {
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->out = realloc(c->out, c->cap * sizeof *c->out);
            assert_non_null(c->out);
        }
        c->out[c->n].kv = *kv;
        c->out[c->n].has_prev = same && c->last.version != 0;
        c->out[c->n].prev = c->last;
        c->n++;
    }
    c->last = *kv;
    c->have_last = true;
    return 0;
}

static int hist_cmp(const void *a, const void *b)
{
    const struct mvcc_hist *x = a, *y = b;
    if (x->kv.mod_revision != y->kv.mod_revision) {
        return x->kv.mod_revision < y->kv.mod_revision ? -1 : 1;
    }
    return x->kv.sub < y->kv.sub ? -1 : x->kv.sub > y->kv.sub;
}

static int mvcc_history(void *arg, const uint8_t *key, size_t key_len,
                        const uint8_t *end, size_t end_len, int64_t from,
                        int64_t to, bool want_prev, watch_emit_fn emit,
                        void *ctx)
{
    const struct mvcc *m = arg;
    struct mvcc_walk_ctx c;
    if (from < mvcc_compact_rev(m)) {
        return IK_ECOMPACTED;
    }
    memset(&c, 0, sizeof c);
    c.key = key;
    c.key_len = key_len;
    c.end = end;
    c.end_len = end_len;
    c.from = from;
    c.to = to;
    mvcc_walk(m, mvcc_walk_fn, &c);
    qsort(c.out, c.n, sizeof *c.out, hist_cmp);
    for (size_t i = 0; i < c.n; i++) {
        if (emit(ctx, &c.out[i].kv,
                 want_prev && c.out[i].has_prev ? &c.out[i].prev : NULL)) {
            break;
        }
    }
    free(c.out);
    return 0;
}

static void mvcc_hook(void *arg, const struct mvcc *m)
{
    assert_int_equal(watch_hub_notify_mvcc(arg, m), 0);
}

static void test_mvcc_store(void **state)
{
    struct mvcc m;
    struct watch_hub_config c;
    struct fstream st;
    Etcdserverpb__WatchResponse *r;
    struct copt o = {.prev_kv = true};
    int64_t deleted;
    (void)state;
    watch_hub_free(hub);
    hub = NULL;
    mvcc_init(&m);
    memset(&c, 0, sizeof c);
    c.rev = mvcc_rev(&m);
    c.compact_rev = mvcc_compact_rev(&m);
    c.history = mvcc_history;
    c.history_arg = &m;
    hub_open(&c);
    mvcc_set_commit_hook(&m, mvcc_hook, hub);
    st_open(&st);
    watch(&st, K("a"), K("b"), &o);
    assert_int_equal(mvcc_put(&m, K("a1"), K("x"), 0, NULL), 0);
    assert_int_equal(mvcc_put(&m, K("a1"), K("y"), 5, NULL), 0);
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_put(&m, K("a2"), K("z"), 0), 0);
    assert_int_equal(mvcc_txn_put(&m, K("c"), K("z"), 0), 0);
    assert_int_equal(mvcc_txn_delete_range(&m, K("a1"), NOEND, &deleted), 0);
    mvcc_txn_end(&m);
    r = st_pop(&st);
    expect_put(r->events[0], "a1", "x", 2, 2, 1);
    assert_null(r->events[0]->prev_kv);
    resp_free(r);
    r = st_pop(&st);
    expect_put(r->events[0], "a1", "y", 2, 3, 2);
    assert_int_equal(r->events[0]->kv->lease, 5);
    expect_kv(r->events[0]->prev_kv, "a1", "x", 2, 2, 1);
    resp_free(r);
    r = st_pop(&st);
    assert_int_equal(r->header->revision, 4);
    assert_int_equal(r->n_events, 2);
    expect_put(r->events[0], "a2", "z", 4, 4, 1);
    expect_del(r->events[1], "a1", 4);
    expect_kv(r->events[1]->prev_kv, "a1", "y", 2, 3, 2);
    resp_free(r);
    /* the same from history */
    o.start = 1;
    watch(&st, K("a"), K("b"), &o);
    r = st_pop(&st);
    assert_int_equal(r->n_events, 4);
    assert_int_equal(r->header->revision, 4);
    expect_put(r->events[0], "a1", "x", 2, 2, 1);
    expect_kv(r->events[1]->prev_kv, "a1", "x", 2, 2, 1);
    expect_put(r->events[2], "a2", "z", 4, 4, 1);
    expect_del(r->events[3], "a1", 4);
    expect_kv(r->events[3]->prev_kv, "a1", "y", 2, 3, 2);
    resp_free(r);
    assert_null(st_pop(&st));
    /* no memory to list a txn's changes: the watchers read it back */
    watch_hub_free(hub);
    c.rev = mvcc_rev(&m);
    hub_open(&c);
    mvcc_set_commit_hook(&m, mvcc_hook, hub);
    st_drop_queue(&st);
    assert_int_equal(watch_stream_new(hub, &fake_ops, &st, &st.ws), 0);
    o.start = 0;
    watch(&st, K("a"), K("b"), &o);
    alloc_countdown = 0;
    alloc_failures = 0;
    watch_fail_alloc_hook = fail_at;
    assert_int_equal(mvcc_txn_begin(&m), 0);
    assert_int_equal(mvcc_txn_put(&m, K("a3"), K("1"), 0), 0);
    assert_int_equal(mvcc_txn_put(&m, K("a4"), K("2"), 0), 0);
    mvcc_txn_end(&m);
    watch_fail_alloc_hook = NULL;
    assert_true(alloc_failures > 0);
    assert_null(st_pop(&st));
    assert_false(watch_hub_sync(hub));
    r = st_pop(&st);
    assert_non_null(r);
    assert_int_equal(r->n_events, 2);
    expect_put(r->events[0], "a3", "1", 5, 5, 1);
    expect_put(r->events[1], "a4", "2", 5, 5, 1);
    resp_free(r);
    st_close(&st);
    mvcc_set_commit_hook(&m, NULL, NULL);
    mvcc_close(&m);
}

/* ---- the index against brute force -------------------------------------- */

struct id_sink {
    int64_t ids[4096];
    size_t n;
};

static int sink_send(void *arg, const Etcdserverpb__WatchResponse *r)
{
    struct id_sink *k = arg;
    if (r->n_events > 0) {
        assert_true(k->n < 4096);
        k->ids[k->n++] = r->watch_id;
    }
    return 0;
}

static size_t sink_queued(void *arg)
{
    (void)arg;
    return 0;
}

static void rand_key(char *out)
{
    int len = 1 + rand() % 3;
    for (int i = 0; i < len; i++) {
        out[i] = "abc"[rand() % 3];
    }
    out[len] = 0;
}

static void test_range_index(void **state)
{
    enum { MAXW = 600 };
    static struct {
        bool live;
        int kind; /* 0 key, 1 range, 2 from-key */
        char key[4], end[4];
    } ws[MAXW];
    static struct id_sink sink;
    struct watch_stream_ops ops = {sink_send, sink_queued};
    struct watch_stream *st;
    int64_t rev = 1;
    size_t n_ws = 0;
    (void)state;
    srand(11);
    memset(ws, 0, sizeof ws);
    assert_int_equal(watch_stream_new(hub, &ops, &sink, &st), 0);
    for (int step = 0; step < 6000; step++) {
        int what = rand() % 10;
        if (what < 4 && n_ws < MAXW) {
            Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
            Etcdserverpb__WatchCreateRequest c =
                ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
            size_t k = n_ws++;
            ws[k].kind = rand() % 3;
            rand_key(ws[k].key);
            if (ws[k].kind == 1) {
                do {
                    rand_key(ws[k].end);
                } while (strcmp(ws[k].end, ws[k].key) <= 0 &&
                         strcmp(ws[k].key, "ccc") != 0);
                if (strcmp(ws[k].end, ws[k].key) <= 0) {
                    ws[k].kind = 2;
                }
            }
            c.key.data = (uint8_t *)ws[k].key;
            c.key.len = strlen(ws[k].key);
            if (ws[k].kind == 1) {
                c.range_end.data = (uint8_t *)ws[k].end;
                c.range_end.len = strlen(ws[k].end);
            } else if (ws[k].kind == 2) {
                c.range_end.data = (uint8_t *)"";
                c.range_end.len = 1;
            }
            c.watch_id = (int64_t)k + 1;
            req.request_union_case =
                ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
            req.create_request = &c;
            assert_int_equal(watch_stream_recv(st, &req), 0);
            ws[k].live = true;
        } else if (what < 6 && n_ws > 0) {
            size_t k = (size_t)rand() % n_ws;
            if (ws[k].live) {
                Etcdserverpb__WatchRequest req =
                    ETCDSERVERPB__WATCH_REQUEST__INIT;
                Etcdserverpb__WatchCancelRequest c =
                    ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
                c.watch_id = (int64_t)k + 1;
                req.request_union_case =
                    ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
                req.cancel_request = &c;
                assert_int_equal(watch_stream_recv(st, &req), 0);
                ws[k].live = false;
            }
        } else {
            char key[4];
            struct mvcc_kv kv;
            struct watch_change ch = {&kv, NULL};
            size_t want = 0;
            rand_key(key);
            memset(&kv, 0, sizeof kv);
            kv.key = (const uint8_t *)key;
            kv.key_len = strlen(key);
            kv.mod_revision = kv.create_revision = ++rev;
            kv.version = 1;
            sink.n = 0;
            assert_int_equal(watch_hub_notify(hub, rev, &ch, 1), 0);
            for (size_t k = 0; k < n_ws; k++) {
                bool in;
                if (!ws[k].live) {
                    continue;
                }
                if (ws[k].kind == 0) {
                    in = strcmp(key, ws[k].key) == 0;
                } else {
                    in = strcmp(key, ws[k].key) >= 0 &&
                         (ws[k].kind == 2 || strcmp(key, ws[k].end) < 0);
                }
                if (in) {
                    bool got = false;
                    for (size_t i = 0; i < sink.n; i++) {
                        got = got || sink.ids[i] == (int64_t)k + 1;
                    }
                    assert_true(got);
                    want++;
                }
            }
            assert_int_equal(sink.n, want); /* and nobody else, once */
        }
    }
    {
        struct watch_hub_stats s;
        watch_stream_free(st);
        watch_hub_stats(hub, &s);
        assert_int_equal(s.range_nodes, 0);
        assert_int_equal(s.key_nodes, 0);
    }
}

/* ---- scale: 10k+ watchers, matching must not scan ------------------------ */

static int null_history(void *arg, const uint8_t *key, size_t key_len,
                        const uint8_t *end, size_t end_len, int64_t from,
                        int64_t to, bool want_prev, watch_emit_fn emit,
                        void *ctx)
{
    (void)arg, (void)key, (void)key_len, (void)end, (void)end_len;
    (void)from, (void)to, (void)want_prev, (void)emit, (void)ctx;
    return 0;
}

struct count_stream {
    size_t responses, events;
};

static int count_send(void *arg, const Etcdserverpb__WatchResponse *r)
{
    struct count_stream *cs = arg;
    cs->responses++;
    cs->events += r->n_events;
    return 0;
}

static size_t zero_queued(void *arg)
{
    (void)arg;
    return 0;
}

static void test_scale(void **state)
{
    enum { STREAMS = 100, KEYS = 20000, RANGES = 2000, WRITES = 20000 };
    struct watch_hub_config c;
    struct count_stream cs[STREAMS];
    struct watch_stream *ws[STREAMS];
    struct watch_stream_ops ops = {count_send, zero_queued};
    struct watch_hub_stats s;
    size_t expect_events = 0, total = 0;
    clock_t t0;
    double secs;
    (void)state;
    watch_hub_free(hub);
    memset(&c, 0, sizeof c);
    c.rev = 1;
    c.compact_rev = -1;
    c.history = null_history;
    hub_open(&c);
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < STREAMS; i++) {
        assert_int_equal(watch_stream_new(hub, &ops, &cs[i], &ws[i]), 0);
    }
    for (int i = 0; i < KEYS; i++) {
        char key[16];
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        Etcdserverpb__WatchCreateRequest cr =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        snprintf(key, sizeof key, "key%06d", i);
        cr.key.data = (uint8_t *)key;
        cr.key.len = strlen(key);
        req.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        req.create_request = &cr;
        assert_int_equal(watch_stream_recv(ws[i % STREAMS], &req), 0);
    }
    for (int i = 0; i < RANGES; i++) {
        /* ranges of 10 keys: [key%06d0, key%06d0 + 10) */
        char a[16], b[16];
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        Etcdserverpb__WatchCreateRequest cr =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        snprintf(a, sizeof a, "key%06d", i * 10);
        snprintf(b, sizeof b, "key%06d", i * 10 + 10);
        cr.key.data = (uint8_t *)a;
        cr.key.len = strlen(a);
        cr.range_end.data = (uint8_t *)b;
        cr.range_end.len = strlen(b);
        req.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        req.create_request = &cr;
        assert_int_equal(watch_stream_recv(ws[i % STREAMS], &req), 0);
    }
    watch_hub_stats(hub, &s);
    assert_int_equal(s.watchers, KEYS + RANGES);
    assert_int_equal(s.key_nodes, KEYS);
    assert_int_equal(s.range_nodes, RANGES);
    for (int i = 0; i < STREAMS; i++) {
        cs[i].responses = cs[i].events = 0; /* forget created responses */
    }
    t0 = clock();
    for (int i = 0; i < WRITES; i++) {
        char key[16];
        struct mvcc_kv kv;
        struct watch_change ch = {&kv, NULL};
        int k = (int)(((unsigned)i * 7919u) % (KEYS * 2)); /* half unwatched */
        snprintf(key, sizeof key, "key%06d", k);
        memset(&kv, 0, sizeof kv);
        kv.key = (const uint8_t *)key;
        kv.key_len = strlen(key);
        kv.value = (const uint8_t *)"v";
        kv.value_len = 1;
        kv.mod_revision = kv.create_revision = 2 + i;
        kv.version = 1;
        assert_int_equal(watch_hub_notify(hub, 2 + i, &ch, 1), 0);
        expect_events += k < KEYS ? 1 : 0;        /* its key watcher */
        expect_events += k < RANGES * 10 ? 1 : 0; /* one range */
    }
    secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    for (int i = 0; i < STREAMS; i++) {
        total += cs[i].events;
    }
    assert_int_equal(total, expect_events);
    /* 20k writes over 22k watchers: well under a second unless matching
     * scans the watchers (that would be ~400M checks) */
    assert_true(secs < 2.0);
    for (int i = 0; i < STREAMS; i++) {
        watch_stream_free(ws[i]);
    }
    watch_hub_stats(hub, &s);
    assert_int_equal(s.watchers, 0);
    assert_int_equal(s.key_nodes, 0);
    assert_int_equal(s.range_nodes, 0);
}

/* ---- allocation failures --------------------------------------------------
 */

/* Run a scenario with the n-th allocation failing, for every n until a run
 * sees no failure; every run must end with the right events delivered. */
static void test_alloc_failures(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        struct fstream st;
        struct copt o = {0};
        Etcdserverpb__WatchResponse *r;
        int rv;
        int64_t last = 0;
        size_t events = 0;
        struct watch_hub_stats s;
        bool created[3] = {false, false, false};

        watch_hub_free(hub);
        hub = NULL;
        fs_free();
        fs_init();
        for (int i = 0; i < 5; i++) {
            put(i % 2 ? "a" : "b", "v"); /* revs 2..6 */
        }
        alloc_failures = 0;
        alloc_countdown = n;
        watch_fail_alloc_hook = fail_at;
        {
            struct watch_hub_config c = base_cfg();
            c.batch_max_revs = 2;
            rv = watch_hub_new(&c, &hub);
        }
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            assert_null(hub);
            continue;
        }
        memset(&st, 0, sizeof st);
        rv = watch_stream_new(hub, &fake_ops, &st, &st.ws);
        if (rv != 0) {
            assert_int_equal(rv, IK_ENOMEM);
            continue;
        }
        /* three creates; each either answers or fails with nothing sent */
        for (int i = 0; i < 3; i++) {
            size_t before = st.n;
            o.start = i == 0 ? 2 : 0;
            o.prev_kv = i == 1;
            rv = create_req(
                &st, i == 2 ? (const uint8_t *)"a" : (const uint8_t *)"a", 1,
                i == 2 ? (const uint8_t *)"c" : NULL, i == 2 ? 1 : 0, &o);
            if (rv == 0) {
                created[i] = true;
                assert_true(st.n > before);
            } else {
                assert_int_equal(rv, IK_ENOMEM);
                assert_int_equal(st.n, before);
            }
        }
        put("a", "live1");
        put("a", "live2");
        {
            struct op ops[] = {{"a", "t", NULL}, {"b", "t", NULL}};
            fs_txn(ops, 2);
        }
        rv = watch_stream_recv_packed(st.ws, (const uint8_t *)"\x1a\x00", 2);
        assert_true(rv == 0 || rv == IK_ENOMEM);
        watch_fail_alloc_hook = NULL;
        while (watch_hub_sync(hub)) {
        }
        watch_stream_writable(st.ws);
        /* everything the created watchers should see arrived, once */
        while ((r = st_pop(&st)) != NULL) {
            if (r->watch_id == 0 && created[0] && r->n_events > 0) {
                for (size_t i = 0; i < r->n_events; i++) {
                    int64_t rev = r->events[i]->kv->mod_revision;
                    if (strncmp((char *)r->events[i]->kv->key.data, "a",
                                r->events[i]->kv->key.len) == 0) {
                        assert_true(rev > last);
                        last = rev;
                        events++;
                    }
                }
            }
            resp_free(r);
        }
        if (created[0]) {
            /* "a" changed at 3, 5 (history) and 7, 8, 9 (live) */
            assert_int_equal(events, 5);
            assert_int_equal(last, 9);
        }
        watch_hub_stats(hub, &s);
        assert_int_equal(s.unsynced, 0);
        st_close(&st);
        if (alloc_failures == 0) {
            break;
        }
        assert_true(n < 10000);
    }
}

/* ---- randomized model check --------------------------------------------- */

struct cw {
    bool used;
    int stream;
    int64_t id;     /* expected from the create (-1: a refusal) */
    bool announced; /* created response seen */
    bool dead;
    bool cancel_sent;
    bool cancel_acked; /* canceled response seen */
    /* what was asked */
    char key[8], end[8];
    int kind; /* 0 single, 1 range, 2 from-key */
    bool prev_kv, fragment, noput, nodel, progress;
    int64_t start_eff; /* first revision expected */
    /* delivery state */
    size_t log_pos;   /* first log entry not yet matched/skipped */
    int64_t last_rev; /* last event revision delivered */
    bool in_frag;     /* inside a fragmented response */
};

#define MAX_CW 400
#define N_STREAMS 4

static struct cw cws[MAX_CW];
static size_t n_cw;

struct rstream {
    struct fstream st;
    bool stalled;
    int pending[64]; /* cw indexes of creates awaiting their response */
    size_t n_pending;
    bool progress_wanted; /* a progress request not yet answered */
    /* the server's id table as etcd keeps it: taken until canceled */
    int64_t ids[MAX_CW];
    size_t n_ids;
    int64_t next_auto;
};

static struct rstream rs[N_STREAMS];
static size_t bound_bytes;

/* what the random runs exercised (each must happen) */
static struct {
    size_t events, fragments, compact_cancels, refusals, cancels, resumes;
    size_t progress_all, progress_one, went_unsynced, history_batches;
    size_t restores, gaps;
} seen;

static bool sim_has(int s, int64_t id)
{
    for (size_t i = 0; i < rs[s].n_ids; i++) {
        if (rs[s].ids[i] == id) {
            return true;
        }
    }
    return false;
}

static void sim_del(int s, int64_t id)
{
    for (size_t i = 0; i < rs[s].n_ids; i++) {
        if (rs[s].ids[i] == id) {
            rs[s].ids[i] = rs[s].ids[--rs[s].n_ids];
            return;
        }
    }
    fail_msg("id %lld not taken", (long long)id);
}

/* The id etcd gives a create asking for @want (0: automatic), or -1. */
static int64_t sim_create(int s, int64_t want)
{
    int64_t id = want;
    if (want == 0) {
        id = rs[s].next_auto;
        while (sim_has(s, id)) {
            id++;
        }
        rs[s].next_auto = id + 1;
    } else if (sim_has(s, want)) {
        return -1;
    }
    assert_true(rs[s].n_ids < MAX_CW);
    rs[s].ids[rs[s].n_ids++] = id;
    return id;
}

static bool cw_match(const struct cw *w, const struct fentry *e)
{
    const uint8_t *end = NULL;
    size_t end_len = 0;
    bool tomb = e->kv.version == 0;
    if (e->kv.mod_revision < w->start_eff) {
        return false;
    }
    if (tomb ? w->nodel : w->noput) {
        return false;
    }
    if (w->kind == 1) {
        end = (const uint8_t *)w->end;
        end_len = strlen(w->end);
    } else if (w->kind == 2) {
        end = (const uint8_t *)"";
        end_len = 1;
    }
    return in_range(e->kv.key, e->kv.key_len, (const uint8_t *)w->key,
                    strlen(w->key), end, end_len);
}

/* Index of the next log entry @w must receive, or fs.n. */
static size_t cw_next(struct cw *w)
{
    while (w->log_pos < fs.n && !cw_match(w, &fs.log[w->log_pos])) {
        w->log_pos++;
    }
    return w->log_pos;
}

static void check_event(struct cw *w, const Mvccpb__Event *ev)
{
    size_t i = cw_next(w);
    const struct fentry *e;
    bool tomb;
    assert_true(i < fs.n); /* unique: nothing beyond the model */
    e = &fs.log[i];
    tomb = e->kv.version == 0;
    /* reliable + ordered: exactly the next expected event */
    assert_int_equal(ev->kv->mod_revision, e->kv.mod_revision);
    assert_int_equal(ev->kv->key.len, e->kv.key_len);
    assert_memory_equal(ev->kv->key.data, e->kv.key, e->kv.key_len);
    assert_int_equal(ev->type, tomb ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                                    : MVCCPB__EVENT__EVENT_TYPE__PUT);
    if (!tomb) {
        assert_int_equal(ev->kv->value.len, e->kv.value_len);
        assert_memory_equal(ev->kv->value.data, e->kv.value, e->kv.value_len);
        assert_int_equal(ev->kv->version, e->kv.version);
        assert_int_equal(ev->kv->create_revision, e->kv.create_revision);
        assert_int_equal(ev->kv->lease, e->kv.lease);
    } else {
        assert_int_equal(ev->kv->version, 0);
        assert_int_equal(ev->kv->create_revision, 0);
        assert_int_equal(ev->kv->value.len, 0);
    }
    if (w->prev_kv && e->has_prev &&
        !(!tomb && e->kv.create_revision == e->kv.mod_revision)) {
        assert_non_null(ev->prev_kv);
        assert_int_equal(ev->prev_kv->mod_revision, e->prev.mod_revision);
        assert_int_equal(ev->prev_kv->version, e->prev.version);
        assert_int_equal(ev->prev_kv->value.len, e->prev.value_len);
        assert_memory_equal(ev->prev_kv->value.data, e->prev.value,
                            e->prev.value_len);
    } else {
        assert_null(ev->prev_kv);
    }
    assert_true(ev->kv->mod_revision >= w->last_rev);
    w->last_rev = ev->kv->mod_revision;
    w->log_pos = i + 1;
}

static struct cw *cw_by_id(int s, int64_t id)
{
    struct cw *found = NULL;
    for (size_t i = 0; i < n_cw; i++) {
        struct cw *w = &cws[i];
        if (w->used && w->announced && !w->dead && w->stream == s &&
            w->id == id) {
            assert_null(found); /* ids are unique among live watchers */
            found = w;
        }
    }
    return found;
}

static void bookmark(struct cw *w, int64_t rev)
{
    /* every expected event at or below rev was delivered already */
    size_t i = cw_next(w);
    if (i < fs.n) {
        assert_true(fs.log[i].kv.mod_revision > rev);
    }
    assert_true(w->last_rev <= rev);
}

/* Create a watcher like @tmpl from @start (-1: random) on stream @s. */
static void start_watch(int s, const struct cw *tmpl, int64_t start,
                        int64_t want_id)
{
    size_t k;
    struct cw *w;
    struct copt o = {0};
    if (n_cw >= MAX_CW || rs[s].n_pending >= 64) {
        return;
    }
    k = n_cw++;
    w = &cws[k];
    *w = *tmpl;
    w->used = true;
    w->stream = s;
    w->announced = w->dead = w->cancel_sent = w->in_frag = false;
    w->cancel_acked = false;
    w->log_pos = 0;
    w->last_rev = 0;
    if (start == 0) {
        w->start_eff = fs.rev + 1;
    } else {
        w->start_eff = start;
    }
    o.start = start;
    o.id = want_id;
    o.prev_kv = w->prev_kv;
    o.fragment = w->fragment;
    o.noput = w->noput;
    o.nodel = w->nodel;
    o.progress = w->progress;
    w->id = sim_create(s, want_id);
    rs[s].pending[rs[s].n_pending++] = (int)k;
    assert_int_equal(
        create_req(&rs[s].st, (const uint8_t *)w->key, strlen(w->key),
                   w->kind == 1 ? (const uint8_t *)w->end : (const uint8_t *)"",
                   w->kind == 0   ? 0
                   : w->kind == 1 ? strlen(w->end)
                                  : 1,
                   &o),
        0);
}

static void resume(const struct cw *old, int64_t start)
{
    if (rand() % 3 != 0) {
        seen.resumes++;
        start_watch(rand() % N_STREAMS, old, start, 0);
    }
}

static void deliver_one(int s)
{
    struct rstream *r = &rs[s];
    Etcdserverpb__WatchResponse *m = st_pop(&r->st);
    struct cw *w;
    if (m == NULL) {
        return;
    }
    if (m->created) {
        int k;
        assert_true(r->n_pending > 0);
        k = r->pending[0];
        memmove(r->pending, r->pending + 1,
                (r->n_pending - 1) * sizeof r->pending[0]);
        r->n_pending--;
        w = &cws[k];
        assert_int_equal(m->watch_id, w->id);
        if (w->id == -1) {
            seen.refusals++;
            assert_true(m->canceled);
            assert_string_equal(
                m->cancel_reason,
                "mvcc: duplicate watch ID provided on the WatchStream");
            w->used = false;
        } else {
            assert_false(m->canceled);
            w->announced = true;
        }
    } else if (m->canceled) {
        w = cw_by_id(s, m->watch_id);
        if (m->compact_revision != 0) {
            int64_t need;
            assert_non_null(w);
            assert_false(w->in_frag);
            need =
                w->last_rev + 1 > w->start_eff ? w->last_rev + 1 : w->start_eff;
            assert_int_equal(m->header->revision, 0);
            seen.compact_cancels++;
            /* only a watcher that needs a compacted revision */
            assert_true(m->compact_revision > need);
            w->dead = true;
            /* a client cancels it and restarts from the compaction */
            if (!w->cancel_sent && rand() % 2) {
                w->cancel_sent = true;
                sim_del(s, w->id);
                assert_int_equal(cancel_req(&r->st, w->id), 0);
            }
            resume(w, m->compact_revision);
        } else {
            if (w == NULL) {
                /* the cancel of a watcher compaction already stopped */
                for (size_t i = 0; i < n_cw && w == NULL; i++) {
                    struct cw *z = &cws[i];
                    if (z->used && z->dead && z->stream == s &&
                        z->id == m->watch_id && z->cancel_sent &&
                        !z->cancel_acked) {
                        w = z;
                    }
                }
            }
            assert_non_null(w);
            assert_true(w->cancel_sent);
            assert_false(w->cancel_acked);
            assert_false(w->in_frag);
            assert_int_equal(m->header->revision >= w->last_rev, 1);
            w->cancel_acked = true;
            seen.cancels++;
            if (!w->dead) {
                w->dead = true;
                /* resumable: from the last delivered revision + 1 */
                resume(w, w->last_rev ? w->last_rev + 1 : w->start_eff);
            }
        }
    } else if (m->n_events == 0) {
        /* progress */
        assert_int_equal(m->compact_revision, 0);
        if (m->watch_id == -1) {
            for (size_t i = 0; i < n_cw; i++) {
                if (cws[i].used && cws[i].announced && !cws[i].dead &&
                    cws[i].stream == s) {
                    bookmark(&cws[i], m->header->revision);
                }
            }
            r->progress_wanted = false;
            seen.progress_all++;
        } else {
            seen.progress_one++;
            w = cw_by_id(s, m->watch_id);
            assert_non_null(w);
            assert_true(w->progress);
            assert_false(w->in_frag);
            bookmark(w, m->header->revision);
        }
    } else {
        w = cw_by_id(s, m->watch_id);
        assert_non_null(w);
        if (m->fragment) {
            assert_true(w->fragment);
        }
        /* ordered across responses */
        assert_true(m->events[0]->kv->mod_revision > w->last_rev || w->in_frag);
        for (size_t i = 0; i < m->n_events; i++) {
            check_event(w, m->events[i]);
        }
        seen.events += m->n_events;
        seen.fragments += m->fragment;
        if (m->header->revision >
            m->events[m->n_events - 1]->kv->mod_revision) {
            seen.history_batches++;
        }
        w->in_frag = m->fragment;
        if (!m->fragment) {
            /* atomic: the next expected event is of a later revision */
            size_t i = cw_next(w);
            if (i < fs.n) {
                assert_true(fs.log[i].kv.mod_revision > w->last_rev);
            }
            assert_true(m->header->revision >= w->last_rev);
        }
    }
    resp_free(m);
}

static const char *rkeys[] = {"a", "ab", "abc", "b", "ba", "c", "d", "e"};

static void random_create(int s)
{
    struct cw t;
    int64_t start;
    memset(&t, 0, sizeof t);
    strcpy(t.key, rkeys[rand() % 8]);
    t.kind = rand() % 3;
    if (t.kind == 1) {
        const char *e = rkeys[rand() % 8];
        if (strcmp(e, t.key) <= 0) {
            e = "zz";
        }
        strcpy(t.end, e);
    }
    t.prev_kv = rand() % 2;
    t.fragment = rand() % 2;
    t.noput = rand() % 8 == 0;
    t.nodel = rand() % 8 == 0;
    t.progress = rand() % 2;
    if (rand() % 4 == 0) {
        start = 0;
    } else {
        int64_t lo = fs.compact > 3 ? fs.compact - 2 : 1;
        start = lo + rand() % (fs.rev + 4 - lo);
    }
    start_watch(s, &t, start, rand() % 4 == 0 ? 1 + rand() % 6 : 0);
}

static void random_write(void)
{
    struct op ops[3];
    char vals[3][16];
    int n = 1 + rand() % 3;
    bool used[8] = {false};
    if (rand() % 10 == 0) {
        /* a range delete on its own */
        struct op o = {rkeys[rand() % 8], NULL, rand() % 2 ? "" : "c"};
        if (o.del_end[0] && strcmp(o.key, o.del_end) >= 0) {
            o.del_end = "";
        }
        fs_txn(&o, 1);
        return;
    }
    for (int i = 0; i < n; i++) {
        int k;
        do {
            k = rand() % 8;
        } while (used[k]);
        used[k] = true;
        ops[i].key = rkeys[k];
        ops[i].del_end = NULL;
        if (rand() % 4 == 0) {
            ops[i].val = NULL;
        } else {
            snprintf(vals[i], sizeof vals[i], "v%d", rand() % 100000);
            ops[i].val = vals[i];
        }
    }
    fs_txn(ops, (size_t)n);
}

/* every event response / compaction cancel / progress notification goes
 * out only while the stream has room (fragments of one response follow
 * each other) */
static void random_send_check(struct fstream *st,
                              const Etcdserverpb__WatchResponse *r)
{
    bool event_like = r->n_events > 0 || r->compact_revision != 0 ||
                      (!r->created && !r->canceled && r->watch_id != -1);
    if (event_like && !st->mid_fragment) {
        assert_true(st->queued < bound_bytes);
    }
    if (r->compact_revision == 0) {
        assert_int_equal(r->header->revision, watch_hub_rev(hub));
    }
}

static void random_run(unsigned seed, int steps)
{
    struct watch_hub_config c;
    uint64_t now = 0;
    srand(seed);
    watch_hub_free(hub);
    hub = NULL;
    fs_free();
    fs_init();
    n_cw = 0;
    for (int i = 0; i < 5; i++) {
        random_write();
    }
    c = base_cfg();
    bound_bytes = 150 + (size_t)(rand() % 400);
    c.max_queued_bytes = bound_bytes;
    c.batch_max_revs = 1 + (uint32_t)(rand() % 4);
    c.batch_max_bytes = 50 + (size_t)(rand() % 300);
    c.fragment_bytes = 80 + (size_t)(rand() % 200);
    c.sync_budget = 1 + (uint32_t)(rand() % 3);
    c.progress_interval_ms = 100;
    c.seed = seed + 1;
    hub_open(&c);
    on_send_check = random_send_check;
    for (int s = 0; s < N_STREAMS; s++) {
        memset(&rs[s], 0, sizeof rs[s]);
        st_open(&rs[s].st);
        rs[s].st.index = s;
    }
    for (int step = 0; step < steps; step++) {
        int s = rand() % N_STREAMS;
        int what = rand() % 100;
        if (what < 2) {
            /* the store moves on without the hub: a snapshot restore, or
             * a gap the next notify notices */
            struct watch_hub *saved = hub;
            int n = 1 + rand() % 3;
            hub = NULL;
            for (int i = 0; i < n; i++) {
                random_write();
            }
            hub = saved;
            if (what == 0) {
                watch_hub_restore(hub, fs.rev, fs.compact);
                seen.restores++;
            } else {
                int64_t before = fs.rev;
                while (fs.rev == before) {
                    random_write();
                }
                seen.gaps += watch_hub_rev(hub) == fs.rev;
            }
        } else if (what < 30) {
            random_write();
        } else if (what < 42) {
            random_create(s);
        } else if (what < 47) {
            /* cancel a random announced watcher of s */
            for (size_t tries = 0; tries < 5 && n_cw > 0; tries++) {
                struct cw *w = &cws[rand() % n_cw];
                if (w->used && w->announced && !w->dead && !w->cancel_sent) {
                    w->cancel_sent = true;
                    sim_del(w->stream, w->id);
                    assert_int_equal(cancel_req(&rs[w->stream].st, w->id), 0);
                    break;
                }
            }
        } else if (what < 50) {
            if (fs.rev > 2 && rand() % 3 == 0) {
                int64_t lo = fs.compact > 1 ? fs.compact : 1;
                if (fs.rev - 1 > lo) {
                    compact(lo + 1 + rand() % (fs.rev - 1 - lo));
                }
            }
        } else if (what < 55) {
            rs[s].stalled = !rs[s].stalled;
        } else if (what < 58) {
            rs[s].progress_wanted = true;
            assert_int_equal(progress_req(&rs[s].st), 0);
        } else if (what < 62) {
            now += 60;
            watch_hub_tick(hub, now);
        } else if (what < 66) {
            watch_hub_sync(hub);
        } else if (!rs[s].stalled) {
            int n = 1 + rand() % 6;
            for (int i = 0; i < n; i++) {
                deliver_one(s);
            }
            assert_int_equal(watch_stream_writable(rs[s].st.ws), 0);
        }
        assert_true(rs[s].st.max_queued < bound_bytes + 4096);
        {
            struct watch_hub_stats hs;
            watch_hub_stats(hub, &hs);
            seen.went_unsynced += hs.unsynced > 0;
        }
    }
    /* drain everything */
    for (int s = 0; s < N_STREAMS; s++) {
        rs[s].stalled = false;
    }
    for (int round = 0; round < 100000; round++) {
        bool any = false;
        for (int s = 0; s < N_STREAMS; s++) {
            while (rs[s].st.n > 0) {
                deliver_one(s);
                any = true;
            }
            assert_int_equal(watch_stream_writable(rs[s].st.ws), 0);
            any = any || rs[s].st.n > 0;
        }
        if (watch_hub_sync(hub)) {
            any = true;
        }
        for (int s = 0; s < N_STREAMS; s++) {
            any = any || rs[s].st.n > 0;
        }
        if (!any) {
            break;
        }
    }
    /* every live watcher has everything up to the end: reliable */
    for (size_t i = 0; i < n_cw; i++) {
        struct cw *w = &cws[i];
        if (!w->used || w->dead || !w->announced || w->cancel_sent) {
            continue;
        }
        assert_int_equal(cw_next(w), fs.n);
        assert_false(w->in_frag);
    }
    for (int s = 0; s < N_STREAMS; s++) {
        assert_int_equal(rs[s].n_pending, 0);
        assert_false(rs[s].progress_wanted);
    }
    {
        struct watch_hub_stats st;
        watch_hub_stats(hub, &st);
        assert_int_equal(st.unsynced, 0);
    }
    for (int s = 0; s < N_STREAMS; s++) {
        st_close(&rs[s].st);
    }
    on_send_check = NULL;
}

static void test_random(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    for (unsigned seed = 1; seed <= 40; seed++) {
        random_run(seed, 600);
    }
    print_message("random: %zu events, %zu fragments, %zu compaction "
                  "cancels, %zu refused ids, %zu cancels, %zu resumes, "
                  "%zu/%zu progress (stream/watcher), %zu steps with "
                  "unsynced watchers, %zu catch-up responses, %zu restores, "
                  "%zu gaps\n",
                  seen.events, seen.fragments, seen.compact_cancels,
                  seen.refusals, seen.cancels, seen.resumes, seen.progress_all,
                  seen.progress_one, seen.went_unsynced, seen.history_batches,
                  seen.restores, seen.gaps);
    assert_true(seen.events > 1000);
    assert_true(seen.fragments > 0);
    assert_true(seen.compact_cancels > 0);
    assert_true(seen.refusals > 0);
    assert_true(seen.cancels > 0);
    assert_true(seen.resumes > 0);
    assert_true(seen.progress_all > 0);
    assert_true(seen.progress_one > 0);
    assert_true(seen.went_unsynced > 0);
    assert_true(seen.history_batches > 0);
    assert_true(seen.restores > 0);
    assert_true(seen.gaps > 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_new_rejects),       T(test_create_ids),
        T(test_id_table),          T(test_empty_range),
        T(test_match_forms),       T(test_txn_atomic),
        T(test_prev_kv),           T(test_filters),
        T(test_start_revision),    T(test_compaction),
        T(test_negative_start),    T(test_cancel),
        T(test_backpressure),      T(test_batches_whole_revisions),
        T(test_sync_budget),       T(test_progress_request),
        T(test_progress_notify),   T(test_fragment),
        T(test_fragment_boundary), T(test_send_failure),
        T(test_recv_packed),       T(test_history_errors),
        T(test_restore_and_gap),   T(test_mvcc_store),
        T(test_range_index),       T(test_scale),
        T(test_alloc_failures),    T(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
