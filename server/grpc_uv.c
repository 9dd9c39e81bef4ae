/*
 * grpc_uv: libuv glue for the gRPC core (see grpc_uv.h).
 */
#include "server/grpc_uv.h"

#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/errors.h"
#include "server/uvwrite.h"

#define GRPC_UV_READ_BUF (64u << 10)
#define GRPC_UV_TICK_MS 50
#define GRPC_UV_BACKLOG 511

struct grpc_uv_listener {
    uv_tcp_t tcp;
    struct grpc_uv_server *s;
    struct grpc_uv_listener *next;
    /* A connection is waiting but we had no memory to accept it: libuv
     * pauses the listener until we do, so the tick timer retries. */
    bool stalled;
};

struct grpc_uv_conn {
    uv_tcp_t tcp;
    struct grpc_uv_server *s;
    struct grpc_conn *gc;             /* NULL once closing */
    struct grpc_uv_conn *prev, *next; /* s->conns */
    struct uvwrite w;                 /* output; dirty list: s->dirty */
    bool reading;
    bool closing;
    bool close_after_flush; /* protocol error: flush the GOAWAY, then close */
};

static void conn_flush(struct grpc_uv_conn *conn);
static void prepare_cb(uv_prepare_t *h);

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void handle_closed(struct grpc_uv_server *s)
{
    if (--s->pending_closes == 0 && s->closing) {
        free(s->rbuf);
        s->rbuf = NULL;
        if (s->close_cb != NULL) {
            s->close_cb(s);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Connections */

static void conn_closed_cb(uv_handle_t *h)
{
    struct grpc_uv_conn *conn = h->data;
    struct grpc_uv_server *s = conn->s;
    uvwrite_free(&conn->w);
    free(conn);
    handle_closed(s);
}

static void conn_close(struct grpc_uv_conn *conn)
{
    struct grpc_uv_server *s = conn->s;
    struct grpc_conn *gc = conn->gc;

    if (conn->closing) {
        return;
    }
    conn->closing = true;
    uvwrite_unmark(&s->dirty, &conn->w);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        s->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    conn->gc = NULL;
    s->pending_closes++;
    uv_close((uv_handle_t *)&conn->tcp, conn_closed_cb);
    /* Last: on_cancel handlers may touch other connections. */
    grpc_conn_free(gc);
}

static void on_want_write(struct grpc_conn *gc, void *conn_data)
{
    struct grpc_uv_conn *conn = conn_data;
    struct grpc_uv_server *s = conn->s;

    (void)gc;
    if (!conn->closing && !s->closing && uvwrite_mark(&s->dirty, &conn->w)) {
        uv_prepare_start(&s->prepare, prepare_cb);
    }
}

static void read_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct grpc_uv_conn *conn = h->data;
    (void)suggested;
    buf->base = (char *)conn->s->rbuf;
    buf->len = GRPC_UV_READ_BUF;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct grpc_uv_conn *conn = stream->data;

    if (conn->closing) {
        return;
    }
    if (nread < 0) {
        conn_close(conn); /* EOF or error */
        return;
    }
    if (nread == 0) {
        return;
    }
    if (grpc_conn_recv(conn->gc, (const uint8_t *)buf->base, (size_t)nread) !=
        0) {
        conn->close_after_flush = true;
        uv_read_stop(stream);
        conn->reading = false;
    }
    conn_flush(conn);
}

static void conn_start_reading(struct grpc_uv_conn *conn)
{
    if (!conn->reading && !conn->close_after_flush && !conn->closing) {
        if (uv_read_start((uv_stream_t *)&conn->tcp, read_alloc_cb, read_cb) !=
            0) {
            conn_close(conn);
            return;
        }
        conn->reading = true;
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct grpc_uv_conn *conn = req->data;

    uvwrite_done(&conn->w);
    if (conn->closing) {
        return;
    }
    if (status < 0) {
        conn_close(conn);
        return;
    }
    conn_start_reading(conn);
    if (!conn->closing) {
        conn_flush(conn);
    }
}

static ssize_t conn_pull(void *gc, const uint8_t **data)
{
    return grpc_conn_send(gc, data);
}

static void conn_flush(struct grpc_uv_conn *conn)
{
    if (conn->closing || conn->w.writing) {
        return;
    }
    if (uvwrite_flush(&conn->w, (uv_stream_t *)&conn->tcp, conn_pull, conn->gc,
                      write_cb) != 0) {
        conn_close(conn);
        return;
    }
    if (!conn->w.writing) {
        if (conn->close_after_flush || grpc_conn_want_close(conn->gc)) {
            conn_close(conn);
        }
        return;
    }
    if (uvwrite_inflight(&conn->w) >= UVWRITE_HIGH && conn->reading) {
        /* The peer is not keeping up: stop taking new requests. */
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = false;
    }
}

/* Give a new (zeroed) connection its TCP handle and link it in s->conns;
 * from here it is released by conn_close(). */
static void conn_attach(struct grpc_uv_server *s, struct grpc_uv_conn *conn)
{
    conn->s = s;
    uv_tcp_init(s->loop, &conn->tcp);
    conn->tcp.data = conn;
    conn->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = conn;
    }
    s->conns = conn;
    uvwrite_init(&conn->w, conn);
}

/* Accept one pending connection on @l. Returns false when out of memory
 * (the connection stays queued in the kernel). */
static bool accept_one(struct grpc_uv_listener *l)
{
    struct grpc_uv_server *s = l->s;
    struct grpc_uv_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL) {
        return false;
    }
    conn_attach(s, conn);
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&conn->tcp) != 0 ||
        grpc_conn_new(&s->cfg, conn, &conn->gc) != 0) {
        conn_close(conn);
        return true;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    conn_start_reading(conn);
    conn_flush(conn); /* server preface */
    return true;
}

int grpc_uv_server_adopt(struct grpc_uv_server *s, uv_tcp_t *tcp,
                         const uint8_t *prefix, size_t len)
{
    struct grpc_uv_conn *conn;
    uv_os_fd_t fd;
    int dupfd;

    uv_read_stop((uv_stream_t *)tcp);
    if (s->closing || uv_fileno((uv_handle_t *)tcp, &fd) != 0) {
        return IK_EIO;
    }
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        return IK_ENOMEM;
    }
    dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
        free(conn);
        return IK_EIO;
    }
    conn_attach(s, conn);
    if (uv_tcp_open(&conn->tcp, dupfd) != 0) {
        close(dupfd);
        conn_close(conn);
        return IK_EIO;
    }
    if (grpc_conn_new(&s->cfg, conn, &conn->gc) != 0) {
        conn_close(conn);
        return IK_ENOMEM;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    if (len > 0 && grpc_conn_recv(conn->gc, prefix, len) != 0) {
        conn->close_after_flush = true; /* flush the GOAWAY, then close */
    }
    conn_start_reading(conn);
    conn_flush(conn);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct grpc_uv_listener *l = server->data;

    if (status < 0 || l->s->closing) {
        return;
    }
    l->stalled = !accept_one(l);
}

/* ------------------------------------------------------------------------ */
/* Server */

static void prepare_cb(uv_prepare_t *h)
{
    struct grpc_uv_server *s = h->data;
    struct uvwrite *w;
    while ((w = uvwrite_pop(&s->dirty)) != NULL) {
        conn_flush(w->owner);
    }
    uv_prepare_stop(&s->prepare);
}

static void timer_cb(uv_timer_t *h)
{
    struct grpc_uv_server *s = h->data;
    struct grpc_uv_conn *conn;
    struct grpc_uv_listener *l;

    for (conn = s->conns; conn != NULL; conn = conn->next) {
        grpc_conn_tick(conn->gc); /* output is flushed via on_want_write */
    }
    for (l = s->listeners; l != NULL; l = l->next) {
        if (l->stalled) {
            l->stalled = !accept_one(l);
        }
    }
}

int grpc_uv_server_init(struct grpc_uv_server *s, uv_loop_t *loop,
                        const struct grpc_server_config *cfg)
{
    void *data = s->data;

    memset(s, 0, sizeof(*s));
    s->data = data;
    s->rbuf = malloc(GRPC_UV_READ_BUF);
    if (s->rbuf == NULL) {
        return IK_ENOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.now_ms = now_ms;
    s->cfg.on_want_write = on_want_write;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_prepare_init(loop, &s->prepare);
    s->prepare.data = s;
    uv_timer_start(&s->timer, timer_cb, GRPC_UV_TICK_MS, GRPC_UV_TICK_MS);
    return 0;
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct grpc_uv_listener *l = h->data;
    struct grpc_uv_server *s = l->s;
    free(l);
    handle_closed(s);
}

static void format_addr(char *out, size_t size, const char *host, uint16_t port)
{
    if (strchr(host, ':') != NULL) {
        snprintf(out, size, "[%s]:%u", host, (unsigned)port);
    } else {
        snprintf(out, size, "%s:%u", host, (unsigned)port);
    }
}

int grpc_uv_server_listen(struct grpc_uv_server *s, const char *host,
                          uint16_t port, char *errmsg)
{
    struct addrinfo hints, *res = NULL;
    struct grpc_uv_listener *l;
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    char addr[300];
    const char *what = "bind";
    int rv;

    format_addr(addr, sizeof(addr), host, port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rv = getaddrinfo(host[0] != '\0' ? host : NULL, "0", &hints, &res);
    if (rv != 0 || res == NULL) {
        ik_errmsg_printf(errmsg, "listen tcp %s: lookup %s: %s", addr, host,
                         gai_strerror(rv));
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return IK_EIO;
    }
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss.ss_family == AF_INET) {
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    }

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        ik_errmsg_printf(errmsg, "listen tcp %s: out of memory", addr);
        return IK_ENOMEM;
    }
    l->s = s;
    uv_tcp_init(s->loop, &l->tcp);
    l->tcp.data = l;
    s->pending_closes++;
    rv = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&l->tcp, GRPC_UV_BACKLOG, on_connection);
        /* libuv reports bind's EADDRINUSE from listen. */
        if (rv != 0 && rv != UV_EADDRINUSE && rv != UV_EACCES &&
            rv != UV_EADDRNOTAVAIL) {
            what = "listen";
        }
    }
    if (rv != 0) {
        ik_errmsg_printf(errmsg, "listen tcp %s: %s: %s", addr, what,
                         uv_strerror(rv));
        uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
        return IK_EIO;
    }
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
        s->last_port = ntohs(ss.ss_family == AF_INET
                                 ? ((struct sockaddr_in *)&ss)->sin_port
                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

uint16_t grpc_uv_server_port(const struct grpc_uv_server *s)
{
    return s->last_port;
}

size_t grpc_uv_server_conn_count(const struct grpc_uv_server *s)
{
    size_t n = 0;
    const struct grpc_uv_conn *conn;
    for (conn = s->conns; conn != NULL; conn = conn->next) {
        n++;
    }
    return n;
}

static void timer_closed_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

void grpc_uv_server_close(struct grpc_uv_server *s,
                          void (*cb)(struct grpc_uv_server *s))
{
    struct grpc_uv_listener *l, *next;

    if (s->closing) {
        return;
    }
    s->closing = true;
    s->close_cb = cb;
    /* Hold one count so the callback cannot run before we are done. */
    s->pending_closes++;
    for (l = s->listeners; l != NULL; l = next) {
        next = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
    }
    s->listeners = NULL;
    while (s->conns != NULL) {
        conn_close(s->conns);
    }
    s->dirty = NULL;
    s->pending_closes += 2;
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
    uv_close((uv_handle_t *)&s->prepare, timer_closed_cb);
    handle_closed(s);
}

struct grpc_uv_server *grpc_uv_conn_server(const struct grpc_uv_conn *conn)
{
    return conn->s;
}
