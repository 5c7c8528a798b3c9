/*
 * gateway: the one external port. Routes path prefixes to the upstream services (routes.h),
 * streams their answers through (proxy.h), reports each upstream's readiness on its own
 * /readyz (readiness.h), and drains on SIGTERM. GATEWAY_WORKERS > 1 runs that many such
 * processes on the port (workers.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "core.h"
#include "http.h"
#include "proxy.h"
#include "readiness.h"
#include "routes.h"
#include "static.h"
#include "workers.h"

typedef struct settings {
    const char *service;
    const char *host;
    int64_t port;
    int64_t max_body, connect_ms, read_ms, keepalive, workers, drain_ms, static_reload_ms;
    const char *static_dir, *trusted_proxies;
    gw_table table;
    gw_authz *authz;
} settings;

typedef struct app {
    settings *s;
    uv_loop_t *loop;
    http_server *http;
    gw_proxy_set *proxy;
    gw_readiness *readiness;
    gw_static *files;
    core_signals *signals;
    uv_prepare_t log_flush;
} app;

/* Access lines are batched (core_log_batch) and written once per loop iteration, before the
 * loop waits for I/O: one write(2) for many requests instead of one each. */
static void flush_logs(uv_prepare_t *h)
{
    (void)h;
    core_log_flush();
}

static void http_closed(void *data)
{
    app *a = data;
    gw_proxy_close(a->proxy);
    a->proxy = NULL;
    gw_static_close(a->files);
    a->files = NULL;
    core_log_info("drained");
}

static void on_signal(int signum, void *data)
{
    (void)signum;
    app *a = data;
    core_log_info("shutting down", CORE_F_INT("inflight", http_server_inflight(a->http)));
    gw_readiness_close(a->readiness);
    a->readiness = NULL;
    /* a little before libs/http's own deadline, which cannot answer what libh2o holds */
    int64_t ms = a->s->drain_ms > 200 ? a->s->drain_ms - 100 : a->s->drain_ms;
    gw_proxy_drain(a->proxy, (uint64_t)ms);
    http_server_close(a->http, http_closed, a);
}

static int run(void *data)
{
    settings *s = data;
    app a = {.s = s, .loop = uv_default_loop()};
    /* the handler timeout must not cut a slow upstream short of our own read timeout */
    a.http = http_server_new(
        a.loop, &(http_server_config){
                    .host = s->host,
                    .port = (uint16_t)s->port,
                    .service = s->service,
                    .max_body_bytes = (size_t)s->max_body,
                    .handler_timeout_ms = (uint64_t)(s->connect_ms + s->read_ms + 5000),
                    .reuse_port = s->workers > 1,
                    .drain_timeout_ms = (uint64_t)s->drain_ms,
                    .trusted_proxies = s->trusted_proxies,
                });
    if (!a.http) return 1; /* http_server_new logged why */
    a.proxy = gw_proxy_new(a.loop, a.http, &s->table,
                           &(gw_proxy_config){.read_timeout_ms = s->read_ms,
                                              .connect_timeout_ms = s->connect_ms,
                                              .keepalive = (size_t)s->keepalive,
                                              .authz = s->authz});
    if (!a.proxy) {
        fprintf(stderr,
                "gateway: configuration error: GATEWAY_ROUTES: a prefix cannot be routed\n");
        return CORE_CONFIG_EXIT_CODE;
    }
    /* the dashboard at "/", unless a route claims "/" itself */
    bool root_routed = false;
    for (size_t i = 0; i < s->table.nroutes; i++)
        root_routed = root_routed || s->table.routes[i].prefix_len == 1;
    if (!root_routed)
        a.files = gw_static_new(
            a.loop, a.http,
            &(gw_static_config){.dir = s->static_dir, .reload_ms = s->static_reload_ms});
    a.readiness = gw_readiness_new(a.http, &s->table, a.proxy, 1500, 1000);
    a.signals = core_signals_watch(a.loop, on_signal, &a);
    core_log_batch(true);
    uv_prepare_init(a.loop, &a.log_flush);
    uv_prepare_start(&a.log_flush, flush_logs);
    uv_unref((uv_handle_t *)&a.log_flush);

    core_log_info("listening", CORE_F_STR("host", s->host),
                  CORE_F_INT("port", http_server_port(a.http)),
                  CORE_F_INT("routes", s->table.nroutes), CORE_F_INT("upstreams", s->table.nups));
    uv_run(a.loop, UV_RUN_DEFAULT);
    core_signals_close(a.signals);
    uv_close((uv_handle_t *)&a.log_flush, NULL);
    uv_run(a.loop, UV_RUN_DEFAULT);
    core_log_batch(false); /* writes what is left */
    uv_loop_close(a.loop);
    return 0;
}

/* A table problem is reported like every other configuration error: one line naming the
 * variable, exit 78. */
static void table_error(core_config *cc, const char *name, const char *err)
{
    core_config_fail(cc, "%s: %.400s", name, err);
}

/* Marks the upstreams named in list (separated by spaces or commas) optional. */
static bool mark_optional(gw_table *t, const char *list, char *err, size_t errlen)
{
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, " ,");
        if (len == 0) break;
        bool found = false;
        for (size_t i = 0; i < t->nups && !found; i++)
            if (strlen(t->ups[i].name) == len && memcmp(t->ups[i].name, p, len) == 0)
                found = t->ups[i].optional = true;
        if (!found) {
            snprintf(err, errlen, "no upstream called \"%.*s\" in GATEWAY_UPSTREAMS", (int)len, p);
            return false;
        }
        p += len;
    }
    return true;
}

int main(void)
{
    core_config cc;
    core_config_init(&cc, "gateway");
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "info", levels);
    settings s = {0};
    s.service = core_config_string(&cc, "SERVICE_NAME", "gateway");
    s.host = core_config_string(&cc, "HTTP_HOST", "127.0.0.1");
    s.port = core_config_int(&cc, "HTTP_PORT", 8080, 0, 65535);
    const char *upstreams = core_config_string(&cc, "GATEWAY_UPSTREAMS", GW_DEFAULT_UPSTREAMS);
    const char *routes = core_config_string(&cc, "GATEWAY_ROUTES", GW_DEFAULT_ROUTES);
    s.max_body = core_config_int(&cc, "GATEWAY_MAX_BODY_BYTES", 1024 * 1024, 1, 1LL << 30);
    s.connect_ms = core_config_int(&cc, "GATEWAY_CONNECT_TIMEOUT_MS", 2000, 1, 600000);
    s.read_ms = core_config_int(&cc, "GATEWAY_READ_TIMEOUT_MS", 30000, 1, 3600000);
    s.keepalive = core_config_int(&cc, "GATEWAY_UPSTREAM_KEEPALIVE", 64, 0, 100000);
    s.workers = core_config_int(&cc, "GATEWAY_WORKERS", 1, 1, 64);
    s.drain_ms = core_config_int(&cc, "GATEWAY_DRAIN_TIMEOUT_MS", 10000, 1, 600000);
    s.static_dir = core_config_string(&cc, "GATEWAY_STATIC_DIR", "build/dashboard");
    s.static_reload_ms = core_config_int(&cc, "GATEWAY_STATIC_RELOAD_MS", 2000, 0, 3600000);
    /* A load balancer in front (e.g. an ALB on EKS): its X-Forwarded-For names the client for
     * the rate limit, the logs and the X-Forwarded-For we send. None by default: the gateway is
     * the edge and believes no client's claim. */
    s.trusted_proxies = core_config_string(&cc, "GATEWAY_TRUSTED_PROXIES", "");
    char err[256];
    if (cc.errors == 0 && gw_upstreams_parse(&s.table, upstreams, err, sizeof err) != 0)
        table_error(&cc, "GATEWAY_UPSTREAMS", err);
    else if (cc.errors == 0 && gw_routes_parse(&s.table, routes, err, sizeof err) != 0)
        table_error(&cc, "GATEWAY_ROUTES", err);
    /* Upstreams not deployed here (make up names the services it has not built): still routed
     * (502 until they come), listed on /readyz, but not what the gateway's readiness waits for. */
    const char *optional = core_config_string(&cc, "GATEWAY_OPTIONAL_UPSTREAMS", "");
    if (cc.errors == 0 && !mark_optional(&s.table, optional, err, sizeof err))
        table_error(&cc, "GATEWAY_OPTIONAL_UPSTREAMS", err);
    /* authorization: never silently open */
    static const char *const onoff[] = {"on", "off", NULL};
    bool auth_off = strcmp(core_config_enum(&cc, "GATEWAY_AUTH", "on", onoff), "off") == 0;
    const char *pubkey = core_config_secret(&cc, "AUTH_PUBLIC_KEY", "");
    const char *rate = core_config_string(&cc, "GATEWAY_PUBLIC_RATE", "10/s burst 20");
    gw_authz_config ac = {
        .off = auth_off,
        .public_key = pubkey,
        .issuer = core_config_string(&cc, "GATEWAY_AUTH_ISSUER", "subscriber-manager"),
        .max_clients = (size_t)core_config_int(&cc, "GATEWAY_PUBLIC_CLIENTS", 100000, 1, 10000000),
        .cache_slots = (size_t)core_config_int(&cc, "GATEWAY_AUTH_CACHE", 1024, 0, 65536),
    };
    if (cc.errors == 0 && !gw_rate_parse(rate, &ac.rate_per_s, &ac.burst))
        table_error(&cc, "GATEWAY_PUBLIC_RATE",
                    "expected \"<n>/s|/min|/h [burst <n>]\" or \"off\", e.g. \"10/s burst 20\"");
    if (cc.errors == 0 && !auth_off && !*pubkey)
        table_error(&cc, "AUTH_PUBLIC_KEY",
                    "not set: the Ed25519 public key, base64 (scripts/secrets.sh env gateway); "
                    "GATEWAY_AUTH=off runs without authorization, for tests only");
    if (cc.errors == 0 && !(s.authz = gw_authz_new(&ac, err, sizeof err)))
        table_error(&cc, "AUTH_PUBLIC_KEY", err);
    if (cc.errors == 0 && !http_trusted_proxies_valid(s.trusted_proxies))
        table_error(&cc, "GATEWAY_TRUSTED_PROXIES",
                    "expected a comma-separated list of at most 16 IP addresses or CIDR blocks");
    if (cc.errors == 0 && s.workers > 1 && s.port == 0)
        table_error(&cc, "GATEWAY_WORKERS", "several workers need a fixed HTTP_PORT");
    core_config_finish(&cc);

    core_log_level min = CORE_LOG_INFO;
    core_log_parse_level(level, &min);
    core_log_init(s.service, min);
    if (auth_off)
        core_log_warn("GATEWAY_AUTH=off: NO AUTHORIZATION - every route is open to anyone, no "
                      "token is checked; for tests of other things only, never deployed");

    int rc = s.workers > 1 ? gw_workers_run((int)s.workers, run, &s) : run(&s);
    gw_table_free(&s.table);
    gw_authz_free(s.authz);
    return rc;
}
