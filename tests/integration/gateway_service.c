/*
 * The gateway seen from outside: the real binary (build/<variant>/bin/gateway) in front of real
 * upstreams (tests/programs/gateway_upstream, on libs/http), spoken to over raw sockets.
 * Prefix routing (two prefixes to one service, segment boundaries, longest prefix), request ids
 * and traceparent (added when absent, kept when present), X-Forwarded-For, hop-by-hop headers,
 * bodies both ways (echo, 1 MiB with Content-Length, 3 MB chunked), 413 for an oversize body,
 * SSE passed through live, 404 for unrouted paths, 502 fast when an upstream is down and the
 * automatic recovery when it returns, 504 for a slow upstream while a stream with short gaps
 * lives on, /readyz following the upstreams, /metrics per route, malformed requests, bad
 * configuration (exit 78 naming the variable), GATEWAY_WORKERS, SIGTERM (exit 0, streams
 * and slow upstreams cut at the drain deadline), and the dashboard's static files at "/" (SPA
 * fallback, cache headers, ETag/304, HEAD, no way out of the directory, reload of a new build,
 * a helpful 404 when nothing is built).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "core.h"
#include "test_support.h"

static char gw_path[4096], up_path[4096];
static auth_signer key, other_key;
static char pubkey_env[128];

typedef struct proc {
    ts_child child;
    int port;
    bool running;
} proc;

static proc up_cm, up_rt, gw, gw_slow, gw_auth;

/* ---------------------------------------------------------------- raw HTTP client */

static int gwt_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool gwt_send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

typedef struct resp {
    int status;
    core_buf raw;  /* everything received */
    core_buf head; /* the status line and headers */
    core_buf body; /* de-chunked */
} resp;

static void resp_free(resp *r)
{
    core_buf_free(&r->raw);
    core_buf_free(&r->head);
    core_buf_free(&r->body);
}

/* The value of a response header (case-insensitive name), copied into out; false if absent. */
static bool resp_header(const resp *r, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    const char *p = r->head.data;
    while (p && (p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(out, size, "%.*s", (int)(e - v), v);
            return true;
        }
    }
    return false;
}

static void dechunk(const char *p, size_t len, core_buf *out)
{
    const char *end = p + len;
    while (p < end) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        const char *data = strstr(e, "\r\n");
        if (!data || n == 0) return;
        data += 2;
        if ((size_t)(end - data) < n) n = (unsigned long)(end - data);
        core_buf_append(out, data, n);
        p = data + n + 2;
    }
}

/* Sends a raw request (it should ask for Connection: close) and reads until EOF. */
static int raw_request(int port, const char *req, size_t req_len, resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = gwt_connect(port);
    if (fd < 0) return -1;
    assert_true(gwt_send_all(fd, req, req_len));
    char buf[65536];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 15000) <= 0) break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        core_buf_append(&r->raw, buf, (size_t)n);
    }
    close(fd);
    if (!r->raw.data) return -1;
    r->status = (int)strtol(r->raw.data + 9, NULL, 10);
    const char *sep = strstr(r->raw.data, "\r\n\r\n");
    if (!sep) return r->status;
    core_buf_append(&r->head, r->raw.data, (size_t)(sep - r->raw.data) + 2);
    const char *body = sep + 4;
    size_t blen = r->raw.len - (size_t)(body - r->raw.data);
    char te[64];
    if (resp_header(r, "transfer-encoding", te, sizeof te) && strcasecmp(te, "chunked") == 0)
        dechunk(body, blen, &r->body);
    else
        core_buf_append(&r->body, body, blen);
    if (!r->body.data) core_buf_append(&r->body, "", 0);
    return r->status;
}

static int request(int port, const char *method, const char *target, const char *extra_headers,
                   const char *body, size_t body_len, resp *r)
{
    core_buf q = {0};
    core_buf_printf(&q, "%s %s HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n%s", method,
                    target, extra_headers ? extra_headers : "");
    if (body) core_buf_printf(&q, "Content-Length: %zu\r\n", body_len);
    core_buf_puts(&q, "\r\n");
    if (body) core_buf_append(&q, body, body_len);
    int st = raw_request(port, q.data, q.len, r);
    core_buf_free(&q);
    return st;
}

static json_t *resp_json(const resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body.data, r->body.len, 0, &e);
    if (!j) fail_msg("not JSON (%s): %.*s", e.text, (int)r->body.len, r->body.data);
    return j;
}

static void expect_problem(const resp *r, int status)
{
    char ct[128];
    assert_int_equal(r->status, status);
    assert_true(resp_header(r, "content-type", ct, sizeof ct));
    assert_string_equal(ct, "application/problem+json");
    json_t *j = resp_json(r);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    assert_non_null(json_object_get(j, "request_id"));
    json_decref(j);
}

/* ---------------------------------------------------------------- processes */

static void start_upstream(proc *p, const char *name)
{
    char port_env[64], name_env[64];
    snprintf(port_env, sizeof port_env, "HTTP_PORT=%d", p->port);
    snprintf(name_env, sizeof name_env, "UPSTREAM_NAME=%s", name);
    const char *env[] = {port_env, name_env, "LOG_LEVEL=warn", NULL};
    assert_true(ts_spawn(&p->child, up_path, NULL, env));
    p->running = true;
    for (int i = 0; i < 200; i++) {
        int fd = gwt_connect(p->port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    fail_msg("upstream %s did not listen on %d", name, p->port);
}

/* routes NULL: the proxying tests' table, with GATEWAY_AUTH=off */
static void start_gateway_routes(proc *p, const char *routes, const char *const *extra)
{
    char port_env[64], ups[256];
    snprintf(port_env, sizeof port_env, "HTTP_PORT=%d", p->port);
    snprintf(ups, sizeof ups, "GATEWAY_UPSTREAMS=cm=127.0.0.1:%d rt=127.0.0.1:%d", up_cm.port,
             up_rt.port);
    const char *env[16] = {port_env, ups,
                           routes ? routes
                                  : "GATEWAY_ROUTES=/api/content=cm /api/items=cm;role=editor "
                                    "/api/realtime=rt /api/content/live=rt",
                           "LOG_LEVEL=info", routes ? pubkey_env : "GATEWAY_AUTH=off"};
    size_t n = 5;
    bool static_dir = false;
    for (size_t i = 0; extra && extra[i] && n < 14; i++) {
        static_dir = static_dir || strncmp(extra[i], "GATEWAY_STATIC_DIR=", 19) == 0;
        env[n++] = extra[i];
    }
    /* no dashboard unless a test gives one: "/" then answers 404 problem+json */
    if (!static_dir) env[n++] = "GATEWAY_STATIC_DIR=/nonexistent/ce-dashboard";
    env[n] = NULL;
    assert_true(ts_spawn(&p->child, gw_path, NULL, env));
    p->running = true;
    for (int i = 0; i < 250; i++) {
        int fd = gwt_connect(p->port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    char err[4096] = "";
    ts_drain_fd(p->child.err_fd, err, sizeof err);
    fail_msg("gateway did not listen on %d: %s", p->port, err);
}

static void start_gateway(proc *p, const char *const *extra)
{
    start_gateway_routes(p, NULL, extra);
}

/* SIGTERM; returns the exit status. */
static int stop_proc(proc *p)
{
    if (!p->running) return 0;
    kill(p->child.pid, SIGTERM);
    int st = ts_wait_or_kill(&p->child, 20000);
    /* keep the pipes from filling: drain, then close */
    char sink[65536];
    ts_drain_fd(p->child.out_fd, sink, sizeof sink);
    ts_drain_fd(p->child.err_fd, sink, sizeof sink);
    ts_close_pipes(&p->child);
    p->running = false;
    return st;
}

/* The gateway logs a line per request: read its pipes now and then so it never blocks. */
static void drain_logs(proc *p, char *out, size_t size)
{
    char sink[65536];
    if (!out) {
        out = sink;
        size = sizeof sink;
    }
    out[0] = '\0';
    ts_drain_fd(p->child.out_fd, out, size);
    char err[8192] = "";
    ts_drain_fd(p->child.err_fd, err, sizeof err);
}

/* ---------------------------------------------------------------- tests */

static void test_prefix_routing(void **state)
{
    (void)state;
    resp r;
    struct {
        const char *path;
        const char *service; /* NULL: 404 */
    } cases[] = {
        {"/api/content", "cm"},
        {"/api/content/items/42?q=x%20y", "cm"},
        {"/api/items", "cm"},
        {"/api/items/7", "cm"},
        {"/api/realtime/anything", "rt"},
        {"/api/content/live/1", "rt"},
        {"/api/content/lively", "cm"},
        {"/api/contentx", NULL},
        {"/api/itemsx/1", NULL},
        {"/api", NULL},
        {"/nothing", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = request(gw.port, "GET", cases[i].path, NULL, NULL, 0, &r);
        if (!cases[i].service) {
            if (st != 404) fail_msg("%s: %d", cases[i].path, st);
            expect_problem(&r, 404);
            resp_free(&r);
            continue;
        }
        if (st != 200) fail_msg("%s: %d %s", cases[i].path, st, r.raw.data);
        json_t *j = resp_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "service")), cases[i].service);
        /* the path goes upstream unchanged */
        char want[256];
        snprintf(want, sizeof want, "%.*s", (int)strcspn(cases[i].path, "?"), cases[i].path);
        assert_string_equal(json_string_value(json_object_get(j, "path")), want);
        json_decref(j);
        resp_free(&r);
    }
    /* the query string passes too */
    assert_int_equal(request(gw.port, "GET", "/api/content/x?q=a%20b", NULL, NULL, 0, &r), 200);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "q")), "a b");
    json_decref(j);
    resp_free(&r);
    /* every method */
    const char *methods[] = {"POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(request(gw.port, methods[i], "/api/items/1", NULL, "", 0, &r), 200);
        j = resp_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "method")), methods[i]);
        json_decref(j);
        resp_free(&r);
    }
    /* HEAD: headers only */
    assert_int_equal(request(gw.port, "HEAD", "/api/content/ok", NULL, NULL, 0, &r), 200);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    drain_logs(&gw, NULL, 0);
}

static void test_ids_forwarding_and_hop_by_hop(void **state)
{
    (void)state;
    resp r;
    /* absent: the gateway's own */
    assert_int_equal(request(gw.port, "GET", "/api/content/echo", NULL, NULL, 0, &r), 200);
    char rid[200], tp[200];
    assert_true(resp_header(&r, "x-request-id", rid, sizeof rid));
    json_t *j = resp_json(&r);
    json_t *h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "x-request-id")), rid);
    snprintf(tp, sizeof tp, "%s", json_string_value(json_object_get(h, "traceparent")));
    char trace[33], span[17];
    uint8_t flags;
    assert_true(core_traceparent_parse(tp, trace, span, &flags));
    assert_string_equal(json_string_value(json_object_get(h, "x-forwarded-for")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(h, "host")), "gw.test");
    json_decref(j);
    resp_free(&r);

    /* present: kept; the client's X-Forwarded-For replaced by what the gateway saw (it is the
     * edge: nothing the client claims is passed on); hop-by-hop headers dropped */
    const char *mine = "X-Request-Id: client-id-42\r\n"
                       "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                       "X-Forwarded-For: 10.9.8.7\r\n"
                       "X-Custom: kept\r\n"
                       "Keep-Alive: timeout=5\r\n"
                       "TE: trailers\r\n"
                       "Proxy-Authorization: Basic c2VjcmV0\r\n"
                       "X-Drop-Me: listed in Connection\r\n"
                       "Connection: close, X-Drop-Me\r\n";
    assert_int_equal(request(gw.port, "GET", "/api/content/echo", mine, NULL, 0, &r), 200);
    assert_true(resp_header(&r, "x-request-id", rid, sizeof rid));
    assert_string_equal(rid, "client-id-42");
    j = resp_json(&r);
    h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "x-request-id")), "client-id-42");
    assert_string_equal(json_string_value(json_object_get(h, "traceparent")),
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_string_equal(json_string_value(json_object_get(h, "x-forwarded-for")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(h, "x-custom")), "kept");
    const char *gone[] = {"keep-alive", "te", "proxy-authorization", "x-drop-me", "upgrade"};
    for (size_t i = 0; i < 5; i++)
        if (json_object_get(h, gone[i])) fail_msg("%s was forwarded", gone[i]);
    json_decref(j);
    resp_free(&r);

    /* an id libs/http does not adopt (spaces) is replaced everywhere by the gateway's */
    assert_int_equal(request(gw.port, "GET", "/api/content/echo",
                             "X-Request-Id: has spaces in it\r\ntraceparent: 00-nope\r\n", NULL, 0,
                             &r),
                     200);
    assert_true(resp_header(&r, "x-request-id", rid, sizeof rid));
    core_uuid u;
    assert_true(core_uuid_parse(rid, &u));
    j = resp_json(&r);
    h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "x-request-id")), rid);
    assert_true(core_traceparent_parse(json_string_value(json_object_get(h, "traceparent")), trace,
                                       span, &flags));
    json_decref(j);
    resp_free(&r);

    /* the upstream's own response headers come back; its status too */
    assert_int_equal(request(gw.port, "GET", "/api/content/status?code=418", NULL, NULL, 0, &r),
                     418);
    char v[64];
    assert_true(resp_header(&r, "x-upstream-header", v, sizeof v));
    assert_string_equal(v, "yes");
    resp_free(&r);
    drain_logs(&gw, NULL, 0);
}

static void test_bodies_both_ways(void **state)
{
    (void)state;
    resp r;
    const char *json_body = "{\"title\":\"h\\u00e9llo\",\"n\":[1,2,3]}";
    assert_int_equal(request(gw.port, "POST", "/api/items", "Content-Type: application/json\r\n",
                             json_body, strlen(json_body), &r),
                     200);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "body")), json_body);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "headers"), "content-type")),
        "application/json");
    json_decref(j);
    resp_free(&r);

    /* a chunked request body reaches the upstream with a Content-Length */
    const char chunked_req[] = "PUT /api/items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_int_equal(raw_request(gw.port, chunked_req, sizeof chunked_req - 1, &r), 200);
    j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "body")), "hello world");
    json_t *hs = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(hs, "content-length")), "11");
    assert_null(json_object_get(hs, "transfer-encoding"));
    json_decref(j);
    resp_free(&r);

    /* 1 MiB with Content-Length, 3 MB chunked by the upstream */
    assert_int_equal(request(gw.port, "GET", "/api/content/large?bytes=1048576", NULL, NULL, 0, &r),
                     200);
    assert_int_equal(r.body.len, 1048576);
    for (size_t i = 0; i < r.body.len; i += 4099)
        assert_int_equal(r.body.data[i], 'a' + (int)(i % 26));
    char cl[32];
    assert_true(resp_header(&r, "content-length", cl, sizeof cl));
    assert_string_equal(cl, "1048576");
    resp_free(&r);
    assert_int_equal(
        request(gw.port, "GET", "/api/content/chunked?bytes=3000000", NULL, NULL, 0, &r), 200);
    assert_int_equal(r.body.len, 3000000);
    resp_free(&r);

    /* a large request body */
    size_t big = 900 * 1024;
    char *b = malloc(big);
    memset(b, 'z', big);
    assert_int_equal(request(gw.port, "POST", "/api/items/big", NULL, b, big, &r), 200);
    j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), (json_int_t)big);
    json_decref(j);
    resp_free(&r);
    free(b);
    drain_logs(&gw, NULL, 0);
}

static void test_oversize_body_is_413(void **state)
{
    (void)state;
    resp r;
    size_t n = 4097; /* gw_slow: GATEWAY_MAX_BODY_BYTES=4096 */
    char *b = malloc(n);
    memset(b, 'x', n);
    assert_int_equal(request(gw_slow.port, "POST", "/api/items", NULL, b, n, &r), 413);
    expect_problem(&r, 413);
    resp_free(&r);
    assert_int_equal(request(gw_slow.port, "POST", "/api/items", NULL, b, 4000, &r), 200);
    resp_free(&r);
    /* the default is 1 MiB */
    size_t big = 1024 * 1024 + 1;
    char *bb = malloc(big);
    memset(bb, 'y', big);
    assert_int_equal(request(gw.port, "POST", "/api/items", NULL, bb, big, &r), 413);
    expect_problem(&r, 413);
    resp_free(&r);
    free(bb);
    free(b);
    drain_logs(&gw, NULL, 0);
    drain_logs(&gw_slow, NULL, 0);
}

/* Reads the stream, noting when the first event and the end arrived. */
static void sse_through(int port, int n, int64_t *first_ms, int64_t *end_ms, int *events)
{
    int fd = gwt_connect(port);
    assert_true(fd >= 0);
    char req[256];
    int len = snprintf(req, sizeof req,
                       "GET /api/realtime/sse?n=%d HTTP/1.1\r\nHost: t\r\nAccept: "
                       "text/event-stream\r\n\r\n",
                       n);
    int64_t t0 = core_mono_ns();
    assert_true(gwt_send_all(fd, req, (size_t)len));
    core_buf got = {0};
    *first_ms = -1;
    *events = 0;
    char buf[8192];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0) break;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        core_buf_append(&got, buf, (size_t)k);
        if (*first_ms < 0 && strstr(got.data, "data: "))
            *first_ms = (core_mono_ns() - t0) / 1000000;
        if (strstr(got.data, "\r\n0\r\n\r\n")) break; /* the last chunk: the stream ended */
    }
    *end_ms = (core_mono_ns() - t0) / 1000000;
    for (const char *p = got.data; p && (p = strstr(p, "event: tick")); p++)
        (*events)++;
    assert_non_null(strstr(got.data, "text/event-stream"));
    assert_true(strstr(got.data, "Transfer-Encoding: chunked") ||
                strstr(got.data, "transfer-encoding: chunked"));
    core_buf_free(&got);
    close(fd);
}

static void test_sse_passes_live(void **state)
{
    (void)state;
    int64_t first, end;
    int events;
    sse_through(gw.port, 10, &first, &end, &events);
    assert_int_equal(events, 10);
    /* an event every 100 ms: the first arrives long before the stream ends (~1 s) */
    if (!(first >= 0 && first < 400 && end >= 900 && end - first >= 600))
        fail_msg("first event at %lld ms, end at %lld ms", (long long)first, (long long)end);
    /* through the gateway whose read timeout is 300 ms: gaps of 100 ms keep it alive */
    sse_through(gw_slow.port, 8, &first, &end, &events);
    assert_int_equal(events, 8);
    assert_true(end >= 700);
    drain_logs(&gw, NULL, 0);
    drain_logs(&gw_slow, NULL, 0);
}

static void test_slow_upstream_is_504(void **state)
{
    (void)state;
    resp r;
    int64_t t0 = core_mono_ns();
    assert_int_equal(request(gw_slow.port, "GET", "/api/content/slow?ms=3000", NULL, NULL, 0, &r),
                     504);
    int64_t ms = (core_mono_ns() - t0) / 1000000;
    expect_problem(&r, 504);
    assert_true(ms >= 250 && ms < 2000);
    resp_free(&r);
    /* a fast answer through the same gateway is fine, and the default timeout waits */
    assert_int_equal(request(gw_slow.port, "GET", "/api/content/slow?ms=50", NULL, NULL, 0, &r),
                     200);
    resp_free(&r);
    assert_int_equal(request(gw.port, "GET", "/api/content/slow?ms=700", NULL, NULL, 0, &r), 200);
    assert_string_equal(r.body.data, "slow answer\n");
    resp_free(&r);
    drain_logs(&gw, NULL, 0);
    drain_logs(&gw_slow, NULL, 0);
}

static int readyz(int port, resp *r)
{
    return request(port, "GET", "/readyz", NULL, NULL, 0, r);
}

static void test_down_upstream_502_readyz_and_recovery(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(readyz(gw.port, &r), 200);
    json_t *j = resp_json(&r);
    assert_true(
        json_is_true(json_object_get(json_object_get(json_object_get(j, "checks"), "cm"), "ok")));
    assert_true(
        json_is_true(json_object_get(json_object_get(json_object_get(j, "checks"), "rt"), "ok")));
    json_decref(j);
    resp_free(&r);

    /* a few keep-alive connections to rt sit in the pool when it goes away */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(request(gw.port, "GET", "/api/realtime/x", NULL, NULL, 0, &r), 200);
        resp_free(&r);
    }
    assert_int_equal(stop_proc(&up_rt), 0);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = core_mono_ns();
        assert_int_equal(request(gw.port, "GET", "/api/realtime/x", NULL, NULL, 0, &r), 502);
        assert_true((core_mono_ns() - t0) / 1000000 < 1000);
        expect_problem(&r, 502);
        resp_free(&r);
    }
    /* other routes are unaffected */
    assert_int_equal(request(gw.port, "GET", "/api/content/x", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    /* /readyz turns 503 (after at most the 1 s cache), naming the failing upstream */
    int st = 0;
    for (int i = 0; i < 40 && st != 503; i++) {
        st = readyz(gw.port, &r);
        if (st != 503) {
            resp_free(&r);
            usleep(100000);
        }
    }
    assert_int_equal(st, 503);
    j = resp_json(&r);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "failing"), 0)), "rt");
    assert_true(
        json_is_true(json_object_get(json_object_get(json_object_get(j, "checks"), "cm"), "ok")));
    json_decref(j);
    resp_free(&r);

    /* a gateway told that rt is optional (not deployed) stays ready, and says why */
    proc opt = {.port = ts_free_port()};
    const char *extra[] = {"GATEWAY_OPTIONAL_UPSTREAMS=rt", NULL};
    start_gateway(&opt, extra);
    assert_int_equal(readyz(opt.port, &r), 200);
    j = resp_json(&r);
    json_t *rt_check = json_object_get(json_object_get(j, "checks"), "rt");
    assert_true(json_is_true(json_object_get(rt_check, "ok")));
    assert_non_null(
        strstr(json_string_value(json_object_get(rt_check, "detail")), "optional, not ready"));
    json_decref(j);
    resp_free(&r);
    assert_int_equal(request(opt.port, "GET", "/api/realtime/x", NULL, NULL, 0, &r), 502);
    resp_free(&r);
    assert_int_equal(stop_proc(&opt), 0);

    /* it comes back: the very next request succeeds, /readyz follows */
    start_upstream(&up_rt, "rt");
    assert_int_equal(request(gw.port, "GET", "/api/realtime/x", NULL, NULL, 0, &r), 200);
    resp_free(&r);
    st = 0;
    for (int i = 0; i < 40 && st != 200; i++) {
        st = readyz(gw.port, &r);
        resp_free(&r);
        if (st != 200) usleep(100000);
    }
    assert_int_equal(st, 200);
    drain_logs(&gw, NULL, 0);
}

static void test_readyz_flood_is_cached(void **state)
{
    (void)state;
    /* 50 /readyz in a row hit each upstream's /readyz at most a few times: the upstream's own
     * metrics count them */
    resp r;
    assert_int_equal(request(up_cm.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    double before = 0;
    const char *needle = "http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} ";
    const char *p = strstr(r.body.data, needle);
    if (p) before = strtod(p + strlen(needle), NULL);
    resp_free(&r);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(readyz(gw.port, &r), 200);
        resp_free(&r);
    }
    assert_int_equal(request(up_cm.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    p = strstr(r.body.data, needle);
    assert_non_null(p);
    double after = strtod(p + strlen(needle), NULL);
    resp_free(&r);
    if (after - before > 5) fail_msg("%g probes for 50 /readyz", after - before);
    drain_logs(&gw, NULL, 0);
}

static void test_metrics_per_route(void **state)
{
    (void)state;
    resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(request(gw.port, "GET", "/api/items/m", NULL, NULL, 0, &r), 200);
        resp_free(&r);
    }
    assert_int_equal(request(gw.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    const char *b = r.body.data;
    const char *needle =
        "gateway_requests_total{route=\"/api/items\",upstream=\"cm\",code=\"2xx\"} ";
    const char *p = strstr(b, needle);
    if (!p) fail_msg("no %s in %s", needle, b);
    assert_true(strtod(p + strlen(needle), NULL) >= 3);
    assert_non_null(strstr(b, "gateway_request_duration_seconds_bucket{route=\"/api/items\","
                              "upstream=\"cm\",le=\"0.005\"}"));
    assert_non_null(strstr(b, "gateway_request_duration_seconds_count{route=\"/api/content\""));
    /* the upstream errors of the test before */
    assert_non_null(strstr(b, "gateway_upstream_errors_total{upstream=\"rt\",kind=\"connect\"}"));
    /* the raw path never becomes a label */
    assert_null(strstr(b, "/api/items/m"));
    resp_free(&r);
    drain_logs(&gw, NULL, 0);
}

static void test_malformed_requests_are_4xx_problems(void **state)
{
    (void)state;
    resp r;
    const char *bad[] = {
        "GET /api/content/%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/a%2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/../realtime/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/%2E%2e/realtime/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/x?q=%G1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/content/x HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\nConnection: close\r\n\r\n",
        "POST /api/content/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = raw_request(gw.port, bad[i], strlen(bad[i]), &r);
        char ct[128] = "";
        resp_header(&r, "content-type", ct, sizeof ct);
        if (st < 400 || st > 499 || strcmp(ct, "application/problem+json") != 0)
            fail_msg("%s -> %d %s", bad[i], st, ct);
        expect_problem(&r, st);
        resp_free(&r);
    }
    /* Requests libh2o cannot parse at all (no request exists yet) get its own plain 400 and the
     * connection closes: still a 4xx, never a forwarded request. */
    const char *unparseable[] = {
        "GET /api/content/x HTTP/1.1\r\nHost: t\r\nBad Header\r\nConnection: close\r\n\r\n",
        "GET /api/content/x HTTP/1.1\r\nHost: t\r\nX-Bad\x01: v\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof unparseable / sizeof unparseable[0]; i++) {
        int st = raw_request(gw.port, unparseable[i], strlen(unparseable[i]), &r);
        if (st != 400) fail_msg("%s -> %d", unparseable[i], st);
        resp_free(&r);
    }
    drain_logs(&gw, NULL, 0);
}

static void test_access_log_lines(void **state)
{
    (void)state;
    resp r;
    drain_logs(&gw, NULL, 0);
    assert_int_equal(request(gw.port, "GET", "/api/items/logged?token=secret", NULL, NULL, 0, &r),
                     200);
    char rid[200];
    assert_true(resp_header(&r, "x-request-id", rid, sizeof rid));
    resp_free(&r);
    usleep(100000);
    char out[65536];
    drain_logs(&gw, out, sizeof out);
    char *line = strstr(out, rid);
    assert_non_null(line);
    assert_non_null(strstr(out, "\"msg\":\"access\""));
    assert_non_null(strstr(out, "\"route\":\"/api/items/*\""));
    assert_null(strstr(out, "secret")); /* query strings are not logged */
}

static void run_expect_config_error2(const char *var_assignment, const char *second,
                                     const char *variable)
{
    ts_child c;
    const char *env[] = {var_assignment, "HTTP_PORT=0", second, NULL};
    assert_true(ts_spawn(&c, gw_path, NULL, env));
    int st = ts_wait_or_kill(&c, 10000);
    char err[4096] = "";
    ts_drain_fd(c.err_fd, err, sizeof err);
    ts_close_pipes(&c);
    if (st != 78 || !strstr(err, variable))
        fail_msg("%s: status %d, stderr %s", var_assignment, st, err);
    assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err)); /* one line */
}

static void run_expect_config_error(const char *var_assignment, const char *variable)
{
    run_expect_config_error2(var_assignment, "GATEWAY_AUTH=off", variable);
}

static void test_bad_configuration_exits_78(void **state)
{
    (void)state;
    run_expect_config_error("GATEWAY_ROUTES=/api=nobody", "GATEWAY_ROUTES");
    run_expect_config_error("GATEWAY_ROUTES=/api/=content-manager", "GATEWAY_ROUTES");
    run_expect_config_error("GATEWAY_ROUTES=api=content-manager", "GATEWAY_ROUTES");
    run_expect_config_error("GATEWAY_UPSTREAMS=a=127.0.0.1", "GATEWAY_UPSTREAMS");
    run_expect_config_error("GATEWAY_UPSTREAMS=a=example.com:80", "GATEWAY_UPSTREAMS");
    run_expect_config_error("GATEWAY_READ_TIMEOUT_MS=soon", "GATEWAY_READ_TIMEOUT_MS");
    run_expect_config_error("GATEWAY_MAX_BODY_BYTES=0", "GATEWAY_MAX_BODY_BYTES");
    run_expect_config_error("GATEWAY_WORKERS=2", "GATEWAY_WORKERS"); /* with HTTP_PORT=0 */
    run_expect_config_error("GATEWAY_ROUTES=/api=content-manager;role=root", "GATEWAY_ROUTES");
    run_expect_config_error("GATEWAY_ROUTES=/api=content-manager;public;role=viewer",
                            "GATEWAY_ROUTES");
    run_expect_config_error("GATEWAY_PUBLIC_RATE=lots", "GATEWAY_PUBLIC_RATE");
    run_expect_config_error("GATEWAY_OPTIONAL_UPSTREAMS=nobody", "GATEWAY_OPTIONAL_UPSTREAMS");
    /* authorization is never silently off */
    run_expect_config_error2("AUTH_PUBLIC_KEY=", "GATEWAY_AUTH=", "AUTH_PUBLIC_KEY");
    run_expect_config_error2("AUTH_PUBLIC_KEY=bm90IGEga2V5", "GATEWAY_AUTH=", "AUTH_PUBLIC_KEY");
    run_expect_config_error2("GATEWAY_AUTH=maybe", pubkey_env, "GATEWAY_AUTH");
}

static void test_workers_share_the_port(void **state)
{
    (void)state;
    proc multi = {.port = ts_free_port()};
    const char *extra[] = {"GATEWAY_WORKERS=2", NULL};
    start_gateway(&multi, extra);
    resp r;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(request(multi.port, "GET", "/api/content/w", NULL, NULL, 0, &r), 200);
        resp_free(&r);
    }
    int64_t first, end;
    int events;
    sse_through(multi.port, 3, &first, &end, &events);
    assert_int_equal(events, 3);
    char out[65536];
    drain_logs(&multi, out, sizeof out);
    assert_int_equal(stop_proc(&multi), 0);
}

static void test_sigterm_drains_and_exits_0(void **state)
{
    (void)state;
    proc p = {.port = ts_free_port()};
    start_gateway(&p, NULL);
    /* a slow request in flight when SIGTERM arrives still gets its answer */
    int fd = gwt_connect(p.port);
    const char req[] = "GET /api/content/slow?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_true(gwt_send_all(fd, req, sizeof req - 1));
    usleep(100000);
    kill(p.child.pid, SIGTERM);
    char buf[4096];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_true(poll(&pfd, 1, 5000) == 1);
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(strtol(buf + 9, NULL, 10), 200);
    close(fd);
    int st = ts_wait_or_kill(&p.child, 15000);
    char sink[65536];
    ts_drain_fd(p.child.out_fd, sink, sizeof sink);
    ts_close_pipes(&p.child);
    assert_int_equal(st, 0);
}

/* Streams and slow upstreams do not hold the drain open: at GATEWAY_DRAIN_TIMEOUT_MS an open
 * stream is cut and a request still waiting for its upstream gets 503; the exit is 0. */
static void test_sigterm_ends_streams_at_the_drain_deadline(void **state)
{
    (void)state;
    proc p = {.port = ts_free_port()};
    const char *extra[] = {"GATEWAY_DRAIN_TIMEOUT_MS=1000", NULL};
    start_gateway(&p, extra);
    int sse = gwt_connect(p.port);
    const char sreq[] = "GET /api/realtime/sse?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_true(gwt_send_all(sse, sreq, sizeof sreq - 1));
    int slow = gwt_connect(p.port);
    const char wreq[] = "GET /api/content/slow?ms=8000 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_true(gwt_send_all(slow, wreq, sizeof wreq - 1));
    usleep(300000);
    int64_t t0 = core_mono_ns();
    kill(p.child.pid, SIGTERM);
    /* the stream goes on until the deadline, then ends */
    char buf[65536];
    core_buf got = {0};
    for (;;) {
        struct pollfd pfd = {.fd = sse, .events = POLLIN};
        if (poll(&pfd, 1, 6000) <= 0) break;
        ssize_t n = recv(sse, buf, sizeof buf, 0);
        if (n <= 0) break;
        core_buf_append(&got, buf, (size_t)n);
    }
    int64_t ended_ms = (core_mono_ns() - t0) / 1000000;
    assert_non_null(got.data);
    assert_non_null(strstr(got.data, "event: tick"));
    if (ended_ms < 700 || ended_ms > 2500) /* libs/http alone would cut it at 3 s */
        fail_msg("the stream ended after %lld ms", (long long)ended_ms);
    core_buf_free(&got);
    close(sse);
    /* the slow one was answered 503 */
    struct pollfd pfd = {.fd = slow, .events = POLLIN};
    assert_true(poll(&pfd, 1, 5000) == 1);
    ssize_t n = recv(slow, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(strtol(buf + 9, NULL, 10), 503);
    assert_non_null(strstr(buf, "application/problem+json"));
    close(slow);
    int st = ts_wait_or_kill(&p.child, 10000);
    char sink[65536];
    ts_drain_fd(p.child.out_fd, sink, sizeof sink);
    ts_close_pipes(&p.child);
    assert_int_equal(st, 0);
    assert_true((core_mono_ns() - t0) / 1000000 < 6000);
}

/* ---------------------------------------------------------------- static files */

static char static_dir[256];

static void write_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", static_dir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_static_dir(void)
{
    static const char *const files[] = {
        "index.html", "index.html.new", "assets/app-1f2e.js", "assets/app-1f2e.css",
        "robots.txt", ".env",           "link.txt",           NULL};
    char path[512];
    for (size_t i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", static_dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/assets", static_dir);
    rmdir(path);
    rmdir(static_dir);
}

static void expect_header(const resp *r, const char *name, const char *want)
{
    char v[256] = "";
    if (!resp_header(r, name, v, sizeof v) || strcmp(v, want) != 0)
        fail_msg("%s: want \"%s\", got \"%s\" in\n%s", name, want, v, r->head.data);
}

static void test_static_files(void **state)
{
    (void)state;
    snprintf(static_dir, sizeof static_dir, "/tmp/gw-static-XXXXXX");
    assert_non_null(mkdtemp(static_dir));
    char assets[300];
    snprintf(assets, sizeof assets, "%s/assets", static_dir);
    assert_int_equal(mkdir(assets, 0755), 0);
    const char *index = "<!doctype html><title>app v1</title><script src=/assets/app-1f2e.js>";
    write_file("index.html", index);
    write_file("assets/app-1f2e.js", "console.log('app')\n");
    write_file("assets/app-1f2e.css", "body{}\n");
    write_file("robots.txt", "User-agent: *\n");
    write_file(".env", "SECRET=do-not-serve\n");
    char link[300];
    snprintf(link, sizeof link, "%s/link.txt", static_dir);
    assert_int_equal(symlink("/etc/hostname", link), 0);

    proc p = {.port = ts_free_port()};
    char dir_env[300];
    snprintf(dir_env, sizeof dir_env, "GATEWAY_STATIC_DIR=%s", static_dir);
    const char *extra[] = {dir_env, "GATEWAY_STATIC_RELOAD_MS=50", NULL};
    start_gateway(&p, extra);
    resp r;

    /* index.html: at "/" and, as the app's fallback, at any extension-less path */
    const char *app_paths[] = {"/", "/content", "/content/01a2/edit?tab=1", "/.env", "/apiary"};
    for (size_t i = 0; i < sizeof app_paths / sizeof app_paths[0]; i++) {
        assert_int_equal(request(p.port, "GET", app_paths[i], NULL, NULL, 0, &r), 200);
        expect_header(&r, "content-type", "text/html; charset=utf-8");
        expect_header(&r, "cache-control", "no-cache");
        assert_string_equal(r.body.data, index);
        resp_free(&r);
    }
    /* hashed assets: a year, immutable, the right type, a length, validators */
    assert_int_equal(request(p.port, "GET", "/assets/app-1f2e.js", NULL, NULL, 0, &r), 200);
    expect_header(&r, "cache-control", "public, max-age=31536000, immutable");
    expect_header(&r, "content-type", "text/javascript; charset=utf-8");
    expect_header(&r, "content-length", "19");
    expect_header(&r, "x-content-type-options", "nosniff");
    char etag[64], lm[64];
    assert_true(resp_header(&r, "etag", etag, sizeof etag));
    assert_true(resp_header(&r, "last-modified", lm, sizeof lm));
    assert_non_null(strstr(lm, " GMT"));
    assert_string_equal(r.body.data, "console.log('app')\n");
    resp_free(&r);
    assert_int_equal(request(p.port, "GET", "/assets/app-1f2e.css", NULL, NULL, 0, &r), 200);
    expect_header(&r, "content-type", "text/css; charset=utf-8");
    resp_free(&r);
    assert_int_equal(request(p.port, "GET", "/robots.txt", NULL, NULL, 0, &r), 200);
    expect_header(&r, "cache-control", "no-cache");
    resp_free(&r);
    /* HEAD: the same head, no body */
    assert_int_equal(request(p.port, "HEAD", "/assets/app-1f2e.js", NULL, NULL, 0, &r), 200);
    expect_header(&r, "content-length", "19");
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    /* If-None-Match: 304 without a body; another tag: 200 */
    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", etag);
    assert_int_equal(request(p.port, "GET", "/assets/app-1f2e.js", inm, NULL, 0, &r), 304);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    assert_int_equal(
        request(p.port, "GET", "/assets/app-1f2e.js", "If-None-Match: \"x\"\r\n", NULL, 0, &r),
        200);
    resp_free(&r);

    /* a missing file (it has an extension) and API paths never get index.html */
    const char *missing[] = {"/missing.js", "/assets/app-0000.js", "/api", "/api/nothing",
                             "/link.txt"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        if (request(p.port, "GET", missing[i], NULL, NULL, 0, &r) != 404)
            fail_msg("%s: %d", missing[i], r.status);
        expect_problem(&r, 404);
        resp_free(&r);
    }
    assert_int_equal(request(p.port, "POST", "/api/unrouted", NULL, "{}", 2, &r), 404);
    expect_problem(&r, 404);
    resp_free(&r);
    assert_int_equal(request(p.port, "POST", "/content", NULL, "{}", 2, &r), 405);
    expect_problem(&r, 405);
    resp_free(&r);

    /* nothing outside the directory, however the path is spelled */
    const char *escapes[] = {
        "GET /../../../../etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /assets/../index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /assets/%2E%2E/%2E%2E/etc/hostname HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /assets%2fapp-1f2e.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /..%5c..%5cetc%5cpasswd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /index.html%00.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        int st = raw_request(p.port, escapes[i], strlen(escapes[i]), &r);
        if (st != 400 && st != 404) fail_msg("%s -> %d", escapes[i], st);
        if (r.body.data && (strstr(r.body.data, "root:") || strstr(r.body.data, "app v1")))
            fail_msg("%s served a file: %s", escapes[i], r.body.data);
        resp_free(&r);
    }
    /* the dot file was never loaded: "/.env" above was the app, not the secret */

    /* the API and the built-in endpoints still win over "/" */
    assert_int_equal(request(p.port, "GET", "/api/content/x", NULL, NULL, 0, &r), 200);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "cm");
    json_decref(j);
    resp_free(&r);
    assert_int_equal(request(p.port, "GET", "/healthz", NULL, NULL, 0, &r), 200);
    resp_free(&r);

    /* a new build (index.html replaced whole) is served without a restart */
    const char *index2 = "<!doctype html><title>app v2</title>";
    write_file("index.html.new", index2);
    char from[300], to[300];
    snprintf(from, sizeof from, "%s/index.html.new", static_dir);
    snprintf(to, sizeof to, "%s/index.html", static_dir);
    assert_int_equal(rename(from, to), 0);
    bool reloaded = false;
    for (int i = 0; i < 100 && !reloaded; i++) {
        usleep(50000);
        assert_int_equal(request(p.port, "GET", "/", NULL, NULL, 0, &r), 200);
        reloaded = strcmp(r.body.data, index2) == 0;
        resp_free(&r);
    }
    assert_true(reloaded);
    drain_logs(&p, NULL, 0);
    assert_int_equal(stop_proc(&p), 0);
    remove_static_dir();
}

static void test_static_dir_absent_is_a_helpful_404(void **state)
{
    (void)state;
    resp r;
    const char *paths[] = {"/", "/content/1"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(request(gw.port, "GET", paths[i], NULL, NULL, 0, &r), 404);
        expect_problem(&r, 404);
        json_t *j = resp_json(&r);
        const char *detail = json_string_value(json_object_get(j, "detail"));
        assert_non_null(detail);
        assert_non_null(strstr(detail, "not built"));
        assert_non_null(strstr(detail, "GATEWAY_STATIC_DIR"));
        json_decref(j);
        resp_free(&r);
    }
    drain_logs(&gw, NULL, 0);
}

/* ---------------------------------------------------------------- authorization */

#define AUTH_ROUTES                                                                                \
    "GATEWAY_ROUTES=/api/content=cm;role=viewer;write=editor /api/items=cm;role=editor "           \
    "/api/admin=cm;role=admin /api/public=cm;public /api/realtime=rt;role=viewer "                 \
    "/api/realtime/events=rt;role=viewer;stream"

static char *mint(const auth_signer *s, const char *role, int64_t exp_s)
{
    auth_claims c = {.iat = core_now_unix_ms() / 1000 - 5, .exp = exp_s};
    snprintf(c.iss, sizeof c.iss, "subscriber-manager");
    snprintf(c.sub, sizeof c.sub, "user-%s", role);
    snprintf(c.email, sizeof c.email, "%s@example.test", role);
    snprintf(c.jti, sizeof c.jti, "jti-%s", role);
    assert_true(auth_role_parse(role, &c.role));
    return auth_jwt_sign(s, &c);
}

static char *fresh(const char *role)
{
    return mint(&key, role, core_now_unix_ms() / 1000 + 600);
}

/* "Authorization: Bearer <token>\r\n" plus more (may be NULL) */
static char *auth_header(const char *token, const char *more)
{
    core_buf b = {0};
    core_buf_printf(&b, "Authorization: Bearer %s\r\n%s", token, more ? more : "");
    return core_buf_steal(&b, NULL);
}

/* A request with a token; returns the status, the upstream's echo in *echo when 200. */
static int call_as(const char *method, const char *target, const char *token, const char *more,
                   resp *r)
{
    char *h = token ? auth_header(token, more) : NULL;
    int st =
        request(gw_auth.port, method, target, token ? h : more, method[0] == 'G' ? NULL : "", 0, r);
    free(h);
    return st;
}

static const char *echo_header(json_t *j, const char *name)
{
    return json_string_value(json_object_get(json_object_get(j, "headers"), name));
}

static void test_auth_roles_per_method(void **state)
{
    (void)state;
    char *viewer = fresh("viewer"), *editor = fresh("editor"), *admin = fresh("admin");
    resp r;
    struct {
        const char *method, *target, *token;
        int status;
    } cases[] = {
        {"GET", "/api/content/items", viewer, 200},
        {"HEAD", "/api/content/ok", viewer, 200},
        {"POST", "/api/content/items", viewer, 403},
        {"PATCH", "/api/content/items/1", viewer, 403},
        {"DELETE", "/api/content/items/1", viewer, 403},
        {"POST", "/api/content/items", editor, 200},
        {"GET", "/api/items/1", viewer, 403},
        {"GET", "/api/items/1", editor, 200},
        {"GET", "/api/admin/users", editor, 403},
        {"DELETE", "/api/admin/users/1", admin, 200},
        {"POST", "/api/content/items", admin, 200},
        {"GET", "/api/realtime/x", viewer, 200},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = call_as(cases[i].method, cases[i].target, cases[i].token, NULL, &r);
        if (st != cases[i].status)
            fail_msg("%s %s: %d, want %d: %s", cases[i].method, cases[i].target, st,
                     cases[i].status, r.raw.data);
        if (st == 403) {
            expect_problem(&r, 403);
            json_t *j = resp_json(&r);
            assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "role"));
            json_decref(j);
        }
        resp_free(&r);
    }
    /* the upstream sees the verified identity, set by the gateway */
    assert_int_equal(call_as("POST", "/api/content/echo", editor, NULL, &r), 200);
    json_t *j = resp_json(&r);
    assert_string_equal(echo_header(j, "x-auth-user"), "user-editor");
    assert_string_equal(echo_header(j, "x-auth-role"), "editor");
    assert_string_equal(echo_header(j, "x-auth-email"), "editor@example.test");
    assert_string_equal(echo_header(j, "x-auth-token-id"), "jti-editor");
    /* Authorization goes on: upstreams that verify again (subscriber-manager) can */
    assert_non_null(strstr(echo_header(j, "authorization"), editor));
    json_decref(j);
    resp_free(&r);
    free(viewer);
    free(editor);
    free(admin);
    drain_logs(&gw_auth, NULL, 0);
}

static void expect_401(resp *r, bool invalid)
{
    expect_problem(r, 401);
    char wa[256];
    assert_true(resp_header(r, "www-authenticate", wa, sizeof wa));
    assert_true(strncmp(wa, "Bearer", 6) == 0);
    assert_true((strstr(wa, "invalid_token") != NULL) == invalid);
}

static void test_auth_refuses_bad_tokens_401(void **state)
{
    (void)state;
    resp r;
    /* none at all */
    assert_int_equal(call_as("GET", "/api/content/items", NULL, NULL, &r), 401);
    expect_401(&r, false);
    resp_free(&r);
    assert_int_equal(
        call_as("GET", "/api/content/items", NULL, "Authorization: Basic eDp5\r\n", &r), 401);
    expect_401(&r, true);
    resp_free(&r);

    char *good = fresh("admin");
    char *tampered = core_xstrdup(good);
    char *p = strchr(tampered, '.') + 3; /* a payload character */
    *p = *p == 'A' ? 'B' : 'A';
    char *expired = mint(&key, "admin", core_now_unix_ms() / 1000 - 1);
    char *wrong_key = mint(&other_key, "admin", core_now_unix_ms() / 1000 + 600);
    char none[600];
    {
        const char *h = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
        char eh[128];
        auth_b64url_encode(h, strlen(h), eh, sizeof eh);
        const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
        snprintf(none, sizeof none, "%s%.*s.", eh, (int)(d2 - d1), d1); /* no signature */
    }
    const char *bad[] = {tampered, expired, wrong_key, none, "a.b.c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = call_as("GET", "/api/content/items", bad[i], NULL, &r);
        if (st != 401) fail_msg("token %zu: %d", i, st);
        expect_401(&r, true);
        assert_null(strstr(r.body.data, bad[i])); /* the token is not echoed */
        resp_free(&r);
        /* not on writes either, nor on the streaming route with the query */
        assert_int_equal(call_as("POST", "/api/content/items", bad[i], NULL, &r), 401);
        resp_free(&r);
        char target[1024];
        snprintf(target, sizeof target, "/api/realtime/events/echo?access_token=%s", bad[i]);
        assert_int_equal(call_as("GET", target, NULL, NULL, &r), 401);
        resp_free(&r);
    }
    json_t *j;
    assert_int_equal(call_as("GET", "/api/content/items", expired, NULL, &r), 401);
    j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "token expired");
    json_decref(j);
    resp_free(&r);
    /* the good one passes */
    assert_int_equal(call_as("GET", "/api/content/items", good, NULL, &r), 200);
    resp_free(&r);
    free(good);
    free(tampered);
    free(expired);
    free(wrong_key);
    drain_logs(&gw_auth, NULL, 0);
}

static void test_identity_headers_never_forwarded(void **state)
{
    (void)state;
    const char *forged = "X-Auth-User: user-admin\r\nX-Auth-Role: admin\r\n"
                         "x-auth-email: boss@example.test\r\nX-AUTH-TOKEN-ID: forged\r\n"
                         "X-Auth-Role: admin\r\n";
    char *viewer = fresh("viewer");
    resp r;
    /* with a viewer token: the gateway's identity only, and the forgery buys no write */
    assert_int_equal(call_as("GET", "/api/content/echo", viewer, forged, &r), 200);
    json_t *j = resp_json(&r);
    assert_string_equal(echo_header(j, "x-auth-user"), "user-viewer");
    assert_string_equal(echo_header(j, "x-auth-role"), "viewer");
    assert_string_equal(echo_header(j, "x-auth-email"), "viewer@example.test");
    assert_string_equal(echo_header(j, "x-auth-token-id"), "jti-viewer");
    json_decref(j);
    resp_free(&r);
    assert_int_equal(call_as("POST", "/api/content/echo", viewer, forged, &r), 403);
    resp_free(&r);
    /* without a token: 401, forged headers or not */
    assert_int_equal(call_as("GET", "/api/admin/x", NULL, forged, &r), 401);
    resp_free(&r);
    /* a public route: nothing of them arrives, and the gateway sets none */
    assert_int_equal(call_as("POST", "/api/public/echo", NULL, forged, &r), 200);
    j = resp_json(&r);
    const char *names[] = {"x-auth-user", "x-auth-role", "x-auth-email", "x-auth-token-id"};
    for (size_t i = 0; i < 4; i++)
        if (echo_header(j, names[i])) fail_msg("%s reached the upstream", names[i]);
    json_decref(j);
    resp_free(&r);
    /* and with GATEWAY_AUTH=off neither */
    assert_int_equal(request(gw.port, "GET", "/api/content/echo", forged, NULL, 0, &r), 200);
    j = resp_json(&r);
    for (size_t i = 0; i < 4; i++)
        if (echo_header(j, names[i])) fail_msg("%s reached the upstream (auth off)", names[i]);
    json_decref(j);
    resp_free(&r);
    free(viewer);
    drain_logs(&gw_auth, NULL, 0);
    drain_logs(&gw, NULL, 0);
}

static void test_public_route_rate_limited_429(void **state)
{
    (void)state;
    resp r;
    /* GATEWAY_PUBLIC_RATE="1/s burst 4": a few pass without a token, then 429 */
    int ok = 0, st = 0;
    for (int i = 0; i < 12 && st != 429; i++) {
        st = call_as("POST", "/api/public/subscribe", NULL, NULL, &r);
        if (st == 200) ok++;
        if (st != 429) resp_free(&r);
    }
    assert_int_equal(st, 429);
    assert_true(ok >= 1 && ok <= 5);
    expect_problem(&r, 429);
    char ra[32];
    assert_true(resp_header(&r, "retry-after", ra, sizeof ra));
    long secs = strtol(ra, NULL, 10);
    assert_true(secs >= 1 && secs <= 2);
    resp_free(&r);
    /* protected routes are not limited by it */
    char *viewer = fresh("viewer");
    for (int i = 0; i < 8; i++) {
        assert_int_equal(call_as("GET", "/api/content/x", viewer, NULL, &r), 200);
        resp_free(&r);
    }
    free(viewer);
    /* after Retry-After, the public route answers again */
    usleep((useconds_t)(secs * 1000000 + 100000));
    assert_int_equal(call_as("GET", "/api/public/confirm", NULL, NULL, &r), 200);
    resp_free(&r);
    /* the refusals are counted */
    assert_int_equal(request(gw_auth.port, "GET", "/metrics", NULL, NULL, 0, &r), 200);
    assert_non_null(
        strstr(r.body.data, "gateway_auth_denied_total{route=\"/api/public\",code=\"429\"}"));
    assert_non_null(
        strstr(r.body.data, "gateway_auth_denied_total{route=\"/api/content\",code=\"401\"}"));
    resp_free(&r);
    drain_logs(&gw_auth, NULL, 0);
}

static void test_query_token_on_streams_only(void **state)
{
    (void)state;
    char *viewer = fresh("viewer");
    resp r;
    char target[1024];
    char out[65536];
    drain_logs(&gw_auth, NULL, 0);
    /* the streaming route takes it, and the upstream never sees it */
    snprintf(target, sizeof target, "/api/realtime/events/echo?q=x&access_token=%s&b=1", viewer);
    assert_int_equal(call_as("GET", target, NULL, NULL, &r), 200);
    json_t *j = resp_json(&r);
    assert_null(json_object_get(j, "access_token"));
    assert_string_equal(json_string_value(json_object_get(j, "q")), "x");
    assert_string_equal(echo_header(j, "x-auth-user"), "user-viewer");
    /* it goes on as a bearer credential, for upstreams that verify themselves */
    assert_non_null(strstr(echo_header(j, "authorization"), viewer));
    json_decref(j);
    resp_free(&r);
    /* a live stream with it */
    snprintf(target, sizeof target, "/api/realtime/events/sse?n=3&access_token=%s", viewer);
    assert_int_equal(call_as("GET", target, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body.data, "event: tick"));
    resp_free(&r);
    /* other routes do not take it: 401, even on the same upstream */
    snprintf(target, sizeof target, "/api/content/echo?access_token=%s", viewer);
    assert_int_equal(call_as("GET", target, NULL, NULL, &r), 401);
    resp_free(&r);
    snprintf(target, sizeof target, "/api/realtime/x?access_token=%s", viewer);
    assert_int_equal(call_as("GET", target, NULL, NULL, &r), 401);
    resp_free(&r);
    /* with a header it passes, and the parameter is still not forwarded */
    snprintf(target, sizeof target, "/api/content/echo?access_token=%s", viewer);
    assert_int_equal(call_as("GET", target, viewer, NULL, &r), 200);
    j = resp_json(&r);
    assert_null(json_object_get(j, "access_token"));
    json_decref(j);
    resp_free(&r);
    /* the gateway's log has the requests, never the token */
    usleep(200000);
    drain_logs(&gw_auth, out, sizeof out);
    assert_non_null(strstr(out, "\"path\":\"/api/realtime/events/echo\""));
    const char *sig = strrchr(viewer, '.') + 1;
    if (strstr(out, sig)) fail_msg("the token is in the gateway's log");
    assert_null(strstr(out, "access_token"));
    free(viewer);
}

static void test_auth_off_warns_loudly(void **state)
{
    (void)state;
    ts_child c;
    const char *env[] = {"GATEWAY_AUTH=off", "HTTP_PORT=0", "AUTH_PUBLIC_KEY=", NULL};
    assert_true(ts_spawn(&c, gw_path, NULL, env));
    char out[16384] = "";
    for (int i = 0; i < 100 && !strstr(out, "listening"); i++) {
        usleep(30000);
        ts_drain_fd(c.out_fd, out + strlen(out), sizeof out - strlen(out));
        ts_drain_fd(c.err_fd, out + strlen(out), sizeof out - strlen(out));
    }
    kill(c.pid, SIGTERM);
    assert_int_equal(ts_wait_or_kill(&c, 10000), 0);
    ts_close_pipes(&c);
    assert_non_null(strstr(out, "\"level\":\"warn\""));
    assert_non_null(strstr(out, "GATEWAY_AUTH=off: NO AUTHORIZATION"));
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    ts_bin_path(gw_path, sizeof gw_path, "gateway");
    ts_program_path(up_path, sizeof up_path, "gateway_upstream");
    up_cm.port = ts_free_port();
    up_rt.port = ts_free_port();
    gw.port = ts_free_port();
    gw_slow.port = ts_free_port();
    gw_auth.port = ts_free_port();
    auth_signer_generate(&key);
    auth_signer_generate(&other_key);
    char pk[64];
    auth_verifier_base64(&key.pub, pk);
    snprintf(pubkey_env, sizeof pubkey_env, "AUTH_PUBLIC_KEY=%s", pk);
    start_upstream(&up_cm, "cm");
    start_upstream(&up_rt, "rt");
    start_gateway(&gw, NULL);
    const char *slow[] = {"GATEWAY_READ_TIMEOUT_MS=300", "GATEWAY_MAX_BODY_BYTES=4096", NULL};
    start_gateway(&gw_slow, slow);
    const char *limited[] = {"GATEWAY_PUBLIC_RATE=1/s burst 4", NULL};
    start_gateway_routes(&gw_auth, AUTH_ROUTES, limited);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int a = stop_proc(&gw);
    int b = stop_proc(&gw_slow);
    int c = stop_proc(&gw_auth);
    stop_proc(&up_cm);
    stop_proc(&up_rt);
    if (a != 0 || b != 0 || c != 0) {
        fprintf(stderr, "gateway exit status %d / %d / %d, expected 0\n", a, b, c);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_routing),
        cmocka_unit_test(test_ids_forwarding_and_hop_by_hop),
        cmocka_unit_test(test_bodies_both_ways),
        cmocka_unit_test(test_oversize_body_is_413),
        cmocka_unit_test(test_sse_passes_live),
        cmocka_unit_test(test_slow_upstream_is_504),
        cmocka_unit_test(test_down_upstream_502_readyz_and_recovery),
        cmocka_unit_test(test_readyz_flood_is_cached),
        cmocka_unit_test(test_metrics_per_route),
        cmocka_unit_test(test_malformed_requests_are_4xx_problems),
        cmocka_unit_test(test_access_log_lines),
        cmocka_unit_test(test_bad_configuration_exits_78),
        cmocka_unit_test(test_workers_share_the_port),
        cmocka_unit_test(test_sigterm_drains_and_exits_0),
        cmocka_unit_test(test_sigterm_ends_streams_at_the_drain_deadline),
        cmocka_unit_test(test_static_files),
        cmocka_unit_test(test_static_dir_absent_is_a_helpful_404),
        cmocka_unit_test(test_auth_roles_per_method),
        cmocka_unit_test(test_auth_refuses_bad_tokens_401),
        cmocka_unit_test(test_identity_headers_never_forwarded),
        cmocka_unit_test(test_public_route_rate_limited_429),
        cmocka_unit_test(test_query_token_on_streams_only),
        cmocka_unit_test(test_auth_off_warns_loudly),
    };
    return cmocka_run_group_tests_name("gateway_service", tests, setup, teardown);
}
