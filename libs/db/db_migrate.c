/*
 * Migrations: the library's built-in ones (component "platform": outbox, inbox), then a
 * service's numbered files (component "service"), each in its own transaction under a
 * transaction-scoped advisory lock, recorded in schema_migrations with a SHA-256 checksum.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

#define MIG_PLATFORM "platform"
#define MIG_SERVICE  "service"

/* Taken at the start of every migration transaction: replicas of one service (one schema)
 * apply migrations one after the other. */
static const char mig_lock_sql[] =
    "SELECT pg_advisory_xact_lock(hashtextextended('contentengine.migrate:' || "
    "coalesce(current_schema(), ''), 0)), current_schema()";

static const char mig_bootstrap_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                        " component text NOT NULL,"
                                        " version integer NOT NULL,"
                                        " name text NOT NULL,"
                                        " checksum text NOT NULL,"
                                        " applied_at timestamptz NOT NULL DEFAULT now(),"
                                        " PRIMARY KEY (component, version))";

static const char mig_applied_sql[] =
    "SELECT component, version, name, checksum FROM schema_migrations ORDER BY component, "
    "version";

static const char mig_one_sql[] =
    "SELECT name, checksum FROM schema_migrations WHERE component = $1 AND version = $2";

static const char mig_record_sql[] =
    "INSERT INTO schema_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)";

/* ---------------------------------------------------------------- built-in migrations */

/* Never edit one of these once released: add a new one (the checksum check would stop every
 * service that applied the old text). */
static const char builtin_outbox_sql[] =
    "CREATE TABLE outbox (\n"
    "    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "    topic           text        NOT NULL,\n"
    "    kafka_partition integer,\n"
    "    key             bytea,\n"
    "    ce_id           text        NOT NULL,\n"
    "    ce_type         text        NOT NULL,\n"
    "    ce_time         timestamptz NOT NULL,\n"
    "    ce_subject      text,\n"
    "    content_type    text        NOT NULL,\n"
    "    traceparent     text,\n"
    "    headers         jsonb       NOT NULL DEFAULT '[]',\n"
    "    payload         bytea       NOT NULL,\n"
    "    created_at      timestamptz NOT NULL DEFAULT now(),\n"
    "    sent_at         timestamptz\n"
    ");\n"
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;\n"
    "CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;\n"
    "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "    PERFORM pg_notify('contentengine_outbox', TG_TABLE_SCHEMA);\n"
    "    RETURN NULL;\n"
    "END\n"
    "$$;\n"
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox\n"
    "    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();\n";

static const char builtin_inbox_sql[] = "CREATE TABLE inbox (\n"
                                        "    consumer    text        NOT NULL,\n"
                                        "    event_id    text        NOT NULL,\n"
                                        "    received_at timestamptz NOT NULL DEFAULT now(),\n"
                                        "    PRIMARY KEY (consumer, event_id)\n"
                                        ");\n"
                                        "CREATE INDEX inbox_received_at ON inbox (received_at);\n";

static dbi_migration builtins[] = {
    {1, (char *)"001_outbox.sql", (char *)builtin_outbox_sql, ""},
    {2, (char *)"002_inbox.sql", (char *)builtin_inbox_sql, ""},
};

const dbi_migration *dbi_builtin_migrations(size_t *n)
{
    *n = sizeof builtins / sizeof *builtins;
    if (!builtins[0].checksum[0])
        for (size_t i = 0; i < *n; i++)
            dbi_checksum(builtins[i].sql, strlen(builtins[i].sql), builtins[i].checksum);
    return builtins;
}

/* ---------------------------------------------------------------- the runner */

typedef struct mig_step {
    const char *component;
    const dbi_migration *m;
} mig_step;

typedef struct mig_row {
    char component[16];
    int version;
    char name[256];
    char checksum[65];
} mig_row;

typedef struct mig_ctx {
    db_pool *pool;
    db_migrate_cb cb;
    void *data;
    dbi_migration *files;
    size_t nfiles;
    mig_step *steps;
    size_t nsteps, i;
    mig_row *rows;
    size_t nrows;
    db_txn *txn;
    int applied;
    char schema[128];
    char err[1024];
} mig_ctx;

static void mig_next(mig_ctx *m);

static void mig_done(mig_ctx *m)
{
    if (m->err[0])
        core_log_error("migrations failed", CORE_F_STR("error", m->err),
                       CORE_F_STR("schema", m->schema));
    else
        core_log_info("migrations up to date", CORE_F_STR("schema", m->schema),
                      CORE_F_INT("applied", m->applied), CORE_F_INT("total", (long)m->nsteps));
    if (m->cb) m->cb(m->err[0] ? m->err : NULL, m->applied, m->data);
    dbi_migrations_free(m->files, m->nfiles);
    free(m->steps);
    free(m->rows);
    free(m);
}

static void mig_rolled_back(const db_result *r, void *data)
{
    (void)r;
    mig_done(data);
}

static void mig_fail(mig_ctx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mig_fail(mig_ctx *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    if (m->txn) {
        db_txn *t = m->txn;
        m->txn = NULL;
        db_rollback(t, mig_rolled_back, m);
    } else {
        mig_done(m);
    }
}

static const char *step_label(const mig_step *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", strcmp(s->component, MIG_PLATFORM) == 0 ? "built-in " : "",
             s->m->name);
    return buf;
}

static const mig_row *mig_find_row(const mig_ctx *m, const char *component, int version)
{
    for (size_t i = 0; i < m->nrows; i++)
        if (m->rows[i].version == version && strcmp(m->rows[i].component, component) == 0)
            return &m->rows[i];
    return NULL;
}

/* false (and the start-up stops) when the recorded checksum differs from the file's. */
static bool mig_check_same(mig_ctx *m, const mig_step *s, const char *recorded)
{
    if (strcmp(recorded, s->m->checksum) == 0) return true;
    char label[300];
    mig_fail(m,
             "migration %s was changed after it was applied (schema %s: checksum %.12s..., "
             "recorded %.12s...); restore the applied version and put the change in a new "
             "migration",
             step_label(s, label, sizeof label), m->schema, s->m->checksum, recorded);
    return false;
}

/* ---- phase 2: one transaction per pending migration */

static void mig_step_committed(const db_result *r, void *data)
{
    mig_ctx *m = data;
    const mig_step *s = &m->steps[m->i];
    char label[300];
    if (!db_result_ok(r)) {
        mig_fail(m, "migration %s failed at COMMIT: %s", step_label(s, label, sizeof label),
                 db_result_error(r));
        return;
    }
    m->applied++;
    core_log_info("migration applied", CORE_F_STR("migration", s->m->name),
                  CORE_F_STR("component", s->component), CORE_F_STR("schema", m->schema));
    m->i++;
    mig_next(m);
}

static void mig_step_recorded(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    char label[300];
    if (!db_result_ok(r)) {
        mig_fail(m, "recording migration %s failed: %s",
                 step_label(&m->steps[m->i], label, sizeof label), db_result_error(r));
        return;
    }
    m->txn = NULL;
    db_commit(t, mig_step_committed, m);
}

static void mig_step_ran(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    const mig_step *s = &m->steps[m->i];
    char label[300];
    if (!db_result_ok(r)) {
        mig_fail(m, "migration %s failed: %s (SQLSTATE %s)", step_label(s, label, sizeof label),
                 db_result_error(r), db_result_sqlstate(r));
        return;
    }
    if (dbi_txn_status(t) != PQTRANS_INTRANS) {
        mig_fail(m,
                 "migration %s ended the transaction itself: remove BEGIN/COMMIT/ROLLBACK "
                 "from the file (each migration already runs in its own transaction)",
                 step_label(s, label, sizeof label));
        return;
    }
    char version[16];
    snprintf(version, sizeof version, "%d", s->m->version);
    const char *vals[4] = {s->component, version, s->m->name, s->m->checksum};
    db_txn_query(t, mig_record_sql, 4, vals, mig_step_recorded, m);
}

static void mig_step_checked(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    const mig_step *s = &m->steps[m->i];
    if (!db_result_ok(r)) {
        mig_fail(m, "reading schema_migrations failed: %s", db_result_error(r));
        return;
    }
    if (db_result_rows(r) > 0) {
        /* Another replica applied it while this one waited for the lock. */
        if (!mig_check_same(m, s, db_result_get(r, 0, "checksum"))) return;
        m->txn = NULL;
        m->i++;
        db_rollback(t, NULL, NULL);
        mig_next(m);
        return;
    }
    dbi_txn_script(t, s->m->sql, mig_step_ran, m);
}

static void mig_step_locked(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!db_result_ok(r)) {
        mig_fail(m, "taking the migration lock failed: %s", db_result_error(r));
        return;
    }
    const mig_step *s = &m->steps[m->i];
    char version[16];
    snprintf(version, sizeof version, "%d", s->m->version);
    const char *vals[2] = {s->component, version};
    db_txn_query(t, mig_one_sql, 2, vals, mig_step_checked, m);
}

static void mig_step_begun(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!t) {
        mig_fail(m, "cannot start a migration transaction: %s", db_result_error(r));
        return;
    }
    m->txn = t;
    db_txn_query(t, mig_lock_sql, 0, NULL, mig_step_locked, m);
}

static void mig_next(mig_ctx *m)
{
    while (m->i < m->nsteps) {
        const mig_step *s = &m->steps[m->i];
        const mig_row *row = mig_find_row(m, s->component, s->m->version);
        if (!row) {
            db_begin(m->pool, mig_step_begun, m);
            return;
        }
        if (!mig_check_same(m, s, row->checksum)) return;
        m->i++;
    }
    mig_done(m);
}

/* ---- phase 1: bootstrap schema_migrations and read what is applied */

static void mig_loaded_committed(const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!db_result_ok(r)) {
        mig_fail(m, "creating schema_migrations failed at COMMIT: %s", db_result_error(r));
        return;
    }
    /* Files that were applied and are gone are worth a warning, not a stop. */
    for (size_t i = 0; i < m->nrows; i++) {
        if (strcmp(m->rows[i].component, MIG_SERVICE) != 0) continue;
        bool found = false;
        for (size_t k = 0; k < m->nfiles && !found; k++)
            found = m->files[k].version == m->rows[i].version;
        if (!found)
            core_log_warn("applied migration has no file any more",
                          CORE_F_STR("migration", m->rows[i].name),
                          CORE_F_STR("schema", m->schema));
    }
    mig_next(m);
}

static void mig_loaded(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!db_result_ok(r)) {
        mig_fail(m, "reading schema_migrations failed: %s", db_result_error(r));
        return;
    }
    int n = db_result_rows(r);
    m->rows = calloc((size_t)n + 1, sizeof *m->rows);
    if (!m->rows) abort();
    for (int i = 0; i < n; i++) {
        mig_row *row = &m->rows[m->nrows++];
        int64_t v = 0;
        db_result_int64(r, i, 1, &v);
        row->version = (int)v;
        dbi_strlcpy(row->component, db_result_value(r, i, 0), sizeof row->component);
        dbi_strlcpy(row->name, db_result_value(r, i, 2), sizeof row->name);
        dbi_strlcpy(row->checksum, db_result_value(r, i, 3), sizeof row->checksum);
    }
    m->txn = NULL;
    db_commit(t, mig_loaded_committed, m);
}

static void mig_bootstrapped(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!db_result_ok(r)) {
        mig_fail(m, "creating schema_migrations in schema %s failed: %s", m->schema,
                 db_result_error(r));
        return;
    }
    db_txn_query(t, mig_applied_sql, 0, NULL, mig_loaded, m);
}

static void mig_first_locked(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!db_result_ok(r)) {
        mig_fail(m, "taking the migration lock failed: %s", db_result_error(r));
        return;
    }
    const char *schema = db_result_value(r, 0, 1);
    if (!schema) {
        mig_fail(m, "no schema to migrate: the search_path names no existing schema "
                    "(set DB_SEARCH_PATH or the role's search_path)");
        return;
    }
    dbi_strlcpy(m->schema, schema, sizeof m->schema);
    db_txn_query(t, mig_bootstrap_sql, 0, NULL, mig_bootstrapped, m);
}

static void mig_first_begun(db_txn *t, const db_result *r, void *data)
{
    mig_ctx *m = data;
    if (!t) {
        mig_fail(m, "cannot start the migration transaction: %s", db_result_error(r));
        return;
    }
    m->txn = t;
    db_txn_query(t, mig_lock_sql, 0, NULL, mig_first_locked, m);
}

/* Reports a failure found before any statement on the next loop iteration (the callback is
 * never called from inside db_migrate). */
static void mig_early_fail(const db_result *r, void *data)
{
    (void)r;
    mig_done(data);
}

void db_migrate(db_pool *p, const char *dir, db_migrate_cb cb, void *data)
{
    mig_ctx *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->pool = p;
    m->cb = cb;
    m->data = data;
    snprintf(m->schema, sizeof m->schema, "?");
    if (dir && !dbi_migrations_scan(dir, &m->files, &m->nfiles, m->err, sizeof m->err)) {
        char err[DBI_ERRLEN];
        dbi_work *w = dbi_work_new(p, DBI_W_QUERY, "", 0, NULL, NULL, NULL, err, sizeof err);
        w->qcb = mig_early_fail;
        w->data = m;
        dbi_defer(p, w, NULL, NULL);
        return;
    }
    size_t nb = 0;
    const dbi_migration *b = dbi_builtin_migrations(&nb);
    m->nsteps = nb + m->nfiles;
    m->steps = calloc(m->nsteps + 1, sizeof *m->steps);
    if (!m->steps) abort();
    for (size_t i = 0; i < nb; i++)
        m->steps[i] = (mig_step){MIG_PLATFORM, &b[i]};
    for (size_t i = 0; i < m->nfiles; i++)
        m->steps[nb + i] = (mig_step){MIG_SERVICE, &m->files[i]};
    db_begin(p, mig_first_begun, m);
}
