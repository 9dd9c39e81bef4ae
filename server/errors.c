#include "server/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct ik_error_entry {
    int grpc;
    const char *message;
};

static const struct ik_error_entry ik_errors[] = {
#define IK_ERROR_ENTRY(name, grpc, msg) [name - IK__ERROR_BASE] = {grpc, msg},
    IK_ERROR_TABLE(IK_ERROR_ENTRY)
#undef IK_ERROR_ENTRY
};

static const struct ik_error_entry *lookup(int rv)
{
    if (rv <= IK__ERROR_BASE || rv >= IK__ERROR_END) {
        return NULL;
    }
    return &ik_errors[rv - IK__ERROR_BASE];
}

const char *ik_strerror(int rv)
{
    const struct ik_error_entry *e;
    if (rv == IK_OK) {
        return "ok";
    }
    e = lookup(rv);
    return e != NULL ? e->message : "ikada: unknown error";
}

int ik_grpc_status(int rv, const char **message)
{
    const struct ik_error_entry *e;
    if (rv == IK_OK) {
        *message = "";
        return GRPC_OK;
    }
    e = lookup(rv);
    if (e == NULL) {
        *message = "ikada: unknown error";
        return GRPC_UNKNOWN;
    }
    *message = e->message;
    return e->grpc;
}

int ik_error_from_grpc(int status, const char *message)
{
    if (status == GRPC_OK) {
        return IK_OK;
    }
    for (int rv = IK__ERROR_BASE + 1; message != NULL && rv < IK__ERROR_END;
         rv++) {
        const struct ik_error_entry *e = lookup(rv);
        if (e->grpc == status && strcmp(e->message, message) == 0) {
            return rv;
        }
    }
    switch (status) {
    case GRPC_UNAVAILABLE:
        return IK_EUNAVAILABLE;
    case GRPC_DEADLINE_EXCEEDED:
        return IK_EDEADLINE;
    case GRPC_CANCELLED:
        return IK_ECANCELED;
    default:
        return IK_EIO;
    }
}

void ik_errmsg_printf(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, IK_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

void ik_errmsg_wrapf(char *errmsg, const char *fmt, ...)
{
    char cause[IK_ERRMSG_SIZE];
    size_t n;
    va_list ap;

    memcpy(cause, errmsg, IK_ERRMSG_SIZE);
    cause[IK_ERRMSG_SIZE - 1] = '\0';
    va_start(ap, fmt);
    vsnprintf(errmsg, IK_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    if (cause[0] == '\0') {
        return;
    }
    /* Append ": <cause>", truncating: the message is for humans. */
    n = strlen(errmsg);
    if (n + 2 < IK_ERRMSG_SIZE) {
        size_t room = IK_ERRMSG_SIZE - n - 3; /* ": " and the NUL */
        size_t len = strlen(cause);
        errmsg[n++] = ':';
        errmsg[n++] = ' ';
        if (len > room) {
            len = room;
        }
        memcpy(errmsg + n, cause, len);
        errmsg[n + len] = '\0';
    }
}
