/* Unit tests for the lessor (server/lease.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "server/btree.h"
#include "server/errors.h"
#include "server/kv.h"
#include "server/lease.h"
#include "server/mvcc.h"

#define S(x) (const uint8_t *)(x), strlen(x)
#define BIN(s) ((ProtobufCBinaryData){strlen(s), (uint8_t *)(s)})

static struct mvcc store;
static struct lessor les;
static struct lease_config cfg;

static int fail_countdown;

static bool fail_after(void)
{
    if (fail_countdown == 0) {
        return true;
    }
    fail_countdown--;
    return false;
}

static void hooks_off(void)
{
    lease_fail_alloc_hook = NULL;
    btree_fail_alloc_hook = NULL;
    mvcc_fail_alloc_hook = NULL;
}

static void hooks_on(int n)
{
    fail_countdown = n;
    lease_fail_alloc_hook = fail_after;
    btree_fail_alloc_hook = fail_after;
    mvcc_fail_alloc_hook = fail_after;
}

static int setup(void **state)
{
    (void)state;
    mvcc_init(&store);
    lease_config_init(&cfg, 100, 1000);
    lease_init(&les, &cfg, &store);
    mvcc_set_commit_hook(&store, lease_commit_hook, &les);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hooks_off();
    mvcc_close(&store);
    lease_close(&les);
    return 0;
}

/* Re-create the lessor with another configuration. */
static void reconfigure(const struct lease_config *c)
{
    lease_close(&les);
    lease_init(&les, c, &store);
}

static void put(const char *k, int64_t lease)
{
    assert_int_equal(mvcc_put(&store, S(k), S("v"), lease, NULL), 0);
}

static bool live(const char *k)
{
    struct mvcc_kv kv;
    return mvcc_get(&store, S(k), &kv) == 0;
}

/* The keys of @id joined with ',' ("" if none, "ERR" on error). */
static const char *keys_of(int64_t id)
{
    static char out[512];
    struct lease_key *keys;
    size_t n, off = 0;

    out[0] = '\0';
    if (lease_keys(&les, id, &keys, &n) != 0) {
        return "ERR";
    }
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(out + off, sizeof out - off, "%s%.*s",
                                i > 0 ? "," : "", (int)keys[i].len,
                                (const char *)keys[i].key);
    }
    free(keys);
    return out;
}

static int64_t remaining(int64_t id, uint64_t now)
{
    int64_t r = -999;
    assert_int_equal(lease_time_to_live(&les, id, now, NULL, &r), 0);
    return r;
}

/* ---- TTL rules ---- */

static void min_ttl_rule(void **state)
{
    (void)state;
    /* etcd's defaults: 10 ticks of 100 ms, 15 ticks = 1.5 s, ceil = 2. */
    assert_int_equal(lease_min_ttl(100, 1000), 2);
    /* 10 ticks of 50 ms: 750 ms -> 1. */
    assert_int_equal(lease_min_ttl(50, 500), 1);
    /* 15 ticks: 3*15/2 = 22 ticks (integer division) = 2.2 s -> 3. */
    assert_int_equal(lease_min_ttl(100, 1500), 3);
    /* 1000 ms ticks, election 5 s: 7 ticks = 7 s. */
    assert_int_equal(lease_min_ttl(1000, 5000), 7);
    /* Degenerate input never gives less than 1. */
    assert_int_equal(lease_min_ttl(0, 1000), 1);
    assert_int_equal(lease_min_ttl(100, 50), 1);
    assert_int_equal(cfg.min_ttl, 2);
    assert_int_equal(cfg.promote_extend_ms, 1000);
    assert_int_equal(cfg.checkpoint_interval_ms, 5 * 60 * 1000);
}

static void grant_errors(void **state)
{
    int64_t ttl = -1;
    (void)state;

    /* Id 0 is etcd's "no lease": not found, checked first. */
    assert_int_equal(lease_grant(&les, 0, 10, 0, &ttl), IK_ELEASENOTFOUND);
    assert_int_equal(lease_grant(&les, 0, LEASE_MAX_TTL + 1, 0, &ttl),
                     IK_ELEASENOTFOUND);
    assert_int_equal(ttl, -1);
    assert_int_equal(lease_grant(&les, 1, LEASE_MAX_TTL + 1, 0, &ttl),
                     IK_ELEASETTLTOOLARGE);
    assert_int_equal(lease_grant(&les, 1, LEASE_MAX_TTL, 0, &ttl), 0);
    assert_int_equal(ttl, LEASE_MAX_TTL);
    /* Exists; the TTL check comes before the existence check. */
    assert_int_equal(lease_grant(&les, 1, 5, 0, &ttl), IK_ELEASEEXIST);
    assert_int_equal(lease_grant(&les, 1, LEASE_MAX_TTL + 1, 0, &ttl),
                     IK_ELEASETTLTOOLARGE);
    /* Below the minimum: raised to it (1, 0, negative). */
    assert_int_equal(lease_grant(&les, 2, 1, 0, &ttl), 0);
    assert_int_equal(ttl, 2);
    assert_int_equal(lease_grant(&les, 3, 0, 0, &ttl), 0);
    assert_int_equal(ttl, 2);
    assert_int_equal(lease_grant(&les, 4, -5, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, -7, 3, 0, &ttl), 0);
    assert_int_equal(ttl, 3);
    assert_int_equal(lease_count(&les), 5);
    assert_true(lease_exists(&les, 4));
    assert_true(lease_exists(&les, -7));
    assert_false(lease_exists(&les, 0));
    assert_false(lease_exists(&les, 5));
    assert_true(lease_exists_cb(&les, 2));
    assert_false(lease_exists_cb(&les, 99));

    /* TimeToLive / keys of an unknown lease. */
    assert_int_equal(lease_time_to_live(&les, 99, 0, &ttl, NULL),
                     IK_ELEASENOTFOUND);
    {
        struct lease_key *k = (void *)1;
        size_t n = 7;
        assert_int_equal(lease_keys(&les, 99, &k, &n), IK_ELEASENOTFOUND);
        assert_null(k);
        assert_int_equal(n, 0);
    }
    /* Granted TTL and (non-primary) remaining TTL. */
    {
        int64_t g = 0, r = 0;
        assert_int_equal(lease_time_to_live(&les, 4, 0, &g, &r), 0);
        assert_int_equal(g, 2);
        assert_int_equal(r, 2);
    }
    /* Revoke. */
    assert_int_equal(lease_revoke(&les, 99), IK_ELEASENOTFOUND);
    assert_int_equal(lease_revoke(&les, 4), 0);
    assert_int_equal(lease_revoke(&les, 4), IK_ELEASENOTFOUND);
    assert_false(lease_exists(&les, 4));
    assert_int_equal(lease_count(&les), 4);
    /* A revoked id can be granted again. */
    assert_int_equal(lease_grant(&les, 4, 30, 0, &ttl), 0);
    assert_int_equal(ttl, 30);
    /* Checkpoint of an unknown lease: ignored, OK (as etcd). */
    assert_int_equal(lease_checkpoint(&les, 12345, 10, 0), 0);
    assert_false(lease_exists(&les, 12345));
}

/* ---- revoke and attachments ---- */

static void revoke_deletes_in_one_revision(void **state)
{
    int64_t rev;
    (void)state;

    assert_int_equal(lease_grant(&les, 10, 60, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 20, 60, 0, NULL), 0);
    put("a", 0);
    put("k1", 10);
    put("k2", 10);
    put("k0", 10);
    put("other", 20);
    assert_string_equal(keys_of(10), "k0,k1,k2");
    assert_string_equal(keys_of(20), "other");
    rev = mvcc_rev(&store);
    assert_int_equal(rev, 6);

    /* Revoking a lease without keys does not move the revision. */
    assert_int_equal(lease_grant(&les, 30, 60, 0, NULL), 0);
    assert_int_equal(lease_revoke(&les, 30), 0);
    assert_int_equal(mvcc_rev(&store), rev);

    assert_int_equal(lease_revoke(&les, 10), 0);
    assert_int_equal(mvcc_rev(&store), rev + 1);
    assert_false(live("k0"));
    assert_false(live("k1"));
    assert_false(live("k2"));
    assert_true(live("a"));
    assert_true(live("other"));
    assert_false(lease_exists(&les, 10));
    assert_string_equal(keys_of(20), "other");

    /* All three tombstones share the revision, in byte order. */
    {
        struct mvcc_range_result rr;
        assert_int_equal(mvcc_range(&store, S("k"), S("l"), rev, 0, false, &rr),
                         0);
        assert_int_equal(rr.n, 3);
        mvcc_range_result_free(&rr);
        assert_int_equal(
            mvcc_range(&store, S("k"), S("l"), rev + 1, 0, false, &rr), 0);
        assert_int_equal(rr.n, 0);
        mvcc_range_result_free(&rr);
    }

    /* A store with an open txn: refused, nothing changed. */
    assert_int_equal(mvcc_txn_begin(&store), 0);
    assert_int_equal(lease_revoke(&les, 20), IK_EINVAL);
    mvcc_txn_abort(&store);
    assert_true(lease_exists(&les, 20));
    assert_true(live("other"));
    assert_int_equal(lease_revoke(&les, 20), 0);
    assert_false(live("other"));
    assert_int_equal(mvcc_rev(&store), rev + 2);
}

static void attach_detach(void **state)
{
    int64_t deleted;
    (void)state;

    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 2, 60, 0, NULL), 0);
    put("a", 1);
    put("b", 1);
    put("c", 1);
    assert_string_equal(keys_of(1), "a,b,c");
    /* Re-put with the same lease: still once. */
    put("a", 1);
    assert_string_equal(keys_of(1), "a,b,c");
    /* Re-put with another lease moves the key. */
    put("b", 2);
    assert_string_equal(keys_of(1), "a,c");
    assert_string_equal(keys_of(2), "b");
    /* Re-put without a lease detaches. */
    put("c", 0);
    assert_string_equal(keys_of(1), "a");
    /* Delete detaches. */
    assert_int_equal(mvcc_delete_range(&store, S("a"), NULL, 0, &deleted, NULL),
                     0);
    assert_int_equal(deleted, 1);
    assert_string_equal(keys_of(1), "");
    /* A put naming a lease that does not exist attaches nothing. */
    put("d", 77);
    assert_string_equal(keys_of(1), "");
    assert_string_equal(keys_of(2), "b");

    /* A txn: several puts, a re-lease and a delete, all at once. */
    assert_int_equal(mvcc_txn_begin(&store), 0);
    assert_int_equal(mvcc_txn_put(&store, S("x"), S("v"), 1), 0);
    assert_int_equal(mvcc_txn_put(&store, S("y"), S("v"), 2), 0);
    assert_int_equal(mvcc_txn_put(&store, S("b"), S("v"), 1), 0);
    assert_int_equal(mvcc_txn_put(&store, S("c"), S("v"), 2), 0);
    assert_int_equal(mvcc_txn_delete_range(&store, S("y"), NULL, 0, &deleted),
                     0);
    /* Nothing attached before the commit. */
    assert_string_equal(keys_of(1), "");
    mvcc_txn_end(&store);
    assert_string_equal(keys_of(1), "b,x");
    assert_string_equal(keys_of(2), "c");

    /* An aborted txn attaches nothing. */
    assert_int_equal(mvcc_txn_begin(&store), 0);
    assert_int_equal(mvcc_txn_put(&store, S("z"), S("v"), 1), 0);
    mvcc_txn_abort(&store);
    assert_string_equal(keys_of(1), "b,x");

    /* Keys with any byte, including NUL. */
    assert_int_equal(
        mvcc_put(&store, (const uint8_t *)"n\0l", 3, S("v"), 2, NULL), 0);
    {
        struct lease_key *k;
        size_t n;
        assert_int_equal(lease_keys(&les, 2, &k, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(k[1].len, 3);
        assert_memory_equal(k[1].key, "n\0l", 3);
        free(k);
    }
    /* Revoke deletes exactly the attached keys. */
    assert_int_equal(lease_revoke(&les, 1), 0);
    assert_false(live("b"));
    assert_false(live("x"));
    assert_true(live("c"));
    assert_true(live("d"));
}

/* kv's Put/Txn consult the lessor through lease_exists_cb. */
static void kv_integration(void **state)
{
    struct kv kv = {
        .store = &store, .lease_exists = lease_exists_cb, .lease_data = &les};
    Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *resp = NULL;
    (void)state;

    r.key = BIN("foo");
    r.value = BIN("bar");
    r.lease = 5;
    assert_int_equal(kv_put(&kv, &r, &resp), IK_ELEASENOTFOUND);
    assert_null(resp);
    assert_int_equal(lease_grant(&les, 5, 10, 0, NULL), 0);
    assert_int_equal(kv_put(&kv, &r, &resp), 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_string_equal(keys_of(5), "foo");
    assert_int_equal(lease_revoke(&les, 5), 0);
    assert_false(live("foo"));
    assert_int_equal(kv_put(&kv, &r, &resp), IK_ELEASENOTFOUND);
}

/* ---- leader side ---- */

static void promote_renew_expire(void **state)
{
    int64_t ids[8], ttl = 0;
    bool clear = true;
    (void)state;

    cfg.checkpointing = false;
    reconfigure(&cfg);
    assert_int_equal(lease_grant(&les, 1, 5, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 2, 10, 0, NULL), 0);

    /* Not primary: nothing expires, no keep-alive. */
    assert_false(lease_is_primary(&les));
    assert_int_equal(lease_expired(&les, 1000000, ids, 8), 0);
    assert_int_equal(lease_renew(&les, 1, 0, &ttl, &clear), IK_ENOTLEADER);

    /* Promoted at 1000 with a 1000 ms extension. */
    lease_promote(&les, 1000);
    assert_true(lease_is_primary(&les));
    assert_int_equal(remaining(1, 1000), 6);
    assert_int_equal(remaining(2, 1000), 11);
    assert_int_equal(lease_expired(&les, 6999, ids, 8), 0);
    assert_int_equal(lease_expired(&les, 7000, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    /* Expired but not revoked yet: TTL 0 then -1 (truncated). */
    assert_int_equal(remaining(1, 7500), 0);
    assert_int_equal(remaining(1, 8000), -1);
    /* Renewing an expired lease: not found. */
    assert_int_equal(lease_renew(&les, 1, 7001, &ttl, &clear),
                     IK_ELEASENOTFOUND);
    assert_true(lease_exists(&les, 1));
    /* Handed out once, then again after the retry interval (3 s). */
    assert_int_equal(lease_expired(&les, 9999, ids, 8), 0);
    assert_int_equal(lease_expired(&les, 10000, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(lease_revoke(&les, 1), 0);

    /* Keep-alive: the full TTL from now. */
    assert_int_equal(lease_renew(&les, 2, 11000, &ttl, &clear), 0);
    assert_int_equal(ttl, 10);
    assert_false(clear);
    assert_int_equal(remaining(2, 11000), 10);
    assert_int_equal(lease_expired(&les, 20999, ids, 8), 0);
    assert_int_equal(lease_renew(&les, 99, 11000, &ttl, NULL),
                     IK_ELEASENOTFOUND);

    /* A lease granted while primary expires TTL after the grant. */
    assert_int_equal(lease_grant(&les, 3, 3, 12000, NULL), 0);
    assert_int_equal(remaining(3, 12000), 3);
    assert_int_equal(lease_expired(&les, 15000, ids, 8), 1);
    assert_int_equal(ids[0], 3);
    assert_int_equal(lease_revoke(&les, 3), 0);

    /* Several expire: earliest first, at most @max. */
    assert_int_equal(lease_grant(&les, 4, 2, 21000, NULL), 0);
    assert_int_equal(lease_expired(&les, 30000, ids, 1), 1);
    assert_int_equal(ids[0], 2);
    assert_int_equal(lease_expired(&les, 30000, ids, 8), 1);
    assert_int_equal(ids[0], 4);

    /* Demoted: nothing expires, no keep-alive, TTLs are the granted. */
    lease_demote(&les);
    assert_false(lease_is_primary(&les));
    assert_int_equal(lease_expired(&les, 100000, ids, 8), 0);
    assert_int_equal(lease_renew(&les, 2, 100000, &ttl, NULL), IK_ENOTLEADER);
    assert_int_equal(remaining(2, 100000), 10);
    /* Promoted again: a fresh TTL + extension. */
    lease_promote(&les, 200000);
    assert_int_equal(remaining(2, 200000), 11);
    assert_int_equal(lease_expired(&les, 210999, ids, 8), 1);
    assert_int_equal(ids[0], 4);
}

static void expired_rate_limit(void **state)
{
    int64_t ids[200];
    size_t total = 0;
    (void)state;

    cfg.revoke_rate = 100; /* 50 per 500 ms window */
    reconfigure(&cfg);
    lease_promote(&les, 0);
    for (int64_t id = 1; id <= 60; id++) {
        assert_int_equal(lease_grant(&les, id, 5, 0, NULL), 0);
    }
    assert_int_equal(lease_expired(&les, 5000, ids, 200), 50);
    for (size_t i = 0; i < 50; i++) {
        assert_int_equal(ids[i], (int64_t)i + 1);
    }
    /* Same window: budget spent, even for a caller polling faster. */
    assert_int_equal(lease_expired(&les, 5100, ids, 200), 0);
    assert_int_equal(lease_expired(&les, 5499, ids, 200), 0);
    total = lease_expired(&les, 5500, ids, 200);
    assert_int_equal(total, 10);
    assert_int_equal(ids[0], 51);
    assert_int_equal(ids[9], 60);
}

/* etcd spreads piled-up expiries when promoting with many leases. */
static void promote_spreads_pileup(void **state)
{
    static const int64_t want[20] = {10, 10, 10, 10, 10, 10, 11, 11, 11, 11,
                                     11, 12, 12, 12, 12, 12, 12, 13, 13, 13};
    int64_t *ids;
    size_t n;
    (void)state;

    cfg.revoke_rate = 8; /* pile-up from 8 leases; 6 per second */
    cfg.promote_extend_ms = 0;
    reconfigure(&cfg);
    for (int64_t id = 1; id <= 20; id++) {
        assert_int_equal(lease_grant(&les, id, 10, 0, NULL), 0);
    }
    lease_promote(&les, 0);
    /* Leases 7..20 get 1000*k/6 ms more (k = 7..20). */
    for (int64_t id = 1; id <= 20; id++) {
        assert_int_equal(remaining(id, 0), want[id - 1]);
    }
    /* Listed earliest expiry first. */
    assert_int_equal(lease_leases(&les, &ids, &n), 0);
    assert_int_equal(n, 20);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ids[i], (int64_t)i + 1);
    }
    free(ids);

    /* Below the revoke rate nothing is spread. */
    cfg.revoke_rate = 100;
    reconfigure(&cfg);
    for (int64_t id = 1; id <= 20; id++) {
        assert_int_equal(lease_grant(&les, id, 10, 0, NULL), 0);
    }
    lease_promote(&les, 0);
    for (int64_t id = 1; id <= 20; id++) {
        assert_int_equal(remaining(id, 0), 10);
    }
}

static void leases_list(void **state)
{
    int64_t *ids = (void *)1;
    size_t n = 9;
    (void)state;

    assert_int_equal(lease_leases(&les, &ids, &n), 0);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_int_equal(lease_grant(&les, 30, 100, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 10, 300, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 20, 200, 0, NULL), 0);
    /* Not primary: every lease lives forever, by id. */
    assert_int_equal(lease_leases(&les, &ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 10);
    assert_int_equal(ids[1], 20);
    assert_int_equal(ids[2], 30);
    free(ids);
    /* Primary: earliest expiry first. */
    lease_promote(&les, 0);
    assert_int_equal(lease_leases(&les, &ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 30);
    assert_int_equal(ids[1], 20);
    assert_int_equal(ids[2], 10);
    free(ids);
    /* Out of memory: clean error. */
    hooks_on(0);
    ids = (void *)1;
    assert_int_equal(lease_leases(&les, &ids, &n), IK_ENOMEM);
    hooks_off();
    assert_null(ids);
    assert_int_equal(n, 0);
}

/* ---- checkpoints ---- */

static void checkpoints(void **state)
{
    struct lease_checkpoint cps[8];
    int64_t ttl;
    bool clear = false;
    (void)state;

    cfg.checkpoint_interval_ms = 5000;
    reconfigure(&cfg);
    lease_promote(&les, 0);
    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 2, 5, 0, NULL), 0);  /* <= interval */
    assert_int_equal(lease_grant(&les, 3, 30, 0, NULL), 0); /* renewed */

    assert_int_equal(lease_checkpoints(&les, 4999, cps, 8), 0);
    assert_int_equal(lease_renew(&les, 3, 4500, &ttl, NULL), 0);
    assert_int_equal(lease_checkpoints(&les, 5000, cps, 8), 1);
    assert_int_equal(cps[0].id, 1);
    assert_int_equal(cps[0].remaining_ttl, 55);
    /* Lease 3 was renewed: its remaining TTL (29.5 s, rounded up to 30)
     * is not below its TTL, so there is nothing to record. */

    /* Not scheduled again until the checkpoint is applied. */
    assert_int_equal(lease_checkpoints(&les, 20000, cps, 8), 0);
    assert_int_equal(lease_checkpoint(&les, 1, 55, 5100), 0);
    assert_int_equal(lease_checkpoints(&les, 10099, cps, 8), 0);
    assert_int_equal(lease_checkpoints(&les, 10100, cps, 8), 1);
    assert_int_equal(cps[0].id, 1);
    assert_int_equal(cps[0].remaining_ttl, 50);
    assert_int_equal(lease_checkpoint(&les, 1, 50, 10100), 0);

    /* Renewing a checkpointed lease asks to clear the checkpoint and
     * counts from the full TTL. */
    assert_int_equal(lease_renew(&les, 1, 12000, &ttl, &clear), 0);
    assert_true(clear);
    assert_int_equal(ttl, 60);
    assert_int_equal(remaining(1, 12000), 60);
    assert_int_equal(lease_checkpoint(&les, 1, 0, 12100), 0);
    assert_int_equal(lease_renew(&les, 1, 13000, &ttl, &clear), 0);
    assert_false(clear);

    /* Not primary, or checkpointing off: nothing. */
    lease_demote(&les);
    assert_int_equal(lease_checkpoints(&les, 100000, cps, 8), 0);
    cfg.checkpointing = false;
    reconfigure(&cfg);
    lease_promote(&les, 0);
    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    assert_int_equal(lease_checkpoints(&les, 100000, cps, 8), 0);
    assert_int_equal(lease_checkpoint(&les, 1, 20, 0), 0);
    assert_int_equal(lease_renew(&les, 1, 1000, &ttl, &clear), 0);
    assert_false(clear);
    /* ...but an applied checkpoint still counts at the next promotion. */
    lease_demote(&les);
    lease_promote(&les, 2000);
    assert_int_equal(remaining(1, 2000), 21);
}

/* Leader change: the new leader's lessor (restored from a snapshot, then
 * applying the same checkpoints) keeps remaining TTLs. */
static void checkpoint_survives_leader_change(void **state)
{
    struct lessor fol;
    struct mvcc fstore;
    struct lease_checkpoint cps[4];
    uint8_t *buf;
    size_t len, n;
    int64_t ids[4];
    (void)state;

    cfg.checkpoint_interval_ms = 5000;
    reconfigure(&cfg);
    lease_promote(&les, 0);
    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 2, 120, 0, NULL), 0);
    put("k1", 1);
    put("k2", 2);

    /* Snapshot to a new member (store and lessor). */
    assert_int_equal(lease_encode(&les, &buf, &len), 0);
    mvcc_init(&fstore);
    lease_init(&fol, &cfg, &fstore);
    mvcc_set_commit_hook(&fstore, lease_commit_hook, &fol);
    assert_int_equal(lease_decode(&fol, buf, len), 0);
    free(buf);
    assert_int_equal(mvcc_put(&fstore, S("k1"), S("v"), 1, NULL), 0);
    assert_int_equal(mvcc_put(&fstore, S("k2"), S("v"), 2, NULL), 0);

    /* The leader checkpoints at 5 s; every member applies it. */
    n = lease_checkpoints(&les, 5000, cps, 4);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            lease_checkpoint(&les, cps[i].id, cps[i].remaining_ttl, 5000), 0);
        assert_int_equal(
            lease_checkpoint(&fol, cps[i].id, cps[i].remaining_ttl, 5000), 0);
    }
    /* The leader dies at 30 s; the follower takes over at 31 s. */
    lease_promote(&fol, 31000);
    /* Remaining TTL from the checkpoint (55 s, 115 s) + 1 s extension:
     * neither reset to the full TTL nor expired. */
    {
        int64_t r = 0;
        assert_int_equal(lease_time_to_live(&fol, 1, 31000, NULL, &r), 0);
        assert_int_equal(r, 56);
        assert_int_equal(lease_time_to_live(&fol, 2, 31000, NULL, &r), 0);
        assert_int_equal(r, 116);
    }
    assert_int_equal(lease_expired(&fol, 31000, ids, 4), 0);
    assert_int_equal(lease_expired(&fol, 86999, ids, 4), 0);
    assert_int_equal(lease_expired(&fol, 87000, ids, 4), 1);
    assert_int_equal(ids[0], 1);
    /* The new leader revokes through the same path: keys go. */
    assert_int_equal(lease_revoke(&fol, 1), 0);
    assert_int_equal(mvcc_get(&fstore, S("k1"), &(struct mvcc_kv){0}),
                     IK_ENOENT);
    assert_int_equal(mvcc_get(&fstore, S("k2"), &(struct mvcc_kv){0}), 0);
    lease_close(&fol);
    mvcc_close(&fstore);
}

/* ---- snapshot ---- */

static void encode_decode(void **state)
{
    struct lessor other;
    uint8_t *buf, *buf2;
    size_t len, len2;
    int64_t g, r;
    (void)state;

    /* Empty. */
    assert_int_equal(lease_encode(&les, &buf, &len), 0);
    assert_int_equal(len, 24);
    assert_int_equal(lease_decode(&les, buf, len), 0);
    free(buf);

    assert_int_equal(lease_grant(&les, 5, 100, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, -3, 7, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, INT64_MAX, LEASE_MAX_TTL, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, INT64_MIN, 2, 0, NULL), 0);
    assert_int_equal(lease_checkpoint(&les, 5, 42, 0), 0);
    put("a", 5);
    put("b", -3);
    put("c", 5);
    assert_int_equal(lease_encode(&les, &buf, &len), 0);
    assert_int_equal(len, 24 + 4 * 28);

    /* Same state granted in another order: same bytes. */
    lease_init(&other, &cfg, NULL);
    assert_int_equal(lease_grant(&other, INT64_MIN, 2, 0, NULL), 0);
    assert_int_equal(lease_grant(&other, 5, 100, 0, NULL), 0);
    assert_int_equal(lease_grant(&other, INT64_MAX, LEASE_MAX_TTL, 0, NULL), 0);
    assert_int_equal(lease_grant(&other, -3, 7, 0, NULL), 0);
    assert_int_equal(lease_checkpoint(&other, 5, 42, 0), 0);
    assert_int_equal(lease_encode(&other, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf, buf2, len);
    free(buf2);
    lease_close(&other);

    /* Round trip into a fresh lessor: same leases, re-encodes equal. */
    lease_init(&other, &cfg, &store);
    assert_int_equal(lease_grant(&other, 999, 10, 0, NULL), 0);
    lease_promote(&other, 0);
    assert_int_equal(lease_decode(&other, buf, len), 0);
    assert_false(lease_is_primary(&other));
    assert_false(lease_exists(&other, 999));
    assert_int_equal(lease_count(&other), 4);
    assert_int_equal(lease_time_to_live(&other, 5, 0, &g, &r), 0);
    assert_int_equal(g, 100);
    assert_int_equal(r, 42);
    assert_int_equal(lease_time_to_live(&other, INT64_MIN, 0, &g, &r), 0);
    assert_int_equal(g, 2);
    assert_int_equal(lease_encode(&other, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf, buf2, len);
    free(buf2);
    /* Keys come back from the store, explicitly or lazily. */
    {
        struct lease_key *k;
        size_t n;
        assert_int_equal(lease_keys(&other, 5, &k, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(k[0].key, "a", 1);
        assert_memory_equal(k[1].key, "c", 1);
        free(k);
    }
    assert_int_equal(lease_rebuild_from_store(&other, &store), 0);
    {
        struct lease_key *k;
        size_t n;
        assert_int_equal(lease_keys(&other, -3, &k, &n), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(k[0].key, "b", 1);
        free(k);
    }
    lease_close(&other);

    /* A lessor with a larger minimum TTL raises TTLs on restore. */
    {
        struct lease_config c2 = cfg;
        c2.min_ttl = 10;
        lease_init(&other, &c2, NULL);
        assert_int_equal(lease_decode(&other, buf, len), 0);
        assert_int_equal(lease_time_to_live(&other, -3, 0, &g, NULL), 0);
        assert_int_equal(g, 10);
        lease_close(&other);
    }
    free(buf);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Recompute the checksum of record @i of an encoded section. */
static void reseal(uint8_t *buf, size_t i)
{
    uint8_t *p = buf + 24 + 28 * i;
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, 24);
    for (int j = 0; j < 4; j++) {
        p[24 + j] = (uint8_t)(c >> (8 * j));
    }
}

static void decode_corrupt(void **state)
{
    uint8_t *buf, *bad;
    size_t len;
    (void)state;

    assert_int_equal(lease_grant(&les, 1, 10, 0, NULL), 0);
    assert_int_equal(lease_grant(&les, 2, 20, 0, NULL), 0);
    assert_int_equal(lease_checkpoint(&les, 2, 5, 0), 0);
    put("k", 1);
    assert_int_equal(lease_encode(&les, &buf, &len), 0);
    bad = malloc(len + 28);
    assert_non_null(bad);

    /* Every truncation. */
    for (size_t n = 0; n < len; n++) {
        memcpy(bad, buf, n);
        assert_int_equal(lease_decode(&les, bad, n), IK_ECORRUPT);
    }
    /* Extra bytes. */
    memcpy(bad, buf, len);
    memset(bad + len, 0, 28);
    assert_int_equal(lease_decode(&les, bad, len + 1), IK_ECORRUPT);
    assert_int_equal(lease_decode(&les, bad, len + 28), IK_ECORRUPT);
    /* Every single bit flip. */
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            memcpy(bad, buf, len);
            bad[i] ^= (uint8_t)(1u << b);
            assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
        }
    }
    /* Well-checksummed but invalid records. */
    memcpy(bad, buf, len);
    put64(bad + 24, 0); /* id 0 */
    reseal(bad, 0);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
    memcpy(bad, buf, len);
    put64(bad + 24 + 28, 1); /* duplicate id 1 */
    reseal(bad, 1);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
    memcpy(bad, buf, len);
    put64(bad + 24, 3); /* 3 before 2 */
    reseal(bad, 0);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
    memcpy(bad, buf, len);
    put64(bad + 24 + 8, 0); /* TTL 0 */
    reseal(bad, 0);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
    memcpy(bad, buf, len);
    put64(bad + 24 + 8, (uint64_t)LEASE_MAX_TTL + 1);
    reseal(bad, 0);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);
    memcpy(bad, buf, len);
    put64(bad + 24 + 16, (uint64_t)-1); /* negative remaining TTL */
    reseal(bad, 0);
    assert_int_equal(lease_decode(&les, bad, len), IK_ECORRUPT);

    /* The lessor is unchanged by all this. */
    assert_int_equal(lease_count(&les), 2);
    assert_string_equal(keys_of(1), "k");
    {
        uint8_t *again;
        size_t alen;
        assert_int_equal(lease_encode(&les, &again, &alen), 0);
        assert_int_equal(alen, len);
        assert_memory_equal(again, buf, len);
        free(again);
    }
    free(bad);
    free(buf);
}

/* ---- ids ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void idgen(void **state)
{
    struct lease_idgen g, g2;
    enum { N = 20000 };
    int64_t *ids = malloc(2 * N * sizeof *ids);
    (void)state;
    assert_non_null(ids);

    /* etcd's layout, checked against a real etcd 3.4 (member
     * 2e1259d415f2a040 gave lease 2040a2001c9e2305): prefix = low 16 bits
     * of the member id with the top bit cleared, then the 5 low bytes of
     * the millisecond clock, then a counter. */
    lease_idgen_init(&g, UINT64_C(0x2e1259d415f2a040), UINT64_C(0xa2001c9e23));
    assert_true(lease_idgen_next(&g) == INT64_C(0x2040a2001c9e2301));
    assert_true(lease_idgen_next(&g) == INT64_C(0x2040a2001c9e2302));

    /* Two members, same clock: disjoint, positive, unique. */
    lease_idgen_init(&g, 0x1111, 1700000000000ULL);
    lease_idgen_init(&g2, 0x2222, 1700000000000ULL);
    for (int i = 0; i < N; i++) {
        ids[i] = lease_idgen_next(&g);
        ids[N + i] = lease_idgen_next(&g2);
        assert_true(ids[i] > 0);
        assert_true(ids[N + i] > 0);
    }
    qsort(ids, 2 * N, sizeof *ids, cmp_i64);
    for (int i = 1; i < 2 * N; i++) {
        assert_true(ids[i] != ids[i - 1]);
    }
    /* A restart later starts above the ids given before. */
    lease_idgen_init(&g2, 0x1111, 1700000000001ULL + N / 256);
    assert_true(lease_idgen_next(&g2) > ids[N - 1]);

    /* Never 0: the 48-bit suffix wraps to 0 with prefix 0 -> skipped. */
    lease_idgen_init(&g, 0, (UINT64_C(1) << 40) - 1);
    for (int i = 0; i < 255; i++) {
        assert_true(lease_idgen_next(&g) ==
                    (int64_t)(((UINT64_C(1) << 48) - 256) + (uint64_t)i + 1));
    }
    assert_int_equal(lease_idgen_next(&g), 1);
    /* Member ids with bit 15 set still give positive ids. */
    lease_idgen_init(&g, 0xffff, UINT64_MAX);
    for (int i = 0; i < 1000; i++) {
        assert_true(lease_idgen_next(&g) > 0);
    }
    free(ids);
}

/* ---- out of memory ---- */

static void grant_out_of_memory(void **state)
{
    int fails = 0;
    (void)state;

    lease_promote(&les, 0);
    for (int64_t id = 1; id <= 40; id++) {
        for (int n = 0;; n++) {
            int rv;
            hooks_on(n);
            rv = lease_grant(&les, id, 60, 0, NULL);
            hooks_off();
            if (rv == 0) {
                break;
            }
            assert_int_equal(rv, IK_ENOMEM);
            assert_false(lease_exists(&les, id));
            assert_int_equal(lease_count(&les), (size_t)id - 1);
            fails++;
        }
    }
    assert_true(fails >= 40);
    /* Every lease is tracked for expiry (heaps had room). */
    {
        int64_t ids[64];
        assert_int_equal(lease_expired(&les, 60000, ids, 64), 40);
    }
}

static void revoke_out_of_memory(void **state)
{
    int fails = 0;
    (void)state;

    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    for (int i = 0; i < 30; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%02d", i);
        put(k, 1);
    }
    put("free", 0);
    for (int n = 0;; n++) {
        int64_t rev = mvcc_rev(&store);
        int rv;
        hooks_on(n);
        rv = lease_revoke(&les, 1);
        hooks_off();
        if (rv == 0) {
            assert_int_equal(mvcc_rev(&store), rev + 1);
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
        assert_int_equal(mvcc_rev(&store), rev);
        assert_true(lease_exists(&les, 1));
        assert_true(live("key00"));
        assert_true(live("key29"));
        fails++;
    }
    assert_true(fails > 0);
    assert_false(lease_exists(&les, 1));
    assert_false(live("key15"));
    assert_true(live("free"));
}

/* An attachment the commit hook could not record is rebuilt from the
 * store before it matters. */
static void hook_out_of_memory(void **state)
{
    (void)state;

    assert_int_equal(lease_grant(&les, 1, 60, 0, NULL), 0);
    put("a", 1);
    /* The store's own allocations succeed; only the lessor's fail. */
    fail_countdown = 0;
    lease_fail_alloc_hook = fail_after;
    put("b", 1);
    put("c", 1);
    lease_fail_alloc_hook = NULL;
    /* Rebuilding can fail too: clean error. */
    hooks_on(0);
    {
        struct lease_key *k = (void *)1;
        size_t n = 3;
        assert_int_equal(lease_keys(&les, 1, &k, &n), IK_ENOMEM);
        assert_null(k);
    }
    assert_int_equal(lease_revoke(&les, 1), IK_ENOMEM);
    hooks_off();
    assert_true(live("b"));
    assert_string_equal(keys_of(1), "a,b,c");
    assert_int_equal(lease_revoke(&les, 1), 0);
    assert_false(live("a"));
    assert_false(live("b"));
    assert_false(live("c"));

    /* Detach failing (no room for the lookup key) is repaired too. */
    assert_int_equal(lease_grant(&les, 2, 60, 0, NULL), 0);
    put("long-key-to-grow-the-lookup-buffer", 2);
    fail_countdown = 0;
    lease_fail_alloc_hook = fail_after;
    put("long-key-to-grow-the-lookup-buffer-even-more", 2);
    put("long-key-to-grow-the-lookup-buffer", 0);
    lease_fail_alloc_hook = NULL;
    assert_int_equal(lease_revoke(&les, 2), 0);
    assert_true(live("long-key-to-grow-the-lookup-buffer"));
    assert_false(live("long-key-to-grow-the-lookup-buffer-even-more"));
}

static void snapshot_out_of_memory(void **state)
{
    struct lessor other;
    uint8_t *buf;
    size_t len;
    int fails = 0;
    (void)state;

    for (int64_t id = 1; id <= 30; id++) {
        assert_int_equal(lease_grant(&les, id, 60, 0, NULL), 0);
    }
    put("k", 7);
    hooks_on(0);
    assert_int_equal(lease_encode(&les, &buf, &len), IK_ENOMEM);
    hooks_off();
    assert_null(buf);
    assert_int_equal(lease_encode(&les, &buf, &len), 0);

    lease_init(&other, &cfg, &store);
    assert_int_equal(lease_grant(&other, 100, 5, 0, NULL), 0);
    for (int n = 0;; n++) {
        int rv;
        hooks_on(n);
        rv = lease_decode(&other, buf, len);
        hooks_off();
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
        assert_int_equal(lease_count(&other), 1);
        assert_true(lease_exists(&other, 100));
        fails++;
    }
    assert_true(fails > 0);
    assert_int_equal(lease_count(&other), 30);
    for (int n = 0;; n++) {
        int rv;
        hooks_on(n);
        rv = lease_rebuild_from_store(&other, &store);
        hooks_off();
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, IK_ENOMEM);
    }
    {
        struct lease_key *k;
        size_t n;
        assert_int_equal(lease_keys(&other, 7, &k, &n), 0);
        assert_int_equal(n, 1);
        free(k);
    }
    lease_close(&other);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(min_ttl_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(grant_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(revoke_deletes_in_one_revision, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(attach_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(kv_integration, setup, teardown),
        cmocka_unit_test_setup_teardown(promote_renew_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(promote_spreads_pileup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(leases_list, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoint_survives_leader_change,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(encode_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(decode_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(idgen, setup, teardown),
        cmocka_unit_test_setup_teardown(grant_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(revoke_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(hook_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_out_of_memory, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
