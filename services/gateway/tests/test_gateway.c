/* Unit tests of the gateway's domain files: the route table (parsing, errors, matching), the
 * header rules and the upstream request head, response heads (framing, malformed answers) and
 * the chunked decoder, and upstream exchanges against real sockets on the loop that answer
 * well, badly or not at all; the static files' path decoding, types and cache rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../headers.h"
#include "../resphead.h"
#include "../routes.h"
#include "../static.h"
#include "../upstream.h"
#include "test_support.h"

/* ------------------------------------------------------------ routes */

static void test_upstreams_parse(void **state)
{
    (void)state;
    gw_table t = {0};
    char err[256];
    assert_int_equal(gw_upstreams_parse(&t, GW_DEFAULT_UPSTREAMS, err, sizeof err), 0);
    assert_int_equal(t.nups, 7);
    assert_string_equal(t.ups[0].name, "content-manager");
    assert_string_equal(t.ups[0].host, "127.0.0.1");
    assert_int_equal(t.ups[0].port, 8081);
    assert_int_equal(t.ups[6].port, 8087);
    assert_int_equal(gw_routes_parse(&t, GW_DEFAULT_ROUTES, err, sizeof err), 0);
    assert_int_equal(t.nroutes, 19);
    for (size_t i = 0; i < t.nups; i++)
        assert_true(t.ups[i].used);
    gw_table_free(&t);

    assert_int_equal(
        gw_upstreams_parse(&t, "a=[::1]:9000\n b=10.0.0.1:1,c=127.0.0.1:65535", err, sizeof err),
        0);
    assert_int_equal(t.nups, 3);
    assert_string_equal(t.ups[0].host, "::1");
    assert_int_equal(t.ups[0].addr.ss_family, AF_INET6);
    gw_table_free(&t);
}

static void expect_upstreams_error(const char *text, const char *needle)
{
    gw_table t = {0};
    char err[256] = "";
    assert_int_equal(gw_upstreams_parse(&t, text, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("\"%s\": error \"%s\" lacks \"%s\"", text, err, needle);
    assert_int_equal(t.nups, 0);
}

static void test_upstreams_errors(void **state)
{
    (void)state;
    expect_upstreams_error("", "no upstream");
    expect_upstreams_error("a", "not name=host:port");
    expect_upstreams_error("=127.0.0.1:80", "not name=host:port");
    expect_upstreams_error("a=127.0.0.1", "address");
    expect_upstreams_error("a=127.0.0.1:", "address");
    expect_upstreams_error("a=127.0.0.1:0", "address");
    expect_upstreams_error("a=127.0.0.1:65536", "address");
    expect_upstreams_error("a=127.0.0.1:80x", "address");
    expect_upstreams_error("a=localhost:80", "address"); /* literals only: no DNS at start */
    expect_upstreams_error("a=999.0.0.1:80", "address");
    expect_upstreams_error("a=[::1:80", "address");
    expect_upstreams_error("a=127.0.0.1:80 a=127.0.0.1:81", "twice");
    expect_upstreams_error("a b=127.0.0.1:80", "not name=host:port");
}

static void expect_routes_error(const char *text, const char *needle)
{
    gw_table t = {0};
    char err[256] = "";
    assert_int_equal(gw_upstreams_parse(&t, "cm=127.0.0.1:1 rt=127.0.0.1:2", err, sizeof err), 0);
    assert_int_equal(gw_routes_parse(&t, text, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("\"%s\": error \"%s\" lacks \"%s\"", text, err, needle);
    gw_table_free(&t);
}

static void test_routes_errors(void **state)
{
    (void)state;
    expect_routes_error("", "no route");
    expect_routes_error("/api", "not /prefix=upstream");
    expect_routes_error("/api=nope", "unknown upstream \"nope\"");
    expect_routes_error("/api=", "unknown upstream");
    expect_routes_error("api=cm", "malformed path prefix");
    expect_routes_error("/api/=cm", "malformed path prefix");
    expect_routes_error("//api=cm", "malformed path prefix");
    expect_routes_error("/api//x=cm", "malformed path prefix");
    expect_routes_error("/api/../x=cm", "malformed path prefix");
    expect_routes_error("/api/./x=cm", "malformed path prefix");
    expect_routes_error("/a%2Fb=cm", "malformed path prefix");
    expect_routes_error("/a*=cm", "malformed path prefix");
    expect_routes_error("/a{x}=cm", "malformed path prefix");
    expect_routes_error("/a?x=cm", "malformed path prefix");
    expect_routes_error("/api=cm /api=rt", "routed twice");
    expect_routes_error("/api=cm;rule=x", "options are ;public");
    expect_routes_error("/api=cm;role=", "options are ;public");
    expect_routes_error("/api=cm;role=viewer b", "\"b\" is not /prefix=upstream");
}

static void test_routes_match(void **state)
{
    (void)state;
    gw_table t = {0};
    char err[256];
    assert_int_equal(
        gw_upstreams_parse(&t, "cm=127.0.0.1:1 rt=127.0.0.1:2 ai=127.0.0.1:3", err, sizeof err), 0);
    assert_int_equal(gw_routes_parse(&t,
                                     "/api/content=cm /api/items=cm;role=editor /api=ai "
                                     "/api/content/live=rt;role=viewer",
                                     err, sizeof err),
                     0);
    assert_false(t.ups[1].used == false);
    struct {
        const char *path;
        const char *prefix; /* NULL: no route */
    } cases[] = {
        {"/api/content", "/api/content"},
        {"/api/content/", "/api/content"},
        {"/api/content/items/42", "/api/content"},
        {"/api/contentx", "/api"},
        {"/api/content/live", "/api/content/live"},
        {"/api/content/live/x", "/api/content/live"},
        {"/api/content/lively", "/api/content"},
        {"/api/items", "/api/items"},
        {"/api", "/api"},
        {"/apix", NULL},
        {"/", NULL},
        {"", NULL},
        {"/other/api/content", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gw_route *r = gw_table_match(&t, cases[i].path, strlen(cases[i].path));
        if (!cases[i].prefix) {
            if (r) fail_msg("%s matched %s", cases[i].path, r->prefix);
            continue;
        }
        if (!r) fail_msg("%s matched nothing", cases[i].path);
        assert_string_equal(r->prefix, cases[i].prefix);
    }
    const gw_route *r = gw_table_match(&t, "/api/items/1", 12);
    assert_string_equal(t.ups[r->upstream].name, "cm");
    assert_string_equal(r->role, "editor");
    r = gw_table_match(&t, "/api/content/live", 17);
    assert_string_equal(t.ups[r->upstream].name, "rt");
    assert_string_equal(r->role, "viewer");
    r = gw_table_match(&t, "/api/content", 12);
    assert_null(r->role);
    gw_table_free(&t);

    /* a root route catches everything, after the longer prefixes */
    assert_int_equal(gw_upstreams_parse(&t, "cm=127.0.0.1:1 rt=127.0.0.1:2", err, sizeof err), 0);
    assert_int_equal(gw_routes_parse(&t, "/=cm /live=rt", err, sizeof err), 0);
    assert_string_equal(gw_table_match(&t, "/x/y", 4)->prefix, "/");
    assert_string_equal(gw_table_match(&t, "/live/1", 7)->prefix, "/live");
    assert_false(t.ups[1].used == false);
    gw_table_free(&t);
}

/* ------------------------------------------------------------ headers */

static void test_hop_by_hop(void **state)
{
    (void)state;
    const char *hop[] = {"Connection", "keep-alive",          "Transfer-Encoding", "TE", "Trailer",
                         "Upgrade",    "Proxy-Authorization", "proxy-connection",  NULL};
    for (size_t i = 0; hop[i]; i++)
        assert_true(gw_hop_by_hop(hop[i], strlen(hop[i]), NULL, 0));
    const char *e2e[] = {"Content-Type", "X-Request-Id",  "traceparent", "Trailers",
                         "Teapot",       "Authorization", "Host",        NULL};
    for (size_t i = 0; e2e[i]; i++)
        assert_false(gw_hop_by_hop(e2e[i], strlen(e2e[i]), NULL, 0));
    const char *conn = "keep-alive, X-Secret ,x-other";
    assert_true(gw_hop_by_hop("x-secret", 8, conn, strlen(conn)));
    assert_true(gw_hop_by_hop("X-Other", 7, conn, strlen(conn)));
    assert_false(gw_hop_by_hop("X-Secre", 7, conn, strlen(conn)));
}

static void test_path_check(void **state)
{
    (void)state;
    const char *good[] = {"/",      "/api/x",         "/a%20b",       "/a%2Fb",
                          "/a;b=c", "/%C3%A9",        "/a/.b/c",      "/a/...",
                          "/a/b.",  "/.well-known/x", "/a/%2e%2e%2e", NULL};
    for (size_t i = 0; good[i]; i++)
        assert_true(gw_path_ok(good[i], strlen(good[i])));
    const char *bad[] = {
        "",      "x",     "/a%",         "/a%2",    "/a%zz",   "/a%00",
        "/a b",  "/a\tb", "/a#b",        "/a\x7f",  "/a/../b", "/a/./b",
        "/a/..", "/..",   "/a/%2e%2E/b", "/a/.%2e", "/a/%2e",  "/api/content/%2e%2e/admin",
        NULL};
    for (size_t i = 0; bad[i]; i++)
        if (gw_path_ok(bad[i], strlen(bad[i]))) fail_msg("accepted: %s", bad[i]);
}

static void test_header_check(void **state)
{
    (void)state;
    assert_true(gw_header_ok("X-Custom", 8, "v a l", 5));
    assert_true(gw_header_ok("a!#$%&'*+-.^_`|~1", 17, "", 0));
    assert_false(gw_header_ok("", 0, "v", 1));
    assert_false(gw_header_ok(NULL, 0, "v", 1));
    assert_false(gw_header_ok("X Y", 3, "v", 1));
    assert_false(gw_header_ok("X:", 2, "v", 1));
    assert_false(gw_header_ok("X", 1, "a\r\nInjected: 1", 15));
    assert_false(gw_header_ok("X", 1, "a\0b", 3));
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof n - 1, v, sizeof v - 1                                                           \
    }

static void test_request_head(void **state)
{
    (void)state;
    gw_hdr hs[] = {
        H("Accept", "*/*"),
        H("Connection", "keep-alive, X-Hop"),
        H("X-Hop", "secret"),
        H("TE", "trailers"),
        H("Upgrade", "websocket"),
        H("Proxy-Authorization", "Basic x"),
        H("Content-Length", "999"),
        H("Host", "evil"),
        H("X-Forwarded-For", "10.1.1.1"),
        H("Bad", "a\r\nInjected: 1"),
        H("Transfer-Encoding", "chunked"),
        H("Expect", "100-continue"),
    };
    gw_upstream_req r = {
        .method = "POST",
        .method_len = 4,
        .path = "/api/x?q=1",
        .path_len = 10,
        .host = "gw.example",
        .host_len = 10,
        .headers = hs,
        .nheaders = sizeof hs / sizeof hs[0],
        .request_id = "rid-1",
        .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        .remote_addr = "127.0.0.9",
        .body_len = 5,
        .has_body = true,
    };
    core_buf b = {0};
    gw_request_head(&b, &r);
    assert_string_equal(b.data,
                        "POST /api/x?q=1 HTTP/1.1\r\n"
                        "Host: gw.example\r\n"
                        "Accept: */*\r\n"
                        "X-Request-Id: rid-1\r\n"
                        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                        "X-Forwarded-For: 127.0.0.9\r\n"
                        "Content-Length: 5\r\n"
                        "\r\n");
    core_buf_free(&b);

    /* the client's ids are kept (libs/http adopted the id; the traceparent is well formed); no
     * body, no Content-Length; no Host: the upstream's */
    gw_hdr hs2[] = {H("x-request-id", "client-id"),
                    H("traceparent", "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00"),
                    H("X-Request-Id", "client-id")};
    gw_upstream_req r2 = {.method = "GET",
                          .method_len = 3,
                          .path = "/",
                          .path_len = 1,
                          .headers = hs2,
                          .nheaders = 3,
                          .request_id = "client-id",
                          .traceparent = "00-ours",
                          .remote_addr = "",
                          .fallback_host = "127.0.0.1:8081"};
    gw_request_head(&b, &r2);
    assert_string_equal(b.data,
                        "GET / HTTP/1.1\r\n"
                        "Host: 127.0.0.1:8081\r\n"
                        "x-request-id: client-id\r\n"
                        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00\r\n"
                        "\r\n");
    core_buf_free(&b);

    /* ids libs/http did not adopt are replaced by ours */
    gw_hdr hs3[] = {H("X-Request-Id", "bad id with spaces"), H("traceparent", "00-nonsense")};
    r2.headers = hs3;
    r2.nheaders = 2;
    r2.request_id = "rid-3";
    gw_request_head(&b, &r2);
    assert_string_equal(b.data, "GET / HTTP/1.1\r\n"
                                "Host: 127.0.0.1:8081\r\n"
                                "X-Request-Id: rid-3\r\n"
                                "traceparent: 00-ours\r\n"
                                "\r\n");
    core_buf_free(&b);
}

/* ------------------------------------------------------------ response heads */

static int parse(const char *s, bool head_req, gw_resp_head *h)
{
    return gw_resp_head_parse(s, strlen(s), head_req, h);
}

static void test_resp_head_framing(void **state)
{
    (void)state;
    gw_resp_head h;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    assert_int_equal(parse(ok, false, &h), (int)strlen(ok) - 3);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.framing, GW_BODY_LENGTH);
    assert_int_equal(h.content_length, 3);
    assert_true(h.keep_alive);
    assert_int_equal(h.nheaders, 2);
    assert_memory_equal(h.reason, "OK", 2);

    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_CHUNKED);
    assert_true(h.keep_alive);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, &h) >
                0);
    assert_int_equal(h.framing, GW_BODY_CHUNKED);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_CLOSE);
    assert_false(h.keep_alive);
    assert_true(parse("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_CLOSE);
    assert_false(h.keep_alive);
    assert_true(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_NONE);
    assert_true(h.keep_alive);
    assert_true(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_NONE);
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, &h) > 0);
    assert_int_equal(h.framing, GW_BODY_NONE);
    assert_true(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false, &h) > 0);
    assert_false(h.keep_alive);
    assert_memory_equal(h.connection, "close", 5);
    assert_true(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, &h) > 0);
    assert_false(h.keep_alive);
    assert_true(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n",
                      false, &h) > 0);
    assert_true(h.keep_alive);
    assert_true(parse("HTTP/1.1 100 Continue\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.status, 100);
    assert_int_equal(h.framing, GW_BODY_NONE);
    /* the same length twice is tolerated (RFC 9112 6.3) */
    assert_true(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", false, &h) > 0);
    assert_int_equal(h.content_length, 2);
}

static void test_resp_head_malformed(void **state)
{
    (void)state;
    gw_resp_head h;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", false, &h),
                     GW_HEAD_INCOMPLETE);
    assert_int_equal(parse("HTTP/1.1 2", false, &h), GW_HEAD_INCOMPLETE);
    const char *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 99 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
        NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        int rc = gw_resp_head_parse(bad[i], strlen(bad[i]) + (i == 14 ? 10 : 0), false, &h);
        if (rc != GW_HEAD_MALFORMED) fail_msg("accepted: %s (%d)", bad[i], rc);
    }
    /* more headers than we keep */
    core_buf b = {0};
    core_buf_puts(&b, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < GW_MAX_RESP_HEADERS + 1; i++)
        core_buf_printf(&b, "X-%d: v\r\n", i);
    core_buf_puts(&b, "\r\n");
    assert_int_equal(gw_resp_head_parse(b.data, b.len, false, &h), GW_HEAD_MALFORMED);
    core_buf_free(&b);
}

/* ------------------------------------------------------------ chunked */

/* Feeds text to a decoder in pieces of step bytes; returns the decoded payload. */
static int decode_in_steps(const char *text, size_t step, core_buf *out, size_t *rest)
{
    gw_chunked d = {0};
    size_t len = strlen(text), pos = 0;
    char piece[256];
    while (pos < len) {
        size_t n = len - pos < step ? len - pos : step;
        memcpy(piece, text + pos, n);
        size_t plen = n, consumed = 0;
        int rc = gw_chunked_decode(&d, piece, &plen, &consumed);
        if (rc < 0) return -1;
        core_buf_append(out, piece, plen);
        pos += consumed;
        if (rc == 1) {
            *rest = len - pos;
            return 1;
        }
        assert_int_equal(consumed, n);
    }
    return 0;
}

static void test_chunked_decoder(void **state)
{
    (void)state;
    const char *good = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for (size_t step = 1; step <= 64; step++) {
        core_buf out = {0};
        size_t rest = 0;
        assert_int_equal(decode_in_steps(good, step, &out, &rest), 1);
        assert_int_equal(out.len, 16);
        assert_memory_equal(out.data, "hello 0123456789", 16);
        assert_int_equal(rest, 4); /* "NEXT" belongs to the next answer */
        core_buf_free(&out);
    }
    core_buf out = {0};
    size_t rest = 0;
    assert_int_equal(decode_in_steps("3\r\nabc\r\n", 100, &out, &rest), 0); /* needs more */
    core_buf_free(&out);
    const char *bad[] = {"x\r\n",
                         "\r\n",
                         "3\r\nabcd\r\n",
                         "3\nabc\r\n",
                         "3\r\nabc\n0\r\n\r\n",
                         "1000000000000000\r\n",
                         "0\r\n\n",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        core_buf o = {0};
        if (decode_in_steps(bad[i], 100, &o, &rest) != -1) fail_msg("accepted: %s", bad[i]);
        core_buf_free(&o);
    }
}

/* ------------------------------------------------------------ exchanges on real sockets */

static uv_loop_t loop;

/* A one-shot TCP server that answers every connection with a canned text (or closes at once,
 * or never answers), after reading what the client sent. */
typedef struct fake {
    uv_tcp_t server;
    const char *answer; /* NULL: close without answering; "" : never answer */
    int per_conn;       /* > 0: answer that many requests per connection, then close at the next */
    bool close_after;   /* close the connection once the answer is written */
    int port;
    int connections;
    core_buf received;
} fake;

typedef struct fake_conn {
    uv_tcp_t tcp;
    fake *f;
    uv_write_t w;
    size_t seen; /* requests end before this offset in f->received were answered */
    bool silent;
    int answered;
} fake_conn;

static void fake_conn_closed(uv_handle_t *h)
{
    free(h);
}

static void fake_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(s);
    b->len = s;
}

static void fake_written(uv_write_t *w, int status)
{
    (void)status;
    fake_conn *c = w->data;
    if (c->f->close_after && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fake_conn *c = s->data;
    if (n > 0) core_buf_append(&c->f->received, b->base, (size_t)n);
    free(b->base);
    if (n < 0) {
        uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
        return;
    }
    if (n > 0 && !c->silent && strstr(c->f->received.data + c->seen, "\r\n\r\n")) {
        c->seen = c->f->received.len;
        if (!c->f->answer || (c->f->per_conn && c->answered++ >= c->f->per_conn)) {
            uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
            return;
        }
        if (!*c->f->answer) {
            c->silent = true;
            return;
        }
        uv_buf_t out = uv_buf_init((char *)c->f->answer, (unsigned)strlen(c->f->answer));
        c->w.data = c;
        uv_write(&c->w, s, &out, 1, fake_written);
    }
}

static void fake_on_conn(uv_stream_t *server, int status)
{
    fake *f = server->data;
    if (status < 0) return;
    fake_conn *c = calloc(1, sizeof *c);
    c->f = f;
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    uv_accept(server, (uv_stream_t *)&c->tcp);
    f->connections++;
    uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static void fake_start(fake *f, const char *answer)
{
    memset(f, 0, sizeof *f);
    f->answer = answer;
    uv_tcp_init(&loop, &f->server);
    f->server.data = f;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f->server, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, fake_on_conn), 0);
    struct sockaddr_in b;
    int len = sizeof b;
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&b, &len);
    f->port = ntohs(b.sin_port);
}

static void fake_stop(fake *f)
{
    uv_close((uv_handle_t *)&f->server, NULL);
    ts_run_for(&loop, 20); /* the handle's memory is reused by the next fake */
    core_buf_free(&f->received);
}

typedef struct outcome {
    bool done, failed, head;
    int status;
    gw_xerr err;
    core_buf body;
    int pieces;
} outcome;

static void o_head(gw_exchange *x, const gw_resp_head *h, void *data)
{
    (void)x;
    outcome *o = data;
    o->head = true;
    o->status = h->status;
}

static void o_body(gw_exchange *x, const char *p, size_t len, bool final, void *data)
{
    (void)x;
    outcome *o = data;
    core_buf_append(&o->body, p, len);
    o->pieces++;
    if (final) o->done = true;
}

static void o_error(gw_exchange *x, gw_xerr err, bool after_head, void *data)
{
    (void)x;
    (void)after_head;
    outcome *o = data;
    o->failed = true;
    o->err = err;
}

static const gw_exchange_cbs o_cbs = {o_head, o_body, o_error};

static bool o_finished(void *data)
{
    outcome *o = data;
    return o->done || o->failed;
}

static gw_pool *pool_for(int port, int64_t connect_ms)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    return gw_pool_new(&loop, &(gw_pool_config){.addr = (struct sockaddr *)&a,
                                                .name = "t",
                                                .connect_timeout_ms = connect_ms,
                                                .max_idle = 4});
}

static void exchange(gw_pool *p, outcome *o, int64_t read_ms)
{
    memset(o, 0, sizeof *o);
    core_buf req = {0};
    core_buf_puts(&req, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    gw_exchange_opts opts = {.idempotent = true, .read_timeout_ms = read_ms};
    gw_exchange_start(p, &req, &opts, &o_cbs, o);
    assert_true(ts_run_until(&loop, o_finished, o, 5000));
}

static void test_exchange_answers(void **state)
{
    (void)state;
    fake f;
    fake_start(&f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    gw_pool *p = pool_for(f.port, 1000);
    outcome o;
    exchange(p, &o, 2000);
    assert_true(o.done);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body.len, 5);
    assert_memory_equal(o.body.data, "abcde", 5);
    core_buf_free(&o.body);
    ts_run_for(&loop, 20);
    assert_int_equal(gw_pool_idle(p), 1); /* kept alive */
    exchange(p, &o, 2000);                /* and reused */
    assert_true(o.done);
    assert_int_equal(f.connections, 1);
    core_buf_free(&o.body);
    gw_pool_close(p);
    fake_stop(&f);
    ts_run_for(&loop, 20);
}

static void exchange_with(gw_pool *p, outcome *o, bool idempotent)
{
    memset(o, 0, sizeof *o);
    core_buf req = {0};
    core_buf_puts(&req, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    gw_exchange_opts opts = {.idempotent = idempotent, .read_timeout_ms = 2000};
    gw_exchange_start(p, &req, &opts, &o_cbs, o);
    assert_true(ts_run_until(&loop, o_finished, o, 5000));
}

/* The upstream drops a kept-alive connection when it is reused: an idempotent request is sent
 * again on a new connection, a POST is not (it may have had its effect). */
static void test_exchange_retry_on_stale_connection(void **state)
{
    (void)state;
    fake f;
    fake_start(&f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    f.per_conn = 1;
    gw_pool *p = pool_for(f.port, 1000);
    outcome o;
    exchange(p, &o, 2000);
    assert_true(o.done);
    core_buf_free(&o.body);
    ts_run_for(&loop, 20);
    assert_int_equal(gw_pool_idle(p), 1);
    exchange(p, &o, 2000); /* GET on the stale connection: retried */
    assert_true(o.done);
    assert_int_equal(o.status, 200);
    assert_int_equal(f.connections, 2);
    core_buf_free(&o.body);
    ts_run_for(&loop, 20);
    assert_int_equal(gw_pool_idle(p), 1);
    exchange_with(p, &o, false); /* POST on the stale connection: reported */
    assert_true(o.failed);
    assert_int_equal(o.err, GW_XERR_RESET);
    assert_int_equal(f.connections, 2);
    core_buf_free(&o.body);
    exchange_with(p, &o, false); /* and the next one works on a new connection */
    assert_true(o.done);
    assert_int_equal(f.connections, 3);
    core_buf_free(&o.body);
    gw_pool_close(p);
    fake_stop(&f);
}

/* An answer without Content-Length or chunked encoding ends with the connection; that
 * connection is not kept. */
static void test_exchange_close_delimited(void **state)
{
    (void)state;
    fake f;
    fake_start(&f, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, until EOF");
    f.close_after = true;
    gw_pool *p = pool_for(f.port, 1000);
    outcome o;
    exchange(p, &o, 2000);
    assert_true(o.done);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body.len, 16);
    assert_memory_equal(o.body.data, "hello, until EOF", 16);
    core_buf_free(&o.body);
    ts_run_for(&loop, 20);
    assert_int_equal(gw_pool_idle(p), 0);
    gw_pool_close(p);
    fake_stop(&f);
}

static void test_exchange_failures(void **state)
{
    (void)state;
    outcome o;
    /* malformed heads and bodies: protocol errors */
    const char *bad[] = {"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "garbage\r\n\r\n",
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", NULL};
    for (size_t i = 0; bad[i]; i++) {
        fake f;
        fake_start(&f, bad[i]);
        gw_pool *p = pool_for(f.port, 1000);
        exchange(p, &o, 2000);
        if (!o.failed || o.err != GW_XERR_PROTOCOL) fail_msg("not a protocol error: %s", bad[i]);
        core_buf_free(&o.body);
        gw_pool_close(p);
        fake_stop(&f);
    }
    /* closed before answering: reset; truncated body: reset */
    const char *cut[] = {NULL, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"};
    for (size_t i = 0; i < 2; i++) {
        fake f;
        fake_start(&f, cut[i]);
        if (cut[i]) f.answer = cut[i];
        gw_pool *p = pool_for(f.port, 1000);
        memset(&o, 0, sizeof o);
        core_buf req = {0};
        core_buf_puts(&req, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        gw_exchange_opts opts = {.idempotent = true, .read_timeout_ms = 300};
        gw_exchange_start(p, &req, &opts, &o_cbs, &o);
        assert_true(ts_run_until(&loop, o_finished, &o, 5000));
        assert_true(o.failed);
        /* the truncated one stays open: the read timeout ends it */
        assert_int_equal(o.err, i == 0 ? GW_XERR_RESET : GW_XERR_TIMEOUT);
        core_buf_free(&o.body);
        gw_pool_close(p);
        fake_stop(&f);
    }
    /* silent upstream: read timeout */
    fake f;
    fake_start(&f, "");
    gw_pool *p = pool_for(f.port, 1000);
    int64_t t0 = core_mono_ns();
    exchange(p, &o, 200);
    assert_true(o.failed);
    assert_int_equal(o.err, GW_XERR_TIMEOUT);
    assert_true(core_mono_ns() - t0 < 2000 * 1000000LL);
    gw_pool_close(p);
    int port = f.port;
    fake_stop(&f);
    ts_run_for(&loop, 20);
    /* nobody listening: connect error, quickly */
    p = pool_for(port, 1000);
    exchange(p, &o, 2000);
    assert_true(o.failed);
    assert_int_equal(o.err, GW_XERR_CONNECT);
    gw_pool_close(p);
    ts_run_for(&loop, 20);
}

static int setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ts_loop_close_all(&loop);
    uv_loop_close(&loop);
    return 0;
}

/* ------------------------------------------------------------ static files */

static void test_static_decode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(gw_static_decode("/", out, sizeof out), GW_STATIC_PATH_OK);
    assert_string_equal(out, "");
    assert_int_equal(gw_static_decode("/assets/index-3f.js", out, sizeof out), GW_STATIC_PATH_OK);
    assert_string_equal(out, "assets/index-3f.js");
    assert_int_equal(gw_static_decode("/a%20b.txt", out, sizeof out), GW_STATIC_PATH_OK);
    assert_string_equal(out, "a b.txt");
    assert_int_equal(gw_static_decode("/content/01ab", out, sizeof out), GW_STATIC_PATH_OK);
    assert_int_equal(gw_static_decode("/...hidden", out, sizeof out), GW_STATIC_PATH_OK);
    static const char *const bad[] = {
        "/../etc/passwd",
        "/assets/../../x",
        "/.",
        "/a/./b",
        "/%2e%2e/x",
        "/%2E%2e",
        "/.%2e/x",
        "/assets%2findex.js",
        "/a%2Fb",
        "/a%5cb",
        "/a\\b",
        "/a%00b",
        "/a%zz",
        "/a%2",
        "/a//b",
        "relative",
        "/a b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_static_decode(bad[i], out, sizeof out) != GW_STATIC_PATH_BAD)
            fail_msg("%s was accepted as %s", bad[i], out);
    char tiny[4];
    assert_int_equal(gw_static_decode("/abcdef", tiny, sizeof tiny), GW_STATIC_PATH_BAD);
}

static void test_static_rules(void **state)
{
    (void)state;
    assert_string_equal(gw_static_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(gw_static_content_type("assets/a-1.JS"), "text/javascript; charset=utf-8");
    assert_string_equal(gw_static_content_type("assets/a.css"), "text/css; charset=utf-8");
    assert_string_equal(gw_static_content_type("logo.svg"), "image/svg+xml");
    assert_string_equal(gw_static_content_type("f.woff2"), "font/woff2");
    assert_string_equal(gw_static_content_type("x.bin"), "application/octet-stream");
    assert_string_equal(gw_static_content_type("dir.js/noext"), "application/octet-stream");
    assert_true(gw_static_has_extension("assets/a.js"));
    assert_false(gw_static_has_extension("content/01ab"));
    assert_false(gw_static_has_extension("v1.2/content")); /* a dot in a directory only */
    assert_false(gw_static_has_extension(".hidden"));
    assert_false(gw_static_has_extension("trailing."));
    assert_true(gw_static_is_api("/api"));
    assert_true(gw_static_is_api("/api/x"));
    assert_false(gw_static_is_api("/apiary"));
    assert_false(gw_static_is_api("/content/api"));
    assert_string_equal(gw_static_cache_control("assets/index-3f.js"),
                        "public, max-age=31536000, immutable");
    assert_string_equal(gw_static_cache_control("index.html"), "no-cache");
    assert_string_equal(gw_static_cache_control("favicon.ico"), "no-cache");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstreams_parse),
        cmocka_unit_test(test_upstreams_errors),
        cmocka_unit_test(test_routes_errors),
        cmocka_unit_test(test_routes_match),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_header_check),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_resp_head_framing),
        cmocka_unit_test(test_resp_head_malformed),
        cmocka_unit_test(test_chunked_decoder),
        cmocka_unit_test(test_static_decode),
        cmocka_unit_test(test_static_rules),
        cmocka_unit_test_setup_teardown(test_exchange_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange_retry_on_stale_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange_close_delimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange_failures, setup, teardown),
    };
    return cmocka_run_group_tests_name("gateway", tests, NULL, NULL);
}
