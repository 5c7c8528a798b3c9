/*
 * The idempotent consumer against real PostgreSQL and Kafka: the same event (same ce_id)
 * delivered twice has one effect, both deliveries are acknowledged, and a handler whose
 * transaction fails leaves neither the effect nor the claim behind, so the retry does it once.
 * Needs PLATFORM_TEST_DATABASE_URL and KAFKA_BROKERS (skips without them).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "db_test.h"

#define CONSUMER "db-inbox-test"

typedef struct env {
    uv_loop_t loop;
    db_pool *admin;
    db_pool *pool;
    bus_producer *producer;
    char schema[64];
    char topic[96];
    char group[96];
} env;

static int setup(void **state)
{
    *state = NULL;
    if (!ts_env("PLATFORM_TEST_DATABASE_URL") || !ts_env("KAFKA_BROKERS")) return 0;
    env *e = calloc(1, sizeof *e);
    uv_loop_init(&e->loop);
    e->admin = dbt_pool(&e->loop, NULL, 1);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    if (!e) return 0;
    dbt_close_admin_and_loop(&e->loop, e->admin);
    free(e);
    return 0;
}

static int fresh(void **state)
{
    env *e = *state;
    if (!e) return 0;
    if (!dbt_fresh_schema(&e->loop, e->admin, e->schema, sizeof e->schema, "dbinbox", 2, &e->pool))
        return -1;
    dbt_res r =
        dbt_query(&e->loop, e->pool,
                  "CREATE TABLE counters (id text PRIMARY KEY, n integer NOT NULL)", 0, NULL);
    if (!r.ok) return -1;
    r = dbt_query(&e->loop, e->pool, "INSERT INTO counters VALUES ('c', 0)", 0, NULL);
    if (!r.ok) return -1;
    ts_unique_name(e->topic, sizeof e->topic, "test.inbox");
    ts_unique_name(e->group, sizeof e->group, "db-inbox-group");
    if (!dbt_create_topic(&e->loop, e->topic, 1, false)) return -1;
    bus_producer_config pc = {.brokers = ts_env("KAFKA_BROKERS"), .client_id = "db-inbox-test"};
    char err[256];
    e->producer = bus_producer_new(&e->loop, &pc, err, sizeof err);
    if (!e->producer) {
        fprintf(stderr, "producer: %s\n", err);
        return -1;
    }
    return 0;
}

static void producer_closed(void *data, size_t remaining)
{
    (void)remaining;
    *(bool *)data = true;
}

static int cleanup(void **state)
{
    env *e = *state;
    if (!e) return 0;
    bool closed = false;
    bus_producer_close(e->producer, 5000, producer_closed, &closed);
    ts_run_until(&e->loop, ts_flag_set, &closed, DBT_TIMEOUT_MS);
    dbt_drop_schema(&e->loop, e->admin, e->pool, e->schema);
    dbt_delete_topic(&e->loop, e->topic);
    return 0;
}

#define ENV_OR_SKIP() DBT_ENV_OR_SKIP("PLATFORM_TEST_DATABASE_URL", "KAFKA_BROKERS")

/* ---------------------------------------------------------------- producing */

typedef struct delivered {
    int n, errors, want;
} delivered;

static void on_delivery(void *opaque, int err, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)errstr;
    (void)partition;
    (void)offset;
    delivered *d = opaque;
    d->n++;
    if (err) d->errors++;
}

static bool reached(void *data)
{
    delivered *d = data;
    return d->n >= d->want;
}

/* The duplicate is produced as a separate record after the first was written: a redelivery
 * (or a producer retrying at the application level) looks exactly like this. */
static void produce_three(env *e, const char *dup_id, const char *other_id)
{
    delivered d = {0};
    const char *ids[3] = {dup_id, dup_id, other_id};
    for (int i = 0; i < 3; i++) {
        bus_record r = {
            .topic = e->topic,
            .partition = BUS_PARTITION_ANY,
            .key = "c",
            .key_len = 1,
            .value = "increment",
            .value_len = 9,
            .ce_type = "contentengine.test.counter.incremented.v1",
            .ce_id = ids[i],
        };
        assert_int_equal(bus_produce(e->producer, &r, on_delivery, &d), 0);
        d.want = i + 1;
        assert_true(ts_run_until(&e->loop, reached, &d, DBT_TIMEOUT_MS));
    }
    assert_int_equal(d.errors, 0);
}

/* ---------------------------------------------------------------- the handler */

typedef struct handler_state {
    env *e;
    bus_consumer *c;
    int acked;      /* bus_done(BUS_OK) */
    int retried;    /* bus_done(BUS_RETRY) */
    int effects;    /* effects committed */
    int duplicates; /* claims that said "already handled" */
    bool fail_once; /* make the first transaction fail after the effect */
    bool failed;    /* it did */
    int deliveries;
} handler_state;

typedef struct msg_ctx {
    handler_state *h;
    const bus_message *m;
    bool first;
} msg_ctx;

static void finish(msg_ctx *x, bus_result result, const char *error)
{
    handler_state *h = x->h;
    if (result == BUS_OK)
        h->acked++;
    else
        h->retried++;
    bus_done(h->c, x->m, result, error);
    free(x);
}

static void on_committed(const db_result *r, void *data)
{
    msg_ctx *x = data;
    if (!db_result_ok(r)) {
        finish(x, BUS_RETRY, db_result_error(r));
        return;
    }
    if (x->first) x->h->effects++;
    finish(x, BUS_OK, NULL);
}

static void on_effect(db_txn *t, const db_result *r, void *data)
{
    msg_ctx *x = data;
    assert_true(db_result_ok(r));
    assert_int_equal(db_result_affected(r), 1);
    if (x->h->fail_once && !x->h->failed) {
        /* Something after the effect fails: the whole transaction rolls back. */
        x->h->failed = true;
        db_txn_query(t, "SELECT 1 / 0", 0, NULL, NULL, NULL);
    }
    db_commit(t, on_committed, x);
}

static void on_claimed(db_txn *t, const db_result *r, bool first, void *data)
{
    msg_ctx *x = data;
    if (!db_result_ok(r)) {
        db_rollback(t, NULL, NULL);
        finish(x, BUS_RETRY, db_result_error(r));
        return;
    }
    x->first = first;
    if (!first) {
        /* Already handled: nothing to do, but the delivery is acknowledged. */
        x->h->duplicates++;
        db_rollback(t, on_committed, x);
        return;
    }
    db_txn_query(t, "UPDATE counters SET n = n + 1 WHERE id = 'c'", 0, NULL, on_effect, x);
}

static void on_begun(db_txn *t, const db_result *r, void *data)
{
    msg_ctx *x = data;
    if (!t) {
        finish(x, BUS_RETRY, db_result_error(r));
        return;
    }
    db_inbox_claim(t, CONSUMER, x->m->ce_id, on_claimed, x);
}

static void handler(bus_consumer *c, const bus_message *m, void *data)
{
    handler_state *h = data;
    h->c = c;
    h->deliveries++;
    msg_ctx *x = calloc(1, sizeof *x);
    x->h = h;
    x->m = m;
    db_begin(h->e->pool, on_begun, x);
}

static bool acked_three(void *data)
{
    return ((handler_state *)data)->acked >= 3;
}

static void consumer_closed(void *data)
{
    *(bool *)data = true;
}

static bus_consumer *consumer_new(env *e, handler_state *h)
{
    const char *topics[] = {e->topic, NULL};
    bus_consumer_config cc = {
        .brokers = ts_env("KAFKA_BROKERS"),
        .group_id = e->group,
        .client_id = "db-inbox-test",
        .topics = topics,
        .dlq_producer = e->producer,
        .backoff_base_ms = 50,
        .backoff_max_ms = 200,
    };
    char err[256];
    bus_consumer *c = bus_consumer_new(&e->loop, &cc, handler, h, err, sizeof err);
    if (!c) fprintf(stderr, "consumer: %s\n", err);
    assert_non_null(c);
    return c;
}

static void consumer_close(env *e, bus_consumer *c)
{
    bool closed = false;
    bus_consumer_close(c, consumer_closed, &closed);
    assert_true(ts_run_until(&e->loop, ts_flag_set, &closed, DBT_TIMEOUT_MS));
}

static void run_case(env *e, bool fail_once)
{
    char dup[CORE_UUID_STRLEN + 1], other[CORE_UUID_STRLEN + 1];
    core_uuid_v7_string(dup);
    core_uuid_v7_string(other);
    produce_three(e, dup, other);

    handler_state h = {.e = e, .fail_once = fail_once};
    bus_consumer *c = consumer_new(e, &h);
    assert_true(ts_run_until(&e->loop, acked_three, &h, 60000));
    ts_run_for(&e->loop, 300); /* nothing more arrives */
    consumer_close(e, c);

    assert_int_equal(h.acked, 3);
    assert_int_equal(h.effects, 2); /* the duplicate had no effect */
    assert_int_equal(h.duplicates, 1);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT n FROM counters WHERE id = 'c'", 0, NULL),
                     2);
    const char *vals[2] = {CONSUMER, dup};
    assert_int_equal(dbt_int(&e->loop, e->pool,
                             "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", 2,
                             vals),
                     1);
    assert_int_equal(dbt_int(&e->loop, e->pool, "SELECT count(*) FROM inbox", 0, NULL), 2);
    if (fail_once) {
        assert_true(h.failed);
        assert_int_equal(h.retried, 1);
        assert_int_equal(h.deliveries, 4); /* one redelivery */
    } else {
        assert_int_equal(h.retried, 0);
        assert_int_equal(h.deliveries, 3);
    }

    /* The offsets were committed: the group gets nothing again. */
    handler_state again = {.e = e};
    c = consumer_new(e, &again);
    ts_run_for(&e->loop, 3000);
    consumer_close(e, c);
    assert_int_equal(again.deliveries, 0);
}

static void test_duplicate_delivery_one_effect(void **state)
{
    ENV_OR_SKIP();
    run_case(e, false);
}

static void test_failed_transaction_leaves_no_claim(void **state)
{
    ENV_OR_SKIP();
    run_case(e, true);
}

int main(void)
{
    core_log_init("db-integration", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_duplicate_delivery_one_effect, fresh, cleanup),
        cmocka_unit_test_setup_teardown(test_failed_transaction_leaves_no_claim, fresh, cleanup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
