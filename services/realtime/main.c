/*
 * realtime: Server-Sent Events for the dashboard. Reads content, generation-progress, scraper
 * run and subscriber import events (every instance reads every partition) and fans them out to
 * subscribers of content:<id>, source:<id>, import:<id> and their "*" channels, with resumable
 * ids, history, heartbeats and slow-client eviction (hub.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "consumer.h"
#include "core.h"
#include "http.h"
#include "hub.h"

typedef struct app {
    uv_loop_t *loop;
    http_server *http;
    rt_hub *hub;
    rt_consumer *consumer;
    core_signals *signals;
} app;

static void kafka_ready(http_check *check, void *data)
{
    app *a = data;
    bool ok = rt_consumer_connected(a->consumer);
    http_check_done(check, ok, ok ? "partitions assigned" : "no broker reachable");
}

static void consumer_closed(void *data)
{
    (void)data;
    core_log_info("drained");
}

static void http_closed(void *data)
{
    app *a = data;
    rt_consumer_close(a->consumer, consumer_closed, a);
}

/* SIGTERM: a final event to every client, streams ended, HTTP drained, consumer closed. */
static void on_signal(int signum, void *data)
{
    (void)signum;
    app *a = data;
    core_log_info("shutting down", CORE_F_INT("clients", rt_hub_clients(a->hub)));
    rt_hub_shutdown(a->hub);
    rt_hub_close(a->hub);
    http_server_close(a->http, http_closed, a);
}

int main(void)
{
    core_config cc;
    core_config_init(&cc, "realtime");
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    const char *service = core_config_string(&cc, "SERVICE_NAME", "realtime");
    const char *host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 8083, 0, 65535);
    const char *brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    const char *topics[RT_NTOPICS];
    topics[RT_TOPIC_CONTENT] =
        core_config_string(&cc, "REALTIME_CONTENT_TOPIC", TOPIC_CONTENT_ITEMS);
    topics[RT_TOPIC_PROGRESS] =
        core_config_string(&cc, "REALTIME_PROGRESS_TOPIC", TOPIC_AI_GENERATION_PROGRESS);
    topics[RT_TOPIC_RUNS] =
        core_config_string(&cc, "REALTIME_SCRAPER_RUNS_TOPIC", TOPIC_SCRAPER_RUNS);
    topics[RT_TOPIC_IMPORTS] =
        core_config_string(&cc, "REALTIME_IMPORTS_TOPIC", TOPIC_SUBSCRIBER_IMPORTS);
    rt_hub_config hc = {
        .heartbeat_ms = core_config_duration_ms(&cc, "SSE_HEARTBEAT", "15s"),
        .max_pending =
            (size_t)core_config_int(&cc, "SSE_MAX_PENDING_BYTES", 262144, 4096, 64 * 1024 * 1024),
        .ring_item = (uint32_t)core_config_int(&cc, "SSE_HISTORY_ITEM", 256, 0, 65536),
        .ring_all = (uint32_t)core_config_int(&cc, "SSE_HISTORY_ALL", 4096, 0, 1048576),
        .idle_ms = core_config_duration_ms(&cc, "SSE_CHANNEL_IDLE", "10m"),
        .max_item_channels =
            (size_t)core_config_int(&cc, "SSE_MAX_ITEM_CHANNELS", 10000, 1, 10000000),
        .max_sub_channels = (size_t)core_config_int(&cc, "SSE_MAX_CHANNELS", 8, 1, 16),
    };
    core_config_finish(&cc);

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init(service, min);

    app a = {.loop = uv_default_loop()};
    a.hub = rt_hub_new(a.loop, &hc);
    char err[256];
    a.consumer = rt_consumer_new(a.loop, a.hub, brokers, topics, err, sizeof err);
    if (!a.consumer) {
        fprintf(stderr, "realtime: kafka: %s\n", err);
        return 1;
    }
    a.http = http_server_new(
        a.loop, &(http_server_config){.host = host, .port = (uint16_t)port, .service = service});
    if (!a.http) return 1; /* http_server_new logged why */
    http_readiness_check(a.http, "kafka", kafka_ready, &a);
    rt_api_register(a.http, a.hub);
    a.signals = core_signals_watch(a.loop, on_signal, &a);

    core_log_info("listening", CORE_F_STR("host", host),
                  CORE_F_INT("port", http_server_port(a.http)));
    uv_run(a.loop, UV_RUN_DEFAULT);
    core_signals_close(a.signals);
    uv_run(a.loop, UV_RUN_DEFAULT);
    rt_hub_free(a.hub);
    uv_loop_close(a.loop);
    return 0;
}
