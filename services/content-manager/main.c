/*
 * content-manager: owns content items. Wires configuration, the HTTP API, the outbox relay, the
 * generation-progress consumer and the SIGTERM drain on one libuv loop.
 */
#include <stdio.h>
#include <stdlib.h>

#include "app.h"

static void kafka_ready(http_check *check, void *data)
{
    cm_app *app = data;
    bool ok = bus_producer_connected(app->producer) && app->consumer &&
              bus_consumer_connected(app->consumer);
    http_check_done(check, ok, ok ? "broker reachable" : "no broker reachable");
}

static void db_ready(http_check *check, void *data)
{
    cm_app *app = data;
    bool ok = db_pool_ready(app->db);
    http_check_done(check, ok, ok ? "connected" : "no connection");
}

static void stop(cm_app *app);

static void migrated(const char *err, int applied, void *data)
{
    cm_app *app = data;
    if (err) {
        core_log_error("migrations failed", CORE_F_STR("error", err));
        app->exit_code = 1;
        stop(app);
        return;
    }
    core_log_info("migrations applied", CORE_F_INT("applied", applied));
    if (app->stopping) return;
    /* The relay and the consumer need the schema: they start once it is there. */
    char msg[512];
    app->relay = db_outbox_relay_new(
        app->loop, app->db,
        &(db_relay_config){.brokers = app->brokers, .name = CM_SERVICE, .source = app->source}, msg,
        sizeof msg);
    if (app->relay) app->consumer = cm_progress_consumer(app, app->brokers, msg, sizeof msg);
    if (!app->relay || !app->consumer) {
        core_log_error("cannot start", CORE_F_STR("error", msg));
        app->exit_code = 1;
        stop(app);
    }
}

/* Drain in dependency order: HTTP, the consumer (its message in flight finishes, offsets are
 * committed), the relay, the database, and last the producer that carries dead letters. */
static void producer_closed(void *data, size_t remaining)
{
    cm_app *app = data;
    if (remaining) {
        core_log_error("producer closed with undelivered records",
                       CORE_F_INT("remaining", remaining));
        app->exit_code = 1;
    }
    core_log_info("drained");
}

static void db_closed(void *data)
{
    cm_app *app = data;
    bus_producer_close(app->producer, 10000, producer_closed, app);
}

static void relay_closed(void *data)
{
    cm_app *app = data;
    db_pool_close(app->db, db_closed, app);
}

static void consumer_closed(void *data)
{
    cm_app *app = data;
    if (app->relay)
        db_outbox_relay_close(app->relay, relay_closed, app);
    else
        relay_closed(app);
}

static void http_closed(void *data)
{
    cm_app *app = data;
    if (app->consumer)
        bus_consumer_close(app->consumer, consumer_closed, app);
    else
        consumer_closed(app);
}

static void stop(cm_app *app)
{
    if (app->stopping) return;
    app->stopping = true;
    core_log_info("draining");
    http_server_close(app->http, http_closed, app);
}

static void on_signal(int signum, void *data)
{
    (void)signum;
    stop(data);
}

int main(void)
{
    core_config cc;
    core_config_init(&cc, CM_SERVICE);
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    const char *name = core_config_string(&cc, "SERVICE_NAME", CM_SERVICE);
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    const char *host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 8081, 0, 65535);
    const char *brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    const char *migrations =
        core_config_string(&cc, "MIGRATIONS_DIR", "services/content-manager/migrations");
    const char *provider = core_config_string(&cc, "GENERATION_PROVIDER", "local");
    int64_t max_body = core_config_int(&cc, "HTTP_MAX_BODY_BYTES", 1 << 20, 1024, 64 << 20);
    /* As many as the pool's default connections: more would only queue for one. */
    int64_t in_flight = core_config_int(&cc, "CONSUMER_MAX_IN_FLIGHT", 4, 1, 64);
    db_config dbc;
    db_config_from_env(&cc, &dbc);
    core_config_finish(&cc);

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init(name, min);
    dbc.application_name = name;

    char source[256];
    snprintf(source, sizeof source, "/services/%s", name);
    cm_app app = {.loop = uv_default_loop(),
                  .provider = provider,
                  .brokers = brokers,
                  .source = source,
                  .consumer_in_flight = (unsigned)in_flight};
    cm_metrics_init(&app);
    char err[512];
    app.producer = bus_producer_new(
        app.loop, &(bus_producer_config){.brokers = brokers, .client_id = name, .source = source},
        err, sizeof err);
    if (!app.producer) {
        fprintf(stderr, "%s: kafka: %s\n", name, err);
        return 1;
    }
    app.db = db_pool_new(app.loop, &dbc, err, sizeof err);
    if (!app.db) {
        fprintf(stderr, "%s: database: %s\n", name, err);
        return 1;
    }
    app.http = http_server_new(app.loop, &(http_server_config){.host = host,
                                                               .port = (uint16_t)port,
                                                               .service = name,
                                                               .max_body_bytes = (size_t)max_body});
    if (!app.http) return 1;
    http_readiness_check(app.http, "kafka", kafka_ready, &app);
    http_readiness_check(app.http, "database", db_ready, &app);
    cm_api_register(&app);
    db_migrate(app.db, migrations, migrated, &app);
    app.signals = core_signals_watch(app.loop, on_signal, &app);

    core_log_info("listening", CORE_F_STR("host", host),
                  CORE_F_INT("port", http_server_port(app.http)));
    uv_run(app.loop, UV_RUN_DEFAULT);
    core_signals_close(app.signals);
    uv_run(app.loop, UV_RUN_DEFAULT);
    uv_loop_close(app.loop);
    return app.exit_code;
}
