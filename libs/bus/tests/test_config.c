/* Configuration validation and librdkafka settings. No Kafka needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bus_internal.h"

static void conf_expect(rd_kafka_conf_t *conf, const char *key, const char *want)
{
    char v[256];
    size_t n = sizeof v;
    assert_int_equal(rd_kafka_conf_get(conf, key, v, &n), RD_KAFKA_CONF_OK);
    assert_string_equal(v, want);
}

static void test_producer_conf_defaults(void **state)
{
    (void)state;
    char err[256] = "";
    bus_producer_config cfg = {.brokers = "127.0.0.1:9092",
                               .client_id = "svc",
                               .linger_ms = 50,
                               .batch_size = 65536,
                               .queue_max_messages = 1000};
    rd_kafka_conf_t *conf = bus_producer_conf(&cfg, err, sizeof err);
    assert_non_null(conf);
    conf_expect(conf, "enable.idempotence", "true");
    conf_expect(conf, "bootstrap.servers", "127.0.0.1:9092");
    conf_expect(conf, "client.id", "svc");
    conf_expect(conf, "linger.ms", "50");
    conf_expect(conf, "batch.size", "65536");
    conf_expect(conf, "queue.buffering.max.messages", "1000");
    conf_expect(conf, "partitioner", "murmur2_random");
    rd_kafka_conf_destroy(conf);
}

static void test_producer_conf_errors(void **state)
{
    (void)state;
    char err[256];
    bus_producer_config none = {0};
    assert_null(bus_producer_conf(&none, err, sizeof err));
    assert_non_null(strstr(err, "brokers"));

    bus_producer_config neg = {.brokers = "b:1", .linger_ms = -1};
    assert_null(bus_producer_conf(&neg, err, sizeof err));

    const char *const locked[] = {"enable.idempotence", "false", NULL};
    bus_producer_config l = {.brokers = "b:1", .extra = locked};
    assert_null(bus_producer_conf(&l, err, sizeof err));
    assert_non_null(strstr(err, "enable.idempotence"));

    const char *const odd[] = {"linger.ms", NULL};
    bus_producer_config o = {.brokers = "b:1", .extra = odd};
    assert_null(bus_producer_conf(&o, err, sizeof err));
    assert_non_null(strstr(err, "linger.ms"));

    const char *const unknown[] = {"no.such.setting", "1", NULL};
    bus_producer_config u = {.brokers = "b:1", .extra = unknown};
    assert_null(bus_producer_conf(&u, err, sizeof err));
    assert_non_null(strstr(err, "no.such.setting"));

    const char *const badval[] = {"linger.ms", "soon", NULL};
    bus_producer_config b = {.brokers = "b:1", .extra = badval};
    assert_null(bus_producer_conf(&b, err, sizeof err));
    assert_non_null(strstr(err, "linger.ms"));
}

static void test_producer_new_rejects_acks_1(void **state)
{
    (void)state;
    /* enable.idempotence requires acks=all: librdkafka refuses the handle itself. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *const extra[] = {"acks", "1", NULL};
    bus_producer_config cfg = {.brokers = "127.0.0.1:1", .extra = extra};
    char err[256] = "";
    assert_null(bus_producer_new(&loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "acks"));
    uv_loop_close(&loop);
}

static void noop_handler(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    bus_done(c, m, BUS_OK, NULL);
}

static void test_consumer_settings_defaults(void **state)
{
    (void)state;
    const char *const topics[] = {"a", "b", NULL};
    bus_consumer_config cfg = {.brokers = "b:1", .group_id = "content-manager", .topics = topics};
    bus_consumer_settings s;
    char err[256];
    assert_true(bus_consumer_settings_resolve(&cfg, &s, err, sizeof err));
    assert_int_equal(s.max_attempts, 5);
    assert_int_equal(s.backoff_base_ms, 200);
    assert_int_equal(s.backoff_max_ms, 30000);
    assert_string_equal(s.group, "content-manager");
    assert_string_equal(s.dlq_topic, "dlq.content-manager");
    assert_int_equal(s.ntopics, 2);

    cfg.dlq_topic = "my.dlq";
    cfg.max_attempts = 2;
    cfg.backoff_base_ms = 10;
    cfg.backoff_max_ms = 20;
    assert_true(bus_consumer_settings_resolve(&cfg, &s, err, sizeof err));
    assert_string_equal(s.dlq_topic, "my.dlq");
    assert_int_equal(s.max_attempts, 2);
    assert_int_equal(s.backoff_base_ms, 10);

    bus_consumer_config all = {.brokers = "b:1", .topics = topics, .all_partitions = true};
    assert_true(bus_consumer_settings_resolve(&all, &s, err, sizeof err));
    assert_true(s.group[0] != '\0');
}

static void test_consumer_settings_errors(void **state)
{
    (void)state;
    const char *const topics[] = {"a", NULL};
    const char *const no_topics[] = {NULL};
    const char *const empty_topic[] = {"", NULL};
    bus_consumer_settings s;
    char err[256];

    bus_consumer_config c1 = {.group_id = "g", .topics = topics};
    assert_false(bus_consumer_settings_resolve(&c1, &s, err, sizeof err));
    assert_non_null(strstr(err, "brokers"));

    bus_consumer_config c2 = {.brokers = "b:1", .topics = topics};
    assert_false(bus_consumer_settings_resolve(&c2, &s, err, sizeof err));
    assert_non_null(strstr(err, "group_id"));

    bus_consumer_config c3 = {.brokers = "b:1", .group_id = "g", .topics = no_topics};
    assert_false(bus_consumer_settings_resolve(&c3, &s, err, sizeof err));
    assert_non_null(strstr(err, "topics"));

    bus_consumer_config c4 = {.brokers = "b:1", .group_id = "g", .topics = empty_topic};
    assert_false(bus_consumer_settings_resolve(&c4, &s, err, sizeof err));

    bus_consumer_config c5 = {
        .brokers = "b:1", .group_id = "g", .topics = topics, .auto_offset_reset = "smallest"};
    assert_false(bus_consumer_settings_resolve(&c5, &s, err, sizeof err));
    assert_non_null(strstr(err, "auto_offset_reset"));

    bus_consumer_config c6 = {.brokers = "b:1",
                              .group_id = "g",
                              .topics = topics,
                              .backoff_base_ms = 5000,
                              .backoff_max_ms = 100};
    assert_false(bus_consumer_settings_resolve(&c6, &s, err, sizeof err));
    assert_non_null(strstr(err, "backoff"));

    bus_consumer_config c7 = {
        .brokers = "b:1", .group_id = "g", .topics = topics, .max_attempts = 100000};
    assert_false(bus_consumer_settings_resolve(&c7, &s, err, sizeof err));

    bus_consumer_config c8 = {.brokers = "b:1", .group_id = "g", .topics = NULL};
    assert_false(bus_consumer_settings_resolve(&c8, &s, err, sizeof err));
}

static void test_consumer_conf(void **state)
{
    (void)state;
    const char *const topics[] = {"a", NULL};
    char err[256];
    bus_consumer_config cfg = {.brokers = "b:1",
                               .group_id = "g",
                               .topics = topics,
                               .client_id = "svc",
                               .auto_offset_reset = "latest"};
    rd_kafka_conf_t *conf = bus_consumer_conf(&cfg, "g", err, sizeof err);
    assert_non_null(conf);
    conf_expect(conf, "enable.auto.offset.store", "false");
    conf_expect(conf, "enable.auto.commit", "true");
    conf_expect(conf, "group.id", "g");
    conf_expect(conf, "auto.offset.reset", "largest"); /* librdkafka's spelling */
    rd_kafka_conf_destroy(conf);

    cfg.all_partitions = true;
    conf = bus_consumer_conf(&cfg, "g", err, sizeof err);
    assert_non_null(conf);
    conf_expect(conf, "enable.auto.commit", "false");
    rd_kafka_conf_destroy(conf);

    const char *const locked[] = {"enable.auto.offset.store", "true", NULL};
    cfg.extra = locked;
    assert_null(bus_consumer_conf(&cfg, "g", err, sizeof err));
    assert_non_null(strstr(err, "enable.auto.offset.store"));
}

static void test_consumer_new_validates(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *const topics[] = {"a", NULL};
    bus_consumer_config cfg = {.brokers = "b:1", .group_id = "g", .topics = topics};
    char err[256] = "";
    assert_null(bus_consumer_new(&loop, &cfg, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "handler"));
    bus_consumer_config bad = {.brokers = "b:1", .topics = topics};
    assert_null(bus_consumer_new(&loop, &bad, noop_handler, NULL, err, sizeof err));
    assert_non_null(strstr(err, "group_id"));
    uv_loop_close(&loop);
}

static void test_catalog_find(void **state)
{
    (void)state;
    const bus_topic_spec *t = bus_catalog_find(TOPIC_CONTENT_ITEMS);
    assert_non_null(t);
    assert_string_equal(t->name, TOPIC_CONTENT_ITEMS);
    assert_true(t->partitions > 0);
    const bus_topic_spec *cp = bus_catalog_find(TOPIC_PLATFORM_OUTBOX_CHECKPOINTS);
    assert_non_null(cp);
    assert_string_equal(cp->cleanup_policy, "compact");
    assert_null(bus_catalog_find("no.such.topic"));
    assert_null(bus_catalog_find(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producer_conf_defaults),
        cmocka_unit_test(test_producer_conf_errors),
        cmocka_unit_test(test_producer_new_rejects_acks_1),
        cmocka_unit_test(test_consumer_settings_defaults),
        cmocka_unit_test(test_consumer_settings_errors),
        cmocka_unit_test(test_consumer_conf),
        cmocka_unit_test(test_consumer_new_validates),
        cmocka_unit_test(test_catalog_find),
    };
    return cmocka_run_group_tests_name("bus_config", tests, NULL, NULL);
}
