/*
 * Library-private declarations of libs/db (every name starts with dbi_). Services include
 * db.h only; the unit tests include this header to reach the pure helpers.
 */
#ifndef DB_INTERNAL_H
#define DB_INTERNAL_H

#include <libpq-fe.h>

#include "db.h"

#define DBI_ERRLEN 512

/* SQLSTATEs the library reports for errors of its own (see db.h). */
#define DBI_SQLSTATE_UNAVAILABLE "08001"
#define DBI_SQLSTATE_CONN_LOST   "08006"
#define DBI_SQLSTATE_TXN_ABORTED "25P02"
#define DBI_SQLSTATE_ROLLED_BACK "40003"
#define DBI_SQLSTATE_CLOSING     "57P01"
#define DBI_SQLSTATE_INVALID     "22023"

/* ---------------------------------------------------------------- work items */

typedef enum dbi_work_kind {
    DBI_W_SETUP,      /* session settings right after connecting (internal) */
    DBI_W_QUERY,      /* db_query: qcb */
    DBI_W_BEGIN,      /* db_begin: checks out the connection, tcb */
    DBI_W_TXN_QUERY,  /* db_txn_query: tcb */
    DBI_W_TXN_SCRIPT, /* several statements, simple protocol (migrations only): tcb */
    DBI_W_TXN_COPY,   /* db_txn_copy_in: COPY ... FROM STDIN, then copy_data: tcb */
    DBI_W_COMMIT,     /* qcb */
    DBI_W_ROLLBACK,   /* qcb */
} dbi_work_kind;

typedef struct dbi_work dbi_work;
struct dbi_work {
    dbi_work *next;
    dbi_work_kind kind;
    db_pool *pool;
    db_txn *txn;
    char *sql;
    int nparams;
    const char **values; /* parameter memory is part of this allocation (or borrowed) */
    int *lengths;
    int *formats;
    db_query_cb qcb;
    db_txn_cb tcb;
    void *data;
    int64_t queued_ns, sent_ns, deadline_ns;
    char trace[CORE_TRACE_ID_LEN + 1];
    bool commit_failed;    /* a COMMIT of an aborted transaction that runs ROLLBACK */
    const char *copy_data; /* DBI_W_TXN_COPY: the COPY data */
    bool copy_owned;       /* copy_data is malloc'ed and freed with w (not borrowed) */
    size_t copy_len;
    bool copy_started;  /* the server answered COPY IN: copy_data is (being) sent */
    bool binary_result; /* results in binary format (dbi_query_binary) */
    char *err;          /* a failure found by the library (deferred) */
    char sqlstate[6];
};

typedef struct dbi_arena {
    void **ptrs; /* PQfreemem'd after the callback */
    size_t n, cap;
} dbi_arena;

struct db_result {
    PGresult *res; /* NULL for errors of the library's own */
    const char *error;
    char sqlstate[6];
    dbi_arena *arena;
};

/* New work item copying sql and the parameters; NULL (and err set) on bad arguments. */
dbi_work *dbi_work_new(db_pool *p, dbi_work_kind kind, const char *sql, int nparams,
                       const char *const *values, const int *lengths, const int *formats, char *err,
                       size_t errlen);
void dbi_work_free(dbi_work *w);
/* Reports the outcome of w (res, or err/sqlstate when res is NULL) to its callback with the
 * submitter's trace id set, records metrics, then frees w and res. Not for BEGIN/COMMIT. */
void dbi_work_finish(dbi_work *w, PGresult *res, const char *err, const char *sqlstate);
/* Fills r from res (or err); error text points into r or res. */
void dbi_result_init(db_result *r, PGresult *res, const char *err, const char *sqlstate,
                     dbi_arena *arena, char *buf, size_t buflen);
void dbi_arena_free(dbi_arena *a);
/* A float8 or float4 column (text, or binary big-endian IEEE 754) as a double; false when
 * NULL, absent or not a number. */
bool dbi_result_double(const db_result *r, int row, int col, double *out);
/* Whether a statement's result is an error (no result at all counts as one). */
bool dbi_result_is_error(const PGresult *res);

/* ---------------------------------------------------------------- connections */

typedef struct dbi_conn dbi_conn;

typedef struct dbi_conn_ops {
    void (*ready)(dbi_conn *c); /* connected and set up, idle */
    /* A statement finished; the connection is idle again (or already down). */
    void (*done)(dbi_conn *c, dbi_work *w, PGresult *res);
    /* A connection attempt failed (was_ready false) or an established connection broke. The
     * statement in flight, if any, has been failed already (deferred). */
    void (*down)(dbi_conn *c, const char *err, bool was_ready);
    void (*notify)(dbi_conn *c, const PGnotify *n); /* may be NULL */
} dbi_conn_ops;

typedef enum dbi_conn_state {
    DBI_C_WAIT,       /* backoff before the next attempt */
    DBI_C_CONNECTING, /* PQconnectPoll */
    DBI_C_SETUP,      /* session settings */
    DBI_C_READY,
    DBI_C_CLOSED,
} dbi_conn_state;

typedef struct dbi_poll dbi_poll;

struct dbi_conn {
    db_pool *pool;
    const dbi_conn_ops *ops;
    void *owner;
    const char *app_name;
    dbi_conn_state state;
    PGconn *pg;
    dbi_poll *poll;
    int poll_events;
    uv_timer_t timer; /* connect timeout, then reconnect backoff */
    unsigned attempt;
    dbi_work *cur;
    PGresult *res_acc; /* the result gathered so far for cur */
    bool flushing;
    bool copying;    /* COPY IN of cur: its data is being queued, the end not yet */
    size_t copy_off; /* bytes of cur->copy_data queued so far */
    db_txn *txn;     /* the transaction holding this pool connection */
    void (*closed)(dbi_conn *c);
    char error[DBI_ERRLEN];
};

void dbi_conn_init(dbi_conn *c, db_pool *p, const dbi_conn_ops *ops, void *owner,
                   const char *app_name);
void dbi_conn_start(dbi_conn *c);
bool dbi_conn_idle(const dbi_conn *c);
/* Sends w; a failure to send is reported through ops->done / the deferred path, never by
 * calling a user callback from here. */
void dbi_conn_send(dbi_conn *c, dbi_work *w);
/* Closes the connection and its handles; the statement in flight fails (deferred). closed(c)
 * runs once the handles are closed. */
void dbi_conn_close(dbi_conn *c, void (*closed)(dbi_conn *c));

/* ---------------------------------------------------------------- pool internals */

uv_loop_t *dbi_pool_loop(const db_pool *p);
/* Connection parameters for PQconnectStartParams (application_name overridden per conn). */
void dbi_pool_conninfo(const db_pool *p, const char *app_name, const char **keywords,
                       const char **values, size_t max);
const db_config *dbi_pool_config(const db_pool *p);
/* The setup statement run on each new connection (NULL when nothing to set). */
dbi_work *dbi_pool_setup_work(db_pool *p);
/* Reports w on the next loop iteration: failed with err/sqlstate, or done when err is NULL. */
void dbi_defer(db_pool *p, dbi_work *w, const char *err, const char *sqlstate);
/* db_query with every result column in binary format (resultFormat 1): bytea arrives as raw
 * bytes, not hex (half the bytes, no hex encoding on the server, no PQunescapeBytea here). The
 * callback reads the row with the accessors that honour PQfformat: db_result_bytea (the raw
 * bytes), db_result_int64 (int2, int4, int8), dbi_result_double (float4, float8), and
 * db_result_value for text columns (their bytes as is, NUL-terminated by libpq). Any other
 * type comes as its binary representation: cast it to text in the SQL. For the outbox relay. */
void dbi_query_binary(db_pool *p, const char *sql, int nparams, const char *const *values,
                      db_query_cb cb, void *data);
/* Internal transaction step: a multi-statement script (simple protocol, no parameters). */
void dbi_txn_script(db_txn *t, const char *sql, db_txn_cb cb, void *data);
/* Fails a statement of t that could not be sent (bad arguments): the transaction is marked
 * failed and cb gets the error on the next iteration. */
void dbi_txn_fail(db_txn *t, const char *err, db_txn_cb cb, void *data);
/* The transaction status of its connection after the last statement (PQTRANS_*). */
int dbi_txn_status(const db_txn *t);

/* ---------------------------------------------------------------- pure helpers */

/* Copies src into dst (size bytes, always NUL-terminated), truncating. */
void dbi_strlcpy(char *dst, const char *src, size_t size);
/* Collapses libpq's multi-line messages into one line (no trailing newline). */
void dbi_one_line(const char *msg, char *out, size_t outlen);
/* Settings the library accepts for search_path: identifiers (or "$user"), comma-separated. */
bool dbi_search_path_valid(const char *s);
/* PostgreSQL array literal of int64 values: {1,2,3}. */
void dbi_int64_array(core_buf *b, const int64_t *v, size_t n);
/* Parses {1,2,3}; false when malformed. *out is malloc'ed. */
bool dbi_int64_array_parse(const char *s, int64_t **out, size_t *n);

/* Extra Kafka headers as stored in outbox.headers (jsonb): [{"name":..,"value":<base64>}]. */
typedef struct dbi_header {
    const char *name;
    const void *value;
    size_t len;
} dbi_header;
char *dbi_headers_encode(const dbi_header *h, size_t n); /* malloc'ed JSON text */
/* Decodes into one malloc'ed block (free() it): *out points to n headers. */
bool dbi_headers_decode(const char *json, dbi_header **out, size_t *n);

/* Migrations. */
typedef struct dbi_migration {
    int version;
    char *name;        /* file name, "001_create_items.sql" */
    char *sql;         /* contents */
    char checksum[65]; /* SHA-256, hex, of the contents with CRLF line ends read as LF */
} dbi_migration;

/* 1: a migration file (version and description set); 0: not a migration (ignored: no .sql
 * suffix, hidden file); -1: a .sql file whose name is not NNN_description.sql. */
int dbi_migration_name(const char *fname, int *version);
void dbi_checksum(const void *data, size_t len, char out[65]);
/* Reads dir: every NNN_description.sql, sorted by version. false with err on an unreadable
 * directory or file, a bad name, a duplicate version. */
bool dbi_migrations_scan(const char *dir, dbi_migration **out, size_t *n, char *err, size_t errlen);
void dbi_migrations_free(dbi_migration *m, size_t n);
/* The built-in migrations (platform tables), in order. */
const dbi_migration *dbi_builtin_migrations(size_t *n);

#endif
