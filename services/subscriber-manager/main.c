/*
 * subscriber-manager: owns people (subscribers, lists, segments, consent) and the admin users
 * who run the system. Wires configuration (keys included), the HTTP API, the database, the
 * outbox relay and the SIGTERM drain on one libuv loop.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

/* jemalloc's options (release builds link it: Makefile). By default it keeps freed pages for
 * 10 s and returns them only while the process allocates, so what startup freed stayed with an
 * idle service: 24-31 MB of RSS instead of 16 in a third of the runs of
 * scripts/bench-idle-rss.sh. With a 1 s decay, 16 in every run, and the import is as fast.
 * glibc's malloc (the sanitizer builds) ignores the symbol. */
extern const char *malloc_conf;
const char *malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";

static void kafka_ready(http_check *check, void *data)
{
    sm_app *app = data;
    bool ok = app->relay != NULL;
    http_check_done(check, ok, ok ? "outbox relay running" : "outbox relay not started");
}

static void db_ready(http_check *check, void *data)
{
    sm_app *app = data;
    bool ok = db_pool_ready(app->db);
    http_check_done(check, ok, ok ? "connected" : "no connection");
}

static void stop(sm_app *app);

static void migrated(const char *err, int applied, void *data)
{
    sm_app *app = data;
    if (err) {
        core_log_error("migrations failed", CORE_F_STR("error", err));
        app->exit_code = 1;
        stop(app);
        return;
    }
    core_log_info("migrations applied", CORE_F_INT("applied", applied));
    if (app->stopping) return;
    char msg[512];
    app->relay = db_outbox_relay_new(app->loop, app->db,
                                     &(db_relay_config){.brokers = app->brokers,
                                                        .name = app->name,
                                                        .source = app->source,
                                                        .batch_size = app->outbox_batch},
                                     msg, sizeof msg);
    if (!app->relay) {
        core_log_error("cannot start the outbox relay", CORE_F_STR("error", msg));
        app->exit_code = 1;
        stop(app);
        return;
    }
    sm_auth_bootstrap(app);
}

static void db_closed(void *data)
{
    (void)data;
    core_log_info("drained");
}

static void relay_closed(void *data)
{
    sm_app *app = data;
    db_pool_close(app->db, db_closed, app);
}

static void http_closed(void *data)
{
    sm_app *app = data;
    if (app->relay)
        db_outbox_relay_close(app->relay, relay_closed, app);
    else
        relay_closed(app);
}

static void stop(sm_app *app)
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

/* A 32-byte key from a base64 variable; a bad one is a configuration error naming it. */
static void key_var(core_config *cc, const char *name, uint8_t out[32])
{
    const char *v = core_config_secret(cc, name, NULL);
    if (v && !auth_key_decode(v, out, 32))
        core_config_fail(cc, "%s: must be 32 bytes in base64 (e.g. openssl rand -base64 32)", name);
}

int main(void)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "%s: libsodium cannot start\n", SM_SERVICE);
        return 1;
    }
    core_config cc;
    core_config_init(&cc, SM_SERVICE);
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const pwcost[] = {"interactive", "moderate", "sensitive", NULL};
    const char *name = core_config_string(&cc, "SERVICE_NAME", SM_SERVICE);
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    const char *host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 8086, 0, 65535);
    const char *brokers = core_config_string(&cc, "KAFKA_BROKERS", NULL);
    const char *migrations =
        core_config_string(&cc, "MIGRATIONS_DIR", "services/subscriber-manager/migrations");
    int64_t max_body = core_config_int(&cc, "HTTP_MAX_BODY_BYTES", 1 << 20, 1024, 64 << 20);
    int64_t import_max_body =
        core_config_int(&cc, "IMPORT_MAX_BYTES", 256LL << 20, 1024, 1LL << 32);
    sm_app app = {.loop = uv_default_loop(), .brokers = brokers, .name = name};
    sm_topic_events = core_config_string(&cc, "SUBSCRIBER_EVENTS_TOPIC", TOPIC_SUBSCRIBER_EVENTS);
    sm_topic_imports = core_config_string(&cc, "IMPORT_PROGRESS_TOPIC", TOPIC_SUBSCRIBER_IMPORTS);
    const char *signing = core_config_secret(&cc, "AUTH_SIGNING_KEY", NULL);
    if (signing && !auth_signer_from_base64(&app.signer, signing))
        core_config_fail(&cc, "AUTH_SIGNING_KEY: must be a base64 Ed25519 seed (32 bytes)");
    key_var(&cc, "SUBSCRIBER_DATA_KEY", app.keys.data);
    key_var(&cc, "SUBSCRIBER_INDEX_KEY", app.keys.index);
    key_var(&cc, "TOKEN_SIGNING_KEY", app.keys.token);
    sm_keys_ready(&app.keys);
    app.access_ttl_s = core_config_duration_ms(&cc, "AUTH_ACCESS_TTL", "15m") / 1000;
    app.refresh_ttl_s = core_config_duration_ms(&cc, "AUTH_REFRESH_TTL", "720h") / 1000;
    app.link_ttl_s = core_config_duration_ms(&cc, "CONFIRM_LINK_TTL", "168h") / 1000;
    app.unsub_ttl_s = core_config_duration_ms(&cc, "UNSUBSCRIBE_LINK_TTL", "8760h") / 1000;
    const char *cost = core_config_enum(&cc, "AUTH_PWHASH_COST", "interactive", pwcost);
    int64_t free_fail = core_config_int(&cc, "LOGIN_FREE_FAILURES", 5, 0, 1000);
    int64_t addr_free_fail = core_config_int(&cc, "LOGIN_ADDR_FREE_FAILURES", 20, 0, 100000);
    int64_t lock_base = core_config_duration_ms(&cc, "LOGIN_LOCK_BASE", "1s");
    int64_t lock_max = core_config_duration_ms(&cc, "LOGIN_LOCK_MAX", "15m");
    int64_t public_rate = core_config_int(&cc, "PUBLIC_RATE_PER_MIN", 60, 1, 1000000);
    int64_t public_burst = core_config_int(&cc, "PUBLIC_RATE_BURST", 20, 1, 1000000);
    app.admin_email = core_config_string(&cc, "ADMIN_EMAIL", "");
    app.admin_password = core_config_secret(&cc, "ADMIN_PASSWORD", "");
    app.public_url = core_config_string(&cc, "PUBLIC_URL", "http://127.0.0.1:8080");
    app.import_max_rows = core_config_int(&cc, "IMPORT_MAX_ROWS", 1000000, 1, 100000000);
    app.outbox_batch = (int)core_config_int(&cc, "OUTBOX_BATCH", 1000, 1, 10000);
    app.import_batch = (int)core_config_int(&cc, "IMPORT_BATCH_ROWS", 40000, 1, 100000);
    app.import_writers = (int)core_config_int(&cc, "IMPORT_WRITERS", 2, 1, SM_IMPORT_WRITERS_MAX);
    /* The gateway in front: its X-Forwarded-For names the client for the per-address login
     * throttle, the public rate limit and consent records (else every client is the gateway). */
    const char *trusted = core_config_string(&cc, "HTTP_TRUSTED_PROXIES", "");
    if (!http_trusted_proxies_valid(trusted))
        core_config_fail(&cc, "HTTP_TRUSTED_PROXIES: must be a comma-separated list of at most 16 "
                              "IP addresses or CIDR blocks");
    db_config dbc;
    db_config_from_env(&cc, &dbc);
    core_config_finish(&cc);
    if (!*app.admin_email) app.admin_email = NULL;
    if (!*app.admin_password) app.admin_password = NULL;
    if (!strcmp(cost, "moderate")) {
        app.pwhash.opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
        app.pwhash.memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
    } else if (!strcmp(cost, "sensitive")) {
        app.pwhash.opslimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
        app.pwhash.memlimit = crypto_pwhash_MEMLIMIT_SENSITIVE;
    }
    app.throttle_account =
        auth_throttle_new((int)free_fail, lock_base, lock_max, lock_max * 4, 100000);
    app.throttle_addr =
        auth_throttle_new((int)addr_free_fail, lock_base, lock_max, lock_max * 4, 100000);
    app.public_buckets = auth_buckets_new((double)public_rate / 60.0, (double)public_burst, 100000);
    if (!app.throttle_account || !app.throttle_addr || !app.public_buckets) {
        fprintf(stderr, "%s: LOGIN_LOCK_BASE must be positive and at most LOGIN_LOCK_MAX\n", name);
        return CORE_CONFIG_EXIT_CODE;
    }

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init(name, min);
    dbc.application_name = name;
    char source[256];
    snprintf(source, sizeof source, "/services/%s", name);
    app.source = source;
    core_metrics *m = core_metrics_default();
    app.m_logins = core_metric_counter(m, "logins_total", "Login attempts by outcome", "result");
    app.m_events =
        core_metric_counter(m, "subscriber_events_total", "Subscriber events written", "kind");
    app.m_import_rows =
        core_metric_counter(m, "import_rows_total", "CSV import rows by outcome", "result");

    char err[512];
    app.db = db_pool_new(app.loop, &dbc, err, sizeof err);
    if (!app.db) {
        fprintf(stderr, "%s: database: %s\n", name, err);
        return 1;
    }
    app.http = http_server_new(
        app.loop,
        &(http_server_config){.host = host,
                              .port = (uint16_t)port,
                              .service = name,
                              .max_body_bytes =
                                  (size_t)(import_max_body > max_body ? import_max_body : max_body),
                              .trusted_proxies = trusted});
    if (!app.http) return 1; /* http_server_new logged why */
    http_readiness_check(app.http, "kafka", kafka_ready, &app);
    http_readiness_check(app.http, "database", db_ready, &app);
    sm_auth_register(&app);
    sm_subscribers_register(&app);
    sm_lists_register(&app);
    sm_segments_register(&app);
    sm_consent_register(&app);
    sm_import_register(&app);
    sm_export_register(&app);
    db_migrate(app.db, migrations, migrated, &app);
    app.signals = core_signals_watch(app.loop, on_signal, &app);

    core_log_info("listening", CORE_F_STR("host", host),
                  CORE_F_INT("port", http_server_port(app.http)));
    uv_run(app.loop, UV_RUN_DEFAULT);
    core_signals_close(app.signals);
    uv_run(app.loop, UV_RUN_DEFAULT);
    uv_loop_close(app.loop);
    auth_throttle_free(app.throttle_account);
    auth_throttle_free(app.throttle_addr);
    auth_buckets_free(app.public_buckets);
    auth_signer_wipe(&app.signer);
    sodium_memzero(&app.keys, sizeof app.keys);
    return app.exit_code;
}
