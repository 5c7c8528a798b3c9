/*
 * ai-processor: turns generation requests into content bodies.
 *
 * Start-up: configuration (one clear line on error), HTTP (/healthz, /readyz, /metrics,
 * GET /api/ai/jobs/{job_id}), the producer the dead letters go through, the database pool and
 * migrations, then the jobs a previous run left unfinished are queued again, and only then
 * does the consumer start (so that no job is both resumed and taken in anew) next to the
 * outbox relay that publishes every event the jobs write.
 *
 * SIGTERM drains in dependency order: stop consuming and let running jobs finish (for up to
 * AI_DRAIN_TIMEOUT; what is left stays queued/running in the table and is resumed at the next
 * start), then HTTP, the relay, the pool and the producer.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus.h"
#include "core.h"
#include "db.h"
#include "http.h"
#include "jobs.h"
#include "provider.h"

#define SERVICE "ai-processor"

typedef struct svc {
    uv_loop_t *loop;
    const char *brokers;
    const char *migrations;
    int64_t drain_ms;
    unsigned intake_in_flight;
    http_server *http;
    bus_producer *producer; /* dead letters */
    bus_consumer *consumer;
    db_pool *db;
    db_relay *relay;
    provider *provider;
    ai_jobs *jobs;
    core_signals *signals;
    bool stopping;
    int waiting_for; /* drain steps still running: consumer close, jobs drain */
    int exit_code;
} svc;

static void fatal_stop(svc *s, const char *msg, const char *err);
static void on_signal(int signum, void *data);

/* ---------------------------------------------------------------- readiness */

static void kafka_ready(http_check *check, void *data)
{
    svc *s = data;
    bool ok = bus_producer_connected(s->producer) &&
              (!s->consumer || bus_consumer_connected(s->consumer));
    http_check_done(check, ok, ok ? "broker reachable" : "no broker reachable");
}

static void db_ready(http_check *check, void *data)
{
    svc *s = data;
    bool ok = db_pool_ready(s->db);
    http_check_done(check, ok, ok ? "connected" : "no connection");
}

/* ---------------------------------------------------------------- start-up */

static void on_resumed(void *data, const char *err, int count)
{
    svc *s = data;
    if (err) {
        fatal_stop(s, "cannot load unfinished jobs", err);
        return;
    }
    (void)count;
    if (s->stopping) return;
    char e[256];
    static const char *const topics[] = {TOPIC_AI_GENERATION_REQUESTS, NULL};
    s->consumer = bus_consumer_new(s->loop,
                                   &(bus_consumer_config){.brokers = s->brokers,
                                                          .group_id = SERVICE,
                                                          .client_id = SERVICE,
                                                          .topics = topics,
                                                          .dlq_topic = TOPIC_DLQ_AI_PROCESSOR,
                                                          .dlq_producer = s->producer,
                                                          .max_in_flight = s->intake_in_flight},
                                   ai_jobs_on_message, s->jobs, e, sizeof e);
    if (!s->consumer) {
        fatal_stop(s, "cannot start the consumer", e);
        return;
    }
    core_log_info("consuming", CORE_F_STR("topic", TOPIC_AI_GENERATION_REQUESTS));
}

static void on_migrated(const char *err, int applied, void *data)
{
    svc *s = data;
    if (err) {
        fatal_stop(s, "migrations failed", err);
        return;
    }
    core_log_info("migrations applied", CORE_F_INT("applied", applied));
    if (s->stopping) return;
    char e[256];
    s->relay = db_outbox_relay_new(
        s->loop, s->db, &(db_relay_config){.brokers = s->brokers, .name = SERVICE}, e, sizeof e);
    if (!s->relay) {
        fatal_stop(s, "cannot start the outbox relay", e);
        return;
    }
    ai_jobs_resume(s->jobs, on_resumed, s);
}

/* ---------------------------------------------------------------- drain */

static void producer_closed(void *data, size_t remaining)
{
    svc *s = data;
    if (remaining) {
        core_log_error("producer closed with undelivered records",
                       CORE_F_INT("remaining", remaining));
        s->exit_code = 1;
    }
    core_log_info("drained");
}

static void pool_closed(void *data)
{
    svc *s = data;
    bus_producer_close(s->producer, 10000, producer_closed, s);
}

static void relay_closed(void *data)
{
    svc *s = data;
    s->relay = NULL;
    db_pool_close(s->db, pool_closed, s);
}

static void http_closed(void *data)
{
    svc *s = data;
    if (s->relay)
        db_outbox_relay_close(s->relay, relay_closed, s);
    else
        relay_closed(s);
}

/* Consumer closed and jobs drained: nothing produces work any more. */
static void drain_step_done(void *data)
{
    svc *s = data;
    if (--s->waiting_for > 0) return;
    http_server_close(s->http, http_closed, s);
}

static void on_signal(int signum, void *data)
{
    (void)signum;
    svc *s = data;
    if (s->stopping) return;
    s->stopping = true;
    core_log_info("draining", CORE_F_INT("running", ai_jobs_running(s->jobs)));
    http_server_stop_accepting(s->http);
    /* Both at once: the consumer's close waits for a message the jobs may be holding back,
     * which ai_jobs_drain releases. */
    s->waiting_for = 2;
    if (s->consumer)
        bus_consumer_close(s->consumer, drain_step_done, s);
    else
        s->waiting_for--;
    s->consumer = NULL;
    ai_jobs_drain(s->jobs, s->drain_ms, drain_step_done, s);
}

static void fatal_stop(svc *s, const char *msg, const char *err)
{
    core_log_error(msg, CORE_F_STR("error", err));
    s->exit_code = 1;
    on_signal(SIGTERM, s);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    core_config cc;
    core_config_init(&cc, SERVICE);
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const providers[] = {"local", NULL};
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    const char *host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 8082, 0, 65535);
    const char *brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    const char *migrations =
        core_config_string(&cc, "MIGRATIONS_DIR", "services/ai-processor/migrations");
    /* Only the offline provider exists so far; OpenAI, Anthropic and Ollama plug in here. */
    const char *ai_provider = core_config_enum(&cc, "AI_PROVIDER", "local", providers);
    int64_t max_concurrent = core_config_int(&cc, "AI_MAX_CONCURRENT", 8, 1, 1024);
    int64_t max_queued = core_config_int(&cc, "AI_MAX_QUEUED", 256, 1, 100000);
    /* Requests recorded at once (each a transaction); as many as the pool's default
     * connections: more would only queue for one. */
    int64_t intake_in_flight = core_config_int(&cc, "CONSUMER_MAX_IN_FLIGHT", 4, 1, 64);
    int64_t drain_ms = core_config_duration_ms(&cc, "AI_DRAIN_TIMEOUT", "10s");
    db_config dbc;
    db_config_from_env(&cc, &dbc);
    dbc.application_name = SERVICE;
    core_config_finish(&cc);
    (void)ai_provider;

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init(SERVICE, min);

    svc s = {.loop = uv_default_loop(),
             .brokers = brokers,
             .migrations = migrations,
             .drain_ms = drain_ms,
             .intake_in_flight = (unsigned)intake_in_flight};
    char err[256];
    s.producer = bus_producer_new(s.loop,
                                  &(bus_producer_config){.brokers = brokers,
                                                         .client_id = SERVICE,
                                                         .source = "/services/" SERVICE},
                                  err, sizeof err);
    if (!s.producer) {
        fprintf(stderr, SERVICE ": kafka: %s\n", err);
        return 1;
    }
    s.db = db_pool_new(s.loop, &dbc, err, sizeof err);
    if (!s.db) {
        fprintf(stderr, SERVICE ": database: %s\n", err);
        return 1;
    }
    s.provider = provider_local_new(s.loop, NULL);
    s.jobs = ai_jobs_new(&(ai_jobs_config){.loop = s.loop,
                                           .db = s.db,
                                           .provider = s.provider,
                                           .consumer_name = SERVICE,
                                           .max_concurrent = (int)max_concurrent,
                                           .max_queued = (int)max_queued});
    s.http = http_server_new(
        s.loop, &(http_server_config){.host = host, .port = (uint16_t)port, .service = SERVICE});
    if (!s.http) return 1; /* http_server_new logged why */
    http_readiness_check(s.http, "kafka", kafka_ready, &s);
    http_readiness_check(s.http, "database", db_ready, &s);
    http_route(s.http, "GET", "/api/ai/jobs/{job_id}", ai_jobs_http_get, s.jobs);
    db_migrate(s.db, migrations, on_migrated, &s);
    s.signals = core_signals_watch(s.loop, on_signal, &s);

    core_log_info("listening", CORE_F_STR("host", host),
                  CORE_F_INT("port", http_server_port(s.http)), CORE_F_STR("provider", "local"),
                  CORE_F_INT("max_concurrent", max_concurrent));
    uv_run(s.loop, UV_RUN_DEFAULT);
    core_signals_close(s.signals);
    ai_jobs_free(s.jobs);
    provider_destroy(s.provider);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    return s.exit_code;
}
