/* Dead-letter headers and retry scheduling. No Kafka needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bus_internal.h"

static void assert_header(const rd_kafka_headers_t *h, const char *name, const char *want)
{
    const void *v = NULL;
    size_t n = 0;
    assert_int_equal(rd_kafka_header_get_last(h, name, &v, &n), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
}

static size_t header_count(const rd_kafka_headers_t *h, const char *name)
{
    size_t count = 0;
    const void *v;
    size_t n;
    while (rd_kafka_header_get(h, count, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR)
        count++;
    return count;
}

static void test_dlq_headers_keep_original_and_add_story(void **state)
{
    (void)state;
    rd_kafka_headers_t *orig = rd_kafka_headers_new(4);
    rd_kafka_header_add(orig, "ce_id", -1, "id-1", 4);
    rd_kafka_header_add(orig, "ce_type", -1, "t.v1", 4);
    rd_kafka_header_add(orig, "x-bin", -1, "\x00\xff", 2);
    bus_dlq_info info = {.topic = "content.items",
                         .partition = 3,
                         .offset = 1234567890123,
                         .group = "distributor",
                         .error = "payload does not parse",
                         .attempts = 5,
                         .time_ms = 1700000000123};
    rd_kafka_headers_t *h = bus_dlq_headers(orig, &info);
    assert_header(h, "ce_id", "id-1");
    assert_header(h, "ce_type", "t.v1");
    const void *bin;
    size_t binlen;
    assert_int_equal(rd_kafka_header_get_last(h, "x-bin", &bin, &binlen), 0);
    assert_int_equal(binlen, 2);
    assert_memory_equal(bin, "\x00\xff", 2);
    assert_header(h, BUS_DLQ_H_TOPIC, "content.items");
    assert_header(h, BUS_DLQ_H_PARTITION, "3");
    assert_header(h, BUS_DLQ_H_OFFSET, "1234567890123");
    assert_header(h, BUS_DLQ_H_GROUP, "distributor");
    assert_header(h, BUS_DLQ_H_ERROR, "payload does not parse");
    assert_header(h, BUS_DLQ_H_ATTEMPTS, "5");
    assert_header(h, BUS_DLQ_H_TIME, "2023-11-14T22:13:20.123Z");
    assert_int_equal(rd_kafka_header_cnt(h), 3 + 7);
    /* the original is untouched */
    assert_int_equal(rd_kafka_header_cnt(orig), 3);
    rd_kafka_headers_destroy(h);
    rd_kafka_headers_destroy(orig);
}

static void test_dlq_headers_replace_an_earlier_story(void **state)
{
    (void)state;
    bus_dlq_info first = {.topic = "a",
                          .partition = 0,
                          .offset = 1,
                          .group = "g1",
                          .error = "first",
                          .attempts = 1,
                          .time_ms = 0};
    rd_kafka_headers_t *h1 = bus_dlq_headers(NULL, &first);
    bus_dlq_info second = {.topic = "dlq.g1",
                           .partition = 0,
                           .offset = 9,
                           .group = "g2",
                           .error = "second",
                           .attempts = 2,
                           .time_ms = 0};
    rd_kafka_headers_t *h2 = bus_dlq_headers(h1, &second);
    assert_int_equal(header_count(h2, BUS_DLQ_H_ERROR), 1);
    assert_int_equal(header_count(h2, BUS_DLQ_H_GROUP), 1);
    assert_header(h2, BUS_DLQ_H_ERROR, "second");
    assert_header(h2, BUS_DLQ_H_TOPIC, "dlq.g1");
    rd_kafka_headers_destroy(h1);
    rd_kafka_headers_destroy(h2);
}

static void test_dlq_error_text_bounds(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bus_dlq_info info = {.topic = "t", .error = big, .attempts = 1};
    rd_kafka_headers_t *h = bus_dlq_headers(NULL, &info);
    const void *v;
    size_t n;
    assert_int_equal(rd_kafka_header_get_last(h, BUS_DLQ_H_ERROR, &v, &n), 0);
    assert_int_equal(n, 1024);
    rd_kafka_headers_destroy(h);

    bus_dlq_info none = {.topic = "t", .error = NULL, .attempts = 1};
    h = bus_dlq_headers(NULL, &none);
    assert_header(h, BUS_DLQ_H_ERROR, "unspecified error");
    assert_header(h, BUS_DLQ_H_GROUP, "");
    rd_kafka_headers_destroy(h);
}

static void test_retry_delay_bounds(void **state)
{
    (void)state;
    for (unsigned attempt = 1; attempt <= 12; attempt++) {
        int64_t cap = 200;
        for (unsigned i = 1; i < attempt && cap < 30000; i++)
            cap *= 2;
        if (cap > 30000) cap = 30000;
        int64_t lo = INT64_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            int64_t d = bus_retry_delay_ms(attempt, 200, 30000);
            assert_true(d >= 1);
            assert_true(d <= cap);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        /* full jitter: the whole window is used */
        assert_true(lo < cap / 4 + 1);
        assert_true(hi > cap / 2);
    }
    assert_int_equal(bus_retry_delay_ms(3, 0, 0), 1);
    assert_true(bus_retry_delay_ms(0, 100, 1000) <= 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlq_headers_keep_original_and_add_story),
        cmocka_unit_test(test_dlq_headers_replace_an_earlier_story),
        cmocka_unit_test(test_dlq_error_text_bounds),
        cmocka_unit_test(test_retry_delay_bounds),
    };
    return cmocka_run_group_tests_name("bus_dlq", tests, NULL, NULL);
}
