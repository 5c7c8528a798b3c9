/*
 * Streaming responses (Server-Sent Events) against real clients: events arrive as written,
 * back-pressure shows up in http_stream_pending, and on_close runs when the client goes away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http_test_util.h"

typedef struct st {
    uv_loop_t loop;
    http_server *srv;
    uint16_t port;
    FILE *log;
    http_stream *stream;
    int streams_started;
    int closes;
    bool end_in_on_close;
    int write_after_close;
} st;

static void on_close(http_stream *s, void *data)
{
    st *t = data;
    t->closes++;
    t->write_after_close = http_stream_write(s, "x", 1);
    if (t->end_in_on_close) {
        http_stream_end(s);
        t->stream = NULL;
    }
}

static void h_events(http_req *req, void *data)
{
    st *t = data;
    http_set_header(req, "Cache-Control", "no-cache");
    http_stream *s = http_stream_start(req, 200, "text/event-stream");
    if (!s) return;
    t->streams_started++;
    t->stream = s;
    http_stream_on_close(s, on_close, t);
    http_stream_write(s, "data: one\n\n", 11);
}

static void h_burst(http_req *req, void *data)
{
    (void)data;
    http_stream *s = http_stream_start(req, 200, "text/plain");
    char line[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(line, sizeof line, "line %d\n", i);
        http_stream_write(s, line, (size_t)n);
    }
    http_stream_end(s);
}

static void st_start(st *t, http_server_config *cfg)
{
    memset(t, 0, sizeof *t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    t->log = tmpfile();
    core_log_init("test-http-stream", CORE_LOG_INFO);
    core_log_set_fd(fileno(t->log));
    t->srv = http_server_new(&t->loop, cfg);
    assert_non_null(t->srv);
    t->port = http_server_port(t->srv);
    assert_non_null(http_route(t->srv, "GET", "/events", h_events, t));
    assert_non_null(http_route(t->srv, "GET", "/burst", h_burst, t));
}

static void st_stop(st *t)
{
    if (t->stream) {
        http_stream_end(t->stream);
        t->stream = NULL;
    }
    if (t->srv) assert_true(tu_server_close(&t->loop, t->srv));
    t->srv = NULL;
    tu_loop_done(&t->loop);
    core_log_set_fd(1);
    fclose(t->log);
}

static bool have_stream(void *p)
{
    return ((st *)p)->stream != NULL;
}

static bool closed_once(void *p)
{
    return ((st *)p)->closes > 0;
}

/* ---------------------------------------------------------------- SSE through libcurl */

typedef struct sse_client {
    char url[256];
    atomic_int first_seen;
    core_buf body;
    core_buf head;
    CURLcode rc;
    long status;
} sse_client;

static size_t sse_write(char *p, size_t size, size_t n, void *ud)
{
    sse_client *c = ud;
    core_buf_append(&c->body, p, size * n);
    if (memmem(c->body.data, c->body.len, "data: one\n\n", 11)) atomic_store(&c->first_seen, 1);
    return size * n;
}

static size_t sse_head(char *p, size_t size, size_t n, void *ud)
{
    core_buf_append(&((sse_client *)ud)->head, p, size * n);
    return size * n;
}

static void sse_run(void *arg)
{
    sse_client *c = arg;
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 8000L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sse_head);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    c->rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(e);
}

static bool first_seen(void *p)
{
    return atomic_load(&((sse_client *)p)->first_seen) != 0;
}

static void test_sse_first_event_arrives_while_open(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    sse_client c = {0};
    snprintf(c.url, sizeof c.url, "http://127.0.0.1:%u/events", t.port);
    tu_job job;
    tu_start(&job, sse_run, &c);
    /* the client has the first event while the stream is still open */
    assert_true(ts_run_until(&t.loop, first_seen, &c, 5000));
    assert_non_null(t.stream);
    assert_false(http_stream_is_closed(t.stream));
    assert_false(tu_job_done(&job));
    assert_int_equal(http_set_header(http_stream_req(t.stream), "X-Late", "no"), -1);
    ts_run_for(&t.loop, 50);
    assert_int_equal(http_stream_write(t.stream, "data: two\n\n", 11), 0);
    http_stream_end(t.stream);
    t.stream = NULL;
    assert_true(tu_finish(&t.loop, &job, 5000));
    assert_int_equal(c.rc, CURLE_OK);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.body.len, 22);
    assert_memory_equal(c.body.data, "data: one\n\ndata: two\n\n", 22);
    char v[128];
    assert_true(tu_header(&c.head, "content-type", v, sizeof v));
    assert_string_equal(v, "text/event-stream");
    assert_true(tu_header(&c.head, "cache-control", v, sizeof v));
    assert_true(tu_header(&c.head, "transfer-encoding", v, sizeof v));
    assert_string_equal(v, "chunked");
    assert_true(tu_header(&c.head, "x-request-id", v, sizeof v));
    assert_int_equal(t.closes, 0); /* a normal end is not a close */
    core_buf_free(&c.body);
    core_buf_free(&c.head);
    st_stop(&t);
}

static void test_stream_burst_in_order(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    tu_http h = {0};
    snprintf(h.url, sizeof h.url, "http://127.0.0.1:%u/burst", t.port);
    assert_true(tu_run(&t.loop, tu_http_perform, &h));
    assert_int_equal(h.rc, CURLE_OK);
    core_buf want = {0};
    for (int i = 0; i < 2000; i++)
        core_buf_printf(&want, "line %d\n", i);
    assert_int_equal(h.resp.len, want.len);
    assert_memory_equal(h.resp.data, want.data, want.len);
    core_buf_free(&want);
    tu_http_free(&h);
    st_stop(&t);
}

static void test_stream_over_http2(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    /* generous: a loaded 2-core machine must not turn into a false failure */
    tu_http h = {.http2_prior_knowledge = true, .timeout_ms = 20000};
    snprintf(h.url, sizeof h.url, "http://127.0.0.1:%u/burst", t.port);
    assert_true(tu_run(&t.loop, tu_http_perform, &h));
    assert_int_equal(h.rc, CURLE_OK);
    assert_int_equal(h.status, 200);
    assert_non_null(h.resp.data);
    assert_memory_equal(h.resp.data, "line 0\n", 7);
    assert_non_null(memmem(h.resp.data, h.resp.len, "line 1999\n", 10));
    char v[64];
    assert_false(tu_header(&h.head, "transfer-encoding", v, sizeof v));
    tu_http_free(&h);
    st_stop(&t);
}

/* ---------------------------------------------------------------- raw clients */

typedef struct slow_client {
    uint16_t port;
    const char *request;
    atomic_int go_close;
    atomic_int got_headers;
    core_buf got;
} slow_client;

/* Reads the response headers (and first event), then stops reading until told to close. */
static void slow_run(void *arg)
{
    slow_client *c = arg;
    int fd = tu_connect(c->port, 4096);
    if (fd < 0) return;
    tu_send_all(fd, c->request, strlen(c->request));
    tu_read(fd, &c->got, 3000, "data: one\n\n");
    atomic_store(&c->got_headers, 1);
    for (int i = 0; i < 1000 && !atomic_load(&c->go_close); i++)
        usleep(10000);
    close(fd); /* unread data: the kernel answers with a reset */
}

static bool slow_headers(void *p)
{
    return atomic_load(&((slow_client *)p)->got_headers) != 0;
}

static void test_stream_pending_grows_and_close_fires(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    slow_client c = {.port = t.port, .request = "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"};
    tu_job job;
    tu_start(&job, slow_run, &c);
    assert_true(ts_run_until(&t.loop, slow_headers, &c, 5000));
    assert_non_null(t.stream);

    static char chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    size_t written = 0, max_pending = 0;
    for (int i = 0; i < 4000 && max_pending < 512 * 1024; i++) {
        assert_int_equal(http_stream_write(t.stream, chunk, sizeof chunk), 0);
        written += sizeof chunk;
        uv_run(&t.loop, UV_RUN_NOWAIT);
        size_t p = http_stream_pending(t.stream);
        if (p > max_pending) max_pending = p;
    }
    /* the client does not read: bytes pile up on our side, and the caller can see it */
    assert_true(max_pending >= 512 * 1024);
    assert_true(http_stream_pending(t.stream) <= written);
    assert_int_equal(t.closes, 0);

    atomic_store(&c.go_close, 1);
    assert_true(tu_finish(&t.loop, &job, 5000));
    assert_true(ts_run_until(&t.loop, closed_once, &t, 5000));
    assert_int_equal(t.closes, 1);
    assert_int_equal(t.write_after_close, -1);
    assert_true(http_stream_is_closed(t.stream));
    assert_int_equal(http_stream_write(t.stream, "y", 1), -1);
    http_stream_end(t.stream);
    t.stream = NULL;
    ts_run_for(&t.loop, 50);
    assert_int_equal(t.closes, 1);
    assert_int_equal(http_server_inflight(t.srv), 0);
    core_buf_free(&c.got);
    st_stop(&t);
}

static void test_stream_idle_disconnect_noticed(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    slow_client c = {.port = t.port, .request = "GET /events HTTP/1.1\r\nHost: t\r\n\r\n"};
    atomic_store(&c.go_close, 1); /* close right after the first event */
    t.end_in_on_close = true;
    int64_t t0 = core_mono_ns();
    assert_true(tu_run(&t.loop, slow_run, &c));
    assert_non_null(c.got.data);
    assert_non_null(memmem(c.got.data, c.got.len, "data: one\n\n", 11));
    /* nothing is written after that: the read watcher sees the EOF */
    assert_true(ts_run_until(&t.loop, closed_once, &t, 3000));
    assert_true((core_mono_ns() - t0) / 1000000 < 3000);
    assert_null(t.stream); /* ended from on_close */
    ts_run_for(&t.loop, 50);
    assert_int_equal(http_server_inflight(t.srv), 0);
    core_buf_free(&c.got);
    st_stop(&t);
}

typedef struct http10_client {
    uint16_t port;
    core_buf got;
    bool eof;
} http10_client;

static void http10_run(void *arg)
{
    http10_client *c = arg;
    int fd = tu_connect(c->port, 0);
    if (fd < 0) return;
    const char *r = "GET /burst HTTP/1.0\r\n\r\n";
    tu_send_all(fd, r, strlen(r));
    c->eof = tu_read(fd, &c->got, 3000, NULL);
    close(fd);
}

static void test_stream_http10_close_delimited(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    http10_client c = {.port = t.port};
    assert_true(tu_run(&t.loop, http10_run, &c));
    assert_true(c.eof);
    core_buf_append(&c.got, "", 1);
    assert_memory_equal(c.got.data, "HTTP/1.1 200", 12);
    assert_null(strcasestr(c.got.data, "transfer-encoding"));
    const char *body = strstr(c.got.data, "\r\n\r\n");
    assert_non_null(body);
    assert_memory_equal(body + 4, "line 0\nline 1\n", 14);
    assert_non_null(strstr(body, "line 1999\n"));
    core_buf_free(&c.got);
    st_stop(&t);
}

typedef struct pipelined_client {
    uint16_t port;
    core_buf got;
    bool eof;
} pipelined_client;

/* A stream's request with another pipelined behind it; reads until the server closes. */
static void pipelined_run(void *arg)
{
    pipelined_client *c = arg;
    int fd = tu_connect(c->port, 0);
    if (fd < 0) return;
    const char *r = "GET /events HTTP/1.1\r\nHost: t\r\n\r\nGET /burst HTTP/1.1\r\nHost: t\r\n\r\n";
    tu_send_all(fd, r, strlen(r));
    c->eof = tu_read(fd, &c->got, 5000, NULL);
    close(fd);
}

static size_t log_count(st *t, const char *needle)
{
    fflush(t->log);
    rewind(t->log);
    size_t n = 0;
    char line[2048];
    while (fgets(line, sizeof line, t->log))
        if (strstr(line, needle)) n++;
    fseek(t->log, 0, SEEK_END);
    return n;
}

/* HTTP/1.1: the stream owns its connection, which closes when the stream ends (what was pipelined
 * behind it is not answered); the request is logged once, at the end, with the payload bytes. */
static void test_stream_owns_connection_logged_at_end(void **state)
{
    (void)state;
    st t;
    st_start(&t, NULL);
    pipelined_client c = {.port = t.port};
    tu_job job;
    tu_start(&job, pipelined_run, &c);
    assert_true(ts_run_until(&t.loop, have_stream, &t, 5000));
    ts_run_for(&t.loop, 100);
    assert_int_equal(log_count(&t, "\"route\":\"/events\""), 0);
    assert_int_equal(http_server_inflight(t.srv), 1);
    assert_int_equal(http_stream_write(t.stream, "data: two\n\n", 11), 0);
    http_stream_end(t.stream);
    t.stream = NULL;
    assert_true(tu_finish(&t.loop, &job, 5000));
    assert_true(c.eof);
    core_buf_append(&c.got, "", 1);
    assert_memory_equal(c.got.data, "HTTP/1.1 200", 12);
    assert_non_null(
        strstr(c.got.data, "\r\n\r\nb\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n"));
    assert_null(strstr(c.got.data, "line 0")); /* the pipelined request */
    ts_run_for(&t.loop, 50);
    assert_int_equal(http_server_inflight(t.srv), 0);
    assert_int_equal(log_count(&t, "\"route\":\"/events\""), 1);
    assert_int_equal(log_count(&t, "\"bytes\":22,"), 1);
    assert_int_equal(t.closes, 0);
    core_buf_free(&c.got);
    st_stop(&t);
}

static void test_stream_drain_deadline_aborts(void **state)
{
    (void)state;
    st t;
    http_server_config cfg = {.drain_timeout_ms = 200};
    st_start(&t, &cfg);
    t.end_in_on_close = true;
    sse_client c = {0};
    snprintf(c.url, sizeof c.url, "http://127.0.0.1:%u/events", t.port);
    tu_job job;
    tu_start(&job, sse_run, &c);
    assert_true(ts_run_until(&t.loop, first_seen, &c, 5000));
    assert_true(ts_run_until(&t.loop, have_stream, &t, 1000));
    bool closed = false;
    http_server_close(t.srv, tu_on_closed, &closed);
    assert_true(ts_run_until(&t.loop, tu_flag, &closed, 5000));
    t.srv = NULL;
    assert_int_equal(t.closes, 1);
    assert_null(t.stream);
    assert_true(tu_finish(&t.loop, &job, 5000));
    assert_int_not_equal(c.rc, CURLE_OK); /* the stream was cut, not finished */
    core_buf_free(&c.body);
    core_buf_free(&c.head);
    st_stop(&t);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_first_event_arrives_while_open),
        cmocka_unit_test(test_stream_burst_in_order),
        cmocka_unit_test(test_stream_over_http2),
        cmocka_unit_test(test_stream_pending_grows_and_close_fires),
        cmocka_unit_test(test_stream_idle_disconnect_noticed),
        cmocka_unit_test(test_stream_http10_close_delimited),
        cmocka_unit_test(test_stream_drain_deadline_aborts),
        cmocka_unit_test(test_stream_owns_connection_logged_at_end),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
