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
    rt_family f;
    assert_true(rt_channel_name_valid("content:*", 9, &f, &k));
    assert_int_equal(k, RT_CHANNEL_ALL_ITEMS);
    assert_int_equal(f, RT_FAMILY_CONTENT);
    assert_true(rt_channel_name_valid("content:0190-ab_C", 17, &f, &k));
    assert_int_equal(k, RT_CHANNEL_ITEM);
    assert_true(rt_channel_name_valid("source:*", 8, &f, &k));
    assert_int_equal(f, RT_FAMILY_SOURCE);
    assert_int_equal(k, RT_CHANNEL_ALL_ITEMS);
    const char uuid_src[] = "source:0b9e6a52-3f0c-4f7e-9d8e-1c2b3a4d5e6f";
    assert_true(rt_channel_name_valid(uuid_src, sizeof uuid_src - 1, &f, &k));
    assert_int_equal(f, RT_FAMILY_SOURCE);
    assert_int_equal(k, RT_CHANNEL_ITEM);
    assert_true(rt_channel_name_valid("import:*", 8, &f, &k));
    assert_int_equal(f, RT_FAMILY_IMPORT);
    assert_int_equal(k, RT_CHANNEL_ALL_ITEMS);
    assert_true(rt_channel_name_valid("import:imp_1", 12, &f, &k));
    assert_int_equal(f, RT_FAMILY_IMPORT);
    assert_int_equal(k, RT_CHANNEL_ITEM);
    /* only the given length counts */
    assert_true(rt_channel_name_valid("import:abc,content:*", 10, NULL, NULL));
    const char *bad[] = {"content:",   "content:**", "content:a/b", "content:a b",
                         "users:1",    "source:",    "source",      "source:**",
                         "source:a.b", "sources:a",  "import:",     "import",
                         "import:a:b", "imports:*",  "Import:a",    "source:*a",
                         ":a",         "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rt_channel_name_valid(bad[i], strlen(bad[i]), &f, &k)) fail_msg("accepted %s", bad[i]);
    char longid[80];
    memset(longid, 'a', sizeof longid);
    assert_true(rt_item_id_valid(longid, 64));
    assert_false(rt_item_id_valid(longid, 65));
    char name[RT_CHANNEL_NAME_MAX + 1], id64[65];
    memset(id64, 'z', 64);
    id64[64] = '\0';
    assert_true(rt_channel_name(RT_FAMILY_CONTENT, id64, name, sizeof name)); /* the longest */
    assert_int_equal(strlen(name), RT_CHANNEL_NAME_MAX);
    assert_true(rt_channel_name(RT_FAMILY_SOURCE, "s1", name, sizeof name));
    assert_string_equal(name, "source:s1");
    assert_true(rt_channel_name(RT_FAMILY_IMPORT, "i1", name, sizeof name));
    assert_string_equal(name, "import:i1");
    assert_false(rt_channel_name(RT_FAMILY_IMPORT, "a b", name, sizeof name));
    assert_false(rt_channel_name(RT_FAMILY_IMPORT, "", name, sizeof name));
    assert_string_equal(rt_family_all(RT_FAMILY_SOURCE), "source:*");
    assert_string_equal(rt_family_prefix(RT_FAMILY_IMPORT), "import");
    assert_int_equal(rt_topic_family(RT_TOPIC_CONTENT), RT_FAMILY_CONTENT);
    assert_int_equal(rt_topic_family(RT_TOPIC_PROGRESS), RT_FAMILY_CONTENT);
    assert_int_equal(rt_topic_family(RT_TOPIC_RUNS), RT_FAMILY_SOURCE);
    assert_int_equal(rt_topic_family(RT_TOPIC_IMPORTS), RT_FAMILY_IMPORT);
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
    /* kinds mix in one subscription */
    assert_true(rt_channels_parse("content:*,source:abc,import:*,source:*,import:i-1,source:abc", 8,
                                  &l, err, sizeof err));
    assert_int_equal(l.n, 5);
    assert_string_equal(l.names[1], "source:abc");
    assert_string_equal(l.names[4], "import:i-1");
    assert_false(rt_channels_parse("content:*,source:a/b", 8, &l, err, sizeof err));
    assert_non_null(strstr(err, "\"source:a/b\""));
    assert_non_null(strstr(err, "content, source or import"));
    assert_false(rt_channels_parse("import:", 8, &l, err, sizeof err));
    assert_false(rt_channels_parse("runs:1", 8, &l, err, sizeof err));
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
                         "t1.c1:2\n",
                         "t1.s0:1.i0:1", /* i sorts before s */
                         "t1.i0:1.i0:2",
                         "t1.r0:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rt_posvec p;
        if (rt_posvec_parse(bad[i], &p)) fail_msg("accepted \"%s\"", bad[i]);
    }
    rt_posvec p;
    assert_true(rt_posvec_parse("t0", &p));
    assert_int_equal(p.n, 0);
    rt_posvec_free(&p);
}

static void test_posvec_new_sources(void **state)
{
    (void)state;
    rt_posvec v = {0};
    v.t0 = 5;
    assert_true(rt_posvec_set(&v, RT_TOPIC_RUNS, 2, 40));
    assert_true(rt_posvec_set(&v, RT_TOPIC_IMPORTS, 0, 12));
    assert_true(rt_posvec_set(&v, RT_TOPIC_PROGRESS, 5, 567));
    assert_true(rt_posvec_set(&v, RT_TOPIC_CONTENT, 3, 1234));
    core_buf b = {0};
    rt_posvec_format(&v, &b);
    assert_string_equal(b.data, "t5.c3:1234.g5:567.i0:12.s2:40"); /* sorted by letter */
    rt_posvec p;
    assert_true(rt_posvec_parse(b.data, &p));
    int64_t off;
    assert_true(rt_posvec_get(&p, RT_TOPIC_RUNS, 2, &off));
    assert_int_equal(off, 40);
    assert_true(rt_posvec_get(&p, RT_TOPIC_IMPORTS, 0, &off));
    assert_int_equal(off, 12);
    assert_true(rt_posvec_covers(&p, &v) && rt_posvec_covers(&v, &p));
    rt_posvec_free(&p);
    /* ids of the content topics alone are what they always were */
    assert_true(rt_posvec_parse("t1732212345678.c0:7.c3:1240.g5:567", &p));
    assert_int_equal(p.n, 3);
    rt_posvec_free(&p);
    rt_posvec_free(&v);
    core_buf_free(&b);
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

/* One line with exactly two newlines after it, and no raw control characters inside. */
static void assert_one_frame(const core_buf *f, const char *event)
{
    char head[64];
    int n = snprintf(head, sizeof head, "event: %s\ndata: {", event);
    assert_int_equal(strncmp(f->data, head, (size_t)n), 0);
    assert_int_equal(strcmp(f->data + f->len - 3, "}\n\n"), 0);
    int nl = 0;
    for (size_t i = 0; i < f->len; i++) {
        nl += f->data[i] == '\n';
        assert_true((unsigned char)f->data[i] >= 0x20 || f->data[i] == '\n');
    }
    assert_int_equal(nl, 3);
}

static void test_run_and_import_json(void **state)
{
    (void)state;
    Contentengine__V1__ScrapeRunEvent run = CONTENTENGINE__V1__SCRAPE_RUN_EVENT__INIT;
    run.run_id = "r-1";
    run.source_id = "0b9e6a52-3f0c-4f7e-9d8e-1c2b3a4d5e6f";
    run.state = "failed";
    run.fetched = 120;
    run.new_items = 7;
    run.unchanged = 100;
    run.failed = 13;
    run.error_summary = "http 503 \"x\"\r\nevent: forged\x01 \xff \xc3\xa9";
    core_buf j = {0}, f = {0};
    rt_json_scrape_run(&j, &run);
    assert_string_equal(j.data, "{\"run_id\":\"r-1\",\"source_id\":"
                                "\"0b9e6a52-3f0c-4f7e-9d8e-1c2b3a4d5e6f\",\"state\":\"failed\","
                                "\"fetched\":120,\"new_items\":7,\"unchanged\":100,\"failed\":13,"
                                "\"error_summary\":\"http 503 \\\"x\\\"\\r\\nevent: "
                                "forged\\u0001 \xef\xbf\xbd \xc3\xa9\"}");
    rt_sse_frame(&f, RT_EVENT_RUN, j.data, j.len);
    assert_one_frame(&f, "scrape.run");

    Contentengine__V1__ImportProgress ip = CONTENTENGINE__V1__IMPORT_PROGRESS__INIT;
    ip.import_id = "imp-9";
    ip.status = "running";
    ip.rows_processed = 5000000000LL; /* int64 stays exact */
    ip.rows_inserted = 4;
    ip.rows_updated = 3;
    ip.rows_skipped = 2;
    ip.rows_failed = 1;
    ip.occurred_unix_ms = 1732212345678;
    ip.error = "bad\nline\t\"q\"";
    core_buf_reset(&j);
    core_buf_reset(&f);
    rt_json_import(&j, &ip);
    assert_string_equal(j.data, "{\"import_id\":\"imp-9\",\"status\":\"running\","
                                "\"rows_processed\":5000000000,\"rows_inserted\":4,"
                                "\"rows_updated\":3,\"rows_skipped\":2,\"rows_failed\":1,"
                                "\"occurred_unix_ms\":1732212345678,"
                                "\"error\":\"bad\\nline\\t\\\"q\\\"\"}");
    rt_sse_frame(&f, RT_EVENT_IMPORT, j.data, j.len);
    assert_one_frame(&f, "import.progress");
    /* absent strings (NULL) are empty, zero counts are written */
    Contentengine__V1__ImportProgress empty = CONTENTENGINE__V1__IMPORT_PROGRESS__INIT;
    empty.import_id = NULL;
    empty.status = NULL;
    empty.error = NULL;
    core_buf_reset(&j);
    rt_json_import(&j, &empty);
    assert_string_equal(j.data, "{\"import_id\":\"\",\"status\":\"\",\"rows_processed\":0,"
                                "\"rows_inserted\":0,\"rows_updated\":0,\"rows_skipped\":0,"
                                "\"rows_failed\":0,\"occurred_unix_ms\":0,\"error\":\"\"}");
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

    /* scraper runs: the channel id is source_id */
    assert_false(
        rt_decode_event(RT_TOPIC_RUNS, "\xff\xff\xff", 3, &f, id, sizeof id, err, sizeof err));
    assert_non_null(strstr(err, "ScrapeRunEvent"));
    Contentengine__V1__ScrapeRunEvent run = CONTENTENGINE__V1__SCRAPE_RUN_EVENT__INIT;
    run.run_id = "r1";
    len = contentengine__v1__scrape_run_event__pack(&run, buf); /* no source_id */
    assert_false(rt_decode_event(RT_TOPIC_RUNS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_non_null(strstr(err, "source_id"));
    run.source_id = "src/1";
    len = contentengine__v1__scrape_run_event__pack(&run, buf);
    assert_false(rt_decode_event(RT_TOPIC_RUNS, buf, len, &f, id, sizeof id, err, sizeof err));
    run.source_id = "src-1";
    run.state = "progress";
    run.fetched = 3;
    len = contentengine__v1__scrape_run_event__pack(&run, buf);
    assert_true(rt_decode_event(RT_TOPIC_RUNS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_string_equal(id, "src-1");
    assert_string_equal(f.data, "event: scrape.run\ndata: {\"run_id\":\"r1\",\"source_id\":"
                                "\"src-1\",\"state\":\"progress\",\"fetched\":3,\"new_items\":0,"
                                "\"unchanged\":0,\"failed\":0,\"error_summary\":\"\"}\n\n");

    /* imports: the channel id is import_id */
    Contentengine__V1__ImportProgress ip = CONTENTENGINE__V1__IMPORT_PROGRESS__INIT;
    ip.status = "done";
    len = contentengine__v1__import_progress__pack(&ip, buf);
    assert_false(rt_decode_event(RT_TOPIC_IMPORTS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_non_null(strstr(err, "import_id"));
    char longid[70];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    ip.import_id = longid;
    len = contentengine__v1__import_progress__pack(&ip, buf);
    assert_false(rt_decode_event(RT_TOPIC_IMPORTS, buf, len, &f, id, sizeof id, err, sizeof err));
    ip.import_id = "0b9e6a52-3f0c-4f7e-9d8e-1c2b3a4d5e6f";
    ip.rows_processed = 10;
    len = contentengine__v1__import_progress__pack(&ip, buf);
    assert_true(rt_decode_event(RT_TOPIC_IMPORTS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_string_equal(id, "0b9e6a52-3f0c-4f7e-9d8e-1c2b3a4d5e6f");
    assert_non_null(strstr(f.data, "event: import.progress\ndata: {\"import_id\":\"0b9e"));
    assert_non_null(strstr(f.data, "\"status\":\"done\",\"rows_processed\":10,"));
    /* a content record on the runs topic is not a ScrapeRunEvent with a valid source id */
    Contentengine__V1__ContentEvent ce = CONTENTENGINE__V1__CONTENT_EVENT__INIT;
    ce.item_id = "x";
    ce.title = "t t";
    len = contentengine__v1__content_event__pack(&ce, buf);
    assert_false(rt_decode_event(RT_TOPIC_RUNS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_false(rt_decode_event(RT_NTOPICS, buf, len, &f, id, sizeof id, err, sizeof err));
    assert_false(rt_decode_event(-1, buf, len, &f, id, sizeof id, err, sizeof err));
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

static void test_hub_source_and_import_channels(void **state)
{
    (void)state;
    rt_hub *h = hub_new(4, 64);
    test_sink src = {0}, srcall = {0}, imp = {0}, mixed = {0}, cont = {0};
    rt_channel_list l_src = chans_of("source:x"), l_srcall = chans_of("source:*"),
                    l_imp = chans_of("import:x"), l_cont = chans_of("content:x"),
                    l_mixed = chans_of("content:*,source:x,import:*");
    rt_client *c1 = rt_hub_attach(h, &l_src, NULL, sink_of(&src));
    rt_client *c2 = rt_hub_attach(h, &l_srcall, NULL, sink_of(&srcall));
    rt_client *c3 = rt_hub_attach(h, &l_imp, NULL, sink_of(&imp));
    rt_client *c4 = rt_hub_attach(h, &l_mixed, NULL, sink_of(&mixed));
    rt_client *c5 = rt_hub_attach(h, &l_cont, NULL, sink_of(&cont));
    /* the same id "x" names three different entities */
    pub(h, RT_TOPIC_RUNS, 1, 10, 1000, "x");
    pub(h, RT_TOPIC_RUNS, 0, 3, 1001, "y");
    pub(h, RT_TOPIC_IMPORTS, 2, 7, 1002, "x");
    pub(h, RT_TOPIC_CONTENT, 0, 1, 1003, "x");
    pub(h, RT_TOPIC_IMPORTS, 0, 8, 1004, "z");
    assert_int_equal(count_events(src.out.data), 1);
    assert_non_null(strstr(src.out.data, "id: t1000.s1:10\nevent: e\n"));
    assert_int_equal(count_events(srcall.out.data), 2);
    assert_non_null(strstr(srcall.out.data, "id: t1000.s0:3.s1:10\n"));
    assert_int_equal(count_events(imp.out.data), 1);
    assert_non_null(strstr(imp.out.data, "id: t1002.i2:7\n"));
    assert_int_equal(count_events(cont.out.data), 1);
    assert_non_null(strstr(cont.out.data, "id: t1003.c0:1\n"));
    /* content:* + source:x + import:*: all but source y's run, each once, one position */
    assert_int_equal(count_events(mixed.out.data), 4);
    assert_null(strstr(mixed.out.data, "s0:3"));
    assert_non_null(strstr(mixed.out.data, "id: t1000.c0:1.i0:8.i2:7.s1:10\n"));
    assert_int_equal(rt_hub_item_channels(h), 5); /* source:x, source:y, import:x/z, content:x */
    rt_hub_detach(h, c1);
    rt_hub_detach(h, c2);
    rt_hub_detach(h, c3);
    rt_hub_detach(h, c5);
    char id[256];
    last_id(&mixed.out, id, sizeof id);
    rt_hub_detach(h, c4);
    /* missed, in this order: an import event, a run of x, a run of y (not subscribed), a content
     * event, and one of a runs partition the client has no entry for */
    pub(h, RT_TOPIC_IMPORTS, 2, 9, 1005, "x");
    pub(h, RT_TOPIC_RUNS, 1, 11, 1006, "x");
    pub(h, RT_TOPIC_RUNS, 0, 4, 1007, "y");
    pub(h, RT_TOPIC_CONTENT, 0, 2, 1008, "q");
    pub(h, RT_TOPIC_RUNS, 2, 1, 1009, "x");
    rt_posvec pos;
    assert_true(rt_posvec_parse(id, &pos));
    test_sink r = {0};
    rt_client *cr = rt_hub_attach(h, &l_mixed, &pos, sink_of(&r));
    assert_non_null(cr);
    assert_int_equal(count_events(r.out.data), 4);
    const char *o9 = strstr(r.out.data, "\"o\":9}"), *o11 = strstr(r.out.data, "\"o\":11}"),
               *o2 = strstr(r.out.data, "\"o\":2}"), *o1 = strstr(r.out.data, "\"o\":1}");
    assert_true(o9 && o11 && o2 && o1 && o9 < o11 && o11 < o2 && o2 < o1);
    assert_null(strstr(r.out.data, "\"o\":4}"));
    assert_non_null(strstr(r.out.data, "id: t1000.c0:2.i0:8.i2:9.s1:11.s2:1\n"));
    rt_hub_detach(h, cr);
    /* source:x holds 4: a position before its evicted events resets; content is untouched */
    for (int i = 12; i < 18; i++)
        pub(h, RT_TOPIC_RUNS, 1, i, 1000 + i, "x");
    core_buf out = {0};
    assert_true(rt_posvec_parse("t1000.s1:11", &pos));
    assert_int_equal(rt_hub_replay(h, &l_src, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* s2:1 was evicted too: a position without an entry for s2 resets, one with it replays */
    assert_true(rt_posvec_parse("t1000.s1:13", &pos));
    assert_int_equal(rt_hub_replay(h, &l_src, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    assert_true(rt_posvec_parse("t1000.s1:13.s2:1", &pos));
    assert_int_equal(rt_hub_replay(h, &l_src, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 4);
    rt_posvec_free(&pos);
    assert_true(rt_posvec_parse("t1000.c0:1", &pos));
    core_buf_reset(&out);
    assert_int_equal(rt_hub_replay(h, &l_cont, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 0);
    rt_posvec_free(&pos);
    rt_hub_free(h);
    core_buf_free(&out);
    core_buf_free(&src.out);
    core_buf_free(&srcall.out);
    core_buf_free(&imp.out);
    core_buf_free(&mixed.out);
    core_buf_free(&cont.out);
    core_buf_free(&r.out);
}

/* History limits of one family do not reset subscribers of another. */
static void test_hub_families_keep_their_own_floors(void **state)
{
    (void)state;
    rt_hub *h = hub_new(4, 64);
    /* content channels dropped for idleness raise the floors of the content topics only */
    for (int i = 0; i < 3; i++) {
        char item[16];
        snprintf(item, sizeof item, "i%d", i);
        pub(h, RT_TOPIC_CONTENT, 0, 10 + i, 2000 + i, item);
    }
    rt_hub_tick(h, core_now_unix_ms() + 120000);
    assert_int_equal(rt_hub_item_channels(h), 0);
    /* an import channel (new, or not existing at all) is not affected by them */
    rt_channel_list imp = chans_of("import:new");
    rt_posvec pos;
    core_buf out = {0};
    assert_true(rt_posvec_parse("t1500.i0:3", &pos));
    assert_int_equal(rt_hub_replay(h, &imp, &pos, &out), RT_RESUME_OK);
    rt_posvec_free(&pos);
    pub(h, RT_TOPIC_IMPORTS, 0, 4, 2100, "new");
    assert_true(rt_posvec_parse("t1500.i0:3", &pos));
    core_buf_reset(&out);
    assert_int_equal(rt_hub_replay(h, &imp, &pos, &out), RT_RESUME_OK);
    assert_int_equal(count_events(out.data), 1);
    rt_posvec_free(&pos);
    /* while a content channel re-created after the drop still resets */
    rt_channel_list c1 = chans_of("content:i1");
    assert_true(rt_posvec_parse("t1500.i0:3", &pos));
    assert_int_equal(rt_hub_replay(h, &c1, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    /* and the mixed subscription resets when any of its channels does */
    rt_channel_list both = chans_of("import:new,content:i1");
    assert_true(rt_posvec_parse("t1500.i0:4", &pos));
    assert_int_equal(rt_hub_replay(h, &both, &pos, &out), RT_RESUME_TOO_OLD);
    rt_posvec_free(&pos);
    rt_hub_free(h);
    core_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_names),
        cmocka_unit_test(test_channel_list_parsing),
        cmocka_unit_test(test_posvec_roundtrip_and_order),
        cmocka_unit_test(test_posvec_rejects_malformed),
        cmocka_unit_test(test_posvec_new_sources),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_event_json_and_frames),
        cmocka_unit_test(test_run_and_import_json),
        cmocka_unit_test(test_decode_rejects_garbage),
        cmocka_unit_test(test_hub_fanout_dedup_and_ids),
        cmocka_unit_test(test_hub_resume_exactly_missed),
        cmocka_unit_test(test_hub_too_old_resets),
        cmocka_unit_test(test_hub_ring_grows_then_wraps),
        cmocka_unit_test(test_hub_overflow_heartbeat_shutdown_and_sweep),
        cmocka_unit_test(test_hub_source_and_import_channels),
        cmocka_unit_test(test_hub_families_keep_their_own_floors),
    };
    return cmocka_run_group_tests_name("realtime", tests, NULL, NULL);
}
