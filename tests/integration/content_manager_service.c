/*
 * content-manager seen from outside: the real binary (build/<variant>/bin/content-manager) on
 * the real Kafka and PostgreSQL. The test talks HTTP with libcurl and plays the ai-processor:
 * it reads the GenerationRequests (its own consumer group) and produces GenerationProgress
 * records with libs/bus. Needs KAFKA_BROKERS and CONTENT_MANAGER_DATABASE_URL (skips without).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "contentengine/v1/content.pb-c.h"
#include "contentengine/v1/scraper.pb-c.h"
#include "core.h"
#include "test_support.h"

#define ITEMS "/api/content/items"

typedef struct rec {
    char topic[64];
    char key[128];
    char ce_id[128];
    char ce_type[128];
    char item_id[64];
    char job_id[64];
    int status;
    int64_t version;
    char first_source[256]; /* GenerationRequest: the first source's text */
} rec;

static uv_loop_t loop;
static bool have_infra;
static ts_child svc;
static bool svc_running;
static int port;
static char unique[96];
static bus_producer *producer;
static bus_consumer *consumer;
static rec *recs;
static size_t nrecs, caprecs;
static char svc_out[1 << 16];

/* ---------------------------------------------------------------- plumbing */

static void drain_child(void)
{
    if (!svc_running) return;
    /* keep only the latest output, so a chatty child never blocks on a full pipe */
    char tmp[1 << 16] = "";
    ts_drain_fd(svc.out_fd, tmp, sizeof tmp);
    ts_drain_fd(svc.err_fd, tmp, sizeof tmp);
    if (tmp[0]) snprintf(svc_out, sizeof svc_out, "%s", tmp);
}

static void pump(int64_t ms)
{
    ts_run_for(&loop, ms);
    drain_child();
}

static void on_message(bus_consumer *c, const bus_message *m, void *data)
{
    (void)data;
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 256;
        recs = realloc(recs, caprecs * sizeof *recs);
    }
    rec *r = &recs[nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->topic, sizeof r->topic, "%s", m->topic);
    snprintf(r->key, sizeof r->key, "%.*s", (int)(m->key_len < 100 ? m->key_len : 100),
             m->key ? (const char *)m->key : "");
    snprintf(r->ce_id, sizeof r->ce_id, "%s", m->ce_id);
    snprintf(r->ce_type, sizeof r->ce_type, "%s", m->ce_type);
    if (strcmp(m->topic, TOPIC_CONTENT_ITEMS) == 0) {
        Contentengine__V1__ContentEvent *ev =
            contentengine__v1__content_event__unpack(NULL, m->value_len, m->value);
        if (ev) {
            snprintf(r->item_id, sizeof r->item_id, "%s", ev->item_id);
            r->status = ev->status;
            r->version = ev->version;
            contentengine__v1__content_event__free_unpacked(ev, NULL);
        }
    } else if (strcmp(m->topic, TOPIC_AI_GENERATION_REQUESTS) == 0) {
        Contentengine__V1__GenerationRequest *gr =
            contentengine__v1__generation_request__unpack(NULL, m->value_len, m->value);
        if (gr) {
            snprintf(r->item_id, sizeof r->item_id, "%s", gr->item_id);
            snprintf(r->job_id, sizeof r->job_id, "%s", gr->job_id);
            if (gr->n_sources > 0 && gr->sources[0]->text)
                snprintf(r->first_source, sizeof r->first_source, "%s", gr->sources[0]->text);
            contentengine__v1__generation_request__free_unpacked(gr, NULL);
        }
    }
    bus_done(c, m, BUS_OK, NULL);
}

typedef ts_resp resp;

/* One request; body may be NULL; extra_header e.g. "If-Match: 3" or NULL. */
static void call(resp *out, const char *method, const char *path, const char *body, size_t len,
                 const char *ctype, const char *extra_header)
{
    ts_http_call(out, port, method, path, body, len, ctype, extra_header);
    drain_child();
}

static void call_json(resp *out, const char *method, const char *path, const char *body)
{
    call(out, method, path, body, body ? strlen(body) : 0, NULL, NULL);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int64_t jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void assert_problem(const resp *r, long status)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body.data ? r->body.data : "");
    assert_non_null(strstr(r->ctype, "application/problem+json"));
    assert_non_null(r->json);
    assert_int_equal(jint(r->json, "status"), status);
    assert_non_null(json_object_get(r->json, "title"));
}

/* Creates a brief; out->json is the item. */
static void create(resp *out, const char *title, const char *kind)
{
    json_t *b = json_pack("{s:s,s:s,s:s,s:s,s:[{s:s},{s:s}]}", "title", title, "kind", kind,
                          "topic", "testing", "instructions", "be brief", "sources", "text",
                          "The first source sentence is here. It has two sentences.", "text",
                          "A second source talks about other things.");
    char *s = json_dumps(b, JSON_COMPACT);
    call_json(out, "POST", ITEMS, s);
    free(s);
    json_decref(b);
    if (out->status != 201) fail_msg("create answered %ld: %s", out->status, out->body.data);
    assert_string_equal(jstr(out->json, "status"), "generating");
    assert_int_equal(jint(out->json, "version"), 1);
}

static void get_item(resp *out, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, ITEMS "/%.200s", id);
    call_json(out, "GET", path, NULL);
    assert_int_equal(out->status, 200);
}

/* The item's history as "what:status:version[:stage percent][:detail]" entries joined by
 * spaces, oldest first. */
static void get_history(const char *id, char *out, size_t cap)
{
    char path[256];
    resp r = {0};
    snprintf(path, sizeof path, ITEMS "/%s/history", id);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    json_t *events = json_object_get(r.json, "events");
    assert_true(json_is_array(events));
    size_t len = 0, i;
    json_t *e;
    out[0] = '\0';
    json_array_foreach(events, i, e)
    {
        int n = snprintf(out + len, cap - len, "%s%s:%s:%lld", i ? " " : "", jstr(e, "what"),
                         jstr(e, "status"), (long long)jint(e, "version"));
        if (*jstr(e, "stage") && strcmp(jstr(e, "what"), "progress") == 0)
            n += snprintf(out + len + n, cap - len - n, ":%s %lld", jstr(e, "stage"),
                          (long long)jint(e, "percent"));
        if (*jstr(e, "detail"))
            n += snprintf(out + len + n, cap - len - n, ":%s", jstr(e, "detail"));
        assert_true((size_t)n < cap - len);
        len += (size_t)n;
    }
    ts_resp_free(&r);
}

/* Polls GET until the item has status, or fails. */
static void wait_status(resp *out, const char *id, const char *status, int64_t ms)
{
    int64_t deadline = core_mono_ns() + ms * 1000000;
    for (;;) {
        get_item(out, id);
        if (strcmp(jstr(out->json, "status"), status) == 0) return;
        if (core_mono_ns() > deadline)
            fail_msg("item %s is %s, not %s", id, jstr(out->json, "status"), status);
        pump(100);
    }
}

static const rec *find_rec(const char *topic, const char *item_id, const char *ce_type, int status)
{
    for (size_t i = 0; i < nrecs; i++) {
        const rec *r = &recs[i];
        if (strcmp(r->topic, topic) != 0) continue;
        if (item_id && strcmp(r->item_id, item_id) != 0) continue;
        if (ce_type && strcmp(r->ce_type, ce_type) != 0) continue;
        if (status >= 0 && r->status != status) continue;
        return r;
    }
    return NULL;
}

static size_t count_recs(const char *topic, const char *item_id, int status)
{
    size_t n = 0;
    for (size_t i = 0; i < nrecs; i++)
        if (strcmp(recs[i].topic, topic) == 0 && strcmp(recs[i].item_id, item_id) == 0 &&
            (status < 0 || recs[i].status == status))
            n++;
    return n;
}

static const rec *wait_rec(const char *topic, const char *item_id, const char *ce_type, int status,
                           int64_t ms)
{
    int64_t deadline = core_mono_ns() + ms * 1000000;
    const rec *r;
    while (!(r = find_rec(topic, item_id, ce_type, status)) && core_mono_ns() < deadline)
        pump(100);
    if (!r)
        fail_msg("no record on %s for %s (%s)", topic, item_id ? item_id : "-",
                 ce_type ? ce_type : "any type");
    return r;
}

static void on_delivered(void *opaque, int err, const char *errstr, int32_t partition,
                         int64_t offset)
{
    (void)errstr, (void)partition, (void)offset;
    *(int *)opaque = err ? 2 : 1;
}

static bool flag_set(void *data)
{
    return *(int *)data != 0;
}

static void produce_to(const char *topic, const char *ce_type, const char *key, const void *value,
                       size_t len, const char *ce_id)
{
    int delivered = 0;
    bus_record r = {.topic = topic,
                    .partition = BUS_PARTITION_ANY,
                    .key = key,
                    .key_len = strlen(key),
                    .value = value,
                    .value_len = len,
                    .ce_type = ce_type,
                    .ce_id = ce_id};
    assert_int_equal(bus_produce(producer, &r, on_delivered, &delivered), 0);
    assert_true(ts_run_until(&loop, flag_set, &delivered, 30000));
    assert_int_equal(delivered, 1);
}

static void produce_raw(const char *key, const void *value, size_t len, const char *ce_id)
{
    produce_to(TOPIC_AI_GENERATION_PROGRESS, "contentengine.ai.generation.progress.v1", key, value,
               len, ce_id);
}

/* Plays the ai-processor: one progress record for job of item. */
static void produce_progress(const char *item, const char *job, const char *stage, int percent,
                             const char *body, const char *error, const char *ce_id)
{
    Contentengine__V1__GenerationProgress p = CONTENTENGINE__V1__GENERATION_PROGRESS__INIT;
    p.item_id = (char *)item;
    p.job_id = (char *)job;
    p.stage = (char *)stage;
    p.percent = percent;
    p.body = (char *)(body ? body : "");
    p.error = (char *)(error ? error : "");
    p.provider = (char *)"test";
    size_t len = contentengine__v1__generation_progress__get_packed_size(&p);
    uint8_t *buf = malloc(len + 1);
    contentengine__v1__generation_progress__pack(&p, buf);
    produce_raw(item, buf, len, ce_id);
    free(buf);
}

/* ---------------------------------------------------------------- setup */

static bool readyz(void)
{
    resp r = {0};
    call_json(&r, "GET", "/readyz", NULL);
    bool ok = r.status == 200;
    ts_resp_free(&r);
    return ok;
}

static char svc_bin[4200], env_migrations[4300], env_port[64], env_kafka[256], env_db[2048];

/* Starts the service and waits until it is ready. */
static bool start_service(void)
{
    if (!ts_spawn(&svc, svc_bin, NULL,
                  (const char *const[]){env_port, env_kafka, env_db, env_migrations,
                                        "LOG_LEVEL=warn", NULL}))
        return false;
    svc_running = true;
    int64_t deadline = core_mono_ns() + 60 * 1000000000LL;
    while (!readyz()) {
        if (core_mono_ns() > deadline) {
            fprintf(stderr, "content-manager never became ready: %s\n", svc_out);
            return false;
        }
        pump(200);
    }
    return true;
}

/* SIGTERM; returns the exit status. */
static int stop_service(void)
{
    kill(svc.pid, SIGTERM);
    int status = ts_wait_or_kill(&svc, 60000);
    char out[1 << 16] = "";
    ts_drain_fd(svc.out_fd, out, sizeof out);
    ts_close_pipes(&svc);
    svc_running = false;
    if (status != 0) fprintf(stderr, "content-manager output: %s%s\n", svc_out, out);
    return status;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&loop);
    const char *brokers = ts_env("KAFKA_BROKERS");
    const char *db = ts_env("CONTENT_MANAGER_DATABASE_URL");
    if (!brokers || !db) return 0;
    core_log_init("content-manager-test", CORE_LOG_WARN);
    ts_unique_name(unique, sizeof unique, "cmtest");

    ts_bin_path(svc_bin, sizeof svc_bin, "content-manager");
    char migrations[4096];
    ts_repo_path(migrations, sizeof migrations, "services/content-manager/migrations");
    snprintf(env_migrations, sizeof env_migrations, "MIGRATIONS_DIR=%s", migrations);

    char err[512];
    producer = bus_producer_new(
        &loop, &(bus_producer_config){.brokers = brokers, .client_id = unique, .source = "/tests"},
        err, sizeof err);
    if (!producer) return -1;
    static const char *const topics[] = {TOPIC_CONTENT_ITEMS, TOPIC_AI_GENERATION_REQUESTS,
                                         TOPIC_DLQ_CONTENT_MANAGER, NULL};
    consumer = bus_consumer_new(&loop,
                                &(bus_consumer_config){.brokers = brokers,
                                                       .group_id = unique,
                                                       .client_id = unique,
                                                       .topics = topics,
                                                       .auto_offset_reset = "earliest"},
                                on_message, NULL, err, sizeof err);
    if (!consumer) return -1;

    port = ts_free_port();
    snprintf(env_port, sizeof env_port, "HTTP_PORT=%d", port);
    snprintf(env_kafka, sizeof env_kafka, "KAFKA_BROKERS=%s", brokers);
    snprintf(env_db, sizeof env_db, "DATABASE_URL=%s", db);
    if (!start_service()) return -1;
    have_infra = true;
    return 0;
}

static bool closed_flag;
static void on_closed(void *data)
{
    (void)data;
    closed_flag = true;
}
static void on_producer_closed(void *data, size_t remaining)
{
    (void)data, (void)remaining;
    closed_flag = true;
}
static bool closed(void *data)
{
    (void)data;
    return closed_flag;
}

static int group_teardown(void **state)
{
    (void)state;
    if (svc_running) {
        kill(svc.pid, SIGKILL);
        ts_wait(&svc, 10000);
        ts_close_pipes(&svc);
        svc_running = false;
    }
    if (consumer) {
        closed_flag = false;
        bus_consumer_close(consumer, on_closed, NULL);
        ts_run_until(&loop, closed, NULL, 60000);
    }
    if (producer) {
        closed_flag = false;
        bus_producer_close(producer, 10000, on_producer_closed, NULL);
        ts_run_until(&loop, closed, NULL, 30000);
    }
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    free(recs);
    curl_global_cleanup();
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_create_emits_request_and_event(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char title[160];
    snprintf(title, sizeof title, "%s create", unique);
    resp r = {0};
    create(&r, title, "article");
    char id[64], job[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    snprintf(job, sizeof job, "%s", jstr(r.json, "job_id"));
    core_uuid u;
    assert_true(core_uuid_parse(id, &u));
    assert_string_equal(jstr(r.json, "title"), title);
    assert_int_equal(json_array_size(json_object_get(r.json, "sources")), 2);
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    assert_string_equal(req->job_id, job);
    assert_string_equal(req->key, id);
    assert_string_equal(req->ce_type, "contentengine.ai.generation.requested.v1");
    const rec *ev =
        wait_rec(TOPIC_CONTENT_ITEMS, id, "contentengine.content.item.created.v1", -1, 30000);
    assert_int_equal(ev->status, CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATING);
    assert_int_equal(ev->version, 1);
    get_item(&r, id);
    assert_string_equal(jstr(r.json, "id"), id);
    ts_resp_free(&r);
}

static void test_done_generates_and_approve(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char title[160], body[160];
    snprintf(title, sizeof title, "%s done", unique);
    snprintf(body, sizeof body, "Generated body of %s.", unique);
    resp r = {0};
    create(&r, title, "newsletter");
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    char job[64];
    snprintf(job, sizeof job, "%s", req->job_id);
    produce_progress(id, job, "ranking", 40, NULL, NULL, NULL);
    int64_t deadline = core_mono_ns() + 30000 * 1000000LL;
    do {
        pump(100);
        get_item(&r, id);
    } while (strcmp(jstr(r.json, "stage"), "ranking") != 0 && core_mono_ns() < deadline);
    assert_string_equal(jstr(r.json, "stage"), "ranking");
    assert_int_equal(jint(r.json, "percent"), 40);
    assert_string_equal(jstr(r.json, "status"), "generating");
    assert_int_equal(jint(r.json, "version"), 1); /* a stage is not a state change */
    produce_progress(id, job, "done", 100, body, NULL, NULL);
    wait_status(&r, id, "generated", 30000);
    assert_string_equal(jstr(r.json, "body"), body);
    assert_int_equal(jint(r.json, "version"), 2);
    assert_string_equal(jstr(r.json, "stage"), "done");
    wait_rec(TOPIC_CONTENT_ITEMS, id, NULL,
             CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED, 30000);

    /* an editor's edit with optimistic concurrency */
    char path[256];
    snprintf(path, sizeof path, ITEMS "/%s", id);
    call(&r, "PATCH", path, "{\"body\":\"edited\"}", 17, NULL, "If-Match: \"1\"");
    assert_problem(&r, 412);
    call(&r, "PATCH", path, "{\"body\":\"edited\",\"version\":1}", 29, NULL, NULL);
    assert_problem(&r, 409);
    call(&r, "PATCH", path, "{\"body\":\"edited\"}", 17, NULL, "If-Match: \"2\"");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "body"), "edited");
    assert_string_equal(jstr(r.json, "status"), "generated");
    assert_int_equal(jint(r.json, "version"), 3);

    snprintf(path, sizeof path, ITEMS "/%s/approve", id);
    call_json(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "approved");
    assert_int_equal(jint(r.json, "version"), 4);
    wait_rec(TOPIC_CONTENT_ITEMS, id, "contentengine.content.item.status_changed.v1",
             CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_APPROVED, 30000);
    /* approved is final for edits and a second approval */
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 409);
    snprintf(path, sizeof path, ITEMS "/%s", id);
    call(&r, "PATCH", path, "{\"body\":\"late\",\"version\":4}", 27, NULL, NULL);
    assert_problem(&r, 409);
    get_item(&r, id);
    assert_string_equal(jstr(r.json, "body"), "edited");
    assert_int_equal(jint(r.json, "version"), 4);

    /* its history: every committed change once, in order (the refused ones left no trace) */
    char history[512];
    get_history(id, history, sizeof history);
    assert_string_equal(history, "created:generating:1 progress:generating:1:ranking 40 "
                                 "status:generated:2 edited:generated:3 status:approved:4");
    call_json(&r, "GET", ITEMS "/01936c6e-0000-7000-8000-000000000000/history", NULL);
    assert_problem(&r, 404);
    call_json(&r, "GET", ITEMS "/not-a-uuid/history", NULL);
    assert_problem(&r, 400);
    ts_resp_free(&r);
}

static void test_approve_generating_conflicts(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char title[160];
    snprintf(title, sizeof title, "%s conflict", unique);
    resp r = {0};
    create(&r, title, "social");
    char id[64], path[256];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    snprintf(path, sizeof path, ITEMS "/%s/approve", id);
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 409);
    snprintf(path, sizeof path, ITEMS "/%s", id);
    call(&r, "PATCH", path, "{\"body\":\"x\",\"version\":1}", 24, NULL, NULL);
    assert_problem(&r, 409);
    snprintf(path, sizeof path, ITEMS "/%s/regenerate", id);
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 409);
    get_item(&r, id);
    assert_string_equal(jstr(r.json, "status"), "generating");
    assert_int_equal(jint(r.json, "version"), 1);
    assert_string_equal(jstr(r.json, "body"), "");
    ts_resp_free(&r);
}

/* A brief can be kept as a draft ("generate": false), edited, then sent to generation. */
static void test_draft_edit_then_generate(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char title[160], body[512], path[256];
    snprintf(title, sizeof title, "%s draft", unique);
    snprintf(body, sizeof body, "{\"title\":\"%s\",\"kind\":\"article\",\"generate\":false}",
             title);
    resp r = {0};
    call_json(&r, "POST", ITEMS, body);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "draft");
    assert_true(json_is_null(json_object_get(r.json, "job_id")));
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    const rec *ev =
        wait_rec(TOPIC_CONTENT_ITEMS, id, "contentengine.content.item.created.v1", -1, 30000);
    assert_int_equal(ev->status, CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_DRAFT);
    snprintf(path, sizeof path, ITEMS "/%s", id);
    call(&r, "PATCH", path, "{\"body\":\"by hand\"}", 18, NULL, "If-Match: \"1\"");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "draft");
    assert_string_equal(jstr(r.json, "body"), "by hand");
    wait_rec(TOPIC_CONTENT_ITEMS, id, "contentengine.content.item.updated.v1", -1, 30000);
    snprintf(path, sizeof path, ITEMS "/%s/approve", id);
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 409);
    assert_int_equal(count_recs(TOPIC_AI_GENERATION_REQUESTS, id, -1), 0);
    snprintf(path, sizeof path, ITEMS "/%s/regenerate", id);
    call_json(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "generating");
    assert_int_equal(jint(r.json, "version"), 3);
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    assert_string_equal(req->job_id, jstr(r.json, "job_id"));
    ts_resp_free(&r);
}

static void test_bad_input_changes_nothing(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char token[128];
    snprintf(token, sizeof token, "%s-bad", unique);
    resp r = {0};
    char body[2048];
    const char *templates[] = {
        "{\"title\":\"%s\",\"kind\":\"article\"",              /* malformed JSON */
        "{\"title\":\"%s\",\"kind\":7}",                       /* wrong type */
        "{\"title\":[\"%s\"],\"kind\":\"article\"}",           /* wrong type */
        "{\"title\":\"%s\",\"kind\":\"poem\"}",                /* unknown kind */
        "{\"title\":\"%s\",\"kind\":\"article\",\"topic\":5}", /* wrong type */
        "{\"title\":\"%s\",\"kind\":\"article\",\"sources\":\"x\"}",
        "{\"title\":\"%s\",\"kind\":\"article\",\"sources\":[{\"text\":\"\"}]}", /* empty */
        "{\"title\":\"%s\",\"kind\":\"article\",\"sources\":[{\"item_id\":\"nope\"}]}",
        "{\"title\":\"%s\",\"kind\":\"article\",\"unknown\":true}",
        "{\"title\":\"%s\",\"kind\":\"article\",\"title\":\"dup\"}", /* duplicate key */
        "[\"%s\"]",
    };
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        snprintf(body, sizeof body, templates[i], token);
        call_json(&r, "POST", ITEMS, body);
        if (r.status != 400) fail_msg("case %zu: %ld for %s", i, r.status, body);
        assert_problem(&r, 400);
    }
    /* empty and oversize fields */
    call_json(&r, "POST", ITEMS, "{\"title\":\"\",\"kind\":\"article\"}");
    assert_problem(&r, 400);
    assert_non_null(json_object_get(r.json, "errors"));
    core_buf big = {0};
    core_buf_printf(&big, "{\"title\":\"%s ", token);
    for (int i = 0; i < 300; i++)
        core_buf_puts(&big, "x");
    core_buf_puts(&big, "\",\"kind\":\"article\"}");
    call_json(&r, "POST", ITEMS, big.data);
    assert_problem(&r, 400);
    core_buf_reset(&big);
    core_buf_printf(&big, "{\"title\":\"%s\",\"kind\":\"article\",\"sources\":[", token);
    for (int i = 0; i < 21; i++)
        core_buf_printf(&big, "%s{\"text\":\"s\"}", i ? "," : "");
    core_buf_puts(&big, "]}");
    call_json(&r, "POST", ITEMS, big.data);
    assert_problem(&r, 400);
    core_buf_reset(&big);
    core_buf_printf(&big, "{\"title\":\"%s\",\"kind\":\"article\",\"sources\":[{\"text\":\"",
                    token);
    for (int i = 0; i < 110 * 1024; i++)
        core_buf_puts(&big, "a");
    core_buf_puts(&big, "\"}]}");
    call_json(&r, "POST", ITEMS, big.data);
    assert_problem(&r, 400);
    /* a body over the server's limit (1 MiB) */
    core_buf_reset(&big);
    core_buf_printf(&big, "{\"title\":\"%s\",\"kind\":\"article\",\"topic\":\"", token);
    for (int i = 0; i < (1 << 20) + 10; i++)
        core_buf_puts(&big, "a");
    core_buf_puts(&big, "\"}");
    call_json(&r, "POST", ITEMS, big.data);
    assert_int_equal(r.status, 413);
    core_buf_free(&big);
    /* not JSON at all */
    snprintf(body, sizeof body, "title=%s", token);
    call(&r, "POST", ITEMS, body, strlen(body), "application/x-www-form-urlencoded", NULL);
    assert_problem(&r, 415);

    /* ids */
    char unknown[CORE_UUID_STRLEN + 1], path[256];
    core_uuid_v7_string(unknown);
    snprintf(path, sizeof path, ITEMS "/%s", unknown);
    call_json(&r, "GET", path, NULL);
    assert_problem(&r, 404);
    call(&r, "PATCH", path, "{\"body\":\"x\",\"version\":1}", 24, NULL, NULL);
    assert_problem(&r, 404);
    snprintf(path, sizeof path, ITEMS "/%s/approve", unknown);
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 404);
    call_json(&r, "GET", ITEMS "/not-a-uuid", NULL);
    assert_problem(&r, 400);
    call_json(&r, "POST", ITEMS "/not-a-uuid/archive", NULL);
    assert_problem(&r, 400);
    /* list parameters */
    call_json(&r, "GET", ITEMS "?status=lost", NULL);
    assert_problem(&r, 400);
    call_json(&r, "GET", ITEMS "?kind=poem", NULL);
    assert_problem(&r, 400);
    call_json(&r, "GET", ITEMS "?limit=1000", NULL);
    assert_problem(&r, 400);
    call_json(&r, "GET", ITEMS "?cursor=garbage", NULL);
    assert_problem(&r, 400);

    /* nothing was created */
    snprintf(path, sizeof path, ITEMS "?q=%s", token);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);

    /* bad edits of an existing item change nothing */
    char title[160];
    snprintf(title, sizeof title, "%s edits", unique);
    create(&r, title, "article");
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    char job[64];
    snprintf(job, sizeof job, "%s", req->job_id);
    produce_progress(id, job, "done", 100, "original", NULL, NULL);
    wait_status(&r, id, "generated", 30000);
    snprintf(path, sizeof path, ITEMS "/%s", id);
    call(&r, "PATCH", path, "{\"body\":", 8, NULL, "If-Match: 2");
    assert_problem(&r, 400);
    call(&r, "PATCH", path, "{\"body\":5}", 10, NULL, "If-Match: 2");
    assert_problem(&r, 400);
    call(&r, "PATCH", path, "{\"body\":\"x\",\"status\":\"approved\"}", 33, NULL, "If-Match: 2");
    assert_problem(&r, 400);
    call(&r, "PATCH", path, "{\"body\":\"x\"}", 12, NULL, "If-Match: banana");
    assert_problem(&r, 400);
    call(&r, "PATCH", path, "{\"body\":\"x\"}", 12, NULL, NULL);
    assert_problem(&r, 428);
    get_item(&r, id);
    assert_string_equal(jstr(r.json, "body"), "original");
    assert_string_equal(jstr(r.json, "status"), "generated");
    assert_int_equal(jint(r.json, "version"), 2);
    ts_resp_free(&r);
}

static void test_duplicate_stale_and_failed_progress(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char title[160];
    snprintf(title, sizeof title, "%s dup", unique);
    resp r = {0};
    create(&r, title, "article");
    char id[64], job[64], path[256];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    snprintf(job, sizeof job, "%s", req->job_id);

    /* the same event twice: one effect */
    char ce_id[CORE_UUID_STRLEN + 1];
    core_uuid_v7_string(ce_id);
    produce_progress(id, job, "done", 100, "first", NULL, ce_id);
    produce_progress(id, job, "done", 100, "second", NULL, ce_id);
    wait_status(&r, id, "generated", 30000);
    pump(2000);
    get_item(&r, id);
    assert_string_equal(jstr(r.json, "body"), "first");
    assert_int_equal(jint(r.json, "version"), 2);

    /* regenerate: a new job and a new request */
    snprintf(path, sizeof path, ITEMS "/%s/regenerate", id);
    call_json(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "generating");
    char job2[64];
    snprintf(job2, sizeof job2, "%s", jstr(r.json, "job_id"));
    assert_string_not_equal(job2, job);
    int64_t deadline = core_mono_ns() + 30000 * 1000000LL;
    while (count_recs(TOPIC_AI_GENERATION_REQUESTS, id, -1) < 2 && core_mono_ns() < deadline)
        pump(100);
    assert_int_equal(count_recs(TOPIC_AI_GENERATION_REQUESTS, id, -1), 2);

    /* a result of the old job is stale; the new job's failure counts */
    produce_progress(id, job, "done", 100, "stale", NULL, NULL);
    produce_progress(id, job2, "failed", 60, NULL, "provider exploded", NULL);
    wait_status(&r, id, "failed", 30000);
    assert_string_equal(jstr(r.json, "failure_reason"), "provider exploded");
    assert_string_equal(jstr(r.json, "body"), "first");
    assert_int_equal(jint(r.json, "version"), 4);
    char history[512];
    get_history(id, history, sizeof history);
    assert_non_null(strstr(history, "status:failed:4:provider exploded"));
    /* a failed item can be regenerated */
    call_json(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "generating");
    assert_true(json_is_null(json_object_get(r.json, "failure_reason")));

    /* exactly one generated event for the item */
    pump(1000);
    assert_int_equal(count_recs(TOPIC_CONTENT_ITEMS, id,
                                CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED),
                     1);
    ts_resp_free(&r);
}

static void test_malformed_record_goes_to_dlq(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char key[128], ce_id[CORE_UUID_STRLEN + 1];
    snprintf(key, sizeof key, "%s-garbage", unique);
    core_uuid_v7_string(ce_id);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    produce_raw(key, garbage, sizeof garbage, ce_id);
    int64_t deadline = core_mono_ns() + 30000 * 1000000LL;
    const rec *d = NULL;
    while (core_mono_ns() < deadline) {
        for (size_t i = 0; i < nrecs && !d; i++)
            if (strcmp(recs[i].topic, TOPIC_DLQ_CONTENT_MANAGER) == 0 &&
                strcmp(recs[i].ce_id, ce_id) == 0)
                d = &recs[i];
        if (d) break;
        pump(100);
    }
    assert_non_null(d);
    assert_string_equal(d->key, key);
    /* still working */
    assert_true(readyz());
    char title[160];
    snprintf(title, sizeof title, "%s after-dlq", unique);
    resp r = {0};
    create(&r, title, "social");
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    char job[64];
    snprintf(job, sizeof job, "%s", req->job_id);
    produce_progress(id, job, "done", 100, "still fine", NULL, NULL);
    wait_status(&r, id, "generated", 30000);
    ts_resp_free(&r);
}

/* Plays the scraper: one ScrapedItem on scraper.items. */
static void produce_scraped(const char *item_id, const char *text)
{
    Contentengine__V1__ScrapedItem it = CONTENTENGINE__V1__SCRAPED_ITEM__INIT;
    it.item_id = (char *)item_id;
    it.source_id = unique;
    it.url = "http://example.test/a";
    it.title = "A scraped page";
    it.text = (char *)text;
    size_t len = contentengine__v1__scraped_item__get_packed_size(&it);
    uint8_t *buf = malloc(len);
    contentengine__v1__scraped_item__pack(&it, buf);
    char ce_id[CORE_UUID_STRLEN + 1];
    core_uuid_v7_string(ce_id);
    produce_to(TOPIC_SCRAPER_ITEMS, "contentengine.scraper.item.v1", unique, buf, len, ce_id);
    free(buf);
}

static void brief_from_item(resp *out, const char *title, const char *item_id)
{
    json_t *b = json_pack("{s:s,s:s,s:[{s:s}]}", "title", title, "kind", "article", "sources",
                          "item_id", item_id);
    char *s = json_dumps(b, JSON_COMPACT);
    call_json(out, "POST", ITEMS, s);
    free(s);
    json_decref(b);
}

static void test_scraped_item_as_source(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char item[CORE_UUID_STRLEN + 1], unknown[CORE_UUID_STRLEN + 1], title[160];
    core_uuid_v7_string(item);
    core_uuid_v7_string(unknown);
    static const char text[] = "Scraped pages become sources. Their text travels with the brief.";

    /* An item the service never received: 422, nothing created. */
    snprintf(title, sizeof title, "%s unknown-source", unique);
    resp r = {0};
    brief_from_item(&r, title, unknown);
    assert_problem(&r, 422);
    assert_non_null(strstr(jstr(r.json, "detail"), unknown));

    /* Received from scraper.items: the brief's request carries the item's text. */
    produce_scraped(item, text);
    snprintf(title, sizeof title, "%s from-scraped", unique);
    int64_t deadline = core_mono_ns() + 30000 * 1000000LL;
    do {
        brief_from_item(&r, title, item);
        if (r.status == 422) pump(200);
    } while (r.status == 422 && core_mono_ns() < deadline);
    assert_int_equal(r.status, 201);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
    json_t *src0 = json_array_get(json_object_get(r.json, "sources"), 0);
    assert_string_equal(json_string_value(json_object_get(src0, "item_id")), item);
    assert_string_equal(json_string_value(json_object_get(src0, "text")), text);
    const rec *req = wait_rec(TOPIC_AI_GENERATION_REQUESTS, id, NULL, -1, 30000);
    assert_string_equal(req->first_source, text);

    /* Only the brief that succeeded exists. */
    char path[300];
    snprintf(path, sizeof path, ITEMS "?q=%s", unique);
    call_json(&r, "GET", path, NULL);
    size_t refused = 0, created = 0;
    json_t *items = json_object_get(r.json, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        const char *t = jstr(json_array_get(items, i), "title");
        if (strstr(t, "unknown-source")) refused++;
        if (strstr(t, "from-scraped")) created++;
    }
    assert_int_equal(refused, 0);
    assert_int_equal(created, 1);

    /* A malformed scraper.items record is dead-lettered. */
    char ce_id[CORE_UUID_STRLEN + 1], key[128];
    core_uuid_v7_string(ce_id);
    snprintf(key, sizeof key, "%s-bad-scraped", unique);
    static const uint8_t garbage[] = {0x0a, 0xff, 0x01};
    produce_to(TOPIC_SCRAPER_ITEMS, "contentengine.scraper.item.v1", key, garbage, sizeof garbage,
               ce_id);
    const rec *d = NULL;
    deadline = core_mono_ns() + 30000 * 1000000LL;
    while (!d && core_mono_ns() < deadline) {
        for (size_t i = 0; i < nrecs && !d; i++)
            if (strcmp(recs[i].topic, TOPIC_DLQ_CONTENT_MANAGER) == 0 &&
                strcmp(recs[i].ce_id, ce_id) == 0)
                d = &recs[i];
        if (!d) pump(100);
    }
    assert_non_null(d);
    ts_resp_free(&r);
}

static void test_list_filters_and_paging(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char token[128], title[200], path[512];
    snprintf(token, sizeof token, "%s-list_50%%", unique);
    resp r = {0};
    char ids[7][64];
    for (int i = 0; i < 7; i++) {
        snprintf(title, sizeof title, "Item %d of %s", i, token);
        create(&r, title, i % 2 ? "social" : "article");
        snprintf(ids[i], sizeof ids[i], "%s", jstr(r.json, "id"));
    }
    char *q = curl_easy_escape(NULL, token, 0);
    /* pages of 3: each item exactly once, newest first */
    int seen[7] = {0};
    int total = 0, pages = 0;
    char cursor[128] = "";
    do {
        if (cursor[0])
            snprintf(path, sizeof path, ITEMS "?q=%s&limit=3&cursor=%s", q, cursor);
        else
            snprintf(path, sizeof path, ITEMS "?q=%s&limit=3", q);
        call_json(&r, "GET", path, NULL);
        assert_int_equal(r.status, 200);
        json_t *items = json_object_get(r.json, "items");
        assert_true(json_array_size(items) <= 3);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            int k = -1;
            for (int j = 0; j < 7; j++)
                if (strcmp(jstr(it, "id"), ids[j]) == 0) k = j;
            assert_true(k >= 0);
            assert_int_equal(k, 6 - total); /* newest first */
            seen[k]++;
            total++;
        }
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        pages++;
    } while (cursor[0] && pages < 10);
    assert_int_equal(total, 7);
    assert_int_equal(pages, 3);
    for (int j = 0; j < 7; j++)
        assert_int_equal(seen[j], 1);

    snprintf(path, sizeof path, ITEMS "?q=%s&kind=social&limit=100", q);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    snprintf(path, sizeof path, ITEMS "?q=%s&kind=article&status=generating", q);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 4);
    snprintf(path, sizeof path, ITEMS "?q=%s&status=approved", q);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    /* % and _ are literal characters in the search, not wildcards */
    char *wild = curl_easy_escape(NULL, "list_50%", 0);
    snprintf(path, sizeof path, ITEMS "?q=%s-%s&limit=100", unique, wild);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 7);
    curl_free(wild);
    wild = curl_easy_escape(NULL, "list%50", 0);
    snprintf(path, sizeof path, ITEMS "?q=%s-%s&limit=100", unique, wild);
    call_json(&r, "GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    curl_free(wild);
    curl_free(q);

    /* archive leaves the filters consistent */
    snprintf(path, sizeof path, ITEMS "/%s/archive", ids[0]);
    call_json(&r, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "archived");
    call_json(&r, "POST", path, NULL);
    assert_problem(&r, 409);
    ts_resp_free(&r);
}

/* A restart in the middle of a run loses nothing: results produced before, during and after
 * the restart each take effect exactly once. */
#define RESTART_N 40
static void test_restart_loses_nothing(void **state)
{
    (void)state;
    if (!have_infra) skip();
    char token[128], title[200], path[512];
    snprintf(token, sizeof token, "%s-restart", unique);
    static char ids[RESTART_N][64], jobs[RESTART_N][64];
    resp r = {0};
    for (int i = 0; i < RESTART_N; i++) {
        snprintf(title, sizeof title, "%s %d", token, i);
        create(&r, title, "article");
        snprintf(ids[i], sizeof ids[i], "%s", jstr(r.json, "id"));
    }
    for (int i = 0; i < RESTART_N; i++) {
        const rec *q = wait_rec(TOPIC_AI_GENERATION_REQUESTS, ids[i], NULL, -1, 30000);
        snprintf(jobs[i], sizeof jobs[i], "%s", q->job_id);
    }
    char body[160];
    for (int i = 0; i < RESTART_N / 2; i++) {
        snprintf(body, sizeof body, "body %d of %s", i, token);
        produce_progress(ids[i], jobs[i], "done", 100, body, NULL, NULL);
    }
    assert_int_equal(stop_service(), 0);
    for (int i = RESTART_N / 2; i < RESTART_N; i++) {
        snprintf(body, sizeof body, "body %d of %s", i, token);
        produce_progress(ids[i], jobs[i], "done", 100, body, NULL, NULL);
    }
    assert_true(start_service());
    snprintf(path, sizeof path, ITEMS "?q=%s&status=generated&limit=100", token);
    int64_t deadline = core_mono_ns() + 60000 * 1000000LL;
    size_t n = 0;
    while ((n = json_array_size(json_object_get(r.json, "items"))) < RESTART_N &&
           core_mono_ns() < deadline) {
        pump(200);
        call_json(&r, "GET", path, NULL);
    }
    assert_int_equal(n, RESTART_N);
    for (int i = 0; i < RESTART_N; i++) {
        get_item(&r, ids[i]);
        snprintf(body, sizeof body, "body %d of %s", i, token);
        assert_string_equal(jstr(r.json, "body"), body);
        assert_int_equal(jint(r.json, "version"), 2);
    }
    /* exactly one generated event per item reaches content.items */
    deadline = core_mono_ns() + 30000 * 1000000LL;
    for (int i = 0; i < RESTART_N; i++)
        while (count_recs(TOPIC_CONTENT_ITEMS, ids[i],
                          CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED) < 1 &&
               core_mono_ns() < deadline)
            pump(100);
    pump(1000);
    for (int i = 0; i < RESTART_N; i++) {
        assert_int_equal(count_recs(TOPIC_CONTENT_ITEMS, ids[i],
                                    CONTENTENGINE__V1__CONTENT_STATUS__CONTENT_STATUS_GENERATED),
                         1);
        assert_int_equal(count_recs(TOPIC_AI_GENERATION_REQUESTS, ids[i], -1), 1);
    }
    ts_resp_free(&r);
}

static void test_metrics_and_sigterm_drain(void **state)
{
    (void)state;
    if (!have_infra) skip();
    resp r = {0};
    call_json(&r, "GET", "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "items_created_total"));
    assert_non_null(strstr(r.body.data, "transitions_total{from=\"generating\",to=\"generated\"}"));
    call_json(&r, "GET", "/healthz", NULL);
    assert_int_equal(r.status, 200);
    ts_resp_free(&r);
    assert_int_equal(stop_service(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_emits_request_and_event),
        cmocka_unit_test(test_done_generates_and_approve),
        cmocka_unit_test(test_approve_generating_conflicts),
        cmocka_unit_test(test_draft_edit_then_generate),
        cmocka_unit_test(test_bad_input_changes_nothing),
        cmocka_unit_test(test_duplicate_stale_and_failed_progress),
        cmocka_unit_test(test_malformed_record_goes_to_dlq),
        cmocka_unit_test(test_scraped_item_as_source),
        cmocka_unit_test(test_list_filters_and_paging),
        cmocka_unit_test(test_restart_loses_nothing),
        cmocka_unit_test(test_metrics_and_sigterm_drain),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
