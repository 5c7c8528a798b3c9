/* httpc against a real local HTTP server: methods, headers, bodies, encodings, redirects,
 * limits, timeouts, cancellation, concurrency, closing. */
#include "httpc_fixture.h"

static void test_get_ok(void **state)
{
    (void)state;
    fx_env e;
    httpc_config cfg = {.user_agent = "httpc-test/1"};
    fx_env_open(&e, &cfg);
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/ok");
    fx_result r = {.lookup = {"CONTENT-TYPE", "content-length", "x-missing"}};
    httpc_request_opts o = {.url = url};
    /* The trace id current at httpc_request is current again in the callback. */
    char trace[CORE_TRACE_ID_LEN + 1];
    core_trace_id_new(trace);
    core_log_set_trace(trace);
    assert_non_null(httpc_request(e.c, &o, fx_done, &r));
    core_log_set_trace(NULL);
    assert_true(ts_run_until(&e.loop, fx_is_done, &r, 10000));
    assert_string_equal(r.trace, trace);
    assert_string_equal(core_log_trace(), "");
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.error, HTTPC_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.message, "");
    assert_string_equal(fx_body(&r), "ok");
    assert_int_equal(r.body.len, 2);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.effective_url, url);
    assert_true(r.found[0]);
    assert_string_equal(r.looked[0], "text/plain");
    assert_string_equal(r.looked[1], "2");
    assert_false(r.found[2]);
    assert_true(r.nheaders >= 3);
    assert_non_null(strstr(r.headers.data, "Content-Type: text/plain\n"));
    assert_int_equal(r.retry_after_ms, -1);
    fx_result_free(&r);
    fx_env_close(&e);
}

static void test_post_echo(void **state)
{
    (void)state;
    fx_env e;
    httpc_config cfg = {.user_agent = "httpc-test/1"};
    fx_env_open(&e, &cfg);
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/echo?a=1");
    const char body[] = "{\"hello\":\"w\\u00f6rld\"}";
    httpc_header h[] = {
        {"Content-Type", "application/json"},
        {"X-Test", "abc"},
        {"Authorization", "Bearer not-logged"},
        {"Accept", NULL}, /* removes curl's Accept: */
        {"X-Empty", ""},  /* sent, empty */
    };
    httpc_request_opts o = {.method = "POST",
                            .url = url,
                            .headers = h,
                            .nheaders = 5,
                            .body = body,
                            .body_len = strlen(body)};
    fx_result r = {0};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = json_loads(fx_body(&r), 0, NULL);
    assert_non_null(doc);
    json_t *hd = json_object_get(doc, "headers");
    assert_string_equal(json_string_value(json_object_get(doc, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(doc, "body")), body);
    assert_string_equal(json_string_value(json_object_get(doc, "query")), "a=1");
    assert_string_equal(json_string_value(json_object_get(hd, "x-test")), "abc");
    assert_string_equal(json_string_value(json_object_get(hd, "content-type")), "application/json");
    assert_string_equal(json_string_value(json_object_get(hd, "user-agent")), "httpc-test/1");
    assert_string_equal(json_string_value(json_object_get(hd, "authorization")),
                        "Bearer not-logged");
    assert_string_equal(json_string_value(json_object_get(hd, "x-empty")), "");
    assert_string_equal(json_string_value(json_object_get(hd, "accept-encoding")), "gzip, deflate");
    assert_null(json_object_get(hd, "accept"));
    assert_null(json_object_get(hd, "expect"));
    json_decref(doc);
    fx_result_free(&r);

    /* The body is copied: the caller's buffer may go away at once. */
    char *tmp = strdup("transient body");
    httpc_request_opts o2 = {.method = "PUT", .url = url, .body = tmp, .body_len = strlen(tmp)};
    fx_result r2 = {0};
    assert_non_null(httpc_request(e.c, &o2, fx_done, &r2));
    memset(tmp, 'Z', strlen(tmp));
    free(tmp);
    assert_true(ts_run_until(&e.loop, fx_is_done, &r2, 10000));
    doc = json_loads(fx_body(&r2), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "method")), "PUT");
    assert_string_equal(json_string_value(json_object_get(doc, "body")), "transient body");
    json_decref(doc);
    fx_result_free(&r2);

    /* DELETE without a body; PATCH with an empty body still says Content-Length: 0. */
    httpc_request_opts o3 = {.method = "DELETE", .url = url};
    fx_result r3 = {0};
    fx_fetch(&e.loop, e.c, &o3, &r3);
    doc = json_loads(fx_body(&r3), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "method")), "DELETE");
    json_decref(doc);
    fx_result_free(&r3);
    httpc_request_opts o4 = {.method = "PATCH", .url = url};
    fx_result r4 = {0};
    fx_fetch(&e.loop, e.c, &o4, &r4);
    doc = json_loads(fx_body(&r4), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "method")), "PATCH");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "headers"), "content-length")), "0");
    json_decref(doc);
    fx_result_free(&r4);

    /* HEAD: headers, no body. */
    httpc_request_opts o5 = {.method = "HEAD", .url = url};
    fx_result r5 = {.lookup = {"content-type"}};
    fx_fetch(&e.loop, e.c, &o5, &r5);
    assert_int_equal(r5.status, 200);
    assert_int_equal(r5.body.len, 0);
    assert_string_equal(r5.looked[0], "application/json");
    fx_result_free(&r5);
    fx_env_close(&e);
}

static void test_header_list(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/headers?X-Multi=one&X-Multi=two&X-Single=%%20padded");
    fx_result r = {.lookup = {"x-multi", "X-SINGLE"}};
    httpc_request_opts o = {.url = url};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.looked[0], "one"); /* the first of that name */
    assert_string_equal(r.looked[1], "padded");
    assert_non_null(strstr(r.headers.data, "X-Multi: one\nX-Multi: two\n"));
    fx_result_free(&r);
    fx_env_close(&e);
}

static void test_gzip_deflate(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    const char *paths[] = {"/gzip", "/deflate"};
    const char *enc[] = {"gzip", "deflate"};
    for (int i = 0; i < 2; i++) {
        char url[256];
        fx_url(url, sizeof url, &fx_srv, "%s", paths[i]);
        fx_result r = {.lookup = {"content-encoding"}};
        httpc_request_opts o = {.url = url};
        fx_fetch(&e.loop, e.c, &o, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.looked[0], enc[i]);
        assert_int_equal(r.body.len, 11000);
        assert_memory_equal(r.body.data, "hello gzip\nhello gzip\n", 22);
        fx_result_free(&r);
    }
    /* The size limit applies to the decoded body, not to the bytes on the wire. */
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/gzip");
    fx_result r = {0};
    httpc_request_opts o = {.url = url, .max_response_bytes = 5000};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.error, HTTPC_ERR_TOO_LARGE);
    fx_result_free(&r);
    fx_env_close(&e);
}

static void test_redirects(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/redirect/2");

    fx_result r = {.lookup = {"location"}}; /* not followed by default */
    httpc_request_opts o = {.url = url};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.error, HTTPC_OK);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.looked[0], "/redirect/1");
    assert_string_equal(r.effective_url, url);
    fx_result_free(&r);

    fx_result r2 = {.lookup = {"location"}};
    httpc_request_opts o2 = {.url = url, .max_redirects = 5};
    fx_fetch(&e.loop, e.c, &o2, &r2);
    assert_int_equal(r2.status, 200);
    assert_string_equal(fx_body(&r2), "done");
    assert_false(r2.found[0]); /* headers are those of the final response only */
    char final[256];
    fx_url(final, sizeof final, &fx_srv, "/redirect/0");
    assert_string_equal(r2.effective_url, final);
    fx_result_free(&r2);

    fx_result r3 = {0};
    httpc_request_opts o3 = {.url = url, .max_redirects = 1};
    fx_fetch(&e.loop, e.c, &o3, &r3);
    assert_int_equal(r3.error, HTTPC_ERR_TOO_MANY_REDIRECTS);
    assert_int_equal(r3.status, 0);
    assert_string_equal(r3.message, "more than 1 redirects");
    fx_result_free(&r3);
    fx_env_close(&e);

    /* Client-wide following, switched off for one request. */
    httpc_config cfg = {.max_redirects = 3};
    fx_env_open(&e, &cfg);
    fx_result r4 = {0};
    httpc_request_opts o4 = {.url = url};
    fx_fetch(&e.loop, e.c, &o4, &r4);
    assert_int_equal(r4.status, 200);
    fx_result_free(&r4);
    fx_result r5 = {0};
    httpc_request_opts o5 = {.url = url, .max_redirects = -1};
    fx_fetch(&e.loop, e.c, &o5, &r5);
    assert_int_equal(r5.status, 302);
    fx_result_free(&r5);
    fx_env_close(&e);
}

static void test_timeout(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    char key[64], url[256];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/slow/3000?key=%s", key);
    fx_result r = {0};
    httpc_request_opts o = {.url = url, .timeout_ms = 300};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.error, HTTPC_ERR_TIMEOUT);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_string_equal(r.message, "timed out after 300 ms");
    assert_true(r.elapsed_ms >= 290);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(fx_hits(&fx_srv, key), 1);
    fx_result_free(&r);

    /* A deadline bounds the whole request too. */
    fx_result r2 = {0};
    httpc_request_opts o2 = {.url = url, .deadline_ms = 250};
    fx_fetch(&e.loop, e.c, &o2, &r2);
    assert_int_equal(r2.error, HTTPC_ERR_TIMEOUT);
    assert_memory_equal(r2.message, "timed out after ", 16);
    assert_true(r2.elapsed_ms >= 240);
    fx_result_free(&r2);
    fx_env_close(&e);
}

static void test_size_limit(void **state)
{
    (void)state;
    fx_env e;
    httpc_config cfg = {.max_response_bytes = 1048576};
    fx_env_open(&e, &cfg);
    const char *paths[] = {"/big/2000000", "/big-chunked/2000000"};
    for (int i = 0; i < 2; i++) {
        char url[256];
        fx_url(url, sizeof url, &fx_srv, "%s", paths[i]);
        fx_result r = {0};
        httpc_request_opts o = {.url = url};
        fx_fetch(&e.loop, e.c, &o, &r);
        assert_int_equal(r.error, HTTPC_ERR_TOO_LARGE);
        assert_string_equal(r.message, "response larger than 1048576 bytes");
        assert_int_equal(r.status, 0);
        assert_int_equal(r.body.len, 0);
        fx_result_free(&r);
    }
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/big-chunked/1048576"); /* exactly the limit is fine */
    fx_result r = {0};
    httpc_request_opts o = {.url = url};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.error, HTTPC_OK);
    assert_int_equal(r.body.len, 1048576);
    fx_result_free(&r);
    fx_url(url, sizeof url, &fx_srv, "/big/1000");
    fx_result r2 = {0};
    httpc_request_opts o2 = {.url = url, .max_response_bytes = 999};
    fx_fetch(&e.loop, e.c, &o2, &r2);
    assert_int_equal(r2.error, HTTPC_ERR_TOO_LARGE);
    assert_string_equal(r2.message, "response larger than 999 bytes");
    fx_result_free(&r2);
    fx_env_close(&e);
}

typedef struct cancel_ctx {
    httpc_req *req;
} cancel_ctx;

static void cancel_later(uv_timer_t *t)
{
    cancel_ctx *cc = t->data;
    httpc_cancel(cc->req);
}

static void test_cancel(void **state)
{
    (void)state;
    fx_env e;
    httpc_config cfg = {.max_concurrent = 1};
    fx_env_open(&e, &cfg);
    char key[64], key2[64], url[256], url2[256];
    fx_key(key, sizeof key);
    fx_key(key2, sizeof key2);

    /* In flight: cancelled from a timer; the callback reports it exactly once. */
    fx_url(url, sizeof url, &fx_srv, "/slow/2000?key=%s", key);
    fx_result r = {0};
    httpc_request_opts o = {.url = url};
    cancel_ctx cc = {httpc_request(e.c, &o, fx_done, &r)};
    assert_non_null(cc.req);

    /* Queued behind it (max_concurrent 1): cancelled at once, synchronously. */
    fx_url(url2, sizeof url2, &fx_srv, "/ok?key=%s", key2);
    fx_result q = {0};
    httpc_request_opts o2 = {.url = url2};
    httpc_req *queued = httpc_request(e.c, &o2, fx_done, &q);
    assert_non_null(queued);
    assert_int_equal(httpc_queued(e.c), 1);
    httpc_cancel(queued);
    assert_int_equal(q.calls, 1);
    assert_int_equal(q.error, HTTPC_ERR_CANCELLED);
    assert_string_equal(q.message, "cancelled");
    assert_int_equal(q.attempts, 0);
    assert_int_equal(httpc_queued(e.c), 0);

    uv_timer_t t;
    uv_timer_init(&e.loop, &t);
    t.data = &cc;
    uv_timer_start(&t, cancel_later, 100, 0);
    assert_true(ts_run_until(&e.loop, fx_is_done, &r, 5000));
    assert_int_equal(r.error, HTTPC_ERR_CANCELLED);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(httpc_active(e.c), 0);
    ts_run_for(&e.loop, 300);
    assert_int_equal(r.calls, 1);
    assert_int_equal(q.calls, 1);
    assert_int_equal(fx_hits(&fx_srv, key2), 0);
    uv_close((uv_handle_t *)&t, NULL);
    fx_result_free(&r);
    fx_result_free(&q);

    /* While waiting to retry (Retry-After: 3): the wait ends, nothing else is sent. */
    char key3[64];
    fx_key(key3, sizeof key3);
    fx_url(url, sizeof url, &fx_srv, "/retry-after/3?key=%s", key3);
    fx_result w = {0};
    httpc_request_opts o3 = {.url = url, .max_attempts = 3};
    cc.req = httpc_request(e.c, &o3, fx_done, &w);
    ts_run_for(&e.loop, 500);
    assert_int_equal(w.calls, 0);
    httpc_cancel(cc.req);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.error, HTTPC_ERR_CANCELLED);
    assert_int_equal(w.attempts, 1);
    assert_int_equal(w.retry_after_ms, 3000);
    assert_int_equal(fx_hits(&fx_srv, key3), 1);
    fx_result_free(&w);

    /* Cancelling from inside its own callback is a no-op (fx_done does it when .req is set). */
    fx_url(url, sizeof url, &fx_srv, "/ok");
    fx_result s = {0};
    httpc_request_opts o4 = {.url = url};
    s.req = httpc_request(e.c, &o4, fx_done, &s);
    assert_true(ts_run_until(&e.loop, fx_is_done, &s, 5000));
    ts_run_for(&e.loop, 50);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.error, HTTPC_OK);
    fx_result_free(&s);
    fx_env_close(&e);
}

#define NCONC 50

static void test_concurrency(void **state)
{
    (void)state;
    fx_env e;
    httpc_config cfg = {.max_concurrent = 8};
    fx_env_open(&e, &cfg);
    char key[64], url[256];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/slow/100?key=%s", key);
    static fx_result r[NCONC];
    memset(r, 0, sizeof r);
    httpc_request_opts o = {.url = url};
    for (int i = 0; i < NCONC; i++) {
        r[i].client = e.c;
        assert_non_null(httpc_request(e.c, &o, fx_done, &r[i]));
    }
    assert_int_equal(httpc_active(e.c), 8);
    assert_int_equal(httpc_queued(e.c), NCONC - 8);
    for (int i = 0; i < NCONC; i++)
        assert_true(ts_run_until(&e.loop, fx_is_done, &r[i], 30000));
    for (int i = 0; i < NCONC; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 200);
        assert_string_equal(fx_body(&r[i]), "slow");
        assert_true(r[i].active_seen <= 8);
        fx_result_free(&r[i]);
    }
    json_t *doc = fx_stats(&fx_srv, "key", key);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), NCONC);
    json_int_t mx = json_integer_value(json_object_get(doc, "max_inflight"));
    assert_true(mx <= 8);
    assert_true(mx >= 2); /* they did overlap */
    json_decref(doc);
    assert_int_equal(httpc_active(e.c), 0);
    assert_int_equal(httpc_queued(e.c), 0);
    fx_env_close(&e);
}

static void test_close_with_inflight(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    httpc_config cfg = {.max_concurrent = 2};
    httpc_client *c = httpc_new(&loop, &cfg);
    char url[256], url2[256], key[64];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/slow/3000?key=%s", key);
    fx_url(url2, sizeof url2, &fx_srv, "/retry-after/5?key=%s", key);
    fx_result r[6];
    memset(r, 0, sizeof r);
    httpc_request_opts o = {.url = url};
    httpc_request_opts o2 = {.url = url2, .max_attempts = 2};
    assert_non_null(httpc_request(c, &o2, fx_done, &r[0])); /* will wait 5 s to retry */
    for (int i = 1; i < 6; i++)                             /* two in flight, three queued */
        assert_non_null(httpc_request(c, &o, fx_done, &r[i]));
    ts_run_for(&loop, 300);
    int closed = 0;
    httpc_close(c, fx_set_flag, &closed);
    for (int i = 0; i < 6; i++) { /* cancelled before httpc_close returns */
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].error, HTTPC_ERR_CANCELLED);
    }
    assert_int_equal(closed, 0); /* done comes from the loop */
    assert_null(httpc_request(c, &o, fx_done, &r[0]));
    assert_true(ts_run_until(&loop, fx_flag, &closed, 5000));
    ts_run_for(&loop, 50);
    assert_int_equal(closed, 1);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].calls, 1);
        fx_result_free(&r[i]);
    }
    fx_loop_done(&loop);
}

static void test_close_from_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    httpc_client *c = httpc_new(&loop, NULL);
    char url[256], slow[256];
    fx_url(url, sizeof url, &fx_srv, "/ok");
    fx_url(slow, sizeof slow, &fx_srv, "/slow/2000");
    fx_result a = {.close_on_cb = c}, b = {0};
    httpc_request_opts o = {.url = url}, o2 = {.url = slow};
    assert_non_null(httpc_request(c, &o, fx_done, &a));
    assert_non_null(httpc_request(c, &o2, fx_done, &b));
    assert_true(ts_run_until(&loop, fx_is_done, &b, 5000));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.error, HTTPC_ERR_CANCELLED);
    ts_run_for(&loop, 50); /* the client frees itself; no done callback was given */
    fx_result_free(&a);
    fx_result_free(&b);
    fx_loop_done(&loop);
}

static void test_close_drains(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    httpc_config cfg = {.drain_on_close = true, .max_concurrent = 2};
    httpc_client *c = httpc_new(&loop, &cfg);
    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/slow/200");
    fx_result r[3];
    memset(r, 0, sizeof r);
    httpc_request_opts o = {.url = url};
    for (int i = 0; i < 3; i++) /* two in flight, one queued */
        assert_non_null(httpc_request(c, &o, fx_done, &r[i]));
    int closed = 0;
    httpc_close(c, fx_set_flag, &closed);
    assert_int_equal(r[0].calls, 0);
    assert_true(ts_run_until(&loop, fx_flag, &closed, 10000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 200);
        fx_result_free(&r[i]);
    }
    fx_loop_done(&loop);

    /* Draining is bounded: what is left after drain_timeout_ms is cancelled. */
    uv_loop_init(&loop);
    httpc_config cfg2 = {.drain_on_close = true, .drain_timeout_ms = 200};
    c = httpc_new(&loop, &cfg2);
    fx_url(url, sizeof url, &fx_srv, "/slow/3000");
    fx_result s = {0};
    httpc_request_opts o2 = {.url = url};
    assert_non_null(httpc_request(c, &o2, fx_done, &s));
    closed = 0;
    httpc_close(c, fx_set_flag, &closed);
    assert_true(ts_run_until(&loop, fx_flag, &closed, 5000));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.error, HTTPC_ERR_CANCELLED);
    assert_true(s.elapsed_ms >= 190);
    fx_result_free(&s);
    fx_loop_done(&loop);
}

static void test_invalid(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    httpc_request_opts none = {0};
    fx_result x = {0};
    assert_null(httpc_request(e.c, &none, fx_done, &x));
    httpc_request_opts okopts = {.url = "http://127.0.0.1:1/"};
    assert_null(httpc_request(e.c, &okopts, NULL, NULL));
    assert_null(httpc_request(NULL, &okopts, fx_done, &x));

    char url[256];
    fx_url(url, sizeof url, &fx_srv, "/ok");
    httpc_header bad_header[] = {{"X-Bad", "a\r\nInjected: 1"}};
    httpc_request_opts cases[] = {
        {.url = "ftp://127.0.0.1/file"},
        {.url = "not a url"},
        {.url = "/relative/path"},
        {.url = url, .method = "GE T"},
        {.url = url, .headers = bad_header, .nheaders = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fx_result r = {0};
        fx_fetch(&e.loop, e.c, &cases[i], &r);
        assert_int_equal(r.error, HTTPC_ERR_INVALID);
        assert_int_equal(r.attempts, 0);
        assert_int_equal(r.status, 0);
        assert_true(strlen(r.message) > 0);
        fx_result_free(&r);
    }
    fx_env_close(&e);
    assert_null(httpc_new(NULL, NULL));
    httpc_config neg = {.timeout_ms = -1};
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_null(httpc_new(&loop, &neg));
    fx_loop_done(&loop);
}

typedef struct hook_ctx {
    char resolve[128];
    struct curl_slist *list;
    int calls;
    unsigned last_attempt;
    bool refuse;
} hook_ctx;

static bool resolve_hook(CURL *easy, unsigned attempt, void *data)
{
    hook_ctx *h = data;
    h->calls++;
    h->last_attempt = attempt;
    if (h->refuse) return false;
    curl_easy_setopt(easy, CURLOPT_RESOLVE, h->list);
    return true;
}

static void test_curl_hook(void **state)
{
    (void)state;
    fx_env e;
    fx_env_open(&e, NULL);
    hook_ctx h = {0};
    snprintf(h.resolve, sizeof h.resolve, "fixture.test:%d:127.0.0.1", fx_srv.port);
    h.list = curl_slist_append(NULL, h.resolve);
    char url[256];
    snprintf(url, sizeof url, "http://fixture.test:%d/echo", fx_srv.port);
    httpc_request_opts o = {.url = url, .curl_hook = resolve_hook, .curl_hook_data = &h};
    fx_result r = {0};
    fx_fetch(&e.loop, e.c, &o, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = json_loads(fx_body(&r), 0, NULL);
    char host[64];
    snprintf(host, sizeof host, "fixture.test:%d", fx_srv.port);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "headers"), "host")),
                        host);
    json_decref(doc);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.last_attempt, 1);
    fx_result_free(&r);

    char key[64];
    fx_key(key, sizeof key);
    fx_url(url, sizeof url, &fx_srv, "/ok?key=%s", key);
    h.refuse = true;
    httpc_request_opts o2 = {.url = url, .curl_hook = resolve_hook, .curl_hook_data = &h};
    fx_result r2 = {0};
    fx_fetch(&e.loop, e.c, &o2, &r2);
    assert_int_equal(r2.error, HTTPC_ERR_INVALID);
    assert_string_equal(r2.message, "curl hook refused the request");
    assert_int_equal(r2.attempts, 0);
    assert_int_equal(fx_hits(&fx_srv, key), 0);
    fx_result_free(&r2);
    curl_slist_free_all(h.list);
    fx_env_close(&e);
}

static void test_metrics(void **state)
{
    (void)state;
    core_metrics *reg = core_metrics_new();
    fx_env e;
    httpc_config cfg = {.metrics = reg};
    fx_env_open(&e, &cfg);
    char url[256], host[64];
    fx_host(host, sizeof host, &fx_srv);
    core_metric *req = core_metric_counter(reg, "httpc_requests_total", "", "host,status");
    fx_url(url, sizeof url, &fx_srv, "/ok");
    for (int i = 0; i < 2; i++) {
        fx_result r = {0};
        httpc_request_opts o = {.url = url};
        fx_fetch(&e.loop, e.c, &o, &r);
        fx_result_free(&r);
    }
    fx_url(url, sizeof url, &fx_srv, "/status/404");
    fx_result r = {0};
    httpc_request_opts o = {.url = url};
    fx_fetch(&e.loop, e.c, &o, &r);
    fx_result_free(&r);
    char refused[128];
    snprintf(refused, sizeof refused, "http://127.0.0.1:%d/", fx_unused_port());
    char rhost[128];
    snprintf(rhost, sizeof rhost, "%s", refused + 7);
    rhost[strlen(rhost) - 1] = '\0';
    fx_result r2 = {0};
    httpc_request_opts o2 = {.url = refused};
    fx_fetch(&e.loop, e.c, &o2, &r2);
    assert_int_equal(r2.error, HTTPC_ERR_CONNECT);
    fx_result_free(&r2);
    assert_true(fx_nz(core_metric_value(req, host, "2xx")) == 2.0);
    assert_true(fx_nz(core_metric_value(req, host, "4xx")) == 1.0);
    assert_true(fx_nz(core_metric_value(req, rhost, "error")) == 1.0);
    core_buf text = {0};
    core_metrics_render(reg, &text);
    assert_non_null(strstr(text.data, "httpc_request_duration_seconds"));
    assert_non_null(strstr(text.data, "httpc_requests_total{host=\"127.0.0.1:"));
    core_buf_free(&text);
    fx_env_close(&e);

    /* One label for every host, when the caller asks (bounded cardinality). */
    httpc_config cfg2 = {.metrics = reg, .metrics_host_label = "scraper"};
    fx_env_open(&e, &cfg2);
    fx_url(url, sizeof url, &fx_srv, "/ok");
    fx_result r3 = {0};
    httpc_request_opts o3 = {.url = url};
    fx_fetch(&e.loop, e.c, &o3, &r3);
    fx_result_free(&r3);
    assert_true(fx_nz(core_metric_value(req, "scraper", "2xx")) == 1.0);
    fx_env_close(&e);
    core_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_ok),
        cmocka_unit_test(test_post_echo),
        cmocka_unit_test(test_header_list),
        cmocka_unit_test(test_gzip_deflate),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_close_with_inflight),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_close_drains),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_curl_hook),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests_name("httpc_basic", tests, fx_group_setup, fx_group_teardown);
}
