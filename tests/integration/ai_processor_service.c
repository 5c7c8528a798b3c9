/*
 * The ai-processor service seen from outside: build/<variant>/bin/ai-processor runs as a real
 * process against the real Kafka and PostgreSQL (its own role, AI_PROCESSOR_DATABASE_URL).
 * Requests go to ai.generation.requests through libs/bus; a consumer of a group of its own
 * reads ai.generation.progress and dlq.ai-processor. Topics are shared and outlive a run, so
 * every item id carries this run's unique prefix and other events are ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "contentengine/v1/content.pb-c.h"
#include "core.h"
#include "test_support.h"

#define MAX_ITEMS 64
#define WAIT_MS   120000 /* a SIGKILLed member holds its partitions until its session ends */

static const char *brokers;
static const char *db_url;
static char bin_path[4096];
static char migrations_dir[4096];
static uv_loop_t loop;

/* ---------------------------------------------------------------- the service process */

typedef struct service {
    ts_child child;
    bool running;
    int port;
    char out[1 << 16]; /* the last of its output, for failure messages */
} service;

static service svc;

/* Appends to svc.out, dropping the oldest output when full. */
static void svc_append(const char *chunk)
{
    size_t have = strlen(svc.out), add = strlen(chunk);
    if (add >= sizeof svc.out) {
        chunk += add - (sizeof svc.out - 1);
        add = sizeof svc.out - 1;
    }
    if (have + add + 1 > sizeof svc.out) {
        size_t drop = have + add + 1 - sizeof svc.out;
        memmove(svc.out, svc.out + drop, have - drop + 1);
        have -= drop;
    }
    memcpy(svc.out + have, chunk, add + 1);
}

static void svc_drain_output(void)
{
    if (!svc.running) return;
    char chunk[8192];
    for (int k = 0; k < 2; k++) {
        chunk[0] = '\0';
        ts_drain_fd(k == 0 ? svc.child.out_fd : svc.child.err_fd, chunk, sizeof chunk);
        svc_append(chunk);
    }
}

/* Reads the child's pipes while the test waits, so that its logging never blocks it. */
static uv_timer_t drain_timer;
static void on_drain_tick(uv_timer_t *t)
{
    (void)t;
    svc_drain_output();
}

/* extra: up to 4 more NAME=value entries, NULL-terminated. */
static void svc_start_env(const char *const *extra)
{
    svc.port = ts_free_port();
    char portenv[64], kenv[512], dbenv[2048], migenv[4200];
    snprintf(portenv, sizeof portenv, "HTTP_PORT=%d", svc.port);
    snprintf(kenv, sizeof kenv, "KAFKA_BROKERS=%s", brokers);
    snprintf(dbenv, sizeof dbenv, "DATABASE_URL=%s", db_url);
    snprintf(migenv, sizeof migenv, "MIGRATIONS_DIR=%s", migrations_dir);
    const char *env[10] = {portenv, kenv, dbenv, migenv, "AI_DRAIN_TIMEOUT=10s"};
    for (size_t i = 0, n = 5; extra[i] && n < 9; i++)
        env[n++] = extra[i];
    svc.out[0] = '\0';
    assert_true(ts_spawn(&svc.child, bin_path, NULL, env));
    svc.running = true;
}

static void svc_start(const char *extra_env)
{
    svc_start_env((const char *const[]){extra_env, NULL});
}

/* Waits for the process to exit and returns its status (-1: it did not, and was killed). */
static int svc_wait_exit(int64_t ms)
{
    int64_t deadline = core_mono_ns() + ms * 1000000;
    int status = -1;
    while (core_mono_ns() < deadline) {
        svc_drain_output();
        status = ts_wait(&svc.child, 100);
        if (status != -1) break;
    }
    svc_drain_output();
    if (status == -1) {
        kill(svc.child.pid, SIGKILL);
        ts_wait(&svc.child, 5000);
    }
    close(svc.child.out_fd);
    close(svc.child.err_fd);
    svc.running = false;
    return status;
}

static void svc_kill(void)
{
    if (!svc.running) return;
    kill(svc.child.pid, SIGKILL);
    svc_wait_exit(10000);
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    core_buf_append(userdata, ptr, size * nmemb);
    return size * nmemb;
}

static long http_get(const char *path, core_buf *body, char *ctype, size_t ctype_size)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", svc.port, path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    core_buf_reset(body);
    core_buf_puts(body, "");
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        char *ct = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
        if (ctype) snprintf(ctype, ctype_size, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(h);
    return status;
}

static void svc_wait_ready(void)
{
    core_buf body = {0};
    int64_t deadline = core_mono_ns() + (int64_t)60000 * 1000000;
    bool ready = false;
    while (!ready && core_mono_ns() < deadline) {
        ready = http_get("/readyz", &body, NULL, 0) == 200;
        if (!ready) ts_run_for(&loop, 200);
    }
    core_buf_free(&body);
    if (!ready) fail_msg("ai-processor never became ready; output:\n%s", svc.out);
}

/* ---------------------------------------------------------------- what the test saw */

typedef struct item_seen {
    int queued, ranking, composing, done, failed;
    int events;
    char first[16], last[16];
    char job_id[64];
    char body[4096];
    char error[256];
} item_seen;

typedef struct run_state {
    char prefix[64];
    item_seen items[MAX_ITEMS];
    int dlq_seen;
    char dlq_error[256];
    char dlq_key[128];
} run_state;

static run_state run;

static int item_index(const char *item_id)
{
    size_t n = strlen(run.prefix);
    if (strncmp(item_id, run.prefix, n) != 0 || item_id[n] != '-') return -1;
    char *end = NULL;
    long i = strtol(item_id + n + 1, &end, 10);
    if (!end || *end || i < 0 || i >= MAX_ITEMS) return -1;
    return (int)i;
}

static void on_progress(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    Contentengine__V1__GenerationProgress *p =
        contentengine__v1__generation_progress__unpack(NULL, m->value_len, m->value);
    int i = p ? item_index(p->item_id) : -1;
    if (i >= 0) {
        item_seen *it = &run.items[i];
        if (it->events++ == 0) snprintf(it->first, sizeof it->first, "%s", p->stage);
        snprintf(it->last, sizeof it->last, "%s", p->stage);
        snprintf(it->job_id, sizeof it->job_id, "%s", p->job_id);
        if (strcmp(p->stage, "queued") == 0) it->queued++;
        if (strcmp(p->stage, "ranking") == 0) it->ranking++;
        if (strcmp(p->stage, "composing") == 0) it->composing++;
        if (strcmp(p->stage, "done") == 0) {
            it->done++;
            if (p->percent != 100) it->failed++; /* counted as a failure: done is 100 % */
            snprintf(it->body, sizeof it->body, "%s", p->body);
        }
        if (strcmp(p->stage, "failed") == 0) {
            it->failed++;
            snprintf(it->error, sizeof it->error, "%s", p->error);
        }
    }
    if (p) contentengine__v1__generation_progress__free_unpacked(p, NULL);
    bus_done(c, m, BUS_OK, NULL);
}

static void on_dead_letter(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    if (m->key_len == strlen(run.dlq_key) && memcmp(m->key, run.dlq_key, m->key_len) == 0) {
        run.dlq_seen++;
        size_t len = 0;
        const void *e = bus_message_header(m, BUS_DLQ_H_ERROR, &len);
        if (e) snprintf(run.dlq_error, sizeof run.dlq_error, "%.*s", (int)len, (const char *)e);
    }
    bus_done(c, m, BUS_OK, NULL);
}

static bus_consumer *reader(const char *topic, bus_handler fn)
{
    char group[128], err[256];
    ts_unique_name(group, sizeof group, "ai-processor-it");
    const char *topics[] = {topic, NULL};
    bus_consumer *c = bus_consumer_new(&loop,
                                       &(bus_consumer_config){.brokers = brokers,
                                                              .group_id = group,
                                                              .client_id = "ai-processor-it",
                                                              .topics = topics,
                                                              .auto_offset_reset = "earliest"},
                                       fn, NULL, err, sizeof err);
    if (!c) fail_msg("consumer: %s", err);
    return c;
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static bool flag_set(void *data)
{
    return *(bool *)data;
}

static void close_reader(bus_consumer *c)
{
    bool closed = false;
    bus_consumer_close(c, on_closed, &closed);
    assert_true(ts_run_until(&loop, flag_set, &closed, 60000));
}

/* ---------------------------------------------------------------- producing requests */

static int delivered, delivery_failures;

static void on_delivery(void *opaque, int err, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)opaque;
    (void)partition;
    (void)offset;
    if (err) {
        fprintf(stderr, "delivery failed: %s\n", errstr);
        delivery_failures++;
    }
    delivered++;
}

static const char *const source_texts[] = {
    "Solar panels on city roofs produced a record amount of power this summer. Engineers said "
    "the grid handled the surplus without trouble. Storage batteries took the evening peak.",
    "The council plans to double the number of public chargers by next year. Drivers have "
    "asked for faster chargers near the train stations. Funding comes from the regional budget.",
    "Heat pumps now warm a third of new homes in the region. Installers report waiting lists of "
    "several months. Training programmes for technicians are expanding quickly.",
};

static void item_id_of(int i, char *out, size_t size)
{
    snprintf(out, size, "%s-%d", run.prefix, i);
}

static const char *request_provider = ""; /* GenerationRequest.provider of the next request */
static char *filler;                      /* when set, appended to the first source: slower jobs */

/* 400 distinct sentences, so that a job takes a while and jobs pile up behind one slot. */
static void make_filler(void)
{
    core_buf b = {0};
    core_buf_puts(&b, source_texts[0]);
    for (int i = 0; i < 400; i++)
        core_buf_printf(&b, " Report %d counts %d new panels on street %d near depot %d.", i,
                        i * 7 + 3, i * 13 + 1, i % 17);
    filler = core_buf_steal(&b, NULL);
}

static void produce_request(bus_producer *p, int i, const char *job_id, const char *ce_id)
{
    char item[128];
    item_id_of(i, item, sizeof item);
    Contentengine__V1__SourceText s[3];
    Contentengine__V1__SourceText *sp[3];
    for (int k = 0; k < 3; k++) {
        contentengine__v1__source_text__init(&s[k]);
        s[k].text = (char *)(k == 0 && filler ? filler : source_texts[k]);
        sp[k] = &s[k];
    }
    Contentengine__V1__GenerationRequest m = CONTENTENGINE__V1__GENERATION_REQUEST__INIT;
    m.job_id = (char *)job_id;
    m.item_id = item;
    m.kind = CONTENTENGINE__V1__CONTENT_KIND__CONTENT_KIND_ARTICLE;
    m.title = "Clean energy in the city";
    m.topic = "energy";
    m.n_sources = 3;
    m.sources = sp;
    m.provider = (char *)request_provider;
    size_t len = contentengine__v1__generation_request__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    contentengine__v1__generation_request__pack(&m, buf);
    bus_record r = {.topic = TOPIC_AI_GENERATION_REQUESTS,
                    .partition = BUS_PARTITION_ANY,
                    .key = item,
                    .key_len = strlen(item),
                    .value = buf,
                    .value_len = len,
                    .ce_type = "contentengine.ai.generation.requested.v1",
                    .ce_id = ce_id};
    assert_int_equal(bus_produce(p, &r, on_delivery, NULL), 0);
    free(buf);
}

static void job_id_of(int i, char *out, size_t size)
{
    snprintf(out, size, "job-%s-%d", run.prefix, i);
}

static int delivery_target;
static bool deliveries_done(void *data)
{
    (void)data;
    return delivered >= delivery_target;
}

static void wait_deliveries(int n)
{
    delivery_target = n;
    assert_true(ts_run_until(&loop, deliveries_done, NULL, 30000));
    assert_int_equal(delivery_failures, 0);
}

static bus_producer *new_producer(void)
{
    char err[256];
    bus_producer *p = bus_producer_new(&loop,
                                       &(bus_producer_config){.brokers = brokers,
                                                              .client_id = "ai-processor-it",
                                                              .source = "/tests/ai-processor"},
                                       err, sizeof err);
    if (!p) fail_msg("producer: %s", err);
    delivered = delivery_failures = 0;
    return p;
}

static void on_producer_closed(void *data, size_t remaining)
{
    assert_int_equal(remaining, 0);
    *(bool *)data = true;
}

static void close_producer(bus_producer *p)
{
    bool closed = false;
    bus_producer_close(p, 10000, on_producer_closed, &closed);
    assert_true(ts_run_until(&loop, flag_set, &closed, 30000));
}

typedef struct until_done {
    int from, to;
    bool need_dlq;
} until_done;

static bool items_done(void *data)
{
    until_done *u = data;
    for (int i = u->from; i < u->to; i++)
        if (run.items[i].done + run.items[i].failed == 0) return false;
    return !u->need_dlq || run.dlq_seen > 0;
}

static void report_missing(int from, int to)
{
    for (int i = from; i < to; i++) {
        item_seen *it = &run.items[i];
        if (it->done + it->failed == 0)
            fprintf(stderr, "item %d: %d events, last \"%s\"\n", i, it->events, it->last);
    }
    fprintf(stderr, "service output (last part):\n%s\n", svc.out);
}

/* ---------------------------------------------------------------- tests */

static int setup(void **state)
{
    (void)state;
    memset(&run, 0, sizeof run);
    ts_unique_name(run.prefix, sizeof run.prefix, "aip");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    svc_kill();
    return 0;
}

/* queued ... done with a body from the sources; one job and one done for a request delivered
 * twice (same event id) and for one job_id sent under two event ids; a malformed record is
 * dead-lettered with dlq_error and the next good request is still processed; the job record
 * over HTTP; a clean SIGTERM. */
static void test_requests_duplicates_and_dead_letters(void **state)
{
    (void)state;
    if (!brokers || !db_url) skip();
    svc_start("LOG_LEVEL=info");
    svc_wait_ready();
    bus_consumer *progress = reader(TOPIC_AI_GENERATION_PROGRESS, on_progress);
    bus_consumer *dlq = reader(TOPIC_DLQ_AI_PROCESSOR, on_dead_letter);
    bus_producer *p = new_producer();

    char job[128], ce_id[CORE_UUID_STRLEN + 1];
    job_id_of(0, job, sizeof job);
    produce_request(p, 0, job, NULL);
    /* item 1: the same record twice (a redelivery: same ce_id) */
    job_id_of(1, job, sizeof job);
    core_uuid_v7_string(ce_id);
    produce_request(p, 1, job, ce_id);
    produce_request(p, 1, job, ce_id);
    /* item 2: one job_id under two event ids */
    job_id_of(2, job, sizeof job);
    produce_request(p, 2, job, NULL);
    produce_request(p, 2, job, NULL);
    wait_deliveries(5);
    /* a malformed record, then a good one on the same partition (same key) */
    snprintf(run.dlq_key, sizeof run.dlq_key, "%s-3", run.prefix);
    static const char garbage[] = "\xff\xff\xff not a protobuf";
    bus_record bad = {.topic = TOPIC_AI_GENERATION_REQUESTS,
                      .partition = BUS_PARTITION_ANY,
                      .key = run.dlq_key,
                      .key_len = strlen(run.dlq_key),
                      .value = garbage,
                      .value_len = sizeof garbage - 1,
                      .ce_type = "contentengine.ai.generation.requested.v1"};
    assert_int_equal(bus_produce(p, &bad, on_delivery, NULL), 0);
    job_id_of(3, job, sizeof job);
    produce_request(p, 3, job, NULL);
    /* item 4 asks for a provider this service does not run: recorded, then failed */
    job_id_of(4, job, sizeof job);
    request_provider = "openai";
    produce_request(p, 4, job, NULL);
    request_provider = "";
    wait_deliveries(8);

    until_done u = {0, 5, true};
    if (!ts_run_until(&loop, items_done, &u, WAIT_MS)) {
        report_missing(0, 5);
        fail_msg("not every item finished (dead letters seen: %d)", run.dlq_seen);
    }
    /* anything doubled would arrive about now: give it a moment to show up */
    ts_run_for(&loop, 2000);

    for (int i = 0; i < 4; i++) {
        item_seen *it = &run.items[i];
        if (it->done != 1 || it->failed != 0 || it->queued != 1)
            fail_msg("item %d: queued %d done %d failed %d (%s)", i, it->queued, it->done,
                     it->failed, it->error);
        assert_string_equal(it->first, "queued");
        assert_string_equal(it->last, "done");
        assert_true(it->ranking >= 1 && it->composing >= 1);
        /* extractive: the body is made of the sources' sentences */
        assert_non_null(strstr(it->body, "# Clean energy in the city"));
        int found = 0;
        static const char *const sentences[] = {
            "Solar panels on city roofs produced a record amount of power this summer.",
            "Heat pumps now warm a third of new homes in the region.",
            "The council plans to double the number of public chargers by next year."};
        for (int k = 0; k < 3; k++)
            found += strstr(it->body, sentences[k]) != NULL;
        if (found == 0) fail_msg("body has no source sentence:\n%s", it->body);
    }
    item_seen *other = &run.items[4];
    if (other->failed != 1 || other->done != 0 || other->queued != 1)
        fail_msg("item 4: queued %d done %d failed %d", other->queued, other->done, other->failed);
    assert_string_equal(other->last, "failed");
    assert_non_null(strstr(other->error, "provider \"openai\" is not configured"));
    /* same input, same output */
    assert_string_equal(run.items[0].body, run.items[3].body);

    assert_int_equal(run.dlq_seen, 1);
    assert_non_null(strstr(run.dlq_error, "not a GenerationRequest"));

    core_buf body = {0};
    char ctype[128] = "", path[256];
    job_id_of(0, job, sizeof job);
    snprintf(path, sizeof path, "/api/ai/jobs/%s", job);
    assert_int_equal(http_get(path, &body, ctype, sizeof ctype), 200);
    assert_non_null(strstr(body.data, "\"done\""));
    assert_non_null(strstr(body.data, "\"provider\""));
    assert_non_null(strstr(body.data, "\"input_bytes\""));
    assert_non_null(strstr(body.data, "\"finished_at\""));
    assert_int_equal(http_get("/api/ai/jobs/no-such-job", &body, ctype, sizeof ctype), 404);
    assert_non_null(strstr(ctype, "application/problem+json"));
    assert_int_equal(http_get("/metrics", &body, NULL, 0), 200);
    assert_non_null(strstr(body.data, "jobs_total{provider=\"local\",result=\"done\"}"));
    assert_non_null(strstr(body.data, "job_seconds_bucket"));
    assert_non_null(strstr(body.data, "jobs_in_flight"));
    core_buf_free(&body);

    close_producer(p);
    close_reader(progress);
    close_reader(dlq);
    kill(svc.child.pid, SIGTERM);
    int status = svc_wait_exit(60000);
    if (status != 0) fail_msg("exit status %d after SIGTERM; output:\n%s", status, svc.out);
    assert_non_null(strstr(svc.out, "\"msg\":\"drained\""));
}

/* Several requests recorded at once (CONSUMER_MAX_IN_FLIGHT) against a queue of one: intakes
 * are held back (parked) and acknowledged as room appears; every request becomes exactly one
 * job with one queued and one done event, and SIGTERM drains cleanly. */
static void test_full_queue_holds_concurrent_intakes(void **state)
{
    (void)state;
    if (!brokers || !db_url) skip();
    svc_start_env((const char *const[]){"LOG_LEVEL=warn", "AI_MAX_QUEUED=1", "AI_MAX_CONCURRENT=1",
                                        "CONSUMER_MAX_IN_FLIGHT=4", NULL});
    svc_wait_ready();
    bus_consumer *progress = reader(TOPIC_AI_GENERATION_PROGRESS, on_progress);
    bus_producer *p = new_producer();
    enum { N = 48 };
    for (int i = 0; i < N; i++) {
        char job[128];
        job_id_of(i, job, sizeof job);
        produce_request(p, i, job, NULL);
    }
    wait_deliveries(N);
    until_done u = {0, N, false};
    if (!ts_run_until(&loop, items_done, &u, WAIT_MS)) {
        report_missing(0, N);
        fail_msg("not every item finished");
    }
    ts_run_for(&loop, 2000); /* anything doubled would arrive about now */
    for (int i = 0; i < N; i++) {
        item_seen *it = &run.items[i];
        if (it->queued != 1 || it->done != 1 || it->failed != 0)
            fail_msg("item %d: queued %d done %d failed %d", i, it->queued, it->done, it->failed);
    }
    close_producer(p);
    close_reader(progress);
    kill(svc.child.pid, SIGTERM);
    int status = svc_wait_exit(60000);
    if (status != 0) fail_msg("exit status %d after SIGTERM; output:\n%s", status, svc.out);
}

/* The service's own view (its table, not the events, which the relay publishes a little
 * later): how many of this run's jobs are finished and how many are not. */
static PGconn *pg;
static void job_counts(int *finished, int *unfinished)
{
    char like[128];
    snprintf(like, sizeof like, "%s-%%", run.prefix);
    const char *vals[1] = {like};
    PGresult *r = PQexecParams(pg,
                               "SELECT count(*) FILTER (WHERE status IN ('done', 'failed')), "
                               "count(*) FILTER (WHERE status IN ('queued', 'running')) "
                               "FROM jobs WHERE item_id LIKE $1",
                               1, NULL, vals, NULL, NULL, 0);
    *finished = *unfinished = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        *finished = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        *unfinished = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    } else {
        fprintf(stderr, "job count: %s", PQerrorMessage(pg));
    }
    PQclear(r);
}

/* Some jobs are finished and at least 5 are recorded but not: a kill now leaves acknowledged,
 * unfinished jobs behind. */
static bool mid_run(void *data)
{
    (void)data;
    int finished, unfinished;
    job_counts(&finished, &unfinished);
    return finished > 0 && unfinished >= 5;
}

/* SIGKILL while N requests are being worked on, then a restart: every item ends with exactly
 * one done (jobs acknowledged but unfinished are resumed from the table; the relay publishes
 * each event once). */
static void test_sigkill_mid_run_then_restart(void **state)
{
    (void)state;
    if (!brokers || !db_url) skip();
    enum { N = 50 };
    svc_start("AI_MAX_CONCURRENT=1");
    svc_wait_ready();
    make_filler();
    bus_consumer *progress = reader(TOPIC_AI_GENERATION_PROGRESS, on_progress);
    bus_producer *p = new_producer();
    for (int i = 0; i < N; i++) {
        char job[128];
        job_id_of(i, job, sizeof job);
        produce_request(p, i, job, NULL);
    }
    wait_deliveries(N);
    int n = N;
    pg = PQconnectdb(db_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    bool mid = ts_run_until(&loop, mid_run, &n, WAIT_MS);
    svc_kill();
    free(filler);
    filler = NULL;
    int finished, unfinished;
    job_counts(&finished, &unfinished);
    PQfinish(pg);
    pg = NULL;
    if (!mid) fail_msg("never caught the service mid-run; output:\n%s", svc.out);
    /* the restart has to finish these from the table: their requests were acknowledged */
    assert_true(unfinished >= 1);
    fprintf(stderr, "killed with %d jobs finished and %d recorded but unfinished\n", finished,
            unfinished);

    svc_start("AI_MAX_CONCURRENT=4");
    until_done u = {0, N, false};
    if (!ts_run_until(&loop, items_done, &u, WAIT_MS)) {
        report_missing(0, N);
        fail_msg("not every item finished after the restart");
    }
    ts_run_for(&loop, 2000);
    for (int i = 0; i < N; i++) {
        item_seen *it = &run.items[i];
        if (it->done != 1 || it->failed != 0)
            fail_msg("item %d: done %d failed %d (%s)", i, it->done, it->failed, it->error);
        assert_true(it->queued >= 1);
    }
    close_producer(p);
    close_reader(progress);
    kill(svc.child.pid, SIGTERM);
    int status = svc_wait_exit(60000);
    if (status != 0) fail_msg("exit status %d after SIGTERM; output:\n%s", status, svc.out);
}

/* An unknown AI_PROVIDER stops the service at once with one line naming it. */
static void test_unknown_provider_is_a_config_error(void **state)
{
    (void)state;
    if (!brokers || !db_url) skip();
    svc_start("AI_PROVIDER=openai");
    int status = svc_wait_exit(20000);
    assert_int_equal(status, CORE_CONFIG_EXIT_CODE);
    assert_non_null(strstr(svc.out, "AI_PROVIDER"));
}

int main(void)
{
    brokers = ts_env("KAFKA_BROKERS");
    db_url = ts_env("AI_PROCESSOR_DATABASE_URL");
    if (!brokers || !db_url)
        fprintf(stderr, "skipped: KAFKA_BROKERS or AI_PROCESSOR_DATABASE_URL is not set\n");
    /* .../build/<variant>/tests/integration/<test> -> .../build/<variant>/bin/ai-processor */
    char programs[3000];
    ts_program_path(programs, sizeof programs, "x");
    char *cut = strstr(programs, "/tests/programs/x");
    if (cut) *cut = '\0';
    snprintf(bin_path, sizeof bin_path, "%s/bin/ai-processor", programs);
    /* and the repository root two levels above build/<variant> */
    char root[3000];
    snprintf(root, sizeof root, "%s", programs);
    for (int k = 0; k < 2; k++) {
        char *slash = strrchr(root, '/');
        if (slash) *slash = '\0';
    }
    snprintf(migrations_dir, sizeof migrations_dir, "%s/services/ai-processor/migrations", root);

    uv_loop_init(&loop);
    uv_timer_init(&loop, &drain_timer);
    uv_timer_start(&drain_timer, on_drain_tick, 50, 50);
    uv_unref((uv_handle_t *)&drain_timer);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_provider_is_a_config_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_duplicates_and_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_mid_run_then_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_holds_concurrent_intakes, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("ai_processor_service", tests, NULL, NULL);
    curl_global_cleanup();
    svc_kill();
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    return rc;
}
