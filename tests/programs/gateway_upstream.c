/*
 * gateway_upstream: a real upstream for the gateway's integration tests and benchmark, on
 * libs/http. Every path is served by one catch-all handler that looks at the last segment:
 *
 *   .../slow?ms=N      answers after N ms (default 3000)
 *   .../sse?n=N        text/event-stream, one event every 100 ms (N events, default 10), then ends
 *   .../large?bytes=N  N bytes of a repeating pattern with Content-Length (default 1 MiB)
 *   .../chunked?bytes=N  the same, streamed in 16 KiB writes (chunked encoding)
 *   .../status?code=N  an empty answer with that status, plus an X-Upstream-Header
 *   .../ok             "ok\n" (text/plain), the benchmark's small endpoint
 *   anything else      echo: {"service", "method", "path", "q", "access_token" (when in the
 *                      query), "headers": {...} (a fixed list, identity headers included), "body"}
 *
 * GET /healthz, /readyz and /metrics are the library's. UPSTREAM_NAME names it in the echo.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "http.h"

typedef struct app {
    uv_loop_t *loop;
    http_server *http;
    core_signals *signals;
    const char *name;
} app;

static const char *last_segment(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static long query_long(http_req *req, const char *name, long fallback)
{
    const char *v = http_query(req, name);
    if (!v || !*v) return fallback;
    return strtol(v, NULL, 10);
}

/* ---------------------------------------------------------------- slow */

typedef struct delayed {
    uv_timer_t timer;
    http_req *req;
} delayed;

static void delayed_closed(uv_handle_t *h)
{
    free(h);
}

static void delayed_fire(uv_timer_t *t)
{
    delayed *d = t->data;
    http_respond_text(d->req, 200, "slow answer\n");
    http_req_unref(d->req);
    uv_close((uv_handle_t *)&d->timer, delayed_closed);
}

static void do_slow(app *a, http_req *req)
{
    delayed *d = core_xcalloc(1, sizeof *d);
    d->req = http_req_ref(req);
    uv_timer_init(a->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, delayed_fire, (uint64_t)query_long(req, "ms", 3000), 0);
}

/* ---------------------------------------------------------------- sse and chunked */

typedef struct streamer {
    uv_timer_t timer;
    http_stream *s;
    long left;
    long sent;
    long bytes;
    bool chunked_body;
} streamer;

static void streamer_closed(uv_handle_t *h)
{
    free(h);
}

static void streamer_finish(streamer *st)
{
    uv_timer_stop(&st->timer);
    http_stream_end(st->s);
    uv_close((uv_handle_t *)&st->timer, streamer_closed);
}

static void streamer_tick(uv_timer_t *t)
{
    streamer *st = t->data;
    if (http_stream_is_closed(st->s)) {
        streamer_finish(st);
        return;
    }
    if (st->chunked_body) {
        char block[16384];
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = (char)('a' + (st->sent + (long)i) % 26);
        while (st->bytes > 0 && http_stream_pending(st->s) < 262144) {
            size_t n = st->bytes < (long)sizeof block ? (size_t)st->bytes : sizeof block;
            http_stream_write(st->s, block, n);
            st->bytes -= (long)n;
        }
        if (st->bytes <= 0) streamer_finish(st);
        return;
    }
    char ev[128];
    int n =
        snprintf(ev, sizeof ev, "id: %ld\nevent: tick\ndata: {\"n\":%ld}\n\n", st->sent, st->sent);
    http_stream_write(st->s, ev, (size_t)n);
    st->sent++;
    if (--st->left <= 0) streamer_finish(st);
}

static void do_sse(app *a, http_req *req)
{
    streamer *st = core_xcalloc(1, sizeof *st);
    st->s = http_stream_start(req, 200, "text/event-stream");
    if (!st->s) {
        free(st);
        return;
    }
    st->left = query_long(req, "n", 10);
    uv_timer_init(a->loop, &st->timer);
    st->timer.data = st;
    http_stream_write(st->s, ": hello\n\n", 9);
    uv_timer_start(&st->timer, streamer_tick, 100, 100);
}

static void do_chunked(app *a, http_req *req)
{
    streamer *st = core_xcalloc(1, sizeof *st);
    st->s = http_stream_start(req, 200, "application/octet-stream");
    if (!st->s) {
        free(st);
        return;
    }
    st->chunked_body = true;
    st->bytes = query_long(req, "bytes", 1024 * 1024);
    uv_timer_init(a->loop, &st->timer);
    st->timer.data = st;
    uv_timer_start(&st->timer, streamer_tick, 0, 1);
}

/* ---------------------------------------------------------------- the rest */

static void do_large(http_req *req)
{
    long n = query_long(req, "bytes", 1024 * 1024);
    if (n < 0 || n > 256L * 1024 * 1024) n = 0;
    char *b = malloc((size_t)n + 1);
    for (long i = 0; i < n; i++)
        b[i] = (char)('a' + i % 26);
    http_respond(req, 200, "application/octet-stream", b, (size_t)n);
    free(b);
}

static void do_echo(app *a, http_req *req)
{
    json_t *o = json_object();
    json_object_set_new(o, "service", json_string(a->name));
    json_object_set_new(o, "method", json_string(http_method(req)));
    json_object_set_new(o, "path", json_string(http_path(req)));
    const char *q = http_query(req, "q");
    if (q) json_object_set_new(o, "q", json_string(q));
    const char *at = http_query(req, "access_token"); /* must never arrive through the gateway */
    if (at) json_object_set_new(o, "access_token", json_string(at));
    json_t *h = json_object();
    static const char *const names[] = {"host",
                                        "x-request-id",
                                        "traceparent",
                                        "x-forwarded-for",
                                        "content-type",
                                        "content-length",
                                        "connection",
                                        "keep-alive",
                                        "te",
                                        "upgrade",
                                        "proxy-authorization",
                                        "x-custom",
                                        "transfer-encoding",
                                        "x-drop-me",
                                        "authorization",
                                        "x-auth-user",
                                        "x-auth-role",
                                        "x-auth-email",
                                        "x-auth-token-id",
                                        NULL};
    for (size_t i = 0; names[i]; i++) {
        const char *v = http_header(req, names[i]);
        if (v) json_object_set_new(h, names[i], json_string(v));
    }
    json_object_set_new(o, "headers", h);
    size_t len = 0;
    const char *body = http_body(req, &len);
    json_object_set_new(o, "body", json_stringn(body ? body : "", len));
    json_object_set_new(o, "body_len", json_integer((json_int_t)len));
    http_respond_json(req, 200, o);
}

static void handle(http_req *req, void *data)
{
    app *a = data;
    const char *last = last_segment(http_path(req));
    if (strcmp(last, "slow") == 0)
        do_slow(a, req);
    else if (strcmp(last, "sse") == 0)
        do_sse(a, req);
    else if (strcmp(last, "chunked") == 0)
        do_chunked(a, req);
    else if (strcmp(last, "large") == 0)
        do_large(req);
    else if (strcmp(last, "ok") == 0)
        http_respond(req, 200, "text/plain", "ok\n", 3);
    else if (strcmp(last, "status") == 0) {
        http_set_header(req, "X-Upstream-Header", "yes");
        int code = (int)query_long(req, "code", 200);
        http_respond(req, code, "text/plain", "", 0);
    } else
        do_echo(a, req);
}

static void on_signal(int signum, void *data)
{
    (void)signum;
    app *a = data;
    http_server_close(a->http, NULL, NULL);
}

int main(void)
{
    core_config cc;
    core_config_init(&cc, "gateway-upstream");
    const char *name = core_config_string(&cc, "UPSTREAM_NAME", "upstream");
    int64_t port = core_config_int(&cc, "HTTP_PORT", 0, 0, 65535);
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    const char *level = core_config_enum(&cc, "LOG_LEVEL", "warn", levels);
    core_config_finish(&cc);
    core_log_level min = CORE_LOG_WARN;
    core_log_parse_level(level, &min);
    core_log_init(name, min);

    app a = {.loop = uv_default_loop(), .name = name};
    a.http = http_server_new(a.loop, &(http_server_config){.port = (uint16_t)port,
                                                           .service = name,
                                                           .max_body_bytes = 64 * 1024 * 1024});
    if (!a.http) return 1;
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};
    for (size_t i = 0; methods[i]; i++)
        http_route(a.http, methods[i], "/*", handle, &a);
    a.signals = core_signals_watch(a.loop, on_signal, &a);
    printf("listening %u\n", (unsigned)http_server_port(a.http));
    fflush(stdout);
    uv_run(a.loop, UV_RUN_DEFAULT);
    core_signals_close(a.signals);
    uv_run(a.loop, UV_RUN_DEFAULT);
    uv_loop_close(a.loop);
    return 0;
}
