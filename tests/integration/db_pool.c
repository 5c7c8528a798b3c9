/*
 * libs/db against a real PostgreSQL: statements, parameters, errors, a connection killed
 * under a statement, timeouts, queueing beyond the pool size, transactions, draining.
 * Needs PLATFORM_TEST_DATABASE_URL (skips without it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "db_internal.h" /* dbi_query_binary, dbi_result_double */
#include "db_test.h"

typedef struct env {
    uv_loop_t loop;
    db_pool *admin; /* the role's own schema: creates and drops the test schema */
    db_pool *pool;  /* search_path = the test schema */
    char schema[64];
} env;

static int setup(void **state)
{
    if (!ts_env("PLATFORM_TEST_DATABASE_URL")) {
        *state = NULL;
        return 0;
    }
    env *e = calloc(1, sizeof *e);
    uv_loop_init(&e->loop);
    e->admin = dbt_pool(&e->loop, NULL, 1);
    dbt_schema_name(e->schema, sizeof e->schema, "dbpool");
    if (!dbt_schema_exec(&e->loop, e->admin, e->schema, true)) return -1;
    e->pool = dbt_pool(&e->loop, e->schema, 2);
    dbt_res r =
        dbt_query(&e->loop, e->pool,
                  "CREATE TABLE items (id bigint PRIMARY KEY, name text, blob bytea)", 0, NULL);
    if (!r.ok) {
        fprintf(stderr, "setup: %s\n", r.error);
        return -1;
    }
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    if (!e) return 0;
    dbt_drop_schema(&e->loop, e->admin, e->pool, e->schema);
    dbt_close_admin_and_loop(&e->loop, e->admin);
    free(e);
    return 0;
}

#define ENV_OR_SKIP() DBT_ENV_OR_SKIP("PLATFORM_TEST_DATABASE_URL")

/* ---------------------------------------------------------------- statements */

typedef struct rows_seen {
    bool done;
    int rows;
    char name[64];
    bool null_name;
    uint8_t blob[16];
    size_t blob_len;
    int64_t id;
    int id_col;
} rows_seen;

static void on_rows(const db_result *r, void *data)
{
    rows_seen *s = data;
    s->done = true;
    assert_true(db_result_ok(r));
    s->rows = db_result_rows(r);
    s->id_col = db_result_column(r, "id");
    db_result_int64(r, 0, s->id_col, &s->id);
    const char *name = db_result_get(r, 0, "name");
    s->null_name = name == NULL;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    size_t len = 0;
    const uint8_t *b = db_result_bytea(r, 0, db_result_column(r, "blob"), &len);
    if (b && len <= sizeof s->blob) memcpy(s->blob, b, len);
    s->blob_len = len;
}

static bool rows_done(void *data)
{
    return ((rows_seen *)data)->done;
}

static void test_params_roundtrip(void **state)
{
    ENV_OR_SKIP();
    assert_true(db_pool_ready(e->pool));
    /* text, a value with quotes (never pasted into SQL), binary bytea with NUL bytes */
    const uint8_t blob[] = {0, 1, 0x27, 0, 0xff};
    const char *vals[3] = {"1", "O'Brien \"; DROP TABLE items; --", (const char *)blob};
    int lengths[3] = {0, 0, sizeof blob};
    int formats[3] = {0, 0, 1};
    dbt_res ins = {0};
    db_query_params(e->pool, "INSERT INTO items (id, name, blob) VALUES ($1, $2, $3)", 3, vals,
                    lengths, formats, dbt_cb, &ins);
    assert_true(ts_run_until(&e->loop, dbt_is_done, &ins, DBT_TIMEOUT_MS));
    assert_true(ins.ok);
    assert_int_equal(ins.affected, 1);

    const char *vals2[3] = {"2", NULL, NULL};
    dbt_res ins2 = dbt_query(&e->loop, e->pool,
                             "INSERT INTO items (id, name, blob) VALUES ($1, $2, $3)", 3, vals2);
    assert_true(ins2.ok);

    rows_seen s = {0};
    const char *id1[1] = {"1"};
    db_query(e->pool, "SELECT name, blob, id FROM items WHERE id = $1", 1, id1, on_rows, &s);
    assert_true(ts_run_until(&e->loop, rows_done, &s, DBT_TIMEOUT_MS));
    assert_int_equal(s.rows, 1);
    assert_int_equal(s.id_col, 2);
    assert_int_equal(s.id, 1);
    assert_string_equal(s.name, vals[1]);
    assert_int_equal(s.blob_len, sizeof blob);
    assert_memory_equal(s.blob, blob, sizeof blob);

    rows_seen s2 = {0};
    const char *id2[1] = {"2"};
    db_query(e->pool, "SELECT name, blob, id FROM items WHERE id = $1", 1, id2, on_rows, &s2);
    assert_true(ts_run_until(&e->loop, rows_done, &s2, DBT_TIMEOUT_MS));
    assert_true(s2.null_name);
    assert_int_equal(s2.blob_len, 0);

    /* search_path from the configuration */
    dbt_res sp = dbt_query(&e->loop, e->pool, "SELECT current_schema()", 0, NULL);
    assert_string_equal(sp.first, e->schema);
    dbt_res upd = dbt_query(&e->loop, e->pool, "UPDATE items SET name = 'x'", 0, NULL);
    assert_int_equal(upd.affected, 2);
}

/* ---------------------------------------------------------------- binary results */

typedef struct binary_seen {
    bool done, ok;
    char error[256];
    int64_t big, neg, small, part;
    bool part_null;
    double f8, f4;
    uint8_t all[256];
    size_t all_len;
    int all_wire_len;
    bool empty_nonnull;
    size_t empty_len;
    bool blob_null;
    size_t big_len;
    bool big_ok;
    char txt[64];
    int txt_len;
    char js[64];
    bool int_of_text;
} binary_seen;

static void on_binary(const db_result *r, void *data)
{
    binary_seen *s = data;
    s->done = true;
    s->ok = db_result_ok(r);
    snprintf(s->error, sizeof s->error, "%s", s->ok ? "" : db_result_error(r));
    if (!s->ok) return;
    db_result_int64(r, 0, db_result_column(r, "big"), &s->big);
    db_result_int64(r, 0, db_result_column(r, "neg"), &s->neg);
    db_result_int64(r, 0, db_result_column(r, "small"), &s->small);
    s->part_null = !db_result_int64(r, 0, db_result_column(r, "part"), &s->part);
    dbi_result_double(r, 0, db_result_column(r, "f8"), &s->f8);
    dbi_result_double(r, 0, db_result_column(r, "f4"), &s->f4);
    size_t len = 0;
    int all = db_result_column(r, "all_bytes");
    const uint8_t *b = db_result_bytea(r, 0, all, &len);
    if (b && len <= sizeof s->all) memcpy(s->all, b, len);
    s->all_len = len;
    s->all_wire_len = db_result_length(r, 0, all);
    s->empty_nonnull = db_result_bytea(r, 0, db_result_column(r, "empty"), &s->empty_len) != NULL;
    s->blob_null = db_result_bytea(r, 0, db_result_column(r, "nul"), &len) == NULL;
    b = db_result_bytea(r, 0, db_result_column(r, "mb"), &s->big_len);
    s->big_ok = b != NULL;
    for (size_t i = 0; b && i < s->big_len; i++)
        if (b[i] != (i % 2 ? 0xff : 0x00)) s->big_ok = false;
    int txt = db_result_column(r, "txt");
    snprintf(s->txt, sizeof s->txt, "%s", db_result_value(r, 0, txt));
    s->txt_len = db_result_length(r, 0, txt);
    snprintf(s->js, sizeof s->js, "%s", db_result_get(r, 0, "js"));
    int64_t v = 0;
    s->int_of_text = db_result_int64(r, 0, db_result_column(r, "num_text"), &v);
}

static bool binary_done(void *data)
{
    return ((binary_seen *)data)->done;
}

/* dbi_query_binary (the outbox relay's select): the server's binary representations read back
 * by the accessors; a text-format statement on the same pool is unaffected. */
static void test_binary_results(void **state)
{
    ENV_OR_SKIP();
    const char *vals[2] = {"-2147483648", "1000000"};
    binary_seen s = {0};
    dbi_query_binary(
        e->pool,
        "SELECT 5000000000::int8 AS big, $1::int4 AS neg, (-32768)::int2 AS small, "
        "NULL::int4 AS part, 1.5::float8 AS f8, (-0.25)::float4 AS f4, "
        "(SELECT string_agg(set_byte('\\x00'::bytea, 0, i), ''::bytea ORDER BY i) "
        "FROM generate_series(0, 255) i) AS all_bytes, ''::bytea AS empty, NULL::bytea AS nul, "
        "decode(repeat('00ff', $2::int), 'hex') AS mb, 't\xc3\xbcxt'::text AS txt, "
        "'[{\"a\": 1}]'::jsonb::text AS js, '42'::text AS num_text",
        2, vals, on_binary, &s);
    assert_true(ts_run_until(&e->loop, binary_done, &s, DBT_TIMEOUT_MS));
    if (!s.ok) fprintf(stderr, "binary select: %s\n", s.error);
    assert_true(s.ok);
    assert_true(s.big == INT64_C(5000000000));
    assert_true(s.neg == INT32_MIN);
    assert_int_equal(s.small, -32768);
    assert_true(s.part_null);
    assert_true(s.f8 == 1.5);
    assert_true(s.f4 == -0.25);
    assert_int_equal(s.all_len, 256);
    assert_int_equal(s.all_wire_len, 256); /* as received: not "\\x0001..." (514) */
    for (int i = 0; i < 256; i++)
        assert_int_equal(s.all[i], i);
    assert_true(s.empty_nonnull);
    assert_int_equal(s.empty_len, 0);
    assert_true(s.blob_null);
    assert_int_equal(s.big_len, 2000000);
    assert_true(s.big_ok);
    assert_string_equal(s.txt, "t\xc3\xbcxt"); /* UTF-8, NUL-terminated by libpq */
    assert_int_equal(s.txt_len, 5);
    assert_string_equal(s.js, "[{\"a\": 1}]");
    assert_false(s.int_of_text); /* a binary text column is not an integer */

    /* the pool's next statement is text again */
    dbt_res t = dbt_query(&e->loop, e->pool, "SELECT 5000000000::int8", 0, NULL);
    assert_true(t.ok);
    assert_string_equal(t.first, "5000000000");
}

static void test_bad_sql_reports_clearly(void **state)
{
    ENV_OR_SKIP();
    core_metric *errors = core_metric_counter(core_metrics_default(), "db_queries_total",
                                              "Database statements finished, by result", "result");
    double before = core_metric_value(errors, "error");
    if (before != before) before = 0; /* NaN: no series yet */
    dbt_res r = dbt_query(&e->loop, e->pool, "SELEC 1", 0, NULL);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "42601");
    assert_non_null(strstr(r.error, "syntax error"));
    r = dbt_query(&e->loop, e->pool, "SELECT * FROM no_such_table", 0, NULL);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "42P01");
    assert_non_null(strstr(r.error, "no_such_table"));
    /* wrong parameter count: the server says so */
    const char *vals[1] = {"1"};
    r = dbt_query(&e->loop, e->pool, "SELECT $1::int + $2::int", 1, vals);
    assert_false(r.ok);
    /* a value that does not parse */
    const char *notint[1] = {"abc"};
    r = dbt_query(&e->loop, e->pool, "SELECT $1::int", 1, notint);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "22P02");
    /* two statements in one call: refused by the extended protocol */
    r = dbt_query(&e->loop, e->pool, "SELECT 1; SELECT 2", 0, NULL);
    assert_false(r.ok);
    assert_true(core_metric_value(errors, "error") >= before + 5);
    /* the pool still works */
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT 41 + 1", 0, NULL), 42);
}

/* ---------------------------------------------------------------- broken connections */

static void test_connection_killed_under_statement(void **state)
{
    ENV_OR_SKIP();
    db_pool *one = dbt_pool(&e->loop, e->schema, 1);
    dbt_res pid = dbt_query(&e->loop, one, "SELECT pg_backend_pid()", 0, NULL);
    assert_true(pid.ok);
    dbt_res slow = {0};
    db_query(one, "SELECT pg_sleep(20)", 0, NULL, dbt_cb, &slow);
    ts_run_for(&e->loop, 200);
    const char *vals[1] = {pid.first};
    dbt_res kill = dbt_query(&e->loop, e->pool, "SELECT pg_terminate_backend($1::int)", 1, vals);
    assert_true(kill.ok);
    assert_string_equal(kill.first, "t");
    int64_t t0 = core_mono_ns();
    assert_true(ts_run_until(&e->loop, dbt_is_done, &slow, 5000));
    assert_true(core_mono_ns() - t0 < (int64_t)5 * 1000000000);
    assert_false(slow.ok);
    assert_string_equal(slow.sqlstate, "08006");
    assert_non_null(strstr(slow.error, "connection lost"));
    assert_non_null(strstr(slow.error, "terminating connection"));
    /* reconnects by itself */
    assert_int_equal(dbt_int(&e->loop, one, "SELECT 7", 0, NULL), 7);

    /* an idle connection killed: noticed, replaced, the next statement works */
    pid = dbt_query(&e->loop, one, "SELECT pg_backend_pid()", 0, NULL);
    vals[0] = pid.first;
    kill = dbt_query(&e->loop, e->pool, "SELECT pg_terminate_backend($1::int)", 1, vals);
    assert_string_equal(kill.first, "t");
    ts_run_for(&e->loop, 300);
    dbt_res again = dbt_query(&e->loop, one, "SELECT pg_backend_pid()", 0, NULL);
    assert_true(again.ok);
    assert_string_not_equal(again.first, pid.first);
    dbt_pool_close(&e->loop, one);
}

typedef struct txn_flow {
    bool done;
    bool begun;
    dbt_res q1, q2, end;
} txn_flow;

static void flow_q1(db_txn *t, const db_result *r, void *data)
{
    (void)t;
    dbt_fill(&((txn_flow *)data)->q1, r);
}

static void flow_q2(db_txn *t, const db_result *r, void *data)
{
    (void)t;
    dbt_fill(&((txn_flow *)data)->q2, r);
}

static void flow_end(const db_result *r, void *data)
{
    txn_flow *f = data;
    dbt_fill(&f->end, r);
    f->done = true;
}

static bool flow_done(void *data)
{
    return ((txn_flow *)data)->done;
}

static void flow_begin_sleep(db_txn *t, const db_result *r, void *data)
{
    txn_flow *f = data;
    assert_non_null(t);
    assert_true(db_result_ok(r));
    f->begun = true;
    db_txn_query(t, "SELECT pg_backend_pid()", 0, NULL, flow_q1, f);
    db_txn_query(t, "SELECT pg_sleep(20)", 0, NULL, flow_q2, f);
    db_commit(t, flow_end, f);
}

static void test_connection_killed_in_transaction(void **state)
{
    ENV_OR_SKIP();
    db_pool *one = dbt_pool(&e->loop, e->schema, 1);
    txn_flow f = {0};
    db_begin(one, flow_begin_sleep, &f);
    assert_true(ts_run_until(&e->loop, dbt_is_done, &f.q1, DBT_TIMEOUT_MS));
    ts_run_for(&e->loop, 100);
    const char *vals[1] = {f.q1.first};
    dbt_res kill = dbt_query(&e->loop, e->pool, "SELECT pg_terminate_backend($1::int)", 1, vals);
    assert_string_equal(kill.first, "t");
    assert_true(ts_run_until(&e->loop, flow_done, &f, 5000));
    assert_false(f.q2.ok);
    assert_string_equal(f.q2.sqlstate, "08006");
    assert_false(f.end.ok); /* the commit cannot have happened */
    assert_non_null(strstr(f.end.error, "connection lost"));
    /* the pool's only connection came back */
    assert_int_equal(dbt_int(&e->loop, one, "SELECT 3", 0, NULL), 3);
    dbt_pool_close(&e->loop, one);
}

static void test_statement_timeout(void **state)
{
    ENV_OR_SKIP();
    db_config cfg = {
        .url = ts_env("PLATFORM_TEST_DATABASE_URL"),
        .pool_size = 1,
        .search_path = e->schema,
        .statement_timeout_ms = 100,
    };
    char err[256];
    db_pool *p = db_pool_new(&e->loop, &cfg, err, sizeof err);
    assert_non_null(p);
    dbt_res r = dbt_query(&e->loop, p, "SELECT pg_sleep(2)", 0, NULL);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "57014");
    assert_non_null(strstr(r.error, "statement timeout"));
    dbt_res st = dbt_query(&e->loop, p, "SHOW statement_timeout", 0, NULL);
    assert_string_equal(st.first, "100ms");
    dbt_pool_close(&e->loop, p);
}

/* ---------------------------------------------------------------- queueing */

typedef struct fanout {
    int done;
    int ok;
    int order[16];
} fanout;

typedef struct fan_item {
    fanout *f;
    int index;
} fan_item;

static void on_fan(const db_result *r, void *data)
{
    fan_item *it = data;
    if (db_result_ok(r)) it->f->ok++;
    it->f->order[it->f->done++] = it->index;
}

static bool fan_done(void *data)
{
    return ((fanout *)data)->done == 10;
}

static void test_queue_beyond_pool_size(void **state)
{
    ENV_OR_SKIP();
    assert_int_equal(db_pool_connected(e->pool), 2);
    fanout f = {0};
    fan_item items[10];
    int64_t t0 = core_mono_ns();
    for (int i = 0; i < 10; i++) {
        items[i] = (fan_item){&f, i};
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *vals[1] = {v};
        db_query(e->pool, "SELECT pg_sleep(0.1), $1::int", 1, vals, on_fan, &items[i]);
    }
    /* two went to the connections, eight wait in FIFO order */
    assert_int_equal(db_pool_waiting(e->pool), 8);
    core_metric *waiting = core_metric_gauge(core_metrics_default(), "db_pool_waiting",
                                             "Statements waiting for a database connection", NULL);
    assert_true(core_metric_value(waiting) >= 8);
    assert_true(ts_run_until(&e->loop, fan_done, &f, DBT_TIMEOUT_MS));
    int64_t ms = (core_mono_ns() - t0) / 1000000;
    assert_int_equal(f.ok, 10);
    assert_true(ms >= 480); /* 10 x 100 ms over 2 connections */
    assert_int_equal(db_pool_waiting(e->pool), 0);
    /* FIFO: the first two submitted finish first, the last two last */
    assert_true(f.order[0] <= 1 && f.order[1] <= 1);
    assert_true(f.order[8] >= 8 && f.order[9] >= 8);
}

static void test_acquire_timeout(void **state)
{
    ENV_OR_SKIP();
    db_config cfg = {
        .url = ts_env("PLATFORM_TEST_DATABASE_URL"),
        .pool_size = 1,
        .search_path = e->schema,
        .acquire_timeout_ms = 200,
    };
    char err[256];
    db_pool *p = db_pool_new(&e->loop, &cfg, err, sizeof err);
    assert_non_null(p);
    assert_int_equal(dbt_int(&e->loop, p, "SELECT 1", 0, NULL), 1);
    dbt_res slow = {0}, waiting = {0};
    db_query(p, "SELECT pg_sleep(1)", 0, NULL, dbt_cb, &slow);
    db_query(p, "SELECT 2", 0, NULL, dbt_cb, &waiting);
    assert_true(ts_run_until(&e->loop, dbt_is_done, &waiting, 5000));
    assert_false(waiting.ok);
    assert_string_equal(waiting.sqlstate, "08001");
    assert_non_null(strstr(waiting.error, "within 200 ms"));
    assert_true(ts_run_until(&e->loop, dbt_is_done, &slow, 5000));
    assert_true(slow.ok);
    dbt_pool_close(&e->loop, p);
}

/* ---------------------------------------------------------------- transactions */

typedef struct txn_case {
    const char *id;
    bool commit;
    txn_flow f;
} txn_case;

static void case_begin(db_txn *t, const db_result *r, void *data)
{
    txn_case *c = data;
    assert_non_null(t);
    assert_true(db_result_ok(r));
    const char *vals[2] = {c->id, "in txn"};
    db_txn_query(t, "INSERT INTO items (id, name) VALUES ($1, $2)", 2, vals, flow_q1, &c->f);
    if (c->commit)
        db_commit(t, flow_end, &c->f);
    else
        db_rollback(t, flow_end, &c->f);
}

static void test_commit_and_rollback(void **state)
{
    ENV_OR_SKIP();
    txn_case a = {.id = "100", .commit = false};
    db_begin(e->pool, case_begin, &a);
    assert_true(ts_run_until(&e->loop, flow_done, &a.f, DBT_TIMEOUT_MS));
    assert_true(a.f.q1.ok);
    assert_true(a.f.end.ok);
    txn_case b = {.id = "101", .commit = true};
    db_begin(e->pool, case_begin, &b);
    assert_true(ts_run_until(&e->loop, flow_done, &b.f, DBT_TIMEOUT_MS));
    assert_true(b.f.end.ok);
    assert_int_equal(
        dbt_int(&e->loop, e->pool, "SELECT count(*) FROM items WHERE id IN (100, 101)", 0, NULL),
        1);
    assert_int_equal(
        dbt_int(&e->loop, e->pool, "SELECT count(*) FROM items WHERE id = 101", 0, NULL), 1);
}

static void begin_failing(db_txn *t, const db_result *r, void *data)
{
    txn_flow *f = data;
    assert_true(db_result_ok(r));
    const char *vals[2] = {"200", "first"};
    db_txn_query(t, "INSERT INTO items (id, name) VALUES ($1, $2)", 2, vals, NULL, NULL);
    /* duplicate key: the transaction is aborted from here on */
    db_txn_query(t, "INSERT INTO items (id, name) VALUES ($1, $2)", 2, vals, flow_q1, f);
    db_txn_query(t, "SELECT 1", 0, NULL, flow_q2, f);
    db_commit(t, flow_end, f);
}

static void test_error_in_transaction(void **state)
{
    ENV_OR_SKIP();
    db_pool *one = dbt_pool(&e->loop, e->schema, 1);
    txn_flow f = {0};
    db_begin(one, begin_failing, &f);
    assert_true(ts_run_until(&e->loop, flow_done, &f, DBT_TIMEOUT_MS));
    assert_false(f.q1.ok);
    assert_string_equal(f.q1.sqlstate, "23505");
    assert_false(f.q2.ok);
    assert_string_equal(f.q2.sqlstate, "25P02");
    assert_non_null(strstr(f.q2.error, "aborted by an earlier error"));
    assert_false(f.end.ok);
    assert_non_null(strstr(f.end.error, "rolled back"));
    /* nothing committed, and the only connection is back in the pool outside the aborted
     * transaction (inside it, this statement would fail with 25P02) */
    assert_int_equal(dbt_int(&e->loop, one, "SELECT count(*) FROM items WHERE id = 200", 0, NULL),
                     0);
    dbt_pool_close(&e->loop, one);
}

/* ---------------------------------------------------------------- draining */

static void test_close_drains(void **state)
{
    ENV_OR_SKIP();
    db_pool *one = dbt_pool(&e->loop, e->schema, 1);
    assert_int_equal(dbt_int(&e->loop, one, "SELECT 1", 0, NULL), 1);
    dbt_res inflight = {0}, queued = {0}, after = {0};
    db_query(one, "SELECT pg_sleep(0.2), 5", 0, NULL, dbt_cb, &inflight);
    db_query(one, "SELECT 6", 0, NULL, dbt_cb, &queued);
    bool closed = false;
    db_pool_close(one, ts_set_flag, &closed);
    db_query(one, "SELECT 7", 0, NULL, dbt_cb, &after);
    assert_false(db_pool_ready(one));
    assert_true(ts_run_until(&e->loop, ts_flag_set, &closed, DBT_TIMEOUT_MS));
    assert_true(inflight.ok); /* in flight: finished */
    assert_false(queued.ok);  /* waiting: failed */
    assert_string_equal(queued.sqlstate, "57P01");
    assert_false(after.ok);
    assert_non_null(strstr(after.error, "closing"));
}

/* ---------------------------------------------------------------- COPY FROM STDIN */

typedef struct copy_case {
    const char *sql;
    char *data; /* malloc'ed; freed right after db_txn_copy_in (which copies it) */
    size_t len;
    const char *then; /* a statement after the copy in the same transaction, or NULL */
    bool commit;
    bool cb_inside_call;
    txn_flow f; /* q1: the copy, q2: then, end: commit or rollback */
} copy_case;

static void copy_begin(db_txn *t, const db_result *r, void *data)
{
    copy_case *c = data;
    assert_non_null(t);
    assert_true(db_result_ok(r));
    db_txn_copy_in(t, c->sql, c->data, c->len, flow_q1, &c->f);
    if (c->f.q1.done) c->cb_inside_call = true;
    free(c->data); /* the call copied it */
    c->data = NULL;
    if (c->then) db_txn_query(t, c->then, 0, NULL, flow_q2, &c->f);
    if (c->commit)
        db_commit(t, flow_end, &c->f);
    else
        db_rollback(t, flow_end, &c->f);
}

/* One transaction: BEGIN, the copy, c->then, COMMIT or ROLLBACK. data (len bytes) is copied. */
static void run_copy(env *e, db_pool *p, copy_case *c, const void *data, size_t len)
{
    c->data = malloc(len ? len : 1);
    assert_non_null(c->data);
    if (len) memcpy(c->data, data, len);
    c->len = len;
    db_begin(p, copy_begin, c);
    assert_true(ts_run_until(&e->loop, flow_done, &c->f, DBT_TIMEOUT_MS));
    assert_false(c->cb_inside_call);
    free(c->data);
    c->data = NULL;
}

static void put_be(core_buf *b, uint64_t v, int bytes)
{
    uint8_t out[8];
    for (int i = 0; i < bytes; i++)
        out[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    core_buf_append(b, out, (size_t)bytes);
}

/* PGCOPY binary data for rows (a bigint, b bytea): a = first .. first + n - 1, b = blob_len
 * bytes, byte j of row a being (a * 31 + j) mod 256. */
static void copy_binary_rows(core_buf *b, int64_t first, int n, size_t blob_len)
{
    core_buf_append(b, "PGCOPY\n\377\r\n\0", 11);
    put_be(b, 0, 4); /* flags */
    put_be(b, 0, 4); /* header extension length */
    uint8_t *blob = malloc(blob_len);
    assert_non_null(blob);
    for (int i = 0; i < n; i++) {
        int64_t a = first + i;
        put_be(b, 2, 2); /* fields */
        put_be(b, 8, 4);
        put_be(b, (uint64_t)a, 8);
        for (size_t j = 0; j < blob_len; j++)
            blob[j] = (uint8_t)((uint64_t)a * 31 + j);
        put_be(b, blob_len, 4);
        core_buf_append(b, blob, blob_len);
    }
    put_be(b, 0xffff, 2); /* trailer: -1 */
    free(blob);
}

static void test_copy_in_text_and_binary(void **state)
{
    ENV_OR_SKIP();
    assert_true(dbt_query(&e->loop, e->pool,
                          "CREATE TABLE copy_text (a bigint PRIMARY KEY, b text)", 0, NULL)
                    .ok);
    assert_true(dbt_query(&e->loop, e->pool,
                          "CREATE TABLE copy_bin (a bigint PRIMARY KEY, b bytea NOT NULL)", 0, NULL)
                    .ok);

    /* text: a tab escaped inside a value, a NULL */
    static const char text[] = "1\tone\n2\ttwo\\tand a tab\n3\t\\N\n4\tfour\n";
    copy_case t = {.sql = "COPY copy_text (a, b) FROM STDIN",
                   .then = "SELECT count(*) FROM copy_text",
                   .commit = true};
    run_copy(e, e->pool, &t, text, sizeof text - 1);
    assert_true(t.f.q1.ok);
    assert_int_equal(t.f.q1.affected, 4);
    assert_string_equal(t.f.q2.first, "4"); /* the rows are there, in the transaction */
    assert_true(t.f.end.ok);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT count(*) FROM copy_text", 0, NULL), 4);
    assert_int_equal(dbt_int(&e->loop, e->pool,
                             "SELECT count(*) FROM copy_text WHERE b IS NULL AND a = 3", 0, NULL),
                     1);
    dbt_res two = dbt_query(&e->loop, e->pool, "SELECT b FROM copy_text WHERE a = 2", 0, NULL);
    assert_string_equal(two.first, "two\tand a tab");

    /* binary: 8000 rows of 1000 bytes (8 MB: many chunks, many socket writes). The server
     * pauses at the first row, so the socket fills up and the rest waits for writable. */
    assert_true(dbt_query(&e->loop, e->pool,
                          "CREATE FUNCTION copy_pause() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END$$",
                          0, NULL)
                    .ok);
    assert_true(dbt_query(&e->loop, e->pool,
                          "CREATE TRIGGER copy_bin_pause BEFORE INSERT ON copy_bin FOR EACH ROW "
                          "WHEN (NEW.a = 1) EXECUTE FUNCTION copy_pause()",
                          0, NULL)
                    .ok);
    enum { ROWS = 8000, BLOB = 1000 };
    core_buf bin = {0};
    copy_binary_rows(&bin, 1, ROWS, BLOB);
    assert_true(bin.len > (size_t)ROWS * BLOB);
    copy_case c = {.sql = "COPY copy_bin (a, b) FROM STDIN (FORMAT binary)", .commit = true};
    run_copy(e, e->pool, &c, bin.data, bin.len);
    core_buf_free(&bin);
    assert_true(c.f.q1.ok);
    assert_int_equal(c.f.q1.affected, ROWS);
    assert_true(c.f.end.ok);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT count(*) FROM copy_bin", 0, NULL), ROWS);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT sum(a) FROM copy_bin", 0, NULL),
                     (int64_t)ROWS * (ROWS + 1) / 2);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT sum(length(b)) FROM copy_bin", 0, NULL),
                     (int64_t)ROWS * BLOB);
    /* the bytes: one per row, at a position that moves with the row */
    int64_t want = 0;
    for (int64_t a = 1; a <= ROWS; a++)
        want += (int64_t)(uint8_t)((uint64_t)a * 31 + (uint64_t)(a % BLOB));
    assert_int_equal(dbt_int(&e->loop, e->pool,
                             "SELECT sum(get_byte(b, (a % 1000)::int)) FROM copy_bin", 0, NULL),
                     want);

    /* no data at all: a COPY of nothing */
    copy_case none = {.sql = "COPY copy_text (a, b) FROM STDIN", .commit = true};
    run_copy(e, e->pool, &none, "", 0);
    assert_true(none.f.q1.ok);
    assert_int_equal(none.f.q1.affected, 0);
    assert_true(none.f.end.ok);
}

/* db_txn_borrow: while on, COPY data and binary parameters are read where the caller keeps
 * them when the statement goes out (a change made before then shows), text parameters are
 * copied; once off, binary parameters are copied again. */
typedef struct borrow_case {
    char copy[16];
    uint8_t bin_on[4], bin_off[4];
    char text[4];
    txn_flow f; /* q1: the copy, q2: borrowed binary + text, end: the commit */
    dbt_res q3; /* binary after borrowing ended */
} borrow_case;

static void borrow_q3(db_txn *t, const db_result *r, void *data)
{
    (void)t;
    dbt_fill(&((borrow_case *)data)->q3, r);
}

static void borrow_begin(db_txn *t, const db_result *r, void *data)
{
    borrow_case *c = data;
    assert_non_null(t);
    assert_true(db_result_ok(r));
    db_txn_borrow(t, true);
    db_txn_copy_in(t, "COPY copy_borrow (a, b) FROM STDIN", c->copy, strlen(c->copy), flow_q1,
                   &c->f);
    const char *v[] = {(const char *)c->bin_on, c->text};
    int len[] = {4, 0}, fmt[] = {1, 0};
    db_txn_query_params(t, "SELECT encode($1::bytea, 'escape') || $2::text", 2, v, len, fmt,
                        flow_q2, &c->f);
    db_txn_borrow(t, false);
    const char *v3[] = {(const char *)c->bin_off};
    int len3[] = {4}, fmt3[] = {1};
    db_txn_query_params(t, "SELECT encode($1::bytea, 'escape')", 1, v3, len3, fmt3, borrow_q3, c);
    /* nothing after the COPY statement itself has gone out yet (it waits for the server) */
    memcpy(c->copy, "1\tX\n2\tY\n", 8);
    memcpy(c->bin_on, "new!", 4);
    memcpy(c->bin_off, "new!", 4);
    memcpy(c->text, "new", 4);
    db_commit(t, flow_end, &c->f);
}

static void test_txn_borrow(void **state)
{
    ENV_OR_SKIP();
    assert_true(dbt_query(&e->loop, e->pool,
                          "CREATE TABLE copy_borrow (a bigint PRIMARY KEY, b text)", 0, NULL)
                    .ok);
    borrow_case c = {.copy = "1\tA\n2\tB\n", .bin_on = "old.", .bin_off = "old.", .text = "txt"};
    db_begin(e->pool, borrow_begin, &c);
    assert_true(ts_run_until(&e->loop, flow_done, &c.f, DBT_TIMEOUT_MS));
    assert_true(c.f.q1.ok);
    assert_int_equal(c.f.q1.affected, 2);
    assert_true(c.f.q2.ok);
    assert_string_equal(c.f.q2.first, "new!txt"); /* binary borrowed, text copied */
    assert_true(c.q3.ok);
    assert_string_equal(c.q3.first, "old."); /* copied: borrowing had ended */
    assert_true(c.f.end.ok);
    dbt_res rows = dbt_query(&e->loop, e->pool,
                             "SELECT string_agg(b, ',' ORDER BY a) FROM copy_borrow", 0, NULL);
    assert_string_equal(rows.first, "X,Y"); /* the COPY data was read where it was */
}

/* Text rows "a\trow a\n" for a = first .. first + n - 1. */
static void copy_text_rows(core_buf *b, int64_t first, int n)
{
    for (int i = 0; i < n; i++)
        core_buf_printf(b, "%lld\trow %lld\n", (long long)(first + i), (long long)(first + i));
}

/* A pool of one connection (every transaction runs in the same session) once ddl has run on
 * it; *pid is that session's backend pid. */
static db_pool *copy_one_conn(env *e, const char *ddl, dbt_res *pid)
{
    db_pool *one = dbt_pool(&e->loop, e->schema, 1);
    assert_non_null(one);
    dbt_res r = dbt_query(&e->loop, one, ddl, 0, NULL);
    if (!r.ok) fprintf(stderr, "%s: %s\n", ddl, r.error);
    assert_true(r.ok);
    *pid = dbt_query(&e->loop, one, "SELECT pg_backend_pid()", 0, NULL);
    assert_true(pid->ok);
    return one;
}

static void test_copy_in_unique_violation(void **state)
{
    ENV_OR_SKIP();
    dbt_res pid;
    db_pool *one = copy_one_conn(e, "CREATE TABLE copy_uniq (a bigint PRIMARY KEY, b text)", &pid);
    assert_true(
        dbt_query(&e->loop, one, "INSERT INTO copy_uniq (a, b) VALUES (7, 'before')", 0, NULL).ok);

    /* row 7 comes early and the server fails there, with megabytes still to come: it discards
     * them until the end of the copy */
    core_buf rows = {0};
    copy_text_rows(&rows, 1, 200000);
    copy_case c = {.sql = "COPY copy_uniq (a, b) FROM STDIN", .then = "SELECT 1"};
    run_copy(e, one, &c, rows.data, rows.len);
    core_buf_free(&rows);
    assert_false(c.f.q1.ok);
    assert_string_equal(c.f.q1.sqlstate, "23505");
    assert_non_null(strstr(c.f.q1.error, "duplicate key"));
    assert_false(c.f.q2.ok);
    assert_string_equal(c.f.q2.sqlstate, "25P02");
    assert_true(c.f.end.ok); /* the rollback */

    /* the same connection serves the next transaction */
    core_buf more = {0};
    copy_text_rows(&more, 1000, 3);
    copy_case next = {.sql = "COPY copy_uniq (a, b) FROM STDIN",
                      .then = "SELECT pg_backend_pid()",
                      .commit = true};
    run_copy(e, one, &next, more.data, more.len);
    core_buf_free(&more);
    assert_true(next.f.q1.ok);
    assert_int_equal(next.f.q1.affected, 3);
    assert_string_equal(next.f.q2.first, pid.first);
    assert_true(next.f.end.ok);
    assert_int_equal(dbt_int(&e->loop, one, "SELECT count(*) FROM copy_uniq", 0, NULL), 4);
    dbt_pool_close(&e->loop, one);
}

static void test_copy_in_malformed_data(void **state)
{
    ENV_OR_SKIP();
    dbt_res pid;
    db_pool *one = copy_one_conn(e, "CREATE TABLE copy_bad (a bigint PRIMARY KEY, b bytea)", &pid);

    /* binary data with a bad signature */
    core_buf bin = {0};
    copy_binary_rows(&bin, 1, 10, 16);
    bin.data[5] = 'X'; /* PGCOPX */
    copy_case sig = {.sql = "COPY copy_bad (a, b) FROM STDIN (FORMAT binary)",
                     .then = "SELECT 1",
                     .commit = true};
    run_copy(e, one, &sig, bin.data, bin.len);
    assert_false(sig.f.q1.ok);
    assert_string_equal(sig.f.q1.sqlstate, "22P04");
    assert_non_null(strstr(sig.f.q1.error, "signature"));
    assert_string_equal(sig.f.q2.sqlstate, "25P02");
    assert_false(sig.f.end.ok); /* the commit rolled back and reports the copy's error */
    assert_non_null(strstr(sig.f.end.error, "signature"));

    /* binary data cut short: no trailer, a row missing its last bytes */
    bin.data[5] = 'Y'; /* PGCOPY again */
    copy_case cut = {.sql = "COPY copy_bad (a, b) FROM STDIN (FORMAT binary)"};
    run_copy(e, one, &cut, bin.data, bin.len - 10);
    core_buf_free(&bin);
    assert_false(cut.f.q1.ok);
    assert_string_equal(cut.f.q1.sqlstate, "22P04");
    assert_non_null(strstr(cut.f.q1.error, "unexpected EOF"));
    assert_true(cut.f.end.ok);

    /* text rows with a column too many */
    static const char extra[] = "1\t\\\\x00\textra\n";
    copy_case txt = {.sql = "COPY copy_bad (a, b) FROM STDIN"};
    run_copy(e, one, &txt, extra, sizeof extra - 1);
    assert_false(txt.f.q1.ok);
    assert_string_equal(txt.f.q1.sqlstate, "22P04");
    assert_non_null(strstr(txt.f.q1.error, "extra data"));
    assert_true(txt.f.end.ok);

    /* not a COPY FROM STDIN: the data cannot be sent, which is an error */
    copy_case notcopy = {.sql = "SELECT 1", .then = "SELECT 2", .commit = true};
    run_copy(e, one, &notcopy, "1\tx\n", 4);
    assert_false(notcopy.f.q1.ok);
    assert_string_equal(notcopy.f.q1.sqlstate, "22023");
    assert_non_null(strstr(notcopy.f.q1.error, "not a COPY"));
    assert_string_equal(notcopy.f.q2.sqlstate, "25P02");
    assert_false(notcopy.f.end.ok);

    /* bad arguments: reported on the next iteration, the transaction aborted */
    copy_case nosql = {.sql = NULL, .commit = true};
    run_copy(e, one, &nosql, "x", 1);
    assert_false(nosql.f.q1.ok);
    assert_string_equal(nosql.f.q1.sqlstate, "22023");
    assert_false(nosql.f.end.ok);

    /* the same connection all along, and nothing was stored */
    dbt_res again = dbt_query(&e->loop, one, "SELECT pg_backend_pid()", 0, NULL);
    assert_string_equal(again.first, pid.first);
    assert_int_equal(dbt_int(&e->loop, one, "SELECT count(*) FROM copy_bad", 0, NULL), 0);

    /* COPY TO STDOUT is not supported: the connection is dropped, the pool reconnects */
    copy_case out = {.sql = "COPY copy_bad TO STDOUT"};
    run_copy(e, one, &out, "", 0);
    assert_false(out.f.q1.ok);
    assert_string_equal(out.f.q1.sqlstate, "08006");
    assert_non_null(strstr(out.f.q1.error, "COPY TO STDOUT is not supported"));
    assert_true(out.f.end.ok); /* nothing left to roll back */
    assert_int_equal(dbt_int(&e->loop, one, "SELECT 5", 0, NULL), 5);
    dbt_pool_close(&e->loop, one);
}

static void test_copy_in_connection_killed(void **state)
{
    ENV_OR_SKIP();
    dbt_res pid;
    db_pool *one = copy_one_conn(e, "CREATE TABLE copy_killed (a bigint, b text)", &pid);
    /* the server stops reading at the first row: the client is left with megabytes to send */
    assert_true(dbt_query(&e->loop, one,
                          "CREATE FUNCTION copy_slow() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$BEGIN PERFORM pg_sleep(20); RETURN NEW; END$$",
                          0, NULL)
                    .ok);
    assert_true(dbt_query(&e->loop, one,
                          "CREATE TRIGGER copy_killed_slow BEFORE INSERT ON copy_killed "
                          "FOR EACH ROW EXECUTE FUNCTION copy_slow()",
                          0, NULL)
                    .ok);
    core_buf rows = {0};
    copy_text_rows(&rows, 1, 1000000); /* about 17 MB */
    copy_case c = {.sql = "COPY copy_killed (a, b) FROM STDIN", .commit = true};
    c.data = core_buf_steal(&rows, &c.len); /* copy_begin frees it */
    db_begin(one, copy_begin, &c);
    ts_run_for(&e->loop, 500);
    assert_false(c.f.q1.done);
    const char *vals[1] = {pid.first};
    dbt_res kill = dbt_query(&e->loop, e->pool, "SELECT pg_terminate_backend($1::int)", 1, vals);
    assert_string_equal(kill.first, "t");
    assert_true(ts_run_until(&e->loop, flow_done, &c.f, 5000));
    assert_false(c.f.q1.ok);
    assert_string_equal(c.f.q1.sqlstate, "08006");
    assert_non_null(strstr(c.f.q1.error, "connection lost"));
    /* the real reason (a reset, or libpq's "server closed the connection"), not libuv's
     * EPOLLERR-as-EBADF */
    assert_null(strstr(c.f.q1.error, "bad file descriptor"));
    assert_false(c.f.end.ok);
    assert_non_null(strstr(c.f.end.error, "connection lost"));
    /* the pool's only connection came back */
    assert_int_equal(dbt_int(&e->loop, one, "SELECT 9", 0, NULL), 9);
    assert_int_equal(dbt_int(&e->loop, one, "SELECT count(*) FROM copy_killed", 0, NULL), 0);
    dbt_pool_close(&e->loop, one);
}

int main(void)
{
    core_log_init("db-integration", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_roundtrip),
        cmocka_unit_test(test_binary_results),
        cmocka_unit_test(test_bad_sql_reports_clearly),
        cmocka_unit_test(test_connection_killed_under_statement),
        cmocka_unit_test(test_connection_killed_in_transaction),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_queue_beyond_pool_size),
        cmocka_unit_test(test_acquire_timeout),
        cmocka_unit_test(test_commit_and_rollback),
        cmocka_unit_test(test_error_in_transaction),
        cmocka_unit_test(test_close_drains),
        cmocka_unit_test(test_copy_in_text_and_binary),
        cmocka_unit_test(test_copy_in_unique_violation),
        cmocka_unit_test(test_copy_in_malformed_data),
        cmocka_unit_test(test_copy_in_connection_killed),
        cmocka_unit_test(test_txn_borrow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
