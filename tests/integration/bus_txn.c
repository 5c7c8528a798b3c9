/*
 * The transactional producer and bus_read_last against the real broker: committed records are
 * visible to read_committed readers, aborted ones are not; bus_read_last finds a key's latest
 * committed value; a second producer with the same transactional.id fences the first.
 * Needs KAFKA_BROKERS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "contentengine/v1/platform.pb-c.h"
#include "bus_test.h"
#include "test_support.h"

static const char *brokers;
static uv_loop_t loop;

static ts_bus_topics created; /* deleted by group_teardown */

typedef struct waiter {
    bool done;
    bool abortable;
    bool found;
    char err[512];
    uint8_t value[512];
    size_t len;
} waiter;

static bool waiter_done(void *data)
{
    return ((waiter *)data)->done;
}

static void make_topic(char *name, size_t size, const char *prefix, int partitions,
                       const char *const *config)
{
    ts_bus_make_topic(&loop, brokers, name, size, prefix, partitions, config, &created);
}

static void on_txn(void *data, const char *err, bool abortable)
{
    waiter *w = data;
    w->done = true;
    w->abortable = abortable;
    snprintf(w->err, sizeof w->err, "%s", err ? err : "");
}

static void txn_call(void (*fn)(bus_txn_producer *, bus_txn_cb, void *), bus_txn_producer *t,
                     waiter *w)
{
    memset(w, 0, sizeof *w);
    fn(t, on_txn, w);
    assert_true(ts_run_until(&loop, waiter_done, w, 60000));
}

static void txn_ok(void (*fn)(bus_txn_producer *, bus_txn_cb, void *), bus_txn_producer *t)
{
    waiter w;
    txn_call(fn, t, &w);
    if (w.err[0]) fail_msg("transactional call failed: %s", w.err);
}

static bus_txn_producer *new_txn(const char *txn_id)
{
    char err[256];
    bus_txn_config cfg = {.brokers = brokers,
                          .client_id = "bus-it-relay",
                          .source = "/tests/relay",
                          .transactional_id = txn_id};
    bus_txn_producer *t = bus_txn_new(&loop, &cfg, err, sizeof err);
    if (!t) fail_msg("bus_txn_new: %s", err);
    txn_ok(bus_txn_init, t);
    return t;
}

static void txn_send(bus_txn_producer *t, const char *topic, const char *key, const void *value,
                     size_t len)
{
    char err[256];
    bus_record r = {.topic = topic,
                    .partition = BUS_PARTITION_ANY,
                    .key = key,
                    .key_len = strlen(key),
                    .value = value,
                    .value_len = len,
                    .ce_type = "contentengine.test.txn.v1"};
    if (bus_txn_produce(t, &r, err, sizeof err) != 0) fail_msg("bus_txn_produce: %s", err);
}

static void txn_begin(bus_txn_producer *t)
{
    char err[256];
    if (bus_txn_begin(t, err, sizeof err) != 0) fail_msg("bus_txn_begin: %s", err);
}

static void close_txn(bus_txn_producer *t)
{
    bool closed = false;
    bus_txn_close(t, ts_set_flag, &closed);
    assert_true(ts_run_until(&loop, ts_flag_set, &closed, 60000));
}

/* Every value of partition 0 with a plain client, at the given isolation level. */
static int read_values(const char *topic, const char *isolation, char out[][32], int max)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "bus-it-reader", e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "isolation.level", isolation, e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0;
    int64_t deadline = core_mono_ns() + 20 * (int64_t)1000000000;
    while (core_mono_ns() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        if (!m->err && n < max) {
            size_t len = m->len < 31 ? m->len : 31;
            memcpy(out[n], m->payload, len);
            out[n][len] = '\0';
            n++;
        }
        rd_kafka_message_destroy(m);
        if (eof) break;
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static void test_commit_visible_abort_not(void **state)
{
    (void)state;
    char topic[128], txn_id[128];
    make_topic(topic, sizeof topic, "bus-it-txn", 1, NULL);
    ts_unique_name(txn_id, sizeof txn_id, "bus-it-relay");
    bus_txn_producer *t = new_txn(txn_id);

    txn_begin(t);
    txn_send(t, topic, "k", "c1", 2);
    txn_send(t, topic, "k", "c2", 2);
    txn_ok(bus_txn_commit, t);

    txn_begin(t);
    txn_send(t, topic, "k", "a1", 2);
    txn_send(t, topic, "k", "a2", 2);
    ts_run_for(&loop, 200); /* let them reach the log before the abort */
    txn_ok(bus_txn_abort, t);

    txn_begin(t);
    txn_send(t, topic, "k", "c3", 2);
    txn_ok(bus_txn_commit, t);

    char vals[16][32];
    int n = read_values(topic, "read_committed", vals, 16);
    assert_int_equal(n, 3);
    assert_string_equal(vals[0], "c1");
    assert_string_equal(vals[1], "c2");
    assert_string_equal(vals[2], "c3");
    /* The aborted records are in the log: read_uncommitted shows them. */
    n = read_values(topic, "read_uncommitted", vals, 16);
    assert_int_equal(n, 5);
    assert_string_equal(vals[2], "a1");
    close_txn(t);
}

static void on_read_last(void *data, const char *err, bool found, const void *value, size_t len)
{
    waiter *w = data;
    w->done = true;
    w->found = found;
    snprintf(w->err, sizeof w->err, "%s", err ? err : "");
    w->len = 0;
    if (found && len <= sizeof w->value) {
        memcpy(w->value, value, len);
        w->len = len;
    }
}

static void read_last(const char *topic, const char *key, waiter *w)
{
    memset(w, 0, sizeof *w);
    bus_read_last(&loop, brokers, topic, 0, key, strlen(key), on_read_last, w);
    assert_false(w->done);
    assert_true(ts_run_until(&loop, waiter_done, w, 90000));
}

static void send_checkpoint(bus_txn_producer *t, const char *topic, const char *relay,
                            int64_t first_id)
{
    Contentengine__V1__OutboxCheckpoint cp = CONTENTENGINE__V1__OUTBOX_CHECKPOINT__INIT;
    int64_t ids[2] = {first_id, first_id + 1};
    cp.relay = (char *)relay;
    cp.outbox_ids = ids;
    cp.n_outbox_ids = 2;
    cp.committed_unix_ms = core_now_unix_ms();
    uint8_t buf[256];
    size_t len = contentengine__v1__outbox_checkpoint__pack(&cp, buf);
    txn_send(t, topic, relay, buf, len);
}

static int64_t checkpoint_first_id(const waiter *w)
{
    Contentengine__V1__OutboxCheckpoint *cp =
        contentengine__v1__outbox_checkpoint__unpack(NULL, w->len, w->value);
    assert_non_null(cp);
    assert_int_equal(cp->n_outbox_ids, 2);
    int64_t id = cp->outbox_ids[0];
    contentengine__v1__outbox_checkpoint__free_unpacked(cp, NULL);
    return id;
}

static void test_read_last_checkpoint(void **state)
{
    (void)state;
    char topic[128], txn_id[128];
    const char *const compacted[] = {"cleanup.policy", "compact", NULL};
    make_topic(topic, sizeof topic, "bus-it-checkpoints", 1, compacted);

    /* An empty topic: nothing found, no error. */
    waiter w;
    read_last(topic, "relay-a", &w);
    assert_string_equal(w.err, "");
    assert_false(w.found);

    ts_unique_name(txn_id, sizeof txn_id, "bus-it-relay");
    bus_txn_producer *t = new_txn(txn_id);
    txn_begin(t);
    send_checkpoint(t, topic, "relay-a", 10);
    send_checkpoint(t, topic, "relay-b", 500);
    txn_ok(bus_txn_commit, t);
    txn_begin(t);
    send_checkpoint(t, topic, "relay-a", 20);
    txn_ok(bus_txn_commit, t);
    /* Aborted: must not count as the latest. */
    txn_begin(t);
    send_checkpoint(t, topic, "relay-a", 30);
    ts_run_for(&loop, 200);
    txn_ok(bus_txn_abort, t);

    read_last(topic, "relay-a", &w);
    assert_string_equal(w.err, "");
    assert_true(w.found);
    assert_int_equal(checkpoint_first_id(&w), 20);
    read_last(topic, "relay-b", &w);
    assert_true(w.found);
    assert_int_equal(checkpoint_first_id(&w), 500);
    read_last(topic, "relay-c", &w);
    assert_string_equal(w.err, "");
    assert_false(w.found);

    /* An open transaction at the end of the partition does not hang the reader. */
    txn_begin(t);
    send_checkpoint(t, topic, "relay-a", 40);
    ts_run_for(&loop, 300);
    read_last(topic, "relay-a", &w);
    assert_string_equal(w.err, "");
    assert_true(w.found);
    assert_int_equal(checkpoint_first_id(&w), 20);
    txn_ok(bus_txn_commit, t);
    read_last(topic, "relay-a", &w);
    assert_int_equal(checkpoint_first_id(&w), 40);

    /* A topic that does not exist is an error, not "not found". */
    read_last("bus-it-no-such-topic-anywhere", "relay-a", &w);
    assert_true(w.err[0] != '\0');
    close_txn(t);
}

static void test_new_instance_fences_the_old_one(void **state)
{
    (void)state;
    char topic[128], txn_id[128];
    make_topic(topic, sizeof topic, "bus-it-fence", 1, NULL);
    ts_unique_name(txn_id, sizeof txn_id, "bus-it-relay");
    bus_txn_producer *old = new_txn(txn_id);
    txn_begin(old);
    txn_send(old, topic, "k", "zombie", 6);
    ts_run_for(&loop, 200);

    /* The restarted relay: its init aborts the old open transaction and fences it. */
    bus_txn_producer *fresh = new_txn(txn_id);
    waiter w;
    txn_call(bus_txn_commit, old, &w);
    assert_true(w.err[0] != '\0');
    assert_false(w.abortable); /* fenced: this producer is done for */
    close_txn(old);

    txn_begin(fresh);
    txn_send(fresh, topic, "k", "live", 4);
    txn_ok(bus_txn_commit, fresh);
    char vals[8][32];
    int n = read_values(topic, "read_committed", vals, 8);
    assert_int_equal(n, 1);
    assert_string_equal(vals[0], "live");
    close_txn(fresh);
}

static int group_setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_bus_teardown(&loop, brokers, &created);
    return 0;
}

int main(void)
{
    brokers = ts_env("KAFKA_BROKERS");
    if (!brokers) return ts_bus_skip_all("bus_txn");
    core_log_init("bus_txn", CORE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_visible_abort_not),
        cmocka_unit_test(test_read_last_checkpoint),
        cmocka_unit_test(test_new_instance_fences_the_old_one),
    };
    return cmocka_run_group_tests_name("bus_txn", tests, group_setup, group_teardown);
}
