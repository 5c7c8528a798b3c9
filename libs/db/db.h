/*
 * db: PostgreSQL (libpq, non-blocking) on the service's libuv loop.
 *
 *   db_pool_*         a small fixed pool of connections with a FIFO queue of waiting work
 *   db_query*         one parameterized statement on any free connection
 *   db_begin ...      a transaction: checks out one connection until db_commit / db_rollback
 *   db_result_*       the result handed to a callback (valid only during that callback)
 *   db_migrate        numbered SQL files, each applied once in its own transaction
 *   db_inbox_claim    idempotent consumer: record an event id in the handler's transaction
 *   db_outbox_add     transactional outbox: write an event in the caller's transaction
 *   db_outbox_relay_* publishes the outbox to Kafka exactly once (one leader per service)
 *
 * Only parameterized statements: values travel as parameters ($1, $2 ...), never inside SQL.
 *
 * Callbacks: every function that takes a callback calls it exactly once, always from the loop
 * and never from inside the call that submitted the work (errors found at submission are
 * reported on the next loop iteration). Everything runs on the loop's thread.
 */
#ifndef DB_H
#define DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core.h"

struct bus_record; /* bus.h */

typedef struct db_pool db_pool;
typedef struct db_txn db_txn;
typedef struct db_result db_result;
typedef struct db_relay db_relay;

/* ------------------------------------------------------------------ configuration */

typedef struct db_config {
    const char *url;                /* libpq URL or "key=value" string; required; never logged */
    int pool_size;                  /* connections; 0 = 4 (1..64) */
    const char *application_name;   /* pg_stat_activity; NULL = "contentengine" */
    const char *search_path;        /* set on every connection; NULL = the role's default */
    int64_t statement_timeout_ms;   /* 0 = the server's setting */
    int64_t idle_in_txn_timeout_ms; /* idle_in_transaction_session_timeout; 0 = server's */
    int64_t connect_timeout_ms;     /* per attempt; 0 = 10000 */
    int64_t acquire_timeout_ms;     /* longest wait for a connection; 0 = 30000 */
    size_t max_waiting;             /* queue bound, beyond it work fails at once; 0 = 10000 */
    int64_t reconnect_max_ms;       /* backoff cap between connection attempts; 0 = 5000 */
    core_metrics *metrics;          /* NULL = core_metrics_default() */
} db_config;

/* Reads DATABASE_URL (required, secret), DB_POOL_SIZE, DB_STATEMENT_TIMEOUT, DB_SEARCH_PATH,
 * DB_CONNECT_TIMEOUT and DB_ACQUIRE_TIMEOUT, and checks them like db_config_check; problems
 * are recorded in cc for core_config_finish. Strings point into the environment. */
void db_config_from_env(core_config *cc, db_config *out);
/* false with one line in err (the URL itself is never echoed) when cfg cannot work. */
bool db_config_check(const db_config *cfg, char *err, size_t errlen);

/* ------------------------------------------------------------------ pool */

/* Starts connecting at once and keeps reconnecting (with backoff) whenever a connection
 * breaks. NULL with a message in err on a bad configuration only. */
db_pool *db_pool_new(uv_loop_t *loop, const db_config *cfg, char *err, size_t errlen);
/* Drain: new work fails ("pool closing"), waiting work fails, work in flight and open
 * transactions finish, then the connections close and done(data) runs on the loop. Close a
 * relay using this pool first. */
void db_pool_close(db_pool *p, void (*done)(void *data), void *data);
/* For /readyz: at least one connection is established and the pool is not closing. */
bool db_pool_ready(const db_pool *p);
int db_pool_connected(const db_pool *p);  /* established connections */
size_t db_pool_waiting(const db_pool *p); /* work queued for a connection */

/* ------------------------------------------------------------------ results */

/* Errors: db_result_error() is one line of text, db_result_sqlstate() the five-character
 * SQLSTATE. Besides the server's own codes, the library reports:
 *   08001  database unavailable (cannot connect), or no connection within acquire_timeout_ms
 *   08006  the connection broke while the statement ran (it may or may not have committed)
 *   25P02  a statement of a transaction that an earlier error aborted
 *   40003  COMMIT reported ROLLBACK (an earlier error in the transaction)
 *   57P01  pool closing
 *   22023  invalid arguments (NULL sql, negative nparams ...) */
bool db_result_ok(const db_result *r);
const char *db_result_error(const db_result *r);    /* NULL when ok */
const char *db_result_sqlstate(const db_result *r); /* "" when ok */
int db_result_rows(const db_result *r);
int db_result_columns(const db_result *r);
const char *db_result_column_name(const db_result *r, int col);
int db_result_column(const db_result *r, const char *name); /* -1 when absent */
/* NULL for SQL NULL and for a row or column out of range. Text format: NUL-terminated. */
const char *db_result_value(const db_result *r, int row, int col);
/* Same, by column name. */
const char *db_result_get(const db_result *r, int row, const char *name);
bool db_result_isnull(const db_result *r, int row, int col);
int db_result_length(const db_result *r, int row, int col);
/* A bytea column as bytes (decoded from the text form; freed after the callback). */
const uint8_t *db_result_bytea(const db_result *r, int row, int col, size_t *len);
/* A column as a 64-bit integer; false when NULL, absent or not an integer. */
bool db_result_int64(const db_result *r, int row, int col, int64_t *out);
/* Rows inserted, updated, deleted (or selected); 0 when the command has no count. */
int64_t db_result_affected(const db_result *r);

/* ------------------------------------------------------------------ statements */

typedef void (*db_query_cb)(const db_result *r, void *data);

/* One statement with text parameters (values[i] NULL is SQL NULL). The SQL, the parameters
 * and values are copied: they need not outlive the call. cb may be NULL. */
void db_query(db_pool *p, const char *sql, int nparams, const char *const *values, db_query_cb cb,
              void *data);
/* Same with lengths and formats (1 = binary, e.g. raw bytes for a bytea parameter; 0 = text,
 * length ignored). lengths/formats NULL mean all text. */
void db_query_params(db_pool *p, const char *sql, int nparams, const char *const *values,
                     const int *lengths, const int *formats, db_query_cb cb, void *data);

/* ------------------------------------------------------------------ transactions */

/* txn is NULL only in db_begin's callback when no transaction could start (r says why). */
typedef void (*db_txn_cb)(db_txn *txn, const db_result *r, void *data);

/* Waits for a connection like db_query, runs BEGIN, and keeps the connection for this
 * transaction until db_commit or db_rollback. */
void db_begin(db_pool *p, db_txn_cb cb, void *data);
/* Statements of a transaction run in the order they were submitted (several may be queued).
 * After an error the transaction is aborted: later statements fail with 25P02 and db_commit
 * rolls back and reports the first error; the caller should db_rollback. */
void db_txn_query(db_txn *t, const char *sql, int nparams, const char *const *values, db_txn_cb cb,
                  void *data);
void db_txn_query_params(db_txn *t, const char *sql, int nparams, const char *const *values,
                         const int *lengths, const int *formats, db_txn_cb cb, void *data);
/* COPY ... FROM STDIN inside a transaction: sends sql (a COPY statement, no parameters), then
 * the len bytes of data (copied: they need not outlive the call, unless db_txn_borrow is on) as
 * the COPY data, then ends the copy; cb gets the command's result (db_result_affected = rows
 * copied) or its error (e.g. 23505 when a row breaks a unique index; the transaction is then
 * aborted like after any failed statement). Runs in submission order with the transaction's
 * other statements. The data is sent as is: text, CSV or binary (PGCOPY header included) as the
 * statement's FORMAT says. A statement that does not read COPY data (not FROM STDIN) is an error
 * (22023), the data unsent. */
void db_txn_copy_in(db_txn *t, const char *sql, const void *data, size_t len, db_txn_cb cb,
                    void *cbdata);
/* While on, t's statements (db_txn_query_params, db_txn_copy_in, db_outbox_add ...) send the
 * caller's binary parameter values (format 1; db_outbox_add: key and value) and COPY data from
 * where they are instead of copying them first: the caller keeps them unchanged until the
 * statement's cb has run (it runs for every statement, failed or not). For transactions that
 * carry megabytes per statement (a bulk import's COPY data and bulk outbox rows), where the copy
 * and the page faults of its fresh memory cost more than the rest of the library's work. SQL
 * text and text parameters are still copied. */
void db_txn_borrow(db_txn *t, bool on);
/* End the transaction; the connection returns to the pool before cb runs and txn is freed:
 * do not use it afterwards. cb may be NULL. db_commit's result is an error when the commit
 * did not happen (an earlier error, a serialization failure, a lost connection). */
void db_commit(db_txn *t, db_query_cb cb, void *data);
void db_rollback(db_txn *t, db_query_cb cb, void *data);
bool db_txn_failed(const db_txn *t); /* an earlier statement failed */
db_pool *db_txn_pool(const db_txn *t);

/* ------------------------------------------------------------------ migrations */

/* err NULL on success; applied counts files applied by this call (built-in ones included). */
typedef void (*db_migrate_cb)(const char *err, int applied, void *data);

/* Applies the library's built-in migrations (schema_migrations, outbox, inbox), then the
 * files NNN_description.sql of dir (NULL: built-ins only) in numeric order, each in its own
 * transaction under pg_advisory_xact_lock (concurrent replicas wait for each other), in the
 * connection's current schema. Applied files are recorded with a SHA-256 checksum; a file
 * changed after it was applied stops with an error naming it. The directory is read
 * synchronously: call this at start-up, before serving. */
void db_migrate(db_pool *p, const char *dir, db_migrate_cb cb, void *data);

/* ------------------------------------------------------------------ inbox and outbox */

/* first: this (consumer, event_id) was not recorded before. On false the event was already
 * handled: roll back (or commit) without doing the effect again. */
typedef void (*db_claim_cb)(db_txn *txn, const db_result *r, bool first, void *data);

/* INSERT INTO inbox ... ON CONFLICT DO NOTHING in the handler's transaction, so the effect
 * and the claim commit together. */
void db_inbox_claim(db_txn *t, const char *consumer, const char *event_id, db_claim_cb cb,
                    void *data);

/* Writes r (topic, key, value, CloudEvents fields, extra headers) to the outbox in the
 * caller's transaction. Unset fields are filled as bus_produce would: ce_id a fresh UUIDv7,
 * ce_time now, content_type application/protobuf, traceparent from the current log trace
 * (core_log_trace) or a new trace. The result has columns id and ce_id. An insert trigger
 * wakes the relay (NOTIFY) when the transaction commits. */
void db_outbox_add(db_txn *t, const struct bus_record *r, db_txn_cb cb, void *data);
/* The same for n records (1..1000) in one statement, one row each, in order: one round trip
 * for a batch of events (the scraper writes an event per stored item). */
void db_outbox_add_many(db_txn *t, const struct bus_record *recs, size_t n, db_txn_cb cb,
                        void *data);

/* A bulk row: an outbox row whose ce_type is DB_OUTBOX_BULK_TYPE carries many records in its
 * payload (an OutboxBulk, platform.proto). The relay publishes each record as its own Kafka
 * message (the record's key, ce_id, ce_type, ce_subject and value; the row's topic, partition,
 * time, content type, traceparent and headers) in the Kafka transaction that checkpoints the
 * row: a batch of a million-row import is one outbox row, still published exactly once.
 * db_outbox_bulk_entry appends r's encoded entry to out; any concatenation of entries is a
 * valid payload, so a statement can string_agg the entries of the rows it really wrote. Keep a
 * row to a few thousand records: it is one Kafka transaction, and the producer's queue holds
 * 100,000 messages. */
#define DB_OUTBOX_BULK_TYPE "contentengine.platform.outbox.bulk.v1"
void db_outbox_bulk_entry(core_buf *out, const struct bus_record *r);
/* Appends the ce_type of the payload's entries whose record had none (NULL or empty ce_type).
 * Once per payload, anywhere in it; without it such a record is an error when relayed. An
 * entry whose ce_subject equals its key stores neither twice (db_outbox_bulk_entry does that
 * by itself): the two make a bulk entry a fifth smaller. */
void db_outbox_bulk_default_type(core_buf *out, const char *ce_type);

/* ------------------------------------------------------------------ outbox relay */

typedef struct db_relay_config {
    const char *brokers;            /* required */
    const char *name;               /* required: the service name; the checkpoint key, the Kafka
                                       transactional.id "outbox-<name>", the leader lock */
    const char *source;             /* ce_source of published records; NULL = "/services/<name>" */
    const char *checkpoint_topic;   /* NULL = TOPIC_PLATFORM_OUTBOX_CHECKPOINTS */
    int batch_size;                 /* rows per Kafka transaction; 0 = 100 */
    int64_t sweep_interval_ms;      /* look for rows even without NOTIFY; 0 = 1000 */
    int64_t leader_retry_ms;        /* a follower retries the leader lock; 0 = 5000 */
    int64_t retention_ms;           /* sent rows older than this are deleted; 0 = 7 days */
    int64_t cleanup_interval_ms;    /* 0 = 60000 */
    int64_t transaction_timeout_ms; /* Kafka transaction.timeout.ms; 0 = 60000 */
} db_relay_config;

/* Starts the relay on the loop: it opens one dedicated connection (leader lock, LISTEN), then
 * when leader initializes the transactional producer, recovers from its last checkpoint and
 * publishes. NULL with a message in err on a bad configuration. */
db_relay *db_outbox_relay_new(uv_loop_t *loop, db_pool *pool, const db_relay_config *cfg, char *err,
                              size_t errlen);
/* Finishes the batch in flight, closes the producer and the dedicated connection (releasing
 * the leader lock), then done(data). */
void db_outbox_relay_close(db_relay *r, void (*done)(void *data), void *data);
bool db_outbox_relay_leader(const db_relay *r); /* leader and recovered: publishing */
/* Whether the relay can do its part, for a readiness check: the leader is recovered and its
 * producer reaches the brokers; a replica that does not hold the leader lock publishes nothing
 * and is ready. detail (optional) says which. */
bool db_outbox_relay_ready(const db_relay *r, const char **detail);
uint64_t db_outbox_relay_published(const db_relay *r); /* rows published by this instance */

#endif
