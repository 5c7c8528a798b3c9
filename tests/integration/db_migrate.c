/*
 * db_migrate against a real PostgreSQL: built-ins first, numbered files in order, once;
 * idempotent reruns; a changed checksum refused; a failing migration rolled back; replicas
 * migrating at the same time. Needs PLATFORM_TEST_DATABASE_URL (skips without it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_test.h"

typedef struct env {
    uv_loop_t loop;
    db_pool *admin;
    db_pool *pool;
    char schema[64];
    char dir[64];
} env;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    *state = NULL;
    if (!ts_env("PLATFORM_TEST_DATABASE_URL")) return 0;
    env *e = calloc(1, sizeof *e);
    uv_loop_init(&e->loop);
    e->admin = dbt_pool(&e->loop, NULL, 1);
    dbt_schema_name(e->schema, sizeof e->schema, "dbmig");
    if (!dbt_schema_exec(&e->loop, e->admin, e->schema, true)) return -1;
    e->pool = dbt_pool(&e->loop, e->schema, 2);
    snprintf(e->dir, sizeof e->dir, "/tmp/db-migrate-XXXXXX");
    if (!mkdtemp(e->dir)) return -1;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    if (!e) return 0;
    dbt_drop_schema(&e->loop, e->admin, e->pool, e->schema);
    remove_dir(e->dir);
    dbt_close_admin_and_loop(&e->loop, e->admin);
    free(e);
    return 0;
}

#define ENV_OR_SKIP() DBT_ENV_OR_SKIP("PLATFORM_TEST_DATABASE_URL")

static int64_t count(env *e, const char *sql)
{
    return dbt_int(&e->loop, e->pool, sql, 0, NULL);
}

static void test_apply_once_then_idempotent(void **state)
{
    ENV_OR_SKIP();
    write_file(e->dir, "001_items.sql",
               "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);\n"
               "CREATE INDEX items_name ON items (name);\n");
    write_file(e->dir, "002_seed.sql", "INSERT INTO items VALUES (1, 'one'), (2, 'two');\n");
    write_file(e->dir, "README.md", "not a migration\n");

    dbt_mig m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_string_equal(m.err, "");
    assert_int_equal(m.applied, 4); /* 2 built-in + 2 files */
    assert_int_equal(count(e, "SELECT count(*) FROM items"), 2);
    assert_int_equal(count(e, "SELECT count(*) FROM schema_migrations"), 4);
    assert_int_equal(
        count(e, "SELECT count(*) FROM schema_migrations WHERE component = 'platform'"), 2);
    assert_int_equal(count(e, "SELECT count(*) FROM schema_migrations WHERE component = "
                              "'service' AND name = '002_seed.sql' AND length(checksum) = 64"),
                     1);
    /* the platform tables exist in this schema */
    assert_int_equal(count(e, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(count(e, "SELECT count(*) FROM inbox"), 0);

    /* again: nothing to do, the seed is not inserted twice */
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_string_equal(m.err, "");
    assert_int_equal(m.applied, 0);
    assert_int_equal(count(e, "SELECT count(*) FROM items"), 2);

    /* a new file: only it runs */
    write_file(e->dir, "003_more.sql", "INSERT INTO items VALUES (3, 'three');\n");
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_string_equal(m.err, "");
    assert_int_equal(m.applied, 1);
    assert_int_equal(count(e, "SELECT count(*) FROM items"), 3);

    /* an applied file edited: refused, and nothing after it runs */
    write_file(e->dir, "002_seed.sql", "INSERT INTO items VALUES (1, 'uno'), (2, 'two');\n");
    write_file(e->dir, "004_never.sql", "CREATE TABLE never (id int);\n");
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_non_null(strstr(m.err, "002_seed.sql"));
    assert_non_null(strstr(m.err, "changed after it was applied"));
    assert_int_equal(m.applied, 0);
    assert_int_equal(count(e, "SELECT count(*) FROM pg_tables WHERE tablename = 'never' AND "
                              "schemaname = current_schema()"),
                     0);
    /* restored: fine again, and 004 applies */
    write_file(e->dir, "002_seed.sql", "INSERT INTO items VALUES (1, 'one'), (2, 'two');\r\n");
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_string_equal(m.err, ""); /* CRLF line ends do not count as a change */
    assert_int_equal(m.applied, 1);
}

static void test_failing_migration_rolls_back(void **state)
{
    ENV_OR_SKIP();
    write_file(e->dir, "001_ok.sql", "CREATE TABLE ok_table (id int);\n");
    write_file(e->dir, "002_broken.sql",
               "CREATE TABLE half_done (id int);\nINSERT INTO no_such_table VALUES (1);\n");
    dbt_mig m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_non_null(strstr(m.err, "002_broken.sql"));
    assert_non_null(strstr(m.err, "no_such_table"));
    assert_non_null(strstr(m.err, "42P01"));
    assert_int_equal(m.applied, 3); /* built-ins and 001 */
    /* its first statement was rolled back with it, and it is not recorded */
    assert_int_equal(count(e, "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done' "
                              "AND schemaname = current_schema()"),
                     0);
    assert_int_equal(count(e, "SELECT count(*) FROM schema_migrations WHERE version = 2 AND "
                              "component = 'service'"),
                     0);
    /* fixed: applies */
    write_file(e->dir, "002_broken.sql", "CREATE TABLE half_done (id int);\n");
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_string_equal(m.err, "");
    assert_int_equal(m.applied, 1);
}

static void test_transaction_control_refused(void **state)
{
    ENV_OR_SKIP();
    write_file(e->dir, "001_commits.sql", "CREATE TABLE c (id int);\nCOMMIT;\n");
    dbt_mig m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_non_null(strstr(m.err, "001_commits.sql"));
    assert_non_null(strstr(m.err, "BEGIN/COMMIT/ROLLBACK"));
    assert_int_equal(count(e, "SELECT count(*) FROM schema_migrations WHERE component = "
                              "'service'"),
                     0);
}

static void test_bad_directory(void **state)
{
    ENV_OR_SKIP();
    dbt_mig m = dbt_migrate(&e->loop, e->pool, "/nonexistent/migrations");
    assert_non_null(strstr(m.err, "/nonexistent/migrations"));
    write_file(e->dir, "create_things.sql", "SELECT 1;\n");
    m = dbt_migrate(&e->loop, e->pool, e->dir);
    assert_non_null(strstr(m.err, "create_things.sql"));
    assert_int_equal(m.applied, 0);
}

static void test_replicas_at_once(void **state)
{
    ENV_OR_SKIP();
    write_file(e->dir, "001_a.sql", "CREATE TABLE a (id int);\nSELECT pg_sleep(0.2);\n");
    write_file(e->dir, "002_b.sql", "CREATE TABLE b (id int);\n");
    write_file(e->dir, "003_c.sql", "INSERT INTO a VALUES (1);\n");
    enum { N = 3 };
    db_pool *pools[N];
    dbt_mig ms[N];
    memset(ms, 0, sizeof ms);
    for (int i = 0; i < N; i++)
        pools[i] = dbt_pool(&e->loop, e->schema, 1);
    for (int i = 0; i < N; i++)
        db_migrate(pools[i], e->dir, dbt_mig_cb, &ms[i]);
    for (int i = 0; i < N; i++)
        assert_true(ts_run_until(&e->loop, dbt_mig_done, &ms[i], 30000));
    int total = 0;
    for (int i = 0; i < N; i++) {
        assert_string_equal(ms[i].err, "");
        total += ms[i].applied;
    }
    assert_int_equal(total, 5); /* every migration exactly once across the replicas */
    assert_int_equal(count(e, "SELECT count(*) FROM a"), 1);
    for (int i = 0; i < N; i++)
        dbt_pool_close(&e->loop, pools[i]);
}

static void test_no_schema(void **state)
{
    ENV_OR_SKIP();
    db_pool *p = dbt_pool(&e->loop, "no_such_schema_here", 1);
    dbt_mig m = dbt_migrate(&e->loop, p, NULL);
    assert_non_null(strstr(m.err, "search_path"));
    dbt_pool_close(&e->loop, p);
}

static int reset(void **state)
{
    env *e = *state;
    if (!e) return 0;
    /* a fresh schema and directory for every test */
    dbt_drop_schema(&e->loop, e->admin, e->pool, e->schema);
    remove_dir(e->dir);
    snprintf(e->dir, sizeof e->dir, "/tmp/db-migrate-XXXXXX");
    if (!mkdtemp(e->dir)) return -1;
    dbt_schema_name(e->schema, sizeof e->schema, "dbmig");
    if (!dbt_schema_exec(&e->loop, e->admin, e->schema, true)) return -1;
    e->pool = dbt_pool(&e->loop, e->schema, 2);
    return 0;
}

int main(void)
{
    core_log_init("db-integration", CORE_LOG_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_apply_once_then_idempotent, reset),
        cmocka_unit_test_setup(test_failing_migration_rolls_back, reset),
        cmocka_unit_test_setup(test_transaction_control_refused, reset),
        cmocka_unit_test_setup(test_bad_directory, reset),
        cmocka_unit_test_setup(test_replicas_at_once, reset),
        cmocka_unit_test_setup(test_no_schema, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
