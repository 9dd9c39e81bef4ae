/*
 * errors: the one table of ikada error codes.
 *
 * Every fallible function in ikada returns an int: 0 (IK_OK) on success or
 * one of the IK_E* codes below. The table also carries, for each code, the
 * gRPC status code and the exact message etcd sends for the same condition,
 * so the translation to the wire happens here and nowhere else.
 *
 * Long-lived objects keep an `errmsg` buffer (IK_ERRMSG_SIZE bytes) with a
 * human-readable cause; ik_errmsg_wrapf() prefixes context as an error
 * travels up the layers ("open data dir: read meta: checksum mismatch").
 */
#ifndef IKADA_ERRORS_H
#define IKADA_ERRORS_H

#include <stddef.h>

#define IK_ERRMSG_SIZE 256

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum grpc_status {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
};

/*
 * X(name, grpc status, message). The message is what a client sees in
 * grpc-message: etcd's exact text where etcd has one.
 */
#define IK_ERROR_TABLE(X)                                                      \
    /* Generic (not sent to clients as such; they map to INTERNAL/UNKNOWN). */ \
    X(IK_ENOMEM, GRPC_RESOURCE_EXHAUSTED, "ikada: out of memory")              \
    X(IK_EINVAL, GRPC_INVALID_ARGUMENT, "ikada: invalid argument")             \
    X(IK_EIO, GRPC_INTERNAL, "ikada: I/O error")                               \
    X(IK_ECORRUPT, GRPC_DATA_LOSS, "ikada: data corruption detected")          \
    X(IK_ENOENT, GRPC_NOT_FOUND, "ikada: not found")                           \
    X(IK_EPROTO, GRPC_INTERNAL, "ikada: protocol error")                       \
    X(IK_EMALFORMED, GRPC_INTERNAL, "grpc: error unmarshalling request")       \
    X(IK_EUNIMPLEMENTED, GRPC_UNIMPLEMENTED, "unknown method")                 \
    X(IK_ECOMPRESSED, GRPC_UNIMPLEMENTED,                                      \
      "grpc: compressed messages are not supported")                           \
    X(IK_EMSGTOOLARGE, GRPC_RESOURCE_EXHAUSTED,                                \
      "grpc: received message larger than max")                                \
    X(IK_EUNAVAILABLE, GRPC_UNAVAILABLE, "ikada: connection unavailable")      \
    X(IK_ECANCELED, GRPC_CANCELLED, "context canceled")                        \
    X(IK_EDEADLINE, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded")       \
    /* etcd API errors (etcd/etcdserver/api/v3rpc/rpctypes). */                \
    X(IK_EEMPTYKEY, GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided")  \
    X(IK_EKEYNOTFOUND, GRPC_INVALID_ARGUMENT, "etcdserver: key not found")     \
    X(IK_EVALUEPROVIDED, GRPC_INVALID_ARGUMENT,                                \
      "etcdserver: value is provided")                                         \
    X(IK_ELEASEPROVIDED, GRPC_INVALID_ARGUMENT,                                \
      "etcdserver: lease is provided")                                         \
    X(IK_ETOOMANYOPS, GRPC_INVALID_ARGUMENT,                                   \
      "etcdserver: too many operations in txn request")                        \
    X(IK_EDUPKEY, GRPC_INVALID_ARGUMENT,                                       \
      "etcdserver: duplicate key given in txn request")                        \
    X(IK_ECOMPACTED, GRPC_OUT_OF_RANGE,                                        \
      "etcdserver: mvcc: required revision has been compacted")                \
    X(IK_EFUTUREREV, GRPC_OUT_OF_RANGE,                                        \
      "etcdserver: mvcc: required revision is a future revision")              \
    X(IK_ENOSPACE, GRPC_RESOURCE_EXHAUSTED,                                    \
      "etcdserver: mvcc: database space exceeded")                             \
    X(IK_ELEASENOTFOUND, GRPC_NOT_FOUND,                                       \
      "etcdserver: requested lease not found")                                 \
    X(IK_ELEASEEXIST, GRPC_FAILED_PRECONDITION,                                \
      "etcdserver: lease already exists")                                      \
    X(IK_ELEASETTLTOOLARGE, GRPC_OUT_OF_RANGE,                                 \
      "etcdserver: too large lease TTL")                                       \
    X(IK_EWATCHCANCELED, GRPC_CANCELLED, "etcdserver: watch canceled")         \
    X(IK_EMEMBEREXIST, GRPC_FAILED_PRECONDITION,                               \
      "etcdserver: member ID already exist")                                   \
    X(IK_EPEERURLEXIST, GRPC_FAILED_PRECONDITION,                              \
      "etcdserver: Peer URLs already exists")                                  \
    X(IK_EMEMBERNOTENOUGHSTARTED, GRPC_FAILED_PRECONDITION,                    \
      "etcdserver: re-configuration failed due to not enough started members") \
    X(IK_EMEMBERBADURLS, GRPC_INVALID_ARGUMENT,                                \
      "etcdserver: given member URLs are invalid")                             \
    X(IK_EMEMBERNOTFOUND, GRPC_NOT_FOUND, "etcdserver: member not found")      \
    X(IK_EMEMBERNOTLEARNER, GRPC_FAILED_PRECONDITION,                          \
      "etcdserver: can only promote a learner member")                         \
    X(IK_ELEARNERNOTREADY, GRPC_FAILED_PRECONDITION,                           \
      "etcdserver: can only promote a learner member which is in sync with "   \
      "leader")                                                                \
    X(IK_ETOOMANYLEARNERS, GRPC_FAILED_PRECONDITION,                           \
      "etcdserver: too many learner members in cluster")                       \
    X(IK_EREQUESTTOOLARGE, GRPC_INVALID_ARGUMENT,                              \
      "etcdserver: request is too large")                                      \
    X(IK_ETOOMANYREQUESTS, GRPC_RESOURCE_EXHAUSTED,                            \
      "etcdserver: too many requests")                                         \
    X(IK_EPERMISSIONDENIED, GRPC_PERMISSION_DENIED,                            \
      "etcdserver: permission denied")                                         \
    X(IK_EAUTHNOTENABLED, GRPC_FAILED_PRECONDITION,                            \
      "etcdserver: authentication is not enabled")                             \
    X(IK_ENOLEADER, GRPC_UNAVAILABLE, "etcdserver: no leader")                 \
    X(IK_ENOTLEADER, GRPC_FAILED_PRECONDITION, "etcdserver: not leader")       \
    X(IK_ELEADERCHANGED, GRPC_UNAVAILABLE, "etcdserver: leader changed")       \
    X(IK_ESTOPPED, GRPC_UNAVAILABLE, "etcdserver: server stopped")             \
    X(IK_ETIMEOUT, GRPC_UNAVAILABLE, "etcdserver: request timed out")          \
    X(IK_ECORRUPTCLUSTER, GRPC_DATA_LOSS, "etcdserver: corrupt cluster")       \
    X(IK_ENOTSUPPORTEDFORLEARNER, GRPC_UNAVAILABLE,                            \
      "etcdserver: rpc not supported for learner")                             \
    X(IK_EBADLEADERTRANSFEREE, GRPC_FAILED_PRECONDITION,                       \
      "etcdserver: bad leader transferee")                                     \
    X(IK_EGRPC, GRPC_UNKNOWN, "ikclient: call ended with a gRPC error")

enum ik_error {
    IK_OK = 0,
    IK__ERROR_BASE = 1000, /* keep clear of errno values */
#define IK_ERROR_ENUM(name, grpc, msg) name,
    IK_ERROR_TABLE(IK_ERROR_ENUM)
#undef IK_ERROR_ENUM
        IK__ERROR_END
};

/* Short description of @rv (the wire message); never NULL. */
const char *ik_strerror(int rv);

/*
 * The gRPC status code and grpc-message that a client must see for @rv.
 * Unknown codes map to GRPC_UNKNOWN with ik_strerror()'s text. The returned
 * string is static.
 */
int ik_grpc_status(int rv, const char **message);

/*
 * The IK_E* code for a gRPC status received from a peer: the entry whose
 * message equals @message (etcd's texts are unique), else a generic code
 * for @status (IK_EUNAVAILABLE, IK_EDEADLINE, IK_ECANCELED, IK_EIO).
 */
int ik_error_from_grpc(int status, const char *message);

/* snprintf into @errmsg (IK_ERRMSG_SIZE bytes). */
void ik_errmsg_printf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Prefix the current content of @errmsg with a formatted context string and
 * ": ", truncating if needed: wraps a lower layer's cause.
 */
void ik_errmsg_wrapf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* IKADA_ERRORS_H */
