/*
 * An outbox relay as its own process, for tests/integration/db_outbox.c to kill mid-run.
 * Configured from the environment:
 *   PLATFORM_TEST_DATABASE_URL  the database (required)
 *   DB_SEARCH_PATH              the schema whose outbox to publish (required)
 *   KAFKA_BROKERS               required
 *   RELAY_NAME                  required
 *   RELAY_CHECKPOINT_TOPIC      required (tests use their own compacted topic)
 *   RELAY_BATCH_SIZE            default 20
 *   RELAY_EXIT_WHEN_DONE        1: exit 0 once the outbox has no unsent row (after leading)
 *   DB_OUTBOX_CRASH_AFTER       kafka_commit | kafka_produce (sanitizer/test builds only)
 * Prints "published N" on stdout when it exits normally.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

typedef struct prog {
    uv_loop_t *loop;
    db_pool *pool;
    db_relay *relay;
    core_signals *signals;
    uv_timer_t check;
    bool exit_when_done;
    bool stopping;
    bool checking;
    uint64_t published;
} prog;

static void pool_closed(void *data)
{
    prog *p = data;
    uv_close((uv_handle_t *)&p->check, NULL);
    if (p->signals) core_signals_close(p->signals);
    p->signals = NULL;
}

static void relay_closed(void *data)
{
    prog *p = data;
    db_pool_close(p->pool, pool_closed, p);
}

static void stop(prog *p)
{
    if (p->stopping) return;
    p->stopping = true;
    uv_timer_stop(&p->check);
    p->published = db_outbox_relay_published(p->relay);
    db_outbox_relay_close(p->relay, relay_closed, p);
}

static void on_signal(int signum, void *data)
{
    (void)signum;
    stop(data);
}

static void on_pending(const db_result *r, void *data)
{
    prog *p = data;
    p->checking = false;
    int64_t n = -1;
    if (db_result_ok(r) && db_result_int64(r, 0, 0, &n) && n == 0 &&
        db_outbox_relay_leader(p->relay))
        stop(p);
}

static void on_check(uv_timer_t *t)
{
    prog *p = t->data;
    if (p->checking || p->stopping || !db_outbox_relay_leader(p->relay)) return;
    p->checking = true;
    db_query(p->pool, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0, NULL, on_pending, p);
}

int main(void)
{
    core_log_level level = CORE_LOG_WARN;
    const char *lv = getenv("LOG_LEVEL");
    if (lv) core_log_parse_level(lv, &level);
    core_log_init("outbox-relay-test", level);

    core_config cc;
    core_config_init(&cc, "outbox-relay-test");
    db_config dbc = {0};
    dbc.url = core_config_secret(&cc, "PLATFORM_TEST_DATABASE_URL", NULL);
    dbc.search_path = core_config_string(&cc, "DB_SEARCH_PATH", NULL);
    dbc.pool_size = 2;
    dbc.application_name = "outbox-relay-test";
    db_relay_config rc = {0};
    rc.brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    rc.name = core_config_string(&cc, "RELAY_NAME", NULL);
    rc.checkpoint_topic = core_config_string(&cc, "RELAY_CHECKPOINT_TOPIC", NULL);
    rc.batch_size = (int)core_config_int(&cc, "RELAY_BATCH_SIZE", 20, 1, 10000);
    rc.sweep_interval_ms = 200;
    rc.leader_retry_ms = 200;
    bool exit_when_done = core_config_bool(&cc, "RELAY_EXIT_WHEN_DONE", false);
    core_config_finish(&cc);

    prog p = {.loop = uv_default_loop(), .exit_when_done = exit_when_done};
    char err[512];
    p.pool = db_pool_new(p.loop, &dbc, err, sizeof err);
    if (!p.pool) {
        fprintf(stderr, "outbox_relay: %s\n", err);
        return 78;
    }
    p.relay = db_outbox_relay_new(p.loop, p.pool, &rc, err, sizeof err);
    if (!p.relay) {
        fprintf(stderr, "outbox_relay: %s\n", err);
        return 78;
    }
    p.signals = core_signals_watch(p.loop, on_signal, &p);
    uv_timer_init(p.loop, &p.check);
    p.check.data = &p;
    if (exit_when_done) uv_timer_start(&p.check, on_check, 100, 100);
    uv_run(p.loop, UV_RUN_DEFAULT);
    printf("published %llu\n", (unsigned long long)p.published);
    fflush(stdout);
    uv_loop_close(p.loop);
    return 0;
}
