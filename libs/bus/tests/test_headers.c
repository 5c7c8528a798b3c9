/* CloudEvents headers: building, parsing, round trips, ids. No Kafka needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"

static const char *hget(const rd_kafka_headers_t *h, const char *name, size_t *len)
{
    const void *v = NULL;
    size_t n = 0;
    if (rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (len) *len = n;
    return v;
}

/* Header values are not NUL-terminated: compare with their length. */
static void assert_header(const rd_kafka_headers_t *h, const char *name, const char *want)
{
    size_t n = 0;
    const char *v = hget(h, name, &n);
    assert_non_null(v);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
}

static void header_text(const rd_kafka_headers_t *h, const char *name, char *out, size_t size)
{
    size_t n = 0;
    const char *v = hget(h, name, &n);
    assert_non_null(v);
    assert_true(n < size);
    memcpy(out, v, n);
    out[n] = '\0';
}

static void test_build_fills_in_defaults(void **state)
{
    (void)state;
    core_log_set_trace(NULL);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    bus_record r = {.topic = "t", .ce_type = "contentengine.test.v1"};
    char err[128] = "";
    int64_t now = core_now_unix_ms();
    assert_int_equal(bus_headers_build(h, &r, "/services/test", now, err, sizeof err), 0);

    assert_header(h, "ce_specversion", "1.0");
    assert_header(h, "ce_type", "contentengine.test.v1");
    assert_header(h, "ce_source", "/services/test");
    assert_header(h, "content-type", "application/protobuf");
    assert_null(hget(h, "ce_subject", NULL));

    char id[64];
    header_text(h, "ce_id", id, sizeof id);
    core_uuid u;
    assert_true(core_uuid_parse(id, &u));
    assert_int_equal(u.b[6] >> 4, 7); /* version 7 */
    assert_int_equal(u.b[8] >> 6, 2); /* RFC 9562 variant */
    int64_t id_ms = core_uuid_v7_unix_ms(&u);
    assert_true(id_ms >= now - 1000 && id_ms <= now + 1000);

    char t[64];
    header_text(h, "ce_time", t, sizeof t);
    int64_t tms;
    assert_true(core_parse_rfc3339(t, &tms));
    assert_int_equal(tms, now);

    char tp[64], trace[CORE_TRACE_ID_LEN + 1], span[CORE_SPAN_ID_LEN + 1];
    uint8_t flags;
    header_text(h, "traceparent", tp, sizeof tp);
    assert_int_equal(strlen(tp), CORE_TRACEPARENT_LEN);
    assert_true(core_traceparent_parse(tp, trace, span, &flags));
    assert_int_equal(flags, 1);
    rd_kafka_headers_destroy(h);
}

static void test_build_uses_log_trace(void **state)
{
    (void)state;
    char trace[CORE_TRACE_ID_LEN + 1];
    core_trace_id_new(trace);
    core_log_set_trace(trace);
    bus_record r = {.topic = "t", .ce_type = "x"};
    char err[128];
    char tp1[64], tp2[64];
    rd_kafka_headers_t *h1 = rd_kafka_headers_new(8), *h2 = rd_kafka_headers_new(8);
    assert_int_equal(bus_headers_build(h1, &r, "s", 1000, err, sizeof err), 0);
    assert_int_equal(bus_headers_build(h2, &r, "s", 1000, err, sizeof err), 0);
    header_text(h1, "traceparent", tp1, sizeof tp1);
    header_text(h2, "traceparent", tp2, sizeof tp2);
    char t1[CORE_TRACE_ID_LEN + 1], s1[CORE_SPAN_ID_LEN + 1], t2[CORE_TRACE_ID_LEN + 1],
        s2[CORE_SPAN_ID_LEN + 1];
    uint8_t f;
    assert_true(core_traceparent_parse(tp1, t1, s1, &f));
    assert_true(core_traceparent_parse(tp2, t2, s2, &f));
    assert_string_equal(t1, trace);
    assert_string_equal(t2, trace);
    assert_string_not_equal(s1, s2); /* a new span per record */
    core_log_set_trace(NULL);
    rd_kafka_headers_destroy(h1);
    rd_kafka_headers_destroy(h2);
}

static void test_build_explicit_fields_and_extras(void **state)
{
    (void)state;
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    bus_header extra[] = {{"x-tenant", "acme", 4}, {"x-bin", "\x00\x01", 2}, {NULL, "skip", 4}};
    bus_record r = {.topic = "t",
                    .ce_type = "type.v1",
                    .ce_id = "my-id",
                    .ce_subject = "items/42",
                    .ce_time_ms = 86400000 + 5,
                    .content_type = "application/json",
                    .traceparent = tp,
                    .headers = extra,
                    .nheaders = 3};
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char err[128];
    assert_int_equal(bus_headers_build(h, &r, NULL, 1, err, sizeof err), 0);
    assert_header(h, "ce_id", "my-id");
    assert_header(h, "ce_subject", "items/42");
    assert_header(h, "ce_time", "1970-01-02T00:00:00.005Z");
    assert_header(h, "content-type", "application/json");
    assert_header(h, "traceparent", tp);
    assert_header(h, "ce_source", "/unknown");
    assert_header(h, "x-tenant", "acme");
    size_t n;
    const char *b = hget(h, "x-bin", &n);
    assert_int_equal(n, 2);
    assert_memory_equal(b, "\x00\x01", 2);
    /* 8 bus headers (with the subject) + 2 extras; the nameless one is skipped */
    assert_int_equal(rd_kafka_header_cnt(h), 10);
    rd_kafka_headers_destroy(h);
}

/* A verbatim record carries only the caller's headers, in order and with duplicates, and needs
 * no ce_type; without headers it carries none at all. */
static void test_build_verbatim(void **state)
{
    (void)state;
    core_log_set_trace("4bf92f3577b34da6a3ce929d0e0e4736");
    bus_header orig[] = {{"ce_id", "orig-id", 7}, {"x-a", "1", 1}, {"x-a", "2", 1}};
    bus_record r = {
        .topic = "t", .ce_id = "ignored", .headers = orig, .nheaders = 3, .verbatim = true};
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char err[128];
    assert_int_equal(bus_headers_build(h, &r, "s", 1, err, sizeof err), 0);
    assert_int_equal(rd_kafka_header_cnt(h), 3);
    const char *name;
    const void *v;
    size_t n;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rd_kafka_header_get_all(h, i, &name, &v, &n), 0);
        assert_string_equal(name, orig[i].name);
        assert_int_equal(n, orig[i].len);
        assert_memory_equal(v, orig[i].value, n);
    }
    rd_kafka_headers_destroy(h);

    bus_record bare = {.topic = "t", .verbatim = true};
    h = rd_kafka_headers_new(8);
    assert_int_equal(bus_headers_build(h, &bare, "s", 1, err, sizeof err), 0);
    assert_int_equal(rd_kafka_header_cnt(h), 0);
    bus_record no_topic = {.verbatim = true};
    assert_int_equal(bus_headers_build(h, &no_topic, "s", 1, err, sizeof err),
                     RD_KAFKA_RESP_ERR__INVALID_ARG);
    rd_kafka_headers_destroy(h);
    core_log_set_trace(NULL);
}

static void test_build_bad_traceparent_is_replaced(void **state)
{
    (void)state;
    core_log_set_trace(NULL);
    bus_record r = {.topic = "t", .ce_type = "x", .traceparent = "garbage"};
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char err[128], tp[64], tr[CORE_TRACE_ID_LEN + 1], sp[CORE_SPAN_ID_LEN + 1];
    uint8_t f;
    assert_int_equal(bus_headers_build(h, &r, "s", 1, err, sizeof err), 0);
    header_text(h, "traceparent", tp, sizeof tp);
    assert_true(core_traceparent_parse(tp, tr, sp, &f));
    rd_kafka_headers_destroy(h);
}

static void test_build_rejects_invalid_records(void **state)
{
    (void)state;
    char err[128];
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    bus_record no_type = {.topic = "t"};
    assert_int_equal(bus_headers_build(h, &no_type, "s", 1, err, sizeof err),
                     RD_KAFKA_RESP_ERR__INVALID_ARG);
    assert_non_null(strstr(err, "ce_type"));
    bus_record no_topic = {.ce_type = "x"};
    assert_int_equal(bus_headers_build(h, &no_topic, "s", 1, err, sizeof err),
                     RD_KAFKA_RESP_ERR__INVALID_ARG);
    assert_non_null(strstr(err, "topic"));
    bus_record bad_extra = {.topic = "t", .ce_type = "x", .nheaders = 2};
    assert_int_equal(bus_headers_build(h, &bad_extra, "s", 1, err, sizeof err),
                     RD_KAFKA_RESP_ERR__INVALID_ARG);
    rd_kafka_headers_destroy(h);
}

static void test_parse_round_trip(void **state)
{
    (void)state;
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    bus_record r = {.topic = "t",
                    .ce_type = "contentengine.content.item.created.v1",
                    .ce_id = "0190a1b2-0000-7000-8000-000000000001",
                    .ce_time_ms = 1700000000123,
                    .traceparent = tp};
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char err[128];
    assert_int_equal(bus_headers_build(h, &r, "/services/content-manager", 1, err, sizeof err), 0);
    bus_msg_internal mi;
    memset(&mi, 0x5a, sizeof mi);
    bus_headers_parse(&mi, h);
    assert_string_equal(mi.msg.ce_id, r.ce_id);
    assert_string_equal(mi.msg.ce_type, r.ce_type);
    assert_string_equal(mi.msg.ce_source, "/services/content-manager");
    assert_string_equal(mi.msg.ce_time, "2023-11-14T22:13:20.123Z");
    assert_string_equal(mi.msg.traceparent, tp);
    assert_string_equal(mi.msg.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

    size_t n;
    const char *v = bus_message_header(&mi.msg, "content-type", &n);
    assert_non_null(v);
    assert_int_equal(n, strlen(BUS_CONTENT_TYPE_PROTOBUF));
    assert_null(bus_message_header(&mi.msg, "nope", &n));
    assert_int_equal(n, 0);
    rd_kafka_headers_destroy(h);
}

static void test_parse_missing_headers(void **state)
{
    (void)state;
    bus_msg_internal mi;
    memset(&mi, 0x5a, sizeof mi);
    mi.msg.topic = "t"; /* set by bus_message_from_rkm before parsing */
    mi.msg.partition = 2;
    mi.msg.offset = 77;
    bus_headers_parse(&mi, NULL);
    assert_string_equal(mi.msg.ce_id, "");
    assert_string_equal(mi.msg.ce_type, "");
    assert_string_equal(mi.msg.ce_source, "");
    assert_string_equal(mi.msg.ce_time, "");
    assert_string_equal(mi.msg.traceparent, "");
    assert_int_equal(strlen(mi.msg.trace_id), CORE_TRACE_ID_LEN); /* a new trace */
    assert_null(bus_message_header(&mi.msg, "ce_id", NULL));
}

static void test_parse_hostile_headers(void **state)
{
    (void)state;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char big[1000];
    memset(big, 'A', sizeof big);
    rd_kafka_header_add(h, "ce_type", -1, big, sizeof big);       /* oversized: cut */
    rd_kafka_header_add(h, "ce_id", -1, "ab\0cd", 5);             /* embedded NUL */
    rd_kafka_header_add(h, "ce_source", -1, NULL, 0);             /* NULL value */
    rd_kafka_header_add(h, "traceparent", -1, "00-zz-yy-01", 11); /* malformed */
    rd_kafka_header_add(h, "ce_time", -1, "first", 5);
    rd_kafka_header_add(h, "ce_time", -1, "second", 6); /* last one wins */
    bus_msg_internal mi;
    memset(&mi, 0, sizeof mi);
    bus_headers_parse(&mi, h);
    assert_int_equal(strlen(mi.msg.ce_type), sizeof mi.msg.ce_type - 1);
    assert_string_equal(mi.msg.ce_id, "ab");
    assert_string_equal(mi.msg.ce_source, "");
    assert_string_equal(mi.msg.traceparent, "");
    assert_int_equal(strlen(mi.msg.trace_id), CORE_TRACE_ID_LEN);
    assert_string_equal(mi.msg.ce_time, "second");
    size_t n = 99;
    const void *v = bus_message_header(&mi.msg, "ce_source", &n);
    assert_non_null(v); /* present, empty */
    assert_int_equal(n, 0);
    v = bus_message_header(&mi.msg, "ce_id", &n);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "ab\0cd", 5);
    rd_kafka_headers_destroy(h);
}

static void parse_tp(const char *tp, bus_msg_internal *mi)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "traceparent", -1, tp, -1);
    memset(mi, 0, sizeof *mi);
    bus_headers_parse(mi, h);
    rd_kafka_headers_destroy(h);
}

static void test_parse_traceparent_rules(void **state)
{
    (void)state;
    bus_msg_internal mi;
    const char *ok = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    parse_tp(ok, &mi);
    assert_string_equal(mi.msg.traceparent, ok);
    assert_string_equal(mi.msg.trace_id, "0af7651916cd43dd8448eb211c80319c");
    /* A later version may carry more fields: the first 55 characters are read. */
    parse_tp("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes", &mi);
    assert_string_equal(mi.msg.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_int_equal(strlen(mi.msg.traceparent), CORE_TRACEPARENT_LEN);
    static const char *const bad[] = {
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* 00 has no more */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* invalid version */
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",   /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",   /* zero trace */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   /* zero span */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",   /* flags */
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* separator */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",      /* short */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        parse_tp(bad[i], &mi);
        assert_string_equal(mi.msg.traceparent, "");
        assert_int_equal(strlen(mi.msg.trace_id), CORE_TRACE_ID_LEN);
        assert_string_not_equal(mi.msg.trace_id, "0af7651916cd43dd8448eb211c80319c");
        /* agrees with core's parser */
        char tr[CORE_TRACE_ID_LEN + 1], sp[CORE_SPAN_ID_LEN + 1];
        uint8_t f;
        assert_false(core_traceparent_parse(bad[i], tr, sp, &f));
    }
}

static void test_uuid_v7_unique_and_increasing(void **state)
{
    (void)state;
    char prev[CORE_UUID_STRLEN + 1] = "";
    for (int i = 0; i < 20000; i++) {
        char id[CORE_UUID_STRLEN + 1];
        bus_uuid_v7_string(id);
        assert_int_equal(strlen(id), CORE_UUID_STRLEN);
        core_uuid u;
        assert_true(core_uuid_parse(id, &u));
        assert_true(strcmp(id, prev) > 0);
        memcpy(prev, id, sizeof id);
    }
}

static void test_format_time_matches_core(void **state)
{
    (void)state;
    int64_t samples[] = {
        0, 1, 999, 1000, 1700000000123, 1700000000999, 1700000001000, 253402300799999};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        char a[CORE_RFC3339_LEN + 1], b[CORE_RFC3339_LEN + 1];
        bus_format_time(samples[i], a);
        core_format_rfc3339(samples[i], b);
        assert_string_equal(a, b);
    }
    int64_t now = core_now_unix_ms();
    for (int64_t t = now; t < now + 3000; t += 7) {
        char a[CORE_RFC3339_LEN + 1], b[CORE_RFC3339_LEN + 1];
        bus_format_time(t, a);
        core_format_rfc3339(t, b);
        assert_string_equal(a, b);
    }
}

static void test_span_and_trace_ids(void **state)
{
    (void)state;
    char s[CORE_SPAN_ID_LEN + 1], t[CORE_TRACE_ID_LEN + 1];
    for (int i = 0; i < 1000; i++) {
        bus_span_id_new(s);
        bus_trace_id_new(t);
        assert_int_equal(strlen(s), CORE_SPAN_ID_LEN);
        assert_int_equal(strlen(t), CORE_TRACE_ID_LEN);
        assert_int_equal(strspn(s, "0123456789abcdef"), CORE_SPAN_ID_LEN);
        assert_int_equal(strspn(t, "0123456789abcdef"), CORE_TRACE_ID_LEN);
    }
}

/* Untraced records get a trace id from their log position: stable across redeliveries, distinct
 * between records, and a valid W3C id. */
static void test_trace_id_from_position(void **state)
{
    (void)state;
    char a[CORE_TRACE_ID_LEN + 1], b[CORE_TRACE_ID_LEN + 1], c[CORE_TRACE_ID_LEN + 1];
    char d[CORE_TRACE_ID_LEN + 1], tp[CORE_TRACEPARENT_LEN + 1];
    bus_trace_id_from_position(a, "content.items", 3, 1234);
    bus_trace_id_from_position(b, "content.items", 3, 1234);
    bus_trace_id_from_position(c, "content.items", 3, 1235);
    bus_trace_id_from_position(d, "content.itemz", 3, 1234);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    bus_trace_id_from_position(d, "content.items", 4, 1234);
    assert_string_not_equal(a, d);
    /* The same ids as ever (they are in logs and traces already), whatever was asked before:
     * the topic's hash is cached per thread. */
    assert_string_equal(a, "ea9625d8293a9f498eb60e339e255eff");
    bus_trace_id_from_position(d, "x", 0, 0);
    assert_string_equal(d, "5162a98576489f41a4e47a73575fb3fb");
    bus_trace_id_from_position(d, "content.items", 3, 1234);
    assert_string_equal(d, "ea9625d8293a9f498eb60e339e255eff");
    bus_trace_id_from_position(d, NULL, 7, -1); /* NULL is "" */
    assert_string_equal(d, "d77dd16248f2e59913d2cf0e2373dd9f");
    char t[CORE_TRACE_ID_LEN + 1], sp[CORE_SPAN_ID_LEN + 1];
    core_traceparent_format(tp, a, "00f067aa0ba902b7", 1);
    assert_true(core_traceparent_parse(tp, t, sp, NULL)); /* lower-case hex, not all zero */
    bus_trace_id_from_position(a, "", 0, 0);
    core_traceparent_format(tp, a, "00f067aa0ba902b7", 1);
    assert_true(core_traceparent_parse(tp, t, sp, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_fills_in_defaults),
        cmocka_unit_test(test_build_uses_log_trace),
        cmocka_unit_test(test_build_explicit_fields_and_extras),
        cmocka_unit_test(test_build_verbatim),
        cmocka_unit_test(test_build_bad_traceparent_is_replaced),
        cmocka_unit_test(test_build_rejects_invalid_records),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_missing_headers),
        cmocka_unit_test(test_parse_hostile_headers),
        cmocka_unit_test(test_parse_traceparent_rules),
        cmocka_unit_test(test_uuid_v7_unique_and_increasing),
        cmocka_unit_test(test_format_time_matches_core),
        cmocka_unit_test(test_span_and_trace_ids),
        cmocka_unit_test(test_trace_id_from_position),
    };
    return cmocka_run_group_tests_name("bus_headers", tests, NULL, NULL);
}
