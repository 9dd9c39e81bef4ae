/*
 * lock_client: a tiny gRPC client for etcd's v3lock and v3election
 * services, used by tests/integration/lock_elect.sh to drive ikada and real
 * etcd alike (etcdctl's lock/elect commands never call these services:
 * they run the same algorithm client-side over KV, Watch and Lease).
 *
 *   lock_client [-t TIMEOUT_MS] HOST:PORT COMMAND ARGS...
 *
 *   lock NAME [LEASE]                    Lock
 *   unlock KEY                           Unlock
 *   campaign NAME LEASE VALUE            Campaign
 *   proclaim NAME KEY REV LEASE VALUE    Proclaim
 *   proclaim-nil VALUE                   Proclaim without a leader field
 *   resign NAME KEY REV LEASE            Resign
 *   resign-nil                           Resign without a leader field
 *   leader NAME                          Leader
 *   observe NAME [COUNT]                 Observe; after COUNT responses the
 *                                        call is cancelled
 *
 * LEASE and REV are decimal. Every response prints as lines of
 * "field=value" (bytes as they are; tests use printable names), then
 * "status=CODE message=TEXT" for the final gRPC status (omitted when an
 * observe was cancelled after COUNT responses). Lines are flushed as they
 * come, so a script can follow an observer. Exit status: 0 for OK, 2 for
 * any other gRPC status, 1 for a usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "client/grpc_client.h"
#include "client/grpc_client_uv.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"
#include "server/errors.h"

struct run {
    uv_loop_t loop;
    struct grpc_client_uv client;
    const ProtobufCMessageDescriptor *resp_desc;
    long want; /* observe: responses before cancelling (0: no limit) */
    long got;
    int status;
    bool done;
    bool cancelled;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void print_bytes(const char *name, ProtobufCBinaryData b)
{
    printf("%s=%.*s\n", name, (int)b.len, (const char *)b.data);
}

static void print_header(const Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL) {
        printf("header=none\n");
        return;
    }
    printf("header.revision=%" PRId64 "\n", h->revision);
    printf("header.member=%s\n", h->member_id != 0 ? "set" : "zero");
    printf("header.cluster=%s\n", h->cluster_id != 0 ? "set" : "zero");
    printf("header.term=%s\n", h->raft_term != 0 ? "set" : "zero");
}

static void print_kv(const Mvccpb__KeyValue *kv)
{
    if (kv == NULL) {
        printf("kv=none\n");
        return;
    }
    print_bytes("kv.key", kv->key);
    print_bytes("kv.value", kv->value);
    printf("kv.create=%" PRId64 "\n", kv->create_revision);
    printf("kv.mod=%" PRId64 "\n", kv->mod_revision);
    printf("kv.version=%" PRId64 "\n", kv->version);
    printf("kv.lease=%" PRId64 "\n", kv->lease);
}

static void print_response(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    if (d == &v3lockpb__lock_response__descriptor) {
        const V3lockpb__LockResponse *r = (const V3lockpb__LockResponse *)m;
        print_header(r->header);
        print_bytes("key", r->key);
    } else if (d == &v3lockpb__unlock_response__descriptor) {
        print_header(((const V3lockpb__UnlockResponse *)m)->header);
    } else if (d == &v3electionpb__campaign_response__descriptor) {
        const V3electionpb__CampaignResponse *r =
            (const V3electionpb__CampaignResponse *)m;
        print_header(r->header);
        if (r->leader == NULL) {
            printf("leader=none\n");
        } else {
            print_bytes("leader.name", r->leader->name);
            print_bytes("leader.key", r->leader->key);
            printf("leader.rev=%" PRId64 "\n", r->leader->rev);
            printf("leader.lease=%" PRId64 "\n", r->leader->lease);
        }
    } else if (d == &v3electionpb__proclaim_response__descriptor) {
        print_header(((const V3electionpb__ProclaimResponse *)m)->header);
    } else if (d == &v3electionpb__resign_response__descriptor) {
        print_header(((const V3electionpb__ResignResponse *)m)->header);
    } else if (d == &v3electionpb__leader_response__descriptor) {
        const V3electionpb__LeaderResponse *r =
            (const V3electionpb__LeaderResponse *)m;
        print_header(r->header);
        print_kv(r->kv);
    }
}

static void on_message(struct grpc_client_call *call, const uint8_t *data,
                       size_t len)
{
    struct run *r = grpc_client_call_data(call);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(r->resp_desc, NULL, len, data);
    if (m == NULL) {
        printf("response=undecodable\n");
    } else {
        print_response(m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    printf("--\n");
    fflush(stdout);
    r->got++;
    if (r->want > 0 && r->got >= r->want) {
        grpc_client_call_cancel(call);
        r->cancelled = true;
        r->done = true;
        r->status = GRPC_OK;
    }
}

static void on_close(struct grpc_client_call *call, int status,
                     const char *message)
{
    struct run *r = grpc_client_call_data(call);
    printf("status=%d message=%s\n", status, message);
    fflush(stdout);
    r->status = status;
    r->done = true;
}

static void closed(struct grpc_client_uv *c)
{
    (void)c;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: lock_client [-t TIMEOUT_MS] HOST:PORT COMMAND ARGS...\n"
            "  lock NAME [LEASE] | unlock KEY | campaign NAME LEASE VALUE |\n"
            "  proclaim NAME KEY REV LEASE VALUE | proclaim-nil VALUE |\n"
            "  resign NAME KEY REV LEASE | resign-nil | leader NAME |\n"
            "  observe NAME [COUNT]\n");
    return 1;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Build the request of @cmd; returns the method path or NULL. */
static const char *build(const char *cmd, char **a, int n,
                         ProtobufCMessage **out, struct run *r)
{
    static V3lockpb__LockRequest lock;
    static V3lockpb__UnlockRequest unlock;
    static V3electionpb__CampaignRequest campaign;
    static V3electionpb__ProclaimRequest proclaim;
    static V3electionpb__ResignRequest resign;
    static V3electionpb__LeaderRequest leader;
    static V3electionpb__LeaderKey lk;

    v3electionpb__leader_key__init(&lk);
    if (strcmp(cmd, "lock") == 0 && (n == 1 || n == 2)) {
        v3lockpb__lock_request__init(&lock);
        lock.name = bin(a[0]);
        lock.lease = n == 2 ? strtoll(a[1], NULL, 10) : 0;
        *out = &lock.base;
        r->resp_desc = &v3lockpb__lock_response__descriptor;
        return "/v3lockpb.Lock/Lock";
    }
    if (strcmp(cmd, "unlock") == 0 && n == 1) {
        v3lockpb__unlock_request__init(&unlock);
        unlock.key = bin(a[0]);
        *out = &unlock.base;
        r->resp_desc = &v3lockpb__unlock_response__descriptor;
        return "/v3lockpb.Lock/Unlock";
    }
    if (strcmp(cmd, "campaign") == 0 && n == 3) {
        v3electionpb__campaign_request__init(&campaign);
        campaign.name = bin(a[0]);
        campaign.lease = strtoll(a[1], NULL, 10);
        campaign.value = bin(a[2]);
        *out = &campaign.base;
        r->resp_desc = &v3electionpb__campaign_response__descriptor;
        return "/v3electionpb.Election/Campaign";
    }
    if ((strcmp(cmd, "proclaim") == 0 && n == 5) ||
        (strcmp(cmd, "proclaim-nil") == 0 && n == 1)) {
        v3electionpb__proclaim_request__init(&proclaim);
        if (n == 5) {
            lk.name = bin(a[0]);
            lk.key = bin(a[1]);
            lk.rev = strtoll(a[2], NULL, 10);
            lk.lease = strtoll(a[3], NULL, 10);
            proclaim.leader = &lk;
        }
        proclaim.value = bin(a[n - 1]);
        *out = &proclaim.base;
        r->resp_desc = &v3electionpb__proclaim_response__descriptor;
        return "/v3electionpb.Election/Proclaim";
    }
    if ((strcmp(cmd, "resign") == 0 && n == 4) ||
        (strcmp(cmd, "resign-nil") == 0 && n == 0)) {
        v3electionpb__resign_request__init(&resign);
        if (n == 4) {
            lk.name = bin(a[0]);
            lk.key = bin(a[1]);
            lk.rev = strtoll(a[2], NULL, 10);
            lk.lease = strtoll(a[3], NULL, 10);
            resign.leader = &lk;
        }
        *out = &resign.base;
        r->resp_desc = &v3electionpb__resign_response__descriptor;
        return "/v3electionpb.Election/Resign";
    }
    if ((strcmp(cmd, "leader") == 0 && n == 1) ||
        (strcmp(cmd, "observe") == 0 && (n == 1 || n == 2))) {
        v3electionpb__leader_request__init(&leader);
        leader.name = bin(a[0]);
        *out = &leader.base;
        r->resp_desc = &v3electionpb__leader_response__descriptor;
        if (cmd[0] == 'o') {
            r->want = n == 2 ? strtol(a[1], NULL, 10) : 0;
            return "/v3electionpb.Election/Observe";
        }
        return "/v3electionpb.Election/Leader";
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct grpc_client_call_cbs cbs = {on_message, on_close};
    struct grpc_client_config cfg = {0};
    struct grpc_client_conn *conn;
    struct grpc_client_call *call;
    ProtobufCMessage *req = NULL;
    uint64_t timeout_ms = 0;
    const char *path, *colon;
    char host[256];
    struct run r;
    int i = 1;

    if (argc > 2 && strcmp(argv[1], "-t") == 0) {
        timeout_ms = strtoull(argv[2], NULL, 10);
        i = 3;
    }
    if (argc - i < 2) {
        return usage();
    }
    colon = strrchr(argv[i], ':');
    if (colon == NULL || (size_t)(colon - argv[i]) >= sizeof host) {
        return usage();
    }
    memset(&r, 0, sizeof r);
    path = build(argv[i + 1], argv + i + 2, argc - i - 2, &req, &r);
    if (path == NULL) {
        return usage();
    }
    memcpy(host, argv[i], (size_t)(colon - argv[i]));
    host[colon - argv[i]] = '\0';

    uv_loop_init(&r.loop);
    cfg.now_ms = now_ms;
    cfg.authority = argv[i];
    cfg.max_recv_msg_size = INT32_MAX;
    if (grpc_client_uv_init(&r.client, &r.loop, host,
                            (uint16_t)strtoul(colon + 1, NULL, 10),
                            &cfg) != 0) {
        fprintf(stderr, "lock_client: out of memory\n");
        return 1;
    }
    conn = grpc_client_uv_conn(&r.client);
    if (conn == NULL ||
        grpc_client_call_start(conn, path, timeout_ms, NULL, 0, &cbs, &r,
                               &call) != 0 ||
        grpc_client_call_send_proto(call, req) != 0 ||
        grpc_client_call_close_send(call) != 0) {
        fprintf(stderr, "lock_client: cannot start the call\n");
        return 1;
    }
    while (!r.done && uv_run(&r.loop, UV_RUN_ONCE) != 0) {
    }
    grpc_client_uv_close(&r.client, closed);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    return r.status == GRPC_OK ? 0 : 2;
}
