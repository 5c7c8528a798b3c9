/*
 * realtime seen from outside: the real binary (build/<variant>/bin/realtime) against the real
 * Kafka, on topics of its own for this run, with raw-socket SSE clients (HTTP/1.0, so the body
 * is the bare event stream). Order and JSON of events, content:*, a second instance started
 * mid-run giving the same ids, resume with Last-Event-ID (exactly the missed events, on either
 * instance), the reset event for a too-old id, heartbeats, a slow client dropped with the
 * final overflow event while the service's memory stays bounded, 400 problems, SIGTERM.
 * Scraper runs and import progress: source:<id>, source:*, import:<id>, import:*, subscriptions
 * mixing kinds, resume across all four sources on both instances, malformed records skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus.h"
#include "contentengine/v1/content.pb-c.h"
#include "contentengine/v1/people.pb-c.h"
#include "contentengine/v1/scraper.pb-c.h"
#include "core.h"
#include "bus_test.h"
#include "test_support.h"

static const char *brokers;
static uv_loop_t loop;
static char rt_path[4096];
static char t_content[128], t_progress[128], t_runs[128], t_imports[128], uniq[64];
static bus_producer *producer;

typedef struct instance {
    ts_child child;
    int port;
    bool running;
} instance;
static instance inst_a, inst_b;

/* ---------------------------------------------------------------- kafka helpers */

static int delivered, delivery_failed;

static void on_dr(void *opaque, int err, const char *errstr, int32_t partition, int64_t offset)
{
    (void)opaque;
    (void)partition;
    (void)offset;
    if (err) {
        fprintf(stderr, "delivery failed: %s\n", errstr);
        delivery_failed++;
    }
    delivered++;
}

static bool all_delivered(void *data)
{
    (void)data;
    return bus_producer_outstanding(producer) == 0;
}

static void flush_producer(void)
{
    assert_true(ts_run_until(&loop, all_delivered, NULL, 60000));
    assert_int_equal(delivery_failed, 0);
}

static void produce(const char *topic, const char *item, int32_t partition, const void *v,
                    size_t len)
{
    bus_record r = {.topic = topic,
                    .partition = partition,
                    .key = item,
                    .key_len = strlen(item),
                    .value = v,
                    .value_len = len,
                    .ce_type = "contentengine.test.v1"};
    int rc;
    while ((rc = bus_produce(producer, &r, on_dr, NULL)) == BUS_ERR_QUEUE_FULL)
        ts_run_for(&loop, 10);
    assert_int_equal(rc, 0);
}

static void produce_msg(const char *topic, const char *key, int32_t partition,
                        const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(m, buf);
    produce(topic, key, partition, buf, len);
    free(buf);
}

static void produce_content(const char *item, int32_t partition, const char *title,
                            Contentengine__V1__ContentStatus status, int64_t version,
                            const char *failure)
{
    Contentengine__V1__ContentEvent ev = CONTENTENGINE__V1__CONTENT_EVENT__INIT;
    ev.item_id = (char *)item;
    ev.title = (char *)title;
    ev.kind = CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_ARTICLE;
    ev.status = status;
    ev.body = "THE BODY IS NOT SENT";
    ev.failure_reason = (char *)(failure ? failure : "");
    ev.version = version;
    produce_msg(t_content, item, partition, &ev.base);
}

static void produce_progress(const char *item, int32_t partition, const char *stage, int percent)
{
    Contentengine__V1__GenerationProgress ev = CONTENTENGINE__V1__GENERATION_PROGRESS__INIT;
    ev.item_id = (char *)item;
    ev.job_id = "job-1";
    ev.stage = (char *)stage;
    ev.percent = percent;
    ev.body = strcmp(stage, "done") == 0 ? "THE BODY IS NOT SENT" : "";
    ev.provider = "local";
    produce_msg(t_progress, item, partition, &ev.base);
}

static void produce_run(const char *source, int32_t partition, const char *run_id,
                        const char *state, int64_t fetched, const char *error)
{
    Contentengine__V1__ScrapeRunEvent ev = CONTENTENGINE__V1__SCRAPE_RUN_EVENT__INIT;
    ev.run_id = (char *)run_id;
    ev.source_id = (char *)source;
    ev.state = (char *)state;
    ev.fetched = fetched;
    ev.new_items = fetched / 2;
    ev.unchanged = fetched / 4;
    ev.failed = fetched - fetched / 2 - fetched / 4;
    ev.error_summary = (char *)(error ? error : "");
    produce_msg(t_runs, source, partition, &ev.base);
}

static void produce_import(const char *import_id, int32_t partition, const char *status,
                           int64_t rows, const char *error)
{
    Contentengine__V1__ImportProgress ev = CONTENTENGINE__V1__IMPORT_PROGRESS__INIT;
    ev.import_id = (char *)import_id;
    ev.status = (char *)status;
    ev.rows_processed = rows;
    ev.rows_inserted = rows - 3;
    ev.rows_updated = 1;
    ev.rows_skipped = 1;
    ev.rows_failed = 1;
    ev.occurred_unix_ms = 1732212345678 + rows;
    ev.error = (char *)(error ? error : "");
    produce_msg(t_imports, import_id, partition, &ev.base);
}

/* What produce_run and produce_import send, as the service must relay it. */
static void run_json(char *out, size_t size, const char *source, const char *run_id,
                     const char *state, int64_t fetched, const char *error_json)
{
    snprintf(out, size,
             "{\"run_id\":\"%s\",\"source_id\":\"%s\",\"state\":\"%s\",\"fetched\":%lld,"
             "\"new_items\":%lld,\"unchanged\":%lld,\"failed\":%lld,\"error_summary\":\"%s\"}",
             run_id, source, state, (long long)fetched, (long long)(fetched / 2),
             (long long)(fetched / 4), (long long)(fetched - fetched / 2 - fetched / 4),
             error_json ? error_json : "");
}

static void import_json(char *out, size_t size, const char *import_id, const char *status,
                        int64_t rows, const char *error_json)
{
    snprintf(out, size,
             "{\"import_id\":\"%s\",\"status\":\"%s\",\"rows_processed\":%lld,"
             "\"rows_inserted\":%lld,\"rows_updated\":1,\"rows_skipped\":1,\"rows_failed\":1,"
             "\"occurred_unix_ms\":%lld,\"error\":\"%s\"}",
             import_id, status, (long long)rows, (long long)(rows - 3),
             (long long)(1732212345678 + rows), error_json ? error_json : "");
}

/* ---------------------------------------------------------------- SSE client (test_support) */

/* The next event whose data holds "<id>" (as any id field), skipping others. */
/* Next event whose data contains the quoted id (any id field: item, source or import). */
static bool sse_next_with(ts_sse *s, const char *id, ts_sse_event *ev, int64_t timeout_ms)
{
    char needle[160];
    snprintf(needle, sizeof needle, "\"%s\"", id);
    return ts_sse_next_matching(s, needle, ev, timeout_ms);
}

static void sse_open_at(ts_sse *s, int port, const char *channels, const char *last_id, int rcvbuf)
{
    char path[1024];
    snprintf(path, sizeof path, "/api/realtime/events?channels=%s", channels);
    assert_true(ts_sse_open_at(s, port, path, last_id, rcvbuf));
}

static void sse_open(ts_sse *s, int port, const char *channels, const char *last_id)
{
    char path[1024];
    snprintf(path, sizeof path, "/api/realtime/events?channels=%s", channels);
    bool ok = ts_sse_open(s, port, path, last_id);
    if (!ok) fprintf(stderr, "subscribe answered %d\n", s->status);
    assert_true(ok);
}

/* ---------------------------------------------------------------- HTTP and processes */

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void start_instance(instance *in)
{
    in->port = ts_free_port();
    char port[64], kb[256], tc[256], tp[256], tr[256], ti[256];
    snprintf(port, sizeof port, "HTTP_PORT=%d", in->port);
    snprintf(kb, sizeof kb, "KAFKA_BROKERS=%s", brokers);
    snprintf(tc, sizeof tc, "REALTIME_CONTENT_TOPIC=%s", t_content);
    snprintf(tp, sizeof tp, "REALTIME_PROGRESS_TOPIC=%s", t_progress);
    snprintf(tr, sizeof tr, "REALTIME_SCRAPER_RUNS_TOPIC=%s", t_runs);
    snprintf(ti, sizeof ti, "REALTIME_IMPORTS_TOPIC=%s", t_imports);
    const char *env[] = {port,
                         kb,
                         tc,
                         tp,
                         tr,
                         ti,
                         "SSE_HEARTBEAT=300ms",
                         "SSE_HISTORY_ITEM=8",
                         "SSE_HISTORY_ALL=64",
                         "SSE_MAX_PENDING_BYTES=16384",
                         "LOG_LEVEL=warn",
                         "ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8:abort_on_error=0",
                         NULL};
    assert_true(ts_spawn(&in->child, rt_path, NULL, env));
    in->running = true;
    core_buf body = {0};
    int64_t deadline = core_mono_ns() + 30000 * 1000000LL;
    bool ready = false;
    while (!ready && core_mono_ns() < deadline) {
        ready = ts_http_get_raw(in->port, "/readyz", &body) == 200;
        if (!ready) usleep(200000);
    }
    core_buf_free(&body);
    assert_true(ready);
    /* Rounds of one event per partition of each topic until one round arrives whole: then
     * every partition is assigned and read from its end. */
    ts_sse all;
    sse_open(&all, in->port, "content:*,source:*,import:*", NULL);
    bool warm = false;
    for (int round = 0; round < 40 && !warm; round++) {
        char item[96];
        snprintf(item, sizeof item, "warm%d-%s", round, uniq);
        for (int p = 0; p < 3; p++) {
            produce_content(item, p, "warm",
                            CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_DRAFT, 1, NULL);
            produce_progress(item, p, "queued", 0);
            produce_run(item, p, "warm", "started", 0, NULL);
            produce_import(item, p, "running", 0, NULL);
        }
        flush_producer();
        int got = 0;
        ts_sse_event ev;
        while (got < 12 && sse_next_with(&all, item, &ev, got ? 3000 : 1500))
            got++;
        warm = got == 12;
    }
    ts_sse_close(&all);
    assert_true(warm);
}

/* SIGTERM: connected clients get the final shutdown event, the process exits 0. */
static void stop_instance(instance *in, bool check)
{
    if (!in->running) return;
    ts_sse s;
    if (check) sse_open(&s, in->port, "content:*", NULL);
    kill(in->child.pid, SIGTERM);
    if (check) {
        ts_sse_event ev;
        bool got = false;
        while (!got && ts_sse_next(&s, &ev, 20000))
            got = strcmp(ev.event, "shutdown") == 0;
        ts_sse_close(&s);
        assert_true(got);
    }
    int status = ts_wait_or_kill(&in->child, 30000);
    char err[16384] = "";
    ts_drain_fd(in->child.err_fd, err, sizeof err);
    ts_close_pipes(&in->child);
    in->running = false;
    if (status != 0) fprintf(stderr, "realtime stderr:\n%s\n", err);
    if (check) assert_int_equal(status, 0);
}

/* ---------------------------------------------------------------- tests */

static void test_bad_requests_are_400_problems(void **state)
{
    (void)state;
    core_buf b = {0};
    const char *bad[] = {
        "/api/realtime/events",
        "/api/realtime/events?channels=",
        "/api/realtime/events?channels=users:1",
        "/api/realtime/events?channels=content:a/b",
        "/api/realtime/events?channels=content:",
        "/api/realtime/events?channels=content:1,content:2,content:3,content:4,content:5,"
        "content:6,content:7,content:8,content:9",
        "/api/realtime/events?channels=source:a/b",
        "/api/realtime/events?channels=content:*,source:",
        "/api/realtime/events?channels=import:a%20b",
        "/api/realtime/events?channels=import:*,runs:1",
        "/api/realtime/events?channels=sources:*",
        "/api/realtime/events?channels=content:*&last_event_id=t1.x9:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ts_http_get_raw(inst_a.port, bad[i], &b), 400);
        assert_non_null(strstr(b.data, "application/problem+json"));
        assert_non_null(strstr(b.data, "\"status\":400"));
    }
    /* malformed Last-Event-ID */
    int fd = ts_connect_port(inst_a.port, 0);
    const char req[] = "GET /api/realtime/events?channels=content:* HTTP/1.0\r\nLast-Event-ID: "
                       "t1.x9:1\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    ts_sse s = {.fd = fd};
    while (ts_sse_fill(&s, 10000)) {
    }
    assert_non_null(s.buf.data);
    assert_int_equal(strtol(s.buf.data + 9, NULL, 10), 400);
    assert_non_null(strstr(s.buf.data, "application/problem+json"));
    close(fd);
    core_buf_free(&s.buf);
    assert_int_equal(ts_http_get_raw(inst_a.port, "/healthz", &b), 200);
    core_buf_free(&b);
}

/* The item's story: created, four progress stages, generated. */
#define STORY 6
static void produce_story_step(const char *item, int step)
{
    static const char *stages[] = {"queued", "ranking", "composing", "done"};
    static const int pct[] = {0, 40, 80, 100};
    if (step == 0)
        produce_content(item, BUS_PARTITION_ANY, "A \"quoted\"\ntitle \xc3\xa9",
                        CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATING, 1, NULL);
    else if (step < 5)
        produce_progress(item, BUS_PARTITION_ANY, stages[step - 1], pct[step - 1]);
    else
        produce_content(item, BUS_PARTITION_ANY, "A \"quoted\"\ntitle \xc3\xa9",
                        CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED, 2, NULL);
    flush_producer();
}

static void expect_story_event(const ts_sse_event *ev, const char *item, int step)
{
    static const char *stages[] = {"queued", "ranking", "composing", "done"};
    static const int pct[] = {0, 40, 80, 100};
    char want[1024];
    if (step == 0 || step == 5) {
        assert_string_equal(ev->event, "content.item");
        snprintf(want, sizeof want,
                 "{\"item_id\":\"%s\",\"title\":\"A \\\"quoted\\\"\\ntitle \xc3\xa9\","
                 "\"kind\":\"article\",\"status\":\"%s\",\"version\":%d,\"failure_reason\":\"\"}",
                 item, step == 0 ? "generating" : "generated", step == 0 ? 1 : 2);
    } else {
        assert_string_equal(ev->event, "generation.progress");
        snprintf(want, sizeof want,
                 "{\"item_id\":\"%s\",\"job_id\":\"job-1\",\"stage\":\"%s\",\"percent\":%d,"
                 "\"provider\":\"local\"}",
                 item, stages[step - 1], pct[step - 1]);
    }
    assert_string_equal(ev->data, want);
    assert_null(strstr(ev->data, "BODY"));
    assert_true(ev->id[0] == 't');
}

static void test_events_in_order_same_ids_on_second_instance(void **state)
{
    (void)state;
    char item[96], chan[128];
    snprintf(item, sizeof item, "it1-%s", uniq);
    snprintf(chan, sizeof chan, "content:%s", item);
    ts_sse a1, all, b1;
    sse_open(&a1, inst_a.port, chan, NULL);
    sse_open(&all, inst_a.port, "content:*", NULL);
    start_instance(&inst_b); /* mid-run */
    sse_open(&b1, inst_b.port, chan, NULL);

    char ids[STORY][1024];
    for (int step = 0; step < STORY; step++) {
        produce_story_step(item, step);
        ts_sse_event ev, evb, eva;
        assert_true(ts_sse_next(&a1, &ev, 20000));
        expect_story_event(&ev, item, step);
        snprintf(ids[step], sizeof ids[step], "%s", ev.id);
        assert_true(ts_sse_next_for(&all, item, &eva, 20000));
        expect_story_event(&eva, item, step);
        assert_true(ts_sse_next(&b1, &evb, 20000));
        expect_story_event(&evb, item, step);
        assert_string_equal(evb.id, ev.id); /* same events, same ids on both instances */
        if (step) assert_string_not_equal(ids[step], ids[step - 1]);
    }
    ts_sse_close(&a1);
    ts_sse_close(&all);
    ts_sse_close(&b1);
}

static void test_resume_gets_exactly_the_missed_events(void **state)
{
    (void)state;
    char item[96], chan[160];
    snprintf(item, sizeof item, "it2-%s", uniq);
    snprintf(chan, sizeof chan, "content:%s,content:*", item);
    ts_sse c, watch;
    sse_open(&c, inst_a.port, chan, NULL);
    sse_open(&watch, inst_a.port, "content:*", NULL);
    char last[1024] = "", live[STORY][1024];
    ts_sse_event ev;
    for (int step = 0; step < 2; step++) {
        produce_story_step(item, step);
        assert_true(ts_sse_next(&c, &ev, 20000));
        expect_story_event(&ev, item, step);
        snprintf(last, sizeof last, "%s", ev.id);
        assert_true(ts_sse_next_for(&watch, item, &ev, 20000));
        assert_string_equal(ev.id, last);
    }
    ts_sse_close(&c); /* disconnected: the rest is missed */
    for (int step = 2; step < STORY; step++) {
        produce_story_step(item, step);
        assert_true(ts_sse_next_for(&watch, item, &ev, 20000));
        expect_story_event(&ev, item, step);
        snprintf(live[step], sizeof live[step], "%s", ev.id);
    }
    ts_sse_close(&watch);
    /* Resume on either instance: exactly steps 2..5, then nothing else; on the second with the
     * position in the query (what a page that opens a new EventSource can send). */
    instance *where[] = {&inst_a, &inst_b};
    for (int w = 0; w < 2; w++) {
        ts_sse r;
        if (w == 0) {
            sse_open(&r, where[w]->port, chan, last);
        } else {
            char with_query[2048];
            snprintf(with_query, sizeof with_query, "%s&last_event_id=%s", chan, last);
            sse_open(&r, where[w]->port, with_query, NULL);
        }
        for (int step = 2; step < STORY; step++) {
            assert_true(ts_sse_next(&r, &ev, 20000));
            expect_story_event(&ev, item, step);
            /* the ids a client that never left got for the same events */
            assert_string_equal(ev.id, live[step]);
        }
        assert_false(ts_sse_next(&r, &ev, 1000)); /* no duplicate, nothing extra */
        assert_true(r.heartbeats > 0);            /* heartbeats arrive meanwhile */
        ts_sse_close(&r);
    }
}

static void test_too_old_id_gets_reset(void **state)
{
    (void)state;
    char item[96], chan[128];
    snprintf(item, sizeof item, "it3-%s", uniq);
    snprintf(chan, sizeof chan, "content:%s", item);
    ts_sse c;
    sse_open(&c, inst_a.port, chan, NULL);
    produce_progress(item, BUS_PARTITION_ANY, "queued", 0);
    flush_producer();
    ts_sse_event ev;
    assert_true(ts_sse_next(&c, &ev, 20000));
    char first[1024];
    snprintf(first, sizeof first, "%s", ev.id);
    for (int i = 1; i <= 12; i++) /* history holds 8 per item channel */
        produce_progress(item, BUS_PARTITION_ANY, "ranking", i);
    flush_producer();
    for (int i = 1; i <= 12; i++)
        assert_true(ts_sse_next(&c, &ev, 20000));
    ts_sse_close(&c);
    ts_sse r;
    sse_open(&r, inst_a.port, chan, first);
    assert_true(ts_sse_next(&r, &ev, 20000));
    assert_string_equal(ev.event, "reset");
    assert_non_null(strstr(ev.data, "reason"));
    /* and the subscription goes on live */
    produce_progress(item, BUS_PARTITION_ANY, "composing", 80);
    flush_producer();
    assert_true(ts_sse_next(&r, &ev, 20000));
    assert_string_equal(ev.event, "generation.progress");
    assert_non_null(strstr(ev.data, "\"percent\":80"));
    ts_sse_close(&r);
}

/* The next event on s is exactly this one; its id goes to id (when not NULL). Content events
 * are passed over when another kind is expected: an earlier test's may still reach a content:*
 * subscription on an instance whose consumer lags behind the other's. */
static void expect_event(ts_sse *s, const char *event, const char *json, char *id, size_t size)
{
    ts_sse_event ev;
    do
        assert_true(ts_sse_next(s, &ev, 20000));
    while (strcmp(event, "generation.progress") && !strcmp(ev.event, "generation.progress"));
    assert_string_equal(ev.event, event);
    assert_string_equal(ev.data, json);
    assert_true(ev.id[0] == 't');
    if (id) snprintf(id, size, "%s", ev.id);
}

static void test_run_and_import_progress_reach_subscribers(void **state)
{
    (void)state;
    char src[96], other[96], imp[96], ch[512], json[1024];
    snprintf(src, sizeof src, "src-%s", uniq);
    snprintf(other, sizeof other, "src2-%s", uniq);
    snprintf(imp, sizeof imp, "imp-%s", uniq);
    ts_sse s1, sall, i1, iall, mix_a, mix_b;
    snprintf(ch, sizeof ch, "source:%s", src);
    sse_open(&s1, inst_a.port, ch, NULL);
    sse_open(&sall, inst_a.port, "source:*", NULL);
    snprintf(ch, sizeof ch, "import:%s", imp);
    sse_open(&i1, inst_a.port, ch, NULL);
    sse_open(&iall, inst_a.port, "import:*", NULL);
    snprintf(ch, sizeof ch, "content:*,source:%s,import:%s", src, imp);
    sse_open(&mix_a, inst_a.port, ch, NULL);
    sse_open(&mix_b, inst_b.port, ch, NULL);
    /* a run starts, another source's run starts (source:* only), the import commits a batch,
     * the run progresses, the import fails, the run fails: error texts escaped, one line */
    static const struct {
        bool import, other;
        const char *run_id, *state;
        int64_t count;
        const char *error, *error_json;
    } steps[] = {
        {false, false, "run-1", "started", 0, NULL, NULL},
        {false, true, "run-9", "started", 0, NULL, NULL},
        {true, false, NULL, "running", 500, NULL, NULL},
        {false, false, "run-1", "progress", 40, NULL, NULL},
        {true, false, NULL, "failed", 1000, "row 3: \"bad\"\naddress \xff",
         "row 3: \\\"bad\\\"\\naddress \xef\xbf\xbd"},
        {false, false, "run-1", "failed", 80, "HTTP 503\r\nevent: forged",
         "HTTP 503\\r\\nevent: forged"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *id = steps[i].import ? imp : steps[i].other ? other : src;
        if (steps[i].import) {
            produce_import(id, BUS_PARTITION_ANY, steps[i].state, steps[i].count, steps[i].error);
            import_json(json, sizeof json, id, steps[i].state, steps[i].count, steps[i].error_json);
        } else {
            produce_run(id, BUS_PARTITION_ANY, steps[i].run_id, steps[i].state, steps[i].count,
                        steps[i].error);
            run_json(json, sizeof json, id, steps[i].run_id, steps[i].state, steps[i].count,
                     steps[i].error_json);
        }
        flush_producer();
        const char *event = steps[i].import ? "import.progress" : "scrape.run";
        expect_event(steps[i].import ? &iall : &sall, event, json, NULL, 0);
        if (steps[i].other) continue;
        char ida[1024], idb[1024];
        expect_event(steps[i].import ? &i1 : &s1, event, json, NULL, 0);
        expect_event(&mix_a, event, json, ida, sizeof ida);
        expect_event(&mix_b, event, json, idb, sizeof idb); /* the other instance */
        assert_string_equal(ida, idb);
        assert_non_null(strstr(ida, steps[i].import ? ".i" : ".s"));
    }
    /* nothing else reached the one-entity channels (the other source's run, say) */
    ts_sse_event ev;
    assert_false(ts_sse_next(&s1, &ev, 500));
    assert_false(ts_sse_next(&i1, &ev, 100));
    ts_sse_close(&s1);
    ts_sse_close(&sall);
    ts_sse_close(&i1);
    ts_sse_close(&iall);
    ts_sse_close(&mix_a);
    ts_sse_close(&mix_b);
}

static void test_resume_across_run_import_and_content_sources(void **state)
{
    (void)state;
    char item[96], src[96], imp[96], chans[512], json[1024];
    snprintf(item, sizeof item, "it6-%s", uniq);
    snprintf(src, sizeof src, "src3-%s", uniq);
    snprintf(imp, sizeof imp, "imp3-%s", uniq);
    snprintf(chans, sizeof chans, "content:%s,source:%s,import:%s", item, src, imp);
    ts_sse c, watch;
    sse_open(&c, inst_a.port, chans, NULL);
    sse_open(&watch, inst_a.port, chans, NULL);
    char last[1024], wid[1024];
    produce_run(src, BUS_PARTITION_ANY, "run-3", "started", 0, NULL);
    flush_producer();
    run_json(json, sizeof json, src, "run-3", "started", 0, NULL);
    expect_event(&c, "scrape.run", json, NULL, 0);
    expect_event(&watch, "scrape.run", json, NULL, 0);
    produce_import(imp, BUS_PARTITION_ANY, "running", 10, NULL);
    flush_producer();
    import_json(json, sizeof json, imp, "running", 10, NULL);
    expect_event(&c, "import.progress", json, last, sizeof last);
    expect_event(&watch, "import.progress", json, wid, sizeof wid);
    assert_string_equal(last, wid);
    ts_sse_close(&c); /* the rest is missed: four events of four sources */
    char live[4][1024], want[4][8192];
    const char *names[4] = {"content.item", "scrape.run", "generation.progress", "import.progress"};
    for (int step = 0; step < 4; step++) {
        if (step == 0) {
            produce_story_step(item, 0);
        } else if (step == 1) {
            produce_run(src, BUS_PARTITION_ANY, "run-3", "finished", 12, NULL);
            flush_producer();
        } else if (step == 2) {
            produce_story_step(item, 1);
        } else {
            produce_import(imp, BUS_PARTITION_ANY, "done", 20, NULL);
            flush_producer();
        }
        ts_sse_event ev;
        assert_true(ts_sse_next(&watch, &ev, 20000));
        assert_string_equal(ev.event, names[step]);
        snprintf(live[step], sizeof live[step], "%s", ev.id);
        snprintf(want[step], sizeof want[step], "%s", ev.data);
    }
    ts_sse_close(&watch);
    run_json(json, sizeof json, src, "run-3", "finished", 12, NULL);
    assert_string_equal(want[1], json);
    import_json(json, sizeof json, imp, "done", 20, NULL);
    assert_string_equal(want[3], json);
    /* the final position names all four sources */
    assert_non_null(strstr(live[3], ".c"));
    assert_non_null(strstr(live[3], ".g"));
    assert_non_null(strstr(live[3], ".i"));
    assert_non_null(strstr(live[3], ".s"));
    instance *where[] = {&inst_a, &inst_b};
    for (int w = 0; w < 2; w++) {
        ts_sse r;
        sse_open(&r, where[w]->port, chans, last);
        for (int step = 0; step < 4; step++) {
            ts_sse_event ev;
            assert_true(ts_sse_next(&r, &ev, 20000));
            assert_string_equal(ev.event, names[step]);
            assert_string_equal(ev.data, want[step]);
            assert_string_equal(ev.id, live[step]);
        }
        ts_sse_event ev;
        assert_false(ts_sse_next(&r, &ev, 1000)); /* no duplicate, nothing extra */
        ts_sse_close(&r);
    }
}

static void test_heartbeats_arrive(void **state)
{
    (void)state;
    ts_sse c;
    sse_open(&c, inst_a.port, "content:idle-heartbeat", NULL);
    int64_t deadline = core_mono_ns() + 20000 * 1000000LL;
    while (core_mono_ns() < deadline && !strstr(c.buf.data + c.pos, ": hb\n\n"))
        ts_sse_fill(&c, 500);
    assert_non_null(strstr(c.buf.data + c.pos, ": hb\n\n"));
    ts_sse_close(&c);
}

static double metric_value(int port, const char *series)
{
    core_buf b = {0};
    ts_http_get_raw(port, "/metrics", &b);
    double v = 0;
    char *p = b.data ? strstr(b.data, series) : NULL;
    if (p) v = strtod(p + strlen(series), NULL);
    core_buf_free(&b);
    return v;
}

static void test_slow_client_is_dropped_and_memory_stays_bounded(void **state)
{
    (void)state;
    char item[96], chan[128], mark_item[96], mark_chan[128];
    snprintf(item, sizeof item, "it4-%s", uniq);
    snprintf(chan, sizeof chan, "content:%s", item);
    snprintf(mark_item, sizeof mark_item, "it4m-%s", uniq);
    snprintf(mark_chan, sizeof mark_chan, "content:%s", mark_item);
    ts_sse slow;
    sse_open_at(&slow, inst_a.port, chan, NULL, 4096); /* never reads until the end */
    ts_run_for(&loop, 500);
    double dropped0 = metric_value(inst_a.port, "sse_dropped_clients_total{reason=\"overflow\"} ");
    char *title = malloc(4001);
    memset(title, 'x', 4000);
    title[4000] = '\0';
    long rss0 = 0, rss1 = 0;
    const int per_round = 2000; /* 8 MB of titles per round */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < per_round; i++)
            produce_content(item, 0, title,
                            CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATING, i, NULL);
        flush_producer();
        /* Let the service take it all in: a marker behind the titles in their partition, on a
         * channel of its own, so the watcher is not sent (and dropped over) the 8 MB itself. */
        ts_sse w;
        sse_open(&w, inst_a.port, mark_chan, NULL);
        produce_content(mark_item, 0, "marker",
                        CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATING, round, NULL);
        flush_producer();
        ts_sse_event ev;
        bool seen = false;
        while (!seen && ts_sse_next(&w, &ev, 60000))
            seen = strstr(ev.data, "\"title\":\"marker\"") != NULL;
        ts_sse_close(&w);
        assert_true(seen);
        if (round == 0) rss0 = rss_kb(inst_a.child.pid);
        if (round == 1) rss1 = rss_kb(inst_a.child.pid);
    }
    free(title);
    assert_true(metric_value(inst_a.port, "sse_dropped_clients_total{reason=\"overflow\"} ") >
                dropped0);
    /* The second 8 MB left no trace beyond allocator noise: nothing accumulates per event. */
    fprintf(stderr, "realtime RSS after round 1: %ld kB, after round 2: %ld kB\n", rss0, rss1);
    assert_true(rss0 > 0 && rss1 > 0);
    assert_true(rss1 - rss0 < 6 * 1024);
    /* The slow client finally reads: its stream ends with the overflow event. */
    ts_sse_event ev;
    bool overflow = false;
    slow.pos = 0;
    while (ts_sse_fill(&slow, 5000)) {
    }
    char *body = slow.buf.data ? strstr(slow.buf.data, "\r\n\r\n") : NULL;
    assert_non_null(body);
    slow.pos = (size_t)(body + 4 - slow.buf.data);
    while (ts_sse_next(&slow, &ev, 100))
        overflow = strcmp(ev.event, "overflow") == 0;
    assert_true(overflow); /* the last event */
    ts_sse_close(&slow);
}

static void test_malformed_records_are_skipped_and_counted(void **state)
{
    (void)state;
    char item[96], chan[128], series[256];
    snprintf(item, sizeof item, "it5-%s", uniq);
    snprintf(chan, sizeof chan, "content:%s", item);
    snprintf(series, sizeof series, "realtime_malformed_events_total{topic=\"%s\"} ", t_progress);
    double before = metric_value(inst_a.port, series);
    ts_sse c;
    sse_open(&c, inst_a.port, chan, NULL);
    produce(t_progress, item, BUS_PARTITION_ANY, "\xff\xff\xff garbage", 11);
    produce_progress(item, BUS_PARTITION_ANY, "ranking", 40);
    flush_producer();
    ts_sse_event ev;
    assert_true(ts_sse_next(&c, &ev, 20000)); /* the good one after it still arrives */
    assert_string_equal(ev.event, "generation.progress");
    assert_non_null(strstr(ev.data, "\"percent\":40"));
    ts_sse_close(&c);
    assert_true(metric_value(inst_a.port, series) >= before + 1);
    core_buf b = {0};
    assert_int_equal(ts_http_get_raw(inst_a.port, "/metrics", &b), 200);
    assert_non_null(strstr(b.data, "sse_clients "));
    assert_non_null(strstr(b.data, "events_published_total{channel_kind=\"item\"}"));
    assert_non_null(strstr(b.data, "events_published_total{channel_kind=\"all\"}"));
    assert_non_null(strstr(b.data, "sse_resumes_total{result=\"reset\"}"));
    assert_int_equal(ts_http_get_raw(inst_a.port, "/readyz", &b), 200);
    assert_non_null(strstr(b.data, "\"kafka\""));
    core_buf_free(&b);
}

static void test_malformed_run_and_import_records_are_skipped(void **state)
{
    (void)state;
    char src[96], imp[96], chans[256], s_runs[256], s_imports[256], json[1024];
    snprintf(src, sizeof src, "src4-%s", uniq);
    snprintf(imp, sizeof imp, "imp4-%s", uniq);
    snprintf(chans, sizeof chans, "source:*,import:%s", imp);
    snprintf(s_runs, sizeof s_runs, "realtime_malformed_events_total{topic=\"%s\"} ", t_runs);
    snprintf(s_imports, sizeof s_imports, "realtime_malformed_events_total{topic=\"%s\"} ",
             t_imports);
    double runs0 = metric_value(inst_a.port, s_runs),
           imports0 = metric_value(inst_a.port, s_imports);
    ts_sse c;
    sse_open(&c, inst_a.port, chans, NULL);
    /* on partition 0 of each topic, so the good records come after the bad ones */
    produce(t_runs, src, 0, "\xff\xff\xff garbage", 11);
    produce_run("bad id", 0, "run-4", "started", 0, NULL); /* no valid source id */
    produce(t_imports, imp, 0, "\xff\xff\xff garbage", 11);
    produce_run(src, 0, "run-4", "started", 1, NULL);
    flush_producer();
    run_json(json, sizeof json, src, "run-4", "started", 1, NULL);
    expect_event(&c, "scrape.run", json, NULL, 0);
    produce_import(imp, 0, "done", 7, NULL);
    flush_producer();
    import_json(json, sizeof json, imp, "done", 7, NULL);
    expect_event(&c, "import.progress", json, NULL, 0);
    ts_sse_close(&c);
    assert_true(metric_value(inst_a.port, s_runs) >= runs0 + 2);
    assert_true(metric_value(inst_a.port, s_imports) >= imports0 + 1);
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    ts_unique_name(uniq, sizeof uniq, "rt");
    for (char *p = uniq; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) *p = '-';
    snprintf(t_content, sizeof t_content, "rt-it-content-%s", uniq);
    snprintf(t_progress, sizeof t_progress, "rt-it-progress-%s", uniq);
    snprintf(t_runs, sizeof t_runs, "rt-it-runs-%s", uniq);
    snprintf(t_imports, sizeof t_imports, "rt-it-imports-%s", uniq);
    const char *topics[] = {t_content, t_progress, t_runs, t_imports};
    for (int i = 0; i < 4; i++)
        if (!ts_bus_create_topic(&loop, brokers, topics[i], 3, NULL)) return -1;
    char err[256];
    producer = bus_producer_new(&loop,
                                &(bus_producer_config){.brokers = brokers,
                                                       .client_id = "realtime-it",
                                                       .source = "/tests/realtime"},
                                err, sizeof err);
    if (!producer) return -1;
    start_instance(&inst_a);
    return 0;
}

static void on_producer_closed(void *data, size_t remaining)
{
    (void)remaining;
    *(bool *)data = true;
}

static int teardown(void **state)
{
    (void)state;
    stop_instance(&inst_b, false);
    stop_instance(&inst_a, false);
    bool closed = false;
    bus_producer_close(producer, 10000, on_producer_closed, &closed);
    ts_run_until(&loop, ts_flag_set, &closed, 20000);
    const char *topics[] = {t_content, t_progress, t_runs, t_imports};
    for (int i = 0; i < 4; i++)
        ts_bus_delete_topic(&loop, brokers, topics[i]);
    ts_loop_close_all(&loop);
    return 0;
}

static void test_sigterm_sends_final_event_and_exits_0(void **state)
{
    (void)state;
    stop_instance(&inst_b, true);
    stop_instance(&inst_a, true);
}

int main(void)
{
    brokers = ts_env("KAFKA_BROKERS");
    ts_bin_path(rt_path, sizeof rt_path, "realtime");
    if (!brokers) {
        const struct CMUnitTest none[] = {cmocka_unit_test(test_needs_kafka)};
        return cmocka_run_group_tests_name("realtime_service", none, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests_are_400_problems),
        cmocka_unit_test(test_events_in_order_same_ids_on_second_instance),
        cmocka_unit_test(test_resume_gets_exactly_the_missed_events),
        cmocka_unit_test(test_too_old_id_gets_reset),
        cmocka_unit_test(test_run_and_import_progress_reach_subscribers),
        cmocka_unit_test(test_resume_across_run_import_and_content_sources),
        cmocka_unit_test(test_malformed_run_and_import_records_are_skipped),
        cmocka_unit_test(test_heartbeats_arrive),
        cmocka_unit_test(test_slow_client_is_dropped_and_memory_stays_bounded),
        cmocka_unit_test(test_malformed_records_are_skipped_and_counted),
        cmocka_unit_test(test_sigterm_sends_final_event_and_exits_0),
    };
    return cmocka_run_group_tests_name("realtime_service", tests, setup, teardown);
}
