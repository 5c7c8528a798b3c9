/* The loop glue with no broker to talk to: delivery reports for every record, back-pressure,
 * close paths that leave the loop empty. Uses 127.0.0.1:1, where nothing listens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "test_support.h"

#define NOWHERE "127.0.0.1:1"

typedef struct counts {
    int delivered_ok, delivered_err, closed, space;
    size_t remaining;
    bool cb_called;
    char err[256];
    bool found;
} counts;

static void on_delivery(void *opaque, int err, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)partition;
    (void)offset;
    counts *c = opaque;
    if (err) {
        assert_non_null(errstr);
        c->delivered_err++;
    } else {
        c->delivered_ok++;
    }
}

static void on_producer_closed(void *data, size_t remaining)
{
    counts *c = data;
    c->closed++;
    c->remaining = remaining;
}

static bool is_closed(void *data)
{
    return ((counts *)data)->closed > 0;
}

static void finish_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0); /* nothing left open */
}

static bus_producer *offline_producer(uv_loop_t *loop)
{
    char err[256];
    bus_producer_config cfg = {.brokers = NOWHERE, .client_id = "offline"};
    bus_producer *p = bus_producer_new(loop, &cfg, err, sizeof err);
    assert_non_null(p);
    return p;
}

/* Runs first: the first handle of the process decides. Plaintext Kafka needs no Cyrus SASL
 * plugin, so none is loaded (bus_rd_kafka_new). */
static void test_first_handle_loads_no_sasl_plugin(void **state)
{
    (void)state;
    unsetenv("SASL_PATH");
    uv_loop_t loop;
    uv_loop_init(&loop);
    bus_producer *p = offline_producer(&loop);
    assert_non_null(getenv("SASL_PATH"));
    assert_string_equal(getenv("SASL_PATH"), "");
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    bool plugin = false;
    while (fgets(line, sizeof line, maps))
        plugin = plugin || strstr(line, "/sasl2/") != NULL;
    fclose(maps);
    assert_false(plugin);
    counts c = {0};
    bus_producer_close(p, 0, on_producer_closed, &c);
    assert_true(ts_run_until(&loop, is_closed, &c, 10000));
    finish_loop(&loop);
}

static void test_close_fails_undelivered_records(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    bus_producer *p = offline_producer(&loop);
    counts c = {0};
    bus_record r = {.topic = "t", .ce_type = "x", .value = "v", .value_len = 1};
    for (int i = 0; i < 3; i++)
        assert_int_equal(bus_produce(p, &r, on_delivery, &c), 0);
    assert_int_equal(bus_producer_outstanding(p), 3);
    bus_record bad = {.topic = "t"};
    assert_int_equal(bus_produce(p, &bad, on_delivery, &c), RD_KAFKA_RESP_ERR__INVALID_ARG);
    ts_run_for(&loop, 100);
    assert_false(bus_producer_connected(p));
    bus_producer_close(p, 200, on_producer_closed, &c);
    assert_true(ts_run_until(&loop, is_closed, &c, 10000));
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.remaining, 3);
    assert_int_equal(c.delivered_err, 3); /* every record's callback ran once */
    assert_int_equal(c.delivered_ok, 0);
    finish_loop(&loop);
}

static void on_space(void *data)
{
    ((counts *)data)->space++;
}

static void test_queue_full_and_on_space(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    /* Records expire after 300 ms: their failed deliveries make room. */
    const char *const extra[] = {"message.timeout.ms", "300", NULL};
    bus_producer_config cfg = {.brokers = NOWHERE, .queue_max_messages = 5, .extra = extra};
    bus_producer *p = bus_producer_new(&loop, &cfg, err, sizeof err);
    assert_non_null(p);
    counts c = {0};
    bus_record r = {.topic = "t", .ce_type = "x"};
    int accepted = 0, rc = 0;
    while ((rc = bus_produce(p, &r, on_delivery, &c)) == 0)
        accepted++;
    assert_int_equal(rc, RD_KAFKA_RESP_ERR__QUEUE_FULL);
    assert_int_equal(accepted, 5);
    bus_producer_on_space(p, 0, on_space, &c);
    assert_int_equal(c.space, 0); /* never from inside the call */
    ts_run_for(&loop, 1500);
    assert_int_equal(c.space, 1);
    assert_int_equal(c.delivered_err, 5);
    assert_int_equal(bus_producer_outstanding(p), 0);
    /* Already below the mark: called back from the loop, once. */
    bus_producer_on_space(p, 0, on_space, &c);
    assert_int_equal(c.space, 1);
    ts_run_for(&loop, 20);
    assert_int_equal(c.space, 2);
    bus_producer_close(p, 1000, on_producer_closed, &c);
    assert_true(ts_run_until(&loop, is_closed, &c, 10000));
    assert_int_equal(c.remaining, 0);
    finish_loop(&loop);
}

static void never_handler(bus_consumer *bc, const bus_message *m, void *data)
{
    (void)bc;
    (void)m;
    (void)data;
    fail_msg("no message can arrive without a broker");
}

static void on_closed(void *data)
{
    ((counts *)data)->closed++;
}

static void test_consumer_close_without_broker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    const char *const topics[] = {"t", NULL};
    bus_consumer_config cfg = {.brokers = NOWHERE, .group_id = "g", .topics = topics};
    bus_consumer *bc = bus_consumer_new(&loop, &cfg, never_handler, NULL, err, sizeof err);
    assert_non_null(bc);
    ts_run_for(&loop, 200);
    assert_false(bus_consumer_connected(bc));
    counts c = {0};
    bus_consumer_close(bc, on_closed, &c);
    assert_true(ts_run_until(&loop, is_closed, &c, 20000));
    finish_loop(&loop);
}

static void test_all_partitions_consumer_close_without_broker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    const char *const topics[] = {"t", NULL};
    bus_consumer_config cfg = {.brokers = NOWHERE, .topics = topics, .all_partitions = true};
    bus_consumer *bc = bus_consumer_new(&loop, &cfg, never_handler, NULL, err, sizeof err);
    assert_non_null(bc);
    ts_run_for(&loop, 100);
    counts c = {0};
    /* The metadata request is still waiting on the thread pool: close waits for it. */
    bus_consumer_close(bc, on_closed, &c);
    assert_true(ts_run_until(&loop, is_closed, &c, 30000));
    finish_loop(&loop);
}

static void on_txn(void *data, const char *err, bool abortable)
{
    (void)abortable;
    counts *c = data;
    c->cb_called = true;
    snprintf(c->err, sizeof c->err, "%s", err ? err : "");
}

static void test_txn_producer_close_without_broker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    bus_txn_config bad = {.brokers = NOWHERE};
    assert_null(bus_txn_new(&loop, &bad, err, sizeof err));
    assert_non_null(strstr(err, "transactional_id"));
    bus_txn_config cfg = {
        .brokers = NOWHERE, .transactional_id = "offline-relay", .transaction_timeout_ms = 1000};
    bus_txn_producer *t = bus_txn_new(&loop, &cfg, err, sizeof err);
    assert_non_null(t);
    /* Not initialised: begin refuses without blocking. */
    assert_int_equal(bus_txn_begin(t, err, sizeof err), RD_KAFKA_RESP_ERR__STATE);
    counts c = {0};
    bus_txn_init(t, on_txn, &c);
    /* A second blocking call while the first runs is refused at once. */
    counts c2 = {0};
    bus_txn_commit(t, on_txn, &c2);
    assert_true(c2.cb_called);
    assert_non_null(strstr(c2.err, "still running"));
    counts closed = {0};
    bus_txn_close(t, on_closed, &closed); /* waits for init to give up */
    assert_true(ts_run_until(&loop, is_closed, &closed, 60000));
    assert_true(c.cb_called);
    assert_true(c.err[0] != '\0');
    finish_loop(&loop);
}

static void on_read_last(void *data, const char *err, bool found, const void *value, size_t len)
{
    (void)value;
    (void)len;
    counts *c = data;
    c->cb_called = true;
    c->found = found;
    snprintf(c->err, sizeof c->err, "%s", err ? err : "");
}

static bool cb_called(void *data)
{
    return ((counts *)data)->cb_called;
}

static void test_read_last_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    counts c = {0};
    bus_read_last(&loop, NOWHERE, NULL, 0, "k", 1, on_read_last, &c);
    assert_false(c.cb_called); /* reported from the loop */
    assert_true(ts_run_until(&loop, cb_called, &c, 5000));
    assert_true(c.err[0] != '\0');
    assert_false(c.found);
    finish_loop(&loop);
}

static void on_admin(void *data, const char *err)
{
    counts *c = data;
    c->cb_called = true;
    snprintf(c->err, sizeof c->err, "%s", err ? err : "");
}

static void test_admin_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    counts c = {0};
    bus_admin_create_topic(&loop, NOWHERE, "t", 0, NULL, on_admin, &c);
    assert_true(ts_run_until(&loop, cb_called, &c, 5000));
    assert_non_null(strstr(c.err, "partitions"));
    counts c2 = {0};
    const char *const odd[] = {"cleanup.policy", NULL};
    bus_admin_create_topic(&loop, NOWHERE, "t", 1, odd, on_admin, &c2);
    assert_true(ts_run_until(&loop, cb_called, &c2, 5000));
    assert_non_null(strstr(c2.err, "pairs"));
    finish_loop(&loop);
}

int main(void)
{
    core_log_init("test_offline", CORE_LOG_FATAL); /* connection errors are expected here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_handle_loads_no_sasl_plugin),
        cmocka_unit_test(test_close_fails_undelivered_records),
        cmocka_unit_test(test_queue_full_and_on_space),
        cmocka_unit_test(test_consumer_close_without_broker),
        cmocka_unit_test(test_all_partitions_consumer_close_without_broker),
        cmocka_unit_test(test_txn_producer_close_without_broker),
        cmocka_unit_test(test_read_last_bad_arguments),
        cmocka_unit_test(test_admin_bad_arguments),
    };
    return cmocka_run_group_tests_name("bus_offline", tests, NULL, NULL);
}
