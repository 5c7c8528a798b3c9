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

int main(void)
{
    core_log_init("db-integration", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_roundtrip),
        cmocka_unit_test(test_bad_sql_reports_clearly),
        cmocka_unit_test(test_connection_killed_under_statement),
        cmocka_unit_test(test_connection_killed_in_transaction),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_queue_beyond_pool_size),
        cmocka_unit_test(test_acquire_timeout),
        cmocka_unit_test(test_commit_and_rollback),
        cmocka_unit_test(test_error_in_transaction),
        cmocka_unit_test(test_close_drains),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
