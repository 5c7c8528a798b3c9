/*
 * One libpq connection driven by the loop: PQconnectStartParams/PQconnectPoll with the socket
 * watched by uv_poll (a fresh handle after every PQconnectPoll step, since libpq may replace the
 * socket, even under the same descriptor number), then non-blocking statements: send, PQflush
 * until 0 (watching writable meanwhile and consuming input), PQconsumeInput on readable and
 * PQgetResult while !PQisBusy. A broken connection is closed (poll handle first, then PQfinish)
 * and retried with backoff; the statement in flight fails through the deferred path.
 * db_txn_copy_in's COPY ... FROM STDIN: on PGRES_COPY_IN the data goes out in chunks of
 * PQputCopyData, each flushed before the next (watching writable while PQflush says 1), then
 * PQputCopyEnd, and the results are collected as for any statement.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "db_internal.h"

/* COPY data goes to libpq in pieces of this size (each flushed before the next). */
#define DBI_COPY_CHUNK (256 * 1024)

struct dbi_poll {
    uv_poll_t h;
    dbi_conn *conn; /* NULL once detached: the handle is closing */
    int fd;
};

static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_timer_cb(uv_timer_t *t);
static void conn_down(dbi_conn *c, const char *msg);

static void conn_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Stops watching and closes the handle: uv_close removes the descriptor from epoll at once,
 * so PQfinish may close it right after. */
static void conn_unwatch(dbi_conn *c)
{
    dbi_poll *p = c->poll;
    if (!p) return;
    c->poll = NULL;
    c->poll_events = 0;
    p->conn = NULL;
    uv_close((uv_handle_t *)&p->h, conn_poll_closed);
}

static bool conn_watch(dbi_conn *c, int events, bool fresh)
{
    int fd = PQsocket(c->pg);
    if (fd < 0) {
        snprintf(c->error, sizeof c->error, "libpq has no socket");
        return false;
    }
    if (c->poll && (fresh || c->poll->fd != fd)) conn_unwatch(c);
    if (!c->poll) {
        dbi_poll *p = calloc(1, sizeof *p);
        if (!p) abort();
        int rc = uv_poll_init(dbi_pool_loop(c->pool), &p->h, fd);
        if (rc != 0) {
            free(p);
            snprintf(c->error, sizeof c->error, "uv_poll_init: %s", uv_strerror(rc));
            return false;
        }
        p->h.data = p;
        p->conn = c;
        p->fd = fd;
        c->poll = p;
        c->poll_events = 0;
    }
    if (c->poll_events != events) {
        int rc = uv_poll_start(&c->poll->h, events, conn_poll_cb);
        if (rc != 0) {
            snprintf(c->error, sizeof c->error, "uv_poll_start: %s", uv_strerror(rc));
            return false;
        }
        c->poll_events = events;
    }
    return true;
}

static void conn_notice(void *arg, const char *message)
{
    (void)arg;
    char line[DBI_ERRLEN];
    dbi_one_line(message, line, sizeof line);
    core_log_debug("postgres notice", CORE_F_STR("notice", line));
}

void dbi_conn_init(dbi_conn *c, db_pool *p, const dbi_conn_ops *ops, void *owner,
                   const char *app_name)
{
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->ops = ops;
    c->owner = owner;
    c->app_name = app_name;
    c->state = DBI_C_WAIT;
    uv_timer_init(dbi_pool_loop(p), &c->timer);
    c->timer.data = c;
}

bool dbi_conn_idle(const dbi_conn *c)
{
    return c->state == DBI_C_READY && !c->cur;
}

void dbi_conn_start(dbi_conn *c)
{
    if (c->state != DBI_C_WAIT) return;
    const char *kw[16], *kv[16];
    dbi_pool_conninfo(c->pool, c->app_name, kw, kv, 16);
    c->pg = PQconnectStartParams(kw, kv, 1);
    c->state = DBI_C_CONNECTING;
    if (!c->pg) {
        conn_down(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_down(c, PQerrorMessage(c->pg));
        return;
    }
    const db_config *cfg = dbi_pool_config(c->pool);
    uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)cfg->connect_timeout_ms, 0);
    /* Before the first PQconnectPoll, behave as if it had answered PGRES_POLLING_WRITING. */
    if (!conn_watch(c, UV_WRITABLE, true)) conn_down(c, c->error);
}

static void conn_ready(dbi_conn *c)
{
    uv_timer_stop(&c->timer);
    c->state = DBI_C_READY;
    c->attempt = 0;
    c->error[0] = '\0';
    c->ops->ready(c);
}

static void conn_connected(dbi_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_down(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeProcessor(c->pg, conn_notice, c);
    /* The socket is final now: one handle from here on. */
    if (!conn_watch(c, UV_READABLE, true)) {
        conn_down(c, c->error);
        return;
    }
    c->state = DBI_C_SETUP;
    dbi_work *w = dbi_pool_setup_work(c->pool);
    if (!w) {
        conn_ready(c);
        return;
    }
    dbi_conn_send(c, w);
}

static void conn_connect_step(dbi_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (!conn_watch(c, UV_READABLE, true)) conn_down(c, c->error);
        break;
    case PGRES_POLLING_WRITING:
        if (!conn_watch(c, UV_WRITABLE, true)) conn_down(c, c->error);
        break;
    case PGRES_POLLING_OK:
        conn_connected(c);
        break;
    case PGRES_POLLING_FAILED:
    default:
        conn_down(c, PQerrorMessage(c->pg));
        break;
    }
}

static void conn_flush(dbi_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_down(c, PQerrorMessage(c->pg));
        return;
    }
    c->flushing = r == 1;
    if (!conn_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), false))
        conn_down(c, c->error);
}

void dbi_conn_send(dbi_conn *c, dbi_work *w)
{
    c->cur = w;
    c->copying = false;
    c->copy_off = 0;
    w->sent_ns = core_mono_ns();
    int ok;
    if (w->kind == DBI_W_TXN_SCRIPT)
        ok = PQsendQuery(c->pg, w->sql);
    else
        ok = PQsendQueryParams(c->pg, w->sql, w->nparams, NULL, w->values, w->lengths, w->formats,
                               w->binary_result ? 1 : 0);
    if (!ok) {
        char line[DBI_ERRLEN];
        dbi_one_line(PQerrorMessage(c->pg), line, sizeof line);
        if (PQstatus(c->pg) == CONNECTION_BAD || w->kind == DBI_W_SETUP) {
            conn_down(c, line);
            return;
        }
        c->cur = NULL;
        dbi_defer(c->pool, w, line, DBI_SQLSTATE_INVALID);
        return;
    }
    conn_flush(c);
}

/* FATAL and PANIC end the session: the server closes the connection after sending it. */
static bool result_is_fatal(const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* Queues cur's COPY data, a chunk at a time, then the end of the copy. A chunk is queued only
 * once libpq has sent everything before it, so libpq never holds more than one chunk and a
 * slow server slows the sender. PQputCopyData never blocks in non-blocking mode: it answers 0
 * when it cannot enlarge its buffer, and the chunk is tried again once the socket is writable.
 * True once PQputCopyEnd has queued the end (libpq is then busy with the command's result);
 * false while waiting for writable (c->flushing is set) or when the connection was dropped. */
static bool conn_copy_push(dbi_conn *c)
{
    dbi_work *w = c->cur;
    while (!c->flushing && c->copy_off < w->copy_len) {
        size_t n = w->copy_len - c->copy_off;
        if (n > DBI_COPY_CHUNK) n = DBI_COPY_CHUNK;
        int r = PQputCopyData(c->pg, w->copy_data + c->copy_off, (int)n);
        if (r < 0) {
            conn_down(c, PQerrorMessage(c->pg));
            return false;
        }
        if (r == 0) {
            c->flushing = true; /* try this chunk again when writable */
            return false;
        }
        c->copy_off += n;
        int f = PQflush(c->pg);
        if (f < 0) {
            conn_down(c, PQerrorMessage(c->pg));
            return false;
        }
        c->flushing = f == 1;
    }
    if (c->flushing) return false;
    int r = PQputCopyEnd(c->pg, NULL);
    if (r < 0) {
        conn_down(c, PQerrorMessage(c->pg));
        return false;
    }
    if (r == 0) {
        c->flushing = true;
        return false;
    }
    c->copying = false;
    int f = PQflush(c->pg); /* PQputCopyEnd flushed once; the socket may have been full */
    if (f < 0) {
        conn_down(c, PQerrorMessage(c->pg));
        return false;
    }
    c->flushing = f == 1;
    return true;
}

/* COPY states libs/db does not drive: the session stays in them until the copy ends, so the
 * connection cannot be used any more. */
static const char *copy_unsupported(ExecStatusType st)
{
    if (st == PGRES_COPY_IN) return "COPY FROM STDIN is only supported through db_txn_copy_in";
    if (st == PGRES_COPY_OUT) return "COPY TO STDOUT is not supported by libs/db";
    return "COPY BOTH (replication) is not supported by libs/db";
}

/* Reads finished results while libpq would not block. The statement's result is the first
 * error, or else the last result (a script yields one per statement). */
static void conn_collect(dbi_conn *c, PGresult **acc, dbi_work **done)
{
    while (c->cur) {
        /* In COPY IN, PQisBusy is false and PQgetResult answers PGRES_COPY_IN again until
         * PQputCopyEnd: push the data first. */
        if (c->copying) {
            if (PQstatus(c->pg) == CONNECTION_BAD) return; /* the caller drops it */
            if (!conn_copy_push(c)) return;
        }
        if (PQisBusy(c->pg)) return;
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            *done = c->cur;
            c->cur = NULL;
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN && c->cur->kind == DBI_W_TXN_COPY && !c->cur->copy_started) {
            PQclear(r);
            c->cur->copy_started = true;
            c->copying = true;
            c->copy_off = 0;
            continue;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_down(c, copy_unsupported(st));
            return;
        }
        if (!*acc) {
            *acc = r;
        } else if (dbi_result_is_error(*acc)) {
            PQclear(r);
        } else {
            PQclear(*acc);
            *acc = r;
        }
    }
}

static void conn_setup_done(dbi_conn *c, dbi_work *w, PGresult *res)
{
    bool ok = res && !dbi_result_is_error(res);
    char line[DBI_ERRLEN] = "";
    if (!ok && res) dbi_one_line(PQresultErrorMessage(res), line, sizeof line);
    PQclear(res);
    dbi_work_free(w);
    if (ok) {
        conn_ready(c);
    } else {
        char msg[DBI_ERRLEN + 64];
        snprintf(msg, sizeof msg, "session set-up failed: %s", line);
        conn_down(c, msg);
    }
}

/* The result accumulated for the statement in flight (kept in the connection between
 * wake-ups). */
static PGresult *conn_take_result(dbi_conn *c)
{
    PGresult *r = c->res_acc;
    c->res_acc = NULL;
    return r;
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    dbi_poll *p = h->data;
    dbi_conn *c = p->conn;
    if (!c) return;
    if (c->state == DBI_C_CONNECTING) {
        /* Errors on the socket are PQconnectPoll's to find and report. */
        conn_connect_step(c);
        return;
    }
    if (c->state != DBI_C_SETUP && c->state != DBI_C_READY) return;
    if (status < 0) {
        /* libuv reports EPOLLERR as UV_EBADF: the socket's pending error says what happened
         * (ECONNRESET when the server went away while we were still sending, e.g. COPY data). */
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (status == UV_EBADF && getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
            soerr != 0)
            status = uv_translate_sys_error(soerr);
        char msg[128];
        snprintf(msg, sizeof msg, "socket error: %s", uv_strerror(status));
        conn_down(c, msg);
        return;
    }
    int ok = 1;
    if (events & UV_READABLE) ok = PQconsumeInput(c->pg);
    if (ok && c->flushing) {
        int r = PQflush(c->pg);
        if (r < 0) ok = 0;
        c->flushing = r == 1;
    }
    dbi_work *done = NULL;
    conn_collect(c, &c->res_acc, &done);
    if (c->state != DBI_C_SETUP && c->state != DBI_C_READY) return; /* already down */
    PGresult *res = done ? conn_take_result(c) : NULL;
    bool bad = !ok || PQstatus(c->pg) == CONNECTION_BAD;
    if (done && res && dbi_result_is_error(res) && (bad || result_is_fatal(res))) {
        /* The statement failed because the session ended (pg_terminate_backend, a server
         * shutdown): report it as a lost connection, and drop the session. */
        c->cur = done;
        c->res_acc = res;
        done = NULL;
        res = NULL;
        bad = true;
    }
    if (bad) {
        conn_down(c, PQerrorMessage(c->pg));
    } else {
        PGnotify *n;
        while (c->pg && (n = PQnotifies(c->pg)) != NULL) {
            if (c->ops->notify) c->ops->notify(c, n);
            PQfreemem(n);
        }
        if (c->pg && !conn_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), false))
            conn_down(c, c->error);
    }
    if (!done) return;
    if (done->kind == DBI_W_SETUP) {
        if (c->state == DBI_C_SETUP) {
            conn_setup_done(c, done, res);
        } else {
            PQclear(res);
            dbi_work_free(done);
        }
        return;
    }
    c->ops->done(c, done, res);
}

static void conn_timer_cb(uv_timer_t *t)
{
    dbi_conn *c = t->data;
    if (c->state == DBI_C_WAIT) {
        dbi_conn_start(c);
    } else if (c->state == DBI_C_CONNECTING || c->state == DBI_C_SETUP) {
        char msg[96];
        snprintf(msg, sizeof msg, "timed out connecting after %lld ms",
                 (long long)dbi_pool_config(c->pool)->connect_timeout_ms);
        conn_down(c, msg);
    }
}

/* Drops the connection: the poll handle is closed before PQfinish closes the socket. */
static void conn_drop(dbi_conn *c, const char *err, const char *sqlstate)
{
    conn_unwatch(c);
    if (c->res_acc) {
        PQclear(c->res_acc);
        c->res_acc = NULL;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->flushing = false;
    c->copying = false;
    c->copy_off = 0;
    dbi_work *w = c->cur;
    c->cur = NULL;
    if (w) {
        if (w->kind == DBI_W_SETUP)
            dbi_work_free(w);
        else
            dbi_defer(c->pool, w, err, sqlstate);
    }
}

static void conn_down(dbi_conn *c, const char *msg)
{
    if (c->state == DBI_C_WAIT || c->state == DBI_C_CLOSED) return;
    bool was_ready = c->state == DBI_C_READY;
    bool had_work = c->cur != NULL;
    char line[DBI_ERRLEN];
    /* A server that ends the session says why first (e.g. "terminating connection due to
     * administrator command"): prefer that over libpq's "server closed the connection". */
    if (c->res_acc && dbi_result_is_error(c->res_acc)) {
        const char *primary = PQresultErrorField(c->res_acc, PG_DIAG_MESSAGE_PRIMARY);
        dbi_one_line(primary ? primary : PQresultErrorMessage(c->res_acc), line, sizeof line);
    } else {
        dbi_one_line(msg && *msg ? msg : "connection closed", line, sizeof line);
    }
    dbi_strlcpy(c->error, line, sizeof c->error);
    uv_timer_stop(&c->timer);
    char err[DBI_ERRLEN + 64];
    snprintf(err, sizeof err, "%s: %s", was_ready ? "connection lost" : "cannot connect", line);
    conn_drop(c, err, was_ready ? DBI_SQLSTATE_CONN_LOST : DBI_SQLSTATE_UNAVAILABLE);
    c->state = DBI_C_WAIT;
    unsigned attempt = c->attempt++;
    if (was_ready || (attempt & (attempt + 1)) == 0) /* first failure, then 2, 4, 8 ... */
        core_log_warn(was_ready ? "database connection lost" : "database connection failed",
                      CORE_F_STR("error", line), CORE_F_STR("application_name", c->app_name),
                      CORE_F_INT("attempt", attempt + 1), CORE_F_BOOL("in_flight", had_work));
    c->ops->down(c, line, was_ready);
    if (c->state == DBI_C_WAIT) {
        const db_config *cfg = dbi_pool_config(c->pool);
        int64_t delay = core_backoff_ms(attempt, 100, cfg->reconnect_max_ms);
        uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)delay, 0);
    }
}

static void conn_timer_closed(uv_handle_t *h)
{
    dbi_conn *c = h->data;
    if (c->closed) c->closed(c);
}

void dbi_conn_close(dbi_conn *c, void (*closed)(dbi_conn *c))
{
    if (c->state == DBI_C_CLOSED) return;
    c->closed = closed;
    c->state = DBI_C_CLOSED;
    conn_drop(c, "database pool closing", DBI_SQLSTATE_CLOSING);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}
