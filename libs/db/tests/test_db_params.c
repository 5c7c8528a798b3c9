/* Parameters, results, configuration and the pool's behaviour without a database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "contentengine/v1/platform.pb-c.h"
#include "db_internal.h"
#include "test_support.h"

/* ---------------------------------------------------------------- arrays, headers, text */

static void test_int64_array(void **state)
{
    (void)state;
    core_buf b = {0};
    dbi_int64_array(&b, NULL, 0);
    assert_string_equal(b.data, "{}");
    core_buf_reset(&b);
    int64_t v[] = {1, -2, INT64_MAX, INT64_MIN};
    dbi_int64_array(&b, v, 4);
    assert_string_equal(b.data, "{1,-2,9223372036854775807,-9223372036854775808}");
    int64_t *out = NULL;
    size_t n = 0;
    assert_true(dbi_int64_array_parse(b.data, &out, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(out, v, sizeof v);
    free(out);
    assert_true(dbi_int64_array_parse("{}", &out, &n));
    assert_int_equal(n, 0);
    free(out);
    const char *bad[] = {"", "1,2", "{1,,2}", "{a}", "{1", "{1}x", "{,}", "{1,}", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_false(dbi_int64_array_parse(bad[i], &out, &n));
        assert_null(out);
    }
    core_buf_free(&b);
}

static void test_headers_roundtrip(void **state)
{
    (void)state;
    const uint8_t bin[] = {0, 1, 2, 0xff, 0, 'x'};
    dbi_header in[] = {
        {"x-tenant", "acme", 4},
        {"binary", bin, sizeof bin},
        {"empty", NULL, 0},
        {"quote\"name", "v\"al\\ue", 7},
    };
    char *json = dbi_headers_encode(in, 4);
    assert_non_null(json);
    dbi_header *out = NULL;
    size_t n = 0;
    assert_true(dbi_headers_decode(json, &out, &n));
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(out[i].name, in[i].name);
        assert_int_equal(out[i].len, in[i].len);
        if (in[i].len) assert_memory_equal(out[i].value, in[i].value, in[i].len);
    }
    free(out);
    free(json);
    json = dbi_headers_encode(NULL, 0);
    assert_string_equal(json, "[]");
    assert_true(dbi_headers_decode(json, &out, &n));
    assert_int_equal(n, 0);
    free(out);
    free(json);
    /* a name that is not UTF-8, a missing name */
    dbi_header badname[] = {{"\xff\xfe", "v", 1}};
    assert_null(dbi_headers_encode(badname, 1));
    dbi_header noname[] = {{NULL, "v", 1}};
    assert_null(dbi_headers_encode(noname, 1));
    /* malformed stored values are refused, not half-decoded */
    assert_false(dbi_headers_decode("{}", &out, &n));
    assert_false(dbi_headers_decode("[{\"name\":\"a\"}]", &out, &n));
    assert_false(dbi_headers_decode("[{\"name\":\"a\",\"value\":\"not base64!\"}]", &out, &n));
    assert_false(dbi_headers_decode("[", &out, &n));
}

static void test_one_line(void **state)
{
    (void)state;
    char out[64];
    dbi_one_line("ERROR:  relation \"x\" does not exist\nLINE 1: SELECT * FROM x\n", out,
                 sizeof out);
    assert_string_equal(out, "relation \"x\" does not exist; LINE 1: SELECT * FROM x");
    dbi_one_line("server closed the connection unexpectedly\n\tThis probably means\n", out,
                 sizeof out);
    assert_string_equal(out, "server closed the connection unexpectedly; This probably means");
    dbi_one_line(NULL, out, sizeof out);
    assert_string_equal(out, "");
    char small[8];
    dbi_one_line("abcdefghijkl", small, sizeof small);
    assert_string_equal(small, "abcdefg");
    char dst[4];
    dbi_strlcpy(dst, "abcdef", sizeof dst);
    assert_string_equal(dst, "abc");
    dbi_strlcpy(dst, NULL, sizeof dst);
    assert_string_equal(dst, "");
}

static void test_search_path(void **state)
{
    (void)state;
    const char *good[] = {"svc", "content_manager", "a, b", "\"$user\", public", "_x1$", NULL};
    const char *bad[] = {"", "a;drop table x", "a b", "1abc", "x'y", "a,,b", "a,", "\"q\"", NULL};
    for (int i = 0; good[i]; i++)
        assert_true(dbi_search_path_valid(good[i]));
    for (int i = 0; bad[i]; i++)
        assert_false(dbi_search_path_valid(bad[i]));
}

/* ---------------------------------------------------------------- configuration */

static void test_config_check(void **state)
{
    (void)state;
    char err[256];
    db_config c = {0};
    assert_false(db_config_check(NULL, err, sizeof err));
    assert_false(db_config_check(&c, err, sizeof err));
    assert_non_null(strstr(err, "empty"));
    c.url = "postgresql://u:pw@127.0.0.1:5432/db";
    assert_true(db_config_check(&c, err, sizeof err));
    c.url = "host=127.0.0.1 port=5432 dbname=db";
    assert_true(db_config_check(&c, err, sizeof err));
    /* a malformed URL is refused and the password never echoed */
    c.url = "postgresql://u:s3cretpw@127.0.0.1:5432/db?no_such_option=1";
    assert_false(db_config_check(&c, err, sizeof err));
    assert_null(strstr(err, "s3cretpw"));
    assert_non_null(strstr(err, "not a valid"));
    c.url = "password=s3cretpw junk";
    assert_false(db_config_check(&c, err, sizeof err));
    assert_null(strstr(err, "s3cretpw"));
    c.url = "postgresql://u:pw@127.0.0.1/db";
    c.pool_size = 65;
    assert_false(db_config_check(&c, err, sizeof err));
    assert_non_null(strstr(err, "pool size"));
    c.pool_size = 4;
    c.statement_timeout_ms = -1;
    assert_false(db_config_check(&c, err, sizeof err));
    c.statement_timeout_ms = 5000;
    c.search_path = "x; DROP SCHEMA y";
    assert_false(db_config_check(&c, err, sizeof err));
    assert_non_null(strstr(err, "search_path"));
    c.search_path = "svc_test_1";
    assert_true(db_config_check(&c, err, sizeof err));
}

static void test_config_from_env(void **state)
{
    (void)state;
    core_config cc;
    db_config c;
    unsetenv("DATABASE_URL");
    unsetenv("DB_SEARCH_PATH");
    core_config_init(&cc, "db-test");
    db_config_from_env(&cc, &c);
    assert_true(cc.errors > 0);
    assert_non_null(strstr(cc.first_error, "DATABASE_URL"));

    setenv("DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/db", 1);
    setenv("DB_POOL_SIZE", "2", 1);
    setenv("DB_STATEMENT_TIMEOUT", "5s", 1);
    core_config_init(&cc, "db-test");
    db_config_from_env(&cc, &c);
    assert_int_equal(cc.errors, 0);
    assert_int_equal(c.pool_size, 2);
    assert_int_equal(c.statement_timeout_ms, 5000);
    assert_string_equal(c.application_name, "db-test");
    assert_null(c.search_path);

    setenv("DB_SEARCH_PATH", "bad path;", 1);
    core_config_init(&cc, "db-test");
    db_config_from_env(&cc, &c);
    assert_int_equal(cc.errors, 1);
    assert_non_null(strstr(cc.first_error, "DB_SEARCH_PATH"));

    unsetenv("DB_SEARCH_PATH");
    setenv("DATABASE_URL", "postgresql://u:hunter2@h/db?bogus=1", 1);
    core_config_init(&cc, "db-test");
    db_config_from_env(&cc, &c);
    assert_int_equal(cc.errors, 1);
    assert_non_null(strstr(cc.first_error, "DATABASE_URL"));
    assert_null(strstr(cc.first_error, "hunter2"));
    unsetenv("DATABASE_URL");
    unsetenv("DB_POOL_SIZE");
    unsetenv("DB_STATEMENT_TIMEOUT");
}

/* ---------------------------------------------------------------- parameters */

static void test_work_copies_params(void **state)
{
    (void)state;
    char a[] = "hello";
    const uint8_t bin[] = {0, 1, 0, 2};
    const char *vals[3] = {a, NULL, (const char *)bin};
    int lengths[3] = {0, 0, sizeof bin};
    int formats[3] = {0, 0, 1};
    char err[256];
    dbi_work *w = dbi_work_new(NULL, DBI_W_QUERY, "SELECT $1, $2, $3", 3, vals, lengths, formats,
                               err, sizeof err);
    assert_null(w->err);
    a[0] = 'J'; /* the caller's memory may change after the call */
    assert_string_equal(w->sql, "SELECT $1, $2, $3");
    assert_int_equal(w->nparams, 3);
    assert_string_equal(w->values[0], "hello");
    assert_int_equal(w->formats[0], 0);
    assert_null(w->values[1]);
    assert_int_equal(w->lengths[2], 4);
    assert_int_equal(w->formats[2], 1);
    assert_memory_equal(w->values[2], bin, sizeof bin);
    assert_ptr_not_equal(w->values[2], (const char *)bin);
    dbi_work_free(w);

    w = dbi_work_new(NULL, DBI_W_QUERY, "SELECT 1", 0, NULL, NULL, NULL, err, sizeof err);
    assert_null(w->err);
    assert_null(w->values);
    dbi_work_free(w);
}

static void test_work_rejects_bad_args(void **state)
{
    (void)state;
    char err[256];
    const char *vals[1] = {"x"};
    int len1[1] = {-1};
    int fmt_bin[1] = {1};
    int fmt_bad[1] = {2};
    struct {
        const char *sql;
        int n;
        const char *const *vals;
        const int *lengths;
        const int *formats;
        const char *expect;
    } cases[] = {
        {NULL, 0, NULL, NULL, NULL, "sql is NULL"},
        {"SELECT $1", -1, vals, NULL, NULL, "out of range"},
        {"SELECT $1", 70000, vals, NULL, NULL, "out of range"},
        {"SELECT $1", 1, NULL, NULL, NULL, "values is NULL"},
        {"SELECT $1", 1, vals, NULL, fmt_bin, "no length"},
        {"SELECT $1", 1, vals, len1, fmt_bin, "no length"},
        {"SELECT $1", 1, vals, NULL, fmt_bad, "format must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dbi_work *w = dbi_work_new(NULL, DBI_W_QUERY, cases[i].sql, cases[i].n, cases[i].vals,
                                   cases[i].lengths, cases[i].formats, err, sizeof err);
        assert_non_null(w->err);
        assert_non_null(strstr(w->err, cases[i].expect));
        assert_string_equal(w->sqlstate, "22023");
        assert_int_equal(w->nparams, 0);
        dbi_work_free(w);
    }
}

/* ---------------------------------------------------------------- results */

static void test_result_accessors(void **state)
{
    (void)state;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[3] = {
        {.name = (char *)"id", .format = 0, .typid = 20, .typlen = 8, .atttypmod = -1},
        {.name = (char *)"Name", .format = 0, .typid = 25, .typlen = -1, .atttypmod = -1},
        {.name = (char *)"blob", .format = 0, .typid = 17, .typlen = -1, .atttypmod = -1},
    };
    assert_true(PQsetResultAttrs(res, 3, attrs));
    assert_true(PQsetvalue(res, 0, 0, (char *)"42", 2));
    assert_true(PQsetvalue(res, 0, 1, (char *)"alice", 5));
    assert_true(PQsetvalue(res, 0, 2, (char *)"\\x00ff41", 8));
    assert_true(PQsetvalue(res, 1, 0, (char *)"x1", 2));
    assert_true(PQsetvalue(res, 1, 1, NULL, -1));
    assert_true(PQsetvalue(res, 1, 2, NULL, -1));

    dbi_arena arena = {0};
    char buf[256];
    db_result r;
    dbi_result_init(&r, res, NULL, NULL, &arena, buf, sizeof buf);
    assert_true(db_result_ok(&r));
    assert_null(db_result_error(&r));
    assert_string_equal(db_result_sqlstate(&r), "");
    assert_int_equal(db_result_rows(&r), 2);
    assert_int_equal(db_result_columns(&r), 3);
    assert_int_equal(db_result_column(&r, "Name"), 1);
    assert_int_equal(db_result_column(&r, "name"), -1); /* exact, no case folding */
    assert_int_equal(db_result_column(&r, "nope"), -1);
    assert_string_equal(db_result_column_name(&r, 2), "blob");
    assert_null(db_result_column_name(&r, 3));
    assert_string_equal(db_result_get(&r, 0, "Name"), "alice");
    assert_null(db_result_get(&r, 0, "nope"));
    assert_true(db_result_isnull(&r, 1, 1));
    assert_null(db_result_value(&r, 1, 1));
    assert_null(db_result_value(&r, 2, 0)); /* out of range */
    assert_null(db_result_value(&r, 0, -1));
    assert_int_equal(db_result_length(&r, 0, 1), 5);
    int64_t v = 0;
    assert_true(db_result_int64(&r, 0, 0, &v));
    assert_int_equal(v, 42);
    assert_false(db_result_int64(&r, 1, 0, &v)); /* "x1" */
    assert_false(db_result_int64(&r, 0, 1, &v)); /* "alice" */
    size_t len = 0;
    const uint8_t *bytes = db_result_bytea(&r, 0, 2, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(bytes, "\x00\xff\x41", 3);
    assert_null(db_result_bytea(&r, 1, 2, &len));
    assert_int_equal(len, 0);
    dbi_arena_free(&arena);
    PQclear(res);
}

/* A result in binary format (dbi_query_binary, the relay's select), laid out as the server
 * sends it: big-endian integers and IEEE doubles, bytea and text as their bytes. */
static void test_result_binary(void **state)
{
    (void)state;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[] = {
        {.name = (char *)"id", .format = 1, .typid = 20, .typlen = 8, .atttypmod = -1},
        {.name = (char *)"part", .format = 1, .typid = 23, .typlen = 4, .atttypmod = -1},
        {.name = (char *)"small", .format = 1, .typid = 21, .typlen = 2, .atttypmod = -1},
        {.name = (char *)"age_s", .format = 1, .typid = 701, .typlen = 8, .atttypmod = -1},
        {.name = (char *)"f4", .format = 1, .typid = 700, .typlen = 4, .atttypmod = -1},
        {.name = (char *)"payload", .format = 1, .typid = 17, .typlen = -1, .atttypmod = -1},
        {.name = (char *)"topic", .format = 1, .typid = 25, .typlen = -1, .atttypmod = -1},
        {.name = (char *)"price", .format = 1, .typid = 1700, .typlen = -1, .atttypmod = -1},
    };
    enum { ID, PART, SMALL, AGE, F4, PAYLOAD, TOPIC, PRICE, NCOLS };
    assert_true(PQsetResultAttrs(res, NCOLS, attrs));
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    /* row 0: large and negative numbers, every byte value */
    assert_true(PQsetvalue(res, 0, ID, (char *)"\x00\x00\x00\x01\x2a\x05\xf2\x00", 8));
    assert_true(PQsetvalue(res, 0, PART, (char *)"\xff\xff\xff\xff", 4));
    assert_true(PQsetvalue(res, 0, SMALL, (char *)"\x80\x00", 2));
    assert_true(PQsetvalue(res, 0, AGE, (char *)"\x3f\xf8\x00\x00\x00\x00\x00\x00", 8));
    assert_true(PQsetvalue(res, 0, F4, (char *)"\xbe\x80\x00\x00", 4));
    assert_true(PQsetvalue(res, 0, PAYLOAD, (char *)all, (int)sizeof all));
    assert_true(PQsetvalue(res, 0, TOPIC, (char *)"t\xc3\xbcpic", 6));
    assert_true(PQsetvalue(res, 0, PRICE, (char *)"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x2a", 10));
    /* row 1: extremes, an empty payload, NULLs */
    assert_true(PQsetvalue(res, 1, ID, (char *)"\x80\x00\x00\x00\x00\x00\x00\x00", 8));
    assert_true(PQsetvalue(res, 1, PART, NULL, -1));
    assert_true(PQsetvalue(res, 1, SMALL, (char *)"\x7f\xff", 2));
    assert_true(PQsetvalue(res, 1, AGE, (char *)"\x00\x00", 2)); /* not a float8 */
    assert_true(PQsetvalue(res, 1, F4, NULL, -1));
    assert_true(PQsetvalue(res, 1, PAYLOAD, (char *)"", 0));
    assert_true(PQsetvalue(res, 1, TOPIC, NULL, -1));
    assert_true(PQsetvalue(res, 1, PRICE, NULL, -1));
    /* row 2: a NULL payload, an int8 of the wrong length */
    assert_true(PQsetvalue(res, 2, ID, (char *)"\x01\x02\x03\x04", 4));
    assert_true(PQsetvalue(res, 2, PAYLOAD, NULL, -1));

    dbi_arena arena = {0};
    char buf[256];
    db_result r;
    dbi_result_init(&r, res, NULL, NULL, &arena, buf, sizeof buf);
    int64_t v = 7;
    assert_true(db_result_int64(&r, 0, ID, &v));
    assert_true(v == INT64_C(5000000000));
    assert_true(db_result_int64(&r, 0, PART, &v));
    assert_int_equal(v, -1);
    assert_true(db_result_int64(&r, 0, SMALL, &v));
    assert_int_equal(v, INT16_MIN);
    assert_true(db_result_int64(&r, 1, ID, &v));
    assert_true(v == INT64_MIN);
    assert_true(db_result_int64(&r, 1, SMALL, &v));
    assert_int_equal(v, INT16_MAX);
    v = 7;
    assert_false(db_result_int64(&r, 1, PART, &v));    /* NULL */
    assert_false(db_result_int64(&r, 2, ID, &v));      /* 4 bytes for an int8 */
    assert_false(db_result_int64(&r, 0, PAYLOAD, &v)); /* not an integer type */
    assert_false(db_result_int64(&r, 0, TOPIC, &v));
    assert_false(db_result_int64(&r, 0, AGE, &v));
    assert_false(db_result_int64(&r, 0, PRICE, &v)); /* numeric: cast it in the SQL */
    assert_int_equal(v, 7);

    double d = 0;
    assert_true(dbi_result_double(&r, 0, AGE, &d));
    assert_true(d == 1.5);
    assert_true(dbi_result_double(&r, 0, F4, &d));
    assert_true(d == -0.25);
    d = 9;
    assert_false(dbi_result_double(&r, 1, AGE, &d)); /* 2 bytes */
    assert_false(dbi_result_double(&r, 1, F4, &d));  /* NULL */
    assert_false(dbi_result_double(&r, 0, ID, &d));  /* an integer */
    assert_false(dbi_result_double(&r, 0, 99, &d));  /* no such column */
    assert_true(d == 9);

    size_t len = 99;
    const uint8_t *bytes = db_result_bytea(&r, 0, PAYLOAD, &len);
    assert_int_equal(len, sizeof all);
    assert_memory_equal(bytes, all, sizeof all); /* as is: no unescaping, nothing allocated */
    assert_int_equal(arena.n, 0);
    bytes = db_result_bytea(&r, 1, PAYLOAD, &len);
    assert_non_null(bytes); /* empty, not NULL */
    assert_int_equal(len, 0);
    assert_null(db_result_bytea(&r, 2, PAYLOAD, &len));
    assert_int_equal(len, 0);

    /* text: its bytes, NUL-terminated by libpq as in text format */
    assert_string_equal(db_result_value(&r, 0, TOPIC), "t\xc3\xbcpic");
    assert_int_equal(db_result_length(&r, 0, TOPIC), 6);
    assert_null(db_result_value(&r, 1, TOPIC));
    dbi_arena_free(&arena);
    PQclear(res);
}

/* dbi_result_double on text results (the relay's pending gauge). */
static void test_result_double_text(void **state)
{
    (void)state;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[1] = {
        {.name = (char *)"age_s", .format = 0, .typid = 701, .typlen = 8, .atttypmod = -1},
    };
    assert_true(PQsetResultAttrs(res, 1, attrs));
    const char *vals[] = {"12.5", "-0.001", "Infinity", "", "1.5x", NULL};
    for (int i = 0; i < 6; i++)
        assert_true(PQsetvalue(res, i, 0, (char *)vals[i], vals[i] ? (int)strlen(vals[i]) : -1));
    dbi_arena arena = {0};
    char buf[256];
    db_result r;
    dbi_result_init(&r, res, NULL, NULL, &arena, buf, sizeof buf);
    double d = 0;
    assert_true(dbi_result_double(&r, 0, 0, &d));
    assert_true(d == 12.5);
    assert_true(dbi_result_double(&r, 1, 0, &d));
    assert_true(d == -0.001);
    assert_true(dbi_result_double(&r, 2, 0, &d));
    assert_true(d > 1e308);
    d = 3;
    assert_false(dbi_result_double(&r, 3, 0, &d));
    assert_false(dbi_result_double(&r, 4, 0, &d));
    assert_false(dbi_result_double(&r, 5, 0, &d));
    assert_true(d == 3);
    PQclear(res);
}

/* Entries concatenated in any number are one OutboxBulk, which is what a statement's string_agg
 * of them gives the relay; a record of more than 127 bytes needs a two-byte length. */
static void test_bulk_entries(void **state)
{
    (void)state;
    uint8_t big[300];
    memset(big, 0xAB, sizeof big);
    bus_record a = {.key = "k1",
                    .key_len = 2,
                    .ce_id = "id-1",
                    .ce_type = "t.created.v1",
                    .ce_subject = "s1",
                    .value = "v",
                    .value_len = 1};
    bus_record b = {.key = "k2",
                    .key_len = 2,
                    .ce_id = "id-2",
                    .ce_type = "t.updated.v1",
                    .value = big,
                    .value_len = sizeof big};
    core_buf one = {0}, two = {0};
    db_outbox_bulk_entry(&one, &a);
    db_outbox_bulk_entry(&two, &a);
    db_outbox_bulk_entry(&two, &b);
    Contentengine__V1__OutboxBulk *m =
        contentengine__v1__outbox_bulk__unpack(NULL, one.len, (const uint8_t *)one.data);
    assert_non_null(m);
    assert_int_equal(m->n_records, 1);
    contentengine__v1__outbox_bulk__free_unpacked(m, NULL);
    m = contentengine__v1__outbox_bulk__unpack(NULL, two.len, (const uint8_t *)two.data);
    assert_non_null(m);
    assert_int_equal(m->n_records, 2);
    const Contentengine__V1__OutboxRecord *r0 = m->records[0], *r1 = m->records[1];
    assert_memory_equal(r0->key.data, "k1", 2);
    assert_string_equal(r0->ce_id, "id-1");
    assert_string_equal(r0->ce_type, "t.created.v1");
    assert_string_equal(r0->ce_subject, "s1");
    assert_int_equal(r0->payload.len, 1);
    assert_string_equal(r1->ce_id, "id-2");
    assert_string_equal(r1->ce_subject, "");
    assert_int_equal(r1->payload.len, sizeof big);
    assert_memory_equal(r1->payload.data, big, sizeof big);
    assert_false(r0->subject_is_key);
    assert_string_equal(m->default_ce_type, "");
    contentengine__v1__outbox_bulk__free_unpacked(m, NULL);

    /* a subject equal to the key is not stored twice; a record without a type takes the
     * payload's default, which may come after it */
    bus_record c = {.key = "k3", .key_len = 2, .ce_id = "id-3", .ce_subject = "k3"};
    core_buf three = {0};
    db_outbox_bulk_entry(&three, &c);
    size_t entry_len = three.len;
    db_outbox_bulk_default_type(&three, "t.created.v1");
    db_outbox_bulk_entry(&three, &a);
    m = contentengine__v1__outbox_bulk__unpack(NULL, three.len, (const uint8_t *)three.data);
    assert_non_null(m);
    assert_int_equal(m->n_records, 2);
    assert_true(m->records[0]->subject_is_key);
    assert_string_equal(m->records[0]->ce_subject, "");
    assert_string_equal(m->records[0]->ce_type, "");
    assert_false(m->records[1]->subject_is_key); /* "s1" is not its key "k1" */
    assert_string_equal(m->records[1]->ce_subject, "s1");
    assert_string_equal(m->default_ce_type, "t.created.v1");
    const char *k3 = memmem(three.data, entry_len, "k3", 2); /* the key, and only the key */
    assert_non_null(k3);
    assert_null(memmem(k3 + 2, entry_len - (size_t)(k3 + 2 - three.data), "k3", 2));
    contentengine__v1__outbox_bulk__free_unpacked(m, NULL);
    core_buf_free(&three);
    core_buf_free(&one);
    core_buf_free(&two);
}

static void test_result_error(void **state)
{
    (void)state;
    dbi_arena arena = {0};
    char buf[64];
    db_result r;
    dbi_result_init(&r, NULL, "connection lost: server closed\nthe connection", "08006", &arena,
                    buf, sizeof buf);
    assert_false(db_result_ok(&r));
    assert_string_equal(db_result_error(&r), "connection lost: server closed; the connection");
    assert_string_equal(db_result_sqlstate(&r), "08006");
    assert_int_equal(db_result_rows(&r), 0);
    assert_int_equal(db_result_columns(&r), 0);
    assert_null(db_result_value(&r, 0, 0));
    assert_int_equal(db_result_affected(&r), 0);
    assert_false(db_result_ok(NULL));
    assert_string_equal(db_result_error(NULL), "no result");
}

/* ---------------------------------------------------------------- a pool with no server */

typedef struct seen {
    int calls;
    bool ok;
    char error[256];
    char sqlstate[6];
} seen;

static void on_result(const db_result *r, void *data)
{
    seen *s = data;
    s->calls++;
    s->ok = db_result_ok(r);
    dbi_strlcpy(s->error, db_result_error(r) ? db_result_error(r) : "", sizeof s->error);
    dbi_strlcpy(s->sqlstate, db_result_sqlstate(r), sizeof s->sqlstate);
}

static void on_begin(db_txn *t, const db_result *r, void *data)
{
    assert_null(t);
    on_result(r, data);
}

static bool seen_called(void *data)
{
    return ((seen *)data)->calls > 0;
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static bool flag_set(void *data)
{
    return *(bool *)data;
}

static void test_unreachable_server_fails_fast(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port = ts_free_port(); /* nothing listens there */
    char url[128];
    snprintf(url, sizeof url, "postgresql://nobody:pw@127.0.0.1:%d/none", port);
    db_config cfg = {.url = url, .pool_size = 2, .connect_timeout_ms = 2000};
    char err[256];
    db_pool *p = db_pool_new(&loop, &cfg, err, sizeof err);
    assert_non_null(p);
    assert_false(db_pool_ready(p));
    seen q = {0}, b = {0};
    db_query(p, "SELECT 1", 0, NULL, on_result, &q);
    assert_int_equal(q.calls, 0); /* never from inside the call */
    db_begin(p, on_begin, &b);
    assert_true(ts_run_until(&loop, seen_called, &q, 5000));
    assert_true(ts_run_until(&loop, seen_called, &b, 5000));
    assert_int_equal(q.calls, 1);
    assert_false(q.ok);
    assert_string_equal(q.sqlstate, "08001");
    assert_non_null(strstr(q.error, "database unavailable"));
    assert_null(strstr(q.error, "pw@")); /* the URL is not in it */
    assert_false(b.ok);
    /* Later work fails at once (next iteration), not after a timeout. */
    seen q2 = {0};
    db_query(p, "SELECT 1", 0, NULL, on_result, &q2);
    int64_t t0 = core_mono_ns();
    assert_true(ts_run_until(&loop, seen_called, &q2, 5000));
    assert_true(core_mono_ns() - t0 < (int64_t)500 * 1000000);
    assert_string_equal(q2.sqlstate, "08001");
    /* Invalid arguments: reported through the callback. */
    seen bad = {0};
    db_query(p, NULL, 0, NULL, on_result, &bad);
    assert_true(ts_run_until(&loop, seen_called, &bad, 1000));
    assert_string_equal(bad.sqlstate, "22023");
    bool closed = false;
    db_pool_close(p, on_closed, &closed);
    assert_true(ts_run_until(&loop, flag_set, &closed, 5000));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_pool_new_rejects_bad_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256] = "";
    db_config cfg = {.url = "postgresql://u:pw@h/db", .pool_size = 100};
    assert_null(db_pool_new(&loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "pool size"));
    assert_null(db_pool_new(NULL, &cfg, err, sizeof err));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    core_log_init("test-db", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int64_array),
        cmocka_unit_test(test_headers_roundtrip),
        cmocka_unit_test(test_one_line),
        cmocka_unit_test(test_search_path),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_config_from_env),
        cmocka_unit_test(test_work_copies_params),
        cmocka_unit_test(test_work_rejects_bad_args),
        cmocka_unit_test(test_result_accessors),
        cmocka_unit_test(test_result_binary),
        cmocka_unit_test(test_result_double_text),
        cmocka_unit_test(test_result_error),
        cmocka_unit_test(test_bulk_entries),
        cmocka_unit_test(test_unreachable_server_fails_fast),
        cmocka_unit_test(test_pool_new_rejects_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
