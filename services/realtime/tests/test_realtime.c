/* Unit tests of realtime's domain files: channels, id vectors, SSE/JSON formatting, decoding,
 * and the hub's history, fan-out, resume, reset and overflow semantics (no Kafka, no HTTP). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../channel.h"
#include "../consumer.h"
#include "../hub.h"
#include "../posvec.h"
#include "../sse.h"

/* ------------------------------------------------------------ channels */

static void test_channel_names(void **state)
{
    (void)state;
    rt_channel_kind k;
    assert_true(rt_channel_name_valid("content:*", 9, &k));
    assert_int_equal(k, RT_CHANNEL_ALL_ITEMS);
    assert_true(rt_channel_name_valid("content:0190-ab_C", 17, &k));
    assert_int_equal(k, RT_CHANNEL_ITEM);
    assert_false(rt_channel_name_valid("content:", 8, &k));
    assert_false(rt_channel_name_valid("content:**", 10, &k));
    assert_false(rt_channel_name_valid("content:a/b", 11, &k));
    assert_false(rt_channel_name_valid("content:a b", 11, &k));
    assert_false(rt_channel_name_valid("users:1", 7, &k));
    char longid[80];
    memset(longid, 'a', sizeof longid);
    assert_true(rt_item_id_valid(longid, 64));
    assert_false(rt_item_id_valid(longid, 65));
}

static void test_channel_list_parsing(void **state)
{
    (void)state;
    rt_channel_list l;
    char err[256];
    assert_true(rt_channels_parse("content:a,content:*,content:a", 8, &l, err, sizeof err));
    assert_int_equal(l.n, 2); /* duplicates collapse */
    assert_string_equal(l.names[0], "content:a");
    assert_string_equal(l.names[1], "content:*");
    assert_false(rt_channels_parse("", 8, &l, err, sizeof err));
    assert_false(rt_channels_parse(NULL, 8, &l, err, sizeof err));
    assert_false(rt_channels_parse("content:a,", 8, &l, err, sizeof err));
    assert_false(rt_channels_parse("content:a,,content:b", 8, &l, err, sizeof err));
    assert_false(rt_channels_parse("content:a,content:b,content:c", 2, &l, err, sizeof err));
    assert_non_null(strstr(err, "at most 2"));
    assert_false(rt_channels_parse("nope", 8, &l, err, sizeof err));
    assert_non_null(strstr(err, "\"nope\""));
}

/* ------------------------------------------------------------ id vectors */

static void test_posvec_roundtrip_and_order(void **state)
{
    (void)state;
    rt_posvec v = {0};
    v.t0 = 1732212345678;
    assert_true(rt_posvec_set(&v, RT_TOPIC_PROGRESS, 5, 567));
    assert_true(rt_posvec_set(&v, RT_TOPIC_CONTENT, 3, 1234));
    assert_true(rt_posvec_set(&v, RT_TOPIC_CONTENT, 0, 7));
    assert_true(rt_posvec_set(&v, RT_TOPIC_CONTENT, 3, 1240)); /* update in place */
    core_buf b = {0};
    rt_posvec_format(&v, &b);
    assert_string_equal(b.data, "t1732212345678.c0:7.c3:1240.g5:567");
    rt_posvec p;
    assert_true(rt_posvec_parse(b.data, &p));
    assert_int_equal(p.n, 3);
    assert_int_equal(p.t0, 1732212345678);
    int64_t off;
    assert_true(rt_posvec_get(&p, RT_TOPIC_CONTENT, 3, &off));
    assert_int_equal(off, 1240);
    assert_false(rt_posvec_get(&p, RT_TOPIC_PROGRESS, 3, &off));
    assert_true(rt_posvec_covers(&p, &v));
    rt_posvec_set(&v, RT_TOPIC_PROGRESS, 5, 600);
    assert_false(rt_posvec_covers(&p, &v));
    rt_posvec_free(&p);
    rt_posvec_free(&v);
    core_buf_free(&b);
}

static void test_posvec_rejects_malformed(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "x1",
                         "t",
                         "t01",
                         "t1.",
                         "t1.c",
                         "t1.c1",
                         "t1.c1:",
                         "t1.x1:2",
                         "t1.c1:2.c1:3",
                         "t1.c2:1.c1:1",
                         "t1.c1:-2",
                         "t1.c70000:1",
                         "t1.c1:99999999999999999999",
                         "t1 .c1:2",
                         "t1.c1:2\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rt_posvec p;
        if (rt_posvec_parse(bad[i], &p)) fail_msg("accepted \"%s\"", bad[i]);
    }
    rt_posvec p;
    assert_true(rt_posvec_parse("t0", &p));
    assert_int_equal(p.n, 0);
    rt_posvec_free(&p);
}

/* ------------------------------------------------------------ JSON and SSE */

static void test_json_escaping(void **state)
{
    (void)state;
    core_buf b = {0};
    const char in[] = "a\"b\\c\nd\re\tf\x01g\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xff"
                      "\xc3 \xed\xa0\x80";
    rt_json_escape(&b, in, sizeof in - 1);
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007f \xc3\xa9 \xe2\x82\xac "
                                "\xf0\x9f\x98\x80 \xef\xbf\xbd\xef\xbf\xbd "
                                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_null(strchr(b.data, '\n'));
    core_buf_free(&b);
}

static void test_event_json_and_frames(void **state)
{
    (void)state;
    Contentengine__V1__ContentEvent ce = CONTENTENGINE__V1__CONTENT_EVENT__INIT;
    ce.item_id = "i1";
    ce.title = "Line1\nevent: forged";
    ce.kind = CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_SOCIAL;
    ce.status = CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_FAILED;
    ce.failure_reason = "boom";
    ce.body = "secret body";
    ce.version = 3;
    core_buf j = {0}, f = {0};
    rt_json_content(&j, &ce);
    assert_string_equal(j.data, "{\"item_id\":\"i1\",\"title\":\"Line1\\nevent: forged\",\"kind\":"
                                "\"social\",\"status\":\"failed\",\"version\":3,"
                                "\"failure_reason\":\"boom\"}");
    rt_sse_frame(&f, RT_EVENT_CONTENT, j.data, j.len);
    assert_int_equal(strncmp(f.data, "event: content.item\ndata: {", 27), 0);
    assert_int_equal(strcmp(f.data + f.len - 3, "}\n\n"), 0);
    /* exactly two lines: no way to inject a field */
    int nl = 0;
    for (size_t i = 0; i < f.len; i++)
        nl += f.data[i] == '\n';
    assert_int_equal(nl, 3);

    Contentengine__V1__GenerationProgress gp = CONTENTENGINE__V1__GENERATION_PROGRESS__INIT;
    gp.item_id = "i1";
    gp.job_id = "j";
    gp.stage = "done";
    gp.percent = 100;
    gp.body = "secret body";
    gp.provider = "local";
    core_buf_reset(&j);
    rt_json_progress(&j, &gp);
    assert_string_equal(j.data, "{\"item_id\":\"i1\",\"job_id\":\"j\",\"stage\":\"done\","
                                "\"percent\":100,\"provider\":\"local\"}");
    core_buf_free(&j);
    core_buf_free(&f);
}

static void test_decode_rejects_garbage(void **state)
{
    (void)state;
    core_buf f = {0};
    char id[RT_ITEM_ID_MAX + 1], err[256];
    assert_false(
        rt_decode_event(RT_TOPIC_CONTENT, "\xff\xff\xff", 3, &f, id, sizeof id, err, sizeof err));
    Contentengine__V1__GenerationProgress gp = CONTENTENGINE__V1__GENERATION_PROGRESS__INIT;
    gp.item_id = "bad id";
    uint8_t buf[256];
    size_t len = contentengine__v1__generation_progress__pack(&gp, buf);
    assert_false(rt_decode_event(RT_TOPIC_PROGRESS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_non_null(strstr(err, "item_id"));
    gp.item_id = "good";
    gp.stage = "queued";
    len = contentengine__v1__generation_progress__pack(&gp, buf);
    assert_true(rt_decode_event(RT_TOPIC_PROGRESS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_string_equal(id, "good");
    assert_non_null(strstr(f.data, "event: generation.progress\n"));
    core_buf_free(&f);
}

/* ------------------------------------------------------------ hub */

typedef struct test_sink {
    core_buf out;
    size_t pending; /* pretend the kernel has not taken this much */
    bool ended;
} test_sink;

static int ts_write(void *ctx, const void *data, size_t len)
{
    test_sink *s = ctx;
    core_buf_append(&s->out, data, len);
    return 0;
}

static size_t ts_pending(void *ctx)
{
    return ((test_sink *)ctx)->pending;
}

static void ts_end(void *ctx)
{
    ((test_sink *)ctx)->ended = true;
}

static rt_sink sink_of(test_sink *s)
{
    return (rt_sink){.write = ts_write, .pending = ts_pending, .end = ts_end, .ctx = s};
}

static rt_hub *hub_new(uint32_t ring_item, uint32_t ring_all)
{
    rt_hub_config cfg = {.ring_item = ring_item,
                         .ring_all = ring_all,
                         .max_pending = 1000,
                         .heartbeat_ms = 1000,
                         .idle_ms = 60000,
                         .max_item_channels = 100,
                         .max_sub_channels = 8};
    return rt_hub_new(NULL, &cfg);
}

static void pub(rt_hub *h, int topic, int part, int64_t off, int64_t ts, const char *item)
{
    char text[128];
    int n = snprintf(text, sizeof text, "event: e\ndata: {\"item\":\"%s\",\"o\":%lld}\n\n", item,
                     (long long)off);
    rt_hub_publish(h, topic, part, off, ts, item, text, (size_t)n);
}

static rt_channel_list chans_of(const char *csv)
{
    rt_channel_list l;
    char err[128];
    assert_true(rt_channels_parse(csv, 8, &l, err, sizeof err));
    return l;
}

static int count_events(const char *s)
{
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, "event: ")); p++)
        n++;
    return n;
}

/* The id of the last event in out. */
static void last_id(const core_buf *out, char *id, size_t size)
{
    const char *p = NULL;
    for (const char *q = out->data; q && (q = strstr(q, "id: ")); q++)
        p = q;
    assert_non_null(p);
    const char *nl = strchr(p, '\n');
    snprintf(id, size, "%.*s", (int)(nl - p - 4), p + 4);
}

static void test_hub_fanout_dedup_and_ids(void **state)
{
    (void)state;
    rt_hub *h = hub_new(16, 64);
    test_sink a = {0}, b = {0};
    rt_channel_list both = chans_of("content:x,content:*"), x = chans_of("content:x");
    rt_client *ca = rt_hub_attach(h, &both, NULL, sink_of(&a));
    rt_client *cb = rt_hub_attach(h, &x, NULL, sink_of(&b));
    pub(h, RT_TOPIC_CONTENT, 2, 10, 1000, "x");
    pub(h, RT_TOPIC_PROGRESS, 1, 5, 1001, "x");
    pub(h, RT_TOPIC_CONTENT, 0, 3, 1002, "y");
    assert_int_equal(count_events(a.out.data), 3); /* x twice (once each), y via content:* */
    assert_int_equal(count_events(b.out.data), 2);
    assert_non_null(strstr(b.out.data, "id: t1000.c2:10\nevent: e\n"));
    assert_non_null(strstr(b.out.data, "id: t1000.c2:10.g1:5\nevent: e\n"));
    assert_non_null(strstr(a.out.data, "id: t1000.c0:3.c2:10.g1:5\n"));
    rt_hub_detach(h, ca);
    rt_hub_detach(h, cb);
    assert_int_equal(rt_hub_clients(h), 0);
    rt_hub_free(h);
    core_buf_free(&a.out);
    core_buf_free(&b.out);
}

static void test_hub_resume_exactly_missed(void **state)
{
    (void)state;
    rt_hub *h = hub_new(16, 64);
    test_sink a = {0};
    rt_channel_list x = chans_of("content:x");
    rt_client *ca = rt_hub_attach(h, &x, NULL, sink_of(&a));
    pub(h, RT_TOPIC_CONTENT, 2, 10, 1000, "x");
    pub(h, RT_TOPIC_PROGRESS, 1, 5, 1001, "x");
    char id[256];
    last_id(&a.out, id, sizeof id);
    rt_hub_detach(h, ca);
    /* missed: two progress events, a content event; and other items' events */
    pub(h, RT_TOPIC_PROGRESS, 1, 6, 1002, "x");
    pub(h, RT_TOPIC_PROGRESS, 1, 7, 1003, "y");
    pub(h, RT_TOPIC_CONTENT, 2, 11, 1004, "x");
    pub(h, RT_TOPIC_PROGRESS, 0, 4, 1005, "x"); /* a source the client has no entry for */
    rt_posvec pos;
    assert_true(rt_posvec_parse(id, &pos));
    test_sink r = {0};
    rt_client *cr = rt_hub_attach(h, &x, &pos, sink_of(&r));
    assert_non_null(cr);
    assert_int_equal(count_events(r.out.data), 3);
    const char *o6 = strstr(r.out.data, "\"o\":6"), *o11 = strstr(r.out.data, "\"o\":11"),
               *o4 = strstr(r.out.data, "\"o\":4");
    assert_true(o6 && o11 && o4 && o6 < o11 && o11 < o4); /* arrival order */
    assert_non_null(strstr(r.out.data, "id: t1000.c2:11.g0:4.g1:6\n"));
    /* resuming from the newest id replays nothing */
    char id2[256];
    last_id(&r.out, id2, sizeof id2);
    rt_hub_detach(h, cr);
    assert_true(rt_posvec_parse(id2, &pos));
    test_sink r2 = {0};
    cr = rt_hub_attach(h, &x, &pos, sink_of(&r2));
    assert_int_equal(count_events(r2.out.data), 0);
    rt_hub_detach(h, cr);
    rt_hub_free(h);
    core_buf_free(&a.out);
    core_buf_free(&r.out);
    core_buf_free(&r2.out);
}

static void test_hub_too_old_resets(void **state)
{
    (void)state;
    rt_hub *h = hub_new(4, 64);
    rt_channel_list x = chans_of("content:x");
    for (int i = 0; i < 3; i++)
        pub(h, RT_TOPIC_PROGRESS, 1, 100 + i, 1000 + i, "x");
    rt_posvec pos = {0};
    assert_true(rt_posvec_parse("t1000.g1:100", &pos));
    core_buf out = {0};
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 2);
    rt_posvec_free(&pos);
    for (int i = 3; i < 8; i++) /* history of 4: 100..103 are gone */
        pub(h, RT_TOPIC_PROGRESS, 1, 100 + i, 1000 + i, "x");
    assert_true(rt_posvec_parse("t1000.g1:100", &pos));
    core_buf_reset(&out);
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* exactly at the edge: 103 seen, 104..107 retained */
    assert_true(rt_posvec_parse("t1000.g1:103", &pos));
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 4);
    rt_posvec_free(&pos);
    /* a source the client saw nothing from, whose newer events were dropped */
    assert_true(rt_posvec_parse("t1001.c0:1", &pos));
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* before this instance's first event of that source */
    rt_channel_list other = chans_of("content:other");
    assert_true(rt_posvec_parse("t900.g1:50", &pos));
    assert_int_equal(rt_hub_replay(h, &other, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* attach with a too-old id: a reset event, then live events */
    test_sink s = {0};
    assert_true(rt_posvec_parse("t1000.g1:100", &pos));
    rt_client *c = rt_hub_attach(h, &x, &pos, sink_of(&s));
    assert_non_null(strstr(s.out.data, "event: reset\n"));
    pub(h, RT_TOPIC_PROGRESS, 1, 108, 1008, "x");
    assert_non_null(strstr(s.out.data, "id: t1008.g1:108\n"));
    rt_hub_detach(h, c);
    rt_hub_free(h);
    core_buf_free(&out);
    core_buf_free(&s.out);
}

static void test_hub_ring_grows_then_wraps(void **state)
{
    (void)state;
    rt_hub *h = hub_new(20, 64);
    rt_channel_list x = chans_of("content:x");
    for (int i = 1; i <= 30; i++)
        pub(h, RT_TOPIC_CONTENT, 0, i, 1000 + i, "x");
    rt_posvec pos;
    assert_true(rt_posvec_parse("t1001.c0:10", &pos)); /* 11..30 are the 20 retained */
    core_buf out = {0};
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 20);
    assert_true(strstr(out.data, "\"o\":11}") < strstr(out.data, "\"o\":30}"));
    assert_non_null(strstr(out.data, "id: t1001.c0:30\n"));
    rt_posvec_free(&pos);
    assert_true(rt_posvec_parse("t1001.c0:9", &pos));
    assert_int_equal(rt_hub_replay(h, &x, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* a replay larger than max_pending (1000 bytes here) is a reset, never a huge buffer */
    test_sink s = {0};
    assert_true(rt_posvec_parse("t1001.c0:10", &pos));
    rt_client *c = rt_hub_attach(h, &x, &pos, sink_of(&s));
    assert_non_null(c);
    assert_non_null(strstr(s.out.data, "event: reset\n"));
    assert_non_null(strstr(s.out.data, "too far behind"));
    assert_int_equal(count_events(s.out.data), 1);
    rt_hub_detach(h, c);
    core_buf_free(&s.out);
    rt_hub_free(h);
    core_buf_free(&out);
}

static void test_hub_overflow_heartbeat_shutdown_and_sweep(void **state)
{
    (void)state;
    rt_hub *h = hub_new(4, 8);
    test_sink slow = {0}, ok = {0}, idle = {0};
    rt_channel_list x = chans_of("content:x"), all = chans_of("content:*");
    rt_client *cs = rt_hub_attach(h, &x, NULL, sink_of(&slow));
    rt_client *co = rt_hub_attach(h, &all, NULL, sink_of(&ok));
    assert_non_null(cs);
    rt_hub_attach(h, &x, NULL, sink_of(&idle));
    slow.pending = 5000; /* over max_pending */
    pub(h, RT_TOPIC_CONTENT, 0, 1, 1000, "x");
    assert_true(slow.ended);
    assert_non_null(strstr(slow.out.data, "event: overflow\n"));
    assert_int_equal(rt_hub_clients(h), 2);
    rt_hub_tick(h, core_now_unix_ms());
    assert_non_null(strstr(ok.out.data, ": hb\n\n"));
    /* idle item channels go; their offsets become the floor of a re-created one */
    for (int i = 0; i < 5; i++) {
        char item[16];
        snprintf(item, sizeof item, "i%d", i);
        pub(h, RT_TOPIC_CONTENT, 1, 10 + i, 2000 + i, item);
    }
    assert_int_equal(rt_hub_item_channels(h), 6);
    rt_hub_tick(h, core_now_unix_ms() + 120000);
    assert_int_equal(rt_hub_item_channels(h), 1); /* content:x has a subscriber */
    rt_posvec pos;
    assert_true(rt_posvec_parse("t2000.c1:10", &pos));
    core_buf out = {0};
    rt_channel_list i4 = chans_of("content:i4");
    assert_int_equal(rt_hub_replay(h, &i4, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    (void)co;
    rt_hub_shutdown(h);
    assert_true(ok.ended && idle.ended);
    assert_non_null(strstr(ok.out.data, "event: shutdown\n"));
    assert_int_equal(rt_hub_clients(h), 0);
    rt_hub_free(h);
    core_buf_free(&out);
    core_buf_free(&slow.out);
    core_buf_free(&ok.out);
    core_buf_free(&idle.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_names),
        cmocka_unit_test(test_channel_list_parsing),
        cmocka_unit_test(test_posvec_roundtrip_and_order),
        cmocka_unit_test(test_posvec_rejects_malformed),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_event_json_and_frames),
        cmocka_unit_test(test_decode_rejects_garbage),
        cmocka_unit_test(test_hub_fanout_dedup_and_ids),
        cmocka_unit_test(test_hub_resume_exactly_missed),
        cmocka_unit_test(test_hub_too_old_resets),
        cmocka_unit_test(test_hub_ring_grows_then_wraps),
        cmocka_unit_test(test_hub_overflow_heartbeat_shutdown_and_sweep),
    };
    return cmocka_run_group_tests_name("realtime", tests, NULL, NULL);
}
