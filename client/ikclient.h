/*
 * ikclient: ikada's etcd v3 client library (KV, Watch, Lease, Cluster,
 * Maintenance, Lock, Election), over the gRPC client core
 * (client/grpc_client.h) and its libuv glue (client/grpc_client_uv.h).
 * It talks to any etcd v3 endpoint: ikada or real etcd.
 *
 * Endpoints and failover: the client holds a list of endpoints and sends
 * every call to the current one. When a call fails with a status that says
 * the endpoint cannot serve it (UNAVAILABLE: connection refused or lost,
 * "etcdserver: no leader", "etcdserver: leader changed", the endpoint
 * stopping), the client moves to the next endpoint (round robin) and
 * retries, until the call's deadline, but only when retrying is safe:
 *  - the request never reached a server (dial failed or timed out, stream
 *    refused, GOAWAY before the stream was processed), or
 *  - the call is idempotent: the methods etcd 3.4's clientv3 marks
 *    "repeatable": KV Range (serializable or not), Lease LeaseGrant,
 *    LeaseRevoke, LeaseTimeToLive, LeaseLeases, LeaseKeepAlive, Cluster
 *    MemberList, Maintenance Alarm, Status, Hash, HashKV, MoveLeader, Auth
 *    UserList, UserGet, RoleList, RoleGet; or the caller passed
 *    IKCLIENT_IDEMPOTENT.
 * A write whose outcome is unknown (connection lost after it was sent, or a
 * deadline) is NOT retried: it fails with that status, and the caller must
 * treat it as possibly applied. Other errors (e.g. "etcdserver: requested
 * revision has been compacted") are returned as they are. Retries wait
 * 25 ms (growing to 500 ms once every endpoint failed, 10% jitter); when
 * the call's deadline passes first the call ends DEADLINE_EXCEEDED
 * "context deadline exceeded" (as clientv3), not with the last
 * endpoint's error. Any UNAVAILABLE outcome moves the client's current
 * endpoint on, so the next call goes elsewhere even when this one was not
 * retried.
 *
 * Dialing: a connection is made to an endpoint on first use and kept. If
 * its TCP connection is not up within dial_timeout_ms, the calls waiting
 * on it fail with UNAVAILABLE "connection error: desc = \"transport: Error
 * while dialing dial tcp HOST:PORT: i/o timeout\"" (and are retried
 * elsewhere as above). Other dial errors carry grpc-go's wording too,
 * e.g. "... dial tcp 127.0.0.1:2379: connect: connection refused\"".
 *
 * Auth: with config.user set, the client calls Auth.Authenticate (on the
 * current endpoint) before its first call, stream or keep-alive, and sends
 * the token as "token" metadata on everything afterwards (etcd's
 * protocol). "etcdserver: authentication is not enabled" from the server
 * means: go on without a token. When a call fails with "etcdserver: invalid
 * auth token" / "etcdserver: revision of auth store is old" the token is
 * dropped, the client authenticates again and retries that call once.
 * An Authenticate failure (e.g. INVALID_ARGUMENT "etcdserver:
 * authentication failed, invalid user ID or password") is the outcome of
 * the call that needed the token.
 *
 * Watches and lease keep-alives survive reconnects: a watch whose stream
 * breaks is re-created on the next endpoint from the last revision it
 * delivered + 1 (so no event is lost or delivered twice); a keep-alive is
 * re-sent on the new stream. A watch ends only when cancelled by the owner,
 * cancelled by the server (e.g. compacted: the response with
 * compact_revision is delivered, then the watch ends), when its stream ends
 * with a status other than UNAVAILABLE or INTERNAL (clientv3's "halt"
 * errors, e.g. PERMISSION_DENIED), or on ikclient_free(). Each watch has
 * its own gRPC stream.
 *
 * Threading model: an ikclient and everything made from it belong to one
 * thread. It runs on a libuv loop: its own private loop (config.loop NULL)
 * or the caller's. The synchronous calls (ikclient_call and the typed
 * wrappers) run the loop until their answer arrives; they must not be
 * called from inside an ikclient callback, and need a private loop or a
 * caller loop that is not running. Asynchronous callbacks (watch events,
 * keep-alive answers, ikclient_call_async completions) run on the loop's
 * thread: inside ikclient_run(), a synchronous call, or the caller's
 * uv_run(). Callbacks never fire from inside the function that started the
 * operation, and never after the operation was cancelled or stopped.
 *
 * Memory: responses are protobuf-c messages unpacked with the libc
 * allocator; the caller owns them and frees them with
 * protobuf_c_message_free_unpacked(msg, NULL). Requests are the caller's
 * and only read during the call.
 *
 * Errors: functions return 0 or an IK_E* code (server/errors.h). A call
 * that reached a gRPC outcome other than OK returns IK_EGRPC and fills
 * *st with the gRPC status code and message exactly as the server (or the
 * transport, in grpc-go's wording) reported it, e.g. code 9
 * "etcdserver: requested revision has been compacted".
 */
#ifndef IKADA_IKCLIENT_H
#define IKADA_IKCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "proto/rpc.pb-c.h"

struct ikclient;
struct ikclient_watch;
struct ikclient_keepalive;

struct ikclient_config {
    /* Endpoints: "http://host:port", "host:port" (IPv6 as [addr]:port).
     * At least one. Copied. */
    const char *const *endpoints;
    size_t n_endpoints;
    /* Time to establish one connection; 0: 2000 ms. */
    uint64_t dial_timeout_ms;
    /* Deadline of one synchronous call, failover included; 0: 5000 ms. */
    uint64_t request_timeout_ms;
    /* Largest response message; 0: INT32_MAX (as etcd's clientv3). */
    size_t max_recv_msg_size;
    /* user-agent, or NULL for "ikclient/<version>". Copied. */
    const char *user_agent;
    /* When @user is set, ikclient authenticates (Auth.Authenticate) and
     * sends the token with every call (see "Auth" above). @password NULL
     * means "". Copied. */
    const char *user;
    const char *password;
    /* Loop to run on; NULL: a private loop owned by the client. */
    uv_loop_t *loop;
};

/* The final outcome of a call that did not succeed. */
struct ikclient_status {
    int code;          /* gRPC status code (enum grpc_status); 0 = OK */
    char message[512]; /* grpc-message, "" when none; truncated to fit */
    /* Unary calls: true when the call never reached a connected endpoint,
     * i.e. its last attempt failed to connect (dial refused or timed out)
     * or it was still waiting for a connection when its deadline passed
     * (grpc-go then reports "all SubConns are in TransientFailure").
     * False for calls that were sent and not answered in time, and for
     * watch and keep-alive outcomes. */
    bool unreachable;
};

/* Flags for ikclient_call(). */
enum {
    IKCLIENT_IDEMPOTENT = 1u << 0, /* safe to retry on another endpoint */
    IKCLIENT_NO_FAILOVER = 1u << 1 /* only the endpoint given / current one */
};

/*
 * Create a client. Nothing is dialed until the first call. Returns 0,
 * IK_EINVAL (no endpoints, or an endpoint that does not parse, with the
 * reason in *errmsg if @errmsg is not NULL; https:// endpoints are
 * IK_EINVAL "TLS is not supported"), or IK_ENOMEM.
 */
int ikclient_new(const struct ikclient_config *cfg, struct ikclient **out,
                 char *errmsg, size_t errmsg_size);

/* Cancel everything (no callbacks fire), close the connections, run the
 * private loop until they are closed, free. NULL is a no-op. Not from
 * inside a callback. */
void ikclient_free(struct ikclient *c);

/* The loop the client runs on. */
uv_loop_t *ikclient_loop(struct ikclient *c);

size_t ikclient_endpoint_count(const struct ikclient *c);
/* Endpoint @i as given in the config (normalised: no scheme, no trailing
 * '/'), e.g. "127.0.0.1:2379"; NULL if @i is out of range. */
const char *ikclient_endpoint(const struct ikclient *c, size_t i);

/*
 * Synchronous unary call of @method (e.g. "/etcdserverpb.KV/Range") with
 * @req; on success *resp is the unpacked response of type @resp_desc
 * (caller frees) and 0 is returned. Fails over as described at the top
 * (IKCLIENT_IDEMPOTENT marks the call safe to retry). @timeout_ms 0: the
 * config's request timeout. Returns 0, IK_EGRPC with *st filled (st may
 * be NULL), IK_EPROTO (the response did not decode), IK_ENOMEM.
 */
int ikclient_call(struct ikclient *c, const char *method,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, unsigned flags,
                  uint64_t timeout_ms, ProtobufCMessage **resp,
                  struct ikclient_status *st);

/* Same, to endpoint @endpoint only (no failover, no retry): for
 * per-endpoint commands such as endpoint status/health/hashkv. IK_EINVAL
 * (st: INVALID_ARGUMENT) when @endpoint is out of range. */
int ikclient_call_endpoint(struct ikclient *c, size_t endpoint,
                           const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc,
                           uint64_t timeout_ms, ProtobufCMessage **resp,
                           struct ikclient_status *st);

/*
 * Authenticate now with the config's user and password instead of before
 * the first call (what clientv3.New does when both are non-empty): one
 * Auth.Authenticate sent like an idempotent call (failover and retries
 * until @timeout_ms; 0: the request timeout). On success the token is kept
 * and sent with every later call. Returns 0 (also when the config has no
 * user: nothing is sent), IK_EGRPC with *st (the server's answer, e.g.
 * INVALID_ARGUMENT "etcdserver: authentication failed, invalid user ID or
 * password", or DEADLINE_EXCEEDED with st->unreachable), IK_ENOMEM, or
 * IK_EINVAL while a lazy authentication is in flight. When the server
 * answers FAILED_PRECONDITION "etcdserver: authentication is not enabled"
 * that answer is returned (IK_EGRPC) and the client goes on without a
 * token, as clientv3 does; after any other failure the next call tries
 * to authenticate again.
 */
int ikclient_authenticate(struct ikclient *c, uint64_t timeout_ms,
                          struct ikclient_status *st);

/* The auth token the client holds (sent as "token" metadata), NULL when
 * none; valid until the next call on @c. For callers that open their own
 * gRPC streams to the same server. */
const char *ikclient_token(const struct ikclient *c);

/* Typed synchronous wrappers (flags chosen per method as described at the
 * top; same returns as ikclient_call). */
int ikclient_range(struct ikclient *c, const Etcdserverpb__RangeRequest *req,
                   Etcdserverpb__RangeResponse **resp,
                   struct ikclient_status *st);
int ikclient_put(struct ikclient *c, const Etcdserverpb__PutRequest *req,
                 Etcdserverpb__PutResponse **resp, struct ikclient_status *st);
int ikclient_delete_range(struct ikclient *c,
                          const Etcdserverpb__DeleteRangeRequest *req,
                          Etcdserverpb__DeleteRangeResponse **resp,
                          struct ikclient_status *st);
int ikclient_txn(struct ikclient *c, const Etcdserverpb__TxnRequest *req,
                 Etcdserverpb__TxnResponse **resp, struct ikclient_status *st);
int ikclient_compact(struct ikclient *c,
                     const Etcdserverpb__CompactionRequest *req,
                     Etcdserverpb__CompactionResponse **resp,
                     struct ikclient_status *st);
int ikclient_lease_grant(struct ikclient *c,
                         const Etcdserverpb__LeaseGrantRequest *req,
                         Etcdserverpb__LeaseGrantResponse **resp,
                         struct ikclient_status *st);
int ikclient_lease_revoke(struct ikclient *c,
                          const Etcdserverpb__LeaseRevokeRequest *req,
                          Etcdserverpb__LeaseRevokeResponse **resp,
                          struct ikclient_status *st);
int ikclient_lease_time_to_live(struct ikclient *c,
                                const Etcdserverpb__LeaseTimeToLiveRequest *req,
                                Etcdserverpb__LeaseTimeToLiveResponse **resp,
                                struct ikclient_status *st);
int ikclient_member_list(struct ikclient *c,
                         const Etcdserverpb__MemberListRequest *req,
                         Etcdserverpb__MemberListResponse **resp,
                         struct ikclient_status *st);
int ikclient_status(struct ikclient *c, size_t endpoint,
                    Etcdserverpb__StatusResponse **resp,
                    struct ikclient_status *st);

/*
 * Asynchronous unary call: @cb runs once on the loop with status 0 and the
 * response (the callback owns it), or with an error code, NULL and *st.
 * Failover as ikclient_call. Returns 0 or IK_ENOMEM (no callback then).
 */
typedef void (*ikclient_call_cb)(void *data, int rc, ProtobufCMessage *resp,
                                 const struct ikclient_status *st);
int ikclient_call_async(struct ikclient *c, const char *method,
                        const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc,
                        unsigned flags, uint64_t timeout_ms,
                        ikclient_call_cb cb, void *data);

/*
 * Watch. @req is copied. @cb runs for every WatchResponse of this watch
 * after the created response (created, progress and event responses are
 * all delivered; @resp is valid during the callback only). When the watch
 * ends (server cancel, compaction, unrecoverable error) @cb runs a last
 * time with @resp the final response or NULL, and @done true; *st tells
 * why when @resp is NULL (with a final response, st->message carries its
 * cancel_reason, code 0). After that last callback returns the watch is
 * freed: do not cancel it (cancelling it from inside that callback is
 * allowed and a no-op). Resumption across reconnects is invisible to
 * the callback except for a gap in time. Returns 0 or IK_ENOMEM.
 */
typedef void (*ikclient_watch_cb)(struct ikclient_watch *w, void *data,
                                  const Etcdserverpb__WatchResponse *resp,
                                  bool done, const struct ikclient_status *st);
int ikclient_watch(struct ikclient *c,
                   const Etcdserverpb__WatchCreateRequest *req,
                   ikclient_watch_cb cb, void *data,
                   struct ikclient_watch **out);
/* Ask the server for a progress notification on this watch's stream
 * (delivered to the callback like any response). While the stream is not
 * up yet (just created, or being re-created) the request is kept and sent
 * right after the stream's create request (each ask is sent).
 * Returns 0, IK_ENOMEM or IK_EIO (the stream could not take it). */
int ikclient_watch_progress(struct ikclient_watch *w);
/* Cancel: no callback fires afterwards; the pointer is invalid. */
void ikclient_watch_cancel(struct ikclient_watch *w);
/* Revision of the last event delivered (0 if none). */
int64_t ikclient_watch_last_revision(const struct ikclient_watch *w);

/*
 * Keep lease @id alive: a LeaseKeepAlive request every TTL/3 (at least
 * every 500 ms), re-sent across reconnects. @cb runs for each answer with
 * its response; when the lease is gone (TTL <= 0 in an answer) it runs a
 * last time with @done true, and also with @done true and @resp NULL when
 * no endpoint answered before the lease's last known TTL ran out (before
 * the first answer: dial_timeout_ms + 1 s, as clientv3); *st then holds
 * the last stream error, or DEADLINE_EXCEEDED "context deadline exceeded".
 * After a @done callback returns the keep-alive is freed: do not stop it
 * (stopping it from inside that callback is allowed and a no-op).
 * Returns 0 or IK_ENOMEM.
 */
typedef void (*ikclient_keepalive_cb)(
    struct ikclient_keepalive *ka, void *data,
    const Etcdserverpb__LeaseKeepAliveResponse *resp, bool done,
    const struct ikclient_status *st);
int ikclient_keepalive(struct ikclient *c, int64_t id, ikclient_keepalive_cb cb,
                       void *data, struct ikclient_keepalive **out);
/* One keep-alive now, synchronously (etcdctl lease keep-alive --once),
 * retried on other endpoints like an idempotent call: returns 0 with
 * *resp, IK_EGRPC with *st. A lease that does not exist answers TTL <= 0
 * (clientv3 turns that into "etcdserver: requested lease not found"). */
int ikclient_keepalive_once(struct ikclient *c, int64_t id,
                            Etcdserverpb__LeaseKeepAliveResponse **resp,
                            struct ikclient_status *st);
void ikclient_keepalive_stop(struct ikclient_keepalive *ka);

/*
 * Run the loop for async work: until @timeout_ms passed (0: no limit),
 * ikclient_break() was called, or nothing is left to do (no pending
 * ikclient_call_async(), watch or keep-alive). Returns 0.
 */
int ikclient_run(struct ikclient *c, uint64_t timeout_ms);
/* Make ikclient_run() return (from a callback or a signal watcher). */
void ikclient_break(struct ikclient *c);

/* grpc-go's name of gRPC status code @code ("OK", "Canceled", ...,
 * "Unauthenticated" for 0..16), a static string; NULL for any other code
 * (callers choose their own text for those). */
const char *ikclient_code_name(int code);

/* "Name: message" for logs, with grpc-go's code name, e.g.
 * "Unavailable: etcdserver: no leader" ("Code(N): ..." for unknown codes);
 * returns @buf. */
const char *ikclient_strstatus(const struct ikclient_status *st, char *buf,
                               size_t size);

#endif /* IKADA_IKCLIENT_H */
