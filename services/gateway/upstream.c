/*
 * Upstream connection pool and exchanges (see upstream.h).
 *
 * A connection owns its read buffer; an exchange parses and decodes in place. While the
 * consumer holds a piece of the body (it paused the exchange), the buffer is neither read into
 * nor moved. Handles are closed together and the connection is freed on the second close.
 */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#define UP_BUF_INIT     16384
#define UP_BUF_MAX      (1024 * 1024)
#define UP_HEAD_MAX     65536
#define UP_READ_RESERVE 4096

typedef struct gw_conn gw_conn;

struct gw_pool {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char *name;
    int64_t connect_timeout_ms;
    size_t max_idle;
    gw_conn *idle; /* LIFO: the warmest connection first */
    size_t nidle;
    size_t nconns; /* every connection not yet freed */
    bool closing;
};

struct gw_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    gw_pool *pool;
    gw_exchange *x;
    char *buf;
    size_t cap, start, end;
    core_buf wbuf; /* what a partial write left over */
    int open_handles;
    bool connected;
    bool closing;
    bool reading;
    bool writing;
    bool connect_failed; /* uv_tcp_connect refused at once: reported from the timer */
    gw_conn *next_idle;
};

enum { X_CONNECTING, X_HEAD, X_BODY, X_DONE };

struct gw_exchange {
    gw_pool *pool;
    gw_conn *conn;
    core_buf req;
    bool head_request;
    bool idempotent;
    int64_t read_timeout_ms;
    gw_exchange_cbs cbs;
    void *data;
    int state;
    bool reused;
    bool retried;
    bool got_bytes;
    bool paused;
    bool aborted;
    bool final_delivered;
    int in_cb; /* depth of callbacks running: free only when 0 */
    gw_framing framing;
    bool keep_alive;
    uint64_t left;
    gw_chunked chunked;
};

const char *gw_xerr_text(gw_xerr e)
{
    switch (e) {
    case GW_XERR_CONNECT:
        return "the upstream refused the connection or is unreachable";
    case GW_XERR_CONNECT_TIMEOUT:
        return "no connection to the upstream within the connect timeout";
    case GW_XERR_TIMEOUT:
        return "the upstream did not answer within the read timeout";
    case GW_XERR_RESET:
        return "the upstream closed the connection before answering";
    case GW_XERR_PROTOCOL:
        return "the upstream sent a malformed response";
    }
    return "upstream error";
}

/* ---------------------------------------------------------------- connections */

static void conn_maybe_free(gw_conn *c)
{
    if (c->open_handles > 0 || c->writing) return;
    gw_pool *p = c->pool;
    free(c->buf);
    core_buf_free(&c->wbuf);
    free(c);
    p->nconns--;
    if (p->closing && p->nconns == 0) {
        free(p->name);
        free(p);
    }
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    gw_conn *c = h->data;
    c->open_handles--;
    conn_maybe_free(c);
}

static void conn_close(gw_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    c->x = NULL;
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
}

static void conn_idle_remove(gw_conn *c)
{
    gw_pool *p = c->pool;
    for (gw_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == c) {
            *pp = c->next_idle;
            c->next_idle = NULL;
            p->nidle--;
            return;
        }
    }
}

static gw_conn *conn_new(gw_pool *p)
{
    gw_conn *c = core_xcalloc(1, sizeof *c);
    c->pool = p;
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    p->nconns++;
    return c;
}

static void x_fail(gw_exchange *x, gw_xerr err);
static void x_process(gw_exchange *x);
static void x_send(gw_exchange *x);
static void x_connect(gw_exchange *x);
static void conn_read_start(gw_conn *c);

static void conn_release(gw_conn *c, bool reusable)
{
    gw_pool *p = c->pool;
    c->x = NULL;
    uv_timer_stop(&c->timer);
    if (!reusable || p->closing || p->nidle >= p->max_idle || c->start != c->end) {
        conn_close(c);
        return;
    }
    c->start = c->end = 0;
    c->next_idle = p->idle;
    p->idle = c;
    p->nidle++;
    /* It keeps reading (conn_on_read without an exchange): an upstream that closes the idle
     * connection is noticed at once, and no epoll_ctl is spent per request. */
    conn_read_start(c);
}

/* ---------------------------------------------------------------- exchange lifetime */

static void x_free(gw_exchange *x)
{
    core_buf_free(&x->req);
    free(x);
}

/* Detaches the exchange from its connection (closing the connection) and frees it unless a
 * callback is still running. */
static void x_finish_abort(gw_exchange *x)
{
    if (x->conn) {
        conn_close(x->conn);
        x->conn = NULL;
    }
    x->state = X_DONE;
    if (x->in_cb == 0) x_free(x);
}

void gw_exchange_abort(gw_exchange *x)
{
    if (!x || x->aborted) return;
    x->aborted = true;
    x_finish_abort(x);
}

static void x_fail(gw_exchange *x, gw_xerr err)
{
    bool after_head = x->state == X_BODY;
    if (x->conn) {
        conn_close(x->conn);
        x->conn = NULL;
    }
    x->state = X_DONE;
    if (!x->aborted) {
        x->in_cb++;
        x->cbs.on_error(x, err, after_head, x->data);
        x->in_cb--;
    }
    x->aborted = true;
    if (x->in_cb == 0) x_free(x);
}

/* The reused connection failed before any byte of an answer: try once more on a new one. */
static bool x_retry(gw_exchange *x)
{
    if (!x->reused || !x->idempotent || x->retried || x->got_bytes || x->aborted) return false;
    x->retried = true;
    x->reused = false;
    if (x->conn) {
        conn_close(x->conn);
        x->conn = NULL;
    }
    x_connect(x);
    return true;
}

/* The whole answer is in: the connection goes back to the pool (or is closed). */
static void x_complete(gw_exchange *x)
{
    gw_conn *c = x->conn;
    x->conn = NULL;
    x->state = X_DONE;
    if (c) conn_release(c, x->keep_alive && x->framing != GW_BODY_CLOSE);
    if (x->in_cb == 0) x_free(x);
}

/* ---------------------------------------------------------------- reading */

static void conn_on_timer(uv_timer_t *t)
{
    gw_conn *c = t->data;
    gw_exchange *x = c->x;
    if (!x) return;
    if (c->connect_failed)
        x_fail(x, GW_XERR_CONNECT);
    else
        x_fail(x, x->state == X_CONNECTING ? GW_XERR_CONNECT_TIMEOUT : GW_XERR_TIMEOUT);
}

static void conn_timer_restart(gw_conn *c, int64_t ms)
{
    if (ms > 0) uv_timer_start(&c->timer, conn_on_timer, (uint64_t)ms, 0);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    gw_conn *c = h->data;
    if (c->cap - c->end < UP_READ_RESERVE && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->cap - c->end < UP_READ_RESERVE && c->cap < UP_BUF_MAX) {
        c->cap *= 2;
        c->buf = core_xrealloc(c->buf, c->cap);
    }
    b->base = c->buf + c->end;
    b->len = c->cap - c->end;
}

static void conn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    gw_conn *c = s->data;
    gw_exchange *x = c->x;
    if (n == 0) return;
    if (!x) { /* idle: EOF, an error, or bytes nobody asked for end its use */
        conn_idle_remove(c);
        conn_close(c);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        c->reading = false;
        if (n == UV_EOF && x->state == X_BODY && x->framing == GW_BODY_CLOSE) {
            x->keep_alive = false;
            x->final_delivered = true;
            x->in_cb++;
            x->cbs.on_body(x, c->buf + c->start, 0, true, x->data);
            x->in_cb--;
            if (x->aborted) {
                if (x->in_cb == 0) x_free(x);
                return;
            }
            if (!x->paused) x_complete(x);
            return;
        }
        if (x->state == X_HEAD && x_retry(x)) return;
        x_fail(x, GW_XERR_RESET);
        return;
    }
    x->got_bytes = true;
    c->end += (size_t)n;
    conn_timer_restart(c, x->read_timeout_ms);
    x_process(x);
}

static void conn_read_start(gw_conn *c)
{
    if (c->reading) return;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
}

static void conn_read_stop(gw_conn *c)
{
    if (!c->reading) return;
    c->reading = false;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

/* Delivers a body piece; returns false when the exchange must stop processing (aborted or
 * paused or done). */
static bool x_deliver(gw_exchange *x, const char *p, size_t len, bool final)
{
    if (final) x->final_delivered = true;
    x->in_cb++;
    x->cbs.on_body(x, p, len, final, x->data);
    x->in_cb--;
    if (x->aborted) {
        if (x->in_cb == 0) x_free(x);
        return false;
    }
    if (x->paused) return false;
    if (final) {
        x_complete(x);
        return false;
    }
    return true;
}

static void x_process(gw_exchange *x)
{
    gw_conn *c = x->conn;
    while (c && !x->paused && !x->aborted && x->state != X_DONE) {
        if (x->state == X_HEAD) {
            gw_resp_head head;
            size_t avail = c->end - c->start;
            int n = avail ? gw_resp_head_parse(c->buf + c->start, avail, x->head_request, &head)
                          : GW_HEAD_INCOMPLETE;
            if (n == GW_HEAD_INCOMPLETE) {
                if (avail >= UP_HEAD_MAX) {
                    x_fail(x, GW_XERR_PROTOCOL);
                    return;
                }
                break;
            }
            if (n < 0 || head.status == 101) {
                x_fail(x, GW_XERR_PROTOCOL);
                return;
            }
            c->start += (size_t)n;
            if (head.status < 200) continue; /* 100 Continue, 103 Early Hints: not passed on */
            x->state = X_BODY;
            x->framing = head.framing;
            x->keep_alive = head.keep_alive;
            x->left = head.content_length;
            x->in_cb++;
            x->cbs.on_head(x, &head, x->data);
            x->in_cb--;
            if (x->aborted) {
                if (x->in_cb == 0) x_free(x);
                return;
            }
            if (x->framing == GW_BODY_NONE || (x->framing == GW_BODY_LENGTH && x->left == 0)) {
                if (x->paused) {
                    /* deliver the empty final piece at resume */
                    x->framing = GW_BODY_LENGTH;
                    x->left = 0;
                    return;
                }
                x_deliver(x, c->buf + c->start, 0, true);
                return;
            }
            continue;
        }
        /* X_BODY */
        size_t avail = c->end - c->start;
        char *p = c->buf + c->start;
        if (x->framing == GW_BODY_LENGTH || x->framing == GW_BODY_NONE) {
            if (x->left == 0) {
                x_deliver(x, p, 0, true);
                return;
            }
            if (avail == 0) break;
            size_t take = avail;
            if ((uint64_t)take > x->left) take = (size_t)x->left;
            x->left -= take;
            c->start += take;
            if (!x_deliver(x, p, take, x->left == 0)) return;
        } else if (x->framing == GW_BODY_CHUNKED) {
            if (avail == 0) break;
            size_t len = avail, consumed = 0;
            int rc = gw_chunked_decode(&x->chunked, p, &len, &consumed);
            if (rc < 0) {
                x_fail(x, GW_XERR_PROTOCOL);
                return;
            }
            c->start += consumed;
            if (rc == 1) {
                x_deliver(x, p, len, true);
                return;
            }
            if (len && !x_deliver(x, p, len, false)) return;
            if (c->start == c->end) break;
        } else { /* GW_BODY_CLOSE: the end comes with EOF */
            if (avail == 0) break;
            c->start += avail;
            if (!x_deliver(x, p, avail, false)) return;
        }
    }
    if (!c || x->aborted || x->state == X_DONE || x->paused) return;
    if (c->start == c->end) c->start = c->end = 0;
    conn_read_start(c);
}

void gw_exchange_pause(gw_exchange *x)
{
    if (!x || x->paused) return;
    x->paused = true;
    if (x->conn) {
        conn_read_stop(x->conn);
        uv_timer_stop(&x->conn->timer);
    }
}

void gw_exchange_resume(gw_exchange *x)
{
    if (!x || !x->paused || x->aborted) return;
    x->paused = false;
    if (x->final_delivered) {
        x_complete(x);
        return;
    }
    if (x->conn) conn_timer_restart(x->conn, x->read_timeout_ms);
    x->in_cb++;
    x_process(x);
    x->in_cb--;
    if (x->aborted || x->state == X_DONE) {
        if (x->in_cb == 0) x_free(x);
    }
}

/* ---------------------------------------------------------------- writing */

static void conn_on_write(uv_write_t *w, int status)
{
    gw_conn *c = w->data;
    c->writing = false;
    core_buf_reset(&c->wbuf);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    gw_exchange *x = c->x;
    if (!x) return;
    if (status < 0) {
        if (x_retry(x)) return;
        x_fail(x, GW_XERR_RESET);
    }
}

static void x_send(gw_exchange *x)
{
    gw_conn *c = x->conn;
    x->state = X_HEAD; /* an answer may come before the request is written (an early 413) */
    conn_timer_restart(c, x->read_timeout_ms);
    uv_buf_t b = uv_buf_init(x->req.data, (unsigned)x->req.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)x->req.len) {
        conn_read_start(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        if (x_retry(x)) return;
        x_fail(x, GW_XERR_RESET);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    core_buf_reset(&c->wbuf);
    core_buf_append(&c->wbuf, x->req.data + done, x->req.len - done);
    uv_buf_t rest = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->write_req.data = c;
    c->writing = true;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &rest, 1, conn_on_write) != 0) {
        c->writing = false;
        if (x_retry(x)) return;
        x_fail(x, GW_XERR_RESET);
        return;
    }
    conn_read_start(c);
}

static void conn_on_connect(uv_connect_t *r, int status)
{
    gw_conn *c = r->data;
    if (c->closing) return;
    gw_exchange *x = c->x;
    if (!x) {
        conn_close(c);
        return;
    }
    uv_timer_stop(&c->timer);
    if (status < 0) {
        x_fail(x, GW_XERR_CONNECT);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    x_send(x);
}

static void x_connect(gw_exchange *x)
{
    gw_pool *p = x->pool;
    gw_conn *c = conn_new(p);
    c->cap = UP_BUF_INIT;
    c->buf = core_xcalloc(1, c->cap);
    c->x = x;
    x->conn = c;
    x->state = X_CONNECTING;
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr,
                            conn_on_connect);
    if (rc != 0) {
        /* report from the loop, never from inside gw_exchange_start */
        c->connect_failed = true;
        uv_timer_start(&c->timer, conn_on_timer, 0, 0);
        return;
    }
    conn_timer_restart(c, p->connect_timeout_ms);
}

gw_exchange *gw_exchange_start(gw_pool *p, core_buf *req, const gw_exchange_opts *opts,
                               const gw_exchange_cbs *cbs, void *data)
{
    gw_exchange *x = core_xcalloc(1, sizeof *x);
    x->pool = p;
    x->req = *req;
    *req = (core_buf){0};
    x->head_request = opts->head_request;
    x->idempotent = opts->idempotent;
    x->read_timeout_ms = opts->read_timeout_ms;
    x->cbs = *cbs;
    x->data = data;
    gw_conn *c = p->idle;
    if (c) {
        p->idle = c->next_idle;
        c->next_idle = NULL;
        p->nidle--;
        c->x = x;
        x->conn = c;
        x->reused = true;
        x_send(x);
        return x;
    }
    x_connect(x);
    return x;
}

/* ---------------------------------------------------------------- pool */

gw_pool *gw_pool_new(uv_loop_t *loop, const gw_pool_config *cfg)
{
    gw_pool *p = core_xcalloc(1, sizeof *p);
    p->loop = loop;
    size_t alen =
        cfg->addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memcpy(&p->addr, cfg->addr, alen);
    p->name = core_xstrdup(cfg->name ? cfg->name : "upstream");
    p->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 2000;
    p->max_idle = cfg->max_idle ? cfg->max_idle : 64;
    return p;
}

size_t gw_pool_idle(const gw_pool *p)
{
    return p->nidle;
}

void gw_pool_close(gw_pool *p)
{
    if (!p || p->closing) return;
    p->closing = true;
    while (p->idle) {
        gw_conn *c = p->idle;
        p->idle = c->next_idle;
        p->nidle--;
        conn_close(c);
    }
    if (p->nconns == 0) {
        free(p->name);
        free(p);
    }
}
