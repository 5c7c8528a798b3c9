/*
 * The pool: a fixed set of connections, a FIFO queue of work waiting for one, transactions
 * that hold a connection until they end, and the deferred path through which every failure
 * found by the library reaches its callback on the next loop iteration.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

#define POOL_DEFAULT_SIZE     4
#define POOL_MAX_SIZE         64
#define POOL_DEFAULT_APP      "contentengine"
#define POOL_SETUP_MAX_PARAMS 4

struct db_txn {
    db_pool *pool;
    dbi_conn *conn; /* NULL once its connection is lost */
    dbi_work *q_head, *q_tail;
    bool failed; /* a statement failed: the transaction can only roll back */
    bool ended;  /* db_commit or db_rollback was called */
    bool borrow; /* db_txn_borrow: new statements point at the caller's binary data */
    int status;  /* PQtransactionStatus after the latest statement */
    char error[DBI_ERRLEN];
    char sqlstate[6];
};

struct db_pool {
    uv_loop_t *loop;
    db_config cfg; /* strings point to the copies below */
    char *url, *app_name, *search_path;
    dbi_conn *conns;
    int nconns;
    dbi_work *q_head, *q_tail; /* waiting for a connection */
    size_t q_len;
    dbi_work *d_head, *d_tail; /* failures to report on the next iteration */
    uv_timer_t kick;           /* runs the deferred list */
    uv_timer_t qtimer;         /* the head of the queue's deadline */
    bool down;                 /* the latest attempt failed and nothing is connected */
    char last_error[DBI_ERRLEN];
    bool closing, handles_closing;
    int open_handles;
    void (*close_done)(void *data);
    void *close_data;
    bool pumping, pump_again;
    core_metric *m_queries, *m_seconds, *m_waiting;
    char setup_sql[512];
    int setup_nparams;
    char setup_values[POOL_SETUP_MAX_PARAMS][256];
};

static void pool_pump(db_pool *p);
static void pool_maybe_closed(db_pool *p);
static void txn_pump(db_txn *t);

/* ---------------------------------------------------------------- configuration */

static void cfg_fail(char *err, size_t errlen, const char *fmt, const char *what)
{
    if (err && errlen) snprintf(err, errlen, fmt, what);
}

bool db_config_check(const db_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->url || !*cfg->url) {
        cfg_fail(err, errlen, "%s", "database URL is empty");
        return false;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->url, &perr);
    if (!opts) {
        /* libpq's message may quote part of the string, password included: not echoed. */
        if (perr) PQfreemem(perr);
        cfg_fail(err, errlen, "%s",
                 "database URL is not a valid libpq connection URL or key=value string");
        return false;
    }
    PQconninfoFree(opts);
    if (cfg->pool_size < 0 || cfg->pool_size > POOL_MAX_SIZE) {
        cfg_fail(err, errlen, "%s", "database pool size must be between 1 and 64");
        return false;
    }
    if (cfg->search_path && !dbi_search_path_valid(cfg->search_path)) {
        cfg_fail(err, errlen, "%s",
                 "database search_path must be schema names separated by commas");
        return false;
    }
    if (cfg->application_name && strlen(cfg->application_name) >= 64) {
        cfg_fail(err, errlen, "%s", "database application_name must be shorter than 64 bytes");
        return false;
    }
    if (cfg->statement_timeout_ms < 0 || cfg->idle_in_txn_timeout_ms < 0 ||
        cfg->connect_timeout_ms < 0 || cfg->acquire_timeout_ms < 0 || cfg->reconnect_max_ms < 0) {
        cfg_fail(err, errlen, "%s", "database timeouts must not be negative");
        return false;
    }
    if (cfg->statement_timeout_ms > INT32_MAX || cfg->idle_in_txn_timeout_ms > INT32_MAX) {
        cfg_fail(err, errlen, "%s", "database statement timeouts must be below 24 days");
        return false;
    }
    return true;
}

void db_config_from_env(core_config *cc, db_config *out)
{
    memset(out, 0, sizeof *out);
    out->url = core_config_secret(cc, "DATABASE_URL", NULL);
    out->pool_size = (int)core_config_int(cc, "DB_POOL_SIZE", POOL_DEFAULT_SIZE, 1, POOL_MAX_SIZE);
    out->statement_timeout_ms = core_config_duration_ms(cc, "DB_STATEMENT_TIMEOUT", "30s");
    out->connect_timeout_ms = core_config_duration_ms(cc, "DB_CONNECT_TIMEOUT", "10s");
    out->acquire_timeout_ms = core_config_duration_ms(cc, "DB_ACQUIRE_TIMEOUT", "30s");
    const char *sp = core_config_string(cc, "DB_SEARCH_PATH", "");
    out->search_path = (sp && *sp) ? sp : NULL;
    out->application_name = cc->service;
    if (!out->url) return; /* already recorded as missing */
    char err[256];
    if (!db_config_check(out, err, sizeof err)) {
        const char *var = "DATABASE_URL";
        if (strstr(err, "search_path"))
            var = "DB_SEARCH_PATH";
        else if (strstr(err, "timeout"))
            var = "DB_STATEMENT_TIMEOUT";
        core_config_fail(cc, "%s: %s", var, err);
    }
}

/* ---------------------------------------------------------------- helpers */

uv_loop_t *dbi_pool_loop(const db_pool *p)
{
    return p->loop;
}

const db_config *dbi_pool_config(const db_pool *p)
{
    return &p->cfg;
}

void dbi_pool_conninfo(const db_pool *p, const char *app_name, const char **keywords,
                       const char **values, size_t max)
{
    size_t i = 0;
    /* Keywords before dbname are defaults the URL may override; those after it win. TCP
     * keepalives notice a peer that vanished without closing (the relay's leader lock). */
    keywords[i] = "keepalives_idle";
    values[i++] = "30";
    keywords[i] = "keepalives_interval";
    values[i++] = "10";
    keywords[i] = "keepalives_count";
    values[i++] = "3";
    /* With expand_dbname, dbname may be a whole URL or key=value string. */
    keywords[i] = "dbname";
    values[i++] = p->url;
    keywords[i] = "application_name";
    values[i++] = app_name ? app_name : p->app_name;
    keywords[i] = "client_encoding";
    values[i++] = "UTF8";
    keywords[i] = NULL;
    values[i] = NULL;
    (void)max;
}

static int pool_connected(const db_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->nconns; i++)
        if (p->conns[i].state == DBI_C_READY) n++;
    return n;
}

bool db_pool_ready(const db_pool *p)
{
    return p && !p->closing && pool_connected(p) > 0;
}

int db_pool_connected(const db_pool *p)
{
    return p ? pool_connected(p) : 0;
}

size_t db_pool_waiting(const db_pool *p)
{
    return p ? p->q_len : 0;
}

/* ---------------------------------------------------------------- work items */

/* borrow: binary values stay where the caller has them (db_txn_borrow) */
static dbi_work *work_new(db_pool *p, dbi_work_kind kind, const char *sql, int nparams,
                          const char *const *values, const int *lengths, const int *formats,
                          bool borrow, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!sql) {
        snprintf(err, errlen, "sql is NULL");
    } else if (nparams < 0 || nparams > 65535) {
        snprintf(err, errlen, "nparams %d out of range (0..65535)", nparams);
    } else if (nparams > 0 && !values) {
        snprintf(err, errlen, "%d parameters but values is NULL", nparams);
    } else if (formats) {
        for (int i = 0; i < nparams; i++) {
            if (formats[i] != 0 && formats[i] != 1) {
                snprintf(err, errlen, "parameter $%d: format must be 0 (text) or 1 (binary)",
                         i + 1);
                break;
            }
            if (formats[i] == 1 && values[i] && (!lengths || lengths[i] < 0)) {
                snprintf(err, errlen, "parameter $%d is binary but has no length", i + 1);
                break;
            }
        }
    }
    if (err[0]) {
        sql = "";
        nparams = 0;
    }
    size_t sqllen = strlen(sql) + 1;
    size_t total = sizeof(dbi_work) + (size_t)nparams * (sizeof(char *) + 2 * sizeof(int)) + sqllen;
    for (int i = 0; i < nparams; i++) {
        if (!values[i]) continue;
        bool bin = formats && formats[i] == 1;
        if (bin && borrow) continue;
        total += (bin ? (size_t)lengths[i] : strlen(values[i])) + 1;
    }
    dbi_work *w = calloc(1, total);
    if (!w) abort();
    w->kind = kind;
    w->pool = p;
    w->nparams = nparams;
    char *cur = (char *)(w + 1);
    if (nparams > 0) {
        w->values = (const char **)(void *)cur;
        cur += (size_t)nparams * sizeof(char *);
        w->lengths = (int *)(void *)cur;
        cur += (size_t)nparams * sizeof(int);
        w->formats = (int *)(void *)cur;
        cur += (size_t)nparams * sizeof(int);
    }
    w->sql = cur;
    memcpy(cur, sql, sqllen);
    cur += sqllen;
    for (int i = 0; i < nparams; i++) {
        bool bin = formats && formats[i] == 1;
        w->formats[i] = bin ? 1 : 0;
        if (!values[i]) {
            w->values[i] = NULL;
            continue;
        }
        size_t len = bin ? (size_t)lengths[i] : strlen(values[i]);
        if (bin && borrow) {
            w->values[i] = values[i];
            w->lengths[i] = (int)len;
            continue;
        }
        memcpy(cur, values[i], len);
        cur[len] = '\0';
        w->values[i] = cur;
        w->lengths[i] = (int)len;
        cur += len + 1;
    }
    dbi_strlcpy(w->trace, core_log_trace(), sizeof w->trace);
    if (err[0]) {
        w->err = core_xstrdup(err);
        dbi_strlcpy(w->sqlstate, DBI_SQLSTATE_INVALID, sizeof w->sqlstate);
    }
    return w;
}

dbi_work *dbi_work_new(db_pool *p, dbi_work_kind kind, const char *sql, int nparams,
                       const char *const *values, const int *lengths, const int *formats, char *err,
                       size_t errlen)
{
    return work_new(p, kind, sql, nparams, values, lengths, formats, false, err, errlen);
}

void dbi_work_free(dbi_work *w)
{
    if (!w) return;
    if (w->copy_owned) free((void *)w->copy_data);
    free(w->err);
    free(w);
}

void dbi_work_finish(dbi_work *w, PGresult *res, const char *err, const char *sqlstate)
{
    db_pool *p = w->pool;
    if (!err && w->err) {
        err = w->err;
        sqlstate = w->sqlstate;
    }
    if (err && res) {
        PQclear(res);
        res = NULL;
    }
    dbi_arena arena = {0};
    char buf[DBI_ERRLEN];
    db_result r;
    dbi_result_init(&r, res, err, sqlstate, &arena, buf, sizeof buf);
    if (w->kind != DBI_W_SETUP && (w->sent_ns || r.error)) {
        core_counter_add(p->m_queries, 1, r.error ? "error" : "ok");
        if (w->sent_ns) {
            double secs = (double)(core_mono_ns() - w->sent_ns) / 1e9;
            core_histogram_observe(p->m_seconds, secs);
        }
    }
    char saved[CORE_TRACE_ID_LEN + 1];
    dbi_strlcpy(saved, core_log_trace(), sizeof saved);
    if (w->trace[0]) core_log_set_trace(w->trace);
    if (r.error)
        core_log_debug("database statement failed", CORE_F_STR("error", r.error),
                       CORE_F_STR("sqlstate", r.sqlstate));
    switch (w->kind) {
    case DBI_W_BEGIN:
    case DBI_W_TXN_QUERY:
    case DBI_W_TXN_SCRIPT:
    case DBI_W_TXN_COPY:
        if (w->tcb) w->tcb(w->txn, &r, w->data);
        break;
    default:
        if (w->qcb) w->qcb(&r, w->data);
        break;
    }
    core_log_set_trace(saved);
    dbi_arena_free(&arena);
    if (res) PQclear(res);
    dbi_work_free(w);
}

/* ---------------------------------------------------------------- deferred failures */

static void list_append(dbi_work **head, dbi_work **tail, dbi_work *w)
{
    w->next = NULL;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static dbi_work *list_pop(dbi_work **head, dbi_work **tail)
{
    dbi_work *w = *head;
    if (!w) return NULL;
    *head = w->next;
    if (!*head) *tail = NULL;
    w->next = NULL;
    return w;
}

static void txn_free(db_txn *t)
{
    if (t->conn && t->conn->txn == t) t->conn->txn = NULL;
    free(t);
}

/* A statement of a transaction (as opposed to BEGIN, COMMIT, ROLLBACK). */
static bool work_in_txn(const dbi_work *w)
{
    return w->kind == DBI_W_TXN_QUERY || w->kind == DBI_W_TXN_SCRIPT || w->kind == DBI_W_TXN_COPY;
}

static void txn_mark_failed(db_txn *t, const char *err, const char *sqlstate)
{
    if (t->failed) return;
    t->failed = true;
    dbi_strlcpy(t->error, err ? err : "unknown error", sizeof t->error);
    dbi_strlcpy(t->sqlstate, sqlstate ? sqlstate : "", sizeof t->sqlstate);
}

static void deferred_one(dbi_work *w)
{
    switch (w->kind) {
    case DBI_W_BEGIN:
    case DBI_W_COMMIT:
    case DBI_W_ROLLBACK:
        /* The transaction ends here (or never started): free it before the callback. */
        if (w->txn) {
            txn_free(w->txn);
            w->txn = NULL;
        }
        break;
    default:
        break;
    }
    dbi_work_finish(w, NULL, NULL, NULL);
}

static void pool_kick_cb(uv_timer_t *timer)
{
    db_pool *p = timer->data;
    dbi_work *w;
    while ((w = list_pop(&p->d_head, &p->d_tail)) != NULL)
        deferred_one(w);
    pool_pump(p);
}

void dbi_defer(db_pool *p, dbi_work *w, const char *err, const char *sqlstate)
{
    if (!w->err && err) { /* err NULL: report success (a rollback with nothing to undo) */
        w->err = core_xstrdup(err);
        dbi_strlcpy(w->sqlstate, sqlstate ? sqlstate : "", sizeof w->sqlstate);
    }
    if (work_in_txn(w) && w->txn && w->err) txn_mark_failed(w->txn, w->err, w->sqlstate);
    if (p->handles_closing) {
        /* Only reachable by misuse (a relay closed after its pool): report at once. */
        core_log_error("database work failed after its pool closed",
                       CORE_F_STR("error", err ? err : ""));
        deferred_one(w);
        return;
    }
    list_append(&p->d_head, &p->d_tail, w);
    if (!uv_is_active((uv_handle_t *)&p->kick)) uv_timer_start(&p->kick, pool_kick_cb, 0, 0);
}

/* ---------------------------------------------------------------- the queue */

static void pool_qtimer_cb(uv_timer_t *timer);

static void queue_arm(db_pool *p)
{
    if (!p->q_head) {
        uv_timer_stop(&p->qtimer);
        return;
    }
    int64_t now = core_mono_ns();
    int64_t ms = (p->q_head->deadline_ns - now) / 1000000 + 1;
    if (ms < 1) ms = 1;
    uv_timer_start(&p->qtimer, pool_qtimer_cb, (uint64_t)ms, 0);
}

static dbi_work *queue_pop(db_pool *p)
{
    dbi_work *w = list_pop(&p->q_head, &p->q_tail);
    if (w) {
        p->q_len--;
        core_gauge_add(p->m_waiting, -1);
    }
    return w;
}

static void queue_fail_all(db_pool *p, const char *err, const char *sqlstate)
{
    dbi_work *w;
    while ((w = queue_pop(p)) != NULL)
        dbi_defer(p, w, err, sqlstate);
    uv_timer_stop(&p->qtimer);
}

static void pool_qtimer_cb(uv_timer_t *timer)
{
    db_pool *p = timer->data;
    int64_t now = core_mono_ns();
    while (p->q_head && p->q_head->deadline_ns <= now) {
        dbi_work *w = queue_pop(p);
        char err[256];
        snprintf(err, sizeof err,
                 "no database connection became free within %lld ms (pool of %d, %d connected)",
                 (long long)p->cfg.acquire_timeout_ms, p->nconns, pool_connected(p));
        dbi_defer(p, w, err, DBI_SQLSTATE_UNAVAILABLE);
    }
    queue_arm(p);
}

static void pool_submit(db_pool *p, dbi_work *w)
{
    if (w->err) {
        core_log_error("invalid database call", CORE_F_STR("error", w->err));
        dbi_defer(p, w, w->err, w->sqlstate);
        return;
    }
    if (p->closing) {
        dbi_defer(p, w, "database pool closing", DBI_SQLSTATE_CLOSING);
        return;
    }
    if (p->down && pool_connected(p) == 0) {
        char err[DBI_ERRLEN + 32];
        snprintf(err, sizeof err, "database unavailable: %s", p->last_error);
        dbi_defer(p, w, err, DBI_SQLSTATE_UNAVAILABLE);
        return;
    }
    if (p->q_len >= p->cfg.max_waiting) {
        char err[160];
        snprintf(err, sizeof err, "too many statements waiting for a database connection (%zu)",
                 p->q_len);
        dbi_defer(p, w, err, "53000");
        return;
    }
    w->queued_ns = core_mono_ns();
    w->deadline_ns = w->queued_ns + p->cfg.acquire_timeout_ms * 1000000;
    list_append(&p->q_head, &p->q_tail, w);
    p->q_len++;
    core_gauge_add(p->m_waiting, 1);
    if (!uv_is_active((uv_handle_t *)&p->qtimer)) queue_arm(p);
    pool_pump(p);
}

static void pool_pump(db_pool *p)
{
    if (p->pumping) {
        p->pump_again = true;
        return;
    }
    p->pumping = true;
    do {
        p->pump_again = false;
        for (int i = 0; i < p->nconns && p->q_head; i++) {
            dbi_conn *c = &p->conns[i];
            if (!dbi_conn_idle(c) || c->txn) continue;
            dbi_work *w = queue_pop(p);
            if (w->kind == DBI_W_BEGIN) {
                db_txn *t = calloc(1, sizeof *t);
                if (!t) abort();
                t->pool = p;
                t->conn = c;
                t->status = PQTRANS_IDLE;
                c->txn = t;
                w->txn = t;
            }
            dbi_conn_send(c, w);
        }
        if (!p->q_head) uv_timer_stop(&p->qtimer);
    } while (p->pump_again);
    p->pumping = false;
    pool_maybe_closed(p);
}

/* ---------------------------------------------------------------- connection events */

static void pool_conn_ready(dbi_conn *c)
{
    db_pool *p = c->pool;
    p->down = false;
    p->last_error[0] = '\0';
    core_log_debug("database connection ready", CORE_F_STR("application_name", c->app_name));
    pool_pump(p);
}

static void txn_begin_done(dbi_work *w, PGresult *res)
{
    db_txn *t = w->txn;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        txn_free(t);
        w->txn = NULL;
    } else if (t->conn && t->conn->pg) {
        t->status = PQtransactionStatus(t->conn->pg);
    }
    dbi_work_finish(w, res, NULL, NULL);
}

static void txn_query_done(dbi_work *w, PGresult *res)
{
    db_txn *t = w->txn;
    if (dbi_result_is_error(res)) {
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        char line[DBI_ERRLEN];
        dbi_one_line(primary ? primary : (res ? PQresultErrorMessage(res) : "no result"), line,
                     sizeof line);
        txn_mark_failed(t, line, state);
    }
    if (t->conn && t->conn->pg) t->status = PQtransactionStatus(t->conn->pg);
    dbi_work_finish(w, res, NULL, NULL);
}

/* A db_txn_copy_in whose statement ran without asking for COPY data (not COPY ... FROM STDIN:
 * the data was not loaded) is an error, so that committing cannot lose the data silently. */
static void txn_copy_done(dbi_work *w, PGresult *res)
{
    if (!dbi_result_is_error(res) && !w->copy_started && !w->err) {
        w->err = core_xstrdup("db_txn_copy_in: the statement is not a COPY ... FROM STDIN (the "
                              "data was not sent)");
        dbi_strlcpy(w->sqlstate, DBI_SQLSTATE_INVALID, sizeof w->sqlstate);
        txn_mark_failed(w->txn, w->err, w->sqlstate);
    }
    txn_query_done(w, res);
}

static void txn_end_done(dbi_work *w, PGresult *res)
{
    db_txn *t = w->txn;
    char err[DBI_ERRLEN + 64] = "";
    char state[6] = ""; /* copied: t is freed before the callback */
    bool res_ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (w->kind == DBI_W_COMMIT && w->commit_failed) {
        snprintf(err, sizeof err, "transaction rolled back after an earlier error: %s", t->error);
        dbi_strlcpy(state, t->sqlstate[0] ? t->sqlstate : DBI_SQLSTATE_TXN_ABORTED, sizeof state);
    } else if (w->kind == DBI_W_COMMIT && res_ok && strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        snprintf(err, sizeof err, "COMMIT rolled the transaction back (an earlier error)");
        dbi_strlcpy(state, DBI_SQLSTATE_ROLLED_BACK, sizeof state);
    }
    txn_free(t);
    w->txn = NULL;
    dbi_work_finish(w, res, err[0] ? err : NULL, state[0] ? state : NULL);
}

static void pool_conn_done(dbi_conn *c, dbi_work *w, PGresult *res)
{
    db_pool *p = c->pool;
    switch (w->kind) {
    case DBI_W_BEGIN:
        txn_begin_done(w, res);
        break;
    case DBI_W_TXN_QUERY:
    case DBI_W_TXN_SCRIPT:
        txn_query_done(w, res);
        break;
    case DBI_W_TXN_COPY:
        txn_copy_done(w, res);
        break;
    case DBI_W_COMMIT:
    case DBI_W_ROLLBACK:
        txn_end_done(w, res);
        break;
    default:
        dbi_work_finish(w, res, NULL, NULL);
        break;
    }
    if (c->txn) txn_pump(c->txn);
    pool_pump(p);
}

static void pool_conn_down(dbi_conn *c, const char *err, bool was_ready)
{
    db_pool *p = c->pool;
    dbi_strlcpy(p->last_error, err, sizeof p->last_error);
    if (c->txn) {
        db_txn *t = c->txn;
        c->txn = NULL;
        t->conn = NULL;
        char msg[DBI_ERRLEN + 48];
        snprintf(msg, sizeof msg, "connection lost during the transaction: %s", err);
        txn_mark_failed(t, msg, DBI_SQLSTATE_CONN_LOST);
        txn_pump(t);
    }
    if (!was_ready && pool_connected(p) == 0) {
        /* Nothing is connected and the latest attempt failed: fail fast rather than let work
         * wait for a database that is not there. */
        p->down = true;
        char msg[DBI_ERRLEN + 32];
        snprintf(msg, sizeof msg, "database unavailable: %s", err);
        queue_fail_all(p, msg, DBI_SQLSTATE_UNAVAILABLE);
    }
    pool_maybe_closed(p);
}

static const dbi_conn_ops pool_conn_ops = {
    .ready = pool_conn_ready,
    .done = pool_conn_done,
    .down = pool_conn_down,
    .notify = NULL,
};

dbi_work *dbi_pool_setup_work(db_pool *p)
{
    if (!p->setup_sql[0]) return NULL;
    const char *vals[POOL_SETUP_MAX_PARAMS];
    for (int i = 0; i < p->setup_nparams; i++)
        vals[i] = p->setup_values[i];
    char err[DBI_ERRLEN];
    return dbi_work_new(p, DBI_W_SETUP, p->setup_sql, p->setup_nparams, vals, NULL, NULL, err,
                        sizeof err);
}

/* The session settings as one parameterized SELECT of set_config calls. */
static void pool_build_setup(db_pool *p)
{
    core_buf b = {0};
    core_buf_puts(&b, "SELECT set_config('TimeZone', 'UTC', false)");
    int n = 0;
    if (p->cfg.statement_timeout_ms > 0) {
        snprintf(p->setup_values[n], sizeof p->setup_values[n], "%lld",
                 (long long)p->cfg.statement_timeout_ms);
        core_buf_printf(&b, ", set_config('statement_timeout', $%d, false)", ++n);
    }
    if (p->cfg.idle_in_txn_timeout_ms > 0) {
        snprintf(p->setup_values[n], sizeof p->setup_values[n], "%lld",
                 (long long)p->cfg.idle_in_txn_timeout_ms);
        core_buf_printf(&b, ", set_config('idle_in_transaction_session_timeout', $%d, false)", ++n);
    }
    if (p->search_path) {
        dbi_strlcpy(p->setup_values[n], p->search_path, sizeof p->setup_values[n]);
        core_buf_printf(&b, ", set_config('search_path', $%d, false)", ++n);
    }
    dbi_strlcpy(p->setup_sql, b.data, sizeof p->setup_sql);
    p->setup_nparams = n;
    core_buf_free(&b);
}

/* ---------------------------------------------------------------- pool lifecycle */

db_pool *db_pool_new(uv_loop_t *loop, const db_config *cfg, char *err, size_t errlen)
{
    if (!loop) {
        if (err && errlen) snprintf(err, errlen, "loop is NULL");
        return NULL;
    }
    if (!db_config_check(cfg, err, errlen)) return NULL;
    if (cfg->search_path && strlen(cfg->search_path) >= 256) {
        if (err && errlen) snprintf(err, errlen, "database search_path is too long");
        return NULL;
    }
    db_pool *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->loop = loop;
    p->cfg = *cfg;
    p->url = core_xstrdup(cfg->url);
    p->app_name = core_xstrdup(cfg->application_name ? cfg->application_name : POOL_DEFAULT_APP);
    p->search_path = cfg->search_path ? core_xstrdup(cfg->search_path) : NULL;
    p->cfg.url = p->url;
    p->cfg.application_name = p->app_name;
    p->cfg.search_path = p->search_path;
    if (p->cfg.pool_size == 0) p->cfg.pool_size = POOL_DEFAULT_SIZE;
    if (p->cfg.connect_timeout_ms == 0) p->cfg.connect_timeout_ms = 10000;
    if (p->cfg.acquire_timeout_ms == 0) p->cfg.acquire_timeout_ms = 30000;
    if (p->cfg.max_waiting == 0) p->cfg.max_waiting = 10000;
    if (p->cfg.reconnect_max_ms == 0) p->cfg.reconnect_max_ms = 5000;
    core_metrics *reg = cfg->metrics ? cfg->metrics : core_metrics_default();
    p->m_queries = core_metric_counter(reg, "db_queries_total",
                                       "Database statements finished, by result", "result");
    p->m_seconds = core_metric_histogram(
        reg, "db_query_seconds", "Time from sending a statement to its result", NULL, NULL, 0);
    p->m_waiting = core_metric_gauge(reg, "db_pool_waiting",
                                     "Statements waiting for a database connection", NULL);
    pool_build_setup(p);
    uv_timer_init(loop, &p->kick);
    p->kick.data = p;
    uv_timer_init(loop, &p->qtimer);
    p->qtimer.data = p;
    p->nconns = p->cfg.pool_size;
    p->conns = calloc((size_t)p->nconns, sizeof *p->conns);
    if (!p->conns) abort();
    for (int i = 0; i < p->nconns; i++) {
        dbi_conn_init(&p->conns[i], p, &pool_conn_ops, p, p->app_name);
        dbi_conn_start(&p->conns[i]);
    }
    return p;
}

static void pool_free(db_pool *p)
{
    void (*done)(void *) = p->close_done;
    void *data = p->close_data;
    free(p->conns);
    free(p->url);
    free(p->app_name);
    free(p->search_path);
    free(p);
    if (done) done(data);
}

static void pool_handle_closed(uv_handle_t *h)
{
    db_pool *p = h->data;
    if (--p->open_handles == 0) pool_free(p);
}

static void pool_conn_closed(dbi_conn *c)
{
    db_pool *p = c->pool;
    if (--p->open_handles == 0) pool_free(p);
}

static void pool_maybe_closed(db_pool *p)
{
    if (!p->closing || p->handles_closing || p->pumping) return;
    if (p->d_head || p->q_head) return;
    for (int i = 0; i < p->nconns; i++)
        if (p->conns[i].cur || p->conns[i].txn) return;
    p->handles_closing = true;
    p->open_handles = p->nconns + 2;
    for (int i = 0; i < p->nconns; i++)
        dbi_conn_close(&p->conns[i], pool_conn_closed);
    uv_close((uv_handle_t *)&p->kick, pool_handle_closed);
    uv_close((uv_handle_t *)&p->qtimer, pool_handle_closed);
}

void db_pool_close(db_pool *p, void (*done)(void *data), void *data)
{
    if (!p || p->closing) return;
    p->closing = true;
    p->close_done = done;
    p->close_data = data;
    queue_fail_all(p, "database pool closing", DBI_SQLSTATE_CLOSING);
    pool_maybe_closed(p);
}

/* ---------------------------------------------------------------- statements */

static void pool_query(db_pool *p, const char *sql, int nparams, const char *const *values,
                       const int *lengths, const int *formats, bool binary_result, db_query_cb cb,
                       void *data)
{
    if (!p) {
        core_log_error("db_query: pool is NULL");
        return;
    }
    char err[DBI_ERRLEN];
    dbi_work *w =
        dbi_work_new(p, DBI_W_QUERY, sql, nparams, values, lengths, formats, err, sizeof err);
    w->qcb = cb;
    w->data = data;
    w->binary_result = binary_result;
    pool_submit(p, w);
}

void db_query_params(db_pool *p, const char *sql, int nparams, const char *const *values,
                     const int *lengths, const int *formats, db_query_cb cb, void *data)
{
    pool_query(p, sql, nparams, values, lengths, formats, false, cb, data);
}

void dbi_query_binary(db_pool *p, const char *sql, int nparams, const char *const *values,
                      db_query_cb cb, void *data)
{
    pool_query(p, sql, nparams, values, NULL, NULL, true, cb, data);
}

void db_query(db_pool *p, const char *sql, int nparams, const char *const *values, db_query_cb cb,
              void *data)
{
    db_query_params(p, sql, nparams, values, NULL, NULL, cb, data);
}

/* ---------------------------------------------------------------- transactions */

void db_begin(db_pool *p, db_txn_cb cb, void *data)
{
    if (!p) {
        core_log_error("db_begin: pool is NULL");
        return;
    }
    char err[DBI_ERRLEN];
    dbi_work *w = dbi_work_new(p, DBI_W_BEGIN, "BEGIN", 0, NULL, NULL, NULL, err, sizeof err);
    w->tcb = cb;
    w->data = data;
    pool_submit(p, w);
}

static void txn_pump(db_txn *t)
{
    while (t->q_head) {
        if (t->conn && !dbi_conn_idle(t->conn)) return; /* one statement at a time */
        dbi_work *w = list_pop(&t->q_head, &t->q_tail);
        if (!t->conn) {
            /* The server rolled the transaction back when the connection went: a rollback
             * has nothing left to do and succeeds; anything else fails. */
            if (w->kind == DBI_W_ROLLBACK)
                dbi_defer(t->pool, w, NULL, NULL);
            else
                dbi_defer(t->pool, w, t->error, DBI_SQLSTATE_CONN_LOST);
            continue;
        }
        if (t->failed) {
            if (work_in_txn(w)) {
                char msg[DBI_ERRLEN + 48];
                snprintf(msg, sizeof msg, "transaction aborted by an earlier error: %s", t->error);
                dbi_defer(t->pool, w, msg, DBI_SQLSTATE_TXN_ABORTED);
                continue;
            }
            if (w->kind == DBI_W_COMMIT) {
                w->sql = (char *)"ROLLBACK"; /* read only by libpq */
                w->commit_failed = true;
            }
        }
        dbi_conn_send(t->conn, w);
        return;
    }
}

static void txn_submit(db_txn *t, dbi_work *w)
{
    if (w->err) {
        core_log_error("invalid database call", CORE_F_STR("error", w->err));
        if (w->kind == DBI_W_COMMIT || w->kind == DBI_W_ROLLBACK) {
            /* Still ends the transaction: roll it back. */
            free(w->err);
            w->err = NULL;
            w->sql = (char *)"ROLLBACK";
        } else {
            dbi_defer(t->pool, w, w->err, w->sqlstate);
            return;
        }
    }
    list_append(&t->q_head, &t->q_tail, w);
    txn_pump(t);
}

/* Queues w, a statement of t, submitted by the public function fn. */
static void txn_add(db_txn *t, dbi_work *w, const char *fn)
{
    if (t->ended) {
        /* The transaction is being freed: the callback gets txn NULL. */
        core_log_error("transaction statement after db_commit/db_rollback",
                       CORE_F_STR("function", fn));
        dbi_defer(t->pool, w, "transaction already ended", DBI_SQLSTATE_INVALID);
        return;
    }
    w->txn = t;
    txn_submit(t, w);
}

static void txn_query(db_txn *t, dbi_work_kind kind, const char *sql, int nparams,
                      const char *const *values, const int *lengths, const int *formats,
                      db_txn_cb cb, void *data)
{
    if (!t) {
        core_log_error("db_txn_query: txn is NULL");
        return;
    }
    char err[DBI_ERRLEN];
    dbi_work *w =
        work_new(t->pool, kind, sql, nparams, values, lengths, formats, t->borrow, err, sizeof err);
    w->tcb = cb;
    w->data = data;
    txn_add(t, w, "db_txn_query");
}

void db_txn_query_params(db_txn *t, const char *sql, int nparams, const char *const *values,
                         const int *lengths, const int *formats, db_txn_cb cb, void *data)
{
    txn_query(t, DBI_W_TXN_QUERY, sql, nparams, values, lengths, formats, cb, data);
}

void db_txn_query(db_txn *t, const char *sql, int nparams, const char *const *values, db_txn_cb cb,
                  void *data)
{
    txn_query(t, DBI_W_TXN_QUERY, sql, nparams, values, NULL, NULL, cb, data);
}

void dbi_txn_script(db_txn *t, const char *sql, db_txn_cb cb, void *data)
{
    txn_query(t, DBI_W_TXN_SCRIPT, sql, 0, NULL, NULL, NULL, cb, data);
}

void dbi_txn_fail(db_txn *t, const char *err, db_txn_cb cb, void *data)
{
    char buf[DBI_ERRLEN];
    dbi_work *w = dbi_work_new(t->pool, DBI_W_TXN_QUERY, "", 0, NULL, NULL, NULL, buf, sizeof buf);
    w->tcb = cb;
    w->data = data;
    w->txn = t->ended ? NULL : t;
    dbi_defer(t->pool, w, err, DBI_SQLSTATE_INVALID);
}

void db_txn_copy_in(db_txn *t, const char *sql, const void *data, size_t len, db_txn_cb cb,
                    void *cbdata)
{
    if (!t) {
        core_log_error("db_txn_copy_in: txn is NULL");
        return;
    }
    char err[DBI_ERRLEN];
    dbi_work *w = dbi_work_new(t->pool, DBI_W_TXN_COPY, sql, 0, NULL, NULL, NULL, err, sizeof err);
    w->tcb = cb;
    w->data = cbdata;
    if (!w->err && len > 0 && !data) {
        w->err = core_xstrdup("db_txn_copy_in: data is NULL");
        dbi_strlcpy(w->sqlstate, DBI_SQLSTATE_INVALID, sizeof w->sqlstate);
    }
    if (!w->err && len > 0) {
        if (t->borrow) {
            w->copy_data = data;
        } else {
            char *copy = malloc(len);
            if (!copy) abort();
            memcpy(copy, data, len);
            w->copy_data = copy;
            w->copy_owned = true;
        }
        w->copy_len = len;
    }
    txn_add(t, w, "db_txn_copy_in");
}

void db_txn_borrow(db_txn *t, bool on)
{
    if (t) t->borrow = on;
}

int dbi_txn_status(const db_txn *t)
{
    return t->status;
}

static void txn_end(db_txn *t, dbi_work_kind kind, db_query_cb cb, void *data)
{
    if (!t) {
        core_log_error("db_commit/db_rollback: txn is NULL");
        return;
    }
    if (t->ended) {
        core_log_error("db_commit/db_rollback called twice on one transaction");
        return;
    }
    t->ended = true;
    char err[DBI_ERRLEN];
    dbi_work *w = dbi_work_new(t->pool, kind, kind == DBI_W_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL,
                               NULL, NULL, err, sizeof err);
    w->qcb = cb;
    w->data = data;
    w->txn = t;
    txn_submit(t, w);
}

void db_commit(db_txn *t, db_query_cb cb, void *data)
{
    txn_end(t, DBI_W_COMMIT, cb, data);
}

void db_rollback(db_txn *t, db_query_cb cb, void *data)
{
    txn_end(t, DBI_W_ROLLBACK, cb, data);
}

bool db_txn_failed(const db_txn *t)
{
    return t && t->failed;
}

db_pool *db_txn_pool(const db_txn *t)
{
    return t ? t->pool : NULL;
}
