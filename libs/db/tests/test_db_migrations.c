/* Migration file discovery, ordering and checksums (no database). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_internal.h"

/* SHA-256 of the released built-in migrations (see test_builtins). */
#define OUTBOX_SUM "0a5f177d66b292c4de23f002a62808da18bbb931e35f7de8e343625e17a39054"
#define INBOX_SUM  "0932c8aabbdc3b4aed4bb33488c83c5f9cbf323257e457316c243216aebd12a2"

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/db-mig-test-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) rmdir(path);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

static void test_names(void **state)
{
    (void)state;
    int v = 0;
    assert_int_equal(dbi_migration_name("001_init.sql", &v), 1);
    assert_int_equal(v, 1);
    assert_int_equal(dbi_migration_name("42_add-column_2.sql", &v), 1);
    assert_int_equal(v, 42);
    assert_int_equal(dbi_migration_name("0010_x.sql", &v), 1);
    assert_int_equal(v, 10);
    /* not migrations: ignored */
    assert_int_equal(dbi_migration_name("README.md", &v), 0);
    assert_int_equal(dbi_migration_name(".001_hidden.sql", &v), 0);
    assert_int_equal(dbi_migration_name("001_init.sql.bak", &v), 0);
    assert_int_equal(dbi_migration_name("001_init.SQL", &v), 0);
    /* .sql files with a bad name: errors, not silently skipped */
    assert_int_equal(dbi_migration_name("init.sql", &v), -1);
    assert_int_equal(dbi_migration_name("001.sql", &v), -1);
    assert_int_equal(dbi_migration_name("001_.sql", &v), -1);
    assert_int_equal(dbi_migration_name("000_zero.sql", &v), -1);
    assert_int_equal(dbi_migration_name("1234567890_big.sql", &v), -1);
    assert_int_equal(dbi_migration_name("001_two words.sql", &v), -1);
    assert_int_equal(dbi_migration_name("001_a.b.sql", &v), -1);
    assert_int_equal(dbi_migration_name("001-init.sql", &v), -1);
}

static void test_checksum(void **state)
{
    (void)state;
    char a[65], b[65];
    dbi_checksum("", 0, a);
    assert_string_equal(a, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    dbi_checksum("abc", 3, a);
    assert_string_equal(a, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* CRLF reads as LF; a lone CR is content */
    dbi_checksum("a\r\nb\r\n", 6, a);
    dbi_checksum("a\nb\n", 4, b);
    assert_string_equal(a, b);
    dbi_checksum("a\rb", 3, a);
    dbi_checksum("ab", 2, b);
    assert_string_not_equal(a, b);
    /* a one-character change changes it */
    dbi_checksum("CREATE TABLE t (id int);", 24, a);
    dbi_checksum("CREATE TABLE t (id INT);", 24, b);
    assert_string_not_equal(a, b);
}

static void test_scan_orders_by_version(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    write_file(dir, "010_third.sql", "SELECT 10;\n");
    write_file(dir, "002_second.sql", "SELECT 2;\n");
    write_file(dir, "1_first.sql", "SELECT 1;\r\n");
    write_file(dir, "README.md", "not a migration");
    dbi_migration *m = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_true(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_int_equal(n, 3);
    assert_int_equal(m[0].version, 1);
    assert_int_equal(m[1].version, 2);
    assert_int_equal(m[2].version, 10);
    assert_string_equal(m[0].name, "1_first.sql");
    assert_string_equal(m[2].name, "010_third.sql");
    assert_string_equal(m[1].sql, "SELECT 2;\n");
    char sum[65];
    dbi_checksum("SELECT 1;\n", 10, sum); /* CRLF in the file, LF here */
    assert_string_equal(m[0].checksum, sum);
    dbi_migrations_free(m, n);
    remove_dir(dir);
}

static void test_scan_empty_dir(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    dbi_migration *m = NULL;
    size_t n = 7;
    char err[512] = "";
    assert_true(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_int_equal(n, 0);
    dbi_migrations_free(m, n);
    remove_dir(dir);
}

static void test_scan_rejects_duplicates(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    write_file(dir, "001_a.sql", "SELECT 1;");
    write_file(dir, "1_b.sql", "SELECT 1;");
    dbi_migration *m = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_false(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_non_null(strstr(err, "001_a.sql"));
    assert_non_null(strstr(err, "1_b.sql"));
    assert_non_null(strstr(err, "same version 1"));
    assert_null(m);
    remove_dir(dir);
}

static void test_scan_rejects_bad_name(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    write_file(dir, "001_ok.sql", "SELECT 1;");
    write_file(dir, "create_users.sql", "SELECT 1;");
    dbi_migration *m = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_false(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_non_null(strstr(err, "create_users.sql"));
    assert_non_null(strstr(err, "NNN_description.sql"));
    remove_dir(dir);
}

static void test_scan_rejects_nul_byte_and_dirs(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof dir);
    char path[512];
    snprintf(path, sizeof path, "%s/001_nul.sql", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("SELECT\0 1;", 1, 10, f);
    fclose(f);
    dbi_migration *m = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_false(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_non_null(strstr(err, "NUL"));
    unlink(path);
    snprintf(path, sizeof path, "%s/002_dir.sql", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_false(dbi_migrations_scan(dir, &m, &n, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    remove_dir(dir);
}

static void test_scan_missing_dir(void **state)
{
    (void)state;
    dbi_migration *m = NULL;
    size_t n = 0;
    char err[512] = "";
    assert_false(dbi_migrations_scan("/nonexistent/db-migrations", &m, &n, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/db-migrations"));
    assert_non_null(strstr(err, "No such file"));
}

static void test_builtins(void **state)
{
    (void)state;
    size_t n = 0;
    const dbi_migration *b = dbi_builtin_migrations(&n);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        assert_int_equal(dbi_migration_name(b[i].name, &v), 1);
        assert_int_equal(v, b[i].version);
        if (i) assert_true(b[i].version > b[i - 1].version);
        assert_int_equal(strlen(b[i].checksum), 64);
        char sum[65];
        dbi_checksum(b[i].sql, strlen(b[i].sql), sum);
        assert_string_equal(sum, b[i].checksum);
    }
    /* The platform tables the rest of the library relies on. */
    assert_non_null(strstr(b[0].sql, "CREATE TABLE outbox"));
    assert_non_null(strstr(b[0].sql, "pg_notify('contentengine_outbox'"));
    assert_non_null(strstr(b[1].sql, "CREATE TABLE inbox"));
    /* Released built-ins must never change: their checksums are pinned here. If this fails,
     * add a new built-in migration instead of editing one. */
    assert_string_equal(b[0].checksum, OUTBOX_SUM);
    assert_string_equal(b[1].checksum, INBOX_SUM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_checksum),
        cmocka_unit_test(test_scan_orders_by_version),
        cmocka_unit_test(test_scan_empty_dir),
        cmocka_unit_test(test_scan_rejects_duplicates),
        cmocka_unit_test(test_scan_rejects_bad_name),
        cmocka_unit_test(test_scan_rejects_nul_byte_and_dirs),
        cmocka_unit_test(test_scan_missing_dir),
        cmocka_unit_test(test_builtins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
