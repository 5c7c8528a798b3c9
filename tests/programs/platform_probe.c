/*
 * platform_probe: the smallest complete service, wired the way every service's main.c is:
 * configuration from the environment (validated, one clear line on error), JSON logs, the HTTP
 * server with /healthz, /readyz (Kafka and PostgreSQL) and /metrics, an idempotent producer, a
 * database pool with the platform migrations, and a SIGTERM drain that exits 0.
 * The integration tests spawn it to check that wiring from the outside.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bus.h"
#include "core.h"
#include "db.h"
#include "http.h"

typedef struct probe {
    uv_loop_t *loop;
    http_server *http;
    bus_producer *producer;
    db_pool *db;
    core_signals *signals;
    int exit_code;
} probe;

static void probe_kafka_ready(http_check *check, void *data)
{
    probe *p = data;
    bool ok = bus_producer_connected(p->producer);
    http_check_done(check, ok, ok ? "broker reachable" : "no broker reachable");
}

static void probe_db_ready(http_check *check, void *data)
{
    probe *p = data;
    bool ok = db_pool_ready(p->db);
    http_check_done(check, ok, ok ? "connected" : "no connection");
}

static void probe_migrated(const char *err, int applied, void *data)
{
    probe *p = data;
    if (err) {
        core_log_error("migrations failed", CORE_F_STR("error", err));
        p->exit_code = 1;
        uv_stop(p->loop);
        return;
    }
    core_log_info("migrations applied", CORE_F_INT("applied", applied));
}

/* Shutdown runs in dependency order: stop taking requests, finish them, then release the
 * database and flush the producer. */
static void probe_producer_closed(void *data, size_t remaining)
{
    probe *p = data;
    if (remaining) {
        core_log_error("producer closed with undelivered records",
                       CORE_F_INT("remaining", remaining));
        p->exit_code = 1;
    }
    core_log_info("drained");
}

static void probe_db_closed(void *data)
{
    probe *p = data;
    bus_producer_close(p->producer, 10000, probe_producer_closed, p);
}

static void probe_http_closed(void *data)
{
    probe *p = data;
    db_pool_close(p->db, probe_db_closed, p);
}

static void probe_on_signal(int signum, void *data)
{
    (void)signum;
    probe *p = data;
    http_server_close(p->http, probe_http_closed, p);
}

int main(void)
{
    core_config cc;
    core_config_init(&cc, "platform-probe");
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    const char *host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 8090, 0, 65535);
    const char *brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    db_config dbc;
    db_config_from_env(&cc, &dbc);
    core_config_finish(&cc);

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init("platform-probe", min);

    probe p = {.loop = uv_default_loop()};
    char err[256];
    p.producer = bus_producer_new(p.loop,
                                  &(bus_producer_config){.brokers = brokers,
                                                         .client_id = "platform-probe",
                                                         .source = "/services/platform-probe"},
                                  err, sizeof err);
    if (!p.producer) {
        fprintf(stderr, "platform-probe: kafka: %s\n", err);
        return 1;
    }
    p.db = db_pool_new(p.loop, &dbc, err, sizeof err);
    if (!p.db) {
        fprintf(stderr, "platform-probe: database: %s\n", err);
        return 1;
    }
    p.http = http_server_new(
        p.loop,
        &(http_server_config){.host = host, .port = (uint16_t)port, .service = "platform-probe"});
    if (!p.http) return 1; /* http_server_new logged why */
    http_readiness_check(p.http, "kafka", probe_kafka_ready, &p);
    http_readiness_check(p.http, "database", probe_db_ready, &p);
    db_migrate(p.db, NULL, probe_migrated, &p);
    p.signals = core_signals_watch(p.loop, probe_on_signal, &p);

    core_log_info("listening", CORE_F_STR("host", host),
                  CORE_F_INT("port", http_server_port(p.http)));
    uv_run(p.loop, UV_RUN_DEFAULT);
    core_signals_close(p.signals);
    uv_run(p.loop, UV_RUN_DEFAULT);
    uv_loop_close(p.loop);
    return p.exit_code;
}
