/*
 * grpc_client_uv: libuv glue for the gRPC client core (see
 * grpc_client_uv.h).
 *
 * Each dial creates a "link": a TCP handle plus the core connection that
 * runs over it. A link is freed only from libuv close callbacks, so a link
 * that is being closed stays valid until the loop comes back, whatever the
 * call callbacks fired while closing it did. Call callbacks run inside our
 * libuv callbacks (c->busy > 0); grpc_client_uv_close() from there only
 * marks the client and the teardown happens when the outermost libuv
 * callback returns.
 */
#include "client/grpc_client_uv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errors.h"
#include "server/uvwrite.h"

#define READ_BUF (64u << 10)

struct grpc_client_uv_link {
    struct grpc_client_uv *c;
    struct grpc_client_uv_link *next; /* c->links */
    struct grpc_client_conn *gc;      /* NULL once closing */
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    struct uvwrite w;              /* output; dirty list: c->dirty */
    char dial_err[IK_ERRMSG_SIZE]; /* set: fail the link on next flush */
    int pending; /* libuv callbacks still due (close, getaddrinfo) */
    bool connected;
    bool reading;
    bool closing;
    bool close_after_flush; /* protocol error: flush the GOAWAY, then close */
};

static const char MSG_CLIENT_CLOSING[] =
    "grpc: the client connection is closing";

static void link_flush(struct grpc_client_uv_link *l);
static void prepare_cb(uv_prepare_t *h);
static void timer_cb(uv_timer_t *h);

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* Client bookkeeping */

static void handle_closed(struct grpc_client_uv *c)
{
    if (--c->pending_closes == 0 && c->torn_down) {
        free(c->rbuf);
        c->rbuf = NULL;
        free(c->host);
        c->host = NULL;
        free(c->authority);
        c->authority = NULL;
        free(c->user_agent);
        c->user_agent = NULL;
        if (c->close_cb != NULL) {
            c->close_cb(c);
        }
    }
}

/* Arm the timer for the earliest deadline of any connection. */
static void arm_timer(struct grpc_client_uv *c)
{
    struct grpc_client_uv_link *l;
    uint64_t due = UINT64_MAX, now;

    if (c->torn_down) {
        return;
    }
    for (l = c->links; l != NULL; l = l->next) {
        uint64_t d = grpc_client_conn_next_deadline(l->gc);
        if (d < due) {
            due = d;
        }
    }
    if (due == c->timer_due) {
        return;
    }
    c->timer_due = due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    now = now_ms();
    uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
}

static void teardown(struct grpc_client_uv *c);

/* Leave one of our libuv callbacks. */
static void client_leave(struct grpc_client_uv *c)
{
    if (--c->busy == 0 && c->closing && !c->torn_down) {
        teardown(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Links */

static void link_free(struct grpc_client_uv_link *l)
{
    uvwrite_free(&l->w);
    free(l);
}

static void link_closed_cb(uv_handle_t *h)
{
    struct grpc_client_uv_link *l = h->data;
    struct grpc_client_uv *c = l->c;
    if (--l->pending == 0) {
        link_free(l);
    }
    handle_closed(c);
}

/*
 * Close @l: its live calls end with @status/@msg (call callbacks run
 * here), the core connection is freed and the TCP handle closed.
 */
static void link_close(struct grpc_client_uv_link *l, int status,
                       const char *msg)
{
    struct grpc_client_uv *c = l->c;
    struct grpc_client_uv_link **pp;
    struct grpc_client_conn *gc = l->gc;

    if (l->closing) {
        return;
    }
    l->closing = true;
    uvwrite_unmark(&c->dirty, &l->w);
    if (c->cur == l) {
        c->cur = NULL;
    }
    for (pp = &c->links; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    l->gc = NULL;
    c->busy++;
    grpc_client_conn_fail(gc, status, msg);
    grpc_client_conn_free(gc);
    c->busy--;
    if (l->pending > 0) {
        uv_cancel((uv_req_t *)&l->gai); /* getaddrinfo still running */
    }
    l->pending++;
    c->pending_closes++;
    uv_close((uv_handle_t *)&l->tcp, link_closed_cb);
    arm_timer(c);
}

static void on_want_write(struct grpc_client_conn *gc, void *conn_data)
{
    struct grpc_client_uv_link *l = conn_data;
    struct grpc_client_uv *c = l->c;

    (void)gc;
    if (!l->closing && !c->torn_down && uvwrite_mark(&c->dirty, &l->w)) {
        uv_prepare_start(&c->prepare, prepare_cb);
    }
}

static void read_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct grpc_client_uv_link *l = h->data;
    (void)suggested;
    buf->base = (char *)l->c->rbuf;
    buf->len = READ_BUF;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct grpc_client_uv_link *l = stream->data;
    struct grpc_client_uv *c = l->c;

    if (l->closing || nread == 0) {
        return;
    }
    c->busy++;
    if (nread < 0) {
        link_close(l, GRPC_UNAVAILABLE, "transport is closing");
    } else {
        if (grpc_client_conn_recv(l->gc, (const uint8_t *)buf->base,
                                  (size_t)nread) != 0) {
            /* Calls are failed already; flush the GOAWAY, then close. */
            l->close_after_flush = true;
            uv_read_stop(stream);
            l->reading = false;
        }
        link_flush(l);
    }
    client_leave(c);
}

static void write_cb(uv_write_t *req, int status)
{
    struct grpc_client_uv_link *l = req->data;
    struct grpc_client_uv *c = l->c;

    uvwrite_done(&l->w);
    if (l->closing) {
        return;
    }
    c->busy++;
    if (status < 0) {
        link_close(l, GRPC_UNAVAILABLE, "transport is closing");
    } else {
        link_flush(l);
    }
    client_leave(c);
}

static ssize_t link_pull(void *gc, const uint8_t **data)
{
    return grpc_client_conn_send(gc, data);
}

/* Move the core's output into one write. Called from our libuv callbacks
 * only (busy > 0). */
static void link_flush(struct grpc_client_uv_link *l)
{
    struct grpc_client_uv *c = l->c;
    int rv;

    if (l->closing) {
        return;
    }
    if (l->dial_err[0] != '\0') {
        link_close(l, GRPC_UNAVAILABLE, l->dial_err);
        return;
    }
    if (!l->connected || l->w.writing) {
        arm_timer(c);
        return;
    }
    rv = uvwrite_flush(&l->w, (uv_stream_t *)&l->tcp, link_pull, l->gc,
                       write_cb);
    if (rv == IK_ENOMEM) {
        link_close(l, GRPC_RESOURCE_EXHAUSTED, ik_strerror(IK_ENOMEM));
    } else if (rv != 0 ||
               (!l->w.writing &&
                (l->close_after_flush || grpc_client_conn_want_close(l->gc)))) {
        link_close(l, GRPC_UNAVAILABLE, "transport is closing");
    } else {
        arm_timer(c);
    }
}

/* How Go prints a dial target: "127.0.0.1:2379", "[::1]:2379". */
static void format_addr(char *out, size_t size, const char *host, uint16_t port)
{
    if (strchr(host, ':') != NULL) {
        snprintf(out, size, "[%s]:%u", host, (unsigned)port);
    } else {
        snprintf(out, size, "%s:%u", host, (unsigned)port);
    }
}

/* Fail the link from the next flush (never from inside
 * grpc_client_uv_conn(), whose caller is about to start calls on it). */
static void link_doom(struct grpc_client_uv_link *l, const char *what, int err)
{
    char addr[300];
    format_addr(addr, sizeof(addr), l->c->host, l->c->port);
    ik_errmsg_printf(l->dial_err,
                     "connection error: desc = \"transport: Error while "
                     "dialing dial tcp %s: %s: %s\"",
                     addr, what, uv_strerror(err));
    on_want_write(l->gc, l);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct grpc_client_uv_link *l = req->data;
    struct grpc_client_uv *c = l->c;

    if (l->closing || status == UV_ECANCELED) {
        return;
    }
    c->busy++;
    if (status < 0) {
        char addr[300], msg[IK_ERRMSG_SIZE];
        format_addr(addr, sizeof(addr), c->host, c->port);
        ik_errmsg_printf(msg,
                         "connection error: desc = \"transport: Error while "
                         "dialing dial tcp %s: connect: %s\"",
                         addr, uv_strerror(status));
        link_close(l, GRPC_UNAVAILABLE, msg);
    } else {
        l->connected = true;
        uv_tcp_nodelay(&l->tcp, 1);
        if (uv_read_start((uv_stream_t *)&l->tcp, read_alloc_cb, read_cb) !=
            0) {
            link_close(l, GRPC_UNAVAILABLE, "transport is closing");
        } else {
            l->reading = true;
            link_flush(l); /* preface and every call made meanwhile */
        }
    }
    client_leave(c);
}

static void start_connect(struct grpc_client_uv_link *l,
                          const struct sockaddr *sa)
{
    int rv;
    l->creq.data = l;
    rv = uv_tcp_connect(&l->creq, &l->tcp, sa, connect_cb);
    if (rv != 0) {
        link_doom(l, "connect", rv);
    }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct grpc_client_uv_link *l = req->data;
    struct grpc_client_uv *c = l->c;

    l->pending--;
    if (l->closing) {
        uv_freeaddrinfo(res);
        if (l->pending == 0) {
            link_free(l); /* the TCP close callback already ran */
        }
        handle_closed(c);
        return;
    }
    c->busy++;
    if (status < 0 || res == NULL) {
        char msg[IK_ERRMSG_SIZE];
        ik_errmsg_printf(msg,
                         "connection error: desc = \"transport: Error while "
                         "dialing dial tcp: lookup %s: %s\"",
                         c->host, uv_strerror(status < 0 ? status : UV_ENOENT));
        link_close(l, GRPC_UNAVAILABLE, msg);
    } else {
        struct sockaddr_storage ss;
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        if (ss.ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->port);
        } else {
            ((struct sockaddr_in *)&ss)->sin_port = htons(c->port);
        }
        start_connect(l, (const struct sockaddr *)&ss);
    }
    uv_freeaddrinfo(res);
    client_leave(c);
    handle_closed(c);
}

/* Create a link and start dialing. Returns NULL when out of memory. */
static struct grpc_client_uv_link *link_new(struct grpc_client_uv *c)
{
    struct grpc_client_uv_link *l = calloc(1, sizeof(*l));
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    int rv;

    if (l == NULL) {
        return NULL;
    }
    l->c = c;
    uvwrite_init(&l->w, l);
    if (grpc_client_conn_new(&c->cfg, l, &l->gc) != 0) {
        free(l);
        return NULL;
    }
    uv_tcp_init(c->loop, &l->tcp);
    l->tcp.data = l;
    l->next = c->links;
    c->links = l;
    c->dials++;
    if (uv_ip4_addr(c->host, c->port, &addr.in4) == 0 ||
        uv_ip6_addr(c->host, c->port, &addr.in6) == 0) {
        start_connect(l, &addr.sa);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        l->gai.data = l;
        rv = uv_getaddrinfo(c->loop, &l->gai, gai_cb, c->host, NULL, &hints);
        if (rv != 0) {
            link_doom(l, "lookup", rv);
        } else {
            l->pending++;
            c->pending_closes++; /* close_cb waits for it too */
        }
    }
    return l;
}

/* ------------------------------------------------------------------------ */
/* Client */

static void prepare_cb(uv_prepare_t *h)
{
    struct grpc_client_uv *c = h->data;
    struct uvwrite *w;
    c->busy++;
    while ((w = uvwrite_pop(&c->dirty)) != NULL) {
        link_flush(w->owner);
    }
    uv_prepare_stop(&c->prepare);
    arm_timer(c);
    client_leave(c);
}

static void timer_cb(uv_timer_t *h)
{
    struct grpc_client_uv *c = h->data;
    struct grpc_client_uv_link *l;

    c->timer_due = UINT64_MAX;
    c->busy++;
    for (l = c->links; l != NULL; l = l->next) {
        /* Output is flushed through on_want_write (prepare). */
        grpc_client_conn_tick(l->gc);
    }
    arm_timer(c);
    client_leave(c);
}

int grpc_client_uv_init(struct grpc_client_uv *c, uv_loop_t *loop,
                        const char *host, uint16_t port,
                        const struct grpc_client_config *cfg)
{
    void *data = c->data;
    char auth[300];

    memset(c, 0, sizeof(*c));
    c->data = data;
    if (cfg != NULL) {
        c->cfg = *cfg;
    }
    format_addr(auth, sizeof(auth), host, port);
    c->host = strdup(host);
    c->rbuf = malloc(READ_BUF);
    c->authority = strdup(c->cfg.authority != NULL ? c->cfg.authority : auth);
    c->cfg.authority = c->authority;
    if (c->cfg.user_agent != NULL) {
        c->user_agent = strdup(c->cfg.user_agent);
        c->cfg.user_agent = c->user_agent;
    }
    if (c->host == NULL || c->rbuf == NULL || c->authority == NULL ||
        (c->cfg.user_agent == NULL && cfg != NULL && cfg->user_agent != NULL)) {
        free(c->host);
        free(c->rbuf);
        free(c->authority);
        free(c->user_agent);
        memset(c, 0, sizeof(*c));
        c->data = data;
        return IK_ENOMEM;
    }
    c->loop = loop;
    c->port = port;
    c->cfg.now_ms = now_ms;
    c->cfg.on_want_write = on_want_write;
    c->timer_due = UINT64_MAX;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_prepare_init(loop, &c->prepare);
    c->prepare.data = c;
    return 0;
}

struct grpc_client_conn *grpc_client_uv_conn(struct grpc_client_uv *c)
{
    struct grpc_client_uv_link *l;

    if (c->closing || c->torn_down) {
        return NULL;
    }
    /* The caller is about to start calls: make sure the timer learns their
     * deadlines before the loop blocks, even if no output can go out yet. */
    uv_prepare_start(&c->prepare, prepare_cb);
    if (c->cur != NULL) {
        if (grpc_client_conn_is_usable(c->cur->gc)) {
            return c->cur->gc;
        }
        /* Draining (GOAWAY) or failed: it closes by itself once done. */
        c->cur = NULL;
    }
    l = link_new(c);
    if (l == NULL) {
        return NULL;
    }
    c->cur = l;
    return l->gc;
}

bool grpc_client_uv_connected(const struct grpc_client_uv *c)
{
    return c->cur != NULL && c->cur->connected;
}

unsigned long grpc_client_uv_dials(const struct grpc_client_uv *c)
{
    return c->dials;
}

static void timer_closed_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void teardown(struct grpc_client_uv *c)
{
    c->torn_down = true;
    /* Hold one count so the callback cannot run before we are done. */
    c->pending_closes++;
    c->busy++;
    while (c->links != NULL) {
        link_close(c->links, GRPC_CANCELLED, MSG_CLIENT_CLOSING);
    }
    c->busy--;
    c->dirty = NULL;
    c->pending_closes += 2;
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
    uv_close((uv_handle_t *)&c->prepare, timer_closed_cb);
    handle_closed(c);
}

void grpc_client_uv_close(struct grpc_client_uv *c,
                          void (*cb)(struct grpc_client_uv *c))
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    c->close_cb = cb;
    if (c->busy == 0) {
        teardown(c);
    }
}
