/*
 * Helpers shared by the libs/db integration tests (tests/integration/db_*.c): synchronous
 * wrappers that run the loop until a statement finishes, a schema per test run, topics, and a
 * read_committed reader. Header-only (static), so every test binary stays one .c file.
 */
#ifndef DB_TEST_H
#define DB_TEST_H

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "bus_test.h"
#include "db.h"
#include "test_support.h"

#define DBT_TIMEOUT_MS 30000

#define DBT_SKIP_WITHOUT(var)                                                                      \
    do {                                                                                           \
        if (!ts_env(var)) {                                                                        \
            fprintf(stderr, "skipped: %s is not set (scripts/test.sh exports it)\n", var);         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Opens a test body, in a file whose group setup leaves *state NULL when a variable it needs is
 * unset: binds `env *e` to the group's state, or skips the test naming each unset variable. */
#define DBT_ENV_OR_SKIP(...)                                                                       \
    env *e = *state;                                                                               \
    if (!e) {                                                                                      \
        static const char *const dbt_needed_[] = {__VA_ARGS__};                                    \
        for (size_t dbt_i_ = 0; dbt_i_ < sizeof dbt_needed_ / sizeof dbt_needed_[0]; dbt_i_++)     \
            DBT_SKIP_WITHOUT(dbt_needed_[dbt_i_]);                                                 \
        return;                                                                                    \
    }

/* ---------------------------------------------------------------- statements */

typedef struct dbt_res {
    bool done, ok;
    char error[512];
    char sqlstate[6];
    int rows;
    int64_t affected;
    char first[1024]; /* row 0, column 0 */
    bool first_null;
} dbt_res;

static inline void dbt_fill(dbt_res *s, const db_result *r)
{
    s->done = true;
    s->ok = db_result_ok(r);
    snprintf(s->error, sizeof s->error, "%s", db_result_error(r) ? db_result_error(r) : "");
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", db_result_sqlstate(r));
    s->rows = db_result_rows(r);
    s->affected = db_result_affected(r);
    const char *v = db_result_value(r, 0, 0);
    s->first_null = v == NULL;
    snprintf(s->first, sizeof s->first, "%s", v ? v : "");
}

static inline void dbt_cb(const db_result *r, void *data)
{
    dbt_fill(data, r);
}

static inline bool dbt_is_done(void *data)
{
    return ((dbt_res *)data)->done;
}

static inline dbt_res dbt_query(uv_loop_t *loop, db_pool *p, const char *sql, int n,
                                const char *const *vals)
{
    dbt_res r = {0};
    db_query(p, sql, n, vals, dbt_cb, &r);
    if (!ts_run_until(loop, dbt_is_done, &r, DBT_TIMEOUT_MS))
        snprintf(r.error, sizeof r.error, "timed out");
    return r;
}

static inline int64_t dbt_int(uv_loop_t *loop, db_pool *p, const char *sql, int n,
                              const char *const *vals)
{
    dbt_res r = dbt_query(loop, p, sql, n, vals);
    if (!r.ok) {
        fprintf(stderr, "query failed: %s: %s\n", sql, r.error);
        return -1;
    }
    return strtoll(r.first, NULL, 10);
}

/* ---------------------------------------------------------------- a schema per run */

typedef struct dbt_schema_op {
    const char *name;
    const char *sql;
    dbt_res res;
} dbt_schema_op;

static inline void dbt_schema_step(db_txn *t, const db_result *r, void *data)
{
    dbt_schema_op *op = data;
    if (!t) {
        dbt_fill(&op->res, r);
        return;
    }
    /* The name travels as a parameter; format('%I') quotes it inside the server. */
    const char *vals[1] = {op->name};
    db_txn_query(t, "SELECT set_config('ce.test_schema', $1, true)", 1, vals, NULL, NULL);
    db_txn_query(t, op->sql, 0, NULL, NULL, NULL);
    db_commit(t, dbt_cb, &op->res);
}

static inline bool dbt_schema_exec(uv_loop_t *loop, db_pool *admin, const char *name, bool create)
{
    dbt_schema_op op = {
        .name = name,
        .sql = create ? "DO $$BEGIN EXECUTE format('CREATE SCHEMA %I', "
                        "current_setting('ce.test_schema')); END$$"
                      : "DO $$BEGIN EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', "
                        "current_setting('ce.test_schema')); END$$",
    };
    db_begin(admin, dbt_schema_step, &op);
    ts_run_until(loop, dbt_is_done, &op.res, DBT_TIMEOUT_MS);
    if (!op.res.ok) fprintf(stderr, "schema %s: %s\n", name, op.res.error);
    return op.res.ok;
}

/* A schema name for this run: letters, digits and '_' only. */
static inline void dbt_schema_name(char *out, size_t size, const char *prefix)
{
    ts_unique_name(out, size, prefix);
    for (char *c = out; *c; c++)
        if (*c == '-') *c = '_';
}

static inline db_pool *dbt_pool(uv_loop_t *loop, const char *schema, int size)
{
    db_config cfg = {
        .url = ts_env("PLATFORM_TEST_DATABASE_URL"),
        .pool_size = size,
        .search_path = schema,
        .application_name = "db-integration-test",
    };
    char err[256];
    db_pool *p = db_pool_new(loop, &cfg, err, sizeof err);
    if (!p) fprintf(stderr, "db_pool_new: %s\n", err);
    return p;
}

static inline void dbt_pool_close(uv_loop_t *loop, db_pool *p)
{
    bool closed = false;
    db_pool_close(p, ts_set_flag, &closed);
    ts_run_until(loop, ts_flag_set, &closed, DBT_TIMEOUT_MS);
}

/* The end of a group teardown: the admin pool closed, then any handle a failed test left open
 * (so that AddressSanitizer sees no leak), then the loop. */
static inline void dbt_close_admin_and_loop(uv_loop_t *loop, db_pool *admin)
{
    dbt_pool_close(loop, admin);
    ts_loop_close_all(loop);
    uv_loop_close(loop);
}

typedef struct dbt_mig {
    bool done;
    char err[1024];
    int applied;
} dbt_mig;

static inline void dbt_mig_cb(const char *err, int applied, void *data)
{
    dbt_mig *m = data;
    m->done = true;
    m->applied = applied;
    snprintf(m->err, sizeof m->err, "%s", err ? err : "");
}

static inline bool dbt_mig_done(void *data)
{
    return ((dbt_mig *)data)->done;
}

static inline dbt_mig dbt_migrate(uv_loop_t *loop, db_pool *p, const char *dir)
{
    dbt_mig m = {0};
    db_migrate(p, dir, dbt_mig_cb, &m);
    if (!ts_run_until(loop, dbt_mig_done, &m, DBT_TIMEOUT_MS))
        snprintf(m.err, sizeof m.err, "timed out");
    return m;
}

/* Per test: a new schema "<prefix>_..." (created through admin) and a pool of pool_size
 * connections whose search_path is it, with the built-in migrations applied. False, with the
 * reason on stderr where there is one, when a step fails (the test's setup then fails). */
static inline bool dbt_fresh_schema(uv_loop_t *loop, db_pool *admin, char *schema, size_t size,
                                    const char *prefix, int pool_size, db_pool **pool)
{
    dbt_schema_name(schema, size, prefix);
    if (!dbt_schema_exec(loop, admin, schema, true)) return false;
    *pool = dbt_pool(loop, schema, pool_size);
    dbt_mig m = dbt_migrate(loop, *pool, NULL);
    if (m.err[0]) {
        fprintf(stderr, "migrate: %s\n", m.err);
        return false;
    }
    return true;
}

/* Undoes a test's schema: its pool (if one was opened) closed, then the schema dropped. */
static inline void dbt_drop_schema(uv_loop_t *loop, db_pool *admin, db_pool *pool,
                                   const char *schema)
{
    if (pool) dbt_pool_close(loop, pool);
    dbt_schema_exec(loop, admin, schema, false);
}

/* ---------------------------------------------------------------- Kafka */

static inline bool dbt_create_topic(uv_loop_t *loop, const char *topic, int partitions,
                                    bool compact)
{
    static const char *const compacted[] = {"cleanup.policy", "compact", NULL};
    return ts_bus_create_topic(loop, ts_env("KAFKA_BROKERS"), topic, partitions,
                               compact ? compacted : NULL);
}

static inline void dbt_delete_topic(uv_loop_t *loop, const char *topic)
{
    ts_bus_delete_topic(loop, ts_env("KAFKA_BROKERS"), topic);
}

#define DBT_MSG_HEADERS 12

/* A message as read back. key and value hold the bytes (cut to the array, then a NUL);
 * key_len and value_len the whole lengths. headers: all of them, values cut likewise. */
typedef struct dbt_msg {
    char ce_id[128];
    char key[128];
    size_t key_len;
    bool key_null;
    char value[512];
    size_t value_len;
    int32_t partition;
    char traceparent[64];
    char ce_type[128];
    struct {
        char name[32];
        char value[64];
        size_t len;
    } headers[DBT_MSG_HEADERS];
    size_t nheaders;
} dbt_msg;

/* Copies the n bytes of v (n 0 when v is NULL) into dst as far as they fit, then a NUL. */
static inline void dbt_copy_bytes(char *dst, size_t size, const void *v, size_t n)
{
    if (n > size - 1) n = size - 1;
    if (n) memcpy(dst, v, n);
    dst[n] = '\0';
}

/* The header name of m (its last one), or NULL; *len its whole length. */
static inline const char *dbt_msg_header(const dbt_msg *m, const char *name, size_t *len)
{
    for (size_t i = m->nheaders; i-- > 0;)
        if (strcmp(m->headers[i].name, name) == 0) {
            *len = m->headers[i].len;
            return m->headers[i].value;
        }
    *len = 0;
    return NULL;
}

static inline void dbt_header(const rd_kafka_message_t *m, const char *name, char *out, size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
        snprintf(out, size, "%.*s", (int)len, (const char *)v);
}

/* Reads every partition of topic from the beginning to its end with isolation.level
 * read_committed (blocking: a test, not the loop). Returns the count, -1 on error. */
static inline long dbt_read_committed(const char *topic, int partitions, dbt_msg **out)
{
    char errstr[512];
    char group[96];
    ts_unique_name(group, sizeof group, "db-test-reader");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", ts_env("KAFKA_BROKERS")},
        {"group.id", group},
        {"isolation.level", "read_committed"},
        {"enable.partition.eof", "true"},
        {"enable.auto.commit", "false"},
        {"auto.offset.reset", "earliest"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) return -1;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(list, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    size_t cap = 1024, n = 0;
    dbt_msg *msgs = calloc(cap, sizeof *msgs);
    bool *eof = calloc((size_t)partitions, sizeof *eof);
    int eofs = 0;
    int64_t deadline = core_mono_ns() + (int64_t)60 * 1000000000;
    while (eofs < partitions && core_mono_ns() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < partitions && !eof[m->partition]) {
                eof[m->partition] = true;
                eofs++;
            }
        } else if (!m->err) {
            if (n == cap) {
                cap *= 2;
                msgs = realloc(msgs, cap * sizeof *msgs);
            }
            dbt_msg *d = &msgs[n++];
            memset(d, 0, sizeof *d);
            dbt_header(m, "ce_id", d->ce_id, sizeof d->ce_id);
            dbt_header(m, "traceparent", d->traceparent, sizeof d->traceparent);
            dbt_header(m, "ce_type", d->ce_type, sizeof d->ce_type);
            d->key_null = m->key == NULL;
            d->key_len = m->key ? m->key_len : 0;
            dbt_copy_bytes(d->key, sizeof d->key, m->key, d->key_len);
            d->value_len = m->payload ? m->len : 0;
            dbt_copy_bytes(d->value, sizeof d->value, m->payload, d->value_len);
            d->partition = m->partition;
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) h = NULL;
            const char *hname;
            const void *hv;
            size_t hlen;
            while (h && d->nheaders < DBT_MSG_HEADERS &&
                   rd_kafka_header_get_all(h, d->nheaders, &hname, &hv, &hlen) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR) {
                size_t k = d->nheaders++;
                snprintf(d->headers[k].name, sizeof d->headers[k].name, "%s", hname);
                d->headers[k].len = hv ? hlen : 0;
                dbt_copy_bytes(d->headers[k].value, sizeof d->headers[k].value, hv,
                               d->headers[k].len);
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(eof);
    if (eofs < partitions) {
        free(msgs);
        return -1;
    }
    *out = msgs;
    return (long)n;
}

#endif
