/*
 * The server end to end: a real server on an ephemeral port, real clients (libcurl, raw sockets)
 * in another thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <h2o.h>

#include "http_test_util.h"

#define H2O_MAX_REQLEN_FOR_TEST (8192 + 4096 * 100) /* h2o.h: H2O_MAX_REQLEN */

/* ---------------------------------------------------------------- fixture */

typedef struct fx {
    uv_loop_t loop;
    http_server *srv;
    uint16_t port;
    FILE *log;
    bool closed;
    uint16_t upstream_port; /* for the delegation test */
} fx;

typedef struct later {
    uv_timer_t timer;
    http_req *req;
    http_check *check;
    bool ok;
} later;

static struct {
    http_req *held; /* a request a handler kept without answering */
    int held_count;
    bool check_fail;
    bool check_hang;
    http_check *hung;
} g;

static void later_free(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    later *l = t->data;
    if (l->req) {
        http_respond_text(l->req, 200, "later");
        http_req_unref(l->req);
    }
    if (l->check) http_check_done(l->check, l->ok, "pong");
    uv_close((uv_handle_t *)&l->timer, later_free);
}

static void later_start(uv_loop_t *loop, http_req *req, http_check *check, bool ok, uint64_t ms)
{
    later *l = calloc(1, sizeof *l);
    l->req = req;
    l->check = check;
    l->ok = ok;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, later_fire, ms, 0);
}

static void h_item(http_req *req, void *data)
{
    (void)data;
    const char *flag = http_query(req, "flag");
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:b, s:s}", "id", http_param(req, "id"),
                          "cursor", http_query(req, "cursor"), "q", http_query(req, "q"), "flag",
                          flag, "missing_is_null", http_query(req, "missing") == NULL, "route",
                          http_route_label(req));
    http_respond_json(req, 200, o);
}

static void h_item_new(http_req *req, void *data)
{
    (void)data;
    http_respond_json(req, 200, json_pack("{s:b}", "new", 1));
}

static void h_files(http_req *req, void *data)
{
    (void)data;
    http_respond_json(req, 200, json_pack("{s:s}", "rest", http_param(req, "*")));
}

static void h_echo(http_req *req, void *data)
{
    (void)data;
    json_t *body = http_json_body(req);
    if (!body) return;
    http_respond_json(req, 200, body);
}

static void h_ids(http_req *req, void *data)
{
    (void)data;
    http_respond_json(req, 200,
                      json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s, s:s}", "request_id",
                                http_request_id(req), "trace_id", http_trace_id(req), "traceparent",
                                http_traceparent(req), "log_trace", core_log_trace(), "x_custom",
                                http_header(req, "X-Custom"), "remote", http_remote_addr(req),
                                "peer", http_peer_addr(req)));
}

static void h_async(http_req *req, void *data)
{
    fx *f = data;
    later_start(&f->loop, http_req_ref(req), NULL, true, 50);
}

static void h_hold(http_req *req, void *data)
{
    (void)data;
    g.held = http_req_ref(req);
    g.held_count++;
}

static void h_text(http_req *req, void *data)
{
    (void)data;
    http_set_header(req, "X-Thing", "yes");
    assert_int_equal(http_set_header(req, "X-Bad", "a\r\nb"), -1);
    assert_int_equal(http_set_header(req, "Content-Length", "99"), -1);
    assert_int_equal(http_set_header(req, "Bad Name", "x"), -1);
    http_respond_text(req, 200, "hello");
}

static void h_nocontent(http_req *req, void *data)
{
    (void)data;
    http_respond(req, 204, NULL, "ignored", 7);
}

static void h_problem_ext(http_req *req, void *data)
{
    (void)data;
    json_t *extra = json_pack("{s:[{s:s, s:s}], s:s}", "errors", "field", "email", "message",
                              "required", "title", "must not win");
    http_respond_problem_ext(req, 422, "https://example.test/problems/validation",
                             "Validation failed", "one field is invalid", extra);
}

static bool mw_role(http_req *req, void *data)
{
    (void)data;
    const char *need = http_endpoint_meta(http_req_endpoint(req), "role");
    if (!need) return true;
    const char *have = http_header(req, "x-role");
    if (have && strcmp(have, need) == 0) return true;
    http_respond_problem(req, 403, NULL, "role required");
    return false;
}

static void check_sync(http_check *c, void *data)
{
    (void)data;
    http_check_done(c, true, "fine");
}

static void check_async(http_check *c, void *data)
{
    fx *f = data;
    if (g.check_hang) {
        g.hung = c;
        return;
    }
    later_start(&f->loop, NULL, c, !g.check_fail, 20);
}

static void fx_start(fx *f, http_server_config *cfg)
{
    memset(f, 0, sizeof *f);
    memset(&g, 0, sizeof g);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->log = tmpfile();
    assert_non_null(f->log);
    core_log_init("test-http", CORE_LOG_INFO);
    core_log_set_fd(fileno(f->log));
    http_server_config c = cfg ? *cfg : (http_server_config){0};
    c.service = "test-http";
    f->srv = http_server_new(&f->loop, &c);
    assert_non_null(f->srv);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    http_server *s = f->srv;
    assert_non_null(http_route(s, "GET", "/api/items/{id}", h_item, f));
    assert_non_null(http_route(s, "GET", "/api/items/new", h_item_new, f));
    assert_non_null(http_route(s, "GET", "/files/*", h_files, f));
    assert_non_null(http_route(s, "POST", "/echo", h_echo, f));
    assert_non_null(http_route(s, "GET", "/ids", h_ids, f));
    assert_non_null(http_route(s, "GET", "/async", h_async, f));
    assert_non_null(http_route(s, "GET", "/hold", h_hold, f));
    assert_non_null(http_route(s, "GET", "/text", h_text, f));
    assert_non_null(http_route(s, "DELETE", "/nocontent", h_nocontent, f));
    assert_non_null(http_route(s, "POST", "/problem", h_problem_ext, f));
    http_endpoint *admin = http_route(s, "GET", "/admin", h_item_new, f);
    assert_non_null(admin);
    http_endpoint_set_meta(admin, "role", "editor");
    http_endpoint_set_meta(admin, "role", "admin");
    assert_string_equal(http_endpoint_meta(admin, "role"), "admin");
    assert_null(http_endpoint_meta(admin, "other"));
    http_server_use(s, mw_role, NULL);
    /* duplicates and malformed patterns are refused */
    assert_null(http_route(s, "GET", "/api/items/{other}", h_item, f));
    assert_null(http_route(s, "GET", "/healthz", h_item, f));
    assert_null(http_route(s, "GET", "nope", h_item, f));
    assert_null(http_route(s, "G ET", "/x", h_item, f));
}

static void fx_stop(fx *f)
{
    if (f->srv) assert_true(tu_server_close(&f->loop, f->srv));
    f->srv = NULL;
    tu_loop_done(&f->loop);
    core_log_set_fd(1);
    fclose(f->log);
}

static char *fx_log(fx *f)
{
    int fd = fileno(f->log);
    off_t size = lseek(fd, 0, SEEK_END);
    char *s = calloc(1, (size_t)size + 1);
    assert_int_equal(pread(fd, s, (size_t)size, 0), size);
    return s;
}

/* The access log lines (as JSON) whose path is path, in order. */
static json_t *fx_access(fx *f, const char *path)
{
    char *s = fx_log(f);
    json_t *out = json_array();
    for (char *line = s; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        if (j) {
            const char *msg = json_string_value(json_object_get(j, "msg"));
            const char *p = json_string_value(json_object_get(j, "path"));
            if (msg && strcmp(msg, "access") == 0 && p && strcmp(p, path) == 0)
                json_array_append(out, j);
            json_decref(j);
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(s);
    return out;
}

static void fx_url(fx *f, tu_http *h, const char *path)
{
    snprintf(h->url, sizeof h->url, "http://127.0.0.1:%u%s", f->port, path);
}

static json_t *body_json(tu_http *h)
{
    json_error_t err;
    json_t *j = json_loadb(h->resp.data ? h->resp.data : "", h->resp.len, 0, &err);
    if (!j) fail_msg("response body is not JSON: %.*s", (int)h->resp.len, h->resp.data);
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ---------------------------------------------------------------- raw request helper */

typedef struct raw_job {
    uint16_t port;
    const char *data;
    size_t len;
    int wait_ms;
    core_buf out;
    bool eof;
} raw_job;

static void raw_run(void *arg)
{
    raw_job *j = arg;
    int fd = tu_connect(j->port, 0);
    if (fd < 0) return;
    tu_send_all(fd, j->data, j->len);
    j->eof = tu_read(fd, &j->out, j->wait_ms ? j->wait_ms : 2000, NULL);
    close(fd);
}

static void raw(fx *f, raw_job *j, const char *data, size_t len)
{
    memset(j, 0, sizeof *j);
    j->port = f->port;
    j->data = data;
    j->len = len;
    assert_true(tu_run(&f->loop, raw_run, j));
}

/* The JSON body of a raw HTTP/1.1 response (Content-Length framed). */
static json_t *raw_body_json(raw_job *j)
{
    assert_non_null(j->out.data);
    const char *b = strstr(j->out.data, "\r\n\r\n");
    assert_non_null(b);
    json_t *o = json_loads(b + 4, 0, NULL);
    if (!o) fail_msg("not JSON: %s", b + 4);
    return o;
}

/* ---------------------------------------------------------------- tests */

static void test_routing_params_and_query(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {0};
    fx_url(&f, &h, "/api/items/a%20b%2Fc?cursor=x%2By&q=a+b&flag");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.rc, CURLE_OK);
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "id"), "a b/c");
    assert_string_equal(jstr(o, "cursor"), "x+y");
    assert_string_equal(jstr(o, "q"), "a b");
    assert_string_equal(jstr(o, "flag"), "");
    assert_true(json_is_true(json_object_get(o, "missing_is_null")));
    assert_string_equal(jstr(o, "route"), "/api/items/{id}");
    json_decref(o);
    tu_http_free(&h);

    tu_http h2 = {0}; /* a literal beats a parameter */
    fx_url(&f, &h2, "/api/items/new");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 200);
    o = body_json(&h2);
    assert_true(json_is_true(json_object_get(o, "new")));
    json_decref(o);
    tu_http_free(&h2);

    tu_http h3 = {0}; /* catch-all, handed out raw */
    fx_url(&f, &h3, "/files/a/b%20c.txt");
    assert_true(tu_run(&f.loop, tu_http_perform, &h3));
    assert_int_equal(h3.status, 200);
    o = body_json(&h3);
    assert_string_equal(jstr(o, "rest"), "a/b%20c.txt");
    json_decref(o);
    tu_http_free(&h3);
    fx_stop(&f);
}

static void test_404_and_405(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {0};
    fx_url(&f, &h, "/nope?x=1");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 404);
    char v[256];
    assert_true(tu_header(&h.head, "content-type", v, sizeof v));
    assert_string_equal(v, "application/problem+json");
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "type"), "about:blank");
    assert_string_equal(jstr(o, "title"), "Not Found");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 404);
    assert_string_equal(jstr(o, "instance"), "/nope");
    assert_true(tu_header(&h.head, "x-request-id", v, sizeof v));
    assert_string_equal(jstr(o, "request_id"), v);
    json_decref(o);
    tu_http_free(&h);

    tu_http h2 = {.method = "DELETE"};
    fx_url(&f, &h2, "/api/items/7");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 405);
    assert_true(tu_header(&h2.head, "allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD");
    tu_http_free(&h2);

    tu_http h3 = {.method = "POST", .body = "{}", .body_len = 2};
    fx_url(&f, &h3, "/healthz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h3));
    assert_int_equal(h3.status, 405);
    tu_http_free(&h3);

    json_t *lines = fx_access(&f, "/nope");
    assert_int_equal(json_array_size(lines), 1);
    assert_string_equal(jstr(json_array_get(lines, 0), "route"), "unmatched");
    json_decref(lines);
    fx_stop(&f);
}

static void test_json_echo_and_errors(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    const char *ok = "{\"name\":\"caf\xc3\xa9\",\"n\":[1,2,3]}";
    tu_http h = {.method = "POST",
                 .body = ok,
                 .body_len = strlen(ok),
                 .headers = {"Content-Type: application/json; charset=utf-8"}};
    fx_url(&f, &h, "/echo");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "name"), "caf\xc3\xa9");
    assert_int_equal(json_array_size(json_object_get(o, "n")), 3);
    json_decref(o);
    tu_http_free(&h);

    const char *bad = "{\"a\": 1,\n \"b\": }";
    tu_http h2 = {.method = "POST",
                  .body = bad,
                  .body_len = strlen(bad),
                  .headers = {"Content-Type: application/merge-patch+json"}};
    fx_url(&f, &h2, "/echo");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 400);
    char v[256];
    assert_true(tu_header(&h2.head, "content-type", v, sizeof v));
    assert_string_equal(v, "application/problem+json");
    o = body_json(&h2);
    assert_string_equal(jstr(o, "title"), "Bad Request");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 400);
    assert_int_equal(json_integer_value(json_object_get(o, "line")), 2);
    assert_true(json_integer_value(json_object_get(o, "column")) > 0);
    assert_true(json_integer_value(json_object_get(o, "position")) > 0);
    assert_non_null(strstr(jstr(o, "detail"), "line 2"));
    assert_string_equal(jstr(o, "instance"), "/echo");
    assert_true(tu_header(&h2.head, "x-request-id", v, sizeof v));
    assert_string_equal(jstr(o, "request_id"), v);
    json_decref(o);
    tu_http_free(&h2);

    tu_http h3 = {.method = "POST",
                  .body = ok,
                  .body_len = strlen(ok),
                  .headers = {"Content-Type: text/plain"}};
    fx_url(&f, &h3, "/echo");
    assert_true(tu_run(&f.loop, tu_http_perform, &h3));
    assert_int_equal(h3.status, 415);
    o = body_json(&h3);
    assert_string_equal(jstr(o, "title"), "Unsupported Media Type");
    json_decref(o);
    tu_http_free(&h3);

    const char *dup = "{\"a\":1,\"a\":2}"; /* duplicate keys are ambiguous: refused */
    tu_http h4 = {.method = "POST",
                  .body = dup,
                  .body_len = strlen(dup),
                  .headers = {"Content-Type: application/json"}};
    fx_url(&f, &h4, "/echo");
    assert_true(tu_run(&f.loop, tu_http_perform, &h4));
    assert_int_equal(h4.status, 400);
    tu_http_free(&h4);

    tu_http h5 = {.method = "POST", .body = "", .body_len = 0};
    fx_url(&f, &h5, "/problem");
    assert_true(tu_run(&f.loop, tu_http_perform, &h5));
    assert_int_equal(h5.status, 422);
    o = body_json(&h5);
    assert_string_equal(jstr(o, "type"), "https://example.test/problems/validation");
    assert_string_equal(jstr(o, "title"), "Validation failed");
    assert_string_equal(jstr(o, "detail"), "one field is invalid");
    assert_string_equal(jstr(json_array_get(json_object_get(o, "errors"), 0), "field"), "email");
    json_decref(o);
    tu_http_free(&h5);
    fx_stop(&f);
}

static void test_body_limits(void **state)
{
    (void)state;
    fx f;
    http_server_config cfg = {.max_body_bytes = 1024};
    fx_start(&f, &cfg);
    raw_job j;

    /* Content-Length above the limit: refused before the body is read */
    const char *big = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      "Content-Length: 5000\r\n\r\n";
    raw(&f, &j, big, strlen(big));
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 413", 12);
    assert_non_null(strcasestr(j.out.data, "content-type: application/problem+json"));
    assert_non_null(strcasestr(j.out.data, "x-request-id: "));
    json_t *o = raw_body_json(&j);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 413);
    assert_string_equal(jstr(o, "title"), "Content Too Large");
    assert_string_equal(jstr(o, "instance"), "/echo");
    assert_non_null(jstr(o, "request_id"));
    json_decref(o);
    core_buf_free(&j.out);

    /* chunked: counted as it streams in */
    core_buf req = {0};
    core_buf_puts(&req, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        core_buf_puts(&req, "190\r\n"); /* 400 bytes */
        for (int k = 0; k < 400; k++)
            core_buf_puts(&req, " ");
        core_buf_puts(&req, "\r\n");
    }
    core_buf_puts(&req, "0\r\n\r\n");
    raw(&f, &j, req.data, req.len);
    core_buf_free(&req);
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 413", 12);
    o = raw_body_json(&j);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 413);
    json_decref(o);
    core_buf_free(&j.out);

    /* under the limit, both ways */
    core_buf_puts(&req, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "6\r\n{\"a\":1\r\n1\r\n}\r\n0\r\n\r\n");
    raw(&f, &j, req.data, req.len);
    core_buf_free(&req);
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 200", 12);
    assert_non_null(strstr(j.out.data, "{\"a\":1}"));
    core_buf_free(&j.out);

    char body[1001];
    memset(body, ' ', 1000);
    body[0] = '[';
    body[999] = ']';
    body[1000] = '\0';
    tu_http h = {.method = "POST",
                 .body = body,
                 .body_len = 1000,
                 .headers = {"Content-Type: application/json", "Expect:"}};
    fx_url(&f, &h, "/echo");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    tu_http_free(&h);

    json_t *lines = fx_access(&f, "/echo");
    assert_true(json_array_size(lines) >= 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 0), "status")), 413);
    json_decref(lines);
    fx_stop(&f);
}

static void test_request_id_and_trace(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {.headers = {"X-Request-Id: abc-123",
                             "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                             "X-Custom: present"}};
    fx_url(&f, &h, "/ids");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    char v[256];
    assert_true(tu_header(&h.head, "x-request-id", v, sizeof v));
    assert_string_equal(v, "abc-123");
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "request_id"), "abc-123");
    assert_string_equal(jstr(o, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(jstr(o, "log_trace"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(jstr(o, "x_custom"), "present");
    const char *tp = jstr(o, "traceparent");
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
    assert_memory_not_equal(tp + 36, "00f067aa0ba902b7", 16); /* our own span */
    assert_string_equal(tp + 52, "-01");
    json_decref(o);
    tu_http_free(&h);
    assert_string_equal(core_log_trace(), ""); /* cleared after the handler */

    char longid[200];
    memset(longid, 'x', sizeof longid);
    snprintf(longid, sizeof longid, "X-Request-Id: %0150d", 7);
    static const char *const insane[] = {"X-Request-Id: has space", NULL, "X-Request-Id:"};
    for (int i = 0; i < 3; i++) {
        tu_http h2 = {.headers = {i == 1 ? longid : insane[i], "traceparent: 00-zz-bad-01"}};
        fx_url(&f, &h2, "/ids");
        assert_true(tu_run(&f.loop, tu_http_perform, &h2));
        assert_int_equal(h2.status, 200);
        assert_true(tu_header(&h2.head, "x-request-id", v, sizeof v));
        assert_int_equal(strlen(v), 36); /* a fresh UUIDv7 */
        assert_int_equal(v[14], '7');
        o = body_json(&h2);
        assert_string_equal(jstr(o, "request_id"), v);
        const char *trace = jstr(o, "trace_id");
        assert_int_equal(strlen(trace), 32);
        assert_string_not_equal(trace, "00000000000000000000000000000000");
        json_decref(o);
        tu_http_free(&h2);
    }

    /* the access log line: path without the query, request id, trace id */
    tu_http h3 = {.headers = {"X-Request-Id: log-me"}};
    fx_url(&f, &h3, "/api/items/9?token=s3cr3t");
    assert_true(tu_run(&f.loop, tu_http_perform, &h3));
    assert_int_equal(h3.status, 200);
    tu_http_free(&h3);
    char *all = fx_log(&f);
    assert_null(strstr(all, "s3cr3t"));
    free(all);
    json_t *lines = fx_access(&f, "/api/items/9");
    assert_int_equal(json_array_size(lines), 1);
    json_t *l = json_array_get(lines, 0);
    assert_string_equal(jstr(l, "method"), "GET");
    assert_string_equal(jstr(l, "route"), "/api/items/{id}");
    assert_string_equal(jstr(l, "request_id"), "log-me");
    assert_string_equal(jstr(l, "remote_addr"), "127.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(l, "status")), 200);
    assert_true(json_integer_value(json_object_get(l, "bytes")) > 0);
    assert_true(json_is_number(json_object_get(l, "duration_ms")));
    assert_int_equal(strlen(jstr(l, "trace_id")), 32);
    json_decref(lines);
    fx_stop(&f);
}

static void test_healthz_metrics_head(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {0};
    fx_url(&f, &h, "/healthz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "status"), "ok");
    json_decref(o);
    tu_http_free(&h);

    for (int i = 0; i < 3; i++) {
        tu_http hi = {0};
        fx_url(&f, &hi, "/api/items/1");
        assert_true(tu_run(&f.loop, tu_http_perform, &hi));
        assert_int_equal(hi.status, 200);
        tu_http_free(&hi);
    }
    tu_http hm = {0};
    fx_url(&f, &hm, "/metrics");
    assert_true(tu_run(&f.loop, tu_http_perform, &hm));
    assert_int_equal(hm.status, 200);
    char v[256];
    assert_true(tu_header(&hm.head, "content-type", v, sizeof v));
    assert_non_null(strstr(v, "text/plain; version=0.0.4"));
    core_buf_append(&hm.resp, "", 1);
    assert_non_null(strstr(hm.resp.data, "# TYPE http_requests_total counter"));
    assert_non_null(strstr(hm.resp.data, "http_requests_total{method=\"GET\",route=\"/api/items/"
                                         "{id}\",status=\"200\"}"));
    assert_non_null(strstr(hm.resp.data, "http_request_duration_seconds_bucket{method=\"GET\","
                                         "route=\"/api/items/{id}\""));
    assert_null(strstr(hm.resp.data, "route=\"/api/items/1\"")); /* never the raw path */
    tu_http_free(&hm);

    tu_http hh = {.method = "HEAD"};
    fx_url(&f, &hh, "/text");
    assert_true(tu_run(&f.loop, tu_http_perform, &hh));
    assert_int_equal(hh.status, 200);
    assert_int_equal(hh.resp.len, 0);
    assert_true(tu_header(&hh.head, "content-length", v, sizeof v));
    assert_string_equal(v, "5");
    assert_true(tu_header(&hh.head, "x-thing", v, sizeof v));
    tu_http_free(&hh);

    tu_http ht = {0};
    fx_url(&f, &ht, "/text");
    assert_true(tu_run(&f.loop, tu_http_perform, &ht));
    assert_int_equal(ht.status, 200);
    assert_int_equal(ht.resp.len, 5);
    assert_memory_equal(ht.resp.data, "hello", 5);
    assert_false(tu_header(&ht.head, "server", v, sizeof v));
    tu_http_free(&ht);

    tu_http hn = {.method = "DELETE"};
    fx_url(&f, &hn, "/nocontent");
    assert_true(tu_run(&f.loop, tu_http_perform, &hn));
    assert_int_equal(hn.status, 204);
    assert_int_equal(hn.resp.len, 0);
    tu_http_free(&hn);

    /* middleware reading endpoint metadata */
    tu_http ha = {0};
    fx_url(&f, &ha, "/admin");
    assert_true(tu_run(&f.loop, tu_http_perform, &ha));
    assert_int_equal(ha.status, 403);
    tu_http_free(&ha);
    tu_http hb = {.headers = {"X-Role: admin"}};
    fx_url(&f, &hb, "/admin");
    assert_true(tu_run(&f.loop, tu_http_perform, &hb));
    assert_int_equal(hb.status, 200);
    tu_http_free(&hb);
    fx_stop(&f);
}

/* A keep-alive request from the main thread: send, then run the loop until the whole
 * (Content-Length framed) response is in. */
typedef struct roundtrip {
    int fd;
    core_buf out;
} roundtrip;

static bool roundtrip_complete(void *p)
{
    roundtrip *r = p;
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    while (poll(&pfd, 1, 0) > 0) {
        char b[4096];
        ssize_t n = recv(r->fd, b, sizeof b, 0);
        if (n <= 0) return true;
        core_buf_append(&r->out, b, (size_t)n);
    }
    if (!r->out.data) return false;
    const char *end = memmem(r->out.data, r->out.len, "\r\n\r\n", 4);
    const char *cl = memmem(r->out.data, r->out.len, "Content-Length: ", 16);
    if (!end || !cl) return false;
    long want = strtol(cl + 16, NULL, 10);
    return (long)(r->out.len - (size_t)(end + 4 - r->out.data)) >= want;
}

static void roundtrip_run(fx *f, roundtrip *r, const char *request)
{
    core_buf_reset(&r->out);
    assert_true(tu_send_all(r->fd, request, strlen(request)));
    assert_true(ts_run_until(&f->loop, roundtrip_complete, r, 3000));
    core_buf_append(&r->out, "", 1);
}

static void test_readyz(void **state)
{
    (void)state;
    fx f;
    http_server_config cfg = {.readiness_timeout_ms = 300};
    fx_start(&f, &cfg);
    http_readiness_check(f.srv, "sync", check_sync, &f);
    http_readiness_check(f.srv, "kafka", check_async, &f);

    tu_http h = {0};
    fx_url(&f, &h, "/readyz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "status"), "ready");
    json_t *k = json_object_get(json_object_get(o, "checks"), "kafka");
    assert_true(json_is_true(json_object_get(k, "ok")));
    assert_string_equal(jstr(k, "detail"), "pong");
    json_decref(o);
    tu_http_free(&h);

    g.check_fail = true;
    tu_http h2 = {0};
    fx_url(&f, &h2, "/readyz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 503);
    o = body_json(&h2);
    assert_string_equal(jstr(o, "status"), "not ready");
    assert_int_equal(json_array_size(json_object_get(o, "failing")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "failing"), 0)),
                        "kafka");
    assert_true(
        json_is_true(json_object_get(json_object_get(json_object_get(o, "checks"), "sync"), "ok")));
    json_decref(o);
    tu_http_free(&h2);

    g.check_fail = false;
    g.check_hang = true;
    int64_t t0 = core_mono_ns();
    tu_http h3 = {0};
    fx_url(&f, &h3, "/readyz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h3));
    int64_t ms = (core_mono_ns() - t0) / 1000000;
    assert_int_equal(h3.status, 503);
    assert_true(ms >= 250);
    o = body_json(&h3);
    k = json_object_get(json_object_get(o, "checks"), "kafka");
    assert_false(json_is_true(json_object_get(k, "ok")));
    assert_non_null(strstr(jstr(k, "detail"), "timeout"));
    json_decref(o);
    tu_http_free(&h3);
    assert_non_null(g.hung);
    http_check_done(g.hung, true, "too late"); /* answering late is fine */
    g.check_hang = false;

    /* draining: /readyz turns 503 on a connection that was already open */
    roundtrip rt = {.fd = tu_connect(f.port, 0)};
    assert_true(rt.fd >= 0);
    roundtrip_run(&f, &rt, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_memory_equal(rt.out.data, "HTTP/1.1 200", 12);
    http_server_stop_accepting(f.srv);
    assert_true(http_server_is_draining(f.srv));
    roundtrip_run(&f, &rt, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_memory_equal(rt.out.data, "HTTP/1.1 503", 12);
    assert_non_null(strstr(rt.out.data, "\"status\":\"draining\""));
    roundtrip_run(&f, &rt, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_memory_equal(rt.out.data, "HTTP/1.1 200", 12);
    close(rt.fd);
    core_buf_free(&rt.out);
    fx_stop(&f);
}

static void test_async_answer_later(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {0};
    fx_url(&f, &h, "/async");
    int64_t t0 = core_mono_ns();
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    assert_true((core_mono_ns() - t0) / 1000000 >= 45);
    assert_int_equal(h.resp.len, 5);
    assert_memory_equal(h.resp.data, "later", 5);
    tu_http_free(&h);
    fx_stop(&f);
}

static bool held_gone(void *p)
{
    (void)p;
    return g.held && http_req_is_gone(g.held);
}

static bool held_set(void *p)
{
    (void)p;
    return g.held != NULL;
}

typedef struct hangup_job {
    uint16_t port;
    atomic_int *go;
} hangup_job;

/* Sends a request, waits until told, then closes without reading. */
static void hangup_run(void *arg)
{
    hangup_job *j = arg;
    int fd = tu_connect(j->port, 0);
    if (fd < 0) return;
    const char *r = "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n";
    tu_send_all(fd, r, strlen(r));
    for (int i = 0; i < 500 && !atomic_load(j->go); i++)
        usleep(10000);
    close(fd);
}

static void test_async_client_gone_http1(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    atomic_int go = 0;
    hangup_job hj = {.port = f.port, .go = &go};
    tu_job job;
    tu_start(&job, hangup_run, &hj);
    assert_true(ts_run_until(&f.loop, held_set, NULL, 5000));
    assert_false(http_req_is_gone(g.held));
    atomic_store(&go, 1);
    assert_true(tu_finish(&f.loop, &job, 5000));
    /* noticed without writing anything: our read watcher saw EOF */
    assert_true(ts_run_until(&f.loop, held_gone, NULL, 3000));
    assert_int_equal(http_respond_text(g.held, 200, "too late"), -1);
    assert_null(http_header(g.held, "host"));
    assert_string_equal(http_path(g.held), "/hold"); /* still readable: we own it */
    http_req_unref(g.held);
    g.held = NULL;
    ts_run_for(&f.loop, 50);
    assert_int_equal(http_server_inflight(f.srv), 0);
    json_t *lines = fx_access(&f, "/hold");
    assert_int_equal(json_array_size(lines), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 0), "status")), 499);
    json_decref(lines);
    fx_stop(&f);
}

static void test_async_client_gone_http2(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    /* HTTP/2 (prior knowledge): h2o keeps reading, and frees the request when the client goes;
     * our pool-dispose anchor marks it gone */
    tu_http h = {.http2_prior_knowledge = true, .timeout_ms = 300};
    fx_url(&f, &h, "/hold");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.rc, CURLE_OPERATION_TIMEDOUT);
    tu_http_free(&h);
    assert_non_null(g.held);
    assert_true(ts_run_until(&f.loop, held_gone, NULL, 3000));
    assert_int_equal(http_respond_text(g.held, 200, "too late"), -1);
    assert_null(http_stream_start(g.held, 200, "text/plain"));
    http_req_unref(g.held);
    g.held = NULL;

    tu_http h2 = {.http2_prior_knowledge = true};
    fx_url(&f, &h2, "/api/items/h2");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 200);
    char v[128];
    assert_true(tu_header(&h2.head, "x-request-id", v, sizeof v));
    json_t *o = body_json(&h2);
    assert_string_equal(jstr(o, "id"), "h2");
    json_decref(o);
    tu_http_free(&h2);
    fx_stop(&f);
}

static void test_handler_timeout(void **state)
{
    (void)state;
    fx f;
    http_server_config cfg = {.handler_timeout_ms = 200};
    fx_start(&f, &cfg);
    tu_http h = {0};
    fx_url(&f, &h, "/hold");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 503);
    json_t *o = body_json(&h);
    assert_non_null(strstr(jstr(o, "detail"), "did not answer"));
    json_decref(o);
    tu_http_free(&h);
    assert_true(http_req_responded(g.held));
    assert_int_equal(http_respond_text(g.held, 200, "late"), -1);
    http_req_unref(g.held);
    g.held = NULL;
    fx_stop(&f);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    fx f;
    http_server_config cfg = {.request_timeout_ms = 300};
    fx_start(&f, &cfg);
    raw_job j;

    const char *garbage = "GARBAGE\r\n\r\n";
    raw(&f, &j, garbage, strlen(garbage));
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 400", 12);
    assert_true(j.eof);
    core_buf_free(&j.out);

    static const char *const bad_paths[] = {
        "GET /api/items/%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/items/a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/items/1?a=%G1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /api/items/1?a=%4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < 4; i++) {
        raw(&f, &j, bad_paths[i], strlen(bad_paths[i]));
        assert_non_null(j.out.data);
        assert_memory_equal(j.out.data, "HTTP/1.1 400", 12);
        json_t *o = raw_body_json(&j);
        assert_non_null(strstr(jstr(o, "detail"), "percent-encoding"));
        json_decref(o);
        core_buf_free(&j.out);
    }

    const char *bad_chunk = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n";
    raw(&f, &j, bad_chunk, strlen(bad_chunk));
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 400", 12);
    assert_non_null(strcasestr(j.out.data, "application/problem+json"));
    core_buf_free(&j.out);

    const char *bad_len = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n";
    raw(&f, &j, bad_len, strlen(bad_len));
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 400", 12);
    core_buf_free(&j.out);

    /* headers larger than h2o accepts (H2O_MAX_REQLEN) */
    core_buf huge = {0};
    core_buf_puts(&huge, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    while (huge.len < H2O_MAX_REQLEN_FOR_TEST + 1000)
        core_buf_puts(&huge, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    raw(&f, &j, huge.data, huge.len);
    core_buf_free(&huge);
    assert_non_null(j.out.data);
    assert_memory_equal(j.out.data, "HTTP/1.1 400", 12);
    core_buf_free(&j.out);

    /* slowloris: a request that never completes is cut at the request timeout */
    const char *partial = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    int64_t t0 = core_mono_ns();
    memset(&j, 0, sizeof j);
    j.port = f.port;
    j.data = partial;
    j.len = strlen(partial);
    j.wait_ms = 3000;
    assert_true(tu_run(&f.loop, raw_run, &j));
    int64_t ms = (core_mono_ns() - t0) / 1000000;
    assert_true(j.eof);
    assert_true(ms >= 250 && ms < 2500);
    core_buf_free(&j.out);

    /* still serving */
    tu_http h = {0};
    fx_url(&f, &h, "/healthz");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    tu_http_free(&h);
    fx_stop(&f);
}

static bool closed_flag(void *p)
{
    return *(bool *)p;
}

static void test_graceful_close_waits(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    tu_http h = {.timeout_ms = 8000};
    fx_url(&f, &h, "/hold");
    tu_job job;
    tu_start(&job, tu_http_perform, &h);
    assert_true(ts_run_until(&f.loop, held_set, NULL, 5000));

    /* an idle keep-alive connection, to be closed by the drain */
    int idle = tu_connect(f.port, 0);
    assert_true(idle >= 0);
    const char *r = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_true(tu_send_all(idle, r, strlen(r)));
    ts_run_for(&f.loop, 100);

    bool closed = false;
    http_server_close(f.srv, tu_on_closed, &closed);
    ts_run_for(&f.loop, 300);
    assert_false(closed);
    assert_int_equal(http_server_inflight(f.srv), 1);
    assert_true(http_server_is_draining(f.srv));
    int refused = tu_connect(f.port, 0);
    assert_int_equal(refused, -1);

    /* the idle connection got its answer, then was closed by the server */
    core_buf idle_out = {0};
    assert_true(tu_read(idle, &idle_out, 1000, NULL));
    assert_non_null(idle_out.data);
    assert_memory_equal(idle_out.data, "HTTP/1.1 200", 12);
    core_buf_free(&idle_out);
    close(idle);

    assert_int_equal(http_respond_text(g.held, 200, "done"), 0);
    http_req_unref(g.held);
    g.held = NULL;
    assert_true(ts_run_until(&f.loop, closed_flag, &closed, 5000));
    pthread_join(job.thread, NULL);
    assert_int_equal(h.rc, CURLE_OK);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.resp.len, 4);
    tu_http_free(&h);
    f.srv = NULL; /* freed */
    fx_stop(&f);
}

static void test_graceful_close_deadline(void **state)
{
    (void)state;
    fx f;
    http_server_config cfg = {.drain_timeout_ms = 200};
    fx_start(&f, &cfg);
    tu_http h = {.timeout_ms = 8000};
    fx_url(&f, &h, "/hold");
    tu_job job;
    tu_start(&job, tu_http_perform, &h);
    assert_true(ts_run_until(&f.loop, held_set, NULL, 5000));
    bool closed = false;
    int64_t t0 = core_mono_ns();
    http_server_close(f.srv, tu_on_closed, &closed);
    assert_true(ts_run_until(&f.loop, closed_flag, &closed, 5000));
    int64_t ms = (core_mono_ns() - t0) / 1000000;
    assert_true(ms >= 180);
    assert_true(tu_finish(&f.loop, &job, 5000));
    assert_int_equal(h.status, 503);
    tu_http_free(&h);
    /* the handler's late answer is refused, and its reference outlives the server */
    assert_true(http_req_is_gone(g.held));
    assert_int_equal(http_respond_text(g.held, 200, "late"), -1);
    http_req_unref(g.held);
    g.held = NULL;
    f.srv = NULL;
    fx_stop(&f);
}

/* What the gateway does: route and check with this library, then hand the request to h2o's
 * reverse proxy. The response still passes our filter and logger. */
static void h_proxy(http_req *req, void *data)
{
    fx *f = data;
    char path[512], authority[64];
    snprintf(path, sizeof path, "/api/items/%s", http_param(req, "*"));
    snprintf(authority, sizeof authority, "127.0.0.1:%u", f->upstream_port);
    h2o_req_t *h = http_req_h2o_take(req);
    assert_non_null(h);
    assert_int_equal(http_respond_text(req, 200, "refused"), -1);
    h2o_req_overrides_t *ov = h2o_mem_alloc_pool(&h->pool, sizeof *ov);
    memset(ov, 0, sizeof *ov);
    ov->hostport.host = h2o_strdup(&h->pool, "127.0.0.1", SIZE_MAX);
    ov->hostport.port = f->upstream_port;
    h2o_reprocess_request(h, h->method, &H2O_URL_SCHEME_HTTP,
                          h2o_strdup(&h->pool, authority, SIZE_MAX),
                          h2o_strdup(&h->pool, path, SIZE_MAX), ov, 0);
}

static void test_delegate_to_h2o_proxy(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, NULL);
    http_server *up = http_server_new(&f.loop, NULL);
    assert_non_null(up);
    assert_non_null(http_route(up, "GET", "/api/items/{id}", h_item, &f));
    f.upstream_port = http_server_port(up);
    assert_non_null(http_route(f.srv, "GET", "/proxy/*", h_proxy, &f));
    assert_non_null(http_server_h2o_context(f.srv));
    assert_non_null(http_server_h2o_globalconf(f.srv));

    tu_http h = {.headers = {"X-Request-Id: through-the-gateway"}};
    fx_url(&f, &h, "/proxy/77?cursor=c");
    assert_true(tu_run(&f.loop, tu_http_perform, &h));
    assert_int_equal(h.rc, CURLE_OK);
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    assert_string_equal(jstr(o, "id"), "77");
    json_decref(o);
    char v[128];
    assert_true(tu_header(&h.head, "x-request-id", v, sizeof v));
    assert_string_equal(v, "through-the-gateway");
    tu_http_free(&h);
    json_t *lines = fx_access(&f, "/proxy/77");
    assert_int_equal(json_array_size(lines), 1);
    assert_string_equal(jstr(json_array_get(lines, 0), "route"), "/proxy/*");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 0), "status")), 200);
    json_decref(lines);

    /* upstream gone: h2o's own 502 comes out as problem+json */
    assert_true(tu_server_close(&f.loop, up));
    tu_http h2 = {0};
    fx_url(&f, &h2, "/proxy/78");
    assert_true(tu_run(&f.loop, tu_http_perform, &h2));
    assert_int_equal(h2.status, 502);
    assert_true(tu_header(&h2.head, "content-type", v, sizeof v));
    assert_string_equal(v, "application/problem+json");
    o = body_json(&h2);
    assert_string_equal(jstr(o, "title"), "Bad Gateway");
    assert_string_equal(jstr(o, "instance"), "/proxy/78");
    json_decref(o);
    tu_http_free(&h2);
    fx_stop(&f);
}

/* X-Forwarded-For is believed only from trusted proxies, from the right. */
static void client_addr_is(fx *f, const char *xff, const char *want)
{
    char hdr[256];
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", xff);
    tu_http h = {.headers = {hdr}};
    fx_url(f, &h, "/ids");
    assert_true(tu_run(&f->loop, tu_http_perform, &h));
    assert_int_equal(h.status, 200);
    json_t *o = body_json(&h);
    if (strcmp(jstr(o, "remote"), want) != 0)
        fail_msg("X-Forwarded-For \"%s\": client %s, want %s", xff, jstr(o, "remote"), want);
    assert_string_equal(jstr(o, "peer"), "127.0.0.1");
    json_decref(o);
    tu_http_free(&h);
}

static void test_trusted_proxies(void **state)
{
    (void)state;
    fx f;
    fx_start(&f, &(http_server_config){.trusted_proxies = "127.0.0.0/8, ::1"});
    client_addr_is(&f, "203.0.113.9, 10.1.2.3", "10.1.2.3");
    client_addr_is(&f, "203.0.113.9, 127.0.0.5", "203.0.113.9");
    client_addr_is(&f, "2001:db8::7", "2001:db8::7");
    client_addr_is(&f, "127.0.0.2", "127.0.0.2");      /* only proxies: the left-most */
    client_addr_is(&f, "not-an-address", "127.0.0.1"); /* unusable: the peer */
    client_addr_is(&f, "198.51.100.1, ", "127.0.0.1");
    json_t *lines = fx_access(&f, "/ids");
    assert_true(json_array_size(lines) >= 1);
    assert_string_equal(jstr(json_array_get(lines, 0), "remote_addr"), "10.1.2.3");
    json_decref(lines);
    fx_stop(&f);

    /* Not trusted: the header changes nothing. */
    fx_start(&f, NULL);
    client_addr_is(&f, "203.0.113.9", "127.0.0.1");
    fx_stop(&f);

    uv_loop_t loop;
    uv_loop_init(&loop);
    static const char *const bad[] = {"10.0.0.0/33", "nope", "1.2.3.4/", "::1/129", NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_false(http_trusted_proxies_valid(bad[i]));
        assert_null(http_server_new(&loop, &(http_server_config){.trusted_proxies = bad[i]}));
    }
    assert_true(http_trusted_proxies_valid("10.0.0.0/8,fd00::/8 127.0.0.1"));
    assert_true(http_trusted_proxies_valid(""));
    tu_loop_done(&loop);
}

static void test_listen_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    http_server_config bad = {.host = "not-an-ip"};
    assert_null(http_server_new(&loop, &bad));
    http_server *a = http_server_new(&loop, NULL);
    assert_non_null(a);
    http_server_config same = {.port = http_server_port(a)};
    assert_null(http_server_new(&loop, &same));
    assert_true(tu_server_close(&loop, a));
    tu_loop_done(&loop);
}

/* reuse_port: two servers (two worker processes, in the gateway) share one port; a server
 * without it still cannot take a port in use. */
static void test_reuse_port(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    http_server *a = http_server_new(&loop, &(http_server_config){.reuse_port = true});
    assert_non_null(a);
    uint16_t port = http_server_port(a);
    http_server *b =
        http_server_new(&loop, &(http_server_config){.port = port, .reuse_port = true});
    assert_non_null(b);
    assert_int_equal(http_server_port(b), port);
    assert_null(http_server_new(&loop, &(http_server_config){.port = port}));
    assert_true(tu_server_close(&loop, a));
    assert_true(tu_server_close(&loop, b));
    tu_loop_done(&loop);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_params_and_query),
        cmocka_unit_test(test_404_and_405),
        cmocka_unit_test(test_json_echo_and_errors),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_request_id_and_trace),
        cmocka_unit_test(test_healthz_metrics_head),
        cmocka_unit_test(test_readyz),
        cmocka_unit_test(test_async_answer_later),
        cmocka_unit_test(test_async_client_gone_http1),
        cmocka_unit_test(test_async_client_gone_http2),
        cmocka_unit_test(test_handler_timeout),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_graceful_close_waits),
        cmocka_unit_test(test_graceful_close_deadline),
        cmocka_unit_test(test_delegate_to_h2o_proxy),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_reuse_port),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
